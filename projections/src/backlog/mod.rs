//! The service backlog read model: one row per case (priority, status, agent, opened, first
//! response, resolution) and the queries over it. Due times come from the tenant's SLA
//! targets at query time, so changing a target needs no rebuild, and breaches are judged
//! against a time the caller gives.

pub mod cases;
pub mod fold;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::catalog::values::Priority;
use serde::Serialize;

use crate::bookkeeping::{self, from_position};
use crate::db::{Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, EntityDoc, apply_entity_docs, decode_doc};
use crm_core::ids::EntityId;

pub use cases::{CaseFilter, CaseLine, Window};
pub use fold::{Breaches, Case, CaseStatus, SlaTarget, SlaTargets};

pub const TABLE: &str = "rm_cases";
const SLA_SETTING: &str = "sla_targets";

const TABLES: &[TableDef] = &[TableDef {
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
        last_position BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    )",
    indexes: &[
        "CREATE INDEX {t}_customer ON {t} (tenant, customer_id)",
        "CREATE INDEX {t}_status ON {t} (tenant, status, opened_at)",
        "CREATE INDEX {t}_response ON {t} (tenant, first_response_seconds)",
    ],
}];

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
        "last_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        let micros = |t: Option<DateTime<Utc>>| SqlValue::opt_int(t.map(|t| t.timestamp_micros()));
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
        "service_backlog"
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
        apply_entity_docs::<Case>(tx, tables.get(TABLE), events).await
    }
}

/// The tenant's SLA targets, or the defaults when none were set.
pub async fn sla_targets(db: &ReadDb, tenant: &str) -> Result<SlaTargets, ProjectionError> {
    match bookkeeping::tenant_setting(db, tenant, SLA_SETTING).await? {
        Some(json) => serde_json::from_str(&json).map_err(|e| ProjectionError::Corrupt {
            table: "crm_tenant_settings".into(),
            key: format!("{tenant}/{SLA_SETTING}"),
            reason: e.to_string(),
        }),
        None => Ok(SlaTargets::default()),
    }
}

/// Sets the tenant's SLA targets after checking them; the message names the bad target.
pub async fn set_sla_targets(
    db: &ReadDb,
    tenant: &str,
    targets: &SlaTargets,
) -> Result<Result<(), String>, ProjectionError> {
    if let Err(problem) = targets.validate() {
        return Ok(Err(problem));
    }
    let json =
        serde_json::to_string(targets).map_err(|e| ProjectionError::Schema(e.to_string()))?;
    bookkeeping::set_tenant_setting(db, tenant, SLA_SETTING, &json).await?;
    Ok(Ok(()))
}

/// One open case with its due times and breaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BacklogLine {
    #[serde(flatten)]
    pub case: Case,
    pub first_response_due: Option<DateTime<Utc>>,
    pub resolution_due: Option<DateTime<Utc>>,
    /// The next clock to beat: first response until answered, then resolution.
    pub next_due: Option<DateTime<Utc>>,
    pub breaches: Breaches,
}

/// What `GET /v1/service/backlog` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Backlog {
    pub evaluated_at: DateTime<Utc>,
    pub targets: SlaTargets,
    /// Open cases, the most urgent due time first (a page of them).
    pub open: Vec<BacklogLine>,
    pub by_priority: BTreeMap<String, i64>,
    pub by_status: BTreeMap<String, i64>,
    /// Cases breaching each clock at `evaluated_at`, over every case.
    pub first_response_breaches: i64,
    pub resolution_breaches: i64,
    pub first_response_median_seconds: Option<f64>,
    pub first_response_p90_seconds: Option<f64>,
    /// Open cases per agent (the assignee, or the first responder of a case never
    /// assigned); open cases with neither are counted in `unassigned` instead.
    pub open_per_agent: BTreeMap<String, i64>,
    /// Open cases with no agent (neither assigned nor answered).
    pub unassigned: i64,
}

/// The backlog of `tenant` evaluated at `at`: `limit` open cases from `offset`, by due time.
pub async fn backlog(
    db: &ReadDb,
    tenant: &str,
    at: DateTime<Utc>,
    offset: usize,
    limit: usize,
) -> Result<Backlog, ProjectionError> {
    let targets = sla_targets(db, tenant).await?;
    // Due-time expressions per priority, in microseconds, from the tenant's targets.
    let minutes = |f: fn(&SlaTarget) -> u32| -> Vec<SqlValue> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .iter()
        .map(|p| SqlValue::Int(i64::from(f(&targets.for_priority(*p))) * 60_000_000))
        .collect()
    };
    let offset_expr =
        "(CASE priority WHEN 'low' THEN ? WHEN 'high' THEN ? WHEN 'urgent' THEN ? ELSE ? END)";
    let reorder = |v: Vec<SqlValue>| vec![v[0].clone(), v[2].clone(), v[3].clone(), v[1].clone()];
    let fr = reorder(minutes(|t| t.first_response_minutes));
    let res = reorder(minutes(|t| t.resolution_minutes));
    let at_micros = SqlValue::Int(at.timestamp_micros());

    let mut args: Vec<SqlValue> = vec![tenant.into()];
    args.extend(fr.clone());
    args.extend(res.clone());
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    args.push(SqlValue::Int(i64::try_from(offset).unwrap_or(i64::MAX)));
    let open = db
        .fetch(
            &format!(
                "SELECT id, doc FROM {TABLE} \
                 WHERE tenant = ? AND status = 'open' AND opened_at IS NOT NULL \
                 ORDER BY CASE WHEN first_response_at IS NULL THEN opened_at + {offset_expr} \
                 ELSE opened_at + {offset_expr} END, id LIMIT ? OFFSET ?"
            ),
            args,
            &[Col::Text, Col::Text],
        )
        .await?
        .into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            let case: Case = decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            let first_response_due = case.first_response_due(&targets);
            let resolution_due = case.resolution_due(&targets);
            Ok(BacklogLine {
                next_due: if case.first_response_at.is_none() {
                    first_response_due
                } else {
                    resolution_due
                },
                breaches: case.breaches(&targets, at),
                first_response_due,
                resolution_due,
                case,
            })
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

    // Breaches over every case, the same rules as `Case::breaches`.
    let mut args = Vec::new();
    args.extend(fr.clone());
    args.extend(fr);
    args.push(at_micros.clone());
    args.extend(res.clone());
    args.extend(res);
    args.push(at_micros);
    args.push(tenant.into());
    let breaches = db
        .fetch(
            &format!(
                "SELECT \
                 CAST(SUM(CASE WHEN first_response_at > opened_at + {offset_expr} \
                      OR (first_response_at IS NULL AND status = 'open' AND ? > opened_at + {offset_expr}) \
                      THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN resolved_at > opened_at + {offset_expr} \
                      OR (status = 'open' AND ? > opened_at + {offset_expr}) THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM {TABLE} WHERE tenant = ? AND opened_at IS NOT NULL"
            ),
            breach_args(args),
            &[Col::Int, Col::Int],
        )
        .await?;
    let breach = |i: usize| breaches.first().and_then(|r| r[i].as_int()).unwrap_or(0);

    Ok(Backlog {
        evaluated_at: at,
        targets,
        open,
        by_priority,
        by_status,
        first_response_breaches: breach(0),
        resolution_breaches: breach(1),
        first_response_median_seconds: percentile(db, tenant, 0.5).await?,
        first_response_p90_seconds: percentile(db, tenant, 0.9).await?,
        open_per_agent,
        unassigned,
    })
}

/// Orders the breach statement's arguments: first-response offsets and `at` inside the
/// first sum, resolution ones inside the second, then the tenant.
fn breach_args(args: Vec<SqlValue>) -> Vec<SqlValue> {
    // Incoming: fr(4), fr(4), at, res(4), res(4), at, tenant.
    // Statement: fr(4), at, fr(4), res(4), at, res(4), tenant.
    let mut out = Vec::with_capacity(args.len());
    out.extend_from_slice(&args[0..4]);
    out.push(args[8].clone());
    out.extend_from_slice(&args[4..8]);
    out.extend_from_slice(&args[9..13]);
    out.push(args[17].clone());
    out.extend_from_slice(&args[13..17]);
    out.push(args[18].clone());
    out
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
