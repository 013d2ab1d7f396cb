//! Issue 18, leads: `GET /v1/leads` (filters, pages, ages, the customer converted to, bad
//! values named) and `GET /v1/leads/funnel` (counts and rates by source and campaign, as of
//! a window's end, reasons redacted without `--personal-data`), and erased leads in no answer.

use std::future::Future;

use chrono::{DateTime, Utc};
use crm_api::app::Limits;
use crm_api::keys::Role;
use serde_json::{Value, json};

use crate::fixture::{App, TENANT};
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

fn captured(
    lead: &str,
    source: &str,
    campaign: Option<&str>,
    owner: Option<&str>,
    at: &str,
) -> Value {
    let mut data = json!({"lead_id": lead, "name": format!("Prospect {lead}"), "source": source});
    if let Some(campaign) = campaign {
        data["campaign_id"] = json!(campaign);
    }
    if let Some(owner) = owner {
        data["owner"] = json!(owner);
    }
    event("LeadCaptured", data, at)
}

/// Seven leads; see each line. l-9 is erased later, c-6 (l-6's customer) too.
fn history() -> Value {
    json!([
        captured(
            "l-1",
            "web_form",
            Some("cmp-1"),
            Some("u-1"),
            "2026-03-01T10:00:00Z"
        ),
        event(
            "LeadQualified",
            json!({"lead_id": "l-1"}),
            "2026-03-02T10:00:00Z"
        ),
        event(
            "LeadConverted",
            json!({"lead_id": "l-1", "customer_id": "c-1",
            "opportunity_id": "op-1"}),
            "2026-03-05T10:00:00Z"
        ),
        captured(
            "l-2",
            "web_form",
            Some("cmp-1"),
            Some("u-2"),
            "2026-03-01T11:00:00Z"
        ),
        event(
            "LeadDisqualified",
            json!({"lead_id": "l-2", "reason": "No budget"}),
            "2026-03-03T10:00:00Z"
        ),
        captured("l-3", "referral", None, Some("u-1"), "2026-03-02T09:00:00Z"),
        event(
            "LeadQualified",
            json!({"lead_id": "l-3"}),
            "2026-03-10T09:00:00Z"
        ),
        captured(
            "l-4",
            "web_form",
            Some("cmp-2"),
            Some("u-1"),
            "2026-03-03T09:00:00Z"
        ),
        event(
            "LeadDisqualified",
            json!({"lead_id": "l-4", "reason": "Went with a competitor"}),
            "2026-03-04T09:00:00Z"
        ),
        captured(
            "l-5",
            "referral",
            Some("cmp-1"),
            None,
            "2026-03-20T09:00:00Z"
        ),
        captured("l-6", "web_form", None, None, "2026-02-15T09:00:00Z"),
        event(
            "CustomerRegistered",
            json!({"customer_id": "c-6", "kind": "person",
            "name": "Sixtus"}),
            "2026-03-02T11:00:00Z"
        ),
        event(
            "LeadConverted",
            json!({"lead_id": "l-6", "customer_id": "c-6"}),
            "2026-03-02T12:00:00Z"
        ),
        captured(
            "l-9",
            "web_form",
            Some("cmp-1"),
            Some("u-1"),
            "2026-03-04T09:00:00Z"
        ),
    ])
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["lead_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

pub async fn leads_list_filters_pages_and_names_bad_parameters<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = app.ingest(history()).await.ok()["last_position"]
        .as_u64()
        .expect("position");
    let before = Utc::now();
    let all = app.get(&format!("/v1/leads?min_position={last}")).await;
    let after = Utc::now();
    assert_eq!(
        ids(all.ok()),
        ["l-1", "l-2", "l-3", "l-4", "l-5", "l-6", "l-9"]
    );
    let first = &all.body["items"][0];
    assert_eq!(first["status"], "converted");
    assert_eq!(first["source"], "web_form");
    assert_eq!(first["campaign_id"], "cmp-1");
    assert_eq!(first["owner"], "u-1");
    assert_eq!(first["customer_id"], "c-1");
    assert_eq!(first["opportunity_id"], "op-1");
    assert_eq!(first["captured_at"], "2026-03-01T10:00:00Z");
    assert_eq!(first["qualified_at"], "2026-03-02T10:00:00Z");
    assert_eq!(first["converted_at"], "2026-03-05T10:00:00Z");
    let age = first["age_seconds"].as_i64().expect("age");
    let captured_at = at("2026-03-01T10:00:00Z");
    assert!(
        (before - captured_at).num_seconds() <= age && age <= (after - captured_at).num_seconds(),
        "{age}"
    );
    assert_eq!(all.body["items"][1]["status"], "disqualified");
    assert_eq!(all.body["items"][1]["disqualified_reason"], "No budget");
    assert_eq!(all.body["items"][2]["status"], "qualified");
    assert_eq!(all.body["items"][4]["status"], "captured");
    assert_eq!(all.body["items"][4]["customer_id"], Value::Null);

    for (query, expected) in [
        ("status=disqualified", vec!["l-2", "l-4"]),
        ("status=converted", vec!["l-1", "l-6"]),
        ("source=referral", vec!["l-3", "l-5"]),
        ("campaign_id=cmp-1", vec!["l-1", "l-2", "l-5", "l-9"]),
        ("owner=u-1", vec!["l-1", "l-3", "l-4", "l-9"]),
        ("owner=u-1&status=qualified", vec!["l-3"]),
        ("source=nowhere", vec![]),
    ] {
        let answer = app.get(&format!("/v1/leads?{query}")).await;
        assert_eq!(ids(answer.ok()), expected, "{query}");
    }
    let page = app.get("/v1/leads?limit=2").await;
    assert_eq!(ids(page.ok()), ["l-1", "l-2"]);
    assert_eq!(page.body["next_after"], "l-2");
    let page = app.get("/v1/leads?limit=2&after=l-2").await;
    assert_eq!(ids(page.ok()), ["l-3", "l-4"]);
    let page = app.get("/v1/leads?limit=5&after=l-5").await;
    assert_eq!(ids(page.ok()), ["l-6", "l-9"]);
    assert_eq!(page.body.get("next_after"), None);

    // Without --personal-data the reason reads "[redacted]".
    let key = app.redacted_key(TENANT, Role::Analyst);
    let redacted = app.get_with(key, "/v1/leads?status=disqualified").await;
    assert_eq!(
        redacted.ok()["items"][0]["disqualified_reason"],
        "[redacted]"
    );
    assert_eq!(redacted.body["items"][0]["source"], "web_form");

    // Bad values, named.
    let bad = app.get("/v1/leads?status=open").await;
    bad.problem(400, &["status", "\"captured\""]);
    assert_eq!(bad.body["parameter"], "status");
    app.get("/v1/leads?limit=0").await.problem(400, &["limit"]);
    app.get("/v1/leads?limit=x").await.problem(400, &["limit"]);
    app.get("/v1/leads?colour=red")
        .await
        .problem(400, &["colour"]);
    app.get(&format!("/v1/leads?min_position={}", last + 100))
        .await
        .problem(400, &["min_position"]);
    app.get_as(TENANT, Role::Ingest, "/v1/leads")
        .await
        .problem(403, &[]);
}

pub async fn the_lead_funnel_is_exact_by_source_and_campaign<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    app.ingest(history()).await.ok();
    // l-9 asks to be forgotten: it leaves every answer.
    let erased = app
        .post_as(TENANT, Role::Admin, "/v1/leads/l-9/erase")
        .await;
    let position = erased.ok()["position"].as_u64().expect("position");

    let window = "from=2026-03-01T00:00:00Z&to=2026-03-15T00:00:00Z";
    let funnel = app
        .get(&format!(
            "/v1/leads/funnel?{window}&min_position={position}"
        ))
        .await;
    let funnel = funnel.ok();
    // Captured in the window: l-1, l-2, l-3, l-4 (l-5 after it, l-6 before it, l-9 erased).
    assert_eq!(
        funnel["overall"],
        json!({"captured": 4, "qualified": 2, "converted": 1, "disqualified": 2,
               "qualification_rate": 0.5, "conversion_rate": 0.25,
               "qualified_conversion_rate": 0.5, "disqualification_rate": 0.5,
               "disqualified_reasons": [{"reason": "No budget", "count": 1},
                                        {"reason": "Went with a competitor", "count": 1}]})
    );
    assert_eq!(funnel["from"], "2026-03-01T00:00:00Z");
    assert_eq!(funnel["to"], "2026-03-15T00:00:00Z");
    assert_eq!(
        funnel["by_source"],
        json!({
            "referral": {"captured": 1, "qualified": 1, "converted": 0, "disqualified": 0,
                "qualification_rate": 1.0, "conversion_rate": 0.0,
                "qualified_conversion_rate": 0.0, "disqualification_rate": 0.0,
                "disqualified_reasons": []},
            "web_form": {"captured": 3, "qualified": 1, "converted": 1, "disqualified": 2,
                "qualification_rate": 1.0 / 3.0, "conversion_rate": 1.0 / 3.0,
                "qualified_conversion_rate": 1.0, "disqualification_rate": 2.0 / 3.0,
                "disqualified_reasons": [{"reason": "No budget", "count": 1},
                                         {"reason": "Went with a competitor", "count": 1}]},
        })
    );
    assert_eq!(
        funnel["by_campaign"],
        json!({
            "cmp-1": {"captured": 2, "qualified": 1, "converted": 1, "disqualified": 1,
                "qualification_rate": 0.5, "conversion_rate": 0.5,
                "qualified_conversion_rate": 1.0, "disqualification_rate": 0.5,
                "disqualified_reasons": [{"reason": "No budget", "count": 1}]},
            "cmp-2": {"captured": 1, "qualified": 0, "converted": 0, "disqualified": 1,
                "qualification_rate": 0.0, "conversion_rate": 0.0,
                "qualified_conversion_rate": null, "disqualification_rate": 1.0,
                "disqualified_reasons": [{"reason": "Went with a competitor", "count": 1}]},
        })
    );

    // As of an earlier end: l-1 qualified (not yet converted), l-2 disqualified; l-4 is
    // captured but not yet disqualified.
    let early = app
        .get("/v1/leads/funnel?from=2026-03-01T00:00:00Z&to=2026-03-03T12:00:00Z")
        .await;
    assert_eq!(
        early.ok()["overall"],
        json!({"captured": 4, "qualified": 1, "converted": 0, "disqualified": 1,
               "qualification_rate": 0.25, "conversion_rate": 0.0,
               "qualified_conversion_rate": 0.0, "disqualification_rate": 0.25,
               "disqualified_reasons": [{"reason": "No budget", "count": 1}]})
    );
    // No window: every lead captured before now; an empty window has no rates.
    let everything = app.get("/v1/leads/funnel").await;
    assert_eq!(everything.ok()["overall"]["captured"], 6);
    assert_eq!(everything.body["overall"]["converted"], 2);
    assert_eq!(everything.body["from"], Value::Null);
    let empty = app
        .get("/v1/leads/funnel?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
        .await;
    assert_eq!(
        empty.ok()["overall"],
        json!({"captured": 0, "qualified": 0, "converted": 0, "disqualified": 0,
               "qualification_rate": null, "conversion_rate": null,
               "qualified_conversion_rate": null, "disqualification_rate": null,
               "disqualified_reasons": []})
    );

    // Reasons are personal data: redacted without --personal-data, counts kept.
    let key = app.redacted_key(TENANT, Role::Analyst);
    let redacted = app
        .get_with(key, &format!("/v1/leads/funnel?{window}"))
        .await;
    assert_eq!(
        redacted.ok()["overall"]["disqualified_reasons"],
        json!([{"reason": "[redacted]", "count": 1}, {"reason": "[redacted]", "count": 1}])
    );

    // The customer a lead converted to is erased: the lead goes with it.
    let erased = app
        .post_as(TENANT, Role::Admin, "/v1/customers/c-6/erase")
        .await;
    let position = erased.ok()["position"].as_u64().expect("position");
    let list = app.get(&format!("/v1/leads?min_position={position}")).await;
    assert_eq!(ids(list.ok()), ["l-1", "l-2", "l-3", "l-4", "l-5"]);
    let everything = app.get("/v1/leads/funnel").await;
    assert_eq!(everything.ok()["overall"]["captured"], 5);
    assert_eq!(everything.body["overall"]["converted"], 1);

    // Bad values, named.
    app.get("/v1/leads/funnel?from=yesterday")
        .await
        .problem(400, &["from"]);
    app.get("/v1/leads/funnel?to=2026-13-01T00:00:00Z")
        .await
        .problem(400, &["to"]);
    let backwards = app
        .get("/v1/leads/funnel?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z")
        .await;
    backwards.problem(400, &["from", "after to"]);
    assert_eq!(backwards.body["parameter"], "from");
    app.get("/v1/leads/funnel?source=web_form")
        .await
        .problem(400, &["source"]);
}
