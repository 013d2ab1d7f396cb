//! Fit time of BG/NBD + Gamma-Gamma on 100,000 simulated customers (issue 17 target: ≤ 2 s).
//! Run in release: `cargo run --release -p crm-analytics --example fit_bench [-- N]`.

use crm_analytics::bgnbd::{self, BgNbdParams, FitOptions};
use crm_analytics::gamma_gamma::{self, GammaGammaParams};
use crm_analytics::score::{ScoreOptions, score};
use crm_analytics::simulate::simulate;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(v) => v.parse()?,
        None => 100_000,
    };
    let bg = BgNbdParams::new(0.24, 4.41, 0.79, 2.43)?;
    let gg = GammaGammaParams::new(6.25, 3.74, 15.44)?;
    let summaries: Vec<_> = simulate(&bg, &gg, n, (365.0, 730.0), 0.0, 42)?
        .into_iter()
        .map(|c| c.summary)
        .collect();
    let t0 = Instant::now();
    let b = bgnbd::fit(&summaries, &FitOptions::default())?;
    let t1 = Instant::now();
    let g = gamma_gamma::fit(&summaries, &FitOptions::default())?;
    let t2 = Instant::now();
    println!("customers: {n}");
    println!(
        "BG/NBD: {:.3} s, {} iterations, {} evaluations, converged {}, {:?}",
        (t1 - t0).as_secs_f64(),
        b.iterations,
        b.evaluations,
        b.converged,
        b.params
    );
    println!(
        "Gamma-Gamma: {:.3} s ({} customers), {} iterations, {} evaluations, converged {}, {:?}",
        (t2 - t1).as_secs_f64(),
        g.customers,
        g.iterations,
        g.evaluations,
        g.converged,
        g.params
    );
    println!("total fit: {:.3} s", (t2 - t0).as_secs_f64());
    let options = ScoreOptions::default();
    let mut clv_sum = 0.0;
    for s in &summaries {
        clv_sum += score(&b.params, &g.params, s, &options)?.clv;
    }
    println!(
        "scores (P(alive), E[X(90)], churn, E[value], CLV 12 months) for {n} customers on one thread: {:.3} s (mean CLV {:.2})",
        t2.elapsed().as_secs_f64(),
        clv_sum / n as f64
    );
    Ok(())
}
