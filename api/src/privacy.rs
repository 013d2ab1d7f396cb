//! Erasure routes: `POST /v1/customers/{id}/erase` and `POST /v1/leads/{id}/erase` (admin).
//!
//! The decision is [`crm_core::privacy::erase`] (the replay tool calls it too). Once the
//! erasure event is appended (its keys destroyed in the same transaction), the handler waits
//! for the read models to apply it, then scrubs the key table and the read models' files,
//! so the answer means the personal data is gone from the database files.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_core::privacy::erase::{EraseError, ErasureTarget, erase, scrub_keys};
use crm_projections::all_projections;

use crate::app::SharedState;
use crate::extract::{Caller, Id, at_position, reach};
use crate::keys::Role;
use crate::problem::Problem;

/// `POST /v1/customers/{id}/erase`.
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
    let position = reach(state, &names, erasure.position).await?;
    scrub_keys(&state.private)
        .await
        .map_err(|e| Problem::internal(&e))?;
    state.db.scrub().await.map_err(|e| Problem::internal(&e))?;
    tracing::info!(tenant = %principal.tenant, "subject erased");
    let mut response = at_position(position, &erasure);
    *response.status_mut() = StatusCode::OK;
    Ok(response.into_response())
}
