//! W6 (issue 21): concurrent single appends. `clients` tasks share one store handle (one
//! process) and append one event per call, each call to a stream of its own, as many services
//! writing at once do; beside it, the same rows written by `clients` plain connections with
//! plain autocommit INSERTs (PostgreSQL), the physical limit the store's group commit is
//! measured against.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::{ExpectedRevision, SharedStore};
use sqlx::Connection;

use crate::bench_data::CustomerEvents;

/// The appends of W6: the data set's first `limit` events, each to a stream of its own.
pub fn appends(data: &[CustomerEvents], limit: usize) -> Result<Vec<(StreamId, NewEvent)>> {
    data.iter()
        .flat_map(|customer| customer.events.iter())
        .take(limit)
        .enumerate()
        .map(|(i, event)| Ok((StreamId::parse(&format!("w6-{i}"))?, event.clone())))
        .collect()
}

/// What a concurrent run measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub appends: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Figures {
    pub fn per_s(&self) -> f64 {
        self.appends as f64 / self.seconds
    }
}

/// `clients` tasks append `appends` through `store`, one event per call, taking the next
/// append from a shared counter; every append must be new (`NoStream`).
pub async fn store(
    store: &SharedStore,
    tenant: &TenantId,
    appends: Arc<Vec<(StreamId, NewEvent)>>,
    clients: usize,
) -> Result<Figures> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (store, tenant, appends, next) = (
            Arc::clone(store),
            tenant.clone(),
            Arc::clone(&appends),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((stream, event)) = appends.get(i) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let sent = Instant::now();
                let outcome = store
                    .append(
                        &tenant,
                        stream,
                        ExpectedRevision::NoStream,
                        vec![event.clone()],
                    )
                    .await
                    .with_context(|| format!("append {i}"))?;
                latencies.push(sent.elapsed().as_secs_f64() * 1_000.0);
                if outcome.events.len() != 1 || outcome.events[0].duplicate {
                    bail!("append {i} was not written as one new event: {outcome:?}");
                }
            }
        }));
    }
    let latencies = join(tasks).await?;
    figures(latencies, started)
}

/// The baseline: `clients` plain sqlx connections, each inserting its rows with autocommit
/// INSERTs into the same-rows table of `baseline.rs`, positions from a shared counter.
pub async fn postgres_baseline(
    url: &str,
    appends: Arc<Vec<(StreamId, NewEvent)>>,
    clients: usize,
) -> Result<Figures> {
    let mut setup = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS baseline_w6; CREATE TABLE baseline_w6 (position BIGINT PRIMARY KEY, \
         tenant TEXT NOT NULL, stream_id TEXT NOT NULL, revision BIGINT NOT NULL, \
         event_id BYTEA NOT NULL, event_type TEXT NOT NULL, data TEXT NOT NULL, \
         occurred_at BIGINT NOT NULL, UNIQUE (tenant, stream_id, revision), \
         UNIQUE (tenant, stream_id, event_id))",
    )
    .execute(&mut setup)
    .await?;
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(sqlx::PgConnection::connect(url).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in connections {
        let (appends, next) = (Arc::clone(&appends), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((stream, event)) = appends.get(i) else {
                    conn.close().await?;
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let sent = Instant::now();
                sqlx::query("INSERT INTO baseline_w6 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(i as i64 + 1)
                    .bind("bench")
                    .bind(stream.as_str())
                    .bind(0i64)
                    .bind(event.event_id.as_bytes().as_slice())
                    .bind(event.event_type.as_str())
                    .bind(event.data.get())
                    .bind(event.occurred_at.map_or(0, |t| t.timestamp_micros()))
                    .execute(&mut conn)
                    .await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1_000.0);
            }
        }));
    }
    let latencies = join(tasks).await?;
    let figures = figures(latencies, started)?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM baseline_w6")
        .fetch_one(&mut setup)
        .await?;
    if stored as usize != appends.len() {
        bail!("the baseline stored {stored} rows of {}", appends.len());
    }
    setup.close().await?;
    Ok(figures)
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Result<Vec<f64>>>>) -> Result<Vec<f64>> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

fn figures(mut latencies: Vec<f64>, started: Instant) -> Result<Figures> {
    let seconds = started.elapsed().as_secs_f64();
    if latencies.is_empty() {
        bail!("no append was made");
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        appends: latencies.len(),
        seconds,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

/// W6 across processes: `processes` `crm-concurrent-writer` processes (found beside this
/// binary) on the store at `url`, each with `clients` tasks making `per_client` appends
/// (`crate::concurrent_writers::write`: mostly single events to streams of their own, a
/// quarter to the client's stream with exact revisions, and one deliberately stale append per
/// ten, refused). Timed from the moment all are told to go until the last is done; returns
/// the acknowledged appends and the seconds.
pub fn processes(
    url: &str,
    processes: usize,
    clients: usize,
    per_client: usize,
) -> Result<(usize, f64)> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let binary = std::env::current_exe()?
        .parent()
        .context("the binary's folder")?
        .join("crm-concurrent-writer");
    if !binary.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p crm-tests --bins`",
            binary.display()
        );
    }
    let mut children = Vec::with_capacity(processes);
    for p in 0..processes {
        let mut child = Command::new(&binary)
            .args([
                url,
                &format!("w6p{p}"),
                &clients.to_string(),
                &per_client.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start crm-concurrent-writer")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        match lines.next() {
            Some(Ok(line)) if line == "ready" => {}
            other => bail!("crm-concurrent-writer did not start: {other:?}"),
        }
        children.push((child, lines));
    }
    let started = Instant::now();
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().context("stdin")?, "go")?;
    }
    let mut acks = 0;
    let mut seconds = 0.0f64;
    for (mut child, lines) in children {
        for line in lines {
            let line = line?;
            if line == "done" {
                seconds = seconds.max(started.elapsed().as_secs_f64());
                break;
            }
            acks += usize::from(line.starts_with("ack "));
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("crm-concurrent-writer failed: {status}");
        }
    }
    if acks != processes * clients * per_client {
        bail!(
            "{acks} appends acknowledged of {}",
            processes * clients * per_client
        );
    }
    Ok((acks, seconds))
}
