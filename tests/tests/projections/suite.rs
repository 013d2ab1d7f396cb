//! The projection suite, written once and run against every backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_core::envelope::TenantId;
use crm_core::money::Money;
use crm_projections::asof::{Cut, customer_as_of};
use crm_projections::backlog;
use crm_projections::bookkeeping::{self, request_rebuild};
use crm_projections::customer360::{self, Customer360, Customer360Projection, CustomerFilter};
use crm_projections::db::{Col, SqlValue};
use crm_projections::event::ProjectedEvent;
use crm_projections::orders;
use crm_projections::pipeline;
use crm_projections::projection::{Projection, TableDef, Tables, physical_name};
use crm_projections::runner::{self, RunState};
use crm_projections::timeline::{self, TimelinePage};
use crm_projections::{ProjectionError, all_projections};
use crm_tests::bench_data::Rng;
use crm_tests::crm_data::{Emitted, append_all, history};
use serde_json::{Value, json};

use crate::fixture::Fixture;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .with_timezone(&Utc)
}

fn ev(event_type: &'static str, data: Value, occurred_at: &str) -> Emitted {
    Emitted {
        tenant: "t1",
        event_type,
        data,
        occurred_at: at(occurred_at),
        id: uuid::Uuid::new_v4(),
    }
}

fn usd(amount: &str) -> Money {
    Money::parse(amount, "USD").expect("amount")
}

async fn get_360(fixture: &Fixture, customer: &str) -> Customer360 {
    customer360::get(&fixture.db, "t1", customer)
        .await
        .expect("query")
        .unwrap_or_else(|| panic!("no 360 row for {customer}"))
}

pub async fn customer_360_figures_with_same_day_purchases_refunds_and_merges_are_right(
    fixture: &Fixture,
) {
    let events = vec![
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-1", "kind": "person", "name": "Ada Lovelace", "email": "ada@example.com"}),
            "2026-03-01T09:00:00Z",
        ),
        ev(
            "InteractionLogged",
            json!({"customer_id": "c-1", "interaction_id": "i-1", "channel": "email", "direction": "inbound"}),
            "2026-03-01T10:00:00Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-1", "order_id": "o-1", "amount": "10.00", "currency": "USD"}),
            "2026-03-02T10:00:00Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-1", "order_id": "o-2", "amount": "5.50", "currency": "USD"}),
            "2026-03-02T15:00:00Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-1", "order_id": "o-3", "amount": "20.00", "currency": "USD"}),
            "2026-03-05T08:00:00Z",
        ),
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-2", "kind": "person", "name": "A. Lovelace"}),
            "2026-03-05T09:00:00Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-2", "order_id": "o-1", "amount": "4.00", "currency": "USD"}),
            "2026-03-05T23:59:59Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-1", "order_id": "o-4", "amount": "7.00", "currency": "USD"}),
            "2026-03-09T12:00:00Z",
        ),
        ev(
            "OrderRefunded",
            json!({"customer_id": "c-1", "order_id": "o-4", "amount": "7.00", "currency": "USD"}),
            "2026-03-09T13:00:00Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-1", "order_id": "o-5", "amount": "30.00", "currency": "USD"}),
            "2026-03-10T12:00:00Z",
        ),
        ev(
            "OrderRefunded",
            json!({"customer_id": "c-1", "order_id": "o-5", "amount": "10.00", "currency": "USD"}),
            "2026-03-11T12:00:00Z",
        ),
        ev(
            "InteractionLogged",
            json!({"customer_id": "c-2", "interaction_id": "i-2", "channel": "phone", "direction": "outbound"}),
            "2026-03-11T14:00:00Z",
        ),
        ev(
            "OrderPlaced",
            json!({"customer_id": "c-2", "order_id": "o-9", "amount": "12.00", "currency": "USD"}),
            "2026-03-12T00:00:00Z",
        ),
        ev(
            "InteractionLogged",
            json!({"customer_id": "c-1", "interaction_id": "i-3", "channel": "email", "direction": "outbound"}),
            "2026-03-12T10:00:00Z",
        ),
        ev(
            "CustomerMerged",
            json!({"customer_id": "c-2", "into_customer_id": "c-1"}),
            "2026-03-13T09:00:00Z",
        ),
        ev(
            "CustomerErased",
            json!({"customer_id": "c-2"}),
            "2026-03-14T09:00:00Z",
        ),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;

    let survivor = get_360(fixture, "c-1").await;
    let view = survivor.view(at("2026-03-20T12:00:00Z"), Vec::new());
    assert_eq!(view.status, "active");
    assert_eq!(
        view.name.as_deref(),
        Some("Ada Lovelace"),
        "the survivor keeps its profile"
    );
    assert_eq!(view.merged_ids, vec!["c-2".to_owned()]);
    assert_eq!(view.interactions.total, 3);
    assert_eq!(view.interactions.by_channel.len(), 2);
    assert_eq!(
        view.orders.count, 7,
        "c-2's o-1 does not collide with c-1's o-1"
    );
    assert_eq!(view.orders.refunded_count, 1, "o-4, refunded in full");
    assert_eq!(
        view.orders.partially_refunded_count, 1,
        "o-5: 10.00 of 30.00 refunded"
    );
    let usd_figures = &view.orders.by_currency[0];
    assert_eq!(usd_figures.gross, usd("88.50"));
    assert_eq!(usd_figures.refunded, usd("17.00"));
    assert_eq!(usd_figures.net, usd("71.50"));
    assert_eq!(
        usd_figures.average,
        usd("10.21"),
        "71.50 / 7 rounded half away from zero"
    );
    // Purchase days, net of refunds: 03-02 15.50, 03-05 24.00 (both customers' orders),
    // 03-09 nothing (fully refunded), 03-10 20.00, 03-12 12.00.
    let rfm = &view.rfm[0];
    assert_eq!(
        (rfm.frequency, rfm.recency, rfm.t),
        (3, 10, 18),
        "frequency = 4 purchase days - 1, recency 03-02..03-12, T 03-02..03-20"
    );
    assert_eq!(rfm.monetary_value, usd("18.67"), "(24 + 20 + 12) / 3");
    assert_eq!(view.orders.first_at, Some(at("2026-03-02T10:00:00Z")));
    assert_eq!(view.orders.last_at, Some(at("2026-03-12T00:00:00Z")));

    let merged = get_360(fixture, "c-2")
        .await
        .view(at("2026-03-20T12:00:00Z"), Vec::new());
    assert_eq!(merged.status, "merged");
    assert_eq!(merged.merged_into.as_deref(), Some("c-1"));
    assert_eq!(
        merged.name, None,
        "the merged customer's own profile was erased"
    );
    assert!(merged.erased_at.is_some());

    // As of a business time before the merge, c-1 is its own three orders.
    let tenant = TenantId::parse("t1").expect("tenant");
    let before = customer_as_of(
        fixture.store.as_ref(),
        &fixture.db,
        &tenant,
        "c-1",
        Cut::OccurredBy(at("2026-03-06T00:00:00Z")),
    )
    .await
    .expect("as of")
    .expect("c-1 existed");
    let before = before.view(at("2026-03-06T00:00:00Z"));
    assert_eq!(before.orders.count, 3);
    assert!(before.merged_ids.is_empty());
    let rfm = &before.rfm[0];
    assert_eq!((rfm.frequency, rfm.recency, rfm.t), (1, 3, 4));
    assert_eq!(rfm.monetary_value, usd("20.00"));

    // Searching finds by name, case-insensitively, and the erased one no longer by name.
    let found = customer360::list(
        &fixture.db,
        "t1",
        &CustomerFilter {
            search: Some("LOVELACE".into()),
            limit: 10,
            ..CustomerFilter::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(
        found
            .iter()
            .map(|c| c.customer_id.as_str())
            .collect::<Vec<_>>(),
        vec!["c-1"]
    );
}

pub async fn the_timeline_spans_streams_converted_leads_and_merges(fixture: &Fixture) {
    let events = vec![
        ev(
            "LeadCaptured",
            json!({"lead_id": "l-1", "name": "Bob", "source": "web"}),
            "2026-01-01T09:00:00Z",
        ),
        ev(
            "LeadQualified",
            json!({"lead_id": "l-1"}),
            "2026-01-02T09:00:00Z",
        ),
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-1", "kind": "company", "name": "Bob Ltd"}),
            "2026-01-03T09:00:00Z",
        ),
        ev(
            "LeadConverted",
            json!({"lead_id": "l-1", "customer_id": "c-1", "opportunity_id": "op-1"}),
            "2026-01-03T09:05:00Z",
        ),
        ev(
            "OpportunityOpened",
            json!({"opportunity_id": "op-1", "customer_id": "c-1", "name": "Pilot", "amount": "1000.00", "currency": "EUR", "stage": "Prospecting", "close_date": "2026-03-31"}),
            "2026-01-03T10:00:00Z",
        ),
        ev(
            "CaseOpened",
            json!({"case_id": "k-1", "customer_id": "c-1", "subject": "Login", "channel": "email", "priority": "high"}),
            "2026-01-04T10:00:00Z",
        ),
        ev(
            "CaseResponded",
            json!({"case_id": "k-1", "agent": "a-1"}),
            "2026-01-04T11:00:00Z",
        ),
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-2", "kind": "company", "name": "Bob Limited"}),
            "2026-01-05T09:00:00Z",
        ),
        ev(
            "OpportunityOpened",
            json!({"opportunity_id": "op-2", "customer_id": "c-2", "name": "Dup", "amount": "10.00", "currency": "EUR", "stage": "Prospecting", "close_date": "2026-03-31"}),
            "2026-01-05T10:00:00Z",
        ),
        ev(
            "CustomerMerged",
            json!({"customer_id": "c-2", "into_customer_id": "c-1"}),
            "2026-01-06T09:00:00Z",
        ),
        ev(
            "OpportunityWon",
            json!({"opportunity_id": "op-2"}),
            "2026-01-07T09:00:00Z",
        ),
        ev(
            "OpportunityWon",
            json!({"opportunity_id": "op-1"}),
            "2026-01-08T09:00:00Z",
        ),
        ev(
            "LeadCaptured",
            json!({"lead_id": "l-2", "company": "Fair Co", "source": "fair"}),
            "2026-01-09T09:00:00Z",
        ),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let page = TimelinePage {
        cursor: None,
        limit: 100,
        newest_first: false,
    };
    let c1 = timeline::page(&fixture.db, "t1", "c-1", page)
        .await
        .expect("timeline");
    let types: Vec<&str> = c1.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "LeadCaptured",
            "LeadQualified",
            "CustomerRegistered",
            "LeadConverted",
            "OpportunityOpened",
            "CaseOpened",
            "CaseResponded",
            "CustomerRegistered",
            "OpportunityOpened",
            "CustomerMerged",
            "OpportunityWon",
            "OpportunityWon",
        ],
        "every event touching c-1, its lead, deal, case and merged duplicate, in log order"
    );
    assert!(c1.windows(2).all(|w| w[0].position < w[1].position));
    let c2 = timeline::page(&fixture.db, "t1", "c-2", page)
        .await
        .expect("timeline");
    assert_eq!(
        c2.len(),
        4,
        "c-2's own events, and its deal's win after the merge"
    );
    // The 360 counts the merged customer's deal as won, once.
    let view = customer360::view(&fixture.db, "t1", "c-1", at("2026-02-01T00:00:00Z"))
        .await
        .expect("view")
        .expect("c-1");
    assert_eq!(view.won_opportunities.len(), 2);
    assert!(view.open_opportunities.is_empty());
    assert_eq!(view.open_cases.len(), 1);
    assert_eq!(
        view.recent_timeline
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        c1.iter().rev().map(|e| e.position).collect::<Vec<_>>(),
        "the 360 shows the timeline, newest first"
    );
    // Paging newest first with a cursor.
    let newest = timeline::page(
        &fixture.db,
        "t1",
        "c-1",
        TimelinePage {
            cursor: Some(c1[5].position),
            limit: 2,
            newest_first: true,
        },
    )
    .await
    .expect("page");
    assert_eq!(
        newest.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![c1[4].position, c1[3].position]
    );
}

pub async fn pipeline_and_backlog_figures_are_right(fixture: &Fixture) {
    let events = vec![
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-1", "kind": "company", "name": "Initech"}),
            "2026-01-01T08:00:00Z",
        ),
        ev(
            "OpportunityOpened",
            json!({"opportunity_id": "op-1", "customer_id": "c-1", "name": "Big", "amount": "1000.00", "currency": "EUR", "stage": "Prospecting", "close_date": "2026-02-15", "owner": "u-1"}),
            "2026-01-01T09:00:00Z",
        ),
        ev(
            "OpportunityStageChanged",
            json!({"opportunity_id": "op-1", "stage": "Proposal"}),
            "2026-01-03T09:00:00Z",
        ),
        ev(
            "OpportunityWon",
            json!({"opportunity_id": "op-1"}),
            "2026-01-11T09:00:00Z",
        ),
        ev(
            "OpportunityOpened",
            json!({"opportunity_id": "op-2", "customer_id": "c-1", "name": "Mid", "amount": "500.05", "currency": "EUR", "stage": "Negotiation", "close_date": "2026-03-10"}),
            "2026-01-02T09:00:00Z",
        ),
        ev(
            "OpportunityOpened",
            json!({"opportunity_id": "op-3", "customer_id": "c-1", "name": "Small", "amount": "10.01", "currency": "EUR", "stage": "Proposal", "close_date": "2026-03-20", "probability": 35, "forecast_category": "Commit"}),
            "2026-01-02T10:00:00Z",
        ),
        ev(
            "OpportunityOpened",
            json!({"opportunity_id": "op-4", "customer_id": "c-1", "name": "Lost", "amount": "70.00", "currency": "EUR", "stage": "Qualification", "close_date": "2026-03-20"}),
            "2026-01-02T11:00:00Z",
        ),
        ev(
            "OpportunityLost",
            json!({"opportunity_id": "op-4", "reason": "price"}),
            "2026-01-22T11:00:00Z",
        ),
        ev(
            "CaseOpened",
            json!({"case_id": "k-1", "customer_id": "c-1", "subject": "Down", "channel": "phone", "priority": "urgent"}),
            "2026-01-05T08:00:00Z",
        ),
        ev(
            "CaseResponded",
            json!({"case_id": "k-1", "agent": "a-1"}),
            "2026-01-05T08:10:00Z",
        ),
        ev(
            "CaseOpened",
            json!({"case_id": "k-2", "customer_id": "c-1", "subject": "Slow", "channel": "email", "priority": "normal"}),
            "2026-01-05T09:00:00Z",
        ),
        ev(
            "CaseAssigned",
            json!({"case_id": "k-2", "agent": "a-2"}),
            "2026-01-05T09:05:00Z",
        ),
        ev(
            "CaseResponded",
            json!({"case_id": "k-2", "agent": "a-2"}),
            "2026-01-05T09:20:00Z",
        ),
        ev(
            "CaseOpened",
            json!({"case_id": "k-3", "customer_id": "c-1", "subject": "Bill", "channel": "email", "priority": "low"}),
            "2026-01-05T10:00:00Z",
        ),
        ev(
            "CaseResponded",
            json!({"case_id": "k-3", "agent": "a-1"}),
            "2026-01-05T11:00:00Z",
        ),
        ev(
            "CaseResolved",
            json!({"case_id": "k-3"}),
            "2026-01-05T12:00:00Z",
        ),
        ev(
            "CaseOpened",
            json!({"case_id": "k-4", "customer_id": "c-1", "subject": "Idea", "channel": "web", "priority": "high"}),
            "2026-01-05T11:00:00Z",
        ),
        ev(
            "CustomerErased",
            json!({"customer_id": "c-1"}),
            "2026-01-06T00:00:00Z",
        ),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;

    let summary = pipeline::summary(&fixture.db, "t1")
        .await
        .expect("pipeline");
    assert_eq!((summary.open, summary.won, summary.lost), (2, 1, 1));
    assert_eq!(summary.win_rate, Some(0.5));
    // op-1: 10 days; op-4: 20 days.
    assert_eq!(summary.average_cycle_days, Some(15.0));
    let eur = |a: &str| Money::parse(a, "EUR").expect("amount");
    let stage = |name: &str| {
        summary
            .by_stage
            .iter()
            .find(|s| s.stage == name)
            .unwrap_or_else(|| panic!("no {name} total"))
            .clone()
    };
    assert_eq!(
        stage("Negotiation").weighted,
        eur("400.04"),
        "500.05 x 80% = 400.04"
    );
    assert_eq!(
        stage("Proposal").weighted,
        eur("3.50"),
        "10.01 x 35% = 3.5035, rounded per deal"
    );
    assert_eq!(stage("Closed Won").amount, eur("1000.00"));
    let march_commit = summary
        .forecast
        .iter()
        .find(|f| f.close_month == "2026-03" && f.forecast_category == "Commit")
        .expect("march commit");
    assert_eq!(
        (march_commit.count, march_commit.amount),
        (2, eur("510.06"))
    );
    let opportunities = pipeline::get_many(&fixture.db, "t1", &["op-1"])
        .await
        .expect("op-1");
    let history: Vec<&str> = opportunities[0]
        .stage_history
        .iter()
        .map(|s| s.stage.as_str())
        .collect();
    assert_eq!(history, vec!["Prospecting", "Proposal", "Closed Won"]);
    assert_eq!(opportunities[0].name, None, "the customer was erased");

    // k-1 urgent: answered in 10 min, open; resolution due 4 h after opening.
    let board = backlog::backlog(&fixture.db, "t1", at("2026-01-05T12:30:00Z"), 0, 10)
        .await
        .expect("backlog");
    let open_ids: Vec<String> = board
        .open
        .iter()
        .map(|l| {
            l.case
                .case_id
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default()
        })
        .collect();
    // Next due: k-1 resolution 12:00, k-4 first response 15:00, k-2 resolution 3 days.
    assert_eq!(open_ids, vec!["k-1", "k-4", "k-2"]);
    assert!(board.open[0].breaches.resolution);
    assert!(!board.open[1].breaches.first_response);
    assert_eq!(board.resolution_breaches, 1);
    assert_eq!(board.first_response_breaches, 0);
    assert_eq!(board.by_status.get("open"), Some(&3));
    assert_eq!(board.by_status.get("resolved"), Some(&1));
    assert_eq!(board.by_priority.get("urgent"), Some(&1));
    assert_eq!(board.open_per_agent.get("a-1"), Some(&1));
    assert_eq!(board.open_per_agent.get(""), None, "no empty agent");
    assert_eq!(board.open_per_agent.len(), 2, "{:?}", board.open_per_agent);
    assert_eq!(board.unassigned, 1, "k-4 is unassigned");
    // First responses: 600 s, 1200 s, 3600 s.
    assert_eq!(board.first_response_median_seconds, Some(1200.0));
    assert_eq!(
        board.first_response_p90_seconds,
        Some(1200.0 + 2400.0 * 0.8)
    );
    assert_eq!(board.open[0].case.subject, None, "the customer was erased");
    // Later, k-4 misses its first response (high: 4 h).
    let later = backlog::backlog(&fixture.db, "t1", at("2026-01-05T15:00:01Z"), 0, 10)
        .await
        .expect("backlog");
    assert_eq!(later.first_response_breaches, 1);
    // Targets set later apply to the cases opened after them; earlier cases keep theirs.
    let mut targets = backlog::SlaTargets::default();
    targets.urgent.resolution_minutes = 24 * 60;
    append_all(
        fixture.store.as_ref(),
        &[
            ev(
                "SlaTargetsSet",
                serde_json::to_value(targets).expect("json"),
                "2026-01-05T09:00:00Z",
            ),
            ev(
                "CaseOpened",
                json!({"case_id": "k-9", "customer_id": "c-1", "subject": "Again",
                       "channel": "phone", "priority": "urgent"}),
                "2026-01-05T09:30:00Z",
            ),
        ],
    )
    .await;
    fixture.catch_up().await;
    let relaxed = backlog::backlog(&fixture.db, "t1", at("2026-01-05T14:00:00Z"), 0, 10)
        .await
        .expect("backlog");
    let k9 = relaxed
        .open
        .iter()
        .find(|l| l.case.case_id.as_ref().is_some_and(|c| c.as_str() == "k-9"))
        .expect("k-9 open");
    assert_eq!(k9.resolution_due, Some(at("2026-01-06T09:30:00Z")));
    assert!(!k9.breaches.resolution);
    assert_eq!(
        relaxed.resolution_breaches, 1,
        "k-1 keeps the targets of its open"
    );
    assert_eq!(relaxed.targets.targets.urgent.resolution_minutes, 24 * 60);
}

/// Counts of what the log holds, to check the 360 independently: every order and
/// interaction counted once, in the customer it belongs to now.
fn expected_totals(events: &[Emitted]) -> (i64, i64) {
    let orders = events
        .iter()
        .filter(|e| e.event_type == "OrderPlaced")
        .count();
    let interactions = events
        .iter()
        .filter(|e| e.event_type == "InteractionLogged")
        .count();
    (orders as i64, interactions as i64)
}

async fn counted_totals(fixture: &Fixture) -> (i64, i64) {
    let rows = fixture
        .db
        .fetch(
            "SELECT CAST(SUM(orders) AS BIGINT), CAST(SUM(interactions) AS BIGINT) FROM rm_customer_360 WHERE status <> 'merged'",
            vec![],
            &[Col::Int, Col::Int],
        )
        .await
        .expect("totals");
    (
        rows[0][0].as_int().unwrap_or(0),
        rows[0][1].as_int().unwrap_or(0),
    )
}

pub async fn a_rebuild_gives_the_same_rows_as_the_live_run_while_reads_keep_answering(
    fixture: &Fixture,
) {
    let mut events = history(7, 60, 2_500);
    // Campaign, consent and satisfaction events too, so every read model has rows.
    events.extend(campaign_events(&events));
    events.extend(consent_and_satisfaction_events(&events));
    let (first, second) = events.split_at(events.len() / 2);
    append_all(fixture.store.as_ref(), first).await;
    let handle = fixture.start_runner().await;
    append_all(fixture.store.as_ref(), second).await;
    let head = fixture.head().await;
    assert!(
        handle.wait_for(&[], head, Duration::from_secs(120)).await,
        "the live run reached the head: {:?}",
        handle.status()
    );
    let live = fixture.dump().await;
    assert_eq!(counted_totals(fixture).await, expected_totals(&events));
    let empty: Vec<&str> = live
        .iter()
        .filter(|(_, rows)| rows.is_empty())
        .map(|(table, _)| *table)
        .collect();
    assert!(empty.is_empty(), "tables left empty: {empty:?}");

    for projection in all_projections() {
        assert!(
            request_rebuild(&fixture.db, projection.name())
                .await
                .expect("request")
        );
    }
    handle.wake();
    let mut statuses = handle.subscribe();
    let mut answered_during_rebuild = 0;
    let swapped = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let now = statuses.borrow_and_update().clone();
            if now.iter().any(|s| s.rebuild.is_some()) {
                // Reads keep answering from the live tables while the rebuild runs.
                let listed = customer360::list(
                    &fixture.db,
                    "acme",
                    &CustomerFilter {
                        limit: 5,
                        ..CustomerFilter::default()
                    },
                )
                .await
                .expect("reads answer during the rebuild");
                assert_eq!(listed.len(), 5);
                answered_during_rebuild += 1;
            }
            if now
                .iter()
                .all(|s| s.generation == 2 && s.rebuild.is_none() && s.state == RunState::Live)
            {
                return;
            }
            let _ = statuses.changed().await;
        }
    })
    .await;
    assert!(swapped.is_ok(), "rebuild swapped in: {:?}", handle.status());
    assert!(
        answered_during_rebuild > 0,
        "the rebuild was observed in progress"
    );
    let rebuilt = fixture.dump().await;
    assert_eq!(
        live, rebuilt,
        "a rebuild gives the same rows as the live run"
    );
    // The old generation's tables are gone.
    let old = fixture.db.dump("rm_customer_360_g1", "1").await;
    assert!(old.is_err(), "generation 1 was dropped");
    handle.shutdown().await.expect("shutdown");
}

pub async fn killing_the_runner_at_random_points_ends_in_the_rows_of_a_clean_rebuild(
    fixture: &Fixture,
) {
    // Enough events, and kills early enough, that the runner cannot finish before its first
    // kill however fast it has become.
    let events = history(11, 50, 6_000);
    append_all(fixture.store.as_ref(), &events).await;
    let head = fixture.head().await;
    let mut rng = Rng::new(5);
    let mut kills = 0;
    loop {
        let handle = fixture.start_runner().await;
        tokio::time::sleep(Duration::from_millis(2 + rng.below(40))).await;
        let done = handle.status().iter().all(|s| s.position >= head);
        handle.abort();
        kills += 1;
        if done || kills >= 25 {
            break;
        }
        // Let a SQLite lease of the killed runner expire, as after a real crash.
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    let statuses = fixture.catch_up().await;
    assert!(statuses.iter().all(|s| s.position == head), "{statuses:?}");
    assert!(kills > 1, "the runner was killed mid-run at least once");
    let after_kills = fixture.dump().await;
    assert_eq!(
        counted_totals(fixture).await,
        expected_totals(&events),
        "nothing lost or counted twice"
    );

    for projection in all_projections() {
        request_rebuild(&fixture.db, projection.name())
            .await
            .expect("request");
    }
    fixture.catch_up().await;
    let clean = fixture.dump().await;
    assert_eq!(
        after_kills, clean,
        "{kills} kills end in the rows of a clean rebuild"
    );
}

pub async fn as_of_folds_agree_with_the_read_model_at_the_same_moment(fixture: &Fixture) {
    let events = history(3, 40, 1_600);
    // Cut points where business time strictly moves on, so a time cut equals a position cut.
    let mut cuts = Vec::new();
    for quarter in 1..4 {
        let mut i = events.len() * quarter / 4;
        while i + 1 < events.len() && events[i].occurred_at == events[i - 1].occurred_at {
            i += 1;
        }
        cuts.push(i);
    }
    cuts.push(events.len());
    let tenant = TenantId::parse("acme").expect("tenant");
    let customers: Vec<String> = (0..40).step_by(2).map(|n| format!("c-{n}")).collect();
    let mut snapshots = Vec::new();
    let mut reports = Vec::new();
    let mut from = 0;
    for &cut in &cuts {
        append_all(fixture.store.as_ref(), &events[from..cut]).await;
        from = cut;
        fixture.catch_up().await;
        let head = fixture.head().await;
        let mut docs = BTreeMap::new();
        for customer in &customers {
            if let Some(doc) = customer360::get(&fixture.db, "acme", customer)
                .await
                .expect("get")
            {
                docs.insert(customer.clone(), doc);
            }
        }
        let last = fixture
            .store
            .read_positions(&tenant, &[head])
            .await
            .expect("last event");
        let recorded_at = last.first().map(|e| e.recorded_at);
        let products = orders::products_report(&fixture.db, "acme", &products_query("USD"))
            .await
            .expect("products");
        reports.push((events[cut - 1].occurred_at, products));
        snapshots.push((head, events[cut - 1].occurred_at, recorded_at, docs));
        // Recording times of the next part are later.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let erased_now: Vec<String> = {
        let mut erased = Vec::new();
        for customer in &customers {
            let erased_with_survivor =
                crm_projections::asof::erased_with_survivor(&fixture.db, "acme", customer)
                    .await
                    .expect("survivor");
            if let Some(doc) = customer360::get(&fixture.db, "acme", customer)
                .await
                .expect("get")
                && (doc.erased_at.is_some() || erased_with_survivor)
            {
                erased.push(customer.clone());
            }
        }
        erased
    };
    let mut compared = 0;
    for (head, occurred, recorded, docs) in &snapshots {
        for customer in &customers {
            let mut expected = docs.get(customer).cloned();
            if erased_now.contains(customer)
                && let Some(doc) = expected.as_mut()
            {
                doc.name = None;
                doc.email = None;
                doc.phone = None;
            }
            let mut cuts = vec![Cut::Position(*head), Cut::OccurredBy(*occurred)];
            if let Some(recorded) = recorded {
                cuts.push(Cut::RecordedBy(*recorded));
            }
            for cut in cuts {
                let folded =
                    customer_as_of(fixture.store.as_ref(), &fixture.db, &tenant, customer, cut)
                        .await
                        .expect("as of");
                assert_eq!(folded.map(|f| f.state), expected, "{customer} at {cut:?}");
                compared += usize::from(expected.is_some());
            }
        }
    }
    assert!(
        compared >= 120,
        "compared {compared} folds of existing customers"
    );
    // The products report cut at a past business time (`to`, exclusive) is the live report
    // of that moment.
    for (occurred, live) in reports {
        let mut query = products_query("USD");
        query.to = Some(occurred + chrono::Duration::microseconds(1));
        let mut cut = orders::products_report(&fixture.db, "acme", &query)
            .await
            .expect("products as of");
        assert!(live.orders > 0, "the history has orders with lines");
        cut.to = None;
        cut.basis = live.basis.clone();
        assert_eq!(cut, live, "the products report as of {occurred}");
    }
}

pub async fn each_projection_runs_in_one_runner_and_another_takes_over_when_it_dies(
    fixture: &Fixture,
) {
    let events = history(13, 30, 1_200);
    let (first, second) = events.split_at(events.len() / 2);
    append_all(fixture.store.as_ref(), first).await;
    let a = fixture.start_runner().await;
    let head = fixture.head().await;
    assert!(a.wait_for(&[], head, Duration::from_secs(60)).await);
    let b = fixture.start_runner().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.status().iter().all(|s| s.state == RunState::Standby),
        "the second runner waits: {:?}",
        b.status()
    );
    assert!(a.status().iter().all(|s| s.state == RunState::Live));
    a.abort();
    append_all(fixture.store.as_ref(), second).await;
    let head = fixture.head().await;
    let mut statuses = b.subscribe();
    let took_over = tokio::time::timeout(
        Duration::from_secs(60),
        statuses.wait_for(|list| {
            list.iter()
                .all(|s| s.state == RunState::Live && s.position >= head)
        }),
    )
    .await
    // Let go of the status borrow at once: the runner cannot publish while it is held.
    .is_ok_and(|reached| reached.is_ok());
    assert!(took_over, "the standby took over: {:?}", b.status());
    assert_eq!(counted_totals(fixture).await, expected_totals(&events));
    b.shutdown().await.expect("shutdown");
}

/// The 360 projection under another version number, as after a code change.
#[derive(Debug)]
struct Customer360V2;

#[async_trait::async_trait]
impl Projection for Customer360V2 {
    fn name(&self) -> &'static str {
        Customer360Projection.name()
    }
    fn version(&self) -> i64 {
        Customer360Projection.version() + 1
    }
    fn tables(&self) -> &'static [TableDef] {
        Customer360Projection.tables()
    }
    async fn apply(
        &self,
        tx: &mut crm_projections::db::ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError> {
        Customer360Projection.apply(tx, tables, events).await
    }
}

pub async fn a_changed_projection_version_is_rebuilt_while_the_old_tables_answer(
    fixture: &Fixture,
) {
    let events = history(17, 20, 600);
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let before = fixture
        .db
        .dump(customer360::TABLE, "1, 2")
        .await
        .expect("dump");
    let statuses = runner::run_until_caught_up(
        fixture.store.clone(),
        fixture.db.clone(),
        vec![Arc::new(Customer360V2)],
        Fixture::options(),
    )
    .await
    .expect("rebuild to the next version");
    assert_eq!(statuses[0].generation, 2);
    let after = fixture
        .db
        .dump(customer360::TABLE, "1, 2")
        .await
        .expect("dump");
    assert_eq!(before, after);
    let versions = fixture
        .db
        .fetch(
            "SELECT generation, version FROM crm_projection_checkpoints WHERE projection = ?",
            vec![SqlValue::text("customer_360")],
            &[Col::Int, Col::Int],
        )
        .await
        .expect("checkpoints");
    assert_eq!(
        versions,
        vec![vec![
            SqlValue::Int(2),
            SqlValue::Int(Customer360V2.version())
        ]]
    );
}

/// The checkpoints listed for the 360 projection, by generation.
async fn generations_of_the_360(fixture: &Fixture) -> Vec<i64> {
    fixture
        .db
        .fetch(
            "SELECT generation FROM crm_projection_checkpoints WHERE projection = ? \
             ORDER BY generation",
            vec![SqlValue::text(Customer360Projection.name())],
            &[Col::Int],
        )
        .await
        .expect("checkpoints")
        .into_iter()
        .filter_map(|row| row[0].as_int())
        .collect()
}

/// A rebuild's swap drops the old generation after its transaction (each table on its own);
/// an old generation still listed, as a crash between the swap and the drop leaves it, is
/// dropped at the projection's next set-up, and the live rows stay as they were.
pub async fn an_old_generation_is_dropped_after_the_swap_and_after_a_crash_before_it(
    fixture: &Fixture,
) {
    let events = history(23, 20, 500);
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let built = fixture.dump().await;
    request_rebuild(&fixture.db, Customer360Projection.name())
        .await
        .expect("request");
    fixture.catch_up().await;
    assert_eq!(generations_of_the_360(fixture).await, vec![2]);
    for def in Customer360Projection.tables() {
        let old = physical_name(def.name, 1);
        assert!(
            !fixture.db.has_table(&old).await.expect("has"),
            "{old} dropped"
        );
    }
    assert_eq!(
        fixture.dump().await,
        built,
        "the rebuild equals the first build"
    );

    // Generation 1 back, with a row, as if the process had died after the swap's commit.
    let mut tx = fixture.db.begin().await.expect("begin");
    bookkeeping::create_generation(&mut tx, &Customer360Projection, 1)
        .await
        .expect("left-behind generation");
    tx.commit().await.expect("commit");
    let old = physical_name(customer360::TABLE, 1);
    fixture
        .db
        .execute(
            &format!("INSERT INTO {old} SELECT * FROM {}", customer360::TABLE),
            vec![],
        )
        .await
        .expect("a row in the old table");
    assert_eq!(generations_of_the_360(fixture).await, vec![1, 2]);
    let statuses = fixture.catch_up().await;
    let status = statuses
        .iter()
        .find(|s| s.name == Customer360Projection.name())
        .expect("status");
    assert_eq!(
        (status.generation, status.position),
        (2, fixture.head().await)
    );
    assert_eq!(generations_of_the_360(fixture).await, vec![2]);
    for def in Customer360Projection.tables() {
        let old = physical_name(def.name, 1);
        assert!(
            !fixture.db.has_table(&old).await.expect("has"),
            "{old} dropped"
        );
    }
    assert_eq!(fixture.dump().await, built, "the live rows are untouched");
}

fn case_ids(lines: &[backlog::CaseLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.case
                .case_id
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

pub async fn the_case_list_and_the_pipeline_by_owner_and_as_of_are_right(fixture: &Fixture) {
    let case = |id: &str, customer: &str, priority: &str, opened: &str| {
        ev(
            "CaseOpened",
            json!({"case_id": id, "customer_id": customer, "subject": "Help",
                   "channel": "email", "priority": priority}),
            opened,
        )
    };
    let on = |event_type: &'static str, data: Value, at: &str| ev(event_type, data, at);
    let events = vec![
        case("k-1", "c-1", "urgent", "2026-01-05T08:00:00Z"),
        on(
            "CaseResponded",
            json!({"case_id": "k-1", "agent": "a-1"}),
            "2026-01-05T08:30:00Z",
        ),
        case("k-2", "c-2", "normal", "2026-01-06T00:00:00Z"),
        on(
            "CaseAssigned",
            json!({"case_id": "k-2", "agent": "a-2"}),
            "2026-01-06T01:00:00Z",
        ),
        on(
            "CaseResolved",
            json!({"case_id": "k-2"}),
            "2026-01-07T00:00:00Z",
        ),
        on(
            "CaseClosed",
            json!({"case_id": "k-2"}),
            "2026-01-08T12:00:00Z",
        ),
        case("k-3", "c-1", "low", "2026-01-07T00:00:00Z"),
        on(
            "CaseClosed",
            json!({"case_id": "k-3"}),
            "2026-01-09T12:00:00Z",
        ),
        case("k-4", "c-1", "high", "2026-01-10T00:00:00Z"),
        on(
            "CaseAssigned",
            json!({"case_id": "k-5", "agent": "a-1"}),
            "2026-01-11T00:00:00Z",
        ),
        on(
            "OpportunityOpened",
            json!({"opportunity_id": "op-a", "customer_id": "c-1", "name": "A", "amount": "1000.00",
                   "currency": "EUR", "stage": "Prospecting", "close_date": "2026-02-15", "owner": "u-1"}),
            "2026-01-01T00:00:00Z",
        ),
        on(
            "OpportunityStageChanged",
            json!({"opportunity_id": "op-a", "stage": "Proposal"}),
            "2026-01-10T00:00:00Z",
        ),
        on(
            "OpportunityWon",
            json!({"opportunity_id": "op-a"}),
            "2026-01-20T00:00:00Z",
        ),
        on(
            "OpportunityOpened",
            json!({"opportunity_id": "op-b", "customer_id": "c-2", "name": "B", "amount": "200.00",
                   "currency": "EUR", "stage": "Qualification", "close_date": "2026-03-01", "owner": "u-2"}),
            "2026-01-05T00:00:00Z",
        ),
        on(
            "OpportunityLost",
            json!({"opportunity_id": "op-b", "reason": "price"}),
            "2026-02-01T00:00:00Z",
        ),
        on(
            "OpportunityOpened",
            json!({"opportunity_id": "op-c", "customer_id": "c-1", "name": "C", "amount": "300.00",
                   "currency": "EUR", "stage": "Negotiation", "close_date": "2026-04-01", "owner": "u-1"}),
            "2026-02-10T00:00:00Z",
        ),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;

    // The case list: every case, open and closed, by id, in pages.
    let list = |filter: backlog::CaseFilter| async move {
        backlog::cases::list(&fixture.db, "t1", &filter)
            .await
            .expect("case list")
    };
    let all = backlog::CaseFilter {
        limit: 10,
        ..Default::default()
    };
    let everything = list(all.clone()).await;
    assert_eq!(case_ids(&everything), ["k-1", "k-2", "k-3", "k-4", "k-5"]);
    let first = list(backlog::CaseFilter {
        limit: 2,
        ..all.clone()
    })
    .await;
    assert_eq!(case_ids(&first), ["k-1", "k-2"]);
    let second = list(backlog::CaseFilter {
        limit: 2,
        after: Some("k-2".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(case_ids(&second), ["k-3", "k-4"]);
    let status = |s: backlog::CaseStatus| backlog::CaseFilter {
        status: Some(s),
        ..all.clone()
    };
    assert_eq!(
        case_ids(&list(status(backlog::CaseStatus::Closed)).await),
        ["k-2", "k-3"]
    );
    assert_eq!(
        case_ids(&list(status(backlog::CaseStatus::Open)).await),
        ["k-1", "k-4"]
    );
    assert_eq!(
        case_ids(&list(status(backlog::CaseStatus::Unknown)).await),
        ["k-5"]
    );
    let c1 = backlog::CaseFilter {
        customer_id: Some("c-1".into()),
        ..all.clone()
    };
    assert_eq!(case_ids(&list(c1.clone()).await), ["k-1", "k-3", "k-4"]);
    assert_eq!(
        case_ids(
            &list(backlog::CaseFilter {
                status: Some(backlog::CaseStatus::Closed),
                ..c1
            })
            .await
        ),
        ["k-3"]
    );
    let agent = backlog::CaseFilter {
        agent: Some("a-1".into()),
        ..all.clone()
    };
    assert_eq!(case_ids(&list(agent).await), ["k-1", "k-5"]);
    let urgent = backlog::CaseFilter {
        priority: Some(crm_core::catalog::values::Priority::Urgent),
        ..all.clone()
    };
    let urgent = list(urgent).await;
    assert_eq!(case_ids(&urgent), ["k-1"]);
    // Urgent: first response within 1 h, resolution within 4 h of the open.
    assert_eq!(
        urgent[0].first_response_due,
        Some(at("2026-01-05T09:00:00Z"))
    );
    assert_eq!(urgent[0].resolution_due, Some(at("2026-01-05T12:00:00Z")));
    assert_eq!(
        urgent[0].case.agent.as_ref().map(|a| a.as_str()),
        Some("a-1")
    );
    // Windows are half-open: from included, to excluded.
    let opened = backlog::CaseFilter {
        opened: backlog::Window {
            from: Some(at("2026-01-06T00:00:00Z")),
            to: Some(at("2026-01-10T00:00:00Z")),
        },
        ..all.clone()
    };
    assert_eq!(case_ids(&list(opened).await), ["k-2", "k-3"]);
    let closed = backlog::CaseFilter {
        closed: backlog::Window {
            from: Some(at("2026-01-08T12:00:00Z")),
            to: Some(at("2026-01-09T12:00:00Z")),
        },
        ..all.clone()
    };
    assert_eq!(case_ids(&list(closed).await), ["k-2"]);
    let closed_since = backlog::CaseFilter {
        closed: backlog::Window {
            from: Some(at("2026-01-09T00:00:00Z")),
            to: None,
        },
        ..all.clone()
    };
    assert_eq!(case_ids(&list(closed_since).await), ["k-3"]);
    let other_tenant = backlog::cases::list(&fixture.db, "t2", &all)
        .await
        .expect("case list");
    assert!(other_tenant.is_empty());

    // The pipeline of one owner, live.
    let summary = |filter: pipeline::PipelineFilter| async move {
        pipeline::summary_of(&fixture.db, "t1", &filter)
            .await
            .expect("pipeline")
    };
    let owner = |o: &str| pipeline::PipelineFilter {
        owner: Some(o.into()),
        as_of: None,
    };
    let eur = |a: &str| Money::parse(a, "EUR").expect("amount");
    let u1 = summary(owner("u-1")).await;
    assert_eq!((u1.open, u1.won, u1.lost), (1, 1, 0));
    let stages: Vec<(&str, i64, Money)> = u1
        .by_stage
        .iter()
        .map(|s| (s.stage.as_str(), s.count, s.amount))
        .collect();
    assert_eq!(
        stages,
        [
            ("Closed Won", 1, eur("1000.00")),
            ("Negotiation", 1, eur("300.00"))
        ]
    );
    let u2 = summary(owner("u-2")).await;
    assert_eq!((u2.open, u2.won, u2.lost), (0, 0, 1));
    assert_eq!(u2.win_rate, Some(0.0));
    let nobody = summary(owner("u-9")).await;
    assert_eq!((nobody.open, nobody.won, nobody.lost), (0, 0, 0));
    assert!(nobody.by_stage.is_empty() && nobody.forecast.is_empty());
    let everyone = pipeline::summary(&fixture.db, "t1")
        .await
        .expect("pipeline");
    assert_eq!((everyone.open, everyone.won, everyone.lost), (1, 1, 1));

    // As of a past business time: the stage each deal was in then.
    let as_of = |t: &str, owner: Option<&str>| pipeline::PipelineFilter {
        owner: owner.map(str::to_owned),
        as_of: Some(at(t)),
    };
    let mid_january = summary(as_of("2026-01-15T00:00:00Z", None)).await;
    assert_eq!(
        (mid_january.open, mid_january.won, mid_january.lost),
        (2, 0, 0),
        "op-a not won yet, op-b not lost yet, op-c not opened yet"
    );
    let stages: Vec<(&str, i64, Money, Money)> = mid_january
        .by_stage
        .iter()
        .map(|s| (s.stage.as_str(), s.count, s.amount, s.weighted))
        .collect();
    assert_eq!(
        stages,
        [
            ("Proposal", 1, eur("1000.00"), eur("500.00")),
            ("Qualification", 1, eur("200.00"), eur("40.00")),
        ]
    );
    assert_eq!(mid_january.win_rate, None);
    assert_eq!(mid_january.average_cycle_days, None);
    let early = summary(as_of("2026-01-09T23:59:59Z", Some("u-1"))).await;
    assert_eq!(early.by_stage.len(), 1);
    assert_eq!(early.by_stage[0].stage, "Prospecting");
    assert_eq!(early.open, 1);
    let late_january = summary(as_of("2026-01-25T00:00:00Z", None)).await;
    assert_eq!(
        (late_january.open, late_january.won, late_january.lost),
        (1, 1, 0)
    );
    assert_eq!(late_january.win_rate, Some(1.0));
    assert_eq!(late_january.average_cycle_days, Some(19.0));
    let before = summary(as_of("2025-12-31T00:00:00Z", None)).await;
    assert_eq!((before.open, before.won, before.lost), (0, 0, 0));
    assert!(before.by_stage.is_empty() && before.forecast.is_empty());
    // As of now, the past fold and the live statements give the same figures.
    for owner in [None, Some("u-1"), Some("u-2")] {
        let live = summary(pipeline::PipelineFilter {
            owner: owner.map(str::to_owned),
            as_of: None,
        })
        .await;
        let now = summary(as_of("2030-01-01T00:00:00Z", owner)).await;
        assert_eq!(now, live, "owner {owner:?}");
    }
}

pub async fn a_phone_search_matches_digits_once_the_tables_hold_them(fixture: &Fixture) {
    let events = vec![
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-1", "kind": "person", "name": "Ada",
                   "phone": "+44 (20) 7946-0958"}),
            "2026-01-01T00:00:00Z",
        ),
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-2", "kind": "person", "name": "Bob",
                   "phone": "+1 415 555 2671"}),
            "2026-01-01T00:00:00Z",
        ),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let search = |text: &str| {
        let filter = CustomerFilter {
            search: Some(text.to_owned()),
            limit: 10,
            ..Default::default()
        };
        async move {
            customer360::list(&fixture.db, "t1", &filter)
                .await
                .expect("list")
                .into_iter()
                .map(|line| line.customer_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("7946 0958").await, ["c-1"]);
    assert_eq!(search("+1 415-555").await, ["c-2"]);
    assert_eq!(search("4155").await, Vec::<String>::new(), "under 5 digits");
    // Tables of the version before phone_key (answering while their rebuild runs): the
    // search matches names, emails and ids only, and does not fail.
    fixture
        .db
        .execute(
            "UPDATE crm_projection_checkpoints SET version = ? WHERE projection = ?",
            vec![
                SqlValue::Int(customer360::PHONE_KEY_VERSION - 1),
                SqlValue::text("customer_360"),
            ],
        )
        .await
        .expect("pretend the live tables are older");
    assert_eq!(search("7946 0958").await, Vec::<String>::new());
    assert_eq!(search("ada").await, ["c-1"]);
}

/// Hand-made leads on top of a generated history: disqualifications with reasons, sources
/// and campaigns, an erased lead and a lead converted to a customer erased later.
fn lead_events(start: DateTime<Utc>) -> Vec<Emitted> {
    let t = |minutes: i64| (start + chrono::Duration::minutes(minutes)).to_rfc3339();
    let lead = |id: &str, source: &str, campaign: Option<&str>| {
        let mut data = json!({"lead_id": id, "name": "P", "source": source, "owner": "u-3"});
        if let Some(campaign) = campaign {
            data["campaign_id"] = json!(campaign);
        }
        data
    };
    let acme = |event_type, data, at: String| Emitted {
        tenant: "acme",
        ..ev(event_type, data, &at)
    };
    vec![
        acme("LeadCaptured", lead("ld-1", "fair", Some("cmp-9")), t(1)),
        acme("LeadQualified", json!({"lead_id": "ld-1"}), t(2)),
        acme(
            "LeadDisqualified",
            json!({"lead_id": "ld-1", "reason": "Too small"}),
            t(3),
        ),
        acme("LeadCaptured", lead("ld-2", "fair", None), t(4)),
        acme(
            "LeadDisqualified",
            json!({"lead_id": "ld-2", "reason": "Too small"}),
            t(5),
        ),
        acme("LeadCaptured", lead("ld-3", "ads", Some("cmp-9")), t(6)),
        acme(
            "CustomerRegistered",
            json!({"customer_id": "cx-3", "kind": "person", "name": "X"}),
            t(7),
        ),
        acme(
            "LeadConverted",
            json!({"lead_id": "ld-3", "customer_id": "cx-3"}),
            t(8),
        ),
        acme("LeadCaptured", lead("ld-4", "ads", Some("cmp-9")), t(9)),
        acme("LeadErased", json!({"lead_id": "ld-4"}), t(10)),
        acme("LeadCaptured", lead("ld-5", "ads", None), t(11)),
        acme(
            "CustomerRegistered",
            json!({"customer_id": "cx-5", "kind": "person", "name": "Y"}),
            t(12),
        ),
        acme(
            "LeadConverted",
            json!({"lead_id": "ld-5", "customer_id": "cx-5"}),
            t(13),
        ),
        acme("CustomerErased", json!({"customer_id": "cx-5"}), t(14)),
    ]
}

pub async fn leads_rebuild_equals_live_and_the_funnel_as_of_agrees_with_a_fold_of_the_log(
    fixture: &Fixture,
) {
    use crm_projections::leads::{self, Lead, LeadFilter, LeadStatus, funnel::funnel_of};

    let mut events = history(13, 40, 1_600);
    let end = events.last().map(|e| e.occurred_at).expect("events");
    events.extend(lead_events(end));
    let (first, second) = events.split_at(events.len() / 2);
    append_all(fixture.store.as_ref(), first).await;
    fixture.catch_up().await;
    append_all(fixture.store.as_ref(), second).await;
    fixture.catch_up().await;

    // The hand-made leads, exactly.
    let now = Utc::now();
    let filter = LeadFilter {
        source: Some("fair".into()),
        limit: 100,
        ..LeadFilter::default()
    };
    let fair = leads::list(&fixture.db, "acme", &filter, now)
        .await
        .expect("list");
    let ids: Vec<_> = fair
        .iter()
        .map(|l| l.lead.lead_id.as_ref().map(|i| i.to_string()))
        .collect();
    assert_eq!(ids, [Some("ld-1".to_owned()), Some("ld-2".to_owned())]);
    let ld1 = &fair[0].lead;
    assert_eq!(ld1.status, LeadStatus::Disqualified);
    assert_eq!(ld1.disqualified_reason.as_deref(), Some("Too small"));
    assert_eq!(ld1.campaign_id.as_ref().map(|c| c.as_str()), Some("cmp-9"));
    assert_eq!(ld1.owner.as_ref().map(|c| c.as_str()), Some("u-3"));
    assert_eq!(ld1.captured_at, Some(end + chrono::Duration::minutes(1)));
    assert_eq!(ld1.qualified_at, Some(end + chrono::Duration::minutes(2)));
    let cmp9 = leads::list(
        &fixture.db,
        "acme",
        &LeadFilter {
            campaign_id: Some("cmp-9".into()),
            limit: 100,
            ..LeadFilter::default()
        },
        now,
    )
    .await
    .expect("list");
    // ld-4 was erased; ld-3 converted to cx-3 (kept); ld-5's customer was erased.
    let ids: Vec<_> = cmp9
        .iter()
        .map(|l| l.lead.lead_id.as_ref().map(|i| i.to_string()))
        .collect();
    assert_eq!(ids, [Some("ld-1".to_owned()), Some("ld-3".to_owned())]);
    assert_eq!(
        cmp9[1].lead.customer_id.as_ref().map(|c| c.as_str()),
        Some("cx-3")
    );
    let funnel = leads::funnel(&fixture.db, "acme", Some(end), now)
        .await
        .expect("funnel");
    assert_eq!(
        (
            funnel.overall.captured,
            funnel.overall.qualified,
            funnel.overall.converted,
            funnel.overall.disqualified
        ),
        (3, 2, 1, 2)
    );
    assert_eq!(funnel.overall.disqualified_reasons[0].reason, "Too small");
    assert_eq!(funnel.overall.disqualified_reasons[0].count, 2);
    assert_eq!(funnel.by_campaign["cmp-9"].captured, 2);
    assert_eq!(funnel.by_source["ads"].converted, 1);

    // Rebuild = live.
    let live = fixture.db.dump(leads::TABLE, "1, 2").await.expect("dump");
    assert!(live.len() > 10, "{} lead rows", live.len());
    request_rebuild(&fixture.db, "leads")
        .await
        .expect("request");
    fixture.catch_up().await;
    let rebuilt = fixture.db.dump(leads::TABLE, "1, 2").await.expect("dump");
    assert_eq!(live, rebuilt, "a rebuild gives the rows of the live run");

    // As of: the funnel at each cut equals the fold of the log's events that occurred
    // before it (leads erased by now left out, as in every answer).
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let batch = fixture
            .store
            .read_all(
                &crm_core::store::Scope::Tenant(TenantId::parse("acme").expect("tenant")),
                after,
                1_000,
            )
            .await
            .expect("read");
        let Some(last) = batch.last() else { break };
        after = last.position;
        log.extend(
            batch
                .into_iter()
                .map(|e| ProjectedEvent::decode(e).expect("decode")),
        );
    }
    let kept: std::collections::BTreeSet<String> = leads::list(
        &fixture.db,
        "acme",
        &LeadFilter {
            limit: 100_000,
            ..LeadFilter::default()
        },
        now,
    )
    .await
    .expect("all")
    .into_iter()
    .filter_map(|l| l.lead.lead_id.map(|i| i.to_string()))
    .collect();
    let start = log.first().map(|e| e.occurred_at).expect("log");
    let mut compared = 0;
    for quarter in 1..=4 {
        let cut = start + (end + chrono::Duration::minutes(20) - start) * quarter / 4;
        let from = Some(start + (cut - start) / 3);
        let mut folded: BTreeMap<String, Lead> = BTreeMap::new();
        for event in log.iter().filter(|e| e.occurred_at < cut) {
            if event.event.category() == "lead" {
                let id = event.event.entity_id().to_string();
                leads::fold::apply(folded.entry(id).or_default(), event);
            }
        }
        folded.retain(|id, _| kept.contains(id));
        let expected = funnel_of(folded.values(), from, cut);
        let answered = leads::funnel(&fixture.db, "acme", from, cut)
            .await
            .expect("funnel");
        assert_eq!(answered, expected, "as of {cut}");
        compared += usize::try_from(expected.overall.captured).unwrap_or(0);
    }
    assert!(compared > 10, "compared {compared} leads");
}

/// Two campaigns per tenant over the customers `events` registers: every third customer a
/// member of `cmp-1`, every fifth of `cmp-2`, some responses, spends in two currencies;
/// dated before the history, so later wins are attributed.
/// A consent regime, complaint lists, SLA targets and a calendar, outbound marketing mails
/// and NPS answers (with comments) for the customers of `events`, after them.
fn consent_and_satisfaction_events(events: &[Emitted]) -> Vec<Emitted> {
    let start = events.iter().map(|e| e.occurred_at).max().expect("events");
    let mut out = Vec::new();
    for tenant in ["acme", "globex"] {
        let t = |minutes: i64| (start + chrono::Duration::minutes(minutes)).to_rfc3339();
        let at_tenant = |event_type, data, at: String| Emitted {
            tenant,
            ..ev(event_type, data, &at)
        };
        out.push(at_tenant(
            "ConsentRegimeSet",
            json!({"regime": "opt_out"}),
            t(1),
        ));
        out.push(at_tenant(
            "ComplaintCategoriesSet",
            json!({"categories": ["billing", "delivery"], "causes": ["late"]}),
            t(2),
        ));
        out.push(at_tenant(
            "SlaTargetsSet",
            json!({"low": {"first_response_minutes": 600, "resolution_minutes": 6000},
                   "normal": {"first_response_minutes": 300, "resolution_minutes": 3000},
                   "high": {"first_response_minutes": 120, "resolution_minutes": 1200},
                   "urgent": {"first_response_minutes": 30, "resolution_minutes": 300},
                   "warning_percent": 60}),
            t(3),
        ));
        out.push(at_tenant(
            "BusinessCalendarSet",
            json!({"time_zone": "America/New_York",
                   "hours": {"monday": [["08:00", "18:00"]], "tuesday": [["08:00", "18:00"]],
                             "wednesday": [["08:00", "18:00"]], "thursday": [["08:00", "18:00"]],
                             "friday": [["08:00", "16:00"]], "saturday": [], "sunday": []},
                   "holidays": ["2026-07-03"]}),
            t(4),
        ));
        let customers: Vec<&str> = events
            .iter()
            .filter(|e| e.tenant == tenant && e.event_type == "CustomerRegistered")
            .filter_map(|e| e.data["customer_id"].as_str())
            .collect();
        for (i, customer) in customers.iter().enumerate().filter(|(i, _)| i % 4 == 0) {
            let minute = 10 + i as i64;
            out.push(at_tenant(
                "InteractionLogged",
                json!({"customer_id": customer, "interaction_id": format!("mkt-{i}"),
                       "channel": "email", "direction": "outbound", "purpose": "marketing"}),
                t(minute),
            ));
            out.push(at_tenant(
                "NpsAnswered",
                json!({"customer_id": customer, "answer_id": format!("nps-{i}"),
                       "score": i % 11, "comment": format!("comment {i}")}),
                t(minute),
            ));
        }
    }
    out
}

fn campaign_events(events: &[Emitted]) -> Vec<Emitted> {
    let start = events.first().map(|e| e.occurred_at).expect("events") - chrono::Duration::days(3);
    let mut out = Vec::new();
    for tenant in ["acme", "globex"] {
        let t = |minutes: i64| (start + chrono::Duration::minutes(minutes)).to_rfc3339();
        let at_tenant = |event_type, data, at: String| Emitted {
            tenant,
            ..ev(event_type, data, &at)
        };
        for (campaign, reach) in [
            ("cmp-1", ("channel", "email")),
            ("cmp-2", ("medium", "event")),
        ] {
            let mut launched = json!({"campaign_id": campaign, "name": campaign});
            launched[reach.0] = json!(reach.1);
            out.push(at_tenant("CampaignLaunched", launched, t(0)));
            out.push(at_tenant(
                "CampaignCostRecorded",
                json!({"campaign_id": campaign, "amount": "120.50", "currency": "EUR"}),
                t(1),
            ));
            out.push(at_tenant(
                "CampaignCostRecorded",
                json!({"campaign_id": campaign, "amount": "30", "currency": "USD"}),
                t(2),
            ));
        }
        let customers: Vec<&str> = events
            .iter()
            .filter(|e| e.tenant == tenant && e.event_type == "CustomerRegistered")
            .filter_map(|e| e.data["customer_id"].as_str())
            .collect();
        for (i, customer) in customers.iter().enumerate() {
            let minute = 10 + i as i64;
            if i % 3 == 0 {
                out.push(at_tenant(
                    "CampaignMemberAdded",
                    json!({"campaign_id": "cmp-1", "customer_id": customer}),
                    t(minute),
                ));
                if i % 2 == 0 {
                    out.push(at_tenant(
                        "CampaignMemberResponded",
                        json!({"campaign_id": "cmp-1", "customer_id": customer, "response": "clicked"}),
                        t(minute + 1),
                    ));
                }
            }
            if i % 5 == 0 {
                out.push(at_tenant(
                    "CampaignMemberAdded",
                    json!({"campaign_id": "cmp-2", "customer_id": customer}),
                    t(minute + 2),
                ));
            }
        }
        out.push(at_tenant(
            "CampaignMemberAdded",
            json!({"campaign_id": "cmp-2", "lead_id": "l-x"}),
            t(5),
        ));
    }
    out
}

pub async fn campaigns_rebuild_equals_live_and_figures_follow_the_log(fixture: &Fixture) {
    use crm_projections::campaigns;

    let mut events = history(17, 40, 1_600);
    let extra = campaign_events(&events);
    let members = |campaign: &str| {
        extra
            .iter()
            .filter(|e| {
                e.tenant == "acme"
                    && e.event_type == "CampaignMemberAdded"
                    && e.data["campaign_id"] == campaign
            })
            .count() as i64
    };
    let (expected_1, expected_2) = (members("cmp-1"), members("cmp-2"));
    let (first, second) = events.split_at(events.len() / 3);
    let mut ordered: Vec<Emitted> = first.to_vec();
    ordered.extend(extra.iter().cloned());
    ordered.extend(second.iter().cloned());
    events = ordered;
    let (first, second) = events.split_at(events.len() / 2);
    append_all(fixture.store.as_ref(), first).await;
    fixture.catch_up().await;
    append_all(fixture.store.as_ref(), second).await;
    fixture.catch_up().await;

    let reports = campaigns::reports(&fixture.db, "acme", None, 10)
        .await
        .expect("reports");
    assert_eq!(reports.len(), 2);
    let (one, two) = (&reports[0], &reports[1]);
    assert_eq!(one.campaign_id, "cmp-1");
    assert_eq!(one.members, expected_1);
    assert_eq!(two.members, expected_2);
    assert_eq!(two.lead_members, 1);
    assert!(
        expected_1 > 3 && expected_2 > 2,
        "{expected_1} {expected_2}"
    );
    assert_eq!(
        serde_json::to_value(&one.cost).expect("json"),
        json!([{"amount": "120.50", "currency": "EUR"}, {"amount": "30.00", "currency": "USD"}])
    );
    // The touches are dated before every deal, so the history's deals are influenced.
    assert!(one.opportunities_influenced + two.opportunities_influenced > 0);

    // Rebuild = live, reports included.
    let live = (
        fixture
            .db
            .dump(campaigns::TABLE, "1, 2")
            .await
            .expect("dump"),
        fixture
            .db
            .dump(campaigns::TOUCHES, "1, 2")
            .await
            .expect("dump"),
    );
    assert!(!live.0.is_empty() && !live.1.is_empty());
    request_rebuild(&fixture.db, "campaigns")
        .await
        .expect("request");
    fixture.catch_up().await;
    let rebuilt = (
        fixture
            .db
            .dump(campaigns::TABLE, "1, 2")
            .await
            .expect("dump"),
        fixture
            .db
            .dump(campaigns::TOUCHES, "1, 2")
            .await
            .expect("dump"),
    );
    assert_eq!(live, rebuilt, "a rebuild gives the rows of the live run");
    let again = campaigns::reports(&fixture.db, "acme", None, 10)
        .await
        .expect("reports");
    assert_eq!(again, reports);
}

fn eur(amount: &str) -> Money {
    Money::parse(amount, "EUR").expect("amount")
}

fn line(product: &str, name: &str, quantity: u64, price: &str) -> Value {
    json!({"product_id": product, "name": name, "quantity": quantity, "unit_price": price})
}

fn products_query(currency: &str) -> orders::ProductsQuery {
    orders::ProductsQuery {
        currency: crm_core::money::currency::Currency::parse(currency).expect("currency"),
        from: None,
        to: None,
        limit: 10,
        min_together: 1,
    }
}

/// Appends `OrderPlaced` at schema version 1, as a store written before order lines holds it.
async fn append_v1_order(fixture: &Fixture, tenant: &str, data: Value, occurred_at: &str) {
    let stream = crm_core::envelope::StreamId::parse(&format!(
        "customer-{}",
        data["customer_id"].as_str().expect("customer")
    ))
    .expect("stream");
    let event = crm_core::envelope::NewEvent::new("OrderPlaced", &data)
        .with_schema_version(1)
        .with_occurred_at(at(occurred_at));
    fixture
        .store
        .append(
            &TenantId::parse(tenant).expect("tenant"),
            &stream,
            crm_core::store::ExpectedRevision::Any,
            vec![event],
        )
        .await
        .expect("append a version 1 order");
}

/// Issue 18, item 6: order lines give each customer's products on the 360 (a merge brings the
/// duplicate's, per currency) and the products report (top products, pairs bought together
/// with support, confidence and lift), all figures computed by hand below; a version 1
/// `OrderPlaced` and its version 2 equivalent without lines give identical read models.
pub async fn order_lines_give_products_and_version_1_orders_project_as_version_2(
    fixture: &Fixture,
) {
    let order = |customer: &str, id: &str, amount: &str, currency: &str, lines: Value| json!({"customer_id": customer, "order_id": id, "amount": amount, "currency": currency, "lines": lines});
    let mut o3 = order(
        "c-2",
        "o-3",
        "35.00",
        "EUR",
        json!([
            line("p-tea", "Green tea", 1, "9.00"),
            line("p-pot", "Teapot", 1, "30.00")
        ]),
    );
    o3["discount"] = json!("4.00");
    let events = vec![
        ev(
            "CustomerRegistered",
            json!({"customer_id": "c-1", "kind": "person", "name": "Ada"}),
            "2026-01-01T09:00:00Z",
        ),
        ev(
            "OrderPlaced",
            order(
                "c-1",
                "o-1",
                "25.00",
                "EUR",
                json!([
                    line("p-tea", "Tea", 2, "10.00"),
                    line("p-mug", "Mug", 1, "5.00")
                ]),
            ),
            "2026-01-10T10:00:00Z",
        ),
        ev(
            "OrderPlaced",
            order(
                "c-1",
                "o-2",
                "10.00",
                "EUR",
                json!([line("p-tea", "Tea", 1, "10.00")]),
            ),
            "2026-02-01T10:00:00Z",
        ),
        ev("OrderPlaced", o3, "2026-02-05T10:00:00Z"),
        ev(
            "OrderPlaced",
            order(
                "c-2",
                "o-4",
                "12.00",
                "USD",
                json!([line("p-mug", "Mug", 3, "4.00")]),
            ),
            "2026-02-06T10:00:00Z",
        ),
        ev(
            "OrderPlaced",
            order(
                "c-3",
                "o-6",
                "20.00",
                "EUR",
                json!([
                    line("p-tea", "Green tea", 1, "10.00"),
                    line("p-mug", "Mug", 2, "5.00")
                ]),
            ),
            "2026-02-10T10:00:00Z",
        ),
        ev(
            "OrderPlaced",
            order(
                "c-3",
                "o-7",
                "30.00",
                "EUR",
                json!([line("p-pot", "Teapot", 1, "30.00")]),
            ),
            "2026-02-12T10:00:00Z",
        ),
        ev(
            "CustomerMerged",
            json!({"customer_id": "c-2", "into_customer_id": "c-1"}),
            "2026-03-01T10:00:00Z",
        ),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    // A version 1 order (no lines) in the same store.
    append_v1_order(
        fixture,
        "t1",
        json!({"customer_id": "c-3", "order_id": "o-5", "amount": "50.00", "currency": "EUR"}),
        "2026-02-11T10:00:00Z",
    )
    .await;
    fixture.catch_up().await;

    // The survivor holds its own products and the duplicate's; the name it had stands.
    let c1 = get_360(fixture, "c-1").await;
    let view = c1.view(at("2026-03-02T00:00:00Z"), Vec::new());
    let products: Vec<(String, String, u64, Vec<Money>)> = view
        .products
        .iter()
        .map(|p| {
            (
                p.product_id.clone(),
                p.name.clone(),
                p.quantity,
                p.revenue.clone(),
            )
        })
        .collect();
    assert_eq!(
        products,
        vec![
            (
                "p-mug".into(),
                "Mug".into(),
                4,
                vec![eur("5.00"), usd("12.00")]
            ),
            ("p-pot".into(), "Teapot".into(), 1, vec![eur("30.00")]),
            ("p-tea".into(), "Tea".into(), 4, vec![eur("39.00")]),
        ]
    );
    let c3 = get_360(fixture, "c-3").await;
    assert_eq!(c3.orders.len(), 3, "o-5 (version 1), o-6, o-7");
    let products: Vec<(String, String, u64, Vec<Money>)> = c3
        .view(at("2026-03-02T00:00:00Z"), Vec::new())
        .products
        .into_iter()
        .map(|p| (p.product_id, p.name, p.quantity, p.revenue))
        .collect();
    assert_eq!(
        products,
        vec![
            ("p-mug".into(), "Mug".into(), 2, vec![eur("10.00")]),
            ("p-pot".into(), "Teapot".into(), 1, vec![eur("30.00")]),
            ("p-tea".into(), "Green tea".into(), 1, vec![eur("10.00")]),
        ]
    );

    // The report in EUR: N = 5 orders with lines (o-1, o-2, o-3, o-6, o-7; o-5 has none).
    let report = orders::products_report(&fixture.db, "t1", &products_query("EUR"))
        .await
        .expect("report");
    assert_eq!((report.orders, report.products), (5, 3));
    let figures = |list: &[orders::ProductFigures]| -> Vec<(String, String, u64, u64, Money)> {
        list.iter()
            .map(|p| {
                (
                    p.product_id.clone(),
                    p.name.clone(),
                    p.quantity,
                    p.orders,
                    p.revenue,
                )
            })
            .collect()
    };
    let pot = ("p-pot".to_owned(), "Teapot".to_owned(), 2, 2, eur("60.00"));
    // Tea: 2 × 10.00 + 10.00 + 9.00 + 10.00; its latest line (o-6) names it "Green tea".
    let tea = (
        "p-tea".to_owned(),
        "Green tea".to_owned(),
        5,
        4,
        eur("49.00"),
    );
    let mug = ("p-mug".to_owned(), "Mug".to_owned(), 3, 2, eur("15.00"));
    assert_eq!(
        figures(&report.top_by_revenue),
        vec![pot.clone(), tea.clone(), mug.clone()]
    );
    assert_eq!(figures(&report.top_by_quantity), vec![tea, mug, pot]);
    // Pairs: mug+tea in o-1 and o-6; pot+tea in o-3. Orders with tea 4, mug 2, pot 2.
    let pairs: Vec<(String, String, u64, f64, f64, f64, f64)> = report
        .bought_together
        .iter()
        .map(|p| {
            (
                p.product_a.clone(),
                p.product_b.clone(),
                p.orders_together,
                p.support,
                p.confidence_a_to_b,
                p.confidence_b_to_a,
                p.lift,
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            // support 2/5, confidence 2/2 and 2/4, lift 2 × 5 / (2 × 4).
            ("p-mug".into(), "p-tea".into(), 2, 0.4, 1.0, 0.5, 1.25),
            // support 1/5, confidence 1/2 and 1/4, lift 1 × 5 / (2 × 4).
            ("p-pot".into(), "p-tea".into(), 1, 0.2, 0.5, 0.25, 0.625),
        ]
    );
    // A period: o-2, o-3 and o-6 (from included, to excluded); pairs once only left out.
    let mut period = products_query("EUR");
    period.from = Some(at("2026-02-01T10:00:00Z"));
    period.to = Some(at("2026-02-12T10:00:00Z"));
    period.min_together = 2;
    let report = orders::products_report(&fixture.db, "t1", &period)
        .await
        .expect("report");
    assert_eq!(report.orders, 3);
    assert_eq!(
        report
            .top_by_revenue
            .iter()
            .map(|p| (p.product_id.as_str(), p.quantity, p.revenue))
            .collect::<Vec<_>>(),
        vec![
            ("p-pot", 1, eur("30.00")),
            ("p-tea", 3, eur("29.00")),
            ("p-mug", 2, eur("10.00"))
        ]
    );
    assert!(report.bought_together.is_empty());
    // USD is its own report: never summed with EUR.
    let usd_report = orders::products_report(&fixture.db, "t1", &products_query("USD"))
        .await
        .expect("report");
    assert_eq!(usd_report.orders, 1);
    assert_eq!(
        figures(&usd_report.top_by_revenue),
        vec![("p-mug".into(), "Mug".into(), 3, 1, usd("12.00"))]
    );

    // The same order at version 1 (tenant t2) and at version 2 without lines (t3): the same
    // 360, the same as-of fold, no order lines.
    let v2 = Emitted {
        tenant: "t3",
        ..ev(
            "OrderPlaced",
            json!({"customer_id": "c-9", "order_id": "o-1", "amount": "12.50", "currency": "EUR"}),
            "2026-04-01T10:00:00Z",
        )
    };
    append_v1_order(fixture, "t2", v2.data.clone(), "2026-04-01T10:00:00Z").await;
    append_all(fixture.store.as_ref(), std::slice::from_ref(&v2)).await;
    fixture.catch_up().await;
    let positionless = |mut doc: Customer360| {
        doc.last_position = 0;
        doc.purchases_position = 0;
        doc
    };
    let read = |tenant: &'static str| async move {
        customer360::get(&fixture.db, tenant, "c-9")
            .await
            .expect("get")
            .expect("a 360 row")
    };
    let (from_v1, from_v2) = (read("t2").await, read("t3").await);
    assert_eq!(from_v1.orders.len(), 1);
    assert_eq!(positionless(from_v1.clone()), positionless(from_v2.clone()));
    for (tenant, live) in [("t2", from_v1), ("t3", from_v2)] {
        let folded = customer_as_of(
            fixture.store.as_ref(),
            &fixture.db,
            &TenantId::parse(tenant).expect("tenant"),
            "c-9",
            Cut::OccurredBy(at("2026-04-02T00:00:00Z")),
        )
        .await
        .expect("as of")
        .expect("folded");
        assert_eq!(
            folded.state, live,
            "{tenant}: the as-of fold is the read model"
        );
    }
    for tenant in ["t2", "t3"] {
        let report = orders::products_report(&fixture.db, tenant, &products_query("EUR"))
            .await
            .expect("report");
        assert_eq!((report.orders, report.products), (0, 0));
    }
}

type AttainmentLine = (
    String,
    Money,
    Money,
    u64,
    Option<f64>,
    Money,
    Money,
    u64,
    Option<f64>,
);

async fn attainment_at(fixture: &Fixture, as_of: Option<&str>, now: &str) -> Vec<AttainmentLine> {
    let filter = pipeline::PipelineFilter {
        owner: Some("u-1".into()),
        as_of: as_of.map(at),
    };
    pipeline::summary_with_attainment(&fixture.db, "t1", &filter, at(now))
        .await
        .expect("pipeline")
        .attainment
        .expect("attainment with an owner")
        .into_iter()
        .map(|p| {
            (
                p.period,
                p.quota,
                p.won,
                p.won_deals,
                p.attainment,
                p.gap,
                p.weighted_pipeline,
                p.open_deals,
                p.coverage,
            )
        })
        .collect()
}

/// Issue 18, item 7: quotas set (and raised) as events; attainment of one owner's month and
/// quarter holding the evaluation time, now and as of past times, in the quota's currency
/// only; figures computed by hand below.
pub async fn quota_attainment_is_right_now_and_as_of_past_times(fixture: &Fixture) {
    let quota = |period: &str, amount: &str, time: &str| {
        ev(
            "QuotaSet",
            json!({"owner": "u-1", "period": period, "amount": amount, "currency": "EUR"}),
            time,
        )
    };
    let deal =
        |id: &str, owner: &str, amount: &str, currency: &str, close: &str, p: u8, time: &str| {
            ev(
                "OpportunityOpened",
                json!({"opportunity_id": id, "customer_id": "c-1", "name": format!("Deal {id}"),
                   "amount": amount, "currency": currency, "stage": "Proposal",
                   "close_date": close, "owner": owner, "probability": p}),
                time,
            )
        };
    let won = |id: &str, time: &str| ev("OpportunityWon", json!({"opportunity_id": id}), time);
    let events = vec![
        quota("2026-Q1", "25000.00", "2026-01-01T00:00:00Z"),
        deal(
            "op-5",
            "u-1",
            "2000.00",
            "EUR",
            "2026-02-10",
            50,
            "2026-02-01T00:00:00Z",
        ),
        won("op-5", "2026-02-10T12:00:00Z"),
        quota("2026-03", "10000.00", "2026-02-20T00:00:00Z"),
        deal(
            "op-1",
            "u-1",
            "4000.00",
            "EUR",
            "2026-03-20",
            40,
            "2026-03-01T00:00:00Z",
        ),
        deal(
            "op-2",
            "u-1",
            "6000.00",
            "EUR",
            "2026-03-28",
            50,
            "2026-03-02T00:00:00Z",
        ),
        deal(
            "op-3",
            "u-1",
            "1000.00",
            "EUR",
            "2026-04-15",
            20,
            "2026-03-03T00:00:00Z",
        ),
        deal(
            "op-4",
            "u-1",
            "500.00",
            "USD",
            "2026-03-05",
            90,
            "2026-03-04T00:00:00Z",
        ),
        won("op-4", "2026-03-05T00:00:00Z"),
        won("op-1", "2026-03-10T00:00:00Z"),
        deal(
            "op-6",
            "u-2",
            "9999.00",
            "EUR",
            "2026-03-11",
            90,
            "2026-03-05T00:00:00Z",
        ),
        won("op-6", "2026-03-11T00:00:00Z"),
        quota("2026-03", "12000.00", "2026-03-15T00:00:00Z"),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let m = |amount: &str| Money::parse(amount, "EUR").expect("amount");
    // 12 March: March's quota is 10,000 (raised on the 15th); op-1 won (4,000), op-2 open
    // closing in March at 50 % (3,000); the quarter adds op-5, won in February.
    assert_eq!(
        attainment_at(
            fixture,
            Some("2026-03-12T00:00:00Z"),
            "2026-03-25T00:00:00Z"
        )
        .await,
        vec![
            (
                "2026-03".into(),
                m("10000.00"),
                m("4000.00"),
                1,
                Some(0.4),
                m("6000.00"),
                m("3000.00"),
                1,
                Some(0.5)
            ),
            (
                "2026-Q1".into(),
                m("25000.00"),
                m("6000.00"),
                2,
                Some(0.24),
                m("19000.00"),
                m("3000.00"),
                1,
                Some(3000.0 / 19000.0)
            ),
        ]
    );
    // 9 March: op-1 not won yet, open beside op-2; as the pipeline's as-of figures take it,
    // at its stage's default probability then (Proposal, 50 %: 2,000), since a won deal's
    // probability today is 100.
    assert_eq!(
        attainment_at(
            fixture,
            Some("2026-03-09T00:00:00Z"),
            "2026-03-25T00:00:00Z"
        )
        .await[0],
        (
            "2026-03".into(),
            m("10000.00"),
            m("0.00"),
            0,
            Some(0.0),
            m("10000.00"),
            m("5000.00"),
            2,
            Some(0.5)
        ),
    );
    // 20 March, and now (25 March): the raised quota.
    let raised: AttainmentLine = (
        "2026-03".into(),
        m("12000.00"),
        m("4000.00"),
        1,
        Some(4000.0 / 12000.0),
        m("8000.00"),
        m("3000.00"),
        1,
        Some(0.375),
    );
    assert_eq!(
        attainment_at(
            fixture,
            Some("2026-03-20T00:00:00Z"),
            "2026-03-25T00:00:00Z"
        )
        .await[0],
        raised
    );
    assert_eq!(
        attainment_at(fixture, None, "2026-03-25T00:00:00Z").await[0],
        raised
    );
    // April: no quota in force for the month or the quarter.
    assert!(
        attainment_at(
            fixture,
            Some("2026-04-02T00:00:00Z"),
            "2026-04-02T00:00:00Z"
        )
        .await
        .is_empty()
    );
    // Before the quarter's quota was set.
    assert!(
        attainment_at(
            fixture,
            Some("2025-12-31T00:00:00Z"),
            "2026-03-25T00:00:00Z"
        )
        .await
        .is_empty()
    );
    // Without an owner, no attainment.
    let all = pipeline::summary_with_attainment(
        &fixture.db,
        "t1",
        &pipeline::PipelineFilter::default(),
        at("2026-03-25T00:00:00Z"),
    )
    .await
    .expect("pipeline");
    assert_eq!(all.attainment, None);
}

/// Issue 18, item 4: the consent read model judges each marketing contact once, against the
/// marketing decisions and the regime recorded before it in the log, whichever batch brought
/// them; a rebuild gives the rows of the live run; the 360's consent record at a cut agrees
/// with the log cut there; version 1 campaign labels are upcast.
pub async fn consent_contacts_are_judged_by_what_the_log_held_before_them(fixture: &Fixture) {
    use crm_projections::consent;

    let day = |d: u32| format!("2026-03-{d:02}T09:00:00Z");
    let consent_ev = |customer: &str, channel: &str, granted: bool, d: u32| {
        ev(
            "CustomerConsentChanged",
            json!({"customer_id": customer, "channel": channel, "purpose": "marketing", "granted": granted}),
            &day(d),
        )
    };
    let mail = |customer: &str, id: &str, channel: &str, d: u32| {
        ev(
            "InteractionLogged",
            json!({"customer_id": customer, "interaction_id": id, "channel": channel,
                   "direction": "outbound", "purpose": "marketing"}),
            &day(d),
        )
    };
    let first = vec![
        consent_ev("c-1", "email", true, 1),
        consent_ev("c-2", "email", true, 1),
        // A service consent never allows marketing.
        ev(
            "CustomerConsentChanged",
            json!({"customer_id": "c-3", "channel": "email", "purpose": "service", "granted": true}),
            &day(1),
        ),
        mail("c-1", "m-1", "email", 2),
        mail("c-3", "m-2", "email", 2),
    ];
    let second = vec![
        // Judged against the first batch's rows: c-2 withdrew in this batch, before m-3.
        mail("c-2", "m-0", "email", 3),
        consent_ev("c-2", "email", false, 3),
        mail("c-2", "m-3", "email", 3),
        mail("c-1", "m-4", "sms", 3),
        ev("ConsentRegimeSet", json!({"regime": "opt_out"}), &day(4)),
        mail("c-3", "m-5", "email", 5),
        mail("c-1", "m-6", "phone", 5),
        // Another tenant's regime and contacts never mix with t1's.
        Emitted {
            tenant: "t2",
            ..mail("c-3", "m-7", "email", 5)
        },
    ];
    append_all(fixture.store.as_ref(), &first).await;
    fixture.catch_up().await;
    append_all(fixture.store.as_ref(), &second).await;
    fixture.catch_up().await;

    let all = consent::violations(&fixture.db, "t1", &Default::default(), 100)
        .await
        .expect("violations");
    let judged: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|c| {
            (
                c.interaction_id.as_str(),
                c.consent.as_str(),
                c.regime.as_str(),
            )
        })
        .collect();
    // m-1 and m-0 had consent; m-5 and m-6 (never given) came under opt-out.
    assert_eq!(
        judged,
        vec![
            ("m-2", "never_given", "opt_in"),
            ("m-3", "withdrawn", "opt_in"),
            ("m-4", "never_given", "opt_in"),
        ]
    );
    let other = consent::violations(&fixture.db, "t2", &Default::default(), 100)
        .await
        .expect("violations");
    assert_eq!(other.len(), 1, "t2 never set opt-out");
    assert_eq!(other[0].interaction_id, "m-7");
    let regime = consent::regime(&fixture.db, "t1", None)
        .await
        .expect("regime");
    assert_eq!(regime.regime.as_str(), "opt_out");
    let before = consent::regime(
        &fixture.db,
        "t1",
        Some(crm_projections::asof::Cut::OccurredBy(at(&day(3)))),
    )
    .await
    .expect("regime");
    assert_eq!((before.regime.as_str(), before.set_at), ("opt_in", None));

    // The 360's record at a cut is the log cut there.
    let record = consent::record(
        &fixture.db,
        "t1",
        &["c-2"],
        Some(crm_projections::asof::Cut::OccurredBy(at(&day(2)))),
    )
    .await
    .expect("record");
    assert_eq!((record.changes, record.marketing_contacts), (1, 0));
    let record = consent::record(&fixture.db, "t1", &["c-2"], None)
        .await
        .expect("record");
    assert_eq!(
        (
            record.changes,
            record.marketing_contacts,
            record.violation_count
        ),
        (2, 2, 1)
    );
    assert!(!record.history[0].granted, "newest first");

    // Rebuild = live.
    let tables = [consent::CHANGES, consent::REGIMES, consent::CONTACTS];
    let mut live = Vec::new();
    for table in tables {
        live.push(fixture.db.dump(table, "1, 2").await.expect("dump"));
    }
    assert!(live.iter().all(|rows| !rows.is_empty()));
    request_rebuild(&fixture.db, consent::NAME)
        .await
        .expect("request");
    fixture.catch_up().await;
    let mut rebuilt = Vec::new();
    for table in tables {
        rebuilt.push(fixture.db.dump(table, "1, 2").await.expect("dump"));
    }
    assert_eq!(live, rebuilt, "a rebuild gives the rows of the live run");

    // Version 1 campaigns: a label naming a consent channel becomes it; others the medium.
    for (id, label) in [("cmp-v1a", " Email"), ("cmp-v1b", "webinar")] {
        let event = crm_core::envelope::NewEvent::new(
            "CampaignLaunched",
            &json!({"campaign_id": id, "name": id, "channel": label}),
        )
        .with_schema_version(1)
        .with_occurred_at(at(&day(6)));
        fixture
            .store
            .append(
                &TenantId::parse("t1").expect("tenant"),
                &crm_core::envelope::StreamId::parse(&format!("campaign-{id}")).expect("stream"),
                crm_core::store::ExpectedRevision::Any,
                vec![event],
            )
            .await
            .expect("append a version 1 launch");
    }
    fixture.catch_up().await;
    let reports = crm_projections::campaigns::reports(&fixture.db, "t1", None, 10)
        .await
        .expect("reports");
    let reach: Vec<(Option<&str>, Option<&str>)> = reports
        .iter()
        .map(|r| (r.channel.as_deref(), r.medium.as_deref()))
        .collect();
    assert_eq!(reach, vec![(Some("email"), None), (None, Some("webinar"))]);
}

fn service_events() -> Vec<Emitted> {
    let open = |case: &str, priority: &str, at: &str| {
        ev(
            "CaseOpened",
            json!({"case_id": case, "customer_id": "c-1", "subject": format!("Help {case}"),
                   "channel": "email", "priority": priority}),
            at,
        )
    };
    let simple = |kind: &'static str, case: &str, at: &str| ev(kind, json!({"case_id": case}), at);
    let week: Value = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .map(|day| ((*day).to_owned(), json!([["09:00", "17:00"]])))
        .chain([
            ("saturday".to_owned(), json!([])),
            ("sunday".to_owned(), json!([])),
        ])
        .collect::<serde_json::Map<_, _>>()
        .into();
    vec![
        // k-2: before any setting, the defaults in elapsed time (urgent: 60 / 240 minutes,
        // warnings at 75 %).
        open("k-2", "urgent", "2026-03-01T10:00:00Z"),
        ev(
            "CaseResponded",
            json!({"case_id": "k-2", "agent": "u-1"}),
            "2026-03-01T10:30:00Z",
        ),
        simple("CaseResolved", "k-2", "2026-03-01T15:00:00Z"),
        ev(
            "SlaTargetsSet",
            json!({
                "low": {"first_response_minutes": 1440, "resolution_minutes": 10080},
                "normal": {"first_response_minutes": 480, "resolution_minutes": 4320},
                "high": {"first_response_minutes": 120, "resolution_minutes": 1440},
                "urgent": {"first_response_minutes": 60, "resolution_minutes": 240},
                "warning_percent": 50
            }),
            "2026-03-02T08:00:00Z",
        ),
        ev(
            "BusinessCalendarSet",
            json!({"time_zone": "Europe/Paris", "hours": week, "holidays": ["2026-03-06"]}),
            "2026-03-02T08:00:00Z",
        ),
        // k-1 and k-3: Paris working hours (09:00-17:00, UTC+1 in March), the targets set.
        open("k-1", "normal", "2026-03-02T15:00:00Z"),
        open("k-3", "high", "2026-03-02T15:30:00Z"),
        simple("CasePaused", "k-1", "2026-03-03T09:00:00Z"),
        simple("CaseResumed", "k-1", "2026-03-04T10:00:00Z"),
        simple("CaseClosed", "k-1", "2026-03-05T08:30:00Z"),
    ]
}

fn lines_of(backlog: &backlog::Backlog) -> Vec<(String, Option<String>, bool, bool, bool)> {
    backlog
        .open
        .iter()
        .map(|line| {
            (
                line.case.case_id.as_ref().expect("id").to_string(),
                line.next_due.map(|t| t.to_rfc3339()),
                line.paused,
                line.breaches.first_response,
                line.breaches.resolution,
            )
        })
        .collect()
}

/// Issue 19: settings are facts each case takes at its open; clocks count business hours of
/// the calendar in force then, without paused time; every case is judged, open or closed;
/// the backlog as it stood at past times is the cases folded up to then (every figure
/// computed by hand below, docs/service.md's worked example); as of a later time it equals
/// the live backlog; a rebuild gives the rows of the live run.
pub async fn the_backlog_as_it_stood_is_judged_on_business_hours_pauses_and_every_case(
    fixture: &Fixture,
) {
    let events = service_events();
    append_all(fixture.store.as_ref(), &events[..5]).await;
    fixture.catch_up().await;
    append_all(fixture.store.as_ref(), &events[5..]).await;
    fixture.catch_up().await;
    let t = |text: &str| at(text);

    // Live, judged on Thursday 5 March 12:00Z.
    let live = backlog::backlog(&fixture.db, "t1", t("2026-03-05T12:00:00Z"), 0, 10)
        .await
        .expect("backlog");
    assert_eq!(live.basis, "live");
    assert_eq!(
        lines_of(&live),
        vec![(
            "k-3".into(),
            // 30 minutes on Monday, 90 on Tuesday from 09:00 Paris: 10:30 Paris.
            Some("2026-03-03T09:30:00+00:00".into()),
            false,
            true,
            false
        )]
    );
    // k-1 closed unanswered after its response was due; k-3 unanswered past it.
    assert_eq!(live.first_response_breaches, 2);
    // k-2 resolved at 15:00Z, due 14:00Z.
    assert_eq!(live.resolution_breaches, 1);
    assert_eq!(live.first_response_warnings, 2, "k-1 and k-3, not k-2");
    assert_eq!(live.resolution_warnings, 2, "k-2 and k-3, not k-1");
    assert_eq!(live.open_count, 1);
    assert_eq!(live.targets.warning_percent, 50);
    assert_eq!(live.targets.targets.high.first_response_minutes, 120);
    let k1 = backlog::cases::list(
        &fixture.db,
        "t1",
        &backlog::CaseFilter {
            status: Some(backlog::CaseStatus::Closed),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .expect("cases");
    assert_eq!(k1.len(), 1);
    let clocks = k1[0].case.clocks.clone().expect("clocks");
    // 1 h Monday, 1 h Tuesday, paused to Wednesday 11:00 Paris, 6 h more: 17:00 Paris.
    assert_eq!(clocks.first_response.due, Some(t("2026-03-04T16:00:00Z")));
    // 4 h (50 %): 2 h before the pause, 2 h after it.
    assert_eq!(
        clocks.first_response.warning,
        Some(t("2026-03-04T12:00:00Z"))
    );
    assert_eq!(
        clocks.first_response.stopped_at,
        Some(t("2026-03-05T08:30:00Z"))
    );
    // 72 working hours, Friday 6 March a holiday: Tuesday 17 March 17:00 Paris.
    assert_eq!(clocks.resolution.due, Some(t("2026-03-17T16:00:00Z")));
    assert_eq!(k1[0].case.pauses.len(), 1);

    // As it stood on Tuesday 3 March 12:00Z: k-1 paused (6 h left, no due time), k-3 late.
    let tuesday = backlog::backlog_as_of(&fixture.db, "t1", t("2026-03-03T12:00:00Z"), 0, 10)
        .await
        .expect("backlog");
    assert_eq!(tuesday.basis, "as_of");
    assert_eq!(
        lines_of(&tuesday),
        vec![
            (
                "k-3".into(),
                Some("2026-03-03T09:30:00+00:00".into()),
                false,
                true,
                false
            ),
            ("k-1".into(), None, true, false, false),
        ]
    );
    let paused = &tuesday.open[1];
    assert_eq!(
        paused
            .case
            .clocks
            .as_ref()
            .and_then(|c| c.first_response.paused_seconds_left),
        Some(6 * 3600)
    );
    assert_eq!(
        (
            tuesday.first_response_breaches,
            tuesday.resolution_breaches,
            tuesday.paused
        ),
        (1, 1, 1)
    );
    // Resumed at that very instant on Wednesday: due 16:00Z, not late yet.
    let wednesday = backlog::backlog_as_of(&fixture.db, "t1", t("2026-03-04T10:00:00Z"), 0, 10)
        .await
        .expect("backlog");
    assert_eq!(
        lines_of(&wednesday)[1],
        (
            "k-1".into(),
            Some("2026-03-04T16:00:00+00:00".into()),
            false,
            false,
            false
        )
    );
    // Thursday 08:00Z, before the close: k-1 open and late.
    let thursday = backlog::backlog_as_of(&fixture.db, "t1", t("2026-03-05T08:00:00Z"), 0, 10)
        .await
        .expect("backlog");
    assert_eq!(thursday.open_count, 2);
    assert!(
        thursday
            .open
            .iter()
            .all(|line| line.breaches.first_response)
    );
    // Before anything: nothing.
    let before = backlog::backlog_as_of(&fixture.db, "t1", t("2026-02-01T00:00:00Z"), 0, 10)
        .await
        .expect("backlog");
    assert_eq!((before.open_count, before.by_status.len()), (0, 0));
    assert_eq!(before.targets.warning_percent, 75, "the defaults then");

    // At each of those times it is the live backlog of a store that holds only the events
    // that had happened by then (here a prefix of the log), judged then.
    for (i, when) in [
        "2026-03-03T12:00:00Z",
        "2026-03-04T10:00:00Z",
        "2026-03-05T08:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        let cut = t(when);
        let fresh = fixture.another(&format!("backlog_cut_{i}")).await;
        let happened: Vec<Emitted> = events
            .iter()
            .filter(|e| e.occurred_at <= cut)
            .cloned()
            .collect();
        append_all(fresh.store.as_ref(), &happened).await;
        fresh.catch_up().await;
        let folded = backlog::backlog(&fresh.db, "t1", cut, 0, 10)
            .await
            .expect("backlog");
        let past = backlog::backlog_as_of(&fixture.db, "t1", cut, 0, 10)
            .await
            .expect("backlog");
        let mut folded = serde_json::to_value(&folded).expect("json");
        let mut past = serde_json::to_value(&past).expect("json");
        folded["basis"] = json!(null);
        past["basis"] = json!(null);
        assert_eq!(past, folded, "as of {when}");
    }

    // As of a time after every event, judged then, it is the live backlog.
    let later = t("2030-01-01T00:00:00Z");
    let past = backlog::backlog_as_of(&fixture.db, "t1", later, 0, 10)
        .await
        .expect("backlog");
    let now = backlog::backlog(&fixture.db, "t1", later, 0, 10)
        .await
        .expect("backlog");
    let comparable = |b: &backlog::Backlog| {
        let mut value = serde_json::to_value(b).expect("json");
        value["basis"] = json!(null);
        value
    };
    assert_eq!(comparable(&past), comparable(&now));

    // Rebuild = live.
    let tables = [backlog::TABLE, backlog::SETTINGS];
    let mut before_rebuild = Vec::new();
    for table in tables {
        before_rebuild.push(fixture.db.dump(table, "1, 2").await.expect("dump"));
    }
    request_rebuild(&fixture.db, backlog::NAME)
        .await
        .expect("request");
    fixture.catch_up().await;
    let mut rebuilt = Vec::new();
    for table in tables {
        rebuilt.push(fixture.db.dump(table, "1, 2").await.expect("dump"));
    }
    assert_eq!(before_rebuild, rebuilt);
}

/// Issue 19, items 4 and 5: the service quality read model folds complaints (category, first
/// resolution, root cause) and CSAT per case, and NPS answers, whichever batch brings them;
/// the reports are exact (figures computed by hand); a customer's erasure clears its
/// comments (and those of a customer merged into it), and a rebuild gives the live rows;
/// tenants never mix; the latest answers at a cut are those the log held then.
pub async fn complaints_and_satisfaction_fold_exactly_and_a_rebuild_equals_live(fixture: &Fixture) {
    use crm_projections::service_quality::{self, Period};

    let opened = |case: &str, customer: &str, priority: &str, time: &str| {
        ev(
            "CaseOpened",
            json!({"case_id": case, "customer_id": customer, "subject": "s", "channel": "web",
                   "priority": priority}),
            time,
        )
    };
    let case_ev = |event_type: &'static str, data: Value, time: &str| ev(event_type, data, time);
    let first = vec![
        ev(
            "ComplaintCategoriesSet",
            json!({"categories": ["billing", "delivery"], "causes": ["defect", "late"]}),
            "2026-01-01T00:00:00Z",
        ),
        opened("k-1", "c-1", "high", "2026-01-05T00:00:00Z"),
        case_ev(
            "CaseMarkedComplaint",
            json!({"case_id": "k-1", "category": "delivery"}),
            "2026-01-05T00:00:00Z",
        ),
        case_ev(
            "CaseResponded",
            json!({"case_id": "k-1", "agent": "u-1"}),
            "2026-01-05T01:00:00Z",
        ),
        // Recategorised: the last marking counts.
        case_ev(
            "CaseMarkedComplaint",
            json!({"case_id": "k-1", "category": "billing"}),
            "2026-01-05T02:00:00Z",
        ),
        case_ev(
            "CaseResolved",
            json!({"case_id": "k-1", "root_cause": "late"}),
            "2026-01-05T10:00:00Z",
        ),
        opened("k-2", "c-1", "low", "2026-01-20T00:00:00Z"),
        case_ev(
            "CaseMarkedComplaint",
            json!({"case_id": "k-2", "category": "billing"}),
            "2026-01-20T00:00:00Z",
        ),
        ev(
            "NpsAnswered",
            json!({"customer_id": "c-1", "answer_id": "n-1", "score": 3, "comment": "meh"}),
            "2026-01-21T00:00:00Z",
        ),
    ];
    let second = vec![
        // Resolved twice: the first resolution times it, the last cause counts.
        case_ev(
            "CaseResolved",
            json!({"case_id": "k-2", "root_cause": "late"}),
            "2026-01-20T20:00:00Z",
        ),
        case_ev(
            "CaseReopened",
            json!({"case_id": "k-2"}),
            "2026-01-21T00:00:00Z",
        ),
        case_ev(
            "CaseResolved",
            json!({"case_id": "k-2", "root_cause": "defect"}),
            "2026-01-25T00:00:00Z",
        ),
        case_ev(
            "CsatRecorded",
            json!({"case_id": "k-1", "score": 4, "comment": "fine"}),
            "2026-01-06T00:00:00Z",
        ),
        case_ev(
            "CsatRecorded",
            json!({"case_id": "k-2", "score": 1, "comment": "awful"}),
            "2026-02-02T00:00:00Z",
        ),
        opened("k-3", "c-2", "high", "2026-02-03T00:00:00Z"),
        case_ev(
            "CaseMarkedComplaint",
            json!({"case_id": "k-3", "category": "delivery"}),
            "2026-02-03T00:00:00Z",
        ),
        case_ev(
            "CaseAssigned",
            json!({"case_id": "k-3", "agent": "u-2"}),
            "2026-02-03T00:30:00Z",
        ),
        case_ev(
            "CaseResolved",
            json!({"case_id": "k-3"}),
            "2026-02-03T01:00:00Z",
        ),
        case_ev(
            "CsatRecorded",
            json!({"case_id": "k-3", "score": 5, "comment": "great"}),
            "2026-02-04T00:00:00Z",
        ),
        ev(
            "NpsAnswered",
            json!({"customer_id": "c-2", "answer_id": "n-2", "score": 10, "comment": "love"}),
            "2026-02-05T00:00:00Z",
        ),
        ev(
            "NpsAnswered",
            json!({"customer_id": "c-1", "answer_id": "n-3", "score": 9}),
            "2026-02-06T00:00:00Z",
        ),
        // Another tenant's answers never mix with t1's.
        Emitted {
            tenant: "t2",
            ..ev(
                "NpsAnswered",
                json!({"customer_id": "c-1", "answer_id": "n-1", "score": 0}),
                "2026-01-21T00:00:00Z",
            )
        },
    ];
    append_all(fixture.store.as_ref(), &first).await;
    fixture.catch_up().await;
    append_all(fixture.store.as_ref(), &second).await;
    fixture.catch_up().await;

    let lists = service_quality::lists(&fixture.db, "t1")
        .await
        .expect("lists");
    let in_force = lists.in_force.expect("lists in force");
    assert_eq!(in_force.categories, vec!["billing", "delivery"]);
    assert_eq!(in_force.causes, vec!["defect", "late"]);
    let none = service_quality::lists(&fixture.db, "t2")
        .await
        .expect("lists");
    assert_eq!((none.in_force, none.history.len()), (None, 0));
    let (from, to) = (at("2026-01-01T00:00:00Z"), at("2026-03-01T00:00:00Z"));
    let report = service_quality::complaints(&fixture.db, "t1", from, to)
        .await
        .expect("complaints");
    // k-1 billing 10 h, k-2 billing 20 h (first resolution), k-3 delivery 1 h.
    assert_eq!(report.complaints, 3);
    let billing = &report.by_category["billing"];
    assert_eq!(billing.complaints, 2);
    assert_eq!(billing.resolution.median_seconds, Some(54_000.0));
    assert_eq!(billing.resolution.p90_seconds, Some(68_400.0));
    assert_eq!(
        report.by_category["delivery"].resolution.median_seconds,
        Some(3_600.0)
    );
    assert_eq!(report.resolution.median_seconds, Some(36_000.0));
    assert_eq!(
        report.by_root_cause,
        BTreeMap::from([("defect".to_owned(), 1), ("late".to_owned(), 1)])
    );
    assert_eq!(report.without_root_cause, 1);
    assert_eq!(report.repeat_complainers.len(), 1);
    assert_eq!(
        (
            report.repeat_complainers[0].customer_id.as_str(),
            report.repeat_complainers[0].complaints
        ),
        ("c-1", 2)
    );
    let months: Vec<(&str, u64)> = report
        .trend
        .iter()
        .map(|m| (m.month.as_str(), m.complaints))
        .collect();
    assert_eq!(months, vec![("2026-01", 2), ("2026-02", 1)]);
    let january = service_quality::complaints(&fixture.db, "t1", from, at("2026-02-01T00:00:00Z"))
        .await
        .expect("complaints");
    assert_eq!(january.complaints, 2);
    assert!(!january.by_category.contains_key("delivery"));

    let report = service_quality::satisfaction(&fixture.db, "t1", from, to, Period::Month)
        .await
        .expect("satisfaction");
    // CSAT: k-1 4 (u-1, the first responder), k-2 1 (no agent), k-3 5 (u-2, assigned).
    assert_eq!(report.csat.overall.answers, 3);
    assert_eq!(report.csat.overall.satisfied, 2);
    assert_eq!(report.csat.overall.mean_score, Some(10.0 / 3.0));
    assert_eq!(report.csat.by_agent["u-1"].csat_percent, Some(100.0));
    assert_eq!(report.csat.by_agent["u-2"].mean_score, Some(5.0));
    assert_eq!(report.csat.without_agent.answers, 1);
    assert_eq!(report.csat.by_priority["high"].answers, 2);
    assert_eq!(report.csat.by_priority["low"].csat_percent, Some(0.0));
    let periods: Vec<(&str, u64)> = report
        .csat
        .by_period
        .iter()
        .map(|p| (p.period.as_str(), p.figures.answers))
        .collect();
    assert_eq!(periods, vec![("2026-01", 1), ("2026-02", 2)]);
    // NPS: January 3 (detractor): -100; February 10 and 9: 100; overall (2 - 1) / 3.
    assert_eq!(report.nps.overall.answers, 3);
    assert_eq!(report.nps.overall.nps, Some(100.0 / 3.0));
    let nps: Vec<(&str, Option<f64>)> = report
        .nps
        .by_period
        .iter()
        .map(|p| (p.period.as_str(), p.figures.nps))
        .collect();
    assert_eq!(
        nps,
        vec![("2026-01", Some(-100.0)), ("2026-02", Some(100.0))]
    );
    let other = service_quality::satisfaction(&fixture.db, "t2", from, to, Period::Week)
        .await
        .expect("satisfaction");
    assert_eq!(
        (other.csat.overall.answers, other.nps.overall.answers),
        (0, 1)
    );
    assert_eq!(other.nps.by_period[0].period, "2026-W04");

    // The latest answers, now and at a cut.
    let now = service_quality::latest(&fixture.db, "t1", &["c-1"], None)
        .await
        .expect("latest");
    let csat = now.latest_csat.expect("csat");
    assert_eq!(
        (csat.case_id.as_str(), csat.answer.comment.as_deref()),
        ("k-2", Some("awful"))
    );
    let nps = now.latest_nps.expect("nps");
    assert_eq!((nps.answer_id.as_str(), nps.comment), ("n-3", None));
    let then = service_quality::latest(
        &fixture.db,
        "t1",
        &["c-1"],
        Some(Cut::OccurredBy(at("2026-01-31T00:00:00Z"))),
    )
    .await
    .expect("latest");
    assert_eq!(then.latest_csat.expect("csat").case_id, "k-1");
    assert_eq!(
        then.latest_nps.expect("nps").comment.as_deref(),
        Some("meh")
    );

    // c-2 merged into c-1, then c-1 erased: every comment of both goes, the scores stay.
    append_all(
        fixture.store.as_ref(),
        &[
            ev(
                "CustomerMerged",
                json!({"customer_id": "c-2", "into_customer_id": "c-1"}),
                "2026-02-10T00:00:00Z",
            ),
            ev(
                "CustomerErased",
                json!({"customer_id": "c-1"}),
                "2026-02-11T00:00:00Z",
            ),
        ],
    )
    .await;
    fixture.catch_up().await;
    let after = service_quality::latest(&fixture.db, "t1", &["c-1", "c-2"], None)
        .await
        .expect("latest");
    let csat = after.latest_csat.expect("csat");
    assert_eq!((csat.case_id.as_str(), csat.answer.score), ("k-3", 5));
    assert_eq!(csat.answer.comment, None);
    assert_eq!(after.latest_nps.expect("nps").answer_id, "n-3");
    let tables = [service_quality::CASES, service_quality::NPS];
    let mut live = Vec::new();
    for table in tables {
        live.push(fixture.db.dump(table, "1, 2").await.expect("dump"));
    }
    for rows in &live {
        let text = format!("{rows:?}");
        for comment in ["meh", "fine", "awful", "great", "love"] {
            assert!(
                !text.contains(&format!("\\\"{comment}\\\""))
                    && !text.contains(&format!("\"{comment}\"")),
                "{comment} left in {text}"
            );
        }
    }
    request_rebuild(&fixture.db, service_quality::NAME)
        .await
        .expect("request");
    fixture.catch_up().await;
    let mut rebuilt = Vec::new();
    for table in tables {
        rebuilt.push(fixture.db.dump(table, "1, 2").await.expect("dump"));
    }
    assert_eq!(live, rebuilt, "a rebuild gives the rows of the live run");
}

/// Issue 19: SLA targets a store kept in its settings table before settings were facts move
/// into the log once, as a `SlaTargetsSet`, and the backlog then reads them from there.
pub async fn legacy_sla_targets_move_into_the_log_once(fixture: &Fixture) {
    let mut targets = backlog::SlaTargets::default();
    targets.high.first_response_minutes = 30;
    crm_projections::bookkeeping::set_tenant_setting(
        &fixture.db,
        "t1",
        "sla_targets",
        &serde_json::to_string(&targets).expect("json"),
    )
    .await
    .expect("legacy row");
    let cache = crm_core::command::StreamCache::default();
    let moved = backlog::settings::migrate_legacy(fixture.store.as_ref(), &cache, &fixture.db)
        .await
        .expect("migrate");
    assert_eq!(moved, 1);
    let again = backlog::settings::migrate_legacy(fixture.store.as_ref(), &cache, &fixture.db)
        .await
        .expect("migrate again");
    assert_eq!(again, 0, "nothing left to move");
    let stream = crm_core::envelope::StreamId::parse("settings-sla").expect("stream");
    let events = fixture
        .store
        .read_stream(
            &TenantId::parse("t1").expect("tenant"),
            &stream,
            crm_core::store::Direction::Forwards,
            crm_core::store::StreamStart::Boundary,
            10,
        )
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "SlaTargetsSet");
    fixture.catch_up().await;
    let in_force = backlog::sla_targets(&fixture.db, "t1")
        .await
        .expect("targets");
    assert_eq!(in_force.targets, targets);
    assert_eq!(in_force.set_position, Some(events[0].position));
}

/// `ReadDb::fetch_together` answers each query exactly as `fetch` answers it alone: rows in
/// each query's own order (a descending order with a limit over rows inserted in random
/// order), placeholders bound to their own query, NULLs of both kinds, the widest integers,
/// text with quotes, backslashes, line breaks and non-ASCII, an empty
/// answer, and an error (not a guess) when a column is not what was asked for.
pub async fn reads_asked_together_answer_as_each_alone(fixture: &Fixture) {
    use crm_projections::db::Query;
    let db = &fixture.db;
    let int = match db.backend() {
        crm_projections::db::Backend::Sqlite => "INTEGER",
        crm_projections::db::Backend::Postgres => "BIGINT",
    };
    db.execute(
        &format!("CREATE TABLE together_probe (k TEXT NOT NULL, n {int}, t TEXT)"),
        vec![],
    )
    .await
    .expect("create");
    let mut rng = Rng::new(5);
    let texts = [
        "plain",
        "it's \"quoted\"",
        "back\\slash \\u0041",
        "line\nbreak\ttab",
        "Zoë – 東京 🙂",
        "{\"not\": \"json\"}",
    ];
    let mut order: Vec<i64> = (0..400).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for n in order {
        let text = (n % 7 != 0).then(|| texts[n as usize % texts.len()].to_owned());
        db.execute(
            "INSERT INTO together_probe (k, n, t) VALUES (?, ?, ?)",
            vec![
                SqlValue::text(if n % 2 == 0 { "even" } else { "odd" }),
                SqlValue::Int(n),
                SqlValue::opt_text(text),
            ],
        )
        .await
        .expect("insert");
    }
    for (k, n) in [("edge", i64::MAX), ("edge", i64::MIN + 1), ("edge", -1)] {
        db.execute(
            "INSERT INTO together_probe (k, n, t) VALUES (?, ?, NULL)",
            vec![k.into(), SqlValue::Int(n)],
        )
        .await
        .expect("insert");
    }
    let queries = vec![
        Query::new(
            "SELECT n, t FROM together_probe WHERE k = ? ORDER BY n DESC LIMIT ?",
            vec!["even".into(), SqlValue::Int(150)],
            &[Col::Int, Col::Text],
        ),
        Query::new(
            "SELECT t, n, k FROM together_probe WHERE k = ? AND n > ? ORDER BY n",
            vec!["odd".into(), SqlValue::Int(300)],
            &[Col::Text, Col::Int, Col::Text],
        ),
        Query::new(
            "SELECT n, t FROM together_probe WHERE k = ? ORDER BY n",
            vec!["edge".into()],
            &[Col::Int, Col::Int],
        ),
        Query::new(
            "SELECT k FROM together_probe WHERE k = ?",
            vec!["none".into()],
            &[Col::Text],
        ),
    ];
    let together = db.fetch_together(queries.clone()).await.expect("together");
    assert_eq!(together.len(), queries.len());
    for (query, rows) in queries.iter().zip(&together) {
        let alone = db
            .fetch(&query.sql, query.args.clone(), &query.cols)
            .await
            .expect("alone");
        assert_eq!(rows, &alone, "{}", query.sql);
    }
    assert_eq!(together[0].len(), 150);
    assert_eq!(together[0][0][0], SqlValue::Int(398));
    assert_eq!(together[0][149][0], SqlValue::Int(100));
    assert_eq!(together[1].len(), 50);
    assert!(together[1].iter().any(|row| row[0] == SqlValue::Null));
    assert_eq!(
        together[2],
        vec![
            vec![SqlValue::Int(i64::MIN + 1), SqlValue::NullInt],
            vec![SqlValue::Int(-1), SqlValue::NullInt],
            vec![SqlValue::Int(i64::MAX), SqlValue::NullInt],
        ]
    );
    assert!(together[3].is_empty());
    for text in texts {
        assert!(
            together
                .iter()
                .flatten()
                .flatten()
                .any(|v| v.as_text() == Some(text)),
            "{text:?} came back as written"
        );
    }
    assert!(db.fetch_together(vec![]).await.expect("nothing").is_empty());
    // A text column read as an integer is refused on both backends.
    let wrong = db
        .fetch_together(vec![Query::new(
            "SELECT t FROM together_probe WHERE k = ? AND t IS NOT NULL LIMIT 1",
            vec!["even".into()],
            &[Col::Int],
        )])
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
}

/// Issue 21: the set of parked tenants a process remembers between queries is read again
/// when the runner's parking epoch moves (after every park it commits), not only when the
/// read models move, and never for a standby. Between epochs it answers from memory; a
/// tenant in the set has its failure read from the database, so a cleared one is served
/// again at once.
pub async fn the_parked_set_is_read_again_when_the_parking_epoch_moves(fixture: &Fixture) {
    use crm_projections::parking::ParkedTenants;
    let db = &fixture.db;
    db.execute(
        "INSERT INTO crm_projections (projection, live_generation, rebuild_requested) \
         VALUES ('park_probe', 3, 0)",
        vec![],
    )
    .await
    .expect("a live generation");
    // Long enough that only the epoch can make it read again within this test.
    let parked = ParkedTenants::with_refresh(Duration::from_secs(3600));
    let names = ["park_probe"];
    let ask = |tenant: &'static str, epoch: Option<u64>| {
        let parked = &parked;
        async move {
            parked
                .failure(db, tenant, &names, epoch)
                .await
                .expect("parked?")
        }
    };
    assert!(ask("t-a", Some(7)).await.is_none(), "nothing parked yet");
    db.execute(
        "INSERT INTO crm_projection_failures (projection, generation, tenant, position, error) \
         VALUES ('park_probe', 3, 't-a', 42, 'poisoned')",
        vec![],
    )
    .await
    .expect("park t-a");
    assert!(
        ask("t-a", Some(7)).await.is_none(),
        "the same epoch answers from the set read before the park"
    );
    let standby = ask("t-a", None)
        .await
        .expect("a standby reads the stored state");
    assert_eq!(standby.position, 42);
    let moved = ask("t-a", Some(8))
        .await
        .expect("the epoch moved: the set is read again");
    assert_eq!(
        (
            moved.projection.as_str(),
            moved.tenant.as_str(),
            moved.position
        ),
        ("park_probe", "t-a", 42)
    );
    assert!(moved.error.contains("poisoned"), "{moved:?}");
    assert!(ask("t-b", Some(8)).await.is_none(), "only t-a is parked");
    // A park of an older generation is not the live tables' failure.
    db.execute(
        "UPDATE crm_projection_failures SET generation = 2 WHERE tenant = 't-a'",
        vec![],
    )
    .await
    .expect("move the failure to an old generation");
    assert!(
        ask("t-a", Some(8)).await.is_none(),
        "an old generation's park"
    );
    db.execute(
        "DELETE FROM crm_projection_failures WHERE tenant = 't-a'",
        vec![],
    )
    .await
    .expect("clear");
    assert!(ask("t-a", Some(8)).await.is_none(), "served again at once");
}
