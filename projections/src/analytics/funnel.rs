//! The sales funnel (issue 17, item 7): the opportunities opened in a period, each folded
//! from its events by the pipeline's own fold ([`crate::pipeline::fold::apply`]) with the log
//! cut at the period's end, and what became of them: how many entered and reached each stage
//! in pipeline order and converted to the next, won, lost and still open, the win rate, the
//! cycle length of the won deals, the win rate by stage entered, and the won amounts per
//! currency (never summed across currencies); for all deals and by owner. The API and
//! `crm-replay analytics funnel` serve [`funnel_report`]; the definitions are in
//! docs/analytics.md.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use crm_core::catalog::values::Stage;
use crm_core::envelope::{Position, TenantId};
use crm_core::money::currency::Currency;
use crm_core::store::SharedStore;
use serde::Serialize;

use super::lifecycle::PeriodError;
use super::{ReportError, amount};
use crate::asof::Cut;
use crate::event::ProjectedEvent;
use crate::pipeline::fold::{self, Opportunity, OpportunityStatus};

/// The funnel's steps in pipeline order: the open stages, then "Closed Won". "Closed Lost"
/// is no step: a lost deal stops at the last stage it reached and counts as lost.
pub const STEPS: [Stage; 5] = [
    Stage::Prospecting,
    Stage::Qualification,
    Stage::Proposal,
    Stage::Negotiation,
    Stage::ClosedWon,
];

const SECONDS_PER_DAY: f64 = 86_400.0;

/// One step of the funnel.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FunnelStep {
    pub stage: Stage,
    /// Deals whose history has this stage (opened in it or moved to it).
    pub entered: usize,
    /// Deals that entered this stage or a later step (a deal opened at "Proposal" has passed
    /// "Prospecting" and "Qualification").
    pub reached: usize,
    /// `reached` of the next step / `reached` of this one; absent for the last step and when
    /// no deal reached this one.
    pub conversion: Option<f64>,
    /// Of the deals that entered this stage, how many were won and lost by the period's end.
    pub won: usize,
    pub lost: usize,
    /// `won / (won + lost)` of the deals that entered this stage; absent before any closed.
    pub win_rate: Option<f64>,
}

/// A sum of won amounts in one currency (a decimal string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CurrencyAmount {
    pub currency: String,
    pub amount: String,
}

/// The days from open to win of the won deals.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CycleDays {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    pub mean: f64,
}

/// The funnel's figures over a set of deals.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FunnelFigures {
    /// Deals opened in the period.
    pub opened: usize,
    pub won: usize,
    pub lost: usize,
    /// Neither won nor lost by the period's end.
    pub open: usize,
    /// `won / (won + lost)`; absent before any deal closed.
    pub win_rate: Option<f64>,
    /// Of the won deals; absent without any.
    pub cycle_days: Option<CycleDays>,
    /// The won deals' amounts per currency, by currency code.
    pub won_amount: Vec<CurrencyAmount>,
    pub steps: Vec<FunnelStep>,
}

/// One owner's funnel.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OwnerFunnel {
    /// The deal's owner at the period's end; absent for deals without one.
    pub owner: Option<String>,
    #[serde(flatten)]
    pub figures: FunnelFigures,
}

/// The opportunities opened in `[from, to)` and what became of them by `to`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FunnelReport {
    pub tenant: String,
    /// The period: deals opened from `from` (included) to `to` (excluded), business time.
    pub from: DateTime<Utc>,
    /// Also the evaluation time: the events that occurred by then are counted.
    pub to: DateTime<Utc>,
    /// Only this owner's deals, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The last log position read (the tenant's head when the report was made).
    pub position: Position,
    #[serde(flatten)]
    pub figures: FunnelFigures,
    /// The same figures per owner, by owner id (deals without an owner first).
    pub by_owner: Vec<OwnerFunnel>,
}

/// The funnel of the deals opened in `[from, to)` (only `owner`'s, if given), each folded from
/// the log cut at `to`.
pub async fn funnel_report(
    store: &SharedStore,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    owner: Option<&str>,
) -> Result<FunnelReport, PeriodError> {
    if from >= to {
        return Err(PeriodError::Parameter {
            parameter: "from",
            message: format!(
                "from ({}) must be before to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            ),
        });
    }
    let (deals, position) = fold_deals(store, tenant, to).await?;
    let mut chosen: Vec<&Opportunity> = deals
        .values()
        .filter(|deal| deal.status != OpportunityStatus::Unknown)
        .filter(|deal| deal.opened_at.is_some_and(|at| from <= at && at < to))
        .filter(|deal| owner.is_none_or(|o| deal.owner.as_ref().map(|d| d.as_str()) == Some(o)))
        .collect();
    chosen.sort_by(|a, b| a.opportunity_id.cmp(&b.opportunity_id));
    let mut owners: BTreeMap<Option<String>, Vec<&Opportunity>> = BTreeMap::new();
    for deal in &chosen {
        owners
            .entry(deal.owner.as_ref().map(|o| o.as_str().to_owned()))
            .or_default()
            .push(deal);
    }
    let by_owner = owners
        .into_iter()
        .map(|(owner, deals)| {
            Ok(OwnerFunnel {
                owner,
                figures: figures(&deals)?,
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    Ok(FunnelReport {
        tenant: tenant.as_str().to_owned(),
        from,
        to,
        owner: owner.map(str::to_owned),
        position,
        figures: figures(&chosen)?,
        by_owner,
    })
}

fn rate(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The funnel's figures over `deals`.
fn figures(deals: &[&Opportunity]) -> Result<FunnelFigures, ReportError> {
    let won = |deal: &Opportunity| deal.status == OpportunityStatus::Won;
    let lost = |deal: &Opportunity| deal.status == OpportunityStatus::Lost;
    let (won_count, lost_count) = (
        deals.iter().filter(|d| won(d)).count(),
        deals.iter().filter(|d| lost(d)).count(),
    );
    // Per step: (entered, reached, of those entered: won, lost).
    let mut steps = [(0usize, 0usize, 0usize, 0usize); STEPS.len()];
    for deal in deals {
        let entered: Vec<bool> = STEPS
            .iter()
            .map(|step| deal.stage_history.iter().any(|span| span.stage == *step))
            .collect();
        let furthest = entered.iter().rposition(|e| *e);
        for (i, step) in steps.iter_mut().enumerate() {
            if entered[i] {
                step.0 += 1;
                step.2 += usize::from(won(deal));
                step.3 += usize::from(lost(deal));
            }
            if furthest.is_some_and(|f| i <= f) {
                step.1 += 1;
            }
        }
    }
    let steps = STEPS
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let (entered, reached, won, lost) = steps[i];
            FunnelStep {
                stage: *stage,
                entered,
                reached,
                conversion: steps.get(i + 1).and_then(|next| rate(next.1, reached)),
                won,
                lost,
                win_rate: rate(won, won + lost),
            }
        })
        .collect();
    let mut cycles: Vec<f64> = deals
        .iter()
        .filter(|d| won(d))
        .filter_map(|deal| deal.cycle_seconds())
        .map(|seconds| seconds as f64 / SECONDS_PER_DAY)
        .collect();
    cycles.sort_by(f64::total_cmp);
    let cycle_days = (!cycles.is_empty()).then(|| {
        let n = cycles.len();
        CycleDays {
            median: if n % 2 == 1 {
                cycles[n / 2]
            } else {
                (cycles[n / 2 - 1] + cycles[n / 2]) / 2.0
            },
            mean: cycles.iter().sum::<f64>() / n as f64,
        }
    });
    let mut sums: BTreeMap<&'static str, (Currency, i128)> = BTreeMap::new();
    for deal in deals.iter().filter(|d| won(d)) {
        if let Some(money) = deal.amount {
            sums.entry(money.currency.code())
                .or_insert((money.currency, 0))
                .1 += i128::from(money.minor_units);
        }
    }
    let won_amount = sums
        .into_values()
        .map(|(currency, sum)| {
            Ok(CurrencyAmount {
                currency: currency.code().to_owned(),
                amount: amount(sum, currency)?,
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    Ok(FunnelFigures {
        opened: deals.len(),
        won: won_count,
        lost: lost_count,
        open: deals.len() - won_count - lost_count,
        win_rate: rate(won_count, won_count + lost_count),
        cycle_days,
        won_amount,
        steps,
    })
}

/// Every opportunity of the tenant folded from its events that occurred by `to`, by id, and
/// the last position read.
async fn fold_deals(
    store: &SharedStore,
    tenant: &TenantId,
    to: DateTime<Utc>,
) -> Result<(HashMap<String, Opportunity>, Position), ReportError> {
    let cut = Cut::OccurredBy(to);
    let mut deals: HashMap<String, Opportunity> = HashMap::new();
    let after = super::read_log(store, tenant, |event| {
        // Only opportunity events are decoded.
        if !event.event_type.starts_with("Opportunity") || !cut.contains(&event) {
            return Ok(());
        }
        let event = ProjectedEvent::decode(event)?;
        if event.event.category() == "opportunity" {
            let id = event.event.entity_id().as_str().to_owned();
            fold::apply(deals.entry(id).or_default(), &event);
        }
        Ok(())
    })
    .await?;
    Ok((deals, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StageSpan;
    use chrono::{Duration, TimeZone};
    use crm_core::ids::EntityId;
    use crm_core::money::Money;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// A deal opened at day 0 that went through `stages` one day apart, then `status`.
    fn deal(stages: &[Stage], status: OpportunityStatus, eur: i64) -> Opportunity {
        let mut history: Vec<StageSpan> = stages
            .iter()
            .enumerate()
            .map(|(i, stage)| StageSpan {
                stage: *stage,
                entered_at: t0() + Duration::days(i as i64),
                left_at: Some(t0() + Duration::days(i as i64 + 1)),
            })
            .collect();
        let closed_at = t0() + Duration::days(stages.len() as i64);
        let closing = match status {
            OpportunityStatus::Won => Some(Stage::ClosedWon),
            OpportunityStatus::Lost => Some(Stage::ClosedLost),
            _ => None,
        };
        if let Some(stage) = closing {
            history.push(StageSpan {
                stage,
                entered_at: closed_at,
                left_at: None,
            });
        } else if let Some(last) = history.last_mut() {
            last.left_at = None;
        }
        Opportunity {
            opportunity_id: Some(EntityId::parse("d").expect("id")),
            amount: Some(Money::new(eur, Currency::parse("EUR").expect("EUR"))),
            status,
            opened_at: Some(t0()),
            closed_at: closing.map(|_| closed_at),
            stage_history: history,
            ..Opportunity::default()
        }
    }

    #[test]
    fn steps_count_entries_reach_conversion_and_win_rate_by_stage_entered() {
        use OpportunityStatus::{Lost, Open, Won};
        use Stage::*;
        let deals = [
            // Won after every stage: 4 days.
            deal(
                &[Prospecting, Qualification, Proposal, Negotiation],
                Won,
                100,
            ),
            // Opened at Proposal, won: 1 day.
            deal(&[Proposal], Won, 250),
            // Lost at Qualification.
            deal(&[Prospecting, Qualification], Lost, 999),
            // Still open in Prospecting.
            deal(&[Prospecting], Open, 1),
        ];
        let refs: Vec<&Opportunity> = deals.iter().collect();
        let f = figures(&refs).expect("figures");
        assert_eq!((f.opened, f.won, f.lost, f.open), (4, 2, 1, 1));
        assert_eq!(f.win_rate, Some(2.0 / 3.0));
        assert_eq!(
            f.cycle_days,
            Some(CycleDays {
                median: 2.5,
                mean: 2.5
            })
        );
        assert_eq!(
            f.won_amount,
            vec![CurrencyAmount {
                currency: "EUR".into(),
                amount: "3.50".into()
            }]
        );
        let row = |i: usize| {
            let s = &f.steps[i];
            (s.entered, s.reached, s.won, s.lost)
        };
        assert_eq!(
            row(0),
            (3, 4, 1, 1),
            "Prospecting: the Proposal deal passed it"
        );
        assert_eq!(row(1), (2, 3, 1, 1));
        assert_eq!(row(2), (2, 2, 2, 0));
        assert_eq!(row(3), (1, 2, 1, 0), "the Proposal deal won past it");
        assert_eq!(row(4), (2, 2, 2, 0), "Closed Won");
        assert_eq!(f.steps[0].conversion, Some(0.75));
        assert_eq!(f.steps[1].conversion, Some(2.0 / 3.0));
        assert_eq!(f.steps[2].conversion, Some(1.0));
        assert_eq!(f.steps[3].conversion, Some(1.0));
        assert_eq!(f.steps[4].conversion, None);
        assert_eq!(f.steps[0].win_rate, Some(0.5));
        assert_eq!(f.steps[2].win_rate, Some(1.0));
    }

    #[test]
    fn nothing_opened_gives_zeros_and_no_rates() {
        let f = figures(&[]).expect("figures");
        assert_eq!(
            (f.opened, f.win_rate, f.cycle_days.is_none()),
            (0, None, true)
        );
        assert!(
            f.steps
                .iter()
                .all(|s| s.conversion.is_none() && s.reached == 0)
        );
        assert!(f.won_amount.is_empty());
    }
}
