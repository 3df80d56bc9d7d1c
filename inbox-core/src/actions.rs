//! What agents do to conversations: reply, note, assign, change status, label. Each action is one
//! transaction that also writes its conversation-log event; a reply writes its outbox row in the
//! same transaction, so it is delivered exactly when it is stored.

use chrono::{DateTime, Utc};

use crate::envelope::{
    AttachmentRef, Body, DeliveryStatus, DomainEvent, OutboundMessage, Party, SCHEMA_VERSION,
    ThreadHints,
};
use crate::ids::{ConversationId, MessageId};
use crate::ingest::preview;
use crate::labels::{LABEL_RULE, Label};
use crate::model::Channel;
use crate::model::{
    Actor, Agent, ConversationStatus, Direction, EventKind, Message, ThreadReason, from_millis,
    to_millis,
};
use crate::store::{
    ConversationPatch, ConversationState, NewEvent, NewMessage, Store, StoreError, StoreResult,
};

/// Longest reply or note accepted.
const MAX_TEXT: usize = 100_000;
const MAX_LABELS: usize = 50;
/// Most attachments on one reply.
const MAX_ATTACHMENTS: usize = 20;

/// The result of an agent's reply or note.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub message: Message,
    /// For a reply: what the outbox relay will hand to the bus.
    pub outbound: Option<OutboundMessage>,
    /// What the change wrote to the event outbox (the event relay publishes it).
    pub domain_events: Vec<DomainEvent>,
}

/// Stores an agent's reply (delivered on the conversation's channel) or private note, with the
/// files it carries (already in blob storage; the caller checked they exist).
pub async fn post_message(
    store: &Store,
    conversation_id: ConversationId,
    agent: &Agent,
    text: &str,
    private: bool,
    attachments: &[AttachmentRef],
) -> StoreResult<Posted> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_TEXT {
        return Err(StoreError::Invalid {
            field: "text",
            message: format!("must be 1 to {MAX_TEXT} characters"),
        });
    }
    // PostgreSQL cannot store NUL in text; SQLite could, so refuse it on both alike.
    if text.contains('\0') {
        return Err(StoreError::Invalid {
            field: "text",
            message: "must not contain NUL characters".into(),
        });
    }
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(StoreError::Invalid {
            field: "attachments",
            message: format!("at most {MAX_ATTACHMENTS} files"),
        });
    }
    let attachments_json = serde_json::to_string(attachments).unwrap_or_else(|_| "[]".into());
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
        attachments: attachments_json,
        raw_ref: None,
        thread_reason: ThreadReason::Agent,
        sent_at: at,
        claimed_sent_at: None,
        received_at: at,
        delivery_status: (!private).then_some(DeliveryStatus::Queued),
        part_of: None,
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
        let outbound = outbound_of(
            &conversation,
            &channel,
            id,
            in_reply_to,
            Body {
                text: text.to_owned(),
                html: None,
            },
            attachments,
            Some(agent.name.clone()),
            now,
        );
        tx.insert_outbox(&outbound).await?;
        Some(outbound)
    };
    tx.update_conversation_by_agent(&conversation).await?;
    let domain_events = tx
        .insert_events(&[NewEvent {
            conversation_id,
            kind: if private {
                EventKind::Noted
            } else {
                EventKind::Replied
            },
            actor: Actor::Agent(agent.id),
            contact_id: Some(conversation.contact_id),
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
    Ok(Posted {
        message,
        outbound,
        domain_events,
    })
}

/// The outbound message of a reply on the conversation's channel, threaded under the customer's
/// last message.
#[allow(
    clippy::too_many_arguments,
    reason = "one reply's parts, each from elsewhere"
)]
pub(crate) fn outbound_of(
    conversation: &ConversationState,
    channel: &Channel,
    id: MessageId,
    in_reply_to: Option<String>,
    body: Body,
    attachments: &[AttachmentRef],
    author: Option<String>,
    now: DateTime<Utc>,
) -> OutboundMessage {
    OutboundMessage {
        schema_version: SCHEMA_VERSION,
        id,
        conversation_id: conversation.id,
        channel_id: channel.id,
        channel_kind: channel.kind,
        to: Party {
            handle: conversation.contact_handle.clone(),
            ..Party::default()
        },
        thread: ThreadHints {
            in_reply_to: in_reply_to.clone(),
            references: in_reply_to.into_iter().collect(),
            subject: conversation.subject.clone(),
            chat_id: None,
        },
        body,
        attachments: attachments.to_vec(),
        author,
        created_at: now,
    }
}

/// Applies an agent's change of status, assignee or labels; returns the events it wrote to the
/// event outbox (none when nothing changed).
pub async fn update_conversation(
    store: &Store,
    conversation_id: ConversationId,
    agent: &Agent,
    patch: &ConversationPatch,
) -> StoreResult<Vec<DomainEvent>> {
    update_conversation_with(store, conversation_id, agent, patch, None).await
}

/// [`update_conversation`]; a resolution on a channel with CSAT on also sends the customer a
/// survey link under `links` ([`crate::csat`]).
pub async fn update_conversation_with(
    store: &Store,
    conversation_id: ConversationId,
    agent: &Agent,
    patch: &ConversationPatch,
    links: Option<crate::csat::SurveyLinks<'_>>,
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
    let contact_id = Some(conversation.contact_id);
    let event = |kind: EventKind, data: serde_json::Value| NewEvent {
        conversation_id,
        kind,
        actor,
        contact_id,
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
    let resolved = events.iter().any(|e| e.kind == EventKind::Resolved);
    if let Some(links) = links.filter(|_| resolved) {
        let channel = tx
            .channels_by_ids(&[conversation.channel_id])
            .await?
            .pop()
            .ok_or(StoreError::NotFound("channel"))?;
        let asked = crate::csat::ask(
            &mut tx,
            &mut conversation,
            &channel,
            Some(agent.id),
            links,
            now,
        )
        .await?;
        events.extend(asked);
    }
    tx.update_conversation_by_agent(&conversation).await?;
    let written = tx.insert_events(&events).await?;
    tx.commit().await?;
    Ok(written)
}

/// Labels are parsed (trimmed, lower-cased), de-duplicated and sorted.
fn normalize_labels(labels: &[String]) -> StoreResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for raw in labels {
        let label = Label::parse(raw)
            .ok_or_else(|| StoreError::Invalid {
                field: "labels",
                message: format!("each label must be {LABEL_RULE}"),
            })?
            .into_string();
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
/// Returns the events written to the event outbox.
pub async fn wake_snoozed(store: &Store) -> StoreResult<Vec<DomainEvent>> {
    let now = Utc::now();
    let at = to_millis(now);
    let mut tx = store.begin().await?;
    let due = tx.due_snoozed(at).await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut events = Vec::with_capacity(due.len());
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
            contact_id: Some(conversation.contact_id),
            message_id: None,
            data: serde_json::json!({"from": "snoozed", "to": "open", "why": "snooze ended"}),
            at,
        });
    }
    let written = tx.insert_events(&events).await?;
    tx.commit().await?;
    Ok(written)
}

/// The advisory-lock key of an identity, as the ingest funnel takes it: a merge or unmerge
/// holding it makes a concurrent batch from that customer wait (and then see the result).
fn identity_lock_keys(identities: &[crate::model::Identity]) -> Vec<String> {
    identities
        .iter()
        .map(|i| format!("identity\0{}\0{}", i.namespace, i.handle))
        .collect()
}

/// Fills `kept` (absent or blank) with `absorbed`'s value, recording it.
fn fill_field(
    field: &str,
    kept: &mut Option<String>,
    absorbed: &Option<String>,
    filled: &mut Vec<crate::store::FilledField>,
) {
    let missing = kept.as_deref().is_none_or(|v| v.trim().is_empty());
    if let Some(value) = absorbed.as_deref().filter(|v| !v.trim().is_empty())
        && missing
    {
        filled.push(crate::store::FilledField {
            field: field.to_owned(),
            before: kept.clone(),
            after: value.to_owned(),
        });
        *kept = Some(value.to_owned());
    }
}

/// Merges contact `absorb` into `keep` (docs/threading.md, "Identity"): the absorbed contact's identities,
/// conversations and messages move to the kept one, which gets the absorbed one's name, email
/// and phone where it has none. Everything that moved is recorded, so [`unmerge_contacts`] can
/// put it back; the absorbed contact stays, pointing at the kept one. Each moved conversation's
/// log gets a `merged` row. Merging a contact into itself, or a contact that is merged already,
/// is `Invalid` naming the field (`absorb` or `keep`).
pub async fn merge_contacts(
    store: &Store,
    keep: crate::ids::ContactId,
    absorb: crate::ids::ContactId,
    agent: &Agent,
) -> StoreResult<crate::store::MergeId> {
    use crate::store::{ContactMerge, MergeId};

    if keep == absorb {
        return Err(StoreError::Invalid {
            field: "absorb",
            message: "cannot merge a contact into itself".into(),
        });
    }
    let at = to_millis(Utc::now());
    let mut tx = store.begin().await?;
    let contacts = tx.contacts_for_update(&[keep, absorb]).await?;
    let find = |id| {
        contacts
            .iter()
            .find(|c| c.contact.id == id)
            .cloned()
            .ok_or(StoreError::NotFound("contact"))
    };
    let (kept, absorbed) = (find(keep)?, find(absorb)?);
    if let Some(into) = absorbed.merged_into {
        return Err(StoreError::Invalid {
            field: "absorb",
            message: format!("contact {absorb} is merged into {into} already"),
        });
    }
    if let Some(into) = kept.merged_into {
        return Err(StoreError::Invalid {
            field: "keep",
            message: format!("contact {keep} is merged into {into}"),
        });
    }
    // Lock the absorbed contact's identities, then read them again under the locks (a batch
    // that was storing a new one has committed by then).
    let mut identities = tx.identities_of(absorb).await?;
    for _ in 0..3 {
        tx.lock_keys(&identity_lock_keys(&identities)).await?;
        let again = tx.identities_of(absorb).await?;
        let settled = again.iter().all(|i| identities.contains(i));
        identities = again;
        if settled {
            break;
        }
    }
    let conversations = tx.conversation_ids_of(absorb).await?;
    let mut fields = kept.contact.clone();
    let mut filled = Vec::new();
    for (field, value, from) in [
        ("name", &mut fields.name, &absorbed.contact.name),
        ("email", &mut fields.email, &absorbed.contact.email),
        ("phone", &mut fields.phone, &absorbed.contact.phone),
    ] {
        fill_field(field, value, from, &mut filled);
    }
    let merge = ContactMerge {
        id: MergeId::new(),
        kept_id: keep,
        absorbed_id: absorb,
        moved_identities: identities,
        moved_conversations: conversations,
        moved_messages: 0,
        filled_fields: filled,
        seq_at_merge: tx.max_ingest_seq().await?,
        merged_by: Some(agent.id),
        merged_at: from_millis(at),
        undone_by: None,
        undone_at: None,
    };
    let moved_messages = tx.apply_contact_merge(&merge).await?;
    if !merge.filled_fields.is_empty() {
        tx.set_contact_fields(&fields).await?;
    }
    tx.set_merged_into(absorb, Some(keep)).await?;
    tx.insert_agent_events(
        &merge.moved_conversations,
        "merged",
        agent.id,
        keep,
        &serde_json::json!({
            "merge_id": merge.id,
            "kept": keep,
            "absorbed": absorb,
            "moved_messages": moved_messages,
        }),
        at,
    )
    .await?;
    tx.commit().await?;
    Ok(merge.id)
}

/// Undoes a merge: what moved goes back to the absorbed contact (identities, conversations,
/// messages), and so does what arrived from its identities while merged (conversations they
/// opened and messages they sent); the kept contact's fields the merge filled are emptied again
/// unless changed since, and the absorbed contact stands on its own again. Each conversation
/// that went back gets an `unmerged` log row. An unknown merge is `NotFound`; one undone
/// already, or whose kept contact has since been merged into another (unmerge that first), is
/// `Invalid` naming `merge`.
pub async fn unmerge_contacts(
    store: &Store,
    merge_id: crate::store::MergeId,
    agent: &Agent,
) -> StoreResult<()> {
    let at = to_millis(Utc::now());
    let mut tx = store.begin().await?;
    let merge = tx
        .contact_merge_for_update(merge_id)
        .await?
        .ok_or(StoreError::NotFound("contact merge"))?;
    if merge.undone_at.is_some() {
        return Err(StoreError::Invalid {
            field: "merge",
            message: format!("merge {merge_id} was undone already"),
        });
    }
    let contacts = tx
        .contacts_for_update(&[merge.kept_id, merge.absorbed_id])
        .await?;
    let find = |id| {
        contacts
            .iter()
            .find(|c| c.contact.id == id)
            .cloned()
            .ok_or(StoreError::NotFound("contact"))
    };
    let (kept, absorbed) = (find(merge.kept_id)?, find(merge.absorbed_id)?);
    if let Some(into) = kept.merged_into {
        return Err(StoreError::Invalid {
            field: "merge",
            message: format!(
                "contact {} has since been merged into {into}: unmerge that first",
                merge.kept_id
            ),
        });
    }
    if absorbed.merged_into != Some(merge.kept_id) {
        return Err(StoreError::Invalid {
            field: "merge",
            message: format!(
                "contact {} is not merged into {}",
                merge.absorbed_id, merge.kept_id
            ),
        });
    }
    tx.lock_keys(&identity_lock_keys(&merge.moved_identities))
        .await?;
    let mut fields = kept.contact.clone();
    let mut restored = false;
    for filled in &merge.filled_fields {
        let value = match filled.field.as_str() {
            "name" => &mut fields.name,
            "email" => &mut fields.email,
            "phone" => &mut fields.phone,
            _ => continue,
        };
        if value.as_deref() == Some(filled.after.as_str()) {
            *value = filled.before.clone();
            restored = true;
        }
    }
    if restored {
        tx.set_contact_fields(&fields).await?;
    }
    let back = tx.revert_contact_merge(&merge, agent.id, at).await?;
    tx.set_merged_into(merge.absorbed_id, None).await?;
    tx.insert_agent_events(
        &back,
        "unmerged",
        agent.id,
        merge.absorbed_id,
        &serde_json::json!({
            "merge_id": merge.id,
            "kept": merge.kept_id,
            "absorbed": merge.absorbed_id,
        }),
        at,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
