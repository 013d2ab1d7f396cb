//! Consent read model (issue 18, item 4): every consent decision, every consent regime the
//! tenant set (`ConsentRegimeSet`, stream `settings-consent`), and every marketing contact
//! (an outbound `InteractionLogged` with purpose `marketing` on a channel a consent governs),
//! each judged once, when projected, against what the log held before it:
//! - its status: the customer's last decision for the channel and `marketing` recorded before
//!   it in the log (`granted`, `withdrawn`, or `never_given`), for the customer whose stream
//!   logged it;
//! - the regime in force then (the last one set before it; `opt_in` when none was);
//! - a violation when the status does not allow marketing under that regime.
//!
//! A contact is a fact that already happened: it is recorded whatever the consent, and only
//! flagged. Later consent changes or regimes never re-judge it, so a violation stays
//! explainable from the log. Serves `GET /v1/consent/violations`, `GET
//! /v1/settings/consent` and the 360 view's `consent_record`, live or at a cut.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::aggregates::consent::ConsentStatus;
use crm_core::catalog::DomainEvent;
use crm_core::catalog::values::{
    ConsentChannel, ConsentPurpose, ConsentRegime, InteractionChannel,
};
use serde::Serialize;

use crate::asof::Cut;
use crate::bookkeeping::from_position;
use crate::db::{Col, Query, ReadDb, ReadTx, Rows, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};

/// The projection's name (its checkpoint's key).
pub const NAME: &str = "consent";
pub const CHANGES: &str = "rm_consent_changes";
pub const REGIMES: &str = "rm_consent_regimes";
pub const CONTACTS: &str = "rm_marketing_contacts";
/// Most consent changes and violations listed on a 360 view (all are counted).
pub const SHOWN: usize = 100;

const TABLES: &[TableDef] = &[
    TableDef {
        name: CHANGES,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            customer_id TEXTKEY NOT NULL,
            channel TEXTKEY NOT NULL,
            purpose TEXTKEY NOT NULL,
            granted BIGINT NOT NULL,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, position)
        )",
        indexes: &[
            "CREATE INDEX {t}_customer ON {t} (tenant, customer_id, channel, purpose, position)",
        ],
    },
    TableDef {
        name: REGIMES,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            regime TEXT NOT NULL,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, position)
        )",
        indexes: &[],
    },
    TableDef {
        name: CONTACTS,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            customer_id TEXTKEY NOT NULL,
            interaction_id TEXT NOT NULL,
            channel TEXTKEY NOT NULL,
            interaction_channel TEXT NOT NULL,
            status TEXT NOT NULL,
            regime TEXT NOT NULL,
            violation BIGINT NOT NULL,
            occurred_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, position)
        )",
        indexes: &[
            "CREATE INDEX {t}_customer ON {t} (tenant, customer_id, position)",
            "CREATE INDEX {t}_violations ON {t} (tenant, violation, position)",
        ],
    },
];

const CHANGE_COLUMNS: &[&str] = &[
    "tenant",
    "position",
    "customer_id",
    "channel",
    "purpose",
    "granted",
    "occurred_at",
    "recorded_at",
];
const REGIME_COLUMNS: &[&str] = &["tenant", "position", "regime", "occurred_at", "recorded_at"];
const CONTACT_COLUMNS: &[&str] = &[
    "tenant",
    "position",
    "customer_id",
    "interaction_id",
    "channel",
    "interaction_channel",
    "status",
    "regime",
    "violation",
    "occurred_at",
    "recorded_at",
];

/// The consent projection.
#[derive(Debug, Default)]
pub struct ConsentProjection;

type ConsentKey = (String, String, ConsentChannel);

#[async_trait::async_trait]
impl Projection for ConsentProjection {
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
        // What this batch decided so far, over what earlier batches stored.
        let mut marketing: HashMap<ConsentKey, Option<bool>> = HashMap::new();
        let mut regimes: HashMap<String, ConsentRegime> = HashMap::new();
        let (mut changes, mut set, mut contacts) = (Vec::new(), Vec::new(), Vec::new());
        for event in events {
            let tenant = event.tenant.as_str();
            let times = [
                SqlValue::Int(event.occurred_at.timestamp_micros()),
                SqlValue::Int(event.recorded_at.timestamp_micros()),
            ];
            match &event.event {
                DomainEvent::CustomerConsentChanged(change) => {
                    if change.purpose == ConsentPurpose::Marketing {
                        marketing.insert(
                            (
                                tenant.to_owned(),
                                change.customer_id.as_str().to_owned(),
                                change.channel,
                            ),
                            Some(change.granted),
                        );
                    }
                    let mut row = vec![
                        tenant.into(),
                        from_position(event.position),
                        change.customer_id.as_str().into(),
                        change.channel.as_str().into(),
                        change.purpose.as_str().into(),
                        SqlValue::Int(i64::from(change.granted)),
                    ];
                    row.extend(times);
                    changes.push(row);
                }
                DomainEvent::ConsentRegimeSet(regime) => {
                    regimes.insert(tenant.to_owned(), regime.regime);
                    let mut row = vec![
                        tenant.into(),
                        from_position(event.position),
                        regime.regime.as_str().into(),
                    ];
                    row.extend(times);
                    set.push(row);
                }
                DomainEvent::InteractionLogged(interaction) => {
                    let Some(channel) = interaction.marketing_channel() else {
                        continue;
                    };
                    let key = (
                        tenant.to_owned(),
                        interaction.customer_id.as_str().to_owned(),
                        channel,
                    );
                    let latest = match marketing.get(&key) {
                        Some(latest) => *latest,
                        None => {
                            let latest = stored_decision(tx, tables, &key).await?;
                            marketing.insert(key, latest);
                            latest
                        }
                    };
                    let regime = match regimes.get(tenant) {
                        Some(regime) => *regime,
                        None => {
                            let regime = stored_regime(tx, tables, tenant).await?;
                            regimes.insert(tenant.to_owned(), regime);
                            regime
                        }
                    };
                    let status = ConsentStatus::of(latest);
                    let mut row = vec![
                        tenant.into(),
                        from_position(event.position),
                        interaction.customer_id.as_str().into(),
                        interaction.interaction_id.as_str().into(),
                        channel.as_str().into(),
                        interaction.channel.as_str().into(),
                        status.as_str().into(),
                        regime.as_str().into(),
                        SqlValue::Int(i64::from(!status.allows(regime))),
                    ];
                    row.extend(times);
                    contacts.push(row);
                }
                _ => {}
            }
        }
        let conflict = "ON CONFLICT DO NOTHING";
        tx.insert_rows(tables.get(CHANGES), CHANGE_COLUMNS, changes, conflict)
            .await?;
        tx.insert_rows(tables.get(REGIMES), REGIME_COLUMNS, set, conflict)
            .await?;
        tx.insert_rows(tables.get(CONTACTS), CONTACT_COLUMNS, contacts, conflict)
            .await
    }
}

/// The last marketing decision stored for the key, by an earlier batch.
async fn stored_decision(
    tx: &mut ReadTx,
    tables: &Tables,
    (tenant, customer, channel): &ConsentKey,
) -> Result<Option<bool>, ProjectionError> {
    let rows = tx
        .fetch(
            &format!(
                "SELECT granted FROM {} WHERE tenant = ? AND customer_id = ? AND channel = ? \
                 AND purpose = ? ORDER BY position DESC LIMIT 1",
                tables.get(CHANGES)
            ),
            vec![
                tenant.as_str().into(),
                customer.as_str().into(),
                channel.as_str().into(),
                ConsentPurpose::Marketing.as_str().into(),
            ],
            &[Col::Int],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_int())
        .map(|granted| granted != 0))
}

/// The regime an earlier batch stored last (`opt_in` when none).
async fn stored_regime(
    tx: &mut ReadTx,
    tables: &Tables,
    tenant: &str,
) -> Result<ConsentRegime, ProjectionError> {
    let rows = tx
        .fetch(
            &format!(
                "SELECT regime FROM {} WHERE tenant = ? ORDER BY position DESC LIMIT 1",
                tables.get(REGIMES)
            ),
            vec![tenant.into()],
            &[Col::Text],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_text())
        .and_then(ConsentRegime::parse)
        .unwrap_or(ConsentRegime::OptIn))
}

/// The condition keeping the rows within `cut` (every row when `None`).
fn within(cut: Option<Cut>) -> (String, Vec<SqlValue>) {
    match cut {
        None => ("1 = 1".to_owned(), vec![]),
        Some(Cut::OccurredBy(at)) => (
            "occurred_at <= ?".to_owned(),
            vec![SqlValue::Int(at.timestamp_micros())],
        ),
        Some(Cut::RecordedBy(at)) => (
            "recorded_at <= ?".to_owned(),
            vec![SqlValue::Int(at.timestamp_micros())],
        ),
        Some(Cut::Position(position)) => {
            ("position <= ?".to_owned(), vec![from_position(position)])
        }
    }
}

fn micros(value: Option<i64>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(value.unwrap_or_default()).unwrap_or_default()
}

fn position_of(value: Option<i64>) -> u64 {
    u64::try_from(value.unwrap_or_default()).unwrap_or_default()
}

/// The tenant's consent regime in force, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RegimeInForce {
    pub regime: ConsentRegime,
    /// The `ConsentRegimeSet` that set it: absent while the default (`opt_in`) holds.
    pub set_at: Option<DateTime<Utc>>,
    pub set_position: Option<u64>,
    /// Every regime set, oldest first.
    pub history: Vec<RegimeSet>,
}

/// One `ConsentRegimeSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RegimeSet {
    pub regime: ConsentRegime,
    pub at: DateTime<Utc>,
    pub position: u64,
}

/// The regime in force at `cut` (now when `None`) and the regimes set by then.
pub async fn regime(
    db: &ReadDb,
    tenant: &str,
    cut: Option<Cut>,
) -> Result<RegimeInForce, ProjectionError> {
    let (condition, bounds) = within(cut);
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    args.extend(bounds);
    let history: Vec<RegimeSet> = db
        .fetch(
            &format!(
                "SELECT regime, occurred_at, position FROM {REGIMES} WHERE tenant = ? AND \
                 {condition} ORDER BY position"
            ),
            args,
            &[Col::Text, Col::Int, Col::Int],
        )
        .await?
        .into_iter()
        .filter_map(|row| {
            Some(RegimeSet {
                regime: ConsentRegime::parse(row[0].as_text()?)?,
                at: micros(row[1].as_int()),
                position: position_of(row[2].as_int()),
            })
        })
        .collect();
    let latest = history.last();
    Ok(RegimeInForce {
        regime: latest.map_or(ConsentRegime::OptIn, |set| set.regime),
        set_at: latest.map(|set| set.at),
        set_position: latest.map(|set| set.position),
        history,
    })
}

/// One consent decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentChange {
    pub customer_id: String,
    pub channel: ConsentChannel,
    pub purpose: ConsentPurpose,
    pub granted: bool,
    pub at: DateTime<Utc>,
    pub position: u64,
}

/// One marketing contact, as judged when it was projected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MarketingContact {
    pub customer_id: String,
    pub interaction_id: String,
    /// The consent channel it needed (from the interaction's channel).
    pub channel: ConsentChannel,
    pub interaction_channel: InteractionChannel,
    /// The customer's marketing consent on the channel when it was recorded.
    pub consent: ConsentStatus,
    /// The tenant's regime then.
    pub regime: ConsentRegime,
    /// The consent did not allow it under the regime.
    pub violation: bool,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: u64,
}

/// A customer's consents over time and its marketing contacts: the 360 view's
/// `consent_record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentRecord {
    /// Every decision of the customer (and of customers merged into it), newest first, at
    /// most [`SHOWN`].
    pub history: Vec<ConsentChange>,
    pub changes: u64,
    /// Outbound marketing interactions on channels a consent governs.
    pub marketing_contacts: u64,
    /// Those made without the consent they needed, newest first, at most [`SHOWN`].
    pub violations: Vec<MarketingContact>,
    pub violation_count: u64,
}

const CONTACT_SELECT: &str = "customer_id, interaction_id, channel, interaction_channel, status, \
     regime, violation, occurred_at, recorded_at, position";
const CONTACT_COLS: &[Col] = &[
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
];

fn contact(row: &[SqlValue]) -> Option<MarketingContact> {
    let status = match row[4].as_text()? {
        "granted" => ConsentStatus::Granted,
        "withdrawn" => ConsentStatus::Withdrawn,
        _ => ConsentStatus::NeverGiven,
    };
    Some(MarketingContact {
        customer_id: row[0].as_text()?.to_owned(),
        interaction_id: row[1].as_text()?.to_owned(),
        channel: ConsentChannel::parse(row[2].as_text()?)?,
        interaction_channel: InteractionChannel::parse(row[3].as_text()?)?,
        consent: status,
        regime: ConsentRegime::parse(row[5].as_text()?)?,
        violation: row[6].as_int() == Some(1),
        at: micros(row[7].as_int()),
        recorded_at: micros(row[8].as_int()),
        position: position_of(row[9].as_int()),
    })
}

/// The consent record of the customers `ids` (a customer and those merged into it) within
/// `cut` (everything when `None`).
pub async fn record(
    db: &ReadDb,
    tenant: &str,
    ids: &[&str],
    cut: Option<Cut>,
) -> Result<ConsentRecord, ProjectionError> {
    let mut answers = Vec::new();
    for chunk in ids.chunks(crate::db::MAX_PARAMS / 2) {
        answers.extend(
            db.fetch_together(record_queries(tenant, chunk, cut))
                .await?,
        );
    }
    Ok(record_from(answers))
}

/// The statements of [`record`] for at most `MAX_PARAMS / 2` ids, to run alone or together
/// with others (`ReadDb::fetch_together`): the decisions, then the marketing contacts.
/// [`record_from`] reads their rows.
pub fn record_queries(tenant: &str, ids: &[&str], cut: Option<Cut>) -> Vec<Query> {
    let (condition, bounds) = within(cut);
    let placeholders = crate::db::placeholders(ids.len());
    let mut args: Vec<SqlValue> = vec![tenant.into()];
    args.extend(ids.iter().map(|id| SqlValue::from(*id)));
    args.extend(bounds);
    vec![
        Query::new(
            format!(
                "SELECT customer_id, channel, purpose, granted, occurred_at, position FROM \
                 {CHANGES} WHERE tenant = ? AND customer_id IN ({placeholders}) AND \
                 {condition} ORDER BY position DESC"
            ),
            args.clone(),
            &[
                Col::Text,
                Col::Text,
                Col::Text,
                Col::Int,
                Col::Int,
                Col::Int,
            ],
        ),
        Query::new(
            format!(
                "SELECT {CONTACT_SELECT} FROM {CONTACTS} WHERE tenant = ? AND customer_id IN \
                 ({placeholders}) AND {condition} ORDER BY position DESC"
            ),
            args,
            CONTACT_COLS,
        ),
    ]
}

/// The consent record from the rows of [`record_queries`] (of one or more chunks of ids,
/// each chunk's two answers in turn).
pub fn record_from(answers: Vec<Rows>) -> ConsentRecord {
    let mut record = ConsentRecord {
        history: Vec::new(),
        changes: 0,
        marketing_contacts: 0,
        violations: Vec::new(),
        violation_count: 0,
    };
    let mut answers = answers.into_iter();
    while let (Some(changes), Some(contacts)) = (answers.next(), answers.next()) {
        record.changes += changes.len() as u64;
        record.history.extend(changes.iter().filter_map(|row| {
            Some(ConsentChange {
                customer_id: row[0].as_text()?.to_owned(),
                channel: ConsentChannel::parse(row[1].as_text()?)?,
                purpose: ConsentPurpose::parse(row[2].as_text()?)?,
                granted: row[3].as_int() == Some(1),
                at: micros(row[4].as_int()),
                position: position_of(row[5].as_int()),
            })
        }));
        record.marketing_contacts += contacts.len() as u64;
        for found in contacts.iter().filter_map(|row| contact(row)) {
            if found.violation {
                record.violation_count += 1;
                record.violations.push(found);
            }
        }
    }
    record
        .history
        .sort_by_key(|change| std::cmp::Reverse(change.position));
    record.history.truncate(SHOWN);
    record
        .violations
        .sort_by_key(|contact| std::cmp::Reverse(contact.position));
    record.violations.truncate(SHOWN);
    record
}

/// Which violations a listing wants.
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    /// Contacts that happened (business time) at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Contacts that happened before this.
    pub to: Option<DateTime<Utc>>,
    pub customer_id: Option<String>,
    pub channel: Option<ConsentChannel>,
    /// Violations at positions after this (the previous page's last).
    pub after: Option<u64>,
}

/// The tenant's marketing contacts flagged as violations, oldest first (log order), at most
/// `limit`.
pub async fn violations(
    db: &ReadDb,
    tenant: &str,
    filter: &ViolationFilter,
    limit: usize,
) -> Result<Vec<MarketingContact>, ProjectionError> {
    let mut sql = format!(
        "SELECT {CONTACT_SELECT} FROM {CONTACTS} WHERE tenant = ? AND violation = 1 AND \
         position > ?"
    );
    let mut args: Vec<SqlValue> = vec![tenant.into(), from_position(filter.after.unwrap_or(0))];
    if let Some(from) = filter.from {
        sql.push_str(" AND occurred_at >= ?");
        args.push(SqlValue::Int(from.timestamp_micros()));
    }
    if let Some(to) = filter.to {
        sql.push_str(" AND occurred_at < ?");
        args.push(SqlValue::Int(to.timestamp_micros()));
    }
    if let Some(customer) = &filter.customer_id {
        sql.push_str(" AND customer_id = ?");
        args.push(customer.as_str().into());
    }
    if let Some(channel) = filter.channel {
        sql.push_str(" AND channel = ?");
        args.push(channel.as_str().into());
    }
    sql.push_str(" ORDER BY position LIMIT ?");
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    Ok(db
        .fetch(&sql, args, CONTACT_COLS)
        .await?
        .iter()
        .filter_map(|row| contact(row))
        .collect())
}
