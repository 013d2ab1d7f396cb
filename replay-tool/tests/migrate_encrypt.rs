//! `crm-replay migrate-encrypt` with the real binaries: a store written before encryption at
//! rest (events appended through the raw store, personal fields in plain text) is refused by
//! `crm-api serve` with a message naming the command; the command copies it into a new store
//! whose files hold no personal field in plain text, which verifies, whose `export --decrypt`
//! gives the plain text back (erased customers' fields read "[erased]"), which records the old
//! store's verification, and which `serve` accepts. A migration killed mid-way continues when
//! run again. On SQLite and on PostgreSQL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use crm_core::catalog::personal_fields;
use crm_core::envelope::{NewEvent, RecordedEvent, StreamId, TenantId};
use crm_core::store::{ExpectedRevision, Scope, SharedStore, StoreUrl, open_store};
use crm_projections::ReadDb;
use crm_projections::retention::{self, RetentionRule};
use crm_tests::crm_data::{append_all, history};
use crm_tests::postgres::TestDatabase;
use serde_json::{Value, json};

const REPLAY: &str = env!("CARGO_BIN_EXE_crm-replay");

/// Personal data the plaintext store holds: none of it may be readable in the new store's
/// files.
const SECRETS: &[&str] = &[
    "Ada Lovelace",
    "ada@lovelace.example",
    "+44 20 7946 0000",
    "Analytical Engine invoice",
    "Charles Babbage",
    "charles@babbage.example",
    "Difference engine complaint",
    "Babbage broken gear",
    "Grace Hopper",
    "grace@hopper.example",
    "Hopper Consulting",
    "Katherine Johnson",
    "katherine@nasa.example",
];

/// The `crm-api` binary, built (or brought up to date) once per test run: it belongs to
/// another package, so Cargo does not build it for this one's tests.
fn crm_api() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let output = Command::new(env!("CARGO"))
            .args(["build", "-p", "crm-api", "--bin", "crm-api"])
            .output()
            .expect("run cargo build -p crm-api");
        assert!(
            output.status.success(),
            "cargo build -p crm-api failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = Path::new(REPLAY).with_file_name("crm-api");
        assert!(path.exists(), "{} was not built", path.display());
        path
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `crm-replay ARGS` with `env` (and nothing of the caller's store or key settings).
fn replay(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(REPLAY)
        .args(args)
        .env_remove("CRM_STORE")
        .env_remove("CRM_DATA_DIR")
        .env_remove("CRM_MASTER_KEY")
        .env_remove("CRM_MASTER_KEY_FILE")
        .env("CRM_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run crm-replay")
}

#[track_caller]
fn replay_ok(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = replay(args, env);
    assert!(
        output.status.success(),
        "crm-replay {args:?} failed ({:?}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// `crm-api serve` on a store: `Ok(())` once it listens (then stopped), `Err(stderr)` when it
/// exits first.
fn serve(store: &str, data_dir: &Path, env: &[(&str, &str)]) -> Result<(), (i32, String)> {
    let mut child = Command::new(crm_api())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("CRM_STORE")
        .env_remove("CRM_MASTER_KEY")
        .env_remove("CRM_MASTER_KEY_FILE")
        .env("CRM_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crm-api");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    loop {
        match received.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if line.contains("listening") {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(());
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                return Err((status.code().unwrap_or(-1), log));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("crm-api serve neither listened nor exited within 60 s:\n{log}");
        }
    }
}

fn at(day: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, day, 9, 0, 0)
        .single()
        .expect("time")
}

async fn put(store: &SharedStore, tenant: &str, stream: &str, events: Vec<(&str, Value, u32)>) {
    let tenant = TenantId::parse(tenant).expect("tenant");
    let stream = StreamId::parse(stream).expect("stream");
    let events = events
        .into_iter()
        .map(|(event_type, data, day)| NewEvent::new(event_type, &data).with_occurred_at(at(day)))
        .collect();
    store
        .append(&tenant, &stream, ExpectedRevision::Any, events)
        .await
        .expect("append");
}

/// Writes what a store of the previous version held: events appended without any sealing.
/// Returns how many.
async fn write_plaintext(url: &StoreUrl) -> u64 {
    let store = open_store(url).await.expect("old store");
    put(
        &store,
        "acme",
        "customer-c-1",
        vec![
            (
                "CustomerRegistered",
                json!({"customer_id": "c-1", "kind": "person", "name": "Ada Lovelace",
                       "email": "ada@lovelace.example", "phone": "+44 20 7946 0000"}),
                1,
            ),
            (
                "InteractionLogged",
                json!({"customer_id": "c-1", "interaction_id": "i-1", "channel": "phone",
                       "direction": "inbound", "summary": "Analytical Engine invoice"}),
                2,
            ),
        ],
    )
    .await;
    put(
        &store,
        "acme",
        "customer-c-2",
        vec![
            (
                "CustomerRegistered",
                json!({"customer_id": "c-2", "kind": "person", "name": "Charles Babbage",
                       "email": "charles@babbage.example"}),
                3,
            ),
            (
                "InteractionLogged",
                json!({"customer_id": "c-2", "interaction_id": "i-2", "channel": "email",
                       "direction": "inbound", "summary": "Difference engine complaint"}),
                4,
            ),
        ],
    )
    .await;
    put(
        &store,
        "acme",
        "lead-l-1",
        vec![(
            "LeadCaptured",
            json!({"lead_id": "l-1", "name": "Grace Hopper", "email": "grace@hopper.example",
                   "company": "Hopper Consulting", "source": "web_form"}),
            5,
        )],
    )
    .await;
    put(
        &store,
        "globex",
        "customer-g-1",
        vec![(
            "CustomerRegistered",
            json!({"customer_id": "g-1", "kind": "person", "name": "Katherine Johnson",
                   "email": "katherine@nasa.example"}),
            6,
        )],
    )
    .await;
    // c-2 is erased; a case about it arrives later, its subject in plain text.
    put(
        &store,
        "acme",
        "customer-c-2",
        vec![("CustomerErased", json!({"customer_id": "c-2"}), 7)],
    )
    .await;
    put(
        &store,
        "acme",
        "case-k-1",
        vec![(
            "CaseOpened",
            json!({"case_id": "k-1", "customer_id": "c-2", "subject": "Babbage broken gear",
                   "channel": "email", "priority": "low"}),
            8,
        )],
    )
    .await;
    // c-3's name was already blanked by the old system.
    put(
        &store,
        "acme",
        "customer-c-3",
        vec![(
            "CustomerRegistered",
            json!({"customer_id": "c-3", "kind": "company", "name": "[erased]"}),
            9,
        )],
    )
    .await;
    let head = store.head_position().await.expect("head");
    let raw = store
        .read_all(&Scope::AllTenants, 0, 100)
        .await
        .expect("read");
    assert!(
        raw.iter().any(|e| e.data.get().contains("Ada Lovelace")),
        "the old store holds plain text"
    );
    head
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every personal field of every stored event is sealed, or null, or the "[erased]" marker;
/// and no secret appears anywhere in the stored data.
fn assert_sealed(stored: &[RecordedEvent]) {
    for event in stored {
        for secret in SECRETS {
            assert!(
                !event.data.get().contains(secret),
                "{secret:?} stored in plain text at position {}",
                event.position
            );
        }
        let data: Value = serde_json::from_str(event.data.get()).expect("data");
        for field in personal_fields(&event.event_type) {
            match &data[*field] {
                Value::Null => {}
                Value::String(s) if s.starts_with("crm:v1:") || s == "[erased]" => {}
                other => panic!(
                    "{} field {field} at position {} is stored as {other}",
                    event.event_type, event.position
                ),
            }
        }
    }
}

/// The exported events (`export --decrypt`) by (tenant, stream, revision).
fn decrypted(url: &str, env: &[(&str, &str)], out: &Path) -> Vec<Value> {
    replay_ok(
        &[
            "export",
            "--decrypt",
            "--store",
            url,
            "--out",
            out.to_str().expect("path"),
        ],
        env,
    );
    std::fs::read_to_string(out)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn data_of<'a>(events: &'a [Value], stream: &str, event_type: &str) -> &'a Value {
    &events
        .iter()
        .find(|e| e["stream_id"] == stream && e["event_type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {stream}"))["data"]
}

/// What the decrypted export of the migrated sample must show.
fn check_decrypted(events: &[Value], count: u64) {
    assert_eq!(events.len() as u64, count);
    let ada = data_of(events, "customer-c-1", "CustomerRegistered");
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(ada["email"], "ada@lovelace.example");
    assert_eq!(ada["phone"], "+44 20 7946 0000");
    assert_eq!(
        data_of(events, "customer-c-1", "InteractionLogged")["summary"],
        "Analytical Engine invoice"
    );
    assert_eq!(
        data_of(events, "lead-l-1", "LeadCaptured")["company"],
        "Hopper Consulting"
    );
    assert_eq!(
        data_of(events, "customer-g-1", "CustomerRegistered")["name"],
        "Katherine Johnson"
    );
    // The erased customer stays erased, whatever was in plain text before.
    let charles = data_of(events, "customer-c-2", "CustomerRegistered");
    assert_eq!(charles["name"], "[erased]");
    assert_eq!(charles["email"], "[erased]");
    assert_eq!(
        data_of(events, "customer-c-2", "InteractionLogged")["summary"],
        "[erased]"
    );
    assert_eq!(
        data_of(events, "case-k-1", "CaseOpened")["subject"],
        "[erased]"
    );
    assert_eq!(data_of(events, "case-k-1", "CaseOpened")["priority"], "low");
    assert_eq!(
        data_of(events, "customer-c-3", "CustomerRegistered")["name"],
        "[erased]"
    );
}

/// The `migrated_from` fact of the new store.
async fn fact(url: &StoreUrl) -> Value {
    let store = open_store(url).await.expect("new store");
    let table = store.key_table().expect("key table");
    let fact = table
        .fact("migrated_from")
        .await
        .expect("fact")
        .expect("the fact is recorded");
    serde_json::from_str(&fact).expect("json")
}

fn check_fact(fact: &Value, count: u64) {
    assert_eq!(fact["status"], "complete", "{fact}");
    assert_eq!(fact["verification"]["intact"], true, "{fact}");
    assert_eq!(fact["verification"]["first_failure"], Value::Null);
    assert_eq!(fact["verification"]["events_checked"], count);
    assert_eq!(fact["verification"]["head_position"], count);
    assert!(
        fact["verification"]["verified_at"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{fact}"
    );
    assert_eq!(fact["events_copied"], count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_sqlite_store_is_refused_then_migrated_with_its_fields_sealed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old_dir = dir.path().join("old");
    let new_dir = dir.path().join("new");
    let old_path = old_dir.join("events.db");
    let new_path = new_dir.join("events.db");
    let old_url = format!("sqlite://{}", old_path.display());
    let new_url = format!("sqlite://{}", new_path.display());
    let count = write_plaintext(&StoreUrl::parse(&old_url).expect("url")).await;
    // A tenant setting of the old store (a retention rule) goes along.
    let old_db = ReadDb::open(&StoreUrl::parse(&old_url).expect("url"))
        .await
        .expect("old read models");
    retention::set_rule(
        &old_db,
        "acme",
        &RetentionRule {
            erase_after_years: Some(3),
        },
    )
    .await
    .expect("set a rule");
    old_db.close().await;

    // serve refuses the old store, naming the way out, and writes no key beside it.
    let (code, log) = serve(&old_url, &old_dir, &[]).expect_err("serve refuses");
    assert_ne!(code, 0);
    assert!(log.contains("crm-replay migrate-encrypt"), "{log}");
    assert!(log.contains("plain text"), "{log}");
    assert!(!old_dir.join("master.key").exists());

    let output = replay_ok(
        &[
            "migrate-encrypt",
            "--from",
            &old_url,
            "--to",
            &new_url,
            // One event per transaction: the case about erased c-2 comes after its erasure
            // committed, so its subject is written as "[erased]" (in one batch with the
            // erasure it would be sealed under the key the batch destroys).
            "--batch",
            "1",
            "--json",
        ],
        &[],
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["status"], "migrated", "{summary}");
    assert_eq!(summary["events"], count);
    assert_eq!(summary["new"], count);
    assert_eq!(summary["duplicates"], 0);
    assert_eq!(summary["erasures"], 1);
    assert_eq!(
        summary["masked_fields"], 1,
        "the case subject of erased c-2"
    );
    assert_eq!(summary["source_intact"], true);
    assert_eq!(summary["settings_copied"], 1);
    assert!(text(&output.stderr).contains("master.key"));

    // The new store and its key are the owner's only; nothing readable is in its files.
    let key_file = new_dir.join("master.key");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&new_path), 0o600);
    let mut bytes = std::fs::read(&new_path).expect("store file");
    let wal = new_dir.join("events.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
        bytes.extend(std::fs::read(&wal).expect("wal"));
    }
    for secret in SECRETS {
        assert!(
            !bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret:?} is readable in the new store's files"
        );
    }
    let new_store_url = StoreUrl::parse(&new_url).expect("url");
    {
        let raw = open_store(&new_store_url).await.expect("new store");
        let stored = raw
            .read_all(&Scope::AllTenants, 0, 100)
            .await
            .expect("read");
        assert_sealed(&stored);
        let old = open_store(&StoreUrl::parse(&old_url).expect("url"))
            .await
            .expect("old store");
        let before = old
            .read_all(&Scope::AllTenants, 0, 100)
            .await
            .expect("read");
        // The same events at the same positions: ids, types, versions, metadata, times.
        assert_eq!(before.len(), stored.len());
        for (a, b) in before.iter().zip(&stored) {
            assert_eq!(
                (a.position, &a.tenant, &a.stream_id, a.revision, a.event_id),
                (b.position, &b.tenant, &b.stream_id, b.revision, b.event_id)
            );
            assert_eq!(
                (&a.event_type, a.schema_version, a.occurred_at),
                (&b.event_type, b.schema_version, b.occurred_at)
            );
            assert_eq!(a.metadata.get(), b.metadata.get());
        }
    }

    let verify = replay_ok(&["verify", "--store", &new_url], &[]);
    assert!(text(&verify.stdout).contains("intact"));
    let out = dir.path().join("plain.jsonl");
    let events = decrypted(&new_url, &[], &out);
    assert_eq!(mode(&out), 0o600);
    check_decrypted(&events, count);
    check_fact(&fact(&new_store_url).await, count);
    let new_db = ReadDb::open(&new_store_url).await.expect("new read models");
    assert_eq!(
        retention::rule(&new_db, "acme")
            .await
            .expect("rule")
            .erase_after_years,
        Some(3)
    );
    new_db.close().await;

    // Run again: everything is there already.
    let again = replay_ok(
        &[
            "migrate-encrypt",
            "--from",
            &old_url,
            "--to",
            &new_url,
            "--json",
        ],
        &[],
    );
    let again: Value = serde_json::from_slice(&again.stdout).expect("summary");
    assert_eq!(again["new"], 0, "{again}");
    assert_eq!(again["duplicates"], count);
    assert_eq!(again["resumed"], true);

    // Refusals: a target holding another store's events, and a source already encrypted.
    let other_path = dir.path().join("other").join("events.db");
    let other_url = format!("sqlite://{}", other_path.display());
    write_plaintext(&StoreUrl::parse(&other_url).expect("url")).await;
    let refused = replay(
        &["migrate-encrypt", "--from", &old_url, "--to", &other_url],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("not empty"),
        "{}",
        text(&refused.stderr)
    );
    let refused = replay(
        &[
            "migrate-encrypt",
            "--from",
            &new_url,
            "--to",
            &format!(
                "sqlite://{}",
                dir.path().join("x").join("events.db").display()
            ),
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("crm_keyring"),
        "{}",
        text(&refused.stderr)
    );

    // And serve takes the new store.
    serve(&new_url, &new_dir, &[]).expect("serve starts on the migrated store");
}

/// The highest position in a SQLite store, read without opening it as a store.
async fn sqlite_head(path: &Path) -> u64 {
    let Ok(mut conn) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}?mode=ro",
        path.display()
    ))
    .await
    else {
        return 0;
    };
    let head: Result<Option<i64>, _> = sqlx::query_scalar("SELECT MAX(position) FROM crm_events")
        .fetch_one(&mut conn)
        .await;
    let _ = sqlx::Connection::close(conn).await;
    head.ok().flatten().unwrap_or(0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_migration_continues_where_it_stopped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old_url = format!(
        "sqlite://{}",
        dir.path().join("old").join("events.db").display()
    );
    let new_path = dir.path().join("new").join("events.db");
    let new_url = format!("sqlite://{}", new_path.display());
    let old = open_store(&StoreUrl::parse(&old_url).expect("url"))
        .await
        .expect("old store");
    append_all(old.as_ref(), &history(11, 80, 4_000)).await;
    let total = old.head_position().await.expect("head");

    let mut child = Command::new(REPLAY)
        .args([
            "migrate-encrypt",
            "--from",
            &old_url,
            "--to",
            &new_url,
            "--batch",
            "10",
        ])
        .env_remove("CRM_MASTER_KEY")
        .env_remove("CRM_MASTER_KEY_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crm-replay");
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let head = sqlite_head(&new_path).await;
        if head >= 300 {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            break sqlite_head(&new_path).await;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the migration ended ({status:?}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "the migration made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("killed at {at_kill} of {total}");
    assert!(
        at_kill < total,
        "killed at {at_kill} of {total}: nothing left to continue"
    );

    let output = replay_ok(
        &[
            "migrate-encrypt",
            "--from",
            &old_url,
            "--to",
            &new_url,
            "--json",
        ],
        &[],
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["resumed"], true, "{summary}");
    assert_eq!(summary["events"], total);
    assert_eq!(summary["duplicates"], at_kill, "{summary}");
    assert_eq!(summary["new"], total - at_kill);
    assert_eq!(summary["target_head_position"], total);

    // Exactly the old log, once, sealed.
    let new = open_store(&StoreUrl::parse(&new_url).expect("url"))
        .await
        .expect("new store");
    let before = old
        .read_all(&Scope::AllTenants, 0, 100_000)
        .await
        .expect("read");
    let after = new
        .read_all(&Scope::AllTenants, 0, 100_000)
        .await
        .expect("read");
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (a.position, &a.stream_id, a.event_id, &a.event_type),
            (b.position, &b.stream_id, b.event_id, &b.event_type)
        );
    }
    let sealed = after
        .iter()
        .filter(|e| e.data.get().contains("crm:v1:"))
        .count();
    assert!(sealed > 100, "only {sealed} events hold sealed fields");
    replay_ok(&["verify", "--store", &new_url], &[]);

    // Decrypted, every event reads as before, but for erased subjects' personal fields.
    let out = dir.path().join("plain.jsonl");
    let events = decrypted(&new_url, &[], &out);
    assert_eq!(events.len(), before.len());
    let mut erased = 0;
    for (old_event, line) in before.iter().zip(&events) {
        let was: Value = serde_json::from_str(old_event.data.get()).expect("data");
        let personal = personal_fields(&old_event.event_type);
        for (name, value) in was.as_object().expect("object") {
            let now = &line["data"][name];
            if now != value {
                assert!(
                    personal.contains(&name.as_str()) && now == "[erased]",
                    "{} {name}: {value} became {now}",
                    old_event.event_type
                );
                erased += 1;
            }
        }
    }
    assert!(erased > 0, "the history erases customers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_postgresql_store_is_migrated_with_its_fields_sealed() {
    let Some(old_db) = TestDatabase::create("migrate_encrypt_postgres_old").await else {
        return;
    };
    let Some(new_db) = TestDatabase::create("migrate_encrypt_postgres_new").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let key = "7f".repeat(32);
    let env = [("CRM_MASTER_KEY", key.as_str())];
    let old_url = old_db.url().to_owned();
    let new_url = new_db.url().to_owned();
    let count = write_plaintext(&StoreUrl::parse(&old_url).expect("url")).await;

    let (code, log) = serve(&old_url, dir.path(), &env).expect_err("serve refuses");
    assert_ne!(code, 0);
    assert!(log.contains("crm-replay migrate-encrypt"), "{log}");

    let output = replay_ok(
        &[
            "migrate-encrypt",
            "--from",
            &old_url,
            "--to",
            &new_url,
            "--batch",
            "4",
            "--json",
        ],
        &env,
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["new"], count, "{summary}");
    assert_eq!(summary["erasures"], 1);

    // No personal field in plain text in the new database's event rows.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&new_url)
        .await
        .expect("connect");
    for secret in SECRETS {
        let found: i64 =
            sqlx::query_scalar("SELECT count(*) FROM crm_events WHERE data::text LIKE $1")
                .bind(format!("%{secret}%"))
                .fetch_one(&mut conn)
                .await
                .expect("search");
        assert_eq!(found, 0, "{secret:?} is stored in plain text");
    }
    let _ = sqlx::Connection::close(conn).await;
    let new_store_url = StoreUrl::parse(&new_url).expect("url");
    {
        let raw = open_store(&new_store_url).await.expect("new store");
        assert_sealed(
            &raw.read_all(&Scope::AllTenants, 0, 100)
                .await
                .expect("read"),
        );
    }

    replay_ok(&["verify", "--store", &new_url], &[]);
    let events = decrypted(&new_url, &env, &dir.path().join("plain.jsonl"));
    check_decrypted(&events, count);
    check_fact(&fact(&new_store_url).await, count);

    // Without the key the new store's personal fields stay closed.
    let refused = replay(&["export", "--decrypt", "--store", &new_url], &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("CRM_MASTER_KEY"));

    let again = replay_ok(
        &[
            "migrate-encrypt",
            "--from",
            &old_url,
            "--to",
            &new_url,
            "--json",
        ],
        &env,
    );
    let again: Value = serde_json::from_slice(&again.stdout).expect("summary");
    assert_eq!(again["new"], 0, "{again}");
    assert_eq!(again["duplicates"], count);

    serve(&new_url, dir.path(), &env).expect("serve starts on the migrated store");
}
