//! Case events: the `case-<case_id>` stream of a service request, from opening to closing.

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem};
use crate::catalog::values::{InteractionChannel, Priority};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;

/// A customer asked for help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOpened {
    pub case_id: EntityId,
    pub customer_id: EntityId,
    pub subject: String,
    pub channel: InteractionChannel,
    pub priority: Priority,
    pub description: Option<String>,
}

impl EventData for CaseOpened {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::required("customer_id"),
        FieldInfo::required("subject").personal(),
        FieldInfo::required("channel"),
        FieldInfo::required("priority"),
        FieldInfo::optional("description").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["subject", "description"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseOpened {
            case_id: fields.required("case_id")?,
            customer_id: fields.required("customer_id")?,
            subject: fields.text("subject")?,
            channel: fields.required("channel")?,
            priority: fields.required("priority")?,
            description: fields.optional_text("description")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.id("customer_id", &self.customer_id);
        data.string("subject", &self.subject);
        data.string("channel", self.channel.as_str());
        data.string("priority", self.priority.as_str());
        data.optional_string("description", self.description.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// The case was given to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseAssigned {
    pub case_id: EntityId,
    pub agent: EntityId,
}

impl EventData for CaseAssigned {
    const FIELDS: &'static [FieldInfo] =
        &[FieldInfo::required("case_id"), FieldInfo::required("agent")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseAssigned {
            case_id: fields.required("case_id")?,
            agent: fields.required("agent")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.id("agent", &self.agent);
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// An agent answered the customer (the first one stops the first-response SLA clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResponded {
    pub case_id: EntityId,
    pub agent: EntityId,
}

impl EventData for CaseResponded {
    const FIELDS: &'static [FieldInfo] =
        &[FieldInfo::required("case_id"), FieldInfo::required("agent")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseResponded {
            case_id: fields.required("case_id")?,
            agent: fields.required("agent")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.id("agent", &self.agent);
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// The case was escalated, perhaps to a new (never lower) priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEscalated {
    pub case_id: EntityId,
    pub reason: Option<String>,
    pub priority: Option<Priority>,
}

impl EventData for CaseEscalated {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::optional("reason").personal(),
        FieldInfo::optional("priority"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["reason"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseEscalated {
            case_id: fields.required("case_id")?,
            reason: fields.optional_text("reason")?,
            priority: fields.optional("priority")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.optional_string("reason", self.reason.as_deref());
        data.optional_string("priority", self.priority.map(Priority::as_str));
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// The problem was solved (stops the resolution SLA clock); the case can still be reopened.
/// A complaint may name its root cause, one of the tenant's causes (version 2; a version 1
/// resolution has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResolved {
    pub case_id: EntityId,
    pub resolution: Option<String>,
    pub root_cause: Option<EntityId>,
}

impl EventData for CaseResolved {
    const VERSION: u32 = 2;
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::optional("resolution").personal(),
        FieldInfo::optional("root_cause"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["resolution"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseResolved {
            case_id: fields.required("case_id")?,
            resolution: fields.optional_text("resolution")?,
            root_cause: fields.optional("root_cause")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.optional_string("resolution", self.resolution.as_deref());
        data.optional_id("root_cause", self.root_cause.as_ref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// A resolved or closed case needs work again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReopened {
    pub case_id: EntityId,
    pub reason: Option<String>,
}

impl EventData for CaseReopened {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::optional("reason").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["reason"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseReopened {
            case_id: fields.required("case_id")?,
            reason: fields.optional_text("reason")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.optional_string("reason", self.reason.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// The case is done; only reopening it is allowed afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseClosed {
    pub case_id: EntityId,
}

impl EventData for CaseClosed {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("case_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseClosed {
            case_id: fields.required("case_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// The case is a complaint, in one of the tenant's complaint categories (set by
/// `ComplaintCategoriesSet`). Marking it again with another category recategorises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseMarkedComplaint {
    pub case_id: EntityId,
    pub category: EntityId,
}

impl EventData for CaseMarkedComplaint {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::required("category"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseMarkedComplaint {
            case_id: fields.required("case_id")?,
            category: fields.required("category")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.id("category", &self.category);
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// Lowest and highest CSAT score.
pub const CSAT_SCORES: std::ops::RangeInclusive<u8> = 1..=5;

/// The customer rated the service of the case (customer satisfaction, 1 to 5), once per case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsatRecorded {
    pub case_id: EntityId,
    pub score: u8,
    pub comment: Option<String>,
}

impl EventData for CsatRecorded {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::required("score"),
        FieldInfo::optional("comment").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["comment"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CsatRecorded {
            case_id: fields.required("case_id")?,
            score: fields.required("score")?,
            comment: fields.optional_text("comment")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.optional_number("score", Some(self.score));
        data.optional_string("comment", self.comment.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }

    fn validate(&self) -> Result<(), Problem> {
        if !CSAT_SCORES.contains(&self.score) {
            return Err(Problem::field(
                "score",
                format!("{} is not a CSAT score: 1 to 5", self.score),
            ));
        }
        Ok(())
    }
}

/// The case waits on the customer: its SLA clocks stop until it is resumed (or resolved,
/// closed, which end the pause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasePaused {
    pub case_id: EntityId,
    /// Why, e.g. `waiting for the customer's logs`.
    pub reason: Option<String>,
}

impl EventData for CasePaused {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("case_id"),
        FieldInfo::optional("reason").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["reason"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CasePaused {
            case_id: fields.required("case_id")?,
            reason: fields.optional_text("reason")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
        data.optional_string("reason", self.reason.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}

/// The customer answered: the paused SLA clocks run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResumed {
    pub case_id: EntityId,
}

impl EventData for CaseResumed {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("case_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CaseResumed {
            case_id: fields.required("case_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("case_id", &self.case_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.case_id
    }
}
