//! The event catalog: every event type the CRM records, how its JSON data is validated, its
//! canonical stored form, which fields hold personal data, and how old versions are upcast.
//!
//! Parsing is strict: unknown fields, missing required fields, ill-typed values and broken
//! value rules are rejected with a message naming the event type and the field path, such as
//! `OrderPlaced: data.amount: amount 11.777 has 3 decimals but USD has 2`. An explicit `null`
//! counts as an absent optional field.

pub mod campaign;
pub mod case;
pub mod customer;
pub(crate) mod fields;
pub mod lead;
pub mod opportunity;
pub mod quota;
pub mod settings;
pub mod task;
pub mod text;
pub mod values;
pub mod workflow;

use serde_json::Value;

use crate::catalog::fields::{DataWriter, EventData, FieldReader};
use crate::envelope::{NewEvent, StreamId};
use crate::ids::EntityId;

/// Why event data could not be accepted or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The type is not in the catalog: reject the event as a caller mistake (4xx), store nothing.
    #[error("unknown event type `{event_type}`")]
    UnknownEventType { event_type: String },
    /// The data breaks the type's schema: reject the event (4xx) and show the message as is,
    /// it names the field path.
    #[error("{event_type}: {path}: {reason}")]
    InvalidData {
        event_type: &'static str,
        path: String,
        reason: String,
    },
    /// A stored schema version this build does not know: stop and upgrade the software; never
    /// guess at newer data.
    #[error(
        "{event_type}: schema version {version} is not supported; this build reads versions 1 to {current}"
    )]
    UnsupportedSchemaVersion {
        event_type: &'static str,
        version: u32,
        current: u32,
    },
    /// A version was raised without its upcaster step: a bug in this crate, report it.
    #[error("{event_type}: no upcaster from schema version {from_version}")]
    MissingUpcaster {
        event_type: &'static str,
        from_version: u32,
    },
}

/// One field of an event type's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    pub name: &'static str,
    pub required: bool,
    /// Holds personal data: encrypted with the customer's key and unreadable after erasure.
    pub personal: bool,
}

impl FieldInfo {
    /// A field every event of the type carries.
    pub const fn required(name: &'static str) -> FieldInfo {
        FieldInfo {
            name,
            required: true,
            personal: false,
        }
    }

    /// A field that may be absent.
    pub const fn optional(name: &'static str) -> FieldInfo {
        FieldInfo {
            name,
            required: false,
            personal: false,
        }
    }

    /// The same field, marked as personal data.
    pub const fn personal(self) -> FieldInfo {
        FieldInfo {
            personal: true,
            ..self
        }
    }
}

/// Machine-readable description of one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeInfo {
    pub name: &'static str,
    /// The stream category: the stream is `<category>-<entity id>`.
    pub category: &'static str,
    /// Current schema version.
    pub version: u32,
    /// Every field, in documented order.
    pub fields: &'static [FieldInfo],
    /// Names of the fields that hold personal data.
    pub personal_fields: &'static [&'static str],
}

impl EventTypeInfo {
    /// The description of `event_type`, if it is in the catalog.
    pub fn find(event_type: &str) -> Option<&'static EventTypeInfo> {
        EVENT_TYPES.iter().find(|info| info.name == event_type)
    }
}

/// Names of the personal-data fields of `event_type`; empty for unknown types.
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    EventTypeInfo::find(event_type).map_or(&[], |info| info.personal_fields)
}

/// Brings stored data of `event_type` at `schema_version` up to the current version, one
/// step at a time. `OrderPlaced` (lines), `InteractionLogged` (purpose), `CampaignLaunched`
/// (a consent channel) and `CaseResolved` (a root cause) are at version 2; every other type
/// is at version 1, which passes through unchanged.
pub fn upcast(event_type: &str, schema_version: u32, data: Value) -> Result<Value, CatalogError> {
    let info = EventTypeInfo::find(event_type)
        .ok_or_else(|| CatalogError::unknown_event_type(event_type))?;
    upcast_with(info, schema_version, data, upcast_step)
}

/// One upcaster step: data of `event_type` at `from_version` to `from_version + 1`.
///
/// To evolve a type, raise its `VERSION` and add one arm here, for example
/// `("OrderPlaced", 1) => Ok(order_placed_v1_to_v2(data)),`.
fn upcast_step(
    event_type: &'static str,
    from_version: u32,
    data: Value,
) -> Result<Value, CatalogError> {
    match (event_type, from_version) {
        // Version 2 added the optional `lines` and `discount`: a version 1 order is the same
        // order without lines, its data unchanged.
        ("OrderPlaced", 1) => Ok(data),
        // Version 2 added the optional `purpose`: a version 1 interaction has none.
        ("InteractionLogged", 1) => Ok(data),
        // Version 2 made `channel` a consent channel and moved other labels to `medium`.
        ("CampaignLaunched", 1) => Ok(campaign::campaign_launched_v1_to_v2(data)),
        // Version 2 added the optional `root_cause`: a version 1 resolution has none.
        ("CaseResolved", 1) => Ok(data),
        _ => Err(CatalogError::MissingUpcaster {
            event_type,
            from_version,
        }),
    }
}

fn upcast_with(
    info: &'static EventTypeInfo,
    schema_version: u32,
    mut data: Value,
    step: impl Fn(&'static str, u32, Value) -> Result<Value, CatalogError>,
) -> Result<Value, CatalogError> {
    if schema_version == 0 || schema_version > info.version {
        return Err(CatalogError::UnsupportedSchemaVersion {
            event_type: info.name,
            version: schema_version,
            current: info.version,
        });
    }
    for from_version in schema_version..info.version {
        data = step(info.name, from_version, data)?;
    }
    Ok(data)
}

impl CatalogError {
    fn unknown_event_type(event_type: &str) -> CatalogError {
        CatalogError::UnknownEventType {
            event_type: fields::shorten(event_type),
        }
    }
}

/// Declares `DomainEvent`, `EVENT_TYPES` and the per-type dispatch from one list, so a new
/// event type is one struct plus one name here.
macro_rules! domain_events {
    ($($category:ident => [$($event:ident),+ $(,)?]),+ $(,)?) => {
        /// Every fact the CRM records: one variant per event type, named like the type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum DomainEvent {
            $($($event($category::$event),)+)+
        }

        /// Every event type with its category, version and fields, in catalog order.
        pub static EVENT_TYPES: &[EventTypeInfo] = &[
            $($(EventTypeInfo {
                name: stringify!($event),
                category: stringify!($category),
                version: <$category::$event as EventData>::VERSION,
                fields: <$category::$event as EventData>::FIELDS,
                personal_fields: <$category::$event as EventData>::PERSONAL_FIELDS,
            },)+)+
        ];

        impl DomainEvent {
            fn read(event_type: &str, data: &Value, stored: bool) -> Result<DomainEvent, CatalogError> {
                $($(if event_type == stringify!($event) {
                    let fields = <$category::$event as EventData>::FIELDS;
                    let reader = FieldReader::new(stringify!($event), fields, data)?.for_stored(stored);
                    return <$category::$event as EventData>::read(&reader).map(DomainEvent::$event);
                })+)+
                Err(CatalogError::unknown_event_type(event_type))
            }

            /// The event type name, e.g. `"OrderPlaced"`.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $($(DomainEvent::$event(_) => stringify!($event),)+)+
                }
            }

            /// The stream category: `"customer"`, `"lead"`, `"opportunity"`, `"case"` or
            /// `"campaign"`.
            pub fn category(&self) -> &'static str {
                match self {
                    $($(DomainEvent::$event(_) => stringify!($category),)+)+
                }
            }

            /// The schema version this build writes for the event's type.
            pub fn schema_version(&self) -> u32 {
                match self {
                    $($(DomainEvent::$event(_) => <$category::$event as EventData>::VERSION,)+)+
                }
            }

            /// The id of the entity whose stream the event belongs to.
            pub fn entity_id(&self) -> &EntityId {
                match self {
                    $($(DomainEvent::$event(event) => event.entity_id(),)+)+
                }
            }

            /// The customer the event touches, for timelines: the stream's customer for
            /// customer events, the customer converted to for `LeadConverted`, the customer
            /// named by opportunity, case and campaign events that carry one.
            pub fn customer_id(&self) -> Option<&EntityId> {
                match self {
                    $($(DomainEvent::$event(event) => EventData::customer_id(event),)+)+
                }
            }

            /// The canonical stored form: amounts as decimal strings with exactly the
            /// currency's digits next to their currency, absent optional fields omitted.
            pub fn to_data(&self) -> Value {
                let mut data = DataWriter::default();
                match self {
                    $($(DomainEvent::$event(event) => event.write(&mut data),)+)+
                }
                data.into_value()
            }

            /// Checks the value rules that hold however the event was built: order amounts not
            /// negative, refund amounts positive, "at least one field" updates, probabilities up to 100.
            pub fn validate(&self) -> Result<(), CatalogError> {
                let problem = match self {
                    $($(DomainEvent::$event(event) => event.validate(),)+)+
                };
                problem.map_err(|problem| problem.into_error(self.event_type()))
            }
        }
    };
}

domain_events! {
    customer => [
        CustomerRegistered,
        CustomerProfileUpdated,
        CustomerConsentChanged,
        InteractionLogged,
        OrderPlaced,
        OrderRefunded,
        CustomerMerged,
        CustomerErased,
        ContactLinked,
        ContactUnlinked,
        NpsAnswered,
    ],
    lead => [
        LeadCaptured,
        LeadQualified,
        LeadDisqualified,
        LeadConverted,
        LeadErased,
    ],
    opportunity => [
        OpportunityOpened,
        OpportunityStageChanged,
        OpportunityUpdated,
        OpportunityWon,
        OpportunityLost,
    ],
    case => [
        CaseOpened,
        CaseAssigned,
        CaseResponded,
        CaseEscalated,
        CaseResolved,
        CaseReopened,
        CaseClosed,
        CasePaused,
        CaseResumed,
        CaseMarkedComplaint,
        CsatRecorded,
    ],
    campaign => [
        CampaignLaunched,
        CampaignMemberAdded,
        CampaignMemberResponded,
        CampaignCostRecorded,
    ],
    task => [TaskCreated, TaskRescheduled, TaskCompleted, TaskCancelled],
    quota => [QuotaSet],
    settings => [
        ConsentRegimeSet,
        SlaTargetsSet,
        BusinessCalendarSet,
        BusinessCalendarCleared,
        ComplaintCategoriesSet,
    ],
    workflow => [WorkflowRuleSet, WorkflowRuleRemoved],
}

impl DomainEvent {
    /// Reads event data as emitters send it (or as it is stored, after [`upcast`]).
    pub fn parse(event_type: &str, data: &Value) -> Result<DomainEvent, CatalogError> {
        let event = DomainEvent::read(event_type, data, false)?;
        event.validate()?;
        Ok(event)
    }

    /// Reads event data from the log (after [`upcast`]): like [`DomainEvent::parse`], except
    /// that text accepted before the storable-text rule ([`text`]; a NUL) is read as stored,
    /// so an event already in a log never becomes unreadable. New input goes through
    /// `parse`.
    pub fn parse_stored(event_type: &str, data: &Value) -> Result<DomainEvent, CatalogError> {
        let event = DomainEvent::read(event_type, data, true)?;
        event.validate()?;
        Ok(event)
    }

    /// The stream the event is appended to: `"<category>-<entity id>"`.
    pub fn stream_id(&self) -> String {
        format!("{}-{}", self.category(), self.entity_id())
    }

    /// The stream as the store addresses it.
    pub fn stream(&self) -> StreamId {
        // Categories are lowercase words and entity ids are validated `EntityId`s, so the
        // name always parses; the fallback keeps this total without a panic path.
        StreamId::parse(&self.stream_id())
            .unwrap_or_else(|_| StreamId::from_stored(self.stream_id()))
    }

    /// The event ready to append: its type, schema version and canonical data, with a fresh
    /// id; set the id, business time and metadata on the result as the emitter gave them.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(self.event_type(), &self.to_data()).with_schema_version(self.schema_version())
    }
}

#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod doc_tests {
    use crate::catalog::{DomainEvent, EVENT_TYPES};

    /// The catalog document: `docs/events.md` at the root of the repository.
    const EVENTS_DOC: &str = include_str!("../../../docs/events.md");

    /// The text of the `### <event_type>` section.
    fn section(event_type: &str) -> &'static str {
        let heading = format!("\n### {event_type}\n");
        let start = EVENTS_DOC
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/events.md lacks a `### {event_type}` section"));
        let rest = &EVENTS_DOC[start + heading.len()..];
        let end = rest
            .find("\n## ")
            .into_iter()
            .chain(rest.find("\n### "))
            .min();
        &rest[..end.unwrap_or(rest.len())]
    }

    #[test]
    fn the_catalog_document_describes_every_field_of_every_event_type() {
        for info in EVENT_TYPES {
            let section = section(info.name);
            assert!(
                section.contains(&format!("Version {}", info.version)),
                "{}",
                info.name
            );
            for field in info.fields {
                let row = section
                    .lines()
                    .find(|line| line.starts_with(&format!("| `{}` |", field.name)))
                    .unwrap_or_else(|| panic!("{}: no row for `{}`", info.name, field.name));
                let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
                let yes_no = |flag: bool| if flag { "yes" } else { "no" };
                let expected = [yes_no(field.required), yes_no(field.personal)];
                assert_eq!(
                    cells[cells.len() - 2..]
                        .iter()
                        .map(|c| c.trim())
                        .collect::<Vec<_>>(),
                    expected,
                    "{}: row of `{}` (required, personal)",
                    info.name,
                    field.name
                );
            }
        }
    }

    #[test]
    fn the_catalog_document_names_every_personal_field() {
        for info in EVENT_TYPES {
            for personal in info.personal_fields {
                assert!(
                    section(info.name).contains(&format!("| `{personal}` |")),
                    "docs/events.md lacks personal field `{personal}` of {}",
                    info.name
                );
            }
        }
    }

    #[test]
    fn every_example_in_the_catalog_document_parses() {
        for info in EVENT_TYPES {
            let section = section(info.name);
            let example = section
                .split("```json\n")
                .nth(1)
                .and_then(|rest| rest.split("\n```").next())
                .unwrap_or_else(|| panic!("{}: no JSON example", info.name));
            let envelope: serde_json::Value = serde_json::from_str(example).unwrap();
            assert_eq!(envelope["type"], info.name);
            DomainEvent::parse(info.name, &envelope["data"]).unwrap();
        }
    }
}
