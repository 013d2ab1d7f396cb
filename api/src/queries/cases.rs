//! `GET /v1/cases`: every case, open and closed, filtered and in pages by id (the list is
//! [`crm_projections::backlog::cases`]); each line's subject goes through `disclose`.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use crm_core::catalog::values::Priority;
use crm_core::envelope::Position;
use crm_projections::backlog::{self, CaseFilter, CaseStatus, Window};
use serde::Deserialize;

use super::{BACKLOG, Listing, closed_value, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesParams {
    status: Option<String>,
    customer_id: Option<String>,
    /// The assignee (or the first responder of a case never assigned).
    agent: Option<String>,
    priority: Option<String>,
    opened_from: Option<String>,
    opened_to: Option<String>,
    closed_from: Option<String>,
    closed_to: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    min_position: Option<Position>,
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
        &state.db,
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
