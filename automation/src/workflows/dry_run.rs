//! The dry run: what a rule would have done over a range of the log, or would do now for a
//! schedule, computed by the worker's own code (`Rule::plan`, the catalog's parser) without
//! appending, queueing or recording anything. The ingest's business rules are not judged (the
//! state they depend on is today's, not the trigger's); the catalog is.

use crate::AutomationError;
use chrono::{DateTime, Utc};
use crm_core::automation::condition::Subject;
use crm_core::automation::rule::{Cause, Firing, PlannedCall, PlannedEvent, Rule, Trigger};
use crm_core::command::parse::{ParseOptions, parse_event};
use crm_core::envelope::TenantId;
use crm_core::store::Scope;
use serde::Serialize;
use serde_json::Value;

use super::schedules::due_now;
use super::tables;
use super::worker::{Context, event_data, event_firing, store_error};

/// Events examined per dry run at most.
pub const MAX_EXAMINED: u64 = 100_000;
/// Firings listed per dry run at most (the rest are counted).
pub const MAX_LISTED: usize = 100;

/// What a dry run found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    /// The range examined: events after `from` up to `to` (event triggers).
    pub from: u64,
    pub to: u64,
    /// Events of the tenant examined (event triggers).
    pub examined: u64,
    /// The time schedules were judged at (schedule triggers).
    pub at: DateTime<Utc>,
    /// How many times the rule would act.
    pub firings: usize,
    /// The first [`MAX_LISTED`] of them.
    pub listed: Vec<DryFiring>,
    /// True when the range held more than [`MAX_EXAMINED`] events of the tenant: `to` is
    /// where the run stopped.
    pub truncated: bool,
}

/// One time the rule would act.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DryFiring {
    /// The trigger's key, as the run log would name it.
    pub trigger: String,
    /// The triggering event's position (event triggers).
    pub position: Option<u64>,
    /// The trigger's time.
    pub at: DateTime<Utc>,
    /// `would_act`, `stopped` (depth limit, cycle, a template), or `invalid` (an event the
    /// catalog refuses).
    pub outcome: &'static str,
    pub detail: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<PlannedEvent>,
    #[schema(value_type = Vec<Object>)]
    pub calls: Vec<PlannedCall>,
}

/// Runs `rule` (as version `version` of `rule_id`) over the tenant's events in (`from`,
/// `to`], or, for a schedule, over the facts due at `at` that it has not fired for.
#[allow(clippy::too_many_arguments)]
pub async fn dry_run(
    context: &Context,
    tenant: &TenantId,
    rule_id: &str,
    version: u64,
    rule: &Rule,
    from: u64,
    to: u64,
    at: DateTime<Utc>,
) -> Result<DryRun, AutomationError> {
    let mut run = DryRun {
        from,
        to,
        examined: 0,
        at,
        firings: 0,
        listed: Vec::new(),
        truncated: false,
    };
    match &rule.trigger {
        Trigger::Event { .. } => {
            let scope = Scope::Tenant(tenant.clone());
            let mut after = from;
            let mut count = 0u64;
            'read: while after < to {
                let events = context
                    .reader
                    .read_all(&scope, after, 1_000)
                    .await
                    .map_err(store_error)?;
                if events.is_empty() {
                    break;
                }
                for event in &events {
                    if event.position > to {
                        break 'read;
                    }
                    after = event.position;
                    run.examined += 1;
                    if run.examined > MAX_EXAMINED {
                        run.truncated = true;
                        run.to = event.position - 1;
                        break 'read;
                    }
                    let Some(data) = event_data(event) else {
                        continue;
                    };
                    let metadata: Value =
                        serde_json::from_str(event.metadata.get()).unwrap_or(Value::Null);
                    let subject = Subject {
                        event_type: &event.event_type,
                        stream: event.stream_id.as_str(),
                        data: &data,
                        metadata: &metadata,
                    };
                    if !rule.triggered_by(&subject) {
                        continue;
                    }
                    let cause = Cause::of_metadata(&metadata);
                    let firing =
                        event_firing((rule_id, version), event, &data, count, cause.as_ref());
                    count += 1;
                    record(&mut run, rule, &firing, Some(event.position));
                }
            }
        }
        Trigger::Schedule { schedule, .. } => {
            let position = tables::checkpoint(&context.db).await?;
            for due in due_now(context, tenant.as_str(), rule_id, schedule, position, at).await? {
                if !rule.fact_passes(&due.data) {
                    continue;
                }
                let firing = Firing {
                    tenant: tenant.as_str(),
                    rule_id,
                    version,
                    key: due.key.clone(),
                    data: &due.data,
                    at: due.due,
                    event: None,
                    count: 0,
                    cause: None,
                };
                record(&mut run, rule, &firing, None);
            }
        }
    }
    Ok(run)
}

fn record(run: &mut DryRun, rule: &Rule, firing: &Firing<'_>, position: Option<u64>) {
    run.firings += 1;
    if run.listed.len() >= MAX_LISTED {
        return;
    }
    let mut listed = DryFiring {
        trigger: firing.key.clone(),
        position,
        at: firing.at,
        outcome: "would_act",
        detail: None,
        events: Vec::new(),
        calls: Vec::new(),
    };
    match rule.plan(firing) {
        Ok(plan) => {
            for (index, value) in plan.event_values().iter().enumerate() {
                let options = ParseOptions {
                    derived_id: None,
                    key_id: None,
                    cause: Some(&plan.cause),
                };
                if let Err(refusal) = parse_event(value, &options) {
                    listed.outcome = "invalid";
                    listed.detail = Some(format!("actions: event {index}: {}", refusal.detail()));
                }
            }
            listed.events = plan.events;
            listed.calls = plan.calls;
        }
        Err(stop) => {
            listed.outcome = "stopped";
            listed.detail = Some(stop.to_string());
        }
    }
    run.listed.push(listed);
}
