//! Which customer an event touches, across streams: customer events name it, opportunity and
//! case events name it when opened and are linked to it afterwards, lead events once the lead
//! is converted; a merged customer's events belong to the customer it went into as well.
//! The customer 360 and the timeline attribute events with these same rules.

use std::collections::{BTreeSet, HashSet};

use crm_core::catalog::DomainEvent;

use crate::event::ProjectedEvent;
use crate::rows::{Key, Links, merged_key};

/// The link key of an event's own entity, for categories linked to a customer.
pub fn entity_key(event: &DomainEvent) -> Option<String> {
    match event.category() {
        "opportunity" | "case" | "lead" => {
            Some(format!("{}:{}", event.category(), event.entity_id()))
        }
        _ => None,
    }
}

/// The customer an event touches directly (before following merges), if any is known.
pub fn direct_customer(links: &Links, event: &ProjectedEvent) -> Option<String> {
    direct_customer_ref(links, event).map(str::to_owned)
}

/// [`direct_customer`], borrowed from the event or the links.
pub fn direct_customer_ref<'a>(links: &'a Links, event: &'a ProjectedEvent) -> Option<&'a str> {
    if let Some(customer) = event.event.customer_id() {
        return Some(customer.as_str());
    }
    let key = entity_key(&event.event)?;
    links.get(event.tenant.as_str(), &key)
}

/// Records the links an event establishes: an opened opportunity or case belongs to its
/// customer; a converted lead (and the opportunity it became) to the customer it became.
pub fn record_links(links: &mut Links, event: &ProjectedEvent) {
    let tenant = event.tenant.as_str();
    match &event.event {
        DomainEvent::OpportunityOpened(e) => {
            let key = format!("opportunity:{}", e.opportunity_id);
            if links.get(tenant, &key).is_none() {
                links.set(tenant, key, e.customer_id.as_str());
            }
        }
        DomainEvent::CaseOpened(e) => {
            let key = format!("case:{}", e.case_id);
            if links.get(tenant, &key).is_none() {
                links.set(tenant, key, e.customer_id.as_str());
            }
        }
        DomainEvent::LeadConverted(e) => {
            links.set(
                tenant,
                format!("lead:{}", e.lead_id),
                e.customer_id.as_str(),
            );
            if let Some(opportunity) = &e.opportunity_id {
                let key = format!("opportunity:{opportunity}");
                if links.get(tenant, &key).is_none() {
                    links.set(tenant, key, e.customer_id.as_str());
                }
            }
        }
        _ => {}
    }
}

/// The link keys a batch needs loaded before it is folded: the entity links of events that
/// do not name their customer, and the merge links of every customer named.
pub fn keys_needed(events: &[std::sync::Arc<ProjectedEvent>]) -> BTreeSet<Key> {
    let mut keys = BTreeSet::new();
    // A batch names the same customers many times: each one's key is built once.
    let mut customers: HashSet<(&str, &str)> = HashSet::new();
    for event in events {
        let tenant = event.tenant.as_str();
        if let Some(key) = entity_key(&event.event) {
            keys.insert((tenant.to_owned(), key));
        }
        for customer in named_customers(&event.event) {
            if customers.insert((tenant, customer)) {
                keys.insert((tenant.to_owned(), merged_key(customer)));
            }
        }
    }
    keys
}

/// Every customer id an event's data names.
pub fn named_customers(event: &DomainEvent) -> impl Iterator<Item = &str> {
    let merged_into = match event {
        DomainEvent::CustomerMerged(e) => Some(e.into_customer_id.as_str()),
        _ => None,
    };
    event
        .customer_id()
        .map(|c| c.as_str())
        .into_iter()
        .chain(merged_into)
}
