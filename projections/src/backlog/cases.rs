//! The case list (`GET /v1/cases`): every case the backlog read model holds, open, resolved
//! and closed alike (a case's row is never deleted), filtered by status, customer, agent,
//! priority and half-open windows `[from, to)` of the open and the close (business time), in
//! pages by case id; each line carries its clocks under the SLA in force at its open.
//!
//! A reopen clears a case's `closed_at`, so a reopened case leaves every close window until
//! it is closed again.

use chrono::{DateTime, Utc};
use crm_core::catalog::values::Priority;
use serde::Serialize;

use super::{Case, CaseStatus, TABLE, status_text};
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;
use crate::rows::decode_doc;

/// A half-open window of business time: `from` included, `to` excluded; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// What to list cases by; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub customer_id: Option<String>,
    /// The assignee (or the first responder of a case never assigned).
    pub agent: Option<String>,
    pub priority: Option<Priority>,
    /// When the case was opened; cases not opened yet are outside any window.
    pub opened: Window,
    /// When the case was closed; cases not closed (or reopened since) are outside any window.
    pub closed: Window,
    /// Keyset pagination: case ids after this one.
    pub after: Option<String>,
    pub limit: usize,
}

/// One case of the list, with its due times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ListedCase)] // the 360 view's `CaseLine` is another shape
pub struct CaseLine {
    #[serde(flatten)]
    pub case: Case,
    /// When the first response is (or was) due: the first-response target of the case's
    /// current priority counted from the open (business time under a calendar, pauses not
    /// counted); absent while a pause keeps the clock short of it.
    pub first_response_due: Option<DateTime<Utc>>,
    /// When the resolution is (or was) due, likewise.
    pub resolution_due: Option<DateTime<Utc>>,
}

impl CaseStatus {
    /// Every status a case can be listed by, as the list writes it.
    pub const ALL: &'static [CaseStatus] = &[
        CaseStatus::Unknown,
        CaseStatus::Open,
        CaseStatus::Resolved,
        CaseStatus::Closed,
    ];

    /// The status as the read model and its answers write it.
    pub fn as_str(self) -> &'static str {
        status_text(self)
    }

    /// The status written `text`, if any.
    pub fn parse(text: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.iter().copied().find(|s| s.as_str() == text)
    }
}

/// The cases of `tenant` matching `filter`, by id.
pub async fn list(
    db: &ReadDb,
    tenant: &str,
    filter: &CaseFilter,
) -> Result<Vec<CaseLine>, ProjectionError> {
    let mut sql = format!("SELECT id, doc FROM {TABLE} WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    let equal = [
        ("status", filter.status.map(|s| s.as_str().to_owned())),
        ("customer_id", filter.customer_id.clone()),
        ("agent", filter.agent.clone()),
        ("priority", filter.priority.map(|p| p.as_str().to_owned())),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(value.into());
        }
    }
    for (column, window) in [("opened_at", filter.opened), ("closed_at", filter.closed)] {
        if let Some(from) = window.from {
            sql.push_str(&format!(" AND {column} >= ?"));
            args.push(SqlValue::Int(from.timestamp_micros()));
        }
        if let Some(to) = window.to {
            sql.push_str(&format!(" AND {column} < ?"));
            args.push(SqlValue::Int(to.timestamp_micros()));
        }
    }
    if let Some(after) = &filter.after {
        sql.push_str(" AND id > ?");
        args.push(after.as_str().into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(SqlValue::Int(
        i64::try_from(filter.limit).unwrap_or(i64::MAX),
    ));
    let rows = db.fetch(&sql, args, &[Col::Text, Col::Text]).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    rows.into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            let mut case: Case =
                decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            case.facts = Vec::new();
            let clocks = case.clocks.clone().unwrap_or_default();
            Ok(CaseLine {
                first_response_due: clocks.first_response.due,
                resolution_due: clocks.resolution.due,
                case,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_as_they_are_written() {
        for status in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(status.as_str()), Some(*status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(CaseStatus::parse("Open"), None);
        assert_eq!(CaseStatus::parse(""), None);
    }
}
