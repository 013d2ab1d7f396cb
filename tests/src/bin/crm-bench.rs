//! crm-bench: runs the workloads of `shared/design/BENCHMARKS.md` against a fresh store and
//! prints one JSON object per line. Run it in release mode:
//! `cargo run --release -p crm-tests --bin crm-bench -- all --backend sqlite`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use crm_core::envelope::RecordedEvent;
use crm_core::store::postgres::PostgresEventStore;
use crm_core::store::sqlite::Durability;
use crm_core::store::sqlite::SqliteEventStore;
use crm_core::store::{ExpectedRevision, Scope, SharedStore, StoreUrl, subscribe_all};
use crm_projections::bookkeeping::request_rebuild;
use crm_projections::customer360::Customer360Projection;
use crm_projections::db::Col;
use crm_projections::runner::{self, RunnerOptions};
use crm_projections::{ReadDb, all_projections};
use crm_tests::api_bench;
use crm_tests::bench_data::{CustomerEvents, generate};
use crm_tests::postgres::TestDatabase;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    W1,
    W2,
    W3,
    /// Rebuild of the per-customer summary (the customer 360) through the projection runner.
    W4,
    /// Rebuild of every read model from position 0.
    W5,
    /// Driver-only baselines of W1 and W2: the same rows through plain sqlx statements.
    Baseline,
    /// Query latency: random GET /v1/customers/{id} on the real crm-api, 8 connections.
    Q1,
    /// API ingest: POST /v1/events to the real crm-api, 500 events a request, 4 connections.
    A1,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark workloads W1-W5, Q1, A1 (and driver-only baselines) on a fresh store")]
struct Args {
    workload: Workload,
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Customers in the data set (10 events each).
    #[arg(long, default_value_t = 10_000)]
    customers: u64,
    /// Events timed in W1.
    #[arg(long, default_value_t = 20_000)]
    w1_events: usize,
    /// Events per projection batch (W4, W5).
    #[arg(long, default_value_t = RunnerOptions::default().batch_size)]
    batch: usize,
    /// Repetitions, each on a fresh store.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

/// A fresh store that lives as long as this value.
struct Fresh {
    store: SharedStore,
    url: StoreUrl,
    /// The store as `crm-api --store` takes it.
    store_arg: String,
    durability: &'static str,
    _guard: Box<dyn std::any::Any>,
}

async fn fresh(backend: Backend) -> Result<Fresh> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("crm-bench")
                .tempdir_in(std::env::current_dir()?)?;
            let path = dir.path().join("events.db");
            let store = SqliteEventStore::open(&path).await?;
            Ok(Fresh {
                store: Arc::new(store),
                store_arg: format!("sqlite://{}", path.display()),
                url: StoreUrl::Sqlite {
                    path,
                    durability: Durability::Normal,
                },
                durability: "sqlite WAL synchronous=NORMAL",
                _guard: Box::new(dir),
            })
        }
        Backend::Postgres => {
            let Some(db) = TestDatabase::create("crm-bench").await else {
                bail!("PostgreSQL is not reachable; set CRM_TEST_POSTGRES_URL");
            };
            let store = PostgresEventStore::connect(db.url()).await?;
            Ok(Fresh {
                store: Arc::new(store),
                store_arg: db.url().to_owned(),
                url: StoreUrl::Postgres {
                    url: db.url().to_owned(),
                },
                durability: "postgres synchronous_commit=on",
                _guard: Box::new(db),
            })
        }
    }
}

fn report(workload: &str, backend: Backend, fresh: &Fresh, events: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "workload": workload,
            "backend": format!("{backend:?}").to_lowercase(),
            "events": events,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "events_per_s": (events as f64 / seconds).round(),
            "durability": fresh.durability,
            // This process's peak since the previous figure (the generated data set, held
            // in memory throughout, included).
            "peak_rss_mib": api_bench::peak_rss_mib("/proc/self/status"),
        })
    );
    api_bench::reset_peak_rss();
}

async fn w1(backend: Backend, data: &[CustomerEvents], limit: usize) -> Result<()> {
    let fresh = fresh(backend).await?;
    let tenant = crm_core::envelope::TenantId::parse("bench")?;
    let started = Instant::now();
    let mut written = 0;
    'outer: for customer in data {
        for (revision, event) in customer.events.iter().enumerate() {
            if written == limit {
                break 'outer;
            }
            let expected = match revision {
                0 => ExpectedRevision::NoStream,
                r => ExpectedRevision::Exact(r as u64 - 1),
            };
            fresh
                .store
                .append(&tenant, &customer.stream, expected, vec![event.clone()])
                .await?;
            written += 1;
        }
    }
    report("W1", backend, &fresh, written, started);
    Ok(())
}

async fn w2(fresh: &Fresh, backend: Backend, data: &[CustomerEvents]) -> Result<usize> {
    let tenant = crm_core::envelope::TenantId::parse("bench")?;
    let started = Instant::now();
    let mut written = 0;
    for customer in data {
        fresh
            .store
            .append(
                &tenant,
                &customer.stream,
                ExpectedRevision::NoStream,
                customer.events.clone(),
            )
            .await?;
        written += customer.events.len();
    }
    report("W2", backend, fresh, written, started);
    Ok(written)
}

/// The fields of the benchmark events, deserialised from each event's data.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct BenchEvent {
    customer_id: String,
    channel: Option<String>,
    direction: Option<String>,
    subject: Option<String>,
    summary: Option<String>,
    name: Option<String>,
    email: Option<String>,
    segment: Option<String>,
}

async fn w3(fresh: &Fresh, backend: Backend, expected: usize) -> Result<()> {
    let head = fresh.store.head_position().await?;
    let started = Instant::now();
    let mut subscription = subscribe_all(Arc::clone(&fresh.store), Scope::AllTenants, 0);
    let mut read = 0usize;
    let mut checksum = 0usize;
    while subscription.position() < head {
        let batch: Vec<RecordedEvent> = subscription.next_batch().await?;
        for event in &batch {
            let data: BenchEvent = event.decode_data().context("decode event data")?;
            checksum += data.customer_id.len();
            read += 1;
        }
    }
    if read != expected || checksum == 0 {
        bail!("W3 read {read} events, expected {expected}");
    }
    report("W3", backend, fresh, read, started);
    Ok(())
}

/// W4: the per-customer summary (interactions per channel, last interaction; the customer
/// 360 projection) built from position 0 through the runner, in the same database.
async fn w4(fresh: &Fresh, backend: Backend, expected: usize, batch: usize) -> Result<()> {
    let db = ReadDb::open(&fresh.url).await?;
    let options = RunnerOptions {
        batch_size: batch,
        ..RunnerOptions::default()
    };
    let started = Instant::now();
    let statuses = runner::run_until_caught_up(
        Arc::clone(&fresh.store),
        db.clone(),
        vec![Arc::new(Customer360Projection)],
        options,
    )
    .await?;
    let head = fresh.store.head_position().await?;
    if statuses.iter().any(|s| s.position != head) {
        bail!("W4 stopped short of the head: {statuses:?}");
    }
    report("W4", backend, fresh, expected, started);
    let rows = db
        .fetch(
            "SELECT COUNT(*), CAST(SUM(interactions) AS BIGINT) FROM rm_customer_360",
            vec![],
            &[Col::Int, Col::Int],
        )
        .await?;
    let (customers, interactions) = (rows[0][0].as_int(), rows[0][1].as_int());
    if customers.unwrap_or(0) == 0 || interactions.unwrap_or(0) == 0 {
        bail!("W4 built nothing: {customers:?} customers, {interactions:?} interactions");
    }
    Ok(())
}

/// W5: every read model rebuilt from position 0 (blue/green for those already built).
async fn w5(fresh: &Fresh, backend: Backend, expected: usize, batch: usize) -> Result<()> {
    let db = ReadDb::open(&fresh.url).await?;
    for projection in all_projections() {
        request_rebuild(&db, projection.name()).await?;
    }
    let options = RunnerOptions {
        batch_size: batch,
        ..RunnerOptions::default()
    };
    let started = Instant::now();
    let statuses =
        runner::run_until_caught_up(Arc::clone(&fresh.store), db, all_projections(), options)
            .await?;
    let head = fresh.store.head_position().await?;
    if statuses.iter().any(|s| s.position != head) {
        bail!("W5 stopped short of the head: {statuses:?}");
    }
    report("W5", backend, fresh, expected, started);
    Ok(())
}

/// The same rows as W1 (one transaction per event) and W2 (one per customer), written with
/// plain sqlx statements into a table shaped like the event log: no planning, no hashing,
/// no idempotency or revision checks. What the driver alone costs, for ratios.
async fn baseline(backend: Backend, data: &[CustomerEvents], w1_limit: usize) -> Result<()> {
    use sqlx::Connection;
    let table = "CREATE TABLE baseline (position BIGINT PRIMARY KEY, tenant TEXT NOT NULL, \
         stream_id TEXT NOT NULL, revision BIGINT NOT NULL, event_id BLOB NOT NULL, \
         event_type TEXT NOT NULL, data TEXT NOT NULL, occurred_at BIGINT NOT NULL, \
         UNIQUE (tenant, stream_id, revision), UNIQUE (tenant, stream_id, event_id))";
    macro_rules! run {
        ($conn:expr, $insert:expr, $fresh:expr) => {{
            for (label, per_tx, limit) in [
                ("W1-baseline", 1usize, w1_limit),
                ("W2-baseline", 10, usize::MAX),
            ] {
                sqlx::raw_sql("DROP TABLE IF EXISTS baseline")
                    .execute(&mut $conn)
                    .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(table.to_owned()))
                    .execute(&mut $conn)
                    .await?;
                let started = Instant::now();
                let mut position = 0i64;
                'customers: for customer in data {
                    for chunk in customer.events.chunks(per_tx) {
                        if position as usize >= limit {
                            break 'customers;
                        }
                        let mut tx = $conn.begin().await?;
                        for event in chunk {
                            position += 1;
                            sqlx::query($insert)
                                .bind(position)
                                .bind("bench")
                                .bind(customer.stream.as_str())
                                .bind(position % 10)
                                .bind(event.event_id.as_bytes().to_vec())
                                .bind(event.event_type.as_str())
                                .bind(event.data.get())
                                .bind(event.occurred_at.map_or(0, |t| t.timestamp_micros()))
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                    }
                }
                report(label, backend, &$fresh, position as usize, started);
            }
        }};
    }
    let fresh = fresh(backend).await?;
    match backend {
        Backend::Sqlite => {
            let path = std::env::current_dir()?.join("crm-bench-baseline.db");
            let _ = std::fs::remove_file(&path);
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            run!(
                conn,
                "INSERT INTO baseline VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                fresh
            );
            conn.close().await?;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        Backend::Postgres => {
            let Some(db) = TestDatabase::create("crm-bench-baseline").await else {
                bail!("PostgreSQL is not reachable");
            };
            let mut conn = sqlx::PgConnection::connect(db.url()).await?;
            sqlx::raw_sql("CREATE DOMAIN blob AS bytea")
                .execute(&mut conn)
                .await?;
            run!(
                conn,
                "INSERT INTO baseline VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                fresh
            );
            conn.close().await?;
        }
    }
    Ok(())
}

/// Q1: the W2 data projected by a real `crm-api`, then random customer reads.
async fn q1(fresh: &Fresh, backend: Backend, customers: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start(&fresh.store_arg, dir.path(), "bench", "analyst")?;
    let head = fresh.store.head_position().await?;
    server.wait_caught_up(head).await?;
    let figures = api_bench::q1(&server, customers, 10_000, 8).await?;
    println!(
        "{}",
        json!({
            "workload": "Q1",
            "backend": format!("{backend:?}").to_lowercase(),
            "requests": figures.requests,
            "connections": 8,
            "seconds": (figures.seconds * 1000.0).round() / 1000.0,
            "requests_per_s": (figures.requests as f64 / figures.seconds).round(),
            "p50_ms": (figures.p50_ms * 1000.0).round() / 1000.0,
            "p99_ms": (figures.p99_ms * 1000.0).round() / 1000.0,
            "max_ms": (figures.max_ms * 1000.0).round() / 1000.0,
            "durability": fresh.durability,
            "server_peak_rss_mib": server.peak_rss_mib(),
        })
    );
    Ok(())
}

/// A1: the data set through `POST /v1/events` of a real `crm-api` on a fresh store.
async fn a1(backend: Backend, data: &[CustomerEvents]) -> Result<()> {
    let fresh = fresh(backend).await?;
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start(&fresh.store_arg, dir.path(), "bench", "ingest")?;
    let (events, seconds) = api_bench::a1(&server, data, 500, 4).await?;
    println!(
        "{}",
        json!({
            "workload": "A1",
            "backend": format!("{backend:?}").to_lowercase(),
            "events": events,
            "events_per_request": 500,
            "connections": 4,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "events_per_s": (events as f64 / seconds).round(),
            "durability": fresh.durability,
            "server_peak_rss_mib": server.peak_rss_mib(),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let data = generate(args.customers, 42);
    api_bench::reset_peak_rss();
    for _ in 0..args.runs {
        if matches!(args.workload, Workload::Baseline | Workload::All) {
            baseline(args.backend, &data, args.w1_events).await?;
        }
        if matches!(args.workload, Workload::W1 | Workload::All) {
            w1(args.backend, &data, args.w1_events).await?;
        }
        if matches!(args.workload, Workload::A1 | Workload::All) {
            a1(args.backend, &data).await?;
        }
        if !matches!(
            args.workload,
            Workload::W1 | Workload::Baseline | Workload::A1
        ) {
            let fresh = fresh(args.backend).await?;
            let written = w2(&fresh, args.backend, &data).await?;
            if matches!(args.workload, Workload::W3 | Workload::All) {
                w3(&fresh, args.backend, written).await?;
            }
            if matches!(args.workload, Workload::W4 | Workload::All) {
                w4(&fresh, args.backend, written, args.batch).await?;
            }
            if matches!(args.workload, Workload::W5 | Workload::All) {
                w5(&fresh, args.backend, written, args.batch).await?;
            }
            if matches!(args.workload, Workload::Q1 | Workload::All) {
                q1(&fresh, args.backend, args.customers).await?;
            }
        }
    }
    Ok(())
}
