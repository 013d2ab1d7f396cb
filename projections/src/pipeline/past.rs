//! The pipeline as it stood at a past business time (`GET /v1/pipeline?as_of=`): each
//! opportunity row read back (in pages, so memory stays bounded), turned into the deal it was
//! then by [`Opportunity::as_of`], and the figures of [`PipelineSummary`] computed from those
//! deals with the same rules as the live statements (rows without a stage, currency, close
//! month or category are left out of the groups that need them; money summed exactly in 128
//! bits, an error naming the figure when a total does not fit).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_core::money::currency::Currency;

use super::fold::{Opportunity, OpportunityStatus};
use super::sums::total_of;
use super::{ForecastLine, PipelineSummary, StageTotal, TABLE};
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;
use crate::rows::decode_doc;

/// Rows read per statement.
const PAGE: i64 = 500;

/// The pipeline figures of `tenant` (only `owner`'s deals, if given) as they stood at `t`.
pub(super) async fn summary_at(
    db: &ReadDb,
    tenant: &str,
    owner: Option<&str>,
    t: DateTime<Utc>,
) -> Result<PipelineSummary, ProjectionError> {
    let mut figures = Figures::default();
    let mut after: Option<String> = None;
    loop {
        let mut sql = format!(
            "SELECT id, doc FROM {TABLE} WHERE tenant = ? AND COALESCE(opened_at, closed_at) <= ?"
        );
        let mut args: Vec<SqlValue> = vec![tenant.into(), SqlValue::Int(t.timestamp_micros())];
        if let Some(owner) = owner {
            sql.push_str(" AND owner = ?");
            args.push(owner.into());
        }
        if let Some(after) = &after {
            sql.push_str(" AND id > ?");
            args.push(after.as_str().into());
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        args.push(SqlValue::Int(PAGE));
        let rows = db.fetch(&sql, args, &[Col::Text, Col::Text]).await?;
        let full = rows.len() as i64 == PAGE;
        for row in &rows {
            let id = row[0].as_text().unwrap_or_default();
            let deal: Opportunity =
                decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            if let Some(past) = deal.as_of(t) {
                figures.add(&past);
            }
        }
        match rows.last().and_then(|row| row[0].as_text()) {
            Some(last) if full => after = Some(last.to_owned()),
            _ => break,
        }
    }
    figures.summary()
}

/// Counts and exact sums, grouped as the live statements group them.
#[derive(Debug, Default)]
pub(super) struct Figures {
    /// (stage, currency) → (count, amount, weighted).
    by_stage: BTreeMap<(String, String), (i64, i128, i128)>,
    /// (close month, category, currency) → (count, amount, weighted).
    forecast: BTreeMap<(String, String, String), (i64, i128, i128)>,
    open: i64,
    won: i64,
    lost: i64,
    cycle_sum: i64,
    cycle_count: i64,
}

impl Figures {
    /// Counts one deal.
    pub(super) fn add(&mut self, deal: &Opportunity) {
        let amount = deal.amount.map(|a| i128::from(a.minor_units));
        let weighted = deal
            .weighted_amount()
            .map_or(0, |w| i128::from(w.minor_units));
        if let Some(money) = deal.amount {
            let currency = money.currency.code().to_owned();
            let add = |group: &mut (i64, i128, i128)| {
                group.0 += 1;
                group.1 += amount.unwrap_or(0);
                group.2 += weighted;
            };
            if let Some(stage) = deal.stage {
                add(self
                    .by_stage
                    .entry((stage.as_str().to_owned(), currency.clone()))
                    .or_default());
            }
            if let (Some(month), Some(category)) = (deal.close_month(), deal.forecast_category) {
                add(self
                    .forecast
                    .entry((month, category.as_str().to_owned(), currency))
                    .or_default());
            }
        }
        match deal.status {
            OpportunityStatus::Open => self.open += 1,
            OpportunityStatus::Won => self.won += 1,
            OpportunityStatus::Lost => self.lost += 1,
            OpportunityStatus::Unknown => {}
        }
        if matches!(
            deal.status,
            OpportunityStatus::Won | OpportunityStatus::Lost
        ) && let Some(cycle) = deal.cycle_seconds()
        {
            self.cycle_sum = self.cycle_sum.saturating_add(cycle);
            self.cycle_count += 1;
        }
    }

    /// The figures as `GET /v1/pipeline` shows them.
    pub(super) fn summary(self) -> Result<PipelineSummary, ProjectionError> {
        let mut by_stage = Vec::with_capacity(self.by_stage.len());
        for ((stage, code), (count, amount, weighted)) in self.by_stage {
            let Ok(currency) = Currency::parse(&code) else {
                continue;
            };
            let what = |figure: &str| format!("the {figure} of stage {stage}");
            by_stage.push(StageTotal {
                amount: total_of(&what("amount"), currency, amount)?,
                weighted: total_of(&what("weighted amount"), currency, weighted)?,
                stage,
                count,
            });
        }
        let mut forecast = Vec::with_capacity(self.forecast.len());
        for ((month, category, code), (count, amount, weighted)) in self.forecast {
            let Ok(currency) = Currency::parse(&code) else {
                continue;
            };
            let what = |figure: &str| format!("the forecast {figure} of {month} ({category})");
            forecast.push(ForecastLine {
                amount: total_of(&what("amount"), currency, amount)?,
                weighted: total_of(&what("weighted amount"), currency, weighted)?,
                close_month: month,
                forecast_category: category,
                count,
            });
        }
        let (won, lost) = (self.won, self.lost);
        Ok(PipelineSummary {
            by_stage,
            forecast,
            open: self.open,
            won,
            lost,
            win_rate: (won + lost > 0).then(|| won as f64 / (won + lost) as f64),
            average_cycle_days: (self.cycle_count > 0)
                .then(|| self.cycle_sum as f64 / self.cycle_count as f64 / 86_400.0),
            attainment: None,
        })
    }
}
