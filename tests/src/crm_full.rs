//! The whole CRM's history for the console's browser tests and benchmark: [`crm_data::history`]
//! plus what it lacks, so every page has something to show: tenant settings (consent regime,
//! SLA targets, complaint categories), campaigns with costs, members (customers who granted
//! marketing consent for the campaign's channel first, and leads) and their responses; cases
//! paused and resumed, marked complaints and answered with a CSAT score; NPS answers; leads
//! disqualified. Every event passes the catalog and the aggregates' rules, in the order
//! given, so the history can be sent through `POST /v1/events`. The same seed gives the same
//! events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use crm_core::aggregates::{StreamState, customer};
use crm_core::catalog::DomainEvent;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bench_data::Rng;
use crate::crm_data::{Emitted, history};

/// The two tenants [`crm_data::history`] writes.
pub const TENANTS: [&str; 2] = ["acme", "globex"];

/// About `steps` events of [`crm_data::history`] and roughly a tenth more of the kinds it
/// lacks, over the tenants [`TENANTS`]; only events the API's ingest accepts, in order.
pub fn full_history(seed: u64, customers: usize, steps: usize) -> Vec<Emitted> {
    let mut out = rule_abiding(history(seed, customers, steps));
    let base = out.len();
    let (first, last) = match (out.first(), out.last()) {
        (Some(first), Some(last)) => (first.occurred_at, last.occurred_at),
        _ => return out,
    };
    let mut rng = Rng::new(seed ^ 0x5eed_c0de);
    let mut extra = Extras {
        seed,
        // Far above the base history's ids (`(seed, index)` of its unfiltered events).
        next: 1 << 40,
        out: Vec::new(),
    };
    for (t, tenant) in TENANTS.iter().enumerate() {
        let folded = Folded::of(&out[..base], tenant);
        settings(&mut extra, tenant, first);
        campaigns(&mut extra, &mut rng, tenant, &folded, first, last, steps, t);
        service(&mut extra, &mut rng, tenant, &folded);
        nps(&mut extra, &mut rng, tenant, &folded, first, last);
        for (lead, at) in folded.open_leads.iter().step_by(4) {
            extra.emit(
                tenant,
                "LeadDisqualified",
                json!({"lead_id": lead, "reason": "no budget"}),
                *at + Duration::days(3),
            );
        }
    }
    out.extend(extra.out);
    let mut out = rule_abiding(out);
    in_the_past(&mut out);
    out
}

/// The history moved into the past: the generator's clock starts in 2025 and, over 100,000
/// steps, runs on for decades, and an order dated after today has no recency the analytics
/// can score. Every time (the events' own, tasks' due times, deals' close dates) is mapped
/// alike: the last event lands at noon on [`ENDS_BY`], and a history longer than
/// [`LONGEST`] is compressed to it (times keep their order, spacing shrinks in proportion).
fn in_the_past(events: &mut [Emitted]) {
    let times = events.iter().map(|e| e.occurred_at);
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
        return;
    };
    let span = (last - first).num_seconds().max(1) as f64;
    let factor = (LONGEST.num_seconds() as f64 / span).min(1.0);
    let end = ENDS_BY.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc();
    let map = |t: DateTime<Utc>| {
        end - Duration::seconds(((last - t).num_seconds() as f64 * factor).round() as i64)
    };
    for event in events.iter_mut() {
        event.occurred_at = map(event.occurred_at);
        if let Some(due) = event.data["due_at"].as_str()
            && let Ok(due) = DateTime::parse_from_rfc3339(due)
        {
            let due = map(due.with_timezone(&Utc));
            event.data["due_at"] = json!(due.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        }
        if let Some(close) = event.data["close_date"].as_str()
            && let Ok(close) = chrono::NaiveDate::parse_from_str(close, "%Y-%m-%d")
        {
            let close = map(close.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc());
            event.data["close_date"] = json!(close.format("%Y-%m-%d").to_string());
        }
    }
}

/// The longest history [`full_history`] spans.
pub const LONGEST: Duration = Duration::days(8 * 365);

/// The day by which [`full_history`] has ended.
pub const ENDS_BY: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(2026, 6, 30) {
    Some(date) => date,
    None => panic!("a valid date"),
};

/// `events` without those the aggregates' rules refuse given the events kept before them
/// (the ingest's judgement, in memory): [`crm_data::history`] draws its steps at random and
/// now and then assigns a case to the agent it already has, which `POST /v1/events` refuses.
/// A contact link also needs its account to be a registered company still standing.
pub fn rule_abiding(events: Vec<Emitted>) -> Vec<Emitted> {
    let mut states: HashMap<(&'static str, String), StreamState> = HashMap::new();
    let mut kept = Vec::with_capacity(events.len());
    for emitted in events {
        let Ok(event) = DomainEvent::parse(emitted.event_type, &emitted.data) else {
            continue;
        };
        let key = (emitted.tenant, event.stream().as_str().to_owned());
        let state = states.remove(&key).unwrap_or_default();
        let mut allowed = state.check(&event).is_ok();
        if allowed && let DomainEvent::ContactLinked(link) = &event {
            let account = (emitted.tenant, format!("customer-{}", link.account_id));
            allowed = match states.get(&account) {
                Some(StreamState::Customer(account)) => {
                    customer::check_account(account, &link.account_id).is_ok()
                }
                _ => false,
            };
        }
        let state = if allowed {
            kept.push(emitted);
            state.evolve(&event)
        } else {
            state
        };
        states.insert(key, state);
    }
    kept
}

/// One event as `POST /v1/events` takes it.
pub fn api_event(event: &Emitted) -> Value {
    json!({"id": event.id, "type": event.event_type, "data": event.data,
           "occurred_at": event.occurred_at})
}

/// What the extra events need to know of the base history of one tenant.
#[derive(Debug, Default)]
struct Folded {
    /// Registered, never merged away nor erased, in registration order, with that time.
    live_customers: Vec<(String, DateTime<Utc>)>,
    /// Case id, its customer's liveness, its state and the time of its last event.
    cases: BTreeMap<String, (bool, CaseState, DateTime<Utc>)>,
    /// Captured and neither qualified, converted nor erased, with the capture time.
    open_leads: Vec<(String, DateTime<Utc>)>,
    /// Every lead captured.
    leads: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseState {
    Open,
    Resolved,
    Closed,
}

impl Folded {
    fn of(events: &[Emitted], tenant: &str) -> Folded {
        let text = |e: &Emitted, member: &str| {
            e.data
                .get(member)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut registered = Vec::new();
        let mut gone = BTreeSet::new();
        let mut case_customer = BTreeMap::new();
        let mut cases = BTreeMap::new();
        let mut leads = Vec::new();
        let mut lead_done = BTreeSet::new();
        let mut lead_at = BTreeMap::new();
        for e in events.iter().filter(|e| e.tenant == tenant) {
            let at = e.occurred_at;
            match e.event_type {
                "CustomerRegistered" => registered.push((text(e, "customer_id"), at)),
                "CustomerMerged" | "CustomerErased" => {
                    gone.insert(text(e, "customer_id"));
                }
                "CaseOpened" => {
                    case_customer.insert(text(e, "case_id"), text(e, "customer_id"));
                    cases.insert(text(e, "case_id"), (CaseState::Open, at));
                }
                "CaseResolved" => {
                    cases.insert(text(e, "case_id"), (CaseState::Resolved, at));
                }
                "CaseClosed" => {
                    cases.insert(text(e, "case_id"), (CaseState::Closed, at));
                }
                "CaseReopened" => {
                    cases.insert(text(e, "case_id"), (CaseState::Open, at));
                }
                t if t.starts_with("Case") => {
                    if let Some(entry) = cases.get_mut(&text(e, "case_id")) {
                        entry.1 = at;
                    }
                }
                "LeadCaptured" => {
                    leads.push(text(e, "lead_id"));
                    lead_at.insert(text(e, "lead_id"), at);
                }
                "LeadQualified" | "LeadConverted" | "LeadErased" => {
                    lead_done.insert(text(e, "lead_id"));
                }
                _ => {}
            }
        }
        let live = |id: &String| !gone.contains(id);
        Folded {
            live_customers: registered.into_iter().filter(|(id, _)| live(id)).collect(),
            cases: cases
                .into_iter()
                .map(|(id, (state, at))| {
                    let alive = case_customer.get(&id).is_some_and(live);
                    (id, (alive, state, at))
                })
                .collect(),
            open_leads: leads
                .iter()
                .filter(|l| !lead_done.contains(*l))
                .map(|l| (l.clone(), lead_at.get(l).copied().unwrap_or_default()))
                .collect(),
            leads,
        }
    }
}

/// The extra events, with ids of their own.
struct Extras {
    seed: u64,
    next: u64,
    out: Vec<Emitted>,
}

impl Extras {
    fn emit(&mut self, tenant: &str, ty: &'static str, data: Value, at: DateTime<Utc>) {
        let tenant = TENANTS
            .iter()
            .copied()
            .find(|t| *t == tenant)
            .unwrap_or(TENANTS[0]);
        self.out.push(Emitted {
            tenant,
            event_type: ty,
            data,
            occurred_at: at,
            id: Uuid::from_u64_pair(self.seed, self.next),
        });
        self.next += 1;
    }
}

/// The tenant's settings, dated at the start of its history.
fn settings(extra: &mut Extras, tenant: &str, at: DateTime<Utc>) {
    extra.emit(tenant, "ConsentRegimeSet", json!({"regime": "opt_in"}), at);
    extra.emit(
        tenant,
        "SlaTargetsSet",
        json!({"low": {"first_response_minutes": 1440, "resolution_minutes": 10080},
               "normal": {"first_response_minutes": 480, "resolution_minutes": 4320},
               "high": {"first_response_minutes": 240, "resolution_minutes": 1440},
               "urgent": {"first_response_minutes": 60, "resolution_minutes": 240}}),
        at,
    );
    extra.emit(
        tenant,
        "ComplaintCategoriesSet",
        json!({"categories": ["billing", "delivery", "quality"],
               "causes": ["pricing_error", "carrier_delay", "defect"]}),
        at,
    );
}

/// Campaigns spread over the history: launched, costed, customers (after granting marketing
/// consent on the campaign's channel) and leads added, some responding.
#[allow(clippy::too_many_arguments)]
fn campaigns(
    extra: &mut Extras,
    rng: &mut Rng,
    tenant: &str,
    folded: &Folded,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    steps: usize,
    t: usize,
) {
    let count = (steps / 4_000).clamp(2, 30);
    let span = (last - first).num_minutes().max(1);
    let channels = ["email", "sms", "phone"];
    let responses = ["opened", "clicked", "replied", "registered", "converted"];
    let mut members: BTreeSet<(String, &str)> = BTreeSet::new();
    for k in 0..count {
        let id = format!("cmp-{t}-{k}");
        let channel = channels[k % 3];
        let launch = first + Duration::minutes(span * k as i64 / count as i64);
        extra.emit(
            tenant,
            "CampaignLaunched",
            json!({"campaign_id": id, "name": format!("Campaign {k}"), "channel": channel}),
            launch,
        );
        for c in 0..(1 + rng.below(3)) {
            let minor = 5_000 + rng.below(200_000) as i64;
            extra.emit(
                tenant,
                "CampaignCostRecorded",
                json!({"campaign_id": id, "amount": format!("{}.{:02}", minor / 100, minor % 100),
                       "currency": "USD"}),
                launch + Duration::days(c as i64),
            );
        }
        // Customers registered before the launch.
        let eligible: Vec<&(String, DateTime<Utc>)> = folded
            .live_customers
            .iter()
            .filter(|(_, at)| *at < launch)
            .collect();
        let wanted = (eligible.len() / 8).clamp(1, 60).min(eligible.len());
        for _ in 0..wanted {
            let (customer, _) = eligible[rng.below(eligible.len() as u64) as usize];
            if !members.insert((format!("{id}/{customer}"), channel)) {
                continue;
            }
            extra.emit(
                tenant,
                "CustomerConsentChanged",
                json!({"customer_id": customer, "channel": channel, "purpose": "marketing",
                       "granted": true}),
                launch - Duration::hours(1),
            );
            extra.emit(
                tenant,
                "CampaignMemberAdded",
                json!({"campaign_id": id, "customer_id": customer}),
                launch,
            );
            if rng.below(3) > 0 {
                extra.emit(
                    tenant,
                    "CampaignMemberResponded",
                    json!({"campaign_id": id, "customer_id": customer,
                           "response": responses[rng.below(5) as usize]}),
                    launch + Duration::hours(2 + rng.below(200) as i64),
                );
            }
        }
        for lead in folded.leads.iter().skip(k).step_by(count * 3).take(10) {
            extra.emit(
                tenant,
                "CampaignMemberAdded",
                json!({"campaign_id": id, "lead_id": lead}),
                launch,
            );
            if rng.below(2) == 0 {
                extra.emit(
                    tenant,
                    "CampaignMemberResponded",
                    json!({"campaign_id": id, "lead_id": lead, "response": "clicked"}),
                    launch + Duration::hours(5),
                );
            }
        }
    }
}

/// Cases after their last event: open ones paused (some resumed), some not closed marked
/// complaints, a third answered with a CSAT score (a comment only while their customer's
/// personal data may still be written).
fn service(extra: &mut Extras, rng: &mut Rng, tenant: &str, folded: &Folded) {
    let categories = ["billing", "delivery", "quality"];
    for (case, (alive, state, at)) in &folded.cases {
        let mut at = *at;
        if *state == CaseState::Open && rng.below(5) == 0 {
            at += Duration::hours(1 + rng.below(24) as i64);
            extra.emit(tenant, "CasePaused", json!({"case_id": case}), at);
            if rng.below(2) == 0 {
                at += Duration::hours(1 + rng.below(48) as i64);
                extra.emit(tenant, "CaseResumed", json!({"case_id": case}), at);
            }
        }
        if *state != CaseState::Closed && rng.below(8) == 0 {
            at += Duration::minutes(30);
            extra.emit(
                tenant,
                "CaseMarkedComplaint",
                json!({"case_id": case, "category": categories[rng.below(3) as usize]}),
                at,
            );
        }
        if rng.below(3) == 0 {
            at += Duration::hours(2);
            let score = 1 + rng.below(5);
            let data = if *alive && score <= 2 {
                json!({"case_id": case, "score": score, "comment": "Took too long"})
            } else {
                json!({"case_id": case, "score": score})
            };
            extra.emit(tenant, "CsatRecorded", data, at);
        }
    }
}

/// NPS answers of about one live customer in six, some with a comment.
fn nps(
    extra: &mut Extras,
    rng: &mut Rng,
    tenant: &str,
    folded: &Folded,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) {
    let span = (last - first).num_minutes().max(1);
    for (i, (customer, registered)) in folded.live_customers.iter().enumerate() {
        if rng.below(6) != 0 {
            continue;
        }
        let at = (*registered + Duration::minutes(rng.below(span as u64) as i64)).min(last);
        let score = rng.below(11);
        let mut data = json!({"customer_id": customer, "answer_id": format!("nps-{i}"),
                              "score": score});
        if score >= 9 {
            data["comment"] = json!("Would recommend");
        }
        extra.emit(tenant, "NpsAnswered", data, at);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crm_core::catalog::{DomainEvent, EVENT_TYPES};

    use super::full_history;

    #[test]
    fn events_the_rules_refuse_are_left_out() {
        let base = crate::crm_data::history(3, 60, 3_000);
        let kept = super::rule_abiding(base.clone());
        assert!(
            kept.len() < base.len(),
            "the random history repeats an assignment"
        );
        assert!(
            kept.len() > base.len() * 9 / 10,
            "{} of {}",
            kept.len(),
            base.len()
        );
        // Idempotent: what is kept passes again whole.
        assert_eq!(super::rule_abiding(kept.clone()).len(), kept.len());
    }

    #[test]
    fn the_full_history_passes_the_catalog_holds_the_console_kinds_and_is_deterministic() {
        let events = full_history(5, 120, 6_000);
        for e in &events {
            DomainEvent::parse(e.event_type, &e.data)
                .unwrap_or_else(|err| panic!("{} {}: {err}", e.event_type, e.data));
        }
        let types: BTreeSet<&str> = events.iter().map(|e| e.event_type).collect();
        let missing: Vec<&str> = EVENT_TYPES
            .iter()
            .map(|t| t.name)
            .filter(|name| !types.contains(name))
            .collect();
        // Calendars and workflow rules change how the API computes, not what it shows.
        assert_eq!(
            missing,
            [
                "BusinessCalendarSet",
                "BusinessCalendarCleared",
                "WorkflowRuleSet",
                "WorkflowRuleRemoved"
            ],
            "event types the full history lacks"
        );
        let last = events.iter().map(|e| e.occurred_at).max().expect("events");
        assert!(last.date_naive() <= super::ENDS_BY, "{last}");
        assert!(
            last.date_naive() > super::ENDS_BY - chrono::Duration::days(8),
            "{last}"
        );
        let again = full_history(5, 120, 6_000);
        assert_eq!(events.len(), again.len());
        assert!(
            events
                .iter()
                .zip(&again)
                .all(|(a, b)| a.id == b.id && a.data == b.data && a.occurred_at == b.occurred_at)
        );
        let ids: BTreeSet<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), events.len(), "event ids are distinct");
    }
}
