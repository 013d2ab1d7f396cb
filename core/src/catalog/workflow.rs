//! Workflow rules as facts: the `workflow-<rule_id>` streams. A rule's version is the number
//! of `WorkflowRuleSet` events on its stream so far (the first is version 1); the version in
//! force at a position is the last one recorded before it, so every action a rule took can
//! be explained from the log. Appended by admins (`PUT /v1/workflows/{id}`).

use serde_json::Value;

use crate::automation::rule::Rule;
use crate::catalog::fields::{DataWriter, EventData, FieldReader};
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;

/// A rule's new version: its whole definition (name, enabled, trigger, actions), checked by
/// [`Rule::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRuleSet {
    pub rule_id: EntityId,
    pub rule: Rule,
}

impl EventData for WorkflowRuleSet {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("rule_id"),
        FieldInfo::required("name"),
        FieldInfo::optional("enabled"),
        FieldInfo::required("trigger"),
        FieldInfo::required("actions"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        let rule_id = fields.required("rule_id")?;
        let mut document = serde_json::Map::new();
        for name in ["name", "enabled", "trigger", "actions"] {
            if let Some(value) = fields.optional::<Value>(name)? {
                document.insert(name.to_owned(), value);
            }
        }
        let rule = Rule::parse(&Value::Object(document))
            .map_err(|error| fields.error(&error.member, error.reason))?;
        Ok(WorkflowRuleSet { rule_id, rule })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("rule_id", &self.rule_id);
        if let Value::Object(document) = self.rule.to_value() {
            for (name, value) in document {
                data.value(&name, value);
            }
        }
    }

    fn entity_id(&self) -> &EntityId {
        &self.rule_id
    }
}

/// The rule acts no more (its stream stays, with every version it had).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRuleRemoved {
    pub rule_id: EntityId,
}

impl EventData for WorkflowRuleRemoved {
    const FIELDS: &'static [FieldInfo] = &[FieldInfo::required("rule_id")];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(WorkflowRuleRemoved {
            rule_id: fields.required("rule_id")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.id("rule_id", &self.rule_id);
    }

    fn entity_id(&self) -> &EntityId {
        &self.rule_id
    }
}
