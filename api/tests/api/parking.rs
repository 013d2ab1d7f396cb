//! Issue 14 (11): a failure stays with its tenant. An event `customer_360` cannot apply
//! (a genuine database error: a trigger on its live table refuses one segment) parks only
//! its tenant; the others are served, every process reports it from the stored state, and a
//! restart or a rebuild after the fix brings the tenant back with each event applied once.

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
    let epoch = || {
        app.state
            .projections
            .borrow()
            .iter()
            .map(|s| s.parks_epoch)
            .max()
            .expect("statuses")
    };
    let epoch_before = epoch();
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
    // The park moved the runner's parking epoch, so this process reads its remembered set
    // of parked tenants again before its next query.
    assert!(epoch() > epoch_before, "the parking epoch moved");
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

/// Finding 11: a projection failing for everyone (here its live table is renamed away, an
/// error about the database, not an event: nobody is parked) is reported by the process
/// that holds it and by a standby alike, from the stored error: 503 `failing`; both say ok
/// again once the table is back and a batch went through.
pub async fn a_failing_projection_is_reported_alike_by_every_process<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([{"type": "CustomerRegistered",
        "data": {"customer_id": "c-1", "kind": "person", "name": "Ada"}}]))
        .await
        .ok();
    let head = app.head().await;
    app.get(&format!("/v1/customers/c-1?min_position={head}"))
        .await
        .ok();
    let standby = app.beside().await;
    let db = &app.state.db;
    let generation = crm_projections::bookkeeping::stored_positions(db)
        .await
        .expect("stored positions")
        .into_iter()
        .find(|s| s.projection == "customer_360")
        .expect("customer_360 started")
        .generation;
    let table = format!("rm_customer_360_g{generation}");
    db.execute(&format!("ALTER TABLE {table} RENAME TO hidden_360"), vec![])
        .await
        .expect("hide the table");
    app.ingest(json!([{"type": "CustomerRegistered",
        "data": {"customer_id": "c-2", "kind": "person", "name": "Grace"}}]))
        .await
        .ok();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (holder, other) = (health(&app).await, health(&standby).await);
        if holder.status == 503 && other.status == 503 {
            for answer in [&holder, &other] {
                assert_eq!(answer.body["status"], "failing", "{}", answer.body);
                assert_eq!(answer.body["projections"][0]["failing"], true);
                assert_eq!(answer.body["projections"][0]["parked_tenants"], 0);
            }
            assert_eq!(other.body["projections"][0]["state"], "standby");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reported failing alike: {} / {}",
            holder.body,
            other.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Retries keep it failing: no process reports ok in between.
    for _ in 0..15 {
        assert_eq!(health(&standby).await.status, 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = standby.get("/v1/projections").await;
    assert!(
        line.ok()["projections"][0]["error"].as_str().is_some(),
        "{}",
        line.body
    );
    db.execute(&format!("ALTER TABLE hidden_360 RENAME TO {table}"), vec![])
        .await
        .expect("restore the table");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (holder, other) = (health(&app).await, health(&standby).await);
        if holder.status == 200 && other.status == 200 {
            assert_eq!(other.body["status"], "ok", "{}", other.body);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recovered: {}",
            other.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = standby
        .get(&format!(
            "/v1/customers/c-2?min_position={}",
            app.head().await
        ))
        .await;
    assert_eq!(view.ok()["name"], "Grace");
    drop(standby);
}

async fn health(process: &App) -> crate::fixture::Answer {
    process
        .send(process.client.get(process.url("/healthz")))
        .await
}
