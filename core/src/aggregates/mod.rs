//! Aggregates: the rules that decide which facts may be recorded, as pure `decide` and
//! `evolve` functions per stream category (customer, lead, opportunity, case).
//!
//! Each module has a `State` (its `Default` is "never seen"), a `Command` enum whose variants
//! carry the data of the fact they would record, `decide`, `evolve`, and `check`, which asks
//! whether a fact sent by an emitter may be appended now by mapping it to its command and
//! calling `decide`, so every rule lives in exactly one place. `evolve` never rejects: it
//! folds facts already in the log, even ones today's rules would refuse.

pub mod case;
pub mod customer;
pub mod lead;
pub mod opportunity;

use crate::catalog::DomainEvent;
use crate::ids::EntityId;

/// A command or fact that breaks an aggregate's rules, e.g.
/// `opportunity op-5 cannot be won: it was lost`.
///
/// Callers reject the request as a conflict with the current state (HTTP 409 or 422) and show
/// the message; retrying the same request cannot succeed until the state changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{category} {entity_id} cannot {action}: {reason}")]
pub struct RuleViolation {
    /// The stream category of the entity, e.g. `"opportunity"`.
    pub category: &'static str,
    pub entity_id: EntityId,
    /// What was attempted, phrased to follow "cannot", e.g. `"be won"`.
    pub action: String,
    /// Why it is not allowed now, e.g. `"it was lost"`.
    pub reason: String,
}

impl RuleViolation {
    pub(crate) fn new(
        category: &'static str,
        entity_id: &EntityId,
        action: impl Into<String>,
        reason: impl Into<String>,
    ) -> RuleViolation {
        RuleViolation {
            category,
            entity_id: entity_id.clone(),
            action: action.into(),
            reason: reason.into(),
        }
    }
}

/// Whether `new` may be appended to a stream whose past events are `state_events`.
///
/// Only past events of the same category and entity as `new` are folded, so a caller may pass
/// a whole stream or a mixed slice. Campaign events have no rules and are always accepted.
pub fn check(state_events: &[DomainEvent], new: &DomainEvent) -> Result<(), RuleViolation> {
    let same_entity = state_events
        .iter()
        .filter(|event| event.category() == new.category() && event.entity_id() == new.entity_id());
    match new {
        DomainEvent::CustomerRegistered(_)
        | DomainEvent::CustomerProfileUpdated(_)
        | DomainEvent::CustomerConsentChanged(_)
        | DomainEvent::InteractionLogged(_)
        | DomainEvent::OrderPlaced(_)
        | DomainEvent::OrderRefunded(_)
        | DomainEvent::CustomerMerged(_)
        | DomainEvent::CustomerErased(_) => {
            let state = same_entity.fold(customer::State::default(), customer::evolve);
            customer::check(&state, new)
        }
        DomainEvent::LeadCaptured(_)
        | DomainEvent::LeadQualified(_)
        | DomainEvent::LeadDisqualified(_)
        | DomainEvent::LeadConverted(_) => {
            let state = same_entity.fold(lead::State::default(), lead::evolve);
            lead::check(&state, new)
        }
        DomainEvent::OpportunityOpened(_)
        | DomainEvent::OpportunityStageChanged(_)
        | DomainEvent::OpportunityUpdated(_)
        | DomainEvent::OpportunityWon(_)
        | DomainEvent::OpportunityLost(_) => {
            let state = same_entity.fold(opportunity::State::default(), opportunity::evolve);
            opportunity::check(&state, new)
        }
        DomainEvent::CaseOpened(_)
        | DomainEvent::CaseAssigned(_)
        | DomainEvent::CaseResponded(_)
        | DomainEvent::CaseEscalated(_)
        | DomainEvent::CaseResolved(_)
        | DomainEvent::CaseReopened(_)
        | DomainEvent::CaseClosed(_) => {
            let state = same_entity.fold(case::State::default(), case::evolve);
            case::check(&state, new)
        }
        DomainEvent::CampaignLaunched(_)
        | DomainEvent::CampaignMemberAdded(_)
        | DomainEvent::CampaignMemberResponded(_) => Ok(()),
    }
}

/// Rejects a command addressed to another entity than the one the state was folded from, and
/// commands whose data breaks the catalog's value rules (built in code, not parsed).
pub(crate) fn check_target_and_data(
    category: &'static str,
    state_id: Option<&EntityId>,
    event: &DomainEvent,
    action: &str,
) -> Result<(), RuleViolation> {
    let target = event.entity_id();
    if let Some(state_id) = state_id.filter(|id| *id != target) {
        return Err(RuleViolation::new(
            category,
            target,
            action,
            format!("this state belongs to {category} {state_id}"),
        ));
    }
    event
        .validate()
        .map_err(|e| RuleViolation::new(category, target, action, e.to_string()))
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
