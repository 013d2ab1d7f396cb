//! Accounts and tasks (issue 18): `GET /v1/accounts/{id}/contacts` (a company's contacts, in
//! pages by customer id), `GET /v1/tasks` (filtered; in pages by id or by due time; overdue
//! at the time of the request) and `GET /v1/opportunities/{id}` (one deal with its open
//! tasks). The decisions are `crm_projections::accounts` and `crm_projections::tasks`.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use crm_core::catalog::values::TaskSubjectKind;
use crm_projections::accounts::{self, Contact};
use crm_projections::tasks::{self, TaskCursor, TaskFilter, TaskLine, TaskOrder, TaskStatus};
use crm_projections::{customer360, pipeline};
use serde::{Deserialize, Serialize};

use super::{
    CUSTOMER_360, Listing, PIPELINE, closed_value, one_of, page_size, parse_time, reach_known,
};
use crate::app::SharedState;
use crate::disclosure::disclose;
use crate::extract::{Caller, Id, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

/// The accounts read model's name.
pub(crate) const ACCOUNTS: &str = accounts::NAME;
/// The tasks read model's name.
pub(crate) const TASKS: &str = tasks::NAME;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContactsParams {
    /// The `next_after` of the previous page (a customer id).
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read models have applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/accounts/{id}/contacts`: the account's current contacts with their roles.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/contacts",
    operation_id = "listAccountContacts",
    tag = "customers",
    summary = "An account's current contacts with their roles, by customer id, in pages (role analyst)",
    params(crate::extract::IdParam, ContactsParams),
    responses(
        (status = 200, description = "A page of contacts.", body = super::Listing<Contact>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 404, description = "No customer with this id.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn account_contacts(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<ContactsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read accounts")?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(
        &state,
        caller.tenant(),
        &[CUSTOMER_360, ACCOUNTS],
        params.min_position,
    )
    .await?;
    if customer360::get(&state.read_db, caller.tenant(), id.as_str())
        .await?
        .is_none()
    {
        return Err(Problem::not_found(format!("customer {id} not found")));
    }
    let items = accounts::contacts(
        &state.read_db,
        caller.tenant(),
        id.as_str(),
        None,
        params.after.as_deref(),
        limit,
    )
    .await?;
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|c| c.customer_id.clone()))
        .flatten();
    Ok(at_position(position, &Listing { items, next_after }))
}

/// The orders tasks are listed in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a described value set; the query keeps the text
pub enum TaskListOrder {
    Id,
    Due,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TasksParams {
    /// Tasks of this owner.
    owner: Option<String>,
    /// `open`, `completed` or `cancelled`.
    #[param(inline, value_type = Option<String>)]
    status: Option<String>,
    /// `<subject_type>:<id>`, e.g. `opportunity:op-5` (`customer`, `opportunity`, `case`,
    /// `lead`).
    subject: Option<String>,
    /// `true`: only tasks open and due before the time of the request; `false`: the others.
    overdue: Option<String>,
    /// RFC 3339: only tasks due before this time.
    #[param(format = DateTime)]
    due_before: Option<String>,
    /// `id` (the default) or `due` (due time, then id).
    #[param(inline, value_type = Option<TaskListOrder>)]
    order: Option<String>,
    /// The `next_after` of the previous page: a task id, or with `order=due`
    /// `<due time>,<task id>`.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/tasks`: tasks filtered by owner, status, subject, due time and overdue.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    operation_id = "listTasks",
    tag = "sales",
    summary = "Tasks by owner, status, subject, due time, overdue now; by id or due time, in pages (role analyst)",
    params(TasksParams),
    responses((status = 200, description = "A page of tasks.", body = super::Listing<TaskLine>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn tasks(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<TasksParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read tasks")?;
    let now = Utc::now();
    let status = closed_value(
        "status",
        &params.status,
        &[
            TaskStatus::Open,
            TaskStatus::Completed,
            TaskStatus::Cancelled,
        ],
        TaskStatus::as_str,
    )?;
    one_of("overdue", &params.overdue, &["true", "false"])?;
    one_of("order", &params.order, &["id", "due"])?;
    let order = match params.order.as_deref() {
        Some("due") => TaskOrder::Due,
        _ => TaskOrder::Id,
    };
    let subject = params.subject.as_deref().map(parse_subject).transpose()?;
    let due_before = params
        .due_before
        .as_deref()
        .map(|t| parse_time("due_before", t))
        .transpose()?;
    let after = params
        .after
        .as_deref()
        .map(|after| parse_cursor(order, after))
        .transpose()?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(&state, caller.tenant(), &[TASKS], params.min_position).await?;
    let filter = TaskFilter {
        owner: params.owner,
        status,
        subject,
        due_before,
        overdue: params.overdue.as_deref().map(|o| o == "true"),
        order,
        after,
        limit,
    };
    let items = tasks::list(&state.read_db, caller.tenant(), &filter, now).await?;
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|line| cursor_of(order, line)))
        .flatten();
    Ok(at_position(position, &Listing { items, next_after }))
}

/// `<subject_type>:<id>`; 400 naming `subject` otherwise.
fn parse_subject(text: &str) -> Result<(TaskSubjectKind, String), Problem> {
    let wrong = || {
        Problem::bad_request(format!(
            "query string: subject={text:?} is not <subject_type>:<id> with a subject_type of \
             \"customer\", \"opportunity\", \"case\", \"lead\", e.g. opportunity:op-5"
        ))
        .with("parameter", "subject")
    };
    let (kind, id) = text.split_once(':').ok_or_else(wrong)?;
    let kind = TaskSubjectKind::parse(kind).ok_or_else(wrong)?;
    crm_core::ids::EntityId::parse(id).map_err(|_| wrong())?;
    Ok((kind, id.to_owned()))
}

/// A page cursor of the given order; 400 naming `after` when it is not one.
fn parse_cursor(order: TaskOrder, text: &str) -> Result<TaskCursor, Problem> {
    match order {
        TaskOrder::Id => Ok(TaskCursor::Id(text.to_owned())),
        TaskOrder::Due => {
            let wrong = || {
                Problem::bad_request(format!(
                    "query string: after={text:?} is not <due time>,<task id> as the previous \
                     page's next_after gives it with order=due"
                ))
                .with("parameter", "after")
            };
            let (due, id) = text.rsplit_once(',').ok_or_else(wrong)?;
            let due: DateTime<Utc> = DateTime::parse_from_rfc3339(due)
                .map_err(|_| wrong())?
                .with_timezone(&Utc);
            Ok(TaskCursor::Due(due, id.to_owned()))
        }
    }
}

fn cursor_of(order: TaskOrder, line: &TaskLine) -> String {
    let id = line
        .task
        .task_id
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    match order {
        TaskOrder::Id => id,
        TaskOrder::Due => format!(
            "{},{id}",
            line.task
                .due_at
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default()
        ),
    }
}

/// One opportunity with its open tasks.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpportunityDetail {
    #[serde(flatten)]
    pub line: pipeline::OpportunityLine,
    /// Open tasks whose subject is this opportunity, soonest due first, `overdue` now.
    pub open_tasks: Vec<TaskLine>,
}

impl crate::disclosure::Personal for OpportunityDetail {
    fn redact(&mut self) {
        self.line.redact();
    }

    fn subjects(&self, out: &mut std::collections::BTreeSet<String>) {
        self.line.subjects(out);
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OpportunityParams {
    /// Read-your-writes: wait until the read models have applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/opportunities/{id}`: one opportunity, with time in each stage and open tasks.
#[utoipa::path(
    get,
    path = "/v1/opportunities/{id}",
    operation_id = "getOpportunity",
    tag = "sales",
    summary = "One opportunity with time in each stage and its open tasks (role analyst)",
    params(crate::extract::IdParam, OpportunityParams),
    responses(
        (status = 200, description = "The opportunity.", body = OpportunityDetail, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 404, description = "No opportunity with this id.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn opportunity(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<OpportunityParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read opportunities")?;
    let now = Utc::now();
    let position = reach_known(
        &state,
        caller.tenant(),
        &[PIPELINE, TASKS],
        params.min_position,
    )
    .await?;
    let line = pipeline::line(&state.read_db, caller.tenant(), id.as_str(), now)
        .await?
        .ok_or_else(|| Problem::not_found(format!("opportunity {id} not found")))?;
    let open_tasks = tasks::open_for(
        &state.read_db,
        caller.tenant(),
        TaskSubjectKind::Opportunity,
        id.as_str(),
        now,
    )
    .await?;
    let detail = disclose(&state, &caller, OpportunityDetail { line, open_tasks }).await?;
    Ok(at_position(position, &detail))
}
