//! The stored state of parked tenants and failing projections, as every process reads it
//! (`/healthz`, `/v1/projections`, the parked-tenant 503s, `crm-replay rebuild`), whichever
//! process runs the projections.

use crm_core::envelope::Position;
use serde::Serialize;

use super::storable_error;
use crate::bookkeeping::to_position;
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;

/// A tenant parked for a projection, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub projection: String,
    pub tenant: String,
    /// The event that failed.
    pub position: Position,
    pub error: String,
    /// Events of the tenant parked so far (the failed one included).
    pub parked_events: u64,
}

/// Stores (or with `None` clears) a projection-wide error: a batch that fails for reasons
/// that are not one tenant's event. Every process reports it from here.
pub async fn set_error(
    db: &ReadDb,
    projection: &str,
    error: Option<&str>,
) -> Result<(), ProjectionError> {
    match error {
        Some(error) => db
            .execute(
                "INSERT INTO crm_projection_errors (projection, error) VALUES (?, ?) \
                 ON CONFLICT (projection) DO UPDATE SET error = excluded.error",
                vec![projection.into(), storable_error(error).into()],
            )
            .await
            .map(drop),
        None => db
            .execute(
                "DELETE FROM crm_projection_errors WHERE projection = ?",
                vec![projection.into()],
            )
            .await
            .map(drop),
    }
}

/// Every stored projection-wide error: (projection, error).
pub async fn stored_errors(db: &ReadDb) -> Result<Vec<(String, String)>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT projection, error FROM crm_projection_errors ORDER BY projection",
            vec![],
            &[Col::Text, Col::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let text = |v: &SqlValue| v.as_text().unwrap_or_default().to_owned();
            (text(&row[0]), text(&row[1]))
        })
        .collect())
}

const FAILURES: &str = "SELECT f.projection, f.tenant, f.position, f.error, \
     (SELECT COUNT(*) FROM crm_projection_parked k WHERE k.projection = f.projection \
      AND k.generation = f.generation AND k.tenant = f.tenant) \
     FROM crm_projection_failures f JOIN crm_projections p \
     ON p.projection = f.projection AND p.live_generation = f.generation";

fn failure(row: Vec<SqlValue>) -> Failure {
    let text = |v: &SqlValue| v.as_text().unwrap_or_default().to_owned();
    Failure {
        projection: text(&row[0]),
        tenant: text(&row[1]),
        position: to_position(row[2].as_int().unwrap_or(0)),
        error: text(&row[3]),
        parked_events: u64::try_from(row[4].as_int().unwrap_or(0)).unwrap_or(0),
    }
}

const FAILURE_COLS: &[Col] = &[Col::Text, Col::Text, Col::Int, Col::Text, Col::Int];

/// Every parked tenant of every live generation, as stored.
pub async fn stored_failures(db: &ReadDb) -> Result<Vec<Failure>, ProjectionError> {
    let sql = format!("{FAILURES} ORDER BY f.projection, f.tenant");
    let rows = db.fetch(&sql, vec![], FAILURE_COLS).await?;
    Ok(rows.into_iter().map(failure).collect())
}

/// The first of `projections` (live generations) that `tenant` is parked for, if any.
pub async fn tenant_failure(
    db: &ReadDb,
    tenant: &str,
    projections: &[&str],
) -> Result<Option<Failure>, ProjectionError> {
    let sql = format!("{FAILURES} WHERE f.tenant = ? ORDER BY f.projection");
    let rows = db.fetch(&sql, vec![tenant.into()], FAILURE_COLS).await?;
    Ok(rows
        .into_iter()
        .map(failure)
        .find(|f| projections.contains(&f.projection.as_str())))
}
