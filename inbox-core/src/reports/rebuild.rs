//! `inbox reports rebuild`: recomputes every conversation's response-time samples from its log
//! (docs/metrics.md), page by page, each page in one transaction that locks its conversations, so
//! a change arriving meanwhile waits and is not lost. The roll-ups of the hours whose samples
//! changed are rewritten at the end (until then a report of those hours shows the old figures).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::measure::{Context, Found, measure_from_log, write};
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
    // Each hour's roll-up is rewritten once, at the end, rather than on every page.
    let mut touched = BTreeSet::new();
    loop {
        let ids = store.conversations_to_measure(since, after, PAGE).await?;
        let Some(last) = ids.last().copied() else {
            store.refresh_rollups(&touched).await?;
            return Ok(done);
        };
        let mut tx = store.begin().await?;
        let conversations = tx.measured(&ids).await?;
        let context = Context::load(&mut tx).await?;
        let mut found = Found::default();
        measure_from_log(&mut tx, &conversations, &context, &mut found).await?;
        let measured: Vec<_> = conversations.iter().map(|c| c.id).collect();
        touched.extend(write(&mut tx, &measured, &found).await?.keys());
        tx.commit().await?;
        done.conversations += conversations.len() as u64;
        done.samples += found.samples.len() as u64;
        progress(done.conversations);
        after = Some(last);
    }
}
