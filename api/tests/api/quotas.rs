//! Issue 18, item 7 through the API: `QuotaSet` events (a bad period named), and
//! `GET /v1/pipeline?owner=` with the owner's attainment now and as of a past time.

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

fn event(event_type: &str, data: Value, at: &str) -> Value {
    json!({"type": event_type, "occurred_at": at, "data": data})
}

fn eur(amount: &str) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

pub async fn the_pipeline_of_an_owner_shows_quota_attainment<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(json!([event(
        "QuotaSet",
        json!({"owner": "u-1", "period": "2026-Q5", "amount": "1", "currency": "EUR"}),
        "2026-01-01T00:00:00Z"
    )]))
    .await
    .problem(
        422,
        &[
            "data.period",
            "`2026-Q5` is not a period; write YYYY-MM (a month) or YYYY-Qn",
        ],
    );
    let answer = app
        .ingest(json!([
            event(
                "QuotaSet",
                json!({"owner": "u-1", "period": "2026-03", "amount": "10000", "currency": "EUR"}),
                "2026-02-20T00:00:00Z"
            ),
            event(
                "OpportunityOpened",
                json!({"opportunity_id": "op-1", "customer_id": "c-1", "name": "Deal 1",
                       "amount": "4000.00", "currency": "EUR", "stage": "Negotiation",
                       "close_date": "2026-03-20", "owner": "u-1", "probability": 80}),
                "2026-03-01T00:00:00Z"
            ),
            event(
                "OpportunityWon",
                json!({"opportunity_id": "op-1"}),
                "2026-03-10T00:00:00Z"
            ),
            event(
                "OpportunityOpened",
                json!({"opportunity_id": "op-2", "customer_id": "c-1", "name": "Deal 2",
                       "amount": "6000.00", "currency": "EUR", "stage": "Proposal",
                       "close_date": "2026-03-28", "owner": "u-1", "probability": 50}),
                "2026-03-02T00:00:00Z"
            ),
        ]))
        .await;
    let last = answer.ok()["last_position"].as_u64().expect("position");
    let pipeline = app
        .get(&format!(
            "/v1/pipeline?owner=u-1&as_of=2026-03-12T00:00:00Z&min_position={last}"
        ))
        .await;
    assert_eq!(
        pipeline.ok()["attainment"],
        json!([{
            "period": "2026-03", "kind": "month", "start": "2026-03-01", "end": "2026-04-01",
            "quota": eur("10000.00"), "quota_set_at": "2026-02-20T00:00:00Z",
            "won": eur("4000.00"), "won_deals": 1, "attainment": 0.4, "gap": eur("6000.00"),
            "weighted_pipeline": eur("3000.00"), "open_deals": 1, "coverage": 0.5
        }])
    );
    // Before the quota was set: none in force.
    let before = app
        .get("/v1/pipeline?owner=u-1&as_of=2026-02-01T00:00:00Z")
        .await;
    assert_eq!(before.ok()["attainment"], json!([]));
    // Another owner has no quota; without an owner there is no attainment.
    assert_eq!(
        app.get("/v1/pipeline?owner=u-2").await.ok()["attainment"],
        json!([])
    );
    let all = app.get("/v1/pipeline").await;
    assert!(all.ok().get("attainment").is_none(), "{:?}", all.body);
}
