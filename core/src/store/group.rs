//! Group commit: appends that arrive while the writer is busy wait in a queue, and whoever
//! takes the writer next writes every waiting append in one transaction, each judged on its
//! own (one refused append fails only itself), then answers each caller.
//!
//! There is no timer and no delay: a lone append is written at once, as before; appends
//! gather only while a commit is under way, so the more callers wait on the disk, the more
//! each commit carries (one fsync, one lock hold, one round trip for the whole group). Both
//! backends use it; each decides how a group is written (`postgres/append.rs`,
//! `sqlite/append.rs`).
//!
//! A caller joins the queue, then either receives its answer (another caller's group carried
//! its append) or takes the writer itself and writes what is waiting, its own append among
//! them. Answers are sent only once the group's transaction has committed or failed, so an
//! answer always tells what was stored.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::envelope::TenantId;
use crate::store::plan::Batch;
use crate::store::{BatchOutcome, StoreError};

/// Most events one group carries; a group always takes at least one append, however large.
pub(crate) const MAX_GROUP_EVENTS: usize = 4_096;

/// Most appends one group carries.
pub(crate) const MAX_GROUP_APPENDS: usize = 256;

/// An append waiting to be written, with where its answer goes.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub tenant: TenantId,
    pub batch: Batch,
    reply: oneshot::Sender<Result<BatchOutcome, StoreError>>,
}

impl Waiting {
    /// Sends the append's answer; a caller that went away no longer wants it.
    pub(crate) fn answer(self, answer: Result<BatchOutcome, StoreError>) {
        let _ = self.reply.send(answer);
    }
}

/// The appends waiting for the writer, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    waiting: Mutex<VecDeque<Waiting>>,
}

/// Where a queued append's answer arrives.
pub(crate) type Reply = oneshot::Receiver<Result<BatchOutcome, StoreError>>;

impl Queue {
    /// Queues an append; its answer arrives on the returned receiver.
    pub(crate) fn push(&self, tenant: TenantId, batch: Batch) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(Waiting {
            tenant,
            batch,
            reply,
        });
        answer
    }

    /// Takes the oldest waiting appends for one group: at least one (if any wait), then more
    /// while they fit within [`MAX_GROUP_EVENTS`] and [`MAX_GROUP_APPENDS`].
    pub(crate) fn take(&self) -> Vec<Waiting> {
        let mut waiting = self.lock();
        let mut group: Vec<Waiting> = Vec::new();
        let mut events = 0;
        while let Some(next) = waiting.front() {
            let size = next.batch.events.len();
            let fits = group.len() < MAX_GROUP_APPENDS && events + size <= MAX_GROUP_EVENTS;
            if !group.is_empty() && !fits {
                break;
            }
            events += size;
            group.extend(waiting.pop_front());
        }
        group
    }

    /// Puts a group that was not written back at the front of the queue, in its order.
    pub(crate) fn put_back(&self, group: Vec<Waiting>) {
        let mut waiting = self.lock();
        for append in group.into_iter().rev() {
            waiting.push_front(append);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        // A panic while holding this lock cannot leave the queue half-changed (each
        // operation is one push or pop), so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The answer of a caller whose group was abandoned before it was written (the writer's task
/// went away): nothing of it was stored by that group, so it may simply be tried again.
pub(crate) fn abandoned() -> StoreError {
    StoreError::Task("the append's group was abandoned before it was written".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{NewEvent, StreamId};
    use crate::store::{ExpectedRevision, StreamExpectation};

    fn batch(events: usize) -> Batch {
        let stream = StreamId::parse("s-1").expect("stream");
        let events = (0..events)
            .map(|i| {
                (
                    stream.clone(),
                    NewEvent::new("Noted", &serde_json::json!({ "i": i })),
                )
            })
            .collect();
        Batch::new(
            vec![StreamExpectation::new(stream, ExpectedRevision::Any)],
            events,
        )
        .expect("batch")
    }

    fn tenant() -> TenantId {
        TenantId::parse("t1").expect("tenant")
    }

    #[test]
    fn a_group_takes_waiting_appends_in_order_up_to_its_size() {
        let queue = Queue::default();
        let _a = queue.push(tenant(), batch(4_000));
        let _b = queue.push(tenant(), batch(96));
        let _c = queue.push(tenant(), batch(1));
        let first = queue.take();
        assert_eq!(
            first
                .iter()
                .map(|w| w.batch.events.len())
                .collect::<Vec<_>>(),
            vec![4_000, 96]
        );
        let second = queue.take();
        assert_eq!(second.len(), 1);
        assert!(queue.take().is_empty());
    }

    #[test]
    fn an_append_larger_than_a_group_is_taken_alone() {
        let queue = Queue::default();
        let _a = queue.push(tenant(), batch(5_000));
        let _b = queue.push(tenant(), batch(1));
        assert_eq!(queue.take().len(), 1);
        assert_eq!(queue.take().len(), 1);
    }

    #[test]
    fn a_group_holds_at_most_its_number_of_appends() {
        let queue = Queue::default();
        let _replies: Vec<Reply> = (0..MAX_GROUP_APPENDS + 3)
            .map(|_| queue.push(tenant(), batch(1)))
            .collect();
        assert_eq!(queue.take().len(), MAX_GROUP_APPENDS);
        assert_eq!(queue.take().len(), 3);
    }

    #[test]
    fn a_group_put_back_is_taken_first_in_its_order() {
        let queue = Queue::default();
        let _a = queue.push(tenant(), batch(1));
        let _b = queue.push(tenant(), batch(2));
        let group = queue.take();
        let _c = queue.push(tenant(), batch(3));
        queue.put_back(group);
        let sizes: Vec<usize> = queue.take().iter().map(|w| w.batch.events.len()).collect();
        assert_eq!(sizes, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn each_caller_gets_its_own_answer() {
        let queue = Queue::default();
        let a = queue.push(tenant(), batch(1));
        let b = queue.push(tenant(), batch(2));
        let mut group = queue.take();
        let second = group.pop().expect("b");
        let first = group.pop().expect("a");
        second.answer(Err(StoreError::InvalidInput("b".into())));
        first.answer(Err(StoreError::InvalidInput("a".into())));
        let a = a.await.expect("answered").expect_err("a's answer");
        let b = b.await.expect("answered").expect_err("b's answer");
        assert_eq!(a.to_string(), "invalid append: a");
        assert_eq!(b.to_string(), "invalid append: b");
    }
}
