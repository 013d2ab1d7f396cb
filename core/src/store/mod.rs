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
mod group;
pub mod guards;
pub mod keys;
mod migrations;
mod open;
mod plan;
pub mod postgres;
pub mod sqlite;
mod subscription;
mod verify;

pub use error::{StoreError, sqlite_is_busy, sqlx_is_busy};
pub use open::{StoreUrl, open_store, open_store_read_only};
pub use subscription::{EventSubscription, subscribe_all};
pub use verify::{
    Finding, FindingKind, VerifyReport, at_or_after_break, verify, verify_log, verify_stream,
};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// One stream's expectation in a multi-stream append ([`EventStore::append_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamExpectation {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
}

impl StreamExpectation {
    pub fn new(stream: StreamId, expected: ExpectedRevision) -> Self {
        Self { stream, expected }
    }
}

/// The result of a multi-stream append ([`EventStore::append_batch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    /// One entry per event, in the order the events were given.
    pub events: Vec<AppendedEvent>,
    /// One entry per distinct stream, in order of the stream's first event in the call, each
    /// with that stream's events (in the order given).
    pub streams: Vec<AppendOutcome>,
    /// The highest position among the call's events (new or duplicate).
    pub last_position: Position,
}

impl BatchOutcome {
    /// The outcome of the call's one stream; refuses a batch that spans several.
    pub(crate) fn into_single_stream(self) -> Result<AppendOutcome, StoreError> {
        let mut streams = self.streams.into_iter();
        match (streams.next(), streams.next()) {
            (Some(outcome), None) => Ok(outcome),
            _ => Err(StoreError::Task(
                "a single-stream append did not report exactly one stream".into(),
            )),
        }
    }
}

/// Where a stored event is, as [`EventStore::find_events`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEventRef {
    pub stream_id: StreamId,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub revision: u64,
    pub position: Position,
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

impl StreamHead {
    /// A head as a backend reads it from `crm_streams`.
    pub(crate) fn stored(
        tenant: &TenantId,
        stream_id: String,
        revision: i64,
        hash: &[u8],
    ) -> Result<StreamHead, StoreError> {
        Ok(StreamHead {
            tenant: tenant.clone(),
            stream_id: StreamId::from_stored(stream_id),
            revision: revision as u64,
            hash: stored_hash(hash, 0)?,
        })
    }
}

/// Largest number of events one append call may carry, across all its streams.
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
    ///
    /// A batch of one stream: backends implement [`EventStore::append_batch`] only.
    async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let events = events
            .into_iter()
            .map(|event| (stream.clone(), event))
            .collect();
        let expectation = StreamExpectation::new(stream.clone(), expected);
        self.append_batch(tenant, vec![expectation], events)
            .await?
            .into_single_stream()
    }

    /// Appends events of several streams of one tenant atomically, in one transaction: all
    /// are stored or none. New events get gap-free positions in the order given, whatever
    /// their streams (`[A, B, A]` gets `p, p+1, p+2`, A's events revisions `n, n+1`).
    ///
    /// Each stream is treated as [`EventStore::append`] treats its one stream: its
    /// expectation (from `expectations`; [`ExpectedRevision::Any`] for a stream without one)
    /// is checked when it gets something new, its ids already stored are duplicates that store
    /// nothing, and an id stored with another type is [`StoreError::EventIdReused`]. Any
    /// stream failing its expectation fails the whole call with
    /// [`StoreError::WrongExpectedRevision`] for that stream (the first such, in the order of
    /// [`BatchOutcome::streams`]); a reused id is reported before any expectation.
    ///
    /// An expectation for a stream without events in the call **guards** the call: that
    /// stream is read in the call's transaction, and when the call writes anything new it
    /// must be where the expectation says, else the call fails with
    /// [`StoreError::WrongExpectedRevision`] naming it. So a decision that read another
    /// stream (a customer's consent before adding it to a campaign) can never be appended
    /// after that stream moved, whatever process moved it. Guard streams get no events and
    /// no entry in [`BatchOutcome::streams`].
    ///
    /// Refused as [`StoreError::InvalidInput`] before anything is read: an empty call, more
    /// than [`MAX_EVENTS_PER_APPEND`] events, an invalid event, an event id given twice
    /// (in any streams), or two expectations for one stream.
    async fn append_batch(
        &self,
        tenant: &TenantId,
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
    ) -> Result<BatchOutcome, StoreError>;

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

    /// Which of the given (stream, event id) pairs of `tenant` are stored, and where: what a
    /// caller needs to tell a replayed event from a new one before judging it. Pairs not
    /// stored are left out; the order is unspecified. At most [`MAX_EVENTS_PER_APPEND`] pairs.
    async fn find_events(
        &self,
        tenant: &TenantId,
        pairs: &[(StreamId, uuid::Uuid)],
    ) -> Result<Vec<StoredEventRef>, StoreError>;

    /// The recorded heads of these streams of `tenant`; streams that do not exist are left
    /// out, the order is unspecified. At most [`MAX_EVENTS_PER_APPEND`] streams.
    async fn stream_heads_of(
        &self,
        tenant: &TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<StreamHead>, StoreError>;

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
    ) -> Result<Option<StreamHead>, StoreError> {
        let heads = self
            .stream_heads_of(tenant, std::slice::from_ref(stream))
            .await?;
        Ok(heads.into_iter().next())
    }

    /// A receiver that changes whenever the head position may have moved, including appends
    /// by other processes (noticed within about a second). Subscriptions wait on it instead of
    /// polling.
    fn head_changes(&self) -> watch::Receiver<Position>;

    /// [`EventStore::append_batch`], with changes to the key table committed in the same
    /// transaction when the call writes anything new (see [`keys::KeyOps`]). Backends without
    /// a key table refuse non-empty changes.
    async fn append_batch_with_keys(
        &self,
        tenant: &TenantId,
        expectations: Vec<StreamExpectation>,
        events: Vec<(StreamId, NewEvent)>,
        keys: keys::KeyOps,
    ) -> Result<BatchOutcome, StoreError> {
        if !keys.is_empty() {
            return Err(StoreError::Config(
                "this store keeps no key table, so it cannot hold personal data".into(),
            ));
        }
        self.append_batch(tenant, expectations, events).await
    }

    /// The key table kept beside the log, if this backend has one.
    fn key_table(&self) -> Option<Arc<dyn keys::KeyTable>> {
        None
    }

    /// The store as written, when this handle transforms what it reads (see
    /// [`crate::privacy::PrivateStore`]); itself otherwise. Verification and stored-form
    /// exports read through it.
    fn stored(&self) -> Option<SharedStore> {
        None
    }
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

/// Refuses a `stream_heads_of` call asking for too many streams.
pub(crate) fn check_streams(streams: &[StreamId]) -> Result<(), StoreError> {
    if streams.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::InvalidInput(format!(
            "{} streams asked for in one call; at most {MAX_EVENTS_PER_APPEND}",
            streams.len()
        )));
    }
    Ok(())
}

/// Refuses a `find_events` call asking for too many pairs.
pub(crate) fn check_pairs(pairs: &[(StreamId, uuid::Uuid)]) -> Result<(), StoreError> {
    if pairs.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::InvalidInput(format!(
            "{} event ids asked for in one call; at most {MAX_EVENTS_PER_APPEND}",
            pairs.len()
        )));
    }
    Ok(())
}

/// A row limit as SQL wants it.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
