//! Tests of the top-level `aggregates::check` over a stream's past events.

use serde_json::json;

use crate::aggregates::check;
use crate::catalog::DomainEvent;

fn event(event_type: &str, data: serde_json::Value) -> DomainEvent {
    DomainEvent::parse(event_type, &data).unwrap()
}

#[test]
fn check_folds_the_past_events_of_the_new_events_entity() {
    let lost = event("OpportunityLost", json!({"opportunity_id": "op-5"}));
    let opened = event(
        "OpportunityOpened",
        json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "Renewal", "amount": "1", "currency": "EUR", "stage": "Prospecting", "close_date": "2027-01-31"}),
    );
    let won = event("OpportunityWon", json!({"opportunity_id": "op-5"}));
    let err = check(&[opened.clone(), lost], &won).unwrap_err();
    assert_eq!(
        err.to_string(),
        "opportunity op-5 cannot be won: it was lost"
    );
    assert_eq!(check(&[opened], &won), Ok(()));
}

#[test]
fn check_ignores_past_events_of_other_entities_and_categories() {
    let closed_other = event("CaseClosed", json!({"case_id": "k-4"}));
    let opened = event(
        "CaseOpened",
        json!({"case_id": "k-3", "customer_id": "c-42", "subject": "s", "channel": "web", "priority": "low"}),
    );
    let order = event(
        "OrderPlaced",
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": "1", "currency": "USD"}),
    );
    let respond = event("CaseResponded", json!({"case_id": "k-3", "agent": "u-9"}));
    assert_eq!(check(&[opened, closed_other, order], &respond), Ok(()));
}

#[test]
fn check_accepts_customer_facts_for_a_customer_never_seen() {
    let order = event(
        "OrderPlaced",
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": "1", "currency": "USD"}),
    );
    assert_eq!(check(&[], &order), Ok(()));
}

#[test]
fn check_rejects_lead_facts_before_capture() {
    let qualified = event("LeadQualified", json!({"lead_id": "l-1"}));
    assert_eq!(
        check(&[], &qualified).unwrap_err().to_string(),
        "lead l-1 cannot be qualified: it was never captured"
    );
}

#[test]
fn campaign_events_are_always_accepted() {
    let member = event(
        "CampaignMemberAdded",
        json!({"campaign_id": "cmp-1", "lead_id": "l-1"}),
    );
    assert_eq!(check(&[member.clone(), member.clone()], &member), Ok(()));
}

#[test]
fn each_aggregate_passes_facts_of_other_categories_without_judging_them() {
    let won = event("OpportunityWon", json!({"opportunity_id": "op-5"}));
    let closed = event("CaseClosed", json!({"case_id": "k-3"}));
    assert_eq!(
        crate::aggregates::customer::check(&Default::default(), &won),
        Ok(())
    );
    assert_eq!(
        crate::aggregates::lead::check(&Default::default(), &won),
        Ok(())
    );
    assert_eq!(
        crate::aggregates::case::check(&Default::default(), &won),
        Ok(())
    );
    assert_eq!(
        crate::aggregates::opportunity::check(&Default::default(), &closed),
        Ok(())
    );
}
