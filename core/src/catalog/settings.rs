//! Tenant settings as facts: the `settings-<name>` streams. A setting in force at a position
//! is the last one recorded before it, so every judgement made at that position can be
//! explained from the log, even after the setting changes.
//!
//! `settings-consent` holds the consent regime ([`ConsentRegimeSet`]); a tenant that never
//! set one is under `opt_in`. `settings-sla` holds the SLA targets ([`SlaTargetsSet`]; the
//! defaults of [`SlaTargets::default`] until set) and `settings-calendar` the business
//! calendar SLA time is counted on ([`BusinessCalendarSet`], [`BusinessCalendarCleared`];
//! elapsed time until set and once cleared). [`crate::sla::SlaSettings`] folds the latter two.
//! `settings-complaints` holds the tenant's complaint categories and root causes
//! ([`ComplaintCategoriesSet`]); a tenant that never set them can mark no complaint and give
//! no root cause.

use std::sync::LazyLock;

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::catalog::fields::{DataWriter, EventData, FieldReader, Problem, json_kind, parse_date};
use crate::catalog::values::ConsentRegime;
use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::sla::{
    BusinessCalendar, DEFAULT_WARNING_PERCENT, SlaClock, SlaTarget, SlaTargets, WEEKDAYS, WallTime,
    WeekHours, WorkingInterval,
};

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

/// The entity id of the SLA target settings: the stream is `settings-sla`.
pub const SLA_SETTINGS: &str = "sla";

/// The entity id of the business calendar settings: the stream is `settings-calendar`.
pub const CALENDAR_SETTINGS: &str = "calendar";

static SLA_ID: LazyLock<EntityId> = LazyLock::new(|| EntityId::from_trusted(SLA_SETTINGS));

static CALENDAR_ID: LazyLock<EntityId> =
    LazyLock::new(|| EntityId::from_trusted(CALENDAR_SETTINGS));

/// The fields of one priority's targets in [`SlaTargetsSet`].
const TARGET_FIELDS: &[FieldInfo] = &[
    FieldInfo::required("first_response_minutes"),
    FieldInfo::required("resolution_minutes"),
];

/// The tenant's SLA targets from now on: for each priority, the minutes of counted time (on
/// the tenant's clock) within which the first response and the resolution are due, and when
/// to warn. Appended by an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaTargetsSet {
    pub targets: SlaTargets,
    /// Percent of a target at which a case is flagged as at risk, 1 to 99; absent: 75.
    pub warning_percent: Option<u8>,
}

impl SlaTargetsSet {
    /// The warning percentage in force: the one given, else [`DEFAULT_WARNING_PERCENT`].
    pub fn warning_percent(&self) -> u8 {
        self.warning_percent.unwrap_or(DEFAULT_WARNING_PERCENT)
    }
}

fn read_target(fields: &FieldReader<'_>, priority: &str) -> Result<SlaTarget, CatalogError> {
    let target = fields.object(priority, TARGET_FIELDS)?;
    Ok(SlaTarget {
        first_response_minutes: target.required("first_response_minutes")?,
        resolution_minutes: target.required("resolution_minutes")?,
    })
}

fn target_json(target: &SlaTarget) -> Value {
    json!({
        "first_response_minutes": target.first_response_minutes,
        "resolution_minutes": target.resolution_minutes,
    })
}

impl EventData for SlaTargetsSet {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("low"),
        FieldInfo::required("normal"),
        FieldInfo::required("high"),
        FieldInfo::required("urgent"),
        FieldInfo::optional("warning_percent"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(SlaTargetsSet {
            targets: SlaTargets {
                low: read_target(fields, "low")?,
                normal: read_target(fields, "normal")?,
                high: read_target(fields, "high")?,
                urgent: read_target(fields, "urgent")?,
            },
            warning_percent: fields.optional("warning_percent")?,
        })
    }

    fn write(&self, data: &mut DataWriter) {
        data.value("low", target_json(&self.targets.low));
        data.value("normal", target_json(&self.targets.normal));
        data.value("high", target_json(&self.targets.high));
        data.value("urgent", target_json(&self.targets.urgent));
        data.optional_number("warning_percent", self.warning_percent);
    }

    fn entity_id(&self) -> &EntityId {
        &SLA_ID
    }

    fn validate(&self) -> Result<(), Problem> {
        self.targets
            .check()
            .map_err(|e| Problem::field(&e.field, e.reason))?;
        match self.warning_percent {
            Some(percent) if !(1..=99).contains(&percent) => Err(Problem::field(
                "warning_percent",
                format!("must be from 1 to 99, got {percent}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The fields of `hours` in [`BusinessCalendarSet`]: the seven weekdays.
const HOURS_FIELDS: &[FieldInfo] = &[
    FieldInfo::required("monday"),
    FieldInfo::required("tuesday"),
    FieldInfo::required("wednesday"),
    FieldInfo::required("thursday"),
    FieldInfo::required("friday"),
    FieldInfo::required("saturday"),
    FieldInfo::required("sunday"),
];

/// The tenant's business calendar from now on: SLA time counts only the working time of
/// this calendar (see [`crate::sla`]). Appended by an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendarSet {
    pub calendar: BusinessCalendar,
}

impl BusinessCalendarSet {
    /// The clock SLA time is counted on while this calendar is in force.
    pub fn clock(&self) -> SlaClock {
        SlaClock::Business(self.calendar.clone())
    }
}

/// One `["HH:MM", "HH:MM"]` interval of `hours.<day>[index]`.
fn read_interval(
    hours: &FieldReader<'_>,
    path: &str,
    value: &Value,
) -> Result<WorkingInterval, CatalogError> {
    let shape = "must be a pair of local times [\"HH:MM\", \"HH:MM\"], e.g. [\"09:00\", \"17:30\"]";
    let Value::Array(pair) = value else {
        return Err(hours.error(path, format!("{shape}, got {}", json_kind(value))));
    };
    let [start, end] = pair.as_slice() else {
        return Err(hours.error(path, format!("{shape}, got {} items", pair.len())));
    };
    let time = |value: &Value, which: &str, end: bool| {
        let text = value.as_str().ok_or_else(|| {
            hours.error(
                path,
                format!(
                    "the {which} time must be a string \"HH:MM\", got {}",
                    json_kind(value)
                ),
            )
        })?;
        WallTime::parse(text)
            .filter(|time| end || *time < WallTime::END_OF_DAY)
            .ok_or_else(|| {
                let range = if end {
                    "00:00 to 24:00"
                } else {
                    "00:00 to 23:59"
                };
                hours.error(
                    path,
                    format!(
                        "the {which} time `{}` is not a time HH:MM from {range}",
                        crate::catalog::fields::shorten(text)
                    ),
                )
            })
    };
    Ok(WorkingInterval::new(
        time(start, "start", false)?,
        time(end, "end", true)?,
    ))
}

impl EventData for BusinessCalendarSet {
    const FIELDS: &'static [FieldInfo] = &[
        FieldInfo::required("time_zone"),
        FieldInfo::required("hours"),
        FieldInfo::optional("holidays"),
    ];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        let time_zone: String = fields.required("time_zone")?;
        let hours = fields.object("hours", HOURS_FIELDS)?;
        let mut week = WeekHours::default();
        for (weekday, day) in WEEKDAYS {
            let items = hours.optional_array(day)?.unwrap_or_default();
            let intervals = week.day_mut(weekday);
            for (index, item) in items.iter().enumerate() {
                intervals.push(read_interval(&hours, &format!("{day}[{index}]"), item)?);
            }
        }
        let mut holidays = Vec::new();
        for (index, item) in fields
            .optional_array("holidays")?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("holidays[{index}]");
            let date: NaiveDate = item.as_str().and_then(parse_date).ok_or_else(|| {
                fields.error(
                    &path,
                    match item.as_str() {
                        Some(text) => format!(
                            "`{}` is not a date written YYYY-MM-DD",
                            crate::catalog::fields::shorten(text)
                        ),
                        None => {
                            format!("must be a date written YYYY-MM-DD, got {}", json_kind(item))
                        }
                    },
                )
            })?;
            holidays.push(date);
        }
        let calendar = BusinessCalendar::new(&time_zone, week, holidays)
            .map_err(|e| fields.error(&e.field(), e.reason()))?;
        Ok(BusinessCalendarSet { calendar })
    }

    fn write(&self, data: &mut DataWriter) {
        data.string("time_zone", self.calendar.time_zone());
        let mut hours = serde_json::Map::new();
        for (weekday, day) in WEEKDAYS {
            let intervals: Vec<Value> = self
                .calendar
                .week()
                .day(weekday)
                .iter()
                .map(|i| json!([i.start.to_string(), i.end.to_string()]))
                .collect();
            hours.insert(day.to_owned(), Value::Array(intervals));
        }
        data.value("hours", Value::Object(hours));
        if !self.calendar.holidays().is_empty() {
            let holidays = self
                .calendar
                .holidays()
                .iter()
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .collect();
            data.value("holidays", Value::Array(holidays));
        }
    }

    fn entity_id(&self) -> &EntityId {
        &CALENDAR_ID
    }
}

/// The tenant's business calendar is removed: from now on SLA time is elapsed time (24x7)
/// again. Appended by an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendarCleared;

impl EventData for BusinessCalendarCleared {
    const FIELDS: &'static [FieldInfo] = &[];
    const PERSONAL_FIELDS: &'static [&'static str] = &[];

    fn read(_fields: &FieldReader<'_>) -> Result<Self, CatalogError> {
        Ok(BusinessCalendarCleared)
    }

    fn write(&self, _data: &mut DataWriter) {}

    fn entity_id(&self) -> &EntityId {
        &CALENDAR_ID
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
