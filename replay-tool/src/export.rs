//! `crm-replay export`: the log as JSON Lines, one [`RecordedEvent`] per line with its full
//! envelope (tenant, stream_id, revision, position, event_id, event_type, schema_version,
//! data, metadata, occurred_at, recorded_at, hash), in position order.
//!
//! `--from N` exports positions above N, `--to N` up to and including N; without `--to` the
//! export ends at the head as it stood when it started, so a busy log cannot keep it running.
//! The log is read in batches through `EventStore::read_all`, one batch ahead of the writer
//! (a blocking thread with a buffered writer), so memory stays flat whatever the log's size.
//! A reader that closes the pipe early (`| head`) ends the export quietly with exit 0.
//!
//! The summary goes to stderr (stdout is the data), or with `--json` and `--out` as one JSON
//! object on stdout.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use crm_core::catalog::EventTypeInfo;
use crm_core::envelope::{Position, RecordedEvent, TenantId};
use crm_core::store::Scope;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::Ctx;
use crate::output::outln;
use crate::progress::{Progress, human};

/// Events per `read_all` call.
const READ_BATCH: usize = 2_000;
/// Size of the output buffer.
const WRITE_BUFFER: usize = 1 << 20;

/// What the export wrote, for the summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    events: u64,
    first_position: Option<Position>,
    last_position: Option<Position>,
    seconds: f64,
    events_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<PathBuf>,
}

/// Where the lines go.
#[derive(Debug)]
enum Sink {
    Stdout(io::Stdout),
    File(File),
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(bytes),
            Sink::File(file) => file.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File(file) => file.flush(),
        }
    }
}

/// How the writer thread ended.
enum Written {
    Done(Summary),
    /// The reader of stdout went away: stop quietly.
    BrokenPipe,
}

pub async fn run(
    ctx: &Ctx,
    tenant: Option<String>,
    from: Option<Position>,
    to: Option<Position>,
    types: Vec<String>,
    out: Option<PathBuf>,
    force: bool,
) -> Result<ExitCode> {
    let scope = match &tenant {
        Some(tenant) => Scope::Tenant(TenantId::parse(tenant).context("--tenant")?),
        None => Scope::AllTenants,
    };
    let after = from.unwrap_or(0);
    if let Some(to) = to
        && to < after
    {
        bail!("--to {to} is below --from {after}: the range is empty");
    }
    for event_type in &types {
        if EventTypeInfo::find(event_type).is_none() {
            eprintln!(
                "crm-replay: warning: --type {event_type:?} is not in the event catalog; \
                 only events stored under exactly that name are exported"
            );
        }
    }
    let types: HashSet<String> = types.into_iter().collect();
    let head = ctx
        .store
        .head_position()
        .await
        .context("cannot read the log's head position")?;
    let end = to.map_or(head, |to| to.min(head));
    // Positions are gap-free across tenants: without filters, events = positions.
    let total = (tenant.is_none() && types.is_empty()).then(|| end.saturating_sub(after));

    let sink = match &out {
        Some(path) => Sink::File(crate::outfile::create(path, force, &ctx.url, "--out")?),
        None => Sink::Stdout(io::stdout()),
    };
    let (batches, received) = mpsc::channel::<Vec<RecordedEvent>>(2);
    let out_path = out.clone();
    let writer =
        tokio::task::spawn_blocking(move || write_events(sink, received, types, total, out_path));

    // Read one batch ahead of the writer; stop at `end`, or when the writer has gone.
    let mut position = after;
    let mut read_error = None;
    while position < end {
        let batch = match ctx.store.read_all(&scope, position, READ_BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                read_error = Some(
                    anyhow::Error::new(error)
                        .context(format!("cannot read the log after position {position}")),
                );
                break;
            }
        };
        let Some(last) = batch.last() else { break };
        position = last.position;
        let batch: Vec<RecordedEvent> = batch.into_iter().filter(|e| e.position <= end).collect();
        if batch.is_empty() || batches.send(batch).await.is_err() {
            break;
        }
    }
    drop(batches);
    let written = writer.await.context("the export writer failed")?;
    if let Some(error) = read_error {
        return Err(error);
    }
    let summary = match written {
        Ok(Written::Done(summary)) => summary,
        Ok(Written::BrokenPipe) => return Ok(ExitCode::SUCCESS),
        Err(error) => return Err(error),
    };
    report(ctx, &summary)?;
    Ok(ExitCode::SUCCESS)
}

/// The writer thread: serialises each batch into one buffer and writes it.
fn write_events(
    sink: Sink,
    mut batches: mpsc::Receiver<Vec<RecordedEvent>>,
    types: HashSet<String>,
    total: Option<u64>,
    out: Option<PathBuf>,
) -> Result<Written> {
    let to_file = out.is_some();
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, sink);
    let mut progress = Progress::new("export", total);
    let mut summary = Summary {
        out,
        ..Summary::default()
    };
    let mut buffer = Vec::with_capacity(WRITE_BUFFER);
    while let Some(batch) = batches.blocking_recv() {
        buffer.clear();
        let mut written = 0;
        for event in &batch {
            if !types.is_empty() && !types.contains(&event.event_type) {
                continue;
            }
            serde_json::to_writer(&mut buffer, event).with_context(|| {
                format!("cannot serialise the event at position {}", event.position)
            })?;
            buffer.push(b'\n');
            summary.first_position.get_or_insert(event.position);
            summary.last_position = Some(event.position);
            written += 1;
        }
        if let Err(error) = writer.write_all(&buffer) {
            return write_failed(error, to_file);
        }
        summary.events += written;
        progress.advance(if total.is_some() {
            batch.len() as u64
        } else {
            written
        });
    }
    if let Err(error) = writer.flush() {
        return write_failed(error, to_file);
    }
    if let Sink::File(file) = writer.get_ref()
        && file.metadata().is_ok_and(|m| m.is_file())
    {
        // Durable before the summary says it is done (a device such as /dev/null has no
        // disk to sync to).
        file.sync_all().context("cannot write the export file")?;
    }
    progress.finish();
    summary.seconds = progress.elapsed().as_secs_f64();
    summary.events_per_second = if summary.seconds > 0.0 {
        summary.events as f64 / summary.seconds
    } else {
        0.0
    };
    Ok(Written::Done(summary))
}

fn write_failed(error: io::Error, to_file: bool) -> Result<Written> {
    if error.kind() == io::ErrorKind::BrokenPipe && !to_file {
        return Ok(Written::BrokenPipe);
    }
    Err(anyhow::Error::new(error).context(if to_file {
        "cannot write the export file"
    } else {
        "cannot write to stdout"
    }))
}

fn report(ctx: &Ctx, summary: &Summary) -> Result<()> {
    if ctx.json {
        let line = serde_json::to_string(summary)?;
        // stdout is the data unless the export went to a file.
        if summary.out.is_some() {
            outln!("{line}");
        } else {
            eprintln!("{line}");
        }
        return Ok(());
    }
    let elapsed = human(std::time::Duration::from_secs_f64(summary.seconds));
    let range = match (summary.first_position, summary.last_position) {
        (Some(first), Some(last)) => format!(" (positions {first}-{last})"),
        _ => String::new(),
    };
    eprintln!(
        "exported {} events{range} in {elapsed}, {:.0} events/s",
        summary.events, summary.events_per_second
    );
    Ok(())
}
