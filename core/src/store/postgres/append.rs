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
//! appends are written by one autocommit call of `crm_append_group` (migration 0004), which
//! takes the append lock and checks under it that the log head, every stream's revision and
//! the absence of the group's ids are what the plans assumed. Only then does it write, all
//! of them in one commit; otherwise it writes nothing and answers "stale".
//!
//! An append is written on its own instead, through the transactional path (`append_in`:
//! lock, read heads and ids, plan, write, commit), which gives the authoritative answer
//! (conflicts, duplicates) and refreshes the remembered heads, when: it changes keys or
//! restores exported events (both are read and written under the lock); its plan from
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

/// The one-round-trip group append (migration 0004).
const CALL_APPEND_GROUP: &str = "SELECT crm_append_group($1, $2, $3, $4, $5, $6, $7, $8, $9, \
     $10, $11, $12, $13, $14, $15, $16, $17, $18)";

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
}

impl WriterState {
    /// The writer connection, (re)opened when missing or left mid-statement.
    async fn connection(
        &mut self,
        options: &PgConnectOptions,
    ) -> Result<&mut PgConnection, sqlx::Error> {
        if std::mem::take(&mut self.in_flight) {
            // The abandoned statement's fate is unknown: its connection goes, and the heads
            // it may have moved are forgotten (the checks in `crm_append_group` would catch
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
            if needs_transaction(batch) || overlaps {
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
            call.run(state, &options).await
        }
    };
    let mut waiting: Vec<Option<Waiting>> = waiting.into_iter().map(Some).collect();
    match written {
        Ok(Some(last)) => {
            let count = planned.len() as u64;
            counters.one_round_trip.fetch_add(count, Ordering::Relaxed);
            if count > 1 {
                counters.grouped.fetch_add(count, Ordering::Relaxed);
                counters.groups.fetch_add(1, Ordering::Relaxed);
            }
            advance_head(&head, last);
            for done in planned {
                if let Some(append) = waiting[done.index].take() {
                    state.remember(&append.tenant, &append.batch, &done.heads);
                    append.answer(Ok(done.outcome));
                }
            }
        }
        Ok(None) => {
            if !planned.is_empty() {
                tracing::debug!(appends = planned.len(), "remembered heads were stale");
            }
            alone.extend(planned.iter().map(|p| p.index));
        }
        Err(error) => {
            // Each append is written again on its own, which gives each its own answer (a
            // conflict, or the error again if the database is unreachable).
            tracing::debug!(%error, appends = planned.len(), "the group call failed");
            state.forget();
            alone.extend(planned.iter().map(|p| p.index));
        }
    }
    alone.sort_unstable();
    for index in alone {
        if let Some(append) = waiting[index].take() {
            counters.transactional.fetch_add(1, Ordering::Relaxed);
            let answer = transactional(state, &options, &append.tenant, &append.batch, &head).await;
            append.answer(answer);
        }
    }
}

/// Key changes are read and written under the lock: only the transactional path does them.
/// So are restores, whose rows each keep their own recording time.
fn needs_transaction(batch: &Batch) -> bool {
    !batch.keys.is_empty() || batch.events.iter().any(|(_, e)| e.restore.is_some())
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

/// The arguments of one `crm_append_group` call, as columns.
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
        }
    }

    /// Adds one planned append: its streams' assumed and new heads, and its rows.
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
    }

    /// Runs the call on the writer: the new log head, or `None` when the plans were stale.
    async fn run(
        &self,
        state: &mut WriterState,
        options: &PgConnectOptions,
    ) -> Result<Option<Position>, sqlx::Error> {
        let query = sqlx::query(CALL_APPEND_GROUP)
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
            .bind(&self.hashes);
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
}
