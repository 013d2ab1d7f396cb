//! `GET /v1/projections`: each read model's position, lag and state.

use axum::extract::State;
use axum::response::Response;
use crm_core::envelope::Position;
use crm_projections::{all_projections, bookkeeping};
use serde::Serialize;

use super::{ConsistencyParams, within_head};
use crate::app::SharedState;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Serialize, utoipa::ToSchema)]
struct ProjectionLine {
    name: String,
    version: i64,
    state: String,
    generation: i64,
    position: Position,
    head: Position,
    lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuild_position: Option<Position>,
    /// The stored projection-wide error (whichever process runs it), else this process's.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// How many tenants are parked for it.
    parked_tenants: usize,
    /// The caller's tenant's failure, when it is parked for this read model.
    #[serde(skip_serializing_if = "Option::is_none")]
    parked: Option<ParkedLine>,
}

/// What `GET /v1/projections` answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Projections {
    projections: Vec<ProjectionLine>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ParkedLine {
    /// The event that could not be applied.
    position: Position,
    error: String,
    /// The tenant's events waiting (the failed one included), applied in log order once it
    /// is fixed.
    parked_events: u64,
}

/// `GET /v1/projections`: each read model's position, lag and state, from the stored state
/// (so every process answers alike). Positions are global (the log is shared by every
/// tenant); of the parked tenants ([`crm_projections::parking`]) only the count is shown,
/// plus the caller's own tenant's failure.
#[utoipa::path(
    get,
    path = "/v1/projections",
    operation_id = "listProjections",
    tag = "operations",
    summary = "Each read model's position, lag and state (roles analyst, auditor)",
    description = "From the stored state: the rebuild in progress, the projection-wide error, how many tenants are parked, and the caller's tenant's failure if it is parked.",
    params(ConsistencyParams),
    responses((status = 200, description = "The read models.", body = Projections, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn projections(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst, Role::Auditor], "read projection state")?;
    within_head(&state, params.min_position).await?;
    crate::extract::reach_head(&state, params.min_position).await?;
    let head = state.store.head_position().await?;
    let stored = bookkeeping::stored_positions(&state.db).await?;
    let errors = crm_projections::parking::stored_errors(&state.db).await?;
    let failures = crm_projections::parking::stored_failures(&state.db).await?;
    let local = state.projections.borrow().clone();
    let lines: Vec<ProjectionLine> = all_projections()
        .iter()
        .map(|projection| {
            let name = projection.name();
            let status = local.iter().find(|s| s.name == name);
            let saved = stored.iter().find(|s| s.projection == name);
            let position = status
                .map(|s| s.position)
                .max(saved.map(|s| s.position))
                .unwrap_or(0);
            ProjectionLine {
                name: name.to_owned(),
                version: projection.version(),
                state: status.map_or("unknown".to_owned(), |s| {
                    serde_json::to_value(s.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
                generation: saved.map_or(0, |s| s.generation),
                position,
                head,
                lag: head.saturating_sub(position),
                rebuild_position: status
                    .and_then(|s| s.rebuild.map(|r| r.position))
                    .or(saved.and_then(|s| s.rebuild_position)),
                error: errors
                    .iter()
                    .find(|(projection, _)| projection == name)
                    .map(|(_, error)| error.clone())
                    .or_else(|| status.and_then(|s| s.error.clone())),
                parked_tenants: failures.iter().filter(|f| f.projection == name).count(),
                parked: failures
                    .iter()
                    .find(|f| f.projection == name && f.tenant == caller.tenant())
                    .map(|f| ParkedLine {
                        position: f.position,
                        error: f.error.clone(),
                        parked_events: f.parked_events,
                    }),
            }
        })
        .collect();
    Ok(at_position(head, &Projections { projections: lines }))
}
