//! Tests of money parsing, rendering and the amount sign rules.

use serde_json::json;

use crate::money::currency::{CURRENCIES, Currency};
use crate::money::{Money, MoneyError};

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

#[test]
fn parses_decimal_strings_into_minor_units() {
    assert_eq!(Money::parse("11.77", "USD").unwrap().minor_units, 1177);
    assert_eq!(Money::parse("12000", "EUR").unwrap().minor_units, 1_200_000);
    assert_eq!(
        Money::parse("12000.5", "EUR").unwrap().minor_units,
        1_200_050
    );
    assert_eq!(Money::parse("-0.5", "EUR").unwrap().minor_units, -50);
    assert_eq!(Money::parse("12000", "JPY").unwrap().minor_units, 12000);
    assert_eq!(Money::parse("1.5", "KWD").unwrap().minor_units, 1500);
}

#[test]
fn renders_exactly_the_currencys_digits() {
    assert_eq!(
        Money::parse("11.7", "USD").unwrap().to_decimal_string(),
        "11.70"
    );
    assert_eq!(
        Money::parse("-0.05", "USD").unwrap().to_decimal_string(),
        "-0.05"
    );
    assert_eq!(
        Money::parse("12000", "JPY").unwrap().to_decimal_string(),
        "12000"
    );
    assert_eq!(
        Money::parse("1.5", "BHD").unwrap().to_decimal_string(),
        "1.500"
    );
    assert_eq!(
        Money::new(i64::MIN, usd()).to_decimal_string(),
        "-92233720368547758.08"
    );
    assert_eq!(
        Money::parse("11.7", "USD").unwrap().to_string(),
        "11.70 USD"
    );
}

#[test]
fn rejects_more_decimals_than_the_currency_has() {
    let err = Money::parse("11.777", "USD").unwrap_err();
    assert_eq!(
        err.to_string(),
        "amount 11.777 has 3 decimals but USD has 2"
    );
    let err = Money::parse("5.5", "JPY").unwrap_err();
    assert_eq!(err.to_string(), "amount 5.5 has 1 decimal but JPY has 0");
}

#[test]
fn rejects_signs_exponents_spaces_and_empty_amounts() {
    for bad in [
        "", "+5", "--5", "1e5", "1E5", " 5", "5 ", "5.", ".5", "-", "1.2.3", "1,5", "0x10", "١",
    ] {
        let err = Money::parse(bad, "USD").unwrap_err();
        assert!(
            matches!(err, MoneyError::InvalidAmount { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn rejects_amounts_that_overflow_64_bit_minor_units() {
    assert_eq!(
        Money::parse("92233720368547758.07", "USD")
            .unwrap()
            .minor_units,
        i64::MAX
    );
    let err = Money::parse("92233720368547758.08", "USD").unwrap_err();
    assert!(matches!(err, MoneyError::Overflow { .. }), "{err}");
    let err = Money::parse(&"9".repeat(10_000), "USD").unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn rejects_unknown_and_malformed_currency_codes_naming_them() {
    assert_eq!(
        Money::parse("1", "XYZ").unwrap_err().to_string(),
        "unknown currency `XYZ`"
    );
    assert_eq!(
        Money::parse("1", "usd").unwrap_err().to_string(),
        "currency `usd` is not a 3-letter uppercase ISO 4217 code"
    );
    assert!(Currency::parse("").is_err());
    assert!(Currency::parse("EURO").is_err());
}

#[test]
fn knows_the_common_currencies_and_their_digits() {
    for code in [
        "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "CNY", "HKD", "SGD", "SEK", "NOK",
        "DKK", "PLN", "CZK", "HUF", "INR", "BRL", "MXN", "ZAR", "KRW", "TRY", "ILS", "AED", "SAR",
        "RUB", "THB", "IDR", "MYR", "PHP", "TWD", "CLP", "COP", "ARS", "EGP", "NGN", "KES", "VND",
    ] {
        assert!(Currency::parse(code).is_ok(), "{code}");
    }
    for code in ["BHD", "KWD", "OMR", "JOD", "TND"] {
        assert_eq!(Currency::parse(code).unwrap().minor_digits(), 3, "{code}");
    }
    for code in ["JPY", "KRW", "CLP", "VND", "ISK"] {
        assert_eq!(Currency::parse(code).unwrap().minor_digits(), 0, "{code}");
    }
    let mut codes: Vec<_> = CURRENCIES.iter().map(|(code, _)| *code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), CURRENCIES.len(), "a currency is listed twice");
}

#[test]
fn reads_json_strings_exactly_and_json_numbers_by_their_shortest_form() {
    let read = |value: serde_json::Value| Money::from_json(&value, usd());
    assert_eq!(read(json!("11.77")).unwrap().minor_units, 1177);
    assert_eq!(read(json!(11.77)).unwrap().minor_units, 1177);
    assert_eq!(read(json!(12000)).unwrap().minor_units, 1_200_000);
    assert_eq!(read(json!(-3)).unwrap().minor_units, -300);
    let jpy = Currency::parse("JPY").unwrap();
    assert_eq!(
        Money::from_json(&json!(12000.0), jpy).unwrap().minor_units,
        12000
    );
    assert!(read(json!(11.777)).is_err());
    assert!(read(json!(1e300)).is_err());
    assert!(read(json!(1e-7)).is_err());
    assert!(read(json!(u64::MAX)).is_err());
    assert!(read(json!(true)).is_err());
    assert!(read(json!(null)).is_err());
}

#[test]
fn order_amounts_must_be_positive_and_opportunity_amounts_not_negative() {
    let zero = Money::zero(usd());
    let minus = Money::new(-1, usd());
    assert_eq!(
        zero.ensure_positive().unwrap_err().to_string(),
        "amount must be greater than zero, got 0.00 USD"
    );
    assert!(minus.ensure_positive().is_err());
    assert!(zero.ensure_not_negative().is_ok());
    assert_eq!(
        minus.ensure_not_negative().unwrap_err().to_string(),
        "amount must not be negative, got -0.01 USD"
    );
}

#[test]
fn adds_only_amounts_of_the_same_currency() {
    let one = Money::new(100, usd());
    assert_eq!(one.checked_add(one).unwrap().minor_units, 200);
    let eur = Money::new(100, Currency::parse("EUR").unwrap());
    assert!(matches!(
        one.checked_add(eur),
        Err(MoneyError::CurrencyMismatch { .. })
    ));
    let max = Money::new(i64::MAX, usd());
    assert!(matches!(
        max.checked_add(one),
        Err(MoneyError::Overflow { .. })
    ));
}
