//! Append planning, shared by every backend: given the log head, the heads of the call's
//! streams and which of its ids are already stored, decide what an append call writes (or
//! why it is refused) and compute the rows with their positions and chain hashes. Pure: the
//! backends do the I/O around it.
//!
//! Every append is a [`Batch`] of one or more streams; a single-stream append is a batch of
//! one stream, so there is one way to plan, hash and write.

use std::collections::HashMap;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, StreamId, TenantId};
use crate::store::chain::{ChainFields, GENESIS, event_hash};
use crate::store::{
    AppendOutcome, AppendedEvent, BatchOutcome, ExpectedRevision, MAX_EVENTS_PER_APPEND,
    StoreError, StreamExpectation,
};

/// Largest data or metadata document of one event, in bytes.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A stream's last (revision, hash).
pub(crate) type Head = (u64, [u8; 32]);

/// An event id that is already in the store, and where.
#[derive(Debug, Clone)]
pub(crate) struct ExistingEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    pub event_type: String,
    pub revision: u64,
    pub position: Position,
}

/// One stream of a batch.
#[derive(Debug)]
pub(crate) struct BatchStream {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    /// A stream the call writes nothing to, named only by an expectation: its expectation
    /// guards the call (it must hold when the call writes anything new).
    pub guard: bool,
}

/// An append call, validated: its distinct streams in order of first appearance, and its
/// events in the order given, each with the index of its stream in `streams`.
#[derive(Debug)]
pub(crate) struct Batch {
    pub streams: Vec<BatchStream>,
    pub events: Vec<(usize, NewEvent)>,
    /// Key-table changes committed with the events (only if something new is written).
    pub keys: crate::store::keys::KeyOps,
}

impl Batch {
    /// Checks an append call's shape before any I/O (see [`crate::store::EventStore::append_batch`]
    /// for what is refused) and groups its events by stream.
    pub(crate) fn new(
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
    ) -> Result<Batch, StoreError> {
        validate_events(events.iter().map(|(_, event)| event))?;
        let mut index: HashMap<StreamId, usize> = HashMap::new();
        let mut streams: Vec<BatchStream> = Vec::new();
        let mut grouped = Vec::with_capacity(events.len());
        let mut previous: Option<usize> = None;
        for (stream, event) in events {
            // Runs of one stream are the common case: compare before hashing.
            let known = match previous {
                Some(i) if streams[i].stream == stream => Some(i),
                _ => index.get(&stream).copied(),
            };
            let i = match known {
                Some(i) => i,
                None => {
                    index.insert(stream.clone(), streams.len());
                    streams.push(BatchStream {
                        stream,
                        expected: ExpectedRevision::Any,
                        guard: false,
                    });
                    streams.len() - 1
                }
            };
            previous = Some(i);
            grouped.push((i, event));
        }
        let mut has_expectation = vec![false; streams.len()];
        for StreamExpectation { stream, expected } in expectations {
            let i = match index.get(&stream) {
                Some(&i) => i,
                None => {
                    // A stream without events: a guard, read with the others in the call's
                    // transaction. `Any` guards nothing.
                    index.insert(stream.clone(), streams.len());
                    streams.push(BatchStream {
                        stream: stream.clone(),
                        expected,
                        guard: true,
                    });
                    has_expectation.push(false);
                    streams.len() - 1
                }
            };
            if std::mem::replace(&mut has_expectation[i], true) {
                return Err(StoreError::InvalidInput(format!(
                    "stream {stream} has more than one expectation in the call"
                )));
            }
            streams[i].expected = expected;
        }
        Ok(Batch {
            streams,
            events: grouped,
            keys: Default::default(),
        })
    }
}

/// One row to insert, fully computed; the event's own fields are borrowed from the batch.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    /// The row's stream, as an index into [`Batch::streams`].
    pub stream: usize,
    pub position: Position,
    pub revision: u64,
    pub event: &'a NewEvent,
    pub occurred_at: DateTime<Utc>,
    /// The batch's recording time, or the restored one (see [`NewEvent::restore`]).
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

/// A stream's head after an append that wrote to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewHead {
    /// An index into [`Batch::streams`].
    pub stream: usize,
    pub revision: u64,
    pub hash: [u8; 32],
}

/// What an append call does.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// Rows to insert, in position order; empty when every event was a duplicate.
    pub rows: Vec<Row<'a>>,
    /// The new head of each stream that gets rows, in stream order.
    pub new_heads: Vec<NewHead>,
    /// When every row was recorded.
    pub recorded_at: DateTime<Utc>,
    pub outcome: BatchOutcome,
}

/// Checks the events of an append call before any I/O.
fn validate_events<'a>(
    events: impl ExactSizeIterator<Item = &'a NewEvent>,
) -> Result<(), StoreError> {
    if events.len() == 0 {
        return Err(StoreError::InvalidInput(
            "an append needs at least one event".into(),
        ));
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::InvalidInput(format!(
            "an append may carry at most {MAX_EVENTS_PER_APPEND} events, got {}",
            events.len()
        )));
    }
    let mut seen = HashSet::with_capacity(events.len());
    for (index, event) in events.enumerate() {
        if !seen.insert(event.event_id) {
            return Err(StoreError::InvalidInput(format!(
                "event {index}: id {} appears more than once in the call",
                event.event_id
            )));
        }
        if !is_valid_event_type(&event.event_type) {
            return Err(StoreError::InvalidInput(format!(
                "event {index}: type {:?} must be 1 to 100 letters, digits, '_' or '.', starting with a letter",
                event.event_type.chars().take(100).collect::<String>()
            )));
        }
        if event.schema_version == 0 {
            return Err(StoreError::InvalidInput(format!(
                "event {index}: schema version starts at 1"
            )));
        }
        if event.data.get().len() > MAX_EVENT_BYTES || event.metadata.get().len() > MAX_EVENT_BYTES
        {
            return Err(StoreError::InvalidInput(format!(
                "event {index}: data and metadata are limited to {MAX_EVENT_BYTES} bytes each"
            )));
        }
    }
    Ok(())
}

fn is_valid_event_type(event_type: &str) -> bool {
    event_type.len() <= 100
        && event_type
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && event_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Decides an append. `head_position` is the log's head, `stream_heads` each batch stream's
/// last (revision, hash) (indexed as [`Batch::streams`]), `existing` the call's ids already
/// stored in the batch's streams. Rows of `existing` whose stream is not the stream the call
/// gives that id are ignored (an id in another stream is another event), so a backend may
/// read them with a query that over-matches.
pub(crate) fn plan_append<'a>(
    tenant: &TenantId,
    batch: &'a Batch,
    head_position: Position,
    stream_heads: &[Option<Head>],
    existing: Vec<ExistingEvent>,
    recorded_at: DateTime<Utc>,
) -> Result<Plan<'a>, StoreError> {
    debug_assert_eq!(stream_heads.len(), batch.streams.len());
    let head_of = |stream: usize| stream_heads.get(stream).copied().flatten();

    // Which events are already stored, by event index; no look-up at all when none are.
    let mut stored: Vec<Option<ExistingEvent>> = Vec::new();
    if !existing.is_empty() {
        let by_id: HashMap<Uuid, usize> = batch
            .events
            .iter()
            .enumerate()
            .map(|(index, (_, event))| (event.event_id, index))
            .collect();
        stored.resize_with(batch.events.len(), || None);
        for row in existing {
            if let Some(&index) = by_id.get(&row.event_id)
                && batch.streams[batch.events[index].0].stream.as_str() == row.stream_id
            {
                stored[index] = Some(row);
            }
        }
    }
    let stored_at = |index: usize| stored.get(index).and_then(Option::as_ref);

    let mut any_new = vec![false; batch.streams.len()];
    for (index, (stream, event)) in batch.events.iter().enumerate() {
        match stored_at(index) {
            Some(row) if row.event_type != event.event_type => {
                return Err(StoreError::EventIdReused {
                    event_id: event.event_id,
                    stored_stream: row.stream_id.clone(),
                    stored_type: row.event_type.clone(),
                });
            }
            Some(_) => {}
            None => any_new[*stream] = true,
        }
    }
    // Guards hold whenever the call writes anything new (a call of duplicates writes
    // nothing and guards nothing).
    let writes = any_new.iter().any(|new| *new);
    for (index, stream) in batch.streams.iter().enumerate() {
        let checked = any_new[index] || (stream.guard && writes);
        if !checked {
            continue;
        }
        let current = head_of(index).map(|(revision, _)| revision);
        let ok = match stream.expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => current.is_none(),
            ExpectedRevision::StreamExists => current.is_some(),
            ExpectedRevision::Exact(revision) => current == Some(revision),
        };
        if !ok {
            return Err(StoreError::WrongExpectedRevision {
                stream: stream.stream.as_str().to_owned(),
                expected: stream.expected,
                actual: current,
            });
        }
    }

    /// A stream's state while its events are planned.
    struct Chain {
        previous_hash: [u8; 32],
        next_revision: u64,
        events: Vec<AppendedEvent>,
    }
    let mut chains: Vec<Chain> = (0..batch.streams.len())
        .map(|index| Chain {
            previous_hash: head_of(index).map_or(GENESIS, |(_, hash)| hash),
            next_revision: head_of(index).map_or(0, |(revision, _)| revision + 1),
            events: Vec::new(),
        })
        .collect();
    let mut next_position = head_position + 1;
    let mut rows = Vec::new();
    let mut appended = Vec::with_capacity(batch.events.len());
    for (index, (stream, event)) in batch.events.iter().enumerate() {
        let chain = &mut chains[*stream];
        if let Some(row) = stored_at(index) {
            let duplicate = AppendedEvent {
                event_id: event.event_id,
                revision: row.revision,
                position: row.position,
                duplicate: true,
            };
            appended.push(duplicate);
            chain.events.push(duplicate);
            continue;
        }
        let row_recorded_at = match event.restore {
            Some(restore) if restore.position == next_position => {
                crate::envelope::to_stored_precision(restore.recorded_at)
            }
            _ => recorded_at,
        };
        let occurred_at = event.occurred_at.unwrap_or(row_recorded_at);
        let hash = event_hash(
            &chain.previous_hash,
            &ChainFields {
                tenant: tenant.as_str(),
                stream_id: batch.streams[*stream].stream.as_str(),
                revision: chain.next_revision,
                position: next_position,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                data: event.data.get(),
                metadata: event.metadata.get(),
                occurred_at_micros: occurred_at.timestamp_micros(),
                recorded_at_micros: row_recorded_at.timestamp_micros(),
            },
        );
        let new = AppendedEvent {
            event_id: event.event_id,
            revision: chain.next_revision,
            position: next_position,
            duplicate: false,
        };
        appended.push(new);
        chain.events.push(new);
        rows.push(Row {
            stream: *stream,
            position: next_position,
            revision: chain.next_revision,
            event,
            occurred_at,
            recorded_at: row_recorded_at,
            hash,
        });
        chain.previous_hash = hash;
        chain.next_revision += 1;
        next_position += 1;
    }

    let mut new_heads = Vec::new();
    let mut streams = Vec::with_capacity(batch.streams.len());
    for (index, chain) in chains.into_iter().enumerate() {
        if batch.streams[index].guard {
            continue;
        }
        let current = head_of(index).map(|(revision, _)| revision);
        let stream_revision = if any_new[index] {
            let revision = chain.next_revision - 1;
            new_heads.push(NewHead {
                stream: index,
                revision,
                hash: chain.previous_hash,
            });
            revision
        } else {
            current.unwrap_or_else(|| chain.events.iter().map(|e| e.revision).max().unwrap_or(0))
        };
        let last_position = chain.events.iter().map(|e| e.position).max().unwrap_or(0);
        streams.push(AppendOutcome {
            stream_id: batch.streams[index].stream.clone(),
            events: chain.events,
            stream_revision,
            last_position,
        });
    }
    let last_position = appended.iter().map(|e| e.position).max().unwrap_or(0);
    Ok(Plan {
        rows,
        new_heads,
        recorded_at,
        outcome: BatchOutcome {
            events: appended,
            streams,
            last_position,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamId {
        StreamId::parse(name).expect("stream id")
    }

    fn event(n: u32) -> NewEvent {
        NewEvent::new("NoteAdded", &serde_json::json!({ "n": n }))
    }

    fn batch_of(streams: &[&str], expectations: &[(&str, ExpectedRevision)]) -> Batch {
        let events = streams
            .iter()
            .enumerate()
            .map(|(n, s)| (stream(s), event(n as u32)))
            .collect();
        let expectations = expectations
            .iter()
            .map(|(s, e)| StreamExpectation::new(stream(s), *e))
            .collect();
        Batch::new(expectations, events).expect("valid batch")
    }

    fn plan<'a>(
        batch: &'a Batch,
        head_position: Position,
        heads: &[Option<Head>],
        existing: Vec<ExistingEvent>,
    ) -> Result<Plan<'a>, StoreError> {
        let tenant = TenantId::parse("t").expect("tenant");
        plan_append(&tenant, batch, head_position, heads, existing, Utc::now())
    }

    #[test]
    fn interleaved_streams_take_positions_in_input_order_and_chain_per_stream() {
        let batch = batch_of(&["a-1", "b-1", "a-1"], &[]);
        assert_eq!(batch.streams.len(), 2);
        let a_head = (4, [7u8; 32]);
        let planned = plan(&batch, 10, &[Some(a_head), None], Vec::new()).expect("plan");
        let shape: Vec<_> = planned
            .rows
            .iter()
            .map(|r| (r.stream, r.revision, r.position))
            .collect();
        assert_eq!(shape, [(0, 5, 11), (1, 0, 12), (0, 6, 13)]);
        // Each row's hash continues its own stream's chain.
        let tenant = TenantId::parse("t").expect("tenant");
        let recorded = planned.recorded_at;
        let expected_hash = |previous: &[u8; 32], row: &Row<'_>| {
            event_hash(
                previous,
                &ChainFields {
                    tenant: tenant.as_str(),
                    stream_id: batch.streams[row.stream].stream.as_str(),
                    revision: row.revision,
                    position: row.position,
                    event_id: row.event.event_id,
                    event_type: &row.event.event_type,
                    schema_version: row.event.schema_version,
                    data: row.event.data.get(),
                    metadata: row.event.metadata.get(),
                    occurred_at_micros: row.occurred_at.timestamp_micros(),
                    recorded_at_micros: recorded.timestamp_micros(),
                },
            )
        };
        let rows = &planned.rows;
        assert_eq!(rows[0].hash, expected_hash(&a_head.1, &rows[0]));
        assert_eq!(rows[1].hash, expected_hash(&GENESIS, &rows[1]));
        assert_eq!(rows[2].hash, expected_hash(&rows[0].hash, &rows[2]));
        let heads: Vec<_> = planned
            .new_heads
            .iter()
            .map(|h| (h.stream, h.revision, h.hash))
            .collect();
        assert_eq!(heads, [(0, 6, rows[2].hash), (1, 0, rows[1].hash)]);

        let outcome = &planned.outcome;
        assert_eq!(
            outcome
                .events
                .iter()
                .map(|e| e.position)
                .collect::<Vec<_>>(),
            [11, 12, 13]
        );
        assert_eq!(outcome.streams[0].stream_id.as_str(), "a-1");
        assert_eq!(outcome.streams[0].stream_revision, 6);
        assert_eq!(outcome.streams[0].last_position, 13);
        assert_eq!(outcome.streams[1].events.len(), 1);
        assert_eq!(outcome.last_position, 13);
    }

    #[test]
    fn an_id_stored_in_another_stream_is_not_a_duplicate() {
        let batch = batch_of(&["a-1", "b-1"], &[]);
        let id = batch.events[0].1.event_id;
        let elsewhere = ExistingEvent {
            event_id: id,
            stream_id: "b-1".into(),
            event_type: "Other".into(),
            revision: 0,
            position: 1,
        };
        let planned = plan(&batch, 1, &[None, None], vec![elsewhere]).expect("plan");
        assert_eq!(planned.rows.len(), 2);
        assert!(planned.outcome.events.iter().all(|e| !e.duplicate));
    }

    #[test]
    fn a_stream_of_only_duplicates_skips_its_expectation_and_the_others_are_checked() {
        let batch = batch_of(
            &["a-1", "b-1"],
            &[
                ("a-1", ExpectedRevision::NoStream),
                ("b-1", ExpectedRevision::Exact(0)),
            ],
        );
        let stored = ExistingEvent {
            event_id: batch.events[0].1.event_id,
            stream_id: "a-1".into(),
            event_type: "NoteAdded".into(),
            revision: 0,
            position: 1,
        };
        let heads = [Some((0, [1u8; 32])), Some((0, [2u8; 32]))];
        let planned = plan(&batch, 2, &heads, vec![stored.clone()]).expect("plan");
        assert_eq!(planned.rows.len(), 1);
        assert_eq!(planned.rows[0].stream, 1);
        assert!(planned.outcome.events[0].duplicate);
        assert_eq!(planned.outcome.streams[0].stream_revision, 0);
        assert_eq!(planned.new_heads.len(), 1);

        let heads = [Some((0, [1u8; 32])), Some((3, [2u8; 32]))];
        let error = plan(&batch, 5, &heads, vec![stored]).expect_err("b-1 moved on");
        assert!(
            matches!(&error, StoreError::WrongExpectedRevision { stream, actual: Some(3), .. } if stream == "b-1"),
            "{error:?}"
        );
    }

    #[test]
    fn an_expectation_of_a_stream_without_events_guards_the_call() {
        let events = || vec![(stream("a-1"), event(0))];
        let guarded = Batch::new(
            vec![StreamExpectation::new(
                stream("b-1"),
                ExpectedRevision::Exact(2),
            )],
            events(),
        )
        .expect("a guard");
        assert_eq!(guarded.streams.len(), 2);
        assert!(guarded.streams[1].guard && !guarded.streams[0].guard);
        // b-1 still at revision 2: the call writes a-1 only, and reports a-1 only.
        let heads = [None, Some((2, [7; 32]))];
        let planned = plan(&guarded, 5, &heads, vec![]).expect("the guard holds");
        assert_eq!(planned.rows.len(), 1);
        assert_eq!(planned.new_heads.len(), 1);
        assert_eq!(planned.outcome.streams.len(), 1);
        assert_eq!(planned.outcome.streams[0].stream_id.as_str(), "a-1");
        // b-1 moved on: the call is refused, naming b-1.
        let moved = [None, Some((3, [7; 32]))];
        let error = plan(&guarded, 5, &moved, vec![]).expect_err("b-1 moved on");
        assert!(
            matches!(&error, StoreError::WrongExpectedRevision { stream, actual: Some(3), .. } if stream == "b-1"),
            "{error:?}"
        );
        // A guard expecting no stream fails once the stream exists.
        let absent = Batch::new(
            vec![StreamExpectation::new(
                stream("b-1"),
                ExpectedRevision::NoStream,
            )],
            events(),
        )
        .expect("a guard");
        assert!(plan(&absent, 5, &[None, None], vec![]).is_ok());
        assert!(plan(&absent, 5, &[None, Some((0, [7; 32]))], vec![]).is_err());
        let twice = Batch::new(
            vec![
                StreamExpectation::new(stream("a-1"), ExpectedRevision::Any),
                StreamExpectation::new(stream("a-1"), ExpectedRevision::NoStream),
            ],
            events(),
        )
        .expect_err("two expectations");
        assert!(matches!(twice, StoreError::InvalidInput(_)));
    }
}
