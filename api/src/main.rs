//! The `crm-api` binary. `serve` opens (creating if needed) the event store, runs the
//! projection workers, which follow the log into the read models, and listens for HTTP
//! (`--listen`, default 127.0.0.1:8080) until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::future::IntoFuture;

use crm_api::app::{AppState, router};
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
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, which is logged).
    #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    store: StoreArgs,
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

async fn serve(args: ServeArgs) -> Result<()> {
    let url = args.store.store_url()?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen / CRM_LISTEN)", args.listen))?;
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
    let workers = runner::start(
        store.clone(),
        db,
        all_projections(),
        RunnerOptions::default(),
    );
    let app = router(AppState {
        store,
        projections: workers.subscribe(),
    });
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(%address, "listening");
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .into_future(),
    );
    tokio::select! {
        () = report_progress(workers.subscribe()) => {}
        () = shutdown_signal() => tracing::info!("shutting down"),
    }
    // In-flight requests finish; then the workers stop after their batch in progress.
    let _ = stop.send(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP server stopped with an error"),
        Err(error) => tracing::warn!(%error, "the HTTP server task failed"),
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
                match &status.error {
                    Some(error) => tracing::warn!(
                        projection = status.name,
                        state = ?status.state,
                        position = status.position,
                        lag = status.lag,
                        %error,
                        "projection"
                    ),
                    None => tracing::info!(
                        projection = status.name,
                        state = ?status.state,
                        position = status.position,
                        lag = status.lag,
                        "projection"
                    ),
                }
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
