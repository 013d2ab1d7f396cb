//! The tools as a careless user or an attacker meets them: a reader that closes the pipe
//! early, a missing or empty file given as the store, a stream that does not exist, and an
//! `--out` that names an existing file, a link, or the store itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crm_core::store::StoreUrl;
use crm_tests::crm_data::{append_all, history};

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn replay(store: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .args(["--store", store])
        .args(args)
        .env("CRM_LOG", "warn")
        .output()
        .expect("run crm-replay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn seeded(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("events.db");
    let url = StoreUrl::Sqlite {
        path: path.clone(),
        durability: crm_core::store::sqlite::Durability::Normal,
    };
    let store = crm_tests::open_test_store(&url).await.expect("store");
    append_all(store.as_ref(), &history(3, 30, 400)).await;
    (path.clone(), format!("sqlite://{}", path.display()))
}

/// Runs the tool with its stdout a pipe whose reader has already gone, like `| head -0`.
fn with_closed_pipe(store: &str, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .args(["--store", store])
        .args(args)
        .env("CRM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_the_pipe_early_ends_the_tools_quietly() {
    let dir = tempfile::tempdir().expect("dir");
    let (_, store) = seeded(dir.path()).await;
    let (code, exported, _) = replay(&store, &["export"]);
    assert_eq!(code, 0);
    let registered: serde_json::Value = exported
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json line"))
        .find(|event| event["event_type"] == "CustomerRegistered")
        .expect("a registration");
    let customer = registered["data"]["customer_id"].as_str().expect("id");
    let tenant = registered["tenant"].as_str().expect("tenant");
    let (code, stdout, stderr) = replay(&store, &["timeline", customer, "--tenant", tenant]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for args in [
        &["stats"][..],
        &["stats", "--json"],
        &["timeline", customer, "--tenant", tenant],
        &["verify"],
        &["export"],
    ] {
        let (code, stderr) = with_closed_pipe(&store, args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_that_only_read_refuse_a_missing_or_empty_file_and_write_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty file");
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, b"shopping list: milk, eggs\n").expect("foreign file");
    let missing = dir.path().join("missing.db");
    for file in [&empty, &foreign, &missing] {
        let url = format!("sqlite://{}", file.display());
        for args in [
            &["verify"][..],
            &["stats"],
            &["export"],
            &["timeline", "c-1"],
        ] {
            let (code, stdout, stderr) = replay(&url, args);
            assert_eq!(code, 2, "{file:?} {args:?}: {stdout}{stderr}");
            assert!(stderr.contains("not a CRM store"), "{args:?}: {stderr}");
            assert!(!stdout.contains("intact"), "{stdout}");
        }
    }
    // Nothing was created or changed: no schema in the empty file, no WAL beside it.
    assert_eq!(std::fs::metadata(&empty).expect("empty").len(), 0);
    assert_eq!(
        std::fs::read(&foreign).expect("foreign"),
        b"shopping list: milk, eggs\n"
    );
    assert!(!missing.exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with("-wal")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_a_stream_that_does_not_exist_is_not_intact() {
    let dir = tempfile::tempdir().expect("dir");
    let (_, store) = seeded(dir.path()).await;
    let (code, stdout, stderr) = replay(
        &store,
        &["verify", "--tenant", "acme", "--stream", "customer-nope"],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("no stream customer-nope"), "{stderr}");
    assert!(!stdout.contains("intact"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_out_never_overwrites_follows_a_link_or_writes_over_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let (path, store) = seeded(dir.path()).await;
    let (_, before, _) = replay(&store, &["export"]);
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, b"yesterday's export\n").expect("write");

    let (code, _, stderr) = replay(&store, &["export", "--out", out.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&out).expect("out"), b"yesterday's export\n");

    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    let (code, _, stderr) = replay(
        &store,
        &["export", "--force", "--out", link.to_str().expect("utf-8")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");

    let (code, _, stderr) = replay(
        &store,
        &["export", "--force", "--out", path.to_str().expect("utf-8")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("store's own file"), "{stderr}");
    let (code, stdout, stderr) = replay(&store, &["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (_, after, _) = replay(&store, &["export"]);
    assert!(after == before, "the store changed");

    let (code, _, stderr) = replay(
        &store,
        &["export", "--force", "--out", out.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines = std::fs::read_to_string(&out).expect("out");
    assert!(lines.lines().count() > 100, "{}", lines.len());
    assert!(!lines.contains("yesterday"));
}

/// A PostgreSQL database that does not exist yet is one sentence naming it and how to
/// create it (never the driver's message twice), and a failure exit, for reading and
/// writing commands alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_postgres_database_is_named_once_with_how_to_create_it() {
    let Some(database) =
        crm_tests::postgres::TestDatabase::create("replay_missing_postgres_database").await
    else {
        return;
    };
    let missing = format!("{}_missing", database.name());
    let url = database.url().replace(database.name(), &missing);
    let input = tempfile::NamedTempFile::new().expect("input");
    let input = input.path().to_str().expect("utf-8 path").to_owned();
    for args in [
        vec!["verify"],
        vec!["stats"],
        vec!["import", "--tenant", "acme", input.as_str()],
    ] {
        let (code, _, stderr) = replay(&url, &args);
        assert_ne!(code, 0, "{args:?}: {stderr}");
        crm_tests::postgres::assert_names_the_missing_database(
            &stderr,
            &missing,
            &format!("{args:?}"),
        );
    }
}
