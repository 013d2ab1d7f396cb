//! The reading side of an import: lines read and checked on a thread of their own, grouped
//! into batches (one tenant, one kind of line, distinct ids, at most `--batch` events), each
//! handed to the appender once all its lines are checked.

use std::collections::HashSet;
use std::io::BufRead;

use crm_core::command::Incoming;
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::lines::{Event, parse_line, trim_line_end};

/// Lines for one append: one tenant, one kind, distinct ids.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) tenant: TenantId,
    pub(super) events: Events,
    /// The line number of each event.
    pub(super) lines: Vec<u64>,
}

/// A batch's events: exported ones (stored as recorded) or the API's (judged).
#[derive(Debug)]
pub(super) enum Events {
    Restored(Vec<(StreamId, NewEvent)>),
    New(Vec<Incoming>),
}

impl Events {
    fn len(&self) -> usize {
        match self {
            Events::Restored(events) => events.len(),
            Events::New(events) => events.len(),
        }
    }

    /// Whether `event` may join this batch (batches hold one kind).
    fn takes(&self, event: &Event) -> bool {
        matches!(
            (self, event),
            (Events::Restored(_), Event::Restored(..)) | (Events::New(_), Event::New(_))
        )
    }

    fn push(&mut self, event: Event) {
        match (self, event) {
            (Events::Restored(events), Event::Restored(stream, event)) => {
                events.push((stream, event))
            }
            (Events::New(events), Event::New(incoming)) => events.push(*incoming),
            // Never: `takes` is asked first.
            (Events::Restored(_), Event::New(_)) | (Events::New(_), Event::Restored(..)) => {}
        }
    }

    fn starting_with(event: Event, capacity: usize) -> Events {
        match event {
            Event::Restored(stream, event) => {
                let mut events = Vec::with_capacity(capacity);
                events.push((stream, event));
                Events::Restored(events)
            }
            Event::New(incoming) => {
                let mut events = Vec::with_capacity(capacity);
                events.push(*incoming);
                Events::New(events)
            }
        }
    }
}

/// What the reading thread hands to the appender, in input order.
#[derive(Debug)]
pub(super) enum Item {
    Batch(Batch),
    /// The input stops here: this line is invalid (nothing of its batch is handed over).
    Invalid {
        line: u64,
        reason: String,
    },
    /// The input could not be read.
    Unreadable(anyhow::Error),
}

/// The reading thread: reads and checks lines, groups them into batches and hands each batch
/// over once all its lines are checked. Stops at the first invalid line, at the end of the
/// input, or when the appender has gone.
pub(super) fn read_batches(
    mut input: Box<dyn BufRead + Send>,
    tenant: Option<TenantId>,
    batch_size: usize,
    items: &mpsc::Sender<Item>,
) {
    let mut buffer = Vec::with_capacity(4096);
    let mut number = 0u64;
    let mut current: Option<Batch> = None;
    let mut ids: HashSet<Uuid> = HashSet::with_capacity(batch_size);
    loop {
        buffer.clear();
        match input.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                let error = anyhow::Error::new(error)
                    .context(format!("cannot read line {} of the input", number + 1));
                let _ = items.blocking_send(Item::Unreadable(error));
                return;
            }
        }
        number += 1;
        let text = trim_line_end(&buffer);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = match parse_line(number, text, tenant.as_ref()) {
            Ok(line) => line,
            Err(reason) => {
                let _ = items.blocking_send(Item::Invalid {
                    line: number,
                    reason,
                });
                return;
            }
        };
        // A new batch on another tenant, when full, or when the id is already in this one
        // (the store refuses an id twice in one call; apart, the second is a duplicate or,
        // in another stream, another event).
        let full = current.as_ref().is_some_and(|batch| {
            batch.tenant != line.tenant
                || batch.events.len() >= batch_size
                || !batch.events.takes(&line.event)
                || ids.contains(&line.event.id())
        });
        if full && let Some(batch) = current.take() {
            ids.clear();
            if items.blocking_send(Item::Batch(batch)).is_err() {
                return;
            }
        }
        ids.insert(line.event.id());
        match current.as_mut() {
            Some(batch) => {
                batch.events.push(line.event);
                batch.lines.push(number);
            }
            None => {
                let mut lines = Vec::with_capacity(batch_size);
                lines.push(number);
                current = Some(Batch {
                    tenant: line.tenant,
                    events: Events::starting_with(line.event, batch_size),
                    lines,
                });
            }
        }
    }
    if let Some(batch) = current {
        let _ = items.blocking_send(Item::Batch(batch));
    }
}
