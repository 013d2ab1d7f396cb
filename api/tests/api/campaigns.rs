//! Issue 18, campaigns: `GET /v1/campaigns` and `/v1/campaigns/{id}` on a hand-made history
//! whose every figure is computed by hand below: members and response rate, leads generated,
//! deals influenced, revenue won under first-touch, last-touch and even-split attribution,
//! cost and ROI, per currency.

use std::future::Future;

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

fn event(event_type: &str, data: Value, day: &str) -> Value {
    json!({"type": event_type, "occurred_at": format!("2026-01-{day}T12:00:00Z"), "data": data})
}

fn deal(id: &str, customer: &str, amount: &str, currency: &str, day: &str) -> Value {
    event(
        "OpportunityOpened",
        json!({"opportunity_id": id, "customer_id": customer, "name": format!("Deal {id}"),
               "amount": amount, "currency": currency, "stage": "Prospecting",
               "close_date": "2026-06-30"}),
        day,
    )
}

fn member(campaign: &str, who: &str, id: &str, day: &str) -> Value {
    event(
        "CampaignMemberAdded",
        json!({"campaign_id": campaign, who: id}),
        day,
    )
}

fn response(campaign: &str, who: &str, id: &str, kind: &str, day: &str) -> Value {
    event(
        "CampaignMemberResponded",
        json!({"campaign_id": campaign, who: id, "response": kind}),
        day,
    )
}

fn history() -> Value {
    let mut events = vec![];
    for c in ["c-1", "c-2", "c-3"] {
        events.push(event(
            "CustomerRegistered",
            json!({"customer_id": c, "kind": "person", "name": format!("Person {c}")}),
            "01",
        ));
    }
    // Under the default opt-in regime, the email campaign's customer members need their
    // email marketing consent first (the trade fair has no channel: nobody is checked).
    for c in ["c-1", "c-2"] {
        events.push(event(
            "CustomerConsentChanged",
            json!({"customer_id": c, "channel": "email", "purpose": "marketing", "granted": true}),
            "01",
        ));
    }
    events.extend([
        event(
            "CampaignLaunched",
            json!({"campaign_id": "cmp-a", "name": "Spring mail",
            "channel": "email"}),
            "01",
        ),
        event(
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-a", "amount": "1000.00",
            "currency": "EUR"}),
            "01",
        ),
        event(
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-a", "amount": "500.00",
            "currency": "EUR"}),
            "02",
        ),
        event(
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-a", "amount": "100.00",
            "currency": "USD"}),
            "02",
        ),
        member("cmp-a", "customer_id", "c-1", "02"),
        member("cmp-a", "customer_id", "c-2", "02"),
        member("cmp-a", "lead_id", "l-1", "02"),
        member("cmp-a", "lead_id", "l-4", "02"),
        response("cmp-a", "customer_id", "c-1", "clicked", "03"),
        response("cmp-a", "customer_id", "c-2", "bounced", "03"),
        response("cmp-a", "lead_id", "l-1", "opened", "04"),
        response("cmp-a", "customer_id", "c-1", "opened", "05"),
        event(
            "CampaignLaunched",
            json!({"campaign_id": "cmp-b", "name": "Trade fair",
            "medium": "trade_fair"}),
            "05",
        ),
        event(
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-b", "amount": "600.00",
            "currency": "EUR"}),
            "05",
        ),
        member("cmp-b", "customer_id", "c-1", "10"),
        member("cmp-b", "customer_id", "c-3", "10"),
        response("cmp-b", "customer_id", "c-3", "attended", "11"),
        event(
            "LeadCaptured",
            json!({"lead_id": "l-1", "name": "L1", "source": "mail",
            "campaign_id": "cmp-a"}),
            "02",
        ),
        event(
            "LeadCaptured",
            json!({"lead_id": "l-2", "name": "L2", "source": "mail",
            "campaign_id": "cmp-a"}),
            "02",
        ),
        event(
            "LeadConverted",
            json!({"lead_id": "l-2", "customer_id": "c-3"}),
            "04",
        ),
        event(
            "LeadCaptured",
            json!({"lead_id": "l-3", "name": "L3", "source": "fair",
            "campaign_id": "cmp-b"}),
            "06",
        ),
        // op-1: c-1, touched by cmp-a (02, 03, 05) then cmp-b (10); won on the 20th.
        deal("op-1", "c-1", "1000.01", "EUR", "06"),
        event("OpportunityWon", json!({"opportunity_id": "op-1"}), "20"),
        // op-2 and op-8: c-2, touched by cmp-a only (its bounce is no touch).
        deal("op-2", "c-2", "300.01", "EUR", "06"),
        event("OpportunityWon", json!({"opportunity_id": "op-2"}), "15"),
        deal("op-8", "c-2", "40.00", "USD", "06"),
        event("OpportunityWon", json!({"opportunity_id": "op-8"}), "16"),
        // op-3: c-3 won on the 8th, before cmp-b touched it (10): not influenced.
        deal("op-3", "c-3", "200.00", "USD", "06"),
        event("OpportunityWon", json!({"opportunity_id": "op-3"}), "08"),
        // op-4: c-3, touched by cmp-b only, won on the 25th.
        deal("op-4", "c-3", "777.00", "EUR", "12"),
        event("OpportunityWon", json!({"opportunity_id": "op-4"}), "25"),
        // op-5: c-1, open: influenced by both; op-6: c-2, lost on the 3rd after cmp-a's touch.
        deal("op-5", "c-1", "50.00", "EUR", "12"),
        deal("op-6", "c-2", "80.00", "EUR", "02"),
        event("OpportunityLost", json!({"opportunity_id": "op-6"}), "03"),
    ]);
    Value::Array(events)
}

fn money(amount: &str, currency: &str) -> Value {
    json!({"amount": amount, "currency": currency})
}

pub async fn campaign_results_and_attribution_are_exact<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = app.ingest(history()).await.ok()["last_position"]
        .as_u64()
        .expect("position");
    let a = app
        .get(&format!("/v1/campaigns/cmp-a?min_position={last}"))
        .await;
    let a = a.ok().clone();
    let mut without_statement = a.clone();
    without_statement
        .as_object_mut()
        .expect("object")
        .remove("attribution");
    assert_eq!(
        without_statement,
        json!({
            "campaign_id": "cmp-a", "name": "Spring mail", "channel": "email", "medium": null,
            "launched_at": "2026-01-01T12:00:00Z",
            // c-1, c-2, l-1, l-4; c-1 and l-1 responded (c-2 bounced).
            "members": 4, "customer_members": 2, "lead_members": 2,
            "responded": 2, "response_rate": 0.5,
            "responses": {"bounced": 1, "clicked": 1, "opened": 2},
            // l-1 and l-2, l-2 converted.
            "leads_generated": 2, "leads_converted": 1,
            // op-1, op-2, op-8 (won), op-5 (open), op-6 (lost after the touch).
            "opportunities_influenced": 5, "opportunities_won": 3,
            "revenue_won": {
                // op-1 (first touch cmp-a) + op-2; op-8 in USD.
                "first_touch": [money("1300.02", "EUR"), money("40.00", "USD")],
                // op-1's last touch is cmp-b.
                "last_touch": [money("300.01", "EUR"), money("40.00", "USD")],
                // op-1 split between cmp-a and cmp-b: 1000.01 = 500.01 (touched first) + 500.00.
                "even_split": [money("800.02", "EUR"), money("40.00", "USD")],
            },
            "cost": [money("1500.00", "EUR"), money("100.00", "USD")],
            "roi": {
                "first_touch": {"EUR": (130002.0 - 150000.0) / 150000.0, "USD": -0.6},
                "last_touch": {"EUR": (30001.0 - 150000.0) / 150000.0, "USD": -0.6},
                "even_split": {"EUR": (80002.0 - 150000.0) / 150000.0, "USD": -0.6},
            },
        })
    );
    let statement = a["attribution"].as_str().expect("attribution stated");
    for model in [
        "first_touch",
        "last_touch",
        "even_split",
        "never summed across currencies",
    ] {
        assert!(statement.contains(model), "{statement}");
    }

    let b = app.get("/v1/campaigns/cmp-b").await;
    let b = b.ok();
    assert_eq!(b["members"], 2);
    assert_eq!(b["lead_members"], 0);
    assert_eq!(b["responded"], 1);
    assert_eq!(b["response_rate"], 0.5);
    assert_eq!(b["responses"], json!({"attended": 1}));
    assert_eq!(b["leads_generated"], 1);
    assert_eq!(b["leads_converted"], 0);
    // op-1, op-5, op-4; not op-3 (won before the touch).
    assert_eq!(b["opportunities_influenced"], 3);
    assert_eq!(b["opportunities_won"], 2);
    assert_eq!(
        b["revenue_won"],
        json!({
            "first_touch": [money("777.00", "EUR")],
            "last_touch": [money("1777.01", "EUR")],
            "even_split": [money("1277.00", "EUR")],
        })
    );
    assert_eq!(b["cost"], json!([money("600.00", "EUR")]));
    assert_eq!(
        b["roi"],
        json!({
            "first_touch": {"EUR": (77700.0 - 60000.0) / 60000.0},
            "last_touch": {"EUR": (177701.0 - 60000.0) / 60000.0},
            "even_split": {"EUR": (127700.0 - 60000.0) / 60000.0},
        })
    );

    // The list: the same reports by id, in pages.
    let all = app.get("/v1/campaigns").await;
    assert_eq!(all.ok()["items"], json!([a, b.clone()]));
    let page = app.get("/v1/campaigns?limit=1").await;
    assert_eq!(page.ok()["items"][0]["campaign_id"], "cmp-a");
    assert_eq!(page.body["next_after"], "cmp-a");
    let page = app.get("/v1/campaigns?limit=1&after=cmp-a").await;
    assert_eq!(page.ok()["items"][0]["campaign_id"], "cmp-b");

    // Bad input, named; unknown campaigns 404; roles.
    app.get("/v1/campaigns/cmp-z")
        .await
        .problem(404, &["cmp-z"]);
    app.get("/v1/campaigns?limit=0")
        .await
        .problem(400, &["limit"]);
    app.get("/v1/campaigns?channel=email")
        .await
        .problem(400, &["channel"]);
    app.get("/v1/campaigns/cmp-a?as_of=2026-01-01T00:00:00Z")
        .await
        .problem(400, &["as_of"]);
    app.get_as(TENANT, Role::Ingest, "/v1/campaigns")
        .await
        .problem(403, &[]);
}
