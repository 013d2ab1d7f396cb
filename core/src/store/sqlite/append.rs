//! Appends on the single writer connection. Each round trip to sqlx's SQLite worker thread
//! costs two thread wake-ups (about 55 µs on the 2-core benchmark machine), far more than
//! SQLite's own work for a small append, so appends are shaped to use as few as possible,
//! however many streams the call spans:
//!
//! - **fast path, one round trip**: `BEGIN IMMEDIATE; INSERT …; upsert heads; COMMIT`,
//!   planned from the heads this connection itself last committed. Those are right unless
//!   another connection (another process) wrote since; if it did, a planned position or
//!   revision is already taken, the insert hits a unique key, and the append falls back. A
//!   duplicate event id also hits a unique key and falls back.
//! - **slow path, two round trips**: `BEGIN IMMEDIATE` with one read of the log head, the
//!   heads of all the call's streams and the call's ids already stored in them, then the
//!   same write command. Authoritative; it also refreshes the known heads.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, QueryBuilder, Row, Sqlite};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::envelope::{Position, StreamId, TenantId, to_stored_precision};
use crate::store::plan::{self, Batch, ExistingEvent, Head, Plan};
use crate::store::sqlite::EVENT_COLUMNS;
use crate::store::stored_hash;
use crate::store::{BatchOutcome, ExpectedRevision, StoreError};

/// Rows per multi-row INSERT statement (12 parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 64;
/// Stream heads per multi-row upsert statement (4 parameters each).
const HEAD_CHUNK: usize = 256;
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
#[tracing::instrument(skip_all, fields(streams = batch.streams.len(), events = batch.events.len()), err)]
pub(super) async fn append(
    writer: &Arc<Mutex<Writer>>,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<BatchOutcome, StoreError> {
    let mut guard = OpenTransaction(Some(Arc::clone(writer).lock_owned().await));
    let writer = guard.writer();
    let result = match fast_path(writer, tenant, batch).await {
        Some(result) => result,
        None => slow_path(writer, tenant, batch).await,
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
    batch: &Batch,
) -> Option<Result<BatchOutcome, StoreError>> {
    let known = writer.known.as_ref()?;
    let mut stream_heads = Vec::with_capacity(batch.streams.len());
    for stream in &batch.streams {
        let head = known
            .streams
            .get(&(tenant.clone(), stream.stream.clone()))
            .copied();
        // A stream this connection has not seen may still exist: assume it does not only
        // when the caller's expectation allows a new stream, so a wrong guess can only
        // collide.
        if head.is_none()
            && !matches!(
                stream.expected,
                ExpectedRevision::NoStream | ExpectedRevision::Any
            )
        {
            return None;
        }
        stream_heads.push(head);
    }
    // Any refusal planned from remembered heads is re-checked against the log.
    let planned = plan::plan_append(
        tenant,
        batch,
        known.head_position,
        &stream_heads,
        Vec::new(),
        to_stored_precision(Utc::now()),
    )
    .ok()?;
    if planned.rows.is_empty() {
        return None;
    }
    let mut command = write_command(tenant, batch, &planned, true);
    match command
        .build()
        .persistent(true)
        .execute(&mut writer.conn)
        .await
    {
        Ok(_) => {
            remember_written(writer, tenant, batch, &planned);
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
    batch: &Batch,
) -> Result<BatchOutcome, StoreError> {
    let result = read_then_write(writer, tenant, batch).await;
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
    Committed(BatchOutcome),
    /// Every event was a duplicate; the transaction is still open for the caller to end.
    NothingNew(BatchOutcome),
}

async fn read_then_write(
    writer: &mut Writer,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<Written, StoreError> {
    // Round trip 1: take the write lock and read what the plan needs: the log head (kind 0),
    // the head of each of the batch's streams (kind 1), and the batch's (stream, id) pairs
    // already stored (kind 2). Parameters: ?1 the tenant, ?2.. the streams, then the ids.
    let mut read: QueryBuilder<Sqlite> = QueryBuilder::new(
        "BEGIN IMMEDIATE; \
         SELECT 0, (SELECT COALESCE(MAX(position), 0) FROM crm_events), NULL, NULL, NULL, NULL \
         UNION ALL \
         SELECT 1, NULL, revision, hash, stream_id, NULL FROM crm_streams \
         WHERE tenant = ?1 AND stream_id IN (",
    );
    let mut args = SqliteArguments::default();
    args.add(tenant.as_str().to_owned())
        .map_err(sqlx::Error::Encode)?;
    for (index, stream) in batch.streams.iter().enumerate() {
        if index > 0 {
            read.push(", ");
        }
        read.push(format_args!("?{}", index + 2));
        args.add(stream.stream.as_str().to_owned())
            .map_err(sqlx::Error::Encode)?;
    }
    // Each event's (stream, id) pair, so a look-up is one index seek per event.
    read.push(
        ") UNION ALL \
         SELECT 2, e.position, e.revision, e.event_id, e.stream_id, e.event_type \
         FROM (VALUES ",
    );
    let first_id = batch.streams.len() + 2;
    for (index, (stream, event)) in batch.events.iter().enumerate() {
        if index > 0 {
            read.push(", ");
        }
        read.push(format_args!("(?{}, ?{})", stream + 2, first_id + index));
        args.add(event.event_id.as_bytes().to_vec())
            .map_err(sqlx::Error::Encode)?;
    }
    read.push(
        ") AS k CROSS JOIN crm_events AS e \
         WHERE e.tenant = ?1 AND e.stream_id = k.column1 AND e.event_id = k.column2",
    );
    let rows = sqlx::query_with(read.into_sql(), args)
        .persistent(true)
        .fetch_all(&mut writer.conn)
        .await?;
    let mut head_position = 0;
    let mut heads: HashMap<String, Head> = HashMap::new();
    let mut existing = Vec::new();
    for row in &rows {
        let kind: i64 = row.try_get(0)?;
        match kind {
            0 => head_position = row.try_get::<i64, _>(1)? as Position,
            1 => {
                let hash: Vec<u8> = row.try_get(3)?;
                heads.insert(
                    row.try_get(4)?,
                    (row.try_get::<i64, _>(2)? as u64, stored_hash(&hash, 0)?),
                );
            }
            _ => {
                let position: i64 = row.try_get(1)?;
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
    }
    let stream_heads: Vec<Option<Head>> = batch
        .streams
        .iter()
        .map(|s| heads.get(s.stream.as_str()).copied())
        .collect();

    let planned = plan::plan_append(
        tenant,
        batch,
        head_position,
        &stream_heads,
        existing,
        to_stored_precision(Utc::now()),
    )?;
    // What was read is authoritative (the write lock is held): remember it either way.
    for (stream, head) in batch.streams.iter().zip(&stream_heads) {
        if let Some(head) = head {
            remember(writer, tenant, &stream.stream, *head, head_position);
        }
    }
    if planned.rows.is_empty() {
        // Every event was a duplicate: nothing to write.
        return Ok(Written::NothingNew(planned.outcome));
    }
    // Round trip 2: every insert, the stream heads, and the commit.
    let mut command = write_command(tenant, batch, &planned, false);
    command
        .build()
        .persistent(true)
        .execute(&mut writer.conn)
        .await?;
    remember_written(writer, tenant, batch, &planned);
    Ok(Written::Committed(planned.outcome))
}

/// Records the heads a committed plan wrote as the base for the next fast-path append.
fn remember_written(writer: &mut Writer, tenant: &TenantId, batch: &Batch, planned: &Plan<'_>) {
    let head_position = planned.rows.last().map_or(0, |row| row.position);
    for head in &planned.new_heads {
        remember(
            writer,
            tenant,
            &batch.streams[head.stream].stream,
            (head.revision, head.hash),
            head_position,
        );
    }
}

/// Records a committed (or confirmed) stream head and log head as the base for the next
/// fast-path append.
fn remember(
    writer: &mut Writer,
    tenant: &TenantId,
    stream: &StreamId,
    head: Head,
    head_position: Position,
) {
    let known = writer.known.get_or_insert_with(KnownHeads::default);
    let key = (tenant.clone(), stream.clone());
    if known.streams.len() >= KNOWN_STREAMS && !known.streams.contains_key(&key) {
        known.streams.clear();
    }
    known.head_position = known.head_position.max(head_position);
    known.streams.insert(key, head);
}

/// `[BEGIN IMMEDIATE;] INSERT events …; upsert the stream heads; COMMIT`.
fn write_command(
    tenant: &TenantId,
    batch: &Batch,
    planned: &Plan<'_>,
    begin: bool,
) -> QueryBuilder<Sqlite> {
    let mut command: QueryBuilder<Sqlite> =
        QueryBuilder::new(if begin { "BEGIN IMMEDIATE; " } else { "" });
    let recorded_at = planned.recorded_at.timestamp_micros();
    for chunk in planned.rows.chunks(INSERT_CHUNK) {
        command.push(format_args!("INSERT INTO crm_events ({EVENT_COLUMNS}) "));
        command.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.position as i64)
                .push_bind(tenant.as_str())
                .push_bind(batch.streams[row.stream].stream.as_str())
                .push_bind(row.revision as i64)
                .push_bind(row.event.event_id.as_bytes().as_slice())
                .push_bind(row.event.event_type.as_str())
                .push_bind(i64::from(row.event.schema_version))
                .push_bind(row.event.data.get())
                .push_bind(row.event.metadata.get())
                .push_bind(row.occurred_at.timestamp_micros())
                .push_bind(recorded_at)
                .push_bind(row.hash.as_slice());
        });
        command.push("; ");
    }
    for chunk in planned.new_heads.chunks(HEAD_CHUNK) {
        command.push("INSERT INTO crm_streams (tenant, stream_id, revision, hash) ");
        command.push_values(chunk, |mut values, head| {
            values
                .push_bind(tenant.as_str())
                .push_bind(batch.streams[head.stream].stream.as_str())
                .push_bind(head.revision as i64)
                .push_bind(head.hash.as_slice());
        });
        command.push(
            " ON CONFLICT (tenant, stream_id) \
             DO UPDATE SET revision = excluded.revision, hash = excluded.hash; ",
        );
    }
    command.push("COMMIT");
    command
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
