//! One subscription's delivery task: its queued rule calls first, then the tenant's log after
//! its cursor, one message at a time, in order.
//!
//! Events are read ahead ([`super::WorkerOptions::read_ahead`] at most, through the store
//! that opens no personal field) and filtered by the subscription's event types and
//! conditions; the cursor moves past events that do not match by compare-and-set. A matching
//! event is read again through the opened store when it is sent, rendered, signed and
//! posted. After a 2xx the delivery-log row and the cursor (or the call's `delivered_at`)
//! move in one transaction, so a crash at any point sends the message again (same
//! `webhook-id`) and skips nothing. A failure records the attempt and the next one's time
//! ([`super::schedule`]); later messages wait behind it; when the schedule ends the
//! subscription is disabled with the reason, and re-enabling resumes at the same message.

use std::collections::VecDeque;
use std::time::Duration;

use crm_core::automation::condition::{Subject, all_hold};
use crm_core::envelope::{RecordedEvent, StreamId, TenantId};
use crm_core::privacy::subject_of_data;
use crm_core::store::{Direction, EventStore, Scope, StreamStart};
use crm_projections::db::SqlValue;
use serde_json::Value;

use super::calls::{self, QueuedCall};
use super::client::Message;
use super::model::{Status, Subscription};
use super::tables::{self, Attempt, Stored, now_micros};
use super::worker::Shared;
use super::{WebhookError, render, schedule, secrets, signing};

/// What the lane does next.
enum Step {
    /// Go on at once.
    Continue,
    /// Nothing to send: wait for an append or a nudge.
    Idle,
    /// A message waits for its retry time.
    Until(i64),
    /// The subscription is gone or disabled.
    Stop,
}

enum Item {
    Event(RecordedEvent),
    Call(QueuedCall),
}

/// See the module documentation.
pub(crate) struct Lane {
    shared: Shared,
    tenant: String,
    id: String,
    buffer: VecDeque<RecordedEvent>,
    read_after: u64,
    /// The (cursor, epoch) the buffer was read from; `None`: read again.
    known: Option<(u64, i64)>,
}

impl Lane {
    pub(crate) fn new(shared: Shared, tenant: String, id: String) -> Lane {
        Lane {
            shared,
            tenant,
            id,
            buffer: VecDeque::new(),
            read_after: 0,
            known: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let Ok(tenant) = TenantId::parse(&self.tenant) else {
            return;
        };
        let mut heads = self.shared.sealed.head_changes();
        let mut nudges = self.shared.hub.subscribe();
        loop {
            let step = self.step(&tenant).await;
            // Appends wake an idle lane only: one waiting for a retry waits for its time.
            let idle = matches!(step, Ok(Step::Idle));
            let wait = match step {
                Ok(Step::Continue) => continue,
                Ok(Step::Stop) => return,
                Ok(Step::Idle) => Duration::from_secs(1),
                Ok(Step::Until(at)) => {
                    let micros = (at - now_micros()).clamp(0, 1_000_000);
                    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
                }
                Err(error) => {
                    tracing::warn!(webhook = %self.id, %error, "webhooks: delivery step failed");
                    self.known = None;
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = heads.changed(), if idle => {}
                _ = nudges.changed() => {}
            }
        }
    }

    async fn step(&mut self, tenant: &TenantId) -> Result<Step, WebhookError> {
        let db = &self.shared.db;
        let Some(stored) = tables::get(db, &self.tenant, &self.id).await? else {
            return Ok(Step::Stop);
        };
        if stored.subscription.status == Status::Disabled {
            return Ok(Step::Stop);
        }
        if let Some(call) = calls::next_call(db, &self.id).await? {
            return self.attempt(tenant, &stored, Item::Call(call)).await;
        }
        let mut stored = stored;
        match self.next_event(tenant, &mut stored).await? {
            Some(event) => self.attempt(tenant, &stored, Item::Event(event)).await,
            None => Ok(Step::Idle),
        }
    }

    /// The first event after the cursor that the subscription takes; moves the cursor past
    /// the ones it does not.
    async fn next_event(
        &mut self,
        tenant: &TenantId,
        stored: &mut Stored,
    ) -> Result<Option<RecordedEvent>, WebhookError> {
        let cursor = stored.subscription.cursor;
        if self.known != Some((cursor, stored.epoch)) {
            self.buffer.clear();
            self.read_after = cursor;
            self.known = Some((cursor, stored.epoch));
        }
        let mut skipped_to = cursor;
        loop {
            while let Some(front) = self.buffer.front() {
                if takes(&stored.subscription, front) {
                    let found = front.clone();
                    self.skip(stored, skipped_to).await?;
                    return Ok(Some(found));
                }
                skipped_to = front.position;
                self.buffer.pop_front();
            }
            let batch = self
                .shared
                .sealed
                .read_all(
                    &Scope::Tenant(tenant.clone()),
                    self.read_after,
                    self.shared.options.read_ahead.max(1),
                )
                .await?;
            let Some(last) = batch.last() else {
                self.skip(stored, skipped_to).await?;
                return Ok(None);
            };
            self.read_after = last.position;
            self.buffer.extend(batch);
        }
    }

    /// Moves the cursor over events that do not match, up to `to` (and `stored` with it).
    async fn skip(&mut self, stored: &mut Stored, to: u64) -> Result<(), WebhookError> {
        let from = stored.subscription.cursor;
        if to <= from {
            return Ok(());
        }
        let mut tx = self.shared.db.begin().await?;
        if tables::move_cursor(&mut tx, &self.tenant, &self.id, stored.epoch, from, to).await? {
            tx.commit().await?;
            stored.subscription.cursor = to;
            self.known = Some((to, stored.epoch));
        } else {
            self.known = None;
        }
        Ok(())
    }

    async fn attempt(
        &mut self,
        tenant: &TenantId,
        stored: &Stored,
        item: Item,
    ) -> Result<Step, WebhookError> {
        let subscription = &stored.subscription;
        let (message_id, source, position, event_id) = match &item {
            Item::Event(event) => (
                signing::event_message_id(&self.id, event.position),
                "event",
                Some(event.position),
                event.event_id.to_string(),
            ),
            Item::Call(call) => (
                signing::call_message_id(&self.id, &call.call_id),
                "rule",
                call.trigger_position,
                call.call_id.clone(),
            ),
        };
        let state = tables::attempt_state(&self.shared.db, &self.id, &message_id).await?;
        let failures = state
            .as_ref()
            .filter(|s| s.status != "delivered")
            .map_or(0, |s| s.failures);
        if let Some(at) = state
            .as_ref()
            .filter(|s| s.status != "delivered")
            .and_then(|s| s.next_attempt_at)
            && at > now_micros()
        {
            return Ok(Step::Until(at));
        }
        let body = match &item {
            Item::Event(event) => match self.render_event(tenant, subscription, event).await? {
                Some(body) => body,
                None => return Ok(Step::Continue),
            },
            Item::Call(call) => render::call_body(&call.payload, call.enqueued_at),
        };
        let master = self.shared.opened.vault().master();
        let secret = secrets::open(master, &self.tenant, &self.id, &stored.sealed_secret)?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = secret.sign(&message_id, timestamp, &body);
        drop(secret);
        let outcome = self
            .shared
            .client
            .send(Message {
                url: &subscription.url,
                id: &message_id,
                timestamp,
                signature: &signature,
                body,
            })
            .await;
        let at = now_micros();
        let mut attempt = Attempt {
            tenant: &self.tenant,
            webhook_id: &self.id,
            message_id: &message_id,
            source,
            position,
            event_id: &event_id,
            status: "delivered",
            failures: 0,
            last_status: outcome.status,
            last_error: outcome.error.as_deref(),
            latency_ms: outcome.latency_ms,
            at,
            next_attempt_at: None,
        };
        let mut tx = self.shared.db.begin().await?;
        if outcome.delivered() {
            tables::record_attempt(&mut tx, &attempt).await?;
            let moved = match &item {
                Item::Event(event) => {
                    tables::move_cursor(
                        &mut tx,
                        &self.tenant,
                        &self.id,
                        stored.epoch,
                        subscription.cursor,
                        event.position,
                    )
                    .await?
                }
                Item::Call(call) => calls::mark_delivered(&mut tx, &self.id, &call.call_id).await?,
            };
            if !moved {
                // A replay or another holder moved on meanwhile: read the state again.
                tx.rollback().await?;
                self.known = None;
                return Ok(Step::Continue);
            }
            tx.commit().await?;
            if let Item::Event(event) = &item {
                self.buffer.pop_front();
                self.known = Some((event.position, stored.epoch));
            }
            return Ok(Step::Continue);
        }
        let failures = failures.saturating_add(1);
        attempt.failures = failures;
        let unit = f64::from(random_u32()) / f64::from(u32::MAX);
        match schedule::retry_delay(failures, unit, self.shared.options.time_divisor) {
            Some(delay) => {
                attempt.status = "pending";
                attempt.next_attempt_at =
                    Some(at + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX / 2));
                tables::record_attempt(&mut tx, &attempt).await?;
                tx.commit().await?;
                tracing::info!(
                    webhook = %self.id,
                    message = %message_id,
                    failures,
                    error = outcome.error.as_deref().unwrap_or_default(),
                    "webhooks: delivery failed, will retry"
                );
                Ok(Step::Continue)
            }
            None => {
                attempt.status = "failed";
                tables::record_attempt(&mut tx, &attempt).await?;
                let reason = format!(
                    "{failures} attempts at {message_id} failed over the retry schedule; the \
                     last: {}",
                    outcome.error.as_deref().unwrap_or("unknown")
                );
                tables::disable(&mut tx, &self.tenant, &self.id, &reason).await?;
                tx.commit().await?;
                tracing::warn!(webhook = %self.id, %reason, "webhooks: subscription disabled");
                Ok(Step::Stop)
            }
        }
    }

    /// The event's body, read again from the log now. `None` when it is no longer readable
    /// (the lane reads its state again).
    async fn render_event(
        &mut self,
        tenant: &TenantId,
        subscription: &Subscription,
        event: &RecordedEvent,
    ) -> Result<Option<Vec<u8>>, WebhookError> {
        let fresh = if subscription.personal_data {
            self.shared
                .opened
                .read_positions(tenant, &[event.position])
                .await?
        } else {
            self.shared
                .sealed
                .read_positions(tenant, &[event.position])
                .await?
        };
        let Some(fresh) = fresh.into_iter().next() else {
            self.known = None;
            return Ok(None);
        };
        if subscription.personal_data {
            let data = render::data_of(&fresh);
            if render::carries_personal_data(&fresh.event_type, &data) {
                self.record_disclosure(tenant, &fresh).await?;
            }
        }
        Ok(Some(render::event_body(&fresh, subscription.personal_data)))
    }

    /// Records in the access log that this subscription receives the event's subject's
    /// personal fields in plain text (before sending; no record, no delivery).
    async fn record_disclosure(
        &self,
        tenant: &TenantId,
        event: &RecordedEvent,
    ) -> Result<(), WebhookError> {
        let subject = match subject_of_data(&event.stream_id, event.data.get()) {
            Some(subject) => subject,
            None => self.opening_subject(tenant, &event.stream_id).await?,
        };
        self.shared
            .db
            .execute(
                "INSERT INTO crm_access_log (at, tenant, key_id, subject, route) \
                 VALUES (?, ?, ?, ?, ?)",
                vec![
                    SqlValue::Int(now_micros()),
                    self.tenant.as_str().into(),
                    self.id.as_str().into(),
                    subject.into(),
                    "POST webhook delivery".into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The subject of a case or deal stream, from its opening event (else the entity).
    async fn opening_subject(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<String, WebhookError> {
        let opening = self
            .shared
            .sealed
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Boundary,
                1,
            )
            .await?;
        Ok(opening
            .first()
            .and_then(|e| subject_of_data(stream, e.data.get()))
            .unwrap_or_else(|| format!("{}:{}", stream.category(), stream.entity_id())))
    }
}

/// Whether the subscription takes the event: its type among the event types (or none
/// named) and every condition holding on its data (brought to the current schema version).
fn takes(subscription: &Subscription, event: &RecordedEvent) -> bool {
    if !subscription.event_types.is_empty()
        && !subscription
            .event_types
            .iter()
            .any(|t| t == &event.event_type)
    {
        return false;
    }
    if subscription.conditions.is_empty() {
        return true;
    }
    let data = render::data_of(event);
    let data = crm_core::catalog::upcast(&event.event_type, event.schema_version, data.clone())
        .unwrap_or(data);
    let metadata: Value = serde_json::from_str(event.metadata.get()).unwrap_or(Value::Null);
    all_hold(
        &subscription.conditions,
        &Subject {
            event_type: &event.event_type,
            stream: event.stream_id.as_str(),
            data: &data,
            metadata: &metadata,
        },
    )
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return u32::MAX / 2;
    }
    u32::from_le_bytes(bytes)
}
