//! The data subject's rights: erasure (`POST /v1/customers/{id}/erase`,
//! `POST /v1/leads/{id}/erase`, admin) and access and portability
//! (`GET /v1/customers/{id}/personal-data`, see [`personal_data`]).
//!
//! The decision is [`crm_core::privacy::erase`] (the replay tool calls it too). Once the
//! erasure event is appended (its keys destroyed in the same transaction), the handler waits
//! for the read models to apply it, then scrubs the key table and the read models' files,
//! so the answer means the personal data is gone from the database files.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_core::catalog::personal_fields;
use crm_core::envelope::Position;
use crm_core::privacy::ERASED;
use crm_core::privacy::erase::{EraseError, ErasureTarget, erase};
use crm_core::store::MAX_POSITIONS_PER_READ;
use crm_core::store::keys::customer_subject;
use crm_projections::all_projections;
use crm_projections::customer360::{self, fold::Consent};
use crm_projections::timeline::{self, TimelinePage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::SharedState;
use crate::disclosure::{direct_subject, disclose, require_personal_data};
use crate::extract::{Caller, Id, Params, at_position, reach};
use crate::keys::Role;
use crate::problem::Problem;

/// `POST /v1/customers/{id}/erase`.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/erase",
    operation_id = "eraseCustomer",
    tag = "privacy",
    summary = "Erase the customer's personal data (role admin)",
    description = "Destroys its data key (and those of leads converted to it and customers merged into it) and appends CustomerErased in one transaction, waits for the read models, then scrubs the database files. Idempotent: 200 each time, one CustomerErased.",
    params(crate::extract::IdParam),
    responses(
        (status = 200, description = "Erased (now or before: `already_erased`).", body = crm_core::privacy::erase::Erasure, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 409, description = "The subject cannot be erased this way.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub async fn erase_customer(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    run(
        &state,
        &caller,
        ErasureTarget::Customer(id),
        "erase a customer",
    )
    .await
}

/// `POST /v1/leads/{id}/erase`.
#[utoipa::path(
    post,
    path = "/v1/leads/{id}/erase",
    operation_id = "eraseLead",
    tag = "privacy",
    summary = "Erase a lead never converted (role admin)",
    description = "Appends LeadErased with its data key destroyed; otherwise as the customer erasure. A converted lead is erased with its customer (409).",
    params(crate::extract::IdParam),
    responses(
        (status = 200, description = "Erased (now or before: `already_erased`).", body = crm_core::privacy::erase::Erasure, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 409, description = "The lead was converted: erase its customer.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub async fn erase_lead(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    run(&state, &caller, ErasureTarget::Lead(id), "erase a lead").await
}

async fn run(
    state: &SharedState,
    caller: &Caller,
    target: ErasureTarget,
    what: &str,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Admin], what)?;
    let erasure = erase(&state.private, &principal.tenant, &target)
        .await
        .map_err(|error| match error {
            EraseError::NotFound(_) => Problem::not_found(error.to_string()),
            EraseError::LeadConverted { .. } => Problem::conflict(error.to_string()),
            EraseError::Store(error) => {
                tracing::error!(%error, "erasure failed");
                Problem::unavailable(
                    "the store did not complete the erasure; it is safe to run it again",
                )
            }
        })?;
    let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
    let position = reach(state, principal.tenant.as_str(), &names, erasure.position).await?;
    state
        .db
        .scrub_after_erasure(&state.private)
        .await
        .map_err(Problem::from)?;
    tracing::info!(tenant = %principal.tenant, "subject erased");
    let mut response = at_position(position, &erasure);
    *response.status_mut() = StatusCode::OK;
    Ok(response.into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubjectParams {
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// What `GET /v1/customers/{id}/personal-data` answers: everything held about the customer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubjectData {
    pub customer_id: String,
    /// When this document was put together.
    pub generated_at: DateTime<Utc>,
    /// `active`, `merged` or `erased`.
    pub status: &'static str,
    pub profile: Profile,
    /// `"<channel>:<purpose>"` → the latest decision.
    pub consents: BTreeMap<String, Consent>,
    /// Every event touching the customer (its own stream, its cases and deals, leads
    /// converted to it, customers merged into it) that holds personal fields, oldest first.
    pub events: Vec<PersonalEvent>,
}

/// The customer's current profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub kind: Option<String>,
    /// Personal: `"[erased]"` once the customer is erased.
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    pub first_seen_at: Option<DateTime<Utc>>,
    /// Customers merged into this one.
    pub merged_ids: Vec<String>,
    pub merged_into: Option<String>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// The personal fields of one event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonalEvent {
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub stream_id: String,
    pub position: Position,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Whose personal data the fields are: `customer:<id>` (this customer, or one merged into
    /// it) or `lead:<id>` (a lead converted to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Each personal field the event holds (by the catalog), with its value; `"[erased]"`
    /// once erased.
    pub fields: BTreeMap<String, Value>,
}

/// Page size when reading a customer's whole timeline.
const TIMELINE_CHUNK: usize = 10_000;

/// `GET /v1/customers/{id}/personal-data` (analyst or auditor with `--personal-data`, or
/// admin): subject access and portability, as one JSON document. 404 for a customer nothing
/// is held about.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}/personal-data",
    operation_id = "getPersonalData",
    tag = "privacy",
    summary = "Subject access and portability: everything held about the customer (analyst or auditor keys created with --personal-data)",
    description = "Its current profile and consents, and each personal field of each event touching it (its own stream, its cases and deals, leads converted to it, customers merged into it) with the event's id, type, stream, position and times. Fields of an erased customer read \"[erased]\". The read is recorded in the access log.",
    params(crate::extract::IdParam, SubjectParams),
    responses((status = 200, description = "The subject's data.", body = SubjectData, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn personal_data(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<SubjectParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(
        &[Role::Analyst, Role::Auditor],
        "read a subject's personal data",
    )?;
    require_personal_data(principal, "reading a subject's personal data")?;
    let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
    let position =
        crate::queries::reach_known(&state, caller.tenant(), &names, params.min_position).await?;
    let tenant = caller.tenant();
    let internal = |e: &dyn std::fmt::Display| Problem::internal(&e.to_string());
    let customer = customer360::get(&state.read_db, tenant, id.as_str())
        .await
        .map_err(Problem::from)?;
    let mut positions = Vec::new();
    loop {
        let page = timeline::page(
            &state.read_db,
            tenant,
            id.as_str(),
            TimelinePage {
                cursor: positions.last().copied(),
                limit: TIMELINE_CHUNK,
                newest_first: false,
            },
        )
        .await
        .map_err(Problem::from)?;
        let full = page.len() == TIMELINE_CHUNK;
        positions.extend(page.into_iter().map(|entry| entry.position));
        if !full {
            break;
        }
    }
    if customer.is_none() && positions.is_empty() {
        return Err(Problem::not_found(format!("customer {id} not found")));
    }
    let erased = customer.as_ref().is_some_and(|c| c.erased_at.is_some());
    let mut events = Vec::new();
    for chunk in positions.chunks(MAX_POSITIONS_PER_READ) {
        let read = state
            .store
            .read_positions(&principal.tenant, chunk)
            .await
            .map_err(Problem::from)?;
        for event in read {
            let personal = personal_fields(&event.event_type);
            if personal.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(event.data.get()).map_err(|e| internal(&e))?;
            let fields: BTreeMap<String, Value> = personal
                .iter()
                .filter_map(|field| {
                    let value = data.get(*field).filter(|v| !v.is_null())?;
                    let value = if erased {
                        Value::String(ERASED.to_owned())
                    } else {
                        value.clone()
                    };
                    Some(((*field).to_owned(), value))
                })
                .collect();
            if fields.is_empty() {
                continue;
            }
            events.push(PersonalEvent {
                subject: direct_subject(event.stream_id.as_str(), &data)
                    .or_else(|| Some(customer_subject(id.as_str()))),
                event_id: event.event_id,
                event_type: event.event_type,
                stream_id: event.stream_id.as_str().to_owned(),
                position: event.position,
                occurred_at: event.occurred_at,
                recorded_at: event.recorded_at,
                fields,
            });
        }
    }
    events.sort_by_key(|e| e.position);
    let customer = customer.unwrap_or_default();
    let personal = |value: &Option<String>| match erased {
        true => Some(ERASED.to_owned()),
        false => value.clone(),
    };
    let status = if customer.merged_into.is_some() {
        "merged"
    } else if erased {
        "erased"
    } else {
        "active"
    };
    let document = SubjectData {
        customer_id: id.as_str().to_owned(),
        generated_at: Utc::now(),
        status,
        profile: Profile {
            kind: customer
                .kind
                .and_then(|k| serde_json::to_value(k).ok())
                .and_then(|k| k.as_str().map(str::to_owned)),
            name: personal(&customer.name),
            email: personal(&customer.email),
            phone: personal(&customer.phone),
            segment: customer.segment.clone(),
            owner: customer.owner.clone(),
            first_seen_at: customer.first_seen_at,
            merged_ids: customer.merged_ids.iter().cloned().collect(),
            merged_into: customer.merged_into.clone(),
            erased_at: customer.erased_at,
        },
        consents: customer.consent.clone(),
        events,
    };
    let document = disclose(&state, &caller, document).await?;
    Ok(at_position(position, &document))
}
