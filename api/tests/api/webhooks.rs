//! Issue 20, webhook subscriptions through the API on both backends: admin keys only (403 for
//! every other role), one tenant never sees or changes another's (404, an empty list), the
//! secret shown once (creation, rotation) and stored sealed, bad bodies and parameters named,
//! a new subscription starting at the log's head. Deliveries themselves are tested against the
//! real binary (`api/tests/webhooks.rs`).

use std::future::Future;

use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_projections::db::{Col, SqlValue};
use serde_json::{Value, json};

use crate::fixture::{Answer, App, OTHER_TENANT, TENANT};
use crate::suite::Start;

async fn call(
    app: &App,
    tenant: &str,
    role: Role,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(app.key(tenant, role));
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.send(request).await
}

pub async fn webhook_subscriptions_are_admin_only_per_tenant_and_checked<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let Some(app) = start(Limits::default()).await else {
        return;
    };
    // Events before the subscription: it starts after them.
    app.ingest(json!([{"type": "CustomerRegistered",
                        "data": {"customer_id": "c-1", "kind": "person", "name": "Ada"}}]))
        .await
        .ok();
    let head = app.head().await;
    macro_rules! admin {
        ($method:expr, $path:expr, $body:expr $(,)?) => {
            call(&app, TENANT, Role::Admin, $method, $path, $body)
        };
    }
    let created = admin!(
        "POST",
        "/v1/webhooks",
        Some(json!({
            "url": "https://billing.example.com/hooks/won",
            "event_types": ["OpportunityWon"],
            "conditions": [{"field": "data.opportunity_id", "op": "exists"}],
            "description": "won deals to billing",
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    assert!(
        id.starts_with("wh_") && secret.starts_with("whsec_"),
        "{}",
        created.body
    );
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["personal_data"], false);
    assert_eq!(created.body["cursor"], head, "it starts at the log's head");
    // Never shown again, and stored sealed: the secret's text is nowhere in the table.
    let got = admin!("GET", &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.body.get("secret").is_none(), "{}", got.body);
    assert_eq!(got.body["url"], "https://billing.example.com/hooks/won");
    let listed = admin!("GET", "/v1/webhooks", None).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert!(!listed.body.to_string().contains(&secret));
    let rows = app
        .state
        .db
        .fetch(
            "SELECT secret FROM crm_webhooks WHERE id = ?",
            vec![SqlValue::text(id.as_str())],
            &[Col::Text],
        )
        .await
        .expect("row");
    let stored = rows[0][0].as_text().expect("sealed").to_owned();
    let key_b64 = secret.trim_start_matches("whsec_");
    assert!(!stored.contains(key_b64), "the secret is stored sealed");
    let opened = crm_automation::webhooks::secrets::open(
        app.state.private.vault().master(),
        TENANT,
        &id,
        &stored,
    )
    .expect("opens for its owner");
    assert_eq!(opened.shown().as_str(), secret);
    assert!(
        crm_automation::webhooks::secrets::open(
            app.state.private.vault().master(),
            OTHER_TENANT,
            &id,
            &stored
        )
        .is_err(),
        "sealed for its tenant and id"
    );

    // Every other role: 403, whatever the route.
    for role in [Role::Ingest, Role::Analyst, Role::Auditor] {
        for (method, path) in [
            ("GET", "/v1/webhooks".to_owned()),
            ("POST", "/v1/webhooks".to_owned()),
            ("GET", format!("/v1/webhooks/{id}")),
            ("PATCH", format!("/v1/webhooks/{id}")),
            ("DELETE", format!("/v1/webhooks/{id}")),
            ("GET", format!("/v1/webhooks/{id}/deliveries")),
            ("POST", format!("/v1/webhooks/{id}/replay?from=1")),
        ] {
            let answer = call(&app, TENANT, role, method, &path, Some(json!({}))).await;
            answer.problem(403, &["webhook"]);
        }
    }

    // Another tenant's admin: an empty list, 404 on the id for every route.
    macro_rules! other {
        ($method:expr, $path:expr, $body:expr $(,)?) => {
            call(&app, OTHER_TENANT, Role::Admin, $method, $path, $body)
        };
    }
    let theirs = other!("GET", "/v1/webhooks", None).await;
    assert_eq!(theirs.body["items"], json!([]), "{}", theirs.body);
    for (method, path, body) in [
        ("GET", format!("/v1/webhooks/{id}"), None),
        (
            "PATCH",
            format!("/v1/webhooks/{id}"),
            Some(json!({"description": "mine"})),
        ),
        ("DELETE", format!("/v1/webhooks/{id}"), None),
        ("GET", format!("/v1/webhooks/{id}/deliveries"), None),
        ("POST", format!("/v1/webhooks/{id}/replay?from=1"), None),
    ] {
        other!(method, &path, body).await.problem(404, &[&id]);
    }
    let unchanged = admin!("GET", &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(unchanged.body["description"], "won deals to billing");

    // Bad input, named.
    for (body, member) in [
        (json!({"url": "ftp://x.example"}), "url"),
        (json!({"url": "https://user:pw@x.example"}), "url"),
        (json!({"event_types": []}), "url"),
        (
            json!({"url": "https://x.example", "event_types": ["Nope"]}),
            "event_types[0]",
        ),
        (
            json!({"url": "https://x.example", "conditions": [
                {"field": "type", "op": "eq", "value": "A"},
                {"field": "type", "op": "like", "value": "A"}]}),
            "conditions[1].op",
        ),
        (
            json!({"url": "https://x.example", "event_types": ["CustomerRegistered"],
                   "conditions": [{"field": "data.name", "op": "eq", "value": "Ada"}]}),
            "conditions[0].field",
        ),
        (
            json!({"url": "https://x.example", "personal_data": 1}),
            "personal_data",
        ),
        (json!({"url": "https://x.example", "extra": 1}), "extra"),
    ] {
        let answer = admin!("POST", "/v1/webhooks", Some(body.clone())).await;
        answer.problem(422, &[member]);
        assert_eq!(answer.body["field"], member, "{body}");
    }
    let answer = app
        .send(
            app.client
                .post(app.url("/v1/webhooks"))
                .bearer_auth(app.key(TENANT, Role::Admin))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    admin!(
        "PATCH",
        &format!("/v1/webhooks/{id}"),
        Some(json!({"status": "disabled"}))
    )
    .await
    .problem(422, &["status"]);
    // Narrowing the types re-checks the stored conditions.
    admin!(
        "PATCH",
        &format!("/v1/webhooks/{id}"),
        Some(json!({"event_types": ["CaseOpened"]})),
    )
    .await
    .problem(422, &["conditions[0].field"]);
    admin!("POST", &format!("/v1/webhooks/{id}/replay"), None)
        .await
        .problem(400, &["from"]);
    admin!("POST", &format!("/v1/webhooks/{id}/replay?from=0"), None)
        .await
        .problem(422, &["from"]);
    admin!(
        "GET",
        &format!("/v1/webhooks/{id}/deliveries?after=nope"),
        None
    )
    .await
    .problem(400, &["after"]);

    // PATCH changes what it names; a rotation shows a new secret once.
    let patched = admin!(
        "PATCH",
        &format!("/v1/webhooks/{id}"),
        Some(json!({"description": "to billing", "rotate_secret": true})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["description"], "to billing");
    assert_eq!(patched.body["event_types"], json!(["OpportunityWon"]));
    let rotated = patched.body["secret"].as_str().expect("new secret");
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    let replayed = admin!("POST", &format!("/v1/webhooks/{id}/replay?from=1"), None).await;
    assert_eq!(replayed.status, 202, "{}", replayed.body);
    assert_eq!(replayed.body["cursor"], 0);
    let log = admin!("GET", &format!("/v1/webhooks/{id}/deliveries"), None).await;
    assert_eq!(log.body["items"], json!([]), "{}", log.body);

    // Deleted: gone for its tenant too.
    let deleted = admin!("DELETE", &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body, json!({"id": id, "deleted": true}));
    admin!("GET", &format!("/v1/webhooks/{id}"), None)
        .await
        .problem(404, &[&id]);
    admin!("DELETE", &format!("/v1/webhooks/{id}"), None)
        .await
        .problem(404, &[&id]);
}
