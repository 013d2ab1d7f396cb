//! The API suite, written once and run on every backend (see `main.rs`).

use std::future::Future;
use std::time::Duration;

use crm_api::app::Limits;
use crm_api::keys::Role;
use serde_json::{Value, json};

use crate::fixture::{App, OTHER_TENANT, TENANT};

/// Starts the app with these limits (`None`: the backend is not available here).
pub trait Start<F: Future<Output = Option<App>>>: Fn(Limits) -> F {}
impl<F: Future<Output = Option<App>>, T: Fn(Limits) -> F> Start<F> for T {}

macro_rules! app {
    ($start:expr) => {
        app!($start, Limits::default())
    };
    ($start:expr, $limits:expr) => {
        match $start($limits).await {
            Some(app) => app,
            None => return,
        }
    };
}

fn registered(id: &str, name: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "CustomerRegistered",
           "data": {"customer_id": id, "kind": "person", "name": name,
                    "email": format!("{id}@example.com"), "segment": "smb", "owner": "u-7"}})
}

fn interaction(id: &str, channel: &str, at: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "InteractionLogged", "occurred_at": at,
           "metadata": {"actor": "u-7", "source": "phone-system"},
           "data": {"customer_id": id, "channel": channel, "direction": "inbound",
                    "interaction_id": format!("i-{}", uuid::Uuid::now_v7().simple()),
                    "subject": "Billing question"}})
}

fn order(id: &str, order: &str, amount: &str, at: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "OrderPlaced", "occurred_at": at,
           "data": {"customer_id": id, "order_id": order, "amount": amount, "currency": "EUR"}})
}

/// A customer with two interactions and two orders, a won deal, a lost deal and an open case;
/// every event has an id, so sending the same value again is a replay.
fn history(id: &str) -> Value {
    let mut events = history_events(id);
    for event in events.as_array_mut().into_iter().flatten() {
        if event.get("id").is_none() {
            event["id"] = json!(uuid::Uuid::now_v7());
        }
    }
    events
}

fn history_events(id: &str) -> Value {
    json!([
        registered(id, "Ada Lovelace"),
        interaction(id, "phone", "2026-01-05T10:00:00Z"),
        order(id, "o-1", "100.00", "2026-01-10T10:00:00Z"),
        interaction(id, "email", "2026-02-01T10:00:00Z"),
        order(id, "o-2", "50.50", "2026-02-10T10:00:00Z"),
        {"type": "OpportunityOpened", "occurred_at": "2026-01-02T00:00:00Z",
         "data": {"opportunity_id": format!("op-{id}-1"), "customer_id": id, "name": "Renewal",
                  "amount": "1000.00", "currency": "EUR", "stage": "Prospecting", "probability": 20,
                  "close_date": "2026-06-30"}},
        {"type": "OpportunityWon", "occurred_at": "2026-01-12T00:00:00Z",
         "data": {"opportunity_id": format!("op-{id}-1")}},
        {"type": "OpportunityOpened", "occurred_at": "2026-01-03T00:00:00Z",
         "data": {"opportunity_id": format!("op-{id}-2"), "customer_id": id, "name": "Upsell",
                  "amount": "300.00", "currency": "EUR", "stage": "Prospecting", "probability": 10,
                  "close_date": "2026-06-30"}},
        {"type": "OpportunityLost", "occurred_at": "2026-01-23T00:00:00Z",
         "data": {"opportunity_id": format!("op-{id}-2"), "reason": "price"}},
        {"type": "CaseOpened", "occurred_at": "2026-02-15T09:00:00Z",
         "data": {"case_id": format!("k-{id}"), "customer_id": id, "subject": "Cannot log in",
                  "channel": "email", "priority": "high"}},
    ])
}

fn last_position(answer: &Value) -> u64 {
    answer["last_position"].as_u64().expect("last_position")
}

pub async fn ingest_then_every_query_reads_its_writes<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let answer = app.ingest(history("c-1")).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let body = answer.ok();
    assert_eq!(body["appended"], 10);
    assert_eq!(body["duplicates"], 0);
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 10);
    // Positions follow the batch's order across streams; revisions count per stream.
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["index"], index);
        assert_eq!(event["position"], index as u64 + 1);
        assert_eq!(event["duplicate"], false);
    }
    assert_eq!(events[0]["stream"], "customer-c-1");
    assert_eq!(events[4]["revision"], 4);
    assert_eq!(events[5]["stream"], "opportunity-op-c-1-1");
    assert_eq!(events[5]["revision"], 0);
    assert_eq!(events[6]["revision"], 1);
    let last = last_position(body);
    assert_eq!(last, 10);

    // Every read model, read-your-writes.
    let view = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    assert!(view.read_position.expect("read position header") >= last);
    let view = view.ok();
    assert_eq!(view["name"], "Ada Lovelace");
    assert_eq!(view["interactions"]["total"], 2);
    assert_eq!(view["orders"]["count"], 2);
    assert_eq!(view["won_opportunities"].as_array().map(Vec::len), Some(1));
    assert_eq!(view["open_cases"].as_array().map(Vec::len), Some(1));
    assert_eq!(view["recent_timeline"].as_array().map(Vec::len), Some(10));

    let list = app
        .get(&format!("/v1/customers?search=LOVE&min_position={last}"))
        .await;
    let list = list.ok();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["customer_id"], "c-1");
    assert_eq!(list["items"][0]["orders"], 2);
    let none = app.get("/v1/customers?segment=enterprise").await;
    assert_eq!(none.ok()["items"], json!([]));

    let timeline = app
        .get(&format!(
            "/v1/customers/c-1/timeline?min_position={last}&limit=4"
        ))
        .await;
    let timeline = timeline.ok();
    let entries = timeline["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["event_type"], "CustomerRegistered");
    assert_eq!(entries[0]["data"]["name"], "Ada Lovelace");
    assert_eq!(entries[1]["actor"], "u-7");
    assert_eq!(entries[1]["source"], "phone-system");
    assert_eq!(timeline["next_after"], 4);
    let rest = app
        .get("/v1/customers/c-1/timeline?after=4&limit=100")
        .await;
    assert_eq!(rest.ok()["entries"].as_array().map(Vec::len), Some(6));
    let newest = app
        .get("/v1/customers/c-1/timeline?order=desc&limit=1")
        .await;
    assert_eq!(newest.ok()["entries"][0]["event_type"], "CaseOpened");

    let pipeline = app.get(&format!("/v1/pipeline?min_position={last}")).await;
    let pipeline = pipeline.ok();
    assert_eq!(pipeline["won"], 1);
    assert_eq!(pipeline["lost"], 1);
    assert_eq!(pipeline["win_rate"], 0.5);
    assert_eq!(pipeline["average_cycle_days"], 15.0);

    let won = app.get("/v1/opportunities?status=won").await;
    let won = won.ok();
    assert_eq!(won["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(won["items"][0]["opportunity_id"], "op-c-1-1");

    // The case is high priority: first response due 4 h after opening.
    let backlog = app.get("/v1/service/backlog?at=2026-02-15T12:00:00Z").await;
    let backlog = backlog.ok();
    assert_eq!(backlog["open"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        backlog["open"][0]["first_response_due"],
        "2026-02-15T13:00:00Z"
    );
    assert_eq!(backlog["first_response_breaches"], 0);
    let late = app.get("/v1/service/backlog?at=2026-02-15T14:00:00Z").await;
    assert_eq!(late.ok()["first_response_breaches"], 1);

    // SLA targets are facts: an admin sets stricter ones; the open case keeps those in force
    // at its open (docs/service.md), the targets in force now are the new ones.
    let defaults = app.get("/v1/service/sla-targets").await.ok().clone();
    assert_eq!(defaults["set_position"], json!(null));
    assert_eq!(defaults["warning_percent"], 75);
    let mut high = defaults["high"].clone();
    high["first_response_minutes"] = json!(30);
    let targets = json!({"low": defaults["low"], "normal": defaults["normal"], "high": high,
                         "urgent": defaults["urgent"], "warning_percent": 60});
    let put = app
        .send(
            app.client
                .put(app.url("/v1/service/sla-targets"))
                .bearer_auth(app.key(TENANT, Role::Admin))
                .json(&targets),
        )
        .await;
    let set_at = put.ok()["position"].as_u64().expect("position");
    let stricter = app
        .get(&format!(
            "/v1/service/backlog?at=2026-02-15T12:00:00Z&min_position={set_at}"
        ))
        .await;
    assert_eq!(
        stricter.ok()["first_response_breaches"],
        0,
        "the case keeps the targets of its open"
    );
    let in_force = app
        .get(&format!("/v1/service/sla-targets?min_position={set_at}"))
        .await;
    assert_eq!(in_force.ok()["high"]["first_response_minutes"], 30);
    assert_eq!(in_force.body["warning_percent"], 60);
    assert_eq!(in_force.body["set_position"], set_at);

    let log = app.get("/v1/events?after=8&limit=100").await;
    let log = log.ok();
    let events = log["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["position"], 9);
    assert_eq!(events[0]["tenant"], TENANT);
    assert_eq!(events[1]["event_type"], "CaseOpened");
    assert_eq!(events[1]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(events[2]["event_type"], "SlaTargetsSet");
    assert_eq!(events[2]["stream_id"], "settings-sla");
    assert_eq!(log["next_after"], 11);

    let projections = app.get("/v1/projections").await;
    let projections = projections.ok();
    let lines = projections["projections"].as_array().expect("projections");
    assert_eq!(lines.len(), crm_projections::all_projections().len());
    assert!(
        lines.iter().all(|p| p["position"].as_u64() >= Some(last)),
        "{projections}"
    );

    let verify = app.get_as(TENANT, Role::Auditor, "/v1/verify").await;
    let verify = verify.ok();
    assert_eq!(verify["intact"], true);
    assert_eq!(
        verify["events_checked"], 11,
        "ten events and the SLA targets set"
    );
    let one = app
        .get_as(TENANT, Role::Auditor, "/v1/verify?stream=customer-c-1")
        .await;
    assert_eq!(one.ok()["events_checked"], 5);
    // A stream that does not exist is not "intact": there is nothing to verify.
    let none = app
        .get_as(TENANT, Role::Auditor, "/v1/verify?stream=customer-nope")
        .await;
    assert_eq!(none.status, 404, "{}", none.body);
    assert!(
        none.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("customer-nope")),
        "{}",
        none.body
    );
}

pub async fn replayed_batches_are_acknowledged_as_duplicates_and_write_nothing<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let batch = json!([
        registered("c-1", "Ada"),
        order("c-1", "o-1", "10.00", "2026-01-10T10:00:00Z"),
    ]);
    let first = app.ingest(batch.clone()).await;
    assert_eq!(first.status, 201);
    let again = app.ingest(batch.clone()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["appended"], 0);
    assert_eq!(again.body["duplicates"], 2);
    for (a, b) in first.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .zip(again.body["events"].as_array().expect("events"))
    {
        assert_eq!(a["position"], b["position"]);
        assert_eq!(a["revision"], b["revision"]);
        assert_eq!(b["duplicate"], true);
    }
    // Half old, half new: only the new half is written, after the old.
    let mixed = json!([
        batch[1].clone(),
        order("c-1", "o-2", "5.00", "2026-01-11T10:00:00Z")
    ]);
    let mixed = app.ingest(mixed).await;
    assert_eq!(mixed.status, 201, "{}", mixed.body);
    assert_eq!(mixed.body["events"][0]["duplicate"], true);
    assert_eq!(mixed.body["events"][1]["revision"], 2);
    assert_eq!(app.head().await, 3);

    // Without ids, an Idempotency-Key derives them: the retried request is a duplicate.
    let send = |key: &'static str, interaction: &'static str| {
        app.send(
            app.client
                .post(app.url("/v1/events"))
                .bearer_auth(app.key(TENANT, Role::Ingest))
                .header("Idempotency-Key", key)
                .json(&json!({"events": [
                    {"type": "InteractionLogged", "data": {"customer_id": "c-1", "channel": "web",
                     "direction": "inbound", "interaction_id": interaction,
                     "subject": "Visited pricing"}}
                ]})),
        )
    };
    assert_eq!(send("req-1", "i-1").await.status, 201);
    let retried = send("req-1", "i-1").await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["duplicates"], 1);
    assert_eq!(send("req-2", "i-2").await.status, 201);
    assert_eq!(app.head().await, 5);
    let orders = app.get("/v1/customers/c-1?min_position=5").await;
    assert_eq!(orders.ok()["orders"]["count"], 2);
}

pub async fn conflicts_are_409_name_the_event_and_write_nothing_of_the_batch<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([registered("c-1", "Ada")])).await.ok();
    let head = app.head().await;

    // A wrong expected revision, after a good event of another stream.
    let mut stale = interaction("c-1", "web", "2026-01-01T00:00:00Z");
    stale["expected_revision"] = json!(5);
    let answer = app.ingest(json!([registered("c-2", "Grace"), stale])).await;
    answer.problem(
        409,
        &[
            "events[1].expected_revision",
            "customer-c-1",
            "at revision 0",
        ],
    );
    assert_eq!(answer.body["event_index"], 1);
    assert_eq!(app.head().await, head, "nothing of the batch was written");

    // The right one passes; "no_stream" on an existing stream does not.
    let mut right = interaction("c-1", "web", "2026-01-01T00:00:00Z");
    right["expected_revision"] = json!(0);
    app.ingest(json!([right])).await.ok();
    let mut fresh = registered("c-1", "Ada again");
    fresh["expected_revision"] = json!("no_stream");
    app.ingest(json!([fresh]))
        .await
        .problem(409, &["events[0].expected_revision"]);

    // Rules: registering twice, winning a lost deal, refunding an unknown order.
    app.ingest(json!([registered("c-1", "Twice")]))
        .await
        .problem(409, &["events[0] (CustomerRegistered)", "c-1"]);
    let deal = json!([
        {"type": "OpportunityOpened", "data": {"opportunity_id": "op-9", "customer_id": "c-1",
         "name": "Deal", "amount": "10.00", "currency": "EUR", "stage": "Prospecting",
         "close_date": "2026-06-30"}},
        {"type": "OpportunityLost", "data": {"opportunity_id": "op-9", "reason": "price"}},
        {"type": "OpportunityWon", "data": {"opportunity_id": "op-9"}},
    ]);
    let head = app.head().await;
    app.ingest(deal)
        .await
        .problem(409, &["events[2] (OpportunityWon)", "op-9"]);
    assert_eq!(
        app.head().await,
        head,
        "the opened and lost events were not written either"
    );
    app.ingest(json!([
        {"type": "OrderRefunded", "data": {"customer_id": "c-1", "order_id": "o-404",
         "amount": "1.00", "currency": "EUR"}}
    ]))
    .await
    .problem(409, &["events[0] (OrderRefunded)"]);

    // An id already used by another type of event in the stream.
    let used = app.ingest(json!([registered("c-5", "Used")])).await;
    let id = used.body["events"][0]["id"].clone();
    let mut clash = interaction("c-5", "web", "2026-01-01T00:00:00Z");
    clash["id"] = id;
    app.ingest(json!([clash]))
        .await
        .problem(409, &["events[0].id", "CustomerRegistered"]);
}

pub async fn every_error_class_is_problem_json_naming_what_was_wrong<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_batch_events: 20,
        ..Limits::default()
    };
    let app = app!(start, limits);
    let post_raw = |body: &'static str| {
        app.send(
            app.client
                .post(app.url("/v1/events"))
                .bearer_auth(app.key(TENANT, Role::Ingest))
                .header("content-type", "application/json")
                .body(body),
        )
    };
    // 400: malformed.
    post_raw("{\"events\": [")
        .await
        .problem(400, &["not valid JSON"]);
    post_raw("").await.problem(400, &["empty"]);
    app.get("/v1/customers?limit=abc")
        .await
        .problem(400, &["limit"]);
    app.get("/v1/customers?limit=0")
        .await
        .problem(400, &["limit=0"]);
    app.get("/v1/customers?colour=red")
        .await
        .problem(400, &["colour"]);
    app.get("/v1/customers?status=sleeping")
        .await
        .problem(400, &["status"]);
    app.get("/v1/customers/bad%20id")
        .await
        .problem(400, &["bad id"]);
    app.get("/v1/customers/c-1?as_of=yesterday")
        .await
        .problem(400, &["as_of", "RFC 3339"]);
    app.get("/v1/customers/c-1?as_of=2026-01-01T00:00:00Z&position=3")
        .await
        .problem(400, &["at most one"]);
    app.get("/v1/customers/c-1?position=99")
        .await
        .problem(400, &["beyond"]);
    app.get_as(TENANT, Role::Auditor, "/v1/verify?stream=NoCategory")
        .await
        .problem(400, &["stream"]);

    // 401: no key, a malformed one, a wrong secret, a revoked one.
    app.send(app.client.get(app.url("/v1/customers")))
        .await
        .problem(401, &["no API key"]);
    app.send(
        app.client
            .get(app.url("/v1/customers"))
            .header("authorization", "Basic abc"),
    )
    .await
    .problem(401, &["Bearer"]);
    app.send(
        app.client
            .get(app.url("/v1/customers"))
            .bearer_auth("letmein"),
    )
    .await
    .problem(401, &["malformed"]);
    let key = app.key(TENANT, Role::Analyst);
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('0') { "1" } else { "0" }
    );
    let answer = app
        .send(app.client.get(app.url("/v1/customers")).bearer_auth(wrong))
        .await;
    answer.problem(401, &["not valid"]);
    let revoked = app
        .state
        .keys
        .create(
            &crm_core::envelope::TenantId::parse(TENANT).expect("tenant"),
            Role::Analyst,
            false,
            None,
        )
        .await
        .expect("key");
    app.send(
        app.client
            .get(app.url("/v1/customers"))
            .bearer_auth(&revoked.token),
    )
    .await
    .ok();
    assert!(
        app.state
            .keys
            .revoke(&revoked.info.key_id)
            .await
            .expect("revoke")
    );
    app.send(
        app.client
            .get(app.url("/v1/customers"))
            .bearer_auth(&revoked.token),
    )
    .await
    .problem(401, &["not valid"]);

    // 403: a valid key whose role may not.
    app.get_as(TENANT, Role::Ingest, "/v1/customers")
        .await
        .problem(403, &["role ingest", "analyst"]);

    // 404.
    app.get("/v1/customers/c-nobody")
        .await
        .problem(404, &["c-nobody"]);
    app.get("/v1/nothing-here")
        .await
        .problem(404, &["/v1/nothing-here"]);
    // 405.
    app.send(app.client.delete(app.url("/v1/events")).bearer_auth(key))
        .await
        .problem(405, &["DELETE"]);

    // 413: the body, and the batch.
    let big = json!({"events": [{"type": "CustomerRegistered",
        "data": {"customer_id": "c-1", "kind": "person", "name": "x".repeat(70_000)}}]});
    app.send(
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(app.key(TENANT, Role::Ingest))
            .json(&big),
    )
    .await
    .problem(413, &["larger than 65536 bytes"]);
    let many: Vec<Value> = (0..21)
        .map(|n| registered(&format!("c-{n}"), "N"))
        .collect();
    app.ingest(json!(many))
        .await
        .problem(413, &["21 events", "at most 20"]);

    // 422: invalid content, naming the event and the field.
    app.ingest(json!([registered("c-1", "Ada"), {"type": "CustomerTeleported", "data": {}}]))
        .await
        .problem(422, &["events[1].type", "CustomerTeleported"]);
    app.ingest(
        json!([{"type": "OrderPlaced", "data": {"customer_id": "c-1", "order_id": "o-1",
        "amount": "11.777", "currency": "EUR"}}]),
    )
    .await
    .problem(422, &["events[0]", "data.amount", "decimals"]);
    app.ingest(json!([{"type": "CustomerRegistered", "data": {"customer_id": "c-1"}}]))
        .await
        .problem(422, &["events[0]", "kind"]);
    app.ingest(json!([{"type": "CustomerRegistered", "data": {"customer_id": "c 1", "kind": "person", "name": "N"}}]))
        .await
        .problem(422, &["events[0]", "customer_id"]);
    app.ingest(json!([{"type": "OrderPlaced", "dta": {}}]))
        .await
        .problem(422, &["events[0]", "\"dta\""]);
    app.ingest(json!([{"type": "OrderPlaced"}]))
        .await
        .problem(422, &["events[0].data", "missing"]);
    let mut bad_time = registered("c-1", "Ada");
    bad_time["occurred_at"] = json!("last tuesday");
    app.ingest(json!([bad_time]))
        .await
        .problem(422, &["events[0].occurred_at"]);
    let mut bad_id = registered("c-1", "Ada");
    bad_id["id"] = json!("not-a-uuid");
    app.ingest(json!([bad_id]))
        .await
        .problem(422, &["events[0].id"]);
    let mut bad_expected = registered("c-1", "Ada");
    bad_expected["expected_revision"] = json!(-1);
    app.ingest(json!([bad_expected]))
        .await
        .problem(422, &["events[0].expected_revision"]);
    let twin = registered("c-1", "Ada");
    app.ingest(json!([twin.clone(), twin]))
        .await
        .problem(422, &["events[1].id", "events[0]"]);
    app.ingest(json!([])).await.problem(422, &["empty"]);
    post_raw("[1, 2]").await.problem(422, &["object"]);
    post_raw("{\"events\": {}}").await.problem(422, &["array"]);
    app.send(
        app.client
            .put(app.url("/v1/service/sla-targets"))
            .bearer_auth(app.key(TENANT, Role::Admin))
            .json(&json!({"low": {"first_response_minutes": 0, "resolution_minutes": 10}})),
    )
    .await
    .problem(422, &["SLA targets"]);
    // A body that does not deserialize names the field, not only the value.
    let negative = app
        .send(
            app.client
                .put(app.url("/v1/service/sla-targets"))
                .bearer_auth(app.key(TENANT, Role::Admin))
                .json(&json!({
                    "low": {"first_response_minutes": 60, "resolution_minutes": 600},
                    "normal": {"first_response_minutes": 60, "resolution_minutes": 600},
                    "high": {"first_response_minutes": -5, "resolution_minutes": 600},
                    "urgent": {"first_response_minutes": 60, "resolution_minutes": 600}})),
        )
        .await;
    negative.problem(422, &["high.first_response_minutes", "-5"]);
    assert_eq!(negative.body["field"], "high.first_response_minutes");

    // None of it wrote anything, and the server still answers.
    assert_eq!(app.head().await, 0);
    app.get("/v1/customers").await.ok();
}

pub async fn a_tenant_never_reads_or_writes_another_tenants_data<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let mine = app.ingest(history("c-1")).await;
    let last = last_position(mine.ok());
    // The other tenant sees none of it, whatever it asks.
    app.get_as(
        OTHER_TENANT,
        Role::Admin,
        &format!("/v1/customers/c-1?min_position={last}"),
    )
    .await
    .problem(404, &["c-1"]);
    app.get_as(OTHER_TENANT, Role::Admin, "/v1/customers/c-1/timeline")
        .await
        .problem(404, &["c-1"]);
    app.get_as(
        OTHER_TENANT,
        Role::Admin,
        "/v1/customers/c-1?as_of=2027-01-01T00:00:00Z",
    )
    .await
    .problem(404, &["c-1"]);
    assert_eq!(
        app.get_as(OTHER_TENANT, Role::Admin, "/v1/customers")
            .await
            .ok()["items"],
        json!([])
    );
    assert_eq!(
        app.get_as(OTHER_TENANT, Role::Admin, "/v1/events")
            .await
            .ok()["events"],
        json!([])
    );
    assert_eq!(
        app.get_as(OTHER_TENANT, Role::Admin, "/v1/opportunities")
            .await
            .ok()["items"],
        json!([])
    );
    let pipeline = app
        .get_as(
            OTHER_TENANT,
            Role::Admin,
            &format!("/v1/pipeline?min_position={last}"),
        )
        .await;
    assert_eq!(pipeline.ok()["won"], 0);
    let backlog = app
        .get_as(OTHER_TENANT, Role::Admin, "/v1/service/backlog")
        .await;
    assert_eq!(backlog.ok()["open"], json!([]));
    // Another tenant's stream is, for this tenant, no stream at all.
    assert_eq!(
        app.get_as(OTHER_TENANT, Role::Admin, "/v1/verify?stream=customer-c-1")
            .await
            .status,
        404
    );

    // The same ids in the other tenant are other entities: its own stream, from revision 0,
    // and the first tenant's customer is untouched.
    let theirs = app
        .ingest_as(OTHER_TENANT, json!([registered("c-1", "Someone Else")]))
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_eq!(theirs.body["events"][0]["revision"], 0);
    let last = last_position(&theirs.body);
    let their_view = app
        .get_as(
            OTHER_TENANT,
            Role::Admin,
            &format!("/v1/customers/c-1?min_position={last}"),
        )
        .await;
    assert_eq!(their_view.ok()["name"], "Someone Else");
    assert_eq!(their_view.body["orders"]["count"], 0);
    let my_view = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    assert_eq!(my_view.ok()["name"], "Ada Lovelace");
    assert_eq!(my_view.body["orders"]["count"], 2);
    // An id of the first tenant's event replayed by the other tenant is not its duplicate.
    let first_id = mine.body["events"][0]["id"].clone();
    let mut replay = registered("c-2", "Other");
    replay["id"] = first_id;
    let replayed = app.ingest_as(OTHER_TENANT, json!([replay])).await;
    assert_eq!(replayed.status, 201, "{}", replayed.body);
    assert_eq!(replayed.body["duplicates"], 0);
    let live = app
        .send(
            app.client
                .get(app.url("/v1/events?limit=100"))
                .bearer_auth(app.key(OTHER_TENANT, Role::Analyst)),
        )
        .await;
    let events = live.ok()["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["tenant"] == OTHER_TENANT));
}

pub async fn roles_limit_what_each_key_may_do<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([registered("c-1", "Ada")])).await.ok();
    // (path, roles that may read it)
    let reads: &[(&str, &[Role])] = &[
        ("/v1/customers", &[Role::Analyst, Role::Admin]),
        ("/v1/customers/c-1", &[Role::Analyst, Role::Admin]),
        (
            "/v1/customers/c-1/timeline",
            &[Role::Analyst, Role::Auditor, Role::Admin],
        ),
        ("/v1/pipeline", &[Role::Analyst, Role::Admin]),
        ("/v1/opportunities", &[Role::Analyst, Role::Admin]),
        ("/v1/cases", &[Role::Analyst, Role::Admin]),
        ("/v1/service/backlog", &[Role::Analyst, Role::Admin]),
        ("/v1/events", &[Role::Analyst, Role::Admin]),
        ("/v1/verify", &[Role::Auditor, Role::Admin]),
        (
            "/v1/projections",
            &[Role::Analyst, Role::Auditor, Role::Admin],
        ),
    ];
    for (path, allowed) in reads {
        for role in Role::ALL {
            let answer = app
                .get_as(TENANT, role, &format!("{path}?min_position=1"))
                .await;
            if allowed.contains(&role) {
                assert_eq!(answer.status, 200, "{role} on {path}: {}", answer.body);
            } else {
                answer.problem(403, &[role.as_str()]);
            }
        }
    }
    for role in Role::ALL {
        let answer = app
            .send(
                app.client
                    .post(app.url("/v1/events"))
                    .bearer_auth(app.key(TENANT, role))
                    .json(&json!({"events": [interaction("c-1", "web", "2026-01-01T00:00:00Z")]})),
            )
            .await;
        if matches!(role, Role::Ingest | Role::Admin) {
            assert_eq!(answer.status, 201, "{role}: {}", answer.body);
        } else {
            answer.problem(403, &["append events"]);
        }
    }
}

pub async fn read_your_writes_waits_then_answers_503_with_the_position<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let limits = Limits {
        max_wait: Duration::from_secs(3),
        ..Limits::default()
    };
    let mut app = app!(start, limits);
    // Each append is read back at once, by the position it answered.
    for n in 0..20 {
        let id = format!("c-{n}");
        let answer = app.ingest(json!([registered(&id, "Someone")])).await;
        let last = last_position(answer.ok());
        let view = app
            .get(&format!("/v1/customers/{id}?min_position={last}"))
            .await;
        assert_eq!(view.status, 200, "{}", view.body);
        assert!(view.read_position >= Some(last));
    }
    // A position in the log that the read models have not applied (their workers stopped):
    // waited for, then 503 with the position reached and Retry-After.
    let head = app.head().await;
    app.stop_projections();
    let late = app.ingest(json!([registered("c-late", "Late")])).await;
    let late = last_position(late.ok());
    let answer = app.get(&format!("/v1/customers?min_position={late}")).await;
    answer.problem(503, &["min_position", "retry"]);
    assert_eq!(answer.body["position"], head);
    assert_eq!(answer.read_position, Some(head));
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
}

pub async fn min_position_beyond_the_head_is_a_400_at_once<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    // The default wait (10 s) would show if the request waited at all.
    let app = app!(start);
    let answer = app.ingest(json!([registered("c-1", "Ada")])).await;
    let last = last_position(answer.ok());
    for route in [
        "/v1/customers",
        "/v1/pipeline",
        "/v1/service/backlog",
        "/v1/customers/c-1",
        "/v1/customers/c-1/timeline",
        "/v1/opportunities",
        "/v1/projections",
        "/v1/events",
        "/v1/customers/c-1/personal-data",
    ] {
        let began = std::time::Instant::now();
        let beyond = app.get(&format!("{route}?min_position={}", last + 1)).await;
        beyond.problem(400, &["min_position", "head"]);
        assert_eq!(beyond.body["head_position"], last, "{route}");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{route} waited {:?}",
            began.elapsed()
        );
        // The head itself is reachable.
        app.get(&format!("{route}?min_position={last}")).await.ok();
    }
}

pub async fn money_totals_never_wrap<F: Future<Output = Option<App>>>(start: impl Start<F>) {
    let app = app!(start);
    const MAX: &str = "92233720368547758.07";
    let at = "2026-01-10T10:00:00Z";
    let first = app.ingest(json!([order("c-1", "o-1", MAX, at)])).await;
    let first = last_position(first.ok());
    // A second order would bring c-1's gross in EUR past what the read model holds.
    let second = app.ingest(json!([order("c-1", "o-2", MAX, at)])).await;
    second.problem(422, &["events[0].data.amount", "c-1", "EUR"]);
    assert_eq!(second.body["event_index"], 0);
    let batch = app
        .ingest(json!([
            order("c-2", "o-1", MAX, at),
            order("c-2", "o-2", "0.01", at)
        ]))
        .await;
    batch.problem(422, &["events[1].data.amount", "c-2"]);
    assert_eq!(
        app.head().await,
        first,
        "nothing of a refused batch is written"
    );
    let view = app
        .get(&format!("/v1/customers/c-1?min_position={first}"))
        .await;
    assert_eq!(
        view.ok()["orders"]["by_currency"][0]["gross"]["amount"],
        MAX
    );

    // Totals over many streams are computed at query time: refused, never wrapped.
    let deal = |id: &str, customer: &str| {
        json!({"type": "OpportunityOpened", "data": {"opportunity_id": id,
            "customer_id": customer, "name": "Huge", "amount": MAX, "currency": "EUR",
            "stage": "Prospecting", "probability": 50, "close_date": "2026-06-30"}})
    };
    let deals = app
        .ingest(json!([deal("op-1", "c-3"), deal("op-2", "c-3")]))
        .await;
    let deals = last_position(deals.ok());
    let pipeline = app.get(&format!("/v1/pipeline?min_position={deals}")).await;
    pipeline.problem(422, &["stage Prospecting", "EUR"]);
    let customer = app
        .get(&format!("/v1/customers/c-3?min_position={deals}"))
        .await;
    customer.problem(422, &["c-3", "open deals", "EUR"]);
    // A merge adds another customer's orders: the survivor's total is refused too.
    let merged = app
        .ingest(json!([
            order("c-4", "o-1", MAX, at),
            {"type": "CustomerMerged", "data": {"customer_id": "c-4", "into_customer_id": "c-1"}},
        ]))
        .await;
    let merged = last_position(merged.ok());
    let survivor = app
        .get(&format!("/v1/customers/c-1?min_position={merged}"))
        .await;
    survivor.problem(422, &["c-1", "orders", "EUR"]);
}

pub async fn past_views_fold_the_log_at_a_business_time_a_recording_time_or_a_position<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let first = app.ingest(history("c-1")).await;
    let first_last = last_position(first.ok());
    // Recorded later: a third order.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later = app
        .ingest(json!([order("c-1", "o-3", "7.00", "2026-03-01T00:00:00Z")]))
        .await;
    let last = last_position(later.ok());

    let live = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    assert_eq!(live.ok()["orders"]["count"], 3);
    // Business time: by 2026-01-31 one order had been placed; RFM is evaluated then.
    let as_of = app
        .get("/v1/customers/c-1?as_of=2026-01-31T00:00:00Z")
        .await;
    let as_of = as_of.ok();
    assert_eq!(as_of["orders"]["count"], 1);
    assert_eq!(as_of["interactions"]["total"], 1);
    assert_eq!(as_of["evaluated_at"], "2026-01-31T00:00:00Z");
    // Recording time: before the third order was recorded.
    let known = app
        .get(&format!(
            "/v1/customers/c-1?known_at={}",
            between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ))
        .await;
    assert_eq!(known.ok()["orders"]["count"], 2);
    // A position: the first three events.
    let cut = app.get("/v1/customers/c-1?position=3").await;
    let cut = cut.ok();
    assert_eq!(cut["orders"]["count"], 1);
    assert_eq!(cut["last_position"], 3);
    let whole = app
        .get(&format!("/v1/customers/c-1?position={first_last}"))
        .await;
    assert_eq!(whole.ok()["orders"]["count"], 2);
    app.get("/v1/customers/c-1?as_of=2025-01-01T00:00:00Z")
        .await
        .problem(404, &["c-1"]);
}

/// Reads server-sent events from a response until `count` events arrived: (id, event, data).
async fn read_sse(
    response: &mut reqwest::Response,
    buffer: &mut String,
    count: usize,
) -> Vec<(u64, String, Value)> {
    let mut events = Vec::new();
    while events.len() < count {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                {
                    kind = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                    data.push_str(v);
                }
            }
            if let Some(id) = id {
                events.push((id, kind, serde_json::from_str(&data).expect("data is JSON")));
            }
        }
        if events.len() >= count {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("an event within 20 s")
            .expect("read")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    events
}

pub async fn the_live_stream_sends_past_events_then_new_ones_and_resumes_by_last_event_id<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([
        registered("c-1", "Ada"),
        interaction("c-1", "web", "2026-01-01T00:00:00Z")
    ]))
    .await
    .ok();
    app.ingest_as(OTHER_TENANT, json!([registered("c-9", "Not yours")]))
        .await
        .ok();
    let mut response = app
        .client
        .get(app.url("/v1/events/live?after=0"))
        .bearer_auth(app.key(TENANT, Role::Analyst))
        .send()
        .await
        .expect("connect");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    let past = read_sse(&mut response, &mut buffer, 2).await;
    assert_eq!(past[0].0, 1);
    assert_eq!(past[0].1, "CustomerRegistered");
    assert_eq!(past[0].2["data"]["name"], "Ada");
    assert_eq!(past[1].0, 2);
    // Live: the other tenant's event (position 3) never shows; ours (4) does.
    app.ingest(json!([order("c-1", "o-1", "3.00", "2026-01-02T00:00:00Z")]))
        .await
        .ok();
    let live = read_sse(&mut response, &mut buffer, 1).await;
    assert_eq!(live[0].0, 4);
    assert_eq!(live[0].1, "OrderPlaced");
    assert_eq!(live[0].2["tenant"], TENANT);
    drop(response);
    // Resuming after the first event.
    let mut resumed = app
        .client
        .get(app.url("/v1/events/live"))
        .bearer_auth(app.key(TENANT, Role::Analyst))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .expect("connect");
    let mut buffer = String::new();
    let again = read_sse(&mut resumed, &mut buffer, 2).await;
    assert_eq!(again.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 4]);
    app.send(
        app.client
            .get(app.url("/v1/events/live"))
            .bearer_auth(app.key(TENANT, Role::Analyst))
            .header("Last-Event-ID", "latest"),
    )
    .await
    .problem(400, &["Last-Event-ID"]);
}

pub async fn concurrent_writers_to_one_stream_never_break_its_rules<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let app = std::sync::Arc::new(app);
    // Eight writers register the same new customer: exactly one may.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.ingest(json!([registered("c-1", &format!("Writer {n}"))]))
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    statuses.sort();
    assert_eq!(statuses, vec![201, 409, 409, 409, 409, 409, 409, 409]);
    // Eight writers log interactions on it at once: all land, each at its own revision.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let batch: Vec<Value> = (0..5)
                .map(|_| interaction("c-1", "chat", "2026-01-01T00:00:00Z"))
                .collect();
            let answer = app.ingest(json!(batch)).await;
            assert_eq!(answer.status, 201, "{}", answer.body);
            answer.body["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["revision"].as_u64().expect("revision"))
                .collect::<Vec<_>>()
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await.expect("task"));
    }
    revisions.sort();
    assert_eq!(revisions, (1..=40).collect::<Vec<u64>>());
    let verify = app.get_as(TENANT, Role::Auditor, "/v1/verify").await;
    assert_eq!(verify.ok()["intact"], true);
    assert_eq!(verify.body["events_checked"], 41);
}

pub async fn erased_customers_timelines_hide_personal_fields<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(history("c-1")).await.ok();
    let erased = app
        .ingest(json!([{"type": "CustomerErased", "data": {"customer_id": "c-1"}}]))
        .await;
    let last = last_position(erased.ok());
    let timeline = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/customers/c-1/timeline?min_position={last}&limit=1"),
        )
        .await;
    let timeline = timeline.ok();
    assert_eq!(timeline["erased"], true);
    let data = &timeline["entries"][0]["data"];
    assert_eq!(data["name"], "[erased]");
    assert_eq!(data["email"], "[erased]");
    assert_eq!(data["customer_id"], "c-1");
    let view = app.get("/v1/customers/c-1").await;
    assert_eq!(view.ok()["status"], "erased");
    assert_eq!(view.body["name"], Value::Null);
}

pub async fn metrics_and_the_openapi_document_describe_the_service<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let batch = history("c-1");
    let answer = app.ingest(batch.clone()).await;
    let last = last_position(answer.ok());
    app.get(&format!("/v1/customers/c-1?min_position={last}"))
        .await
        .ok();
    assert_eq!(
        app.ingest(batch).await.status,
        200,
        "a replay: all duplicates"
    );
    app.get("/v1/customers/c-404").await;

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    for line in [
        "crm_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"201\"} 1",
        "crm_http_requests_total{method=\"POST\",route=\"/v1/events\",status=\"200\"} 1",
        "crm_http_requests_total{method=\"GET\",route=\"/v1/customers/{id}\",status=\"404\"} 1",
        "crm_events_appended_total 10",
        "crm_events_duplicate_total 10",
        "crm_append_batches_total 2",
        "crm_projection_lag_events{projection=\"customer_360\"}",
        "crm_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/customers/{id}\"} 2",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
    }
    assert!(
        !text.contains("c-404"),
        "concrete paths never become labels"
    );

    let spec = app.send(app.client.get(app.url("/openapi.json"))).await;
    let spec = spec.ok();
    assert_eq!(spec["openapi"], "3.1.0");
    // Every described operation is routed (anything but the router's own 404), and has a
    // typed success answer and the problem answers of its kind.
    let operations = crm_api::openapi::operations();
    assert!(operations.len() >= 20, "{operations:?}");
    for (method, path) in &operations {
        let operation = &spec["paths"][path][method];
        let success = operation["responses"]
            .as_object()
            .expect("responses")
            .iter()
            .find(|(status, _)| status.starts_with('2'))
            .map(|(_, answer)| answer.clone())
            .unwrap_or_else(|| panic!("{method} {path} has no success answer"));
        assert!(
            success["content"]
                .as_object()
                .is_some_and(|c| c.values().all(|media| media["schema"].is_object())),
            "{method} {path}: the success answer has no schema: {success}"
        );
        if path.starts_with("/v1/") {
            assert_eq!(
                operation["responses"]["401"]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} lacks its 401 problem answer"
            );
        }
        if method != "get" {
            assert!(
                operation["responses"]["422"].is_object(),
                "{method} {path} lacks its 422 answer"
            );
        }
        if path == "/v1/events/live" {
            continue; // an endless stream; the suite reads it above
        }
        let concrete = path.replace("{id}", "c-1");
        let request = match method.as_str() {
            "post" => app.client.post(app.url(&concrete)),
            "put" => app.client.put(app.url(&concrete)),
            _ => app.client.get(app.url(&concrete)),
        };
        let answer = app
            .send(
                request
                    .bearer_auth(app.key(TENANT, Role::Admin))
                    .json(&json!({})),
            )
            .await;
        assert!(
            !answer.body["detail"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no route"),
            "{method} {path} is described but not routed"
        );
        // A success the document says carries the read position carries it.
        let documents_position =
            operation["responses"][answer.status.to_string()]["headers"]["crm-read-position"]
                .is_object();
        if method == "get" && answer.status == 200 {
            assert_eq!(
                answer.read_position.is_some(),
                documents_position,
                "{method} {path}: crm-read-position sent {:?}, documented {documents_position}",
                answer.read_position
            );
        }
    }
    // The bodies that take JSON are described by their schemas.
    for (method, path, schema) in [
        ("post", "/v1/events", "EventBatch"),
        ("put", "/v1/service/sla-targets", "SlaTargetsBody"),
        ("put", "/v1/service/calendar", "CalendarBody"),
        ("put", "/v1/privacy/retention", "RetentionRule"),
        ("post", "/v1/webhooks", "WebhookBody"),
        ("patch", "/v1/webhooks/{id}", "WebhookPatchBody"),
    ] {
        assert_eq!(
            spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{method} {path}"
        );
    }
    // The routes under /v1 that exist are all described: a path the document lacks is the
    // router's 404 ("no route"), and every path the document has answers otherwise.
    let described: std::collections::BTreeSet<&str> =
        operations.iter().map(|(_, path)| path.as_str()).collect();
    for path in [
        "/v1/events",
        "/v1/customers",
        "/v1/pipeline",
        "/v1/cases",
        "/v1/service/backlog",
    ] {
        assert!(described.contains(path), "{path} is not described");
    }
    let unknown = app.get("/v1/nothing-here").await;
    assert_eq!(unknown.status, 404);
    // The documentation page is served from the binary, with a policy that allows no other
    // origin.
    let page = app
        .client
        .get(app.url("/docs"))
        .send()
        .await
        .expect("docs page");
    assert_eq!(page.status(), 200);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let html = page.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/init.js",
    ] {
        assert!(html.contains(asset), "the page loads {asset}");
        let answer = app.client.get(app.url(asset)).send().await.expect("asset");
        assert_eq!(answer.status(), 200, "{asset}");
        assert!(answer.bytes().await.expect("bytes").len() > 100, "{asset}");
    }
}

pub async fn random_and_malformed_requests_never_get_a_5xx<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    crate::fuzz::run(&app, 600).await;
}

pub async fn a_writer_beside_the_api_is_seen_before_the_next_check<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([registered("c-1", "Ada")])).await.ok();
    // Another process appends to the stream this process has just folded.
    let beside = crm_core::catalog::DomainEvent::parse(
        "InteractionLogged",
        &json!({"customer_id": "c-1", "interaction_id": "i-beside", "channel": "web",
                "direction": "inbound", "subject": "Written beside the API"}),
    )
    .expect("event");
    app.state
        .store
        .append(
            &crm_core::envelope::TenantId::parse(TENANT).expect("tenant"),
            &beside.stream(),
            crm_core::store::ExpectedRevision::Exact(0),
            vec![beside.to_new_event()],
        )
        .await
        .expect("append beside");
    // The API's next check knows of it: the same interaction again breaks the rule...
    let again = json!([{"type": "InteractionLogged", "data": {"customer_id": "c-1",
        "interaction_id": "i-beside", "channel": "web", "direction": "inbound",
        "subject": "Again"}}]);
    app.ingest(again).await.problem(409, &["i-beside"]);
    // ...and a new one lands after it.
    let next = app
        .ingest(json!([interaction("c-1", "phone", "2026-01-01T00:00:00Z")]))
        .await;
    assert_eq!(next.status, 201, "{}", next.body);
    assert_eq!(next.body["events"][0]["revision"], 2);
}

/// A customer with every personal field of the catalog filled, each with a value found
/// nowhere else: profile, consent, an interaction, a refunded order, a lost deal, an
/// escalated case with its CSAT answer, an NPS answer and a lead converted to it. Returns the events and the plaintext values.
fn personal_history(id: &str) -> (Value, Vec<&'static str>) {
    let secrets = vec![
        "Wilhelmina Quarrington",
        "w.quarrington@mailbox.example",
        "+44 20 7946 0958",
        "Billing muddle of Marchvale",
        "Wants the Hollowmere invoices resent",
        "Parcel crushed by Vexley couriers",
        "Brimwell estate renewal",
        "Chose the rival Osterfield offer",
        "Locked out of the Tarrowgate portal",
        "Reset mails bounce at Pellinore host",
        "Escalated because Ravensworth complained",
        "Oswin Fairweather-Lyle",
        "oswin.fl@leadbox.example",
        "+1 555 0199 3321",
        "Fairweather Kettles Ltd",
        "Thanked Quenby at the Lowmoor desk",
        "Would tell the Ashcombe choir",
    ];
    let lead = format!("l-{id}");
    let events = json!([
        {"type": "CustomerRegistered", "occurred_at": "2026-01-01T09:00:00Z",
         "data": {"customer_id": id, "kind": "person", "name": secrets[0], "email": secrets[1],
                  "phone": secrets[2], "segment": "smb", "owner": "u-7"}},
        {"type": "CustomerConsentChanged", "occurred_at": "2026-01-01T09:05:00Z",
         "data": {"customer_id": id, "channel": "email", "purpose": "marketing", "granted": true}},
        {"type": "InteractionLogged", "occurred_at": "2026-01-02T10:00:00Z",
         "data": {"customer_id": id, "interaction_id": format!("i-{id}"), "channel": "phone",
                  "direction": "inbound", "subject": secrets[3], "summary": secrets[4]}},
        {"type": "OrderPlaced", "occurred_at": "2026-01-03T10:00:00Z",
         "data": {"customer_id": id, "order_id": "o-1", "amount": "80.00", "currency": "EUR"}},
        {"type": "OrderRefunded", "occurred_at": "2026-01-04T10:00:00Z",
         "data": {"customer_id": id, "order_id": "o-1", "amount": "20.00", "currency": "EUR",
                  "reason": secrets[5]}},
        {"type": "OpportunityOpened", "occurred_at": "2026-01-05T00:00:00Z",
         "data": {"opportunity_id": format!("op-{id}"), "customer_id": id, "name": secrets[6],
                  "amount": "900.00", "currency": "EUR", "stage": "Prospecting",
                  "close_date": "2026-06-30"}},
        {"type": "OpportunityLost", "occurred_at": "2026-01-20T00:00:00Z",
         "data": {"opportunity_id": format!("op-{id}"), "reason": secrets[7]}},
        {"type": "CaseOpened", "occurred_at": "2026-02-01T09:00:00Z",
         "data": {"case_id": format!("k-{id}"), "customer_id": id, "subject": secrets[8],
                  "description": secrets[9], "channel": "email", "priority": "normal"}},
        {"type": "CaseEscalated", "occurred_at": "2026-02-01T12:00:00Z",
         "data": {"case_id": format!("k-{id}"), "reason": secrets[10], "priority": "high"}},
        {"type": "CsatRecorded", "occurred_at": "2026-02-02T12:00:00Z",
         "data": {"case_id": format!("k-{id}"), "score": 4, "comment": secrets[15]}},
        {"type": "NpsAnswered", "occurred_at": "2026-02-03T12:00:00Z",
         "data": {"customer_id": id, "answer_id": "nps-1", "score": 9, "comment": secrets[16]}},
        {"type": "LeadCaptured", "occurred_at": "2025-12-01T00:00:00Z",
         "data": {"lead_id": lead, "name": secrets[11], "email": secrets[12],
                  "phone": secrets[13], "company": secrets[14], "source": "web_form"}},
        {"type": "LeadConverted", "occurred_at": "2025-12-20T00:00:00Z",
         "data": {"lead_id": lead, "customer_id": id}},
    ]);
    let mut events = events;
    for event in events.as_array_mut().into_iter().flatten() {
        event["id"] = json!(uuid::Uuid::now_v7());
    }
    (events, secrets)
}

/// The plaintext values among `secrets` that `text` holds.
fn leaked<'a>(text: &str, secrets: &[&'a str]) -> Vec<&'a str> {
    secrets
        .iter()
        .copied()
        .filter(|s| text.contains(s))
        .collect()
}

/// Waits until every read model has applied `position`.
async fn settle(app: &App, position: u64) {
    for path in [
        "/v1/customers",
        "/v1/customers/c-none/timeline",
        "/v1/pipeline",
        "/v1/service/backlog",
    ] {
        let answer = app.get(&format!("{path}?min_position={position}")).await;
        assert!(
            answer.status == 200 || answer.status == 404,
            "{path}: {}",
            answer.body
        );
    }
}

/// Every GET route of the OpenAPI document as concrete requests about customer `id` (the
/// live stream aside), several per route where its parameters change what it shows. A route
/// this does not know fails the test: a new route must be walked.
fn walk_requests(id: &str, head: u64, search: bool) -> Vec<String> {
    let mut requests = Vec::new();
    for (method, path) in crm_api::openapi::operations() {
        if method != "get" {
            continue;
        }
        let variants: Vec<String> = match path.as_str() {
            "/healthz"
            | "/metrics"
            | "/openapi.json"
            | "/v1/verify"
            | "/v1/service/sla-targets"
            | "/v1/projections"
            | "/v1/audit/access" => {
                vec![String::new()]
            }
            "/v1/events/live" => continue, // read as a stream below
            "/v1/events" => vec!["?limit=1000".into()],
            "/v1/pipeline" => vec![
                String::new(),
                "?owner=u-7".into(),
                "?as_of=2030-01-01T00:00:00Z".into(),
            ],
            "/v1/customers" => {
                let mut v = vec![String::new(), "?status=active".into()];
                if search {
                    v.push("?search=quarrington".into());
                }
                v
            }
            "/v1/customers/{id}" => vec![
                String::new(),
                "?as_of=2030-01-01T00:00:00Z".into(),
                format!("?position={head}"),
                format!(
                    "?known_at={}",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
            ],
            "/v1/customers/{id}/timeline" => vec!["?limit=1000".into(), "?order=desc".into()],
            "/v1/customers/{id}/personal-data" => vec![String::new()],
            "/v1/opportunities" => vec![String::new(), "?status=lost".into()],
            // Ids, roles, due times and titles (business labels): nothing personal.
            "/v1/opportunities/{id}" | "/v1/accounts/{id}/contacts" => vec![String::new()],
            "/v1/tasks" => vec![String::new(), "?overdue=true&order=due".into()],
            "/v1/cases" => vec![String::new(), "?status=open&limit=1000".into()],
            "/v1/service/backlog" => vec!["?limit=1000".into()],
            // A tenant setting and its last run's counts: nothing personal to redact.
            "/v1/privacy/retention" => vec![String::new()],
            // Hashes, and the event as stored: personal fields sealed, never plain.
            "/v1/audit/head" | "/v1/audit/public-key" => vec![String::new()],
            "/v1/audit/consistency" => vec!["?from=1".into()],
            "/v1/audit/inclusion" => vec![format!("?stream=customer-{id}&revision=0")],
            // Customer ids and figures: nothing personal.
            "/v1/analytics/rfm" => vec!["?currency=EUR".into()],
            "/v1/analytics/clv" | "/v1/analytics/profitability" | "/v1/analytics/cohorts" => {
                vec!["?currency=EUR".into()]
            }
            "/v1/analytics/lifecycle" => {
                vec![String::new(), "?since=2020-01-01T00:00:00Z".into()]
            }
            "/v1/analytics/funnel" => vec![
                "?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z".into(),
                "?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&owner=u-7".into(),
            ],
            "/v1/leads" => vec![String::new(), "?status=converted".into()],
            "/v1/leads/funnel" => vec![String::new(), "?from=2020-01-01T00:00:00Z".into()],
            // Ids, labels, counts and amounts: nothing personal.
            "/v1/campaigns" => vec![String::new()],
            "/v1/campaigns/{id}" => vec![String::new()],
            // Product ids, names and figures: nothing personal.
            "/v1/analytics/products" => vec![
                "?currency=EUR".into(),
                "?currency=EUR&from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z".into(),
            ],
            // Ids, channels, statuses and times: nothing personal.
            "/v1/consent/violations" => vec![String::new(), "?channel=email".into()],
            "/v1/settings/consent" => vec![String::new()],
            // A time zone, hours and holidays: nothing personal.
            "/v1/service/calendar" => vec![String::new()],
            // Counts, rates and seconds by priority, agent, channel and period.
            "/v1/analytics/service" => vec![String::new(), "?period=week".into()],
            // Labels, customer ids, counts and durations; scores by agent, priority and period:
            // nothing personal (comments show only on the 360 view).
            "/v1/service/complaints" => {
                vec!["?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z".into()]
            }
            "/v1/settings/complaints" => vec![String::new()],
            "/v1/service/satisfaction" => vec![
                "?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z".into(),
                "?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&period=week".into(),
            ],
            // Rule definitions (no personal field may be named in one) and run logs of ids.
            "/v1/workflows" | "/v1/workflows/{id}" | "/v1/workflows/{id}/runs" => {
                vec![String::new()]
            }
            // Webhook subscriptions (URLs, filters, states) and their delivery log (ids,
            // statuses, times): nothing personal; the walk's id names none (404).
            "/v1/webhooks" | "/v1/webhooks/{id}" | "/v1/webhooks/{id}/deliveries" => {
                vec![String::new()]
            }
            other => panic!("GET {other} is not walked: add it to walk_requests"),
        };
        for variant in variants {
            requests.push(format!("{}{variant}", path.replace("{id}", id)));
        }
    }
    requests
}

/// Opens the live stream with `key` and reads `count` events: their raw `data:` text.
async fn live_text(app: &App, key: &str, count: usize) -> String {
    let mut response = app
        .client
        .get(app.url("/v1/events/live?after=0"))
        .bearer_auth(key)
        .send()
        .await
        .expect("connect");
    assert_eq!(response.status(), 200);
    let mut buffer = String::new();
    let events = read_sse(&mut response, &mut buffer, count).await;
    assert_eq!(events.len(), count);
    events
        .iter()
        .map(|(_, _, data)| data.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn personal_fields_are_redacted_on_every_get_route_without_the_flag<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let id = "c-pd";
    let (events, secrets) = personal_history(id);
    let count = events.as_array().map_or(0, Vec::len);
    let answer = app.ingest(events).await;
    let last = last_position(answer.ok());
    settle(&app, last).await;
    // The audit tree too, so the inclusion proof of the walk is there.
    app.get_as(
        TENANT,
        Role::Auditor,
        &format!("/v1/audit/head?min_position={last}"),
    )
    .await
    .ok();

    // Without --personal-data (analyst and auditor): no plaintext anywhere, whatever the
    // route answers.
    for role in [Role::Analyst, Role::Auditor] {
        let key = app.redacted_key(TENANT, role);
        for request in walk_requests(id, last, false) {
            let answer = app.get_with(key, &request).await;
            assert!(answer.status < 500, "{role} GET {request}: {}", answer.body);
            let text = answer.body.to_string();
            assert_eq!(
                leaked(&text, &secrets),
                Vec::<&str>::new(),
                "{role} without --personal-data read plaintext from GET {request}: {text}"
            );
        }
    }
    let key = app.redacted_key(TENANT, Role::Analyst);
    let live = live_text(&app, key, count).await;
    assert_eq!(leaked(&live, &secrets), Vec::<&str>::new(), "live: {live}");
    assert!(live.contains("[redacted]"), "{live}");
    // The values read "[redacted]" in place, where there were any.
    let view = app.get_with(key, &format!("/v1/customers/{id}")).await;
    let view = view.ok();
    for field in ["name", "email", "phone"] {
        assert_eq!(view[field], "[redacted]", "{field}");
    }
    assert_eq!(view["segment"], "smb", "other fields are untouched");
    let lost = app.get_with(key, "/v1/opportunities?status=lost").await;
    assert_eq!(lost.ok()["items"][0]["name"], "[redacted]");
    assert_eq!(lost.body["items"][0]["lost_reason"], "[redacted]");
    let backlog = app.get_with(key, "/v1/service/backlog").await;
    assert_eq!(backlog.ok()["open"][0]["subject"], "[redacted]");
    let cases = app.get_with(key, "/v1/cases").await;
    assert_eq!(cases.ok()["items"][0]["subject"], "[redacted]");
    app.get_with(key, "/v1/customers?search=%2B44%2020%207946")
        .await
        .problem(403, &["--personal-data"]);
    let timeline = app
        .get_with(key, &format!("/v1/customers/{id}/timeline?limit=1000"))
        .await;
    let entries = timeline.ok()["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert_eq!(entries.len(), count);
    assert_eq!(entries[0]["data"]["name"], "[redacted]");
    assert_eq!(entries[0]["data"]["customer_id"], id);
    // Searching matches names and emails: refused, naming the flag.
    app.get_with(key, "/v1/customers?search=quarrington")
        .await
        .problem(403, &["--personal-data"]);
    app.get_with(key, &format!("/v1/customers?search={id}"))
        .await
        .problem(403, &["--personal-data"]);
    app.get_with(key, &format!("/v1/customers/{id}/personal-data"))
        .await
        .problem(403, &["--personal-data"]);

    // With --personal-data: the same walk shows every value.
    let mut seen: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for role in [Role::Analyst, Role::Auditor] {
        let key = app.key(TENANT, role);
        for request in walk_requests(id, last, true) {
            let answer = app.get_with(key, &request).await;
            assert!(answer.status < 500, "{role} GET {request}: {}", answer.body);
            let text = answer.body.to_string();
            seen.extend(leaked(&text, &secrets));
        }
    }
    assert_eq!(seen.len(), secrets.len(), "only {seen:?} were shown");
    let key = app.key(TENANT, Role::Analyst);
    // Route by route: each shows what it holds.
    let shows = |path: String, wanted: Vec<&'static str>| {
        let app = &app;
        async move {
            let answer = app.get_with(key, &path).await;
            let text = answer.ok().to_string();
            assert_eq!(leaked(&text, &wanted), wanted, "GET {path}: {text}");
        }
    };
    shows(format!("/v1/customers/{id}"), secrets[..3].to_vec()).await;
    shows(format!("/v1/customers/{id}"), secrets[15..17].to_vec()).await;
    shows(
        format!("/v1/customers/{id}?as_of=2030-01-01T00:00:00Z"),
        secrets[15..17].to_vec(),
    )
    .await;
    shows(
        format!("/v1/customers/{id}?position={last}"),
        secrets[..3].to_vec(),
    )
    .await;
    shows("/v1/customers".into(), secrets[..2].to_vec()).await;
    shows(
        "/v1/customers?search=QUARRINGTON".into(),
        secrets[..2].to_vec(),
    )
    .await;
    shows("/v1/opportunities".into(), secrets[6..8].to_vec()).await;
    shows("/v1/service/backlog".into(), vec![secrets[8]]).await;
    shows("/v1/cases".into(), vec![secrets[8]]).await;
    shows(
        "/v1/customers?search=%2B44%2020%207946".into(),
        secrets[..2].to_vec(),
    )
    .await;
    shows(
        format!("/v1/customers/{id}/timeline?limit=1000"),
        secrets.clone(),
    )
    .await;
    shows(format!("/v1/customers/{id}/personal-data"), secrets.clone()).await;
    shows("/v1/events?limit=1000".into(), secrets.clone()).await;
    let live = live_text(&app, key, count).await;
    assert_eq!(leaked(&live, &secrets), secrets, "live: {live}");
    // An admin key reads them without the flag.
    let admin = app
        .get_with(
            app.redacted_key(TENANT, Role::Admin),
            &format!("/v1/customers/{id}"),
        )
        .await;
    assert_eq!(admin.ok()["name"], secrets[0]);
}

pub async fn subject_access_lists_every_personal_field_with_its_event<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let id = "c-pd";
    let (events, secrets) = personal_history(id);
    let answer = app.ingest(events.clone()).await;
    let answer = answer.ok();
    let last = last_position(answer);
    app.ingest(json!([registered("c-other", "Someone Unrelated")]))
        .await
        .ok();
    let path = format!("/v1/customers/{id}/personal-data?min_position={last}");
    let document = app.get(&path).await;
    let document = document.ok().clone();
    assert_eq!(document["customer_id"], id);
    assert_eq!(document["status"], "active");
    assert_eq!(document["profile"]["name"], secrets[0]);
    assert_eq!(document["profile"]["email"], secrets[1]);
    assert_eq!(document["profile"]["phone"], secrets[2]);
    assert_eq!(document["profile"]["segment"], "smb");
    assert_eq!(document["consents"]["email:marketing"]["granted"], true);
    assert!(
        !document.to_string().contains("Someone Unrelated"),
        "another customer's data"
    );
    let listed = document["events"].as_array().expect("events");
    // Each sent event with personal fields is there, by id, with its position, times and
    // every personal field it was sent with.
    let mut expected = 0;
    for (index, sent) in events.as_array().expect("events").iter().enumerate() {
        let kind = sent["type"].as_str().expect("type");
        let personal = crm_core::catalog::personal_fields(kind);
        if personal.iter().all(|f| sent["data"].get(*f).is_none()) {
            continue;
        }
        expected += 1;
        let event_id = &answer["events"][index]["id"];
        let entry = listed
            .iter()
            .find(|e| &e["event_id"] == event_id)
            .unwrap_or_else(|| panic!("{kind} ({event_id}) is missing: {document}"));
        assert_eq!(entry["event_type"], kind);
        assert_eq!(entry["position"], answer["events"][index]["position"]);
        assert_eq!(entry["stream_id"], answer["events"][index]["stream"]);
        let sent_at = chrono::DateTime::parse_from_rfc3339(
            sent["occurred_at"].as_str().expect("occurred_at"),
        )
        .expect("time");
        let listed_at = chrono::DateTime::parse_from_rfc3339(
            entry["occurred_at"].as_str().expect("occurred_at"),
        )
        .expect("time");
        assert_eq!(sent_at, listed_at);
        assert!(entry["recorded_at"].is_string());
        for field in personal {
            if let Some(value) = sent["data"].get(*field) {
                assert_eq!(&entry["fields"][*field], value, "{kind}.{field}");
            }
        }
        // Only personal fields.
        assert!(entry["fields"].get("customer_id").is_none());
    }
    assert_eq!(listed.len(), expected, "{document}");
    let lead = listed
        .iter()
        .find(|e| e["event_type"] == "LeadCaptured")
        .expect("the converted lead's capture");
    assert_eq!(lead["subject"], format!("lead:l-{id}"));
    assert_eq!(lead["fields"]["company"], secrets[14]);

    // Who may ask: admin, or analyst/auditor keys with the flag; 403 naming the flag otherwise.
    app.get_with(app.key(TENANT, Role::Auditor), &path)
        .await
        .ok();
    app.get_with(app.redacted_key(TENANT, Role::Admin), &path)
        .await
        .ok();
    for role in [Role::Analyst, Role::Auditor] {
        app.get_with(app.redacted_key(TENANT, role), &path)
            .await
            .problem(403, &["--personal-data"]);
    }
    app.get_with(app.key(TENANT, Role::Ingest), &path)
        .await
        .problem(403, &["role ingest"]);
    app.get("/v1/customers/c-nobody/personal-data")
        .await
        .problem(404, &["c-nobody"]);
    app.get_as(
        OTHER_TENANT,
        Role::Admin,
        &format!("/v1/customers/{id}/personal-data"),
    )
    .await
    .problem(404, &[id]);
    app.get(&format!("/v1/customers/{id}/personal-data?colour=red"))
        .await
        .problem(400, &["colour"]);

    // After erasure every field reads "[erased]", the lead's too.
    let erased = app
        .send(
            app.client
                .post(app.url(&format!("/v1/customers/{id}/erase")))
                .bearer_auth(app.redacted_key(TENANT, Role::Admin)),
        )
        .await;
    let position = erased.ok()["position"].as_u64().expect("position");
    let after = app
        .get(&format!(
            "/v1/customers/{id}/personal-data?min_position={position}"
        ))
        .await;
    let after = after.ok();
    assert_eq!(after["status"], "erased");
    assert_eq!(
        leaked(&after.to_string(), &secrets),
        Vec::<&str>::new(),
        "{after}"
    );
    for field in ["name", "email", "phone"] {
        assert_eq!(after["profile"][field], "[erased]", "{field}");
    }
    let fields: Vec<&Value> = after["events"]
        .as_array()
        .expect("events")
        .iter()
        .flat_map(|e| e["fields"].as_object().expect("fields").values())
        .collect();
    assert!(fields.len() >= secrets.len(), "{after}");
    assert!(fields.iter().all(|v| *v == "[erased]"), "{after}");
}

/// The access log as the auditor reads it with `query`.
async fn access_rows(app: &App, query: &str) -> Vec<Value> {
    let answer = app
        .get_as(TENANT, Role::Auditor, &format!("/v1/audit/access{query}"))
        .await;
    answer.ok()["items"].as_array().expect("items").clone()
}

pub async fn the_access_log_records_who_read_whose_personal_fields<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let answer = app.ingest(history("c-1")).await;
    app.ingest(json!([registered("c-2", "Grace Hopper")]))
        .await
        .ok();
    let last = last_position(answer.ok()) + 1;
    settle(&app, last).await;
    let before = chrono::Utc::now();
    // `settle` read with a personal-data key: start from a clean slate of ids.
    let start_id = access_rows(&app, "?limit=1000")
        .await
        .last()
        .map_or(0, |r| r["id"].as_i64().expect("id"));
    let since = format!("?after={start_id}&limit=1000");
    tokio::time::sleep(Duration::from_millis(5)).await;

    // A redacted read records nothing.
    let plain = app.redacted_key(TENANT, Role::Analyst);
    app.get_with(plain, "/v1/customers/c-1").await.ok();
    app.get_with(plain, "/v1/customers").await.ok();
    app.get_with(plain, "/v1/events?limit=100").await.ok();
    assert_eq!(access_rows(&app, &since).await, Vec::<Value>::new());
    let plain_id = App::key_id(plain);
    assert!(
        access_rows(&app, &format!("?key_id={plain_id}"))
            .await
            .is_empty()
    );

    // A read with a personal-data key: key id, subject, route, time.
    let reader = app.key(TENANT, Role::Analyst);
    let reader_id = App::key_id(reader);
    app.get_with(reader, "/v1/customers/c-1").await.ok();
    let rows = access_rows(&app, &since).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["key_id"], reader_id);
    assert_eq!(rows[0]["subject"], "customer:c-1");
    assert_eq!(rows[0]["route"], "GET /v1/customers/{id}");
    let at =
        chrono::DateTime::parse_from_rfc3339(rows[0]["at"].as_str().expect("at")).expect("time");
    assert!(at >= before && at <= chrono::Utc::now(), "{at}");
    assert!(
        !rows[0].to_string().contains("Ada"),
        "no field value is logged"
    );

    // A list: one row per customer it carried, written together.
    app.get_with(reader, "/v1/customers").await.ok();
    let rows = access_rows(&app, &format!("{since}&key_id={reader_id}")).await;
    let listed: Vec<&Value> = rows
        .iter()
        .filter(|r| r["route"] == "GET /v1/customers")
        .collect();
    let subjects: Vec<&str> = listed
        .iter()
        .map(|r| r["subject"].as_str().expect("subject"))
        .collect();
    assert_eq!(subjects, vec!["customer:c-1", "customer:c-2"]);
    assert_eq!(listed[0]["at"], listed[1]["at"], "one insert per answer");
    // The log: the customers of the events shown (deal and case events name theirs, or
    // their stream's opening does).
    app.get_with(reader, "/v1/events?after=6&limit=3")
        .await
        .ok();
    let rows = access_rows(&app, &format!("{since}&key_id={reader_id}")).await;
    let logged: Vec<&str> = rows
        .iter()
        .filter(|r| r["route"] == "GET /v1/events")
        .map(|r| r["subject"].as_str().expect("subject"))
        .collect();
    assert_eq!(logged, vec!["customer:c-1"], "{rows:?}");
    // The live stream, per batch.
    live_text(&app, reader, 11).await;
    let mut live = Vec::new();
    for _ in 0..100 {
        live = access_rows(&app, &format!("{since}&key_id={reader_id}"))
            .await
            .into_iter()
            .filter(|r| r["route"] == "GET /v1/events/live")
            .collect();
        if !live.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live: Vec<&str> = live
        .iter()
        .map(|r| r["subject"].as_str().expect("subject"))
        .collect();
    assert!(
        live.contains(&"customer:c-1") && live.contains(&"customer:c-2"),
        "{live:?}"
    );

    // Filters: subject (a bare id is the customer's), key id, from, to.
    let other = app.key(TENANT, Role::Auditor);
    app.get_with(other, "/v1/customers/c-2/timeline").await.ok();
    let by_subject = access_rows(&app, &format!("{since}&subject=customer:c-2")).await;
    assert!(!by_subject.is_empty());
    assert!(by_subject.iter().all(|r| r["subject"] == "customer:c-2"));
    assert_eq!(
        access_rows(&app, &format!("{since}&subject=c-2")).await,
        by_subject
    );
    let by_key = access_rows(&app, &format!("{since}&key_id={}", App::key_id(other))).await;
    assert_eq!(by_key.len(), 1, "{by_key:?}");
    assert_eq!(by_key[0]["route"], "GET /v1/customers/{id}/timeline");
    let both = access_rows(
        &app,
        &format!("{since}&subject=customer:c-2&key_id={reader_id}"),
    )
    .await;
    assert!(both.iter().all(|r| r["key_id"] == reader_id));
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    let all = access_rows(&app, &since).await;
    assert_eq!(
        access_rows(
            &app,
            &format!("{since}&from={}&to={}", time(before), time(now))
        )
        .await,
        all
    );
    assert!(
        access_rows(&app, &format!("{since}&from={}", time(now)))
            .await
            .is_empty()
    );
    assert!(
        access_rows(&app, &format!("{since}&to={}", time(before)))
            .await
            .is_empty()
    );
    // Paging by id.
    let first = access_rows(&app, &format!("?after={start_id}&limit=1")).await;
    let page = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/audit/access?after={start_id}&limit=1"),
        )
        .await;
    assert_eq!(page.ok()["next_after"], first[0]["id"]);

    // Bad parameters name themselves; only auditors (and admins) read the log; a tenant sees
    // only its own.
    let auditor = |path: &'static str| app.get_as(TENANT, Role::Auditor, path);
    auditor("/v1/audit/access?from=yesterday")
        .await
        .problem(400, &["from", "RFC 3339"]);
    auditor("/v1/audit/access?to=2026-13-01")
        .await
        .problem(400, &["to"]);
    auditor("/v1/audit/access?subject=case:k-1")
        .await
        .problem(400, &["subject"]);
    auditor("/v1/audit/access?key_id=nope")
        .await
        .problem(400, &["key_id"]);
    auditor("/v1/audit/access?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await
        .problem(400, &["from", "to"]);
    app.get_with(reader, "/v1/audit/access")
        .await
        .problem(403, &["role analyst", "auditor"]);
    app.get_as(TENANT, Role::Admin, "/v1/audit/access")
        .await
        .ok();
    let theirs = app
        .get_as(OTHER_TENANT, Role::Auditor, "/v1/audit/access")
        .await;
    assert_eq!(theirs.ok()["items"], json!([]));

    // Append-only, by the database itself.
    let count = |app: &App| {
        let db = app.state.db.clone();
        async move {
            db.fetch(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM crm_access_log",
                vec![],
                &[crm_projections::db::Col::Int],
            )
            .await
            .expect("count")[0][0]
                .as_int()
                .expect("count")
        }
    };
    let rows_before = count(&app).await;
    assert!(rows_before > 0);
    let mut statements = vec![
        "UPDATE crm_access_log SET subject = 'customer:someone-else'",
        "UPDATE crm_access_log SET key_id = 'x' WHERE id = 1",
        "DELETE FROM crm_access_log",
        "DELETE FROM crm_access_log WHERE id = 1",
    ];
    if app.state.db.backend() == crm_projections::db::Backend::Postgres {
        statements.push("TRUNCATE crm_access_log");
    }
    for statement in statements {
        let refused = app.state.db.execute(statement, vec![]).await;
        let error = refused.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    assert_eq!(count(&app).await, rows_before);
    assert_eq!(
        access_rows(&app, &format!("?after={start_id}&limit=1000"))
            .await
            .len(),
        all.len()
    );

    // A key table made before --personal-data existed gains the column on the next open;
    // its keys read personal data redacted.
    app.state
        .db
        .execute("ALTER TABLE crm_api_keys DROP COLUMN personal_data", vec![])
        .await
        .expect("drop the column");
    crm_api::keys::KeyStore::open(app.state.db.clone())
        .await
        .expect("reopen the key table");
    crm_api::keys::KeyStore::open(app.state.db.clone())
        .await
        .expect("reopening again changes nothing");
    let keys = app.state.keys.list(None).await.expect("list");
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| !k.personal_data));
}
