//! The case aggregate: a service request's life on the `case-<id>` stream.
//!
//! Rules:
//! - A case is opened once, and nothing can happen to it before it is opened.
//! - It can be assigned while not closed (also when resolved, for follow-up); assigning it to
//!   the agent it already has is rejected.
//! - Responding and escalating happen only while it is open: a resolved case must be reopened
//!   first, so the response is not lost outside the SLA clocks, and a closed case cannot be
//!   responded to. Escalation never lowers the priority.
//! - It is resolved only when open, reopened only when resolved or closed, and closed when
//!   open or resolved (not twice).
//! - It is paused (waiting on the customer) only when open and not paused, and resumed only
//!   when paused; resolving or closing it ends a pause, and a reopened case runs.
//! - It is marked a complaint while not closed (again with another category to recategorise
//!   it); a resolution names a root cause only for a complaint. Whether the category or cause
//!   is one of the tenant's is judged against `settings-complaints` by the ingest
//!   ([`crate::command`]).
//! - Its customer's satisfaction (`CsatRecorded`) is recorded once, at any time after the
//!   open.

use crate::aggregates::{RuleViolation, check_target_and_data};
use crate::catalog::DomainEvent;
use crate::catalog::case::{
    CaseAssigned, CaseClosed, CaseEscalated, CaseMarkedComplaint, CaseOpened, CasePaused,
    CaseReopened, CaseResolved, CaseResponded, CaseResumed, CsatRecorded,
};
use crate::catalog::values::Priority;
use crate::ids::EntityId;

const CATEGORY: &str = "case";

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    NotOpened,
    Open,
    Resolved,
    Closed,
}

/// What the rules need to know about one case; `Default` is a case never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub case_id: Option<EntityId>,
    pub status: Status,
    /// The current priority, once opened.
    pub priority: Option<Priority>,
    /// The agent it is assigned to, if any.
    pub agent: Option<EntityId>,
    /// Paused (waiting on the customer) and not resumed since.
    pub paused: bool,
    /// Its complaint category, once marked a complaint.
    pub complaint: Option<EntityId>,
    /// Whether its CSAT answer was recorded.
    pub csat_recorded: bool,
}

/// What can be asked of a case; each carries the data of the fact it would record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OpenCase(CaseOpened),
    AssignCase(CaseAssigned),
    RespondToCase(CaseResponded),
    EscalateCase(CaseEscalated),
    ResolveCase(CaseResolved),
    ReopenCase(CaseReopened),
    CloseCase(CaseClosed),
    PauseCase(CasePaused),
    ResumeCase(CaseResumed),
    MarkComplaint(CaseMarkedComplaint),
    RecordCsat(CsatRecorded),
}

impl Command {
    /// The fact the command records when accepted.
    pub fn to_event(&self) -> DomainEvent {
        match self.clone() {
            Command::OpenCase(data) => DomainEvent::CaseOpened(data),
            Command::AssignCase(data) => DomainEvent::CaseAssigned(data),
            Command::RespondToCase(data) => DomainEvent::CaseResponded(data),
            Command::EscalateCase(data) => DomainEvent::CaseEscalated(data),
            Command::ResolveCase(data) => DomainEvent::CaseResolved(data),
            Command::ReopenCase(data) => DomainEvent::CaseReopened(data),
            Command::CloseCase(data) => DomainEvent::CaseClosed(data),
            Command::PauseCase(data) => DomainEvent::CasePaused(data),
            Command::ResumeCase(data) => DomainEvent::CaseResumed(data),
            Command::MarkComplaint(data) => DomainEvent::CaseMarkedComplaint(data),
            Command::RecordCsat(data) => DomainEvent::CsatRecorded(data),
        }
    }

    /// The command that would record `event`, if it is a case event.
    pub fn from_event(event: &DomainEvent) -> Option<Command> {
        Some(match event.clone() {
            DomainEvent::CaseOpened(data) => Command::OpenCase(data),
            DomainEvent::CaseAssigned(data) => Command::AssignCase(data),
            DomainEvent::CaseResponded(data) => Command::RespondToCase(data),
            DomainEvent::CaseEscalated(data) => Command::EscalateCase(data),
            DomainEvent::CaseResolved(data) => Command::ResolveCase(data),
            DomainEvent::CaseReopened(data) => Command::ReopenCase(data),
            DomainEvent::CaseClosed(data) => Command::CloseCase(data),
            DomainEvent::CasePaused(data) => Command::PauseCase(data),
            DomainEvent::CaseResumed(data) => Command::ResumeCase(data),
            DomainEvent::CaseMarkedComplaint(data) => Command::MarkComplaint(data),
            DomainEvent::CsatRecorded(data) => Command::RecordCsat(data),
            _ => return None,
        })
    }

    fn action(&self) -> String {
        match self {
            Command::OpenCase(_) => "be opened".to_owned(),
            Command::AssignCase(data) => format!("be assigned to {}", data.agent),
            Command::RespondToCase(_) => "be responded to".to_owned(),
            Command::EscalateCase(_) => "be escalated".to_owned(),
            Command::ResolveCase(_) => "be resolved".to_owned(),
            Command::ReopenCase(_) => "be reopened".to_owned(),
            Command::CloseCase(_) => "be closed".to_owned(),
            Command::PauseCase(_) => "be paused".to_owned(),
            Command::ResumeCase(_) => "be resumed".to_owned(),
            Command::MarkComplaint(data) => format!("be marked a {} complaint", data.category),
            Command::RecordCsat(_) => "record a CSAT answer".to_owned(),
        }
    }
}

/// Decides whether `command` may happen now and which facts it records.
pub fn decide(state: &State, command: Command) -> Result<Vec<DomainEvent>, RuleViolation> {
    let event = command.to_event();
    let action = command.action();
    check_target_and_data(CATEGORY, state.case_id.as_ref(), &event, &action)?;
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
    use Status::{Closed, NotOpened, Open, Resolved};
    let fixed = |reason: &str| Some(reason.to_owned());
    match (command, state.status) {
        (Command::OpenCase(_), NotOpened) => None,
        (Command::OpenCase(_), _) => fixed("it was already opened"),
        (_, NotOpened) => fixed("it was never opened"),
        (Command::RecordCsat(_), _) if state.csat_recorded => {
            fixed("its CSAT answer was already recorded")
        }
        (Command::RecordCsat(_), _) => None,
        (Command::MarkComplaint(data), Open | Resolved)
            if state.complaint.as_ref() == Some(&data.category) =>
        {
            Some(format!("it is already a {} complaint", data.category))
        }
        (Command::MarkComplaint(_), Open | Resolved) => None,
        (Command::ResolveCase(data), Open)
            if data.root_cause.is_some() && state.complaint.is_none() =>
        {
            fixed("a root cause is given only for a complaint; mark it a complaint first")
        }
        (Command::AssignCase(data), Open | Resolved)
            if state.agent.as_ref() == Some(&data.agent) =>
        {
            Some(format!("it is already assigned to {}", data.agent))
        }
        (Command::AssignCase(_), Open | Resolved) => None,
        (Command::EscalateCase(data), Open) => match (data.priority, state.priority) {
            (Some(new), Some(current)) if new < current => Some(format!(
                "escalation cannot lower its priority from {current} to {new}"
            )),
            _ => None,
        },
        (Command::PauseCase(_), Open) if state.paused => fixed("it is already paused"),
        (Command::PauseCase(_), Open) => None,
        (Command::ResumeCase(_), Open) if !state.paused => fixed("it is not paused"),
        (Command::ResumeCase(_), Open) => None,
        (Command::RespondToCase(_) | Command::ResolveCase(_), Open) => None,
        (Command::ReopenCase(_), Resolved | Closed) => None,
        (Command::CloseCase(_), Open | Resolved) => None,
        (Command::ReopenCase(_), Open) => fixed("it is already open"),
        (Command::ResolveCase(_), Resolved) => fixed("it is already resolved"),
        (Command::CloseCase(_), Closed) => fixed("it is already closed"),
        (_, Resolved) => fixed("it is resolved; reopen it first"),
        (_, Closed) => fixed("it is closed"),
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
    if state.case_id.is_none() {
        state.case_id = Some(event.entity_id().clone());
    }
    match event {
        DomainEvent::CaseOpened(data) if state.status == Status::NotOpened => {
            state.status = Status::Open;
            state.priority = Some(data.priority);
        }
        DomainEvent::CaseAssigned(data) => state.agent = Some(data.agent.clone()),
        DomainEvent::CaseEscalated(data) => {
            if let Some(priority) = data.priority {
                state.priority = Some(priority);
            }
        }
        DomainEvent::CaseResolved(_) => {
            state.status = Status::Resolved;
            state.paused = false;
        }
        DomainEvent::CaseReopened(_) => {
            state.status = Status::Open;
            state.paused = false;
        }
        DomainEvent::CaseClosed(_) => {
            state.status = Status::Closed;
            state.paused = false;
        }
        DomainEvent::CasePaused(_) => state.paused = true,
        DomainEvent::CaseResumed(_) => state.paused = false,
        DomainEvent::CaseMarkedComplaint(data) => state.complaint = Some(data.category.clone()),
        DomainEvent::CsatRecorded(_) => state.csat_recorded = true,
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests;
