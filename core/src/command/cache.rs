//! Folded stream states kept between batches, and per-stream turns.
//!
//! A batch holds the turns of its streams while it is checked and appended, so batches of
//! this process on the same stream take turns instead of racing (other processes are caught
//! by the append's expected revisions). The state of a stream is taken out while a batch
//! uses it and put back only when the batch's append succeeded.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use crate::aggregates::StreamState;
use crate::envelope::{StreamId, TenantId};

/// Streams whose state is kept before the cache starts over.
const CACHED_STREAMS: usize = 200_000;
/// Lock stripes.
const STRIPES: usize = 64;

/// Each stream's folded state and revision (`None`: the stream does not exist), as of the
/// last append or read by this process, and the per-stream turns.
#[derive(Debug)]
pub struct StreamCache {
    streams: Mutex<HashMap<(TenantId, StreamId), Folded>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for StreamCache {
    fn default() -> Self {
        StreamCache {
            streams: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

/// A stream's state and the revision it was folded to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Folded {
    pub(crate) revision: Option<u64>,
    pub(crate) state: StreamState,
}

impl StreamCache {
    /// Takes the turns of every stream of a batch, in stripe order (so never deadlocks).
    pub(crate) async fn turns(
        &self,
        tenant: &TenantId,
        streams: &[&StreamId],
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = streams
            .iter()
            .map(|stream| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                tenant.hash(&mut h);
                stream.hash(&mut h);
                (h.finish() % STRIPES as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            if let Some(lock) = self.stripes.get(stripe) {
                guards.push(lock.lock().await);
            }
        }
        guards
    }

    pub(crate) fn contains(&self, key: &(TenantId, StreamId)) -> bool {
        self.streams
            .lock()
            .is_ok_and(|streams| streams.contains_key(key))
    }

    /// Takes a stream's state out, without copying it.
    pub(crate) fn take(&self, key: &(TenantId, StreamId)) -> Option<Folded> {
        self.streams.lock().ok()?.remove(key)
    }

    pub(crate) fn put(&self, key: (TenantId, StreamId), folded: Folded) {
        if let Ok(mut streams) = self.streams.lock() {
            if streams.len() >= CACHED_STREAMS && !streams.contains_key(&key) {
                streams.clear();
            }
            streams.insert(key, folded);
        }
    }

    pub(crate) fn forget(&self, key: &(TenantId, StreamId)) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(key);
        }
    }
}
