//! The analytics benchmark of issue 17, for `crm-bench s1`: customers with orders (simulated
//! from known BG/NBD and Gamma-Gamma parameters, seed 42), appended, projected into the 360
//! and its stored purchase summaries, then the day's population read from the stored rows,
//! both models fitted on it, and every customer scored from the stored rows a chunk at a
//! time (memory flat), beside two baselines from the same run: the same rows read by plain
//! sqlx, and the same scores computed from summaries already in memory.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_analytics::bgnbd::BgNbdParams;
use crm_analytics::gamma_gamma::GammaGammaParams;
use crm_analytics::score::{ScoreOptions, score};
use crm_analytics::simulate::simulate;
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::money::currency::Currency;
use crm_core::store::{ExpectedRevision, SharedStore, StoreUrl};
use crm_projections::ReadDb;
use crm_projections::analytics::fit::{self, Source};
use crm_projections::analytics::{fit_models, model_input};
use crm_projections::customer360::{Customer360Projection, summary};
use crm_projections::runner::{self, RunnerOptions};
use serde_json::{Value, json};

use crate::api_bench;
use crate::bench_data::{CustomerEvents, Rng};

/// The evaluation time of the benchmark's population: every order is dated before it.
pub fn evaluation() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The tenant the benchmark writes.
pub const TENANT: &str = "bench";

/// Customers `from..from + count` of the simulated population of `total` (the simulation is
/// made for all of them, so chunks agree): a registration and one order per purchase day,
/// the first purchase T days before [`evaluation`], the x repeat days spread evenly up to
/// the recency, each order the customer's mean spend.
pub fn customers_with_orders(total: u64, from: u64, count: u64) -> Result<Vec<CustomerEvents>> {
    let bg = BgNbdParams::new(0.25, 20.0, 0.8, 2.5)?;
    let gg = GammaGammaParams::new(6.0, 4.0, 15.0)?;
    let simulated = simulate(&bg, &gg, usize::try_from(total)?, (30.0, 730.0), 0.0, 42)?;
    let end = evaluation();
    let mut rng = Rng::new(7);
    let mut out = Vec::new();
    for (n, customer) in simulated
        .iter()
        .enumerate()
        .skip(usize::try_from(from)?)
        .take(usize::try_from(count)?)
    {
        let s = customer.summary;
        let customer_id = format!("s{n:07}");
        let stream = StreamId::new("customer", &customer_id)?;
        let first = end - Duration::days(s.t.ceil() as i64) + Duration::hours(10);
        let mut events = vec![
            NewEvent::new(
                "CustomerRegistered",
                &json!({"customer_id": customer_id, "kind": "person",
                    "name": format!("Customer {n}")}),
            )
            .with_occurred_at(first - Duration::hours(1)),
        ];
        let recency_days = s.recency.floor() as i64;
        let repeat = (s.frequency as i64).min(recency_days);
        let spend = if s.frequency > 0.0 {
            s.monetary_value
        } else {
            5.0 + rng.below(100) as f64
        };
        let amount = format!("{:.2}", spend.max(0.01));
        let mut days = vec![0i64];
        days.extend((1..=repeat).map(|k| recency_days * k / repeat.max(1)));
        days.dedup();
        for (i, day) in days.iter().enumerate() {
            events.push(
                NewEvent::new(
                    "OrderPlaced",
                    &json!({"customer_id": customer_id, "order_id": format!("o-{i}"),
                            "amount": amount, "currency": "EUR"}),
                )
                .with_occurred_at(first + Duration::days(*day)),
            );
        }
        out.push(CustomerEvents { stream, events });
    }
    Ok(out)
}

/// Appends `customers` customers with orders, 50,000 at a time; the events written.
pub async fn fill(store: &SharedStore, customers: u64) -> Result<usize> {
    let tenant = TenantId::parse(TENANT)?;
    let mut written = 0;
    let mut from = 0;
    while from < customers {
        let count = (customers - from).min(50_000);
        for customer in customers_with_orders(customers, from, count)? {
            written += customer.events.len();
            store
                .append(
                    &tenant,
                    &customer.stream,
                    ExpectedRevision::NoStream,
                    customer.events,
                )
                .await?;
        }
        from += count;
    }
    Ok(written)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// S1 on a store holding [`fill`]'s events: one JSON line of figures.
pub async fn s1(store: &SharedStore, url: &StoreUrl, events: usize) -> Result<Value> {
    let db = ReadDb::open(url).await?;
    let started = Instant::now();
    let statuses = runner::run_until_caught_up(
        Arc::clone(store),
        db.clone(),
        vec![Arc::new(Customer360Projection)],
        RunnerOptions::default(),
    )
    .await?;
    let head = store.head_position().await?;
    if statuses.iter().any(|s| s.position != head) {
        bail!("the 360 stopped short of the head: {statuses:?}");
    }
    let project_s = started.elapsed().as_secs_f64();

    let tenant = TenantId::parse(TENANT)?;
    let eur = Currency::parse("EUR")?;
    let at = evaluation();
    let started = Instant::now();
    let (basis, customers, source) = fit::population(store, &db, &tenant, eur, at).await?;
    let population_s = started.elapsed().as_secs_f64();
    if source != Source::Stored {
        bail!("the population was not read from the stored summaries");
    }
    let input = model_input(&customers)?;
    let started = Instant::now();
    let fitted = fit_models(&input, &basis)?;
    let fit_s = started.elapsed().as_secs_f64();
    let day_fit = fit::DayFit {
        rfm: crm_analytics::rfm::Population::new(&input)?,
        basis: basis.clone(),
        source,
        models: Ok(fitted.clone()),
    };
    let options = ScoreOptions::default();

    // Scored from the stored rows, a chunk at a time.
    drop(customers);
    api_bench::reset_peak_rss();
    let rss_before = api_bench::rss_mib("/proc/self/status");
    let started = Instant::now();
    let mut buckets = [0usize; 3];
    let mut clv_sum = 0.0;
    let scored = fit::score_stored(&db, &tenant, eur, at, &day_fit, &options, |_, s| {
        buckets[s.churn_bucket as usize] += 1;
        clv_sum += s.clv;
    })
    .await?;
    let score_s = started.elapsed().as_secs_f64();
    let peak = api_bench::peak_rss_mib("/proc/self/status");
    if scored != basis.customers {
        bail!("scored {scored} of {} customers", basis.customers);
    }

    // Baseline 1: the same rows read by plain sqlx, nothing decoded beyond the columns.
    let started = Instant::now();
    let rows = read_rows_plain(url).await?;
    let read_plain_s = started.elapsed().as_secs_f64();
    if rows != scored {
        bail!("the plain read saw {rows} rows, the scoring {scored}");
    }
    // Baseline 2: the same figures from summaries already in memory (the math alone).
    let started = Instant::now();
    let mut check = 0.0;
    for s in &input {
        check += score(&fitted.bg.params, &fitted.gg.params, s, &options)?.clv;
    }
    let math_s = started.elapsed().as_secs_f64();
    if (check - clv_sum).abs() > 1e-6 * check.abs().max(1.0) {
        bail!("the stored scores' CLV sum {clv_sum} differs from the in-memory one {check}");
    }
    Ok(json!({
        "workload": "S1",
        "events": events,
        "customers": scored,
        "project_s": round3(project_s),
        "project_events_per_s": (events as f64 / project_s).round(),
        "population_s": round3(population_s),
        "fit_s": round3(fit_s),
        "score_s": round3(score_s),
        "customers_per_s": (scored as f64 / score_s).round(),
        "baseline_read_rows_s": round3(read_plain_s),
        "baseline_math_s": round3(math_s),
        "score_rss_before_mib": rss_before,
        "score_peak_rss_mib": peak,
        "churn": {"low": buckets[0], "medium": buckets[1], "high": buckets[2]},
        "bg_nbd": {"r": fitted.bg.params.r, "alpha": fitted.bg.params.alpha,
                   "a": fitted.bg.params.a, "b": fitted.bg.params.b,
                   "converged": fitted.bg.converged},
    }))
}

/// Every stored summary row of the benchmark's tenant in EUR, read by plain sqlx.
async fn read_rows_plain(url: &StoreUrl) -> Result<usize> {
    use futures::TryStreamExt;
    let sql = format!(
        "SELECT id, first_day, last_day, frequency, monetary_minor, changed_at, position \
         FROM {} WHERE tenant = 'bench' AND currency = 'EUR' ORDER BY id",
        summary::TABLE
    );
    let mut rows = 0usize;
    match url {
        StoreUrl::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
                .await
                .context("open the SQLite file")?;
            let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).fetch(&pool);
            while stream.try_next().await?.is_some() {
                rows += 1;
            }
        }
        StoreUrl::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.context("connect")?;
            let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).fetch(&pool);
            while stream.try_next().await?.is_some() {
                rows += 1;
            }
        }
    }
    Ok(rows)
}
