//! Conditions on an event's fields, the one filter language of webhook subscriptions and
//! workflow triggers: `{"field": "data.to_stage", "op": "eq", "value": "negotiation"}`.
//!
//! A field is `type`, `stream`, `metadata.<key>` or `data.<name>[.<member>...]`. A `data`
//! field must be a catalog field of one of the event types the filter names (of any type when
//! it names none) and must not hold personal data in any of them: filters are stored in the
//! clear (a rule is an event, a subscription a row), so a value compared with a personal field
//! would be personal data kept outside the sealed log. Every refusal names its member
//! (`conditions[2].op`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::EVENT_TYPES;

/// Most conditions in one filter.
pub const MAX_CONDITIONS: usize = 20;
/// Most values in one `in`/`not_in` list.
pub const MAX_VALUES: usize = 100;

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal to `value` (JSON equality; a number equals the same number written otherwise).
    Eq,
    /// Not equal to `value`, or absent.
    Ne,
    /// Equal to one of `value` (an array).
    In,
    /// Equal to none of `value` (an array), or absent.
    NotIn,
    /// Present and not null (`value` not given).
    Exists,
    /// Absent or null (`value` not given).
    NotExists,
    /// Greater than `value`: numbers by value, strings bytewise (RFC 3339 times in UTC and
    /// ISO dates compare in time order).
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Exists => "exists",
            Op::NotExists => "not_exists",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        [
            Op::Eq,
            Op::Ne,
            Op::In,
            Op::NotIn,
            Op::Exists,
            Op::NotExists,
            Op::Gt,
            Op::Gte,
            Op::Lt,
            Op::Lte,
        ]
        .into_iter()
        .find(|op| op.name() == name)
    }
}

/// One condition: all of a filter's conditions must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Condition {
    /// `type`, `stream`, `metadata.<key>` or `data.<name>[.<member>...]`.
    pub field: String,
    pub op: Op,
    /// What the field is compared with: absent for `exists`/`not_exists`, an array for
    /// `in`/`not_in`, a string or number for `gt`..`lte`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
}

/// A refused filter: the member at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{member}: {reason}")]
pub struct ConditionError {
    /// `conditions[2].field`, relative to the filter's object.
    pub member: String,
    pub reason: String,
}

fn refuse(member: String, reason: impl Into<String>) -> ConditionError {
    ConditionError {
        member,
        reason: reason.into(),
    }
}

/// The event a condition is evaluated on.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub event_type: &'a str,
    pub stream: &'a str,
    pub data: &'a Value,
    pub metadata: &'a Value,
}

/// Parses `value` (a JSON array of conditions, `at` naming it, such as `conditions`) and
/// checks each against the event types it may see (`types`; empty: any type).
pub fn parse_conditions(
    value: &Value,
    at: &str,
    types: &[String],
) -> Result<Vec<Condition>, ConditionError> {
    let Some(items) = value.as_array() else {
        return Err(refuse(at.to_owned(), "must be an array of conditions"));
    };
    if items.len() > MAX_CONDITIONS {
        return Err(refuse(
            at.to_owned(),
            format!("at most {MAX_CONDITIONS} conditions"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_one(item, &format!("{at}[{i}]"), types))
        .collect()
}

fn parse_one(item: &Value, at: &str, types: &[String]) -> Result<Condition, ConditionError> {
    let Some(object) = item.as_object() else {
        return Err(refuse(
            at.to_owned(),
            "must be an object {\"field\", \"op\", \"value\"}",
        ));
    };
    if let Some(other) = object
        .keys()
        .find(|k| !["field", "op", "value"].contains(&k.as_str()))
    {
        return Err(refuse(
            format!("{at}.{other}"),
            "unknown member; a condition has field, op and value",
        ));
    }
    let field = object
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(format!("{at}.field"), "required, a string"))?;
    check_field(field, types).map_err(|reason| refuse(format!("{at}.field"), reason))?;
    let op_name = object
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(format!("{at}.op"), "required, a string"))?;
    let op = Op::from_name(op_name).ok_or_else(|| {
        refuse(
            format!("{at}.op"),
            format!(
                "{op_name:?} is not one of eq, ne, in, not_in, exists, not_exists, gt, gte, lt, lte"
            ),
        )
    })?;
    let value = object.get("value").filter(|v| !v.is_null()).cloned();
    let member = format!("{at}.value");
    match op {
        Op::Exists | Op::NotExists => {
            if value.is_some() {
                return Err(refuse(member, format!("{op_name} takes no value")));
            }
        }
        Op::In | Op::NotIn => match &value {
            Some(Value::Array(values)) if !values.is_empty() && values.len() <= MAX_VALUES => {
                if values.iter().any(|v| v.is_array() || v.is_object()) {
                    return Err(refuse(member, "the values must be strings, numbers or booleans"));
                }
            }
            _ => {
                return Err(refuse(
                    member,
                    format!("{op_name} takes an array of 1 to {MAX_VALUES} values"),
                ));
            }
        },
        Op::Eq | Op::Ne => {
            if value.as_ref().is_none_or(|v| v.is_array() || v.is_object()) {
                return Err(refuse(member, "required, a string, number or boolean"));
            }
        }
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            if !value.as_ref().is_some_and(|v| v.is_string() || v.is_number()) {
                return Err(refuse(member, "required, a string or a number"));
            }
        }
    }
    if let Some(Value::String(text)) = &value {
        if text.chars().count() > 1_000 || text.contains('\0') {
            return Err(refuse(member, "at most 1,000 characters, without NUL"));
        }
    }
    Ok(Condition {
        field: field.to_owned(),
        op,
        value,
    })
}

/// Why `field` cannot be filtered on when the filter sees `types` (empty: any).
fn check_field(field: &str, types: &[String]) -> Result<(), String> {
    if field == "type" || field == "stream" {
        return Ok(());
    }
    if let Some(key) = field.strip_prefix("metadata.") {
        if key.is_empty() || key.len() > 64 {
            return Err("a metadata key of 1 to 64 characters".into());
        }
        return Ok(());
    }
    let Some(path) = field.strip_prefix("data.") else {
        return Err("must be type, stream, metadata.<key> or data.<field>".into());
    };
    let name = path.split('.').next().unwrap_or_default();
    if name.is_empty() || path.split('.').any(str::is_empty) || path.split('.').count() > 4 {
        return Err("data.<field>, with at most three members below it".into());
    }
    let seen: Vec<_> = EVENT_TYPES
        .iter()
        .filter(|info| types.is_empty() || types.iter().any(|t| t == info.name))
        .filter(|info| info.fields.iter().any(|f| f.name == name))
        .collect();
    if seen.is_empty() {
        return Err(if types.is_empty() {
            format!("no event type has a field {name:?}")
        } else {
            format!("{name:?} is not a field of {}", types.join(", "))
        });
    }
    if let Some(info) = seen.iter().find(|info| info.personal_fields.contains(&name)) {
        return Err(format!(
            "{name:?} holds personal data in {}: filters are stored in the clear and cannot \
             compare it",
            info.name
        ));
    }
    Ok(())
}

/// The value `field` names in the event, if present and not null.
pub fn lookup<'a>(field: &str, subject: &Subject<'a>) -> Option<std::borrow::Cow<'a, Value>> {
    use std::borrow::Cow;
    match field {
        "type" => return Some(Cow::Owned(Value::String(subject.event_type.to_owned()))),
        "stream" => return Some(Cow::Owned(Value::String(subject.stream.to_owned()))),
        _ => {}
    }
    let (root, path) = if let Some(path) = field.strip_prefix("data.") {
        (subject.data, path)
    } else if let Some(key) = field.strip_prefix("metadata.") {
        return subject
            .metadata
            .get(key)
            .filter(|v| !v.is_null())
            .map(Cow::Borrowed);
    } else {
        return None;
    };
    let mut at = root;
    for member in path.split('.') {
        at = at.get(member)?;
    }
    (!at.is_null()).then_some(Cow::Borrowed(at))
}

/// A number, or a decimal string (amounts are stored as `"1500.00"`) when compared with one.
fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.is_empty() && s.len() <= 40 => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            let decimal = digits.split('.').count() <= 2
                && !digits.starts_with('.')
                && !digits.ends_with('.')
                && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
            if decimal { s.parse().ok() } else { None }
        }
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    if a.is_number() || b.is_number() {
        if let (Some(x), Some(y)) = (numeric(a), numeric(b)) {
            return x == y;
        }
    }
    a == b
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ if a.is_number() || b.is_number() => numeric(a)?.partial_cmp(&numeric(b)?),
        _ => None,
    }
}

impl Condition {
    /// Whether the condition holds for the event. A field of another kind than the value
    /// (a string compared with a number by `gt`) does not hold.
    pub fn holds(&self, subject: &Subject<'_>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let found = lookup(&self.field, subject);
        let found = found.as_deref();
        let value = self.value.as_ref();
        let list = || value.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        match self.op {
            Op::Exists => found.is_some(),
            Op::NotExists => found.is_none(),
            Op::Eq => matches!((found, value), (Some(f), Some(v)) if same(f, v)),
            Op::Ne => !matches!((found, value), (Some(f), Some(v)) if same(f, v)),
            Op::In => found.is_some_and(|f| list().iter().any(|v| same(f, v))),
            Op::NotIn => !found.is_some_and(|f| list().iter().any(|v| same(f, v))),
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let (Some(f), Some(v)) = (found, value) else {
                    return false;
                };
                match (order(f, v), self.op) {
                    (Some(Greater), Op::Gt | Op::Gte) => true,
                    (Some(Equal), Op::Gte | Op::Lte) => true,
                    (Some(Less), Op::Lt | Op::Lte) => true,
                    _ => false,
                }
            }
        }
    }
}

/// Whether every condition holds (an empty list always does).
pub fn all_hold(conditions: &[Condition], subject: &Subject<'_>) -> bool {
    conditions.iter().all(|c| c.holds(subject))
}

/// Checks a list of event type names (`at` naming it): each in the catalog, none repeated.
pub fn parse_event_types(value: &Value, at: &str) -> Result<Vec<String>, ConditionError> {
    let Some(items) = value.as_array() else {
        return Err(refuse(at.to_owned(), "must be an array of event type names"));
    };
    let mut types = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let member = format!("{at}[{i}]");
        let Some(name) = item.as_str() else {
            return Err(refuse(member, "must be an event type name"));
        };
        if !EVENT_TYPES.iter().any(|info| info.name == name) {
            return Err(refuse(
                member,
                format!("{:?} is not an event type of the catalog", name.chars().take(80).collect::<String>()),
            ));
        }
        if types.iter().any(|t| t == name) {
            return Err(refuse(member, format!("{name} is named twice")));
        }
        types.push(name.to_owned());
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject<'a>(data: &'a Value, metadata: &'a Value) -> Subject<'a> {
        Subject {
            event_type: "OpportunityStageChanged",
            stream: "opportunity-o-1",
            data,
            metadata,
        }
    }

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn conditions_select_events_by_their_fields() {
        let data = json!({"opportunity_id": "o-1", "to_stage": "negotiation", "n": 5});
        let metadata = json!({"actor": "ana"});
        let event = subject(&data, &metadata);
        let parse = |value: Value| {
            parse_conditions(&value, "conditions", &[]).expect("valid conditions")
        };
        let holds = |value: Value| all_hold(&parse(value), &event);
        assert!(holds(json!([{"field": "data.to_stage", "op": "eq", "value": "negotiation"}])));
        assert!(!holds(json!([{"field": "data.to_stage", "op": "eq", "value": "won"}])));
        assert!(holds(json!([{"field": "data.to_stage", "op": "in", "value": ["won", "negotiation"]}])));
        assert!(holds(json!([{"field": "data.stage", "op": "not_exists"}])));
        assert!(holds(json!([{"field": "data.to_stage", "op": "ne", "value": "won"}])));
        assert!(holds(json!([{"field": "metadata.actor", "op": "eq", "value": "ana"}])));
        assert!(holds(json!([{"field": "type", "op": "eq", "value": "OpportunityStageChanged"}])));
        assert!(holds(json!([{"field": "stream", "op": "gte", "value": "opportunity-"}])));
        assert!(!holds(json!([{"field": "data.to_stage", "op": "gt", "value": 3}])));
        assert!(holds(json!([])));
    }

    #[test]
    fn numbers_compare_by_value() {
        let data = json!({"amount": "1500.00", "currency": "EUR"});
        let metadata = json!({});
        let event = Subject {
            event_type: "OrderPlaced",
            stream: "customer-c-1",
            data: &data,
            metadata: &metadata,
        };
        let c = |op: &str, v: Value| {
            parse_conditions(
                &json!([{"field": "data.amount", "op": op, "value": v}]),
                "conditions",
                &types(&["OrderPlaced"]),
            )
            .expect("valid")
        };
        assert!(all_hold(&c("gt", json!(1000)), &event));
        assert!(all_hold(&c("eq", json!(1500.0)), &event));
        assert!(all_hold(&c("lte", json!(1500)), &event));
        assert!(!all_hold(&c("lt", json!(1500)), &event));
        assert!(!all_hold(&c("gt", json!("2")), &event), "strings compare bytewise");
    }

    #[test]
    fn refusals_name_the_member() {
        let refused = |value: Value, types: &[String]| {
            parse_conditions(&value, "conditions", types)
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(json!({}), &[]).starts_with("conditions:"));
        assert!(
            refused(json!([{"field": "data.email", "op": "exists"}]), &[])
                .contains("conditions[0].field: \"email\" holds personal data")
        );
        assert!(
            refused(json!([{"field": "data.nope", "op": "exists"}]), &[])
                .starts_with("conditions[0].field: no event type")
        );
        assert!(
            refused(
                json!([{"field": "data.stage", "op": "exists"}]),
                &types(&["CaseOpened"])
            )
            .contains("is not a field of CaseOpened")
        );
        assert!(
            refused(json!([{"field": "type", "op": "like", "value": "x"}]), &[])
                .starts_with("conditions[0].op:")
        );
        assert!(
            refused(json!([{"field": "type", "op": "in", "value": "x"}]), &[])
                .starts_with("conditions[0].value:")
        );
        assert!(
            refused(json!([{"field": "type", "op": "exists", "value": "x"}]), &[])
                .starts_with("conditions[0].value:")
        );
        assert!(
            refused(json!([{"field": "type", "op": "eq", "value": "x", "x": 1}]), &[])
                .starts_with("conditions[0].x:")
        );
        let err = parse_event_types(&json!(["OrderPlaced", "Nope"]), "event_types")
            .expect_err("unknown type");
        assert_eq!(err.member, "event_types[1]");
    }
}
