//! One customer's analytics under fitted models, in one call: P(alive), expected purchases
//! over a horizon, churn risk and its bucket, expected average value and CLV (the formulas
//! are in [`crate::bgnbd`] and [`crate::gamma_gamma`]).
//!
//! Churn buckets (issue 17): high when risk ≥ 0.7, medium when 0.3 ≤ risk < 0.7, low below 0.3.

use crate::AnalyticsError;
use crate::bgnbd::BgNbdParams;
use crate::gamma_gamma::{GammaGammaParams, customer_lifetime_value};
use crate::summary::Summary;

/// Horizon and CLV settings; the defaults are 90 days, 12 months, 1 % a month.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    /// Horizon of the expected purchases and of the churn risk, in days.
    pub horizon_days: f64,
    pub months: u32,
    /// Monthly discount rate of the CLV.
    pub discount: f64,
}

/// A score option outside its range: which one, the value given and the range allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{parameter}={value} is out of range; it must be {rule}")]
pub struct OutOfRange {
    /// `horizon_days`, `months` or `discount`.
    pub parameter: &'static str,
    pub value: String,
    pub rule: &'static str,
}

impl ScoreOptions {
    /// The options if each is in range: a horizon above 0 and at most 36,500 days, 1 to 600
    /// months, a monthly discount at least 0 and below 1. The one decision behind the API's
    /// parameters and the replay tool's flags.
    pub fn checked(horizon_days: f64, months: u32, discount: f64) -> Result<Self, OutOfRange> {
        if !(horizon_days.is_finite() && horizon_days > 0.0 && horizon_days <= 36_500.0) {
            return Err(OutOfRange {
                parameter: "horizon_days",
                value: horizon_days.to_string(),
                rule: "above 0 and at most 36500 (days)",
            });
        }
        if !(1..=600).contains(&months) {
            return Err(OutOfRange {
                parameter: "months",
                value: months.to_string(),
                rule: "1 to 600",
            });
        }
        if !(discount.is_finite() && (0.0..1.0).contains(&discount)) {
            return Err(OutOfRange {
                parameter: "discount",
                value: discount.to_string(),
                rule: "at least 0 and below 1 (a monthly rate)",
            });
        }
        Ok(ScoreOptions {
            horizon_days,
            months,
            discount,
        })
    }
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            horizon_days: 90.0,
            months: 12,
            discount: 0.01,
        }
    }
}

/// Churn-risk bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChurnBucket {
    Low,
    Medium,
    High,
}

impl ChurnBucket {
    /// The bucket of a churn risk; NaN (never produced by this crate) counts as high.
    pub fn of(risk: f64) -> ChurnBucket {
        if risk < 0.3 {
            ChurnBucket::Low
        } else if risk < 0.7 {
            ChurnBucket::Medium
        } else {
            ChurnBucket::High
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChurnBucket::Low => "low",
            ChurnBucket::Medium => "medium",
            ChurnBucket::High => "high",
        }
    }
}

/// Everything the models say about one customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerScore {
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub churn_risk: f64,
    pub churn_bucket: ChurnBucket,
    pub expected_average_value: f64,
    pub clv: f64,
}

/// Scores one customer (module docs).
pub fn score(
    bg: &BgNbdParams,
    gg: &GammaGammaParams,
    s: &Summary,
    options: &ScoreOptions,
) -> Result<CustomerScore, AnalyticsError> {
    let churn_risk = bg.churn_risk(options.horizon_days, s)?;
    Ok(CustomerScore {
        p_alive: bg.p_alive(s)?,
        expected_purchases: bg.conditional_expected_purchases(options.horizon_days, s)?,
        churn_risk,
        churn_bucket: ChurnBucket::of(churn_risk),
        expected_average_value: gg.conditional_expected_average_value(s)?,
        clv: customer_lifetime_value(bg, gg, s, options.months, options.discount)?,
    })
}

/// Below this many customers [`score_many`] scores on the calling thread.
const PARALLEL_FROM: usize = 2_000;

/// [`score`] for every summary, on the machine's cores (each result is exactly what
/// [`score`] gives; the order is the input's). The first error stops it.
pub fn score_many(
    bg: &BgNbdParams,
    gg: &GammaGammaParams,
    summaries: &[Summary],
    options: &ScoreOptions,
) -> Result<Vec<CustomerScore>, AnalyticsError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads <= 1 || summaries.len() < PARALLEL_FROM {
        return summaries
            .iter()
            .map(|s| score(bg, gg, s, options))
            .collect();
    }
    let size = summaries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = summaries
            .chunks(size)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|s| score(bg, gg, s, options))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(summaries.len());
        for handle in handles {
            match handle.join() {
                Ok(scores) => out.extend(scores?),
                // The scores are arithmetic and do not panic.
                Err(_) => return Err(AnalyticsError::Numerical("a scoring thread failed")),
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_named() {
        assert_eq!(
            ScoreOptions::checked(90.0, 12, 0.01),
            Ok(ScoreOptions::default())
        );
        for (h, m, d, name) in [
            (0.0, 12, 0.01, "horizon_days"),
            (f64::NAN, 12, 0.01, "horizon_days"),
            (36_501.0, 12, 0.01, "horizon_days"),
            (90.0, 0, 0.01, "months"),
            (90.0, 601, 0.01, "months"),
            (90.0, 12, 1.0, "discount"),
            (90.0, 12, -0.1, "discount"),
        ] {
            let error = ScoreOptions::checked(h, m, d).expect_err(name);
            assert_eq!(error.parameter, name);
        }
    }

    #[test]
    fn buckets_at_the_documented_edges() {
        assert_eq!(ChurnBucket::of(0.0), ChurnBucket::Low);
        assert_eq!(ChurnBucket::of(0.2999), ChurnBucket::Low);
        assert_eq!(ChurnBucket::of(0.3), ChurnBucket::Medium);
        assert_eq!(ChurnBucket::of(0.6999), ChurnBucket::Medium);
        assert_eq!(ChurnBucket::of(0.7), ChurnBucket::High);
        assert_eq!(ChurnBucket::of(f64::NAN), ChurnBucket::High);
    }

    #[test]
    fn score_many_is_score_for_each_in_order() {
        let bg = BgNbdParams::new(0.243, 4.414, 0.793, 2.426).expect("valid");
        let gg = GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid");
        let summaries: Vec<Summary> = (0..5_003)
            .map(|i| {
                let x = f64::from(i % 9);
                let t = 40.0 + f64::from(i % 300);
                if x == 0.0 {
                    Summary::new(0.0, 0.0, t, 0.0)
                } else {
                    Summary::new(x, t * 0.5, t, 10.0 + f64::from(i % 50))
                }
                .expect("valid")
            })
            .collect();
        let options = ScoreOptions::default();
        let many = score_many(&bg, &gg, &summaries, &options).expect("defined");
        assert_eq!(many.len(), summaries.len());
        for (s, got) in summaries.iter().zip(&many) {
            assert_eq!(*got, score(&bg, &gg, s, &options).expect("defined"));
        }
        assert!(
            score_many(&bg, &gg, &[], &options)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn score_agrees_with_the_single_functions() {
        let bg = BgNbdParams::new(0.243, 4.414, 0.793, 2.426).expect("valid");
        let gg = GammaGammaParams::new(6.25, 3.74, 15.44).expect("valid");
        let s = Summary::new(2.0, 30.43, 38.86, 30.0).expect("valid");
        let got = score(&bg, &gg, &s, &ScoreOptions::default()).expect("defined");
        // lifetimes 0.11.3 CLV for this customer (see gamma_gamma's tests).
        assert!((got.clv - 175.77392400173167).abs() < 1e-8);
        assert_eq!(got.p_alive, bg.p_alive(&s).expect("defined"));
        assert_eq!(got.churn_bucket, ChurnBucket::of(got.churn_risk));
        let bad = ScoreOptions {
            horizon_days: f64::NAN,
            ..ScoreOptions::default()
        };
        assert!(score(&bg, &gg, &s, &bad).is_err());
    }
}
