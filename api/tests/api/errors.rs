//! Issue 15 (every error at once): a refused batch lists every invalid event, each with its
//! index, the field at fault and the reason, in one problem document, and nothing of it is
//! written.

use std::future::Future;

use crm_api::app::Limits;
use serde_json::{Value, json};

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

fn registered(id: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "CustomerRegistered",
           "data": {"customer_id": id, "kind": "person", "name": "Ada",
                    "email": format!("{id}@example.com"), "segment": "smb", "owner": "u-7"}})
}

/// `(event_index, field)` of each entry of a problem's `errors`.
fn located(body: &Value) -> Vec<(u64, Option<String>)> {
    body["errors"]
        .as_array()
        .expect("errors is an array")
        .iter()
        .map(|error| {
            assert!(
                error["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{error}"
            );
            (
                error["event_index"].as_u64().expect("event_index"),
                error["field"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Three bad events among five: one 422 lists all three (index, field, reason), the detail
/// sums them up and names the first, `event_index` is the first's, and nothing is written,
/// not even the good events. Past 100 invalid events the rest are counted, not listed. A 409
/// carries the same `errors` shape.
pub async fn a_batch_lists_every_invalid_event_and_writes_nothing<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let head = app.head().await;
    let mut unknown_field = registered("c-3");
    unknown_field["data"]["colour"] = json!("red");
    let mut unstorable = registered("c-4");
    unstorable["metadata"] = json!({"actor": "u-\u{0}7"});
    let answer = app
        .ingest(json!([
            registered("c-0"),
            {"data": {"customer_id": "c-1"}},
            registered("c-2"),
            unknown_field,
            unstorable,
        ]))
        .await;
    answer.problem(
        422,
        &["3 of 5 events are invalid; the first: events[1].type: missing"],
    );
    assert_eq!(
        located(&answer.body),
        vec![
            (1, Some("type".to_owned())),
            (3, Some("data.colour".to_owned())),
            (4, Some("metadata.actor".to_owned())),
        ]
    );
    assert_eq!(answer.body["event_index"], 1);
    assert_eq!(answer.body["invalid_events"], 3);
    assert!(answer.body.get("errors_not_listed").is_none());
    assert_eq!(app.head().await, head, "nothing of the batch was written");
    app.get("/v1/customers/c-0").await.problem(404, &[]);

    // One invalid event reads as before, with the same members.
    let answer = app
        .ingest(json!([registered("c-0"), {"type": "CustomerRegistered"}]))
        .await;
    answer.problem(422, &["events[1].data: missing"]);
    assert_eq!(located(&answer.body), vec![(1, Some("data".to_owned()))]);
    assert_eq!(answer.body["invalid_events"], 1);

    // Past the limit: 100 listed, the other 20 counted.
    let many: Vec<Value> = (0..120).map(|_| json!({"data": {}})).collect();
    let answer = app.ingest(Value::Array(many)).await;
    answer.problem(
        422,
        &["120 of 120 events are invalid", "20 more not listed"],
    );
    assert_eq!(located(&answer.body).len(), 100);
    assert_eq!(answer.body["errors"][99]["event_index"], 99);
    assert_eq!(answer.body["errors_not_listed"], 20);
    assert_eq!(answer.body["invalid_events"], 120);
    assert_eq!(app.head().await, head);

    // A conflict (it depends on the log) names its event the same way.
    app.ingest(json!([registered("c-0")])).await.ok();
    let mut stale = registered("c-0");
    stale["expected_revision"] = json!("no_stream");
    let answer = app.ingest(json!([registered("c-9"), stale])).await;
    answer.problem(409, &["events[1].expected_revision"]);
    assert_eq!(
        located(&answer.body),
        vec![(1, Some("expected_revision".to_owned()))]
    );
}
