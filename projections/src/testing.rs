//! Helpers for the folds' unit tests: events as the runner hands them over.

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::envelope::{StreamId, TenantId};
use crm_core::ids::EntityId;

use crate::event::ProjectedEvent;

/// `event` at `position` in tenant `t1`, as the runner would decode it.
pub fn event(position: u64, occurred_at: DateTime<Utc>, event: DomainEvent) -> ProjectedEvent {
    ProjectedEvent {
        tenant: TenantId::parse("t1").unwrap(),
        stream_id: StreamId::parse(&event.stream_id()).unwrap(),
        revision: position,
        position,
        event_id: uuid::Uuid::new_v4(),
        occurred_at,
        recorded_at: occurred_at,
        actor: None,
        source: None,
        event,
    }
}

/// An event from emitter JSON.
pub fn ev(
    position: u64,
    occurred_at: DateTime<Utc>,
    event_type: &str,
    data: serde_json::Value,
) -> ProjectedEvent {
    event(
        position,
        occurred_at,
        DomainEvent::parse(event_type, &data).unwrap(),
    )
}

pub fn id(text: &str) -> EntityId {
    EntityId::parse(text).unwrap()
}
