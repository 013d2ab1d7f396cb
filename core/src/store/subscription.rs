//! Subscriptions to the whole log: catch up from a position in batches, then wait for the
//! head to move (a watch channel fed by the backend's notifications) and read again. No busy
//! polling, and no event is skipped or delivered twice, because the position only advances
//! past events that were returned.
//!
//! While catching up, the read of the next batch starts on another task as soon as a full
//! batch is handed out, so the store decodes batch n+1 while the caller works on batch n (two
//! cores busy instead of one). A read in flight is keyed by the position it starts after and
//! is used only if that is still where the subscription stands.

use std::collections::VecDeque;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::envelope::{Position, RecordedEvent};
use crate::store::{Scope, SharedStore, StoreError};

/// Events read per round trip while catching up.
pub const DEFAULT_BATCH: usize = 1_000;

/// A subscription to the log after a position; see [`subscribe_all`].
#[derive(Debug)]
pub struct EventSubscription {
    store: SharedStore,
    scope: Scope,
    after: Position,
    batch: usize,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<Position>,
    /// The read of the batch after a position, started ahead of the caller's request.
    ahead: Option<(Position, ReadAhead)>,
}

/// A batch read running on its own task.
type ReadAhead = JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

impl Drop for EventSubscription {
    fn drop(&mut self) {
        if let Some((_, read)) = self.ahead.take() {
            read.abort();
        }
    }
}

/// Subscribes to every event of `scope` with a position above `after`: first those already
/// stored, then new ones as they are committed.
pub fn subscribe_all(store: SharedStore, scope: Scope, after: Position) -> EventSubscription {
    let head = store.head_changes();
    EventSubscription {
        store,
        scope,
        after,
        batch: DEFAULT_BATCH,
        buffer: VecDeque::new(),
        head,
        ahead: None,
    }
}

impl EventSubscription {
    /// Sets how many events are read per round trip.
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The position of the last event handed out (or the starting position).
    pub fn position(&self) -> Position {
        self.buffer
            .front()
            .map_or(self.after, |next| next.position.saturating_sub(1))
    }

    /// The next batch of events, waiting until at least one exists. Cancel-safe: dropping
    /// the future loses nothing.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        if !self.buffer.is_empty() {
            return Ok(self.buffer.drain(..).collect());
        }
        loop {
            // Mark the current head as seen before reading, so an append that lands after
            // the read wakes the wait below.
            self.head.borrow_and_update();
            let mut events = match self.ahead.take() {
                Some((after, read)) if after == self.after => match read.await {
                    Ok(events) => events?,
                    Err(error) => return Err(StoreError::Task(format!("read ahead: {error}"))),
                },
                stale => {
                    if let Some((_, read)) = stale {
                        read.abort();
                    }
                    Vec::new()
                }
            };
            if events.is_empty() {
                // Read (again) after marking the head: an empty answer from a read started
                // earlier could have missed an append the mark above already counted.
                events = self
                    .store
                    .read_all(&self.scope, self.after, self.batch)
                    .await?;
            }
            if let Some(last) = events.last() {
                self.after = last.position;
                if events.len() >= self.batch && tokio::runtime::Handle::try_current().is_ok() {
                    // Probably more to catch up on: start reading it now.
                    let (store, scope, after, batch) = (
                        self.store.clone(),
                        self.scope.clone(),
                        self.after,
                        self.batch,
                    );
                    self.ahead = Some((
                        after,
                        tokio::spawn(async move { store.read_all(&scope, after, batch).await }),
                    ));
                }
                return Ok(events);
            }
            self.head
                .changed()
                .await
                .map_err(|_| StoreError::Task("the store was closed".into()))?;
        }
    }

    /// The next event, waiting until one exists. Cancel-safe.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(event);
            }
            let batch = self.next_batch().await?;
            self.buffer.extend(batch);
        }
    }
}
