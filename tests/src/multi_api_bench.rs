//! A3 (issue 21): three `crm-api serve` processes on one PostgreSQL database, the data set
//! ingested through all three at once (each customer's events through one of them, in
//! order), then proof that no read model skipped or double-applied an event: every
//! customer's 360 view, read with `min_position` at the log's head through each of the three
//! servers in turn, holds exactly its registration and nine interactions, and a sample of
//! timelines holds exactly its ten events.

use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::api_bench::{Server, a1, create_key};
use crate::bench_data::CustomerEvents;

/// What A3 measured.
#[derive(Debug)]
pub struct Figures {
    pub events: usize,
    pub seconds: f64,
    pub customers_checked: usize,
    pub timelines_checked: usize,
}

/// Ingests `parts[i]` through `servers[i]` at once (500 events a request, 4 connections
/// each), then checks every customer through the servers in turn with `analyst_key`.
pub async fn a3(
    servers: &[Server],
    parts: Vec<Vec<CustomerEvents>>,
    store_arg: &str,
    data_dir: &std::path::Path,
    head_of_log: impl std::future::Future<Output = Result<u64>>,
) -> Result<Figures> {
    let started = Instant::now();
    let mut ingests = Vec::new();
    for (server, part) in servers.iter().zip(&parts) {
        ingests.push(a1(server, part, 500, 4));
    }
    let results = futures::future::join_all(ingests).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut events = 0;
    for result in results {
        events += result?.0;
    }
    let head = head_of_log.await?;
    let key = create_key(store_arg, data_dir, "bench", "analyst")?;
    let mut customers_checked = 0;
    let mut timelines_checked = 0;
    for (n, customer) in parts.iter().flatten().enumerate() {
        let server = &servers[n % servers.len()];
        let id = customer
            .stream
            .as_str()
            .strip_prefix("customer-")
            .unwrap_or_default();
        let view: Value = server
            .client
            .get(format!(
                "{}/v1/customers/{id}?min_position={head}",
                server.address
            ))
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await?;
        let interactions = customer.events.len() as u64 - 1;
        if view["registered"] != true || view["interactions"]["total"] != interactions {
            bail!("customer {id}: a read model skipped or repeated an event: {view}");
        }
        customers_checked += 1;
        if n % 50 == 0 {
            let timeline: Value = server
                .client
                .get(format!(
                    "{}/v1/customers/{id}/timeline?min_position={head}&limit=100",
                    server.address
                ))
                .bearer_auth(&key)
                .send()
                .await?
                .json()
                .await?;
            let revisions: Vec<u64> = timeline["entries"]
                .as_array()
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|e| e["revision"].as_u64())
                        .collect()
                })
                .unwrap_or_default();
            let entries = revisions.len();
            let expected: Vec<u64> = (0..customer.events.len() as u64).collect();
            if revisions != expected {
                bail!("customer {id}: the timeline holds {entries} events: {timeline}");
            }
            timelines_checked += 1;
        }
    }
    Ok(Figures {
        events,
        seconds,
        customers_checked,
        timelines_checked,
    })
}
