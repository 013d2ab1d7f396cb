//! Issue 14: every accepted event is projectable. A property test: catalog-shaped histories
//! whose text is hostile (NUL, C0/C1 controls, bidi overrides and isolates, BOM,
//! noncharacters, combining marks, 4-byte characters, quotes, LIKE wildcards, maximal and
//! over-long lengths) and whose amounts are maximal. Each event is judged by the catalog
//! (and its metadata by the envelope's rule): a refused one must be refused naming its field;
//! an accepted one is appended and every read model must apply it without failure (no parked
//! tenant, no projection error), the 360 view must read its name back, and the queries must
//! answer with the same text as a search. Run on a SQLite file and on PostgreSQL.

use std::sync::atomic::{AtomicUsize, Ordering};

use crm_core::catalog::{CatalogError, DomainEvent};
use crm_core::envelope::{EventMetadata, TenantId};
use crm_core::store::ExpectedRevision;
use crm_projections::ProjectionError;
use crm_projections::customer360::{self, CustomerFilter};
use crm_projections::parking;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::fixture::Fixture;

/// Cases per backend: enough to meet every kind of hostile text, few enough for CI.
const CASES: u32 = 32;

/// The catalog's longest text field (`catalog::fields::MAX_TEXT_CHARS`).
const MAX_TEXT_CHARS: usize = 10_000;

const POOL: &[char] = &[
    '\0',
    '\u{1}',
    '\u{1b}',
    '\u{1f}',
    '\u{7f}',
    '\u{85}',
    '\u{9f}',
    '\u{202e}',
    '\u{2066}',
    '\u{200f}',
    '\u{200b}',
    '\u{feff}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{10ffff}',
    '\u{0301}',
    '\u{2028}',
    '😀',
    '𝄞',
    '\n',
    '\r',
    '\t',
    ' ',
    '\'',
    '"',
    '\\',
    '%',
    '_',
    'a',
    'Z',
    'é',
    '1',
];

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => proptest::collection::vec(select(POOL), 0..24)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => (select(POOL), select(&['😀', 'a', '\u{202e}'][..])).prop_map(|(first, fill)| {
            std::iter::once(first)
                .chain(std::iter::repeat_n(fill, MAX_TEXT_CHARS - 1))
                .collect()
        }),
        1 => Just("𝄞".repeat(MAX_TEXT_CHARS + 1)),
        1 => Just("x".repeat(EventMetadata::MAX_VALUE_CHARS + 1)),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    tenant: usize,
    texts: Vec<String>,
    maximal_amounts: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..2usize,
        proptest::collection::vec(hostile_text(), 14),
        any::<bool>(),
    )
        .prop_map(|(tenant, texts, maximal_amounts)| Case {
            tenant,
            texts,
            maximal_amounts,
        })
}

/// Whether the catalog must refuse this text in a text field.
fn refused_in_data(text: &str) -> bool {
    text.trim().is_empty() || text.contains('\0') || text.chars().count() > MAX_TEXT_CHARS
}

fn refused_in_metadata(text: &str) -> bool {
    text.contains('\0') || text.chars().count() > EventMetadata::MAX_VALUE_CHARS
}

/// One event of a case: its type, data, the text fields in it, and its metadata.
struct Event {
    event_type: &'static str,
    data: Value,
    texts: Vec<(&'static str, String)>,
    metadata: EventMetadata,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn events(case: &Case) -> (String, Vec<Event>) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = |i: usize| case.texts[i].clone();
    let (c, op, k, l, cmp) = (
        format!("c-{n}"),
        format!("op-{n}"),
        format!("k-{n}"),
        format!("l-{n}"),
        format!("cmp-{n}"),
    );
    let (eur, jpy) = match case.maximal_amounts {
        true => ("92233720368547758.07", "9223372036854775807"),
        false => ("1.00", "100"),
    };
    let plain = EventMetadata::default();
    let who = EventMetadata {
        actor: Some(t(12)),
        source: Some(t(13)),
        ..EventMetadata::default()
    };
    let event = |event_type, data: Value, texts: Vec<(&'static str, String)>, metadata| Event {
        event_type,
        data,
        texts,
        metadata,
    };
    let list = vec![
        event(
            "CustomerRegistered",
            json!({"customer_id": c, "kind": "person", "name": t(0), "email": t(1),
                   "phone": t(2), "segment": t(3), "owner": "u-1"}),
            vec![
                ("name", t(0)),
                ("email", t(1)),
                ("phone", t(2)),
                ("segment", t(3)),
            ],
            who.clone(),
        ),
        event(
            "CustomerProfileUpdated",
            json!({"customer_id": c, "name": t(4)}),
            vec![("name", t(4))],
            plain.clone(),
        ),
        event(
            "InteractionLogged",
            json!({"customer_id": c, "interaction_id": "i-1", "channel": "phone",
                   "direction": "inbound", "subject": t(5), "summary": t(6)}),
            vec![("subject", t(5)), ("summary", t(6))],
            who.clone(),
        ),
        event(
            "OrderPlaced",
            json!({"customer_id": c, "order_id": "o-1", "amount": eur, "currency": "EUR"}),
            vec![],
            plain.clone(),
        ),
        event(
            "OrderPlaced",
            json!({"customer_id": c, "order_id": "o-2", "amount": eur, "currency": "EUR"}),
            vec![],
            plain.clone(),
        ),
        event(
            "OrderPlaced",
            json!({"customer_id": c, "order_id": "o-3", "amount": jpy, "currency": "JPY"}),
            vec![],
            plain.clone(),
        ),
        event(
            "OrderRefunded",
            json!({"customer_id": c, "order_id": "o-1", "amount": eur, "currency": "EUR",
                   "reason": t(7)}),
            vec![("reason", t(7))],
            plain.clone(),
        ),
        event(
            "OpportunityOpened",
            json!({"opportunity_id": op, "customer_id": c, "name": t(8), "amount": eur,
                   "currency": "EUR", "stage": "Prospecting", "close_date": "9999-12-31",
                   "owner": "u-7", "probability": 100, "forecast_category": "Best Case"}),
            vec![("name", t(8))],
            plain.clone(),
        ),
        event(
            "OpportunityOpened",
            json!({"opportunity_id": format!("{op}-b"), "customer_id": c, "name": "b",
                   "amount": eur, "currency": "EUR", "stage": "Prospecting",
                   "close_date": "2027-01-31", "probability": 100}),
            vec![],
            plain.clone(),
        ),
        event(
            "CaseOpened",
            json!({"case_id": k, "customer_id": c, "subject": t(9), "channel": "email",
                   "priority": "high", "description": t(10)}),
            vec![("subject", t(9)), ("description", t(10))],
            who.clone(),
        ),
        event(
            "CaseEscalated",
            json!({"case_id": k, "reason": t(11), "priority": "urgent"}),
            vec![("reason", t(11))],
            plain.clone(),
        ),
        event(
            "LeadCaptured",
            json!({"lead_id": l, "name": t(0), "company": t(1), "source": t(2),
                   "campaign_id": cmp}),
            vec![("name", t(0)), ("company", t(1)), ("source", t(2))],
            who,
        ),
        event(
            "CampaignLaunched",
            json!({"campaign_id": cmp, "name": t(3), "medium": t(4)}),
            vec![("name", t(3)), ("medium", t(4))],
            plain,
        ),
    ];
    (c, list)
}

/// Judges, appends and projects one case; panics (failing the property) on any breach.
async fn check(fixture: &Fixture, case: Case) {
    let tenant = TenantId::parse(["acme", "globex"][case.tenant]).expect("tenant");
    let (customer, list) = events(&case);
    let mut name = None;
    for event in list {
        let parsed = DomainEvent::parse(event.event_type, &event.data);
        let bad_text = event.texts.iter().find(|(_, text)| refused_in_data(text));
        match (parsed, bad_text) {
            (Ok(_), Some((field, text))) => panic!(
                "{} accepted {field} = {:?}",
                event.event_type,
                text.chars().take(40).collect::<String>()
            ),
            (Err(CatalogError::InvalidData { path, .. }), Some(_)) => {
                assert!(
                    event
                        .texts
                        .iter()
                        .any(|(field, text)| path == format!("data.{field}")
                            && refused_in_data(text)),
                    "{}: refused at {path}, which is not a refused field",
                    event.event_type
                );
                continue;
            }
            (Err(error), _) => panic!("{}: unexpected refusal: {error}", event.event_type),
            (Ok(parsed), None) => {
                let bad_meta = [&event.metadata.actor, &event.metadata.source]
                    .into_iter()
                    .flatten()
                    .any(|text| refused_in_metadata(text));
                match event.metadata.unstorable_value() {
                    Some((path, _)) => {
                        assert!(bad_meta, "metadata refused at {path} without cause");
                        assert!(path.starts_with("metadata."), "{path}");
                        continue;
                    }
                    None => assert!(!bad_meta, "hostile metadata accepted"),
                }
                if let DomainEvent::CustomerRegistered(e) = &parsed {
                    name.get_or_insert(e.name.clone());
                }
                if let DomainEvent::CustomerProfileUpdated(e) = &parsed
                    && name.is_some()
                {
                    name = e.name.clone().or(name);
                }
                let new = parsed.to_new_event().with_metadata(&event.metadata);
                fixture
                    .store
                    .append(&tenant, &parsed.stream(), ExpectedRevision::Any, vec![new])
                    .await
                    .unwrap_or_else(|e| panic!("{}: append failed: {e}", event.event_type));
            }
        }
    }
    fixture.catch_up().await;
    let failures = parking::stored_failures(&fixture.db)
        .await
        .expect("failures");
    assert!(failures.is_empty(), "a tenant was parked: {failures:?}");
    let errors = parking::stored_errors(&fixture.db).await.expect("errors");
    assert!(errors.is_empty(), "a projection failed: {errors:?}");
    // The events here are appended straight to the store, past ingest's money check, so
    // maximal amounts can add up beyond any total: a read model then answers that error
    // (422 in the API), never a wrapped, clipped or panicking total.
    let answered = |result: Result<(), ProjectionError>, what: &str| match result {
        Ok(()) | Err(ProjectionError::TotalOverflow { .. }) => {}
        Err(error) => panic!("{what} answers: {error:?}"),
    };
    match customer360::view(&fixture.db, tenant.as_str(), &customer, chrono::Utc::now()).await {
        Ok(view) => {
            if let Some(expected) = name {
                let view = view.expect("registered customer in the 360 view");
                assert_eq!(view.name, Some(expected), "the name reads back as sent");
            }
        }
        Err(error) => answered(Err(error), "the 360 view"),
    }
    answered(
        crm_projections::pipeline::summary(&fixture.db, tenant.as_str())
            .await
            .map(drop),
        "the pipeline summary",
    );
    crm_projections::backlog::backlog(&fixture.db, tenant.as_str(), chrono::Utc::now(), 0, 50)
        .await
        .expect("the backlog answers");
    for search in [&case.texts[0], &case.texts[3]] {
        let filter = CustomerFilter {
            search: Some(search.clone()),
            segment: Some(case.texts[3].clone()),
            owner: None,
            status: None,
            after: None,
            limit: 10,
        };
        customer360::list(&fixture.db, tenant.as_str(), &filter)
            .await
            .expect("a search with hostile text answers");
    }
}

/// The property, on one backend's fixture.
pub fn every_accepted_event_is_projectable(runtime: &tokio::runtime::Runtime, fixture: &Fixture) {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        runtime.block_on(check(fixture, case));
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
