//! The tree worker: follows the raw log (stored bytes, personal fields sealed as stored) from
//! its checkpoint and adds each event as the next leaf of its tenant's tree. One transaction
//! per batch moves the checkpoint by compare-and-set first, then stores the new leaves, the
//! perfect subtrees they complete and each touched tenant's size and root; a worker that
//! finds the checkpoint moved (another process's worker got there first) rolls back, reloads
//! and goes on from the stored state. A failure is logged and retried after a pause, from
//! the stored state: nothing is ever skipped or added twice. Of several processes on one
//! database one builds the tree at a time (the projections' lease, `audit_tree`); the
//! others wait on standby and take over when it stops or dies. Correctness rests on the
//! compare-and-set, not on the lease.

use std::collections::HashMap;
use std::time::Duration;

use crm_core::envelope::Position;
use crm_core::merkle::nodes::{lookup, needed, peaks_of, sparse};
use crm_core::merkle::{Frontier, leaf_data, leaf_hash};
use crm_core::store::subscribe_all;
use crm_core::store::{Scope, SharedStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{STRIDE, checkpoint_in, create, fetch_nodes, tree};
use crate::db::{Backend, ReadDb, SqlValue};
use crate::error::ProjectionError;
use crate::lease::Leases;

/// The worker's lease name (beside the projections' own).
const LEASE: &str = "audit_tree";

/// Events read and added per transaction at most.
const BATCH: usize = 2_000;
/// After a batch smaller than [`BATCH`], the worker waits this long for more events, so a
/// trickle of single appends costs one tree transaction per interval, not one per append.
const GATHER: Duration = Duration::from_millis(100);

/// The running worker.
#[derive(Debug)]
pub struct TreeWorker {
    position: watch::Receiver<Position>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TreeWorker {
    /// The log position the trees cover, as this worker last stored or read it.
    pub fn position(&self) -> watch::Receiver<Position> {
        self.position.clone()
    }

    /// Stops after the batch in progress (each batch is one transaction: a stop, or a kill,
    /// between two loses nothing).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the worker over the raw store `store` (never the sealing store: the leaves commit
/// to the bytes as stored).
pub fn spawn(store: SharedStore, db: ReadDb) -> TreeWorker {
    let (position_tx, position) = watch::channel(0);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut leases = Leases::new(Duration::from_secs(15));
        let mut pause = Duration::from_millis(100);
        loop {
            let run = run(&store, &db, &position_tx, &mut leases);
            tokio::select! {
                result = run => match result {
                    Ok(()) => break,
                    Err(ProjectionError::LostLease(_)) => {
                        tracing::info!("another process builds the audit tree now; on standby");
                        pause = Duration::from_millis(100);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the audit tree worker failed; retrying from its checkpoint");
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                },
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        leases.release_all(&db).await;
    });
    TreeWorker {
        position,
        stop,
        task,
    }
}

/// Follows the log until an error (the caller retries) or forever.
async fn run(
    store: &SharedStore,
    db: &ReadDb,
    position: &watch::Sender<Position>,
    leases: &mut Leases,
) -> Result<(), ProjectionError> {
    create(db).await?;
    // On standby until this process holds the lease.
    while !leases.try_acquire(db, LEASE).await? {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut at = {
        let mut tx = db.begin_read().await?;
        let at = checkpoint_in(&mut tx).await?;
        tx.rollback().await?;
        at
    };
    let _ = position.send(at);
    let mut frontiers: HashMap<String, Frontier> = HashMap::new();
    let mut events = subscribe_all(store.clone(), Scope::AllTenants, at).with_batch_size(BATCH);
    loop {
        let batch = events.next_batch().await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            continue;
        };
        let batch_len = batch.len();
        // Each touched tenant's frontier, loaded once from its stored peaks.
        for event in &batch {
            let tenant = event.tenant.as_str();
            if !frontiers.contains_key(tenant) {
                let loaded = load_frontier(db, tenant).await?;
                frontiers.insert(tenant.to_owned(), loaded);
            }
        }
        let mut working: HashMap<&str, Frontier> = HashMap::new();
        let mut nodes = Vec::with_capacity(batch.len() * 3);
        let mut leaves = Vec::with_capacity(batch.len());
        for event in &batch {
            let tenant = event.tenant.as_str();
            let frontier = working
                .entry(tenant)
                .or_insert_with(|| frontiers[tenant].clone());
            let index = frontier.size();
            for ((level, idx), hash) in frontier.push_nodes(leaf_hash(&leaf_data(event))) {
                if !level.is_multiple_of(STRIDE) {
                    continue;
                }
                nodes.push(vec![
                    tenant.into(),
                    SqlValue::Int(i64::from(level)),
                    SqlValue::Int(idx as i64),
                    SqlValue::Text(hex::encode(hash)),
                ]);
            }
            leaves.push(vec![
                tenant.into(),
                event.stream_id.as_str().into(),
                SqlValue::Int(event.revision as i64),
                SqlValue::Int(index as i64),
                SqlValue::Int(event.position as i64),
            ]);
        }
        if !leases.alive().await {
            return Err(ProjectionError::LostLease(LEASE.into()));
        }
        let mut tx = db.begin().await?;
        if tx.backend() == Backend::Postgres {
            // The tree is derived from the log and its checkpoint commits with it: a crash
            // that loses the last tree commits loses their checkpoint too, and the worker
            // redoes them. So its commits need not wait for the WAL flush the appends wait
            // for (they would double the flushes of a trickle of single appends).
            tx.execute("SET LOCAL synchronous_commit = off", vec![])
                .await?;
        }
        leases.renew(&mut tx, LEASE).await?;
        let moved = tx
            .execute(
                "UPDATE crm_audit_checkpoint SET position = ? WHERE id = 1 AND position = ?",
                vec![SqlValue::Int(last as i64), SqlValue::Int(at as i64)],
            )
            .await?;
        if moved != 1 {
            // Another worker stored this batch first: start again from what it stored.
            tx.rollback().await?;
            return Err(ProjectionError::LostLease("audit tree".into()));
        }
        tx.insert_rows(
            "crm_audit_nodes",
            &["tenant", "level", "idx", "hash"],
            nodes,
            "",
        )
        .await?;
        tx.insert_rows(
            "crm_audit_leaves",
            &["tenant", "stream", "revision", "leaf_index", "position"],
            leaves,
            "",
        )
        .await?;
        let trees: Vec<Vec<SqlValue>> = working
            .iter()
            .map(|(tenant, frontier)| {
                vec![
                    (*tenant).into(),
                    SqlValue::Int(frontier.size() as i64),
                    SqlValue::Text(hex::encode(frontier.root())),
                ]
            })
            .collect();
        tx.insert_rows(
            "crm_audit_trees",
            &["tenant", "size", "root"],
            trees,
            "ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, root = excluded.root",
        )
        .await?;
        tx.commit().await?;
        for (tenant, frontier) in working {
            if let Some(kept) = frontiers.get_mut(tenant) {
                *kept = frontier;
            }
        }
        at = last;
        let _ = position.send(at);
        if batch_len < BATCH {
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// A tenant's frontier from its stored size and peaks.
async fn load_frontier(db: &ReadDb, tenant: &str) -> Result<Frontier, ProjectionError> {
    let stored = tree(db, tenant).await?;
    let ids = peaks_of(stored.size);
    let peaks_from = |node: &mut dyn FnMut((u32, u64)) -> Option<[u8; 32]>| {
        ids.iter()
            .map(|id| sparse(&mut *node, STRIDE, *id).ok_or(*id))
            .collect::<Result<Vec<_>, _>>()
    };
    let found = fetch_nodes(db, tenant, &needed(peaks_from)).await?;
    let peaks = peaks_from(&mut lookup(&found)).map_err(|id| ProjectionError::Corrupt {
        table: "crm_audit_nodes".into(),
        key: format!("{tenant}/{}/{}", id.0, id.1),
        reason: "a peak of the stored tree is missing".into(),
    })?;
    let frontier = Frontier::from_parts(stored.size, peaks).ok_or(ProjectionError::Corrupt {
        table: "crm_audit_trees".into(),
        key: tenant.into(),
        reason: "the stored peaks do not fit the size".into(),
    })?;
    if frontier.root() != stored.root {
        return Err(ProjectionError::Corrupt {
            table: "crm_audit_trees".into(),
            key: tenant.into(),
            reason: "the stored root is not the root of the stored peaks".into(),
        });
    }
    Ok(frontier)
}
