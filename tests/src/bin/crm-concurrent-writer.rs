//! crm-concurrent-writer: a test helper for the gap test across processes. Opens the store,
//! prints `ready`, waits for a line on stdin (so that several processes start writing at
//! once), makes `CLIENTS` × `PER_CLIENT` concurrent appends (`crm_tests::concurrent_writers`),
//! then prints one `ack` line per acknowledged event and `done`.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use crm_core::envelope::TenantId;
use crm_core::store::{SharedStore, StoreUrl, open_store};
use crm_tests::concurrent_writers;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, clients, per_client] = args.as_slice() else {
        anyhow::bail!("usage: crm-concurrent-writer STORE_URL PREFIX CLIENTS PER_CLIENT");
    };
    let clients: usize = clients.parse().context("CLIENTS must be a number")?;
    let per_client: usize = per_client.parse().context("PER_CLIENT must be a number")?;
    let store: SharedStore = open_store(&StoreUrl::parse(url)?).await?;
    let tenant = TenantId::parse("concurrent")?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go)?;
    let acks = concurrent_writers::write(&store, &tenant, prefix, clients, per_client).await?;
    let mut stdout = std::io::stdout().lock();
    for ack in &acks {
        writeln!(stdout, "{}", ack.line())?;
    }
    writeln!(stdout, "done")?;
    stdout.flush()?;
    Ok(())
}
