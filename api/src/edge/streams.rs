//! Live streams per key: at most `--live-streams-per-key` open at once (429 beyond), and each
//! ends once its key is no longer valid (revoked, or removed), noticed within the key-cache
//! period (`--key-cache-ms`): a live stream outlives no revocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;

use crate::app::AppState;
use crate::problem::Problem;

/// Open live streams by key id.
#[derive(Debug)]
pub struct LiveSlots {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open live stream of a key; the slot is given back when this is dropped.
#[derive(Debug)]
pub struct LiveSlot {
    key_id: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl LiveSlots {
    pub fn new(max_per_key: usize) -> LiveSlots {
        LiveSlots {
            max: max_per_key,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for one more live stream of `key_id`, or 429 if the key has its maximum open.
    pub fn acquire(&self, key_id: &str) -> Result<LiveSlot, Problem> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key_id.to_owned()).or_default();
        if *count >= self.max {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this key already has {} live streams open, the most allowed \
                     (--live-streams-per-key); close one first",
                    self.max
                ),
            )
            .with_header("retry-after", "1"));
        }
        *count += 1;
        Ok(LiveSlot {
            key_id: key_id.to_owned(),
            open: Arc::clone(&self.open),
        })
    }

    /// Live streams `key_id` has open.
    pub fn open(&self, key_id: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(key_id).copied().unwrap_or(0)
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

/// Completes once `key_id` is no longer a valid key: checked every half key-cache period
/// against what is at most half a period old, so a revocation ends the stream within the
/// period. A key table that does not answer is logged and asked again (a database hiccup does
/// not cut every stream).
pub async fn until_revoked(state: &AppState, key_id: &str) {
    let period = (state.keys.cache_ttl() / 2).max(std::time::Duration::from_millis(10));
    loop {
        tokio::time::sleep(period).await;
        match state.keys.is_active(key_id, period).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(key_id, "live event stream ended: the key was revoked");
                return;
            }
            Err(error) => tracing::warn!(%error, "live event stream: cannot read the key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_given_back_on_drop() {
        let slots = LiveSlots::new(2);
        let first = slots.acquire("a").expect("first");
        let _second = slots.acquire("a").expect("second");
        let refused = slots.acquire("a").expect_err("third");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(slots.acquire("b").is_ok(), "another key has its own slots");
        drop(first);
        assert_eq!(slots.open("a"), 1);
        assert!(slots.acquire("a").is_ok());
    }
}
