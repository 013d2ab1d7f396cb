//! Given/when/then tests of the lead rules.

use crate::aggregates::lead::{Command, State, decide, evolve};
use crate::aggregates::testing::{self, id};
use crate::catalog::DomainEvent;
use crate::catalog::lead::{LeadCaptured, LeadConverted, LeadDisqualified, LeadQualified};

testing::decider!(Lead);

fn captured() -> LeadCaptured {
    LeadCaptured {
        lead_id: id("l-1"),
        name: Some("Grace Hopper".into()),
        email: None,
        phone: None,
        company: None,
        source: "web_form".into(),
        campaign_id: None,
        owner: None,
    }
}

fn qualified() -> LeadQualified {
    LeadQualified { lead_id: id("l-1") }
}

fn disqualified() -> LeadDisqualified {
    LeadDisqualified {
        lead_id: id("l-1"),
        reason: "no budget".into(),
    }
}

fn converted() -> LeadConverted {
    LeadConverted {
        lead_id: id("l-1"),
        customer_id: id("c-42"),
        opportunity_id: Some(id("op-5")),
    }
}

#[test]
fn a_new_lead_can_be_captured() {
    given(vec![])
        .when(Command::CaptureLead(captured()))
        .then(vec![DomainEvent::LeadCaptured(captured())]);
}

#[test]
fn a_lead_is_captured_only_once() {
    given(vec![DomainEvent::LeadCaptured(captured())])
        .when(Command::CaptureLead(captured()))
        .then_rejected("lead l-1 cannot be captured: it was already captured");
}

#[test]
fn nothing_happens_to_a_lead_before_it_is_captured() {
    for command in [
        Command::QualifyLead(qualified()),
        Command::DisqualifyLead(disqualified()),
        Command::ConvertLead(converted()),
    ] {
        given(vec![])
            .when(command)
            .then_rejected("it was never captured");
    }
}

#[test]
fn an_open_lead_can_be_qualified_once() {
    given(vec![DomainEvent::LeadCaptured(captured())])
        .when(Command::QualifyLead(qualified()))
        .then(vec![DomainEvent::LeadQualified(qualified())]);
    given(vec![
        DomainEvent::LeadCaptured(captured()),
        DomainEvent::LeadQualified(qualified()),
    ])
    .when(Command::QualifyLead(qualified()))
    .then_rejected("lead l-1 cannot be qualified: it is already qualified");
}

#[test]
fn an_open_or_qualified_lead_can_be_disqualified_once() {
    given(vec![
        DomainEvent::LeadCaptured(captured()),
        DomainEvent::LeadQualified(qualified()),
    ])
    .when(Command::DisqualifyLead(disqualified()))
    .then(vec![DomainEvent::LeadDisqualified(disqualified())]);
    given(vec![
        DomainEvent::LeadCaptured(captured()),
        DomainEvent::LeadDisqualified(disqualified()),
    ])
    .when(Command::DisqualifyLead(disqualified()))
    .then_rejected("it is already disqualified");
}

#[test]
fn a_disqualified_lead_cannot_be_qualified_or_converted() {
    let history = vec![
        DomainEvent::LeadCaptured(captured()),
        DomainEvent::LeadDisqualified(disqualified()),
    ];
    given(history.clone())
        .when(Command::QualifyLead(qualified()))
        .then_rejected("lead l-1 cannot be qualified: it was disqualified");
    given(history)
        .when(Command::ConvertLead(converted()))
        .then_rejected("lead l-1 cannot be converted: it was disqualified");
}

#[test]
fn a_lead_converts_once_with_or_without_qualification() {
    given(vec![DomainEvent::LeadCaptured(captured())])
        .when(Command::ConvertLead(converted()))
        .then(vec![DomainEvent::LeadConverted(converted())]);
    let history = vec![
        DomainEvent::LeadCaptured(captured()),
        DomainEvent::LeadQualified(qualified()),
        DomainEvent::LeadConverted(converted()),
    ];
    for command in [
        Command::ConvertLead(converted()),
        Command::QualifyLead(qualified()),
        Command::DisqualifyLead(disqualified()),
    ] {
        given(history.clone())
            .when(command)
            .then_rejected("it was already converted");
    }
}

#[test]
fn a_captured_lead_needs_some_contact_detail_even_when_built_in_code() {
    let mut anonymous = captured();
    anonymous.name = None;
    given(vec![])
        .when(Command::CaptureLead(anonymous))
        .then_rejected(
            "LeadCaptured: data: at least one of name, email, phone, company must be given",
        );
}
