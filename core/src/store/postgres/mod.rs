//! The PostgreSQL backend, for several API and worker processes sharing one log. Appends are
//! serialised by a transaction-scoped advisory lock, so positions are handed out in commit
//! order and a reader resuming after position P never misses a later commit below P.
//! Appends notify `crm_events` listeners; a listener task turns that into head changes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId};
use crate::store::keys::{KeyOps, KeyTable};
use crate::store::migrations::{self, Migration};
use crate::store::plan::{self, Batch, ExistingEvent, Head};
use crate::store::{
    AppendOutcome, BatchOutcome, Direction, EventStore, ExpectedRevision, Scope, StoreError,
    StoredEventRef, StreamExpectation, StreamHead, StreamStart, advance_head, check_pairs,
    check_positions, check_streams, sql_limit, stored_hash,
};

mod append;
mod keys;

pub use append::AppendPaths;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "event log",
        sql: include_str!("0001_event_log.sql"),
    },
    Migration {
        version: 2,
        description: "one-round-trip append function",
        sql: include_str!("0002_append_function.sql"),
    },
    Migration {
        version: 3,
        description: "subject keys",
        sql: include_str!("0003_subject_keys.sql"),
    },
    Migration {
        version: 4,
        description: "group append function",
        sql: include_str!("0004_append_group.sql"),
    },
    Migration {
        version: 5,
        description: "group append function with key changes",
        sql: include_str!("0005_append_group_keys.sql"),
    },
];

/// The advisory lock key that serialises appends ("crm_evts" in ASCII).
#[cfg_attr(not(test), allow(dead_code))] // spelled out in BEGIN_APPEND and crm_append; tests keep them equal
const APPEND_LOCK_KEY: i64 = 0x63726d5f65767473;
/// The advisory lock key that serialises migrations across processes.
const MIGRATION_LOCK_KEY: i64 = 0x63726d5f6d696772;
/// The channel appends notify.
const CHANNEL: &str = "crm_events";
/// The longest a missed notification can delay a subscriber.
const HEAD_POLL: Duration = Duration::from_secs(1);

/// Opens the append transaction and takes the append lock in one round trip.
///
/// The append's statements use their generic plans from the first execution on: their
/// look-ups are shaped to probe the unique indexes in any plan (see `append_in`), while the
/// default choice would plan the read afresh on every append (its generic plan assumes ten
/// keys per array, so it never looks cheaper than a plan for the actual one or few), which
/// costs more than the read itself.
const BEGIN_APPEND: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; \
     SELECT pg_advisory_xact_lock(7165910213591463027)";

const SELECT_EVENTS: &str = "SELECT position, tenant, stream_id, revision, event_id, event_type, \
     schema_version, data::text, metadata::text, occurred_at, recorded_at, hash FROM crm_events";

/// The PostgreSQL event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresEventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    head: Arc<watch::Sender<Position>>,
    /// The writer connection and remembered heads every append goes through.
    writer: append::Writer,
}

/// How long a pooled connection may sit idle before it is pinged on its way out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The pool settings of every PostgreSQL pool of the project (the store's and the read
/// models'): `max` connections, 10 s to get one, and a ping only for a connection that sat
/// idle for over a second. sqlx's default pings before every use, which doubled the round
/// trips of every query under load; a connection that was busy a moment ago is alive, and one
/// that idled (across a server restart, say) is checked and replaced if dead.
pub fn pool_options(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The connection options of a `postgres://` URL.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))
}

/// Opens a pool on `options`: the way in of every opener of a PostgreSQL store (the store,
/// the read models, the key table, the guard check), so a database that does not exist is
/// one [`StoreError::NoDatabase`] wherever it is met.
pub async fn connect_pool(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) -> Result<PgPool, StoreError> {
    pool.connect_with(options.clone())
        .await
        .map_err(|error| connect_error(&options, error))
}

/// One connection on `options`, as [`connect_pool`].
pub async fn connect_one(options: &PgConnectOptions) -> Result<sqlx::PgConnection, StoreError> {
    sqlx::PgConnection::connect_with(options)
        .await
        .map_err(|error| connect_error(options, error))
}

/// A failed connection as the store reports it: `invalid_catalog_name` (3D000, the database
/// does not exist) names the database and how to create it.
fn connect_error(options: &PgConnectOptions, error: sqlx::Error) -> StoreError {
    let missing =
        matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"));
    if !missing {
        return StoreError::Database(error);
    }
    let database = options
        .get_database()
        .unwrap_or_else(|| options.get_username())
        .to_owned();
    let createdb = format!(
        "createdb -h {} -p {} -U {} {}",
        options.get_host(),
        options.get_port(),
        options.get_username(),
        database
    );
    StoreError::NoDatabase { database, createdb }
}

impl PostgresEventStore {
    /// Connects with a `postgres://` URL and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = connect_pool(pool_options(16), connect_options(url)?).await?;
        Self::from_pool(pool).await
    }

    /// Connects for reading only: every session is `default_transaction_read_only`, no
    /// schema is created, and a database without a current event log is
    /// [`StoreError::NotAStore`].
    pub async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        let options = connect_options(url)?.options([("default_transaction_read_only", "on")]);
        let pool = connect_pool(pool_options(4), options).await?;
        let present: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('crm_schema_migrations')::text")
                .fetch_one(&pool)
                .await?;
        if present.is_none() {
            return Err(StoreError::NotAStore(
                "the database has no CRM event log".to_owned(),
            ));
        }
        let applied: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, checksum FROM crm_schema_migrations ORDER BY version")
                .fetch_all(&pool)
                .await?;
        let pending = migrations::pending(MIGRATIONS, &applied).map_err(StoreError::Migration)?;
        if !pending.is_empty() {
            return Err(StoreError::Migration(
                "the database was written by an older version: start `crm-api serve` on it once \
                 to bring its schema up to date"
                    .to_owned(),
            ));
        }
        Self::following(pool).await
    }

    /// Uses an existing pool and brings the schema up to date.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrate(&pool).await?;
        Self::following(pool).await
    }

    async fn following(pool: PgPool) -> Result<Self, StoreError> {
        let head_position = max_position(&pool).await?;
        let head = Arc::new(watch::Sender::new(head_position));
        let listener = PgListener::connect_with(&pool).await?;
        tokio::spawn(follow_head(Arc::downgrade(&head), pool.clone(), listener));
        let writer = append::Writer::new(&pool.connect_options());
        Ok(Self {
            inner: Arc::new(Inner { pool, head, writer }),
        })
    }

    /// The connection pool, for read models that live in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// How this handle's appends were written so far: in one round trip from remembered
    /// heads, or through the transactional path.
    pub fn append_paths(&self) -> AppendPaths {
        self.inner.writer.paths()
    }

    /// Appends inside a transaction the caller commits, holding the append lock until then.
    /// Other appends wait for it; readers see nothing of it before the commit. This is the
    /// hook tests use to hold a writer open; application code wants [`EventStore::append`].
    pub async fn begin_append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<PendingAppend, StoreError> {
        let events = events.into_iter().map(|e| (stream.clone(), e)).collect();
        let batch = Batch::new(
            vec![StreamExpectation::new(stream.clone(), expected)],
            events,
        )?;
        let mut tx = self.inner.pool.begin_with(BEGIN_APPEND).await?;
        let outcome = append_in(&mut tx, tenant, &batch)
            .await?
            .outcome
            .into_single_stream()?;
        Ok(PendingAppend {
            tx,
            outcome,
            head: Arc::clone(&self.inner.head),
        })
    }
}

/// An append whose transaction is still open; see [`PostgresEventStore::begin_append`].
#[derive(Debug)]
pub struct PendingAppend {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    outcome: AppendOutcome,
    head: Arc<watch::Sender<Position>>,
}

impl PendingAppend {
    /// Commits the append and returns its outcome.
    pub async fn commit(self) -> Result<AppendOutcome, StoreError> {
        self.tx.commit().await?;
        advance_head(&self.head, self.outcome.last_position);
        Ok(self.outcome)
    }

    /// Abandons the append: nothing of it is stored.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS crm_schema_migrations (
             version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM crm_schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let pending = migrations::pending(MIGRATIONS, &applied).map_err(StoreError::Migration)?;
    for migration in pending {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Migration(format!("{}: {e}", migration.description)))?;
        sqlx::query(
            "INSERT INTO crm_schema_migrations (version, description, checksum) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.description)
        .bind(migration.checksum())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn max_position(pool: &PgPool) -> Result<Position, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM crm_events")
        .fetch_one(pool)
        .await?;
    Ok(head as Position)
}

/// Turns notifications (and, as a safety net, a poll each second) into head changes; ends
/// when the store is dropped.
async fn follow_head(head: Weak<watch::Sender<Position>>, pool: PgPool, mut listener: PgListener) {
    if let Err(error) = listener.listen(CHANNEL).await {
        tracing::warn!(%error, "cannot listen for appends; falling back to polling");
    }
    loop {
        let notified = tokio::time::timeout(HEAD_POLL, listener.try_recv()).await;
        let Some(head) = head.upgrade() else { return };
        let from_notification = match notified {
            Ok(Ok(Some(notification))) => notification.payload().parse::<Position>().ok(),
            Ok(Ok(None)) | Err(_) => None,
            Ok(Err(error)) => {
                tracing::warn!(%error, "append notifications interrupted");
                tokio::time::sleep(HEAD_POLL).await;
                None
            }
        };
        let position = match from_notification {
            Some(position) => Some(position),
            None => max_position(&pool).await.ok(),
        };
        if let Some(position) = position {
            advance_head(&head, position);
        }
    }
}

/// What [`append_in`] wrote, and the state it leaves (for the writer's remembered heads).
struct Written {
    outcome: BatchOutcome,
    /// Each batch stream's head after the call, indexed as `Batch::streams`.
    heads: Vec<Option<Head>>,
    /// The log head after the call.
    log_head: Position,
}

/// Plans and writes one call's events inside `tx`, which holds the append lock: one round
/// trip reads the log head, the heads of all the call's streams and its ids already stored in
/// them, one more writes every row and stream head. The caller commits.
#[tracing::instrument(skip_all, fields(streams = batch.streams.len(), events = batch.events.len()), err)]
async fn append_in(
    tx: &mut sqlx::PgConnection,
    tenant: &TenantId,
    batch: &Batch,
) -> Result<Written, StoreError> {
    let stream_names: Vec<&str> = batch.streams.iter().map(|s| s.stream.as_str()).collect();
    let event_streams: Vec<&str> = batch
        .events
        .iter()
        .map(|(stream, _)| stream_names[*stream])
        .collect();
    let ids: Vec<Uuid> = batch.events.iter().map(|(_, e)| e.event_id).collect();
    // One round trip: the log head (kind 0), the streams' heads (kind 1), and the call's
    // (stream, id) pairs already stored (kind 2). Each look-up is a LATERAL subquery with
    // LIMIT 1 (the keys are unique), which makes it a probe of the unique index whatever the
    // statistics say: as a plain join, a young table's default statistics plan a scan of the
    // tenant's whole log, and the cached generic plan keeps it as the log grows.
    let rows = sqlx::query(
        "SELECT 0 AS kind, (SELECT COALESCE(MAX(position), 0) FROM crm_events) AS position,
                NULL::bigint AS revision, NULL::bytea AS hash, NULL::text AS stream_id,
                NULL::uuid AS event_id, NULL::text AS event_type
         UNION ALL
         SELECT 1, NULL, s.revision, s.hash, k.stream_id, NULL, NULL
         FROM UNNEST($2::text[]) AS k(stream_id)
         CROSS JOIN LATERAL (
             SELECT revision, hash FROM crm_streams
             WHERE tenant = $1 AND stream_id = k.stream_id LIMIT 1
         ) AS s
         UNION ALL
         SELECT 2, e.position, e.revision, NULL, k.stream_id, k.event_id, e.event_type
         FROM UNNEST($3::text[], $4::uuid[]) AS k(stream_id, event_id)
         CROSS JOIN LATERAL (
             SELECT position, revision, event_type FROM crm_events
             WHERE tenant = $1 AND stream_id = k.stream_id AND event_id = k.event_id LIMIT 1
         ) AS e",
    )
    .bind(tenant.as_str())
    .bind(&stream_names)
    .bind(&event_streams)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut head_position: i64 = 0;
    let mut heads: HashMap<String, Head> = HashMap::new();
    let mut existing = Vec::new();
    for row in &rows {
        let kind: i32 = row.try_get(0)?;
        match kind {
            0 => head_position = row.try_get(1)?,
            1 => {
                let hash: Vec<u8> = row.try_get(3)?;
                heads.insert(
                    row.try_get(4)?,
                    (row.try_get::<i64, _>(2)? as u64, stored_hash(&hash, 0)?),
                );
            }
            _ => existing.push(ExistingEvent {
                event_id: row.try_get(5)?,
                stream_id: row.try_get(4)?,
                event_type: row.try_get(6)?,
                revision: row.try_get::<i64, _>(2)? as u64,
                position: row.try_get::<i64, _>(1)? as Position,
            }),
        }
    }
    let stream_heads: Vec<Option<Head>> = stream_names
        .iter()
        .map(|name| heads.get(*name).copied())
        .collect();
    let planned = plan::plan_append(
        tenant,
        batch,
        head_position as Position,
        &stream_heads,
        existing,
        crate::envelope::to_stored_precision(Utc::now()),
    )?;
    let mut final_heads = stream_heads;
    for new in &planned.new_heads {
        final_heads[new.stream] = Some((new.revision, new.hash));
    }
    let written = |outcome: BatchOutcome| Written {
        outcome,
        heads: final_heads,
        log_head: head_position as Position + planned.rows.len() as Position,
    };
    if planned.rows.is_empty() {
        return Ok(written(planned.outcome));
    }
    if !batch.keys.is_empty() {
        keys::apply_ops(&mut *tx, tenant, &batch.keys, planned.recorded_at).await?;
    }
    let rows = &planned.rows;
    let mut positions = Vec::with_capacity(rows.len());
    let mut streams = Vec::with_capacity(rows.len());
    let mut revisions = Vec::with_capacity(rows.len());
    let mut event_ids = Vec::with_capacity(rows.len());
    let mut types = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut data = Vec::with_capacity(rows.len());
    let mut metadata = Vec::with_capacity(rows.len());
    let mut occurred = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    let mut recorded = Vec::with_capacity(rows.len());
    for row in rows {
        recorded.push(row.recorded_at);
        positions.push(row.position as i64);
        streams.push(stream_names[row.stream]);
        revisions.push(row.revision as i64);
        event_ids.push(row.event.event_id);
        types.push(row.event.event_type.as_str());
        versions.push(row.event.schema_version as i32);
        data.push(row.event.data.get());
        metadata.push(row.event.metadata.get());
        occurred.push(row.occurred_at);
        hashes.push(row.hash.as_slice());
    }
    let heads = &planned.new_heads;
    let head_streams: Vec<&str> = heads.iter().map(|h| stream_names[h.stream]).collect();
    let head_revisions: Vec<i64> = heads.iter().map(|h| h.revision as i64).collect();
    let head_hashes: Vec<&[u8]> = heads.iter().map(|h| h.hash.as_slice()).collect();
    // One statement writes the events, moves the stream heads and notifies listeners.
    sqlx::query(
        "WITH inserted AS (
             INSERT INTO crm_events (position, tenant, stream_id, revision, event_id, event_type,
                 schema_version, data, metadata, occurred_at, recorded_at, hash)
             SELECT e.position, $1, e.stream_id, e.revision, e.event_id, e.event_type,
                    e.schema_version, e.data::json, e.metadata::json, e.occurred_at,
                    e.recorded_at, e.hash
             FROM UNNEST($3::bigint[], $4::text[], $5::bigint[], $6::uuid[], $7::text[],
                         $8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::bytea[],
                         $2::timestamptz[])
                  AS e(position, stream_id, revision, event_id, event_type, schema_version,
                       data, metadata, occurred_at, hash, recorded_at)
             RETURNING 1
         ), head AS (
             INSERT INTO crm_streams (tenant, stream_id, revision, hash)
             SELECT $1, h.stream_id, h.revision, h.hash
             FROM UNNEST($13::text[], $14::bigint[], $15::bytea[]) AS h(stream_id, revision, hash)
             ON CONFLICT (tenant, stream_id)
             DO UPDATE SET revision = EXCLUDED.revision, hash = EXCLUDED.hash
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM head),
                pg_notify('crm_events', $16)",
    )
    .bind(tenant.as_str())
    .bind(&recorded)
    .bind(&positions)
    .bind(&streams)
    .bind(&revisions)
    .bind(&event_ids)
    .bind(&types)
    .bind(&versions)
    .bind(&data)
    .bind(&metadata)
    .bind(&occurred)
    .bind(&hashes)
    .bind(&head_streams)
    .bind(&head_revisions)
    .bind(&head_hashes)
    .bind(planned.outcome.last_position.to_string())
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_violation_as_conflict(e, batch))?;
    Ok(written(planned.outcome))
}

/// A unique violation on (tenant, stream, revision) means another writer got there first
/// (possible only for writers that bypass the append lock); report it as a conflict on the
/// stream the database names (its key detail reads `Key (tenant, stream_id, revision)=(t,
/// s, r) already exists.`; ids hold no `,` or space), else on the batch's first stream.
fn unique_violation_as_conflict(error: sqlx::Error, batch: &Batch) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.constraint() == Some("crm_events_stream_revision")
    {
        let named = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.detail())
            .and_then(|detail| detail.split_once("=(")?.1.split(", ").nth(1));
        let stream = named
            .and_then(|name| batch.streams.iter().find(|s| s.stream.as_str() == name))
            .or(batch.streams.first());
        if let Some(stream) = stream {
            return StoreError::WrongExpectedRevision {
                stream: stream.stream.as_str().to_owned(),
                expected: stream.expected,
                actual: None,
            };
        }
    }
    StoreError::Database(error)
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as Position,
        reason,
    };
    let data: String = row.try_get(7)?;
    let metadata: String = row.try_get(8)?;
    let hash: &[u8] = row.try_get(11)?;
    let occurred_at: DateTime<Utc> = row.try_get(9)?;
    let recorded_at: DateTime<Utc> = row.try_get(10)?;
    Ok(RecordedEvent {
        tenant: TenantId::from_stored(row.try_get(1)?),
        stream_id: StreamId::from_stored(row.try_get(2)?),
        revision: row.try_get::<i64, _>(3)? as u64,
        position: position as Position,
        event_id: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get::<i32, _>(6)? as u32,
        data: RawValue::from_string(data).map_err(|e| corrupt(format!("data: {e}")))?,
        metadata: RawValue::from_string(metadata).map_err(|e| corrupt(format!("metadata: {e}")))?,
        occurred_at,
        recorded_at,
        hash: stored_hash(hash, position)?,
    })
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append_batch(
        &self,
        tenant: &TenantId,
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
    ) -> Result<BatchOutcome, StoreError> {
        self.append_batch_with_keys(tenant, expectations, events, KeyOps::default())
            .await
    }

    async fn append_batch_with_keys(
        &self,
        tenant: &TenantId,
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
        keys: KeyOps,
    ) -> Result<BatchOutcome, StoreError> {
        let mut batch = Batch::new(expectations, events)?;
        batch.keys = keys;
        self.inner
            .writer
            .append(tenant, batch, &self.inner.head)
            .await
    }

    fn key_table(&self) -> Option<Arc<dyn KeyTable>> {
        Some(Arc::new(self.clone()))
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        direction: Direction,
        start: StreamStart,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = match (direction, start) {
            (_, StreamStart::Revision(revision)) => i64::try_from(revision).unwrap_or(i64::MAX),
            (Direction::Forwards, StreamStart::Boundary) => 0,
            (Direction::Backwards, StreamStart::Boundary) => i64::MAX,
        };
        let sql = match direction {
            Direction::Forwards => format!(
                "{SELECT_EVENTS} WHERE tenant = $1 AND stream_id = $2 AND revision >= $3 \
                 ORDER BY revision ASC LIMIT $4"
            ),
            Direction::Backwards => format!(
                "{SELECT_EVENTS} WHERE tenant = $1 AND stream_id = $2 AND revision <= $3 \
                 ORDER BY revision DESC LIMIT $4"
            ),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(stream.as_str())
            .bind(from)
            .bind(sql_limit(limit))
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn read_all(
        &self,
        scope: &Scope,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows =
            match scope {
                Scope::AllTenants => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{SELECT_EVENTS} WHERE position > $1 ORDER BY position LIMIT $2"
                    )))
                    .bind(after)
                    .bind(sql_limit(limit))
                    .fetch_all(&self.inner.pool)
                    .await?
                }
                Scope::Tenant(tenant) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SELECT_EVENTS} WHERE tenant = $1 AND position > $2 ORDER BY position LIMIT $3"
                )))
                .bind(tenant.as_str())
                .bind(after)
                .bind(sql_limit(limit))
                .fetch_all(&self.inner.pool)
                .await?,
            };
        rows.iter().map(decode).collect()
    }

    async fn read_positions(
        &self,
        tenant: &TenantId,
        positions: &[Position],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        check_positions(positions)?;
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let positions: Vec<i64> = positions
            .iter()
            .map(|p| i64::try_from(*p).unwrap_or(i64::MAX))
            .collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_EVENTS} WHERE tenant = $1 AND position = ANY($2) ORDER BY position"
        )))
        .bind(tenant.as_str())
        .bind(positions)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn find_events(
        &self,
        tenant: &TenantId,
        pairs: &[(StreamId, uuid::Uuid)],
    ) -> Result<Vec<StoredEventRef>, StoreError> {
        check_pairs(pairs)?;
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let streams: Vec<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
        let ids: Vec<uuid::Uuid> = pairs.iter().map(|(_, id)| *id).collect();
        let rows = sqlx::query(
            // One index probe per pair, whatever plan is cached (see `append_in`).
            "SELECT e.stream_id, e.event_id, e.event_type, e.revision, e.position \
             FROM UNNEST($2::text[], $3::uuid[]) AS p(stream_id, event_id) \
             CROSS JOIN LATERAL (SELECT stream_id, event_id, event_type, revision, position \
                FROM crm_events WHERE tenant = $1 AND stream_id = p.stream_id \
                AND event_id = p.event_id LIMIT 1) AS e",
        )
        .bind(tenant.as_str())
        .bind(streams)
        .bind(ids)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEventRef {
                    stream_id: StreamId::from_stored(row.try_get(0)?),
                    event_id: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    revision: row.try_get::<i64, _>(3)? as u64,
                    position: row.try_get::<i64, _>(4)? as Position,
                })
            })
            .collect()
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        max_position(&self.inner.pool).await
    }

    async fn stream_heads(
        &self,
        scope: &Scope,
        after: Option<(&TenantId, &StreamId)>,
        limit: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        let (after_tenant, after_stream) =
            after.map_or(("", ""), |(t, s)| (t.as_str(), s.as_str()));
        let tenant_filter = match scope {
            Scope::AllTenants => None,
            Scope::Tenant(tenant) => Some(tenant.as_str()),
        };
        let rows = sqlx::query(
            "SELECT tenant, stream_id, revision, hash FROM crm_streams
             WHERE (tenant, stream_id) > ($1, $2) AND ($3::text IS NULL OR tenant = $3)
             ORDER BY tenant, stream_id LIMIT $4",
        )
        .bind(after_tenant)
        .bind(after_stream)
        .bind(tenant_filter)
        .bind(sql_limit(limit))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hash: &[u8] = row.try_get(3)?;
                Ok(StreamHead {
                    tenant: TenantId::from_stored(row.try_get(0)?),
                    stream_id: StreamId::from_stored(row.try_get(1)?),
                    revision: row.try_get::<i64, _>(2)? as u64,
                    hash: stored_hash(hash, 0)?,
                })
            })
            .collect()
    }

    async fn stream_heads_of(
        &self,
        tenant: &TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<StreamHead>, StoreError> {
        check_streams(streams)?;
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        // LIMIT 1 (the key is unique) keeps each look-up a probe of the primary key whatever
        // plan is cached: as a plain join, the plan made while the table was young hashed the
        // whole of `crm_streams` for every ingest request, a cost that grew with the log (see
        // `append_in`; docs/benchmarks.md, "A1 on PostgreSQL at 1,000,000 events").
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT s.stream_id, s.revision, s.hash FROM UNNEST($2::text[]) AS p(stream_id) \
             CROSS JOIN LATERAL (SELECT stream_id, revision, hash FROM crm_streams \
                WHERE tenant = $1 AND stream_id = p.stream_id LIMIT 1) AS s",
        )
        .bind(tenant.as_str())
        .bind(names)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.into_iter()
            .map(|(stream_id, revision, hash)| {
                StreamHead::stored(tenant, stream_id, revision, &hash)
            })
            .collect()
    }

    fn head_changes(&self) -> watch::Receiver<Position> {
        self.inner.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_append_functions_take_the_same_append_lock() {
        let lock = format!("PERFORM pg_advisory_xact_lock({APPEND_LOCK_KEY});");
        assert!(include_str!("0002_append_function.sql").contains(&lock));
        assert!(include_str!("0004_append_group.sql").contains(&lock));
        assert!(include_str!("0005_append_group_keys.sql").contains(&lock));
    }

    #[test]
    fn the_append_transaction_takes_the_append_lock() {
        assert_eq!(
            BEGIN_APPEND,
            format!(
                "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; \
                 SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})"
            )
        );
    }
}
