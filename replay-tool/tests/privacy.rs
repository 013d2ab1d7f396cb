//! Personal data through the real `crm-replay` binary: `erase`, a snapshot at a position
//! before the erasure, stored-form and decrypted exports, a restore with the data keys, and
//! the refusals without or with a wrong master key. Files it creates are mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crm_core::envelope::TenantId;
use crm_core::store::sqlite::Durability;
use crm_core::store::{ExpectedRevision, StoreUrl};
use crm_tests::raw_bytes::{found_in, stored_bytes};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

const SECRETS: &[&str] = &[
    "Ada Lovelace",
    "ada.lovelace@example.com",
    "+44 20 7946 0000",
    "Asked about the March invoice",
    "Cannot log in to the Engine",
];
const KEPT: &[&str] = &["Grace Hopper", "grace@example.com"];

fn url(path: &Path) -> StoreUrl {
    StoreUrl::Sqlite {
        path: path.to_path_buf(),
        durability: Durability::Normal,
    }
}

/// Runs `crm-replay --store sqlite://PATH ARGS` with `key` as `CRM_MASTER_KEY`.
fn replay_with(store: &Path, key: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("--store")
        .arg(format!("sqlite://{}", store.display()))
        .args(args)
        .env("CRM_LOG", "warn")
        .env_remove("CRM_MASTER_KEY")
        .env_remove("CRM_MASTER_KEY_FILE");
    if let Some(key) = key {
        command.env("CRM_MASTER_KEY", key);
    }
    let output = command.output().expect("run crm-replay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn replay(store: &Path, args: &[&str]) -> (i32, String, String) {
    replay_with(store, Some(crm_tests::TEST_MASTER_KEY), args)
}

#[track_caller]
fn ok(result: (i32, String, String)) -> String {
    assert_eq!(result.0, 0, "stdout: {}\nstderr: {}", result.1, result.2);
    result.1
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A store with Ada (to be erased) and Grace (kept); returns the head before the erasure.
async fn seeded(path: &Path) -> u64 {
    let store = crm_tests::open_test_store(&url(path)).await.expect("store");
    let tenant = TenantId::parse("acme").expect("tenant");
    let events = [
        (
            "CustomerRegistered",
            json!({"customer_id": "c-1", "kind": "person", "name": "Ada Lovelace",
                   "email": "ada.lovelace@example.com", "phone": "+44 20 7946 0000"}),
        ),
        (
            "InteractionLogged",
            json!({"customer_id": "c-1", "interaction_id": "i-1", "channel": "phone",
                   "direction": "inbound", "summary": "Asked about the March invoice"}),
        ),
        (
            "CaseOpened",
            json!({"case_id": "k-1", "customer_id": "c-1", "subject": "Cannot log in to the Engine",
                   "channel": "email", "priority": "high"}),
        ),
        (
            "OrderPlaced",
            json!({"customer_id": "c-1", "order_id": "o-1", "amount": "120.00", "currency": "EUR"}),
        ),
        (
            "CustomerRegistered",
            json!({"customer_id": "c-2", "kind": "person", "name": "Grace Hopper",
                   "email": "grace@example.com"}),
        ),
    ];
    for (event_type, data) in events {
        let event = crm_core::catalog::DomainEvent::parse(event_type, &data).expect("valid");
        store
            .append(
                &tenant,
                &event.stream(),
                ExpectedRevision::Any,
                vec![event.to_new_event()],
            )
            .await
            .expect("append");
    }
    store.head_position().await.expect("head")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_then_every_copy_the_tool_makes_holds_no_plaintext_of_the_subject() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    let before = seeded(&path).await;
    assert_eq!(mode(&path), 0o600, "the store file");

    // The log as stored never held plaintext; a decrypted export shows it back.
    let stored = dir.path().join("stored.jsonl");
    ok(replay(
        &path,
        &["export", "--out", stored.to_str().expect("utf-8")],
    ));
    assert!(found_in(read(&stored).as_bytes(), SECRETS).is_empty());
    assert!(found_in(read(&stored).as_bytes(), KEPT).is_empty());
    let plain = dir.path().join("plain.jsonl");
    ok(replay(
        &path,
        &[
            "export",
            "--decrypt",
            "--out",
            plain.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(mode(&plain), 0o600, "a decrypted export");
    let shown = found_in(read(&plain).as_bytes(), SECRETS);
    for secret in SECRETS {
        assert!(
            shown.iter().any(|s| s == secret),
            "{secret} not in the decrypted export"
        );
    }

    // Erase, twice (idempotent), and an unknown customer.
    let erased = ok(replay(
        &path,
        &["--json", "erase", "c-1", "--tenant", "acme"],
    ));
    let erased: serde_json::Value = serde_json::from_str(erased.trim()).expect("json");
    assert_eq!(erased["already_erased"], false, "{erased}");
    let again = ok(replay(
        &path,
        &["--json", "erase", "c-1", "--tenant", "acme"],
    ));
    assert!(again.contains("\"already_erased\":true"), "{again}");
    let (code, _, stderr) = replay(&path, &["erase", "nobody", "--tenant", "acme"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown"), "{stderr}");

    // The store's files, a snapshot at a position before the erasure, a decrypted export.
    let files = stored_bytes(&url(&path)).await;
    assert!(
        found_in(&files, SECRETS).is_empty(),
        "{:?}",
        found_in(&files, SECRETS)
    );
    let snapshot = dir.path().join("before.db");
    ok(replay(
        &path,
        &[
            "snapshot",
            "--position",
            &before.to_string(),
            "--out",
            snapshot.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(mode(&snapshot), 0o600, "a snapshot");
    let snapshot_bytes = std::fs::read(&snapshot).expect("snapshot");
    assert!(
        found_in(&snapshot_bytes, SECRETS).is_empty(),
        "the snapshot holds {:?}",
        found_in(&snapshot_bytes, SECRETS)
    );
    assert!(
        !found_in(&snapshot_bytes, KEPT).is_empty(),
        "the kept customer is there"
    );
    let after = dir.path().join("after.jsonl");
    ok(replay(
        &path,
        &[
            "export",
            "--decrypt",
            "--out",
            after.to_str().expect("utf-8"),
        ],
    ));
    let after = read(&after);
    assert!(found_in(after.as_bytes(), SECRETS).is_empty(), "{after}");
    assert!(after.contains("[erased]"), "{after}");
    assert_eq!(found_in(after.as_bytes(), KEPT).len(), KEPT.len());
    let verified = ok(replay_with(&path, None, &["verify"]));
    assert!(verified.starts_with("intact"), "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_export_with_its_keys_restores_readable_and_verifiable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    seeded(&path).await;
    ok(replay(&path, &["erase", "c-1", "--tenant", "acme"]));
    let exported = dir.path().join("all.jsonl");
    let keys = dir.path().join("keys.jsonl");
    ok(replay(
        &path,
        &[
            "export",
            "--out",
            exported.to_str().expect("utf-8"),
            "--keys-out",
            keys.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(mode(&keys), 0o600, "the key file");
    assert!(found_in(read(&keys).as_bytes(), KEPT).is_empty());

    let copy: PathBuf = dir.path().join("copy").join("events.db");
    ok(replay(
        &copy,
        &[
            "import",
            exported.to_str().expect("utf-8"),
            "--keys-in",
            keys.to_str().expect("utf-8"),
        ],
    ));
    let shown = dir.path().join("copy.jsonl");
    ok(replay(
        &copy,
        &[
            "export",
            "--decrypt",
            "--out",
            shown.to_str().expect("utf-8"),
        ],
    ));
    let shown = read(&shown);
    assert_eq!(
        found_in(shown.as_bytes(), KEPT).len(),
        KEPT.len(),
        "{shown}"
    );
    assert!(found_in(shown.as_bytes(), SECRETS).is_empty(), "{shown}");
    assert!(shown.contains("[erased]"));
    assert!(ok(replay_with(&copy, None, &["verify"])).starts_with("intact"));
    // The stored form of the copy is the stored form of the original, sealed values and all.
    let again = dir.path().join("again.jsonl");
    ok(replay(
        &copy,
        &["export", "--out", again.to_str().expect("utf-8")],
    ));
    let data = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["data"].clone())
            .collect()
    };
    assert_eq!(data(&read(&again)), data(&read(&exported)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_decrypt_refuse_a_missing_or_wrong_key_and_write_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    seeded(&path).await;
    let stored_before = ok(replay_with(&path, None, &["export"]));
    let stats_before = ok(replay_with(&path, None, &["--json", "stats"]));
    let (code, _, stderr) = replay_with(&path, None, &["timeline", "c-1", "--tenant", "acme"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CRM_MASTER_KEY"), "{stderr}");
    let wrong = "ff".repeat(32);
    let (code, _, stderr) = replay_with(&path, Some(&wrong), &["erase", "c-1", "--tenant", "acme"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("crm_keyring.key_check"), "{stderr}");
    // Nothing was written: the same events, the same counts.
    assert_eq!(ok(replay_with(&path, None, &["export"])), stored_before);
    let stats_after = ok(replay_with(&path, None, &["--json", "stats"]));
    let head = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).expect("json")["head_position"].clone()
    };
    assert_eq!(head(&stats_after), head(&stats_before));
    // Nothing was erased: the right key still reads Ada.
    let plain = dir.path().join("plain.jsonl");
    ok(replay(
        &path,
        &[
            "export",
            "--decrypt",
            "--out",
            plain.to_str().expect("utf-8"),
        ],
    ));
    assert!(read(&plain).contains("Ada Lovelace"));
    // Tools that need no plaintext work without the key; stats names the store's key.
    assert!(ok(replay_with(&path, None, &["verify"])).starts_with("intact"));
    let stats = ok(replay_with(&path, None, &["--json", "stats"]));
    let stats: serde_json::Value = serde_json::from_str(stats.trim()).expect("json");
    let expected = crm_core::privacy::MasterKey::parse(crm_tests::TEST_MASTER_KEY, "test")
        .expect("key")
        .fingerprint();
    assert_eq!(stats["master_key_fingerprint"], json!(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_line_reusing_a_stored_id_with_other_data_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    let id = "0195d7a4-0000-7000-8000-00000000abcd";
    let line = |name: &str| {
        json!({"id": id, "type": "CustomerRegistered",
               "data": {"customer_id": "c-7", "kind": "person", "name": name}})
        .to_string()
    };
    let first = dir.path().join("first.jsonl");
    std::fs::write(&first, format!("{}\n", line("Ada Lovelace"))).expect("write");
    ok(replay(
        &path,
        &["import", first.to_str().expect("utf-8"), "--tenant", "acme"],
    ));
    // The same line again: a duplicate.
    ok(replay(
        &path,
        &["import", first.to_str().expect("utf-8"), "--tenant", "acme"],
    ));
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, format!("{}\n", line("Somebody Else"))).expect("write");
    let (code, _, stderr) = replay(
        &path,
        &["import", other.to_str().expect("utf-8"), "--tenant", "acme"],
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_rewraps_every_key_and_retires_the_old_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.db");
    seeded(&path).await;
    ok(replay(&path, &["erase", "c-1", "--tenant", "acme"]));
    let stored_before = ok(replay_with(&path, None, &["export"]));
    // The wrapped keys as they are before the rotation.
    let keys_before = dir.path().join("keys-before.jsonl");
    let log_path = dir.path().join("log.jsonl");
    ok(replay(
        &path,
        &[
            "export",
            "--out",
            log_path.to_str().expect("utf-8"),
            "--keys-out",
            keys_before.to_str().expect("utf-8"),
        ],
    ));
    let old_wrapped: Vec<Vec<u8>> = read(&keys_before)
        .lines()
        .filter_map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).ok()?;
            let wrapped = line["wrapped"].as_str()?;
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, wrapped).ok()
        })
        .collect();
    assert_eq!(old_wrapped.len(), 1, "Grace's live key");
    let new_key = dir.path().join("new.key");
    let rotated = ok(replay(
        &path,
        &[
            "--json",
            "rotate-master",
            "--new-key-file",
            new_key.to_str().expect("utf-8"),
        ],
    ));
    let rotated: serde_json::Value = serde_json::from_str(rotated.trim()).expect("json");
    assert_eq!(
        rotated["rewrapped"], 1,
        "Grace's key; Ada's is destroyed: {rotated}"
    );
    assert_eq!(mode(&new_key), 0o600, "the new key file");
    // The log is untouched.
    assert_eq!(ok(replay_with(&path, None, &["export"])), stored_before);
    // The old key no longer opens the store; the new one reads what the old one did.
    let (code, _, stderr) = replay(&path, &["export", "--decrypt"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("crm_keyring.key_check"), "{stderr}");
    let key = std::fs::read_to_string(&new_key).expect("new key");
    let plain = ok(replay_with(
        &path,
        Some(key.trim()),
        &["export", "--decrypt"],
    ));
    assert!(plain.contains("Grace Hopper"), "{plain}");
    assert!(found_in(plain.as_bytes(), SECRETS).is_empty(), "{plain}");
    assert!(plain.contains("[erased]"));
    // The old wrapped key is gone from the store's files (re-wrapped in place with
    // secure_delete, then the WAL truncated), so the old master key opens nothing there.
    let bytes = stored_bytes(&url(&path)).await;
    for wrapped in &old_wrapped {
        assert!(
            !bytes
                .windows(wrapped.len())
                .any(|w| w == wrapped.as_slice()),
            "the old wrapped key is still in the store's files"
        );
    }
}
