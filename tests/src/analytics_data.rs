//! A customer history for the analytics tests (issue 17), the same for the replay tool's and
//! the API's: 60 customers with 1 to 8 orders each (deterministic), a champion who bought
//! every week, a one-time small buyer, free orders, a refund in full, a merge, and an order in
//! another currency. 63 customers bought in EUR by 2026-01-01 (the merged one counts under
//! its survivor).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// 2025-01-01T10:00:00Z plus `n` days, RFC 3339.
pub fn day(n: i64) -> String {
    let start = DateTime::parse_from_rfc3339("2025-01-01T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    (start + Duration::days(n)).to_rfc3339()
}

/// An `OrderPlaced` in EUR on day `at`.
pub fn order(customer: &str, order: &str, amount: &str, at: i64) -> Value {
    json!({"type": "OrderPlaced", "occurred_at": day(at),
           "data": {"customer_id": customer, "order_id": order, "amount": amount,
                    "currency": "EUR"}})
}

/// 60 customers with varied histories (deterministic), plus the cases named in the tests.
pub fn history() -> Vec<Value> {
    let mut lines = Vec::new();
    let mut seed = 42u64;
    let mut next = move |modulo: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % modulo
    };
    for n in 0..60 {
        let customer = format!("c-{n:02}");
        lines.push(json!({"type": "CustomerRegistered", "occurred_at": day(0),
            "data": {"customer_id": customer, "kind": "person", "name": format!("Customer {n}")}}));
        let first = next(200) as i64;
        let orders = 1 + next(8);
        for k in 0..orders {
            let at = first + (k as i64) * (1 + next(40) as i64);
            let amount = format!("{}.{:02}", 5 + next(200), next(100));
            lines.push(order(&customer, &format!("o-{k}"), &amount, at));
        }
    }
    // The champion: bought every week of the year, much, and lately.
    lines.push(json!({"type": "CustomerRegistered", "occurred_at": day(0),
        "data": {"customer_id": "champion", "kind": "company", "name": "Big Buyer"}}));
    for k in 0..52 {
        lines.push(order("champion", &format!("o-{k}"), "950.00", 7 * k));
    }
    // The lost one: one small purchase long ago.
    lines.push(json!({"type": "CustomerRegistered", "occurred_at": day(0),
        "data": {"customer_id": "gone", "kind": "person", "name": "Once"}}));
    lines.push(order("gone", "o-1", "5.00", 1));
    // Free orders, a refund in full, and a merge: c-free's summary is hand-checked below.
    lines.push(json!({"type": "CustomerRegistered", "occurred_at": day(0),
        "data": {"customer_id": "c-free", "kind": "person", "name": "Sample"}}));
    lines.push(order("c-free", "o-1", "40.00", 10));
    lines.push(order("c-free", "o-2", "0.00", 20));
    lines.push(order("c-free", "o-3", "30.00", 30));
    lines.push(json!({"type": "OrderRefunded", "occurred_at": day(31),
        "data": {"customer_id": "c-free", "order_id": "o-3", "amount": "30.00", "currency": "EUR"}}));
    lines.push(json!({"type": "CustomerRegistered", "occurred_at": day(0),
        "data": {"customer_id": "c-dup", "kind": "person", "name": "Sample again"}}));
    lines.push(order("c-dup", "o-9", "12.00", 40));
    lines.push(json!({"type": "CustomerMerged", "occurred_at": day(41),
        "data": {"customer_id": "c-dup", "into_customer_id": "c-free"}}));
    // Another currency never mixes in.
    lines.push(json!({"type": "OrderPlaced", "occurred_at": day(50),
        "data": {"customer_id": "c-free", "order_id": "o-usd", "amount": "999.00", "currency": "USD"}}));
    lines
}
