//! Reports' maintenance: `inbox reports rebuild` recomputes every conversation's response-time
//! samples from its log (docs/metrics.md), page by page, each page in one transaction that locks
//! its conversations, so a change arriving meanwhile waits and is not lost.

use chrono::{DateTime, Utc};

use crate::business_hours::ScheduleHistory;
use crate::metrics::{measure, timeline};
use crate::store::{Store, StoreResult};

/// Conversations per rebuild transaction.
const PAGE: u32 = 200;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub conversations: u64,
    pub samples: u64,
}

/// Recomputes the samples of every conversation with a log row at or after `since` (all when
/// `None`); `progress` is told the conversations done so far after each page.
pub async fn rebuild(
    store: &Store,
    since: Option<DateTime<Utc>>,
    mut progress: impl FnMut(u64),
) -> StoreResult<Rebuilt> {
    let mut done = Rebuilt::default();
    let mut after = None;
    loop {
        let ids = store.conversations_to_measure(since, after, PAGE).await?;
        let Some(last) = ids.last().copied() else {
            return Ok(done);
        };
        let mut tx = store.begin().await?;
        let conversations = tx.conversations_by_ids(&ids).await?;
        let mut logs = tx.logs_of(&ids).await?;
        for conversation in &conversations {
            let log = logs.remove(&conversation.id).unwrap_or_default();
            // Schedules per channel come with their configuration; until then calendar time.
            let samples = measure(&timeline(&log), &ScheduleHistory::calendar());
            tx.replace_metric_samples(conversation.id, conversation.channel_id, &samples)
                .await?;
            done.samples += samples.len() as u64;
        }
        tx.commit().await?;
        done.conversations += conversations.len() as u64;
        progress(done.conversations);
        after = Some(last);
    }
}
