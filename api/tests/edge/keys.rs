//! Per-key bounds: request rates, open live streams, and live streams of a revoked key.

use std::time::{Duration, Instant};

use crate::server::Server;

async fn live(client: &reqwest::Client, server: &Server, key: &str) -> reqwest::Response {
    client
        .get(server.url("/v1/events/live"))
        .bearer_auth(key)
        .send()
        .await
        .expect("live")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_keys_live_stream_ends_within_the_key_cache_period() {
    let server = Server::start(&["--key-cache-ms", "1000"], None);
    let client = reqwest::Client::new();
    let key = server.keys(&["create", "--tenant", "default", "--role", "analyst"]);
    let mut stream = live(&client, &server, &key).await;
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(async move {
        while let Ok(Some(_)) = stream.chunk().await {}
        Instant::now()
    });
    // The stream is open and stays so while the key is valid.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!reader.is_finished(), "the stream ended with its key valid");
    let revoked_at = Instant::now();
    server.keys(&["revoke", &key]);
    let ended = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the live stream of a revoked key is still open after 10 s")
        .expect("reader");
    let took = ended.duration_since(revoked_at);
    // The cache period, and the time `crm-api keys revoke` takes to start and return.
    assert!(took < Duration::from_millis(2_500), "ended {took:?} after");
    let refused = live(&client, &server, &key).await;
    assert_eq!(refused.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holds_at_most_its_live_streams() {
    let server = Server::start(&["--live-streams-per-key", "2"], None);
    let client = reqwest::Client::new();
    let first = live(&client, &server, &server.key).await;
    let second = live(&client, &server, &server.key).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = live(&client, &server, &server.key).await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["content-type"], "application/problem+json");
    assert!(third.headers().contains_key("retry-after"));
    let problem: serde_json::Value = third.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("--live-streams-per-key")),
        "{problem}"
    );
    let other = server.keys(&["create", "--tenant", "default", "--role", "analyst"]);
    let theirs = live(&client, &server, &other).await;
    assert_eq!(theirs.status(), 200, "another key has its own streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let server = Server::start(&["--rate-limit", "2", "--rate-burst", "5"], None);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let response = client
            .get(server.url("/v1/projections"))
            .bearer_auth(&server.key)
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
        if response.status() == 429 && refused.is_none() {
            refused = Some(response);
        }
    }
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 10,
        "{statuses:?}"
    );
    let refused = refused.expect("a 429");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Requests without a key are not counted against it; the key's bucket refills.
    let health = client.get(server.url("/healthz")).send().await.expect("h");
    assert_eq!(health.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again = client
        .get(server.url("/v1/projections"))
        .bearer_auth(&server.key)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 200);
}
