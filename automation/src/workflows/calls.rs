//! A rule's webhook calls: queued for the subscription's delivery lane
//! (`crate::webhooks::enqueue_call`) in the transaction that records the run, with ids derived
//! like the rule's events, so a re-run queues nothing twice. A call to a subscription the
//! tenant does not have is not queued; the run's detail says so.

use crm_core::automation::rule::Plan;
use crm_projections::db::ReadTx;

use super::tables::Run;
use crate::AutomationError;
use crate::webhooks::{RuleCall, WebhookError, enqueue_call};

/// Queues `plan`'s calls; notes the calls that could not be queued in `run.detail`.
pub(crate) async fn enqueue(
    tx: &mut ReadTx,
    tenant: &str,
    run: &mut Run,
    plan: &Plan,
) -> Result<(), AutomationError> {
    let mut problems = Vec::new();
    for call in &plan.calls {
        let call_id = call.id.to_string();
        let queued = enqueue_call(
            tx,
            &RuleCall {
                tenant,
                webhook_id: &call.subscription,
                call_id: &call_id,
                payload: &call.payload,
                trigger_position: run.position,
                rule_id: &run.rule_id,
                rule_version: run.version,
            },
        )
        .await;
        match queued {
            Ok(_) => {}
            Err(
                WebhookError::NotFound(_) | WebhookError::Invalid { .. } | WebhookError::Limit(_),
            ) => {
                problems.push(format!(
                    "webhook {}: no such subscription of the tenant, or the call is refused; not queued",
                    call.subscription
                ));
            }
            Err(WebhookError::Database(error)) => return Err(error.into()),
            Err(WebhookError::Store(error)) => return Err(error.into()),
            Err(other) => return Err(AutomationError::Append(other.to_string())),
        }
    }
    if !problems.is_empty() {
        if !run.detail.is_empty() {
            run.detail.push_str("; ");
        }
        run.detail.push_str(&problems.join("; "));
    }
    Ok(())
}
