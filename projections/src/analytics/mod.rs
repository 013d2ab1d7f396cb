//! Analytics from the log (issue 17, first slice): every customer's BTYD summary in one
//! currency as of a business time, folded from the tenant's log by the 360 view's own fold
//! (so the figures are the 360's `rfm` figures, merges and refunds included), and the reports
//! built on them with `crm-analytics`: RFM scores and segments, and the BG/NBD + Gamma-Gamma
//! fit with each customer's P(alive), expected purchases, churn risk and CLV; customer
//! profitability by revenue decile (the 80/20 curve); cohorts by first-purchase month with
//! retention and revenue month by month. Every report
//! states what it was computed from: tenant, currency, evaluation time, the last log position
//! read and the number of customers. The replay tool calls these; the API will call the same.

pub mod fit;
pub mod funnel;
pub mod lifecycle;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use crm_analytics::bgnbd::{self, FitOptions};
use crm_analytics::score::{ScoreOptions, score_many};
use crm_analytics::{AnalyticsError, Summary, gamma_gamma, rfm};
use crm_core::envelope::{Position, RecordedEvent, TenantId};
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use crm_core::store::{Scope, SharedStore};
use serde::Serialize;

use crate::asof::Cut;
use crate::customer360::World;
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(#[from] ProjectionError),
    #[error("analytics: {0}")]
    Analytics(#[from] AnalyticsError),
    /// Too few customers with purchases for the model.
    #[error("{0}")]
    TooFew(String),
    /// A total does not fit the amounts an answer carries (64-bit minor units).
    #[error("{0}")]
    TooLarge(String),
    /// The stored summaries are not live yet (the 360 read model is being rebuilt to the
    /// version that has them).
    #[error("the stored customer summaries are being built; retry shortly")]
    NotReady,
    /// The work was cancelled (the server is shutting down).
    #[error("the analytics computation was cancelled")]
    Interrupted,
}

/// What a report was computed from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Basis {
    pub tenant: String,
    pub currency: String,
    /// The evaluation time: the events that occurred by then are counted (business time).
    pub as_of: DateTime<Utc>,
    /// The last log position read (the tenant's head when the report was made).
    pub position: Position,
    /// Customers with at least one purchase day in the currency by `as_of`.
    pub customers: usize,
}

impl Basis {
    pub fn new(
        tenant: &TenantId,
        currency: Currency,
        as_of: DateTime<Utc>,
        position: Position,
        customers: usize,
    ) -> Basis {
        Basis {
            tenant: tenant.as_str().to_owned(),
            currency: currency.code().to_owned(),
            as_of,
            position,
            customers,
        }
    }
}

/// One customer's summary (time unit: days; money in the currency's units).
#[derive(Debug, Clone, Serialize)]
pub struct CustomerSummary {
    pub customer_id: String,
    pub frequency: f64,
    pub recency: f64,
    #[serde(rename = "T")]
    pub t: f64,
    pub monetary_value: f64,
}

/// Every customer's summary in `currency` as of `as_of`, from `tenant`'s log in `store` (a
/// store that opens at least no personal field is enough: orders carry none).
pub async fn summaries(
    store: &SharedStore,
    tenant: &TenantId,
    currency: Currency,
    as_of: DateTime<Utc>,
) -> Result<(Basis, Vec<CustomerSummary>), ReportError> {
    let (world, after) = fold(store, tenant, as_of).await?;
    let digits = i32::from(currency.minor_digits());
    let unit = 10f64.powi(digits);
    let mut customers: Vec<CustomerSummary> = world
        .customers
        .values()
        .filter(|customer| customer.merged_into.is_none())
        .filter_map(|customer| {
            let rfm = customer
                .rfm(as_of)
                .into_iter()
                .find(|r| r.currency == currency)?;
            Some(CustomerSummary {
                customer_id: customer.customer_id.clone(),
                frequency: rfm.frequency as f64,
                recency: rfm.recency as f64,
                t: rfm.t as f64,
                monetary_value: rfm.monetary_value.minor_units as f64 / unit,
            })
        })
        // A first purchase after the evaluation day cannot happen (the cut), but a clock
        // skew between occurred_at and the day boundary could give T < 0: left out.
        .filter(|s| s.t >= 0.0)
        .collect();
    customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let basis = Basis::new(tenant, currency, as_of, after, customers.len());
    Ok((basis, customers))
}

/// The tenant's customers folded from its log cut at `as_of` (business time), and the last
/// position read.
pub(crate) async fn fold(
    store: &SharedStore,
    tenant: &TenantId,
    as_of: DateTime<Utc>,
) -> Result<(World, Position), ReportError> {
    let cut = Cut::OccurredBy(as_of);
    let mut world = World::default();
    let after = read_log(store, tenant, |event| {
        if cut.contains(&event) {
            world.apply(&ProjectedEvent::decode(event)?);
        }
        Ok(())
    })
    .await?;
    Ok((world, after))
}

/// Reads `tenant`'s whole log in position order, 5,000 events at a time, handing each event
/// to `visit`; the last position read.
pub(crate) async fn read_log(
    store: &SharedStore,
    tenant: &TenantId,
    mut visit: impl FnMut(RecordedEvent) -> Result<(), ReportError>,
) -> Result<Position, ReportError> {
    let scope = Scope::Tenant(tenant.clone());
    let mut after = 0;
    loop {
        let batch = store
            .read_all(&scope, after, 5_000)
            .await
            .map_err(ProjectionError::from)?;
        let Some(last) = batch.last() else {
            return Ok(after);
        };
        after = last.position;
        for event in batch {
            visit(event)?;
        }
    }
}

pub fn model_input(customers: &[CustomerSummary]) -> Result<Vec<Summary>, ReportError> {
    customers
        .iter()
        .map(|c| Summary::new(c.frequency, c.recency, c.t, c.monetary_value))
        .collect::<Result<_, _>>()
        .map_err(ReportError::from)
}

/// RFM: counts per segment and each customer's scores.
#[derive(Debug, Clone, Serialize)]
pub struct RfmReport {
    #[serde(flatten)]
    pub basis: Basis,
    pub segments: Vec<SegmentCount>,
    pub scores: Vec<CustomerRfm>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentCount {
    pub segment: &'static str,
    pub customers: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerRfm {
    pub customer_id: String,
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub code: u16,
    pub segment: &'static str,
}

/// RFM scores by quintile over the customers with a purchase in `currency` by `as_of`.
pub async fn rfm_report(
    store: &SharedStore,
    tenant: &TenantId,
    currency: Currency,
    as_of: DateTime<Utc>,
) -> Result<RfmReport, ReportError> {
    let (basis, customers) = summaries(store, tenant, currency, as_of).await?;
    let scored = rfm::rfm(&model_input(&customers)?)?;
    Ok(RfmReport {
        basis,
        segments: scored
            .counts
            .iter()
            .map(|(segment, count)| SegmentCount {
                segment: segment.name(),
                customers: *count,
            })
            .collect(),
        scores: customers
            .iter()
            .zip(&scored.scores)
            .map(|(customer, score)| CustomerRfm {
                customer_id: customer.customer_id.clone(),
                r: score.r,
                f: score.f,
                m: score.m,
                code: score.code(),
                segment: score.segment().name(),
            })
            .collect(),
    })
}

/// The fitted models, each customer's figures, and the options they were computed with.
#[derive(Debug, Clone, Serialize)]
pub struct ClvReport {
    #[serde(flatten)]
    pub basis: Basis,
    pub model: Model,
    pub horizon_days: f64,
    pub months: u32,
    pub discount: f64,
    pub scores: Vec<CustomerClv>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Model {
    pub bg_nbd: BgNbdModel,
    pub gamma_gamma: GammaGammaModel,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BgNbdModel {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub log_likelihood: f64,
    pub iterations: usize,
    pub converged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GammaGammaModel {
    pub p: f64,
    pub q: f64,
    pub v: f64,
    pub log_likelihood: f64,
    pub iterations: usize,
    pub converged: bool,
    /// Repeat buyers with a positive average value, the customers it was fitted on.
    pub customers: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerClv {
    pub customer_id: String,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub churn_risk: f64,
    pub churn_bucket: &'static str,
    pub expected_average_value: f64,
    pub clv: f64,
}

/// Customers a fit needs at least (BG/NBD has four parameters, Gamma-Gamma three).
pub const MIN_CUSTOMERS: usize = 10;

/// BG/NBD and Gamma-Gamma fitted by maximum likelihood (no penalizer) on the customers with a
/// purchase in `currency` by `as_of`, and each customer's figures over `horizon_days` and a
/// CLV over `months` at the monthly `discount`.
pub async fn clv_report(
    store: &SharedStore,
    tenant: &TenantId,
    currency: Currency,
    as_of: DateTime<Utc>,
    options: ScoreOptions,
) -> Result<ClvReport, ReportError> {
    let (basis, customers) = summaries(store, tenant, currency, as_of).await?;
    let input = model_input(&customers)?;
    let Fitted { bg, gg, model } = fit_models(&input, &basis)?;
    let figures = score_many(&bg.params, &gg.params, &input, &options)?;
    let scores = customers
        .iter()
        .zip(figures)
        .map(|(customer, figures)| CustomerClv {
            customer_id: customer.customer_id.clone(),
            p_alive: figures.p_alive,
            expected_purchases: figures.expected_purchases,
            churn_risk: figures.churn_risk,
            churn_bucket: figures.churn_bucket.name(),
            expected_average_value: figures.expected_average_value,
            clv: figures.clv,
        })
        .collect();
    Ok(ClvReport {
        basis,
        model,
        horizon_days: options.horizon_days,
        months: options.months,
        discount: options.discount,
        scores,
    })
}

/// Both models fitted on one population.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub bg: bgnbd::BgNbdFit,
    pub gg: gamma_gamma::GammaGammaFit,
    /// The two fits as answers show them.
    pub model: Model,
}

/// BG/NBD and Gamma-Gamma fitted by maximum likelihood (no penalizer) on `input`, the
/// population `basis` describes; [`ReportError::TooFew`] below [`MIN_CUSTOMERS`] customers or
/// repeat buyers.
pub fn fit_models(input: &[Summary], basis: &Basis) -> Result<Fitted, ReportError> {
    let repeat = input
        .iter()
        .filter(|s| s.frequency > 0.0 && s.monetary_value > 0.0)
        .count();
    if input.len() < MIN_CUSTOMERS || repeat < MIN_CUSTOMERS {
        return Err(ReportError::TooFew(format!(
            "{} customers bought in {} by {} ({repeat} of them more than once): the models need \
             at least {MIN_CUSTOMERS} of each",
            input.len(),
            basis.currency,
            basis.as_of.to_rfc3339()
        )));
    }
    let fit_options = FitOptions::default();
    let bg = bgnbd::fit(input, &fit_options)?;
    let gg = gamma_gamma::fit(input, &fit_options)?;
    let model = Model {
        bg_nbd: BgNbdModel {
            r: bg.params.r,
            alpha: bg.params.alpha,
            a: bg.params.a,
            b: bg.params.b,
            log_likelihood: bg.log_likelihood,
            iterations: bg.iterations,
            converged: bg.converged,
        },
        gamma_gamma: GammaGammaModel {
            p: gg.params.p,
            q: gg.params.q,
            v: gg.params.v,
            log_likelihood: gg.log_likelihood,
            iterations: gg.iterations,
            converged: gg.converged,
            customers: gg.customers,
        },
    };
    Ok(Fitted { bg, gg, model })
}

/// Each customer's purchase days in `currency` (net value in minor units), merged customers
/// under their survivor, sorted by customer id.
async fn purchase_days(
    store: &SharedStore,
    tenant: &TenantId,
    currency: Currency,
    as_of: DateTime<Utc>,
) -> Result<(Basis, Vec<(String, Vec<(NaiveDate, i64)>)>), ReportError> {
    let (world, after) = fold(store, tenant, as_of).await?;
    let mut customers: Vec<(String, Vec<(NaiveDate, i64)>)> = world
        .customers
        .values()
        .filter(|customer| customer.merged_into.is_none())
        .filter_map(|customer| {
            let days = customer.purchase_days().remove(&currency)?;
            (!days.is_empty()).then(|| (customer.customer_id.clone(), days))
        })
        .collect();
    customers.sort_by(|a, b| a.0.cmp(&b.0));
    let basis = Basis::new(tenant, currency, as_of, after, customers.len());
    Ok((basis, customers))
}

/// An exact sum of minor units as a decimal amount of `currency`; an error past 64 bits.
fn amount(sum: i128, currency: Currency) -> Result<String, ReportError> {
    i64::try_from(sum)
        .map(|minor| Money::new(minor, currency).to_decimal_string())
        .map_err(|_| {
            ReportError::TooLarge(format!(
                "a revenue total exceeds the largest {} amount an answer carries",
                currency.code()
            ))
        })
}

/// Customer profitability: the share of revenue by customer decile (the 80/20 curve).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfitabilityReport {
    #[serde(flatten)]
    pub basis: Basis,
    /// Net revenue of every customer counted (orders by `as_of`, net of their refunds).
    pub revenue: String,
    /// The share of revenue of the top 20% of customers by revenue.
    pub top_20_percent_share: f64,
    /// Deciles 1 (the top tenth of customers by revenue) to 10.
    pub deciles: Vec<Decile>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Decile {
    pub decile: u8,
    pub customers: usize,
    pub revenue: String,
    /// Of the total revenue (0 when there is none).
    pub share: f64,
    /// Of the total, this decile and those above it.
    pub cumulative_share: f64,
}

/// Customers ranked by net revenue in `currency` by `as_of` (ties by id), split into ten
/// groups of as equal a size as the count allows (customers `⌊i n/10⌋ ..< ⌊(i+1) n/10⌋`).
pub async fn profitability_report(
    store: &SharedStore,
    tenant: &TenantId,
    currency: Currency,
    as_of: DateTime<Utc>,
) -> Result<ProfitabilityReport, ReportError> {
    let (basis, customers) = purchase_days(store, tenant, currency, as_of).await?;
    let mut revenues: Vec<(i128, &str)> = customers
        .iter()
        .map(|(id, days)| (days.iter().map(|(_, v)| i128::from(*v)).sum(), id.as_str()))
        .collect();
    revenues.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let total: i128 = revenues.iter().map(|(r, _)| r).sum();
    let n = revenues.len();
    let share = |part: i128| {
        if total > 0 {
            part as f64 / total as f64
        } else {
            0.0
        }
    };
    let mut deciles = Vec::with_capacity(10);
    let mut cumulative = 0i128;
    for i in 0..10 {
        let (from, to) = (i * n / 10, (i + 1) * n / 10);
        let revenue: i128 = revenues[from..to].iter().map(|(r, _)| r).sum();
        cumulative += revenue;
        deciles.push(Decile {
            decile: i as u8 + 1,
            customers: to - from,
            revenue: amount(revenue, currency)?,
            share: share(revenue),
            cumulative_share: share(cumulative),
        });
    }
    let top = revenues[..(n * 2).div_ceil(10).min(n)]
        .iter()
        .map(|(r, _)| r)
        .sum();
    Ok(ProfitabilityReport {
        basis,
        revenue: amount(total, currency)?,
        top_20_percent_share: share(top),
        deciles,
    })
}

/// Cohorts: customers by the month of their first purchase, and for each month since,
/// how many bought again and what they spent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CohortsReport {
    #[serde(flatten)]
    pub basis: Basis,
    pub cohorts: Vec<Cohort>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Cohort {
    /// The month of the first purchase, `YYYY-MM` (UTC).
    pub cohort: String,
    pub customers: usize,
    /// Month 0 is the cohort's own month; one entry per month up to `as_of`'s.
    pub months: Vec<CohortMonth>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CohortMonth {
    pub months_since: u32,
    /// Customers of the cohort with a purchase day in that month.
    pub active: usize,
    /// `active / customers`.
    pub retention: f64,
    /// Their purchase days' net value in that month.
    pub revenue: String,
}

fn month_index(day: NaiveDate) -> i64 {
    i64::from(day.year()) * 12 + i64::from(day.month0())
}

/// Cohorts by first-purchase month in `currency`, each followed month by month to `as_of`.
pub async fn cohorts_report(
    store: &SharedStore,
    tenant: &TenantId,
    currency: Currency,
    as_of: DateTime<Utc>,
) -> Result<CohortsReport, ReportError> {
    let (basis, customers) = purchase_days(store, tenant, currency, as_of).await?;
    let last = month_index(as_of.date_naive());
    // cohort month → (customers, per month since: (active, revenue))
    let mut cohorts: BTreeMap<i64, (usize, Vec<(usize, i128)>)> = BTreeMap::new();
    for (_, days) in &customers {
        let Some((first, _)) = days.first() else {
            continue;
        };
        let start = month_index(*first);
        let span = usize::try_from(last - start + 1).unwrap_or(0);
        let cohort = cohorts
            .entry(start)
            .or_insert_with(|| (0, vec![(0, 0); span]));
        cohort.0 += 1;
        let mut seen = std::collections::BTreeSet::new();
        for (day, value) in days {
            let Ok(since) = usize::try_from(month_index(*day) - start) else {
                continue;
            };
            let Some(month) = cohort.1.get_mut(since) else {
                continue;
            };
            if seen.insert(since) {
                month.0 += 1;
            }
            month.1 += i128::from(*value);
        }
    }
    let mut out = Vec::with_capacity(cohorts.len());
    for (start, (count, months)) in cohorts {
        let year = start.div_euclid(12);
        let month = start.rem_euclid(12) + 1;
        let months = months
            .into_iter()
            .enumerate()
            .map(|(since, (active, revenue))| {
                Ok(CohortMonth {
                    months_since: since as u32,
                    active,
                    retention: active as f64 / count as f64,
                    revenue: amount(revenue, currency)?,
                })
            })
            .collect::<Result<Vec<_>, ReportError>>()?;
        out.push(Cohort {
            cohort: format!("{year:04}-{month:02}"),
            customers: count,
            months,
        });
    }
    Ok(CohortsReport {
        basis,
        cohorts: out,
    })
}
