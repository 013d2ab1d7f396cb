//! `GET /v1/cases`: every case, open and closed, filtered and in pages by id (the list is
//! [`crm_projections::backlog::cases`]); each line's subject goes through `disclose`.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use crm_core::catalog::values::Priority;
use crm_projections::backlog::{self, CaseFilter, CaseStatus, Window};
use serde::Deserialize;

use super::{BACKLOG, Listing, closed_value, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CasesParams {
    /// Cases in this status.
    #[param(inline, value_type = Option<CaseStatus>)]
    status: Option<String>,
    /// Cases of this customer.
    customer_id: Option<String>,
    /// The assignee (or the first responder of a case never assigned).
    agent: Option<String>,
    /// Cases of this (current) priority.
    #[param(inline, value_type = Option<Priority>)]
    priority: Option<String>,
    /// RFC 3339: cases opened at or after this time.
    #[param(format = DateTime)]
    opened_from: Option<String>,
    /// RFC 3339: cases opened before this time.
    #[param(format = DateTime)]
    opened_to: Option<String>,
    /// RFC 3339: cases closed at or after this time (a reopened case is outside close
    /// windows until closed again).
    #[param(format = DateTime)]
    closed_from: Option<String>,
    /// RFC 3339: cases closed before this time.
    #[param(format = DateTime)]
    closed_to: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// A half-open window from two RFC 3339 parameters (`{what}_from`, `{what}_to`); 400 naming
/// the parameter that is not a time, or both when `from` is after `to`.
fn window(what: &str, from: &Option<String>, to: &Option<String>) -> Result<Window, Problem> {
    let time = |suffix: &str, value: &Option<String>| -> Result<Option<DateTime<Utc>>, Problem> {
        value
            .as_deref()
            .map(|t| parse_time(&format!("{what}_{suffix}"), t))
            .transpose()
    };
    let window = Window {
        from: time("from", from)?,
        to: time("to", to)?,
    };
    if let (Some(from), Some(to)) = (window.from, window.to)
        && from > to
    {
        return Err(Problem::bad_request(format!(
            "query string: {what}_from ({from}) is after {what}_to ({to}); the window is \
             [{what}_from, {what}_to)"
        )));
    }
    Ok(window)
}

/// `GET /v1/cases`: cases by id, filtered by status, customer, agent, priority and when they
/// were opened or closed, in pages.
#[utoipa::path(
    get,
    path = "/v1/cases",
    operation_id = "listCases",
    tag = "service",
    summary = "Every case, open and closed, by id: filtered by status, customer, agent, priority, when opened or closed, in pages (role analyst)",
    params(CasesParams),
    responses((status = 200, description = "A page of cases with their SLA due times.", body = super::Listing<crm_projections::backlog::CaseLine>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn cases(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<CasesParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read cases")?;
    let status = closed_value(
        "status",
        &params.status,
        CaseStatus::ALL,
        CaseStatus::as_str,
    )?;
    let priority = closed_value(
        "priority",
        &params.priority,
        Priority::ALL,
        Priority::as_str,
    )?;
    let opened = window("opened", &params.opened_from, &params.opened_to)?;
    let closed = window("closed", &params.closed_from, &params.closed_to)?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(&state, caller.tenant(), &[BACKLOG], params.min_position).await?;
    let items = backlog::cases::list(
        &state.read_db,
        caller.tenant(),
        &CaseFilter {
            status,
            customer_id: params.customer_id,
            agent: params.agent,
            priority,
            opened,
            closed,
            after: params.after,
            limit,
        },
    )
    .await?;
    let next_after = (items.len() == limit)
        .then(|| {
            items
                .last()
                .and_then(|line| line.case.case_id.as_ref().map(|id| id.to_string()))
        })
        .flatten();
    let listing = disclose(&state, &caller, Listing { items, next_after }).await?;
    Ok(at_position(position, &listing))
}
