//! The service quality read model (issue 19, items 4 and 5; projection `service_quality`):
//! complaints and customer satisfaction.
//!
//! - `rm_service_cases`: one document per case ([`ServiceCase`], through
//!   [`apply_entity_docs`]): its customer, opening time, current priority, agent (the
//!   assignee, else the first responder, as the backlog defines it), complaint category (the
//!   last `CaseMarkedComplaint`), first resolution time and root cause (the last one a
//!   resolution named), and its CSAT answer (score, comment, business and recording time,
//!   position).
//! - `rm_nps_answers`: one row per `NpsAnswered` (customer, answer id, score, comment).
//! - `rm_complaint_lists`: one row per `ComplaintCategoriesSet` (the tenant's categories and
//!   root causes from its position on).
//!
//! Comments are personal data: a customer's erasure clears them (and those of customers
//! merged into it) in both tables, and a rebuild reads them `[erased]` and keeps none, so the
//! live model and a rebuild hold the same rows. No other field here is personal.
//!
//! Queries: [`complaints`] (`GET /v1/service/complaints`), [`satisfaction`] (`GET
//! /v1/service/satisfaction`), [`lists`] (`GET /v1/settings/complaints`) and [`latest`] (the 360 view's `satisfaction`, live or at a
//! cut). Every figure is computed at query time from the rows; nothing depends on a clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::values::Priority;
use crm_core::ids::EntityId;
use serde::{Deserialize, Serialize};

use crate::asof::Cut;
use crate::bookkeeping::from_position;
use crate::db::{Col, Query, ReadDb, ReadTx, Rows, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, EntityDoc, apply_entity_docs, decode_doc, merged_into};

/// The projection's name (its checkpoint's key).
pub const NAME: &str = "service_quality";
pub const CASES: &str = "rm_service_cases";
pub const NPS: &str = "rm_nps_answers";
pub const LISTS: &str = "rm_complaint_lists";

const TABLES: &[TableDef] = &[
    TableDef {
        name: CASES,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            id TEXTKEY NOT NULL,
            customer_id TEXTKEY,
            opened_at BIGINT,
            complaint TEXT,
            csat_at BIGINT,
            csat_recorded_at BIGINT,
            csat_position BIGINT,
            doc TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
        )",
        indexes: &[
            "CREATE INDEX {t}_customer ON {t} (tenant, customer_id)",
            "CREATE INDEX {t}_opened ON {t} (tenant, opened_at)",
            "CREATE INDEX {t}_csat ON {t} (tenant, csat_at)",
        ],
    },
    TableDef {
        name: NPS,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            customer_id TEXTKEY NOT NULL,
            answer_id TEXT NOT NULL,
            score BIGINT NOT NULL,
            comment TEXT,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, position)
        )",
        indexes: &[
            "CREATE INDEX {t}_customer ON {t} (tenant, customer_id, position)",
            "CREATE INDEX {t}_time ON {t} (tenant, occurred_at)",
        ],
    },
    TableDef {
        name: LISTS,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            categories TEXT NOT NULL,
            causes TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, position)
        )",
        indexes: &[],
    },
];

const LIST_COLUMNS: &[&str] = &[
    "tenant",
    "position",
    "categories",
    "causes",
    "occurred_at",
    "recorded_at",
];

fn labels_json(labels: &[EntityId]) -> String {
    serde_json::to_string(&labels.iter().map(|l| l.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

const NPS_COLUMNS: &[&str] = &[
    "tenant",
    "position",
    "customer_id",
    "answer_id",
    "score",
    "comment",
    "occurred_at",
    "recorded_at",
];

/// A case's CSAT answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CsatAnswer {
    pub score: u8,
    /// Personal data: cleared when the customer is erased.
    pub comment: Option<String>,
    /// Business time of the answer.
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: u64,
}

/// One case as the service quality read model keeps it; `Default` is a case with no event
/// folded yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCase {
    pub case_id: Option<EntityId>,
    pub customer_id: Option<EntityId>,
    /// Business time of the open (the first `CaseOpened`).
    pub opened_at: Option<DateTime<Utc>>,
    /// The opening priority, raised by escalations (never lowered).
    pub priority: Option<Priority>,
    /// The assignee, else the first responder (the backlog's `agent`).
    pub agent: Option<EntityId>,
    /// The complaint category, once marked a complaint (the last marking).
    pub complaint: Option<EntityId>,
    /// Business time of the first `CaseResolved`.
    pub first_resolved_at: Option<DateTime<Utc>>,
    /// The root cause the last resolution that named one gave.
    pub root_cause: Option<EntityId>,
    /// The CSAT answer (the first one recorded).
    pub csat: Option<CsatAnswer>,
}

impl ServiceCase {
    /// Folds one event of the case's stream; total (never fails), events before the open
    /// kept as they come.
    pub fn apply(&mut self, event: &ProjectedEvent) {
        let at = event.occurred_at;
        match &event.event {
            DomainEvent::CaseOpened(data) => {
                if self.opened_at.is_some() {
                    return;
                }
                self.case_id = Some(data.case_id.clone());
                self.customer_id = Some(data.customer_id.clone());
                self.opened_at = Some(at);
                self.priority = Some(
                    self.priority
                        .map_or(data.priority, |p| p.max(data.priority)),
                );
            }
            DomainEvent::CaseAssigned(data) => self.agent = Some(data.agent.clone()),
            DomainEvent::CaseResponded(data) if self.agent.is_none() => {
                self.agent = Some(data.agent.clone());
            }
            DomainEvent::CaseEscalated(data) => {
                if let Some(given) = data.priority {
                    self.priority = Some(self.priority.map_or(given, |p| p.max(given)));
                }
            }
            DomainEvent::CaseResolved(data) => {
                if self.first_resolved_at.is_none() {
                    self.first_resolved_at = Some(at);
                }
                if let Some(cause) = &data.root_cause {
                    self.root_cause = Some(cause.clone());
                }
            }
            DomainEvent::CaseMarkedComplaint(data) => {
                self.complaint = Some(data.category.clone());
            }
            DomainEvent::CsatRecorded(data) if self.csat.is_none() => {
                self.csat = Some(CsatAnswer {
                    score: data.score,
                    comment: data
                        .comment
                        .as_deref()
                        .and_then(crm_core::privacy::readable),
                    at,
                    recorded_at: event.recorded_at,
                    position: event.position,
                });
            }
            _ => {}
        }
        if self.case_id.is_none() {
            self.case_id = Some(event.event.entity_id().clone());
        }
    }
}

impl DocRow for ServiceCase {
    const COLUMNS: &'static [&'static str] = &[
        "customer_id",
        "opened_at",
        "complaint",
        "csat_at",
        "csat_recorded_at",
        "csat_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        vec![
            SqlValue::opt_text(self.customer_id.as_ref().map(|c| c.as_str())),
            SqlValue::opt_int(self.opened_at.map(|t| t.timestamp_micros())),
            SqlValue::opt_text(self.complaint.as_ref().map(|c| c.as_str())),
            SqlValue::opt_int(self.csat.as_ref().map(|c| c.at.timestamp_micros())),
            SqlValue::opt_int(self.csat.as_ref().map(|c| c.recorded_at.timestamp_micros())),
            SqlValue::opt_int(
                self.csat
                    .as_ref()
                    .map(|c| i64::try_from(c.position).unwrap_or(i64::MAX)),
            ),
        ]
    }
}

impl EntityDoc for ServiceCase {
    const CATEGORY: &'static str = "case";

    fn fold(&mut self, event: &ProjectedEvent) {
        self.apply(event);
    }

    fn customer_id(&self) -> Option<&EntityId> {
        self.customer_id.as_ref()
    }

    fn erase_personal(&mut self) {
        if let Some(csat) = &mut self.csat {
            csat.comment = None;
        }
    }
}

/// The service quality projection.
#[derive(Debug, Default)]
pub struct ServiceQualityProjection;

#[async_trait::async_trait]
impl Projection for ServiceQualityProjection {
    fn name(&self) -> &'static str {
        NAME
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
        apply_entity_docs::<ServiceCase>(tx, tables.get(CASES), events).await?;
        let table = tables.get(NPS);
        let mut rows: Vec<Vec<SqlValue>> = Vec::new();
        let mut lists: Vec<Vec<SqlValue>> = Vec::new();
        for event in events {
            let tenant = event.tenant.as_str();
            match &event.event {
                DomainEvent::ComplaintCategoriesSet(set) => lists.push(vec![
                    tenant.into(),
                    from_position(event.position),
                    labels_json(&set.categories).into(),
                    labels_json(&set.causes).into(),
                    SqlValue::Int(event.occurred_at.timestamp_micros()),
                    SqlValue::Int(event.recorded_at.timestamp_micros()),
                ]),
                DomainEvent::NpsAnswered(answer) => rows.push(vec![
                    tenant.into(),
                    from_position(event.position),
                    answer.customer_id.as_str().into(),
                    answer.answer_id.as_str().into(),
                    SqlValue::Int(i64::from(answer.score)),
                    SqlValue::opt_text(
                        answer
                            .comment
                            .as_deref()
                            .and_then(crm_core::privacy::readable)
                            .as_deref(),
                    ),
                    SqlValue::Int(event.occurred_at.timestamp_micros()),
                    SqlValue::Int(event.recorded_at.timestamp_micros()),
                ]),
                DomainEvent::CustomerErased(erased) => {
                    // The answers before the erasure (this batch's included) lose their
                    // comments, and so do those of customers merged into the erased one.
                    let pending = std::mem::take(&mut rows);
                    tx.insert_rows(table, NPS_COLUMNS, pending, "ON CONFLICT DO NOTHING")
                        .await?;
                    let everyone = merged_into(tx, tenant, erased.customer_id.as_str()).await?;
                    for customer in everyone {
                        tx.execute(
                            &format!(
                                "UPDATE {table} SET comment = NULL WHERE tenant = ? AND \
                                 customer_id = ? AND comment IS NOT NULL"
                            ),
                            vec![tenant.into(), customer.as_str().into()],
                        )
                        .await?;
                    }
                }
                _ => {}
            }
        }
        tx.insert_rows(
            tables.get(LISTS),
            LIST_COLUMNS,
            lists,
            "ON CONFLICT DO NOTHING",
        )
        .await?;
        tx.insert_rows(table, NPS_COLUMNS, rows, "ON CONFLICT DO NOTHING")
            .await
    }
}

/// One `ComplaintCategoriesSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ComplaintLists {
    pub categories: Vec<String>,
    pub causes: Vec<String>,
    /// Business time of the event.
    pub at: DateTime<Utc>,
    pub position: u64,
}

/// `GET /v1/settings/complaints`: the lists in force (none until an admin sets them) and
/// every set, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ComplaintListsInForce {
    pub in_force: Option<ComplaintLists>,
    pub history: Vec<ComplaintLists>,
}

/// The tenant's complaint lists: those in force now and every one set.
pub async fn lists(db: &ReadDb, tenant: &str) -> Result<ComplaintListsInForce, ProjectionError> {
    let parse = |text: Option<&str>| -> Vec<String> {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    };
    let history: Vec<ComplaintLists> = db
        .fetch(
            &format!(
                "SELECT categories, causes, occurred_at, position FROM {LISTS} WHERE tenant = ? \
                 ORDER BY position"
            ),
            vec![tenant.into()],
            &[Col::Text, Col::Text, Col::Int, Col::Int],
        )
        .await?
        .iter()
        .map(|row| ComplaintLists {
            categories: parse(row[0].as_text()),
            causes: parse(row[1].as_text()),
            at: micros(row[2].as_int()),
            position: position_of(row[3].as_int()),
        })
        .collect();
    Ok(ComplaintListsInForce {
        in_force: history.last().cloned(),
        history,
    })
}

fn micros(value: Option<i64>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(value.unwrap_or_default()).unwrap_or_default()
}

fn position_of(value: Option<i64>) -> u64 {
    u64::try_from(value.unwrap_or_default()).unwrap_or_default()
}

/// The `q` quantile of `values` (sorted), by linear interpolation between the closest
/// ranks, as the backlog's response-time figures.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let (&first, _) = sorted.split_first()?;
    let rank = q * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let a = sorted.get(low).copied().unwrap_or(first);
    let b = sorted.get(low + 1).copied().unwrap_or(a);
    Some(a + (b - a) * (rank - low as f64))
}

/// Resolution times of a group of complaints, in seconds from the open to the first
/// resolution, over those resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ResolutionTimes {
    pub resolved: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl ResolutionTimes {
    fn of(mut seconds: Vec<f64>) -> ResolutionTimes {
        seconds.sort_by(f64::total_cmp);
        ResolutionTimes {
            resolved: seconds.len() as u64,
            median_seconds: quantile(&seconds, 0.5),
            p90_seconds: quantile(&seconds, 0.9),
        }
    }
}

/// One complaint category's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CategoryFigures {
    pub complaints: u64,
    pub resolution: ResolutionTimes,
}

/// A customer with two or more complaints in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RepeatComplainer {
    pub customer_id: String,
    pub complaints: u64,
}

/// Complaints opened in one calendar month (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MonthTrend {
    /// `YYYY-MM`.
    pub month: String,
    pub complaints: u64,
    /// Per category (only categories with complaints that month).
    pub by_category: BTreeMap<String, u64>,
}

/// `GET /v1/service/complaints`: the complaints opened in [from, to).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ComplaintsReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Cases marked a complaint whose case was opened (business time) in the window.
    pub complaints: u64,
    /// Over every complaint of the window.
    pub resolution: ResolutionTimes,
    pub by_category: BTreeMap<String, CategoryFigures>,
    /// Per root cause (the last one its resolutions named); complaints without one are
    /// counted in `without_root_cause`.
    pub by_root_cause: BTreeMap<String, u64>,
    pub without_root_cause: u64,
    /// Customers with two or more complaints in the window, most first, then by id.
    pub repeat_complainers: Vec<RepeatComplainer>,
    /// Per calendar month (UTC) of the open, oldest first, months without complaints left
    /// out.
    pub trend: Vec<MonthTrend>,
}

async fn cases_where(
    db: &ReadDb,
    tenant: &str,
    condition: &str,
    args: Vec<SqlValue>,
) -> Result<Vec<ServiceCase>, ProjectionError> {
    let query = cases_query(condition, args);
    cases_from(tenant, db.fetch(&query.sql, query.args, &query.cols).await?)
}

/// The cases of the tenant (the first argument) meeting `condition`, by id.
fn cases_query(condition: &str, args: Vec<SqlValue>) -> Query {
    Query::new(
        format!("SELECT id, doc FROM {CASES} WHERE tenant = ? AND {condition} ORDER BY id"),
        args,
        &[Col::Text, Col::Text],
    )
}

fn cases_from(tenant: &str, rows: Rows) -> Result<Vec<ServiceCase>, ProjectionError> {
    rows.into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default().to_owned();
            decode_doc(CASES, tenant, &id, row[1].as_text().unwrap_or_default())
        })
        .collect()
}

/// The complaints report over complaints opened in [`from`, `to`).
pub async fn complaints(
    db: &ReadDb,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ComplaintsReport, ProjectionError> {
    let cases = cases_where(
        db,
        tenant,
        "complaint IS NOT NULL AND opened_at >= ? AND opened_at < ?",
        vec![
            tenant.into(),
            SqlValue::Int(from.timestamp_micros()),
            SqlValue::Int(to.timestamp_micros()),
        ],
    )
    .await?;
    Ok(complaints_of(&cases, from, to))
}

/// The complaints report over `cases` (those that are complaints opened in the window
/// count).
pub fn complaints_of(
    cases: &[ServiceCase],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ComplaintsReport {
    let mut all_times = Vec::new();
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_root_cause: BTreeMap<String, u64> = BTreeMap::new();
    let mut without_root_cause = 0;
    let mut per_customer: BTreeMap<String, u64> = BTreeMap::new();
    let mut trend: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut total = 0;
    for case in cases {
        let (Some(category), Some(opened)) = (&case.complaint, case.opened_at) else {
            continue;
        };
        if opened < from || opened >= to {
            continue;
        }
        total += 1;
        let category = category.as_str().to_owned();
        *counts.entry(category.clone()).or_default() += 1;
        let seconds = case.first_resolved_at.map(|resolved| {
            (resolved - opened).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
        });
        if let Some(seconds) = seconds {
            all_times.push(seconds);
            times.entry(category.clone()).or_default().push(seconds);
        }
        match &case.root_cause {
            Some(cause) => *by_root_cause.entry(cause.as_str().to_owned()).or_default() += 1,
            None => without_root_cause += 1,
        }
        if let Some(customer) = &case.customer_id {
            *per_customer
                .entry(customer.as_str().to_owned())
                .or_default() += 1;
        }
        let month = format!("{:04}-{:02}", opened.year(), opened.month());
        *trend.entry(month).or_default().entry(category).or_default() += 1;
    }
    let by_category = counts
        .into_iter()
        .map(|(category, complaints)| {
            let resolution = ResolutionTimes::of(times.remove(&category).unwrap_or_default());
            (
                category,
                CategoryFigures {
                    complaints,
                    resolution,
                },
            )
        })
        .collect();
    let mut repeat_complainers: Vec<RepeatComplainer> = per_customer
        .into_iter()
        .filter(|(_, count)| *count >= 2)
        .map(|(customer_id, complaints)| RepeatComplainer {
            customer_id,
            complaints,
        })
        .collect();
    repeat_complainers.sort_by(|a, b| {
        b.complaints
            .cmp(&a.complaints)
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    ComplaintsReport {
        from,
        to,
        complaints: total,
        resolution: ResolutionTimes::of(all_times),
        by_category,
        by_root_cause,
        without_root_cause,
        repeat_complainers,
        trend: trend
            .into_iter()
            .map(|(month, by_category)| MonthTrend {
                month,
                complaints: by_category.values().sum(),
                by_category,
            })
            .collect(),
    }
}

/// The periods satisfaction is grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Calendar months, UTC: `2026-03`.
    #[default]
    Month,
    /// ISO weeks (Monday to Sunday, UTC): `2026-W10`.
    Week,
}

impl Period {
    pub const ALL: &'static [Period] = &[Period::Month, Period::Week];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Week => "week",
        }
    }

    /// The period holding `at`: its label and its start.
    pub fn of(self, at: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let day = at.date_naive();
        match self {
            Period::Month => {
                let start = NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day);
                (
                    format!("{:04}-{:02}", day.year(), day.month()),
                    Utc.from_utc_datetime(&start.and_time(chrono::NaiveTime::MIN)),
                )
            }
            Period::Week => {
                let week = day.iso_week();
                let start = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (
                    format!("{:04}-W{:02}", week.year(), week.week()),
                    Utc.from_utc_datetime(&start.and_time(chrono::NaiveTime::MIN)),
                )
            }
        }
    }
}

/// CSAT figures of a group of answers: `csat_percent` is the share of 4s and 5s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CsatFigures {
    pub answers: u64,
    /// Scores 4 and 5.
    pub satisfied: u64,
    /// `satisfied / answers × 100`; absent without answers.
    pub csat_percent: Option<f64>,
    pub mean_score: Option<f64>,
    #[serde(skip)]
    sum: u64,
}

impl CsatFigures {
    fn add(&mut self, score: u8) {
        self.answers += 1;
        self.sum += u64::from(score);
        if score >= 4 {
            self.satisfied += 1;
        }
        self.csat_percent = Some(self.satisfied as f64 * 100.0 / self.answers as f64);
        self.mean_score = Some(self.sum as f64 / self.answers as f64);
    }
}

/// NPS figures of a group of answers: `nps` = % promoters (9–10) − % detractors (0–6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NpsFigures {
    pub answers: u64,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    /// From −100 to 100; absent without answers.
    pub nps: Option<f64>,
}

impl NpsFigures {
    fn add(&mut self, score: u8) {
        self.answers += 1;
        match score {
            9.. => self.promoters += 1,
            7..=8 => self.passives += 1,
            _ => self.detractors += 1,
        }
        self.nps =
            Some((self.promoters as f64 - self.detractors as f64) * 100.0 / self.answers as f64);
    }
}

/// One period's CSAT figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CsatPeriod {
    /// `YYYY-MM` or `YYYY-Www`.
    pub period: String,
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub figures: CsatFigures,
}

/// One period's NPS figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NpsPeriod {
    pub period: String,
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub figures: NpsFigures,
}

/// CSAT over the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CsatReport {
    pub overall: CsatFigures,
    /// Per agent: the case's assignee, else its first responder.
    pub by_agent: BTreeMap<String, CsatFigures>,
    /// Answers about cases with no agent (never assigned nor answered).
    pub without_agent: CsatFigures,
    /// Per the case's current priority.
    pub by_priority: BTreeMap<String, CsatFigures>,
    /// Per period of the answer, oldest first, periods without answers left out.
    pub by_period: Vec<CsatPeriod>,
}

/// NPS over the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NpsReport {
    pub overall: NpsFigures,
    pub by_period: Vec<NpsPeriod>,
}

/// `GET /v1/service/satisfaction`: CSAT answers and NPS answers given (business time) in
/// [from, to).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SatisfactionReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub period: Period,
    pub csat: CsatReport,
    pub nps: NpsReport,
}

/// The satisfaction report over answers given in [`from`, `to`).
pub async fn satisfaction(
    db: &ReadDb,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    period: Period,
) -> Result<SatisfactionReport, ProjectionError> {
    let window = || {
        vec![
            SqlValue::from(tenant),
            SqlValue::Int(from.timestamp_micros()),
            SqlValue::Int(to.timestamp_micros()),
        ]
    };
    let cases = cases_where(db, tenant, "csat_at >= ? AND csat_at < ?", window()).await?;
    let answers: Vec<(u8, DateTime<Utc>)> = db
        .fetch(
            &format!(
                "SELECT score, occurred_at FROM {NPS} WHERE tenant = ? AND occurred_at >= ? \
                 AND occurred_at < ? ORDER BY position"
            ),
            window(),
            &[Col::Int, Col::Int],
        )
        .await?
        .iter()
        .map(|row| {
            (
                u8::try_from(row[0].as_int().unwrap_or_default()).unwrap_or_default(),
                micros(row[1].as_int()),
            )
        })
        .collect();
    Ok(satisfaction_of(&cases, &answers, from, to, period))
}

/// The satisfaction report over `cases` (their CSAT answers) and NPS `answers` (score, time),
/// those given in the window counted.
pub fn satisfaction_of(
    cases: &[ServiceCase],
    answers: &[(u8, DateTime<Utc>)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    period: Period,
) -> SatisfactionReport {
    let within = |at: DateTime<Utc>| at >= from && at < to;
    let mut csat = CsatReport {
        overall: CsatFigures::default(),
        by_agent: BTreeMap::new(),
        without_agent: CsatFigures::default(),
        by_priority: BTreeMap::new(),
        by_period: Vec::new(),
    };
    let mut csat_periods: BTreeMap<DateTime<Utc>, (String, CsatFigures)> = BTreeMap::new();
    for case in cases {
        let Some(answer) = case.csat.as_ref().filter(|a| within(a.at)) else {
            continue;
        };
        csat.overall.add(answer.score);
        match &case.agent {
            Some(agent) => csat
                .by_agent
                .entry(agent.as_str().to_owned())
                .or_default()
                .add(answer.score),
            None => csat.without_agent.add(answer.score),
        }
        if let Some(priority) = case.priority {
            csat.by_priority
                .entry(priority.as_str().to_owned())
                .or_default()
                .add(answer.score);
        }
        let (label, start) = period.of(answer.at);
        csat_periods
            .entry(start)
            .or_insert_with(|| (label, CsatFigures::default()))
            .1
            .add(answer.score);
    }
    csat.by_period = csat_periods
        .into_iter()
        .map(|(start, (period, figures))| CsatPeriod {
            period,
            start,
            figures,
        })
        .collect();
    let mut nps = NpsReport {
        overall: NpsFigures::default(),
        by_period: Vec::new(),
    };
    let mut nps_periods: BTreeMap<DateTime<Utc>, (String, NpsFigures)> = BTreeMap::new();
    for (score, at) in answers.iter().filter(|(_, at)| within(*at)) {
        nps.overall.add(*score);
        let (label, start) = period.of(*at);
        nps_periods
            .entry(start)
            .or_insert_with(|| (label, NpsFigures::default()))
            .1
            .add(*score);
    }
    nps.by_period = nps_periods
        .into_iter()
        .map(|(start, (period, figures))| NpsPeriod {
            period,
            start,
            figures,
        })
        .collect();
    SatisfactionReport {
        from,
        to,
        period,
        csat,
        nps,
    }
}

/// A customer's latest CSAT answer, with its case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LatestCsat {
    pub case_id: String,
    /// The customer whose case it is (the view's, or one merged into it).
    pub customer_id: String,
    #[serde(flatten)]
    pub answer: CsatAnswer,
}

/// A customer's latest NPS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LatestNps {
    pub answer_id: String,
    pub customer_id: String,
    pub score: u8,
    /// Personal data: cleared when the customer is erased.
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: u64,
}

/// The 360 view's `satisfaction`: the latest CSAT and NPS answers (by business time, then
/// log position) of a customer and those merged into it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Satisfaction {
    pub latest_csat: Option<LatestCsat>,
    pub latest_nps: Option<LatestNps>,
}

/// The condition keeping answers within `cut` (every one when `None`), over the columns
/// `time`, `recorded` and `position`.
fn within(cut: Option<Cut>, time: &str, recorded: &str, position: &str) -> (String, Vec<SqlValue>) {
    match cut {
        None => ("1 = 1".to_owned(), vec![]),
        Some(Cut::OccurredBy(at)) => (
            format!("{time} <= ?"),
            vec![SqlValue::Int(at.timestamp_micros())],
        ),
        Some(Cut::RecordedBy(at)) => (
            format!("{recorded} <= ?"),
            vec![SqlValue::Int(at.timestamp_micros())],
        ),
        Some(Cut::Position(at)) => (format!("{position} <= ?"), vec![from_position(at)]),
    }
}

/// The latest CSAT and NPS answers of the customers `ids` (a customer and those merged into
/// it) within `cut` (everything when `None`).
pub async fn latest(
    db: &ReadDb,
    tenant: &str,
    ids: &[&str],
    cut: Option<Cut>,
) -> Result<Satisfaction, ProjectionError> {
    let mut answers = Vec::new();
    for chunk in ids.chunks(crate::db::MAX_PARAMS / 2) {
        answers.extend(
            db.fetch_together(latest_queries(tenant, chunk, cut))
                .await?,
        );
    }
    latest_from(tenant, answers)
}

/// The statements of [`latest`] for at most `MAX_PARAMS / 2` ids, to run alone or together
/// with others (`ReadDb::fetch_together`): the cases with a CSAT answer, then the latest
/// NPS answer. [`latest_from`] reads their rows.
pub fn latest_queries(tenant: &str, ids: &[&str], cut: Option<Cut>) -> Vec<Query> {
    let placeholders = crate::db::placeholders(ids.len());
    let (condition, bounds) = within(cut, "csat_at", "csat_recorded_at", "csat_position");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    args.extend(ids.iter().map(|id| SqlValue::from(*id)));
    args.extend(bounds);
    let cases = cases_query(
        &format!("customer_id IN ({placeholders}) AND csat_at IS NOT NULL AND {condition}"),
        args,
    );
    let (condition, bounds) = within(cut, "occurred_at", "recorded_at", "position");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    args.extend(ids.iter().map(|id| SqlValue::from(*id)));
    args.extend(bounds);
    let nps = Query::new(
        format!(
            "SELECT answer_id, customer_id, score, comment, occurred_at, recorded_at, position \
             FROM {NPS} WHERE tenant = ? AND customer_id IN ({placeholders}) AND {condition} \
             ORDER BY occurred_at DESC, position DESC LIMIT 1"
        ),
        args,
        &[
            Col::Text,
            Col::Text,
            Col::Int,
            Col::Text,
            Col::Int,
            Col::Int,
            Col::Int,
        ],
    );
    vec![cases, nps]
}

/// The latest answers from the rows of [`latest_queries`] (of one or more chunks of ids,
/// each chunk's two answers in turn).
pub fn latest_from(tenant: &str, answers: Vec<Rows>) -> Result<Satisfaction, ProjectionError> {
    let mut found = Satisfaction::default();
    let mut answers = answers.into_iter();
    while let (Some(cases), Some(nps)) = (answers.next(), answers.next()) {
        for case in cases_from(tenant, cases)? {
            let (Some(answer), Some(case_id), Some(customer)) =
                (case.csat, case.case_id, case.customer_id)
            else {
                continue;
            };
            let newer = found.latest_csat.as_ref().is_none_or(|seen| {
                (answer.at, answer.position) > (seen.answer.at, seen.answer.position)
            });
            if newer {
                found.latest_csat = Some(LatestCsat {
                    case_id: case_id.as_str().to_owned(),
                    customer_id: customer.as_str().to_owned(),
                    answer,
                });
            }
        }
        for row in nps {
            let answer = LatestNps {
                answer_id: row[0].as_text().unwrap_or_default().to_owned(),
                customer_id: row[1].as_text().unwrap_or_default().to_owned(),
                score: u8::try_from(row[2].as_int().unwrap_or_default()).unwrap_or_default(),
                comment: row[3].as_text().map(str::to_owned),
                at: micros(row[4].as_int()),
                recorded_at: micros(row[5].as_int()),
                position: position_of(row[6].as_int()),
            };
            let newer = found
                .latest_nps
                .as_ref()
                .is_none_or(|seen| (answer.at, answer.position) > (seen.at, seen.position));
            if newer {
                found.latest_nps = Some(answer);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use crm_core::catalog::DomainEvent;
    use serde_json::{Value, json};

    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn ev(position: u64, at: &str, event_type: &str, data: Value) -> ProjectedEvent {
        let event = DomainEvent::parse(event_type, &data).expect("event");
        crate::testing::event(position, t(at), event)
    }

    #[test]
    fn quantiles_interpolate_between_the_closest_ranks() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.9), Some(7.0));
        assert_eq!(quantile(&[10.0, 20.0], 0.5), Some(15.0));
        assert_eq!(quantile(&[10.0, 20.0, 110.0], 0.9), Some(20.0 + 90.0 * 0.8));
    }

    #[test]
    fn periods_are_calendar_months_and_iso_weeks_in_utc() {
        let (label, start) = Period::Month.of(t("2026-03-31T23:59:59Z"));
        assert_eq!(
            (label.as_str(), start),
            ("2026-03", t("2026-03-01T00:00:00Z"))
        );
        // 2027-01-01 is a Friday: ISO week 53 of 2026, which began on Monday 2026-12-28.
        let (label, start) = Period::Week.of(t("2027-01-01T12:00:00Z"));
        assert_eq!(
            (label.as_str(), start),
            ("2026-W53", t("2026-12-28T00:00:00Z"))
        );
        let (label, _) = Period::Week.of(t("2026-03-02T00:00:00Z"));
        assert_eq!(label, "2026-W10");
    }

    #[test]
    fn a_case_folds_its_agent_priority_complaint_first_resolution_and_one_csat() {
        let mut case = ServiceCase::default();
        for event in [
            ev(
                1,
                "2026-03-01T00:00:00Z",
                "CaseOpened",
                json!({"case_id": "k-1", "customer_id": "c-1", "subject": "s", "channel": "web", "priority": "normal"}),
            ),
            ev(
                2,
                "2026-03-01T01:00:00Z",
                "CaseResponded",
                json!({"case_id": "k-1", "agent": "u-1"}),
            ),
            ev(
                3,
                "2026-03-01T02:00:00Z",
                "CaseResponded",
                json!({"case_id": "k-1", "agent": "u-2"}),
            ),
            ev(
                4,
                "2026-03-01T03:00:00Z",
                "CaseEscalated",
                json!({"case_id": "k-1", "priority": "urgent"}),
            ),
            ev(
                5,
                "2026-03-01T04:00:00Z",
                "CaseEscalated",
                json!({"case_id": "k-1", "priority": "low"}),
            ),
            ev(
                6,
                "2026-03-01T05:00:00Z",
                "CaseMarkedComplaint",
                json!({"case_id": "k-1", "category": "billing"}),
            ),
            ev(
                7,
                "2026-03-01T06:00:00Z",
                "CaseResolved",
                json!({"case_id": "k-1", "root_cause": "late"}),
            ),
            ev(
                8,
                "2026-03-02T00:00:00Z",
                "CaseReopened",
                json!({"case_id": "k-1"}),
            ),
            ev(
                9,
                "2026-03-03T00:00:00Z",
                "CaseResolved",
                json!({"case_id": "k-1"}),
            ),
            ev(
                10,
                "2026-03-04T00:00:00Z",
                "CsatRecorded",
                json!({"case_id": "k-1", "score": 2, "comment": "slow"}),
            ),
            ev(
                11,
                "2026-03-05T00:00:00Z",
                "CsatRecorded",
                json!({"case_id": "k-1", "score": 5}),
            ),
        ] {
            case.apply(&event);
        }
        assert_eq!(
            case.agent.as_ref().map(|a| a.as_str()),
            Some("u-1"),
            "the first responder"
        );
        assert_eq!(case.priority, Some(Priority::Urgent), "never lowered");
        assert_eq!(case.first_resolved_at, Some(t("2026-03-01T06:00:00Z")));
        assert_eq!(case.root_cause.as_ref().map(|c| c.as_str()), Some("late"));
        let csat = case.csat.clone().expect("csat");
        assert_eq!(
            (csat.score, csat.comment.as_deref(), csat.position),
            (2, Some("slow"), 10)
        );
        case.apply(&ev(
            12,
            "2026-03-06T00:00:00Z",
            "CaseAssigned",
            json!({"case_id": "k-1", "agent": "u-3"}),
        ));
        assert_eq!(
            case.agent.as_ref().map(|a| a.as_str()),
            Some("u-3"),
            "the assignee"
        );
        case.erase_personal();
        assert_eq!(case.csat.expect("csat").comment, None);
        // An erased comment read back from the log is no comment.
        let mut erased = ServiceCase::default();
        erased.apply(&ev(
            1,
            "2026-03-04T00:00:00Z",
            "CsatRecorded",
            json!({"case_id": "k-2", "score": 4, "comment": "[erased]"}),
        ));
        assert_eq!(erased.csat.expect("csat").comment, None);
    }

    #[test]
    fn csat_and_nps_figures_follow_their_definitions() {
        let mut csat = CsatFigures::default();
        for score in [5, 4, 3, 1] {
            csat.add(score);
        }
        assert_eq!((csat.answers, csat.satisfied), (4, 2));
        assert_eq!(
            (csat.csat_percent, csat.mean_score),
            (Some(50.0), Some(3.25))
        );
        let mut nps = NpsFigures::default();
        for score in [10, 9, 8, 7, 6, 0] {
            nps.add(score);
        }
        assert_eq!((nps.promoters, nps.passives, nps.detractors), (2, 2, 2));
        assert_eq!(nps.nps, Some(0.0));
    }
}
