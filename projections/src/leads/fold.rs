//! The lead fold: one lead's state, folded from the events of its `lead-<id>` stream in log
//! order.
//!
//! The fold is total: it never fails and never panics. Facts the aggregate rules would
//! refuse today are folded with a fixed meaning: a second capture is ignored; qualification,
//! disqualification and conversion each keep their first time (each happens once); events
//! before the capture are folded with status [`LeadStatus::Unknown`] until it comes.
//! `LeadErased` is not folded here: the read model deletes the lead's row (an erased lead is
//! in no answer), see [`super::LeadsProjection`].
//!
//! Business time is the event's `occurred_at`.

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::ids::EntityId;
use serde::{Deserialize, Serialize};

use crate::event::ProjectedEvent;

/// Where a lead is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// No `LeadCaptured` folded yet.
    #[default]
    Unknown,
    /// Captured, not yet qualified, disqualified or converted.
    Captured,
    /// Qualified, not (yet) converted.
    Qualified,
    /// Disqualified (final).
    Disqualified,
    /// Converted to a customer (final).
    Converted,
}

impl LeadStatus {
    /// Every status a lead can be listed by.
    pub const ALL: &'static [LeadStatus] = &[
        LeadStatus::Unknown,
        LeadStatus::Captured,
        LeadStatus::Qualified,
        LeadStatus::Disqualified,
        LeadStatus::Converted,
    ];

    /// The status as the read model and its answers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Unknown => "unknown",
            LeadStatus::Captured => "captured",
            LeadStatus::Qualified => "qualified",
            LeadStatus::Disqualified => "disqualified",
            LeadStatus::Converted => "converted",
        }
    }
}

/// One lead folded from its stream; `Default` is a lead with no event folded yet. Holds no
/// personal data but `disqualified_reason` (the capture's name, email, phone and company are
/// never read: the runner does not open them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lead {
    pub lead_id: Option<EntityId>,
    pub status: LeadStatus,
    /// Where the lead came from (the capture's label).
    pub source: Option<String>,
    /// The campaign that generated the lead, if the capture named one.
    pub campaign_id: Option<EntityId>,
    /// The salesperson following the lead up, if the capture named one.
    pub owner: Option<EntityId>,
    /// Business time of the capture.
    pub captured_at: Option<DateTime<Utc>>,
    /// Business time of the qualification.
    pub qualified_at: Option<DateTime<Utc>>,
    /// Business time of the disqualification.
    pub disqualified_at: Option<DateTime<Utc>>,
    /// Personal data: why the lead was disqualified.
    pub disqualified_reason: Option<String>,
    /// Business time of the conversion.
    pub converted_at: Option<DateTime<Utc>>,
    /// The customer the lead converted to.
    pub customer_id: Option<EntityId>,
    /// The opportunity the conversion opened, if it named one.
    pub opportunity_id: Option<EntityId>,
    /// Log position of the last lead event folded.
    pub last_position: u64,
}

impl Lead {
    /// Clears the personal fields (the lead's or its customer's key was destroyed).
    pub fn erase_personal(&mut self) {
        self.disqualified_reason = None;
    }

    /// The status the fold's times give as of business time `at` (events at or after `at`
    /// not counted): what a fold of the log cut at `at` would say.
    pub fn status_at(&self, at: DateTime<Utc>) -> LeadStatus {
        let before = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t < at);
        if !before(self.captured_at) {
            LeadStatus::Unknown
        } else if before(self.converted_at) {
            LeadStatus::Converted
        } else if before(self.disqualified_at) {
            LeadStatus::Disqualified
        } else if before(self.qualified_at) {
            LeadStatus::Qualified
        } else {
            LeadStatus::Captured
        }
    }
}

/// Folds one event into `lead`. Events of other categories leave it untouched.
pub fn apply(lead: &mut Lead, event: &ProjectedEvent) {
    let at = event.occurred_at;
    let id = match &event.event {
        DomainEvent::LeadCaptured(data) => {
            if lead.captured_at.is_none() {
                lead.source = Some(data.source.clone());
                lead.campaign_id = data.campaign_id.clone();
                lead.owner = data.owner.clone();
                lead.captured_at = Some(at);
            }
            &data.lead_id
        }
        DomainEvent::LeadQualified(data) => {
            lead.qualified_at.get_or_insert(at);
            &data.lead_id
        }
        DomainEvent::LeadDisqualified(data) => {
            if lead.disqualified_at.is_none() {
                lead.disqualified_at = Some(at);
                lead.disqualified_reason = Some(data.reason.clone());
            }
            &data.lead_id
        }
        DomainEvent::LeadConverted(data) => {
            if lead.converted_at.is_none() {
                lead.converted_at = Some(at);
                lead.customer_id = Some(data.customer_id.clone());
                lead.opportunity_id = data.opportunity_id.clone();
            }
            &data.lead_id
        }
        _ => return,
    };
    if lead.lead_id.is_none() {
        lead.lead_id = Some(id.clone());
    }
    lead.last_position = event.position;
    lead.status = if lead.captured_at.is_none() {
        LeadStatus::Unknown
    } else if lead.converted_at.is_some() {
        LeadStatus::Converted
    } else if lead.disqualified_at.is_some() {
        LeadStatus::Disqualified
    } else if lead.qualified_at.is_some() {
        LeadStatus::Qualified
    } else {
        LeadStatus::Captured
    };
}
