//! The task aggregate: creation, rescheduling, completion and cancellation on the
//! `task-<id>` stream.
//!
//! Rules:
//! - A task is created once, and nothing can happen to it before it is created.
//! - A task is open until it is completed or cancelled; then it is closed for good: it cannot
//!   be rescheduled, completed or cancelled again.

use crate::aggregates::{RuleViolation, check_target_and_data};
use crate::catalog::DomainEvent;
use crate::catalog::task::{TaskCancelled, TaskCompleted, TaskCreated, TaskRescheduled};
use crate::ids::EntityId;

const CATEGORY: &str = "task";

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    NotCreated,
    Open,
    Completed,
    Cancelled,
}

/// What the rules need to know about one task; `Default` is a task never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub task_id: Option<EntityId>,
    pub status: Status,
}

/// What can be asked of a task; each carries the data of the fact it would record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateTask(TaskCreated),
    RescheduleTask(TaskRescheduled),
    CompleteTask(TaskCompleted),
    CancelTask(TaskCancelled),
}

impl Command {
    /// The fact the command records when accepted.
    pub fn to_event(&self) -> DomainEvent {
        match self.clone() {
            Command::CreateTask(data) => DomainEvent::TaskCreated(data),
            Command::RescheduleTask(data) => DomainEvent::TaskRescheduled(data),
            Command::CompleteTask(data) => DomainEvent::TaskCompleted(data),
            Command::CancelTask(data) => DomainEvent::TaskCancelled(data),
        }
    }

    /// The command that would record `event`, if it is a task event.
    pub fn from_event(event: &DomainEvent) -> Option<Command> {
        Some(match event.clone() {
            DomainEvent::TaskCreated(data) => Command::CreateTask(data),
            DomainEvent::TaskRescheduled(data) => Command::RescheduleTask(data),
            DomainEvent::TaskCompleted(data) => Command::CompleteTask(data),
            DomainEvent::TaskCancelled(data) => Command::CancelTask(data),
            _ => return None,
        })
    }

    fn action(&self) -> &'static str {
        match self {
            Command::CreateTask(_) => "be created",
            Command::RescheduleTask(_) => "be rescheduled",
            Command::CompleteTask(_) => "be completed",
            Command::CancelTask(_) => "be cancelled",
        }
    }
}

/// Decides whether `command` may happen now and which facts it records.
pub fn decide(state: &State, command: Command) -> Result<Vec<DomainEvent>, RuleViolation> {
    let event = command.to_event();
    let action = command.action();
    check_target_and_data(CATEGORY, state.task_id.as_ref(), &event, action)?;
    let reason = match (&command, state.status) {
        (Command::CreateTask(_), Status::NotCreated) => None,
        (Command::CreateTask(_), _) => Some("it was already created"),
        (_, Status::NotCreated) => Some("it was never created"),
        (_, Status::Completed) => Some("it was completed"),
        (_, Status::Cancelled) => Some("it was cancelled"),
        (_, Status::Open) => None,
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
    if state.task_id.is_none() {
        state.task_id = Some(event.entity_id().clone());
    }
    state.status = match (event, state.status) {
        (DomainEvent::TaskCreated(_), Status::NotCreated) => Status::Open,
        (DomainEvent::TaskCompleted(_), Status::Open | Status::NotCreated) => Status::Completed,
        (DomainEvent::TaskCancelled(_), Status::Open | Status::NotCreated) => Status::Cancelled,
        (_, status) => status,
    };
    state
}

#[cfg(test)]
mod tests;
