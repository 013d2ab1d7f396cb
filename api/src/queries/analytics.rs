//! `GET /v1/analytics/rfm`, `/clv`, `/profitability` and `/cohorts` (analyst): the reports of
//! `crm_projections::analytics` (the decision `crm-replay analytics` prints), RFM and CLV in
//! pages of customers by id. Every one of them is kept per (tenant, report, currency, evaluation time) and served
//! again while `fit::still_fresh` (nothing appended since, or at most 1% of its customers
//! changed purchases; it states the position it was computed at); a request without `as_of` is
//! evaluated at the start of the current UTC day, so one fit serves a day.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_analytics::score::ScoreOptions;
use crm_core::envelope::TenantId;
use crm_core::money::currency::Currency;
use crm_core::store::SharedStore;
use crm_projections::analytics::fit;
use crm_projections::analytics::lifecycle::LifecycleReport;
use crm_projections::analytics::{
    Basis, ClvReport, CohortsReport, CustomerClv, CustomerRfm, Model, ProfitabilityReport,
    ReportError, RfmReport, SegmentCount, clv_report, cohorts_report, profitability_report,
    rfm_report,
};
use serde::{Deserialize, Serialize};

use super::{page_size, parse_time};
use crate::app::{AppState, SharedState};
use crate::extract::{Caller, Params};
use crate::keys::Role;
use crate::problem::Problem;

/// Reports kept at most (a full cache is emptied, then refilled by use).
const KEPT: usize = 64;

#[derive(Debug, Clone)]
enum Kept {
    Rfm(Arc<RfmReport>),
    Clv(Arc<ClvReport>),
    Profitability(Arc<ProfitabilityReport>),
    Cohorts(Arc<CohortsReport>),
    /// Of every customer, in every currency: kept only while nothing of the tenant was
    /// appended ([`Cache::unchanged`]).
    Lifecycle(Arc<LifecycleReport>),
}

/// Reports computed, by (tenant, report and its options, currency, evaluation time).
#[derive(Debug, Default)]
pub struct Cache {
    reports: Mutex<HashMap<(String, String, String, i64), Kept>>,
}

impl Kept {
    /// The log position the report was computed at and its customers (a report in one
    /// currency).
    fn basis(&self) -> Option<&Basis> {
        match self {
            Kept::Rfm(report) => Some(&report.basis),
            Kept::Clv(report) => Some(&report.basis),
            Kept::Profitability(report) => Some(&report.basis),
            Kept::Cohorts(report) => Some(&report.basis),
            Kept::Lifecycle(_) => None,
        }
    }
}

/// A report in one currency the cache keeps: how it goes in and comes out of [`Kept`].
trait Keepable: Sized {
    fn wrap(report: Arc<Self>) -> Kept;
    fn unwrap(kept: Kept) -> Option<Arc<Self>>;
}

macro_rules! keepable {
    ($($report:ty => $variant:ident),* $(,)?) => {$(
        impl Keepable for $report {
            fn wrap(report: Arc<Self>) -> Kept {
                Kept::$variant(report)
            }
            fn unwrap(kept: Kept) -> Option<Arc<Self>> {
                match kept {
                    Kept::$variant(report) => Some(report),
                    _ => None,
                }
            }
        }
    )*};
}

keepable!(
    RfmReport => Rfm,
    ClvReport => Clv,
    ProfitabilityReport => Profitability,
    CohortsReport => Cohorts,
);

impl Cache {
    /// The report kept for `key`, while it is still fresh (`fit::still_fresh`: nothing
    /// appended since, or at most 1% of its customers changed purchases).
    async fn fresh(
        &self,
        key: &(String, String, String, i64),
        state: &AppState,
        tenant: &TenantId,
        currency: Currency,
    ) -> Result<Option<Kept>, Problem> {
        let kept = self.reports.lock().ok().and_then(|r| r.get(key).cloned());
        let Some(kept) = kept else {
            return Ok(None);
        };
        let Some(basis) = kept.basis() else {
            return Ok(None);
        };
        let fresh = fit::still_fresh(
            &reader(state),
            &state.read_db,
            tenant,
            currency,
            basis.position,
            basis.customers,
        )
        .await?;
        Ok(fresh.then_some(kept))
    }

    /// The lifecycle report kept for `key`, while nothing of `tenant` was appended since it
    /// was made.
    pub(crate) async fn lifecycle(
        &self,
        key: &(String, String, String, i64),
        state: &AppState,
        tenant: &TenantId,
    ) -> Result<Option<Arc<LifecycleReport>>, Problem> {
        let kept = self.reports.lock().ok().and_then(|r| r.get(key).cloned());
        let Some(Kept::Lifecycle(report)) = kept else {
            return Ok(None);
        };
        let unchanged = fit::unchanged_since(&reader(state), tenant, report.position).await?;
        Ok(unchanged.then_some(report))
    }

    pub(crate) fn put_lifecycle(
        &self,
        key: (String, String, String, i64),
        report: Arc<LifecycleReport>,
    ) {
        self.put(key, Kept::Lifecycle(report));
    }

    /// The report `kind` of `tenant` in `currency` at `as_of` kept while still fresh
    /// ([`Cache::fresh`]), else the one `make` computes, then kept.
    async fn kept_or<T: Keepable>(
        &self,
        state: &AppState,
        tenant: &TenantId,
        kind: String,
        currency: Currency,
        as_of: DateTime<Utc>,
        make: impl std::future::Future<Output = Result<T, ReportError>>,
    ) -> Result<Arc<T>, Problem> {
        let key = (
            tenant.as_str().to_owned(),
            kind,
            currency.code().to_owned(),
            as_of.timestamp_micros(),
        );
        if let Some(report) = self
            .fresh(&key, state, tenant, currency)
            .await?
            .and_then(T::unwrap)
        {
            return Ok(report);
        }
        let report = Arc::new(make.await?);
        self.put(key, T::wrap(report.clone()));
        Ok(report)
    }

    fn put(&self, key: (String, String, String, i64), report: Kept) {
        if let Ok(mut reports) = self.reports.lock() {
            if reports.len() >= KEPT {
                reports.clear();
            }
            reports.insert(key, report);
        }
    }
}

/// The log as the read models read it: orders carry no personal field, none is opened.
pub(crate) fn reader(state: &AppState) -> SharedStore {
    Arc::new(
        state
            .private
            .clone()
            .opening_only(crm_projections::PERSONAL_FIELDS_READ),
    )
}

impl From<ReportError> for Problem {
    fn from(error: ReportError) -> Problem {
        match error {
            ReportError::Read(error) => Problem::from(error),
            error @ (ReportError::TooFew(_)
            | ReportError::TooLarge(_)
            | ReportError::Analytics(_)) => Problem::unprocessable(error.to_string()),
            error @ (ReportError::NotReady | ReportError::Interrupted) => {
                Problem::unavailable(error.to_string())
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RfmParams {
    /// The currency (ISO 4217): money is never summed across currencies.
    currency: String,
    /// RFC 3339: evaluate as of this time (business time); the start of the current UTC day
    /// when absent.
    #[param(format = DateTime)]
    as_of: Option<String>,
    /// The `next_after` of the previous page (a customer id).
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClvParams {
    /// The currency (ISO 4217).
    currency: String,
    /// RFC 3339: evaluate and fit as of this time (business time); the start of the current
    /// UTC day when absent.
    #[param(format = DateTime)]
    as_of: Option<String>,
    /// Horizon of the expected purchases and the churn risk, in days (default 90).
    #[param(minimum = 1, maximum = 36500)]
    horizon_days: Option<u32>,
    /// Months the CLV covers (default 12).
    #[param(minimum = 1, maximum = 600)]
    months: Option<u32>,
    /// Monthly discount rate of the CLV, at least 0 and below 1 (default 0.01).
    #[param(minimum = 0)]
    discount: Option<f64>,
    /// The `next_after` of the previous page (a customer id).
    after: Option<String>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
}

pub(crate) fn currency(value: &str) -> Result<Currency, Problem> {
    Currency::parse(value).map_err(|e| {
        Problem::bad_request(format!("query string: currency={value:?}: {e}"))
            .with("parameter", "currency")
    })
}

pub(crate) fn as_of(value: &Option<String>) -> Result<DateTime<Utc>, Problem> {
    match value {
        Some(text) => parse_time("as_of", text),
        None => Ok(Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()),
    }
}

/// One page of `items` (sorted by customer id) after `after`.
fn page<T: Clone>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    after: &Option<String>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let start = match after {
        Some(after) => items.partition_point(|item| id(item) <= after.as_str()),
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let next = (end < items.len() && end > start).then(|| id(&items[end - 1]).to_owned());
    (items[start..end].to_vec(), next)
}

/// RFM over the tenant's customers with a purchase in the currency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RfmPage {
    #[serde(flatten)]
    basis: Basis,
    /// Every segment with its number of customers (all pages).
    segments: Vec<SegmentCount>,
    /// This page's customers, by id.
    items: Vec<CustomerRfm>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

/// `GET /v1/analytics/rfm`.
#[utoipa::path(
    get,
    path = "/v1/analytics/rfm",
    operation_id = "getRfm",
    tag = "analytics",
    summary = "RFM scores and segments from the log, as of any time (role analyst)",
    description = "R, F and M scored 1-5 by rank-based quintile over the customers with a purchase in the currency by `as_of`, the three-digit code and the named segment (docs/analytics.md), with the count per segment. The answer states its basis: tenant, currency, `as_of`, the last log position read and the number of customers.",
    params(RfmParams),
    responses(
        (status = 200, description = "The segments and a page of customers.", body = RfmPage),
        (status = 422, description = "The report cannot be computed from these customers.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn rfm(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<RfmParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read analytics")?;
    let currency = currency(&params.currency)?;
    let as_of = as_of(&params.as_of)?;
    let limit = page_size(&state, params.limit)?;
    let tenant = principal.tenant.clone();
    let store = reader(&state);
    let report = state
        .analytics
        .kept_or(
            &state,
            &tenant,
            "rfm".to_owned(),
            currency,
            as_of,
            rfm_report(&store, &tenant, currency, as_of),
        )
        .await?;
    let (items, next_after) = page(&report.scores, |s| &s.customer_id, &params.after, limit);
    Ok(Json(RfmPage {
        basis: report.basis.clone(),
        segments: report.segments.clone(),
        items,
        next_after,
    })
    .into_response())
}

/// The fitted models and a page of customers' figures.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClvPage {
    #[serde(flatten)]
    basis: Basis,
    model: Model,
    horizon_days: f64,
    months: u32,
    discount: f64,
    /// This page's customers, by id.
    items: Vec<CustomerClv>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

/// `GET /v1/analytics/clv`.
#[utoipa::path(
    get,
    path = "/v1/analytics/clv",
    operation_id = "getClv",
    tag = "analytics",
    summary = "Lifetime value and churn risk: BG/NBD + Gamma-Gamma fitted on the log as of any time (role analyst)",
    description = "BG/NBD and Gamma-Gamma fitted by maximum likelihood on the customers with a purchase in the currency by `as_of` (docs/analytics.md), and each customer's P(alive), expected purchases and churn risk over `horizon_days`, expected average value and CLV over `months` at the monthly `discount`. The report is kept per tenant, currency, `as_of` and options while at most 1% of its customers changed purchases since its `position` (docs/analytics.md). 422 when fewer than 10 customers, or 10 repeat buyers, bought in the currency.",
    params(ClvParams),
    responses(
        (status = 200, description = "The models and a page of customers.", body = ClvPage),
        (status = 422, description = "Too few customers for the models, or a fit that cannot be made.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn clv(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<ClvParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read analytics")?;
    let currency = currency(&params.currency)?;
    let as_of = as_of(&params.as_of)?;
    let limit = page_size(&state, params.limit)?;
    let defaults = ScoreOptions::default();
    let options = ScoreOptions::checked(
        params.horizon_days.map_or(defaults.horizon_days, f64::from),
        params.months.unwrap_or(defaults.months),
        params.discount.unwrap_or(defaults.discount),
    )
    .map_err(|e| {
        Problem::bad_request(format!("query string: {e}")).with("parameter", e.parameter)
    })?;
    let tenant = principal.tenant.clone();
    let kind = format!(
        "clv:{}:{}:{}",
        options.horizon_days, options.months, options.discount
    );
    let store = reader(&state);
    let report = state
        .analytics
        .kept_or(
            &state,
            &tenant,
            kind,
            currency,
            as_of,
            clv_report(&store, &tenant, currency, as_of, options),
        )
        .await?;
    let (items, next_after) = page(&report.scores, |s| &s.customer_id, &params.after, limit);
    Ok(Json(ClvPage {
        basis: report.basis.clone(),
        model: report.model.clone(),
        horizon_days: report.horizon_days,
        months: report.months,
        discount: report.discount,
        items,
        next_after,
    })
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BasisParams {
    /// The currency (ISO 4217): money is never summed across currencies.
    currency: String,
    /// RFC 3339: evaluate as of this time (business time); the start of the current UTC day
    /// when absent.
    #[param(format = DateTime)]
    as_of: Option<String>,
}

/// `GET /v1/analytics/profitability`.
#[utoipa::path(
    get,
    path = "/v1/analytics/profitability",
    operation_id = "getProfitability",
    tag = "analytics",
    summary = "Customer profitability: the share of revenue by customer decile, the 80/20 curve (role analyst)",
    description = "Customers with a purchase in the currency by `as_of`, ranked by net revenue (orders net of their refunds) and split into ten groups: each decile's customers, revenue, share and cumulative share, and the top 20%'s share. The report is kept per tenant, currency and `as_of` while at most 1% of its customers changed purchases since its `position`.",
    params(BasisParams),
    responses(
        (status = 200, description = "The deciles.", body = ProfitabilityReport),
        (status = 422, description = "A total exceeds the amounts an answer carries.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn profitability(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<BasisParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read analytics")?;
    let currency = currency(&params.currency)?;
    let as_of = as_of(&params.as_of)?;
    let tenant = principal.tenant.clone();
    let store = reader(&state);
    let report = state
        .analytics
        .kept_or(
            &state,
            &tenant,
            "profitability".to_owned(),
            currency,
            as_of,
            profitability_report(&store, &tenant, currency, as_of),
        )
        .await?;
    Ok(Json(report.as_ref()).into_response())
}

/// `GET /v1/analytics/cohorts`.
#[utoipa::path(
    get,
    path = "/v1/analytics/cohorts",
    operation_id = "getCohorts",
    tag = "analytics",
    summary = "Cohorts by month of first purchase: retention and revenue month by month (role analyst)",
    description = "Customers grouped by the UTC month of their first purchase day in the currency; for each month since, up to `as_of`'s month, how many of them had a purchase day (retention) and the net value of those days. The report is kept per tenant, currency and `as_of` while at most 1% of its customers changed purchases since its `position`.",
    params(BasisParams),
    responses(
        (status = 200, description = "The cohorts.", body = CohortsReport),
        (status = 422, description = "A total exceeds the amounts an answer carries.", body = crate::openapi::ProblemDocument, content_type = "application/problem+json")
    )
)]
pub async fn cohorts(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<BasisParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Analyst], "read analytics")?;
    let currency = currency(&params.currency)?;
    let as_of = as_of(&params.as_of)?;
    let tenant = principal.tenant.clone();
    let store = reader(&state);
    let report = state
        .analytics
        .kept_or(
            &state,
            &tenant,
            "cohorts".to_owned(),
            currency,
            as_of,
            cohorts_report(&store, &tenant, currency, as_of),
        )
        .await?;
    Ok(Json(report.as_ref()).into_response())
}
