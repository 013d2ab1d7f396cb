//! The scheduled facts, folded from the log by the rule worker: each open deal's current
//! stage entry (`opportunity`: `opportunity_id`, `customer_id`, `stage`, `owner`,
//! `entered_at`; gone once won or lost) and each customer's latest order by business time
//! (`customer`: `customer_id`, `order_id`, `last_order_at`; gone once erased; a merged
//! customer's latest order counts for the survivor). Case schedules read the backlog's clocks
//! instead (`rm_cases`), which already fold SLA targets, calendars and pauses.

use std::collections::HashMap;

use crate::AutomationError;
use chrono::SecondsFormat;
use crm_core::envelope::RecordedEvent;
use serde_json::{Value, json};

use super::tables::{self, Fact};
use super::worker::Context;

/// A change to one fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactChange {
    Put(Fact),
    Delete { kind: &'static str, entity: String },
}

/// Whether events of this type set, move or end a scheduled fact, or a rule.
pub(crate) fn dates_a_fact(event_type: &str) -> bool {
    matches!(
        event_type,
        "OpportunityOpened"
            | "OpportunityStageChanged"
            | "OpportunityUpdated"
            | "OpportunityWon"
            | "OpportunityLost"
            | "OrderPlaced"
            | "CustomerErased"
            | "CustomerMerged"
            | "WorkflowRuleSet"
            | "WorkflowRuleRemoved"
    )
}

pub const OPPORTUNITY: &str = "opportunity";
pub const CUSTOMER: &str = "customer";

/// The facts as the batch so far left them (`None`: none), loaded for the batch at once.
pub(crate) type Pending = HashMap<(String, &'static str, String), Option<Fact>>;

/// The fact as the batch so far left it (`None`: none).
async fn current(
    context: &Context,
    tenant: &str,
    kind: &'static str,
    entity: &str,
    pending: &Pending,
) -> Result<Option<Fact>, AutomationError> {
    if let Some(fact) = pending.get(&(tenant.to_owned(), kind, entity.to_owned())) {
        return Ok(fact.clone());
    }
    Ok(tables::facts_of(&context.db, tenant, kind, &[entity])
        .await?
        .into_iter()
        .next())
}

/// The facts a batch's events read, by tenant and kind, in one query each: what
/// [`changes`] would otherwise read event by event.
pub(crate) async fn preload(
    context: &Context,
    events: &[RecordedEvent],
) -> Result<Pending, AutomationError> {
    let mut wanted: HashMap<(String, &'static str), Vec<String>> = HashMap::new();
    for event in events {
        let (kind, fields): (&'static str, &[&str]) = match event.event_type.as_str() {
            "OpportunityStageChanged" | "OpportunityUpdated" => (OPPORTUNITY, &["opportunity_id"]),
            "OrderPlaced" => (CUSTOMER, &["customer_id"]),
            "CustomerMerged" => (CUSTOMER, &["customer_id", "into_customer_id"]),
            _ => continue,
        };
        let Ok(data) = serde_json::from_str::<Value>(event.data.get()) else {
            continue;
        };
        for field in fields {
            if let Some(id) = text(&data, field) {
                wanted
                    .entry((event.tenant.as_str().to_owned(), kind))
                    .or_default()
                    .push(id.to_owned());
            }
        }
    }
    let mut pending = Pending::new();
    for ((tenant, kind), mut ids) in wanted {
        ids.sort();
        ids.dedup();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        for id in &ids {
            pending.insert((tenant.clone(), kind, id.clone()), None);
        }
        for fact in tables::facts_of(&context.db, &tenant, kind, &refs).await? {
            pending.insert((tenant.clone(), kind, fact.entity.clone()), Some(fact));
        }
    }
    Ok(pending)
}

fn text<'a>(data: &'a Value, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str)
}

/// What `event` changes among the facts, recorded in `pending` too.
pub(crate) async fn changes(
    context: &Context,
    tenant: &str,
    event: &RecordedEvent,
    data: &Value,
    pending: &mut Pending,
) -> Result<Vec<FactChange>, AutomationError> {
    let at = event.occurred_at;
    let at_text = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let anchor = event.event_id.to_string();
    let mut out = Vec::new();
    let put = |fact: Fact, out: &mut Vec<FactChange>, pending: &mut Pending| {
        pending.insert(
            (tenant.to_owned(), fact.kind, fact.entity.clone()),
            Some(fact.clone()),
        );
        out.push(FactChange::Put(fact));
    };
    let delete =
        |kind: &'static str, entity: &str, out: &mut Vec<FactChange>, pending: &mut Pending| {
            pending.insert((tenant.to_owned(), kind, entity.to_owned()), None);
            out.push(FactChange::Delete {
                kind,
                entity: entity.to_owned(),
            });
        };
    match event.event_type.as_str() {
        "OpportunityOpened" => {
            let Some(id) = text(data, "opportunity_id") else {
                return Ok(out);
            };
            let fact = Fact {
                kind: OPPORTUNITY,
                entity: id.to_owned(),
                at: at.timestamp_micros(),
                anchor,
                data: json!({
                    "opportunity_id": id,
                    "customer_id": data.get("customer_id"),
                    "stage": data.get("stage"),
                    "owner": data.get("owner"),
                    "entered_at": at_text,
                }),
            };
            put(fact, &mut out, pending);
        }
        "OpportunityStageChanged" | "OpportunityUpdated" => {
            let Some(id) = text(data, "opportunity_id") else {
                return Ok(out);
            };
            let Some(mut fact) = current(context, tenant, OPPORTUNITY, id, pending).await? else {
                return Ok(out);
            };
            if event.event_type == "OpportunityStageChanged" {
                fact.at = at.timestamp_micros();
                fact.anchor = anchor;
                fact.data["stage"] = data.get("stage").cloned().unwrap_or(Value::Null);
                fact.data["entered_at"] = json!(at_text);
            } else if let Some(owner) = data.get("owner").filter(|o| !o.is_null()) {
                fact.data["owner"] = owner.clone();
            } else {
                return Ok(out);
            }
            put(fact, &mut out, pending);
        }
        "OpportunityWon" | "OpportunityLost" => {
            if let Some(id) = text(data, "opportunity_id") {
                delete(OPPORTUNITY, id, &mut out, pending);
            }
        }
        "OrderPlaced" => {
            let Some(customer) = text(data, "customer_id") else {
                return Ok(out);
            };
            let existing = current(context, tenant, CUSTOMER, customer, pending).await?;
            if existing.is_none_or(|f| f.at <= at.timestamp_micros()) {
                let fact = Fact {
                    kind: CUSTOMER,
                    entity: customer.to_owned(),
                    at: at.timestamp_micros(),
                    anchor,
                    data: json!({
                        "customer_id": customer,
                        "order_id": data.get("order_id"),
                        "last_order_at": at_text,
                    }),
                };
                put(fact, &mut out, pending);
            }
        }
        "CustomerErased" => {
            if let Some(customer) = text(data, "customer_id") {
                delete(CUSTOMER, customer, &mut out, pending);
            }
        }
        "CustomerMerged" => {
            let (Some(merged), Some(survivor)) =
                (text(data, "customer_id"), text(data, "into_customer_id"))
            else {
                return Ok(out);
            };
            let theirs = current(context, tenant, CUSTOMER, merged, pending).await?;
            if let Some(theirs) = theirs {
                let ours = current(context, tenant, CUSTOMER, survivor, pending).await?;
                if ours.as_ref().is_none_or(|o| o.at < theirs.at) {
                    let mut fact = theirs;
                    fact.entity = survivor.to_owned();
                    fact.data["customer_id"] = json!(survivor);
                    put(fact, &mut out, pending);
                }
                delete(CUSTOMER, merged, &mut out, pending);
            }
        }
        _ => {}
    }
    Ok(out)
}
