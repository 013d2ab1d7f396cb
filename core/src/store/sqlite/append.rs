//! Appends on the single writer connection. Each round trip to sqlx's SQLite worker thread
//! costs two thread wake-ups (about 55 µs on the 2-core benchmark machine), far more than
//! SQLite's own work for a small append, so appends are shaped to use as few as possible:
//!
//! - **fast path, one round trip**: `BEGIN IMMEDIATE; INSERT …; upsert head; COMMIT`, planned
//!   from the heads this connection itself last committed. Those are right unless another
//!   connection (another process) wrote since; if it did, the planned position or revision
//!   is already taken, the insert hits a unique key, and the append falls back. A duplicate
//!   event id also hits a unique key and falls back.
//! - **slow path, two round trips**: `BEGIN IMMEDIATE` with a read of the heads and of the
//!   call's ids already stored, then the same write command. Authoritative; it also
//!   refreshes the known heads.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, QueryBuilder, Row, Sqlite};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, StreamId, TenantId, to_stored_precision};
use crate::store::plan::{self, ExistingEvent, Plan};
use crate::store::sqlite::EVENT_COLUMNS;
use crate::store::stored_hash;
use crate::store::{AppendOutcome, ExpectedRevision, StoreError};

/// Rows per multi-row INSERT statement (12 parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 64;
/// Stream heads remembered for the fast path; past this the memory starts over.
const KNOWN_STREAMS: usize = 200_000;

/// The writer connection and what it last committed.
#[derive(Debug)]
pub(super) struct Writer {
    conn: SqliteConnection,
    /// `None` until a slow-path append has read the log, and after any failure.
    known: Option<KnownHeads>,
}

#[derive(Debug, Default)]
struct KnownHeads {
    head_position: Position,
    streams: HashMap<(TenantId, StreamId), (u64, [u8; 32])>,
}

impl Writer {
    pub(super) fn new(conn: SqliteConnection) -> Self {
        Writer { conn, known: None }
    }
}

/// The writer during an append. If the append's future is dropped half-way (the caller went
/// away), any transaction it opened is rolled back on a spawned task, so the write lock is
/// never left held, and the known heads are forgotten: an append that was not acknowledged
/// may or may not be stored, and only a fresh read can tell.
struct OpenTransaction(Option<OwnedMutexGuard<Writer>>);

impl OpenTransaction {
    fn writer(&mut self) -> &mut Writer {
        self.0
            .as_deref_mut()
            .expect("writer present until disarmed")
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(mut writer) = self.0.take() {
            writer.known = None;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut writer.conn).await;
                });
            }
        }
    }
}

/// Appends one call's events; see the module documentation.
#[tracing::instrument(skip_all, fields(stream = %stream, events = events.len()), err)]
pub(super) async fn append(
    writer: &Arc<Mutex<Writer>>,
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
) -> Result<AppendOutcome, StoreError> {
    let mut guard = OpenTransaction(Some(Arc::clone(writer).lock_owned().await));
    let writer = guard.writer();
    let result = match fast_path(writer, tenant, stream, expected, &events).await {
        Some(result) => result,
        None => slow_path(writer, tenant, stream, expected, events).await,
    };
    if result.is_err() {
        writer.known = None;
    }
    guard.disarm();
    result
}

/// `None` when the fast path cannot decide and the slow path must run.
async fn fast_path(
    writer: &mut Writer,
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: &[NewEvent],
) -> Option<Result<AppendOutcome, StoreError>> {
    let known = writer.known.as_ref()?;
    let key = (tenant.clone(), stream.clone());
    let stream_head = known.streams.get(&key).copied();
    // A stream this connection has not seen may still exist: assume it does not only when
    // the caller's expectation allows a new stream, so a wrong guess can only collide.
    if stream_head.is_none()
        && !matches!(expected, ExpectedRevision::NoStream | ExpectedRevision::Any)
    {
        return None;
    }
    // Any refusal planned from remembered heads is re-checked against the log.
    let planned = plan::plan_append(
        tenant,
        stream,
        expected,
        events,
        known.head_position,
        stream_head,
        Vec::new(),
        to_stored_precision(Utc::now()),
    )
    .ok()?;
    let (revision, hash) = planned.new_head?;
    let mut command = write_command(tenant, stream, &planned.rows, revision, &hash, true);
    match command
        .build()
        .persistent(true)
        .execute(&mut writer.conn)
        .await
    {
        Ok(_) => {
            remember(writer, key, revision, hash, planned.outcome.last_position);
            Some(Ok(planned.outcome))
        }
        Err(error) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut writer.conn).await;
            writer.known = None;
            if is_unique_violation(&error) {
                None
            } else {
                Some(Err(error.into()))
            }
        }
    }
}

async fn slow_path(
    writer: &mut Writer,
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
) -> Result<AppendOutcome, StoreError> {
    let result = read_then_write(writer, tenant, stream, expected, events).await;
    if !matches!(result, Ok(Written::Committed(_))) {
        // Nothing to commit (all duplicates), or a failure after `BEGIN`: end the
        // transaction. After a failed `BEGIN` this is a harmless "no transaction" error.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut writer.conn).await;
    }
    match result? {
        Written::Committed(outcome) | Written::NothingNew(outcome) => Ok(outcome),
    }
}

/// How a slow-path append ended.
enum Written {
    /// Rows were written and committed.
    Committed(AppendOutcome),
    /// Every event was a duplicate; the transaction is still open for the caller to end.
    NothingNew(AppendOutcome),
}

async fn read_then_write(
    writer: &mut Writer,
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
) -> Result<Written, StoreError> {
    // Round trip 1: take the write lock and read what the plan needs.
    let mut read: QueryBuilder<Sqlite> = QueryBuilder::new(
        "BEGIN IMMEDIATE; \
         SELECT 0, (SELECT COALESCE(MAX(position), 0) FROM crm_events), \
                (SELECT revision FROM crm_streams WHERE tenant = ?1 AND stream_id = ?2), \
                (SELECT hash FROM crm_streams WHERE tenant = ?1 AND stream_id = ?2), \
                NULL, NULL \
         UNION ALL \
         SELECT 1, position, revision, event_id, stream_id, event_type FROM crm_events \
         WHERE tenant = ?1 AND stream_id = ?2 AND event_id IN (",
    );
    let mut args = SqliteArguments::default();
    args.add(tenant.as_str().to_owned())
        .map_err(sqlx::Error::Encode)?;
    args.add(stream.as_str().to_owned())
        .map_err(sqlx::Error::Encode)?;
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            read.push(", ");
        }
        read.push(format_args!("?{}", index + 3));
        args.add(event.event_id.as_bytes().to_vec())
            .map_err(sqlx::Error::Encode)?;
    }
    read.push(")");
    let rows = sqlx::query_with(read.into_sql(), args)
        .persistent(true)
        .fetch_all(&mut writer.conn)
        .await?;
    let mut head_position = 0;
    let mut stream_head = None;
    let mut existing = Vec::new();
    for row in &rows {
        let kind: i64 = row.try_get(0)?;
        let position: i64 = row.try_get(1)?;
        if kind == 0 {
            head_position = position as Position;
            let revision: Option<i64> = row.try_get(2)?;
            let hash: Option<Vec<u8>> = row.try_get(3)?;
            if let (Some(revision), Some(hash)) = (revision, hash) {
                stream_head = Some((revision as u64, stored_hash(&hash, 0)?));
            }
        } else {
            let id: Vec<u8> = row.try_get(3)?;
            existing.push(ExistingEvent {
                event_id: Uuid::from_slice(&id).map_err(|e| StoreError::Corrupt {
                    position: position as Position,
                    reason: format!("event id: {e}"),
                })?,
                stream_id: row.try_get(4)?,
                event_type: row.try_get(5)?,
                revision: row.try_get::<i64, _>(2)? as u64,
                position: position as Position,
            });
        }
    }

    let Plan {
        rows,
        outcome,
        new_head,
    } = plan::plan_append(
        tenant,
        stream,
        expected,
        &events,
        head_position,
        stream_head,
        existing,
        to_stored_precision(Utc::now()),
    )?;
    let key = (tenant.clone(), stream.clone());
    let Some((revision, hash)) = new_head else {
        // Every event was a duplicate: nothing to write.
        if let Some((revision, hash)) = stream_head {
            remember(writer, key, revision, hash, head_position);
        }
        return Ok(Written::NothingNew(outcome));
    };
    // Round trip 2: every insert, the stream head, and the commit.
    let mut command = write_command(tenant, stream, &rows, revision, &hash, false);
    command
        .build()
        .persistent(true)
        .execute(&mut writer.conn)
        .await?;
    remember(writer, key, revision, hash, outcome.last_position);
    Ok(Written::Committed(outcome))
}

/// Records a committed (or confirmed) state as the base for the next fast-path append.
fn remember(
    writer: &mut Writer,
    key: (TenantId, StreamId),
    revision: u64,
    hash: [u8; 32],
    head_position: Position,
) {
    let known = writer.known.get_or_insert_with(KnownHeads::default);
    if known.streams.len() >= KNOWN_STREAMS && !known.streams.contains_key(&key) {
        known.streams.clear();
    }
    known.head_position = known.head_position.max(head_position);
    known.streams.insert(key, (revision, hash));
}

/// `[BEGIN IMMEDIATE;] INSERT events …; upsert the stream head; COMMIT`.
fn write_command(
    tenant: &TenantId,
    stream: &StreamId,
    rows: &[plan::Row],
    revision: u64,
    hash: &[u8; 32],
    begin: bool,
) -> QueryBuilder<Sqlite> {
    let mut command: QueryBuilder<Sqlite> =
        QueryBuilder::new(if begin { "BEGIN IMMEDIATE; " } else { "" });
    for chunk in rows.chunks(INSERT_CHUNK) {
        command.push(format_args!("INSERT INTO crm_events ({EVENT_COLUMNS}) "));
        command.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.position as i64)
                .push_bind(tenant.as_str())
                .push_bind(stream.as_str())
                .push_bind(row.revision as i64)
                .push_bind(row.event_id.as_bytes().as_slice())
                .push_bind(row.event_type.as_str())
                .push_bind(i64::from(row.schema_version))
                .push_bind(row.data.as_str())
                .push_bind(row.metadata.as_str())
                .push_bind(row.occurred_at.timestamp_micros())
                .push_bind(row.recorded_at.timestamp_micros())
                .push_bind(row.hash.as_slice());
        });
        command.push("; ");
    }
    command.push("INSERT INTO crm_streams (tenant, stream_id, revision, hash) VALUES (");
    command
        .push_bind(tenant.as_str())
        .push(", ")
        .push_bind(stream.as_str())
        .push(", ")
        .push_bind(revision as i64)
        .push(", ")
        .push_bind(hash.as_slice());
    command.push(
        ") ON CONFLICT (tenant, stream_id) \
         DO UPDATE SET revision = excluded.revision, hash = excluded.hash; COMMIT",
    );
    command
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
