//! The one error type of the event store, shared by every backend.

use crate::envelope::Position;
use crate::store::ExpectedRevision;

/// What can go wrong talking to the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream was not at the revision the caller expected. Reload the stream and decide
    /// again, or report a conflict (HTTP 409).
    #[error(
        "wrong expected revision on stream {stream}: expected {expected}, but the stream is {}",
        describe_actual(*actual)
    )]
    WrongExpectedRevision {
        stream: String,
        expected: ExpectedRevision,
        /// The stream's last revision, or `None` if it does not exist.
        actual: Option<u64>,
    },

    /// An event id already stored in the stream for an event of another type. Idempotency
    /// keys must identify one event; report a conflict (HTTP 409).
    #[error(
        "event id {event_id} is already used by a {stored_type} event in stream {stored_stream}"
    )]
    EventIdReused {
        event_id: uuid::Uuid,
        stored_stream: String,
        stored_type: String,
    },

    /// The request itself is malformed (empty batch, repeated ids, bad names). Fix the input;
    /// report it as a client error (HTTP 400/422).
    #[error("invalid append: {0}")]
    InvalidInput(String),

    /// A stored row cannot be read back as an event: the store was damaged or altered outside
    /// this program. Run verification; do not retry.
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt { position: Position, reason: String },

    /// A store opened read-only is missing, empty or not a CRM event log. Point the tool at
    /// the right file or database.
    #[error("not a CRM store: {0}")]
    NotAStore(String),

    /// The log's append-only triggers were dropped, disabled or altered outside this program.
    /// Find out who did it and run verification; restore them (`serve --restore-guards`)
    /// only then.
    #[error(
        "the event log's append-only guards are missing or altered: {names} (someone changed \
         the database outside this program: run `crm-replay verify`, then start with \
         --restore-guards to recreate them)"
    )]
    GuardsMissing { names: String },

    /// The store URL or its options are wrong. Fix the configuration.
    #[error("invalid store configuration: {0}")]
    Config(String),

    /// The schema could not be brought up to date. Check the database and its permissions.
    #[error("store migration failed: {0}")]
    Migration(String),

    /// The PostgreSQL database the URL names does not exist: it is not created here (the
    /// URL's user may not be allowed to), the message says how to create it.
    #[error(
        "the PostgreSQL database \"{database}\" does not exist: create it first (`{createdb}`, \
         or `CREATE DATABASE \"{database}\";` in psql), then try again"
    )]
    NoDatabase { database: String, createdb: String },

    /// The database failed or could not be reached. Retrying may help; report HTTP 503/500.
    /// (Its message holds the driver's, which is not also given as the source: a report of
    /// the error chain would say it twice.)
    #[error("database error: {0}")]
    Database(sqlx::Error),

    /// The SQLite store failed, or another connection held its write lock for longer than the
    /// store waits (`database is locked`). Retrying may help; report HTTP 503/500.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),

    /// The subject's personal data was erased: no new personal field may be stored for it
    /// (HTTP 409). Events without personal fields are still accepted.
    #[error("{subject} was erased: events carrying personal fields for it are refused")]
    SubjectErased { subject: String },

    /// A subject's key changed while the append was prepared (another writer minted or erased
    /// it): prepare again.
    #[error("the key of {subject} changed while the append was prepared")]
    KeyChanged { subject: String },

    /// Sealing or opening personal fields failed: a wrong or missing master key, or a
    /// ciphertext altered outside this program.
    #[error("personal data: {0}")]
    Sealing(String),

    /// A background task of the store failed (it panicked or the runtime is shutting down).
    #[error("store task failed: {0}")]
    Task(String),
}

fn describe_actual(actual: Option<u64>) -> String {
    match actual {
        Some(revision) => format!("at revision {revision}"),
        None => "absent".to_owned(),
    }
}

impl StoreError {
    /// True for conflicts a caller may resolve by reloading and retrying.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::WrongExpectedRevision { .. }
                | StoreError::EventIdReused { .. }
                | StoreError::SubjectErased { .. }
        )
    }
}

/// Whether a database error only means "busy now": SQLite's `SQLITE_BUSY`/`SQLITE_LOCKED`;
/// PostgreSQL's serialization failures, deadlocks, lock and statement timeouts, too many
/// connections, a server shutting down; the pool's timeout, or a connection that failed.
/// Retrying later may succeed (HTTP 503 with `Retry-After`).
pub fn sqlx_is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // serialization_failure, deadlock_detected, lock_not_available, query_canceled
            // (statement/lock timeout), too_many_connections, admin/crash shutdown,
            // cannot_connect_now.
            Some("40001" | "40P01" | "55P03" | "57014" | "53300" | "57P01" | "57P02" | "57P03")
        ),
        _ => false,
    }
}

/// Whether a SQLite error is `SQLITE_BUSY` or `SQLITE_LOCKED`.
pub fn sqlite_is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError::Database(error)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sqlite(error)
    }
}

impl StoreError {
    /// True when the store was only busy (locked, contended, out of connections): the same
    /// call may succeed later (HTTP 503 with `Retry-After`).
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Database(error) => sqlx_is_busy(error),
            StoreError::Sqlite(error) => sqlite_is_busy(error),
            StoreError::KeyChanged { .. } => true,
            StoreError::WrongExpectedRevision { .. }
            | StoreError::EventIdReused { .. }
            | StoreError::InvalidInput(_)
            | StoreError::Corrupt { .. }
            | StoreError::Config(_)
            | StoreError::Migration(_)
            | StoreError::NotAStore(_)
            | StoreError::NoDatabase { .. }
            | StoreError::GuardsMissing { .. }
            | StoreError::SubjectErased { .. }
            | StoreError::Sealing(_)
            | StoreError::Task(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_are_told_apart_from_failures() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::Sqlite(busy).is_busy());
        let locked = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_LOCKED),
            None,
        );
        assert!(StoreError::Sqlite(locked).is_busy());
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(!StoreError::Sqlite(full).is_busy());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_busy());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_busy());
        assert!(!StoreError::InvalidInput("x".into()).is_busy());
    }
}
