//! Which tenants may be parked, as one process keeps it between queries: every read of a read
//! model asks whether its tenant is parked, and one indexed query per read is a measurable
//! share of a fast read (Q1). A tenant is parked only by the runner that holds the
//! projection's lease, in the transaction that moves its checkpoint past the failed event,
//! so the (small) set of tenants with a stored failure can only grow after that runner
//! commits a park or sets a projection up: both move its parking epoch
//! ([`crate::runner::ProjectionStatus::parks_epoch`]), published with the checkpoint. So
//! [`ParkedTenants`] reads the set again when the epoch has moved since it was read, or
//! after [`REFRESH`], and only for a tenant in the set asks the database for its failure,
//! so a tenant brought back by a replay is served again at once.
//!
//! It used to read the set again whenever the read models moved, which under ingest is
//! before nearly every query: a second statement beside the query's own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::stored::{Failure, tenant_failure};
use crate::db::{Col, ReadDb};
use crate::error::ProjectionError;

/// How old the remembered set may be.
pub const REFRESH: Duration = Duration::from_millis(250);

/// The tenants with a stored failure, refreshed at most every [`REFRESH`]. Cheap to share.
#[derive(Debug)]
pub struct ParkedTenants {
    seen: Mutex<Option<Seen>>,
    refresh: Duration,
}

impl Default for ParkedTenants {
    fn default() -> Self {
        ParkedTenants::with_refresh(REFRESH)
    }
}

/// The set as last read: when, and at which parking epoch of this process's runner.
#[derive(Debug)]
struct Seen {
    at: Instant,
    epoch: u64,
    tenants: Arc<HashSet<String>>,
}

impl ParkedTenants {
    /// Reads the set again at least every `refresh` whatever the epoch (the default is
    /// [`REFRESH`]; tests take a longer one to see the epoch alone at work).
    pub fn with_refresh(refresh: Duration) -> ParkedTenants {
        ParkedTenants {
            seen: Mutex::new(None),
            refresh,
        }
    }

    /// The first of `projections` `tenant` is parked for (live generations), as stored.
    /// `epoch`: the parking epoch of the runner that holds `projections` in this process
    /// ([`crate::runner::ProjectionStatus::parks_epoch`], read after the caller's position);
    /// `None` when another process holds one of them (a standby), which always asks the
    /// database.
    pub async fn failure(
        &self,
        db: &ReadDb,
        tenant: &str,
        projections: &[&str],
        epoch: Option<u64>,
    ) -> Result<Option<Failure>, ProjectionError> {
        let Some(epoch) = epoch else {
            return tenant_failure(db, tenant, projections).await;
        };
        if !self.tenants(db, epoch).await?.contains(tenant) {
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
        epoch: u64,
    ) -> Result<Arc<HashSet<String>>, ProjectionError> {
        if let Some(seen) = self.remembered().as_ref()
            && seen.at.elapsed() < self.refresh
            && seen.epoch == epoch
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
            epoch,
            tenants: Arc::clone(&tenants),
        });
        Ok(tenants)
    }
}
