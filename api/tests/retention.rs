//! Retention end to end, on SQLite and PostgreSQL: the rule is off by default and erases
//! nothing; `PUT /v1/privacy/retention` sets it (422 naming the field on bad input); one run
//! of the daily task erases the customers and the never-converted leads whose last event
//! occurred before the cutoff, and nobody else (recent customers, converted leads, other
//! tenants); `GET` shows the rule and the last run's report.

#[path = "api/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use chrono::{Duration, Utc};
use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::envelope::TenantId;
use fixture::{App, OTHER_TENANT, TENANT};
use serde_json::{Value, json};

fn ago(days: i64) -> String {
    (Utc::now() - Duration::days(days)).to_rfc3339()
}

fn event(event_type: &str, days_ago: i64, data: Value) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": event_type, "occurred_at": ago(days_ago),
           "data": data})
}

fn registered(id: &str, name: &str, days_ago: i64) -> Value {
    event(
        "CustomerRegistered",
        days_ago,
        json!({"customer_id": id, "kind": "person", "name": name,
               "email": format!("{id}@example.com")}),
    )
}

fn interaction(id: &str, days_ago: i64) -> Value {
    event(
        "InteractionLogged",
        days_ago,
        json!({"customer_id": id, "interaction_id": format!("i-{}", uuid::Uuid::now_v7().simple()),
               "channel": "phone", "direction": "inbound", "summary": "Asked about an invoice"}),
    )
}

fn lead(id: &str, days_ago: i64) -> Value {
    event(
        "LeadCaptured",
        days_ago,
        json!({"lead_id": id, "name": format!("Lead {id}"), "source": "web_form"}),
    )
}

/// Two years back, one month back.
const OLD: i64 = 730;
const RECENT: i64 = 30;

async fn put_rule(app: &App, body: Value) -> fixture::Answer {
    app.send(
        app.client
            .put(app.url("/v1/privacy/retention"))
            .bearer_auth(app.key(TENANT, Role::Admin))
            .json(&body),
    )
    .await
}

async fn get_rule(app: &App) -> Value {
    app.get_as(TENANT, Role::Admin, "/v1/privacy/retention")
        .await
        .ok()
        .clone()
}

/// The customer view, once the read models have reached `position`.
async fn customer(app: &App, tenant: &str, id: &str, position: u64) -> Value {
    app.get_as(
        tenant,
        Role::Analyst,
        &format!("/v1/customers/{id}?min_position={position}"),
    )
    .await
    .ok()
    .clone()
}

/// True when the subject's data key still exists.
async fn key_alive(app: &App, tenant: &str, subject: &str) -> bool {
    let tenant = TenantId::parse(tenant).expect("tenant");
    let keys = app
        .state
        .private
        .vault()
        .table()
        .keys_of_subjects(&tenant, &[subject.to_owned()])
        .await
        .expect("keys");
    keys.first().is_some_and(|key| key.wrapped.is_some())
}

async fn retention_erases_only_what_had_no_event_for_the_rules_years(app: App) {
    // Off by default: shown as null, and a run does nothing.
    let rule = get_rule(&app).await;
    assert_eq!(rule["erase_after_years"], Value::Null, "{rule}");
    assert_eq!(rule["last_run"], Value::Null);
    app.get_as(TENANT, Role::Analyst, "/v1/privacy/retention")
        .await
        .problem(403, &["admin"]);

    let answer = app
        .ingest(json!([
            registered("c-old", "Old Customer", OLD + 30),
            interaction("c-old", OLD),
            registered("c-new", "Recent Customer", OLD + 30),
            interaction("c-new", RECENT),
            lead("l-old", OLD),
            lead("l-new", RECENT),
            lead("l-conv", OLD),
            event(
                "LeadConverted",
                OLD,
                json!({"lead_id": "l-conv", "customer_id": "c-new"})
            ),
        ]))
        .await;
    answer.ok();
    let other = app
        .ingest_as(
            OTHER_TENANT,
            json!([registered("g-old", "Other Tenant Customer", OLD)]),
        )
        .await;
    let head = other.ok()["last_position"].as_u64().expect("position");
    customer(&app, TENANT, "c-old", head).await;

    assert!(crm_api::retention::run_all(&app.state).await.is_empty());
    let tenant = TenantId::parse(TENANT).expect("tenant");
    assert!(
        crm_api::retention::run_tenant(&app.state, &tenant)
            .await
            .is_none()
    );
    assert_eq!(
        customer(&app, TENANT, "c-old", head).await["name"],
        "Old Customer"
    );

    // Bad rules are refused, naming the field.
    for bad in [
        json!({"erase_after_years": 0}),
        json!({"erase_after_years": -1}),
        json!({"erase_after_years": 2.5}),
        json!({"erase_after_years": "1"}),
        json!({"erase_after_years": 1000}),
        json!({}),
    ] {
        put_rule(&app, bad.clone())
            .await
            .problem(422, &["erase_after_years"]);
    }
    // A body that is no object at all is refused before any field is looked for.
    put_rule(&app, json!(["erase_after_years"]))
        .await
        .problem(422, &["JSON object"]);
    put_rule(&app, json!({"erase_after_years": 1, "other": true}))
        .await
        .problem(422, &["other"]);
    assert_eq!(get_rule(&app).await["erase_after_years"], Value::Null);

    let set = put_rule(&app, json!({"erase_after_years": 1})).await;
    assert_eq!(set.ok()["erase_after_years"], 1);

    // One run: the customer and the lead silent for two years go; the rest stays.
    let reports = crm_api::retention::run_all(&app.state).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (reported_tenant, report) = &reports[0];
    assert_eq!(reported_tenant, TENANT);
    assert_eq!(report.error, None);
    assert_eq!(report.erase_after_years, 1);
    assert_eq!(
        (report.customers_due, report.leads_due),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        (report.customers_erased, report.leads_erased, report.skipped),
        (1, 1, 0)
    );

    let head = app.head().await;
    let old = customer(&app, TENANT, "c-old", head).await;
    assert_eq!(old["status"], "erased", "{old}");
    assert_eq!(old["name"], Value::Null);
    let recent = customer(&app, TENANT, "c-new", head).await;
    assert_eq!(recent["status"], "active");
    assert_eq!(recent["name"], "Recent Customer");
    assert_eq!(
        customer(&app, OTHER_TENANT, "g-old", head).await["name"],
        "Other Tenant Customer"
    );
    assert!(!key_alive(&app, TENANT, "customer:c-old").await);
    assert!(!key_alive(&app, TENANT, "lead:l-old").await);
    assert!(key_alive(&app, TENANT, "customer:c-new").await);
    assert!(key_alive(&app, TENANT, "lead:l-new").await);
    assert!(key_alive(&app, TENANT, "lead:l-conv").await);
    assert!(key_alive(&app, OTHER_TENANT, "customer:g-old").await);
    let timeline = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/customers/c-old/timeline?min_position={head}"),
        )
        .await;
    let entries = timeline.ok()["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert_eq!(entries[0]["data"]["name"], "[erased]");

    // The report is shown; a second run finds nobody left.
    let shown = get_rule(&app).await;
    assert_eq!(shown["erase_after_years"], 1);
    assert_eq!(shown["last_run"]["customers_erased"], 1, "{shown}");
    assert_eq!(shown["last_run"]["leads_erased"], 1);
    assert!(shown["last_run"]["ran_at"].is_string());
    let again = crm_api::retention::run_tenant(&app.state, &tenant)
        .await
        .expect("a report");
    assert_eq!((again.customers_due, again.leads_due), (0, 0), "{again:?}");
    assert_eq!(get_rule(&app).await["last_run"]["customers_erased"], 0);

    // Turned off again.
    let off = put_rule(&app, json!({"erase_after_years": null})).await;
    assert_eq!(off.ok()["erase_after_years"], Value::Null);
    assert!(crm_api::retention::run_all(&app.state).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention_erases_only_what_had_no_event_for_the_rules_years() {
    let app = App::sqlite_with("retention", Limits::default())
        .await
        .expect("sqlite");
    retention_erases_only_what_had_no_event_for_the_rules_years(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_retention_erases_only_what_had_no_event_for_the_rules_years() {
    let Some(app) = App::postgres_with("retention", Limits::default()).await else {
        return;
    };
    retention_erases_only_what_had_no_event_for_the_rules_years(app).await;
}
