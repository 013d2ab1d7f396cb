//! A subscription as callers write it: parsing and checking `POST`/`PATCH` bodies member by
//! member (every refusal names its member: `url`, `event_types[2]`, `conditions[1].op`),
//! and the stored subscription as it is answered (never with its secret).

use crm_core::automation::condition::{Condition, parse_conditions, parse_event_types};
use reqwest::Url;
use serde::Serialize;
use serde_json::{Map, Value};

use super::WebhookError;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2_048;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 500;
/// Most subscriptions per tenant.
pub const MAX_PER_TENANT: usize = 100;

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    /// Its retry schedule ended (`disabled_reason` says why); `PATCH {"status": "active"}`
    /// re-enables it at the message that failed.
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Status {
        if text == "disabled" {
            Status::Disabled
        } else {
            Status::Active
        }
    }
}

/// A stored subscription, as the API answers it (the secret is never part of it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    /// `wh_` and 32 hex digits.
    pub id: String,
    #[serde(skip)]
    pub tenant: String,
    pub url: String,
    /// The event types delivered; empty: every type.
    pub event_types: Vec<String>,
    /// Conditions on the event's fields, all of which must hold.
    pub conditions: Vec<Condition>,
    pub description: String,
    /// Personal fields delivered in plain text (each delivery recorded in the access log);
    /// otherwise they read `"[redacted]"`.
    pub personal_data: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last log position handled (delivered, or skipped as not matching). A new
    /// subscription starts at the log's head when it is created.
    pub cursor: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A checked `POST /v1/webhooks` body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub url: String,
    pub event_types: Vec<String>,
    pub conditions: Vec<Condition>,
    pub description: String,
    pub personal_data: bool,
}

/// A checked `PATCH /v1/webhooks/{id}` body: only what it names changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Raw, checked against the resulting event types by [`Patch::conditions_for`].
    pub conditions: Option<Value>,
    pub description: Option<String>,
    /// `status: "active"`: re-enable.
    pub reactivate: bool,
    pub rotate_secret: bool,
}

fn invalid(member: impl Into<String>, reason: impl Into<String>) -> WebhookError {
    WebhookError::Invalid {
        member: member.into(),
        reason: reason.into(),
    }
}

fn object<'a>(body: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, WebhookError> {
    let object = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    if let Some(other) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid(
            other.chars().take(64).collect::<String>(),
            format!("unknown member; known: {}", known.join(", ")),
        ));
    }
    Ok(object)
}

/// Checks a delivery URL: absolute http or https, a host, no user or password, at most
/// [`MAX_URL_LEN`] characters. Where it points is checked again at every delivery, on the
/// address dialled ([`super::address`]).
pub fn check_url(value: &Value) -> Result<String, WebhookError> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid("url", "required, a string"))?;
    if text.len() > MAX_URL_LEN {
        return Err(invalid("url", format!("at most {MAX_URL_LEN} characters")));
    }
    let url = Url::parse(text).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("url", "must not carry a user name or password"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "must name a host"));
    }
    if url.fragment().is_some() {
        return Err(invalid("url", "must not carry a fragment"));
    }
    Ok(url.to_string())
}

fn check_description(value: Option<&Value>) -> Result<String, WebhookError> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => {
            if text.chars().count() > MAX_DESCRIPTION || text.contains('\0') {
                Err(invalid(
                    "description",
                    format!("at most {MAX_DESCRIPTION} characters, without NUL"),
                ))
            } else {
                Ok(text.clone())
            }
        }
        Some(_) => Err(invalid("description", "must be a string")),
    }
}

fn condition_error(error: crm_core::automation::condition::ConditionError) -> WebhookError {
    invalid(error.member, error.reason)
}

impl NewSubscription {
    pub fn parse(body: &Value) -> Result<NewSubscription, WebhookError> {
        let object = object(
            body,
            &[
                "url",
                "event_types",
                "conditions",
                "description",
                "personal_data",
            ],
        )?;
        let url = check_url(object.get("url").unwrap_or(&Value::Null))?;
        let event_types = match object.get("event_types") {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => parse_event_types(value, "event_types").map_err(condition_error)?,
        };
        let conditions = match object.get("conditions") {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => {
                parse_conditions(value, "conditions", &event_types).map_err(condition_error)?
            }
        };
        let description = check_description(object.get("description"))?;
        let personal_data = match object.get("personal_data") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(invalid("personal_data", "must be true or false")),
        };
        Ok(NewSubscription {
            url,
            event_types,
            conditions,
            description,
            personal_data,
        })
    }
}

impl Patch {
    pub fn parse(body: &Value) -> Result<Patch, WebhookError> {
        let object = object(
            body,
            &[
                "url",
                "event_types",
                "conditions",
                "description",
                "status",
                "rotate_secret",
            ],
        )?;
        let mut patch = Patch::default();
        if let Some(value) = object.get("url") {
            patch.url = Some(check_url(value)?);
        }
        if let Some(value) = object.get("event_types") {
            patch.event_types = Some(if value.is_null() {
                Vec::new()
            } else {
                parse_event_types(value, "event_types").map_err(condition_error)?
            });
        }
        if let Some(value) = object.get("conditions") {
            patch.conditions = Some(if value.is_null() {
                Value::Array(Vec::new())
            } else {
                value.clone()
            });
        }
        if object.contains_key("description") {
            patch.description = Some(check_description(object.get("description"))?);
        }
        match object.get("status") {
            None => {}
            Some(Value::String(s)) if s == "active" => patch.reactivate = true,
            Some(_) => {
                return Err(invalid(
                    "status",
                    "only \"active\" (re-enable a disabled subscription) may be set",
                ));
            }
        }
        match object.get("rotate_secret") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => patch.rotate_secret = true,
            Some(_) => return Err(invalid("rotate_secret", "must be true or false")),
        }
        Ok(patch)
    }

    /// The conditions after the patch, checked against the event types after it (a change of
    /// types alone re-checks the stored conditions).
    pub fn conditions_for(
        &self,
        stored: &[Condition],
        types: &[String],
    ) -> Result<Vec<Condition>, WebhookError> {
        let value = match &self.conditions {
            Some(value) => value.clone(),
            None => {
                serde_json::to_value(stored).map_err(|e| WebhookError::Corrupt(e.to_string()))?
            }
        };
        parse_conditions(&value, "conditions", types).map_err(condition_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(result: Result<NewSubscription, WebhookError>) -> String {
        match result {
            Err(WebhookError::Invalid { member, .. }) => member,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn bodies_are_checked_member_by_member() {
        let ok = NewSubscription::parse(&json!({
            "url": "https://billing.example.com/hooks",
            "event_types": ["OpportunityWon"],
            "conditions": [{"field": "data.opportunity_id", "op": "exists"}],
            "description": "won deals to billing",
        }))
        .expect("valid");
        assert_eq!(ok.event_types, ["OpportunityWon"]);
        assert!(!ok.personal_data);
        let parse = |body: Value| member(NewSubscription::parse(&body));
        assert_eq!(parse(json!({})), "url");
        assert_eq!(parse(json!({"url": "ftp://x.example"})), "url");
        assert_eq!(parse(json!({"url": "https://u:p@x.example/"})), "url");
        assert_eq!(parse(json!({"url": "https://u@x.example/"})), "url");
        assert_eq!(parse(json!({"url": "/relative"})), "url");
        assert_eq!(
            parse(json!({"url": format!("https://x.example/{}", "a".repeat(2_100))})),
            "url"
        );
        assert_eq!(
            parse(json!({"url": "https://x.example", "event_types": ["Nope"]})),
            "event_types[0]"
        );
        assert_eq!(
            parse(json!({"url": "https://x.example", "conditions": [
                {"field": "type", "op": "eq", "value": "x"},
                {"field": "type", "op": "bogus", "value": "x"}]})),
            "conditions[1].op"
        );
        assert_eq!(
            parse(json!({"url": "https://x.example", "personal_data": "yes"})),
            "personal_data"
        );
        assert_eq!(
            parse(json!({"url": "https://x.example", "colour": 1})),
            "colour"
        );
        assert_eq!(
            parse(json!({"url": "https://x.example", "description": 5})),
            "description"
        );
    }

    #[test]
    fn patches_name_only_what_changes() {
        let patch = Patch::parse(&json!({"status": "active", "rotate_secret": true})).expect("ok");
        assert!(patch.reactivate && patch.rotate_secret && patch.url.is_none());
        assert!(matches!(
            Patch::parse(&json!({"status": "disabled"})),
            Err(WebhookError::Invalid { member, .. }) if member == "status"
        ));
        let narrowed = Patch::parse(&json!({"event_types": ["CaseOpened"]})).expect("ok");
        let stored = vec![Condition {
            field: "data.to_stage".into(),
            op: crm_core::automation::condition::Op::Eq,
            value: Some(json!("won")),
        }];
        // The stored condition names a field CaseOpened does not have.
        assert!(matches!(
            narrowed.conditions_for(&stored, &["CaseOpened".into()]),
            Err(WebhookError::Invalid { member, .. }) if member == "conditions[0].field"
        ));
    }
}
