//! `GET /v1/campaigns` and `GET /v1/campaigns/{id}` (analyst): each campaign's members,
//! responses, leads generated, opportunities influenced, revenue won under three
//! attribution models, cost and ROI per currency ([`crm_projections::campaigns::report`]).
//! Nothing personal: ids, labels, counts and amounts.

use axum::extract::State;
use axum::response::Response;
use crm_projections::campaigns;
use serde::Deserialize;

use super::{CAMPAIGNS, LEADS, Listing, PIPELINE, page_size, reach_known};
use crate::app::SharedState;
use crate::extract::{Caller, Id, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

/// The read models a campaign's figures come from.
const READ_MODELS: &[&str] = &[CAMPAIGNS, LEADS, PIPELINE];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignsParams {
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read models have applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/campaigns`.
#[utoipa::path(
    get,
    path = "/v1/campaigns",
    operation_id = "listCampaigns",
    tag = "sales",
    summary = "Every campaign by id with its results: members, response rate, leads generated, opportunities influenced, revenue won by attribution model, cost and ROI per currency (role analyst)",
    description = "Definitions in docs/api.md (Campaigns): touches are a customer's memberships and positive responses before the deal was won; first-touch, last-touch and even-split attribution, stated in each answer's `attribution`; money per currency, never summed across currencies.",
    params(CampaignsParams),
    responses(
        (status = 200, description = "A page of campaign reports.", body = super::Listing<crm_projections::campaigns::CampaignReport>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A parameter out of its range, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn campaigns(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<CampaignsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read campaigns")?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(&state, caller.tenant(), READ_MODELS, params.min_position).await?;
    let items = campaigns::reports(
        &state.read_db,
        caller.tenant(),
        params.after.as_deref(),
        limit,
    )
    .await?;
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|c| c.campaign_id.clone()))
        .flatten();
    Ok(at_position(position, &Listing { items, next_after }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignParams {
    /// Read-your-writes: wait until the read models have applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/campaigns/{id}`.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}",
    operation_id = "getCampaign",
    tag = "sales",
    summary = "One campaign's results: members, response rate, leads generated, opportunities influenced, revenue won by attribution model, cost and ROI per currency (role analyst)",
    description = "Definitions in docs/api.md (Campaigns).",
    params(crate::extract::IdParam, CampaignParams),
    responses(
        (status = 200, description = "The campaign's report.", body = crm_projections::campaigns::CampaignReport, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 404, description = "No event of this campaign in the tenant's log.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn campaign(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<CampaignParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read campaigns")?;
    let position = reach_known(&state, caller.tenant(), READ_MODELS, params.min_position).await?;
    let report = campaigns::report(&state.read_db, caller.tenant(), id.as_str())
        .await?
        .ok_or_else(|| Problem::not_found(format!("campaign {id} is unknown")))?;
    Ok(at_position(position, &report))
}
