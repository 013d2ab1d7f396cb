//! Random and malformed requests, from a fixed seed so a failure replays: random bytes, random
//! JSON, valid events with one part broken, random query strings and paths, random keys. No
//! answer may be a 5xx, every error is problem+json, and the server keeps answering.

use crm_api::keys::Role;
use crm_tests::bench_data::Rng;
use serde_json::{Value, json};

use crate::fixture::{App, TENANT};

const QUERY_NAMES: &[&str] = &[
    "after",
    "limit",
    "order",
    "as_of",
    "known_at",
    "position",
    "at",
    "search",
    "segment",
    "owner",
    "status",
    "stage",
    "customer_id",
    "agent",
    "priority",
    "opened_from",
    "closed_to",
    "offset",
    "stream",
    "subject",
    "key_id",
    "from",
    "to",
    "colour",
    "source",
    "campaign_id",
    "overdue",
    "due_before",
    "period",
    "",
    "limit[]",
    "currency",
    "min_together",
    "before",
];
const GET_PATHS: &[&str] = &[
    "/v1/customers",
    "/v1/customers/c-1",
    "/v1/customers/c-1/timeline",
    "/v1/pipeline",
    "/v1/opportunities",
    "/v1/cases",
    "/v1/service/backlog",
    "/v1/service/sla-targets",
    "/v1/events",
    "/v1/verify",
    "/v1/projections",
    "/v1/customers/c-1/personal-data",
    "/v1/audit/access",
    "/v1/leads",
    "/v1/leads/funnel",
    "/v1/campaigns",
    "/v1/campaigns/cmp-1",
    "/v1/tasks",
    "/v1/accounts/c-1/contacts",
    "/v1/opportunities/op-1",
    "/v1/analytics/products",
    "/v1/consent/violations",
    "/v1/settings/consent",
    "/v1/service/calendar",
    "/v1/analytics/service",
    "/v1/service/complaints",
    "/v1/service/satisfaction",
    "/v1/settings/complaints",
    "/v1/webhooks",
    "/v1/webhooks/wh_1",
    "/v1/webhooks/wh_1/deliveries",
    "/v1/workflows",
    "/v1/workflows/r-1",
    "/v1/workflows/r-1/runs",
];
const TYPES: &[&str] = &[
    "CustomerRegistered",
    "InteractionLogged",
    "OrderPlaced",
    "OrderRefunded",
    "OpportunityOpened",
    "OpportunityWon",
    "CaseOpened",
    "CaseResolved",
    "CustomerMerged",
    "CustomerErased",
    "LeadCaptured",
    "LeadQualified",
    "LeadDisqualified",
    "CampaignCostRecorded",
    "ContactLinked",
    "ContactUnlinked",
    "TaskCreated",
    "TaskRescheduled",
    "TaskCompleted",
    "QuotaSet",
    "CampaignLaunched",
    "CampaignMemberAdded",
    "ConsentRegimeSet",
    "CasePaused",
    "CaseResumed",
    "SlaTargetsSet",
    "BusinessCalendarSet",
    "ComplaintCategoriesSet",
    "CaseMarkedComplaint",
    "CsatRecorded",
    "NpsAnswered",
    "WorkflowRuleSet",
    "WorkflowRuleRemoved",
];

fn pick<'a>(rng: &mut Rng, items: &'a [&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn random_string(rng: &mut Rng) -> String {
    let pieces = [
        "c-1",
        "",
        " ",
        "ü",
        "💥",
        "\"",
        "\\",
        "%",
        "%00",
        "null",
        "-1",
        "1e309",
        "99999999999999999999",
        "2026-01-01T00:00:00Z",
        "2026-13-45T99:00:00Z",
        "EUR",
        "12.345",
        "0.00",
        "-5.00",
        "<script>",
        "'; DROP TABLE crm_events; --",
        "a",
    ];
    let mut text = String::new();
    for _ in 0..rng.below(4) {
        text.push_str(pieces[rng.below(pieces.len() as u64) as usize]);
    }
    if rng.below(20) == 0 {
        text.push_str(&"x".repeat(rng.below(5_000) as usize));
    }
    text
}

fn random_json(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!((rng.next_u64() as f64) / 7.0 - 1e18),
        4 => json!(random_string(rng)),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                let key = if rng.below(2) == 0 {
                    pick(
                        rng,
                        &[
                            "type",
                            "data",
                            "id",
                            "events",
                            "customer_id",
                            "amount",
                            "currency",
                            "metadata",
                            "occurred_at",
                            "expected_revision",
                        ],
                    )
                    .to_owned()
                } else {
                    random_string(rng)
                };
                object.insert(key, random_json(rng, depth - 1));
            }
            Value::Object(object)
        }
    }
}

/// A plausible event with one random part broken (or none).
fn mutated_event(rng: &mut Rng) -> Value {
    let mut event = json!({
        "type": pick(rng, TYPES),
        "data": {
            "customer_id": "c-1", "kind": "person", "name": "Ada", "order_id": "o-1",
            "amount": "10.00", "currency": "EUR", "opportunity_id": "op-1", "case_id": "k-1",
            "subject": "Hello", "channel": "email", "direction": "inbound", "lead_id": "l-1",
            "into_customer_id": "c-2", "stage": "Prospecting", "priority": "high"
        },
        "occurred_at": "2026-01-01T00:00:00Z",
        "metadata": {"actor": "u-1"},
    });
    if event["type"] == "QuotaSet" {
        event["data"] =
            json!({"owner": "u-1", "period": "2026-03", "amount": "10.00", "currency": "EUR"});
    }
    if event["type"] == "OrderPlaced" {
        // An order with lines (version 2), whose lines the mutations below break.
        event["data"] = json!({
            "customer_id": "c-1", "order_id": "o-1", "amount": "10.00", "currency": "EUR",
            "lines": [{"product_id": "p-1", "name": "Tea", "quantity": 2, "unit_price": "5.00"}]
        });
    }
    let fields = [
        "type",
        "data",
        "occurred_at",
        "metadata",
        "id",
        "expected_revision",
    ];
    match rng.below(6) {
        0 => {}
        1 => {
            let field = pick(rng, &fields);
            event[field] = random_json(rng, 2);
        }
        2 => {
            let field = pick(rng, &fields);
            if let Some(object) = event.as_object_mut() {
                object.remove(field);
            }
        }
        3 => {
            let key = pick(
                rng,
                &[
                    "customer_id",
                    "amount",
                    "currency",
                    "kind",
                    "name",
                    "order_id",
                    "stage",
                    "priority",
                    "lines",
                    "discount",
                    "period",
                ],
            );
            event["data"][key] = random_json(rng, 1);
        }
        4 => {
            if let Some(data) = event["data"].as_object_mut() {
                let key = random_string(rng);
                data.insert(key, random_json(rng, 1));
            }
        }
        _ => event["expected_revision"] = random_json(rng, 0),
    }
    event
}

fn query_string(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    for _ in 0..rng.below(4) {
        let name = pick(rng, QUERY_NAMES);
        let value: String = random_string(rng)
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect();
        parts.push(format!("{name}={value}"));
    }
    parts.join("&")
}

/// Sends `rounds` random requests and checks each answer.
pub async fn run(app: &App, rounds: u64) {
    let mut rng = Rng::new(0xf022);
    let keys = [
        app.key(TENANT, Role::Admin).to_owned(),
        app.key(TENANT, Role::Ingest).to_owned(),
        app.key(TENANT, Role::Analyst).to_owned(),
    ];
    for round in 0..rounds {
        let key = if rng.below(10) == 0 {
            random_string(&mut rng)
        } else {
            keys[rng.below(keys.len() as u64) as usize].clone()
        };
        let request = match rng.below(8) {
            0 => {
                let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.next_u64() as u8).collect();
                app.client.post(app.url("/v1/events")).body(bytes)
            }
            1 => app
                .client
                .post(app.url("/v1/events"))
                .json(&random_json(&mut rng, 4)),
            2 | 3 => {
                let events: Vec<Value> = (0..1 + rng.below(4))
                    .map(|_| mutated_event(&mut rng))
                    .collect();
                app.client
                    .post(app.url("/v1/events"))
                    .json(&json!({ "events": events }))
            }
            6 => {
                // A workflow rule with one member replaced by random JSON.
                let mut rule = json!({"name": "r", "trigger": {"event": "CaseOpened",
                    "conditions": [{"field": "data.priority", "op": "eq", "value": "high"}]},
                    "actions": [{"append": {"type": "CaseAssigned",
                        "data": {"case_id": "{{data.case_id}}", "agent": "a"}}}]});
                let spot = pick(
                    &mut rng,
                    &["name", "enabled", "trigger", "actions", "extra"],
                );
                rule[spot] = random_json(&mut rng, 3);
                app.client.put(app.url("/v1/workflows/r-1")).json(&rule)
            }
            7 => app
                .client
                .post(app.url("/v1/workflows/r-1/test"))
                .json(&random_json(&mut rng, 3)),
            4 => {
                let path = pick(&mut rng, GET_PATHS);
                app.client
                    .get(format!("{}?{}", app.url(path), query_string(&mut rng)))
            }
            _ => {
                let id: String = random_string(&mut rng)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect();
                let tail = pick(&mut rng, &["", "/timeline", "/x"]);
                app.client
                    .get(app.url(&format!("/v1/customers/{id}{tail}")))
            }
        };
        let request = if key.is_empty() {
            request
        } else {
            request.header("authorization", format!("Bearer {key}"))
        };
        let Ok(request) = request.build() else {
            continue; // not even a valid HTTP request (e.g. a header with a newline)
        };
        let description = format!("round {round}: {} {}", request.method(), request.url());
        let response = app
            .client
            .execute(request)
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        assert!(status < 500, "{description}: {status} {body}");
        if status >= 400 {
            assert_eq!(
                content_type, "application/problem+json",
                "{description}: {body}"
            );
            let problem: Value = serde_json::from_str(&body).expect("problem JSON");
            assert!(
                problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{description}: {body}"
            );
        }
    }
    // Whatever was accepted verifies, and the server still answers.
    let verify = app.get_as(TENANT, Role::Auditor, "/v1/verify").await;
    assert_eq!(verify.ok()["intact"], true);
}
