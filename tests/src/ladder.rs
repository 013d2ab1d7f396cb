//! The cost ladder (issue 21, "less work per event"): W1 (one row per transaction), W2 (ten
//! rows per transaction) and W3 (read everything back in position order) with the plain
//! driver, first on a minimal event table (position, stream, revision, type, data; one index
//! on the stream), then adding one by one what the store keeps per event, so each step's
//! figure says what that column, index or statement costs. The last step is the store's own
//! row shape (every column, the three indexes, the stream-head upsert) without any of the
//! store's code: the store's own W1-W3 beside it show what the code costs on top.
//!
//! rusqlite on SQLite (the driver the SQLite backend uses), sqlx on PostgreSQL.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use sqlx::Connection;

use crate::bench_data::CustomerEvents;

/// One step: the table and indexes, how many of the columns (in [`COLUMNS`] order) each row
/// binds, and whether each transaction also upserts its stream's head.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub name: &'static str,
    /// What this step adds, for the table in docs/benchmarks.md.
    pub adds: &'static str,
    columns: usize,
    indexes: &'static [&'static str],
    heads: bool,
}

/// The columns in the order the steps add them, with their SQLite and PostgreSQL types.
const COLUMNS: [(&str, &str, &str); 12] = [
    ("position", "INTEGER PRIMARY KEY", "BIGINT PRIMARY KEY"),
    ("stream_id", "TEXT NOT NULL", "TEXT COLLATE \"C\" NOT NULL"),
    ("revision", "INTEGER NOT NULL", "BIGINT NOT NULL"),
    ("event_type", "TEXT NOT NULL", "TEXT NOT NULL"),
    ("data", "TEXT NOT NULL", "JSON NOT NULL"),
    ("tenant", "TEXT NOT NULL", "TEXT COLLATE \"C\" NOT NULL"),
    ("event_id", "BLOB NOT NULL", "UUID NOT NULL"),
    ("metadata", "TEXT NOT NULL", "JSON NOT NULL"),
    ("schema_version", "INTEGER NOT NULL", "INTEGER NOT NULL"),
    ("occurred_at", "INTEGER NOT NULL", "TIMESTAMPTZ NOT NULL"),
    ("recorded_at", "INTEGER NOT NULL", "TIMESTAMPTZ NOT NULL"),
    ("hash", "BLOB NOT NULL", "BYTEA NOT NULL"),
];

const STREAM: &str = "CREATE INDEX ladder_stream ON ladder (stream_id)";
const TENANT_STREAM: &str = "CREATE INDEX ladder_stream ON ladder (tenant, stream_id)";
const REVISION: &str =
    "CREATE UNIQUE INDEX ladder_revision ON ladder (tenant, stream_id, revision)";
const EVENT_ID: &str =
    "CREATE UNIQUE INDEX ladder_event_id ON ladder (tenant, stream_id, event_id)";
const TENANT_POSITION: &str = "CREATE INDEX ladder_tenant_position ON ladder (tenant, position)";

/// The steps, from the minimal table to the store's row shape.
pub const STEPS: [Step; 7] = [
    Step {
        name: "minimal",
        adds: "position, stream, revision, type, data; one index on the stream",
        columns: 5,
        indexes: &[STREAM],
        heads: false,
    },
    Step {
        name: "tenant",
        adds: "a tenant column, leading the stream index",
        columns: 6,
        indexes: &[TENANT_STREAM],
        heads: false,
    },
    Step {
        name: "unique-revision",
        adds: "the stream index made unique on (tenant, stream, revision): optimistic concurrency",
        columns: 6,
        indexes: &[REVISION],
        heads: false,
    },
    Step {
        name: "event-id",
        adds: "the event id and its unique index per stream: idempotency",
        columns: 7,
        indexes: &[REVISION, EVENT_ID],
        heads: false,
    },
    Step {
        name: "full-row",
        adds: "metadata, schema version, business and recording times, chain hash",
        columns: 12,
        indexes: &[REVISION, EVENT_ID],
        heads: false,
    },
    Step {
        name: "tenant-position",
        adds: "the (tenant, position) index: one tenant's log read without scanning others'",
        columns: 12,
        indexes: &[REVISION, EVENT_ID, TENANT_POSITION],
        heads: false,
    },
    Step {
        name: "stream-heads",
        adds: "each transaction upserts its stream's head (revision, hash): the chain's anchor",
        columns: 12,
        indexes: &[REVISION, EVENT_ID, TENANT_POSITION],
        heads: true,
    },
];

/// One measured step.
#[derive(Debug, Clone)]
pub struct Figure {
    pub step: &'static str,
    pub adds: &'static str,
    /// `W1`, `W2` or `W3`.
    pub workload: &'static str,
    pub events: usize,
    pub seconds: f64,
}

impl Figure {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// The rows of the data set in log order: (position, customer, index of the event).
fn rows(data: &[CustomerEvents]) -> impl Iterator<Item = (i64, &CustomerEvents, usize)> {
    data.iter()
        .flat_map(|c| (0..c.events.len()).map(move |i| (c, i)))
        .enumerate()
        .map(|(n, (c, i))| (n as i64 + 1, c, i))
}

fn create(step: &Step, postgres: bool) -> String {
    let columns: Vec<String> = COLUMNS[..step.columns]
        .iter()
        .map(|(name, sqlite, pg)| format!("{name} {}", if postgres { pg } else { sqlite }))
        .collect();
    let mut sql = format!(
        "DROP TABLE IF EXISTS ladder; DROP TABLE IF EXISTS ladder_heads; \
         CREATE TABLE ladder ({});",
        columns.join(", ")
    );
    for index in step.indexes {
        sql.push_str(index);
        sql.push(';');
    }
    if step.heads {
        sql.push_str(
            "CREATE TABLE ladder_heads (tenant TEXT NOT NULL, stream_id TEXT NOT NULL, \
             revision BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (tenant, stream_id))",
        );
        if !postgres {
            sql = sql.replace("BYTEA", "BLOB");
        }
    }
    sql
}

fn insert(step: &Step, placeholder: impl Fn(usize) -> String) -> String {
    let names: Vec<&str> = COLUMNS[..step.columns].iter().map(|c| c.0).collect();
    let values: Vec<String> = (1..=step.columns).map(placeholder).collect();
    format!(
        "INSERT INTO ladder ({}) VALUES ({})",
        names.join(", "),
        values.join(", ")
    )
}

const UPSERT_HEAD_SQLITE: &str = "INSERT INTO ladder_heads VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (tenant, stream_id) DO UPDATE SET revision = excluded.revision, hash = excluded.hash";
const UPSERT_HEAD_PG: &str = "INSERT INTO ladder_heads VALUES ($1, $2, $3, $4) \
     ON CONFLICT (tenant, stream_id) DO UPDATE SET revision = excluded.revision, hash = excluded.hash";

/// A stand-in chain hash of the right size.
fn hash(event: &crm_core::envelope::NewEvent) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash[..16].copy_from_slice(event.event_id.as_bytes());
    hash[16..].copy_from_slice(event.event_id.as_bytes());
    hash
}

/// Every step on SQLite with rusqlite (WAL, `synchronous` as given), in a file of its own
/// per step: W1 on the first `w1_limit` events, W2 on all, W3 reading W2's rows back.
pub fn rusqlite(
    dir: &Path,
    data: &[CustomerEvents],
    w1_limit: usize,
    synchronous: &str,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for step in &STEPS {
        let path = dir.join(format!("ladder-{}.db", step.name));
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "page_size", 2048)?;
        let sql = insert(step, |n| format!("?{n}"));
        for (workload, per_tx, limit) in [("W1", 1usize, w1_limit), ("W2", 10, usize::MAX)] {
            conn.execute_batch(&create(step, false))?;
            let all: Vec<_> = rows(data).take(limit).collect();
            let started = Instant::now();
            for chunk in all.chunks(per_tx) {
                let tx = conn.transaction()?;
                {
                    let mut statement = tx.prepare_cached(&sql)?;
                    for (position, customer, index) in chunk {
                        let event = &customer.events[*index];
                        let occurred = event.occurred_at.map_or(0, |t| t.timestamp_micros());
                        let hash = hash(event);
                        let values: [&dyn rusqlite::ToSql; 12] = [
                            position,
                            &customer.stream.as_str(),
                            &(*index as i64),
                            &event.event_type.as_str(),
                            &event.data.get(),
                            &"bench",
                            &event.event_id.as_bytes().as_slice(),
                            &event.metadata.get(),
                            &i64::from(event.schema_version),
                            &occurred,
                            &occurred,
                            &hash.as_slice(),
                        ];
                        statement.execute(&values[..step.columns])?;
                    }
                    if step.heads
                        && let Some((_, customer, index)) = chunk.last()
                    {
                        let event = &customer.events[*index];
                        tx.prepare_cached(UPSERT_HEAD_SQLITE)?
                            .execute(rusqlite::params![
                                "bench",
                                customer.stream.as_str(),
                                *index as i64,
                                hash(event).as_slice(),
                            ])?;
                    }
                }
                tx.commit()?;
            }
            figures.push(figure(step, workload, all.len(), started));
        }
        // W3: W2's rows back in position order, every column the step stores.
        let names: Vec<&str> = COLUMNS[..step.columns].iter().map(|c| c.0).collect();
        let select = format!(
            "SELECT {} FROM ladder WHERE position > ? ORDER BY position LIMIT 1000",
            names.join(", ")
        );
        let started = Instant::now();
        let (mut after, mut read) = (0i64, 0usize);
        let mut page = conn.prepare(&select)?;
        loop {
            let mut rows = page.query([after])?;
            let mut any = false;
            while let Some(row) = rows.next()? {
                any = true;
                after = row.get(0)?;
                for column in 1..step.columns {
                    let value = row.get_ref(column)?;
                    std::hint::black_box(value);
                }
                let event: crate::baseline::BenchEvent =
                    serde_json::from_str(row.get_ref(4)?.as_str()?)?;
                read += usize::from(!event.customer_id.is_empty());
            }
            if !any {
                break;
            }
        }
        figures.push(figure(step, "W3", read, started));
        drop(page);
        drop(conn);
        std::fs::remove_file(&path).ok();
    }
    check(&figures)?;
    Ok(figures)
}

/// Every step on PostgreSQL with sqlx, each in the same database, W1, W2 and W3 as above.
pub async fn postgres(url: &str, data: &[CustomerEvents], w1_limit: usize) -> Result<Vec<Figure>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut figures = Vec::new();
    for step in &STEPS {
        let sql = insert(step, |n| match n {
            5 | 8 => format!("${n}::json"),
            n => format!("${n}"),
        });
        for (workload, per_tx, limit) in [("W1", 1usize, w1_limit), ("W2", 10, usize::MAX)] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(create(step, true)))
                .execute(&mut conn)
                .await?;
            let all: Vec<_> = rows(data).take(limit).collect();
            let started = Instant::now();
            for chunk in all.chunks(per_tx) {
                let mut tx = conn.begin().await?;
                for (position, customer, index) in chunk {
                    let event = &customer.events[*index];
                    let occurred = event.occurred_at.unwrap_or_default();
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(position)
                        .bind(customer.stream.as_str())
                        .bind(*index as i64)
                        .bind(event.event_type.as_str())
                        .bind(event.data.get());
                    if step.columns > 5 {
                        query = query.bind("bench").bind(event.event_id);
                    }
                    if step.columns > 7 {
                        query = query
                            .bind(event.metadata.get())
                            .bind(event.schema_version as i32)
                            .bind(occurred)
                            .bind(occurred)
                            .bind(hash(event).to_vec());
                    }
                    query.execute(&mut *tx).await?;
                }
                if step.heads
                    && let Some((_, customer, index)) = chunk.last()
                {
                    sqlx::query(UPSERT_HEAD_PG)
                        .bind("bench")
                        .bind(customer.stream.as_str())
                        .bind(*index as i64)
                        .bind(hash(&customer.events[*index]).to_vec())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            figures.push(figure(step, workload, all.len(), started));
        }
        let names: Vec<String> = COLUMNS[..step.columns]
            .iter()
            .map(|c| match c.0 {
                "data" | "metadata" => format!("{}::text", c.0),
                name => name.to_owned(),
            })
            .collect();
        let select = format!(
            "SELECT {} FROM ladder WHERE position > $1 ORDER BY position LIMIT 1000",
            names.join(", ")
        );
        let started = Instant::now();
        let (mut after, mut read) = (0i64, 0usize);
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                .bind(after)
                .fetch_all(&mut conn)
                .await?;
            let Some(last) = rows.last() else { break };
            after = sqlx::Row::try_get(last, 0)?;
            for row in &rows {
                let data: &str = sqlx::Row::try_get(row, 4)?;
                let event: crate::baseline::BenchEvent = serde_json::from_str(data)?;
                read += usize::from(!event.customer_id.is_empty());
            }
        }
        figures.push(figure(step, "W3", read, started));
    }
    sqlx::raw_sql("DROP TABLE IF EXISTS ladder; DROP TABLE IF EXISTS ladder_heads")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    check(&figures)?;
    Ok(figures)
}

fn figure(step: &Step, workload: &'static str, events: usize, started: Instant) -> Figure {
    Figure {
        step: step.name,
        adds: step.adds,
        workload,
        events,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn check(figures: &[Figure]) -> Result<()> {
    if let Some(figure) = figures.iter().find(|f| f.events == 0) {
        bail!(
            "ladder step {} {} measured nothing",
            figure.step,
            figure.workload
        );
    }
    Ok(())
}
