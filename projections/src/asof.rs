//! Any customer as of any past moment: the customer's timeline cut at a business time
//! (`occurred_at` ≤ T: what had happened by T), a recording time (`recorded_at` ≤ T: what the
//! CRM knew at T), or a log position, read back from the log and folded by the same pure
//! function the 360 projection uses.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::envelope::{Position, RecordedEvent, TenantId};
use crm_core::store::{EventStore, MAX_POSITIONS_PER_READ};

use crate::bookkeeping::{from_position, to_position};
use crate::customer360::{Customer360, CustomerView, RECENT_ENTRIES, fold_customer};
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;
use crate::event::{ProjectedEvent, TimelineEntry};
use crate::timeline;

/// Where to cut a customer's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Events that happened by then (business time).
    OccurredBy(DateTime<Utc>),
    /// Events the CRM had recorded by then (store time).
    RecordedBy(DateTime<Utc>),
    /// Events up to and including this position.
    Position(Position),
}

impl Cut {
    /// Whether `event` falls within the cut. A business-time cut keeps an event recorded late
    /// (backdated) that happened by then and leaves out one recorded early that happened
    /// later; a recording-time cut keeps exactly what the CRM knew then.
    pub fn contains(&self, event: &RecordedEvent) -> bool {
        match *self {
            Cut::OccurredBy(at) => event.occurred_at <= at,
            Cut::RecordedBy(at) => event.recorded_at <= at,
            Cut::Position(position) => event.position <= position,
        }
    }
}

/// A customer as of a past moment: its folded state and the last entries of its timeline
/// within the cut, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOf {
    pub state: Customer360,
    pub recent: Vec<TimelineEntry>,
}

impl AsOf {
    /// The 360 view, with time-dependent figures evaluated at `at` (for a business-time cut,
    /// the cut itself).
    pub fn view(&self, at: DateTime<Utc>) -> CustomerView {
        self.state.view(at, self.recent.clone())
    }
}

/// Whether `customer` was merged (directly or through other merges) into a customer erased
/// since: its keys went with the survivor's, as the live rows record.
pub async fn erased_with_survivor(
    db: &ReadDb,
    tenant: &str,
    customer: &str,
) -> Result<bool, ProjectionError> {
    let mut next = crate::customer360::get(db, tenant, customer)
        .await?
        .and_then(|live| live.merged_into);
    let mut seen = 0;
    while let Some(survivor) = next {
        let Some(live) = crate::customer360::get(db, tenant, &survivor).await? else {
            return Ok(false);
        };
        if live.erased_at.is_some() {
            return Ok(true);
        }
        seen += 1;
        if seen > 64 {
            return Ok(false);
        }
        next = live.merged_into;
    }
    Ok(false)
}

/// The customer's 360 state at `cut`, or `None` if no event of it falls within the cut. The
/// timeline read model must have reached the cut (for a position cut) or the present.
/// Personal fields of a customer erased since are blank, as in the live view.
pub async fn customer_as_of(
    store: &dyn EventStore,
    db: &ReadDb,
    tenant: &TenantId,
    customer: &str,
    cut: Cut,
) -> Result<Option<AsOf>, ProjectionError> {
    let (condition, bound) = match cut {
        Cut::OccurredBy(at) => ("occurred_at <= ?", SqlValue::Int(at.timestamp_micros())),
        Cut::RecordedBy(at) => ("recorded_at <= ?", SqlValue::Int(at.timestamp_micros())),
        Cut::Position(position) => ("position <= ?", from_position(position)),
    };
    let rows = db
        .fetch(
            &format!(
                "SELECT position FROM {} WHERE tenant = ? AND customer_id = ? AND {condition} \
                 ORDER BY position",
                timeline::TABLE
            ),
            vec![tenant.as_str().into(), customer.into(), bound],
            &[Col::Int],
        )
        .await?;
    let positions: Vec<Position> = rows
        .iter()
        .filter_map(|row| row[0].as_int().map(to_position))
        .collect();
    let mut events = Vec::with_capacity(positions.len());
    for chunk in positions.chunks(MAX_POSITIONS_PER_READ) {
        for recorded in store.read_positions(tenant, chunk).await? {
            events.push(Arc::new(ProjectedEvent::decode(recorded)?));
        }
    }
    let Some(mut state) = fold_customer(tenant.as_str(), customer, &events) else {
        return Ok(None);
    };
    let erased_since = db
        .fetch(
            &format!(
                "SELECT position FROM {} WHERE tenant = ? AND customer_id = ? \
                 AND event_type = 'CustomerErased' AND stream_id = ?",
                timeline::TABLE
            ),
            vec![
                tenant.as_str().into(),
                customer.into(),
                format!("customer-{customer}").into(),
            ],
            &[Col::Int],
        )
        .await?;
    let erased_with_survivor = erased_with_survivor(db, tenant.as_str(), customer).await?;
    if !erased_since.is_empty() || erased_with_survivor {
        state.name = None;
        state.email = None;
        state.phone = None;
    }
    let recent = events
        .iter()
        .rev()
        .take(RECENT_ENTRIES)
        .map(|e| e.timeline_entry())
        .collect();
    if let Some(what) = state.overflowing_total() {
        return Err(ProjectionError::TotalOverflow { what });
    }
    Ok(Some(AsOf { state, recent }))
}
