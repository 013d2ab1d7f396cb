//! The customer aggregate: registration, profile, consent, interactions, orders and refunds,
//! merging and erasure on the `customer-<id>` stream.
//!
//! Rules:
//! - A customer may receive events before it is registered; it then exists with an empty
//!   profile, and a later registration fills it in. Registering twice is rejected.
//! - An interaction id is logged once per customer, and an order id placed once.
//! - Order amounts are zero or more, refund amounts positive. A refund needs an order of this
//!   customer, in the same currency, and all refunds of an order together may not exceed its
//!   amount (so a zero-value order cannot be refunded).
//! - A customer cannot be merged into itself. A merged-away customer accepts no further
//!   events, except erasure: a duplicate's personal data must still be erasable.
//! - An erased customer accepts no further events carrying personal data (registration,
//!   profile updates, interactions), nor a merge; consent changes, orders and refunds still
//!   work so revenue stays correct. Erasing twice is rejected.
//! - Only a registered person can be a contact of an account (`ContactLinked`), not while
//!   merged away or erased; linking again to the same account with the same role is
//!   rejected (another role changes it, another account moves the contact). Unlinking needs
//!   the link. The account itself is another stream: [`check_account`] judges it, and the
//!   ingest ([`crate::command`]) folds the account's stream to call it.

use std::collections::{BTreeMap, BTreeSet};

use crate::aggregates::{RuleViolation, check_target_and_data};
use crate::catalog::DomainEvent;
use crate::catalog::customer::{
    ContactLinked, ContactUnlinked, CustomerConsentChanged, CustomerErased, CustomerMerged,
    CustomerProfileUpdated, CustomerRegistered, InteractionLogged, NpsAnswered, OrderPlaced,
    OrderRefunded,
};
use crate::catalog::values::{ConsentChannel, ConsentPurpose, CustomerKind};
use crate::ids::EntityId;
use crate::money::Money;

const CATEGORY: &str = "customer";

/// What the rules need to know about one customer; `Default` is a customer never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The customer's id, once any event was seen.
    pub customer_id: Option<EntityId>,
    pub registered: bool,
    pub merged_into: Option<EntityId>,
    pub erased: bool,
    pub interaction_ids: BTreeSet<EntityId>,
    pub orders: BTreeMap<EntityId, Order>,
    /// The kind given at registration.
    pub kind: Option<CustomerKind>,
    /// The account (company customer) this person is a contact of now, and the role.
    pub account: Option<(EntityId, String)>,
    /// The latest consent decision per channel and purpose: granted or withdrawn.
    pub consents: BTreeMap<(ConsentChannel, ConsentPurpose), bool>,
    /// The NPS answers recorded, by answer id.
    pub nps_answer_ids: BTreeSet<EntityId>,
}

/// An order and how much of it was refunded so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub amount: Money,
    pub refunded: Money,
}

/// What can be asked of a customer; each carries the data of the fact it would record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    RegisterCustomer(CustomerRegistered),
    UpdateCustomerProfile(CustomerProfileUpdated),
    ChangeConsent(CustomerConsentChanged),
    LogInteraction(InteractionLogged),
    PlaceOrder(OrderPlaced),
    RefundOrder(OrderRefunded),
    MergeCustomer(CustomerMerged),
    EraseCustomer(CustomerErased),
    LinkContact(ContactLinked),
    UnlinkContact(ContactUnlinked),
    AnswerNps(NpsAnswered),
}

impl Command {
    /// The fact the command records when accepted.
    pub fn to_event(&self) -> DomainEvent {
        match self.clone() {
            Command::RegisterCustomer(data) => DomainEvent::CustomerRegistered(data),
            Command::UpdateCustomerProfile(data) => DomainEvent::CustomerProfileUpdated(data),
            Command::ChangeConsent(data) => DomainEvent::CustomerConsentChanged(data),
            Command::LogInteraction(data) => DomainEvent::InteractionLogged(data),
            Command::PlaceOrder(data) => DomainEvent::OrderPlaced(data),
            Command::RefundOrder(data) => DomainEvent::OrderRefunded(data),
            Command::MergeCustomer(data) => DomainEvent::CustomerMerged(data),
            Command::EraseCustomer(data) => DomainEvent::CustomerErased(data),
            Command::LinkContact(data) => DomainEvent::ContactLinked(data),
            Command::UnlinkContact(data) => DomainEvent::ContactUnlinked(data),
            Command::AnswerNps(data) => DomainEvent::NpsAnswered(data),
        }
    }

    /// The command that would record `event`, if it is a customer event.
    pub fn from_event(event: &DomainEvent) -> Option<Command> {
        Some(match event.clone() {
            DomainEvent::CustomerRegistered(data) => Command::RegisterCustomer(data),
            DomainEvent::CustomerProfileUpdated(data) => Command::UpdateCustomerProfile(data),
            DomainEvent::CustomerConsentChanged(data) => Command::ChangeConsent(data),
            DomainEvent::InteractionLogged(data) => Command::LogInteraction(data),
            DomainEvent::OrderPlaced(data) => Command::PlaceOrder(data),
            DomainEvent::OrderRefunded(data) => Command::RefundOrder(data),
            DomainEvent::CustomerMerged(data) => Command::MergeCustomer(data),
            DomainEvent::CustomerErased(data) => Command::EraseCustomer(data),
            DomainEvent::ContactLinked(data) => Command::LinkContact(data),
            DomainEvent::ContactUnlinked(data) => Command::UnlinkContact(data),
            DomainEvent::NpsAnswered(data) => Command::AnswerNps(data),
            _ => return None,
        })
    }

    /// What the command attempts, phrased to follow "cannot".
    fn action(&self) -> String {
        match self {
            Command::RegisterCustomer(_) => "be registered".to_owned(),
            Command::UpdateCustomerProfile(_) => "have its profile updated".to_owned(),
            Command::ChangeConsent(_) => "change consent".to_owned(),
            Command::LogInteraction(data) => format!("log interaction {}", data.interaction_id),
            Command::PlaceOrder(data) => format!("place order {}", data.order_id),
            Command::RefundOrder(data) => format!("refund order {}", data.order_id),
            Command::MergeCustomer(data) => {
                format!("be merged into customer {}", data.into_customer_id)
            }
            Command::EraseCustomer(_) => "be erased".to_owned(),
            Command::LinkContact(data) => format!("be linked to account {}", data.account_id),
            Command::UnlinkContact(data) => {
                format!("be unlinked from account {}", data.account_id)
            }
            Command::AnswerNps(data) => format!("record NPS answer {}", data.answer_id),
        }
    }

    /// Whether the recorded fact carries personal data (refused after erasure).
    fn carries_personal_data(&self) -> bool {
        matches!(
            self,
            Command::RegisterCustomer(_)
                | Command::UpdateCustomerProfile(_)
                | Command::LogInteraction(_)
                | Command::AnswerNps(_)
        )
    }
}

/// Decides whether `command` may happen now and which facts it records.
pub fn decide(state: &State, command: Command) -> Result<Vec<DomainEvent>, RuleViolation> {
    let event = command.to_event();
    let action = command.action();
    check_target_and_data(CATEGORY, state.customer_id.as_ref(), &event, &action)?;
    let reject = |reason: String| {
        Err(RuleViolation::new(
            CATEGORY,
            event.entity_id(),
            &action,
            reason,
        ))
    };

    if let Some(into) = &state.merged_into
        && !matches!(command, Command::EraseCustomer(_))
    {
        return reject(format!("it was merged into customer {into}"));
    }
    if state.erased
        && (command.carries_personal_data()
            || matches!(command, Command::MergeCustomer(_) | Command::LinkContact(_)))
    {
        return reject("it was erased".to_owned());
    }
    match &command {
        Command::RegisterCustomer(_) if state.registered => {
            return reject("it is already registered".to_owned());
        }
        Command::LogInteraction(data) if state.interaction_ids.contains(&data.interaction_id) => {
            return reject(format!(
                "interaction {} was already logged",
                data.interaction_id
            ));
        }
        Command::AnswerNps(data) if state.nps_answer_ids.contains(&data.answer_id) => {
            return reject(format!(
                "NPS answer {} was already recorded",
                data.answer_id
            ));
        }
        Command::PlaceOrder(data) if state.orders.contains_key(&data.order_id) => {
            return reject(format!("order {} was already placed", data.order_id));
        }
        Command::RefundOrder(data) => {
            if let Err(reason) = check_refund(state, data) {
                return reject(reason);
            }
        }
        Command::MergeCustomer(data) if data.into_customer_id == data.customer_id => {
            return reject("a customer cannot be merged into itself".to_owned());
        }
        Command::EraseCustomer(_) if state.erased => {
            return reject("it was already erased".to_owned());
        }
        Command::LinkContact(data) => {
            if !state.registered {
                return reject(
                    "it is not registered: only a registered person can be a contact".to_owned(),
                );
            }
            if state.kind == Some(CustomerKind::Company) {
                return reject("it is a company: only a person can be a contact".to_owned());
            }
            if let Some((account, role)) = &state.account
                && *account == data.account_id
                && *role == data.role
            {
                return reject(format!(
                    "it is already a contact of account {account} as {role}"
                ));
            }
        }
        Command::UnlinkContact(data)
            if state.account.as_ref().map(|(a, _)| a) != Some(&data.account_id) =>
        {
            return reject(format!(
                "it is not a contact of account {}",
                data.account_id
            ));
        }
        _ => {}
    }
    Ok(vec![event])
}

fn check_refund(state: &State, refund: &OrderRefunded) -> Result<(), String> {
    let Some(order) = state.orders.get(&refund.order_id) else {
        return Err(format!(
            "order {} was never placed for this customer",
            refund.order_id
        ));
    };
    if refund.amount.currency != order.amount.currency {
        return Err(format!(
            "the refund is in {} but the order is in {}",
            refund.amount.currency, order.amount.currency
        ));
    }
    let total = order
        .refunded
        .checked_add(refund.amount)
        .map_err(|e| e.to_string())?;
    if total.minor_units > order.amount.minor_units {
        return Err(format!(
            "refunds would total {total}, more than the order's {}",
            order.amount
        ));
    }
    Ok(())
}

/// Whether the customer folded into `account` can be linked to as an account: a registered
/// company, not merged away nor erased. `Err` holds the reason, naming `account_id`.
pub fn check_account(account: &State, account_id: &EntityId) -> Result<(), String> {
    if !account.registered {
        return Err(format!("account {account_id} is not a registered customer"));
    }
    if account.kind != Some(CustomerKind::Company) {
        return Err(format!("account {account_id} is a person, not a company"));
    }
    if let Some(into) = &account.merged_into {
        return Err(format!(
            "account {account_id} was merged into customer {into}"
        ));
    }
    if account.erased {
        return Err(format!("account {account_id} was erased"));
    }
    Ok(())
}

/// Whether the fact `event` may be appended now; events of other categories are not this
/// aggregate's concern and pass.
pub fn check(state: &State, event: &DomainEvent) -> Result<(), RuleViolation> {
    match Command::from_event(event) {
        Some(command) => decide(state, command).map(drop),
        None => Ok(()),
    }
}

/// Applies a recorded fact; events of other categories leave the state unchanged.
pub fn evolve(mut state: State, event: &DomainEvent) -> State {
    if event.category() != CATEGORY {
        return state;
    }
    if state.customer_id.is_none() {
        state.customer_id = Some(event.entity_id().clone());
    }
    match event {
        DomainEvent::CustomerRegistered(data) => {
            state.registered = true;
            state.kind = Some(data.kind);
        }
        DomainEvent::ContactLinked(data) => {
            state.account = Some((data.account_id.clone(), data.role.clone()));
        }
        DomainEvent::ContactUnlinked(data)
            if state.account.as_ref().map(|(a, _)| a) == Some(&data.account_id) =>
        {
            state.account = None;
        }
        DomainEvent::InteractionLogged(data) => {
            state.interaction_ids.insert(data.interaction_id.clone());
        }
        DomainEvent::NpsAnswered(data) => {
            state.nps_answer_ids.insert(data.answer_id.clone());
        }
        DomainEvent::CustomerConsentChanged(data) => {
            state
                .consents
                .insert((data.channel, data.purpose), data.granted);
        }
        DomainEvent::OrderPlaced(data) => {
            state.orders.entry(data.order_id.clone()).or_insert(Order {
                amount: data.amount,
                refunded: Money::zero(data.amount.currency),
            });
        }
        DomainEvent::OrderRefunded(data) => {
            if let Some(order) = state.orders.get_mut(&data.order_id)
                && order.refunded.currency == data.amount.currency
            {
                order.refunded.minor_units = order
                    .refunded
                    .minor_units
                    .saturating_add(data.amount.minor_units);
            }
        }
        DomainEvent::CustomerMerged(data) => {
            state.merged_into = Some(data.into_customer_id.clone())
        }
        DomainEvent::CustomerErased(_) => state.erased = true,
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests;
