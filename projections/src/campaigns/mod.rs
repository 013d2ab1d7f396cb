//! The campaign read model: one row per campaign (name, channel, launch, members, responses
//! by kind, cost per currency) and one row per *touch* (a customer's membership or positive
//! response, with its business time), from which [`report`] answers `GET /v1/campaigns` and
//! `GET /v1/campaigns/{id}`: response rate, leads generated (from the lead read model),
//! opportunities influenced and revenue won under three attribution models (from the
//! pipeline read model), cost and ROI per currency.
//!
//! Holds no personal data: ids, labels, kinds, times and amounts.

pub mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::campaign::CampaignMember;
use crm_core::catalog::values::CampaignResponse;
use crm_core::ids::EntityId;
use serde::{Deserialize, Serialize};

use crate::bookkeeping::from_position;
use crate::db::{ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::event::ProjectedEvent;
use crate::projection::{Projection, TableDef, Tables};
use crate::rows::{DocRow, Key, load_docs, upsert_docs};

pub use report::{CampaignReport, report, reports};

pub const TABLE: &str = "rm_campaigns";
pub const TOUCHES: &str = "rm_campaign_touches";

const TABLES: &[TableDef] = &[
    TableDef {
        name: TABLE,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            id TEXTKEY NOT NULL,
            launched_at BIGINT,
            last_position BIGINT NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
        )",
        indexes: &[],
    },
    TableDef {
        name: TOUCHES,
        create: "CREATE TABLE {t} (
            tenant TEXTKEY NOT NULL,
            position BIGINT NOT NULL,
            campaign_id TEXTKEY NOT NULL,
            customer_id TEXTKEY NOT NULL,
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            PRIMARY KEY (tenant, position)
        )",
        indexes: &[
            "CREATE INDEX {t}_campaign ON {t} (tenant, campaign_id, customer_id)",
            "CREATE INDEX {t}_customer ON {t} (tenant, customer_id, at)",
        ],
    },
];

/// One campaign folded from its stream; `Default` is a campaign with no event folded yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: Option<EntityId>,
    pub name: Option<String>,
    /// The consent channel members are reached on (`CampaignLaunched` version 2).
    pub channel: Option<String>,
    /// The free label (`webinar`, `trade_show`; a version 1 channel label that names no
    /// consent channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Business time of the launch.
    pub launched_at: Option<DateTime<Utc>>,
    /// Members (`customer:<id>` or `lead:<id>`) and when each was first added.
    pub members: BTreeMap<String, DateTime<Utc>>,
    /// Members with a positive response ([`is_positive`]) and when they first gave one.
    pub responders: BTreeMap<String, DateTime<Utc>>,
    /// Every response by kind (negative ones included).
    pub responses: BTreeMap<String, i64>,
    /// Spend per currency code, in minor units (saturating at the `i64` bounds).
    pub cost: BTreeMap<String, i64>,
    pub last_position: u64,
}

/// A response that shows interest: every kind but `unsubscribed` and `bounced`. Only these
/// count for the response rate and as touches.
pub fn is_positive(response: CampaignResponse) -> bool {
    !matches!(
        response,
        CampaignResponse::Unsubscribed | CampaignResponse::Bounced
    )
}

fn member_key(member: &CampaignMember) -> String {
    match member {
        CampaignMember::Customer(id) => format!("customer:{id}"),
        CampaignMember::Lead(id) => format!("lead:{id}"),
    }
}

impl Campaign {
    /// Folds one campaign event. A second launch keeps the first's time and takes its name
    /// and channel only where none was known.
    pub fn apply(&mut self, event: &ProjectedEvent) {
        let at = event.occurred_at;
        let id = match &event.event {
            DomainEvent::CampaignLaunched(data) => {
                if self.launched_at.is_none() {
                    self.launched_at = Some(at);
                    self.name = Some(data.name.clone());
                    self.channel = data.channel.map(|c| c.as_str().to_owned());
                    self.medium = data.medium.clone();
                }
                &data.campaign_id
            }
            DomainEvent::CampaignMemberAdded(data) => {
                self.members.entry(member_key(&data.member)).or_insert(at);
                &data.campaign_id
            }
            DomainEvent::CampaignMemberResponded(data) => {
                *self
                    .responses
                    .entry(data.response.as_str().to_owned())
                    .or_default() += 1;
                if is_positive(data.response) {
                    let key = member_key(&data.member);
                    let first = self.responders.entry(key).or_insert(at);
                    *first = (*first).min(at);
                }
                &data.campaign_id
            }
            DomainEvent::CampaignCostRecorded(data) => {
                let spent = self
                    .cost
                    .entry(data.amount.currency.code().to_owned())
                    .or_default();
                *spent = spent.saturating_add(data.amount.minor_units);
                &data.campaign_id
            }
            _ => return,
        };
        if self.campaign_id.is_none() {
            self.campaign_id = Some(id.clone());
        }
        self.last_position = event.position;
    }
}

impl DocRow for Campaign {
    const COLUMNS: &'static [&'static str] = &["launched_at", "last_position"];

    fn column_values(&self) -> Vec<SqlValue> {
        vec![
            SqlValue::opt_int(self.launched_at.map(|t| t.timestamp_micros())),
            from_position(self.last_position),
        ]
    }
}

/// The touch an event records, if any: (campaign, customer, kind).
fn touch(event: &DomainEvent) -> Option<(&EntityId, &EntityId, &'static str)> {
    match event {
        DomainEvent::CampaignMemberAdded(data) => match &data.member {
            CampaignMember::Customer(customer) => Some((&data.campaign_id, customer, "member")),
            CampaignMember::Lead(_) => None,
        },
        DomainEvent::CampaignMemberResponded(data) if is_positive(data.response) => {
            match &data.member {
                CampaignMember::Customer(customer) => {
                    Some((&data.campaign_id, customer, data.response.as_str()))
                }
                CampaignMember::Lead(_) => None,
            }
        }
        _ => None,
    }
}

/// The campaign projection.
#[derive(Debug, Default)]
pub struct CampaignsProjection;

#[async_trait::async_trait]
impl Projection for CampaignsProjection {
    fn name(&self) -> &'static str {
        "campaigns"
    }

    fn version(&self) -> i64 {
        // 2: `CampaignLaunched` version 2 (a consent channel, and a medium).
        2
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
        let table = tables.get(TABLE);
        let keys: BTreeSet<Key> = events
            .iter()
            .filter(|e| e.event.category() == "campaign")
            .map(|e| {
                (
                    e.tenant.as_str().to_owned(),
                    e.event.entity_id().as_str().to_owned(),
                )
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let mut docs: HashMap<Key, Campaign> = load_docs(tx, table, &keys).await?;
        let mut touches = Vec::new();
        for event in events.iter().filter(|e| e.event.category() == "campaign") {
            let key = (
                event.tenant.as_str().to_owned(),
                event.event.entity_id().as_str().to_owned(),
            );
            docs.entry(key).or_default().apply(event);
            if let Some((campaign, customer, kind)) = touch(&event.event) {
                touches.push(vec![
                    SqlValue::text(event.tenant.as_str()),
                    from_position(event.position),
                    SqlValue::text(campaign.as_str()),
                    SqlValue::text(customer.as_str()),
                    SqlValue::Int(event.occurred_at.timestamp_micros()),
                    SqlValue::text(kind),
                ]);
            }
        }
        upsert_docs(tx, table, keys.iter().filter_map(|k| docs.get_key_value(k))).await?;
        tx.insert_rows(
            tables.get(TOUCHES),
            &[
                "tenant",
                "position",
                "campaign_id",
                "customer_id",
                "at",
                "kind",
            ],
            touches,
            "ON CONFLICT (tenant, position) DO NOTHING",
        )
        .await
    }
}
