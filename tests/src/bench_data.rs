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
                    // Version 2 (an optional `purpose`, absent here): the same data.
                    .with_schema_version(2)
                    .with_id(id(&mut rng))
                    .with_occurred_at(at),
                );
            }
            CustomerEvents { stream, events }
        })
        .collect()
}

/// Products the extended data set's order lines draw from.
const PRODUCTS: u64 = 50;

/// The data set extended with the event types issues 18 and 19 added (`crm-bench
/// --crm-mix`), drawn from a random sequence of its own, so the default data set
/// ([`generate_with`]) is unchanged. After its ten events each customer also places two
/// orders with one to three lines (`OrderPlaced` version 2), decides its email marketing
/// consent (granted for two customers in three, withdrawn otherwise) and gets one outbound
/// marketing mail (`InteractionLogged` with a purpose), and every twentieth joins the email
/// campaign `cmp-1`. Then come, each a stream of its own: for every hundredth customer a
/// sales rep's `quota-u-<n>` (a monthly and a quarterly `QuotaSet`); the tenant's consent
/// regime, SLA targets and business calendar (`settings-*`); the campaign's launch and cost;
/// and for every tenth customer a case opened, answered, paused, resumed, resolved and
/// rated (`CsatRecorded`).
pub fn crm_mix(data: &mut Vec<CustomerEvents>, seed: u64) {
    let mut rng = Rng::new(seed ^ 0x18);
    let id = |rng: &mut Rng| Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
    let customers = data.len();
    for (n, customer) in data.iter_mut().enumerate() {
        let Some(mut at) = customer.events.last().and_then(|e| e.occurred_at) else {
            continue;
        };
        let customer_id = customer.stream.entity_id().to_owned();
        for o in 0..2 {
            at += Duration::minutes(1 + rng.below(60 * 24 * 20) as i64);
            let mut lines = Vec::new();
            let mut total = 0i64;
            for _ in 0..1 + rng.below(3) {
                let product = rng.below(PRODUCTS);
                let quantity = 1 + rng.below(4) as i64;
                let price = 100 + rng.below(10_000) as i64;
                total += quantity * price;
                lines.push(json!({
                    "product_id": format!("p-{product}"),
                    "name": format!("Product {product}"),
                    "quantity": quantity,
                    "unit_price": format!("{}.{:02}", price / 100, price % 100),
                }));
            }
            customer.events.push(
                NewEvent::new(
                    "OrderPlaced",
                    &json!({
                        "customer_id": customer_id,
                        "order_id": format!("o-{n}-{o}"),
                        "amount": format!("{}.{:02}", total / 100, total % 100),
                        "currency": "USD",
                        "lines": lines,
                    }),
                )
                .with_schema_version(2)
                .with_id(id(&mut rng))
                .with_occurred_at(at),
            );
        }
        at += Duration::minutes(1 + rng.below(60 * 24) as i64);
        customer.events.push(
            NewEvent::new(
                "CustomerConsentChanged",
                &json!({"customer_id": customer_id, "channel": "email", "purpose": "marketing",
                        "granted": rng.below(3) != 0}),
            )
            .with_id(id(&mut rng))
            .with_occurred_at(at),
        );
        at += Duration::minutes(1 + rng.below(60 * 24 * 5) as i64);
        customer.events.push(
            NewEvent::new(
                "InteractionLogged",
                &json!({"customer_id": customer_id, "interaction_id": format!("m-{n}"),
                        "channel": "email", "direction": "outbound", "purpose": "marketing",
                        "subject": "Spring offers"}),
            )
            .with_schema_version(2)
            .with_id(id(&mut rng))
            .with_occurred_at(at),
        );
    }
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    for rep in 0..customers.div_ceil(100) {
        let owner = format!("u-{rep}");
        let Ok(stream) = StreamId::new("quota", &owner) else {
            continue;
        };
        let events = [("2024-06", "10000.00"), ("2024-Q2", "30000.00")]
            .into_iter()
            .map(|(period, amount)| {
                NewEvent::new(
                    "QuotaSet",
                    &json!({"owner": owner, "period": period, "amount": amount, "currency": "USD"}),
                )
                .with_id(id(&mut rng))
                .with_occurred_at(start)
            })
            .collect();
        data.push(CustomerEvents { stream, events });
    }
    let settings = [
        ("consent", "ConsentRegimeSet", json!({"regime": "opt_in"})),
        (
            "sla",
            "SlaTargetsSet",
            json!({"low": {"first_response_minutes": 1440, "resolution_minutes": 10080},
                   "normal": {"first_response_minutes": 480, "resolution_minutes": 4320},
                   "high": {"first_response_minutes": 240, "resolution_minutes": 1440},
                   "urgent": {"first_response_minutes": 60, "resolution_minutes": 240},
                   "warning_percent": 80}),
        ),
        (
            "calendar",
            "BusinessCalendarSet",
            json!({"time_zone": "Europe/Paris",
                   "hours": {"monday": [["09:00", "18:00"]], "tuesday": [["09:00", "18:00"]],
                             "wednesday": [["09:00", "18:00"]], "thursday": [["09:00", "18:00"]],
                             "friday": [["09:00", "17:00"]], "saturday": [], "sunday": []},
                   "holidays": ["2024-12-25", "2025-01-01", "2025-12-25"]}),
        ),
    ];
    for (name, event_type, body) in settings {
        let Ok(stream) = StreamId::new("settings", name) else {
            continue;
        };
        let event = NewEvent::new(event_type, &body)
            .with_id(id(&mut rng))
            .with_occurred_at(start);
        data.push(CustomerEvents {
            stream,
            events: vec![event],
        });
    }
    if let Ok(stream) = StreamId::new("campaign", "cmp-1") {
        let mut events = vec![
            NewEvent::new(
                "CampaignLaunched",
                &json!({"campaign_id": "cmp-1", "name": "Spring", "channel": "email"}),
            )
            .with_schema_version(2)
            .with_id(id(&mut rng))
            .with_occurred_at(start),
            NewEvent::new(
                "CampaignCostRecorded",
                &json!({"campaign_id": "cmp-1", "amount": "2500.00", "currency": "USD"}),
            )
            .with_id(id(&mut rng))
            .with_occurred_at(start),
        ];
        for n in (0..customers).step_by(20) {
            events.push(
                NewEvent::new(
                    "CampaignMemberAdded",
                    &json!({"campaign_id": "cmp-1", "customer_id": n.to_string()}),
                )
                .with_id(id(&mut rng))
                .with_occurred_at(start + Duration::minutes(n as i64)),
            );
        }
        data.push(CustomerEvents { stream, events });
    }
    for n in (0..customers).step_by(10) {
        let case_id = format!("k-{n}");
        let Ok(stream) = StreamId::new("case", &case_id) else {
            continue;
        };
        let mut at = start + Duration::minutes(rng.below(60 * 24 * 300) as i64);
        let mut step = |kind: &str, data: serde_json::Value, rng: &mut Rng| {
            at += Duration::minutes(1 + rng.below(60 * 24) as i64);
            let version =
                crm_core::catalog::EventTypeInfo::find(kind).map_or(1, |info| info.version);
            NewEvent::new(kind, &data)
                .with_schema_version(version)
                .with_id(id(rng))
                .with_occurred_at(at)
        };
        let priority = ["low", "normal", "high", "urgent"][rng.below(4) as usize];
        let events = vec![
            step(
                "CaseOpened",
                json!({"case_id": case_id, "customer_id": n.to_string(),
                       "subject": "Cannot log in", "channel": "email", "priority": priority}),
                &mut rng,
            ),
            step(
                "CaseResponded",
                json!({"case_id": case_id, "agent": format!("a-{}", n % 7)}),
                &mut rng,
            ),
            step("CasePaused", json!({"case_id": case_id}), &mut rng),
            step("CaseResumed", json!({"case_id": case_id}), &mut rng),
            step("CaseResolved", json!({"case_id": case_id}), &mut rng),
            step(
                "CsatRecorded",
                json!({"case_id": case_id, "score": 1 + rng.below(5)}),
                &mut rng,
            ),
        ];
        data.push(CustomerEvents { stream, events });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crm_mix_adds_the_new_event_types_as_the_catalog_accepts_them() {
        let mut data = generate(200, 42);
        let plain = generate(200, 42);
        crm_mix(&mut data, 42);
        // Two sales reps' quota streams, three settings, one campaign, twenty cases.
        assert_eq!(data.len(), 200 + 2 + 3 + 1 + 20);
        for (mixed, plain) in data.iter().zip(&plain) {
            assert_eq!(mixed.events.len(), 14);
            for (e, f) in mixed.events.iter().zip(&plain.events) {
                assert_eq!(e.data.get(), f.data.get(), "the ten events are unchanged");
            }
        }
        for stream in &data {
            for event in &stream.events {
                let value: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
                let parsed = crm_core::catalog::DomainEvent::parse(&event.event_type, &value)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(parsed.stream(), stream.stream);
                assert_eq!(parsed.schema_version(), event.schema_version);
            }
        }
    }

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
