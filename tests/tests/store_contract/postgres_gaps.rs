//! PostgreSQL only: a reader never misses an event that commits after it has read past the
//! event's position, because appends hand out positions in commit order.

use std::sync::Arc;
use std::time::Duration;

use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::{ExpectedRevision, Scope};
use serde_json::json;

use crate::fixture::Fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reader_resuming_after_a_later_commit_still_receives_the_held_event_once() {
    let Some(fixture) = Fixture::postgres(
        "postgres_reader_resuming_after_a_later_commit_still_receives_the_held_event_once",
    )
    .await
    else {
        return;
    };
    let store = fixture.postgres_store().await.expect("postgres store");
    let tenant = TenantId::parse("t1").expect("tenant");
    let first = NewEvent::new("CaseOpened", &json!({"case_id": "k-1"}));
    let second = NewEvent::new("CaseOpened", &json!({"case_id": "k-2"}));
    let (first_id, second_id) = (first.event_id, second.event_id);

    // Writer 1 appends and holds its transaction open.
    let held = store
        .begin_append(
            &tenant,
            &StreamId::parse("case-k-1").expect("stream"),
            ExpectedRevision::Any,
            vec![first],
        )
        .await
        .expect("held append");

    // Writer 2 appends to another stream and tries to commit meanwhile.
    let second_writer = {
        let store = Arc::clone(&fixture.store);
        let tenant = tenant.clone();
        tokio::spawn(async move {
            store
                .append(
                    &tenant,
                    &StreamId::parse("case-k-2").expect("stream"),
                    ExpectedRevision::Any,
                    vec![second],
                )
                .await
        })
    };

    // A reader keeps reading and moving its checkpoint past whatever it sees.
    let mut seen = Vec::new();
    let mut checkpoint = 0;
    for _ in 0..10 {
        for event in fixture
            .store
            .read_all(&Scope::AllTenants, checkpoint, 100)
            .await
            .expect("read")
        {
            checkpoint = event.position;
            seen.push((event.position, event.event_id));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Nothing is visible while writer 1 is open: writer 2 cannot commit a position past the
    // held one.
    assert!(
        seen.is_empty(),
        "saw {seen:?} while the first writer was open"
    );
    assert!(
        !second_writer.is_finished(),
        "writer 2 committed ahead of writer 1"
    );

    held.commit().await.expect("commit writer 1");
    let outcome = tokio::time::timeout(Duration::from_secs(10), second_writer)
        .await
        .expect("writer 2 finishes")
        .expect("task")
        .expect("append");

    // The reader resumes from its checkpoint and gets both events, each exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        for event in fixture
            .store
            .read_all(&Scope::AllTenants, checkpoint, 100)
            .await
            .expect("read")
        {
            checkpoint = event.position;
            seen.push((event.position, event.event_id));
        }
    }
    assert_eq!(seen, vec![(1, first_id), (2, second_id)]);
    assert_eq!(outcome.last_position, 2);
    let again = fixture
        .store
        .read_all(&Scope::AllTenants, checkpoint, 100)
        .await
        .expect("read");
    assert!(again.is_empty());
}
