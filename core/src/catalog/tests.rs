//! Tests of the catalog: strict parsing with precise messages, the canonical round trip, the
//! metadata table against the structs, and the upcasting hook.

use std::collections::BTreeSet;

use crate::money::Money;
use serde_json::{Value, json};

use crate::catalog::samples::{DIRECTION_EXAMPLES, full, minimal};
use crate::catalog::{
    CatalogError, DomainEvent, EVENT_TYPES, EventTypeInfo, personal_fields, upcast, upcast_with,
};

fn parse_err(event_type: &str, data: Value) -> String {
    DomainEvent::parse(event_type, &data)
        .unwrap_err()
        .to_string()
}

fn keys(data: &Value) -> BTreeSet<String> {
    data.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn every_event_type_has_a_full_and_a_minimal_sample() {
    for info in EVENT_TYPES {
        assert!(full().iter().any(|(t, _)| *t == info.name), "{}", info.name);
        assert!(
            minimal().iter().any(|(t, _)| *t == info.name),
            "{}",
            info.name
        );
    }
    assert_eq!(EVENT_TYPES.len(), 48);
}

#[test]
fn parsing_the_stored_form_gives_back_an_equal_event_for_every_type() {
    for (event_type, data) in full().into_iter().chain(minimal()) {
        let event = DomainEvent::parse(event_type, &data).unwrap();
        assert_eq!(event.event_type(), event_type);
        assert_eq!(
            event.to_data(),
            data,
            "{event_type} is not in canonical form"
        );
        assert_eq!(
            DomainEvent::parse(event_type, &event.to_data()).unwrap(),
            event
        );
    }
}

#[test]
fn the_field_table_lists_exactly_the_keys_of_fully_populated_events() {
    for info in EVENT_TYPES {
        let produced: BTreeSet<String> = full()
            .iter()
            .filter(|(t, _)| *t == info.name)
            .flat_map(|(t, data)| keys(&DomainEvent::parse(t, data).unwrap().to_data()))
            .collect();
        let listed: BTreeSet<String> = info.fields.iter().map(|f| f.name.to_owned()).collect();
        assert_eq!(produced, listed, "{}", info.name);
    }
}

#[test]
fn required_fields_are_those_every_minimal_event_carries() {
    for (event_type, data) in minimal() {
        let info = EventTypeInfo::find(event_type).unwrap();
        for field in info.fields.iter().filter(|f| f.required) {
            assert!(
                data.get(field.name).is_some(),
                "{event_type}.{}",
                field.name
            );
            let mut without = data.clone();
            without.as_object_mut().unwrap().remove(field.name);
            let err = parse_err(event_type, without);
            assert_eq!(
                err,
                format!("{event_type}: data.{}: missing required field", field.name)
            );
        }
    }
}

#[test]
fn personal_fields_match_the_field_table_and_unknown_types_have_none() {
    for info in EVENT_TYPES {
        let flagged: Vec<&str> = info
            .fields
            .iter()
            .filter(|f| f.personal)
            .map(|f| f.name)
            .collect();
        assert_eq!(
            personal_fields(info.name),
            flagged.as_slice(),
            "{}",
            info.name
        );
    }
    assert_eq!(
        personal_fields("CustomerRegistered"),
        ["name", "email", "phone"]
    );
    assert!(personal_fields("OrderPlaced").is_empty());
    assert!(personal_fields("NoSuchEvent").is_empty());
}

#[test]
fn the_design_direction_examples_parse_exactly_as_written() {
    for line in DIRECTION_EXAMPLES.lines().filter(|l| !l.trim().is_empty()) {
        let envelope: Value = serde_json::from_str(line).unwrap();
        let event_type = envelope["type"].as_str().unwrap();
        let event = DomainEvent::parse(event_type, &envelope["data"]).unwrap();
        assert_eq!(event.to_data(), envelope["data"], "{event_type}");
    }
}

#[test]
fn events_know_their_category_stream_version_and_customer() {
    let event = |t: &str, data: Value| DomainEvent::parse(t, &data).unwrap();
    let order = event(
        "OrderPlaced",
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": "1", "currency": "USD"}),
    );
    assert_eq!(order.category(), "customer");
    assert_eq!(order.stream_id(), "customer-c-42");
    assert_eq!(order.entity_id().as_str(), "c-42");
    assert_eq!(order.schema_version(), 2, "OrderPlaced version 2 has lines");
    let converted = event(
        "LeadConverted",
        json!({"lead_id": "l-1", "customer_id": "c-7"}),
    );
    assert_eq!(converted.stream_id(), "lead-l-1");
    assert_eq!(converted.customer_id().unwrap().as_str(), "c-7");
    let won = event("OpportunityWon", json!({"opportunity_id": "op-5"}));
    assert_eq!((won.category(), won.customer_id()), ("opportunity", None));
    let member = event(
        "CampaignMemberAdded",
        json!({"campaign_id": "cmp-1", "lead_id": "l-1"}),
    );
    assert_eq!(
        (member.stream_id().as_str(), member.customer_id()),
        ("campaign-cmp-1", None)
    );
    for info in EVENT_TYPES {
        let (t, data) = full().into_iter().find(|(t, _)| *t == info.name).unwrap();
        let parsed = event(t, data);
        assert_eq!(parsed.category(), info.category);
        assert_eq!(parsed.schema_version(), info.version);
        assert!(
            parsed
                .stream_id()
                .starts_with(&format!("{}-", info.category))
        );
    }
}

#[test]
fn an_unknown_event_type_is_named_and_cut_short() {
    let err = DomainEvent::parse("OrderShipped", &json!({})).unwrap_err();
    assert_eq!(
        err,
        CatalogError::UnknownEventType {
            event_type: "OrderShipped".into()
        }
    );
    assert_eq!(err.to_string(), "unknown event type `OrderShipped`");
    assert!(parse_err(&"X".repeat(100_000), json!({})).len() < 200);
}

#[test]
fn amount_errors_name_the_event_type_and_field() {
    let data =
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": "11.777", "currency": "USD"});
    assert_eq!(
        parse_err("OrderPlaced", data),
        "OrderPlaced: data.amount: amount 11.777 has 3 decimals but USD has 2"
    );
    let data = json!({"customer_id": "c-42", "order_id": "o-1", "amount": "1", "currency": "XYZ"});
    assert_eq!(
        parse_err("OrderPlaced", data),
        "OrderPlaced: data.currency: unknown currency `XYZ`"
    );
    let data =
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": "0.00", "currency": "USD"});
    assert_eq!(
        parse_err("OrderRefunded", data),
        "OrderRefunded: data.amount: amount must be greater than zero, got 0.00 USD"
    );
    let data = json!({"opportunity_id": "op-5", "amount": "5"});
    assert_eq!(
        parse_err("OpportunityUpdated", data),
        "OpportunityUpdated: data.currency: required when amount is given"
    );
    let data = json!({"opportunity_id": "op-5", "customer_id": "c-42", "name": "n", "amount": "-1", "currency": "EUR", "stage": "Prospecting", "close_date": "2027-01-31"});
    assert!(
        parse_err("OpportunityOpened", data)
            .starts_with("OpportunityOpened: data.amount: amount must not be negative")
    );
}

#[test]
fn amounts_may_be_json_numbers_read_by_their_shortest_form() {
    let data =
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": 11.77, "currency": "USD"});
    let event = DomainEvent::parse("OrderPlaced", &data).unwrap();
    assert_eq!(event.to_data()["amount"], json!("11.77"));
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let data = json!({"case_id": "k-3", "agent": "u-9", "note": "x"});
    let err = parse_err("CaseResponded", data);
    assert!(
        err.starts_with("CaseResponded: data.note: unknown field"),
        "{err}"
    );
}

#[test]
fn ill_typed_fields_are_rejected_with_their_path() {
    let cases = [
        (
            "CaseOpened",
            json!({"case_id": "k-3", "customer_id": "c-42", "subject": "s", "channel": "fax", "priority": "high"}),
            "CaseOpened: data.channel: unknown value `fax`",
        ),
        (
            "CaseOpened",
            json!({"case_id": "k-3", "customer_id": "c 42", "subject": "s", "channel": "web", "priority": "high"}),
            "CaseOpened: data.customer_id: id `c 42` contains ' '",
        ),
        (
            "CustomerConsentChanged",
            json!({"customer_id": "c-42", "channel": "email", "purpose": "marketing", "granted": "yes"}),
            "CustomerConsentChanged: data.granted: invalid type",
        ),
        (
            "CustomerRegistered",
            json!({"customer_id": "c-42", "kind": "person", "name": "  "}),
            "CustomerRegistered: data.name: must not be blank",
        ),
        (
            "OpportunityStageChanged",
            json!({"opportunity_id": "op-5", "stage": "Proposal", "probability": 101}),
            "OpportunityStageChanged: data.probability: must be between 0 and 100, got 101",
        ),
        (
            "OpportunityStageChanged",
            json!({"opportunity_id": "op-5", "stage": "proposal"}),
            "OpportunityStageChanged: data.stage: unknown value `proposal`",
        ),
        (
            "OpportunityUpdated",
            json!({"opportunity_id": "op-5", "close_date": "2027-1-31"}),
            "OpportunityUpdated: data.close_date: `2027-1-31` is not a date written YYYY-MM-DD",
        ),
        (
            "OpportunityUpdated",
            json!({"opportunity_id": "op-5", "close_date": "2027-02-30"}),
            "OpportunityUpdated: data.close_date: `2027-02-30` is not a date",
        ),
        (
            "CaseClosed",
            json!(["k-3"]),
            "CaseClosed: data: must be a JSON object, got an array",
        ),
    ];
    for (event_type, data, expected) in cases {
        let err = parse_err(event_type, data);
        assert!(err.starts_with(expected), "{err}");
    }
}

#[test]
fn update_events_need_at_least_one_change_and_members_exactly_one_id() {
    assert_eq!(
        parse_err("CustomerProfileUpdated", json!({"customer_id": "c-42"})),
        "CustomerProfileUpdated: data: at least one of name, email, phone, segment, owner must be given"
    );
    assert!(
        parse_err("OpportunityUpdated", json!({"opportunity_id": "op-5"}))
            .contains("at least one of")
    );
    assert!(
        parse_err("LeadCaptured", json!({"lead_id": "l-1", "source": "web"}))
            .contains("at least one of name, email, phone, company")
    );
    let both = json!({"campaign_id": "cmp-1", "customer_id": "c-1", "lead_id": "l-1"});
    assert_eq!(
        parse_err("CampaignMemberAdded", both),
        "CampaignMemberAdded: data: exactly one of customer_id and lead_id must be given"
    );
    let neither = json!({"campaign_id": "cmp-1", "response": "opened"});
    assert!(parse_err("CampaignMemberResponded", neither).contains("exactly one of"));
}

#[test]
fn explicit_nulls_count_as_absent_optional_fields() {
    let data = json!({"customer_id": "c-42", "kind": "person", "name": "Ada", "email": null});
    let event = DomainEvent::parse("CustomerRegistered", &data).unwrap();
    assert!(event.to_data().get("email").is_none());
    let data = json!({"customer_id": "c-42", "kind": null, "name": "Ada"});
    assert_eq!(
        parse_err("CustomerRegistered", data),
        "CustomerRegistered: data.kind: missing required field"
    );
}

#[test]
fn huge_input_is_not_echoed_back_in_full() {
    let data = json!({"case_id": "k-3", "agent": "u-9", "x".repeat(10_000): 1});
    assert!(parse_err("CaseResponded", data).len() < 400);
    let data = json!({"case_id": "k-3", "agent": 5, "reason": "r"});
    assert!(parse_err("CaseAssigned", data).len() < 600);
}

#[test]
fn current_versions_pass_through_upcasting_unchanged() {
    let data = json!({"opportunity_id": "op-5"});
    assert_eq!(upcast("OpportunityWon", 1, data.clone()).unwrap(), data);
}

#[test]
fn upcasting_rejects_unknown_types_and_versions_this_build_does_not_know() {
    let data = json!({"opportunity_id": "op-5"});
    assert_eq!(
        upcast("OpportunityWon", 2, data.clone())
            .unwrap_err()
            .to_string(),
        "OpportunityWon: schema version 2 is not supported; this build reads versions 1 to 1"
    );
    assert!(upcast("OpportunityWon", 0, data.clone()).is_err());
    assert!(matches!(
        upcast("Nope", 1, data),
        Err(CatalogError::UnknownEventType { .. })
    ));
}

#[test]
fn upcasting_applies_each_step_from_the_stored_version_to_the_current_one() {
    // A pretend v3 of OrderPlaced whose steps rename fields, to exercise the step loop.
    static V3: EventTypeInfo = EventTypeInfo {
        version: 3,
        ..EVENT_TYPES[4]
    };
    let step = |_: &'static str, from: u32, mut data: Value| {
        let object = data.as_object_mut().unwrap();
        let value = object.remove(&format!("v{from}")).unwrap();
        object.insert(format!("v{}", from + 1), value);
        Ok(data)
    };
    assert_eq!(
        upcast_with(&V3, 1, json!({"v1": 7}), step).unwrap(),
        json!({"v3": 7})
    );
    assert_eq!(
        upcast_with(&V3, 2, json!({"v2": 7}), step).unwrap(),
        json!({"v3": 7})
    );
    assert_eq!(
        upcast_with(&V3, 3, json!({"v3": 7}), step).unwrap(),
        json!({"v3": 7})
    );
    assert!(upcast_with(&V3, 4, json!({}), step).is_err());
    // The real steps know OrderPlaced 1 → 2, and nothing after it.
    let missing = upcast_with(&V3, 1, json!({}), super::upcast_step).unwrap_err();
    assert!(matches!(
        missing,
        CatalogError::MissingUpcaster {
            from_version: 2,
            ..
        }
    ));
}

#[test]
fn contact_links_name_a_role_and_never_link_a_customer_to_itself() {
    assert_eq!(
        parse_err(
            "ContactLinked",
            json!({"customer_id": "c-1", "account_id": "c-1", "role": "buyer"})
        ),
        "ContactLinked: data.account_id: a customer cannot be a contact of itself"
    );
    assert_eq!(
        parse_err(
            "ContactLinked",
            json!({"customer_id": "c-2", "account_id": "c-1", "role": "  "})
        ),
        "ContactLinked: data.role: must not be blank"
    );
    assert_eq!(
        parse_err("ContactUnlinked", json!({"customer_id": "c-2"})),
        "ContactUnlinked: data.account_id: missing required field"
    );
    let linked = DomainEvent::parse(
        "ContactLinked",
        &json!({"customer_id": "c-2", "account_id": "c-1", "role": "buyer"}),
    )
    .unwrap();
    assert_eq!(linked.stream_id(), "customer-c-2");
    assert_eq!(linked.customer_id().map(|c| c.as_str()), Some("c-2"));
}

#[test]
fn tasks_need_a_known_subject_and_an_rfc3339_due_time_kept_in_utc() {
    let created = |subject_type: &str, due_at: &str| {
        json!({"task_id": "t-1", "subject_type": subject_type, "subject_id": "op-5",
               "owner": "u-7", "due_at": due_at, "title": "Call back"})
    };
    assert_eq!(
        parse_err("TaskCreated", created("deal", "2027-01-31T17:00:00Z")),
        "TaskCreated: data.subject_type: unknown value `deal`, expected one of: customer, \
         opportunity, case, lead"
    );
    assert_eq!(
        parse_err("TaskCreated", created("opportunity", "2027-01-31")),
        "TaskCreated: data.due_at: `2027-01-31` is not a time written RFC 3339, e.g. \
         2027-01-31T17:00:00Z"
    );
    assert_eq!(
        parse_err("TaskRescheduled", json!({"task_id": "t-1"})),
        "TaskRescheduled: data.due_at: missing required field"
    );
    // An offset is kept as the same moment in UTC, at the store's microsecond precision.
    let event = DomainEvent::parse(
        "TaskCreated",
        &created("case", "2027-01-31T18:00:00.1234567+01:00"),
    )
    .unwrap();
    assert_eq!(event.to_data()["due_at"], "2027-01-31T17:00:00.123456Z");
    assert_eq!(event.stream_id(), "task-t-1");
    assert_eq!(event.customer_id(), None);
}

/// `OrderPlaced` version 1 (no lines) is upcast to version 2 unchanged: the same order
/// without lines, equal to the version 2 event sent without them.
#[test]
fn an_order_placed_at_version_1_reads_as_the_same_order_without_lines() {
    let v1 =
        json!({"customer_id": "c-42", "order_id": "o-1", "amount": "12.50", "currency": "EUR"});
    let upcast_v1 = upcast("OrderPlaced", 1, v1.clone()).unwrap();
    assert_eq!(upcast_v1, v1);
    let from_v1 = DomainEvent::parse_stored("OrderPlaced", &upcast_v1).unwrap();
    let v2 = DomainEvent::parse("OrderPlaced", &v1).unwrap();
    assert_eq!(from_v1, v2);
    assert_eq!(v2.to_data(), v1, "no lines, no discount: nothing added");
    let DomainEvent::OrderPlaced(order) = from_v1 else {
        panic!("an order")
    };
    assert!(order.lines.is_empty() && order.discount.is_none());
}

/// `CampaignLaunched` version 1 carried a free `channel` label: one that names a consent
/// channel (trimmed, any case) becomes that channel; any other becomes the `medium`.
#[test]
fn a_campaign_launched_at_version_1_gets_a_consent_channel_where_its_label_names_one() {
    let v1 = |channel: Value| json!({"campaign_id": "cmp-1", "name": "Spring", "channel": channel});
    let read = |channel: Value| {
        let up = upcast("CampaignLaunched", 1, v1(channel)).unwrap();
        let DomainEvent::CampaignLaunched(launched) =
            DomainEvent::parse_stored("CampaignLaunched", &up).unwrap()
        else {
            panic!("a launch")
        };
        (launched.channel.map(|c| c.as_str()), launched.medium)
    };
    assert_eq!(read(json!("email")), (Some("email"), None));
    assert_eq!(read(json!(" SMS ")), (Some("sms"), None));
    assert_eq!(read(json!("webinar")), (None, Some("webinar".to_owned())));
    assert_eq!(read(Value::Null), (None, None));
    let bare = upcast(
        "CampaignLaunched",
        1,
        json!({"campaign_id": "cmp-1", "name": "Spring"}),
    )
    .unwrap();
    assert_eq!(bare, json!({"campaign_id": "cmp-1", "name": "Spring"}));
    // New events must name a consent channel; free labels go in `medium`.
    let refused = parse_err("CampaignLaunched", v1(json!("webinar")));
    assert!(
        refused.contains("channel") && refused.contains("email"),
        "{refused}"
    );
}

/// `InteractionLogged` version 1 had no purpose: it reads as the same interaction without
/// one, and only an outbound marketing contact on a governed channel needs consent.
#[test]
fn an_interaction_at_version_1_has_no_purpose_and_needs_no_consent() {
    let data = json!({"customer_id": "c-1", "interaction_id": "i-1", "channel": "email", "direction": "outbound"});
    let up = upcast("InteractionLogged", 1, data.clone()).unwrap();
    assert_eq!(up, data);
    let DomainEvent::InteractionLogged(old) =
        DomainEvent::parse_stored("InteractionLogged", &up).unwrap()
    else {
        panic!("an interaction")
    };
    assert_eq!((old.purpose, old.marketing_channel()), (None, None));
    let with = |channel: &str, direction: &str, purpose: &str| {
        let DomainEvent::InteractionLogged(i) = DomainEvent::parse(
            "InteractionLogged",
            &json!({"customer_id": "c-1", "interaction_id": "i-1", "channel": channel, "direction": direction, "purpose": purpose}),
        )
        .unwrap() else {
            panic!("an interaction")
        };
        i.marketing_channel().map(|c| c.as_str())
    };
    assert_eq!(with("email", "outbound", "marketing"), Some("email"));
    assert_eq!(with("chat", "outbound", "marketing"), Some("chat"));
    assert_eq!(with("email", "inbound", "marketing"), None);
    assert_eq!(with("email", "outbound", "service"), None);
    assert_eq!(with("meeting", "outbound", "marketing"), None);
}

fn order_with(lines: Value, extra: &[(&str, Value)]) -> Value {
    let mut data = json!({"customer_id": "c-42", "order_id": "o-1", "amount": "25.00", "currency": "EUR", "lines": lines});
    for (k, v) in extra {
        data[*k] = v.clone();
    }
    data
}

/// Lines: quantity × unit price summed, less the discount, must equal the amount; every
/// broken rule names its line and field.
#[test]
fn order_lines_are_checked_field_by_field_and_must_add_up_to_the_amount() {
    let tea = json!({"product_id": "p-tea", "name": "Tea", "quantity": 2, "unit_price": "10.00"});
    let mug = json!({"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "5.00"});
    // 2 × 10.00 + 5.00 = 25.00.
    let ok = DomainEvent::parse("OrderPlaced", &order_with(json!([tea, mug]), &[])).unwrap();
    let DomainEvent::OrderPlaced(order) = &ok else {
        panic!("an order")
    };
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.lines[0].quantity, 2);
    assert_eq!(order.lines[1].unit_price, Money::parse("5", "EUR").unwrap());
    // A discount closes the gap: 25.00 − 5.00 = 20.00.
    let discounted = order_with(
        json!([tea, mug]),
        &[("amount", json!("20.00")), ("discount", json!("5"))],
    );
    let parsed = DomainEvent::parse("OrderPlaced", &discounted).unwrap();
    assert_eq!(parsed.to_data()["discount"], json!("5.00"));
    // A line may repeat the order's currency.
    let with_currency = json!({"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "5.00", "currency": "EUR"});
    DomainEvent::parse("OrderPlaced", &order_with(json!([tea, with_currency]), &[])).unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            order_with(json!([tea, mug]), &[("amount", json!("20.00"))]),
            "OrderPlaced: data.amount: is 20.00 but the lines add up to 25.00; send a discount for the difference",
        ),
        (
            order_with(
                json!([tea, mug]),
                &[("amount", json!("21.00")), ("discount", json!("5.00"))],
            ),
            "OrderPlaced: data.amount: is 21.00 but the lines add up to 25.00 less the discount 5.00 = 20.00; send a discount for the difference",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": 0, "unit_price": "5.00"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].quantity: must be a whole number from 1 to 1000000000",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": -1, "unit_price": "5.00"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].quantity: must be a whole number greater than 0",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": 1.5, "unit_price": "5.00"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].quantity: must be a whole number greater than 0",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "-5.00"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].unit_price: amount must not be negative, got -5.00",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "5.00", "currency": "USD"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].currency: is USD but the order is in EUR; a line is in the order's currency",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "5.001"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].unit_price: amount 5.001 has 3 decimals but EUR has 2",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p mug", "name": "Mug", "quantity": 1, "unit_price": "5.00"}]),
                &[],
            ),
            "data.lines[1].product_id",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "quantity": 1, "unit_price": "5.00"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].name: missing required field",
        ),
        (
            order_with(
                json!([tea, {"product_id": "p-mug", "name": "Mug", "quantity": 1, "unit_price": "5.00", "colour": "red"}]),
                &[],
            ),
            "OrderPlaced: data.lines[1].colour: unknown field; known fields are product_id, name, quantity, unit_price, currency",
        ),
        (
            order_with(json!([tea, "mug"]), &[]),
            "OrderPlaced: data.lines[1]: must be a JSON object, got a string",
        ),
        (
            order_with(json!([]), &[]),
            "OrderPlaced: data.lines: must hold at least one line; leave `lines` out for an order without them",
        ),
        (
            order_with(json!({"a": 1}), &[]),
            "OrderPlaced: data.lines: must be a JSON array, got an object",
        ),
        (
            json!({"customer_id": "c-42", "order_id": "o-1", "amount": "5.00", "currency": "EUR", "discount": "1.00"}),
            "OrderPlaced: data.discount: is only given with lines (it is taken off their total)",
        ),
        (
            order_with(
                json!([tea, mug]),
                &[("amount", json!("30.00")), ("discount", json!("-5.00"))],
            ),
            "OrderPlaced: data.discount: amount must not be negative, got -5.00",
        ),
    ];
    for (data, expected) in cases {
        let error = DomainEvent::parse("OrderPlaced", &data)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}\n  expected {expected}");
    }
    // A free order may carry free lines; a zero-priced line is fine.
    let free = json!({"customer_id": "c-42", "order_id": "o-2", "amount": "0", "currency": "EUR", "lines": [{"product_id": "p-sample", "name": "Sample", "quantity": 1, "unit_price": "0"}]});
    DomainEvent::parse("OrderPlaced", &free).unwrap();
}

/// A quota's period is a month (`YYYY-MM`) or a quarter (`YYYY-Qn`); anything else is named.
#[test]
fn quota_periods_are_months_or_quarters() {
    use crate::catalog::quota::QuotaPeriod;
    let q1 = QuotaPeriod::parse("2026-Q1").unwrap();
    assert_eq!(q1.to_string(), "2026-Q1");
    assert_eq!(q1.start().to_string(), "2026-01-01");
    assert_eq!(q1.end().to_string(), "2026-04-01");
    let december = QuotaPeriod::parse("2025-12").unwrap();
    assert_eq!(december.end().to_string(), "2026-01-01");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 8, 31).unwrap();
    assert_eq!(
        QuotaPeriod::containing(day).map(|p| p.to_string()),
        ["2026-08".to_owned(), "2026-Q3".to_owned()]
    );
    for bad in [
        "2026-13", "2026-00", "2026-Q5", "2026-Q0", "2026-1", "26-01", "2026/01", "2026-q1",
    ] {
        assert!(QuotaPeriod::parse(bad).is_none(), "{bad}");
    }
    let error = DomainEvent::parse(
        "QuotaSet",
        &json!({"owner": "u-7", "period": "2026-13", "amount": "1", "currency": "EUR"}),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "QuotaSet: data.period: `2026-13` is not a period; write YYYY-MM (a month) or YYYY-Qn (a quarter, n from 1 to 4)"
    );
    let negative = DomainEvent::parse(
        "QuotaSet",
        &json!({"owner": "u-7", "period": "2026-01", "amount": "-1", "currency": "EUR"}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        negative.starts_with("QuotaSet: data.amount: amount must not be negative"),
        "{negative}"
    );
    let set = DomainEvent::parse(
        "QuotaSet",
        &json!({"owner": "u-7", "period": "2026-01", "amount": "1", "currency": "EUR"}),
    )
    .unwrap();
    assert_eq!(
        (set.stream_id().as_str(), set.customer_id()),
        ("quota-u-7", None)
    );
}

fn sla_targets(overrides: &[(&str, Value)]) -> Value {
    let mut data = json!({
        "low": {"first_response_minutes": 1440, "resolution_minutes": 10080},
        "normal": {"first_response_minutes": 480, "resolution_minutes": 4320},
        "high": {"first_response_minutes": 240, "resolution_minutes": 1440},
        "urgent": {"first_response_minutes": 60, "resolution_minutes": 240},
    });
    for (key, value) in overrides {
        data[*key] = value.clone();
    }
    data
}

#[test]
fn sla_targets_are_checked_field_by_field_naming_the_priority() {
    let set = DomainEvent::parse("SlaTargetsSet", &sla_targets(&[])).unwrap();
    assert_eq!(set.stream_id(), "settings-sla");
    let DomainEvent::SlaTargetsSet(targets) = &set else {
        panic!("{set:?}");
    };
    assert_eq!(targets.targets, crate::sla::SlaTargets::default());
    assert_eq!(targets.warning_percent(), 75);

    for (overrides, expected) in [
        (
            vec![(
                "high",
                json!({"first_response_minutes": 240, "resolution_minutes": 200}),
            )],
            "SlaTargetsSet: data.high.resolution_minutes: 200 is less than high.first_response_minutes (240); the resolution cannot be due before the first response",
        ),
        (
            vec![(
                "urgent",
                json!({"first_response_minutes": 0, "resolution_minutes": 240}),
            )],
            "SlaTargetsSet: data.urgent.first_response_minutes: must be at least 1, got 0",
        ),
        (
            vec![(
                "low",
                json!({"first_response_minutes": 60, "resolution_minutes": 4_294_967_295u32}),
            )],
            "SlaTargetsSet: data.low.resolution_minutes: 4294967295 is more than 5256000 (ten \
             years of minutes): its due times could fall past the year 9999, which RFC 3339 \
             cannot write",
        ),
        (
            vec![("low", json!({"first_response_minutes": 1}))],
            "SlaTargetsSet: data.low.resolution_minutes: missing required field",
        ),
        (
            vec![(
                "low",
                json!({"first_response_minutes": 1, "resolution_minutes": 2, "resolve": 3}),
            )],
            "SlaTargetsSet: data.low.resolve: unknown field; known fields are first_response_minutes, resolution_minutes",
        ),
        (
            vec![("normal", json!(480))],
            "SlaTargetsSet: data.normal: must be a JSON object, got a number",
        ),
        (
            vec![("warning_percent", json!(100))],
            "SlaTargetsSet: data.warning_percent: must be from 1 to 99, got 100",
        ),
        (
            vec![("warning_percent", json!(0))],
            "SlaTargetsSet: data.warning_percent: must be from 1 to 99, got 0",
        ),
    ] {
        assert_eq!(
            parse_err("SlaTargetsSet", sla_targets(&overrides)),
            expected
        );
    }
    let negative = parse_err(
        "SlaTargetsSet",
        sla_targets(&[(
            "high",
            json!({"first_response_minutes": -5, "resolution_minutes": 10}),
        )]),
    );
    assert!(
        negative.starts_with("SlaTargetsSet: data.high.first_response_minutes: invalid value"),
        "{negative}"
    );
    let mut missing = sla_targets(&[]);
    missing.as_object_mut().unwrap().remove("urgent");
    assert_eq!(
        parse_err("SlaTargetsSet", missing),
        "SlaTargetsSet: data.urgent: missing required field"
    );
}

fn calendar(overrides: &[(&str, Value)]) -> Value {
    let day = json!([["09:00", "17:30"]]);
    let mut data = json!({
        "time_zone": "Europe/Paris",
        "hours": {"monday": day, "tuesday": day, "wednesday": day, "thursday": day,
                  "friday": day, "saturday": [], "sunday": []},
        "holidays": ["2026-12-25"],
    });
    for (key, value) in overrides {
        match key.strip_prefix("hours.") {
            Some(day) => data["hours"][day] = value.clone(),
            None => data[*key] = value.clone(),
        }
    }
    data
}

#[test]
fn business_calendars_are_refused_naming_the_field() {
    let set = DomainEvent::parse("BusinessCalendarSet", &calendar(&[])).unwrap();
    assert_eq!(set.stream_id(), "settings-calendar");
    let cleared = DomainEvent::parse("BusinessCalendarCleared", &json!({})).unwrap();
    assert_eq!(cleared.stream_id(), "settings-calendar");

    for (overrides, expected) in [
        (
            vec![("time_zone", json!("Europe/Pariss"))],
            "BusinessCalendarSet: data.time_zone: `Europe/Pariss` is not an IANA time zone, e.g. Europe/Paris (names are case-sensitive)",
        ),
        (
            vec![(
                "hours.monday",
                json!([["09:00", "12:00"], ["11:00", "13:00"]]),
            )],
            "BusinessCalendarSet: data.hours.monday[1]: 11:00-13:00 overlaps hours.monday[0] (09:00-12:00)",
        ),
        (
            vec![("hours.tuesday", json!([["17:00", "09:00"]]))],
            "BusinessCalendarSet: data.hours.tuesday[0]: 17:00-09:00 does not start before it ends (an interval is [\"HH:MM\", \"HH:MM\"] within one day, 24:00 ends the day)",
        ),
        (
            vec![("hours.friday", json!([["09:00"]]))],
            "BusinessCalendarSet: data.hours.friday[0]: must be a pair of local times [\"HH:MM\", \"HH:MM\"], e.g. [\"09:00\", \"17:30\"], got 1 items",
        ),
        (
            vec![("hours.friday", json!([["9:00", "17:00"]]))],
            "BusinessCalendarSet: data.hours.friday[0]: the start time `9:00` is not a time HH:MM from 00:00 to 23:59",
        ),
        (
            vec![("hours.friday", json!([["24:00", "24:00"]]))],
            "BusinessCalendarSet: data.hours.friday[0]: the start time `24:00` is not a time HH:MM from 00:00 to 23:59",
        ),
        (
            vec![("hours.friday", json!([["09:00", 17]]))],
            "BusinessCalendarSet: data.hours.friday[0]: the end time must be a string \"HH:MM\", got a number",
        ),
        (
            vec![("hours.saturday", json!("closed"))],
            "BusinessCalendarSet: data.hours.saturday: must be a JSON array, got a string",
        ),
        (
            vec![("hours.funday", json!([]))],
            "BusinessCalendarSet: data.hours.funday: unknown field; known fields are monday, tuesday, wednesday, thursday, friday, saturday, sunday",
        ),
        (
            vec![("holidays", json!(["2026-12-25", "2026-12-32"]))],
            "BusinessCalendarSet: data.holidays[1]: `2026-12-32` is not a date written YYYY-MM-DD",
        ),
        (
            vec![("holidays", json!(["2026-12-25", "2026-12-25"]))],
            "BusinessCalendarSet: data.holidays[1]: 2026-12-25 is already listed at holidays[0]",
        ),
        (
            vec![(
                "hours",
                json!({"monday": [], "tuesday": [], "wednesday": [], "thursday": [],
                       "friday": [], "saturday": [], "sunday": []}),
            )],
            "BusinessCalendarSet: data.hours: has no working time on any day; clear the calendar to count elapsed time",
        ),
    ] {
        assert_eq!(
            parse_err("BusinessCalendarSet", calendar(&overrides)),
            expected
        );
    }
    let mut missing_day = calendar(&[]);
    missing_day["hours"]
        .as_object_mut()
        .unwrap()
        .remove("sunday");
    assert_eq!(
        parse_err("BusinessCalendarSet", missing_day),
        "BusinessCalendarSet: data.hours.sunday: missing required field"
    );
    let many: Vec<String> = (0..9).map(|h| format!("{h:02}:00")).collect();
    let nine: Vec<Value> = many
        .iter()
        .map(|h| json!([h, h.replace(":00", ":30")]))
        .collect();
    assert_eq!(
        parse_err(
            "BusinessCalendarSet",
            calendar(&[("hours.monday", json!(nine))])
        ),
        "BusinessCalendarSet: data.hours.monday: has 9 intervals, at most 8 are allowed"
    );
    assert_eq!(
        parse_err("BusinessCalendarCleared", json!({"time_zone": "UTC"})),
        "BusinessCalendarCleared: data.time_zone: unknown field; this event has no fields"
    );
}

#[test]
fn the_sla_settings_fold_targets_and_the_calendar_in_log_order() {
    use crate::sla::{Due, SlaClock, SlaSettings};

    let mut settings = SlaSettings::default();
    assert_eq!(settings.clock, SlaClock::Elapsed);
    assert_eq!(settings.warning_percent, 75);
    let events = [
        DomainEvent::parse(
            "SlaTargetsSet",
            &sla_targets(&[("warning_percent", json!(80))]),
        )
        .unwrap(),
        DomainEvent::parse("BusinessCalendarSet", &calendar(&[])).unwrap(),
    ];
    for event in &events {
        settings.evolve(event);
    }
    assert_eq!(settings.warning_percent, 80);
    // Friday 2026-12-04 17:00 CET (16:00Z) + 60 business minutes: 30 on Friday, 30 from
    // Monday 09:00 CET (08:00Z).
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-04T16:00:00Z")
        .unwrap()
        .to_utc();
    let due = settings.clock.due(start, 60, &[]).at().unwrap();
    assert_eq!(due.to_rfc3339(), "2026-12-07T08:30:00+00:00");
    settings.evolve(&DomainEvent::parse("BusinessCalendarCleared", &json!({})).unwrap());
    assert_eq!(settings.clock, SlaClock::Elapsed);
    assert_eq!(
        settings.clock.due(start, 60, &[]),
        Due::At(start + chrono::Duration::minutes(60))
    );
    // Other events leave the settings as they are.
    settings
        .evolve(&DomainEvent::parse("ConsentRegimeSet", &json!({"regime": "opt_out"})).unwrap());
    assert_eq!(settings.warning_percent, 80);
}

/// `CaseResolved` version 1 had no root cause: it reads as the same resolution without one.
#[test]
fn a_case_resolved_at_version_1_has_no_root_cause() {
    let data = json!({"case_id": "k-1", "resolution": "fixed"});
    let up = upcast("CaseResolved", 1, data.clone()).unwrap();
    assert_eq!(up, data);
    let DomainEvent::CaseResolved(old) = DomainEvent::parse_stored("CaseResolved", &up).unwrap()
    else {
        panic!("a resolution")
    };
    assert_eq!(old.root_cause, None);
}

/// Complaint lists, CSAT and NPS scores: every bad value is refused naming its field.
#[test]
fn complaint_lists_and_satisfaction_scores_name_the_field_at_fault() {
    let refused = |event_type: &str, data: Value| {
        DomainEvent::parse(event_type, &data)
            .unwrap_err()
            .to_string()
    };
    let set = "ComplaintCategoriesSet";
    for (data, expected) in [
        (
            json!({"categories": [], "causes": ["x"]}),
            "data.categories: must hold at least one label",
        ),
        (
            json!({"categories": ["a", "a"], "causes": ["x"]}),
            "data.categories[1]: `a` is listed twice",
        ),
        (
            json!({"categories": ["a"], "causes": ["bad label"]}),
            "data.causes[0]:",
        ),
        (
            json!({"categories": ["a"], "causes": [3]}),
            "data.causes[0]: must be a label",
        ),
        (
            json!({"categories": ["a"]}),
            "data.causes: missing required field",
        ),
        (
            json!({"categories": "a", "causes": ["x"]}),
            "data.categories: must be a JSON array",
        ),
    ] {
        let message = refused(set, data);
        assert!(message.contains(expected), "{message}");
    }
    for (event_type, score, ok) in [
        ("CsatRecorded", 0, false),
        ("CsatRecorded", 1, true),
        ("CsatRecorded", 5, true),
        ("CsatRecorded", 6, false),
        ("NpsAnswered", 0, true),
        ("NpsAnswered", 10, true),
        ("NpsAnswered", 11, false),
    ] {
        let data = if event_type == "CsatRecorded" {
            json!({"case_id": "k-1", "score": score})
        } else {
            json!({"customer_id": "c-1", "answer_id": "a-1", "score": score})
        };
        match DomainEvent::parse(event_type, &data) {
            Ok(_) => assert!(ok, "{event_type} {score}"),
            Err(e) => {
                assert!(!ok, "{event_type} {score}");
                assert!(e.to_string().contains("data.score"), "{e}");
            }
        }
    }
    for score in [json!(-1), json!(4.5), json!("4"), json!(300)] {
        let message = refused("CsatRecorded", json!({"case_id": "k-1", "score": score}));
        assert!(message.contains("data.score"), "{message}");
    }
}
