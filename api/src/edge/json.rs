//! A scan of a JSON body before it is parsed into a `serde_json::Value` tree: the body must be
//! an object (an array is refused at once; a scalar is left to the parser), nested at most
//! `--json-max-depth` levels, and its tree must not cost more than
//! [`EXPANSION`] times the body's size in memory. A `Value` costs 32 bytes plus what it owns,
//! so `[0,0,0,…]` would cost 16 bytes per body byte (more with the array's spare capacity):
//! 16 MB of it took 580 MB. The scan costs nothing but a pass over the bytes; it does not
//! validate (the parser does), it only counts.

/// The most memory a parsed body may take, as a multiple of its size. The catalog's events
/// cost 3–6 times their JSON text (short strings and numbers); only bodies made of tiny values
/// go beyond this.
pub const EXPANSION: usize = 12;

/// What a scalar or string costs as an array element: a `Value` and the array's spare room.
const IN_ARRAY: usize = 64;
/// What a key or a value costs in an object: its half of a map entry (key `String` and
/// `Value`) and the map's node overhead.
const IN_OBJECT: usize = 48;
/// What an array or object costs beyond its slot.
const CONTAINER: usize = 48;

/// Why a body was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("the body's JSON is nested deeper than {0} levels (--json-max-depth)")]
    TooDeep(usize),
    #[error(
        "the body's JSON holds too many small values: parsed, it would take more than {0} times \
         its size in memory; send fewer, larger values"
    )]
    TooDense(usize),
}

/// Checks `body` (see the module's header). Refuses as soon as a limit is passed.
pub fn check(body: &[u8], max_depth: usize) -> Result<(), Refusal> {
    let budget = body.len().saturating_mul(EXPANSION).max(64 * 1024);
    scan(body, max_depth, budget).map(|_| ())
}

/// The estimated memory of `body`'s parsed tree, refused beyond `budget` bytes.
fn scan(body: &[u8], max_depth: usize, budget: usize) -> Result<usize, Refusal> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        // An array is refused before it is built: it is the cheapest bomb (`[0,0,…]`).
        Some(b'[') => return Err(Refusal::NotObject),
        // A scalar costs about its size; malformed text is the parser's to report.
        _ => return Ok(0),
    }
    // true: an array; false: an object.
    let mut open: Vec<bool> = Vec::new();
    let mut cost = 0usize;
    let mut at = 0;
    while at < body.len() {
        let slot = match open.last() {
            Some(true) => IN_ARRAY,
            Some(false) => IN_OBJECT,
            None => 32,
        };
        match body[at] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => at += 1,
            byte @ (b'{' | b'[') => {
                open.push(byte == b'[');
                if open.len() > max_depth {
                    return Err(Refusal::TooDeep(max_depth));
                }
                cost += slot + CONTAINER;
                at += 1;
            }
            b'}' | b']' => {
                open.pop();
                at += 1;
            }
            b'"' => {
                let start = at + 1;
                at = start;
                while at < body.len() {
                    match body[at] {
                        b'\\' => at += 2,
                        b'"' => break,
                        _ => at += 1,
                    }
                }
                cost += slot + at.min(body.len()) - start;
                at += 1;
            }
            _ => {
                while at < body.len()
                    && !matches!(
                        body[at],
                        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b']' | b'}' | b'"'
                    )
                {
                    at += 1;
                }
                cost += slot;
            }
        }
        if cost > budget {
            return Err(Refusal::TooDense(EXPANSION));
        }
    }
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros(wrap: bool, len: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(len + 16);
        body.extend_from_slice(if wrap { b"{\"events\":[" } else { b"[" });
        while body.len() < len {
            body.extend_from_slice(b"0,");
        }
        body.extend_from_slice(if wrap { b"0]}" } else { b"0]" });
        body
    }

    #[test]
    fn arrays_of_tiny_values_are_refused_objects_of_events_pass() {
        assert_eq!(check(&zeros(false, 1 << 20), 64), Err(Refusal::NotObject));
        assert_eq!(
            check(&zeros(true, 1 << 20), 64),
            Err(Refusal::TooDense(EXPANSION))
        );
        let events: Vec<serde_json::Value> = (0..500)
            .map(|n| {
                serde_json::json!({
                    "id": format!("0190f3a2-0000-7000-8000-{n:012}"),
                    "type": "OrderPlaced",
                    "data": {"customer_id": format!("c-{n}"), "order_id": format!("o-{n}"),
                             "total": "11.77", "currency": "EUR",
                             "lines": [{"sku": "A-1", "quantity": 2, "unit_price": "1.5"}]},
                    "occurred_at": "2024-01-01T00:00:00Z",
                })
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "events": events })).expect("json");
        assert_eq!(check(&body, 64), Ok(()));
    }

    /// The benchmark's A1 bodies (500 events each) and a history of every event type, as
    /// emitters send them, are estimated well within the limit.
    #[test]
    fn real_event_batches_stay_far_below_the_limit() {
        let a1 = crm_tests::bench_data::generate(200, 42)
            .into_iter()
            .flat_map(|customer| customer.events)
            .map(|event| {
                serde_json::json!({
                    "id": event.event_id, "type": event.event_type,
                    "data": serde_json::from_str::<serde_json::Value>(event.data.get())
                        .unwrap_or_default(),
                    "occurred_at": event.occurred_at,
                })
            });
        let history = crm_tests::crm_data::history(7, 30, 3_000)
            .into_iter()
            .map(|event| {
                serde_json::json!({"id": event.id, "type": event.event_type,
                                   "data": event.data, "occurred_at": event.occurred_at})
            });
        for (name, events) in [
            ("A1", a1.collect::<Vec<_>>()),
            ("history", history.collect()),
        ] {
            for batch in events.chunks(500) {
                let body =
                    serde_json::to_vec(&serde_json::json!({ "events": batch })).expect("json");
                let cost = scan(&body, 64, usize::MAX).expect("scan");
                assert!(
                    cost * 2 < body.len() * EXPANSION,
                    "{name}: {cost} bytes estimated for {} bytes of JSON",
                    body.len()
                );
            }
        }
    }

    #[test]
    fn depth_is_bounded_and_strings_hide_brackets() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(check(deep.as_bytes(), 64), Err(Refusal::TooDeep(64)));
        let text = format!("{{\"a\":\"{}\\\"\"}}", "[".repeat(100));
        assert_eq!(check(text.as_bytes(), 64), Ok(()));
        assert_eq!(check(b"  [", 64), Err(Refusal::NotObject));
        assert_eq!(
            check(b"  ", 64),
            Ok(()),
            "the parser says the body is empty"
        );
        assert_eq!(
            check(b"\"text\"", 64),
            Ok(()),
            "the handler says it is no object"
        );
        assert_eq!(
            check(b"{\"unterminated", 64),
            Ok(()),
            "the parser reports it"
        );
    }
}
