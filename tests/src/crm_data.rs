//! A deterministic, rule-abiding CRM history for tests: customers registering, interacting,
//! ordering (several orders on one day, refunds), consenting, being merged and erased; leads
//! captured and converted; opportunities moving through stages to won or lost; cases opened,
//! assigned, answered, escalated, resolved, reopened and closed. Two tenants.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::envelope::{NewEvent, StreamId, TenantId};
use crm_core::store::{EventStore, ExpectedRevision};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bench_data::Rng;

/// One event as an emitter would send it, with its tenant.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub tenant: &'static str,
    pub event_type: &'static str,
    pub data: Value,
    pub occurred_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Emitted {
    /// The stream and the event ready to append.
    pub fn to_new_event(&self) -> (StreamId, NewEvent) {
        let event = DomainEvent::parse(self.event_type, &self.data)
            .unwrap_or_else(|e| panic!("generated an invalid event: {e}"));
        let new = event
            .to_new_event()
            .with_id(self.id)
            .with_occurred_at(self.occurred_at);
        (event.stream(), new)
    }
}

/// Appends `events` in order, one append per run of consecutive events of one stream.
pub async fn append_all(store: &dyn EventStore, events: &[Emitted]) {
    let mut i = 0;
    while i < events.len() {
        let tenant = TenantId::parse(events[i].tenant).expect("tenant");
        let (stream, first) = events[i].to_new_event();
        let mut batch = vec![first];
        let mut j = i + 1;
        while j < events.len() && events[j].tenant == events[i].tenant {
            let (next_stream, next) = events[j].to_new_event();
            if next_stream != stream {
                break;
            }
            batch.push(next);
            j += 1;
        }
        let described: Vec<String> = batch
            .iter()
            .map(|e| format!("{} {}", e.event_type, e.data.get()))
            .collect();
        if let Err(error) = store
            .append(&tenant, &stream, ExpectedRevision::Any, batch)
            .await
        {
            panic!("append generated events to {stream}: {error}: {described:?}");
        }
        i = j;
    }
}

/// Customers merged (transitively) into an erased customer are erased with it: their keys go
/// with its, so they get no new personal fields.
fn erase_merged(people: &mut [Customer]) {
    loop {
        let more: Vec<usize> = (0..people.len())
            .filter(|&i| {
                !people[i].erased
                    && people[i]
                        .merged_into
                        .is_some_and(|into| people[into].erased)
            })
            .collect();
        if more.is_empty() {
            return;
        }
        for i in more {
            people[i].erased = true;
        }
    }
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    merged: bool,
    /// The customer it was merged into.
    merged_into: Option<usize>,
    erased: bool,
    orders: Vec<(String, i64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseState {
    Open,
    Resolved,
    Closed,
}

/// Generates about `steps` events over two tenants. The same seed gives the same events.
pub fn history(seed: u64, customers: usize, steps: usize) -> Vec<Emitted> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(steps + customers);
    let mut at = Utc
        .with_ymd_and_hms(2025, 1, 6, 8, 0, 0)
        .single()
        .unwrap_or_default();
    let tenants = ["acme", "globex"];
    let mut people: Vec<Vec<Customer>> = vec![Vec::new(), Vec::new()];
    let mut opportunities: Vec<Vec<(String, usize, usize)>> = vec![Vec::new(), Vec::new()];
    let mut cases: Vec<Vec<(String, CaseState, u8)>> = vec![Vec::new(), Vec::new()];
    let mut leads: Vec<Vec<(String, bool)>> = vec![Vec::new(), Vec::new()];
    let mut counter = 0u64;
    // The first qualified lead that would convert is erased instead (and some others).
    let mut erased_a_lead = false;
    let mut next_id = |prefix: &str| {
        counter += 1;
        format!("{prefix}-{counter}")
    };
    let emit =
        |out: &mut Vec<Emitted>, t: usize, ty: &'static str, data: Value, at: DateTime<Utc>| {
            let id = Uuid::from_u64_pair(seed, out.len() as u64);
            out.push(Emitted {
                tenant: tenants[t],
                event_type: ty,
                data,
                occurred_at: at,
                id,
            });
        };
    for n in 0..customers {
        let t = n % 2;
        let id = format!("c-{n}");
        at += Duration::minutes(1 + rng.below(30) as i64);
        emit(
            &mut out,
            t,
            "CustomerRegistered",
            json!({
                "customer_id": id, "kind": if n % 5 == 0 { "company" } else { "person" },
                "name": format!("Customer {n}"), "email": format!("c{n}@example.com"),
                "segment": (["smb", "enterprise", "consumer"][n % 3]), "owner": format!("u-{}", n % 4)
            }),
            at,
        );
        people[t].push(Customer {
            id,
            merged: false,
            merged_into: None,
            erased: false,
            orders: Vec::new(),
        });
    }
    let channels = [
        "email",
        "phone",
        "chat",
        "sms",
        "social",
        "web",
        "meeting",
        "in_person",
    ];
    let stages = ["Prospecting", "Qualification", "Proposal", "Negotiation"];
    let priorities = ["low", "normal", "high", "urgent"];
    for _ in 0..steps {
        // Time moves in small steps, sometimes staying within a day, sometimes jumping days.
        at += if rng.below(10) == 0 {
            Duration::hours(20 + rng.below(60) as i64)
        } else {
            Duration::minutes(rng.below(90) as i64)
        };
        let t = rng.below(2) as usize;
        let active: Vec<usize> = (0..people[t].len())
            .filter(|&i| !people[t][i].merged)
            .collect();
        if active.is_empty() {
            continue;
        }
        let ci = active[rng.below(active.len() as u64) as usize];
        let cid = people[t][ci].id.clone();
        let erased = people[t][ci].erased;
        match rng.below(100) {
            0..=24 if !erased => emit(
                &mut out,
                t,
                "InteractionLogged",
                json!({
                    "customer_id": cid, "interaction_id": next_id("i"),
                    "channel": channels[rng.below(8) as usize],
                    "direction": if rng.below(2) == 0 { "inbound" } else { "outbound" },
                    "subject": "About the account", "summary": "Talked it through"
                }),
                at,
            ),
            25..=44 => {
                let order = next_id("o");
                let minor = 100 + rng.below(50_000) as i64;
                let mut data = json!({
                    "customer_id": cid, "order_id": order,
                    "amount": format!("{}.{:02}", minor / 100, minor % 100), "currency": "USD"
                });
                if let Some(lines) = order_lines(minor) {
                    data["lines"] = lines;
                }
                emit(&mut out, t, "OrderPlaced", data, at);
                people[t][ci].orders.push((order, minor, 0));
            }
            45..=49 => {
                let open: Vec<usize> = (0..people[t][ci].orders.len())
                    .filter(|&o| people[t][ci].orders[o].2 < people[t][ci].orders[o].1)
                    .collect();
                if let Some(&o) = open.first() {
                    let (order, amount, refunded) = people[t][ci].orders[o].clone();
                    let left = amount - refunded;
                    let refund = if rng.below(2) == 0 {
                        left
                    } else {
                        (left / 2).max(1)
                    };
                    emit(
                        &mut out,
                        t,
                        "OrderRefunded",
                        json!({
                            "customer_id": cid, "order_id": order,
                            "amount": format!("{}.{:02}", refund / 100, refund % 100), "currency": "USD"
                        }),
                        at,
                    );
                    people[t][ci].orders[o].2 += refund;
                }
            }
            50..=52 => emit(
                &mut out,
                t,
                "CustomerConsentChanged",
                json!({
                    "customer_id": cid, "channel": (["email", "sms", "phone"][rng.below(3) as usize]),
                    "purpose": (["marketing", "service"][rng.below(2) as usize]),
                    "granted": rng.below(2) == 0
                }),
                at,
            ),
            53..=54 if !erased => emit(
                &mut out,
                t,
                "CustomerProfileUpdated",
                json!({
                    "customer_id": cid, "segment": (["smb", "enterprise"][rng.below(2) as usize]),
                    "email": format!("{cid}.new@example.com")
                }),
                at,
            ),
            // An erased customer's new events carry no personal field: those are refused.
            55..=62 if !erased => {
                let opp = next_id("op");
                let minor = 100_000 + rng.below(5_000_000) as i64;
                emit(
                    &mut out,
                    t,
                    "OpportunityOpened",
                    json!({
                        "opportunity_id": opp, "customer_id": cid, "name": "Deal",
                        "amount": format!("{}.{:02}", minor / 100, minor % 100), "currency": "EUR",
                        "stage": "Prospecting",
                        "close_date": (at + Duration::days(30 + rng.below(120) as i64)).format("%Y-%m-%d").to_string(),
                        "owner": format!("u-{}", rng.below(4))
                    }),
                    at,
                );
                opportunities[t].push((opp, 0, ci));
            }
            63..=74 if !opportunities[t].is_empty() => {
                let k = rng.below(opportunities[t].len() as u64) as usize;
                let (opp, stage, owner) = opportunities[t][k].clone();
                let owner_erased = people[t][owner].erased;
                match rng.below(10) {
                    0..=4 if stage < 3 => {
                        emit(
                            &mut out,
                            t,
                            "OpportunityStageChanged",
                            json!({
                                "opportunity_id": opp, "stage": stages[stage + 1]
                            }),
                            at,
                        );
                        opportunities[t][k].1 += 1;
                    }
                    5 => emit(
                        &mut out,
                        t,
                        "OpportunityUpdated",
                        json!({
                            "opportunity_id": opp, "amount": "1234.50", "currency": "EUR",
                            "probability": 35
                        }),
                        at,
                    ),
                    6..=7 => {
                        emit(
                            &mut out,
                            t,
                            "OpportunityWon",
                            json!({"opportunity_id": opp}),
                            at,
                        );
                        opportunities[t].remove(k);
                    }
                    _ => {
                        emit(
                            &mut out,
                            t,
                            "OpportunityLost",
                            if owner_erased {
                                json!({"opportunity_id": opp})
                            } else {
                                json!({"opportunity_id": opp, "reason": "price"})
                            },
                            at,
                        );
                        opportunities[t].remove(k);
                    }
                }
            }
            75..=80 if !erased => {
                let case = next_id("k");
                let priority = rng.below(4) as u8;
                emit(
                    &mut out,
                    t,
                    "CaseOpened",
                    json!({
                        "case_id": case, "customer_id": cid, "subject": "It broke",
                        "channel": channels[rng.below(8) as usize], "priority": priorities[priority as usize]
                    }),
                    at,
                );
                cases[t].push((case, CaseState::Open, priority));
            }
            81..=90 if !cases[t].is_empty() => {
                let k = rng.below(cases[t].len() as u64) as usize;
                let (case, state, priority) = cases[t][k].clone();
                let agent = format!("a-{}", rng.below(3));
                match (state, rng.below(6)) {
                    (CaseState::Open, 0) => emit(
                        &mut out,
                        t,
                        "CaseAssigned",
                        json!({"case_id": case, "agent": agent}),
                        at,
                    ),
                    (CaseState::Open, 1 | 2) => emit(
                        &mut out,
                        t,
                        "CaseResponded",
                        json!({"case_id": case, "agent": agent}),
                        at,
                    ),
                    (CaseState::Open, 3) if priority < 3 => {
                        emit(
                            &mut out,
                            t,
                            "CaseEscalated",
                            json!({"case_id": case, "priority": priorities[priority as usize + 1]}),
                            at,
                        );
                        cases[t][k].2 += 1;
                    }
                    (CaseState::Open, _) => {
                        emit(&mut out, t, "CaseResolved", json!({"case_id": case}), at);
                        cases[t][k].1 = CaseState::Resolved;
                    }
                    (CaseState::Resolved, 0) => {
                        emit(&mut out, t, "CaseReopened", json!({"case_id": case}), at);
                        cases[t][k].1 = CaseState::Open;
                    }
                    (CaseState::Resolved, _) => {
                        emit(&mut out, t, "CaseClosed", json!({"case_id": case}), at);
                        cases[t][k].1 = CaseState::Closed;
                    }
                    (CaseState::Closed, _) => {
                        emit(&mut out, t, "CaseReopened", json!({"case_id": case}), at);
                        cases[t][k].1 = CaseState::Open;
                    }
                }
            }
            91..=93 => {
                let lead = next_id("l");
                emit(
                    &mut out,
                    t,
                    "LeadCaptured",
                    json!({"lead_id": lead, "name": "Prospect", "source": "web"}),
                    at,
                );
                leads[t].push((lead, false));
            }
            94..=95 if !leads[t].is_empty() => {
                let k = rng.below(leads[t].len() as u64) as usize;
                let (lead, qualified) = leads[t][k].clone();
                if !qualified {
                    emit(&mut out, t, "LeadQualified", json!({"lead_id": lead}), at);
                    leads[t][k].1 = true;
                } else if !erased_a_lead || lead.ends_with('7') {
                    erased_a_lead = true;
                    // Some qualified leads ask to be forgotten before they convert.
                    emit(&mut out, t, "LeadErased", json!({"lead_id": lead}), at);
                    leads[t].remove(k);
                } else {
                    emit(
                        &mut out,
                        t,
                        "LeadConverted",
                        json!({"lead_id": lead, "customer_id": cid}),
                        at,
                    );
                    leads[t].remove(k);
                }
            }
            96..=97 if active.len() > 2 && !erased => {
                let other = active[rng.below(active.len() as u64) as usize];
                // Merging into an erased customer is refused.
                if other != ci && !people[t][other].erased {
                    let into = people[t][other].id.clone();
                    emit(
                        &mut out,
                        t,
                        "CustomerMerged",
                        json!({"customer_id": cid, "into_customer_id": into}),
                        at,
                    );
                    people[t][ci].merged = true;
                    people[t][ci].merged_into = Some(other);
                    // Merged into an erased customer: erased with it at once.
                    erase_merged(&mut people[t]);
                }
            }
            98 if !erased => {
                emit(
                    &mut out,
                    t,
                    "CustomerErased",
                    json!({"customer_id": cid}),
                    at,
                );
                people[t][ci].erased = true;
                erase_merged(&mut people[t]);
            }
            _ => {}
        }
    }
    // Contact links and tasks (issue 18), after the rest so the history above stays the
    // same for a seed: persons linked to companies, some moved, some unlinked; tasks on
    // customers, deals, cases and leads, some rescheduled, completed or cancelled.
    let mut rng = Rng::new(seed ^ 0x7a5c);
    for t in 0..2 {
        // Three companies registered now, so every history has accounts to link to.
        for k in 0..3 {
            let id = format!("acct-{}-{k}", tenants[t]);
            at += Duration::minutes(1 + rng.below(20) as i64);
            emit(
                &mut out,
                t,
                "CustomerRegistered",
                json!({"customer_id": id, "kind": "company", "name": format!("Account {k}")}),
                at,
            );
            people[t].push(Customer {
                id,
                merged: false,
                merged_into: None,
                erased: false,
                orders: Vec::new(),
            });
        }
        let registered = people[t].len() - 3;
        let alive = |ci: usize| !people[t][ci].merged && !people[t][ci].erased;
        let is_company = |ci: usize| ci >= registered || (ci * 2 + t).is_multiple_of(5);
        let companies: Vec<usize> = (0..people[t].len())
            .filter(|&ci| alive(ci) && is_company(ci))
            .collect();
        let mut unlinked_one = false;
        let roles = ["buyer", "decision_maker", "billing", "technical"];
        for ci in 0..people[t].len() {
            if !alive(ci) || is_company(ci) || rng.below(3) == 0 {
                continue;
            }
            let person = people[t][ci].id.clone();
            let mut account = companies[rng.below(companies.len() as u64) as usize];
            at += Duration::minutes(1 + rng.below(50) as i64);
            emit(
                &mut out,
                t,
                "ContactLinked",
                json!({"customer_id": person, "account_id": people[t][account].id,
                       "role": roles[rng.below(4) as usize]}),
                at,
            );
            // The first link of each tenant ends, so every history holds an unlink.
            let pick = if unlinked_one { rng.below(6) } else { 0 };
            unlinked_one = true;
            match pick {
                0 => {
                    at += Duration::hours(1 + rng.below(30) as i64);
                    emit(
                        &mut out,
                        t,
                        "ContactUnlinked",
                        json!({"customer_id": person, "account_id": people[t][account].id}),
                        at,
                    );
                }
                1 if companies.len() > 1 => {
                    let old = account;
                    while account == old {
                        account = companies[rng.below(companies.len() as u64) as usize];
                    }
                    at += Duration::hours(1 + rng.below(30) as i64);
                    emit(
                        &mut out,
                        t,
                        "ContactLinked",
                        json!({"customer_id": person, "account_id": people[t][account].id,
                               "role": "buyer"}),
                        at,
                    );
                }
                _ => {}
            }
        }
        let mut subjects: Vec<(&str, String)> = Vec::new();
        subjects.extend(people[t].iter().map(|c| ("customer", c.id.clone())));
        subjects.extend(
            opportunities[t]
                .iter()
                .map(|o| ("opportunity", o.0.clone())),
        );
        subjects.extend(cases[t].iter().map(|c| ("case", c.0.clone())));
        subjects.extend(leads[t].iter().map(|l| ("lead", l.0.clone())));
        for _ in 0..(steps / 25).max(4) {
            let task = next_id("t");
            let (kind, subject) = subjects[rng.below(subjects.len() as u64) as usize].clone();
            at += Duration::minutes(1 + rng.below(120) as i64);
            let due = at + Duration::hours(rng.below(24 * 14) as i64);
            emit(
                &mut out,
                t,
                "TaskCreated",
                json!({"task_id": task, "subject_type": kind, "subject_id": subject,
                       "owner": format!("u-{}", rng.below(4)),
                       "due_at": due.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                       "title": "Follow up"}),
                at,
            );
            if rng.below(3) == 0 {
                at += Duration::minutes(1 + rng.below(600) as i64);
                let due = due + Duration::hours(rng.below(72) as i64);
                emit(
                    &mut out,
                    t,
                    "TaskRescheduled",
                    json!({"task_id": task,
                           "due_at": due.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)}),
                    at,
                );
            }
            match rng.below(4) {
                0 => emit(&mut out, t, "TaskCompleted", json!({"task_id": task}), at),
                1 => emit(&mut out, t, "TaskCancelled", json!({"task_id": task}), at),
                _ => {}
            }
        }
    }
    // Each owner's quota for the first quarter, after everything else (so the ids and times
    // of the events above are what they were before quotas).
    for t in 0..2 {
        for owner in 0..4 {
            at += Duration::minutes(1);
            emit(
                &mut out,
                t,
                "QuotaSet",
                json!({"owner": format!("u-{owner}"), "period": "2025-Q1",
                       "amount": format!("{}000.00", 5 + owner), "currency": "USD"}),
                at,
            );
        }
    }
    out
}

/// Lines for two orders in three, derived from the amount alone (no draw from the random
/// sequence, so the rest of the history is what it was before orders had lines): one or two
/// of five products whose prices add up to the amount.
fn order_lines(minor: i64) -> Option<Value> {
    if minor % 3 == 0 {
        return None;
    }
    let price = |m: i64| format!("{}.{:02}", m / 100, m % 100);
    let (a, b) = (minor % 5, (minor / 7) % 5);
    let line = |p: i64, m: i64| json!({"product_id": format!("p-{p}"), "name": format!("Product {p}"), "quantity": 1, "unit_price": price(m)});
    Some(if a == b {
        json!([line(a, minor)])
    } else {
        json!([line(a, minor / 2), line(b, minor - minor / 2)])
    })
}
