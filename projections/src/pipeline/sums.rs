//! Money sums over many rows at query time that can neither wrap nor fail half-way: SQLite's
//! `SUM` of integers raises "integer overflow" past 64 bits, and PostgreSQL's `SUM(bigint)`
//! is a `numeric` that no longer fits the `BIGINT` an answer reads. Each amount is split
//! into a high and a low part (`x / 10^9`, `x % 10^9`, both truncating toward zero on both
//! backends, so `x = high × 10^9 + low`), each part summed in SQL (within 64 bits for any
//! realistic row count) and the two joined here in 128 bits. A total that does not fit the
//! 64-bit minor units of [`Money`] is an error naming it, never a wrapped or clipped figure.

use crm_core::money::Money;
use crm_core::money::currency::Currency;

use crate::error::ProjectionError;

/// Where an amount is split.
const SPLIT: i64 = 1_000_000_000;

/// Two `BIGINT` columns: the sums of `column`'s high and low parts.
pub(crate) fn split_sum(column: &str) -> String {
    format!("CAST(SUM({column} / {SPLIT}) AS BIGINT), CAST(SUM({column} % {SPLIT}) AS BIGINT)")
}

/// The total from its parts' sums (`None`: no amount), or an error naming `what`.
pub(crate) fn join(
    what: &str,
    currency: Currency,
    high: Option<i64>,
    low: Option<i64>,
) -> Result<Money, ProjectionError> {
    let total = i128::from(high.unwrap_or(0)) * i128::from(SPLIT) + i128::from(low.unwrap_or(0));
    total_of(what, currency, total)
}

/// A total summed exactly in 128 bits, or an error naming `what` when it does not fit.
pub(crate) fn total_of(
    what: &str,
    currency: Currency,
    total: i128,
) -> Result<Money, ProjectionError> {
    i64::try_from(total)
        .map(|minor| Money::new(minor, currency))
        .map_err(|_| ProjectionError::TotalOverflow {
            what: format!("{what} in {currency}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_join_exactly_or_the_total_is_refused() {
        let eur = Currency::parse("EUR").expect("EUR");
        let max = i64::MAX;
        let (high, low) = (max / SPLIT, max % SPLIT);
        let one = join("x", eur, Some(high), Some(low)).expect("fits");
        assert_eq!(one.minor_units, max);
        let two = join("the total", eur, Some(2 * high), Some(2 * low));
        assert!(
            matches!(two, Err(ProjectionError::TotalOverflow { what }) if what == "the total in EUR")
        );
        let negative = join("x", eur, Some(-1), Some(-5)).expect("fits");
        assert_eq!(negative.minor_units, -SPLIT - 5);
    }
}
