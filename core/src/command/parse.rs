//! Events as emitters send them (`{"id"?, "type", "data", "occurred_at"?, "metadata"?,
//! "expected_revision"?}`), checked member by member and against the catalog before anything
//! is read or written. The one parser behind `POST /v1/events` and the API format of
//! `crm-replay import`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{CatalogError, DomainEvent};
use crate::command::refusals::Collector;
use crate::command::{CommandError, Refusal};
use crate::envelope::{EventMetadata, NewEvent, StreamId, TenantId};
use crate::store::ExpectedRevision;

/// The members an event may have.
pub const MEMBERS: &[&str] = &[
    "id",
    "type",
    "data",
    "occurred_at",
    "metadata",
    "expected_revision",
];

/// Namespace of the ids derived from an `Idempotency-Key`.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_6964_656d_706f_7465_6e63_7921);

/// One event, parsed and checked against the catalog: ready to be judged.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub event: DomainEvent,
    pub stream: StreamId,
    pub new: NewEvent,
    pub expected: Option<ExpectedRevision>,
}

/// How an event without an `id` gets one, and who sent it.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions<'a> {
    /// The id of an event that carries none (else a new UUIDv7).
    pub derived_id: Option<Uuid>,
    /// Recorded in the metadata as `api_key_id` (never taken from the sender).
    pub key_id: Option<&'a str>,
    /// The workflow rule that appends the event (the rule worker only): recorded in the
    /// metadata as `workflow`, with `actor` `workflow:<rule id>@v<version>` (what timelines
    /// show) and `source` `workflow`.
    /// An emitter cannot set `workflow` (an unknown metadata key).
    pub cause: Option<&'a crate::automation::rule::Cause>,
}

/// The id of the `index`-th event of a request sent with `Idempotency-Key: key`: the same
/// request sent again gets the same ids, so it is a duplicate.
pub fn idempotency_id(tenant: &TenantId, key: &str, index: usize) -> Uuid {
    Uuid::new_v5(
        &IDEMPOTENCY_NAMESPACE,
        format!("{tenant}\n{key}\n{index}").as_bytes(),
    )
}

/// Checks a batch (`{"events": [...]}`, at most `max` events) and every event in it: a
/// refusal lists every invalid event (up to [`crate::command::refusals::MAX_LISTED`]).
pub fn parse_batch(
    value: &Value,
    tenant: &TenantId,
    key_id: &str,
    idempotency_key: Option<&str>,
    max: usize,
) -> Result<Vec<Incoming>, CommandError> {
    let body = |reason: &str| CommandError::InvalidBatch(reason.to_owned());
    let Some(object) = value.as_object() else {
        return Err(body("the body must be an object: {\"events\": [...]}"));
    };
    if let Some(other) = object.keys().find(|k| *k != "events") {
        return Err(body(&format!(
            "unknown member {other:?} in the body; it holds only \"events\""
        )));
    }
    let Some(events) = object.get("events").and_then(Value::as_array) else {
        return Err(body(
            "events: missing or not an array; send {\"events\": [...]}",
        ));
    };
    if events.is_empty() {
        return Err(body("events: the batch is empty"));
    }
    if events.len() > max {
        return Err(CommandError::TooManyEvents {
            count: events.len(),
            max,
        });
    }
    // Every event is checked, so one answer lists all that are invalid.
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(events.len());
    let mut batch = Vec::with_capacity(events.len());
    let mut refused = Collector::new();
    for (index, value) in events.iter().enumerate() {
        let options = ParseOptions {
            derived_id: idempotency_key.map(|key| idempotency_id(tenant, key, index)),
            key_id: Some(key_id),
            cause: None,
        };
        let incoming = match parse_event(value, &options) {
            Ok(incoming) => incoming,
            Err(mut refusal) => {
                refusal.index = index;
                refused.push(refusal);
                continue;
            }
        };
        if let Some(first) = seen.insert(incoming.new.event_id, index) {
            refused.push(Refusal::at(
                index,
                "id",
                format!(
                    "{} is also the id of events[{first}]; ids must be unique within a batch",
                    incoming.new.event_id
                ),
            ));
            continue;
        }
        batch.push(incoming);
    }
    if let Some(refusals) = refused.finish(events.len()) {
        return Err(CommandError::Invalid(refusals));
    }
    Ok(batch)
}

/// Checks one event; a refusal names the member at fault (its index is 0: the caller's
/// batch places it).
pub fn parse_event(value: &Value, options: &ParseOptions<'_>) -> Result<Incoming, Refusal> {
    let at = |member: &str, reason: String| Refusal::at(0, member, reason);
    let Some(object) = value.as_object() else {
        return Err(Refusal::whole(
            0,
            "an event must be an object with type and data",
        ));
    };
    if let Some(other) = object.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(Refusal::whole(
            0,
            format!(
                "unknown member {other:?}; an event has {}",
                MEMBERS.join(", ")
            ),
        ));
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
        CatalogError::UnsupportedSchemaVersion { .. } | CatalogError::MissingUpcaster { .. } => {
            Refusal::whole(0, error.to_string())
        }
        CatalogError::InvalidData {
            event_type,
            path,
            reason,
        } => Refusal::in_data(0, event_type, path, reason),
    })?;
    let id = match object.get("id") {
        None | Some(Value::Null) => options.derived_id.unwrap_or_else(Uuid::now_v7),
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|e| at("id", format!("{text:?} is not a UUID ({e})")))?
        }
        Some(_) => return Err(at("id", "must be a UUID string".into())),
    };
    let occurred_at = match object.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(rfc3339(text).map_err(|e| at("occurred_at", e))?),
        Some(_) => return Err(at("occurred_at", "must be an RFC 3339 string".into())),
    };
    let mut metadata: EventMetadata = match object.get("metadata") {
        None | Some(Value::Null) => EventMetadata::default(),
        Some(value @ Value::Object(_)) => {
            serde::Deserialize::deserialize(value).map_err(|e| at("metadata", e.to_string()))?
        }
        Some(_) => return Err(at("metadata", "must be an object".into())),
    };
    if let Some(key) = metadata.unknown_key() {
        return Err(at("metadata", EventMetadata::unknown_key_message(key)));
    }
    if let Some((path, reason)) = metadata.unstorable_value() {
        return Err(at(&path, reason));
    }
    if let Some(key_id) = options.key_id {
        // Which key appended the event, for auditors; never taken from the caller.
        metadata
            .extra
            .insert("api_key_id".into(), Value::String(key_id.to_owned()));
    }
    if let Some(cause) = options.cause {
        metadata.actor = Some(format!("workflow:{}@v{}", cause.rule, cause.version));
        metadata.source = Some("workflow".to_owned());
        metadata.extra.insert(
            "workflow".into(),
            serde_json::to_value(cause).unwrap_or(Value::Null),
        );
    }
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

/// An RFC 3339 time, or why not.
pub fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_name_the_member() {
        let options = ParseOptions::default();
        let refusal = parse_event(&json!({"type": 1, "data": {}}), &options).expect_err("bad");
        assert_eq!(refusal.in_batch(), "events[0].type: must be a string");
        let refusal =
            parse_event(&json!({"type": "X", "data": {}, "tenant": "t"}), &options).expect_err("");
        assert!(refusal.detail().starts_with("unknown member \"tenant\""));
    }

    #[test]
    fn a_batch_refuses_an_id_twice() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let event = json!({"id": "0195d7a4-0000-7000-8000-00000000abcd", "type": "LeadCaptured",
            "data": {"lead_id": "l-1", "email": "a@b.c", "source": "referral"}});
        let error = parse_batch(&json!({"events": [event, event]}), &tenant, "k", None, 10)
            .expect_err("twice");
        let refusal = error.refusal().expect("refusal");
        assert_eq!(refusal.index, 1);
        assert_eq!(refusal.member.as_deref(), Some("id"));
    }

    #[test]
    fn a_batch_lists_every_invalid_event() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let good = |id: &str| {
            json!({"type": "LeadCaptured",
                "data": {"lead_id": id, "email": "a@b.c", "source": "referral"}})
        };
        let twice = json!({"id": "0195d7a4-0000-7000-8000-00000000abcd", "type": "LeadCaptured",
            "data": {"lead_id": "l-9", "email": "a@b.c", "source": "referral"}});
        let events = json!([
            good("l-1"),
            {"data": {}},
            twice,
            {"type": "LeadCaptured", "data": {"lead_id": "l-3", "email": "a@b.c",
                "source": "referral", "colour": "red"}},
            good("l-4"),
            {"type": "LeadCaptured", "data": {"lead_id": "l-5", "email": "a@b.c",
                "source": "referral"}, "metadata": {"actor": "a\u{0}b"}},
            twice,
        ]);
        let error =
            parse_batch(&json!({ "events": events }), &tenant, "k", None, 10).expect_err("invalid");
        let CommandError::Invalid(refusals) = &error else {
            panic!("not invalid: {error}");
        };
        let found: Vec<(usize, Option<&str>)> = refusals
            .listed()
            .iter()
            .map(|r| (r.index, r.member.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                (1, Some("type")),
                (3, Some("data.colour")),
                (5, Some("metadata.actor")),
                (6, Some("id")),
            ]
        );
        assert_eq!(refusals.invalid(), 4);
        assert_eq!(refusals.events(), 7);
        assert_eq!(refusals.listed()[1].event_type, Some("LeadCaptured"));
        assert!(
            error
                .to_string()
                .starts_with("4 of 7 events are invalid; the first: events[1].type: missing"),
            "{error}"
        );
        assert_eq!(error.refusal().map(|r| r.index), Some(1));
    }
}
