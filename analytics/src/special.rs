//! Special functions: log-gamma (from `libm`), a stable `ln(e^a + e^b)`, and the Gauss
//! hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1.
//!
//! 2F1 is summed as its power series Σ (a)_n (b)_n / ((c)_n n!) z^n. The series converges
//! for |z| < 1; once n is past every negative parameter the ratio of consecutive terms,
//! ρ_n = (a+n)(b+n) / ((c+n)(n+1)) · z, keeps one sign and tends monotonically to z, so the
//! tail after a term u_n is at most |u_n| ρ / (1 − ρ) with ρ = max(|ρ_n|, z) < 1. The sum stops when
//! twice that bound is below 1e-16 of the sum, or fails after 2,000,000 terms (z within
//! about 1e-5 of 1). The BG/NBD formulas call it through Euler's transformation with
//! parameters that do not grow with the customer's frequency (see [`crate::bgnbd`]), so the
//! terms stay bounded.

use crate::AnalyticsError;

/// ln Γ(x) for x > 0 (ln |Γ(x)| elsewhere).
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ln(e^a + e^b) without overflow; `-inf` when both are `-inf`.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// The logistic function 1 / (1 + e^-x), stable for large |x|.
pub fn expit(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

const MAX_TERMS: usize = 2_000_000;

/// Gauss's hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1 and c not a
/// non-positive integer.
pub fn hyp2f1_scaled(a: f64, b: f64, c: f64, z: f64) -> Result<(f64, f64), AnalyticsError> {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite()) {
        return Err(AnalyticsError::InvalidArgument {
            name: "hyp2f1",
            reason: "arguments must be finite",
        });
    }
    if !(0.0..1.0).contains(&z) {
        return Err(AnalyticsError::InvalidArgument {
            name: "z",
            reason: "hyp2f1 is summed only for 0 <= z < 1",
        });
    }
    if c <= 0.0 && c.fract() == 0.0 {
        return Err(AnalyticsError::InvalidArgument {
            name: "c",
            reason: "c must not be a non-positive integer",
        });
    }
    let mut sum = 1.0_f64;
    let mut term = 1.0_f64;
    // The value is `sum · e^scale`: the partial sums are rescaled before they overflow, so a
    // series whose terms grow huge before they fall still sums (its caller multiplies by a
    // tiny factor, in log space).
    let mut scale = 0.0_f64;
    // Past this index every factor of the term ratio keeps its sign.
    let settled = (-a).max(-b).max(-c).max(0.0).ceil() as usize + 1;
    for n in 0..MAX_TERMS {
        let nf = n as f64;
        let ratio = (a + nf) * (b + nf) / ((c + nf) * (nf + 1.0)) * z;
        term *= ratio;
        if term == 0.0 {
            return Ok((sum, scale));
        }
        sum += term;
        if sum.abs() > RESCALE || term.abs() > RESCALE {
            sum /= RESCALE;
            term /= RESCALE;
            scale += RESCALE.ln();
        }
        if !sum.is_finite() || !term.is_finite() {
            return Err(AnalyticsError::Numerical("hyp2f1 series overflowed"));
        }
        // Past `settled` the ratios approach z monotonically, so none exceeds max(ρ_n, z).
        let bound = ratio.abs().max(z);
        if n >= settled && bound < 1.0 {
            let tail = term.abs() * bound / (1.0 - bound);
            if 2.0 * tail <= 1e-16 * sum.abs() {
                return Ok((sum, scale));
            }
        }
    }
    Err(AnalyticsError::Numerical(
        "hyp2f1 series did not converge (z too close to 1)",
    ))
}

/// Partial sums are divided by this (and the scale raised) before they overflow.
const RESCALE: f64 = 1e200;

/// The Gauss hypergeometric function 2F1(a, b; c; z), as [`hyp2f1_scaled`] sums it; an error
/// when the value itself does not fit an `f64`.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64, AnalyticsError> {
    let (sum, scale) = hyp2f1_scaled(a, b, c, z)?;
    let value = sum * scale.exp();
    if value.is_finite() {
        Ok(value)
    } else {
        Err(AnalyticsError::Numerical("hyp2f1 exceeds the f64 range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(1e-300)
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.1, 0.5, 0.9, 0.99] {
            let got = hyp2f1(1.0, 1.0, 2.0, z).expect("converges");
            let want = -(1.0 - z).ln() / z;
            assert!(close(got, want, 1e-12), "z={z}: {got} vs {want}");
        }
        // 2F1(a, b; b; z) = (1 - z)^-a
        let got = hyp2f1(0.7, 2.5, 2.5, 0.6).expect("converges");
        assert!(close(got, 0.4_f64.powf(-0.7), 1e-12));
        assert_eq!(hyp2f1(1.0, 1.0, 2.0, 0.0), Ok(1.0));
    }

    #[test]
    fn a_series_that_grows_past_f64_before_it_falls_is_summed_scaled() {
        // 2F1(a, b; b; z) = (1 - z)^-a: with a = 800, z = 0.9 the value is 10^800.
        let (sum, scale) = hyp2f1_scaled(800.0, 2.5, 2.5, 0.9).expect("sums");
        let ln_value = sum.ln() + scale;
        let want = -800.0 * 0.1_f64.ln();
        assert!(
            (ln_value - want).abs() <= 1e-9 * want,
            "{ln_value} vs {want}"
        );
        assert!(
            hyp2f1(800.0, 2.5, 2.5, 0.9).is_err(),
            "the value itself overflows"
        );
    }

    #[test]
    fn hyp2f1_refuses_out_of_domain() {
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_err());
        assert!(hyp2f1(1.0, 1.0, 2.0, -0.1).is_err());
        assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_err());
        assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_err());
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0 - 1e-12).is_err());
    }

    #[test]
    fn log_add_exp_is_stable() {
        assert!(close(
            log_add_exp(1000.0, 1000.0),
            1000.0 + 2f64.ln(),
            1e-15
        ));
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 3.0), 3.0);
        assert_eq!(
            log_add_exp(f64::NEG_INFINITY, f64::NEG_INFINITY),
            f64::NEG_INFINITY
        );
        assert!(close(expit(800.0), 1.0, 1e-15));
        assert!(expit(-800.0) >= 0.0 && expit(-800.0) < 1e-300);
    }
}

#[cfg(test)]
mod reference_tests {
    use super::hyp2f1;

    /// (a, b, c, z, 2F1) computed with mpmath 1.4.1 `hyp2f1` (scipy 1.10.1 agrees to 1e-15),
    /// including the parameter shapes the BG/NBD formulas produce (negative b, negative c).
    const CASES: [(f64, f64, f64, f64, f64); 6] = [
        (2.243, 4.426, 4.219, 0.3, 2.3210724757825294),
        (1.5, 0.2, 3.1, 0.95, 1.167277246538593),
        (2.5, -0.5, 1.7, 0.7, 0.25692227874930945),
        (0.7, 3.2, -0.4, 0.6, -287.07164485466916),
        (10.2, 12.4, 13.2, 0.49, 618.1485847851013),
        (0.0386, -0.207, 3.219, 0.9, 0.9975065215919132),
    ];

    #[test]
    fn hyp2f1_matches_mpmath() {
        for (a, b, c, z, want) in CASES {
            let got = hyp2f1(a, b, c, z).expect("converges");
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{a} {b} {c} {z}: {got} vs {want}"
            );
        }
    }
}
