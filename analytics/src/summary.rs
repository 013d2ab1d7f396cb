//! The per-customer BTYD summary, as the `lifetimes` package defines it (time unit: days).
//!
//! - `frequency` x: the number of *repeat* purchase days (purchase days after the first one).
//! - `recency` t_x: days from the first purchase to the last one (0 when x = 0).
//! - `t` T: days from the first purchase to the evaluation time.
//! - `monetary_value` m: the mean value of the repeat purchase days (0 when x = 0).
//!
//! Valid when every field is finite, `0 <= recency <= t`, `frequency >= 0` is integer-valued,
//! `recency == 0` and `monetary_value == 0` when `frequency == 0`, and `monetary_value >= 0`.

use crate::AnalyticsError;

/// One customer's BTYD summary at an evaluation time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub frequency: f64,
    pub recency: f64,
    pub t: f64,
    pub monetary_value: f64,
}

impl Summary {
    /// A validated summary.
    pub fn new(
        frequency: f64,
        recency: f64,
        t: f64,
        monetary_value: f64,
    ) -> Result<Self, AnalyticsError> {
        let s = Summary {
            frequency,
            recency,
            t,
            monetary_value,
        };
        s.check()
            .map_err(|reason| AnalyticsError::InvalidSummary { index: 0, reason })?;
        Ok(s)
    }

    /// Why this summary breaks the definition, if it does.
    pub fn check(&self) -> Result<(), &'static str> {
        let Summary {
            frequency,
            recency,
            t,
            monetary_value,
        } = *self;
        if !(frequency.is_finite()
            && recency.is_finite()
            && t.is_finite()
            && monetary_value.is_finite())
        {
            return Err("every field must be finite");
        }
        if frequency < 0.0 || frequency.fract() != 0.0 {
            return Err("frequency must be a non-negative integer");
        }
        if recency < 0.0 || recency > t {
            return Err("recency must satisfy 0 <= recency <= t");
        }
        if monetary_value < 0.0 {
            return Err("monetary_value must be non-negative");
        }
        if frequency == 0.0 && (recency != 0.0 || monetary_value != 0.0) {
            return Err("recency and monetary_value must be 0 when frequency is 0");
        }
        Ok(())
    }
}

/// Checks every summary; the error names the first invalid one by its index.
pub fn validate_all(summaries: &[Summary]) -> Result<(), AnalyticsError> {
    for (index, s) in summaries.iter().enumerate() {
        s.check()
            .map_err(|reason| AnalyticsError::InvalidSummary { index, reason })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_refuses_each_broken_rule() {
        assert!(Summary::new(0.0, 0.0, 0.0, 0.0).is_ok());
        assert!(Summary::new(3.0, 20.0, 30.0, 12.5).is_ok());
        for (x, tx, t, m) in [
            (f64::NAN, 0.0, 1.0, 0.0),
            (1.0, f64::INFINITY, 1.0, 1.0),
            (-1.0, 0.0, 1.0, 0.0),
            (1.5, 1.0, 2.0, 1.0),
            (1.0, 3.0, 2.0, 1.0),
            (1.0, -1.0, 2.0, 1.0),
            (0.0, 1.0, 2.0, 0.0),
            (0.0, 0.0, 2.0, 5.0),
            (1.0, 1.0, 2.0, -5.0),
        ] {
            assert!(Summary::new(x, tx, t, m).is_err(), "{x} {tx} {t} {m}");
        }
    }

    #[test]
    fn validate_all_names_the_first_bad_index() {
        let good = Summary::new(1.0, 1.0, 2.0, 1.0).expect("valid");
        let bad = Summary {
            frequency: 0.0,
            recency: 1.0,
            t: 2.0,
            monetary_value: 0.0,
        };
        let err = validate_all(&[good, bad, bad]).expect_err("invalid");
        assert!(matches!(
            err,
            AnalyticsError::InvalidSummary { index: 1, .. }
        ));
        assert!(validate_all(&[]).is_ok());
    }
}
