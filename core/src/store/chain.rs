//! The per-stream hash chain: each event's hash covers the previous event's hash and this
//! event's stored bytes, so changing, removing, inserting or reordering any event breaks the
//! chain from that event on.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The "previous hash" of a stream's first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// Domain separation: bump when the encoding below changes.
const DOMAIN: &[u8] = b"crm-event-chain-v1";

/// The stored fields of one event that its hash covers, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChainFields<'a> {
    pub tenant: &'a str,
    pub stream_id: &'a str,
    pub revision: u64,
    pub position: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub data: &'a str,
    pub metadata: &'a str,
    pub occurred_at_micros: i64,
    pub recorded_at_micros: i64,
}

/// `sha256(domain || previous || fields)`, with every variable-length field length-prefixed so
/// that no two different events encode to the same bytes.
pub fn event_hash(previous: &[u8; 32], fields: &ChainFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(previous);
    put_str(&mut hasher, fields.tenant);
    put_str(&mut hasher, fields.stream_id);
    hasher.update(fields.revision.to_be_bytes());
    hasher.update(fields.position.to_be_bytes());
    hasher.update(fields.event_id.as_bytes());
    put_str(&mut hasher, fields.event_type);
    hasher.update(fields.schema_version.to_be_bytes());
    put_str(&mut hasher, fields.data);
    put_str(&mut hasher, fields.metadata);
    hasher.update(fields.occurred_at_micros.to_be_bytes());
    hasher.update(fields.recorded_at_micros.to_be_bytes());
    hasher.finalize().into()
}

fn put_str(hasher: &mut Sha256, value: &str) {
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &str) -> ChainFields<'_> {
        ChainFields {
            tenant: "t",
            stream_id: "customer-1",
            revision: 0,
            position: 1,
            event_id: Uuid::nil(),
            event_type: "CustomerRegistered",
            schema_version: 1,
            data,
            metadata: "{}",
            occurred_at_micros: 1,
            recorded_at_micros: 2,
        }
    }

    #[test]
    fn any_changed_byte_or_previous_hash_changes_the_hash() {
        let base = event_hash(&GENESIS, &fields(r#"{"a":1}"#));
        assert_ne!(base, event_hash(&GENESIS, &fields(r#"{"a":2}"#)));
        assert_ne!(base, event_hash(&[1u8; 32], &fields(r#"{"a":1}"#)));
        assert_eq!(base, event_hash(&GENESIS, &fields(r#"{"a":1}"#)));
    }

    #[test]
    fn length_prefixes_keep_field_boundaries_apart() {
        let mut a = fields("{}");
        a.tenant = "ab";
        a.stream_id = "c-1";
        let mut b = fields("{}");
        b.tenant = "a";
        b.stream_id = "bc-1";
        assert_ne!(event_hash(&GENESIS, &a), event_hash(&GENESIS, &b));
    }
}
