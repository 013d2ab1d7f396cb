//! `POST /v1/events`: a batch of events as emitters send them, validated whole, then appended
//! atomically (one transaction over every stream it touches) or not at all.
//!
//! For each event, in order: its shape (400/422, naming `events[i]` and the field), its
//! catalog schema (422), whether its id is already stored (then it is a duplicate: reported,
//! not written, not checked again), its `expected_revision` (409), and the rules of its
//! stream's aggregate given everything before it, in the log and earlier in the batch (409).
//! The streams' folded states are kept in a [`StreamCache`] between requests, and the append
//! expects exactly the revisions those states were folded to, so a concurrent writer (another
//! request, another process) can never slip an event between the check and the write: the
//! append fails, the stale streams are re-read, and the batch is checked again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_core::aggregates::StreamState;
use crm_core::catalog::{CatalogError, DomainEvent, upcast};
use crm_core::envelope::{EventMetadata, NewEvent, Position, StreamId, TenantId};
use crm_core::privacy::replays::sent_with_other_data;
use crm_core::store::{Direction, ExpectedRevision, StoreError, StreamExpectation, StreamStart};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::app::{AppState, SharedState};
use crate::extract::{Caller, read_json};
use crate::keys::Role;
use crate::problem::Problem;

/// Streams whose state is kept before the cache starts over.
const CACHED_STREAMS: usize = 200_000;
/// Times a batch is re-checked after losing a race with another writer.
const ATTEMPTS: usize = 4;
/// Namespace of the ids derived from an `Idempotency-Key`.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_6964_656d_706f_7465_6e63_7921);
const MEMBERS: &[&str] = &[
    "id",
    "type",
    "data",
    "occurred_at",
    "metadata",
    "expected_revision",
];

/// Lock stripes: a batch holds the stripes of its streams while it is checked and appended,
/// so batches of this process on the same stream take turns instead of racing (other
/// processes are caught by the append's expected revisions).
const STRIPES: usize = 64;

/// Each stream's folded state and revision (`None`: the stream does not exist), as of the
/// last append or read by this process, and the per-stream turns.
#[derive(Debug)]
pub struct StreamCache {
    streams: Mutex<HashMap<(TenantId, StreamId), Folded>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for StreamCache {
    fn default() -> Self {
        StreamCache {
            streams: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Folded {
    revision: Option<u64>,
    state: StreamState,
}

impl StreamCache {
    /// Takes the turns of every stream of a batch, in stripe order (so never deadlocks).
    async fn turns(
        &self,
        tenant: &TenantId,
        streams: &[&StreamId],
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash, Hasher};
        let mut stripes: Vec<usize> = streams
            .iter()
            .map(|stream| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                tenant.hash(&mut h);
                stream.hash(&mut h);
                (h.finish() % STRIPES as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }

    fn contains(&self, key: &(TenantId, StreamId)) -> bool {
        self.streams
            .lock()
            .is_ok_and(|streams| streams.contains_key(key))
    }

    /// Takes a stream's state out, without copying it: the batch holding the stream's turn
    /// evolves it and puts it back when its append succeeds. A batch that fails leaves the
    /// stream out, to be read again from the log by the next one.
    fn take(&self, key: &(TenantId, StreamId)) -> Option<Folded> {
        self.streams.lock().ok()?.remove(key)
    }

    fn put(&self, key: (TenantId, StreamId), folded: Folded) {
        if let Ok(mut streams) = self.streams.lock() {
            if streams.len() >= CACHED_STREAMS && !streams.contains_key(&key) {
                streams.clear();
            }
            streams.insert(key, folded);
        }
    }

    fn forget(&self, key: &(TenantId, StreamId)) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(key);
        }
    }
}

/// One event of the batch, parsed.
#[derive(Debug)]
struct Incoming {
    event: DomainEvent,
    stream: StreamId,
    new: NewEvent,
    expected: Option<ExpectedRevision>,
}

#[derive(Debug, Serialize)]
struct Appended {
    index: usize,
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'static str,
    stream: String,
    revision: u64,
    position: Position,
    duplicate: bool,
}

#[derive(Debug, Serialize)]
struct AppendAnswer {
    events: Vec<Appended>,
    appended: usize,
    duplicates: usize,
    /// The highest position among the batch's events: pass it as `min_position` to read
    /// your writes.
    last_position: Position,
}

/// `POST /v1/events`.
pub async fn append(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Ingest], "append events")?;
    let idempotency_key = idempotency_key(&headers)?;
    let value = read_json(&state, body).await?;
    let batch = parse_batch(
        &state,
        &value,
        &principal.tenant,
        &principal.key_id,
        idempotency_key,
    )?;
    let streams: Vec<&StreamId> = batch.iter().map(|e| &e.stream).collect();
    let _turns = state.streams.turns(&principal.tenant, &streams).await;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        match attempt(&state, &principal.tenant, &batch).await {
            Ok(answer) => return Ok(answered(&state, answer)),
            Err(Failed::Stale(stream)) => {
                state
                    .streams
                    .forget(&(principal.tenant.clone(), stream.clone()));
                last_error = Some(stream);
            }
            Err(Failed::Problem(problem)) => {
                if problem.status == StatusCode::CONFLICT {
                    state
                        .metrics
                        .append_conflicts
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Err(problem);
            }
        }
    }
    state
        .metrics
        .append_conflicts
        .fetch_add(1, Ordering::Relaxed);
    Err(Problem::conflict(format!(
        "stream {} kept changing while this batch was checked; retry",
        last_error.map(|s| s.to_string()).unwrap_or_default()
    )))
}

fn answered(state: &AppState, answer: AppendAnswer) -> Response {
    state
        .metrics
        .events_appended
        .fetch_add(answer.appended as u64, Ordering::Relaxed);
    state
        .metrics
        .events_duplicate
        .fetch_add(answer.duplicates as u64, Ordering::Relaxed);
    state.metrics.append_batches.fetch_add(1, Ordering::Relaxed);
    let status = if answer.appended > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let last = answer.last_position;
    let mut response = (status, axum::Json(answer)).into_response();
    if let Ok(value) = HeaderValue::from_str(&last.to_string()) {
        response.headers_mut().insert("crm-last-position", value);
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 200 {
        return Err(Problem::bad_request(
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Checks the batch's shape and every event's schema, before anything is read or written.
fn parse_batch(
    state: &AppState,
    value: &Value,
    tenant: &TenantId,
    key_id: &str,
    idempotency_key: Option<String>,
) -> Result<Vec<Incoming>, Problem> {
    let Some(object) = value.as_object() else {
        return Err(Problem::unprocessable(
            "the body must be an object: {\"events\": [...]}",
        ));
    };
    if let Some(other) = object.keys().find(|k| *k != "events") {
        return Err(Problem::unprocessable(format!(
            "unknown member {other:?} in the body; it holds only \"events\""
        )));
    }
    let Some(events) = object.get("events").and_then(Value::as_array) else {
        return Err(Problem::unprocessable(
            "events: missing or not an array; send {\"events\": [...]}",
        ));
    };
    if events.is_empty() {
        return Err(Problem::unprocessable("events: the batch is empty"));
    }
    let max = state.limits.max_batch_events;
    if events.len() > max {
        return Err(Problem::too_large(format!(
            "events: the batch has {} events; at most {max} are accepted per request \
             (--max-batch-events)",
            events.len()
        )));
    }
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(events.len());
    let mut batch = Vec::with_capacity(events.len());
    for (index, value) in events.iter().enumerate() {
        let derived = idempotency_key.as_deref().map(|key| {
            Uuid::new_v5(
                &IDEMPOTENCY_NAMESPACE,
                format!("{tenant}\n{key}\n{index}").as_bytes(),
            )
        });
        let incoming = parse_event(index, value, key_id, derived)?;
        if let Some(first) = seen.insert(incoming.new.event_id, index) {
            return Err(Problem::unprocessable(format!(
                "events[{index}].id: {} is also the id of events[{first}]; ids must be unique \
                 within a batch",
                incoming.new.event_id
            )));
        }
        batch.push(incoming);
    }
    Ok(batch)
}

fn parse_event(
    index: usize,
    value: &Value,
    key_id: &str,
    derived_id: Option<Uuid>,
) -> Result<Incoming, Problem> {
    let at = |member: &str, reason: String| {
        Problem::unprocessable(format!("events[{index}].{member}: {reason}"))
    };
    let Some(object) = value.as_object() else {
        return Err(Problem::unprocessable(format!(
            "events[{index}]: an event must be an object with type and data"
        )));
    };
    if let Some(other) = object.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(Problem::unprocessable(format!(
            "events[{index}]: unknown member {other:?}; an event has {}",
            MEMBERS.join(", ")
        )));
    }
    let event_type = match object.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(at("type", "must be a string".into())),
        None => return Err(at("type", "missing".into())),
    };
    let data = match object.get("data") {
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err(at("data", "must be an object".into())),
        None => return Err(at("data", "missing".into())),
    };
    let event = DomainEvent::parse(event_type, data).map_err(|error| match error {
        CatalogError::UnknownEventType { .. } => {
            at("type", format!("{error}; the catalog is in docs/events.md"))
        }
        _ => Problem::unprocessable(format!("events[{index}]: {error}")),
    })?;
    let id = match object.get("id") {
        None | Some(Value::Null) => derived_id.unwrap_or_else(Uuid::now_v7),
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|e| at("id", format!("{text:?} is not a UUID ({e})")))?
        }
        Some(_) => return Err(at("id", "must be a UUID string".into())),
    };
    let occurred_at = match object.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    at(
                        "occurred_at",
                        format!("{text:?} is not an RFC 3339 time ({e})"),
                    )
                })?,
        ),
        Some(_) => return Err(at("occurred_at", "must be an RFC 3339 string".into())),
    };
    let mut metadata: EventMetadata = match object.get("metadata") {
        None | Some(Value::Null) => EventMetadata::default(),
        Some(value @ Value::Object(_)) => {
            serde_json::from_value(value.clone()).map_err(|e| at("metadata", e.to_string()))?
        }
        Some(_) => return Err(at("metadata", "must be an object".into())),
    };
    if let Some(key) = metadata.unknown_key() {
        return Err(at("metadata", EventMetadata::unknown_key_message(key)));
    }
    if let Some((path, reason)) = metadata.unstorable_value() {
        return Err(Problem::unprocessable(format!(
            "events[{index}].{path}: {reason}"
        )));
    }
    // Which key appended the event, for auditors; never taken from the caller.
    metadata
        .extra
        .insert("api_key_id".into(), Value::String(key_id.to_owned()));
    let expected = match object.get("expected_revision") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(ExpectedRevision::Exact(n.as_u64().ok_or_else(|| {
            at(
                "expected_revision",
                format!("{n} is not a revision (an integer from 0)"),
            )
        })?)),
        Some(Value::String(s)) if s == "no_stream" => Some(ExpectedRevision::NoStream),
        Some(Value::String(s)) if s == "stream_exists" => Some(ExpectedRevision::StreamExists),
        Some(Value::String(s)) if s == "any" => Some(ExpectedRevision::Any),
        Some(other) => {
            return Err(at(
                "expected_revision",
                format!(
                    "{other} is not a revision: give an integer from 0, \"no_stream\", \
                     \"stream_exists\" or \"any\""
                ),
            ));
        }
    };
    let mut new = event.to_new_event().with_id(id).with_metadata(&metadata);
    if let Some(occurred_at) = occurred_at {
        new = new.with_occurred_at(occurred_at);
    }
    Ok(Incoming {
        stream: event.stream(),
        event,
        new,
        expected,
    })
}

enum Failed {
    /// Another writer moved this stream since its state was folded: re-read and retry.
    Stale(StreamId),
    Problem(Problem),
}

impl From<Problem> for Failed {
    fn from(problem: Problem) -> Failed {
        Failed::Problem(problem)
    }
}

async fn attempt(
    state: &AppState,
    tenant: &TenantId,
    batch: &[Incoming],
) -> Result<AppendAnswer, Failed> {
    // Ids already stored (only caller-chosen or derived ids can be): duplicates.
    let pairs: Vec<(StreamId, Uuid)> = batch
        .iter()
        .map(|e| (e.stream.clone(), e.new.event_id))
        .collect();
    let stored = state
        .store
        .find_events(tenant, &pairs)
        .await
        .map_err(store_problem)?;
    let stored: HashMap<(StreamId, Uuid), _> = stored
        .into_iter()
        .map(|s| ((s.stream_id.clone(), s.event_id), s))
        .collect();
    // A stored id sent again must carry the same data (the one decision, in core).
    let candidates: Vec<(usize, &_, &NewEvent)> = batch
        .iter()
        .enumerate()
        .filter_map(|(index, incoming)| {
            stored
                .get(&(incoming.stream.clone(), incoming.new.event_id))
                .filter(|existing| existing.event_type == incoming.new.event_type)
                .map(|existing| (index, existing, &incoming.new))
        })
        .collect();
    let other_data: std::collections::HashSet<usize> =
        sent_with_other_data(state.store.as_ref(), tenant, &candidates)
            .await
            .map_err(store_problem)?
            .into_iter()
            .collect();

    // Streams this process holds no state of: one look-up tells which exist at all (the
    // others start empty without reading anything).
    let mut unknown: Vec<StreamId> = Vec::new();
    for incoming in batch {
        let key = (tenant.clone(), incoming.stream.clone());
        if !stored.contains_key(&(incoming.stream.clone(), incoming.new.event_id))
            && !unknown.contains(&incoming.stream)
            && !state.streams.contains(&key)
        {
            unknown.push(incoming.stream.clone());
        }
    }
    let existing: std::collections::HashSet<StreamId> = state
        .store
        .stream_heads_of(tenant, &unknown)
        .await
        .map_err(store_problem)?
        .into_iter()
        .map(|head| head.stream_id)
        .collect();
    for stream in unknown {
        if !existing.contains(&stream) {
            state
                .streams
                .put((tenant.clone(), stream), Folded::default());
        }
    }

    // Fold each stream touched by a new event, then judge the batch in order.
    let mut folded: HashMap<StreamId, Folded> = HashMap::new();
    // Streams in order of first new event, with the revision their state was folded to.
    let mut order: Vec<(StreamId, Option<u64>)> = Vec::new();
    for (index, incoming) in batch.iter().enumerate() {
        let key = (incoming.stream.clone(), incoming.new.event_id);
        if let Some(existing) = stored.get(&key) {
            if existing.event_type != incoming.new.event_type {
                return Err(Problem::conflict(format!(
                    "events[{index}].id: {} is already used by a {} event in stream {}",
                    incoming.new.event_id, existing.event_type, existing.stream_id
                ))
                .into());
            }
            if other_data.contains(&index) {
                return Err(Problem::conflict(format!(
                    "events[{index}].id: {} is already stored in stream {} with other data; \
                     an event id (or Idempotency-Key) names one event: send a new id for a new \
                     event",
                    incoming.new.event_id, existing.stream_id
                ))
                .with("event_index", index)
                .into());
            }
            continue;
        }
        if !folded.contains_key(&incoming.stream) {
            let state_now = load(state, tenant, &incoming.stream).await?;
            order.push((incoming.stream.clone(), state_now.revision));
            folded.insert(incoming.stream.clone(), state_now);
        }
        let Some(stream_state) = folded.get_mut(&incoming.stream) else {
            continue;
        };
        if let Some(expected) = incoming.expected
            && !matches_expectation(expected, stream_state.revision)
        {
            return Err(Problem::conflict(format!(
                "events[{index}].expected_revision: stream {} is {}, not {expected}",
                incoming.stream,
                match stream_state.revision {
                    Some(revision) => format!("at revision {revision}"),
                    None => "absent".to_owned(),
                }
            ))
            .with("event_index", index)
            .into());
        }
        stream_state
            .state
            .check(&incoming.event)
            .map_err(|violation| {
                Problem::conflict(format!(
                    "events[{index}] ({}): {violation}",
                    incoming.new.event_type
                ))
                .with("event_index", index)
            })?;
        stream_state.state = std::mem::take(&mut stream_state.state).evolve(&incoming.event);
        stream_state.revision = Some(stream_state.revision.map_or(0, |r| r + 1));
    }

    // The append expects every stream exactly where its state was folded from.
    let expectations: Vec<StreamExpectation> = order
        .into_iter()
        .map(|(stream, before)| StreamExpectation {
            stream,
            expected: match before {
                Some(revision) => ExpectedRevision::Exact(revision),
                None => ExpectedRevision::NoStream,
            },
        })
        .collect();
    let events: Vec<(StreamId, NewEvent)> = batch
        .iter()
        .map(|e| (e.stream.clone(), e.new.clone()))
        .collect();
    let outcome = match state.store.append_batch(tenant, expectations, events).await {
        Ok(outcome) => outcome,
        Err(StoreError::WrongExpectedRevision { stream, .. }) => {
            let stream = StreamId::parse(&stream).map_err(|e| Problem::internal(&e))?;
            return Err(Failed::Stale(stream));
        }
        Err(error) => return Err(store_problem(error).into()),
    };
    for (stream, folded) in folded {
        state.streams.put((tenant.clone(), stream), folded);
    }
    let mut appended = 0;
    let events: Vec<Appended> = batch
        .iter()
        .zip(&outcome.events)
        .enumerate()
        .map(|(index, (incoming, result))| {
            if !result.duplicate {
                appended += 1;
            }
            Appended {
                index,
                id: result.event_id,
                event_type: incoming.event.event_type(),
                stream: incoming.stream.as_str().to_owned(),
                revision: result.revision,
                position: result.position,
                duplicate: result.duplicate,
            }
        })
        .collect();
    Ok(AppendAnswer {
        duplicates: events.len() - appended,
        appended,
        last_position: outcome.last_position,
        events,
    })
}

fn matches_expectation(expected: ExpectedRevision, current: Option<u64>) -> bool {
    match expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => current.is_none(),
        ExpectedRevision::StreamExists => current.is_some(),
        ExpectedRevision::Exact(revision) => current == Some(revision),
    }
}

/// The stream's folded state: taken from the cache, or read from the log.
async fn load(state: &AppState, tenant: &TenantId, stream: &StreamId) -> Result<Folded, Failed> {
    if let Some(cached) = state.streams.take(&(tenant.clone(), stream.clone())) {
        return Ok(cached);
    }
    let mut folded = Folded::default();
    loop {
        let from = folded.revision.map_or(0, |r| r + 1);
        let events = state
            .store
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Revision(from),
                1_000,
            )
            .await
            .map_err(store_problem)?;
        let Some(last) = events.last() else { break };
        folded.revision = Some(last.revision);
        for recorded in &events {
            let data: Value =
                serde_json::from_str(recorded.data.get()).map_err(|e| Problem::internal(&e))?;
            let decoded = upcast(&recorded.event_type, recorded.schema_version, data)
                .and_then(|data| DomainEvent::parse_stored(&recorded.event_type, &data));
            match decoded {
                Ok(event) => folded.state = std::mem::take(&mut folded.state).evolve(&event),
                // Written outside the catalog (by a tool): no rule depends on it.
                Err(CatalogError::UnknownEventType { .. }) => {}
                Err(error) => return Err(Problem::internal(&error).into()),
            }
        }
    }
    Ok(folded)
}

fn store_problem(error: StoreError) -> Problem {
    match &error {
        StoreError::WrongExpectedRevision { .. }
        | StoreError::EventIdReused { .. }
        | StoreError::SubjectErased { .. } => Problem::conflict(error.to_string()),
        StoreError::InvalidInput(_) => Problem::unprocessable(error.to_string()),
        StoreError::Database(_)
        | StoreError::Sqlite(_)
        | StoreError::Task(_)
        | StoreError::KeyChanged { .. } => {
            tracing::error!(%error, "append failed");
            Problem::unavailable(
                "the event store did not answer; the batch may or may not be stored: \
                 retry it with the same event ids (or Idempotency-Key), which is safe",
            )
        }
        _ => Problem::internal(&error),
    }
}
