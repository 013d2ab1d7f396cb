//! Issue 14 (1): text a backend cannot store is refused at validation, naming its field, the
//! same way on every backend, and never reaches the log or a read model; an event stored
//! before that rule still projects.

use std::future::Future;

use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::ExpectedRevision;
use serde_json::json;

use crate::fixture::{App, OTHER_TENANT, TENANT};
use crate::suite::Start;

macro_rules! app {
    ($start:expr) => {
        match $start(Limits::default()).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// A NUL in a customer's name (a personal field, sealed at rest) used to be appended (201)
/// and then stop `customer_360` for every tenant on PostgreSQL. It is refused before sealing,
/// on both backends, with a 422 naming the field; so are NULs in other text fields and in
/// metadata, and nothing is written.
pub async fn nul_in_text_is_refused_naming_the_field<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let refused = app
        .ingest(json!([{"type": "CustomerRegistered",
            "data": {"customer_id": "c-1", "kind": "person", "name": "evil\u{0}name"}}]))
        .await;
    refused.problem(422, &["events[0]", "data.name", "NUL"]);
    let refused = app
        .ingest(json!([
            {"type": "CustomerRegistered",
             "data": {"customer_id": "c-2", "kind": "person", "name": "Ada"}},
            {"type": "InteractionLogged",
             "data": {"customer_id": "c-2", "interaction_id": "i-1", "channel": "email",
                      "direction": "inbound", "summary": "\u{0}"}}]))
        .await;
    refused.problem(422, &["events[1]", "data.summary", "NUL"]);
    let refused = app
        .ingest(json!([{"type": "CustomerRegistered",
            "metadata": {"actor": "u\u{0}1"},
            "data": {"customer_id": "c-3", "kind": "person", "name": "Ada"}}]))
        .await;
    refused.problem(422, &["events[0].metadata.actor", "NUL"]);
    let refused = app
        .ingest(json!([{"type": "CustomerRegistered",
            "metadata": {"correlation_id": "x".repeat(1_001)},
            "data": {"customer_id": "c-3", "kind": "person", "name": "Ada"}}]))
        .await;
    refused.problem(
        422,
        &["events[0].metadata.correlation_id", "1001 characters"],
    );
    assert_eq!(app.head().await, 0, "nothing written");

    // Everything short of NUL is stored and projected alike on both backends.
    let hostile = "\u{1}\u{7f}\u{202e}evil\u{200f}😀\u{fffe}\t\n";
    let accepted = app
        .ingest(json!([{"type": "CustomerRegistered",
            "metadata": {"actor": hostile},
            "data": {"customer_id": "c-4", "kind": "person", "name": hostile}}]))
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let head = app.head().await;
    let customer = app
        .get(&format!("/v1/customers/c-4?min_position={head}"))
        .await;
    assert_eq!(customer.ok()["name"], hostile, "{}", customer.body);
}

/// Finding 1's event already in a log (appended before the text rule; here straight into the
/// store) is read as stored and projected on both backends (PostgreSQL's read-model columns
/// get U+FFFD for the NUL), parking nothing; an event this build cannot decode (a newer
/// schema version) parks only its own tenant, for every read model, named in the 503.
pub async fn events_stored_before_the_rule_still_project<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let append = |tenant: &'static str, stream: &'static str, event: NewEvent| {
        let store = app.state.store.clone();
        async move {
            store
                .append(
                    &TenantId::parse(tenant).expect("tenant"),
                    &StreamId::parse(stream).expect("stream"),
                    ExpectedRevision::NoStream,
                    vec![event],
                )
                .await
                .expect("append past the catalog")
        }
    };
    let nul = NewEvent::new(
        "CustomerRegistered",
        &json!({"customer_id": "c-nul", "kind": "person", "name": "evil\u{0}name",
                "segment": "a\u{0}b"}),
    );
    append(TENANT, "customer-c-nul", nul).await;
    let newer = NewEvent::new(
        "CustomerRegistered",
        &json!({"customer_id": "c-new", "kind": "person", "name": "Newer"}),
    )
    .with_schema_version(99);
    let newer_position = append(OTHER_TENANT, "customer-c-new", newer)
        .await
        .last_position;
    app.ingest(json!([{"type": "CustomerRegistered",
        "data": {"customer_id": "c-2", "kind": "person", "name": "Ada"}}]))
        .await
        .ok();
    let head = app.head().await;
    let view = app
        .get(&format!("/v1/customers/c-nul?min_position={head}"))
        .await;
    let name = view.ok()["name"].as_str().unwrap_or_default().to_owned();
    assert!(
        name == "evil\u{0}name" || name == "evil\u{fffd}name",
        "{name:?}"
    );
    let listed = app.get("/v1/customers").await;
    assert_eq!(listed.ok()["items"].as_array().map(Vec::len), Some(2));
    for path in ["/v1/customers", "/v1/pipeline", "/v1/service/backlog"] {
        app.get_as(OTHER_TENANT, Role::Analyst, path).await.problem(
            503,
            &[&format!("position {newer_position}"), "schema version 99"],
        );
    }
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["status"], "degraded");
    for projection in health.body["projections"].as_array().expect("projections") {
        assert_eq!(projection["parked_tenants"], 1, "{projection}");
    }
}
