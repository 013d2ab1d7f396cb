//! One line of an import, checked: an exported event (full envelope, restored as recorded)
//! or an event in the API's ingest format (parsed by `crm_core::command::parse_event`, the
//! API's own parser). Errors name the member or field at fault; the caller adds the line.

use chrono::{DateTime, Utc};
use crm_core::catalog::{CatalogError, DomainEvent, upcast};
use crm_core::command::{self, Incoming, ParseOptions};
use crm_core::envelope::{
    EventMetadata, NewEvent, Restore, StreamId, TenantId, canonical_json, to_stored_precision,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Namespace of the ids derived for ingest-format lines without an `id`.
const LINE_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_7265_706c_6179_2d69_6d70_6f72);
/// The store's limit on one event's data or metadata, checked per line so that the line is
/// named.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Members of an exported event.
const EXPORT_MEMBERS: &[&str] = &[
    "tenant",
    "stream_id",
    "revision",
    "position",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "occurred_at",
    "recorded_at",
    "hash",
];
/// Members of an event in the API's ingest format that an import accepts.
const INGEST_MEMBERS: &[&str] = &["id", "type", "data", "occurred_at", "metadata"];

/// One checked line, ready to append.
#[derive(Debug)]
pub(super) struct Line {
    pub(super) tenant: TenantId,
    pub(super) event: Event,
}

/// A line's event: history to restore, or a new event to judge as the API does.
#[derive(Debug)]
pub(super) enum Event {
    Restored(StreamId, NewEvent),
    New(Box<Incoming>),
}

impl Event {
    pub(super) fn id(&self) -> Uuid {
        match self {
            Event::Restored(_, event) => event.event_id,
            Event::New(incoming) => incoming.new.event_id,
        }
    }
}

/// The line without its `\n` or `\r\n`.
pub(super) fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Checks one line; the error names the member or field at fault.
pub(super) fn parse_line(
    number: u64,
    bytes: &[u8],
    tenant: Option<&TenantId>,
) -> Result<Line, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the line is not UTF-8 ({e})"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {}", json_error(&e)))?;
    let Value::Object(object) = value else {
        return Err("an event must be a JSON object".into());
    };
    // Members only the export format has; a `tenant` beside a `type` is an ingest line with
    // a member too many.
    let exported = ["event_type", "stream_id", "event_id"]
        .iter()
        .any(|member| object.contains_key(*member))
        || (object.contains_key("tenant") && !object.contains_key("type"));
    if exported {
        return parse_exported(object);
    }
    let Some(tenant) = tenant else {
        return Err(
            "an event in the API's ingest format (type, data, ...) needs --tenant; \
                    exported events carry their own tenant"
                .into(),
        );
    };
    parse_ingest(object, tenant, number, text)
}

/// serde's message, with the column instead of its "line 1".
fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(bare) => format!("{bare} (column {})", error.column()),
        None => message,
    }
}

/// A line of `crm-replay export`.
fn parse_exported(mut object: Map<String, Value>) -> Result<Line, String> {
    if let Some(other) = object
        .keys()
        .find(|key| !EXPORT_MEMBERS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown member {other:?}; an exported event has {}",
            EXPORT_MEMBERS.join(", ")
        ));
    }
    let tenant = TenantId::parse(string(&object, "tenant")?).map_err(|e| format!("tenant: {e}"))?;
    let stream =
        StreamId::parse(string(&object, "stream_id")?).map_err(|e| format!("stream_id: {e}"))?;
    let event_id = {
        let text = string(&object, "event_id")?;
        Uuid::parse_str(text).map_err(|e| format!("event_id: {text:?} is not a UUID ({e})"))?
    };
    let event_type = string(&object, "event_type")?.to_owned();
    let schema_version = match object.get("schema_version") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| format!("schema_version: {n} is not a schema version (1 or more)"))?,
        Some(_) => return Err("schema_version: must be an integer".into()),
        None => return Err("schema_version: missing".into()),
    };
    let occurred_at = match object.get("occurred_at") {
        Some(Value::String(text)) => rfc3339(text)?,
        Some(_) => return Err("occurred_at: must be an RFC 3339 string".into()),
        None => return Err("occurred_at: missing".into()),
    };
    // Where and when it was recorded: kept when it lands at the same position (a restore
    // into a store that holds exactly what preceded it), so its hash is the same.
    let restore = match (object.get("position"), object.get("recorded_at")) {
        (Some(Value::Number(position)), Some(Value::String(text))) => {
            match (position.as_u64(), rfc3339(text)) {
                (Some(position), Ok(recorded_at)) => Some(Restore {
                    position,
                    recorded_at,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    let metadata = match object.remove("metadata") {
        Some(value @ Value::Object(_)) => {
            let parsed =
                EventMetadata::deserialize(&value).map_err(|e| format!("metadata: {e}"))?;
            if let Some((path, reason)) = parsed.unstorable_value() {
                return Err(format!("{path}: {reason}"));
            }
            canonical_json(&value)
        }
        Some(_) => return Err("metadata: must be an object".into()),
        None => return Err("metadata: missing".into()),
    };
    let data = match object.remove("data") {
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err("data: must be an object".into()),
        None => return Err("data: missing".into()),
    };
    // Stored as it was exported, at its version; checked in its current form.
    let stored = canonical_json(&data);
    let current = upcast(&event_type, schema_version, data)
        .map_err(|e| catalog_error(e, "event_type", "schema_version"))?;
    let event = DomainEvent::parse(&event_type, &current)
        .map_err(|e| catalog_error(e, "event_type", "schema_version"))?;
    let belongs = event.stream();
    if belongs != stream {
        return Err(format!(
            "stream_id: {:?} does not match the event, which belongs to stream {:?}",
            stream.as_str(),
            belongs.as_str()
        ));
    }
    let event = NewEvent {
        event_id,
        event_type,
        schema_version,
        data: stored,
        metadata,
        occurred_at: Some(to_stored_precision(occurred_at)),
        restore,
    };
    check_size(&event)?;
    Ok(Line {
        tenant,
        event: Event::Restored(stream, event),
    })
}

/// A line in the API's ingest format, parsed by the API's own parser
/// (`crm_core::command::parse_event`): `line N: member: reason` where the API says
/// `events[i].member: reason`.
fn parse_ingest(
    object: Map<String, Value>,
    tenant: &TenantId,
    number: u64,
    text: &str,
) -> Result<Line, String> {
    if object.contains_key("expected_revision") {
        return Err(
            "expected_revision: not supported by import, which appends the lines in \
                    file order whatever the streams' revisions; remove it"
                .into(),
        );
    }
    if let Some(other) = object
        .keys()
        .find(|key| !INGEST_MEMBERS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown member {other:?}; an event has {}",
            INGEST_MEMBERS.join(", ")
        ));
    }
    let options = ParseOptions {
        derived_id: Some(Uuid::new_v5(
            &LINE_NAMESPACE,
            format!("{tenant}\n{number}\n{text}").as_bytes(),
        )),
        key_id: None,
        cause: None,
    };
    let incoming =
        command::parse_event(&Value::Object(object), &options).map_err(|r| r.detail())?;
    check_size(&incoming.new)?;
    Ok(Line {
        tenant: tenant.clone(),
        event: Event::New(Box::new(incoming)),
    })
}

fn string<'a>(object: &'a Map<String, Value>, member: &str) -> Result<&'a str, String> {
    match object.get(member) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(format!("{member}: must be a string")),
        None => Err(format!("{member}: missing")),
    }
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("occurred_at: {text:?} is not an RFC 3339 time ({e})"))
}

/// A catalog refusal, led by the member at fault when the message does not name a field.
fn catalog_error(error: CatalogError, type_member: &str, version_member: &str) -> String {
    match error {
        CatalogError::UnknownEventType { .. } => {
            format!("{type_member}: {error}; the catalog is in docs/events.md")
        }
        CatalogError::UnsupportedSchemaVersion { .. } | CatalogError::MissingUpcaster { .. } => {
            format!("{version_member}: {error}")
        }
        CatalogError::InvalidData { .. } => error.to_string(),
    }
}

fn check_size(event: &NewEvent) -> Result<(), String> {
    for (member, json) in [("data", &event.data), ("metadata", &event.metadata)] {
        if json.get().len() > MAX_EVENT_BYTES {
            return Err(format!(
                "{member}: {} bytes; the store takes at most {MAX_EVENT_BYTES} per event",
                json.get().len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").expect("tenant")
    }

    #[test]
    fn text_no_backend_can_store_is_refused_naming_the_field() {
        let text = r#"{"type":"CustomerRegistered","data":{"customer_id":"c-1","kind":"person","name":"evil\u0000name"}}"#;
        let error = parse_line(1, text.as_bytes(), Some(&acme())).expect_err("refused");
        assert!(
            error.contains("data.name") && error.contains("NUL"),
            "{error}"
        );
        let text = r#"{"type":"CustomerRegistered","metadata":{"actor":"u\u00001"},"data":{"customer_id":"c-1","kind":"person","name":"Ada"}}"#;
        let error = parse_line(1, text.as_bytes(), Some(&acme())).expect_err("refused");
        assert!(
            error.contains("metadata.actor: ") && error.contains("NUL"),
            "{error}"
        );
        let exported = r#"{"tenant":"acme","stream_id":"customer-c-1","event_id":"0190a1b2-0000-7000-8000-000000000001","event_type":"CustomerRegistered","schema_version":1,"data":{"customer_id":"c-1","kind":"person","name":"Ada"},"metadata":{"api_key_id":"k\u0000"},"occurred_at":"2026-01-01T00:00:00Z"}"#;
        let error = parse_line(1, exported.as_bytes(), None).expect_err("refused");
        assert!(error.starts_with("metadata.api_key_id: "), "{error}");
    }

    #[test]
    fn json_errors_name_the_column_not_a_line_of_one() {
        let error = parse_line(3, br#"{"type": "#, Some(&acme())).expect_err("invalid");
        assert!(error.starts_with("invalid JSON: "), "{error}");
        assert!(error.contains("(column "), "{error}");
        assert!(!error.contains("line 1"), "{error}");
    }

    #[test]
    fn ingest_lines_without_an_id_get_a_stable_one_from_tenant_line_and_text() {
        let text = r#"{"type":"LeadCaptured","data":{"lead_id":"l-1","email":"ada@example.com","source":"referral"}}"#;
        let a = parse_line(7, text.as_bytes(), Some(&acme())).expect("valid");
        let b = parse_line(7, text.as_bytes(), Some(&acme())).expect("valid");
        let c = parse_line(8, text.as_bytes(), Some(&acme())).expect("valid");
        assert_eq!(a.event.id(), b.event.id());
        assert_ne!(a.event.id(), c.event.id());
        let Event::New(incoming) = a.event else {
            panic!("an API-format line is a new event")
        };
        assert_eq!(incoming.stream.as_str(), "lead-l-1");
    }

    #[test]
    fn expected_revisions_are_refused_by_name() {
        let text = r#"{"type":"LeadCaptured","data":{"lead_id":"l-1","email":"ada@example.com","source":"referral"},"expected_revision":0}"#;
        let error = parse_line(1, text.as_bytes(), Some(&acme())).expect_err("refused");
        assert!(error.starts_with("expected_revision: "), "{error}");
    }

    #[test]
    fn the_format_follows_the_members() {
        let error = parse_line(1, br#"{"tenant": 1}"#, None).expect_err("invalid");
        assert_eq!(error, "tenant: must be a string");
        let error = parse_line(1, br#"{"tenant": "acme", "type": "X"}"#, Some(&acme()))
            .expect_err("invalid");
        assert!(error.starts_with("unknown member \"tenant\""), "{error}");
        let error = parse_line(1, br#"{"event_type": "LeadCaptured"}"#, None).expect_err("invalid");
        assert_eq!(error, "tenant: missing");
    }

    #[test]
    fn line_ends_are_trimmed() {
        assert_eq!(trim_line_end(b"{}\r\n"), b"{}");
        assert_eq!(trim_line_end(b"{}\n"), b"{}");
        assert_eq!(trim_line_end(b"{}"), b"{}");
    }
}
