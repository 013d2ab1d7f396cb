//! crm-bench: runs the workloads of `shared/design/BENCHMARKS.md` against a fresh store and
//! prints one JSON object per line. Run it in release mode:
//! `cargo run --release -p crm-tests --bin crm-bench -- all --backend sqlite`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use crm_core::envelope::RecordedEvent;
use crm_core::store::postgres::PostgresEventStore;
use crm_core::store::sqlite::SqliteEventStore;
use crm_core::store::{ExpectedRevision, Scope, SharedStore, subscribe_all};
use crm_tests::bench_data::{CustomerEvents, generate};
use crm_tests::postgres::TestDatabase;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    W1,
    W2,
    W3,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark workloads W1-W3 on a fresh store")]
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
    /// Repetitions, each on a fresh store.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

/// A fresh store that lives as long as this value.
struct Fresh {
    store: SharedStore,
    durability: &'static str,
    _guard: Box<dyn std::any::Any>,
}

async fn fresh(backend: Backend) -> Result<Fresh> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("crm-bench")
                .tempdir_in(std::env::current_dir()?)?;
            let store = SqliteEventStore::open(dir.path().join("events.db")).await?;
            Ok(Fresh {
                store: Arc::new(store),
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
        })
    );
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

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let data = generate(args.customers, 42);
    for _ in 0..args.runs {
        if matches!(args.workload, Workload::W1 | Workload::All) {
            w1(args.backend, &data, args.w1_events).await?;
        }
        if matches!(args.workload, Workload::W2 | Workload::W3 | Workload::All) {
            let fresh = fresh(args.backend).await?;
            let written = w2(&fresh, args.backend, &data).await?;
            if matches!(args.workload, Workload::W3 | Workload::All) {
                w3(&fresh, args.backend, written).await?;
            }
        }
    }
    Ok(())
}
