//! Killing a writer process at arbitrary instants (SIGKILL, no shutdown) loses no
//! acknowledged append, leaves no half-written batch, and keeps every hash chain intact.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crm_core::envelope::TenantId;
use crm_core::store::{Scope, StoreUrl, open_store, verify};
use crm_tests::postgres::TestDatabase;
use uuid::Uuid;

/// Runs the writer, kills it after `after`, and returns the event ids it acknowledged.
fn run_and_kill(url: &str, after: Duration) -> Vec<Uuid> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-crash-writer"))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(
        lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("writer starts"),
        "ready"
    );
    std::thread::sleep(after);
    child.kill().expect("SIGKILL the writer");
    let _ = child.wait();
    let _ = reader.join();
    lines_rx
        .try_iter()
        .filter_map(|line| line.strip_prefix("ack ").map(str::to_owned))
        .flat_map(|ids| {
            ids.split(' ')
                .map(|id| Uuid::parse_str(id).expect("uuid"))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn kill_repeatedly_and_check(url: &str) {
    let mut acknowledged = Vec::new();
    for round in 0..4u64 {
        // Kill at different instants of the write loop.
        let after = Duration::from_millis(150 + (round * 173) % 400);
        let acked = run_and_kill(url, after);
        assert!(
            !acked.is_empty(),
            "the writer acknowledged nothing in round {round}"
        );
        acknowledged.extend(acked);
    }
    let store = open_store(&StoreUrl::parse(url).expect("url"))
        .await
        .expect("reopen after the kills");
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let batch = store
            .read_all(
                &Scope::Tenant(TenantId::parse("crash").expect("tenant")),
                after,
                5_000,
            )
            .await
            .expect("read");
        let Some(last) = batch.last() else { break };
        after = last.position;
        stored.extend(batch);
    }
    let stored_ids: HashSet<Uuid> = stored.iter().map(|e| e.event_id).collect();
    let lost: Vec<&Uuid> = acknowledged
        .iter()
        .filter(|id| !stored_ids.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events were lost",
        lost.len()
    );
    // Batches of five are atomic: each stream holds a multiple of five events.
    let mut per_stream = std::collections::HashMap::<String, usize>::new();
    for event in &stored {
        *per_stream.entry(event.stream_id.to_string()).or_default() += 1;
    }
    for (stream, count) in per_stream {
        assert_eq!(
            count % 5,
            0,
            "stream {stream} holds a partial batch ({count} events)"
        );
    }
    let report = verify(store.as_ref(), &Scope::AllTenants)
        .await
        .expect("verify");
    assert_eq!(report.first_failure, None);
    assert_eq!(report.events_checked as usize, stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_killed_mid_write_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    kill_repeatedly_and_check(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_killed_mid_write_loses_no_acknowledged_event() {
    let Some(db) =
        TestDatabase::create("postgres_writer_killed_mid_write_loses_no_acknowledged_event").await
    else {
        return;
    };
    kill_repeatedly_and_check(db.url()).await;
}
