//! The web console at `/console`: server-rendered pages for analysts and auditors (customers
//! as of any date, timelines with their verification, pipeline, service, analytics,
//! operations), signed in with an API key exchanged for a session cookie ([`session`]).
//!
//! Every page reads through the API's own routes, in-process, as the session's key
//! ([`call::Console::get`]): what a page shows is what the API answers that key. No
//! JavaScript; one embedded stylesheet; charts are SVG drawn on the server ([`charts`]).
//! Every answer carries a Content-Security-Policy that allows nothing but this origin's
//! stylesheet and images, and is never cached.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use serde::Deserialize;

use crate::app::SharedState;
use crate::keys::Refusal;

pub mod call;
pub mod charts;
pub mod layout;
pub mod pages;
pub mod session;

pub use call::{Console, Failure};

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("assets/console.css");

/// The console's routes; `api` is the API's router with its state, which pages call.
pub fn routes(api: Router) -> Router<SharedState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/customers") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/customers") }),
        )
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/customers", get(pages::customers::list))
        .route("/console/customers/{id}", get(pages::customers::customer))
        .route(
            "/console/customers/{id}/timeline",
            get(pages::timeline::timeline),
        )
        .route("/console/proofs", get(pages::timeline::proof))
        .route("/console/pipeline", get(pages::pipeline::pipeline))
        .route("/console/service", get(pages::service::service))
        .route("/console/analytics", get(pages::analytics::analytics))
        .route("/console/operations", get(pages::operations::operations))
        .route(
            "/console/{*rest}",
            get(|| async {
                Failure {
                    status: StatusCode::NOT_FOUND,
                    detail: "the console has no such page".into(),
                }
            }),
        )
        .layer(Extension(call::ApiRouter(api)))
        .layer(axum::middleware::from_fn(secure_headers))
}

/// Whether the request reached us through TLS (a proxy's `X-Forwarded-Proto: https`):
/// cookies are then marked `Secure`.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: with `no-referrer` Chromium sends `Origin: null` on
        // the console's own form posts, which the origin check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Pages carry personal data: never kept by a browser or a proxy.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

fn sign_in_form(error: Option<&str>) -> maud::Markup {
    layout::bare(
        "Sign in",
        html! {
            @if let Some(error) = error { p #error role="alert" { (error) } }
            form #sign-in-form .signin method="post" action="/console/sign-in" {
                label for="key" { "API key" }
                input #key name="key" type="password" autocomplete="off" required
                    aria-describedby="key-help";
                p #key-help .note {
                    "The key's tenant and role decide what the console shows, as in the API. "
                    "The key is exchanged for a session that ends when you sign out, after "
                    (session::LIFETIME.as_secs() / 3600) " hours, or when the key is revoked or expires."
                }
                button #sign-in type="submit" { "Sign in" }
            }
        },
    )
}

async fn sign_in_page() -> maud::Markup {
    sign_in_form(None)
}

#[derive(Debug, Deserialize)]
struct SignIn {
    key: String,
}

/// Refuses a form posted from another origin (a browser always sends `Origin` with a POST).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    host.is_some() && origin_host == host
}

async fn sign_in(
    State(state): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return Failure {
            status: StatusCode::FORBIDDEN,
            detail: "sign-in is only accepted from the console's own page".into(),
        }
        .into_response();
    }
    let Ok(Form(SignIn { key })) = form else {
        return (
            StatusCode::BAD_REQUEST,
            sign_in_form(Some("The form must carry the field key.")),
        )
            .into_response();
    };
    let principal = match state.keys.authenticate(key.trim()).await {
        Ok(Ok(principal)) => principal,
        Ok(Err(refusal)) => {
            let why = match refusal {
                Refusal::Expired => "That key has expired.",
                Refusal::Malformed | Refusal::Invalid => "That key is not valid.",
            };
            return (StatusCode::UNAUTHORIZED, sign_in_form(Some(why))).into_response();
        }
        Err(error) => return Failure::internal(&error).into_response(),
    };
    let token = match session::open(&state.db, &principal.key_id).await {
        Ok(token) => token,
        Err(error) => return Failure::internal(&error).into_response(),
    };
    let mut response = Redirect::to("/console/customers").into_response();
    match session::cookie(&token, behind_tls(&headers)).parse() {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(error) => Failure::internal(&error).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct SignOut {
    csrf: String,
}

async fn sign_out(
    State(state): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<SignOut>, axum::extract::rejection::FormRejection>,
) -> Response {
    let secure = behind_tls(&headers);
    let Some(token) = session::token_in(&headers) else {
        return Redirect::to("/console/sign-in").into_response();
    };
    let found = match session::find(&state.db, &token).await {
        Ok(found) => found,
        Err(error) => return Failure::internal(&error).into_response(),
    };
    if let Some((_, csrf)) = found {
        let presented = form.map(|Form(f)| f.csrf).unwrap_or_default();
        if !same_origin(&headers) || !session::csrf_matches(&csrf, &presented) {
            return Failure {
                status: StatusCode::FORBIDDEN,
                detail: "sign-out is only accepted from the console's own pages".into(),
            }
            .into_response();
        }
        if let Err(error) = session::close(&state.db, &token).await {
            return Failure::internal(&error).into_response();
        }
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    if let Ok(value) = session::removal(secure).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }
}
