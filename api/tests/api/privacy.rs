//! Personal data end to end, on each backend: sealed at rest, erased everywhere by key
//! destruction (read models, search, the log's answers, the database files themselves), the
//! figures that are not personal unchanged, exact idempotency.

use std::future::Future;
use std::time::Duration;

use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_projections::all_projections;
use crm_tests::raw_bytes::{found_in, stored_bytes};
use serde_json::{Value, json};

use crate::fixture::{App, TENANT};
use crate::suite::Start;

macro_rules! app {
    ($start:expr) => {
        match $start(Limits::default()).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// The erased customer's personal values, as emitters sent them.
const SECRETS: &[&str] = &[
    "Ada Lovelace",
    "ada.lovelace@example.com",
    "+44 20 7946 0000",
    "Asked about the March invoice",
    "Billing question",
    "Cannot log in to Analytical Engine",
    "Ada is furious",
    "Renewal with Ada",
    "Ada Consulting",
    "lead.ada@example.com",
    "Ada's old account",
    "Refund for broken punch cards",
];

/// The kept customer's values, which must stay readable.
const KEPT: &[&str] = &["Grace Hopper", "grace@example.com"];

fn history() -> Value {
    json!([
        {"type": "LeadCaptured", "data": {"lead_id": "l-1", "name": "Ada Lovelace",
            "email": "lead.ada@example.com", "company": "Ada Consulting", "source": "web_form"}},
        {"type": "LeadQualified", "data": {"lead_id": "l-1"}},
        {"type": "LeadConverted", "data": {"lead_id": "l-1", "customer_id": "c-1"}},
        {"type": "CustomerRegistered", "data": {"customer_id": "c-1", "kind": "person",
            "name": "Ada Lovelace", "email": "ada.lovelace@example.com",
            "phone": "+44 20 7946 0000"}},
        {"type": "InteractionLogged", "data": {"customer_id": "c-1", "interaction_id": "i-1",
            "channel": "phone", "direction": "inbound", "subject": "Billing question",
            "summary": "Asked about the March invoice"}},
        {"type": "OrderPlaced", "occurred_at": "2026-03-02T11:00:00Z",
         "data": {"customer_id": "c-1", "order_id": "o-1", "amount": "120.00", "currency": "EUR"}},
        {"type": "OrderRefunded", "data": {"customer_id": "c-1", "order_id": "o-1",
            "amount": "20.00", "currency": "EUR", "reason": "Refund for broken punch cards"}},
        {"type": "OpportunityOpened", "data": {"opportunity_id": "op-1", "customer_id": "c-1",
            "name": "Renewal with Ada", "amount": "1000.00", "currency": "EUR",
            "stage": "Prospecting", "close_date": "2027-01-31"}},
        {"type": "CaseOpened", "data": {"case_id": "k-1", "customer_id": "c-1",
            "subject": "Cannot log in to Analytical Engine", "channel": "email",
            "priority": "high"}},
        {"type": "CaseEscalated", "data": {"case_id": "k-1", "reason": "Ada is furious"}},
        {"type": "CustomerRegistered", "data": {"customer_id": "c-2", "kind": "person",
            "name": "Ada's old account"}},
        {"type": "OrderPlaced", "data": {"customer_id": "c-2", "order_id": "o-2",
            "amount": "30.00", "currency": "EUR"}},
        {"type": "CustomerMerged", "data": {"customer_id": "c-2", "into_customer_id": "c-1"}},
        {"type": "CustomerRegistered", "data": {"customer_id": "c-3", "kind": "person",
            "name": "Grace Hopper", "email": "grace@example.com"}},
        {"type": "OrderPlaced", "data": {"customer_id": "c-3", "order_id": "o-3",
            "amount": "99.00", "currency": "EUR"}},
    ])
}

fn text(value: &Value) -> String {
    value.to_string()
}

/// The figures of a customer view that are not personal.
fn figures(view: &Value) -> Value {
    json!({
        "orders": view["orders"],
        "interactions": view["interactions"]["total"],
        "status": view["status"],
    })
}

async fn erase(app: &App, path: &str) -> crate::fixture::Answer {
    app.post_as(TENANT, Role::Admin, path).await
}

pub async fn personal_fields_are_sealed_in_the_log_and_read_back_in_plain<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = app.ingest(history()).await.ok()["last_position"]
        .as_u64()
        .expect("position");
    // The stored rows hold none of it, in any form.
    let raw = app
        .state
        .private
        .inner()
        .read_all(&crm_core::store::Scope::AllTenants, 0, 100)
        .await
        .expect("raw read");
    let stored: String = raw.iter().map(|e| e.data.get().to_owned()).collect();
    assert!(
        found_in(stored.as_bytes(), SECRETS).is_empty(),
        "stored plaintext: {:?}",
        found_in(stored.as_bytes(), SECRETS)
    );
    assert!(stored.contains("crm:v1:"), "{stored}");
    // Readers see plaintext.
    let events = app.get(&format!("/v1/events?min_position={last}")).await;
    let events = text(events.ok());
    for secret in SECRETS {
        assert!(events.contains(secret), "{secret} missing from {events}");
    }
    // A case event without customer_id is sealed under its case's customer: erasing the
    // customer makes it unreadable too (checked in the erasure test); here it opens.
    let timeline = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/customers/c-1/timeline?limit=100&min_position={last}"),
        )
        .await;
    assert!(text(timeline.ok()).contains("Ada is furious"));
}

pub async fn erasure_removes_personal_data_from_every_answer_and_every_file<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = app.ingest(history()).await.ok()["last_position"]
        .as_u64()
        .expect("position");
    let before = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    let before = figures(before.ok());
    let pipeline_before = app.get("/v1/pipeline").await.ok().clone();
    // The phone is searchable by its digits (kept in the read model) until the erasure.
    let by_phone = app.get("/v1/customers?search=7946%200000").await;
    assert_eq!(by_phone.ok()["items"][0]["customer_id"], "c-1");

    let unknown = erase(&app, "/v1/customers/nobody/erase").await;
    unknown.problem(404, &["unknown"]);
    let analyst = app
        .post_as(TENANT, Role::Analyst, "/v1/customers/c-1/erase")
        .await;
    assert_eq!(analyst.status, 403, "{}", analyst.body);

    let first = erase(&app, "/v1/customers/c-1/erase").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["already_erased"], false);
    let second = erase(&app, "/v1/customers/c-1/erase").await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["already_erased"], true);
    assert_eq!(second.body["event_id"], first.body["event_id"]);
    let position = first.body["position"].as_u64().expect("position");

    // Every answer: the log, the timeline, the 360 view, search, deals, cases.
    let mut answers = Vec::new();
    for path in [
        format!("/v1/events?min_position={position}&limit=1000"),
        "/v1/customers/c-1".to_owned(),
        "/v1/customers/c-2".to_owned(),
        "/v1/customers?search=ada".to_owned(),
        "/v1/customers?search=lovelace".to_owned(),
        "/v1/opportunities".to_owned(),
        "/v1/pipeline".to_owned(),
        "/v1/service/backlog".to_owned(),
        "/v1/cases".to_owned(),
        "/v1/leads".to_owned(),
        "/v1/leads/funnel".to_owned(),
        "/v1/customers/c-1?as_of=2099-01-01T00:00:00Z".to_owned(),
        format!("/v1/customers/c-1?position={last}"),
    ] {
        let answer = app.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        answers.push((path, text(&answer.body)));
    }
    let timeline = app
        .get_as(
            TENANT,
            Role::Auditor,
            "/v1/customers/c-1/timeline?limit=100",
        )
        .await;
    answers.push(("timeline".into(), text(timeline.ok())));
    for (path, body) in &answers {
        let leaked = found_in(body.as_bytes(), SECRETS);
        assert!(leaked.is_empty(), "{path} still shows {leaked:?}: {body}");
    }
    let log = &answers[0].1;
    assert!(log.contains("[erased]"), "{log}");
    for kept in KEPT {
        assert!(log.contains(kept), "{kept} was erased too: {log}");
    }
    let count = log.matches("\"CustomerErased\"").count();
    assert_eq!(count, 1, "one CustomerErased: {log}");
    // The lead converted to the erased customer is in no answer.
    let leads = app.get("/v1/leads").await;
    assert_eq!(leads.ok()["items"], json!([]), "{}", leads.body);
    let funnel = app.get("/v1/leads/funnel").await;
    assert_eq!(funnel.ok()["overall"]["captured"], 0, "{}", funnel.body);
    let search = app.get("/v1/customers?search=ada").await;
    assert_eq!(
        search.body["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        search.body
    );
    let by_phone = app.get("/v1/customers?search=7946%200000").await;
    assert_eq!(
        by_phone.ok()["items"],
        json!([]),
        "the phone's digits are gone"
    );

    // What is not personal stays as it was.
    let after = figures(app.get("/v1/customers/c-1").await.ok());
    assert_eq!(after["orders"], before["orders"]);
    assert_eq!(after["interactions"], before["interactions"]);
    assert_eq!(after["status"], "erased");
    let pipeline_after = app.get("/v1/pipeline").await.ok().clone();
    assert_eq!(pipeline_after, pipeline_before);
    let verify = app.get_as(TENANT, Role::Auditor, "/v1/verify").await;
    assert_eq!(verify.ok()["intact"], true);

    // New personal data for the erased customer is refused; money facts are not.
    let refused = app
        .ingest(
            json!([{"type": "CaseOpened", "data": {"case_id": "k-9", "customer_id": "c-1",
            "subject": "Jane Doe says hi", "channel": "email", "priority": "low"}}]),
        )
        .await;
    refused.problem(409, &["customer:c-1", "erased"]);
    let merged_refused = app
        .ingest(
            json!([{"type": "CustomerProfileUpdated", "data": {"customer_id": "c-2",
            "name": "Back again"}}]),
        )
        .await;
    assert_eq!(merged_refused.status, 409, "{}", merged_refused.body);
    let order = app
        .ingest(
            json!([{"type": "OrderPlaced", "data": {"customer_id": "c-1",
            "order_id": "o-9", "amount": "5.00", "currency": "EUR"}}]),
        )
        .await;
    assert_eq!(order.status, 201, "{}", order.body);

    // The files themselves: nothing of it, in any derived form.
    let bytes = stored_bytes(&app.url).await;
    let leaked = found_in(&bytes, SECRETS);
    assert!(
        leaked.is_empty(),
        "the database files still hold {leaked:?}"
    );
    let digits = found_in(&bytes, &["442079460000"]);
    assert!(
        digits.is_empty(),
        "the database files still hold the phone's digits"
    );
    assert!(
        !found_in(&bytes, KEPT).is_empty(),
        "the search must be able to find what is kept"
    );

    // A rebuild from the log gives the same figures and no plaintext.
    let generations: Vec<i64> = app
        .state
        .projections
        .borrow()
        .iter()
        .map(|s| s.generation)
        .collect();
    for projection in all_projections() {
        crm_projections::bookkeeping::request_rebuild(&app.state.db, projection.name())
            .await
            .expect("request rebuild");
    }
    let mut statuses = app.state.projections.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        statuses.wait_for(|all| {
            all.iter()
                .zip(&generations)
                .all(|(s, g)| s.generation > *g && s.rebuild.is_none() && s.lag == 0)
        }),
    )
    .await
    .expect("rebuilt within 60 s")
    .expect("runner alive");
    let rebuilt = figures(app.get("/v1/customers/c-1").await.ok());
    assert_eq!(rebuilt["orders"]["count"], json!(3), "{rebuilt}");
    assert_eq!(app.get("/v1/pipeline").await.ok(), &pipeline_after);
    let view = text(app.get("/v1/customers/c-1").await.ok());
    assert!(found_in(view.as_bytes(), SECRETS).is_empty(), "{view}");
}

pub async fn leads_are_erased_alone_only_while_never_converted<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([
        {"type": "LeadCaptured", "data": {"lead_id": "l-7", "name": "Linus Lead",
            "email": "linus@example.com", "source": "web_form"}},
        {"type": "LeadCaptured", "data": {"lead_id": "l-8", "name": "Conny Converted",
            "source": "web_form"}},
        {"type": "LeadQualified", "data": {"lead_id": "l-8"}},
        {"type": "LeadConverted", "data": {"lead_id": "l-8", "customer_id": "c-8"}},
    ]))
    .await
    .ok();
    let converted = erase(&app, "/v1/leads/l-8/erase").await;
    converted.problem(409, &["converted", "c-8"]);
    erase(&app, "/v1/leads/nobody/erase")
        .await
        .problem(404, &[]);
    let erased = erase(&app, "/v1/leads/l-7/erase").await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    let position = erased.body["position"].as_u64().expect("position");
    let log = text(
        app.get(&format!("/v1/events?min_position={position}"))
            .await
            .ok(),
    );
    assert!(log.contains("LeadErased"), "{log}");
    assert!(!log.contains("Linus") && !log.contains("linus@"), "{log}");
    assert!(log.contains("Conny Converted"), "{log}");
    // The erased lead is in no answer of the lead read model; the converted one stays.
    let leads = app.get(&format!("/v1/leads?min_position={position}")).await;
    let ids: Vec<&str> = leads.ok()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|lead| lead["lead_id"].as_str())
        .collect();
    assert_eq!(ids, ["l-8"]);
    let funnel = app.get("/v1/leads/funnel").await;
    assert_eq!(funnel.ok()["overall"]["captured"], 1, "{}", funnel.body);
    // New personal data for the erased lead is refused.
    let refused = app
        .ingest(
            json!([{"type": "LeadDisqualified", "data": {"lead_id": "l-7",
            "reason": "Linus said no"}}]),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
}

pub async fn a_replayed_id_must_carry_the_same_data<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let id = uuid::Uuid::now_v7();
    let event = |name: &str| {
        json!([{"id": id, "type": "CustomerRegistered", "data": {"customer_id": "c-5",
            "kind": "person", "name": name}}])
    };
    assert_eq!(app.ingest(event("Ada Lovelace")).await.status, 201);
    let again = app.ingest(event("Ada Lovelace")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["duplicates"], 1);
    let other = app.ingest(event("Somebody Else")).await;
    other.problem(409, &["events[0].id", "other data"]);
    assert_eq!(other.body["event_index"], 0);
    // Once erased, the stored data cannot be compared: a replay is a duplicate.
    assert_eq!(erase(&app, "/v1/customers/c-5/erase").await.status, 200);
    let replay = app.ingest(event("Ada Lovelace")).await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    assert_eq!(replay.body["duplicates"], 1);
}

pub async fn a_reused_idempotency_key_must_carry_the_same_body<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let send = |key: &'static str, name: &'static str| {
        app.send(
            app.client
                .post(app.url("/v1/events"))
                .bearer_auth(app.key(TENANT, Role::Ingest))
                .header("Idempotency-Key", key)
                .json(&json!({"events": [{"type": "CustomerRegistered",
                    "data": {"customer_id": "c-6", "kind": "person", "name": name}}]})),
        )
    };
    assert_eq!(send("req-1", "Ada Lovelace").await.status, 201);
    let again = send("req-1", "Ada Lovelace").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["duplicates"], 1);
    // The same key with another body names the event and writes nothing.
    let head = app.head().await;
    let other = send("req-1", "Somebody Else").await;
    other.problem(409, &["events[0].id", "other data", "Idempotency-Key"]);
    assert_eq!(other.body["event_index"], 0);
    assert!(!other.body.to_string().contains("Ada"), "{}", other.body);
    assert_eq!(app.head().await, head);
}

pub async fn metadata_keys_outside_the_catalog_are_refused<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let refused = app
        .ingest(
            json!([{"type": "OrderPlaced", "metadata": {"actor": "u-1", "email": "a@b.c"},
            "data": {"customer_id": "c-1", "order_id": "o-1", "amount": "1.00",
                     "currency": "EUR"}}]),
        )
        .await;
    refused.problem(422, &["events[0].metadata", "\"email\"", "actor, source"]);
    assert_eq!(app.head().await, 0, "nothing written");
    let accepted = app
        .ingest(json!([{"type": "OrderPlaced",
            "metadata": {"actor": "u-1", "source": "shop", "correlation_id": "r-1",
                         "causation_id": "r-0"},
            "data": {"customer_id": "c-1", "order_id": "o-1", "amount": "1.00",
                     "currency": "EUR"}}]))
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
}
