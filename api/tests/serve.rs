//! `crm-api serve` end to end: the real binary on a fresh data directory runs the projection
//! workers, which fold events appended by another process into the read models, and it stops
//! cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crm_core::catalog::DomainEvent;
use crm_core::envelope::TenantId;
use crm_core::store::{ExpectedRevision, StoreUrl};
use crm_projections::{ReadDb, customer360};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_projects_events_from_another_process_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_crm-api"))
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CRM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crm-api");

    let url = StoreUrl::default_in(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    // The server creates the store; wait for its file, then append as another process would.
    while !dir.path().join("events.db").exists() {
        assert!(
            Instant::now() < deadline,
            "the server did not create its store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = crm_tests::open_test_store(&url)
        .await
        .expect("open the server's store");
    let event = DomainEvent::parse(
        "CustomerRegistered",
        &json!({"customer_id": "c-42", "kind": "person", "name": "Ada Lovelace"}),
    )
    .expect("event");
    let tenant = TenantId::parse("default").expect("tenant");
    store
        .append(
            &tenant,
            &event.stream(),
            ExpectedRevision::NoStream,
            vec![event.to_new_event()],
        )
        .await
        .expect("append");

    let db = ReadDb::open(&url).await.expect("read db");
    loop {
        let found = customer360::get(&db, "default", "c-42").await;
        if let Ok(Some(customer)) = found {
            assert_eq!(customer.name.as_deref(), Some("Ada Lovelace"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never projected the event: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait for crm-api");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "crm-api failed: {log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains("customer_360"),
        "the workers reported their state: {log}"
    );
}

/// Stored positions of every projection, as another process sees them.
async fn positions(db: &ReadDb) -> Vec<u64> {
    crm_projections::bookkeeping::stored_positions(db)
        .await
        .map(|all| all.iter().map(|p| p.position).collect())
        .unwrap_or_default()
}

async fn dump_all(db: &ReadDb) -> Vec<(String, Vec<Vec<crm_projections::db::SqlValue>>)> {
    let mut tables = Vec::new();
    for projection in crm_projections::all_projections() {
        for def in projection.tables() {
            let rows = db.dump(def.name, "1, 2, 3").await.expect("dump");
            tables.push((def.name.to_owned(), rows));
        }
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_servers_restarted_end_in_the_rows_of_a_clean_rebuild() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = StoreUrl::default_in(dir.path());
    let store = crm_tests::open_test_store(&url).await.expect("store");
    let events = crm_tests::crm_data::history(23, 150, 12_000);
    crm_tests::crm_data::append_all(store.as_ref(), &events).await;
    let head = store.head_position().await.expect("head");
    let db = ReadDb::open(&url).await.expect("read db");
    let serve = || {
        Command::new(env!("CARGO_BIN_EXE_crm-api"))
            .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start crm-api")
    };
    let mut rng = crm_tests::bench_data::Rng::new(99);
    let mut killed_mid_run = 0;
    for _ in 0..6 {
        let before = positions(&db).await;
        let mut child = serve();
        // Kill only once this server has visibly moved a checkpoint (start-up time varies
        // with the machine's load), then at a random instant of its run.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = positions(&db).await;
            if now != before || now.contains(&head) {
                break;
            }
            assert!(Instant::now() < deadline, "the server made no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let now = positions(&db).await;
        if now.iter().any(|p| *p > 0 && *p < head) {
            killed_mid_run += 1;
        }
        if !now.is_empty() && now.iter().all(|p| *p == head) {
            break;
        }
    }
    assert!(
        killed_mid_run > 0,
        "no kill landed while the workers were catching up"
    );

    // A last server, run until every projection reports itself live, then stopped cleanly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-api"))
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CRM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crm-api");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().expect("lines").push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let live = lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains("state=Live"))
            .count();
        let now = positions(&db).await;
        let all = crm_projections::all_projections().len();
        if live >= all && now.len() == all && now.iter().all(|p| *p == head) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server never caught up: {now:?} {:?}",
            lines.lock().expect("lines")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("SIGTERM");
    let status = child.wait().expect("wait");
    reader.join().expect("stderr reader");
    let log = lines.lock().expect("lines").join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    let after_kills = dump_all(&db).await;

    for projection in crm_projections::all_projections() {
        crm_projections::bookkeeping::request_rebuild(&db, projection.name())
            .await
            .expect("request rebuild");
    }
    crm_projections::runner::run_until_caught_up(
        store,
        db.clone(),
        crm_projections::all_projections(),
        crm_projections::RunnerOptions::default(),
    )
    .await
    .expect("clean rebuild");
    assert_eq!(
        after_kills,
        dump_all(&db).await,
        "{killed_mid_run} mid-run kills"
    );
}
