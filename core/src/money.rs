//! Exact money: integer minor units with an ISO 4217 currency, parsed from decimal strings and
//! never from floating point arithmetic.

pub mod currency;

use std::fmt;

use serde_json::Value;

use crate::money::currency::Currency;

/// Longest amount text echoed back in an error message.
const MAX_ECHO_CHARS: usize = 40;

/// An exact amount: `minor_units` of `currency` (cents for USD, yen for JPY, fils for KWD).
///
/// Any `i64` is a valid amount in any currency, so the fields are public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

/// Why an amount or a currency was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency is not three uppercase letters: the sender must send an ISO 4217 code.
    #[error("currency `{code}` is not a 3-letter uppercase ISO 4217 code")]
    InvalidCurrencyCode { code: String },
    /// The code is well formed but not in the built-in table: add it to `CURRENCIES` if real.
    #[error("unknown currency `{code}`")]
    UnknownCurrency { code: String },
    /// The amount is not a plain decimal: the sender must send digits, an optional `.`, and an
    /// optional leading `-`.
    #[error("amount `{amount}` is not a plain decimal number: {reason}")]
    InvalidAmount { amount: String, reason: String },
    /// The amount is finer than the currency's minor unit: the sender must round it first.
    #[error("amount {amount} has {decimals} {} but {currency} has {allowed}", if *.decimals == 1 { "decimal" } else { "decimals" })]
    TooManyDecimals {
        amount: String,
        decimals: usize,
        currency: &'static str,
        allowed: u8,
    },
    /// The amount does not fit 64-bit minor units: reject it; no real order is that large.
    #[error("amount {amount} {currency} is too large")]
    Overflow {
        amount: String,
        currency: &'static str,
    },
    /// Two amounts in different currencies were combined: convert explicitly first.
    #[error("cannot combine {left} with {right}: the currencies differ")]
    CurrencyMismatch { left: Money, right: Money },
    /// A refund amount was zero or negative: the sender must send a positive amount.
    #[error("amount must be greater than zero, got {amount}")]
    NotPositive { amount: Money },
    /// An amount that may be zero was negative: the sender must send zero or more.
    #[error("amount must not be negative, got {amount}")]
    Negative { amount: Money },
}

impl Money {
    /// An amount from its minor units.
    pub fn new(minor_units: i64, currency: Currency) -> Money {
        Money {
            minor_units,
            currency,
        }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    /// Parses a decimal string such as `"11.77"`, `"12000"` or `"-0.5"` in the currency with
    /// ISO code `currency`. At most the currency's number of decimals is accepted.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, MoneyError> {
        let currency = Currency::parse(currency)?;
        Money::parse_in(amount, currency)
    }

    /// Parses a decimal string in an already known currency.
    pub fn parse_in(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        parse_minor_units(amount, currency).map(|minor_units| Money::new(minor_units, currency))
    }

    /// Reads an amount as event JSON carries it: a decimal string (exact), or, for
    /// convenience, a JSON number, which is read through its shortest round-trip decimal form
    /// (`11.77` reads as `"11.77"`, `12000.0` as `"12000"`). Numbers that only have an
    /// exponent form (huge or tiny) are rejected.
    pub fn from_json(amount: &Value, currency: Currency) -> Result<Money, MoneyError> {
        match amount {
            Value::String(text) => Money::parse_in(text, currency),
            Value::Number(number) => {
                let text = number.to_string();
                if text.contains(['e', 'E']) {
                    return Err(MoneyError::InvalidAmount {
                        amount: shorten(&text),
                        reason: "the number is too large or too small to be an exact amount; send it as a decimal string".to_owned(),
                    });
                }
                // Integral floats print with a ".0" that the sender never meant as a decimal.
                let text = match text.strip_suffix(".0") {
                    Some(integral) if number.is_f64() => integral.to_owned(),
                    _ => text,
                };
                Money::parse_in(&text, currency)
            }
            other => Err(MoneyError::InvalidAmount {
                amount: shorten(&other.to_string()),
                reason: "expected a decimal string such as \"11.77\"".to_owned(),
            }),
        }
    }

    /// The amount with exactly the currency's number of decimals, e.g. `"11.70"`, `"-5"`.
    pub fn to_decimal_string(&self) -> String {
        let digits = usize::from(self.currency.minor_digits());
        let sign = if self.minor_units < 0 { "-" } else { "" };
        let magnitude = self.minor_units.unsigned_abs();
        if digits == 0 {
            return format!("{sign}{magnitude}");
        }
        let divisor = 10u64.pow(u32::from(self.currency.minor_digits()));
        let whole = magnitude / divisor;
        let fraction = magnitude % divisor;
        format!("{sign}{whole}.{fraction:0digits$}")
    }

    /// True when the amount is greater than zero.
    pub fn is_positive(&self) -> bool {
        self.minor_units > 0
    }

    /// The sum of two amounts in the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self,
                right: other,
            });
        }
        match self.minor_units.checked_add(other.minor_units) {
            Some(minor_units) => Ok(Money::new(minor_units, self.currency)),
            None => Err(MoneyError::Overflow {
                amount: format!(
                    "{} + {}",
                    self.to_decimal_string(),
                    other.to_decimal_string()
                ),
                currency: self.currency.code(),
            }),
        }
    }

    /// Refund amounts must be greater than zero.
    pub fn ensure_positive(self) -> Result<Money, MoneyError> {
        if self.is_positive() {
            Ok(self)
        } else {
            Err(MoneyError::NotPositive { amount: self })
        }
    }

    /// Opportunity amounts may be zero but not negative.
    pub fn ensure_not_negative(self) -> Result<Money, MoneyError> {
        if self.minor_units >= 0 {
            Ok(self)
        } else {
            Err(MoneyError::Negative { amount: self })
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

fn parse_minor_units(amount: &str, currency: Currency) -> Result<i64, MoneyError> {
    let invalid = |reason: &str| MoneyError::InvalidAmount {
        amount: shorten(amount),
        reason: reason.to_owned(),
    };
    if amount.is_empty() {
        return Err(invalid("it is empty"));
    }
    let (negative, unsigned) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let only_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if !only_digits(whole) || !fraction.is_none_or(only_digits) {
        return Err(invalid(
            "only digits, one '.' and an optional leading '-' are allowed",
        ));
    }
    if whole.is_empty() {
        return Err(invalid("there must be a digit before the '.'"));
    }
    let fraction = fraction.unwrap_or_default();
    if amount.ends_with('.') {
        return Err(invalid("there must be a digit after the '.'"));
    }
    let allowed = currency.minor_digits();
    if fraction.len() > usize::from(allowed) {
        return Err(MoneyError::TooManyDecimals {
            amount: shorten(amount),
            decimals: fraction.len(),
            currency: currency.code(),
            allowed,
        });
    }
    let overflow = || MoneyError::Overflow {
        amount: shorten(amount),
        currency: currency.code(),
    };
    let padding = usize::from(allowed) - fraction.len();
    let digits = whole
        .bytes()
        .chain(fraction.bytes())
        .chain(std::iter::repeat_n(b'0', padding));
    let mut magnitude: i64 = 0;
    for digit in digits {
        magnitude = magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(digit - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(if negative { -magnitude } else { magnitude })
}

/// Cuts `text` for echoing in a message, so a megabyte of digits never ends up in a log.
fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO_CHARS {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX_ECHO_CHARS).collect();
        format!("{head}…")
    }
}

/// The OpenAPI form of [`Money`]'s JSON.
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "An exact amount of money: a decimal string with the currency's minor digits \
                 (e.g. \"11.70\" USD, \"1200\" JPY) and an ISO 4217 code.",
            ))
            .property(
                "amount",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$")),
            )
            .required("amount")
            .property("currency", <Currency as utoipa::PartialSchema>::schema())
            .required("currency")
            .into()
    }
}

impl utoipa::ToSchema for Money {}

/// JSON form: `{"amount": "11.70", "currency": "USD"}`, the amount as an exact decimal string.
impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut money = serializer.serialize_struct("Money", 2)?;
        money.serialize_field("amount", &self.to_decimal_string())?;
        money.serialize_field("currency", self.currency.code())?;
        money.end()
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            amount: String,
            currency: Currency,
        }
        let wire = Wire::deserialize(deserializer)?;
        Money::parse_in(&wire.amount, wire.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
