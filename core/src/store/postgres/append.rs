//! The append path: one writer connection per store, group commit, and one round trip per
//! group when the store's remembered heads are still the log's state.
//!
//! Appends join the store's queue (`store/group.rs`); whoever takes the writer writes every
//! waiting append as one group, on a spawned task that owns the writer until the group is
//! answered. The writer is a dedicated connection (session `plan_cache_mode =
//! force_generic_plan`, see `BEGIN_APPEND`) with the heads of the streams it last wrote or
//! read.
//!
//! Each append of a group is planned by the shared decision (`plan.rs`) in queue order, from
//! the log head this store knows (its head watch, moved past the group's earlier appends) and
//! the remembered heads (a stream not remembered is assumed not to exist). The planned
//! appends are written by one autocommit call of `crm_append_group_keys` (migration 0005),
//! which takes the append lock and checks under it that the log head, every stream's
//! revision and the absence of the group's ids are what the plans assumed, and that the keys
//! the appends seal under are still stored live under their ids and the keys they mint are
//! new. Only then does it write, all of them in one commit; otherwise it writes nothing and
//! answers "stale".
//!
//! An append is written on its own instead, through the transactional path (`append_in`:
//! lock, read heads and ids, plan, write, commit), which gives the authoritative answer
//! (conflicts, duplicates, a key that changed) and refreshes the remembered heads, when: it
//! links or erases subjects or restores exported events (read and written under the lock
//! by `append_in` only); its plan from
//! remembered heads was refused (which may only mean they are stale); it names a stream an
//! earlier append of the group already writes; or the group's call answered "stale" or
//! failed. So one refused append never fails another, and each answer is the one the append
//! would get alone. Rewriting an append whose group failed is safe: its ids are idempotency
//! keys, so if the group did commit, the rewrite acknowledges duplicates.
//!
//! The append lock is held through the commit, as before: positions stay gap-free and in
//! commit order (docs/architecture.md, "Group commit"). What grouping changes is how much
//! one lock hold and one fsync carry: with many concurrent appends in a process, one commit
//! writes them all.
//!
//! Abandonment: a caller that goes away leaves its append in the queue or in a group under
//! way; the group's task runs to completion either way, so the append lock is never left held
//! and every answer matches what was committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::{BEGIN_APPEND, Written, append_in};
use crate::envelope::{Position, TenantId};
use crate::store::group::{self, Queue, Waiting};
use crate::store::plan::{self, Batch, Head};
use crate::store::{BatchOutcome, StoreError, advance_head};

/// Remembered stream heads kept at most; past this the memory starts again (appends to a
/// forgotten stream take the transactional path once).
const MAX_REMEMBERED_HEADS: usize = 16_384;

/// How long after a stale plan groups skip the remembered heads.
const CONTENDED_FOR: Duration = Duration::from_secs(1);

/// The one-round-trip group append, with the group's key uses and new keys (migration 0005).
const CALL_APPEND_GROUP: &str = "SELECT crm_append_group_keys($1, $2, $3, $4, $5, $6, $7, $8, \
     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)";

/// A store's writer: its connection and remembered heads, and the appends waiting for it.
#[derive(Debug)]
pub(super) struct Writer {
    options: PgConnectOptions,
    state: Arc<Mutex<WriterState>>,
    queue: Queue,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    one_round_trip: AtomicU64,
    transactional: AtomicU64,
    grouped: AtomicU64,
    groups: AtomicU64,
}

/// How a store's appends were written so far ([`super::PostgresEventStore::append_paths`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendPaths {
    /// Appends written by one call from remembered heads, alone or in a group.
    pub one_round_trip: u64,
    /// Appends that took the transactional path (unknown or stale heads, conflicts,
    /// duplicates, key changes, restores).
    pub transactional: u64,
    /// Of `one_round_trip`, the appends written in a group of more than one.
    pub grouped: u64,
    /// Calls that wrote a group of more than one append.
    pub groups: u64,
}

#[derive(Debug, Default)]
struct WriterState {
    conn: Option<PgConnection>,
    /// Set while a call is on the wire; still set when the next group starts means the task
    /// went away mid-statement (a runtime shutting down).
    in_flight: bool,
    /// Last known (revision, hash) per tenant and stream.
    heads: HashMap<String, HashMap<String, Head>>,
    remembered: usize,
    /// When a group's plan from remembered heads was last found stale: another writer (another
    /// process) is appending too, and for a while groups go straight to the transactional
    /// path instead of trying remembered heads first.
    stale_at: Option<Instant>,
}

impl WriterState {
    /// The writer connection, (re)opened when missing or left mid-statement.
    async fn connection(
        &mut self,
        options: &PgConnectOptions,
    ) -> Result<&mut PgConnection, sqlx::Error> {
        if std::mem::take(&mut self.in_flight) {
            // The abandoned statement's fate is unknown: its connection goes, and the heads
            // it may have moved are forgotten (the checks in `crm_append_group_keys` would catch
            // them).
            self.conn = None;
            self.forget();
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => options.connect().await?,
        };
        Ok(self.conn.insert(conn))
    }

    fn head(&self, tenant: &str, stream: &str) -> Option<Head> {
        self.heads.get(tenant)?.get(stream).copied()
    }

    fn heads_of(&self, tenant: &TenantId, batch: &Batch) -> Vec<Option<Head>> {
        batch
            .streams
            .iter()
            .map(|s| self.head(tenant.as_str(), s.stream.as_str()))
            .collect()
    }

    /// Remembers each batch stream's head (indexed as `Batch::streams`); `None` forgets it.
    fn remember(&mut self, tenant: &TenantId, batch: &Batch, heads: &[Option<Head>]) {
        if self.remembered + heads.len() > MAX_REMEMBERED_HEADS {
            self.forget();
        }
        let streams = self.heads.entry(tenant.as_str().to_owned()).or_default();
        for (stream, head) in batch.streams.iter().zip(heads) {
            let name = stream.stream.as_str();
            match head {
                Some(head) => match streams.get_mut(name) {
                    Some(known) => *known = *head,
                    None => {
                        streams.insert(name.to_owned(), *head);
                        self.remembered += 1;
                    }
                },
                None => {
                    if streams.remove(name).is_some() {
                        self.remembered -= 1;
                    }
                }
            }
        }
    }

    fn forget(&mut self) {
        self.heads.clear();
        self.remembered = 0;
    }
}

impl Writer {
    /// A writer on its own connection (opened on first use) with generic plans for the
    /// session.
    pub(super) fn new(options: &PgConnectOptions) -> Self {
        let options = options
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        Writer {
            options,
            state: Arc::new(Mutex::new(WriterState::default())),
            queue: Queue::default(),
            counters: Arc::default(),
        }
    }

    pub(super) fn paths(&self) -> AppendPaths {
        let counters = &self.counters;
        AppendPaths {
            one_round_trip: counters.one_round_trip.load(Ordering::Relaxed),
            transactional: counters.transactional.load(Ordering::Relaxed),
            grouped: counters.grouped.load(Ordering::Relaxed),
            groups: counters.groups.load(Ordering::Relaxed),
        }
    }

    /// Appends `batch`, in a group with whatever else waits for the writer.
    pub(super) async fn append(
        &self,
        tenant: &TenantId,
        batch: Batch,
        head: &Arc<watch::Sender<Position>>,
    ) -> Result<BatchOutcome, StoreError> {
        let mut reply = self.queue.push(tenant.clone(), batch);
        loop {
            let state = tokio::select! {
                biased;
                answer = &mut reply => return answer.unwrap_or_else(|_| Err(group::abandoned())),
                state = Arc::clone(&self.state).lock_owned() => state,
            };
            match reply.try_recv() {
                Ok(answer) => return answer,
                Err(TryRecvError::Closed) => return Err(group::abandoned()),
                Err(TryRecvError::Empty) => {}
            }
            let waiting = self.queue.take();
            if waiting.is_empty() {
                continue;
            }
            // The group is written on a task of its own, which owns the writer until every
            // append of it is answered, even if this caller goes away.
            let task = tokio::spawn(write_group(
                state,
                self.options.clone(),
                Arc::clone(&self.counters),
                waiting,
                Arc::clone(head),
            ));
            if let Err(error) = task.await {
                return Err(StoreError::Task(error.to_string()));
            }
        }
    }
}

/// An append of a group planned from remembered heads, and the heads it leaves.
struct Planned {
    index: usize,
    outcome: BatchOutcome,
    heads: Vec<Option<Head>>,
}

/// Writes one group and answers each of its appends; see the module documentation.
async fn write_group(
    mut state: OwnedMutexGuard<WriterState>,
    options: PgConnectOptions,
    counters: Arc<Counters>,
    waiting: Vec<Waiting>,
    head: Arc<watch::Sender<Position>>,
) {
    let state = &mut *state;
    let contended = state
        .stale_at
        .is_some_and(|at| at.elapsed() < CONTENDED_FOR);
    let (answers, alone) = if contended {
        let all: Vec<usize> = (0..waiting.len()).collect();
        (Vec::new(), all)
    } else {
        from_remembered_heads(state, &options, &counters, &waiting, &head).await
    };
    let mut waiting: Vec<Option<Waiting>> = waiting.into_iter().map(Some).collect();
    for (index, answer) in answers {
        if let Some(append) = waiting[index].take() {
            append.answer(answer);
        }
    }
    let alone: Vec<Waiting> = alone
        .into_iter()
        .filter_map(|index| waiting[index].take())
        .collect();
    in_one_transaction(state, &options, &counters, alone, &head).await;
}

/// The appends of a group that could be planned from remembered heads, written by one
/// `crm_append_group_keys` call: their answers, and the indexes of the appends left for the
/// transactional path.
async fn from_remembered_heads(
    state: &mut WriterState,
    options: &PgConnectOptions,
    counters: &Counters,
    waiting: &[Waiting],
    head: &watch::Sender<Position>,
) -> (Vec<(usize, Result<BatchOutcome, StoreError>)>, Vec<usize>) {
    let log_head = *head.borrow();
    let recorded_at = crate::envelope::to_stored_precision(Utc::now());
    let mut alone: Vec<usize> = Vec::new();
    let mut planned: Vec<Planned> = Vec::new();
    let written = {
        let mut call = Call::new(log_head, recorded_at);
        let mut streams: HashSet<(&str, &str)> = HashSet::new();
        let mut next_head = log_head;
        for (index, append) in waiting.iter().enumerate() {
            let (tenant, batch) = (&append.tenant, &append.batch);
            let overlaps = batch
                .streams
                .iter()
                .any(|s| streams.contains(&(tenant.as_str(), s.stream.as_str())));
            if !group_call_writes(batch) || overlaps {
                alone.push(index);
                continue;
            }
            let heads = state.heads_of(tenant, batch);
            // A refused plan may only mean the remembered heads are stale: the transactional
            // path decides.
            let Ok(plan) =
                plan::plan_append(tenant, batch, next_head, &heads, Vec::new(), recorded_at)
            else {
                alone.push(index);
                continue;
            };
            call.add(tenant, batch, &plan, &heads);
            next_head += plan.rows.len() as Position;
            streams.extend(
                batch
                    .streams
                    .iter()
                    .map(|s| (tenant.as_str(), s.stream.as_str())),
            );
            let mut after = heads;
            for new in &plan.new_heads {
                after[new.stream] = Some((new.revision, new.hash));
            }
            planned.push(Planned {
                index,
                outcome: plan.outcome,
                heads: after,
            });
        }
        if planned.is_empty() {
            Ok(None)
        } else {
            call.run(state, options).await
        }
    };
    let mut answers = Vec::with_capacity(planned.len());
    match written {
        Ok(Some(last)) => {
            let count = planned.len() as u64;
            counters.one_round_trip.fetch_add(count, Ordering::Relaxed);
            if count > 1 {
                counters.grouped.fetch_add(count, Ordering::Relaxed);
                counters.groups.fetch_add(1, Ordering::Relaxed);
            }
            advance_head(head, last);
            for done in planned {
                let append = &waiting[done.index];
                state.remember(&append.tenant, &append.batch, &done.heads);
                answers.push((done.index, Ok(done.outcome)));
            }
        }
        Ok(None) => {
            if !planned.is_empty() {
                tracing::debug!(appends = planned.len(), "remembered heads were stale");
                state.stale_at = Some(Instant::now());
            }
            alone.extend(planned.iter().map(|p| p.index));
        }
        Err(error) => {
            // The transactional path writes them again, which gives each its own answer (a
            // conflict, or the error again if the database is unreachable).
            tracing::debug!(%error, appends = planned.len(), "the group call failed");
            state.forget();
            alone.extend(planned.iter().map(|p| p.index));
        }
    }
    alone.sort_unstable();
    (answers, alone)
}

/// Writes `appends` through the transactional path, as few transactions as possible: one for
/// all of them (each planned from heads and ids read under the lock, a refused one answered
/// with its refusal and left out), except appends with key changes or restores and appends
/// naming a stream an earlier one of the group writes, which each get a transaction of
/// their own, after.
async fn in_one_transaction(
    state: &mut WriterState,
    options: &PgConnectOptions,
    counters: &Counters,
    appends: Vec<Waiting>,
    head: &watch::Sender<Position>,
) {
    if appends.is_empty() {
        return;
    }
    counters
        .transactional
        .fetch_add(appends.len() as u64, Ordering::Relaxed);
    // Which appends share the transaction: decided on borrowed names, then the appends move.
    let alone: Vec<bool> = {
        let mut streams: HashSet<(&str, &str)> = HashSet::new();
        appends
            .iter()
            .map(|append| {
                let tenant = append.tenant.as_str();
                let names = || {
                    append
                        .batch
                        .streams
                        .iter()
                        .map(|s| (tenant, s.stream.as_str()))
                };
                let alone =
                    needs_transaction(&append.batch) || names().any(|n| streams.contains(&n));
                if !alone {
                    streams.extend(names());
                }
                alone
            })
            .collect()
    };
    let (mut after, mut together): (Vec<Waiting>, Vec<Waiting>) = {
        let mut flags = alone.iter();
        appends
            .into_iter()
            .partition(|_| flags.next().copied().unwrap_or(true))
    };
    if together.len() == 1 {
        after.insert(0, together.remove(0));
    }
    if !together.is_empty() {
        match group_transaction(state, options, &together, head).await {
            Ok(answers) => {
                for (append, answer) in together.into_iter().zip(answers) {
                    append.answer(answer);
                }
            }
            // The group's transaction failed as a whole: each is written on its own.
            Err(error) => {
                tracing::debug!(%error, appends = together.len(), "the group's transaction failed");
                state.forget();
                together.append(&mut after);
                after = together;
            }
        }
    }
    for append in after {
        let answer = transactional(state, options, &append.tenant, &append.batch, head).await;
        append.answer(answer);
    }
}
/// One round trip under the append lock: the log head (kind 0), the heads of every (tenant,
/// stream) of a group (kind 1) and its (tenant, stream, id) triples already stored (kind 2).
/// Each look-up is a LATERAL probe of a unique index (see `append_in` in postgres/mod.rs).
const READ_GROUP: &str = "SELECT 0 AS kind, \
        (SELECT position FROM crm_events ORDER BY position DESC LIMIT 1) AS position, \
        NULL::bigint AS revision, NULL::bytea AS hash, NULL::text AS tenant, \
        NULL::text AS stream_id, NULL::uuid AS event_id, NULL::text AS event_type \
     UNION ALL \
     SELECT 1, NULL, s.revision, s.hash, k.tenant, k.stream_id, NULL, NULL \
     FROM UNNEST($1::text[], $2::text[]) AS k(tenant, stream_id) \
     CROSS JOIN LATERAL (SELECT revision, hash FROM crm_streams \
         WHERE tenant = k.tenant AND stream_id = k.stream_id LIMIT 1) AS s \
     UNION ALL \
     SELECT 2, e.position, e.revision, NULL, k.tenant, k.stream_id, k.event_id, e.event_type \
     FROM UNNEST($3::text[], $4::text[], $5::uuid[]) AS k(tenant, stream_id, event_id) \
     CROSS JOIN LATERAL (SELECT position, revision, event_type FROM crm_events \
         WHERE tenant = k.tenant AND stream_id = k.stream_id AND event_id = k.event_id \
         LIMIT 1) AS e";

/// What a group's transaction decided: each append's answer and, for those written, its
/// streams' heads after it; and the log head after the group.
struct GroupWritten {
    answers: Vec<Result<BatchOutcome, StoreError>>,
    heads: Vec<Option<Vec<Option<Head>>>>,
    log_head: Position,
}

/// The transactional path for a group of appends on distinct streams, without key changes
/// or restores: one transaction on the writer connection. Answers each append (a refusal for
/// the refused); an error means nothing of the group was written, or (the commit's answer
/// lost) that it is unknown, and the connection is then replaced.
async fn group_transaction(
    state: &mut WriterState,
    options: &PgConnectOptions,
    group: &[Waiting],
    head: &watch::Sender<Position>,
) -> Result<Vec<Result<BatchOutcome, StoreError>>, StoreError> {
    state.connection(options).await?;
    let mut conn = state.conn.take().ok_or(sqlx::Error::PoolClosed)?;
    let (result, clean) = {
        match conn.begin_with(BEGIN_APPEND).await {
            Err(error) => (Err(error.into()), false),
            Ok(mut tx) => match plan_and_write_group(&mut tx, group).await {
                Ok(written) => match tx.commit().await {
                    Ok(()) => (Ok(written), true),
                    Err(error) => (Err(error.into()), false),
                },
                Err(error) => {
                    let clean = tx.rollback().await.is_ok();
                    (Err(error), clean)
                }
            },
        }
    };
    if clean {
        state.conn = Some(conn);
    }
    let written = result?;
    for (append, heads) in group.iter().zip(&written.heads) {
        if let Some(heads) = heads {
            state.remember(&append.tenant, &append.batch, heads);
        }
    }
    advance_head(head, written.log_head);
    Ok(written.answers)
}

/// Reads what the group's plans need, plans each append in order, and writes every planned
/// row with one `crm_append_group_keys` call, inside `tx` (which holds the append lock).
async fn plan_and_write_group(
    tx: &mut PgConnection,
    group: &[Waiting],
) -> Result<GroupWritten, StoreError> {
    let (mut head_tenants, mut head_streams) = (Vec::new(), Vec::new());
    let (mut id_tenants, mut id_streams, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for append in group {
        let tenant = append.tenant.as_str();
        for stream in &append.batch.streams {
            head_tenants.push(tenant);
            head_streams.push(stream.stream.as_str());
        }
        for (stream, event) in &append.batch.events {
            id_tenants.push(tenant);
            id_streams.push(append.batch.streams[*stream].stream.as_str());
            ids.push(event.event_id);
        }
    }
    let rows = sqlx::query(READ_GROUP)
        .bind(&head_tenants)
        .bind(&head_streams)
        .bind(&id_tenants)
        .bind(&id_streams)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    let mut log_head: Position = 0;
    let mut heads: HashMap<(String, String), Head> = HashMap::new();
    let mut existing: HashMap<String, Vec<plan::ExistingEvent>> = HashMap::new();
    for row in &rows {
        let kind: i32 = row.try_get(0)?;
        match kind {
            0 => log_head = row.try_get::<Option<i64>, _>(1)?.unwrap_or(0) as Position,
            1 => {
                let hash: Vec<u8> = row.try_get(3)?;
                heads.insert(
                    (row.try_get(4)?, row.try_get(5)?),
                    (
                        row.try_get::<i64, _>(2)? as u64,
                        crate::store::stored_hash(&hash, 0)?,
                    ),
                );
            }
            _ => existing
                .entry(row.try_get(4)?)
                .or_default()
                .push(plan::ExistingEvent {
                    event_id: row.try_get(6)?,
                    stream_id: row.try_get(5)?,
                    event_type: row.try_get(7)?,
                    revision: row.try_get::<i64, _>(2)? as u64,
                    position: row.try_get::<i64, _>(1)? as Position,
                }),
        }
    }
    let recorded_at = crate::envelope::to_stored_precision(Utc::now());
    let mut call = Call::new(log_head, recorded_at);
    let mut next_head = log_head;
    let mut answers = Vec::with_capacity(group.len());
    let mut after_heads = Vec::with_capacity(group.len());
    for append in group {
        let (tenant, batch) = (&append.tenant, &append.batch);
        let before: Vec<Option<Head>> = batch
            .streams
            .iter()
            .map(|s| {
                heads
                    .get(&(tenant.as_str().to_owned(), s.stream.as_str().to_owned()))
                    .copied()
            })
            .collect();
        // The tenant's stored ids; `plan_append` ignores those of other streams.
        let stored = existing.get(tenant.as_str()).cloned().unwrap_or_default();
        match plan::plan_append(tenant, batch, next_head, &before, stored, recorded_at) {
            Ok(plan) => {
                if !plan.rows.is_empty() {
                    call.add(tenant, batch, &plan, &before);
                    next_head += plan.rows.len() as Position;
                }
                let mut after = before;
                for new in &plan.new_heads {
                    after[new.stream] = Some((new.revision, new.hash));
                }
                after_heads.push(Some(after));
                answers.push(Ok(plan.outcome));
            }
            Err(refused) => {
                after_heads.push(None);
                answers.push(Err(refused));
            }
        }
    }
    if !call.is_empty() {
        let row = call.query().fetch_one(&mut *tx).await?;
        let last: Option<i64> = row.try_get(0)?;
        if last.map(|p| p as Position) != Some(next_head) {
            return Err(StoreError::Task(
                "the group's heads moved under the append lock".to_owned(),
            ));
        }
    }
    Ok(GroupWritten {
        answers,
        heads: after_heads,
        log_head: next_head,
    })
}

/// Whether an append may be written by the one-round-trip group call: its key uses and new
/// keys are checked and written by the call itself (migration 0005), but links and erasures,
/// which change other subjects' keys, are read and written under the lock by the
/// transactional path only. So are restores, whose rows each keep their own recording time.
fn group_call_writes(batch: &Batch) -> bool {
    batch.keys.links.is_empty() && batch.keys.erase.is_empty() && !restores(batch)
}

/// Whether an append needs a transaction of its own on the transactional path: key changes
/// (applied by `append_in`) and restores.
fn needs_transaction(batch: &Batch) -> bool {
    !batch.keys.is_empty() || restores(batch)
}

fn restores(batch: &Batch) -> bool {
    batch.events.iter().any(|(_, e)| e.restore.is_some())
}

/// The transactional path on the writer connection; refreshes the remembered heads.
async fn transactional(
    state: &mut WriterState,
    options: &PgConnectOptions,
    tenant: &TenantId,
    batch: &Batch,
    head: &watch::Sender<Position>,
) -> Result<BatchOutcome, StoreError> {
    state.connection(options).await?;
    let mut conn = state.conn.take().ok_or(sqlx::Error::PoolClosed)?;
    let (result, clean) = in_transaction(&mut conn, tenant, batch).await;
    if clean {
        state.conn = Some(conn);
    }
    match result {
        Ok(written) => {
            state.remember(tenant, batch, &written.heads);
            advance_head(head, written.log_head);
            Ok(written.outcome)
        }
        Err(error) => {
            if !clean {
                // Whether a commit happened may be unknown: start from fresh heads.
                state.forget();
            }
            Err(error)
        }
    }
}

/// Runs `append_in` in a transaction holding the append lock, and says whether the
/// connection is left clean (outside any transaction) for the next append.
async fn in_transaction(
    conn: &mut PgConnection,
    tenant: &TenantId,
    batch: &Batch,
) -> (Result<Written, StoreError>, bool) {
    let mut tx = match conn.begin_with(BEGIN_APPEND).await {
        Ok(tx) => tx,
        Err(error) => return (Err(error.into()), false),
    };
    match append_in(&mut tx, tenant, batch).await {
        Ok(written) => match tx.commit().await {
            Ok(()) => (Ok(written), true),
            Err(error) => (Err(error.into()), false),
        },
        Err(error) => {
            // Release the append lock now, not at the connection's next use.
            let clean = tx.rollback().await.is_ok();
            (Err(error), clean)
        }
    }
}

/// The arguments of one `crm_append_group_keys` call, as columns.
struct Call<'a> {
    log_head: i64,
    recorded_at: chrono::DateTime<Utc>,
    head_tenants: Vec<&'a str>,
    head_streams: Vec<&'a str>,
    head_revisions: Vec<i64>,
    new_revisions: Vec<Option<i64>>,
    new_hashes: Vec<Option<Vec<u8>>>,
    positions: Vec<i64>,
    tenants: Vec<&'a str>,
    streams: Vec<&'a str>,
    revisions: Vec<i64>,
    event_ids: Vec<uuid::Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i32>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    occurred: Vec<chrono::DateTime<Utc>>,
    hashes: Vec<Vec<u8>>,
    /// Keys the appends seal under: (tenant, subject, key id).
    use_tenants: Vec<&'a str>,
    use_subjects: Vec<&'a str>,
    use_key_ids: Vec<&'a [u8]>,
    /// Keys the appends mint: (tenant, subject, key id, wrapped key).
    key_tenants: Vec<&'a str>,
    key_subjects: Vec<&'a str>,
    key_ids: Vec<&'a [u8]>,
    key_wrapped: Vec<&'a [u8]>,
}

impl<'a> Call<'a> {
    fn new(log_head: Position, recorded_at: chrono::DateTime<Utc>) -> Self {
        Call {
            log_head: log_head as i64,
            recorded_at,
            head_tenants: Vec::new(),
            head_streams: Vec::new(),
            head_revisions: Vec::new(),
            new_revisions: Vec::new(),
            new_hashes: Vec::new(),
            positions: Vec::new(),
            tenants: Vec::new(),
            streams: Vec::new(),
            revisions: Vec::new(),
            event_ids: Vec::new(),
            types: Vec::new(),
            versions: Vec::new(),
            data: Vec::new(),
            metadata: Vec::new(),
            occurred: Vec::new(),
            hashes: Vec::new(),
            use_tenants: Vec::new(),
            use_subjects: Vec::new(),
            use_key_ids: Vec::new(),
            key_tenants: Vec::new(),
            key_subjects: Vec::new(),
            key_ids: Vec::new(),
            key_wrapped: Vec::new(),
        }
    }

    /// Adds one planned append: its streams' assumed and new heads, its rows, and (when it
    /// writes any row, as the transactional path applies them) its key uses and new keys.
    /// Links and erasures are never written by the call (see [`group_call_writes`]).
    fn add(
        &mut self,
        tenant: &'a TenantId,
        batch: &'a Batch,
        planned: &plan::Plan<'a>,
        heads: &[Option<Head>],
    ) {
        let first = self.new_revisions.len();
        for (stream, head) in batch.streams.iter().zip(heads) {
            self.head_tenants.push(tenant.as_str());
            self.head_streams.push(stream.stream.as_str());
            self.head_revisions
                .push(head.map_or(-1, |(revision, _)| revision as i64));
            self.new_revisions.push(None);
            self.new_hashes.push(None);
        }
        for new in &planned.new_heads {
            self.new_revisions[first + new.stream] = Some(new.revision as i64);
            self.new_hashes[first + new.stream] = Some(new.hash.to_vec());
        }
        for row in &planned.rows {
            self.positions.push(row.position as i64);
            self.tenants.push(tenant.as_str());
            self.streams.push(batch.streams[row.stream].stream.as_str());
            self.revisions.push(row.revision as i64);
            self.event_ids.push(row.event.event_id);
            self.types.push(row.event.event_type.as_str());
            self.versions.push(row.event.schema_version as i32);
            self.data.push(row.event.data.get());
            self.metadata.push(row.event.metadata.get());
            self.occurred.push(row.occurred_at);
            self.hashes.push(row.hash.to_vec());
        }
        if planned.rows.is_empty() {
            return;
        }
        for (subject, key_id) in &batch.keys.uses {
            self.use_tenants.push(tenant.as_str());
            self.use_subjects.push(subject.as_str());
            self.use_key_ids.push(key_id.as_slice());
        }
        for new in &batch.keys.new {
            self.key_tenants.push(tenant.as_str());
            self.key_subjects.push(new.subject.as_str());
            self.key_ids.push(new.key_id.as_slice());
            self.key_wrapped.push(new.wrapped.as_slice());
        }
    }

    /// Runs the call on the writer: the new log head, or `None` when the plans were stale.
    async fn run(
        &self,
        state: &mut WriterState,
        options: &PgConnectOptions,
    ) -> Result<Option<Position>, sqlx::Error> {
        let query = self.query();
        state.connection(options).await?;
        let WriterState {
            conn, in_flight, ..
        } = state;
        let conn = conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        // Stays set if this future is dropped before the answer (see `WriterState::in_flight`).
        *in_flight = true;
        let result = query.fetch_one(conn).await;
        *in_flight = false;
        match result {
            Ok(row) => Ok(row.try_get::<Option<i64>, _>(0)?.map(|p| p as Position)),
            Err(error) => {
                if !matches!(error, sqlx::Error::Database(_)) {
                    // The connection itself failed; the next append opens a new one.
                    state.conn = None;
                }
                Err(error)
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The call as a query.
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(CALL_APPEND_GROUP)
            .bind(self.log_head)
            .bind(self.recorded_at)
            .bind(&self.head_tenants)
            .bind(&self.head_streams)
            .bind(&self.head_revisions)
            .bind(&self.new_revisions)
            .bind(&self.new_hashes)
            .bind(&self.positions)
            .bind(&self.tenants)
            .bind(&self.streams)
            .bind(&self.revisions)
            .bind(&self.event_ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.data)
            .bind(&self.metadata)
            .bind(&self.occurred)
            .bind(&self.hashes)
            .bind(&self.use_tenants)
            .bind(&self.use_subjects)
            .bind(&self.use_key_ids)
            .bind(&self.key_tenants)
            .bind(&self.key_subjects)
            .bind(&self.key_ids)
            .bind(&self.key_wrapped)
    }
}
