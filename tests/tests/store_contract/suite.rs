//! The contract every event store backend must meet. Each function gets a fresh store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use crm_core::envelope::{EventMetadata, NewEvent, StreamId, TenantId};
use crm_core::store::{
    Direction, ExpectedRevision, FindingKind, MAX_EVENTS_PER_APPEND, Scope, StoreError,
    StreamExpectation, StreamStart, subscribe_all, verify, verify_stream,
};
use serde_json::json;
use uuid::Uuid;

use crate::fixture::Fixture;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("tenant id")
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).expect("stream id")
}

fn logged(n: u32) -> NewEvent {
    NewEvent::new(
        "InteractionLogged",
        &json!({"customer_id": "c-1", "interaction_id": format!("i-{n}"), "channel": "phone"}),
    )
}

fn batch(count: u32) -> Vec<NewEvent> {
    (0..count).map(logged).collect()
}

const WAIT: Duration = Duration::from_secs(10);

pub async fn appends_assign_revisions_from_zero_and_gap_free_positions(f: &Fixture) {
    let t = tenant("t1");
    let first = f
        .store
        .append(
            &t,
            &stream("customer-1"),
            ExpectedRevision::NoStream,
            batch(3),
        )
        .await
        .expect("first append");
    assert_eq!(
        first.events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        first.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(first.stream_revision, 2);
    assert_eq!(first.last_position, 3);
    assert!(first.events.iter().all(|e| !e.duplicate));

    let second = f
        .store
        .append(&t, &stream("customer-2"), ExpectedRevision::Any, batch(1))
        .await
        .expect("second stream");
    assert_eq!(second.events[0].revision, 0);
    assert_eq!(second.events[0].position, 4);

    let third = f
        .store
        .append(
            &t,
            &stream("customer-1"),
            ExpectedRevision::Exact(2),
            batch(2),
        )
        .await
        .expect("exact revision");
    assert_eq!(
        third
            .events
            .iter()
            .map(|e| (e.revision, e.position))
            .collect::<Vec<_>>(),
        [(3, 5), (4, 6)]
    );
    assert_eq!(f.store.head_position().await.expect("head"), 6);
}

pub async fn wrong_expected_revisions_are_typed_conflicts_that_store_nothing(f: &Fixture) {
    let t = tenant("t1");
    let s = stream("opportunity-op-5");
    let conflict = f
        .store
        .append(&t, &s, ExpectedRevision::StreamExists, batch(1))
        .await
        .expect_err("stream does not exist yet");
    assert!(
        matches!(
            conflict,
            StoreError::WrongExpectedRevision { actual: None, .. }
        ),
        "{conflict:?}"
    );
    assert!(conflict.is_conflict());
    let conflict = f
        .store
        .append(&t, &s, ExpectedRevision::Exact(0), batch(1))
        .await
        .expect_err("no revision 0 yet");
    assert!(matches!(conflict, StoreError::WrongExpectedRevision { .. }));

    f.store
        .append(&t, &s, ExpectedRevision::NoStream, batch(2))
        .await
        .expect("create");
    for expected in [
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(0),
        ExpectedRevision::Exact(2),
    ] {
        let conflict = f
            .store
            .append(&t, &s, expected, batch(1))
            .await
            .expect_err("stale expectation");
        match conflict {
            StoreError::WrongExpectedRevision {
                stream,
                expected: e,
                actual,
            } => {
                assert_eq!(stream, s.as_str());
                assert_eq!(e, expected);
                assert_eq!(actual, Some(1));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(f.store.head_position().await.expect("head"), 2);
    f.store
        .append(&t, &s, ExpectedRevision::StreamExists, batch(1))
        .await
        .expect("stream exists");
    f.store
        .append(&t, &s, ExpectedRevision::Any, batch(1))
        .await
        .expect("any");
    let events = f
        .store
        .read_stream(&t, &s, Direction::Forwards, StreamStart::Boundary, 100)
        .await
        .expect("read");
    assert_eq!(events.len(), 4);
}

pub async fn re_appending_the_same_ids_is_acknowledged_as_duplicate_and_stores_nothing(
    f: &Fixture,
) {
    let t = tenant("t1");
    let s = stream("customer-7");
    let events = batch(3);
    let first = f
        .store
        .append(&t, &s, ExpectedRevision::NoStream, events.clone())
        .await
        .expect("first");
    // The retry carries a now-stale expectation and still succeeds, as duplicates.
    let retry = f
        .store
        .append(&t, &s, ExpectedRevision::NoStream, events.clone())
        .await
        .expect("retry is acknowledged");
    assert!(retry.events.iter().all(|e| e.duplicate));
    assert_eq!(
        retry
            .events
            .iter()
            .map(|e| (e.revision, e.position))
            .collect::<Vec<_>>(),
        first
            .events
            .iter()
            .map(|e| (e.revision, e.position))
            .collect::<Vec<_>>()
    );
    assert_eq!(retry.last_position, first.last_position);
    assert_eq!(f.store.head_position().await.expect("head"), 3);

    // A batch mixing an old id with a new one stores only the new one.
    let mut mixed = vec![events[1].clone()];
    mixed.push(logged(99));
    let outcome = f
        .store
        .append(&t, &s, ExpectedRevision::Exact(2), mixed)
        .await
        .expect("mixed");
    assert!(outcome.events[0].duplicate);
    assert_eq!(outcome.events[0].revision, 1);
    assert!(!outcome.events[1].duplicate);
    assert_eq!(outcome.events[1].revision, 3);
    assert_eq!(outcome.stream_revision, 3);
    let stored = f
        .store
        .read_stream(&t, &s, Direction::Forwards, StreamStart::Boundary, 100)
        .await
        .expect("read");
    assert_eq!(stored.len(), 4);
    let ids: HashSet<Uuid> = stored.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 4);
}

pub async fn event_ids_are_idempotency_keys_within_their_stream(f: &Fixture) {
    let t = tenant("t1");
    let event = logged(1);
    f.store
        .append(
            &t,
            &stream("customer-1"),
            ExpectedRevision::Any,
            vec![event.clone()],
        )
        .await
        .expect("first");
    // The same id in another stream is another event.
    let elsewhere = f
        .store
        .append(
            &t,
            &stream("customer-2"),
            ExpectedRevision::Any,
            vec![event.clone()],
        )
        .await
        .expect("same id, other stream");
    assert!(!elsewhere.events[0].duplicate);
    assert_eq!(elsewhere.events[0].position, 2);
    // The same id in the same stream for an event of another type is refused.
    let mut other_type = event.clone();
    other_type.event_type = "OrderPlaced".into();
    let error = f
        .store
        .append(
            &t,
            &stream("customer-1"),
            ExpectedRevision::Any,
            vec![other_type],
        )
        .await
        .expect_err("same id, other type");
    assert!(
        matches!(&error, StoreError::EventIdReused { stored_type, .. } if stored_type == "InteractionLogged"),
        "{error:?}"
    );
    assert!(error.is_conflict());
    assert_eq!(f.store.head_position().await.expect("head"), 2);
}

pub async fn a_failed_batch_leaves_nothing_of_itself_visible(f: &Fixture) {
    let t = tenant("t1");
    let s = stream("case-k-3");
    let stored = logged(0);
    f.store
        .append(
            &t,
            &stream("case-other"),
            ExpectedRevision::Any,
            vec![stored.clone()],
        )
        .await
        .expect("seed");

    // The last event conflicts (its id is stored with another type): nothing is written.
    f.store
        .append(&t, &s, ExpectedRevision::Any, vec![stored.clone()])
        .await
        .expect("seed the stream");
    let mut reused = stored;
    reused.event_type = "OrderPlaced".into();
    let mut events = batch(5);
    events.push(reused);
    assert!(
        f.store
            .append(&t, &s, ExpectedRevision::Any, events)
            .await
            .is_err()
    );
    // The last event has an invalid type: refused before anything is written.
    let mut events = batch(5);
    events.push(NewEvent::new("not a type!", &json!({})));
    let error = f
        .store
        .append(&t, &s, ExpectedRevision::Any, events)
        .await
        .expect_err("invalid type");
    assert!(error.to_string().contains("event 5"), "{error}");
    // Repeated ids within one call.
    let event = logged(1);
    let error = f
        .store
        .append(&t, &s, ExpectedRevision::Any, vec![event.clone(), event])
        .await
        .expect_err("repeated id");
    assert!(matches!(error, StoreError::InvalidInput(_)));
    // An empty call.
    assert!(
        f.store
            .append(&t, &s, ExpectedRevision::Any, vec![])
            .await
            .is_err()
    );

    assert_eq!(
        f.store
            .read_stream(&t, &s, Direction::Forwards, StreamStart::Boundary, 100)
            .await
            .expect("read")
            .len(),
        1
    );
    assert_eq!(
        f.store
            .read_all(&Scope::AllTenants, 0, 100)
            .await
            .expect("all")
            .len(),
        2
    );
    assert_eq!(
        f.store
            .stream_head(&t, &s)
            .await
            .expect("head")
            .expect("exists")
            .revision,
        0
    );
}

pub async fn streams_read_forwards_and_backwards_from_a_revision(f: &Fixture) {
    let t = tenant("t1");
    let s = stream("lead-l-1");
    f.store
        .append(&t, &s, ExpectedRevision::NoStream, batch(10))
        .await
        .expect("append");
    f.store
        .append(
            &t,
            &stream("lead-l-2"),
            ExpectedRevision::NoStream,
            batch(3),
        )
        .await
        .expect("other stream");
    let read = |direction, start, limit| {
        let store = Arc::clone(&f.store);
        let (t, s) = (t.clone(), s.clone());
        async move {
            store
                .read_stream(&t, &s, direction, start, limit)
                .await
                .expect("read")
                .iter()
                .map(|e| e.revision)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        read(Direction::Forwards, StreamStart::Boundary, 100).await,
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        read(Direction::Forwards, StreamStart::Revision(7), 100).await,
        [7, 8, 9]
    );
    assert_eq!(
        read(Direction::Forwards, StreamStart::Revision(2), 3).await,
        [2, 3, 4]
    );
    assert_eq!(
        read(Direction::Backwards, StreamStart::Boundary, 3).await,
        [9, 8, 7]
    );
    assert_eq!(
        read(Direction::Backwards, StreamStart::Revision(1), 100).await,
        [1, 0]
    );
    assert!(
        read(Direction::Forwards, StreamStart::Revision(10), 100)
            .await
            .is_empty()
    );
    let missing = f
        .store
        .read_stream(
            &t,
            &stream("lead-none"),
            Direction::Forwards,
            StreamStart::Boundary,
            10,
        )
        .await
        .expect("read missing");
    assert!(missing.is_empty());
}

pub async fn the_log_reads_in_position_order_in_batches(f: &Fixture) {
    let t = tenant("t1");
    for n in 0..5 {
        f.store
            .append(
                &t,
                &stream(&format!("customer-{n}")),
                ExpectedRevision::NoStream,
                batch(4),
            )
            .await
            .expect("append");
    }
    let mut positions = Vec::new();
    let mut after = 0;
    loop {
        let events = f
            .store
            .read_all(&Scope::AllTenants, after, 7)
            .await
            .expect("read all");
        let Some(last) = events.last() else { break };
        assert!(events.len() <= 7);
        after = last.position;
        positions.extend(events.iter().map(|e| e.position));
    }
    assert_eq!(positions, (1..=20).collect::<Vec<_>>());
    let tail = f
        .store
        .read_all(&Scope::Tenant(t.clone()), 18, 100)
        .await
        .expect("tail");
    assert_eq!(
        tail.iter().map(|e| e.position).collect::<Vec<_>>(),
        [19, 20]
    );
    assert_eq!(tail[1].stream_id.as_str(), "customer-4");
    assert_eq!(tail[1].revision, 3);
}

pub async fn envelopes_round_trip_exactly(f: &Fixture) {
    let t = tenant("acme");
    let occurred = Utc
        .with_ymd_and_hms(2026, 3, 2, 10, 15, 0)
        .single()
        .expect("date")
        + chrono::Duration::microseconds(123_456);
    let metadata = EventMetadata {
        actor: Some("u-7".into()),
        source: Some("phone-system".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: None,
        extra: Default::default(),
    };
    let id = Uuid::new_v4();
    let data = json!({"customer_id": "c-42", "amount": "11.77", "currency": "USD", "nested": {"b": 1, "a": [1, 2]}});
    let event = NewEvent::new("OrderPlaced", &data)
        .with_id(id)
        .with_schema_version(2)
        .with_occurred_at(occurred)
        .with_metadata(&metadata);
    let before = Utc::now() - chrono::Duration::seconds(1);
    f.store
        .append(
            &t,
            &stream("customer-c-42"),
            ExpectedRevision::Any,
            vec![event],
        )
        .await
        .expect("append");
    let stored = f
        .store
        .read_all(&Scope::Tenant(t.clone()), 0, 10)
        .await
        .expect("read");
    let e = &stored[0];
    assert_eq!(e.tenant, t);
    assert_eq!(e.stream_id.as_str(), "customer-c-42");
    assert_eq!(e.event_id, id);
    assert_eq!(e.event_type, "OrderPlaced");
    assert_eq!(e.schema_version, 2);
    assert_eq!(e.decode_data::<serde_json::Value>().expect("data"), data);
    assert_eq!(
        e.data.get(),
        r#"{"amount":"11.77","currency":"USD","customer_id":"c-42","nested":{"a":[1,2],"b":1}}"#
    );
    assert_eq!(e.decode_metadata().expect("metadata"), metadata);
    assert_eq!(e.occurred_at, occurred);
    assert!(e.recorded_at >= before && e.recorded_at <= Utc::now());

    // Without a business time, the event occurred when it was recorded.
    f.store
        .append(
            &t,
            &stream("customer-c-42"),
            ExpectedRevision::Any,
            batch(1),
        )
        .await
        .expect("append");
    let stored = f
        .store
        .read_all(&Scope::Tenant(t), 1, 10)
        .await
        .expect("read");
    assert_eq!(stored[0].occurred_at, stored[0].recorded_at);
}

pub async fn subscriptions_catch_up_then_receive_live_events(f: &Fixture) {
    let t = tenant("t1");
    f.store
        .append(&t, &stream("customer-1"), ExpectedRevision::Any, batch(5))
        .await
        .expect("seed");
    let mut subscription =
        subscribe_all(Arc::clone(&f.store), Scope::AllTenants, 2).with_batch_size(2);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(WAIT, subscription.next())
            .await
            .expect("catch-up in time")
            .expect("event");
        seen.push(event.position);
    }
    assert_eq!(seen, [3, 4, 5]);
    assert_eq!(subscription.position(), 5);

    // Nothing more yet: the subscription waits rather than returning.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), subscription.next())
            .await
            .is_err()
    );
    let store = Arc::clone(&f.store);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in 0..3 {
            store
                .append(
                    &tenant("t2"),
                    &stream(&format!("case-{n}")),
                    ExpectedRevision::Any,
                    batch(2),
                )
                .await
                .expect("live append");
        }
    });
    while seen.len() < 9 {
        let event = tokio::time::timeout(WAIT, subscription.next())
            .await
            .expect("live event in time")
            .expect("event");
        seen.push(event.position);
    }
    writer.await.expect("writer");
    assert_eq!(seen, (3..=11).collect::<Vec<_>>());
}

/// Full batches start the next read ahead; with appends landing meanwhile, every event is
/// still delivered once, in order, and the subscription then waits for more.
pub async fn subscriptions_reading_ahead_deliver_every_event_once(f: &Fixture) {
    let store = Arc::clone(&f.store);
    let writer = tokio::spawn(async move {
        for n in 0..40 {
            store
                .append(
                    &tenant("t1"),
                    &stream(&format!("customer-{}", n % 7)),
                    ExpectedRevision::Any,
                    batch(1 + n % 3),
                )
                .await
                .expect("append");
            if n % 5 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let total: u64 = (0..40).map(|n| 1 + n % 3).sum();
    let mut subscription =
        subscribe_all(Arc::clone(&f.store), Scope::AllTenants, 0).with_batch_size(3);
    let mut seen = Vec::new();
    while (seen.len() as u64) < total {
        let batch = tokio::time::timeout(WAIT, subscription.next_batch())
            .await
            .expect("events in time")
            .expect("batch");
        seen.extend(batch.iter().map(|e| e.position));
    }
    writer.await.expect("writer");
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), subscription.next())
            .await
            .is_err(),
        "nothing beyond the head"
    );
}

pub async fn subscriptions_see_appends_from_another_store_handle(f: &Fixture) {
    let other = f.reopen().await;
    let mut subscription = subscribe_all(Arc::clone(&f.store), Scope::AllTenants, 0);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        other
            .append(
                &tenant("t1"),
                &stream("customer-1"),
                ExpectedRevision::Any,
                batch(2),
            )
            .await
            .expect("append elsewhere");
    });
    let first = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("noticed within the poll interval")
        .expect("event");
    assert_eq!(first.position, 1);
    writer.await.expect("writer");
}

pub async fn concurrent_writers_to_one_stream_have_exactly_one_winner_per_revision(f: &Fixture) {
    let t = tenant("t1");
    let s = stream("opportunity-hot");
    f.store
        .append(&t, &s, ExpectedRevision::NoStream, batch(1))
        .await
        .expect("seed");
    let writers = 8;
    let rounds = 5;
    let mut handles = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(&f.store);
        let (t, s) = (t.clone(), s.clone());
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut conflicts = 0u32;
            while wins.len() < rounds {
                let head = store
                    .read_stream(&t, &s, Direction::Backwards, StreamStart::Boundary, 1)
                    .await
                    .expect("head")[0]
                    .revision;
                match store
                    .append(&t, &s, ExpectedRevision::Exact(head), vec![logged(writer)])
                    .await
                {
                    Ok(outcome) => {
                        assert_eq!(outcome.events[0].revision, head + 1);
                        wins.push(head + 1);
                    }
                    Err(StoreError::WrongExpectedRevision { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (wins, conflicts)
        }));
    }
    let mut revisions = Vec::new();
    for handle in handles {
        let (wins, _conflicts) = handle.await.expect("writer");
        revisions.extend(wins);
    }
    revisions.sort_unstable();
    let total = (writers as u64) * rounds as u64;
    // Every revision was won exactly once.
    assert_eq!(revisions, (1..=total).collect::<Vec<_>>());
    let events = f
        .store
        .read_stream(&t, &s, Direction::Forwards, StreamStart::Boundary, 1000)
        .await
        .expect("read");
    assert_eq!(events.len() as u64, total + 1);
    assert!(
        verify_stream(f.store.as_ref(), &t, &s)
            .await
            .expect("verify")
            .is_intact()
    );

    // A burst of appends all expecting the same revision: exactly one wins.
    let head = total;
    let mut burst = Vec::new();
    for writer in 0..16 {
        let store = Arc::clone(&f.store);
        let (t, s) = (t.clone(), s.clone());
        burst.push(tokio::spawn(async move {
            store
                .append(
                    &t,
                    &s,
                    ExpectedRevision::Exact(head),
                    vec![logged(100 + writer)],
                )
                .await
        }));
    }
    let mut winners = 0;
    for handle in burst {
        match handle.await.expect("burst writer") {
            Ok(_) => winners += 1,
            Err(error) => assert!(error.is_conflict(), "{error}"),
        }
    }
    assert_eq!(winners, 1);
}

pub async fn tenants_never_see_each_others_events(f: &Fixture) {
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    let s = stream("customer-c-1");
    let shared_id = logged(0);
    f.store
        .append(
            &a,
            &s,
            ExpectedRevision::NoStream,
            vec![shared_id.clone(), logged(1)],
        )
        .await
        .expect("tenant a");
    // The same stream name and even the same event id are independent in another tenant.
    let outcome = f
        .store
        .append(&b, &s, ExpectedRevision::NoStream, vec![shared_id])
        .await
        .expect("tenant b");
    assert!(!outcome.events[0].duplicate);
    assert_eq!(outcome.events[0].revision, 0);

    let read_b = f
        .store
        .read_stream(&b, &s, Direction::Forwards, StreamStart::Boundary, 100)
        .await
        .expect("read b");
    assert_eq!(read_b.len(), 1);
    assert!(read_b.iter().all(|e| e.tenant == b));
    let all_b = f
        .store
        .read_all(&Scope::Tenant(b.clone()), 0, 100)
        .await
        .expect("all b");
    assert_eq!(all_b.len(), 1);
    assert_eq!(all_b[0].position, 3);
    let all_a = f
        .store
        .read_all(&Scope::Tenant(a.clone()), 0, 100)
        .await
        .expect("all a");
    assert_eq!(all_a.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2]);
    assert!(
        f.store
            .stream_head(&tenant("tenant-c"), &s)
            .await
            .expect("head")
            .is_none()
    );
    let heads = f
        .store
        .stream_heads(&Scope::Tenant(b.clone()), None, 100)
        .await
        .expect("heads");
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].tenant, b);
    let report = verify(f.store.as_ref(), &Scope::Tenant(a))
        .await
        .expect("verify a");
    assert!(report.is_intact());
    assert_eq!(report.events_checked, 2);
}

async fn seed_three_streams(f: &Fixture) {
    let t = tenant("t1");
    for n in 0..3 {
        f.store
            .append(
                &t,
                &stream(&format!("customer-{n}")),
                ExpectedRevision::NoStream,
                batch(4),
            )
            .await
            .expect("seed");
    }
}

pub async fn an_intact_log_verifies(f: &Fixture) {
    seed_three_streams(f).await;
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.events_checked, 12);
    assert_eq!(report.streams_checked, 3);
    let one = verify_stream(f.store.as_ref(), &tenant("t1"), &stream("customer-1"))
        .await
        .expect("verify stream");
    assert!(one.is_intact());
    assert_eq!(one.events_checked, 4);
}

pub async fn verify_names_an_event_whose_data_was_changed(f: &Fixture) {
    seed_three_streams(f).await;
    // Position 6 is customer-1, revision 1.
    f.raw_sql(
        r#"UPDATE crm_events SET data = '{"customer_id":"c-1","channel":"email"}' WHERE position = 6"#,
        true,
    )
    .await
    .expect("tamper");
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    let failure = report.first_failure.expect("tampering is found");
    assert_eq!(failure.kind, FindingKind::Changed);
    assert_eq!(failure.position, Some(6));
    assert_eq!(failure.stream_id.as_deref(), Some("customer-1"));
    assert_eq!(failure.revision, Some(1));
    let one = verify_stream(f.store.as_ref(), &tenant("t1"), &stream("customer-1"))
        .await
        .expect("verify stream");
    assert_eq!(one.first_failure.expect("found").position, Some(6));
    let other = verify_stream(f.store.as_ref(), &tenant("t1"), &stream("customer-2"))
        .await
        .expect("verify other stream");
    assert!(other.is_intact());
}

pub async fn verify_names_the_gap_where_an_event_was_removed(f: &Fixture) {
    seed_three_streams(f).await;
    f.raw_sql("DELETE FROM crm_events WHERE position = 2", true)
        .await
        .expect("tamper");
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    let failure = report.first_failure.expect("removal is found");
    assert_eq!(failure.kind, FindingKind::Removed);
    assert_eq!(failure.position, Some(3));
    assert_eq!(failure.stream_id.as_deref(), Some("customer-0"));
    assert_eq!(failure.revision, Some(2));
    assert!(
        failure.detail.contains("revision 1 is missing"),
        "{failure}"
    );
    // The tenant's and the stream's own checks name the same break, word for word.
    let tenant_only = verify(f.store.as_ref(), &Scope::Tenant(tenant("t1")))
        .await
        .expect("verify tenant");
    assert_eq!(tenant_only.first_failure.as_ref(), Some(&failure));
    let one = verify_stream(f.store.as_ref(), &tenant("t1"), &stream("customer-0"))
        .await
        .expect("verify stream");
    assert_eq!(one.first_failure.as_ref(), Some(&failure));
}

pub async fn verify_names_a_gap_that_no_chain_shows(f: &Fixture) {
    seed_three_streams(f).await;
    // A whole stream removed with its recorded head: only the log's positions show it.
    f.raw_sql(
        "DELETE FROM crm_events WHERE stream_id = 'customer-1'; \
         DELETE FROM crm_streams WHERE stream_id = 'customer-1';",
        true,
    )
    .await
    .expect("tamper");
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    let failure = report.first_failure.expect("removal is found");
    assert_eq!(failure.kind, FindingKind::Removed);
    assert_eq!(failure.position, Some(9));
    assert!(failure.detail.contains("positions 5..8"), "{failure}");
}

pub async fn verify_notices_a_removed_last_event(f: &Fixture) {
    seed_three_streams(f).await;
    // The very last event of the log: no position gap shows it, the stream head does.
    f.raw_sql("DELETE FROM crm_events WHERE position = 12", true)
        .await
        .expect("tamper");
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    let failure = report.first_failure.expect("truncation is found");
    assert_eq!(failure.kind, FindingKind::Removed);
    assert_eq!(failure.stream_id.as_deref(), Some("customer-2"));
    assert_eq!(failure.revision, Some(3));
}

pub async fn the_event_table_refuses_updates_and_deletes(f: &Fixture) {
    seed_three_streams(f).await;
    let update = f
        .raw_sql(
            "UPDATE crm_events SET event_type = 'X' WHERE position = 1",
            false,
        )
        .await
        .expect_err("update refused");
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = f
        .raw_sql("DELETE FROM crm_events WHERE position = 1", false)
        .await
        .expect_err("delete refused");
    assert!(delete.to_string().contains("append-only"), "{delete}");
    assert!(
        verify(f.store.as_ref(), &Scope::AllTenants)
            .await
            .expect("verify")
            .is_intact()
    );
}

pub async fn reopening_a_store_keeps_every_acknowledged_event(f: &Fixture) {
    seed_three_streams(f).await;
    let reopened = f.reopen().await;
    assert_eq!(reopened.head_position().await.expect("head"), 12);
    let outcome = reopened
        .append(
            &tenant("t1"),
            &stream("customer-0"),
            ExpectedRevision::Exact(3),
            batch(1),
        )
        .await
        .expect("append after reopen");
    assert_eq!(outcome.events[0].position, 13);
    assert!(
        verify(reopened.as_ref(), &Scope::AllTenants)
            .await
            .expect("verify")
            .is_intact()
    );
}

pub async fn an_abandoned_append_neither_blocks_the_store_nor_half_writes(f: &Fixture) {
    let t = tenant("t1");
    let s = stream("customer-cancel");
    let mut batches = Vec::new();
    // Drop appends at many different instants of their life, including mid-transaction.
    for n in 0..60u64 {
        let events = batch(5);
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let append = f.store.append(&t, &s, ExpectedRevision::Any, events);
        let _ = tokio::time::timeout(Duration::from_micros(n * 25), append).await;
        batches.push(ids);
    }
    // The store still takes appends, and every abandoned batch is stored whole or not at all.
    tokio::time::timeout(
        WAIT,
        f.store.append(&t, &s, ExpectedRevision::Any, batch(1)),
    )
    .await
    .expect("the writer is not left locked")
    .expect("append after abandoned ones");
    let stored: HashSet<Uuid> = f
        .store
        .read_stream(&t, &s, Direction::Forwards, StreamStart::Boundary, 10_000)
        .await
        .expect("read")
        .iter()
        .map(|e| e.event_id)
        .collect();
    for ids in &batches {
        let present = ids.iter().filter(|id| stored.contains(id)).count();
        assert!(
            present == 0 || present == ids.len(),
            "a batch was half-written"
        );
    }
    assert!(
        verify(f.store.as_ref(), &Scope::AllTenants)
            .await
            .expect("verify")
            .is_intact()
    );
}

pub async fn two_store_handles_appending_in_turn_keep_one_consistent_log(f: &Fixture) {
    let other = f.reopen().await;
    let t = tenant("t1");
    let shared = stream("customer-shared");
    let handles = [Arc::clone(&f.store), other];
    let mut expected_revision = None;
    for round in 0..12u32 {
        let store = &handles[(round % 2) as usize];
        // Alternate between a stream both handles write and streams only one writes.
        let outcome = store
            .append(
                &t,
                &shared,
                expected_revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact),
                batch(2),
            )
            .await
            .expect("append to the shared stream");
        expected_revision = Some(outcome.stream_revision);
        store
            .append(
                &t,
                &stream(&format!("customer-own-{}", round % 2)),
                ExpectedRevision::Any,
                batch(1),
            )
            .await
            .expect("append to an own stream");
    }
    // A stale expectation through either handle is still refused.
    for store in &handles {
        let error = store
            .append(&t, &shared, ExpectedRevision::Exact(0), batch(1))
            .await
            .expect_err("stale");
        assert!(error.is_conflict());
    }
    let events = f
        .store
        .read_all(&Scope::AllTenants, 0, 1000)
        .await
        .expect("read");
    assert_eq!(events.len(), 36);
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=36).collect::<Vec<_>>()
    );
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.streams_checked, 3);
}

pub async fn verify_names_events_whose_order_was_swapped(f: &Fixture) {
    seed_three_streams(f).await;
    // customer-0 is positions 1-4 with revisions 0-3: swap revisions 1 and 2.
    f.raw_sql(
        "UPDATE crm_events SET revision = 100 WHERE position = 2; \
         UPDATE crm_events SET revision = 1 WHERE position = 3; \
         UPDATE crm_events SET revision = 2 WHERE position = 2;",
        true,
    )
    .await
    .expect("tamper");
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    let failure = report.first_failure.expect("reordering is found");
    assert_eq!(failure.kind, FindingKind::Reordered, "{failure}");
    assert_eq!(failure.position, Some(2));
    assert_eq!(failure.stream_id.as_deref(), Some("customer-0"));
}

pub async fn verify_names_an_event_inserted_past_the_stream_head(f: &Fixture) {
    seed_three_streams(f).await;
    // A copy of customer-2's last event, appended by hand as revision 4.
    let sql = format!(
        "INSERT INTO crm_events SELECT 13, tenant, stream_id, 4, {}, event_type, schema_version, \
         data, metadata, occurred_at, recorded_at, hash FROM crm_events WHERE position = 12",
        f.random_id_sql()
    );
    f.raw_sql(&sql, false).await.expect("insert");
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    let failure = report.first_failure.expect("insertion is found");
    assert_eq!(failure.kind, FindingKind::Inserted, "{failure}");
    assert_eq!(failure.position, Some(13));
    assert_eq!(failure.revision, Some(4));
}

/// `per_stream` events for each of `streams`, interleaved round-robin: s0, s1, …, s0, s1, ….
fn interleaved(streams: &[StreamId], per_stream: u32) -> Vec<(StreamId, NewEvent)> {
    (0..per_stream)
        .flat_map(|n| streams.iter().map(move |s| (s.clone(), logged(n))))
        .collect()
}

fn expect(name: &str, expected: ExpectedRevision) -> StreamExpectation {
    StreamExpectation::new(stream(name), expected)
}

/// Every stream head of the log, for before/after comparisons.
async fn all_heads(f: &Fixture) -> Vec<(String, u64, [u8; 32])> {
    f.store
        .stream_heads(&Scope::AllTenants, None, 10_000)
        .await
        .expect("heads")
        .into_iter()
        .map(|h| (h.stream_id.as_str().to_owned(), h.revision, h.hash))
        .collect()
}

pub async fn a_batch_takes_positions_in_input_order_across_interleaved_streams(f: &Fixture) {
    let t = tenant("t1");
    f.store
        .append(
            &t,
            &stream("customer-a"),
            ExpectedRevision::NoStream,
            batch(2),
        )
        .await
        .expect("seed a");
    let mut head = f.store.head_changes();
    let events = vec![
        (stream("customer-a"), logged(10)),
        (stream("customer-b"), logged(11)),
        (stream("customer-a"), logged(12)),
        (stream("customer-c"), logged(13)),
        (stream("customer-b"), logged(14)),
    ];
    let ids: Vec<Uuid> = events.iter().map(|(_, e)| e.event_id).collect();
    let outcome = f
        .store
        .append_batch(
            &t,
            vec![
                expect("customer-b", ExpectedRevision::NoStream),
                expect("customer-a", ExpectedRevision::Exact(1)),
            ],
            events,
        )
        .await
        .expect("batch");

    // Per event, in input order.
    assert_eq!(
        outcome
            .events
            .iter()
            .map(|e| (e.event_id, e.revision, e.position, e.duplicate))
            .collect::<Vec<_>>(),
        [
            (ids[0], 2, 3, false),
            (ids[1], 0, 4, false),
            (ids[2], 3, 5, false),
            (ids[3], 0, 6, false),
            (ids[4], 1, 7, false),
        ]
    );
    assert_eq!(outcome.last_position, 7);
    // Per stream, in order of first appearance, each with its own events.
    let streams: Vec<_> = outcome
        .streams
        .iter()
        .map(|s| {
            (
                s.stream_id.as_str(),
                s.events.iter().map(|e| e.position).collect::<Vec<_>>(),
                s.stream_revision,
                s.last_position,
            )
        })
        .collect();
    assert_eq!(
        streams,
        [
            ("customer-a", vec![3, 5], 3, 5),
            ("customer-b", vec![4, 7], 1, 7),
            ("customer-c", vec![6], 0, 6),
        ]
    );

    // Stored as reported, and every chain continues correctly.
    let all = f
        .store
        .read_all(&Scope::AllTenants, 0, 100)
        .await
        .expect("read all");
    assert_eq!(
        all.iter()
            .map(|e| (e.position, e.stream_id.as_str(), e.revision))
            .collect::<Vec<_>>(),
        [
            (1, "customer-a", 0),
            (2, "customer-a", 1),
            (3, "customer-a", 2),
            (4, "customer-b", 0),
            (5, "customer-a", 3),
            (6, "customer-c", 0),
            (7, "customer-b", 1),
        ]
    );
    for name in ["customer-a", "customer-b", "customer-c"] {
        let read = f
            .store
            .read_stream(
                &t,
                &stream(name),
                Direction::Forwards,
                StreamStart::Boundary,
                100,
            )
            .await
            .expect("read stream");
        assert_eq!(
            read.iter().map(|e| e.revision).collect::<Vec<_>>(),
            (0..read.len() as u64).collect::<Vec<_>>()
        );
        let report = verify_stream(f.store.as_ref(), &t, &stream(name))
            .await
            .expect("verify stream");
        assert!(report.is_intact(), "{name}: {:?}", report.first_failure);
    }
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.streams_checked, 3);
    assert_eq!(f.store.head_position().await.expect("head"), 7);
    // The head watch moved when the batch committed.
    assert_eq!(*head.borrow_and_update(), 7);

    // The streams go on from there, singly or in a batch.
    let next = f
        .store
        .append(
            &t,
            &stream("customer-b"),
            ExpectedRevision::Exact(1),
            batch(1),
        )
        .await
        .expect("single append after the batch");
    assert_eq!((next.events[0].revision, next.events[0].position), (2, 8));
}

pub async fn a_batch_failing_one_streams_expectation_writes_nothing_of_any_stream(f: &Fixture) {
    let t = tenant("t1");
    let streams: Vec<StreamId> = (0..50).map(|n| stream(&format!("customer-{n}"))).collect();
    f.store
        .append_batch(&t, vec![], interleaved(&streams[..2], 1))
        .await
        .expect("seed customer-0 and customer-1");
    let heads_before = all_heads(f).await;

    // 500 events over 50 streams; only the last stream's expectation is stale.
    let mut expectations: Vec<StreamExpectation> = streams[2..]
        .iter()
        .map(|s| StreamExpectation::new(s.clone(), ExpectedRevision::NoStream))
        .collect();
    expectations.push(expect("customer-0", ExpectedRevision::Exact(0)));
    expectations.push(expect("customer-1", ExpectedRevision::NoStream));
    let error = f
        .store
        .append_batch(&t, expectations, interleaved(&streams, 10))
        .await
        .expect_err("customer-1 exists");
    match &error {
        StoreError::WrongExpectedRevision {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, "customer-1");
            assert_eq!(*expected, ExpectedRevision::NoStream);
            assert_eq!(*actual, Some(0));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(error.is_conflict());

    // An id reused with another type in one stream fails the whole batch too.
    let stored = f
        .store
        .read_stream(
            &t,
            &stream("customer-0"),
            Direction::Forwards,
            StreamStart::Boundary,
            1,
        )
        .await
        .expect("read")
        .remove(0);
    let mut events = interleaved(&streams, 2);
    let mut reused = logged(0).with_id(stored.event_id);
    reused.event_type = "OrderPlaced".into();
    events.push((stream("customer-0"), reused));
    let error = f
        .store
        .append_batch(&t, vec![], events)
        .await
        .expect_err("id reused");
    assert!(
        matches!(&error, StoreError::EventIdReused { event_id, .. } if *event_id == stored.event_id),
        "{error:?}"
    );

    // Nothing of either batch is visible anywhere.
    assert_eq!(f.store.head_position().await.expect("head"), 2);
    assert_eq!(
        f.store
            .read_all(&Scope::AllTenants, 0, 10_000)
            .await
            .expect("read all")
            .len(),
        2
    );
    assert_eq!(all_heads(f).await, heads_before);
    assert!(
        f.store
            .stream_head(&t, &streams[2])
            .await
            .expect("head")
            .is_none()
    );
    // And the store takes the corrected batch.
    let mut expectations: Vec<StreamExpectation> = streams[2..]
        .iter()
        .map(|s| StreamExpectation::new(s.clone(), ExpectedRevision::NoStream))
        .collect();
    expectations.push(expect("customer-1", ExpectedRevision::Exact(0)));
    let outcome = f
        .store
        .append_batch(&t, expectations, interleaved(&streams, 10))
        .await
        .expect("corrected batch");
    assert_eq!(
        outcome
            .events
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        (3..503).collect::<Vec<_>>()
    );
    assert_eq!(outcome.streams.len(), 50);
    assert!(
        verify(f.store.as_ref(), &Scope::AllTenants)
            .await
            .expect("verify")
            .is_intact()
    );
}

pub async fn replaying_a_batch_acknowledges_every_event_as_duplicate_and_stores_nothing(
    f: &Fixture,
) {
    let t = tenant("t1");
    let streams: Vec<StreamId> = (0..50).map(|n| stream(&format!("customer-{n}"))).collect();
    let events = interleaved(&streams, 10);
    let expectations: Vec<StreamExpectation> = streams
        .iter()
        .map(|s| StreamExpectation::new(s.clone(), ExpectedRevision::NoStream))
        .collect();
    let first = f
        .store
        .append_batch(&t, expectations.clone(), events.clone())
        .await
        .expect("first");
    assert_eq!(first.last_position, 500);
    let heads_before = all_heads(f).await;

    // The retry carries now-stale expectations and is still acknowledged, as duplicates.
    let retry = f
        .store
        .append_batch(&t, expectations, events.clone())
        .await
        .expect("retry is acknowledged");
    assert!(retry.events.iter().all(|e| e.duplicate));
    let placement = |outcome: &crm_core::store::BatchOutcome| {
        outcome
            .events
            .iter()
            .map(|e| (e.event_id, e.revision, e.position))
            .collect::<Vec<_>>()
    };
    assert_eq!(placement(&retry), placement(&first));
    assert_eq!(retry.last_position, first.last_position);
    for (again, before) in retry.streams.iter().zip(&first.streams) {
        assert_eq!(again.stream_id, before.stream_id);
        assert_eq!(again.stream_revision, before.stream_revision);
        assert_eq!(again.last_position, before.last_position);
    }
    // Without expectations too (on SQLite the optimistic single round trip collides on
    // the stored ids and falls back).
    let retry = f
        .store
        .append_batch(&t, vec![], events.clone())
        .await
        .expect("retry without expectations");
    assert!(retry.events.iter().all(|e| e.duplicate));
    assert_eq!(placement(&retry), placement(&first));
    assert_eq!(f.store.head_position().await.expect("head"), 500);
    assert_eq!(all_heads(f).await, heads_before);

    // Duplicates of customer-0 (stale expectation, not checked) with new events of
    // customer-1: only customer-1's are written.
    let a_old: Vec<(StreamId, NewEvent)> = events
        .iter()
        .filter(|(s, _)| *s == streams[0])
        .take(3)
        .cloned()
        .collect();
    let mixed = vec![
        a_old[0].clone(),
        (streams[1].clone(), logged(100)),
        a_old[1].clone(),
        (streams[1].clone(), logged(101)),
        a_old[2].clone(),
    ];
    let outcome = f
        .store
        .append_batch(
            &t,
            vec![
                StreamExpectation::new(streams[0].clone(), ExpectedRevision::NoStream),
                StreamExpectation::new(streams[1].clone(), ExpectedRevision::Exact(9)),
            ],
            mixed,
        )
        .await
        .expect("mixed");
    assert_eq!(
        outcome
            .events
            .iter()
            .map(|e| (e.duplicate, e.revision))
            .collect::<Vec<_>>(),
        [(true, 0), (false, 10), (true, 1), (false, 11), (true, 2)]
    );
    assert_eq!(
        outcome
            .events
            .iter()
            .filter(|e| !e.duplicate)
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        [501, 502]
    );
    assert_eq!(outcome.streams[0].stream_revision, 9);
    assert_eq!(outcome.streams[1].stream_revision, 11);
    assert_eq!(outcome.last_position, 502);
    assert_eq!(f.store.head_position().await.expect("head"), 502);
    let heads = all_heads(f).await;
    let changed: Vec<_> = heads
        .iter()
        .filter(|h| !heads_before.contains(h))
        .map(|h| (h.0.as_str(), h.1))
        .collect();
    assert_eq!(changed, [("customer-1", 11)]);

    // The same id in another stream of the store is another event, also within a batch.
    let elsewhere = f
        .store
        .append_batch(
            &t,
            vec![],
            vec![(stream("customer-new"), a_old[0].1.clone())],
        )
        .await
        .expect("same id, other stream");
    assert!(!elsewhere.events[0].duplicate);
    assert_eq!(elsewhere.events[0].position, 503);
    assert!(
        verify(f.store.as_ref(), &Scope::AllTenants)
            .await
            .expect("verify")
            .is_intact()
    );
}

pub async fn malformed_batches_are_refused_before_anything_is_written(f: &Fixture) {
    let t = tenant("t1");
    let invalid = |error: StoreError, needle: &str| {
        assert!(
            matches!(&error, StoreError::InvalidInput(message) if message.contains(needle)),
            "{error:?} should be invalid input mentioning {needle:?}"
        );
    };
    let two = || {
        vec![
            (stream("customer-a"), logged(0)),
            (stream("customer-b"), logged(1)),
        ]
    };
    // (An expectation for a stream without events is no longer malformed: it guards the call,
    // see `an_expectation_of_a_stream_without_events_guards_the_call`.)
    invalid(
        f.store
            .append_batch(
                &t,
                vec![
                    expect("customer-a", ExpectedRevision::NoStream),
                    expect("customer-b", ExpectedRevision::Any),
                    expect("customer-a", ExpectedRevision::Any),
                ],
                two(),
            )
            .await
            .expect_err("two expectations for one stream"),
        "customer-a",
    );
    // One id twice, even in two streams.
    let event = logged(5);
    invalid(
        f.store
            .append_batch(
                &t,
                vec![],
                vec![
                    (stream("customer-a"), event.clone()),
                    (stream("customer-b"), event),
                ],
            )
            .await
            .expect_err("repeated id"),
        "more than once",
    );
    invalid(
        f.store
            .append_batch(&t, vec![], vec![])
            .await
            .expect_err("empty"),
        "at least one event",
    );
    invalid(
        f.store
            .append_batch(
                &t,
                vec![expect("customer-a", ExpectedRevision::Any)],
                vec![],
            )
            .await
            .expect_err("empty with an expectation"),
        "at least one event",
    );
    let mut bad_type = two();
    bad_type[1].1.event_type = "not a type!".into();
    invalid(
        f.store
            .append_batch(&t, vec![], bad_type)
            .await
            .expect_err("invalid type"),
        "event 1",
    );
    let too_many = (0..=MAX_EVENTS_PER_APPEND as u32)
        .map(|n| (stream(&format!("customer-{}", n % 7)), logged(n)))
        .collect();
    invalid(
        f.store
            .append_batch(&t, vec![], too_many)
            .await
            .expect_err("too many"),
        "at most",
    );
    assert_eq!(f.store.head_position().await.expect("head"), 0);
    assert!(all_heads(f).await.is_empty());
}

pub async fn batches_through_two_store_handles_in_turn_keep_one_consistent_log(f: &Fixture) {
    let other = f.reopen().await;
    let t = tenant("t1");
    let handles = [Arc::clone(&f.store), other];
    let shared = [stream("customer-x"), stream("customer-y")];
    let mut revisions: [Option<u64>; 2] = [None, None];
    let mut position = 0;
    for round in 0..8u32 {
        let store = &handles[(round % 2) as usize];
        // Both shared streams with exact expectations, plus a stream only this handle writes
        // (with Any, so a handle that remembers a stale head may try its fast path).
        let own = stream(&format!("customer-own-{}", round % 2));
        let mut events = interleaved(&shared, 2);
        events.insert(1, (own.clone(), logged(50)));
        let expectations = shared
            .iter()
            .zip(revisions)
            .map(|(s, r)| {
                StreamExpectation::new(
                    s.clone(),
                    r.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact),
                )
            })
            .collect();
        let outcome = store
            .append_batch(&t, expectations, events)
            .await
            .expect("batch through alternating handles");
        assert_eq!(
            outcome
                .events
                .iter()
                .map(|e| e.position)
                .collect::<Vec<_>>(),
            (position + 1..=position + 5).collect::<Vec<_>>()
        );
        position += 5;
        for (index, name) in shared.iter().enumerate() {
            let stream_outcome = outcome
                .streams
                .iter()
                .find(|s| s.stream_id == *name)
                .expect("stream outcome");
            revisions[index] = Some(stream_outcome.stream_revision);
        }
        // A single-stream append in between, to an own stream of the other handle.
        let single = handles[((round + 1) % 2) as usize]
            .append(
                &t,
                &stream(&format!("customer-own-{}", (round + 1) % 2)),
                ExpectedRevision::Any,
                batch(1),
            )
            .await
            .expect("single append");
        position += 1;
        assert_eq!(single.events[0].position, position);
    }
    // The second handle wrote the shared streams last, but the first handle has written since:
    // a batch of streams it knows, expecting any revision, still lands after that write.
    let outcome = handles[1]
        .append_batch(
            &t,
            vec![],
            vec![
                (stream("customer-x"), logged(60)),
                (stream("customer-own-1"), logged(61)),
                (stream("customer-y"), logged(62)),
            ],
        )
        .await
        .expect("batch after the other handle wrote");
    assert_eq!(
        outcome
            .events
            .iter()
            .map(|e| (e.revision, e.position))
            .collect::<Vec<_>>(),
        [(16, position + 1), (8, position + 2), (16, position + 3)]
    );
    position += 3;
    // A stale expectation through either handle is still refused.
    for store in &handles {
        let error = store
            .append_batch(
                &t,
                vec![expect("customer-y", ExpectedRevision::Exact(0))],
                vec![
                    (stream("customer-own-0"), logged(1)),
                    (stream("customer-y"), logged(2)),
                ],
            )
            .await
            .expect_err("stale");
        assert!(error.is_conflict(), "{error}");
    }
    let events = f
        .store
        .read_all(&Scope::AllTenants, 0, 1000)
        .await
        .expect("read");
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=position).collect::<Vec<_>>()
    );
    assert_eq!(revisions, [Some(15), Some(15)]);
    let report = verify(f.store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.streams_checked, 4);
}

pub async fn an_abandoned_batch_neither_blocks_the_store_nor_half_writes(f: &Fixture) {
    let t = tenant("t1");
    let streams: Vec<StreamId> = (0..4).map(|n| stream(&format!("customer-{n}"))).collect();
    let mut batches = Vec::new();
    // Drop batches at many different instants of their life, including mid-transaction.
    for n in 0..60u64 {
        let events = interleaved(&streams, 3);
        let ids: Vec<Uuid> = events.iter().map(|(_, e)| e.event_id).collect();
        let append = f.store.append_batch(&t, vec![], events);
        let _ = tokio::time::timeout(Duration::from_micros(n * 25), append).await;
        batches.push(ids);
    }
    tokio::time::timeout(
        WAIT,
        f.store.append_batch(&t, vec![], interleaved(&streams, 1)),
    )
    .await
    .expect("the writer is not left locked")
    .expect("batch after abandoned ones");
    let stored: HashSet<Uuid> = f
        .store
        .read_all(&Scope::AllTenants, 0, 10_000)
        .await
        .expect("read")
        .iter()
        .map(|e| e.event_id)
        .collect();
    for ids in &batches {
        let present = ids.iter().filter(|id| stored.contains(id)).count();
        assert!(
            present == 0 || present == ids.len(),
            "a batch was half-written"
        );
    }
    assert!(
        verify(f.store.as_ref(), &Scope::AllTenants)
            .await
            .expect("verify")
            .is_intact()
    );
}

pub async fn find_events_reports_stored_pairs_of_the_tenant_only(f: &Fixture) {
    let (t1, t2) = (tenant("t1"), tenant("t2"));
    let first = logged(1);
    let second = logged(2);
    f.store
        .append(
            &t1,
            &stream("customer-1"),
            ExpectedRevision::NoStream,
            vec![first.clone(), second.clone()],
        )
        .await
        .expect("append");
    let absent = uuid::Uuid::now_v7();
    let asked = vec![
        (stream("customer-1"), second.event_id),
        (stream("customer-1"), absent),
        // The right id in the wrong stream is not stored there.
        (stream("customer-2"), first.event_id),
        (stream("customer-1"), first.event_id),
    ];
    let mut found = f.store.find_events(&t1, &asked).await.expect("find");
    found.sort_by_key(|e| e.position);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].event_id, first.event_id);
    assert_eq!((found[0].revision, found[0].position), (0, 1));
    assert_eq!(found[0].event_type, "InteractionLogged");
    assert_eq!(found[1].event_id, second.event_id);
    assert_eq!((found[1].revision, found[1].position), (1, 2));
    assert_eq!(found[1].stream_id, stream("customer-1"));
    // Another tenant's identical pairs are not its events.
    assert!(
        f.store
            .find_events(&t2, &asked)
            .await
            .expect("find")
            .is_empty()
    );
    assert!(
        f.store
            .find_events(&t1, &[])
            .await
            .expect("find")
            .is_empty()
    );
    let too_many: Vec<(StreamId, uuid::Uuid)> = (0..=crm_core::store::MAX_EVENTS_PER_APPEND)
        .map(|_| (stream("customer-1"), uuid::Uuid::now_v7()))
        .collect();
    assert!(matches!(
        f.store.find_events(&t1, &too_many).await,
        Err(StoreError::InvalidInput(_))
    ));
}

pub async fn stream_heads_of_reports_existing_streams_of_the_tenant_only(f: &Fixture) {
    let (t1, t2) = (tenant("t1"), tenant("t2"));
    f.store
        .append(
            &t1,
            &stream("customer-1"),
            ExpectedRevision::NoStream,
            batch(3),
        )
        .await
        .expect("append");
    f.store
        .append(
            &t2,
            &stream("customer-2"),
            ExpectedRevision::NoStream,
            batch(1),
        )
        .await
        .expect("append");
    let asked = [
        stream("customer-1"),
        stream("customer-2"),
        stream("customer-3"),
    ];
    let heads = f.store.stream_heads_of(&t1, &asked).await.expect("heads");
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(heads[0].stream_id, stream("customer-1"));
    assert_eq!(heads[0].revision, 2);
    let single = f
        .store
        .stream_head(&t1, &stream("customer-1"))
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(heads[0], single);
    assert!(
        f.store
            .stream_heads_of(&t1, &[])
            .await
            .expect("heads")
            .is_empty()
    );
}

/// An expectation for a stream the call writes nothing to guards the call: it holds, the call
/// writes only its own streams and reports only them; another handle (another process) moved
/// the guarded stream, the call is refused naming it and writes nothing; a call of duplicates
/// only guards nothing.
pub async fn an_expectation_of_a_stream_without_events_guards_the_call(f: &Fixture) {
    let t = tenant("t1");
    let consent = stream("customer-c-1");
    f.store
        .append(&t, &consent, ExpectedRevision::NoStream, vec![logged(0)])
        .await
        .expect("seed the guarded stream");
    let member = logged(1);
    let outcome = f
        .store
        .append_batch(
            &t,
            vec![expect("customer-c-1", ExpectedRevision::Exact(0))],
            vec![(stream("campaign-cmp-1"), member.clone())],
        )
        .await
        .expect("the guard holds");
    assert_eq!(outcome.streams.len(), 1, "the guard is not reported");
    assert_eq!(outcome.streams[0].stream_id.as_str(), "campaign-cmp-1");

    // Another handle moves the guarded stream; a call still expecting revision 0 is refused.
    let other = f.reopen().await;
    other
        .append(&t, &consent, ExpectedRevision::Exact(0), vec![logged(2)])
        .await
        .expect("the other writer");
    let head = f.store.head_position().await.expect("head");
    let error = f
        .store
        .append_batch(
            &t,
            vec![expect("customer-c-1", ExpectedRevision::Exact(0))],
            vec![(stream("campaign-cmp-1"), logged(3))],
        )
        .await
        .expect_err("the guarded stream moved");
    match &error {
        StoreError::WrongExpectedRevision { stream, actual, .. } => {
            assert_eq!(stream, "customer-c-1");
            assert_eq!(*actual, Some(1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        f.store.head_position().await.expect("head"),
        head,
        "nothing written"
    );
    // A guard expecting no stream fails once it exists.
    let absent = f
        .store
        .append_batch(
            &t,
            vec![expect("customer-c-1", ExpectedRevision::NoStream)],
            vec![(stream("campaign-cmp-1"), logged(4))],
        )
        .await;
    assert!(absent.is_err_and(|e| e.is_conflict()));
    // The first call again: every event a duplicate, so the stale guard does not matter.
    let again = f
        .store
        .append_batch(
            &t,
            vec![expect("customer-c-1", ExpectedRevision::Exact(0))],
            vec![(stream("campaign-cmp-1"), member)],
        )
        .await
        .expect("a replay of duplicates");
    assert!(again.events.iter().all(|e| e.duplicate));
}

/// The gap test with concurrent writers in one process (issue 21): 32 tasks append single
/// events at once through one handle (so the store groups them into shared commits) while a
/// reader follows the log from its checkpoint.
pub async fn concurrent_single_appends_leave_no_gap_and_no_skipped_event(f: &Fixture) {
    use crm_tests::concurrent_writers;
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(concurrent_writers::follow(
        Arc::clone(&f.store),
        Arc::clone(&stop),
    ));
    let acks = concurrent_writers::write(&f.store, &tenant("t1"), "g", 32, 40)
        .await
        .expect("every append written");
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = reader.await.expect("reader").expect("read the log");
    concurrent_writers::check(&f.store, &acks, &seen, 32 * 40)
        .await
        .expect("no gap, no skip, nothing lost");
}

/// Appends written in one group are each judged on their own: a conflicting append and an
/// append reusing an id for another type, sent among many good ones, are refused alone and
/// store nothing, and the good ones are all written.
pub async fn a_refused_append_fails_only_itself_among_concurrent_appends(f: &Fixture) {
    let t = tenant("t1");
    let taken = stream("taken-1");
    let reused = logged(0);
    f.store
        .append(&t, &taken, ExpectedRevision::NoStream, vec![reused.clone()])
        .await
        .expect("seed");
    let mut tasks = Vec::new();
    for n in 0..48u32 {
        let (store, t, taken) = (Arc::clone(&f.store), t.clone(), taken.clone());
        let mut reused = reused.clone();
        tasks.push(tokio::spawn(async move {
            match n % 16 {
                // A conflict: the stream exists.
                5 => store
                    .append(&t, &taken, ExpectedRevision::NoStream, vec![logged(n)])
                    .await
                    .map(|_| "written"),
                // The seed's id for another type, in its stream.
                11 => {
                    reused.event_type = "CaseOpened".to_owned();
                    store
                        .append(&t, &taken, ExpectedRevision::Any, vec![reused])
                        .await
                        .map(|_| "written")
                }
                _ => store
                    .append(
                        &t,
                        &stream(&format!("good-{n}")),
                        ExpectedRevision::NoStream,
                        vec![logged(n)],
                    )
                    .await
                    .map(|_| "good"),
            }
        }));
    }
    let mut good = 0;
    for (n, task) in tasks.into_iter().enumerate() {
        match (n % 16, task.await.expect("task")) {
            (5, Err(StoreError::WrongExpectedRevision { actual, .. })) => {
                assert_eq!(actual, Some(0))
            }
            (11, Err(StoreError::EventIdReused { stored_type, .. })) => {
                assert_eq!(stored_type, "InteractionLogged")
            }
            (5 | 11, other) => panic!("append {n} should have been refused: {other:?}"),
            (_, Ok(_)) => good += 1,
            (_, Err(error)) => panic!("good append {n} failed: {error}"),
        }
    }
    assert_eq!(good, 48 - 6);
    assert_eq!(
        f.store.head_position().await.expect("head"),
        1 + 48 - 6,
        "the refused appends stored nothing, the good ones all"
    );
    let taken_events = f
        .store
        .read_stream(&t, &taken, Direction::Forwards, StreamStart::Boundary, 10)
        .await
        .expect("read");
    assert_eq!(taken_events.len(), 1);
}
