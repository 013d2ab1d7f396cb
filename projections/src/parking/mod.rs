//! Park and replay: a failure stays with its tenant.
//!
//! Checkpoints are per projection, not per tenant, so one event a projection cannot apply
//! would otherwise stop that read model for every tenant. Instead, when a batch fails the
//! runner retries it event by event, one transaction per event ([`isolate`]); the event that
//! fails on its own is recorded in `crm_projection_failures` (projection, generation, tenant,
//! position, error) and its tenant is *parked* for that projection: the event and every
//! later event of the tenant are recorded in `crm_projection_parked`, in the transaction
//! that moves the checkpoint past them, and not applied. Every other tenant goes on.
//!
//! When the runner next sets a projection up (a restart, a lease takeover, a rebuild
//! request), [`replay`] applies each parked tenant's events in log order in one transaction
//! that also deletes its parked rows and its failure and checks the checkpoint has not
//! moved: the tenant is live again with each event applied exactly once, or stays parked
//! with the new error. A rebuild builds a new generation from 0 with its own parking.
//!
//! Events the projection cannot decode (a damaged row, a newer schema version) are parked
//! the same way. Errors that say nothing about the event (the database unreachable or
//! locked, the lease lost) never park a tenant: the batch is retried as before, and the
//! projection-wide error is stored in `crm_projection_errors` so every process reports it.
//! What is stored here is what `/healthz`, `/v1/projections` and the queries read
//! ([`stored_failures`], [`tenant_failure`], [`stored_errors`]), whichever process runs the
//! projection.

mod isolate;
mod replay;
mod stored;
mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;

use crm_core::envelope::{Position, TenantId};

use crate::bookkeeping::from_position;
use crate::db::{Col, ReadTx};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;

pub(crate) use isolate::{IsolateLane, isolate};
pub(crate) use replay::{ReplayLane, replay};
pub use stored::{Failure, set_error, stored_errors, stored_failures, tenant_failure};
pub use watch::ParkedTenants;

/// The tables, created with the runner's own ([`crate::bookkeeping`]).
pub(crate) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS crm_projection_failures (
        projection TEXTKEY NOT NULL,
        generation BIGINT NOT NULL,
        tenant TEXTKEY NOT NULL,
        position BIGINT NOT NULL,
        error TEXT NOT NULL,
        PRIMARY KEY (projection, generation, tenant)
    )",
    "CREATE TABLE IF NOT EXISTS crm_projection_parked (
        projection TEXTKEY NOT NULL,
        generation BIGINT NOT NULL,
        tenant TEXTKEY NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (projection, generation, tenant, position)
    )",
    "CREATE TABLE IF NOT EXISTS crm_projection_errors (
        projection TEXTKEY PRIMARY KEY,
        error TEXT NOT NULL
    )",
];

/// Longest error text stored.
const MAX_ERROR_CHARS: usize = 1_000;

/// Parked events replayed per read of the log.
pub(crate) const REPLAY_CHUNK: usize = 1_000;

/// An event of a batch that could not be decoded: it parks its tenant like a failed apply.
#[derive(Debug)]
pub(crate) struct Undecodable {
    pub tenant: TenantId,
    pub position: Position,
    pub reason: String,
}

/// A read of the log, decoded: the events, those that could not be decoded, and the last
/// position read (the checkpoint's next value).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub events: Vec<Arc<ProjectedEvent>>,
    pub undecodable: Vec<Undecodable>,
    pub last: Option<Position>,
    pub len: usize,
}

/// One step of a lane through a batch, in log order.
pub(crate) enum Item<'a> {
    Event(&'a Arc<ProjectedEvent>),
    Undecodable(&'a Undecodable),
}

impl Batch {
    /// Every item in log order.
    pub(crate) fn items(&self) -> Vec<(Position, &str, Item<'_>)> {
        let mut items: Vec<(Position, &str, Item<'_>)> = self
            .events
            .iter()
            .map(|e| (e.position, e.tenant.as_str(), Item::Event(e)))
            .chain(
                self.undecodable
                    .iter()
                    .map(|u| (u.position, u.tenant.as_str(), Item::Undecodable(u))),
            )
            .collect();
        items.sort_by_key(|(position, _, _)| *position);
        items
    }
}

/// What a lane does with a batch that is not all plain applies.
#[derive(Debug, Default)]
pub(crate) struct Split {
    /// To apply.
    pub apply: Vec<Arc<ProjectedEvent>>,
    /// (tenant, position) to record as parked.
    pub parked: Vec<(String, Position)>,
    /// (tenant, position, error): new failures (undecodable events).
    pub failures: Vec<(String, Position, String)>,
}

/// Splits `batch` for a lane whose parked tenants are `parked`; `None` when every event is
/// applied (nothing parked, nothing undecodable). An undecodable event parks its tenant
/// (a new failure in the split) from there on.
pub(crate) fn split(parked: &BTreeSet<String>, batch: &Batch) -> Option<Split> {
    if batch.undecodable.is_empty()
        && (parked.is_empty()
            || !batch
                .events
                .iter()
                .any(|e| parked.contains(e.tenant.as_str())))
    {
        return None;
    }
    let mut split = Split::default();
    let mut newly: BTreeSet<&str> = BTreeSet::new();
    for (position, tenant, item) in batch.items() {
        let is_parked = parked.contains(tenant) || newly.contains(tenant);
        match item {
            Item::Event(event) if !is_parked => split.apply.push(Arc::clone(event)),
            Item::Event(_) => split.parked.push((tenant.to_owned(), position)),
            Item::Undecodable(u) => {
                if !is_parked {
                    newly.insert(tenant);
                    split
                        .failures
                        .push((tenant.to_owned(), position, u.reason.clone()));
                }
                split.parked.push((tenant.to_owned(), position));
            }
        }
    }
    Some(split)
}

/// Records a split's parked events and failures in the lane's transaction.
pub(crate) async fn record(
    tx: &mut ReadTx,
    projection: &str,
    generation: i64,
    split: &Split,
) -> Result<(), ProjectionError> {
    for (tenant, position, error) in &split.failures {
        tracing::error!(projection, tenant, position, %error, "event cannot be projected; tenant parked");
        record_failure(tx, projection, generation, tenant, *position, error, false).await?;
    }
    let rows = split
        .parked
        .iter()
        .map(|(tenant, position)| {
            vec![
                projection.into(),
                generation.into(),
                tenant.as_str().into(),
                from_position(*position),
            ]
        })
        .collect();
    tx.insert_rows(
        "crm_projection_parked",
        &["projection", "generation", "tenant", "position"],
        rows,
        "ON CONFLICT DO NOTHING",
    )
    .await
}

pub(crate) async fn record_failure(
    tx: &mut ReadTx,
    projection: &str,
    generation: i64,
    tenant: &str,
    position: Position,
    error: &str,
    replace: bool,
) -> Result<(), ProjectionError> {
    let action = if replace {
        "DO UPDATE SET error = excluded.error"
    } else {
        "DO NOTHING"
    };
    tx.execute(
        &format!(
            "INSERT INTO crm_projection_failures (projection, generation, tenant, position, error) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (projection, generation, tenant) {action}"
        ),
        vec![
            projection.into(),
            generation.into(),
            tenant.into(),
            from_position(position),
            storable_error(error).into(),
        ],
    )
    .await?;
    Ok(())
}

/// Error text as it can be stored on every backend: no NUL, at most [`MAX_ERROR_CHARS`].
fn storable_error(error: &str) -> String {
    error
        .chars()
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect()
}

/// Whether `error`, met applying one event on its own, is about that event (park its
/// tenant) rather than about the database or this process (retry the batch later).
pub(crate) fn is_poison(error: &ProjectionError) -> bool {
    match error {
        ProjectionError::Database(sqlx::Error::Database(db)) => {
            // Connection, transaction-state, serialization, resources, operator, lock and
            // internal classes say nothing about the event; nor do a statement that does not
            // fit the schema (42: undefined table or column, a type mismatch in the SQL) or
            // an unsupported feature (0A), which are bugs that would fail every tenant.
            let class = db.code().map(|c| c.chars().take(2).collect::<String>());
            !matches!(
                class.as_deref(),
                Some("08" | "0A" | "25" | "40" | "42" | "53" | "55" | "57" | "58" | "XX") | None
            )
        }
        ProjectionError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
            failure.code,
            rusqlite::ErrorCode::ConstraintViolation
                | rusqlite::ErrorCode::TooBig
                | rusqlite::ErrorCode::TypeMismatch
                | rusqlite::ErrorCode::ParameterOutOfRange
        ),
        ProjectionError::Sqlite(
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::ToSqlConversionFailure(..),
        ) => true,
        ProjectionError::Undecodable { .. } | ProjectionError::Corrupt { .. } => true,
        _ => false,
    }
}

/// The parked tenants of one generation.
pub(crate) async fn parked_tenants(
    tx: &mut ReadTx,
    projection: &str,
    generation: i64,
) -> Result<BTreeSet<String>, ProjectionError> {
    let rows = tx
        .fetch(
            "SELECT tenant FROM crm_projection_failures WHERE projection = ? AND generation = ?",
            vec![projection.into(), generation.into()],
            &[Col::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|mut row| row.remove(0).into_text())
        .collect())
}

/// Deletes a generation's failures and parked events (with its tables).
pub(crate) async fn forget_generation(
    tx: &mut ReadTx,
    projection: &str,
    generation: i64,
) -> Result<(), ProjectionError> {
    for table in ["crm_projection_failures", "crm_projection_parked"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE projection = ? AND generation = ?"),
            vec![projection.into(), generation.into()],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undecodable(tenant: &str, position: Position) -> Undecodable {
        Undecodable {
            tenant: TenantId::parse(tenant).expect("tenant"),
            position,
            reason: "schema version 9".into(),
        }
    }

    #[test]
    fn an_undecodable_event_parks_its_tenant_from_there_on_and_no_other() {
        let batch = Batch {
            undecodable: vec![undecodable("a", 2), undecodable("a", 3)],
            last: Some(3),
            len: 2,
            ..Batch::default()
        };
        let split = split(&BTreeSet::new(), &batch).expect("a split");
        assert!(split.apply.is_empty());
        assert_eq!(split.failures.len(), 1, "one failure per tenant");
        assert_eq!(split.failures[0].1, 2);
        assert_eq!(split.parked, vec![("a".to_owned(), 2), ("a".to_owned(), 3)]);
        let nothing = Batch::default();
        assert!(super::split(&BTreeSet::from(["a".to_owned()]), &nothing).is_none());
    }

    #[test]
    fn only_errors_about_the_event_park_a_tenant() {
        assert!(is_poison(&ProjectionError::Undecodable {
            position: 1,
            reason: "x".into()
        }));
        assert!(!is_poison(&ProjectionError::LostLease("p".into())));
        assert!(!is_poison(&ProjectionError::Locked(
            std::time::Duration::from_secs(1)
        )));
        assert!(!is_poison(&ProjectionError::Closed));
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(is_poison(&ProjectionError::Sqlite(constraint)));
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(!is_poison(&ProjectionError::Sqlite(busy)));
    }

    #[test]
    fn stored_errors_hold_no_nul_and_are_bounded() {
        assert_eq!(storable_error("a\0b"), "a\u{fffd}b");
        assert_eq!(
            storable_error(&"x".repeat(5_000)).chars().count(),
            MAX_ERROR_CHARS
        );
    }
}
