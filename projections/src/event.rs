//! The decoded event the read models fold: the envelope fields projections use, with the data
//! upcast to the current schema and parsed into its [`DomainEvent`] once per batch, however
//! many projections consume it.

use chrono::{DateTime, Utc};
use crm_core::catalog::{DomainEvent, upcast};
use crm_core::envelope::{Position, RecordedEvent, StreamId, TenantId};
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;

/// One stored event, decoded for folding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedEvent {
    pub tenant: TenantId,
    pub stream_id: StreamId,
    pub revision: u64,
    pub position: Position,
    pub event_id: uuid::Uuid,
    /// Business time: when it happened, as the emitter said.
    pub occurred_at: DateTime<Utc>,
    /// Store time: when the CRM learnt of it.
    pub recorded_at: DateTime<Utc>,
    /// `metadata.actor`, if the emitter gave one.
    pub actor: Option<String>,
    /// `metadata.source`, if the emitter gave one.
    pub source: Option<String>,
    pub event: DomainEvent,
}

impl ProjectedEvent {
    /// Decodes a stored event, taking its envelope's ids instead of copying them. A failure
    /// means the log holds data this build cannot read (a newer schema version, or a damaged
    /// row): projections stop rather than skip it.
    pub fn decode(recorded: RecordedEvent) -> Result<ProjectedEvent, ProjectionError> {
        Self::try_decode(recorded).map_err(|(_, _, error)| error)
    }

    /// [`ProjectedEvent::decode`], giving back on failure the tenant and position of the
    /// event, which the runner parks ([`crate::parking`]).
    pub(crate) fn try_decode(
        recorded: RecordedEvent,
    ) -> Result<ProjectedEvent, (TenantId, Position, ProjectionError)> {
        match decode_parts(&recorded) {
            Ok((event, who)) => Ok(ProjectedEvent {
                tenant: recorded.tenant,
                stream_id: recorded.stream_id,
                revision: recorded.revision,
                position: recorded.position,
                event_id: recorded.event_id,
                occurred_at: recorded.occurred_at,
                recorded_at: recorded.recorded_at,
                actor: who.actor,
                source: who.source,
                event,
            }),
            Err(error) => Err((recorded.tenant, recorded.position, error)),
        }
    }

    /// The entry this event makes in a customer's timeline.
    pub fn timeline_entry(&self) -> TimelineEntry {
        TimelineEntry {
            position: self.position,
            stream_id: self.stream_id.as_str().to_owned(),
            revision: self.revision,
            event_type: self.event.event_type().to_owned(),
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: self.actor.clone(),
        }
    }
}

/// The metadata fields projections use; every other key is skipped unread (no map of the
/// rest is built, as a full [`crm_core::envelope::EventMetadata`] would).
#[derive(Deserialize)]
struct Who {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// The upcast, parsed data and the metadata fields of a stored event.
fn decode_parts(recorded: &RecordedEvent) -> Result<(DomainEvent, Who), ProjectionError> {
    let undecodable = |reason: String| ProjectionError::Undecodable {
        position: recorded.position,
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(recorded.data.get()).map_err(|e| undecodable(e.to_string()))?;
    let value = upcast(&recorded.event_type, recorded.schema_version, value)
        .map_err(|e| undecodable(e.to_string()))?;
    let event = DomainEvent::parse_stored(&recorded.event_type, &value)
        .map_err(|e| undecodable(e.to_string()))?;
    let who: Who = serde_json::from_str(recorded.metadata.get())
        .map_err(|e| undecodable(format!("metadata: {e}")))?;
    Ok((event, who))
}

/// One line of a customer's timeline: which event, where and when; the data stays in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub position: Position,
    pub stream_id: String,
    pub revision: u64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}
