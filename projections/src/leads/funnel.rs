//! The lead funnel (`GET /v1/leads/funnel`): the leads captured in `[from, to)` (business
//! time) and how far each had come by `to`, overall, by source and by campaign.
//!
//! Definitions, all as of `to` (an event at or after `to` is not counted, so the answer is
//! what a fold of the log cut at `to` gives, [`funnel_of`]):
//! - `captured`: leads captured in `[from, to)`;
//! - `qualified`: of those, the ones qualified before `to` (disqualified since or not), or
//!   converted before `to` (a conversion passes qualification, qualified or not), so `captured ≥ qualified ≥
//!   converted`;
//! - `converted`: converted before `to`; `disqualified`: disqualified before `to`, with the
//!   count per reason (reasons are personal data: redacted for keys that do not read it);
//! - `qualification_rate` = qualified / captured, `conversion_rate` = converted / captured,
//!   `qualified_conversion_rate` = converted / qualified, `disqualification_rate` =
//!   disqualified / captured; `null` when the denominator is 0.
//!
//! Erased leads are in no answer (their rows are gone), whatever the window.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::fold::{Lead, LeadStatus};
use crate::db::ReadDb;
use crate::error::ProjectionError;

/// How many leads gave one disqualification reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReasonCount {
    /// Personal data: the reason as given.
    pub reason: String,
    pub count: i64,
    /// The leads that gave it (data subjects of the answer; not shown).
    #[serde(skip)]
    pub leads: Vec<String>,
}

/// One group's funnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FunnelCounts {
    pub captured: i64,
    pub qualified: i64,
    pub converted: i64,
    pub disqualified: i64,
    pub qualification_rate: Option<f64>,
    pub conversion_rate: Option<f64>,
    pub qualified_conversion_rate: Option<f64>,
    pub disqualification_rate: Option<f64>,
    /// Disqualifications per reason, the most frequent first (ties by reason).
    pub disqualified_reasons: Vec<ReasonCount>,
}

/// What `GET /v1/leads/funnel` answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeadFunnel {
    /// The window's start (captured at or after it); `null`: from the first lead.
    pub from: Option<DateTime<Utc>>,
    /// The window's end (captured before it) and the time every step is counted at.
    pub to: DateTime<Utc>,
    pub overall: FunnelCounts,
    /// By the capture's source label.
    pub by_source: BTreeMap<String, FunnelCounts>,
    /// By the campaign that generated the lead; leads with none are only in `overall` and
    /// `by_source`.
    pub by_campaign: BTreeMap<String, FunnelCounts>,
}

/// The tenant's lead funnel for leads captured in `[from, to)`, counted as of `to`.
pub async fn funnel(
    db: &ReadDb,
    tenant: &str,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
) -> Result<LeadFunnel, ProjectionError> {
    let leads = super::captured_in(db, tenant, from, Some(to)).await?;
    Ok(funnel_of(&leads, from, to))
}

/// The funnel of `leads` (any, the window is applied here): the one rule both the read
/// model's answer and a fold of the log use.
pub fn funnel_of<'a>(
    leads: impl IntoIterator<Item = &'a Lead>,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
) -> LeadFunnel {
    let mut overall = Tally::default();
    let mut by_source: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_campaign: BTreeMap<String, Tally> = BTreeMap::new();
    for lead in leads {
        let Some(captured) = lead.captured_at else {
            continue;
        };
        if captured >= to || from.is_some_and(|from| captured < from) {
            continue;
        }
        overall.add(lead, to);
        if let Some(source) = &lead.source {
            by_source.entry(source.clone()).or_default().add(lead, to);
        }
        if let Some(campaign) = &lead.campaign_id {
            by_campaign
                .entry(campaign.as_str().to_owned())
                .or_default()
                .add(lead, to);
        }
    }
    LeadFunnel {
        from,
        to,
        overall: overall.counts(),
        by_source: by_source
            .into_iter()
            .map(|(k, t)| (k, t.counts()))
            .collect(),
        by_campaign: by_campaign
            .into_iter()
            .map(|(k, t)| (k, t.counts()))
            .collect(),
    }
}

#[derive(Default)]
struct Tally {
    captured: i64,
    qualified: i64,
    converted: i64,
    disqualified: i64,
    reasons: BTreeMap<String, Vec<String>>,
}

impl Tally {
    fn add(&mut self, lead: &Lead, to: DateTime<Utc>) {
        self.captured += 1;
        match lead.status_at(to) {
            LeadStatus::Converted => {
                self.qualified += 1;
                self.converted += 1;
            }
            LeadStatus::Qualified => self.qualified += 1,
            LeadStatus::Disqualified => {
                // Qualified first, then disqualified: it passed the qualification step.
                if lead.qualified_at.is_some_and(|q| q < to) {
                    self.qualified += 1;
                }
                self.disqualified += 1;
                let reason = lead.disqualified_reason.clone().unwrap_or_default();
                let id = lead
                    .lead_id
                    .as_ref()
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default();
                self.reasons.entry(reason).or_default().push(id);
            }
            LeadStatus::Captured | LeadStatus::Unknown => {}
        }
    }

    fn counts(self) -> FunnelCounts {
        let rate = |n: i64, d: i64| (d > 0).then(|| n as f64 / d as f64);
        let mut reasons: Vec<ReasonCount> = self
            .reasons
            .into_iter()
            .map(|(reason, leads)| ReasonCount {
                reason,
                count: leads.len() as i64,
                leads,
            })
            .collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        FunnelCounts {
            captured: self.captured,
            qualified: self.qualified,
            converted: self.converted,
            disqualified: self.disqualified,
            qualification_rate: rate(self.qualified, self.captured),
            conversion_rate: rate(self.converted, self.captured),
            qualified_conversion_rate: rate(self.converted, self.qualified),
            disqualification_rate: rate(self.disqualified, self.captured),
            disqualified_reasons: reasons,
        }
    }
}
