//! Webhook subscriptions and their signed, guaranteed deliveries (issue 20; `docs/automation.md`).
//!
//! - [`model`]: a subscription as callers write it (checked member by member) and read it.
//! - [`tables`]: the tables beside the read models (`crm_webhooks`, `crm_webhook_deliveries`,
//!   `crm_webhook_calls`), per tenant; the subscription's cursor, the delivery log.
//! - [`secrets`]: the signing secret, generated here and sealed under the master key.
//! - [`signing`]: Standard Webhooks ids and signatures.
//! - [`schedule`]: the retry schedule, pure.
//! - [`address`] and [`resolver`]: which addresses a delivery may dial (SSRF), on the address
//!   actually dialled; [`client`]: the HTTP client (no redirects, no proxy, timeouts, a small
//!   answer limit).
//! - [`render`]: a message's body, rendered from the log when it is sent.
//! - [`calls`]: rule calls queued by the workflow worker ([`enqueue_call`]).
//! - [`worker`] and [`lane`]: the delivery worker: one lease per store, one task per
//!   subscription, in log order, at least once.

pub mod address;
pub mod calls;
pub mod client;
pub mod lane;
pub mod manage;
pub mod model;
pub mod render;
pub mod resolver;
pub mod schedule;
pub mod secrets;
pub mod signing;
pub mod tables;
pub mod worker;

pub use calls::{RuleCall, enqueue_call};
pub use model::{NewSubscription, Patch, Status, Subscription};
pub use worker::{Hub, WorkerHandle, WorkerOptions, spawn};

use crm_core::privacy::PrivacyError;
use crm_core::store::StoreError;
use crm_projections::ProjectionError;

/// What the webhook layer refuses or fails with; the API maps it in `problem.rs`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A body member is invalid (422 naming it).
    #[error("{member}: {reason}")]
    Invalid { member: String, reason: String },
    /// No such subscription for this tenant (404).
    #[error("no webhook subscription {0}")]
    NotFound(String),
    /// A limit is reached (409).
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Database(#[from] ProjectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be sealed or opened.
    #[error("webhook secret: {0}")]
    Sealing(String),
    /// A stored row cannot be read back.
    #[error("a stored webhook row is unreadable: {0}")]
    Corrupt(String),
}

impl From<PrivacyError> for WebhookError {
    fn from(error: PrivacyError) -> Self {
        WebhookError::Sealing(error.to_string())
    }
}
