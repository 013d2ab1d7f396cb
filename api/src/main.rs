//! The `crm-api` binary. `serve` opens (creating if needed) the event store and follows its
//! log until interrupted; the HTTP API, projection workers and key management build on this.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crm_core::store::{EventSubscription, Scope, StoreUrl, open_store, subscribe_all};

#[derive(Debug, Parser)]
#[command(
    name = "crm-api",
    version,
    about = "Event-sourced CRM core: the service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open the store and serve until Ctrl-C or SIGTERM.
    Serve(StoreArgs),
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Directory for the embedded store and the service's files.
    #[arg(long, env = "CRM_DATA_DIR", default_value = "crm-data")]
    data_dir: PathBuf,
    /// Store URL (`sqlite://PATH` or `postgres://...`); defaults to `<data-dir>/events.db`.
    #[arg(long, env = "CRM_STORE")]
    store: Option<String>,
}

impl StoreArgs {
    fn store_url(&self) -> Result<StoreUrl> {
        StoreUrl::resolve(self.store.as_deref(), &self.data_dir).context("--store / CRM_STORE")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    crm_core::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: StoreArgs) -> Result<()> {
    let url = args.store_url()?;
    let store = open_store(&url)
        .await
        .with_context(|| format!("cannot open the store at {}", url.redacted()))?;
    let head = store
        .head_position()
        .await
        .context("cannot read the head")?;
    tracing::info!(store = %url.redacted(), head_position = head, "store ready");
    let log = subscribe_all(store, Scope::AllTenants, head);
    tokio::select! {
        result = follow(log) => result,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// Logs the log's progress; the projection workers will take this place.
async fn follow(mut log: EventSubscription) -> Result<()> {
    loop {
        let batch = log.next_batch().await?;
        tracing::info!(
            events = batch.len(),
            head_position = log.position(),
            "new events"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
