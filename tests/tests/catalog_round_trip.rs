//! The catalog and the store together: the emitters' example events (as `docs/events.md`
//! shows them) are validated, appended, read back and parsed again to the same values.

use crm_core::catalog::DomainEvent;
use crm_core::envelope::TenantId;
use crm_core::store::sqlite::SqliteEventStore;
use crm_core::store::{EventStore, ExpectedRevision, Scope};
use serde_json::json;

#[tokio::test]
async fn emitter_events_survive_validation_storage_and_reading_unchanged() {
    let emitted = [
        json!({"type":"CustomerRegistered","data":{"customer_id":"c-42","kind":"person","name":"Ada Lovelace","email":"ada@example.com","phone":"+44 20 7946 0000","segment":"smb","owner":"u-7"}}),
        json!({"type":"InteractionLogged","data":{"customer_id":"c-42","interaction_id":"i-9","channel":"phone","direction":"inbound","subject":"Billing question","summary":"Asked about the March invoice"}}),
        json!({"type":"OrderPlaced","data":{"customer_id":"c-42","order_id":"o-1001","amount":"11.77","currency":"USD"}}),
        json!({"type":"OpportunityOpened","data":{"opportunity_id":"op-5","customer_id":"c-42","name":"Renewal 2027","amount":"12000.00","currency":"EUR","stage":"Prospecting","close_date":"2027-01-31","owner":"u-7"}}),
        json!({"type":"OpportunityStageChanged","data":{"opportunity_id":"op-5","stage":"Proposal"}}),
        json!({"type":"OpportunityWon","data":{"opportunity_id":"op-5"}}),
        json!({"type":"CaseOpened","data":{"case_id":"k-3","customer_id":"c-42","subject":"Cannot log in","channel":"email","priority":"high"}}),
        json!({"type":"CaseResponded","data":{"case_id":"k-3","agent":"u-9"}}),
        json!({"type":"CaseClosed","data":{"case_id":"k-3"}}),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("store");
    let tenant = TenantId::parse("default").expect("tenant");
    let mut expected = Vec::new();
    for sent in &emitted {
        let event_type = sent["type"].as_str().expect("type");
        let event = DomainEvent::parse(event_type, &sent["data"]).expect("valid event");
        store
            .append(
                &tenant,
                &event.stream(),
                ExpectedRevision::Any,
                vec![event.to_new_event()],
            )
            .await
            .expect("append");
        expected.push(event);
    }
    let stored = store
        .read_all(&Scope::Tenant(tenant), 0, 100)
        .await
        .expect("read");
    assert_eq!(stored.len(), expected.len());
    for (record, original) in stored.iter().zip(&expected) {
        let data: serde_json::Value = record.decode_data().expect("json");
        let again = DomainEvent::parse(&record.event_type, &data).expect("stored data parses");
        assert_eq!(&again, original);
        assert_eq!(record.stream_id.as_str(), original.stream_id());
    }
    // The amount is kept exact, normalised to the currency's digits.
    let opened: serde_json::Value = stored[3].decode_data().expect("json");
    assert_eq!(opened["amount"], "12000.00");
    assert_eq!(stored[0].stream_id.as_str(), "customer-c-42");
    assert_eq!(stored[6].stream_id.as_str(), "case-k-3");
}
