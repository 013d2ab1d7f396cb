//! crm-automation: the workers that act on the log (issue 20). Webhook subscriptions and
//! their deliveries (`webhooks`), workflow rules and their worker (`workflows`). What to do is
//! decided by pure code in `crm_core::automation`; here is the I/O: tables beside the read
//! models, HTTP to subscribers, appends through the ingest decision.

pub mod error;
pub mod workflows;

pub use error::AutomationError;
pub mod webhooks;
