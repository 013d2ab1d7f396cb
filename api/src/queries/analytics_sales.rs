//! `GET /v1/analytics/lifecycle` and `/v1/analytics/funnel` (analyst): the customer
//! lifecycle report and the sales funnel of `crm_projections::analytics::{lifecycle, funnel}`
//! (the decisions `crm-replay analytics lifecycle|funnel` prints), computed on every request
//! from the log as of a business time.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use crm_projections::analytics::funnel::{FunnelReport, funnel_report};
use crm_projections::analytics::lifecycle::{LifecycleReport, PeriodError, lifecycle_report};
use serde::Deserialize;

use super::analytics::{as_of, reader};
use super::parse_time;
use crate::app::SharedState;
use crate::extract::{Caller, Params};
use crate::keys::Role;
use crate::problem::Problem;

impl From<PeriodError> for Problem {
    fn from(error: PeriodError) -> Problem {
        match error {
            PeriodError::Report(error) => Problem::from(error),
            PeriodError::Parameter { parameter, message } => {
                Problem::bad_request(format!("query string: {message}"))
                    .with("parameter", parameter)
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LifecycleParams {
    /// RFC 3339: evaluate as of this time (business time); the start of the current UTC day
    /// when absent.
    #[param(format = DateTime)]
    as_of: Option<String>,
    /// RFC 3339, before `as_of`: also count the moves between stages from this time to
    /// `as_of`.
    #[param(format = DateTime)]
    since: Option<String>,
}

/// `GET /v1/analytics/lifecycle`.
#[utoipa::path(
    get,
    path = "/v1/analytics/lifecycle",
    operation_id = "getLifecycle",
    tag = "analytics",
    summary = "Customers per lifecycle stage as of any time, and the moves between stages over a period (role analyst)",
    description = "Every customer (merged ones under their survivor; erased ones count) in one stage at `as_of`: lead, new, active, at_risk, lapsed, won_back, from its purchase days in any currency (docs/analytics.md). With `since`: how many customers went from each stage at `since` (`none`: not yet in the log) to each stage at `as_of` (`merged`: merged into another since). The report is kept while nothing of the tenant was appended since its `position`.",
    params(LifecycleParams),
    responses(
        (status = 200, description = "The counts per stage, and the transitions with `since`.", body = LifecycleReport),
        (status = 400, description = "A time that is not RFC 3339, or `since` not before `as_of`.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn lifecycle(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<LifecycleParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read analytics")?;
    let as_of = as_of(&params.as_of)?;
    let since = params
        .since
        .as_deref()
        .map(|text| parse_time("since", text))
        .transpose()?;
    let tenant = principal.tenant.clone();
    let key = (
        tenant.as_str().to_owned(),
        format!(
            "lifecycle:{}",
            since.map_or(String::new(), |t| t.timestamp_micros().to_string())
        ),
        String::new(),
        as_of.timestamp_micros(),
    );
    // All of the tenant's customers, in every currency: kept only while nothing was appended.
    let report = match state.analytics.lifecycle(&key, &state, &tenant).await? {
        Some(report) => report,
        None => {
            let report = std::sync::Arc::new(
                lifecycle_report(&reader(&state), &tenant, as_of, since).await?,
            );
            state.analytics.put_lifecycle(key, report.clone());
            report
        }
    };
    Ok(Json(report.as_ref()).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FunnelParams {
    /// RFC 3339: the deals opened from this time (included).
    #[param(format = DateTime)]
    from: String,
    /// RFC 3339, after `from`: the deals opened before this time, and what became of them by
    /// then (business time).
    #[param(format = DateTime)]
    to: String,
    /// Only this sales rep's deals (the owner at `to`).
    owner: Option<String>,
}

/// `GET /v1/analytics/funnel`.
#[utoipa::path(
    get,
    path = "/v1/analytics/funnel",
    operation_id = "getFunnel",
    tag = "analytics",
    summary = "The sales funnel of the opportunities opened in a period: stage conversion, win rate, cycle length, by owner and by stage entered (role analyst)",
    description = "The opportunities opened in [`from`, `to`), each folded from the events that occurred by `to`: per stage in pipeline order how many entered and reached it and the conversion to the next, won, lost and open counts, the win rate, the median and mean days from open to win, the win rate by stage entered and the won amounts per currency; the same per owner (docs/analytics.md).",
    params(FunnelParams),
    responses(
        (status = 200, description = "The funnel, overall and per owner.", body = FunnelReport),
        (status = 400, description = "A missing or malformed time, or `from` not before `to`.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "A won total exceeds the amounts an answer carries.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn funnel(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<FunnelParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read analytics")?;
    let from = parse_time("from", &params.from)?;
    let to = parse_time("to", &params.to)?;
    let report = funnel_report(
        &reader(&state),
        &principal.tenant,
        from,
        to,
        params.owner.as_deref(),
    )
    .await?;
    Ok(Json(report).into_response())
}
