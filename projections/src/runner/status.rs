//! What a runner is told ([`RunnerOptions`]) and what it tells ([`ProjectionStatus`] through
//! the [`RunnerHandle`] of a running one).

use std::sync::Arc;
use std::time::Duration;

use crm_core::envelope::Position;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::ProjectionError;

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Events read and applied per transaction.
    pub batch_size: usize,
    /// The most events read and applied per transaction while a lane catches up (its last
    /// read filled a batch: a rebuild, a start behind the head, a burst of appends): from
    /// `batch_size`, doubled with each full batch up to this. Fewer, larger transactions write
    /// each shared page (index pages, the table's last page) to the WAL fewer times; each
    /// holds the write lock longer.
    pub catch_up_batch_size: usize,
    /// How often leases are tried and renewed and rebuild requests looked for.
    pub poll_interval: Duration,
    /// How long a SQLite lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Return once every projection is held, live and caught up with the head (for the
    /// command-line tools and benchmarks) instead of following the log.
    pub stop_when_caught_up: bool,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 2_000,
            catch_up_batch_size: 10_000,
            poll_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(15),
            stop_when_caught_up: false,
        }
    }
}

/// What a projection is doing in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Not started yet.
    Starting,
    /// Behind the head, reading in batches.
    CatchingUp,
    /// Caught up, following new events.
    Live,
    /// Its code changed: the old tables answer, frozen, while the new ones are built.
    Rebuilding,
    /// Another process holds it.
    Standby,
    /// The last batch failed; it is retried.
    Failed,
}

/// A projection's progress as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub state: RunState,
    /// The live generation (the tables readers see).
    pub generation: i64,
    /// The live tables' checkpoint: every event up to here is in them.
    pub position: Position,
    pub head: Position,
    /// `head - position`.
    pub lag: u64,
    /// A blue/green rebuild in progress: its generation and position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This runner's parking epoch, the same in every status it publishes: it moves after
    /// each commit that parks a tenant (of any projection it holds) and each time it sets a
    /// projection up (taking a lease). A set of parked tenants read from the database at one
    /// epoch still holds every tenant this runner has parked while the epoch is unchanged
    /// ([`crate::parking::ParkedTenants`]). Not part of the API's answers.
    #[serde(skip)]
    pub parks_epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RebuildStatus {
    pub generation: i64,
    pub position: Position,
}

/// A running runner.
#[derive(Debug)]
pub struct RunnerHandle {
    pub(super) statuses: watch::Receiver<Vec<ProjectionStatus>>,
    pub(super) wake: Arc<Notify>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) task: JoinHandle<Result<(), ProjectionError>>,
}

impl RunnerHandle {
    /// Every projection's status, in registration order.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        self.statuses.borrow().clone()
    }

    /// A receiver that changes whenever a status does.
    pub fn subscribe(&self) -> watch::Receiver<Vec<ProjectionStatus>> {
        self.statuses.clone()
    }

    /// Makes the runner look for rebuild requests and leases now instead of at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until every named projection (all when `names` is empty) has its live tables at
    /// `position` or beyond. False if `timeout` passed first.
    pub async fn wait_for(&self, names: &[&str], position: Position, timeout: Duration) -> bool {
        let mut statuses = self.statuses.clone();
        let reached = |list: &Vec<ProjectionStatus>| {
            list.iter()
                .filter(|s| names.is_empty() || names.contains(&s.name))
                .all(|s| s.position >= position)
        };
        tokio::time::timeout(timeout, statuses.wait_for(reached))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops after the batch in progress and gives the leases up.
    pub async fn shutdown(self) -> Result<(), ProjectionError> {
        let _ = self.shutdown.send(true);
        self.join().await
    }

    /// Stops the runner at once, as a crash would: the batch in flight is never committed,
    /// and leases are not given up (SQLite ones expire; PostgreSQL's end with the connection).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Waits for the runner to end (with `stop_when_caught_up`, once caught up).
    pub async fn join(self) -> Result<(), ProjectionError> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(ProjectionError::Schema(format!(
                "the projection runner stopped: {join_error}"
            ))),
        }
    }
}
