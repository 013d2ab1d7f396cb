//! The products report (`GET /v1/analytics/products`, issue 18 item 6): over the orders with
//! lines placed in one currency within a business-time period, the top products by revenue
//! and by quantity, and the products bought together.
//!
//! Definitions (also in `docs/analytics.md`). `N` is the number of orders with lines in the
//! currency and period; `orders(A)` the number of those orders with a line of product A;
//! `together(A, B)` the number with lines of both A and B (a pair is counted once per order,
//! however many lines of each it has). Then support = together / N, confidence(A → B) =
//! together / orders(A), and lift = together × N / (orders(A) × orders(B)): 1 when buying A
//! tells nothing about buying B, above 1 when they go together more often than chance.
//! Revenue is `quantity × unit_price` summed over the lines (gross: before the order's
//! discount and refunds), exact in 128 bits, an error naming the product when a total does
//! not fit 64-bit minor units. A product's name is the one on its latest line in the period
//! (by business time, then log position).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use serde::Serialize;

use super::TABLE;
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;

/// What the report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductsQuery {
    pub currency: Currency,
    /// Orders placed at or after this business time.
    pub from: Option<DateTime<Utc>>,
    /// Orders placed before this business time: the report as it stood then.
    pub to: Option<DateTime<Utc>>,
    /// Most products in each top list and most pairs listed.
    pub limit: usize,
    /// Pairs bought together in fewer orders are left out.
    pub min_together: u64,
}

/// One product's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProductFigures {
    pub product_id: String,
    /// The name on the product's latest line in the period.
    pub name: String,
    /// Units sold.
    pub quantity: u64,
    /// Orders with a line of the product.
    pub orders: u64,
    /// Quantity × unit price over its lines, before order discounts and refunds.
    pub revenue: Money,
}

/// Two products bought in the same orders.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProductPair {
    /// The smaller product id of the two.
    pub product_a: String,
    pub product_b: String,
    /// Orders with lines of both (the support count).
    pub orders_together: u64,
    /// orders_together / orders in the report.
    pub support: f64,
    /// orders_together / orders with product_a: how often a buyer of A also bought B.
    pub confidence_a_to_b: f64,
    /// orders_together / orders with product_b.
    pub confidence_b_to_a: f64,
    /// support / (support(A) × support(B)); above 1: bought together more than by chance.
    pub lift: f64,
}

/// What `GET /v1/analytics/products` answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProductsReport {
    pub currency: Currency,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Orders with lines in the currency and period (N).
    pub orders: u64,
    /// Distinct products on their lines.
    pub products: u64,
    /// By revenue, highest first (ties by product id).
    pub top_by_revenue: Vec<ProductFigures>,
    /// By units sold, most first (ties by product id).
    pub top_by_quantity: Vec<ProductFigures>,
    /// Pairs by orders together, then lift, highest first (ties by the two ids).
    pub bought_together: Vec<ProductPair>,
    /// What the figures are computed from, in one sentence.
    pub basis: String,
}

/// One stored line, as the report reads it.
#[derive(Debug, Clone)]
pub struct LineRow {
    pub customer_id: String,
    pub order_id: String,
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    pub placed_at: i64,
    pub position: i64,
}

/// The report of `tenant` from the live read model.
pub async fn products_report(
    db: &ReadDb,
    tenant: &str,
    query: &ProductsQuery,
) -> Result<ProductsReport, ProjectionError> {
    let mut sql = format!(
        "SELECT customer_id, order_id, product_id, name, quantity, revenue_minor, placed_at, position \
         FROM {TABLE} WHERE tenant = ? AND currency = ?"
    );
    let mut args: Vec<SqlValue> = vec![tenant.into(), query.currency.code().into()];
    if let Some(from) = query.from {
        sql.push_str(" AND placed_at >= ?");
        args.push(SqlValue::Int(from.timestamp_micros()));
    }
    if let Some(to) = query.to {
        sql.push_str(" AND placed_at < ?");
        args.push(SqlValue::Int(to.timestamp_micros()));
    }
    let rows = db
        .fetch(
            &sql,
            args,
            &[
                Col::Text,
                Col::Text,
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
                Col::Int,
            ],
        )
        .await?;
    let lines = rows.into_iter().map(|row| {
        let mut row = row.into_iter();
        let mut text = || row.next().and_then(SqlValue::into_text).unwrap_or_default();
        let (customer_id, order_id, product_id, name) = (text(), text(), text(), text());
        let mut int = || row.next().and_then(|v| v.as_int()).unwrap_or(0);
        LineRow {
            customer_id,
            order_id,
            product_id,
            name,
            quantity: int(),
            revenue_minor: int(),
            placed_at: int(),
            position: int(),
        }
    });
    report_of(query, lines)
}

#[derive(Default)]
struct Product {
    name: String,
    /// (business time, position) of the line the name was taken from.
    named_at: (i64, i64),
    quantity: u128,
    revenue: i128,
    orders: BTreeSet<(String, String)>,
}

/// The report of `lines` (any order), the rows the query selected.
pub fn report_of(
    query: &ProductsQuery,
    lines: impl IntoIterator<Item = LineRow>,
) -> Result<ProductsReport, ProjectionError> {
    let mut products: BTreeMap<String, Product> = BTreeMap::new();
    // Order → its distinct products.
    let mut orders: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in lines {
        let order = (line.customer_id, line.order_id);
        let product = products.entry(line.product_id.clone()).or_default();
        if (line.placed_at, line.position) >= product.named_at || product.name.is_empty() {
            product.name = line.name;
            product.named_at = (line.placed_at, line.position);
        }
        product.quantity += u128::try_from(line.quantity).unwrap_or(0);
        product.revenue += i128::from(line.revenue_minor);
        product.orders.insert(order.clone());
        orders.entry(order).or_default().insert(line.product_id);
    }
    let mut together: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for items in orders.values() {
        let items: Vec<&String> = items.iter().collect();
        for (i, a) in items.iter().enumerate() {
            for b in &items[i + 1..] {
                *together.entry((a.as_str(), b.as_str())).or_insert(0) += 1;
            }
        }
    }
    let n = orders.len() as u64;
    let mut figures = Vec::with_capacity(products.len());
    for (id, product) in &products {
        figures.push(ProductFigures {
            product_id: id.clone(),
            name: product.name.clone(),
            quantity: u64::try_from(product.quantity).unwrap_or(u64::MAX),
            orders: product.orders.len() as u64,
            revenue: i64::try_from(product.revenue)
                .map(|minor| Money::new(minor, query.currency))
                .map_err(|_| ProjectionError::TotalOverflow {
                    what: format!("the revenue of product {id} in {}", query.currency),
                })?,
        });
    }
    let mut by_revenue = figures.clone();
    by_revenue.sort_by(|a, b| {
        b.revenue
            .minor_units
            .cmp(&a.revenue.minor_units)
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    by_revenue.truncate(query.limit);
    let mut by_quantity = figures;
    by_quantity.sort_by(|a, b| {
        b.quantity
            .cmp(&a.quantity)
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    by_quantity.truncate(query.limit);
    let orders_of = |id: &str| products.get(id).map_or(0, |p| p.orders.len() as u64);
    let mut pairs: Vec<ProductPair> = together
        .into_iter()
        .filter(|(_, count)| *count >= query.min_together.max(1))
        .map(|((a, b), count)| {
            let (with_a, with_b) = (orders_of(a) as f64, orders_of(b) as f64);
            let count_f = count as f64;
            ProductPair {
                product_a: a.to_owned(),
                product_b: b.to_owned(),
                orders_together: count,
                support: count_f / n as f64,
                confidence_a_to_b: count_f / with_a,
                confidence_b_to_a: count_f / with_b,
                lift: count_f * n as f64 / (with_a * with_b),
            }
        })
        .collect();
    pairs.sort_by(|a, b| {
        b.orders_together
            .cmp(&a.orders_together)
            .then_with(|| b.lift.total_cmp(&a.lift))
            .then_with(|| (&a.product_a, &a.product_b).cmp(&(&b.product_a, &b.product_b)))
    });
    pairs.truncate(query.limit);
    Ok(ProductsReport {
        currency: query.currency,
        from: query.from,
        to: query.to,
        orders: n,
        products: products.len() as u64,
        top_by_revenue: by_revenue,
        top_by_quantity: by_quantity,
        bought_together: pairs,
        basis: format!(
            "order lines of OrderPlaced events in {} placed {}: revenue is quantity × unit price before order discounts and refunds",
            query.currency,
            period_text(query.from, query.to)
        ),
    })
}

fn period_text(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    match (from, to) {
        (None, None) => "at any time".to_owned(),
        (Some(f), None) => format!("from {}", at(f)),
        (None, Some(t)) => format!("before {}", at(t)),
        (Some(f), Some(t)) => format!("from {} and before {}", at(f), at(t)),
    }
}
