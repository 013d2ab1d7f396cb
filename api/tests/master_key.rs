//! The master key with the real `crm-api` binary: `serve` refuses a PostgreSQL store without
//! a key (naming CRM_MASTER_KEY) and any store with a wrong key (naming the key check,
//! `crm_keyring.key_check`), writing nothing; the first start on SQLite creates `master.key`
//! (mode 0600) and says where; the store's files are the owner's only.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm_core::store::StoreUrl;
use crm_projections::ReadDb;
use crm_projections::db::{Col, SqliteOptions};
use crm_tests::postgres::TestDatabase;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

/// Two keys that are not the same.
const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// How a `crm-api serve` started.
enum Started {
    /// It listens at this address.
    Listening(Server),
    /// It exited first: its status and its stderr.
    Exited(ExitStatus, String),
}

struct Server {
    child: Child,
    address: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn log(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("crm-api did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status, self.log())
    }
}

/// `crm-api serve --listen 127.0.0.1:0 --data-dir DIR ARGS` with only `env` for the key.
fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Started {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
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
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    let stream = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let address = stderr.lock().expect("lines").iter().find_map(|line| {
            line.contains("listening")
                .then(|| line.split("address=").nth(1))
                .flatten()
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        });
        if let Some(address) = address {
            return Started::Listening(Server {
                child,
                address: format!("http://{address}"),
                stderr,
            });
        }
        if let Some(status) = child.try_wait().expect("wait") {
            std::thread::sleep(Duration::from_millis(100));
            let log = stderr.lock().expect("lines").join("\n");
            return Started::Exited(status, log);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "crm-api neither listened nor exited: {:?}",
                stderr.lock().expect("lines")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn listening(started: Started) -> Server {
    match started {
        Started::Listening(server) => server,
        Started::Exited(status, log) => panic!("serve exited ({status}):\n{log}"),
    }
}

#[track_caller]
fn refused(started: Started) -> String {
    match started {
        Started::Exited(status, log) => {
            assert!(!status.success(), "{log}");
            log
        }
        Started::Listening(server) => {
            let (_, log) = server.terminate();
            panic!("serve started where it must refuse:\n{log}");
        }
    }
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

/// Appends one customer with the admin key the first start wrote.
async fn append_one(server: &Server, dir: &Path, id: &str) {
    let admin = std::fs::read_to_string(dir.join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/events", server.address))
        .bearer_auth(admin)
        .json(&json!({"events": [{"type": "CustomerRegistered",
            "data": {"customer_id": id, "kind": "person", "name": "Ada Lovelace",
                     "email": "ada@example.com"}}]}))
        .send()
        .await
        .expect("append");
    assert_eq!(answer.status(), 201);
}

/// Rows of the tables a start could write to.
const TABLES: &[&str] = &[
    "crm_events",
    "crm_streams",
    "crm_keyring",
    "crm_subject_keys",
    "crm_api_keys",
    "crm_projection_checkpoints",
];

/// Row counts of [`TABLES`] (-1 for a table that does not exist).
async fn counts(db: &ReadDb) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let count = db
            .fetch(
                &format!("SELECT count(*) FROM {table}"),
                Vec::new(),
                &[Col::Int],
            )
            .await
            .ok()
            .and_then(|rows| rows.first().and_then(|row| row[0].as_int()))
            .unwrap_or(-1);
        counts.push(count);
    }
    counts
}

async fn sqlite_counts(path: &Path) -> Vec<i64> {
    let db = ReadDb::open_sqlite(
        path,
        SqliteOptions {
            read_only: true,
            create_if_missing: false,
            max_connections: 1,
            ..SqliteOptions::default()
        },
    )
    .await
    .expect("open read-only");
    let counts = counts(&db).await;
    db.close().await;
    counts
}

async fn postgres_db(url: &str) -> ReadDb {
    ReadDb::open(&StoreUrl::parse(url).expect("url"))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_on_sqlite_creates_a_private_key_file_and_says_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = listening(serve(dir.path(), &[], &[]));
    let key_file = dir.path().join("master.key");
    let log = server.log();
    assert!(
        log.contains(&format!(
            "A new master key was written to {}",
            key_file.display()
        )),
        "{log}"
    );
    assert_eq!(mode(&key_file), 0o600);
    let key = std::fs::read_to_string(&key_file).expect("key");
    assert_eq!(key.trim().len(), 44, "base64 of 32 bytes");
    assert!(!log.contains(key.trim()), "the key was logged");
    append_one(&server, dir.path(), "c-1").await;

    // The store, its WAL and shared memory, the admin key: the owner's only.
    for name in ["events.db", "events.db-wal", "events.db-shm", "admin.key"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(mode(&dir.path().join("events.db")), 0o600);

    // A second start uses the key and announces nothing.
    let again = listening(serve(dir.path(), &[], &[]));
    let (status, log) = again.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("A new master key"), "{log}");
    assert_eq!(std::fs::read_to_string(&key_file).expect("key"), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_on_a_sqlite_store_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = listening(serve(dir.path(), &[], &[]));
    append_one(&server, dir.path(), "c-1").await;
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");

    let store = dir.path().join("events.db");
    let wal = dir.path().join("events.db-wal");
    let bytes = std::fs::read(&store).expect("store");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let counts = sqlite_counts(&store).await;
    assert!(counts[0] > 0 && counts[3] > 0, "{counts:?}");

    // Another key, given as CRM_MASTER_KEY (it takes precedence over master.key) ...
    let log = refused(serve(dir.path(), &[], &[("CRM_MASTER_KEY", KEY_B)]));
    assert!(log.contains("wrong master key"), "{log}");
    assert!(log.contains("CRM_MASTER_KEY"), "{log}");
    assert!(log.contains("crm_keyring.key_check"), "{log}");
    assert!(log.contains("nothing was written"), "{log}");
    // ... or as another key file.
    let other = dir.path().join("other.key");
    std::fs::write(&other, KEY_A).expect("write key");
    let other_arg = other.to_str().expect("path");
    let log = refused(serve(dir.path(), &["--master-key-file", other_arg], &[]));
    assert!(log.contains("crm_keyring.key_check"), "{log}");
    assert!(log.contains(other_arg), "{log}");

    // The store file is byte for byte what it was, its WAL holds nothing new, no row was
    // added, and no key or admin key file was made.
    assert!(
        std::fs::read(&store).expect("store") == bytes,
        "the store file changed"
    );
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        wal_len,
        "the WAL grew"
    );
    assert_eq!(sqlite_counts(&store).await, counts);

    // The right key still opens it.
    let server = listening(serve(dir.path(), &[], &[]));
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_a_postgresql_store_is_refused_naming_crm_master_key() {
    let Some(database) = TestDatabase::create("master_key_refusals").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ["--store", database.url()];

    // A new PostgreSQL store gets no key made up for it: the key never lives beside it.
    let log = refused(serve(dir.path(), &store, &[]));
    assert!(log.contains("no master key"), "{log}");
    assert!(log.contains("CRM_MASTER_KEY"), "{log}");
    assert!(!dir.path().join("master.key").exists());
    assert!(!dir.path().join("admin.key").exists());
    let db = postgres_db(database.url()).await;
    let before = counts(&db).await;
    assert_eq!(before[2], 0, "no key ring was made: {before:?}");

    // With a key it starts, and the store is then bound to that key.
    let server = listening(serve(dir.path(), &store, &[("CRM_MASTER_KEY", KEY_A)]));
    append_one(&server, dir.path(), "c-1").await;
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    let written = counts(&db).await;
    assert!(written[0] > 0 && written[2] == 1, "{written:?}");

    let log = refused(serve(dir.path(), &store, &[]));
    assert!(log.contains("CRM_MASTER_KEY"), "{log}");
    assert!(log.contains("fingerprint"), "{log}");
    let log = refused(serve(dir.path(), &store, &[("CRM_MASTER_KEY", KEY_B)]));
    assert!(log.contains("wrong master key"), "{log}");
    assert!(log.contains("crm_keyring.key_check"), "{log}");
    assert_eq!(counts(&db).await, written);
    let fingerprint = db
        .fetch(
            "SELECT fingerprint FROM crm_keyring",
            Vec::new(),
            &[Col::Text],
        )
        .await
        .expect("keyring")
        .remove(0)
        .remove(0)
        .into_text()
        .expect("fingerprint");
    assert!(log.contains(&fingerprint), "{log}");
    db.close().await;
}
