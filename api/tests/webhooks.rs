//! Webhooks end to end (issue 20): the real `crm-api serve` (port 0,
//! `--webhooks-allow-loopback`) delivering over real HTTP to a receiver on loopback that
//! checks every signature with its own HMAC (`crm_tests::webhook_receiver`). SQLite, and
//! PostgreSQL for what touches the worker's storage (the crash test, retries and disabling).
//!
//! - three SIGKILLs during 10,000 events: every matching event arrives, in order per
//!   subscription, duplicates carrying their first delivery's `webhook-id`;
//! - an endpoint answering 500 is retried on the schedule (a compressed clock), disabled with
//!   its reason, and resumes at the failed event once re-enabled, while another subscription
//!   delivers everything; replay resends with the same ids;
//! - an endpoint that never answers does not delay another subscription;
//! - personal data: redacted without `personal_data`, `[erased]` when the customer was erased
//!   while its event waited, recorded in the access log when delivered in plain text; rule
//!   calls queued through `enqueue_call`;
//! - SSRF: without the flag, `127.0.0.1` and `localhost` are refused at delivery, naming the
//!   address.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crm_tests::served::Served;
use crm_tests::webhook_receiver::{Mode, Receiver};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

/// Where the server keeps its log: a SQLite file in the data dir, or a PostgreSQL database.
struct Backend {
    store: Option<String>,
    _database: Option<crm_tests::postgres::TestDatabase>,
}

impl Backend {
    fn sqlite() -> Backend {
        Backend {
            store: None,
            _database: None,
        }
    }

    async fn postgres(name: &str) -> Option<Backend> {
        let database = crm_tests::postgres::TestDatabase::create(name).await?;
        Some(Backend {
            store: Some(database.url().to_owned()),
            _database: Some(database),
        })
    }
}

fn serve(dir: &Path, backend: &Backend, extra: &[&str]) -> Served {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env_remove("CRM_STORE")
        .env_remove("CRM_MASTER_KEY_FILE")
        .env("CRM_RATE_LIMIT", "0");
    if let Some(store) = &backend.store {
        command.args(["--store", store]);
    }
    let key = dir.join("admin.key");
    Served::start(&mut command, move || key.exists())
}

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(served: &Served, dir: &Path) -> Api {
        Api {
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            base: format!("http://{}", served.address),
            key: std::fs::read_to_string(dir.join("admin.key"))
                .expect("admin key")
                .trim()
                .to_owned(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a subscription to the receiver's endpoint `name`; gives the receiver its
    /// secret; returns its id.
    async fn subscribe(&self, receiver: &Receiver, name: &str, mut body: Value) -> String {
        body["url"] = json!(receiver.url(name));
        let (status, answer) = self.call("POST", "/v1/webhooks", Some(body)).await;
        assert_eq!(status, 201, "{answer}");
        receiver.set_secret(name, answer["secret"].as_str().expect("secret"));
        answer["id"].as_str().expect("id").to_owned()
    }

    /// Appends events; returns each one's position.
    async fn append(&self, events: Vec<Value>) -> Vec<u64> {
        let (status, answer) = self
            .call("POST", "/v1/events", Some(json!({"events": events})))
            .await;
        assert_eq!(status, 201, "{answer}");
        answer["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["position"].as_u64().expect("position"))
            .collect()
    }

    async fn deliveries(&self, id: &str) -> Vec<Value> {
        let (status, answer) = self
            .call(
                "GET",
                &format!("/v1/webhooks/{id}/deliveries?limit=1000"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["items"].as_array().cloned().unwrap_or_default()
    }
}

fn customer(i: usize, kind: &str) -> Value {
    json!({"type": "CustomerRegistered",
           "data": {"customer_id": format!("c-{i}"), "kind": kind, "name": format!("Name {i}")}})
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one subscription's deliveries against the positions it should get: every one, the
/// first delivery of each in log order (nothing skipped or overtaken), every repeat carrying
/// its first delivery's id. Returns the repeats (position, id).
fn check_order(name: &str, receiver: &Receiver, expected: &[u64]) -> Vec<(u64, String)> {
    let mut first: HashMap<u64, String> = HashMap::new();
    let mut repeats = Vec::new();
    let mut next = 0;
    for delivery in receiver.deliveries(name) {
        let position = delivery.position().expect("an event");
        match first.get(&position) {
            Some(id) => {
                assert_eq!(
                    &delivery.id, id,
                    "{name}: a repeat of {position} with another id"
                );
                repeats.push((position, delivery.id.clone()));
            }
            None => {
                assert_eq!(
                    Some(&position),
                    expected.get(next),
                    "{name}: delivery {next} out of order"
                );
                next += 1;
                first.insert(position, delivery.id.clone());
            }
        }
    }
    assert_eq!(next, expected.len(), "{name}: every matching event arrives");
    repeats
}

async fn deliveries_survive_three_sigkills(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start().await;
    let mut served = serve(dir.path(), &backend, &["--webhooks-allow-loopback"]);
    let api = Api::new(&served, dir.path());
    let people = api
        .subscribe(
            &receiver,
            "people",
            json!({"event_types": ["CustomerRegistered"],
                   "conditions": [{"field": "data.kind", "op": "eq", "value": "person"},
                                  {"field": "data.customer_id", "op": "gte", "value": "c-5"}]}),
        )
        .await;
    let companies = api
        .subscribe(
            &receiver,
            "companies",
            json!({"conditions": [{"field": "data.kind", "op": "eq", "value": "company"}]}),
        )
        .await;
    let (mut want_people, mut want_companies) = (Vec::new(), Vec::new());
    let mut api = api;
    for batch in 0..20 {
        let kinds: Vec<&str> = (0..500)
            .map(|i| {
                if (batch * 500 + i) % 3 == 0 {
                    "company"
                } else {
                    "person"
                }
            })
            .collect();
        let events = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| customer(batch * 500 + i, kind))
            .collect();
        let positions = api.append(events).await;
        for (i, (position, kind)) in positions.into_iter().zip(kinds).enumerate() {
            // Customer ids compare as text: "c-5…" to "c-9…" are at or above "c-5".
            let id = format!("c-{}", batch * 500 + i);
            match kind {
                "person" if id.as_str() >= "c-5" => want_people.push(position),
                "person" => {}
                _ => want_companies.push(position),
            }
        }
        if [4, 9, 14].contains(&batch) {
            // Deliveries are under way: kill the server mid-stream, start it again.
            served.kill();
            served = serve(dir.path(), &backend, &["--webhooks-allow-loopback"]);
            api = Api::new(&served, dir.path());
        }
    }
    let done = || {
        let got: HashSet<u64> = receiver
            .deliveries("people")
            .iter()
            .chain(receiver.deliveries("companies").iter())
            .filter_map(|d| d.position())
            .collect();
        want_people
            .iter()
            .chain(&want_companies)
            .all(|p| got.contains(p))
    };
    wait_for("every delivery", Duration::from_secs(90), done).await;
    assert_eq!(receiver.bad_signatures(), 0);
    let repeats_people = check_order("people", &receiver, &want_people);
    let repeats_companies = check_order("companies", &receiver, &want_companies);
    // Only a message in flight at a kill is sent again: at most one per kill.
    assert!(repeats_people.len() <= 3, "{repeats_people:?}");
    assert!(repeats_companies.len() <= 3, "{repeats_companies:?}");
    println!(
        "10,000 events, 3 SIGKILLs: {} people (ids from c-5) and {} companies delivered; repeats: people \
         {repeats_people:?}, companies {repeats_companies:?}",
        want_people.len(),
        want_companies.len()
    );
    // The delivery log agrees: each delivered once or more, none pending.
    for id in [&people, &companies] {
        let lines = api.deliveries(id).await;
        assert!(
            lines.iter().all(|l| l["status"] == "delivered"),
            "{lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_deliveries_survive_three_sigkills() {
    deliveries_survive_three_sigkills(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_deliveries_survive_three_sigkills() {
    let Some(backend) = Backend::postgres("webhooks_sigkill").await else {
        return;
    };
    deliveries_survive_three_sigkills(backend).await;
}

async fn failing_endpoints_are_retried_disabled_and_resumed(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start().await;
    // 3 days become 2.6 s.
    let served = serve(
        dir.path(),
        &backend,
        &[
            "--webhooks-allow-loopback",
            "--webhooks-time-divisor",
            "100000",
        ],
    );
    let api = Api::new(&served, dir.path());
    receiver.set_mode("failing", Mode::Fail);
    let failing = api
        .subscribe(
            &receiver,
            "failing",
            json!({"event_types": ["CustomerRegistered"]}),
        )
        .await;
    let healthy = api
        .subscribe(
            &receiver,
            "healthy",
            json!({"event_types": ["CustomerRegistered"]}),
        )
        .await;
    let positions = api
        .append((0..20).map(|i| customer(i, "person")).collect())
        .await;
    wait_for("the healthy endpoint", Duration::from_secs(20), || {
        receiver.deliveries("healthy").len() >= 20
    })
    .await;
    wait_for(
        "the failing subscription disabled",
        Duration::from_secs(30),
        || receiver.deliveries("failing").len() >= 14,
    )
    .await;
    let mut subscription = Value::Null;
    for _ in 0..100 {
        subscription = api
            .call("GET", &format!("/v1/webhooks/{failing}"), None)
            .await
            .1;
        if subscription["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(subscription["status"], "disabled", "{subscription}");
    let reason = subscription["disabled_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("14 attempts") && reason.contains("HTTP 500"),
        "{reason}"
    );
    assert!(subscription["disabled_at"].is_string());
    // 14 attempts, all at the first event, with one id; the others waited behind it.
    let attempts = receiver.deliveries("failing");
    assert_eq!(attempts.len(), 14);
    assert!(attempts.iter().all(|d| d.position() == Some(positions[0])));
    assert!(attempts.iter().all(|d| d.id == attempts[0].id));
    let log = api.deliveries(&failing).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "failed");
    assert_eq!(log[0]["attempts"], 14);
    assert_eq!(log[0]["last_status"], 500);
    assert_eq!(log[0]["message_id"], attempts[0].id.as_str());
    // Meanwhile the other subscription delivered everything, in order.
    check_order("healthy", &receiver, &positions);
    // Re-enabled, it resumes at the failed event.
    receiver.set_mode("failing", Mode::Ok);
    let (status, answer) = api
        .call(
            "PATCH",
            &format!("/v1/webhooks/{failing}"),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "active");
    assert!(answer.get("disabled_reason").is_none(), "{answer}");
    wait_for("the re-enabled endpoint", Duration::from_secs(20), || {
        receiver.deliveries("failing").len() >= 14 + 20
    })
    .await;
    let resumed: Vec<_> = receiver.deliveries("failing").split_off(14);
    assert_eq!(
        resumed
            .iter()
            .filter_map(|d| d.position())
            .collect::<Vec<_>>(),
        positions,
        "from the failed event on, in order"
    );
    assert_eq!(resumed[0].id, attempts[0].id);
    // Replay from the 11th event: the same ids again.
    let from = positions[10];
    let (status, answer) = api
        .call(
            "POST",
            &format!("/v1/webhooks/{healthy}/replay?from={from}"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    wait_for("the replay", Duration::from_secs(20), || {
        receiver.deliveries("healthy").len() >= 30
    })
    .await;
    let healthy_got = receiver.deliveries("healthy");
    for (again, first) in healthy_got[20..].iter().zip(&healthy_got[10..20]) {
        assert_eq!(again.position(), first.position());
        assert_eq!(again.id, first.id, "a replayed message keeps its id");
    }
    let (status, answer) = api
        .call(
            "POST",
            &format!("/v1/webhooks/{healthy}/replay?from=0"),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (422, Some("from")),
        "{answer}"
    );
    assert_eq!(receiver.bad_signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_failing_endpoints_are_retried_disabled_and_resumed() {
    failing_endpoints_are_retried_disabled_and_resumed(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_failing_endpoints_are_retried_disabled_and_resumed() {
    let Some(backend) = Backend::postgres("webhooks_failing").await else {
        return;
    };
    failing_endpoints_are_retried_disabled_and_resumed(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_endpoint_does_not_delay_another_subscription() {
    let dir = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start().await;
    let served = serve(
        dir.path(),
        &Backend::sqlite(),
        &["--webhooks-allow-loopback", "--webhooks-timeout-ms", "5000"],
    );
    let api = Api::new(&served, dir.path());
    receiver.set_mode("hanging", Mode::Hang);
    api.subscribe(&receiver, "hanging", json!({})).await;
    api.subscribe(&receiver, "prompt", json!({})).await;
    for round in 0..5 {
        let sent = Instant::now();
        let positions = api.append(vec![customer(round, "person")]).await;
        wait_for("the prompt endpoint", Duration::from_secs(4), || {
            receiver
                .deliveries("prompt")
                .iter()
                .any(|d| d.position() == Some(positions[0]))
        })
        .await;
        let took = receiver
            .deliveries("prompt")
            .last()
            .map(|d| d.at.duration_since(sent))
            .unwrap_or_default();
        assert!(took < Duration::from_secs(3), "round {round}: {took:?}");
    }
    // The hanging endpoint got the first event only, still waiting for its answer.
    let hanging = receiver.deliveries("hanging");
    assert_eq!(hanging.len(), 1, "{hanging:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn personal_data_is_redacted_or_read_at_sending_and_rule_calls_are_delivered() {
    let dir = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start().await;
    // Retries come within ~4 s; the schedule lasts 26 s.
    let served = serve(
        dir.path(),
        &Backend::sqlite(),
        &[
            "--webhooks-allow-loopback",
            "--webhooks-time-divisor",
            "10000",
        ],
    );
    let api = Api::new(&served, dir.path());
    receiver.set_mode("plain", Mode::Fail);
    let plain = api
        .subscribe(
            &receiver,
            "plain",
            json!({"event_types": ["CustomerRegistered"], "personal_data": true}),
        )
        .await;
    api.subscribe(
        &receiver,
        "redacted",
        json!({"event_types": ["CustomerRegistered"]}),
    )
    .await;
    let positions = api
        .append(vec![
            json!({"type": "CustomerRegistered", "data": {"customer_id": "c-ada", "kind": "person",
                   "name": "Ada Lovelace", "email": "ada@example.com"}}),
            json!({"type": "CustomerRegistered", "data": {"customer_id": "c-grace", "kind": "person",
                   "name": "Grace Hopper"}}),
        ])
        .await;
    wait_for("the redacted endpoint", Duration::from_secs(10), || {
        receiver.deliveries("redacted").len() >= 2
    })
    .await;
    for delivery in receiver.deliveries("redacted") {
        let data = &delivery.body["data"]["data"];
        assert_eq!(data["name"], "[redacted]", "{}", delivery.body);
        assert_ne!(data["customer_id"], "[redacted]");
        assert_eq!(delivery.body["type"], "CustomerRegistered");
        assert_eq!(delivery.body["data"]["tenant"], "default");
    }
    // Ada's event waits behind failures while she is erased.
    wait_for("a failed attempt", Duration::from_secs(10), || {
        !receiver.deliveries("plain").is_empty()
    })
    .await;
    let (status, answer) = api.call("POST", "/v1/customers/c-ada/erase", None).await;
    assert!(status < 300, "{status} {answer}");
    receiver.set_mode("plain", Mode::Ok);
    wait_for("the plain endpoint", Duration::from_secs(20), || {
        receiver
            .deliveries("plain")
            .iter()
            .filter(|d| d.mode == Mode::Ok)
            .count()
            >= 2
    })
    .await;
    let delivered: Vec<_> = receiver
        .deliveries("plain")
        .into_iter()
        .filter(|d| d.mode == Mode::Ok)
        .collect();
    assert_eq!(delivered[0].position(), Some(positions[0]));
    assert_eq!(delivered[0].body["data"]["data"]["name"], "[erased]");
    assert_eq!(delivered[0].body["data"]["data"]["email"], "[erased]");
    let failed_bodies: String = receiver
        .deliveries("plain")
        .iter()
        .filter(|d| d.mode == Mode::Fail)
        .map(|d| d.body.to_string())
        .collect();
    assert!(
        failed_bodies.contains("Ada Lovelace"),
        "sent in plain before the erasure"
    );
    assert_eq!(delivered[1].body["data"]["data"]["name"], "Grace Hopper");
    // The plain delivery is on record in the access log, under the subscription's id.
    let (status, access) = api
        .call("GET", "/v1/audit/access?subject=customer:c-grace", None)
        .await;
    assert_eq!(status, 200, "{access}");
    assert!(
        access["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|row| row["key_id"] == plain.as_str()),
        "{access}"
    );

    // A rule call queued by the workflow worker's transaction: delivered once, signed, with
    // its deterministic webhook-id and `source: rule`.
    let url = crm_core::store::StoreUrl::default_in(dir.path());
    let db = crm_projections::ReadDb::open(&url).await.expect("db");
    let payload = json!({"rule": "notify", "opportunity_id": "o-1"});
    for expected in [true, false] {
        let mut tx = db.begin().await.expect("tx");
        let call = crm_automation::webhooks::RuleCall {
            tenant: "default",
            webhook_id: &plain,
            call_id: "rule-1:v1:42",
            payload: &payload,
            trigger_position: Some(positions[1]),
            rule_id: "rule-1",
            rule_version: 1,
        };
        let queued = crm_automation::webhooks::enqueue_call(&mut tx, &call)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
        assert_eq!(
            queued, expected,
            "a second insert of the same call id is a no-op"
        );
    }
    let mut tx = db.begin().await.expect("tx");
    let other_tenant = crm_automation::webhooks::RuleCall {
        tenant: "globex",
        webhook_id: &plain,
        call_id: "x",
        payload: &payload,
        trigger_position: None,
        rule_id: "rule-1",
        rule_version: 1,
    };
    assert!(matches!(
        crm_automation::webhooks::enqueue_call(&mut tx, &other_tenant).await,
        Err(crm_automation::webhooks::WebhookError::NotFound(_))
    ));
    drop(tx);
    wait_for("the rule call", Duration::from_secs(10), || {
        receiver
            .deliveries("plain")
            .iter()
            .any(|d| d.body["type"] == "workflow.call")
    })
    .await;
    let call = receiver
        .deliveries("plain")
        .into_iter()
        .find(|d| d.body["type"] == "workflow.call")
        .expect("call");
    assert_eq!(call.body["data"], payload);
    assert_eq!(
        call.id,
        crm_automation::webhooks::signing::call_message_id(&plain, "rule-1:v1:42")
    );
    let log = api.deliveries(&plain).await;
    assert!(
        log.iter().any(|l| l["source"] == "rule"
            && l["event_id"] == "rule-1:v1:42"
            && l["status"] == "delivered"),
        "{log:?}"
    );
    db.close().await;
    assert_eq!(receiver.bad_signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_flag_loopback_addresses_are_refused_at_delivery() {
    let dir = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start().await;
    let served = serve(dir.path(), &Backend::sqlite(), &[]);
    let api = Api::new(&served, dir.path());
    let literal = api.subscribe(&receiver, "literal", json!({})).await;
    let port = receiver.base.rsplit(':').next().expect("port").to_owned();
    let (status, answer) = api
        .call(
            "POST",
            "/v1/webhooks",
            Some(json!({"url": format!("http://localhost:{port}/named")})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let named = answer["id"].as_str().expect("id").to_owned();
    receiver.set_secret("named", answer["secret"].as_str().expect("secret"));
    api.append(vec![customer(1, "person")]).await;
    let mut errors = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while errors.len() < 2 && Instant::now() < deadline {
        for id in [&literal, &named] {
            if let Some(line) = api.deliveries(id).await.first() {
                errors.insert(
                    id.clone(),
                    line["last_error"].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let literal_error = errors.get(&literal).expect("an attempt at the literal");
    assert!(
        literal_error.contains("refused address 127.0.0.1") && literal_error.contains("loopback"),
        "{literal_error}"
    );
    let named_error = errors.get(&named).expect("an attempt at localhost");
    assert!(
        named_error.contains("refused address") && named_error.contains("localhost"),
        "{named_error}"
    );
    assert!(receiver.deliveries("literal").is_empty());
    assert!(receiver.deliveries("named").is_empty());
}
