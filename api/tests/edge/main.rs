//! The bounded edge (docs/architecture.md), against the real `crm-api` binary: metric labels
//! that no request can multiply, timeouts for silent and slow clients, a connection limit
//! that keeps `/healthz` answering, bounded JSON bodies, per-key rates and live streams, and
//! live streams that end when their key is revoked.

mod keys;
mod server;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use server::{Server, raw_request, read_until_closed};

/// A random method token of `len` upper-case letters.
fn random_method(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            b'A' + ((*seed >> 33) % 26) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_methods_add_no_metric_labels_and_cost_no_memory() {
    let server = Server::start(&[], None);
    let address = server.address.clone();
    tokio::task::spawn_blocking(move || {
        let mut seed = 7;
        for n in 0..1_000 {
            let mut request = random_method(&mut seed, 50 * 1024);
            let path = if n % 2 == 0 {
                "/healthz".to_owned()
            } else {
                format!("/nothing-{n}")
            };
            request.extend_from_slice(
                format!(" {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            let answer = raw_request(&address, &request);
            assert!(answer.starts_with(b"HTTP/1.1 "), "request {n} not answered");
        }
    })
    .await
    .expect("requests");
    let mut response = reqwest::get(server.url("/metrics")).await.expect("metrics");
    assert_eq!(response.status(), 200);
    let mut size = 0;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        size += chunk.len();
        assert!(size < 100 * 1024, "/metrics grew beyond 100 KB");
    }
    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("method=\"other\",route=\"/healthz\"")
            && text.contains("method=\"other\",route=\"unmatched\""),
        "odd methods count under one label: {text}"
    );
    let (rss, _) = server.memory_mib();
    assert!(rss < 150.0, "the server holds {rss} MiB");
}

#[test]
fn silent_and_idle_connections_are_closed_in_time() {
    let server = Server::start(
        &["--header-timeout-ms", "500", "--idle-timeout-ms", "1000"],
        None,
    );
    // Sends nothing.
    let started = Instant::now();
    let mut silent = server.connect(Duration::from_secs(10));
    let (_, closed) = read_until_closed(&mut silent);
    assert!(closed, "a silent connection stayed open for 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Sends half a request head and stops.
    let started = Instant::now();
    let mut partial = server.connect(Duration::from_secs(10));
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let (_, closed) = read_until_closed(&mut partial);
    assert!(closed, "a half-sent head kept its connection for 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // One request, then idles on a keep-alive connection.
    let mut idle = server.connect(Duration::from_secs(10));
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle);
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert!(closed, "an idle keep-alive connection stayed open for 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_leave_healthz_answering() {
    // This process holds every connection: it needs the descriptors. The server gets fewer
    // than the connections, as a production server under this attack would.
    let own = rlimit::increase_nofile_limit(u64::MAX).expect("RLIMIT_NOFILE");
    let wanted = 10_000.min(
        usize::try_from(own)
            .unwrap_or(usize::MAX)
            .saturating_sub(300),
    );
    let mut server = Server::start(&[], Some(2_048));
    assert!(wanted > 2_048, "this process may open only {own} files");
    let address = server.address.clone();
    let held = tokio::task::spawn_blocking(move || {
        let target = address.parse().expect("address");
        let mut held = Vec::with_capacity(wanted);
        // A server out of descriptors stops accepting: its backlog fills, a connect times out.
        while held.len() < wanted {
            match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
                Ok(stream) => held.push(stream),
                Err(error) => panic!("connection {} of {wanted} failed: {error}", held.len()),
            }
        }
        held
    })
    .await
    .expect("every connection was accepted");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for _ in 0..3 {
        let health = client.get(server.url("/healthz")).send().await;
        let status = health.map(|r| r.status().as_u16());
        assert_eq!(
            status.ok(),
            Some(200),
            "with {wanted} idle connections held"
        );
    }
    assert!(server.alive());
    assert!(
        !server.log().contains("Too many open files"),
        "{}",
        server.log()
    );
    drop(held);
}

#[test]
fn a_slow_body_is_cut_off() {
    let server = Server::start(&["--body-timeout-ms", "1000"], None);
    let mut stream = server.connect(Duration::from_secs(10));
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
        server.key
    );
    stream.write_all(head.as_bytes()).expect("head");
    let mut trickle = stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if trickle.write_all(b" ").is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(closed, "the connection stayed open after the 408");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(stream);
    let _ = writer.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_megabytes_of_tiny_values_are_refused_in_little_memory_eight_at_once_too() {
    let server = Server::start(&[], None);
    let client = reqwest::Client::new();
    let zeros = |open: &str, close: &str| {
        let mut body = Vec::with_capacity(16_000_016);
        body.extend_from_slice(open.as_bytes());
        while body.len() < 16_000_000 {
            body.extend_from_slice(b"0,");
        }
        body.push(b'0');
        body.extend_from_slice(close.as_bytes());
        body
    };
    let deep = format!("{{\"events\":{}{}}}", "[".repeat(200), "]".repeat(200));
    for (body, status, detail) in [
        (zeros("[", "]"), 422, "must be a JSON object"),
        (zeros("{\"events\":[", "]}"), 400, "too many small values"),
        (deep.into_bytes(), 400, "nested deeper than 64 levels"),
    ] {
        let response = client
            .post(server.url("/v1/events"))
            .bearer_auth(&server.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        let (rss, peak) = server.memory_mib();
        assert!(
            peak < 150.0,
            "the server's memory peaked at {peak} MiB (now {rss}) on a body meant to get {detail:?}"
        );
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.expect("json");
        let text = problem["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{problem}");
    }
    // Eight at once (1.5 GB before): little more than the eight bodies themselves.
    let body = zeros("{\"events\":[", "]}");
    let sends: Vec<_> = (0..8)
        .map(|_| {
            client
                .post(server.url("/v1/events"))
                .bearer_auth(&server.key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
        })
        .collect();
    for response in futures::future::join_all(sends).await {
        assert_eq!(response.expect("post").status(), 400);
    }
    let (rss, peak) = server.memory_mib();
    assert!(
        peak < 300.0,
        "eight bodies at once: a peak of {peak} MiB (now {rss})"
    );
}
