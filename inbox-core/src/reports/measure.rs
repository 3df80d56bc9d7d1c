//! Keeping the samples and SLA deadlines up to date: at commit, a transaction's new log rows are
//! read on from each conversation's stored [`ReadState`]; a conversation read for the first time,
//! or one whose new rows sort before what was read already (a message with an older provider
//! time), is measured again from its whole log. Both give what a rebuild from the log gives
//! (docs/metrics.md).

use std::collections::BTreeMap;

use super::rollup::RolledSample;
use crate::business_hours::Schedules;
use crate::ids::{ChannelId, ConversationId};
use crate::metrics::{MetricsState, Sample, reads_kind, timeline};
use crate::model::{ConversationEvent, to_millis};
use crate::sla::{self, Due, SlaPolicy};
use crate::store::{
    Measured, NumberedSample, ReadState, RollupChanges, RollupKey, StoreResult, StoreTx,
};

/// What measuring reads besides the log: schedules and SLA policies.
pub(super) struct Context {
    schedules: Schedules<ChannelId>,
    policies: Vec<SlaPolicy>,
}

impl Context {
    pub(super) async fn load(tx: &mut StoreTx) -> StoreResult<Context> {
        Ok(Context {
            schedules: tx.schedules().await?,
            policies: tx.sla_policies().await?,
        })
    }
}

/// What measuring found: samples to store, read states, deadlines.
#[derive(Default)]
pub(super) struct Found {
    pub samples: Vec<NumberedSample>,
    states: Vec<(ConversationId, ReadState)>,
    dues: Vec<(ConversationId, Option<Due>)>,
}

impl Found {
    /// Reads `entries` on from `read` for one conversation.
    fn read_on(
        &mut self,
        context: &Context,
        conversation: &Measured,
        mut read: ReadState,
        rows: &[ConversationEvent],
    ) {
        let hours = context.schedules.history(&conversation.channel_id);
        let policy = sla::applicable(
            &context.policies,
            conversation.channel_id,
            &conversation.labels,
        );
        for entry in timeline(rows) {
            for sample in read.state.read(&entry, &hours) {
                self.push(conversation, read.next_seq, sample, policy);
                read.next_seq += 1;
            }
        }
        if let Some(last) = rows.iter().filter(|r| reads_kind(&r.kind)).map(key).max() {
            read.last = read.last.max(last);
        }
        let due = policy.and_then(|p| sla::due(&read.state.clocks(), p, &hours));
        // Without policies nothing is due; only a deadline kept from before needs clearing.
        if due.is_some() || conversation.sla_due_at.is_some() {
            self.dues.push((conversation.id, due));
        }
        self.states.push((conversation.id, read));
    }

    fn push(
        &mut self,
        conversation: &Measured,
        seq: i64,
        sample: Sample,
        policy: Option<&SlaPolicy>,
    ) {
        self.samples.push(NumberedSample {
            conversation: conversation.id,
            channel: conversation.channel_id,
            seq,
            sla_met: policy.and_then(|p| sla::met(&sample, p)),
            sample,
        });
    }
}

/// Measures the log rows a transaction appended (see the module doc).
pub(crate) async fn measure_appended(
    tx: &mut StoreTx,
    mut appended: Vec<ConversationEvent>,
) -> StoreResult<()> {
    if appended.is_empty() {
        return Ok(());
    }
    appended
        .sort_by(|a, b| (a.conversation_id, a.at, &a.id).cmp(&(b.conversation_id, b.at, &b.id)));
    let mut by_conversation: BTreeMap<ConversationId, Vec<ConversationEvent>> = BTreeMap::new();
    for row in appended {
        by_conversation
            .entry(row.conversation_id)
            .or_default()
            .push(row);
    }
    let ids: Vec<ConversationId> = by_conversation.keys().copied().collect();
    let measured = tx.measured(&ids).await?;
    let context = Context::load(tx).await?;

    let mut found = Found::default();
    let mut again = Vec::new();
    for mut conversation in measured {
        let rows = &by_conversation[&conversation.id];
        match conversation.read.take() {
            Some(read) if first_key(rows) > read.last => {
                found.read_on(&context, &conversation, read, rows);
            }
            _ => again.push(conversation),
        }
    }
    measure_from_log(tx, &again, &context, &mut found).await?;
    let replaced: Vec<ConversationId> = again.iter().map(|c| c.id).collect();
    let changes = write(tx, &replaced, &found).await?;
    tx.refresh_rollups(changes).await
}

/// Measures conversations from their whole log (samples numbered from 0).
pub(super) async fn measure_from_log(
    tx: &mut StoreTx,
    conversations: &[Measured],
    context: &Context,
    found: &mut Found,
) -> StoreResult<()> {
    let ids: Vec<ConversationId> = conversations.iter().map(|c| c.id).collect();
    let mut logs = tx.logs_of(&ids).await?;
    for conversation in conversations {
        let log = logs.remove(&conversation.id).unwrap_or_default();
        // A log with nothing the metrics read has no state to keep.
        if !log.iter().any(|row| reads_kind(&row.kind)) {
            continue;
        }
        let fresh = ReadState {
            state: MetricsState::default(),
            last: (i64::MIN, String::new()),
            next_seq: 0,
        };
        found.read_on(context, conversation, fresh, &log);
    }
    Ok(())
}

/// Writes what was measured: the samples of `replaced` conversations anew, the others appended.
/// Returns how the roll-ups' hours changed (for the caller to bring them up to date).
pub(super) async fn write(
    tx: &mut StoreTx,
    replaced: &[ConversationId],
    found: &Found,
) -> StoreResult<RollupChanges> {
    let mut changes = RollupChanges {
        dropped: tx
            .delete_metric_samples(replaced)
            .await?
            .into_iter()
            .collect(),
        added: BTreeMap::new(),
    };
    for n in &found.samples {
        let ended_at = to_millis(n.sample.ended_at);
        changes
            .added
            .entry(RollupKey::of(n.sample.metric, ended_at))
            .or_default()
            .push(RolledSample {
                ended_at,
                calendar_s: n.sample.calendar_s,
                business_s: n.sample.business_s,
                channel: n.channel,
                agent: n.sample.agent,
                sla_met: n.sla_met,
            });
    }
    tx.insert_metric_samples(&found.samples).await?;
    let states: Vec<(ConversationId, &ReadState)> =
        found.states.iter().map(|(id, read)| (*id, read)).collect();
    tx.upsert_read_states(&states).await?;
    tx.set_sla_due(&found.dues).await?;
    Ok(changes)
}

/// A log row's place in the timeline's order.
fn key(row: &ConversationEvent) -> (i64, String) {
    (to_millis(row.at), row.id.clone())
}

fn first_key(rows: &[ConversationEvent]) -> (i64, String) {
    rows.first().map(key).unwrap_or_default()
}
