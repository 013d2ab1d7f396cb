//! The embedded SQLite backend: one file in WAL mode, one writer connection (appends take
//! `BEGIN IMMEDIATE`, which also serialises writers in other processes) and a small pool of
//! readers that never block the writer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId};
use crate::store::migrations::{self, Migration};
use crate::store::plan::Batch;
use crate::store::{
    BatchOutcome, Direction, EventStore, Scope, StoreError, StoredEventRef, StreamExpectation,
    StreamHead, StreamStart, advance_head, check_pairs, check_positions, check_streams, sql_limit,
    stored_hash,
};

/// A list as one JSON array parameter (read back with `json_each`).
fn json_list<T: serde::Serialize>(items: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::InvalidInput(e.to_string()))
}

mod append;

use append::Writer;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "event log",
    sql: include_str!("0001_event_log.sql"),
}];

/// How often other processes' appends are looked for.
const HEAD_POLL: Duration = Duration::from_millis(500);

pub(super) const EVENT_COLUMNS: &str = "position, tenant, stream_id, revision, event_id, event_type, \
     schema_version, data, metadata, occurred_at, recorded_at, hash";

/// How hard SQLite syncs to disk. `Normal` (the default) survives a process crash at any
/// instant; `Full` also survives power loss, at the cost of an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Normal,
    Full,
    Extra,
}

impl FromStr for Durability {
    type Err = StoreError;
    fn from_str(value: &str) -> Result<Self, StoreError> {
        match value.to_ascii_lowercase().as_str() {
            "normal" => Ok(Durability::Normal),
            "full" => Ok(Durability::Full),
            "extra" => Ok(Durability::Extra),
            other => Err(StoreError::Config(format!(
                "synchronous must be normal, full or extra (off is not durable), got {other:?}"
            ))),
        }
    }
}

/// Where and how to open a SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub durability: Durability,
    /// Reader connections (WAL lets them read while the writer writes).
    pub readers: u32,
}

impl SqliteOptions {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            durability: Durability::Normal,
            readers: 4,
        }
    }
}

/// The SQLite event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Arc<Mutex<Writer>>,
    readers: SqlitePool,
    head: Arc<watch::Sender<Position>>,
    path: PathBuf,
}

impl SqliteEventStore {
    /// Opens (creating if needed) the store file at `path` with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteOptions::new(path)).await
    }

    /// Opens (creating if needed) a store, bringing its schema up to date.
    pub async fn open_with(options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(parent) = options.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let synchronous = match options.durability {
            Durability::Normal => SqliteSynchronous::Normal,
            Durability::Full => SqliteSynchronous::Full,
            Durability::Extra => SqliteSynchronous::Extra,
        };
        let base = SqliteConnectOptions::new()
            .filename(&options.path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            .pragma("temp_store", "memory");
        let mut writer =
            SqliteConnection::connect_with(&base.clone().create_if_missing(true)).await?;
        migrate(&mut writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .min_connections(1)
            .connect_with(base.read_only(true))
            .await?;
        let head_position = max_position(&readers).await?;
        let head = Arc::new(watch::Sender::new(head_position));
        tokio::spawn(poll_head(Arc::downgrade(&head), readers.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Arc::new(Mutex::new(Writer::new(writer))),
                readers,
                head,
                path: options.path,
            }),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The reader pool, for read models that live in the same file.
    pub fn reader_pool(&self) -> &SqlitePool {
        &self.inner.readers
    }
}

async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS crm_schema_migrations (
             version INTEGER PRIMARY KEY, description TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
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
            "INSERT INTO crm_schema_migrations (version, description, checksum, applied_at)
             VALUES (?, ?, ?, ?)",
        )
        .bind(migration.version)
        .bind(migration.description)
        .bind(migration.checksum())
        .bind(Utc::now().timestamp_micros())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn max_position(pool: &SqlitePool) -> Result<Position, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM crm_events")
        .fetch_one(pool)
        .await?;
    Ok(head as Position)
}

/// Notices appends made by other processes; ends when the store is dropped.
async fn poll_head(head: Weak<watch::Sender<Position>>, readers: SqlitePool) {
    let mut interval = tokio::time::interval(HEAD_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(head) = head.upgrade() else { return };
        match max_position(&readers).await {
            Ok(position) => {
                advance_head(&head, position);
            }
            Err(error) => tracing::warn!(%error, "cannot read the head position"),
        }
    }
}

fn micros(value: i64, position: i64, column: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| StoreError::Corrupt {
        position: position as Position,
        reason: format!("{column} {value} is out of range"),
    })
}

fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as Position,
        reason,
    };
    let id: &[u8] = row.try_get(4)?;
    let data: String = row.try_get(7)?;
    let metadata: String = row.try_get(8)?;
    let hash: &[u8] = row.try_get(11)?;
    Ok(RecordedEvent {
        tenant: TenantId::from_stored(row.try_get(1)?),
        stream_id: StreamId::from_stored(row.try_get(2)?),
        revision: row.try_get::<i64, _>(3)? as u64,
        position: position as Position,
        event_id: Uuid::from_slice(id).map_err(|e| corrupt(format!("event id: {e}")))?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get::<i64, _>(6)? as u32,
        data: RawValue::from_string(data).map_err(|e| corrupt(format!("data: {e}")))?,
        metadata: RawValue::from_string(metadata).map_err(|e| corrupt(format!("metadata: {e}")))?,
        occurred_at: micros(row.try_get(9)?, position, "occurred_at")?,
        recorded_at: micros(row.try_get(10)?, position, "recorded_at")?,
        hash: stored_hash(hash, position)?,
    })
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append_batch(
        &self,
        tenant: &TenantId,
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
    ) -> Result<BatchOutcome, StoreError> {
        let batch = Batch::new(expectations, events)?;
        let outcome = append::append(&self.inner.writer, tenant, &batch).await?;
        advance_head(&self.inner.head, outcome.last_position);
        Ok(outcome)
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        direction: Direction,
        start: StreamStart,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = match (direction, start) {
            (Direction::Forwards, _) => {
                "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash
                 FROM crm_events WHERE tenant = ?1 AND stream_id = ?2 AND revision >= ?3
                 ORDER BY revision ASC LIMIT ?4"
            }
            (Direction::Backwards, _) => {
                "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash
                 FROM crm_events WHERE tenant = ?1 AND stream_id = ?2 AND revision <= ?3
                 ORDER BY revision DESC LIMIT ?4"
            }
        };
        let from = match (direction, start) {
            (_, StreamStart::Revision(revision)) => i64::try_from(revision).unwrap_or(i64::MAX),
            (Direction::Forwards, StreamStart::Boundary) => 0,
            (Direction::Backwards, StreamStart::Boundary) => i64::MAX,
        };
        let rows = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(stream.as_str())
            .bind(from)
            .bind(sql_limit(limit))
            .fetch_all(&self.inner.readers)
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
        let rows = match scope {
            Scope::AllTenants => {
                sqlx::query(
                    "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash
                     FROM crm_events WHERE position > ? ORDER BY position LIMIT ?",
                )
                .bind(after)
                .bind(sql_limit(limit))
                .fetch_all(&self.inner.readers)
                .await?
            }
            Scope::Tenant(tenant) => {
                sqlx::query(
                    "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash
                     FROM crm_events WHERE tenant = ? AND position > ? ORDER BY position LIMIT ?",
                )
                .bind(tenant.as_str())
                .bind(after)
                .bind(sql_limit(limit))
                .fetch_all(&self.inner.readers)
                .await?
            }
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
        // One JSON array parameter instead of thousands of placeholders.
        let list = serde_json::to_string(positions)
            .map_err(|e| StoreError::Config(format!("positions: {e}")))?;
        let rows = sqlx::query(
            "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash
             FROM crm_events WHERE tenant = ? AND position IN (SELECT value FROM json_each(?)) ORDER BY position",
        )
        .bind(tenant.as_str())
        .bind(list)
        .fetch_all(&self.inner.readers)
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
        // Two JSON array parameters; the (tenant, stream_id, event_id) index answers both
        // lists, and the pairs are matched exactly below.
        let streams: Vec<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
        let ids: Vec<String> = pairs
            .iter()
            .map(|(_, id)| id.simple().to_string())
            .collect();
        let rows = sqlx::query(
            "SELECT stream_id, event_id, event_type, revision, position FROM crm_events \
             WHERE tenant = ? AND stream_id IN (SELECT value FROM json_each(?)) \
             AND event_id IN (SELECT unhex(value) FROM json_each(?))",
        )
        .bind(tenant.as_str())
        .bind(json_list(&streams)?)
        .bind(json_list(&ids)?)
        .fetch_all(&self.inner.readers)
        .await?;
        let wanted: std::collections::HashSet<(&str, uuid::Uuid)> =
            pairs.iter().map(|(s, id)| (s.as_str(), *id)).collect();
        let mut found = Vec::new();
        for row in &rows {
            let position: i64 = row.try_get(4)?;
            let stream_id: String = row.try_get(0)?;
            let id: Vec<u8> = row.try_get(1)?;
            let event_id = uuid::Uuid::from_slice(&id).map_err(|e| StoreError::Corrupt {
                position: position as Position,
                reason: format!("event id: {e}"),
            })?;
            if wanted.contains(&(stream_id.as_str(), event_id)) {
                found.push(StoredEventRef {
                    stream_id: StreamId::from_stored(stream_id),
                    event_id,
                    event_type: row.try_get(2)?,
                    revision: row.try_get::<i64, _>(3)? as u64,
                    position: position as Position,
                });
            }
        }
        Ok(found)
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        max_position(&self.inner.readers).await
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
             WHERE (tenant, stream_id) > (?1, ?2) AND (?3 IS NULL OR tenant = ?3)
             ORDER BY tenant, stream_id LIMIT ?4",
        )
        .bind(after_tenant)
        .bind(after_stream)
        .bind(tenant_filter)
        .bind(sql_limit(limit))
        .fetch_all(&self.inner.readers)
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
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT stream_id, revision, hash FROM crm_streams \
             WHERE tenant = ? AND stream_id IN (SELECT value FROM json_each(?))",
        )
        .bind(tenant.as_str())
        .bind(json_list(&names)?)
        .fetch_all(&self.inner.readers)
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
