//! The event store: the [`EventStore`] trait every backend implements, the types of its
//! calls, and the backend-independent parts (append planning, hash chain, verification,
//! subscriptions).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId};

pub mod chain;
mod error;
mod migrations;
mod open;
mod plan;
pub mod postgres;
pub mod sqlite;
mod subscription;
mod verify;

pub use error::StoreError;
pub use open::{StoreUrl, open_store};
pub use subscription::{EventSubscription, subscribe_all};
pub use verify::{Finding, FindingKind, VerifyReport, verify, verify_stream};

/// What the caller believes about the stream before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedRevision {
    /// Append whatever the stream's state.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(u64),
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::StreamExists => f.write_str("stream exists"),
            ExpectedRevision::Exact(revision) => write!(f, "revision {revision}"),
        }
    }
}

/// Which tenants a log read covers. The API always reads one tenant; projection workers and
/// operators read them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    AllTenants,
    Tenant(TenantId),
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// Revision 0 forwards, or the last revision backwards.
    Boundary,
    /// This revision (inclusive).
    Revision(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// What happened to one event of an append call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendedEvent {
    pub event_id: uuid::Uuid,
    pub revision: u64,
    pub position: Position,
    /// True when this id was already stored: nothing new was written for it.
    pub duplicate: bool,
}

/// The result of an append call, in the order the events were given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendOutcome {
    pub stream_id: StreamId,
    pub events: Vec<AppendedEvent>,
    /// The stream's last revision after the call.
    pub stream_revision: u64,
    /// The highest position among the call's events (new or duplicate).
    pub last_position: Position,
}

/// A stream's head as the store records it: the anchor that verification compares the
/// chain's end against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub tenant: TenantId,
    pub stream_id: StreamId,
    pub revision: u64,
    pub hash: [u8; 32],
}

/// Largest number of events one append call may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;

/// Largest number of positions one `read_positions` call may ask for.
pub const MAX_POSITIONS_PER_READ: usize = 10_000;

/// An append-only, tenant-separated event log with optimistic concurrency per stream.
///
/// Every backend passes the same contract suite (`core/tests/store_contract.rs`).
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug + 'static {
    /// Appends `events` to `stream` atomically: all are stored or none.
    ///
    /// Event ids are idempotency keys within a stream: ids already stored in this stream are
    /// acknowledged as duplicates and store nothing (the same id in another stream is another
    /// event); when every id of the call is a duplicate the call
    /// succeeds without checking `expected`, so a retried append is safe. The expected
    /// revision is checked whenever something new is written.
    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Reads up to `limit` events of one stream from `start`, in the given direction.
    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        direction: Direction,
        start: StreamStart,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events with positions above `after`, in position order.
    async fn read_all(
        &self,
        scope: &Scope,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The events of `tenant` at the given positions, in position order; positions that hold
    /// no event of the tenant are left out. At most [`MAX_POSITIONS_PER_READ`] positions.
    async fn read_positions(
        &self,
        tenant: &TenantId,
        positions: &[Position],
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The highest position stored (0 for an empty log), across all tenants.
    async fn head_position(&self) -> Result<Position, StoreError>;

    /// Up to `limit` stream heads in (tenant, stream) order, after the given one.
    async fn stream_heads(
        &self,
        scope: &Scope,
        after: Option<(&TenantId, &StreamId)>,
        limit: usize,
    ) -> Result<Vec<StreamHead>, StoreError>;

    /// The recorded head of one stream, if it exists.
    async fn stream_head(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<StreamHead>, StoreError>;

    /// A receiver that changes whenever the head position may have moved, including appends
    /// by other processes (noticed within about a second). Subscriptions wait on it instead of
    /// polling.
    fn head_changes(&self) -> watch::Receiver<Position>;
}

/// A shared handle to any backend.
pub type SharedStore = Arc<dyn EventStore>;

/// Moves a head watch forward (never back), waking subscribers only when it moved.
pub(crate) fn advance_head(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|current| {
        let moved = position > *current;
        if moved {
            *current = position;
        }
        moved
    });
}

/// A stored hash column as a 32-byte array; anything else means the row was damaged.
pub(crate) fn stored_hash(bytes: &[u8], position: i64) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        position: position as Position,
        reason: format!("hash has {} bytes, not 32", bytes.len()),
    })
}

/// Refuses a `read_positions` call asking for too many positions.
pub(crate) fn check_positions(positions: &[Position]) -> Result<(), StoreError> {
    if positions.len() > MAX_POSITIONS_PER_READ {
        return Err(StoreError::Config(format!(
            "{} positions asked for in one read; at most {MAX_POSITIONS_PER_READ}",
            positions.len()
        )));
    }
    Ok(())
}

/// A row limit as SQL wants it.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
