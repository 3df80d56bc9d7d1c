//! Business hours: a weekly schedule in an IANA time zone, with holidays, and how many seconds of
//! it lie between two instants. Each day's opening times are read as wall-clock times of that day
//! in the zone, so a day on which the clocks change has as many business seconds as really
//! elapse (a 00:00–24:00 day is 23 or 25 hours long).
//!
//! A [`ScheduleHistory`] keeps every schedule a channel had with the time it took effect: a change
//! applies from then on, and figures of earlier times stay as they were (a rebuild from the log
//! computes them with the schedule of their time). Without any schedule, business time is calendar
//! time.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Why a schedule does not parse; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ScheduleError {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field: field.into(),
        message: message.into(),
    }
}

/// One opening span of a day, `09:00-17:00` (end after start; `24:00` is the day's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: NaiveTime,
    /// `None`: the end of the day (24:00).
    end: Option<NaiveTime>,
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (start, end) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM"))?;
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| format!("{t:?} is not HH:MM"))
        };
        let start = time(start)?;
        let end = match end.trim() {
            "24:00" => None,
            end => Some(time(end)?),
        };
        if end.is_some_and(|end| end <= start) {
            return Err(format!("{s:?} ends before it starts"));
        }
        Ok(Span { start, end })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}-{}", self.start.format("%H:%M"), end.format("%H:%M")),
            None => write!(f, "{}-24:00", self.start.format("%H:%M")),
        }
    }
}

/// A schedule as configured (and stored): `{"time_zone": "Europe/Berlin", "monday":
/// ["09:00-17:00"], …, "holidays": ["2026-12-25"]}`. A day left out is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA time zone the opening times are in, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Opening spans per weekday, `HH:MM-HH:MM` (`24:00` ends the day).
    #[serde(default)]
    pub monday: Vec<String>,
    #[serde(default)]
    pub tuesday: Vec<String>,
    #[serde(default)]
    pub wednesday: Vec<String>,
    #[serde(default)]
    pub thursday: Vec<String>,
    #[serde(default)]
    pub friday: Vec<String>,
    #[serde(default)]
    pub saturday: Vec<String>,
    #[serde(default)]
    pub sunday: Vec<String>,
    /// Closed days (`YYYY-MM-DD`, local dates in the time zone).
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A weekly schedule in a time zone, with holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    tz: Tz,
    /// Monday first; spans sorted and not overlapping.
    week: [Vec<Span>; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl TryFrom<&ScheduleConfig> for BusinessHours {
    type Error = ScheduleError;

    fn try_from(config: &ScheduleConfig) -> Result<Self, ScheduleError> {
        let tz: Tz = config.time_zone.parse().map_err(|_| {
            invalid(
                "time_zone",
                format!("{:?} is no IANA time zone", config.time_zone),
            )
        })?;
        let days = [
            ("monday", &config.monday),
            ("tuesday", &config.tuesday),
            ("wednesday", &config.wednesday),
            ("thursday", &config.thursday),
            ("friday", &config.friday),
            ("saturday", &config.saturday),
            ("sunday", &config.sunday),
        ];
        let mut week: [Vec<Span>; 7] = Default::default();
        for (i, (name, spans)) in days.into_iter().enumerate() {
            let mut parsed = spans
                .iter()
                .map(|s| s.parse::<Span>().map_err(|e| invalid(name, e)))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.sort_by_key(|s| s.start);
            for pair in parsed.windows(2) {
                if pair[0].end.is_none_or(|end| end > pair[1].start) {
                    return Err(invalid(name, format!("{} overlaps {}", pair[0], pair[1])));
                }
            }
            week[i] = parsed;
        }
        let holidays = config
            .holidays
            .iter()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| invalid("holidays", format!("{d:?} is not YYYY-MM-DD")))
            })
            .collect::<Result<_, _>>()?;
        Ok(BusinessHours { tz, week, holidays })
    }
}

impl BusinessHours {
    /// Seconds of business time in `[from, to)` (0 when `to` is not after `from`).
    pub fn seconds_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        if to <= from {
            return 0;
        }
        // A day's spans can only overlap the range if the local date is within a day of it.
        let first = from.with_timezone(&self.tz).date_naive() - Days::new(1);
        let last = to.with_timezone(&self.tz).date_naive() + Days::new(1);
        let mut total = 0;
        let mut day = first;
        while day <= last {
            if !self.holidays.contains(&day) {
                for span in &self.week[day.weekday().num_days_from_monday() as usize] {
                    let (start, end) = self.instants(day, span);
                    let (start, end) = (start.max(from), end.min(to));
                    if end > start {
                        total += (end - start).num_seconds();
                    }
                }
            }
            day = day + Days::new(1);
        }
        total
    }

    /// The instants a span of `day` opens and closes.
    fn instants(&self, day: NaiveDate, span: &Span) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.instant(day.and_time(span.start));
        let end = match span.end {
            Some(end) => self.instant(day.and_time(end)),
            None => self.instant((day + Days::new(1)).and_time(NaiveTime::MIN)),
        };
        (start, end)
    }

    /// The instant of a wall-clock time: the earlier one when the clocks went back (it happened
    /// twice), the first instant after the gap when they went forward (it never happened).
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        if let Some(at) = self.tz.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc);
        }
        // In a gap (at most a few hours, on whole minutes): its end, the first minute that exists.
        let mut probe = local;
        for _ in 0..(24 * 60) {
            probe += chrono::Duration::minutes(1);
            if let Some(at) = self.tz.from_local_datetime(&probe).earliest() {
                return at.with_timezone(&Utc);
            }
        }
        self.tz.from_utc_datetime(&local).with_timezone(&Utc)
    }
}

/// Every schedule a channel had, each from the time it took effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleHistory {
    /// Sorted by effective time; `None` is "no schedule" (business time = calendar time).
    changes: Vec<(DateTime<Utc>, Option<BusinessHours>)>,
}

impl ScheduleHistory {
    /// No schedule ever: business time is calendar time.
    pub fn calendar() -> Self {
        ScheduleHistory::default()
    }

    /// One schedule for all time.
    pub fn always(hours: BusinessHours) -> Self {
        ScheduleHistory {
            changes: vec![(DateTime::<Utc>::MIN_UTC, Some(hours))],
        }
    }

    /// The schedule from `effective` on (`None`: none, calendar time).
    pub fn change(&mut self, effective: DateTime<Utc>, hours: Option<BusinessHours>) {
        let at = self.changes.partition_point(|(t, _)| *t <= effective);
        self.changes.insert(at, (effective, hours));
    }

    /// Business seconds in `[from, to)`, each part under the schedule of its time.
    pub fn seconds_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        if to <= from {
            return 0;
        }
        let mut total = 0;
        let mut cursor = from;
        // The schedule in force at `from`, then each change before `to`.
        let mut current = self
            .changes
            .iter()
            .rev()
            .find(|(t, _)| *t <= from)
            .and_then(|(_, h)| h.as_ref());
        for (effective, hours) in self.changes.iter().filter(|(t, _)| *t > from && *t < to) {
            total += Self::part(current, cursor, *effective);
            cursor = *effective;
            current = hours.as_ref();
        }
        total + Self::part(current, cursor, to)
    }

    /// The instant `seconds` business seconds after `from` (`None` when the schedules give
    /// that much within 400 days: a schedule that is closed every day).
    pub fn after(&self, from: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
        if seconds <= 0 {
            return Some(from);
        }
        let horizon = from + chrono::Duration::days(400);
        let mut step = chrono::Duration::seconds(seconds);
        let mut hi = from + step;
        while self.seconds_between(from, hi) < seconds {
            if hi >= horizon {
                return None;
            }
            step = step * 2;
            hi = (from + step).min(horizon);
        }
        // The first millisecond with enough business time before it.
        let (mut lo, mut hi) = (from.timestamp_millis(), hi.timestamp_millis());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = DateTime::from_timestamp_millis(mid)?;
            if self.seconds_between(from, at) >= seconds {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        DateTime::from_timestamp_millis(lo).map(|at| at.max(from))
    }

    fn part(hours: Option<&BusinessHours>, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        match hours {
            Some(hours) => hours.seconds_between(from, to),
            None => (to - from).num_seconds().max(0),
        }
    }
}

/// One stored schedule change: for the default (no channel) or one channel, from `effective` on.
/// `hours: None` is "no schedule" for the default (calendar time) and "the default again" for a
/// channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleChange<C> {
    pub channel: Option<C>,
    pub effective: DateTime<Utc>,
    pub hours: Option<BusinessHours>,
}

/// The schedules of every channel: the default's changes and each channel's own, composed per
/// channel into the [`ScheduleHistory`] its figures are measured with.
#[derive(Debug, Clone)]
pub struct Schedules<C> {
    changes: Vec<ScheduleChange<C>>,
}

impl<C: PartialEq> Schedules<C> {
    pub fn new(mut changes: Vec<ScheduleChange<C>>) -> Self {
        changes.sort_by_key(|c| c.effective);
        Schedules { changes }
    }

    /// What applies to `channel` over time: from each change of the default or of the channel
    /// on, the channel's own schedule if it has one then, else the default's.
    pub fn history(&self, channel: &C) -> ScheduleHistory {
        let mut history = ScheduleHistory::calendar();
        let mut default: Option<&BusinessHours> = None;
        let mut own: Option<&BusinessHours> = None;
        for change in &self.changes {
            match &change.channel {
                None => default = change.hours.as_ref(),
                Some(c) if c == channel => own = change.hours.as_ref(),
                Some(_) => continue,
            }
            history.change(change.effective, own.or(default).cloned());
        }
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    /// Open `span` on the weekdays `days` (0 is Monday).
    fn open_on(tz: &str, days: std::ops::Range<usize>, span: &str) -> BusinessHours {
        let mut config = ScheduleConfig {
            time_zone: tz.to_owned(),
            ..ScheduleConfig::default()
        };
        let week = [
            &mut config.monday,
            &mut config.tuesday,
            &mut config.wednesday,
            &mut config.thursday,
            &mut config.friday,
            &mut config.saturday,
            &mut config.sunday,
        ];
        for day in week.into_iter().skip(days.start).take(days.len()) {
            day.push(span.to_owned());
        }
        BusinessHours::try_from(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    fn weekdays(tz: &str, span: &str) -> BusinessHours {
        open_on(tz, 0..5, span)
    }

    fn every_day(tz: &str, span: &str) -> BusinessHours {
        open_on(tz, 0..7, span)
    }

    #[test]
    fn a_weekend_is_skipped() {
        let berlin = weekdays("Europe/Berlin", "09:00-17:00");
        // Friday 16:30 Berlin (CET, UTC+1) to Monday 09:15.
        let seconds =
            berlin.seconds_between(utc("2026-01-16T15:30:00Z"), utc("2026-01-19T08:15:00Z"));
        assert_eq!(seconds, 45 * 60);
    }

    #[test]
    fn spring_forward_in_berlin_has_23_hours() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST.
        let berlin = every_day("Europe/Berlin", "00:00-24:00");
        let day = berlin.seconds_between(utc("2026-03-28T23:00:00Z"), utc("2026-03-29T22:00:00Z"));
        assert_eq!(day, 23 * 3600);
        // Saturday 23:00 to Sunday 04:00 local is four hours, not five.
        let night =
            berlin.seconds_between(utc("2026-03-28T22:00:00Z"), utc("2026-03-29T02:00:00Z"));
        assert_eq!(night, 4 * 3600);
    }

    #[test]
    fn fall_back_in_new_york_has_25_hours() {
        // 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let ny = every_day("America/New_York", "00:00-24:00");
        let day = ny.seconds_between(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T05:00:00Z"));
        assert_eq!(day, 25 * 3600);
    }

    #[test]
    fn office_hours_stay_eight_hours_across_dst() {
        // 09:00–17:00 is eight real hours on the days the clocks change, in both zones.
        let berlin = weekdays("Europe/Berlin", "09:00-17:00");
        // Monday after the spring change: 09:00 CEST = 07:00Z.
        assert_eq!(
            berlin.seconds_between(utc("2026-03-30T00:00:00Z"), utc("2026-03-31T00:00:00Z")),
            8 * 3600
        );
        let ny = weekdays("America/New_York", "09:00-17:00");
        // Friday before and Monday after the November change.
        assert_eq!(
            ny.seconds_between(utc("2026-10-30T12:00:00Z"), utc("2026-11-02T23:00:00Z")),
            2 * 8 * 3600
        );
        // The New York spring change (2026-03-08) happens on a Sunday: Monday has its 8 hours,
        // 09:00 EDT = 13:00Z.
        assert_eq!(
            ny.seconds_between(utc("2026-03-09T13:00:00Z"), utc("2026-03-09T21:00:00Z")),
            8 * 3600
        );
    }

    #[test]
    fn a_span_starting_in_the_gap_opens_when_the_clock_does() {
        // 02:30 does not exist in Berlin on 2026-03-29: the span opens at 03:00 CEST.
        let hours = every_day("Europe/Berlin", "02:30-04:00");
        assert_eq!(
            hours.seconds_between(utc("2026-03-29T00:00:00Z"), utc("2026-03-29T03:00:00Z")),
            3600
        );
    }

    #[test]
    fn holidays_are_closed() {
        let mut config = ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            friday: vec!["09:00-17:00".into()],
            holidays: vec!["2026-12-25".into()],
            ..ScheduleConfig::default()
        };
        let closed = BusinessHours::try_from(&config).expect("schedule");
        let christmas = (utc("2026-12-25T00:00:00Z"), utc("2026-12-26T00:00:00Z"));
        assert_eq!(closed.seconds_between(christmas.0, christmas.1), 0);
        config.holidays.clear();
        let open = BusinessHours::try_from(&config).expect("schedule");
        assert_eq!(open.seconds_between(christmas.0, christmas.1), 8 * 3600);
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let bad = |config: ScheduleConfig| {
            BusinessHours::try_from(&config)
                .err()
                .map(|e| e.field)
                .unwrap_or_default()
        };
        let base = ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            ..ScheduleConfig::default()
        };
        assert_eq!(
            bad(ScheduleConfig {
                time_zone: "Mars/Olympus".into(),
                ..base.clone()
            }),
            "time_zone"
        );
        assert_eq!(
            bad(ScheduleConfig {
                tuesday: vec!["17:00-09:00".into()],
                ..base.clone()
            }),
            "tuesday"
        );
        assert_eq!(
            bad(ScheduleConfig {
                monday: vec!["09:00-13:00".into(), "12:00-17:00".into()],
                ..base.clone()
            }),
            "monday"
        );
        assert_eq!(
            bad(ScheduleConfig {
                holidays: vec!["25.12.2026".into()],
                ..base
            }),
            "holidays"
        );
    }

    #[test]
    fn a_schedule_change_applies_from_its_time_on() {
        let mut history = ScheduleHistory::calendar();
        let from = utc("2026-01-12T00:00:00Z"); // a Monday
        let to = utc("2026-01-14T00:00:00Z");
        // No schedule: calendar time.
        assert_eq!(history.seconds_between(from, to), 48 * 3600);
        // Office hours from Tuesday 00:00 UTC on: Monday stays calendar (24 h), Tuesday 8 h.
        history.change(
            utc("2026-01-13T00:00:00Z"),
            Some(weekdays("UTC", "09:00-17:00")),
        );
        assert_eq!(history.seconds_between(from, to), 24 * 3600 + 8 * 3600);
        // A figure of Monday alone does not change.
        assert_eq!(
            history.seconds_between(from, utc("2026-01-13T00:00:00Z")),
            24 * 3600
        );
    }

    #[test]
    fn a_channel_follows_the_default_until_it_has_its_own_schedule() {
        let day = |d: &str| utc(&format!("{d}T00:00:00Z"));
        let schedules = Schedules::new(vec![
            ScheduleChange {
                channel: None,
                effective: day("2026-01-12"),
                hours: Some(weekdays("UTC", "09:00-17:00")),
            },
            ScheduleChange {
                channel: Some("support"),
                effective: day("2026-01-13"),
                hours: Some(every_day("UTC", "00:00-24:00")),
            },
            ScheduleChange {
                channel: Some("support"),
                effective: day("2026-01-14"),
                hours: None,
            },
        ]);
        let support = schedules.history(&"support");
        let other = schedules.history(&"sales");
        // Before any schedule: calendar time, for both.
        assert_eq!(
            support.seconds_between(day("2026-01-11"), day("2026-01-12")),
            86_400
        );
        // The default's office hours on Monday; the channel's own 24 h on Tuesday; the default
        // again on Wednesday.
        assert_eq!(
            support.seconds_between(day("2026-01-12"), day("2026-01-13")),
            8 * 3600
        );
        assert_eq!(
            support.seconds_between(day("2026-01-13"), day("2026-01-14")),
            86_400
        );
        assert_eq!(
            support.seconds_between(day("2026-01-14"), day("2026-01-15")),
            8 * 3600
        );
        // Another channel never sees the support channel's schedule.
        assert_eq!(
            other.seconds_between(day("2026-01-13"), day("2026-01-14")),
            8 * 3600
        );
    }

    #[test]
    fn a_business_deadline_skips_the_closed_hours() {
        let history = ScheduleHistory::always(weekdays("Europe/Berlin", "09:00-17:00"));
        // Friday 16:00 Berlin (15:00 UTC) plus two business hours: Monday 10:00 Berlin.
        let due = history.after(utc("2026-01-16T15:00:00Z"), 7_200);
        assert_eq!(due, Some(utc("2026-01-19T09:00:00Z")));
        // Calendar time when there is no schedule.
        assert_eq!(
            ScheduleHistory::calendar().after(utc("2026-01-16T15:00:00Z"), 60),
            Some(utc("2026-01-16T15:01:00Z"))
        );
        // Never open: no deadline at all.
        let closed = ScheduleHistory::always(open_on("UTC", 0..0, "09:00-17:00"));
        assert_eq!(closed.after(utc("2026-01-16T15:00:00Z"), 60), None);
    }
}
