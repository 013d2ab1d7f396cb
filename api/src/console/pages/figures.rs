//! Helpers the pipeline, service, analytics and operations pages share: exact sums of the
//! API's money values, a failed section shown in place (a report the API cannot compute yet
//! must not hide the rest of the page), and percentages as text.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use crm_core::money::Money;
use maud::{Markup, html};
use serde_json::Value;

use crate::console::Failure;

/// Exact totals per currency code of money values (`{"amount": "1.50", "currency": "EUR"}`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals(BTreeMap<String, Money>);

impl Totals {
    /// Adds one money value; `None` when it is not one, or the sum overflows.
    pub fn add(&mut self, value: &Value) -> Option<()> {
        let money: Money = serde_json::from_value(value.clone()).ok()?;
        let code = money.currency.code().to_owned();
        match self.0.get_mut(&code) {
            Some(total) => {
                total.minor_units = total.minor_units.checked_add(money.minor_units)?;
            }
            None => {
                self.0.insert(code, money);
            }
        }
        Some(())
    }

    /// The total in `code` as the API writes amounts (`"1250.00"`).
    pub fn amount(&self, code: &str) -> Option<String> {
        self.0.get(code).map(Money::to_decimal_string)
    }
}

/// A money value's amount as a number, for charts (tables show the exact text).
pub fn approximate(value: &Value) -> f64 {
    value["amount"]
        .as_str()
        .and_then(|amount| amount.parse().ok())
        .unwrap_or(0.0)
}

/// A share (0..=1) as a percentage with one decimal: `0.125` → `12.5 %`.
pub fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1} %", share * 100.0)
    } else {
        "—".to_owned()
    }
}

/// A read a section of a page depends on: a refusal for the key (401, 403) fails the page,
/// anything else (a report that cannot be computed from this data, 422; not ready, 503)
/// leaves the section to say so.
pub fn section(result: Result<Value, Failure>) -> Result<Result<Value, Failure>, Failure> {
    match result {
        Err(failure)
            if matches!(
                failure.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) =>
        {
            Err(failure)
        }
        other => Ok(other),
    }
}

/// What a section shows when its read failed: the API's detail, in words.
pub fn unavailable(id: &str, failure: &Failure) -> Markup {
    html! {
        p #(id) .unavailable role="status" {
            "Not available (status " (failure.status.as_u16()) "): " (failure.detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_summed_exactly_per_currency() {
        let mut totals = Totals::default();
        for value in [
            json!({"amount": "0.10", "currency": "EUR"}),
            json!({"amount": "0.20", "currency": "EUR"}),
            json!({"amount": "5", "currency": "JPY"}),
        ] {
            totals.add(&value).expect("money");
        }
        assert_eq!(totals.amount("EUR").as_deref(), Some("0.30"));
        assert_eq!(totals.amount("JPY").as_deref(), Some("5"));
        assert_eq!(totals.amount("USD"), None);
        assert!(
            totals
                .add(&json!({"amount": "x", "currency": "EUR"}))
                .is_none()
        );
        assert!(totals.add(&json!(null)).is_none());
        let mut full = Totals::default();
        full.add(&json!({"amount": "92233720368547758.07", "currency": "EUR"}))
            .expect("the largest amount");
        assert!(
            full.add(&json!({"amount": "0.01", "currency": "EUR"}))
                .is_none()
        );
    }

    #[test]
    fn only_refusals_fail_the_page() {
        let failure = |status| Failure {
            status,
            detail: "d".into(),
        };
        assert!(section(Err(failure(StatusCode::FORBIDDEN))).is_err());
        assert!(matches!(
            section(Err(failure(StatusCode::UNPROCESSABLE_ENTITY))),
            Ok(Err(_))
        ));
        assert!(matches!(section(Ok(json!({}))), Ok(Ok(_))));
        assert_eq!(percent(0.125), "12.5 %");
        assert_eq!(percent(f64::NAN), "—");
        assert_eq!(
            approximate(&json!({"amount": "12.50", "currency": "EUR"})),
            12.5
        );
        assert_eq!(approximate(&json!(null)), 0.0);
    }
}
