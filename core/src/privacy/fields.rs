//! Sealed fields inside an event's canonical JSON data: splitting the object into its members
//! without parsing their values, the sealed-field text, and the associated data.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use aes_gcm::Aes256Gcm;
use base64::Engine;
use serde_json::value::RawValue;

use crate::store::keys::{KEY_ID_LEN, KeyId};

/// What a personal field of an erased subject reads.
pub const ERASED: &str = "[erased]";
/// What a personal field reads for a caller not allowed to read personal data.
pub const REDACTED: &str = "[redacted]";

const PREFIX: &str = "crm:v1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// True when a JSON text may hold a sealed field (a cheap test before parsing).
pub(crate) fn may_hold_sealed(data: &str) -> bool {
    data.contains(PREFIX)
}

/// True when `value` is a sealed field.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The members of a JSON object, values unparsed, in key order (canonical data is sorted).
/// Keys borrow from `data` unless they hold escapes (field names never do).
pub(crate) type Members<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;

pub(crate) fn split(data: &str) -> Result<Members<'_>, serde_json::Error> {
    match serde_json::from_str::<BTreeMap<&str, &RawValue>>(data) {
        Ok(members) => Ok(members
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect()),
        Err(_) => Ok(serde_json::from_str::<BTreeMap<String, &RawValue>>(data)?
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), v))
            .collect()),
    }
}

/// The top-level members of a JSON object text, without parsing or copying anything: each
/// key (as written, without quotes) and the byte range of its value. `None` for text this
/// scanner does not take (not an object, a key with escapes, malformed): callers then fall
/// back to [`split`]. Event data is canonical JSON (serde's compact writer), which it
/// always takes.
pub(crate) fn scan(data: &str) -> Option<Vec<(&str, Range<usize>)>> {
    let b = data.as_bytes();
    let mut i = skip_ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::with_capacity(8);
    if *b.get(i)? == b'}' {
        return (skip_ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        if *b.get(i)? != b'"' {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key = data.get(i + 1..key_end - 1)?;
        if key.contains('\\') {
            return None;
        }
        i = skip_ws(b, key_end);
        if *b.get(i)? != b':' {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = value_end(b, start)?;
        out.push((key, start..end));
        i = skip_ws(b, end);
        match *b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (skip_ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the string starting at `b[i] == '"'`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The index after the value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// `data` with the given value ranges replaced (ranges in order, not overlapping).
pub(crate) fn splice(data: &str, replacements: &[(Range<usize>, String)]) -> String {
    let extra: usize = replacements.iter().map(|(_, r)| r.len()).sum();
    let mut out = String::with_capacity(data.len() + extra);
    let mut at = 0;
    for (range, text) in replacements {
        out.push_str(&data[at..range.start]);
        out.push_str(text);
        at = range.end;
    }
    out.push_str(&data[at..]);
    out
}

/// The key ids of the sealed fields in a JSON text, found without parsing it (a sealed
/// field's text has no escapes, so it appears verbatim).
pub(crate) fn sealed_key_ids(data: &str, out: &mut Vec<KeyId>) {
    let mut rest = data;
    while let Some(at) = rest.find(PREFIX) {
        let after = &rest[at + PREFIX.len()..];
        if let Some((key, _)) = after.split_once(':')
            && let Ok(bytes) = B64.decode(key)
            && let Ok(id) = <[u8; KEY_ID_LEN]>::try_from(bytes.as_slice())
        {
            out.push(id);
        }
        rest = after;
    }
}

/// Joins members back into canonical JSON: the keys in order, the values as they are.
pub(crate) fn join<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> Box<RawValue> {
    let mut out = String::with_capacity(256);
    out.push('{');
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).expect("a string serialises"));
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    RawValue::from_string(out).expect("members of a valid object make a valid object")
}

/// The associated data of one field: it binds the ciphertext to its place.
pub(crate) fn field_aad(tenant: &str, stream: &str, event_id: &uuid::Uuid, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + tenant.len() + stream.len() + field.len());
    aad.extend_from_slice(b"crm-field-v1");
    for part in [tenant.as_bytes(), stream.as_bytes()] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad.extend_from_slice(event_id.as_bytes());
    aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// Seals one field's JSON value text; returns the JSON string that replaces it.
pub(crate) fn seal_value(
    cipher: &Aes256Gcm,
    key_id: &KeyId,
    value_json: &str,
    aad: &[u8],
) -> Result<String, super::PrivacyError> {
    let sealed = super::master::seal(cipher, value_json.as_bytes(), aad)?;
    let mut text = String::with_capacity(PREFIX.len() + 24 + sealed.len() * 4 / 3 + 4);
    text.push('"');
    text.push_str(PREFIX);
    B64.encode_string(key_id, &mut text);
    text.push(':');
    B64.encode_string(&sealed, &mut text);
    text.push('"');
    Ok(text)
}

/// The key id and sealed bytes of a sealed field's text (without quotes).
pub(crate) fn parse_sealed(value: &str) -> Option<(KeyId, Vec<u8>)> {
    let rest = value.strip_prefix(PREFIX)?;
    let (key, body) = rest.split_once(':')?;
    let key = B64.decode(key).ok()?;
    let key_id: [u8; KEY_ID_LEN] = key.as_slice().try_into().ok()?;
    Some((key_id, B64.decode(body).ok()?))
}

/// The string inside a raw JSON value, if it is a plain string without escapes (sealed
/// fields always are).
pub(crate) fn plain_string(raw: &RawValue) -> Option<&str> {
    unquoted(raw.get())
}

/// [`plain_string`] of a value's JSON text.
pub(crate) fn unquoted(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// The data subject of an event, as far as its stream and data tell: the customer of a
/// `customer-` stream, the lead of a `lead-` stream, else the `customer_id` in the data.
/// `None` when only the stream's opening event can tell (a case or deal event without it).
pub fn subject_of_data(stream: &crate::envelope::StreamId, data: &str) -> Option<String> {
    use crate::store::keys::{customer_subject, lead_subject};
    match stream.category() {
        "customer" => Some(customer_subject(stream.entity_id())),
        "lead" => Some(lead_subject(stream.entity_id())),
        _ => {
            let members = split(data).ok()?;
            let id: String = serde_json::from_str(members.get("customer_id")?.get()).ok()?;
            Some(customer_subject(&id))
        }
    }
}

/// Whether a stored event (opened, as [`super::PrivateStore`] reads it) holds the same data
/// as an event sent again with its id: `Some(true)` or `Some(false)`, or `None` when the
/// stored personal fields read [`ERASED`] and cannot be compared (an erased subject's event
/// replayed is acknowledged as a duplicate without comparison).
pub fn same_content(event_type: &str, stored_data: &str, new_data: &str) -> Option<bool> {
    if stored_data == new_data {
        return Some(true);
    }
    let personal = crate::catalog::personal_fields(event_type);
    let erased = format!("\"{ERASED}\"");
    let stored = split(stored_data).ok()?;
    let new = split(new_data).ok()?;
    let mut unknown = false;
    let names: std::collections::BTreeSet<&str> = stored
        .keys()
        .chain(new.keys())
        .map(|k| k.as_ref())
        .collect();
    for name in names {
        let (a, b) = (
            stored.get(name).map(|v| v.get()),
            new.get(name).map(|v| v.get()),
        );
        if a == b {
            continue;
        }
        if personal.contains(&name) && a == Some(erased.as_str()) {
            unknown = true;
            continue;
        }
        return Some(false);
    }
    if unknown { None } else { Some(true) }
}

/// A personal field's value as read models keep it: `None` for a value that reads
/// [`ERASED`], so a fold of the log after an erasure and the live erasure agree.
pub fn readable(value: &str) -> Option<String> {
    (value != ERASED).then(|| value.to_owned())
}

/// [`readable`] of an optional value.
pub fn readable_opt(value: &Option<String>) -> Option<String> {
    value.as_deref().and_then(readable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_agrees_with_serde_and_refuses_what_it_does_not_take() {
        for data in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"a":{"y":[1,2,{"z":"]}"}]},"b":"x\"y","c":null,"d":-1.5e3,"e":true}"#,
            r#" { "a" : "b" , "c" : [ ] } "#,
        ] {
            let scanned = scan(data).expect(data);
            let parsed = split(data).expect(data);
            assert_eq!(scanned.len(), parsed.len(), "{data}");
            for (key, range) in scanned {
                assert_eq!(&data[range], parsed[key].get(), "{data}");
            }
        }
        for bad in [
            r#"[1]"#,
            r#"{"a":1"#,
            r#"{"a\u0041":1}"#,
            r#"{"a":1}x"#,
            r#"{"a" 1}"#,
        ] {
            assert!(scan(bad).is_none(), "{bad}");
        }
        let data = r#"{"a":"x","b":1,"c":"y"}"#;
        let members = scan(data).expect("object");
        let out = splice(
            data,
            &[
                (members[0].1.clone(), "\"X\"".into()),
                (members[2].1.clone(), "null".into()),
            ],
        );
        assert_eq!(out, r#"{"a":"X","b":1,"c":null}"#);
    }

    #[test]
    fn split_and_join_keep_canonical_json() {
        let data = r#"{"a":{"y":[1,2]},"b":"x\"y","c":null}"#;
        let members = split(data).expect("object");
        let joined = join(members.iter().map(|(k, v)| (k.as_ref(), v.get())));
        assert_eq!(joined.get(), data);
    }

    #[test]
    fn sealed_text_round_trips_and_only_opens_in_its_place() {
        use aes_gcm::aead::KeyInit;
        let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).expect("key");
        let id = [3u8; KEY_ID_LEN];
        let event = uuid::Uuid::from_u128(9);
        let aad = field_aad("t", "customer-c-1", &event, "name");
        let text = seal_value(&cipher, &id, "\"Ada Lovelace\"", &aad).expect("seal");
        assert!(!text.contains("Ada"), "{text}");
        let inner = text.trim_matches('"');
        assert!(is_sealed(inner));
        let (key_id, sealed) = parse_sealed(inner).expect("parses");
        assert_eq!(key_id, id);
        let plain = super::super::master::open(&cipher, &sealed, &aad).expect("opens");
        assert_eq!(plain.as_slice(), b"\"Ada Lovelace\"");
        for other in [
            field_aad("t", "customer-c-1", &event, "email"),
            field_aad("u", "customer-c-1", &event, "name"),
            field_aad("t", "customer-c-2", &event, "name"),
            field_aad("t", "customer-c-1", &uuid::Uuid::from_u128(10), "name"),
        ] {
            assert!(super::super::master::open(&cipher, &sealed, &other).is_err());
        }
    }

    #[test]
    fn same_content_compares_data_and_gives_up_only_on_erased_fields() {
        let stored = r#"{"customer_id":"c-1","name":"Ada"}"#;
        assert_eq!(
            same_content("CustomerRegistered", stored, stored),
            Some(true)
        );
        let other = r#"{"customer_id":"c-1","name":"Bea"}"#;
        assert_eq!(
            same_content("CustomerRegistered", stored, other),
            Some(false)
        );
        let erased = r#"{"customer_id":"c-1","name":"[erased]"}"#;
        assert_eq!(same_content("CustomerRegistered", erased, stored), None);
        let moved = r#"{"customer_id":"c-2","name":"[erased]"}"#;
        assert_eq!(
            same_content("CustomerRegistered", erased, moved),
            Some(false),
            "a non-personal field still decides"
        );
    }

    #[test]
    fn key_ids_are_found_in_the_text_without_a_parse() {
        use aes_gcm::aead::KeyInit;
        let cipher = Aes256Gcm::new_from_slice(&[1u8; 32]).expect("key");
        let aad = field_aad("t", "s-1", &uuid::Uuid::nil(), "name");
        let a = seal_value(&cipher, &[5u8; KEY_ID_LEN], "\"x\"", &aad).expect("seal");
        let b = seal_value(&cipher, &[6u8; KEY_ID_LEN], "\"y\"", &aad).expect("seal");
        let data = format!(r#"{{"a":{a},"b":{b},"c":"crm:v1:bad"}}"#);
        let mut ids = Vec::new();
        sealed_key_ids(&data, &mut ids);
        assert_eq!(ids, vec![[5u8; KEY_ID_LEN], [6u8; KEY_ID_LEN]]);
        assert_eq!(readable(ERASED), None);
        assert_eq!(readable("Ada").as_deref(), Some("Ada"));
    }
}
