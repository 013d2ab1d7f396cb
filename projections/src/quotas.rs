//! Sales quotas and attainment (issue 18, item 7). The quotas read model keeps every
//! `QuotaSet` (one row per event: owner, period, amount, business time, position), so the
//! quota in force for a period at any time T is the one set last by T (business time, then
//! log position). [`attainment`] puts each quota in force at T for a month or quarter that
//! holds T beside the owner's deals as they stood at T: won in the quota's currency and in the
//! period against the quota, and the weighted open pipeline closing in the period against the
//! gap still to win. Money is compared only within the quota's currency: deals in other
//! currencies do not count toward it.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::quota::QuotaPeriod;
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use serde::Serialize;

use crate::bookkeeping::from_position;
use crate::db::{Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::pipeline::{Opportunity, OpportunityStatus};
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::decode_doc;

pub const TABLE: &str = "rm_quotas";
/// The projection's name (its checkpoint's key).
pub const NAME: &str = "quotas";

const TABLES: &[TableDef] = &[TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        position BIGINT NOT NULL,
        owner TEXTKEY NOT NULL,
        period TEXT NOT NULL,
        set_at BIGINT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor BIGINT NOT NULL,
        PRIMARY KEY (tenant, position)
    )",
    indexes: &["CREATE INDEX {t}_owner ON {t} (tenant, owner, period)"],
}];

/// The quotas projection.
#[derive(Debug, Default)]
pub struct QuotasProjection;

#[async_trait::async_trait]
impl Projection for QuotasProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError> {
        let rows: Vec<Vec<SqlValue>> = events
            .iter()
            .filter_map(|event| match &event.event {
                DomainEvent::QuotaSet(quota) => Some(vec![
                    event.tenant.as_str().into(),
                    from_position(event.position),
                    quota.owner.as_str().into(),
                    quota.period.to_string().into(),
                    SqlValue::Int(event.occurred_at.timestamp_micros()),
                    quota.amount.currency.code().into(),
                    SqlValue::Int(quota.amount.minor_units),
                ]),
                _ => None,
            })
            .collect();
        tx.insert_rows(
            tables.get(TABLE),
            &[
                "tenant",
                "position",
                "owner",
                "period",
                "set_at",
                "currency",
                "amount_minor",
            ],
            rows,
            "ON CONFLICT DO NOTHING",
        )
        .await
    }
}

/// An owner's attainment in one period holding the evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PeriodAttainment {
    /// `YYYY-MM` or `YYYY-Qn`.
    pub period: String,
    /// `month` or `quarter`.
    pub kind: &'static str,
    /// The period's first day.
    pub start: NaiveDate,
    /// The first day after it.
    pub end: NaiveDate,
    /// The quota in force at the evaluation time.
    pub quota: Money,
    /// Business time of the `QuotaSet` that set it.
    pub quota_set_at: DateTime<Utc>,
    /// Deals won in the period by the evaluation time, in the quota's currency.
    pub won: Money,
    pub won_deals: u64,
    /// won / quota; absent for a zero quota.
    pub attainment: Option<f64>,
    /// What is left to win: quota − won, at least zero.
    pub gap: Money,
    /// Open deals whose close date falls in the period, in the quota's currency, each
    /// weighted by its probability.
    pub weighted_pipeline: Money,
    pub open_deals: u64,
    /// weighted_pipeline / gap; absent when nothing is left to win.
    pub coverage: Option<f64>,
}

/// One quota row.
struct QuotaRow {
    period: String,
    set_at: i64,
    position: i64,
    currency: String,
    amount_minor: i64,
}

/// `owner`'s attainment at `at`, for each month and quarter holding `at` that has a quota in
/// force then. With `as_of` the deals are taken as they stood at `at` ([`Opportunity::as_of`]);
/// without it, as they stand now (`at` is then the time of the query).
pub async fn attainment(
    db: &ReadDb,
    tenant: &str,
    owner: &str,
    at: DateTime<Utc>,
    as_of: bool,
) -> Result<Vec<PeriodAttainment>, ProjectionError> {
    let rows: Vec<QuotaRow> = db
        .fetch(
            &format!(
                "SELECT period, set_at, position, currency, amount_minor FROM {TABLE} \
                 WHERE tenant = ? AND owner = ? AND set_at <= ? ORDER BY position"
            ),
            vec![
                tenant.into(),
                owner.into(),
                SqlValue::Int(at.timestamp_micros()),
            ],
            &[Col::Text, Col::Int, Col::Int, Col::Text, Col::Int],
        )
        .await?
        .into_iter()
        .map(|row| QuotaRow {
            period: row[0].as_text().unwrap_or_default().to_owned(),
            set_at: row[1].as_int().unwrap_or(0),
            position: row[2].as_int().unwrap_or(0),
            currency: row[3].as_text().unwrap_or_default().to_owned(),
            amount_minor: row[4].as_int().unwrap_or(0),
        })
        .collect();
    let mut in_force = Vec::new();
    for period in QuotaPeriod::containing(at.date_naive()) {
        let text = period.to_string();
        let latest = rows
            .iter()
            .filter(|row| row.period == text)
            .max_by_key(|row| (row.set_at, row.position));
        if let Some(row) = latest
            && let Ok(currency) = Currency::parse(&row.currency)
        {
            in_force.push((period, row, currency));
        }
    }
    if in_force.is_empty() {
        return Ok(Vec::new());
    }
    let deals = owner_deals(db, tenant, owner, at, as_of).await?;
    let mut out = Vec::with_capacity(in_force.len());
    for (period, row, currency) in in_force {
        let start = day_start(period.start());
        let end = day_start(period.end());
        let (mut won, mut won_deals, mut weighted, mut open_deals) = (0i128, 0u64, 0i128, 0u64);
        for deal in &deals {
            let Some(amount) = deal.amount.filter(|a| a.currency == currency) else {
                continue;
            };
            match deal.status {
                OpportunityStatus::Won
                    if deal
                        .closed_at
                        .is_some_and(|c| c >= start && c < end && c <= at) =>
                {
                    won += i128::from(amount.minor_units);
                    won_deals += 1;
                }
                OpportunityStatus::Open
                    if deal
                        .close_date
                        .is_some_and(|d| d >= period.start() && d < period.end()) =>
                {
                    weighted += i128::from(deal.weighted_amount().map_or(0, |w| w.minor_units));
                    open_deals += 1;
                }
                _ => {}
            }
        }
        let quota = i128::from(row.amount_minor);
        let gap = (quota - won).max(0);
        let money = |what: &str, minor: i128| {
            i64::try_from(minor)
                .map(|minor| Money::new(minor, currency))
                .map_err(|_| ProjectionError::TotalOverflow {
                    what: format!("{what} of {owner} in {period} in {currency}"),
                })
        };
        out.push(PeriodAttainment {
            period: period.to_string(),
            kind: period.kind(),
            start: period.start(),
            end: period.end(),
            quota: Money::new(row.amount_minor, currency),
            quota_set_at: DateTime::from_timestamp_micros(row.set_at).unwrap_or_default(),
            won: money("the won amount", won)?,
            won_deals,
            attainment: (quota > 0).then(|| won as f64 / quota as f64),
            gap: money("the gap", gap)?,
            weighted_pipeline: money("the weighted pipeline", weighted)?,
            open_deals,
            coverage: (gap > 0).then(|| weighted as f64 / gap as f64),
        });
    }
    Ok(out)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// The owner's deals (today's owner, as the pipeline's owner filter), as they stood at `at`
/// when `as_of`.
async fn owner_deals(
    db: &ReadDb,
    tenant: &str,
    owner: &str,
    at: DateTime<Utc>,
    as_of: bool,
) -> Result<Vec<Opportunity>, ProjectionError> {
    let table = crate::pipeline::TABLE;
    let rows = db
        .fetch(
            &format!("SELECT id, doc FROM {table} WHERE tenant = ? AND owner = ? ORDER BY id"),
            vec![tenant.into(), owner.into()],
            &[Col::Text, Col::Text],
        )
        .await?;
    let mut deals = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row[0].as_text().unwrap_or_default();
        let deal: Opportunity =
            decode_doc(table, tenant, id, row[1].as_text().unwrap_or_default())?;
        if as_of {
            deals.extend(deal.as_of(at));
        } else {
            deals.push(deal);
        }
    }
    Ok(deals)
}
