//! The delivery worker `crm-api serve` runs beside the projection runner: one per store,
//! under the lease `webhooks` (`crm_projections::lease`: a PostgreSQL advisory lock, or a
//! SQLite lease row taken over at once from an exited process), so several servers on one
//! store never deliver in parallel. While it holds the lease it runs one task
//! ([`super::lane`]) per active subscription, so a slow or dead endpoint delays only its own
//! subscription; nothing on the ingest path waits for it. It re-reads the subscriptions every
//! second, or at once when this process's API changed one ([`Hub`]), and prunes delivered
//! rows older than 30 days every hour.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_core::privacy::PrivateStore;
use crm_core::store::SharedStore;
use crm_projections::ReadDb;
use crm_projections::lease::Leases;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::{Client, ClientOptions};
use super::lane::Lane;
use super::tables;

/// The lease's name among the projections' leases.
pub const LEASE: &str = "webhooks";
/// A SQLite lease lasts this long unless renewed (every second while held).
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often the subscriptions are re-read without a nudge.
const TICK: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// The worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    pub client: ClientOptions,
    /// Every retry delay is divided by this (1 in production; tests compress the 3-day
    /// schedule with `serve --webhooks-time-divisor`).
    pub time_divisor: u32,
    /// Events read ahead per subscription (its memory bound).
    pub read_ahead: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            client: ClientOptions::default(),
            time_divisor: 1,
            read_ahead: 256,
        }
    }
}

/// This process's nudge: the API signals a change (created, patched, replayed, a call
/// queued) so the worker acts at once rather than at its next tick.
#[derive(Debug, Clone)]
pub struct Hub(Arc<watch::Sender<u64>>);

impl Default for Hub {
    fn default() -> Self {
        Hub(Arc::new(watch::channel(0).0))
    }
}

impl Hub {
    pub fn nudge(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// What the lanes share.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The log opened with every personal field (rendering with `personal_data`).
    pub opened: PrivateStore,
    /// The log opening no personal field (filtering, and rendering without personal data).
    pub sealed: SharedStore,
    pub db: ReadDb,
    pub client: Client,
    pub hub: Hub,
    pub options: WorkerOptions,
}

/// The running worker; [`WorkerHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops the lanes (a delivery in flight is abandoned: it is sent again, with the same
    /// message id, by the next holder) and gives the lease up.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Creates the tables and starts the worker on `store` (the opened log) and `db`.
pub async fn spawn(
    store: PrivateStore,
    db: ReadDb,
    hub: Hub,
    options: WorkerOptions,
) -> Result<WorkerHandle, super::WebhookError> {
    tables::create(&db).await?;
    let client = Client::new(options.client)
        .map_err(|e| super::WebhookError::Sealing(format!("cannot build the HTTP client: {e}")))?;
    let sealed: SharedStore = Arc::new(store.clone().opening_only(&[]));
    let shared = Shared {
        opened: store,
        sealed,
        db,
        client,
        hub,
        options,
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(supervise(shared, stopped));
    Ok(WorkerHandle { stop, task })
}

async fn supervise(shared: Shared, mut stopped: watch::Receiver<bool>) {
    let mut leases = Leases::new(LEASE_TTL);
    let mut held = false;
    let mut lanes: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    let mut nudges = shared.hub.subscribe();
    let mut last_prune: Option<Instant> = None;
    loop {
        let holds = if held && matches!(shared.db, ReadDb::Postgres(_)) {
            leases.alive().await
        } else {
            match leases.try_acquire(&shared.db, LEASE).await {
                Ok(taken) => taken,
                Err(error) => {
                    tracing::warn!(%error, "webhooks: cannot take or renew the lease");
                    false
                }
            }
        };
        if holds != held {
            if holds {
                tracing::info!("webhooks: delivering (lease taken)");
            } else {
                tracing::info!("webhooks: standing by (lease held elsewhere or lost)");
            }
        }
        held = holds;
        if held {
            match tables::active(&shared.db).await {
                Ok(active) => {
                    lanes.retain(|key, task| {
                        let keep = !task.is_finished() && active.contains(key);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for (tenant, id) in active {
                        lanes
                            .entry((tenant.clone(), id.clone()))
                            .or_insert_with(|| {
                                let lane = Lane::new(shared.clone(), tenant, id);
                                tokio::spawn(lane.run())
                            });
                    }
                }
                Err(error) => tracing::warn!(%error, "webhooks: cannot read the subscriptions"),
            }
            if last_prune.is_none_or(|at| at.elapsed() > PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                if let Err(error) = tables::prune(&shared.db).await {
                    tracing::warn!(%error, "webhooks: cannot prune the delivery log");
                }
            }
        } else {
            for (_, task) in lanes.drain() {
                task.abort();
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = nudges.changed() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
    for (_, task) in lanes.drain() {
        task.abort();
        let _ = task.await;
    }
    leases.release_all(&shared.db).await;
}
