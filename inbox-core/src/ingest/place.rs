//! Step 3 of the funnel (place), pure: each message is checked against what is stored (a
//! duplicate, a bounce of one of our replies), threaded by its channel's rules (docs/threading.md), and
//! turned into the rows and log events to write. The conversations it changes are updated in
//! memory, so later messages of the batch see them.

use super::lookup::{Conversations, KnownIds, KnownParts};
use super::reply_references;
use super::validate::ValidMessage;
use crate::envelope::{AttachmentRef, Automated, InboundMessage};
use crate::ids::{ChannelId, ContactId, ConversationId, MessageId};
use crate::model::{Actor, ConversationStatus, Direction, EventKind, ThreadReason, to_millis};
use crate::store::{ConversationState, KnownExternalId, NewEvent, NewMessage};
use crate::threading::{self, Candidate, Candidates, Placement, ThreadingPolicy};

/// One of our replies that a bounce reports as failed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bounce {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub error: String,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Placed {
    /// Stored before: nothing changes.
    Duplicate {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// An edit of a stored message: that message updated, its earlier version kept.
    Edited {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// A later part of a message sent in pieces: added to that message.
    Joined {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// A bounce of one of our replies: that reply's failure, not a message.
    Bounce(Bounce),
    /// An automated message that belongs to no conversation: machines never open one.
    Unthreaded {
        channel_id: ChannelId,
        error: String,
    },
    Stored {
        message_id: MessageId,
        conversation_id: ConversationId,
        reason: ThreadReason,
    },
}

/// A customer's edit to write: the stored message's new content, or (`stored_now`) the mark on
/// a message the batch stores, whose original never arrived.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Edit {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub contact: ContactId,
    pub text: String,
    pub html: Option<String>,
    /// JSON array of attachment references.
    pub attachments: String,
    /// Epoch milliseconds.
    pub edited_at: i64,
    pub stored_now: bool,
    /// A part of a message sent in pieces: its attachments add to the message's.
    pub adds_attachments: bool,
}

/// A later part to add to the message it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PartJoin {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub contact: ContactId,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentRef>,
    /// Epoch milliseconds: when the part was sent.
    pub at: i64,
}

/// What the batch writes.
pub(super) struct Plan {
    /// Each message's fate, by its index in the batch.
    pub placed: Vec<(usize, Placed)>,
    pub rows: Vec<NewMessage>,
    pub edits: Vec<Edit>,
    pub parts: Vec<PartJoin>,
    pub events: Vec<NewEvent>,
    /// The conversations the batch opened or changed, as they are to be stored.
    pub touched: Vec<ConversationState>,
}

/// The conversation the placement chose among the candidates (`None`: a new one).
struct Chosen {
    reply_target: Option<ConversationId>,
    token: Option<ConversationId>,
    subject: Option<ConversationId>,
    latest: Option<ConversationId>,
}

impl Chosen {
    fn of(&self, placement: Placement) -> (ConversationId, ThreadReason) {
        let new = (ConversationId::new(), ThreadReason::NewConversation);
        let Placement::Existing { reason, candidate } = placement else {
            return new;
        };
        let id = match candidate {
            Candidate::ReplyTarget => self.reply_target,
            Candidate::Token => self.token,
            Candidate::Subject => self.subject,
            Candidate::Latest => self.latest,
        };
        id.map_or(new, |id| (id, reason))
    }
}

/// Places the batch's messages, in order.
pub(super) fn place(
    messages: Vec<ValidMessage>,
    contact_of: &[ContactId],
    mut known: KnownIds,
    mut parts: KnownParts,
    mut conversations: Conversations,
    policy: &ThreadingPolicy,
) -> Plan {
    let mut plan = Plan {
        placed: Vec::with_capacity(messages.len()),
        rows: Vec::with_capacity(messages.len()),
        edits: Vec::new(),
        parts: Vec::new(),
        events: Vec::new(),
        touched: Vec::new(),
    };
    let mut touched: Vec<ConversationId> = Vec::new();
    for (c, contact) in messages.into_iter().zip(contact_of.iter().copied()) {
        let m = &c.message;
        let key = (m.channel_id, m.external_id.clone());
        if let Some(stored) = known.get_mut(&key)
            && let Some((message_id, conversation_id)) = stored.inbound
        {
            let placed = match newer_edit(m, stored.inbound_edited_at) {
                Some(edited_at) => {
                    stored.inbound_edited_at = Some(edited_at);
                    plan.edits
                        .push(edit_of(m, message_id, conversation_id, contact, edited_at));
                    if let Some(conversation) = conversations.states.get_mut(&conversation_id)
                        && c.sent_at >= conversation.last_message_at
                    {
                        conversation.preview = super::preview(&m.body.text, m.body.html.as_deref());
                        if !touched.contains(&conversation_id) {
                            touched.push(conversation_id);
                        }
                    }
                    Placed::Edited {
                        message_id,
                        conversation_id,
                    }
                }
                None => Placed::Duplicate {
                    message_id,
                    conversation_id,
                },
            };
            plan.placed.push((c.index, placed));
            continue;
        }
        if let Some(bounce) = bounced_reply(m, &known) {
            plan.placed.push((c.index, Placed::Bounce(bounce)));
            continue;
        }
        if let Some(&(message_id, conversation_id)) = m
            .part_of
            .as_ref()
            .and_then(|part| parts.get(&(m.channel_id, part.clone())))
        {
            plan.parts.push(PartJoin {
                message_id,
                conversation_id,
                contact,
                text: m.body.text.clone(),
                html: m.body.html.clone(),
                attachments: m.attachments.clone(),
                at: c.sent_at,
            });
            // The same part again later in the batch changes nothing.
            known.entry(key).or_default().inbound = Some((message_id, conversation_id));
            let joined = Placed::Joined {
                message_id,
                conversation_id,
            };
            plan.placed.push((c.index, joined));
            continue;
        }
        let (conversation_id, reason) = thread(&c, contact, &known, &conversations, policy);
        // Machines never open conversations; what no rule placed is kept as a dead letter.
        if m.automated.is_some() && reason == ThreadReason::NewConversation {
            let error =
                "automated: an auto-reply or bounce that belongs to no conversation".to_owned();
            let unthreaded = Placed::Unthreaded {
                channel_id: m.channel_id,
                error,
            };
            plan.placed.push((c.index, unthreaded));
            continue;
        }
        let conversation = open_or_join(
            &mut conversations,
            &mut plan.events,
            &c,
            contact,
            conversation_id,
        );
        apply_message(conversation, &mut plan.events, &c, contact);
        if !touched.contains(&conversation_id) {
            touched.push(conversation_id);
        }
        plan.events.push(NewEvent {
            conversation_id,
            kind: EventKind::MessageReceived,
            actor: Actor::Contact(contact),
            contact_id: Some(contact),
            message_id: Some(m.id),
            data: received_data(reason, m.automated.is_some()),
            at: c.sent_at,
        });
        if let Some(part) = &m.part_of {
            parts.insert((m.channel_id, part.clone()), (m.id, conversation_id));
        }
        let entry = known.entry(key).or_default();
        entry.inbound = Some((m.id, conversation_id));
        // An edit whose original never came (sent before the channel was added) is the message.
        if let Some(edited_at) = newer_edit(m, None) {
            entry.inbound_edited_at = Some(edited_at);
            let mut mark = edit_of(m, m.id, conversation_id, contact, edited_at);
            mark.stored_now = true;
            plan.edits.push(mark);
        }
        let stored = Placed::Stored {
            message_id: m.id,
            conversation_id,
            reason,
        };
        plan.placed.push((c.index, stored));
        plan.rows
            .push(message_row(&c, contact, conversation_id, reason));
    }
    plan.touched = touched
        .iter()
        .filter_map(|id| conversations.states.remove(id))
        .collect();
    plan
}

/// The edit time of `m` when it is an edit newer than the stored version's (epoch ms).
fn newer_edit(m: &InboundMessage, stored_edited_at: Option<i64>) -> Option<i64> {
    let edited_at = to_millis(m.edited_at?);
    stored_edited_at
        .is_none_or(|stored| edited_at > stored)
        .then_some(edited_at)
}

fn edit_of(
    m: &InboundMessage,
    message_id: MessageId,
    conversation_id: ConversationId,
    contact: ContactId,
    edited_at: i64,
) -> Edit {
    Edit {
        message_id,
        conversation_id,
        contact,
        text: m.body.text.clone(),
        html: m.body.html.clone(),
        attachments: serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".to_owned()),
        edited_at,
        stored_now: false,
        adds_attachments: m.part_of.is_some(),
    }
}

/// A bounce of one of our replies, when the message is one.
fn bounced_reply(m: &InboundMessage, known: &KnownIds) -> Option<Bounce> {
    let Some(Automated::Bounce {
        original: Some(original),
        ..
    }) = &m.automated
    else {
        return None;
    };
    let (message_id, conversation_id) = known
        .get(&(m.channel_id, original.clone()))
        .and_then(|k| k.outbound)?;
    Some(Bounce {
        message_id,
        conversation_id,
        channel_id: m.channel_id,
        error: bounce_reason(m),
    })
}

/// The conversation the threading rules choose, and why.
fn thread(
    c: &ValidMessage,
    contact: ContactId,
    known: &KnownIds,
    conversations: &Conversations,
    policy: &ThreadingPolicy,
) -> (ConversationId, ThreadReason) {
    let m = &c.message;
    let states = &conversations.states;
    let chosen = Chosen {
        reply_target: reply_references(m)
            .find_map(|r| known.get(&(m.channel_id, r.to_owned())))
            .and_then(KnownExternalId::conversation)
            .filter(|id| states.contains_key(id)),
        // A token only counts for a conversation of this channel.
        token: c
            .token
            .filter(|id| states.get(id).is_some_and(|s| s.channel_id == m.channel_id)),
        subject: c
            .subject_key
            .as_ref()
            .and_then(|key| {
                conversations
                    .subjects
                    .get(&(contact, m.channel_id, key.clone()))
            })
            .copied(),
        latest: conversations.latest.get(&(contact, m.channel_id)).copied(),
    };
    let placement = threading::place(
        &c.rules,
        Candidates {
            reply_target: chosen.reply_target.and_then(|id| states.get(&id)),
            token: chosen.token.and_then(|id| states.get(&id)),
            subject: chosen.subject.and_then(|id| states.get(&id)),
            latest: chosen.latest.and_then(|id| states.get(&id)),
        },
        policy,
        c.sent_at,
    );
    chosen.of(placement)
}

/// The conversation the message goes to: an existing one, or a new one opened by it (logged, and
/// made the contact's latest so the batch's next messages join it).
fn open_or_join<'a>(
    conversations: &'a mut Conversations,
    events: &mut Vec<NewEvent>,
    c: &ValidMessage,
    contact: ContactId,
    conversation_id: ConversationId,
) -> &'a mut ConversationState {
    let m = &c.message;
    let Conversations {
        states,
        latest,
        subjects,
    } = conversations;
    states.entry(conversation_id).or_insert_with(|| {
        events.push(NewEvent {
            conversation_id,
            kind: EventKind::Opened,
            actor: Actor::Contact(contact),
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
    })
}

/// What the message changes in its conversation: a customer writing makes it need attention
/// again (reopened, unread, waiting); a machine (an auto-reply) does not.
fn apply_message(
    conversation: &mut ConversationState,
    events: &mut Vec<NewEvent>,
    c: &ValidMessage,
    contact: ContactId,
) {
    let m = &c.message;
    let human = m.automated.is_none();
    let previous = conversation.status();
    if human && previous != ConversationStatus::Open {
        let kind = if previous == ConversationStatus::Resolved {
            EventKind::Reopened
        } else {
            EventKind::StatusChanged
        };
        events.push(NewEvent {
            conversation_id: conversation.id,
            kind,
            actor: Actor::Contact(contact),
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
        conversation.preview = super::preview(&m.body.text, m.body.html.as_deref());
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
}

/// The message's row.
fn message_row(
    c: &ValidMessage,
    contact: ContactId,
    conversation_id: ConversationId,
    reason: ThreadReason,
) -> NewMessage {
    let m = &c.message;
    // In a group the member who wrote is shown; the conversation's customer is the group.
    let sender = m.author.as_ref().unwrap_or(&m.from);
    NewMessage {
        id: m.id,
        conversation_id,
        channel_id: m.channel_id,
        external_id: Some(m.external_id.clone()),
        direction: Direction::Inbound,
        contact_id: Some(contact),
        agent_id: None,
        sender_handle: Some(sender.handle.trim().to_owned()),
        sender_name: sender.name.clone(),
        text: m.body.text.clone(),
        html: m.body.html.clone(),
        subject: m.thread.subject.clone(),
        in_reply_to: m.thread.in_reply_to.clone(),
        attachments: serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".to_owned()),
        raw_ref: m.raw.as_ref().map(|r| r.0.clone()),
        thread_reason: reason,
        sent_at: c.sent_at,
        claimed_sent_at: c.claimed_sent_at,
        received_at: to_millis(m.received_at),
        delivery_status: None,
        part_of: m.part_of.clone(),
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

/// The log row of a stored message: the rule that placed it, and whether a machine sent it (the
/// response-time metrics never count an automated message as the customer waiting).
fn received_data(reason: ThreadReason, automated: bool) -> serde_json::Value {
    let mut data = serde_json::json!({"thread_reason": reason.as_str()});
    if automated {
        data["automated"] = serde_json::Value::Bool(true);
    }
    data
}
