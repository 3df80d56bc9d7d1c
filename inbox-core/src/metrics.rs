//! Response-time metrics, derived from a conversation's log (docs/metrics.md gives each definition
//! with worked examples; every example is a test below). Each metric is versioned (`frt.v1`): a
//! changed definition gets a new version, so a figure always says what it measures.
//!
//! [`measure`] reads one conversation's timeline, oldest first, and gives its samples, each in
//! calendar seconds and in business seconds of the channel's schedule. It is pure: the store runs
//! it when a conversation changes (the incremental figures) and `inbox reports rebuild` runs it
//! over the whole log, with the same result by construction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::business_hours::ScheduleHistory;
use crate::ids::AgentId;
use crate::model::{ConversationEvent, ConversationStatus};

/// A measured quantity, with its definition's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Metric {
    /// First response time, per open cycle.
    FirstReply,
    /// Reply time: every wait of the customer until a human reply.
    Reply,
    /// Opened (or reopened) to resolved, per cycle.
    Resolution,
    /// Opened to first resolved, once per conversation.
    FirstResolution,
    /// Time the customer waited on the team (open or snoozed), per cycle.
    RequesterWait,
    /// Time the team waited on the customer (pending), per cycle.
    AgentWait,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::FirstReply,
        Metric::Reply,
        Metric::Resolution,
        Metric::FirstResolution,
        Metric::RequesterWait,
        Metric::AgentWait,
    ];

    /// The versioned id reports carry.
    pub fn id(self) -> &'static str {
        match self {
            Metric::FirstReply => "frt.v1",
            Metric::Reply => "nrt.v1",
            Metric::Resolution => "resolution.v1",
            Metric::FirstResolution => "first_resolution.v1",
            Metric::RequesterWait => "requester_wait.v1",
            Metric::AgentWait => "agent_wait.v1",
        }
    }

    /// The definition, one sentence, as reports show it.
    pub fn definition(self) -> &'static str {
        match self {
            Metric::FirstReply => {
                "From the first customer message of an open cycle to the first human agent reply \
                 after it; notes and automated messages are not replies."
            }
            Metric::Reply => {
                "From each customer message sent while the customer was not already waiting to the \
                 next human agent reply (the first wait of a cycle included)."
            }
            Metric::Resolution => {
                "From the start of a cycle (the conversation opened or reopened) to its resolution, \
                 pending and snoozed time included."
            }
            Metric::FirstResolution => {
                "From the conversation's opening to its first resolution, once per conversation."
            }
            Metric::RequesterWait => {
                "Time a cycle spent open or snoozed (the customer waiting on the team), counted at \
                 its resolution."
            }
            Metric::AgentWait => {
                "Time a cycle spent pending (the team waiting on the customer), counted at its \
                 resolution."
            }
        }
    }

    pub fn parse(id: &str) -> Option<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.id() == id || m.id().strip_suffix(".v1") == Some(id))
    }
}

/// What happened in a conversation, as the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happening {
    /// The conversation was created (by a customer's message, or by an agent writing first).
    Opened,
    /// A customer's own message (at the provider's time, as the funnel stored it).
    CustomerMessage,
    /// A message the customer's side sent automatically (an auto-reply, a bounce): never a wait.
    AutomatedInbound,
    /// A reply a human agent sent to the customer.
    AgentReply { agent: AgentId },
    /// A message the product or a bot sent: never a response.
    AutomatedReply,
    /// A private note: never a response.
    Note,
    /// The conversation's status became this (by an agent, a timer or the funnel).
    Status(ConversationStatus),
}

/// One entry of a conversation's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub happening: Happening,
}

/// One measured duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub metric: Metric,
    /// The open cycle it belongs to: 0 for the first, 1 after the first reopening, …
    pub cycle: u32,
    pub started_at: DateTime<Utc>,
    /// When it was measured: reports group a sample by this time.
    pub ended_at: DateTime<Utc>,
    pub calendar_s: i64,
    pub business_s: i64,
    /// The agent whose reply ended it (reply metrics); for the others, the agent who last
    /// replied in the cycle (the one a resolution is credited to), if any.
    pub agent: Option<AgentId>,
}

/// Calendar and business seconds added up over several intervals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sum {
    calendar_s: i64,
    business_s: i64,
}

impl Sum {
    fn add(&mut self, hours: &ScheduleHistory, from: DateTime<Utc>, to: DateTime<Utc>) {
        self.calendar_s += (to - from).num_seconds().max(0);
        self.business_s += hours.seconds_between(from, to);
    }
}

/// Where a conversation's timeline has been read to: kept with the conversation, so each change
/// only reads what is new ([`MetricsState::read`]), and a rebuild from the log reads it all
/// ([`measure`]) through the same steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsState {
    /// `None` until the conversation opened.
    status: Option<ConversationStatus>,
    /// Since when the current status holds.
    status_since: Option<DateTime<Utc>>,
    cycle: u32,
    cycle_start: Option<DateTime<Utc>>,
    opened_at: Option<DateTime<Utc>>,
    resolved_once: bool,
    /// The cycle's first customer message, until it was answered.
    first_customer: Option<DateTime<Utc>>,
    first_answered: bool,
    /// The customer has been waiting for a human reply since then.
    waiting_since: Option<DateTime<Utc>>,
    requester_wait: Sum,
    agent_wait: Sum,
    /// The agent who last replied in the cycle: the one its resolution is credited to.
    #[serde(default)]
    last_agent: Option<AgentId>,
}

/// The samples of one conversation's whole timeline (oldest first; entries at the same time keep
/// their order) under the channel's schedules.
pub fn measure(timeline: &[Entry], hours: &ScheduleHistory) -> Vec<Sample> {
    let mut state = MetricsState::default();
    timeline
        .iter()
        .flat_map(|entry| state.read(entry, hours))
        .collect()
}

/// One step of reading: the state, the schedules, the samples found.
struct Reader<'a> {
    state: &'a mut MetricsState,
    hours: &'a ScheduleHistory,
    samples: Vec<Sample>,
}

/// The clocks an SLA target runs on, as a conversation's timeline leaves them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clocks {
    /// The cycle's first customer message, while it has no human reply.
    pub first_reply_since: Option<DateTime<Utc>>,
    /// Since when the customer has been waiting for a human reply.
    pub reply_since: Option<DateTime<Utc>>,
    /// The start of the cycle, while it is not resolved.
    pub cycle_start: Option<DateTime<Utc>>,
}

impl MetricsState {
    pub fn clocks(&self) -> Clocks {
        let unresolved = matches!(
            self.status,
            Some(
                ConversationStatus::Open
                    | ConversationStatus::Pending
                    | ConversationStatus::Snoozed
            )
        );
        Clocks {
            first_reply_since: self.first_customer.filter(|_| unresolved),
            reply_since: self.waiting_since.filter(|_| unresolved),
            cycle_start: self.cycle_start.filter(|_| unresolved),
        }
    }

    /// Reads the next entry of the timeline; gives the samples it completes.
    pub fn read(&mut self, entry: &Entry, hours: &ScheduleHistory) -> Vec<Sample> {
        let mut reader = Reader {
            state: self,
            hours,
            samples: Vec::new(),
        };
        reader.read(entry);
        reader.samples
    }
}

impl Reader<'_> {
    fn read(&mut self, entry: &Entry) {
        let at = entry.at;
        match entry.happening {
            Happening::Opened => self.open(at),
            Happening::CustomerMessage => self.customer_message(at),
            Happening::AgentReply { agent } => self.reply(at, agent),
            Happening::Status(status) => self.set_status(at, status),
            Happening::AutomatedInbound | Happening::AutomatedReply | Happening::Note => {}
        }
    }

    fn open(&mut self, at: DateTime<Utc>) {
        let state = &mut *self.state;
        if state.status.is_none() {
            state.opened_at = Some(at);
            state.cycle_start = Some(at);
            state.status = Some(ConversationStatus::Open);
            state.status_since = Some(at);
        }
    }

    fn customer_message(&mut self, at: DateTime<Utc>) {
        match self.state.status {
            // A timeline without its opening: the message opens the conversation.
            None => self.open(at),
            Some(ConversationStatus::Resolved) => self.start_cycle(at),
            // The funnel opens a pending or snoozed conversation the customer writes to.
            Some(ConversationStatus::Pending | ConversationStatus::Snoozed) => {
                self.set_status(at, ConversationStatus::Open)
            }
            Some(ConversationStatus::Open) => {}
        }
        let state = &mut *self.state;
        if state.first_customer.is_none() && !state.first_answered {
            state.first_customer = Some(at);
        }
        state.waiting_since.get_or_insert(at);
    }

    fn reply(&mut self, at: DateTime<Utc>, agent: AgentId) {
        self.state.last_agent = Some(agent);
        let Some(since) = self.state.waiting_since.take() else {
            // Nobody was waiting: the agent wrote first, or wrote again.
            return;
        };
        self.push(Metric::Reply, since, at, Some(agent));
        if let Some(first) = self.state.first_customer.take() {
            self.push(Metric::FirstReply, first, at, Some(agent));
            self.state.first_answered = true;
        }
    }

    fn set_status(&mut self, at: DateTime<Utc>, status: ConversationStatus) {
        let Some(current) = self.state.status else {
            self.open(at);
            if status != ConversationStatus::Open {
                self.set_status(at, status);
            }
            return;
        };
        if current == status {
            return;
        }
        if current == ConversationStatus::Resolved {
            // Reopened by an agent (or the funnel): a new cycle, in the new status.
            self.start_cycle(at);
            if status != ConversationStatus::Open {
                self.set_status(at, status);
            }
            return;
        }
        self.close_status_interval(at);
        self.state.status = Some(status);
        if status == ConversationStatus::Resolved {
            self.resolve(at);
        }
    }

    /// Adds the time since the last status change to the wait it counts for.
    fn close_status_interval(&mut self, at: DateTime<Utc>) {
        let state = &mut *self.state;
        let since = state.status_since.unwrap_or(at);
        match state.status {
            Some(ConversationStatus::Open | ConversationStatus::Snoozed) => {
                state.requester_wait.add(self.hours, since, at)
            }
            Some(ConversationStatus::Pending) => state.agent_wait.add(self.hours, since, at),
            Some(ConversationStatus::Resolved) | None => {}
        }
        state.status_since = Some(at);
    }

    fn resolve(&mut self, at: DateTime<Utc>) {
        let cycle_start = self.state.cycle_start.unwrap_or(at);
        let credited = self.state.last_agent;
        self.push(Metric::Resolution, cycle_start, at, credited);
        if !self.state.resolved_once {
            self.state.resolved_once = true;
            let opened = self.state.opened_at.unwrap_or(cycle_start);
            self.push(Metric::FirstResolution, opened, at, credited);
        }
        let (requester, agent) = (self.state.requester_wait, self.state.agent_wait);
        self.push_sum(Metric::RequesterWait, requester, at);
        self.push_sum(Metric::AgentWait, agent, at);
        // An unanswered wait ends with the cycle: resolved without a reply is no reply time.
        self.state.waiting_since = None;
        self.state.first_customer = None;
    }

    fn start_cycle(&mut self, at: DateTime<Utc>) {
        let state = &mut *self.state;
        *state = MetricsState {
            status: Some(ConversationStatus::Open),
            status_since: Some(at),
            cycle: state.cycle + 1,
            cycle_start: Some(at),
            opened_at: state.opened_at,
            resolved_once: state.resolved_once,
            ..MetricsState::default()
        };
    }

    fn push(
        &mut self,
        metric: Metric,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        agent: Option<AgentId>,
    ) {
        self.samples.push(Sample {
            metric,
            cycle: self.state.cycle,
            started_at: from,
            ended_at: to,
            calendar_s: (to - from).num_seconds().max(0),
            business_s: self.hours.seconds_between(from, to),
            agent,
        });
    }

    fn push_sum(&mut self, metric: Metric, sum: Sum, at: DateTime<Utc>) {
        self.samples.push(Sample {
            metric,
            cycle: self.state.cycle,
            started_at: self.state.cycle_start.unwrap_or(at),
            ended_at: at,
            calendar_s: sum.calendar_s,
            business_s: sum.business_s,
            agent: self.state.last_agent,
        });
    }
}

/// A conversation's timeline as the metrics read it, from its log rows (any order): oldest first
/// by time, rows of the same time in the order they were written (their ids are time-ordered).
pub fn timeline(log: &[ConversationEvent]) -> Vec<Entry> {
    let mut rows: Vec<&ConversationEvent> = log.iter().collect();
    rows.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    rows.into_iter().filter_map(entry_of).collect()
}

/// Whether the metrics (or the SLA targets, which depend on labels) read log rows of this kind
/// at all (others are assignments, deliveries, …).
pub fn reads_kind(kind: &str) -> bool {
    matches!(
        kind,
        "labeled"
            | "opened"
            | "message_received"
            | "replied"
            | "noted"
            | "status_changed"
            | "reopened"
            | "resolved"
            | "snoozed"
    )
}

/// What one log row is to the metrics (`None`: nothing, an assignment or a label, say).
fn entry_of(row: &ConversationEvent) -> Option<Entry> {
    let happening = match row.kind.as_str() {
        "opened" => Happening::Opened,
        "message_received" if row.data["automated"] == true => Happening::AutomatedInbound,
        "message_received" => Happening::CustomerMessage,
        "replied" => match (row.actor_kind.as_str(), row.actor_id.as_deref()) {
            ("agent", Some(id)) => match id.parse() {
                Ok(agent) => Happening::AgentReply { agent },
                Err(_) => Happening::AutomatedReply,
            },
            _ => Happening::AutomatedReply,
        },
        "noted" => Happening::Note,
        "status_changed" | "reopened" | "resolved" | "snoozed" => {
            Happening::Status(ConversationStatus::parse(row.data["to"].as_str()?)?)
        }
        _ => return None,
    };
    Some(Entry {
        at: row.at,
        happening,
    })
}

/// Count, mean and exact percentiles of some durations (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub count: usize,
    pub mean_s: f64,
    pub p50_s: i64,
    pub p90_s: i64,
    pub p95_s: i64,
}

impl Summary {
    /// `None` without values. Percentiles are exact, nearest rank: the smallest value with at
    /// least that share of the values at or below it. Selects rather than sorts (linear time):
    /// `values` is left reordered, not sorted.
    pub fn of(values: &mut [i64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let count = values.len();
        let rank = |p: usize| (count * p).div_ceil(100).clamp(1, count) - 1;
        let mean_s = values.iter().map(|v| *v as f64).sum::<f64>() / count as f64;
        // Each selection leaves the values above its rank after it, where the next one looks.
        let mut below = 0;
        let mut select = |i: usize| {
            values[below..].select_nth_unstable(i - below);
            below = i;
            values[i]
        };
        let p50_s = select(rank(50));
        let p90_s = select(rank(90));
        let p95_s = select(rank(95));
        Some(Summary {
            count,
            mean_s,
            p50_s,
            p90_s,
            p95_s,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The worked examples of docs/metrics.md, one test each, on hand-built timelines.

    use chrono::TimeZone;

    use super::*;
    use crate::business_hours::{BusinessHours, ScheduleConfig};

    const ADA: AgentId = AgentId(uuid::Uuid::from_u128(1));

    /// 2026-01-12 (a Monday) at hh:mm UTC, plus `day` days.
    fn t(day: u32, hh: u32, mm: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 12 + day, hh, mm, 0)
            .single()
            .expect("a time")
    }

    fn e(at: DateTime<Utc>, happening: Happening) -> Entry {
        Entry { at, happening }
    }

    fn reply(at: DateTime<Utc>) -> Entry {
        e(at, Happening::AgentReply { agent: ADA })
    }

    fn customer(at: DateTime<Utc>) -> Entry {
        e(at, Happening::CustomerMessage)
    }

    fn status(at: DateTime<Utc>, s: ConversationStatus) -> Entry {
        e(at, Happening::Status(s))
    }

    /// (metric, cycle, calendar minutes) of each sample.
    fn minutes(samples: &[Sample], metric: Metric) -> Vec<(u32, i64)> {
        samples
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| (s.cycle, s.calendar_s / 60))
            .collect()
    }

    fn calendar(timeline: &[Entry]) -> Vec<Sample> {
        measure(timeline, &ScheduleHistory::calendar())
    }

    #[test]
    fn example_1_a_question_answered_and_resolved() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            reply(t(0, 9, 30)),
            status(t(0, 10, 0), ConversationStatus::Resolved),
        ]);
        assert_eq!(minutes(&s, Metric::FirstReply), [(0, 30)]);
        assert_eq!(minutes(&s, Metric::Reply), [(0, 30)]);
        assert_eq!(minutes(&s, Metric::Resolution), [(0, 60)]);
        assert_eq!(minutes(&s, Metric::FirstResolution), [(0, 60)]);
        assert_eq!(minutes(&s, Metric::RequesterWait), [(0, 60)]);
        assert_eq!(minutes(&s, Metric::AgentWait), [(0, 0)]);
        assert!(
            s.iter()
                .filter(|s| s.metric == Metric::FirstReply)
                .all(|s| s.agent == Some(ADA))
        );
    }

    #[test]
    fn example_2_notes_and_automated_messages_are_no_response() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            e(t(0, 9, 1), Happening::AutomatedReply),
            e(t(0, 9, 5), Happening::Note),
            e(t(0, 9, 7), Happening::AutomatedInbound),
            reply(t(0, 9, 40)),
        ]);
        assert_eq!(minutes(&s, Metric::FirstReply), [(0, 40)]);
        assert_eq!(minutes(&s, Metric::Reply), [(0, 40)]);
    }

    #[test]
    fn example_3_three_messages_before_an_answer_are_one_wait() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            customer(t(0, 9, 10)),
            customer(t(0, 9, 20)),
            reply(t(0, 10, 0)),
            customer(t(0, 10, 5)),
            reply(t(0, 10, 20)),
        ]);
        assert_eq!(minutes(&s, Metric::FirstReply), [(0, 60)]);
        assert_eq!(minutes(&s, Metric::Reply), [(0, 60), (0, 15)]);
    }

    #[test]
    fn example_4_each_reopening_is_a_cycle_of_its_own() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            reply(t(0, 9, 10)),
            status(t(0, 9, 15), ConversationStatus::Resolved),
            customer(t(1, 10, 0)), // reopens
            reply(t(1, 10, 30)),
            status(t(1, 11, 0), ConversationStatus::Resolved),
        ]);
        assert_eq!(minutes(&s, Metric::FirstReply), [(0, 10), (1, 30)]);
        assert_eq!(minutes(&s, Metric::Resolution), [(0, 15), (1, 60)]);
        assert_eq!(minutes(&s, Metric::FirstResolution), [(0, 15)]);
    }

    #[test]
    fn example_5_an_agent_created_conversation_waits_for_the_customer() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            reply(t(0, 9, 0)), // the agent writes first: nobody waits
            customer(t(0, 11, 0)),
            reply(t(0, 11, 20)),
        ]);
        assert_eq!(minutes(&s, Metric::FirstReply), [(0, 20)]);
        assert_eq!(minutes(&s, Metric::Reply), [(0, 20)]);
    }

    #[test]
    fn example_6_pending_and_snoozed_time() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            reply(t(0, 9, 10)),
            status(t(0, 9, 10), ConversationStatus::Pending),
            customer(t(0, 12, 0)), // back to open
            status(t(0, 12, 2), ConversationStatus::Snoozed),
            status(t(0, 12, 5), ConversationStatus::Open), // the snooze ended
            reply(t(0, 12, 6)),
            status(t(0, 12, 10), ConversationStatus::Resolved),
        ]);
        assert_eq!(minutes(&s, Metric::Reply), [(0, 10), (0, 6)]);
        assert_eq!(minutes(&s, Metric::Resolution), [(0, 190)]);
        // Open 09:00–09:10 and 12:00–12:10 (snoozed 12:02–12:05 included).
        assert_eq!(minutes(&s, Metric::RequesterWait), [(0, 20)]);
        // Pending 09:10–12:00.
        assert_eq!(minutes(&s, Metric::AgentWait), [(0, 170)]);
    }

    #[test]
    fn example_7_resolved_without_a_reply_has_no_reply_time() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            status(t(0, 9, 5), ConversationStatus::Resolved),
            reply(t(0, 9, 6)), // after the resolution: nobody was waiting
        ]);
        assert_eq!(minutes(&s, Metric::FirstReply), []);
        assert_eq!(minutes(&s, Metric::Reply), []);
        assert_eq!(minutes(&s, Metric::Resolution), [(0, 5)]);
    }

    #[test]
    fn example_8_business_hours_skip_the_weekend() {
        let office = BusinessHours::try_from(&ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            monday: vec!["09:00-17:00".into()],
            tuesday: vec!["09:00-17:00".into()],
            wednesday: vec!["09:00-17:00".into()],
            thursday: vec!["09:00-17:00".into()],
            friday: vec!["09:00-17:00".into()],
            ..ScheduleConfig::default()
        })
        .expect("schedule");
        // Friday 16:30 Berlin (15:30Z) to Monday 09:15 Berlin (08:15Z).
        let friday = Utc.with_ymd_and_hms(2026, 1, 16, 15, 30, 0).unwrap();
        let monday = Utc.with_ymd_and_hms(2026, 1, 19, 8, 15, 0).unwrap();
        let s = measure(
            &[
                e(friday, Happening::Opened),
                customer(friday),
                reply(monday),
            ],
            &ScheduleHistory::always(office),
        );
        let frt = s
            .iter()
            .find(|s| s.metric == Metric::FirstReply)
            .expect("a first reply");
        assert_eq!(frt.calendar_s, (64 * 60 + 45) * 60);
        assert_eq!(frt.business_s, 45 * 60);
    }

    #[test]
    fn example_9_an_agent_reopening_starts_a_cycle() {
        let s = calendar(&[
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            reply(t(0, 9, 10)),
            status(t(0, 9, 20), ConversationStatus::Resolved),
            status(t(0, 10, 0), ConversationStatus::Open), // an agent reopens
            status(t(0, 10, 30), ConversationStatus::Resolved),
        ]);
        assert_eq!(minutes(&s, Metric::Resolution), [(0, 20), (1, 30)]);
        assert_eq!(minutes(&s, Metric::FirstResolution), [(0, 20)]);
        assert_eq!(minutes(&s, Metric::FirstReply), [(0, 10)]);
    }

    #[test]
    fn reading_step_by_step_through_a_stored_state_equals_reading_all() {
        let timeline = [
            e(t(0, 9, 0), Happening::Opened),
            customer(t(0, 9, 0)),
            reply(t(0, 9, 10)),
            status(t(0, 9, 10), ConversationStatus::Pending),
            customer(t(0, 12, 0)),
            reply(t(0, 12, 6)),
            status(t(0, 12, 10), ConversationStatus::Resolved),
            customer(t(1, 8, 0)),
            reply(t(1, 8, 30)),
            status(t(1, 9, 0), ConversationStatus::Resolved),
        ];
        let hours = ScheduleHistory::calendar();
        let mut stored = serde_json::to_string(&MetricsState::default()).expect("json");
        let mut step_by_step = Vec::new();
        for entry in &timeline {
            // Each change loads the state, reads its entry and stores the state again.
            let mut state: MetricsState = serde_json::from_str(&stored).expect("state");
            step_by_step.extend(state.read(entry, &hours));
            stored = serde_json::to_string(&state).expect("json");
        }
        assert_eq!(step_by_step, measure(&timeline, &hours));
        assert_eq!(
            minutes(&step_by_step, Metric::Resolution),
            [(0, 190), (1, 60)]
        );
    }

    #[test]
    fn the_log_reads_as_a_timeline() {
        let row = |id: &str, at: DateTime<Utc>, kind: &str, actor: (&str, Option<String>), data| {
            ConversationEvent {
                id: id.to_owned(),
                conversation_id: crate::ids::ConversationId::new(),
                kind: kind.to_owned(),
                actor_kind: actor.0.to_owned(),
                actor_id: actor.1,
                message_id: None,
                data,
                at,
            }
        };
        let contact = ("contact", Some("c".to_owned()));
        let ada = ("agent", Some(ADA.to_string()));
        let log = [
            // Written out of order; same-time rows keep the order of their ids.
            row(
                "05",
                t(0, 9, 30),
                "replied",
                ada.clone(),
                serde_json::json!({}),
            ),
            row(
                "01",
                t(0, 9, 0),
                "opened",
                contact.clone(),
                serde_json::json!({}),
            ),
            row(
                "02",
                t(0, 9, 0),
                "message_received",
                contact.clone(),
                serde_json::json!({"thread_reason": "new_conversation"}),
            ),
            row(
                "03",
                t(0, 9, 1),
                "message_received",
                contact.clone(),
                serde_json::json!({"thread_reason": "latest_conversation", "automated": true}),
            ),
            row(
                "04",
                t(0, 9, 2),
                "assigned",
                ada.clone(),
                serde_json::json!({}),
            ),
            row(
                "06",
                t(0, 9, 31),
                "replied",
                ("system", None),
                serde_json::json!({}),
            ),
            row(
                "07",
                t(0, 9, 40),
                "noted",
                ada.clone(),
                serde_json::json!({}),
            ),
            row(
                "08",
                t(0, 10, 0),
                "resolved",
                ada,
                serde_json::json!({"from": "open", "to": "resolved"}),
            ),
        ];
        assert_eq!(
            timeline(&log),
            [
                e(t(0, 9, 0), Happening::Opened),
                customer(t(0, 9, 0)),
                e(t(0, 9, 1), Happening::AutomatedInbound),
                reply(t(0, 9, 30)),
                e(t(0, 9, 31), Happening::AutomatedReply),
                e(t(0, 9, 40), Happening::Note),
                status(t(0, 10, 0), ConversationStatus::Resolved),
            ]
        );
        let samples = calendar(&timeline(&log));
        assert_eq!(minutes(&samples, Metric::FirstReply), [(0, 30)]);
    }

    #[test]
    fn percentiles_are_exact_nearest_rank() {
        let mut values: Vec<i64> = (1..=100).rev().collect();
        let summary = Summary::of(&mut values).expect("values");
        assert_eq!(summary.count, 100);
        assert_eq!((summary.p50_s, summary.p90_s, summary.p95_s), (50, 90, 95));
        assert!((summary.mean_s - 50.5).abs() < 1e-9);
        let one = Summary::of(&mut [7]).expect("one value");
        assert_eq!((one.p50_s, one.p95_s), (7, 7));
        assert_eq!(Summary::of(&mut []), None);
        // Selection gives what sorting gives, duplicates and all sizes included.
        let mut seed = 7u64;
        for len in 1..300 {
            let mut values: Vec<i64> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    i64::try_from((seed >> 33) % 50).unwrap_or(0)
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let rank = |p: usize| sorted[(len * p).div_ceil(100).clamp(1, len) - 1];
            let s = Summary::of(&mut values).expect("values");
            assert_eq!(
                (s.p50_s, s.p90_s, s.p95_s),
                (rank(50), rank(90), rank(95)),
                "{len}"
            );
        }
    }

    #[test]
    fn metric_ids_parse_back() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.id()), Some(metric));
        }
        assert_eq!(Metric::parse("frt"), Some(Metric::FirstReply));
        assert_eq!(Metric::parse("nrt"), Some(Metric::Reply));
        assert_eq!(Metric::parse("resolution"), Some(Metric::Resolution));
        assert_eq!(Metric::parse("frt.v2"), None);
    }
}
