//! Driver-only baselines for `crm-bench`: the rows of W1 and W2 written, read back (W3) and
//! folded into a per-customer summary (W4) with plain driver statements and no project code:
//! no planning, hashing, idempotency or revision checks, no projection runner. They show what
//! the driver alone costs on the same machine in the same run, so each workload can be quoted
//! as a ratio to it. The issue asks for sqlx (the driver the PostgreSQL backend uses); for
//! SQLite, rusqlite (the driver the SQLite backend uses) is measured too.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use sqlx::Connection;

use crate::bench_data::CustomerEvents;

/// Which baselines to run. W3 and W4 read what W2 wrote, so they run W2 first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    pub w1: bool,
    pub w2: bool,
    pub w3: bool,
    pub w4: bool,
}

impl Want {
    fn needs_w2(&self) -> bool {
        self.w2 || self.w3 || self.w4
    }
}

/// One baseline measurement.
#[derive(Debug, Clone)]
pub struct Figure {
    /// `W1-baseline`, `W2-baseline-rusqlite`, ...
    pub label: String,
    /// Which driver ran it.
    pub driver: &'static str,
    pub events: usize,
    pub seconds: f64,
}

impl Figure {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

const TABLE: &str = "CREATE TABLE baseline (position BIGINT PRIMARY KEY, tenant TEXT NOT NULL, \
     stream_id TEXT NOT NULL, revision BIGINT NOT NULL, event_id BLOB NOT NULL, \
     event_type TEXT NOT NULL, data TEXT NOT NULL, occurred_at BIGINT NOT NULL, \
     UNIQUE (tenant, stream_id, revision), UNIQUE (tenant, stream_id, event_id))";

const SUMMARY: &str = "CREATE TABLE baseline_summary (customer_id TEXT PRIMARY KEY, \
     email BIGINT NOT NULL, phone BIGINT NOT NULL, chat BIGINT NOT NULL, social BIGINT NOT NULL, \
     web BIGINT NOT NULL, meeting BIGINT NOT NULL, last_interaction BIGINT NOT NULL)";

/// The fields W3 deserialises from each event.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
pub struct BenchEvent {
    pub customer_id: String,
    pub channel: Option<String>,
    pub direction: Option<String>,
    pub subject: Option<String>,
    pub summary: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub segment: Option<String>,
}

/// The W4 fold: interactions per channel and the last interaction time, per customer.
#[derive(Debug, Default)]
struct Summaries(HashMap<String, ([i64; 6], i64)>);

impl Summaries {
    fn fold(&mut self, data: &str, occurred_at: i64) -> Result<()> {
        let event: BenchEvent = serde_json::from_str(data)?;
        let entry = self.0.entry(event.customer_id).or_default();
        if let Some(channel) = event.channel {
            let index = ["email", "phone", "chat", "social", "web", "meeting"]
                .iter()
                .position(|c| *c == channel)
                .unwrap_or(5);
            entry.0[index] += 1;
            entry.1 = entry.1.max(occurred_at);
        }
        Ok(())
    }
}

/// The rows of the data set as `(position, stream, revision, event)` in log order.
fn rows(data: &[CustomerEvents]) -> impl Iterator<Item = (i64, &CustomerEvents, usize)> {
    data.iter()
        .flat_map(|customer| (0..customer.events.len()).map(move |r| (customer, r)))
        .enumerate()
        .map(|(i, (customer, r))| (i as i64 + 1, customer, r))
}

macro_rules! sqlx_baselines {
    ($conn:expr, $want:expr, $data:expr, $w1_limit:expr, $p:expr) => {{
        let conn = &mut $conn;
        let p = $p;
        let insert = format!(
            "INSERT INTO baseline VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8)
        );
        let mut figures = Vec::new();
        let mut passes = Vec::new();
        if $want.w1 {
            passes.push(("W1-baseline", 1usize, $w1_limit));
        }
        if $want.needs_w2() {
            passes.push(("W2-baseline", 10, usize::MAX));
        }
        for (label, per_tx, limit) in passes {
            sqlx::raw_sql("DROP TABLE IF EXISTS baseline")
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql(TABLE).execute(&mut *conn).await?;
            let started = Instant::now();
            let mut written = 0usize;
            let all: Vec<_> = rows($data).take(limit).collect();
            for chunk in all.chunks(per_tx) {
                let mut tx = conn.begin().await?;
                for (position, customer, revision) in chunk {
                    let event = &customer.events[*revision];
                    sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                        .bind(*position)
                        .bind("bench")
                        .bind(customer.stream.as_str())
                        .bind(*revision as i64)
                        .bind(event.event_id.as_bytes().to_vec())
                        .bind(event.event_type.as_str())
                        .bind(event.data.get())
                        .bind(event.occurred_at.map_or(0, |t| t.timestamp_micros()))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                written += chunk.len();
            }
            figures.push(Figure {
                label: label.to_owned(),
                driver: "sqlx",
                events: written,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let page = format!(
            "SELECT position, data, occurred_at FROM baseline WHERE position > {} \
             ORDER BY position LIMIT 1000",
            p(1)
        );
        if $want.w3 {
            let started = Instant::now();
            let (mut after, mut read) = (0i64, 0usize);
            loop {
                let batch: Vec<(i64, String, i64)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(page.clone()))
                        .bind(after)
                        .fetch_all(&mut *conn)
                        .await?;
                let Some(last) = batch.last() else { break };
                after = last.0;
                for (_, data, _) in &batch {
                    let event: BenchEvent = serde_json::from_str(data)?;
                    read += usize::from(!event.customer_id.is_empty());
                }
            }
            figures.push(Figure {
                label: "W3-baseline".to_owned(),
                driver: "sqlx",
                events: read,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        if $want.w4 {
            sqlx::raw_sql(SUMMARY).execute(&mut *conn).await?;
            let started = Instant::now();
            let (mut after, mut read) = (0i64, 0usize);
            let mut summaries = Summaries::default();
            loop {
                let batch: Vec<(i64, String, i64)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(page.clone()))
                        .bind(after)
                        .fetch_all(&mut *conn)
                        .await?;
                let Some(last) = batch.last() else { break };
                after = last.0;
                for (_, data, occurred_at) in &batch {
                    summaries.fold(data, *occurred_at)?;
                    read += 1;
                }
            }
            let insert = format!(
                "INSERT INTO baseline_summary VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8)
            );
            let mut tx = conn.begin().await?;
            for (customer, (counts, last)) in &summaries.0 {
                let mut query =
                    sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(customer.as_str());
                for count in counts {
                    query = query.bind(*count);
                }
                query.bind(*last).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            figures.push(Figure {
                label: "W4-baseline".to_owned(),
                driver: "sqlx",
                events: read,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        figures
    }};
}

/// sqlx on a SQLite file in `dir` (WAL, `synchronous=NORMAL`).
pub async fn sqlx_sqlite(
    dir: &Path,
    data: &[CustomerEvents],
    w1_limit: usize,
    want: Want,
) -> Result<Vec<Figure>> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("baseline-sqlx.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let figures = sqlx_baselines!(conn, want, data, w1_limit, |_: usize| "?".to_owned());
    conn.close().await?;
    Ok(figures)
}

/// sqlx on a PostgreSQL database (`synchronous_commit` as the server has it: on).
pub async fn sqlx_postgres(
    url: &str,
    data: &[CustomerEvents],
    w1_limit: usize,
    want: Want,
) -> Result<Vec<Figure>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql("CREATE DOMAIN blob AS bytea")
        .execute(&mut conn)
        .await?;
    let figures = sqlx_baselines!(conn, want, data, w1_limit, |n: usize| format!("${n}"));
    conn.close().await?;
    Ok(figures)
}

/// rusqlite on a SQLite file in `dir` (WAL, `synchronous=NORMAL`), on this thread.
pub fn rusqlite(
    dir: &Path,
    data: &[CustomerEvents],
    w1_limit: usize,
    want: Want,
) -> Result<Vec<Figure>> {
    let mut conn = rusqlite::Connection::open(dir.join("baseline-rusqlite.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let mut figures = Vec::new();
    let mut passes = Vec::new();
    if want.w1 {
        passes.push(("W1-baseline-rusqlite", 1usize, w1_limit));
    }
    if want.needs_w2() {
        passes.push(("W2-baseline-rusqlite", 10, usize::MAX));
    }
    for (label, per_tx, limit) in passes {
        conn.execute_batch("DROP TABLE IF EXISTS baseline")?;
        conn.execute_batch(TABLE)?;
        let started = Instant::now();
        let all: Vec<_> = rows(data).take(limit).collect();
        for chunk in all.chunks(per_tx) {
            let tx = conn.transaction()?;
            {
                let mut insert =
                    tx.prepare_cached("INSERT INTO baseline VALUES (?, ?, ?, ?, ?, ?, ?, ?)")?;
                for (position, customer, revision) in chunk {
                    let event = &customer.events[*revision];
                    insert.execute(rusqlite::params![
                        position,
                        "bench",
                        customer.stream.as_str(),
                        *revision as i64,
                        event.event_id.as_bytes().as_slice(),
                        event.event_type.as_str(),
                        event.data.get(),
                        event.occurred_at.map_or(0, |t| t.timestamp_micros()),
                    ])?;
                }
            }
            tx.commit()?;
        }
        figures.push(Figure {
            label: label.to_owned(),
            driver: "rusqlite",
            events: all.len(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if want.w3 {
        let started = Instant::now();
        let (mut after, mut read) = (0i64, 0usize);
        let mut page = conn.prepare(
            "SELECT position, data FROM baseline WHERE position > ? ORDER BY position LIMIT 1000",
        )?;
        loop {
            let mut rows = page.query([after])?;
            let mut any = false;
            while let Some(row) = rows.next()? {
                any = true;
                after = row.get(0)?;
                let data = row.get_ref(1)?.as_str()?;
                let event: BenchEvent = serde_json::from_str(data)?;
                read += usize::from(!event.customer_id.is_empty());
            }
            if !any {
                break;
            }
        }
        figures.push(Figure {
            label: "W3-baseline-rusqlite".to_owned(),
            driver: "rusqlite",
            events: read,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if let Some(figure) = figures.iter().find(|f| f.events == 0) {
        bail!("{} measured nothing", figure.label);
    }
    Ok(figures)
}
