//! `GET /v1/leads` and `GET /v1/leads/funnel` (analyst): the lead read model of
//! [`crm_projections::leads`], the list in pages by lead id and the funnel of a capture
//! window. Disqualification reasons (personal data) go through `disclose`.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use crm_projections::leads::{self, LeadFilter, LeadStatus};
use serde::Deserialize;

use super::{LEADS, Listing, closed_value, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeadsParams {
    /// Leads in this status.
    #[param(inline, value_type = Option<LeadStatus>)]
    status: Option<String>,
    /// Leads captured with this source label.
    source: Option<String>,
    /// Leads the capture attributed to this campaign.
    campaign_id: Option<String>,
    /// Leads the capture gave to this owner.
    owner: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/leads`: leads by id, filtered, in pages, each with its age now.
#[utoipa::path(
    get,
    path = "/v1/leads",
    operation_id = "listLeads",
    tag = "sales",
    summary = "Every lead by id: status, source, campaign, owner, age and the customer it converted to, filtered, in pages (role analyst)",
    description = "Erased leads (and converted leads whose customer was erased) are in no answer. `age_seconds` is counted from the capture (business time) to now.",
    params(LeadsParams),
    responses(
        (status = 200, description = "A page of leads.", body = super::Listing<crm_projections::leads::LeadLine>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A parameter out of its set or range, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn leads(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<LeadsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read leads")?;
    let status = closed_value(
        "status",
        &params.status,
        LeadStatus::ALL,
        LeadStatus::as_str,
    )?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(&state, caller.tenant(), &[LEADS], params.min_position).await?;
    let items = leads::list(
        &state.read_db,
        caller.tenant(),
        &LeadFilter {
            status,
            source: params.source,
            campaign_id: params.campaign_id,
            owner: params.owner,
            after: params.after,
            limit,
        },
        Utc::now(),
    )
    .await?;
    let next_after = (items.len() == limit)
        .then(|| {
            items
                .last()
                .and_then(|line| line.lead.lead_id.as_ref().map(|id| id.to_string()))
        })
        .flatten();
    let listing = disclose(&state, &caller, Listing { items, next_after }).await?;
    Ok(at_position(position, &listing))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeadFunnelParams {
    /// RFC 3339: leads captured at or after this time; from the first lead when absent.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, after `from`: leads captured before this time, and how far they came by
    /// then (business time); now when absent.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/leads/funnel`.
#[utoipa::path(
    get,
    path = "/v1/leads/funnel",
    operation_id = "getLeadFunnel",
    tag = "sales",
    summary = "The lead funnel of a capture window: captured, qualified, converted, disqualified with reasons, counts and rates overall, by source and by campaign (role analyst)",
    description = "The leads captured in [`from`, `to`) and how far each had come by `to`: qualified (or converted, which passes qualification), converted, disqualified with the count per reason; rates over the captured leads, and converted over qualified (docs/api.md, Leads).",
    params(LeadFunnelParams),
    responses(
        (status = 200, description = "The funnel overall, by source and by campaign.", body = crm_projections::leads::LeadFunnel, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A time that is not RFC 3339, or `from` after `to`, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn lead_funnel(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<LeadFunnelParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read leads")?;
    let from = params
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    if let Some(from) = from
        && from > to
    {
        return Err(Problem::bad_request(format!(
            "query string: from ({from}) is after to ({to}); the window is [from, to)"
        ))
        .with("parameter", "from"));
    }
    let position = reach_known(&state, caller.tenant(), &[LEADS], params.min_position).await?;
    let funnel = leads::funnel(&state.read_db, caller.tenant(), from, to).await?;
    let funnel = disclose(&state, &caller, funnel).await?;
    Ok(at_position(position, &funnel))
}
