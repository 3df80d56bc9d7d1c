//! The event relay: hands the event outbox to the bus (`inbox.events`), oldest first, and deletes
//! what the bus acknowledged. A crash between the two publishes those events again (consumers drop
//! them by id), never loses one. One relay runs at a time across processes (a lease), so one
//! conversation's events leave in `seq` order.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::store::{Relay, RelayLease, Store};

/// Events taken per round: one produce batch.
const BATCH: u32 = 1000;
/// Longest wait when no commit rings (lost notifications, another process without them).
const POLL: Duration = Duration::from_secs(1);
/// Longest pause after a failure (the broker down, the database away).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct EventRelay {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
}

/// What one round did.
enum Round {
    /// A full batch went out; more may be waiting.
    Full,
    /// The outbox is drained (or this instance does not hold the lease).
    Idle,
    Failed,
}

impl EventRelay {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wakeup = self.store.event_wakeup().await;
        let mut lease: Option<RelayLease> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            // Armed before looking, so a commit during the round starts the next one at once.
            let armed = wakeup.arm();
            self.keep_lease(&mut lease).await;
            let round = match lease {
                Some(_) => self.round().await,
                None => Round::Idle,
            };
            if matches!(round, Round::Failed) {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                backoff = Duration::from_millis(100);
            }
            let pause = async {
                match round {
                    Round::Full => {}
                    Round::Idle => wakeup.wait(armed, POLL).await,
                    // Not woken by commits: the outbox is not the problem.
                    Round::Failed => tokio::time::sleep(backoff).await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = pause => {}
            }
        }
    }

    async fn keep_lease(&self, lease: &mut Option<RelayLease>) {
        if let Some(held) = lease
            && !held.still_held().await
        {
            tracing::warn!("Lost the event relay lease.");
            *lease = None;
        }
        if lease.is_none() {
            match self.store.try_lease(Relay::Events).await {
                Ok(Some(acquired)) => {
                    tracing::info!("This instance relays domain events.");
                    *lease = Some(acquired);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "Event relay lease not acquired."),
            }
        }
    }

    async fn round(&self) -> Round {
        let pending = match self.store.pending_stream_events(BATCH).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "Event outbox not readable; retrying.");
                return Round::Failed;
            }
        };
        if pending.is_empty() {
            return Round::Idle;
        }
        let taken = pending.len();
        if !pending.undecodable.is_empty() {
            for row in &pending.undecodable {
                tracing::error!(seq = row.seq, error = %row.error, "Undecodable event; dead-lettered.");
            }
            if let Err(error) = self
                .store
                .dead_letter_stream_events(&pending.undecodable)
                .await
            {
                tracing::warn!(%error, "Undecodable events not dead-lettered; retrying.");
                return Round::Failed;
            }
        }
        let events = pending.events;
        if events.is_empty() {
            return Round::Idle;
        }
        // All or nothing: after a failure the whole batch goes again, in order, so a consumer
        // keeping each id's first copy still sees one conversation's events in `seq` order
        // (unless a send failed while a later one succeeded; `seq` orders those).
        if let Err(error) = self.bus.publish_domain(&events).await {
            tracing::warn!(%error, events = events.len(), "Domain events not handed to the bus; will retry.");
            return Round::Failed;
        }
        let seqs: Vec<i64> = events.iter().filter_map(|e| e.seq).collect();
        if let Err(error) = self.store.delete_stream_events(&seqs).await {
            // Published again next round; consumers drop the copies by id.
            tracing::warn!(%error, "Relayed events not deleted from the outbox.");
            return Round::Failed;
        }
        metrics::counter!("inbox_events_relayed_total").increment(events.len() as u64);
        if taken as u32 == BATCH {
            Round::Full
        } else {
            Round::Idle
        }
    }
}
