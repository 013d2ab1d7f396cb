//! The bounded edge: what one client, one key or one connection may cost the server.
//!
//! - [`server`]: the accept loop. A header-read timeout, an idle timeout (a connection that
//!   has sent nothing, or idles between requests, is closed), and a connection limit below the
//!   process's descriptor limit ([`fds`]); at the limit the oldest idle connection is closed
//!   to make room, so `/healthz` and new clients still get in.
//! - [`json`]: request bodies are scanned before they are parsed: nesting depth and the memory
//!   the parsed tree would take (a small multiple of the body's size) are bounded.
//! - [`rate`]: a token bucket per key (429 with `Retry-After`).
//! - [`streams`]: a cap on each key's open live streams (429 beyond it), and the end of a live
//!   stream once its key is revoked (within the key-cache period).
//!
//! Metric labels are bounded in [`crate::metrics`] (known methods, route templates).

pub mod fds;
pub mod json;
pub mod rate;
pub mod server;
pub mod streams;

use rate::RateLimiter;
use streams::LiveSlots;

use crate::app::Limits;

/// The per-key guards handlers share (in [`crate::app::AppState`]).
#[derive(Debug)]
pub struct Guards {
    pub rate: RateLimiter,
    pub live: LiveSlots,
}

impl Guards {
    pub fn new(limits: &Limits) -> Guards {
        Guards {
            rate: RateLimiter::new(limits.rate_per_second, limits.rate_burst),
            live: LiveSlots::new(limits.live_streams_per_key),
        }
    }
}
