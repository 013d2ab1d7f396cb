//! Issue 20, workflow rules: a rule set through the API acts through the ingest decision,
//! once per trigger however many workers run; round-robin picks; the cause in the metadata;
//! chains stopped on a cycle; the dry run; schedules fired once per fact, late after
//! downtime, not again for a new version; refusals named; admins only; tenants apart.

use std::future::Future;
use std::time::Duration;

use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::store::Scope;
use serde_json::{Value, json};

use crate::fixture::{Answer, App, OTHER_TENANT, TENANT};
use crate::suite::Start;

macro_rules! app {
    ($start:expr) => {
        match $start(Limits::default()).await {
            Some(app) => app,
            None => return,
        }
    };
}

async fn put(app: &App, tenant: &str, role: Role, path: &str, body: &Value) -> Answer {
    app.send(
        app.client
            .put(app.url(path))
            .bearer_auth(app.key(tenant, role))
            .json(body),
    )
    .await
}

async fn post(app: &App, role: Role, path: &str, body: &Value) -> Answer {
    app.send(
        app.client
            .post(app.url(path))
            .bearer_auth(app.key(TENANT, role))
            .json(body),
    )
    .await
}

/// Waits until the rule worker has read the whole log and the log stopped growing (the
/// worker's own appends included).
async fn settle(app: &App) {
    let mut last = 0;
    for _ in 0..200 {
        let head = app.head().await;
        let answer = app
            .get_as(
                TENANT,
                Role::Admin,
                &format!("/v1/workflows?min_position={head}"),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if head == last && app.head().await == head {
            return;
        }
        last = head;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the workflow worker did not settle");
}

/// Every stored event of the tenant of this type, with its data and metadata.
async fn stored(app: &App, event_type: &str) -> Vec<(Value, Value)> {
    let tenant = crm_core::envelope::TenantId::parse(TENANT).expect("tenant");
    app.state
        .store
        .read_all(&Scope::Tenant(tenant), 0, 10_000)
        .await
        .expect("read the log")
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| {
            (
                serde_json::from_str(e.data.get()).expect("data"),
                serde_json::from_str(e.metadata.get()).expect("metadata"),
            )
        })
        .collect()
}

fn follow_up() -> Value {
    json!({
        "name": "Follow up on negotiation",
        "trigger": {"event": "OpportunityStageChanged",
            "conditions": [{"field": "data.stage", "op": "eq", "value": "Negotiation"}]},
        "actions": [{"append": {"type": "TaskCreated", "data": {
            "task_id": "follow-{{data.opportunity_id}}",
            "subject_type": "opportunity",
            "subject_id": "{{data.opportunity_id}}",
            "owner": {"round_robin": ["ana", "ben"]},
            "due_at": "{{at+2d}}",
            "title": "Call back"
        }}}]
    })
}

fn opened(id: &str) -> Value {
    json!({"type": "OpportunityOpened", "occurred_at": "2026-03-01T09:00:00Z",
        "data": {"opportunity_id": id, "customer_id": "c-1", "name": "Deal", "amount": "1000.00",
            "currency": "EUR", "stage": "Prospecting", "close_date": "2026-06-30", "owner": "u-7"}})
}

fn staged(id: &str, stage: &str, at: &str) -> Value {
    json!({"type": "OpportunityStageChanged", "occurred_at": at,
        "data": {"opportunity_id": id, "stage": stage}})
}

fn registered(id: &str) -> Value {
    json!({"type": "CustomerRegistered", "occurred_at": "2026-01-01T09:00:00Z",
        "data": {"customer_id": id, "kind": "person", "name": "Ada Lovelace"}})
}

pub async fn rules_act_through_the_ingest_decision_once_per_trigger<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let set = put(
        &app,
        TENANT,
        Role::Admin,
        "/v1/workflows/follow-up",
        &follow_up(),
    )
    .await;
    assert_eq!(set.status, 201, "{}", set.body);
    assert_eq!(set.body["version"], 1);
    // Two more workers on the same store, without the lease: with the app's own, three act
    // on every trigger, and each action must still be appended once.
    let extra: Vec<_> = (0..2)
        .map(|_| {
            crm_automation::workflows::spawn(
                app.state.workflows.clone(),
                crm_automation::workflows::WorkerOptions {
                    lease: false,
                    batch: 1,
                    ..Default::default()
                },
            )
        })
        .collect();
    let answer = app
        .ingest(json!([
            registered("c-1"),
            opened("o-1"),
            opened("o-2"),
            opened("o-3"),
            staged("o-1", "Negotiation", "2026-03-02T10:00:00Z"),
            staged("o-2", "Proposal", "2026-03-02T11:00:00Z"),
            staged("o-3", "Negotiation", "2026-03-02T12:00:00Z"),
        ]))
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    settle(&app).await;
    for worker in extra {
        worker.shutdown().await;
    }
    settle(&app).await;
    let tasks = stored(&app, "TaskCreated").await;
    assert_eq!(
        tasks.len(),
        2,
        "one task per negotiation, appended once: {tasks:?}"
    );
    let (first, metadata) = &tasks[0];
    assert_eq!(first["task_id"], "follow-o-1");
    assert_eq!(first["owner"], "ana");
    assert_eq!(first["due_at"], "2026-03-04T10:00:00Z");
    assert_eq!(tasks[1].0["task_id"], "follow-o-3");
    assert_eq!(tasks[1].0["owner"], "ben", "round-robin: the next name");
    assert_eq!(metadata["actor"], "workflow:follow-up@v1");
    assert_eq!(metadata["source"], "workflow");
    assert_eq!(metadata["workflow"]["rule"], "follow-up");
    assert_eq!(metadata["workflow"]["version"], 1);
    assert_eq!(metadata["workflow"]["depth"], 1);
    // The tasks are read models' facts like any other.
    let listed = app
        .get(&format!(
            "/v1/tasks?owner=ben&min_position={}",
            app.head().await
        ))
        .await;
    let items = listed.ok()["items"].as_array().expect("tasks").clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["task_id"], "follow-o-3");
    // A run is recorded once its append committed: the task can be listed a moment before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let items = loop {
        let runs = app
            .get_as(TENANT, Role::Auditor, "/v1/workflows/follow-up/runs")
            .await;
        let items = runs.ok()["items"].as_array().expect("runs").clone();
        if items.len() >= 2 || std::time::Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        items
            .iter()
            .all(|r| r["outcome"] == "appended" || r["outcome"] == "duplicate")
    );
    let detail = app
        .get_as(TENANT, Role::Auditor, "/v1/workflows/follow-up")
        .await;
    assert_eq!(detail.ok()["version"], 1);
    assert_eq!(detail.body["fired"], 2);
    assert_eq!(detail.body["history"][0]["change"], "set");
    // A new version acts on later events only, with its own version in the metadata.
    let mut second = follow_up();
    second["name"] = json!("Follow up on negotiation (v2)");
    let set = put(
        &app,
        TENANT,
        Role::Admin,
        "/v1/workflows/follow-up",
        &second,
    )
    .await;
    assert_eq!(set.body["version"], 2, "{}", set.body);
    app.ingest(json!([
        opened("o-4"),
        staged("o-4", "Negotiation", "2026-03-03T10:00:00Z")
    ]))
    .await
    .ok();
    settle(&app).await;
    let tasks = stored(&app, "TaskCreated").await;
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[2].1["workflow"]["version"], 2);
    assert_eq!(
        tasks[2].0["owner"], "ana",
        "the count goes on across versions"
    );
}

pub async fn chains_stop_on_a_cycle_and_the_dry_run_shows_what_a_rule_would_do<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    // Escalating a case escalates it again: the rule's own action triggers it.
    let echo = json!({
        "name": "Escalate again",
        "trigger": {"event": "CaseEscalated"},
        "actions": [{"append": {"type": "CaseEscalated",
            "data": {"case_id": "{{data.case_id}}", "priority": "urgent"}}}]
    });
    let set = put(&app, TENANT, Role::Admin, "/v1/workflows/echo", &echo).await;
    assert_eq!(set.status, 201, "{}", set.body);
    app.ingest(json!([
        registered("c-1"),
        {"type": "CaseOpened", "data": {"case_id": "k-1", "customer_id": "c-1",
            "subject": "Broken", "channel": "email", "priority": "low"}},
        {"type": "CaseEscalated", "data": {"case_id": "k-1", "priority": "high"}},
    ]))
    .await
    .ok();
    settle(&app).await;
    let escalations = stored(&app, "CaseEscalated").await;
    assert_eq!(
        escalations.len(),
        2,
        "the emitter's and the rule's: {escalations:?}"
    );
    assert_eq!(escalations[1].1["workflow"]["chain"], json!(["echo"]));
    let runs = app
        .get_as(TENANT, Role::Admin, "/v1/workflows/echo/runs")
        .await;
    let items = runs.ok()["items"].as_array().expect("runs").clone();
    let outcomes: Vec<&str> = items.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes.len(), 2, "{items:?}");
    assert!(outcomes.contains(&"appended"), "{items:?}");
    let stopped = items
        .iter()
        .find(|r| r["outcome"] == "stopped")
        .expect("the cycle is reported");
    assert!(
        stopped["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("cycle stopped: this rule is already in the chain echo → echo"),
        "{stopped}"
    );
    // The dry run over the whole log finds the same two firings, and appends nothing.
    let head = app.head().await;
    let dry = post(&app, Role::Analyst, "/v1/workflows/echo/test", &json!({})).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.body["firings"], 2, "{}", dry.body);
    assert_eq!(dry.body["listed"][0]["outcome"], "would_act");
    assert_eq!(
        dry.body["listed"][0]["events"][0]["data"]["priority"],
        "urgent"
    );
    assert_eq!(dry.body["listed"][1]["outcome"], "stopped");
    // A definition tried before it is set: a narrower condition, over a range.
    let narrower = json!({"definition": {
        "name": "Only high", "trigger": {"event": "CaseEscalated",
            "conditions": [{"field": "data.priority", "op": "eq", "value": "high"}]},
        "actions": [{"append": {"type": "CaseAssigned",
            "data": {"case_id": "{{data.case_id}}", "agent": "{{data.case_id}}-owner"}}}]},
        "from": 0, "to": head});
    let dry = post(&app, Role::Admin, "/v1/workflows/other/test", &narrower).await;
    assert_eq!(dry.body["firings"], 1, "{}", dry.body);
    assert_eq!(
        dry.body["listed"][0]["events"][0]["data"]["agent"],
        "k-1-owner"
    );
    assert_eq!(app.head().await, head, "a dry run appends nothing");
    let bad = post(
        &app,
        Role::Admin,
        "/v1/workflows/other/test",
        &json!({"definition": {"name": "x", "trigger": {"event": "CaseEscalated"},
            "actions": [{"append": {"type": "CaseAssigned", "data": {"case_id": "{{nope}}"}}}]}}),
    )
    .await;
    bad.problem(422, &["definition.actions[0].append.data.case_id"]);
    let none = post(&app, Role::Admin, "/v1/workflows/missing/test", &json!({})).await;
    none.problem(404, &["no workflow rule missing"]);
}

pub async fn schedules_fire_once_for_each_fact_come_due<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let now = chrono::Utc::now();
    let ago = |days: i64| {
        (now - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let order = |customer: &str, id: &str, at: String| {
        json!({"type": "OrderPlaced", "occurred_at": at, "data": {"customer_id": customer,
            "order_id": id, "amount": "10.00", "currency": "EUR"}})
    };
    app.ingest(json!([
        registered("c-1"),
        registered("c-2"),
        order("c-1", "o-1", ago(40)),
        order("c-2", "o-2", ago(50)),
        order("c-2", "o-3", ago(10)),
        // A merged customer's latest order counts for the survivor, which never ordered.
        registered("c-3"),
        registered("c-4"),
        order("c-3", "o-4", ago(45)),
        {"type": "CustomerMerged", "data": {"customer_id": "c-3", "into_customer_id": "c-4"}},
        opened("d-1"),
        staged("d-1", "Proposal", &ago(20)),
        opened("d-2"),
        staged("d-2", "Proposal", &ago(3)),
        {"type": "CaseOpened", "occurred_at": ago(1), "data": {"case_id": "k-1",
            "customer_id": "c-1", "subject": "Broken", "channel": "email", "priority": "high"}},
        {"type": "CaseOpened", "occurred_at": ago(1), "data": {"case_id": "k-2",
            "customer_id": "c-2", "subject": "Broken too", "channel": "email", "priority": "low"}},
    ]))
    .await
    .ok();
    let win_back = json!({
        "name": "Win back",
        "trigger": {"schedule": "customer_without_order", "days": 30},
        "actions": [{"append": {"type": "TaskCreated", "data": {
            "task_id": "win-back-{{data.customer_id}}-{{data.order_id}}",
            "subject_type": "customer", "subject_id": "{{data.customer_id}}",
            "owner": "u-7", "due_at": "{{at+7d}}", "title": "Win back"}}}]
    });
    let stuck = json!({
        "name": "Stuck in proposal",
        "trigger": {"schedule": "opportunity_in_stage", "days": 14, "stages": ["Proposal"]},
        "actions": [{"append": {"type": "TaskCreated", "data": {
            "task_id": "stuck-{{data.opportunity_id}}", "subject_type": "opportunity",
            "subject_id": "{{data.opportunity_id}}", "owner": "{{data.owner}}",
            "due_at": "{{at+1d}}", "title": "Unblock"}}}]
    });
    let breach = json!({
        "name": "Escalate before breach",
        "trigger": {"schedule": "case_first_response_due", "offset_minutes": -30,
            "conditions": [{"field": "data.priority", "op": "in", "value": ["high", "urgent"]}]},
        "actions": [{"append": {"type": "CaseEscalated",
            "data": {"case_id": "{{data.case_id}}", "priority": "urgent"}}}]
    });
    for (id, rule) in [
        ("win-back", &win_back),
        ("stuck", &stuck),
        ("breach", &breach),
    ] {
        let set = put(
            &app,
            TENANT,
            Role::Admin,
            &format!("/v1/workflows/{id}"),
            rule,
        )
        .await;
        assert_eq!(set.status, 201, "{}", set.body);
    }
    // Schedules are judged every second: wait for all three to have fired.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        settle(&app).await;
        tasks = stored(&app, "TaskCreated").await;
        if tasks.len() >= 3 && stored(&app, "CaseEscalated").await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids: Vec<&str> = tasks
        .iter()
        .filter_map(|t| t.0["task_id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["stuck-d-1", "win-back-c-1-o-1", "win-back-c-4-o-4"],
        "only the facts come due"
    );
    let stuck = tasks
        .iter()
        .find(|t| t.0["task_id"] == "stuck-d-1")
        .expect("the stuck deal's task");
    assert_eq!(stuck.0["owner"], "u-7", "the deal's owner");
    let escalations = stored(&app, "CaseEscalated").await;
    assert_eq!(escalations.len(), 1, "the high-priority case only");
    assert_eq!(escalations[0].0["case_id"], "k-1");
    // Fired late: the delay is in the run log, not in the event.
    let runs = app
        .get_as(TENANT, Role::Admin, "/v1/workflows/win-back/runs")
        .await;
    let run = &runs.ok()["items"][0];
    assert_eq!(run["outcome"], "appended", "{run}");
    assert!(
        run["delay_ms"].as_i64().unwrap_or(0) > 9 * 24 * 3600 * 1000,
        "{run}"
    );
    assert!(escalations[0].1["workflow"].get("delay_ms").is_none());
    // The customer's timeline shows which rule, and which version, acted.
    let timeline = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!(
                "/v1/customers/c-1/timeline?min_position={}",
                app.head().await
            ),
        )
        .await;
    let entries = timeline.ok()["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert!(
        entries
            .iter()
            .any(|e| e["event_type"] == "CaseEscalated" && e["actor"] == "workflow:breach@v1"),
        "{entries:?}"
    );
    // Later checks, and a new version of the rule, fire nothing again for the same facts.
    let mut again = win_back.clone();
    again["name"] = json!("Win back (v2)");
    put(&app, TENANT, Role::Admin, "/v1/workflows/win-back", &again)
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    settle(&app).await;
    assert_eq!(stored(&app, "TaskCreated").await.len(), 3);
    assert_eq!(stored(&app, "CaseEscalated").await.len(), 1);
    // A new order dates a new fact: it comes due again only after 30 days.
    app.ingest(json!([order("c-1", "o-9", ago(31))])).await.ok();
    for _ in 0..50 {
        settle(&app).await;
        if stored(&app, "TaskCreated").await.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tasks = stored(&app, "TaskCreated").await;
    assert_eq!(tasks.len(), 4);
    assert_eq!(tasks[3].0["task_id"], "win-back-c-1-o-9");
    assert_eq!(tasks[3].1["workflow"]["version"], 2);
}

pub async fn rules_are_refused_naming_the_member_and_only_admins_change_them<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let mut bad = follow_up();
    bad["trigger"]["conditions"][0]["op"] = json!("like");
    put(&app, TENANT, Role::Admin, "/v1/workflows/r-1", &bad)
        .await
        .problem(422, &["workflow rule: trigger.conditions[0].op"]);
    let mut personal = follow_up();
    personal["actions"][0]["append"]["data"]["title"] = json!("{{data.name}}");
    let answer = put(&app, TENANT, Role::Admin, "/v1/workflows/r-1", &personal).await;
    answer.problem(422, &["actions[0].append.data.title"]);
    let mut with_id = follow_up();
    with_id["rule_id"] = json!("other");
    put(&app, TENANT, Role::Admin, "/v1/workflows/r-1", &with_id)
        .await
        .problem(422, &["rule_id"]);
    for role in [Role::Ingest, Role::Analyst, Role::Auditor] {
        put(&app, TENANT, role, "/v1/workflows/r-1", &follow_up())
            .await
            .problem(403, &["role admin"]);
    }
    let mut event = follow_up();
    event["rule_id"] = json!("r-1");
    app.ingest(json!([{"type": "WorkflowRuleSet", "data": event}]))
        .await
        .problem(403, &["workflow rule", "role admin"]);
    assert_eq!(
        put(&app, TENANT, Role::Admin, "/v1/workflows/r-1", &follow_up())
            .await
            .status,
        201
    );
    // Another tenant sees none of it.
    app.get_as(OTHER_TENANT, Role::Admin, "/v1/workflows/r-1")
        .await
        .problem(404, &["no workflow rule r-1"]);
    let theirs = app.get_as(OTHER_TENANT, Role::Admin, "/v1/workflows").await;
    assert_eq!(theirs.ok()["items"], json!([]));
    app.get_as(TENANT, Role::Ingest, "/v1/workflows")
        .await
        .problem(403, &["role"]);
    // Removed: it acts no more, and cannot be removed twice.
    let removed = app
        .send(
            app.client
                .delete(app.url("/v1/workflows/r-1"))
                .bearer_auth(app.key(TENANT, Role::Admin)),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let again = app
        .send(
            app.client
                .delete(app.url("/v1/workflows/r-1"))
                .bearer_auth(app.key(TENANT, Role::Admin)),
        )
        .await;
    again.problem(404, &["in force"]);
    app.ingest(json!([
        registered("c-1"),
        opened("o-1"),
        staged("o-1", "Negotiation", "2026-03-02T10:00:00Z")
    ]))
    .await
    .ok();
    settle(&app).await;
    assert!(stored(&app, "TaskCreated").await.is_empty());
    let listed = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/workflows?min_position={}", app.head().await),
        )
        .await;
    assert_eq!(listed.ok()["items"][0]["active"], false);
    assert_eq!(listed.body["items"][0]["version"], 1);
    let detail = app.get_as(TENANT, Role::Admin, "/v1/workflows/r-1").await;
    assert_eq!(detail.ok()["history"][1]["change"], "removed");
    app.get_as(
        TENANT,
        Role::Admin,
        &format!("/v1/workflows?min_position={}", app.head().await + 5),
    )
    .await
    .problem(400, &["min_position"]);
}

pub async fn a_rule_queues_one_webhook_call_per_trigger<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let created = post(
        &app,
        Role::Admin,
        "/v1/webhooks",
        &json!({"url": "https://billing.example.com/hooks/crm", "event_types": ["OpportunityWon"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let subscription = created.body["id"].as_str().expect("id").to_owned();
    let rule = json!({
        "name": "Big wins to billing",
        "trigger": {"event": "OpportunityStageChanged",
            "conditions": [{"field": "data.stage", "op": "eq", "value": "Negotiation"}]},
        "actions": [{"webhook": {"subscription": subscription}},
                    {"webhook": {"subscription": "wh_missing"}}]
    });
    let set = put(&app, TENANT, Role::Admin, "/v1/workflows/to-billing", &rule).await;
    assert_eq!(set.status, 201, "{}", set.body);
    app.ingest(json!([
        registered("c-1"),
        opened("o-1"),
        staged("o-1", "Negotiation", "2026-03-02T10:00:00Z"),
    ]))
    .await
    .ok();
    settle(&app).await;
    let queued = app
        .state
        .db
        .fetch(
            "SELECT call_id, rule_id, rule_version, payload FROM crm_webhook_calls",
            vec![],
            &[
                crm_projections::db::Col::Text,
                crm_projections::db::Col::Text,
                crm_projections::db::Col::Int,
                crm_projections::db::Col::Text,
            ],
        )
        .await
        .expect("read the calls");
    assert_eq!(queued.len(), 1, "one call, to the tenant's subscription");
    assert_eq!(queued[0][1].as_text(), Some("to-billing"));
    assert_eq!(queued[0][2].as_int(), Some(1));
    let payload: Value =
        serde_json::from_str(queued[0][3].as_text().expect("payload")).expect("json");
    assert_eq!(payload["trigger"]["data"]["opportunity_id"], "o-1");
    assert_eq!(payload["rule"]["id"], "to-billing");
    let runs = app
        .get_as(TENANT, Role::Admin, "/v1/workflows/to-billing/runs")
        .await;
    let run = &runs.ok()["items"][0];
    assert_eq!(run["outcome"], "called", "{run}");
    assert!(
        run["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("webhook wh_missing: no such subscription"),
        "{run}"
    );
    // Acting again on the same trigger (a dry run, then a second worker over the log) queues
    // nothing new.
    let again = crm_automation::workflows::spawn(
        app.state.workflows.clone(),
        crm_automation::workflows::WorkerOptions {
            lease: false,
            ..Default::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    again.shutdown().await;
    let count = app
        .state
        .db
        .fetch(
            "SELECT call_id FROM crm_webhook_calls",
            vec![],
            &[crm_projections::db::Col::Text],
        )
        .await
        .expect("read the calls")
        .len();
    assert_eq!(count, 1);
}
