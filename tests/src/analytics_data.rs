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

/// `date` (`YYYY-MM-DD`) at 10:00 UTC, RFC 3339.
pub fn on(date: &str) -> String {
    format!("{date}T10:00:00Z")
}

/// The evaluation time of [`lifecycle_history`]'s expectations.
pub const LIFECYCLE_AS_OF: &str = "2026-01-01T00:00:00Z";
/// The start of the period of [`lifecycle_history`]'s transitions.
pub const LIFECYCLE_SINCE: &str = "2025-07-01T00:00:00Z";

fn registered(customer: &str, date: &str) -> Value {
    json!({"type": "CustomerRegistered", "occurred_at": on(date),
        "data": {"customer_id": customer, "kind": "person", "name": format!("Person {customer}")}})
}

fn placed(customer: &str, order: &str, amount: &str, currency: &str, date: &str) -> Value {
    json!({"type": "OrderPlaced", "occurred_at": on(date),
        "data": {"customer_id": customer, "order_id": order, "amount": amount,
                 "currency": currency}})
}

/// One customer per lifecycle rule and edge, days counted back from 2026-01-01 (the stage at
/// [`LIFECYCLE_SINCE`] → the stage at [`LIFECYCLE_AS_OF`]):
///
/// | customer | purchase days | since → as of |
/// |---|---|---|
/// | l-lead | none | lead → lead |
/// | l-future | 2026-02-01 (after as of) | lead → lead |
/// | l-refunded | 2025-12-01, refunded in full; registered 2025-08-01 | none → lead |
/// | l-new | 2025-12-01 (31 days); registered 2025-11-01 | none → new |
/// | l-new90 | 2025-10-03 (90 days) | lead → new |
/// | l-survivor | l-merged's 2025-12-05, merged in on 2025-12-06 | lead → new |
/// | l-merged | merged into l-survivor | lead → merged |
/// | l-risk91 | 2025-10-02 (91 days) | lead → at_risk |
/// | l-risk180 | 2025-07-05 (180 days) | lead → at_risk |
/// | l-lapsed181 | 2025-07-04 (181 days) | lead → lapsed |
/// | l-active | 2025-06-20, 2025-09-01, 2025-12-20 (gaps 73 and 110) | new → active |
/// | l-lapsed | 2025-06-01 (214 days; 30 at since) | new → lapsed |
/// | l-back | 2025-01-10 (172 days at since), 2025-12-15 (339 days later) | at_risk → won_back |
/// | l-usd | 2025-02-01 in EUR, 2025-12-28 in USD (330 days later) | at_risk → won_back |
///
/// At as of: lead 3, new 3, active 1, at_risk 2, lapsed 2, won_back 2 (13 customers). At
/// since: lead 8, new 2, at_risk 2 (12 customers).
pub fn lifecycle_history() -> Vec<Value> {
    let mut lines = Vec::new();
    for customer in [
        "l-lead",
        "l-future",
        "l-new90",
        "l-survivor",
        "l-merged",
        "l-risk91",
        "l-risk180",
        "l-lapsed181",
        "l-active",
        "l-lapsed",
        "l-back",
        "l-usd",
    ] {
        lines.push(registered(customer, "2025-01-05"));
    }
    lines.push(registered("l-refunded", "2025-08-01"));
    lines.push(registered("l-new", "2025-11-01"));
    lines.push(placed("l-future", "o-1", "10.00", "EUR", "2026-02-01"));
    lines.push(placed("l-refunded", "o-1", "25.00", "EUR", "2025-12-01"));
    lines.push(
        json!({"type": "OrderRefunded", "occurred_at": on("2025-12-02"),
        "data": {"customer_id": "l-refunded", "order_id": "o-1", "amount": "25.00",
                 "currency": "EUR"}}),
    );
    lines.push(placed("l-new", "o-1", "40.00", "EUR", "2025-12-01"));
    lines.push(placed("l-new90", "o-1", "40.00", "EUR", "2025-10-03"));
    lines.push(placed("l-merged", "o-1", "15.00", "EUR", "2025-12-05"));
    lines.push(
        json!({"type": "CustomerMerged", "occurred_at": on("2025-12-06"),
        "data": {"customer_id": "l-merged", "into_customer_id": "l-survivor"}}),
    );
    lines.push(placed("l-risk91", "o-1", "40.00", "EUR", "2025-10-02"));
    lines.push(placed("l-risk180", "o-1", "40.00", "EUR", "2025-07-05"));
    lines.push(placed("l-lapsed181", "o-1", "40.00", "EUR", "2025-07-04"));
    lines.push(placed("l-active", "o-1", "20.00", "EUR", "2025-06-20"));
    lines.push(placed("l-active", "o-2", "20.00", "EUR", "2025-09-01"));
    lines.push(placed("l-active", "o-3", "20.00", "EUR", "2025-12-20"));
    lines.push(placed("l-lapsed", "o-1", "30.00", "EUR", "2025-06-01"));
    lines.push(placed("l-back", "o-1", "60.00", "EUR", "2025-01-10"));
    lines.push(placed("l-back", "o-2", "60.00", "EUR", "2025-12-15"));
    lines.push(placed("l-usd", "o-1", "80.00", "EUR", "2025-02-01"));
    lines.push(placed("l-usd", "o-2", "80.00", "USD", "2025-12-28"));
    lines
}

/// The start of [`pipeline_history`]'s funnel period.
pub const FUNNEL_FROM: &str = "2025-01-01T00:00:00Z";
/// The end of [`pipeline_history`]'s funnel period (excluded).
pub const FUNNEL_TO: &str = "2025-04-01T00:00:00Z";

fn opened(
    deal: &str,
    owner: Option<&str>,
    stage: &str,
    amount: &str,
    currency: &str,
    at: &str,
) -> Value {
    let mut data = json!({"opportunity_id": deal, "customer_id": "p-cust", "name": format!("Deal {deal}"),
        "amount": amount, "currency": currency, "stage": stage, "close_date": "2025-06-30"});
    if let Some(owner) = owner {
        data["owner"] = json!(owner);
    }
    json!({"type": "OpportunityOpened", "occurred_at": at, "data": data})
}

fn moved(deal: &str, stage: &str, at: &str) -> Value {
    json!({"type": "OpportunityStageChanged", "occurred_at": at,
        "data": {"opportunity_id": deal, "stage": stage}})
}

fn closed(deal: &str, won: bool, at: &str) -> Value {
    if won {
        json!({"type": "OpportunityWon", "occurred_at": at, "data": {"opportunity_id": deal}})
    } else {
        json!({"type": "OpportunityLost", "occurred_at": at,
            "data": {"opportunity_id": deal, "reason": "price"}})
    }
}

/// Deals for the funnel over [`FUNNEL_FROM`, `FUNNEL_TO`) (all at 00:00 UTC, 2025):
///
/// | deal | owner | opened | stages after | end by 1 April | cycle |
/// |---|---|---|---|---|---|
/// | d-1 | u-ann | 10 Jan, Prospecting, 1000.00 EUR | Qualification 15 Jan, Proposal 20 Jan, Negotiation 1 Feb | won 10 Feb | 31 days |
/// | d-2 | u-ann | 20 Jan, Proposal, 500.00 EUR | | won 30 Jan | 10 days |
/// | d-3 | u-bob | 1 Feb, Prospecting, 300.00 USD | Qualification 5 Feb | lost 20 Feb | |
/// | d-4 | u-bob | 15 Feb, Prospecting, 200.00 EUR | | open | |
/// | d-5 | u-bob | 1 Mar, Qualification, 700.00 USD | | won 21 Mar | 20 days |
/// | d-6 | none | 10 Mar, Prospecting, 50.00 EUR | | lost 15 Mar | |
/// | d-9 | u-bob | 20 Mar, Prospecting, 90.00 EUR | | open (won 15 Apr) | |
/// | d-10 | u-ann, then u-bob from 2 Feb | 1 Feb, Negotiation, 100.00 EUR | | won 4 Feb | 3 days |
///
/// Left out: d-7 (opened 20 Dec 2024, won in January) and d-8 (opened 1 April, the end).
pub fn pipeline_history() -> Vec<Value> {
    let t = |date: &str| format!("2025-{date}T00:00:00Z");
    vec![
        json!({"type": "CustomerRegistered", "occurred_at": "2024-12-01T00:00:00Z",
            "data": {"customer_id": "p-cust", "kind": "company", "name": "Buyer Ltd"}}),
        opened(
            "d-7",
            Some("u-ann"),
            "Prospecting",
            "400.00",
            "EUR",
            "2024-12-20T00:00:00Z",
        ),
        closed("d-7", true, &t("01-05")),
        opened(
            "d-1",
            Some("u-ann"),
            "Prospecting",
            "1000.00",
            "EUR",
            &t("01-10"),
        ),
        moved("d-1", "Qualification", &t("01-15")),
        moved("d-1", "Proposal", &t("01-20")),
        moved("d-1", "Negotiation", &t("02-01")),
        closed("d-1", true, &t("02-10")),
        opened(
            "d-2",
            Some("u-ann"),
            "Proposal",
            "500.00",
            "EUR",
            &t("01-20"),
        ),
        closed("d-2", true, &t("01-30")),
        opened(
            "d-3",
            Some("u-bob"),
            "Prospecting",
            "300.00",
            "USD",
            &t("02-01"),
        ),
        moved("d-3", "Qualification", &t("02-05")),
        closed("d-3", false, &t("02-20")),
        opened(
            "d-4",
            Some("u-bob"),
            "Prospecting",
            "200.00",
            "EUR",
            &t("02-15"),
        ),
        opened(
            "d-5",
            Some("u-bob"),
            "Qualification",
            "700.00",
            "USD",
            &t("03-01"),
        ),
        closed("d-5", true, &t("03-21")),
        opened("d-6", None, "Prospecting", "50.00", "EUR", &t("03-10")),
        closed("d-6", false, &t("03-15")),
        opened(
            "d-9",
            Some("u-bob"),
            "Prospecting",
            "90.00",
            "EUR",
            &t("03-20"),
        ),
        closed("d-9", true, &t("04-15")),
        opened(
            "d-10",
            Some("u-ann"),
            "Negotiation",
            "100.00",
            "EUR",
            &t("02-01"),
        ),
        json!({"type": "OpportunityUpdated", "occurred_at": t("02-02"),
            "data": {"opportunity_id": "d-10", "owner": "u-bob"}}),
        closed("d-10", true, &t("02-04")),
        opened(
            "d-8",
            Some("u-ann"),
            "Prospecting",
            "80.00",
            "EUR",
            &t("04-01"),
        ),
    ]
}
