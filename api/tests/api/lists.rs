//! Issue 15, the lists users look for: `GET /v1/cases`, the pipeline by owner and as of a
//! past business time, customers found by phone digits, and the smaller fixes (unassigned
//! cases counted apart, enum-like query values validated alike, partial refunds counted).

use std::future::Future;

use crm_api::app::Limits;
use crm_api::keys::Role;
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

fn event(event_type: &str, data: Value, at: &str) -> Value {
    json!({"type": event_type, "occurred_at": at, "data": data})
}

fn opened(case: &str, customer: &str, priority: &str, at: &str) -> Value {
    event(
        "CaseOpened",
        json!({"case_id": case, "customer_id": customer, "subject": format!("Subject of {case}"),
               "channel": "email", "priority": priority}),
        at,
    )
}

fn on(event_type: &str, case: &str, extra: Value, at: &str) -> Value {
    let mut data = json!({"case_id": case});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    event(event_type, data, at)
}

/// The `case_id`s of a listing's items, in order.
fn ids(body: &Value, member: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item[member].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn ingest_position(app: &App, tenant: &str, events: Value) -> u64 {
    let answer = app.ingest_as(tenant, events).await;
    answer.ok()["last_position"]
        .as_u64()
        .expect("last_position")
}

pub async fn the_case_list_filters_pages_and_names_bad_parameters<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = ingest_position(
        &app,
        TENANT,
        json!([
            opened("k-1", "c-1", "urgent", "2026-01-05T08:00:00Z"),
            on(
                "CaseResponded",
                "k-1",
                json!({"agent": "a-1"}),
                "2026-01-05T08:30:00Z"
            ),
            opened("k-2", "c-2", "normal", "2026-01-06T00:00:00Z"),
            on(
                "CaseAssigned",
                "k-2",
                json!({"agent": "a-2"}),
                "2026-01-06T01:00:00Z"
            ),
            on("CaseResolved", "k-2", json!({}), "2026-01-07T00:00:00Z"),
            on("CaseClosed", "k-2", json!({}), "2026-01-08T12:00:00Z"),
            opened("k-3", "c-1", "low", "2026-01-07T00:00:00Z"),
            on("CaseClosed", "k-3", json!({}), "2026-01-09T12:00:00Z"),
            opened("k-4", "c-1", "high", "2026-01-10T00:00:00Z"),
            opened("k-5", "c-3", "normal", "2026-01-11T00:00:00Z"),
            on(
                "CaseAssigned",
                "k-5",
                json!({"agent": "a-1"}),
                "2026-01-11T01:00:00Z"
            ),
        ]),
    )
    .await;
    // Another tenant's case is never listed.
    ingest_position(
        &app,
        OTHER_TENANT,
        json!([opened("k-9", "c-1", "urgent", "2026-01-05T08:00:00Z")]),
    )
    .await;

    // Read-your-writes, then every case, open and closed, by id.
    let all = app.get(&format!("/v1/cases?min_position={last}")).await;
    assert!(all.read_position.expect("read position") >= last);
    let all = all.ok();
    assert_eq!(ids(all, "case_id"), ["k-1", "k-2", "k-3", "k-4", "k-5"]);
    assert_eq!(all.get("next_after"), None, "one page holds them all");
    let k1 = &all["items"][0];
    assert_eq!(k1["customer_id"], "c-1");
    assert_eq!(k1["subject"], "Subject of k-1");
    assert_eq!(k1["priority"], "urgent");
    assert_eq!(k1["status"], "open");
    assert_eq!(k1["agent"], "a-1");
    assert_eq!(k1["opened_at"], "2026-01-05T08:00:00Z");
    assert_eq!(k1["first_response_at"], "2026-01-05T08:30:00Z");
    assert_eq!(k1["closed_at"], Value::Null);
    // Urgent: first response due within 1 h, resolution within 4 h.
    assert_eq!(k1["first_response_due"], "2026-01-05T09:00:00Z");
    assert_eq!(k1["resolution_due"], "2026-01-05T12:00:00Z");
    let k2 = &all["items"][1];
    assert_eq!(k2["status"], "closed");
    assert_eq!(k2["resolved_at"], "2026-01-07T00:00:00Z");
    assert_eq!(k2["closed_at"], "2026-01-08T12:00:00Z");

    // Keyset pages: next_after leads through every case once.
    let mut seen = Vec::new();
    let mut path = "/v1/cases?limit=2".to_owned();
    loop {
        let page = app.get(&path).await;
        let page = page.ok();
        let page_ids = ids(page, "case_id");
        assert!(page_ids.len() <= 2, "{page}");
        seen.extend(page_ids);
        match page["next_after"].as_str() {
            Some(after) => path = format!("/v1/cases?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, ["k-1", "k-2", "k-3", "k-4", "k-5"]);
    let second = app.get("/v1/cases?limit=2&after=k-2").await;
    assert_eq!(ids(second.ok(), "case_id"), ["k-3", "k-4"]);
    assert_eq!(second.body["next_after"], "k-4");

    // Filters, alone and together.
    for (query, expected) in [
        ("status=closed", vec!["k-2", "k-3"]),
        ("status=open", vec!["k-1", "k-4", "k-5"]),
        ("status=resolved", vec![]),
        ("customer_id=c-1", vec!["k-1", "k-3", "k-4"]),
        ("customer_id=c-1&status=closed", vec!["k-3"]),
        ("agent=a-1", vec!["k-1", "k-5"]),
        ("agent=a-1&priority=normal", vec!["k-5"]),
        ("priority=urgent", vec!["k-1"]),
        // Half-open windows: from included, to excluded.
        (
            "opened_from=2026-01-06T00:00:00Z&opened_to=2026-01-10T00:00:00Z",
            vec!["k-2", "k-3"],
        ),
        ("opened_from=2026-01-10T00:00:00Z", vec!["k-4", "k-5"]),
        (
            "closed_from=2026-01-08T12:00:00Z&closed_to=2026-01-09T12:00:00Z",
            vec!["k-2"],
        ),
        ("closed_from=2026-01-09T00:00:00%2B01:00", vec!["k-3"]),
        ("closed_to=2026-01-08T12:00:00Z", vec![]),
    ] {
        let answer = app.get(&format!("/v1/cases?{query}")).await;
        assert_eq!(ids(answer.ok(), "case_id"), expected, "{query}");
    }

    // Bad values: 400 naming the parameter (and the allowed values).
    let bad = app.get("/v1/cases?status=bogus").await;
    bad.problem(400, &["status=\"bogus\"", "\"open\"", "\"closed\""]);
    assert_eq!(bad.body["parameter"], "status");
    app.get("/v1/cases?status=Open")
        .await
        .problem(400, &["status=\"Open\""]);
    let bad = app.get("/v1/cases?priority=URGENT").await;
    bad.problem(400, &["priority=\"URGENT\"", "\"urgent\""]);
    assert_eq!(
        bad.body["allowed"],
        json!(["low", "normal", "high", "urgent"])
    );
    app.get("/v1/cases?opened_from=yesterday")
        .await
        .problem(400, &["opened_from", "RFC 3339"]);
    app.get("/v1/cases?closed_to=2026-13-01T00:00:00Z")
        .await
        .problem(400, &["closed_to", "RFC 3339"]);
    app.get("/v1/cases?opened_from=2026-02-01T00:00:00Z&opened_to=2026-01-01T00:00:00Z")
        .await
        .problem(400, &["opened_from", "opened_to"]);
    app.get("/v1/cases?limit=0").await.problem(400, &["limit"]);
    app.get("/v1/cases?sort=id").await.problem(400, &["sort"]);
    app.get(&format!("/v1/cases?min_position={}", last + 1000))
        .await
        .problem(400, &["min_position"]);

    // A key without personal data reads every case, its subject redacted; other roles may
    // not list cases.
    let redacted = app
        .get_with(app.redacted_key(TENANT, Role::Analyst), "/v1/cases")
        .await;
    let redacted = redacted.ok();
    assert_eq!(ids(redacted, "case_id").len(), 5);
    for item in redacted["items"].as_array().expect("items") {
        assert_eq!(item["subject"], "[redacted]", "{item}");
        assert!(item["customer_id"].is_string(), "{item}");
    }
    assert!(!redacted.to_string().contains("Subject of"), "{redacted}");
    let ingest = app
        .get_with(app.key(TENANT, Role::Ingest), "/v1/cases")
        .await;
    assert_eq!(ingest.status, 403, "{}", ingest.body);
}

pub async fn the_pipeline_by_owner_and_as_of_a_past_time<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let deal = |id: &str, owner: &str, amount: &str, stage: &str, at: &str| {
        event(
            "OpportunityOpened",
            json!({"opportunity_id": id, "customer_id": "c-1", "name": format!("Deal {id}"),
                   "amount": amount, "currency": "EUR", "stage": stage,
                   "close_date": "2026-06-30", "owner": owner}),
            at,
        )
    };
    let last = ingest_position(
        &app,
        TENANT,
        json!([
            deal(
                "op-a",
                "u-1",
                "1000.00",
                "Prospecting",
                "2026-01-01T00:00:00Z"
            ),
            event(
                "OpportunityStageChanged",
                json!({"opportunity_id": "op-a", "stage": "Proposal"}),
                "2026-01-10T00:00:00Z",
            ),
            event(
                "OpportunityWon",
                json!({"opportunity_id": "op-a"}),
                "2026-01-20T00:00:00Z",
            ),
            deal(
                "op-b",
                "u-2",
                "200.00",
                "Qualification",
                "2026-01-05T00:00:00Z"
            ),
            event(
                "OpportunityLost",
                json!({"opportunity_id": "op-b", "reason": "price"}),
                "2026-02-01T00:00:00Z",
            ),
            deal(
                "op-c",
                "u-1",
                "300.00",
                "Negotiation",
                "2026-02-10T00:00:00Z"
            ),
        ]),
    )
    .await;
    let get = |path: String| {
        let app = &app;
        async move { app.get(&path).await.ok().clone() }
    };
    let stages = |summary: &Value| -> Vec<(String, i64, String)> {
        summary["by_stage"]
            .as_array()
            .expect("by_stage")
            .iter()
            .map(|s| {
                (
                    s["stage"].as_str().unwrap_or_default().to_owned(),
                    s["count"].as_i64().unwrap_or(-1),
                    s["amount"]["amount"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    };
    let counts = |summary: &Value| {
        (
            summary["open"].as_i64(),
            summary["won"].as_i64(),
            summary["lost"].as_i64(),
        )
    };

    // Without parameters: every deal, as today.
    let everything = get(format!("/v1/pipeline?min_position={last}")).await;
    assert_eq!(counts(&everything), (Some(1), Some(1), Some(1)));
    assert_eq!(everything["win_rate"], 0.5);

    // One owner.
    let u1 = get("/v1/pipeline?owner=u-1".into()).await;
    assert_eq!(counts(&u1), (Some(1), Some(1), Some(0)));
    assert_eq!(
        stages(&u1),
        [
            ("Closed Won".to_owned(), 1, "1000.00".to_owned()),
            ("Negotiation".to_owned(), 1, "300.00".to_owned()),
        ]
    );
    assert_eq!(u1["win_rate"], 1.0);
    let u2 = get("/v1/pipeline?owner=u-2".into()).await;
    assert_eq!(counts(&u2), (Some(0), Some(0), Some(1)));
    let nobody = get("/v1/pipeline?owner=u-9".into()).await;
    assert_eq!(counts(&nobody), (Some(0), Some(0), Some(0)));
    assert_eq!(nobody["by_stage"], json!([]));

    // As of a past business time: the stage each deal was in then.
    let mid_january = get("/v1/pipeline?as_of=2026-01-15T00:00:00Z".into()).await;
    assert_eq!(counts(&mid_january), (Some(2), Some(0), Some(0)));
    assert_eq!(
        stages(&mid_january),
        [
            ("Proposal".to_owned(), 1, "1000.00".to_owned()),
            ("Qualification".to_owned(), 1, "200.00".to_owned()),
        ],
        "op-a in Proposal, not won yet; op-b not lost yet; op-c not opened yet"
    );
    assert_eq!(
        mid_january["by_stage"][0]["weighted"]["amount"], "500.00",
        "Proposal's default probability, 50%"
    );
    assert_eq!(mid_january["win_rate"], Value::Null);
    let earlier = get("/v1/pipeline?owner=u-1&as_of=2026-01-09T23:59:59Z".into()).await;
    assert_eq!(counts(&earlier), (Some(1), Some(0), Some(0)));
    assert_eq!(
        stages(&earlier),
        [("Prospecting".to_owned(), 1, "1000.00".to_owned())]
    );
    let offset = get("/v1/pipeline?owner=u-1&as_of=2026-01-10T00:59:59%2B01:00".into()).await;
    assert_eq!(
        stages(&offset)[0].0,
        "Prospecting",
        "23:59:59Z the day before"
    );
    let late_january = get("/v1/pipeline?as_of=2026-01-25T00:00:00Z".into()).await;
    assert_eq!(counts(&late_january), (Some(1), Some(1), Some(0)));
    assert_eq!(late_january["average_cycle_days"], 19.0);
    let before = get("/v1/pipeline?as_of=2025-01-01T00:00:00Z".into()).await;
    assert_eq!(counts(&before), (Some(0), Some(0), Some(0)));
    // As of a time after every event: the same answer as today's.
    let now = get("/v1/pipeline?as_of=2030-01-01T00:00:00Z".into()).await;
    assert_eq!(now, everything);
    let now_u1 = get("/v1/pipeline?as_of=2030-01-01T00:00:00Z&owner=u-1".into()).await;
    assert_eq!(now_u1, u1);

    app.get("/v1/pipeline?as_of=last-week")
        .await
        .problem(400, &["as_of", "RFC 3339"]);
    app.get("/v1/pipeline?stage=Proposal")
        .await
        .problem(400, &["stage"]);
}

pub async fn customers_are_found_by_the_digits_of_their_phone<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let customer = |id: &str, phone: Value| {
        event(
            "CustomerRegistered",
            json!({"customer_id": id, "kind": "person", "name": format!("Person {id}"),
                   "phone": phone}),
            "2026-01-01T00:00:00Z",
        )
    };
    let last = ingest_position(
        &app,
        TENANT,
        json!([
            customer("c-1", json!("+44 20 7946 0958")),
            customer("c-2", json!("(555) 019-9332")),
            customer("c-3", json!(null)),
            customer("c-4", json!("+1 (415) 555-2671")),
            customer("c-5", json!("+44.20.7946.0000")),
        ]),
    )
    .await;
    ingest_position(
        &app,
        OTHER_TENANT,
        json!([customer("c-1", json!("+44 20 7946 0958"))]),
    )
    .await;
    let search = |text: &str| {
        let app = &app;
        let path = format!(
            "/v1/customers?min_position={last}&search={}",
            urlencode(text)
        );
        async move { ids(app.get(&path).await.ok(), "customer_id") }
    };
    // Spaces, dashes, dots, parentheses and a leading + do not count; the digits must
    // appear in a row in the phone's digits.
    assert_eq!(search("+44 20 7946 0958").await, ["c-1"]);
    assert_eq!(search("442079460958").await, ["c-1"]);
    assert_eq!(search("7946-0958").await, ["c-1"]);
    assert_eq!(search("+44 (20) 7946").await, ["c-1", "c-5"]);
    assert_eq!(search("20.7946").await, ["c-1", "c-5"]);
    assert_eq!(search("(555) 019").await, ["c-2"]);
    assert_eq!(search("019-9332").await, ["c-2"]);
    assert_eq!(search("415 555-2671").await, ["c-4"]);
    assert_eq!(search("55526").await, ["c-4"]);
    assert_eq!(search("555").await, Vec::<String>::new(), "under 5 digits");
    assert_eq!(search("0958").await, Vec::<String>::new(), "under 5 digits");
    assert_eq!(
        search("9332 0958").await,
        Vec::<String>::new(),
        "not in a row"
    );
    assert_eq!(search("00001").await, Vec::<String>::new());
    // Names, emails and ids still match as before.
    assert_eq!(search("person c-2").await, ["c-2"]);

    // A key without personal data may not search by phone either.
    app.get_with(
        app.redacted_key(TENANT, Role::Analyst),
        "/v1/customers?search=79460958",
    )
    .await
    .problem(403, &["--personal-data"]);
}

pub async fn small_fixes_unassigned_partial_refunds_and_enum_values<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = ingest_position(
        &app,
        TENANT,
        json!([
            opened("k-1", "c-1", "high", "2026-01-05T08:00:00Z"),
            opened("k-2", "c-1", "high", "2026-01-05T09:00:00Z"),
            opened("k-3", "c-1", "low", "2026-01-05T10:00:00Z"),
            on("CaseAssigned", "k-3", json!({"agent": "a-1"}), "2026-01-05T10:05:00Z"),
            event(
                "OpportunityOpened",
                json!({"opportunity_id": "op-1", "customer_id": "c-1", "name": "Deal",
                       "amount": "10.00", "currency": "EUR", "stage": "Proposal",
                       "close_date": "2026-06-30"}),
                "2026-01-01T00:00:00Z",
            ),
            event(
                "CustomerRegistered",
                json!({"customer_id": "c-1", "kind": "person", "name": "Ada"}),
                "2026-01-01T00:00:00Z",
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "c-1", "order_id": "o-1", "amount": "80.00", "currency": "EUR"}),
                "2026-01-02T00:00:00Z",
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "c-1", "order_id": "o-2", "amount": "20.00", "currency": "EUR"}),
                "2026-01-02T00:00:00Z",
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "c-1", "order_id": "o-3", "amount": "5.00", "currency": "EUR"}),
                "2026-01-02T00:00:00Z",
            ),
            event(
                "OrderRefunded",
                json!({"customer_id": "c-1", "order_id": "o-1", "amount": "30.00", "currency": "EUR"}),
                "2026-01-03T00:00:00Z",
            ),
            event(
                "OrderRefunded",
                json!({"customer_id": "c-1", "order_id": "o-2", "amount": "20.00", "currency": "EUR"}),
                "2026-01-03T00:00:00Z",
            ),
        ]),
    )
    .await;

    // Unassigned open cases are counted apart, not under an empty agent.
    let backlog = app
        .get(&format!("/v1/service/backlog?min_position={last}"))
        .await;
    let backlog = backlog.ok();
    assert_eq!(backlog["open_per_agent"], json!({"a-1": 1}));
    assert_eq!(backlog["unassigned"], 2);

    // Refunds: o-2 in full, o-1 in part, o-3 not at all.
    let view = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    let orders = &view.ok()["orders"];
    assert_eq!(orders["count"], 3);
    assert_eq!(orders["refunded_count"], 1);
    assert_eq!(orders["partially_refunded_count"], 1);

    // Enum-like values are exact (case included) and checked everywhere: 400 naming the
    // parameter and listing what is allowed.
    let wrong_case = app.get("/v1/opportunities?stage=proposal").await;
    wrong_case.problem(
        400,
        &["stage=\"proposal\"", "\"Proposal\"", "\"Closed Won\""],
    );
    assert_eq!(wrong_case.body["parameter"], "stage");
    let right = app
        .get(&format!(
            "/v1/opportunities?stage=Proposal&min_position={last}"
        ))
        .await;
    assert_eq!(ids(right.ok(), "opportunity_id"), ["op-1"]);
    let closed = app.get("/v1/opportunities?stage=Closed%20Won").await;
    assert_eq!(closed.ok()["items"], json!([]));
    for (path, parameter) in [
        ("/v1/opportunities?status=bogus", "status"),
        ("/v1/opportunities?status=Open", "status"),
        ("/v1/customers?status=Active", "status"),
        ("/v1/customers/c-1/timeline?order=DESC", "order"),
        ("/v1/cases?status=pending", "status"),
        ("/v1/cases?priority=critical", "priority"),
    ] {
        let answer = app.get(path).await;
        answer.problem(400, &[&format!("{parameter}=")]);
        assert_eq!(answer.body["parameter"], parameter, "{path}");
        assert!(answer.body["allowed"].is_array(), "{path}: {}", answer.body);
    }
}

/// Percent-encodes a query value (only what these tests send: spaces, `+`, parentheses).
fn urlencode(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' => c.to_string(),
            other => format!("%{:02X}", other as u32),
        })
        .collect()
}
