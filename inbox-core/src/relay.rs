//! The outbox relay: hands stored replies to the bus. A reply's outbox row is written in the same
//! transaction as the reply and marked published only after the bus took it, so a crash between
//! the two publishes it again (receivers dedupe on the message id) and never loses it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::ids::MessageId;
use crate::store::{RelayLease, Store};

/// Replies taken per poll.
const BATCH: u32 = 100;
/// Poll interval when nothing wakes the relay (replies stored by another process).
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct OutboxRelay {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    /// Woken by whoever stores a reply in this process.
    pub wake: Arc<Notify>,
}

impl OutboxRelay {
    pub async fn run(self, shutdown: CancellationToken) {
        let in_flight: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
        // With several core instances only one relays at a time, so no reply is published twice
        // by two relays racing for the same row.
        let mut lease: Option<RelayLease> = None;
        loop {
            if let Some(held) = &mut lease
                && !held.still_held().await
            {
                tracing::warn!("Lost the outbox relay lease.");
                lease = None;
            }
            if lease.is_none() {
                match self.store.try_relay_lease().await {
                    Ok(Some(acquired)) => {
                        tracing::info!("This instance relays the outbox.");
                        lease = Some(acquired);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "Outbox relay lease not acquired."),
                }
            }
            let entries = match lease {
                Some(_) => self.store.pending_outbox(BATCH).await,
                None => Ok(Vec::new()),
            };
            match entries {
                Ok(entries) => {
                    for entry in entries {
                        let fresh = in_flight
                            .lock()
                            .map(|mut set| set.insert(entry.message_id))
                            .unwrap_or(false);
                        if !fresh {
                            continue;
                        }
                        // Each reply on its own task: a slow bus for one never holds the others.
                        let relay = self.clone();
                        let in_flight = in_flight.clone();
                        tokio::spawn(async move {
                            relay.publish(entry.message_id, &entry.message).await;
                            if let Ok(mut set) = in_flight.lock() {
                                set.remove(&entry.message_id);
                            }
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "Outbox not readable; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn publish(&self, message_id: MessageId, message: &crate::envelope::OutboundMessage) {
        match self.bus.publish_outbound(message).await {
            Ok(()) => {
                if let Err(error) = self.store.mark_outbox_published(message_id).await {
                    // Published again on the next poll; the receiver drops the duplicate.
                    tracing::warn!(%message_id, %error, "Outbox row not marked published.");
                }
            }
            Err(error) => {
                tracing::warn!(%message_id, %error, "Reply not handed to the bus; will retry.")
            }
        }
    }
}
