//! The HTTP application: the state handlers share, the router, and [`start`], which opens a
//! store and its read models and runs the projection workers, for `crm-api serve` and the
//! end-to-end tests alike.
//!
//! Routes and who may call them (admin may call everything):
//!
//! | route | roles |
//! |---|---|
//! | `GET /healthz`, `GET /metrics`, `GET /openapi.json` | no key |
//! | `POST /v1/events` | ingest |
//! | `GET /v1/events`, `GET /v1/events/live` | analyst |
//! | `GET /v1/customers`, `/v1/customers/{id}`, `/v1/pipeline`, `/v1/opportunities`, `/v1/cases`, `/v1/service/backlog`, `/v1/service/sla-targets` | analyst |
//! | `GET /v1/opportunities/{id}`, `/v1/tasks`, `/v1/accounts/{id}/contacts` | analyst |
//! | `GET /v1/analytics/rfm`, `/clv`, `/profitability`, `/cohorts`, `/lifecycle`, `/funnel` | analyst |
//! | `GET /v1/leads`, `/v1/leads/funnel` | analyst |
//! | `GET /v1/campaigns`, `/v1/campaigns/{id}` | analyst |
//! | `GET /v1/analytics/products` | analyst |
//! | `GET /v1/service/complaints`, `/v1/service/satisfaction` | analyst |
//! | `GET /v1/settings/complaints` | analyst, auditor |
//! | `PUT /v1/settings/complaints` | admin |
//! | `GET /v1/consent/violations`, `GET /v1/settings/consent` | analyst, auditor |
//! | `PUT /v1/settings/consent` | admin |
//! | `GET /v1/customers/{id}/timeline` | analyst, auditor |
//! | `GET /v1/customers/{id}/personal-data` | analyst, auditor, with `--personal-data` |
//! | `GET /v1/verify`, `GET /v1/audit/access` | auditor |
//! | `GET /v1/audit/head`, `/v1/audit/public-key`, `/v1/audit/inclusion`, `/v1/audit/consistency` | auditor |
//! | `GET /v1/projections` | analyst, auditor |
//! | `GET /v1/service/calendar`, `GET /v1/analytics/service` | analyst |
//! | `PUT /v1/service/sla-targets`, `PUT`/`DELETE /v1/service/calendar` | admin |
//! | `POST /v1/customers/{id}/erase`, `POST /v1/leads/{id}/erase` | admin |
//! | `GET /v1/privacy/retention`, `PUT /v1/privacy/retention` | admin |
//! | `POST`/`GET /v1/webhooks`, `GET`/`PATCH`/`DELETE /v1/webhooks/{id}`, `GET /v1/webhooks/{id}/deliveries`, `POST /v1/webhooks/{id}/replay` | admin |
//!
//! Personal fields: a key reads them in plain text only if it is an admin key or was created
//! with `--personal-data`; every other key reads `"[redacted]"` in their place, in every
//! answer and the live stream, and may not search customers ([`crate::disclosure`]). Every
//! answer that carried them in plain text is recorded in the access log ([`crate::access`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use crm_core::audit::{HeadSigner, SigningKeySource};
use crm_core::privacy::{KeySource, PrivateStore, open_private};
use crm_core::store::{SharedStore, StoreUrl};
use crm_projections::audit::TreeWorker;
use crm_projections::runner::{self, ProjectionStatus, RunState, RunnerHandle, RunnerOptions};
use crm_projections::{ReadDb, all_projections};
use serde::Serialize;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::edge::Guards;
use crate::ingest::StreamCache;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::{access, ingest, log, metrics, openapi, privacy, proofs, queries};

/// Limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one `POST /v1/events` (413 beyond).
    pub max_batch_events: usize,
    /// Longest a query waits for `min_position` before answering 503.
    pub max_wait: Duration,
    /// Largest page any listing returns.
    pub max_page: usize,
    /// Longest a request body may take to arrive (408 beyond).
    pub body_timeout: Duration,
    /// Deepest nesting of a JSON body (400 beyond).
    pub json_max_depth: usize,
    /// Requests per second per key on average (429 beyond); 0: no limit.
    pub rate_per_second: u32,
    /// Requests a key may send at once above the average rate.
    pub rate_burst: u32,
    /// Live event streams one key may hold open (429 beyond).
    pub live_streams_per_key: usize,
    /// How long what was read about a key is trusted: a revocation takes effect, and ends
    /// the key's live streams, within this time.
    pub key_cache: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_events: 5_000,
            max_wait: Duration::from_secs(10),
            max_page: 1_000,
            body_timeout: Duration::from_secs(30),
            json_max_depth: 64,
            // A backstop against a runaway client, far above what one key's honest load
            // needs (the Q1 benchmark sends about 18,000 requests per second with one key).
            rate_per_second: 50_000,
            rate_burst: 50_000,
            live_streams_per_key: 8,
            key_cache: crate::keys::CACHE_TTL,
        }
    }
}

/// What handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The log: personal fields sealed on append, opened on read ([`PrivateStore`]).
    pub store: SharedStore,
    /// The same store, with its vault (erasure, subject access).
    pub private: PrivateStore,
    /// The read-model database on the primary: the projection workers, keys, webhooks,
    /// workflows, access logs and everything else that writes.
    pub db: ReadDb,
    /// Where the read-model queries read: a PostgreSQL hot standby (`serve --read-store`),
    /// else the same pool as `db`.
    pub read_db: ReadDb,
    /// Whether `read_db` is a replica: read-your-writes then reads its checkpoints
    /// ([`crate::extract::reach_read`]).
    pub read_replica: bool,
    pub keys: KeyStore,
    /// The projection workers' statuses, as this process's runner publishes them.
    pub projections: watch::Receiver<Vec<ProjectionStatus>>,
    pub limits: Limits,
    pub metrics: Metrics,
    /// Folded stream states kept between appends, so ingest checks rules without re-reading;
    /// shared with the workflow worker, whose appends take their turns with the API's.
    pub streams: Arc<StreamCache>,
    /// Set when the server is shutting down: endless answers (live event streams) end.
    pub closing: watch::Sender<bool>,
    /// Per-key request rates and live-stream slots.
    pub edge: Guards,
    /// Which tenants may be parked, refreshed from the stored state at most every 250 ms.
    pub parked: crm_projections::parking::ParkedTenants,
    /// The key that signs tree heads; `None` on PostgreSQL when none was given (the head
    /// routes answer 503 saying so).
    pub signer: Option<Arc<HeadSigner>>,
    /// Analytics reports kept while still fresh (`queries::analytics`, `fit::still_fresh`).
    pub analytics: crate::queries::analytics::Cache,
    /// The day's BG/NBD + Gamma-Gamma fits and RFM populations per tenant and currency, for
    /// the 360 view's analytics and the churn filter (`crm_projections::analytics::fit`).
    pub fits: Arc<crm_projections::analytics::fit::Fits>,
    /// What the workflow worker and the dry run work with (`crm_automation::workflows`).
    pub workflows: crm_automation::workflows::Context,
    /// Nudges this process's webhook worker when a subscription changes (`crate::webhooks`).
    pub webhooks: crm_automation::webhooks::Hub,
}

pub type SharedState = Arc<AppState>;

/// A running application: its state (for the router) and its projection workers.
#[derive(Debug)]
pub struct Running {
    pub state: SharedState,
    pub workers: RunnerHandle,
    /// The master-key file created by this start (a new store), to be announced.
    pub created_key_file: Option<std::path::PathBuf>,
    /// The audit tree worker (`crm_projections::audit`): dropping it stops it.
    pub tree: TreeWorker,
    /// The head-signing key file created by this start, to be announced.
    pub created_signing_key: Option<std::path::PathBuf>,
    /// The workflow rule worker: dropping it stops it.
    pub workflows: crm_automation::workflows::Workflows,
}

/// [`start_with`] the master key the environment names (`CRM_MASTER_KEY`,
/// `CRM_MASTER_KEY_FILE`, else `master.key` beside a SQLite store).
pub async fn start(url: &StoreUrl, limits: Limits) -> anyhow::Result<Running> {
    start_with(url, limits, &KeySource::from_env()).await
}

/// Opens (creating if needed) the store at `url` with its master key, its read-model tables
/// and the API key table, and starts the projection workers. Refuses, writing nothing, a
/// store without its master key, with a wrong one, or written in plain text.
pub async fn start_with(
    url: &StoreUrl,
    limits: Limits,
    source: &KeySource,
) -> anyhow::Result<Running> {
    start_with_signing(url, limits, source, &SigningKeySource::from_env()).await
}

/// [`start_with`] a head-signing key from `signing` (for SQLite, `signing.key` beside the
/// store is created when missing; PostgreSQL without a key serves no signed heads).
pub async fn start_with_signing(
    url: &StoreUrl,
    limits: Limits,
    source: &KeySource,
    signing: &SigningKeySource,
) -> anyhow::Result<Running> {
    start_with_replica(url, None, limits, source, signing).await
}

/// [`start_with_signing`], the read-model queries sent to `replica` when given (a hot
/// standby of the PostgreSQL store, opened with [`ReadDb::open_replica`]); everything that
/// writes stays on the store's database.
pub async fn start_with_replica(
    url: &StoreUrl,
    replica: Option<ReadDb>,
    limits: Limits,
    source: &KeySource,
    signing: &SigningKeySource,
) -> anyhow::Result<Running> {
    use anyhow::Context;
    if replica.is_some() && !matches!(url, StoreUrl::Postgres { .. }) {
        anyhow::bail!("a read replica needs a PostgreSQL store; a SQLite store has none");
    }
    let (signer, created_signing_key) = match signing
        .resolve(url, true)
        .context("cannot load the head-signing key")?
    {
        Some((signer, created)) => (Some(Arc::new(signer)), created),
        None => (None, None),
    };
    let opened = open_private(url, source, true)
        .await
        .with_context(|| format!("cannot open the store at {}", url.redacted()))?;
    let private = opened.store;
    let store: SharedStore = Arc::new(private.clone());
    let db = ReadDb::open(url)
        .await
        .context("cannot open the read-model tables")?;
    let keys = KeyStore::open(db.clone())
        .await
        .context("cannot open the key table")?
        .with_cache_ttl(limits.key_cache);
    // The runner opens only the personal fields the read models fold.
    let projection_store: SharedStore = Arc::new(
        private
            .clone()
            .opening_only(crm_projections::PERSONAL_FIELDS_READ),
    );
    let workers = runner::start(
        projection_store,
        db.clone(),
        all_projections(),
        RunnerOptions::default(),
    );
    wait_for_read_models(&db, "the read-model tables were not created within 60 s").await?;
    if let Some(replica) = &replica {
        // Created on the primary, they reach the replica with its replay.
        wait_for_read_models(
            replica,
            "the read replica shows no read-model tables after 60 s: is it a replica of the \
             store's database, and does it replay?",
        )
        .await?;
    }
    crm_projections::audit::create(&db)
        .await
        .context("cannot create the audit tree's tables")?;
    // The tree commits to the bytes as stored: it reads the raw log, never the opened one.
    let tree = crm_projections::audit::spawn(private.inner().clone(), db.clone());
    crm_automation::webhooks::tables::create(&db)
        .await
        .context("cannot create the webhook tables")?;
    let edge = Guards::new(&limits);
    let streams = Arc::new(StreamCache::default());
    let hub = crm_automation::webhooks::Hub::default();
    // The worker reads no personal field (rules read none) and appends through the sealing
    // store, through the ingest decision.
    let workflows = crm_automation::workflows::Context {
        reader: Arc::new(private.clone().opening_only(&[])),
        writer: Arc::clone(&store),
        cache: Arc::clone(&streams),
        db: db.clone(),
        webhooks: hub.clone(),
    };
    crm_automation::workflows::tables::create(&db)
        .await
        .context("cannot create the workflow tables")?;
    crate::console::session::create_table(&db)
        .await
        .context("cannot create the console's session table")?;
    let state = Arc::new(AppState {
        edge,
        store,
        private,
        read_replica: replica.is_some(),
        read_db: replica.unwrap_or_else(|| db.clone()),
        db,
        keys,
        projections: workers.subscribe(),
        limits,
        metrics: Metrics::default(),
        streams,
        closing: watch::channel(false).0,
        parked: crm_projections::parking::ParkedTenants::default(),
        signer,
        analytics: Default::default(),
        fits: Default::default(),
        workflows: workflows.clone(),
        webhooks: hub,
    });
    // SLA targets set before settings were facts become `SlaTargetsSet` events.
    crm_projections::backlog::settings::migrate_legacy(
        state.store.as_ref(),
        &state.streams,
        &state.db,
    )
    .await
    .context("cannot move the legacy SLA targets into the log")?;
    let workflows = crm_automation::workflows::spawn(workflows, Default::default());
    Ok(Running {
        workflows,
        state,
        workers,
        created_key_file: opened.created_key_file,
        tree,
        created_signing_key,
    })
}

/// Waits until every read model has live tables (the runner, or another process holding a
/// projection, creates them on its first start), so no query meets a missing table.
async fn wait_for_read_models(db: &ReadDb, timed_out: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let wanted = all_projections().len();
    loop {
        let ready = crm_projections::bookkeeping::stored_positions(db)
            .await
            .map(|stored| stored.len() >= wanted)
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{timed_out}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's routes: the described API ([`api_routes`]), the documentation page, and
/// the problem answers for everything else.
pub fn router(state: SharedState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    // The console's pages call the API's routes in-process (`console::call`).
    let (inner, _) = api_routes().split_for_parts();
    api.merge(crate::docs_page::routes())
        .merge(crate::console::routes(inner.with_state(Arc::clone(&state))))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::track,
        ))
        .with_state(state)
}

/// Every API route, each from a handler carrying its `#[utoipa::path]`: the router and the
/// OpenAPI document ([`crate::openapi`]) come from this one list.
pub fn api_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(metrics::render))
        .routes(routes!(openapi::document))
        .routes(routes!(ingest::append, log::events))
        .routes(routes!(log::live))
        .routes(routes!(log::verify_log))
        .routes(routes!(queries::customers))
        .routes(routes!(queries::customer))
        .routes(routes!(queries::timeline))
        .routes(routes!(privacy::personal_data))
        .routes(routes!(privacy::erase_customer))
        .routes(routes!(privacy::erase_lead))
        .routes(routes!(queries::pipeline::pipeline))
        .routes(routes!(queries::pipeline::opportunities))
        .routes(routes!(queries::sales::opportunity))
        .routes(routes!(queries::sales::tasks))
        .routes(routes!(queries::sales::account_contacts))
        .routes(routes!(queries::cases::cases))
        .routes(routes!(queries::leads::leads))
        .routes(routes!(queries::leads::lead_funnel))
        .routes(routes!(queries::campaigns::campaigns))
        .routes(routes!(queries::campaigns::campaign))
        .routes(routes!(queries::analytics::rfm))
        .routes(routes!(queries::analytics::clv))
        .routes(routes!(queries::analytics::profitability))
        .routes(routes!(queries::analytics::cohorts))
        .routes(routes!(queries::analytics_sales::lifecycle))
        .routes(routes!(queries::analytics_sales::funnel))
        .routes(routes!(queries::products::products))
        .routes(routes!(queries::consent::violations))
        .routes(routes!(
            queries::consent::regime,
            queries::consent::set_regime
        ))
        .routes(routes!(queries::service::backlog))
        .routes(routes!(queries::service_quality::complaints))
        .routes(routes!(queries::service_quality::satisfaction))
        .routes(routes!(
            queries::service_quality::complaint_lists,
            queries::service_quality::set_complaint_lists
        ))
        .routes(routes!(
            queries::service::sla_targets,
            queries::service::set_sla_targets
        ))
        .routes(routes!(queries::service::service_analytics))
        .routes(routes!(
            queries::service::calendar,
            queries::service::set_calendar,
            queries::service::clear_calendar
        ))
        .routes(routes!(queries::projections::projections))
        .routes(routes!(access::access_log))
        .routes(routes!(proofs::head))
        .routes(routes!(proofs::public_key))
        .routes(routes!(proofs::inclusion))
        .routes(routes!(proofs::consistency))
        .routes(routes!(
            crate::retention::get_rule,
            crate::retention::put_rule
        ))
        .routes(routes!(crate::workflows::rules))
        .routes(routes!(
            crate::workflows::rule,
            crate::workflows::set_rule,
            crate::workflows::remove_rule
        ))
        .routes(routes!(crate::workflows::runs))
        .routes(routes!(crate::workflows::test_rule))
        .routes(routes!(crate::webhooks::create, crate::webhooks::list))
        .routes(routes!(
            crate::webhooks::get,
            crate::webhooks::update,
            crate::webhooks::delete
        ))
        .routes(routes!(crate::webhooks::deliveries))
        .routes(routes!(crate::webhooks::replay))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`; `degraded`: some tenants are parked for a projection (the others are served);
    /// `failing`: a projection fails for every tenant.
    status: &'static str,
    head_position: u64,
    projections: Vec<ProjectionHealth>,
    /// The audit tree worker (docs/audit.md): signed heads cover the log up to `position`.
    audit_tree: TreeHealth,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TreeHealth {
    /// The stored checkpoint of the tenants' Merkle trees.
    position: u64,
    lag: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ProjectionHealth {
    name: &'static str,
    /// What this process does with it (`standby` when another process holds it).
    state: RunState,
    /// The stored checkpoint of its live tables.
    position: u64,
    lag: u64,
    /// A stored projection-wide error (whichever process runs it).
    failing: bool,
    /// How many tenants are parked for it (their queries answer 503; the others are served).
    parked_tenants: usize,
}

/// From the stored state, so every process answers alike, whichever holds the projections
/// (a standby reports what the process running them stored). 200 `ok`; 200 `degraded` while
/// tenants are parked (a failure stays with its tenant: taking the instance out would stop
/// every other tenant too); 503 `failing` while a projection fails for everyone, or when the
/// store or the read-model database does not answer. Needs no key: it counts parked tenants
/// but names none and shows no error text (`/v1/projections` does, to the tenant's keys).
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getHealth",
    tag = "operations",
    responses(
        (status = 200, description = "`ok`, or `degraded` while tenants are parked for a read model (the others are served).", body = Health),
        (status = 503, description = "`failing`: a projection fails for every tenant (a Health body), or the store or the read-model database does not answer (a problem).",
            content((Health = "application/json"), (crate::openapi::ProblemDocument = "application/problem+json"))),
    )
)]
async fn healthz(State(state): State<SharedState>) -> Response {
    let head = match state.store.head_position().await {
        Ok(head) => head,
        Err(error) => {
            tracing::warn!(%error, "health check: the store does not answer");
            return Problem::unavailable("the event store does not answer").into_response();
        }
    };
    let stored = async {
        let positions = crm_projections::bookkeeping::stored_positions(&state.db).await?;
        let errors = crm_projections::parking::stored_errors(&state.db).await?;
        let failures = crm_projections::parking::stored_failures(&state.db).await?;
        let tree = crm_projections::audit::covered(&state.db).await?;
        Ok::<_, crm_projections::ProjectionError>((positions, errors, failures, tree))
    };
    let (positions, errors, failures, tree) = match stored.await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(%error, "health check: the read-model database does not answer");
            return Problem::unavailable("the read-model database does not answer").into_response();
        }
    };
    let local = state.projections.borrow().clone();
    let projections: Vec<ProjectionHealth> = all_projections()
        .iter()
        .map(|p| {
            let name = p.name();
            let position = positions
                .iter()
                .find(|s| s.projection == name)
                .map_or(0, |s| s.position);
            ProjectionHealth {
                name,
                state: local
                    .iter()
                    .find(|s| s.name == name)
                    .map_or(RunState::Starting, |s| s.state),
                position,
                lag: head.saturating_sub(position),
                failing: errors.iter().any(|(projection, _)| projection == name),
                parked_tenants: failures.iter().filter(|f| f.projection == name).count(),
            }
        })
        .collect();
    let failing = projections.iter().any(|p| p.failing);
    let parked = projections.iter().any(|p| p.parked_tenants > 0);
    let body = Health {
        status: match (failing, parked) {
            (true, _) => "failing",
            (false, true) => "degraded",
            (false, false) => "ok",
        },
        head_position: head,
        projections,
        audit_tree: TreeHealth {
            position: tree,
            lag: head.saturating_sub(tree),
        },
    };
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not answer {method}", uri.path()),
    )
}
