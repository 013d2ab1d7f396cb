//! The append path: one writer connection per store, and one round trip per append when the
//! store's remembered heads are still the log's state.
//!
//! Each store keeps a dedicated writer connection (session `plan_cache_mode =
//! force_generic_plan`, see `BEGIN_APPEND`) behind a mutex, with the heads of the streams it
//! last wrote or read. An append is first planned by the shared decision (`plan.rs`) from the
//! log head this store knows (its head watch) and those heads (a stream not remembered is
//! assumed not to exist), then written by one autocommit call of `crm_append` (migration
//! 0002), which takes the append lock and checks under it that the log head, every stream's
//! revision and the absence of the call's ids are what the plan assumed. Only then does it
//! write; otherwise it writes nothing and answers "stale".
//!
//! When the plan cannot be made from remembered heads (an unknown stream expected to exist,
//! a plan refused, which may only mean the heads are stale) or the call answered "stale", the
//! append takes the transactional path (`append_in`: lock, read heads and ids, plan, write,
//! commit), which gives the authoritative answer (conflicts, duplicates) and refreshes the
//! remembered heads.
//!
//! Abandonment: the one-statement path runs on the caller's task; if the caller goes away
//! mid-statement the statement commits or not as a whole, and the next append finds the
//! connection marked in flight and replaces it (its protocol state is unknown). The
//! transactional path runs on a spawned task that owns the writer, so it always commits or
//! rolls back and never leaves the append lock held.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::{BEGIN_APPEND, Written, append_in, unique_violation_as_conflict};
use crate::envelope::{Position, TenantId};
use crate::store::plan::{self, Batch, Head};
use crate::store::{BatchOutcome, StoreError, advance_head};

/// Remembered stream heads kept at most; past this the memory starts again (appends to a
/// forgotten stream take the transactional path once).
const MAX_REMEMBERED_HEADS: usize = 16_384;

/// The one-round-trip append (migration 0002).
const CALL_APPEND: &str = "SELECT crm_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
     $13, $14, $15, $16, $17)";

/// A store's writer: its connection and remembered heads.
#[derive(Debug)]
pub(super) struct Writer {
    options: PgConnectOptions,
    state: Arc<Mutex<WriterState>>,
    one_round_trip: AtomicU64,
    transactional: AtomicU64,
}

/// How a store's appends were written so far ([`super::PostgresEventStore::append_paths`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendPaths {
    /// Appends written by one `crm_append` call from remembered heads.
    pub one_round_trip: u64,
    /// Appends that took the transactional path (unknown or stale heads, conflicts,
    /// duplicates).
    pub transactional: u64,
}

#[derive(Debug, Default)]
struct WriterState {
    conn: Option<PgConnection>,
    /// Set while a one-statement append is on the wire; still set when the next append locks
    /// the writer means that caller went away mid-statement.
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
            // it may have moved are forgotten (the checks in `crm_append` would catch them).
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
            one_round_trip: AtomicU64::new(0),
            transactional: AtomicU64::new(0),
        }
    }

    pub(super) fn paths(&self) -> AppendPaths {
        AppendPaths {
            one_round_trip: self.one_round_trip.load(Ordering::Relaxed),
            transactional: self.transactional.load(Ordering::Relaxed),
        }
    }

    /// Appends `batch`: one round trip when the remembered heads hold, else the
    /// transactional path.
    pub(super) async fn append(
        &self,
        tenant: &TenantId,
        batch: Batch,
        head: &Arc<watch::Sender<Position>>,
    ) -> Result<BatchOutcome, StoreError> {
        let mut state = Arc::clone(&self.state).lock_owned().await;
        let log_head = *head.borrow();
        let heads: Vec<Option<Head>> = batch
            .streams
            .iter()
            .map(|s| state.head(tenant.as_str(), s.stream.as_str()))
            .collect();
        let recorded_at = crate::envelope::to_stored_precision(Utc::now());
        // A refused plan may only mean the remembered heads are stale: the transactional
        // path decides.
        // Key changes are read and written under the lock: only the transactional path does.
        // So are restores, whose rows each keep their own recording time.
        if batch.keys.is_empty()
            && !batch.events.iter().any(|(_, e)| e.restore.is_some())
            && let Ok(planned) =
                plan::plan_append(tenant, &batch, log_head, &heads, Vec::new(), recorded_at)
        {
            let call = Call::new(tenant, &batch, &planned, &heads, log_head);
            match call.run(&mut state, &self.options).await {
                Ok(Some(last)) => {
                    let new_heads = planned.new_heads.iter().map(|h| (h.revision, h.hash));
                    let new_heads: Vec<Option<Head>> = new_heads.map(Some).collect();
                    state.remember(tenant, &batch, &new_heads);
                    advance_head(head, last);
                    self.one_round_trip.fetch_add(1, Ordering::Relaxed);
                    return Ok(planned.outcome);
                }
                Ok(None) => tracing::debug!("remembered heads were stale"),
                Err(error) => return Err(unique_violation_as_conflict(error, &batch)),
            }
        }
        self.transactional.fetch_add(1, Ordering::Relaxed);
        // Runs to completion even if the caller goes away, so the append lock is never left
        // held and an acknowledged-or-not answer always matches what was committed.
        let tenant = tenant.clone();
        let options = self.options.clone();
        let head = Arc::clone(head);
        tokio::spawn(async move { transactional(state, &options, &tenant, &batch, &head).await })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// The transactional path on the writer connection; refreshes the remembered heads.
async fn transactional(
    mut state: OwnedMutexGuard<WriterState>,
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

/// The arguments of one `crm_append` call, as columns.
struct Call<'a> {
    tenant: &'a str,
    log_head: i64,
    recorded_at: chrono::DateTime<Utc>,
    head_streams: Vec<&'a str>,
    head_revisions: Vec<i64>,
    new_revisions: Vec<Option<i64>>,
    new_hashes: Vec<Option<&'a [u8]>>,
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    revisions: Vec<i64>,
    event_ids: Vec<uuid::Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i32>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    occurred: Vec<chrono::DateTime<Utc>>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> Call<'a> {
    fn new(
        tenant: &'a TenantId,
        batch: &'a Batch,
        planned: &'a plan::Plan<'a>,
        heads: &[Option<Head>],
        log_head: Position,
    ) -> Self {
        let head_streams: Vec<&str> = batch.streams.iter().map(|s| s.stream.as_str()).collect();
        let head_revisions = heads
            .iter()
            .map(|h| h.map_or(-1, |(revision, _)| revision as i64))
            .collect();
        let mut new_revisions = vec![None; batch.streams.len()];
        let mut new_hashes = vec![None; batch.streams.len()];
        for new in &planned.new_heads {
            new_revisions[new.stream] = Some(new.revision as i64);
            new_hashes[new.stream] = Some(new.hash.as_slice());
        }
        let rows = &planned.rows;
        let mut call = Call {
            tenant: tenant.as_str(),
            log_head: log_head as i64,
            recorded_at: planned.recorded_at,
            head_streams,
            head_revisions,
            new_revisions,
            new_hashes,
            positions: Vec::with_capacity(rows.len()),
            streams: Vec::with_capacity(rows.len()),
            revisions: Vec::with_capacity(rows.len()),
            event_ids: Vec::with_capacity(rows.len()),
            types: Vec::with_capacity(rows.len()),
            versions: Vec::with_capacity(rows.len()),
            data: Vec::with_capacity(rows.len()),
            metadata: Vec::with_capacity(rows.len()),
            occurred: Vec::with_capacity(rows.len()),
            hashes: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            call.positions.push(row.position as i64);
            call.streams.push(batch.streams[row.stream].stream.as_str());
            call.revisions.push(row.revision as i64);
            call.event_ids.push(row.event.event_id);
            call.types.push(row.event.event_type.as_str());
            call.versions.push(row.event.schema_version as i32);
            call.data.push(row.event.data.get());
            call.metadata.push(row.event.metadata.get());
            call.occurred.push(row.occurred_at);
            call.hashes.push(row.hash.as_slice());
        }
        call
    }

    /// Runs the call on the writer: the new log head, or `None` when the plan was stale.
    async fn run(
        &self,
        state: &mut WriterState,
        options: &PgConnectOptions,
    ) -> Result<Option<Position>, sqlx::Error> {
        let query = sqlx::query(CALL_APPEND)
            .bind(self.tenant)
            .bind(self.log_head)
            .bind(self.recorded_at)
            .bind(&self.head_streams)
            .bind(&self.head_revisions)
            .bind(&self.new_revisions)
            .bind(&self.new_hashes)
            .bind(&self.positions)
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
