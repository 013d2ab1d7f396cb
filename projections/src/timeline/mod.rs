//! The customer timeline: every event that touches a customer, across its own stream and
//! the streams of its leads, opportunities and cases, in log order.
//!
//! Attribution follows [`crate::attribution`]. A lead's events wait in a side table until
//! the lead is converted, then join the customer's timeline at their own positions; when a
//! customer is merged, its timeline is copied into the survivor's, and its later events
//! appear in both.

use std::sync::Arc;

use chrono::DateTime;
use crm_core::catalog::DomainEvent;
use crm_core::envelope::Position;

use crate::attribution::{direct_customer_ref, keys_needed, record_links};
use crate::bookkeeping::from_position;
use crate::db::{Col, Query, ReadDb, ReadTx, Rows, SqlValue};
use crate::error::ProjectionError;
use crate::event::{ProjectedEvent, TimelineEntry};
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{LINKS_TABLE, Links, merged_key};

pub const TABLE: &str = "rm_customer_timeline";
pub const LEADS: &str = "rm_customer_timeline_leads";
pub const LINKS: &str = "rm_customer_timeline_links";

const ENTRY_COLUMNS: &str =
    "position, stream_id, revision, event_type, occurred_at, recorded_at, actor";

const TABLES: &[TableDef] = &[
    TableDef {
        name: TABLE,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            customer_id TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            stream_id TEXT NOT NULL,
            revision BIGINT NOT NULL,
            event_type TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            actor TEXT,
            PRIMARY KEY (tenant, customer_id, position)
        ) WITHOUT_ROWID",
        indexes: &[],
    },
    TableDef {
        name: LEADS,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            lead_id TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            stream_id TEXT NOT NULL,
            revision BIGINT NOT NULL,
            event_type TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            actor TEXT,
            PRIMARY KEY (tenant, lead_id, position)
        ) WITHOUT_ROWID",
        indexes: &[],
    },
    TableDef {
        name: LINKS,
        create: LINKS_TABLE,
        indexes: &[],
    },
];

/// The customer timeline projection.
#[derive(Debug, Default)]
pub struct TimelineProjection;

#[async_trait::async_trait]
impl Projection for TimelineProjection {
    fn name(&self) -> &'static str {
        "customer_timeline"
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
        let timeline = tables.get(TABLE);
        let leads = tables.get(LEADS);
        let mut links = Links::load(tx, tables.get(LINKS), keys_needed(events)).await?;
        let mut rows: Vec<Vec<SqlValue>> = Vec::new();
        let mut lead_rows: Vec<Vec<SqlValue>> = Vec::new();
        for event in events {
            let tenant = event.tenant.as_str();
            record_links(&mut links, event);
            if let DomainEvent::LeadConverted(conversion) = &event.event {
                flush(tx, timeline, leads, &mut rows, &mut lead_rows).await?;
                for customer in links.chain(tenant, conversion.customer_id.as_str()) {
                    tx.execute(
                        &format!(
                            "INSERT INTO {timeline} (tenant, customer_id, {ENTRY_COLUMNS}) \
                             SELECT tenant, ?, {ENTRY_COLUMNS} FROM {leads} \
                             WHERE tenant = ? AND lead_id = ? ON CONFLICT DO NOTHING"
                        ),
                        vec![
                            customer.into(),
                            tenant.into(),
                            conversion.lead_id.as_str().into(),
                        ],
                    )
                    .await?;
                }
            }
            match direct_customer_ref(&links, event) {
                Some(customer) => {
                    for owner in links.chain(tenant, customer) {
                        rows.push(row(event, &owner));
                    }
                }
                None if event.event.category() == "lead" => {
                    lead_rows.push(row(event, event.event.entity_id().as_str()));
                }
                // Events of an opportunity or case whose opening was never seen, and campaign
                // events about leads, touch no known customer.
                None => {}
            }
            if let DomainEvent::CustomerMerged(merge) = &event.event {
                let from = merge.customer_id.as_str();
                let target = links.resolve(tenant, merge.into_customer_id.as_str());
                if target != from && links.get(tenant, &merged_key(from)).is_none() {
                    flush(tx, timeline, leads, &mut rows, &mut lead_rows).await?;
                    for owner in links.chain(tenant, &target) {
                        tx.execute(
                            &format!(
                                "INSERT INTO {timeline} (tenant, customer_id, {ENTRY_COLUMNS}) \
                                 SELECT tenant, ?, {ENTRY_COLUMNS} FROM {timeline} \
                                 WHERE tenant = ? AND customer_id = ? ON CONFLICT DO NOTHING"
                            ),
                            vec![owner.into(), tenant.into(), from.into()],
                        )
                        .await?;
                    }
                    links.set(tenant, merged_key(from), &target);
                }
            }
        }
        flush(tx, timeline, leads, &mut rows, &mut lead_rows).await?;
        links.flush(tx, tables.get(LINKS)).await
    }
}

fn row(event: &ProjectedEvent, owner: &str) -> Vec<SqlValue> {
    vec![
        event.tenant.as_str().into(),
        owner.into(),
        from_position(event.position),
        event.stream_id.as_str().into(),
        SqlValue::Int(i64::try_from(event.revision).unwrap_or(i64::MAX)),
        event.event.event_type().into(),
        SqlValue::Int(event.occurred_at.timestamp_micros()),
        SqlValue::Int(event.recorded_at.timestamp_micros()),
        SqlValue::opt_text(event.actor.clone()),
    ]
}

async fn flush(
    tx: &mut ReadTx,
    timeline: &str,
    leads: &str,
    rows: &mut Vec<Vec<SqlValue>>,
    lead_rows: &mut Vec<Vec<SqlValue>>,
) -> Result<(), ProjectionError> {
    let columns = [
        "tenant",
        "customer_id",
        "position",
        "stream_id",
        "revision",
        "event_type",
        "occurred_at",
        "recorded_at",
        "actor",
    ];
    tx.insert_rows(
        timeline,
        &columns,
        std::mem::take(rows),
        "ON CONFLICT DO NOTHING",
    )
    .await?;
    let mut lead_columns = columns;
    lead_columns[1] = "lead_id";
    tx.insert_rows(
        leads,
        &lead_columns,
        std::mem::take(lead_rows),
        "ON CONFLICT DO NOTHING",
    )
    .await
}

/// Which part of a timeline to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimelinePage {
    /// Only entries after this position (keyset pagination), or before it when `newest_first`.
    pub cursor: Option<Position>,
    pub limit: usize,
    pub newest_first: bool,
}

/// A page of a customer's timeline from the live read model.
pub async fn page(
    db: &ReadDb,
    tenant: &str,
    customer: &str,
    page: TimelinePage,
) -> Result<Vec<TimelineEntry>, ProjectionError> {
    let query = page_query(tenant, customer, page);
    Ok(entries_from(
        db.fetch(&query.sql, query.args, &query.cols).await?,
    ))
}

/// The statement of [`page`], to run alone or together with others
/// (`ReadDb::fetch_together`); [`entries_from`] reads its rows.
pub fn page_query(tenant: &str, customer: &str, page: TimelinePage) -> Query {
    let mut sql =
        format!("SELECT {ENTRY_COLUMNS} FROM {TABLE} WHERE tenant = ? AND customer_id = ?");
    let mut args: Vec<SqlValue> = vec![tenant.into(), customer.into()];
    if let Some(cursor) = page.cursor {
        sql.push_str(if page.newest_first {
            " AND position < ?"
        } else {
            " AND position > ?"
        });
        args.push(from_position(cursor));
    }
    sql.push_str(if page.newest_first {
        " ORDER BY position DESC LIMIT ?"
    } else {
        " ORDER BY position LIMIT ?"
    });
    args.push(SqlValue::Int(i64::try_from(page.limit).unwrap_or(i64::MAX)));
    Query::new(
        sql,
        args,
        &[
            Col::Int,
            Col::Text,
            Col::Int,
            Col::Text,
            Col::Int,
            Col::Int,
            Col::Text,
        ],
    )
}

/// The entries of a [`page_query`]'s rows.
pub fn entries_from(rows: Rows) -> Vec<TimelineEntry> {
    rows.into_iter()
        .map(|row| TimelineEntry {
            position: row[0].as_int().map_or(0, crate::bookkeeping::to_position),
            stream_id: row[1].as_text().unwrap_or_default().to_owned(),
            revision: row[2]
                .as_int()
                .and_then(|r| u64::try_from(r).ok())
                .unwrap_or(0),
            event_type: row[3].as_text().unwrap_or_default().to_owned(),
            occurred_at: row[4]
                .as_int()
                .and_then(DateTime::from_timestamp_micros)
                .unwrap_or_default(),
            recorded_at: row[5]
                .as_int()
                .and_then(DateTime::from_timestamp_micros)
                .unwrap_or_default(),
            actor: row[6].as_text().map(str::to_owned),
        })
        .collect()
}
