//! The opportunity aggregate: a deal's life in the pipeline on the `opportunity-<id>` stream.
//!
//! Rules:
//! - An opportunity is opened once, in an open stage (not "Closed Won" or "Closed Lost"), and
//!   nothing can happen to it before it is opened.
//! - Stage changes and updates happen only while it is open (neither won nor lost). A stage
//!   change cannot reach "Closed Won" or "Closed Lost": record `OpportunityWon` or
//!   `OpportunityLost`. A change to the current stage is rejected unless it also overrides
//!   the probability or forecast category.
//! - An update carries amount and currency together, so it may restate the amount in another
//!   currency (a re-quoted deal); the new currency then applies to the whole deal.
//! - It is won or lost once: it cannot be won after it was lost, lost after it was won, nor
//!   won or lost twice.

use crate::aggregates::{RuleViolation, check_target_and_data};
use crate::catalog::DomainEvent;
use crate::catalog::opportunity::{
    OpportunityLost, OpportunityOpened, OpportunityStageChanged, OpportunityUpdated, OpportunityWon,
};
use crate::catalog::values::Stage;
use crate::ids::EntityId;

const CATEGORY: &str = "opportunity";

/// Where an opportunity is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    NotOpened,
    Open,
    Won,
    Lost,
}

/// What the rules need to know about one opportunity; `Default` is one never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub opportunity_id: Option<EntityId>,
    pub status: Status,
    /// The current stage, once opened.
    pub stage: Option<Stage>,
}

/// What can be asked of an opportunity; each carries the data of the fact it would record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OpenOpportunity(OpportunityOpened),
    ChangeOpportunityStage(OpportunityStageChanged),
    UpdateOpportunity(OpportunityUpdated),
    WinOpportunity(OpportunityWon),
    LoseOpportunity(OpportunityLost),
}

impl Command {
    /// The fact the command records when accepted.
    pub fn to_event(&self) -> DomainEvent {
        match self.clone() {
            Command::OpenOpportunity(data) => DomainEvent::OpportunityOpened(data),
            Command::ChangeOpportunityStage(data) => DomainEvent::OpportunityStageChanged(data),
            Command::UpdateOpportunity(data) => DomainEvent::OpportunityUpdated(data),
            Command::WinOpportunity(data) => DomainEvent::OpportunityWon(data),
            Command::LoseOpportunity(data) => DomainEvent::OpportunityLost(data),
        }
    }

    /// The command that would record `event`, if it is an opportunity event.
    pub fn from_event(event: &DomainEvent) -> Option<Command> {
        Some(match event.clone() {
            DomainEvent::OpportunityOpened(data) => Command::OpenOpportunity(data),
            DomainEvent::OpportunityStageChanged(data) => Command::ChangeOpportunityStage(data),
            DomainEvent::OpportunityUpdated(data) => Command::UpdateOpportunity(data),
            DomainEvent::OpportunityWon(data) => Command::WinOpportunity(data),
            DomainEvent::OpportunityLost(data) => Command::LoseOpportunity(data),
            _ => return None,
        })
    }

    fn action(&self) -> String {
        match self {
            Command::OpenOpportunity(_) => "be opened".to_owned(),
            Command::ChangeOpportunityStage(data) => format!("change stage to {}", data.stage),
            Command::UpdateOpportunity(_) => "be updated".to_owned(),
            Command::WinOpportunity(_) => "be won".to_owned(),
            Command::LoseOpportunity(_) => "be lost".to_owned(),
        }
    }
}

/// Decides whether `command` may happen now and which facts it records.
pub fn decide(state: &State, command: Command) -> Result<Vec<DomainEvent>, RuleViolation> {
    let event = command.to_event();
    let action = command.action();
    check_target_and_data(CATEGORY, state.opportunity_id.as_ref(), &event, &action)?;
    match reason_to_reject(state, &command) {
        Some(reason) => Err(RuleViolation::new(
            CATEGORY,
            event.entity_id(),
            action,
            reason,
        )),
        None => Ok(vec![event]),
    }
}

fn reason_to_reject(state: &State, command: &Command) -> Option<String> {
    match (command, state.status) {
        (Command::OpenOpportunity(data), Status::NotOpened) if data.stage.is_closed() => {
            Some(format!(
                "it cannot start in stage {}; open it in an open stage, then record OpportunityWon or OpportunityLost",
                data.stage
            ))
        }
        (Command::OpenOpportunity(_), Status::NotOpened) => None,
        (Command::OpenOpportunity(_), _) => Some("it was already opened".to_owned()),
        (_, Status::NotOpened) => Some("it was never opened".to_owned()),
        (Command::WinOpportunity(_), Status::Won) => Some("it was already won".to_owned()),
        (Command::LoseOpportunity(_), Status::Lost) => Some("it was already lost".to_owned()),
        (_, Status::Won) => Some("it was won".to_owned()),
        (_, Status::Lost) => Some("it was lost".to_owned()),
        (Command::ChangeOpportunityStage(data), Status::Open) => {
            if data.stage.is_closed() {
                let fact = if data.stage == Stage::ClosedWon {
                    "OpportunityWon"
                } else {
                    "OpportunityLost"
                };
                Some(format!(
                    "stage {} is reached by recording {fact}, not by a stage change",
                    data.stage
                ))
            } else if state.stage == Some(data.stage)
                && data.probability.is_none()
                && data.forecast_category.is_none()
            {
                Some(format!("it is already in stage {}", data.stage))
            } else {
                None
            }
        }
        (_, Status::Open) => None,
    }
}

/// Whether the fact `event` may be appended now; events of other categories pass.
pub fn check(state: &State, event: &DomainEvent) -> Result<(), RuleViolation> {
    match Command::from_event(event) {
        Some(command) => decide(state, command).map(drop),
        None => Ok(()),
    }
}

/// Applies a recorded fact; events of other categories leave the state unchanged.
pub fn evolve(mut state: State, event: &DomainEvent) -> State {
    if event.category() != CATEGORY {
        return state;
    }
    if state.opportunity_id.is_none() {
        state.opportunity_id = Some(event.entity_id().clone());
    }
    match event {
        DomainEvent::OpportunityOpened(data) if state.status == Status::NotOpened => {
            state.status = Status::Open;
            state.stage = Some(data.stage);
        }
        DomainEvent::OpportunityStageChanged(data) => state.stage = Some(data.stage),
        DomainEvent::OpportunityWon(_) => {
            state.status = Status::Won;
            state.stage = Some(Stage::ClosedWon);
        }
        DomainEvent::OpportunityLost(_) => {
            state.status = Status::Lost;
            state.stage = Some(Stage::ClosedLost);
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests;
