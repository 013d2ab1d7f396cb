//! Why a projection could not advance.

use crm_core::envelope::Position;
use crm_core::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read-model statement failed (PostgreSQL). (Its message holds the driver's, which is
    /// not also given as the source: a report of the error chain would say it twice.)
    #[error("read-model database: {0}")]
    Database(sqlx::Error),
    /// A read-model statement failed (SQLite).
    #[error("read-model database: {0}")]
    Sqlite(rusqlite::Error),
    /// Another connection held the SQLite write lock for longer than the lock wait.
    #[error("read-model database: still locked by another writer after {0:?}")]
    Locked(std::time::Duration),
    /// The read-model database was closed.
    #[error("read-model database: closed")]
    Closed,
    /// An answer of the read-model database was not of the shape asked for (a query
    /// answered together, `ReadDb::fetch_together`, gave rows that do not decode).
    #[error("read-model database: {0}")]
    Decode(String),
    /// An event cannot be decoded by this build; the projection stops at it instead of
    /// skipping it. Upgrade the software or repair the log.
    #[error("event at position {position} cannot be projected: {reason}")]
    Undecodable { position: Position, reason: String },
    /// A stored read-model row is not what this build wrote (hand-edited or damaged).
    #[error("read model {table}: row {key} is damaged: {reason}")]
    Corrupt {
        table: String,
        key: String,
        reason: String,
    },
    /// Another process took over this projection (its checkpoint moved under us): this
    /// process stops running it, having written nothing.
    #[error("projection {0} is now run by another process")]
    LostLease(String),
    /// A caller named a projection that does not exist.
    #[error("unknown projection `{0}` (known: {1})")]
    UnknownProjection(String, String),
    /// The read-model schema could not be brought up to date.
    #[error("read-model schema: {0}")]
    Schema(String),
    /// A money total computed at query time does not fit 64-bit minor units, the amounts an
    /// answer carries: reported instead of a wrapped or clipped figure.
    #[error("{what} exceeds the largest amount an answer carries")]
    TotalOverflow { what: String },
}

impl ProjectionError {
    /// True when the read-model database was only busy (locked, contended, out of
    /// connections): the same call may succeed later (HTTP 503 with `Retry-After`).
    pub fn is_busy(&self) -> bool {
        match self {
            ProjectionError::Store(error) => error.is_busy(),
            ProjectionError::Database(error) => crm_core::store::sqlx_is_busy(error),
            ProjectionError::Sqlite(error) => crm_core::store::sqlite_is_busy(error),
            ProjectionError::Locked(_) | ProjectionError::LostLease(_) => true,
            ProjectionError::Closed
            | ProjectionError::Decode(_)
            | ProjectionError::Undecodable { .. }
            | ProjectionError::Corrupt { .. }
            | ProjectionError::UnknownProjection(..)
            | ProjectionError::Schema(_)
            | ProjectionError::TotalOverflow { .. } => false,
        }
    }
}

impl From<sqlx::Error> for ProjectionError {
    fn from(error: sqlx::Error) -> ProjectionError {
        ProjectionError::Database(error)
    }
}

impl From<rusqlite::Error> for ProjectionError {
    fn from(error: rusqlite::Error) -> ProjectionError {
        ProjectionError::Sqlite(error)
    }
}
