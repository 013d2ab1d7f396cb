//! The fitted parameters on two simulated data sets equal those of lifetimes 0.11.3 (scipy
//! 1.10.1, numpy 1.23.5, pandas 1.5.3) on the same summaries, hard-coded here so the check
//! runs without Python. The data sets are `simulate_csv 20000 1` and `simulate_csv 20000 3`
//! (the simulation is deterministic); the values were obtained with `BetaGeoFitter` and
//! `GammaGammaFitter` (`penalizer_coef` 0 and 0.001) on those CSV files. lifetimes minimises
//! with BFGS, this crate with Nelder-Mead: the optima agree to about 1e-6; tolerance 1e-4.

use crm_analytics::bgnbd::{self, BgNbdParams, FitOptions};
use crm_analytics::gamma_gamma::{self, GammaGammaParams};
use crm_analytics::simulate::simulate;

fn check(name: &str, got: f64, want: f64) {
    let rel = (got - want).abs() / want;
    assert!(rel < 1e-4, "{name}: {got} vs lifetimes {want} ({rel:e})");
}

#[test]
fn same_optimum_as_lifetimes_with_and_without_penalizer() {
    let bg = BgNbdParams::new(0.24, 4.41, 0.79, 2.43).expect("valid");
    let gg = GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid");
    let cases = [
        (
            1u64,
            0.0,
            [
                0.2386360419714234,
                4.387095520702868,
                0.7458000316673005,
                2.2437089879266465,
            ],
            [6.335363780666081, 3.6838029335526845, 15.074830175691648],
        ),
        (
            3,
            0.001,
            [
                0.23933400851221567,
                4.303172481041461,
                0.7167563016379824,
                2.005103535525172,
            ],
            [8.01230925148718, 2.5268226334523245, 7.533719686768118],
        ),
    ];
    for (seed, pen, want_bg, want_gg) in cases {
        let data: Vec<_> = simulate(&bg, &gg, 20_000, (365.0, 730.0), 0.0, seed)
            .expect("valid simulation")
            .into_iter()
            .map(|c| c.summary)
            .collect();
        let options = FitOptions {
            penalizer_coef: pen,
            ..FitOptions::default()
        };
        let b = bgnbd::fit(&data, &options).expect("fits").params;
        for (name, got, want) in [
            ("r", b.r, want_bg[0]),
            ("alpha", b.alpha, want_bg[1]),
            ("a", b.a, want_bg[2]),
            ("b", b.b, want_bg[3]),
        ] {
            check(name, got, want);
        }
        let g = gamma_gamma::fit(&data, &options).expect("fits").params;
        for (name, got, want) in [
            ("p", g.p, want_gg[0]),
            ("q", g.q, want_gg[1]),
            ("v", g.v, want_gg[2]),
        ] {
            check(name, got, want);
        }
    }
}
