//! Fits BG/NBD and Gamma-Gamma on a CSV of summaries (frequency,recency,T,monetary_value)
//! and writes the parameters and per-customer P(alive), expected purchases over 90 days,
//! churn risk over 90 days and CLV over 12 months at d = 0.01 as JSON:
//! `cargo run -p crm-analytics --example fit_csv -- in.csv out.json [PENALIZER]`.

use anyhow::Context;
use crm_analytics::Summary;
use crm_analytics::bgnbd::{self, FitOptions};
use crm_analytics::gamma_gamma::{self, customer_lifetime_value};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output, penalizer) = match args.as_slice() {
        [_, i, o] => (i, o, 0.0),
        [_, i, o, p] => (i, o, p.parse::<f64>().context("PENALIZER")?),
        _ => anyhow::bail!("usage: fit_csv in.csv out.json [PENALIZER]"),
    };
    let options = FitOptions {
        penalizer_coef: penalizer,
        ..FitOptions::default()
    };
    let text = std::fs::read_to_string(input).context("read input")?;
    let mut summaries = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("line {}", i + 1))?;
        let [x, tx, t, m] = f.as_slice() else {
            anyhow::bail!("line {}: expected 4 fields", i + 1);
        };
        summaries.push(Summary::new(*x, *tx, *t, *m).with_context(|| format!("line {}", i + 1))?);
    }
    let started = std::time::Instant::now();
    let bg = bgnbd::fit(&summaries, &options)?;
    let gg = gamma_gamma::fit(&summaries, &options)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let (mut p_alive, mut expected, mut churn, mut clv) = (vec![], vec![], vec![], vec![]);
    for s in &summaries {
        p_alive.push(bg.params.p_alive(s)?);
        expected.push(bg.params.conditional_expected_purchases(90.0, s)?);
        churn.push(bg.params.churn_risk(90.0, s)?);
        clv.push(customer_lifetime_value(
            &bg.params, &gg.params, s, 12, 0.01,
        )?);
    }
    let out = json!({
        "bg_nbd": {"r": bg.params.r, "alpha": bg.params.alpha, "a": bg.params.a, "b": bg.params.b,
                   "log_likelihood": bg.log_likelihood, "iterations": bg.iterations, "converged": bg.converged},
        "gamma_gamma": {"p": gg.params.p, "q": gg.params.q, "v": gg.params.v,
                        "log_likelihood": gg.log_likelihood, "iterations": gg.iterations, "converged": gg.converged},
        "fit_seconds": fit_seconds,
        "penalizer_coef": penalizer,
        "p_alive": p_alive, "expected_90": expected, "churn_90": churn, "clv_12": clv,
    });
    std::fs::write(output, serde_json::to_vec(&out)?).context("write output")?;
    Ok(())
}
