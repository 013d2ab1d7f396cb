//! `crm-replay import` of API-format lines takes the API's decision (`crm_core::command`):
//! the aggregates' rules hold (a second registration, a refund of an unknown order are
//! refused, the line named, nothing of the batch written), and an event id sent again is a
//! duplicate with the same content, refused with other content. On SQLite and PostgreSQL.

use std::path::Path;
use std::process::{Command, Output};

use crm_tests::postgres::TestDatabase;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

/// Runs `crm-replay --store <url> --json import <file> --tenant acme`.
fn import(url: &str, file: &Path) -> Output {
    Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env_remove("CRM_STORE")
        .env_remove("CRM_LOG")
        .arg("--store")
        .arg(url)
        .args(["--json", "import"])
        .arg(file)
        .args(["--tenant", "acme"])
        .output()
        .expect("run crm-replay")
}

/// Writes `lines` as a JSON Lines file in `dir` and imports it: exit code, summary, stderr.
fn run(url: &str, dir: &Path, name: &str, lines: &[Value]) -> (i32, Value, String) {
    let file = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).expect("write lines");
    let output = import(url, &file);
    let summary = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), summary, stderr)
}

fn registered(id: &str, customer: &str, name: &str) -> Value {
    json!({"id": id, "type": "CustomerRegistered",
           "data": {"customer_id": customer, "kind": "person", "name": name}})
}

fn order(id: &str, customer: &str, order: &str) -> Value {
    json!({"id": id, "type": "OrderPlaced",
           "data": {"customer_id": customer, "order_id": order, "amount": "10.00",
                    "currency": "EUR"}})
}

const REGISTERED: &str = "0195d7a4-0000-7000-8000-000000000001";
const ORDERED: &str = "0195d7a4-0000-7000-8000-000000000002";

async fn the_api_rules_hold(url: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let history = [
        registered(REGISTERED, "c-1", "Ada Lovelace"),
        order(ORDERED, "c-1", "o-1"),
    ];
    let (code, summary, stderr) = run(url, dir, "history.jsonl", &history);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["new"], 2, "{summary}");

    // The same lines again: duplicates, nothing written.
    let (code, summary, stderr) = run(url, dir, "history.jsonl", &history);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["duplicates"], 2, "{summary}");
    assert_eq!(summary["new"], 0, "{summary}");

    // A second registration of c-1 (a new id): refused as the API refuses it.
    let (code, summary, stderr) = run(
        url,
        dir,
        "twice.jsonl",
        &[registered(
            "0195d7a4-0000-7000-8000-000000000003",
            "c-1",
            "Ada Again",
        )],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("line 1") && stderr.contains("already registered"),
        "{stderr}"
    );
    assert_eq!(summary["line"], 1, "{summary}");

    // A refund of an order never placed, after a valid line of the same batch: the line is
    // named and nothing of the batch is written.
    let refund = json!({"type": "OrderRefunded",
        "data": {"customer_id": "c-1", "order_id": "o-404", "amount": "1.00",
                 "currency": "EUR"}});
    let (code, summary, stderr) = run(
        url,
        dir,
        "refund.jsonl",
        &[
            order("0195d7a4-0000-7000-8000-000000000004", "c-1", "o-2"),
            refund,
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("never placed"),
        "{stderr}"
    );
    assert_eq!(summary["new"], 0, "{summary}");

    // The stored id with other content is refused (line named, no value printed).
    let (code, _, stderr) = run(
        url,
        dir,
        "other.jsonl",
        &[registered(REGISTERED, "c-1", "Somebody Else")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("line 1") && stderr.contains("other data"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Ada") && !stderr.contains("Somebody"),
        "{stderr}"
    );

    // What the refused lines would have written is absent: o-2 can be placed now, once.
    let (code, summary, stderr) = run(
        url,
        dir,
        "later.jsonl",
        &[order("0195d7a4-0000-7000-8000-000000000005", "c-1", "o-2")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["new"], 1, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_import_enforces_the_api_rules_and_exact_idempotency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    the_api_rules_hold(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_import_enforces_the_api_rules_and_exact_idempotency() {
    let Some(database) = TestDatabase::create("import_rules").await else {
        return;
    };
    the_api_rules_hold(database.url()).await;
}
