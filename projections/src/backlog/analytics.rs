//! Service analytics (issue 19, item 6): over the cases opened in a window, SLA breach and
//! warning rates of each clock (docs/service.md's definitions, judged at a given time) and
//! first-response and resolution time percentiles, overall and by priority, agent, channel
//! and period (the UTC month or ISO week of the open). Read from the backlog read model's
//! stored clocks, so the figures are those of the cases' own SLAs.
//!
//! Times are elapsed seconds from the open to the first response and to the resolution (or
//! the close of a case closed unresolved); percentiles interpolate linearly between closest
//! ranks. Rates are over the cases of the group, `null` for an empty one.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::backlog::clocks::late;
use crate::backlog::{TABLE, quantile};
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;

/// How cases are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Month,
    Week,
}

/// The figures of one group of cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceFigures {
    pub cases: u64,
    /// Cases whose first response (or resolution) came or is still missing past its due.
    pub first_response_breaches: u64,
    pub resolution_breaches: u64,
    pub first_response_breach_rate: Option<f64>,
    pub resolution_breach_rate: Option<f64>,
    /// Past their warning time (breaches included).
    pub first_response_warnings: u64,
    pub resolution_warnings: u64,
    pub first_response_warning_rate: Option<f64>,
    pub resolution_warning_rate: Option<f64>,
    /// Seconds from the open to the first response, over the cases answered.
    pub first_response_p50_seconds: Option<f64>,
    pub first_response_p90_seconds: Option<f64>,
    /// Seconds from the open to the resolution, over the cases resolved (or closed).
    pub resolution_p50_seconds: Option<f64>,
    pub resolution_p90_seconds: Option<f64>,
}

/// What `GET /v1/analytics/service` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceAnalytics {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// When open clocks were judged.
    pub judged_at: DateTime<Utc>,
    /// `month` or `week`.
    pub period: &'static str,
    pub overall: ServiceFigures,
    pub by_priority: BTreeMap<String, ServiceFigures>,
    /// By assignee (or first responder); cases with neither under `""`.
    pub by_agent: BTreeMap<String, ServiceFigures>,
    pub by_channel: BTreeMap<String, ServiceFigures>,
    /// By the open's UTC month (`2026-03`) or ISO week (`2026-W10`).
    pub by_period: BTreeMap<String, ServiceFigures>,
}

#[derive(Default)]
struct Group {
    cases: u64,
    breaches: [u64; 2],
    warnings: [u64; 2],
    response: Vec<i64>,
    resolution: Vec<i64>,
}

impl Group {
    fn figures(mut self) -> ServiceFigures {
        let rate = |n: u64| (self.cases > 0).then(|| n as f64 / self.cases as f64);
        self.response.sort_unstable();
        self.resolution.sort_unstable();
        ServiceFigures {
            cases: self.cases,
            first_response_breaches: self.breaches[0],
            resolution_breaches: self.breaches[1],
            first_response_breach_rate: rate(self.breaches[0]),
            resolution_breach_rate: rate(self.breaches[1]),
            first_response_warnings: self.warnings[0],
            resolution_warnings: self.warnings[1],
            first_response_warning_rate: rate(self.warnings[0]),
            resolution_warning_rate: rate(self.warnings[1]),
            first_response_p50_seconds: quantile(&self.response, 0.5),
            first_response_p90_seconds: quantile(&self.response, 0.9),
            resolution_p50_seconds: quantile(&self.resolution, 0.5),
            resolution_p90_seconds: quantile(&self.resolution, 0.9),
        }
    }
}

/// The service figures of the cases of `tenant` opened in [`from`, `to`), judged at `at`.
pub async fn service_analytics(
    db: &ReadDb,
    tenant: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
    period: Period,
) -> Result<ServiceAnalytics, ProjectionError> {
    let mut sql = format!(
        "SELECT priority, agent, channel, opened_at, first_response_at, resolved_at, fr_due, \
         fr_warn, fr_stop, res_due, res_warn FROM {TABLE} WHERE tenant = ? AND opened_at IS NOT NULL"
    );
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    if let Some(from) = from {
        sql.push_str(" AND opened_at >= ?");
        args.push(SqlValue::Int(from.timestamp_micros()));
    }
    if let Some(to) = to {
        sql.push_str(" AND opened_at < ?");
        args.push(SqlValue::Int(to.timestamp_micros()));
    }
    let rows = db
        .fetch(
            &sql,
            args,
            &[
                Col::Text,
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
            ],
        )
        .await?;
    let at_micros = at.timestamp_micros();
    let mut overall = Group::default();
    let mut groups: [BTreeMap<String, Group>; 4] = Default::default();
    for row in rows {
        let text = |i: usize| row[i].as_text().unwrap_or_default().to_owned();
        let int = |i: usize| row[i].as_int();
        let Some(opened) = int(3) else { continue };
        let opened_at = DateTime::from_timestamp_micros(opened).unwrap_or_default();
        let period_key = match period {
            Period::Month => format!("{:04}-{:02}", opened_at.year(), opened_at.month()),
            Period::Week => {
                let week = opened_at.iso_week();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
        };
        let keys = [text(0), text(1), text(2), period_key];
        let breaches = [
            late(int(6), int(8), at_micros),
            late(int(9), int(5), at_micros),
        ];
        let warnings = [
            late(int(7), int(8), at_micros),
            late(int(10), int(5), at_micros),
        ];
        let response = int(4).map(|r| ((r - opened) / 1_000_000).max(0));
        let resolution = int(5).map(|r| ((r - opened) / 1_000_000).max(0));
        for group in std::iter::once(&mut overall).chain(
            groups
                .iter_mut()
                .zip(keys)
                .map(|(map, key)| map.entry(key).or_default()),
        ) {
            group.cases += 1;
            for i in 0..2 {
                group.breaches[i] += u64::from(breaches[i]);
                group.warnings[i] += u64::from(warnings[i]);
            }
            group.response.extend(response);
            group.resolution.extend(resolution);
        }
    }
    let [by_priority, by_agent, by_channel, by_period] =
        groups.map(|map| map.into_iter().map(|(k, g)| (k, g.figures())).collect());
    Ok(ServiceAnalytics {
        from,
        to,
        judged_at: at,
        period: match period {
            Period::Month => "month",
            Period::Week => "week",
        },
        overall: overall.figures(),
        by_priority,
        by_agent,
        by_channel,
        by_period,
    })
}
