//! Breaks in the hash chains, made as an intruder with the store would make them (the
//! append-only guard dropped or disabled, rows changed with plain SQL, nothing recomputed),
//! through the real binaries: `crm-replay verify` and `GET /v1/verify` of a real
//! `crm-api serve` name the same first failure; the timeline marks only the events from the
//! break on; a rebuild refuses a broken log and leaves the live read models as they were.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crm_core::envelope::RecordedEvent;
use crm_core::store::{Scope, StoreUrl};
use crm_projections::ReadDb;
use crm_projections::bookkeeping::stored_positions;
use crm_projections::customer360;
use crm_tests::crm_data::{append_all, history};
use crm_tests::postgres::TestDatabase;
use crm_tests::served::Served;
use serde_json::Value;
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn clean(command: &mut Command) -> &mut Command {
    for name in ["CRM_STORE", "CRM_DATA_DIR", "CRM_MASTER_KEY_FILE"] {
        command.env_remove(name);
    }
    command
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env("CRM_LOG", "warn")
        .env("NO_COLOR", "1")
}

/// Runs `crm-replay ARGS --store STORE`.
async fn replay(store: &str, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    clean(&mut command).args(args).arg("--store").arg(store);
    tokio::task::spawn_blocking(move || command.output().expect("run crm-replay"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A store holding a generated history over tenants acme and globex, and its events as
/// stored (personal fields opened).
struct Seeded {
    url: StoreUrl,
    events: Vec<RecordedEvent>,
    dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl Seeded {
    async fn sqlite() -> Seeded {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StoreUrl::Sqlite {
            path: dir.path().join("events.db"),
            durability: crm_core::store::sqlite::Durability::Normal,
        };
        Seeded::fill(url, dir, None).await
    }

    async fn postgres(test: &str) -> Option<Seeded> {
        let database = TestDatabase::create(test).await?;
        let url = StoreUrl::parse(database.url()).expect("url");
        let dir = tempfile::tempdir().expect("temp dir");
        Some(Seeded::fill(url, dir, Some(database)).await)
    }

    async fn fill(url: StoreUrl, dir: tempfile::TempDir, database: Option<TestDatabase>) -> Self {
        let store = crm_tests::open_test_store(&url).await.expect("store");
        append_all(store.as_ref(), &history(7, 40, 600)).await;
        let events = store
            .read_all(&Scope::AllTenants, 0, 100_000)
            .await
            .expect("read");
        Seeded {
            url,
            events,
            dir,
            _database: database,
        }
    }

    fn arg(&self) -> String {
        match &self.url {
            StoreUrl::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres { url } => url.clone(),
        }
    }

    /// Runs SQL as the intruder: the guard against changes and deletions dropped (SQLite) or
    /// disabled (PostgreSQL) first. `?` / `$1` is bound to `position`.
    async fn tamper(&self, sqlite: &str, postgres: &str, position: u64) {
        match &self.url {
            StoreUrl::Sqlite { path, .. } => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("connect");
                sqlx::raw_sql(
                    "DROP TRIGGER IF EXISTS crm_events_append_only_update; \
                     DROP TRIGGER IF EXISTS crm_events_append_only_delete;",
                )
                .execute(&mut conn)
                .await
                .expect("drop the guard");
                let done = sqlx::query(sqlx::AssertSqlSafe(sqlite.to_owned()))
                    .bind(position as i64)
                    .execute(&mut conn)
                    .await
                    .expect("tamper");
                assert_eq!(done.rows_affected(), 1);
                conn.close().await.expect("close");
            }
            StoreUrl::Postgres { url } => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::raw_sql("ALTER TABLE crm_events DISABLE TRIGGER crm_events_append_only")
                    .execute(&mut conn)
                    .await
                    .expect("disable the guard");
                let done = sqlx::query(sqlx::AssertSqlSafe(postgres.to_owned()))
                    .bind(position as i64)
                    .execute(&mut conn)
                    .await
                    .expect("tamper");
                assert_eq!(done.rows_affected(), 1);
                conn.close().await.expect("close");
            }
        }
    }

    /// The acme stream of `category` with the most events (at least three).
    fn longest_stream(&self, category: &str) -> Vec<&RecordedEvent> {
        let mut best: Vec<&RecordedEvent> = Vec::new();
        for event in &self.events {
            if event.tenant.as_str() != "acme" || event.stream_id.category() != category {
                continue;
            }
            let stream: Vec<&RecordedEvent> = self
                .events
                .iter()
                .filter(|e| e.tenant == event.tenant && e.stream_id == event.stream_id)
                .collect();
            if stream.len() > best.len() {
                best = stream;
            }
        }
        assert!(best.len() >= 3, "a stream of three events or more");
        best
    }
}

/// A `crm-api serve` on the store, stopped when dropped.
/// The real API on the seeded store, with an auditor key of tenant `acme`.
struct Server {
    served: Served,
    key: String,
}

fn api_binary() -> PathBuf {
    let api = Path::new(BIN).with_file_name("crm-api");
    assert!(
        api.exists(),
        "{} is missing: `cargo build -p crm-api` first",
        api.display()
    );
    api
}

fn start_server(seeded: &Seeded) -> Server {
    let api = api_binary();
    let data_dir = seeded.dir.path().join("crm-data");
    let mut create = Command::new(&api);
    clean(&mut create)
        .args(["keys", "create", "--tenant", "acme", "--role", "auditor"])
        .arg("--store")
        .arg(seeded.arg())
        .arg("--data-dir")
        .arg(&data_dir);
    let output = create.output().expect("crm-api keys create");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let key = text(&output.stdout).trim().to_owned();
    let mut serve = Command::new(&api);
    clean(&mut serve)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(seeded.arg())
        .arg("--data-dir")
        .arg(&data_dir);
    Server {
        served: Served::start(&mut serve, || true),
        key,
    }
}

impl Server {
    /// `GET path` with the auditor's key, through curl: (status, body).
    async fn get(&self, path: &str) -> (u16, Value) {
        let mut command = Command::new("curl");
        command
            .args(["-s", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {}", self.key))
            .arg(format!("http://{}{path}", self.served.address));
        let output = tokio::task::spawn_blocking(move || command.output().expect("curl"))
            .await
            .expect("join");
        let out = text(&output.stdout);
        let (body, status) = out.rsplit_once('\n').expect("status line");
        (
            status.trim().parse().expect("status"),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

/// The fields that say where a failure is.
fn place(failure: &Value) -> (Value, Value, Value, Value) {
    (
        failure["kind"].clone(),
        failure["stream_id"].clone(),
        failure["revision"].clone(),
        failure["position"].clone(),
    )
}

async fn verify_and_api_agree(seeded: Seeded) {
    let stream = seeded.longest_stream("customer");
    let (victim, next) = (stream[1], stream[2]);
    let server = start_server(&seeded);
    let (status, before) = server.get("/v1/verify").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["intact"], true, "{before}");

    // A middle event of the stream deleted, nothing recomputed.
    seeded
        .tamper(
            "DELETE FROM crm_events WHERE position = ?",
            "DELETE FROM crm_events WHERE position = $1",
            victim.position,
        )
        .await;
    let expected = (
        Value::from("removed"),
        Value::from(victim.stream_id.as_str()),
        Value::from(next.revision),
        Value::from(next.position),
    );

    let (status, answer) = server.get("/v1/verify").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["intact"], false, "{answer}");
    assert_eq!(place(&answer["first_failure"]), expected, "{answer}");

    for args in [
        &["verify", "--json"][..],
        &["verify", "--tenant", "acme", "--json"][..],
    ] {
        let output = replay(&seeded.arg(), args).await;
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let report: Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(
            place(&report["first_failure"]),
            expected,
            "{args:?}: {report}"
        );
        assert_eq!(report["first_failure"], answer["first_failure"], "{args:?}");
    }
    let output = replay(&seeded.arg(), &["verify"]).await;
    assert_eq!(output.status.code(), Some(1));
    let line = text(&output.stdout);
    assert!(
        line.starts_with(&format!(
            "BROKEN: Removed in stream {} at revision {} (position {})",
            victim.stream_id, next.revision, next.position
        )),
        "{line}"
    );
    // One stream's check through the API names it too.
    let (status, one) = server
        .get(&format!("/v1/verify?stream={}", victim.stream_id))
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(place(&one["first_failure"]), expected, "{one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_the_api_name_the_same_deleted_middle_event() {
    verify_and_api_agree(Seeded::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_and_the_api_name_the_same_deleted_middle_event() {
    let Some(seeded) =
        Seeded::postgres("postgres_verify_and_the_api_name_the_same_deleted_middle_event").await
    else {
        return;
    };
    verify_and_api_agree(seeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_marks_only_the_events_from_the_break_on() {
    let seeded = Seeded::sqlite().await;
    let stream = seeded.longest_stream("customer");
    let customer = stream[0].stream_id.entity_id().to_owned();
    let args = ["timeline", &customer, "--tenant", "acme", "--json"];
    let output = replay(&seeded.arg(), &args).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    let victim = stream[1];
    seeded
        .tamper(
            "UPDATE crm_events SET data = json_set(data, '$.forged', 1) WHERE position = ?",
            "",
            victim.position,
        )
        .await;
    let output = replay(&seeded.arg(), &args).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let timeline: Value = serde_json::from_slice(&output.stdout).expect("json");
    let own: Vec<&Value> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|l| l["stream_id"] == victim.stream_id.as_str())
        .collect();
    assert_eq!(own.len(), stream.len(), "{timeline}");
    for line in own {
        let revision = line["revision"].as_u64().expect("revision");
        if revision < victim.revision {
            assert_eq!(line["chain_intact"], true, "{line}");
            assert!(line.get("chain_break").is_none(), "{line}");
        } else {
            assert_eq!(line["chain_intact"], false, "{line}");
            let named = line["chain_break"].as_str().expect("the break is named");
            assert!(
                named.starts_with(&format!(
                    "Changed in stream {} at revision {} (position {})",
                    victim.stream_id, victim.revision, victim.position
                )),
                "{named}"
            );
        }
    }
    // Events of the customer's other streams are not marked by this stream's break.
    for line in timeline["events"].as_array().expect("events") {
        if line["stream_id"] != victim.stream_id.as_str() {
            assert_eq!(line["chain_intact"], true, "{line}");
        }
    }
    let output = replay(&seeded.arg(), &args[..4]).await;
    let shown = text(&output.stdout);
    assert_eq!(
        shown.matches("CHAIN BROKEN (Changed in stream").count(),
        stream.len() - 1,
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_refuses_a_broken_log_and_the_live_generation_keeps_answering() {
    let seeded = Seeded::sqlite().await;
    let output = replay(&seeded.arg(), &["rebuild", "customer_360"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let db = ReadDb::open(&seeded.url).await.expect("read db");
    let generation = |positions: Vec<crm_projections::bookkeeping::StoredPosition>| {
        positions
            .into_iter()
            .find(|p| p.projection == "customer_360")
            .map(|p| (p.generation, p.rebuild_position))
    };
    let live = generation(stored_positions(&db).await.expect("positions"));
    assert_eq!(live, Some((1, None)));

    // An amount changed in the stored data, the chain not recomputed.
    let victim = seeded
        .events
        .iter()
        .find(|e| {
            e.tenant.as_str() == "acme"
                && e.data.get().contains("\"amount\"")
                && e.data.get().contains("\"customer_id\"")
        })
        .expect("an event with an amount");
    let data: Value = serde_json::from_str(victim.data.get()).expect("data");
    let customer = data["customer_id"].as_str().expect("customer").to_owned();
    let before = customer360::get(&db, "acme", &customer)
        .await
        .expect("read")
        .expect("the customer");
    seeded
        .tamper(
            "UPDATE crm_events SET data = json_set(data, '$.amount', '987654.00') \
             WHERE position = ?",
            "",
            victim.position,
        )
        .await;

    let output = replay(&seeded.arg(), &["rebuild", "customer_360"]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "BROKEN: Changed in stream {} at revision {} (position {})",
            victim.stream_id, victim.revision, victim.position
        )),
        "{stderr}"
    );
    let output = replay(&seeded.arg(), &["rebuild", "customer_360", "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    let refused: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(refused["rebuilt"], false);
    assert_eq!(refused["first_failure"]["position"], victim.position);

    // The live generation is the one before, never replaced, and serves the true amount.
    assert_eq!(
        generation(stored_positions(&db).await.expect("positions")),
        live
    );
    let after = customer360::get(&db, "acme", &customer)
        .await
        .expect("read")
        .expect("the customer");
    assert_eq!(after, before);
    assert!(!format!("{after:?}").contains("987654"), "{after:?}");
}
