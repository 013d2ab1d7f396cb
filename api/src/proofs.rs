//! The auditors' proof routes (roles auditor and admin), over the tenant's audit tree
//! (`crm_projections::audit`): `GET /v1/audit/head` (the current signed tree head),
//! `GET /v1/audit/public-key` (what heads are checked with), `GET /v1/audit/inclusion`
//! (an event's inclusion proof, the event as stored and its leaf data) and
//! `GET /v1/audit/consistency` (a later tree extends an earlier one). The decisions live in
//! `crm_projections::audit`; the errors map to answers in `problem.rs`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use crm_core::audit::SignedHead;
use crm_core::envelope::StreamId;
use crm_projections::audit::{ConsistencyProof, InclusionProof};
use serde::{Deserialize, Serialize};

use crate::app::{AppState, SharedState};
use crate::extract::{Caller, Params};
use crate::keys::Role;
use crate::problem::Problem;

const ROLES: &[Role] = &[Role::Auditor];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HeadParams {
    /// Wait (up to the server's --max-wait-ms) until the tree covers this log position, as an
    /// append answered it (`last_position`); 503 with `position` if it does not in time.
    min_position: Option<u64>,
}

/// `GET /v1/audit/head`.
#[utoipa::path(
    get,
    path = "/v1/audit/head",
    operation_id = "getSignedHead",
    tag = "audit",
    summary = "The tenant's signed tree head (role auditor)",
    description = "The tenant's RFC 9162 Merkle tree over its events in log order, as the tree worker has built it: its size, its root hash and the time, signed with the server's Ed25519 key. Keep heads outside the database (or let `serve --publish-heads` write them): a later store is checked against them with `crm-replay audit verify --head`. 503 when the server was started without a signing key (PostgreSQL needs --signing-key-file or CRM_SIGNING_KEY).",
    params(HeadParams),
    responses((status = 200, description = "The signed head.", body = SignedHead))
)]
pub async fn head(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<HeadParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(ROLES, "read the signed tree head")?;
    let signer = signer(&state)?;
    crate::queries::within_head(&state, params.min_position).await?;
    covered(&state, params.min_position).await?;
    let head = crm_projections::audit::signed_head(&state.db, signer, &principal.tenant).await?;
    Ok(Json(head).into_response())
}

/// The public key in the forms auditors use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicKeyDocument {
    /// `Ed25519`.
    algorithm: &'static str,
    /// The first 16 hex digits of SHA-256 of the raw key; heads name it as `key_id`.
    key_id: String,
    /// The raw 32-byte key, base64.
    public_key: String,
    /// The key as PEM (SubjectPublicKeyInfo), for `openssl pkeyutl -verify -pubin`.
    pem: String,
}

/// `GET /v1/audit/public-key`.
#[utoipa::path(
    get,
    path = "/v1/audit/public-key",
    operation_id = "getPublicKey",
    tag = "audit",
    summary = "The key signed heads are checked with (role auditor)",
    description = "Compare it with the one `crm-replay audit public-key` prints on the server's machine, and keep it with your heads: a head checks only under the key you trust.",
    responses((status = 200, description = "The public key.", body = PublicKeyDocument))
)]
pub async fn public_key(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Response, Problem> {
    caller.require(ROLES, "read the head-signing public key")?;
    let public = signer(&state)?.public();
    let pem = public.pem().map_err(|e| Problem::internal(&e))?;
    Ok(Json(PublicKeyDocument {
        algorithm: "Ed25519",
        key_id: public.key_id(),
        public_key: public.base64(),
        pem,
    })
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The event's stream, e.g. `customer-c-42`.
    stream: String,
    /// The event's revision in its stream (from 0).
    #[param(minimum = 0)]
    revision: u64,
    /// The tree size to prove inclusion in (a signed head's `tree_size`); the current tree
    /// when absent.
    #[param(minimum = 1)]
    tree_size: Option<u64>,
}

/// `GET /v1/audit/inclusion`.
#[utoipa::path(
    get,
    path = "/v1/audit/inclusion",
    operation_id = "getInclusionProof",
    tag = "audit",
    summary = "An event's inclusion proof in the tenant's tree (role auditor)",
    description = "RFC 9162 §2.1.3: the event's leaf index, its audit path and the root of the tree of `tree_size` leaves; the event as stored (personal fields sealed, as at rest) and its leaf data, from which the leaf hash is recomputed. Verify it against a signed head of the same `tree_size` (`crm-replay audit check-proof`, or RFC 9162's algorithm).",
    params(InclusionParams),
    responses(
        (status = 200, description = "The proof.", body = InclusionProof),
        (status = 404, description = "No event at that revision of that stream.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn inclusion(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<InclusionParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(ROLES, "read inclusion proofs")?;
    let stream = StreamId::parse(&params.stream).map_err(|e| {
        Problem::bad_request(format!("query string: stream={:?}: {e}", params.stream))
            .with("parameter", "stream")
    })?;
    if params.tree_size == Some(0) {
        return Err(Problem::bad_request(
            "query string: tree_size=0: the empty tree includes no event",
        )
        .with("parameter", "tree_size"));
    }
    let proof = crm_projections::audit::inclusion(
        &state.db,
        state.private.inner(),
        &principal.tenant,
        &stream,
        params.revision,
        params.tree_size,
    )
    .await?;
    Ok(Json(proof).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The earlier tree size (a signed head's `tree_size`), at least 1.
    #[param(minimum = 1)]
    from: u64,
    /// The later tree size; the current tree when absent.
    #[param(minimum = 1)]
    to: Option<u64>,
}

/// `GET /v1/audit/consistency`.
#[utoipa::path(
    get,
    path = "/v1/audit/consistency",
    operation_id = "getConsistencyProof",
    tag = "audit",
    summary = "Proof that the later tree extends the earlier one (role auditor)",
    description = "RFC 9162 §2.1.4: the nodes that show the tenant's tree of `to` leaves extends the tree of `from` leaves, unchanged, with both roots. Verify it against two signed heads (`crm-replay audit check-proof`).",
    params(ConsistencyParams),
    responses((status = 200, description = "The proof.", body = ConsistencyProof))
)]
pub async fn consistency(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(ROLES, "read consistency proofs")?;
    let proof =
        crm_projections::audit::consistency(&state.db, &principal.tenant, params.from, params.to)
            .await?;
    Ok(Json(proof).into_response())
}

fn signer(state: &AppState) -> Result<&crm_core::audit::HeadSigner, Problem> {
    state.signer.as_deref().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "this server has no head-signing key: start `crm-api serve` with \
             --signing-key-file FILE or CRM_SIGNING_KEY (see docs/audit.md)",
        )
    })
}

/// Waits until the tree covers `min_position` (503 naming where it is on timeout).
async fn covered(state: &AppState, min_position: Option<u64>) -> Result<(), Problem> {
    let Some(wanted) = min_position else {
        return Ok(());
    };
    let deadline = Instant::now() + state.limits.max_wait;
    loop {
        let at = crm_projections::audit::covered(&state.db).await?;
        if at >= wanted {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Problem::unavailable(format!(
                "the audit tree covers position {at}, not yet min_position={wanted}; retry"
            ))
            .with("position", at));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
