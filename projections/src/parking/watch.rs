//! Which tenants may be parked, as one process keeps it between queries: every read of a read
//! model asks whether its tenant is parked, and one indexed query per read is a measurable
//! share of a fast read (Q1). [`ParkedTenants`] reads the (small) set of tenants with a stored
//! failure at most every [`REFRESH`], and only for a tenant in that set asks the database
//! for its failure, so a tenant brought back by a replay is served again at once; a tenant
//! parked meanwhile is noticed within [`REFRESH`] (its reads until then are merely stale).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::stored::{Failure, tenant_failure};
use crate::db::{Col, ReadDb};
use crate::error::ProjectionError;

/// How old the remembered set may be.
pub const REFRESH: Duration = Duration::from_millis(250);

/// The tenants with a stored failure, refreshed at most every [`REFRESH`]. Cheap to share.
#[derive(Debug, Default)]
pub struct ParkedTenants {
    seen: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl ParkedTenants {
    /// The first of `projections` `tenant` is parked for (live generations), as stored.
    pub async fn failure(
        &self,
        db: &ReadDb,
        tenant: &str,
        projections: &[&str],
    ) -> Result<Option<Failure>, ProjectionError> {
        if !self.tenants(db).await?.contains(tenant) {
            return Ok(None);
        }
        tenant_failure(db, tenant, projections).await
    }

    /// The remembered set (a cache: a panic elsewhere while it was held cannot spoil it).
    fn remembered(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<HashSet<String>>)>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn tenants(&self, db: &ReadDb) -> Result<Arc<HashSet<String>>, ProjectionError> {
        if let Some((at, tenants)) = self.remembered().as_ref()
            && at.elapsed() < REFRESH
        {
            return Ok(Arc::clone(tenants));
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
        *self.remembered() = Some((Instant::now(), Arc::clone(&tenants)));
        Ok(tenants)
    }
}
