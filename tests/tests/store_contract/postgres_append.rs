//! PostgreSQL only: the one-round-trip append from remembered heads (`crm_append_group`), its
//! fall-back to the transactional path when those heads are stale, and group commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::keys::{KeyOps, KeyTable, NewKey};
use crm_core::store::postgres::AppendPaths;
use crm_core::store::{
    ExpectedRevision, Scope, SharedStore, StoreError, StreamExpectation, verify,
};
use serde_json::json;

use crate::fixture::Fixture;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("tenant id")
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).expect("stream id")
}

fn opened(n: usize) -> NewEvent {
    NewEvent::new("CaseOpened", &json!({"case_id": format!("k-{n}")}))
}

/// Every position from 1 to the head exactly once, every id once, chains intact.
async fn assert_consistent(store: &SharedStore, events: usize) {
    let all = store
        .read_all(&Scope::AllTenants, 0, 100_000)
        .await
        .expect("read all");
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=events as u64).collect::<Vec<_>>());
    let ids: HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), events, "an event id appears twice");
    let report = verify(store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    assert_eq!(report.first_failure, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_stale_remembered_head_falls_back_to_the_transactional_path() {
    let Some(f) = Fixture::postgres("postgres_stale_remembered_head").await else {
        return;
    };
    let pg = f.postgres_store().await.expect("postgres store");
    let a: SharedStore = Arc::new(pg.clone());
    let b = f.reopen().await;
    let (t, s) = (tenant("t1"), stream("case-1"));
    let paths = |one_round_trip, transactional| AppendPaths {
        one_round_trip,
        transactional,
        ..AppendPaths::default()
    };
    let first = opened(0);
    // A remembers the head it wrote (revision 0, position 1) ...
    a.append(&t, &s, ExpectedRevision::NoStream, vec![first.clone()])
        .await
        .expect("a writes");
    assert_eq!(pg.append_paths(), paths(1, 0));
    // ... then B moves the stream and the log on.
    b.append(&t, &s, ExpectedRevision::Exact(0), vec![opened(1)])
        .await
        .expect("b writes");
    b.append(
        &t,
        &stream("case-2"),
        ExpectedRevision::Any,
        vec![opened(2)],
    )
    .await
    .expect("b writes elsewhere");

    // A's remembered head is stale: the right expectation still succeeds, at the real head.
    let third = a
        .append(&t, &s, ExpectedRevision::Exact(1), vec![opened(3)])
        .await
        .expect("a appends after b");
    assert_eq!(third.stream_revision, 2);
    assert_eq!(third.last_position, 4);
    assert_eq!(pg.append_paths(), paths(1, 1), "the stale plan fell back");
    // The fall-back refreshed the remembered heads: the next append is one round trip again.
    a.append(&t, &s, ExpectedRevision::Exact(2), vec![opened(7)])
        .await
        .expect("a appends from fresh heads");
    assert_eq!(pg.append_paths(), paths(2, 1));

    // A conflict is judged on the real head, not the remembered one.
    b.append(&t, &s, ExpectedRevision::Exact(3), vec![opened(4)])
        .await
        .expect("b writes again");
    let conflict = a
        .append(&t, &s, ExpectedRevision::Exact(3), vec![opened(5)])
        .await
        .expect_err("a's expectation is behind");
    assert!(
        matches!(
            conflict,
            StoreError::WrongExpectedRevision {
                actual: Some(4),
                ..
            }
        ),
        "{conflict:?}"
    );

    // An id B stored after A last looked is a duplicate, not a second event.
    let replay = a
        .append(&t, &s, ExpectedRevision::Any, vec![first])
        .await
        .expect("replay");
    assert!(replay.events[0].duplicate);
    assert_eq!(replay.events[0].position, 1);

    // A stream A never saw, which B created: expecting it to exist works from A.
    let other = a
        .append(
            &t,
            &stream("case-2"),
            ExpectedRevision::Exact(0),
            vec![opened(6)],
        )
        .await
        .expect("a appends to b's stream");
    assert_eq!(other.stream_revision, 1);
    assert_consistent(&a, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conflicts_from_remembered_heads_are_reported_and_store_nothing() {
    let Some(f) = Fixture::postgres("postgres_conflicts_from_remembered_heads").await else {
        return;
    };
    let (t, s) = (tenant("t1"), stream("case-1"));
    let first = opened(0);
    f.store
        .append(&t, &s, ExpectedRevision::NoStream, vec![first.clone()])
        .await
        .expect("first");
    let again = f
        .store
        .append(&t, &s, ExpectedRevision::NoStream, vec![opened(1)])
        .await
        .expect_err("the stream exists");
    assert!(
        matches!(
            again,
            StoreError::WrongExpectedRevision {
                actual: Some(0),
                ..
            }
        ),
        "{again:?}"
    );
    let mut reused = NewEvent::new("CaseClosed", &json!({"case_id": "k-0"}));
    reused.event_id = first.event_id;
    let reused = f
        .store
        .append(&t, &s, ExpectedRevision::Any, vec![reused])
        .await
        .expect_err("the id is taken in this stream");
    assert!(
        matches!(reused, StoreError::EventIdReused { .. }),
        "{reused:?}"
    );
    // A batch whose second stream is behind writes nothing of the first.
    let failed = f
        .store
        .append_batch(
            &t,
            vec![StreamExpectation::new(
                s.clone(),
                ExpectedRevision::Exact(5),
            )],
            vec![(stream("case-9"), opened(2)), (s.clone(), opened(3))],
        )
        .await
        .expect_err("case-1 is at 0");
    assert!(matches!(failed, StoreError::WrongExpectedRevision { .. }));
    let next = f
        .store
        .append(&t, &s, ExpectedRevision::Exact(0), vec![opened(4)])
        .await
        .expect("the right expectation");
    assert_eq!((next.stream_revision, next.last_position), (1, 2));
    assert_consistent(&f.store, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_writers_on_two_store_handles_neither_lose_nor_duplicate() {
    let Some(f) = Fixture::postgres("postgres_concurrent_writers_two_handles").await else {
        return;
    };
    let stores = [Arc::clone(&f.store), f.reopen().await];
    let t = tenant("t1");
    const TASKS: usize = 3;
    const APPENDS: usize = 40;
    let mut tasks = Vec::new();
    for (h, store) in stores.iter().enumerate() {
        for task in 0..TASKS {
            let (store, t) = (Arc::clone(store), t.clone());
            tasks.push(tokio::spawn(async move {
                let own = stream(&format!("case-{h}-{task}"));
                for n in 0..APPENDS {
                    // Every writer on one shared stream, and on its own stream by revision.
                    let shared = (stream("case-shared"), opened(n));
                    let mine = (own.clone(), opened(n));
                    store
                        .append_batch(
                            &t,
                            vec![StreamExpectation::new(
                                own.clone(),
                                if n == 0 {
                                    ExpectedRevision::NoStream
                                } else {
                                    ExpectedRevision::Exact(n as u64 - 1)
                                },
                            )],
                            vec![shared, mine],
                        )
                        .await
                        .expect("append");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_consistent(&f.store, 2 * 2 * TASKS * APPENDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_abandoned_mid_statement_leave_a_consistent_log() {
    let Some(f) = Fixture::postgres("postgres_appends_abandoned_mid_statement").await else {
        return;
    };
    let other = f.reopen().await;
    let t = tenant("t1");
    let s = stream("case-1");
    let mut abandoned = 0;
    for n in 0..40 {
        let append = f
            .store
            .append(&t, &s, ExpectedRevision::Any, vec![opened(n)]);
        if tokio::time::timeout(Duration::from_micros(50 * n as u64), append)
            .await
            .is_err()
        {
            abandoned += 1;
        }
    }
    // Neither handle is blocked, and both keep one log.
    let last = f
        .store
        .append(
            &t,
            &stream("case-1"),
            ExpectedRevision::Any,
            vec![opened(100)],
        )
        .await
        .expect("after the abandoned appends");
    other
        .append(
            &t,
            &stream("case-1"),
            ExpectedRevision::Any,
            vec![opened(101)],
        )
        .await
        .expect("another handle");
    let events = last.last_position as usize + 1;
    assert!(events >= 2, "abandoned {abandoned}");
    assert_consistent(&f.store, events).await;
}

/// Group commit: concurrent appends on one handle share calls (and so commits), across
/// tenants; each keeps its own outcome, and the log stays gap-free with intact chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_appends_on_one_handle_share_commits() {
    let Some(f) = Fixture::postgres("postgres_concurrent_appends_share_commits").await else {
        return;
    };
    let pg = f.postgres_store().await.expect("postgres store");
    let store: SharedStore = Arc::new(pg.clone());
    let mut tasks = Vec::new();
    for n in 0..256usize {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let t = tenant(if n % 2 == 0 { "t1" } else { "t2" });
            let outcome = store
                .append(
                    &t,
                    &stream(&format!("case-{n}")),
                    ExpectedRevision::NoStream,
                    vec![opened(n)],
                )
                .await
                .expect("append");
            (t, outcome)
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        let (t, outcome) = task.await.expect("task");
        assert_eq!(outcome.stream_revision, 0);
        let stored = store
            .read_all(&Scope::Tenant(t), outcome.last_position - 1, 1)
            .await
            .expect("read");
        assert_eq!(
            stored.first().map(|e| (e.position, e.event_id)),
            Some((outcome.last_position, outcome.events[0].event_id)),
            "each outcome names its own event, in its own tenant"
        );
        positions.push(outcome.last_position);
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=256).collect::<Vec<u64>>());
    let paths = pg.append_paths();
    assert_eq!(paths.one_round_trip + paths.transactional, 256);
    assert!(
        paths.groups > 0 && paths.grouped > paths.groups,
        "256 concurrent appends were never grouped: {paths:?}"
    );
    assert_consistent(&store, 256).await;
}

/// Two handles (as two processes have) writing concurrently make each other's remembered
/// heads stale: their groups then take the transactional path together, one transaction per
/// group, each append judged on heads read under the lock (the stale appends among them
/// refused alone), while a reader following the log misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_handles_writing_at_once_group_their_transactional_appends() {
    use crm_tests::concurrent_writers;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(f) = Fixture::postgres("postgres_two_handles_group_transactional").await else {
        return;
    };
    let pg = f.postgres_store().await.expect("postgres store");
    let a: SharedStore = Arc::new(pg.clone());
    let b = f.reopen().await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(concurrent_writers::follow(
        Arc::clone(&f.store),
        Arc::clone(&stop),
    ));
    let t = tenant("t1");
    let (from_a, from_b) = tokio::join!(
        concurrent_writers::write(&a, &t, "a", 24, 30),
        concurrent_writers::write(&b, &t, "b", 24, 30),
    );
    let mut acks = from_a.expect("a's appends");
    acks.extend(from_b.expect("b's appends"));
    stop.store(true, Ordering::Release);
    let seen = reader.await.expect("reader").expect("read");
    concurrent_writers::check(&f.store, &acks, &seen, 2 * 24 * 30)
        .await
        .expect("no gap, no skip, nothing lost");
    let paths = pg.append_paths();
    assert!(
        paths.transactional > 0,
        "two writers never made each other's heads stale: {paths:?}"
    );
}

fn new_key(subject: &str, id: u8) -> NewKey {
    NewKey {
        subject: subject.to_owned(),
        key_id: [id; 16],
        wrapped: vec![id; 40],
    }
}

/// Appends that seal personal fields mint keys and name the keys they use; those are checked
/// and written by the one-round-trip call too (migration 0005), so a sealed append no longer
/// needs a transaction of its own. A key that changed under the append (a wrong id, an
/// erased subject, a subject minted already) sends it to the transactional path, which
/// refuses it with its own answer and stores nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_with_keys_go_in_one_round_trip_and_key_races_fall_back() {
    let Some(f) = Fixture::postgres("postgres_appends_with_keys_one_round_trip").await else {
        return;
    };
    let pg = f.postgres_store().await.expect("postgres store");
    let store: SharedStore = Arc::new(pg.clone());
    let keys: Arc<dyn KeyTable> = store.key_table().expect("a key table");
    let t = tenant("t1");
    let subject = "customer:c-1";
    let minting = KeyOps {
        new: vec![new_key(subject, 1)],
        ..KeyOps::default()
    };
    store
        .append_batch_with_keys(
            &t,
            vec![StreamExpectation::new(
                stream("case-1"),
                ExpectedRevision::NoStream,
            )],
            vec![(stream("case-1"), opened(1))],
            minting.clone(),
        )
        .await
        .expect("mints and appends");
    let paths = pg.append_paths();
    assert_eq!((paths.one_round_trip, paths.transactional), (1, 0));
    let stored = keys
        .keys_of_subjects(&t, &[subject.to_owned()])
        .await
        .expect("keys");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key_id, [1; 16]);
    assert_eq!(stored[0].wrapped.as_deref(), Some(&[1u8; 40][..]));

    // Using the stored key: one round trip again.
    let using = |id: u8| KeyOps {
        uses: vec![(subject.to_owned(), [id; 16])],
        ..KeyOps::default()
    };
    store
        .append_batch_with_keys(
            &t,
            Vec::new(),
            vec![(stream("case-2"), opened(2))],
            using(1),
        )
        .await
        .expect("uses the key");
    assert_eq!(pg.append_paths().one_round_trip, 2);

    // A key id that is not the stored one: refused by the transactional path, nothing stored.
    let changed = store
        .append_batch_with_keys(
            &t,
            Vec::new(),
            vec![(stream("case-3"), opened(3))],
            using(9),
        )
        .await
        .expect_err("the key changed");
    assert!(
        matches!(changed, StoreError::KeyChanged { .. }),
        "{changed:?}"
    );
    // Minting a key for a subject that has one: refused too, nothing stored.
    let minted = store
        .append_batch_with_keys(
            &t,
            Vec::new(),
            vec![(stream("case-4"), opened(4))],
            KeyOps {
                new: vec![new_key(subject, 2)],
                ..KeyOps::default()
            },
        )
        .await
        .expect_err("the subject has a key");
    assert!(
        matches!(minted, StoreError::KeyChanged { .. }),
        "{minted:?}"
    );
    let paths = pg.append_paths();
    assert_eq!((paths.one_round_trip, paths.transactional), (2, 2));
    let stored = keys
        .keys_of_subjects(&t, &[subject.to_owned()])
        .await
        .expect("keys");
    assert_eq!(
        stored[0].key_id, [1; 16],
        "the refused append minted nothing"
    );

    // An erased subject's key: refused.
    keys.erase_subjects(&t, &[subject.to_owned()])
        .await
        .expect("erase");
    let erased = store
        .append_batch_with_keys(
            &t,
            Vec::new(),
            vec![(stream("case-5"), opened(5))],
            using(1),
        )
        .await
        .expect_err("the subject is erased");
    assert!(
        matches!(erased, StoreError::SubjectErased { .. }),
        "{erased:?}"
    );
    assert_consistent(&store, 2).await;
}

/// Concurrent sealed appends share calls (and commits) like any others: each minted key is
/// stored exactly once, with its append, and the log stays gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_appends_with_keys_share_commits() {
    let Some(f) = Fixture::postgres("postgres_concurrent_appends_with_keys").await else {
        return;
    };
    let pg = f.postgres_store().await.expect("postgres store");
    let store: SharedStore = Arc::new(pg.clone());
    let t = tenant("t1");
    let mut tasks = Vec::new();
    for n in 0..128usize {
        let (store, t) = (Arc::clone(&store), t.clone());
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("case-{n}"));
            store
                .append_batch_with_keys(
                    &t,
                    vec![StreamExpectation::new(
                        s.clone(),
                        ExpectedRevision::NoStream,
                    )],
                    vec![(s, opened(n))],
                    KeyOps {
                        new: vec![new_key(&format!("customer:c-{n}"), n as u8)],
                        ..KeyOps::default()
                    },
                )
                .await
                .expect("append with a new key")
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let paths = pg.append_paths();
    assert_eq!(paths.one_round_trip + paths.transactional, 128);
    assert!(
        paths.groups > 0 && paths.grouped > paths.groups,
        "128 concurrent sealed appends were never grouped: {paths:?}"
    );
    let keys = store.key_table().expect("a key table");
    let all = keys.all_keys(Some(&t)).await.expect("keys");
    assert_eq!(all.len(), 128, "every key stored once");
    assert_consistent(&store, 128).await;
}
