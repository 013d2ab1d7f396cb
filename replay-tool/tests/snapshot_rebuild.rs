//! The real `crm-replay` binary's `snapshot` and `rebuild` against real stores.
//!
//! The reference every snapshot is compared with is built independently of the tool: the
//! source log is read up to the cut into memory, and the projection runner replays that
//! in-memory log into a fresh read-model database (small batches, so batch boundaries
//! differ from the tool's). Tables are compared row by row, every table of every projection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use crm_core::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId};
use crm_core::store::sqlite::Durability;
use crm_core::store::{
    BatchOutcome, Direction, EventStore, Scope, SharedStore, StoreError, StoreUrl, StoredEventRef,
    StreamExpectation, StreamHead, StreamStart,
};
use crm_projections::bookkeeping::stored_positions;
use crm_projections::customer360::{self, CustomerFilter};
use crm_projections::db::SqliteOptions;
use crm_projections::db::{Col, SqlValue};
use crm_projections::runner::{self, RunnerOptions};
use crm_projections::{ReadDb, all_projections};
use crm_tests::crm_data::{Emitted, append_all, history};
use crm_tests::postgres::TestDatabase;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio::sync::watch;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

type Dump = BTreeMap<&'static str, Vec<Vec<SqlValue>>>;

/// Runs the binary on `store` and waits for it.
async fn replay(store: &str, args: &[&str]) -> Output {
    let mut command = command(store, args);
    tokio::task::spawn_blocking(move || command.output().expect("run crm-replay"))
        .await
        .expect("join")
}

fn command(store: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("CRM_STORE")
        .env_remove("CRM_DATA_DIR")
        .env("CRM_LOG", "warn");
    command
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "crm-replay failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A SQLite store in a fresh directory.
struct SqliteSource {
    dir: tempfile::TempDir,
    url: StoreUrl,
    store: SharedStore,
}

impl SqliteSource {
    async fn new() -> SqliteSource {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StoreUrl::Sqlite {
            path: dir.path().join("events.db"),
            durability: Durability::Normal,
        };
        let store = crm_tests::open_test_store(&url).await.expect("open store");
        SqliteSource { dir, url, store }
    }

    async fn seeded(events: &[Emitted]) -> SqliteSource {
        let source = SqliteSource::new().await;
        append_all(source.store.as_ref(), events).await;
        source
    }

    fn arg(&self) -> String {
        self.url.redacted()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The log up to and including `upto`, read from `store`.
async fn read_log(store: &dyn EventStore, upto: Position) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_all(&Scope::AllTenants, after, 1_000)
            .await
            .expect("read log");
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        events.extend(page.into_iter().filter(|e| e.position <= upto));
        if last >= upto {
            break;
        }
        after = last;
    }
    events
}

/// A log held in memory: what the reference replays.
#[derive(Debug)]
struct MemoryLog {
    events: Vec<RecordedEvent>,
    head: watch::Sender<Position>,
}

impl MemoryLog {
    fn new(events: Vec<RecordedEvent>) -> MemoryLog {
        let last = events.last().map_or(0, |e| e.position);
        MemoryLog {
            events,
            head: watch::channel(last).0,
        }
    }

    fn unsupported<T>() -> Result<T, StoreError> {
        Err(StoreError::InvalidInput(
            "not in the test's memory log".into(),
        ))
    }
}

#[async_trait]
impl EventStore for MemoryLog {
    async fn append_batch(
        &self,
        _: &TenantId,
        _: Vec<StreamExpectation>,
        _: Vec<(StreamId, NewEvent)>,
    ) -> Result<BatchOutcome, StoreError> {
        Self::unsupported()
    }

    async fn read_stream(
        &self,
        _: &TenantId,
        _: &StreamId,
        _: Direction,
        _: StreamStart,
        _: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Self::unsupported()
    }

    async fn read_all(
        &self,
        scope: &Scope,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let start = self.events.partition_point(|e| e.position <= after);
        Ok(self.events[start..]
            .iter()
            .filter(|e| match scope {
                Scope::AllTenants => true,
                Scope::Tenant(t) => &e.tenant == t,
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn read_positions(
        &self,
        _: &TenantId,
        _: &[Position],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Self::unsupported()
    }

    async fn find_events(
        &self,
        _: &TenantId,
        _: &[(StreamId, uuid::Uuid)],
    ) -> Result<Vec<StoredEventRef>, StoreError> {
        Self::unsupported()
    }

    async fn stream_heads_of(
        &self,
        _: &TenantId,
        _: &[StreamId],
    ) -> Result<Vec<StreamHead>, StoreError> {
        Self::unsupported()
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        Ok(*self.head.borrow())
    }

    async fn stream_heads(
        &self,
        _: &Scope,
        _: Option<(&TenantId, &StreamId)>,
        _: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        Self::unsupported()
    }

    async fn stream_head(
        &self,
        _: &TenantId,
        _: &StreamId,
    ) -> Result<Option<StreamHead>, StoreError> {
        Self::unsupported()
    }

    fn head_changes(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

/// Every read model built from exactly `events`, in a fresh database, dumped.
async fn reference(events: Vec<RecordedEvent>) -> Dump {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = ReadDb::open(&StoreUrl::Sqlite {
        path: dir.path().join("reference.db"),
        durability: Durability::Normal,
    })
    .await
    .expect("reference db");
    let store: SharedStore = Arc::new(MemoryLog::new(events));
    runner::run_until_caught_up(
        store,
        db.clone(),
        all_projections(),
        RunnerOptions {
            batch_size: 97,
            catch_up_batch_size: 97,
            ..RunnerOptions::default()
        },
    )
    .await
    .expect("reference run");
    dump(&db).await
}

/// Every row of every read model (through the views), each table's rows sorted.
async fn dump(db: &ReadDb) -> Dump {
    let mut tables = BTreeMap::new();
    for projection in all_projections() {
        for def in projection.tables() {
            let mut rows = db.dump(def.name, "1").await.expect("dump");
            rows.sort_by_cached_key(|row| format!("{row:?}"));
            tables.insert(def.name, rows);
        }
    }
    tables
}

/// A snapshot file opened read-only, as a `ReadDb` for `dump`.
async fn open_snapshot(path: &Path) -> ReadDb {
    ReadDb::open_sqlite(path, SqliteOptions::read_only())
        .await
        .expect("open snapshot")
}

fn assert_same(actual: &Dump, expected: &Dump, what: &str) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the same tables"
    );
    for (table, rows) in expected {
        let got = &actual[table];
        assert_eq!(got.len(), rows.len(), "{what}: rows of {table}");
        for (i, (a, b)) in got.iter().zip(rows).enumerate() {
            assert_eq!(a, b, "{what}: {table} row {i}");
        }
    }
}

/// A snapshot at a position: equal to the log cut there, projected on its own.
async fn snapshot_equals_cut(store: &dyn EventStore, store_arg: &str, dir: &Path) {
    let head = store.head_position().await.expect("head");
    assert!(head > 1_000, "a few thousand events: {head}");
    let cut = head / 2;
    let out = dir.join("half.db");
    let output = replay(
        store_arg,
        &[
            "snapshot",
            "--position",
            &cut.to_string(),
            "--out",
            out.to_str().expect("utf-8 path"),
            "--json",
        ],
    )
    .await;
    let summary = stdout_json(&output);
    assert_eq!(summary["position"], cut, "{summary}");
    assert_eq!(summary["events"], cut, "{summary}");
    assert_eq!(summary["source_head"], head, "{summary}");

    let snapshot = dump(&open_snapshot(&out).await).await;
    let expected = reference(read_log(store, cut).await).await;
    assert!(
        expected.values().filter(|rows| !rows.is_empty()).count() >= 5,
        "the cut fills the read models: {:?}",
        expected
            .iter()
            .map(|(t, r)| (t, r.len()))
            .collect::<Vec<_>>()
    );
    assert_same(&snapshot, &expected, "snapshot at half the log");

    // Not the present: the whole log gives other rows.
    let now = reference(read_log(store, head).await).await;
    assert_ne!(snapshot, now, "the snapshot is of the past");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_at_a_past_position_equals_a_rebuild_of_the_log_cut_there() {
    let source = SqliteSource::seeded(&history(7, 60, 3_000)).await;
    snapshot_equals_cut(source.store.as_ref(), &source.arg(), source.dir.path()).await;
    // The source store got no read models from the snapshot.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(source.dir.path().join("events.db"))
                .read_only(true),
        )
        .await
        .expect("open source");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE name LIKE 'rm_%' OR name LIKE 'crm_projection%'",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    assert!(tables.is_empty(), "the source was not written: {tables:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_snapshot_at_a_past_position_equals_a_rebuild_of_the_log_cut_there() {
    let Some(database) = TestDatabase::create(
        "postgres_snapshot_at_a_past_position_equals_a_rebuild_of_the_log_cut_there",
    )
    .await
    else {
        return;
    };
    let url = StoreUrl::parse(database.url()).expect("url");
    let store = crm_tests::open_test_store(&url)
        .await
        .expect("open postgres store");
    append_all(store.as_ref(), &history(8, 60, 3_000)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    snapshot_equals_cut(store.as_ref(), database.url(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_at_time_between_two_appends_cuts_where_the_position_does() {
    let events = history(9, 40, 2_000);
    let (first, second) = events.split_at(events.len() / 2);
    let source = SqliteSource::seeded(first).await;
    let position = source.store.head_position().await.expect("head");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(30)).await;
    append_all(source.store.as_ref(), second).await;
    let head = source.store.head_position().await.expect("head");
    assert!(head > position);

    let by_time = source.file("known-at.db");
    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--known-at",
            &between,
            "--out",
            by_time.to_str().expect("utf-8"),
            "--json",
        ],
    )
    .await;
    let summary = stdout_json(&output);
    assert_eq!(summary["cut"], "known_at", "{summary}");
    assert_eq!(summary["position"], position, "{summary}");
    assert_eq!(summary["events"], position, "{summary}");

    let by_position = source.file("position.db");
    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--position",
            &position.to_string(),
            "--out",
            by_position.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let line = String::from_utf8_lossy(&output.stdout);
    assert!(
        line.starts_with("snapshot of customer_360, pipeline, service_backlog, customer_timeline")
            && line.contains(&format!("at position {position}")),
        "{line}"
    );

    let time_cut = dump(&open_snapshot(&by_time).await).await;
    let position_cut = dump(&open_snapshot(&by_position).await).await;
    assert_same(&time_cut, &position_cut, "--known-at vs --position");
    assert_same(
        &time_cut,
        &reference(read_log(source.store.as_ref(), position).await).await,
        "--known-at vs the cut log",
    );

    // Before the first event: empty read models, and the file says so.
    let early = source.file("early.db");
    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--known-at",
            "2000-01-01T00:00:00Z",
            "--out",
            early.to_str().expect("utf-8"),
            "--json",
        ],
    )
    .await;
    assert_eq!(stdout_json(&output)["position"], 0);
    let empty = dump(&open_snapshot(&early).await).await;
    assert!(empty.values().all(Vec::is_empty), "{empty:?}");
}

fn at(day: u32) -> chrono::DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(2026, 3, day)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("date")
        .and_utc()
}

fn order(n: u128, order_id: &str, amount: &str, day: u32) -> Emitted {
    Emitted {
        tenant: "acme",
        event_type: "OrderPlaced",
        data: serde_json::json!({
            "customer_id": "c-1", "order_id": order_id, "amount": amount, "currency": "EUR"
        }),
        occurred_at: at(day),
        id: uuid::Uuid::from_u128(n),
    }
}

/// `c-1`'s order count and last order time (microseconds) in a snapshot file.
async fn orders_of_c1(path: &Path) -> Vec<SqlValue> {
    let rows = open_snapshot(path)
        .await
        .fetch(
            "SELECT orders, last_order_at FROM rm_customer_360 WHERE tenant = 'acme' AND id = 'c-1'",
            vec![],
            &[Col::Int, Col::Int],
        )
        .await
        .expect("query");
    rows.into_iter().next().expect("c-1 in the snapshot")
}

/// A backdated event (recorded last, occurred before an event recorded earlier) is where the
/// two time cuts part: `--as-of` (business time) keeps it and leaves out the later order,
/// `--known-at` (recording time) the other way round; in `snapshot` and in `timeline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_cuts_by_business_time_and_known_at_by_recording_time() {
    let registered = Emitted {
        tenant: "acme",
        event_type: "CustomerRegistered",
        data: serde_json::json!({"customer_id": "c-1", "kind": "person", "name": "Ada"}),
        occurred_at: at(1),
        id: uuid::Uuid::from_u128(1),
    };
    let source = SqliteSource::seeded(&[registered, order(2, "o-1", "10.00", 20)]).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Recorded now, occurred on 5 March: before o-1 in business time, after it in the log.
    append_all(source.store.as_ref(), &[order(3, "o-2", "5.00", 5)]).await;
    let log = read_log(source.store.as_ref(), 3).await;
    assert_eq!(log.len(), 3);

    let snapshot = |flag: &'static str, value: String, name: &'static str| {
        let path = source.file(name);
        let store = source.arg();
        async move {
            let output = replay(
                &store,
                &[
                    "snapshot",
                    flag,
                    &value,
                    "--out",
                    path.to_str().expect("utf-8"),
                    "--json",
                ],
            )
            .await;
            (stdout_json(&output), path)
        }
    };
    let (business, business_file) =
        snapshot("--as-of", "2026-03-10T00:00:00Z".to_owned(), "as-of.db").await;
    assert_eq!(business["cut"], "as_of", "{business}");
    // Positions 1 and 3: the cut's last position is the backdated event's.
    assert_eq!(
        (business["events"].as_u64(), business["position"].as_u64()),
        (Some(2), Some(3))
    );
    let (recorded, recorded_file) = snapshot("--known-at", between.clone(), "known-at.db").await;
    assert_eq!(recorded["cut"], "known_at", "{recorded}");
    assert_eq!(
        (recorded["events"].as_u64(), recorded["position"].as_u64()),
        (Some(2), Some(2))
    );

    // One order each, but not the same one.
    assert_eq!(
        orders_of_c1(&business_file).await,
        vec![SqlValue::Int(1), SqlValue::Int(at(5).timestamp_micros())]
    );
    assert_eq!(
        orders_of_c1(&recorded_file).await,
        vec![SqlValue::Int(1), SqlValue::Int(at(20).timestamp_micros())]
    );
    // Every read model equals a rebuild from exactly the events of its cut.
    let by_business = dump(&open_snapshot(&business_file).await).await;
    let by_recording = dump(&open_snapshot(&recorded_file).await).await;
    assert_ne!(by_business, by_recording);
    let occurred: Vec<RecordedEvent> = log
        .iter()
        .filter(|e| e.occurred_at <= at(10))
        .cloned()
        .collect();
    assert_eq!(
        occurred.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_same(
        &by_business,
        &reference(occurred).await,
        "--as-of vs occurred_at cut",
    );
    assert_same(
        &by_recording,
        &reference(log[..2].to_vec()).await,
        "--known-at vs recorded cut",
    );

    // The timeline: the same two cuts over c-1's events.
    let orders_in = |output: Output| -> Vec<String> {
        assert!(output.status.success(), "{}", stderr(&output));
        stdout_json(&output)["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["data"]["order_id"].as_str().unwrap_or("-").to_owned())
            .collect()
    };
    let timeline = |flag: &'static str, value: String| {
        let store = source.arg();
        async move {
            replay(
                &store,
                &[
                    "timeline", "c-1", "--tenant", "acme", flag, &value, "--json",
                ],
            )
            .await
        }
    };
    assert_eq!(
        orders_in(timeline("--as-of", "2026-03-10T00:00:00Z".to_owned()).await),
        vec!["-", "o-2"]
    );
    assert_eq!(
        orders_in(timeline("--known-at", between).await),
        vec!["-", "o-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_refuses_an_existing_file_a_position_beyond_the_head_and_a_bad_time() {
    let source = SqliteSource::seeded(&history(3, 10, 200)).await;
    let head = source.store.head_position().await.expect("head");

    let existing = source.file("taken.db");
    std::fs::write(&existing, "keep me").expect("write");
    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--position",
            "1",
            "--out",
            existing.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(&existing).expect("read"),
        "keep me",
        "the existing file is untouched"
    );

    let beyond = source.file("beyond.db");
    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--position",
            &(head + 1).to_string(),
            "--out",
            beyond.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("beyond the head of the log (position {head})")),
        "{}",
        stderr(&output)
    );
    assert!(!beyond.exists(), "nothing is created");

    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--as-of",
            "yesterday",
            "--out",
            beyond.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("RFC 3339"), "{}", stderr(&output));
    assert!(!beyond.exists(), "nothing is created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_file_opens_with_plain_sqlite_and_says_what_it_is() {
    let source = SqliteSource::seeded(&history(4, 30, 1_200)).await;
    let head = source.store.head_position().await.expect("head");
    let out = source.file("analyst.db");
    let output = replay(
        &source.arg(),
        &[
            "snapshot",
            "--position",
            &head.to_string(),
            "--out",
            out.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    for companion in ["analyst.db-wal", "analyst.db-shm"] {
        assert!(!source.file(companion).exists(), "{companion} is folded in");
    }

    // No crm code from here on: plain sqlx on a read-only file.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&out).read_only(true))
        .await
        .expect("plain sqlite opens it");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .expect("journal mode");
    assert_eq!(mode, "delete", "one self-contained file");
    for view in [
        "rm_customer_360",
        "rm_opportunities",
        "rm_cases",
        "rm_customer_timeline",
    ] {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {view}")))
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{view}: {e}"));
        assert!(count > 0, "{view} has rows");
    }
    let (kind, value, position, events, source_head, store, created_at): (
        String,
        String,
        i64,
        i64,
        i64,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT cut_kind, cut_value, position, events, source_head, source_store, created_at \
         FROM crm_snapshot",
    )
    .fetch_one(&pool)
    .await
    .expect("crm_snapshot");
    assert_eq!(kind, "position");
    assert_eq!(value, head.to_string());
    assert_eq!(position, head as i64);
    assert_eq!(events, head as i64);
    assert_eq!(source_head, head as i64);
    assert_eq!(store, source.arg());
    assert!(
        chrono::DateTime::parse_from_rfc3339(&created_at).is_ok(),
        "{created_at}"
    );
    let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_projection_leases")
        .fetch_one(&pool)
        .await
        .expect("leases");
    assert_eq!(leases, 0, "no lease is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_leaves_no_file_behind() {
    let source = SqliteSource::new().await;
    let tenant = TenantId::parse("default").expect("tenant");
    for customer in crm_tests::bench_data::generate(4_000, 42) {
        source
            .store
            .append(
                &tenant,
                &customer.stream,
                crm_core::store::ExpectedRevision::NoStream,
                customer.events,
            )
            .await
            .expect("append");
    }
    let out = source.file("interrupted.db");
    let mut child = command(
        &source.arg(),
        &[
            "snapshot",
            "--position",
            "40000",
            "--out",
            out.to_str().expect("utf-8"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start crm-replay snapshot");
    // Interrupt once the first batches are in the file.
    let started = Instant::now();
    loop {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the snapshot ended before it could be interrupted"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        if out.exists() {
            let options = SqliteConnectOptions::new().filename(&out).read_only(true);
            if let Ok(pool) = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
            {
                let moved: Result<i64, _> = sqlx::query_scalar(
                    "SELECT count(*) FROM crm_projection_checkpoints WHERE position > 0",
                )
                .fetch_one(&pool)
                .await;
                pool.close().await;
                if moved.is_ok_and(|n| n > 0) {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("interrupted"),
        "{}",
        stderr(&output)
    );
    for name in ["interrupted.db", "interrupted.db-wal", "interrupted.db-shm"] {
        assert!(!source.file(name).exists(), "{name} is removed");
    }
}

/// Row counts of the main views, as a reader would ask.
async fn counts(db: &ReadDb) -> Vec<i64> {
    let mut out = Vec::new();
    for view in [
        "rm_customer_360",
        "rm_opportunities",
        "rm_cases",
        "rm_customer_timeline",
    ] {
        let rows = db
            .fetch(&format!("SELECT count(*) FROM {view}"), vec![], &[Col::Int])
            .await
            .expect("count");
        out.push(rows[0][0].as_int().expect("int"));
    }
    out
}

async fn generations(db: &ReadDb) -> BTreeMap<String, i64> {
    stored_positions(db)
        .await
        .expect("positions")
        .into_iter()
        .map(|s| (s.projection, s.generation))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_while_a_server_runs_is_done_by_it_and_reads_keep_answering() {
    let source = SqliteSource::seeded(&history(5, 60, 3_000)).await;
    let head = source.store.head_position().await.expect("head");
    // The serving process: a runner on the same store, as crm-api serve starts one.
    let db = ReadDb::open(&source.url).await.expect("read db");
    let server = runner::start(
        source.store.clone(),
        db.clone(),
        all_projections(),
        RunnerOptions {
            batch_size: 50,
            catch_up_batch_size: 50,
            poll_interval: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(5),
            stop_when_caught_up: false,
        },
    );
    assert!(
        server.wait_for(&[], head, Duration::from_secs(120)).await,
        "the server caught up: {:?}",
        server.status()
    );
    let before = dump(&db).await;
    let before_counts = counts(&db).await;
    let before_generations = generations(&db).await;
    assert_eq!(
        before_generations.len(),
        crm_projections::all_projections().len(),
        "{before_generations:?}"
    );

    let mut seen_rebuilding = server.subscribe();
    let watcher = tokio::spawn(async move {
        loop {
            if seen_rebuilding
                .borrow_and_update()
                .iter()
                .any(|s| s.rebuild.is_some())
            {
                return true;
            }
            if seen_rebuilding.changed().await.is_err() {
                return false;
            }
        }
    });
    let mut child = command(&source.arg(), &["rebuild", "--all", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crm-replay rebuild");
    let started = Instant::now();
    let mut reads = 0;
    while child.try_wait().expect("poll child").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the rebuild finishes"
        );
        assert_eq!(
            counts(&db).await,
            before_counts,
            "readers see a whole generation"
        );
        let listed = customer360::list(
            &db,
            "acme",
            &CustomerFilter {
                limit: 5,
                ..CustomerFilter::default()
            },
        )
        .await
        .expect("reads answer during the rebuild");
        assert_eq!(listed.len(), 5);
        reads += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let summary = stdout_json(&output);
    assert!(reads > 0, "reads were made while the rebuild ran");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .is_ok_and(|seen| seen.is_ok_and(|s| s)),
        "the server ran the rebuild"
    );
    let rebuilt = summary["projections"].as_array().expect("projections");
    assert_eq!(
        rebuilt.len(),
        crm_projections::all_projections().len(),
        "{summary}"
    );
    for projection in rebuilt {
        assert_eq!(
            projection["built_here"], false,
            "the server did it: {summary}"
        );
        assert_eq!(projection["position"], head, "{summary}");
    }
    let after_generations = generations(&db).await;
    for (name, generation) in &before_generations {
        assert_eq!(
            after_generations[name],
            generation + 1,
            "{name} advanced one generation"
        );
    }
    assert_same(&dump(&db).await, &before, "rebuilt vs before");
    server.shutdown().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_without_a_server_is_done_by_the_tool_itself() {
    let source = SqliteSource::seeded(&history(6, 40, 2_000)).await;
    let head = source.store.head_position().await.expect("head");

    // Never started on this store: the tool creates generation 1 from 0.
    let summary = stdout_json(&replay(&source.arg(), &["rebuild", "--all", "--json"]).await);
    for projection in summary["projections"].as_array().expect("projections") {
        assert_eq!(projection["generation_before"], 0, "{summary}");
        assert_eq!(projection["generation"], 1, "{summary}");
        assert_eq!(projection["built_here"], true, "{summary}");
        assert_eq!(projection["position"], head, "{summary}");
    }
    let db = ReadDb::open(&source.url).await.expect("read db");
    let first = dump(&db).await;
    assert_same(
        &first,
        &reference(read_log(source.store.as_ref(), head).await).await,
        "first build vs the log",
    );

    // One projection: only its generation moves.
    let output = replay(&source.arg(), &["rebuild", "pipeline"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let line = String::from_utf8_lossy(&output.stdout);
    assert!(
        line.starts_with(&format!("rebuilt pipeline to position {head} in ")),
        "{line}"
    );
    let generations = generations(&db).await;
    assert_eq!(generations["pipeline"], 2, "{generations:?}");
    assert_eq!(generations["customer_360"], 1, "{generations:?}");

    // Everything again: one more generation each, the same rows.
    let summary = stdout_json(&replay(&source.arg(), &["rebuild", "--all", "--json"]).await);
    assert_eq!(summary["position"], head);
    let generations = self::generations(&db).await;
    assert_eq!(generations["pipeline"], 3, "{generations:?}");
    assert_eq!(generations["customer_360"], 2, "{generations:?}");
    assert_same(&dump(&db).await, &first, "rebuilt vs first build");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_refuses_an_unknown_projection_listing_the_known_ones() {
    let source = SqliteSource::seeded(&history(2, 4, 40)).await;
    let output = replay(&source.arg(), &["rebuild", "customers"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "unknown projection `customers` (known: customer_360, pipeline, service_backlog, customer_timeline, leads, campaigns, accounts, tasks, order_lines, quotas, consent, service_quality)"
        ),
        "{}",
        stderr(&output)
    );
    let output = replay(&source.arg(), &["rebuild"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--all (known: customer_360, pipeline"),
        "{}",
        stderr(&output)
    );
}

/// Seeds the timing store: `crm_tests::bench_data::generate(100_000, 42)`, one million events,
/// at `CRM_REPLAY_BENCH_STORE` (a SQLite file path; skipped when it exists). Run with
/// `cargo test --release -p crm-replay --test snapshot_rebuild -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "seeds a one-million-event store for timing"]
async fn seed_the_timing_store() {
    let Ok(path) = std::env::var("CRM_REPLAY_BENCH_STORE") else {
        eprintln!("set CRM_REPLAY_BENCH_STORE to a SQLite file path");
        return;
    };
    let path = PathBuf::from(path);
    if path.exists() {
        eprintln!("{} exists; not seeding", path.display());
        return;
    }
    let store = crm_tests::open_test_store(&StoreUrl::Sqlite {
        path,
        durability: Durability::Normal,
    })
    .await
    .expect("open store");
    let tenant = TenantId::parse("default").expect("tenant");
    let customers = crm_tests::bench_data::generate(100_000, 42);
    for chunk in customers.chunks(1_000) {
        let mut expectations = Vec::new();
        let mut events = Vec::new();
        for customer in chunk {
            expectations.push(StreamExpectation::new(
                customer.stream.clone(),
                crm_core::store::ExpectedRevision::NoStream,
            ));
            for event in &customer.events {
                events.push((customer.stream.clone(), event.clone()));
            }
        }
        store
            .append_batch(&tenant, expectations, events)
            .await
            .expect("append");
    }
    assert_eq!(store.head_position().await.expect("head"), 1_000_000);
}
