//! Service quality over HTTP (issue 19, items 4 and 5): `GET /v1/service/complaints` (the
//! complaints opened in a window: by category, by root cause, resolution times, repeat
//! complainers, the monthly trend) and `GET /v1/service/satisfaction` (CSAT by agent,
//! priority and period; NPS by period), both for analysts, from the `service_quality` read
//! model; `GET`/`PUT /v1/settings/complaints`, the tenant's complaint categories and root
//! causes (read by analysts and auditors, set by an admin through the very decision behind
//! `POST /v1/events`, as a `ComplaintCategoriesSet`). No answer carries a personal field
//! (comments appear only on the 360 view).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_core::command;
use crm_core::command::parse::parse_batch;
use crm_projections::service_quality::{
    self, ComplaintListsInForce, ComplaintsReport, Period, SatisfactionReport,
};
use serde::{Deserialize, Serialize};

use super::{SERVICE_QUALITY, closed_value, parse_time, reach_known};
use crate::app::SharedState;
use crate::extract::{Caller, Params, at_position, read_json};
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
    let report = service_quality::complaints(&state.read_db, caller.tenant(), from, to).await?;
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
        service_quality::satisfaction(&state.read_db, caller.tenant(), from, to, period).await?;
    Ok(at_position(position, &report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListsParams {
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/settings/complaints`.
#[utoipa::path(
    get,
    path = "/v1/settings/complaints",
    operation_id = "getComplaintLists",
    tag = "service",
    summary = "The tenant's complaint categories and root causes in force, and every list it set (role analyst or auditor)",
    params(ListsParams),
    responses((status = 200, description = "The lists (`in_force` null until an admin sets them).", body = ComplaintListsInForce, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn complaint_lists(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ListsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst, Role::Auditor], "read the complaint lists")?;
    let position = reach_known(
        &state,
        caller.tenant(),
        &[SERVICE_QUALITY],
        params.min_position,
    )
    .await?;
    let lists = service_quality::lists(&state.read_db, caller.tenant()).await?;
    Ok(at_position(position, &lists))
}

/// The body of `PUT /v1/settings/complaints`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLists {
    /// Non-empty, distinct labels (entity id rules), at most 200.
    pub categories: Vec<String>,
    /// Non-empty, distinct labels (entity id rules), at most 200.
    pub causes: Vec<String>,
}

/// What `PUT /v1/settings/complaints` recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListsSetAnswer {
    pub categories: Vec<String>,
    pub causes: Vec<String>,
    /// The position of the `ComplaintCategoriesSet`: the lists are in force after it (pass it
    /// as `min_position` to read them back).
    pub position: u64,
}

/// `PUT /v1/settings/complaints`.
#[utoipa::path(
    put,
    path = "/v1/settings/complaints",
    operation_id = "setComplaintLists",
    tag = "service",
    summary = "Set the tenant's complaint categories and root causes from now on, as a `ComplaintCategoriesSet` event (role admin)",
    description = "Both lists are replaced. `CaseMarkedComplaint` and a `CaseResolved`'s `root_cause` are judged against the lists in force when they are appended; complaints recorded before keep their labels.",
    request_body(content = SetLists, description = "`{\"categories\": [\"billing\", ...], \"causes\": [\"carrier_delay\", ...]}`."),
    responses(
        (status = 201, description = "The lists were recorded.", body = ListsSetAnswer),
        (status = 422, description = "The body is not two lists of distinct labels, the member at fault named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn set_complaint_lists(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "change the complaint lists")?;
    let value = read_json(&state, body).await?;
    let wanted: SetLists = serde_path_to_error::deserialize(value).map_err(|e| {
        Problem::unprocessable(format!("complaint lists: {}: {}", e.path(), e.inner()))
            .with("field", e.path().to_string())
    })?;
    let batch = parse_batch(
        &serde_json::json!({"events": [{
            "type": "ComplaintCategoriesSet",
            "data": {"categories": wanted.categories, "causes": wanted.causes},
        }]}),
        &principal.tenant,
        &principal.key_id,
        None,
        1,
    )?;
    let outcome = command::append(
        state.store.as_ref(),
        &state.streams,
        &principal.tenant,
        &batch,
    )
    .await?;
    let answer = ListsSetAnswer {
        categories: wanted.categories,
        causes: wanted.causes,
        position: outcome.last_position,
    };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}
