//! Consent over HTTP (issue 18, item 4): `GET /v1/consent/violations` (analyst, auditor), the
//! marketing contacts made without the consent they needed, and `GET`/`PUT
//! /v1/settings/consent`, the tenant's consent regime (read by analysts and auditors, set by
//! an admin). Setting the regime appends a `ConsentRegimeSet` through the very decision behind
//! `POST /v1/events`, so it is a fact of the log, in force from its position.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_core::catalog::values::{ConsentChannel, ConsentRegime};
use crm_projections::consent::{self, MarketingContact, RegimeInForce, ViolationFilter};
use serde::{Deserialize, Serialize};

use super::{CONSENT, Listing, closed_value, page_size, parse_time, reach_known};
use crate::app::SharedState;
use crate::extract::{Caller, Params, at_position, read_json};
use crate::keys::Role;
use crate::problem::Problem;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ViolationsParams {
    /// RFC 3339: contacts that happened (business time) at or after this time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, after `from`: contacts that happened before this time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Contacts of this customer (the one whose stream logged them).
    customer_id: Option<String>,
    /// Contacts on this consent channel.
    #[param(inline, value_type = Option<ConsentChannel>)]
    channel: Option<String>,
    /// The `next_after` of the previous page (a log position).
    after: Option<u64>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/consent/violations`.
#[utoipa::path(
    get,
    path = "/v1/consent/violations",
    operation_id = "listConsentViolations",
    tag = "consent",
    summary = "Marketing contacts made without the consent they needed, in log order, in pages (role analyst or auditor)",
    description = "An outbound `InteractionLogged` with `purpose: marketing` on a channel a consent governs (email, phone, sms, chat, social) is judged when it is projected: the customer's last marketing decision on that channel recorded before it in the log, under the tenant's consent regime in force then (`opt_in`: never given is a violation; `opt_out`: only withdrawn is). The contact is recorded whatever the consent; later changes never re-judge it.",
    params(ViolationsParams),
    responses(
        (status = 200, description = "A page of violations.", body = super::Listing<MarketingContact>, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A parameter out of its set or range, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn violations(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ViolationsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst, Role::Auditor], "read consent violations")?;
    let channel = closed_value("channel", &params.channel, ConsentChannel::ALL, |c| {
        c.as_str()
    })?;
    let from = params
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(Problem::bad_request("query string: from must be before to"));
    }
    let limit = page_size(&state, params.limit)?;
    let position = reach_known(&state, caller.tenant(), &[CONSENT], params.min_position).await?;
    let items = consent::violations(
        &state.read_db,
        caller.tenant(),
        &ViolationFilter {
            from,
            to,
            customer_id: params.customer_id,
            channel,
            after: params.after,
        },
        limit,
    )
    .await?;
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|contact| contact.position.to_string()))
        .flatten();
    Ok(at_position(position, &Listing { items, next_after }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RegimeParams {
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/settings/consent`.
#[utoipa::path(
    get,
    path = "/v1/settings/consent",
    operation_id = "getConsentRegime",
    tag = "consent",
    summary = "The tenant's consent regime in force and every regime it set (role analyst or auditor)",
    params(RegimeParams),
    responses((status = 200, description = "The regime (`opt_in` until one is set).", body = RegimeInForce, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))))
)]
pub async fn regime(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<RegimeParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst, Role::Auditor], "read the consent regime")?;
    let position = reach_known(&state, caller.tenant(), &[CONSENT], params.min_position).await?;
    let regime = consent::regime(&state.read_db, caller.tenant(), None).await?;
    Ok(at_position(position, &regime))
}

/// The body of `PUT /v1/settings/consent`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRegime {
    pub regime: ConsentRegime,
}

/// What `PUT /v1/settings/consent` recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegimeSetAnswer {
    pub regime: ConsentRegime,
    /// The position of the `ConsentRegimeSet`: the regime is in force after it (pass it as
    /// `min_position` to read it back).
    pub position: u64,
}

/// `PUT /v1/settings/consent`.
#[utoipa::path(
    put,
    path = "/v1/settings/consent",
    operation_id = "setConsentRegime",
    tag = "consent",
    summary = "Set the tenant's consent regime from now on, as a `ConsentRegimeSet` event (role admin)",
    description = "`opt_in`: adding a customer to a campaign with a channel needs its marketing consent granted on that channel; `opt_out`: it needs only that none was withdrawn. The event is appended to `settings-consent`; earlier judgements keep the regime they were made under.",
    request_body(content = SetRegime, description = "`{\"regime\": \"opt_in\"}` or `{\"regime\": \"opt_out\"}`."),
    responses(
        (status = 201, description = "The regime was recorded.", body = RegimeSetAnswer),
        (status = 422, description = "The body is not `{\"regime\": ...}` with a known regime, named.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn set_regime(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let principal = caller.require(&[], "change the consent regime")?;
    let value = read_json(&state, body).await?;
    let wanted: SetRegime = serde_path_to_error::deserialize(value).map_err(|e| {
        Problem::unprocessable(format!("consent regime: {}: {}", e.path(), e.inner()))
            .with("field", e.path().to_string())
    })?;
    let outcome = super::append_setting(
        &state,
        principal,
        "consent regime",
        "ConsentRegimeSet",
        serde_json::json!({"regime": wanted.regime.as_str()}),
    )
    .await?;
    let answer = RegimeSetAnswer {
        regime: wanted.regime,
        position: outcome.last_position,
    };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}
