//! SQLite errors as [`StoreError`]s, and the wait for a write lock another connection holds.
//!
//! Connections are opened with `busy_timeout` 0: SQLite's own busy handler sleeps inside the
//! call, which would stall a runtime thread for up to the whole timeout. Instead a statement
//! that finds the database locked fails at once with `SQLITE_BUSY`/`SQLITE_LOCKED`, and
//! [`retry_busy`] runs the whole unit of work again after an async pause, until
//! [`BUSY_DEADLINE`]; then the busy error itself is returned ([`StoreError::Sqlite`], which
//! callers treat as "the store did not answer", HTTP 503).

use std::time::Duration;

use rusqlite::ErrorCode;
use tokio::time::Instant;

use crate::envelope::Position;
use crate::store::StoreError;

/// The first pause after a busy answer; each further pause doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_micros(200);
const MAX_PAUSE: Duration = Duration::from_millis(5);
/// How long a unit of work keeps trying before the busy error is returned.
pub(super) const BUSY_DEADLINE: Duration = Duration::from_secs(10);

/// True when SQLite refused because another connection holds a lock.
pub(super) fn is_busy(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Sqlite(error) if matches!(
            error.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    )
}

/// Runs `attempt` until it succeeds, fails otherwise than busy, or [`BUSY_DEADLINE`] has
/// passed. `attempt` must leave nothing behind when it fails (no open transaction), since it
/// is simply run again.
pub(super) async fn retry_busy<T>(
    mut attempt: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let deadline = Instant::now() + BUSY_DEADLINE;
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt() {
            Err(error) if is_busy(&error) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(error);
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            other => return other,
        }
    }
}

/// A stored event row that cannot be read back.
pub(super) fn corrupt(position: i64, reason: String) -> StoreError {
    StoreError::Corrupt {
        position: position as Position,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_database_is_retried_until_the_deadline_then_reported_as_busy() {
        let started = Instant::now();
        let mut attempts = 0u32;
        let error = retry_busy(|| -> Result<(), StoreError> {
            attempts += 1;
            Err(busy())
        })
        .await
        .expect_err("busy until the deadline");
        assert!(is_busy(&error), "{error}");
        assert!(error.to_string().contains("database is locked"), "{error}");
        assert_eq!(started.elapsed(), BUSY_DEADLINE);
        // 200 µs doubling to 5 ms: a handful of short pauses, then one every 5 ms.
        assert!((1_990..=2_010).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn the_work_runs_again_once_the_lock_is_free_and_other_errors_are_not_retried() {
        let mut attempts = 0u32;
        let value = retry_busy(|| {
            attempts += 1;
            if attempts < 4 { Err(busy()) } else { Ok(7) }
        })
        .await
        .expect("free after three busy answers");
        assert_eq!((value, attempts), (7, 4));

        let mut attempts = 0u32;
        let error = retry_busy(|| -> Result<(), StoreError> {
            attempts += 1;
            Err(StoreError::Config("no".into()))
        })
        .await
        .expect_err("not retried");
        assert!(matches!(error, StoreError::Config(_)));
        assert_eq!(attempts, 1);
    }
}
