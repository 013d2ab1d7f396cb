//! Judging a parsed batch and appending it: for each event, in order, whether its id is
//! already stored (then it is a duplicate if its content is the same, refused if not, and
//! not checked again), its `expected_revision`, the money totals its stream keeps, and the
//! rules of its stream's aggregate given everything before it, in the log and earlier in
//! the batch. Then one `append_batch` expecting exactly the revisions the states were folded
//! to, so a concurrent writer (another request, another process) can never slip an event
//! between the check and the write: the append fails, the stale stream is re-read, and the
//! batch is checked again.
//!
//! A `ContactLinked` also needs its account: the account's stream (`customer-<account_id>`)
//! is folded too (from the batch so far, the cache or the log) and judged by
//! [`crate::aggregates::customer::check_account`] (a registered company, neither merged nor
//! erased). The account's stream is only read, not expected at the append: an erasure or
//! merge of the account appended by another writer between the check and the append is not
//! caught (the link then names an account that went away, as a link recorded before the
//! erasure would).
//!
//! These checks depend on the state folded so far, so the first refusal stops the batch (the
//! events after it would be judged against a state it never reaches); what can be judged
//! from an event alone was judged for every event by [`crate::command::parse`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{CatalogError, DomainEvent, upcast};
use crate::command::cache::{Folded, StreamCache};
use crate::command::{CommandError, Incoming, Refusal, Refusals, totals};
use crate::envelope::{NewEvent, Position, StreamId, TenantId};
use crate::privacy::replays::sent_with_other_data;
use crate::store::{
    Direction, EventStore, ExpectedRevision, StoreError, StreamExpectation, StreamStart,
};

/// Times a batch is re-checked after losing a race with another writer.
const ATTEMPTS: usize = 4;
/// Events read per call while folding a stream.
const READ_BATCH: usize = 1_000;

/// One event of an appended batch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Appended {
    pub index: usize,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub stream: String,
    pub revision: u64,
    pub position: Position,
    /// Already stored with the same content: acknowledged, not written again.
    pub duplicate: bool,
}

/// What an appended batch did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    pub events: Vec<Appended>,
    pub appended: usize,
    pub duplicates: usize,
    /// The highest position among the batch's events: pass it as `min_position` to read
    /// your writes.
    pub last_position: Position,
}

/// Judges `batch` and appends it whole, or refuses it whole (nothing written).
pub async fn append(
    store: &dyn EventStore,
    cache: &StreamCache,
    tenant: &TenantId,
    batch: &[Incoming],
) -> Result<Outcome, CommandError> {
    let streams: Vec<&StreamId> = batch.iter().map(|e| &e.stream).collect();
    let _turns = cache.turns(tenant, &streams).await;
    let mut stale = None;
    for _ in 0..ATTEMPTS {
        match attempt(store, cache, tenant, batch).await {
            Ok(outcome) => return Ok(outcome),
            Err(Failed::Stale(stream)) => {
                cache.forget(&(tenant.clone(), stream.clone()));
                stale = Some(stream);
            }
            Err(Failed::Refused(error)) => return Err(error),
        }
    }
    Err(CommandError::Contended {
        stream: stale.map(|s| s.to_string()).unwrap_or_default(),
    })
}

enum Failed {
    /// Another writer moved this stream since its state was folded: re-read and retry.
    Stale(StreamId),
    Refused(CommandError),
}

impl<E: Into<CommandError>> From<E> for Failed {
    fn from(error: E) -> Failed {
        Failed::Refused(error.into())
    }
}

async fn attempt(
    store: &dyn EventStore,
    cache: &StreamCache,
    tenant: &TenantId,
    batch: &[Incoming],
) -> Result<Outcome, Failed> {
    // Ids already stored (only caller-chosen or derived ids can be): duplicates.
    let pairs: Vec<(StreamId, Uuid)> = batch
        .iter()
        .map(|e| (e.stream.clone(), e.new.event_id))
        .collect();
    let stored: HashMap<(StreamId, Uuid), _> = store
        .find_events(tenant, &pairs)
        .await?
        .into_iter()
        .map(|s| ((s.stream_id.clone(), s.event_id), s))
        .collect();
    // A stored id sent again must carry the same content (the one decision, in privacy).
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
    let other_data: HashSet<usize> = sent_with_other_data(store, tenant, &candidates)
        .await?
        .into_iter()
        .collect();

    // Streams this process holds no state of: one look-up tells which exist at all (the
    // others start empty without reading anything).
    let mut unknown: Vec<StreamId> = Vec::new();
    for incoming in batch {
        let key = (tenant.clone(), incoming.stream.clone());
        if !stored.contains_key(&(incoming.stream.clone(), incoming.new.event_id))
            && !unknown.contains(&incoming.stream)
            && !cache.contains(&key)
        {
            unknown.push(incoming.stream.clone());
        }
    }
    let existing: HashSet<StreamId> = store
        .stream_heads_of(tenant, &unknown)
        .await?
        .into_iter()
        .map(|head| head.stream_id)
        .collect();
    for stream in unknown {
        if !existing.contains(&stream) {
            cache.put((tenant.clone(), stream), Folded::default());
        }
    }

    // Fold each stream touched by a new event, then judge the batch in order.
    let mut folded: HashMap<StreamId, Folded> = HashMap::new();
    // Streams in order of first new event, with the revision their state was folded to.
    let mut order: Vec<(StreamId, Option<u64>)> = Vec::new();
    // Streams only read to judge another stream's event (accounts of contact links).
    let mut looked_up: HashMap<StreamId, Folded> = HashMap::new();
    for (index, incoming) in batch.iter().enumerate() {
        if let Some(existing) = stored.get(&(incoming.stream.clone(), incoming.new.event_id)) {
            if existing.event_type != incoming.new.event_type {
                return Err(conflict(
                    index,
                    "id",
                    format!(
                        "{} is already used by a {} event in stream {}",
                        incoming.new.event_id, existing.event_type, existing.stream_id
                    ),
                ));
            }
            if other_data.contains(&index) {
                return Err(conflict(
                    index,
                    "id",
                    format!(
                        "{} is already stored in stream {} with other data; an event id (or \
                         Idempotency-Key) names one event: send a new id for a new event",
                        incoming.new.event_id, existing.stream_id
                    ),
                ));
            }
            continue;
        }
        if !folded.contains_key(&incoming.stream) {
            let state_now = match looked_up.remove(&incoming.stream) {
                Some(read) => read,
                None => load(store, cache, tenant, &incoming.stream).await?,
            };
            order.push((incoming.stream.clone(), state_now.revision));
            folded.insert(incoming.stream.clone(), state_now);
        }
        let Some(stream_state) = folded.get_mut(&incoming.stream) else {
            continue;
        };
        if let Some(expected) = incoming.expected
            && !matches_expectation(expected, stream_state.revision)
        {
            let actual = match stream_state.revision {
                Some(revision) => format!("at revision {revision}"),
                None => "absent".to_owned(),
            };
            return Err(conflict(
                index,
                "expected_revision",
                format!("stream {} is {actual}, not {expected}", incoming.stream),
            ));
        }
        totals::check(&stream_state.state, &incoming.event).map_err(|(member, reason)| {
            Failed::Refused(CommandError::Invalid(Refusals::one(
                Refusal::at(index, member, reason),
                batch.len(),
            )))
        })?;
        if let DomainEvent::ContactLinked(link) = &incoming.event {
            let account = account_stream(&link.account_id)?;
            if !folded.contains_key(&account) && !looked_up.contains_key(&account) {
                let read = load(store, cache, tenant, &account).await?;
                looked_up.insert(account.clone(), read);
            }
            let account_state = folded.get(&account).or_else(|| looked_up.get(&account));
            let verdict = match account_state.map(|f| &f.state) {
                Some(crate::aggregates::StreamState::Customer(state)) => {
                    crate::aggregates::customer::check_account(state, &link.account_id)
                }
                _ => crate::aggregates::customer::check_account(
                    &crate::aggregates::customer::State::default(),
                    &link.account_id,
                ),
            };
            if let Err(reason) = verdict {
                let violation = crate::aggregates::RuleViolation {
                    category: "customer",
                    entity_id: link.customer_id.clone(),
                    action: format!("be linked to account {}", link.account_id),
                    reason,
                };
                return Err(Failed::Refused(CommandError::Conflict(Refusal::by_rule(
                    index,
                    incoming.event.event_type(),
                    violation.to_string(),
                ))));
            }
        }
        let Some(stream_state) = folded.get_mut(&incoming.stream) else {
            continue;
        };
        stream_state
            .state
            .check(&incoming.event)
            .map_err(|violation| {
                Failed::Refused(CommandError::Conflict(Refusal::by_rule(
                    index,
                    incoming.event.event_type(),
                    violation.to_string(),
                )))
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
    let outcome = match store.append_batch(tenant, expectations, events).await {
        Ok(outcome) => outcome,
        Err(StoreError::WrongExpectedRevision { stream, .. }) => {
            let stream = StreamId::parse(&stream).map_err(|e| {
                CommandError::Store(StoreError::InvalidInput(format!("stream {stream}: {e}")))
            })?;
            return Err(Failed::Stale(stream));
        }
        Err(error) => return Err(error.into()),
    };
    for (stream, folded) in folded.into_iter().chain(looked_up) {
        cache.put((tenant.clone(), stream), folded);
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
    Ok(Outcome {
        duplicates: events.len() - appended,
        appended,
        last_position: outcome.last_position,
        events,
    })
}

/// The stream of the account a contact link names.
fn account_stream(account: &crate::ids::EntityId) -> Result<StreamId, Failed> {
    StreamId::parse(&format!("customer-{account}")).map_err(|e| {
        Failed::Refused(CommandError::Store(StoreError::InvalidInput(format!(
            "stream customer-{account}: {e}"
        ))))
    })
}

fn conflict(index: usize, member: &str, reason: String) -> Failed {
    Failed::Refused(CommandError::Conflict(Refusal::at(index, member, reason)))
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
async fn load(
    store: &dyn EventStore,
    cache: &StreamCache,
    tenant: &TenantId,
    stream: &StreamId,
) -> Result<Folded, Failed> {
    if let Some(cached) = cache.take(&(tenant.clone(), stream.clone())) {
        return Ok(cached);
    }
    let mut folded = Folded::default();
    loop {
        let from = folded.revision.map_or(0, |r| r + 1);
        let events = store
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Revision(from),
                READ_BATCH,
            )
            .await?;
        let Some(last) = events.last() else { break };
        folded.revision = Some(last.revision);
        for recorded in &events {
            let unreadable = |reason: String| CommandError::Unreadable {
                stream: stream.to_string(),
                event_type: recorded.event_type.clone(),
                reason,
            };
            let data: Value =
                serde_json::from_str(recorded.data.get()).map_err(|e| unreadable(e.to_string()))?;
            let decoded = upcast(&recorded.event_type, recorded.schema_version, data)
                .and_then(|data| DomainEvent::parse_stored(&recorded.event_type, &data));
            match decoded {
                Ok(event) => folded.state = std::mem::take(&mut folded.state).evolve(&event),
                // Written outside the catalog (by a tool): no rule depends on it.
                Err(CatalogError::UnknownEventType { .. }) => {}
                Err(
                    error @ (CatalogError::UnsupportedSchemaVersion { .. }
                    | CatalogError::MissingUpcaster { .. }
                    | CatalogError::InvalidData { .. }),
                ) => return Err(unreadable(error.to_string()).into()),
            }
        }
    }
    Ok(folded)
}
