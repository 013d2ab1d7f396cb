//! ISO 4217 currencies known to the core, with the number of minor digits each one uses.

use std::fmt;

use crate::money::MoneyError;

/// An ISO 4217 currency from the built-in table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_digits: u8,
}

/// Code and number of minor digits of every supported currency. Most use 2; the 0-digit and
/// 3-digit ones are the reason money is never assumed to have cents.
pub static CURRENCIES: &[(&str, u8)] = &[
    // Two minor digits.
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("NZD", 2),
    ("CNY", 2),
    ("HKD", 2),
    ("SGD", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("HUF", 2),
    ("RON", 2),
    ("BGN", 2),
    ("UAH", 2),
    ("INR", 2),
    ("PKR", 2),
    ("BDT", 2),
    ("LKR", 2),
    ("BRL", 2),
    ("MXN", 2),
    ("ARS", 2),
    ("COP", 2),
    ("PEN", 2),
    ("UYU", 2),
    ("ZAR", 2),
    ("TRY", 2),
    ("ILS", 2),
    ("AED", 2),
    ("SAR", 2),
    ("QAR", 2),
    ("RUB", 2),
    ("THB", 2),
    ("IDR", 2),
    ("MYR", 2),
    ("PHP", 2),
    ("TWD", 2),
    ("EGP", 2),
    ("MAD", 2),
    ("NGN", 2),
    ("KES", 2),
    ("GHS", 2),
    // No minor digits.
    ("JPY", 0),
    ("KRW", 0),
    ("CLP", 0),
    ("VND", 0),
    ("ISK", 0),
    ("PYG", 0),
    ("UGX", 0),
    ("RWF", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    // Three minor digits.
    ("BHD", 3),
    ("KWD", 3),
    ("OMR", 3),
    ("JOD", 3),
    ("TND", 3),
    ("IQD", 3),
    ("LYD", 3),
];

impl Currency {
    /// Looks up an ISO 4217 code such as `"USD"`; lowercase codes are rejected, not guessed.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            let shown: String = code.chars().take(16).collect();
            return Err(MoneyError::InvalidCurrencyCode { code: shown });
        }
        CURRENCIES
            .iter()
            .find(|(known, _)| *known == code)
            .map(|&(code, minor_digits)| Currency { code, minor_digits })
            .ok_or_else(|| MoneyError::UnknownCurrency {
                code: code.to_owned(),
            })
    }

    /// The ISO code, e.g. `"EUR"`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// How many decimals the currency's minor unit has (2 for EUR, 0 for JPY, 3 for KWD).
    pub fn minor_digits(&self) -> u8 {
        self.minor_digits
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// The OpenAPI form: the ISO 4217 code.
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An ISO 4217 currency code, e.g. EUR"))
            .pattern(Some("^[A-Z]{3}$"))
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <String as serde::Deserialize>::deserialize(deserializer)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}
