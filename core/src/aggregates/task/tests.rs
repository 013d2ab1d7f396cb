//! Given/when/then tests of the task rules.

use chrono::{TimeZone, Utc};

use crate::aggregates::task::{Command, State, decide, evolve};
use crate::aggregates::testing::{self, id};
use crate::catalog::DomainEvent;
use crate::catalog::task::{TaskCancelled, TaskCompleted, TaskCreated, TaskRescheduled};
use crate::catalog::values::TaskSubjectKind;

testing::decider!(Task);

fn created() -> TaskCreated {
    TaskCreated {
        task_id: id("t-1"),
        subject_type: TaskSubjectKind::Opportunity,
        subject_id: id("op-5"),
        owner: id("u-7"),
        due_at: Utc.with_ymd_and_hms(2027, 1, 31, 17, 0, 0).unwrap(),
        title: "Send the quote".into(),
    }
}

fn rescheduled() -> TaskRescheduled {
    TaskRescheduled {
        task_id: id("t-1"),
        due_at: Utc.with_ymd_and_hms(2027, 2, 3, 9, 0, 0).unwrap(),
    }
}

fn completed() -> TaskCompleted {
    TaskCompleted { task_id: id("t-1") }
}

fn cancelled() -> TaskCancelled {
    TaskCancelled { task_id: id("t-1") }
}

#[test]
fn a_task_is_created_once_then_rescheduled_and_completed() {
    given(vec![])
        .when(Command::CreateTask(created()))
        .then(vec![DomainEvent::TaskCreated(created())]);
    given(vec![DomainEvent::TaskCreated(created())])
        .when(Command::CreateTask(created()))
        .then_rejected("task t-1 cannot be created: it was already created");
    given(vec![DomainEvent::TaskCreated(created())])
        .when(Command::RescheduleTask(rescheduled()))
        .then(vec![DomainEvent::TaskRescheduled(rescheduled())]);
    given(vec![
        DomainEvent::TaskCreated(created()),
        DomainEvent::TaskRescheduled(rescheduled()),
    ])
    .when(Command::CompleteTask(completed()))
    .then(vec![DomainEvent::TaskCompleted(completed())]);
}

#[test]
fn nothing_happens_to_a_task_before_it_is_created() {
    for command in [
        Command::RescheduleTask(rescheduled()),
        Command::CompleteTask(completed()),
        Command::CancelTask(cancelled()),
    ] {
        given(vec![])
            .when(command)
            .then_rejected("it was never created");
    }
}

#[test]
fn a_completed_or_cancelled_task_cannot_change_again() {
    for (closing, reason) in [
        (DomainEvent::TaskCompleted(completed()), "it was completed"),
        (DomainEvent::TaskCancelled(cancelled()), "it was cancelled"),
    ] {
        for command in [
            Command::RescheduleTask(rescheduled()),
            Command::CompleteTask(completed()),
            Command::CancelTask(cancelled()),
        ] {
            given(vec![DomainEvent::TaskCreated(created()), closing.clone()])
                .when(command)
                .then_rejected(reason);
        }
    }
    given(vec![
        DomainEvent::TaskCreated(created()),
        DomainEvent::TaskCancelled(cancelled()),
    ])
    .when(Command::RescheduleTask(rescheduled()))
    .then_rejected("task t-1 cannot be rescheduled: it was cancelled");
}
