//! Tests of the SLA clock. Expected instants are worked out by hand in the comments: Paris is
//! UTC+1 in December (CET); London is UTC+0 (GMT) in winter and UTC+1 (BST) in summer; New
//! York is UTC-5 (EST) in winter and UTC-4 (EDT) in summer. 2026-01-01 is a Thursday.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};

use crate::sla::{
    BusinessCalendar, CalendarError, Due, MAX_HOLIDAYS, Pause, SlaClock, WallTime, WeekHours,
    WorkingInterval,
};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn interval(start: &str, end: &str) -> WorkingInterval {
    WorkingInterval::new(
        WallTime::parse(start).unwrap(),
        WallTime::parse(end).unwrap(),
    )
}

/// The same intervals Monday to Friday, nothing at the weekend.
fn weekdays(intervals: &[(&str, &str)]) -> WeekHours {
    let day: Vec<WorkingInterval> = intervals.iter().map(|(s, e)| interval(s, e)).collect();
    WeekHours {
        monday: day.clone(),
        tuesday: day.clone(),
        wednesday: day.clone(),
        thursday: day.clone(),
        friday: day,
        ..WeekHours::default()
    }
}

fn business(time_zone: &str, week: WeekHours, holidays: &[&str]) -> SlaClock {
    SlaClock::Business(
        BusinessCalendar::new(time_zone, week, holidays.iter().map(|d| date(d)).collect()).unwrap(),
    )
}

/// Paris, Monday to Friday 09:00-17:30 (08:00Z-16:30Z in winter), Christmas off.
fn paris() -> SlaClock {
    business(
        "Europe/Paris",
        weekdays(&[("09:00", "17:30")]),
        &["2026-12-25"],
    )
}

fn at(text: &str) -> Due {
    Due::At(utc(text))
}

fn pause(from: &str, until: Option<&str>) -> Pause {
    Pause {
        from: utc(from),
        until: until.map(utc),
    }
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

#[test]
fn business_time_runs_over_the_weekend() {
    // Friday 2026-12-04 16:30 CET: 60 minutes to 17:30, none on Saturday and Sunday, the
    // other 60 from Monday 09:00 CET (08:00Z): 09:00Z.
    let start = utc("2026-12-04T15:30:00Z");
    assert_eq!(paris().due(start, 120, &[]), at("2026-12-07T09:00:00Z"));
    assert_eq!(
        paris().counted(start, utc("2026-12-07T09:00:00Z"), &[]),
        minutes(120)
    );
    // The weekend itself counts nothing.
    assert_eq!(
        paris().counted(
            utc("2026-12-04T17:00:00Z"),
            utc("2026-12-07T08:00:00Z"),
            &[]
        ),
        Duration::zero()
    );
}

#[test]
fn business_time_starts_at_opening_and_ends_at_closing() {
    // Monday 2026-12-07 06:00 CET, before opening: 30 minutes from 09:00 CET is 09:30 CET.
    assert_eq!(
        paris().due(utc("2026-12-07T05:00:00Z"), 30, &[]),
        at("2026-12-07T08:30:00Z")
    );
    // From 09:00 CET, a whole day of 8.5 hours ends at 17:30 CET that day, not the next
    // morning.
    assert_eq!(
        paris().due(utc("2026-12-07T08:00:00Z"), 510, &[]),
        at("2026-12-07T16:30:00Z")
    );
    // One minute more is 09:01 CET on Tuesday.
    assert_eq!(
        paris().due(utc("2026-12-07T08:00:00Z"), 511, &[]),
        at("2026-12-08T08:01:00Z")
    );
    // A target of zero is due at the start, even outside working hours.
    assert_eq!(
        paris().due(utc("2026-12-05T12:00:00Z"), 0, &[]),
        at("2026-12-05T12:00:00Z")
    );
}

#[test]
fn business_time_skips_holidays() {
    // Thursday 2026-12-24 17:00 CET: 30 minutes to 17:30; Friday 25 is a holiday, then the
    // weekend; the other 30 from Monday 28 09:00 CET (08:00Z): 08:30Z.
    assert_eq!(
        paris().due(utc("2026-12-24T16:00:00Z"), 60, &[]),
        at("2026-12-28T08:30:00Z")
    );
    // Without the holiday, Friday 09:00-09:30 CET.
    let no_holiday = business("Europe/Paris", weekdays(&[("09:00", "17:30")]), &[]);
    assert_eq!(
        no_holiday.due(utc("2026-12-24T16:00:00Z"), 60, &[]),
        at("2026-12-25T08:30:00Z")
    );
    // A holiday falling inside a long span: 2026-12-07 to 2027-01-04 (both Mondays 00:00
    // CET) holds 4 weeks of 5 x 8.5 h = 170 h, less Christmas (8.5 h) = 161.5 h.
    assert_eq!(
        paris().counted(
            utc("2026-12-06T23:00:00Z"),
            utc("2027-01-03T23:00:00Z"),
            &[]
        ),
        minutes(161 * 60 + 30)
    );
}

/// Sunday 00:00-04:00 and Monday 09:00-17:00.
fn night_shift() -> WeekHours {
    WeekHours {
        sunday: vec![interval("00:00", "04:00")],
        monday: vec![interval("09:00", "17:00")],
        ..WeekHours::default()
    }
}

#[test]
fn spring_forward_in_london_skips_the_missing_hour() {
    // Sunday 2026-03-29 at 01:00 GMT (01:00Z) clocks go to 02:00 BST. 00:00-04:00 local is
    // 00:00Z-01:00Z (GMT) then 01:00Z-03:00Z (02:00-04:00 BST): 3 hours, not 4.
    let clock = business("Europe/London", night_shift(), &[]);
    let start = utc("2026-03-29T00:00:00Z");
    assert_eq!(
        clock.counted(start, utc("2026-03-30T00:00:00Z"), &[]),
        minutes(180)
    );
    assert_eq!(clock.due(start, 180, &[]), at("2026-03-29T03:00:00Z"));
    // 61 minutes: 00:00-01:00 GMT, then 1 minute after 02:00 BST (01:00Z).
    assert_eq!(clock.due(start, 61, &[]), at("2026-03-29T01:01:00Z"));
    // The 181st minute is Monday 09:00 BST (08:00Z) + 1.
    assert_eq!(clock.due(start, 181, &[]), at("2026-03-30T08:01:00Z"));
}

#[test]
fn fall_back_in_london_counts_the_repeated_hour_twice() {
    // Sunday 2026-10-25 at 02:00 BST (01:00Z) clocks go back to 01:00 GMT. 00:00 BST is
    // 2026-10-24T23:00Z and 04:00 GMT is 04:00Z: 5 hours of working time, not 4.
    let clock = business("Europe/London", night_shift(), &[]);
    assert_eq!(
        clock.counted(
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-26T00:00:00Z"),
            &[]
        ),
        minutes(300)
    );
    let start = utc("2026-10-24T23:00:00Z");
    assert_eq!(clock.due(start, 300, &[]), at("2026-10-25T04:00:00Z"));
    // 4 hours in is 03:00Z, which the wall clock shows as 03:00 GMT.
    assert_eq!(clock.due(start, 240, &[]), at("2026-10-25T03:00:00Z"));
}

#[test]
fn an_interval_starting_in_the_repeated_hour_counts_both_passes() {
    // Sunday 01:30-03:00 on 2026-10-25 in London: the wall clock shows 01:30-02:00 BST
    // (00:30Z-01:00Z), goes back to 01:00 GMT, shows 01:00-01:30 (01:00Z-01:30Z, outside)
    // and 01:30-03:00 GMT (01:30Z-03:00Z): 30 + 90 = 120 minutes.
    let week = WeekHours {
        sunday: vec![interval("01:30", "03:00")],
        monday: vec![interval("09:00", "17:00")],
        ..WeekHours::default()
    };
    let clock = business("Europe/London", week, &[]);
    let start = utc("2026-10-25T00:00:00Z");
    assert_eq!(
        clock.counted(start, utc("2026-10-26T00:00:00Z"), &[]),
        minutes(120)
    );
    // The first pass ends at 01:00Z; the 31st minute is 1 minute into the second pass.
    assert_eq!(clock.due(start, 30, &[]), at("2026-10-25T01:00:00Z"));
    assert_eq!(clock.due(start, 31, &[]), at("2026-10-25T01:31:00Z"));
}

/// Sunday 01:00-04:00 and Monday 09:00-17:00.
fn early_sunday() -> WeekHours {
    WeekHours {
        sunday: vec![interval("01:00", "04:00")],
        monday: vec![interval("09:00", "17:00")],
        ..WeekHours::default()
    }
}

#[test]
fn spring_forward_in_new_york_skips_the_missing_hour() {
    // Sunday 2026-03-08 at 02:00 EST (07:00Z) clocks go to 03:00 EDT. 01:00-04:00 local is
    // 06:00Z-07:00Z (01:00-02:00 EST) then 07:00Z-08:00Z (03:00-04:00 EDT): 2 hours.
    let clock = business("America/New_York", early_sunday(), &[]);
    assert_eq!(
        clock.counted(
            utc("2026-03-08T00:00:00Z"),
            utc("2026-03-09T00:00:00Z"),
            &[]
        ),
        minutes(120)
    );
    let start = utc("2026-03-08T06:00:00Z");
    assert_eq!(clock.due(start, 120, &[]), at("2026-03-08T08:00:00Z"));
    assert_eq!(clock.due(start, 61, &[]), at("2026-03-08T07:01:00Z"));
}

#[test]
fn fall_back_in_new_york_counts_the_repeated_hour_twice() {
    // Sunday 2026-11-01 at 02:00 EDT (06:00Z) clocks go back to 01:00 EST. 01:00 EDT is
    // 05:00Z and 04:00 EST is 09:00Z: 4 hours, not 3.
    let clock = business("America/New_York", early_sunday(), &[]);
    assert_eq!(
        clock.counted(
            utc("2026-11-01T00:00:00Z"),
            utc("2026-11-02T00:00:00Z"),
            &[]
        ),
        minutes(240)
    );
    assert_eq!(
        clock.due(utc("2026-11-01T05:00:00Z"), 240, &[]),
        at("2026-11-01T09:00:00Z")
    );
}

#[test]
fn office_hours_follow_the_local_clock_across_a_change() {
    // New York, Monday to Friday 09:00-17:00. Friday 2026-03-06 16:00 EST (21:00Z): 60
    // minutes to 17:00 EST; clocks change on Sunday; Monday 09:00 is now EDT (13:00Z), and
    // the other 60 minutes end at 14:00Z.
    let clock = business("America/New_York", weekdays(&[("09:00", "17:00")]), &[]);
    assert_eq!(
        clock.due(utc("2026-03-06T21:00:00Z"), 120, &[]),
        at("2026-03-09T14:00:00Z")
    );
    // London, the same hours, Friday 2026-10-23 16:00 BST (15:00Z): Monday 09:00 GMT (09:00Z)
    // + 60 = 10:00Z.
    let clock = business("Europe/London", weekdays(&[("09:00", "17:00")]), &[]);
    assert_eq!(
        clock.due(utc("2026-10-23T15:00:00Z"), 120, &[]),
        at("2026-10-26T10:00:00Z")
    );
}

/// Counts working minutes one by one: the reference the walk is checked against.
fn count_minute_by_minute(
    time_zone: chrono_tz::Tz,
    week: &WeekHours,
    holidays: &[NaiveDate],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Duration {
    let mut count = 0;
    let mut at = from;
    while at < to {
        let local = time_zone.from_utc_datetime(&at.naive_utc()).naive_local();
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap();
        let working = !holidays.contains(&local.date())
            && week
                .day(chrono::Datelike::weekday(&local))
                .iter()
                .any(|i| i.start.minutes() <= minute && minute < i.end.minutes());
        if working {
            count += 1;
        }
        at += Duration::minutes(1);
    }
    minutes(count)
}

#[test]
fn counted_time_agrees_with_a_minute_by_minute_count_across_clock_changes() {
    let week = WeekHours {
        saturday: vec![interval("10:00", "12:00")],
        sunday: vec![interval("00:30", "03:30"), interval("22:00", "24:00")],
        ..weekdays(&[("08:00", "12:30"), ("13:15", "18:00")])
    };
    let holidays = ["2026-03-10", "2026-04-03", "2026-10-26", "2026-11-02"];
    for (zone, tz) in [
        ("Europe/London", chrono_tz::Europe::London),
        ("America/New_York", chrono_tz::America::New_York),
    ] {
        let clock = business(zone, week.clone(), &holidays);
        let dates: Vec<NaiveDate> = holidays.iter().map(|d| date(d)).collect();
        for (from, to) in [
            ("2026-02-25T07:13:00Z", "2026-04-12T19:41:00Z"),
            ("2026-10-10T00:00:00Z", "2026-11-15T00:00:00Z"),
        ] {
            let (from, to) = (utc(from), utc(to));
            let expected = count_minute_by_minute(tz, &week, &dates, from, to);
            assert_eq!(clock.counted(from, to, &[]), expected, "{zone} {from}");
            // And the due time of that much counted time is the last working minute's end.
            let target = u32::try_from(expected.num_minutes()).unwrap();
            let Due::At(due) = clock.due(from, target, &[]) else {
                panic!("{zone}: no due time");
            };
            assert_eq!(clock.counted(from, due, &[]), expected, "{zone} {from}");
            assert_eq!(
                count_minute_by_minute(tz, &week, &dates, due - minutes(1), due),
                minutes(1),
                "{zone}: {due} ends a working minute"
            );
        }
    }
}

#[test]
fn a_pause_before_the_start_holds_the_clock_until_it_ends() {
    // Monday 2026-12-07 09:00 CET (08:00Z), paused since 07:00 CET until 10:00 CET (09:00Z):
    // 60 minutes from 10:00 CET is 11:00 CET (10:00Z).
    let pauses = [pause("2026-12-07T06:00:00Z", Some("2026-12-07T09:00:00Z"))];
    assert_eq!(
        paris().due(utc("2026-12-07T08:00:00Z"), 60, &pauses),
        at("2026-12-07T10:00:00Z")
    );
}

#[test]
fn a_pause_over_a_weekend_leaves_out_only_working_time() {
    // Friday 2026-12-04 16:30 CET; paused from 17:00 CET Friday to 10:00 CET Monday: 30
    // minutes on Friday, then 90 from Monday 10:00 CET: 11:30 CET (10:30Z).
    let start = utc("2026-12-04T15:30:00Z");
    let pauses = [pause("2026-12-04T16:00:00Z", Some("2026-12-07T09:00:00Z"))];
    assert_eq!(paris().due(start, 120, &pauses), at("2026-12-07T10:30:00Z"));
    assert_eq!(
        paris().counted(start, utc("2026-12-07T10:30:00Z"), &pauses),
        minutes(120)
    );
    // Overlapping pauses count once: the same span given as two overlapping pieces.
    let split = [
        pause("2026-12-05T00:00:00Z", Some("2026-12-07T09:00:00Z")),
        pause("2026-12-04T16:00:00Z", Some("2026-12-06T00:00:00Z")),
    ];
    assert_eq!(paris().due(start, 120, &split), at("2026-12-07T10:30:00Z"));
}

#[test]
fn an_open_pause_stops_the_clock_with_what_remains() {
    // Friday 16:30 CET, paused from 17:00 CET and still paused: 30 of 120 minutes counted.
    let start = utc("2026-12-04T15:30:00Z");
    let open = [pause("2026-12-04T16:00:00Z", None)];
    assert_eq!(
        paris().due(start, 120, &open),
        Due::Paused {
            remaining: minutes(90)
        }
    );
    // Paused from before the start: nothing counted.
    let open = [pause("2026-12-01T00:00:00Z", None)];
    assert_eq!(
        paris().due(start, 120, &open),
        Due::Paused {
            remaining: minutes(120)
        }
    );
    // An open pause from the very instant the target is reached does not stop it: Monday
    // 09:00 CET + 60 = 10:00 CET (09:00Z).
    let monday = utc("2026-12-07T08:00:00Z");
    let open = [pause("2026-12-07T09:00:00Z", None)];
    assert_eq!(paris().due(monday, 60, &open), at("2026-12-07T09:00:00Z"));
    // ...and from 30 minutes in, 30 remain.
    let open = [pause("2026-12-07T08:30:00Z", None)];
    assert_eq!(
        paris().due(monday, 60, &open),
        Due::Paused {
            remaining: minutes(30)
        }
    );
    // A pause opened in the night is reached only at the next working time.
    let open = [pause("2026-12-07T20:00:00Z", None)];
    assert_eq!(
        paris().due(monday, 600, &open),
        Due::Paused {
            remaining: minutes(90)
        }
    );
}

#[test]
fn elapsed_time_leaves_out_pauses() {
    let start = utc("2026-01-01T00:00:00Z");
    assert_eq!(
        SlaClock::Elapsed.due(start, 60, &[]),
        at("2026-01-01T01:00:00Z")
    );
    // Pauses 00:10-00:20 and 00:15-00:40 overlap: 30 minutes paused, due 01:30.
    let pauses = [
        pause("2026-01-01T00:10:00Z", Some("2026-01-01T00:20:00Z")),
        pause("2026-01-01T00:15:00Z", Some("2026-01-01T00:40:00Z")),
    ];
    assert_eq!(
        SlaClock::Elapsed.due(start, 60, &pauses),
        at("2026-01-01T01:30:00Z")
    );
    assert_eq!(
        SlaClock::Elapsed.counted(start, utc("2026-01-01T01:30:00Z"), &pauses),
        minutes(60)
    );
    // A pause from before the start until 00:30 leaves out its last 30 minutes only.
    let before = [pause("2025-12-31T23:00:00Z", Some("2026-01-01T00:30:00Z"))];
    assert_eq!(
        SlaClock::Elapsed.due(start, 60, &before),
        at("2026-01-01T01:30:00Z")
    );
    // A pause that ends before it starts is no pause.
    let empty = [pause("2026-01-01T00:30:00Z", Some("2026-01-01T00:10:00Z"))];
    assert_eq!(
        SlaClock::Elapsed.due(start, 60, &empty),
        at("2026-01-01T01:00:00Z")
    );
    // Paused at 00:45 and still paused: 15 minutes remain.
    let open = [pause("2026-01-01T00:45:00Z", None)];
    assert_eq!(
        SlaClock::Elapsed.due(start, 60, &open),
        Due::Paused {
            remaining: minutes(15)
        }
    );
    assert_eq!(
        SlaClock::Elapsed.counted(start, utc("2026-01-02T00:00:00Z"), &open),
        minutes(45)
    );
    // Counting backwards counts nothing.
    assert_eq!(
        SlaClock::Elapsed.counted(utc("2026-01-02T00:00:00Z"), start, &[]),
        Duration::zero()
    );
}

#[test]
fn warning_times_are_a_share_of_the_target() {
    // 75 % of 8 hours from Monday 09:00 CET is 6 hours: 15:00 CET (14:00Z).
    let monday = utc("2026-12-07T08:00:00Z");
    assert_eq!(
        paris().warning(monday, 480, 75, &[]),
        at("2026-12-07T14:00:00Z")
    );
    // 75 % of 1 minute is 45 seconds.
    let start = utc("2026-01-01T00:00:00Z");
    assert_eq!(
        SlaClock::Elapsed.warning(start, 1, 75, &[]),
        at("2026-01-01T00:00:45Z")
    );
    // 75 % of an hour with 10 minutes paused: 45 + 10 minutes.
    let pauses = [pause("2026-01-01T00:10:00Z", Some("2026-01-01T00:20:00Z"))];
    assert_eq!(
        SlaClock::Elapsed.warning(start, 60, 75, &pauses),
        at("2026-01-01T00:55:00Z")
    );
    // 50 % of a 2-day target (960 business minutes over Paris hours, 480 of them): Monday
    // 09:00 CET + 480 minutes = 17:00 CET (16:00Z).
    assert_eq!(
        paris().warning(monday, 960, 50, &[]),
        at("2026-12-07T16:00:00Z")
    );
}

#[test]
fn targets_past_the_end_of_time_are_beyond() {
    let start = utc("2026-01-01T00:00:00Z");
    assert_eq!(SlaClock::Elapsed.due(start, u32::MAX, &[]), Due::Beyond);
    assert_eq!(paris().due(start, u32::MAX, &[]), Due::Beyond);
    assert_eq!(
        SlaClock::Elapsed.warning(start, u32::MAX, 99, &[]),
        Due::Beyond
    );
    // ...unless the clock is stopped first.
    let open = [pause("2026-01-01T00:10:00Z", None)];
    assert_eq!(
        SlaClock::Elapsed.due(start, u32::MAX, &open),
        Due::Paused {
            remaining: minutes(i64::from(u32::MAX) - 10)
        }
    );
    // The last printable instant is 9999-12-31T23:59:59Z.
    let late = utc("9999-12-31T23:00:00Z");
    assert_eq!(
        SlaClock::Elapsed.due(late, 59, &[]),
        at("9999-12-31T23:59:00Z")
    );
    assert_eq!(SlaClock::Elapsed.due(late, 60, &[]), Due::Beyond);
    // One working minute a week (Monday 09:00 UTC): December 9999 has at most five Mondays,
    // so ten minutes from its first day lie beyond.
    let one_minute = WeekHours {
        monday: vec![interval("09:00", "09:01")],
        ..WeekHours::default()
    };
    let clock = business("UTC", one_minute, &[]);
    assert_eq!(clock.due(utc("9999-12-01T00:00:00Z"), 10, &[]), Due::Beyond);
    assert_eq!(
        clock.counted(utc("9999-12-01T00:00:00Z"), DateTime::<Utc>::MAX_UTC, &[]),
        minutes(4)
    );
}

#[test]
fn a_sparse_calendar_with_a_year_of_holidays_is_walked_by_the_week() {
    // One working minute a week, Monday 09:00-09:01 UTC, and every day of 2027 a holiday.
    // From Monday 2026-01-05: the 52 Mondays of 2026 (Jan 5 to Dec 28) count, the 52 of
    // 2027 (Jan 4 to Dec 27) do not, so minute N > 52 falls on the Monday N - 1 + 52 weeks
    // on: minute 50,000 on week 50,051, 350,357 days after 2026-01-05, at 09:01.
    let one_minute = WeekHours {
        monday: vec![interval("09:00", "09:01")],
        ..WeekHours::default()
    };
    let holidays: Vec<NaiveDate> = date("2027-01-01")
        .iter_days()
        .take_while(|d| *d < date("2028-01-01"))
        .collect();
    assert_eq!(holidays.len(), 365);
    let clock = SlaClock::Business(BusinessCalendar::new("UTC", one_minute, holidays).unwrap());
    let start = utc("2026-01-05T00:00:00Z");
    let expected = (date("2026-01-05") + chrono::Days::new(350_357))
        .and_hms_opt(9, 1, 0)
        .unwrap()
        .and_utc();
    assert_eq!(clock.due(start, 50_000, &[]), Due::At(expected));
    assert_eq!(clock.counted(start, expected, &[]), minutes(50_000));
    // The 52nd minute is on 2026-12-28, the 53rd on 2028-01-03.
    assert_eq!(clock.due(start, 52, &[]), at("2026-12-28T09:01:00Z"));
    assert_eq!(clock.due(start, 53, &[]), at("2028-01-03T09:01:00Z"));
}

fn error(time_zone: &str, week: WeekHours, holidays: Vec<NaiveDate>) -> CalendarError {
    BusinessCalendar::new(time_zone, week, holidays).unwrap_err()
}

#[test]
fn calendar_errors_name_the_field() {
    let office = || weekdays(&[("09:00", "17:00")]);

    let e = error("Mars/Olympus_Mons", office(), vec![]);
    assert_eq!(e.field(), "time_zone");
    assert!(
        e.to_string()
            .starts_with("time_zone: `Mars/Olympus_Mons` is not an IANA"),
        "{e}"
    );
    // Names are case-sensitive.
    assert_eq!(error("europe/paris", office(), vec![]).field(), "time_zone");

    let mut week = office();
    week.tuesday.push(interval("18:00", "18:00"));
    let e = error("UTC", week, vec![]);
    assert_eq!(
        e.to_string(),
        "hours.tuesday[1]: 18:00-18:00 does not start before it ends (an interval is \
         [\"HH:MM\", \"HH:MM\"] within one day, 24:00 ends the day)"
    );
    let mut week = office();
    week.sunday = vec![interval("17:00", "09:00")];
    assert_eq!(error("UTC", week, vec![]).field(), "hours.sunday[0]");

    let mut week = office();
    week.monday = vec![
        interval("13:00", "17:00"),
        interval("09:00", "12:00"),
        interval("11:00", "14:00"),
    ];
    let e = error("UTC", week, vec![]);
    assert_eq!(
        e.to_string(),
        "hours.monday[2]: 11:00-14:00 overlaps hours.monday[0] (13:00-17:00)"
    );
    // Touching intervals do not overlap.
    let mut week = office();
    week.monday = vec![interval("09:00", "12:00"), interval("12:00", "24:00")];
    assert!(BusinessCalendar::new("UTC", week, vec![]).is_ok());

    let mut week = office();
    week.friday = (0..9)
        .map(|h| WorkingInterval::new(WallTime::hm(h, 0).unwrap(), WallTime::hm(h, 30).unwrap()))
        .collect();
    let e = error("UTC", week, vec![]);
    assert_eq!(
        e.to_string(),
        "hours.friday: has 9 intervals, at most 8 are allowed"
    );

    let e = error("UTC", WeekHours::default(), vec![]);
    assert_eq!(e.field(), "hours");
    assert!(e.to_string().contains("no working time"), "{e}");

    let many: Vec<NaiveDate> = date("2026-01-01")
        .iter_days()
        .take(MAX_HOLIDAYS + 1)
        .collect();
    let e = error("UTC", office(), many);
    assert_eq!(
        e.to_string(),
        "holidays: has 1831 dates, at most 1830 are allowed"
    );
    let enough: Vec<NaiveDate> = date("2026-01-01").iter_days().take(MAX_HOLIDAYS).collect();
    assert!(BusinessCalendar::new("UTC", office(), enough).is_ok());

    let e = error(
        "UTC",
        office(),
        vec![
            date("2026-12-25"),
            date("2027-01-01"),
            date("2026-12-26"),
            date("2027-01-01"),
        ],
    );
    assert_eq!(
        e.to_string(),
        "holidays[3]: 2027-01-01 is already listed at holidays[1]"
    );
}

#[test]
fn wall_times_parse_exactly() {
    assert_eq!(WallTime::parse("09:05"), WallTime::hm(9, 5));
    assert_eq!(WallTime::parse("24:00"), Some(WallTime::END_OF_DAY));
    for bad in [
        "24:01", "9:00", "09:60", "09-00", "25:00", "0900", "09:00:00", "",
    ] {
        assert_eq!(WallTime::parse(bad), None, "{bad}");
    }
    assert_eq!(WallTime::END_OF_DAY.to_string(), "24:00");
}

#[test]
fn a_calendar_keeps_what_it_was_given() {
    let calendar = BusinessCalendar::new(
        "America/New_York",
        weekdays(&[("13:00", "17:00"), ("09:00", "12:00")]),
        vec![date("2026-12-25"), date("2026-07-03")],
    )
    .unwrap();
    assert_eq!(calendar.time_zone(), "America/New_York");
    assert_eq!(calendar.week().monday[0], interval("13:00", "17:00"));
    assert_eq!(
        calendar.holidays(),
        &[date("2026-12-25"), date("2026-07-03")]
    );
    assert!(calendar.is_holiday(date("2026-07-03")));
    assert!(!calendar.is_holiday(date("2026-07-04")));
}
