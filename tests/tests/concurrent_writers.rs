//! The gap test across processes (issue 21): three `crm-concurrent-writer` processes, each
//! with 16 concurrent appending tasks, write to one store at once while a reader in this
//! process follows the log from its checkpoint. Positions stay gap-free, the reader sees every
//! event exactly once in position order, every acknowledged append is where its
//! acknowledgement says, each stream's revisions are contiguous, and the log verifies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crm_core::store::{SharedStore, StoreUrl, open_store};
use crm_tests::concurrent_writers::{self, Ack};
use crm_tests::postgres::TestDatabase;

const PROCESSES: usize = 3;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 60;

struct Writer {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

fn start(url: &str, prefix: &str) -> Writer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm-concurrent-writer"))
        .args([url, prefix, &CLIENTS.to_string(), &PER_CLIENT.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines.next().expect("a line").expect("read");
    assert_eq!(ready, "ready", "the writer did not open the store");
    Writer { child, lines }
}

async fn across_processes(url: &str) {
    // The schema is made once, before the writers race to open the store.
    let store: SharedStore = open_store(&StoreUrl::parse(url).expect("url"))
        .await
        .expect("open the store");
    let mut writers: Vec<Writer> = (0..PROCESSES)
        .map(|p| start(url, &format!("p{p}")))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(concurrent_writers::follow(
        Arc::clone(&store),
        Arc::clone(&stop),
    ));
    for writer in &mut writers {
        let stdin = writer.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go").expect("start writing");
    }
    let acks = tokio::task::spawn_blocking(move || {
        let mut acks = Vec::new();
        for mut writer in writers {
            for line in writer.lines.by_ref() {
                let line = line.expect("read");
                if line == "done" {
                    break;
                }
                acks.push(Ack::parse(&line).expect("an ack line"));
            }
            let status = writer.child.wait().expect("wait");
            assert!(status.success(), "a writer failed: {status}");
        }
        acks
    })
    .await
    .expect("collect");
    stop.store(true, Ordering::Release);
    let seen = reader.await.expect("reader").expect("read the log");
    concurrent_writers::check(&store, &acks, &seen, PROCESSES * CLIENTS * PER_CLIENT)
        .await
        .expect("no gap, no skip, nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers_in_three_processes_leave_no_gap_and_no_skipped_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    across_processes(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_writers_in_three_processes_leave_no_gap_and_no_skipped_event() {
    let Some(db) = TestDatabase::create("concurrent_writers_processes").await else {
        return;
    };
    across_processes(db.url()).await;
}
