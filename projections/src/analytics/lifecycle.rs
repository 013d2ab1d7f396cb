//! Customer lifecycle stages (issue 17, item 4): each customer's stage at a business time,
//! decided by [`stage`] from its purchase days in any currency (the 360's definition,
//! [`Customer360::purchase_days`]), and the report of the tenant's counts per stage as of a
//! time with, over a period, how many customers moved from each stage to each other
//! ([`lifecycle_report`]). The 360 view calls [`stage`]; the API and `crm-replay analytics
//! lifecycle` serve the report. The rule table is in docs/analytics.md.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use crm_core::envelope::{Position, TenantId};
use crm_core::store::SharedStore;
use serde::{Deserialize, Serialize};

use super::ReportError;
use crate::asof::Cut;
use crate::customer360::{Customer360, World};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;

/// A purchase day at most this many days before the evaluation day is recent: the
/// customer is new, active or won back.
pub const RECENT_DAYS: i64 = 90;
/// A last purchase day more than this many days before the evaluation day makes the customer
/// lapsed; between [`RECENT_DAYS`] and this, at risk. A gap of more than this many days
/// between two consecutive purchase days is a lapse the customer came back from.
pub const LAPSE_DAYS: i64 = 180;

/// Where a customer is in its life with us, at an evaluation time.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    /// No purchase day yet.
    Lead,
    /// One purchase day, within [`RECENT_DAYS`].
    New,
    /// The last purchase day within [`RECENT_DAYS`], neither new nor won back.
    Active,
    /// The last purchase day [`RECENT_DAYS`] + 1 to [`LAPSE_DAYS`] days ago.
    AtRisk,
    /// The last purchase day more than [`LAPSE_DAYS`] days ago.
    Lapsed,
    /// The last purchase day within [`RECENT_DAYS`], and more than [`LAPSE_DAYS`] days after
    /// the purchase day before it: it came back after lapsing.
    WonBack,
}

impl LifecycleStage {
    /// Every stage, in the order reports list them.
    pub const ALL: [LifecycleStage; 6] = [
        LifecycleStage::Lead,
        LifecycleStage::New,
        LifecycleStage::Active,
        LifecycleStage::AtRisk,
        LifecycleStage::Lapsed,
        LifecycleStage::WonBack,
    ];

    /// The stage as answers write it.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleStage::Lead => "lead",
            LifecycleStage::New => "new",
            LifecycleStage::Active => "active",
            LifecycleStage::AtRisk => "at_risk",
            LifecycleStage::Lapsed => "lapsed",
            LifecycleStage::WonBack => "won_back",
        }
    }
}

/// `customer`'s stage at `at`: from its purchase days in any currency (a day is one if it is
/// a purchase day in at least one currency), days counted back from `at`'s UTC date. Orders
/// placed after `at` are left out (a live document may hold future-dated ones); refunds are
/// those `customer` holds.
pub fn stage(customer: &Customer360, at: DateTime<Utc>) -> LifecycleStage {
    let placed = Customer360 {
        orders: customer
            .orders
            .iter()
            .filter(|(_, order)| order.placed_at <= at)
            .map(|(key, order)| (key.clone(), order.clone()))
            .collect(),
        ..Customer360::default()
    };
    let days: BTreeSet<NaiveDate> = placed
        .purchase_days()
        .into_values()
        .flatten()
        .map(|(day, _)| day)
        .collect();
    let days: Vec<NaiveDate> = days.into_iter().collect();
    stage_of(&days, at.date_naive())
}

/// The stage of a customer with these purchase days (ascending, distinct, none after
/// `today`) on `today`.
fn stage_of(days: &[NaiveDate], today: NaiveDate) -> LifecycleStage {
    let Some(&last) = days.last() else {
        return LifecycleStage::Lead;
    };
    let since = (today - last).num_days();
    if since > LAPSE_DAYS {
        LifecycleStage::Lapsed
    } else if since > RECENT_DAYS {
        LifecycleStage::AtRisk
    } else if days.len() == 1 {
        LifecycleStage::New
    } else if (last - days[days.len() - 2]).num_days() > LAPSE_DAYS {
        LifecycleStage::WonBack
    } else {
        LifecycleStage::Active
    }
}

/// Why a report over a period cannot be made: the log, or a parameter out of order.
#[derive(Debug, thiserror::Error)]
pub enum PeriodError {
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A bound of the period is not before the other; `parameter` names it.
    #[error("{message}")]
    Parameter {
        parameter: &'static str,
        message: String,
    },
}

impl From<ProjectionError> for PeriodError {
    fn from(error: ProjectionError) -> PeriodError {
        PeriodError::Report(ReportError::Read(error))
    }
}

/// The number of customers in one stage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageCount {
    pub stage: LifecycleStage,
    pub customers: usize,
}

/// How many customers were in stage `from` at `since` and are in stage `to` at `as_of`.
/// `from` is `"none"` for a customer the log did not name yet at `since`; `to` is
/// `"merged"` for one merged into another customer since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Transition {
    pub from: &'static str,
    pub to: &'static str,
    pub customers: usize,
}

/// Customers per lifecycle stage as of a time, and the moves between stages over a period.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LifecycleReport {
    pub tenant: String,
    /// The evaluation time: the events that occurred by then are counted (business time).
    pub as_of: DateTime<Utc>,
    /// The start of the period the transitions cover, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last log position read (the tenant's head when the report was made).
    pub position: Position,
    /// Customers (not merged into another) the log names by `as_of`, erased ones included.
    pub customers: usize,
    /// Every stage, in lifecycle order, with its customers at `as_of`.
    pub stages: Vec<StageCount>,
    /// With `since`: every (stage at `since`, stage at `as_of`) pair with customers, ordered
    /// by `from` then `to` in lifecycle order (`none` first, `merged` last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transitions: Option<Vec<Transition>>,
}

/// Order of a transition's ends: `none`, the stages in lifecycle order, `merged`.
fn rank(end: &str) -> usize {
    match end {
        "none" => 0,
        "merged" => LifecycleStage::ALL.len() + 1,
        stage => LifecycleStage::ALL
            .iter()
            .position(|s| s.name() == stage)
            .map_or(usize::MAX, |i| i + 1),
    }
}

/// The tenant's customers per stage at `as_of` and, given `since` (before `as_of`), each
/// customer's stage at `since` against its stage at `as_of`, from one read of the log.
pub async fn lifecycle_report(
    store: &SharedStore,
    tenant: &TenantId,
    as_of: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<LifecycleReport, PeriodError> {
    if let Some(since) = since
        && since >= as_of
    {
        return Err(PeriodError::Parameter {
            parameter: "since",
            message: format!(
                "since ({}) must be before as_of ({})",
                since.to_rfc3339(),
                as_of.to_rfc3339()
            ),
        });
    }
    let (now, then, position) = fold_two(store, tenant, as_of, since).await?;
    let mut counts: BTreeMap<LifecycleStage, usize> = BTreeMap::new();
    let mut moves: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
    let mut customers = 0;
    for (key, customer) in &now.customers {
        let before = then.as_ref().map(|then| match then.customers.get(key) {
            Some(past) if past.merged_into.is_some() => None,
            Some(past) => Some(stage(past, since.unwrap_or(as_of)).name()),
            None => Some("none"),
        });
        if customer.merged_into.is_some() {
            if let Some(Some(from)) = before {
                *moves.entry((from, "merged")).or_insert(0) += 1;
            }
            continue;
        }
        customers += 1;
        let current = stage(customer, as_of);
        *counts.entry(current).or_insert(0) += 1;
        if let Some(Some(from)) = before {
            *moves.entry((from, current.name())).or_insert(0) += 1;
        }
    }
    let mut transitions: Vec<Transition> = moves
        .into_iter()
        .map(|((from, to), customers)| Transition {
            from,
            to,
            customers,
        })
        .collect();
    transitions.sort_by_key(|t| (rank(t.from), rank(t.to)));
    Ok(LifecycleReport {
        tenant: tenant.as_str().to_owned(),
        as_of,
        since,
        position,
        customers,
        stages: LifecycleStage::ALL
            .iter()
            .map(|stage| StageCount {
                stage: *stage,
                customers: counts.get(stage).copied().unwrap_or(0),
            })
            .collect(),
        transitions: since.map(|_| transitions),
    })
}

/// The tenant's customers folded from its log cut at `as_of` and, if given, at `since`, in one
/// read of the log, and the last position read.
async fn fold_two(
    store: &SharedStore,
    tenant: &TenantId,
    as_of: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<(World, Option<World>, Position), ReportError> {
    let (now_cut, then_cut) = (Cut::OccurredBy(as_of), since.map(Cut::OccurredBy));
    let mut now = World::default();
    let mut then = since.map(|_| World::default());
    let after = super::read_log(store, tenant, |event| {
        if !now_cut.contains(&event) {
            return Ok(());
        }
        let earlier = then_cut.is_some_and(|cut| cut.contains(&event));
        let event = ProjectedEvent::decode(event)?;
        if earlier && let Some(then) = then.as_mut() {
            then.apply(&event);
        }
        now.apply(&event);
        Ok(())
    })
    .await?;
    Ok((now, then, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use crm_core::money::Money;
    use crm_core::money::currency::Currency;

    use crate::customer360::fold::Order;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 30).expect("date")
    }

    /// Purchase days `ago` days before `today()` (any order).
    fn days(ago: &[i64]) -> Vec<NaiveDate> {
        let mut days: Vec<NaiveDate> = ago.iter().map(|n| today() - Duration::days(*n)).collect();
        days.sort();
        days
    }

    fn at(ago: &[i64]) -> LifecycleStage {
        stage_of(&days(ago), today())
    }

    #[test]
    fn every_rule_at_its_edges() {
        use LifecycleStage::*;
        assert_eq!(at(&[]), Lead);
        // One purchase day: new up to 90 days, at risk 91-180, lapsed from 181.
        assert_eq!(at(&[0]), New);
        assert_eq!(at(&[90]), New);
        assert_eq!(at(&[91]), AtRisk);
        assert_eq!(at(&[180]), AtRisk);
        assert_eq!(at(&[181]), Lapsed);
        // Two purchase days: the last decides recency; active up to 90 days.
        assert_eq!(at(&[100, 90]), Active);
        assert_eq!(at(&[100, 91]), AtRisk);
        assert_eq!(at(&[300, 180]), AtRisk, "a 120-day gap is no lapse");
        assert_eq!(at(&[400, 181]), Lapsed);
        // Won back: recent, and more than 180 days after the purchase day before it.
        assert_eq!(at(&[271, 90]), WonBack, "181 days apart");
        assert_eq!(at(&[270, 90]), Active, "180 days apart: no lapse");
        assert_eq!(at(&[181, 0]), WonBack);
        assert_eq!(at(&[500, 271, 91]), AtRisk, "came back, but not lately");
        // Only the gap before the last purchase day: a second day back makes it active.
        assert_eq!(at(&[400, 10, 5]), Active);
        assert_eq!(at(&[400, 390, 10]), WonBack);
    }

    fn order(id: &str, placed_at: DateTime<Utc>, amount: i64, currency: &str) -> (String, Order) {
        (
            format!("c/{id}"),
            Order {
                order_id: id.to_owned(),
                placed_at,
                amount: Money::new(amount, Currency::parse(currency).expect("currency")),
                refunded: 0,
            },
        )
    }

    #[test]
    fn purchase_days_in_any_currency_and_none_after_the_evaluation_time() {
        let t = Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap();
        let mut customer = Customer360 {
            customer_id: "c".into(),
            ..Customer360::default()
        };
        assert_eq!(stage(&customer, t), LifecycleStage::Lead);
        // Day -200 in EUR, day -10 in USD: one customer, came back.
        customer
            .orders
            .extend([order("o-1", t - Duration::days(200), 1_000, "EUR")]);
        customer
            .orders
            .extend([order("o-2", t - Duration::days(10), 500, "USD")]);
        assert_eq!(stage(&customer, t), LifecycleStage::WonBack);
        // An order later the same day, and one next year, are not there yet at `t`.
        customer
            .orders
            .extend([order("o-3", t + Duration::hours(1), 700, "EUR")]);
        customer
            .orders
            .extend([order("o-4", t + Duration::days(365), 700, "EUR")]);
        assert_eq!(stage(&customer, t), LifecycleStage::WonBack);
        assert_eq!(
            stage(&customer, t + Duration::hours(1)),
            LifecycleStage::Active,
            "o-3 counts once placed: two days within 90"
        );
        // A free order is a purchase day; one refunded in full is not.
        let mut free = Customer360::default();
        free.orders
            .extend([order("o-1", t - Duration::days(5), 0, "EUR")]);
        assert_eq!(stage(&free, t), LifecycleStage::New);
        let mut refunded = Customer360::default();
        let (key, mut o) = order("o-1", t - Duration::days(5), 900, "EUR");
        o.refunded = 900;
        refunded.orders.insert(key, o);
        assert_eq!(stage(&refunded, t), LifecycleStage::Lead);
    }

    #[test]
    fn names_are_the_serialized_forms() {
        for stage in LifecycleStage::ALL {
            assert_eq!(
                serde_json::to_value(stage).expect("json"),
                serde_json::json!(stage.name())
            );
        }
        let mut ranks: Vec<usize> = ["merged", "won_back", "none", "lead"]
            .iter()
            .map(|e| rank(e))
            .collect();
        ranks.sort();
        assert_eq!(ranks, vec![0, 1, 6, 7]);
    }
}
