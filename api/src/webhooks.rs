//! Webhook subscriptions over HTTP (issue 20; admin keys only, `docs/automation.md`):
//! `POST`/`GET /v1/webhooks`, `GET`/`PATCH`/`DELETE /v1/webhooks/{id}`,
//! `GET /v1/webhooks/{id}/deliveries` and `POST /v1/webhooks/{id}/replay?from=`. The
//! decisions are `crm_automation::webhooks::manage`'s; the worker `serve` runs delivers. A
//! secret is in the answer of the POST and of a PATCH with `rotate_secret`, never again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_automation::webhooks::manage::{self, WithSecret};
use crm_automation::webhooks::tables::{self, DeliveryLine};
use crm_automation::webhooks::{Subscription, WebhookError};
use crm_core::automation::condition::Condition;
use serde::{Deserialize, Serialize};

use crate::app::SharedState;
use crate::extract::{Caller, Id, Params, read_json};
use crate::problem::Problem;
use crate::queries::page_size;

/// `POST /v1/webhooks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // described: the handler checks the JSON member by member
pub struct WebhookBody {
    /// Where deliveries are POSTed: http or https, no user or password, at most 2,048
    /// characters; only public addresses are dialled.
    url: String,
    /// Event types of the catalog to deliver; empty or absent: every type.
    #[serde(default)]
    event_types: Vec<String>,
    /// Conditions on the event's non-personal fields, all of which must hold.
    #[serde(default)]
    conditions: Vec<Condition>,
    /// Free text, up to 500 characters.
    description: Option<String>,
    /// Deliver personal fields in plain text (each delivery recorded in the access log);
    /// false (the default): they read `"[redacted]"`.
    #[serde(default)]
    personal_data: bool,
}

/// `PATCH /v1/webhooks/{id}`: only the members given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // described: the handler checks the JSON member by member
pub struct WebhookPatchBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    conditions: Option<Vec<Condition>>,
    description: Option<String>,
    /// `active`: re-enable a disabled subscription; it resumes at the message that failed.
    #[schema(example = "active")]
    status: Option<String>,
    /// true: a new signing secret, in this answer only; the old one stops at once.
    rotate_secret: Option<bool>,
}

/// A subscription; `secret` only in the answer that made it.
#[derive(Serialize, utoipa::ToSchema)]
struct WebhookAnswer {
    #[serde(flatten)]
    subscription: Subscription,
    /// `whsec_<base64>`: the signing secret, shown once (creation, rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<WithSecret> for WebhookAnswer {
    fn from(made: WithSecret) -> Self {
        WebhookAnswer {
            subscription: made.subscription,
            secret: made.secret.map(|s| s.as_str().to_owned()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct WebhookList {
    items: Vec<Subscription>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryPage {
    /// Newest first (by first attempt).
    items: Vec<DeliveryLine>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// A deleted subscription.
#[derive(Serialize, utoipa::ToSchema)]
struct Deleted {
    id: String,
    deleted: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// The log position to resend from (inclusive), 1 to the head + 1.
    #[param(minimum = 1)]
    from: u64,
}

const ADMIN: &str = "manage webhook subscriptions";

/// `POST /v1/webhooks`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhook",
    tag = "automation",
    summary = "Subscribe an endpoint to the tenant's events (role admin)",
    description = "Deliveries follow the Standard Webhooks specification (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), one at a time in log order, at least once, retried for 3 days. The subscription starts at the log's head: it receives the events appended from now on (replay to send earlier ones). The answer carries the signing secret, shown this once. 422 naming the member at fault.",
    request_body(content = WebhookBody),
    responses((status = 201, description = "The subscription, with its secret.", body = WebhookAnswer))
)]
pub async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    let value = read_json(&state, body).await?;
    let head = state.store.head_position().await.map_err(Problem::from)?;
    let made = manage::create(
        &state.db,
        state.private.vault().master(),
        caller.tenant(),
        &value,
        head,
    )
    .await?;
    tracing::info!(tenant = caller.tenant(), webhook = %made.subscription.id, "webhook created");
    state.webhooks.nudge();
    Ok((StatusCode::CREATED, axum::Json(WebhookAnswer::from(made))).into_response())
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "listWebhooks",
    tag = "automation",
    summary = "The tenant's webhook subscriptions (role admin)",
    responses((status = 200, description = "Every subscription of the tenant, by id (never a secret).", body = WebhookList))
)]
pub async fn list(State(state): State<SharedState>, caller: Caller) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    let items = tables::list(&state.db, caller.tenant()).await?;
    Ok(axum::Json(WebhookList { items }).into_response())
}

async fn found(state: &SharedState, tenant: &str, id: &str) -> Result<Subscription, Problem> {
    tables::get(&state.db, tenant, id)
        .await?
        .map(|s| s.subscription)
        .ok_or_else(|| WebhookError::NotFound(id.to_owned()).into())
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "getWebhook",
    tag = "automation",
    summary = "One webhook subscription (role admin)",
    params(crate::extract::IdParam),
    responses((status = 200, description = "The subscription (never its secret); 404 if it is not the tenant's.", body = Subscription))
)]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    Ok(axum::Json(found(&state, caller.tenant(), id.as_str()).await?).into_response())
}

/// `PATCH /v1/webhooks/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    operation_id = "updateWebhook",
    tag = "automation",
    summary = "Change a webhook subscription, re-enable it, or rotate its secret (role admin)",
    params(crate::extract::IdParam),
    request_body(content = WebhookPatchBody),
    responses((status = 200, description = "The subscription as it is now; with `secret` after a rotation.", body = WebhookAnswer))
)]
pub async fn update(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    let value = read_json(&state, body).await?;
    let made = manage::patch(
        &state.db,
        state.private.vault().master(),
        caller.tenant(),
        id.as_str(),
        &value,
    )
    .await?;
    tracing::info!(tenant = caller.tenant(), webhook = %id, "webhook changed");
    state.webhooks.nudge();
    Ok(axum::Json(WebhookAnswer::from(made)).into_response())
}

/// `DELETE /v1/webhooks/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "automation",
    summary = "Delete a webhook subscription with its delivery log (role admin)",
    params(crate::extract::IdParam),
    responses((status = 200, description = "Deleted; no more deliveries.", body = Deleted))
)]
pub async fn delete(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    if !tables::delete(&state.db, caller.tenant(), id.as_str()).await? {
        return Err(WebhookError::NotFound(id.as_str().to_owned()).into());
    }
    tracing::info!(tenant = caller.tenant(), webhook = %id, "webhook deleted");
    state.webhooks.nudge();
    Ok(axum::Json(Deleted {
        id: id.as_str().to_owned(),
        deleted: true,
    })
    .into_response())
}

/// `GET /v1/webhooks/{id}/deliveries`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "automation",
    summary = "A subscription's delivery log, newest first, in pages (role admin)",
    description = "One line per message delivered or attempted: position, event id, webhook-id, status (pending, delivered, failed), attempts, the last answer (HTTP status, a short error; never a body), latency, times. Delivered lines are kept 30 days.",
    params(crate::extract::IdParam, DeliveryParams),
    responses((status = 200, description = "A page of the delivery log.", body = DeliveryPage))
)]
pub async fn deliveries(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<DeliveryParams>,
) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    let limit = page_size(&state, params.limit)?;
    let after = match &params.after {
        None => None,
        Some(text) => {
            let parsed = text
                .split_once('_')
                .and_then(|(at, message)| Some((at.parse::<i64>().ok()?, message.to_owned())));
            Some(parsed.ok_or_else(|| {
                Problem::bad_request(format!(
                    "query string: after={text:?} is not a cursor; pass the `next` of the \
                     previous page"
                ))
            })?)
        }
    };
    found(&state, caller.tenant(), id.as_str()).await?;
    let items = tables::deliveries(&state.db, caller.tenant(), id.as_str(), after, limit).await?;
    let next = (items.len() == limit)
        .then(|| items.last())
        .flatten()
        .map(|line| {
            format!(
                "{}_{}",
                line.first_attempt_at.timestamp_micros(),
                line.message_id
            )
        });
    Ok(axum::Json(DeliveryPage { items, next }).into_response())
}

/// `POST /v1/webhooks/{id}/replay?from=POSITION`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    operation_id = "replayWebhook",
    tag = "automation",
    summary = "Resend a subscription's messages from a log position (role admin)",
    description = "Moves the subscription's cursor back to just before `from`: every matching event from there is sent again, in order, with the webhook-id of its first delivery (receivers deduplicate by it).",
    params(crate::extract::IdParam, ReplayParams),
    responses((status = 202, description = "The subscription with its cursor moved back; deliveries follow.", body = Subscription))
)]
pub async fn replay(
    State(state): State<SharedState>,
    caller: Caller,
    Id(id): Id,
    Params(params): Params<ReplayParams>,
) -> Result<Response, Problem> {
    caller.require(&[], ADMIN)?;
    let head = state.store.head_position().await.map_err(Problem::from)?;
    let subscription =
        manage::replay(&state.db, caller.tenant(), id.as_str(), params.from, head).await?;
    tracing::info!(tenant = caller.tenant(), webhook = %id, from = params.from, "webhook replay");
    state.webhooks.nudge();
    Ok((StatusCode::ACCEPTED, axum::Json(subscription)).into_response())
}
