//! The log itself, for downstream consumers and auditors: pages of the tenant's events with
//! their full envelopes (`GET /v1/events`), the same as server-sent events that go on live
//! (`GET /v1/events/live`), and hash-chain verification (`GET /v1/verify`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use crm_core::envelope::{Position, RecordedEvent, StreamId};
use crm_core::store::{self, Scope, subscribe_all};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::app::SharedState;
use crate::disclosure::disclose_events;
use crate::edge::streams::until_revoked;
use crate::extract::{Caller, Params, at_position, reach_head};
use crate::keys::Role;
use crate::problem::Problem;
use crate::queries::page_size;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Events with positions above this one (0, the default, is the start of the log).
    after: Option<u64>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Wait until the log holds this position (read-your-writes).
    min_position: Option<u64>,
}

/// A page of the log.
#[derive(Serialize, utoipa::ToSchema)]
struct EventsPage {
    events: Vec<RecordedEvent>,
    /// Pass as `after` for the next page (the last position returned, or `after` itself).
    next_after: Position,
    /// The log's head when the page was read.
    head_position: Position,
}

/// `GET /v1/events?after=&limit=`: the tenant's events in position order, full envelopes.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "listEvents",
    tag = "events",
    summary = "The tenant's events in log order, with full envelopes (role analyst)",
    description = "Personal fields read \"[redacted]\" unless the key reads personal data.",
    params(EventsParams),
    responses((status = 200, description = "A page of the log.", body = EventsPage, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn events(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<EventsParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read the log")?;
    let limit = page_size(&state, params.limit)?;
    let after = params.after.unwrap_or(0);
    crate::queries::within_head(&state, params.min_position).await?;
    reach_head(&state, params.min_position).await?;
    let head_position = state.store.head_position().await.map_err(Problem::from)?;
    let events = state
        .store
        .read_all(&Scope::Tenant(principal.tenant.clone()), after, limit)
        .await
        .map_err(Problem::from)?;
    let next_after = events.last().map_or(after, |e| e.position);
    let events = disclose_events(&state, &caller, events).await?;
    Ok(at_position(
        head_position,
        &EventsPage {
            events,
            next_after,
            head_position,
        },
    ))
}

/// One message of the live stream, as the OpenAPI document describes it.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // described, never built: [`sse_event`] writes the message
struct LiveEvent {
    /// The event's log position (send it back as `Last-Event-ID`).
    id: String,
    /// The event's type.
    event: String,
    /// The event's envelope (a RecordedEvent) as JSON.
    #[schema(content_media_type = "application/json")]
    data: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveParams {
    /// Start after this position; the `Last-Event-ID` header, when sent, wins.
    after: Option<u64>,
}

/// `GET /v1/events/live?after=N`: server-sent events, one per log event (`id` is its position,
/// `event` its type, `data` its full envelope as JSON), from `after` on and then live. A client
/// that reconnects with `Last-Event-ID` resumes exactly after the last event it received. A key
/// holds at most `--live-streams-per-key` open (429 beyond); a stream ends once its key is
/// revoked (within the key-cache period) or the server stops.
#[utoipa::path(
    get,
    path = "/v1/events/live",
    operation_id = "streamEvents",
    tag = "events",
    summary = "Server-sent events: each log event from `after` (or Last-Event-ID), then live (role analyst)",
    description = "Each event is an SSE message: `id` is its position, `event` its type, `data` its envelope (a RecordedEvent) as JSON. Reconnect with `Last-Event-ID` to resume exactly after the last event received.",
    params(LiveParams, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (wins over `after`).")),
    responses((status = 200, description = "An endless text/event-stream: one message per event, then a comment every 15 s to keep the connection open.", body = LiveEvent, content_type = "text/event-stream"))
)]
pub async fn live(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    Params(params): Params<LiveParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read the log")?;
    let slot = state.edge.live.acquire(&principal.key_id)?;
    let key_id = principal.key_id.clone();
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<Position>().ok())
            .ok_or_else(|| {
                Problem::bad_request("Last-Event-ID must be a log position (an integer)")
            })?,
        None => params.after.unwrap_or(0),
    };
    let subscription = subscribe_all(
        state.store.clone(),
        Scope::Tenant(principal.tenant.clone()),
        after,
    )
    .with_batch_size(500);
    let mut closing = state.closing.subscribe();
    let watched = state.clone();
    // A batch at a time: its personal fields redacted, or its subjects recorded in the access
    // log (one insert per batch), before any of it is sent.
    let batches = futures::stream::unfold(
        (subscription, state.clone(), caller),
        |(mut subscription, state, caller)| async move {
            let events = match subscription.next_batch().await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "live event stream ended by a store error");
                    return None;
                }
            };
            match disclose_events(&state, &caller, events).await {
                Ok(events) => Some((events, (subscription, state, caller))),
                Err(problem) => {
                    tracing::warn!(detail = %problem.detail, "live event stream ended");
                    None
                }
            }
        },
    );
    let stream = batches
        .flat_map(|events| {
            futures::stream::iter(events.into_iter().map(|event| Ok(sse_event(&event))))
        })
        .take_until(async move {
            // The stream holds its key's slot until it ends; it ends at shutdown or once its
            // key is revoked.
            let _slot = slot;
            tokio::select! {
                _ = closing.wait_for(|closing| *closing) => {}
                () = until_revoked(&watched, &key_id) => {}
            }
        });
    Ok(sse(stream).into_response())
}

fn sse(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn sse_event(event: &RecordedEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_default();
    Event::default()
        .id(event.position.to_string())
        .event(event.event_type.as_str())
        .data(data)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// Check only this stream, e.g. `customer-c-1`.
    stream: Option<String>,
    /// Wait until the log holds this position.
    min_position: Option<u64>,
}

/// What `GET /v1/verify` answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Verification {
    /// Every checked chain verifies.
    intact: bool,
    events_checked: u64,
    streams_checked: u64,
    /// The first broken place, when one is found.
    first_failure: Option<crm_core::store::Finding>,
}

/// `GET /v1/verify[?stream=S]`: checks the tenant's hash chains (or one stream's) against the
/// recorded stream heads; `intact` is false and `first_failure` names the first broken event
/// otherwise.
#[utoipa::path(
    get,
    path = "/v1/verify",
    operation_id = "verifyLog",
    tag = "audit",
    summary = "Verify the tenant's hash chains, or one stream's; names the first broken event (role auditor)",
    params(VerifyParams),
    responses((status = 200, description = "The verification's result.", body = Verification, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn verify_log(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<VerifyParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Auditor], "verify the log")?;
    crate::queries::within_head(&state, params.min_position).await?;
    let head = reach_head(&state, params.min_position).await?;
    let stream = params
        .stream
        .as_deref()
        .map(StreamId::parse)
        .transpose()
        .map_err(|e| Problem::bad_request(format!("query string: stream: {e}")))?;
    let report = store::verify_log(
        state.private.inner().as_ref(),
        &Scope::Tenant(principal.tenant.clone()),
        stream.as_ref(),
    )
    .await
    .map_err(Problem::from)?;
    if report.streams_checked == 0
        && let Some(stream) = &params.stream
    {
        return Err(Problem::not_found(format!(
            "no stream {stream} in this tenant: nothing to verify"
        )));
    }
    Ok(at_position(
        head,
        &Verification {
            intact: report.is_intact(),
            events_checked: report.events_checked,
            streams_checked: report.streams_checked,
            first_failure: report.first_failure,
        },
    ))
}
