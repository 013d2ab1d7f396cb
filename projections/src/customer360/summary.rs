//! Stored purchase summaries: one row per (tenant, currency, customer) with the customer's
//! first and last purchase day, repeat purchase days and their mean value, written by the 360
//! projection in the same transaction as the customer's document, so analytics can score a
//! million customers without folding the log or parsing documents.
//!
//! **Invariant (stored = folded):** a row holds what `Customer360::rfm` gives from the live
//! document. For an evaluation time E at or after the row's `changed_at` (the latest business
//! time of an order, refund or merge that changed the customer's purchases), the row evaluated
//! at E equals the fold of the log cut at E (`Cut::OccurredBy(E)`), because no event that
//! could change it falls outside the cut. Merged customers have no row (their purchases are
//! their survivor's); the survivor's `changed_at` is at least the merge's time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use crm_core::envelope::Position;
use crm_core::money::currency::Currency;

use super::Customer360;
use crate::bookkeeping;
use crate::db::{Col, ReadDb, ReadTx, SqlValue, in_clauses};
use crate::error::ProjectionError;
use crate::projection::TableDef;
use crate::rows::Key;

/// The read-model name of the stored summaries.
pub const TABLE: &str = "rm_customer_summary";

pub(super) const DEF: TableDef = TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        currency TEXTKEY NOT NULL,
        id TEXTKEY NOT NULL,
        first_day BIGINT NOT NULL,
        last_day BIGINT NOT NULL,
        frequency BIGINT NOT NULL,
        monetary_minor BIGINT NOT NULL,
        changed_at BIGINT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (tenant, currency, id)
    )",
    indexes: &[
        "CREATE INDEX {t}_customer ON {t} (tenant, id)",
        "CREATE INDEX {t}_changed ON {t} (tenant, currency, changed_at)",
        "CREATE INDEX {t}_position ON {t} (tenant, currency, position)",
    ],
};

/// Days are stored as days since 0001-01-01 (`NaiveDate::num_days_from_ce`).
fn day_number(day: NaiveDate) -> i64 {
    i64::from(chrono::Datelike::num_days_from_ce(&day))
}

fn day_from(number: i64) -> Option<NaiveDate> {
    i32::try_from(number)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
}

/// What [`page`] and [`of_customers`] read, decoded by `decode`.
const SELECT: &str = "SELECT id, first_day, last_day, frequency, monetary_minor, changed_at, \
                      position FROM rm_customer_summary";
const COLUMNS: [Col; 7] = [
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
];

/// The `frequency` of a row whose orders in the currency give no purchase day.
const NO_PURCHASE_DAY: i64 = -1;

/// A read snapshot of the live 360 generation and the log position it has reached, if that
/// generation holds stored summaries (a rebuild from an older version may still be running).
pub async fn snapshot(db: &ReadDb) -> Result<Option<(ReadTx, Position)>, ProjectionError> {
    let mut tx = db.begin_read().await?;
    let Some(live) = bookkeeping::live_state(&mut tx, super::NAME).await? else {
        return Ok(None);
    };
    let checkpoint = bookkeeping::checkpoints(&mut tx, super::NAME)
        .await?
        .into_iter()
        .find(|c| c.generation == live.live_generation);
    match checkpoint {
        Some(c) if c.version >= super::SUMMARY_VERSION => Ok(Some((tx, c.position))),
        _ => Ok(None),
    }
}

/// One stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSummary {
    pub customer_id: String,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Repeat purchase days.
    pub frequency: i64,
    /// Mean value of the repeat purchase days, in minor units (rounded half away from zero).
    pub monetary_minor: i64,
    /// Business time of the latest change to these purchases.
    pub changed_at: DateTime<Utc>,
    /// Log position of that change.
    pub position: Position,
}

impl StoredSummary {
    /// Recency and T in days at `at` (T from `at`'s UTC date, as `Customer360::rfm`).
    pub fn recency_and_t(&self, at: DateTime<Utc>) -> (i64, i64) {
        (
            (self.last_day - self.first_day).num_days(),
            (at.date_naive() - self.first_day).num_days(),
        )
    }
}

/// Writes the summaries of `customers` (the ones a batch changed the purchases of): each
/// currency's row inserted or updated in place (a customer's currencies only grow: orders
/// are never removed), and the rows of customers merged into another deleted.
pub(super) async fn write<'a>(
    tx: &mut ReadTx,
    table: &str,
    customers: impl Iterator<Item = (&'a Key, &'a Customer360)>,
) -> Result<(), ProjectionError> {
    let mut merged: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut rows = Vec::new();
    for ((tenant, id), customer) in customers {
        // Orders are never removed from a document, so a customer without any has no row.
        if customer.orders.is_empty() {
            continue;
        }
        if customer.merged_into.is_some() {
            merged.entry(tenant).or_default().push(id);
            continue;
        }
        let changed_at = customer
            .purchases_changed_at
            .map_or(0, |at| at.timestamp_micros());
        let position = i64::try_from(customer.purchases_position).unwrap_or(i64::MAX);
        let days = customer.rfm_days();
        let currencies: BTreeSet<Currency> = customer
            .orders
            .values()
            .map(|o| o.amount.currency)
            .collect();
        for currency in currencies {
            // A currency with orders but no purchase day (all refunded in full) keeps a row,
            // frequency -1, so its changes still mark the customer as changed.
            let (first, last, frequency, monetary) =
                match days.iter().find(|d| d.currency == currency) {
                    Some(d) => (
                        day_number(d.first_day),
                        day_number(d.last_day),
                        d.frequency,
                        d.monetary_minor,
                    ),
                    None => (0, 0, NO_PURCHASE_DAY, 0),
                };
            rows.push(vec![
                SqlValue::text(tenant.as_str()),
                SqlValue::text(currency.code()),
                SqlValue::text(id.as_str()),
                SqlValue::Int(first),
                SqlValue::Int(last),
                SqlValue::Int(frequency),
                SqlValue::Int(monetary),
                SqlValue::Int(changed_at),
                SqlValue::Int(position),
            ]);
        }
    }
    let backend = tx.backend();
    for (tenant, ids) in merged {
        for (condition, mut args) in in_clauses(backend, "id", &ids) {
            args.insert(0, tenant.into());
            tx.execute(
                &format!("DELETE FROM {table} WHERE tenant = ? AND {condition}"),
                args,
            )
            .await?;
        }
    }
    tx.insert_rows(
        table,
        &[
            "tenant",
            "currency",
            "id",
            "first_day",
            "last_day",
            "frequency",
            "monetary_minor",
            "changed_at",
            "position",
        ],
        rows,
        "ON CONFLICT (tenant, currency, id) DO UPDATE SET first_day = excluded.first_day, \
         last_day = excluded.last_day, frequency = excluded.frequency, \
         monetary_minor = excluded.monetary_minor, changed_at = excluded.changed_at, \
         position = excluded.position",
    )
    .await
}

/// Up to `limit` rows of `tenant` in `currency` after customer id `after`, by id.
pub async fn page(
    tx: &mut ReadTx,
    tenant: &str,
    currency: Currency,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredSummary>, ProjectionError> {
    let mut sql = format!("{SELECT} WHERE tenant = ? AND currency = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into(), currency.code().into()];
    if let Some(after) = after {
        sql.push_str(" AND id > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = tx.fetch(&sql, args, &COLUMNS).await?;
    rows.into_iter().map(|row| decode(tenant, &row)).collect()
}

impl StoredSummary {
    /// Whether the customer has a purchase day in the currency (rows without one only mark
    /// changes).
    pub fn bought(&self) -> bool {
        self.frequency >= 0
    }
}

/// The rows of the given customers of `tenant` in `currency`.
pub async fn of_customers(
    tx: &mut ReadTx,
    tenant: &str,
    currency: Currency,
    ids: &BTreeSet<String>,
) -> Result<Vec<StoredSummary>, ProjectionError> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for (condition, mut args) in in_clauses(tx.backend(), "id", &ids) {
        args.insert(0, tenant.into());
        args.insert(1, currency.code().into());
        let rows = tx
            .fetch(
                &format!("{SELECT} WHERE tenant = ? AND currency = ? AND {condition}"),
                args,
                &COLUMNS,
            )
            .await?;
        for row in rows {
            out.push(decode(tenant, &row)?);
        }
    }
    Ok(out)
}

/// How many of `tenant`'s customers in `currency` had their purchases changed by an event
/// after `position`.
pub async fn changed_since(
    tx: &mut ReadTx,
    tenant: &str,
    currency: Currency,
    position: Position,
) -> Result<u64, ProjectionError> {
    let rows = tx
        .fetch(
            &format!(
                "SELECT COUNT(*) FROM {TABLE} WHERE tenant = ? AND currency = ? AND position > ?"
            ),
            vec![
                tenant.into(),
                currency.code().into(),
                SqlValue::Int(i64::try_from(position).unwrap_or(i64::MAX)),
            ],
            &[Col::Int],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_int())
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn decode(tenant: &str, row: &[SqlValue]) -> Result<StoredSummary, ProjectionError> {
    let id = row[0].as_text().unwrap_or_default().to_owned();
    let corrupt = |reason: &str| ProjectionError::Corrupt {
        table: TABLE.to_owned(),
        key: format!("{tenant}/{id}"),
        reason: reason.to_owned(),
    };
    let int = |i: usize| row[i].as_int().ok_or_else(|| corrupt("a NULL figure"));
    let frequency = int(3)?;
    let day = |i: usize| -> Result<NaiveDate, ProjectionError> {
        if frequency < 0 {
            return Ok(NaiveDate::MIN);
        }
        day_from(int(i)?).ok_or_else(|| corrupt("a day out of range"))
    };
    Ok(StoredSummary {
        first_day: day(1)?,
        last_day: day(2)?,
        frequency,
        monetary_minor: int(4)?,
        changed_at: DateTime::from_timestamp_micros(int(5)?)
            .ok_or_else(|| corrupt("changed_at out of range"))?,
        position: u64::try_from(int(6)?).map_err(|_| corrupt("a negative position"))?,
        customer_id: id,
    })
}
