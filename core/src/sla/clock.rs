//! The SLA clock arithmetic: when a target of counted time is reached from a start, and how
//! much time was counted between two instants, on the elapsed (24x7) clock or a business
//! calendar, never counting paused time.
//!
//! The business walk goes a day at a time (a week at a time where nothing can differ from a
//! plain week), interval by interval, so its cost grows with the days crossed, not the minutes.

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};

use crate::sla::calendar::BusinessCalendar;

/// How a case's SLA time is counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SlaClock {
    /// Every instant counts (24x7): the clock of a tenant without a business calendar.
    #[default]
    Elapsed,
    /// Only the calendar's working time counts.
    Business(BusinessCalendar),
}

/// A span during which the clock stands still: `[from, until)`, `until: None` while it is still
/// paused. Pauses may overlap each other and the time before the start; each instant is left
/// out once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// When a target of counted time is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The first instant at which the target has been counted.
    At(DateTime<Utc>),
    /// A pause still open stopped the clock before the target was reached: there is no due
    /// time until it ends. `remaining` is the counted time still needed after it.
    Paused { remaining: Duration },
    /// The target would be reached after 9999-12-31T23:59:59Z, past what RFC 3339 can write.
    Beyond,
}

impl Due {
    /// The due instant, if there is one.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        match self {
            Due::At(at) => Some(*at),
            _ => None,
        }
    }
}

/// The last instant a due time may be: 9999-12-31T23:59:59Z.
pub fn latest_due() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first instant the business walk starts from: 0001-01-01T00:00:00Z (earlier starts are
/// read as this one; no stored time is earlier).
fn earliest() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Just past the latest due instant: where counting stops.
fn end_of_time() -> DateTime<Utc> {
    latest_due() + Duration::seconds(1)
}

const DAY: Duration = Duration::days(1);
const WEEK: Duration = Duration::days(7);

impl SlaClock {
    /// When `target_minutes` of counted time have passed since `start`, pauses left out.
    pub fn due(&self, start: DateTime<Utc>, target_minutes: u32, pauses: &[Pause]) -> Due {
        self.due_after(start, Duration::minutes(i64::from(target_minutes)), pauses)
    }

    /// When `warn_percent` % of `target_minutes` have been counted since `start` (75 % of
    /// 1 minute is 45 seconds; a percentage over 100 lies past the due time).
    pub fn warning(
        &self,
        start: DateTime<Utc>,
        target_minutes: u32,
        warn_percent: u8,
        pauses: &[Pause],
    ) -> Due {
        // minutes * 60,000 ms * percent / 100, exactly.
        let millis = i64::from(target_minutes) * 600 * i64::from(warn_percent);
        self.due_after(start, Duration::milliseconds(millis), pauses)
    }

    /// When `target` of counted time has passed since `start`, pauses left out. A target of
    /// zero or less is due at `start`.
    pub fn due_after(&self, start: DateTime<Utc>, target: Duration, pauses: &[Pause]) -> Due {
        if target <= Duration::zero() {
            return at_or_beyond(Some(start));
        }
        let pauses = normalize(pauses, start);
        // Counted time never exceeds elapsed time: a target past the end of time from the
        // start is beyond it, unless a pause still open stops the clock first.
        if start
            .checked_add_signed(target)
            .is_none_or(|due| due > latest_due())
        {
            return match pauses.last() {
                Some(open) if open.until.is_none() && open.from <= latest_due() => Due::Paused {
                    remaining: target - self.counted_normalized(start, open.from, &pauses),
                },
                _ => Due::Beyond,
            };
        }
        match self {
            SlaClock::Elapsed => elapsed_due(start, target, &pauses),
            SlaClock::Business(calendar) => {
                Walker::new(calendar).due(start.max(earliest()), target, &pauses)
            }
        }
    }

    /// Counted time from `from` to `to` (zero when `to` is not after `from`): business time
    /// for a calendar, elapsed time otherwise, pauses left out. Counting ends at
    /// 9999-12-31T23:59:59Z.
    pub fn counted(&self, from: DateTime<Utc>, to: DateTime<Utc>, pauses: &[Pause]) -> Duration {
        self.counted_normalized(from, to, &normalize(pauses, from))
    }

    fn counted_normalized(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        pauses: &[Span],
    ) -> Duration {
        let (from, to) = (from.max(earliest()), to.min(end_of_time()));
        if to <= from {
            return Duration::zero();
        }
        match self {
            SlaClock::Elapsed => {
                let mut cursor = 0;
                let mut pieces = Vec::new();
                unpaused(from, to, pauses, &mut cursor, &mut pieces);
                pieces.iter().map(|(a, b)| *b - *a).sum()
            }
            SlaClock::Business(calendar) => Walker::new(calendar).counted(from, to, pauses),
        }
    }
}

/// `at`, unless it is missing or past the latest printable instant.
fn at_or_beyond(at: Option<DateTime<Utc>>) -> Due {
    match at {
        Some(at) if at <= latest_due() => Due::At(at),
        _ => Due::Beyond,
    }
}

/// A pause clipped to the start, non-empty; sorted and merged in a list.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

/// The pauses from `floor` on, sorted, overlapping and touching ones merged; an open pause,
/// if any, is last.
fn normalize(pauses: &[Pause], floor: DateTime<Utc>) -> Vec<Span> {
    let mut spans: Vec<Span> = pauses
        .iter()
        .filter_map(|pause| {
            let from = pause.from.max(floor);
            match pause.until {
                Some(until) if until <= from => None,
                until => Some(Span { from, until }),
            }
        })
        .collect();
    spans.sort_by_key(|span| span.from);
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if last.until.is_none_or(|until| span.from <= until) => {
                last.until = match (last.until, span.until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push(span),
        }
    }
    merged
}

/// Appends the parts of `[from, to)` outside every pause to `out`. `cursor` indexes the first
/// pause that may still matter; calls must come in increasing order of `from`.
fn unpaused(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    pauses: &[Span],
    cursor: &mut usize,
    out: &mut Vec<(DateTime<Utc>, DateTime<Utc>)>,
) {
    skip_ended(pauses, cursor, from);
    let mut at = from;
    for pause in &pauses[*cursor..] {
        if pause.from >= to || at >= to {
            break;
        }
        if pause.from > at {
            out.push((at, pause.from));
        }
        at = match pause.until {
            Some(until) => at.max(until),
            None => to,
        };
    }
    if at < to {
        out.push((at, to));
    }
}

/// Moves `cursor` past the pauses that ended by `at`.
fn skip_ended(pauses: &[Span], cursor: &mut usize, at: DateTime<Utc>) {
    while pauses
        .get(*cursor)
        .is_some_and(|pause| pause.until.is_some_and(|until| until <= at))
    {
        *cursor += 1;
    }
}

/// Whether a pause holds any instant of `[from, to)`.
fn paused_within(
    pauses: &[Span],
    cursor: &mut usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> bool {
    skip_ended(pauses, cursor, from);
    pauses.get(*cursor).is_some_and(|pause| pause.from < to)
}

/// The elapsed clock: the start plus the target plus the paused time before the due instant.
fn elapsed_due(start: DateTime<Utc>, target: Duration, pauses: &[Span]) -> Due {
    let mut at = start;
    let mut remaining = target;
    for pause in pauses {
        let running = pause.from - at;
        if running >= remaining {
            break;
        }
        remaining -= running;
        match pause.until {
            Some(until) => at = until,
            None => return Due::Paused { remaining },
        }
    }
    at_or_beyond(at.checked_add_signed(remaining))
}

/// Walks a calendar's working time in UTC.
struct Walker<'a> {
    calendar: &'a BusinessCalendar,
    /// Working segments of the chunk at hand, reused between chunks.
    segments: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Their parts outside pauses.
    pieces: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl<'a> Walker<'a> {
    fn new(calendar: &'a BusinessCalendar) -> Walker<'a> {
        Walker {
            calendar,
            segments: Vec::new(),
            pieces: Vec::new(),
        }
    }

    fn due(&mut self, start: DateTime<Utc>, target: Duration, pauses: &[Span]) -> Due {
        let week = Duration::seconds(self.calendar.week_seconds());
        let mut remaining = target;
        let mut at = start;
        let mut cursor = 0;
        loop {
            if at > latest_due() {
                return Due::Beyond;
            }
            skip_ended(pauses, &mut cursor, at);
            if pauses
                .get(cursor)
                .is_some_and(|pause| pause.until.is_none() && pause.from <= at)
            {
                return Due::Paused { remaining };
            }
            let week_end = at + WEEK;
            if remaining > week
                && !paused_within(pauses, &mut cursor, at, week_end)
                && self.plain_week(at)
            {
                remaining -= week;
                at = week_end;
                continue;
            }
            let chunk_end = at + DAY;
            self.chunk(at, chunk_end, pauses, &mut cursor);
            for (from, to) in &self.pieces {
                let length = *to - *from;
                if length >= remaining {
                    return at_or_beyond(Some(*from + remaining));
                }
                remaining -= length;
            }
            at = chunk_end;
        }
    }

    fn counted(&mut self, from: DateTime<Utc>, to: DateTime<Utc>, pauses: &[Span]) -> Duration {
        let week = Duration::seconds(self.calendar.week_seconds());
        let mut counted = Duration::zero();
        let mut at = from;
        let mut cursor = 0;
        while at < to {
            let week_end = at + WEEK;
            if week_end <= to
                && !paused_within(pauses, &mut cursor, at, week_end)
                && self.plain_week(at)
            {
                counted += week;
                at = week_end;
                continue;
            }
            let chunk_end = (at + DAY).min(to);
            self.chunk(at, chunk_end, pauses, &mut cursor);
            counted += self.pieces.iter().map(|(a, b)| *b - *a).sum::<Duration>();
            at = chunk_end;
        }
        counted
    }

    /// Fills `pieces` with the working time of `[from, to)` outside pauses, in order.
    fn chunk(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        pauses: &[Span],
        cursor: &mut usize,
    ) {
        self.segments.clear();
        self.pieces.clear();
        working(self.calendar, from, to, &mut self.segments);
        for (a, b) in &self.segments {
            unpaused(*a, *b, pauses, cursor, &mut self.pieces);
        }
    }

    /// Whether the seven days from `at` hold exactly a week's working time: the zone's offset
    /// is the same at each of the eight day boundaries and no holiday falls on the local
    /// dates they cross. (A clock change and its reversal within one day would go unseen;
    /// the time zone database has none.)
    fn plain_week(&self, at: DateTime<Utc>) -> bool {
        let at_start = offset(self.calendar, at);
        if (1..=7).any(|day| offset(self.calendar, at + Duration::days(day)) != at_start) {
            return false;
        }
        let first = local(at, at_start).date();
        let last = local(at + WEEK, at_start).date();
        !self.calendar.holiday_between(first, last)
    }
}

/// The zone's offset from UTC at `at`, in seconds.
fn offset(calendar: &BusinessCalendar, at: DateTime<Utc>) -> i32 {
    calendar
        .tz()
        .offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The wall-clock time at `at` under `offset` seconds.
fn local(at: DateTime<Utc>, offset: i32) -> NaiveDateTime {
    at.naive_utc() + Duration::seconds(i64::from(offset))
}

/// Appends the working segments of `[from, to)` in UTC, in order: the instants at which the
/// zone's wall clock shows a working interval of a non-holiday date. Split where the offset
/// changes; within a part of constant offset the wall clock is UTC plus that offset.
fn working(
    calendar: &BusinessCalendar,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &mut Vec<(DateTime<Utc>, DateTime<Utc>)>,
) {
    let mut at = from;
    let mut offset_at = offset(calendar, at);
    while at < to {
        let part_end = if offset(calendar, to) == offset_at {
            to
        } else {
            first_change(calendar, at, to, offset_at)
        };
        working_at_offset(calendar, at, part_end, offset_at, out);
        at = part_end;
        offset_at = offset(calendar, at);
    }
}

/// The first instant after `from`, at most `to`, at which the offset is no longer `offset`
/// (offsets change at whole seconds); `to` when none is found.
fn first_change(
    calendar: &BusinessCalendar,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    offset_from: i32,
) -> DateTime<Utc> {
    let (mut low, mut high) = (from.timestamp(), to.timestamp());
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        let probe = DateTime::from_timestamp(middle, 0).unwrap_or(to);
        if offset(calendar, probe) == offset_from {
            low = middle;
        } else {
            high = middle;
        }
    }
    DateTime::from_timestamp(high, 0)
        .filter(|change| *change > from && *change <= to)
        .unwrap_or(to)
}

/// Appends the working segments of `[from, to)`, a part in which the offset is `offset`.
fn working_at_offset(
    calendar: &BusinessCalendar,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    offset: i32,
    out: &mut Vec<(DateTime<Utc>, DateTime<Utc>)>,
) {
    let shift = Duration::seconds(i64::from(offset));
    let (local_from, local_to) = (local(from, offset), local(to, offset));
    let mut date = local_from.date();
    while date <= local_to.date() {
        let midnight = date.and_time(chrono::NaiveTime::MIN);
        for (start, end) in calendar.intervals_on(date) {
            let start = (midnight + Duration::seconds(i64::from(*start))).max(local_from);
            let end = (midnight + Duration::seconds(i64::from(*end))).min(local_to);
            if start < end {
                out.push(((start - shift).and_utc(), (end - shift).and_utc()));
            }
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
}
