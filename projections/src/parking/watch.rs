//! Which tenants may be parked, as one process keeps it between queries: every read of a read
//! model asks whether its tenant is parked, and one indexed query per read is a measurable
//! share of a fast read (Q1). A tenant is parked in the transaction that moves the
//! projection's checkpoint past its failed event, so the (small) set of tenants with a
//! stored failure can only grow when a checkpoint moves: [`ParkedTenants`] reads it again
//! when the caller's read models have moved past the position it was read at, or after
//! [`REFRESH`], and only for a tenant in the set asks the database for its failure, so a
//! tenant brought back by a replay is served again at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm_core::envelope::Position;

use super::stored::{Failure, tenant_failure};
use crate::db::{Col, ReadDb};
use crate::error::ProjectionError;

/// How old the remembered set may be.
pub const REFRESH: Duration = Duration::from_millis(250);

/// The tenants with a stored failure, refreshed at most every [`REFRESH`]. Cheap to share.
#[derive(Debug, Default)]
pub struct ParkedTenants {
    seen: Mutex<Option<Seen>>,
}

/// The set as last read: when, and with the read models at which position.
#[derive(Debug)]
struct Seen {
    at: Instant,
    position: Position,
    tenants: Arc<HashSet<String>>,
}

impl ParkedTenants {
    /// The first of `projections` `tenant` is parked for (live generations), as stored.
    /// `position`: how far the caller's read models have come (as this process knows it
    /// first hand); `None` when it cannot know (a standby), which always asks the database.
    pub async fn failure(
        &self,
        db: &ReadDb,
        tenant: &str,
        projections: &[&str],
        position: Option<Position>,
    ) -> Result<Option<Failure>, ProjectionError> {
        let Some(position) = position else {
            return tenant_failure(db, tenant, projections).await;
        };
        if !self.tenants(db, position).await?.contains(tenant) {
            return Ok(None);
        }
        tenant_failure(db, tenant, projections).await
    }

    /// The remembered set (a cache: a panic elsewhere while it was held cannot spoil it).
    fn remembered(&self) -> std::sync::MutexGuard<'_, Option<Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn tenants(
        &self,
        db: &ReadDb,
        position: Position,
    ) -> Result<Arc<HashSet<String>>, ProjectionError> {
        if let Some(seen) = self.remembered().as_ref()
            && seen.at.elapsed() < REFRESH
            && seen.position >= position
        {
            return Ok(Arc::clone(&seen.tenants));
        }
        let rows = db
            .fetch(
                "SELECT DISTINCT tenant FROM crm_projection_failures",
                vec![],
                &[Col::Text],
            )
            .await?;
        let tenants: Arc<HashSet<String>> = Arc::new(
            rows.into_iter()
                .filter_map(|row| row[0].as_text().map(str::to_owned))
                .collect(),
        );
        *self.remembered() = Some(Seen {
            at: Instant::now(),
            position,
            tenants: Arc::clone(&tenants),
        });
        Ok(tenants)
    }
}
