//! The service desk's routes: `GET /v1/service/backlog` and the tenant's SLA targets
//! (`GET`/`PUT /v1/service/sla-targets`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use crm_core::envelope::Position;
use crm_projections::backlog::{self, SlaTargets};
use serde::Deserialize;

use super::{BACKLOG, ConsistencyParams, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position, read_json};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacklogParams {
    /// Evaluate due times and breaches at this time instead of now.
    at: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    min_position: Option<Position>,
}

/// `GET /v1/service/backlog`: open cases by due time, breaches, response times.
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
