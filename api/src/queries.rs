//! Read-model queries: customers (the 360 view, as of any past moment, listings and
//! timelines), the pipeline, opportunities, the service backlog and its SLA targets, and the
//! projections' own state. Every query takes `min_position` (read-your-writes) and answers
//! with the read model's position in the `crm-read-position` header.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_core::catalog::personal_fields;
use crm_core::envelope::Position;
use crm_projections::asof::{Cut, customer_as_of};
use crm_projections::backlog::{self, SlaTargets};
use crm_projections::customer360::{self, CustomerFilter};
use crm_projections::pipeline::{self, OpportunityFilter};
use crm_projections::timeline::{self, TimelinePage};
use crm_projections::{ProjectionError, all_projections, bookkeeping};
use serde::{Deserialize, Serialize};

use crate::app::SharedState;
use crate::disclosure::{disclose, require_personal_data};
use crate::extract::{Caller, Id, Params, at_position, reach, read_json};
use crate::keys::Role;
use crate::problem::Problem;

const CUSTOMER_360: &str = "customer_360";
const TIMELINE: &str = "customer_timeline";
const PIPELINE: &str = "pipeline";
const BACKLOG: &str = "service_backlog";
/// Page size when a listing is given no `limit`.
const DEFAULT_PAGE: usize = 50;

fn internal(error: ProjectionError) -> Problem {
    Problem::internal(&error)
}

/// Parses an RFC 3339 query parameter, naming it when it is wrong.
pub fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Problem::bad_request(format!(
                "query string: {name}={value:?} is not an RFC 3339 time ({e}), \
                 e.g. 2026-03-01T12:00:00Z"
            ))
        })
}

/// A page size: the default when absent, 1 to the configured maximum otherwise.
pub fn page_size(state: &SharedState, limit: Option<usize>) -> Result<usize, Problem> {
    let max = state.limits.max_page;
    match limit {
        None => Ok(DEFAULT_PAGE.min(max)),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(limit) => Err(Problem::bad_request(format!(
            "query string: limit={limit} is out of range; it must be 1 to {max}"
        ))),
    }
}

fn one_of(name: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), Problem> {
    match value {
        Some(value) if !allowed.contains(&value.as_str()) => Err(Problem::bad_request(format!(
            "query string: {name}={value:?} is not one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerParams {
    /// Fold the events that occurred by this time and evaluate time figures at it.
    as_of: Option<String>,
    /// Fold what had been recorded by this time.
    known_at: Option<String>,
    /// Fold up to this log position.
    position: Option<Position>,
    /// Evaluate time-based figures (RFM recency) at this time instead of now.
    at: Option<String>,
    min_position: Option<Position>,
}

/// `GET /v1/customers/{id}`: the 360 view, live or as of a past moment.
pub async fn customer(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<CustomerParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read customers")?;
    let at = params
        .at
        .as_deref()
        .map(|t| parse_time("at", t))
        .transpose()?;
    let cuts = [
        params.as_of.is_some(),
        params.known_at.is_some(),
        params.position.is_some(),
    ];
    if cuts.iter().filter(|c| **c).count() > 1 {
        return Err(Problem::bad_request(
            "query string: give at most one of as_of, known_at and position",
        ));
    }
    let cut = if let Some(t) = &params.as_of {
        Some(Cut::OccurredBy(parse_time("as_of", t)?))
    } else if let Some(t) = &params.known_at {
        Some(Cut::RecordedBy(parse_time("known_at", t)?))
    } else {
        params.position.map(Cut::Position)
    };
    let Some(cut) = cut else {
        let position = reach(
            &state,
            caller.tenant(),
            &[CUSTOMER_360, TIMELINE],
            params.min_position,
        )
        .await?;
        let view = customer360::view(
            &state.db,
            caller.tenant(),
            id.as_str(),
            at.unwrap_or_else(Utc::now),
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| Problem::not_found(format!("customer {id} not found")))?;
        let view = disclose(&state, &caller, view).await?;
        return Ok(at_position(position, &view));
    };
    // A past view folds the customer's timeline from the log: the timeline read model must
    // hold every event within the cut.
    let head = state
        .store
        .head_position()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let needed = match cut {
        Cut::Position(position) if position > head => {
            return Err(Problem::bad_request(format!(
                "query string: position={position} is beyond the log's head ({head})"
            )));
        }
        Cut::Position(position) => position,
        Cut::OccurredBy(_) | Cut::RecordedBy(_) => head,
    };
    let wanted = needed.max(params.min_position.unwrap_or(0));
    let position = reach(&state, caller.tenant(), &[TIMELINE], Some(wanted)).await?;
    let found = customer_as_of(
        state.store.as_ref(),
        &state.db,
        &principal.tenant,
        id.as_str(),
        cut,
    )
    .await
    .map_err(internal)?
    .ok_or_else(|| Problem::not_found(format!("customer {id} has no event within the cut")))?;
    let evaluate_at = at.unwrap_or(match cut {
        Cut::OccurredBy(t) | Cut::RecordedBy(t) => t,
        Cut::Position(_) => Utc::now(),
    });
    let view = disclose(&state, &caller, found.view(evaluate_at)).await?;
    Ok(at_position(position, &view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomersParams {
    search: Option<String>,
    segment: Option<String>,
    owner: Option<String>,
    status: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    min_position: Option<Position>,
}

#[derive(Serialize)]
pub(crate) struct Listing<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_after: Option<String>,
}

/// `GET /v1/customers`: filter and search, by id, in pages.
///
/// `search` matches names and emails (personal data) as well as ids, so a key that does not
/// read personal data may not search at all (403 naming `--personal-data`), not even for an
/// id: whether a search for an email finds a customer would tell that email apart from the
/// others, even with every name and email redacted. Such keys filter by `segment`, `owner`
/// and `status` and page by id.
pub async fn customers(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<CustomersParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read customers")?;
    if params.search.is_some() {
        require_personal_data(principal, "searching customers (by name, email or id)")?;
    }
    one_of("status", &params.status, &["active", "merged", "erased"])?;
    let limit = page_size(&state, params.limit)?;
    let position = reach(
        &state,
        caller.tenant(),
        &[CUSTOMER_360],
        params.min_position,
    )
    .await?;
    let items = customer360::list(
        &state.db,
        caller.tenant(),
        &CustomerFilter {
            search: params.search,
            segment: params.segment,
            owner: params.owner,
            status: params.status,
            after: params.after,
            limit,
        },
    )
    .await
    .map_err(internal)?;
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|c| c.customer_id.clone()))
        .flatten();
    let listing = disclose(&state, &caller, Listing { items, next_after }).await?;
    Ok(at_position(position, &listing))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    /// Entries after this position (before it with `order=desc`).
    after: Option<Position>,
    limit: Option<usize>,
    /// `asc` (oldest first, the default) or `desc`.
    order: Option<String>,
    min_position: Option<Position>,
}

#[derive(Serialize)]
pub(crate) struct TimelineLine {
    position: Position,
    pub(crate) stream_id: String,
    revision: u64,
    event_id: uuid::Uuid,
    pub(crate) event_type: String,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    pub(crate) data: serde_json::Value,
    metadata: serde_json::Value,
}

#[derive(Serialize)]
pub(crate) struct Timeline {
    pub(crate) customer_id: String,
    /// Personal fields of an erased customer's events read `"[erased]"`.
    erased: bool,
    pub(crate) entries: Vec<TimelineLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<Position>,
}

/// `GET /v1/customers/{id}/timeline`: every event touching the customer, with its data from
/// the log, in pages.
pub async fn timeline(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<TimelineParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst, Role::Auditor], "read timelines")?;
    one_of("order", &params.order, &["asc", "desc"])?;
    let limit = page_size(&state, params.limit)?;
    let position = reach(
        &state,
        caller.tenant(),
        &[TIMELINE, CUSTOMER_360],
        params.min_position,
    )
    .await?;
    let newest_first = params.order.as_deref() == Some("desc");
    let entries = timeline::page(
        &state.db,
        caller.tenant(),
        id.as_str(),
        TimelinePage {
            cursor: params.after,
            limit,
            newest_first,
        },
    )
    .await
    .map_err(internal)?;
    let customer = customer360::get(&state.db, caller.tenant(), id.as_str())
        .await
        .map_err(internal)?;
    if entries.is_empty() && customer.is_none() && params.after.is_none() {
        return Err(Problem::not_found(format!("customer {id} not found")));
    }
    let erased = customer.is_some_and(|c| c.erased_at.is_some());
    let positions: Vec<Position> = entries.iter().map(|e| e.position).collect();
    let events = state
        .store
        .read_positions(&principal.tenant, &positions)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let mut lines = Vec::with_capacity(entries.len());
    for entry in &entries {
        let Some(event) = events.iter().find(|e| e.position == entry.position) else {
            continue;
        };
        let mut data: serde_json::Value =
            serde_json::from_str(event.data.get()).map_err(|e| Problem::internal(&e))?;
        if erased && let Some(object) = data.as_object_mut() {
            for field in personal_fields(&event.event_type) {
                if let Some(value) = object.get_mut(*field) {
                    *value = serde_json::Value::String("[erased]".into());
                }
            }
        }
        let metadata: serde_json::Value =
            serde_json::from_str(event.metadata.get()).map_err(|e| Problem::internal(&e))?;
        lines.push(TimelineLine {
            position: event.position,
            stream_id: event.stream_id.as_str().to_owned(),
            revision: event.revision,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at,
            recorded_at: event.recorded_at,
            actor: metadata["actor"].as_str().map(str::to_owned),
            source: metadata["source"].as_str().map(str::to_owned),
            data,
            metadata,
        });
    }
    let next_after = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.position))
        .flatten();
    let timeline = Timeline {
        customer_id: id.as_str().to_owned(),
        erased,
        entries: lines,
        next_after,
    };
    let timeline = disclose(&state, &caller, timeline).await?;
    Ok(at_position(position, &timeline))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    min_position: Option<Position>,
}

/// `GET /v1/pipeline`: totals by stage, forecast, win rate and cycle time.
pub async fn pipeline(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the pipeline")?;
    let position = reach(&state, caller.tenant(), &[PIPELINE], params.min_position).await?;
    let summary = pipeline::summary(&state.db, caller.tenant())
        .await
        .map_err(internal)?;
    Ok(at_position(position, &summary))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpportunitiesParams {
    status: Option<String>,
    stage: Option<String>,
    owner: Option<String>,
    customer_id: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    /// Measure time in the current stage up to this time instead of now.
    at: Option<String>,
    min_position: Option<Position>,
}

/// `GET /v1/opportunities`: filtered, by id, in pages.
pub async fn opportunities(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<OpportunitiesParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read opportunities")?;
    one_of("status", &params.status, &["open", "won", "lost"])?;
    let limit = page_size(&state, params.limit)?;
    let now = params
        .at
        .as_deref()
        .map(|t| parse_time("at", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let position = reach(&state, caller.tenant(), &[PIPELINE], params.min_position).await?;
    let items = pipeline::list(
        &state.db,
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
    .await
    .map_err(internal)?;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacklogParams {
    /// Evaluate due times and breaches at this time instead of now.
    at: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    min_position: Option<Position>,
}

/// `GET /v1/service/backlog`: open cases by due time, breaches, response times.
pub async fn backlog(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<BacklogParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read the service backlog")?;
    let at = params
        .at
        .as_deref()
        .map(|t| parse_time("at", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let limit = page_size(&state, params.limit)?;
    let position = reach(&state, caller.tenant(), &[BACKLOG], params.min_position).await?;
    let backlog = backlog::backlog(
        &state.db,
        caller.tenant(),
        at,
        params.offset.unwrap_or(0),
        limit,
    )
    .await
    .map_err(internal)?;
    let backlog = disclose(&state, &caller, backlog).await?;
    Ok(at_position(position, &backlog))
}

/// `GET /v1/service/sla-targets`: the tenant's targets (the defaults until set).
pub async fn sla_targets(
    State(state): State<SharedState>,
    caller: Caller,
    Params(_): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read SLA targets")?;
    let targets = backlog::sla_targets(&state.db, caller.tenant())
        .await
        .map_err(internal)?;
    Ok(axum::Json(targets).into_response())
}

/// `PUT /v1/service/sla-targets`: replaces the tenant's targets; due times follow at once.
pub async fn set_sla_targets(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    caller.require(&[], "change SLA targets")?;
    let value = read_json(&state, body).await?;
    let targets: SlaTargets = serde_json::from_value(value)
        .map_err(|e| Problem::unprocessable(format!("SLA targets: {e}")))?;
    backlog::set_sla_targets(&state.db, caller.tenant(), &targets)
        .await
        .map_err(internal)?
        .map_err(|problem| Problem::unprocessable(format!("SLA targets: {problem}")))?;
    Ok(axum::Json(targets).into_response())
}

#[derive(Serialize)]
struct ProjectionLine {
    name: String,
    version: i64,
    state: String,
    generation: i64,
    position: Position,
    head: Position,
    lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuild_position: Option<Position>,
    /// The stored projection-wide error (whichever process runs it), else this process's.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// How many tenants are parked for it.
    parked_tenants: usize,
    /// The caller's tenant's failure, when it is parked for this read model.
    #[serde(skip_serializing_if = "Option::is_none")]
    parked: Option<ParkedLine>,
}

#[derive(Serialize)]
struct ParkedLine {
    /// The event that could not be applied.
    position: Position,
    error: String,
    /// The tenant's events waiting (the failed one included), applied in log order once it
    /// is fixed.
    parked_events: u64,
}

/// `GET /v1/projections`: each read model's position, lag and state, from the stored state
/// (so every process answers alike). Positions are global (the log is shared by every
/// tenant); of the parked tenants ([`crm_projections::parking`]) only the count is shown,
/// plus the caller's own tenant's failure.
pub async fn projections(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst, Role::Auditor], "read projection state")?;
    crate::extract::reach_head(&state, params.min_position).await?;
    let head = state
        .store
        .head_position()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let stored = bookkeeping::stored_positions(&state.db)
        .await
        .map_err(internal)?;
    let errors = crm_projections::parking::stored_errors(&state.db)
        .await
        .map_err(internal)?;
    let failures = crm_projections::parking::stored_failures(&state.db)
        .await
        .map_err(internal)?;
    let local = state.projections.borrow().clone();
    let lines: Vec<ProjectionLine> = all_projections()
        .iter()
        .map(|projection| {
            let name = projection.name();
            let status = local.iter().find(|s| s.name == name);
            let saved = stored.iter().find(|s| s.projection == name);
            let position = status
                .map(|s| s.position)
                .max(saved.map(|s| s.position))
                .unwrap_or(0);
            ProjectionLine {
                name: name.to_owned(),
                version: projection.version(),
                state: status.map_or("unknown".to_owned(), |s| {
                    serde_json::to_value(s.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
                generation: saved.map_or(0, |s| s.generation),
                position,
                head,
                lag: head.saturating_sub(position),
                rebuild_position: status
                    .and_then(|s| s.rebuild.map(|r| r.position))
                    .or(saved.and_then(|s| s.rebuild_position)),
                error: errors
                    .iter()
                    .find(|(projection, _)| projection == name)
                    .map(|(_, error)| error.clone())
                    .or_else(|| status.and_then(|s| s.error.clone())),
                parked_tenants: failures.iter().filter(|f| f.projection == name).count(),
                parked: failures
                    .iter()
                    .find(|f| f.projection == name && f.tenant == caller.tenant())
                    .map(|f| ParkedLine {
                        position: f.position,
                        error: f.error.clone(),
                        parked_events: f.parked_events,
                    }),
            }
        })
        .collect();
    Ok(at_position(
        head,
        &serde_json::json!({ "projections": lines }),
    ))
}
