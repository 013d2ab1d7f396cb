//! Given/when/then tests of the opportunity rules.

use chrono::NaiveDate;

use crate::aggregates::opportunity::{Command, State, decide, evolve};
use crate::aggregates::testing::{self, id};
use crate::catalog::DomainEvent;
use crate::catalog::opportunity::{
    OpportunityLost, OpportunityOpened, OpportunityStageChanged, OpportunityUpdated, OpportunityWon,
};
use crate::catalog::values::{ForecastCategory, Stage};
use crate::money::Money;

testing::decider!(Opportunity);

fn opened_in(stage: Stage) -> OpportunityOpened {
    OpportunityOpened {
        opportunity_id: id("op-5"),
        customer_id: id("c-42"),
        name: "Renewal 2027".into(),
        amount: Money::parse("12000.00", "EUR").unwrap(),
        stage,
        close_date: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
        owner: Some(id("u-7")),
        probability: None,
        forecast_category: None,
    }
}

fn opened() -> DomainEvent {
    DomainEvent::OpportunityOpened(opened_in(Stage::Prospecting))
}

fn stage_changed(stage: Stage) -> OpportunityStageChanged {
    OpportunityStageChanged {
        opportunity_id: id("op-5"),
        stage,
        probability: None,
        forecast_category: None,
    }
}

fn updated_amount(amount: &str, currency: &str) -> OpportunityUpdated {
    OpportunityUpdated {
        opportunity_id: id("op-5"),
        name: None,
        amount: Some(Money::parse(amount, currency).unwrap()),
        close_date: None,
        owner: None,
        probability: None,
        forecast_category: None,
    }
}

fn won() -> OpportunityWon {
    OpportunityWon {
        opportunity_id: id("op-5"),
    }
}

fn lost() -> OpportunityLost {
    OpportunityLost {
        opportunity_id: id("op-5"),
        reason: Some("price".into()),
    }
}

#[test]
fn a_new_opportunity_can_be_opened_with_a_zero_amount() {
    let mut free = opened_in(Stage::Qualification);
    free.amount = Money::parse("0", "EUR").unwrap();
    given(vec![])
        .when(Command::OpenOpportunity(free.clone()))
        .then(vec![DomainEvent::OpportunityOpened(free)]);
}

#[test]
fn an_opportunity_cannot_be_opened_with_a_negative_amount() {
    let mut negative = opened_in(Stage::Prospecting);
    negative.amount = Money::parse("-1", "EUR").unwrap();
    given(vec![])
        .when(Command::OpenOpportunity(negative))
        .then_rejected("amount must not be negative");
}

#[test]
fn an_opportunity_is_opened_only_once() {
    given(vec![opened()])
        .when(Command::OpenOpportunity(opened_in(Stage::Proposal)))
        .then_rejected("opportunity op-5 cannot be opened: it was already opened");
}

#[test]
fn an_opportunity_cannot_be_opened_in_a_closed_stage() {
    given(vec![])
        .when(Command::OpenOpportunity(opened_in(Stage::ClosedWon)))
        .then_rejected("it cannot start in stage Closed Won");
}

#[test]
fn nothing_happens_to_an_opportunity_before_it_is_opened() {
    for command in [
        Command::ChangeOpportunityStage(stage_changed(Stage::Proposal)),
        Command::UpdateOpportunity(updated_amount("1", "EUR")),
        Command::WinOpportunity(won()),
        Command::LoseOpportunity(lost()),
    ] {
        given(vec![])
            .when(command)
            .then_rejected("it was never opened");
    }
}

#[test]
fn an_open_opportunity_moves_between_open_stages() {
    given(vec![opened()])
        .when(Command::ChangeOpportunityStage(stage_changed(
            Stage::Proposal,
        )))
        .then(vec![DomainEvent::OpportunityStageChanged(stage_changed(
            Stage::Proposal,
        ))]);
    given(vec![
        opened(),
        DomainEvent::OpportunityStageChanged(stage_changed(Stage::Negotiation)),
    ])
    .when(Command::ChangeOpportunityStage(stage_changed(
        Stage::Qualification,
    )))
    .then(vec![DomainEvent::OpportunityStageChanged(stage_changed(
        Stage::Qualification,
    ))]);
}

#[test]
fn a_stage_change_cannot_reach_the_closed_stages() {
    given(vec![opened()])
        .when(Command::ChangeOpportunityStage(stage_changed(
            Stage::ClosedWon,
        )))
        .then_rejected(
            "stage Closed Won is reached by recording OpportunityWon, not by a stage change",
        );
    given(vec![opened()])
        .when(Command::ChangeOpportunityStage(stage_changed(
            Stage::ClosedLost,
        )))
        .then_rejected("by recording OpportunityLost");
}

#[test]
fn a_change_to_the_current_stage_needs_a_new_probability_or_category() {
    given(vec![opened()])
        .when(Command::ChangeOpportunityStage(stage_changed(
            Stage::Prospecting,
        )))
        .then_rejected("it is already in stage Prospecting");
    let mut reforecast = stage_changed(Stage::Prospecting);
    reforecast.forecast_category = Some(ForecastCategory::BestCase);
    given(vec![opened()])
        .when(Command::ChangeOpportunityStage(reforecast.clone()))
        .then(vec![DomainEvent::OpportunityStageChanged(reforecast)]);
}

#[test]
fn an_update_may_restate_the_amount_in_another_currency() {
    given(vec![opened()])
        .when(Command::UpdateOpportunity(updated_amount("1500000", "JPY")))
        .then(vec![DomainEvent::OpportunityUpdated(updated_amount(
            "1500000", "JPY",
        ))]);
}

#[test]
fn won_or_lost_opportunities_cannot_change_stage_or_be_updated() {
    for (closing, reason) in [
        (DomainEvent::OpportunityWon(won()), "it was won"),
        (DomainEvent::OpportunityLost(lost()), "it was lost"),
    ] {
        given(vec![opened(), closing.clone()])
            .when(Command::ChangeOpportunityStage(stage_changed(
                Stage::Proposal,
            )))
            .then_rejected(reason);
        given(vec![opened(), closing])
            .when(Command::UpdateOpportunity(updated_amount("1", "EUR")))
            .then_rejected(reason);
    }
}

#[test]
fn an_open_opportunity_can_be_won_or_lost() {
    given(vec![opened()])
        .when(Command::WinOpportunity(won()))
        .then(vec![DomainEvent::OpportunityWon(won())]);
    given(vec![opened()])
        .when(Command::LoseOpportunity(lost()))
        .then(vec![DomainEvent::OpportunityLost(lost())]);
}

#[test]
fn a_lost_opportunity_cannot_be_won_and_a_won_one_cannot_be_lost() {
    given(vec![opened(), DomainEvent::OpportunityLost(lost())])
        .when(Command::WinOpportunity(won()))
        .then_rejected("opportunity op-5 cannot be won: it was lost");
    given(vec![opened(), DomainEvent::OpportunityWon(won())])
        .when(Command::LoseOpportunity(lost()))
        .then_rejected("opportunity op-5 cannot be lost: it was won");
}

#[test]
fn an_opportunity_is_won_or_lost_only_once() {
    given(vec![opened(), DomainEvent::OpportunityWon(won())])
        .when(Command::WinOpportunity(won()))
        .then_rejected("opportunity op-5 cannot be won: it was already won");
    given(vec![opened(), DomainEvent::OpportunityLost(lost())])
        .when(Command::LoseOpportunity(lost()))
        .then_rejected("opportunity op-5 cannot be lost: it was already lost");
}
