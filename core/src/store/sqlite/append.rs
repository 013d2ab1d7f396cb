//! Appends on the single writer connection, run on the calling task: `BEGIN IMMEDIATE`, read
//! the log head, the heads of the call's streams and the call's ids already stored in them,
//! plan, insert the rows, move the stream heads, `COMMIT`. Every statement is prepared once
//! per connection and each is a single index seek or row insert, so SQLite's own work (above
//! all the commit's write to the WAL) is most of an append's cost.
//!
//! Group commit (`store/group.rs`): appends that arrive while the writer is busy wait in the
//! store's queue, and whoever takes the writer next writes all of them in one transaction,
//! each inside a savepoint of its own: an append that is refused (a conflict, a reused id)
//! is rolled back to its savepoint and answered with its refusal, the others commit. Each
//! append reads the heads the group's earlier appends left, so it is judged exactly as it
//! would be alone. If the group's transaction fails as a whole (other than "busy"), each of
//! its appends is written again on its own, for its own answer. With `synchronous=full`
//! one fsync then carries the whole group.
//!
//! Nothing in a transaction awaits: the only awaits of an append are taking the writer and
//! the pauses of [`retry_busy`] while another connection (another process) holds the write
//! lock, and no transaction is open during either. An append whose caller goes away therefore
//! never leaves a transaction or the write lock behind; a group whose writer goes away during
//! a pause is put back at the front of the queue, unwritten, for the next writer.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Mutex;
use tokio::sync::oneshot::error::TryRecvError;

use crate::envelope::{Position, TenantId, to_stored_precision};
use crate::store::group::{self, Queue, Waiting};
use crate::store::plan::{self, Batch, ExistingEvent, Head};
use crate::store::sqlite::checkpoint::Checkpointer;
use crate::store::sqlite::error::{is_busy, retry_busy};
use crate::store::sqlite::{EVENT_COLUMNS, stored_event};
use crate::store::{BatchOutcome, StoreError, stored_hash};

/// The writer connection, and the checkpoint thread it nudges after each commit.
pub(super) struct Writer {
    conn: Connection,
    checkpointer: Checkpointer,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(super) fn new(conn: Connection, checkpointer: Checkpointer) -> Self {
        Writer { conn, checkpointer }
    }

    pub(super) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Runs `work` in one write transaction on the writer connection (rerun while another
/// process holds the write lock), committed when it succeeds.
pub(super) async fn write_transaction<T>(
    writer: &Mutex<Writer>,
    work: impl Fn(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut writer = writer.lock().await;
    let writer = &mut *writer;
    let result = retry_busy(|| {
        // Reached through `&mut`: the closure then holds `&mut Writer`, which is `Send`
        // (a `&Writer` is not: the connection is not `Sync`), so the future may move.
        #[allow(clippy::deref_addrof)]
        let conn = &*(&mut writer.conn);
        let transaction = Transaction::begin_immediate(conn)?;
        let value = work(conn)?;
        transaction.commit()?;
        Ok(value)
    })
    .await?;
    writer.checkpointer.nudge();
    Ok(result)
}

/// Appends one call's events, in a group with whatever else waits for the writer; see the
/// module documentation.
pub(super) async fn append(
    writer: &Mutex<Writer>,
    queue: &Queue,
    tenant: &TenantId,
    batch: Batch,
) -> Result<BatchOutcome, StoreError> {
    let mut reply = queue.push(tenant.clone(), batch);
    loop {
        let mut writer = tokio::select! {
            biased;
            answer = &mut reply => return answer.unwrap_or_else(|_| Err(group::abandoned())),
            writer = writer.lock() => writer,
        };
        match reply.try_recv() {
            Ok(answer) => return answer,
            Err(TryRecvError::Closed) => return Err(group::abandoned()),
            Err(TryRecvError::Empty) => {}
        }
        let waiting = queue.take();
        if waiting.is_empty() {
            continue;
        }
        write_group(&mut writer, queue, waiting).await;
    }
}

/// Writes one group and answers each of its appends.
#[tracing::instrument(skip_all, fields(appends = waiting.len()))]
async fn write_group(writer: &mut Writer, queue: &Queue, waiting: Vec<Waiting>) {
    // Put back, unwritten, if this future is dropped during a pause.
    let mut pending = Unanswered {
        queue,
        waiting: Some(waiting),
    };
    let group = pending.waiting.as_deref().unwrap_or_default();
    let answers = if group.len() == 1 {
        let only = &group[0];
        vec![retry_busy(|| append_now(&mut writer.conn, &only.tenant, &only.batch)).await]
    } else {
        match retry_busy(|| group_now(&mut writer.conn, group)).await {
            Ok(answers) => answers,
            Err(error) => {
                // Each append is written again on its own, for its own answer.
                tracing::debug!(%error, "the group's transaction failed");
                let mut answers = Vec::with_capacity(group.len());
                for append in group {
                    answers.push(
                        retry_busy(|| append_now(&mut writer.conn, &append.tenant, &append.batch))
                            .await,
                    );
                }
                answers
            }
        }
    };
    writer.checkpointer.nudge();
    let waiting = pending.waiting.take().unwrap_or_default();
    for (append, answer) in waiting.into_iter().zip(answers) {
        append.answer(answer);
    }
}

/// A group not answered yet; dropped before that (its writer went away during a pause, with
/// no transaction open) it goes back to the front of the queue.
struct Unanswered<'q> {
    queue: &'q Queue,
    waiting: Option<Vec<Waiting>>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            self.queue.put_back(waiting);
        }
    }
}

/// One attempt at a group: one transaction, each append in a savepoint of its own. A busy
/// answer (or any failure of the transaction itself) rolls back everything.
fn group_now(
    conn: &mut Connection,
    group: &[Waiting],
) -> Result<Vec<Result<BatchOutcome, StoreError>>, StoreError> {
    let conn = &*conn;
    let transaction = Transaction::begin_immediate(conn)?;
    let mut answers = Vec::with_capacity(group.len());
    let mut wrote = false;
    for append in group {
        conn.prepare_cached("SAVEPOINT crm_append")?.execute([])?;
        match write(conn, &append.tenant, &append.batch) {
            Ok((outcome, new)) => {
                conn.prepare_cached("RELEASE crm_append")?.execute([])?;
                wrote |= new;
                answers.push(Ok(outcome));
            }
            Err(error) if is_busy(&error) => return Err(error),
            Err(error) => {
                conn.prepare_cached("ROLLBACK TO crm_append")?.execute([])?;
                conn.prepare_cached("RELEASE crm_append")?.execute([])?;
                answers.push(Err(error));
            }
        }
    }
    if wrote {
        transaction.commit()?;
    }
    Ok(answers)
}

/// One attempt: a whole transaction, committed, or rolled back when anything fails.
fn append_now(
    conn: &mut Connection,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<BatchOutcome, StoreError> {
    let conn = &*conn;
    let transaction = Transaction::begin_immediate(conn)?;
    let (outcome, wrote) = write(conn, tenant, batch)?;
    if wrote {
        transaction.commit()?;
    }
    // Otherwise every event was a duplicate: the read-only transaction is rolled back.
    Ok(outcome)
}

/// An open write transaction: rolled back when dropped without a successful commit
/// (a failed statement, a failed commit, or a panic).
struct Transaction<'c> {
    conn: &'c Connection,
}

impl<'c> Transaction<'c> {
    fn begin_immediate(conn: &'c Connection) -> Result<Self, StoreError> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Transaction { conn })
    }

    fn commit(self) -> Result<(), StoreError> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            // Failing to roll back leaves nothing to do: the next BEGIN would report it.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Reads what the plan needs, plans, and writes the planned rows and heads (inside the
/// caller's transaction). Returns the outcome and whether anything new was written.
fn write(
    conn: &Connection,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<(BatchOutcome, bool), StoreError> {
    let head_position: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM crm_events")?
        .query_row([], |row| row.get(0))?;

    let mut stream_heads: Vec<Option<Head>> = Vec::with_capacity(batch.streams.len());
    {
        let mut read = conn.prepare_cached(
            "SELECT revision, hash FROM crm_streams WHERE tenant = ?1 AND stream_id = ?2",
        )?;
        for stream in &batch.streams {
            let head = read
                .query_row(params![tenant.as_str(), stream.stream.as_str()], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .optional()?;
            stream_heads.push(match head {
                Some((revision, hash)) => Some((revision as u64, stored_hash(&hash, 0)?)),
                None => None,
            });
        }
    }

    // The call's ids already stored in their streams: one index seek per event of a stream
    // that exists (a stream without a head has no events, so nothing to find).
    let mut existing = Vec::new();
    for (stream, event) in &batch.events {
        if stream_heads[*stream].is_none() {
            continue;
        }
        let stream_id = batch.streams[*stream].stream.as_str();
        if let Some((event_type, revision, position)) =
            stored_event(conn, tenant, stream_id, &event.event_id)?
        {
            existing.push(ExistingEvent {
                event_id: event.event_id,
                stream_id: stream_id.to_owned(),
                event_type,
                revision,
                position,
            });
        }
    }

    let planned = plan::plan_append(
        tenant,
        batch,
        head_position as Position,
        &stream_heads,
        existing,
        to_stored_precision(Utc::now()),
    )?;
    if planned.rows.is_empty() {
        return Ok((planned.outcome, false));
    }

    let recorded_at = planned.recorded_at.timestamp_micros();
    if !batch.keys.is_empty() {
        super::keys::apply_ops(conn, tenant, &batch.keys, recorded_at)?;
    }
    {
        let mut insert = conn.prepare_cached(&format!(
            "INSERT INTO crm_events ({EVENT_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))?;
        for row in &planned.rows {
            insert.execute(params![
                row.position as i64,
                tenant.as_str(),
                batch.streams[row.stream].stream.as_str(),
                row.revision as i64,
                row.event.event_id.as_bytes(),
                row.event.event_type.as_str(),
                i64::from(row.event.schema_version),
                row.event.data.get(),
                row.event.metadata.get(),
                row.occurred_at.timestamp_micros(),
                row.recorded_at.timestamp_micros(),
                row.hash.as_slice(),
            ])?;
        }
    }
    {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO crm_streams (tenant, stream_id, revision, hash) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant, stream_id) \
             DO UPDATE SET revision = excluded.revision, hash = excluded.hash",
        )?;
        for head in &planned.new_heads {
            upsert.execute(params![
                tenant.as_str(),
                batch.streams[head.stream].stream.as_str(),
                head.revision as i64,
                head.hash.as_slice(),
            ])?;
        }
    }
    Ok((planned.outcome, true))
}
