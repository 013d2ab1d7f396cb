//! The `crm-api` binary. `serve` opens (creating if needed) the event store, runs the
//! projection workers, which follow the log into the read models, and listens for HTTP
//! (`--listen`, default 127.0.0.1:8080) until SIGTERM or Ctrl-C. On the first start of a
//! store it creates an admin key for the tenant `default`, prints it once and writes it to
//! `<data-dir>/admin.key` (mode 0600). `keys create|list|rotate|revoke` manage keys, also
//! while a server runs on the same store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crm_api::app::{Limits, router};
use crm_api::edge::server::ServerConfig;
use crm_api::keys::{KeyStore, Role};
use crm_core::envelope::TenantId;
use crm_core::store::StoreUrl;
use crm_projections::ReadDb;
use crm_projections::runner::{ProjectionStatus, RunState};
use tokio::sync::watch;

/// mimalloc instead of the system allocator: decoding, folding and serialising events
/// allocate many small, short-lived values, which glibc's allocator serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Create, list, rotate or revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the OpenAPI 3.1 document (the one `GET /openapi.json` serves), e.g. to generate
    /// a client; needs no store.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; prints it (only the key, on stdout) once: it is stored hashed.
    Create {
        /// The tenant the key is bound to.
        #[arg(long)]
        tenant: String,
        /// ingest (append), analyst (read models and the log), auditor (timelines and
        /// verification) or admin (everything).
        #[arg(long)]
        role: String,
        /// The key reads personal fields (names, emails, phones, free texts) in plain text,
        /// may search customers and read a subject's personal data; without it they read
        /// "[redacted]". Admin keys always read them. Reads are recorded in the access log.
        #[arg(long)]
        personal_data: bool,
        /// A note for `keys list`, e.g. who holds the key.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace a key by a new one (a new id and secret, printed once, with the same tenant,
    /// role, personal-data flag and label); the old key keeps working for the grace period,
    /// then is refused.
    Rotate {
        /// The key to replace: its id (as `keys list` shows it) or its full text.
        key: String,
        /// How long the old key stays valid, e.g. 24h, 30m, 7d (0s ends it at once; a key
        /// due to expire sooner keeps its own expiry).
        #[arg(long, default_value = "24h", value_parser = lifetime)]
        grace: std::time::Duration,
        #[command(flatten)]
        expiry: ExpiryArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id (or its full text); a running server refuses it within seconds.
    Revoke {
        /// The key to revoke: its id (as `keys list` shows it) or its full text.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// When a new key expires (by default never; for `keys rotate`, after the old key's
/// lifetime).
#[derive(Debug, clap::Args)]
struct ExpiryArgs {
    /// The key expires this long after now, e.g. 90d, 12h, 30m, 45s (without it or
    /// --expires-at: never; for `keys rotate`, after the old key's lifetime).
    #[arg(long, value_parser = lifetime, conflicts_with = "expires_at")]
    expires_in: Option<std::time::Duration>,
    /// The key expires at this RFC 3339 time, e.g. 2027-01-01T00:00:00Z.
    #[arg(long, value_parser = rfc3339)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl ExpiryArgs {
    /// The expiry asked for, if any; refused when not in the future.
    fn expires_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let now = chrono::Utc::now();
        let at = match (self.expires_in, self.expires_at) {
            (Some(lifetime), _) => Some(
                chrono::Duration::from_std(lifetime)
                    .ok()
                    .and_then(|lifetime| now.checked_add_signed(lifetime))
                    .context("--expires-in: too far in the future")?,
            ),
            (None, at) => at,
        };
        if let Some(at) = at
            && at <= now
        {
            anyhow::bail!("--expires-at: {} is not in the future", at.to_rfc3339());
        }
        Ok(at)
    }
}

fn lifetime(text: &str) -> Result<std::time::Duration, String> {
    crm_api::keys::parse_lifetime(text)
}

fn rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, which is logged).
    #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    store: StoreArgs,
    /// A PostgreSQL hot standby of the --store database (`postgres://...`), to which the
    /// read-model queries go; appends, the projection workers and everything else that writes
    /// stay on --store. Read-your-writes (min_position) waits for the replica's own
    /// checkpoints. Its sessions are named `crm-api-read` (application_name).
    #[arg(long, env = "CRM_READ_STORE")]
    read_store: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "CRM_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most events in one POST /v1/events.
    #[arg(long, env = "CRM_MAX_BATCH_EVENTS", default_value_t = Limits::default().max_batch_events)]
    max_batch_events: usize,
    /// Longest a query waits for its min_position, in milliseconds.
    #[arg(long, env = "CRM_MAX_WAIT_MS", default_value_t = 10_000)]
    max_wait_ms: u64,
    /// The master-key file (default for SQLite: `master.key` beside the store; created on a
    /// new store). `CRM_MASTER_KEY` (the key itself) takes precedence.
    #[arg(long, env = "CRM_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// The Ed25519 key file that signs tree heads (default for SQLite: `signing.key` beside the
    /// store, created on first start; PostgreSQL serves no signed heads without one).
    /// `CRM_SIGNING_KEY` (the key itself) takes precedence.
    #[arg(long, env = "CRM_SIGNING_KEY_FILE")]
    signing_key_file: Option<PathBuf>,
    /// Write each tenant's signed tree head to DIR/<tenant>/head-<size>.json at the start and
    /// then every --every (new files only; keep DIR on write-once storage).
    #[arg(long, env = "CRM_PUBLISH_HEADS")]
    publish_heads: Option<PathBuf>,
    /// How often --publish-heads writes, e.g. 10m, 1h, 30s.
    #[arg(long, env = "CRM_PUBLISH_EVERY", value_parser = lifetime, default_value = "10m", requires = "publish_heads")]
    every: std::time::Duration,
    /// Recreate the log's append-only triggers if they were dropped or altered outside this
    /// program (without it, `serve` refuses such a store, naming them). Run
    /// `crm-replay verify` first: whoever removed them may have edited the log.
    #[arg(long)]
    restore_guards: bool,
    /// Seconds after the start before the first daily run of the tenants' retention rules.
    #[arg(long, env = "CRM_RETENTION_DELAY_SECS", default_value_t = 60)]
    retention_delay_secs: u64,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    webhooks: WebhookArgs,
}

/// The webhook delivery worker (docs/automation.md).
#[derive(Debug, clap::Args)]
struct WebhookArgs {
    /// Let webhooks deliver to loopback addresses (127.0.0.0/8, ::1): for tests and local
    /// development only. Every other private, link-local or reserved address stays refused.
    #[arg(long, env = "CRM_WEBHOOKS_ALLOW_LOOPBACK")]
    webhooks_allow_loopback: bool,
    /// For tests only: divide every retry delay by this (a compressed clock).
    #[arg(
        long,
        env = "CRM_WEBHOOKS_TIME_DIVISOR",
        default_value_t = 1,
        hide = true
    )]
    webhooks_time_divisor: u32,
    /// For tests and benchmarks: the longest one delivery may take, in milliseconds.
    #[arg(
        long,
        env = "CRM_WEBHOOKS_TIMEOUT_MS",
        default_value_t = 15_000,
        hide = true
    )]
    webhooks_timeout_ms: u64,
}

/// The bounds on what one client, key or connection may cost (docs/architecture.md: "the
/// edge is bounded").
#[derive(Debug, clap::Args)]
struct EdgeArgs {
    /// A new connection must send a whole request head within this time, in milliseconds.
    #[arg(long, env = "CRM_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// A request body must arrive within this time, in milliseconds (408 beyond).
    #[arg(long, env = "CRM_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after this time, in
    /// milliseconds.
    #[arg(long, env = "CRM_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Most open client connections; lowered to fit the descriptor limit (RLIMIT_NOFILE,
    /// raised to its hard limit as needed) less 256. At the limit the oldest idle connection
    /// is closed to make room.
    #[arg(long, env = "CRM_MAX_CONNECTIONS", default_value_t = 4_096)]
    max_connections: usize,
    /// Requests per second per key on average (429 with Retry-After beyond); 0 turns the
    /// limit off.
    #[arg(long, env = "CRM_RATE_LIMIT", default_value_t = Limits::default().rate_per_second)]
    rate_limit: u32,
    /// Requests a key may send at once above its average rate.
    #[arg(long, env = "CRM_RATE_BURST", default_value_t = Limits::default().rate_burst)]
    rate_burst: u32,
    /// Live event streams one key may hold open at once (429 beyond).
    #[arg(long, env = "CRM_LIVE_STREAMS_PER_KEY", default_value_t = Limits::default().live_streams_per_key)]
    live_streams_per_key: usize,
    /// How long the server trusts what it read about a key, in milliseconds: a revoked key is
    /// refused, and its live streams end, within this time.
    #[arg(long, env = "CRM_KEY_CACHE_MS", default_value_t = 2_000)]
    key_cache_ms: u64,
    /// Deepest nesting of a JSON request body (400 beyond).
    #[arg(long, env = "CRM_JSON_MAX_DEPTH", default_value_t = Limits::default().json_max_depth)]
    json_max_depth: usize,
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
        Command::Keys(command) => keys(command).await,
        Command::Openapi => serde_json::to_string_pretty(crm_api::openapi::spec())
            .map(|document| println!("{document}"))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long a stop waits for open connections to finish before closing them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve(args: ServeArgs) -> Result<()> {
    // The stop signals are caught from the start: one that arrives while the store opens and
    // the workers start is kept, and stops the server once it runs (a signal before the
    // handler existed would kill the process mid-start).
    let stop_signal = shutdown_signal();
    let url = args.store.store_url()?;
    let read_url = read_store_url(args.read_store.as_deref(), &url)?;
    if args.max_batch_events == 0 || args.max_body_bytes == 0 {
        anyhow::bail!("--max-batch-events and --max-body-bytes must be above 0");
    }
    if args.publish_heads.is_some() && args.every.is_zero() {
        anyhow::bail!("--every must be at least 1s");
    }
    let edge = &args.edge;
    if edge.header_timeout_ms == 0
        || edge.body_timeout_ms == 0
        || edge.idle_timeout_ms == 0
        || edge.max_connections == 0
        || edge.live_streams_per_key == 0
        || edge.json_max_depth == 0
    {
        anyhow::bail!(
            "--header-timeout-ms, --body-timeout-ms, --idle-timeout-ms, --max-connections, \
             --live-streams-per-key and --json-max-depth must be above 0"
        );
    }
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_batch_events: args.max_batch_events,
        max_wait: std::time::Duration::from_millis(args.max_wait_ms),
        body_timeout: std::time::Duration::from_millis(edge.body_timeout_ms),
        json_max_depth: edge.json_max_depth,
        rate_per_second: edge.rate_limit,
        rate_burst: edge.rate_burst.max(1),
        live_streams_per_key: edge.live_streams_per_key,
        key_cache: std::time::Duration::from_millis(edge.key_cache_ms),
        ..Limits::default()
    };
    let fitted = crm_api::edge::fds::fit(edge.max_connections);
    if fitted.max_connections < edge.max_connections {
        tracing::warn!(
            wanted = edge.max_connections,
            max_connections = fitted.max_connections,
            nofile = fitted.nofile,
            "--max-connections lowered to fit the descriptor limit (RLIMIT_NOFILE)"
        );
    }
    let server_config = ServerConfig {
        header_timeout: std::time::Duration::from_millis(edge.header_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(edge.idle_timeout_ms),
        max_connections: fitted.max_connections,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen / CRM_LISTEN)", args.listen))?;
    let source = crm_core::privacy::KeySource {
        value: std::env::var(crm_core::privacy::MASTER_KEY_ENV).ok(),
        file: args.master_key_file.clone(),
    };
    let restored = crm_core::store::guards::ensure(&url, args.restore_guards)
        .await
        .with_context(|| format!("refusing to serve the store at {}", url.redacted()))?;
    if !restored.is_empty() {
        tracing::warn!(
            guards = restored.join(", "),
            "the log's append-only guards were missing or altered and have been recreated"
        );
    }
    let signing = crm_core::audit::SigningKeySource {
        value: std::env::var(crm_core::audit::SIGNING_KEY_ENV).ok(),
        file: args.signing_key_file.clone(),
    };
    let replica = match &read_url {
        Some(read_url) => Some(open_replica(read_url).await?),
        None => None,
    };
    let running =
        crm_api::app::start_with_replica(&url, replica, limits, &source, &signing).await?;
    if let Some(path) = &running.created_signing_key {
        eprintln!(
            "\n*** A new head-signing key was written to {} (mode 0600). It signs the tree \
             heads auditors keep: back it up apart from the store. Anyone holding it can sign \
             heads in this server's name. ***\n",
            path.display()
        );
    }
    match &running.state.signer {
        Some(signer) => tracing::info!(key_id = %signer.public().key_id(), "tree heads are signed"),
        None => tracing::warn!(
            "no head-signing key (--signing-key-file or CRM_SIGNING_KEY): GET /v1/audit/head \
             answers 503 until the server is started with one"
        ),
    }
    if let Some(path) = &running.created_key_file {
        eprintln!(
            "\n*** A new master key was written to {} (mode 0600). It encrypts every \
             customer's personal data in this store: back it up apart from the store, and \
             keep it off the machine that holds the store file if you can. Losing it loses \
             the personal data; anyone holding it and the store can read it. ***\n",
            path.display()
        );
    }
    let head = running
        .state
        .store
        .head_position()
        .await
        .context("cannot read the head")?;
    tracing::info!(store = %url.redacted(), head_position = head, "store ready");
    first_start_key(&running.state.keys, &args.store.data_dir).await?;
    let state = running.state.clone();
    let retention = crm_api::retention::spawn(
        state.clone(),
        std::time::Duration::from_secs(args.retention_delay_secs),
    );
    let publisher = match (&args.publish_heads, &state.signer) {
        (Some(dir), Some(signer)) => Some(crm_api::heads::spawn(
            state.clone(),
            signer.clone(),
            dir.clone(),
            args.every,
        )),
        (Some(_), None) => anyhow::bail!(
            "--publish-heads needs a head-signing key (--signing-key-file or CRM_SIGNING_KEY)"
        ),
        (None, _) => None,
    };
    let webhook_options = crm_automation::webhooks::WorkerOptions {
        client: crm_automation::webhooks::client::ClientOptions {
            allow_loopback: args.webhooks.webhooks_allow_loopback,
            answer_timeout: std::time::Duration::from_millis(
                args.webhooks.webhooks_timeout_ms.max(1),
            ),
            ..Default::default()
        },
        time_divisor: args.webhooks.webhooks_time_divisor.max(1),
        ..Default::default()
    };
    if args.webhooks.webhooks_allow_loopback {
        tracing::warn!("webhooks may deliver to loopback addresses (--webhooks-allow-loopback)");
    }
    let deliveries = crm_automation::webhooks::spawn(
        state.private.clone(),
        state.db.clone(),
        state.webhooks.clone(),
        webhook_options,
    )
    .await
    .context("cannot start the webhook delivery worker")?;
    let app = router(running.state);
    let workers = running.workers;
    let tree = running.tree;
    let workflows = running.workflows;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(
        %address,
        max_connections = server_config.max_connections,
        "listening"
    );
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(crm_api::edge::server::serve(
        listener,
        app,
        server_config,
        stopped,
    ));
    tokio::select! {
        () = report_progress(workers.subscribe()) => {}
        () = stop_signal => tracing::info!("shutting down"),
    }
    // Live event streams end; in-flight requests (appends among them) finish; then the
    // workers stop after their batch in progress.
    let _ = state.closing.send(true);
    let _ = stop.send(true);
    let mut server = server;
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP server task failed"),
        Err(_) => {
            // A client that stopped reading (a live stream nobody consumes, say) would hold
            // its connection, and the stop, forever. Appends acknowledged so far are
            // committed; whatever is still in flight is answered by a closed connection.
            tracing::warn!(
                grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                "connections still open after the grace period: closing them"
            );
            server.abort();
            let _ = server.await;
        }
    }
    // No request is answered any more: the last `last_used_at` writes finish.
    state.keys.settle().await;
    // The retention task ends at `closing`; a run in progress stops between tenants, or is
    // abandoned after the grace period (each erasure is one atomic append; the next run
    // continues).
    let mut retention = retention;
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut retention)
        .await
        .is_err()
    {
        retention.abort();
    }
    if let Some(publisher) = publisher {
        publisher.abort();
        let _ = publisher.await;
    }
    workflows.shutdown().await;
    deliveries.shutdown().await;
    workers
        .shutdown()
        .await
        .context("the projection workers stopped with an error")?;
    tree.shutdown().await;
    // Nothing writes any more: the store file alone holds every commit.
    if let Err(error) = state.db.fold_wal().await {
        tracing::warn!(%error, "could not fold the write-ahead log into the store file");
    }
    Ok(())
}

/// The `--read-store` URL, refused unless it and `--store` are both PostgreSQL.
fn read_store_url(read_store: Option<&str>, store: &StoreUrl) -> Result<Option<StoreUrl>> {
    let Some(text) = read_store else {
        return Ok(None);
    };
    let read_url = StoreUrl::parse(text).context("--read-store / CRM_READ_STORE")?;
    if !matches!(read_url, StoreUrl::Postgres { .. }) {
        anyhow::bail!(
            "--read-store / CRM_READ_STORE: {} is not a PostgreSQL URL; a read replica is a \
             PostgreSQL hot standby (postgres://...)",
            read_url.redacted()
        );
    }
    if !matches!(store, StoreUrl::Postgres { .. }) {
        anyhow::bail!(
            "--read-store / CRM_READ_STORE needs a PostgreSQL --store; {} is SQLite, which has \
             no read replicas",
            store.redacted()
        );
    }
    Ok(Some(read_url))
}

/// Connects to the read replica (one connection at once, so an unreachable one stops the
/// start) and warns when it is not a hot standby.
async fn open_replica(url: &StoreUrl) -> Result<ReadDb> {
    let db = ReadDb::open_replica(url, REPLICA_POOL)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the read replica {} (--read-store / CRM_READ_STORE)",
                url.redacted()
            )
        })?;
    let standby = db
        .fetch(
            "SELECT CAST(CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END AS BIGINT)",
            vec![],
            &[crm_projections::db::Col::Int],
        )
        .await
        .with_context(|| format!("cannot query the read replica {}", url.redacted()))?
        .first()
        .and_then(|row| row[0].as_int())
        == Some(1);
    if standby {
        tracing::info!(read_store = %url.redacted(), "read-model queries go to the read replica");
    } else {
        tracing::warn!(
            read_store = %url.redacted(),
            "--read-store is not a hot standby (pg_is_in_recovery() is false): read-model \
             queries go there all the same"
        );
    }
    Ok(db)
}

/// The read replica's pool: as many connections as the primary's read-model pool.
const REPLICA_POOL: u32 = 8;

/// On a store without any key: an admin key for the tenant `default`, printed once (stdout,
/// never the log) and written to `<data-dir>/admin.key`, readable by the owner only.
async fn first_start_key(keys: &KeyStore, data_dir: &std::path::Path) -> Result<()> {
    if keys.any().await.context("cannot read the key table")? {
        return Ok(());
    }
    let tenant = TenantId::parse("default").context("tenant id")?;
    let key = keys
        .create(&tenant, Role::Admin, false, Some("created on first start"))
        .await
        .context("cannot create the first admin key")?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("admin.key");
    write_private(&path, &format!("{}\n", key.token))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "first start: created tenant `default` with an admin key (shown once, also in {}):\n{}",
        path.display(),
        key.token
    );
    tracing::info!(key_id = %key.info.key_id, path = %path.display(), "created the first admin key");
    Ok(())
}

/// Writes a file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

async fn keys(command: KeysCommand) -> Result<()> {
    let store = match &command {
        KeysCommand::Create { store, .. }
        | KeysCommand::List { store, .. }
        | KeysCommand::Rotate { store, .. }
        | KeysCommand::Revoke { store, .. } => store,
    };
    let url = store.store_url()?;
    let db = ReadDb::open(&url)
        .await
        .with_context(|| format!("cannot open the store at {}", url.redacted()))?;
    let keys = KeyStore::open(db)
        .await
        .context("cannot open the key table")?;
    match command {
        KeysCommand::Create {
            tenant,
            role,
            personal_data,
            label,
            expiry,
            ..
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let role: Role = role.parse().map_err(anyhow::Error::msg).context("--role")?;
            let expires_at = expiry.expires_at()?;
            let key = keys
                .create_until(&tenant, role, personal_data, label.as_deref(), expires_at)
                .await?;
            eprintln!(
                "created key {} for tenant {} with role {}{}{}; it is shown only now:",
                key.info.key_id,
                key.info.tenant,
                key.info.role,
                match (key.info.personal_data, role) {
                    (true, _) => ", reading personal data",
                    (false, Role::Admin) => " (admin keys read personal data)",
                    (false, _) => ", personal fields redacted",
                },
                expiry_note(key.info.expires_at),
            );
            println!("{}", key.token);
        }
        KeysCommand::Rotate {
            key, grace, expiry, ..
        } => {
            let rotated = keys.rotate(&key, grace, expiry.expires_at()?).await?;
            let new = &rotated.new.info;
            eprintln!(
                "created key {} replacing {} (tenant {}, role {}){}; the old key is refused \
                 from {} on (running servers within their --key-cache-ms). The new key is \
                 shown only now:",
                new.key_id,
                new.rotated_from.as_deref().unwrap_or_default(),
                new.tenant,
                new.role,
                expiry_note(new.expires_at),
                time(rotated.old_valid_until),
            );
            println!("{}", rotated.new.token);
        }
        KeysCommand::List { tenant, json, .. } => {
            let tenant = tenant
                .map(|t| TenantId::parse(&t))
                .transpose()
                .context("--tenant")?;
            let now = chrono::Utc::now();
            for key in keys.list(tenant.as_ref()).await? {
                if json {
                    println!("{}", serde_json::to_string(&key)?);
                } else {
                    println!(
                        "{}  {:<20} {:<8} {:<13} created {}  {} {}  last used {}  {}{}{}",
                        key.key_id,
                        key.tenant,
                        key.role.as_str(),
                        if key.personal_data || key.role == Role::Admin {
                            "personal-data"
                        } else {
                            "redacted"
                        },
                        time(key.created_at),
                        if key.expired_at(now) {
                            "EXPIRED"
                        } else {
                            "expires"
                        },
                        key.expires_at.map_or("never".to_owned(), time),
                        key.last_used_at.map_or("never".to_owned(), time),
                        key.revoked_at
                            .map(|t| format!("REVOKED {} ", time(t)))
                            .unwrap_or_default(),
                        key.rotated_from
                            .as_ref()
                            .map(|id| format!("rotated from {id} "))
                            .unwrap_or_default(),
                        key.label.unwrap_or_default()
                    );
                }
            }
        }
        KeysCommand::Revoke { key, .. } => {
            if !keys.revoke(&key).await? {
                anyhow::bail!("no active key with id {:?}", crm_api::keys::key_id_of(&key));
            }
            eprintln!(
                "revoked; running servers refuse it, and end its live streams, within their \
                 key-cache period (--key-cache-ms, {} s by default)",
                crm_api::keys::CACHE_TTL.as_secs()
            );
        }
    }
    Ok(())
}

/// A time as `keys` prints it.
fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn expiry_note(expires_at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    expires_at.map_or_else(
        || ", never expiring".to_owned(),
        |at| format!(", expiring at {}", time(at)),
    )
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

/// Installs the SIGTERM and Ctrl-C handlers now (not when first polled) and answers a future
/// that completes once either arrives, also one that arrived before it is awaited.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let terminate = async {
                match term.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match int.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = terminate => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_a_help_text() {
        fn walk(command: &clap::Command, path: &str, blank: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() {
                blank.push(format!("{path} (the command)"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    blank.push(format!("{path}: {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, blank);
            }
        }
        let mut blank = Vec::new();
        walk(&super::Cli::command(), "", &mut blank);
        assert!(blank.is_empty(), "arguments without a help text: {blank:?}");
    }
}
