//! Time-driven changes: snoozed conversations open again when their time comes.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::actions::wake_snoozed;
use crate::store::Store;

/// How often due snoozes are looked for.
const EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct SnoozeWaker {
    pub store: Store,
}

impl SnoozeWaker {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match wake_snoozed(&self.store).await {
                Ok(events) if !events.is_empty() => {
                    tracing::info!(conversations = events.len(), "Snoozes ended.");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "Snoozes not checked; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}
