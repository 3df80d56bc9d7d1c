//! SLA targets (docs/metrics.md, "SLA targets"): a policy, per channel and/or label, gives the
//! first reply, the next reply and the resolution a time limit, in business or calendar time. The
//! running targets of a conversation give its due time; a sample says whether it met its target.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::business_hours::ScheduleHistory;
use crate::ids::ChannelId;
use crate::metrics::{Clocks, Metric, Sample};

/// What a target limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    FirstReply,
    NextReply,
    Resolution,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::FirstReply => "first_reply",
            Target::NextReply => "next_reply",
            Target::Resolution => "resolution",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        [Target::FirstReply, Target::NextReply, Target::Resolution]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// An SLA policy as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SlaPolicy {
    pub id: String,
    pub name: String,
    /// Only conversations of this channel (`null`: any).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub channel_id: Option<ChannelId>,
    /// Only conversations with this label (`null`: any).
    pub label: Option<String>,
    /// Seconds to the first human reply of a cycle.
    pub first_reply_s: Option<i64>,
    /// Seconds to the reply of every later wait.
    pub next_reply_s: Option<i64>,
    /// Seconds from the start of a cycle to its resolution.
    pub resolution_s: Option<i64>,
    /// Counted in the channel's business hours (else calendar time).
    pub business_hours: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

impl SlaPolicy {
    /// How closely it fits a conversation: `None` when it does not apply; the more of channel
    /// and label it names, the closer.
    fn fit(&self, channel: ChannelId, labels: &[String]) -> Option<u8> {
        let channel_fit = match self.channel_id {
            None => 0,
            Some(c) if c == channel => 2,
            Some(_) => return None,
        };
        let label_fit = match &self.label {
            None => 0,
            Some(l) if labels.iter().any(|x| x == l) => 1,
            Some(_) => return None,
        };
        Some(channel_fit + label_fit)
    }

    fn limit(&self, target: Target) -> Option<i64> {
        match target {
            Target::FirstReply => self.first_reply_s,
            Target::NextReply => self.next_reply_s,
            Target::Resolution => self.resolution_s,
        }
    }
}

/// The policy that applies to a conversation: the closest fit, the oldest of equally close ones.
pub fn applicable<'a>(
    policies: &'a [SlaPolicy],
    channel: ChannelId,
    labels: &[String],
) -> Option<&'a SlaPolicy> {
    policies
        .iter()
        .filter_map(|p| p.fit(channel, labels).map(|fit| (fit, p)))
        .min_by(|(fa, a), (fb, b)| fb.cmp(fa).then(a.created_at.cmp(&b.created_at)))
        .map(|(_, p)| p)
}

/// The next deadline of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub target: Target,
    pub at: DateTime<Utc>,
}

/// The earliest deadline of the targets running on these clocks. The first reply's target
/// replaces the next reply's for the cycle's first wait.
pub fn due(clocks: &Clocks, policy: &SlaPolicy, hours: &ScheduleHistory) -> Option<Due> {
    let calendar = ScheduleHistory::calendar();
    let hours = if policy.business_hours {
        hours
    } else {
        &calendar
    };
    let reply = match clocks.first_reply_since {
        Some(since) => Some((Target::FirstReply, since)),
        None => clocks.reply_since.map(|since| (Target::NextReply, since)),
    };
    let running = [
        reply,
        clocks.cycle_start.map(|since| (Target::Resolution, since)),
    ];
    running
        .into_iter()
        .flatten()
        .filter_map(|(target, since)| {
            let limit = policy.limit(target)?;
            hours.after(since, limit).map(|at| Due { target, at })
        })
        .min_by_key(|d| d.at)
}

/// Whether a sample met its policy's target (`None`: no target for it).
pub fn met(sample: &Sample, policy: &SlaPolicy) -> Option<bool> {
    let target = match sample.metric {
        Metric::FirstReply => Target::FirstReply,
        Metric::Reply => Target::NextReply,
        Metric::Resolution => Target::Resolution,
        _ => return None,
    };
    let limit = policy.limit(target)?;
    let took = if policy.business_hours {
        sample.business_s
    } else {
        sample.calendar_s
    };
    Some(took <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, channel: Option<ChannelId>, label: Option<&str>, age: i64) -> SlaPolicy {
        SlaPolicy {
            id: name.into(),
            name: name.into(),
            channel_id: channel,
            label: label.map(str::to_owned),
            first_reply_s: Some(3_600),
            next_reply_s: Some(7_200),
            resolution_s: Some(86_400),
            business_hours: false,
            created_at: DateTime::from_timestamp(1_700_000_000 + age, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn the_closest_policy_applies() {
        let (support, sales) = (ChannelId::new(), ChannelId::new());
        let policies = [
            policy("all", None, None, 0),
            policy("vip", None, Some("vip"), 1),
            policy("support", Some(support), None, 2),
            policy("support vip", Some(support), Some("vip"), 3),
        ];
        let name = |channel, labels: &[&str]| {
            let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
            applicable(&policies, channel, &labels).map(|p| p.name.clone())
        };
        assert_eq!(name(support, &["vip"]).as_deref(), Some("support vip"));
        assert_eq!(name(support, &[]).as_deref(), Some("support"));
        assert_eq!(name(sales, &["vip"]).as_deref(), Some("vip"));
        assert_eq!(name(sales, &[]).as_deref(), Some("all"));
        assert_eq!(applicable(&policies[1..2], sales, &[]), None);
    }

    #[test]
    fn the_earliest_running_target_is_due() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default();
        let p = policy("all", None, None, 0);
        let hours = ScheduleHistory::calendar();
        let waiting = Clocks {
            first_reply_since: Some(at(0)),
            reply_since: Some(at(0)),
            cycle_start: Some(at(0)),
        };
        assert_eq!(
            due(&waiting, &p, &hours),
            Some(Due {
                target: Target::FirstReply,
                at: at(3_600)
            })
        );
        let answered_then_waiting = Clocks {
            first_reply_since: None,
            reply_since: Some(at(80_000)),
            cycle_start: Some(at(0)),
        };
        assert_eq!(
            due(&answered_then_waiting, &p, &hours).map(|d| d.target),
            Some(Target::Resolution)
        );
        assert_eq!(due(&Clocks::default(), &p, &hours), None);
    }
}
