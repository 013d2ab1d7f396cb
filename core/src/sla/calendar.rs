//! A tenant's business calendar: an IANA time zone, the working intervals of each weekday in
//! local wall-clock time, and holidays (local dates with no working time). Built only through
//! [`BusinessCalendar::new`], which refuses what cannot be a calendar and names the field.

use std::fmt;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;

/// Most working intervals in one day.
pub const MAX_INTERVALS_PER_DAY: usize = 8;

/// Most holidays in one calendar: five years of days.
pub const MAX_HOLIDAYS: usize = 366 * 5;

/// The weekdays in calendar order with their names in JSON and error paths.
pub const WEEKDAYS: [(Weekday, &str); 7] = [
    (Weekday::Mon, "monday"),
    (Weekday::Tue, "tuesday"),
    (Weekday::Wed, "wednesday"),
    (Weekday::Thu, "thursday"),
    (Weekday::Fri, "friday"),
    (Weekday::Sat, "saturday"),
    (Weekday::Sun, "sunday"),
];

/// A local wall-clock time of day at minute precision, from `00:00` to `24:00` (the end of
/// the day, valid only as an interval's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(u16);

impl WallTime {
    /// Midnight at the start of the day.
    pub const MIDNIGHT: WallTime = WallTime(0);
    /// `24:00`: the end of the day.
    pub const END_OF_DAY: WallTime = WallTime(24 * 60);

    /// `hour:minute`; `None` past `24:00` or for a minute over 59.
    pub fn hm(hour: u8, minute: u8) -> Option<WallTime> {
        let minutes = u16::from(hour) * 60 + u16::from(minute);
        (minute < 60 && minutes <= 24 * 60).then_some(WallTime(minutes))
    }

    /// Parses exactly `HH:MM` (`09:00`, `17:30`, `24:00`).
    pub fn parse(text: &str) -> Option<WallTime> {
        let bytes = text.as_bytes();
        if bytes.len() != 5 || bytes[2] != b':' {
            return None;
        }
        let digit = |i: usize| bytes[i].is_ascii_digit().then(|| bytes[i] - b'0');
        let hour = digit(0)? * 10 + digit(1)?;
        let minute = digit(3)? * 10 + digit(4)?;
        WallTime::hm(hour, minute)
    }

    /// Minutes since the start of the day.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// One working interval of a day, `[start, end)` in local wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkingInterval {
    pub start: WallTime,
    pub end: WallTime,
}

impl WorkingInterval {
    /// The interval as given; [`BusinessCalendar::new`] checks it.
    pub fn new(start: WallTime, end: WallTime) -> WorkingInterval {
        WorkingInterval { start, end }
    }
}

impl fmt::Display for WorkingInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The working intervals of each weekday, in local wall-clock time, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct WeekHours {
    pub monday: Vec<WorkingInterval>,
    pub tuesday: Vec<WorkingInterval>,
    pub wednesday: Vec<WorkingInterval>,
    pub thursday: Vec<WorkingInterval>,
    pub friday: Vec<WorkingInterval>,
    pub saturday: Vec<WorkingInterval>,
    pub sunday: Vec<WorkingInterval>,
}

impl WeekHours {
    /// The intervals of `day`.
    pub fn day(&self, day: Weekday) -> &[WorkingInterval] {
        match day {
            Weekday::Mon => &self.monday,
            Weekday::Tue => &self.tuesday,
            Weekday::Wed => &self.wednesday,
            Weekday::Thu => &self.thursday,
            Weekday::Fri => &self.friday,
            Weekday::Sat => &self.saturday,
            Weekday::Sun => &self.sunday,
        }
    }

    /// The intervals of `day`, to fill in.
    pub fn day_mut(&mut self, day: Weekday) -> &mut Vec<WorkingInterval> {
        match day {
            Weekday::Mon => &mut self.monday,
            Weekday::Tue => &mut self.tuesday,
            Weekday::Wed => &mut self.wednesday,
            Weekday::Thu => &mut self.thursday,
            Weekday::Fri => &mut self.friday,
            Weekday::Sat => &mut self.saturday,
            Weekday::Sun => &mut self.sunday,
        }
    }
}

/// Why a calendar was refused. Each names its field ([`CalendarError::field`]) as the
/// `BusinessCalendarSet` event spells it: `time_zone`, `hours.monday[1]`, `holidays[3]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Not a zone of the IANA time zone database (names are case-sensitive).
    #[error("{}: {}", self.field(), self.reason())]
    UnknownTimeZone { name: String },
    /// An interval that does not start before it ends.
    #[error("{}: {}", self.field(), self.reason())]
    EmptyInterval {
        day: &'static str,
        index: usize,
        interval: WorkingInterval,
    },
    /// Two intervals of one day share some time (touching ends are fine).
    #[error("{}: {}", self.field(), self.reason())]
    OverlappingIntervals {
        day: &'static str,
        index: usize,
        interval: WorkingInterval,
        other_index: usize,
        other: WorkingInterval,
    },
    /// More than [`MAX_INTERVALS_PER_DAY`] intervals in a day.
    #[error("{}: {}", self.field(), self.reason())]
    TooManyIntervals { day: &'static str, count: usize },
    /// Not one working minute in the week.
    #[error("{}: {}", self.field(), self.reason())]
    NoWorkingTime,
    /// More than [`MAX_HOLIDAYS`] holidays.
    #[error("{}: {}", self.field(), self.reason())]
    TooManyHolidays { count: usize },
    /// A date listed twice.
    #[error("{}: {}", self.field(), self.reason())]
    RepeatedHoliday {
        index: usize,
        date: NaiveDate,
        first_index: usize,
    },
}

impl CalendarError {
    /// The field at fault, as the event's data names it (without `data.`).
    pub fn field(&self) -> String {
        match self {
            CalendarError::UnknownTimeZone { .. } => "time_zone".to_owned(),
            CalendarError::EmptyInterval { day, index, .. }
            | CalendarError::OverlappingIntervals { day, index, .. } => {
                format!("hours.{day}[{index}]")
            }
            CalendarError::TooManyIntervals { day, .. } => format!("hours.{day}"),
            CalendarError::NoWorkingTime => "hours".to_owned(),
            CalendarError::TooManyHolidays { .. } => "holidays".to_owned(),
            CalendarError::RepeatedHoliday { index, .. } => format!("holidays[{index}]"),
        }
    }

    /// Why, without the field.
    pub fn reason(&self) -> String {
        match self {
            CalendarError::UnknownTimeZone { name } => format!(
                "`{}` is not an IANA time zone, e.g. Europe/Paris (names are case-sensitive)",
                crate::catalog::fields::shorten(name)
            ),
            CalendarError::EmptyInterval { interval, .. } => format!(
                "{interval} does not start before it ends (an interval is \
                 [\"HH:MM\", \"HH:MM\"] within one day, 24:00 ends the day)"
            ),
            CalendarError::OverlappingIntervals {
                day,
                interval,
                other_index,
                other,
                ..
            } => format!("{interval} overlaps hours.{day}[{other_index}] ({other})"),
            CalendarError::TooManyIntervals { count, .. } => {
                format!("has {count} intervals, at most {MAX_INTERVALS_PER_DAY} are allowed")
            }
            CalendarError::NoWorkingTime => {
                "has no working time on any day; clear the calendar to count elapsed time"
                    .to_owned()
            }
            CalendarError::TooManyHolidays { count } => {
                format!("has {count} dates, at most {MAX_HOLIDAYS} are allowed")
            }
            CalendarError::RepeatedHoliday {
                date, first_index, ..
            } => format!("{date} is already listed at holidays[{first_index}]"),
        }
    }
}

/// A validated business calendar: working time is every instant at which the zone's wall
/// clock shows a working interval of its weekday on a date that is not a holiday. Shared:
/// cloning it is cheap (and keeps `DomainEvent` and [`crate::sla::SlaClock`] small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar(Arc<CalendarData>);

#[derive(Debug, PartialEq, Eq)]
struct CalendarData {
    time_zone: Tz,
    week: WeekHours,
    holidays: Vec<NaiveDate>,
    /// Per weekday from Monday, the intervals sorted, in seconds of the local day.
    sorted: [Vec<(u32, u32)>; 7],
    /// The holidays sorted.
    sorted_holidays: Vec<NaiveDate>,
    /// Working seconds of a week without holidays (and without a clock change).
    week_seconds: i64,
}

impl BusinessCalendar {
    /// A calendar in the IANA zone `time_zone` (`Europe/Paris`). Refuses an unknown zone, an
    /// interval that does not start before it ends, overlapping intervals in a day, more than
    /// [`MAX_INTERVALS_PER_DAY`] intervals in a day, a week without working time, more than
    /// [`MAX_HOLIDAYS`] holidays and a holiday listed twice. Intervals and holidays are kept
    /// in the order given.
    pub fn new(
        time_zone: &str,
        week: WeekHours,
        holidays: Vec<NaiveDate>,
    ) -> Result<BusinessCalendar, CalendarError> {
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| CalendarError::UnknownTimeZone {
                name: time_zone.to_owned(),
            })?;
        let mut sorted: [Vec<(u32, u32)>; 7] = Default::default();
        for (slot, (weekday, day)) in sorted.iter_mut().zip(WEEKDAYS) {
            let intervals = week.day(weekday);
            if intervals.len() > MAX_INTERVALS_PER_DAY {
                return Err(CalendarError::TooManyIntervals {
                    day,
                    count: intervals.len(),
                });
            }
            for (index, interval) in intervals.iter().enumerate() {
                if interval.start >= interval.end {
                    return Err(CalendarError::EmptyInterval {
                        day,
                        index,
                        interval: *interval,
                    });
                }
                if let Some((other_index, other)) = intervals[..index]
                    .iter()
                    .enumerate()
                    .find(|(_, other)| other.start < interval.end && interval.start < other.end)
                {
                    return Err(CalendarError::OverlappingIntervals {
                        day,
                        index,
                        interval: *interval,
                        other_index,
                        other: *other,
                    });
                }
            }
            *slot = intervals
                .iter()
                .map(|i| (u32::from(i.start.0) * 60, u32::from(i.end.0) * 60))
                .collect();
            slot.sort_unstable();
        }
        let week_seconds: i64 = sorted
            .iter()
            .flatten()
            .map(|(start, end)| i64::from(end - start))
            .sum();
        if week_seconds == 0 {
            return Err(CalendarError::NoWorkingTime);
        }
        if holidays.len() > MAX_HOLIDAYS {
            return Err(CalendarError::TooManyHolidays {
                count: holidays.len(),
            });
        }
        let mut sorted_holidays = holidays.clone();
        sorted_holidays.sort_unstable();
        if let Some(pair) = sorted_holidays.windows(2).find(|pair| pair[0] == pair[1]) {
            let date = pair[0];
            let mut at = holidays.iter().enumerate().filter(|(_, d)| **d == date);
            let first_index = at.next().map_or(0, |(i, _)| i);
            let index = at.next().map_or(0, |(i, _)| i);
            return Err(CalendarError::RepeatedHoliday {
                index,
                date,
                first_index,
            });
        }
        Ok(BusinessCalendar(Arc::new(CalendarData {
            time_zone: tz,
            week,
            holidays,
            sorted,
            sorted_holidays,
            week_seconds,
        })))
    }

    /// The IANA name of the zone, as given (`Europe/Paris`).
    pub fn time_zone(&self) -> &'static str {
        self.0.time_zone.name()
    }

    /// The zone.
    pub fn tz(&self) -> Tz {
        self.0.time_zone
    }

    /// The working intervals of each weekday, as given.
    pub fn week(&self) -> &WeekHours {
        &self.0.week
    }

    /// The holidays, as given.
    pub fn holidays(&self) -> &[NaiveDate] {
        &self.0.holidays
    }

    /// Working seconds of a week without holidays (and without a clock change).
    pub(super) fn week_seconds(&self) -> i64 {
        self.0.week_seconds
    }

    /// Whether `date` (local) is a holiday.
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.0.sorted_holidays.binary_search(&date).is_ok()
    }

    /// Whether a holiday falls on a date from `first` to `last`, both included.
    pub(super) fn holiday_between(&self, first: NaiveDate, last: NaiveDate) -> bool {
        let from = self.0.sorted_holidays.partition_point(|d| *d < first);
        self.0.sorted_holidays.get(from).is_some_and(|d| *d <= last)
    }

    /// The sorted intervals of `date`'s weekday in seconds of the day; empty on a holiday.
    pub(super) fn intervals_on(&self, date: NaiveDate) -> &[(u32, u32)] {
        if self.is_holiday(date) {
            return &[];
        }
        &self.0.sorted[date.weekday().num_days_from_monday() as usize]
    }
}
