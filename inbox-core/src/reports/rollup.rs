//! The samples of one metric and UTC hour, packed into one value (a roll-up), so that a report
//! reads a few thousand rows whatever its range and still has every duration: percentiles stay
//! exact. Each roll-up is rewritten from the hour's samples by the transaction that changes them
//! (`StoreTx::refresh_rollups`), so it always equals them.
//!
//! Layout (little endian): a version byte; the hour's channels (`u16` count, 16-byte UUIDs); its
//! agents (same); then one 17-byte entry per sample: end time in ms after the hour (`u32`),
//! calendar and business seconds (`u32` each, saturating: 136 years), agent index (`u16`,
//! [`NO_AGENT`] for none), channel index (`u16`), SLA (`u8`: 0 missed, 1 met, 2 no target).

use uuid::Uuid;

use crate::ids::{AgentId, ChannelId};

/// An hour, in ms.
pub(crate) const HOUR_MS: i64 = 3_600_000;

const VERSION: u8 = 1;
const ENTRY: usize = 17;
const NO_AGENT: u16 = u16::MAX;
const NO_TARGET: u8 = 2;

/// The hour (its first ms) an instant in ms falls in.
pub(crate) fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// One sample as a roll-up keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RolledSample {
    pub ended_at: i64,
    pub calendar_s: i64,
    pub business_s: i64,
    pub channel: ChannelId,
    pub agent: Option<AgentId>,
    pub sla_met: Option<bool>,
}

/// Packs one hour's samples (all ending in `[hour, hour + 1 h)`).
pub(crate) fn pack(hour: i64, samples: &[RolledSample]) -> Vec<u8> {
    let mut channels: Vec<ChannelId> = samples.iter().map(|s| s.channel).collect();
    channels.sort_unstable();
    channels.dedup();
    let mut agents: Vec<AgentId> = samples.iter().filter_map(|s| s.agent).collect();
    agents.sort_unstable();
    agents.dedup();

    let mut out =
        Vec::with_capacity(5 + 16 * (channels.len() + agents.len()) + ENTRY * samples.len());
    out.push(VERSION);
    push_ids(&mut out, channels.iter().map(|c| c.0));
    push_ids(&mut out, agents.iter().map(|a| a.0));
    for s in samples {
        let offset = u32::try_from((s.ended_at - hour).clamp(0, HOUR_MS - 1)).unwrap_or(0);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&saturating_u32(s.calendar_s).to_le_bytes());
        out.extend_from_slice(&saturating_u32(s.business_s).to_le_bytes());
        let agent = s
            .agent
            .and_then(|a| agents.binary_search(&a).ok())
            .map_or(NO_AGENT, index);
        out.extend_from_slice(&agent.to_le_bytes());
        let channel = channels.binary_search(&s.channel).map_or(0, index);
        out.extend_from_slice(&channel.to_le_bytes());
        out.push(s.sla_met.map_or(NO_TARGET, u8::from));
    }
    out
}

fn push_ids(out: &mut Vec<u8>, ids: impl ExactSizeIterator<Item = Uuid>) {
    out.extend_from_slice(&index(ids.len()).to_le_bytes());
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
}

/// An hour has far fewer distinct agents or channels than 65,535.
fn index(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(NO_AGENT - 1)
}

fn saturating_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A packed hour, read.
#[derive(Debug)]
pub(crate) struct Rollup<'a> {
    pub hour: i64,
    pub channels: Vec<ChannelId>,
    pub agents: Vec<AgentId>,
    entries: &'a [u8],
}

/// One entry of a packed hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub ended_at: i64,
    pub calendar_s: u32,
    pub business_s: u32,
    /// Index into [`Rollup::agents`], `None` without an agent.
    pub agent: Option<u16>,
    /// Index into [`Rollup::channels`].
    pub channel: u16,
    pub sla_met: Option<bool>,
}

impl<'a> Rollup<'a> {
    /// Reads a packed hour; the error says what is wrong with it.
    pub(crate) fn parse(hour: i64, data: &'a [u8]) -> Result<Rollup<'a>, String> {
        let (&version, rest) = data.split_first().ok_or("empty roll-up")?;
        if version != VERSION {
            return Err(format!("roll-up version {version}"));
        }
        let (channels, rest) = read_ids(rest)?;
        let (agents, entries) = read_ids(rest)?;
        if entries.len() % ENTRY != 0 {
            return Err(format!("roll-up of {} entry bytes", entries.len()));
        }
        // Indexes must point into the lists (a damaged value must not panic a report).
        for e in entries.chunks_exact(ENTRY) {
            let agent = usize::from(u16::from_le_bytes([e[12], e[13]]));
            let channel = usize::from(u16::from_le_bytes([e[14], e[15]]));
            if channel >= channels.len()
                || (agent != usize::from(NO_AGENT) && agent >= agents.len())
            {
                return Err("roll-up entry out of its lists".into());
            }
        }
        Ok(Rollup {
            hour,
            channels: channels.into_iter().map(ChannelId).collect(),
            agents: agents.into_iter().map(AgentId).collect(),
            entries,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() / ENTRY
    }

    /// Every sample, as packed.
    pub(crate) fn samples(&self) -> Vec<RolledSample> {
        self.entries()
            .map(|e| RolledSample {
                ended_at: e.ended_at,
                calendar_s: i64::from(e.calendar_s),
                business_s: i64::from(e.business_s),
                channel: self.channels[usize::from(e.channel)],
                agent: e.agent.map(|a| self.agents[usize::from(a)]),
                sla_met: e.sla_met,
            })
            .collect()
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries.chunks_exact(ENTRY).map(|e| {
            let u32_at = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
            let u16_at = |i: usize| u16::from_le_bytes([e[i], e[i + 1]]);
            let agent = u16_at(12);
            Entry {
                ended_at: self.hour + i64::from(u32_at(0)),
                calendar_s: u32_at(4),
                business_s: u32_at(8),
                agent: (agent != NO_AGENT).then_some(agent),
                channel: u16_at(14),
                sla_met: match e[16] {
                    NO_TARGET => None,
                    met => Some(met != 0),
                },
            }
        })
    }
}

fn read_ids(data: &[u8]) -> Result<(Vec<Uuid>, &[u8]), String> {
    let count = data
        .get(..2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or("roll-up cut short")?;
    let end = 2 + 16 * count;
    let ids = data.get(2..end).ok_or("roll-up cut short")?;
    let ids = ids
        .chunks_exact(16)
        .map(|b| Uuid::from_slice(b).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok((ids, &data[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_hour_reads_back_as_its_samples() {
        let hour = hour_of(1_764_547_200_000 + 1_234);
        assert_eq!(hour, 1_764_547_200_000);
        let (c1, c2, ada) = (ChannelId::new(), ChannelId::new(), AgentId::new());
        let samples = [
            RolledSample {
                ended_at: hour + 5,
                calendar_s: 600,
                business_s: 0,
                channel: c2,
                agent: Some(ada),
                sla_met: Some(true),
            },
            RolledSample {
                ended_at: hour + HOUR_MS - 1,
                calendar_s: i64::MAX,
                business_s: 7,
                channel: c1,
                agent: None,
                sla_met: None,
            },
        ];
        let data = pack(hour, &samples);
        let rollup = Rollup::parse(hour, &data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rollup.len(), 2);
        let back = rollup.samples();
        assert_eq!(back[0], samples[0]);
        assert_eq!(back[1].calendar_s, i64::from(u32::MAX));
        assert_eq!(back[1].channel, c1);
        assert_eq!(back[1].agent, None);
        assert!(Rollup::parse(hour, &data[..data.len() - 1]).is_err());
        assert!(Rollup::parse(hour, &[9]).is_err());
    }
}
