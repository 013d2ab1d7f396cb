//! Workflow rules: what a rule is (a trigger and its actions), how it is read from its JSON
//! document with every refusal naming its member, and what it does for a trigger, as a pure
//! function: the events it would append (their ids derived from the rule, its version and the
//! trigger, so a second run produces the same events, duplicates) and the webhook calls.
//!
//! A trigger is an event type with conditions, or a schedule relative to a fact
//! ([`Schedule`]). Actions append catalog events rendered from templates (`{{data.case_id}}`,
//! `{{at+2d}}`), which then go through the ingest decision like any event, or call a webhook
//! subscription. Templates and conditions read only fields that hold no personal data: a rule
//! is stored in the clear, and the worker reads the log without opening personal fields.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::automation::condition::{self, Condition, ConditionError, Subject};
use crate::catalog::{EVENT_TYPES, EventTypeInfo};

/// Most actions in one rule.
pub const MAX_ACTIONS: usize = 10;
/// How deep a chain of rules may go: an event appended by a rule at this depth triggers no
/// rule (the run log says so).
pub const MAX_DEPTH: u32 = 5;
/// Longest schedule delay, in days (ten years).
pub const MAX_DAYS: i64 = 3_650;
/// Longest rule name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Namespace of the ids of events appended by rules.
const ACTION_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_776f_726b_666c_6f77_2d61_6374);

/// A rule as stored in its `WorkflowRuleSet` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub enabled: bool,
    pub trigger: Trigger,
    pub actions: Vec<Action>,
}

/// What makes a rule act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Every event of this type for which the conditions hold.
    Event {
        event_type: String,
        conditions: Vec<Condition>,
    },
    /// A time relative to a fact, once per fact (see [`Schedule`]), when the conditions hold
    /// on the fact's fields.
    Schedule {
        schedule: Schedule,
        conditions: Vec<Condition>,
    },
}

/// The facts a schedule is relative to. Each fires once per fact (per due time), also when
/// the worker was down at that time (late).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `offset_minutes` after (negative: before) an open case's first response is due, if it
    /// has had no response by then, once per case. The due time is the backlog's (SLA
    /// targets, business calendar, pauses).
    CaseFirstResponseDue { offset_minutes: i64 },
    /// `days` after an open deal entered its stage (one of `stages`, any when empty), if it
    /// is still open and in that stage.
    OpportunityInStage { days: i64, stages: Vec<String> },
    /// `days` after a customer's latest order (business time), if no later order came.
    CustomerWithoutOrder { days: i64 },
}

impl Schedule {
    /// The schedule's name in the rule document.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::CaseFirstResponseDue { .. } => "case_first_response_due",
            Schedule::OpportunityInStage { .. } => "opportunity_in_stage",
            Schedule::CustomerWithoutOrder { .. } => "customer_without_order",
        }
    }

    /// The fields of the fact a schedule's conditions and templates may read.
    pub fn fields(&self) -> &'static [&'static str] {
        match self {
            Schedule::CaseFirstResponseDue { .. } => &[
                "case_id",
                "customer_id",
                "channel",
                "priority",
                "agent",
                "due_at",
            ],
            Schedule::OpportunityInStage { .. } => &[
                "opportunity_id",
                "customer_id",
                "stage",
                "owner",
                "entered_at",
            ],
            Schedule::CustomerWithoutOrder { .. } => &["customer_id", "order_id", "last_order_at"],
        }
    }

    /// When the schedule fires for a fact dated `at` (the due time, the stage entry, the
    /// latest order).
    pub fn due(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let shifted = match self {
            Schedule::CaseFirstResponseDue { offset_minutes } => {
                at.checked_add_signed(Duration::minutes(*offset_minutes))
            }
            Schedule::OpportunityInStage { days, .. } | Schedule::CustomerWithoutOrder { days } => {
                at.checked_add_signed(Duration::days(*days))
            }
        };
        shifted.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Append a catalog event whose data is rendered from `data` (a template).
    Append { event_type: String, data: Value },
    /// Deliver a call to this webhook subscription of the tenant.
    Webhook { subscription: String },
}

/// A refused rule: the member (relative to the rule document: `trigger.conditions[0].op`)
/// and why.
pub type RuleError = ConditionError;

fn refuse(member: impl Into<String>, reason: impl Into<String>) -> RuleError {
    ConditionError {
        member: member.into(),
        reason: reason.into(),
    }
}

fn only_members(object: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), RuleError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(other) => Err(refuse(
            join(at, other),
            format!("unknown member; known members are {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn join(at: &str, member: &str) -> String {
    if at.is_empty() {
        member.to_owned()
    } else {
        format!("{at}.{member}")
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, RuleError> {
    value
        .as_object()
        .ok_or_else(|| refuse(at, "must be a JSON object"))
}

fn whole_number(object: &Map<String, Value>, at: &str, name: &str) -> Result<i64, RuleError> {
    object
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| refuse(join(at, name), "required, a whole number"))
}

/// The fields of `event_type` a rule may read: its catalog fields without the personal ones.
fn readable_fields(info: &EventTypeInfo) -> Vec<&'static str> {
    info.fields
        .iter()
        .filter(|f| !f.personal)
        .map(|f| f.name)
        .collect()
}

impl Rule {
    /// Reads a rule document: `{"name", "enabled"?, "trigger", "actions"}`.
    pub fn parse(value: &Value) -> Result<Rule, RuleError> {
        let document =
            object(value, "").map_err(|_| refuse("definition", "must be a JSON object"))?;
        only_members(document, "", &["name", "enabled", "trigger", "actions"])?;
        let name = document
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| refuse("name", "required, a non-blank string"))?;
        if name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
            return Err(refuse(
                "name",
                format!("at most {MAX_NAME_CHARS} characters, without NUL"),
            ));
        }
        let enabled = match document.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(refuse("enabled", "must be true or false")),
        };
        let trigger = parse_trigger(
            document
                .get("trigger")
                .ok_or_else(|| refuse("trigger", "required"))?,
        )?;
        let Some(items) = document.get("actions").and_then(Value::as_array) else {
            return Err(refuse("actions", "required, an array of actions"));
        };
        if items.is_empty() || items.len() > MAX_ACTIONS {
            return Err(refuse(
                "actions",
                format!("between 1 and {MAX_ACTIONS} actions"),
            ));
        }
        let fields = trigger.fields();
        let actions = items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_action(item, &format!("actions[{i}]"), &trigger, &fields))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            name: name.to_owned(),
            enabled,
            trigger,
            actions,
        })
    }

    /// The canonical document (what is stored).
    pub fn to_value(&self) -> Value {
        let mut trigger = Map::new();
        match &self.trigger {
            Trigger::Event {
                event_type,
                conditions,
            } => {
                trigger.insert("event".into(), json!(event_type));
                if !conditions.is_empty() {
                    trigger.insert("conditions".into(), json!(conditions));
                }
            }
            Trigger::Schedule {
                schedule,
                conditions,
            } => {
                trigger.insert("schedule".into(), json!(schedule.name()));
                match schedule {
                    Schedule::CaseFirstResponseDue { offset_minutes } => {
                        trigger.insert("offset_minutes".into(), json!(offset_minutes));
                    }
                    Schedule::OpportunityInStage { days, stages } => {
                        trigger.insert("days".into(), json!(days));
                        if !stages.is_empty() {
                            trigger.insert("stages".into(), json!(stages));
                        }
                    }
                    Schedule::CustomerWithoutOrder { days } => {
                        trigger.insert("days".into(), json!(days));
                    }
                }
                if !conditions.is_empty() {
                    trigger.insert("conditions".into(), json!(conditions));
                }
            }
        }
        let actions: Vec<Value> = self
            .actions
            .iter()
            .map(|action| match action {
                Action::Append { event_type, data } => {
                    json!({"append": {"type": event_type, "data": data}})
                }
                Action::Webhook { subscription } => {
                    json!({"webhook": {"subscription": subscription}})
                }
            })
            .collect();
        // Absent members read as their defaults: enabled, no conditions, any stage.
        let mut document = json!({
            "name": self.name,
            "trigger": Value::Object(trigger),
            "actions": actions,
        });
        if !self.enabled {
            document["enabled"] = json!(false);
        }
        document
    }

    /// Whether an event triggers this rule (an event trigger of its type whose conditions
    /// hold). Disabled rules trigger nothing.
    pub fn triggered_by(&self, subject: &Subject<'_>) -> bool {
        match &self.trigger {
            Trigger::Event {
                event_type,
                conditions,
            } => {
                self.enabled
                    && event_type == subject.event_type
                    && condition::all_hold(conditions, subject)
            }
            Trigger::Schedule { .. } => false,
        }
    }

    /// Whether a scheduled fact (`data`, of the schedule's fields) passes the conditions.
    pub fn fact_passes(&self, data: &Value) -> bool {
        match &self.trigger {
            Trigger::Schedule { conditions, .. } => {
                let subject = Subject {
                    event_type: "",
                    stream: "",
                    data,
                    metadata: &Value::Null,
                };
                self.enabled && condition::all_hold(conditions, &subject)
            }
            Trigger::Event { .. } => false,
        }
    }

    /// Whether any action picks round-robin (which needs the rule's firing count).
    pub fn uses_round_robin(&self) -> bool {
        self.actions.iter().any(|a| match a {
            Action::Append { data, .. } => has_round_robin(data),
            Action::Webhook { .. } => false,
        })
    }
}

impl Trigger {
    /// The data fields templates and conditions may read.
    pub fn fields(&self) -> Vec<&'static str> {
        match self {
            Trigger::Event { event_type, .. } => EventTypeInfo::find(event_type)
                .map(readable_fields)
                .unwrap_or_default(),
            Trigger::Schedule { schedule, .. } => schedule.fields().to_vec(),
        }
    }
}

fn parse_trigger(value: &Value) -> Result<Trigger, RuleError> {
    let at = "trigger";
    let trigger = object(value, at)?;
    let conditions_value = trigger.get("conditions").cloned().unwrap_or(json!([]));
    match (trigger.get("event"), trigger.get("schedule")) {
        (Some(event), None) => {
            only_members(trigger, at, &["event", "conditions"])?;
            let types = condition::parse_event_types(&json!([event]), "trigger.event")
                .map_err(|e| refuse("trigger.event", e.reason))?;
            let event_type = types.into_iter().next().unwrap_or_default();
            let conditions = condition::parse_conditions(
                &conditions_value,
                "trigger.conditions",
                std::slice::from_ref(&event_type),
            )?;
            Ok(Trigger::Event {
                event_type,
                conditions,
            })
        }
        (None, Some(schedule)) => {
            let name = schedule.as_str().unwrap_or_default();
            let schedule = match name {
                "case_first_response_due" => {
                    only_members(trigger, at, &["schedule", "offset_minutes", "conditions"])?;
                    let offset_minutes = whole_number(trigger, at, "offset_minutes")?;
                    if offset_minutes.abs() > MAX_DAYS * 24 * 60 {
                        return Err(refuse(
                            "trigger.offset_minutes",
                            "at most ten years either way",
                        ));
                    }
                    Schedule::CaseFirstResponseDue { offset_minutes }
                }
                "opportunity_in_stage" => {
                    only_members(trigger, at, &["schedule", "days", "stages", "conditions"])?;
                    let days = days(trigger)?;
                    let stages = match trigger.get("stages") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(items)) => items
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                s.as_str()
                                    .filter(|s| !s.trim().is_empty() && s.len() <= 100)
                                    .map(str::to_owned)
                                    .ok_or_else(|| {
                                        refuse(
                                            format!("trigger.stages[{i}]"),
                                            "a stage name of 1 to 100 characters",
                                        )
                                    })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(_) => return Err(refuse("trigger.stages", "an array of stages")),
                    };
                    Schedule::OpportunityInStage { days, stages }
                }
                "customer_without_order" => {
                    only_members(trigger, at, &["schedule", "days", "conditions"])?;
                    Schedule::CustomerWithoutOrder {
                        days: days(trigger)?,
                    }
                }
                _ => {
                    return Err(refuse(
                        "trigger.schedule",
                        "one of case_first_response_due, opportunity_in_stage, \
                         customer_without_order",
                    ));
                }
            };
            let fields = schedule.fields();
            let conditions = condition::parse_conditions_with(
                &conditions_value,
                "trigger.conditions",
                &|field| fact_field(field, fields),
            )?;
            Ok(Trigger::Schedule {
                schedule,
                conditions,
            })
        }
        (Some(_), Some(_)) => Err(refuse(at, "give either event or schedule, not both")),
        (None, None) => Err(refuse(
            at,
            "give event (an event type) or schedule (case_first_response_due, \
             opportunity_in_stage, customer_without_order)",
        )),
    }
}

fn days(trigger: &Map<String, Value>) -> Result<i64, RuleError> {
    let days = whole_number(trigger, "trigger", "days")?;
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(refuse("trigger.days", format!("between 1 and {MAX_DAYS}")));
    }
    Ok(days)
}

/// Conditions on a scheduled fact read `data.<one of its fields>`.
fn fact_field(field: &str, fields: &[&str]) -> Result<(), String> {
    match field.strip_prefix("data.") {
        Some(name) if fields.contains(&name) => Ok(()),
        _ => Err(format!(
            "a schedule's conditions read data.<field>, one of {}",
            fields.join(", ")
        )),
    }
}

fn parse_action(
    value: &Value,
    at: &str,
    trigger: &Trigger,
    fields: &[&'static str],
) -> Result<Action, RuleError> {
    let action = object(value, at)?;
    only_members(action, at, &["append", "webhook"])?;
    match (action.get("append"), action.get("webhook")) {
        (Some(append), None) => {
            let at = &join(at, "append");
            let append = object(append, at)?;
            only_members(append, at, &["type", "data"])?;
            let event_type = append
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse(join(at, "type"), "required, an event type"))?;
            let Some(info) = EVENT_TYPES.iter().find(|i| i.name == event_type) else {
                return Err(refuse(
                    join(at, "type"),
                    format!("{:?} is not an event type of the catalog", cut(event_type)),
                ));
            };
            if matches!(info.category, "settings" | "workflow") {
                return Err(refuse(
                    join(at, "type"),
                    "a rule cannot change settings or rules",
                ));
            }
            let data = append
                .get("data")
                .ok_or_else(|| refuse(join(at, "data"), "required, the event's data"))?;
            let data_at = join(at, "data");
            let data_object = object(data, &data_at)?;
            for (name, value) in data_object {
                let member = join(&data_at, name);
                let Some(field) = info.fields.iter().find(|f| f.name == name) else {
                    return Err(refuse(member, format!("not a field of {event_type}")));
                };
                if field.personal {
                    return Err(refuse(
                        member,
                        "holds personal data: a rule is stored in the clear and cannot set it",
                    ));
                }
                check_template(value, &member, trigger, fields)?;
            }
            Ok(Action::Append {
                event_type: event_type.to_owned(),
                data: data.clone(),
            })
        }
        (None, Some(webhook)) => {
            let at = &join(at, "webhook");
            let webhook = object(webhook, at)?;
            only_members(webhook, at, &["subscription"])?;
            let subscription = webhook
                .get("subscription")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 64 && s.chars().all(crate::ids::is_id_char))
                .ok_or_else(|| {
                    refuse(
                        join(at, "subscription"),
                        "required, a webhook subscription id",
                    )
                })?;
            Ok(Action::Webhook {
                subscription: subscription.to_owned(),
            })
        }
        _ => Err(refuse(at, "give exactly one of append or webhook")),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(80).collect()
}

fn has_round_robin(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("round_robin") || map.values().any(has_round_robin),
        Value::Array(items) => items.iter().any(has_round_robin),
        _ => false,
    }
}

/// Checks a template value: its placeholders name readable fields; a `{"round_robin": [..]}`
/// object holds 1 to 100 strings and is allowed under event triggers only.
fn check_template(
    value: &Value,
    at: &str,
    trigger: &Trigger,
    fields: &[&'static str],
) -> Result<(), RuleError> {
    match value {
        Value::String(text) => {
            if text.chars().count() > 10_000 || text.contains('\0') {
                return Err(refuse(at, "at most 10,000 characters, without NUL"));
            }
            for placeholder in placeholders(text).map_err(|reason| refuse(at, reason))? {
                check_placeholder(placeholder, trigger, fields).map_err(|r| refuse(at, r))?;
            }
            Ok(())
        }
        Value::Object(map) if map.contains_key("round_robin") => {
            if map.len() != 1 {
                return Err(refuse(at, "a round_robin object has only round_robin"));
            }
            if matches!(trigger, Trigger::Schedule { .. }) {
                return Err(refuse(
                    join(at, "round_robin"),
                    "round-robin picks follow the order of triggering events: event triggers only",
                ));
            }
            match map.get("round_robin") {
                Some(Value::Array(items))
                    if (1..=100).contains(&items.len())
                        && items.iter().all(|i| {
                            i.as_str()
                                .is_some_and(|s| !s.trim().is_empty() && s.len() <= 200)
                        }) =>
                {
                    Ok(())
                }
                _ => Err(refuse(
                    join(at, "round_robin"),
                    "an array of 1 to 100 non-blank strings",
                )),
            }
        }
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_template(v, &join(at, k), trigger, fields)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_template(v, &format!("{at}[{i}]"), trigger, fields)),
        _ => Ok(()),
    }
}

/// The placeholders of a template string, `{{...}}`, trimmed.
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a placeholder {{ is not closed with }}".to_owned())?;
        found.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    Ok(found)
}

fn check_placeholder(name: &str, trigger: &Trigger, fields: &[&str]) -> Result<(), String> {
    if let Some(field) = name.strip_prefix("data.") {
        let top = field.split('.').next().unwrap_or_default();
        return if fields.contains(&top) {
            Ok(())
        } else {
            Err(format!(
                "{{{{{name}}}}}: the trigger's readable fields are {}",
                fields.join(", ")
            ))
        };
    }
    if name == "at" || offset(name).is_some() {
        return Ok(());
    }
    if matches!(name, "rule.id" | "rule.version") {
        return Ok(());
    }
    if matches!(trigger, Trigger::Event { .. })
        && matches!(
            name,
            "event.id" | "event.stream" | "event.entity" | "event.type" | "event.position"
        )
    {
        return Ok(());
    }
    Err(format!(
        "{{{{{name}}}}} is not a placeholder; use data.<field>, at, at+<n>d|h|m, rule.id, \
         rule.version{}",
        if matches!(trigger, Trigger::Event { .. }) {
            ", event.id, event.stream, event.entity, event.type, event.position"
        } else {
            ""
        }
    ))
}

/// `at+2d`, `at-30m`: the offset from the trigger's time.
fn offset(name: &str) -> Option<Duration> {
    let rest = name.strip_prefix("at")?;
    let (sign, rest) = match rest.chars().next()? {
        '+' => (1, &rest[1..]),
        '-' => (-1, &rest[1..]),
        _ => return None,
    };
    let unit = rest.chars().last()?;
    let amount: i64 = rest[..rest.len() - 1].parse().ok()?;
    if !(0..=MAX_DAYS * 24 * 60).contains(&amount) {
        return None;
    }
    let minutes = match unit {
        'd' => amount.checked_mul(24 * 60)?,
        'h' => amount.checked_mul(60)?,
        'm' => amount,
        _ => return None,
    };
    if minutes > MAX_DAYS * 24 * 60 {
        return None;
    }
    Some(Duration::minutes(sign * minutes))
}

/// The trigger a rule acts on: an event, or a scheduled fact come due.
#[derive(Debug, Clone)]
pub struct Firing<'a> {
    pub tenant: &'a str,
    pub rule_id: &'a str,
    pub version: u64,
    /// A key naming the trigger, the same whenever and wherever it is evaluated: for an
    /// event `event:<stream>:<event id>`, for a schedule `<schedule>:<fact key>:<due time>`.
    pub key: String,
    /// The trigger's fields (the event's data, or the fact's).
    pub data: &'a Value,
    /// The trigger's time: the event's business time, or the due time.
    pub at: DateTime<Utc>,
    /// The triggering event, for event triggers.
    pub event: Option<EventRef<'a>>,
    /// The rule's firings before this one (event triggers), for round-robin picks.
    pub count: u64,
    /// What caused the trigger, if an earlier rule did.
    pub cause: Option<&'a Cause>,
}

/// The triggering event's envelope members templates may read.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub position: u64,
}

/// The metadata member `workflow` of an event appended by a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Cause {
    pub rule: String,
    pub version: u64,
    /// 1 for an action of a rule triggered by an event no rule appended.
    pub depth: u32,
    /// The rules of the chain, first to last (this one included).
    pub chain: Vec<String>,
    /// The trigger's key ([`Firing::key`]).
    pub trigger: String,
}

impl Cause {
    /// The `workflow` member of an event's metadata, if a rule appended it.
    pub fn of_metadata(metadata: &Value) -> Option<Cause> {
        serde_json::from_value(metadata.get("workflow")?.clone()).ok()
    }
}

/// Why a rule did not act on a trigger (recorded in its run log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The trigger was appended by a chain already this deep.
    #[error("the chain of rules reached the depth limit of {MAX_DEPTH} ({chain})")]
    DepthLimit { chain: String },
    /// The trigger was appended by a chain this rule is already in.
    #[error("cycle stopped: this rule is already in the chain {chain}")]
    Cycle { chain: String },
    /// A template read a field the trigger does not have.
    #[error("{member}: {reason}")]
    Render { member: String, reason: String },
}

/// One event a rule appends: as an emitter would send it (`id`, `type`, `data`,
/// `occurred_at`), plus the cause for its metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Value,
    pub occurred_at: DateTime<Utc>,
}

/// One webhook call a rule makes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedCall {
    /// Derived like an event's id: the same call on every run.
    pub id: Uuid,
    pub subscription: String,
    /// The call's body `data`: the rule, the trigger and its (non-personal) fields.
    pub payload: Value,
}

/// What a rule does for one trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub cause: Cause,
    pub events: Vec<PlannedEvent>,
    pub calls: Vec<PlannedCall>,
}

impl Plan {
    /// The event JSON to parse with the ingest's parser.
    pub fn event_values(&self) -> Vec<Value> {
        self.events
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "type": e.event_type,
                    "data": e.data,
                    "occurred_at": e.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                })
            })
            .collect()
    }
}

/// The id of a rule's `index`-th action for a trigger: a pure function of the tenant, the
/// rule, its version and the trigger.
pub fn action_id(tenant: &str, rule_id: &str, version: u64, key: &str, index: usize) -> Uuid {
    Uuid::new_v5(
        &ACTION_NAMESPACE,
        format!("{tenant}\n{rule_id}\n{version}\n{key}\n{index}").as_bytes(),
    )
}

impl Rule {
    /// What the rule does for `firing`: the events and calls, or why it stops.
    pub fn plan(&self, firing: &Firing<'_>) -> Result<Plan, Stop> {
        let (depth, mut chain) = match firing.cause {
            Some(cause) => (cause.depth, cause.chain.clone()),
            None => (0, Vec::new()),
        };
        if chain.iter().any(|r| r == firing.rule_id) {
            chain.push(firing.rule_id.to_owned());
            return Err(Stop::Cycle {
                chain: chain.join(" → "),
            });
        }
        if depth >= MAX_DEPTH {
            chain.push(firing.rule_id.to_owned());
            return Err(Stop::DepthLimit {
                chain: chain.join(" → "),
            });
        }
        chain.push(firing.rule_id.to_owned());
        let cause = Cause {
            rule: firing.rule_id.to_owned(),
            version: firing.version,
            depth: depth + 1,
            chain,
            trigger: firing.key.clone(),
        };
        let mut events = Vec::new();
        let mut calls = Vec::new();
        for (index, action) in self.actions.iter().enumerate() {
            let id = action_id(
                firing.tenant,
                firing.rule_id,
                firing.version,
                &firing.key,
                index,
            );
            match action {
                Action::Append { event_type, data } => {
                    let member = format!("actions[{index}].append.data");
                    events.push(PlannedEvent {
                        id,
                        event_type: event_type.clone(),
                        data: render(data, firing, &member)?,
                        occurred_at: firing.at,
                    });
                }
                Action::Webhook { subscription } => calls.push(PlannedCall {
                    id,
                    subscription: subscription.clone(),
                    payload: json!({
                        "rule": {"id": firing.rule_id, "version": firing.version, "name": self.name},
                        "trigger": {
                            "key": firing.key,
                            "at": firing.at.to_rfc3339_opts(SecondsFormat::Micros, true),
                            "event": firing.event.map(|e| json!({
                                "id": e.id, "type": e.event_type, "stream": e.stream,
                                "position": e.position,
                            })),
                            "data": readable(firing.data, &self.trigger.fields()),
                        },
                    }),
                }),
            }
        }
        Ok(Plan {
            cause,
            events,
            calls,
        })
    }
}

/// Only the readable members of the trigger's data.
fn readable(data: &Value, fields: &[&str]) -> Value {
    match data.as_object() {
        Some(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => json!({}),
    }
}

fn render(template: &Value, firing: &Firing<'_>, at: &str) -> Result<Value, Stop> {
    match template {
        Value::String(text) => render_text(text, firing, at),
        Value::Object(map) if map.contains_key("round_robin") => {
            let items = map
                .get("round_robin")
                .and_then(Value::as_array)
                .filter(|items| !items.is_empty())
                .ok_or_else(|| Stop::Render {
                    member: at.to_owned(),
                    reason: "round_robin holds no names".into(),
                })?;
            let pick = usize::try_from(firing.count % items.len() as u64).unwrap_or(0);
            Ok(items[pick].clone())
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render(v, firing, &join(at, k))?)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| render(v, firing, &format!("{at}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn render_text(text: &str, firing: &Firing<'_>, at: &str) -> Result<Value, Stop> {
    let found = placeholders(text).map_err(|reason| Stop::Render {
        member: at.to_owned(),
        reason,
    })?;
    let trimmed = text.trim();
    // A string that is one placeholder takes the value's own JSON type.
    if found.len() == 1 && trimmed.starts_with("{{") && trimmed.ends_with("}}") {
        return value_of(found[0], firing, at);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or(after.len());
        let value = value_of(after[..end].trim(), firing, at)?;
        match value {
            Value::String(s) => out.push_str(&s),
            other => out.push_str(&other.to_string()),
        }
        rest = after.get(end + 2..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn value_of(name: &str, firing: &Firing<'_>, at: &str) -> Result<Value, Stop> {
    let missing = |what: &str| Stop::Render {
        member: at.to_owned(),
        reason: format!("{{{{{name}}}}}: {what}"),
    };
    let time = |t: DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true));
    if let Some(path) = name.strip_prefix("data.") {
        let mut value = firing.data;
        for member in path.split('.') {
            value = value
                .get(member)
                .ok_or_else(|| missing("the trigger has no such field"))?;
        }
        if value.is_null() {
            return Err(missing("the trigger has no such field"));
        }
        return Ok(value.clone());
    }
    if name == "at" {
        return Ok(time(firing.at));
    }
    if let Some(delta) = offset(name) {
        return firing
            .at
            .checked_add_signed(delta)
            .map(time)
            .ok_or_else(|| missing("out of range"));
    }
    match name {
        "rule.id" => return Ok(json!(firing.rule_id)),
        "rule.version" => return Ok(json!(firing.version)),
        _ => {}
    }
    let event = firing
        .event
        .ok_or_else(|| missing("a scheduled trigger has no event"))?;
    Ok(match name {
        "event.id" => json!(event.id),
        "event.stream" => json!(event.stream),
        "event.entity" => json!(event.stream.split_once('-').map_or("", |(_, id)| id)),
        "event.type" => json!(event.event_type),
        "event.position" => json!(event.position),
        _ => return Err(missing("not a placeholder")),
    })
}

#[cfg(test)]
mod tests;
