//! Given/when/then tests of the case rules.

use crate::aggregates::case::{Command, State, decide, evolve};
use crate::aggregates::testing::{self, id};
use crate::catalog::DomainEvent;
use crate::catalog::case::{
    CaseAssigned, CaseClosed, CaseEscalated, CaseMarkedComplaint, CaseOpened, CasePaused,
    CaseReopened, CaseResolved, CaseResponded, CaseResumed, CsatRecorded,
};
use crate::catalog::values::{InteractionChannel, Priority};

testing::decider!(Case);

fn opened_data() -> CaseOpened {
    CaseOpened {
        case_id: id("k-3"),
        customer_id: id("c-42"),
        subject: "Cannot log in".into(),
        channel: InteractionChannel::Email,
        priority: Priority::High,
        description: None,
    }
}

fn opened() -> DomainEvent {
    DomainEvent::CaseOpened(opened_data())
}

fn assigned(agent: &str) -> CaseAssigned {
    CaseAssigned {
        case_id: id("k-3"),
        agent: id(agent),
    }
}

fn responded() -> CaseResponded {
    CaseResponded {
        case_id: id("k-3"),
        agent: id("u-9"),
    }
}

fn escalated(priority: Option<Priority>) -> CaseEscalated {
    CaseEscalated {
        case_id: id("k-3"),
        reason: None,
        priority,
    }
}

fn resolved() -> CaseResolved {
    CaseResolved {
        case_id: id("k-3"),
        resolution: Some("Mail filter fixed".into()),
        root_cause: None,
    }
}

fn reopened() -> CaseReopened {
    CaseReopened {
        case_id: id("k-3"),
        reason: None,
    }
}

fn closed() -> CaseClosed {
    CaseClosed { case_id: id("k-3") }
}

fn resolved_case() -> Vec<DomainEvent> {
    vec![opened(), DomainEvent::CaseResolved(resolved())]
}

fn closed_case() -> Vec<DomainEvent> {
    vec![opened(), DomainEvent::CaseClosed(closed())]
}

#[test]
fn a_new_case_can_be_opened_once() {
    given(vec![])
        .when(Command::OpenCase(opened_data()))
        .then(vec![opened()]);
    given(vec![opened()])
        .when(Command::OpenCase(opened_data()))
        .then_rejected("case k-3 cannot be opened: it was already opened");
}

#[test]
fn nothing_happens_to_a_case_before_it_is_opened() {
    for command in [
        Command::AssignCase(assigned("u-9")),
        Command::RespondToCase(responded()),
        Command::EscalateCase(escalated(None)),
        Command::ResolveCase(resolved()),
        Command::ReopenCase(reopened()),
        Command::CloseCase(closed()),
    ] {
        given(vec![])
            .when(command)
            .then_rejected("it was never opened");
    }
}

#[test]
fn an_open_case_can_be_assigned_responded_to_and_escalated() {
    given(vec![opened()])
        .when(Command::AssignCase(assigned("u-9")))
        .then(vec![DomainEvent::CaseAssigned(assigned("u-9"))]);
    given(vec![opened()])
        .when(Command::RespondToCase(responded()))
        .then(vec![DomainEvent::CaseResponded(responded())]);
    given(vec![opened()])
        .when(Command::EscalateCase(escalated(Some(Priority::Urgent))))
        .then(vec![DomainEvent::CaseEscalated(escalated(Some(
            Priority::Urgent,
        )))]);
}

#[test]
fn a_case_is_not_assigned_again_to_the_agent_it_has() {
    given(vec![opened(), DomainEvent::CaseAssigned(assigned("u-9"))])
        .when(Command::AssignCase(assigned("u-9")))
        .then_rejected("case k-3 cannot be assigned to u-9: it is already assigned to u-9");
    given(vec![opened(), DomainEvent::CaseAssigned(assigned("u-9"))])
        .when(Command::AssignCase(assigned("u-10")))
        .then(vec![DomainEvent::CaseAssigned(assigned("u-10"))]);
}

#[test]
fn a_resolved_case_can_be_reassigned_but_not_responded_to_or_escalated() {
    given(resolved_case())
        .when(Command::AssignCase(assigned("u-10")))
        .then(vec![DomainEvent::CaseAssigned(assigned("u-10"))]);
    given(resolved_case())
        .when(Command::RespondToCase(responded()))
        .then_rejected("case k-3 cannot be responded to: it is resolved; reopen it first");
    given(resolved_case())
        .when(Command::EscalateCase(escalated(None)))
        .then_rejected("it is resolved; reopen it first");
}

#[test]
fn a_closed_case_cannot_be_responded_to_assigned_or_escalated() {
    given(closed_case())
        .when(Command::RespondToCase(responded()))
        .then_rejected("case k-3 cannot be responded to: it is closed");
    given(closed_case())
        .when(Command::AssignCase(assigned("u-9")))
        .then_rejected("it is closed");
    given(closed_case())
        .when(Command::EscalateCase(escalated(None)))
        .then_rejected("it is closed");
}

#[test]
fn escalation_never_lowers_the_priority() {
    given(vec![opened()])
        .when(Command::EscalateCase(escalated(Some(Priority::Low))))
        .then_rejected("escalation cannot lower its priority from high to low");
    given(vec![
        opened(),
        DomainEvent::CaseEscalated(escalated(Some(Priority::Urgent))),
    ])
    .when(Command::EscalateCase(escalated(Some(Priority::High))))
    .then_rejected("from urgent to high");
}

#[test]
fn a_case_is_resolved_only_when_open() {
    given(vec![opened()])
        .when(Command::ResolveCase(resolved()))
        .then(vec![DomainEvent::CaseResolved(resolved())]);
    given(resolved_case())
        .when(Command::ResolveCase(resolved()))
        .then_rejected("it is already resolved");
    given(closed_case())
        .when(Command::ResolveCase(resolved()))
        .then_rejected("case k-3 cannot be resolved: it is closed");
}

#[test]
fn a_case_is_reopened_only_when_resolved_or_closed() {
    given(resolved_case())
        .when(Command::ReopenCase(reopened()))
        .then(vec![DomainEvent::CaseReopened(reopened())]);
    given(closed_case())
        .when(Command::ReopenCase(reopened()))
        .then(vec![DomainEvent::CaseReopened(reopened())]);
    given(vec![opened()])
        .when(Command::ReopenCase(reopened()))
        .then_rejected("case k-3 cannot be reopened: it is already open");
}

#[test]
fn a_case_is_closed_when_open_or_resolved_but_not_twice() {
    given(vec![opened()])
        .when(Command::CloseCase(closed()))
        .then(vec![DomainEvent::CaseClosed(closed())]);
    given(resolved_case())
        .when(Command::CloseCase(closed()))
        .then(vec![DomainEvent::CaseClosed(closed())]);
    given(closed_case())
        .when(Command::CloseCase(closed()))
        .then_rejected("case k-3 cannot be closed: it is already closed");
}

#[test]
fn a_reopened_case_can_be_responded_to_again() {
    let mut history = closed_case();
    history.push(DomainEvent::CaseReopened(reopened()));
    given(history)
        .when(Command::RespondToCase(responded()))
        .then(vec![DomainEvent::CaseResponded(responded())]);
}

fn marked(category: &str) -> CaseMarkedComplaint {
    CaseMarkedComplaint {
        case_id: id("k-3"),
        category: id(category),
    }
}

fn csat(score: u8) -> CsatRecorded {
    CsatRecorded {
        case_id: id("k-3"),
        score,
        comment: None,
    }
}

#[test]
fn a_case_is_marked_a_complaint_while_not_closed_and_recategorised_only_to_another_category() {
    given(vec![opened()])
        .when(Command::MarkComplaint(marked("billing")))
        .then(vec![DomainEvent::CaseMarkedComplaint(marked("billing"))]);
    given(resolved_case())
        .when(Command::MarkComplaint(marked("billing")))
        .then(vec![DomainEvent::CaseMarkedComplaint(marked("billing"))]);
    given(vec![
        opened(),
        DomainEvent::CaseMarkedComplaint(marked("billing")),
    ])
    .when(Command::MarkComplaint(marked("billing")))
    .then_rejected("it is already a billing complaint");
    given(vec![
        opened(),
        DomainEvent::CaseMarkedComplaint(marked("billing")),
    ])
    .when(Command::MarkComplaint(marked("delivery")))
    .then(vec![DomainEvent::CaseMarkedComplaint(marked("delivery"))]);
    given(closed_case())
        .when(Command::MarkComplaint(marked("billing")))
        .then_rejected("it is closed");
    given(vec![])
        .when(Command::MarkComplaint(marked("billing")))
        .then_rejected("it was never opened");
}

#[test]
fn a_root_cause_is_given_only_when_resolving_a_complaint() {
    let with_cause = CaseResolved {
        root_cause: Some(id("carrier_delay")),
        ..resolved()
    };
    given(vec![opened()])
        .when(Command::ResolveCase(with_cause.clone()))
        .then_rejected("a root cause is given only for a complaint");
    given(vec![
        opened(),
        DomainEvent::CaseMarkedComplaint(marked("billing")),
    ])
    .when(Command::ResolveCase(with_cause.clone()))
    .then(vec![DomainEvent::CaseResolved(with_cause)]);
}

#[test]
fn a_csat_answer_is_recorded_once_for_a_case_that_exists() {
    given(vec![])
        .when(Command::RecordCsat(csat(5)))
        .then_rejected("it was never opened");
    given(closed_case())
        .when(Command::RecordCsat(csat(5)))
        .then(vec![DomainEvent::CsatRecorded(csat(5))]);
    given(vec![opened(), DomainEvent::CsatRecorded(csat(2))])
        .when(Command::RecordCsat(csat(5)))
        .then_rejected("its CSAT answer was already recorded");
}

fn paused() -> CasePaused {
    CasePaused {
        case_id: id("k-3"),
        reason: Some("waiting for the customer's logs".into()),
    }
}

fn resumed() -> CaseResumed {
    CaseResumed { case_id: id("k-3") }
}

#[test]
fn an_open_case_is_paused_once_and_resumed_only_when_paused() {
    given(vec![opened()])
        .when(Command::PauseCase(paused()))
        .then(vec![DomainEvent::CasePaused(paused())]);
    given(vec![opened(), DomainEvent::CasePaused(paused())])
        .when(Command::PauseCase(paused()))
        .then_rejected("case k-3 cannot be paused: it is already paused");
    given(vec![opened()])
        .when(Command::ResumeCase(resumed()))
        .then_rejected("case k-3 cannot be resumed: it is not paused");
    given(vec![opened(), DomainEvent::CasePaused(paused())])
        .when(Command::ResumeCase(resumed()))
        .then(vec![DomainEvent::CaseResumed(resumed())]);
    // A paused case can still be answered, resolved or closed.
    given(vec![opened(), DomainEvent::CasePaused(paused())])
        .when(Command::RespondToCase(responded()))
        .then(vec![DomainEvent::CaseResponded(responded())]);
    given(resolved_case())
        .when(Command::PauseCase(paused()))
        .then_rejected("case k-3 cannot be paused: it is resolved; reopen it first");
    given(vec![])
        .when(Command::PauseCase(paused()))
        .then_rejected("case k-3 cannot be paused: it was never opened");
}

#[test]
fn resolving_or_closing_ends_a_pause_and_a_reopened_case_runs() {
    let mut history = vec![opened(), DomainEvent::CasePaused(paused())];
    history.push(DomainEvent::CaseResolved(resolved()));
    history.push(DomainEvent::CaseReopened(reopened()));
    given(history.clone())
        .when(Command::ResumeCase(resumed()))
        .then_rejected("case k-3 cannot be resumed: it is not paused");
    given(history)
        .when(Command::PauseCase(paused()))
        .then(vec![DomainEvent::CasePaused(paused())]);
}
