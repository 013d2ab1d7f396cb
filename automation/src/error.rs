//! What the automation workers and their queries fail with.

use crm_core::store::StoreError;
use crm_projections::ProjectionError;

#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// The tables beside the read models failed: retried from the checkpoint.
    #[error(transparent)]
    Db(#[from] ProjectionError),
    /// Reading the log failed: retried from the checkpoint.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending a rule's actions failed for a while (the store busy or down, a stream kept
    /// moving): retried from the checkpoint.
    #[error("{0}")]
    Append(String),
    /// Another worker moved the checkpoint or holds the lease: reload from the stored state.
    #[error("another worker moved the checkpoint or holds the lease")]
    Lost,
}
