//! How a console page reads: [`Console`], the signed-in session of the request, calls the
//! API's own routes in-process as the session's key ([`Console::get`]), so every page sees
//! exactly what the API shows that key: the same role checks, validation, tenant, masking of
//! personal fields and access log. A refusal comes back as a [`Failure`], which renders as a
//! page with the API's status and detail.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use tower::ServiceExt;

use crate::app::SharedState;
use crate::keys::{Principal, Role};

use super::layout;
use super::session::{self, Session};

/// The principal a console request acts as, carried in the extensions of its in-process API
/// calls (see [`crate::extract::Caller`]). Only this process can put it there.
#[derive(Debug, Clone)]
pub struct AsSession(pub Principal);

/// The API's routes with their state, for in-process calls (an extension of the console's
/// routes).
#[derive(Debug, Clone)]
pub struct ApiRouter(pub Router);

/// Largest API answer a page reads (a page asks for bounded pages of data).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A signed-in console request.
#[derive(Debug)]
pub struct Console {
    pub state: SharedState,
    pub session: Session,
    api: Router,
}

impl Console {
    /// The key's principal.
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }

    /// Whether the key's role is admin or one of `roles` (what the API checks).
    pub fn may(&self, roles: &[Role]) -> bool {
        self.session.principal.may(roles)
    }

    /// `GET path_and_query` of the API (e.g. `/v1/pipeline?owner=u-1`) as the session's key:
    /// its JSON answer, or its refusal as a [`Failure`].
    pub async fn get(&self, path_and_query: &str) -> Result<Value, Failure> {
        self.get_at(path_and_query).await.map(|(body, _)| body)
    }

    /// [`Console::get`], with the log position the answer was read at (its
    /// `crm-read-position` header), when it has one.
    pub async fn get_at(&self, path_and_query: &str) -> Result<(Value, Option<u64>), Failure> {
        let request = Request::get(path_and_query)
            .extension(AsSession(self.session.principal.clone()))
            .body(Body::empty())
            .map_err(|e| Failure::internal(&e))?;
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let position = response
            .headers()
            .get(crate::extract::READ_POSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| Failure::internal(&e))?;
        if status.is_success() {
            let body = serde_json::from_slice(&bytes).map_err(|e| Failure::internal(&e))?;
            return Ok((body, position));
        }
        let detail = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("failed").to_owned());
        Err(Failure { status, detail })
    }
}

impl FromRequestParts<SharedState> for Console {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Some(ApiRouter(api)) = parts.extensions.get::<ApiRouter>().cloned() else {
            return Err(
                Failure::internal(&"the console's routes lack the API router").into_response(),
            );
        };
        let secure = super::behind_tls(&parts.headers);
        let Some(token) = session::token_in(&parts.headers) else {
            return Err(to_sign_in(false, secure));
        };
        let found = session::find(&state.db, &token)
            .await
            .map_err(|e| Failure::internal(&e).into_response())?;
        let Some((key_id, csrf)) = found else {
            return Err(to_sign_in(true, secure));
        };
        let principal = state
            .keys
            .principal_of(&key_id)
            .await
            .map_err(|e| Failure::internal(&e).into_response())?;
        let Some(principal) = principal else {
            // The key was revoked or expired: so is the session.
            session::close(&state.db, &token)
                .await
                .map_err(|e| Failure::internal(&e).into_response())?;
            return Err(to_sign_in(true, secure));
        };
        if state.edge.rate.check(&principal.key_id).is_err() {
            return Err(Failure {
                status: StatusCode::TOO_MANY_REQUESTS,
                detail: "this key sent more requests per second than the server allows; \
                         retry later"
                    .into(),
            }
            .into_response());
        }
        Ok(Console {
            state: state.clone(),
            session: Session { principal, csrf },
            api,
        })
    }
}

/// 303 to the sign-in page; `clear`: the cookie names no live session, remove it.
fn to_sign_in(clear: bool, secure: bool) -> Response {
    let mut response = Redirect::to("/console/sign-in").into_response();
    if clear && let Ok(value) = session::removal(secure).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A page that could not be shown: the API's (or the console's) status and detail.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub detail: String,
}

impl Failure {
    /// 500: logs the cause, shows a generic message.
    pub fn internal(error: &dyn std::fmt::Display) -> Failure {
        tracing::error!(%error, "console page failed");
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: "the server failed to answer; the error is logged".into(),
        }
    }

    /// 400 naming what was wrong with the request.
    pub fn bad_request(detail: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }
}

impl From<Infallible> for Failure {
    fn from(never: Infallible) -> Failure {
        match never {}
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/console/sign-in").into_response();
        }
        (self.status, layout::failure(self.status, &self.detail)).into_response()
    }
}
