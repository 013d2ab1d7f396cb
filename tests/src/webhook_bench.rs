//! The webhook workloads of `crm-bench` (issue 20; `docs/benchmarks.md`, "Webhooks"), against
//! the real `crm-api` (`--webhooks-allow-loopback`) and a receiver on loopback that checks
//! every signature ([`crate::webhook_receiver`]):
//!
//! - H1: deliveries per second of one subscription taking every event of the data set (sent
//!   by A1's client), from the first delivery to the last; then append→delivery latency:
//!   single-event appends paced at 200 a second, each delivery's arrival minus its append's
//!   acknowledgement, p50 and p99.
//! - H2: A1 beside a subscription whose endpoint never answers (each attempt ends at the
//!   delivery timeout) and beside one whose endpoint answers at once, against A1 alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::api_bench::{self, Server};
use crate::bench_data::CustomerEvents;
use crate::webhook_receiver::{Mode, Receiver};

/// The interval between the latency samples' appends.
const PACE: Duration = Duration::from_millis(5);

/// Subscribes the receiver's endpoint `name` to every event; gives the receiver its secret.
pub async fn subscribe(server: &Server, receiver: &Receiver, name: &str) -> Result<String> {
    let answer: Value = server
        .client
        .post(format!("{}/v1/webhooks", server.address))
        .bearer_auth(&server.key)
        .json(&json!({"url": receiver.url(name)}))
        .send()
        .await?
        .json()
        .await?;
    let Some(secret) = answer["secret"].as_str() else {
        bail!("POST /v1/webhooks: {answer}");
    };
    receiver.set_secret(name, secret);
    Ok(answer["id"].as_str().unwrap_or_default().to_owned())
}

async fn wait_for_count(receiver: &Receiver, name: &str, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1_200);
    while receiver.count(name) < count {
        if Instant::now() > deadline {
            bail!(
                "{} of {count} deliveries arrived within 20 minutes",
                receiver.count(name)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// H1's figures.
#[derive(Debug, Clone)]
pub struct H1 {
    pub deliveries: usize,
    pub seconds: f64,
    pub deliveries_per_s: f64,
    pub latency_samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// H1 on `server` (started with `--webhooks-allow-loopback`, its key an admin key).
pub async fn h1(server: &Server, data: &[CustomerEvents], latency_samples: usize) -> Result<H1> {
    let receiver = Receiver::start().await;
    subscribe(server, &receiver, "bulk").await?;
    let (appended, _) = api_bench::a1(server, data, 500, 4).await?;
    wait_for_count(&receiver, "bulk", appended).await?;
    let (first, last) = receiver
        .span("bulk")
        .ok_or_else(|| anyhow::anyhow!("no delivery"))?;
    let seconds = last.duration_since(first).as_secs_f64().max(1e-9);
    // Latency: one event per append, paced at one every 5 ms (200/s, a tenth of what the
    // subscription delivers, so no backlog forms), on the caught-up subscription.
    let mut acknowledged: HashMap<u64, Instant> = HashMap::new();
    let paced = Instant::now();
    for i in 0..latency_samples {
        let due = paced + PACE * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let answer: Value = server
            .client
            .post(format!("{}/v1/events", server.address))
            .bearer_auth(&server.key)
            .json(&json!({"events": [{"type": "CustomerRegistered", "data": {
                "customer_id": format!("lat-{i}"), "kind": "person", "name": "Lat"}}]}))
            .send()
            .await?
            .json()
            .await?;
        let at = Instant::now();
        let Some(position) = answer["events"][0]["position"].as_u64() else {
            bail!("POST /v1/events: {answer}");
        };
        acknowledged.insert(position, at);
    }
    wait_for_count(&receiver, "bulk", appended + latency_samples).await?;
    let mut latencies: Vec<f64> = receiver
        .deliveries("bulk")
        .iter()
        .filter_map(|d| {
            let acked = acknowledged.get(&d.position()?)?;
            // A delivery may arrive before the client has read its append's answer: 0.
            Some(d.at.saturating_duration_since(*acked).as_secs_f64() * 1_000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    if receiver.bad_signatures() > 0 {
        bail!(
            "{} deliveries failed the signature check",
            receiver.bad_signatures()
        );
    }
    Ok(H1 {
        deliveries: appended,
        seconds,
        deliveries_per_s: appended as f64 / seconds,
        latency_samples: latencies.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}

/// A receiver with one endpoint in `mode`, subscribed on `server` (for H2).
pub async fn beside(server: &Server, mode: Mode) -> Result<Receiver> {
    let receiver = Receiver::start().await;
    receiver.set_mode("endpoint", mode);
    subscribe(server, &receiver, "endpoint").await?;
    Ok(receiver)
}
