//! Issue 19 over HTTP: the business-hours calendar and SLA targets as facts an admin records,
//! cases paused and resumed, every case judged (a case closed unanswered after its response
//! was due is a breach), the backlog as it stood at a past time, and service analytics.
//! docs/service.md's worked example, through the API.

use std::future::Future;

use crm_api::app::Limits;
use crm_api::keys::Role;
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

fn event(event_type: &str, data: Value, at: &str) -> Value {
    json!({"type": event_type, "occurred_at": at, "data": data})
}

fn paris_week() -> Value {
    json!({
        "time_zone": "Europe/Paris",
        "hours": {"monday": [["09:00", "17:00"]], "tuesday": [["09:00", "17:00"]],
                  "wednesday": [["09:00", "17:00"]], "thursday": [["09:00", "17:00"]],
                  "friday": [["09:00", "17:00"]], "saturday": [], "sunday": []},
        "holidays": ["2026-03-06"]
    })
}

async fn calendar(app: &App, method: reqwest::Method, role: Role, body: Option<Value>) -> Answer {
    let mut request = app
        .client
        .request(method, app.url("/v1/service/calendar"))
        .bearer_auth(app.key(TENANT, role));
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

pub async fn business_hours_pauses_and_closed_cases_are_judged_as_they_stood<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    // No calendar yet: elapsed time.
    app.get("/v1/service/calendar")
        .await
        .problem(404, &["elapsed time"]);
    // Bad calendars are refused naming the field; only an admin sets one.
    let mut mars = paris_week();
    mars["time_zone"] = json!("Mars/Olympus_Mons");
    let refused = calendar(&app, reqwest::Method::PUT, Role::Admin, Some(mars)).await;
    refused.problem(422, &["calendar", "time_zone"]);
    assert_eq!(refused.body["field"], "time_zone");
    let mut idle = paris_week();
    for day in ["monday", "tuesday", "wednesday", "thursday", "friday"] {
        idle["hours"][day] = json!([]);
    }
    calendar(&app, reqwest::Method::PUT, Role::Admin, Some(idle))
        .await
        .problem(422, &["working time"]);
    calendar(
        &app,
        reqwest::Method::PUT,
        Role::Analyst,
        Some(paris_week()),
    )
    .await
    .problem(403, &[]);
    // Targets whose due times could pass the year 9999 are refused (issue 19, item 7).
    let endless = app
        .send(
            app.client
                .put(app.url("/v1/service/sla-targets"))
                .bearer_auth(app.key(TENANT, Role::Admin))
                .json(&json!({
                    "low": {"first_response_minutes": 60, "resolution_minutes": 4_294_967_295u32},
                    "normal": {"first_response_minutes": 60, "resolution_minutes": 600},
                    "high": {"first_response_minutes": 60, "resolution_minutes": 600},
                    "urgent": {"first_response_minutes": 60, "resolution_minutes": 600}})),
        )
        .await;
    endless.problem(422, &["SLA targets", "low.resolution_minutes", "9999"]);
    assert_eq!(endless.body["field"], "low.resolution_minutes");
    assert_eq!(app.head().await, 0, "nothing refused was written");

    let set = calendar(&app, reqwest::Method::PUT, Role::Admin, Some(paris_week())).await;
    let set_at = set.ok()["position"].as_u64().expect("position");
    let shown = app
        .get(&format!("/v1/service/calendar?min_position={set_at}"))
        .await;
    assert_eq!(shown.ok()["time_zone"], "Europe/Paris");
    assert_eq!(shown.body["position"], set_at);

    // k-1, normal (8 working hours to respond), opened after the calendar was set.
    let mut last = 0;
    for batch in [
        json!([event(
            "CaseOpened",
            json!({"case_id": "k-1", "customer_id": "c-1", "subject": "Cannot log in",
                   "channel": "email", "priority": "normal"}),
            "2026-03-02T15:00:00Z"
        )]),
        json!([event(
            "CasePaused",
            json!({"case_id": "k-1", "reason": "waiting for the customer's logs"}),
            "2026-03-03T09:00:00Z"
        )]),
        json!([event(
            "CaseResumed",
            json!({"case_id": "k-1"}),
            "2026-03-04T10:00:00Z"
        )]),
    ] {
        last = app.ingest(batch).await.ok()["last_position"]
            .as_u64()
            .expect("position");
    }
    // Resuming a running case is refused.
    app.ingest(json!([event(
        "CaseResumed",
        json!({"case_id": "k-1"}),
        "2026-03-04T11:00:00Z"
    )]))
    .await
    .problem(409, &["case k-1 cannot be resumed: it is not paused"]);

    // Wednesday 12:00Z, as it stood: resumed, response due 16:00Z (docs/service.md), its
    // warning (75 %: 6 h) at 14:00Z, nothing late.
    let past = app
        .get(&format!(
            "/v1/service/backlog?at=2026-03-04T12:00:00Z&min_position={last}"
        ))
        .await;
    let past = past.ok();
    assert_eq!(past["basis"], "as_of");
    let line = &past["open"][0];
    assert_eq!(line["case_id"], "k-1");
    assert_eq!(line["first_response_due"], "2026-03-04T16:00:00Z");
    assert_eq!(line["first_response_warning"], "2026-03-04T14:00:00Z");
    assert_eq!(line["paused"], false);
    assert_eq!(line["breaches"]["first_response"], false);
    assert_eq!(line["warnings"]["first_response"], false);
    // Tuesday noon: paused, no due time, six working hours left.
    let paused = app.get("/v1/service/backlog?at=2026-03-03T12:00:00Z").await;
    let line = &paused.ok()["open"][0];
    assert_eq!(line["paused"], true);
    assert_eq!(line["first_response_due"], json!(null));
    assert_eq!(
        line["clocks"]["first_response"]["paused_seconds_left"],
        6 * 3600
    );

    // Closed unanswered on Thursday: a first-response breach, for good.
    let last = app
        .ingest(json!([event(
            "CaseClosed",
            json!({"case_id": "k-1"}),
            "2026-03-05T08:30:00Z"
        )]))
        .await
        .ok()["last_position"]
        .as_u64()
        .expect("position");
    let live = app
        .get(&format!("/v1/service/backlog?min_position={last}"))
        .await;
    let live = live.ok();
    assert_eq!(live["basis"], "live");
    assert_eq!(live["open"], json!([]));
    assert_eq!(live["first_response_breaches"], 1);
    assert_eq!(live["resolution_breaches"], 0);
    assert_eq!(live["by_status"], json!({"closed": 1}));
    let cases = app.get("/v1/cases?status=closed").await;
    assert_eq!(
        cases.ok()["items"][0]["first_response_due"],
        "2026-03-04T16:00:00Z"
    );

    // Service analytics: one case, its response late, in March, by email.
    let figures = app
        .get("/v1/analytics/service?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z")
        .await;
    let figures = figures.ok();
    assert_eq!(figures["overall"]["cases"], 1);
    assert_eq!(figures["overall"]["first_response_breach_rate"], 1.0);
    assert_eq!(figures["overall"]["resolution_breach_rate"], 0.0);
    assert_eq!(
        figures["overall"]["first_response_p50_seconds"],
        json!(null)
    );
    // Closed 2 days 17.5 hours after the open.
    assert_eq!(
        figures["overall"]["resolution_p50_seconds"],
        (2 * 86_400 + 17 * 3600 + 1800) as f64
    );
    assert_eq!(figures["by_priority"]["normal"]["cases"], 1);
    assert_eq!(figures["by_channel"]["email"]["cases"], 1);
    assert_eq!(figures["by_agent"][""]["cases"], 1);
    assert_eq!(
        figures["by_period"]["2026-03"]["first_response_breaches"],
        1
    );
    let weekly = app.get("/v1/analytics/service?period=week").await;
    assert_eq!(weekly.ok()["by_period"]["2026-W10"]["cases"], 1);
    app.get("/v1/analytics/service?period=day")
        .await
        .problem(400, &["period"]);
    app.get("/v1/analytics/service?from=2026-04-01T00:00:00Z&to=2026-03-01T00:00:00Z")
        .await
        .problem(400, &["from"]);
    let other = app
        .get_as(OTHER_TENANT, Role::Analyst, "/v1/analytics/service")
        .await;
    assert_eq!(
        other.ok()["overall"]["cases"],
        0,
        "another tenant sees none"
    );

    // Back to elapsed time for the cases opened from now on.
    let cleared = calendar(&app, reqwest::Method::DELETE, Role::Admin, None).await;
    let cleared_at = cleared.ok()["position"].as_u64().expect("position");
    app.get(&format!("/v1/service/calendar?min_position={cleared_at}"))
        .await
        .problem(404, &[]);
}
