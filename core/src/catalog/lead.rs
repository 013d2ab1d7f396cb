//! Lead events: the `lead-<lead_id>` stream, from capture to qualification and conversion.

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem, at_least_one};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;

/// A prospect entered the funnel. At least one of name, email, phone or company is given,
/// otherwise nobody could follow the lead up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadCaptured {
    pub lead_id: EntityId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Personal data: for sole traders the company name names the person.
    pub company: Option<String>,
    /// Where the lead came from, a label such as `web_form` or `referral`.
    pub source: String,
    pub campaign_id: Option<EntityId>,
    /// The salesperson who follows the lead up (an id, not personal data).
    pub owner: Option<EntityId>,
}

impl EventData for LeadCaptured {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("lead_id"),
        FieldInfo::optional("name").personal(),
        FieldInfo::optional("email").personal(),
        FieldInfo::optional("phone").personal(),
        FieldInfo::optional("company").personal(),
        FieldInfo::required("source"),
        FieldInfo::optional("campaign_id"),
        FieldInfo::optional("owner"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["name", "email", "phone", "company"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(LeadCaptured {
            lead_id: fields.required("lead_id")?,
            name: fields.optional_text("name")?,
            email: fields.optional_text("email")?,
            phone: fields.optional_text("phone")?,
            company: fields.optional_text("company")?,
            source: fields.text("source")?,
            campaign_id: fields.optional("campaign_id")?,
            owner: fields.optional("owner")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("lead_id", &self.lead_id);
        data.optional_string("name", self.name.as_deref());
        data.optional_string("email", self.email.as_deref());
        data.optional_string("phone", self.phone.as_deref());
        data.optional_string("company", self.company.as_deref());
        data.string("source", &self.source);
        data.optional_id("campaign_id", self.campaign_id.as_ref());
        data.optional_id("owner", self.owner.as_ref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.lead_id
    }

    fn validate(&self) -> Result<(), Problem> {
        at_least_one(
            &["name", "email", "phone", "company"],
            &[
                self.name.is_some(),
                self.email.is_some(),
                self.phone.is_some(),
                self.company.is_some(),
            ],
        )
    }
}

/// The lead is worth pursuing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadQualified {
    pub lead_id: EntityId,
}

impl EventData for LeadQualified {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("lead_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(LeadQualified {
            lead_id: fields.required("lead_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("lead_id", &self.lead_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.lead_id
    }
}

/// The lead is not worth pursuing, for a stated reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadDisqualified {
    pub lead_id: EntityId,
    pub reason: String,
}

impl EventData for LeadDisqualified {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("lead_id"),
        FieldInfo::required("reason").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["reason"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(LeadDisqualified {
            lead_id: fields.required("lead_id")?,
            reason: fields.text("reason")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("lead_id", &self.lead_id);
        data.string("reason", &self.reason);
    }

    fn entity_id(&self) -> &EntityId {
        &self.lead_id
    }
}

/// The lead became a customer, and possibly an opportunity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadConverted {
    pub lead_id: EntityId,
    pub customer_id: EntityId,
    pub opportunity_id: Option<EntityId>,
}

impl EventData for LeadConverted {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("lead_id"),
        FieldInfo::required("customer_id"),
        FieldInfo::optional("opportunity_id"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(LeadConverted {
            lead_id: fields.required("lead_id")?,
            customer_id: fields.required("customer_id")?,
            opportunity_id: fields.optional("opportunity_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("lead_id", &self.lead_id);
        data.id("customer_id", &self.customer_id);
        data.optional_id("opportunity_id", self.opportunity_id.as_ref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.lead_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// The lead's personal data was erased (its key destroyed). Only a lead never converted is
/// erased on its own; a converted lead is erased with its customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadErased {
    pub lead_id: EntityId,
}

impl EventData for LeadErased {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("lead_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(LeadErased {
            lead_id: fields.required("lead_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("lead_id", &self.lead_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.lead_id
    }
}
