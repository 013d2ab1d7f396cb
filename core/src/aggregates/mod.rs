//! Aggregates: the rules that decide which facts may be recorded, as pure `decide` and
//! `evolve` functions per stream category (customer, lead, opportunity, case, task).
//!
//! Each module has a `State` (its `Default` is "never seen"), a `Command` enum whose variants
//! carry the data of the fact they would record, `decide`, `evolve`, and `check`, which asks
//! whether a fact sent by an emitter may be appended now by mapping it to its command and
//! calling `decide`, so every rule lives in exactly one place. `evolve` never rejects: it
//! folds facts already in the log, even ones today's rules would refuse.

pub mod case;
pub mod consent;
pub mod customer;
pub mod lead;
pub mod opportunity;
pub mod task;

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
    state_events
        .iter()
        .filter(|event| event.category() == new.category() && event.entity_id() == new.entity_id())
        .fold(StreamState::default(), StreamState::evolve)
        .check(new)
}

/// The folded state of one stream, whatever its category: what [`StreamState::check`] needs
/// to judge the stream's next event. Callers that append often (the HTTP API) keep it between
/// appends instead of re-reading the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StreamState {
    /// No event folded yet.
    #[default]
    New,
    Customer(customer::State),
    Lead(lead::State),
    Opportunity(opportunity::State),
    Case(case::State),
    Task(task::State),
    /// Campaign streams carry no rules of their own; the channel the campaign reaches its
    /// members on decides whose consent adding a customer needs.
    Campaign(Option<crate::catalog::values::ConsentChannel>),
    /// The tenant's consent settings (`settings-consent`): the regime in force.
    ConsentSettings(crate::catalog::values::ConsentRegime),
    /// The tenant's complaint settings (`settings-complaints`): the lists in force.
    ComplaintSettings(std::sync::Arc<crate::catalog::settings::ComplaintCategoriesSet>),
}

impl StreamState {
    /// Folds one more event of this stream. Never rejects (see the module documentation); an
    /// event of another category than the state's is ignored.
    pub fn evolve(self, event: &DomainEvent) -> StreamState {
        match (event.category(), self) {
            ("customer", StreamState::New) => {
                StreamState::Customer(customer::evolve(customer::State::default(), event))
            }
            ("customer", StreamState::Customer(state)) => {
                StreamState::Customer(customer::evolve(state, event))
            }
            ("lead", StreamState::New) => {
                StreamState::Lead(lead::evolve(lead::State::default(), event))
            }
            ("lead", StreamState::Lead(state)) => StreamState::Lead(lead::evolve(state, event)),
            ("opportunity", StreamState::New) => {
                StreamState::Opportunity(opportunity::evolve(opportunity::State::default(), event))
            }
            ("opportunity", StreamState::Opportunity(state)) => {
                StreamState::Opportunity(opportunity::evolve(state, event))
            }
            ("case", StreamState::New) => {
                StreamState::Case(case::evolve(case::State::default(), event))
            }
            ("case", StreamState::Case(state)) => StreamState::Case(case::evolve(state, event)),
            ("task", StreamState::New) => {
                StreamState::Task(task::evolve(task::State::default(), event))
            }
            ("task", StreamState::Task(state)) => StreamState::Task(task::evolve(state, event)),
            ("campaign", state) => match event {
                DomainEvent::CampaignLaunched(launched) => StreamState::Campaign(launched.channel),
                _ => match state {
                    StreamState::Campaign(channel) => StreamState::Campaign(channel),
                    _ => StreamState::Campaign(None),
                },
            },
            ("settings", state) => match event {
                DomainEvent::ConsentRegimeSet(set) => StreamState::ConsentSettings(set.regime),
                DomainEvent::ComplaintCategoriesSet(set) => {
                    StreamState::ComplaintSettings(std::sync::Arc::new(set.clone()))
                }
                _ => state,
            },
            (_, state) => state,
        }
    }

    /// The consent regime, for the state folded from `settings-consent` (`opt_in` when none
    /// was ever set).
    pub fn consent_regime(&self) -> crate::catalog::values::ConsentRegime {
        match self {
            StreamState::ConsentSettings(regime) => *regime,
            _ => crate::catalog::values::ConsentRegime::OptIn,
        }
    }

    /// The complaint lists in force, for the state folded from `settings-complaints` (none
    /// when never set).
    pub fn complaint_lists(&self) -> Option<&crate::catalog::settings::ComplaintCategoriesSet> {
        match self {
            StreamState::ComplaintSettings(lists) => Some(lists),
            _ => None,
        }
    }

    /// The channel of the campaign this state was folded from, once launched.
    pub fn campaign_channel(&self) -> Option<crate::catalog::values::ConsentChannel> {
        match self {
            StreamState::Campaign(channel) => *channel,
            _ => None,
        }
    }

    /// Whether `new` may be appended to the stream this state was folded from.
    pub fn check(&self, new: &DomainEvent) -> Result<(), RuleViolation> {
        match (new.category(), self) {
            ("customer", StreamState::Customer(state)) => customer::check(state, new),
            ("customer", _) => customer::check(&customer::State::default(), new),
            ("lead", StreamState::Lead(state)) => lead::check(state, new),
            ("lead", _) => lead::check(&lead::State::default(), new),
            ("opportunity", StreamState::Opportunity(state)) => opportunity::check(state, new),
            ("opportunity", _) => opportunity::check(&opportunity::State::default(), new),
            ("case", StreamState::Case(state)) => case::check(state, new),
            ("case", _) => case::check(&case::State::default(), new),
            ("task", StreamState::Task(state)) => task::check(state, new),
            ("task", _) => task::check(&task::State::default(), new),
            _ => Ok(()),
        }
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
