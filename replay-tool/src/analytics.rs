//! `crm-replay analytics rfm|clv|profitability|cohorts|lifecycle|funnel`: RFM segments; the
//! BG/NBD + Gamma-Gamma fit with each customer's P(alive), expected purchases, churn risk and
//! CLV; revenue by customer decile; cohorts by first-purchase month; customers per lifecycle
//! stage and their moves over a period; the sales funnel of the deals opened in a period;
//! computed from the log as of a business time by `crm_projections::analytics` (the decision
//! the API serves too). The evaluation time defaults to the start of the current UTC day;
//! every answer states what it was computed from (tenant, evaluation time, last log
//! position, and its currency and number of customers where it has them).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use crm_analytics::score::ScoreOptions;
use crm_core::envelope::TenantId;
use crm_core::money::currency::Currency;
use crm_projections::analytics::funnel::{FunnelFigures, funnel_report};
use crm_projections::analytics::lifecycle::{PeriodError, lifecycle_report};
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
    /// Fit BG/NBD and Gamma-Gamma by maximum likelihood and give each customer's P(alive),
    /// expected purchases and churn risk over the horizon, expected average value and CLV.
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
    /// Customers per lifecycle stage (lead, new, active, at risk, lapsed, won back) as of a
    /// time; with --since, how many moved from each stage to each other since then.
    Lifecycle {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Evaluate as of this time (RFC 3339, business time); default: the start of the
        /// current UTC day.
        #[arg(long)]
        as_of: Option<String>,
        /// Also count the moves between stages from this time (RFC 3339, before --as-of).
        #[arg(long)]
        since: Option<String>,
    },
    /// The sales funnel of the opportunities opened from --from to --to: stage conversion,
    /// win rate, cycle length, won amounts per currency, by owner and by stage entered.
    Funnel {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The deals opened from this time (RFC 3339, included).
        #[arg(long)]
        from: String,
        /// Up to this time (RFC 3339, excluded), and what had become of the deals by then.
        #[arg(long)]
        to: String,
        /// Only this sales rep's deals (the owner at --to).
        #[arg(long)]
        owner: Option<String>,
    },
}

/// `text` as an RFC 3339 time, or an error naming `flag`.
fn time(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{flag} {text:?} is not an RFC 3339 time"))
}

/// The start of the current UTC day, the default evaluation time.
fn today() -> Result<DateTime<Utc>> {
    Ok(Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .context("the start of today")?
        .and_utc())
}

/// A period error with the flag it names (`--since`, `--from`).
fn period(error: PeriodError) -> anyhow::Error {
    match error {
        PeriodError::Parameter { parameter, message } => {
            anyhow::anyhow!("--{parameter}: {message}")
        }
        PeriodError::Report(error) => error.into(),
    }
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// The funnel's lines for `figures`, indented by `indent`.
fn funnel_lines(indent: &str, figures: &FunnelFigures) {
    let won: Vec<String> = figures
        .won_amount
        .iter()
        .map(|a| format!("{} {}", a.amount, a.currency))
        .collect();
    outln!(
        "{indent}{} opened: {} won, {} lost, {} open; win rate {}; won {}",
        figures.opened,
        figures.won,
        figures.lost,
        figures.open,
        rate(figures.win_rate),
        if won.is_empty() {
            "nothing".to_owned()
        } else {
            won.join(", ")
        }
    );
    if let Some(cycle) = &figures.cycle_days {
        outln!(
            "{indent}days from open to win: median {:.1}, mean {:.1}",
            cycle.median,
            cycle.mean
        );
    }
    for step in &figures.steps {
        outln!(
            "{indent}  {:<14} entered {:>5} reached {:>5} -> next {:>6}  win rate if entered {:>6}",
            step.stage.as_str(),
            step.entered,
            step.reached,
            rate(step.conversion),
            rate(step.win_rate)
        );
    }
}

fn resolve(on: &On) -> Result<(TenantId, Currency, DateTime<Utc>)> {
    let tenant = TenantId::parse(&on.tenant).context("--tenant")?;
    let currency = Currency::parse(&on.currency).context("--currency")?;
    let as_of = match &on.as_of {
        Some(text) => time("--as-of", text)?,
        None => today()?,
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
        AnalyticsCommand::Lifecycle {
            tenant,
            as_of,
            since,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let as_of = match &as_of {
                Some(text) => time("--as-of", text)?,
                None => today()?,
            };
            let since = since.as_deref().map(|t| time("--since", t)).transpose()?;
            let report = lifecycle_report(&store, &tenant, as_of, since)
                .await
                .map_err(period)?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            outln!(
                "Lifecycle of tenant {} as of {} (log position {}): {} customers",
                report.tenant,
                report.as_of.to_rfc3339(),
                report.position,
                report.customers
            );
            for stage in &report.stages {
                outln!("  {:<10} {}", stage.stage.name(), stage.customers);
            }
            if let (Some(since), Some(transitions)) = (report.since, &report.transitions) {
                outln!("  moves since {}:", since.to_rfc3339());
                for t in transitions {
                    outln!("    {:<10} -> {:<10} {}", t.from, t.to, t.customers);
                }
            }
        }
        AnalyticsCommand::Funnel {
            tenant,
            from,
            to,
            owner,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let (from, to) = (time("--from", &from)?, time("--to", &to)?);
            let report = funnel_report(&store, &tenant, from, to, owner.as_deref())
                .await
                .map_err(period)?;
            if ctx.json {
                outln!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            outln!(
                "Funnel of tenant {}: deals opened from {} to {} (log position {}){}",
                report.tenant,
                report.from.to_rfc3339(),
                report.to.to_rfc3339(),
                report.position,
                report
                    .owner
                    .as_deref()
                    .map(|o| format!(", owner {o}"))
                    .unwrap_or_default()
            );
            funnel_lines("  ", &report.figures);
            for owner in &report.by_owner {
                outln!("  owner {}:", owner.owner.as_deref().unwrap_or("(none)"));
                funnel_lines("    ", &owner.figures);
            }
        }
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
