//! Opportunity events: the `opportunity-<opportunity_id>` stream of a deal in the pipeline.

use chrono::NaiveDate;

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem, at_least_one};
use crate::catalog::values::{ForecastCategory, Stage};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::money::Money;

/// Highest probability, in percent.
const MAX_PROBABILITY: u8 = 100;

fn check_probability(probability: Option<u8>) -> Result<(), Problem> {
    match probability {
        Some(p) if p > MAX_PROBABILITY => Err(Problem::field(
            "probability",
            format!("must be between 0 and {MAX_PROBABILITY}, got {p}"),
        )),
        _ => Ok(()),
    }
}

fn check_amount(amount: Option<&Money>) -> Result<(), Problem> {
    match amount {
        Some(amount) => amount
            .ensure_not_negative()
            .map(drop)
            .map_err(|e| Problem::field("amount", e)),
        None => Ok(()),
    }
}

/// A deal entered the pipeline. The amount may be zero but not negative; `probability` and
/// `forecast_category` override the stage's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityOpened {
    pub opportunity_id: EntityId,
    pub customer_id: EntityId,
    /// Personal data: deal names are free text and often name the contact.
    pub name: String,
    /// Stored as `amount` (decimal string) and `currency`.
    pub amount: Money,
    pub stage: Stage,
    pub close_date: NaiveDate,
    pub owner: Option<EntityId>,
    pub probability: Option<u8>,
    pub forecast_category: Option<ForecastCategory>,
}

impl EventData for OpportunityOpened {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("opportunity_id"),
        FieldInfo::required("customer_id"),
        FieldInfo::required("name").personal(),
        FieldInfo::required("amount"),
        FieldInfo::required("currency"),
        FieldInfo::required("stage"),
        FieldInfo::required("close_date"),
        FieldInfo::optional("owner"),
        FieldInfo::optional("probability"),
        FieldInfo::optional("forecast_category"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["name"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OpportunityOpened {
            opportunity_id: fields.required("opportunity_id")?,
            customer_id: fields.required("customer_id")?,
            name: fields.text("name")?,
            amount: fields.money("amount", "currency")?,
            stage: fields.required("stage")?,
            close_date: fields.date("close_date")?,
            owner: fields.optional("owner")?,
            probability: fields.optional("probability")?,
            forecast_category: fields.optional("forecast_category")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("opportunity_id", &self.opportunity_id);
        data.id("customer_id", &self.customer_id);
        data.string("name", &self.name);
        data.money("amount", "currency", &self.amount);
        data.string("stage", self.stage.as_str());
        data.date("close_date", self.close_date);
        data.optional_id("owner", self.owner.as_ref());
        data.optional_number("probability", self.probability);
        data.optional_string(
            "forecast_category",
            self.forecast_category.map(ForecastCategory::as_str),
        );
    }

    fn entity_id(&self) -> &EntityId {
        &self.opportunity_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }

    fn validate(&self) -> Result<(), Problem> {
        check_amount(Some(&self.amount))?;
        check_probability(self.probability)
    }
}

/// The deal moved to another open stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityStageChanged {
    pub opportunity_id: EntityId,
    pub stage: Stage,
    pub probability: Option<u8>,
    pub forecast_category: Option<ForecastCategory>,
}

impl EventData for OpportunityStageChanged {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("opportunity_id"),
        FieldInfo::required("stage"),
        FieldInfo::optional("probability"),
        FieldInfo::optional("forecast_category"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OpportunityStageChanged {
            opportunity_id: fields.required("opportunity_id")?,
            stage: fields.required("stage")?,
            probability: fields.optional("probability")?,
            forecast_category: fields.optional("forecast_category")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("opportunity_id", &self.opportunity_id);
        data.string("stage", self.stage.as_str());
        data.optional_number("probability", self.probability);
        data.optional_string(
            "forecast_category",
            self.forecast_category.map(ForecastCategory::as_str),
        );
    }

    fn entity_id(&self) -> &EntityId {
        &self.opportunity_id
    }

    fn validate(&self) -> Result<(), Problem> {
        check_probability(self.probability)
    }
}

/// Some deal fields changed; absent fields keep their value. `amount` and `currency` always
/// come together, so an update may restate the amount in another currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityUpdated {
    pub opportunity_id: EntityId,
    pub name: Option<String>,
    /// Stored as `amount` (decimal string) and `currency`.
    pub amount: Option<Money>,
    pub close_date: Option<NaiveDate>,
    pub owner: Option<EntityId>,
    pub probability: Option<u8>,
    pub forecast_category: Option<ForecastCategory>,
}

impl EventData for OpportunityUpdated {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("opportunity_id"),
        FieldInfo::optional("name").personal(),
        FieldInfo::optional("amount"),
        FieldInfo::optional("currency"),
        FieldInfo::optional("close_date"),
        FieldInfo::optional("owner"),
        FieldInfo::optional("probability"),
        FieldInfo::optional("forecast_category"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["name"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OpportunityUpdated {
            opportunity_id: fields.required("opportunity_id")?,
            name: fields.optional_text("name")?,
            amount: fields.optional_money("amount", "currency")?,
            close_date: fields.optional_date("close_date")?,
            owner: fields.optional("owner")?,
            probability: fields.optional("probability")?,
            forecast_category: fields.optional("forecast_category")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("opportunity_id", &self.opportunity_id);
        data.optional_string("name", self.name.as_deref());
        data.optional_money("amount", "currency", self.amount.as_ref());
        data.optional_date("close_date", self.close_date);
        data.optional_id("owner", self.owner.as_ref());
        data.optional_number("probability", self.probability);
        data.optional_string(
            "forecast_category",
            self.forecast_category.map(ForecastCategory::as_str),
        );
    }

    fn entity_id(&self) -> &EntityId {
        &self.opportunity_id
    }

    fn validate(&self) -> Result<(), Problem> {
        at_least_one(
            &[
                "name",
                "amount",
                "close_date",
                "owner",
                "probability",
                "forecast_category",
            ],
            &[
                self.name.is_some(),
                self.amount.is_some(),
                self.close_date.is_some(),
                self.owner.is_some(),
                self.probability.is_some(),
                self.forecast_category.is_some(),
            ],
        )?;
        check_amount(self.amount.as_ref())?;
        check_probability(self.probability)
    }
}

/// The deal was won (stage "Closed Won").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityWon {
    pub opportunity_id: EntityId,
}

impl EventData for OpportunityWon {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("opportunity_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OpportunityWon {
            opportunity_id: fields.required("opportunity_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("opportunity_id", &self.opportunity_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.opportunity_id
    }
}

/// The deal was lost (stage "Closed Lost"), perhaps with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityLost {
    pub opportunity_id: EntityId,
    pub reason: Option<String>,
}

impl EventData for OpportunityLost {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("opportunity_id"),
        FieldInfo::optional("reason").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["reason"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OpportunityLost {
            opportunity_id: fields.required("opportunity_id")?,
            reason: fields.optional_text("reason")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("opportunity_id", &self.opportunity_id);
        data.optional_string("reason", self.reason.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.opportunity_id
    }
}
