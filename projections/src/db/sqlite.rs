//! The SQLite side of the read-model database, on rusqlite: statements run on the calling
//! thread against a connection taken from a small pool, instead of being handed to a
//! driver worker thread one at a time.
//!
//! WAL checkpoints run off the write path, as the event store's do: a write transaction's
//! commit nudges a thread of the pool's own, which runs a passive checkpoint; the
//! connections' automatic checkpoint (inside the commit that crosses it) is only a backstop
//! at [`AUTOCHECKPOINT_PAGES`].
//!
//! Connections never sleep inside SQLite: `busy_timeout` is 0, and a statement that finds
//! another connection holding the write lock is retried from here after an async pause
//! (doubling up to [`LOCK_PAUSE_MAX`]) until [`SQLITE_LOCK_WAIT`] has passed. The runtime
//! thread is thus free for other tasks (the event store's writer among them) while a
//! statement waits.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crm_core::store::sqlite::Durability;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, Statement};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Col, SqlValue};
use crate::error::ProjectionError;

/// How long a statement waits for another connection's write lock before it fails with
/// [`ProjectionError::Locked`].
pub const SQLITE_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The longest pause between two tries of a statement that found the database locked.
const LOCK_PAUSE_MAX: Duration = Duration::from_millis(20);

/// WAL pages after which a connection checkpoints inside its own commit (SQLite's default
/// is 1,000): a backstop, should the checkpoint thread fall behind.
const AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The least time between two checkpoints of the checkpoint thread.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(20);

/// Prepared statements kept per connection (the runner's per-batch statements, the queries).
const STATEMENT_CACHE: usize = 96;

/// How a SQLite read-model database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// `synchronous`: `NORMAL` survives a process crash, `FULL` power loss as well.
    pub durability: Durability,
    /// Open read-only (no bookkeeping tables are created, nothing can be written).
    pub read_only: bool,
    /// Create the file if it does not exist.
    pub create_if_missing: bool,
    /// Connections in the pool (at least 1).
    pub max_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Normal,
            read_only: false,
            create_if_missing: true,
            max_connections: 4,
        }
    }
}

impl SqliteOptions {
    /// An existing file, read-only, one connection (to inspect a snapshot, say).
    pub fn read_only() -> SqliteOptions {
        SqliteOptions {
            read_only: true,
            create_if_missing: false,
            max_connections: 1,
            ..SqliteOptions::default()
        }
    }
}

/// A pool of rusqlite connections on one SQLite file.
#[derive(Debug, Clone)]
pub struct SqlitePool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    path: PathBuf,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may be in use; closed by [`SqlitePool::close`].
    permits: Arc<Semaphore>,
    /// The checkpoint thread (none for a read-only pool).
    checkpointer: Option<Checkpointer>,
}

/// A thread that runs a passive WAL checkpoint, on a connection opened for it, when nudged.
/// It starts at the first nudge (the first write's commit) and ends when stopped or dropped.
#[derive(Debug)]
struct Checkpointer {
    path: PathBuf,
    options: SqliteOptions,
    state: Mutex<CheckpointState>,
}

#[derive(Debug, Default)]
struct CheckpointState {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    stopped: bool,
}

impl Checkpointer {
    fn new(path: &Path, options: SqliteOptions) -> Checkpointer {
        Checkpointer {
            path: path.to_path_buf(),
            options,
            state: Mutex::new(CheckpointState::default()),
        }
    }

    /// Asks for a checkpoint soon (starting the thread the first time); free when one is
    /// already asked for.
    fn nudge(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.stopped {
            return;
        }
        if state.wake.is_none() {
            let (wake, woken) = mpsc::sync_channel::<()>(1);
            let (path, options) = (self.path.clone(), self.options);
            let thread = std::thread::Builder::new()
                .name("crm-readdb-checkpoint".into())
                .spawn(move || {
                    while woken.recv().is_ok() {
                        // A connection for each checkpoint, closed after it: between
                        // checkpoints the pool's connections are the file's only ones here (a
                        // tool switching the journal mode needs the file alone). Busy (another
                        // checkpoint runs) or failed: the next nudge retries, and the
                        // connections' own threshold still holds.
                        let checkpoint = connect(&path, &options).and_then(|conn| {
                            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                                .map_err(ProjectionError::from)
                        });
                        if let Err(error) = checkpoint {
                            tracing::debug!(%error, "read-model checkpoint");
                        }
                        std::thread::sleep(CHECKPOINT_PAUSE);
                    }
                });
            match thread {
                Ok(thread) => {
                    state.wake = Some(wake);
                    state.thread = Some(thread);
                }
                Err(error) => {
                    tracing::warn!(%error, "no read-model checkpoint thread");
                    state.stopped = true;
                    return;
                }
            }
        }
        if let Some(wake) = &state.wake {
            // Full: a checkpoint is already asked for.
            let _ = wake.try_send(());
        }
    }

    /// Ends the thread (waiting for a checkpoint it is running) and closes its connection;
    /// later nudges do nothing.
    fn stop(&self) {
        let thread = match self.state.lock() {
            Ok(mut state) => {
                state.stopped = true;
                state.wake = None;
                state.thread.take()
            }
            Err(_) => None,
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl PoolInner {
    /// Asks the checkpoint thread for a checkpoint after a write.
    fn nudge_checkpoint(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.nudge();
        }
    }
}

impl SqlitePool {
    /// Opens the pool and its first connection, switching the file to WAL.
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<SqlitePool, ProjectionError> {
        let max = options.max_connections.max(1);
        let checkpointer = (!options.read_only).then(|| Checkpointer::new(path, options));
        let pool = SqlitePool {
            inner: Arc::new(PoolInner {
                path: path.to_path_buf(),
                options,
                idle: Mutex::new(Vec::with_capacity(max)),
                permits: Arc::new(Semaphore::new(max)),
                checkpointer,
            }),
        };
        let mut conn = pool.acquire().await?;
        if !options.read_only {
            conn.run(|c| {
                let mode: String =
                    c.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
                Ok(mode)
            })
            .await?;
        }
        drop(conn);
        Ok(pool)
    }

    /// A connection for one statement or one transaction, waiting for one to be free.
    pub(crate) async fn acquire(&self) -> Result<PooledConn, ProjectionError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| ProjectionError::Closed)?;
        let idle = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => connect(&self.inner.path, &self.inner.options)?,
        };
        Ok(PooledConn {
            conn: Some(conn),
            pool: Arc::clone(&self.inner),
            _permit: permit,
        })
    }

    /// Waits until every connection is back, closes them all (the last one folds the WAL
    /// into the file), and refuses further use.
    pub async fn close(&self) {
        let max = u32::try_from(self.inner.options.max_connections.max(1)).unwrap_or(u32::MAX);
        let all = self.inner.permits.acquire_many(max).await;
        // The thread's connection first (waiting for a checkpoint it is running), so the
        // pool's last connection is the file's last one here.
        if let Some(checkpointer) = &self.inner.checkpointer {
            checkpointer.stop();
        }
        self.inner.permits.close();
        let idle = match self.inner.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for conn in idle {
            let _ = conn.close();
        }
        drop(all);
    }

    /// Folds the write-ahead log into the database file and empties it (`wal_checkpoint
    /// (TRUNCATE)`), retried while a reader still holds old frames.
    pub(crate) async fn fold_wal(&self) -> Result<(), ProjectionError> {
        self.acquire()
            .await?
            .run(|conn| {
                let busy: i64 =
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
                if busy != 0 {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("a reader holds the WAL; the checkpoint is retried".into()),
                    ));
                }
                Ok(())
            })
            .await
    }

    /// Runs one statement on a pooled connection.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        args: &[SqlValue],
    ) -> Result<u64, ProjectionError> {
        let mut conn = self.acquire().await?;
        let changed = conn.run(|conn| execute_on(conn, sql, args)).await?;
        if changed > 0 {
            conn.pool.nudge_checkpoint();
        }
        Ok(changed)
    }

    /// Runs one query on a pooled connection.
    pub(crate) async fn fetch(
        &self,
        sql: &str,
        args: &[SqlValue],
        cols: Option<&[Col]>,
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
        self.acquire()
            .await?
            .run(|conn| fetch_on(conn, sql, args, cols))
            .await
    }
}

impl SqlitePool {
    /// Runs rendered queries one after another on one pooled connection, inside one read
    /// transaction (one snapshot for all of them): `ReadDb::fetch_together`.
    pub(crate) async fn fetch_together(
        &self,
        queries: &[(String, super::Query)],
    ) -> Result<Vec<super::Rows>, ProjectionError> {
        self.acquire()
            .await?
            .run(|conn| {
                conn.execute_batch("BEGIN")?;
                let rows = queries
                    .iter()
                    .map(|(sql, query)| fetch_on(conn, sql, &query.args, Some(&query.cols)))
                    .collect::<rusqlite::Result<Vec<_>>>();
                // A read transaction: ending it cannot lose anything, whatever the outcome.
                let ended = conn.execute_batch("COMMIT");
                let rows = rows?;
                ended?;
                Ok(rows)
            })
            .await
    }
}

fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, ProjectionError> {
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if options.read_only {
        flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
    } else {
        flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
        if options.create_if_missing {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
        Durability::Extra => "EXTRA",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA temp_store = memory; \
         PRAGMA cache_size = -65536; PRAGMA secure_delete = ON;"
    ))?;
    if !options.read_only {
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES};"
        ))?;
    }
    Ok(conn)
}

/// A connection taken from the pool; back to it when dropped.
#[derive(Debug)]
pub(crate) struct PooledConn {
    conn: Option<Connection>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    /// Runs `work` on the connection; while it fails because another connection holds the
    /// write lock, pauses (without blocking the thread) and tries again, up to
    /// [`SQLITE_LOCK_WAIT`]. `work` must be safe to run again after such a failure.
    pub(crate) async fn run<T>(
        &mut self,
        mut work: impl FnMut(&Connection) -> rusqlite::Result<T> + Send,
    ) -> Result<T, ProjectionError> {
        let mut deadline: Option<Instant> = None;
        let mut pause = Duration::from_millis(1);
        loop {
            let conn = self.conn.as_ref().ok_or(ProjectionError::Closed)?;
            match work(conn) {
                Err(error) if is_busy(&error) => {
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + SQLITE_LOCK_WAIT);
                    if Instant::now() >= deadline {
                        return Err(ProjectionError::Locked(SQLITE_LOCK_WAIT));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LOCK_PAUSE_MAX);
                }
                other => return other.map_err(ProjectionError::from),
            }
        }
    }

    /// The connection, if it was not discarded.
    fn get(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// Closes the connection instead of returning it to the pool.
    fn discard(&mut self) {
        self.conn = None;
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A connection goes back only without a transaction left open on it.
        if !conn.is_autocommit() || self.pool.permits.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(conn);
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

/// A transaction on a pooled connection. Dropped without `commit`, it rolls back (a
/// cancelled batch leaves nothing behind and the write lock free).
#[derive(Debug)]
pub struct SqliteTx {
    conn: PooledConn,
    open: bool,
    /// Began with `BEGIN IMMEDIATE`: its commit may have written.
    write: bool,
}

impl SqliteTx {
    /// `BEGIN IMMEDIATE` (the write lock at once) for writes, `BEGIN` for a read snapshot.
    pub(crate) async fn begin(pool: &SqlitePool, write: bool) -> Result<SqliteTx, ProjectionError> {
        let mut conn = pool.acquire().await?;
        let sql = if write { "BEGIN IMMEDIATE" } else { "BEGIN" };
        conn.run(|c| c.execute_batch(sql)).await?;
        Ok(SqliteTx {
            conn,
            open: true,
            write,
        })
    }

    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        args: &[SqlValue],
    ) -> Result<u64, ProjectionError> {
        self.conn.run(|conn| execute_on(conn, sql, args)).await
    }

    pub(crate) async fn fetch(
        &mut self,
        sql: &str,
        args: &[SqlValue],
        cols: &[Col],
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
        self.conn
            .run(|conn| fetch_on(conn, sql, args, Some(cols)))
            .await
    }

    /// Inserts every row in order: chunks of rows through `multi` (a prepared statement of
    /// several rows), the rest through `single` (one row). Neither text grows with the batch,
    /// so both stay prepared.
    pub(crate) async fn insert_rows(
        &mut self,
        single: &str,
        multi: &str,
        rows: &[Vec<SqlValue>],
    ) -> Result<(), ProjectionError> {
        let mut done = 0;
        self.conn
            .run(|conn| {
                if rows.len() - done > 1 {
                    let mut statement = conn.prepare_cached(multi)?;
                    let width = rows[0].len().max(1);
                    let per = (statement.parameter_count() / width).max(1);
                    while rows.len() - done >= per {
                        let chunk = &rows[done..done + per];
                        bind_all(&mut statement, chunk)?;
                        statement.raw_execute()?;
                        done += per;
                    }
                }
                if done < rows.len() {
                    let mut statement = conn.prepare_cached(single)?;
                    while let Some(row) = rows.get(done) {
                        bind(&mut statement, row)?;
                        statement.raw_execute()?;
                        done += 1;
                    }
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn commit(mut self) -> Result<(), ProjectionError> {
        self.conn.run(|c| c.execute_batch("COMMIT")).await?;
        self.open = false;
        if self.write {
            self.conn.pool.nudge_checkpoint();
        }
        Ok(())
    }

    pub(crate) async fn rollback(mut self) -> Result<(), ProjectionError> {
        let result = self.conn.run(|c| c.execute_batch("ROLLBACK")).await;
        if result.is_ok() {
            self.open = false;
        }
        result
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let rolled_back = self
            .conn
            .get()
            .is_some_and(|c| c.is_autocommit() || c.execute_batch("ROLLBACK").is_ok());
        if !rolled_back {
            // Closing the connection rolls the transaction back.
            self.conn.discard();
        }
    }
}

fn bind(statement: &mut Statement<'_>, args: &[SqlValue]) -> rusqlite::Result<()> {
    bind_all(statement, std::slice::from_ref(&args))
}

/// Binds the values of `rows`, one after the other, to the statement's parameters.
fn bind_all<A: AsRef<[SqlValue]>>(
    statement: &mut Statement<'_>,
    rows: &[A],
) -> rusqlite::Result<()> {
    let expected = statement.parameter_count();
    let given: usize = rows.iter().map(|row| row.as_ref().len()).sum();
    if expected != given {
        return Err(rusqlite::Error::InvalidParameterCount(given, expected));
    }
    for (i, arg) in rows.iter().flat_map(|row| row.as_ref()).enumerate() {
        let index = i + 1;
        match arg {
            SqlValue::Null | SqlValue::NullInt => {
                statement.raw_bind_parameter(index, rusqlite::types::Null)?;
            }
            SqlValue::Int(v) => statement.raw_bind_parameter(index, *v)?,
            SqlValue::Text(v) => statement.raw_bind_parameter(index, v.as_str())?,
            SqlValue::TextArray(v) => statement.raw_bind_parameter(
                index,
                serde_json::to_string(v)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            )?,
        }
    }
    Ok(())
}

/// Runs a statement to its end; the rows it changed.
pub(crate) fn execute_on(conn: &Connection, sql: &str, args: &[SqlValue]) -> rusqlite::Result<u64> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, args)?;
    let mut rows = statement.raw_query();
    while rows.next()?.is_some() {}
    Ok(conn.changes())
}

/// Runs a query; each row's columns read as `cols` says, or every column as what it holds
/// (integers as integers, anything else as text, NULL as an integer NULL) when `None`.
pub(crate) fn fetch_on(
    conn: &Connection,
    sql: &str,
    args: &[SqlValue],
    cols: Option<&[Col]>,
) -> rusqlite::Result<Vec<Vec<SqlValue>>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, args)?;
    let width = statement.column_count();
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = match cols {
            Some(cols) => cols
                .iter()
                .enumerate()
                .map(|(i, col)| column(row, i, *col))
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => (0..width)
                .map(|i| any_column(row, i))
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        out.push(values);
    }
    Ok(out)
}

fn text(i: usize, bytes: &[u8]) -> rusqlite::Result<String> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| rusqlite::Error::Utf8Error(i, e))
}

fn column(row: &Row<'_>, i: usize, col: Col) -> rusqlite::Result<SqlValue> {
    let value = row.get_ref(i)?;
    Ok(match (col, value) {
        (Col::Int, ValueRef::Null) => SqlValue::NullInt,
        (Col::Int, ValueRef::Integer(v)) => SqlValue::Int(v),
        (Col::Text, ValueRef::Null) => SqlValue::Null,
        (Col::Text, ValueRef::Text(bytes)) => SqlValue::Text(text(i, bytes)?),
        (Col::Text, ValueRef::Integer(v)) => SqlValue::Text(v.to_string()),
        (_, other) => {
            return Err(rusqlite::Error::InvalidColumnType(
                i,
                row.as_ref().column_name(i).unwrap_or("?").to_owned(),
                other.data_type(),
            ));
        }
    })
}

fn any_column(row: &Row<'_>, i: usize) -> rusqlite::Result<SqlValue> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => SqlValue::NullInt,
        ValueRef::Integer(v) => SqlValue::Int(v),
        ValueRef::Real(v) => SqlValue::Text(v.to_string()),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => SqlValue::Text(text(i, bytes)?),
    })
}
