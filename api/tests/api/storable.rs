//! Issue 14 (1): text a backend cannot store is refused at validation, naming its field, the
//! same way on every backend, and never reaches the log or a read model.

use std::future::Future;
use std::time::Duration;

use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::ExpectedRevision;
use crm_projections::db::Backend;
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

/// A trigger on the live `customer_360` table that fails, with a genuine database error,
/// any row whose segment is `poison`: a read-model write that cannot succeed, standing for
/// any event a projection chokes on. Dropped by [`cure`].
async fn poison(app: &App) {
    let db = &app.state.db;
    let generation = crm_projections::bookkeeping::stored_positions(db)
        .await
        .expect("stored positions")
        .into_iter()
        .find(|s| s.projection == "customer_360")
        .expect("customer_360 started")
        .generation;
    let table = format!("rm_customer_360_g{generation}");
    let statements = match db.backend() {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN NEW.segment = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned segment'); END"
        )],
        Backend::Postgres => vec![
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.segment = 'poison' THEN RAISE EXCEPTION 'poisoned segment' \
             USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER poison BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION poison()"
            ),
        ],
    };
    for statement in statements {
        db.execute(&statement, vec![])
            .await
            .expect("install the poison");
    }
}

async fn cure(app: &App) {
    let db = &app.state.db;
    let generation = crm_projections::bookkeeping::stored_positions(db)
        .await
        .expect("stored positions")
        .into_iter()
        .find(|s| s.projection == "customer_360")
        .expect("customer_360 started")
        .generation;
    let statement = match db.backend() {
        Backend::Sqlite => "DROP TRIGGER poison".to_owned(),
        Backend::Postgres => format!("DROP TRIGGER poison ON rm_customer_360_g{generation}"),
    };
    db.execute(&statement, vec![])
        .await
        .expect("drop the poison");
}

/// Issue 14 (11): an event `customer_360` cannot apply for tenant A (injected straight into
/// the store, past the catalog) parks tenant A for that read model only. Tenant B's later
/// events are projected; A's queries answer 503 naming the failure; `/healthz` (degraded, one
/// parked tenant) and `/v1/projections` (A's failure, to A's keys) say so, alike in a second
/// process on standby, which reads the stored state. Once the cause is gone, the process that
/// takes the projections over replays A's parked events in log order: A is live with every
/// event applied exactly once.
pub async fn a_failure_stays_with_its_tenant<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let mut app = app!(start);
    let tenant_a = TENANT;
    let tenant_b = OTHER_TENANT;
    let registered = |id: &str, name: &str| {
        json!({"type": "CustomerRegistered",
               "data": {"customer_id": id, "kind": "person", "name": name}})
    };
    app.ingest_as(tenant_a, json!([registered("c-1", "Ada")]))
        .await
        .ok();
    poison(&app).await;
    // Past validation, straight into the store (sealed like any append).
    let bad = NewEvent::new(
        "CustomerRegistered",
        &json!({"customer_id": "c-bad", "kind": "person", "name": "Eve", "segment": "poison"}),
    );
    let outcome = app
        .state
        .store
        .append(
            &TenantId::parse(tenant_a).expect("tenant"),
            &StreamId::parse("customer-c-bad").expect("stream"),
            ExpectedRevision::NoStream,
            vec![bad],
        )
        .await
        .expect("append the poisoned event");
    let bad_position = outcome.last_position;
    let order = json!({"type": "OrderPlaced", "data": {"customer_id": "c-1", "order_id": "o-1",
                       "amount": "10.00", "currency": "EUR"}});
    app.ingest_as(tenant_a, json!([order])).await.ok();
    app.ingest_as(tenant_b, json!([registered("c-9", "Grace")]))
        .await
        .ok();
    let head = app.head().await;

    // Tenant B goes on.
    let b = app
        .get_as(
            tenant_b,
            Role::Analyst,
            &format!("/v1/customers/c-9?min_position={head}"),
        )
        .await;
    assert_eq!(b.ok()["name"], "Grace");
    // Tenant A's reads from customer_360 answer 503 naming the failure; the timeline, which
    // did not fail, still answers.
    for path in [
        "/v1/customers/c-1",
        "/v1/customers",
        "/v1/customers/c-1/timeline",
    ] {
        app.get(path).await.problem(
            503,
            &[
                "customer_360",
                &format!("position {bad_position}"),
                "poisoned segment",
            ],
        );
    }
    let pipeline = app.get(&format!("/v1/pipeline?min_position={head}")).await;
    assert_eq!(pipeline.status, 200, "{}", pipeline.body);

    let standby = app.beside().await;
    for (process, who) in [(&app, "holder"), (&standby, "standby")] {
        let health = process
            .send(process.client.get(process.url("/healthz")))
            .await;
        assert_eq!(health.status, 200, "{who}: {}", health.body);
        assert_eq!(health.body["status"], "degraded", "{who}: {}", health.body);
        let c360 = &health.body["projections"][0];
        assert_eq!(c360["name"], "customer_360");
        assert_eq!(c360["parked_tenants"], 1, "{who}: {}", health.body);
        assert!(
            !health.body.to_string().contains(tenant_a),
            "{who}: names no tenant"
        );
        let lines = process.get("/v1/projections").await;
        let line = &lines.ok()["projections"][0];
        assert_eq!(line["parked"]["position"], bad_position, "{who}: {line}");
        assert_eq!(line["parked"]["parked_events"], 2, "{who}: {line}");
        assert!(
            line["parked"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("poisoned segment")),
            "{who}: {line}"
        );
        let other = process
            .get_as(tenant_b, Role::Analyst, "/v1/projections")
            .await;
        let line = &other.ok()["projections"][0];
        assert_eq!(line["parked_tenants"], 1, "{who}: {line}");
        assert!(
            line.get("parked").is_none(),
            "{who}: B sees no failure of A: {line}"
        );
        process
            .get("/v1/customers/c-1")
            .await
            .problem(503, &["customer_360"]);
    }
    let standby_health = standby
        .send(standby.client.get(standby.url("/healthz")))
        .await;
    assert_eq!(standby_health.body["projections"][0]["state"], "standby");

    // The cause removed, the holder stops; the standby takes the projections over and
    // replays A's parked events before A is live again.
    cure(&app).await;
    app.stop_workers().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let view = loop {
        let answer = standby
            .get(&format!("/v1/customers/c-1?min_position={head}"))
            .await;
        if answer.status == 200 {
            break answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never became live: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["orders"]["count"], 1, "applied exactly once: {view}");
    let bad = standby.get("/v1/customers/c-bad").await;
    assert_eq!(bad.ok()["segment"], "poison");
    let health = standby
        .send(standby.client.get(standby.url("/healthz")))
        .await;
    assert_eq!(health.body["status"], "ok", "{}", health.body);
    assert_eq!(health.body["projections"][0]["parked_tenants"], 0);
    let listed = standby.get("/v1/customers").await;
    assert_eq!(
        listed.ok()["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.body
    );
    drop(standby);
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

/// A rebuild after the fix also brings a parked tenant back: the new generation applies
/// every event from position 0 (here its tables are free of the poison), and once it is
/// swapped in the old generation's parked state goes with its tables.
pub async fn a_rebuild_brings_a_parked_tenant_back<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([{"type": "CustomerRegistered",
        "data": {"customer_id": "c-1", "kind": "person", "name": "Ada"}}]))
        .await
        .ok();
    poison(&app).await;
    app.ingest(json!([
        {"type": "CustomerRegistered",
         "data": {"customer_id": "c-bad", "kind": "person", "name": "Eve", "segment": "poison"}},
        {"type": "OrderPlaced", "data": {"customer_id": "c-1", "order_id": "o-1",
         "amount": "10.00", "currency": "EUR"}}]))
        .await
        .ok();
    let head = app.head().await;
    app.get_as(
        OTHER_TENANT,
        Role::Analyst,
        &format!("/v1/customers?min_position={head}"),
    )
    .await
    .ok();
    app.get("/v1/customers/c-1")
        .await
        .problem(503, &["customer_360", "poisoned segment"]);
    assert!(
        crm_projections::bookkeeping::request_rebuild(&app.state.db, "customer_360")
            .await
            .expect("request a rebuild")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let view = loop {
        let answer = app.get("/v1/customers/c-1").await;
        if answer.status == 200 {
            break answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never rebuilt: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["orders"]["count"], 1, "{view}");
    assert_eq!(
        app.get("/v1/customers/c-bad").await.ok()["segment"],
        "poison"
    );
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.body["status"], "ok", "{}", health.body);
}
