//! The service desk's routes: `GET /v1/service/backlog` (live, or as it stood at a past
//! `at`), the tenant's SLA targets (`GET`/`PUT /v1/service/sla-targets`) and business-hours
//! calendar (`GET`/`PUT`/`DELETE /v1/service/calendar`). Settings are facts: a `PUT` appends
//! `SlaTargetsSet` or `BusinessCalendarSet` (a `DELETE`, `BusinessCalendarCleared`) through
//! the ingest decision, in force for the cases opened after it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use crm_projections::backlog;
use serde::{Deserialize, Serialize};

use super::{BACKLOG, ConsistencyParams, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position, read_json};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BacklogParams {
    /// RFC 3339: a past time gives the backlog as it stood then (every case folded up to
    /// `at`, business time, judged at `at`); a later one judges today's cases at `at`.
    #[param(format = DateTime)]
    at: Option<String>,
    /// Open cases to skip.
    offset: Option<usize>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/service/backlog`: open cases by due time, breaches, response times.
#[utoipa::path(
    get,
    path = "/v1/service/backlog",
    operation_id = "getBacklog",
    tag = "service",
    summary = "Open cases by next due time, SLA breaches at `at`, response-time figures, open cases per agent (role analyst)",
    params(BacklogParams),
    responses((status = 200, description = "The backlog.", body = crm_projections::backlog::Backlog, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn backlog(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<BacklogParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the service backlog")?;
    let now = Utc::now();
    let at = params
        .at
        .as_deref()
        .map(|t| parse_time("at", t))
        .transpose()?
        .unwrap_or(now);
    let limit = page_size(&state, params.limit)?;
    let offset = params.offset.unwrap_or(0);
    let backlog = if at < now {
        // A past backlog folds every case's facts up to `at`: the read model must hold
        // every event recorded so far.
        let head = state.store.head_position().await?;
        let wanted = head.max(params.min_position.unwrap_or(0));
        let position = reach_known(&state, caller.tenant(), &[BACKLOG], Some(wanted)).await?;
        let backlog =
            backlog::backlog_as_of(&state.read_db, caller.tenant(), at, offset, limit).await?;
        (position, backlog)
    } else {
        let position =
            reach_known(&state, caller.tenant(), &[BACKLOG], params.min_position).await?;
        let backlog = backlog::backlog(&state.read_db, caller.tenant(), at, offset, limit).await?;
        (position, backlog)
    };
    let (position, backlog) = backlog;
    let backlog = disclose(&state, &caller, backlog).await?;
    Ok(at_position(position, &backlog))
}

/// `GET /v1/service/sla-targets`: the tenant's targets (the defaults until set).
#[utoipa::path(
    get,
    path = "/v1/service/sla-targets",
    operation_id = "getSlaTargets",
    tag = "service",
    summary = "The tenant's SLA targets in force: minutes to first response and to resolution per priority, the warning share (role analyst)",
    params(ConsistencyParams),
    responses((status = 200, description = "The targets (the defaults until set) and the position of the `SlaTargetsSet` that set them.", body = backlog::TargetsInForce, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn sla_targets(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read SLA targets")?;
    let position = reach_known(&state, caller.tenant(), &[BACKLOG], params.min_position()).await?;
    let targets = backlog::sla_targets(&state.read_db, caller.tenant()).await?;
    Ok(at_position(position, &targets))
}

/// `PUT /v1/service/sla-targets`: sets the tenant's targets from now on.
#[utoipa::path(
    put,
    path = "/v1/service/sla-targets",
    operation_id = "setSlaTargets",
    tag = "service",
    summary = "Set the tenant's SLA targets for the cases opened from now on, as a `SlaTargetsSet` event (role admin)",
    request_body(content = SlaTargetsBody, description = "Every priority's targets in minutes (1 or more; the resolution not before the first response) and an optional `warning_percent` (1 to 99, 75 by default): `{\"low\": {\"first_response_minutes\": 1440, \"resolution_minutes\": 10080}, \"normal\": …, \"high\": …, \"urgent\": …}`."),
    responses(
        (status = 200, description = "Recorded: the event's position (pass it as `min_position`).", body = SettingRecorded),
        (status = 422, description = "A target out of range, named in `field`.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn set_sla_targets(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "change SLA targets")?;
    let value = read_json(&state, body).await?;
    let outcome =
        super::append_setting(&state, principal, "SLA targets", "SlaTargetsSet", value).await?;
    Ok(axum::Json(SettingRecorded {
        position: outcome.last_position,
    })
    .into_response())
}

/// The body of `PUT /v1/service/sla-targets`: the data of a `SlaTargetsSet`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SlaTargetsBody {
    pub low: backlog::SlaTarget,
    pub normal: backlog::SlaTarget,
    pub high: backlog::SlaTarget,
    pub urgent: backlog::SlaTarget,
    /// The share of a target counted when its warning is due: 1 to 99, 75 when absent.
    #[schema(minimum = 1, maximum = 99)]
    pub warning_percent: Option<u8>,
}

/// The body of `PUT /v1/service/calendar`: the data of a `BusinessCalendarSet`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CalendarBody {
    /// An IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// Working intervals per weekday (`monday` to `sunday`), local wall-clock times
    /// `["09:00", "17:30"]` (`24:00` ends the day); a day without intervals is not worked.
    pub hours: std::collections::BTreeMap<String, Vec<[String; 2]>>,
    /// Local dates (`YYYY-MM-DD`) without working time.
    pub holidays: Option<Vec<String>>,
}

/// What a settings `PUT` or `DELETE` recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingRecorded {
    /// The position of the settings event: in force for the cases opened after it.
    pub position: u64,
}

/// `GET /v1/service/calendar`: the business-hours calendar in force.
#[utoipa::path(
    get,
    path = "/v1/service/calendar",
    operation_id = "getCalendar",
    tag = "service",
    summary = "The tenant's business-hours calendar in force: time zone, working hours per weekday, holidays (role analyst)",
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The calendar as set (`BusinessCalendarSet` data) with its `position`.", body = Object, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 404, description = "No calendar: SLA clocks count elapsed time.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn calendar(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the calendar")?;
    let position = reach_known(&state, caller.tenant(), &[BACKLOG], params.min_position()).await?;
    let calendar = backlog::settings::calendar_in_force(&state.read_db, caller.tenant())
        .await?
        .ok_or_else(|| {
            Problem::not_found(
                "no business-hours calendar is set: SLA clocks count elapsed time (PUT \
                 /v1/service/calendar sets one)",
            )
        })?;
    Ok(at_position(position, &calendar))
}

/// `PUT /v1/service/calendar`: sets the business-hours calendar from now on.
#[utoipa::path(
    put,
    path = "/v1/service/calendar",
    operation_id = "setCalendar",
    tag = "service",
    summary = "Set the tenant's business-hours calendar for the cases opened from now on, as a `BusinessCalendarSet` event (role admin)",
    request_body(content = CalendarBody, description = "`{\"time_zone\": \"Europe/Paris\", \"hours\": {\"monday\": [[\"09:00\", \"17:30\"]], …, \"sunday\": []}, \"holidays\": [\"2026-12-25\"]}`; a calendar with no working time is refused."),
    responses(
        (status = 200, description = "Recorded: the event's position.", body = SettingRecorded),
        (status = 422, description = "An unknown time zone, a bad interval or holiday, or no working time, named in `field`.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn set_calendar(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "change the calendar")?;
    let value = read_json(&state, body).await?;
    let outcome =
        super::append_setting(&state, principal, "calendar", "BusinessCalendarSet", value).await?;
    Ok(axum::Json(SettingRecorded {
        position: outcome.last_position,
    })
    .into_response())
}

/// `DELETE /v1/service/calendar`: back to elapsed time from now on.
#[utoipa::path(
    delete,
    path = "/v1/service/calendar",
    operation_id = "clearCalendar",
    tag = "service",
    summary = "Clear the tenant's calendar: cases opened from now on count elapsed time, as a `BusinessCalendarCleared` event (role admin)",
    responses((status = 200, description = "Recorded: the event's position.", body = SettingRecorded))
)]
pub async fn clear_calendar(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "change the calendar")?;
    let outcome = super::append_setting(
        &state,
        principal,
        "calendar",
        "BusinessCalendarCleared",
        serde_json::json!({}),
    )
    .await?;
    Ok(axum::Json(SettingRecorded {
        position: outcome.last_position,
    })
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServiceAnalyticsParams {
    /// RFC 3339: cases opened at or after this time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, after `from`: cases opened before this time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// RFC 3339: when clocks still running are judged; now when absent.
    #[param(format = DateTime)]
    at: Option<String>,
    /// `month` (the default) or `week`: how `by_period` groups the opens.
    #[param(inline, value_type = Option<String>)]
    period: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/analytics/service`.
#[utoipa::path(
    get,
    path = "/v1/analytics/service",
    operation_id = "getServiceAnalytics",
    tag = "analytics",
    summary = "SLA breach and warning rates, first-response and resolution time percentiles, overall and by priority, agent, channel and period (role analyst)",
    description = "Over the cases opened in [`from`, `to`), each judged under the SLA of its open (docs/service.md) at `at`; times are elapsed seconds from the open.",
    params(ServiceAnalyticsParams),
    responses(
        (status = 200, description = "The figures.", body = backlog::analytics::ServiceAnalytics, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A time that is not RFC 3339, `from` after `to`, or a period out of its set, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn service_analytics(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ServiceAnalyticsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read service analytics")?;
    let time = |name: &str, value: &Option<String>| {
        value.as_deref().map(|t| parse_time(name, t)).transpose()
    };
    let from = time("from", &params.from)?;
    let to = time("to", &params.to)?;
    let at = time("at", &params.at)?.unwrap_or_else(Utc::now);
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(Problem::bad_request("query string: from must be before to"));
    }
    let period = match params.period.as_deref() {
        None | Some("month") => backlog::analytics::Period::Month,
        Some("week") => backlog::analytics::Period::Week,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "query string: period={other:?} is not one of month, week"
            )));
        }
    };
    let position = reach_known(&state, caller.tenant(), &[BACKLOG], params.min_position).await?;
    let figures = backlog::analytics::service_analytics(
        &state.read_db,
        caller.tenant(),
        from,
        to,
        at,
        period,
    )
    .await?;
    Ok(at_position(position, &figures))
}
