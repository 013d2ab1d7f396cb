//! PostgreSQL only: the pools hand out connections without a ping, except connections that
//! sat idle, so one the server dropped meanwhile (a restart, an idle timeout, an operator) is
//! replaced instead of failing the caller's query.

use std::time::Duration;

use crm_core::store::postgres::pool_options;
use crm_tests::postgres::TestDatabase;
use sqlx::{Connection, Executor};

#[tokio::test]
async fn an_idle_connection_the_server_dropped_is_replaced_before_use() {
    let Some(db) =
        TestDatabase::create("an_idle_connection_the_server_dropped_is_replaced_before_use").await
    else {
        return;
    };
    let pool = pool_options(1).connect(db.url()).await.expect("pool");
    let first: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("first query");

    // The server ends that (now idle) connection.
    let mut admin = sqlx::PgConnection::connect(db.url()).await.expect("admin");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(terminated, "the pooled connection's backend was ended");
    admin.execute("SELECT 1").await.expect("admin alive");

    // Idle for longer than the ping threshold: the next query gets a working connection.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let second: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("a dead idle connection is replaced, not handed out");
    assert_ne!(first, second, "a new backend answers");
    pool.close().await;
}
