//! `crm-replay import FILE|- [--tenant T] [--batch N]`: appends JSON Lines events in batches,
//! each batch one `EventStore::append_batch` transaction (all of it or nothing).
//!
//! Two line formats, told apart by their members:
//! - the export format (`crm-replay export`: `tenant`, `stream_id`, `event_id`, `event_type`,
//!   `schema_version`, `data`, `metadata`, `occurred_at`; `revision` and `hash` are
//!   ignored, the store assigns its own; an event that lands at its exported `position`
//!   keeps its `recorded_at`, so restoring a whole export into an empty store gives the
//!   same chains and a byte-identical re-export). The data is checked
//!   against the catalog (upcast, then parsed) and must belong to the line's `stream_id`; it
//!   is stored as it was (canonical JSON), at its schema version.
//! - the API's ingest format (`{"id"?, "type", "data", "occurred_at"?, "metadata"?}`), for
//!   the tenant given by `--tenant`: parsed, judged and appended by the very decision behind
//!   `POST /v1/events` (`crm_core::command`), so the same business rules hold (a second
//!   registration, a refund of an unknown order are refused, the line named). A line without
//!   an `id` gets one derived from the tenant, its line number and its text, so running the
//!   same file again finds the same ids. Exported lines are history: stored as recorded,
//!   without rule checks.
//!
//! Event ids are the store's idempotency keys, so an import run again (after it was killed,
//! or after it stopped at an invalid line that was then fixed) skips what is stored as
//! duplicates. A batch holds one tenant, one format (an API-format line among exported ones
//! starts a batch of its own: the API's decision appends it) and distinct ids; every line of
//! a batch is checked before the batch is appended, so an invalid line stops the import
//! before its batch, with the batches before it written. Lines are read and checked on a thread of their own while
//! the previous batch is being appended.
//!
//! Exit codes: 0 imported; 1 an invalid line or a refused append (`line N: ...` on stderr,
//! with how many events were written before); 2 the import could not run (no such file, bad
//! arguments, an unreadable input). Progress and the summary go to stderr; with `--json` the
//! summary is one JSON object on stdout.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use crm_core::command::{self, CommandError, StreamCache};
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::{MAX_EVENTS_PER_APPEND, StoreError};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Ctx;
use crate::output::outln;
use crate::progress::{Progress, human};
use batches::{Batch, Events, Item, read_batches};

mod batches;
mod lines;

/// Input buffer size.
const READ_BUFFER: usize = 1 << 20;

/// What the import did, for the summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    /// `imported`, `invalid` (a line was refused) or `failed` (the store refused a batch).
    status: &'static str,
    events: u64,
    new: u64,
    duplicates: u64,
    seconds: f64,
    events_per_second: f64,
    /// The line that stopped the import.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn run(ctx: &Ctx, file: &str, tenant: Option<String>, batch: usize) -> Result<ExitCode> {
    if batch == 0 || batch > MAX_EVENTS_PER_APPEND {
        bail!("--batch {batch}: give 1 to {MAX_EVENTS_PER_APPEND} events per transaction");
    }
    let tenant = tenant
        .map(|t| TenantId::parse(&t))
        .transpose()
        .context("--tenant")?;
    let input: Box<dyn BufRead + Send> = if file == "-" {
        Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin()))
    } else {
        let opened = File::open(file).with_context(|| format!("cannot open {file}"))?;
        Box::new(BufReader::with_capacity(READ_BUFFER, opened))
    };

    // A plain thread, not a runtime one: it may sit in a read of stdin when the import stops,
    // and the process must still be able to exit.
    let (items, mut received) = mpsc::channel::<Item>(2);
    std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || read_batches(input, tenant, batch, &items))
        .context("cannot start the reading thread")?;

    let mut progress = Progress::new("import", None);
    let mut summary = Summary {
        status: "imported",
        ..Summary::default()
    };
    let mut unreadable = None;
    let cache = StreamCache::default();
    while let Some(item) = received.recv().await {
        match item {
            Item::Batch(batch) => {
                if let Err((line, error)) = append(ctx, &cache, batch, &mut summary).await {
                    summary.status = "failed";
                    summary.line = line;
                    summary.error = Some(error);
                    break;
                }
                progress.set(summary.new + summary.duplicates);
            }
            Item::Invalid { line, reason } => {
                summary.status = "invalid";
                summary.line = Some(line);
                summary.error = Some(format!("line {line}: {reason}"));
                break;
            }
            Item::Unreadable(error) => {
                unreadable = Some(error);
                break;
            }
        }
    }
    drop(received);
    progress.finish();
    summary.events = progress.done();
    summary.seconds = progress.elapsed().as_secs_f64();
    summary.events_per_second = if summary.seconds > 0.0 {
        summary.events as f64 / summary.seconds
    } else {
        0.0
    };
    if let Some(error) = unreadable {
        eprintln!(
            "crm-replay: the import stopped; the whole batches before it are stored: {} events \
             ({} new, {} duplicates)",
            summary.events, summary.new, summary.duplicates
        );
        return Err(error);
    }
    report(ctx, &summary)?;
    Ok(if summary.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Appends one batch; on failure, the line to blame (if one can be) and the message.
async fn append(
    ctx: &Ctx,
    cache: &StreamCache,
    batch: Batch,
    summary: &mut Summary,
) -> Result<(), (Option<u64>, String)> {
    let events = match batch.events {
        Events::Restored(events) => events,
        Events::New(events) => {
            return match command::append(ctx.store.as_ref(), cache, &batch.tenant, &events).await {
                Ok(outcome) => {
                    summary.duplicates += outcome.duplicates as u64;
                    summary.new += outcome.appended as u64;
                    Ok(())
                }
                Err(error) => Err(refused(&batch.lines, &error)),
            };
        }
    };
    restore(ctx, batch.tenant, events, &batch.lines, summary).await
}

/// The line a refusal of the ingest decision names, and the message.
fn refused(lines: &[u64], error: &CommandError) -> (Option<u64>, String) {
    match error.refusal() {
        Some(refusal) => {
            let line = lines.get(refusal.index).copied();
            let message = format!("line {}: {}", line.unwrap_or_default(), refusal.detail());
            (line, message)
        }
        None => (
            None,
            format!(
                "the batch of lines {}-{} was refused: {error}",
                lines.first().copied().unwrap_or_default(),
                lines.last().copied().unwrap_or_default()
            ),
        ),
    }
}

/// Stores exported events as recorded (history: no rule is checked), skipping those already
/// stored with the same content.
async fn restore(
    ctx: &Ctx,
    tenant: TenantId,
    events: Vec<(StreamId, NewEvent)>,
    lines: &[u64],
    summary: &mut Summary,
) -> Result<(), (Option<u64>, String)> {
    let batch = RestoreBatch {
        tenant,
        events,
        lines,
    };
    let ids: Vec<Uuid> = batch.events.iter().map(|(_, e)| e.event_id).collect();
    let count = ids.len() as u64;
    // An id already stored must come back with the same data (as the API decides).
    let pairs: Vec<(StreamId, Uuid)> = batch
        .events
        .iter()
        .map(|(stream, event)| (stream.clone(), event.event_id))
        .collect();
    let failed = |error: StoreError| (None, format!("the store did not answer: {error}"));
    let stored = ctx
        .store
        .find_events(&batch.tenant, &pairs)
        .await
        .map_err(failed)?;
    let candidates: Vec<(usize, &_, &NewEvent)> = batch
        .events
        .iter()
        .enumerate()
        .filter_map(|(index, (stream, event))| {
            stored
                .iter()
                .find(|s| s.stream_id == *stream && s.event_id == event.event_id)
                .filter(|s| s.event_type == event.event_type)
                .map(|s| (index, s, event))
        })
        .collect();
    let other = crm_core::privacy::replays::sent_with_other_data(
        ctx.store.as_ref(),
        &batch.tenant,
        &candidates,
    )
    .await
    .map_err(failed)?;
    if let Some((index, (stream, event))) = other
        .first()
        .and_then(|&index| Some((index, batch.events.get(index)?)))
    {
        let line = batch.lines.get(index).copied();
        return Err((
            line,
            format!(
                "line {}: event id {} is already stored in stream {stream} with other data; an \
                 event id names one event",
                line.unwrap_or_default(),
                event.event_id
            ),
        ));
    }
    match ctx
        .store
        .append_batch(&batch.tenant, Vec::new(), batch.events)
        .await
    {
        Ok(outcome) => {
            let duplicates = outcome.events.iter().filter(|e| e.duplicate).count() as u64;
            summary.duplicates += duplicates;
            summary.new += count - duplicates;
            Ok(())
        }
        Err(error) => {
            let blamed = match &error {
                StoreError::EventIdReused { event_id, .. } => ids
                    .iter()
                    .position(|id| id == event_id)
                    .and_then(|i| batch.lines.get(i).copied()),
                _ => None,
            };
            let message = match blamed {
                Some(line) => format!("line {line}: {error}"),
                None => format!(
                    "the batch of lines {}-{} was refused: {error}",
                    batch.lines.first().copied().unwrap_or_default(),
                    batch.lines.last().copied().unwrap_or_default()
                ),
            };
            Err((blamed, message))
        }
    }
}

/// An exported batch being restored.
struct RestoreBatch<'a> {
    tenant: TenantId,
    events: Vec<(StreamId, NewEvent)>,
    lines: &'a [u64],
}

fn report(ctx: &Ctx, summary: &Summary) -> Result<()> {
    if let Some(error) = &summary.error {
        eprintln!("crm-replay: {error}");
    }
    if ctx.json {
        outln!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    let counts = format!(
        "{} events ({} new, {} duplicates)",
        summary.events, summary.new, summary.duplicates
    );
    if summary.error.is_some() {
        eprintln!(
            "crm-replay: the import stopped; the whole batches before it are stored: {counts}; \
             fix the input and run it again: what is stored is skipped as duplicates"
        );
    } else {
        eprintln!(
            "imported {counts} in {}, {:.0} events/s",
            human(Duration::from_secs_f64(summary.seconds)),
            summary.events_per_second
        );
    }
    Ok(())
}
