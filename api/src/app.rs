//! The HTTP application: the router and the state its handlers share. Built here, served by
//! `crm-api serve`, and started on port 0 by the end-to-end tests.
//!
//! Today it answers `GET /healthz` (no key needed: process health, the log's head and each
//! projection's state, nothing about any tenant) and problem+json 404s; the authenticated
//! `/v1` routes come with the HTTP API issue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use crm_core::store::SharedStore;
use crm_projections::runner::{ProjectionStatus, RunState};
use serde::Serialize;
use tokio::sync::watch;

use crate::problem::Problem;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: SharedStore,
    /// The projection workers' statuses, as this process's runner publishes them.
    pub projections: watch::Receiver<Vec<ProjectionStatus>>,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(Arc::new(state))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    head_position: u64,
    projections: Vec<ProjectionHealth>,
}

#[derive(Serialize)]
struct ProjectionHealth {
    name: &'static str,
    state: RunState,
    position: u64,
    lag: u64,
}

/// 200 while the store answers and no projection is failing; 503 with the same body
/// otherwise, so a load balancer can take the instance out.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let head = match state.store.head_position().await {
        Ok(head) => head,
        Err(error) => {
            tracing::warn!(%error, "health check: the store does not answer");
            return Problem::unavailable("the event store does not answer").into_response();
        }
    };
    let projections: Vec<ProjectionHealth> = state
        .projections
        .borrow()
        .iter()
        .map(|s| ProjectionHealth {
            name: s.name,
            state: s.state,
            position: s.position,
            lag: head.saturating_sub(s.position),
        })
        .collect();
    let failing = projections.iter().any(|p| p.state == RunState::Failed);
    let body = Health {
        status: if failing { "degraded" } else { "ok" },
        head_position: head,
        projections,
    };
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}
