//! `crm-replay rebuild`: rebuilds read models from position 0, blue/green, safe while
//! `crm-api serve` runs on the same store.
//!
//! The work is the projection runner's own rebuild: this command marks the projections
//! (`bookkeeping::request_rebuild`), and whichever runner holds a projection's lease builds
//! generation N+1 beside the live one and swaps the views once it has caught up. That is the
//! serving process when one runs (this process's runner then waits on standby), or the
//! runner this command starts. A projection never started on the store has no generation to
//! replace: the runner here creates generation 1 and builds it from 0.
//!
//! Progress comes from the stored checkpoints, which show both cases alike. A projection is
//! done when its live generation is newer than before, no rebuild of it is in progress, and
//! its live tables have reached the head read at the start. Nothing moving for
//! [`STALL_TIMEOUT`] ends the command with an error. A tenant parked in a rebuilt read model
//! (one of its events could not be applied: `crm_projections::parking`) is listed with its
//! failure, and the command exits 1; the new generation parks it afresh, so a rebuild after a
//! fix also brings a parked tenant back.
//!
//! A read model is never rebuilt from a log that fails its chain: every chain is verified
//! first (`crm_core::store::verify_log`, as `crm-replay verify` runs it). On a break nothing is
//! requested, the command names the break and exits 1, and the live generations keep
//! answering. Events appended after that check come through the store's guarded append.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_core::envelope::Position;
use crm_core::store::{Scope, verify_log};
use crm_projections::bookkeeping::{self, StoredPosition};
use crm_projections::parking::{self, Failure};
use crm_projections::runner::{self, RunState, RunnerHandle, RunnerOptions};
use crm_projections::{Projection, ReadDb, all_projections, select_projections};
use serde::Serialize;

use crate::Ctx;
use crate::output::outln;
use crate::progress::{Progress, human};

/// How long the stored positions may stay unchanged before the command gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the stored positions are read.
const POLL: Duration = Duration::from_millis(200);

/// One projection's outcome.
#[derive(Debug, Serialize)]
struct Rebuilt {
    name: &'static str,
    /// The live generation before (0: never started on this store).
    generation_before: i64,
    generation: i64,
    position: Position,
    /// Whether this process built it (else the process holding its lease did).
    built_here: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    command: &'static str,
    projections: Vec<Rebuilt>,
    /// The head when the rebuild started: every rebuilt read model reached it.
    position: Position,
    seconds: f64,
    events_per_second: f64,
    /// Tenants parked in the rebuilt read models: an event of theirs could not be applied
    /// (exit 1; their events are replayed when the workers next start).
    parked: Vec<Failure>,
}

pub async fn run(ctx: &Ctx, projection: Option<String>, all: bool) -> Result<ExitCode> {
    let names = match (projection, all) {
        (Some(name), false) => vec![name],
        (None, true) => Vec::new(),
        _ => bail!(
            "name the projection to rebuild, or pass --all (known: {})",
            known_names()
        ),
    };
    let projections = select_projections(&names)?;
    let db = ReadDb::open(&ctx.url)
        .await
        .with_context(|| format!("cannot open the read models at {}", ctx.url.redacted()))?;
    let head = ctx
        .store
        .head_position()
        .await
        .context("cannot read the log's head")?;
    let report = verify_log(ctx.raw.as_ref(), &Scope::AllTenants, None)
        .await
        .context("cannot verify the log before rebuilding")?;
    if let Some(failure) = &report.first_failure {
        if ctx.json {
            outln!(
                "{}",
                serde_json::json!({"command": "rebuild", "rebuilt": false, "first_failure": failure})
            );
        }
        eprintln!(
            "crm-replay: rebuild refused, the log fails its chain: BROKEN: {failure}; the live \
             read models are unchanged"
        );
        return Ok(ExitCode::from(1));
    }
    let before = stored(&db).await?;
    for projection in &projections {
        // False when the projection was never started here: the runner below creates it.
        bookkeeping::request_rebuild(&db, projection.name())
            .await
            .with_context(|| format!("cannot request a rebuild of {}", projection.name()))?;
    }

    let started = Instant::now();
    let handle = runner::start(
        ctx.projection_store(),
        db.clone(),
        projections.clone(),
        RunnerOptions::default(),
    );
    let outcome = follow(&db, &handle, &projections, &before, head).await;
    let elapsed = started.elapsed();
    let shutdown = handle.shutdown().await;
    let (positions, built_here) = outcome?;
    shutdown.context("the projection runner failed")?;

    let parked: Vec<Failure> = parking::stored_failures(&db)
        .await
        .context("cannot read the parked tenants")?
        .into_iter()
        .filter(|f| projections.iter().any(|p| p.name() == f.projection))
        .collect();
    let seconds = elapsed.as_secs_f64();
    let summary = Summary {
        command: "rebuild",
        projections: projections
            .iter()
            .map(|p| {
                let now = positions.get(p.name());
                Rebuilt {
                    name: p.name(),
                    generation_before: before.get(p.name()).map_or(0, |s| s.generation),
                    generation: now.map_or(0, |s| s.generation),
                    position: now.map_or(0, |s| s.position),
                    built_here: built_here.contains(p.name()),
                }
            })
            .collect(),
        position: head,
        seconds,
        events_per_second: if seconds > 0.0 {
            head as f64 / seconds
        } else {
            0.0
        },
        parked,
    };
    if ctx.json {
        outln!("{}", serde_json::to_string(&summary)?);
    } else {
        let names: Vec<&str> = summary.projections.iter().map(|p| p.name).collect();
        let elsewhere = summary.projections.iter().any(|p| !p.built_here);
        outln!(
            "rebuilt {} to position {} in {} ({:.0} events/s){}",
            names.join(", "),
            head,
            human(elapsed),
            summary.events_per_second,
            if elsewhere {
                " by the process holding the projections"
            } else {
                ""
            }
        );
        for failure in &summary.parked {
            eprintln!(
                "tenant {} is parked in {}: the event at position {} could not be applied ({}); \
                 {} of its events wait",
                failure.tenant,
                failure.projection,
                failure.position,
                failure.error,
                failure.parked_events
            );
        }
    }
    if !summary.parked.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until every projection is rebuilt, showing progress; returns their final stored
/// state and which ones this process built.
async fn follow(
    db: &ReadDb,
    handle: &RunnerHandle,
    projections: &[Arc<dyn Projection>],
    before: &BTreeMap<String, StoredPosition>,
    head: Position,
) -> Result<(BTreeMap<String, StoredPosition>, BTreeSet<&'static str>)> {
    let mut progress = Progress::new("rebuild", Some(head));
    let mut built_here = BTreeSet::new();
    let mut last_seen: Option<BTreeMap<String, StoredPosition>> = None;
    let mut last_change = Instant::now();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let now = stored(db).await?;
        for status in handle.status() {
            if !matches!(status.state, RunState::Starting | RunState::Standby) {
                built_here.insert(status.name);
            }
        }
        let mut done = true;
        let mut reached = head;
        for projection in projections {
            let name = projection.name();
            let generation_before = before.get(name).map_or(0, |s| s.generation);
            let position = match now.get(name) {
                Some(s) if s.generation > generation_before => {
                    if s.rebuild_position.is_some() || s.position < head {
                        done = false;
                    }
                    s.position.min(s.rebuild_position.unwrap_or(s.position))
                }
                Some(s) => {
                    done = false;
                    s.rebuild_position.unwrap_or(0)
                }
                None => {
                    done = false;
                    0
                }
            };
            reached = reached.min(position);
        }
        progress.set(reached);
        if done {
            progress.finish();
            return Ok((now, built_here));
        }
        if last_seen.as_ref() != Some(&now) {
            last_seen = Some(now);
            last_change = Instant::now();
        } else if last_change.elapsed() >= STALL_TIMEOUT {
            progress.finish();
            let errors: Vec<String> = handle
                .status()
                .into_iter()
                .filter_map(|s| s.error.map(|e| format!("{}: {e}", s.name)))
                .collect();
            bail!(
                "the rebuild made no progress for {}{}; it stays requested, and whichever process \
                 runs the projections next (e.g. crm-api serve) finishes it",
                human(STALL_TIMEOUT),
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" (errors: {})", errors.join("; "))
                }
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut interrupt => {
                progress.finish();
                bail!(
                    "interrupted; the rebuild stays requested, and whichever process runs the \
                     projections next (e.g. crm-api serve) finishes it"
                );
            }
        }
    }
}

/// The stored state of every projection, by name.
async fn stored(db: &ReadDb) -> Result<BTreeMap<String, StoredPosition>> {
    Ok(bookkeeping::stored_positions(db)
        .await
        .context("cannot read the projections' positions")?
        .into_iter()
        .map(|s| (s.projection.clone(), s))
        .collect())
}

fn known_names() -> String {
    all_projections()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}
