//! The sales pipeline read model: one row per opportunity (stage, probability, forecast
//! category, amount, owner, close date, status, stage history), and the queries over it:
//! totals by stage, forecast by close month and category, win rate and cycle length.

pub mod fold;
mod past;
mod sums;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use serde::Serialize;

use crate::bookkeeping::from_position;
use crate::db::{Col, MAX_PARAMS, ReadDb, ReadTx, SqlValue, placeholders};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, EntityDoc, apply_entity_docs, decode_doc};
use crm_core::ids::EntityId;

pub use fold::{Opportunity, OpportunityStatus, StageSpan};

pub const TABLE: &str = "rm_opportunities";

const TABLES: &[TableDef] = &[TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        id TEXTKEY NOT NULL,
        customer_id TEXTKEY,
        status TEXT NOT NULL,
        stage TEXT,
        probability BIGINT NOT NULL,
        forecast_category TEXT,
        currency TEXT,
        amount_minor BIGINT,
        weighted_minor BIGINT,
        close_date TEXT,
        close_month TEXT,
        owner TEXTKEY,
        opened_at BIGINT,
        closed_at BIGINT,
        cycle_seconds BIGINT,
        last_position BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    )",
    indexes: &[
        "CREATE INDEX {t}_customer ON {t} (tenant, customer_id)",
        "CREATE INDEX {t}_status ON {t} (tenant, status, id)",
    ],
}];

impl DocRow for Opportunity {
    const COLUMNS: &'static [&'static str] = &[
        "customer_id",
        "status",
        "stage",
        "probability",
        "forecast_category",
        "currency",
        "amount_minor",
        "weighted_minor",
        "close_date",
        "close_month",
        "owner",
        "opened_at",
        "closed_at",
        "cycle_seconds",
        "last_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        vec![
            SqlValue::opt_text(self.customer_id.as_ref().map(|c| c.as_str())),
            status_text(self.status).into(),
            SqlValue::opt_text(self.stage.map(|s| s.as_str())),
            SqlValue::Int(i64::from(self.probability)),
            SqlValue::opt_text(self.forecast_category.map(|c| c.as_str())),
            SqlValue::opt_text(self.amount.map(|a| a.currency.code())),
            SqlValue::opt_int(self.amount.map(|a| a.minor_units)),
            SqlValue::opt_int(self.weighted_amount().map(|a| a.minor_units)),
            SqlValue::opt_text(self.close_date.map(|d| d.format("%Y-%m-%d").to_string())),
            SqlValue::opt_text(self.close_month()),
            SqlValue::opt_text(self.owner.as_ref().map(|o| o.as_str())),
            SqlValue::opt_int(self.opened_at.map(|t| t.timestamp_micros())),
            SqlValue::opt_int(self.closed_at.map(|t| t.timestamp_micros())),
            SqlValue::opt_int(self.cycle_seconds()),
            from_position(self.last_position),
        ]
    }
}

impl EntityDoc for Opportunity {
    const CATEGORY: &'static str = "opportunity";

    fn fold(&mut self, event: &ProjectedEvent) {
        fold::apply(self, event);
    }

    fn customer_id(&self) -> Option<&EntityId> {
        self.customer_id.as_ref()
    }

    fn erase_personal(&mut self) {
        Opportunity::erase_personal(self);
    }
}

fn status_text(status: OpportunityStatus) -> &'static str {
    match status {
        OpportunityStatus::Unknown => "unknown",
        OpportunityStatus::Open => "open",
        OpportunityStatus::Won => "won",
        OpportunityStatus::Lost => "lost",
    }
}

/// The pipeline projection.
#[derive(Debug, Default)]
pub struct PipelineProjection;

#[async_trait::async_trait]
impl Projection for PipelineProjection {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError> {
        apply_entity_docs::<Opportunity>(tx, tables.get(TABLE), events).await
    }
}

/// Totals of one stage in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StageTotal {
    pub stage: String,
    pub count: i64,
    pub amount: Money,
    /// Sum of amount × probability, rounded per deal.
    pub weighted: Money,
}

/// Forecast of one close month and category in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ForecastLine {
    pub close_month: String,
    pub forecast_category: String,
    pub count: i64,
    pub amount: Money,
    pub weighted: Money,
}

/// What `GET /v1/pipeline` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PipelineSummary {
    pub by_stage: Vec<StageTotal>,
    pub forecast: Vec<ForecastLine>,
    pub open: i64,
    pub won: i64,
    pub lost: i64,
    /// won / (won + lost); absent before any deal closed.
    pub win_rate: Option<f64>,
    /// Mean days from opening to winning or losing, over closed deals.
    pub average_cycle_days: Option<f64>,
    /// With an owner: the quota attainment in each month and quarter holding the evaluation
    /// time that has a quota in force then (`crate::quotas`), per the quota's currency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attainment: Option<Vec<crate::quotas::PeriodAttainment>>,
}

/// The amount and the weighted amount of a grouped row whose two split sums
/// ([`sums::split_sum`], two columns each) start at column `at`; `what` names a figure for
/// the overflow error.
fn amounts(
    what: impl Fn(&str) -> String,
    currency: Currency,
    row: &[SqlValue],
    at: usize,
) -> Result<(Money, Money), ProjectionError> {
    let figure = |name: &str, first: usize| {
        sums::join(
            &what(name),
            currency,
            row[first].as_int(),
            row[first + 1].as_int(),
        )
    };
    Ok((figure("amount", at)?, figure("weighted amount", at + 2)?))
}

/// What to restrict the pipeline figures to; the default restricts nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineFilter {
    /// Only the opportunities this sales rep owns (today's owner).
    pub owner: Option<String>,
    /// The pipeline as it stood at this business time: each deal as
    /// [`Opportunity::as_of`] gives it (its stage then, absent if opened later, won or lost
    /// only if closed by then).
    pub as_of: Option<DateTime<Utc>>,
}

/// The pipeline figures of `tenant`.
pub async fn summary(db: &ReadDb, tenant: &str) -> Result<PipelineSummary, ProjectionError> {
    summary_of(db, tenant, &PipelineFilter::default()).await
}

/// The pipeline figures of `tenant` restricted by `filter`.
pub async fn summary_of(
    db: &ReadDb,
    tenant: &str,
    filter: &PipelineFilter,
) -> Result<PipelineSummary, ProjectionError> {
    if let Some(t) = filter.as_of {
        return past::summary_at(db, tenant, filter.owner.as_deref(), t).await;
    }
    // `WHERE tenant = ?` and, for one owner, `AND owner = ?`.
    let (owner, args) = match &filter.owner {
        Some(owner) => (" AND owner = ?", vec![tenant.into(), owner.as_str().into()]),
        None => ("", vec![SqlValue::from(tenant)]),
    };
    let amount = sums::split_sum("amount_minor");
    let weighted = sums::split_sum("weighted_minor");
    let mut by_stage = Vec::new();
    for row in db
        .fetch(
            &format!(
                "SELECT stage, currency, COUNT(*), {amount}, {weighted} FROM {TABLE} \
                 WHERE tenant = ?{owner} AND stage IS NOT NULL AND currency IS NOT NULL \
                 GROUP BY stage, currency ORDER BY stage, currency"
            ),
            args.clone(),
            &[
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
            ],
        )
        .await?
    {
        let (Some(stage), Some(Ok(currency))) =
            (row[0].as_text(), row[1].as_text().map(Currency::parse))
        else {
            continue;
        };
        let (amount, weighted) = amounts(
            |figure| format!("the {figure} of stage {stage}"),
            currency,
            &row,
            3,
        )?;
        by_stage.push(StageTotal {
            stage: stage.to_owned(),
            count: row[2].as_int().unwrap_or(0),
            amount,
            weighted,
        });
    }
    let mut forecast = Vec::new();
    for row in db
        .fetch(
            &format!(
                "SELECT close_month, forecast_category, currency, COUNT(*), {amount}, {weighted} \
                 FROM {TABLE} WHERE tenant = ?{owner} AND close_month IS NOT NULL \
                 AND forecast_category IS NOT NULL AND currency IS NOT NULL \
                 GROUP BY close_month, forecast_category, currency \
                 ORDER BY close_month, forecast_category, currency"
            ),
            args.clone(),
            &[
                Col::Text,
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
            ],
        )
        .await?
    {
        let (Some(month), Some(category), Some(Ok(currency))) = (
            row[0].as_text(),
            row[1].as_text(),
            row[2].as_text().map(Currency::parse),
        ) else {
            continue;
        };
        let what = |figure: &str| format!("the forecast {figure} of {month} ({category})");
        let (amount, weighted) = amounts(what, currency, &row, 4)?;
        forecast.push(ForecastLine {
            close_month: month.to_owned(),
            forecast_category: category.to_owned(),
            count: row[3].as_int().unwrap_or(0),
            amount,
            weighted,
        });
    }
    let counts = db
        .fetch(
            &format!(
                "SELECT status, COUNT(*), CAST(SUM(cycle_seconds) AS BIGINT), COUNT(cycle_seconds) FROM {TABLE} \
                 WHERE tenant = ?{owner} GROUP BY status"
            ),
            args,
            &[Col::Text, Col::Int, Col::Int, Col::Int],
        )
        .await?;
    let count_of = |status: &str| {
        counts
            .iter()
            .find(|r| r[0].as_text() == Some(status))
            .and_then(|r| r[1].as_int())
            .unwrap_or(0)
    };
    let (won, lost) = (count_of("won"), count_of("lost"));
    let (cycle_sum, cycle_count) = counts
        .iter()
        .filter(|r| matches!(r[0].as_text(), Some("won" | "lost")))
        .fold((0i64, 0i64), |(s, c), r| {
            (
                s.saturating_add(r[2].as_int().unwrap_or(0)),
                c + r[3].as_int().unwrap_or(0),
            )
        });
    Ok(PipelineSummary {
        by_stage,
        forecast,
        open: count_of("open"),
        won,
        lost,
        win_rate: (won + lost > 0).then(|| won as f64 / (won + lost) as f64),
        average_cycle_days: (cycle_count > 0)
            .then(|| cycle_sum as f64 / cycle_count as f64 / 86_400.0),
        attainment: None,
    })
}

/// The pipeline figures of `tenant` restricted by `filter` and, with an owner, that owner's
/// quota attainment evaluated at `as_of`, or at `now` without it (`GET /v1/pipeline`).
pub async fn summary_with_attainment(
    db: &ReadDb,
    tenant: &str,
    filter: &PipelineFilter,
    now: DateTime<Utc>,
) -> Result<PipelineSummary, ProjectionError> {
    let mut summary = summary_of(db, tenant, filter).await?;
    if let Some(owner) = &filter.owner {
        let at = filter.as_of.unwrap_or(now);
        summary.attainment =
            Some(crate::quotas::attainment(db, tenant, owner, at, filter.as_of.is_some()).await?);
    }
    Ok(summary)
}

/// What to list opportunities by.
#[derive(Debug, Clone, Default)]
pub struct OpportunityFilter {
    /// `open`, `won`, `lost`.
    pub status: Option<String>,
    pub stage: Option<String>,
    pub owner: Option<String>,
    pub customer_id: Option<String>,
    /// Keyset pagination: ids after this one.
    pub after: Option<String>,
    pub limit: usize,
}

/// One opportunity with the time spent in each stage, measured to `now` for the open one.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpportunityLine {
    #[serde(flatten)]
    pub opportunity: Opportunity,
    pub weighted_amount: Option<Money>,
    /// Seconds spent in each stage, in the order the deal was in them (a stage entered
    /// twice appears twice).
    pub stage_seconds: Vec<StageTime>,
}

/// Time one stay in a stage took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StageTime {
    pub stage: crm_core::catalog::values::Stage,
    pub seconds: i64,
}

/// Opportunities of `tenant` matching `filter`, by id.
pub async fn list(
    db: &ReadDb,
    tenant: &str,
    filter: &OpportunityFilter,
    now: DateTime<Utc>,
) -> Result<Vec<OpportunityLine>, ProjectionError> {
    let mut sql = format!("SELECT id, doc FROM {TABLE} WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    for (column, value) in [
        ("status", &filter.status),
        ("stage", &filter.stage),
        ("owner", &filter.owner),
        ("customer_id", &filter.customer_id),
    ] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(value.as_str().into());
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
    db.fetch(&sql, args, &[Col::Text, Col::Text])
        .await?
        .into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            let opportunity: Opportunity =
                decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            Ok(OpportunityLine {
                weighted_amount: opportunity.weighted_amount(),
                stage_seconds: opportunity
                    .stage_durations(now)
                    .into_iter()
                    .map(|(stage, seconds)| StageTime { stage, seconds })
                    .collect(),
                opportunity,
            })
        })
        .collect()
}

/// One opportunity as [`list`] shows it, with stage times measured to `now`.
pub async fn line(
    db: &ReadDb,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<OpportunityLine>, ProjectionError> {
    Ok(get_many(db, tenant, &[id])
        .await?
        .into_iter()
        .next()
        .map(|opportunity| OpportunityLine {
            weighted_amount: opportunity.weighted_amount(),
            stage_seconds: opportunity
                .stage_durations(now)
                .into_iter()
                .map(|(stage, seconds)| StageTime { stage, seconds })
                .collect(),
            opportunity,
        }))
}

/// Loads opportunities by id (for tests and tools).
pub async fn get_many(
    db: &ReadDb,
    tenant: &str,
    ids: &[&str],
) -> Result<Vec<Opportunity>, ProjectionError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(MAX_PARAMS - 1) {
        let mut args: Vec<SqlValue> = vec![tenant.into()];
        args.extend(chunk.iter().map(|id| SqlValue::text(*id)));
        for row in db
            .fetch(
                &format!(
                    "SELECT id, doc FROM {TABLE} WHERE tenant = ? AND id IN ({}) ORDER BY id",
                    placeholders(chunk.len())
                ),
                args,
                &[Col::Text, Col::Text],
            )
            .await?
        {
            let id = row[0].as_text().unwrap_or_default();
            out.push(decode_doc(
                TABLE,
                tenant,
                id,
                row[1].as_text().unwrap_or_default(),
            )?);
        }
    }
    Ok(out)
}
