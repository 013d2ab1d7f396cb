//! The auditors' subcommands through the real binary: `verify` names a row altered with plain
//! SQL, `timeline` lists a customer's events with their chains' status, `stats` counts what
//! the store holds.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crm_core::privacy::{KeySource, open_private};
use crm_core::store::{EventStore, Scope, StoreUrl};
use crm_tests::crm_data::{append_all_sealed, history};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

/// Runs `crm-replay ARGS --store sqlite://PATH`: (exit code, stdout, stderr).
fn replay(store: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--store")
        .arg(format!("sqlite://{}", store.display()))
        .env("CRM_LOG", "warn")
        .output()
        .expect("run crm-replay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A store with a generated history, written through the sealing store (its master key in
/// `master.key` beside it, where the binary finds it); returns its path and the events as
/// read with the key.
async fn seeded(dir: &Path) -> (std::path::PathBuf, Vec<crm_core::envelope::RecordedEvent>) {
    let path = dir.join("events.db");
    let url = StoreUrl::Sqlite {
        path: path.clone(),
        durability: crm_core::store::sqlite::Durability::Normal,
    };
    let store = open_private(&url, &KeySource::default(), true)
        .await
        .expect("store")
        .store;
    append_all_sealed(&store, &history(7, 40, 600)).await;
    let events = store
        .read_all(&Scope::AllTenants, 0, 100_000)
        .await
        .expect("read");
    (path, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_row_altered_with_plain_sql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, events) = seeded(dir.path()).await;
    let (code, stdout, stderr) = replay(&path, &["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");

    // Someone with the file drops the guard and edits an event.
    let victim = &events[events.len() / 2];
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("connect");
    sqlx::raw_sql("DROP TRIGGER crm_events_append_only_update")
        .execute(&mut conn)
        .await
        .expect("drop the guard");
    sqlx::query("UPDATE crm_events SET data = ? WHERE position = ?")
        .bind(r#"{"customer_id":"someone-else"}"#)
        .bind(victim.position as i64)
        .execute(&mut conn)
        .await
        .expect("tamper");
    drop(conn);

    let (code, stdout, _) = replay(&path, &["verify"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("BROKEN: Changed"), "{stdout}");
    assert!(
        stdout.contains(&format!("(position {})", victim.position)),
        "{stdout}"
    );
    assert!(stdout.contains(victim.stream_id.as_str()), "{stdout}");
    let (code, json, _) = replay(&path, &["verify", "--json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["first_failure"]["position"], victim.position);
    assert_eq!(
        report["first_failure"]["event_id"],
        victim.event_id.to_string()
    );
    // Another stream of the same tenant still verifies on its own.
    let other = events
        .iter()
        .find(|e| e.tenant == victim.tenant && e.stream_id != victim.stream_id)
        .expect("another stream");
    let (code, stdout, _) = replay(
        &path,
        &[
            "verify",
            "--tenant",
            other.tenant.as_str(),
            "--stream",
            other.stream_id.as_str(),
        ],
    );
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_lists_a_customers_events_with_their_chains() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, events) = seeded(dir.path()).await;
    // The customer with the most events of their own stream.
    let stream = events
        .iter()
        .filter(|e| e.stream_id.category() == "customer")
        .map(|e| (e.tenant.clone(), e.stream_id.clone()))
        .max_by_key(|(t, s)| {
            events
                .iter()
                .filter(|e| &e.tenant == t && &e.stream_id == s)
                .count()
        })
        .expect("a customer");
    let (tenant, stream) = stream;
    let customer = stream.entity_id().to_owned();
    let (code, stdout, stderr) = replay(
        &path,
        &["timeline", &customer, "--tenant", tenant.as_str(), "--json"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let timeline: Value = serde_json::from_str(&stdout).expect("json");
    let lines = timeline["events"].as_array().expect("events");
    // Every event of the customer's own stream is there, in log order, with its data.
    let own: Vec<u64> = events
        .iter()
        .filter(|e| e.tenant == tenant && e.stream_id == stream)
        .map(|e| e.position)
        .collect();
    let listed: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["position"].as_u64())
        .collect();
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "log order");
    for position in &own {
        assert!(listed.contains(position), "position {position} missing");
    }
    for line in lines {
        let source = events
            .iter()
            .find(|e| Some(e.position) == line["position"].as_u64())
            .expect("a stored event");
        assert_eq!(line["event_type"], source.event_type.as_str());
        assert_eq!(line["stream_id"], source.stream_id.as_str());
        assert_eq!(line["chain_intact"], true);
        if timeline["erased"] == false {
            let data: Value = serde_json::from_str(source.data.get()).expect("data");
            assert_eq!(line["data"], data);
        }
    }
    let streams: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["stream_id"].as_str())
        .collect();
    assert_eq!(
        timeline["streams"].as_array().map(Vec::len),
        Some(streams.len())
    );

    // As of the business time of its third event: only what had happened by then.
    let third = lines[2]["occurred_at"].as_str().expect("time").to_owned();
    let (code, stdout, _) = replay(
        &path,
        &[
            "timeline",
            &customer,
            "--tenant",
            tenant.as_str(),
            "--as-of",
            &third,
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let cut: Value = serde_json::from_str(&stdout).expect("json");
    assert!(
        cut["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|l| l["occurred_at"].as_str() <= Some(third.as_str()))
    );

    // Text output, and unknown customers and bad input are refused with a message.
    let (code, text, _) = replay(&path, &["timeline", &customer, "--tenant", tenant.as_str()]);
    assert_eq!(code, 0);
    assert!(text.contains("chain ") && text.contains("intact"), "{text}");
    let (code, _, stderr) = replay(
        &path,
        &["timeline", "nobody-here", "--tenant", tenant.as_str()],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("no customer nobody-here"), "{stderr}");
    let (code, _, stderr) = replay(&path, &["timeline", &customer, "--as-of", "yesterday"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--as-of"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_what_the_store_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, events) = seeded(dir.path()).await;
    let (code, stdout, stderr) = replay(&path, &["stats", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let stats: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(stats["events"], events.len());
    assert_eq!(stats["head_position"], events.len());
    let streams: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| (e.tenant.to_string(), e.stream_id.to_string()))
        .collect();
    assert_eq!(stats["streams"], streams.len());
    let types: BTreeSet<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(stats["types"].as_array().map(Vec::len), Some(types.len()));
    assert!(stats["store_bytes"].as_u64() > Some(0));
    let tenant = events[0].tenant.as_str();
    let (code, stdout, _) = replay(&path, &["stats", "--tenant", tenant, "--json"]);
    assert_eq!(code, 0);
    let one: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        one["events"],
        events
            .iter()
            .filter(|e| e.tenant.as_str() == tenant)
            .count()
    );
    let (code, text, _) = replay(&path, &["stats"]);
    assert_eq!(code, 0);
    assert!(text.contains("event types:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_masks_the_personal_fields_of_an_erased_customer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, events) = seeded(dir.path()).await;
    let erased = events
        .iter()
        .find(|e| e.event_type == "CustomerErased")
        .expect("the history erases someone");
    let customer = erased.stream_id.entity_id().to_owned();
    let (code, stdout, stderr) = replay(
        &path,
        &[
            "timeline",
            &customer,
            "--tenant",
            erased.tenant.as_str(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let timeline: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(timeline["erased"], true);
    let registered = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|l| l["event_type"] == "CustomerRegistered")
        .expect("registered");
    assert_eq!(registered["data"]["name"], "[erased]");
    assert_eq!(registered["data"]["customer_id"], customer.as_str());
    // The log itself still holds the event unchanged, and its chain verifies.
    assert_eq!(registered["chain_intact"], true);
}
