//! Issue 20, workflow rules as the real binaries run them: rules set through `crm-api serve`
//! act once per trigger while the server is SIGKILLed twice mid-stream and restarted (a
//! schedule across the restarts too); then the log is exported and imported into a fresh
//! store, and a server there, whose worker starts from nothing, appends nothing: every
//! action it would take is already in the log (the same ids), every schedule already fired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crm_tests::served::Served;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn api_binary() -> PathBuf {
    let api = Path::new(BIN).with_file_name("crm-api");
    assert!(
        api.exists(),
        "{} is missing: `cargo build -p crm-api` first",
        api.display()
    );
    api
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A data directory and the server on it.
struct Node {
    data: PathBuf,
}

impl Node {
    fn store(&self) -> String {
        format!("sqlite://{}", self.data.join("events.db").display())
    }

    fn serve(&self) -> Served {
        let mut serve = Command::new(api_binary());
        serve
            .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
            .env_remove("CRM_STORE")
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data);
        let key = self.data.join("admin.key");
        Served::start(&mut serve, move || key.exists())
    }

    fn admin(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.key"))
            .expect("admin.key")
            .trim()
            .to_owned()
    }

    fn replay(&self, args: &[&str]) -> String {
        let output = Command::new(BIN)
            .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
            .env_remove("CRM_STORE")
            .env_remove("CRM_LOG")
            .arg("--store")
            .arg(self.store())
            .args(args)
            .output()
            .expect("run crm-replay");
        assert!(
            output.status.success(),
            "crm-replay {args:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Every event of the log, exported: (type, id, metadata).
    fn events(&self) -> Vec<(String, String, Value)> {
        self.replay(&["export"])
            .lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).expect("an exported line");
                (
                    event["event_type"].as_str().expect("type").to_owned(),
                    event["event_id"].as_str().expect("id").to_owned(),
                    event["metadata"].clone(),
                )
            })
            .collect()
    }
}

/// `method path` with `key` through curl: (status, body).
fn call(
    served: &Served,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "-X", method, "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .args(["-H", "Content-Type: application/json"]);
    if let Some(body) = body {
        command.args(["--data-binary", &body.to_string()]);
    }
    let output = command
        .arg(format!("http://{}{path}", served.address))
        .output()
        .expect("curl");
    let out = text(&output.stdout);
    let (body, status) = out.rsplit_once('\n').expect("status line");
    (
        status.trim().parse().expect("status"),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn rules() -> [(&'static str, Value); 2] {
    [
        (
            "follow-up",
            json!({"name": "Follow up on negotiation",
                "trigger": {"event": "OpportunityStageChanged",
                    "conditions": [{"field": "data.stage", "op": "eq", "value": "Negotiation"}]},
                "actions": [{"append": {"type": "TaskCreated", "data": {
                    "task_id": "follow-{{data.opportunity_id}}", "subject_type": "opportunity",
                    "subject_id": "{{data.opportunity_id}}",
                    "owner": {"round_robin": ["ana", "ben", "chi"]},
                    "due_at": "{{at+2d}}", "title": "Call back"}}}]}),
        ),
        (
            "win-back",
            json!({"name": "Win back",
                "trigger": {"schedule": "customer_without_order", "days": 30},
                "actions": [{"append": {"type": "TaskCreated", "data": {
                    "task_id": "win-back-{{data.customer_id}}", "subject_type": "customer",
                    "subject_id": "{{data.customer_id}}", "owner": "u-7",
                    "due_at": "{{at+7d}}", "title": "Win back"}}}]}),
        ),
    ]
}

fn batch(from: usize, count: usize) -> Value {
    let ordered = (chrono::Utc::now() - chrono::Duration::days(40))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut events = Vec::new();
    for i in from..from + count {
        let (c, o) = (format!("c-{i}"), format!("o-{i}"));
        events.push(
            json!({"type": "CustomerRegistered", "data": {"customer_id": c,
            "kind": "person", "name": format!("Customer {i}")}}),
        );
        events.push(json!({"type": "OrderPlaced", "occurred_at": ordered, "data": {
            "customer_id": c, "order_id": format!("ord-{i}"), "amount": "10.00", "currency": "EUR"}}));
        events.push(
            json!({"type": "OpportunityOpened", "data": {"opportunity_id": o,
            "customer_id": c, "name": "Deal", "amount": "100.00", "currency": "EUR",
            "stage": "Prospecting", "close_date": "2027-06-30"}}),
        );
        events.push(
            json!({"type": "OpportunityStageChanged", "data": {"opportunity_id": o,
            "stage": "Negotiation"}}),
        );
    }
    json!({ "events": events })
}

/// The tasks the rules appended, by task id → how many times.
fn tasks(events: &[(String, String, Value)]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for (event_type, id, metadata) in events {
        if event_type == "TaskCreated" {
            assert!(metadata["workflow"].is_object(), "{metadata}");
            *seen.entry(id.clone()).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn rules_act_once_across_kills_restarts_and_a_replay_into_a_fresh_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Node {
        data: dir.path().join("first"),
    };
    let mut served = first.serve();
    let admin = first.admin();
    for (id, rule) in rules() {
        let (status, body) = call(
            &served,
            &admin,
            "PUT",
            &format!("/v1/workflows/{id}"),
            Some(&rule),
        );
        assert_eq!(status, 201, "{body}");
    }
    const CUSTOMERS: usize = 150;
    const PER_BATCH: usize = 15;
    let ingest = admin.clone();
    for round in 0..CUSTOMERS / PER_BATCH {
        let (status, body) = call(
            &served,
            &ingest,
            "POST",
            "/v1/events",
            Some(&batch(round * PER_BATCH, PER_BATCH)),
        );
        assert_eq!(status, 201, "{body}");
        if round == 3 || round == 6 {
            // Killed while the worker acts on what was just appended; restarted on the store.
            served.kill();
            served = first.serve();
        }
    }
    // Every negotiation gets its follow-up, every customer (last order 40 days ago) its
    // win-back, once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let expected = 2 * CUSTOMERS;
    loop {
        let seen = tasks(&first.events());
        if seen.len() >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} tasks after 90 s:\n{}",
            seen.len(),
            served.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // One more restart: the schedule fired before it does not fire again.
    drop(served);
    let served = first.serve();
    std::thread::sleep(Duration::from_millis(2_500));
    drop(served);
    let events = first.events();
    let seen = tasks(&events);
    assert_eq!(seen.len(), expected);
    assert!(seen.values().all(|n| *n == 1), "each task id once");
    let task_ids: Vec<String> = events
        .iter()
        .filter(|e| e.0 == "TaskCreated")
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(task_ids.len(), expected, "no action appended twice");

    // Replayed into a fresh store: the worker there starts from position 0 and acts on every
    // trigger again, appending nothing new.
    let export = dir.path().join("all.jsonl");
    let keys = dir.path().join("keys.json");
    first.replay(&[
        "export",
        "--out",
        export.to_str().expect("utf-8"),
        "--keys-out",
        keys.to_str().expect("utf-8"),
    ]);
    let second = Node {
        data: dir.path().join("second"),
    };
    std::fs::create_dir_all(&second.data).expect("data dir");
    second.replay(&[
        "import",
        export.to_str().expect("utf-8"),
        "--keys-in",
        keys.to_str().expect("utf-8"),
    ]);
    let head = events.len() as u64;
    let served = second.serve();
    let admin = second.admin();
    let (status, body) = call(
        &served,
        &admin,
        "GET",
        &format!("/v1/workflows?min_position={head}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let fired: u64 = body["items"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["fired"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(fired, CUSTOMERS as u64, "every negotiation acted on again");
    std::thread::sleep(Duration::from_millis(2_500));
    let (_, runs) = call(
        &served,
        &admin,
        "GET",
        "/v1/workflows/follow-up/runs?limit=500",
        None,
    );
    let outcomes: Vec<&str> = runs["items"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert_eq!(outcomes.len(), CUSTOMERS);
    assert!(outcomes.iter().all(|o| *o == "duplicate"), "{outcomes:?}");
    let (_, runs) = call(&served, &admin, "GET", "/v1/workflows/win-back/runs", None);
    assert_eq!(
        runs["items"],
        json!([]),
        "no schedule fires again: they are in the log"
    );
    drop(served);
    assert_eq!(
        second.events().len() as u64,
        head,
        "nothing new was appended"
    );
}
