//! crm-bench: runs the workloads of `docs/benchmarks.md` ("The workloads") against a fresh
//! store and prints one JSON object per line. Run it in release mode:
//! `cargo run --release -p crm-tests --bin crm-bench -- all --backend sqlite`.

use std::collections::{BTreeMap, HashMap};
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
use crm_projections::{ReadDb, select_projections};
use crm_tests::api_bench;
use crm_tests::baseline::{self, BenchEvent, Want};
use crm_tests::bench_data::{CustomerEvents, crm_mix, generate_with};
use crm_tests::postgres::TestDatabase;
use crm_tests::tree_bench;
use crm_tests::webhook_bench;
use crm_tests::webhook_receiver::Mode;
use serde_json::json;

/// mimalloc instead of the system allocator: decoding, folding and serialising events
/// allocate many small, short-lived values, which glibc's allocator serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Single appends: one event per append call, the first 20,000 events.
    W1,
    /// Batched appends: each customer's 10 events in one append, on a fresh store.
    W2,
    /// Read all: after W2, every event in global order through the store's subscription API.
    W3,
    /// Rebuild of the per-customer summary (the customer 360) through the projection runner.
    W4,
    /// Rebuild of every read model from position 0.
    W5,
    /// Only the driver-only baselines (sqlx; rusqlite too on SQLite).
    Baseline,
    /// Query latency: random GET /v1/customers/{id} on the real crm-api, 8 connections.
    Q1,
    /// API ingest: POST /v1/events to the real crm-api, 500 events a request, 4 connections.
    A1,
    /// The audit tree worker's own rate: after W2's appends, from position 0 to the head.
    T1,
    /// After T1: 100 inclusion proofs of random events and 100 consistency proofs.
    P1,
    /// Analytics (issue 17): customers with orders (simulated BG/NBD + Gamma-Gamma) projected
    /// into the 360 and its stored summaries, then the day's fit from the stored summaries and
    /// every customer scored from them. `--customers` sets how many (default 100,000).
    S1,
    /// Webhooks (issue 20): deliveries per second of one subscription to every event, then
    /// append→delivery latency of single appends (p50, p99).
    H1,
    /// Webhooks (issue 20): A1 alone, A1 beside a subscription whose endpoint never answers,
    /// and A1 beside one that answers at once, alternating within each run.
    H2,
    /// Concurrent single appends (issue 21): `--clients` tasks on one store handle, one event
    /// per append, each to a stream of its own, `--w1-events` appends; beside the same
    /// appends from one client, and on PostgreSQL the same rows by `--clients` plain
    /// connections with autocommit INSERTs.
    W6,
    /// The cost ladder (issue 21): W1-W3 with the plain driver on a minimal event table, then
    /// adding one by one each column, index and statement the store keeps per event
    /// (`crm_tests::ladder`), then the store's own W1-W3 on the same data.
    Ladder,
    /// Mixed load (issue 21): A1 for its maximum rate, then Q1 on a store holding the data
    /// set while the real crm-api ingests as many new customers' events at half that rate
    /// (`--rate` to set it).
    W7,
    /// Three crm-api processes on one PostgreSQL (issue 21): the data set ingested through all
    /// three at once, then every customer's 360 view and a sample of timelines checked
    /// against the data set through the three servers (nothing skipped or applied twice).
    A3,
    /// The web console (issue 22): a store of `--events` (default 100,000) of the whole CRM
    /// history (`crm_tests::crm_full`), the real crm-api on it, then each console page
    /// `--console-rounds` times over many customers with its JSON API call beside it
    /// (`crm_tests::console_bench`).
    Console,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark workloads W1-W5, Q1, A1 of docs/benchmarks.md on a fresh \
    store, each beside a driver-only baseline measured in the same run"
)]
struct Args {
    #[arg(value_enum, ignore_case = true)]
    workload: Workload,
    #[arg(long, value_enum, ignore_case = true, default_value = "sqlite")]
    backend: Backend,
    /// Events in the data set (10 per customer): 100,000 as written, more to scale up.
    #[arg(long, conflicts_with = "customers")]
    events: Option<u64>,
    /// Customers in the data set (10 events each); another way to say --events.
    #[arg(long)]
    customers: Option<u64>,
    /// Events timed in W1.
    #[arg(long, default_value_t = 20_000)]
    w1_events: usize,
    /// Events per projection batch (W4, W5) once a projection follows the head.
    #[arg(long, default_value_t = RunnerOptions::default().batch_size)]
    batch: usize,
    /// Events per projection batch (W4, W5) while catching up (a rebuild from 0).
    #[arg(long, default_value_t = RunnerOptions::default().catch_up_batch_size)]
    catch_up_batch: usize,
    /// W5: rebuild only the named read models (repeatable; all of them without it), to
    /// see what each costs alone.
    #[arg(long = "projection")]
    projections: Vec<String>,
    /// Repetitions, each on a fresh store.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Skip the driver-only baselines.
    #[arg(long)]
    no_baseline: bool,
    /// Also run W1-W5 through the sealing store (personal fields encrypted on append,
    /// decrypted on read), each right after its plain twin, as `W2-sealed` and so on; the
    /// data set then gives each registration a phone number too (every personal field
    /// filled), for both twins. The API workloads (Q1, A1) always seal: the server does.
    #[arg(long)]
    seal: bool,
    /// Also run W1 and W2 with the audit tree worker following the store as they append, each
    /// right after its plain twin, as `W1+tree` and `W2+tree` (issue 16: the tree is built
    /// beside the appends, not in them).
    #[arg(long)]
    tree: bool,
    /// Extend the data set with the event types of issue 18 (each customer also places two
    /// orders with lines; every hundredth customer stands for a sales rep with quotas), for
    /// W5 over the new read models; without it the data set is the default one.
    #[arg(long)]
    crm_mix: bool,
    /// W7: the ingest rate in events per second (default: half of A1 measured first).
    #[arg(long)]
    rate: Option<f64>,
    /// W6: concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// W6: also spread the clients over this many `crm-concurrent-writer` processes on the
    /// same store (`W6-processes`); 0 skips it.
    #[arg(long, default_value_t = 3)]
    processes: usize,
    /// SQLite's `synchronous` for every store of the run: `normal` (the default) or `full`.
    #[arg(long, default_value = "normal")]
    synchronous: String,
    /// Keep every fresh store instead of deleting it, and say where it is on stderr (a SQLite
    /// directory in the working directory, a PostgreSQL database): to measure its size on
    /// disk (docs/operations.md, "Sizing"). Drop or delete them yourself.
    #[arg(long)]
    keep_store: bool,
    /// Also run these of W3, W4, W5 on the same store as the main workload (repeatable): at
    /// 10M events, `q1 --also w4` fills the store once for both.
    #[arg(long, value_enum, ignore_case = true)]
    also: Vec<Workload>,
    /// Q1: fill only the sealed store Q1 reads, without the plain store and its W2 first
    /// (at 10M events on PostgreSQL that W2 alone takes about ten minutes).
    #[arg(long, conflicts_with_all = ["seal", "also"])]
    sealed_only: bool,
    /// W4, W5: run on this existing SQLite store file (an `events.db` kept by `--keep-store`)
    /// instead of filling a fresh one, e.g. to measure each read model's rebuild at 10M
    /// events one after another without filling 10M events each time. The store is changed
    /// (W5 leaves every read model rebuilt); `--events` and the data set are not used.
    /// `w5 --also w4` runs W4 first, in the same process.
    #[arg(long, value_name = "EVENTS_DB", conflicts_with_all = ["events", "customers", "seal", "crm_mix"])]
    on_store: Option<std::path::PathBuf>,
    /// Console: requests of each page (and of its API twin).
    #[arg(long, default_value_t = 500)]
    console_rounds: usize,
}

/// `--keep-store`: fresh stores outlive the run.
static KEEP_STORE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn keep_store() -> bool {
    KEEP_STORE.load(std::sync::atomic::Ordering::Relaxed)
}

/// The SQLite durability of every fresh store of this run (`--synchronous`).
static SQLITE_DURABILITY: std::sync::OnceLock<Durability> = std::sync::OnceLock::new();

/// A fresh store that lives as long as this value.
struct Fresh {
    store: SharedStore,
    /// What the projection runner reads (W4, W5): `store`, or for a sealed store the handle
    /// that opens only the fields the read models fold.
    projection_store: SharedStore,
    /// Appended to workload names: `-sealed` when `store` seals personal fields.
    suffix: &'static str,
    /// The master-key file of the store (and of a server started on it).
    key_file: std::path::PathBuf,
    url: StoreUrl,
    /// The store as `crm-api --store` takes it.
    store_arg: String,
    durability: &'static str,
    _guard: Box<dyn std::any::Any>,
}

/// A fresh store; `sealed` puts the sealing store in front of the backend, with a new
/// master key in a file of its own.
async fn fresh(backend: Backend, sealed: bool) -> Result<Fresh> {
    let mut fresh = fresh_plain(backend).await?;
    if sealed {
        let source = crm_core::privacy::KeySource::file(&fresh.key_file);
        let opened =
            crm_core::privacy::open_private_on(fresh.store.clone(), &fresh.url, &source, true)
                .await?;
        // The runner reads as `crm-api serve` has it read (only the fields it folds opened).
        fresh.projection_store = Arc::new(
            opened
                .store
                .clone()
                .opening_only(crm_projections::PERSONAL_FIELDS_READ),
        );
        fresh.store = Arc::new(opened.store);
        fresh.suffix = "-sealed";
    }
    Ok(fresh)
}

async fn fresh_plain(backend: Backend) -> Result<Fresh> {
    let keys = tempfile::tempdir()?;
    let key_file = keys.path().join("master.key");
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("crm-bench")
                .tempdir_in(std::env::current_dir()?)?;
            let path = dir.path().join("events.db");
            // A kept store keeps its master key beside it, or it could never be opened again.
            let key_file = match keep_store() {
                true => dir.path().join("master.key"),
                false => key_file,
            };
            let dir: Box<dyn std::any::Any> = if keep_store() {
                eprintln!("crm-bench: keeping the store {}", path.display());
                Box::new(dir.keep())
            } else {
                Box::new(dir)
            };
            let durability = *SQLITE_DURABILITY.get_or_init(|| Durability::Normal);
            let mut options = crm_core::store::sqlite::SqliteOptions::new(&path);
            options.durability = durability;
            let store = SqliteEventStore::open_with(options).await?;
            let store: SharedStore = Arc::new(store);
            Ok(Fresh {
                projection_store: Arc::clone(&store),
                store,
                suffix: "",
                key_file,
                store_arg: format!("sqlite://{}", path.display()),
                url: StoreUrl::Sqlite { path, durability },
                durability: match durability {
                    Durability::Full => "sqlite WAL synchronous=FULL",
                    Durability::Extra => "sqlite WAL synchronous=EXTRA",
                    Durability::Normal => "sqlite WAL synchronous=NORMAL",
                },
                _guard: Box::new((dir, keys)),
            })
        }
        Backend::Postgres => {
            let Some(db) = TestDatabase::create("crm-bench").await else {
                bail!("PostgreSQL is not reachable; set CRM_TEST_POSTGRES_URL");
            };
            let url = db.url().to_owned();
            let db: Box<dyn std::any::Any> = if keep_store() {
                eprintln!("crm-bench: keeping the database {}", db.name());
                std::mem::forget(db);
                Box::new(())
            } else {
                Box::new(db)
            };
            let store = PostgresEventStore::connect(&url).await?;
            let store: SharedStore = Arc::new(store);
            Ok(Fresh {
                projection_store: Arc::clone(&store),
                store,
                suffix: "",
                key_file,
                store_arg: url.clone(),
                url: StoreUrl::Postgres { url },
                durability: "postgres synchronous_commit=on",
                _guard: Box::new((db, keys)),
            })
        }
    }
}

/// Prints the figures as JSON lines, each workload beside its baseline of the same run.
#[derive(Debug)]
struct Report {
    backend: Backend,
    /// Baseline label → events per second, from this run.
    baselines: HashMap<String, f64>,
    /// This process's resident set when the current workload started.
    rss_before_mib: Option<f64>,
    /// Every figure of every run: (workload, measure) → values, for the summary.
    collected: BTreeMap<(String, &'static str), Vec<f64>>,
}

/// The measures a summary line gives the median, minimum and maximum of.
const MEASURES: [&str; 9] = [
    "events_per_s",
    "deliveries_per_s",
    "vs_baseline",
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "peak_rss_mib",
    "rss_before_mib",
    "server_peak_rss_mib",
];

impl Report {
    fn new(backend: Backend) -> Report {
        Report {
            backend,
            baselines: HashMap::new(),
            rss_before_mib: None,
            collected: BTreeMap::new(),
        }
    }

    fn backend_name(&self) -> String {
        format!("{:?}", self.backend).to_lowercase()
    }

    /// Starts a workload's memory window.
    fn start(&mut self) {
        api_bench::reset_peak_rss();
        self.rss_before_mib = api_bench::rss_mib("/proc/self/status");
    }

    /// Prints a figure and keeps its measures for the summary.
    fn emit(&mut self, line: serde_json::Value) {
        let workload = line["workload"].as_str().unwrap_or("?").to_owned();
        for measure in MEASURES {
            if let Some(value) = line[measure].as_f64() {
                self.collected
                    .entry((workload.clone(), measure))
                    .or_default()
                    .push(value);
            }
        }
        println!("{line}");
    }

    /// After several runs: per workload, each measure's median, minimum and maximum.
    fn summarise(&self, runs: u32) {
        let mut lines: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
        for ((workload, measure), values) in &self.collected {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let median = if sorted.len() % 2 == 1 {
                sorted[sorted.len() / 2]
            } else {
                (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
            };
            let line = lines.entry(workload).or_insert_with(|| {
                json!({
                    "summary": true,
                    "workload": workload,
                    "backend": self.backend_name(),
                    "runs": runs,
                })
            });
            line[*measure] = json!({
                "median": round3(median),
                "min": round3(sorted[0]),
                "max": round3(sorted[sorted.len() - 1]),
            });
        }
        for line in lines.values() {
            println!("{line}");
        }
    }

    fn print(&mut self, mut line: serde_json::Value) {
        if let Some(object) = line.as_object_mut() {
            // Peak resident set of this process during the workload, and what it held when
            // the workload started (the generated data set, for the writing workloads).
            object.insert("rss_before_mib".into(), json!(self.rss_before_mib));
            object.insert(
                "peak_rss_mib".into(),
                json!(api_bench::peak_rss_mib("/proc/self/status")),
            );
        }
        self.emit(line);
    }

    /// A store workload's figure, with its ratio to `baseline` when that was measured.
    fn workload(
        &mut self,
        workload: &str,
        fresh: &Fresh,
        events: usize,
        started: Instant,
        baseline: &str,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        let events_per_s = events as f64 / seconds;
        let mut line = json!({
            "workload": format!("{workload}{}", fresh.suffix),
            "backend": self.backend_name(),
            "events": events,
            "seconds": round3(seconds),
            "events_per_s": events_per_s.round(),
            "durability": fresh.durability,
        });
        if let Some(base) = self.baselines.get(baseline) {
            line["baseline"] = json!(baseline);
            line["baseline_events_per_s"] = json!(base.round());
            line["vs_baseline"] = json!((events_per_s / base * 100.0).round() / 100.0);
        }
        if let Some(minimal) = self.baselines.get(&format!("{workload}-minimal")) {
            line["vs_minimal"] = json!((events_per_s / minimal * 100.0).round() / 100.0);
        }
        if let Some(rusqlite) = self.baselines.get(&format!("{baseline}-rusqlite")) {
            line["vs_rusqlite_baseline"] = json!((events_per_s / rusqlite * 100.0).round() / 100.0);
        }
        self.print(line);
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

async fn w1(
    out: &mut Report,
    data: &[CustomerEvents],
    limit: usize,
    sealed: bool,
    tree: bool,
) -> Result<()> {
    let fresh = fresh(out.backend, sealed).await?;
    let worker = match tree {
        true => Some(tree_bench::start(&fresh.store, &fresh.url).await?),
        false => None,
    };
    out.start();
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
    let name = if tree { "W1+tree" } else { "W1" };
    out.workload(name, &fresh, written, started, "W1-baseline");
    if let Some(worker) = worker {
        worker.worker.shutdown().await;
    }
    Ok(())
}

/// W2 takes the data set: each customer's events move into their append, as a caller's
/// freshly built events would (the baselines bind the same values by reference).
async fn w2(
    out: &mut Report,
    fresh: &Fresh,
    data: Vec<CustomerEvents>,
    tree: bool,
) -> Result<usize> {
    let tenant = crm_core::envelope::TenantId::parse("bench")?;
    let worker = match tree {
        true => Some(tree_bench::start(&fresh.store, &fresh.url).await?),
        false => None,
    };
    out.start();
    let started = Instant::now();
    let mut written = 0;
    for customer in data {
        let events = customer.events.len();
        fresh
            .store
            .append(
                &tenant,
                &customer.stream,
                ExpectedRevision::NoStream,
                customer.events,
            )
            .await?;
        written += events;
    }
    let name = if tree { "W2+tree" } else { "W2" };
    out.workload(name, fresh, written, started, "W2-baseline");
    if let Some(worker) = worker {
        worker.worker.shutdown().await;
    }
    Ok(written)
}

/// T1 and P1: the tree worker from position 0 to the head of a filled store, then (P1) 100
/// inclusion and 100 consistency proofs, each verified.
async fn t1_p1(
    out: &mut Report,
    fresh: &Fresh,
    written: usize,
    customers: u64,
    proofs: bool,
) -> Result<()> {
    let head = fresh.store.head_position().await?;
    out.start();
    let started = Instant::now();
    let running = tree_bench::start(&fresh.store, &fresh.url).await?;
    tree_bench::wait_for(&running, head).await?;
    out.workload("T1", fresh, written, started, "W2-baseline");
    if proofs {
        let tenant = crm_core::envelope::TenantId::parse("bench")?;
        for (name, figures) in [
            (
                "P1-inclusion",
                tree_bench::inclusion_proofs(&running, &fresh.store, &tenant, customers, 100, 42)
                    .await?,
            ),
            (
                "P1-consistency",
                tree_bench::consistency_proofs(&running, &tenant, 100, 42).await?,
            ),
        ] {
            out.print(json!({
                "workload": name,
                "backend": out.backend_name(),
                "events": written,
                "proofs": figures.count,
                "seconds": round3(figures.total_ms / 1_000.0),
                "p50_ms": round3(figures.p50_ms),
                "p99_ms": round3(figures.p99_ms),
                "durability": fresh.durability,
            }));
        }
    }
    running.worker.shutdown().await;
    Ok(())
}

/// W2's appends without a figure (the store Q1 reads when W2 itself ran plain).
async fn fill(fresh: &Fresh, data: Vec<CustomerEvents>) -> Result<usize> {
    let tenant = crm_core::envelope::TenantId::parse("bench")?;
    let mut written = 0;
    for customer in data {
        written += customer.events.len();
        fresh
            .store
            .append(
                &tenant,
                &customer.stream,
                ExpectedRevision::NoStream,
                customer.events,
            )
            .await?;
    }
    Ok(written)
}

async fn w3(out: &mut Report, fresh: &Fresh, expected: usize) -> Result<()> {
    let head = fresh.store.head_position().await?;
    out.start();
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
    out.workload("W3", fresh, read, started, "W3-baseline");
    Ok(())
}

/// W4: the per-customer summary (interactions per channel, last interaction; the customer
/// 360 projection) built from position 0 through the runner, in the same database.
async fn w4(
    out: &mut Report,
    fresh: &Fresh,
    expected: usize,
    options: RunnerOptions,
) -> Result<()> {
    let db = ReadDb::open(&fresh.url).await?;
    out.start();
    let started = Instant::now();
    let statuses = runner::run_until_caught_up(
        Arc::clone(&fresh.projection_store),
        db.clone(),
        vec![Arc::new(Customer360Projection)],
        options,
    )
    .await?;
    let head = fresh.store.head_position().await?;
    if statuses.iter().any(|s| s.position != head) {
        bail!("W4 stopped short of the head: {statuses:?}");
    }
    out.workload("W4", fresh, expected, started, "W4-baseline");
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
async fn w5(
    out: &mut Report,
    fresh: &Fresh,
    expected: usize,
    options: RunnerOptions,
    names: &[String],
) -> Result<()> {
    let db = ReadDb::open(&fresh.url).await?;
    let projections = select_projections(names)?;
    for projection in &projections {
        request_rebuild(&db, projection.name()).await?;
    }
    out.start();
    let started = Instant::now();
    let statuses = runner::run_until_caught_up(
        Arc::clone(&fresh.projection_store),
        db,
        projections,
        options,
    )
    .await?;
    let head = fresh.store.head_position().await?;
    if statuses.iter().any(|s| s.position != head) {
        bail!("W5 stopped short of the head: {statuses:?}");
    }
    out.workload("W5", fresh, expected, started, "W4-baseline");
    Ok(())
}

/// The driver-only baselines this run's workloads are compared with.
async fn baselines(
    out: &mut Report,
    data: &[CustomerEvents],
    w1_limit: usize,
    want: Want,
) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("crm-bench-baseline")
        .tempdir_in(std::env::current_dir()?)?;
    let (mut figures, durability) = match out.backend {
        Backend::Sqlite => {
            let mut figures = baseline::sqlx_sqlite(dir.path(), data, w1_limit, want).await?;
            figures.extend(baseline::rusqlite(dir.path(), data, w1_limit, want)?);
            (figures, "sqlite WAL synchronous=NORMAL")
        }
        Backend::Postgres => {
            let Some(db) = TestDatabase::create("crm-bench-baseline").await else {
                bail!("PostgreSQL is not reachable; set CRM_TEST_POSTGRES_URL");
            };
            let figures = baseline::sqlx_postgres(db.url(), data, w1_limit, want).await?;
            (figures, "postgres synchronous_commit=on")
        }
    };
    figures.sort_by_key(|f| f.label.clone());
    for figure in figures {
        if figure.events == 0 {
            bail!("{} measured nothing", figure.label);
        }
        out.emit(json!({
            "workload": figure.label,
            "backend": out.backend_name(),
            "driver": figure.driver,
            "events": figure.events,
            "seconds": round3(figure.seconds),
            "events_per_s": figure.events_per_s().round(),
            "durability": durability,
        }));
        out.baselines
            .insert(figure.label.clone(), figure.events_per_s());
    }
    Ok(())
}

/// Q1: the W2 data projected by a real `crm-api`, then random customer reads.
async fn q1(out: &mut Report, fresh: &Fresh, customers: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start(
        &fresh.store_arg,
        dir.path(),
        &fresh.key_file,
        "bench",
        "analyst",
    )?;
    let head = fresh.store.head_position().await?;
    server.wait_caught_up(head).await?;
    out.start();
    let figures = api_bench::q1(&server, customers, 10_000, 8).await?;
    out.print(json!({
        "workload": "Q1",
        "backend": out.backend_name(),
        "requests": figures.requests,
        "connections": 8,
        "seconds": round3(figures.seconds),
        "requests_per_s": (figures.requests as f64 / figures.seconds).round(),
        "p50_ms": round3(figures.p50_ms),
        "p99_ms": round3(figures.p99_ms),
        "max_ms": round3(figures.max_ms),
        "durability": fresh.durability,
        "server_peak_rss_mib": server.peak_rss_mib(),
    }));
    Ok(())
}

/// A1: the data set through `POST /v1/events` of a real `crm-api` on a fresh store; returns
/// its events per second.
async fn a1(out: &mut Report, data: &[CustomerEvents]) -> Result<f64> {
    a1_beside(out, data, None).await
}

/// A3: three servers on one store (`crm_tests::multi_api_bench`).
async fn a3(out: &mut Report, data: Vec<CustomerEvents>) -> Result<()> {
    let fresh = fresh(out.backend, false).await?;
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let mut servers = Vec::new();
    for dir in &dirs {
        servers.push(api_bench::Server::start(
            &fresh.store_arg,
            dir.path(),
            &fresh.key_file,
            "bench",
            "ingest",
        )?);
    }
    let mut parts: Vec<Vec<CustomerEvents>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (n, customer) in data.into_iter().enumerate() {
        parts[n % 3].push(customer);
    }
    out.start();
    let store = Arc::clone(&fresh.store);
    let head = async move { Ok(store.head_position().await?) };
    let figures =
        crm_tests::multi_api_bench::a3(&servers, parts, &fresh.store_arg, dirs[0].path(), head)
            .await?;
    out.print(json!({
        "workload": "A3",
        "backend": out.backend_name(),
        "processes": 3,
        "events": figures.events,
        "events_per_request": 500,
        "connections": 12,
        "seconds": round3(figures.seconds),
        "events_per_s": (figures.events as f64 / figures.seconds).round(),
        "customers_checked": figures.customers_checked,
        "timelines_checked": figures.timelines_checked,
        "durability": fresh.durability,
    }));
    Ok(())
}

/// Console: the pages of the web console beside their API calls (`crm_tests::console_bench`).
async fn console(out: &mut Report, events: u64, rounds: usize) -> Result<()> {
    use crm_tests::console_bench;
    // About 100,000 events for the default: the generator's steps are most of them.
    let steps = (events as usize * 4 / 5).max(1_000);
    let history = crm_tests::crm_full::full_history(22, (events as usize / 25).max(50), steps);
    let fresh = fresh(out.backend, true).await?;
    crm_tests::crm_data::append_all(fresh.store.as_ref(), &history).await;
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start(
        &fresh.store_arg,
        dir.path(),
        &fresh.key_file,
        "acme",
        "admin",
    )?;
    let head = fresh.store.head_position().await?;
    server.wait_caught_up(head).await?;
    let cookie = console_bench::sign_in(&server).await?;
    let (customers, date) = console_bench::customers_and_date(&history, "acme");
    out.start();
    let figures = console_bench::console(&server, &cookie, &customers, date, rounds).await?;
    let worst = figures
        .iter()
        .max_by(|a, b| a.console.p99_ms.total_cmp(&b.console.p99_ms))
        .map(|page| (page.page.name, page.console.p99_ms));
    for page in figures {
        out.print(json!({
            "workload": format!("console-{}", page.page.name),
            "backend": out.backend_name(),
            "events": history.len(),
            "page": page.page.console,
            "requests": page.console.requests,
            "p50_ms": round3(page.console.p50_ms),
            "p99_ms": round3(page.console.p99_ms),
            "max_ms": round3(page.console.max_ms),
            "html_bytes": page.console_bytes,
            "api": page.page.api,
            "api_p50_ms": round3(page.api.p50_ms),
            "api_p99_ms": round3(page.api.p99_ms),
            "durability": fresh.durability,
            "server_peak_rss_mib": server.peak_rss_mib(),
        }));
    }
    if let Some((page, p99)) = worst {
        // Issue 22's target: every page's p99 at or under 50 ms.
        out.print(json!({
            "workload": "console",
            "backend": out.backend_name(),
            "events": history.len(),
            "customers": customers.len(),
            "worst_page": page,
            "worst_p99_ms": round3(p99),
            "target_p99_ms": 50,
            "target_met": p99 <= 50.0,
        }));
    }
    Ok(())
}

/// W7: Q1 under a paced ingest (`crm_tests::mixed_bench`).
async fn w7(out: &mut Report, customers: u64, rate: Option<f64>) -> Result<()> {
    let mut first = dataset(customers * 2, false, false);
    let second = first.split_off(customers as usize);
    let rate = match rate {
        Some(rate) => rate,
        None => a1(out, &first).await? / 2.0,
    };
    let fresh = fresh(out.backend, true).await?;
    fill(&fresh, first).await?;
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start(
        &fresh.store_arg,
        dir.path(),
        &fresh.key_file,
        "bench",
        "analyst",
    )?;
    let head = fresh.store.head_position().await?;
    server.wait_caught_up(head).await?;
    let ingest_key = api_bench::create_key(&fresh.store_arg, dir.path(), "bench", "ingest")?;
    out.start();
    let figures =
        crm_tests::mixed_bench::w7(&server, &ingest_key, &second, rate, customers, 10_000).await?;
    out.print(json!({
        "workload": "W7",
        "backend": out.backend_name(),
        "requests": figures.q1.requests,
        "connections": 8,
        "seconds": round3(figures.q1.seconds),
        "requests_per_s": (figures.q1.requests as f64 / figures.q1.seconds).round(),
        "p50_ms": round3(figures.q1.p50_ms),
        "p99_ms": round3(figures.q1.p99_ms),
        "max_ms": round3(figures.q1.max_ms),
        "ingest_target_events_per_s": rate.round(),
        "events_per_s": (figures.ingested as f64 / figures.ingest_seconds).round(),
        "ingested": figures.ingested,
        "durability": fresh.durability,
        "server_peak_rss_mib": server.peak_rss_mib(),
    }));
    Ok(())
}

/// A1, beside a webhook subscription whose endpoint answers as `webhook` says (H2).
async fn a1_beside(
    out: &mut Report,
    data: &[CustomerEvents],
    webhook: Option<Mode>,
) -> Result<f64> {
    let fresh = fresh(out.backend, false).await?;
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start_with(
        &fresh.store_arg,
        dir.path(),
        &fresh.key_file,
        "bench",
        if webhook.is_some() { "admin" } else { "ingest" },
        &["--webhooks-allow-loopback"],
    )?;
    let receiver = match webhook {
        Some(mode) => Some(webhook_bench::beside(&server, mode).await?),
        None => None,
    };
    out.start();
    let (events, seconds) = api_bench::a1(&server, data, 500, 4).await?;
    let events_per_s = events as f64 / seconds;
    let workload = match webhook {
        None => "A1",
        Some(Mode::Hang) => "A1+hanging-webhook",
        Some(_) => "A1+webhook",
    };
    let delivered = receiver.as_ref().map(|r| r.count("endpoint"));
    let mut line = json!({
        "workload": workload,
        "delivered_during_run": delivered,
        "backend": out.backend_name(),
        "events": events,
        "events_per_request": 500,
        "connections": 4,
        "seconds": round3(seconds),
        "events_per_s": events_per_s.round(),
        "durability": fresh.durability,
        "server_peak_rss_mib": server.peak_rss_mib(),
    });
    // The nearest driver-only figure: the same rows, 10 a transaction, no HTTP.
    if let Some(base) = out.baselines.get("W2-baseline") {
        line["baseline"] = json!("W2-baseline");
        line["vs_baseline"] = json!((events_per_s / base * 100.0).round() / 100.0);
    }
    out.print(line);
    Ok(events_per_s)
}

/// The cost ladder, then the store's W1-W3 on the same data, each beside the minimal step.
async fn ladder(out: &mut Report, customers: u64, args: &Args) -> Result<()> {
    use crm_tests::ladder;
    let data = dataset(customers, false, false);
    let (figures, durability) = match out.backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("crm-ladder")
                .tempdir_in(std::env::current_dir()?)?;
            let synchronous = args.synchronous.to_uppercase();
            let figures = ladder::rusqlite(dir.path(), &data, args.w1_events, &synchronous)?;
            (figures, format!("sqlite WAL synchronous={synchronous}"))
        }
        Backend::Postgres => {
            let Some(db) = TestDatabase::create("crm-bench-ladder").await else {
                bail!("PostgreSQL is not reachable; set CRM_TEST_POSTGRES_URL");
            };
            let figures = ladder::postgres(db.url(), &data, args.w1_events).await?;
            (figures, "postgres synchronous_commit=on".to_owned())
        }
    };
    for figure in figures {
        let label = format!("{}-{}", figure.workload, figure.step);
        let mut line = json!({
            "workload": label,
            "backend": out.backend_name(),
            "adds": figure.adds,
            "events": figure.events,
            "seconds": round3(figure.seconds),
            "events_per_s": figure.events_per_s().round(),
            "durability": durability,
        });
        if let Some(minimal) = out.baselines.get(&format!("{}-minimal", figure.workload)) {
            line["vs_minimal"] = json!((figure.events_per_s() / minimal * 100.0).round() / 100.0);
        }
        out.baselines.insert(label, figure.events_per_s());
        out.emit(line);
    }
    // The store's own, on the same data and durability.
    w1(out, &data, args.w1_events, false, false).await?;
    let fresh = fresh(out.backend, false).await?;
    let written = w2(out, &fresh, data, false).await?;
    w3(out, &fresh, written).await?;
    Ok(())
}

/// W6: concurrent single appends, beside one client and (PostgreSQL) plain connections.
async fn w6(out: &mut Report, data: &[CustomerEvents], args: &Args) -> Result<()> {
    use crm_tests::concurrent_bench;
    let appends = Arc::new(concurrent_bench::appends(data, args.w1_events)?);
    let tenant = crm_core::envelope::TenantId::parse("bench")?;
    let line = |out: &mut Report,
                name: &str,
                clients: usize,
                f: concurrent_bench::Figures,
                durability: &str| {
        let mut line = json!({
            "workload": name,
            "backend": out.backend_name(),
            "clients": clients,
            "events": f.appends,
            "seconds": round3(f.seconds),
            "events_per_s": f.per_s().round(),
            "p50_ms": round3(f.p50_ms),
            "p99_ms": round3(f.p99_ms),
            "durability": durability,
        });
        if name == "W6" {
            for (baseline, key) in [
                ("W6-baseline", "vs_baseline"),
                ("W6-1-client", "vs_one_client"),
            ] {
                if let Some(base) = out.baselines.get(baseline) {
                    line[key] = json!((f.per_s() / base * 100.0).round() / 100.0);
                }
            }
        }
        out.baselines.insert(name.to_owned(), f.per_s());
        out.print(line);
    };
    if out.backend == Backend::Postgres && !args.no_baseline {
        let Some(db) = TestDatabase::create("crm-bench-w6").await else {
            bail!("PostgreSQL is not reachable; set CRM_TEST_POSTGRES_URL");
        };
        out.start();
        let figures =
            concurrent_bench::postgres_baseline(db.url(), Arc::clone(&appends), args.clients)
                .await?;
        line(
            out,
            "W6-baseline",
            args.clients,
            figures,
            "postgres synchronous_commit=on",
        );
    }
    let one = fresh_plain(out.backend).await?;
    out.start();
    let figures = concurrent_bench::store(&one.store, &tenant, Arc::clone(&appends), 1).await?;
    line(out, "W6-1-client", 1, figures, one.durability);
    drop(one);
    let fresh = fresh_plain(out.backend).await?;
    out.start();
    let figures = concurrent_bench::store(&fresh.store, &tenant, appends, args.clients).await?;
    line(out, "W6", args.clients, figures, fresh.durability);
    drop(fresh);
    if args.processes > 0 {
        let fresh = fresh_plain(out.backend).await?;
        let clients = args.clients.div_ceil(args.processes);
        let per_client = args.w1_events.div_ceil(args.processes * clients);
        let (appends, seconds) =
            concurrent_bench::processes(&fresh.store_arg, args.processes, clients, per_client)?;
        let per_s = appends as f64 / seconds;
        let mut line = json!({
            "workload": "W6-processes",
            "backend": out.backend_name(),
            "processes": args.processes,
            "clients": clients * args.processes,
            "events": appends,
            "seconds": round3(seconds),
            "events_per_s": per_s.round(),
            "durability": fresh.durability,
            "note": "a quarter of the appends go to a shared client stream with exact revisions, and one stale append per ten is refused (not counted)",
        });
        if let Some(one) = out.baselines.get("W6-1-client") {
            line["vs_one_client"] = json!((per_s / one * 100.0).round() / 100.0);
        }
        if let Some(base) = out.baselines.get("W6-baseline") {
            line["vs_baseline"] = json!((per_s / base * 100.0).round() / 100.0);
        }
        out.emit(line);
    }
    Ok(())
}

/// H1: webhook deliveries per second and append→delivery latency.
async fn h1(out: &mut Report, data: &[CustomerEvents]) -> Result<()> {
    let fresh = fresh(out.backend, false).await?;
    let dir = tempfile::tempdir()?;
    let server = api_bench::Server::start_with(
        &fresh.store_arg,
        dir.path(),
        &fresh.key_file,
        "bench",
        "admin",
        &["--webhooks-allow-loopback"],
    )?;
    out.start();
    let figures = webhook_bench::h1(&server, data, 1_000).await?;
    let line = json!({
        "workload": "H1",
        "backend": out.backend_name(),
        "deliveries": figures.deliveries,
        "seconds": round3(figures.seconds),
        "deliveries_per_s": figures.deliveries_per_s.round(),
        "latency_samples": figures.latency_samples,
        "p50_ms": round3(figures.p50_ms),
        "p99_ms": round3(figures.p99_ms),
        "max_ms": round3(figures.max_ms),
        "durability": fresh.durability,
        "server_peak_rss_mib": server.peak_rss_mib(),
    });
    out.print(line);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    KEEP_STORE.store(args.keep_store, std::sync::atomic::Ordering::Relaxed);
    let customers = match (args.events, args.customers) {
        (Some(events), _) => events.div_ceil(10),
        (None, Some(customers)) => customers,
        (None, None) if args.workload == Workload::S1 => 100_000,
        (None, None) => 10_000,
    };
    if customers == 0 {
        bail!("the data set needs at least one customer (--events 10 or more)");
    }
    let durability: Durability = args
        .synchronous
        .parse()
        .context("--synchronous must be normal or full")?;
    SQLITE_DURABILITY
        .set(durability)
        .map_err(|_| anyhow::anyhow!("durability set twice"))?;
    let w = args.workload;
    if let Some(path) = &args.on_store {
        return on_store(&args, path).await;
    }
    if args.sealed_only && w != Workload::Q1 {
        bail!("--sealed-only is for q1 only");
    }
    if w == Workload::W6 {
        let mut out = Report::new(args.backend);
        for _ in 0..args.runs {
            out.baselines.clear();
            let data = dataset(customers, false, false);
            w6(&mut out, &data, &args).await?;
        }
        if args.runs > 1 {
            out.summarise(args.runs);
        }
        return Ok(());
    }
    if w == Workload::A3 {
        let mut out = Report::new(args.backend);
        for _ in 0..args.runs {
            let data = dataset(customers, false, false);
            a3(&mut out, data).await?;
        }
        if args.runs > 1 {
            out.summarise(args.runs);
        }
        return Ok(());
    }
    if w == Workload::W7 {
        let mut out = Report::new(args.backend);
        for _ in 0..args.runs {
            w7(&mut out, customers, args.rate).await?;
        }
        if args.runs > 1 {
            out.summarise(args.runs);
        }
        return Ok(());
    }
    if w == Workload::Console {
        let mut out = Report::new(args.backend);
        let events = args.events.unwrap_or(100_000);
        for _ in 0..args.runs {
            console(&mut out, events, args.console_rounds).await?;
        }
        if args.runs > 1 {
            out.summarise(args.runs);
        }
        return Ok(());
    }
    if w == Workload::Ladder {
        let mut out = Report::new(args.backend);
        for _ in 0..args.runs {
            out.baselines.clear();
            ladder(&mut out, customers, &args).await?;
        }
        if args.runs > 1 {
            out.summarise(args.runs);
        }
        return Ok(());
    }
    if w == Workload::S1 {
        for _ in 0..args.runs {
            let fresh = fresh_plain(args.backend).await?;
            let written = crm_tests::score_bench::fill(&fresh.store, customers).await?;
            let mut line = crm_tests::score_bench::s1(&fresh.store, &fresh.url, written).await?;
            line["backend"] = json!(format!("{:?}", args.backend).to_lowercase());
            println!("{line}");
        }
        return Ok(());
    }
    let all = w == Workload::All;
    let want = Want {
        w1: all || matches!(w, Workload::W1 | Workload::Baseline),
        w2: all || matches!(w, Workload::W2 | Workload::A1 | Workload::Baseline),
        w3: all || matches!(w, Workload::W3 | Workload::Baseline),
        w4: all || matches!(w, Workload::W4 | Workload::W5 | Workload::Baseline),
    };
    let mut out = Report::new(args.backend);
    for _ in 0..args.runs {
        out.baselines.clear();
        let data = dataset(customers, args.seal, args.crm_mix);
        if (!args.no_baseline && w != Workload::Q1) || w == Workload::Baseline {
            baselines(&mut out, &data, args.w1_events, want).await?;
        }
        if all || w == Workload::W1 {
            w1(&mut out, &data, args.w1_events, false, false).await?;
            if args.tree {
                w1(&mut out, &data, args.w1_events, false, true).await?;
            }
            if args.seal {
                w1(&mut out, &data, args.w1_events, true, false).await?;
            }
        }
        if matches!(w, Workload::T1 | Workload::P1) {
            let fresh = fresh(args.backend, false).await?;
            let written = fill(&fresh, data).await?;
            t1_p1(&mut out, &fresh, written, customers, w == Workload::P1).await?;
            continue;
        }
        if all || w == Workload::A1 {
            a1(&mut out, &data).await?;
        }
        if w == Workload::H1 {
            h1(&mut out, &data).await?;
            continue;
        }
        if w == Workload::H2 {
            a1(&mut out, &data).await?;
            a1_beside(&mut out, &data, Some(Mode::Hang)).await?;
            a1_beside(&mut out, &data, Some(Mode::Ok)).await?;
            continue;
        }
        if matches!(w, Workload::W1 | Workload::Baseline | Workload::A1) {
            continue;
        }
        // Plain, then sealed (alternating within each run); Q1's server needs a sealed store.
        let mut variants = vec![false];
        if args.seal || all || w == Workload::Q1 {
            variants.push(true);
        }
        if args.sealed_only {
            variants = vec![true];
        }
        let mut data = Some(data);
        for sealed in variants {
            let report = !sealed || args.seal;
            let fresh = fresh(args.backend, sealed).await?;
            // W2 consumes the data set: W3-W5 and Q1 read only the store, so without it in
            // memory their peak memory is theirs.
            let events = data
                .take()
                .unwrap_or_else(|| dataset(customers, args.seal, args.crm_mix));
            let written = if report {
                if args.tree && !sealed {
                    // The twin with the tree worker, on a fresh store of its own, first.
                    let twin = fresh_plain(args.backend).await?;
                    w2(
                        &mut out,
                        &twin,
                        dataset(customers, args.seal, args.crm_mix),
                        true,
                    )
                    .await?;
                }
                w2(&mut out, &fresh, events, false).await?
            } else {
                fill(&fresh, events).await?
            };
            if report && (all || w == Workload::W3 || args.also.contains(&Workload::W3)) {
                w3(&mut out, &fresh, written).await?;
            }
            if report && (all || w == Workload::W4 || args.also.contains(&Workload::W4)) {
                w4(&mut out, &fresh, written, runner_options(&args)).await?;
            }
            if report && (all || w == Workload::W5 || args.also.contains(&Workload::W5)) {
                w5(
                    &mut out,
                    &fresh,
                    written,
                    runner_options(&args),
                    &args.projections,
                )
                .await?;
            }
            if sealed && (all || w == Workload::Q1) {
                q1(&mut out, &fresh, customers).await?;
            }
        }
    }
    if args.runs > 1 {
        out.summarise(args.runs);
    }
    Ok(())
}

/// `--on-store`: W4 or W5, `--runs` times, on an existing SQLite store.
async fn on_store(args: &Args, path: &std::path::Path) -> Result<()> {
    if args.backend != Backend::Sqlite || !matches!(args.workload, Workload::W4 | Workload::W5) {
        bail!("--on-store runs W4 or W5 on a SQLite store only");
    }
    if !path.is_file() {
        bail!("--on-store {}: no such store file", path.display());
    }
    let durability = *SQLITE_DURABILITY.get_or_init(|| Durability::Normal);
    let mut options = crm_core::store::sqlite::SqliteOptions::new(path);
    options.durability = durability;
    let store: SharedStore = Arc::new(SqliteEventStore::open_with(options).await?);
    let events = usize::try_from(store.head_position().await?)?;
    let fresh = Fresh {
        projection_store: Arc::clone(&store),
        store,
        suffix: "",
        key_file: path.with_file_name("master.key"),
        store_arg: format!("sqlite://{}", path.display()),
        url: StoreUrl::Sqlite {
            path: path.to_path_buf(),
            durability,
        },
        durability: "sqlite WAL synchronous=NORMAL (an existing store)",
        _guard: Box::new(()),
    };
    let mut out = Report::new(args.backend);
    for _ in 0..args.runs {
        if args.workload == Workload::W4 || args.also.contains(&Workload::W4) {
            w4(&mut out, &fresh, events, runner_options(args)).await?;
        }
        if args.workload == Workload::W5 || args.also.contains(&Workload::W5) {
            w5(
                &mut out,
                &fresh,
                events,
                runner_options(args),
                &args.projections,
            )
            .await?;
        }
    }
    if args.runs > 1 {
        out.summarise(args.runs);
    }
    Ok(())
}

/// The runner options of W4 and W5.
fn runner_options(args: &Args) -> RunnerOptions {
    RunnerOptions {
        batch_size: args.batch,
        catch_up_batch_size: args.catch_up_batch,
        ..RunnerOptions::default()
    }
}

/// The benchmark data set, extended with issue 18's event types when `mix` ([`crm_mix`]).
fn dataset(customers: u64, phone: bool, mix: bool) -> Vec<CustomerEvents> {
    let mut data = generate_with(customers, 42, phone);
    if mix {
        crm_mix(&mut data, 42);
    }
    data
}
