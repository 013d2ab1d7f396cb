//! `POST /v1/events`: a batch of events as emitters send them, judged whole by the ingest
//! decision of `crm_core::command` (the one `crm-replay import` also calls), then appended
//! atomically (one transaction over every stream it touches) or not at all.
//!
//! This handler only reads the request (role, `Idempotency-Key`, the JSON body), counts, and
//! answers: 201 with each event's stream, revision and position (200 when every event was a
//! duplicate), or the refusal as problem+json (`events[i].member: reason`; see
//! [`crate::problem`] for the statuses).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_core::command::parse::parse_batch;
use crm_core::command::{self, CommandError, Outcome};

pub use crm_core::command::StreamCache;

use crate::app::{AppState, SharedState};
use crate::extract::{Caller, read_json};
use crate::keys::Role;
use crate::problem::Problem;

/// `POST /v1/events`.
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "appendEvents",
    tag = "events",
    summary = "Append a batch of events, validated whole and appended atomically (role ingest)",
    description = "The stream follows from the type and the entity id in `data`. The batch is judged whole (schema, expected revisions, the entity's rules given the log and the batch so far), then appended in one transaction or not at all. Ids are idempotency keys within a stream: a replayed batch answers 200 with every event `duplicate: true`.",
    params(("Idempotency-Key" = Option<String>, Header, description = "Derives the ids of events sent without one (1 to 200 printable ASCII characters).")),
    request_body(content = crate::openapi::EventBatch),
    responses(
        (status = 201, description = "Appended.", body = Outcome, headers(("crm-last-position" = u64, description = "`last_position`: pass it as `min_position` to read your writes"))),
        (status = 200, description = "Every event was a duplicate of one already stored.", body = Outcome),
        (status = 409, description = "Conflict: an expected revision, a rule of the entity, or an id reused with other content; `event_index` names the event. A campaign member refused for its consent also carries `consent` (customer, channel, purpose, status, regime).", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub async fn append(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Ingest], "append events")?;
    let idempotency_key = idempotency_key(&headers)?;
    let value = read_json(&state, body).await?;
    let batch = parse_batch(
        &value,
        &principal.tenant,
        &principal.key_id,
        idempotency_key.as_deref(),
        state.limits.max_batch_events,
    )
    .map_err(|error| match error {
        CommandError::TooManyEvents { count, max } => Problem::too_large(format!(
            "events: the batch has {count} events; at most {max} are accepted per request \
             (--max-batch-events)"
        )),
        other => Problem::from(other),
    })?;
    if principal.role != Role::Admin
        && let Some(index) = batch
            .iter()
            .position(|incoming| matches!(incoming.event.category(), "settings" | "workflow"))
    {
        let event_type = batch[index].event.event_type();
        let also = match event_type {
            "ConsentRegimeSet" => " (or PUT /v1/settings/consent)",
            "SlaTargetsSet" => " (or PUT /v1/service/sla-targets)",
            "BusinessCalendarSet" => " (or PUT /v1/service/calendar)",
            "BusinessCalendarCleared" => " (or DELETE /v1/service/calendar)",
            "ComplaintCategoriesSet" => " (or PUT /v1/settings/complaints)",
            "WorkflowRuleSet" => " (or PUT /v1/workflows/{id})",
            "WorkflowRuleRemoved" => " (or DELETE /v1/workflows/{id})",
            _ => "",
        };
        let what = if batch[index].event.category() == "workflow" {
            "a workflow rule"
        } else {
            "a tenant setting"
        };
        return Err(Problem::forbidden(format!(
            "events[{index}]: a {event_type} changes {what}, which needs a key with role \
             admin{also}"
        )));
    }
    match command::append(
        state.store.as_ref(),
        &state.streams,
        &principal.tenant,
        &batch,
    )
    .await
    {
        Ok(outcome) => Ok(answered(&state, outcome)),
        Err(error) => {
            let problem = Problem::from(error);
            if problem.status == StatusCode::CONFLICT {
                state
                    .metrics
                    .append_conflicts
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(problem)
        }
    }
}

fn answered(state: &AppState, answer: Outcome) -> Response {
    state
        .metrics
        .events_appended
        .fetch_add(answer.appended as u64, Ordering::Relaxed);
    state
        .metrics
        .events_duplicate
        .fetch_add(answer.duplicates as u64, Ordering::Relaxed);
    state.metrics.append_batches.fetch_add(1, Ordering::Relaxed);
    let status = if answer.appended > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let last = answer.last_position;
    let mut response = (status, axum::Json(answer)).into_response();
    if let Ok(value) = HeaderValue::from_str(&last.to_string()) {
        response.headers_mut().insert("crm-last-position", value);
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 200 {
        return Err(Problem::bad_request(
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}
