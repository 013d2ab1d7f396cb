//! The ingest decision, shared by `POST /v1/events` and `crm-replay import` (API format):
//! parse an event as emitters send it ([`parse`]), then judge and append a batch
//! ([`ingest::append`]): ids already stored are duplicates (same content) or refused (other
//! content, another type), expected revisions are checked, each stream's state is folded and
//! its aggregate's rules asked, money totals the read models keep are kept from overflowing
//! ([`totals`]), and the batch is appended in one transaction expecting every stream at the
//! revision its state was folded from.
//!
//! No HTTP here: a refusal is a [`CommandError`] carrying the index of the event at fault
//! and the member it names; the API renders it `events[i].member: reason` (with a status),
//! import renders it `line N: member: reason`. An invalid batch lists every invalid event
//! ([`Refusals`], up to [`refusals::MAX_LISTED`]); a refusal that depends on the state
//! folded so far (a conflict, a money total) is the first one met.

pub mod cache;
pub mod ingest;
pub mod parse;
pub mod refusals;
pub mod totals;

pub use cache::StreamCache;
pub use ingest::{Appended, Outcome, append};
pub use parse::{Incoming, ParseOptions, parse_event};
pub use refusals::Refusals;

use crate::store::StoreError;

/// Where a refusal points: the event's index in its batch and, when one is at fault, the
/// member (`id`, `data.amount`, `expected_revision`), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The event's index in the batch (0-based).
    pub index: usize,
    /// The member at fault, when the reason does not name it itself.
    pub member: Option<String>,
    /// Why, without the location.
    pub reason: String,
    /// The type of an event its entity's rules refuse, or whose data its catalog entry
    /// refuses (then `member` is the data's path).
    pub event_type: Option<&'static str>,
}

impl Refusal {
    /// A refusal of event `index`, naming `member`.
    pub fn at(index: usize, member: impl Into<String>, reason: impl Into<String>) -> Refusal {
        Refusal {
            index,
            member: Some(member.into()),
            reason: reason.into(),
            event_type: None,
        }
    }

    /// A refusal of event `index` as a whole (the reason names what is wrong).
    pub fn whole(index: usize, reason: impl Into<String>) -> Refusal {
        Refusal {
            index,
            member: None,
            reason: reason.into(),
            event_type: None,
        }
    }

    /// A refusal of event `index`, of type `event_type`, by its entity's rules.
    pub fn by_rule(index: usize, event_type: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal {
            index,
            member: None,
            reason: reason.into(),
            event_type: Some(event_type),
        }
    }

    /// A refusal of event `index`, of type `event_type`, by its catalog entry: `path` (such
    /// as `data.amount`) breaks the type's schema.
    pub fn in_data(
        index: usize,
        event_type: &'static str,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> Refusal {
        Refusal {
            index,
            member: Some(path.into()),
            reason: reason.into(),
            event_type: Some(event_type),
        }
    }

    /// `member: reason`, or the reason alone: what follows a location such as `line 3: `.
    pub fn detail(&self) -> String {
        match (&self.member, self.event_type) {
            (Some(member), Some(event_type)) => {
                format!("{event_type}: {member}: {}", self.reason)
            }
            (Some(member), None) => format!("{member}: {}", self.reason),
            (None, Some(event_type)) => format!("{event_type}: {}", self.reason),
            (None, None) => self.reason.clone(),
        }
    }

    /// The refusal located as the API names events: `events[i].member: reason`.
    pub fn in_batch(&self) -> String {
        match (&self.member, self.event_type) {
            (Some(member), Some(event_type)) => {
                format!(
                    "events[{}]: {event_type}: {member}: {}",
                    self.index, self.reason
                )
            }
            (Some(member), None) => format!("events[{}].{member}: {}", self.index, self.reason),
            (None, Some(event_type)) => {
                format!("events[{}] ({event_type}): {}", self.index, self.reason)
            }
            (None, None) => format!("events[{}]: {}", self.index, self.reason),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.in_batch())
    }
}

/// Why a batch was not appended. Nothing of a refused batch is written.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Events are malformed, break the catalog, or carry an amount a read model's total
    /// could not hold: fix them (HTTP 422). Lists every event invalid on its own; an amount
    /// refused for the total so far is the first one met.
    #[error("{0}")]
    Invalid(Refusals),
    /// The batch itself is not `{"events": [...]}` with at least one event (HTTP 422).
    #[error("{0}")]
    InvalidBatch(String),
    /// The batch holds more events than the caller allows (HTTP 413).
    #[error("events: the batch has {count} events; at most {max} are accepted per request")]
    TooManyEvents { count: usize, max: usize },
    /// An event conflicts with the log: its id names another stored event (other type or
    /// other content), its expected revision is not the stream's, or its entity's rules
    /// refuse it (HTTP 409).
    #[error("{0}")]
    Conflict(Refusal),
    /// A customer cannot be added to a campaign: its consent for the campaign's channel and
    /// marketing is missing under the tenant's regime (HTTP 409, naming the consent).
    #[error("{refusal}")]
    NoConsent {
        refusal: Refusal,
        consent: crate::aggregates::consent::MissingConsent,
    },
    /// Other writers kept moving a stream while the batch was checked, attempt after attempt:
    /// send it again (HTTP 409).
    #[error("stream {stream} kept changing while this batch was checked; retry")]
    Contended { stream: String },
    /// An event stored in a stream the batch touches cannot be decoded by this build, so its
    /// rules cannot be checked: repair the log or upgrade (HTTP 500).
    #[error("stream {stream}: a stored {event_type} event cannot be read: {reason}")]
    Unreadable {
        stream: String,
        event_type: String,
        reason: String,
    },
    /// The store failed or refused the append (its own error says which).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    /// The refusal of one event (the first, when several are invalid), for refusals that
    /// have one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            CommandError::Invalid(refusals) => Some(refusals.first()),
            CommandError::Conflict(refusal) | CommandError::NoConsent { refusal, .. } => {
                Some(refusal)
            }
            CommandError::InvalidBatch(_)
            | CommandError::TooManyEvents { .. }
            | CommandError::Contended { .. }
            | CommandError::Unreadable { .. }
            | CommandError::Store(_) => None,
        }
    }
}
