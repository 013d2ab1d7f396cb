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

/// Ten customers with 100.00 to 1,000.00 of revenue: one per decile, exact shares; cohorts by
/// first-purchase month with their retention and revenue month by month.
pub async fn profitability_and_cohorts_are_exact<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let mut events = Vec::new();
    for n in 1..=10u32 {
        let customer = format!("p-{n:02}");
        events.push(json!({"type": "CustomerRegistered",
            "data": {"customer_id": customer, "kind": "company", "name": format!("P{n}")}}));
        // p-01..p-05 first buy in January 2025, p-06..p-10 in February.
        let first = if n <= 5 {
            "2025-01-10T10:00:00Z"
        } else {
            "2025-02-10T10:00:00Z"
        };
        events.push(json!({"type": "OrderPlaced", "occurred_at": first,
            "data": {"customer_id": customer, "order_id": "o-1",
                     "amount": format!("{}.00", n * 100 - 10), "currency": "EUR"}}));
        // Every even customer buys 10.00 more in March 2025.
        if n % 2 == 0 {
            events.push(
                json!({"type": "OrderPlaced", "occurred_at": "2025-03-05T10:00:00Z",
                "data": {"customer_id": customer, "order_id": "o-2", "amount": "10.00",
                         "currency": "EUR"}}),
            );
        }
        // Every odd one's 10.00 March order is refunded in full: not a purchase day.
        if n % 2 == 1 {
            events.push(
                json!({"type": "OrderPlaced", "occurred_at": "2025-03-06T10:00:00Z",
                "data": {"customer_id": customer, "order_id": "o-2", "amount": "10.00",
                         "currency": "EUR"}}),
            );
            events.push(
                json!({"type": "OrderRefunded", "occurred_at": "2025-03-07T10:00:00Z",
                "data": {"customer_id": customer, "order_id": "o-2", "amount": "10.00",
                         "currency": "EUR"}}),
            );
        }
    }
    app.ingest(Value::Array(events)).await.ok();
    let as_of = "2025-03-31T00:00:00Z";

    let answer = app
        .get(&format!(
            "/v1/analytics/profitability?currency=EUR&as_of={as_of}"
        ))
        .await;
    let report = answer.ok();
    assert_eq!(report["customers"], json!(10));
    // Revenues: even n: n·100 − 10 + 10 = n·100; odd n: n·100 − 10. Total 5,500 − 50.
    assert_eq!(report["revenue"], json!("5450.00"));
    let deciles = report["deciles"].as_array().expect("deciles");
    assert_eq!(deciles.len(), 10);
    assert_eq!(deciles[0]["revenue"], json!("1000.00"), "p-10 first");
    assert_eq!(deciles[1]["revenue"], json!("890.00"), "p-09");
    assert_eq!(deciles[9]["revenue"], json!("90.00"), "p-01 last");
    assert!(deciles.iter().all(|d| d["customers"] == json!(1)));
    let top = report["top_20_percent_share"].as_f64().expect("share");
    assert!((top - 1890.0 / 5450.0).abs() < 1e-12, "{top}");
    let last = deciles[9]["cumulative_share"].as_f64().expect("cumulative");
    assert!((last - 1.0).abs() < 1e-12);

    let answer = app
        .get(&format!("/v1/analytics/cohorts?currency=EUR&as_of={as_of}"))
        .await;
    let cohorts = answer.ok()["cohorts"].as_array().expect("cohorts").clone();
    assert_eq!(cohorts.len(), 2);
    let january = &cohorts[0];
    assert_eq!(january["cohort"], json!("2025-01"));
    assert_eq!(january["customers"], json!(5));
    let months = january["months"].as_array().expect("months");
    assert_eq!(months.len(), 3, "January, February, March");
    assert_eq!(
        (months[0]["active"].clone(), months[0]["retention"].clone()),
        (json!(5), json!(1.0))
    );
    assert_eq!(months[1]["active"], json!(0));
    // March: p-02 and p-04 bought again; p-01, p-03 and p-05 were refunded in full.
    assert_eq!(months[2]["active"], json!(2));
    assert_eq!(months[2]["retention"], json!(0.4));
    assert_eq!(months[2]["revenue"], json!("20.00"));
    let february = &cohorts[1];
    assert_eq!(february["cohort"], json!("2025-02"));
    let months = february["months"].as_array().expect("months");
    assert_eq!(months.len(), 2);
    assert_eq!(
        months[0]["revenue"],
        json!("3950.00"),
        "590 + 690 + 790 + 890 + 990"
    );
    assert_eq!(months[1]["active"], json!(3), "p-06, p-08, p-10");
    app.get("/v1/analytics/cohorts")
        .await
        .problem(400, &["currency"]);
    app.get_as(
        TENANT,
        Role::Ingest,
        "/v1/analytics/profitability?currency=EUR",
    )
    .await
    .problem(403, &[]);
}
