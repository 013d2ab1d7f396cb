//! Append planning, shared by every backend: given the stream's head and which ids are
//! already stored, decide what an append call writes (or why it is refused) and compute the
//! rows with their positions and chain hashes. Pure: the backends do the I/O around it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::{NewEvent, Position, StreamId, TenantId};
use crate::store::chain::{ChainFields, GENESIS, event_hash};
use crate::store::{
    AppendOutcome, AppendedEvent, ExpectedRevision, MAX_EVENTS_PER_APPEND, StoreError,
};

/// Largest data or metadata document of one event, in bytes.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// An event id that is already in the store, and where.
#[derive(Debug, Clone)]
pub(crate) struct ExistingEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    pub event_type: String,
    pub revision: u64,
    pub position: Position,
}

/// One row to insert, fully computed.
#[derive(Debug)]
pub(crate) struct Row {
    pub position: Position,
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: String,
    pub metadata: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

/// What an append call does.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Rows to insert, in revision order; empty when every event was a duplicate.
    pub rows: Vec<Row>,
    pub outcome: AppendOutcome,
    /// The stream's new head (revision, hash) when rows are written.
    pub new_head: Option<(u64, [u8; 32])>,
}

/// Checks an append call's shape before any I/O.
pub(crate) fn validate_batch(events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
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
    for (index, event) in events.iter().enumerate() {
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

/// Decides an append. `head_position` is the log's head, `stream_head` the stream's last
/// (revision, hash), `existing` the call's ids already stored in this stream.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_append(
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: &[NewEvent],
    head_position: Position,
    stream_head: Option<(u64, [u8; 32])>,
    existing: Vec<ExistingEvent>,
    recorded_at: DateTime<Utc>,
) -> Result<Plan, StoreError> {
    let existing: HashMap<Uuid, ExistingEvent> =
        existing.into_iter().map(|e| (e.event_id, e)).collect();
    for event in events {
        if let Some(stored) = existing.get(&event.event_id)
            && (stored.stream_id != stream.as_str() || stored.event_type != event.event_type)
        {
            return Err(StoreError::EventIdReused {
                event_id: event.event_id,
                stored_stream: stored.stream_id.clone(),
                stored_type: stored.event_type.clone(),
            });
        }
    }

    let current = stream_head.map(|(revision, _)| revision);
    let any_new = events.iter().any(|e| !existing.contains_key(&e.event_id));
    if any_new {
        let ok = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => current.is_none(),
            ExpectedRevision::StreamExists => current.is_some(),
            ExpectedRevision::Exact(revision) => current == Some(revision),
        };
        if !ok {
            return Err(StoreError::WrongExpectedRevision {
                stream: stream.as_str().to_owned(),
                expected,
                actual: current,
            });
        }
    }

    let recorded_micros = recorded_at.timestamp_micros();
    let mut previous_hash = stream_head.map_or(GENESIS, |(_, hash)| hash);
    let mut next_revision = current.map_or(0, |r| r + 1);
    let mut next_position = head_position + 1;
    let mut rows = Vec::new();
    let mut appended = Vec::with_capacity(events.len());
    for event in events {
        if let Some(stored) = existing.get(&event.event_id) {
            appended.push(AppendedEvent {
                event_id: event.event_id,
                revision: stored.revision,
                position: stored.position,
                duplicate: true,
            });
            continue;
        }
        let occurred_at = event.occurred_at.unwrap_or(recorded_at);
        let data = event.data.get().to_owned();
        let metadata = event.metadata.get().to_owned();
        let hash = event_hash(
            &previous_hash,
            &ChainFields {
                tenant: tenant.as_str(),
                stream_id: stream.as_str(),
                revision: next_revision,
                position: next_position,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                data: &data,
                metadata: &metadata,
                occurred_at_micros: occurred_at.timestamp_micros(),
                recorded_at_micros: recorded_micros,
            },
        );
        appended.push(AppendedEvent {
            event_id: event.event_id,
            revision: next_revision,
            position: next_position,
            duplicate: false,
        });
        rows.push(Row {
            position: next_position,
            revision: next_revision,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data,
            metadata,
            occurred_at,
            recorded_at,
            hash,
        });
        previous_hash = hash;
        next_revision += 1;
        next_position += 1;
    }

    let new_head = rows.last().map(|row| (row.revision, row.hash));
    let stream_revision = new_head
        .map(|(revision, _)| revision)
        .or(current)
        .unwrap_or_else(|| appended.iter().map(|e| e.revision).max().unwrap_or(0));
    let last_position = appended.iter().map(|e| e.position).max().unwrap_or(0);
    Ok(Plan {
        rows,
        outcome: AppendOutcome {
            stream_id: stream.clone(),
            events: appended,
            stream_revision,
            last_position,
        },
        new_head,
    })
}
