//! The BG/NBD purchase model (Fader, Hardie & Lee 2005, "Counting your customers the easy
//! way"), as `lifetimes` 0.11.3 `BetaGeoFitter` defines it.
//!
//! While alive a customer buys at Poisson rate λ ~ Gamma(r, α); after each purchase it drops
//! out with probability p ~ Beta(a, b). With the summary (x, t_x, T) of [`Summary`]:
//!
//! ```text
//! ln L = ln Γ(r+x) − ln Γ(r) + r ln α + ln Γ(a+b) + ln Γ(b+x) − ln Γ(b) − ln Γ(a+b+x)
//!      + logsumexp( −(r+x) ln(α+T),  [x>0] ( ln a − ln(b+x−1) − (r+x) ln(α+t_x) ) )
//! ```
//! The second term of the logsumexp exists only where x > 0, so b < 1 gives no NaN.
//!
//! **Fit** (as lifetimes): times are scaled by 1/max T; minimise
//! `−(Σ ln L)/n + penalizer · (r² + α² + a² + b²)` (scaled α) over ln-parameters with
//! Nelder-Mead ([`crate::optimize`], tol 1e-7, at most 2000 iterations), start point
//! ln-parameters all 0.1 (lifetimes' default `initial_params`); α is then unscaled. Above
//! 20,000 customers the search first runs on every k-th customer (about 10,000) and the full
//! fit starts from that optimum (on the 100,000-customer benchmark: 234 full-data evaluations
//! instead of 650); the
//! reported iterations and evaluations include both runs. The
//! reported log-likelihood is Σ ln L in days at the fitted parameters (no penalizer).
//! (lifetimes 0.11.3 itself minimises with BFGS and autograd gradients; the maximum is the same.)
//!
//! **P(alive)** = 1 when x = 0, else 1 / (1 + a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)).
//!
//! **E[X(T, T+t) | x, t_x, T]** (FHL 2005 eq. 10, lifetimes
//! `conditional_expected_number_of_purchases_up_to_time`):
//! `(a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x−1; z)] · P(alive)`,
//! z = t/(α+T+t). Euler's transformation turns the bracketed product into
//! `(1−z)^(a−1) · 2F1(a+b−1−r, a−1; a+b+x−1; z)`, whose parameters do not grow with x;
//! that is what is computed. a = 1 exactly is refused (the formula divides by a − 1).
//! A new customer's E[X(t)] (eq. 9) is the same with x = t_x = T = 0.
//!
//! **Churn risk**: P(no purchase in (T, T+N] | x, t_x, T). A customer dead at T buys
//! nothing; one alive at T has λ | alive, history ~ Gamma(r+x, α+T), and since dropout only
//! happens right after a purchase, it makes no purchase in the window with probability
//! E[e^(−λN)] = ((α+T)/(α+T+N))^(r+x). Hence
//! `churn = 1 − P(alive) + P(alive) · ((α+T)/(α+T+N))^(r+x)`
//! (the n = 0 case of Fader & Hardie's P(X(T, T+t) = n | history); lifetimes 0.11.3 has no
//! such method for BG/NBD; a Monte Carlo test checks it).

use crate::AnalyticsError;
use crate::optimize::nelder_mead;
use crate::parallel::chunked_sum;
use crate::special::{expit, hyp2f1_scaled, ln_gamma, log_add_exp};
use crate::summary::{Summary, validate_all};

/// BG/NBD parameters (α in days).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Fitting options; the defaults are lifetimes': no penalizer, tol 1e-7, 2000 iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    pub penalizer_coef: f64,
    pub tol: f64,
    pub max_iter: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            penalizer_coef: 0.0,
            tol: 1e-7,
            max_iter: 2000,
        }
    }
}

/// A fitted BG/NBD model and how the fit went.
#[derive(Debug, Clone, PartialEq)]
pub struct BgNbdFit {
    pub params: BgNbdParams,
    /// Σ ln L over the customers, in days, at `params` (without the penalizer).
    pub log_likelihood: f64,
    /// Nelder-Mead iterations and objective evaluations, warm-start runs included.
    pub iterations: usize,
    pub evaluations: usize,
    pub converged: bool,
    pub customers: usize,
}

impl BgNbdParams {
    /// Validated parameters: all finite and > 0.
    pub fn new(r: f64, alpha: f64, a: f64, b: f64) -> Result<Self, AnalyticsError> {
        let p = BgNbdParams { r, alpha, a, b };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), AnalyticsError> {
        for v in [self.r, self.alpha, self.a, self.b] {
            if !(v.is_finite() && v > 0.0) {
                return Err(AnalyticsError::InvalidArgument {
                    name: "bg_nbd params",
                    reason: "r, alpha, a, b must be finite and > 0",
                });
            }
        }
        Ok(())
    }

    /// ln L of one customer (see the module docs).
    pub fn log_likelihood_one(&self, s: &Summary) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let x = s.frequency;
        let head =
            ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) + ln_gamma(b + x)
                - ln_gamma(b)
                - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + s.t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + s.recency).ln();
            head + log_add_exp(a3, a4)
        } else {
            head + a3
        }
    }

    /// Σ ln L over `summaries`.
    pub fn log_likelihood(&self, summaries: &[Summary]) -> Result<f64, AnalyticsError> {
        self.check()?;
        validate_all(summaries)?;
        Ok(Prepared::new(summaries, 1.0).sum_ll(self))
    }

    /// P(alive at T | x, t_x, T).
    pub fn p_alive(&self, s: &Summary) -> Result<f64, AnalyticsError> {
        self.check()?;
        s.check()
            .map_err(|reason| AnalyticsError::InvalidSummary { index: 0, reason })?;
        Ok(self.p_alive_unchecked(s))
    }

    fn p_alive_unchecked(&self, s: &Summary) -> f64 {
        let x = s.frequency;
        if x == 0.0 {
            return 1.0;
        }
        let log_div = (self.r + x) * ((self.alpha + s.t) / (self.alpha + s.recency)).ln()
            + (self.a / (self.b + x - 1.0)).ln();
        expit(-log_div)
    }

    /// E[number of purchases in (T, T+t] | x, t_x, T] (lifetimes
    /// `conditional_expected_number_of_purchases_up_to_time`).
    pub fn conditional_expected_purchases(
        &self,
        t: f64,
        s: &Summary,
    ) -> Result<f64, AnalyticsError> {
        self.check()?;
        s.check()
            .map_err(|reason| AnalyticsError::InvalidSummary { index: 0, reason })?;
        check_horizon(t)?;
        let unconditional = self.expected_given(t, s.frequency, s.t)?;
        Ok(unconditional * self.p_alive_unchecked(s))
    }

    /// E[X(t)] for a new customer (lifetimes `expected_number_of_purchases_up_to_time`).
    pub fn expected_purchases_new_customer(&self, t: f64) -> Result<f64, AnalyticsError> {
        self.check()?;
        check_horizon(t)?;
        self.expected_given(t, 0.0, 0.0)
    }

    /// (a+b+x−1)/(a−1) · [1 − (1−z)^(a−1) 2F1(a+b−1−r, a−1; a+b+x−1; z)].
    fn expected_given(&self, t: f64, x: f64, big_t: f64) -> Result<f64, AnalyticsError> {
        let BgNbdParams { r, alpha, a, b } = *self;
        if t == 0.0 {
            return Ok(0.0);
        }
        if a == 1.0 {
            return Err(AnalyticsError::Undefined(
                "BG/NBD expected purchases need a != 1",
            ));
        }
        let z = t / (alpha + big_t + t);
        let ln_one_minus_z = ((alpha + big_t) / (alpha + big_t + t)).ln();
        let c = a + b + x - 1.0;
        // (1 − z)^(a−1) · 2F1(…), in log space: the series may be huge where the factor is
        // tiny.
        let (f, scale) = hyp2f1_scaled(a + b - 1.0 - r, a - 1.0, c, z)?;
        let second = 1.0 - ((a - 1.0) * ln_one_minus_z + scale).exp() * f;
        let v = c / (a - 1.0) * second;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(AnalyticsError::Numerical(
                "BG/NBD expected purchases not finite",
            ))
        }
    }

    /// Churn risk: P(no purchase in (T, T+N] | x, t_x, T) (see the module docs).
    pub fn churn_risk(&self, horizon_days: f64, s: &Summary) -> Result<f64, AnalyticsError> {
        self.check()?;
        s.check()
            .map_err(|reason| AnalyticsError::InvalidSummary { index: 0, reason })?;
        check_horizon(horizon_days)?;
        let pa = self.p_alive_unchecked(s);
        let stay_quiet = ((self.r + s.frequency)
            * ((self.alpha + s.t) / (self.alpha + s.t + horizon_days)).ln())
        .exp();
        Ok((1.0 - pa + pa * stay_quiet).clamp(0.0, 1.0))
    }
}

/// Customers in the warm-start sample of a large fit.
const WARM_START_SAMPLE: usize = 10_000;

fn check_horizon(t: f64) -> Result<(), AnalyticsError> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err(AnalyticsError::InvalidArgument {
            name: "horizon",
            reason: "must be finite and >= 0 days",
        })
    }
}

/// The summaries arranged for fast likelihood evaluation: the ln Γ terms depend on x only,
/// so they are computed once per distinct frequency per evaluation.
struct Prepared {
    /// Distinct frequencies and how many customers have each.
    freqs: Vec<(f64, f64)>,
    /// T of the customers with x = 0.
    zero_t: Vec<f64>,
    /// (index into `freqs`, t_x, T) of the customers with x > 0.
    repeat: Vec<(usize, f64, f64)>,
    n: f64,
}

impl Prepared {
    fn new(summaries: &[Summary], scale: f64) -> Self {
        let mut distinct: Vec<f64> = summaries.iter().map(|s| s.frequency).collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let mut freqs: Vec<(f64, f64)> = distinct.iter().map(|&x| (x, 0.0)).collect();
        let mut zero_t = Vec::new();
        let mut repeat = Vec::new();
        for s in summaries {
            let i = distinct.partition_point(|&x| x < s.frequency);
            if let Some(slot) = freqs.get_mut(i) {
                slot.1 += 1.0;
            }
            if s.frequency == 0.0 {
                zero_t.push(s.t * scale);
            } else {
                repeat.push((i, s.recency * scale, s.t * scale));
            }
        }
        Prepared {
            freqs,
            zero_t,
            repeat,
            n: summaries.len() as f64,
        }
    }

    fn sum_ll(&self, p: &BgNbdParams) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *p;
        let base = -ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) - ln_gamma(b);
        let per_x: Vec<(f64, f64)> = self
            .freqs
            .iter()
            .map(|&(x, _)| {
                let head = ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x);
                let a4_const = if x > 0.0 {
                    a.ln() - (b + x - 1.0).ln()
                } else {
                    0.0
                };
                (head, a4_const)
            })
            .collect();
        let mut total: f64 = self
            .freqs
            .iter()
            .zip(&per_x)
            .map(|(&(_, count), &(head, _))| count * (base + head))
            .sum();
        total += chunked_sum(self.zero_t.len(), |range| {
            self.zero_t[range]
                .iter()
                .map(|&t| -r * (alpha + t).ln())
                .sum::<f64>()
        });
        total += chunked_sum(self.repeat.len(), |range| {
            self.repeat[range]
                .iter()
                .map(|&(i, tx, t)| {
                    let x = self.freqs[i].0;
                    let a3 = -(r + x) * (alpha + t).ln();
                    let a4 = per_x[i].1 - (r + x) * (alpha + tx).ln();
                    log_add_exp(a3, a4)
                })
                .sum::<f64>()
        });
        total
    }
}

/// Fits BG/NBD by maximum likelihood (see the module docs for the objective, optimiser,
/// start point and tolerance).
pub fn fit(summaries: &[Summary], options: &FitOptions) -> Result<BgNbdFit, AnalyticsError> {
    validate_all(summaries)?;
    if !(options.penalizer_coef.is_finite() && options.penalizer_coef >= 0.0) {
        return Err(AnalyticsError::InvalidArgument {
            name: "penalizer_coef",
            reason: "must be finite and >= 0",
        });
    }
    if !(options.tol.is_finite() && options.tol > 0.0) {
        return Err(AnalyticsError::InvalidArgument {
            name: "tol",
            reason: "must be finite and > 0",
        });
    }
    if summaries.is_empty() {
        return Err(AnalyticsError::NotEnoughData {
            model: "BG/NBD",
            reason: "no customers",
        });
    }
    if summaries.iter().all(|s| s.frequency == 0.0) {
        return Err(AnalyticsError::NotEnoughData {
            model: "BG/NBD",
            reason: "no customer has a repeat purchase",
        });
    }
    let max_t = summaries.iter().map(|s| s.t).fold(0.0_f64, f64::max);
    let scale = if max_t > 0.0 { 1.0 / max_t } else { 1.0 };
    let pen = options.penalizer_coef;
    let objective = |data: &Prepared, lp: &[f64]| {
        let p = BgNbdParams {
            r: lp[0].exp(),
            alpha: lp[1].exp(),
            a: lp[2].exp(),
            b: lp[3].exp(),
        };
        if p.check().is_err() {
            return f64::INFINITY;
        }
        let penalty = pen * (p.r * p.r + p.alpha * p.alpha + p.a * p.a + p.b * p.b);
        -data.sum_ll(&p) / data.n + penalty
    };
    // Warm start (module docs): on large inputs, first fit every k-th customer from
    // lifetimes' start, then the whole set from there.
    let mut start = vec![0.1; 4];
    let mut warm = (0, 0);
    if summaries.len() > 2 * WARM_START_SAMPLE {
        let step = summaries.len() / WARM_START_SAMPLE;
        let sample: Vec<Summary> = summaries.iter().step_by(step).copied().collect();
        if sample.iter().any(|s| s.frequency > 0.0) {
            let small = Prepared::new(&sample, scale);
            let m = nelder_mead(
                |lp| objective(&small, lp),
                &start,
                options.tol,
                options.max_iter,
            );
            if m.value.is_finite() {
                start = m.x;
                warm = (m.iterations, m.evaluations);
            }
        }
    }
    let data = Prepared::new(summaries, scale);
    let mut m = nelder_mead(
        |lp| objective(&data, lp),
        &start,
        options.tol,
        options.max_iter,
    );
    m.iterations += warm.0;
    m.evaluations += warm.1;
    let params = BgNbdParams {
        r: m.x[0].exp(),
        alpha: m.x[1].exp() / scale,
        a: m.x[2].exp(),
        b: m.x[3].exp(),
    };
    params.check().map_err(|_| {
        AnalyticsError::Numerical("BG/NBD fit left the parameter space (try a penalizer)")
    })?;
    let log_likelihood = Prepared::new(summaries, 1.0).sum_ll(&params);
    if !log_likelihood.is_finite() {
        return Err(AnalyticsError::Numerical(
            "BG/NBD log-likelihood not finite",
        ));
    }
    Ok(BgNbdFit {
        params,
        log_likelihood,
        iterations: m.iterations,
        evaluations: m.evaluations,
        converged: m.converged,
        customers: summaries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CDNOW-like parameters and values computed with lifetimes 0.11.3 (scipy 1.10.1):
    /// `conditional_probability_alive` and `conditional_expected_number_of_purchases_up_to_time(39, …)`.
    const P: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    const LIFETIMES: [(f64, f64, f64, f64, f64); 5] = [
        (0.0, 0.0, 38.86, 1.0, 0.19509805201125396),
        (2.0, 30.43, 38.86, 0.726578570080673, 1.2260281747671318),
        (7.0, 35.0, 38.86, 0.8437678219280121, 4.38748785448785),
        (1.0, 2.0, 38.86, 0.22187090056481518, 0.2125463006511983),
        (20.0, 30.0, 40.0, 0.13385728248949139, 1.8578680579859468),
    ];

    fn s(x: f64, tx: f64, t: f64) -> Summary {
        Summary::new(x, tx, t, if x > 0.0 { 1.0 } else { 0.0 }).expect("valid")
    }

    #[test]
    fn p_alive_and_expected_purchases_match_lifetimes() {
        for (x, tx, t, pa, e) in LIFETIMES {
            let c = s(x, tx, t);
            let got_pa = P.p_alive(&c).expect("defined");
            let got_e = P.conditional_expected_purchases(39.0, &c).expect("defined");
            assert!(
                (got_pa - pa).abs() <= 1e-12,
                "p_alive {x}: {got_pa} vs {pa}"
            );
            assert!((got_e - e).abs() <= 1e-10 * e, "E {x}: {got_e} vs {e}");
        }
        // lifetimes `expected_number_of_purchases_up_to_time(39)`.
        let new = P.expected_purchases_new_customer(39.0).expect("defined");
        assert!((new - 1.1967231933207985).abs() < 1e-10, "{new}");
        assert_eq!(
            P.conditional_expected_purchases(0.0, &s(3.0, 5.0, 9.0)),
            Ok(0.0)
        );
    }

    #[test]
    fn log_likelihood_hand_checked_for_one_time_buyer() {
        // x = 0: ln L = r ln α − r ln(α+T) + ln Γ(a+b) + ln Γ(b) − ln Γ(b) − ln Γ(a+b) = r ln(α/(α+T)).
        let ll = P.log_likelihood(&[s(0.0, 0.0, 10.0)]).expect("valid");
        assert!((ll - P.r * (P.alpha / (P.alpha + 10.0)).ln()).abs() < 1e-12);
        // b < 1 and x = 0: no NaN.
        let p = BgNbdParams::new(0.5, 2.0, 0.5, 0.3).expect("valid");
        assert!(
            p.log_likelihood(&[s(0.0, 0.0, 5.0), s(1.0, 1.0, 5.0)])
                .expect("ok")
                .is_finite()
        );
        let one = p.log_likelihood_one(&s(1.0, 1.0, 5.0));
        assert!((one - p.log_likelihood(&[s(1.0, 1.0, 5.0)]).expect("ok")).abs() < 1e-12);
    }

    #[test]
    fn churn_risk_is_one_time_buyer_aware_and_bounded() {
        let fresh = P.churn_risk(90.0, &s(0.0, 0.0, 1.0)).expect("defined");
        let old = P.churn_risk(90.0, &s(0.0, 0.0, 700.0)).expect("defined");
        assert!(
            old > fresh,
            "a one-time buyer from long ago is riskier: {old} vs {fresh}"
        );
        assert_eq!(P.p_alive(&s(0.0, 0.0, 700.0)), Ok(1.0));
        assert_eq!(P.churn_risk(0.0, &s(4.0, 5.0, 9.0)), Ok(1.0 - 0.0));
        for c in [s(0.0, 0.0, 0.0), s(50.0, 700.0, 700.0), s(1.0, 0.0, 700.0)] {
            let v = P.churn_risk(90.0, &c).expect("defined");
            assert!((0.0..=1.0).contains(&v), "{v}");
        }
    }

    #[test]
    fn refuses_bad_input_without_panicking() {
        let bad = Summary {
            frequency: f64::NAN,
            recency: 0.0,
            t: 1.0,
            monetary_value: 0.0,
        };
        assert!(P.p_alive(&bad).is_err());
        assert!(
            P.conditional_expected_purchases(f64::NAN, &s(1.0, 1.0, 2.0))
                .is_err()
        );
        assert!(P.churn_risk(-1.0, &s(1.0, 1.0, 2.0)).is_err());
        assert!(BgNbdParams::new(0.0, 1.0, 1.0, 1.0).is_err());
        assert!(fit(&[], &FitOptions::default()).is_err());
        assert!(fit(&[s(0.0, 0.0, 0.0)], &FitOptions::default()).is_err());
        let pen = FitOptions {
            penalizer_coef: -1.0,
            ..FitOptions::default()
        };
        assert!(fit(&[s(1.0, 1.0, 2.0)], &pen).is_err());
        // Huge values: an answer or an error, never a panic or NaN.
        let huge = s(1e9, 1e12, 1e12);
        for v in [
            P.p_alive(&huge),
            P.churn_risk(90.0, &huge),
            P.conditional_expected_purchases(90.0, &huge),
        ]
        .into_iter()
        .flatten()
        {
            assert!(v.is_finite());
        }
        if let Ok(f) = fit(
            &[huge, s(0.0, 0.0, 0.0), s(2.0, 1e-9, 1e-9)],
            &FitOptions::default(),
        ) {
            assert!(f.log_likelihood.is_finite());
        }
    }

    #[test]
    fn fit_on_a_small_data_set_reaches_a_stationary_point() {
        let data = [
            s(0.0, 0.0, 30.0),
            s(0.0, 0.0, 25.0),
            s(1.0, 10.0, 30.0),
            s(3.0, 20.0, 28.0),
            s(0.0, 0.0, 20.0),
            s(5.0, 27.0, 30.0),
            s(2.0, 5.0, 29.0),
            s(0.0, 0.0, 15.0),
        ];
        let f = fit(&data, &FitOptions::default()).expect("fits");
        assert!(f.converged, "{f:?}");
        // Moving any parameter by 1 % lowers the likelihood.
        let ll = f.params.log_likelihood(&data).expect("ok");
        assert!((ll - f.log_likelihood).abs() < 1e-9);
        let p = f.params;
        for k in 0..4 {
            for m in [0.99, 1.01] {
                let mut q = [p.r, p.alpha, p.a, p.b];
                q[k] *= m;
                let moved = BgNbdParams::new(q[0], q[1], q[2], q[3]).expect("valid");
                assert!(
                    moved.log_likelihood(&data).expect("ok") <= ll + 1e-9,
                    "param {k} x{m}"
                );
            }
        }
    }
}
