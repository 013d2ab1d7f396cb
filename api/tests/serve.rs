//! `crm-api serve` end to end: the real binary on a fresh data directory runs the projection
//! workers, which fold events appended by another process into the read models, and it stops
//! cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crm_core::catalog::DomainEvent;
use crm_core::envelope::TenantId;
use crm_core::store::{ExpectedRevision, StoreUrl, open_store};
use crm_projections::{ReadDb, customer360};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_projects_events_from_another_process_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_crm-api"))
        .args(["serve", "--data-dir"])
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
    let store = open_store(&url).await.expect("open the server's store");
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
