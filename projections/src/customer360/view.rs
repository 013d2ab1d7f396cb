//! The 360 view as served: the folded state plus the figures that depend on the evaluation
//! time (recency/frequency/monetary), computed at query time so the projection never reads
//! the clock.
//!
//! RFM follows the BTYD convention of `lifetimes.utils.summary_data_from_transaction_data`
//! with daily periods, per currency: a purchase day is a UTC day with at least one order not
//! fully refunded (a free order cannot be refunded, so it counts), worth the day's orders net
//! of their refunds (0 for a free order); `frequency` = purchase days − 1; `recency` = days from
//! the first to the last purchase day; `t` = days from the first purchase day to the
//! evaluation day; `monetary_value` = mean of the day totals over the purchase days after
//! the first (0 when frequency is 0), rounded half away from zero to the currency's minor
//! unit.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use serde::Serialize;

use crate::customer360::fold::{CaseState, Consent, Customer360, DealStatus, Interactions};
use crate::event::TimelineEntry;

/// What `GET /v1/customers/{id}` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub customer_id: String,
    /// `active`, `merged` or `erased`.
    pub status: &'static str,
    pub registered: bool,
    pub kind: Option<&'static str>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    pub consent: BTreeMap<String, Consent>,
    pub interactions: Interactions,
    pub orders: OrderFigures,
    pub rfm: Vec<Rfm>,
    pub open_opportunities: Vec<DealLine>,
    pub won_opportunities: Vec<DealLine>,
    pub open_opportunity_totals: Vec<Money>,
    pub won_opportunity_totals: Vec<Money>,
    pub open_cases: Vec<CaseLine>,
    /// Products bought, from order lines (`OrderPlaced` version 2), by product id; left out
    /// when no order of the customer has lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ProductLine>,
    pub merged_ids: Vec<String>,
    pub merged_into: Option<String>,
    pub erased_at: Option<DateTime<Utc>>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub recent_timeline: Vec<TimelineEntry>,
    /// The time figures were evaluated at.
    pub evaluated_at: DateTime<Utc>,
    /// The last event folded into this view.
    pub last_position: u64,
    /// RFM segment, P(alive), churn risk and CLV per currency under the day's fit (issue 17);
    /// filled in by the query that serves the view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics: Option<crate::analytics::fit::CustomerAnalytics>,
    /// The account this person is a contact of at the view's moment (issue 18); filled in
    /// by the query that serves the view, absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_of: Option<crate::accounts::AccountLink>,
    /// A company's contacts at the view's moment and their figures summed beside its own
    /// (issue 18); filled in by the query that serves the view, absent for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<crate::accounts::AccountSummary>,
    /// Open tasks whose subject is this customer, soonest due first, `overdue` at the
    /// evaluation time (issue 18); filled in by the query that serves the view, for a past
    /// view the tasks open then, each folded from its stream cut there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_tasks: Option<Vec<crate::tasks::TaskLine>>,
    /// The consent history and the marketing contacts flagged as violations, at the view's
    /// moment (issue 18); filled in by the query that serves the view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_record: Option<crate::consent::ConsentRecord>,
    /// The latest CSAT and NPS answers at the view's moment (issue 19); filled in by the
    /// query that serves the view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub satisfaction: Option<crate::service_quality::Satisfaction>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderFigures {
    pub count: u64,
    /// Orders refunded in full: their refunds add up to at least their amount. Orders
    /// refunded in part are not counted here but in `partially_refunded_count`.
    pub refunded_count: u64,
    /// Orders refunded in part: some refund, adding up to less than their amount.
    pub partially_refunded_count: u64,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    pub by_currency: Vec<CurrencyFigures>,
    pub unmatched_refunds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CurrencyFigures {
    pub currency: Currency,
    pub count: u64,
    pub gross: Money,
    pub refunded: Money,
    /// Lifetime value: gross minus refunds.
    pub net: Money,
    /// Net divided by the number of orders.
    pub average: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rfm {
    pub currency: Currency,
    pub frequency: i64,
    pub recency: i64,
    #[serde(rename = "T")]
    pub t: i64,
    pub monetary_value: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DealLine {
    pub opportunity_id: String,
    pub amount: Option<Money>,
    pub stage: Option<&'static str>,
}

/// One product a customer bought, over all its orders' lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProductLine {
    pub product_id: String,
    /// The name on the latest line.
    pub name: String,
    /// Units bought.
    pub quantity: u64,
    /// Quantity × unit price per currency (before order discounts and refunds), never
    /// summed across currencies.
    pub revenue: Vec<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CaseLine {
    pub case_id: String,
    pub priority: Option<&'static str>,
    pub opened_at: Option<DateTime<Utc>>,
}

impl Customer360 {
    /// The view with time-dependent figures evaluated at `at`, showing `recent` (the last
    /// entries of the customer's timeline, newest first).
    pub fn view(&self, at: DateTime<Utc>, recent: Vec<TimelineEntry>) -> CustomerView {
        let status = if self.merged_into.is_some() {
            "merged"
        } else if self.erased_at.is_some() {
            "erased"
        } else {
            "active"
        };
        let deals = |wanted: DealStatus| -> Vec<DealLine> {
            self.opportunities
                .iter()
                .filter(|(_, d)| d.status == wanted)
                .map(|(id, d)| DealLine {
                    opportunity_id: id.clone(),
                    amount: d.amount,
                    stage: d.stage.map(|s| s.as_str()),
                })
                .collect()
        };
        let open_opportunities = deals(DealStatus::Open);
        let won_opportunities = deals(DealStatus::Won);
        CustomerView {
            customer_id: self.customer_id.clone(),
            status,
            registered: self.registered,
            kind: self.kind.map(|k| k.as_str()),
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            segment: self.segment.clone(),
            owner: self.owner.clone(),
            consent: self.consent.clone(),
            interactions: self.interactions.clone(),
            orders: self.order_figures(),
            rfm: self.rfm(at),
            open_opportunity_totals: totals(&open_opportunities),
            won_opportunity_totals: totals(&won_opportunities),
            open_opportunities,
            won_opportunities,
            open_cases: self
                .cases
                .iter()
                .filter(|(_, c)| c.status == CaseState::Open)
                .map(|(id, c)| CaseLine {
                    case_id: id.clone(),
                    priority: c.priority.map(|p| p.as_str()),
                    opened_at: c.opened_at,
                })
                .collect(),
            products: self
                .products
                .iter()
                .map(|(id, p)| ProductLine {
                    product_id: id.clone(),
                    name: p.name.clone(),
                    quantity: p.quantity,
                    revenue: p
                        .revenue
                        .iter()
                        .map(|(currency, minor)| Money::new(*minor, *currency))
                        .collect(),
                })
                .collect(),
            merged_ids: self.merged_ids.iter().cloned().collect(),
            merged_into: self.merged_into.clone(),
            erased_at: self.erased_at,
            first_seen_at: self.first_seen_at,
            recent_timeline: recent,
            evaluated_at: at,
            last_position: self.last_position,
            analytics: None,
            contact_of: None,
            account: None,
            open_tasks: None,
            consent_record: None,
            satisfaction: None,
        }
    }

    /// Order counts and money figures per currency, refunds netted.
    pub fn order_figures(&self) -> OrderFigures {
        let mut figures = OrderFigures {
            unmatched_refunds: self.unmatched_refunds,
            ..OrderFigures::default()
        };
        let mut per: BTreeMap<Currency, (u64, i64, i64)> = BTreeMap::new();
        for order in self.orders.values() {
            figures.count += 1;
            // A free order cannot be refunded: it is never counted as refunded.
            if order.amount.minor_units > 0 && order.refunded >= order.amount.minor_units {
                figures.refunded_count += 1;
            } else if order.refunded > 0 {
                figures.partially_refunded_count += 1;
            }
            figures.first_at = Some(
                figures
                    .first_at
                    .map_or(order.placed_at, |f| f.min(order.placed_at)),
            );
            figures.last_at = Some(
                figures
                    .last_at
                    .map_or(order.placed_at, |l| l.max(order.placed_at)),
            );
            let entry = per.entry(order.amount.currency).or_insert((0, 0, 0));
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(order.amount.minor_units);
            entry.2 = entry.2.saturating_add(order.refunded);
        }
        figures.by_currency = per
            .into_iter()
            .map(|(currency, (count, gross, refunded))| {
                let net = gross.saturating_sub(refunded);
                CurrencyFigures {
                    currency,
                    count,
                    gross: Money::new(gross, currency),
                    refunded: Money::new(refunded, currency),
                    net: Money::new(net, currency),
                    average: Money::new(div_round(i128::from(net), i128::from(count)), currency),
                }
            })
            .collect();
        figures
    }

    /// Per currency, the purchase days in order with their net value (minor units): a day
    /// with at least one order not fully refunded (a free order cannot be refunded, so it
    /// counts), worth the day's orders net of their refunds.
    pub fn purchase_days(&self) -> BTreeMap<Currency, Vec<(NaiveDate, i64)>> {
        // Per currency and day: (an order not fully refunded, the day's net amount).
        let mut days: BTreeMap<Currency, BTreeMap<NaiveDate, (bool, i64)>> = BTreeMap::new();
        for order in self.orders.values() {
            let net = order.amount.minor_units.saturating_sub(order.refunded);
            let kept = order.amount.minor_units == 0 || order.refunded < order.amount.minor_units;
            let day = days
                .entry(order.amount.currency)
                .or_default()
                .entry(order.placed_at.date_naive())
                .or_insert((false, 0));
            day.0 |= kept;
            day.1 = day.1.saturating_add(net);
        }
        days.into_iter()
            .map(|(currency, days)| {
                let purchase = days
                    .into_iter()
                    .filter(|(_, (kept, _))| *kept)
                    .map(|(day, (_, total))| (day, total))
                    .collect();
                (currency, purchase)
            })
            .collect()
    }

    /// Recency, frequency, T and monetary value per currency, evaluated at `at`. A day is a
    /// purchase day when it has at least one order not fully refunded (a free order cannot be
    /// refunded, so it counts); its value is the day's net amount (0 for a free order). Where
    /// nothing is refunded this is how `lifetimes` summarises transactions.
    pub fn rfm(&self, at: DateTime<Utc>) -> Vec<Rfm> {
        let evaluation_day = at.date_naive();
        // An order dated after the evaluation time (a future `occurred_at`) has not happened
        // yet at `at`: it counts from its day on, as a view as of that day would count it.
        self.rfm_days_through(Some(evaluation_day))
            .into_iter()
            .map(|days| Rfm {
                currency: days.currency,
                frequency: days.frequency,
                recency: (days.last_day - days.first_day).num_days(),
                t: (evaluation_day - days.first_day).num_days(),
                monetary_value: Money::new(days.monetary_minor, days.currency),
            })
            .collect()
    }

    /// The part of [`Customer360::rfm`] that does not depend on the evaluation time, per
    /// currency with at least one purchase day: what the stored summaries hold.
    pub fn rfm_days(&self) -> Vec<RfmDays> {
        self.rfm_days_through(None)
    }

    /// [`Customer360::rfm_days`] of the purchase days up to `last` (all when `None`).
    fn rfm_days_through(&self, last: Option<NaiveDate>) -> Vec<RfmDays> {
        self.purchase_days()
            .into_iter()
            .filter_map(|(currency, mut purchase)| {
                if let Some(last) = last {
                    purchase.retain(|(day, _)| *day <= last);
                }
                let (first_day, _) = *purchase.first()?;
                let (last_day, _) = *purchase.last()?;
                let repeat = &purchase[1..];
                let frequency = i64::try_from(repeat.len()).unwrap_or(i64::MAX);
                let monetary_minor = if repeat.is_empty() {
                    0
                } else {
                    let sum: i128 = repeat.iter().map(|(_, total)| i128::from(*total)).sum();
                    div_round(sum, i128::from(frequency))
                };
                Some(RfmDays {
                    currency,
                    first_day,
                    last_day,
                    frequency,
                    monetary_minor,
                })
            })
            .collect()
    }
}

/// A customer's purchase days in one currency, summarised: first and last day, repeat days
/// and their mean value in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfmDays {
    pub currency: Currency,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub frequency: i64,
    pub monetary_minor: i64,
}

/// `numerator / denominator` rounded half away from zero; 0 for a zero denominator.
pub(crate) fn div_round(numerator: i128, denominator: i128) -> i64 {
    if denominator == 0 {
        return 0;
    }
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    let rounded = if 2 * remainder.abs() >= denominator.abs() {
        quotient + numerator.signum() * denominator.signum()
    } else {
        quotient
    };
    i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
}

/// Sums of `amounts` per currency, exact (128-bit).
fn wide_sums(amounts: impl Iterator<Item = Money>) -> BTreeMap<Currency, i128> {
    let mut per: BTreeMap<Currency, i128> = BTreeMap::new();
    for amount in amounts {
        *per.entry(amount.currency).or_insert(0) += i128::from(amount.minor_units);
    }
    per
}

impl Customer360 {
    /// The first money total of the view that would not fit 64-bit minor units, named; the
    /// query answers an error instead of a clipped figure. Ingest keeps one customer
    /// stream's orders within range, but a merge adds another customer's, and deal totals
    /// span many deals.
    pub fn overflowing_total(&self) -> Option<String> {
        let fits = |sums: BTreeMap<Currency, i128>| {
            sums.into_iter()
                .find(|(_, sum)| i64::try_from(*sum).is_err())
                .map(|(currency, _)| currency)
        };
        let orders = self.orders.values();
        let deals = |wanted: DealStatus| {
            self.opportunities
                .values()
                .filter(move |d| d.status == wanted)
                .filter_map(|d| d.amount)
        };
        let named = [
            ("orders", fits(wide_sums(orders.clone().map(|o| o.amount)))),
            (
                "refunds",
                fits(wide_sums(
                    orders.map(|o| Money::new(o.refunded, o.amount.currency)),
                )),
            ),
            ("open deals", fits(wide_sums(deals(DealStatus::Open)))),
            ("won deals", fits(wide_sums(deals(DealStatus::Won)))),
        ];
        named.into_iter().find_map(|(what, currency)| {
            currency.map(|c| format!("the total of customer {}'s {what} in {c}", self.customer_id))
        })
    }
}

fn totals(deals: &[DealLine]) -> Vec<Money> {
    let mut per: BTreeMap<Currency, i64> = BTreeMap::new();
    for amount in deals.iter().filter_map(|d| d.amount) {
        // Within range: `overflowing_total` is asked before a view is built.
        let total = per.entry(amount.currency).or_insert(0);
        *total = total.saturating_add(amount.minor_units);
    }
    per.into_iter()
        .map(|(currency, minor)| Money::new(minor, currency))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer360::fold::Order;

    fn order(id: &str, day: &str, amount: &str, refunded: i64) -> (String, Order) {
        let placed_at = DateTime::parse_from_rfc3339(&format!("{day}T10:00:00Z"))
            .expect("time")
            .with_timezone(&Utc);
        let order = Order {
            order_id: id.to_owned(),
            placed_at,
            amount: Money::parse(amount, "EUR").expect("amount"),
            refunded,
        };
        (id.to_owned(), order)
    }

    /// Issue 17's correction: a free order is a purchase day worth 0 and is never counted as
    /// refunded; a day whose only order was refunded in full is not a purchase day; a day with
    /// one order refunded in full and another kept is, worth their net sum.
    #[test]
    fn free_orders_are_purchase_days_and_fully_refunded_days_are_not() {
        let view = Customer360 {
            orders: [
                order("o-1", "2026-01-01", "10.00", 0),
                order("o-2", "2026-01-05", "0.00", 0),
                order("o-3", "2026-01-09", "8.00", 800),
                order("o-4", "2026-01-12", "6.00", 600),
                order("o-5", "2026-01-12", "4.00", 100),
            ]
            .into_iter()
            .collect(),
            ..Customer360::default()
        };
        let at = DateTime::parse_from_rfc3339("2026-01-31T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let rfm = view.rfm(at);
        assert_eq!(rfm.len(), 1);
        // Purchase days: Jan 1 (10.00), Jan 5 (0.00, free), Jan 12 (0.00 + 3.00); not Jan 9.
        assert_eq!(rfm[0].frequency, 2);
        assert_eq!(rfm[0].recency, 11);
        assert_eq!(rfm[0].t, 30);
        assert_eq!(
            rfm[0].monetary_value,
            Money::parse("1.50", "EUR").expect("m")
        );
        // Evaluated before the later orders, only what had happened counts (a 422 once: the
        // recency came out beyond the customer's age).
        let early = DateTime::parse_from_rfc3339("2026-01-06T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let rfm = view.rfm(early);
        assert_eq!(rfm[0].frequency, 1, "Jan 1 and Jan 5");
        assert_eq!(rfm[0].recency, 4);
        assert_eq!(rfm[0].t, 5);
        let before = DateTime::parse_from_rfc3339("2025-12-31T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert!(view.rfm(before).is_empty(), "no purchase had happened");
        let figures = view.order_figures();
        assert_eq!(figures.count, 5);
        assert_eq!(figures.refunded_count, 2, "o-3 and o-4; never the free o-2");
        assert_eq!(figures.partially_refunded_count, 1);
    }
}
