//! A case's SLA clocks (issue 19): first response and resolution, each counted from the open
//! on the targets and calendar in force at the open ([`CaseSla`]), without the time the case
//! waited on the customer, by [`crm_core::sla::SlaClock`].
//!
//! - The first-response clock stops at the first response, or, for a case never answered, at
//!   its resolution or close (a reopen runs it again).
//! - The resolution clock stops at the resolution (or the close of an unresolved case); a
//!   reopen runs it again.
//! - A clock is **breached** when it stopped after its due time, or, still running, when the
//!   time it is judged at is past its due time; **warned** likewise with its warning time
//!   (`warning_percent` of the target counted). A clock stopped by a pause before reaching
//!   its target has no due time until the case resumes; one whose due time would fall after
//!   the year 9999 never comes due.

use chrono::{DateTime, Utc};
use crm_core::catalog::values::Priority;
use crm_core::sla::{Due, Pause, SlaClock};
use serde::{Deserialize, Serialize};

use crate::backlog::fold::{Case, SlaTargets};

/// The SLA in force when a case was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseSla {
    pub targets: SlaTargets,
    /// The share of a target counted when its warning is due.
    pub warning_percent: u8,
    /// The position of the `SlaTargetsSet` in force then; `None`: the defaults.
    pub targets_position: Option<u64>,
    /// The position of the `BusinessCalendarSet` in force then; `None`: elapsed time (24×7).
    pub calendar_position: Option<u64>,
}

impl Default for CaseSla {
    fn default() -> Self {
        CaseSla {
            targets: SlaTargets::default(),
            warning_percent: DEFAULT_WARNING_PERCENT,
            targets_position: None,
            calendar_position: None,
        }
    }
}

pub use crm_core::sla::DEFAULT_WARNING_PERCENT;

/// One clock of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Clock {
    /// When the target is reached; absent while a pause stopped the clock short of it, or
    /// when it would fall after the year 9999.
    pub due: Option<DateTime<Utc>>,
    /// When `warning_percent` of the target is reached (absent likewise).
    pub warning: Option<DateTime<Utc>>,
    /// A pause stopped the clock short of its target: the counted seconds still left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_seconds_left: Option<i64>,
    /// When the clock stopped (see the module documentation); absent while it runs.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Clock {
    /// Breached when judged at `at`.
    pub fn breached_at(&self, at: DateTime<Utc>) -> bool {
        late(self.due, self.stopped_at, at)
    }

    /// Past its warning time when judged at `at` (breached clocks are warned too).
    pub fn warned_at(&self, at: DateTime<Utc>) -> bool {
        late(self.warning, self.stopped_at, at)
    }
}

/// The one lateness rule of a clock (its due or warning time `limit`): stopped after it, or
/// still running when judged at `at` past it; no limit, never late. Generic so the service
/// analytics apply it to the stored microseconds as they are.
pub(crate) fn late<T: Ord>(limit: Option<T>, stopped: Option<T>, at: T) -> bool {
    match (limit, stopped) {
        (None, _) => false,
        (Some(limit), Some(stopped)) => stopped > limit,
        (Some(limit), None) => at > limit,
    }
}

/// Both clocks of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Clocks {
    pub first_response: Clock,
    pub resolution: Clock,
}

/// The clocks of `case` under `sla` and `clock` (the calendar of `sla`, or elapsed time);
/// `None` before the open.
pub fn compute(case: &Case, sla: &CaseSla, clock: &SlaClock) -> Option<Clocks> {
    let start = case.opened_at?;
    let target = sla
        .targets
        .for_priority(case.priority.unwrap_or(Priority::Normal));
    let pauses: Vec<Pause> = case
        .pauses
        .iter()
        .map(|p| Pause {
            from: p.from,
            until: p.until,
        })
        .collect();
    let one = |minutes: u32, stopped_at: Option<DateTime<Utc>>| {
        let (due, paused_seconds_left) = instant(clock.due(start, minutes, &pauses));
        let (warning, _) = instant(clock.warning(start, minutes, sla.warning_percent, &pauses));
        Clock {
            due,
            warning,
            paused_seconds_left,
            stopped_at,
        }
    };
    Some(Clocks {
        first_response: one(
            target.first_response_minutes,
            case.first_response_at.or(case.resolved_at),
        ),
        resolution: one(target.resolution_minutes, case.resolved_at),
    })
}

/// The instant of a [`Due`], or the seconds a pause left.
fn instant(due: Due) -> (Option<DateTime<Utc>>, Option<i64>) {
    match due {
        Due::At(at) => (Some(at), None),
        Due::Paused { remaining } => (None, Some(remaining.num_seconds())),
        Due::Beyond => (None, None),
    }
}
