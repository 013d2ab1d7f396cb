//! Rule calls: a workflow rule's "call this webhook" queued for a subscription
//! (`crm_webhook_calls`), inside the rule worker's own transaction, so the call is queued if
//! and only if the rule's step commits. The subscription's worker delivers them in the order
//! they were enqueued, with the same signing, retries, disabling and delivery log (`source`
//! `rule`) as events. A call's id is the caller's, deterministic (a rule re-run for the same
//! trigger enqueues nothing new); its `webhook-id` derives from it.

use chrono::{DateTime, Utc};
use crm_projections::ReadDb;
use crm_projections::db::{Col, ReadTx, SqlValue};
use serde_json::Value;

use super::WebhookError;
use super::tables::{int, now_micros, time};

/// Largest payload, in bytes of JSON.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A call to queue.
#[derive(Debug, Clone)]
pub struct RuleCall<'a> {
    pub tenant: &'a str,
    pub webhook_id: &'a str,
    /// Deterministic, e.g. derived from (rule id, version, trigger position): the same call
    /// enqueued twice is queued once.
    pub call_id: &'a str,
    /// What the call sends as `data`: a JSON object without personal data.
    pub payload: &'a Value,
    /// The log position of the event that triggered it, if any.
    pub trigger_position: Option<u64>,
    pub rule_id: &'a str,
    pub rule_version: u64,
}

/// Queues `call` inside the caller's transaction `tx` (a `ReadTx` of the same database).
/// `Ok(false)` when a call with this id is already queued (or was delivered) for the
/// subscription: nothing is written. Refused: a subscription that is not the tenant's
/// ([`WebhookError::NotFound`]), a call id that is not 1–128 characters, a payload that is not
/// an object or is over [`MAX_PAYLOAD`] bytes.
pub async fn enqueue_call(tx: &mut ReadTx, call: &RuleCall<'_>) -> Result<bool, WebhookError> {
    if call.call_id.is_empty() || call.call_id.len() > 128 {
        return Err(WebhookError::Invalid {
            member: "call_id".into(),
            reason: "1 to 128 characters".into(),
        });
    }
    if !call.payload.is_object() {
        return Err(WebhookError::Invalid {
            member: "payload".into(),
            reason: "must be a JSON object".into(),
        });
    }
    let payload =
        serde_json::to_string(call.payload).map_err(|e| WebhookError::Corrupt(e.to_string()))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(WebhookError::Invalid {
            member: "payload".into(),
            reason: format!("at most {MAX_PAYLOAD} bytes of JSON"),
        });
    }
    let exists = tx
        .fetch(
            "SELECT CAST(1 AS BIGINT) FROM crm_webhooks WHERE tenant = ? AND id = ?",
            vec![call.tenant.into(), call.webhook_id.into()],
            &[Col::Int],
        )
        .await?;
    if exists.is_empty() {
        return Err(WebhookError::NotFound(call.webhook_id.to_owned()));
    }
    let inserted = tx
        .execute(
            "INSERT INTO crm_webhook_calls (webhook_id, call_id, tenant, seq, payload, \
             trigger_position, rule_id, rule_version, enqueued_at, delivered_at) \
             SELECT ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, NULL \
             FROM crm_webhook_calls WHERE webhook_id = ? \
             ON CONFLICT (webhook_id, call_id) DO NOTHING",
            vec![
                call.webhook_id.into(),
                call.call_id.into(),
                call.tenant.into(),
                payload.into(),
                SqlValue::opt_int(
                    call.trigger_position
                        .map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
                ),
                call.rule_id.into(),
                int(call.rule_version),
                SqlValue::Int(now_micros()),
                call.webhook_id.into(),
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// A queued call, as the worker reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedCall {
    pub call_id: String,
    pub payload: Value,
    pub trigger_position: Option<u64>,
    pub enqueued_at: DateTime<Utc>,
}

/// The subscription's first undelivered call, in enqueue order.
pub async fn next_call(db: &ReadDb, webhook_id: &str) -> Result<Option<QueuedCall>, WebhookError> {
    let rows = db
        .fetch(
            "SELECT call_id, payload, trigger_position, enqueued_at FROM crm_webhook_calls \
             WHERE webhook_id = ? AND delivered_at IS NULL ORDER BY seq, call_id LIMIT 1",
            vec![webhook_id.into()],
            &[Col::Text, Col::Text, Col::Int, Col::Int],
        )
        .await?;
    rows.into_iter()
        .next()
        .map(|r| {
            Ok(QueuedCall {
                call_id: r[0].as_text().unwrap_or_default().to_owned(),
                payload: serde_json::from_str(r[1].as_text().unwrap_or("{}"))
                    .map_err(|e| WebhookError::Corrupt(format!("a call's payload: {e}")))?,
                trigger_position: r[2].as_int().and_then(|p| u64::try_from(p).ok()),
                enqueued_at: time(r[3].as_int().unwrap_or_default()),
            })
        })
        .transpose()
}

/// Marks a call delivered (in the transaction that records its delivery).
pub async fn mark_delivered(
    tx: &mut ReadTx,
    webhook_id: &str,
    call_id: &str,
) -> Result<bool, WebhookError> {
    let changed = tx
        .execute(
            "UPDATE crm_webhook_calls SET delivered_at = ? \
             WHERE webhook_id = ? AND call_id = ? AND delivered_at IS NULL",
            vec![
                SqlValue::Int(now_micros()),
                webhook_id.into(),
                call_id.into(),
            ],
        )
        .await?;
    Ok(changed == 1)
}
