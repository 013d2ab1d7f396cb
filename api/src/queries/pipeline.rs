//! `GET /v1/pipeline` (totals by stage, forecast, win rate, cycle time; for one owner, as of
//! a past business time) and `GET /v1/opportunities`.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use crm_core::catalog::values::Stage;
use crm_core::envelope::Position;
use crm_projections::pipeline::{self, OpportunityFilter, PipelineFilter};
use serde::Deserialize;

use super::{Listing, PIPELINE, closed_value, one_of, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineParams {
    /// Only this sales rep's opportunities.
    owner: Option<String>,
    /// The pipeline as it stood at this business time.
    as_of: Option<String>,
    min_position: Option<Position>,
}

/// `GET /v1/pipeline`: totals by stage, forecast, win rate and cycle time; of one owner's
/// deals with `owner`, as they stood at a past business time with `as_of`
/// ([`PipelineFilter`]).
pub async fn pipeline(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<PipelineParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the pipeline")?;
    let as_of = params
        .as_of
        .as_deref()
        .map(|t| parse_time("as_of", t))
        .transpose()?;
    let position = reach_known(&state, caller.tenant(), &[PIPELINE], params.min_position).await?;
    let filter = PipelineFilter {
        owner: params.owner,
        as_of,
    };
    let summary = pipeline::summary_of(&state.db, caller.tenant(), &filter).await?;
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
    closed_value("stage", &params.stage, Stage::ALL, Stage::as_str)?;
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
