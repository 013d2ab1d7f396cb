//! The customer 360 read model: one row per customer with its profile, consent,
//! interactions, orders, deals, cases, merges and recent timeline, folded by [`fold`] and
//! served through [`view`].

pub mod fold;
pub mod live;
pub mod summary;
pub mod view;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crm_core::catalog::DomainEvent;
use crm_core::envelope::Position;

use crate::attribution::{direct_customer_ref, keys_needed, named_customers};
use crate::bookkeeping;
use crate::db::{Col, Query, ReadDb, ReadTx, Rows, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, Key, LINKS_TABLE, Links, decode_doc, load_docs, upsert_docs};

pub use fold::{Customer360, World, fold_customer};
pub use view::CustomerView;

pub const TABLE: &str = "rm_customer_360";
/// The projection's name (its checkpoint's key).
pub const NAME: &str = "customer_360";
pub const LINKS: &str = "rm_customer_360_links";

const TABLES: &[TableDef] = &[
    TableDef {
        name: TABLE,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            id TEXTKEY NOT NULL,
            status TEXT NOT NULL,
            name_key TEXT,
            email_key TEXT,
            phone_key TEXT,
            segment TEXT,
            owner TEXT,
            interactions BIGINT NOT NULL,
            orders BIGINT NOT NULL,
            last_contact_at BIGINT,
            last_order_at BIGINT,
            last_position BIGINT NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
        )",
        indexes: &[
            "CREATE INDEX {t}_segment ON {t} (tenant, segment, id)",
            "CREATE INDEX {t}_owner ON {t} (tenant, owner, id)",
        ],
    },
    TableDef {
        name: LINKS,
        create: LINKS_TABLE,
        indexes: &[],
    },
    summary::DEF,
];

impl DocRow for Customer360 {
    const COLUMNS: &'static [&'static str] = &[
        "status",
        "name_key",
        "email_key",
        "phone_key",
        "segment",
        "owner",
        "interactions",
        "orders",
        "last_contact_at",
        "last_order_at",
        "last_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        let status = if self.merged_into.is_some() {
            "merged"
        } else if self.erased_at.is_some() {
            "erased"
        } else {
            "active"
        };
        let last_order = self.orders.values().map(|o| o.placed_at).max();
        vec![
            status.into(),
            SqlValue::opt_text(self.name.as_ref().map(|n| n.to_lowercase())),
            SqlValue::opt_text(self.email.as_ref().map(|e| e.to_lowercase())),
            SqlValue::opt_text(self.phone.as_deref().and_then(phone_key)),
            SqlValue::opt_text(self.segment.clone()),
            SqlValue::opt_text(self.owner.clone()),
            SqlValue::Int(i64::try_from(self.interactions.total).unwrap_or(i64::MAX)),
            SqlValue::Int(i64::try_from(self.orders.len()).unwrap_or(i64::MAX)),
            SqlValue::opt_int(self.interactions.last_at.map(|t| t.timestamp_micros())),
            SqlValue::opt_int(last_order.map(|t| t.timestamp_micros())),
            SqlValue::Int(i64::try_from(self.last_position).unwrap_or(i64::MAX)),
        ]
    }
}

/// The customer 360 projection.
#[derive(Debug, Default)]
pub struct Customer360Projection;

#[async_trait::async_trait]
impl Projection for Customer360Projection {
    fn name(&self) -> &'static str {
        NAME
    }

    /// [`SUMMARY_VERSION`]: the stored purchase summaries (before it, [`PHONE_KEY_VERSION`]:
    /// the `phone_key` column).
    fn version(&self) -> i64 {
        SUMMARY_VERSION
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
        let links = Links::load(tx, tables.get(LINKS), keys_needed(events)).await?;
        let mut wanted = BTreeSet::new();
        // Customers already followed in this batch (most events repeat one).
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for event in events {
            let tenant = event.tenant.as_str();
            let touched = named_customers(&event.event).chain(direct_customer_ref(&links, event));
            for customer in touched {
                if !seen.insert((tenant, customer)) {
                    continue;
                }
                for id in links.chain(tenant, customer) {
                    wanted.insert((tenant.to_owned(), id));
                }
            }
        }
        let mut customers = load_docs::<Customer360>(tx, tables.get(TABLE), &wanted).await?;
        // An erasure also clears the rows of the customers merged into the erased one.
        let mut merged: BTreeSet<(String, String)> = BTreeSet::new();
        for event in events {
            if let DomainEvent::CustomerErased(erased) = &event.event {
                let key = (
                    event.tenant.as_str().to_owned(),
                    erased.customer_id.as_str().to_owned(),
                );
                if let Some(customer) = customers.get(&key) {
                    merged.extend(
                        customer
                            .merged_ids
                            .iter()
                            .map(|id| (key.0.clone(), id.clone()))
                            .filter(|k| !customers.contains_key(k)),
                    );
                }
            }
        }
        if !merged.is_empty() {
            customers.extend(load_docs::<Customer360>(tx, tables.get(TABLE), &merged).await?);
        }
        // Where each loaded customer's purchases stood: its stored summary rows change only
        // when that moves (or when it is merged away).
        let purchases_before: HashMap<Key, Position> = customers
            .iter()
            .map(|(key, customer)| (key.clone(), customer.purchases_position))
            .collect();
        let mut world = World::new(customers, links);
        for event in events {
            world.apply(event);
        }
        let changed = world
            .dirty
            .iter()
            .filter_map(|key| world.customers.get_key_value(key));
        upsert_docs(tx, tables.get(TABLE), changed.clone()).await?;
        let purchases_changed = changed.filter(|(key, customer)| {
            customer.merged_into.is_some()
                || purchases_before.get(*key) != Some(&customer.purchases_position)
        });
        summary::write(tx, tables.get(summary::TABLE), purchases_changed).await?;
        world.links.flush(tx, tables.get(LINKS)).await
    }
}

/// One customer's folded state from the live read model.
pub async fn get(
    db: &ReadDb,
    tenant: &str,
    customer: &str,
) -> Result<Option<Customer360>, ProjectionError> {
    let query = get_query(tenant, customer);
    state_from(
        tenant,
        customer,
        db.fetch(&query.sql, query.args, &query.cols).await?,
    )
}

/// The statement of [`get`], to run alone or together with others
/// (`ReadDb::fetch_together`); [`state_from`] reads its rows.
pub fn get_query(tenant: &str, customer: &str) -> Query {
    Query::new(
        format!("SELECT doc FROM {TABLE} WHERE tenant = ? AND id = ?"),
        vec![tenant.into(), customer.into()],
        &[Col::Text],
    )
}

/// The state in a [`get_query`]'s rows.
pub fn state_from(
    tenant: &str,
    customer: &str,
    rows: Rows,
) -> Result<Option<Customer360>, ProjectionError> {
    rows.into_iter()
        .next()
        .and_then(|mut row| row.remove(0).into_text())
        .map(|doc| decode_doc(TABLE, tenant, customer, &doc))
        .transpose()
}

/// Timeline entries the 360 view shows.
pub const RECENT_ENTRIES: usize = 20;

/// The 360 view of one customer from the live read models, evaluated at `at`, with the last
/// [`RECENT_ENTRIES`] entries of its timeline.
pub async fn view(
    db: &ReadDb,
    tenant: &str,
    customer: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<CustomerView>, ProjectionError> {
    Ok(view_and_state(db, tenant, customer, at)
        .await?
        .map(|(view, _)| view))
}

/// [`view`], with the stored state it was made from (for callers that also need the state:
/// one read of the row, not two).
pub async fn view_and_state(
    db: &ReadDb,
    tenant: &str,
    customer: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(CustomerView, Customer360)>, ProjectionError> {
    let mut answers = db
        .fetch_together(vec![
            get_query(tenant, customer),
            recent_query(tenant, customer),
        ])
        .await?
        .into_iter();
    let (Some(state), Some(recent)) = (answers.next(), answers.next()) else {
        return Err(ProjectionError::Decode(
            "two queries gave fewer answers".into(),
        ));
    };
    view_from(tenant, customer, at, state, recent)
}

/// The view (evaluated at `at`) and its state from the answers of [`get_query`] and
/// [`recent_query`]; `None` when the customer has no row.
pub(crate) fn view_from(
    tenant: &str,
    customer: &str,
    at: chrono::DateTime<chrono::Utc>,
    state: Rows,
    recent: Rows,
) -> Result<Option<(CustomerView, Customer360)>, ProjectionError> {
    let Some(state) = state_from(tenant, customer, state)? else {
        return Ok(None);
    };
    if let Some(what) = state.overflowing_total() {
        return Err(ProjectionError::TotalOverflow { what });
    }
    Ok(Some((
        state.view(at, crate::timeline::entries_from(recent)),
        state,
    )))
}

/// The newest [`RECENT_ENTRIES`] of the customer's timeline.
pub(crate) fn recent_query(tenant: &str, customer: &str) -> Query {
    crate::timeline::page_query(
        tenant,
        customer,
        crate::timeline::TimelinePage {
            cursor: None,
            limit: RECENT_ENTRIES,
            newest_first: true,
        },
    )
}

/// What to list customers by.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Case-insensitive substring of the name, email or id; also a phone number's digits
    /// when it reads as one ([`phone_search`]).
    pub search: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    /// `active`, `merged` or `erased`.
    pub status: Option<String>,
    /// Keyset pagination: ids after this one.
    pub after: Option<String>,
    pub limit: usize,
}

/// One line of a customer listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CustomerLine {
    pub customer_id: String,
    pub status: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    pub interactions: i64,
    pub orders: i64,
    pub last_contact_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_order_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Customers of `tenant` matching `filter`, by id.
pub async fn list(
    db: &ReadDb,
    tenant: &str,
    filter: &CustomerFilter,
) -> Result<Vec<CustomerLine>, ProjectionError> {
    let mut sql = format!(
        "SELECT id, status, segment, owner, interactions, orders, last_contact_at, last_order_at, doc \
         FROM {TABLE} WHERE tenant = ?"
    );
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    if let Some(search) = &filter.search {
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        sql.push_str(
            " AND (name_key LIKE ? ESCAPE '\\' OR email_key LIKE ? ESCAPE '\\' OR LOWER(id) LIKE ? ESCAPE '\\'",
        );
        args.extend([
            pattern.clone().into(),
            pattern.clone().into(),
            pattern.into(),
        ]);
        // Tables of an older version (answering while their rebuild runs) have no phone_key:
        // a phone search matches names, emails and ids only until the rebuild is live.
        let phone = match phone_search(search) {
            Some(digits) => {
                let version = bookkeeping::live_version(db, "customer_360").await?;
                version
                    .is_some_and(|v| v >= PHONE_KEY_VERSION)
                    .then_some(digits)
            }
            None => None,
        };
        if let Some(digits) = phone {
            // Digits only: nothing to escape.
            sql.push_str(" OR phone_key LIKE ?");
            args.push(format!("%{digits}%").into());
        }
        sql.push(')');
    }
    for (column, value) in [
        ("segment", &filter.segment),
        ("owner", &filter.owner),
        ("status", &filter.status),
    ] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(value.as_str().into());
        }
    }
    if let Some(after) = &filter.after {
        sql.push_str(" AND id > ?");
        args.push(after.as_str().into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(SqlValue::Int(
        i64::try_from(filter.limit).unwrap_or(i64::MAX),
    ));
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
                Col::Text,
            ],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default().to_owned();
            let doc: Customer360 =
                decode_doc(TABLE, tenant, &id, row[8].as_text().unwrap_or_default())?;
            Ok(CustomerLine {
                customer_id: id,
                status: row[1].as_text().unwrap_or_default().to_owned(),
                name: doc.name,
                email: doc.email,
                segment: row[2].as_text().map(str::to_owned),
                owner: row[3].as_text().map(str::to_owned),
                interactions: row[4].as_int().unwrap_or(0),
                orders: row[5].as_int().unwrap_or(0),
                last_contact_at: row[6]
                    .as_int()
                    .and_then(chrono::DateTime::from_timestamp_micros),
                last_order_at: row[7]
                    .as_int()
                    .and_then(chrono::DateTime::from_timestamp_micros),
            })
        })
        .collect()
}

/// The version whose tables hold `phone_key`.
pub const PHONE_KEY_VERSION: i64 = 2;

/// The version whose tables include the stored purchase summaries ([`summary`]).
pub const SUMMARY_VERSION: i64 = 3;

/// Fewest digits a search must carry to match phone numbers (fewer would match most of them).
pub const PHONE_SEARCH_MIN_DIGITS: usize = 5;

/// What a phone number is searched by: its ASCII digits only (`+44 (20) 7946-0958` →
/// `442079460958`); `None` without any digit.
pub fn phone_key(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// The digits a search matches phone numbers by: the search with spaces, dashes, dots,
/// parentheses and one leading `+` taken out, when what is left is only digits, at least
/// [`PHONE_SEARCH_MIN_DIGITS`] of them; `None` otherwise (the search is not a phone number).
/// A customer matches when its phone's digits ([`phone_key`]) contain them.
pub fn phone_search(search: &str) -> Option<String> {
    let trimmed = search.trim();
    let trimmed = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let kept: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    (kept.len() >= PHONE_SEARCH_MIN_DIGITS && kept.chars().all(|c| c.is_ascii_digit()))
        .then_some(kept)
}

/// `text` with LIKE's wildcards escaped by `\`.
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_keys_keep_the_digits_only() {
        assert_eq!(
            phone_key("+44 (20) 7946-0958").as_deref(),
            Some("442079460958")
        );
        assert_eq!(phone_key("555.0199").as_deref(), Some("5550199"));
        assert_eq!(phone_key("n/a"), None);
    }

    #[test]
    fn a_search_reads_as_a_phone_number_with_five_digits_or_more() {
        assert_eq!(phone_search("7946 0958").as_deref(), Some("79460958"));
        assert_eq!(phone_search("+44-20.79").as_deref(), Some("442079"));
        assert_eq!(phone_search(" (020) 7946 ").as_deref(), Some("0207946"));
        assert_eq!(phone_search("12345").as_deref(), Some("12345"));
        assert_eq!(phone_search("1234"), None, "too few digits");
        assert_eq!(phone_search("+1 234"), None, "too few digits");
        assert_eq!(phone_search("c-12345"), None, "an id, not a number");
        assert_eq!(phone_search("12345x"), None);
        assert_eq!(phone_search("++12345"), None, "one leading + only");
        assert_eq!(phone_search("１２３４５"), None, "ASCII digits only");
    }
}
