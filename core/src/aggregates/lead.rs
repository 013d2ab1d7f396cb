//! The lead aggregate: capture, qualification and conversion on the `lead-<id>` stream.
//!
//! Rules:
//! - A lead is captured once, and nothing can happen to it before it is captured.
//! - A lead is open from capture until it is disqualified or converted. Qualifying and
//!   disqualifying happen only while it is open; qualifying twice is rejected.
//! - A lead converts once; a disqualified lead cannot convert (and cannot be qualified again).
//!   Conversion does not require qualification first.

use crate::aggregates::{RuleViolation, check_target_and_data};
use crate::catalog::DomainEvent;
use crate::catalog::lead::{LeadCaptured, LeadConverted, LeadDisqualified, LeadQualified};
use crate::ids::EntityId;

const CATEGORY: &str = "lead";

/// Where a lead is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    NotCaptured,
    Open,
    Qualified,
    Disqualified,
    Converted,
}

/// What the rules need to know about one lead; `Default` is a lead never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub lead_id: Option<EntityId>,
    pub status: Status,
}

/// What can be asked of a lead; each carries the data of the fact it would record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CaptureLead(LeadCaptured),
    QualifyLead(LeadQualified),
    DisqualifyLead(LeadDisqualified),
    ConvertLead(LeadConverted),
}

impl Command {
    /// The fact the command records when accepted.
    pub fn to_event(&self) -> DomainEvent {
        match self.clone() {
            Command::CaptureLead(data) => DomainEvent::LeadCaptured(data),
            Command::QualifyLead(data) => DomainEvent::LeadQualified(data),
            Command::DisqualifyLead(data) => DomainEvent::LeadDisqualified(data),
            Command::ConvertLead(data) => DomainEvent::LeadConverted(data),
        }
    }

    /// The command that would record `event`, if it is a lead event.
    pub fn from_event(event: &DomainEvent) -> Option<Command> {
        Some(match event.clone() {
            DomainEvent::LeadCaptured(data) => Command::CaptureLead(data),
            DomainEvent::LeadQualified(data) => Command::QualifyLead(data),
            DomainEvent::LeadDisqualified(data) => Command::DisqualifyLead(data),
            DomainEvent::LeadConverted(data) => Command::ConvertLead(data),
            _ => return None,
        })
    }

    fn action(&self) -> &'static str {
        match self {
            Command::CaptureLead(_) => "be captured",
            Command::QualifyLead(_) => "be qualified",
            Command::DisqualifyLead(_) => "be disqualified",
            Command::ConvertLead(_) => "be converted",
        }
    }
}

/// Decides whether `command` may happen now and which facts it records.
pub fn decide(state: &State, command: Command) -> Result<Vec<DomainEvent>, RuleViolation> {
    let event = command.to_event();
    let action = command.action();
    check_target_and_data(CATEGORY, state.lead_id.as_ref(), &event, action)?;
    let reason = match (&command, state.status) {
        (Command::CaptureLead(_), Status::NotCaptured) => None,
        (Command::CaptureLead(_), _) => Some("it was already captured"),
        (_, Status::NotCaptured) => Some("it was never captured"),
        (_, Status::Converted) => Some("it was already converted"),
        (Command::QualifyLead(_), Status::Qualified) => Some("it is already qualified"),
        (Command::DisqualifyLead(_), Status::Disqualified) => Some("it is already disqualified"),
        (_, Status::Disqualified) => Some("it was disqualified"),
        _ => None,
    };
    match reason {
        Some(reason) => Err(RuleViolation::new(
            CATEGORY,
            event.entity_id(),
            action,
            reason,
        )),
        None => Ok(vec![event]),
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
    if state.lead_id.is_none() {
        state.lead_id = Some(event.entity_id().clone());
    }
    state.status = match event {
        DomainEvent::LeadCaptured(_) if state.status == Status::NotCaptured => Status::Open,
        DomainEvent::LeadQualified(_) => Status::Qualified,
        DomainEvent::LeadDisqualified(_) => Status::Disqualified,
        DomainEvent::LeadConverted(_) => Status::Converted,
        _ => state.status,
    };
    state
}

#[cfg(test)]
mod tests;
