//! `GET /v1/pipeline` (totals by stage, forecast, win rate, cycle time) and
//! `GET /v1/opportunities`.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use crm_core::envelope::Position;
use crm_projections::pipeline::{self, OpportunityFilter};
use serde::Deserialize;

use super::{ConsistencyParams, Listing, PIPELINE, one_of, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

/// `GET /v1/pipeline`: totals by stage, forecast, win rate and cycle time.
pub async fn pipeline(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the pipeline")?;
    let position = reach_known(&state, caller.tenant(), &[PIPELINE], params.min_position).await?;
    let summary = pipeline::summary(&state.db, caller.tenant()).await?;
    Ok(at_position(position, &summary))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpportunitiesParams {
    status: Option<String>,
    stage: Option<String>,
    owner: Option<String>,
    customer_id: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    /// Measure time in the current stage up to this time instead of now.
    at: Option<String>,
    min_position: Option<Position>,
}

/// `GET /v1/opportunities`: filtered, by id, in pages.
pub async fn opportunities(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<OpportunitiesParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read opportunities")?;
    one_of("status", &params.status, &["open", "won", "lost"])?;
    let limit = page_size(&state, params.limit)?;
    let now = params
        .at
        .as_deref()
        .map(|t| parse_time("at", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let position = reach_known(&state, caller.tenant(), &[PIPELINE], params.min_position).await?;
    let items = pipeline::list(
        &state.db,
        caller.tenant(),
        &OpportunityFilter {
            status: params.status,
            stage: params.stage,
            owner: params.owner,
            customer_id: params.customer_id,
            after: params.after,
            limit,
        },
        now,
    )
    .await?;
    let next_after = (items.len() == limit)
        .then(|| {
            items.last().and_then(|o| {
                o.opportunity
                    .opportunity_id
                    .as_ref()
                    .map(|id| id.to_string())
            })
        })
        .flatten();
    let listing = disclose(&state, &caller, Listing { items, next_after }).await?;
    Ok(at_position(position, &listing))
}
