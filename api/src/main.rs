//! The `crm-api` binary. `serve` opens (creating if needed) the event store and runs the
//! projection workers, which follow the log into the read models, until interrupted; the
//! HTTP API and key management build on this.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crm_core::store::{StoreUrl, open_store};
use crm_projections::runner::{self, ProjectionStatus, RunState, RunnerOptions};
use crm_projections::{ReadDb, all_projections};
use tokio::sync::watch;

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
    let db = ReadDb::open(&url)
        .await
        .context("cannot open the read-model tables")?;
    let workers = runner::start(store, db, all_projections(), RunnerOptions::default());
    tokio::select! {
        () = report_progress(workers.subscribe()) => {}
        () = shutdown_signal() => tracing::info!("shutting down"),
    }
    workers
        .shutdown()
        .await
        .context("the projection workers stopped with an error")
}

/// Logs each projection's state whenever it changes (not every position it reaches).
async fn report_progress(mut statuses: watch::Receiver<Vec<ProjectionStatus>>) {
    let mut last: Vec<(&'static str, RunState)> = Vec::new();
    loop {
        let now: Vec<ProjectionStatus> = statuses.borrow_and_update().clone();
        for status in &now {
            let previous = last.iter().find(|(name, _)| *name == status.name);
            if previous.is_none_or(|(_, state)| *state != status.state) {
                tracing::info!(
                    projection = status.name,
                    state = ?status.state,
                    position = status.position,
                    lag = status.lag,
                    error = status.error.as_deref().unwrap_or(""),
                    "projection"
                );
            }
        }
        last = now.iter().map(|s| (s.name, s.state)).collect();
        if statuses.changed().await.is_err() {
            return;
        }
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
