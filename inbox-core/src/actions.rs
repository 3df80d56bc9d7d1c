//! What agents do to conversations: reply, note, assign, change status, label. Each action is one
//! transaction that also writes its conversation-log event; a reply writes its outbox row in the
//! same transaction, so it is delivered exactly when it is stored.

use chrono::{DateTime, Utc};

use crate::envelope::{
    Body, DeliveryStatus, DomainEvent, DomainEventKind, OutboundMessage, Party, SCHEMA_VERSION,
    ThreadHints,
};
use crate::ids::{ConversationId, MessageId};
use crate::ingest::preview;
use crate::model::{
    Actor, Agent, ConversationStatus, Direction, EventKind, Message, ThreadReason, from_millis,
    to_millis,
};
use crate::store::{ConversationPatch, NewEvent, NewMessage, Store, StoreError, StoreResult};

/// Longest reply or note accepted.
const MAX_TEXT: usize = 100_000;
const MAX_LABELS: usize = 50;
const MAX_LABEL_CHARS: usize = 50;

/// The result of an agent's reply or note.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub message: Message,
    /// For a reply: what the outbox relay will hand to the bus.
    pub outbound: Option<OutboundMessage>,
    pub domain_events: Vec<DomainEvent>,
}

/// Stores an agent's reply (delivered on the conversation's channel) or private note.
pub async fn post_message(
    store: &Store,
    conversation_id: ConversationId,
    agent: &Agent,
    text: &str,
    private: bool,
) -> StoreResult<Posted> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_TEXT {
        return Err(StoreError::Invalid {
            field: "text",
            message: format!("must be 1 to {MAX_TEXT} characters"),
        });
    }
    let now: DateTime<Utc> = Utc::now();
    let at = to_millis(now);
    let mut tx = store.begin().await?;
    let mut conversation = tx
        .conversations_by_ids(&[conversation_id])
        .await?
        .pop()
        .ok_or(StoreError::NotFound("conversation"))?;
    let channel = tx
        .channels_by_ids(&[conversation.channel_id])
        .await?
        .pop()
        .ok_or(StoreError::NotFound("channel"))?;
    let id = MessageId::new();
    let direction = if private {
        Direction::Note
    } else {
        Direction::Outbound
    };
    let last_inbound = tx.last_inbound(conversation_id).await?;
    let subject = conversation.subject.clone();
    let row = NewMessage {
        id,
        conversation_id,
        channel_id: conversation.channel_id,
        external_id: None,
        direction,
        contact_id: None,
        agent_id: Some(agent.id),
        sender_handle: None,
        sender_name: Some(agent.name.clone()),
        text: text.to_owned(),
        html: None,
        subject: subject.clone(),
        in_reply_to: None,
        attachments: "[]".to_owned(),
        raw_ref: None,
        thread_reason: ThreadReason::Agent,
        sent_at: at,
        received_at: at,
        delivery_status: (!private).then_some(DeliveryStatus::Queued),
    };
    tx.insert_messages(std::slice::from_ref(&row)).await?;

    conversation.message_count += 1;
    conversation.last_message_at = conversation.last_message_at.max(at);
    conversation.preview = preview(text, None);
    let outbound = if private {
        None
    } else {
        // A human answer ends the customer's wait and marks the thread read.
        conversation.waiting_since = None;
        conversation.unread_count = 0;
        let (in_reply_to, _, _) = last_inbound.unwrap_or_default();
        let outbound = OutboundMessage {
            schema_version: SCHEMA_VERSION,
            id,
            conversation_id,
            channel_id: channel.id,
            channel_kind: channel.kind,
            to: Party {
                handle: conversation.contact_handle.clone(),
                ..Party::default()
            },
            thread: ThreadHints {
                in_reply_to: in_reply_to.clone(),
                references: in_reply_to.into_iter().collect(),
                subject,
                chat_id: None,
            },
            body: Body {
                text: text.to_owned(),
                html: None,
            },
            attachments: Vec::new(),
            author: Some(agent.name.clone()),
            created_at: now,
        };
        tx.insert_outbox(&outbound).await?;
        Some(outbound)
    };
    tx.update_conversation_by_agent(&conversation).await?;
    tx.insert_events(&[NewEvent {
        conversation_id,
        kind: if private {
            EventKind::Noted
        } else {
            EventKind::Replied
        },
        actor: Actor::Agent(agent.id),
        message_id: Some(id),
        data: serde_json::json!({}),
        at,
    }])
    .await?;
    tx.commit().await?;

    let message = store
        .message(id)
        .await?
        .ok_or(StoreError::NotFound("message"))?;
    let kind = if private {
        DomainEventKind::NoteAdded
    } else {
        DomainEventKind::MessageSent
    };
    Ok(Posted {
        message,
        outbound,
        domain_events: vec![DomainEvent {
            message_id: Some(id),
            contact_id: Some(conversation.contact_id),
            ..DomainEvent::new(kind, conversation_id, now)
        }],
    })
}

/// Applies an agent's change of status, assignee or labels; returns the events to publish.
pub async fn update_conversation(
    store: &Store,
    conversation_id: ConversationId,
    agent: &Agent,
    patch: &ConversationPatch,
) -> StoreResult<Vec<DomainEvent>> {
    let now = Utc::now();
    let at = to_millis(now);
    let mut tx = store.begin().await?;
    let mut conversation = tx
        .conversations_by_ids(&[conversation_id])
        .await?
        .pop()
        .ok_or(StoreError::NotFound("conversation"))?;
    let actor = Actor::Agent(agent.id);
    let mut events = Vec::new();
    let event = |kind: EventKind, data: serde_json::Value| NewEvent {
        conversation_id,
        kind,
        actor,
        message_id: None,
        data,
        at,
    };

    if let Some(status) = patch.status {
        let previous = conversation.status();
        if status == ConversationStatus::Snoozed {
            let until = patch.snoozed_until.ok_or(StoreError::Invalid {
                field: "snoozed_until",
                message: "required when status is snoozed".into(),
            })?;
            if until <= now {
                return Err(StoreError::Invalid {
                    field: "snoozed_until",
                    message: "must be in the future".into(),
                });
            }
            conversation.snoozed_until = Some(to_millis(until));
        } else {
            conversation.snoozed_until = None;
        }
        if status != previous || status == ConversationStatus::Snoozed {
            conversation.set_status(status);
            conversation.resolved_at = (status == ConversationStatus::Resolved).then_some(at);
            if status == ConversationStatus::Resolved {
                conversation.waiting_since = None;
            }
            let kind = match status {
                ConversationStatus::Resolved => EventKind::Resolved,
                ConversationStatus::Snoozed => EventKind::Snoozed,
                ConversationStatus::Open if previous == ConversationStatus::Resolved => {
                    EventKind::Reopened
                }
                _ => EventKind::StatusChanged,
            };
            events.push(event(
                kind,
                serde_json::json!({
                    "from": previous.as_str(),
                    "to": status.as_str(),
                    "snoozed_until": conversation.snoozed_until.map(from_millis),
                }),
            ));
        }
    }
    if let Some(assignee) = patch.assignee
        && assignee != conversation.assignee_id
    {
        if let Some(id) = assignee
            && !tx.agent_exists(id).await?
        {
            return Err(StoreError::Invalid {
                field: "assignee",
                message: format!("no agent {id}"),
            });
        }
        conversation.assignee_id = assignee;
        events.push(match assignee {
            Some(id) => event(EventKind::Assigned, serde_json::json!({"assignee": id})),
            None => event(EventKind::Unassigned, serde_json::json!({})),
        });
    }
    if let Some(labels) = &patch.labels {
        let labels = normalize_labels(labels)?;
        let json = serde_json::to_string(&labels).unwrap_or_else(|_| "[]".into());
        if json != conversation.labels {
            conversation.labels = json;
            events.push(event(
                EventKind::Labeled,
                serde_json::json!({"labels": labels}),
            ));
        }
    }
    if events.is_empty() {
        return Ok(Vec::new());
    }
    tx.update_conversation_by_agent(&conversation).await?;
    tx.insert_events(&events).await?;
    tx.commit().await?;
    Ok(vec![DomainEvent::new(
        DomainEventKind::ConversationUpdated,
        conversation_id,
        now,
    )])
}

/// Labels are trimmed, lower-cased, de-duplicated and sorted.
fn normalize_labels(labels: &[String]) -> StoreResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        let label = label.trim().to_lowercase();
        if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
            return Err(StoreError::Invalid {
                field: "labels",
                message: format!("each label must be 1 to {MAX_LABEL_CHARS} characters"),
            });
        }
        if !out.contains(&label) {
            out.push(label);
        }
    }
    if out.len() > MAX_LABELS {
        return Err(StoreError::Invalid {
            field: "labels",
            message: format!("at most {MAX_LABELS} labels"),
        });
    }
    out.sort();
    Ok(out)
}

/// Snoozed conversations whose time has come are open again (one event each, actor system).
/// Returns the events to publish.
pub async fn wake_snoozed(store: &Store) -> StoreResult<Vec<DomainEvent>> {
    let now = Utc::now();
    let at = to_millis(now);
    let mut tx = store.begin().await?;
    let due = tx.due_snoozed(at).await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut events = Vec::with_capacity(due.len());
    let mut domain = Vec::with_capacity(due.len());
    for mut conversation in tx.conversations_by_ids(&due).await? {
        if conversation.status() != ConversationStatus::Snoozed {
            continue;
        }
        conversation.set_status(ConversationStatus::Open);
        conversation.snoozed_until = None;
        tx.update_conversation_by_agent(&conversation).await?;
        events.push(NewEvent {
            conversation_id: conversation.id,
            kind: EventKind::StatusChanged,
            actor: Actor::System,
            message_id: None,
            data: serde_json::json!({"from": "snoozed", "to": "open", "why": "snooze ended"}),
            at,
        });
        domain.push(DomainEvent::new(
            DomainEventKind::ConversationUpdated,
            conversation.id,
            now,
        ));
    }
    tx.insert_events(&events).await?;
    tx.commit().await?;
    Ok(domain)
}
