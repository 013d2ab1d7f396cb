//! The event envelope: what every stored event carries besides its data, and the ids that
//! address tenants and streams.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::ids::is_id_char;

/// A global log position. Positions start at 1 and grow by one per event in commit order;
/// position 0 means "before the first event".
pub type Position = u64;

/// Why a tenant or stream id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {reason}")]
pub struct InvalidId {
    /// Which kind of id ("tenant id", "stream id").
    pub what: &'static str,
    /// The refused value, cut to 140 characters.
    pub value: String,
    /// What rule it broke.
    pub reason: &'static str,
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> InvalidId {
    InvalidId {
        what,
        value: value.chars().take(140).collect(),
        reason,
    }
}

/// A tenant: every event, stream and query belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Longest tenant id accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates a tenant id: 1 to 64 of letters, digits, `.`, `_`, `:`, `-`.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        if value.is_empty() {
            return Err(invalid("tenant id", value, "it is empty"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(invalid(
                "tenant id",
                value,
                "it is longer than 64 characters",
            ));
        }
        if !value.chars().all(is_id_char) {
            return Err(invalid(
                "tenant id",
                value,
                "only letters, digits, '.', '_', ':' and '-' are allowed",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// Wraps a value read back from the store, which validated it when it was written.
    pub(crate) fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// A stream: `<category>-<entity id>`, e.g. `customer-c-42`. The category is the part before
/// the first `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// Longest entity id accepted (the design's limit on emitter ids).
    pub const MAX_ENTITY_ID_LEN: usize = 128;

    /// Builds `<category>-<entity id>`, validating both parts.
    pub fn new(category: &str, entity_id: &str) -> Result<Self, InvalidId> {
        Self::parse(&format!("{category}-{entity_id}"))
    }

    /// Validates a stream id: a category of lowercase letters, digits and `_` starting with a
    /// letter, a `-`, then an entity id of 1 to 128 letters, digits, `.`, `_`, `:`, `-`.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let Some((category, entity)) = value.split_once('-') else {
            return Err(invalid(
                "stream id",
                value,
                "it has no '<category>-' prefix",
            ));
        };
        let category_ok = category.len() <= 32
            && category
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
            && category
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !category_ok {
            return Err(invalid(
                "stream id",
                value,
                "the category must be 1 to 32 lowercase letters, digits or '_', starting with a letter",
            ));
        }
        if entity.is_empty() || entity.len() > Self::MAX_ENTITY_ID_LEN {
            return Err(invalid(
                "stream id",
                value,
                "the entity id must be 1 to 128 characters",
            ));
        }
        if !entity.chars().all(is_id_char) {
            return Err(invalid(
                "stream id",
                value,
                "the entity id may hold only letters, digits, '.', '_', ':' and '-'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// Wraps a value read back from the store, which validated it when it was written.
    pub(crate) fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(c, _)| c)
    }

    /// The part after the first `-`.
    pub fn entity_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, e)| e)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// Who and what caused an event. Every field is optional; unknown keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl EventMetadata {
    /// The keys an emitter may set. Metadata is stored in the clear (it is not personal
    /// data by contract), so a key the catalog does not know is refused rather than kept:
    /// free-form keys are where personal data would slip in unsealed.
    pub const EMITTER_KEYS: [&'static str; 4] =
        ["actor", "source", "correlation_id", "causation_id"];

    /// The first key an emitter may not set, if any.
    pub fn unknown_key(&self) -> Option<&str> {
        self.extra.keys().next().map(String::as_str)
    }

    /// Longest metadata value accepted, in characters: metadata names who and what sent an
    /// event (an actor, a source system, correlation ids), never free text.
    pub const MAX_VALUE_CHARS: usize = 1_000;

    /// The first metadata value that cannot be stored and projected on every backend (a NUL
    /// character, see [`crate::catalog::text`]) or is longer than [`Self::MAX_VALUE_CHARS`],
    /// as `(path, reason)`, e.g. `("metadata.actor", "contains a NUL character ...")`.
    /// Every string in the metadata is checked, keys the API adds itself included.
    pub fn unstorable_value(&self) -> Option<(String, String)> {
        let named = [
            ("actor", &self.actor),
            ("source", &self.source),
            ("correlation_id", &self.correlation_id),
            ("causation_id", &self.causation_id),
        ];
        let mut found = named
            .into_iter()
            .filter_map(|(key, value)| value.as_deref().map(|v| (key.to_owned(), v)))
            .find_map(|(key, value)| text_problem(value).map(|r| (format!("metadata.{key}"), r)));
        if found.is_none() {
            for (key, value) in &self.extra {
                found = json_text_problem(&format!("metadata.{key}"), value);
                if found.is_some() {
                    break;
                }
            }
        }
        found
    }

    /// The message refusing `key`.
    pub fn unknown_key_message(key: &str) -> String {
        format!(
            "unknown metadata key {key:?}: metadata holds only {}, stored in the clear; \
             keep personal data out of it",
            Self::EMITTER_KEYS.join(", ")
        )
    }
}

fn text_problem(text: &str) -> Option<String> {
    if let Some(reason) = crate::catalog::text::unstorable(text) {
        return Some(reason);
    }
    let chars = text.chars().count();
    (chars > EventMetadata::MAX_VALUE_CHARS).then(|| {
        format!(
            "is {chars} characters long, at most {} are allowed",
            EventMetadata::MAX_VALUE_CHARS
        )
    })
}

/// The first string (member names included) in `value` that [`text_problem`] refuses.
fn json_text_problem(path: &str, value: &serde_json::Value) -> Option<(String, String)> {
    use serde_json::Value;
    match value {
        Value::String(text) => text_problem(text).map(|r| (path.to_owned(), r)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| json_text_problem(&format!("{path}[{i}]"), item)),
        Value::Object(members) => members.iter().find_map(|(key, item)| {
            crate::catalog::text::unstorable(key)
                .map(|r| (path.to_owned(), format!("a member name {r}")))
                .or_else(|| json_text_problem(&format!("{path}.{key}"), item))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// Truncates a timestamp to the microsecond precision both backends store, so that what is
/// hashed at append time is exactly what is read back.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// An event to append. Build it with [`NewEvent::new`]; the data is kept as canonical JSON
/// (object keys sorted, no whitespace), which is also what the hash chain covers.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The idempotency key: appending the same id again stores nothing.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: Box<RawValue>,
    pub metadata: Box<RawValue>,
    /// Business time from the emitter; defaults to the time it is recorded.
    pub occurred_at: Option<DateTime<Utc>>,
    /// A restore of an exported event: when it lands at the position it had, it keeps the
    /// recording time it had, so its hash (and a re-export) is byte-identical.
    pub restore: Option<Restore>,
}

/// Where and when an exported event was recorded (see [`NewEvent::restore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restore {
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
}

impl NewEvent {
    /// An event with a fresh time-ordered id, schema version 1, empty metadata and no
    /// business time.
    pub fn new(event_type: impl Into<String>, data: &serde_json::Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            data: canonical_json(data),
            metadata: canonical_json(&serde_json::Value::Object(Default::default())),
            occurred_at: None,
            restore: None,
        }
    }

    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    pub fn with_schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    pub fn with_occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = Some(to_stored_precision(at));
        self
    }

    pub fn with_metadata(mut self, metadata: &EventMetadata) -> Self {
        let value = serde_json::to_value(metadata).expect("metadata always serialises");
        self.metadata = canonical_json(&value);
        self
    }
}

/// Serialises a JSON value canonically: serde_json's map is ordered by key, and the compact
/// writer adds no whitespace.
pub fn canonical_json(value: &serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value always serialises")
}

/// An event as stored, with its full envelope.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedEvent {
    pub tenant: TenantId,
    pub stream_id: StreamId,
    /// 0-based position of the event in its stream.
    pub revision: u64,
    /// Global position in commit order.
    pub position: Position,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The event's fields, as the catalog defines them for its type.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// Actor, source, correlation and causation ids, and the emitter's own keys.
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// This event's link in its stream's hash chain.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// Parses the data into a concrete type.
    pub fn decode_data<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }

    /// Parses the metadata.
    pub fn decode_metadata(&self) -> Result<EventMetadata, serde_json::Error> {
        serde_json::from_str(self.metadata.get())
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_split_into_category_and_entity_at_the_first_dash() {
        let id = StreamId::parse("customer-c-42").expect("valid");
        assert_eq!(id.category(), "customer");
        assert_eq!(id.entity_id(), "c-42");
    }

    #[test]
    fn stream_ids_with_bad_characters_or_lengths_are_refused() {
        for bad in [
            "customer",
            "customer-",
            "Customer-1",
            "customer-a b",
            "customer-ä",
            "-x",
        ] {
            assert!(StreamId::parse(bad).is_err(), "{bad} should be refused");
        }
        let long = format!("customer-{}", "x".repeat(129));
        assert!(StreamId::parse(&long).is_err());
        let max = format!("customer-{}", "x".repeat(128));
        assert!(StreamId::parse(&max).is_ok());
    }

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::parse("acme-eu.1").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse(&"t".repeat(65)).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{ "b": 1, "a": {"z": true, "y": [1, 2]} }"#).expect("json");
        assert_eq!(
            canonical_json(&value).get(),
            r#"{"a":{"y":[1,2],"z":true},"b":1}"#
        );
    }
}
