//! Reading and writing event data field by field, so every error names its field path and the
//! stored form is built the same way for every event type.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::catalog::{CatalogError, FieldInfo};
use crate::ids::EntityId;
use crate::money::Money;
use crate::money::currency::Currency;

/// Longest accepted text field, in characters; longer text belongs in a document store.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Longest piece of input echoed back in an error message.
const MAX_ECHO_CHARS: usize = 80;

/// Longest error reason; serde's messages echo input, which may be huge.
const MAX_REASON_CHARS: usize = 400;

/// What every event data struct provides to the catalog. Implemented once per event type.
pub(crate) trait EventData: Sized {
    /// Current schema version of the type; raise it only together with an upcaster step.
    const VERSION: u32 = 1;
    /// Every field the stored form may contain, in documented order.
    const FIELDS: &'static [FieldInfo];
    /// The names of the fields in `FIELDS` that hold personal data.
    const PERSONAL_FIELDS: &'static [&'static str];

    /// Reads the typed struct; `fields` has already rejected unknown and missing fields.
    fn read(fields: &FieldReader<'_>) -> Result<Self, CatalogError>;
    /// Writes the canonical stored form.
    fn write(&self, data: &mut DataWriter);
    /// The id of the stream's entity.
    fn entity_id(&self) -> &EntityId;
    /// The customer the event touches, for timelines.
    fn customer_id(&self) -> Option<&EntityId> {
        None
    }
    /// Value rules that hold however the struct was built (parsed or constructed in code).
    fn validate(&self) -> Result<(), Problem> {
        Ok(())
    }
}

/// A value rule broken by otherwise well-typed data: the field (or the whole data) and why.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) field: Option<String>,
    pub(crate) reason: String,
}

impl Problem {
    pub(crate) fn field(field: &str, reason: impl ToString) -> Problem {
        Problem {
            field: Some(field.to_owned()),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn data(reason: impl ToString) -> Problem {
        Problem {
            field: None,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn into_error(self, event_type: &'static str) -> CatalogError {
        CatalogError::InvalidData {
            event_type,
            path: match self.field {
                Some(field) => format!("data.{field}"),
                None => "data".to_owned(),
            },
            reason: self.reason,
        }
    }
}

/// Checks that at least one of the named optional fields is present.
pub(crate) fn at_least_one(names: &[&str], present: &[bool]) -> Result<(), Problem> {
    if present.iter().any(|p| *p) {
        Ok(())
    } else {
        Err(Problem::data(format!(
            "at least one of {} must be given",
            names.join(", ")
        )))
    }
}

/// Typed access to the fields of one event's data object.
pub(crate) struct FieldReader<'a> {
    event_type: &'static str,
    object: &'a Map<String, Value>,
    /// Reading the log, not judging new input: text stored before the storable-text rule
    /// ([`crate::catalog::text`]) is read as it is, so no stored event becomes unreadable.
    stored: bool,
    /// Put before every field name in error paths: `lines[1].` for the fields of an order's
    /// second line, empty for the data's own fields.
    prefix: String,
}

impl<'a> FieldReader<'a> {
    /// Rejects data that is not an object, has a field not in `fields`, or lacks a required one.
    pub(crate) fn new(
        event_type: &'static str,
        fields: &[FieldInfo],
        data: &'a Value,
    ) -> Result<FieldReader<'a>, CatalogError> {
        let Value::Object(object) = data else {
            return Err(
                Problem::data(format!("must be a JSON object, got {}", json_kind(data)))
                    .into_error(event_type),
            );
        };
        let reader = FieldReader {
            event_type,
            object,
            stored: false,
            prefix: String::new(),
        };
        reader.check_fields(fields)
    }

    /// Rejects a field not in `fields` and a missing required one.
    fn check_fields(self, fields: &[FieldInfo]) -> Result<FieldReader<'a>, CatalogError> {
        let (event_type, object) = (self.event_type, self.object);
        let reader = self;
        if let Some(unknown) = object.keys().find(|k| !fields.iter().any(|f| f.name == *k)) {
            let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
            return Err(CatalogError::InvalidData {
                event_type,
                path: format!("data.{}{}", reader.prefix, shorten(unknown)),
                reason: if known.is_empty() {
                    "unknown field; this event has no fields".to_owned()
                } else {
                    format!("unknown field; known fields are {}", known.join(", "))
                },
            });
        }
        if let Some(missing) = fields
            .iter()
            .find(|f| f.required && reader.present(f.name).is_none())
        {
            return Err(reader.error(missing.name, "missing required field"));
        }
        Ok(reader)
    }

    /// The same reader for stored data (see `stored`).
    pub(crate) fn for_stored(self, stored: bool) -> FieldReader<'a> {
        FieldReader { stored, ..self }
    }

    /// A reader of one element of an array field (`lines[1]`), whose errors name it: the
    /// element must be an object with only `fields`, the required ones present.
    pub(crate) fn element(
        &self,
        field: &str,
        index: usize,
        fields: &[FieldInfo],
        value: &'a Value,
    ) -> Result<FieldReader<'a>, CatalogError> {
        let path = format!("{field}[{index}]");
        let Value::Object(object) = value else {
            return Err(self.error(
                &path,
                format!("must be a JSON object, got {}", json_kind(value)),
            ));
        };
        FieldReader {
            event_type: self.event_type,
            object,
            stored: self.stored,
            prefix: format!("{}{path}.", self.prefix),
        }
        .check_fields(fields)
    }

    /// A reader of an object field (`low`), whose errors name it (`data.low.resolution_minutes`):
    /// the field must be an object with only `fields`, the required ones present.
    pub(crate) fn object(
        &self,
        field: &str,
        fields: &[FieldInfo],
    ) -> Result<FieldReader<'a>, CatalogError> {
        let value = self
            .present(field)
            .ok_or_else(|| self.error(field, "missing required field"))?;
        let Value::Object(object) = value else {
            return Err(self.error(
                field,
                format!("must be a JSON object, got {}", json_kind(value)),
            ));
        };
        FieldReader {
            event_type: self.event_type,
            object,
            stored: self.stored,
            prefix: format!("{}{field}.", self.prefix),
        }
        .check_fields(fields)
    }

    /// An optional array field: its elements, `None` when absent (or `null`).
    pub(crate) fn optional_array(&self, field: &str) -> Result<Option<&'a [Value]>, CatalogError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.error(
                field,
                format!("must be a JSON array, got {}", json_kind(other)),
            )),
        }
    }

    /// An error naming `field` (under this reader's prefix).
    pub(crate) fn error(&self, field: &str, reason: impl ToString) -> CatalogError {
        CatalogError::InvalidData {
            event_type: self.event_type,
            path: format!("data.{}{field}", self.prefix),
            reason: cut(&reason.to_string(), MAX_REASON_CHARS),
        }
    }

    /// Attributes a value-rule problem to this event type.
    pub(crate) fn problem(&self, problem: Problem) -> CatalogError {
        problem.into_error(self.event_type)
    }

    /// The field's value; an explicit `null` counts as absent.
    fn present(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|value| !value.is_null())
    }

    /// A required field of any deserializable type (ids, closed sets, booleans).
    pub(crate) fn required<T: DeserializeOwned>(&self, field: &str) -> Result<T, CatalogError> {
        self.optional(field)?
            .ok_or_else(|| self.error(field, "missing required field"))
    }

    /// An optional field of any deserializable type.
    pub(crate) fn optional<T: DeserializeOwned>(
        &self,
        field: &str,
    ) -> Result<Option<T>, CatalogError> {
        self.present(field)
            .map(|value| T::deserialize(value).map_err(|e| self.error(field, e)))
            .transpose()
    }

    /// A required non-blank, storable ([`crate::catalog::text`]) text of at most
    /// [`MAX_TEXT_CHARS`] characters.
    pub(crate) fn text(&self, field: &str) -> Result<String, CatalogError> {
        self.optional_text(field)?
            .ok_or_else(|| self.error(field, "missing required field"))
    }

    /// An optional non-blank, storable ([`crate::catalog::text`]) text of at most
    /// [`MAX_TEXT_CHARS`] characters.
    pub(crate) fn optional_text(&self, field: &str) -> Result<Option<String>, CatalogError> {
        let Some(text) = self.optional::<String>(field)? else {
            return Ok(None);
        };
        if text.trim().is_empty() {
            return Err(self.error(field, "must not be blank"));
        }
        if let Some(reason) = crate::catalog::text::unstorable(&text).filter(|_| !self.stored) {
            return Err(self.error(field, reason));
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(self.error(
                field,
                format!("is {chars} characters long, at most {MAX_TEXT_CHARS} are allowed"),
            ));
        }
        Ok(Some(text))
    }

    /// A required calendar date written `YYYY-MM-DD`.
    pub(crate) fn date(&self, field: &str) -> Result<NaiveDate, CatalogError> {
        self.optional_date(field)?
            .ok_or_else(|| self.error(field, "missing required field"))
    }

    /// An optional calendar date written `YYYY-MM-DD`.
    pub(crate) fn optional_date(&self, field: &str) -> Result<Option<NaiveDate>, CatalogError> {
        let Some(text) = self.optional::<String>(field)? else {
            return Ok(None);
        };
        parse_date(&text).map(Some).ok_or_else(|| {
            self.error(
                field,
                format!("`{}` is not a date written YYYY-MM-DD", shorten(&text)),
            )
        })
    }

    /// A required moment written in RFC 3339 with an offset (`2027-01-31T17:00:00Z`), kept in
    /// UTC at microsecond precision (the store's precision for business times).
    pub(crate) fn timestamp(&self, field: &str) -> Result<DateTime<Utc>, CatalogError> {
        let text: String = self.required(field)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| crate::envelope::to_stored_precision(at.with_timezone(&Utc)))
            .map_err(|_| {
                self.error(
                    field,
                    format!(
                        "`{}` is not a time written RFC 3339, e.g. 2027-01-31T17:00:00Z",
                        shorten(&text)
                    ),
                )
            })
    }

    /// A required amount with its currency, from two fields; errors name the faulty one.
    pub(crate) fn money(&self, amount: &str, currency: &str) -> Result<Money, CatalogError> {
        self.optional_money(amount, currency)?
            .ok_or_else(|| self.error(amount, "missing required field"))
    }

    /// A required amount in a currency given elsewhere (an order line's unit price is in the
    /// order's currency).
    pub(crate) fn money_in(&self, field: &str, currency: Currency) -> Result<Money, CatalogError> {
        let value = self
            .present(field)
            .ok_or_else(|| self.error(field, "missing required field"))?;
        Money::from_json(value, currency).map_err(|e| self.error(field, e))
    }

    /// An optional amount with its currency: both fields or neither.
    pub(crate) fn optional_money(
        &self,
        amount: &str,
        currency: &str,
    ) -> Result<Option<Money>, CatalogError> {
        match (self.present(amount), self.present(currency)) {
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err(self.error(currency, format!("required when {amount} is given")))
            }
            (None, Some(_)) => {
                Err(self.error(amount, format!("required when {currency} is given")))
            }
            (Some(amount_value), Some(_)) => {
                let code: String = self.required(currency)?;
                let parsed = Currency::parse(&code).map_err(|e| self.error(currency, e))?;
                Money::from_json(amount_value, parsed)
                    .map(Some)
                    .map_err(|e| self.error(amount, e))
            }
        }
    }
}

/// Builds the canonical stored form: absent optionals omitted, amounts normalised. Key order
/// is the JSON map's (sorted), so equal events always give equal bytes.
#[derive(Default)]
pub(crate) struct DataWriter {
    object: Map<String, Value>,
}

impl DataWriter {
    pub(crate) fn string(&mut self, field: &str, value: &str) {
        self.object
            .insert(field.to_owned(), Value::String(value.to_owned()));
    }

    pub(crate) fn optional_string(&mut self, field: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(field, value);
        }
    }

    pub(crate) fn id(&mut self, field: &str, value: &EntityId) {
        self.string(field, value.as_str());
    }

    pub(crate) fn optional_id(&mut self, field: &str, value: Option<&EntityId>) {
        self.optional_string(field, value.map(EntityId::as_str));
    }

    pub(crate) fn bool(&mut self, field: &str, value: bool) {
        self.object.insert(field.to_owned(), Value::Bool(value));
    }

    pub(crate) fn optional_number(&mut self, field: &str, value: Option<u8>) {
        if let Some(value) = value {
            self.object.insert(field.to_owned(), Value::from(value));
        }
    }

    pub(crate) fn date(&mut self, field: &str, value: NaiveDate) {
        self.string(field, &value.format("%Y-%m-%d").to_string());
    }

    pub(crate) fn optional_date(&mut self, field: &str, value: Option<NaiveDate>) {
        if let Some(value) = value {
            self.date(field, value);
        }
    }

    /// A moment in UTC, RFC 3339 with microseconds when it has any (`2027-01-31T17:00:00Z`).
    pub(crate) fn timestamp(&mut self, field: &str, value: DateTime<Utc>) {
        self.string(field, &value.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }

    /// Amounts are stored as decimal strings with exactly the currency's digits.
    pub(crate) fn money(&mut self, amount: &str, currency: &str, value: &Money) {
        self.string(amount, &value.to_decimal_string());
        self.string(currency, value.currency.code());
    }

    /// Any JSON value, already in canonical form (an order's lines).
    pub(crate) fn value(&mut self, field: &str, value: Value) {
        self.object.insert(field.to_owned(), value);
    }

    pub(crate) fn optional_money(&mut self, amount: &str, currency: &str, value: Option<&Money>) {
        if let Some(value) = value {
            self.money(amount, currency, value);
        }
    }

    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.object)
    }
}

/// Parses exactly `YYYY-MM-DD` (chrono alone would also take unpadded or signed years).
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Cuts input echoed in messages, so huge input does not flood logs.
pub(crate) fn shorten(text: &str) -> String {
    cut(text, MAX_ECHO_CHARS)
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let head: String = text.chars().take(max_chars).collect();
    format!("{head}…")
}

/// Declares a closed set of strings as an enum with `as_str`, `parse`, `ALL` and serde impls
/// that use exactly those strings.
macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as it is written in event JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value written `text` in event JSON, if any.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    <D::Error as serde::de::Error>::custom(format!(
                        "unknown value `{}`, expected one of: {}",
                        $crate::catalog::fields::shorten(&text),
                        [$($text),+].join(", ")
                    ))
                })
            }
        }
    };
}

pub(crate) use closed_set;
