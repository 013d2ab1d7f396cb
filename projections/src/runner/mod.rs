//! The checkpointed runner: reads the log in batches from each projection's checkpoint,
//! applies a batch and moves the checkpoint in one transaction, then follows the log live.
//!
//! One runner task drives every projection this process holds the lease of. Projections at
//! the same position share each read and its decoding (a *group*), and one transaction
//! covers the group's batch. A rebuild is a second lane of the same projection writing the
//! next generation's tables from position 0; once it has caught up, one transaction repoints
//! the views to it and drops the old tables. A projection whose code version changed keeps
//! serving its old tables, frozen, until its rebuild is swapped in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_core::envelope::{Position, RecordedEvent};
use crm_core::store::{Scope, SharedStore};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::bookkeeping::{self, Checkpoint};
use crate::db::ReadDb;
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::lease::Leases;
use crate::parking::{self, Batch, IsolateLane, ReplayLane, Undecodable};
use crate::projection::{Projection, Tables};

mod status;

pub use status::{ProjectionStatus, RebuildStatus, RunState, RunnerHandle, RunnerOptions};

/// Starts a runner for `projections` on a tokio task.
pub fn start(
    store: SharedStore,
    db: ReadDb,
    projections: Vec<Arc<dyn Projection>>,
    options: RunnerOptions,
) -> RunnerHandle {
    let initial = projections
        .iter()
        .map(|p| ProjectionStatus {
            name: p.name(),
            state: RunState::Starting,
            generation: 0,
            position: 0,
            head: 0,
            lag: 0,
            rebuild: None,
            error: None,
            parks_epoch: 0,
        })
        .collect();
    let (status_tx, statuses) = watch::channel(initial);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let runner = Runner {
        leases: Leases::new(options.lease_ttl),
        store,
        db,
        projections,
        options,
        held: BTreeMap::new(),
        standby_positions: BTreeMap::new(),
        status_tx,
        shutdown: shutdown_rx,
        wake: wake.clone(),
        prefetch: None,
        parks_epoch: 0,
    };
    let task = tokio::spawn(runner.run());
    RunnerHandle {
        statuses,
        wake,
        shutdown,
        task,
    }
}

/// Brings every projection up to the head (finishing any rebuild) and returns their status.
pub async fn run_until_caught_up(
    store: SharedStore,
    db: ReadDb,
    projections: Vec<Arc<dyn Projection>>,
    mut options: RunnerOptions,
) -> Result<Vec<ProjectionStatus>, ProjectionError> {
    options.stop_when_caught_up = true;
    let handle = start(store, db, projections, options);
    let statuses = handle.subscribe();
    handle.join().await?;
    let last = statuses.borrow().clone();
    Ok(last)
}

/// One generation being written.
#[derive(Debug)]
struct Lane {
    generation: i64,
    position: Position,
    tables: Tables,
    /// The last read found fewer events than a batch: the lane had reached the head.
    caught_up: bool,
    /// Events of its next read while behind: `batch_size` at first, doubled after each
    /// full batch up to `catch_up_batch_size`, back to `batch_size` once caught up.
    catch_up: usize,
    /// Tenants parked for this generation ([`crate::parking`]): their events are recorded
    /// as parked, not applied.
    parked: BTreeSet<String>,
}

impl Lane {
    fn new(projection: &dyn Projection, checkpoint: Checkpoint, batch: usize) -> Lane {
        Lane {
            generation: checkpoint.generation,
            position: checkpoint.position,
            tables: Tables::new(projection.tables(), checkpoint.generation),
            caught_up: false,
            catch_up: batch,
            parked: BTreeSet::new(),
        }
    }

    /// Replays the lane's parked tenants (see [`parking::replay`]); keeps those still failing.
    async fn replay_parked(
        &mut self,
        store: &SharedStore,
        db: &ReadDb,
        projection: &dyn Projection,
    ) -> Result<(), ProjectionError> {
        let lane = ReplayLane {
            generation: self.generation,
            position: self.position,
            tables: &self.tables,
        };
        self.parked = parking::replay(store, db, projection, lane).await?;
        Ok(())
    }
}

/// A projection this runner holds the lease of.
#[derive(Debug)]
struct Held {
    projection: Arc<dyn Projection>,
    live: Lane,
    /// The live lane's code version differs from this build: it is not written any more.
    frozen: bool,
    building: Option<Lane>,
    error: Option<String>,
    /// A projection-wide error is stored (by this runner or an earlier holder): cleared at
    /// the next batch that goes through, so every process reports it until then.
    stored_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LaneRef {
    Live(usize),
    Building(usize),
}

/// A read of the log, decoded, running on its own thread.
type PendingRead = JoinHandle<Result<Batch, ProjectionError>>;

/// Reads and decodes the batch after `after` on a blocking-pool thread: the runner's own
/// thread is busy with the current batch's statements (synchronous on SQLite), and a task
/// spawned from it could wait in its queue until that batch is done.
fn read_ahead(store: SharedStore, after: Position, batch: usize) -> PendingRead {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let recorded = runtime.block_on(store.read_all(&Scope::AllTenants, after, batch))?;
        Ok(decode_all(recorded))
    })
}

/// Decodes a read; an event this build cannot decode parks its tenant instead of stopping
/// every tenant.
fn decode_all(recorded: Vec<RecordedEvent>) -> Batch {
    let mut batch = Batch {
        len: recorded.len(),
        last: recorded.last().map(|e| e.position),
        events: Vec::with_capacity(recorded.len()),
        undecodable: Vec::new(),
    };
    for event in recorded {
        match ProjectedEvent::try_decode(event) {
            Ok(event) => batch.events.push(Arc::new(event)),
            Err((tenant, position, error)) => batch.undecodable.push(Undecodable {
                tenant,
                position,
                reason: error.to_string(),
            }),
        }
    }
    batch
}

struct Runner {
    store: SharedStore,
    db: ReadDb,
    projections: Vec<Arc<dyn Projection>>,
    options: RunnerOptions,
    leases: Leases,
    /// Held projections by index in `projections`.
    held: BTreeMap<usize, Held>,
    /// Stored positions of projections run elsewhere, for the status.
    standby_positions: BTreeMap<String, Position>,
    status_tx: watch::Sender<Vec<ProjectionStatus>>,
    shutdown: watch::Receiver<bool>,
    wake: Arc<Notify>,
    /// The next batch, read while the current one is applied: (after position, events
    /// asked for, read).
    prefetch: Option<(Position, usize, PendingRead)>,
    /// Moves after every commit that parks a tenant and every set-up
    /// ([`ProjectionStatus::parks_epoch`]).
    parks_epoch: u64,
}

impl Runner {
    async fn run(mut self) -> Result<(), ProjectionError> {
        let result = self.run_loop().await;
        self.leases.release_all(&self.db).await;
        if let Err(error) = &result {
            tracing::error!(%error, "projection runner stopped");
        }
        result
    }

    async fn run_loop(&mut self) -> Result<(), ProjectionError> {
        let mut head_rx = self.store.head_changes();
        let mut last_poll: Option<Instant> = None;
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            if last_poll.is_none_or(|at| at.elapsed() >= self.options.poll_interval) {
                last_poll = Some(Instant::now());
                if let Err(error) = self.poll().await {
                    if self.options.stop_when_caught_up {
                        return Err(error);
                    }
                    tracing::warn!(%error, "projection lease or setup check failed");
                }
            }
            head_rx.borrow_and_update();
            let worked = self.step().await?;
            self.swap_finished_rebuilds().await?;
            self.publish();
            if self.options.stop_when_caught_up && self.all_caught_up() {
                return Ok(());
            }
            if !worked {
                let wait = if self.held.values().any(|h| h.error.is_some()) {
                    Duration::from_secs(1)
                } else {
                    self.options.poll_interval
                };
                tokio::select! {
                    _ = head_rx.changed() => {}
                    _ = self.wake.notified() => { last_poll = None; }
                    _ = self.shutdown.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    fn all_caught_up(&self) -> bool {
        self.held.len() == self.projections.len()
            && self
                .held
                .values()
                .all(|h| h.error.is_none() && h.building.is_none() && !h.frozen && h.live.caught_up)
    }

    /// Takes free leases, sets up newly held projections, starts requested rebuilds.
    async fn poll(&mut self) -> Result<(), ProjectionError> {
        if !self.leases.alive().await && !self.held.is_empty() {
            tracing::warn!("lost the lease connection; projections go to standby");
            self.held.clear();
        }
        let requested: Vec<String> = self
            .db
            .fetch(
                "SELECT projection FROM crm_projections WHERE rebuild_requested = 1",
                vec![],
                &[crate::db::Col::Text],
            )
            .await?
            .into_iter()
            .filter_map(|mut row| row.remove(0).into_text())
            .collect();
        for index in 0..self.projections.len() {
            let projection = self.projections[index].clone();
            let name = projection.name();
            if !self.leases.try_acquire(&self.db, name).await? {
                self.held.remove(&index);
                continue;
            }
            let needs_setup = match self.held.get(&index) {
                None => true,
                Some(held) => requested.iter().any(|r| r == name) || held.error.is_some(),
            };
            if needs_setup {
                let held = self.set_up(projection).await?;
                self.held.insert(index, held);
                // Failures an earlier holder stored are now this runner's to report.
                self.parks_epoch += 1;
            }
        }
        if self.held.len() < self.projections.len() {
            self.standby_positions = bookkeeping::stored_positions(&self.db)
                .await?
                .into_iter()
                .map(|s| (s.projection, s.position))
                .collect();
        }
        Ok(())
    }

    /// Reads a held projection's generations, creating the first one, starting a rebuild
    /// when asked for or when the code version changed, and dropping leftovers.
    async fn set_up(&self, projection: Arc<dyn Projection>) -> Result<Held, ProjectionError> {
        let name = projection.name();
        let mut tx = self.db.begin().await?;
        let state = bookkeeping::live_state(&mut tx, name).await?;
        let mut checkpoints = bookkeeping::checkpoints(&mut tx, name).await?;
        let next_generation =
            |cps: &[Checkpoint]| cps.iter().map(|c| c.generation).max().unwrap_or(0) + 1;
        let live = match state.and_then(|s| {
            checkpoints
                .iter()
                .find(|c| c.generation == s.live_generation)
                .copied()
        }) {
            Some(live) => live,
            None => {
                let generation = next_generation(&checkpoints);
                bookkeeping::create_generation(&mut tx, projection.as_ref(), generation).await?;
                bookkeeping::make_live(&mut tx, projection.as_ref(), generation).await?;
                let created = Checkpoint {
                    generation,
                    version: projection.version(),
                    position: 0,
                };
                checkpoints.push(created);
                created
            }
        };
        let mut building = checkpoints
            .iter()
            .filter(|c| c.generation > live.generation)
            .max_by_key(|c| c.generation)
            .copied();
        // Generations left behind (an earlier swap's old tables, a crash half-way through a
        // drop, a rebuild for another code version) are dropped after this transaction, each
        // table on its own (see `bookkeeping::drop_generation`).
        let mut stale: Vec<i64> = checkpoints
            .iter()
            .map(|c| c.generation)
            .filter(|&g| g != live.generation && building.is_none_or(|b| b.generation != g))
            .collect();
        if let Some(b) = building
            && b.version != projection.version()
        {
            stale.push(b.generation);
            building = None;
        }
        let frozen = live.version != projection.version();
        let requested = state.is_some_and(|s| s.rebuild_requested);
        if (frozen || requested) && building.is_none() {
            let generation = next_generation(&checkpoints);
            bookkeeping::create_generation(&mut tx, projection.as_ref(), generation).await?;
            building = Some(Checkpoint {
                generation,
                version: projection.version(),
                position: 0,
            });
            tracing::info!(projection = name, generation, "rebuild started");
        }
        if requested {
            bookkeeping::clear_rebuild_request(&mut tx, name).await?;
        }
        tx.commit().await?;
        for generation in stale {
            bookkeeping::drop_generation(&self.db, projection.as_ref(), generation).await?;
        }
        let follow = self.options.batch_size.max(1);
        let mut live = Lane::new(projection.as_ref(), live, follow);
        let mut building = building.map(|b| Lane::new(projection.as_ref(), b, follow));
        // Parked tenants are replayed before their next events: a restart after a fix
        // brings them back. A frozen generation is not written; its tenants stay parked.
        if !frozen {
            live.replay_parked(&self.store, &self.db, projection.as_ref())
                .await?;
        }
        if let Some(building) = building.as_mut() {
            building
                .replay_parked(&self.store, &self.db, projection.as_ref())
                .await?;
        }
        // A stored error (ours before this set-up, or an earlier holder's) stays until a
        // batch goes through, so a retry does not make every process report ok meanwhile.
        let stored_error = parking::stored_errors(&self.db)
            .await?
            .iter()
            .any(|(projection, _)| projection == name);
        Ok(Held {
            live,
            building,
            frozen,
            projection,
            error: None,
            stored_error,
        })
    }

    /// One batch for every group of lanes at the same position. True if anything was read.
    async fn step(&mut self) -> Result<bool, ProjectionError> {
        let mut groups: BTreeMap<Position, Vec<LaneRef>> = BTreeMap::new();
        for (&index, held) in &self.held {
            if !held.frozen {
                groups
                    .entry(held.live.position)
                    .or_default()
                    .push(LaneRef::Live(index));
            }
            if let Some(building) = &held.building {
                groups
                    .entry(building.position)
                    .or_default()
                    .push(LaneRef::Building(index));
            }
        }
        let mut worked = false;
        for (position, lanes) in groups {
            match self.run_group(position, &lanes).await {
                Ok(read) => worked |= read,
                Err(ProjectionError::LostLease(name)) => {
                    // That projection goes to standby; the group's other lanes run next step.
                    let lane = lanes
                        .iter()
                        .copied()
                        .find(|l| {
                            self.held
                                .get(&lane_index(*l))
                                .is_some_and(|h| h.projection.name() == name)
                        })
                        .unwrap_or(lanes[0]);
                    self.record_error(lane, ProjectionError::LostLease(name))
                        .await?;
                }
                Err(error) => {
                    // Find the event: each lane again, one transaction per event; an event
                    // that fails on its own parks its tenant ([`parking`]).
                    tracing::debug!(%error, "batch failed; retrying event by event");
                    for lane in lanes {
                        match self.isolate(position, lane).await {
                            Ok(read) => worked |= read,
                            Err(error) => self.record_error(lane, error).await?,
                        }
                    }
                }
            }
        }
        Ok(worked)
    }

    /// One lane through the batch after `position`, one transaction per event.
    async fn isolate(
        &mut self,
        position: Position,
        lane_ref: LaneRef,
    ) -> Result<bool, ProjectionError> {
        let size = self.options.batch_size.max(1);
        let batch = self.read(position, size).await?;
        let caught_up = batch.len < size;
        let Some(held) = self.held.get_mut(&lane_index(lane_ref)) else {
            return Ok(false);
        };
        let projection = Arc::clone(&held.projection);
        let lane = match lane_ref {
            LaneRef::Live(_) => &mut held.live,
            LaneRef::Building(_) => match held.building.as_mut() {
                Some(lane) => lane,
                None => return Ok(false),
            },
        };
        if lane.position != position {
            return Ok(false);
        }
        let parked_before = lane.parked.len();
        let isolating = IsolateLane {
            generation: lane.generation,
            tables: &lane.tables,
            position: &mut lane.position,
            parked: &mut lane.parked,
        };
        let isolated = parking::isolate(
            &self.db,
            &self.leases,
            projection.as_ref(),
            isolating,
            &batch,
        )
        .await;
        // Each tenant parked here was committed before `isolate` returned, even on an error.
        if lane.parked.len() != parked_before {
            self.parks_epoch += 1;
        }
        isolated?;
        lane.caught_up = caught_up;
        lane.catch_up = size;
        let had_error = held.error.take().is_some() | std::mem::take(&mut held.stored_error);
        if had_error {
            self.clear_error(projection.name()).await;
        }
        Ok(batch.len > 0)
    }

    /// A lane's batch (or its empty read) went through: its projection's error is over.
    async fn batch_went_through(&mut self, lane: LaneRef) {
        let mut cleared = None;
        if let Some(held) = self.held.get_mut(&lane_index(lane))
            && (held.error.take().is_some() | std::mem::take(&mut held.stored_error))
        {
            cleared = Some(held.projection.name());
        }
        if let Some(name) = cleared {
            self.clear_error(name).await;
        }
    }

    /// Forgets the stored projection-wide error after a batch went through.
    async fn clear_error(&self, name: &str) {
        if let Err(error) = parking::set_error(&self.db, name, None).await {
            tracing::warn!(projection = name, %error, "cannot clear the stored projection error");
        }
    }

    async fn record_error(
        &mut self,
        lane: LaneRef,
        error: ProjectionError,
    ) -> Result<(), ProjectionError> {
        if self.options.stop_when_caught_up {
            return Err(error);
        }
        let index = match lane {
            LaneRef::Live(i) | LaneRef::Building(i) => i,
        };
        if let ProjectionError::LostLease(name) = &error {
            tracing::warn!(projection = %name, "another runner took this projection over");
            self.held.remove(&index);
            return Ok(());
        }
        if let Some(held) = self.held.get_mut(&index) {
            let name = held.projection.name();
            tracing::error!(projection = name, %error, "projection batch failed; retrying");
            let message = error.to_string();
            held.error = Some(message.clone());
            held.stored_error = true;
            // Stored, so every process (a standby's /healthz among them) reports it.
            if let Err(error) = parking::set_error(&self.db, name, Some(&message)).await {
                tracing::warn!(projection = name, %error, "cannot store the projection error");
            }
        }
        Ok(())
    }

    async fn run_group(
        &mut self,
        position: Position,
        lanes: &[LaneRef],
    ) -> Result<bool, ProjectionError> {
        let batch = self.batch_size(lanes);
        let events = match self.prefetch.take() {
            Some((after, size, read)) if after == position && size == batch => match read.await {
                Ok(result) => result?,
                Err(_) => self.read(position, batch).await?,
            },
            other => {
                // A read ahead for another group (a rebuild lane, say) stays for that group.
                self.prefetch = other;
                self.read(position, batch).await?
            }
        };
        let caught_up = events.len < batch;
        let Some(last) = events.last else {
            for &lane in lanes {
                self.batch_went_through(lane).await;
                if let Some(lane) = self.lane_mut(lane) {
                    lane.caught_up = true;
                }
            }
            return Ok(false);
        };
        if !caught_up {
            // Catching up: read and decode the next batch on another thread while this one
            // is applied (SQLite statements run on this one). The lanes stay behind, so the
            // next read is a larger catch-up batch (see `batch_size`).
            let next = self.next_catch_up(batch);
            let read = read_ahead(Arc::clone(&self.store), last, next);
            if let Some((_, _, unused)) = self.prefetch.replace((last, next, read)) {
                unused.abort();
            }
        }
        let mut tx = self.db.begin().await?;
        let mut newly_parked: Vec<(LaneRef, Vec<String>)> = Vec::new();
        for &lane_ref in lanes {
            let Some(held) = self.held.get(&lane_index(lane_ref)) else {
                continue;
            };
            let lane = match lane_ref {
                LaneRef::Live(_) => &held.live,
                LaneRef::Building(_) => match &held.building {
                    Some(lane) => lane,
                    None => continue,
                },
            };
            let name = held.projection.name();
            match parking::split(&lane.parked, &events) {
                None => {
                    held.projection
                        .apply(&mut tx, &lane.tables, &events.events)
                        .await?
                }
                Some(split) => {
                    if !split.apply.is_empty() {
                        held.projection
                            .apply(&mut tx, &lane.tables, &split.apply)
                            .await?;
                    }
                    parking::record(&mut tx, name, lane.generation, &split).await?;
                    let tenants = split.failures.into_iter().map(|(t, _, _)| t).collect();
                    newly_parked.push((lane_ref, tenants));
                }
            }
            bookkeeping::advance(&mut tx, name, lane.generation, position, last).await?;
            self.leases.renew(&mut tx, name).await?;
        }
        tx.commit().await?;
        for (lane_ref, tenants) in newly_parked {
            if tenants.is_empty() {
                continue;
            }
            self.parks_epoch += 1;
            if let Some(lane) = self.lane_mut(lane_ref) {
                lane.parked.extend(tenants);
            }
        }
        for &lane_ref in lanes {
            self.batch_went_through(lane_ref).await;
            let next = self.next_catch_up(batch);
            let follow = self.options.batch_size.max(1);
            if let Some(lane) = self.lane_mut(lane_ref) {
                lane.position = last;
                lane.caught_up = caught_up;
                lane.catch_up = if caught_up { follow } else { next };
            }
        }
        Ok(true)
    }

    async fn read(&self, after: Position, batch: usize) -> Result<Batch, ProjectionError> {
        let recorded = self
            .store
            .read_all(&Scope::AllTenants, after, batch)
            .await?;
        Ok(decode_all(recorded))
    }

    /// Events to read for a group of lanes: while every lane of the group is behind (its
    /// last read was full, or it has not read yet), the smallest of their catch-up sizes
    /// (`batch_size` at first, doubling with each full batch up to `catch_up_batch_size`),
    /// else `batch_size`.
    fn batch_size(&self, lanes: &[LaneRef]) -> usize {
        let follow = self.options.batch_size.max(1);
        let mut size: Option<usize> = None;
        for &lane in lanes {
            let held = self.held.get(&lane_index(lane));
            let lane = match lane {
                LaneRef::Live(_) => held.map(|h| &h.live),
                LaneRef::Building(_) => held.and_then(|h| h.building.as_ref()),
            };
            match lane {
                Some(lane) if !lane.caught_up => {
                    size = Some(size.map_or(lane.catch_up, |s| s.min(lane.catch_up)));
                }
                _ => return follow,
            }
        }
        size.unwrap_or(follow).max(follow)
    }

    /// The catch-up size after a full batch of `batch` events.
    fn next_catch_up(&self, batch: usize) -> usize {
        let follow = self.options.batch_size.max(1);
        batch
            .saturating_mul(2)
            .min(self.options.catch_up_batch_size)
            .max(follow)
    }

    fn lane_mut(&mut self, lane: LaneRef) -> Option<&mut Lane> {
        match lane {
            LaneRef::Live(i) => self.held.get_mut(&i).map(|h| &mut h.live),
            LaneRef::Building(i) => self.held.get_mut(&i).and_then(|h| h.building.as_mut()),
        }
    }

    /// Swaps in every rebuild that has caught up with the head and with its live lane.
    async fn swap_finished_rebuilds(&mut self) -> Result<(), ProjectionError> {
        let ready: Vec<usize> = self
            .held
            .iter()
            .filter(|(_, h)| {
                h.building
                    .as_ref()
                    .is_some_and(|b| b.caught_up && (h.frozen || b.position >= h.live.position))
            })
            .map(|(&i, _)| i)
            .collect();
        for index in ready {
            let Some(held) = self.held.get_mut(&index) else {
                continue;
            };
            let Some(building) = held.building.take() else {
                continue;
            };
            let projection = held.projection.clone();
            let old = held.live.generation;
            let swap = async {
                let mut tx = self.db.begin().await?;
                bookkeeping::make_live(&mut tx, projection.as_ref(), building.generation).await?;
                self.leases.renew(&mut tx, projection.name()).await?;
                tx.commit().await
            };
            match swap.await {
                Ok(()) => {
                    tracing::info!(
                        projection = projection.name(),
                        generation = building.generation,
                        position = building.position,
                        "rebuild swapped in"
                    );
                    if let Some(held) = self.held.get_mut(&index) {
                        held.live = building;
                        held.frozen = false;
                    }
                    // The old generation's tables, now unused, outside the swap's transaction
                    // (see `bookkeeping::drop_generation`). Should that fail, the generation
                    // stays listed and the projection's next set-up drops it.
                    if let Err(error) =
                        bookkeeping::drop_generation(&self.db, projection.as_ref(), old).await
                    {
                        tracing::warn!(
                            projection = projection.name(),
                            generation = old,
                            %error,
                            "cannot drop the old generation yet; its next set-up will"
                        );
                    }
                }
                Err(error) => {
                    if let Some(held) = self.held.get_mut(&index) {
                        held.building = Some(building);
                    }
                    self.record_error(LaneRef::Building(index), error).await?;
                }
            }
        }
        Ok(())
    }

    fn publish(&self) {
        let head = *self.store.head_changes().borrow();
        let statuses = self
            .projections
            .iter()
            .enumerate()
            .map(|(index, projection)| match self.held.get(&index) {
                Some(held) => {
                    let state = if held.error.is_some() {
                        RunState::Failed
                    } else if held.frozen {
                        RunState::Rebuilding
                    } else if held.live.caught_up {
                        RunState::Live
                    } else {
                        RunState::CatchingUp
                    };
                    let head = head.max(held.live.position);
                    ProjectionStatus {
                        name: projection.name(),
                        state,
                        generation: held.live.generation,
                        position: held.live.position,
                        head,
                        lag: head - held.live.position,
                        rebuild: held.building.as_ref().map(|b| RebuildStatus {
                            generation: b.generation,
                            position: b.position,
                        }),
                        error: held.error.clone(),
                        parks_epoch: self.parks_epoch,
                    }
                }
                None => {
                    let position = self
                        .standby_positions
                        .get(projection.name())
                        .copied()
                        .unwrap_or(0);
                    let head = head.max(position);
                    ProjectionStatus {
                        name: projection.name(),
                        state: RunState::Standby,
                        generation: 0,
                        position,
                        head,
                        lag: head - position,
                        rebuild: None,
                        error: None,
                        parks_epoch: self.parks_epoch,
                    }
                }
            })
            .collect::<Vec<_>>();
        self.status_tx.send_if_modified(|current| {
            let changed = *current != statuses;
            if changed {
                *current = statuses;
            }
            changed
        });
    }
}

fn lane_index(lane: LaneRef) -> usize {
    match lane {
        LaneRef::Live(i) | LaneRef::Building(i) => i,
    }
}
