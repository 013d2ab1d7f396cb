//! Replaying a parked tenant: its parked events, in log order, in one transaction that also
//! forgets them and its failure, so each is applied exactly once; or the tenant stays parked
//! with the new error.

use std::collections::BTreeSet;
use std::sync::Arc;

use crm_core::envelope::{Position, TenantId};
use crm_core::store::SharedStore;

use super::{REPLAY_CHUNK, is_poison, parked_tenants, record_failure};
use crate::bookkeeping::to_position;
use crate::db::{Col, ReadDb};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, Tables};

/// A lane as [`replay`] sees it.
#[derive(Debug)]
pub(crate) struct ReplayLane<'a> {
    pub generation: i64,
    pub position: Position,
    pub tables: &'a Tables,
}

/// Replays every parked tenant of a lane, in log order, each in one transaction that deletes
/// its parked rows and failure and checks the checkpoint is still at `lane.position`.
/// Returns the tenants still parked (their failure updated with the new error).
pub(crate) async fn replay(
    store: &SharedStore,
    db: &ReadDb,
    projection: &dyn Projection,
    lane: ReplayLane<'_>,
) -> Result<BTreeSet<String>, ProjectionError> {
    let name = projection.name();
    let mut tx = db.begin().await?;
    let tenants = parked_tenants(&mut tx, name, lane.generation).await?;
    tx.rollback().await?;
    let mut still = BTreeSet::new();
    for tenant in tenants {
        match replay_tenant(store, db, projection, &lane, &tenant).await {
            Ok(count) => {
                tracing::info!(
                    projection = name,
                    tenant,
                    events = count,
                    "parked events replayed; tenant live again"
                );
            }
            Err(ReplayError::Lost(error)) => return Err(error),
            Err(ReplayError::Failed(position, error)) => {
                tracing::warn!(projection = name, tenant, position, %error, "parked events still fail; tenant stays parked");
                let mut tx = db.begin().await?;
                let message = error.to_string();
                record_failure(
                    &mut tx,
                    name,
                    lane.generation,
                    &tenant,
                    position,
                    &message,
                    true,
                )
                .await?;
                tx.commit().await?;
                still.insert(tenant);
            }
        }
    }
    Ok(still)
}

enum ReplayError {
    /// The checkpoint moved (another runner) or the database failed: stop.
    Lost(ProjectionError),
    /// An event failed again: (its position or the first parked one, the error).
    Failed(Position, ProjectionError),
}

async fn replay_tenant(
    store: &SharedStore,
    db: &ReadDb,
    projection: &dyn Projection,
    lane: &ReplayLane<'_>,
    tenant: &str,
) -> Result<usize, ReplayError> {
    let name = projection.name();
    let lost = ReplayError::Lost;
    let mut tx = db.begin().await.map_err(lost)?;
    let positions: Vec<Position> = tx
        .fetch(
            "SELECT position FROM crm_projection_parked \
             WHERE projection = ? AND generation = ? AND tenant = ? ORDER BY position",
            vec![name.into(), lane.generation.into(), tenant.into()],
            &[Col::Int],
        )
        .await
        .map_err(lost)?
        .iter()
        .map(|row| to_position(row[0].as_int().unwrap_or(0)))
        .collect();
    let first = positions.first().copied().unwrap_or(0);
    let tenant_id = TenantId::parse(tenant).map_err(|e| {
        ReplayError::Failed(
            first,
            ProjectionError::Schema(format!("parked tenant id: {e}")),
        )
    })?;
    for chunk in positions.chunks(REPLAY_CHUNK) {
        let recorded = store
            .read_positions(&tenant_id, chunk)
            .await
            .map_err(|e| lost(e.into()))?;
        let mut events = Vec::with_capacity(recorded.len());
        for event in recorded {
            let position = event.position;
            events.push(Arc::new(
                ProjectedEvent::decode(event).map_err(|e| ReplayError::Failed(position, e))?,
            ));
        }
        // Applied one by one so the error names the event that still fails.
        for event in &events {
            projection
                .apply(&mut tx, lane.tables, std::slice::from_ref(event))
                .await
                .map_err(|e| match is_poison(&e) {
                    true => ReplayError::Failed(event.position, e),
                    false => ReplayError::Lost(e),
                })?;
        }
    }
    for table in ["crm_projection_parked", "crm_projection_failures"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE projection = ? AND generation = ? AND tenant = ?"),
            vec![name.into(), lane.generation.into(), tenant.into()],
        )
        .await
        .map_err(lost)?;
    }
    crate::bookkeeping::advance(&mut tx, name, lane.generation, lane.position, lane.position)
        .await
        .map_err(lost)?;
    tx.commit().await.map_err(lost)?;
    Ok(positions.len())
}
