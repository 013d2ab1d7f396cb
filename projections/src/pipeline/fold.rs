//! The pipeline fold: one opportunity's state, folded from the events of its
//! `opportunity-<id>` stream in log order.
//!
//! The fold is total: it never fails and never panics. It folds facts already in the log, even
//! ones today's aggregate rules would refuse (events before the open, a stage change to a
//! closed stage, a second open), so it decides what each of them means instead of rejecting
//! it:
//! - a repeated `OpportunityOpened` (status no longer unknown) is ignored;
//! - stage changes and updates after the deal was won or lost are ignored, and so is a second
//!   win or loss;
//! - events seen before the open are folded with status [`OpportunityStatus::Unknown`]; the
//!   open then sets everything it carries, keeping earlier values only where it gives nothing
//!   (the owner).
//!
//! Business time is the event's `occurred_at`. Money stays in integer minor units.

use chrono::{DateTime, NaiveDate, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::values::{ForecastCategory, Stage};
use crm_core::ids::EntityId;
use crm_core::money::Money;
use serde::{Deserialize, Serialize};

use crate::event::ProjectedEvent;

/// Probability of a won deal, in percent.
const WON_PROBABILITY: u8 = 100;
/// Probability of a lost deal, in percent.
const LOST_PROBABILITY: u8 = 0;

/// Where an opportunity is in its life, as far as the folded events tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityStatus {
    /// No `OpportunityOpened` folded yet (only events seen before the open, if any).
    #[default]
    Unknown,
    /// Opened, neither won nor lost.
    Open,
    /// Won: stage "Closed Won".
    Won,
    /// Lost: stage "Closed Lost".
    Lost,
}

/// One stay of the deal in a stage: from the event that entered it to the one that left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageSpan {
    /// The stage the deal was in.
    pub stage: Stage,
    /// Business time of the event that entered the stage.
    pub entered_at: DateTime<Utc>,
    /// Business time of the event that left it; `None` while the deal is still in it.
    pub left_at: Option<DateTime<Utc>>,
}

/// One opportunity folded from its stream; `Default` is a deal with no event folded yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Opportunity {
    /// The deal's id, from the first opportunity event folded.
    pub opportunity_id: Option<EntityId>,
    /// The customer the deal is with.
    pub customer_id: Option<EntityId>,
    /// Personal data: the deal's name (cleared by [`Opportunity::erase_personal`]).
    pub name: Option<String>,
    /// The deal's amount, in its (possibly restated) currency.
    pub amount: Option<Money>,
    /// The current stage.
    pub stage: Option<Stage>,
    /// Win probability in percent: the last one given, or the current stage's default.
    pub probability: u8,
    /// The forecast category: the last one given, or the current stage's default.
    pub forecast_category: Option<ForecastCategory>,
    /// The expected close date.
    pub close_date: Option<NaiveDate>,
    /// The sales rep owning the deal.
    pub owner: Option<EntityId>,
    /// Open, won, lost, or unknown before the open.
    pub status: OpportunityStatus,
    /// Business time of the open.
    pub opened_at: Option<DateTime<Utc>>,
    /// Business time of the win or loss.
    pub closed_at: Option<DateTime<Utc>>,
    /// Personal data: why the deal was lost, if it was and a reason was given.
    pub lost_reason: Option<String>,
    /// Every stay in a stage, oldest first; at most the last one is still open.
    pub stage_history: Vec<StageSpan>,
    /// Log position of the last opportunity event folded (also when it changed nothing).
    pub last_position: u64,
}

/// Folds one event into `opp`. Events of other categories leave it untouched; every
/// opportunity event records its position and, the first time, the deal's id.
pub fn apply(opp: &mut Opportunity, event: &ProjectedEvent) {
    let at = event.occurred_at;
    let entity_id = match &event.event {
        DomainEvent::OpportunityOpened(data) => &data.opportunity_id,
        DomainEvent::OpportunityStageChanged(data) => &data.opportunity_id,
        DomainEvent::OpportunityUpdated(data) => &data.opportunity_id,
        DomainEvent::OpportunityWon(data) => &data.opportunity_id,
        DomainEvent::OpportunityLost(data) => &data.opportunity_id,
        _ => return,
    };
    opp.last_position = event.position;
    if opp.opportunity_id.is_none() {
        opp.opportunity_id = Some(entity_id.clone());
    }
    let closed = matches!(opp.status, OpportunityStatus::Won | OpportunityStatus::Lost);
    match &event.event {
        DomainEvent::OpportunityOpened(data) => {
            if opp.status != OpportunityStatus::Unknown {
                return;
            }
            opp.customer_id = Some(data.customer_id.clone());
            opp.name = crm_core::privacy::readable(&data.name);
            opp.amount = Some(data.amount);
            opp.stage = Some(data.stage);
            opp.probability = data
                .probability
                .unwrap_or_else(|| data.stage.default_probability());
            opp.forecast_category = Some(
                data.forecast_category
                    .unwrap_or_else(|| data.stage.default_forecast_category()),
            );
            opp.close_date = Some(data.close_date);
            if let Some(owner) = &data.owner {
                opp.owner = Some(owner.clone());
            }
            opp.status = OpportunityStatus::Open;
            opp.opened_at = Some(at);
            opp.stage_history = vec![StageSpan {
                stage: data.stage,
                entered_at: at,
                left_at: None,
            }];
        }
        DomainEvent::OpportunityStageChanged(data) => {
            if closed {
                return;
            }
            opp.enter_stage(data.stage, at);
            opp.probability = data
                .probability
                .unwrap_or_else(|| data.stage.default_probability());
            opp.forecast_category = Some(
                data.forecast_category
                    .unwrap_or_else(|| data.stage.default_forecast_category()),
            );
        }
        DomainEvent::OpportunityUpdated(data) => {
            if closed {
                return;
            }
            if let Some(name) = &data.name {
                opp.name = crm_core::privacy::readable(name);
            }
            if let Some(amount) = data.amount {
                opp.amount = Some(amount);
            }
            if let Some(close_date) = data.close_date {
                opp.close_date = Some(close_date);
            }
            if let Some(owner) = &data.owner {
                opp.owner = Some(owner.clone());
            }
            if let Some(probability) = data.probability {
                opp.probability = probability;
            }
            if let Some(category) = data.forecast_category {
                opp.forecast_category = Some(category);
            }
        }
        DomainEvent::OpportunityWon(_) => {
            if closed {
                return;
            }
            opp.close(
                OpportunityStatus::Won,
                Stage::ClosedWon,
                WON_PROBABILITY,
                ForecastCategory::Closed,
                at,
            );
        }
        DomainEvent::OpportunityLost(data) => {
            if closed {
                return;
            }
            opp.close(
                OpportunityStatus::Lost,
                Stage::ClosedLost,
                LOST_PROBABILITY,
                ForecastCategory::Omitted,
                at,
            );
            opp.lost_reason = crm_core::privacy::readable_opt(&data.reason);
        }
        _ => {}
    }
}

impl Opportunity {
    /// The amount weighted by the win probability: `amount × probability / 100` in minor
    /// units, rounded half away from zero, in the amount's currency. `None` without an amount,
    /// or if the result does not fit 64-bit minor units (only possible with a probability
    /// above 100, which the catalog rejects).
    pub fn weighted_amount(&self) -> Option<Money> {
        let amount = self.amount?;
        let product = i128::from(amount.minor_units) * i128::from(self.probability);
        let quotient = product / 100;
        let remainder = product % 100;
        let rounded = if remainder.abs() * 2 >= 100 {
            quotient + product.signum()
        } else {
            quotient
        };
        let minor_units = i64::try_from(rounded).ok()?;
        Some(Money::new(minor_units, amount.currency))
    }

    /// The month of the expected close date, as `"YYYY-MM"`.
    pub fn close_month(&self) -> Option<String> {
        self.close_date.map(|date| date.format("%Y-%m").to_string())
    }

    /// The sales cycle in seconds: from the open to the win or loss, when both are known.
    /// A close recorded before the open counts as 0.
    pub fn cycle_seconds(&self) -> Option<i64> {
        let opened = self.opened_at?;
        let closed = self.closed_at?;
        Some((closed - opened).num_seconds().max(0))
    }

    /// Seconds spent in each stay of [`Opportunity::stage_history`], in history order. The
    /// stay still open is measured up to `now`; negative durations (clock skew between
    /// emitters, `now` before the entry) count as 0.
    pub fn stage_durations(&self, now: DateTime<Utc>) -> Vec<(Stage, i64)> {
        self.stage_history
            .iter()
            .map(|span| {
                let end = span.left_at.unwrap_or(now);
                (span.stage, (end - span.entered_at).num_seconds().max(0))
            })
            .collect()
    }

    /// The deal as it stood at business time `t`, as far as the stage history tells; `None`
    /// if it was not opened (nor closed) by `t`.
    ///
    /// A deal won or lost by `t` is as it is now (nothing changes a closed deal). A deal
    /// still open at `t` is in the stage of its last stay entered by `t`, with the stays
    /// after `t` dropped and the one it was in left open; its probability and forecast
    /// category are today's if that is still its stage, else the stage's defaults. The
    /// history keeps stages only: the amount, close date and owner are today's.
    pub fn as_of(&self, t: DateTime<Utc>) -> Option<Opportunity> {
        let since = self.opened_at.or(self.closed_at)?;
        if since > t {
            return None;
        }
        if self.closed_at.is_some_and(|closed| closed <= t) {
            return Some(self.clone());
        }
        let mut past = self.clone();
        past.status = OpportunityStatus::Open;
        past.closed_at = None;
        past.lost_reason = None;
        past.stage_history.retain(|span| span.entered_at <= t);
        if let Some(last) = past.stage_history.last_mut() {
            if last.left_at.is_some_and(|left| left > t) {
                last.left_at = None;
            }
            if Some(last.stage) != self.stage || self.closed_at.is_some() {
                past.probability = last.stage.default_probability();
                past.forecast_category = Some(last.stage.default_forecast_category());
            }
            past.stage = Some(last.stage);
        }
        Some(past)
    }

    /// Clears the personal fields (the name and the lost reason), for when the customer is
    /// erased. Amounts, stages and dates stay: they are not personal data.
    pub fn erase_personal(&mut self) {
        self.name = None;
        self.lost_reason = None;
    }

    /// Leaves the current stay (if one is open) and starts one in `stage` at `at`.
    fn enter_stage(&mut self, stage: Stage, at: DateTime<Utc>) {
        if let Some(last) = self.stage_history.last_mut()
            && last.left_at.is_none()
        {
            last.left_at = Some(at);
        }
        self.stage_history.push(StageSpan {
            stage,
            entered_at: at,
            left_at: None,
        });
        self.stage = Some(stage);
    }

    /// Records the win or loss at `at`.
    fn close(
        &mut self,
        status: OpportunityStatus,
        stage: Stage,
        probability: u8,
        category: ForecastCategory,
        at: DateTime<Utc>,
    ) {
        self.enter_stage(stage, at);
        self.status = status;
        self.probability = probability;
        self.forecast_category = Some(category);
        self.closed_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ev, id};
    use chrono::TimeZone;
    use crm_core::money::currency::Currency;
    use serde_json::json;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, hour, minute, 0).unwrap()
    }

    fn fold(events: &[ProjectedEvent]) -> Opportunity {
        let mut opp = Opportunity::default();
        for e in events {
            apply(&mut opp, e);
        }
        opp
    }

    fn eur(amount: &str) -> Money {
        Money::parse(amount, "EUR").unwrap()
    }

    fn opened(position: u64, occurred_at: DateTime<Utc>) -> ProjectedEvent {
        ev(
            position,
            occurred_at,
            "OpportunityOpened",
            json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "Renewal 2027",
                   "amount": "12000.00", "currency": "EUR", "stage": "Prospecting",
                   "close_date": "2027-01-31", "owner": "u-7"}),
        )
    }

    fn span(stage: Stage, entered_at: DateTime<Utc>, left_at: Option<DateTime<Utc>>) -> StageSpan {
        StageSpan {
            stage,
            entered_at,
            left_at,
        }
    }

    #[test]
    fn open_sets_every_field_with_stage_defaults() {
        let opp = fold(&[opened(7, at(9, 0))]);
        assert_eq!(opp.opportunity_id, Some(id("op-5")));
        assert_eq!(opp.customer_id, Some(id("c-42")));
        assert_eq!(opp.name.as_deref(), Some("Renewal 2027"));
        assert_eq!(opp.amount, Some(eur("12000.00")));
        assert_eq!(opp.stage, Some(Stage::Prospecting));
        assert_eq!(opp.probability, 10);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::Pipeline));
        assert_eq!(opp.close_date, NaiveDate::from_ymd_opt(2027, 1, 31));
        assert_eq!(opp.owner, Some(id("u-7")));
        assert_eq!(opp.status, OpportunityStatus::Open);
        assert_eq!(opp.opened_at, Some(at(9, 0)));
        assert_eq!(opp.closed_at, None);
        assert_eq!(opp.lost_reason, None);
        assert_eq!(
            opp.stage_history,
            vec![span(Stage::Prospecting, at(9, 0), None)]
        );
        assert_eq!(opp.last_position, 7);
        assert_eq!(opp.close_month().as_deref(), Some("2027-01"));
    }

    #[test]
    fn open_overrides_win_over_stage_defaults() {
        let opp = fold(&[ev(
            1,
            at(9, 0),
            "OpportunityOpened",
            json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "Pilot",
                   "amount": "0.00", "currency": "EUR", "stage": "Prospecting",
                   "close_date": "2026-12-31", "probability": 15,
                   "forecast_category": "Best Case"}),
        )]);
        assert_eq!(opp.probability, 15);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::BestCase));
        assert_eq!(opp.owner, None);
        assert_eq!(opp.amount, Some(eur("0")));
    }

    #[test]
    fn open_through_stage_changes_to_won_keeps_exact_spans_and_durations() {
        let opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(10, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Qualification"}),
            ),
            ev(
                3,
                at(10, 30),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 60,
                       "forecast_category": "Commit"}),
            ),
            ev(
                4,
                at(12, 0),
                "OpportunityWon",
                json!({"opportunity_id": "op-5"}),
            ),
        ]);
        assert_eq!(opp.status, OpportunityStatus::Won);
        assert_eq!(opp.stage, Some(Stage::ClosedWon));
        assert_eq!(opp.probability, 100);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::Closed));
        assert_eq!(opp.closed_at, Some(at(12, 0)));
        assert_eq!(opp.last_position, 4);
        assert_eq!(
            opp.stage_history,
            vec![
                span(Stage::Prospecting, at(9, 0), Some(at(10, 0))),
                span(Stage::Qualification, at(10, 0), Some(at(10, 30))),
                span(Stage::Proposal, at(10, 30), Some(at(12, 0))),
                span(Stage::ClosedWon, at(12, 0), None),
            ]
        );
        assert_eq!(
            opp.stage_durations(at(13, 15)),
            vec![
                (Stage::Prospecting, 3600),
                (Stage::Qualification, 1800),
                (Stage::Proposal, 5400),
                (Stage::ClosedWon, 4500),
            ]
        );
        assert_eq!(opp.cycle_seconds(), Some(3 * 3600));
    }

    #[test]
    fn stage_change_uses_new_stage_defaults_or_the_given_overrides() {
        let mut opp = fold(&[opened(1, at(9, 0))]);
        apply(
            &mut opp,
            &ev(
                2,
                at(10, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Negotiation"}),
            ),
        );
        assert_eq!(opp.stage, Some(Stage::Negotiation));
        assert_eq!(opp.probability, 80);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::Commit));
        apply(
            &mut opp,
            &ev(
                3,
                at(11, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 35}),
            ),
        );
        assert_eq!(opp.probability, 35);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::BestCase));
        apply(
            &mut opp,
            &ev(
                4,
                at(12, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Qualification",
                       "forecast_category": "Omitted"}),
            ),
        );
        assert_eq!(opp.probability, 20);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::Omitted));
        assert_eq!(opp.status, OpportunityStatus::Open);
    }

    #[test]
    fn update_sets_only_the_fields_it_carries() {
        let mut opp = fold(&[opened(1, at(9, 0))]);
        apply(
            &mut opp,
            &ev(
                2,
                at(10, 0),
                "OpportunityUpdated",
                json!({"opportunity_id": "op-5", "close_date": "2027-03-31"}),
            ),
        );
        assert_eq!(opp.close_date, NaiveDate::from_ymd_opt(2027, 3, 31));
        assert_eq!(opp.name.as_deref(), Some("Renewal 2027"));
        assert_eq!(opp.amount, Some(eur("12000.00")));
        assert_eq!(opp.probability, 10);
        assert_eq!(opp.last_position, 2);
        apply(
            &mut opp,
            &ev(
                3,
                at(11, 0),
                "OpportunityUpdated",
                json!({"opportunity_id": "op-5", "name": "Renewal 2027 (3 years)",
                       "amount": "30000", "currency": "JPY", "owner": "u-8",
                       "probability": 70, "forecast_category": "Commit"}),
            ),
        );
        assert_eq!(opp.name.as_deref(), Some("Renewal 2027 (3 years)"));
        assert_eq!(opp.amount, Some(Money::parse("30000", "JPY").unwrap()));
        assert_eq!(opp.owner, Some(id("u-8")));
        assert_eq!(opp.probability, 70);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::Commit));
        assert_eq!(opp.stage, Some(Stage::Prospecting));
        assert_eq!(opp.stage_history.len(), 1);
    }

    #[test]
    fn lost_records_the_reason_and_the_closed_lost_span() {
        let opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(9, 45),
                "OpportunityLost",
                json!({"opportunity_id": "op-5", "reason": "price"}),
            ),
        ]);
        assert_eq!(opp.status, OpportunityStatus::Lost);
        assert_eq!(opp.stage, Some(Stage::ClosedLost));
        assert_eq!(opp.probability, 0);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::Omitted));
        assert_eq!(opp.closed_at, Some(at(9, 45)));
        assert_eq!(opp.lost_reason.as_deref(), Some("price"));
        assert_eq!(
            opp.stage_history,
            vec![
                span(Stage::Prospecting, at(9, 0), Some(at(9, 45))),
                span(Stage::ClosedLost, at(9, 45), None),
            ]
        );
        assert_eq!(opp.cycle_seconds(), Some(45 * 60));
        assert_eq!(opp.weighted_amount(), Some(eur("0.00")));
    }

    #[test]
    fn repeated_open_is_ignored_but_its_position_is_recorded() {
        let mut opp = fold(&[opened(1, at(9, 0))]);
        let before = opp.clone();
        apply(
            &mut opp,
            &ev(
                5,
                at(11, 0),
                "OpportunityOpened",
                json!({"opportunity_id": "op-5", "customer_id": "c-99", "name": "Other",
                       "amount": "1.00", "currency": "USD", "stage": "Proposal",
                       "close_date": "2028-01-01", "owner": "u-1"}),
            ),
        );
        assert_eq!(opp.last_position, 5);
        assert_eq!(
            Opportunity {
                last_position: 1,
                ..opp
            },
            before
        );
    }

    #[test]
    fn events_after_won_are_ignored() {
        let mut opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(10, 0),
                "OpportunityWon",
                json!({"opportunity_id": "op-5"}),
            ),
        ]);
        let won = opp.clone();
        let later = [
            ev(
                3,
                at(11, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Negotiation"}),
            ),
            ev(
                4,
                at(11, 5),
                "OpportunityUpdated",
                json!({"opportunity_id": "op-5", "name": "Changed", "probability": 5}),
            ),
            ev(
                5,
                at(11, 10),
                "OpportunityLost",
                json!({"opportunity_id": "op-5", "reason": "too late"}),
            ),
            ev(
                6,
                at(11, 15),
                "OpportunityWon",
                json!({"opportunity_id": "op-5"}),
            ),
        ];
        for e in &later {
            apply(&mut opp, e);
        }
        assert_eq!(opp.last_position, 6);
        assert_eq!(
            Opportunity {
                last_position: 2,
                ..opp
            },
            won
        );
    }

    #[test]
    fn events_before_the_open_are_kept_where_the_open_gives_nothing() {
        let opp = fold(&[
            ev(
                1,
                at(8, 0),
                "OpportunityUpdated",
                json!({"opportunity_id": "op-5", "owner": "u-3", "name": "Early name"}),
            ),
            ev(
                2,
                at(8, 30),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Qualification"}),
            ),
        ]);
        assert_eq!(opp.status, OpportunityStatus::Unknown);
        assert_eq!(opp.opportunity_id, Some(id("op-5")));
        assert_eq!(opp.owner, Some(id("u-3")));
        assert_eq!(opp.stage, Some(Stage::Qualification));
        assert_eq!(opp.probability, 20);
        assert_eq!(
            opp.stage_history,
            vec![span(Stage::Qualification, at(8, 30), None)]
        );
        assert_eq!(opp.last_position, 2);

        let mut opp = opp;
        apply(
            &mut opp,
            &ev(
                3,
                at(9, 0),
                "OpportunityOpened",
                json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "Pilot",
                       "amount": "10.00", "currency": "EUR", "stage": "Proposal",
                       "close_date": "2026-12-31"}),
            ),
        );
        assert_eq!(opp.status, OpportunityStatus::Open);
        assert_eq!(opp.owner, Some(id("u-3")), "the open gives no owner");
        assert_eq!(opp.name.as_deref(), Some("Pilot"));
        assert_eq!(opp.stage, Some(Stage::Proposal));
        assert_eq!(opp.probability, 50);
        assert_eq!(opp.forecast_category, Some(ForecastCategory::BestCase));
        assert_eq!(opp.opened_at, Some(at(9, 0)));
        assert_eq!(
            opp.stage_history,
            vec![span(Stage::Proposal, at(9, 0), None)]
        );
        assert_eq!(opp.last_position, 3);
    }

    #[test]
    fn a_close_before_the_open_makes_the_open_a_repeat() {
        let opp = fold(&[
            ev(
                1,
                at(8, 0),
                "OpportunityLost",
                json!({"opportunity_id": "op-5"}),
            ),
            opened(2, at(9, 0)),
            ev(
                3,
                at(10, 0),
                "OpportunityWon",
                json!({"opportunity_id": "op-5"}),
            ),
        ]);
        assert_eq!(opp.status, OpportunityStatus::Lost);
        assert_eq!(opp.stage, Some(Stage::ClosedLost));
        assert_eq!(opp.closed_at, Some(at(8, 0)));
        assert_eq!(opp.lost_reason, None);
        assert_eq!(opp.opened_at, None);
        assert_eq!(opp.customer_id, None);
        assert_eq!(
            opp.stage_history,
            vec![span(Stage::ClosedLost, at(8, 0), None)]
        );
        assert_eq!(opp.cycle_seconds(), None);
        assert_eq!(opp.last_position, 3);
    }

    #[test]
    fn other_categories_are_ignored_entirely() {
        let mut opp = fold(&[opened(1, at(9, 0))]);
        let before = opp.clone();
        apply(
            &mut opp,
            &ev(9, at(10, 0), "CaseClosed", json!({"case_id": "k-3"})),
        );
        assert_eq!(opp, before);
        let mut empty = Opportunity::default();
        apply(
            &mut empty,
            &ev(9, at(10, 0), "CaseClosed", json!({"case_id": "k-3"})),
        );
        assert_eq!(empty, Opportunity::default());
    }

    #[test]
    fn weighted_amount_rounds_half_away_from_zero() {
        let with = |minor_units: i64, probability: u8| Opportunity {
            amount: Some(Money::new(minor_units, Currency::parse("EUR").unwrap())),
            probability,
            ..Opportunity::default()
        };
        let minor = |opp: Opportunity| opp.weighted_amount().map(|m| m.minor_units);
        assert_eq!(minor(with(1005, 50)), Some(503));
        assert_eq!(minor(with(999, 10)), Some(100));
        assert_eq!(minor(with(1, 50)), Some(1));
        assert_eq!(minor(with(1, 49)), Some(0));
        assert_eq!(minor(with(1004, 50)), Some(502));
        assert_eq!(minor(with(-1005, 50)), Some(-503));
        assert_eq!(minor(with(-1, 50)), Some(-1));
        assert_eq!(minor(with(1_200_000, 100)), Some(1_200_000));
        assert_eq!(minor(with(1_200_000, 0)), Some(0));
        assert_eq!(minor(with(i64::MAX, 100)), Some(i64::MAX));
        assert_eq!(minor(with(i64::MAX, 101)), None);
        assert_eq!(Opportunity::default().weighted_amount(), None);
        let opp = with(1005, 50);
        assert_eq!(opp.weighted_amount().unwrap().currency.code(), "EUR");
    }

    #[test]
    fn durations_and_cycle_clamp_negative_time_to_zero() {
        let opp = Opportunity {
            opened_at: Some(at(12, 0)),
            closed_at: Some(at(11, 0)),
            stage_history: vec![
                span(Stage::Prospecting, at(10, 0), Some(at(9, 0))),
                span(Stage::Proposal, at(10, 0), None),
            ],
            ..Opportunity::default()
        };
        assert_eq!(opp.cycle_seconds(), Some(0));
        assert_eq!(
            opp.stage_durations(at(9, 30)),
            vec![(Stage::Prospecting, 0), (Stage::Proposal, 0)]
        );
        assert_eq!(
            opp.stage_durations(at(10, 1)),
            vec![(Stage::Prospecting, 0), (Stage::Proposal, 60)]
        );
        let open_only = fold(&[opened(1, at(9, 0))]);
        assert_eq!(open_only.cycle_seconds(), None);
        assert_eq!(Opportunity::default().close_month(), None);
        assert!(Opportunity::default().stage_durations(at(9, 0)).is_empty());
    }

    #[test]
    fn erase_personal_clears_name_and_lost_reason_only() {
        let mut opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(10, 0),
                "OpportunityLost",
                json!({"opportunity_id": "op-5", "reason": "Mr Smith went elsewhere"}),
            ),
        ]);
        let before = opp.clone();
        opp.erase_personal();
        assert_eq!(opp.name, None);
        assert_eq!(opp.lost_reason, None);
        assert_eq!(
            Opportunity {
                name: before.name.clone(),
                lost_reason: before.lost_reason.clone(),
                ..opp
            },
            before
        );
    }

    #[test]
    fn serde_round_trip_gives_back_the_same_opportunity() {
        let opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(10, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 60}),
            ),
            ev(
                3,
                at(11, 0),
                "OpportunityLost",
                json!({"opportunity_id": "op-5", "reason": "price"}),
            ),
        ]);
        let value = serde_json::to_value(&opp).unwrap();
        assert_eq!(value["status"], json!("lost"));
        assert_eq!(
            value["amount"],
            json!({"amount": "12000.00", "currency": "EUR"})
        );
        assert_eq!(value["stage"], json!("Closed Lost"));
        assert_eq!(value["stage_history"][1]["stage"], json!("Proposal"));
        let back: Opportunity = serde_json::from_value(value).unwrap();
        assert_eq!(back, opp);
        let empty: Opportunity =
            serde_json::from_str(&serde_json::to_string(&Opportunity::default()).unwrap()).unwrap();
        assert_eq!(empty, Opportunity::default());
    }

    #[test]
    fn as_of_gives_the_stage_of_the_moment_and_hides_later_facts() {
        let opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(10, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 60,
                       "forecast_category": "Commit"}),
            ),
            ev(
                3,
                at(11, 0),
                "OpportunityLost",
                json!({"opportunity_id": "op-5", "reason": "price"}),
            ),
        ]);
        assert_eq!(opp.as_of(at(8, 59)), None, "not opened yet");

        let first = opp.as_of(at(9, 0)).expect("opened at 9:00");
        assert_eq!(first.stage, Some(Stage::Prospecting));
        assert_eq!(first.status, OpportunityStatus::Open);
        assert_eq!((first.closed_at, first.lost_reason.clone()), (None, None));
        assert_eq!(first.probability, 10, "the stage's default");
        assert_eq!(first.forecast_category, Some(ForecastCategory::Pipeline));
        assert_eq!(
            first.stage_history,
            vec![span(Stage::Prospecting, at(9, 0), None)]
        );
        assert_eq!(first.cycle_seconds(), None);
        assert_eq!(first.amount, Some(eur("12000.00")));

        let second = opp.as_of(at(10, 59)).expect("open");
        assert_eq!(second.stage, Some(Stage::Proposal));
        assert_eq!(second.status, OpportunityStatus::Open);
        assert_eq!(second.probability, 50, "today's stage differs: the default");
        assert_eq!(
            second.stage_history,
            vec![
                span(Stage::Prospecting, at(9, 0), Some(at(10, 0))),
                span(Stage::Proposal, at(10, 0), None),
            ]
        );

        assert_eq!(opp.as_of(at(11, 0)).as_ref(), Some(&opp), "lost by then");
        assert_eq!(opp.as_of(at(23, 0)).as_ref(), Some(&opp));
    }

    #[test]
    fn as_of_keeps_todays_figures_while_the_stage_is_the_same() {
        let opp = fold(&[
            opened(1, at(9, 0)),
            ev(
                2,
                at(10, 0),
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 60,
                       "forecast_category": "Commit"}),
            ),
        ]);
        let past = opp.as_of(at(10, 30)).expect("open");
        assert_eq!(past, opp, "nothing happened after 10:30");
        let no_open = fold(&[ev(
            1,
            at(12, 0),
            "OpportunityWon",
            json!({"opportunity_id": "op-5"}),
        )]);
        assert_eq!(no_open.as_of(at(11, 0)), None);
        assert_eq!(no_open.as_of(at(12, 0)).as_ref(), Some(&no_open));
    }
}
