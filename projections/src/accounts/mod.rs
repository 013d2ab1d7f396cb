//! The accounts read model: the history of contact links, one row per link (a person, an
//! account, a role, when it began and, once it did, when it ended), folded from
//! `ContactLinked` (a link to another account ends the current one: a move; to the same
//! account with another role, a role change) and `ContactUnlinked`.
//!
//! The current contacts of an account are the links not ended; its contacts at a past
//! moment ([`Cut`]) are the links begun by then and not ended by then, each bound compared
//! with the event's own business time, recording time or position, as the cut says. So the
//! live list and the list as of now are the same decision over the same rows.
//!
//! Links are kept by the ids the events name: a person merged into another keeps its links
//! (its stream accepts no more events); the links hold no personal data, so erasure leaves
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::envelope::{Position, TenantId};
use crm_core::money::Money;
use crm_core::money::currency::Currency;
use crm_core::store::EventStore;
use serde::Serialize;

use crate::asof::{Cut, customer_as_of};
use crate::bookkeeping::{from_position, to_position};
use crate::customer360::{self, CustomerView};
use crate::db::{Col, Query, ReadDb, ReadTx, Rows, SqlValue, in_clauses};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};

pub const TABLE: &str = "rm_account_links";
pub const NAME: &str = "accounts";

const TABLES: &[TableDef] = &[TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        customer_id TEXTKEY NOT NULL,
        linked_position BIGINT NOT NULL,
        account_id TEXTKEY NOT NULL,
        role TEXT NOT NULL,
        linked_at BIGINT NOT NULL,
        linked_recorded_at BIGINT NOT NULL,
        unlinked_position BIGINT,
        unlinked_at BIGINT,
        unlinked_recorded_at BIGINT,
        PRIMARY KEY (tenant, customer_id, linked_position)
    )",
    indexes: &[
        "CREATE INDEX {t}_account ON {t} (tenant, account_id, customer_id)",
        "CREATE INDEX {t}_open ON {t} (tenant, customer_id, unlinked_position)",
    ],
}];

const COLUMNS: &[&str] = &[
    "tenant",
    "customer_id",
    "linked_position",
    "account_id",
    "role",
    "linked_at",
    "linked_recorded_at",
    "unlinked_position",
    "unlinked_at",
    "unlinked_recorded_at",
];

/// One link of a person to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    account_id: String,
    role: String,
    linked_position: i64,
    linked_at: i64,
    linked_recorded_at: i64,
    /// Position, business time and recording time of the end.
    ended: Option<(i64, i64, i64)>,
}

/// The accounts projection.
#[derive(Debug, Default)]
pub struct AccountsProjection;

#[async_trait::async_trait]
impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i64 {
        1
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// One read of the open links of the persons the batch links or unlinks, the batch folded
    /// in memory, one write of every link begun or ended.
    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[Arc<ProjectedEvent>],
    ) -> Result<(), ProjectionError> {
        let table = tables.get(TABLE);
        let mut persons: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for event in events {
            if let DomainEvent::ContactLinked(e) = &event.event {
                persons
                    .entry(event.tenant.as_str())
                    .or_default()
                    .insert(e.customer_id.as_str());
            } else if let DomainEvent::ContactUnlinked(e) = &event.event {
                persons
                    .entry(event.tenant.as_str())
                    .or_default()
                    .insert(e.customer_id.as_str());
            }
        }
        if persons.is_empty() {
            return Ok(());
        }
        // (tenant, person) → the open link, as stored or as the batch left it.
        let mut open: BTreeMap<(String, String), Link> = BTreeMap::new();
        for (tenant, ids) in &persons {
            let ids: Vec<&str> = ids.iter().copied().collect();
            for (condition, values) in in_clauses(tx.backend(), "customer_id", &ids) {
                let sql = format!(
                    "SELECT customer_id, account_id, role, linked_position, linked_at, \
                     linked_recorded_at FROM {table} WHERE tenant = ? AND {condition} \
                     AND unlinked_position IS NULL"
                );
                let mut args = vec![SqlValue::text(*tenant)];
                args.extend(values);
                let cols = [
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Int,
                    Col::Int,
                    Col::Int,
                ];
                for row in tx.fetch(&sql, args, &cols).await? {
                    let mut row = row.into_iter();
                    let mut text = || row.next().and_then(SqlValue::into_text).unwrap_or_default();
                    let (person, account_id, role) = (text(), text(), text());
                    let mut ints = row.map(|v| v.as_int().unwrap_or_default());
                    let link = Link {
                        account_id,
                        role,
                        linked_position: ints.next().unwrap_or_default(),
                        linked_at: ints.next().unwrap_or_default(),
                        linked_recorded_at: ints.next().unwrap_or_default(),
                        ended: None,
                    };
                    open.insert(((*tenant).to_owned(), person), link);
                }
            }
        }
        // Links written by this batch: (tenant, person, begun at) → link.
        let mut written: BTreeMap<(String, String, i64), Link> = BTreeMap::new();
        for event in events {
            let (person, account, role) = match &event.event {
                DomainEvent::ContactLinked(e) => (&e.customer_id, &e.account_id, Some(&e.role)),
                DomainEvent::ContactUnlinked(e) => (&e.customer_id, &e.account_id, None),
                _ => continue,
            };
            let key = (event.tenant.as_str().to_owned(), person.as_str().to_owned());
            let position = from_position(event.position).as_int().unwrap_or_default();
            let end = (
                position,
                event.occurred_at.timestamp_micros(),
                event.recorded_at.timestamp_micros(),
            );
            let ends_current = match (&role, open.get(&key)) {
                // A link ends the current one (move or role change), unless it repeats it.
                (Some(role), Some(current)) => {
                    current.account_id != account.as_str() || current.role != **role
                }
                (Some(_), None) => false,
                // An unlink ends the current link to that account only.
                (None, Some(current)) => current.account_id == account.as_str(),
                (None, None) => false,
            };
            let repeats = role.is_some() && open.contains_key(&key) && !ends_current;
            if ends_current && let Some(mut current) = open.remove(&key) {
                current.ended = Some(end);
                written.insert(
                    (key.0.clone(), key.1.clone(), current.linked_position),
                    current,
                );
            }
            if let Some(role) = role
                && !repeats
            {
                let link = Link {
                    account_id: account.as_str().to_owned(),
                    role: role.clone(),
                    linked_position: position,
                    linked_at: end.1,
                    linked_recorded_at: end.2,
                    ended: None,
                };
                written.insert((key.0.clone(), key.1.clone(), position), link.clone());
                open.insert(key, link);
            }
        }
        let rows: Vec<Vec<SqlValue>> = written
            .into_iter()
            .map(|((tenant, person, begun), link)| {
                let (end_position, end_at, end_recorded) = match link.ended {
                    Some((p, a, r)) => (Some(p), Some(a), Some(r)),
                    None => (None, None, None),
                };
                vec![
                    tenant.into(),
                    person.into(),
                    SqlValue::Int(begun),
                    link.account_id.into(),
                    link.role.into(),
                    SqlValue::Int(link.linked_at),
                    SqlValue::Int(link.linked_recorded_at),
                    SqlValue::opt_int(end_position),
                    SqlValue::opt_int(end_at),
                    SqlValue::opt_int(end_recorded),
                ]
            })
            .collect();
        tx.insert_rows(
            table,
            COLUMNS,
            rows,
            "ON CONFLICT (tenant, customer_id, linked_position) DO UPDATE SET \
             unlinked_position = excluded.unlinked_position, \
             unlinked_at = excluded.unlinked_at, \
             unlinked_recorded_at = excluded.unlinked_recorded_at",
        )
        .await
    }
}

/// A contact of an account: the person, the role, when the link began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Contact {
    pub customer_id: String,
    pub role: String,
    /// Business time of the `ContactLinked` that began the link.
    pub linked_at: DateTime<Utc>,
    /// Its position in the log.
    #[schema(value_type = u64)]
    pub linked_position: Position,
}

/// The account a person is a contact of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountLink {
    pub account_id: String,
    pub role: String,
    pub linked_at: DateTime<Utc>,
}

/// The condition keeping the links in force at `cut` (`None`: now, the links not ended).
fn in_force(cut: Option<Cut>) -> (String, Vec<SqlValue>) {
    let (begun, ended, bound) = match cut {
        None => return ("unlinked_position IS NULL".to_owned(), vec![]),
        Some(Cut::OccurredBy(at)) => ("linked_at", "unlinked_at", at.timestamp_micros()),
        Some(Cut::RecordedBy(at)) => (
            "linked_recorded_at",
            "unlinked_recorded_at",
            at.timestamp_micros(),
        ),
        Some(Cut::Position(position)) => (
            "linked_position",
            "unlinked_position",
            from_position(position).as_int().unwrap_or_default(),
        ),
    };
    (
        format!("{begun} <= ? AND ({ended} IS NULL OR {ended} > ?)"),
        vec![SqlValue::Int(bound), SqlValue::Int(bound)],
    )
}

/// The contacts of `account` in force at `cut` (now when `None`), by customer id, after
/// `after`, at most `limit`.
pub async fn contacts(
    db: &ReadDb,
    tenant: &str,
    account: &str,
    cut: Option<Cut>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Contact>, ProjectionError> {
    let (condition, bounds) = in_force(cut);
    let mut sql = format!(
        "SELECT customer_id, role, linked_at, linked_position FROM {TABLE} \
         WHERE tenant = ? AND account_id = ? AND {condition}"
    );
    let mut args: Vec<SqlValue> = vec![tenant.into(), account.into()];
    args.extend(bounds);
    if let Some(after) = after {
        sql.push_str(" AND customer_id > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY customer_id, linked_position LIMIT ?");
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = db
        .fetch(&sql, args, &[Col::Text, Col::Text, Col::Int, Col::Int])
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| Contact {
            customer_id: row[0].as_text().unwrap_or_default().to_owned(),
            role: row[1].as_text().unwrap_or_default().to_owned(),
            linked_at: micros(row[2].as_int()),
            linked_position: to_position(row[3].as_int().unwrap_or_default()),
        })
        .collect())
}

/// The account `person` is a contact of at `cut` (now when `None`).
pub async fn account_of(
    db: &ReadDb,
    tenant: &str,
    person: &str,
    cut: Option<Cut>,
) -> Result<Option<AccountLink>, ProjectionError> {
    let query = account_of_query(tenant, person, cut);
    Ok(account_of_from(
        db.fetch(&query.sql, query.args, &query.cols).await?,
    ))
}

/// The statement of [`account_of`], to run alone or together with others
/// (`ReadDb::fetch_together`); [`account_of_from`] reads its rows.
pub fn account_of_query(tenant: &str, person: &str, cut: Option<Cut>) -> Query {
    let (condition, bounds) = in_force(cut);
    let sql = format!(
        "SELECT account_id, role, linked_at FROM {TABLE} WHERE tenant = ? AND customer_id = ? \
         AND {condition} ORDER BY linked_position DESC LIMIT 1"
    );
    let mut args: Vec<SqlValue> = vec![tenant.into(), person.into()];
    args.extend(bounds);
    Query::new(sql, args, &[Col::Text, Col::Text, Col::Int])
}

/// The link of an [`account_of_query`]'s rows.
pub fn account_of_from(rows: Rows) -> Option<AccountLink> {
    rows.into_iter().next().map(|row| AccountLink {
        account_id: row[0].as_text().unwrap_or_default().to_owned(),
        role: row[1].as_text().unwrap_or_default().to_owned(),
        linked_at: micros(row[2].as_int()),
    })
}

fn micros(value: Option<i64>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(value.unwrap_or_default()).unwrap_or_default()
}

/// Most contacts listed on an account's 360 view (all are summed); the full list is
/// `GET /v1/accounts/{id}/contacts`.
pub const CONTACTS_SHOWN: usize = 100;

/// A company's contacts and their figures, beside its own: the 360 view's `account` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountSummary {
    /// The contacts at the view's moment, by customer id (at most [`CONTACTS_SHOWN`]).
    pub contacts: Vec<Contact>,
    /// How many contacts there are (all of them summed below).
    pub contact_count: u64,
    /// The contacts' figures summed.
    pub contacts_figures: AccountFigures,
    /// The account's own figures plus its contacts'.
    pub combined: AccountFigures,
}

/// Figures of a group of customers, money per currency (never summed across currencies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountFigures {
    pub interactions: u64,
    pub inbound: u64,
    pub outbound: u64,
    pub orders: u64,
    /// Per currency, by currency code: count, gross, refunded, net.
    pub orders_by_currency: Vec<CurrencyOrders>,
    pub open_opportunities: u64,
    pub won_opportunities: u64,
    pub open_opportunity_totals: Vec<Money>,
    pub won_opportunity_totals: Vec<Money>,
    pub open_cases: u64,
}

/// Orders of a group in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CurrencyOrders {
    pub currency: Currency,
    pub count: u64,
    pub gross: Money,
    pub refunded: Money,
    pub net: Money,
}

impl AccountFigures {
    /// Adds one customer's view; a money total beyond `i64` minor units is an error naming it.
    pub fn add(&mut self, view: &CustomerView) -> Result<(), ProjectionError> {
        self.interactions += view.interactions.total;
        self.inbound += view.interactions.inbound;
        self.outbound += view.interactions.outbound;
        self.orders += view.orders.count;
        for figures in &view.orders.by_currency {
            let at = match self
                .orders_by_currency
                .binary_search_by(|c| c.currency.code().cmp(figures.currency.code()))
            {
                Ok(at) => at,
                Err(at) => {
                    let zero = Money::zero(figures.currency);
                    self.orders_by_currency.insert(
                        at,
                        CurrencyOrders {
                            currency: figures.currency,
                            count: 0,
                            gross: zero,
                            refunded: zero,
                            net: zero,
                        },
                    );
                    at
                }
            };
            let line = &mut self.orders_by_currency[at];
            line.count += figures.count;
            line.gross = sum("account order gross", line.gross, figures.gross)?;
            line.refunded = sum("account order refunds", line.refunded, figures.refunded)?;
            line.net = sum("account order net", line.net, figures.net)?;
        }
        self.open_opportunities += view.open_opportunities.len() as u64;
        self.won_opportunities += view.won_opportunities.len() as u64;
        for amount in &view.open_opportunity_totals {
            add_money(
                &mut self.open_opportunity_totals,
                *amount,
                "account open deals",
            )?;
        }
        for amount in &view.won_opportunity_totals {
            add_money(
                &mut self.won_opportunity_totals,
                *amount,
                "account won deals",
            )?;
        }
        self.open_cases += view.open_cases.len() as u64;
        Ok(())
    }

    /// The sum of two groups.
    fn plus(&self, other: &AccountFigures) -> Result<AccountFigures, ProjectionError> {
        let mut out = self.clone();
        out.interactions += other.interactions;
        out.inbound += other.inbound;
        out.outbound += other.outbound;
        out.orders += other.orders;
        for line in &other.orders_by_currency {
            match out
                .orders_by_currency
                .binary_search_by(|c| c.currency.code().cmp(line.currency.code()))
            {
                Ok(at) => {
                    let mine = &mut out.orders_by_currency[at];
                    mine.count += line.count;
                    mine.gross = sum("account order gross", mine.gross, line.gross)?;
                    mine.refunded = sum("account order refunds", mine.refunded, line.refunded)?;
                    mine.net = sum("account order net", mine.net, line.net)?;
                }
                Err(at) => out.orders_by_currency.insert(at, line.clone()),
            }
        }
        out.open_opportunities += other.open_opportunities;
        out.won_opportunities += other.won_opportunities;
        for amount in &other.open_opportunity_totals {
            add_money(
                &mut out.open_opportunity_totals,
                *amount,
                "account open deals",
            )?;
        }
        for amount in &other.won_opportunity_totals {
            add_money(
                &mut out.won_opportunity_totals,
                *amount,
                "account won deals",
            )?;
        }
        out.open_cases += other.open_cases;
        Ok(out)
    }
}

fn sum(what: &str, a: Money, b: Money) -> Result<Money, ProjectionError> {
    a.checked_add(b)
        .map_err(|_| ProjectionError::TotalOverflow {
            what: what.to_owned(),
        })
}

/// Adds `amount` to the per-currency totals (kept by currency code).
fn add_money(totals: &mut Vec<Money>, amount: Money, what: &str) -> Result<(), ProjectionError> {
    match totals.binary_search_by(|m| m.currency.code().cmp(amount.currency.code())) {
        Ok(at) => totals[at] = sum(what, totals[at], amount)?,
        Err(at) => totals.insert(at, amount),
    }
    Ok(())
}

/// The `account` member of `view` (a company's 360 view) at `cut` (`None`: live, from the
/// 360 read model's rows; a cut: each contact folded as of the same cut by
/// [`customer_as_of`], the contacts being the links in force at the cut), figures evaluated
/// at `at`.
pub async fn summary(
    store: &dyn EventStore,
    db: &ReadDb,
    tenant: &TenantId,
    view: &CustomerView,
    cut: Option<Cut>,
    at: DateTime<Utc>,
) -> Result<AccountSummary, ProjectionError> {
    let all = contacts(
        db,
        tenant.as_str(),
        &view.customer_id,
        cut,
        None,
        usize::MAX >> 2,
    )
    .await?;
    let mut figures = AccountFigures::default();
    for contact in &all {
        let state = match cut {
            None => customer360::get(db, tenant.as_str(), &contact.customer_id).await?,
            Some(cut) => customer_as_of(store, db, tenant, &contact.customer_id, cut)
                .await?
                .map(|found| found.state),
        };
        if let Some(state) = state {
            figures.add(&state.view(at, Vec::new()))?;
        }
    }
    let mut own = AccountFigures::default();
    own.add(view)?;
    Ok(AccountSummary {
        contact_count: all.len() as u64,
        combined: own.plus(&figures)?,
        contacts_figures: figures,
        contacts: all.into_iter().take(CONTACTS_SHOWN).collect(),
    })
}
