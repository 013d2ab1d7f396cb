//! Retention: `GET /v1/privacy/retention` and `PUT /v1/privacy/retention` (admin), and the
//! daily task of `crm-api serve` that applies each tenant's rule.
//!
//! Who is due is decided by [`crm_projections::retention::due`] (the replay tool's
//! `retention` command calls it too); each one is erased by the same decision as the erase
//! routes, then, once the read models have applied the erasures, the key table and the read
//! models' files are scrubbed. Each run's report (counts only, never who) is stored with the
//! tenant's settings and logged.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use crm_core::envelope::{Position, TenantId};
use crm_projections::all_projections;
use crm_projections::retention::{
    self, PROJECTIONS, RetentionError, RetentionReport, RetentionRule,
};
use serde::Serialize;

use crate::app::{AppState, SharedState};
use crate::extract::{Caller, reach, read_json};
use crate::problem::Problem;

/// How often the task applies the rules.
pub const INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest a run waits for the read models to catch up with the log.
const CATCH_UP: Duration = Duration::from_secs(300);

/// The tenant's retention rule and its last run.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RetentionAnswer)]
struct Answer {
    erase_after_years: Option<u32>,
    /// The report of the last run, if the rule ever ran.
    last_run: Option<RetentionReport>,
}

/// `GET /v1/privacy/retention`: the tenant's rule and the last run's report.
#[utoipa::path(
    get,
    path = "/v1/privacy/retention",
    operation_id = "getRetentionRule",
    tag = "privacy",
    summary = "The tenant's retention rule and the last daily run's report (role admin)",
    responses((status = 200, description = "The rule (`erase_after_years` null when off, the default) and the last run: when, the cutoff, how many customers and leads were due and erased.", body = Answer))
)]
pub async fn get_rule(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Response, Problem> {
    caller.require(&[], "read the retention rule")?;
    answer(&state, caller.tenant()).await
}

/// `PUT /v1/privacy/retention`: `{"erase_after_years": N}` (1 to 100) or `null` (off).
#[utoipa::path(
    put,
    path = "/v1/privacy/retention",
    operation_id = "setRetentionRule",
    tag = "privacy",
    summary = "Set the tenant's retention rule (role admin)",
    description = "`{\"erase_after_years\": N}` (1 to 100) erases customers and leads (never converted) with no event (by business time) for N years, once a day; `{\"erase_after_years\": null}` turns it off. 422 naming erase_after_years on anything else.",
    request_body(content = retention::RetentionRule),
    responses((status = 200, description = "The rule now in force and the last run.", body = Answer))
)]
pub async fn put_rule(
    State(state): State<SharedState>,
    caller: Caller,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    caller.require(&[], "change the retention rule")?;
    let value = read_json(&state, body).await?;
    let rule = RetentionRule::parse(&value)
        .map_err(|problem| Problem::unprocessable(format!("retention rule: {problem}")))?;
    retention::set_rule(&state.db, caller.tenant(), &rule)
        .await
        .map_err(Problem::from)?;
    tracing::info!(
        tenant = caller.tenant(),
        erase_after_years = rule.erase_after_years,
        "retention rule set"
    );
    answer(&state, caller.tenant()).await
}

async fn answer(state: &AppState, tenant: &str) -> Result<Response, Problem> {
    let rule = retention::rule(&state.db, tenant)
        .await
        .map_err(Problem::from)?;
    let last_run = retention::last_report(&state.db, tenant)
        .await
        .map_err(Problem::from)?;
    Ok(axum::Json(Answer {
        erase_after_years: rule.erase_after_years,
        last_run,
    })
    .into_response())
}

/// Starts the task: a first run after `first_delay`, then one every [`INTERVAL`], until the
/// server closes.
pub fn spawn(state: SharedState, first_delay: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut closing = state.closing.subscribe();
        let mut delay = first_delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = closing.wait_for(|closing| *closing) => return,
            }
            run_all(&state).await;
            delay = INTERVAL;
        }
    })
}

/// Applies the rule of every tenant that has one on; logs each report.
pub async fn run_all(state: &AppState) -> Vec<(String, RetentionReport)> {
    let tenants = match retention::tenants_with_rule(&state.db).await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(%error, "retention: cannot read the tenants' rules");
            return Vec::new();
        }
    };
    let mut reports = Vec::new();
    for tenant in tenants {
        if *state.closing.borrow() {
            break;
        }
        let Ok(id) = TenantId::parse(&tenant) else {
            continue;
        };
        if let Some(report) = run_tenant(state, &id).await {
            reports.push((tenant, report));
        }
    }
    reports
}

/// Applies `tenant`'s rule once, records the report and logs it; `None` when the rule is off.
pub async fn run_tenant(state: &AppState, tenant: &TenantId) -> Option<RetentionReport> {
    let rule = match retention::rule(&state.db, tenant.as_str()).await {
        Ok(rule) => rule,
        Err(error) => {
            tracing::warn!(%tenant, %error, "retention: cannot read the rule");
            return None;
        }
    };
    let now = Utc::now();
    let (years, cutoff) = match (rule.erase_after_years, rule.cutoff(now)) {
        (Some(years), Some(cutoff)) => (years, cutoff),
        _ => return None,
    };
    let mut report = RetentionReport {
        ran_at: now,
        erase_after_years: years,
        cutoff,
        ..RetentionReport::default()
    };
    if let Err(error) = apply(state, tenant, cutoff, &mut report).await {
        report.error = Some(error.to_string());
    }
    if let Err(error) = retention::record_report(&state.db, tenant.as_str(), &report).await {
        tracing::warn!(%tenant, %error, "retention: cannot record the report");
    }
    match &report.error {
        None => tracing::info!(
            %tenant,
            erase_after_years = years,
            customers_due = report.customers_due,
            leads_due = report.leads_due,
            customers_erased = report.customers_erased,
            leads_erased = report.leads_erased,
            skipped = report.skipped,
            "retention applied"
        ),
        Some(error) => tracing::warn!(
            %tenant,
            customers_erased = report.customers_erased,
            leads_erased = report.leads_erased,
            %error,
            "retention stopped"
        ),
    }
    Some(report)
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Retention(#[from] RetentionError),
    #[error("{0}")]
    Other(String),
}

async fn apply(
    state: &AppState,
    tenant: &TenantId,
    cutoff: chrono::DateTime<Utc>,
    report: &mut RetentionReport,
) -> Result<(), RunError> {
    let head = state
        .store
        .head_position()
        .await
        .map_err(|e| RunError::Other(e.to_string()))?;
    wait_for(state, tenant, PROJECTIONS, head).await?;
    let due = retention::due(&state.db, tenant.as_str(), cutoff, head).await?;
    report.customers_due = due.customers.len() as u64;
    report.leads_due = due.leads.len() as u64;
    let executed = retention::execute(&state.private, tenant, &due).await?;
    report.customers_erased = executed.customers_erased;
    report.leads_erased = executed.leads_erased;
    report.skipped = executed.skipped;
    if let Some(position) = executed.last_position {
        let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
        wait_for(state, tenant, &names, position).await?;
        state
            .db
            .scrub_after_erasure(&state.private)
            .await
            .map_err(|e| RunError::Other(e.to_string()))?;
    }
    Ok(())
}

/// Waits (up to [`CATCH_UP`]) until the named read models have applied `position`.
async fn wait_for(
    state: &AppState,
    tenant: &TenantId,
    names: &[&str],
    position: Position,
) -> Result<(), RunError> {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        if reach(state, tenant.as_str(), names, Some(position))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline || *state.closing.borrow() {
            return Err(RunError::Other(format!(
                "the read models did not reach position {position} within {} s",
                CATCH_UP.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
