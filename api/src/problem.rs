//! Errors as `application/problem+json` (RFC 9457): a status, a short title, and a detail
//! that names what was wrong and where (the field, the query parameter, the event's index in
//! the batch). Every error the service answers goes through [`Problem`]; members beyond the
//! standard ones (such as `position` on a read-your-writes timeout) go in `extensions`.
//! A refused batch carries `errors` (`[{event_index, field, reason}]`, every invalid event
//! up to 100, `errors_not_listed` counting the rest), `invalid_events`, and the first
//! one's `event_index`.
//!
//! Errors of the layers below become answers here, in one place, by exhaustive `From`
//! impls: [`StoreError`], [`ProjectionError`] and the ingest decision's [`CommandError`].
//! A busy or locked database (SQLite `SQLITE_BUSY`/`SQLITE_LOCKED`, PostgreSQL
//! serialization failures, lock or statement timeouts, an exhausted pool) is 503 with
//! `Retry-After`; only a fault of this service or its data is 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crm_automation::webhooks::WebhookError;
use crm_core::command::{CommandError, Refusal};
use crm_core::store::StoreError;
use crm_projections::ProjectionError;
use serde::Serialize;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// One error answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    #[serde(skip)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Extra response headers (e.g. `WWW-Authenticate`, the read position).
    #[serde(skip)]
    pub headers: Vec<(&'static str, String)>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: detail.into(),
            extensions: serde_json::Map::new(),
            headers: Vec::new(),
        }
    }

    /// 400: the request is malformed (bad JSON, bad query parameter, bad id).
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401: no key, or not a valid one.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, detail)
            .with_header("www-authenticate", "Bearer realm=\"crm\"")
    }

    /// 403: a valid key whose role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the request conflicts with the current state (expected revision, a rule).
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    /// 413: the body or the batch is larger than allowed.
    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 422: well-formed JSON whose content is invalid.
    pub fn unprocessable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 429: the key sent more than its rate; retry after `retry_after_secs`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Problem {
        Problem::new(StatusCode::TOO_MANY_REQUESTS, detail)
            .with("retry_after_secs", retry_after_secs)
            .with_header("retry-after", retry_after_secs.to_string())
    }

    /// 408: the request (its body) did not arrive in time.
    pub fn timeout(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::REQUEST_TIMEOUT, detail).with_header("connection", "close")
    }

    /// 503 with `Retry-After`: busy now, retrying may succeed.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header("retry-after", RETRY_AFTER_SECONDS)
    }

    /// 500: logs the cause (never shown to the caller, who gets a generic message).
    pub fn internal(error: &dyn std::fmt::Display) -> Problem {
        tracing::error!(%error, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to answer; the error is logged",
        )
    }

    /// Adds a member to the problem document.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Problem {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Problem {
        self.headers.push((name, value.into()));
        self
    }
}

/// Webhook subscriptions (issue 20): a member at fault is 422 naming it (also as `field`),
/// another tenant's or a deleted subscription 404, the per-tenant limit 409.
impl From<WebhookError> for Problem {
    fn from(error: WebhookError) -> Problem {
        match error {
            WebhookError::Invalid { member, reason } => {
                Problem::unprocessable(format!("webhook: {member}: {reason}")).with("field", member)
            }
            WebhookError::NotFound(id) => {
                Problem::not_found(format!("no webhook subscription {id} for this tenant"))
            }
            WebhookError::Limit(text) => Problem::conflict(text),
            WebhookError::Database(error) => Problem::from(error),
            WebhookError::Store(error) => Problem::from(error),
            error @ (WebhookError::Sealing(_) | WebhookError::Corrupt(_)) => {
                Problem::internal(&error)
            }
        }
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        if error.is_busy() {
            tracing::warn!(%error, "event store busy");
            return Problem::unavailable(
                "the event store is busy; nothing was decided: retry the request (a batch \
                 with the same event ids or Idempotency-Key is safe to retry)",
            );
        }
        match &error {
            StoreError::WrongExpectedRevision { .. }
            | StoreError::EventIdReused { .. }
            | StoreError::SubjectErased { .. } => Problem::conflict(error.to_string()),
            // Busy (above): another writer minted or erased the key meanwhile.
            StoreError::KeyChanged { .. } => Problem::unavailable(error.to_string()),
            StoreError::InvalidInput(_) => Problem::unprocessable(error.to_string()),
            StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Task(_) => {
                tracing::error!(%error, "event store failed");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the event store did not answer; a batch may or may not be stored: retry \
                     it with the same event ids (or Idempotency-Key), which is safe",
                )
            }
            StoreError::Corrupt { .. }
            | StoreError::Config(_)
            | StoreError::Migration(_)
            | StoreError::NotAStore(_)
            | StoreError::NoDatabase { .. }
            | StoreError::GuardsMissing { .. }
            | StoreError::Sealing(_) => Problem::internal(&error),
        }
    }
}

impl From<crm_automation::AutomationError> for Problem {
    fn from(error: crm_automation::AutomationError) -> Problem {
        use crm_automation::AutomationError;
        match error {
            AutomationError::Db(error) => Problem::from(error),
            AutomationError::Store(error) => Problem::from(error),
            AutomationError::Append(_) | AutomationError::Lost => {
                tracing::warn!(%error, "automation busy");
                Problem::unavailable("the automation tables are busy; retry")
            }
        }
    }
}

impl From<ProjectionError> for Problem {
    fn from(error: ProjectionError) -> Problem {
        if error.is_busy() {
            tracing::warn!(%error, "read models busy");
            return Problem::unavailable("the read models are busy; retry the request");
        }
        match error {
            ProjectionError::Store(store) => Problem::from(store),
            error @ ProjectionError::TotalOverflow { .. } => Problem::unprocessable(format!(
                "{error} (92233720368547758.07 in a currency with two decimals)"
            )),
            error @ ProjectionError::UnknownProjection(..) => Problem::not_found(error.to_string()),
            error @ (ProjectionError::Database(_)
            | ProjectionError::Sqlite(_)
            | ProjectionError::Locked(_)
            | ProjectionError::Closed
            | ProjectionError::Decode(_)
            | ProjectionError::Undecodable { .. }
            | ProjectionError::Corrupt { .. }
            | ProjectionError::LostLease(_)
            | ProjectionError::Schema(_)) => Problem::internal(&error),
        }
    }
}

impl From<crm_projections::audit::TreeError> for Problem {
    fn from(error: crm_projections::audit::TreeError) -> Problem {
        use crm_projections::audit::TreeError;
        match error {
            TreeError::Db(error) => Problem::from(error),
            TreeError::Store(error) => Problem::from(error),
            error @ TreeError::NoSuchEvent { .. } => Problem::not_found(error.to_string()),
            error @ TreeError::NotYetInTree { size, .. } => {
                Problem::unavailable(error.to_string()).with("tree_size", size)
            }
            error @ TreeError::SizeBeyond {
                parameter, size, ..
            } => Problem::bad_request(format!("query string: {error}"))
                .with("parameter", parameter)
                .with("tree_size", size),
            error @ TreeError::LeafBeyond { .. } => {
                Problem::bad_request(format!("query string: {error}"))
                    .with("parameter", "tree_size")
            }
            error @ TreeError::BadRange { .. } => {
                Problem::bad_request(format!("query string: {error}")).with("parameter", "from")
            }
            error @ TreeError::Proof(_) => Problem::internal(&error),
        }
    }
}

impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Problem {
        match error {
            CommandError::Invalid(refusals) => {
                let errors: Vec<serde_json::Value> =
                    refusals.listed().iter().map(event_error).collect();
                let mut problem = Problem::unprocessable(refusals.summary())
                    .with("event_index", refusals.first().index)
                    .with("invalid_events", refusals.invalid())
                    .with("errors", errors);
                if refusals.not_listed() > 0 {
                    problem = problem.with("errors_not_listed", refusals.not_listed());
                }
                problem
            }
            CommandError::InvalidBatch(detail) => Problem::unprocessable(detail),
            CommandError::TooManyEvents { .. } => Problem::too_large(error.to_string()),
            CommandError::Conflict(refusal) => Problem::conflict(refusal.in_batch())
                .with("event_index", refusal.index)
                .with("errors", vec![event_error(&refusal)]),
            CommandError::NoConsent { refusal, consent } => Problem::conflict(refusal.in_batch())
                .with("event_index", refusal.index)
                .with("errors", vec![event_error(&refusal)])
                .with(
                    "consent",
                    serde_json::to_value(&consent).unwrap_or_default(),
                ),
            CommandError::Contended { .. } => Problem::conflict(error.to_string()),
            CommandError::Unreadable { .. } => Problem::internal(&error),
            CommandError::Store(store) => Problem::from(store),
        }
    }
}

/// One entry of a refused batch's `errors`: the event's index, the member at fault (`null`
/// when the event as a whole is), and why.
fn event_error(refusal: &Refusal) -> serde_json::Value {
    serde_json::json!({
        "event_index": refusal.index,
        "field": refusal.member,
        "reason": refusal.reason,
    })
}

impl From<crate::keys::Refusal> for Problem {
    /// A refused key: 401, telling the caller no more than which of the three it is.
    fn from(refusal: crate::keys::Refusal) -> Problem {
        use crate::keys::Refusal;
        Problem::unauthorized(match refusal {
            Refusal::Malformed => {
                "the API key is malformed: keys read `crm_<16 hex digits>_<64 hex digits>`"
            }
            Refusal::Invalid => "the API key is not valid (unknown or revoked)",
            Refusal::Expired => "the API key has expired; ask for a new one",
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(flatten)]
    extensions: &'a serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: "about:blank",
            title: &self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            extensions: &self.extensions,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(problem: &Problem) -> Option<&str> {
        problem
            .headers
            .iter()
            .find(|(name, _)| *name == "retry-after")
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn busy_databases_are_503_with_retry_after() {
        let locked = Problem::from(ProjectionError::Locked(std::time::Duration::from_secs(10)));
        assert_eq!(locked.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&locked), Some("1"));
        let changed = Problem::from(StoreError::KeyChanged {
            subject: "customer c-1".into(),
        });
        assert_eq!(changed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&changed), Some("1"));
    }

    #[test]
    fn refusals_keep_their_status_and_name_the_event() {
        use crm_core::command::Refusals;
        let conflict = Problem::from(CommandError::Conflict(Refusal::at(2, "id", "reused")));
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert_eq!(conflict.detail, "events[2].id: reused");
        assert_eq!(conflict.extensions["event_index"], 2);
        assert_eq!(conflict.extensions["errors"][0]["field"], "id");
        let invalid = Problem::from(CommandError::Invalid(Refusals::one(
            Refusal::at(0, "data.amount", "big"),
            3,
        )));
        assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(invalid.detail, "events[0].data.amount: big");
        assert_eq!(
            invalid.extensions["errors"],
            serde_json::json!([{"event_index": 0, "field": "data.amount", "reason": "big"}])
        );
        let overflow = Problem::from(ProjectionError::TotalOverflow {
            what: "the amount of stage Won in EUR".into(),
        });
        assert_eq!(overflow.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(overflow.detail.contains("stage Won"), "{}", overflow.detail);
        let corrupt = Problem::from(StoreError::Corrupt {
            position: 7,
            reason: "bad".into(),
        });
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
