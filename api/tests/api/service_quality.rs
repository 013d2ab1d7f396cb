//! Issue 19, items 4 and 5: complaints in tenant-defined categories with root causes
//! (`GET /v1/service/complaints`), CSAT and NPS (`GET /v1/service/satisfaction`), the latest
//! answers on the 360 view, live and in the past; refusals (409) for labels outside the lists
//! in force, a tenant without lists, a second CSAT, a repeated NPS answer; bad parameters
//! named; roles; tenants apart; an erased customer's comments gone.

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

fn at(event_type: &str, data: Value, time: &str) -> Value {
    json!({"type": event_type, "occurred_at": time, "data": data})
}

fn opened(case: &str, customer: &str, priority: &str, time: &str) -> Value {
    at(
        "CaseOpened",
        json!({"case_id": case, "customer_id": customer, "subject": format!("Case {case}"),
               "channel": "email", "priority": priority}),
        time,
    )
}

fn marked(case: &str, category: &str, time: &str) -> Value {
    at(
        "CaseMarkedComplaint",
        json!({"case_id": case, "category": category}),
        time,
    )
}

fn resolved(case: &str, cause: Option<&str>, time: &str) -> Value {
    let mut data = json!({"case_id": case});
    if let Some(cause) = cause {
        data["root_cause"] = json!(cause);
    }
    at("CaseResolved", data, time)
}

fn csat(case: &str, score: u8, comment: Option<&str>, time: &str) -> Value {
    at(
        "CsatRecorded",
        json!({"case_id": case, "score": score, "comment": comment}),
        time,
    )
}

fn nps(customer: &str, answer: &str, score: u8, comment: Option<&str>, time: &str) -> Value {
    at(
        "NpsAnswered",
        json!({"customer_id": customer, "answer_id": answer, "score": score, "comment": comment}),
        time,
    )
}

fn lists(categories: &[&str], causes: &[&str]) -> Value {
    at(
        "ComplaintCategoriesSet",
        json!({"categories": categories, "causes": causes}),
        "2026-03-01T00:00:00Z",
    )
}

async fn as_admin(app: &App, events: Value) -> Answer {
    app.send(
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(app.key(TENANT, Role::Admin))
            .json(&json!({ "events": events })),
    )
    .await
}

const WINDOW: &str = "from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z";

pub async fn complaints_and_satisfaction_are_exact_refused_outside_the_lists_and_erased<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let mut setup = vec![];
    for c in ["c-1", "c-2", "c-3"] {
        setup.push(at(
            "CustomerRegistered",
            json!({"customer_id": c, "kind": "person", "name": format!("Person {c}")}),
            "2026-02-01T00:00:00Z",
        ));
    }
    setup.push(opened("k-1", "c-1", "high", "2026-03-02T10:00:00Z"));
    app.ingest(json!(setup)).await.ok();

    // No lists yet: a complaint category is refused, saying to set them first; only an
    // admin sets them, and bad lists are named.
    let none = app.get("/v1/settings/complaints").await;
    assert_eq!(none.ok()["in_force"], Value::Null);
    assert_eq!(none.ok()["history"], json!([]));
    app.ingest(json!([marked("k-1", "billing", "2026-03-02T10:00:00Z")]))
        .await
        .problem(409, &["events[0]", "no complaint categories", "first"]);
    app.ingest(json!([lists(&["billing"], &["x"])]))
        .await
        .problem(403, &["admin"]);
    as_admin(&app, json!([lists(&["billing", "billing"], &["x"])]))
        .await
        .problem(422, &["data.categories[1]", "twice"]);
    as_admin(&app, json!([lists(&[], &["x"])]))
        .await
        .problem(422, &["data.categories"]);
    let set = as_admin(
        &app,
        json!([lists(
            &["billing", "delivery"],
            &["carrier_delay", "pricing_error"]
        )]),
    )
    .await;
    assert_eq!(set.status, 201, "{}", set.body);

    app.ingest(json!([
        marked("k-1", "billing", "2026-03-02T10:00:00Z"),
        at(
            "CaseAssigned",
            json!({"case_id": "k-1", "agent": "u-1"}),
            "2026-03-02T10:30:00Z"
        ),
        resolved("k-1", Some("pricing_error"), "2026-03-02T12:00:00Z"),
        csat("k-1", 5, Some("Great help"), "2026-03-03T09:00:00Z"),
        opened("k-2", "c-1", "normal", "2026-03-10T00:00:00Z"),
        marked("k-2", "delivery", "2026-03-10T00:00:00Z"),
        at(
            "CaseResponded",
            json!({"case_id": "k-2", "agent": "u-2"}),
            "2026-03-10T01:00:00Z"
        ),
        resolved("k-2", Some("carrier_delay"), "2026-03-11T00:00:00Z"),
        csat("k-2", 2, Some("Too slow"), "2026-03-12T00:00:00Z"),
        opened("k-3", "c-2", "normal", "2026-04-05T00:00:00Z"),
        marked("k-3", "billing", "2026-04-05T00:00:00Z"),
        resolved("k-3", None, "2026-04-05T04:00:00Z"),
        at(
            "CaseReopened",
            json!({"case_id": "k-3"}),
            "2026-04-05T06:00:00Z"
        ),
        resolved("k-3", None, "2026-04-06T00:00:00Z"),
        csat("k-3", 4, None, "2026-04-07T00:00:00Z"),
        at(
            "CaseAssigned",
            json!({"case_id": "k-3", "agent": "u-1"}),
            "2026-04-08T00:00:00Z"
        ),
        opened("k-4", "c-1", "low", "2026-04-20T00:00:00Z"),
        marked("k-4", "billing", "2026-04-20T00:00:00Z"),
        opened("k-5", "c-3", "high", "2026-03-15T00:00:00Z"),
        csat("k-5", 3, None, "2026-03-16T00:00:00Z"),
        opened("k-6", "c-2", "normal", "2026-05-02T00:00:00Z"),
        marked("k-6", "delivery", "2026-05-02T00:00:00Z"),
        nps("c-1", "a-1", 10, Some("Love it"), "2026-03-05T00:00:00Z"),
        nps("c-2", "a-2", 6, None, "2026-03-20T00:00:00Z"),
        nps("c-3", "a-3", 8, None, "2026-04-02T00:00:00Z"),
        nps("c-1", "a-4", 9, Some("Still good"), "2026-04-10T00:00:00Z"),
    ]))
    .await
    .ok();

    // Refusals: labels outside the lists, a root cause for no complaint, a second CSAT, a
    // case never opened, a repeated NPS answer; scores out of range are named.
    let head = app.head().await;
    for (events, fragments) in [
        (
            json!([marked("k-5", "fraud", "2026-03-16T00:00:00Z")]),
            vec!["category fraud is not one of the tenant's: billing, delivery"],
        ),
        (
            json!([resolved("k-4", Some("aliens"), "2026-04-21T00:00:00Z")]),
            vec!["root cause aliens is not one of the tenant's"],
        ),
        (
            json!([resolved(
                "k-5",
                Some("carrier_delay"),
                "2026-03-17T00:00:00Z"
            )]),
            vec!["only for a complaint"],
        ),
        (
            json!([csat("k-1", 4, None, "2026-03-04T00:00:00Z")]),
            vec!["already recorded"],
        ),
        (
            json!([csat("k-99", 4, None, "2026-03-04T00:00:00Z")]),
            vec!["never opened"],
        ),
        (
            json!([nps("c-1", "a-1", 3, None, "2026-03-06T00:00:00Z")]),
            vec!["NPS answer a-1 was already recorded"],
        ),
    ] {
        app.ingest(events).await.problem(409, &fragments);
    }
    app.ingest(json!([csat("k-4", 6, None, "2026-04-21T00:00:00Z")]))
        .await
        .problem(422, &["data.score"]);
    app.ingest(json!([nps("c-1", "a-9", 11, None, "2026-04-21T00:00:00Z")]))
        .await
        .problem(422, &["data.score"]);
    assert_eq!(app.head().await, head, "nothing refused is written");

    // New lists (PUT, admin only) apply from their position on: delivery is refused now, the
    // past stays.
    let put = |role: Role, body: Value| {
        let app = &app;
        async move {
            app.send(
                app.client
                    .put(app.url("/v1/settings/complaints"))
                    .bearer_auth(app.key(TENANT, role))
                    .json(&body),
            )
            .await
        }
    };
    let lists_body = json!({"categories": ["billing", "product"], "causes": ["defect"]});
    put(Role::Analyst, lists_body.clone())
        .await
        .problem(403, &[]);
    put(Role::Admin, json!({"categories": ["billing"]}))
        .await
        .problem(422, &["causes"]);
    put(
        Role::Admin,
        json!({"categories": ["a", "a"], "causes": ["x"]}),
    )
    .await
    .problem(422, &["data.categories[1]", "twice"]);
    put(Role::Admin, json!({"categories": ["a"], "causes": ["x y"]}))
        .await
        .problem(422, &["data.causes[0]"]);
    let changed = put(Role::Admin, lists_body).await;
    assert_eq!(changed.status, 201, "{}", changed.body);
    app.ingest(json!([marked("k-5", "delivery", "2026-03-16T00:00:00Z")]))
        .await
        .problem(
            409,
            &["category delivery is not one of the tenant's: billing, product"],
        );
    let last = changed.body["position"].as_u64().expect("position");
    let lists_now = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/settings/complaints?min_position={last}"),
        )
        .await;
    let lists_now = lists_now.ok();
    assert_eq!(
        lists_now["in_force"]["categories"],
        json!(["billing", "product"])
    );
    assert_eq!(lists_now["in_force"]["causes"], json!(["defect"]));
    assert_eq!(lists_now["in_force"]["position"], last);
    assert_eq!(lists_now["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        lists_now["history"][0]["categories"],
        json!(["billing", "delivery"])
    );
    app.get_as(TENANT, Role::Ingest, "/v1/settings/complaints")
        .await
        .problem(403, &[]);

    // Complaints opened in [March, May): k-1, k-2, k-3, k-4 (k-6 opened in May).
    let report = app
        .get(&format!(
            "/v1/service/complaints?{WINDOW}&min_position={last}"
        ))
        .await;
    let report = report.ok();
    assert_eq!(report["complaints"], 4);
    assert_eq!(
        report["by_category"],
        json!({
            "billing": {"complaints": 3, "resolution": {"resolved": 2, "median_seconds": 10800.0, "p90_seconds": 13680.0}},
            "delivery": {"complaints": 1, "resolution": {"resolved": 1, "median_seconds": 86400.0, "p90_seconds": 86400.0}},
        })
    );
    assert_eq!(
        report["resolution"],
        json!({"resolved": 3, "median_seconds": 14400.0, "p90_seconds": 72000.0})
    );
    assert_eq!(
        report["by_root_cause"],
        json!({"carrier_delay": 1, "pricing_error": 1})
    );
    assert_eq!(report["without_root_cause"], 2);
    assert_eq!(
        report["repeat_complainers"],
        json!([{"customer_id": "c-1", "complaints": 3}])
    );
    assert_eq!(
        report["trend"],
        json!([
            {"month": "2026-03", "complaints": 2, "by_category": {"billing": 1, "delivery": 1}},
            {"month": "2026-04", "complaints": 2, "by_category": {"billing": 2}},
        ])
    );

    // Satisfaction over the same window, by month.
    let report = app
        .get(&format!(
            "/v1/service/satisfaction?{WINDOW}&min_position={last}"
        ))
        .await;
    let report = report.ok();
    let csat = &report["csat"];
    assert_eq!(
        csat["overall"],
        json!({"answers": 4, "satisfied": 2, "csat_percent": 50.0, "mean_score": 3.5})
    );
    assert_eq!(
        csat["by_agent"],
        json!({
            "u-1": {"answers": 2, "satisfied": 2, "csat_percent": 100.0, "mean_score": 4.5},
            "u-2": {"answers": 1, "satisfied": 0, "csat_percent": 0.0, "mean_score": 2.0},
        })
    );
    assert_eq!(
        csat["without_agent"],
        json!({"answers": 1, "satisfied": 0, "csat_percent": 0.0, "mean_score": 3.0})
    );
    assert_eq!(
        csat["by_priority"],
        json!({
            "high": {"answers": 2, "satisfied": 1, "csat_percent": 50.0, "mean_score": 4.0},
            "normal": {"answers": 2, "satisfied": 1, "csat_percent": 50.0, "mean_score": 3.0},
        })
    );
    let periods: Vec<(Value, Value, Value)> = csat["by_period"]
        .as_array()
        .expect("periods")
        .iter()
        .map(|p| {
            (
                p["period"].clone(),
                p["answers"].clone(),
                p["satisfied"].clone(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        vec![
            (json!("2026-03"), json!(3), json!(1)),
            (json!("2026-04"), json!(1), json!(1)),
        ]
    );
    assert_eq!(
        report["nps"]["overall"],
        json!({"answers": 4, "promoters": 2, "passives": 1, "detractors": 1, "nps": 25.0})
    );
    assert_eq!(
        report["nps"]["by_period"],
        json!([
            {"period": "2026-03", "start": "2026-03-01T00:00:00Z", "answers": 2, "promoters": 1, "passives": 0, "detractors": 1, "nps": 0.0},
            {"period": "2026-04", "start": "2026-04-01T00:00:00Z", "answers": 2, "promoters": 1, "passives": 1, "detractors": 0, "nps": 50.0},
        ])
    );
    let weekly = app
        .get(&format!("/v1/service/satisfaction?{WINDOW}&period=week"))
        .await;
    let weeks: Vec<Value> = weekly.ok()["csat"]["by_period"]
        .as_array()
        .expect("weeks")
        .iter()
        .map(|p| json!([p["period"], p["start"], p["answers"]]))
        .collect();
    assert_eq!(
        weeks,
        vec![
            json!(["2026-W10", "2026-03-02T00:00:00Z", 1]),
            json!(["2026-W11", "2026-03-09T00:00:00Z", 1]),
            json!(["2026-W12", "2026-03-16T00:00:00Z", 1]),
            json!(["2026-W15", "2026-04-06T00:00:00Z", 1]),
        ]
    );

    // The 360 view: the latest answers, live and as of a past moment; redacted without the
    // flag.
    let view = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    let satisfaction = &view.ok()["satisfaction"];
    assert_eq!(satisfaction["latest_csat"]["case_id"], "k-2");
    assert_eq!(satisfaction["latest_csat"]["score"], 2);
    assert_eq!(satisfaction["latest_csat"]["comment"], "Too slow");
    assert_eq!(satisfaction["latest_nps"]["answer_id"], "a-4");
    assert_eq!(satisfaction["latest_nps"]["comment"], "Still good");
    let past = app
        .get("/v1/customers/c-1?as_of=2026-03-10T00:00:00Z")
        .await;
    let satisfaction = &past.ok()["satisfaction"];
    assert_eq!(satisfaction["latest_csat"]["case_id"], "k-1");
    assert_eq!(satisfaction["latest_csat"]["comment"], "Great help");
    assert_eq!(satisfaction["latest_nps"]["answer_id"], "a-1");
    let before = app
        .get("/v1/customers/c-1?as_of=2026-03-01T00:00:00Z")
        .await;
    assert_eq!(
        before.ok()["satisfaction"],
        json!({"latest_csat": null, "latest_nps": null})
    );
    let redacted = app
        .get_with(app.redacted_key(TENANT, Role::Analyst), "/v1/customers/c-1")
        .await;
    let satisfaction = &redacted.ok()["satisfaction"];
    assert_eq!(satisfaction["latest_csat"]["comment"], "[redacted]");
    assert_eq!(satisfaction["latest_nps"]["comment"], "[redacted]");
    assert_eq!(satisfaction["latest_nps"]["score"], 9);

    // Bad parameters are named; roles; another tenant sees nothing.
    for (path, fragment) in [
        ("/v1/service/complaints?to=2026-05-01T00:00:00Z", "from"),
        (
            "/v1/service/complaints?from=yesterday&to=2026-05-01T00:00:00Z",
            "from",
        ),
        (
            "/v1/service/complaints?from=2026-05-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "from",
        ),
        ("/v1/service/satisfaction?from=2026-03-01T00:00:00Z", "to"),
        (
            "/v1/service/satisfaction?from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z&period=day",
            "period",
        ),
        (
            "/v1/service/satisfaction?from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z&by=agent",
            "by",
        ),
    ] {
        app.get(path).await.problem(400, &[fragment]);
    }
    for path in ["/v1/service/complaints", "/v1/service/satisfaction"] {
        let path = format!("{path}?{WINDOW}");
        app.get_as(TENANT, Role::Ingest, &path)
            .await
            .problem(403, &[]);
        app.get_as(TENANT, Role::Auditor, &path)
            .await
            .problem(403, &[]);
        app.get_as(TENANT, Role::Admin, &path).await.ok();
    }
    let other = app
        .get_as(
            OTHER_TENANT,
            Role::Analyst,
            &format!("/v1/service/complaints?{WINDOW}"),
        )
        .await;
    assert_eq!(other.ok()["complaints"], 0, "another tenant sees none");
    let other = app
        .get_as(
            OTHER_TENANT,
            Role::Analyst,
            &format!("/v1/service/satisfaction?{WINDOW}"),
        )
        .await;
    assert_eq!(other.ok()["csat"]["overall"]["answers"], 0);
    assert_eq!(other.ok()["nps"]["overall"]["answers"], 0);
    app.ingest_as(
        OTHER_TENANT,
        json!([
            opened("k-1", "c-9", "low", "2026-03-02T00:00:00Z"),
            marked("k-1", "billing", "2026-03-02T00:00:00Z")
        ]),
    )
    .await
    .problem(409, &["no complaint categories"]);

    // Erasure: c-1's comments are gone from the 360 view; the scores and figures stay.
    let erased = app
        .post_as(TENANT, Role::Admin, "/v1/customers/c-1/erase")
        .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    let view = app.get("/v1/customers/c-1").await;
    let satisfaction = &view.ok()["satisfaction"];
    assert_eq!(satisfaction["latest_csat"]["score"], 2);
    assert_eq!(satisfaction["latest_csat"]["comment"], Value::Null);
    assert_eq!(satisfaction["latest_nps"]["score"], 9);
    assert_eq!(satisfaction["latest_nps"]["comment"], Value::Null);
    let past = app
        .get("/v1/customers/c-1?as_of=2026-03-10T00:00:00Z")
        .await;
    let satisfaction = &past.ok()["satisfaction"];
    assert_eq!(satisfaction["latest_csat"]["comment"], Value::Null);
    assert_eq!(satisfaction["latest_nps"]["comment"], Value::Null);
    let report = app.get(&format!("/v1/service/satisfaction?{WINDOW}")).await;
    assert_eq!(report.ok()["csat"]["overall"]["answers"], 4);
}
