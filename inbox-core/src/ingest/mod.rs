//! THE ingest funnel: every inbound record, from any channel and any bus, goes through [`ingest`].
//!
//! A batch is handled set-wise in one transaction: a handful of lookups for the whole batch
//! (channels, known external ids, identities, candidate conversations), the threading decisions in
//! memory, then one multi-row insert per table. Replays are harmless: (channel, external id) is
//! unique and already-stored messages are reported as duplicates. Records that cannot be stored are
//! dead-lettered in the same transaction, so the caller may acknowledge the whole batch on success.

mod contacts;
mod lookup;
mod place;
mod validate;
mod write;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;

use crate::envelope::{DeliveryReport, DomainEvent, InboundEvent, InboundMessage};
use crate::ids::{ChannelId, ConversationId, MessageId};
use crate::model::{Actor, Channel, EventKind, ThreadReason, to_millis};
use crate::store::{DeadLetterId, NewEvent, Resolution, Store, StoreError, StoreTx};
use crate::threading::ThreadingPolicy;
use place::Placed;
pub use validate::{SentAt, effective_sent_at, field_with_nul};
use validate::{ValidMessage, validate};

/// Characters of a message shown in the conversation list.
const PREVIEW_CHARS: usize = 140;

/// Tunables of the funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    pub threading: ThreadingPolicy,
    /// A `sent_at` further than this in the future is replaced by `received_at` (docs/threading.md).
    pub max_clock_skew: Duration,
    /// A `sent_at` earlier than the channel's creation by more than this is replaced by
    /// `received_at` too (a broken clock, `0001-01-01`); within it, mailbox backfills and history
    /// imports keep their times.
    pub max_backdate: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            threading: ThreadingPolicy::default(),
            max_clock_skew: Duration::from_secs(300),
            max_backdate: Duration::from_secs(365 * 86_400),
        }
    }
}

/// One record taken off the bus.
#[allow(clippy::large_enum_variant)] // see InboundEvent
#[derive(Debug, Clone, PartialEq)]
pub enum InboundRecord {
    Event(InboundEvent),
    /// Bytes that did not decode as an envelope; kept verbatim with the error.
    Undecodable {
        payload: String,
        error: String,
    },
}

/// What the funnel did with one record, in input order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Stored {
        message_id: MessageId,
        conversation_id: ConversationId,
        reason: ThreadReason,
    },
    /// The same (channel, external id) was stored before; nothing changed.
    Duplicate {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    DeliveryRecorded {
        message_id: MessageId,
    },
    /// An edit of a stored message: the message now reads as edited, its earlier version kept.
    Edited {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// A later part of a message sent in pieces (an album's photo), added to that message.
    Joined {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    DeadLettered {
        error: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub outcomes: Vec<Outcome>,
    /// What the batch wrote to the event outbox (the event relay publishes it).
    pub domain_events: Vec<DomainEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch was not stored (nothing was); the caller retries it and acknowledges nothing.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a batch of inbound records in one transaction. On `Ok`, every record is either stored,
/// recognised as a duplicate, or dead-lettered, and the caller may acknowledge all of them.
pub async fn ingest(
    store: &Store,
    records: &[InboundRecord],
    settings: &IngestSettings,
) -> Result<IngestReport, IngestError> {
    let mut tx = store.begin().await?;
    let report = Batch::new(records, settings).run(&mut tx).await?;
    tx.commit().await?;
    Ok(report)
}

/// What replaying a dead letter did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayOutcome {
    /// Stored now; the dead letter is settled with a link to the message.
    Stored {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// It had been stored already (it came in again another way); settled, nothing added.
    Duplicate {
        message_id: MessageId,
    },
    /// Still not storable; the dead letter keeps the new reason.
    Failed {
        error: String,
    },
    /// Settled before (by an earlier replay or a discard); nothing done.
    AlreadySettled {
        resolution: Resolution,
    },
    NotFound,
}

/// Runs a dead letter's input through the funnel again, in one transaction with the dead letter's
/// update: stored → settled, failing → its error updated (never a second row), stored before →
/// settled as a duplicate (never a second message). `record` is the input as it is now known
/// (decoded from the payload, or re-parsed from its raw source by its kind).
pub async fn replay(
    store: &Store,
    id: DeadLetterId,
    record: InboundRecord,
    settings: &IngestSettings,
) -> Result<ReplayOutcome, IngestError> {
    let mut tx = store.begin().await?;
    let Some(letter) = tx.lock_dead_letter(id).await? else {
        return Ok(ReplayOutcome::NotFound);
    };
    if let Some(resolution) = letter.resolution {
        return Ok(ReplayOutcome::AlreadySettled { resolution });
    }
    let records = [record];
    let mut batch = Batch::new(&records, settings);
    batch.replaying = Some(id);
    let report = batch.run(&mut tx).await?;
    let outcome = match report.outcomes.into_iter().next() {
        // A replayed edit or part changed the stored message: for the operator it was stored.
        Some(
            Outcome::Stored {
                message_id,
                conversation_id,
                ..
            }
            | Outcome::Edited {
                message_id,
                conversation_id,
            }
            | Outcome::Joined {
                message_id,
                conversation_id,
            },
        ) => {
            tx.replay_settled(id, Resolution::Stored, message_id)
                .await?;
            ReplayOutcome::Stored {
                message_id,
                conversation_id,
            }
        }
        Some(Outcome::Duplicate { message_id, .. }) => {
            tx.replay_settled(id, Resolution::Duplicate, message_id)
                .await?;
            ReplayOutcome::Duplicate { message_id }
        }
        Some(Outcome::DeliveryRecorded { message_id }) => {
            tx.replay_settled(id, Resolution::Stored, message_id)
                .await?;
            ReplayOutcome::Duplicate { message_id }
        }
        Some(Outcome::DeadLettered { error }) => {
            tx.replay_failed(id, &error).await?;
            ReplayOutcome::Failed { error }
        }
        None => ReplayOutcome::Failed {
            error: "nothing to replay".into(),
        },
    };
    tx.commit().await?;
    Ok(outcome)
}

/// A record of the batch that cannot be stored.
struct DeadRecord {
    channel: Option<ChannelId>,
    payload: String,
    error: String,
}

struct Batch<'a> {
    records: &'a [InboundRecord],
    settings: &'a IngestSettings,
    outcomes: Vec<Option<Outcome>>,
    dead: Vec<DeadRecord>,
    /// Set when the batch is a dead letter's replay: a failure updates that row instead of
    /// adding one.
    replaying: Option<DeadLetterId>,
}

impl<'a> Batch<'a> {
    fn new(records: &'a [InboundRecord], settings: &'a IngestSettings) -> Self {
        Batch {
            records,
            settings,
            outcomes: vec![None; records.len()],
            dead: Vec::new(),
            replaying: None,
        }
    }

    fn dead_letter(
        &mut self,
        index: usize,
        channel: Option<ChannelId>,
        payload: String,
        error: String,
    ) {
        self.outcomes[index] = Some(Outcome::DeadLettered {
            error: error.clone(),
        });
        self.dead.push(DeadRecord {
            channel,
            payload,
            error,
        });
    }

    async fn run(mut self, tx: &mut StoreTx) -> Result<IngestReport, IngestError> {
        let mut domain_events = Vec::new();
        let channel_ids: Vec<ChannelId> = self
            .records
            .iter()
            .filter_map(|r| match r {
                InboundRecord::Event(e) => Some(e.channel_id()),
                InboundRecord::Undecodable { .. } => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let channels: HashMap<ChannelId, Channel> = tx
            .channels_by_ids(&channel_ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();

        let mut messages = Vec::new();
        let mut deliveries = Vec::new();
        for (index, record) in self.records.iter().enumerate() {
            match record {
                InboundRecord::Undecodable { payload, error } => {
                    self.dead_letter(index, None, payload.clone(), error.clone());
                }
                InboundRecord::Event(InboundEvent::Message(m)) => {
                    match validate(m, channels.get(&m.channel_id), self.settings) {
                        Ok(candidate) => messages.push(ValidMessage { index, ..candidate }),
                        Err(error) => {
                            self.dead_letter(index, Some(m.channel_id), payload_of(record), error)
                        }
                    }
                }
                InboundRecord::Event(InboundEvent::Delivery(d)) => deliveries.push((index, d)),
                InboundRecord::Event(InboundEvent::Rejected(r)) => {
                    self.dead_letter(
                        index,
                        Some(r.channel_id),
                        r.payload.clone(),
                        r.error.clone(),
                    );
                }
            }
        }

        self.store_messages(tx, messages, &mut domain_events)
            .await?;
        for (index, report) in deliveries {
            // The provider's id must not be another message's: the unique (channel, external id)
            // would fail the whole batch. Receivers that answer with a ticket or thread id do
            // that, so the delivery itself is still recorded, only without the id.
            let mut conflict = None;
            if let Some(external_id) = &report.external_id
                && let Some(owner) = tx.external_id_owner(report.message_id, external_id).await?
            {
                tracing::warn!(message_id = %report.message_id, %external_id, %owner, "Delivery report reuses another message's external id; not recorded.");
                conflict = Some(serde_json::json!({"external_id": external_id, "owner": owner}));
            }
            let report = &DeliveryReport {
                external_id: report.external_id.clone().filter(|_| conflict.is_none()),
                ..report.clone()
            };
            if tx.apply_delivery(report).await? {
                self.outcomes[index] = Some(Outcome::DeliveryRecorded {
                    message_id: report.message_id,
                });
                domain_events.extend(
                    tx.insert_events(&[delivery_log_row(report, conflict)])
                        .await?,
                );
            } else {
                let error = format!("delivery report for unknown message {}", report.message_id);
                self.dead_letter(
                    index,
                    Some(report.channel_id),
                    payload_of(&self.records[index]),
                    error,
                );
            }
        }
        for dead in &self.dead {
            let (channel_id, error) = (dead.channel, &dead.error);
            if self.replaying.is_some() {
                tracing::info!(?channel_id, %error, "Replayed dead letter still fails.");
                continue;
            }
            tracing::warn!(?channel_id, %error, "Dead-lettered an inbound record.");
            tx.insert_dead_letter("inbound", dead.channel, &dead.payload, &dead.error)
                .await?;
        }
        let outcomes = self
            .outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::DeadLettered {
                    error: "not processed".into(),
                })
            })
            .collect();
        Ok(IngestReport {
            outcomes,
            domain_events,
        })
    }

    /// The valid messages of the batch, in the funnel's named steps: load what they touch,
    /// resolve their contacts, place each one (pure: rows and events out), write.
    async fn store_messages(
        &mut self,
        tx: &mut StoreTx,
        messages: Vec<ValidMessage>,
        domain_events: &mut Vec<DomainEvent>,
    ) -> Result<(), IngestError> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = to_millis(Utc::now());
        let found = lookup::lock_and_load(tx, &messages).await?;
        let contacts = contacts::resolve(&messages, found.identities, now);
        let conversations =
            lookup::load_conversations(tx, &messages, &contacts.contact_of, &found.known).await?;
        let plan = place::place(
            messages,
            &contacts.contact_of,
            found.known,
            found.parts,
            conversations,
            &self.settings.threading,
        );
        for (index, placed) in &plan.placed {
            let outcome = match placed {
                Placed::Duplicate {
                    message_id,
                    conversation_id,
                } => Outcome::Duplicate {
                    message_id: *message_id,
                    conversation_id: *conversation_id,
                },
                Placed::Edited {
                    message_id,
                    conversation_id,
                } => Outcome::Edited {
                    message_id: *message_id,
                    conversation_id: *conversation_id,
                },
                Placed::Joined {
                    message_id,
                    conversation_id,
                } => Outcome::Joined {
                    message_id: *message_id,
                    conversation_id: *conversation_id,
                },
                Placed::Bounce(bounce) => Outcome::DeliveryRecorded {
                    message_id: bounce.message_id,
                },
                Placed::Unthreaded { channel_id, error } => {
                    let payload = payload_of(&self.records[*index]);
                    self.dead_letter(*index, Some(*channel_id), payload, error.clone());
                    continue;
                }
                Placed::Stored {
                    message_id,
                    conversation_id,
                    reason,
                } => Outcome::Stored {
                    message_id: *message_id,
                    conversation_id: *conversation_id,
                    reason: *reason,
                },
            };
            self.outcomes[*index] = Some(outcome);
        }
        domain_events.extend(write::write(tx, &contacts, &plan).await?);
        Ok(())
    }
}

/// The conversation-log row of a recorded delivery (a receiver's report, or a bounce).
fn delivery_log_row(report: &DeliveryReport, conflict: Option<serde_json::Value>) -> NewEvent {
    NewEvent {
        conversation_id: report.conversation_id,
        kind: EventKind::DeliveryUpdated,
        actor: Actor::System,
        contact_id: None,
        message_id: Some(report.message_id),
        data: serde_json::json!({
            "status": report.status.as_str(),
            "error": report.error,
            "attempts": report.attempts,
            "external_id_conflict": conflict,
        }),
        at: to_millis(report.at),
    }
}

/// External ids a message refers to, most specific first.
pub(super) fn reply_references(m: &InboundMessage) -> impl Iterator<Item = &str> {
    m.thread
        .in_reply_to
        .iter()
        .map(String::as_str)
        .chain(m.thread.references.iter().rev().map(String::as_str))
        .filter(|r| !r.is_empty())
}

pub(super) fn dedup<T: std::hash::Hash + Eq + Clone>(items: &mut Vec<T>) {
    let mut seen = HashSet::with_capacity(items.len());
    items.retain(|item| seen.insert(item.clone()));
}

/// The record as kept in a dead letter.
pub fn payload_of(record: &InboundRecord) -> String {
    match record {
        InboundRecord::Event(event) => String::from_utf8_lossy(&event.to_json()).into_owned(),
        InboundRecord::Undecodable { payload, .. } => payload.clone(),
    }
}

/// The start of a message for the conversation list.
pub fn preview(text: &str, html: Option<&str>) -> String {
    let source = if text.trim().is_empty() {
        html.unwrap_or_default()
    } else {
        text
    };
    let collapsed = source.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(PREVIEW_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn untrusted_times_are_clamped_to_arrival_and_the_claim_kept() {
        let received = Utc::now();
        let earliest = received - chrono::Duration::days(400);
        let skew = Duration::from_secs(300);
        let at = |t: DateTime<Utc>| effective_sent_at(Some(t), received, earliest, skew);
        let believed = |t: DateTime<Utc>| SentAt {
            at: to_millis(t),
            claimed: None,
        };
        let clamped = |t: DateTime<Utc>| SentAt {
            at: to_millis(received),
            claimed: Some(to_millis(t)),
        };
        let near = received + chrono::Duration::seconds(60);
        assert_eq!(at(near), believed(near));
        let far = received + chrono::Duration::seconds(3600);
        assert_eq!(at(far), clamped(far));
        let backfilled = received - chrono::Duration::days(30);
        assert_eq!(at(backfilled), believed(backfilled));
        let ancient = "0001-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(at(ancient), clamped(ancient));
        let before_channel = earliest - chrono::Duration::seconds(1);
        assert_eq!(at(before_channel), clamped(before_channel));
        assert_eq!(
            effective_sent_at(None, received, earliest, skew),
            SentAt {
                at: to_millis(received),
                claimed: None
            }
        );
    }

    #[test]
    fn previews_collapse_whitespace_and_are_short() {
        assert_eq!(preview("  a\n\n b  ", None), "a b");
        assert_eq!(preview("", Some("<p>x</p>")), "<p>x</p>");
        assert_eq!(
            preview(&"é".repeat(500), None).chars().count(),
            PREVIEW_CHARS
        );
    }
}
