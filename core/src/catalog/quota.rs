//! Quota events: the `quota-<owner>` stream (issue 18, item 7). A sales rep's quota for a
//! month or a quarter, set (or set again) as a fact, so the attainment at any past date is
//! explained by the log.

use std::fmt;

use chrono::{Datelike, NaiveDate};

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::money::Money;

/// The period a quota covers: a calendar month (`2026-03`) or quarter (`2026-Q1`), UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaPeriod {
    Month { year: i32, month: u32 },
    Quarter { year: i32, quarter: u32 },
}

impl QuotaPeriod {
    /// Reads `YYYY-MM` or `YYYY-Qn`.
    pub fn parse(text: &str) -> Option<QuotaPeriod> {
        let bytes = text.as_bytes();
        if bytes.len() != 7 || bytes[4] != b'-' || !bytes[..4].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let year: i32 = text[..4].parse().ok()?;
        if bytes[5] == b'Q' {
            let quarter = u32::from(bytes[6].checked_sub(b'0')?);
            return (1..=4)
                .contains(&quarter)
                .then_some(QuotaPeriod::Quarter { year, quarter });
        }
        if !bytes[5..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let month: u32 = text[5..].parse().ok()?;
        (1..=12)
            .contains(&month)
            .then_some(QuotaPeriod::Month { year, month })
    }

    /// `month` or `quarter`.
    pub fn kind(self) -> &'static str {
        match self {
            QuotaPeriod::Month { .. } => "month",
            QuotaPeriod::Quarter { .. } => "quarter",
        }
    }

    /// The first day of the period.
    pub fn start(self) -> NaiveDate {
        let (year, month) = match self {
            QuotaPeriod::Month { year, month } => (year, month),
            QuotaPeriod::Quarter { year, quarter } => (year, quarter * 3 - 2),
        };
        NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The first day after the period.
    pub fn end(self) -> NaiveDate {
        let months = match self {
            QuotaPeriod::Month { .. } => 1,
            QuotaPeriod::Quarter { .. } => 3,
        };
        self.start()
            .checked_add_months(chrono::Months::new(months))
            .unwrap_or(NaiveDate::MAX)
    }

    /// The month and the quarter that hold `day`.
    pub fn containing(day: NaiveDate) -> [QuotaPeriod; 2] {
        [
            QuotaPeriod::Month {
                year: day.year(),
                month: day.month(),
            },
            QuotaPeriod::Quarter {
                year: day.year(),
                quarter: (day.month() - 1) / 3 + 1,
            },
        ]
    }
}

impl fmt::Display for QuotaPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaPeriod::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            QuotaPeriod::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
        }
    }
}

/// A sales rep's quota for a period was set; setting it again for the same period replaces
/// it from the new event's business time on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSet {
    /// The sales rep (a user id, as an opportunity's `owner`).
    pub owner: EntityId,
    pub period: QuotaPeriod,
    /// Zero or more; stored as `amount` and `currency`.
    pub amount: Money,
}

impl EventData for QuotaSet {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("owner"),
        FieldInfo::required("period"),
        FieldInfo::required("amount"),
        FieldInfo::required("currency"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        let text: String = fields.required("period")?;
        let period = QuotaPeriod::parse(&text).ok_or_else(|| {
            fields.error(
                "period",
                format!(
                    "`{}` is not a period; write YYYY-MM (a month) or YYYY-Qn (a quarter, n from 1 to 4)",
                    crate::catalog::fields::shorten(&text)
                ),
            )
        })?;
        Ok(QuotaSet {
            owner: fields.required("owner")?,
            period,
            amount: fields.money("amount", "currency")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("owner", &self.owner);
        data.string("period", &self.period.to_string());
        data.money("amount", "currency", &self.amount);
    }

    fn entity_id(&self) -> &EntityId {
        &self.owner
    }

    fn validate(&self) -> Result<(), Problem> {
        self.amount
            .ensure_not_negative()
            .map(drop)
            .map_err(|e| Problem::field("amount", e))
    }
}
