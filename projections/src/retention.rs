//! Retention: a per-tenant rule "erase customers and leads with no event for N years" (off
//! unless set), the decision who is due under it, and carrying it out.
//!
//! - The rule and the report of the last run are tenant settings (`crm_tenant_settings`,
//!   `retention` and `retention_last_run`), set by `PUT /v1/privacy/retention`.
//! - [`due`] decides from the read models: a customer is due when it is active (neither
//!   erased nor merged into another) and the latest business time (`occurred_at`) of every
//!   event on its timeline (its own stream, deals, cases, converted leads, customers merged
//!   into it) is before the cutoff; a lead is due when it was never converted nor erased and
//!   its own stream's latest event is before the cutoff. Nothing is due without evidence: a
//!   customer whose activity the read models do not know is kept. The read models must have
//!   applied the log up to the head the caller read, or [`due`] refuses to decide.
//! - [`execute`] erases each one through [`crm_core::privacy::erase::erase`], the decision
//!   behind the erase routes; the caller then lets the read models apply the erasures and
//!   scrubs the files, as after any erasure.
//!
//! `crm-api serve` runs this daily for every tenant with a rule; `crm-replay retention` on
//! demand. Reports hold counts only, never who was erased.

use chrono::{DateTime, Months, Utc};
use crm_core::envelope::{Position, TenantId};
use crm_core::ids::EntityId;
use crm_core::privacy::PrivateStore;
use crm_core::privacy::erase::{EraseError, ErasureTarget, erase};
use crm_core::store::StoreError;
use serde::{Deserialize, Serialize};

use crate::bookkeeping::{set_tenant_setting, stored_positions, tenant_setting};
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;

/// The tenant setting holding the rule.
pub const RULE_SETTING: &str = "retention";
/// The tenant setting holding the last run's report.
pub const REPORT_SETTING: &str = "retention_last_run";
/// The longest retention period a rule may set.
pub const MAX_YEARS: u32 = 100;
/// The read models the decision reads.
pub const PROJECTIONS: &[&str] = &["customer_360", "customer_timeline"];
/// Rows read per query.
const PAGE: usize = 1_000;

/// Why retention could not be decided or carried out.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The read models lag the log: deciding now could erase someone whose latest events
    /// are not applied yet.
    #[error(
        "the read model {projection} has applied the log up to position {position}, not the \
         head {head}: retention waits for it"
    )]
    NotCaughtUp {
        projection: String,
        position: Position,
        head: Position,
    },
    /// The tenant is parked for a read model ([`crate::parking`]): its events from
    /// `position` on are not applied, so nothing is decided until they are.
    #[error(
        "the read model {projection} is parked for this tenant since position {position}: \
         retention waits until its events are replayed"
    )]
    Parked {
        projection: String,
        position: Position,
    },
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant's retention rule: erase after this many years without an event, or never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionRule {
    /// Erase after this many years (1 to 100) without an event; `null`: never (off).
    #[schema(required = true, minimum = 1, maximum = 100)]
    pub erase_after_years: Option<u32>,
}

impl RetentionRule {
    /// The rule in a request body: exactly `{"erase_after_years": N}` with N a whole number
    /// of years from 1 to [`MAX_YEARS`], or `null` to turn retention off. The message names
    /// what is wrong.
    pub fn parse(body: &serde_json::Value) -> Result<RetentionRule, String> {
        let Some(object) = body.as_object() else {
            return Err("the body must be an object {\"erase_after_years\": N or null}".into());
        };
        if let Some(other) = object.keys().find(|k| *k != "erase_after_years") {
            return Err(format!(
                "unknown member {other:?}: the body holds only erase_after_years"
            ));
        }
        let Some(value) = object.get("erase_after_years") else {
            return Err(
                "erase_after_years is required: a number of years, or null to turn retention \
                 off"
                .into(),
            );
        };
        if value.is_null() {
            return Ok(RetentionRule::default());
        }
        match value.as_u64() {
            Some(years) if (1..=u64::from(MAX_YEARS)).contains(&years) => Ok(RetentionRule {
                erase_after_years: u32::try_from(years).ok(),
            }),
            _ => Err(format!(
                "erase_after_years must be a whole number of years from 1 to {MAX_YEARS}, or \
                 null to turn retention off; got {value}"
            )),
        }
    }

    /// The moment before which a subject's last event makes it due, for a run at `now`.
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let years = self.erase_after_years?;
        now.checked_sub_months(Months::new(years.saturating_mul(12)))
    }
}

/// What one run did (or, for a dry run, would do). Counts only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionReport {
    pub ran_at: DateTime<Utc>,
    pub erase_after_years: u32,
    /// Subjects whose last event occurred before this were due.
    pub cutoff: DateTime<Utc>,
    pub customers_due: u64,
    pub leads_due: u64,
    pub customers_erased: u64,
    pub leads_erased: u64,
    /// Due subjects the erasure found already erased or not erasable (a lead converted
    /// meanwhile, a customer nothing of which is stored).
    pub skipped: u64,
    #[serde(default)]
    pub dry_run: bool,
    /// Why the run stopped, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The customers and leads due for erasure (entity ids, in id order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Due {
    pub customers: Vec<String>,
    pub leads: Vec<String>,
}

/// What [`execute`] erased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executed {
    pub customers_erased: u64,
    pub leads_erased: u64,
    pub skipped: u64,
    /// The position of the last erasure event appended, for the read models to reach.
    pub last_position: Option<Position>,
}

/// The tenant's rule (off when never set).
pub async fn rule(db: &ReadDb, tenant: &str) -> Result<RetentionRule, ProjectionError> {
    match tenant_setting(db, tenant, RULE_SETTING).await? {
        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(tenant, RULE_SETTING, &e)),
        None => Ok(RetentionRule::default()),
    }
}

/// Sets the tenant's rule.
pub async fn set_rule(
    db: &ReadDb,
    tenant: &str,
    rule: &RetentionRule,
) -> Result<(), ProjectionError> {
    let json = serde_json::to_string(rule).map_err(|e| ProjectionError::Schema(e.to_string()))?;
    set_tenant_setting(db, tenant, RULE_SETTING, &json).await
}

/// The report of the tenant's last run, if any.
pub async fn last_report(
    db: &ReadDb,
    tenant: &str,
) -> Result<Option<RetentionReport>, ProjectionError> {
    tenant_setting(db, tenant, REPORT_SETTING)
        .await?
        .map(|json| serde_json::from_str(&json).map_err(|e| corrupt(tenant, REPORT_SETTING, &e)))
        .transpose()
}

/// Records the report of a run.
pub async fn record_report(
    db: &ReadDb,
    tenant: &str,
    report: &RetentionReport,
) -> Result<(), ProjectionError> {
    let json = serde_json::to_string(report).map_err(|e| ProjectionError::Schema(e.to_string()))?;
    set_tenant_setting(db, tenant, REPORT_SETTING, &json).await
}

/// The tenants whose rule is on, in id order.
pub async fn tenants_with_rule(db: &ReadDb) -> Result<Vec<String>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT tenant, value FROM crm_tenant_settings WHERE setting = ? ORDER BY tenant",
            vec![RULE_SETTING.into()],
            &[Col::Text, Col::Text],
        )
        .await?;
    let mut tenants = Vec::new();
    for mut row in rows {
        let value = row.pop().and_then(SqlValue::into_text).unwrap_or_default();
        let tenant = row.pop().and_then(SqlValue::into_text).unwrap_or_default();
        let rule: RetentionRule =
            serde_json::from_str(&value).map_err(|e| corrupt(&tenant, RULE_SETTING, &e))?;
        if rule.erase_after_years.is_some() {
            tenants.push(tenant);
        }
    }
    Ok(tenants)
}

/// Who is due in `tenant` for a cutoff: see the module documentation. `head` is the log
/// position the caller read before deciding; the read models must have applied it.
pub async fn due(
    db: &ReadDb,
    tenant: &str,
    cutoff: DateTime<Utc>,
    head: Position,
) -> Result<Due, RetentionError> {
    let stored = stored_positions(db).await?;
    for name in PROJECTIONS {
        let position = stored
            .iter()
            .find(|s| s.projection == *name)
            .map_or(0, |s| s.position);
        if position < head {
            return Err(RetentionError::NotCaughtUp {
                projection: (*name).to_owned(),
                position,
                head,
            });
        }
    }
    if let Some(failure) = crate::parking::tenant_failure(db, tenant, PROJECTIONS).await? {
        return Err(RetentionError::Parked {
            projection: failure.projection,
            position: failure.position,
        });
    }
    let cutoff = cutoff.timestamp_micros();
    Ok(Due {
        customers: due_customers(db, tenant, cutoff).await?,
        leads: due_leads(db, tenant, cutoff).await?,
    })
}

async fn due_customers(
    db: &ReadDb,
    tenant: &str,
    cutoff: i64,
) -> Result<Vec<String>, ProjectionError> {
    let mut due = Vec::new();
    let mut after = String::new();
    loop {
        let rows = db
            .fetch(
                "SELECT c.id, c.last_contact_at, c.last_order_at, \
                 (SELECT MAX(t.occurred_at) FROM rm_customer_timeline t \
                  WHERE t.tenant = c.tenant AND t.customer_id = c.id) \
                 FROM rm_customer_360 c \
                 WHERE c.tenant = ? AND c.status = 'active' AND c.id > ? \
                 ORDER BY c.id LIMIT ?",
                vec![tenant.into(), after.as_str().into(), page_limit()],
                &[Col::Text, Col::Int, Col::Int, Col::Int],
            )
            .await?;
        let full = rows.len() == PAGE;
        for row in rows {
            let id = row[0].as_text().unwrap_or_default().to_owned();
            let last = row[1..].iter().filter_map(SqlValue::as_int).max();
            if last.is_some_and(|last| last < cutoff) {
                due.push(id.clone());
            }
            after = id;
        }
        if !full {
            return Ok(due);
        }
    }
}

async fn due_leads(db: &ReadDb, tenant: &str, cutoff: i64) -> Result<Vec<String>, ProjectionError> {
    let mut due = Vec::new();
    let mut after = String::new();
    loop {
        let rows = db
            .fetch(
                "SELECT l.lead_id, MAX(l.occurred_at), \
                 CAST(MAX(CASE WHEN l.event_type = 'LeadErased' THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM rm_customer_timeline_leads l \
                 WHERE l.tenant = ? AND l.lead_id > ? \
                 AND NOT EXISTS (SELECT 1 FROM rm_customer_timeline_links k \
                                 WHERE k.tenant = l.tenant AND k.key = 'lead:' || l.lead_id) \
                 GROUP BY l.lead_id ORDER BY l.lead_id LIMIT ?",
                vec![tenant.into(), after.as_str().into(), page_limit()],
                &[Col::Text, Col::Int, Col::Int],
            )
            .await?;
        let full = rows.len() == PAGE;
        for row in rows {
            let id = row[0].as_text().unwrap_or_default().to_owned();
            let erased = row[2].as_int().unwrap_or(0) != 0;
            if !erased && row[1].as_int().is_some_and(|last| last < cutoff) {
                due.push(id.clone());
            }
            after = id;
        }
        if !full {
            return Ok(due);
        }
    }
}

fn page_limit() -> SqlValue {
    SqlValue::Int(i64::try_from(PAGE).unwrap_or(i64::MAX))
}

/// Erases every subject of `due` in `tenant`. A subject the erasure refuses (converted
/// meanwhile, nothing stored) or finds already erased is counted as skipped; a store failure
/// stops the run (what was erased stays erased; running again continues).
pub async fn execute(
    store: &PrivateStore,
    tenant: &TenantId,
    due: &Due,
) -> Result<Executed, RetentionError> {
    let mut executed = Executed::default();
    let targets = due
        .customers
        .iter()
        .map(|id| (id, true))
        .chain(due.leads.iter().map(|id| (id, false)));
    for (id, customer) in targets {
        let Ok(entity) = EntityId::parse(id) else {
            executed.skipped += 1;
            continue;
        };
        let target = if customer {
            ErasureTarget::Customer(entity)
        } else {
            ErasureTarget::Lead(entity)
        };
        match erase(store, tenant, &target).await {
            Ok(erasure) => {
                if let Some(position) = erasure.position {
                    executed.last_position = executed.last_position.max(Some(position));
                }
                if erasure.already_erased {
                    executed.skipped += 1;
                } else if customer {
                    executed.customers_erased += 1;
                } else {
                    executed.leads_erased += 1;
                }
            }
            Err(EraseError::NotFound(_) | EraseError::LeadConverted { .. }) => {
                executed.skipped += 1;
            }
            Err(EraseError::Store(error)) => return Err(error.into()),
        }
    }
    Ok(executed)
}

fn corrupt(tenant: &str, setting: &str, error: &serde_json::Error) -> ProjectionError {
    ProjectionError::Corrupt {
        table: "crm_tenant_settings".into(),
        key: format!("{tenant}/{setting}"),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rule_is_a_whole_number_of_years_or_null() {
        assert_eq!(
            RetentionRule::parse(&json!({"erase_after_years": 3})),
            Ok(RetentionRule {
                erase_after_years: Some(3)
            })
        );
        assert_eq!(
            RetentionRule::parse(&json!({"erase_after_years": null})),
            Ok(RetentionRule::default())
        );
        for bad in [
            json!({"erase_after_years": 0}),
            json!({"erase_after_years": -1}),
            json!({"erase_after_years": 1.5}),
            json!({"erase_after_years": "2"}),
            json!({"erase_after_years": 101}),
            json!({}),
            json!({"erase_after_years": 2, "extra": 1}),
            json!([2]),
        ] {
            let error = RetentionRule::parse(&bad).expect_err("refused");
            assert!(
                error.contains("erase_after_years") || error.contains("extra"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_cutoff_is_whole_calendar_years_back() {
        let now = DateTime::parse_from_rfc3339("2024-02-29T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let rule = RetentionRule {
            erase_after_years: Some(1),
        };
        assert_eq!(
            rule.cutoff(now).map(|c| c.to_rfc3339()),
            Some("2023-02-28T12:00:00+00:00".into())
        );
        assert_eq!(RetentionRule::default().cutoff(now), None);
    }
}
