//! Verification of the hash chains: recompute every stream's chain from its stored bytes and
//! compare it with the stored hashes and the recorded stream heads. Written once over the
//! [`EventStore`] trait, so it checks every backend the same way, and reports the first event
//! (in log order) that was changed, removed, inserted or reordered.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use crate::envelope::{Position, RecordedEvent, StreamId, TenantId};
use crate::store::chain::{ChainFields, GENESIS, event_hash};
use crate::store::{Direction, EventStore, Scope, StoreError, StreamStart};

const PAGE: usize = 2_000;

/// What kind of damage a finding shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The event's bytes no longer match its hash (or cannot be read at all).
    Changed,
    /// Events are missing before this point (a gap in revisions or positions, or a stream end
    /// short of its recorded head).
    Removed,
    /// An event is present that the chain or the recorded head does not account for.
    Inserted,
    /// The event appears out of its stream's order.
    Reordered,
}

/// The first broken place found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    pub kind: FindingKind,
    pub tenant: Option<String>,
    pub stream_id: Option<String>,
    pub revision: Option<u64>,
    pub position: Option<Position>,
    pub event_id: Option<Uuid>,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(stream) = &self.stream_id {
            write!(f, " in stream {stream}")?;
        }
        if let Some(revision) = self.revision {
            write!(f, " at revision {revision}")?;
        }
        if let Some(position) = self.position {
            write!(f, " (position {position})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The result of a verification run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub events_checked: u64,
    /// Streams whose chain was checked; 0 from [`verify_stream`] when there is no such
    /// stream (no event and no recorded head).
    pub streams_checked: u64,
    /// `None` when every chain verifies.
    pub first_failure: Option<Finding>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_failure.is_none()
    }
}

struct ChainState {
    next_revision: u64,
    previous_hash: [u8; 32],
}

fn finding(kind: FindingKind, event: &RecordedEvent, detail: String) -> Finding {
    Finding {
        kind,
        tenant: Some(event.tenant.to_string()),
        stream_id: Some(event.stream_id.to_string()),
        revision: Some(event.revision),
        position: Some(event.position),
        event_id: Some(event.event_id),
        detail,
    }
}

fn recompute(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    event_hash(
        previous,
        &ChainFields {
            tenant: event.tenant.as_str(),
            stream_id: event.stream_id.as_str(),
            revision: event.revision,
            position: event.position,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            data: event.data.get(),
            metadata: event.metadata.get(),
            occurred_at_micros: event.occurred_at.timestamp_micros(),
            recorded_at_micros: event.recorded_at.timestamp_micros(),
        },
    )
}

/// Checks one event against its stream's chain so far, advancing it when it fits.
fn check_link(state: &mut ChainState, event: &RecordedEvent) -> Option<Finding> {
    if event.revision > state.next_revision {
        return Some(finding(
            FindingKind::Removed,
            event,
            format!(
                "revision {} is missing before this event",
                if event.revision - state.next_revision == 1 {
                    state.next_revision.to_string()
                } else {
                    format!("{}..{}", state.next_revision, event.revision - 1)
                }
            ),
        ));
    }
    if event.revision < state.next_revision {
        return Some(finding(
            FindingKind::Reordered,
            event,
            format!(
                "revision {} comes after revision {} in log order",
                event.revision,
                state.next_revision - 1
            ),
        ));
    }
    if recompute(&state.previous_hash, event) != event.hash {
        return Some(finding(
            FindingKind::Changed,
            event,
            "its stored bytes do not match its hash and its predecessor's".into(),
        ));
    }
    state.next_revision += 1;
    state.previous_hash = event.hash;
    None
}

/// Sharpens a finding with two look-ups that only run once something is wrong: a revision
/// that is missing here but stored further on was reordered, not removed; an event past the
/// stream's recorded head was inserted, whatever its hash says.
async fn refine(
    store: &dyn EventStore,
    event: &RecordedEvent,
    expected: u64,
    mut found: Finding,
) -> Finding {
    if found.kind == FindingKind::Removed
        && let Ok(later) = store
            .read_stream(
                &event.tenant,
                &event.stream_id,
                Direction::Forwards,
                StreamStart::Revision(expected),
                1,
            )
            .await
        && later.first().is_some_and(|e| e.revision == expected)
    {
        found.kind = FindingKind::Reordered;
        found.detail = format!(
            "revision {} comes before revision {expected} in log order",
            event.revision
        );
    }
    if found.kind == FindingKind::Changed
        && let Ok(Some(head)) = store.stream_head(&event.tenant, &event.stream_id).await
        && event.revision > head.revision
    {
        found.kind = FindingKind::Inserted;
        found.detail = format!(
            "the event lies past the stream's recorded head (revision {}) and does not chain",
            head.revision
        );
    }
    found
}

fn unreadable(error: StoreError) -> Result<Finding, StoreError> {
    match error {
        StoreError::Corrupt { position, reason } => Ok(Finding {
            kind: FindingKind::Changed,
            tenant: None,
            stream_id: None,
            revision: None,
            position: Some(position),
            event_id: None,
            detail: format!("the stored event cannot be read: {reason}"),
        }),
        other => Err(other),
    }
}

/// The one verification every caller runs (`GET /v1/verify`, `crm-replay verify`, the
/// rebuild's check): one stream's chain when `stream` is given, else every chain of `scope`.
/// A tenant's break is named alike whoever asks and whatever the scope: the same stream,
/// revision and position.
pub async fn verify_log(
    store: &dyn EventStore,
    scope: &Scope,
    stream: Option<&StreamId>,
) -> Result<VerifyReport, StoreError> {
    match (scope, stream) {
        (Scope::Tenant(tenant), Some(stream)) => verify_stream(store, tenant, stream).await,
        _ => verify(store, scope).await,
    }
}

/// Whether `event` lies at or after the place `failure` names in its stream: an event before
/// a break still verifies (its hash chains back to the stream's start), the events from the
/// break on do not. A failure that names no revision (an unreadable row) covers every event.
pub fn at_or_after_break(failure: &Finding, event: &RecordedEvent) -> bool {
    if failure
        .stream_id
        .as_deref()
        .is_some_and(|s| s != event.stream_id.as_str())
        || failure
            .tenant
            .as_deref()
            .is_some_and(|t| t != event.tenant.as_str())
    {
        return false;
    }
    failure
        .revision
        .is_none_or(|revision| event.revision >= revision)
}

/// Verifies every stream of `scope` in one pass over the log (memory grows with the number
/// of streams, not events). With [`Scope::AllTenants`] it also checks that positions run
/// from 1 without gaps, which notices whole streams removed; a gap is reported only when no
/// stream's chain or head names the break, so that an event removed from a stream is named
/// at its stream's revision, as a verification of its tenant alone names it.
pub async fn verify(store: &dyn EventStore, scope: &Scope) -> Result<VerifyReport, StoreError> {
    // Chains cover the stored bytes: a handle that opens sealed fields is verified as stored.
    if let Some(stored) = store.stored() {
        return Box::pin(verify(stored.as_ref(), scope)).await;
    }
    let mut chains: HashMap<(TenantId, StreamId), ChainState> = HashMap::new();
    let mut report = VerifyReport {
        events_checked: 0,
        streams_checked: 0,
        first_failure: None,
    };
    let check_positions = *scope == Scope::AllTenants;
    let mut gap: Option<Finding> = None;
    let mut after: Position = 0;
    loop {
        let events = match store.read_all(scope, after, PAGE).await {
            Ok(events) => events,
            Err(error) => {
                report.first_failure = Some(unreadable(error)?);
                return Ok(report);
            }
        };
        let Some(last) = events.last() else { break };
        let last_position = last.position;
        for event in &events {
            if check_positions && gap.is_none() && event.position != after + 1 {
                gap = Some(finding(
                    FindingKind::Removed,
                    event,
                    format!(
                        "log positions {}..{} are missing before this event",
                        after + 1,
                        event.position - 1
                    ),
                ));
            }
            after = event.position;
            let state = chains
                .entry((event.tenant.clone(), event.stream_id.clone()))
                .or_insert(ChainState {
                    next_revision: 0,
                    previous_hash: GENESIS,
                });
            if let Some(found) = check_link(state, event) {
                let expected = state.next_revision;
                report.first_failure = Some(refine(store, event, expected, found).await);
                return Ok(report);
            }
            report.events_checked += 1;
        }
        after = last_position;
    }
    report.streams_checked = chains.len() as u64;

    // Compare each chain's end with the recorded stream heads.
    let mut cursor: Option<(TenantId, StreamId)> = None;
    loop {
        let heads = store
            .stream_heads(scope, cursor.as_ref().map(|(t, s)| (t, s)), PAGE)
            .await?;
        let Some(last) = heads.last() else { break };
        cursor = Some((last.tenant.clone(), last.stream_id.clone()));
        for head in heads {
            let key = (head.tenant.clone(), head.stream_id.clone());
            let problem = match chains.remove(&key) {
                None => Some((
                    FindingKind::Removed,
                    format!(
                        "the stream has no events, but its recorded head is revision {}",
                        head.revision
                    ),
                )),
                Some(chain) if chain.next_revision != head.revision + 1 => {
                    Some(if chain.next_revision < head.revision + 1 {
                        (
                            FindingKind::Removed,
                            format!(
                                "the chain ends at revision {}, but the recorded head is revision {}",
                                chain.next_revision.saturating_sub(1),
                                head.revision
                            ),
                        )
                    } else {
                        (
                            FindingKind::Inserted,
                            format!(
                                "the chain runs to revision {}, past the recorded head revision {}",
                                chain.next_revision - 1,
                                head.revision
                            ),
                        )
                    })
                }
                Some(chain) if chain.previous_hash != head.hash => Some((
                    FindingKind::Changed,
                    "the last event's hash differs from the recorded head".into(),
                )),
                Some(_) => None,
            };
            if let Some((kind, detail)) = problem {
                report.first_failure = Some(Finding {
                    kind,
                    tenant: Some(head.tenant.to_string()),
                    stream_id: Some(head.stream_id.to_string()),
                    revision: Some(head.revision),
                    position: None,
                    event_id: None,
                    detail,
                });
                return Ok(report);
            }
        }
    }
    if let Some(((tenant, stream), chain)) = chains.into_iter().next() {
        report.first_failure = Some(Finding {
            kind: FindingKind::Inserted,
            tenant: Some(tenant.to_string()),
            stream_id: Some(stream.to_string()),
            revision: Some(chain.next_revision.saturating_sub(1)),
            position: None,
            event_id: None,
            detail: "the stream has events but no recorded head".into(),
        });
    }
    if report.first_failure.is_none() {
        report.first_failure = gap;
    }
    Ok(report)
}

/// Verifies one stream's chain and its recorded head.
pub async fn verify_stream(
    store: &dyn EventStore,
    tenant: &TenantId,
    stream: &StreamId,
) -> Result<VerifyReport, StoreError> {
    if let Some(stored) = store.stored() {
        return Box::pin(verify_stream(stored.as_ref(), tenant, stream)).await;
    }
    let mut state = ChainState {
        next_revision: 0,
        previous_hash: GENESIS,
    };
    let mut report = VerifyReport {
        events_checked: 0,
        streams_checked: 1,
        first_failure: None,
    };
    loop {
        let events = match store
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Revision(state.next_revision),
                PAGE,
            )
            .await
        {
            Ok(events) => events,
            Err(error) => {
                report.first_failure = Some(unreadable(error)?);
                return Ok(report);
            }
        };
        if events.is_empty() {
            break;
        }
        for event in &events {
            if let Some(found) = check_link(&mut state, event) {
                let expected = state.next_revision;
                report.first_failure = Some(refine(store, event, expected, found).await);
                return Ok(report);
            }
            report.events_checked += 1;
        }
    }
    let head = store.stream_head(tenant, stream).await?;
    let problem = match head {
        None if state.next_revision == 0 => {
            // No event and no recorded head: there is no such stream, and nothing was checked.
            report.streams_checked = 0;
            None
        }
        None => Some((
            FindingKind::Inserted,
            "the stream has events but no recorded head".to_owned(),
            state.next_revision - 1,
        )),
        Some(head) if head.revision + 1 != state.next_revision => Some((
            if head.revision + 1 > state.next_revision {
                FindingKind::Removed
            } else {
                FindingKind::Inserted
            },
            format!(
                "the chain ends at revision {}, but the recorded head is revision {}",
                state.next_revision as i64 - 1,
                head.revision
            ),
            head.revision,
        )),
        Some(head) if head.hash != state.previous_hash => Some((
            FindingKind::Changed,
            "the last event's hash differs from the recorded head".to_owned(),
            head.revision,
        )),
        Some(_) => None,
    };
    if let Some((kind, detail, revision)) = problem {
        report.first_failure = Some(Finding {
            kind,
            tenant: Some(tenant.to_string()),
            stream_id: Some(stream.to_string()),
            revision: Some(revision),
            position: None,
            event_id: None,
            detail,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, revision: u64) -> RecordedEvent {
        RecordedEvent {
            tenant: TenantId::parse("acme").expect("tenant"),
            stream_id: StreamId::parse(stream).expect("stream"),
            revision,
            position: 10 + revision,
            event_id: Uuid::nil(),
            event_type: "CustomerRegistered".into(),
            schema_version: 1,
            data: serde_json::value::RawValue::from_string("{}".into()).expect("raw"),
            metadata: serde_json::value::RawValue::from_string("{}".into()).expect("raw"),
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            hash: GENESIS,
        }
    }

    #[test]
    fn a_break_marks_its_stream_from_its_revision_on() {
        let broken = event("customer-1", 2);
        let failure = finding(FindingKind::Changed, &broken, "changed".into());
        let marked: Vec<bool> = (0..5)
            .map(|r| at_or_after_break(&failure, &event("customer-1", r)))
            .collect();
        assert_eq!(marked, [false, false, true, true, true]);
        assert!(!at_or_after_break(&failure, &event("customer-2", 4)));
        // An unreadable row names no stream: it marks every event.
        let unreadable = Finding {
            tenant: None,
            stream_id: None,
            revision: None,
            ..failure
        };
        assert!(at_or_after_break(&unreadable, &event("customer-2", 0)));
    }
}
