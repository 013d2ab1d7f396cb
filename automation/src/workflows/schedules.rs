//! Schedules come due: for each rule with a schedule trigger, the facts whose due time has
//! passed and that the rule has not fired for, each fired once (late if the worker was down:
//! the delay goes in the run log and the worker's log, never in the event). A fact is fired
//! for once per rule, whatever the rule's version: the fired record is written when the rule
//! acts, and also folded from the log (an event a rule appended names its trigger in its
//! metadata), so a log replayed into a fresh store fires nothing twice.

use std::collections::HashMap;

use crate::AutomationError;
use chrono::{DateTime, SecondsFormat, Utc};
use crm_core::automation::rule::{Firing, Rule, Schedule, Trigger};
use crm_projections::db::{Col, SqlValue};
use serde_json::{Value, json};

use super::facts::{CUSTOMER, OPPORTUNITY};
use super::tables;
use super::worker::{Context, TenantRules, act, micros_time};

/// Facts fired per rule and check at most (the next check takes the rest).
const PER_CHECK: usize = 200;

/// One fact come due for a rule.
#[derive(Debug, Clone)]
pub struct Due {
    /// `<schedule>:<entity>:<anchor event>` for deals and customers (a new stage entry or a
    /// later order is a new fact); `case_first_response_due:<case>` for cases (once per case:
    /// an escalation that moves the due time does not fire the rule again).
    pub key: String,
    pub data: Value,
    pub due: DateTime<Utc>,
}

/// The facts come due at `now` for `rule` (a schedule) of `tenant` that it has not fired for.
/// Case schedules need the backlog read model to have applied `position` (the worker's own):
/// until it has, none is due.
pub async fn due_now(
    context: &Context,
    tenant: &str,
    rule_id: &str,
    schedule: &Schedule,
    position: u64,
    now: DateTime<Utc>,
) -> Result<Vec<Due>, AutomationError> {
    let db = &context.db;
    let name = schedule.name();
    let by_fact = |kind: &'static str, days: i64, stages: &[String]| {
        let until = now
            .checked_sub_signed(chrono::Duration::days(days))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
            .timestamp_micros();
        let stages = stages.to_vec();
        async move {
            let facts =
                tables::facts_due(db, tenant, kind, until, rule_id, name, PER_CHECK).await?;
            Ok::<_, AutomationError>(
                facts
                    .into_iter()
                    .filter(|f| {
                        stages.is_empty()
                            || f.data
                                .get("stage")
                                .and_then(Value::as_str)
                                .is_some_and(|s| stages.iter().any(|w| w == s))
                    })
                    .map(|f| Due {
                        key: format!("{name}:{}:{}", f.entity, f.anchor),
                        due: schedule.due(micros_time(f.at)),
                        data: f.data,
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };
    match schedule {
        Schedule::OpportunityInStage { days, stages } => by_fact(OPPORTUNITY, *days, stages).await,
        Schedule::CustomerWithoutOrder { days } => by_fact(CUSTOMER, *days, &[]).await,
        Schedule::CaseFirstResponseDue { offset_minutes } => {
            let backlog = crm_projections::bookkeeping::stored_positions(db)
                .await?
                .into_iter()
                .find(|p| p.projection == crm_projections::backlog::NAME)
                .map_or(0, |p| p.position);
            if backlog < position {
                return Ok(Vec::new());
            }
            let until = now
                .checked_sub_signed(chrono::Duration::minutes(*offset_minutes))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
                .timestamp_micros();
            let rows = db
                .fetch(
                    &format!(
                        "SELECT c.id, c.customer_id, c.channel, c.priority, c.agent, c.fr_due \
                         FROM {table} c WHERE c.tenant = ? AND c.status = 'open' \
                         AND c.first_response_at IS NULL AND c.fr_stop IS NULL AND c.paused = 0 \
                         AND c.fr_due IS NOT NULL AND c.fr_due <= ? AND NOT EXISTS (\
                           SELECT 1 FROM crm_workflow_fired d WHERE d.tenant = c.tenant \
                           AND d.rule_id = ? AND d.trigger_key = ? || ':' || c.id) \
                         ORDER BY c.fr_due, c.id LIMIT ?",
                        table = crm_projections::backlog::TABLE
                    ),
                    vec![
                        tenant.into(),
                        SqlValue::Int(until),
                        rule_id.into(),
                        name.into(),
                        SqlValue::Int(PER_CHECK as i64),
                    ],
                    &[
                        Col::Text,
                        Col::Text,
                        Col::Text,
                        Col::Text,
                        Col::Text,
                        Col::Int,
                    ],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let text = |i: usize| row[i].as_text().map_or(Value::Null, |t| json!(t));
                    let fr_due = row[5].as_int().unwrap_or(0);
                    let due_at = micros_time(fr_due);
                    Due {
                        key: format!("{name}:{}", row[0].as_text().unwrap_or_default()),
                        data: json!({
                            "case_id": text(0), "customer_id": text(1), "channel": text(2),
                            "priority": text(3), "agent": text(4),
                            "due_at": due_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                        }),
                        due: schedule.due(due_at),
                    }
                })
                .collect())
        }
    }
}

/// Fires every schedule come due, rule by rule.
pub(crate) async fn fire_due(
    context: &Context,
    rules: &HashMap<String, TenantRules>,
    position: u64,
    now: DateTime<Utc>,
) -> Result<(), AutomationError> {
    for (tenant, tenant_rules) in rules {
        for held in &tenant_rules.rules {
            let Some(rule) = &held.rule else { continue };
            let Trigger::Schedule { schedule, .. } = &rule.trigger else {
                continue;
            };
            if !rule.enabled {
                continue;
            }
            let due = due_now(context, tenant, &held.row.rule_id, schedule, position, now).await?;
            for fact in due {
                fire(context, tenant, &held.row, rule, &fact, now).await?;
            }
        }
    }
    Ok(())
}

async fn fire(
    context: &Context,
    tenant: &str,
    row: &tables::RuleRow,
    rule: &Rule,
    fact: &Due,
    now: DateTime<Utc>,
) -> Result<(), AutomationError> {
    if !rule.fact_passes(&fact.data) {
        return Ok(());
    }
    let firing = Firing {
        tenant,
        rule_id: &row.rule_id,
        version: row.version,
        key: fact.key.clone(),
        data: &fact.data,
        at: fact.due,
        event: None,
        count: 0,
        cause: None,
    };
    let delay_ms = (now - fact.due).num_milliseconds().max(0);
    let (mut run, plan) = act(context, rule, &firing, None, delay_ms).await?;
    if delay_ms > 60_000 {
        tracing::info!(
            rule = %row.rule_id,
            version = row.version,
            trigger = %fact.key,
            delay_ms,
            "a schedule fired late (the worker was behind or down at its due time)"
        );
    }
    let mut tx = context.db.begin().await?;
    tables::mark_fired(&mut tx, tenant, &row.rule_id, row.version, &fact.key).await?;
    let calls = plan.filter(|p| !p.calls.is_empty());
    if let Some(plan) = &calls {
        super::calls::enqueue(&mut tx, tenant, &mut run, plan).await?;
    }
    tables::record_run(&mut tx, tenant, &run).await?;
    tx.commit().await?;
    if calls.is_some() {
        context.webhooks.nudge();
    }
    Ok(())
}
