//! The benchmark data set of `docs/benchmarks.md` ("The workloads"): deterministic (seed 42),
//! customer n has stream `customer-<n>` with one `CustomerRegistered` and nine `InteractionLogged`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_core::envelope::{NewEvent, StreamId};
use serde_json::json;
use uuid::Uuid;

/// SplitMix64: tiny, fast and deterministic, which is all a data generator needs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const CHANNELS: [&str; 6] = ["email", "phone", "chat", "social", "web", "meeting"];
const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];
const SEGMENTS: [&str; 4] = ["smb", "mid-market", "enterprise", "consumer"];
const WORDS: [&str; 16] = [
    "invoice", "renewal", "billing", "question", "upgrade", "contract", "support", "login",
    "delivery", "refund", "pricing", "meeting", "demo", "feedback", "account", "order",
];

fn words(rng: &mut Rng, target_len: usize) -> String {
    let mut text = String::with_capacity(target_len + 12);
    while text.len() < target_len {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    text.truncate(target_len);
    text
}

/// One customer's ten events, in order.
#[derive(Debug)]
pub struct CustomerEvents {
    pub stream: StreamId,
    pub events: Vec<NewEvent>,
}

/// Generates `customers` customers' events. The same seed gives the same events, ids
/// included.
pub fn generate(customers: u64, seed: u64) -> Vec<CustomerEvents> {
    generate_with(customers, seed, false)
}

/// [`generate`], with `phone` also giving each registration a phone number, so every
/// personal field of the data set is filled (`crm-bench --seal`).
pub fn generate_with(customers: u64, seed: u64, phone: bool) -> Vec<CustomerEvents> {
    let mut rng = Rng::new(seed);
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..customers)
        .map(|n| {
            let customer_id = n.to_string();
            let stream = StreamId::new("customer", &customer_id).unwrap_or_else(|_| {
                StreamId::parse("customer-invalid").unwrap_or_else(|_| unreachable!())
            });
            let mut at = start + Duration::minutes(rng.below(60 * 24 * 365) as i64);
            let mut events = Vec::with_capacity(10);
            let id = |rng: &mut Rng| Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
            events.push(
                NewEvent::new(
                    "CustomerRegistered",
                    &json!({
                        "customer_id": customer_id,
                        "kind": "person",
                        "name": format!("Customer {n} {}", words(&mut rng, 12)),
                        "email": format!("customer{n}@example.com"),
                        "segment": SEGMENTS[rng.below(4) as usize],
                    }),
                )
                .with_id(id(&mut rng))
                .with_occurred_at(at),
            );
            if phone {
                let registered = &mut events[0];
                let mut data: serde_json::Value =
                    serde_json::from_str(registered.data.get()).unwrap_or_default();
                data["phone"] = json!(format!("+1 555 {:07}", n % 10_000_000));
                registered.data = crm_core::envelope::canonical_json(&data);
            }
            for i in 0..9 {
                at += Duration::minutes(1 + rng.below(60 * 24 * 20) as i64);
                events.push(
                    NewEvent::new(
                        "InteractionLogged",
                        &json!({
                            "customer_id": customer_id,
                            "interaction_id": format!("i-{n}-{i}"),
                            "channel": CHANNELS[rng.below(6) as usize],
                            "direction": DIRECTIONS[rng.below(2) as usize],
                            "subject": words(&mut rng, 30),
                            "summary": words(&mut rng, 120),
                        }),
                    )
                    .with_id(id(&mut rng))
                    .with_occurred_at(at),
                );
            }
            CustomerEvents { stream, events }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events_of_about_250_bytes() {
        let a = generate(20, 42);
        let b = generate(20, 42);
        assert_eq!(a.len(), 20);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.events.len(), 10);
            for (e, f) in x.events.iter().zip(&y.events) {
                assert_eq!(e.event_id, f.event_id);
                assert_eq!(e.data.get(), f.data.get());
            }
        }
        let interaction_bytes: usize = a
            .iter()
            .flat_map(|c| c.events.iter().skip(1))
            .map(|e| e.data.get().len())
            .sum::<usize>()
            / (20 * 9);
        assert!(
            (220..=300).contains(&interaction_bytes),
            "{interaction_bytes}"
        );
        assert_ne!(
            generate(1, 43)[0].events[0].event_id,
            a[0].events[0].event_id
        );
    }
}

#[cfg(test)]
mod catalog_tests {
    use super::generate;
    use crm_core::catalog::DomainEvent;

    #[test]
    fn every_benchmark_event_is_valid_in_the_catalog() {
        for customer in generate(50, 42) {
            for event in &customer.events {
                let data: serde_json::Value = serde_json::from_str(event.data.get()).expect("json");
                let parsed = DomainEvent::parse(&event.event_type, &data)
                    .unwrap_or_else(|e| panic!("{}: {e}", event.event_type));
                assert_eq!(parsed.stream(), customer.stream);
            }
        }
    }
}
