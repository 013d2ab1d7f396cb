//! crm-crash-writer: a test helper that appends batches to a store as fast as it can and
//! prints one line per acknowledged append (`ack <event id>...`), flushed, so a test can kill
//! it at any instant and check that every acknowledged event survived.

use std::io::Write;

use anyhow::{Context, Result};
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::{ExpectedRevision, StoreUrl, open_store};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::args()
        .nth(1)
        .context("usage: crm-crash-writer STORE_URL")?;
    let store = open_store(&StoreUrl::parse(&url)?).await?;
    let tenant = TenantId::parse("crash")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    for n in 0u64.. {
        let stream = StreamId::new("customer", &format!("c{}", n % 40))?;
        let events: Vec<NewEvent> = (0..5)
            .map(|i| {
                NewEvent::new(
                    "InteractionLogged",
                    &json!({"customer_id": format!("c{}", n % 40), "interaction_id": format!("i-{n}-{i}"), "channel": "web", "direction": "inbound"}),
                )
            })
            .collect();
        let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
        store
            .append(&tenant, &stream, ExpectedRevision::Any, events)
            .await?;
        writeln!(stdout, "ack {}", ids.join(" "))?;
        stdout.flush()?;
    }
    Ok(())
}
