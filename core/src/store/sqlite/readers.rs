//! The reader connections: read-only, taken from an idle list for one read and put back
//! after it. Reads run on the calling task (they are short, and WAL never makes them wait for
//! the writer), so a connection is only ever out for the length of one call; when every idle
//! one is out, another is opened, and connections beyond the configured number are closed
//! when they come back.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// Prepared statements kept per connection (every read of the store has a fixed text).
const STATEMENT_CACHE: usize = 32;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.path)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// Readers of the store file at `path`, keeping up to `keep` idle connections.
    pub(super) fn new(path: &Path, keep: usize) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep: keep.max(1),
        }
    }

    /// Runs `read` on a reader connection. Not retried here: wrap in
    /// [`super::error::retry_busy`].
    pub(super) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = read(&conn);
        // A read that failed half-way has no transaction left open (each statement is its
        // own), so the connection is as good as new.
        let mut idle = self.lock();
        if idle.len() < self.keep {
            idle.push(conn);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list is consistent whenever the lock is released, even by a panic.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.execute_batch("PRAGMA temp_store = MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this connection was used before: it leaves a mark in its own temp schema.
    fn seen_before(conn: &Connection) -> Result<bool, StoreError> {
        let seen: i64 = conn.query_row(
            "SELECT count(*) FROM temp.sqlite_master WHERE name = 'mark'",
            [],
            |r| r.get(0),
        )?;
        conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS mark (x)")?;
        Ok(seen > 0)
    }

    #[test]
    fn connections_are_reused_and_at_most_the_configured_number_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("r.db");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
            .expect("create");
        let readers = Readers::new(&path, 1);
        assert_eq!(readers.idle_count(), 0);
        assert!(
            !readers.with(seen_before).expect("read"),
            "a new connection"
        );
        assert!(
            readers.with(seen_before).expect("read"),
            "the idle one again"
        );
        assert_eq!(readers.idle_count(), 1);
        // Two reads at once: the second gets a new connection, and only one is kept.
        let (outer, inner) = readers
            .with(|outer| Ok((seen_before(outer)?, readers.with(seen_before)?)))
            .expect("nested read");
        assert!(outer && !inner);
        assert_eq!(readers.idle_count(), 1);
        // Reader connections cannot write.
        let error = readers
            .with(|conn| Ok(conn.execute("INSERT INTO t VALUES (1)", [])?))
            .expect_err("read-only");
        assert!(error.to_string().contains("readonly"), "{error}");
    }
}
