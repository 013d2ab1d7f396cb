//! The service desk's routes: `GET /v1/service/backlog` and the tenant's SLA targets
//! (`GET`/`PUT /v1/service/sla-targets`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use crm_projections::backlog::{self, SlaTargets};
use serde::Deserialize;

use super::{BACKLOG, ConsistencyParams, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position, read_json};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BacklogParams {
    /// RFC 3339: evaluate due times and breaches at this time instead of now.
    #[param(format = DateTime)]
    at: Option<String>,
    /// Open cases to skip.
    offset: Option<usize>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/service/backlog`: open cases by due time, breaches, response times.
#[utoipa::path(
    get,
    path = "/v1/service/backlog",
    operation_id = "getBacklog",
    tag = "service",
    summary = "Open cases by next due time, SLA breaches at `at`, response-time figures, open cases per agent (role analyst)",
    params(BacklogParams),
    responses((status = 200, description = "The backlog.", body = crm_projections::backlog::Backlog, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn backlog(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<BacklogParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the service backlog")?;
    let at = params
        .at
        .as_deref()
        .map(|t| parse_time("at", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(&state, caller.tenant(), &[BACKLOG], params.min_position).await?;
    let backlog = backlog::backlog(
        &state.db,
        caller.tenant(),
        at,
        params.offset.unwrap_or(0),
        limit,
    )
    .await?;
    let backlog = disclose(&state, &caller, backlog).await?;
    Ok(at_position(position, &backlog))
}

/// `GET /v1/service/sla-targets`: the tenant's targets (the defaults until set).
#[utoipa::path(
    get,
    path = "/v1/service/sla-targets",
    operation_id = "getSlaTargets",
    tag = "service",
    summary = "The tenant's SLA targets: minutes to first response and to resolution, per priority (role analyst)",
    params(ConsistencyParams),
    responses((status = 200, description = "The targets (the defaults until set).", body = SlaTargets))
)]
pub async fn sla_targets(
    State(state): State<SharedState>,
    caller: Caller,
    Params(_): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read SLA targets")?;
    let targets = backlog::sla_targets(&state.db, caller.tenant()).await?;
    Ok(axum::Json(targets).into_response())
}

/// `PUT /v1/service/sla-targets`: replaces the tenant's targets; due times follow at once.
#[utoipa::path(
    put,
    path = "/v1/service/sla-targets",
    operation_id = "setSlaTargets",
    tag = "service",
    summary = "Replace the tenant's SLA targets; due times follow at once (role admin)",
    request_body(content = SlaTargets, description = "Every priority's targets, in minutes (1 or more; the resolution not before the first response)."),
    responses((status = 200, description = "The targets now in force.", body = SlaTargets))
)]
pub async fn set_sla_targets(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    caller.require(&[], "change SLA targets")?;
    let value = read_json(&state, body).await?;
    let targets: SlaTargets = serde_path_to_error::deserialize(value).map_err(|e| {
        // serde's message names the value, not where it is: the path does.
        Problem::unprocessable(format!("SLA targets: {}: {}", e.path(), e.inner()))
            .with("field", e.path().to_string())
    })?;
    backlog::set_sla_targets(&state.db, caller.tenant(), &targets)
        .await?
        .map_err(|problem| Problem::unprocessable(format!("SLA targets: {problem}")))?;
    Ok(axum::Json(targets).into_response())
}
