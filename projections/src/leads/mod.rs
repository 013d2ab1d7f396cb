//! The lead read model: one row per lead (status, source, campaign, owner, when captured,
//! qualified, disqualified and converted, the customer it converted to) and the queries over
//! it: the lead list (`GET /v1/leads`) and the lead funnel ([`funnel`]).
//!
//! Erasure: an erased lead (`LeadErased`) loses its row, and so does a converted lead whose
//! customer is erased (with the customers merged into it): an erased lead is in no answer.
//! The only personal field kept, the disqualification reason, goes with the row.

pub mod fold;
pub mod funnel;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use serde::Serialize;

use crate::bookkeeping::from_position;
use crate::db::{Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, Key, decode_doc, ids_of_customers, load_docs, merged_into, upsert_docs};

pub use fold::{Lead, LeadStatus};
pub use funnel::{FunnelCounts, LeadFunnel, ReasonCount, funnel};

pub const TABLE: &str = "rm_leads";

const TABLES: &[TableDef] = &[TableDef {
    name: TABLE,
    create: "CREATE TABLE {t} (
        tenant TEXTKEY NOT NULL,
        id TEXTKEY NOT NULL,
        status TEXT NOT NULL,
        source TEXT,
        campaign_id TEXTKEY,
        owner TEXTKEY,
        customer_id TEXTKEY,
        captured_at BIGINT,
        last_position BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    )",
    indexes: &[
        "CREATE INDEX {t}_customer ON {t} (tenant, customer_id)",
        "CREATE INDEX {t}_captured ON {t} (tenant, captured_at)",
        "CREATE INDEX {t}_campaign ON {t} (tenant, campaign_id)",
    ],
}];

impl DocRow for Lead {
    const COLUMNS: &'static [&'static str] = &[
        "status",
        "source",
        "campaign_id",
        "owner",
        "customer_id",
        "captured_at",
        "last_position",
    ];

    fn column_values(&self) -> Vec<SqlValue> {
        vec![
            self.status.as_str().into(),
            SqlValue::opt_text(self.source.as_deref()),
            SqlValue::opt_text(self.campaign_id.as_ref().map(|c| c.as_str())),
            SqlValue::opt_text(self.owner.as_ref().map(|o| o.as_str())),
            SqlValue::opt_text(self.customer_id.as_ref().map(|c| c.as_str())),
            SqlValue::opt_int(self.captured_at.map(|t| t.timestamp_micros())),
            from_position(self.last_position),
        ]
    }
}

/// The lead projection.
#[derive(Debug, Default)]
pub struct LeadsProjection;

#[async_trait::async_trait]
impl Projection for LeadsProjection {
    fn name(&self) -> &'static str {
        "leads"
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
        apply_leads(tx, tables.get(TABLE), events).await
    }
}

/// Folds a batch: loads the leads it touches (and those converted to customers erased in
/// it), applies every event in order, writes back what changed and deletes what was erased.
async fn apply_leads(
    tx: &mut ReadTx,
    table: &str,
    events: &[Arc<ProjectedEvent>],
) -> Result<(), ProjectionError> {
    let mut keys: BTreeSet<Key> = BTreeSet::new();
    let mut erased: BTreeSet<Key> = BTreeSet::new();
    for event in events {
        let tenant = event.tenant.as_str();
        match &event.event {
            DomainEvent::CustomerErased(e) => {
                erased.insert((tenant.to_owned(), e.customer_id.as_str().to_owned()));
            }
            e if e.category() == "lead" => {
                keys.insert((tenant.to_owned(), e.entity_id().as_str().to_owned()));
            }
            _ => {}
        }
    }
    if keys.is_empty() && erased.is_empty() {
        return Ok(());
    }
    // Customers merged into an erased one are erased with it, and their leads too.
    let mut with_merged: HashMap<Key, BTreeSet<String>> = HashMap::new();
    for key in &erased {
        let merged = merged_into(tx, &key.0, &key.1).await?;
        with_merged.insert(key.clone(), merged);
    }
    let everyone: BTreeSet<Key> = with_merged
        .iter()
        .flat_map(|((tenant, _), ids)| ids.iter().map(|id| (tenant.clone(), id.clone())))
        .collect();
    keys.extend(ids_of_customers(tx, table, &everyone).await?);
    let mut docs: HashMap<Key, Lead> = load_docs(tx, table, &keys).await?;
    let mut dirty = BTreeSet::new();
    let mut gone = BTreeSet::new();
    for event in events {
        let tenant = event.tenant.as_str();
        match &event.event {
            DomainEvent::CustomerErased(e) => {
                let key = (tenant.to_owned(), e.customer_id.as_str().to_owned());
                let Some(ids) = with_merged.get(&key) else {
                    continue;
                };
                let leads: Vec<Key> = docs
                    .iter()
                    .filter(|(key, doc)| {
                        key.0 == tenant
                            && doc
                                .customer_id
                                .as_ref()
                                .is_some_and(|c| ids.contains(c.as_str()))
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in leads {
                    docs.remove(&key);
                    dirty.remove(&key);
                    gone.insert(key);
                }
            }
            DomainEvent::LeadErased(e) => {
                let key = (tenant.to_owned(), e.lead_id.as_str().to_owned());
                docs.remove(&key);
                dirty.remove(&key);
                gone.insert(key);
            }
            e if e.category() == "lead" => {
                let key = (tenant.to_owned(), e.entity_id().as_str().to_owned());
                gone.remove(&key);
                fold::apply(docs.entry(key.clone()).or_default(), event);
                dirty.insert(key);
            }
            _ => {}
        }
    }
    for (tenant, id) in &gone {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant = ? AND id = ?"),
            vec![tenant.as_str().into(), id.as_str().into()],
        )
        .await?;
    }
    upsert_docs(
        tx,
        table,
        dirty.iter().filter_map(|k| docs.get_key_value(k)),
    )
    .await
}

/// What to list leads by; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub status: Option<LeadStatus>,
    pub source: Option<String>,
    pub campaign_id: Option<String>,
    pub owner: Option<String>,
    /// Keyset pagination: lead ids after this one.
    pub after: Option<String>,
    pub limit: usize,
}

/// One lead of the list with its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeadLine {
    #[serde(flatten)]
    pub lead: Lead,
    /// Seconds from the capture to the evaluation time (`None` before the capture).
    pub age_seconds: Option<i64>,
}

/// The leads of `tenant` matching `filter`, by id, their age evaluated at `at`.
pub async fn list(
    db: &ReadDb,
    tenant: &str,
    filter: &LeadFilter,
    at: DateTime<Utc>,
) -> Result<Vec<LeadLine>, ProjectionError> {
    let mut sql = format!("SELECT id, doc FROM {TABLE} WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    let equal = [
        ("status", filter.status.map(|s| s.as_str().to_owned())),
        ("source", filter.source.clone()),
        ("campaign_id", filter.campaign_id.clone()),
        ("owner", filter.owner.clone()),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(value.into());
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
    db.fetch(&sql, args, &[Col::Text, Col::Text])
        .await?
        .into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            let lead: Lead = decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())?;
            Ok(LeadLine {
                age_seconds: lead.captured_at.map(|c| (at - c).num_seconds()),
                lead,
            })
        })
        .collect()
}

/// Every lead of `tenant` captured in `[from, to)` (either end open), by id.
pub(crate) async fn captured_in(
    db: &ReadDb,
    tenant: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<Lead>, ProjectionError> {
    let mut sql =
        format!("SELECT id, doc FROM {TABLE} WHERE tenant = ? AND captured_at IS NOT NULL");
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    if let Some(from) = from {
        sql.push_str(" AND captured_at >= ?");
        args.push(SqlValue::Int(from.timestamp_micros()));
    }
    if let Some(to) = to {
        sql.push_str(" AND captured_at < ?");
        args.push(SqlValue::Int(to.timestamp_micros()));
    }
    sql.push_str(" ORDER BY id");
    db.fetch(&sql, args, &[Col::Text, Col::Text])
        .await?
        .into_iter()
        .map(|row| {
            let id = row[0].as_text().unwrap_or_default();
            decode_doc(TABLE, tenant, id, row[1].as_text().unwrap_or_default())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_they_are_written() {
        for status in LeadStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
    }
}
