//! `crm-replay retention --tenant T [--dry-run]`: applies the tenant's retention rule now,
//! with the same decision as the daily task of `crm-api serve`
//! ([`crm_projections::retention::due`]) and the same erasure as `crm-replay erase`.
//!
//! The read models are brought up to the log's head first (a runner here, or the serving
//! process's), so nobody with recent events is judged on stale rows; after the erasures they
//! are brought up to the last one, then the key table and the read models are scrubbed. A
//! dry run lists who is due (entity ids) and changes nothing. A real run records its report
//! (counts only) where `GET /v1/privacy/retention` shows it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use crm_core::envelope::{Position, TenantId};
use crm_projections::retention::{self, RetentionReport};
use crm_projections::runner::{self, RunnerOptions};
use crm_projections::{ReadDb, all_projections, bookkeeping};
use serde::Serialize;

use crate::Ctx;
use crate::output::outln;

/// Longest the read models may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
struct Output<'a> {
    tenant: &'a str,
    #[serde(flatten)]
    report: &'a RetentionReport,
    /// Who is due (a dry run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<&'a retention::Due>,
}

pub async fn run(ctx: &Ctx, tenant: &str, dry_run: bool) -> Result<ExitCode> {
    let store = ctx
        .private
        .as_ref()
        .context("this command needs the master key")?;
    let tenant = TenantId::parse(tenant).context("--tenant")?;
    let db = ReadDb::open(&ctx.url)
        .await
        .context("cannot open the read models")?;
    let rule = retention::rule(&db, tenant.as_str()).await?;
    let now = Utc::now();
    let (Some(years), Some(cutoff)) = (rule.erase_after_years, rule.cutoff(now)) else {
        if ctx.json {
            outln!(
                "{}",
                serde_json::json!({"tenant": tenant.as_str(), "erase_after_years": null})
            );
        } else {
            eprintln!(
                "tenant {tenant} has no retention rule (set one with PUT /v1/privacy/retention); \
                 nothing to do"
            );
        }
        db.close().await;
        return Ok(ExitCode::SUCCESS);
    };
    let handle = runner::start(
        ctx.projection_store(),
        db.clone(),
        all_projections(),
        RunnerOptions::default(),
    );
    let outcome = async {
        let head = ctx.store.head_position().await?;
        wait_for(&db, head).await?;
        let due = retention::due(&db, tenant.as_str(), cutoff, head).await?;
        let mut report = RetentionReport {
            ran_at: now,
            erase_after_years: years,
            cutoff,
            customers_due: due.customers.len() as u64,
            leads_due: due.leads.len() as u64,
            dry_run,
            ..RetentionReport::default()
        };
        if dry_run {
            return Ok::<_, anyhow::Error>((report, Some(due)));
        }
        let executed = retention::execute(store, &tenant, &due).await;
        let executed = match executed {
            Ok(executed) => executed,
            Err(error) => {
                report.error = Some(error.to_string());
                retention::record_report(&db, tenant.as_str(), &report).await?;
                return Err(error.into());
            }
        };
        report.customers_erased = executed.customers_erased;
        report.leads_erased = executed.leads_erased;
        report.skipped = executed.skipped;
        if let Some(position) = executed.last_position {
            wait_for(&db, position).await?;
            db.scrub_after_erasure(store).await?;
        }
        retention::record_report(&db, tenant.as_str(), &report).await?;
        Ok((report, None))
    }
    .await;
    handle.shutdown().await.ok();
    db.close().await;
    let (report, due) = outcome?;
    if ctx.json {
        let output = Output {
            tenant: tenant.as_str(),
            report: &report,
            due: due.as_ref(),
        };
        outln!("{}", serde_json::to_string(&output)?);
    } else if let Some(due) = &due {
        for id in &due.customers {
            outln!("customer {id}");
        }
        for id in &due.leads {
            outln!("lead {id}");
        }
        eprintln!(
            "dry run, tenant {tenant}: {} customers and {} leads have no event since {} \
             ({} years) and would be erased; nothing was changed",
            report.customers_due,
            report.leads_due,
            report.cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
            years
        );
    } else {
        eprintln!(
            "tenant {tenant}: {} customers and {} leads erased ({} due, {} skipped: already \
             erased or not erasable) with no event since {} ({years} years); the read models \
             applied it and the database files were scrubbed",
            report.customers_erased,
            report.leads_erased,
            report.customers_due + report.leads_due,
            report.skipped,
            report.cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until every read model has applied `position` (this process's runner, or the
/// serving process's, moves the stored checkpoints).
async fn wait_for(db: &ReadDb, position: Position) -> Result<()> {
    let deadline = Instant::now() + CATCH_UP;
    let wanted = all_projections().len();
    loop {
        let stored = bookkeeping::stored_positions(db).await?;
        if stored.len() >= wanted && stored.iter().all(|p| p.position >= position) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the read models did not reach position {position} within {} s",
                CATCH_UP.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
