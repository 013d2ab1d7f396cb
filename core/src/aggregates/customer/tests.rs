//! Given/when/then tests of the customer rules.

use crate::aggregates::customer::{Command, State, check_account, decide, evolve};
use crate::aggregates::testing::{self, id};
use crate::catalog::DomainEvent;
use crate::catalog::customer::{
    ContactLinked, ContactUnlinked, CustomerConsentChanged, CustomerErased, CustomerMerged,
    CustomerProfileUpdated, CustomerRegistered, InteractionLogged, OrderPlaced, OrderRefunded,
};
use crate::catalog::values::{
    ConsentChannel, ConsentPurpose, CustomerKind, Direction, InteractionChannel,
};
use crate::money::Money;

testing::decider!(Customer);

fn registered() -> CustomerRegistered {
    CustomerRegistered {
        customer_id: id("c-42"),
        kind: CustomerKind::Person,
        name: "Ada Lovelace".into(),
        email: Some("ada@example.com".into()),
        phone: None,
        segment: None,
        owner: None,
    }
}

fn profile_updated() -> CustomerProfileUpdated {
    CustomerProfileUpdated {
        customer_id: id("c-42"),
        name: None,
        email: Some("ada@king.example".into()),
        phone: None,
        segment: None,
        owner: None,
    }
}

fn consent() -> CustomerConsentChanged {
    CustomerConsentChanged {
        customer_id: id("c-42"),
        channel: ConsentChannel::Email,
        purpose: ConsentPurpose::Marketing,
        granted: false,
    }
}

fn interaction(interaction_id: &str) -> InteractionLogged {
    InteractionLogged {
        customer_id: id("c-42"),
        interaction_id: id(interaction_id),
        channel: InteractionChannel::Phone,
        direction: Direction::Inbound,
        subject: Some("Billing question".into()),
        summary: None,
        purpose: None,
    }
}

fn order(order_id: &str, amount: &str, currency: &str) -> OrderPlaced {
    OrderPlaced {
        customer_id: id("c-42"),
        order_id: id(order_id),
        amount: Money::parse(amount, currency).unwrap(),
        lines: Vec::new(),
        discount: None,
    }
}

fn refund(order_id: &str, amount: &str, currency: &str) -> OrderRefunded {
    OrderRefunded {
        customer_id: id("c-42"),
        order_id: id(order_id),
        amount: Money::parse(amount, currency).unwrap(),
        reason: None,
    }
}

fn merged_into(into: &str) -> CustomerMerged {
    CustomerMerged {
        customer_id: id("c-42"),
        into_customer_id: id(into),
    }
}

fn erased() -> CustomerErased {
    CustomerErased {
        customer_id: id("c-42"),
    }
}

#[test]
fn a_new_customer_can_be_registered() {
    given(vec![])
        .when(Command::RegisterCustomer(registered()))
        .then(vec![DomainEvent::CustomerRegistered(registered())]);
}

#[test]
fn a_customer_accepts_events_before_registration_and_can_register_afterwards() {
    given(vec![])
        .when(Command::PlaceOrder(order("o-1", "11.77", "USD")))
        .then(vec![DomainEvent::OrderPlaced(order("o-1", "11.77", "USD"))]);
    given(vec![])
        .when(Command::UpdateCustomerProfile(profile_updated()))
        .then(vec![DomainEvent::CustomerProfileUpdated(profile_updated())]);
    given(vec![DomainEvent::InteractionLogged(interaction("i-1"))])
        .when(Command::RegisterCustomer(registered()))
        .then(vec![DomainEvent::CustomerRegistered(registered())]);
}

#[test]
fn registering_a_customer_twice_is_rejected() {
    given(vec![DomainEvent::CustomerRegistered(registered())])
        .when(Command::RegisterCustomer(registered()))
        .then_rejected("customer c-42 cannot be registered: it is already registered");
}

#[test]
fn an_interaction_id_is_logged_only_once() {
    given(vec![DomainEvent::InteractionLogged(interaction("i-9"))])
        .when(Command::LogInteraction(interaction("i-10")))
        .then(vec![DomainEvent::InteractionLogged(interaction("i-10"))]);
    given(vec![DomainEvent::InteractionLogged(interaction("i-9"))])
        .when(Command::LogInteraction(interaction("i-9")))
        .then_rejected("cannot log interaction i-9: interaction i-9 was already logged");
}

#[test]
fn an_order_id_is_placed_only_once_per_customer() {
    given(vec![DomainEvent::OrderPlaced(order("o-1", "5", "USD"))])
        .when(Command::PlaceOrder(order("o-1", "5", "USD")))
        .then_rejected("cannot place order o-1: order o-1 was already placed");
}

#[test]
fn an_order_may_be_free_but_not_negative_and_a_free_order_cannot_be_refunded() {
    given(vec![])
        .when(Command::PlaceOrder(order("o-1", "-1", "USD")))
        .then_rejected("negative");
    given(vec![])
        .when(Command::PlaceOrder(order("o-1", "0", "USD")))
        .then(vec![DomainEvent::OrderPlaced(order("o-1", "0", "USD"))]);
    given(vec![DomainEvent::OrderPlaced(order("o-1", "0", "USD"))])
        .when(Command::RefundOrder(refund("o-1", "0.01", "USD")))
        .then_rejected("refunds would total 0.01 USD, more than the order's 0.00 USD");
    given(vec![DomainEvent::OrderPlaced(order("o-1", "5", "USD"))])
        .when(Command::RefundOrder(refund("o-1", "-1", "USD")))
        .then_rejected("amount must be greater than zero");
}

#[test]
fn a_refund_needs_an_order_placed_by_this_customer() {
    given(vec![])
        .when(Command::RefundOrder(refund("o-1", "1", "USD")))
        .then_rejected("cannot refund order o-1: order o-1 was never placed for this customer");
}

#[test]
fn a_refund_must_be_in_the_currency_of_its_order() {
    given(vec![DomainEvent::OrderPlaced(order("o-1", "10", "USD"))])
        .when(Command::RefundOrder(refund("o-1", "1", "EUR")))
        .then_rejected("the refund is in EUR but the order is in USD");
}

#[test]
fn refunds_may_add_up_to_the_order_amount_but_not_beyond() {
    let history = vec![
        DomainEvent::OrderPlaced(order("o-1", "11.77", "USD")),
        DomainEvent::OrderRefunded(refund("o-1", "10.00", "USD")),
    ];
    given(history.clone())
        .when(Command::RefundOrder(refund("o-1", "1.77", "USD")))
        .then(vec![DomainEvent::OrderRefunded(refund(
            "o-1", "1.77", "USD",
        ))]);
    given(history)
        .when(Command::RefundOrder(refund("o-1", "1.78", "USD")))
        .then_rejected("refunds would total 11.78 USD, more than the order's 11.77 USD");
}

#[test]
fn a_customer_cannot_be_merged_into_itself() {
    given(vec![DomainEvent::CustomerRegistered(registered())])
        .when(Command::MergeCustomer(merged_into("c-42")))
        .then_rejected("customer c-42 cannot be merged into customer c-42: a customer cannot be merged into itself");
    given(vec![DomainEvent::CustomerRegistered(registered())])
        .when(Command::MergeCustomer(merged_into("c-7")))
        .then(vec![DomainEvent::CustomerMerged(merged_into("c-7"))]);
}

#[test]
fn a_merged_away_customer_accepts_no_further_events() {
    let history = vec![DomainEvent::CustomerMerged(merged_into("c-7"))];
    let commands = [
        Command::RegisterCustomer(registered()),
        Command::UpdateCustomerProfile(profile_updated()),
        Command::ChangeConsent(consent()),
        Command::LogInteraction(interaction("i-1")),
        Command::PlaceOrder(order("o-1", "1", "USD")),
        Command::MergeCustomer(merged_into("c-8")),
    ];
    for command in commands {
        given(history.clone())
            .when(command)
            .then_rejected("it was merged into customer c-7");
    }
}

#[test]
fn a_merged_away_customer_can_still_be_erased() {
    given(vec![DomainEvent::CustomerMerged(merged_into("c-7"))])
        .when(Command::EraseCustomer(erased()))
        .then(vec![DomainEvent::CustomerErased(erased())]);
}

#[test]
fn an_erased_customer_accepts_no_events_carrying_personal_data() {
    let history = vec![
        DomainEvent::CustomerRegistered(registered()),
        DomainEvent::CustomerErased(erased()),
    ];
    for command in [
        Command::RegisterCustomer(registered()),
        Command::UpdateCustomerProfile(profile_updated()),
        Command::LogInteraction(interaction("i-1")),
        Command::MergeCustomer(merged_into("c-7")),
    ] {
        given(history.clone())
            .when(command)
            .then_rejected("it was erased");
    }
}

#[test]
fn an_erased_customer_still_accepts_orders_refunds_and_consent_changes() {
    let history = vec![
        DomainEvent::OrderPlaced(order("o-1", "10", "USD")),
        DomainEvent::CustomerErased(erased()),
    ];
    given(history.clone())
        .when(Command::PlaceOrder(order("o-2", "3", "USD")))
        .then(vec![DomainEvent::OrderPlaced(order("o-2", "3", "USD"))]);
    given(history.clone())
        .when(Command::RefundOrder(refund("o-1", "10", "USD")))
        .then(vec![DomainEvent::OrderRefunded(refund("o-1", "10", "USD"))]);
    given(history)
        .when(Command::ChangeConsent(consent()))
        .then(vec![DomainEvent::CustomerConsentChanged(consent())]);
}

#[test]
fn erasing_a_customer_twice_is_rejected() {
    given(vec![DomainEvent::CustomerErased(erased())])
        .when(Command::EraseCustomer(erased()))
        .then_rejected("customer c-42 cannot be erased: it was already erased");
}

#[test]
fn a_command_for_another_customer_is_rejected() {
    let mut other = order("o-1", "1", "USD");
    other.customer_id = id("c-43");
    let state = evolve(
        State::default(),
        &DomainEvent::CustomerRegistered(registered()),
    );
    let err = decide(&state, Command::PlaceOrder(other)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "customer c-43 cannot place order o-1: this state belongs to customer c-42"
    );
}

#[test]
fn evolving_ignores_events_of_other_categories() {
    let won = DomainEvent::parse(
        "OpportunityWon",
        &serde_json::json!({"opportunity_id": "op-5"}),
    );
    assert_eq!(evolve(State::default(), &won.unwrap()), State::default());
}

fn linked(account: &str, role: &str) -> ContactLinked {
    ContactLinked {
        customer_id: id("c-42"),
        account_id: id(account),
        role: role.into(),
    }
}

fn unlinked(account: &str) -> ContactUnlinked {
    ContactUnlinked {
        customer_id: id("c-42"),
        account_id: id(account),
    }
}

#[test]
fn a_registered_person_can_be_linked_moved_and_unlinked() {
    let person = DomainEvent::CustomerRegistered(registered());
    given(vec![person.clone()])
        .when(Command::LinkContact(linked("acme", "buyer")))
        .then(vec![DomainEvent::ContactLinked(linked("acme", "buyer"))]);
    let at_acme = vec![
        person.clone(),
        DomainEvent::ContactLinked(linked("acme", "buyer")),
    ];
    given(at_acme.clone())
        .when(Command::LinkContact(linked("acme", "buyer")))
        .then_rejected(
            "customer c-42 cannot be linked to account acme: it is already a contact of account \
             acme as buyer",
        );
    // Another role changes it; another account moves the contact.
    given(at_acme.clone())
        .when(Command::LinkContact(linked("acme", "billing")))
        .then(vec![DomainEvent::ContactLinked(linked("acme", "billing"))]);
    given(at_acme.clone())
        .when(Command::LinkContact(linked("globex", "buyer")))
        .then(vec![DomainEvent::ContactLinked(linked("globex", "buyer"))]);
    let mut moved = at_acme.clone();
    moved.push(DomainEvent::ContactLinked(linked("globex", "buyer")));
    given(moved)
        .when(Command::UnlinkContact(unlinked("acme")))
        .then_rejected("customer c-42 cannot be unlinked from account acme: it is not a contact of account acme");
    given(at_acme)
        .when(Command::UnlinkContact(unlinked("acme")))
        .then(vec![DomainEvent::ContactUnlinked(unlinked("acme"))]);
}

#[test]
fn only_a_registered_person_not_erased_can_be_a_contact() {
    given(vec![])
        .when(Command::LinkContact(linked("acme", "buyer")))
        .then_rejected("it is not registered: only a registered person can be a contact");
    let mut company = registered();
    company.kind = CustomerKind::Company;
    given(vec![DomainEvent::CustomerRegistered(company)])
        .when(Command::LinkContact(linked("acme", "buyer")))
        .then_rejected("it is a company: only a person can be a contact");
    given(vec![
        DomainEvent::CustomerRegistered(registered()),
        DomainEvent::CustomerErased(erased()),
    ])
    .when(Command::LinkContact(linked("acme", "buyer")))
    .then_rejected("it was erased");
}

#[test]
fn an_account_must_be_a_registered_company_neither_merged_nor_erased() {
    let acme = id("acme");
    let fold = |events: Vec<DomainEvent>| events.iter().fold(State::default(), evolve);
    let mut company = registered();
    company.customer_id = acme.clone();
    company.kind = CustomerKind::Company;
    assert_eq!(
        check_account(&fold(vec![]), &acme),
        Err("account acme is not a registered customer".to_owned())
    );
    let mut person = registered();
    person.customer_id = acme.clone();
    assert_eq!(
        check_account(&fold(vec![DomainEvent::CustomerRegistered(person)]), &acme),
        Err("account acme is a person, not a company".to_owned())
    );
    let registered_company = DomainEvent::CustomerRegistered(company);
    assert_eq!(
        check_account(&fold(vec![registered_company.clone()]), &acme),
        Ok(())
    );
    let erasure = DomainEvent::CustomerErased(CustomerErased {
        customer_id: acme.clone(),
    });
    assert_eq!(
        check_account(&fold(vec![registered_company, erasure]), &acme),
        Err("account acme was erased".to_owned())
    );
}

fn nps(answer_id: &str) -> crate::catalog::customer::NpsAnswered {
    crate::catalog::customer::NpsAnswered {
        customer_id: id("c-42"),
        answer_id: id(answer_id),
        score: 9,
        comment: Some("Would recommend".into()),
    }
}

#[test]
fn an_nps_answer_is_recorded_once_and_never_for_an_erased_or_merged_customer() {
    given(vec![])
        .when(Command::AnswerNps(nps("a-1")))
        .then(vec![DomainEvent::NpsAnswered(nps("a-1"))]);
    given(vec![DomainEvent::NpsAnswered(nps("a-1"))])
        .when(Command::AnswerNps(nps("a-1")))
        .then_rejected("NPS answer a-1 was already recorded");
    given(vec![DomainEvent::NpsAnswered(nps("a-1"))])
        .when(Command::AnswerNps(nps("a-2")))
        .then(vec![DomainEvent::NpsAnswered(nps("a-2"))]);
    given(vec![DomainEvent::CustomerErased(erased())])
        .when(Command::AnswerNps(nps("a-1")))
        .then_rejected("it was erased");
    given(vec![DomainEvent::CustomerMerged(merged_into("c-1"))])
        .when(Command::AnswerNps(nps("a-1")))
        .then_rejected("merged into customer c-1");
}
