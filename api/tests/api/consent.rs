//! Issue 18, consent enforced: adding a customer to a campaign needs its marketing consent on
//! the campaign's channel under the tenant's regime (409 naming the consent otherwise); an
//! outbound marketing interaction without consent is recorded and flagged, on the 360 view
//! and in `GET /v1/consent/violations`, each judged under the regime in force at its
//! position; the regime is a fact set by an admin.

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

fn event(event_type: &str, data: Value, day: &str) -> Value {
    json!({"type": event_type, "occurred_at": format!("2026-02-{day}T12:00:00Z"), "data": data})
}

fn consent(customer: &str, channel: &str, granted: bool, day: &str) -> Value {
    event(
        "CustomerConsentChanged",
        json!({"customer_id": customer, "channel": channel, "purpose": "marketing", "granted": granted}),
        day,
    )
}

fn member(campaign: &str, customer: &str, day: &str) -> Value {
    event(
        "CampaignMemberAdded",
        json!({"campaign_id": campaign, "customer_id": customer}),
        day,
    )
}

fn mail(customer: &str, id: &str, purpose: &str, day: &str) -> Value {
    event(
        "InteractionLogged",
        json!({"customer_id": customer, "interaction_id": id, "channel": "email",
               "direction": "outbound", "purpose": purpose}),
        day,
    )
}

async fn set_regime(app: &App, role: Role, body: Value) -> crate::fixture::Answer {
    app.send(
        app.client
            .put(app.url("/v1/settings/consent"))
            .bearer_auth(app.key(TENANT, role))
            .json(&body),
    )
    .await
}

pub async fn campaign_members_need_consent_and_contacts_without_it_are_flagged<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let mut setup = vec![];
    for c in ["c-1", "c-2", "c-3", "c-4"] {
        setup.push(event(
            "CustomerRegistered",
            json!({"customer_id": c, "kind": "person", "name": format!("Person {c}")}),
            "01",
        ));
    }
    setup.extend([
        consent("c-1", "email", true, "01"),
        consent("c-2", "email", true, "01"),
        consent("c-2", "email", false, "02"),
        // c-3 gave sms consent only; c-4 gave none.
        consent("c-3", "sms", true, "01"),
        event(
            "CampaignLaunched",
            json!({"campaign_id": "cmp-mail", "name": "Spring mail", "channel": "email"}),
            "02",
        ),
        event(
            "CampaignLaunched",
            json!({"campaign_id": "cmp-fair", "name": "Trade fair", "medium": "trade_fair"}),
            "02",
        ),
    ]);
    app.ingest(json!(setup)).await.ok();

    // Opt-in (the default): granted passes; withdrawn and never given are refused, naming
    // the consent; nothing of the batch is written.
    app.ingest(json!([member("cmp-mail", "c-1", "03")]))
        .await
        .ok();
    let head = app.head().await;
    for (customer, status, fragment) in [
        (
            "c-2",
            "withdrawn",
            "customer c-2 withdrew consent for email marketing",
        ),
        (
            "c-3",
            "never_given",
            "customer c-3 never gave consent for email marketing",
        ),
        ("c-4", "never_given", "(opt_in)"),
    ] {
        let refused = app
            .ingest(json!([
                member("cmp-fair", "c-1", "03"),
                member("cmp-mail", customer, "03")
            ]))
            .await;
        refused.problem(409, &[fragment, "events[1]"]);
        assert_eq!(refused.body["event_index"], 1);
        assert_eq!(refused.body["errors"][0]["field"], "data.customer_id");
        assert_eq!(
            refused.body["consent"],
            json!({"customer_id": customer, "channel": "email", "purpose": "marketing",
                   "status": status, "regime": "opt_in"})
        );
        assert_eq!(app.head().await, head, "nothing of the batch is written");
    }
    // A campaign without a channel reaches nobody directly: its members are not checked.
    app.ingest(json!([member("cmp-fair", "c-4", "03")]))
        .await
        .ok();
    // Granting consent earlier in the same batch is seen.
    app.ingest(json!([
        consent("c-3", "email", true, "03"),
        member("cmp-mail", "c-3", "03")
    ]))
    .await
    .ok();

    // Only an admin sets the regime; ingest keys may not append settings events.
    app.ingest(json!([event(
        "ConsentRegimeSet",
        json!({"regime": "opt_out"}),
        "04"
    )]))
    .await
    .problem(403, &["admin"]);
    set_regime(&app, Role::Analyst, json!({"regime": "opt_out"}))
        .await
        .problem(403, &[]);
    set_regime(&app, Role::Admin, json!({"regime": "sometimes"}))
        .await
        .problem(422, &["regime"]);

    // Contacts before the switch, under opt-in: c-4 (never gave) and c-2 (withdrew) are
    // violations; c-1 (granted) is not; a service mail and an inbound mail are no marketing
    // contacts at all.
    app.ingest(json!([
        mail("c-1", "m-1", "marketing", "05"),
        mail("c-2", "m-2", "marketing", "05"),
        mail("c-4", "m-3", "marketing", "05"),
        mail("c-4", "m-4", "service", "05"),
        event(
            "InteractionLogged",
            json!({"customer_id": "c-4", "interaction_id": "m-5", "channel": "email",
                   "direction": "inbound", "purpose": "marketing"}),
            "05"
        ),
    ]))
    .await
    .ok();
    let set = set_regime(&app, Role::Admin, json!({"regime": "opt_out"})).await;
    assert_eq!(set.status, 201, "{}", set.body);
    assert_eq!(set.body["regime"], "opt_out");
    let switched = set.body["position"].as_u64().expect("position");
    // After the switch, never given is allowed; withdrawn still is not.
    app.ingest(json!([member("cmp-mail", "c-4", "06")]))
        .await
        .ok();
    app.ingest(json!([member("cmp-mail", "c-2", "06")]))
        .await
        .problem(409, &["withdrew"]);
    let last = app
        .ingest(json!([
            mail("c-4", "m-6", "marketing", "07"),
            mail("c-2", "m-7", "marketing", "07"),
        ]))
        .await
        .ok()["last_position"]
        .as_u64()
        .expect("position");

    let regime = app
        .get(&format!("/v1/settings/consent?min_position={last}"))
        .await;
    let regime = regime.ok();
    assert_eq!(regime["regime"], "opt_out");
    assert_eq!(regime["set_position"], switched);
    assert_eq!(regime["history"].as_array().map(Vec::len), Some(1));

    let listed = app
        .get(&format!("/v1/consent/violations?min_position={last}"))
        .await;
    let items = listed.ok()["items"].as_array().expect("items").clone();
    let seen: Vec<(&str, &str, &str, &str)> = items
        .iter()
        .map(|v| {
            (
                v["interaction_id"].as_str().unwrap_or_default(),
                v["customer_id"].as_str().unwrap_or_default(),
                v["consent"].as_str().unwrap_or_default(),
                v["regime"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // m-6 (c-4 never gave, under opt-out) is no violation; m-7 (c-2 withdrew) still is.
    assert_eq!(
        seen,
        vec![
            ("m-2", "c-2", "withdrawn", "opt_in"),
            ("m-3", "c-4", "never_given", "opt_in"),
            ("m-7", "c-2", "withdrawn", "opt_out"),
        ]
    );
    assert!(
        items
            .iter()
            .all(|v| v["violation"] == true && v["channel"] == "email")
    );
    // Filters and pages.
    let c2 = app.get("/v1/consent/violations?customer_id=c-2").await;
    assert_eq!(c2.ok()["items"].as_array().map(Vec::len), Some(2));
    let page = app.get("/v1/consent/violations?limit=1").await;
    let after = page.ok()["next_after"].as_str().expect("next").to_owned();
    let next = app
        .get(&format!("/v1/consent/violations?limit=2&after={after}"))
        .await;
    assert_eq!(next.ok()["items"][0]["interaction_id"], "m-3");
    let sms = app.get("/v1/consent/violations?channel=sms").await;
    assert_eq!(sms.ok()["items"], json!([]));
    let before = app
        .get("/v1/consent/violations?from=2026-02-01T00:00:00Z&to=2026-02-06T00:00:00Z")
        .await;
    assert_eq!(before.ok()["items"].as_array().map(Vec::len), Some(2));
    app.get("/v1/consent/violations?channel=fax")
        .await
        .problem(400, &["channel"]);
    app.get("/v1/consent/violations?from=2026-02-06T00:00:00Z&to=2026-02-01T00:00:00Z")
        .await
        .problem(400, &["from"]);
    app.get_as(TENANT, Role::Auditor, "/v1/consent/violations")
        .await
        .ok();
    app.get_as(TENANT, Role::Ingest, "/v1/consent/violations")
        .await
        .problem(403, &[]);
    let other = app
        .get_as(OTHER_TENANT, Role::Analyst, "/v1/consent/violations")
        .await;
    assert_eq!(other.ok()["items"], json!([]), "another tenant sees none");

    // The 360 view: the history newest first and the violations, live and as of a date.
    let view = app
        .get(&format!("/v1/customers/c-2?min_position={last}"))
        .await;
    let record = &view.ok()["consent_record"];
    assert_eq!(record["changes"], 2);
    assert_eq!(record["history"][0]["granted"], false);
    assert_eq!(record["history"][1]["granted"], true);
    assert_eq!(record["marketing_contacts"], 2);
    assert_eq!(record["violation_count"], 2);
    assert_eq!(record["violations"][0]["interaction_id"], "m-7");
    let past = app
        .get("/v1/customers/c-2?as_of=2026-02-05T23:00:00Z")
        .await;
    let record = &past.ok()["consent_record"];
    assert_eq!(record["violation_count"], 1, "m-7 came later");
    assert_eq!(record["violations"][0]["interaction_id"], "m-2");
    let earliest = app
        .get("/v1/customers/c-2?as_of=2026-02-01T23:00:00Z")
        .await;
    let record = &earliest.ok()["consent_record"];
    assert_eq!(
        (record["changes"].clone(), record["violation_count"].clone()),
        (json!(1), json!(0))
    );
}
