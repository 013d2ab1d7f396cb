//! The fit of a day: BG/NBD + Gamma-Gamma and the RFM population of one tenant and currency
//! at the start of a UTC day, made once and kept ([`Fits`]), so the 360 view and the churn
//! filter score customers without refitting. Every answer names the fit it used.
//!
//! **Population.** The customers' summaries at the evaluation time E come from the stored
//! summaries (`customer360::summary`) when the live 360 generation has them: a row changed at
//! or before E is exact at E (the stored = folded invariant); the customers whose purchases
//! changed after E (today's buyers) are refolded from the log cut at E, with the customers
//! merged into them since. When more than [`PATCH_SHARE`] of the rows (and more than
//! [`PATCH_MIN`]) changed after E, or the stored summaries are not live yet, the whole log is
//! folded instead, as the reports do.
//!
//! **Refit.** A kept fit is refitted (in the background, the old one answering meanwhile)
//! when it is no longer [`still_fresh`]: more than [`REFIT_SHARE`] of its population's
//! customers changed purchases since the position it was made at (or events are not projected
//! yet), checked at most every [`CHECK_EVERY`]. When a new day starts, the
//! previous day's fit answers while the new day's is made, so only the very first request of
//! a tenant and currency waits for a fit.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crm_analytics::rfm::Population;
use crm_analytics::score::{ScoreOptions, score, score_many};
use crm_core::envelope::TenantId;
use crm_core::money::currency::Currency;
use crm_core::store::SharedStore;
use serde::Serialize;

use super::{
    Basis, CustomerSummary, Fitted, Model, ReportError, fit_models, model_input, summaries,
};
use crate::asof::{Cut, customer_as_of};
use crate::customer360::{self, Customer360, summary};
use crate::db::ReadDb;

/// Refit when more than this share of the fitted customers changed purchases since.
pub const REFIT_SHARE: f64 = 0.01;
/// How often a kept fit is checked against the stored summaries.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Fold the whole log rather than refold more than this share of the stored rows...
pub const PATCH_SHARE: f64 = 0.05;
/// ...unless they are this few.
pub const PATCH_MIN: usize = 1_000;
/// Stored rows read per statement.
const CHUNK: usize = 10_000;
/// Fits kept at most (the oldest evaluation days go first).
const KEPT: usize = 64;

/// Where a fit's population came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The stored summaries (with the customers changed after E refolded from the log).
    Stored,
    /// The tenant's whole log, folded.
    Log,
}

/// One tenant's fit for one currency at one evaluation time.
#[derive(Debug)]
pub struct DayFit {
    pub basis: Basis,
    pub source: Source,
    pub rfm: Population,
    /// The models, or why there are none (too few customers, a fit that cannot be made).
    pub models: Result<Fitted, String>,
}

/// Whether a fit or report of `tenant` in `currency` made at log `position` over `customers`
/// customers may still answer: nothing of the tenant was appended since, or the 360 read model
/// has projected everything appended and at most [`REFIT_SHARE`] of the customers changed
/// purchases since `position` (events that change no purchase change no fit).
pub async fn still_fresh(
    store: &SharedStore,
    db: &ReadDb,
    tenant: &TenantId,
    currency: Currency,
    position: u64,
    customers: usize,
) -> Result<bool, ReportError> {
    if !appended_after(store, tenant, position).await? {
        return Ok(true);
    }
    let Some((mut tx, checkpoint)) = summary::snapshot(db).await? else {
        return Ok(false);
    };
    if appended_after(store, tenant, checkpoint).await? {
        // Not projected yet: what changed cannot be told.
        tx.rollback().await?;
        return Ok(false);
    }
    let changed = summary::changed_since(&mut tx, tenant.as_str(), currency, position).await?;
    tx.rollback().await?;
    Ok(changed as f64 <= REFIT_SHARE * customers.max(1) as f64)
}

/// Whether nothing of `tenant` was appended after `position`: a report of all its customers
/// (the lifecycle) made at `position` still answers exactly.
pub async fn unchanged_since(
    store: &SharedStore,
    tenant: &TenantId,
    position: u64,
) -> Result<bool, ReportError> {
    Ok(!appended_after(store, tenant, position).await?)
}

/// Whether `tenant` has an event after `position`.
async fn appended_after(
    store: &SharedStore,
    tenant: &TenantId,
    position: u64,
) -> Result<bool, ReportError> {
    let next = store
        .read_all(&crm_core::store::Scope::Tenant(tenant.clone()), position, 1)
        .await
        .map_err(crate::error::ProjectionError::from)?;
    Ok(!next.is_empty())
}

/// Which fit an answer used.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FitUsed {
    /// The population's evaluation time (the start of a UTC day).
    pub as_of: DateTime<Utc>,
    /// The last log position the population was read at.
    pub position: u64,
    /// Customers in the population.
    pub customers: usize,
    pub source: Source,
    /// The fitted models; absent when they could not be made (`unavailable` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl DayFit {
    pub fn used(&self) -> FitUsed {
        FitUsed {
            as_of: self.basis.as_of,
            position: self.basis.position,
            customers: self.basis.customers,
            source: self.source,
            model: self.models.as_ref().ok().map(|f| f.model.clone()),
            unavailable: self.models.as_ref().err().cloned(),
        }
    }
}

/// The start of `at`'s UTC day: the evaluation time of the fit that serves `at`.
pub fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

/// Every customer's summary in `currency` at `at`, from the stored summaries where they
/// answer exactly (module docs), else from the log.
pub async fn population(
    store: &SharedStore,
    db: &ReadDb,
    tenant: &TenantId,
    currency: Currency,
    at: DateTime<Utc>,
) -> Result<(Basis, Vec<CustomerSummary>, Source), ReportError> {
    if let Some((basis, customers)) = stored_population(store, db, tenant, currency, at).await? {
        return Ok((basis, customers, Source::Stored));
    }
    let (basis, customers) = summaries(store, tenant, currency, at).await?;
    Ok((basis, customers, Source::Log))
}

async fn stored_population(
    store: &SharedStore,
    db: &ReadDb,
    tenant: &TenantId,
    currency: Currency,
    at: DateTime<Utc>,
) -> Result<Option<(Basis, Vec<CustomerSummary>)>, ReportError> {
    let Some((mut tx, position)) = summary::snapshot(db).await? else {
        return Ok(None);
    };
    let unit = 10f64.powi(i32::from(currency.minor_digits()));
    let mut customers = Vec::new();
    let mut changed = BTreeSet::new();
    let mut rows = 0usize;
    let mut after: Option<String> = None;
    loop {
        let page =
            summary::page(&mut tx, tenant.as_str(), currency, after.as_deref(), CHUNK).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.customer_id.clone());
        rows += page.len();
        for row in page {
            if row.changed_at > at {
                changed.insert(row.customer_id);
            } else if row.bought() {
                let (recency, t) = row.recency_and_t(at);
                if t >= 0 {
                    customers.push(CustomerSummary {
                        customer_id: row.customer_id,
                        frequency: row.frequency as f64,
                        recency: recency as f64,
                        t: t as f64,
                        monetary_value: row.monetary_minor as f64 / unit,
                    });
                }
            }
        }
    }
    tx.rollback().await.map_err(ReportError::Read)?;
    if changed.len() > PATCH_MIN && changed.len() as f64 > PATCH_SHARE * rows as f64 {
        return Ok(None);
    }
    // The customers changed after `at`, and those merged into them since, as they were then.
    let mut candidates = BTreeSet::new();
    for id in &changed {
        if let Some(live) = customer360::get(db, tenant.as_str(), id).await? {
            candidates.extend(live.merged_ids.iter().cloned());
        }
        candidates.insert(id.clone());
    }
    for id in candidates {
        let Some(then) =
            customer_as_of(store.as_ref(), db, tenant, &id, Cut::OccurredBy(at)).await?
        else {
            continue;
        };
        if then.state.merged_into.is_some() {
            continue;
        }
        if let Some(rfm) = then
            .state
            .rfm(at)
            .into_iter()
            .find(|r| r.currency == currency && r.t >= 0)
        {
            customers.push(CustomerSummary {
                customer_id: id,
                frequency: rfm.frequency as f64,
                recency: rfm.recency as f64,
                t: rfm.t as f64,
                monetary_value: rfm.monetary_value.minor_units as f64 / unit,
            });
        }
    }
    customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    customers.dedup_by(|a, b| a.customer_id == b.customer_id);
    let basis = Basis::new(tenant, currency, at, position, customers.len());
    Ok(Some((basis, customers)))
}

/// Fits the population of `tenant` in `currency` at `at` (the CPU-bound part runs off the
/// async workers).
pub async fn fit_day(
    store: &SharedStore,
    db: &ReadDb,
    tenant: &TenantId,
    currency: Currency,
    at: DateTime<Utc>,
) -> Result<DayFit, ReportError> {
    let (basis, customers, source) = population(store, db, tenant, currency, at).await?;
    let work = move || -> Result<DayFit, ReportError> {
        let input = model_input(&customers)?;
        let rfm = Population::new(&input)?;
        let models = match fit_models(&input, &basis) {
            Ok(fitted) => Ok(fitted),
            Err(error @ (ReportError::TooFew(_) | ReportError::Analytics(_))) => {
                Err(error.to_string())
            }
            Err(other) => return Err(other),
        };
        Ok(DayFit {
            basis,
            source,
            rfm,
            models,
        })
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(ReportError::Interrupted),
        },
    }
}

/// One customer's analytics in one currency under a day's fit.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CurrencyAnalytics {
    pub currency: String,
    /// The three-digit RFM code, ranked among the fit's population.
    pub rfm_code: u16,
    pub rfm_segment: &'static str,
    /// The model's figures (absent when the fit has no model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_alive: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_purchases: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_risk: Option<f64>,
    /// `low`, `medium` or `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_bucket: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_average_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clv: Option<f64>,
    /// The fit these figures come from.
    pub fit: FitUsed,
}

/// `customer`'s figures in `fit`'s currency evaluated at `at` (its summary then, scored with
/// the fit's models and ranked among its population); `None` without a purchase day in that
/// currency by `at`'s date.
pub fn customer_figures(
    customer: &Customer360,
    at: DateTime<Utc>,
    fit: &DayFit,
    currency: Currency,
    options: &ScoreOptions,
) -> Result<Option<CurrencyAnalytics>, ReportError> {
    let Some(rfm) = customer
        .rfm(at)
        .into_iter()
        .find(|r| r.currency == currency && r.t >= 0)
    else {
        return Ok(None);
    };
    let unit = 10f64.powi(i32::from(currency.minor_digits()));
    let input = crm_analytics::Summary::new(
        rfm.frequency as f64,
        rfm.recency as f64,
        rfm.t as f64,
        rfm.monetary_value.minor_units as f64 / unit,
    )?;
    let code = fit.rfm.score(&input);
    let mut used = fit.used();
    let figures = match &fit.models {
        Ok(fitted) => match score(&fitted.bg.params, &fitted.gg.params, &input, options) {
            Ok(figures) => Some(figures),
            Err(error) => {
                used.unavailable = Some(format!("this customer's figures: {error}"));
                None
            }
        },
        Err(_) => None,
    };
    Ok(Some(CurrencyAnalytics {
        currency: currency.code().to_owned(),
        rfm_code: code.code(),
        rfm_segment: code.segment().name(),
        p_alive: figures.map(|f| f.p_alive),
        expected_purchases: figures.map(|f| f.expected_purchases),
        churn_risk: figures.map(|f| f.churn_risk),
        churn_bucket: figures.map(|f| f.churn_bucket.name()),
        expected_average_value: figures.map(|f| f.expected_average_value),
        clv: figures.map(|f| f.clv),
        fit: used,
    }))
}

/// A customer's analytics on the 360 view (issue 17): evaluated at `as_of`, per currency it
/// bought in, each under the fit of its tenant and currency for `as_of`'s day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CustomerAnalytics {
    /// The evaluation time.
    pub as_of: DateTime<Utc>,
    /// `lead`, `new`, `active`, `at_risk`, `lapsed` or `won_back` at `as_of`
    /// (`analytics::lifecycle`).
    pub lifecycle_stage: &'static str,
    /// One entry per currency with a purchase day by `as_of`.
    pub currencies: Vec<CurrencyAnalytics>,
}

/// The analytics member of `customer`'s 360 view at `at`, with the day's fits from `fits`.
#[allow(clippy::too_many_arguments)]
pub async fn customer_analytics(
    fits: &Arc<Fits>,
    store: &SharedStore,
    db: &ReadDb,
    tenant: &TenantId,
    customer: &Customer360,
    at: DateTime<Utc>,
    latest: bool,
    options: &ScoreOptions,
) -> Result<CustomerAnalytics, ReportError> {
    let mut currencies = Vec::new();
    for rfm in customer.rfm(at) {
        if rfm.t < 0 {
            continue;
        }
        let fit = fits
            .get(store, db, tenant, rfm.currency, at, latest)
            .await?;
        if let Some(figures) = customer_figures(customer, at, &fit, rfm.currency, options)? {
            currencies.push(figures);
        }
    }
    Ok(CustomerAnalytics {
        as_of: at,
        lifecycle_stage: super::lifecycle::stage(customer, at).name(),
        currencies,
    })
}

/// Scores every customer of `tenant` with a stored summary in `currency`, evaluated at
/// `at` under `fit`, a chunk of rows at a time (memory stays flat): `visit` gets each
/// customer's id and figures, by id. Stored rows are taken as they are (a purchase dated
/// after `at` counts). Returns the customers scored; an error when the stored summaries are
/// not live or the fit has no model.
pub async fn score_stored(
    db: &ReadDb,
    tenant: &TenantId,
    currency: Currency,
    at: DateTime<Utc>,
    fit: &DayFit,
    options: &ScoreOptions,
    mut visit: impl FnMut(&str, &crm_analytics::score::CustomerScore),
) -> Result<usize, ReportError> {
    let fitted = fit
        .models
        .as_ref()
        .map_err(|why| ReportError::TooFew(why.clone()))?;
    let Some((mut tx, _)) = summary::snapshot(db).await? else {
        return Err(ReportError::NotReady);
    };
    let unit = 10f64.powi(i32::from(currency.minor_digits()));
    let mut scored = 0;
    let mut after: Option<String> = None;
    loop {
        let page =
            summary::page(&mut tx, tenant.as_str(), currency, after.as_deref(), CHUNK).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.customer_id.clone());
        let mut ids = Vec::with_capacity(page.len());
        let mut inputs = Vec::with_capacity(page.len());
        for row in page {
            if let Some(input) = stored_input(&row, at, unit)? {
                ids.push(row.customer_id);
                inputs.push(input);
            }
        }
        let (bg, gg, options) = (fitted.bg.params, fitted.gg.params, *options);
        let figures = tokio::task::spawn_blocking(move || score_many(&bg, &gg, &inputs, &options))
            .await
            .map_err(|_| ReportError::Interrupted)??;
        for (id, figures) in ids.iter().zip(&figures) {
            visit(id, figures);
        }
        scored += figures.len();
    }
    tx.rollback().await?;
    Ok(scored)
}

/// A stored row's summary at `at`, if the customer bought by `at`'s date.
fn stored_input(
    row: &summary::StoredSummary,
    at: DateTime<Utc>,
    unit: f64,
) -> Result<Option<crm_analytics::Summary>, ReportError> {
    if !row.bought() {
        return Ok(None);
    }
    let (recency, t) = row.recency_and_t(at);
    if t < 0 {
        return Ok(None);
    }
    Ok(Some(crm_analytics::Summary::new(
        row.frequency as f64,
        recency as f64,
        t as f64,
        row.monetary_minor as f64 / unit,
    )?))
}

/// Customers listed by `filter` whose churn risk in `currency` at `at` under `fit` falls in
/// `bucket`, up to `filter.limit`, and the `after` of the next page. The listing is read a
/// chunk at a time and each chunk's stored summaries scored, until the page is full.
#[allow(clippy::too_many_arguments)]
pub async fn list_by_churn(
    db: &ReadDb,
    tenant: &TenantId,
    filter: &customer360::CustomerFilter,
    currency: Currency,
    bucket: crm_analytics::score::ChurnBucket,
    at: DateTime<Utc>,
    fit: &DayFit,
    options: &ScoreOptions,
) -> Result<(Vec<customer360::CustomerLine>, Option<String>), ReportError> {
    let fitted = fit.models.as_ref().map_err(|why| {
        ReportError::TooFew(format!("churn risk needs the {currency} models: {why}"))
    })?;
    let unit = 10f64.powi(i32::from(currency.minor_digits()));
    let mut out = Vec::new();
    let mut cursor = filter.after.clone();
    loop {
        let lines = customer360::list(
            db,
            tenant.as_str(),
            &customer360::CustomerFilter {
                after: cursor.clone(),
                limit: LIST_CHUNK,
                ..filter.clone()
            },
        )
        .await?;
        let Some(last) = lines.last() else {
            return Ok((out, None));
        };
        cursor = Some(last.customer_id.clone());
        let full_chunk = lines.len() == LIST_CHUNK;
        let Some((mut tx, _)) = summary::snapshot(db).await? else {
            return Err(ReportError::NotReady);
        };
        let ids: BTreeSet<String> = lines.iter().map(|l| l.customer_id.clone()).collect();
        let rows: HashMap<String, summary::StoredSummary> =
            summary::of_customers(&mut tx, tenant.as_str(), currency, &ids)
                .await?
                .into_iter()
                .map(|row| (row.customer_id.clone(), row))
                .collect();
        tx.rollback().await?;
        for line in lines {
            let Some(input) = rows
                .get(&line.customer_id)
                .map(|row| stored_input(row, at, unit))
                .transpose()?
                .flatten()
            else {
                continue;
            };
            let risk = fitted.bg.params.churn_risk(options.horizon_days, &input)?;
            if crm_analytics::score::ChurnBucket::of(risk) == bucket {
                out.push(line);
                if out.len() == filter.limit {
                    let next = out.last().map(|l| l.customer_id.clone());
                    return Ok((out, next));
                }
            }
        }
        if !full_chunk {
            return Ok((out, None));
        }
    }
}

/// Customers listed per chunk by [`list_by_churn`].
const LIST_CHUNK: usize = 1_000;

type Key = (String, Currency, i64);

/// One kept fit and the work around it.
#[derive(Debug, Default)]
struct Slot {
    fit: RwLock<Option<Arc<DayFit>>>,
    /// Held while the fit is made, so concurrent first requests make it once.
    making: tokio::sync::Mutex<()>,
    refitting: AtomicBool,
    checked: Mutex<Option<Instant>>,
}

impl Slot {
    fn current(&self) -> Option<Arc<DayFit>> {
        self.fit.read().ok().and_then(|f| f.clone())
    }

    fn set(&self, fit: Arc<DayFit>) {
        if let Ok(mut slot) = self.fit.write() {
            *slot = Some(fit);
        }
    }
}

/// Fits kept per (tenant, currency, evaluation time), shared by every request of a process.
#[derive(Debug, Default)]
pub struct Fits {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

impl Fits {
    fn slot(&self, key: &Key, create: bool) -> Option<Arc<Slot>> {
        let mut slots = self.slots.lock().ok()?;
        if let Some(slot) = slots.get(key) {
            return Some(slot.clone());
        }
        if !create {
            return None;
        }
        if slots.len() >= KEPT {
            let mut days: Vec<i64> = slots.keys().map(|k| k.2).collect();
            days.sort_unstable();
            let cut = days[days.len() / 4];
            slots.retain(|k, _| k.2 > cut);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key.clone(), slot.clone());
        Some(slot)
    }

    /// The fit serving `at` for `tenant` in `currency`: the one made at the start of `at`'s
    /// UTC day. When `latest` (the caller evaluates at the present) and that day has no fit
    /// yet but the day before has, the day before's answers while the new one is made.
    pub async fn get(
        self: &Arc<Self>,
        store: &SharedStore,
        db: &ReadDb,
        tenant: &TenantId,
        currency: Currency,
        at: DateTime<Utc>,
        latest: bool,
    ) -> Result<Arc<DayFit>, ReportError> {
        let day = day_start(at);
        let key = (tenant.as_str().to_owned(), currency, day.timestamp_micros());
        let Some(slot) = self.slot(&key, true) else {
            return fit_day(store, db, tenant, currency, day)
                .await
                .map(Arc::new);
        };
        if let Some(fit) = slot.current() {
            self.refresh(&slot, store, db, tenant, currency, &fit)
                .await?;
            return Ok(fit);
        }
        if latest {
            let before = (
                key.0.clone(),
                currency,
                (day - chrono::Duration::days(1)).timestamp_micros(),
            );
            if let Some(previous) = self.slot(&before, false).and_then(|s| s.current()) {
                self.spawn_fit(slot, store, db, tenant, currency, day);
                return Ok(previous);
            }
        }
        let _making = slot.making.lock().await;
        if let Some(fit) = slot.current() {
            return Ok(fit);
        }
        let fit = Arc::new(fit_day(store, db, tenant, currency, day).await?);
        slot.set(fit.clone());
        Ok(fit)
    }

    /// Starts a refit in the background when the kept fit is stale (module docs).
    async fn refresh(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        store: &SharedStore,
        db: &ReadDb,
        tenant: &TenantId,
        currency: Currency,
        fit: &DayFit,
    ) -> Result<(), ReportError> {
        let due = match slot.checked.lock() {
            Ok(mut checked) => {
                let due = checked.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
                if due {
                    *checked = Some(Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if !due || slot.refitting.load(Ordering::Acquire) {
            return Ok(());
        }
        let fresh = still_fresh(
            store,
            db,
            tenant,
            currency,
            fit.basis.position,
            fit.basis.customers,
        )
        .await?;
        if !fresh {
            self.spawn_fit(slot.clone(), store, db, tenant, currency, fit.basis.as_of);
        }
        Ok(())
    }

    /// Makes the fit of `day` into `slot` in the background (once at a time per slot).
    fn spawn_fit(
        self: &Arc<Self>,
        slot: Arc<Slot>,
        store: &SharedStore,
        db: &ReadDb,
        tenant: &TenantId,
        currency: Currency,
        day: DateTime<Utc>,
    ) {
        if slot.refitting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, db, tenant) = (store.clone(), db.clone(), tenant.clone());
        tokio::spawn(async move {
            let _making = slot.making.lock().await;
            match fit_day(&store, &db, &tenant, currency, day).await {
                Ok(fit) => slot.set(Arc::new(fit)),
                // The kept fit goes on answering; the next check tries again.
                Err(error) => tracing::warn!(%error, "a background refit failed"),
            }
            slot.refitting.store(false, Ordering::Release);
        });
    }
}
