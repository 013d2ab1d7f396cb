//! A message's body, rendered when it is sent (never queued): an event read from the log
//! through the opened store at that moment, so a customer erased since it was appended reads
//! `"[erased]"`; its personal fields (the catalog's `personal_fields`) replaced by
//! `"[redacted]"` unless the subscription takes personal data.
//!
//! `{"type": <event type>, "timestamp": <recorded_at>, "data": <envelope>}`, the envelope
//! being tenant, stream, revision, position, event_id, type, schema_version, data, metadata,
//! occurred_at and recorded_at. A rule call: `{"type": "workflow.call", "timestamp":
//! <enqueued_at>, "data": <payload>}`.

use chrono::SecondsFormat;
use crm_core::catalog::personal_fields;
use crm_core::envelope::RecordedEvent;
use crm_core::privacy::{ERASED, REDACTED};
use serde_json::{Value, json};

/// The event's data as JSON (`Null` if unreadable, which the catalog never stores).
pub fn data_of(event: &RecordedEvent) -> Value {
    serde_json::from_str(event.data.get()).unwrap_or(Value::Null)
}

/// True when `data` of `event_type` holds a personal value in plain text.
pub fn carries_personal_data(event_type: &str, data: &Value) -> bool {
    personal_fields(event_type).iter().any(|field| {
        data.get(*field).is_some_and(|v| match v {
            Value::Null => false,
            Value::String(text) => text != ERASED && text != REDACTED,
            _ => true,
        })
    })
}

/// Replaces every personal value (not null, not erased) with `"[redacted]"`.
pub fn redact(event_type: &str, data: &mut Value) {
    let Some(object) = data.as_object_mut() else {
        return;
    };
    for field in personal_fields(event_type) {
        if let Some(value) = object.get_mut(*field)
            && !value.is_null()
            && value.as_str() != Some(ERASED)
        {
            *value = Value::String(REDACTED.to_owned());
        }
    }
}

fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The body of an event's message. `personal_data`: deliver personal fields as read.
pub fn event_body(event: &RecordedEvent, personal_data: bool) -> Vec<u8> {
    let mut data = data_of(event);
    if !personal_data {
        redact(&event.event_type, &mut data);
    }
    let metadata: Value = serde_json::from_str(event.metadata.get()).unwrap_or(Value::Null);
    let body = json!({
        "type": event.event_type,
        "timestamp": stamp(event.recorded_at),
        "data": {
            "tenant": event.tenant.as_str(),
            "stream": event.stream_id.as_str(),
            "revision": event.revision,
            "position": event.position,
            "event_id": event.event_id,
            "type": event.event_type,
            "schema_version": event.schema_version,
            "data": data,
            "metadata": metadata,
            "occurred_at": stamp(event.occurred_at),
            "recorded_at": stamp(event.recorded_at),
        },
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The body of a rule call's message.
pub fn call_body(payload: &Value, enqueued_at: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "workflow.call",
        "timestamp": stamp(enqueued_at),
        "data": payload,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_values_are_redacted_but_erased_and_null_stay() {
        let mut data = json!({
            "customer_id": "c-1", "kind": "person", "name": "Ada", "email": ERASED, "phone": null
        });
        assert!(carries_personal_data("CustomerRegistered", &data));
        redact("CustomerRegistered", &mut data);
        assert_eq!(data["name"], REDACTED);
        assert_eq!(data["email"], ERASED);
        assert_eq!(data["phone"], Value::Null);
        assert_eq!(data["customer_id"], "c-1");
        assert!(!carries_personal_data("CustomerRegistered", &data));
    }
}
