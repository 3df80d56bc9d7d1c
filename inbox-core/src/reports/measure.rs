//! Keeping the samples up to date: at commit, a transaction's new log rows are read on from each
//! conversation's stored [`ReadState`]; a conversation read for the first time, or one whose new
//! rows sort before what was read already (a message with an older provider time), is measured
//! again from its whole log. Both give what a rebuild from the log gives (docs/metrics.md).

use std::collections::BTreeMap;

use crate::business_hours::Schedules;
use crate::ids::{ChannelId, ConversationId};
use crate::metrics::{MetricsState, reads_kind, timeline};
use crate::model::{ConversationEvent, to_millis};
use crate::store::{Measured, NumberedSample, ReadState, StoreResult, StoreTx};

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
    let schedules = tx.schedules().await?;

    let mut again = Vec::new();
    let mut read_on = Vec::new();
    for mut conversation in measured {
        let rows = &by_conversation[&conversation.id];
        match conversation.read.take() {
            Some(read) if first_key(rows) > read.last => read_on.push((conversation, read)),
            _ => again.push(conversation),
        }
    }

    let mut samples: Vec<NumberedSample> = Vec::new();
    let mut states: Vec<(ConversationId, ReadState)> = Vec::new();
    for (conversation, mut read) in read_on {
        let hours = schedules.history(&conversation.channel_id);
        let rows = &by_conversation[&conversation.id];
        for entry in timeline(rows) {
            for sample in read.state.read(&entry, &hours) {
                samples.push(NumberedSample {
                    conversation: conversation.id,
                    channel: conversation.channel_id,
                    seq: read.next_seq,
                    sample,
                });
                read.next_seq += 1;
            }
        }
        read.last = last_key(rows).unwrap_or(read.last);
        states.push((conversation.id, read));
    }
    let (fresh_samples, fresh_states) = measure_from_log(tx, &again, &schedules).await?;
    samples.extend(fresh_samples);
    states.extend(fresh_states);
    write(
        tx,
        &again.iter().map(|c| c.id).collect::<Vec<_>>(),
        &samples,
        &states,
    )
    .await
}

/// Measures conversations from their whole log: their samples (numbered from 0) and read states.
pub(super) async fn measure_from_log(
    tx: &mut StoreTx,
    conversations: &[Measured],
    schedules: &Schedules<ChannelId>,
) -> StoreResult<(Vec<NumberedSample>, Vec<(ConversationId, ReadState)>)> {
    let ids: Vec<ConversationId> = conversations.iter().map(|c| c.id).collect();
    let mut logs = tx.logs_of(&ids).await?;
    let mut samples = Vec::new();
    let mut states = Vec::new();
    for conversation in conversations {
        let log = logs.remove(&conversation.id).unwrap_or_default();
        let hours = schedules.history(&conversation.channel_id);
        let mut state = MetricsState::default();
        let mut seq = 0;
        for entry in timeline(&log) {
            for sample in state.read(&entry, &hours) {
                samples.push(NumberedSample {
                    conversation: conversation.id,
                    channel: conversation.channel_id,
                    seq,
                    sample,
                });
                seq += 1;
            }
        }
        // A log with nothing the metrics read has no state to keep.
        if let Some(last) = log
            .iter()
            .filter(|row| reads_kind(&row.kind))
            .map(key)
            .max()
        {
            states.push((
                conversation.id,
                ReadState {
                    state,
                    last,
                    next_seq: seq,
                },
            ));
        }
    }
    Ok((samples, states))
}

/// Writes what was measured: the samples of `replaced` conversations anew, the others appended.
pub(super) async fn write(
    tx: &mut StoreTx,
    replaced: &[ConversationId],
    samples: &[NumberedSample],
    states: &[(ConversationId, ReadState)],
) -> StoreResult<()> {
    tx.delete_metric_samples(replaced).await?;
    tx.insert_metric_samples(samples).await?;
    let states: Vec<(ConversationId, &ReadState)> =
        states.iter().map(|(id, read)| (*id, read)).collect();
    tx.upsert_read_states(&states).await
}

/// A log row's place in the timeline's order.
fn key(row: &ConversationEvent) -> (i64, String) {
    (to_millis(row.at), row.id.clone())
}

fn first_key(rows: &[ConversationEvent]) -> (i64, String) {
    rows.first().map(key).unwrap_or_default()
}

fn last_key(rows: &[ConversationEvent]) -> Option<(i64, String)> {
    rows.last().map(key)
}
