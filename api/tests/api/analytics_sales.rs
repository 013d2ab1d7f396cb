//! Issue 17 through the API: `GET /v1/analytics/lifecycle` (customers per stage as of a time,
//! the moves between stages over a period) and `GET /v1/analytics/funnel` (the deals opened in
//! a period, by stage, owner and stage entered), on hand-computed histories
//! (`crm_tests::analytics_data::{lifecycle_history, pipeline_history}`); each answer equals
//! what `crm_projections::analytics` decides in-process, and bad parameters are named.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::envelope::TenantId;
use crm_core::store::SharedStore;
use crm_tests::analytics_data::{
    FUNNEL_FROM, FUNNEL_TO, LIFECYCLE_AS_OF, LIFECYCLE_SINCE, lifecycle_history, pipeline_history,
};
use serde_json::{Value, json};

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

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

fn round_trip(value: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(value).expect("json")).expect("json")
}

fn reader(app: &App) -> SharedStore {
    Arc::new(
        app.state
            .private
            .clone()
            .opening_only(crm_projections::PERSONAL_FIELDS_READ),
    )
}

fn stages(lead: u64, new: u64, active: u64, at_risk: u64, lapsed: u64, won_back: u64) -> Value {
    json!([
        {"stage": "lead", "customers": lead},
        {"stage": "new", "customers": new},
        {"stage": "active", "customers": active},
        {"stage": "at_risk", "customers": at_risk},
        {"stage": "lapsed", "customers": lapsed},
        {"stage": "won_back", "customers": won_back},
    ])
}

/// The transitions of `lifecycle_history` from `LIFECYCLE_SINCE` to `LIFECYCLE_AS_OF`.
pub fn expected_transitions() -> Value {
    let t = |from: &str, to: &str, customers: u64| json!({"from": from, "to": to, "customers": customers});
    json!([
        t("none", "lead", 1),
        t("none", "new", 1),
        t("lead", "lead", 2),
        t("lead", "new", 2),
        t("lead", "at_risk", 2),
        t("lead", "lapsed", 1),
        t("lead", "merged", 1),
        t("new", "active", 1),
        t("new", "lapsed", 1),
        t("at_risk", "won_back", 2),
    ])
}

pub async fn lifecycle_counts_stages_and_moves_exactly<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(Value::Array(lifecycle_history())).await.ok();
    let tenant = TenantId::parse(TENANT).expect("tenant");

    let path = format!("/v1/analytics/lifecycle?as_of={LIFECYCLE_AS_OF}&since={LIFECYCLE_SINCE}");
    let answer = app.get(&path).await;
    let report = answer.ok().clone();
    assert_eq!(report["tenant"], json!(TENANT));
    assert_eq!(report["as_of"], json!("2026-01-01T00:00:00Z"));
    assert_eq!(report["since"], json!("2025-07-01T00:00:00Z"));
    assert_eq!(report["position"], json!(app.head().await));
    assert_eq!(report["customers"], json!(13), "l-merged under l-survivor");
    assert_eq!(report["stages"], stages(3, 3, 1, 2, 2, 2));
    assert_eq!(report["transitions"], expected_transitions());
    let expected = crm_projections::analytics::lifecycle::lifecycle_report(
        &reader(&app),
        &tenant,
        time(LIFECYCLE_AS_OF),
        Some(time(LIFECYCLE_SINCE)),
    )
    .await
    .expect("report");
    assert_eq!(report, round_trip(&expected), "the domain's decision");

    // As of the start of the period: the "from" side of the transitions.
    let then = app
        .get(&format!("/v1/analytics/lifecycle?as_of={LIFECYCLE_SINCE}"))
        .await;
    let then = then.ok();
    assert_eq!(then["customers"], json!(12));
    assert_eq!(then["stages"], stages(8, 2, 0, 2, 0, 0));
    assert!(then.get("transitions").is_none() && then.get("since").is_none());

    // An erased customer is still a customer, in its stage: l-back stays won back.
    app.post_as(TENANT, Role::Admin, "/v1/customers/l-back/erase")
        .await
        .ok();
    let after = app.get(&path).await;
    let after = after.ok();
    assert_eq!(after["customers"], json!(13));
    assert_eq!(after["stages"], stages(3, 3, 1, 2, 2, 2));
    assert_eq!(after["transitions"], expected_transitions());

    // Another tenant has none; roles; bad parameters named.
    let theirs = app
        .get_as(
            OTHER_TENANT,
            Role::Analyst,
            &format!("/v1/analytics/lifecycle?as_of={LIFECYCLE_AS_OF}"),
        )
        .await;
    assert_eq!(theirs.ok()["customers"], json!(0));
    assert_eq!(theirs.body["stages"], stages(0, 0, 0, 0, 0, 0));
    app.get_as(TENANT, Role::Ingest, "/v1/analytics/lifecycle")
        .await
        .problem(403, &[]);
    app.get("/v1/analytics/lifecycle?as_of=yesterday")
        .await
        .problem(400, &["as_of"]);
    app.get("/v1/analytics/lifecycle?since=2025-13-01")
        .await
        .problem(400, &["since"]);
    let late = app
        .get(&format!(
            "/v1/analytics/lifecycle?as_of={LIFECYCLE_SINCE}&since={LIFECYCLE_AS_OF}"
        ))
        .await;
    late.problem(400, &["since", "before as_of"]);
    assert_eq!(late.body["parameter"], json!("since"));
    app.get(&format!(
        "/v1/analytics/lifecycle?as_of={LIFECYCLE_AS_OF}&since={LIFECYCLE_AS_OF}"
    ))
    .await
    .problem(400, &["since"]);
    app.get("/v1/analytics/lifecycle?currency=EUR")
        .await
        .problem(400, &["currency"]);
}

fn step(
    stage: &str,
    entered: u64,
    reached: u64,
    conversion: Option<f64>,
    won: u64,
    lost: u64,
) -> Value {
    let win_rate = (won + lost > 0).then(|| won as f64 / (won + lost) as f64);
    json!({"stage": stage, "entered": entered, "reached": reached, "conversion": conversion,
           "won": won, "lost": lost, "win_rate": win_rate})
}

/// The funnel of `pipeline_history` over [`FUNNEL_FROM`, `FUNNEL_TO`), by hand (see its table).
pub fn expected_funnel() -> Value {
    json!({
        "opened": 8, "won": 4, "lost": 2, "open": 2,
        "win_rate": 4.0 / 6.0,
        // Won cycles 3 (d-10), 10 (d-2), 20 (d-5), 31 (d-1) days.
        "cycle_days": {"median": 15.0, "mean": 16.0},
        "won_amount": [
            {"currency": "EUR", "amount": "1600.00"},
            {"currency": "USD", "amount": "700.00"},
        ],
        "steps": [
            // Entered by d-1, d-3, d-4, d-6, d-9; reached by all 8; d-1 won, d-3 and d-6 lost.
            step("Prospecting", 5, 8, Some(5.0 / 8.0), 1, 2),
            // Entered by d-1, d-3, d-5; reached also by d-2 and d-10 (further on).
            step("Qualification", 3, 5, Some(4.0 / 5.0), 2, 1),
            step("Proposal", 2, 4, Some(1.0), 2, 0),
            step("Negotiation", 2, 4, Some(1.0), 2, 0),
            step("Closed Won", 4, 4, None, 4, 0),
        ],
    })
}

/// u-bob's deals: d-3, d-4, d-5, d-9 and d-10 (his since 2 February).
fn bob() -> Value {
    json!({
        "owner": "u-bob",
        "opened": 5, "won": 2, "lost": 1, "open": 2,
        "win_rate": 2.0 / 3.0,
        "cycle_days": {"median": 11.5, "mean": 11.5},
        "won_amount": [
            {"currency": "EUR", "amount": "100.00"},
            {"currency": "USD", "amount": "700.00"},
        ],
        "steps": [
            step("Prospecting", 3, 5, Some(3.0 / 5.0), 0, 1),
            step("Qualification", 2, 3, Some(2.0 / 3.0), 1, 1),
            step("Proposal", 0, 2, Some(1.0), 0, 0),
            step("Negotiation", 1, 2, Some(1.0), 1, 0),
            step("Closed Won", 2, 2, None, 2, 0),
        ],
    })
}

/// Merges `figures` into `into` (the flattened members of a report or an owner's entry).
fn with(mut into: Value, figures: &Value) -> Value {
    for (key, value) in figures.as_object().expect("object") {
        into[key] = value.clone();
    }
    into
}

pub async fn the_funnel_of_a_period_is_exact<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(Value::Array(pipeline_history())).await.ok();
    let tenant = TenantId::parse(TENANT).expect("tenant");

    let answer = app
        .get(&format!(
            "/v1/analytics/funnel?from={FUNNEL_FROM}&to={FUNNEL_TO}"
        ))
        .await;
    let report = answer.ok().clone();
    let ann = json!({
        "owner": "u-ann",
        "opened": 2, "won": 2, "lost": 0, "open": 0,
        "win_rate": 1.0,
        "cycle_days": {"median": 20.5, "mean": 20.5},
        "won_amount": [{"currency": "EUR", "amount": "1500.00"}],
        "steps": [
            step("Prospecting", 1, 2, Some(1.0), 1, 0),
            step("Qualification", 1, 2, Some(1.0), 1, 0),
            step("Proposal", 2, 2, Some(1.0), 2, 0),
            step("Negotiation", 1, 2, Some(1.0), 1, 0),
            step("Closed Won", 2, 2, None, 2, 0),
        ],
    });
    let nobody = json!({
        "owner": null,
        "opened": 1, "won": 0, "lost": 1, "open": 0,
        "win_rate": 0.0, "cycle_days": null, "won_amount": [],
        "steps": [
            step("Prospecting", 1, 1, Some(0.0), 0, 1),
            step("Qualification", 0, 0, None, 0, 0),
            step("Proposal", 0, 0, None, 0, 0),
            step("Negotiation", 0, 0, None, 0, 0),
            step("Closed Won", 0, 0, None, 0, 0),
        ],
    });
    let expected = with(
        json!({
            "tenant": TENANT,
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-04-01T00:00:00Z",
            "position": app.head().await,
            "by_owner": [nobody, ann, bob()],
        }),
        &expected_funnel(),
    );
    assert_eq!(report, expected);
    let domain = crm_projections::analytics::funnel::funnel_report(
        &reader(&app),
        &tenant,
        time(FUNNEL_FROM),
        time(FUNNEL_TO),
        None,
    )
    .await
    .expect("report");
    assert_eq!(report, round_trip(&domain), "the domain's decision");

    // One owner: his figures, overall and as his only entry.
    let answer = app
        .get(&format!(
            "/v1/analytics/funnel?from={FUNNEL_FROM}&to={FUNNEL_TO}&owner=u-bob"
        ))
        .await;
    let report = answer.ok();
    let mut figures = bob();
    figures.as_object_mut().expect("object").remove("owner");
    for (key, value) in figures.as_object().expect("object") {
        assert_eq!(report[key], *value, "{key}");
    }
    assert_eq!(report["owner"], json!("u-bob"));
    assert_eq!(report["by_owner"], json!([bob()]));

    // As of an earlier end: what had happened by 5 February. d-1, d-2, d-3, d-10 were opened;
    // d-2 and d-10 won; d-1 in Negotiation, d-3 in Qualification.
    let answer = app
        .get(&format!(
            "/v1/analytics/funnel?from={FUNNEL_FROM}&to=2025-02-05T00:00:00Z"
        ))
        .await;
    let early = answer.ok();
    assert_eq!(
        (
            early["opened"].clone(),
            early["won"].clone(),
            early["lost"].clone(),
            early["open"].clone()
        ),
        (json!(4), json!(2), json!(0), json!(2))
    );
    assert_eq!(early["cycle_days"], json!({"median": 6.5, "mean": 6.5}));
    assert_eq!(
        early["won_amount"],
        json!([{"currency": "EUR", "amount": "600.00"}])
    );

    // Another tenant has none; roles; bad parameters named.
    let theirs = app
        .get_as(
            OTHER_TENANT,
            Role::Analyst,
            &format!("/v1/analytics/funnel?from={FUNNEL_FROM}&to={FUNNEL_TO}"),
        )
        .await;
    assert_eq!(theirs.ok()["opened"], json!(0));
    assert_eq!(theirs.body["by_owner"], json!([]));
    app.get_as(
        TENANT,
        Role::Ingest,
        &format!("/v1/analytics/funnel?from={FUNNEL_FROM}&to={FUNNEL_TO}"),
    )
    .await
    .problem(403, &[]);
    app.get(&format!("/v1/analytics/funnel?to={FUNNEL_TO}"))
        .await
        .problem(400, &["from"]);
    app.get(&format!("/v1/analytics/funnel?from={FUNNEL_FROM}"))
        .await
        .problem(400, &["to"]);
    app.get(&format!("/v1/analytics/funnel?from=January&to={FUNNEL_TO}"))
        .await
        .problem(400, &["from"]);
    let reversed = app
        .get(&format!(
            "/v1/analytics/funnel?from={FUNNEL_TO}&to={FUNNEL_FROM}"
        ))
        .await;
    reversed.problem(400, &["from", "before to"]);
    assert_eq!(reversed.body["parameter"], json!("from"));
}
