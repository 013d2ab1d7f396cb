//! Judging a parsed batch and appending it: for each event, in order, whether its id is
//! already stored (then it is a duplicate if its content is the same, refused if not, and
//! not checked again), its `expected_revision`, the money totals its stream keeps, and the
//! rules of its stream's aggregate given everything before it, in the log and earlier in
//! the batch. Then one `append_batch` expecting exactly the revisions the states were folded
//! to, so a concurrent writer (another request, another process) can never slip an event
//! between the check and the write: the append fails, the stale stream is re-read, and the
//! batch is checked again.
//!
//! Some events are judged against other streams than their own, each folded as the batch
//! left it so far, or else read from the log up to its head (a cached state is brought
//! forward, so what another process appended is seen):
//! - a `ContactLinked` needs its account (`customer-<account_id>`), judged by
//!   [`crate::aggregates::customer::check_account`] (a registered company, neither merged nor
//!   erased);
//! - a `CampaignMemberAdded` naming a customer, in a campaign with a channel, needs the
//!   customer's marketing consent on that channel (`customer-<id>`) under the tenant's regime
//!   (`settings-consent`), judged by [`crate::aggregates::consent::check_member`]; a missing
//!   consent is [`CommandError::NoConsent`], naming it;
//! - a `TaskCreated` needs its subject's stream (`<subject_type>-<subject_id>`) to hold an
//!   event, in the log or earlier in the batch (a task about nothing is a typo);
//! - a `CaseMarkedComplaint` needs its category, and a `CaseResolved` with a `root_cause` its
//!   cause, in the tenant's complaint lists in force (`settings-complaints`); a tenant that
//!   never set them is told to set them first.
//!
//! Those streams take their turn with the batch's own (within one process no append to them
//! waits behind the judgement), and the append names each of them as a guard, expecting it
//! exactly where it was read ([`EventStore::append_batch`]): if another process moved one
//! between the judgement and the append (a consent withdrawn, an account erased), the append
//! fails, the stream is read again and the batch judged again.
//!
//! These checks depend on the state folded so far, so the first refusal stops the batch (the
//! events after it would be judged against a state it never reaches); what can be judged
//! from an event alone was judged for every event by [`crate::command::parse`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::aggregates::consent::{self, MemberRefused};
use crate::aggregates::{StreamState, customer};
use crate::catalog::campaign::CampaignMember;
use crate::catalog::settings::{COMPLAINT_SETTINGS, CONSENT_SETTINGS};
use crate::catalog::values::ConsentRegime;
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
    // The streams read to judge another stream's events take their turn too, so within this
    // process no append to them slips between the judgement and the append.
    let read = read_streams(batch);
    let streams: Vec<&StreamId> = batch.iter().map(|e| &e.stream).chain(&read).collect();
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
        judge_across(
            store,
            cache,
            tenant,
            index,
            incoming,
            &folded,
            &mut looked_up,
        )
        .await?;
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

    // The append expects every stream exactly where its state was folded from, and the
    // streams only read (to judge another stream's event) exactly where they were read:
    // guards, so no writer of any process slips between the judgement and the append.
    let expectations: Vec<StreamExpectation> = order
        .into_iter()
        .chain(
            looked_up
                .iter()
                .map(|(stream, read)| (stream.clone(), read.revision)),
        )
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

/// The streams an event is judged against besides its own: the account of a contact link;
/// the customer of a campaign member and the tenant's consent settings.
fn streams_read_by(event: &DomainEvent) -> Vec<StreamId> {
    let named = |category: &str, id: &str| StreamId::parse(&format!("{category}-{id}")).ok();
    match event {
        DomainEvent::ContactLinked(link) => named("customer", link.account_id.as_str())
            .into_iter()
            .collect(),
        DomainEvent::CampaignMemberAdded(added) => match &added.member {
            CampaignMember::Customer(customer) => [
                named("customer", customer.as_str()),
                named("settings", CONSENT_SETTINGS),
            ]
            .into_iter()
            .flatten()
            .collect(),
            CampaignMember::Lead(_) => Vec::new(),
        },
        DomainEvent::TaskCreated(task) => {
            named(task.subject_type.as_str(), task.subject_id.as_str())
                .into_iter()
                .collect()
        }
        DomainEvent::CaseMarkedComplaint(_)
        | DomainEvent::CaseResolved(crate::catalog::case::CaseResolved {
            root_cause: Some(_),
            ..
        }) => named("settings", COMPLAINT_SETTINGS).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Every stream the batch's events are judged against besides their own, once.
fn read_streams(batch: &[Incoming]) -> Vec<StreamId> {
    let mut streams: Vec<StreamId> = Vec::new();
    for incoming in batch {
        for stream in streams_read_by(&incoming.event) {
            if !streams.contains(&stream) {
                streams.push(stream);
            }
        }
    }
    streams
}

/// Judges the rules of `incoming` that need other streams than its own (a contact link's
/// account; a campaign member's consent), each folded as the batch left it so far, or read
/// from the log up to its head.
async fn judge_across(
    store: &dyn EventStore,
    cache: &StreamCache,
    tenant: &TenantId,
    index: usize,
    incoming: &Incoming,
    folded: &HashMap<StreamId, Folded>,
    looked_up: &mut HashMap<StreamId, Folded>,
) -> Result<(), Failed> {
    let others = streams_read_by(&incoming.event);
    for stream in &others {
        if !folded.contains_key(stream) && !looked_up.contains_key(stream) {
            let read = load_current(store, cache, tenant, stream).await?;
            looked_up.insert(stream.clone(), read);
        }
    }
    let state_of = |stream: &StreamId| {
        folded
            .get(stream)
            .or_else(|| looked_up.get(stream))
            .map(|f| &f.state)
    };
    let customer_state = |stream: Option<&StreamId>| match stream.and_then(state_of) {
        Some(StreamState::Customer(state)) => state.clone(),
        _ => customer::State::default(),
    };
    let by_rule = |entity_id: &crate::ids::EntityId, action: String, reason: String| {
        let violation = crate::aggregates::RuleViolation {
            category: incoming.event.category(),
            entity_id: entity_id.clone(),
            action,
            reason,
        };
        Failed::Refused(CommandError::Conflict(Refusal::by_rule(
            index,
            incoming.event.event_type(),
            violation.to_string(),
        )))
    };
    match &incoming.event {
        DomainEvent::ContactLinked(link) => {
            let account = customer_state(others.first());
            customer::check_account(&account, &link.account_id).map_err(|reason| {
                by_rule(
                    &link.customer_id,
                    format!("be linked to account {}", link.account_id),
                    reason,
                )
            })
        }
        DomainEvent::TaskCreated(task) => {
            let seen = others
                .first()
                .and_then(|stream| folded.get(stream).or_else(|| looked_up.get(stream)))
                .is_some_and(|subject| subject.revision.is_some());
            if seen {
                return Ok(());
            }
            Err(by_rule(
                &task.task_id,
                "be created".to_owned(),
                format!(
                    "its subject {} {} has no event",
                    task.subject_type, task.subject_id
                ),
            ))
        }
        DomainEvent::CaseMarkedComplaint(marked) => {
            let lists = others.first().and_then(state_of);
            complaint_label(lists, &marked.category, "category").map_err(|reason| {
                by_rule(
                    &marked.case_id,
                    format!("be marked a {} complaint", marked.category),
                    reason,
                )
            })
        }
        DomainEvent::CaseResolved(resolved) => {
            let Some(cause) = &resolved.root_cause else {
                return Ok(());
            };
            let lists = others.first().and_then(state_of);
            complaint_label(lists, cause, "root cause").map_err(|reason| {
                by_rule(
                    &resolved.case_id,
                    format!("be resolved with root cause {cause}"),
                    reason,
                )
            })
        }
        DomainEvent::CampaignMemberAdded(added) => {
            let CampaignMember::Customer(customer_id) = &added.member else {
                return Ok(());
            };
            // The campaign as folded before this event: its channel, once launched.
            let Some(channel) = state_of(&incoming.stream).and_then(StreamState::campaign_channel)
            else {
                return Ok(());
            };
            let regime = others
                .get(1)
                .and_then(state_of)
                .map_or(ConsentRegime::OptIn, StreamState::consent_regime);
            let member = customer_state(others.first());
            match consent::check_member(&member, customer_id, channel, regime) {
                Ok(()) => Ok(()),
                Err(MemberRefused::Customer(reason)) => Err(by_rule(
                    &added.campaign_id,
                    format!("add customer {customer_id}"),
                    reason,
                )),
                Err(MemberRefused::Consent(missing)) => {
                    Err(Failed::Refused(CommandError::NoConsent {
                        refusal: Refusal::in_data(
                            index,
                            incoming.event.event_type(),
                            "data.customer_id",
                            missing.to_string(),
                        ),
                        consent: missing,
                    }))
                }
            }
        }
        _ => Ok(()),
    }
}

/// Whether `label` is in the tenant's complaint lists folded into `settings` (`kind`:
/// `category` or `root cause`); `Err` holds the reason.
fn complaint_label(
    settings: Option<&StreamState>,
    label: &crate::ids::EntityId,
    kind: &str,
) -> Result<(), String> {
    let Some(lists) = settings.and_then(StreamState::complaint_lists) else {
        return Err(format!(
            "the tenant has no complaint categories and root causes; an admin sets them first \
             (a ComplaintCategoriesSet event on stream settings-{COMPLAINT_SETTINGS})"
        ));
    };
    let (known, listed) = if kind == "category" {
        (lists.has_category(label), &lists.categories)
    } else {
        (lists.has_cause(label), &lists.causes)
    };
    if known {
        return Ok(());
    }
    let names: Vec<&str> = listed.iter().map(|l| l.as_str()).collect();
    Err(format!(
        "{kind} {label} is not one of the tenant's: {}",
        names.join(", ")
    ))
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
    fold_forward(store, tenant, stream, Folded::default()).await
}

/// The state of a stream that is only read (no expectation guards it at the append): the
/// cached state brought up to the stream's head, so events another process appended since
/// it was cached are folded in.
async fn load_current(
    store: &dyn EventStore,
    cache: &StreamCache,
    tenant: &TenantId,
    stream: &StreamId,
) -> Result<Folded, Failed> {
    let start = cache
        .take(&(tenant.clone(), stream.clone()))
        .unwrap_or_default();
    fold_forward(store, tenant, stream, start).await
}

/// Folds the stream's events after `folded.revision` into `folded`.
async fn fold_forward(
    store: &dyn EventStore,
    tenant: &TenantId,
    stream: &StreamId,
    mut folded: Folded,
) -> Result<Folded, Failed> {
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
