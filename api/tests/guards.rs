//! `crm-api serve` on a store whose append-only guard was dropped or disabled outside the
//! program: it refuses to start, naming the guard, and recreates it only when told
//! (`--restore-guards`). On both backends, through the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crm_core::store::StoreUrl;
use crm_core::store::guards;
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

fn serve(dir: &Path, store: &str, extra: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--store", store])
        .args(extra)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env("CRM_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crm-api")
}

/// Runs `serve` and expects it to exit on its own, failing: its stderr.
fn refused(dir: &Path, store: &str) -> String {
    let child = serve(dir, store, &[]);
    let output = child.wait_with_output().expect("wait");
    assert!(
        !output.status.success(),
        "serve started on a guardless store"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `serve --restore-guards`, waits for it to listen, and stops it.
fn started_restoring(dir: &Path, store: &str) -> String {
    let mut child = serve(dir, store, &["--restore-guards"]);
    let stderr = child.stderr.take().expect("stderr");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("listening") || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("listening"), "{seen}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_sqlite_store_without_its_guard_until_told_to_restore_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.db");
    let url = StoreUrl::Sqlite {
        path: path.clone(),
        durability: crm_core::store::sqlite::Durability::Normal,
    };
    drop(crm_tests::open_test_store(&url).await.expect("store"));
    let store = format!("sqlite://{}", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&store)
        .await
        .expect("connect");
    sqlx::raw_sql("DROP TRIGGER crm_events_append_only_delete")
        .execute(&mut conn)
        .await
        .expect("drop the guard");
    conn.close().await.expect("close");

    let stderr = refused(dir.path(), &store);
    assert!(stderr.contains("crm_events_append_only_delete"), "{stderr}");
    assert!(stderr.contains("--restore-guards"), "{stderr}");
    assert_eq!(
        guards::missing(&url).await.expect("check"),
        ["crm_events_append_only_delete"]
    );

    let log = started_restoring(dir.path(), &store);
    assert!(log.contains("recreated"), "{log}");
    assert!(guards::missing(&url).await.expect("check").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_postgres_store_whose_guard_was_disabled_until_told_to_restore_it() {
    let Some(db) = crm_tests::postgres::TestDatabase::create(
        "serve_refuses_a_postgres_store_whose_guard_was_disabled_until_told_to_restore_it",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let url = StoreUrl::Postgres {
        url: db.url().to_owned(),
    };
    drop(crm_tests::open_test_store(&url).await.expect("store"));
    let mut conn = sqlx::PgConnection::connect(db.url())
        .await
        .expect("connect");
    sqlx::raw_sql("ALTER TABLE crm_events DISABLE TRIGGER crm_events_append_only")
        .execute(&mut conn)
        .await
        .expect("disable the guard");
    conn.close().await.expect("close");

    let stderr = refused(dir.path(), db.url());
    assert!(stderr.contains("crm_events_append_only"), "{stderr}");
    assert_eq!(
        guards::missing(&url).await.expect("check"),
        ["crm_events_append_only"]
    );

    started_restoring(dir.path(), db.url());
    assert!(guards::missing(&url).await.expect("check").is_empty());
    let mut conn = sqlx::PgConnection::connect(db.url())
        .await
        .expect("connect");
    let error = sqlx::raw_sql("DELETE FROM crm_events")
        .execute(&mut conn)
        .await
        .expect_err("the guard is back");
    assert!(error.to_string().contains("append-only"), "{error}");
}
