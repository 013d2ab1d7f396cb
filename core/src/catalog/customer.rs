//! Customer events: the `customer-<customer_id>` stream (profile, consent, interactions,
//! orders, merge and erasure).

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem, at_least_one};
use crate::catalog::values::{
    ConsentChannel, ConsentPurpose, CustomerKind, Direction, InteractionChannel,
};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::money::Money;
use crate::money::currency::Currency;

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
///
/// Schema version 2 added the optional `purpose`: an outbound interaction for `marketing` on a
/// channel a consent governs is a marketing contact, recorded whatever the consent and flagged
/// by the read models when the consent was missing. A version 1 event has no purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionLogged {
    pub customer_id: EntityId,
    /// The emitter's id of the interaction; logged once per customer.
    pub interaction_id: EntityId,
    pub channel: InteractionChannel,
    pub direction: Direction,
    pub subject: Option<String>,
    pub summary: Option<String>,
    /// What the contact was for, in the consent vocabulary.
    pub purpose: Option<ConsentPurpose>,
}

impl InteractionLogged {
    /// The consent channel this interaction needed marketing consent for: set for an
    /// outbound `marketing` interaction on a channel a consent governs.
    pub fn marketing_channel(&self) -> Option<ConsentChannel> {
        if self.direction != Direction::Outbound || self.purpose != Some(ConsentPurpose::Marketing)
        {
            return None;
        }
        ConsentChannel::of_interaction(self.channel)
    }
}

impl EventData for InteractionLogged {
    const VERSION: u32 = 2;
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("interaction_id"),
        FieldInfo::required("channel"),
        FieldInfo::required("direction"),
        FieldInfo::optional("subject").personal(),
        FieldInfo::optional("summary").personal(),
        FieldInfo::optional("purpose"),
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
            purpose: fields.optional("purpose")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("interaction_id", &self.interaction_id);
        data.string("channel", self.channel.as_str());
        data.string("direction", self.direction.as_str());
        data.optional_string("subject", self.subject.as_deref());
        data.optional_string("summary", self.summary.as_deref());
        if let Some(purpose) = self.purpose {
            data.string("purpose", purpose.as_str());
        }
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
///
/// Schema version 2 added the optional `lines` and `discount`; a version 1 event is the same
/// order without lines ([`crate::catalog::upcast`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    pub customer_id: EntityId,
    pub order_id: EntityId,
    /// Stored as `amount` (decimal string) and `currency`.
    pub amount: Money,
    /// What was bought; empty for an order sent without lines. When given, the lines less
    /// the discount add up to `amount` exactly.
    pub lines: Vec<OrderLine>,
    /// Taken off the lines' total, in the order's currency; only with lines.
    pub discount: Option<Money>,
}

/// One line of an order: a quantity of one product at a unit price in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: EntityId,
    /// The product's name as sold (a business label, not personal data).
    pub name: String,
    /// Whole units, 1 to [`MAX_LINE_QUANTITY`].
    pub quantity: u64,
    /// Zero or more, in the order's currency.
    pub unit_price: Money,
}

impl OrderLine {
    /// Quantity × unit price, in minor units (exact: 128 bits).
    pub fn total_minor(&self) -> i128 {
        i128::from(self.quantity) * i128::from(self.unit_price.minor_units)
    }
}

/// Most lines one order may carry.
pub const MAX_ORDER_LINES: usize = 1_000;

/// Largest quantity of one line.
pub const MAX_LINE_QUANTITY: u64 = 1_000_000_000;

const LINE_FIELDS: &[FieldInfo] = &[
    FieldInfo::required("product_id"),
    FieldInfo::required("name"),
    FieldInfo::required("quantity"),
    FieldInfo::required("unit_price"),
    FieldInfo::optional("currency"),
];

fn read_lines(
    fields: &FieldReader<'_>,
    currency: Currency,
) -> Result<Vec<OrderLine>, CatalogError> {
    let Some(items) = fields.optional_array("lines")? else {
        return Ok(Vec::new());
    };
    if items.is_empty() {
        return Err(fields.error(
            "lines",
            "must hold at least one line; leave `lines` out for an order without them",
        ));
    }
    if items.len() > MAX_ORDER_LINES {
        return Err(fields.error(
            "lines",
            format!(
                "holds {} lines, at most {MAX_ORDER_LINES} are allowed",
                items.len()
            ),
        ));
    }
    let mut lines = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let line = fields.element("lines", index, LINE_FIELDS, item)?;
        if let Some(code) = line.optional::<String>("currency")? {
            let given = Currency::parse(&code).map_err(|e| line.error("currency", e))?;
            if given != currency {
                return Err(line.error(
                    "currency",
                    format!("is {given} but the order is in {currency}; a line is in the order's currency"),
                ));
            }
        }
        let quantity: u64 = line
            .optional::<u64>("quantity")
            .map_err(|_| line.error("quantity", "must be a whole number greater than 0"))?
            .unwrap_or(0);
        if quantity == 0 || quantity > MAX_LINE_QUANTITY {
            return Err(line.error(
                "quantity",
                format!("must be a whole number from 1 to {MAX_LINE_QUANTITY}"),
            ));
        }
        let unit_price = line.money_in("unit_price", currency)?;
        lines.push(OrderLine {
            product_id: line.required("product_id")?,
            name: line.text("name")?,
            quantity,
            unit_price,
        });
    }
    Ok(lines)
}

impl EventData for OrderPlaced {
    const VERSION: u32 = 2;
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("order_id"),
        FieldInfo::required("amount"),
        FieldInfo::required("currency"),
        FieldInfo::optional("lines"),
        FieldInfo::optional("discount"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        let amount = fields.money("amount", "currency")?;
        let discount = match fields.optional::<serde_json::Value>("discount")? {
            None => None,
            Some(_) => Some(fields.money_in("discount", amount.currency)?),
        };
        Ok(OrderPlaced {
            customer_id: fields.required("customer_id")?,
            order_id: fields.required("order_id")?,
            lines: read_lines(fields, amount.currency)?,
            amount,
            discount,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("order_id", &self.order_id);
        data.money("amount", "currency", &self.amount);
        if !self.lines.is_empty() {
            let lines = self
                .lines
                .iter()
                .map(|line| {
                    serde_json::json!({
                        "product_id": line.product_id.as_str(),
                        "name": line.name,
                        "quantity": line.quantity,
                        "unit_price": line.unit_price.to_decimal_string(),
                    })
                })
                .collect();
            data.value("lines", serde_json::Value::Array(lines));
        }
        if let Some(discount) = &self.discount {
            data.string("discount", &discount.to_decimal_string());
        }
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
            .map_err(|e| Problem::field("amount", e))?;
        let currency = self.amount.currency;
        if let Some(discount) = self.discount {
            if self.lines.is_empty() {
                return Err(Problem::field(
                    "discount",
                    "is only given with lines (it is taken off their total)",
                ));
            }
            if discount.currency != currency {
                return Err(Problem::field(
                    "discount",
                    format!("is in {} but the order is in {currency}", discount.currency),
                ));
            }
            discount
                .ensure_not_negative()
                .map_err(|e| Problem::field("discount", e))?;
        }
        if self.lines.len() > MAX_ORDER_LINES {
            return Err(Problem::field(
                "lines",
                format!("at most {MAX_ORDER_LINES} lines are allowed"),
            ));
        }
        let mut total: i128 = 0;
        for (index, line) in self.lines.iter().enumerate() {
            if line.unit_price.currency != currency {
                return Err(Problem::field(
                    &format!("lines[{index}].unit_price"),
                    format!(
                        "is in {} but the order is in {currency}",
                        line.unit_price.currency
                    ),
                ));
            }
            line.unit_price
                .ensure_not_negative()
                .map_err(|e| Problem::field(&format!("lines[{index}].unit_price"), e))?;
            if line.quantity == 0 || line.quantity > MAX_LINE_QUANTITY {
                return Err(Problem::field(
                    &format!("lines[{index}].quantity"),
                    format!("must be a whole number from 1 to {MAX_LINE_QUANTITY}"),
                ));
            }
            total += line.total_minor();
        }
        if !self.lines.is_empty() {
            let discount = self.discount.map_or(0, |d| i128::from(d.minor_units));
            let expected = total - discount;
            if expected != i128::from(self.amount.minor_units) {
                let shown = |minor: i128| match i64::try_from(minor) {
                    Ok(minor) => Money::new(minor, currency).to_decimal_string(),
                    Err(_) => format!("{minor} minor units"),
                };
                let less = match self.discount {
                    Some(d) => format!(
                        " less the discount {} = {}",
                        d.to_decimal_string(),
                        shown(expected)
                    ),
                    None => String::new(),
                };
                return Err(Problem::field(
                    "amount",
                    format!(
                        "is {} but the lines add up to {}{less}; send a discount for the difference",
                        self.amount.to_decimal_string(),
                        shown(total),
                    ),
                ));
            }
        }
        Ok(())
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

/// Lowest and highest NPS score.
pub const NPS_SCORES: std::ops::RangeInclusive<u8> = 0..=10;

/// The customer answered the net promoter question (how likely to recommend us, 0 to 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpsAnswered {
    pub customer_id: EntityId,
    /// The emitter's id of the survey answer; recorded once per customer.
    pub answer_id: EntityId,
    pub score: u8,
    pub comment: Option<String>,
}

impl EventData for NpsAnswered {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("customer_id"),
        FieldInfo::required("answer_id"),
        FieldInfo::required("score"),
        FieldInfo::optional("comment").personal(),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &["comment"];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(NpsAnswered {
            customer_id: fields.required("customer_id")?,
            answer_id: fields.required("answer_id")?,
            score: fields.required("score")?,
            comment: fields.optional_text("comment")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("customer_id", &self.customer_id);
        data.id("answer_id", &self.answer_id);
        data.optional_number("score", Some(self.score));
        data.optional_string("comment", self.comment.as_deref());
    }

    fn entity_id(&self) -> &EntityId {
        &self.customer_id
    }

    fn customer_id(&self) -> Option<&EntityId> {
        Some(&self.customer_id)
    }

    fn validate(&self) -> Result<(), Problem> {
        if !NPS_SCORES.contains(&self.score) {
            return Err(Problem::field(
                "score",
                format!("{} is not an NPS score: 0 to 10", self.score),
            ));
        }
        Ok(())
    }
}
