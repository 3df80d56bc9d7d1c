//! What reports answer, from the stored samples (never from the log): a metric's count, mean and
//! exact percentiles per day, week, agent, channel or label; conversations opened and resolved
//! per day. Days are local dates in the report's time zone.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::rollup::{HOUR_MS, Rollup};
use crate::ids::{AgentId, ChannelId};
use crate::metrics::{Metric, Summary};
use crate::model::{from_millis, to_millis};
use crate::store::{ReportSample, RollupRow, SampleFilter, Store, StoreError, StoreResult};

/// The longest range a report covers, in days (two years and a leap day).
pub const MAX_DAYS: i64 = 731;

/// What a report's groups are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Week,
    Agent,
    Channel,
    Label,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "day" => GroupBy::Day,
            "week" => GroupBy::Week,
            "agent" => GroupBy::Agent,
            "channel" => GroupBy::Channel,
            "label" => GroupBy::Label,
            _ => return None,
        })
    }
}

/// Calendar seconds or business seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hours {
    Calendar,
    Business,
}

impl Hours {
    pub fn parse(s: &str) -> Option<Hours> {
        match s {
            "calendar" => Some(Hours::Calendar),
            "business" => Some(Hours::Business),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hours::Calendar => "calendar",
            Hours::Business => "business",
        }
    }
}

/// Which days a report covers (both ends included) and how it reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tz: Tz,
}

impl Range {
    /// Fails, naming the field, when `to` is before `from` or the range is too long.
    pub fn new(from: NaiveDate, to: NaiveDate, tz: Tz) -> StoreResult<Range> {
        if to < from {
            return Err(StoreError::Invalid {
                field: "to",
                message: "is before from".into(),
            });
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(StoreError::Invalid {
                field: "to",
                message: format!("a report covers at most {MAX_DAYS} days"),
            });
        }
        Ok(Range { from, to, tz })
    }

    /// The range as instants: from the first day's midnight to the midnight after the last.
    pub fn instants(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            midnight(self.tz, self.from),
            midnight(self.tz, self.to + Days::new(1)),
        )
    }

    /// Every day of the range.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }

    fn local_day(&self, ms: i64) -> NaiveDate {
        from_millis(ms).with_timezone(&self.tz).date_naive()
    }
}

/// The instant a local day starts (where midnight is skipped, when the clock resumes).
fn midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let local = day.and_time(chrono::NaiveTime::MIN);
    (0..4)
        .find_map(|h| {
            tz.from_local_datetime(&(local + chrono::Duration::hours(h)))
                .earliest()
        })
        .map_or_else(
            || Utc.from_utc_datetime(&local),
            |at| at.with_timezone(&Utc),
        )
}

/// A response-time report asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub metric: Metric,
    pub range: Range,
    pub group_by: GroupBy,
    pub hours: Hours,
    pub channel: Option<ChannelId>,
    pub agent: Option<AgentId>,
    pub label: Option<String>,
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// A local date (`2026-12-01`), an ISO week (`2026-W49`), an agent or channel id (`none`:
    /// no agent), or a label.
    pub key: String,
    #[serde(flatten)]
    pub summary: Summary,
    pub sla: Attainment,
}

/// How many samples had an SLA target and how many met it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Attainment {
    pub targeted: u64,
    pub met: u64,
}

impl Attainment {
    fn add(&mut self, met: Option<i64>) {
        if let Some(met) = met {
            self.targeted += 1;
            self.met += u64::from(met != 0);
        }
    }

    /// Percent of targeted samples within target (`None` without any).
    pub fn pct(&self) -> Option<f64> {
        (self.targeted > 0).then(|| self.met as f64 * 100.0 / self.targeted as f64)
    }
}

/// A report: its groups in key order, and all its samples together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub groups: Vec<Group>,
    pub total: Option<Summary>,
    pub total_sla: Attainment,
    /// Every sample's seconds, in no particular order (for a distribution chart).
    #[serde(skip)]
    pub values: Vec<i64>,
}

/// Answers a response-time report: from the roll-ups, or, for labels (which a conversation gains
/// and loses after its samples were rolled up), from the samples joined with the labels now.
pub async fn response_times(store: &Store, query: &ReportQuery) -> StoreResult<Report> {
    if query.label.is_some() || query.group_by == GroupBy::Label {
        return response_times_from_samples(store, query).await;
    }
    let (from, to) = query.range.instants();
    let (from, to) = (to_millis(from), to_millis(to));
    let rows = store.rollups(query.metric, from, to).await?;
    summarise_rollups(&rows, query, from, to)
}

/// The same report from every sample of the range, one row each (what the roll-ups must equal).
pub async fn response_times_from_samples(
    store: &Store,
    query: &ReportQuery,
) -> StoreResult<Report> {
    let (from, to) = query.range.instants();
    let samples = store
        .report_samples(&SampleFilter {
            metric: query.metric,
            from,
            to,
            business: query.hours == Hours::Business,
            channel: query.channel,
            agent: query.agent,
            label: query.label.clone(),
            per_label: query.group_by == GroupBy::Label,
        })
        .await?;
    Ok(summarise(&samples, query))
}

/// A group's key for a local day (by day or by week).
fn day_key(group_by: GroupBy, day: NaiveDate) -> String {
    if group_by == GroupBy::Week {
        let week = day.iso_week();
        format!("{}-W{:02}", week.year(), week.week())
    } else {
        day.to_string()
    }
}

/// The groups being filled: one list of seconds and attainment per key.
#[derive(Default)]
struct Groups {
    index: HashMap<String, usize>,
    groups: Vec<(String, Vec<i64>, Attainment)>,
}

impl Groups {
    fn slot(&mut self, key: String) -> usize {
        let next = self.groups.len();
        *self.index.entry(key.clone()).or_insert_with(|| {
            self.groups.push((key, Vec::new(), Attainment::default()));
            next
        })
    }

    fn add(&mut self, slot: usize, seconds: i64, sla_met: Option<bool>) {
        let group = &mut self.groups[slot];
        group.1.push(seconds);
        group.2.add(sla_met.map(i64::from));
    }
}

/// Summarises roll-ups: a whole hour goes to one group by day or week unless a local midnight
/// falls inside it (zones half an hour off UTC), then each sample does.
fn summarise_rollups(
    rows: &[RollupRow],
    query: &ReportQuery,
    from: i64,
    to: i64,
) -> StoreResult<Report> {
    let business = query.hours == Hours::Business;
    let mut groups = Groups::default();
    let mut values = Vec::new();
    let mut total_sla = Attainment::default();
    for row in rows {
        let rollup = Rollup::parse(row.hour, &row.data)
            .map_err(|e| StoreError::Corrupt(format!("roll-up {}: {e}", row.hour)))?;
        let channel = match query.channel {
            Some(c) => match rollup.channels.binary_search(&c) {
                Ok(i) => Some(u16::try_from(i).unwrap_or(u16::MAX)),
                Err(_) => continue,
            },
            None => None,
        };
        let agent = match query.agent {
            Some(a) => match rollup.agents.binary_search(&a) {
                Ok(i) => Some(u16::try_from(i).unwrap_or(u16::MAX)),
                Err(_) => continue,
            },
            None => None,
        };
        let whole_hour = row.hour >= from && row.hour + HOUR_MS <= to;
        let hour_day = {
            let first = query.range.local_day(row.hour);
            (first == query.range.local_day(row.hour + HOUR_MS - 1)).then_some(first)
        };
        // Per hour, which slot each agent or channel index goes to (filled on first use).
        let mut slots: Vec<Option<usize>> = Vec::new();
        let hour_slot = match (query.group_by, hour_day) {
            (GroupBy::Day | GroupBy::Week, Some(day)) => {
                Some(groups.slot(day_key(query.group_by, day)))
            }
            _ => None,
        };
        values.reserve(rollup.len());
        for e in rollup.entries() {
            if !whole_hour && !(from..to).contains(&e.ended_at) {
                continue;
            }
            if channel.is_some_and(|c| c != e.channel) || agent.is_some_and(|a| Some(a) != e.agent)
            {
                continue;
            }
            let seconds = i64::from(if business { e.business_s } else { e.calendar_s });
            let slot = match (hour_slot, query.group_by) {
                (Some(slot), _) => slot,
                (None, GroupBy::Agent) => {
                    let i = e.agent.map_or(0, |a| usize::from(a) + 1);
                    cached_slot(&mut slots, i, &mut groups, || {
                        e.agent.map_or_else(
                            || "none".to_owned(),
                            |a| rollup.agents[usize::from(a)].to_string(),
                        )
                    })
                }
                (None, GroupBy::Channel) => {
                    cached_slot(&mut slots, usize::from(e.channel), &mut groups, || {
                        rollup.channels[usize::from(e.channel)].to_string()
                    })
                }
                (None, _) => {
                    groups.slot(day_key(query.group_by, query.range.local_day(e.ended_at)))
                }
            };
            groups.add(slot, seconds, e.sla_met);
            values.push(seconds);
            total_sla.add(e.sla_met.map(i64::from));
        }
    }
    let mut groups: Vec<Group> = groups
        .groups
        .into_iter()
        .filter_map(|(key, mut v, sla)| {
            Summary::of(&mut v).map(|summary| Group { key, summary, sla })
        })
        .collect();
    groups.sort_by(|a, b| a.key.cmp(&b.key));
    let total = Summary::of(&mut values);
    Ok(Report {
        groups,
        total,
        total_sla,
        values,
    })
}

/// The slot of an agent or channel index within one hour, looked up by key once per hour.
fn cached_slot(
    slots: &mut Vec<Option<usize>>,
    i: usize,
    groups: &mut Groups,
    key: impl FnOnce() -> String,
) -> usize {
    if slots.len() <= i {
        slots.resize(i + 1, None);
    }
    *slots[i].get_or_insert_with(|| groups.slot(key()))
}

fn summarise(samples: &[ReportSample], query: &ReportQuery) -> Report {
    let mut groups: BTreeMap<String, (Vec<i64>, Attainment)> = BTreeMap::new();
    let mut values = Vec::with_capacity(samples.len());
    let mut total_sla = Attainment::default();
    for s in samples {
        let key = match query.group_by {
            GroupBy::Day => query.range.local_day(s.ended_at).to_string(),
            GroupBy::Week => {
                let week = query.range.local_day(s.ended_at).iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            GroupBy::Agent => s
                .agent_id
                .map_or_else(|| "none".to_owned(), |a| a.to_string()),
            GroupBy::Channel => s.channel_id.to_string(),
            GroupBy::Label => s.label.clone().unwrap_or_default(),
        };
        let group = groups.entry(key).or_default();
        group.0.push(s.seconds);
        group.1.add(s.sla_met);
        // A sample with two labels is in two groups, but counts once overall.
        if query.group_by != GroupBy::Label {
            values.push(s.seconds);
            total_sla.add(s.sla_met);
        }
    }
    if query.group_by == GroupBy::Label {
        (values, total_sla) = distinct_samples(samples);
    }
    let total = Summary::of(&mut values);
    Report {
        groups: groups
            .into_iter()
            .filter_map(|(key, (mut v, sla))| {
                Summary::of(&mut v).map(|summary| Group { key, summary, sla })
            })
            .collect(),
        total,
        total_sla,
        values,
    }
}

/// The seconds of each sample once, and their attainment, from rows repeated per label.
fn distinct_samples(samples: &[ReportSample]) -> (Vec<i64>, Attainment) {
    let mut seen = std::collections::HashSet::new();
    let mut sla = Attainment::default();
    let values = samples
        .iter()
        .filter(|s| seen.insert((s.conversation_id, s.seq)))
        .map(|s| {
            sla.add(s.sla_met);
            s.seconds
        })
        .collect();
    (values, sla)
}

/// Conversations opened and resolved on one local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VolumeDay {
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    pub opened: u64,
    pub resolved: u64,
}

/// Conversations opened and resolved per day of the range (every day, zeros included).
pub async fn volume(
    store: &Store,
    range: &Range,
    channel: Option<ChannelId>,
) -> StoreResult<Vec<VolumeDay>> {
    let (from, to) = range.instants();
    let mut days: BTreeMap<NaiveDate, VolumeDay> = range
        .days()
        .map(|day| {
            (
                day,
                VolumeDay {
                    day,
                    opened: 0,
                    resolved: 0,
                },
            )
        })
        .collect();
    for (quarter, opened) in store.conversations_opened(from, to, channel).await? {
        if let Some(d) = days.get_mut(&range.local_day(quarter)) {
            d.opened += opened;
        }
    }
    let (from, to) = (to_millis(from), to_millis(to));
    let rows = store.rollups(Metric::Resolution, from, to).await?;
    let resolved = ReportQuery {
        metric: Metric::Resolution,
        range: *range,
        group_by: GroupBy::Day,
        hours: Hours::Calendar,
        channel,
        agent: None,
        label: None,
    };
    for group in summarise_rollups(&rows, &resolved, from, to)?.groups {
        let day = group
            .key
            .parse::<NaiveDate>()
            .map_err(|e| StoreError::Corrupt(format!("report day {}: {e}", group.key)))?;
        if let Some(d) = days.get_mut(&day) {
            d.resolved += group.summary.count as u64;
        }
    }
    Ok(days.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_range_is_local_days_in_its_time_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap_or_else(|e| panic!("{e}"));
        let range = Range::new(day("2026-03-29"), day("2026-03-29"), berlin)
            .unwrap_or_else(|e| panic!("{e}"));
        let (from, to) = range.instants();
        // The day the clocks go forward is 23 hours long.
        assert_eq!(from.to_rfc3339(), "2026-03-28T23:00:00+00:00");
        assert_eq!((to - from).num_hours(), 23);
        assert!(Range::new(day("2026-03-29"), day("2026-03-28"), berlin).is_err());
        assert!(Range::new(day("2024-01-01"), day("2026-01-02"), berlin).is_err());
    }

    #[test]
    fn groups_have_exact_percentiles_and_a_labelled_sample_counts_once_overall() {
        let channel = ChannelId::new();
        let at = |h: i64| {
            crate::model::to_millis(
                DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|e| panic!("{e}")),
            ) + h * 3_600_000
        };
        let sample = |h: i64, seconds: i64, label: Option<&str>| ReportSample {
            ended_at: at(h),
            channel_id: channel,
            agent_id: None,
            label: label.map(str::to_owned),
            seconds,
            conversation_id: None,
            seq: h,
            sla_met: None,
        };
        let query = |group_by| ReportQuery {
            metric: Metric::FirstReply,
            range: Range::new(day("2026-12-01"), day("2026-12-02"), Tz::UTC)
                .unwrap_or_else(|e| panic!("{e}")),
            group_by,
            hours: Hours::Calendar,
            channel: None,
            agent: None,
            label: None,
        };
        let by_day = summarise(
            &[
                sample(1, 10, None),
                sample(2, 30, None),
                sample(3, 20, None),
                sample(25, 5, None),
            ],
            &query(GroupBy::Day),
        );
        let keys: Vec<_> = by_day.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["2026-12-01", "2026-12-02"]);
        assert_eq!(by_day.groups[0].summary.count, 3);
        assert_eq!(by_day.groups[0].summary.p50_s, 20);
        assert_eq!(by_day.groups[0].summary.p95_s, 30);
        assert_eq!(by_day.total.map(|t| t.count), Some(4));
        let mut values = by_day.values.clone();
        values.sort_unstable();
        assert_eq!(values, [5, 10, 20, 30]);

        let by_label = summarise(
            &[
                sample(1, 10, Some("billing")),
                sample(1, 10, Some("vip")),
                sample(2, 40, Some("vip")),
            ],
            &query(GroupBy::Label),
        );
        let counts: Vec<_> = by_label
            .groups
            .iter()
            .map(|g| (g.key.as_str(), g.summary.count))
            .collect();
        assert_eq!(counts, [("billing", 1), ("vip", 2)]);
        assert_eq!(by_label.total.map(|t| t.count), Some(2));
    }

    #[test]
    fn roll_ups_give_what_the_samples_give_in_any_zone_and_filter() {
        use crate::reports::rollup::{RolledSample, hour_of, pack};

        let channels = [ChannelId::new(), ChannelId::new()];
        let agents = [AgentId::new(), AgentId::new(), AgentId::new()];
        let start = crate::model::to_millis(
            DateTime::parse_from_rfc3339("2026-03-27T00:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        // A small LCG: varied end times (across the Berlin DST change), durations and owners.
        let mut seed = 42u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let mut rolled: Vec<RolledSample> = (0..3_000)
            .map(|_| RolledSample {
                ended_at: start + i64::try_from(next(5 * 86_400_000)).unwrap_or(0),
                calendar_s: i64::try_from(next(100_000)).unwrap_or(0),
                business_s: i64::try_from(next(30_000)).unwrap_or(0),
                channel: channels[usize::try_from(next(2)).unwrap_or(0)],
                agent: usize::try_from(next(4))
                    .ok()
                    .and_then(|i| agents.get(i).copied()),
                sla_met: [None, Some(true), Some(false)][usize::try_from(next(3)).unwrap_or(0)],
            })
            .collect();
        rolled.sort_by_key(|s| s.ended_at);
        let mut rows: Vec<RollupRow> = Vec::new();
        for hour_samples in rolled.chunk_by(|a, b| hour_of(a.ended_at) == hour_of(b.ended_at)) {
            let hour = hour_of(hour_samples[0].ended_at);
            rows.push(RollupRow {
                hour,
                data: pack(hour, hour_samples),
            });
        }
        for zone in ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu"] {
            let tz: Tz = zone.parse().unwrap_or_else(|e| panic!("{e}"));
            let range = Range::new(day("2026-03-28"), day("2026-03-30"), tz)
                .unwrap_or_else(|e| panic!("{e}"));
            let (from, to) = range.instants();
            let (from, to) = (crate::model::to_millis(from), crate::model::to_millis(to));
            for group_by in [
                GroupBy::Day,
                GroupBy::Week,
                GroupBy::Agent,
                GroupBy::Channel,
            ] {
                for (channel, agent) in [
                    (None, None),
                    (Some(channels[1]), None),
                    (None, Some(agents[0])),
                ] {
                    let query = ReportQuery {
                        metric: Metric::FirstReply,
                        range,
                        group_by,
                        hours: Hours::Business,
                        channel,
                        agent,
                        label: None,
                    };
                    let samples: Vec<ReportSample> = rolled
                        .iter()
                        .filter(|s| (from..to).contains(&s.ended_at))
                        .filter(|s| channel.is_none_or(|c| c == s.channel))
                        .filter(|s| agent.is_none_or(|a| Some(a) == s.agent))
                        .map(|s| ReportSample {
                            ended_at: s.ended_at,
                            channel_id: s.channel,
                            agent_id: s.agent,
                            label: None,
                            seconds: s.business_s,
                            conversation_id: None,
                            seq: 0,
                            sla_met: s.sla_met.map(i64::from),
                        })
                        .collect();
                    let mut expected = summarise(&samples, &query);
                    let mut got = summarise_rollups(&rows, &query, from, to)
                        .unwrap_or_else(|e| panic!("{e}"));
                    expected.values.sort_unstable();
                    got.values.sort_unstable();
                    assert_eq!(got, expected, "{zone} {group_by:?} {channel:?} {agent:?}");
                    assert!(!expected.groups.is_empty());
                }
            }
        }
    }
}
