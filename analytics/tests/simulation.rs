//! Simulation tests: customers drawn from known parameters (fixed seeds) must give back those
//! parameters when fitted, and the churn-risk and expected-purchase formulas must match what
//! the simulated customers actually did next.

use crm_analytics::bgnbd::{self, BgNbdParams, FitOptions};
use crm_analytics::gamma_gamma::{self, GammaGammaParams};
use crm_analytics::simulate::simulate;

/// CDNOW values (Fader, Hardie & Lee 2005) and the Gamma-Gamma values of Fader & Hardie's note.
fn truth() -> (BgNbdParams, GammaGammaParams) {
    (
        BgNbdParams::new(0.24, 4.41, 0.79, 2.43).expect("valid"),
        GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid"),
    )
}

fn within(name: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want;
    assert!(
        err <= rel,
        "{name}: fitted {got}, generating {want}, off by {:.1} %",
        100.0 * err
    );
}

/// 20,000 customers over T ~ U(365, 730) days. Tolerances: 10 % for r, α, p, q, v and 15 %
/// for a and b, about three standard errors at this size (a and b are the least determined:
/// the dropout process is seen only through the customers' last purchases).
#[test]
fn fitted_parameters_recover_the_generating_ones() {
    let (bg, gg) = truth();
    for seed in [1u64, 2] {
        let summaries: Vec<_> = simulate(&bg, &gg, 20_000, (365.0, 730.0), 0.0, seed)
            .expect("valid simulation")
            .into_iter()
            .map(|c| c.summary)
            .collect();
        let b = bgnbd::fit(&summaries, &FitOptions::default()).expect("fits");
        assert!(b.converged, "{b:?}");
        within("r", b.params.r, bg.r, 0.10);
        within("alpha", b.params.alpha, bg.alpha, 0.10);
        within("a", b.params.a, bg.a, 0.15);
        within("b", b.params.b, bg.b, 0.15);
        let g = gamma_gamma::fit(&summaries, &FitOptions::default()).expect("fits");
        assert!(g.converged, "{g:?}");
        within("p", g.params.p, gg.p, 0.10);
        within("q", g.params.q, gg.q, 0.10);
        within("v", g.params.v, gg.v, 0.10);
        // The fit is deterministic.
        let again = bgnbd::fit(&summaries, &FitOptions::default()).expect("fits");
        assert_eq!(again, b);
    }
}

/// With the true parameters, the mean predicted churn risk (no purchase in the next 90 days)
/// equals the share of customers who did not buy in those 90 days, overall and within each
/// fifth of predicted risk (law of total probability). 60,000 customers: the standard error
/// of a share is below 0.002 overall and 0.005 per fifth; tolerances 0.01 and 0.02.
#[test]
fn churn_risk_and_expected_purchases_match_what_happened_next() {
    let (bg, gg) = truth();
    let customers = simulate(&bg, &gg, 60_000, (30.0, 730.0), 90.0, 99).expect("valid simulation");
    let mut rows: Vec<(f64, bool, f64, f64)> = customers
        .iter()
        .map(|c| {
            let risk = bg.churn_risk(90.0, &c.summary).expect("defined");
            let expected = bg
                .conditional_expected_purchases(90.0, &c.summary)
                .expect("defined");
            (
                risk,
                c.future_purchases == 0,
                expected,
                f64::from(c.future_purchases),
            )
        })
        .collect();
    let n = rows.len() as f64;
    let predicted: f64 = rows.iter().map(|r| r.0).sum::<f64>() / n;
    let observed = rows.iter().filter(|r| r.1).count() as f64 / n;
    assert!(
        (predicted - observed).abs() < 0.01,
        "{predicted} vs {observed}"
    );
    rows.sort_by(|x, y| x.0.total_cmp(&y.0));
    for fifth in rows.chunks(rows.len() / 5) {
        let k = fifth.len() as f64;
        let p = fifth.iter().map(|r| r.0).sum::<f64>() / k;
        let o = fifth.iter().filter(|r| r.1).count() as f64 / k;
        assert!((p - o).abs() < 0.02, "fifth: predicted {p} vs observed {o}");
    }
    let e: f64 = rows.iter().map(|r| r.2).sum::<f64>() / n;
    let x: f64 = rows.iter().map(|r| r.3).sum::<f64>() / n;
    assert!(
        (e - x).abs() / x < 0.04,
        "expected purchases {e} vs observed {x}"
    );
}
