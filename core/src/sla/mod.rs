//! SLA clocks (issue 19): when a case's first response or resolution is due, counted on the
//! elapsed (24x7) clock or on the tenant's business calendar, with pauses left out. Pure
//! functions of their arguments: no I/O, no reading of the system clock.
//!
//! - `calendar.rs`: [`BusinessCalendar`] (an IANA zone, working intervals per weekday in local
//!   wall-clock time, holidays), built by [`BusinessCalendar::new`], which refuses what cannot
//!   be a calendar with a [`CalendarError`] naming the field.
//! - `clock.rs`: [`SlaClock`] (`Elapsed` or `Business`), [`Pause`], [`Due`]:
//!   [`SlaClock::due`], [`SlaClock::warning`], [`SlaClock::counted`].
//! - here: [`SlaTargets`], the minutes of each priority, and [`SlaSettings`], what the
//!   `settings-sla` and `settings-calendar` streams set, folded.
//!
//! **Clock changes.** Working time is every instant at which the zone's wall clock shows a
//! working interval of its weekday, on a date that is not a holiday. So on a spring-forward
//! day the local times that do not exist are skipped (`00:00`–`04:00` in Europe/London on
//! 2026-03-29 is 3 hours), and on a fall-back day the repeated hour counts each time it is
//! lived (the same interval on 2026-10-25 is 5 hours); an interval that starts inside the
//! repeated hour counts both of its passes (`01:30`–`03:00` is 2 hours on that day).
//!
//! Time zones come from `chrono-tz`: the IANA time zone database with its DST rules, compiled
//! in and maintained with each tz release, read through the workspace's `chrono`. (Its rules
//! run to 2100; later instants keep the last offset.)

mod calendar;
mod clock;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::catalog::DomainEvent;
use crate::catalog::values::Priority;

pub use calendar::{
    BusinessCalendar, CalendarError, MAX_HOLIDAYS, MAX_INTERVALS_PER_DAY, WEEKDAYS, WallTime,
    WeekHours, WorkingInterval,
};
pub use clock::{Due, Pause, SlaClock, latest_due};

/// The longest target, in minutes: ten years of 365 days. Longer targets are refused (their
/// due times could fall past 9999-12-31, which RFC 3339 cannot write); a due time a sparse
/// calendar would still push past it is [`Due::Beyond`], shown as none.
pub const MAX_TARGET_MINUTES: u32 = 10 * 365 * 24 * 60;

/// The warning time of a tenant that set none: at 75 % of a target.
pub const DEFAULT_WARNING_PERCENT: u8 = 75;

/// The SLA of one priority, in minutes of counted time from the open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaTarget {
    /// Minutes within which the first response is due.
    pub first_response_minutes: u32,
    /// Minutes within which the resolution is due.
    pub resolution_minutes: u32,
}

/// The SLA targets of every priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaTargets {
    /// Targets of low-priority cases.
    pub low: SlaTarget,
    /// Targets of normal-priority cases (also used while the priority is unknown).
    pub normal: SlaTarget,
    /// Targets of high-priority cases.
    pub high: SlaTarget,
    /// Targets of urgent cases.
    pub urgent: SlaTarget,
}

impl Default for SlaTargets {
    /// Urgent: 1 h / 4 h; high: 4 h / 1 day; normal: 8 h / 3 days; low: 1 day / 7 days
    /// (first response / resolution).
    fn default() -> Self {
        SlaTargets {
            low: SlaTarget {
                first_response_minutes: 1440,
                resolution_minutes: 10080,
            },
            normal: SlaTarget {
                first_response_minutes: 480,
                resolution_minutes: 4320,
            },
            high: SlaTarget {
                first_response_minutes: 240,
                resolution_minutes: 1440,
            },
            urgent: SlaTarget {
                first_response_minutes: 60,
                resolution_minutes: 240,
            },
        }
    }
}

/// A broken target rule: the field (`urgent.first_response_minutes`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SLA target {field}: {reason}")]
pub struct TargetError {
    pub field: String,
    pub reason: String,
}

impl SlaTargets {
    /// The targets of priority `p`.
    pub fn for_priority(&self, p: Priority) -> SlaTarget {
        match p {
            Priority::Low => self.low,
            Priority::Normal => self.normal,
            Priority::High => self.high,
            Priority::Urgent => self.urgent,
        }
    }

    /// Checks that every target is at least 1 minute and that no resolution is due before
    /// the first response; the error names the priority and the field:
    /// `SLA target urgent.first_response_minutes: must be at least 1, got 0`,
    /// `SLA target high.resolution_minutes: 200 is less than high.first_response_minutes (240)`.
    pub fn check(&self) -> Result<(), TargetError> {
        for &priority in Priority::ALL {
            let target = self.for_priority(priority);
            for (field, minutes) in [
                ("first_response_minutes", target.first_response_minutes),
                ("resolution_minutes", target.resolution_minutes),
            ] {
                if minutes == 0 {
                    return Err(TargetError {
                        field: format!("{priority}.{field}"),
                        reason: "must be at least 1, got 0".to_owned(),
                    });
                }
                if minutes > MAX_TARGET_MINUTES {
                    return Err(TargetError {
                        field: format!("{priority}.{field}"),
                        reason: format!(
                            "{minutes} is more than {MAX_TARGET_MINUTES} (ten years of minutes): \
                             its due times could fall past the year 9999, which RFC 3339 \
                             cannot write"
                        ),
                    });
                }
            }
            if target.resolution_minutes < target.first_response_minutes {
                return Err(TargetError {
                    field: format!("{priority}.resolution_minutes"),
                    reason: format!(
                        "{} is less than {priority}.first_response_minutes ({}); the resolution \
                         cannot be due before the first response",
                        target.resolution_minutes, target.first_response_minutes
                    ),
                });
            }
        }
        Ok(())
    }

    /// [`SlaTargets::check`] with the message as text.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map_err(|e| e.to_string())
    }
}

/// The SLA settings in force: what the last `SlaTargetsSet` (stream `settings-sla`) and the
/// last `BusinessCalendarSet` or `BusinessCalendarCleared` (stream `settings-calendar`) before
/// a position set. Fold both streams' events in log order with [`SlaSettings::evolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaSettings {
    /// The targets; [`SlaTargets::default`] until set.
    pub targets: SlaTargets,
    /// The warning time, in percent of a target; [`DEFAULT_WARNING_PERCENT`] unless set.
    pub warning_percent: u8,
    /// The clock; [`SlaClock::Elapsed`] until a calendar is set, and again once cleared.
    pub clock: SlaClock,
}

impl Default for SlaSettings {
    fn default() -> Self {
        SlaSettings {
            targets: SlaTargets::default(),
            warning_percent: DEFAULT_WARNING_PERCENT,
            clock: SlaClock::Elapsed,
        }
    }
}

impl SlaSettings {
    /// Folds one event; events other than the three SLA settings are ignored.
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::SlaTargetsSet(set) => {
                self.targets = set.targets;
                self.warning_percent = set.warning_percent();
            }
            DomainEvent::BusinessCalendarSet(set) => self.clock = set.clock(),
            DomainEvent::BusinessCalendarCleared(_) => self.clock = SlaClock::Elapsed,
            _ => {}
        }
    }
}
