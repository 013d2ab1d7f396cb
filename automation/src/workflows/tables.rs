//! The rule worker's tables, beside the read models: its checkpoint, each rule's state (the
//! version in force, its definition, how often it fired), the scheduled facts (each open
//! deal's stage entry, each customer's latest order), the schedules fired and the run log.
//! All of it is derived from the log and moves with the checkpoint in one transaction.

use crm_projections::ProjectionError;
use crm_projections::db::{Backend, Col, ReadDb, ReadTx, SqlValue};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS crm_workflow_checkpoint (
        id BIGINT PRIMARY KEY,
        position BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS crm_workflow_rules (
        tenant TEXTKEY NOT NULL,
        rule_id TEXTKEY NOT NULL,
        version BIGINT NOT NULL,
        definition TEXT,
        fired BIGINT NOT NULL,
        set_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, rule_id)
    )",
    "CREATE TABLE IF NOT EXISTS crm_workflow_facts (
        tenant TEXTKEY NOT NULL,
        kind TEXTKEY NOT NULL,
        entity TEXTKEY NOT NULL,
        at BIGINT NOT NULL,
        anchor TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant, kind, entity)
    )",
    "CREATE INDEX IF NOT EXISTS crm_workflow_facts_at ON crm_workflow_facts (tenant, kind, at)",
    "CREATE TABLE IF NOT EXISTS crm_workflow_fired (
        tenant TEXTKEY NOT NULL,
        rule_id TEXTKEY NOT NULL,
        trigger_key TEXTKEY NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (tenant, rule_id, trigger_key)
    )",
    "CREATE TABLE IF NOT EXISTS crm_workflow_runs (
        tenant TEXTKEY NOT NULL,
        rule_id TEXTKEY NOT NULL,
        version BIGINT NOT NULL,
        trigger_key TEXTKEY NOT NULL,
        position BIGINT,
        trigger_at BIGINT NOT NULL,
        ran_at BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        events TEXT NOT NULL,
        delay_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, rule_id, version, trigger_key)
    )",
    "CREATE INDEX IF NOT EXISTS crm_workflow_runs_ran ON crm_workflow_runs (tenant, rule_id, ran_at)",
    "INSERT INTO crm_workflow_checkpoint (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];

/// Creates the tables if they are missing (concurrent starters on PostgreSQL are serialised
/// by a transaction-scoped advisory lock).
pub async fn create(db: &ReadDb) -> Result<(), ProjectionError> {
    crm_projections::bookkeeping::create(db).await?;
    let mut tx = db.begin().await?;
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(1668443504, 20)", vec![])
            .await?;
    }
    for statement in SCHEMA {
        tx.execute(statement, vec![]).await?;
    }
    tx.commit().await
}

/// The worker's stored checkpoint.
pub async fn checkpoint(db: &ReadDb) -> Result<u64, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT position FROM crm_workflow_checkpoint WHERE id = 1",
            vec![],
            &[Col::Int],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_int())
        .map_or(0, |p| p.max(0) as u64))
}

/// Moves the checkpoint from `from` to `to`; false when another worker moved it first.
pub async fn move_checkpoint(tx: &mut ReadTx, from: u64, to: u64) -> Result<bool, ProjectionError> {
    let moved = tx
        .execute(
            "UPDATE crm_workflow_checkpoint SET position = ? WHERE id = 1 AND position = ?",
            vec![SqlValue::Int(to as i64), SqlValue::Int(from as i64)],
        )
        .await?;
    Ok(moved == 1)
}

/// A rule's state as the worker keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub rule_id: String,
    pub version: u64,
    /// The definition in force (`None` once removed).
    pub definition: Option<String>,
    /// Event triggers acted on so far (round-robin picks follow it).
    pub fired: u64,
    /// The position of the rule's last `WorkflowRuleSet`/`WorkflowRuleRemoved`.
    pub set_at: u64,
}

/// Every rule of `tenant` (removed ones too).
pub async fn rules(db: &ReadDb, tenant: &str) -> Result<Vec<RuleRow>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT rule_id, version, definition, fired, set_at FROM crm_workflow_rules \
             WHERE tenant = ? ORDER BY rule_id",
            vec![tenant.into()],
            &[Col::Text, Col::Int, Col::Text, Col::Int, Col::Int],
        )
        .await?;
    Ok(rows.into_iter().map(rule_row).collect())
}

fn rule_row(row: Vec<SqlValue>) -> RuleRow {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(SqlValue::Null);
    RuleRow {
        rule_id: next().into_text().unwrap_or_default(),
        version: next().as_int().unwrap_or(0).max(0) as u64,
        definition: next().into_text(),
        fired: next().as_int().unwrap_or(0).max(0) as u64,
        set_at: next().as_int().unwrap_or(0).max(0) as u64,
    }
}

/// Tenants with at least one rule in force, with those rules.
pub async fn all_rules(db: &ReadDb) -> Result<Vec<(String, RuleRow)>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT tenant, rule_id, version, definition, fired, set_at FROM crm_workflow_rules \
             ORDER BY tenant, rule_id",
            vec![],
            &[
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Text,
                Col::Int,
                Col::Int,
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|mut row| {
            let tenant = std::mem::replace(&mut row[0], SqlValue::Null)
                .into_text()
                .unwrap_or_default();
            (tenant, rule_row(row.split_off(1)))
        })
        .collect())
}

pub(crate) async fn upsert_rule(
    tx: &mut ReadTx,
    tenant: &str,
    rule: &RuleRow,
) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO crm_workflow_rules (tenant, rule_id, version, definition, fired, set_at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, rule_id) DO UPDATE SET \
         version = excluded.version, definition = excluded.definition, \
         fired = excluded.fired, set_at = excluded.set_at",
        vec![
            tenant.into(),
            rule.rule_id.as_str().into(),
            SqlValue::Int(rule.version as i64),
            SqlValue::opt_text(rule.definition.clone()),
            SqlValue::Int(rule.fired as i64),
            SqlValue::Int(rule.set_at as i64),
        ],
    )
    .await?;
    Ok(())
}

/// A scheduled fact: `kind` is `opportunity` (an open deal's current stage entry) or
/// `customer` (a customer's latest order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub kind: &'static str,
    pub entity: String,
    /// Business time of the fact (stage entry, latest order), in microseconds.
    pub at: i64,
    /// The event the fact is dated by (its id).
    pub anchor: String,
    /// The fact's fields, as a schedule's conditions and templates read them.
    pub data: serde_json::Value,
}

/// The stored facts of `tenant` among `entities` of `kind`.
pub(crate) async fn facts_of(
    db: &ReadDb,
    tenant: &str,
    kind: &'static str,
    entities: &[&str],
) -> Result<Vec<Fact>, ProjectionError> {
    let mut found = Vec::new();
    for (clause, mut args) in crm_projections::db::in_clauses(db.backend(), "entity", entities) {
        let mut all = vec![tenant.into(), kind.into()];
        all.append(&mut args);
        let rows = db
            .fetch(
                &format!(
                    "SELECT entity, at, anchor, data FROM crm_workflow_facts \
                     WHERE tenant = ? AND kind = ? AND {clause}"
                ),
                all,
                &[Col::Text, Col::Int, Col::Text, Col::Text],
            )
            .await?;
        found.extend(rows.into_iter().map(|row| fact_row(kind, row)));
    }
    Ok(found)
}

fn fact_row(kind: &'static str, row: Vec<SqlValue>) -> Fact {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(SqlValue::Null);
    Fact {
        kind,
        entity: next().into_text().unwrap_or_default(),
        at: next().as_int().unwrap_or(0),
        anchor: next().into_text().unwrap_or_default(),
        data: next()
            .into_text()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null),
    }
}

/// The facts of `kind` of `tenant` dated at or before `until` (microseconds) that `rule_id`
/// has not fired for (its trigger key is `<prefix>:<entity>:<anchor>`), oldest first, at most
/// `limit`.
pub async fn facts_due(
    db: &ReadDb,
    tenant: &str,
    kind: &'static str,
    until: i64,
    rule_id: &str,
    prefix: &str,
    limit: usize,
) -> Result<Vec<Fact>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT entity, at, anchor, data FROM crm_workflow_facts f \
             WHERE tenant = ? AND kind = ? AND at <= ? AND NOT EXISTS (\
               SELECT 1 FROM crm_workflow_fired d WHERE d.tenant = f.tenant \
               AND d.rule_id = ? AND d.trigger_key = ? || ':' || f.entity || ':' || f.anchor) \
             ORDER BY at, entity LIMIT ?",
            vec![
                tenant.into(),
                kind.into(),
                SqlValue::Int(until),
                rule_id.into(),
                prefix.into(),
                SqlValue::Int(limit as i64),
            ],
            &[Col::Text, Col::Int, Col::Text, Col::Text],
        )
        .await?;
    Ok(rows.into_iter().map(|row| fact_row(kind, row)).collect())
}

/// Inserts or replaces facts (each key at most once), in multi-row statements.
pub(crate) async fn put_facts(
    tx: &mut ReadTx,
    facts: &[(&str, &Fact)],
) -> Result<(), ProjectionError> {
    let rows = facts
        .iter()
        .map(|(tenant, fact)| {
            vec![
                (*tenant).into(),
                fact.kind.into(),
                fact.entity.as_str().into(),
                SqlValue::Int(fact.at),
                fact.anchor.as_str().into(),
                fact.data.to_string().into(),
            ]
        })
        .collect();
    tx.insert_rows(
        "crm_workflow_facts",
        &["tenant", "kind", "entity", "at", "anchor", "data"],
        rows,
        "ON CONFLICT (tenant, kind, entity) DO UPDATE SET at = excluded.at, \
         anchor = excluded.anchor, data = excluded.data",
    )
    .await
}

pub(crate) async fn delete_fact(
    tx: &mut ReadTx,
    tenant: &str,
    kind: &str,
    entity: &str,
) -> Result<(), ProjectionError> {
    tx.execute(
        "DELETE FROM crm_workflow_facts WHERE tenant = ? AND kind = ? AND entity = ?",
        vec![tenant.into(), kind.into(), entity.into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn mark_fired(
    tx: &mut ReadTx,
    tenant: &str,
    rule_id: &str,
    version: u64,
    key: &str,
) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO crm_workflow_fired (tenant, rule_id, trigger_key, version) \
         VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        vec![
            tenant.into(),
            rule_id.into(),
            key.into(),
            SqlValue::Int(version as i64),
        ],
    )
    .await?;
    Ok(())
}

/// One line of a rule's run log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    pub rule_id: String,
    pub version: u64,
    /// The trigger's key (`event:<stream>:<event id>`, or `<schedule>:<fact>:<due>`).
    pub trigger: String,
    /// The triggering event's position (event triggers).
    pub position: Option<u64>,
    /// The trigger's time (the event's business time, or the due time), microseconds.
    pub trigger_at: i64,
    /// When the worker acted, microseconds.
    pub ran_at: i64,
    /// `appended`, `duplicate` (a re-run: the events were already stored), `refused` (the
    /// ingest decision refused them), `stopped` (depth limit, cycle, a template).
    pub outcome: String,
    pub detail: String,
    /// The events (`id`, `type`, `stream`, `position`) and calls, as JSON.
    pub events: serde_json::Value,
    /// How late a schedule fired (0 for event triggers), milliseconds.
    pub delay_ms: i64,
}

pub(crate) async fn record_run(
    tx: &mut ReadTx,
    tenant: &str,
    run: &Run,
) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO crm_workflow_runs (tenant, rule_id, version, trigger_key, position, \
         trigger_at, ran_at, outcome, detail, events, delay_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        vec![
            tenant.into(),
            run.rule_id.as_str().into(),
            SqlValue::Int(run.version as i64),
            run.trigger.as_str().into(),
            SqlValue::opt_int(run.position.map(|p| p as i64)),
            SqlValue::Int(run.trigger_at),
            SqlValue::Int(run.ran_at),
            run.outcome.as_str().into(),
            run.detail.as_str().into(),
            run.events.to_string().into(),
            SqlValue::Int(run.delay_ms),
        ],
    )
    .await?;
    Ok(())
}

/// A rule's runs, newest first, before `before` (ran_at, microseconds) when given.
pub async fn runs(
    db: &ReadDb,
    tenant: &str,
    rule_id: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Run>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT rule_id, version, trigger_key, position, trigger_at, ran_at, outcome, \
             detail, events, delay_ms FROM crm_workflow_runs \
             WHERE tenant = ? AND rule_id = ? AND ran_at < ? \
             ORDER BY ran_at DESC, trigger_key DESC LIMIT ?",
            vec![
                tenant.into(),
                rule_id.into(),
                SqlValue::Int(before.unwrap_or(i64::MAX)),
                SqlValue::Int(limit as i64),
            ],
            &[
                Col::Text,
                Col::Int,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
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
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(SqlValue::Null);
            Run {
                rule_id: next().into_text().unwrap_or_default(),
                version: next().as_int().unwrap_or(0).max(0) as u64,
                trigger: next().into_text().unwrap_or_default(),
                position: next().as_int().map(|p| p.max(0) as u64),
                trigger_at: next().as_int().unwrap_or(0),
                ran_at: next().as_int().unwrap_or(0),
                outcome: next().into_text().unwrap_or_default(),
                detail: next().into_text().unwrap_or_default(),
                events: next()
                    .into_text()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(serde_json::Value::Null),
                delay_ms: next().as_int().unwrap_or(0),
            }
        })
        .collect())
}

/// Deletes every row of `tenant` (the tenant's offboarding).
pub async fn erase_tenant(db: &ReadDb, tenant: &str) -> Result<(), ProjectionError> {
    for table in [
        "crm_workflow_rules",
        "crm_workflow_facts",
        "crm_workflow_fired",
        "crm_workflow_runs",
    ] {
        db.execute(
            &format!("DELETE FROM {table} WHERE tenant = ?"),
            vec![tenant.into()],
        )
        .await?;
    }
    Ok(())
}
