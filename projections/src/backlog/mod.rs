//! The service backlog read model: one row per case (priority, status, agent, opened, first
//! response, resolution, its SLA clocks) and the queries over it (issue 19).
//!
//! Tenant settings are facts: `SlaTargetsSet` (`settings-sla`) and `BusinessCalendarSet` /
//! `BusinessCalendarCleared` (`settings-calendar`) are kept in `rm_service_settings`, one row
//! per event, and a case takes the targets and the calendar in force at its open (the
//! settings recorded before it in the log). The projection computes each case's clocks after
//! every event of it ([`clocks`]) and stores their due, warning and stop times, so the live
//! backlog is judged in SQL at any time given; the backlog as it stood at a past time refolds
//! every case opened by then from its facts, cut there ([`fold::Case::as_of`]), under the same
//! clocks.

pub mod analytics;
pub mod cases;
pub mod clocks;
pub mod fold;
pub mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::bookkeeping::from_position;
use crate::db::{Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, EntityDoc, apply_entity_docs_with, decode_doc};
use crm_core::ids::EntityId;

pub use cases::{CaseFilter, CaseLine, Window};
pub use fold::{Breaches, Case, CaseStatus, SlaTarget, SlaTargets};

pub const TABLE: &str = "rm_cases";
/// Every service setting event: (tenant, position) → setting, type, data, times.
pub const SETTINGS: &str = "rm_service_settings";
/// The name of the projection (its checkpoint's key).
pub const NAME: &str = "service_backlog";
/// The legacy key of SLA targets in `crm_tenant_settings` (before settings were facts).
const SLA_SETTING: &str = "sla_targets";

const TABLES: &[TableDef] = &[
    TableDef {
        name: TABLE,
        create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        id TEXTKEY NOT NULL,
        customer_id TEXTKEY,
        status TEXT NOT NULL,
        priority TEXT,
        agent TEXTKEY,
        opened_at BIGINT,
        first_response_at BIGINT,
        resolved_at BIGINT,
        closed_at BIGINT,
        first_response_seconds BIGINT,
        channel TEXT,
        fr_due BIGINT,
        fr_warn BIGINT,
        fr_stop BIGINT,
        res_due BIGINT,
        res_warn BIGINT,
        next_due BIGINT,
        paused BIGINT NOT NULL,
        last_position BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    )",
        indexes: &[
            "CREATE INDEX {t}_customer ON {t} (tenant, customer_id)",
            "CREATE INDEX {t}_status ON {t} (tenant, status, opened_at)",
            "CREATE INDEX {t}_response ON {t} (tenant, first_response_seconds)",
            "CREATE INDEX {t}_next ON {t} (tenant, status, next_due, id)",
        ],
    },
    TableDef {
        name: SETTINGS,
        create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        position BIGINT NOT NULL,
        setting TEXTKEY NOT NULL,
        event_type TEXT NOT NULL,
        data TEXT NOT NULL,
        occurred_at BIGINT NOT NULL,
        recorded_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, position)
    )",
        indexes: &["CREATE INDEX {t}_setting ON {t} (tenant, setting, position)"],
    },
];

impl DocRow for Case {
    const COLUMNS: &'static [&'static str] = &[
        "customer_id",
        "status",
        "priority",
        "agent",
        "opened_at",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "first_response_seconds",
        "channel",
        "fr_due",
        "fr_warn",
        "fr_stop",
        "res_due",
        "res_warn",
        "next_due",
        "paused",
        "last_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        let micros = |t: Option<DateTime<Utc>>| SqlValue::opt_int(t.map(|t| t.timestamp_micros()));
        let clocks = self.clocks.as_ref();
        vec![
            SqlValue::opt_text(self.customer_id.as_ref().map(|c| c.as_str())),
            status_text(self.status).into(),
            SqlValue::opt_text(self.priority.map(|p| p.as_str())),
            SqlValue::opt_text(self.agent.as_ref().map(|a| a.as_str())),
            micros(self.opened_at),
            micros(self.first_response_at),
            micros(self.resolved_at),
            micros(self.closed_at),
            SqlValue::opt_int(self.first_response_seconds()),
            SqlValue::opt_text(self.channel.map(|c| c.as_str())),
            micros(clocks.and_then(|c| c.first_response.due)),
            micros(clocks.and_then(|c| c.first_response.warning)),
            micros(clocks.and_then(|c| c.first_response.stopped_at)),
            micros(clocks.and_then(|c| c.resolution.due)),
            micros(clocks.and_then(|c| c.resolution.warning)),
            micros(self.next_due()),
            SqlValue::Int(i64::from(self.is_paused())),
            from_position(self.last_position),
        ]
    }
}

impl EntityDoc for Case {
    const CATEGORY: &'static str = "case";

    fn fold(&mut self, event: &ProjectedEvent) {
        fold::apply(self, event);
    }

    fn customer_id(&self) -> Option<&EntityId> {
        self.customer_id.as_ref()
    }

    fn erase_personal(&mut self) {
        Case::erase_personal(self);
    }
}

fn status_text(status: CaseStatus) -> &'static str {
    match status {
        CaseStatus::Unknown => "unknown",
        CaseStatus::Open => "open",
        CaseStatus::Resolved => "resolved",
        CaseStatus::Closed => "closed",
    }
}

/// The service backlog projection.
#[derive(Debug, Default)]
pub struct BacklogProjection;

#[async_trait::async_trait]
impl Projection for BacklogProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i64 {
        // 2: settings as facts, pauses, clocks stored per case (issue 19).
        2
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
        let settings_table = tables.get(SETTINGS);
        let tenants: BTreeSet<&str> = events
            .iter()
            .filter(|e| matches!(e.event.category(), "case" | "settings"))
            .map(|e| e.tenant.as_str())
            .collect();
        // The settings in force before this batch, then each settings event of it in order.
        let mut in_force = settings::InForce::load(tx, settings_table, &tenants).await?;
        let mut rows = Vec::new();
        for event in events {
            if let Some(row) = settings::row(event) {
                rows.push(row);
            }
        }
        apply_entity_docs_with::<Case>(tx, tables.get(TABLE), events, |doc, event| match doc {
            None => in_force.observe(event),
            Some(case) => {
                let opened_before = case.status != CaseStatus::Unknown;
                fold::apply(case, event);
                let tenant = event.tenant.as_str();
                if !opened_before && case.status != CaseStatus::Unknown && case.sla.is_none() {
                    case.sla = Some(in_force.case_sla(tenant));
                }
                case.clocks = case.sla.as_ref().and_then(|sla| {
                    clocks::compute(case, sla, &in_force.clock(tenant, sla.calendar_position))
                });
            }
        })
        .await?;
        tx.insert_rows(
            settings_table,
            settings::COLUMNS,
            rows,
            "ON CONFLICT DO NOTHING",
        )
        .await
    }
}

/// The tenant's SLA targets in force now, with the warning share and the position that set
/// them (none: the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TargetsInForce {
    #[serde(flatten)]
    pub targets: SlaTargets,
    pub warning_percent: u8,
    /// The `SlaTargetsSet` that set them; absent while the defaults hold.
    pub set_position: Option<u64>,
}

/// The tenant's SLA targets in force (the defaults when none were set).
pub async fn sla_targets(db: &ReadDb, tenant: &str) -> Result<TargetsInForce, ProjectionError> {
    let sla = settings::latest_sla(db, tenant).await?;
    Ok(TargetsInForce {
        targets: sla.targets,
        warning_percent: sla.warning_percent,
        set_position: sla.targets_position,
    })
}

/// The SLA targets a tenant kept in the settings table before settings were facts, if any:
/// what `crm-api serve` turns into a `SlaTargetsSet` at its start for a tenant whose
/// `settings-sla` stream is empty.
pub async fn legacy_sla_targets(db: &ReadDb) -> Result<Vec<(String, SlaTargets)>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT tenant, value FROM crm_tenant_settings WHERE setting = ? ORDER BY tenant",
            vec![SLA_SETTING.into()],
            &[Col::Text, Col::Text],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let tenant = row[0].as_text().unwrap_or_default().to_owned();
            let targets =
                serde_json::from_str(row[1].as_text().unwrap_or_default()).map_err(|e| {
                    ProjectionError::Corrupt {
                        table: "crm_tenant_settings".into(),
                        key: format!("{tenant}/{SLA_SETTING}"),
                        reason: e.to_string(),
                    }
                })?;
            Ok((tenant, targets))
        })
        .collect()
}

/// Forgets a tenant's legacy SLA targets once they are a fact of the log.
pub async fn forget_legacy_sla_targets(db: &ReadDb, tenant: &str) -> Result<(), ProjectionError> {
    db.execute(
        "DELETE FROM crm_tenant_settings WHERE tenant = ? AND setting = ?",
        vec![tenant.into(), SLA_SETTING.into()],
    )
    .await
    .map(drop)
}

/// One open case with its clocks, judged at the backlog's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BacklogLine {
    #[serde(flatten)]
    pub case: Case,
    pub first_response_due: Option<DateTime<Utc>>,
    pub resolution_due: Option<DateTime<Utc>>,
    pub first_response_warning: Option<DateTime<Utc>>,
    pub resolution_warning: Option<DateTime<Utc>>,
    /// The next clock to beat: first response until answered, then resolution; absent while
    /// a pause stopped it short of its target.
    pub next_due: Option<DateTime<Utc>>,
    /// Waiting on the customer: its clocks do not count.
    pub paused: bool,
    pub breaches: Breaches,
    /// Clocks past their warning time (breached ones included).
    pub warnings: Breaches,
}

impl BacklogLine {
    fn new(mut case: Case, at: DateTime<Utc>) -> BacklogLine {
        case.facts = Vec::new();
        let clocks = case.clocks.clone().unwrap_or_default();
        BacklogLine {
            first_response_due: clocks.first_response.due,
            resolution_due: clocks.resolution.due,
            first_response_warning: clocks.first_response.warning,
            resolution_warning: clocks.resolution.warning,
            next_due: case.next_due(),
            paused: case.is_paused(),
            breaches: case.breaches_at(at),
            warnings: case.warnings_at(at),
            case,
        }
    }
}

/// What `GET /v1/service/backlog` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Backlog {
    pub evaluated_at: DateTime<Utc>,
    /// `live`: the cases as they stand now, judged at `evaluated_at`; `as_of`: the cases as
    /// they stood at `evaluated_at` (a past time), judged then.
    pub basis: &'static str,
    /// The targets in force at `evaluated_at` (each case keeps those of its open).
    pub targets: TargetsInForce,
    /// Open cases, the most urgent due time first (a page of them; paused ones last).
    pub open: Vec<BacklogLine>,
    pub open_count: i64,
    pub by_priority: BTreeMap<String, i64>,
    pub by_status: BTreeMap<String, i64>,
    /// Cases breaching each clock at `evaluated_at`, over every case, open or closed.
    pub first_response_breaches: i64,
    pub resolution_breaches: i64,
    /// Cases past each clock's warning time at `evaluated_at` (breaches included).
    pub first_response_warnings: i64,
    pub resolution_warnings: i64,
    pub paused: i64,
    /// Elapsed seconds from the open to the first response, over the cases answered.
    pub first_response_median_seconds: Option<f64>,
    pub first_response_p90_seconds: Option<f64>,
    /// Open cases per agent (the assignee, or the first responder of a case never
    /// assigned); open cases with neither are counted in `unassigned` instead.
    pub open_per_agent: BTreeMap<String, i64>,
    /// Open cases with no agent (neither assigned nor answered).
    pub unassigned: i64,
}

/// The backlog of `tenant` as it stands now, judged at `at`: `limit` open cases from
/// `offset`, by next due time.
pub async fn backlog(
    db: &ReadDb,
    tenant: &str,
    at: DateTime<Utc>,
    offset: usize,
    limit: usize,
) -> Result<Backlog, ProjectionError> {
    let targets = sla_targets(db, tenant).await?;
    let open = db
        .fetch(
            &format!(
                "SELECT id, doc FROM {TABLE} WHERE tenant = ? AND status = 'open' \
                 ORDER BY CASE WHEN next_due IS NULL THEN 1 ELSE 0 END, next_due, id \
                 LIMIT ? OFFSET ?"
            ),
            vec![
                tenant.into(),
                SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
                SqlValue::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
            ],
            &[Col::Text, Col::Text],
        )
        .await?
        .into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            let case: Case = decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            Ok(BacklogLine::new(case, at))
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;

    let grouped = |column: &'static str, only_open: bool| {
        let filter = if only_open {
            " AND status = 'open'"
        } else {
            ""
        };
        format!(
            "SELECT COALESCE({column}, ''), COUNT(*) FROM {TABLE} WHERE tenant = ?{filter} GROUP BY {column}"
        )
    };
    let mut counts = Vec::new();
    for (column, only_open) in [("priority", false), ("status", false), ("agent", true)] {
        let rows = db
            .fetch(
                &grouped(column, only_open),
                vec![tenant.into()],
                &[Col::Text, Col::Int],
            )
            .await?;
        counts.push(
            rows.into_iter()
                .map(|r| {
                    (
                        r[0].as_text().unwrap_or_default().to_owned(),
                        r[1].as_int().unwrap_or(0),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        );
    }
    let mut open_per_agent = counts.pop().unwrap_or_default();
    // No agent id is empty (ids are 1 to 128 characters): `""` is the NULL of unassigned cases.
    let unassigned = open_per_agent.remove("").unwrap_or(0);
    let by_status = counts.pop().unwrap_or_default();
    let by_priority = counts.pop().unwrap_or_default();

    // Every clock judged at `at`, the rules of `clocks::Clock::breached_at` in SQL.
    let late = |limit: &str, stop: &str| {
        format!(
            "CAST(SUM(CASE WHEN {limit} IS NOT NULL AND (({stop} IS NOT NULL AND {stop} > {limit}) \
             OR ({stop} IS NULL AND ? > {limit})) THEN 1 ELSE 0 END) AS BIGINT)"
        )
    };
    let at_micros = SqlValue::Int(at.timestamp_micros());
    let judged = db
        .fetch(
            &format!(
                "SELECT {}, {}, {}, {}, CAST(SUM(paused) AS BIGINT), \
                 CAST(SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM {TABLE} WHERE tenant = ?",
                late("fr_due", "fr_stop"),
                late("res_due", "resolved_at"),
                late("fr_warn", "fr_stop"),
                late("res_warn", "resolved_at"),
            ),
            vec![
                at_micros.clone(),
                at_micros.clone(),
                at_micros.clone(),
                at_micros,
                tenant.into(),
            ],
            &[Col::Int, Col::Int, Col::Int, Col::Int, Col::Int, Col::Int],
        )
        .await?;
    let count = |i: usize| judged.first().and_then(|r| r[i].as_int()).unwrap_or(0);

    Ok(Backlog {
        evaluated_at: at,
        basis: "live",
        targets,
        open,
        open_count: count(5),
        by_priority,
        by_status,
        first_response_breaches: count(0),
        resolution_breaches: count(1),
        first_response_warnings: count(2),
        resolution_warnings: count(3),
        paused: count(4),
        first_response_median_seconds: percentile(db, tenant, 0.5).await?,
        first_response_p90_seconds: percentile(db, tenant, 0.9).await?,
        open_per_agent,
        unassigned,
    })
}

/// The backlog of `tenant` as it stood at `at` (business time): every case opened by then,
/// folded from its facts up to `at`, its clocks under the SLA of its open, judged at `at`;
/// `limit` open cases from `offset`, by next due time. Reads every case opened by `at`.
pub async fn backlog_as_of(
    db: &ReadDb,
    tenant: &str,
    at: DateTime<Utc>,
    offset: usize,
    limit: usize,
) -> Result<Backlog, ProjectionError> {
    let cut = crate::asof::Cut::OccurredBy(at);
    let rows = db
        .fetch(
            &format!(
                "SELECT id, doc FROM {TABLE} WHERE tenant = ? AND opened_at IS NOT NULL \
                 AND opened_at <= ? ORDER BY id"
            ),
            vec![tenant.into(), SqlValue::Int(at.timestamp_micros())],
            &[Col::Text, Col::Text],
        )
        .await?;
    let mut calendars: BTreeMap<u64, crm_core::sla::SlaClock> = BTreeMap::new();
    let mut cases = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row[0].as_text().unwrap_or_default();
        let live: Case = decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
        let Some(mut past) = live.as_of(cut) else {
            continue;
        };
        if let Some(sla) = past.sla.clone() {
            let clock = match sla.calendar_position {
                Some(position) => match calendars.entry(position) {
                    std::collections::btree_map::Entry::Occupied(known) => known.get().clone(),
                    std::collections::btree_map::Entry::Vacant(slot) => slot
                        .insert(settings::calendar_at(db, tenant, Some(position)).await?)
                        .clone(),
                },
                None => crm_core::sla::SlaClock::Elapsed,
            };
            past.clocks = clocks::compute(&past, &sla, &clock);
        }
        cases.push(past);
    }
    let mut backlog = Backlog {
        evaluated_at: at,
        basis: "as_of",
        targets: targets_at(db, tenant, at).await?,
        open: Vec::new(),
        open_count: 0,
        by_priority: BTreeMap::new(),
        by_status: BTreeMap::new(),
        first_response_breaches: 0,
        resolution_breaches: 0,
        first_response_warnings: 0,
        resolution_warnings: 0,
        paused: 0,
        first_response_median_seconds: None,
        first_response_p90_seconds: None,
        open_per_agent: BTreeMap::new(),
        unassigned: 0,
    };
    let mut response_seconds = Vec::new();
    for case in &cases {
        let priority = case.priority.map_or("", |p| p.as_str()).to_owned();
        *backlog.by_priority.entry(priority).or_default() += 1;
        *backlog
            .by_status
            .entry(status_text(case.status).to_owned())
            .or_default() += 1;
        let breaches = case.breaches_at(at);
        let warnings = case.warnings_at(at);
        backlog.first_response_breaches += i64::from(breaches.first_response);
        backlog.resolution_breaches += i64::from(breaches.resolution);
        backlog.first_response_warnings += i64::from(warnings.first_response);
        backlog.resolution_warnings += i64::from(warnings.resolution);
        backlog.paused += i64::from(case.is_paused());
        response_seconds.extend(case.first_response_seconds());
        if case.is_open() {
            backlog.open_count += 1;
            match &case.agent {
                Some(agent) => {
                    *backlog
                        .open_per_agent
                        .entry(agent.as_str().to_owned())
                        .or_default() += 1
                }
                None => backlog.unassigned += 1,
            }
        }
    }
    response_seconds.sort_unstable();
    backlog.first_response_median_seconds = quantile(&response_seconds, 0.5);
    backlog.first_response_p90_seconds = quantile(&response_seconds, 0.9);
    let mut open: Vec<Case> = cases.into_iter().filter(Case::is_open).collect();
    open.sort_by(|a, b| {
        let key = |c: &Case| (c.next_due().is_none(), c.next_due(), c.case_id.clone());
        key(a).cmp(&key(b))
    });
    backlog.open = open
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|case| BacklogLine::new(case, at))
        .collect();
    Ok(backlog)
}

/// The targets in force at `at` (business time of the settings events).
async fn targets_at(
    db: &ReadDb,
    tenant: &str,
    at: DateTime<Utc>,
) -> Result<TargetsInForce, ProjectionError> {
    let sla = settings::sla_at(db, tenant, Some(at)).await?;
    Ok(TargetsInForce {
        targets: sla.targets,
        warning_percent: sla.warning_percent,
        set_position: sla.targets_position,
    })
}

/// The `q` quantile of sorted whole seconds (linear interpolation between closest ranks, as
/// [`percentile`] computes it in SQL): [`crate::service_quality::quantile`]'s rule, which the
/// service reports share.
pub(crate) fn quantile(sorted: &[i64], q: f64) -> Option<f64> {
    let values: Vec<f64> = sorted.iter().map(|v| *v as f64).collect();
    crate::service_quality::quantile(&values, q)
}

/// The `q` quantile of first-response times (linear interpolation between closest ranks).
async fn percentile(db: &ReadDb, tenant: &str, q: f64) -> Result<Option<f64>, ProjectionError> {
    let count = db
        .fetch(
            &format!(
                "SELECT COUNT(*) FROM {TABLE} WHERE tenant = ? AND first_response_seconds IS NOT NULL"
            ),
            vec![tenant.into()],
            &[Col::Int],
        )
        .await?
        .first()
        .and_then(|r| r[0].as_int())
        .unwrap_or(0);
    if count == 0 {
        return Ok(None);
    }
    let rank = q * (count - 1) as f64;
    let low = rank.floor() as i64;
    let values: Vec<i64> = db
        .fetch(
            &format!(
                "SELECT first_response_seconds FROM {TABLE} WHERE tenant = ? \
                 AND first_response_seconds IS NOT NULL ORDER BY first_response_seconds LIMIT 2 OFFSET ?"
            ),
            vec![tenant.into(), SqlValue::Int(low)],
            &[Col::Int],
        )
        .await?
        .iter()
        .filter_map(|r| r[0].as_int())
        .collect();
    let Some(&a) = values.first() else {
        return Ok(None);
    };
    let b = values.get(1).copied().unwrap_or(a);
    Ok(Some(a as f64 + (b - a) as f64 * (rank - low as f64)))
}
