//! The embedded SQLite backend (rusqlite): one file in WAL mode, one writer connection
//! (appends take `BEGIN IMMEDIATE`, which also serialises writers in other processes) and a
//! small pool of read-only connections that never block the writer. Statements run on the
//! calling task: they are short, and a hand-off to another thread would cost more than most
//! of them. No connection waits inside SQLite for a lock (`busy_timeout` 0); a unit of work
//! that finds the database locked is retried after an async pause (`error::retry_busy`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId};
use crate::store::keys::{KeyOps, KeyTable};
use crate::store::migrations::{self, Migration};
use crate::store::plan::Batch;
use crate::store::{
    BatchOutcome, Direction, EventStore, Scope, StoreError, StoredEventRef, StreamExpectation,
    StreamHead, StreamStart, advance_head, check_pairs, check_positions, check_streams, sql_limit,
    stored_hash,
};

mod append;
mod checkpoint;
mod error;
mod keys;
mod readers;

pub(crate) use keys::random_key_id;

use append::Writer;
use checkpoint::Checkpointer;
use error::{corrupt, retry_busy};
use readers::Readers;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "event log",
        sql: include_str!("0001_event_log.sql"),
    },
    Migration {
        version: 2,
        description: "subject keys",
        sql: include_str!("0002_subject_keys.sql"),
    },
];

/// How often other processes' appends are looked for.
const HEAD_POLL: Duration = Duration::from_millis(500);

/// Prepared statements kept on the writer connection.
const WRITER_STATEMENT_CACHE: usize = 16;
/// The page size of a new store file. An append dirties a page in the events table, in each
/// of its three indexes and in the stream heads, and the commit writes each dirty page whole
/// to the WAL: half-size pages halve those writes. Measured against the default 4096
/// (docs/benchmarks.md): single appends +12%, batched appends +15%, reading the log -5%.
const NEW_FILE_PAGE_SIZE: u32 = 2048;

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

impl Durability {
    /// The value of SQLite's `synchronous` pragma.
    fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
            Durability::Extra => "EXTRA",
        }
    }
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
    /// Open an existing store without writing to it: no file or schema is created, and
    /// every append fails. A missing, empty or foreign file is [`StoreError::NotAStore`].
    pub read_only: bool,
}

impl SqliteOptions {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            durability: Durability::Normal,
            readers: 4,
            read_only: false,
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
    writer: Mutex<Writer>,
    /// Appends waiting for the writer (group commit, `store/group.rs`).
    queue: crate::store::group::Queue,
    readers: Arc<Readers>,
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
        if options.read_only {
            return Self::open_read_only(options).await;
        }
        if let Some(parent) = options.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        create_private_file(&options.path)?;
        let mut writer = retry_busy(|| open_writer(&options.path, options.durability)).await?;
        retry_busy(|| migrate(&mut writer)).await?;
        let checkpointer = Checkpointer::start(&options.path, options.durability.pragma(), false)?;
        Self::with_writer(options, writer, checkpointer).await
    }

    /// Opens an existing, current store for reading only (see [`SqliteOptions::read_only`]).
    async fn open_read_only(options: SqliteOptions) -> Result<Self, StoreError> {
        let not_a_store =
            |why: &str| StoreError::NotAStore(format!("{}: {why}", options.path.display()));
        match std::fs::metadata(&options.path) {
            Err(_) => return Err(not_a_store("no such file")),
            Ok(meta) if !meta.is_file() => return Err(not_a_store("not a regular file")),
            Ok(meta) if meta.len() == 0 => return Err(not_a_store("the file is empty")),
            Ok(_) => {}
        }
        let writer = Connection::open_with_flags(
            &options.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Closing the last connection would fold the WAL into the file: reading writes nothing.
        writer.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        writer.busy_timeout(Duration::ZERO)?;
        let applied =
            retry_busy(|| applied_migrations(&writer))
                .await
                .map_err(|error| match error {
                    StoreError::Sqlite(error) => {
                        not_a_store(&format!("no event log in it ({error})"))
                    }
                    other => other,
                })?;
        let pending = migrations::pending(MIGRATIONS, &applied).map_err(StoreError::Migration)?;
        if !pending.is_empty() {
            return Err(StoreError::Migration(format!(
                "{} was written by an older version: open it once with `crm-api serve` to bring its schema up to date",
                options.path.display()
            )));
        }
        let checkpointer = Checkpointer::start(&options.path, options.durability.pragma(), true)?;
        Self::with_writer(options, writer, checkpointer).await
    }

    async fn with_writer(
        options: SqliteOptions,
        writer: Connection,
        checkpointer: Checkpointer,
    ) -> Result<Self, StoreError> {
        let readers = Arc::new(Readers::new(&options.path, options.readers as usize));
        let head_position = retry_busy(|| readers.with(max_position)).await?;
        let head = Arc::new(watch::Sender::new(head_position));
        tokio::spawn(poll_head(Arc::downgrade(&head), Arc::clone(&readers)));
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer::new(writer, checkpointer)),
                queue: Default::default(),
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

    /// Runs `read` on a reader connection, again while another connection locks the file.
    async fn read<T>(
        &self,
        read: impl Fn(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        retry_busy(|| self.inner.readers.with(&read)).await
    }
}

/// Creates the store file readable by its owner only (mode 0600), before SQLite does (its
/// WAL and shared-memory files take the file's mode); an existing file is left as it is.
pub fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Config(format!(
            "cannot create {}: {error}",
            path.display()
        ))),
    }
}

/// The event stored with this id in this stream, if any: its type, revision and position
/// (one seek of the `(tenant, stream_id, event_id)` index).
pub(super) fn stored_event(
    conn: &Connection,
    tenant: &TenantId,
    stream_id: &str,
    id: &Uuid,
) -> Result<Option<(String, u64, Position)>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT event_type, revision, position FROM crm_events \
             WHERE tenant = ?1 AND stream_id = ?2 AND event_id = ?3",
        )?
        .query_row(params![tenant.as_str(), stream_id, id.as_bytes()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    Ok(row.map(|(event_type, revision, position)| {
        (event_type, revision as u64, position as Position)
    }))
}

fn open_writer(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::ZERO)?;
    // Takes effect only on a file without tables (a new store); an existing file keeps the
    // page size it was created with.
    conn.execute_batch(&format!("PRAGMA page_size = {NEW_FILE_PAGE_SIZE}"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!(
            "{} cannot use write-ahead logging (journal mode {mode})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = {}; PRAGMA secure_delete = ON;",
        durability.pragma(),
        checkpoint::WRITER_AUTOCHECKPOINT,
    ))?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);
    Ok(conn)
}

/// Applies the pending migrations in one `BEGIN IMMEDIATE` transaction (the same
/// bookkeeping table, checksums and times as every earlier version of this store).
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS crm_schema_migrations (
             version INTEGER PRIMARY KEY, description TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = apply_pending(&*conn);
    let end = match result {
        Ok(()) => "COMMIT",
        Err(_) => "ROLLBACK",
    };
    if let Err(error) = conn.execute_batch(end) {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result?;
        return Err(error.into());
    }
    result
}

fn applied_migrations(conn: &Connection) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(conn
        .prepare("SELECT version, checksum FROM crm_schema_migrations ORDER BY version")?
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

fn apply_pending(conn: &Connection) -> Result<(), StoreError> {
    let applied = applied_migrations(conn)?;
    let pending = migrations::pending(MIGRATIONS, &applied).map_err(StoreError::Migration)?;
    for migration in pending {
        conn.execute_batch(migration.sql)
            .map_err(|e| StoreError::Migration(format!("{}: {e}", migration.description)))?;
        conn.execute(
            "INSERT INTO crm_schema_migrations (version, description, checksum, applied_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                migration.version,
                migration.description,
                migration.checksum(),
                Utc::now().timestamp_micros()
            ],
        )?;
    }
    Ok(())
}

fn max_position(conn: &Connection) -> Result<Position, StoreError> {
    let head: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM crm_events")?
        .query_row([], |row| row.get(0))?;
    Ok(head as Position)
}

/// Notices appends made by other processes; ends when the store is dropped.
async fn poll_head(head: Weak<watch::Sender<Position>>, readers: Arc<Readers>) {
    let mut interval = tokio::time::interval(HEAD_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(head) = head.upgrade() else { return };
        match retry_busy(|| readers.with(max_position)).await {
            Ok(position) => {
                advance_head(&head, position);
            }
            Err(error) => tracing::warn!(%error, "cannot read the head position"),
        }
    }
}

fn micros(value: i64, position: i64, column: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| corrupt(position, format!("{column} {value} is out of range")))
}

fn event_id(bytes: &[u8], position: i64) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|e| corrupt(position, format!("event id: {e}")))
}

/// A JSON column as stored: the text is kept as it is (validated, never re-serialised).
fn raw_json(
    row: &rusqlite::Row<'_>,
    index: usize,
    position: i64,
    column: &str,
) -> Result<Box<RawValue>, StoreError> {
    let text: String = row.get(index)?;
    RawValue::from_string(text).map_err(|e| corrupt(position, format!("{column}: {e}")))
}

/// One row of `SELECT {EVENT_COLUMNS}`.
fn decode(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.get(0)?;
    let id = row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
    let hash = row.get_ref(11)?.as_blob().map_err(rusqlite::Error::from)?;
    Ok(RecordedEvent {
        tenant: TenantId::from_stored(row.get(1)?),
        stream_id: StreamId::from_stored(row.get(2)?),
        revision: row.get::<_, i64>(3)? as u64,
        position: position as Position,
        event_id: event_id(id, position)?,
        event_type: row.get(5)?,
        schema_version: row.get::<_, i64>(6)? as u32,
        data: raw_json(row, 7, position, "data")?,
        metadata: raw_json(row, 8, position, "metadata")?,
        occurred_at: micros(row.get(9)?, position, "occurred_at")?,
        recorded_at: micros(row.get(10)?, position, "recorded_at")?,
        hash: stored_hash(hash, position)?,
    })
}

/// Every event a prepared `SELECT {EVENT_COLUMNS}` gives for `params`.
fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode(row)?);
    }
    Ok(events)
}

#[async_trait]
impl EventStore for SqliteEventStore {
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
        let outcome = append::append(&self.inner.writer, &self.inner.queue, tenant, batch).await?;
        advance_head(&self.inner.head, outcome.last_position);
        Ok(outcome)
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
        let sql = match direction {
            Direction::Forwards => concat!(
                "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash ",
                "FROM crm_events WHERE tenant = ?1 AND stream_id = ?2 AND revision >= ?3 ",
                "ORDER BY revision ASC LIMIT ?4"
            ),
            Direction::Backwards => concat!(
                "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash ",
                "FROM crm_events WHERE tenant = ?1 AND stream_id = ?2 AND revision <= ?3 ",
                "ORDER BY revision DESC LIMIT ?4"
            ),
        };
        let from = match (direction, start) {
            (_, StreamStart::Revision(revision)) => i64::try_from(revision).unwrap_or(i64::MAX),
            (Direction::Forwards, StreamStart::Boundary) => 0,
            (Direction::Backwards, StreamStart::Boundary) => i64::MAX,
        };
        let limit = sql_limit(limit);
        self.read(|conn| {
            query_events(
                conn,
                sql,
                params![tenant.as_str(), stream.as_str(), from, limit],
            )
        })
        .await
    }

    async fn read_all(
        &self,
        scope: &Scope,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = sql_limit(limit);
        self.read(|conn| match scope {
            Scope::AllTenants => query_events(
                conn,
                concat!(
                    "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash ",
                    "FROM crm_events WHERE position > ?1 ORDER BY position LIMIT ?2"
                ),
                params![after, limit],
            ),
            Scope::Tenant(tenant) => query_events(
                conn,
                concat!(
                    "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash ",
                    "FROM crm_events WHERE tenant = ?1 AND position > ?2 ORDER BY position LIMIT ?3"
                ),
                params![tenant.as_str(), after, limit],
            ),
        })
        .await
    }

    async fn read_positions(
        &self,
        tenant: &TenantId,
        positions: &[Position],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        check_positions(positions)?;
        let mut wanted: Vec<i64> = positions
            .iter()
            .filter_map(|p| i64::try_from(*p).ok())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        // One primary-key seek per position, in position order.
        self.read(|conn| {
            let mut events = Vec::with_capacity(wanted.len());
            for position in &wanted {
                events.extend(query_events(
                    conn,
                    concat!(
                        "SELECT position, tenant, stream_id, revision, event_id, event_type, schema_version, data, metadata, occurred_at, recorded_at, hash ",
                        "FROM crm_events WHERE position = ?1 AND tenant = ?2"
                    ),
                    params![position, tenant.as_str()],
                )?);
            }
            Ok(events)
        })
        .await
    }

    async fn find_events(
        &self,
        tenant: &TenantId,
        pairs: &[(StreamId, Uuid)],
    ) -> Result<Vec<StoredEventRef>, StoreError> {
        check_pairs(pairs)?;
        // One seek of the (tenant, stream_id, event_id) index per pair.
        self.read(|conn| {
            let mut found = Vec::new();
            let mut asked = HashSet::with_capacity(pairs.len());
            for (stream_id, id) in pairs {
                if !asked.insert((stream_id.as_str(), *id)) {
                    continue;
                }
                if let Some((event_type, revision, position)) =
                    stored_event(conn, tenant, stream_id.as_str(), id)?
                {
                    found.push(StoredEventRef {
                        stream_id: stream_id.clone(),
                        event_id: *id,
                        event_type,
                        revision,
                        position,
                    });
                }
            }
            Ok(found)
        })
        .await
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        self.read(max_position).await
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
        let limit = sql_limit(limit);
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT tenant, stream_id, revision, hash FROM crm_streams
                 WHERE (tenant, stream_id) > (?1, ?2) AND (?3 IS NULL OR tenant = ?3)
                 ORDER BY tenant, stream_id LIMIT ?4",
            )?;
            let mut rows =
                statement.query(params![after_tenant, after_stream, tenant_filter, limit])?;
            let mut heads = Vec::new();
            while let Some(row) = rows.next()? {
                let hash = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
                heads.push(StreamHead {
                    tenant: TenantId::from_stored(row.get(0)?),
                    stream_id: StreamId::from_stored(row.get(1)?),
                    revision: row.get::<_, i64>(2)? as u64,
                    hash: stored_hash(hash, 0)?,
                });
            }
            Ok(heads)
        })
        .await
    }

    async fn stream_heads_of(
        &self,
        tenant: &TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<StreamHead>, StoreError> {
        check_streams(streams)?;
        // One primary-key seek per stream.
        self.read(|conn| {
            let mut read = conn.prepare_cached(
                "SELECT revision, hash FROM crm_streams WHERE tenant = ?1 AND stream_id = ?2",
            )?;
            let mut heads = Vec::new();
            let mut asked = HashSet::with_capacity(streams.len());
            for stream in streams {
                if !asked.insert(stream.as_str()) {
                    continue;
                }
                let head = read
                    .query_row(params![tenant.as_str(), stream.as_str()], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()?;
                if let Some((revision, hash)) = head {
                    heads.push(StreamHead::stored(
                        tenant,
                        stream.as_str().to_owned(),
                        revision,
                        &hash,
                    )?);
                }
            }
            Ok(heads)
        })
        .await
    }

    fn head_changes(&self) -> watch::Receiver<Position> {
        self.inner.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExpectedRevision;
    use std::time::Instant;

    fn event() -> NewEvent {
        NewEvent::new(
            "CustomerRegistered",
            &serde_json::json!({"customer_id": "c-1"}),
        )
    }

    /// Another connection (as another process would) holding the write lock.
    fn hold_write_lock(path: &Path) -> Connection {
        let blocker = Connection::open(path).expect("open blocker");
        blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
        blocker
    }

    async fn append_one(store: &SqliteEventStore) -> Result<BatchOutcome, StoreError> {
        let tenant = TenantId::parse("t1").expect("tenant");
        let stream = StreamId::parse("customer-c-1").expect("stream");
        store
            .append_batch(
                &tenant,
                vec![StreamExpectation::new(
                    stream.clone(),
                    ExpectedRevision::Any,
                )],
                vec![(stream, event())],
            )
            .await
    }

    #[tokio::test]
    async fn an_append_waits_while_another_connection_holds_the_write_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteEventStore::open(dir.path().join("events.db"))
            .await
            .expect("open");
        let blocker = hold_write_lock(store.path());
        let started = Instant::now();
        let pending = tokio::spawn({
            let store = store.clone();
            async move { append_one(&store).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pending.is_finished(), "the append waits for the lock");
        // Reads are not blocked by the writer.
        assert_eq!(store.head_position().await.expect("read while locked"), 0);
        blocker.execute_batch("COMMIT").expect("unlock");
        let outcome = pending.await.expect("task").expect("append after the lock");
        assert_eq!(outcome.last_position, 1);
        assert!(started.elapsed() < BUSY_WAIT_CHECK);
    }

    const BUSY_WAIT_CHECK: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn an_append_gives_up_with_a_busy_error_when_the_lock_is_never_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteEventStore::open(dir.path().join("events.db"))
            .await
            .expect("open");
        let blocker = hold_write_lock(store.path());
        let started = tokio::time::Instant::now();
        let error = append_one(&store).await.expect_err("the lock is held");
        assert!(started.elapsed() >= error::BUSY_DEADLINE);
        assert!(error::is_busy(&error), "{error:?}");
        assert!(error.to_string().contains("database is locked"), "{error}");
        // Nothing was left behind: once the lock is free the writer works.
        blocker.execute_batch("ROLLBACK").expect("unlock");
        let outcome = append_one(&store).await.expect("append after the lock");
        assert_eq!(outcome.last_position, 1);
    }

    fn page_size(path: &Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .expect("page size")
    }

    #[tokio::test]
    async fn a_new_file_gets_the_small_page_size_and_an_existing_file_keeps_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let new = dir.path().join("new.db");
        let store = SqliteEventStore::open(&new).await.expect("open new");
        append_one(&store).await.expect("append");
        assert_eq!(page_size(&new), i64::from(NEW_FILE_PAGE_SIZE));

        // A file created with SQLite's default pages (as by earlier versions) opens, takes
        // appends and keeps 4096.
        let old = dir.path().join("old.db");
        Connection::open(&old)
            .expect("create")
            .execute_batch("PRAGMA page_size = 4096; CREATE TABLE other (x INTEGER);")
            .expect("old file");
        let store = SqliteEventStore::open(&old).await.expect("open old");
        append_one(&store).await.expect("append");
        append_one(&store).await.expect("append again");
        assert_eq!(store.head_position().await.expect("head"), 2);
        assert_eq!(page_size(&old), 4096);
    }

    #[tokio::test]
    async fn a_file_written_by_another_connection_is_seen_and_appended_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.db");
        let first = SqliteEventStore::open(&path).await.expect("open");
        let second = SqliteEventStore::open(&path).await.expect("open again");
        append_one(&first).await.expect("first");
        let outcome = append_one(&second).await.expect("second");
        assert_eq!(outcome.last_position, 2);
        assert_eq!(outcome.events[0].revision, 1);
        assert_eq!(first.head_position().await.expect("head"), 2);
    }

    #[tokio::test]
    async fn the_wal_is_copied_into_the_database_file_off_the_append_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteEventStore::open(dir.path().join("events.db"))
            .await
            .expect("open");
        let size = || std::fs::metadata(store.path()).map_or(0, |m| m.len());
        let before = size();
        for _ in 0..50 {
            append_one(&store).await.expect("append");
        }
        // Far below the writer's own threshold: only the checkpoint thread copies pages.
        let deadline = Instant::now() + BUSY_WAIT_CHECK;
        while size() <= before {
            assert!(Instant::now() < deadline, "no checkpoint ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
