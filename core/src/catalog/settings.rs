//! Tenant settings as facts: the `settings-<name>` streams. A setting in force at a position
//! is the last one recorded before it, so every judgement made at that position can be
//! explained from the log, even after the setting changes.
//!
//! `settings-consent` holds the consent regime ([`ConsentRegimeSet`]); a tenant that never
//! set one is under `opt_in`.

use std::sync::LazyLock;

use crate::catalog::fields::{DataWriter, EventData, FieldReader};
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
