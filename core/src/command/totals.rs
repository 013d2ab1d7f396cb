//! Money totals the read models keep must fit their type. A customer's 360 view sums its
//! orders per currency (gross, refunded, net) in 64-bit minor units: an order whose amount
//! would bring the customer's gross in its currency past `i64::MAX` minor units is refused
//! at ingest (422 naming `data.amount`) instead of being summed into a wrapped or clipped
//! figure. Refunds need no check: together they never exceed their order (a rule).
//! Totals over many streams (a tenant's pipeline) are summed at query time by SQL, which
//! fails instead of wrapping; see `crm_projections::pipeline`.

use crate::aggregates::StreamState;
use crate::catalog::DomainEvent;
use crate::money::Money;

/// Whether `event` keeps every money total of its stream's state within range; else the
/// member at fault and why.
pub fn check(state: &StreamState, event: &DomainEvent) -> Result<(), (&'static str, String)> {
    let DomainEvent::OrderPlaced(order) = event else {
        return Ok(());
    };
    let placed = match state {
        StreamState::Customer(customer) => customer
            .orders
            .values()
            .map(|o| o.amount)
            .filter(|amount| amount.currency == order.amount.currency)
            .try_fold(0i64, |sum, amount| sum.checked_add(amount.minor_units)),
        StreamState::New
        | StreamState::Lead(_)
        | StreamState::Opportunity(_)
        | StreamState::Case(_)
        | StreamState::Task(_)
        | StreamState::Campaign(_)
        | StreamState::ConsentSettings(_)
        | StreamState::ComplaintSettings(_) => Some(0),
    };
    match placed.and_then(|sum| sum.checked_add(order.amount.minor_units)) {
        Some(_) => Ok(()),
        None => Err((
            "data.amount",
            format!(
                "{} would bring customer {}'s orders in {} past {}, the largest total the \
                 read models hold",
                order.amount,
                order.customer_id,
                order.amount.currency,
                Money::new(i64::MAX, order.amount.currency)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(id: &str, amount: &str) -> DomainEvent {
        DomainEvent::parse(
            "OrderPlaced",
            &json!({"customer_id": "c-1", "order_id": id, "amount": amount, "currency": "EUR"}),
        )
        .expect("order")
    }

    #[test]
    fn an_order_that_would_overflow_the_customers_gross_is_refused() {
        let first = order("o-1", "92233720368547758.07");
        let state = StreamState::New;
        assert!(check(&state, &first).is_ok());
        let state = state.evolve(&first);
        let (member, reason) =
            check(&state, &order("o-2", "92233720368547758.07")).expect_err("overflow");
        assert_eq!(member, "data.amount");
        assert!(reason.contains("c-1"), "{reason}");
        assert!(check(&state, &order("o-3", "0.01")).is_err());
        let small = StreamState::New.evolve(&order("o-1", "10.00"));
        assert!(check(&small, &order("o-2", "10.00")).is_ok());
    }
}
