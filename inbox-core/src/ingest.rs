//! THE ingest funnel: every inbound record, from any channel and any bus, goes through [`ingest`].
//!
//! A batch is handled set-wise in one transaction: a handful of lookups for the whole batch
//! (channels, known external ids, identities, candidate conversations), the threading decisions in
//! memory, then one multi-row insert per table. Replays are harmless: (channel, external id) is
//! unique and already-stored messages are reported as duplicates. Records that cannot be stored are
//! dead-lettered in the same transaction, so the caller may acknowledge the whole batch on success.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::channel_rules::ChannelRules;
use crate::envelope::{
    Automated, DeliveryReport, DeliveryStatus, DomainEvent, InboundEvent, InboundMessage,
};
use crate::identity::{EmailAddress, channel_identity, email_identity};
use crate::ids::{ChannelId, ContactId, ConversationId, MessageId};
use crate::model::{
    Actor, Channel, ConversationStatus, Direction, EventKind, Identity, ThreadReason, to_millis,
};
use crate::store::{
    ConversationState, DeadLetterId, KnownExternalId, NewContact, NewEvent, NewIdentity,
    NewMessage, Resolution, Store, StoreError, StoreTx,
};
use crate::threading::{self, Candidate, Candidates, Placement, ThreadingPolicy};

/// Longest accepted external id, handle and text; beyond them a record is dead-lettered.
const MAX_EXTERNAL_ID: usize = 1_000;
const MAX_HANDLE: usize = 500;
const MAX_TEXT: usize = 1 << 20;
/// Characters of a message shown in the conversation list.
const PREVIEW_CHARS: usize = 140;

/// Tunables of the funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    pub threading: ThreadingPolicy,
    /// A `sent_at` further than this in the future is replaced by `received_at` (DESIGN §5).
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
        Some(Outcome::Stored {
            message_id,
            conversation_id,
            ..
        }) => {
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

/// A message that passed validation, with its normalized values.
struct ValidMessage {
    index: usize,
    message: InboundMessage,
    rules: ChannelRules,
    identity: Identity,
    verified_email: Option<EmailAddress>,
    sent_at: i64,
    /// The provider's time when it was replaced by `sent_at`.
    claimed_sent_at: Option<i64>,
    /// Email: the conversation named by a reply token in a recipient or a referenced Message-ID.
    token: Option<ConversationId>,
    /// Email: the normalized subject.
    subject_key: Option<String>,
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

    /// Resolves contacts, threads and writes the valid messages of the batch.
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

        let mut identity_keys: Vec<Identity> = Vec::new();
        for c in &messages {
            identity_keys.push(c.identity.clone());
            if let Some(email) = &c.verified_email {
                identity_keys.push(email_identity(email));
            }
        }
        dedup(&mut identity_keys);

        // Concurrent batches touching the same customer or the same message (a replay during a
        // bus rebalance) wait for each other here, before anything is looked up, so the later one
        // sees what the earlier one committed instead of creating a second contact, conversation
        // or phantom message.
        let lock_keys: Vec<String> = identity_keys
            .iter()
            .map(|i| format!("identity\0{}\0{}", i.namespace, i.handle))
            .chain(messages.iter().map(|c| {
                format!(
                    "message\0{}\0{}",
                    c.message.channel_id, c.message.external_id
                )
            }))
            .collect();
        tx.lock_keys(&lock_keys).await?;

        // Every external id the batch mentions: its own (duplicates) and those it replies to.
        let mut external_keys: Vec<(ChannelId, String)> = Vec::new();
        for c in &messages {
            let m = &c.message;
            external_keys.push((m.channel_id, m.external_id.clone()));
            for reference in reply_references(m) {
                external_keys.push((m.channel_id, reference.to_owned()));
            }
            if let Some(Automated::Bounce {
                original: Some(original),
                ..
            }) = &m.automated
            {
                external_keys.push((m.channel_id, original.clone()));
            }
        }
        dedup(&mut external_keys);
        let mut known = tx.messages_by_external_ids(&external_keys).await?;

        let mut identities = tx.identities(&identity_keys).await?;

        // Contacts, in arrival order so a batch that introduces a customer twice creates one.
        let mut new_contacts = Vec::new();
        let mut new_identities = Vec::new();
        let mut contact_of = Vec::with_capacity(messages.len());
        for c in &messages {
            let email_key = c.verified_email.as_ref().map(email_identity);
            let existing = identities
                .get(&c.identity)
                .or_else(|| email_key.as_ref().and_then(|k| identities.get(k)))
                .copied();
            let contact = match existing {
                Some(contact) => contact,
                None => {
                    let contact = ContactId::new();
                    new_contacts.push(NewContact {
                        id: contact,
                        name: c.message.from.name.clone(),
                        email: c.verified_email.as_ref().map(|e| e.to_string()),
                        phone: c.message.from.phone.clone(),
                        created_at: now,
                    });
                    contact
                }
            };
            for key in std::iter::once(c.identity.clone()).chain(email_key) {
                if !identities.contains_key(&key) {
                    identities.insert(key.clone(), contact);
                    new_identities.push(NewIdentity {
                        namespace: key.namespace,
                        handle: key.handle,
                        contact_id: contact,
                        created_at: now,
                    });
                }
            }
            contact_of.push(contact);
        }

        // Candidate conversations: the contact's latest on the channel, and reply targets.
        let mut pairs: Vec<(ContactId, ChannelId)> = messages
            .iter()
            .zip(&contact_of)
            .map(|(c, contact)| (*contact, c.message.channel_id))
            .collect();
        dedup(&mut pairs);
        let mut conversations: HashMap<ConversationId, ConversationState> = HashMap::new();
        let mut latest: HashMap<(ContactId, ChannelId), ConversationId> = HashMap::new();
        for state in tx.latest_conversations(&pairs).await? {
            latest.insert((state.contact_id, state.channel_id), state.id);
            conversations.insert(state.id, state);
        }
        let mut subjects: HashMap<(ContactId, ChannelId, String), ConversationId> = HashMap::new();
        let mut subject_keys: Vec<(ContactId, ChannelId, String)> = messages
            .iter()
            .zip(&contact_of)
            .filter_map(|(c, contact)| {
                Some((*contact, c.message.channel_id, c.subject_key.clone()?))
            })
            .collect();
        dedup(&mut subject_keys);
        for state in tx.subject_conversations(&subject_keys).await? {
            if let Some(key) = &state.subject_key {
                subjects.insert((state.contact_id, state.channel_id, key.clone()), state.id);
            }
            conversations.insert(state.id, state);
        }
        let mut targets: Vec<ConversationId> = known
            .values()
            .filter_map(KnownExternalId::conversation)
            .chain(messages.iter().filter_map(|c| c.token))
            .filter(|id| !conversations.contains_key(id))
            .collect();
        dedup(&mut targets);
        for state in tx.conversations_by_ids(&targets).await? {
            conversations.insert(state.id, state);
        }
        let mut bounced = Vec::new();

        let mut touched: Vec<ConversationId> = Vec::new();
        let mut rows = Vec::with_capacity(messages.len());
        let mut events = Vec::new();
        for (c, contact) in messages.into_iter().zip(contact_of) {
            let m = &c.message;
            let key = (m.channel_id, m.external_id.clone());
            if let Some((message_id, conversation_id)) = known.get(&key).and_then(|k| k.inbound) {
                self.outcomes[c.index] = Some(Outcome::Duplicate {
                    message_id,
                    conversation_id,
                });
                continue;
            }
            // A bounce of one of our replies becomes that reply's failure, not a message.
            let bounced_reply = match &m.automated {
                Some(Automated::Bounce {
                    original: Some(original),
                    ..
                }) => known
                    .get(&(m.channel_id, original.clone()))
                    .and_then(|k| k.outbound),
                _ => None,
            };
            let reply_target = reply_references(m)
                .find_map(|r| known.get(&(m.channel_id, r.to_owned())))
                .and_then(KnownExternalId::conversation)
                .filter(|id| conversations.contains_key(id));
            let latest_id = latest.get(&(contact, m.channel_id)).copied();
            // A token only counts for a conversation of this channel.
            let token_id = c.token.filter(|id| {
                conversations
                    .get(id)
                    .is_some_and(|s| s.channel_id == m.channel_id)
            });
            let subject_id = c
                .subject_key
                .as_ref()
                .and_then(|key| subjects.get(&(contact, m.channel_id, key.clone())))
                .copied();
            let placement = threading::place(
                &c.rules,
                Candidates {
                    reply_target: reply_target.and_then(|id| conversations.get(&id)),
                    token: token_id.and_then(|id| conversations.get(&id)),
                    subject: subject_id.and_then(|id| conversations.get(&id)),
                    latest: latest_id.and_then(|id| conversations.get(&id)),
                },
                &self.settings.threading,
                c.sent_at,
            );
            if let Some((bounced_id, bounced_conversation)) = bounced_reply {
                bounced.push((
                    bounced_id,
                    bounced_conversation,
                    m.channel_id,
                    bounce_reason(m),
                ));
                self.outcomes[c.index] = Some(Outcome::DeliveryRecorded {
                    message_id: bounced_id,
                });
                continue;
            }
            let (conversation_id, reason) = match placement {
                Placement::Existing { reason, candidate } => {
                    let id = match candidate {
                        Candidate::ReplyTarget => reply_target,
                        Candidate::Token => token_id,
                        Candidate::Subject => subject_id,
                        Candidate::Latest => latest_id,
                    };
                    match id {
                        Some(id) => (id, reason),
                        None => (ConversationId::new(), ThreadReason::NewConversation),
                    }
                }
                Placement::New => (ConversationId::new(), ThreadReason::NewConversation),
            };
            // Machines never open conversations; what no rule placed is kept as a dead letter.
            if m.automated.is_some() && reason == ThreadReason::NewConversation {
                let error =
                    "automated: an auto-reply or bounce that belongs to no conversation".to_owned();
                self.dead_letter(
                    c.index,
                    Some(m.channel_id),
                    payload_of(&self.records[c.index]),
                    error,
                );
                continue;
            }
            let actor = Actor::Contact(contact);
            let conversation = conversations.entry(conversation_id).or_insert_with(|| {
                events.push(NewEvent {
                    conversation_id,
                    kind: EventKind::Opened,
                    actor,
                    contact_id: Some(contact),
                    message_id: Some(m.id),
                    data: serde_json::json!({}),
                    at: c.sent_at,
                });
                latest.insert((contact, m.channel_id), conversation_id);
                if let Some(key) = &c.subject_key {
                    subjects.insert((contact, m.channel_id, key.clone()), conversation_id);
                }
                ConversationState {
                    id: conversation_id,
                    channel_id: m.channel_id,
                    contact_id: contact,
                    contact_handle: m.from.handle.trim().to_owned(),
                    status: ConversationStatus::Open.as_str().to_owned(),
                    assignee_id: None,
                    subject: m.thread.subject.clone(),
                    labels: "[]".to_owned(),
                    preview: String::new(),
                    message_count: 0,
                    unread_count: 0,
                    created_at: c.sent_at,
                    last_message_at: c.sent_at,
                    waiting_since: None,
                    snoozed_until: None,
                    resolved_at: None,
                    subject_key: c.subject_key.clone(),
                }
            });
            // A customer writing makes the conversation need attention again; a machine
            // (an auto-reply) does not.
            let human = m.automated.is_none();
            let previous = conversation.status();
            if human && previous != ConversationStatus::Open {
                let kind = if previous == ConversationStatus::Resolved {
                    EventKind::Reopened
                } else {
                    EventKind::StatusChanged
                };
                events.push(NewEvent {
                    conversation_id,
                    kind,
                    actor,
                    contact_id: Some(contact),
                    message_id: Some(m.id),
                    data: serde_json::json!({"from": previous.as_str(), "to": "open"}),
                    at: c.sent_at,
                });
                conversation.set_status(ConversationStatus::Open);
                conversation.resolved_at = None;
                conversation.snoozed_until = None;
            }
            conversation.message_count += 1;
            if c.sent_at >= conversation.last_message_at || conversation.preview.is_empty() {
                conversation.preview = preview(&m.body.text, m.body.html.as_deref());
                conversation.last_message_at = conversation.last_message_at.max(c.sent_at);
            }
            if human {
                conversation.unread_count += 1;
                conversation.waiting_since = Some(
                    conversation
                        .waiting_since
                        .map_or(c.sent_at, |since| since.min(c.sent_at)),
                );
            }
            if !touched.contains(&conversation_id) {
                touched.push(conversation_id);
            }
            events.push(NewEvent {
                conversation_id,
                kind: EventKind::MessageReceived,
                actor,
                contact_id: Some(contact),
                message_id: Some(m.id),
                data: serde_json::json!({"thread_reason": reason.as_str()}),
                at: c.sent_at,
            });
            known.entry(key).or_default().inbound = Some((m.id, conversation_id));
            self.outcomes[c.index] = Some(Outcome::Stored {
                message_id: m.id,
                conversation_id,
                reason,
            });
            rows.push(NewMessage {
                id: m.id,
                conversation_id,
                channel_id: m.channel_id,
                external_id: Some(m.external_id.clone()),
                direction: Direction::Inbound,
                contact_id: Some(contact),
                agent_id: None,
                sender_handle: Some(m.from.handle.trim().to_owned()),
                sender_name: m.from.name.clone(),
                text: m.body.text.clone(),
                html: m.body.html.clone(),
                subject: m.thread.subject.clone(),
                in_reply_to: m.thread.in_reply_to.clone(),
                attachments: serde_json::to_string(&m.attachments)
                    .unwrap_or_else(|_| "[]".to_owned()),
                raw_ref: m.raw.as_ref().map(|r| r.0.clone()),
                thread_reason: reason,
                sent_at: c.sent_at,
                claimed_sent_at: c.claimed_sent_at,
                received_at: to_millis(m.received_at),
                delivery_status: None,
            });
        }

        let touched_states: Vec<ConversationState> = touched
            .iter()
            .filter_map(|id| conversations.remove(id))
            .collect();
        tx.insert_contacts(&new_contacts).await?;
        tx.insert_identities(&new_identities).await?;
        tx.upsert_conversations(&touched_states).await?;
        tx.insert_messages(&rows).await?;
        domain_events.extend(tx.insert_events(&events).await?);
        let mut bounce_rows = Vec::new();
        for (message_id, conversation_id, channel_id, error) in bounced {
            let report = DeliveryReport {
                message_id,
                conversation_id,
                channel_id,
                status: DeliveryStatus::Failed,
                external_id: None,
                error: Some(error),
                attempts: 1,
                at: Utc::now(),
            };
            if tx.apply_delivery(&report).await? {
                bounce_rows.push(delivery_log_row(&report, None));
            }
        }
        domain_events.extend(tx.insert_events(&bounce_rows).await?);
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

/// What a bounce says went wrong: the server's diagnostic, else the text's first line.
fn bounce_reason(m: &InboundMessage) -> String {
    if let Some(Automated::Bounce {
        reason: Some(reason),
        ..
    }) = &m.automated
    {
        return format!("bounced: {}", reason.chars().take(300).collect::<String>());
    }
    let line = m
        .body
        .text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no reason given");
    format!("bounced: {}", line.chars().take(300).collect::<String>())
}

/// External ids a message refers to, most specific first.
fn reply_references(m: &InboundMessage) -> impl Iterator<Item = &str> {
    m.thread
        .in_reply_to
        .iter()
        .map(String::as_str)
        .chain(m.thread.references.iter().rev().map(String::as_str))
        .filter(|r| !r.is_empty())
}

fn dedup<T: std::hash::Hash + Eq + Clone>(items: &mut Vec<T>) {
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

/// Checks a message against its channel and normalizes its time and sender.
fn validate(
    m: &InboundMessage,
    channel: Option<&Channel>,
    settings: &IngestSettings,
) -> Result<ValidMessage, String> {
    let channel = channel.ok_or_else(|| format!("channel_id: unknown channel {}", m.channel_id))?;
    // A paused channel's intake refuses new input, but what it accepted before the pause is
    // stored; a deleted channel's is not.
    if channel.deleted_at.is_some() {
        return Err(format!("channel_id: channel {} is deleted", m.channel_id));
    }
    if channel.kind != m.channel_kind {
        return Err(format!(
            "channel_kind: message says {} but channel {} is {}",
            m.channel_kind.as_str(),
            channel.id,
            channel.kind.as_str()
        ));
    }
    if m.external_id.trim().is_empty() || m.external_id.len() > MAX_EXTERNAL_ID {
        return Err(format!(
            "external_id: must be 1 to {MAX_EXTERNAL_ID} characters"
        ));
    }
    let handle = m.from.handle.trim();
    if handle.is_empty() || handle.len() > MAX_HANDLE {
        return Err(format!("from.handle: must be 1 to {MAX_HANDLE} characters"));
    }
    if m.body.text.trim().is_empty()
        && m.body.html.as_deref().is_none_or(|h| h.trim().is_empty())
        && m.attachments.is_empty()
    {
        return Err("text: a message needs text, html or an attachment".into());
    }
    if m.body.text.len() > MAX_TEXT || m.body.html.as_ref().is_some_and(|h| h.len() > MAX_TEXT) {
        return Err(format!("text: longer than {MAX_TEXT} bytes"));
    }
    if let Some(field) = field_with_nul(m) {
        return Err(format!("{field}: contains a NUL character"));
    }
    let verified_email = match &m.from.email {
        Some(email) => Some(EmailAddress::parse(email).map_err(|e| format!("from.email: {e}"))?),
        None => None,
    };
    let earliest = chrono::Duration::from_std(settings.max_backdate)
        .ok()
        .and_then(|back| channel.created_at.checked_sub_signed(back))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let sent = effective_sent_at(m.sent_at, m.received_at, earliest, settings.max_clock_skew);
    Ok(ValidMessage {
        index: 0,
        message: m.clone(),
        rules: channel.rules,
        identity: channel_identity(channel.rules.identity, channel.kind, channel.id, handle),
        verified_email,
        sent_at: sent.at,
        claimed_sent_at: sent.claimed,
        token: channel
            .rules
            .reply_token
            .then(|| {
                m.to.iter()
                    .map(|p| p.handle.as_str())
                    .chain(reply_references(m))
                    .find_map(threading::find_reply_token)
            })
            .flatten(),
        subject_key: channel
            .rules
            .subject
            .then(|| {
                m.thread
                    .subject
                    .as_deref()
                    .map(threading::normalize_subject)
            })
            .flatten()
            .filter(|key| !key.is_empty()),
    })
}

/// The first text field holding a NUL character: PostgreSQL cannot store one, and a record that
/// cannot be stored must be dead-lettered rather than fail its whole batch again and again.
pub fn field_with_nul(m: &InboundMessage) -> Option<&'static str> {
    let nul = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(nul);
    if nul(&m.external_id) {
        Some("external_id")
    } else if nul(&m.from.handle) {
        Some("from.handle")
    } else if opt(&m.from.name) {
        Some("from.name")
    } else if opt(&m.from.email) || opt(&m.from.phone) {
        Some("from.email")
    } else if nul(&m.body.text) {
        Some("text")
    } else if opt(&m.body.html) {
        Some("html")
    } else if opt(&m.thread.subject) {
        Some("subject")
    } else if opt(&m.thread.in_reply_to) || m.thread.references.iter().any(|r| nul(r)) {
        Some("in_reply_to")
    } else if m.attachments.iter().any(|a| nul(&a.name) || nul(&a.blob.0)) {
        Some("attachments")
    } else {
        None
    }
}

/// When a message was sent, as its history orders it (epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentAt {
    pub at: i64,
    /// The provider's time, when it was not believed and `at` is the arrival time instead.
    pub claimed: Option<i64>,
}

/// Provider time, unless it is too far in the future or before `earliest` to be trusted
/// (DESIGN §5); then the arrival time, with the claim kept.
pub fn effective_sent_at(
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    earliest: DateTime<Utc>,
    max_skew: Duration,
) -> SentAt {
    let received = to_millis(received_at);
    let latest = received.saturating_add(max_skew.as_millis() as i64);
    match sent_at.map(to_millis) {
        None => SentAt {
            at: received,
            claimed: None,
        },
        Some(sent) if (to_millis(earliest)..=latest).contains(&sent) => SentAt {
            at: sent,
            claimed: None,
        },
        Some(sent) => SentAt {
            at: received,
            claimed: Some(sent),
        },
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
