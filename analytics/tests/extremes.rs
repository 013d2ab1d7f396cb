//! No panic and no NaN on any input: every public function, fed extreme and invalid values,
//! answers a finite number (probabilities within [0, 1]) or an error.

use crm_analytics::Summary;
use crm_analytics::bgnbd::{self, BgNbdParams, FitOptions};
use crm_analytics::gamma_gamma::{self, GammaGammaParams, customer_lifetime_value};
use crm_analytics::rfm::rfm;
use crm_analytics::score::{ScoreOptions, score};
use crm_analytics::simulate::simulate;

const VALUES: [f64; 9] = [0.0, 1e-300, 1e-9, 0.5, 1.0, 365.0, 1e15, 1e300, f64::NAN];

fn summaries() -> Vec<Summary> {
    let mut out = Vec::new();
    for x in [0.0, 1.0, 3.0, 1e6, 1e15, -1.0, 2.5, f64::INFINITY] {
        for &t in &VALUES {
            for frac in [0.0, 0.5, 1.0] {
                let recency = if x == 0.0 { 0.0 } else { t * frac };
                let m = if x == 0.0 { 0.0 } else { 25.0 };
                out.push(Summary {
                    frequency: x,
                    recency,
                    t,
                    monetary_value: m,
                });
            }
        }
    }
    out
}

fn finite_or_err(what: &str, r: Result<f64, crm_analytics::AnalyticsError>) {
    if let Ok(v) = r {
        assert!(v.is_finite(), "{what}: {v}");
    }
}

#[test]
fn predictions_never_panic_or_answer_nan() {
    let params = [
        BgNbdParams {
            r: 0.24,
            alpha: 4.41,
            a: 0.79,
            b: 2.43,
        },
        BgNbdParams {
            r: 1e-300,
            alpha: 1e300,
            a: 1e-9,
            b: 1e-9,
        },
        BgNbdParams {
            r: 50.0,
            alpha: 1e-9,
            a: 1e6,
            b: 0.2,
        },
        BgNbdParams {
            r: f64::NAN,
            alpha: 1.0,
            a: 1.0,
            b: 1.0,
        },
        BgNbdParams {
            r: 1.0,
            alpha: 1.0,
            a: 1.0,
            b: 1.0,
        },
    ];
    let gg = [
        GammaGammaParams {
            p: 6.25,
            q: 3.74,
            v: 15.44,
        },
        GammaGammaParams {
            p: 1e300,
            q: 1.0 + 1e-12,
            v: 1e-300,
        },
        GammaGammaParams {
            p: 1.0,
            q: 0.5,
            v: 1.0,
        },
    ];
    let all = summaries();
    for bg in &params {
        for s in &all {
            if let Ok(p) = bg.p_alive(s) {
                assert!((0.0..=1.0).contains(&p), "p_alive {p}");
            }
            if let Ok(c) = bg.churn_risk(90.0, s) {
                assert!((0.0..=1.0).contains(&c), "churn {c}");
            }
            for h in [0.0, 90.0, 1e300, f64::NAN, -1.0] {
                finite_or_err("expected", bg.conditional_expected_purchases(h, s));
            }
            for g in &gg {
                finite_or_err("value", g.conditional_expected_average_value(s));
                finite_or_err("clv", customer_lifetime_value(bg, g, s, 3, 0.01));
                let _ = score(bg, g, s, &ScoreOptions::default());
            }
        }
        finite_or_err("new", bg.expected_purchases_new_customer(1e300));
    }
}

#[test]
fn fits_and_rfm_never_panic() {
    let all = summaries();
    let valid: Vec<Summary> = all.iter().copied().filter(|s| s.check().is_ok()).collect();
    assert!(rfm(&all).is_err());
    let r = rfm(&valid).expect("valid summaries");
    assert_eq!(r.counts.iter().map(|c| c.1).sum::<usize>(), valid.len());
    let options = FitOptions {
        max_iter: 300,
        ..FitOptions::default()
    };
    for data in [&all[..], &valid[..], &valid[..3], &[]] {
        if let Ok(f) = bgnbd::fit(data, &options) {
            assert!(f.log_likelihood.is_finite());
        }
        if let Ok(f) = gamma_gamma::fit(data, &options) {
            assert!(f.log_likelihood.is_finite());
        }
    }
    let bad_bg = BgNbdParams {
        r: 0.0,
        alpha: 1.0,
        a: 1.0,
        b: 1.0,
    };
    let gg = GammaGammaParams {
        p: 1.0,
        q: 2.0,
        v: 1.0,
    };
    assert!(simulate(&bad_bg, &gg, 10, (1.0, 2.0), 0.0, 1).is_err());
    let bg = BgNbdParams {
        r: 1.0,
        alpha: 1.0,
        a: 1.0,
        b: 1.0,
    };
    assert!(simulate(&bg, &gg, 10, (2.0, 1.0), 0.0, 1).is_err());
    assert!(simulate(&bg, &gg, 10, (1.0, 2.0), f64::NAN, 1).is_err());
}
