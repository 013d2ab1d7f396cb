//! Read-model queries: customers (the 360 view, as of any past moment, listings and
//! timelines), the pipeline, opportunities, cases, the service backlog and its SLA targets,
//! and the projections' own state. Every query takes `min_position` (read-your-writes) and
//! answers with the read model's position in the `crm-read-position` header; a
//! `min_position` beyond the log's head is refused at once (400). Enum-like values are
//! checked by `one_of` everywhere. Customers here; the pipeline, cases, the service desk
//! and the projections' state in the submodules.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use crm_analytics::score::{ChurnBucket, ScoreOptions};
use crm_core::catalog::personal_fields;
use crm_core::envelope::Position;
use crm_projections::analytics::fit::{self, CustomerAnalytics};
use crm_projections::asof::{Cut, customer_as_of};
use crm_projections::customer360::{self, CustomerFilter};
use crm_projections::timeline::{self, TimelinePage};
use serde::{Deserialize, Serialize};

pub mod analytics;
pub mod analytics_sales;
pub mod campaigns;
pub mod cases;
pub mod consent;
pub mod leads;
pub mod pipeline;
pub mod products;
pub mod projections;
pub mod sales;
pub mod service;
pub mod service_quality;

use crate::app::SharedState;
use crate::disclosure::{disclose, require_personal_data};
use crate::extract::{Caller, Id, Params, at_position, reach_read};
use crate::keys::Role;
use crate::problem::Problem;

const CUSTOMER_360: &str = "customer_360";
const TIMELINE: &str = "customer_timeline";
const PIPELINE: &str = "pipeline";
const BACKLOG: &str = "service_backlog";
const LEADS: &str = "leads";
const CAMPAIGNS: &str = "campaigns";
const CONSENT: &str = crm_projections::consent::NAME;
const SERVICE_QUALITY: &str = crm_projections::service_quality::NAME;
/// Page size when a listing is given no `limit`.
const DEFAULT_PAGE: usize = 50;

/// Appends one tenant-settings event (`event_type` with `data`, the body of a `PUT` on a
/// settings route) through the ingest decision, as `principal`; a refusal of its data is a
/// 422 naming the body's field (`high.resolution_minutes`), not the event's.
pub(crate) async fn append_setting(
    state: &SharedState,
    principal: &crate::keys::Principal,
    what: &str,
    event_type: &str,
    data: serde_json::Value,
) -> Result<crm_core::command::Outcome, Problem> {
    use crm_core::command::{self, CommandError};
    let batch = command::parse::parse_batch(
        &serde_json::json!({"events": [{"type": event_type, "data": data}]}),
        &principal.tenant,
        &principal.key_id,
        None,
        1,
    )
    .map_err(|error| match &error {
        CommandError::Invalid(refusals) => {
            let first = refusals.first();
            let field = first
                .member
                .as_deref()
                .map(|m| m.strip_prefix("data.").unwrap_or(m).to_owned())
                .unwrap_or_default();
            let reason = &first.reason;
            let detail = if field.is_empty() || field == "data" {
                format!("{what}: {reason}")
            } else {
                format!("{what}: {field}: {reason}")
            };
            Problem::unprocessable(detail).with("field", field)
        }
        _ => Problem::from(error),
    })?;
    Ok(command::append(
        state.store.as_ref(),
        &state.streams,
        &principal.tenant,
        &batch,
    )
    .await?)
}

/// Read-your-writes against the log's head as the store records it (so every process
/// agrees): a `min_position` beyond the head can never be reached and is refused at once
/// (400 naming it); one the log holds but the read models have not applied yet is waited
/// for, up to the limit, then 503 with `Retry-After`.
pub(crate) async fn reach_known(
    state: &SharedState,
    tenant: &str,
    names: &[&str],
    min_position: Option<u64>,
) -> Result<Position, Problem> {
    within_head(state, min_position).await?;
    reach_read(state, tenant, names, min_position).await
}

/// Refuses a `min_position` beyond the log's head as the store records it (400 naming it).
pub(crate) async fn within_head(
    state: &SharedState,
    min_position: Option<u64>,
) -> Result<(), Problem> {
    let Some(wanted) = min_position else {
        return Ok(());
    };
    let head = state.store.head_position().await?;
    if wanted > head {
        return Err(Problem::bad_request(format!(
            "query string: min_position={wanted} is beyond the log's head ({head}); pass a \
             position an append answered (last_position)"
        ))
        .with("head_position", head));
    }
    Ok(())
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

/// Refuses a value of an enum-like parameter that is not one of `allowed` (compared
/// exactly, case included): 400 naming the parameter and listing the allowed values, also as
/// the members `parameter` and `allowed`. Every enum-like query value is checked this way.
fn one_of(name: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), Problem> {
    match value {
        Some(value) if !allowed.contains(&value.as_str()) => Err(Problem::bad_request(format!(
            "query string: {name}={value:?} is not one of {}",
            allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with("parameter", name)
        .with("allowed", allowed.to_vec())),
        _ => Ok(()),
    }
}

/// The value of an enum-like parameter from a closed set the domain defines (`all`, each
/// written `text(value)`): `None` when absent, 400 as [`one_of`] when it is none of them.
fn closed_value<T: Copy>(
    name: &str,
    value: &Option<String>,
    all: &[T],
    text: fn(T) -> &'static str,
) -> Result<Option<T>, Problem> {
    let allowed: Vec<&str> = all.iter().map(|v| text(*v)).collect();
    one_of(name, value, &allowed)?;
    Ok(value
        .as_deref()
        .and_then(|value| all.iter().copied().find(|v| text(*v) == value)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerParams {
    /// RFC 3339: fold the events that occurred (business time) by then; figures evaluated
    /// then. At most one of as_of, known_at and position.
    #[param(format = DateTime)]
    as_of: Option<String>,
    /// RFC 3339: fold the events recorded by then.
    #[param(format = DateTime)]
    known_at: Option<String>,
    /// Fold the events up to this log position.
    position: Option<u64>,
    /// RFC 3339: evaluate time-based figures (RFM recency) at this time instead of now.
    #[param(format = DateTime)]
    at: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/customers/{id}`: the 360 view, live or as of a past moment.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    operation_id = "getCustomer",
    tag = "customers",
    summary = "The customer 360 view, live or as of a past moment (role analyst)",
    description = "With `analytics`: per currency the customer bought in, its RFM code and segment, P(alive), expected purchases and churn risk over 90 days, expected average value and CLV over 12 months at 1% a month, evaluated at the view's time under the fit of that time's UTC day (docs/analytics.md), and the fit used.",
    params(crate::extract::IdParam, CustomerParams),
    responses((status = 200, description = "The 360 view.", body = crm_projections::customer360::CustomerView, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
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
        let position = reach_known(
            &state,
            caller.tenant(),
            &[
                CUSTOMER_360,
                TIMELINE,
                sales::ACCOUNTS,
                sales::TASKS,
                CONSENT,
                SERVICE_QUALITY,
            ],
            params.min_position,
        )
        .await?;
        let evaluate_at = at.unwrap_or_else(Utc::now);
        // The view with its read-model members and the stored state it is made from, read
        // together (one statement on PostgreSQL).
        let (mut view, live) =
            customer360::live::live_view(&state.read_db, caller.tenant(), id.as_str(), evaluate_at)
                .await?
                .ok_or_else(|| Problem::not_found(format!("customer {id} not found")))?;
        view.analytics = Some(
            customer_analytics(&state, &principal.tenant, &live, evaluate_at, at.is_none()).await?,
        );
        add_account_summary(&state, &principal.tenant, &mut view, None, evaluate_at).await?;
        let view = disclose(&state, &caller, view).await?;
        return Ok(at_position(position, &view));
    };
    // A past view folds the customer's timeline from the log: the timeline read model must
    // hold every event within the cut.
    let head = state.store.head_position().await?;
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
    let position = reach_known(
        &state,
        caller.tenant(),
        &[
            TIMELINE,
            sales::ACCOUNTS,
            sales::TASKS,
            CONSENT,
            SERVICE_QUALITY,
        ],
        Some(wanted),
    )
    .await?;
    let found = customer_as_of(
        state.store.as_ref(),
        &state.read_db,
        &principal.tenant,
        id.as_str(),
        cut,
    )
    .await?
    .ok_or_else(|| Problem::not_found(format!("customer {id} has no event within the cut")))?;
    let evaluate_at = at.unwrap_or(match cut {
        Cut::OccurredBy(t) | Cut::RecordedBy(t) => t,
        Cut::Position(_) => Utc::now(),
    });
    let mut view = found.view(evaluate_at);
    view.analytics = Some(
        customer_analytics(&state, &principal.tenant, &found.state, evaluate_at, false).await?,
    );
    add_accounts_and_tasks(&state, &principal.tenant, &mut view, cut, evaluate_at).await?;
    let view = disclose(&state, &caller, view).await?;
    Ok(at_position(position, &view))
}

/// The 360 view's issue-18 members at a past `cut`: the account a person is a contact of, a
/// company's contacts and their figures, the consent record, the latest CSAT and NPS answers
/// and the open tasks (folded from their streams). The live view reads its own together
/// (`customer360::live`).
async fn add_accounts_and_tasks(
    state: &SharedState,
    tenant: &crm_core::envelope::TenantId,
    view: &mut customer360::CustomerView,
    cut: Cut,
    at: DateTime<Utc>,
) -> Result<(), Problem> {
    use crm_projections::{accounts, consent, service_quality, tasks};
    let mut ids: Vec<&str> = vec![view.customer_id.as_str()];
    ids.extend(view.merged_ids.iter().map(String::as_str));
    let db = &state.read_db;
    view.consent_record = Some(consent::record(db, tenant.as_str(), &ids, Some(cut)).await?);
    view.satisfaction = Some(service_quality::latest(db, tenant.as_str(), &ids, Some(cut)).await?);
    view.contact_of =
        accounts::account_of(db, tenant.as_str(), &view.customer_id, Some(cut)).await?;
    add_account_summary(state, tenant, view, Some(cut), at).await?;
    let kind = crm_core::catalog::values::TaskSubjectKind::Customer;
    view.open_tasks = Some(
        tasks::open_for_at(
            state.store.as_ref(),
            db,
            tenant,
            kind,
            &view.customer_id,
            cut,
            at,
        )
        .await?,
    );
    Ok(())
}

/// A company's account summary (its contacts and their figures) at `cut` (live when
/// `None`).
async fn add_account_summary(
    state: &SharedState,
    tenant: &crm_core::envelope::TenantId,
    view: &mut customer360::CustomerView,
    cut: Option<Cut>,
    at: DateTime<Utc>,
) -> Result<(), Problem> {
    if view.kind == Some("company") {
        view.account = Some(
            crm_projections::accounts::summary(
                state.store.as_ref(),
                &state.read_db,
                tenant,
                view,
                cut,
                at,
            )
            .await?,
        );
    }
    Ok(())
}

/// The 360 view's analytics member: the customer at `at` under the day's fits, with the
/// default horizon, months and discount (90 days, 12 months, 1% a month). `latest`: `at` is
/// the present, so yesterday's fit may answer while today's is made.
async fn customer_analytics(
    state: &SharedState,
    tenant: &crm_core::envelope::TenantId,
    customer: &customer360::Customer360,
    at: DateTime<Utc>,
    latest: bool,
) -> Result<CustomerAnalytics, Problem> {
    if customer.merged_into.is_some() {
        // Its purchases are its survivor's.
        return Ok(CustomerAnalytics {
            as_of: at,
            lifecycle_stage: crm_projections::analytics::lifecycle::stage(customer, at).name(),
            currencies: Vec::new(),
        });
    }
    Ok(fit::customer_analytics(
        &state.fits,
        &analytics::reader(state),
        &state.read_db,
        tenant,
        customer,
        at,
        latest,
        &ScoreOptions::default(),
    )
    .await?)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomersParams {
    /// Case-insensitive part of the name, email or id, or of the phone number's digits (a
    /// search of 5 digits or more, once spaces, dashes, dots, parentheses and a leading `+`
    /// are taken out); only for keys that read personal data (403 otherwise).
    search: Option<String>,
    /// Customers of this segment.
    segment: Option<String>,
    /// Customers of this owner.
    owner: Option<String>,
    /// `active`, `merged` or `erased`.
    #[param(inline, value_type = Option<CustomerStatus>)]
    status: Option<String>,
    /// Customers whose churn risk in `currency` (required with it), evaluated now under the
    /// day's fit, is `low` (< 0.3), `medium` (0.3 to 0.7) or `high` (≥ 0.7).
    #[param(inline, value_type = Option<ChurnRisk>)]
    churn_risk: Option<String>,
    /// The currency (ISO 4217) of `churn_risk`.
    currency: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// A churn-risk bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a described value set; the query keeps the text
pub enum ChurnRisk {
    Low,
    Medium,
    High,
}

/// A customer's status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a described value set; the query keeps the text
pub enum CustomerStatus {
    Active,
    Merged,
    Erased,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Listing<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_after: Option<String>,
}

/// `GET /v1/customers`: filter and search, by id, in pages.
///
/// `search` matches names, emails and phone numbers (personal data) as well as ids, so a key
/// that does not read personal data may not search at all (403 naming `--personal-data`), not
/// even for an id: whether a search for an email finds a customer would tell that email apart
/// from the others, even with every name and email redacted. A search that reads as a phone
/// number (at least 5 digits once spaces, dashes, dots, parentheses and a leading `+` are
/// taken out) also matches the customers whose phone's digits contain those digits
/// ([`customer360::phone_search`]). Such keys filter by `segment`, `owner`
/// and `status` and page by id.
#[utoipa::path(
    get,
    path = "/v1/customers",
    operation_id = "listCustomers",
    tag = "customers",
    summary = "Customers by id, filtered and searched, in pages (role analyst)",
    params(CustomersParams),
    responses(
        (status = 200, description = "A page of customers.", body = Listing<crm_projections::customer360::CustomerLine>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 422, description = "`churn_risk` in a currency whose fit has no model (too few customers).", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn customers(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<CustomersParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read customers")?;
    if params.search.is_some() {
        require_personal_data(
            principal,
            "searching customers (by name, email, phone or id)",
        )?;
    }
    one_of("status", &params.status, &["active", "merged", "erased"])?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(
        &state,
        caller.tenant(),
        &[CUSTOMER_360],
        params.min_position,
    )
    .await?;
    let bucket = closed_value(
        "churn_risk",
        &params.churn_risk,
        &[ChurnBucket::Low, ChurnBucket::Medium, ChurnBucket::High],
        ChurnBucket::name,
    )?;
    let churn = match (bucket, &params.currency) {
        (Some(bucket), Some(code)) => Some((bucket, analytics::currency(code)?)),
        (Some(_), None) => {
            return Err(Problem::bad_request(
                "query string: churn_risk needs currency (the churn risk is per currency)",
            )
            .with("parameter", "currency"));
        }
        (None, Some(_)) => {
            return Err(Problem::bad_request(
                "query string: currency is only for churn_risk; give churn_risk too",
            )
            .with("parameter", "currency"));
        }
        (None, None) => None,
    };
    let filter = CustomerFilter {
        search: params.search,
        segment: params.segment,
        owner: params.owner,
        status: params.status,
        after: params.after,
        limit,
    };
    let (items, next_after) = match churn {
        None => {
            let items = customer360::list(&state.read_db, caller.tenant(), &filter).await?;
            let next_after = (items.len() == limit)
                .then(|| items.last().map(|c| c.customer_id.clone()))
                .flatten();
            (items, next_after)
        }
        Some((bucket, currency)) => {
            let now = Utc::now();
            let fit = state
                .fits
                .get(
                    &analytics::reader(&state),
                    &state.read_db,
                    &principal.tenant,
                    currency,
                    now,
                    true,
                )
                .await?;
            fit::list_by_churn(
                &state.read_db,
                &principal.tenant,
                &filter,
                currency,
                bucket,
                now,
                &fit,
                &ScoreOptions::default(),
            )
            .await?
        }
    };
    let listing = disclose(&state, &caller, Listing { items, next_after }).await?;
    Ok(at_position(position, &listing))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// Entries after this position (before it with `order=desc`).
    after: Option<u64>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// `asc` (oldest first, the default) or `desc`.
    #[param(inline, value_type = Option<Order>)]
    order: Option<String>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// A page's order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a described value set; the query keeps the text
pub enum Order {
    Asc,
    Desc,
}

#[derive(Serialize, utoipa::ToSchema)]
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

#[derive(Serialize, utoipa::ToSchema)]
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
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/timeline",
    operation_id = "getCustomerTimeline",
    tag = "customers",
    summary = "Every event touching the customer, with its data from the log (roles analyst, auditor)",
    description = "Its streams, deals, cases, converted leads and merged duplicates; personal fields of an erased customer read \"[erased]\".",
    params(crate::extract::IdParam, TimelineParams),
    responses((status = 200, description = "A page of the timeline.", body = Timeline, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn timeline(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<TimelineParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst, Role::Auditor], "read timelines")?;
    one_of("order", &params.order, &["asc", "desc"])?;
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(
        &state,
        caller.tenant(),
        &[TIMELINE, CUSTOMER_360],
        params.min_position,
    )
    .await?;
    let newest_first = params.order.as_deref() == Some("desc");
    let entries = timeline::page(
        &state.read_db,
        caller.tenant(),
        id.as_str(),
        TimelinePage {
            cursor: params.after,
            limit,
            newest_first,
        },
    )
    .await?;
    let customer = customer360::get(&state.read_db, caller.tenant(), id.as_str()).await?;
    if entries.is_empty() && customer.is_none() && params.after.is_none() {
        return Err(Problem::not_found(format!("customer {id} not found")));
    }
    let erased = customer.is_some_and(|c| c.erased_at.is_some());
    let positions: Vec<Position> = entries.iter().map(|e| e.position).collect();
    let events = state
        .store
        .read_positions(&principal.tenant, &positions)
        .await?;
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

impl ConsistencyParams {
    pub(crate) fn min_position(&self) -> Option<u64> {
        self.min_position
    }
}
