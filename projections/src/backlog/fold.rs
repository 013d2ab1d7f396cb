//! The backlog fold: one service case's state, folded from the events of its `case-<id>`
//! stream in log order, and its SLA clocks (first response and resolution) measured against
//! per-priority targets.
//!
//! The fold is total: it never fails and never panics. It folds facts already in the log, even
//! ones today's aggregate rules would refuse (events before the open, a second open, a
//! response to a closed case), so it decides what each of them means instead of rejecting it:
//! - a repeated `CaseOpened` (status no longer unknown) is ignored;
//! - escalation never lowers the priority, whatever the event says;
//! - only the first response stops the first-response clock;
//! - closing stops the resolution clock if no resolution did.
//!
//! Business time is the event's `occurred_at`. Every case event is also kept as a compact
//! [`CaseFact`] (kind, times, position and the ids it sets), so the case as it stood at any
//! cut is the same fold over the facts within it ([`Case::as_of`]). The SLA clocks are
//! [`crate::backlog::clocks`]'s: counted from the open, on the targets and calendar in force
//! at the open, without paused time.

use chrono::{DateTime, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::catalog::values::{InteractionChannel, Priority};
use crm_core::ids::EntityId;
use serde::{Deserialize, Serialize};

use crate::event::ProjectedEvent;

/// Where a case is in its life, as far as the folded events tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// No `CaseOpened` folded yet (only events seen before the open, if any).
    #[default]
    Unknown,
    /// Opened or reopened: work is pending.
    Open,
    /// Resolved; it can still be reopened.
    Resolved,
    /// Closed; it can still be reopened.
    Closed,
}

/// One case folded from its stream; `Default` is a case with no event folded yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Case {
    /// The case's id, from the first case event folded.
    pub case_id: Option<EntityId>,
    /// The customer who asked for help.
    pub customer_id: Option<EntityId>,
    /// Personal data: the subject (cleared by [`Case::erase_personal`]).
    pub subject: Option<String>,
    /// The channel the case came in through.
    pub channel: Option<InteractionChannel>,
    /// The current priority: the opening one, raised by escalations.
    pub priority: Option<Priority>,
    /// Open, resolved, closed, or unknown before the open.
    pub status: CaseStatus,
    /// The agent the case is assigned to (or the first responder, if never assigned).
    pub agent: Option<EntityId>,
    /// Business time of the open; both SLA clocks start here.
    pub opened_at: Option<DateTime<Utc>>,
    /// Business time of the first response.
    pub first_response_at: Option<DateTime<Utc>>,
    /// Business time of the resolution (or of the close, if it was closed unresolved);
    /// cleared by a reopen.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Business time of the close; cleared by a reopen.
    pub closed_at: Option<DateTime<Utc>>,
    /// How many times the case was escalated.
    pub escalations: u32,
    /// How many times the case was reopened.
    pub reopened: u32,
    /// Times it waited on the customer (`CasePaused` to `CaseResumed`, or to the resolution
    /// or close that ended the pause), oldest first; the last one may still be running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<CasePause>,
    /// The SLA in force when the case was opened (set by the projection at the open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<crate::backlog::clocks::CaseSla>,
    /// Its clocks under that SLA, as of the last event folded (set by the projection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocks: Option<crate::backlog::clocks::Clocks>,
    /// Every case event folded, compact, in log order: what [`Case::as_of`] refolds. Stored,
    /// never shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "f")]
    #[schema(ignore)]
    pub facts: Vec<CaseFact>,
    /// Log position of the last case event folded (also when it changed nothing).
    pub last_position: u64,
}

/// One time a case waited on the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CasePause {
    pub from: DateTime<Utc>,
    /// `None` while it still waits.
    pub until: Option<DateTime<Utc>>,
}

/// What a case event did, for the fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    Opened,
    Assigned,
    Responded,
    Escalated,
    Resolved,
    Reopened,
    Closed,
    Paused,
    Resumed,
}

/// One case event, compact: enough to fold the case again at any cut (the subject, personal
/// data, is not kept here; it never changes after the open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFact {
    #[serde(rename = "k")]
    pub kind: FactKind,
    /// Business time.
    #[serde(rename = "t")]
    pub at: DateTime<Utc>,
    #[serde(rename = "r")]
    pub recorded_at: DateTime<Utc>,
    #[serde(rename = "p")]
    pub position: u64,
    /// The customer (opened).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<EntityId>,
    /// The channel (opened).
    #[serde(rename = "ch", default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<InteractionChannel>,
    /// The priority (opened, escalated).
    #[serde(rename = "pr", default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The agent (assigned, responded).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<EntityId>,
}

impl CaseFact {
    /// The fact of a case event; `None` for events of other categories.
    pub fn of(event: &ProjectedEvent) -> Option<CaseFact> {
        let fact = |kind| CaseFact {
            kind,
            at: event.occurred_at,
            recorded_at: event.recorded_at,
            position: event.position,
            customer_id: None,
            channel: None,
            priority: None,
            agent: None,
        };
        Some(match &event.event {
            DomainEvent::CaseOpened(data) => CaseFact {
                customer_id: Some(data.customer_id.clone()),
                channel: Some(data.channel),
                priority: Some(data.priority),
                ..fact(FactKind::Opened)
            },
            DomainEvent::CaseAssigned(data) => CaseFact {
                agent: Some(data.agent.clone()),
                ..fact(FactKind::Assigned)
            },
            DomainEvent::CaseResponded(data) => CaseFact {
                agent: Some(data.agent.clone()),
                ..fact(FactKind::Responded)
            },
            DomainEvent::CaseEscalated(data) => CaseFact {
                priority: data.priority,
                ..fact(FactKind::Escalated)
            },
            DomainEvent::CaseResolved(_) => fact(FactKind::Resolved),
            DomainEvent::CaseReopened(_) => fact(FactKind::Reopened),
            DomainEvent::CaseClosed(_) => fact(FactKind::Closed),
            DomainEvent::CasePaused(_) => fact(FactKind::Paused),
            DomainEvent::CaseResumed(_) => fact(FactKind::Resumed),
            _ => return None,
        })
    }

    /// Whether the fact falls within `cut`.
    pub fn within(&self, cut: crate::asof::Cut) -> bool {
        match cut {
            crate::asof::Cut::OccurredBy(at) => self.at <= at,
            crate::asof::Cut::RecordedBy(at) => self.recorded_at <= at,
            crate::asof::Cut::Position(position) => self.position <= position,
        }
    }
}

/// Folds one event into `case`. Events of other categories leave it untouched; every case
/// event records its position and, the first time, the case's id, and is kept as a fact.
pub fn apply(case: &mut Case, event: &ProjectedEvent) {
    let Some(fact) = CaseFact::of(event) else {
        return;
    };
    if case.case_id.is_none() {
        case.case_id = Some(event.event.entity_id().clone());
    }
    if let DomainEvent::CaseOpened(data) = &event.event
        && case.status == CaseStatus::Unknown
    {
        case.subject = crm_core::privacy::readable(&data.subject);
    }
    apply_fact(case, &fact);
    case.facts.push(fact);
}

/// Folds one fact into `case` (what [`apply`] and [`Case::as_of`] share).
fn apply_fact(case: &mut Case, fact: &CaseFact) {
    let at = fact.at;
    case.last_position = fact.position;
    match fact.kind {
        FactKind::Opened => {
            if case.status != CaseStatus::Unknown {
                return;
            }
            case.customer_id = fact.customer_id.clone();
            case.channel = fact.channel;
            case.priority = fact.priority;
            case.status = CaseStatus::Open;
            case.opened_at = Some(at);
        }
        FactKind::Assigned => case.agent = fact.agent.clone(),
        FactKind::Responded => {
            if case.first_response_at.is_none() {
                case.first_response_at = Some(at);
            }
            if case.agent.is_none() {
                case.agent = fact.agent.clone();
            }
        }
        FactKind::Escalated => {
            case.escalations = case.escalations.saturating_add(1);
            if let Some(given) = fact.priority {
                case.priority = Some(case.priority.map_or(given, |current| current.max(given)));
            }
        }
        FactKind::Resolved => {
            end_pause(case, at);
            case.status = CaseStatus::Resolved;
            case.resolved_at = Some(at);
        }
        FactKind::Reopened => {
            end_pause(case, at);
            case.status = CaseStatus::Open;
            case.reopened = case.reopened.saturating_add(1);
            case.resolved_at = None;
            case.closed_at = None;
        }
        FactKind::Closed => {
            end_pause(case, at);
            case.status = CaseStatus::Closed;
            case.closed_at = Some(at);
            if case.resolved_at.is_none() {
                case.resolved_at = Some(at);
            }
        }
        FactKind::Paused => {
            if case.status == CaseStatus::Open && !case.is_paused() {
                case.pauses.push(CasePause {
                    from: at,
                    until: None,
                });
            }
        }
        FactKind::Resumed => end_pause(case, at),
    }
}

/// Ends a running pause at `at` (not before it began).
fn end_pause(case: &mut Case, at: DateTime<Utc>) {
    if let Some(pause) = case.pauses.last_mut()
        && pause.until.is_none()
    {
        pause.until = Some(at.max(pause.from));
    }
}

pub use crm_core::sla::{SlaTarget, SlaTargets};

/// Which SLA clocks of a case ran past their due time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Breaches {
    /// The first response came late, or is still missing past its due time.
    pub first_response: bool,
    /// The resolution came late, or is still missing past its due time.
    pub resolution: bool,
}

impl Case {
    /// The clocks under targets `t` in elapsed time (24×7), without regard to the SLA the
    /// projection captured: what a tenant without settings gets.
    pub fn elapsed_clocks(&self, t: &SlaTargets) -> Option<crate::backlog::clocks::Clocks> {
        let sla = crate::backlog::clocks::CaseSla {
            targets: *t,
            ..Default::default()
        };
        crate::backlog::clocks::compute(self, &sla, &crm_core::sla::SlaClock::Elapsed)
    }

    /// When the first response is due under targets `t` in elapsed time. `None` before the
    /// open.
    pub fn first_response_due(&self, t: &SlaTargets) -> Option<DateTime<Utc>> {
        self.elapsed_clocks(t)?.first_response.due
    }

    /// When the resolution is due under targets `t` in elapsed time. `None` before the open.
    pub fn resolution_due(&self, t: &SlaTargets) -> Option<DateTime<Utc>> {
        self.elapsed_clocks(t)?.resolution.due
    }

    /// The SLA breaches as of `at` under targets `t` in elapsed time (the rules of
    /// [`Case::breaches_at`]).
    pub fn breaches(&self, t: &SlaTargets, at: DateTime<Utc>) -> Breaches {
        let mut case = self.clone();
        case.clocks = self.elapsed_clocks(t);
        case.breaches_at(at)
    }

    /// Which clocks are breached when judged at `at`: stopped after their due time, or still
    /// running past it (see [`crate::backlog::clocks`]). Nothing before the open.
    pub fn breaches_at(&self, at: DateTime<Utc>) -> Breaches {
        self.clocks
            .as_ref()
            .map_or_else(Breaches::default, |c| Breaches {
                first_response: c.first_response.breached_at(at),
                resolution: c.resolution.breached_at(at),
            })
    }

    /// Which clocks are past their warning time when judged at `at`.
    pub fn warnings_at(&self, at: DateTime<Utc>) -> Breaches {
        self.clocks
            .as_ref()
            .map_or_else(Breaches::default, |c| Breaches {
                first_response: c.first_response.warned_at(at),
                resolution: c.resolution.warned_at(at),
            })
    }

    /// The next clock to beat while it runs: the first response until it stops, then the
    /// resolution; `None` when both stopped, or while a pause keeps the running one short of
    /// its target.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let clocks = self.clocks.as_ref()?;
        if clocks.first_response.stopped_at.is_none() {
            clocks.first_response.due
        } else if clocks.resolution.stopped_at.is_none() {
            clocks.resolution.due
        } else {
            None
        }
    }

    /// Seconds from the open to the first response, when both are known; a response
    /// recorded before the open counts as 0.
    pub fn first_response_seconds(&self) -> Option<i64> {
        let opened = self.opened_at?;
        let responded = self.first_response_at?;
        Some((responded - opened).num_seconds().max(0))
    }

    /// True while work is pending: status open (resolved and closed cases are not open).
    pub fn is_open(&self) -> bool {
        self.status == CaseStatus::Open
    }

    /// True while it waits on the customer.
    pub fn is_paused(&self) -> bool {
        self.pauses.last().is_some_and(|p| p.until.is_none())
    }

    /// The case as it stood at `cut`: its facts within the cut folded again (the subject and
    /// the SLA captured at the open are kept); `None` if no fact falls within it. The clocks
    /// are left for the caller to compute under the SLA.
    pub fn as_of(&self, cut: crate::asof::Cut) -> Option<Case> {
        let mut past = Case {
            case_id: self.case_id.clone(),
            subject: self.subject.clone(),
            sla: self.sla.clone(),
            ..Case::default()
        };
        let mut any = false;
        for fact in self.facts.iter().filter(|f| f.within(cut)) {
            apply_fact(&mut past, fact);
            any = true;
        }
        any.then_some(past)
    }

    /// Clears the personal fields (the subject), for when the customer is erased.
    pub fn erase_personal(&mut self) {
        self.subject = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ev, id};
    use chrono::TimeZone;
    use serde_json::json;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
    }

    fn fold(events: &[ProjectedEvent]) -> Case {
        let mut case = Case::default();
        for e in events {
            apply(&mut case, e);
        }
        case
    }

    fn opened(position: u64, occurred_at: DateTime<Utc>, priority: &str) -> ProjectedEvent {
        ev(
            position,
            occurred_at,
            "CaseOpened",
            json!({"case_id": "k-3", "customer_id": "c-42", "subject": "Cannot log in",
                   "channel": "email", "priority": priority,
                   "description": "Password reset mail never arrives"}),
        )
    }

    fn simple(position: u64, occurred_at: DateTime<Utc>, event_type: &str) -> ProjectedEvent {
        ev(position, occurred_at, event_type, json!({"case_id": "k-3"}))
    }

    fn responded(position: u64, occurred_at: DateTime<Utc>, agent: &str) -> ProjectedEvent {
        ev(
            position,
            occurred_at,
            "CaseResponded",
            json!({"case_id": "k-3", "agent": agent}),
        )
    }

    fn escalated(position: u64, occurred_at: DateTime<Utc>, priority: &str) -> ProjectedEvent {
        ev(
            position,
            occurred_at,
            "CaseEscalated",
            json!({"case_id": "k-3", "reason": "VIP customer", "priority": priority}),
        )
    }

    #[test]
    fn open_sets_every_field() {
        let case = fold(&[opened(4, at(2, 9, 0), "high")]);
        assert_eq!(case.case_id, Some(id("k-3")));
        assert_eq!(case.customer_id, Some(id("c-42")));
        assert_eq!(case.subject.as_deref(), Some("Cannot log in"));
        assert_eq!(case.channel, Some(InteractionChannel::Email));
        assert_eq!(case.priority, Some(Priority::High));
        assert_eq!(case.status, CaseStatus::Open);
        assert_eq!(case.opened_at, Some(at(2, 9, 0)));
        assert_eq!(case.agent, None);
        assert_eq!(case.first_response_at, None);
        assert_eq!(case.escalations, 0);
        assert_eq!(case.last_position, 4);
        assert!(case.is_open());
    }

    #[test]
    fn repeated_open_is_ignored_but_its_position_is_recorded() {
        let mut case = fold(&[opened(1, at(2, 9, 0), "high")]);
        let before = case.clone();
        apply(
            &mut case,
            &ev(
                2,
                at(2, 10, 0),
                "CaseOpened",
                json!({"case_id": "k-3", "customer_id": "c-99", "subject": "Other",
                       "channel": "web", "priority": "low"}),
            ),
        );
        assert_eq!(case.last_position, 2);
        assert_eq!(case.facts.len(), 2, "the repeated open is kept as a fact");
        assert_eq!(
            Case {
                last_position: 1,
                facts: before.facts.clone(),
                ..case
            },
            before
        );
    }

    #[test]
    fn assignment_and_first_response() {
        let case = fold(&[
            opened(1, at(2, 9, 0), "normal"),
            responded(2, at(2, 9, 30), "u-9"),
            responded(3, at(2, 10, 0), "u-4"),
        ]);
        assert_eq!(case.first_response_at, Some(at(2, 9, 30)));
        assert_eq!(case.agent, Some(id("u-9")), "the first responder");
        assert_eq!(case.first_response_seconds(), Some(1800));

        let case = fold(&[
            opened(1, at(2, 9, 0), "normal"),
            ev(
                2,
                at(2, 9, 5),
                "CaseAssigned",
                json!({"case_id": "k-3", "agent": "u-1"}),
            ),
            responded(3, at(2, 9, 30), "u-9"),
            ev(
                4,
                at(2, 9, 40),
                "CaseAssigned",
                json!({"case_id": "k-3", "agent": "u-2"}),
            ),
        ]);
        assert_eq!(case.agent, Some(id("u-2")));
        assert_eq!(case.first_response_at, Some(at(2, 9, 30)));
        assert_eq!(case.last_position, 4);
        assert_eq!(Case::default().first_response_seconds(), None);
    }

    #[test]
    fn escalation_counts_and_never_lowers_the_priority() {
        let mut case = fold(&[opened(1, at(2, 9, 0), "high")]);
        apply(&mut case, &escalated(2, at(2, 9, 10), "low"));
        assert_eq!(case.priority, Some(Priority::High));
        assert_eq!(case.escalations, 1);
        apply(&mut case, &simple(3, at(2, 9, 20), "CaseEscalated"));
        assert_eq!(case.priority, Some(Priority::High));
        assert_eq!(case.escalations, 2);
        apply(&mut case, &escalated(4, at(2, 9, 30), "urgent"));
        assert_eq!(case.priority, Some(Priority::Urgent));
        assert_eq!(case.escalations, 3);
        apply(&mut case, &escalated(5, at(2, 9, 40), "normal"));
        assert_eq!(case.priority, Some(Priority::Urgent));
        assert_eq!(case.escalations, 4);
    }

    #[test]
    fn resolve_reopen_and_close() {
        let mut case = fold(&[
            opened(1, at(2, 9, 0), "normal"),
            simple(2, at(2, 11, 0), "CaseResolved"),
        ]);
        assert_eq!(case.status, CaseStatus::Resolved);
        assert_eq!(case.resolved_at, Some(at(2, 11, 0)));
        assert!(!case.is_open());

        apply(&mut case, &simple(3, at(2, 12, 0), "CaseClosed"));
        assert_eq!(case.status, CaseStatus::Closed);
        assert_eq!(case.closed_at, Some(at(2, 12, 0)));
        assert_eq!(case.resolved_at, Some(at(2, 11, 0)), "resolution kept");
        assert!(!case.is_open());

        apply(
            &mut case,
            &ev(
                4,
                at(3, 8, 0),
                "CaseReopened",
                json!({"case_id": "k-3", "reason": "It happened again"}),
            ),
        );
        assert_eq!(case.status, CaseStatus::Open);
        assert_eq!(case.reopened, 1);
        assert_eq!(case.resolved_at, None);
        assert_eq!(case.closed_at, None);
        assert!(case.is_open());

        apply(&mut case, &simple(5, at(3, 9, 0), "CaseClosed"));
        assert_eq!(case.status, CaseStatus::Closed);
        assert_eq!(case.closed_at, Some(at(3, 9, 0)));
        assert_eq!(
            case.resolved_at,
            Some(at(3, 9, 0)),
            "closing unresolved stops the resolution clock"
        );
        assert_eq!(case.last_position, 5);
    }

    #[test]
    fn events_before_the_open_are_folded_and_kept() {
        let case = fold(&[
            ev(
                1,
                at(2, 8, 0),
                "CaseAssigned",
                json!({"case_id": "k-3", "agent": "u-1"}),
            ),
            simple(2, at(2, 8, 30), "CaseEscalated"),
        ]);
        assert_eq!(case.status, CaseStatus::Unknown);
        assert_eq!(case.case_id, Some(id("k-3")));
        assert_eq!(case.agent, Some(id("u-1")));
        assert_eq!(case.escalations, 1);
        assert!(!case.is_open());
        let targets = SlaTargets::default();
        assert_eq!(case.first_response_due(&targets), None);
        assert_eq!(case.breaches(&targets, at(9, 0, 0)), Breaches::default());

        let mut case = case;
        apply(&mut case, &opened(3, at(2, 9, 0), "low"));
        assert_eq!(case.status, CaseStatus::Open);
        assert_eq!(case.agent, Some(id("u-1")));
        assert_eq!(case.escalations, 1);
        assert_eq!(case.priority, Some(Priority::Low));
        assert_eq!(case.opened_at, Some(at(2, 9, 0)));
    }

    #[test]
    fn other_categories_are_ignored_entirely() {
        let mut case = fold(&[opened(1, at(2, 9, 0), "low")]);
        let before = case.clone();
        apply(
            &mut case,
            &ev(
                7,
                at(2, 10, 0),
                "OpportunityWon",
                json!({"opportunity_id": "op-5"}),
            ),
        );
        assert_eq!(case, before);
    }

    #[test]
    fn default_targets_are_valid_and_per_priority() {
        let targets = SlaTargets::default();
        assert_eq!(targets.validate(), Ok(()));
        let minutes = |p: Priority| {
            let t = targets.for_priority(p);
            (t.first_response_minutes, t.resolution_minutes)
        };
        assert_eq!(minutes(Priority::Urgent), (60, 240));
        assert_eq!(minutes(Priority::High), (240, 1440));
        assert_eq!(minutes(Priority::Normal), (480, 4320));
        assert_eq!(minutes(Priority::Low), (1440, 10080));
    }

    #[test]
    fn dues_follow_the_current_priority() {
        let targets = SlaTargets::default();
        let opened_at = at(2, 9, 0);
        for (priority, response, resolution) in [
            ("urgent", at(2, 10, 0), at(2, 13, 0)),
            ("high", at(2, 13, 0), at(3, 9, 0)),
            ("normal", at(2, 17, 0), at(5, 9, 0)),
            ("low", at(3, 9, 0), at(9, 9, 0)),
        ] {
            let case = fold(&[opened(1, opened_at, priority)]);
            assert_eq!(
                case.first_response_due(&targets),
                Some(response),
                "{priority}"
            );
            assert_eq!(
                case.resolution_due(&targets),
                Some(resolution),
                "{priority}"
            );
        }
        let mut case = fold(&[opened(1, opened_at, "low")]);
        apply(&mut case, &escalated(2, at(2, 9, 5), "urgent"));
        assert_eq!(case.first_response_due(&targets), Some(at(2, 10, 0)));

        let unknown_priority = Case {
            opened_at: Some(opened_at),
            ..Case::default()
        };
        assert_eq!(
            unknown_priority.first_response_due(&targets),
            Some(at(2, 17, 0)),
            "normal when the priority is unknown"
        );
        assert_eq!(Case::default().resolution_due(&targets), None);
    }

    #[test]
    fn breaches_of_an_open_case_depend_on_at() {
        let targets = SlaTargets::default();
        // High: first response due 13:00, resolution due next day 09:00.
        let case = fold(&[opened(1, at(2, 9, 0), "high")]);
        let none = Breaches::default();
        assert_eq!(case.breaches(&targets, at(2, 12, 59)), none);
        assert_eq!(
            case.breaches(&targets, at(2, 13, 0)),
            none,
            "due is not late"
        );
        assert_eq!(
            case.breaches(&targets, at(2, 13, 1)),
            Breaches {
                first_response: true,
                resolution: false
            }
        );
        assert_eq!(
            case.breaches(&targets, at(3, 9, 1)),
            Breaches {
                first_response: true,
                resolution: true
            }
        );
    }

    #[test]
    fn a_response_counts_against_its_own_due_time() {
        let targets = SlaTargets::default();
        let on_time = fold(&[
            opened(1, at(2, 9, 0), "urgent"),
            responded(2, at(2, 9, 45), "u-9"),
        ]);
        assert!(!on_time.breaches(&targets, at(2, 12, 0)).first_response);
        assert!(!on_time.breaches(&targets, at(2, 13, 1)).first_response);
        assert!(on_time.breaches(&targets, at(2, 13, 1)).resolution);

        let late = fold(&[
            opened(1, at(2, 9, 0), "urgent"),
            responded(2, at(2, 10, 1), "u-9"),
        ]);
        assert!(late.breaches(&targets, at(2, 10, 2)).first_response);
        assert!(
            late.breaches(&targets, at(2, 9, 30)).first_response,
            "a late response is late whenever asked"
        );
        assert_eq!(late.first_response_seconds(), Some(3660));
    }

    #[test]
    fn resolution_breaches_and_their_reset_by_a_reopen() {
        let targets = SlaTargets::default();
        // Urgent: resolution due 13:00.
        let mut case = fold(&[
            opened(1, at(2, 9, 0), "urgent"),
            responded(2, at(2, 9, 10), "u-9"),
            simple(3, at(2, 12, 0), "CaseResolved"),
        ]);
        assert_eq!(case.breaches(&targets, at(4, 0, 0)), Breaches::default());

        apply(&mut case, &simple(4, at(2, 14, 0), "CaseReopened"));
        assert_eq!(case.resolved_at, None);
        assert!(
            case.breaches(&targets, at(2, 14, 0)).resolution,
            "reopened past the due time"
        );
        apply(&mut case, &simple(5, at(2, 15, 0), "CaseResolved"));
        let breaches = case.breaches(&targets, at(2, 15, 0));
        assert_eq!(
            breaches,
            Breaches {
                first_response: false,
                resolution: true
            }
        );

        let closed_late = fold(&[
            opened(1, at(2, 9, 0), "urgent"),
            simple(2, at(2, 13, 30), "CaseClosed"),
        ]);
        assert_eq!(
            closed_late.breaches(&targets, at(9, 0, 0)),
            Breaches {
                first_response: true,
                resolution: true
            },
            "closed unanswered after both were due: both clocks late (issue 19: every case is \
             judged, open or closed)"
        );
        let closed_in_time = fold(&[
            opened(1, at(2, 9, 0), "urgent"),
            simple(2, at(2, 9, 50), "CaseClosed"),
        ]);
        assert_eq!(
            closed_in_time.breaches(&targets, at(9, 0, 0)),
            Breaches::default(),
            "closed unanswered before the response was due: the clock stopped in time"
        );
    }

    #[test]
    fn erase_personal_clears_the_subject_only() {
        let mut case = fold(&[opened(1, at(2, 9, 0), "high")]);
        let before = case.clone();
        case.erase_personal();
        assert_eq!(case.subject, None);
        assert_eq!(
            Case {
                subject: before.subject.clone(),
                ..case
            },
            before
        );
    }

    #[test]
    fn pauses_stop_both_clocks_and_end_at_the_resolution() {
        let targets = SlaTargets::default();
        // Normal priority: response in 8 h, resolution in 72 h, elapsed time.
        let mut case = fold(&[
            opened(1, at(2, 9, 0), "normal"),
            simple(2, at(2, 10, 0), "CasePaused"),
        ]);
        assert!(case.is_paused());
        let clocks = case.elapsed_clocks(&targets).unwrap();
        assert_eq!(clocks.first_response.due, None, "no due time while paused");
        assert_eq!(clocks.first_response.paused_seconds_left, Some(7 * 3600));
        assert!(!case.breaches(&targets, at(9, 0, 0)).first_response);
        apply(&mut case, &simple(3, at(2, 12, 0), "CaseResumed"));
        assert!(!case.is_paused());
        // 09:00 + 8 h + the 2 h paused.
        assert_eq!(case.first_response_due(&targets), Some(at(2, 19, 0)));
        apply(&mut case, &simple(4, at(2, 13, 0), "CasePaused"));
        apply(&mut case, &simple(5, at(2, 14, 0), "CaseResolved"));
        assert_eq!(
            case.pauses,
            vec![
                CasePause {
                    from: at(2, 10, 0),
                    until: Some(at(2, 12, 0))
                },
                CasePause {
                    from: at(2, 13, 0),
                    until: Some(at(2, 14, 0))
                },
            ],
            "the resolution ends the pause"
        );
        assert!(!case.is_paused());
        // 09:00 + 72 h + 3 h paused.
        assert_eq!(case.resolution_due(&targets), Some(at(5, 12, 0)));
        // A pause of a resolved case is ignored by the fold (the rules refuse it).
        apply(&mut case, &simple(6, at(2, 15, 0), "CasePaused"));
        assert_eq!(case.pauses.len(), 2);
    }

    #[test]
    fn as_of_refolds_the_facts_within_the_cut() {
        use crate::asof::Cut;
        let case = fold(&[
            opened(1, at(2, 9, 0), "high"),
            responded(2, at(2, 9, 30), "u-9"),
            simple(3, at(2, 11, 0), "CaseResolved"),
            simple(4, at(3, 8, 0), "CaseReopened"),
        ]);
        let at_ten = case.as_of(Cut::OccurredBy(at(2, 10, 0))).unwrap();
        assert_eq!(at_ten.status, CaseStatus::Open);
        assert_eq!(at_ten.first_response_at, Some(at(2, 9, 30)));
        assert_eq!(at_ten.resolved_at, None);
        assert_eq!(at_ten.last_position, 2);
        assert_eq!(at_ten.subject, case.subject);
        let resolved = case.as_of(Cut::Position(3)).unwrap();
        assert_eq!(resolved.status, CaseStatus::Resolved);
        assert!(case.as_of(Cut::OccurredBy(at(1, 0, 0))).is_none());
        let whole = case.as_of(Cut::Position(4)).unwrap();
        assert_eq!(
            Case {
                facts: case.facts.clone(),
                ..whole
            },
            case,
            "the whole history refolds to the case"
        );
    }

    #[test]
    fn serde_round_trips() {
        let case = fold(&[
            opened(1, at(2, 9, 0), "high"),
            responded(2, at(2, 9, 30), "u-9"),
            escalated(3, at(2, 10, 0), "urgent"),
            simple(4, at(2, 11, 0), "CaseResolved"),
            simple(5, at(2, 12, 0), "CaseClosed"),
        ]);
        let value = serde_json::to_value(&case).unwrap();
        assert_eq!(value["status"], json!("closed"));
        assert_eq!(value["priority"], json!("urgent"));
        assert_eq!(value["channel"], json!("email"));
        let back: Case = serde_json::from_value(value).unwrap();
        assert_eq!(back, case);
        let empty: Case =
            serde_json::from_str(&serde_json::to_string(&Case::default()).unwrap()).unwrap();
        assert_eq!(empty, Case::default());

        let targets = SlaTargets::default();
        let back: SlaTargets =
            serde_json::from_value(serde_json::to_value(targets).unwrap()).unwrap();
        assert_eq!(back, targets);
        assert_eq!(
            serde_json::to_value(Breaches {
                first_response: true,
                resolution: false
            })
            .unwrap(),
            json!({"first_response": true, "resolution": false})
        );
    }
}
