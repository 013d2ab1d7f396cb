//! The service settings as the backlog projection keeps them: every `SlaTargetsSet`,
//! `BusinessCalendarSet` and `BusinessCalendarCleared` is a row of `rm_service_settings`
//! (its canonical data, at its position), and [`InForce`] is what a batch folds against: the
//! settings in force per tenant, moved by each settings event in log order, and every
//! calendar a case of the batch may name by position.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crm_core::catalog::DomainEvent;
use crm_core::sla::SlaClock;

use crate::backlog::SETTINGS;
use crate::backlog::clocks::CaseSla;
use crate::backlog::fold::SlaTargets;
use crate::bookkeeping::from_position;
use crate::db::{Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;

/// The columns of a settings row.
pub const COLUMNS: &[&str] = &[
    "tenant",
    "position",
    "setting",
    "event_type",
    "data",
    "occurred_at",
    "recorded_at",
];

const SLA: &str = "sla";
const CALENDAR: &str = "calendar";

/// What a settings event changes.
enum Change {
    Targets(SlaTargets, u8),
    Calendar(Option<SlaClock>),
}

fn change_of(event: &DomainEvent) -> Option<Change> {
    match event {
        DomainEvent::SlaTargetsSet(set) => {
            let (targets, warning) = targets_of(set);
            Some(Change::Targets(targets, warning))
        }
        DomainEvent::BusinessCalendarSet(set) => Some(Change::Calendar(Some(clock_of(set)))),
        DomainEvent::BusinessCalendarCleared(_) => Some(Change::Calendar(None)),
        _ => None,
    }
}

fn targets_of(set: &crm_core::catalog::settings::SlaTargetsSet) -> (SlaTargets, u8) {
    (set.targets, set.warning_percent())
}

fn clock_of(set: &crm_core::catalog::settings::BusinessCalendarSet) -> SlaClock {
    set.clock()
}

/// The row of a settings event; `None` for other events.
pub fn row(event: &ProjectedEvent) -> Option<Vec<SqlValue>> {
    let setting = match &event.event {
        DomainEvent::SlaTargetsSet(_) => SLA,
        DomainEvent::BusinessCalendarSet(_) | DomainEvent::BusinessCalendarCleared(_) => CALENDAR,
        _ => return None,
    };
    Some(vec![
        event.tenant.as_str().into(),
        from_position(event.position),
        setting.into(),
        event.event.event_type().into(),
        event.event.to_data().to_string().into(),
        SqlValue::Int(event.occurred_at.timestamp_micros()),
        SqlValue::Int(event.recorded_at.timestamp_micros()),
    ])
}

/// A stored settings row read back (its data is canonical: it parses).
fn stored_change(event_type: &str, data: &str) -> Option<Change> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    change_of(&DomainEvent::parse_stored(event_type, &value).ok()?)
}

/// One tenant's settings in force.
#[derive(Debug, Clone, Default)]
struct Tenant {
    sla: CaseSla,
}

/// The settings each tenant of a batch has in force, and the calendars its cases may name.
#[derive(Debug)]
pub struct InForce {
    tenants: HashMap<String, Tenant>,
    calendars: HashMap<(String, u64), Arc<SlaClock>>,
    elapsed: Arc<SlaClock>,
}

impl InForce {
    /// The settings of `tenants` as stored before the batch: the latest targets and
    /// calendar, and every calendar ever set (a case names the one in force at its open).
    pub async fn load(
        tx: &mut ReadTx,
        table: &str,
        tenants: &BTreeSet<&str>,
    ) -> Result<InForce, ProjectionError> {
        let mut in_force = InForce {
            tenants: HashMap::new(),
            calendars: HashMap::new(),
            elapsed: Arc::new(SlaClock::Elapsed),
        };
        for tenant in tenants {
            let rows = tx
                .fetch(
                    &format!(
                        "SELECT position, setting, event_type, data FROM {table} WHERE tenant = ? \
                         ORDER BY position"
                    ),
                    vec![(*tenant).into()],
                    &[Col::Int, Col::Text, Col::Text, Col::Text],
                )
                .await?;
            for row in rows {
                let position = u64::try_from(row[0].as_int().unwrap_or_default()).unwrap_or(0);
                let change = stored_change(
                    row[2].as_text().unwrap_or_default(),
                    row[3].as_text().unwrap_or_default(),
                );
                if let Some(change) = change {
                    in_force.change(tenant, position, change);
                }
            }
        }
        Ok(in_force)
    }

    fn change(&mut self, tenant: &str, position: u64, change: Change) {
        let state = self.tenants.entry(tenant.to_owned()).or_default();
        match change {
            Change::Targets(targets, warning) => {
                state.sla.targets = targets;
                state.sla.warning_percent = warning;
                state.sla.targets_position = Some(position);
            }
            Change::Calendar(Some(clock)) => {
                state.sla.calendar_position = Some(position);
                self.calendars
                    .insert((tenant.to_owned(), position), Arc::new(clock));
            }
            Change::Calendar(None) => state.sla.calendar_position = None,
        }
    }

    /// Follows a settings event of the batch (other events change nothing).
    pub fn observe(&mut self, event: &ProjectedEvent) {
        if let Some(change) = change_of(&event.event) {
            self.change(event.tenant.as_str(), event.position, change);
        }
    }

    /// The SLA a case of `tenant` opened now takes.
    pub fn case_sla(&self, tenant: &str) -> CaseSla {
        self.tenants
            .get(tenant)
            .map(|t| t.sla.clone())
            .unwrap_or_default()
    }

    /// The clock of the calendar at `position` (elapsed time for none).
    pub fn clock(&self, tenant: &str, position: Option<u64>) -> Arc<SlaClock> {
        position
            .and_then(|p| self.calendars.get(&(tenant.to_owned(), p)))
            .cloned()
            .unwrap_or_else(|| self.elapsed.clone())
    }
}

/// The SLA a case of `tenant` opened now would take (the API's targets in force).
pub async fn latest_sla(db: &ReadDb, tenant: &str) -> Result<CaseSla, ProjectionError> {
    sla_at(db, tenant, None).await
}

/// The SLA in force at `at` (business time of the settings events; now when `None`).
pub async fn sla_at(
    db: &ReadDb,
    tenant: &str,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<CaseSla, ProjectionError> {
    let mut sla = CaseSla::default();
    let mut sql = format!("SELECT position, event_type, data FROM {SETTINGS} WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    if let Some(at) = at {
        sql.push_str(" AND occurred_at <= ?");
        args.push(SqlValue::Int(at.timestamp_micros()));
    }
    sql.push_str(" ORDER BY position");
    let rows = db
        .fetch(&sql, args, &[Col::Int, Col::Text, Col::Text])
        .await?;
    for row in rows {
        let position = u64::try_from(row[0].as_int().unwrap_or_default()).unwrap_or(0);
        match stored_change(
            row[1].as_text().unwrap_or_default(),
            row[2].as_text().unwrap_or_default(),
        ) {
            Some(Change::Targets(targets, warning)) => {
                sla.targets = targets;
                sla.warning_percent = warning;
                sla.targets_position = Some(position);
            }
            Some(Change::Calendar(Some(_))) => sla.calendar_position = Some(position),
            Some(Change::Calendar(None)) => sla.calendar_position = None,
            None => {}
        }
    }
    Ok(sla)
}

/// The clock of the calendar a tenant set at `position` (elapsed time for none, or when the
/// row is missing).
pub async fn calendar_at(
    db: &ReadDb,
    tenant: &str,
    position: Option<u64>,
) -> Result<SlaClock, ProjectionError> {
    let Some(position) = position else {
        return Ok(SlaClock::Elapsed);
    };
    let rows = db
        .fetch(
            &format!("SELECT event_type, data FROM {SETTINGS} WHERE tenant = ? AND position = ?"),
            vec![tenant.into(), from_position(position)],
            &[Col::Text, Col::Text],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| {
            stored_change(
                row[0].as_text().unwrap_or_default(),
                row[1].as_text().unwrap_or_default(),
            )
        })
        .and_then(|change| match change {
            Change::Calendar(Some(clock)) => Some(clock),
            _ => None,
        })
        .unwrap_or(SlaClock::Elapsed))
}

/// The calendar in force now, as set (the `BusinessCalendarSet` data) with its position and
/// time; `None` when none is (never set, or cleared).
pub async fn calendar_in_force(
    db: &ReadDb,
    tenant: &str,
) -> Result<Option<serde_json::Value>, ProjectionError> {
    let rows = db
        .fetch(
            &format!(
                "SELECT position, event_type, data, occurred_at FROM {SETTINGS} WHERE tenant = ? \
                 AND setting = ? ORDER BY position DESC LIMIT 1"
            ),
            vec![tenant.into(), CALENDAR.into()],
            &[Col::Int, Col::Text, Col::Text, Col::Int],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    if row[1].as_text() != Some("BusinessCalendarSet") {
        return Ok(None);
    }
    let mut data: serde_json::Value =
        serde_json::from_str(row[2].as_text().unwrap_or_default()).unwrap_or_default();
    if let Some(object) = data.as_object_mut() {
        object.insert(
            "position".into(),
            row[0].as_int().unwrap_or_default().into(),
        );
        let at = chrono::DateTime::from_timestamp_micros(row[3].as_int().unwrap_or_default())
            .unwrap_or_default();
        object.insert(
            "set_at".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into(),
        );
    }
    Ok(Some(data))
}

/// Turns the SLA targets tenants kept in the settings table before settings were facts into
/// `SlaTargetsSet` events (for a tenant whose `settings-sla` stream is still empty), then
/// forgets the table's rows: run by `crm-api serve` at its start, so an upgraded store keeps
/// its targets. The event's id derives from the tenant, so two processes starting together
/// append it once. Returns how many tenants were moved.
pub async fn migrate_legacy(
    store: &dyn crm_core::store::EventStore,
    cache: &crm_core::command::StreamCache,
    db: &ReadDb,
) -> Result<usize, ProjectionError> {
    use crm_core::envelope::{StreamId, TenantId};
    let legacy = crate::backlog::legacy_sla_targets(db).await?;
    let mut moved = 0;
    for (tenant, targets) in legacy {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            ProjectionError::Schema(format!("tenant {tenant}: legacy SLA targets: {what}: {e}"))
        };
        let tenant_id = TenantId::parse(&tenant).map_err(|e| failed("tenant", &e))?;
        let stream = StreamId::parse("settings-sla").map_err(|e| failed("stream", &e))?;
        let set = !store
            .stream_heads_of(&tenant_id, &[stream])
            .await?
            .is_empty();
        if !set {
            let data = serde_json::to_value(targets).map_err(|e| failed("json", &e))?;
            let batch = crm_core::command::parse::parse_batch(
                &serde_json::json!({"events": [{"type": "SlaTargetsSet", "data": data}]}),
                &tenant_id,
                "migration",
                Some("legacy-sla-targets"),
                1,
            )
            .map_err(|e| failed("event", &e))?;
            crm_core::command::append(store, cache, &tenant_id, &batch)
                .await
                .map_err(|e| failed("append", &e))?;
            moved += 1;
        }
        crate::backlog::forget_legacy_sla_targets(db, &tenant).await?;
    }
    Ok(moved)
}
