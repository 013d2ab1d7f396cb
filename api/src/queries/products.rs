//! `GET /v1/analytics/products` (analyst): the products report of
//! `crm_projections::orders::report` over the order lines read model: top products by revenue
//! and by quantity, and the products bought together (support, confidence, lift), in one
//! currency over a business-time period.

use axum::extract::State;
use axum::response::Response;
use crm_projections::orders::{self, ProductsQuery, ProductsReport};
use serde::Deserialize;

use super::analytics::currency;
use super::{parse_time, reach_known};
use crate::app::SharedState;
use crate::extract::{Caller, Params, at_position};
use crate::keys::Role;
use crate::problem::Problem;

/// Products listed per top list and pairs listed when `limit` is absent.
const DEFAULT_LIMIT: usize = 10;
/// Most products per list.
const MAX_LIMIT: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductsParams {
    /// The currency (ISO 4217) of the orders: money is never summed across currencies.
    currency: String,
    /// RFC 3339: orders placed at or after this business time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, after `from`: orders placed before this business time (the report as it
    /// stood then).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Products per top list and pairs listed, 1 to 1,000; 10 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Pairs bought together in fewer orders are left out; 1 when absent.
    #[param(minimum = 1)]
    min_together: Option<u64>,
    /// Read-your-writes: wait until the read model has applied this position.
    min_position: Option<u64>,
}

/// `GET /v1/analytics/products`.
#[utoipa::path(
    get,
    path = "/v1/analytics/products",
    operation_id = "getProducts",
    tag = "analytics",
    summary = "Top products by revenue and quantity and products bought together, from order lines in one currency over a period (role analyst)",
    description = "Over the orders with lines (OrderPlaced version 2) in `currency` placed in [`from`, `to`): N orders; per product its units, orders and revenue (quantity × unit price, before order discounts and refunds); the pairs of products bought in the same orders with their support count, support, confidence both ways and lift (docs/analytics.md).",
    params(ProductsParams),
    responses(
        (status = 200, description = "The products report.", body = ProductsReport, headers(("crm-read-position" = u64, description = "The log position the answer was read at (the read model's, or the log's head)"))),
        (status = 400, description = "A missing or unknown currency, a time that is not RFC 3339, `from` not before `to`, or a limit out of range; the problem names the parameter.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "A product's revenue exceeds the amounts an answer carries.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn products(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ProductsParams>,
) -> Result<Response, Problem> {
    caller.require(&[Role::Analyst], "read analytics")?;
    let currency = currency(&params.currency)?;
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
        return Err(
            Problem::bad_request("query string: from must be before to").with("parameter", "to")
        );
    }
    let limit = match params.limit {
        None => DEFAULT_LIMIT,
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(limit) => {
            return Err(Problem::bad_request(format!(
                "query string: limit={limit} is out of range; it must be 1 to {MAX_LIMIT}"
            ))
            .with("parameter", "limit"));
        }
    };
    let min_together = match params.min_together {
        None => 1,
        Some(0) => {
            return Err(Problem::bad_request(
                "query string: min_together=0 is out of range; it must be 1 or more",
            )
            .with("parameter", "min_together"));
        }
        Some(n) => n,
    };
    let position = reach_known(
        &state,
        caller.tenant(),
        &[orders::NAME],
        params.min_position,
    )
    .await?;
    let query = ProductsQuery {
        currency,
        from,
        to,
        limit,
        min_together,
    };
    let report = orders::products_report(&state.read_db, caller.tenant(), &query).await?;
    Ok(at_position(position, &report))
}
