//! `GET /v1/pipeline` (totals by stage, forecast, win rate, cycle time; for one owner, as of
//! a past business time) and `GET /v1/opportunities`.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use crm_core::catalog::values::Stage;
use crm_projections::pipeline::{self, OpportunityFilter, PipelineFilter};
use serde::Deserialize;

use super::{Listing, PIPELINE, closed_value, one_of, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PipelineParams {
    /// Only this sales rep's opportunities, with the rep's quota attainment (`attainment`)
    /// in the month and quarter holding `as_of` (or now).
    owner: Option<String>,
    /// RFC 3339: the pipeline as it stood at this business time (each deal's stage then,
    /// from its stage history; deals opened later absent; won or lost only if closed by
    /// then; amounts, close dates and owners are today's).
    #[param(format = DateTime)]
    as_of: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/pipeline`: totals by stage, forecast, win rate and cycle time; of one owner's
/// deals with `owner`, as they stood at a past business time with `as_of`
/// ([`PipelineFilter`]).
#[utoipa::path(
    get,
    path = "/v1/pipeline",
    operation_id = "getPipeline",
    tag = "sales",
    summary = "Pipeline totals by stage and currency, forecast by close month and category, win rate, cycle time; of one owner with the owner's quota attainment, as of a past time (role analyst)",
    params(PipelineParams),
    responses((status = 200, description = "The pipeline.", body = crm_projections::pipeline::PipelineSummary, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
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
    let position = reach_known(
        &state,
        caller.tenant(),
        &[PIPELINE, crm_projections::quotas::NAME],
        params.min_position,
    )
    .await?;
    let filter = PipelineFilter {
        owner: params.owner,
        as_of,
    };
    let summary =
        pipeline::summary_with_attainment(&state.read_db, caller.tenant(), &filter, Utc::now())
            .await?;
    Ok(at_position(position, &summary))
}

/// The statuses opportunities are listed by.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a described value set; the query keeps the text
pub enum DealStatus {
    Open,
    Won,
    Lost,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OpportunitiesParams {
    /// `open`, `won` or `lost`.
    #[param(inline, value_type = Option<DealStatus>)]
    status: Option<String>,
    /// Opportunities in this stage.
    #[param(inline, value_type = Option<crm_core::catalog::values::Stage>)]
    stage: Option<String>,
    /// Opportunities of this owner.
    owner: Option<String>,
    /// Opportunities with this customer.
    customer_id: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// RFC 3339: measure time in the current stage up to this time instead of now.
    #[param(format = DateTime)]
    at: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/opportunities`: filtered, by id, in pages.
#[utoipa::path(
    get,
    path = "/v1/opportunities",
    operation_id = "listOpportunities",
    tag = "sales",
    summary = "Opportunities by id, with time in each stage, in pages (role analyst)",
    params(OpportunitiesParams),
    responses((status = 200, description = "A page of opportunities.", body = super::Listing<crm_projections::pipeline::OpportunityLine>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
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
        &state.read_db,
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
