//! WAL checkpoints off the append path. SQLite's automatic checkpoint runs inside the commit
//! that crosses its threshold, so every few hundred appends one of them also copied the WAL
//! into the database file and synced both. Here the writer only nudges a thread of the
//! store's own after each commit; the thread runs a passive checkpoint (which never blocks
//! the writer or readers) at most every [`PAUSE`]. The writer keeps a far higher automatic
//! threshold as a backstop, should the thread fall behind.

use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// The least time between two background checkpoints.
const PAUSE: Duration = Duration::from_millis(20);
/// WAL pages after which the writer checkpoints itself (SQLite's default is 1,000).
pub(super) const WRITER_AUTOCHECKPOINT: u32 = 10_000;

/// Wakes the checkpoint thread; the thread ends when this is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread on its own connection, syncing as `synchronous` says.
    /// A read-only store never writes, so it is never woken; its connection is read-only.
    pub(super) fn start(
        path: &Path,
        synchronous: &str,
        read_only: bool,
    ) -> Result<Self, StoreError> {
        let access = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::ZERO)?;
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}"))?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("crm-sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    // Busy (another checkpoint is running) or failed: the next nudge retries.
                    if let Err(error) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(%error, "background checkpoint");
                    }
                    std::thread::sleep(PAUSE);
                }
            })
            .map_err(|e| StoreError::Config(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { wake })
    }

    /// Asks for a checkpoint soon; free when one is already asked for.
    pub(super) fn nudge(&self) {
        // Full: a checkpoint is already asked for. Disconnected: the thread is gone (it only
        // ends when the store is dropped), and the writer's own threshold still holds.
        let _ = self.wake.try_send(());
    }
}
