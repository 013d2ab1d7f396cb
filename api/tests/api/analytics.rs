//! Issue 17 through the API: `GET /v1/analytics/rfm` and `/v1/analytics/clv` answer what
//! `crm_projections::analytics` decides (the decision `crm-replay analytics` prints), in pages;
//! a kept report is served until the tenant's log moves; one tenant never sees another's
//! customers; bad parameters are named.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_analytics::score::ScoreOptions;
use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::envelope::TenantId;
use crm_core::money::currency::Currency;
use crm_core::store::SharedStore;
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

const AS_OF: &str = "2026-01-01T00:00:00Z";

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

pub async fn analytics_answer_the_domain_decision_in_pages<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(Value::Array(crm_tests::analytics_data::history()))
        .await
        .ok();
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let eur = Currency::parse("EUR").expect("EUR");
    let as_of = DateTime::parse_from_rfc3339(AS_OF)
        .expect("time")
        .with_timezone(&Utc);

    // RFM: the whole answer, page by page, is the domain's report.
    let expected = crm_projections::analytics::rfm_report(&reader(&app), &tenant, eur, as_of)
        .await
        .expect("report");
    let expected = round_trip(&expected);
    assert_eq!(expected["customers"], json!(63));
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(after) => {
                format!("/v1/analytics/rfm?currency=EUR&as_of={AS_OF}&limit=7&after={after}")
            }
            None => format!("/v1/analytics/rfm?currency=EUR&as_of={AS_OF}&limit=7"),
        };
        let answer = app.get(&path).await;
        let page = answer.ok().clone();
        for member in [
            "tenant",
            "currency",
            "as_of",
            "position",
            "customers",
            "segments",
        ] {
            assert_eq!(page[member], expected[member], "{member}");
        }
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        Value::Array(items),
        expected["scores"],
        "pages cover every customer once"
    );

    // CLV: the models and every figure, as the domain computes them.
    let options = ScoreOptions {
        horizon_days: 60.0,
        months: 6,
        discount: 0.02,
    };
    let expected =
        crm_projections::analytics::clv_report(&reader(&app), &tenant, eur, as_of, options)
            .await
            .expect("report");
    let expected = round_trip(&expected);
    let path = format!(
        "/v1/analytics/clv?currency=EUR&as_of={AS_OF}&horizon_days=60&months=6&discount=0.02&limit=1000"
    );
    let answer = app.get(&path).await;
    let clv = answer.ok().clone();
    assert_eq!(clv["model"], expected["model"]);
    assert_eq!(clv["items"], expected["scores"]);
    assert_eq!(
        clv["model"]["bg_nbd"]["converged"],
        json!(true),
        "{}",
        clv["model"]
    );
    assert_eq!(
        (clv["horizon_days"].as_f64(), clv["months"].as_u64()),
        (Some(60.0), Some(6))
    );

    // Kept: the same answer again; a new order before as_of moves the log and the answer.
    assert_eq!(app.get(&path).await.ok(), &clv);
    let appended = app
        .ingest(json!([crm_tests::analytics_data::order(
            "c-00", "o-late", "5000.00", 200
        )]))
        .await;
    let position = appended.ok()["last_position"].as_u64().expect("position");
    let moved = app.get(&path).await;
    let moved = moved.ok();
    assert_eq!(
        moved["position"],
        json!(position),
        "refitted after the log moved"
    );
    assert_ne!(moved["model"], clv["model"]);

    // Another tenant has no customers; roles; bad parameters named.
    let theirs = app
        .get_as(
            OTHER_TENANT,
            Role::Analyst,
            &format!("/v1/analytics/rfm?currency=EUR&as_of={AS_OF}"),
        )
        .await;
    assert_eq!(theirs.ok()["customers"], json!(0));
    assert_eq!(theirs.body["items"], json!([]));
    app.get_as(TENANT, Role::Ingest, "/v1/analytics/rfm?currency=EUR")
        .await
        .problem(403, &[]);
    app.get("/v1/analytics/rfm?currency=XYZ")
        .await
        .problem(400, &["currency"]);
    app.get("/v1/analytics/rfm")
        .await
        .problem(400, &["currency"]);
    app.get("/v1/analytics/rfm?currency=EUR&as_of=yesterday")
        .await
        .problem(400, &["as_of"]);
    app.get("/v1/analytics/clv?currency=EUR&discount=1.5")
        .await
        .problem(400, &["discount"]);
    app.get("/v1/analytics/clv?currency=EUR&months=0")
        .await
        .problem(400, &["months"]);
    app.get("/v1/analytics/clv?currency=EUR&horizon_days=0")
        .await
        .problem(400, &["horizon_days"]);
    app.get("/v1/analytics/clv?currency=USD")
        .await
        .problem(422, &["at least 10"]);
}
