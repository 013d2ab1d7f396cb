//! What handlers take from a request, with every rejection turned into a [`Problem`] that
//! says what was wrong: the caller's key ([`Caller`]), query parameters ([`Params`]), a path
//! id ([`Id`]), the JSON body ([`read_json`], bounded in time, size, depth and memory; the key's
//! request rate is checked with the key), and read-your-writes ([`reach`], [`at_position`]).

use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use crm_core::envelope::Position;
use crm_core::ids::EntityId;
use crm_projections::bookkeeping;
use crm_projections::{ReadDb, RunState};
use serde::de::DeserializeOwned;

use crate::app::{AppState, SharedState};
use crate::edge::json;
use crate::edge::rate::retry_after_secs;
use crate::keys::{Principal, Role};
use crate::problem::Problem;

/// The header every read-model answer carries: the log position the read model had reached.
pub const READ_POSITION: &str = "crm-read-position";

/// The authenticated caller, and the route it called (what the access log records).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The method and route template, e.g. `GET /v1/customers/{id}` (never the concrete path).
    pub route: String,
}

impl Caller {
    /// 403 unless the caller's role is admin or one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<&Principal, Problem> {
        if self.principal.may(roles) {
            Ok(&self.principal)
        } else {
            let allowed: Vec<&str> = roles
                .iter()
                .chain(std::iter::once(&Role::Admin))
                .map(|r| r.as_str())
                .collect();
            Err(Problem::forbidden(format!(
                "a key with role {} may not {what}; this needs role {}",
                self.principal.role,
                allowed.join(" or ")
            )))
        }
    }

    pub fn tenant(&self) -> &str {
        self.principal.tenant.as_str()
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let route = || {
            format!(
                "{} {}",
                parts.method,
                parts
                    .extensions
                    .get::<MatchedPath>()
                    .map_or("?", |path| path.as_str())
            )
        };
        // A console page calling the API in-process as its session's key: the principal
        // travels in the request's extensions, which only this process can set.
        if let Some(crate::console::call::AsSession(principal)) = parts.extensions.get() {
            return Ok(Caller {
                principal: principal.clone(),
                route: route(),
            });
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "no API key: send `Authorization: Bearer <key>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must read `Bearer <key>`")
            })?;
        let route = route();
        match state.keys.authenticate(token).await {
            Ok(Ok(principal)) => match state.edge.rate.check(&principal.key_id) {
                Ok(()) => Ok(Caller { principal, route }),
                Err(wait) => Err(Problem::too_many_requests(
                    format!(
                        "this key sent more than {} requests per second (--rate-limit); \
                         retry later",
                        state.limits.rate_per_second
                    ),
                    retry_after_secs(wait),
                )),
            },
            Ok(Err(refusal)) => Err(Problem::from(refusal)),
            Err(error) => Err(Problem::internal(&error)),
        }
    }
}

/// Query parameters, strictly parsed: an unknown or ill-typed parameter is a 400 naming it.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<SharedState> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| Params(value))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Problem::bad_request(format!("query string: {text}"))
            })
    }
}

/// The `{id}` of the path, validated as an entity id.
#[derive(Debug)]
pub struct Id(pub EntityId);

/// The `{id}` of a path, as the OpenAPI document describes it.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // described, never built: [`Id`] extracts it
pub struct IdParam {
    /// The entity's id: 1 to 128 letters, digits, '.', '_', ':' or '-'.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    id: String,
}

impl FromRequestParts<SharedState> for Id {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::bad_request(format!("path: {}", e.body_text())))?;
        EntityId::parse(&raw)
            .map(Id)
            .map_err(|e| Problem::bad_request(format!("path: id {raw:?} is invalid: {e}")))
    }
}

/// Reads the whole body (at most the configured size, within the body timeout: 413, 408) and
/// parses it as JSON, after [`json::check`] refused an array (422) and bounded the depth and
/// the memory of its tree (400).
pub async fn read_json(
    state: &AppState,
    body: axum::body::Body,
) -> Result<serde_json::Value, Problem> {
    let limit = state.limits.max_body_bytes;
    let timeout = state.limits.body_timeout;
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Err(Problem::too_large(format!(
                "the request body is larger than {limit} bytes (--max-body-bytes)"
            )));
        }
        Err(_) => {
            return Err(Problem::timeout(format!(
                "the request body did not arrive within {} ms (--body-timeout-ms)",
                timeout.as_millis()
            )));
        }
    };
    if bytes.is_empty() {
        return Err(Problem::bad_request("the request body is empty; send JSON"));
    }
    json::check(&bytes, state.limits.json_max_depth).map_err(|refusal| match refusal {
        // Well-formed, perhaps, but not what any route takes: as the handlers answer it.
        json::Refusal::NotObject => Problem::unprocessable(refusal.to_string()),
        json::Refusal::TooDeep(_) | json::Refusal::TooDense(_) => {
            Problem::bad_request(refusal.to_string())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))
}

/// Waits until every named read model has reached `min_position` (when given), for at most
/// the configured time, and returns the position they have all reached: what the answer's
/// [`READ_POSITION`] header says. 503 with the current position when the wait runs out, and
/// 503 naming the failure when `tenant` is parked for one of them (a failure stays with its
/// tenant: [`crm_projections::parking`]), read from the stored state.
pub async fn reach(
    state: &AppState,
    tenant: &str,
    names: &[&str],
    min_position: Option<u64>,
) -> Result<Position, Problem> {
    // Asked once the position is reached: a tenant parked while the request waited has its
    // events up to that position recorded as parked, not applied.
    let position = reach_position(state, names, min_position).await?;
    parked(state, tenant, names).await?;
    Ok(position)
}

/// [`reach`] for the read-model queries, which read [`AppState::read_db`]. Without a read
/// replica it is [`reach`]. With one (`serve --read-store`), the checkpoints are read from
/// the replica, where they arrive with the rows they cover: the wait ends once the replica
/// has replayed the checkpoint at `min_position`, or with the same 503 as [`reach`] (the
/// replica's position) when the wait runs out.
pub async fn reach_read(
    state: &AppState,
    tenant: &str,
    names: &[&str],
    min_position: Option<u64>,
) -> Result<Position, Problem> {
    if !state.read_replica {
        return reach(state, tenant, names, min_position).await;
    }
    let deadline = tokio::time::Instant::now() + state.limits.max_wait;
    let wanted = min_position.unwrap_or(0);
    let position = loop {
        let position = stored_position(&state.read_db, names).await?;
        if position >= wanted {
            break position;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(not_reached(state, position, wanted));
        }
        // A replica's progress is not announced to this process: it is polled.
        tokio::time::sleep((deadline - now).min(REPLICA_POLL)).await;
    };
    parked(state, tenant, names).await?;
    Ok(position)
}

/// How often [`reach_read`] reads a replica's checkpoints while it waits.
const REPLICA_POLL: Duration = Duration::from_millis(20);

/// The 503 of a `min_position` not reached within the configured wait.
fn not_reached(state: &AppState, position: Position, wanted: u64) -> Problem {
    Problem::unavailable(format!(
        "the read model has reached position {position}, not min_position {wanted}, \
         within {} ms; retry later",
        state.limits.max_wait.as_millis()
    ))
    .with("position", position)
    .with_header(READ_POSITION, position.to_string())
    .with_header("retry-after", "1")
}

async fn reach_position(
    state: &AppState,
    names: &[&str],
    min_position: Option<u64>,
) -> Result<Position, Problem> {
    let current = local_position(state, names);
    let Some(wanted) = min_position else {
        return Ok(current);
    };
    if current >= wanted {
        return Ok(current);
    }
    let deadline = tokio::time::Instant::now() + state.limits.max_wait;
    let mut statuses = state.projections.clone();
    loop {
        // The statuses of projections another process holds move only with that process's
        // checkpoints: read them from the database.
        let position = match standby(state, names) {
            true => stored_position(&state.db, names).await?,
            false => local_position(state, names),
        };
        if position >= wanted {
            return Ok(position);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(not_reached(state, position, wanted));
        }
        let step = (deadline - now).min(Duration::from_millis(50));
        let _ = tokio::time::timeout(step, statuses.changed()).await;
    }
}

/// Read-your-writes for answers from the log itself: waits until this process has seen the
/// log's head reach `min_position` (appends by other processes are noticed within about a
/// second), else 503. Returns the head.
pub async fn reach_head(state: &AppState, min_position: Option<u64>) -> Result<Position, Problem> {
    let mut head = state.store.head_changes();
    let wanted = min_position.unwrap_or(0);
    let reached = tokio::time::timeout(state.limits.max_wait, head.wait_for(|h| *h >= wanted))
        .await
        .is_ok_and(|r| r.is_ok());
    let position = *head.borrow();
    match reached {
        true => Ok(position),
        _ => Err(Problem::unavailable(format!(
            "the log's head is at position {position}, not min_position {wanted}, within {} ms; \
             retry later",
            state.limits.max_wait.as_millis()
        ))
        .with("position", position)
        .with_header(READ_POSITION, position.to_string())
        .with_header("retry-after", "1")),
    }
}

/// 503 naming the failure when `tenant` is parked for one of `names`.
async fn parked(state: &AppState, tenant: &str, names: &[&str]) -> Result<(), Problem> {
    // Parks are committed by the runner holding the read model, which moves its parking
    // epoch after each (published with the checkpoint, so read here after the position):
    // the remembered set is good while the epoch has not moved. A standby does not see the
    // holder's parks, so it asks the stored state every time.
    let seen = (!standby(state, names)).then(|| parks_epoch(state));
    let failure = state
        .parked
        .failure(&state.db, tenant, names, seen)
        .await
        .map_err(|e| Problem::internal(&e))?;
    match failure {
        None => Ok(()),
        Some(failure) => Err(Problem::unavailable(format!(
            "the read model {} is parked for this tenant: the event at position {} could not \
             be applied ({}); this tenant's later events wait and are applied in log order \
             once it is fixed (a restart of the projection workers replays them)",
            failure.projection, failure.position, failure.error
        ))
        .with("projection", failure.projection)
        .with("failed_position", failure.position)
        .with("parked_events", failure.parked_events)
        .with_header("retry-after", "60")),
    }
}

fn local_position(state: &AppState, names: &[&str]) -> Position {
    state
        .projections
        .borrow()
        .iter()
        .filter(|s| names.contains(&s.name))
        .map(|s| s.position)
        .min()
        .unwrap_or(0)
}

/// The parking epoch of this process's runner
/// ([`crm_projections::ProjectionStatus::parks_epoch`]).
fn parks_epoch(state: &AppState) -> u64 {
    state
        .projections
        .borrow()
        .iter()
        .map(|s| s.parks_epoch)
        .max()
        .unwrap_or(0)
}

fn standby(state: &AppState, names: &[&str]) -> bool {
    state
        .projections
        .borrow()
        .iter()
        .any(|s| names.contains(&s.name) && s.state == RunState::Standby)
}

/// The lowest of the named read models' checkpoints as stored in `db`.
async fn stored_position(db: &ReadDb, names: &[&str]) -> Result<Position, Problem> {
    let stored = bookkeeping::stored_positions(db)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(names
        .iter()
        .map(|name| {
            stored
                .iter()
                .find(|s| s.projection == *name)
                .map_or(0, |s| s.position)
        })
        .min()
        .unwrap_or(0))
}

/// A JSON answer carrying the read position.
pub fn at_position<T: serde::Serialize>(position: Position, body: &T) -> Response {
    let mut response = axum::Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&position.to_string()) {
        response.headers_mut().insert(READ_POSITION, value);
    }
    response
}
