//! Tenant settings as facts: the `settings-<name>` streams. A setting in force at a position
//! is the last one recorded before it, so every judgement made at that position can be
//! explained from the log, even after the setting changes.
//!
//! `settings-consent` holds the consent regime ([`ConsentRegimeSet`]); a tenant that never
//! set one is under `opt_in`. `settings-complaints` holds the tenant's complaint categories
//! and root causes ([`ComplaintCategoriesSet`]); a tenant that never set them can mark no
//! complaint and give no root cause.

use std::sync::LazyLock;

use serde_json::Value;

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem};
use crate::catalog::values::ConsentRegime;
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;

/// The entity id of the consent settings: the stream is `settings-consent`.
pub const CONSENT_SETTINGS: &str = "consent";

static CONSENT_ID: LazyLock<EntityId> = LazyLock::new(|| EntityId::from_trusted(CONSENT_SETTINGS));

/// The tenant's consent regime from now on: how a consent never given is read when a
/// customer is added to a campaign or contacted for marketing. Appended by an admin
/// (`PUT /v1/settings/consent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRegimeSet {
    pub regime: ConsentRegime,
}

impl EventData for ConsentRegimeSet {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("regime")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(ConsentRegimeSet {
            regime: fields.required("regime")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.string("regime", self.regime.as_str());
    }

    fn entity_id(&self) -> &EntityId {
        &CONSENT_ID
    }
}

/// The entity id of the complaint settings: the stream is `settings-complaints`.
pub const COMPLAINT_SETTINGS: &str = "complaints";

/// Most labels in one list of [`ComplaintCategoriesSet`].
pub const MAX_COMPLAINT_LABELS: usize = 200;

static COMPLAINTS_ID: LazyLock<EntityId> =
    LazyLock::new(|| EntityId::from_trusted(COMPLAINT_SETTINGS));

/// The tenant's complaint categories and root causes from now on: the labels a
/// `CaseMarkedComplaint` and a `CaseResolved`'s `root_cause` may name. Each list is
/// non-empty, its labels distinct, each label written like an id (`billing`,
/// `carrier_delay`). Appended by an admin; it replaces both lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintCategoriesSet {
    pub categories: Vec<EntityId>,
    pub causes: Vec<EntityId>,
}

impl ComplaintCategoriesSet {
    /// Whether `category` is one of the categories.
    pub fn has_category(&self, category: &EntityId) -> bool {
        self.categories.contains(category)
    }

    /// Whether `cause` is one of the root causes.
    pub fn has_cause(&self, cause: &EntityId) -> bool {
        self.causes.contains(cause)
    }
}

fn labels(fields: &FieldReader<'_>, field: &str) -> Result<Vec<EntityId>, CatalogError> {
    let items = fields
        .optional_array(field)?
        .ok_or_else(|| fields.error(field, "missing required field"))?;
    if items.is_empty() {
        return Err(fields.error(field, "must hold at least one label"));
    }
    if items.len() > MAX_COMPLAINT_LABELS {
        return Err(fields.error(
            field,
            format!(
                "holds {} labels, at most {MAX_COMPLAINT_LABELS} are allowed",
                items.len()
            ),
        ));
    }
    let mut out: Vec<EntityId> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("{field}[{index}]");
        let Value::String(text) = item else {
            return Err(fields.error(&path, "must be a label (a string)"));
        };
        let label = EntityId::parse(text).map_err(|e| fields.error(&path, e))?;
        if out.contains(&label) {
            return Err(fields.error(&path, format!("`{label}` is listed twice")));
        }
        out.push(label);
    }
    Ok(out)
}

fn label_values(labels: &[EntityId]) -> Value {
    Value::Array(
        labels
            .iter()
            .map(|l| Value::String(l.as_str().to_owned()))
            .collect(),
    )
}

fn check_labels(field: &str, labels: &[EntityId]) -> Result<(), Problem> {
    if labels.is_empty() {
        return Err(Problem::field(field, "must hold at least one label"));
    }
    if labels.len() > MAX_COMPLAINT_LABELS {
        return Err(Problem::field(
            field,
            format!("at most {MAX_COMPLAINT_LABELS} labels are allowed"),
        ));
    }
    for (index, label) in labels.iter().enumerate() {
        if labels[..index].contains(label) {
            return Err(Problem::field(
                &format!("{field}[{index}]"),
                format!("`{label}` is listed twice"),
            ));
        }
    }
    Ok(())
}

impl EventData for ComplaintCategoriesSet {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("categories"),
        FieldInfo::required("causes"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(ComplaintCategoriesSet {
            categories: labels(fields, "categories")?,
            causes: labels(fields, "causes")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.value("categories", label_values(&self.categories));
        data.value("causes", label_values(&self.causes));
    }

    fn entity_id(&self) -> &EntityId {
        &COMPLAINTS_ID
    }

    fn validate(&self) -> Result<(), Problem> {
        check_labels("categories", &self.categories)?;
        check_labels("causes", &self.causes)
    }
}
