//! `crm-api serve --read-store`: the read-model queries answered by a real PostgreSQL hot
//! standby, made by `scripts/pg-replica.sh` from the test server's cluster, through the real
//! binary over loopback. Read-your-writes waits for the replica's own checkpoints (a replica
//! whose replay is paused answers 503, as a wait that runs out does today, and answers once
//! resumed); the replica's `pg_stat_activity` and `pg_stat_database` show that it answered.
//! Also: the flag's refusals (not PostgreSQL, a SQLite store, an unreachable replica).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crm_tests::postgres::{TestDatabase, admin_url};
use crm_tests::served::Served;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");
/// How long a `min_position` query waits before its 503 (`--max-wait-ms`).
const MAX_WAIT_MS: u64 = 1_500;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-replica.sh")
}

fn required() -> bool {
    std::env::var("CRM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

/// A replica cluster made by the script, removed (stopped, its directory deleted) when
/// dropped, also when the test fails.
struct Replica {
    _parent: tempfile::TempDir,
    dir: PathBuf,
    port: u16,
}

impl Replica {
    /// Creates the replica of the test server's cluster on a free port; `None` after a loud
    /// notice when it cannot be made and PostgreSQL is not required, a panic when it is.
    fn create() -> Option<Replica> {
        let parent = tempfile::tempdir().expect("temp dir");
        // The cluster runs as `postgres`, which must reach its directory.
        std::fs::set_permissions(
            parent.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let dir = parent.path().join("pgdata");
        let port = free_port();
        let options: sqlx::postgres::PgConnectOptions = admin_url().parse().expect("admin url");
        let output = Command::new("bash")
            .arg(script())
            .args(["create", &port.to_string()])
            .arg(&dir)
            .env("PRIMARY_HOST", options.get_host())
            .env("PRIMARY_PORT", options.get_port().to_string())
            .output()
            .expect("run scripts/pg-replica.sh");
        let replica = Replica {
            _parent: parent,
            dir,
            port,
        };
        if output.status.success() {
            return Some(replica);
        }
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if required() {
            panic!(
                "PostgreSQL is required (CRM_REQUIRE_POSTGRES=1) but no replica could be made: {said}"
            );
        }
        eprintln!(
            "\n!!!!! SKIPPED the read-replica test: scripts/pg-replica.sh could not make a \
             replica:\n{said}\n!!!!! CI sets CRM_REQUIRE_POSTGRES=1 and fails instead.\n"
        );
        None
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    async fn connect(&self, database: &str) -> PgConnection {
        PgConnection::connect(&self.url(database))
            .await
            .expect("connect to the replica")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let output = Command::new("bash")
            .arg(script())
            .arg("remove")
            .arg(&self.dir)
            .output();
        if let Ok(output) = output
            && !output.status.success()
        {
            eprintln!(
                "could not remove the replica in {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn registered(id: &str, name: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "CustomerRegistered",
           "data": {"customer_id": id, "kind": "person", "name": name}})
}

struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn append(&self, event: Value) -> u64 {
        let response = self
            .client
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.key)
            .json(&json!({ "events": [event] }))
            .send()
            .await
            .expect("append");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        body["last_position"].as_u64().expect("last_position")
    }

    async fn get(&self, path: &str) -> (u16, Option<u64>, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("query");
        let status = response.status().as_u16();
        let position = response
            .headers()
            .get("crm-read-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (status, position, response.json().await.expect("json"))
    }

    /// Waits until the primary's read model (as `GET /v1/projections` reports it from the
    /// primary's checkpoints) has applied `position`.
    async fn primary_reaches(&self, name: &str, position: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, _, body) = self.get("/v1/projections").await;
            let reached = body["projections"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .and_then(|p| p["position"].as_u64())
                .unwrap_or(0);
            if reached >= position {
                return;
            }
            assert!(Instant::now() < deadline, "the primary's {name}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Transactions committed in `database` on the replica, as its own statistics count them.
async fn commits(replica: &Replica, database: &str) -> i64 {
    let mut conn = replica.connect("postgres").await;
    let commits: i64 =
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(database)
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_database");
    let _ = conn.close().await;
    commits
}

/// Sessions of `application_name` on `database` of the server at `url`.
async fn sessions(url: &str, database: &str, application_name: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(database)
    .bind(application_name)
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_activity");
    let _ = conn.close().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_answered_by_the_read_replica_and_wait_for_its_checkpoints() {
    let Some(database) = TestDatabase::create("serve_read_replica").await else {
        return;
    };
    let Some(replica) = Replica::create() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("admin.key");
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--store", database.url()])
        .args(["--read-store", &replica.url(database.name())])
        .args(["--max-wait-ms", &MAX_WAIT_MS.to_string()])
        .env("CRM_MASTER_KEY_FILE", dir.path().join("master.key"));
    let ready = key_file.clone();
    let served = Served::start(&mut command, move || ready.exists());
    assert!(
        served
            .log()
            .contains("read-model queries go to the read replica"),
        "{}",
        served.log()
    );
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", served.address),
        key: std::fs::read_to_string(&key_file)
            .expect("admin.key")
            .trim()
            .to_owned(),
    };

    // Read-your-writes through the replica.
    let first = api.append(registered("c-1", "Ada")).await;
    let (status, position, view) = api
        .get(&format!("/v1/customers/c-1?min_position={first}"))
        .await;
    assert_eq!(status, 200, "{view}\n{}", served.log());
    assert_eq!(view["name"], "Ada", "{view}");
    assert!(position.is_some_and(|p| p >= first), "{position:?}");

    // The replica answered: its sessions are the server's read pool, and its own count of
    // transactions in the test database grows with the queries. The primary has none of them.
    let on_replica = sessions(
        &replica.url("postgres"),
        database.name(),
        crm_projections::db::REPLICA_APPLICATION_NAME,
    )
    .await;
    assert!(on_replica >= 1, "no crm-api-read session on the replica");
    assert_eq!(
        sessions(
            &admin_url(),
            database.name(),
            crm_projections::db::REPLICA_APPLICATION_NAME
        )
        .await,
        0,
        "crm-api-read sessions on the primary"
    );
    let before = commits(&replica, database.name()).await;
    for _ in 0..20 {
        let (status, _, body) = api
            .get(&format!("/v1/customers?min_position={first}"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Statistics reach the shared counters within a second or so of a session's commits.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let after = commits(&replica, database.name()).await;
        if after >= before + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica counted {} transactions in the test database for 20 queries",
            after - before
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A replica that stops replaying: the primary's read model has the write, the replica's
    // checkpoint does not, so the query waits for the replica and answers as a wait that runs
    // out answers.
    let mut control = replica.connect("postgres").await;
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut control)
        .await
        .expect("pause replay");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(&mut control)
            .await
            .expect("pause state");
        if state == "paused" {
            break;
        }
        assert!(Instant::now() < deadline, "replay never paused: {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = api.append(registered("c-2", "Grace")).await;
    api.primary_reaches("customer_360", second).await;
    let asked = format!("/v1/customers/c-2?min_position={second}");
    let started = Instant::now();
    let (status, position, problem) = api.get(&asked).await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{problem}");
    assert!(
        waited >= Duration::from_millis(MAX_WAIT_MS),
        "answered after {waited:?}"
    );
    let reached = problem["position"].as_u64().expect("position");
    assert!(reached < second, "{problem}");
    assert_eq!(position, Some(reached), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("not min_position {second}"))),
        "{problem}"
    );

    // Replay resumed: the same query gets its write.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut control)
        .await
        .expect("resume replay");
    let _ = control.close().await;
    let (status, position, view) = api.get(&asked).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["name"], "Grace", "{view}");
    assert!(position.is_some_and(|p| p >= second), "{position:?}");
    drop(served);
}

fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env("CRM_MASTER_KEY_FILE", dir.path().join("master.key"))
        .output()
        .expect("run crm-api");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("--read-store"), "{stderr}");
    stderr
}

#[test]
fn a_read_store_that_is_not_postgres_or_beside_a_sqlite_store_is_refused() {
    let stderr = refused(&[
        "--store",
        "postgres://postgres@127.0.0.1:5432/never_opened",
        "--read-store",
        "sqlite:///tmp/never.db",
    ]);
    assert!(stderr.contains("is not a PostgreSQL URL"), "{stderr}");
    // A SQLite store (the default one in the data dir) has no replicas.
    let stderr = refused(&[
        "--read-store",
        "postgres://postgres@127.0.0.1:5432/never_opened",
    ]);
    assert!(stderr.contains("needs a PostgreSQL --store"), "{stderr}");
    let stderr = refused(&["--read-store", "mysql://somewhere/db"]);
    assert!(
        stderr.contains("must start with sqlite:// or postgres://"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_read_replica_stops_the_start() {
    let Some(database) = TestDatabase::create("serve_unreachable_replica").await else {
        return;
    };
    let port = free_port();
    let replica = format!("postgres://postgres@127.0.0.1:{port}/{}", database.name());
    let stderr = refused(&["--store", database.url(), "--read-store", &replica]);
    assert!(
        stderr.contains("cannot connect to the read replica"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
}
