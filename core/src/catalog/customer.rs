//! Customer events: the `customer-<customer_id>` stream (profile, consent, interactions,
//! orders, merge and erasure).

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem, at_least_one};
use crate::catalog::values::{
    ConsentChannel, ConsentPurpose, CustomerKind, Direction, InteractionChannel,
};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::money::Money;

/// A customer was registered with a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRegistered {
    pub customer_id: EntityId,
    pub kind: CustomerKind,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub segment: Option<String>,
    /// The user who owns the account.
    pub owner: Option<EntityId>,
}

impl EventData for CustomerRegistered {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("kind"),
        FieldInfo::required("name").personal(),
        FieldInfo::optional("email").personal(),
        FieldInfo::optional("phone").personal(),
        FieldInfo::optional("segment"),
        FieldInfo::optional("owner"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["name", "email", "phone"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CustomerRegistered {
            customer_id: fields.required("customer_id")?,
            kind: fields.required("kind")?,
            name: fields.text("name")?,
            email: fields.optional_text("email")?,
            phone: fields.optional_text("phone")?,
            segment: fields.optional_text("segment")?,
            owner: fields.optional("owner")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.string("kind", self.kind.as_str());
        data.string("name", &self.name);
        data.optional_string("email", self.email.as_deref());
        data.optional_string("phone", self.phone.as_deref());
        data.optional_string("segment", self.segment.as_deref());
        data.optional_id("owner", self.owner.as_ref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// Some profile fields changed; absent fields keep their value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfileUpdated {
    pub customer_id: EntityId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<EntityId>,
}

impl EventData for CustomerProfileUpdated {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::optional("name").personal(),
        FieldInfo::optional("email").personal(),
        FieldInfo::optional("phone").personal(),
        FieldInfo::optional("segment"),
        FieldInfo::optional("owner"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["name", "email", "phone"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CustomerProfileUpdated {
            customer_id: fields.required("customer_id")?,
            name: fields.optional_text("name")?,
            email: fields.optional_text("email")?,
            phone: fields.optional_text("phone")?,
            segment: fields.optional_text("segment")?,
            owner: fields.optional("owner")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.optional_string("name", self.name.as_deref());
        data.optional_string("email", self.email.as_deref());
        data.optional_string("phone", self.phone.as_deref());
        data.optional_string("segment", self.segment.as_deref());
        data.optional_id("owner", self.owner.as_ref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }

    fn validate(&self) -> Result<(), Problem> {
        at_least_one(
            &["name", "email", "phone", "segment", "owner"],
            &[
                self.name.is_some(),
                self.email.is_some(),
                self.phone.is_some(),
                self.segment.is_some(),
                self.owner.is_some(),
            ],
        )
    }
}

/// The customer granted or withdrew consent for one channel and purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerConsentChanged {
    pub customer_id: EntityId,
    pub channel: ConsentChannel,
    pub purpose: ConsentPurpose,
    pub granted: bool,
}

impl EventData for CustomerConsentChanged {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("channel"),
        FieldInfo::required("purpose"),
        FieldInfo::required("granted"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CustomerConsentChanged {
            customer_id: fields.required("customer_id")?,
            channel: fields.required("channel")?,
            purpose: fields.required("purpose")?,
            granted: fields.required("granted")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.string("channel", self.channel.as_str());
        data.string("purpose", self.purpose.as_str());
        data.bool("granted", self.granted);
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// A call, mail, chat, visit or other contact with the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionLogged {
    pub customer_id: EntityId,
    /// The emitter's id of the interaction; logged once per customer.
    pub interaction_id: EntityId,
    pub channel: InteractionChannel,
    pub direction: Direction,
    pub subject: Option<String>,
    pub summary: Option<String>,
}

impl EventData for InteractionLogged {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("interaction_id"),
        FieldInfo::required("channel"),
        FieldInfo::required("direction"),
        FieldInfo::optional("subject").personal(),
        FieldInfo::optional("summary").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["subject", "summary"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(InteractionLogged {
            customer_id: fields.required("customer_id")?,
            interaction_id: fields.required("interaction_id")?,
            channel: fields.required("channel")?,
            direction: fields.required("direction")?,
            subject: fields.optional_text("subject")?,
            summary: fields.optional_text("summary")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("interaction_id", &self.interaction_id);
        data.string("channel", self.channel.as_str());
        data.string("direction", self.direction.as_str());
        data.optional_string("subject", self.subject.as_deref());
        data.optional_string("summary", self.summary.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// The customer placed an order; the amount is zero or more (a free sample, a full discount
/// or a replacement is a real order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    pub customer_id: EntityId,
    pub order_id: EntityId,
    /// Stored as `amount` (decimal string) and `currency`.
    pub amount: Money,
}

impl EventData for OrderPlaced {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("order_id"),
        FieldInfo::required("amount"),
        FieldInfo::required("currency"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OrderPlaced {
            customer_id: fields.required("customer_id")?,
            order_id: fields.required("order_id")?,
            amount: fields.money("amount", "currency")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("order_id", &self.order_id);
        data.money("amount", "currency", &self.amount);
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }

    fn validate(&self) -> Result<(), Problem> {
        self.amount
            .ensure_not_negative()
            .map(drop)
            .map_err(|e| Problem::field("amount", e))
    }
}

/// Part or all of an order was refunded; the amount is positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRefunded {
    pub customer_id: EntityId,
    pub order_id: EntityId,
    /// Stored as `amount` (decimal string) and `currency`.
    pub amount: Money,
    pub reason: Option<String>,
}

impl EventData for OrderRefunded {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("order_id"),
        FieldInfo::required("amount"),
        FieldInfo::required("currency"),
        FieldInfo::optional("reason").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["reason"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(OrderRefunded {
            customer_id: fields.required("customer_id")?,
            order_id: fields.required("order_id")?,
            amount: fields.money("amount", "currency")?,
            reason: fields.optional_text("reason")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("order_id", &self.order_id);
        data.money("amount", "currency", &self.amount);
        data.optional_string("reason", self.reason.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }

    fn validate(&self) -> Result<(), Problem> {
        self.amount
            .ensure_positive()
            .map(drop)
            .map_err(|e| Problem::field("amount", e))
    }
}

/// This customer (`customer_id`) was a duplicate and was merged into `into_customer_id`.
/// The event lives on the merged-away customer's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMerged {
    pub customer_id: EntityId,
    pub into_customer_id: EntityId,
}

impl EventData for CustomerMerged {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("into_customer_id"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CustomerMerged {
            customer_id: fields.required("customer_id")?,
            into_customer_id: fields.required("into_customer_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("into_customer_id", &self.into_customer_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// The customer's personal data was erased (its key destroyed); money facts remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerErased {
    pub customer_id: EntityId,
}

impl EventData for CustomerErased {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("customer_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(CustomerErased {
            customer_id: fields.required("customer_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}

/// A person customer became a contact of an account (a company customer) with a role; a
/// link to another account ends the person's current link (a move). Recorded on the
/// person's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactLinked {
    /// The person.
    pub customer_id: EntityId,
    /// The company customer the person is a contact of.
    pub account_id: EntityId,
    /// A business label such as `buyer`, `decision_maker` or `billing`, not personal data.
    pub role: String,
}

impl EventData for ContactLinked {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("account_id"),
        FieldInfo::required("role"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(ContactLinked {
            customer_id: fields.required("customer_id")?,
            account_id: fields.required("account_id")?,
            role: fields.text("role")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("account_id", &self.account_id);
        data.string("role", &self.role);
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }

    fn validate(&self) -> Result<(), Problem> {
        if self.account_id == self.customer_id {
            return Err(Problem::field(
                "account_id",
                "a customer cannot be a contact of itself",
            ));
        }
        Ok(())
    }
}

/// A person customer stopped being a contact of the account. Recorded on the person's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUnlinked {
    /// The person.
    pub customer_id: EntityId,
    pub account_id: EntityId,
}

impl EventData for ContactUnlinked {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("account_id"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(ContactUnlinked {
            customer_id: fields.required("customer_id")?,
            account_id: fields.required("account_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("account_id", &self.account_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }
}
