//! The webhook tables beside the read models (both backends, created at `serve` start):
//!
//! - `crm_webhooks`: one row per subscription (tenant, id), its filter, its sealed secret
//!   ([`super::secrets`]), its status, and its cursor `last_position`: the last log position
//!   handled, stored like a projection's checkpoint and moved by compare-and-set (with
//!   `epoch`, which a replay bumps) in the transaction that records the delivery.
//! - `crm_webhook_deliveries`: the delivery log, one row per (subscription, message id):
//!   status (`pending`: attempted, will be retried; `delivered`; `failed`: the schedule
//!   ended), attempts, the last answer (HTTP status, a short error; never a body), latency,
//!   times, and the retry state (`failures` in the current schedule, `next_attempt_at`).
//! - `crm_webhook_calls`: rule calls queued for a subscription ([`super::calls`]).
//!
//! Every read and write names the tenant: one tenant never sees or changes another's rows.

use chrono::{DateTime, Utc};
use crm_projections::ReadDb;
use crm_projections::db::{Col, ReadTx, SqlValue};
use serde::Serialize;

use super::WebhookError;
use super::model::{NewSubscription, Status, Subscription};

/// Delivered rows older than this are pruned from the delivery log.
pub const KEEP_DELIVERED: chrono::Duration = chrono::Duration::days(30);

const SUBSCRIPTION_COLUMNS: &str = "tenant, id, url, event_types, conditions, description, \
     personal_data, status, disabled_reason, disabled_at, last_position, created_at, \
     updated_at, secret, epoch";
const SUBSCRIPTION_COLS: &[Col] = &[
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Text,
    Col::Int,
];

/// Creates the tables (idempotent).
pub async fn create(db: &ReadDb) -> Result<(), WebhookError> {
    let statements = [
        "CREATE TABLE IF NOT EXISTS crm_webhooks (\
         tenant TEXTKEY NOT NULL, id TEXTKEY NOT NULL, url TEXT NOT NULL, \
         event_types TEXT NOT NULL, conditions TEXT NOT NULL, description TEXT NOT NULL, \
         personal_data BIGINT NOT NULL, status TEXT NOT NULL, disabled_reason TEXT, \
         disabled_at BIGINT, last_position BIGINT NOT NULL, created_at BIGINT NOT NULL, \
         updated_at BIGINT NOT NULL, secret TEXT NOT NULL, epoch BIGINT NOT NULL, \
         PRIMARY KEY (tenant, id))",
        "CREATE TABLE IF NOT EXISTS crm_webhook_deliveries (\
         webhook_id TEXTKEY NOT NULL, message_id TEXTKEY NOT NULL, tenant TEXTKEY NOT NULL, \
         source TEXT NOT NULL, position BIGINT, event_id TEXT NOT NULL, status TEXT NOT NULL, \
         attempts BIGINT NOT NULL, failures BIGINT NOT NULL, last_status BIGINT, \
         last_error TEXT, latency_ms BIGINT, first_attempt_at BIGINT NOT NULL, \
         last_attempt_at BIGINT NOT NULL, delivered_at BIGINT, next_attempt_at BIGINT, \
         PRIMARY KEY (webhook_id, message_id))",
        "CREATE INDEX IF NOT EXISTS crm_webhook_deliveries_list ON crm_webhook_deliveries \
         (tenant, webhook_id, first_attempt_at, message_id)",
        "CREATE TABLE IF NOT EXISTS crm_webhook_calls (\
         webhook_id TEXTKEY NOT NULL, call_id TEXTKEY NOT NULL, tenant TEXTKEY NOT NULL, \
         seq BIGINT NOT NULL, payload TEXT NOT NULL, trigger_position BIGINT, \
         rule_id TEXT NOT NULL, rule_version BIGINT NOT NULL, enqueued_at BIGINT NOT NULL, \
         delivered_at BIGINT, PRIMARY KEY (webhook_id, call_id))",
        "CREATE INDEX IF NOT EXISTS crm_webhook_calls_queue ON crm_webhook_calls \
         (webhook_id, delivered_at, seq)",
    ];
    for statement in statements {
        db.execute(statement, vec![]).await?;
    }
    Ok(())
}

pub(crate) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub(crate) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

pub(crate) fn int(value: u64) -> SqlValue {
    SqlValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn read_int(value: &SqlValue) -> i64 {
    value.as_int().unwrap_or_default()
}

/// A subscription row with what the API never shows.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subscription: Subscription,
    /// The secret sealed under the master key (base64).
    pub sealed_secret: String,
    /// Bumped by every replay: a delivery's cursor move compares it.
    pub epoch: i64,
}

fn decode(row: Vec<SqlValue>) -> Result<Stored, WebhookError> {
    let mut row = row.into_iter();
    let mut next = || row.next().unwrap_or(SqlValue::Null);
    let tenant = next().into_text().unwrap_or_default();
    let id = next().into_text().unwrap_or_default();
    let url = next().into_text().unwrap_or_default();
    let event_types = serde_json::from_str(&next().into_text().unwrap_or_default())
        .map_err(|e| WebhookError::Corrupt(format!("event_types of {id}: {e}")))?;
    let conditions = serde_json::from_str(&next().into_text().unwrap_or_default())
        .map_err(|e| WebhookError::Corrupt(format!("conditions of {id}: {e}")))?;
    let description = next().into_text().unwrap_or_default();
    let personal_data = read_int(&next()) != 0;
    let status = Status::parse(next().as_text().unwrap_or_default());
    let disabled_reason = next().into_text();
    let disabled_at = next().as_int().map(time);
    let cursor = u64::try_from(read_int(&next())).unwrap_or_default();
    let created_at = time(read_int(&next()));
    let updated_at = time(read_int(&next()));
    let sealed_secret = next().into_text().unwrap_or_default();
    let epoch = read_int(&next());
    Ok(Stored {
        subscription: Subscription {
            id,
            tenant,
            url,
            event_types,
            conditions,
            description,
            personal_data,
            status,
            disabled_reason,
            disabled_at,
            cursor,
            created_at,
            updated_at,
        },
        sealed_secret,
        epoch,
    })
}

/// Inserts a new subscription starting after `cursor` (the log head when it is created);
/// refuses past [`super::model::MAX_PER_TENANT`].
pub async fn insert(
    db: &ReadDb,
    tenant: &str,
    id: &str,
    new: &NewSubscription,
    sealed_secret: &str,
    cursor: u64,
) -> Result<Subscription, WebhookError> {
    let mut tx = db.begin().await?;
    let count = tx
        .fetch(
            "SELECT COUNT(*) FROM crm_webhooks WHERE tenant = ?",
            vec![tenant.into()],
            &[Col::Int],
        )
        .await?;
    let count = count.first().map_or(0, |r| read_int(&r[0]));
    if usize::try_from(count).unwrap_or(usize::MAX) >= super::model::MAX_PER_TENANT {
        return Err(WebhookError::Limit(format!(
            "a tenant may have at most {} webhook subscriptions; delete one first",
            super::model::MAX_PER_TENANT
        )));
    }
    let now = now_micros();
    tx.execute(
        &format!(
            "INSERT INTO crm_webhooks ({SUBSCRIPTION_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, 0)"
        ),
        vec![
            tenant.into(),
            id.into(),
            new.url.as_str().into(),
            json_text(&new.event_types).into(),
            json_text(&new.conditions).into(),
            new.description.as_str().into(),
            SqlValue::Int(i64::from(new.personal_data)),
            SqlValue::Null,
            SqlValue::NullInt,
            int(cursor),
            SqlValue::Int(now),
            SqlValue::Int(now),
            sealed_secret.into(),
        ],
    )
    .await?;
    tx.commit().await?;
    get(db, tenant, id)
        .await?
        .map(|s| s.subscription)
        .ok_or_else(|| WebhookError::NotFound(id.to_owned()))
}

/// JSON text of a filter member.
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// One subscription of `tenant`.
pub async fn get(db: &ReadDb, tenant: &str, id: &str) -> Result<Option<Stored>, WebhookError> {
    let rows = db
        .fetch(
            &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM crm_webhooks WHERE tenant = ? AND id = ?"),
            vec![tenant.into(), id.into()],
            SUBSCRIPTION_COLS,
        )
        .await?;
    rows.into_iter().next().map(decode).transpose()
}

/// The tenant's subscriptions, by id.
pub async fn list(db: &ReadDb, tenant: &str) -> Result<Vec<Subscription>, WebhookError> {
    let rows = db
        .fetch(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM crm_webhooks WHERE tenant = ? ORDER BY id"
            ),
            vec![tenant.into()],
            SUBSCRIPTION_COLS,
        )
        .await?;
    rows.into_iter()
        .map(|row| decode(row).map(|s| s.subscription))
        .collect()
}

/// Every active subscription of every tenant: (tenant, id).
pub async fn active(db: &ReadDb) -> Result<Vec<(String, String)>, WebhookError> {
    let rows = db
        .fetch(
            "SELECT tenant, id FROM crm_webhooks WHERE status = 'active'",
            vec![],
            &[Col::Text, Col::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let id = r.pop().and_then(SqlValue::into_text).unwrap_or_default();
            let tenant = r.pop().and_then(SqlValue::into_text).unwrap_or_default();
            (tenant, id)
        })
        .collect())
}

/// What a PATCH writes (already checked).
#[derive(Debug, Clone)]
pub struct Update {
    pub url: String,
    pub event_types: Vec<String>,
    pub conditions: Vec<crm_core::automation::condition::Condition>,
    pub description: String,
    pub reactivate: bool,
    pub sealed_secret: Option<String>,
}

/// Writes a PATCH in one transaction; re-enabling also makes the failed message due at once
/// with a fresh schedule. `false` when the subscription is not the tenant's.
pub async fn update(
    db: &ReadDb,
    tenant: &str,
    id: &str,
    update: &Update,
) -> Result<bool, WebhookError> {
    let mut tx = db.begin().await?;
    let now = SqlValue::Int(now_micros());
    let changed = tx
        .execute(
            "UPDATE crm_webhooks SET url = ?, event_types = ?, conditions = ?, description = ?, \
             updated_at = ?, secret = COALESCE(?, secret) WHERE tenant = ? AND id = ?",
            vec![
                update.url.as_str().into(),
                json_text(&update.event_types).into(),
                json_text(&update.conditions).into(),
                update.description.as_str().into(),
                now.clone(),
                SqlValue::opt_text(update.sealed_secret.clone()),
                tenant.into(),
                id.into(),
            ],
        )
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    if update.reactivate {
        tx.execute(
            "UPDATE crm_webhooks SET status = 'active', disabled_reason = NULL, \
             disabled_at = NULL WHERE tenant = ? AND id = ?",
            vec![tenant.into(), id.into()],
        )
        .await?;
        tx.execute(
            "UPDATE crm_webhook_deliveries SET status = 'pending', failures = 0, \
             next_attempt_at = NULL WHERE tenant = ? AND webhook_id = ? AND status = 'failed'",
            vec![tenant.into(), id.into()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes a subscription with its delivery log and queued calls. `false` when it is not the
/// tenant's.
pub async fn delete(db: &ReadDb, tenant: &str, id: &str) -> Result<bool, WebhookError> {
    let mut tx = db.begin().await?;
    let deleted = tx
        .execute(
            "DELETE FROM crm_webhooks WHERE tenant = ? AND id = ?",
            vec![tenant.into(), id.into()],
        )
        .await?;
    if deleted == 0 {
        return Ok(false);
    }
    for table in ["crm_webhook_deliveries", "crm_webhook_calls"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant = ? AND webhook_id = ?"),
            vec![tenant.into(), id.into()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes every subscription of `tenant` with its delivery log and calls (`crm-replay
/// erase-tenant`). Returns how many subscriptions were deleted.
pub async fn erase_tenant(db: &ReadDb, tenant: &str) -> Result<u64, WebhookError> {
    create(db).await?;
    let mut tx = db.begin().await?;
    let deleted = tx
        .execute(
            "DELETE FROM crm_webhooks WHERE tenant = ?",
            vec![tenant.into()],
        )
        .await?;
    for table in ["crm_webhook_deliveries", "crm_webhook_calls"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant = ?"),
            vec![tenant.into()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Moves the cursor back so the worker resends from `from` (inclusive), with the same message
/// ids; bumps the epoch so a delivery in flight does not move it forward again. Makes any
/// message waiting for a retry due at once.
pub async fn replay(db: &ReadDb, tenant: &str, id: &str, from: u64) -> Result<bool, WebhookError> {
    let mut tx = db.begin().await?;
    let changed = tx
        .execute(
            "UPDATE crm_webhooks SET last_position = ?, epoch = epoch + 1, updated_at = ? \
             WHERE tenant = ? AND id = ?",
            vec![
                int(from.saturating_sub(1)),
                SqlValue::Int(now_micros()),
                tenant.into(),
                id.into(),
            ],
        )
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute(
        "UPDATE crm_webhook_deliveries SET next_attempt_at = NULL \
         WHERE tenant = ? AND webhook_id = ? AND status = 'pending'",
        vec![tenant.into(), id.into()],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Moves the cursor from `from` to `to` if it and the epoch are still as read.
pub async fn move_cursor(
    tx: &mut ReadTx,
    tenant: &str,
    id: &str,
    epoch: i64,
    from: u64,
    to: u64,
) -> Result<bool, WebhookError> {
    let moved = tx
        .execute(
            "UPDATE crm_webhooks SET last_position = ? \
             WHERE tenant = ? AND id = ? AND last_position = ? AND epoch = ?",
            vec![
                int(to),
                tenant.into(),
                id.into(),
                int(from),
                SqlValue::Int(epoch),
            ],
        )
        .await?;
    Ok(moved == 1)
}

/// Disables a subscription whose schedule ended, with the reason and time.
pub async fn disable(
    tx: &mut ReadTx,
    tenant: &str,
    id: &str,
    reason: &str,
) -> Result<(), WebhookError> {
    tx.execute(
        "UPDATE crm_webhooks SET status = 'disabled', disabled_reason = ?, disabled_at = ? \
         WHERE tenant = ? AND id = ?",
        vec![
            reason.into(),
            SqlValue::Int(now_micros()),
            tenant.into(),
            id.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Every sealed secret: (tenant, id, sealed), for a master-key rotation.
pub async fn sealed_secrets(db: &ReadDb) -> Result<Vec<(String, String, String)>, WebhookError> {
    let rows = db
        .fetch(
            "SELECT tenant, id, secret FROM crm_webhooks ORDER BY tenant, id",
            vec![],
            &[Col::Text, Col::Text, Col::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter().map(|v| v.into_text().unwrap_or_default());
            let mut next = || r.next().unwrap_or_default();
            (next(), next(), next())
        })
        .collect())
}

/// Replaces a sealed secret if it is still `old` (compare-and-set).
pub async fn replace_secret(
    db: &ReadDb,
    tenant: &str,
    id: &str,
    old: &str,
    new: &str,
) -> Result<bool, WebhookError> {
    let changed = db
        .execute(
            "UPDATE crm_webhooks SET secret = ? WHERE tenant = ? AND id = ? AND secret = ?",
            vec![new.into(), tenant.into(), id.into(), old.into()],
        )
        .await?;
    Ok(changed == 1)
}

/// Where a message stands in the delivery log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptState {
    pub status: String,
    /// Failures in the current schedule.
    pub failures: u32,
    /// When the next attempt is due (micros), if it waits.
    pub next_attempt_at: Option<i64>,
}

pub async fn attempt_state(
    db: &ReadDb,
    webhook_id: &str,
    message_id: &str,
) -> Result<Option<AttemptState>, WebhookError> {
    let rows = db
        .fetch(
            "SELECT status, failures, next_attempt_at FROM crm_webhook_deliveries \
             WHERE webhook_id = ? AND message_id = ?",
            vec![webhook_id.into(), message_id.into()],
            &[Col::Text, Col::Int, Col::Int],
        )
        .await?;
    Ok(rows.into_iter().next().map(|r| AttemptState {
        status: r[0].as_text().unwrap_or_default().to_owned(),
        failures: u32::try_from(read_int(&r[1])).unwrap_or(u32::MAX),
        next_attempt_at: r[2].as_int(),
    }))
}

/// One attempt's outcome, as the delivery log records it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub tenant: &'a str,
    pub webhook_id: &'a str,
    pub message_id: &'a str,
    /// `event` or `rule`.
    pub source: &'a str,
    pub position: Option<u64>,
    pub event_id: &'a str,
    /// `pending`, `delivered` or `failed`.
    pub status: &'a str,
    pub failures: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<&'a str>,
    pub latency_ms: u64,
    pub at: i64,
    pub next_attempt_at: Option<i64>,
}

/// Records an attempt (the row's first, or one more).
pub async fn record_attempt(tx: &mut ReadTx, attempt: &Attempt<'_>) -> Result<(), WebhookError> {
    let delivered = (attempt.status == "delivered").then_some(attempt.at);
    tx.execute(
        "INSERT INTO crm_webhook_deliveries (webhook_id, message_id, tenant, source, position, \
         event_id, status, attempts, failures, last_status, last_error, latency_ms, \
         first_attempt_at, last_attempt_at, delivered_at, next_attempt_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (webhook_id, message_id) DO UPDATE SET status = excluded.status, \
         attempts = crm_webhook_deliveries.attempts + 1, failures = excluded.failures, \
         last_status = excluded.last_status, last_error = excluded.last_error, \
         latency_ms = excluded.latency_ms, last_attempt_at = excluded.last_attempt_at, \
         delivered_at = excluded.delivered_at, next_attempt_at = excluded.next_attempt_at",
        vec![
            attempt.webhook_id.into(),
            attempt.message_id.into(),
            attempt.tenant.into(),
            attempt.source.into(),
            SqlValue::opt_int(
                attempt
                    .position
                    .map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
            ),
            attempt.event_id.into(),
            attempt.status.into(),
            SqlValue::Int(i64::from(attempt.failures)),
            SqlValue::opt_int(attempt.last_status.map(i64::from)),
            SqlValue::opt_text(attempt.last_error),
            int(attempt.latency_ms),
            SqlValue::Int(attempt.at),
            SqlValue::Int(attempt.at),
            SqlValue::opt_int(delivered),
            SqlValue::opt_int(attempt.next_attempt_at),
        ],
    )
    .await?;
    Ok(())
}

/// Deletes delivered rows older than [`KEEP_DELIVERED`]; returns how many.
pub async fn prune(db: &ReadDb) -> Result<u64, WebhookError> {
    let cutoff = (Utc::now() - KEEP_DELIVERED).timestamp_micros();
    Ok(db
        .execute(
            "DELETE FROM crm_webhook_deliveries WHERE status = 'delivered' AND delivered_at < ?",
            vec![SqlValue::Int(cutoff)],
        )
        .await?)
}

/// One line of the delivery log, as `GET /v1/webhooks/{id}/deliveries` answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryLine {
    /// The `webhook-id` header: the same on every attempt, resend and replay.
    pub message_id: String,
    /// `event` (from the log) or `rule` (a workflow rule's call).
    pub source: String,
    /// The event's log position (for a rule call, its trigger's, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The event id, or the rule call's id.
    pub event_id: String,
    /// `pending` (attempted, to be retried), `delivered`, or `failed` (the schedule ended).
    pub status: String,
    pub attempts: u64,
    /// The last answer's HTTP status, if one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed (never the request's body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub first_attempt_at: DateTime<Utc>,
    pub last_attempt_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A page of the delivery log, newest first (by first attempt), after the cursor `after`
/// (`<micros>_<message id>`, what the previous page's `next` gave).
pub async fn deliveries(
    db: &ReadDb,
    tenant: &str,
    webhook_id: &str,
    after: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<DeliveryLine>, WebhookError> {
    let mut sql = "SELECT message_id, source, position, event_id, status, attempts, \
         last_status, last_error, latency_ms, first_attempt_at, last_attempt_at, delivered_at, \
         next_attempt_at FROM crm_webhook_deliveries WHERE tenant = ? AND webhook_id = ?"
        .to_owned();
    let mut args: Vec<SqlValue> = vec![tenant.into(), webhook_id.into()];
    if let Some((at, message)) = after {
        sql.push_str(" AND (first_attempt_at < ? OR (first_attempt_at = ? AND message_id < ?))");
        args.extend([SqlValue::Int(at), SqlValue::Int(at), message.into()]);
    }
    sql.push_str(" ORDER BY first_attempt_at DESC, message_id DESC LIMIT ?");
    args.push(int(limit as u64));
    let rows = db
        .fetch(
            &sql,
            args,
            &[
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
            ],
        )
        .await?;
    let unsigned = |v: &SqlValue| v.as_int().and_then(|i| u64::try_from(i).ok());
    Ok(rows
        .into_iter()
        .map(|r| DeliveryLine {
            message_id: r[0].as_text().unwrap_or_default().to_owned(),
            source: r[1].as_text().unwrap_or_default().to_owned(),
            position: unsigned(&r[2]),
            event_id: r[3].as_text().unwrap_or_default().to_owned(),
            status: r[4].as_text().unwrap_or_default().to_owned(),
            attempts: unsigned(&r[5]).unwrap_or_default(),
            last_status: r[6].as_int().and_then(|s| u16::try_from(s).ok()),
            last_error: r[7].as_text().map(str::to_owned),
            latency_ms: unsigned(&r[8]),
            first_attempt_at: time(read_int(&r[9])),
            last_attempt_at: time(read_int(&r[10])),
            delivered_at: r[11].as_int().map(time),
            next_attempt_at: r[12].as_int().map(time),
        })
        .collect())
}
