//! W7 (issue 21): mixed load. While events are ingested through `POST /v1/events` at a set
//! pace (half of A1's maximum, measured in the same run), Q1's random customer reads run on
//! the same server; what is measured is Q1's latency under that ingest, and the ingest rate
//! actually reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::api_bench::{Latencies, Server, q1, request_bodies};
use crate::bench_data::CustomerEvents;

/// What W7 measured.
#[derive(Debug)]
pub struct Figures {
    pub q1: Latencies,
    /// Events the paced ingest appended while Q1 ran, and over how long.
    pub ingested: usize,
    pub ingest_seconds: f64,
}

/// Ingests `data` at `rate` events per second (requests of `per_request` events, each sent
/// at its due time over `connections` connections) with `ingest_key`, while Q1 reads
/// `requests` random customers of the first `customers` over 8 connections.
pub async fn w7(
    server: &Server,
    ingest_key: &str,
    data: &[CustomerEvents],
    rate: f64,
    customers: u64,
    requests: usize,
) -> Result<Figures> {
    const PER_REQUEST: usize = 100;
    const CONNECTIONS: usize = 4;
    let bodies = request_bodies(data, PER_REQUEST)?;
    let bodies = Arc::new(bodies);
    let interval = Duration::from_secs_f64(PER_REQUEST as f64 / rate);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut ingest = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = server.client.clone();
        let (address, key) = (server.address.clone(), ingest_key.to_owned());
        let (bodies, stop, next) = (Arc::clone(&bodies), Arc::clone(&stop), Arc::clone(&next));
        ingest.push(tokio::spawn(async move {
            let mut appended = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(n) else {
                    return Ok::<_, anyhow::Error>(appended);
                };
                tokio::time::sleep_until(started + interval * n as u32).await;
                if stop.load(Ordering::Acquire) {
                    return Ok(appended);
                }
                let response = client
                    .post(format!("{address}/v1/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = response.status();
                let answer: Value = response.json().await?;
                if status != 201 {
                    bail!("POST /v1/events: {status} {answer}");
                }
                appended += answer["appended"].as_u64().unwrap_or(0) as usize;
            }
        }));
    }
    // Let the ingest reach its pace before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latencies = q1(server, customers, requests, 8).await?;
    stop.store(true, Ordering::Release);
    let ingest_seconds = Instant::now()
        .duration_since(started.into_std())
        .as_secs_f64();
    let mut ingested = 0;
    for task in ingest {
        ingested += task.await??;
    }
    if ingested == 0 {
        bail!("W7 ingested nothing");
    }
    Ok(Figures {
        q1: latencies,
        ingested,
        ingest_seconds,
    })
}
