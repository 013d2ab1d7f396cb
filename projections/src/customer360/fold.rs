//! The customer 360 fold: one pure function from events to customers' states, used by the
//! projection (over a batch, with the rows it touches preloaded) and on demand to fold one
//! customer's timeline up to a past moment. Nothing here reads the clock: figures that
//! depend on "now" are computed by [`crate::customer360::view`] at query time.
//!
//! Merges: when A is merged into B, A's interactions, orders, opportunities and cases are
//! added to B's (B keeps its own profile and consents), A's row stays, marked as merged into
//! B, and later events of A's stream, linked entities included, count for B.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::values::{CustomerKind, InteractionChannel, Priority, Stage};
use crm_core::envelope::Position;
use crm_core::money::Money;
use crm_core::privacy::{readable, readable_opt};
use serde::{Deserialize, Serialize};

use crate::attribution::{direct_customer, record_links};
use crate::event::ProjectedEvent;
use crate::rows::{Key, Links, merged_key};

/// Everything the 360 view is computed from, for one customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer360 {
    pub customer_id: String,
    /// A `CustomerRegistered` was seen (events may arrive first).
    pub registered: bool,
    pub kind: Option<CustomerKind>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    /// `"<channel>:<purpose>"` → the latest decision.
    pub consent: BTreeMap<String, Consent>,
    pub interactions: Interactions,
    /// `"<customer>/<order id>"` → order: the customer whose stream placed it, so orders of
    /// merged customers never collide.
    pub orders: BTreeMap<String, Order>,
    /// Refunds naming an order this customer does not have (kept out of the totals).
    pub unmatched_refunds: u32,
    pub opportunities: BTreeMap<String, OpportunitySummary>,
    pub cases: BTreeMap<String, CaseSummary>,
    /// Customers merged into this one (directly or through others).
    pub merged_ids: BTreeSet<String>,
    pub merged_into: Option<String>,
    pub erased_at: Option<DateTime<Utc>>,
    /// Business time of the first event seen.
    pub first_seen_at: Option<DateTime<Utc>>,
    /// Position of the last event applied.
    pub last_position: Position,
    /// The latest business time of an event that changed this customer's purchases (an
    /// order, a refund of one of its orders, a merge that brought orders): the stored
    /// purchase summary equals the fold at any time from then on.
    #[serde(default)]
    pub purchases_changed_at: Option<DateTime<Utc>>,
    /// The position of that event.
    #[serde(default)]
    pub purchases_position: Position,
    /// Products bought, from the lines of its orders (`OrderPlaced` version 2): product id →
    /// name, units and revenue. Absent from the stored document while empty, so customers
    /// whose orders carry no lines keep the document they had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub products: BTreeMap<String, ProductBought>,
}

/// One product a customer bought, over all its orders' lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductBought {
    /// The name on the latest line folded.
    pub name: String,
    /// Units bought (saturating).
    pub quantity: u64,
    /// Quantity × unit price per currency, in minor units (saturating; before order
    /// discounts and refunds).
    pub revenue: BTreeMap<crm_core::money::currency::Currency, i64>,
}

impl ProductBought {
    fn add(
        &mut self,
        name: &str,
        quantity: u64,
        currency: crm_core::money::currency::Currency,
        revenue: i128,
    ) {
        name.clone_into(&mut self.name);
        self.quantity = self.quantity.saturating_add(quantity);
        let total = self.revenue.entry(currency).or_insert(0);
        let sum = i128::from(*total) + revenue;
        *total = i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX });
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consent {
    pub granted: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interactions {
    pub total: u64,
    pub inbound: u64,
    pub outbound: u64,
    pub by_channel: BTreeMap<InteractionChannel, u64>,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub placed_at: DateTime<Utc>,
    pub amount: Money,
    /// Minor units refunded so far, in the order's currency.
    pub refunded: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    #[default]
    Unknown,
    Open,
    Won,
    Lost,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpportunitySummary {
    pub amount: Option<Money>,
    pub stage: Option<Stage>,
    pub status: DealStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    #[default]
    Unknown,
    Open,
    Resolved,
    Closed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSummary {
    pub priority: Option<Priority>,
    pub status: CaseState,
    pub opened_at: Option<DateTime<Utc>>,
}

/// Customers' states and the links that attribute events to them: a whole tenant's worth
/// when folding from scratch, or the part one batch touches when projecting.
#[derive(Debug, Default, Clone)]
pub struct World {
    pub customers: HashMap<Key, Customer360>,
    pub links: Links,
    /// Customers changed since the world was loaded.
    pub dirty: BTreeSet<Key>,
    /// A key reused for lookups, so finding a known customer allocates nothing.
    probe: Key,
}

impl World {
    /// A world of the given customers and links, nothing changed yet.
    pub fn new(customers: HashMap<Key, Customer360>, links: Links) -> World {
        World {
            customers,
            links,
            ..World::default()
        }
    }

    /// Folds one event.
    pub fn apply(&mut self, event: &ProjectedEvent) {
        record_links(&mut self.links, event);
        let tenant = event.tenant.as_str();
        let Some(direct) = direct_customer(&self.links, event) else {
            return;
        };
        if let DomainEvent::CustomerMerged(merge) = &event.event {
            self.merge(event, &direct, merge.into_customer_id.as_str());
            return;
        }
        if let DomainEvent::CustomerErased(_) = &event.event {
            // Erasure is about the person behind this id: it clears this row's profile,
            // wherever its figures went.
            let customer = self.customer(tenant, &direct, event);
            erase(customer, event.occurred_at);
            // Customers merged into it are erased with it (their keys went with its).
            let merged: Vec<String> = customer.merged_ids.iter().cloned().collect();
            for id in merged {
                let key = (tenant.to_owned(), id);
                if let Some(row) = self.customers.get_mut(&key) {
                    // Its profile goes; its own status stays `merged` (the erasure event is
                    // the survivor's).
                    row.name = None;
                    row.email = None;
                    row.phone = None;
                    self.dirty.insert(key);
                }
            }
            return;
        }
        let target = self.links.resolve(tenant, &direct);
        let customer = self.customer(tenant, &target, event);
        apply_to(customer, &direct, event);
    }

    /// The state of a customer, created empty if never seen; marks it changed.
    fn customer(&mut self, tenant: &str, id: &str, event: &ProjectedEvent) -> &mut Customer360 {
        let mut probe = std::mem::take(&mut self.probe);
        probe.0.clear();
        probe.0.push_str(tenant);
        probe.1.clear();
        probe.1.push_str(id);
        if !self.dirty.contains(&probe) {
            self.dirty.insert(probe.clone());
        }
        if !self.customers.contains_key(&probe) {
            self.customers.insert(
                probe.clone(),
                Customer360 {
                    customer_id: id.to_owned(),
                    ..Customer360::default()
                },
            );
        }
        let customer = self.customers.get_mut(&probe);
        self.probe = probe;
        let Some(customer) = customer else {
            unreachable!("inserted above");
        };
        customer.first_seen_at = Some(
            customer
                .first_seen_at
                .map_or(event.occurred_at, |at| at.min(event.occurred_at)),
        );
        customer.last_position = customer.last_position.max(event.position);
        customer
    }

    fn merge(&mut self, event: &ProjectedEvent, from: &str, into: &str) {
        let tenant = event.tenant.as_str();
        let target = self.links.resolve(tenant, into);
        let already_merged = self.links.get(tenant, &merged_key(from)).is_some();
        if target == from || already_merged {
            // Merging into itself (or into a customer already merged into it), or merging a
            // customer twice: recorded on the row, no figures move.
            self.customer(tenant, from, event);
            return;
        }
        let source = self.customer(tenant, from, event).clone();
        let survivor = self.customer(tenant, &target, event);
        absorb(survivor, &source);
        if !source.orders.is_empty() {
            purchases_changed(survivor, event);
        }
        if let Some(merged) = self
            .customers
            .get_mut(&(tenant.to_owned(), from.to_owned()))
        {
            merged.merged_into = Some(target.clone());
        }
        self.links.set(tenant, merged_key(from), &target);
    }

    /// A customer's state, if the world has it.
    pub fn get(&self, tenant: &str, id: &str) -> Option<&Customer360> {
        self.customers.get(&(tenant.to_owned(), id.to_owned()))
    }
}

/// Folds `events` (in position order) from nothing and returns `customer`'s state: the
/// as-of view when `events` is the customer's timeline cut at some moment.
pub fn fold_customer(
    tenant: &str,
    customer: &str,
    events: &[Arc<ProjectedEvent>],
) -> Option<Customer360> {
    let mut world = World::default();
    for event in events {
        world.apply(event);
    }
    world.get(tenant, customer).cloned()
}

/// Records that `event` changed the customer's purchases.
fn purchases_changed(customer: &mut Customer360, event: &ProjectedEvent) {
    customer.purchases_changed_at = Some(
        customer
            .purchases_changed_at
            .map_or(event.occurred_at, |at| at.max(event.occurred_at)),
    );
    customer.purchases_position = customer.purchases_position.max(event.position);
}

fn erase(customer: &mut Customer360, at: DateTime<Utc>) {
    customer.name = None;
    customer.email = None;
    customer.phone = None;
    if customer.erased_at.is_none() {
        customer.erased_at = Some(at);
    }
}

/// Applies an event attributed to `direct` to the view it now lives in.
fn apply_to(customer: &mut Customer360, direct: &str, event: &ProjectedEvent) {
    let erased = customer.erased_at.is_some();
    let at = event.occurred_at;
    match &event.event {
        DomainEvent::CustomerRegistered(e) => {
            customer.registered = true;
            customer.kind = Some(e.kind);
            if !erased {
                customer.name = readable(&e.name);
                customer.email = readable_opt(&e.email);
                customer.phone = readable_opt(&e.phone);
            }
            customer.segment = e.segment.clone().or(customer.segment.take());
            customer.owner = e
                .owner
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .or(customer.owner.take());
        }
        DomainEvent::CustomerProfileUpdated(e) => {
            if !erased {
                set_if(&mut customer.name, &readable_opt(&e.name));
                set_if(&mut customer.email, &readable_opt(&e.email));
                set_if(&mut customer.phone, &readable_opt(&e.phone));
            }
            set_if(&mut customer.segment, &e.segment);
            if let Some(owner) = &e.owner {
                customer.owner = Some(owner.as_str().to_owned());
            }
        }
        DomainEvent::CustomerConsentChanged(e) => {
            customer.consent.insert(
                format!("{}:{}", e.channel.as_str(), e.purpose.as_str()),
                Consent {
                    granted: e.granted,
                    at,
                },
            );
        }
        DomainEvent::InteractionLogged(e) => {
            let i = &mut customer.interactions;
            i.total += 1;
            match e.direction {
                crm_core::catalog::values::Direction::Inbound => i.inbound += 1,
                crm_core::catalog::values::Direction::Outbound => i.outbound += 1,
            }
            *i.by_channel.entry(e.channel).or_insert(0) += 1;
            i.first_at = Some(i.first_at.map_or(at, |f| f.min(at)));
            i.last_at = Some(i.last_at.map_or(at, |l| l.max(at)));
        }
        DomainEvent::OrderPlaced(e) => {
            let key = format!("{direct}/{}", e.order_id);
            if let std::collections::btree_map::Entry::Vacant(slot) = customer.orders.entry(key) {
                slot.insert(Order {
                    order_id: e.order_id.as_str().to_owned(),
                    placed_at: at,
                    amount: e.amount,
                    refunded: 0,
                });
                purchases_changed(customer, event);
                for line in &e.lines {
                    customer
                        .products
                        .entry(line.product_id.as_str().to_owned())
                        .or_default()
                        .add(
                            &line.name,
                            line.quantity,
                            e.amount.currency,
                            line.total_minor(),
                        );
                }
            }
        }
        DomainEvent::OrderRefunded(e) => {
            match customer.orders.get_mut(&format!("{direct}/{}", e.order_id)) {
                Some(order) if order.amount.currency == e.amount.currency => {
                    order.refunded = order.refunded.saturating_add(e.amount.minor_units);
                    purchases_changed(customer, event);
                }
                _ => customer.unmatched_refunds += 1,
            }
        }
        DomainEvent::OpportunityOpened(e) => {
            let deal = customer
                .opportunities
                .entry(e.opportunity_id.as_str().to_owned())
                .or_default();
            if deal.status == DealStatus::Unknown {
                deal.amount = Some(e.amount);
                deal.stage = Some(e.stage);
                deal.status = DealStatus::Open;
            }
        }
        DomainEvent::OpportunityStageChanged(e) => {
            let deal = deal(customer, e.opportunity_id.as_str());
            if matches!(deal.status, DealStatus::Open | DealStatus::Unknown) {
                deal.stage = Some(e.stage);
            }
        }
        DomainEvent::OpportunityUpdated(e) => {
            let deal = deal(customer, e.opportunity_id.as_str());
            if matches!(deal.status, DealStatus::Open | DealStatus::Unknown) && e.amount.is_some() {
                deal.amount = e.amount;
            }
        }
        DomainEvent::OpportunityWon(e) => {
            let deal = deal(customer, e.opportunity_id.as_str());
            if matches!(deal.status, DealStatus::Open | DealStatus::Unknown) {
                deal.status = DealStatus::Won;
                deal.stage = Some(Stage::ClosedWon);
            }
        }
        DomainEvent::OpportunityLost(e) => {
            let deal = deal(customer, e.opportunity_id.as_str());
            if matches!(deal.status, DealStatus::Open | DealStatus::Unknown) {
                deal.status = DealStatus::Lost;
                deal.stage = Some(Stage::ClosedLost);
            }
        }
        DomainEvent::CaseOpened(e) => {
            let case = customer
                .cases
                .entry(e.case_id.as_str().to_owned())
                .or_default();
            if case.status == CaseState::Unknown {
                case.priority = Some(e.priority);
                case.status = CaseState::Open;
                case.opened_at = Some(at);
            }
        }
        DomainEvent::CaseEscalated(e) => {
            let case = case(customer, e.case_id.as_str());
            if let Some(priority) = e.priority {
                case.priority = Some(case.priority.map_or(priority, |p| p.max(priority)));
            }
        }
        DomainEvent::CaseResolved(e) => {
            case(customer, e.case_id.as_str()).status = CaseState::Resolved
        }
        DomainEvent::CaseReopened(e) => case(customer, e.case_id.as_str()).status = CaseState::Open,
        DomainEvent::CaseClosed(e) => case(customer, e.case_id.as_str()).status = CaseState::Closed,
        // Assignments and responses, lead and campaign events only appear in the timeline.
        _ => {}
    }
}

fn set_if(field: &mut Option<String>, value: &Option<String>) {
    if let Some(value) = value {
        *field = Some(value.clone());
    }
}

fn deal<'a>(customer: &'a mut Customer360, id: &str) -> &'a mut OpportunitySummary {
    customer.opportunities.entry(id.to_owned()).or_default()
}

fn case<'a>(customer: &'a mut Customer360, id: &str) -> &'a mut CaseSummary {
    customer.cases.entry(id.to_owned()).or_default()
}

/// Adds a merged customer's figures to the survivor's.
fn absorb(survivor: &mut Customer360, merged: &Customer360) {
    let s = &mut survivor.interactions;
    let m = &merged.interactions;
    s.total += m.total;
    s.inbound += m.inbound;
    s.outbound += m.outbound;
    for (channel, count) in &m.by_channel {
        *s.by_channel.entry(*channel).or_insert(0) += count;
    }
    s.first_at = min_opt(s.first_at, m.first_at);
    s.last_at = max_opt(s.last_at, m.last_at);
    for (key, order) in &merged.orders {
        survivor
            .orders
            .entry(key.clone())
            .or_insert_with(|| order.clone());
    }
    survivor.unmatched_refunds += merged.unmatched_refunds;
    for (id, bought) in &merged.products {
        let product = survivor.products.entry(id.clone()).or_default();
        if product.name.is_empty() {
            product.name.clone_from(&bought.name);
        }
        product.quantity = product.quantity.saturating_add(bought.quantity);
        for (currency, revenue) in &bought.revenue {
            let total = product.revenue.entry(*currency).or_insert(0);
            *total = total.saturating_add(*revenue);
        }
    }
    for (id, deal) in &merged.opportunities {
        survivor
            .opportunities
            .entry(id.clone())
            .or_insert_with(|| deal.clone());
    }
    for (id, case) in &merged.cases {
        survivor
            .cases
            .entry(id.clone())
            .or_insert_with(|| case.clone());
    }
    survivor.merged_ids.insert(merged.customer_id.clone());
    survivor
        .merged_ids
        .extend(merged.merged_ids.iter().cloned());
    survivor.first_seen_at = min_opt(survivor.first_seen_at, merged.first_seen_at);
}

fn min_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
