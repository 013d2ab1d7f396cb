//! `crm-replay analytics rfm|clv|profitability|cohorts`: RFM segments; the BG/NBD +
//! Gamma-Gamma fit with each customer's P(alive), expected purchases, churn risk and CLV;
//! revenue by customer decile; cohorts by first-purchase month; computed from the log as of a
//! business time by `crm_projections::analytics` (the decision the API will serve too). The
//! evaluation time defaults to the start of the current UTC day; every answer states its
//! tenant, currency, evaluation time, last log position and number of customers.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use crm_analytics::score::ScoreOptions;
use crm_core::envelope::TenantId;
use crm_core::money::currency::Currency;
use crm_projections::analytics::{
    Basis, clv_report, cohorts_report, profitability_report, rfm_report,
};

use crate::Ctx;
use crate::output::outln;

/// Which customers and when.
#[derive(Debug, clap::Args)]
pub struct On {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The currency (ISO 4217): money is never summed across currencies.
    #[arg(long)]
    currency: String,
    /// Evaluate as of this time (RFC 3339; business time: the events that occurred by then);
    /// default: the start of the current UTC day.
    #[arg(long)]
    as_of: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// RFM scores 1-5 by quintile, the three-digit code and the named segment of every
    /// customer with a purchase in the currency, and the count per segment.
    Rfm {
        #[command(flatten)]
        on: On,
    },
    /// Fit BG/NBD and Gamma-Gamma by maximum likelihood and give each customer's P(alive),
    /// expected purchases and churn risk over the horizon, expected average value and CLV.
    /// The share of revenue by customer decile (the 80/20 curve).
    Profitability {
        #[command(flatten)]
        on: On,
    },
    /// Customers by month of first purchase: retention and revenue month by month.
    Cohorts {
        #[command(flatten)]
        on: On,
    },
    Clv {
        #[command(flatten)]
        on: On,
        /// Horizon of the expected purchases and the churn risk, in days.
        #[arg(long, default_value_t = 90.0)]
        horizon_days: f64,
        /// Months the CLV covers.
        #[arg(long, default_value_t = 12)]
        months: u32,
        /// Monthly discount rate of the CLV (0.01 = 1% a month).
        #[arg(long, default_value_t = 0.01)]
        discount: f64,
    },
}

fn resolve(on: &On) -> Result<(TenantId, Currency, DateTime<Utc>)> {
    let tenant = TenantId::parse(&on.tenant).context("--tenant")?;
    let currency = Currency::parse(&on.currency).context("--currency")?;
    let as_of = match &on.as_of {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("--as-of {text:?} is not an RFC 3339 time"))?,
        None => Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .context("the start of today")?
            .and_utc(),
    };
    Ok((tenant, currency, as_of))
}

fn basis_line(what: &str, basis: &Basis) -> String {
    format!(
        "{what} of tenant {} in {} as of {} (log position {}): {} customers with a purchase",
        basis.tenant,
        basis.currency,
        basis.as_of.to_rfc3339(),
        basis.position,
        basis.customers
    )
}

pub async fn run(ctx: &Ctx, command: AnalyticsCommand) -> Result<()> {
    let store = ctx.projection_store();
    match command {
        AnalyticsCommand::Profitability { on } => {
            let (tenant, currency, as_of) = resolve(&on)?;
            let report = profitability_report(&store, &tenant, currency, as_of).await?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            outln!("{}", basis_line("Profitability", &report.basis));
            outln!(
                "  revenue {} {}; the top 20% of customers bring {:.1}%",
                report.revenue,
                currency.code(),
                report.top_20_percent_share * 100.0
            );
            for decile in &report.deciles {
                outln!(
                    "  decile {:>2}: {:>6} customers, {:>14} ({:.1}%, cumulative {:.1}%)",
                    decile.decile,
                    decile.customers,
                    decile.revenue,
                    decile.share * 100.0,
                    decile.cumulative_share * 100.0
                );
            }
        }
        AnalyticsCommand::Cohorts { on } => {
            let (tenant, currency, as_of) = resolve(&on)?;
            let report = cohorts_report(&store, &tenant, currency, as_of).await?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            outln!("{}", basis_line("Cohorts", &report.basis));
            for cohort in &report.cohorts {
                let retention: Vec<String> = cohort
                    .months
                    .iter()
                    .map(|m| format!("{:.0}%", m.retention * 100.0))
                    .collect();
                outln!(
                    "  {} ({} customers): {}",
                    cohort.cohort,
                    cohort.customers,
                    retention.join(" ")
                );
            }
        }
        AnalyticsCommand::Rfm { on } => {
            let (tenant, currency, as_of) = resolve(&on)?;
            let report = rfm_report(&store, &tenant, currency, as_of).await?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            outln!("{}", basis_line("RFM", &report.basis));
            for segment in &report.segments {
                outln!("  {:<20} {}", segment.segment, segment.customers);
            }
        }
        AnalyticsCommand::Clv {
            on,
            horizon_days,
            months,
            discount,
        } => {
            let options = ScoreOptions::checked(horizon_days, months, discount).map_err(|e| {
                anyhow::anyhow!(
                    "--{} must be {}, got {}",
                    e.parameter.replace('_', "-"),
                    e.rule,
                    e.value
                )
            })?;
            let (tenant, currency, as_of) = resolve(&on)?;
            let report = clv_report(&store, &tenant, currency, as_of, options).await?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            outln!("{}", basis_line("CLV", &report.basis));
            let bg = &report.model.bg_nbd;
            outln!(
                "  BG/NBD r {:.4} alpha {:.4} a {:.4} b {:.4}, log-likelihood {:.3}, converged {}",
                bg.r,
                bg.alpha,
                bg.a,
                bg.b,
                bg.log_likelihood,
                bg.converged
            );
            let gg = &report.model.gamma_gamma;
            outln!(
                "  Gamma-Gamma p {:.4} q {:.4} v {:.4} on {} repeat buyers, converged {}",
                gg.p,
                gg.q,
                gg.v,
                gg.customers,
                gg.converged
            );
            let mut ranked: Vec<_> = report.scores.iter().collect();
            ranked.sort_by(|a, b| b.clv.total_cmp(&a.clv));
            outln!(
                "  top customers by CLV over {months} months ({} {}), --json for all:",
                currency.code(),
                if discount > 0.0 {
                    "discounted"
                } else {
                    "undiscounted"
                }
            );
            for customer in ranked.iter().take(10) {
                outln!(
                    "    {:<24} clv {:>12.2}  p_alive {:.3}  churn {:.3} ({})",
                    customer.customer_id,
                    customer.clv,
                    customer.p_alive,
                    customer.churn_risk,
                    customer.churn_bucket
                );
            }
        }
    }
    Ok(())
}
