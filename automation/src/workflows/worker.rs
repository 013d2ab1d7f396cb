//! The rule worker: follows the whole log from its checkpoint, in log order. For each event
//! it moves the rules' state (a `WorkflowRuleSet` is the tenant's rule from that position on)
//! and the scheduled facts, and acts for every rule the event triggers: the rule's plan
//! (`crm_core::automation::rule`) is appended through the ingest decision (`command::append`,
//! the API's own), so rules obey every business rule. Between batches it fires the schedules
//! come due (`schedules`).
//!
//! Exactly once without a distributed lock: an action's event ids are a pure function of the
//! rule, its version and the trigger, so acting again (after a crash before the checkpoint
//! moved, a second worker, a log replayed into a fresh store) appends nothing new: the ingest
//! answers duplicates. The checkpoint moves by compare-and-set in the transaction that stores
//! the batch's rule states, facts and run log; a worker that loses it reloads. Of several
//! processes one works at a time (lease `workflows`); correctness does not rest on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::AutomationError;
use chrono::{DateTime, Utc};
use crm_core::automation::condition::Subject;
use crm_core::automation::rule::{Cause, EventRef, Firing, Plan, Rule, Stop};
use crm_core::command::parse::{ParseOptions, parse_event};
use crm_core::command::{self, CommandError, StreamCache};
use crm_core::envelope::{RecordedEvent, TenantId};
use crm_core::store::{Scope, SharedStore, StoreError};
use crm_projections::db::ReadDb;
use crm_projections::lease::Leases;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::facts::{self, FactChange};
use super::schedules;
use super::tables::{self, RuleRow, Run};

const LEASE: &str = "workflows";

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Events read per transaction at most.
    pub batch: usize,
    /// How often schedules are checked while the log is quiet.
    pub tick: Duration,
    /// Take the `workflows` lease (one worker per database). Tests that prove two workers
    /// act once turn it off.
    pub lease: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            batch: 2_000,
            tick: Duration::from_secs(1),
            lease: true,
        }
    }
}

/// What the worker works with.
#[derive(Debug, Clone)]
pub struct Context {
    /// The log as the worker reads it: personal fields never opened (rules read none).
    pub reader: SharedStore,
    /// The store appends go to (it seals personal fields).
    pub writer: SharedStore,
    /// The ingest's folded streams and turns, shared with the API in this process.
    pub cache: Arc<StreamCache>,
    pub db: ReadDb,
    /// Nudges the webhook delivery lanes of this process when calls are queued.
    pub webhooks: crate::webhooks::Hub,
}

/// A running worker.
#[derive(Debug)]
pub struct Workflows {
    position: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Workflows {
    /// The log position the worker has acted on, as it last stored it.
    pub fn position(&self) -> watch::Receiver<u64> {
        self.position.clone()
    }

    /// Stops after the batch in progress.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the worker.
pub fn spawn(context: Context, options: WorkerOptions) -> Workflows {
    let (position_tx, position) = watch::channel(0);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut leases = Leases::new(Duration::from_secs(15));
        let mut pause = Duration::from_millis(100);
        loop {
            let run = run(&context, &options, &position_tx, &mut leases);
            tokio::select! {
                result = run => match result {
                    Ok(()) => break,
                    Err(AutomationError::Lost) => {
                        tracing::info!("another worker acts on workflow rules now; on standby");
                        pause = Duration::from_millis(100);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the workflow worker failed; retrying from its checkpoint");
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                },
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        leases.release_all(&context.db).await;
    });
    Workflows {
        position,
        stop,
        task,
    }
}

/// A tenant's rules as the worker holds them.
#[derive(Debug, Default, Clone)]
pub(crate) struct TenantRules {
    pub(crate) rules: Vec<Held>,
}

/// One rule: its stored row and the definition parsed.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) row: RuleRow,
    pub(crate) rule: Option<Rule>,
}

impl Held {
    fn from_row(row: RuleRow) -> Held {
        let rule = row
            .definition
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|v| Rule::parse(&v).ok());
        Held { row, rule }
    }
}

pub(crate) async fn load_rules(
    db: &ReadDb,
) -> Result<HashMap<String, TenantRules>, AutomationError> {
    let mut all: HashMap<String, TenantRules> = HashMap::new();
    for (tenant, row) in tables::all_rules(db).await? {
        all.entry(tenant)
            .or_default()
            .rules
            .push(Held::from_row(row));
    }
    Ok(all)
}

async fn run(
    context: &Context,
    options: &WorkerOptions,
    position: &watch::Sender<u64>,
    leases: &mut Leases,
) -> Result<(), AutomationError> {
    let db = &context.db;
    tables::create(db).await?;
    if options.lease {
        while !leases.try_acquire(db, LEASE).await? {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let mut at = tables::checkpoint(db).await?;
    let _ = position.send(at);
    let mut rules = load_rules(db).await?;
    let mut heads = context.reader.head_changes();
    let mut next_tick = tokio::time::Instant::now();
    loop {
        let events = context
            .reader
            .read_all(&Scope::AllTenants, at, options.batch)
            .await
            .map_err(store_error)?;
        if let Some(last) = events.last().map(|e| e.position) {
            if options.lease && !leases.alive().await {
                return Err(AutomationError::Lost);
            }
            let mut working = rules.clone();
            let outcome = apply_batch(context, &mut working, &events).await?;
            let mut tx = db.begin().await?;
            if options.lease {
                leases.renew(&mut tx, LEASE).await?;
            }
            if !tables::move_checkpoint(&mut tx, at, last).await? {
                tx.rollback().await?;
                return Err(AutomationError::Lost);
            }
            let calls = outcome.calls;
            outcome.store(&mut tx).await?;
            tx.commit().await?;
            if calls {
                context.webhooks.nudge();
            }
            rules = working;
            at = last;
            let _ = position.send(at);
            if events.len() == options.batch {
                continue;
            }
        }
        // Caught up with the log: the schedules come due are judged on facts that are current.
        if tokio::time::Instant::now() >= next_tick {
            schedules::fire_due(context, &rules, at, Utc::now()).await?;
            next_tick = tokio::time::Instant::now() + options.tick;
        }
        let wait = next_tick.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(wait, heads.changed()).await;
    }
}

pub(crate) fn store_error(error: StoreError) -> AutomationError {
    AutomationError::Store(error)
}

/// What a batch changed, stored with the checkpoint.
#[derive(Debug, Default)]
struct BatchOutcome {
    rules: Vec<(String, RuleRow)>,
    facts: Vec<(String, FactChange)>,
    /// Each run, with its plan when it has webhook calls to queue.
    runs: Vec<(String, Run, Option<Plan>)>,
    /// Schedules fired, read back from the events rules appended (tenant, rule, version, key).
    fired: Vec<(String, String, u64, String)>,
    /// Whether any webhook call was queued (the delivery lanes are nudged after the commit).
    calls: bool,
}

impl BatchOutcome {
    async fn store(self, tx: &mut crm_projections::db::ReadTx) -> Result<(), AutomationError> {
        for (tenant, row) in &self.rules {
            tables::upsert_rule(tx, tenant, row).await?;
        }
        let mut puts = Vec::new();
        for (tenant, change) in &self.facts {
            match change {
                FactChange::Put(fact) => puts.push((tenant.as_str(), fact)),
                FactChange::Delete { kind, entity } => {
                    tables::delete_fact(tx, tenant, kind, entity).await?
                }
            }
        }
        tables::put_facts(tx, &puts).await?;
        for (tenant, mut run, plan) in self.runs {
            if let Some(plan) = &plan {
                super::calls::enqueue(tx, &tenant, &mut run, plan).await?;
            }
            tables::record_run(tx, &tenant, &run).await?;
        }
        for (tenant, rule, version, key) in &self.fired {
            tables::mark_fired(tx, tenant, rule, *version, key).await?;
        }
        Ok(())
    }
}

/// Applies a batch: rule states and facts move in memory (`rules`), actions are appended.
async fn apply_batch(
    context: &Context,
    rules: &mut HashMap<String, TenantRules>,
    events: &[RecordedEvent],
) -> Result<BatchOutcome, AutomationError> {
    let mut outcome = BatchOutcome::default();
    let mut changed_rules: HashMap<(String, String), RuleRow> = HashMap::new();
    let mut pending_facts = facts::preload(context, events).await?;
    let mut changed_facts: Vec<(String, &'static str, String)> = Vec::new();
    for event in events {
        let tenant = event.tenant.as_str();
        // A tenant that never set a rule has nothing to trigger: only rule events and the
        // events that date scheduled facts are read (the facts are kept for the rules it may
        // set later).
        if !rules.contains_key(tenant) && !facts::dates_a_fact(&event.event_type) {
            continue;
        }
        // An event this build cannot read triggers nothing (the projections park it).
        let Some(data) = event_data(event) else {
            continue;
        };
        if event.event_type == "WorkflowRuleSet" || event.event_type == "WorkflowRuleRemoved" {
            let row = rule_event(rules, tenant, event, &data);
            changed_rules.insert((tenant.to_owned(), row.rule_id.clone()), row);
            continue;
        }
        let changes = facts::changes(context, tenant, event, &data, &mut pending_facts).await?;
        for change in changes {
            let key = match &change {
                FactChange::Put(fact) => (tenant.to_owned(), fact.kind, fact.entity.clone()),
                FactChange::Delete { kind, entity } => (tenant.to_owned(), *kind, entity.clone()),
            };
            changed_facts.push(key);
        }
        let Some(tenant_rules) = rules.get_mut(tenant) else {
            continue;
        };
        let metadata: Value = serde_json::from_str(event.metadata.get()).unwrap_or(Value::Null);
        let subject = Subject {
            event_type: &event.event_type,
            stream: event.stream_id.as_str(),
            data: &data,
            metadata: &metadata,
        };
        let cause = Cause::of_metadata(&metadata);
        if let Some(cause) = cause.as_ref().filter(|c| !c.trigger.starts_with("event:")) {
            // A schedule's action read back: the schedule fired for this fact, whoever
            // appended it (this worker, another, or the log this store was restored from).
            outcome.fired.push((
                tenant.to_owned(),
                cause.rule.clone(),
                cause.version,
                cause.trigger.clone(),
            ));
        }
        for held in &mut tenant_rules.rules {
            let Some(rule) = &held.rule else { continue };
            if !rule.triggered_by(&subject) {
                continue;
            }
            let firing = event_firing(
                (&held.row.rule_id, held.row.version),
                event,
                &data,
                held.row.fired,
                cause.as_ref(),
            );
            held.row.fired += 1;
            changed_rules.insert(
                (tenant.to_owned(), held.row.rule_id.clone()),
                held.row.clone(),
            );
            let (run, plan) = act(context, rule, &firing, Some(event.position), 0).await?;
            let calls = plan.filter(|p| !p.calls.is_empty());
            outcome.calls |= calls.is_some();
            outcome.runs.push((tenant.to_owned(), run, calls));
        }
    }
    // Each changed fact once, as the batch left it.
    changed_facts.sort();
    changed_facts.dedup();
    for key in changed_facts {
        let change = match pending_facts.remove(&key) {
            Some(Some(fact)) => FactChange::Put(fact),
            _ => FactChange::Delete {
                kind: key.1,
                entity: key.2,
            },
        };
        outcome.facts.push((key.0, change));
    }
    outcome.rules = changed_rules
        .into_iter()
        .map(|((tenant, _), row)| (tenant, row))
        .collect();
    Ok(outcome)
}

/// An event's data as rules read it (upcast to the current version); `None` for an event
/// this build cannot read.
pub(crate) fn event_data(event: &RecordedEvent) -> Option<Value> {
    serde_json::from_str::<Value>(event.data.get())
        .ok()
        .and_then(|d| crm_core::catalog::upcast(&event.event_type, event.schema_version, d).ok())
}

/// The firing of rule `(id, version)` by `event`: the one trigger key and time the worker
/// and the dry run both use. `count`: the rule's firings before this one.
pub(crate) fn event_firing<'a>(
    (rule_id, version): (&'a str, u64),
    event: &'a RecordedEvent,
    data: &'a Value,
    count: u64,
    cause: Option<&'a Cause>,
) -> Firing<'a> {
    Firing {
        tenant: event.tenant.as_str(),
        rule_id,
        version,
        key: format!("event:{}:{}", event.stream_id, event.event_id),
        data,
        at: event.occurred_at,
        event: Some(EventRef {
            id: event.event_id,
            stream: event.stream_id.as_str(),
            event_type: &event.event_type,
            position: event.position,
        }),
        count,
        cause,
    }
}

/// A rule event moves the tenant's rule: a new version in force, or removed.
fn rule_event(
    rules: &mut HashMap<String, TenantRules>,
    tenant: &str,
    event: &RecordedEvent,
    data: &Value,
) -> RuleRow {
    let rule_id = data
        .get("rule_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let held_rules = &mut rules.entry(tenant.to_owned()).or_default().rules;
    let index = match held_rules.iter().position(|h| h.row.rule_id == rule_id) {
        Some(index) => index,
        None => {
            held_rules.push(Held {
                row: RuleRow {
                    rule_id: rule_id.clone(),
                    version: 0,
                    definition: None,
                    fired: 0,
                    set_at: 0,
                },
                rule: None,
            });
            held_rules.len() - 1
        }
    };
    let held = &mut held_rules[index];
    held.row.set_at = event.position;
    if event.event_type == "WorkflowRuleSet" {
        held.row.version += 1;
        let mut document = data.clone();
        if let Some(object) = document.as_object_mut() {
            object.remove("rule_id");
        }
        held.rule = Rule::parse(&document).ok();
        held.row.definition = held.rule.as_ref().map(|r| r.to_value().to_string());
    } else {
        held.rule = None;
        held.row.definition = None;
    }
    held.row.clone()
}

/// Acts for one firing: plans, appends through the ingest decision, and says what happened
/// (the run log's line). `delay_ms`: how late a schedule fires.
pub(crate) async fn act(
    context: &Context,
    rule: &Rule,
    firing: &Firing<'_>,
    position: Option<u64>,
    delay_ms: i64,
) -> Result<(Run, Option<Plan>), AutomationError> {
    let mut run = Run {
        rule_id: firing.rule_id.to_owned(),
        version: firing.version,
        trigger: firing.key.clone(),
        position,
        trigger_at: firing.at.timestamp_micros(),
        ran_at: Utc::now().timestamp_micros(),
        outcome: String::new(),
        detail: String::new(),
        events: json!([]),
        delay_ms,
    };
    let plan = match rule.plan(firing) {
        Ok(plan) => plan,
        Err(stop) => {
            if !matches!(stop, Stop::Render { .. }) {
                tracing::warn!(rule = firing.rule_id, version = firing.version, %stop, "a workflow chain was stopped");
            }
            run.outcome = "stopped".into();
            run.detail = stop.to_string();
            return Ok((run, None));
        }
    };
    let calls: Vec<Value> = plan
        .calls
        .iter()
        .map(|c| json!({"call": c.id, "subscription": c.subscription}))
        .collect();
    if plan.events.is_empty() {
        run.outcome = "called".into();
        run.events = Value::Array(calls);
        return Ok((run, Some(plan)));
    }
    let tenant =
        TenantId::parse(firing.tenant).map_err(|e| AutomationError::Append(e.to_string()))?;
    let mut batch = Vec::with_capacity(plan.events.len());
    for (index, value) in plan.event_values().iter().enumerate() {
        let options = ParseOptions {
            derived_id: None,
            key_id: None,
            cause: Some(&plan.cause),
        };
        match parse_event(value, &options) {
            Ok(incoming) => batch.push(incoming),
            Err(refusal) => {
                run.outcome = "refused".into();
                run.detail = format!("actions: event {index}: {}", refusal.detail());
                return Ok((run, None));
            }
        }
    }
    match command::append(context.writer.as_ref(), &context.cache, &tenant, &batch).await {
        Ok(outcome) => {
            run.outcome = if outcome.appended == 0 {
                "duplicate".into()
            } else {
                "appended".into()
            };
            let mut listed: Vec<Value> = outcome
                .events
                .iter()
                .map(|e| {
                    json!({"id": e.id, "type": e.event_type, "stream": e.stream,
                        "position": e.position, "duplicate": e.duplicate})
                })
                .collect();
            listed.extend(calls);
            run.events = Value::Array(listed);
            Ok((run, Some(plan)))
        }
        Err(error) if refused(&error) => {
            run.outcome = "refused".into();
            run.detail = error.to_string();
            Ok((run, None))
        }
        Err(error) => Err(AutomationError::Append(format!(
            "appending the actions of rule {} failed: {error}",
            firing.rule_id
        ))),
    }
}

/// Whether the ingest refused the actions for good (a business rule, a conflict), rather than
/// failing for a while (the store busy or down): refused actions are recorded and the worker
/// goes on; failures are retried from the checkpoint.
fn refused(error: &CommandError) -> bool {
    match error {
        CommandError::Invalid(_)
        | CommandError::InvalidBatch(_)
        | CommandError::TooManyEvents { .. }
        | CommandError::Conflict(_)
        | CommandError::NoConsent { .. }
        | CommandError::Unreadable { .. } => true,
        CommandError::Contended { .. } => false,
        CommandError::Store(store) => matches!(
            store,
            StoreError::WrongExpectedRevision { .. }
                | StoreError::EventIdReused { .. }
                | StoreError::SubjectErased { .. }
                | StoreError::InvalidInput(_)
        ),
    }
}

/// Microseconds to a time.
pub(crate) fn micros_time(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
