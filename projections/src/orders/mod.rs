//! The order lines read model (issue 18, item 6): one row per line of every `OrderPlaced`
//! that carries lines (schema version 2), with the order's customer stream, currency and
//! business time, and [`report`], the products report over it (top products by revenue and
//! quantity, products bought together).
//!
//! Orders without lines (every version 1 order, and version 2 orders sent without them) give
//! no rows. A line's revenue is `quantity × unit_price` in the order's currency: gross, before
//! the order's `discount` and its refunds (refunds are per order, not per line). Nothing here
//! is personal data (product ids and names are the business's labels), so erasure clears
//! nothing; merges do not move rows (the report never groups by customer).

pub mod report;

use std::collections::HashSet;
use std::sync::Arc;

use crm_core::catalog::DomainEvent;

use crate::bookkeeping::from_position;
use crate::db::{ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};

pub use report::{ProductFigures, ProductPair, ProductsQuery, ProductsReport, products_report};

pub const TABLE: &str = "rm_order_lines";
/// The projection's name (its checkpoint's key).
pub const NAME: &str = "order_lines";

const TABLES: &[TableDef] = &[TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        position BIGINT NOT NULL,
        line BIGINT NOT NULL,
        customer_id TEXTKEY NOT NULL,
        order_id TEXTKEY NOT NULL,
        product_id TEXTKEY NOT NULL,
        name TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        currency TEXT NOT NULL,
        revenue_minor BIGINT NOT NULL,
        placed_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, customer_id, order_id, line)
    ) WITHOUT_ROWID",
    indexes: &["CREATE INDEX {t}_period ON {t} (tenant, currency, placed_at)"],
}];

/// The order's position and the line's index lead, so a listing by the first three
/// columns is one order.
const COLUMNS: &[&str] = &[
    "tenant",
    "position",
    "line",
    "customer_id",
    "order_id",
    "product_id",
    "name",
    "quantity",
    "currency",
    "revenue_minor",
    "placed_at",
];

/// The order lines projection.
#[derive(Debug, Default)]
pub struct OrderLinesProjection;

#[async_trait::async_trait]
impl Projection for OrderLinesProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError> {
        let mut rows: Vec<Vec<SqlValue>> = Vec::new();
        // An order id placed twice on one stream (only a restored history can hold that):
        // the first placement's lines stand, as the 360 keeps the first order.
        let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
        for event in events {
            let DomainEvent::OrderPlaced(order) = &event.event else {
                continue;
            };
            if order.lines.is_empty()
                || !seen.insert((
                    event.tenant.as_str(),
                    order.customer_id.as_str(),
                    order.order_id.as_str(),
                ))
            {
                continue;
            }
            for (index, line) in order.lines.iter().enumerate() {
                let revenue = line.total_minor();
                rows.push(vec![
                    event.tenant.as_str().into(),
                    from_position(event.position),
                    SqlValue::Int(i64::try_from(index).unwrap_or(i64::MAX)),
                    order.customer_id.as_str().into(),
                    order.order_id.as_str().into(),
                    line.product_id.as_str().into(),
                    line.name.as_str().into(),
                    SqlValue::Int(i64::try_from(line.quantity).unwrap_or(i64::MAX)),
                    order.amount.currency.code().into(),
                    // Saturated: a line over i64 minor units cannot add up to a valid amount
                    // (ingest refuses it); a restored history could still hold one.
                    SqlValue::Int(i64::try_from(revenue).unwrap_or(if revenue < 0 {
                        i64::MIN
                    } else {
                        i64::MAX
                    })),
                    SqlValue::Int(event.occurred_at.timestamp_micros()),
                ]);
            }
        }
        // An order already stored by an earlier batch keeps its lines (first placement wins
        // line by line; a second placement of one order id is refused at ingest).
        tx.insert_rows(tables.get(TABLE), COLUMNS, rows, "ON CONFLICT DO NOTHING")
            .await
    }
}
