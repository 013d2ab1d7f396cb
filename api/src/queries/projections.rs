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

#[derive(Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /v1/projections`: each read model's position, lag and state. Positions are global
/// (the log is shared by every tenant); nothing here is tenant data.
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
                error: status.and_then(|s| s.error.clone()),
            }
        })
        .collect();
    Ok(at_position(
        head,
        &serde_json::json!({ "projections": lines }),
    ))
}
