//! Service quality over HTTP (issue 19, items 4 and 5): `GET /v1/service/complaints` (the
//! complaints opened in a window: by category, by root cause, resolution times, repeat
//! complainers, the monthly trend) and `GET /v1/service/satisfaction` (CSAT by agent,
//! priority and period; NPS by period), both for analysts, from the `service_quality` read
//! model. Neither answer carries a personal field (comments appear only on the 360 view).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use crm_projections::service_quality::{self, ComplaintsReport, Period, SatisfactionReport};
use serde::Deserialize;

use super::{SERVICE_QUALITY, closed_value, parse_time, reach_known};
use crate::app::SharedState;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplaintsParams {
    /// RFC 3339: complaints whose case was opened (business time) at or after this time.
    #[param(format = DateTime)]
    from: String,
    /// RFC 3339, after `from`: complaints whose case was opened before this time.
    #[param(format = DateTime)]
    to: String,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// The window [from, to), `from` before `to` (400 naming the parameter otherwise).
fn window(from: &str, to: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), Problem> {
    let from = parse_time("from", from)?;
    let to = parse_time("to", to)?;
    if from >= to {
        return Err(
            Problem::bad_request("query string: from must be before to").with("parameter", "from")
        );
    }
    Ok((from, to))
}

/// `GET /v1/service/complaints`.
#[utoipa::path(
    get,
    path = "/v1/service/complaints",
    operation_id = "getComplaints",
    tag = "service",
    summary = "Complaints opened in [from, to): counts by category and root cause, resolution times, repeat complainers, the monthly trend (role analyst)",
    description = "A complaint is a case marked with `CaseMarkedComplaint` (its category: the last marking); it counts in the window when its case was opened (business time) in [`from`, `to`). Resolution times run from the open to the first `CaseResolved`, in seconds, median and 90th percentile (linear interpolation between the closest ranks) over the resolved complaints, overall and per category. The root cause is the last one a resolution named. Repeat complainers: customers (by the id their cases name) with two or more complaints in the window. The trend counts complaints per calendar month (UTC) of the open, per category.",
    params(ComplaintsParams),
    responses(
        (status = 200, description = "The complaints report.", body = ComplaintsReport, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A missing or malformed time, `from` not before `to`, or an unknown parameter, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn complaints(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ComplaintsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the complaints report")?;
    let (from, to) = window(&params.from, &params.to)?;
    let position = reach_known(
        &state,
        caller.tenant(),
        &[SERVICE_QUALITY],
        params.min_position,
    )
    .await?;
    let report = service_quality::complaints(&state.db, caller.tenant(), from, to).await?;
    Ok(at_position(position, &report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SatisfactionParams {
    /// RFC 3339: answers given (business time) at or after this time.
    #[param(format = DateTime)]
    from: String,
    /// RFC 3339, after `from`: answers given before this time.
    #[param(format = DateTime)]
    to: String,
    /// The periods of `by_period`: calendar months (`month`, the default) or ISO weeks
    /// (`week`), UTC.
    #[param(inline, value_type = Option<Period>)]
    period: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/service/satisfaction`.
#[utoipa::path(
    get,
    path = "/v1/service/satisfaction",
    operation_id = "getSatisfaction",
    tag = "service",
    summary = "CSAT by agent, priority and period, and NPS by period, over answers given in [from, to) (role analyst)",
    description = "CSAT (`CsatRecorded`, 1 to 5): answers, the share of 4s and 5s in percent and the mean score, overall, per agent (the case's assignee, else its first responder; answers about cases with neither in `without_agent`), per the case's current priority and per period of the answer. NPS (`NpsAnswered`, 0 to 10): answers, promoters (9–10), passives (7–8), detractors (0–6) and NPS = % promoters − % detractors, overall and per period. Periods: calendar months or ISO weeks, UTC, oldest first, only those with answers.",
    params(SatisfactionParams),
    responses(
        (status = 200, description = "The satisfaction report.", body = SatisfactionReport, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A missing or malformed time, `from` not before `to`, a `period` other than `month` or `week`, or an unknown parameter, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn satisfaction(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<SatisfactionParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the satisfaction report")?;
    let (from, to) = window(&params.from, &params.to)?;
    let period =
        closed_value("period", &params.period, Period::ALL, |p| p.as_str())?.unwrap_or_default();
    let position = reach_known(
        &state,
        caller.tenant(),
        &[SERVICE_QUALITY],
        params.min_position,
    )
    .await?;
    let report =
        service_quality::satisfaction(&state.db, caller.tenant(), from, to, period).await?;
    Ok(at_position(position, &report))
}
