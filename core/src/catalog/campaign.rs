//! Campaign events: the `campaign-<campaign_id>` stream of a marketing campaign and its
//! members (customers or leads).

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem};
use crate::catalog::values::{CampaignResponse, ConsentChannel};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::money::Money;

/// Who a campaign member is: JSON carries exactly one of `customer_id` and `lead_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignMember {
    Customer(EntityId),
    Lead(EntityId),
}

impl CampaignMember {
    fn read(fields: &FieldReader<'_>) -> Result<CampaignMember, CatalogError> {
        let customer_id = fields.optional("customer_id")?;
        let lead_id = fields.optional("lead_id")?;
        match (customer_id, lead_id) {
            (Some(customer_id), None) => Ok(CampaignMember::Customer(customer_id)),
            (None, Some(lead_id)) => Ok(CampaignMember::Lead(lead_id)),
            (Some(_), Some(_)) | (None, None) => Err(fields.problem(Problem::data(
                "exactly one of customer_id and lead_id must be given",
            ))),
        }
    }

    fn write(&self, data: &mut DataWriter) {
        match self {
            CampaignMember::Customer(id) => data.id("customer_id", id),
            CampaignMember::Lead(id) => data.id("lead_id", id),
        }
    }

    fn customer_id(&self) -> Option<&EntityId> {
        match self {
            CampaignMember::Customer(id) => Some(id),
            CampaignMember::Lead(_) => None,
        }
    }
}

/// A campaign started.
///
/// Schema version 2 made `channel` a value of the consent vocabulary (the channel its members
/// are reached on, whose marketing consent adding a customer needs) and moved free labels to
/// `medium`. A version 1 event is upcast ([`crate::catalog::upcast`]): a `channel` label that
/// names a consent channel (trimmed, any case) becomes that channel; any other label becomes
/// the `medium`, and the campaign then has no channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignLaunched {
    pub campaign_id: EntityId,
    /// A business label, not personal data.
    pub name: String,
    /// The channel members are reached on; none for a campaign that reaches nobody
    /// directly (a trade show, a billboard), whose members are not checked for consent.
    pub channel: Option<ConsentChannel>,
    /// A free label such as `webinar`, `newsletter` or `trade_show`.
    pub medium: Option<String>,
}

impl EventData for CampaignLaunched {
    const VERSION: u32 = 2;
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("campaign_id"),
        FieldInfo::required("name"),
        FieldInfo::optional("channel"),
        FieldInfo::optional("medium"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CampaignLaunched {
            campaign_id: fields.required("campaign_id")?,
            name: fields.text("name")?,
            channel: fields.optional("channel")?,
            medium: fields.optional_text("medium")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("campaign_id", &self.campaign_id);
        data.string("name", &self.name);
        if let Some(channel) = self.channel {
            data.string("channel", channel.as_str());
        }
        data.optional_string("medium", self.medium.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.campaign_id
    }
}

/// Upcasts a version 1 `CampaignLaunched`: its free `channel` label becomes the consent
/// channel it names, or else the `medium`.
pub(crate) fn campaign_launched_v1_to_v2(mut data: serde_json::Value) -> serde_json::Value {
    let Some(object) = data.as_object_mut() else {
        return data;
    };
    if let Some(serde_json::Value::String(label)) = object.remove("channel") {
        match ConsentChannel::parse(&label.trim().to_lowercase()) {
            Some(channel) => {
                object.insert("channel".into(), channel.as_str().into());
            }
            None => {
                object.insert("medium".into(), label.into());
            }
        }
    }
    data
}

/// A customer or lead was added to the campaign's audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignMemberAdded {
    pub campaign_id: EntityId,
    pub member: CampaignMember,
}

impl EventData for CampaignMemberAdded {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("campaign_id"),
        FieldInfo::optional("customer_id"),
        FieldInfo::optional("lead_id"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CampaignMemberAdded {
            campaign_id: fields.required("campaign_id")?,
            member: CampaignMember::read(fields)?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("campaign_id", &self.campaign_id);
        self.member.write(data);
    }

    fn entity_id(&self) -> &EntityId {
        &self.campaign_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        self.member.customer_id()
    }
}

/// A campaign member responded (opened, clicked, unsubscribed, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignMemberResponded {
    pub campaign_id: EntityId,
    pub member: CampaignMember,
    pub response: CampaignResponse,
}

impl EventData for CampaignMemberResponded {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("campaign_id"),
        FieldInfo::optional("customer_id"),
        FieldInfo::optional("lead_id"),
        FieldInfo::required("response"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CampaignMemberResponded {
            campaign_id: fields.required("campaign_id")?,
            member: CampaignMember::read(fields)?,
            response: fields.required("response")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("campaign_id", &self.campaign_id);
        self.member.write(data);
        data.string("response", self.response.as_str());
    }

    fn entity_id(&self) -> &EntityId {
        &self.campaign_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        self.member.customer_id()
    }
}

/// Money spent on the campaign (media, printing, an event's venue): one record per spend,
/// added up per currency by the campaign read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignCostRecorded {
    pub campaign_id: EntityId,
    /// Stored as `amount` (decimal string) and `currency`; positive.
    pub amount: Money,
}

impl EventData for CampaignCostRecorded {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("campaign_id"),
        FieldInfo::required("amount"),
        FieldInfo::required("currency"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CampaignCostRecorded {
            campaign_id: fields.required("campaign_id")?,
            amount: fields.money("amount", "currency")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("campaign_id", &self.campaign_id);
        data.money("amount", "currency", &self.amount);
    }

    fn entity_id(&self) -> &EntityId {
        &self.campaign_id
    }

    fn validate(&self) -> Result<(), Problem> {
        self.amount
            .ensure_positive()
            .map(drop)
            .map_err(|e| Problem::field("amount", e))
    }
}
