//! The `crm-replay` binary: the analysts' and auditors' tool. Today it verifies the log's
//! hash chains; rebuild, snapshot, timeline, export, import and stats come with their issue.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crm_core::envelope::{StreamId, TenantId};
use crm_core::store::{Scope, StoreUrl, open_store, verify, verify_stream};

#[derive(Debug, Parser)]
#[command(
    name = "crm-replay",
    version,
    about = "Event-sourced CRM core: replay and audit tool"
)]
struct Cli {
    /// Directory of the embedded store (as used by `crm-api serve`).
    #[arg(long, global = true, env = "CRM_DATA_DIR", default_value = "crm-data")]
    data_dir: PathBuf,
    /// Store URL (`sqlite://PATH` or `postgres://...`); defaults to `<data-dir>/events.db`.
    #[arg(long, global = true, env = "CRM_STORE")]
    store: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every hash chain; exit 0 when intact, 1 naming the first broken event.
    Verify {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this stream (needs --tenant).
        #[arg(long, requires = "tenant")]
        stream: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    crm_core::telemetry::init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("crm-replay: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let url =
        StoreUrl::resolve(cli.store.as_deref(), &cli.data_dir).context("--store / CRM_STORE")?;
    if let StoreUrl::Sqlite { path, .. } = &url
        && !path.exists()
    {
        anyhow::bail!(
            "no store at {} (start crm-api serve first, or pass --store)",
            path.display()
        );
    }
    let store = open_store(&url)
        .await
        .with_context(|| format!("cannot open the store at {}", url.redacted()))?;
    match cli.command {
        Command::Verify { tenant, stream } => {
            let tenant = tenant.map(|t| TenantId::parse(&t)).transpose()?;
            let report = match (&tenant, stream) {
                (Some(tenant), Some(stream)) => {
                    let stream = StreamId::parse(&stream)?;
                    verify_stream(store.as_ref(), tenant, &stream).await?
                }
                (Some(tenant), None) => {
                    verify(store.as_ref(), &Scope::Tenant(tenant.clone())).await?
                }
                (None, _) => verify(store.as_ref(), &Scope::AllTenants).await?,
            };
            if cli.json {
                println!("{}", serde_json::to_string(&report)?);
            } else if let Some(failure) = &report.first_failure {
                println!("BROKEN: {failure}");
            } else {
                println!(
                    "intact: {} events in {} streams verify",
                    report.events_checked, report.streams_checked
                );
            }
            Ok(if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
