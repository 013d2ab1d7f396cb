//! Issue 14 (1): text a backend cannot store is refused at validation, naming its field, the
//! same way on every backend, and never reaches the log or a read model.

use std::future::Future;

use crm_api::app::Limits;
use serde_json::json;

use crate::fixture::App;
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
    refused.problem(422, &["events[0].metadata.correlation_id", "1001 characters"]);
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
