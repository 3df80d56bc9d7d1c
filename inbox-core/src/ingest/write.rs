//! Step 4 of the funnel (write): the plan goes to the store in one multi-row statement per
//! table, in the batch's transaction; bounced replies are marked failed.

use chrono::Utc;

use super::contacts::ResolvedContacts;
use super::delivery_log_row;
use super::place::{Edit, PartJoin, Placed, Plan};
use crate::envelope::{DeliveryReport, DeliveryStatus, DomainEvent};
use crate::model::{Actor, EventKind};
use crate::store::{EditedContent, NewEvent, PartContent, StoreResult, StoreTx};

/// Writes the batch; returns the domain events it logged.
pub(super) async fn write(
    tx: &mut StoreTx,
    contacts: &ResolvedContacts,
    plan: &Plan,
) -> StoreResult<Vec<DomainEvent>> {
    tx.insert_contacts(&contacts.new_contacts).await?;
    tx.insert_identities(&contacts.new_identities).await?;
    tx.upsert_conversations(&plan.touched).await?;
    tx.insert_messages(&plan.rows).await?;
    let mut domain_events = tx.insert_events(&plan.events).await?;
    let mut bounce_rows = Vec::new();
    for (_, placed) in &plan.placed {
        let Placed::Bounce(bounce) = placed else {
            continue;
        };
        let report = DeliveryReport {
            message_id: bounce.message_id,
            conversation_id: bounce.conversation_id,
            channel_id: bounce.channel_id,
            status: DeliveryStatus::Failed,
            external_id: None,
            error: Some(bounce.error.clone()),
            attempts: 1,
            at: Utc::now(),
        };
        if tx.apply_delivery(&report).await? {
            bounce_rows.push(delivery_log_row(&report, None));
        }
    }
    domain_events.extend(tx.insert_events(&bounce_rows).await?);
    domain_events.extend(write_parts(tx, &plan.parts).await?);
    domain_events.extend(write_edits(tx, &plan.edits).await?);
    Ok(domain_events)
}

/// The batch's later parts, each logged with how many attachments it added.
async fn write_parts(tx: &mut StoreTx, parts: &[PartJoin]) -> StoreResult<Vec<DomainEvent>> {
    let mut rows = Vec::new();
    for part in parts {
        let content = PartContent {
            text: &part.text,
            html: part.html.as_deref(),
            attachments: &part.attachments,
        };
        if let Some(added) = tx.join_part(part.message_id, &content).await? {
            rows.push(NewEvent {
                conversation_id: part.conversation_id,
                kind: EventKind::MessagePartAdded,
                actor: Actor::Contact(part.contact),
                contact_id: Some(part.contact),
                message_id: Some(part.message_id),
                data: serde_json::json!({"attachments_added": added}),
                at: part.at,
            });
        }
    }
    tx.insert_events(&rows).await
}

/// The batch's edits, each logged with the text it replaced.
async fn write_edits(tx: &mut StoreTx, edits: &[Edit]) -> StoreResult<Vec<DomainEvent>> {
    let mut rows = Vec::new();
    for edit in edits {
        if edit.stored_now {
            tx.mark_edited(edit.message_id, edit.edited_at).await?;
            continue;
        }
        let content = EditedContent {
            text: &edit.text,
            html: edit.html.as_deref(),
            attachments: &edit.attachments,
            edited_at: edit.edited_at,
            adds_attachments: edit.adds_attachments,
        };
        if let Some(previous) = tx.apply_edit(edit.message_id, &content).await? {
            rows.push(NewEvent {
                conversation_id: edit.conversation_id,
                kind: EventKind::MessageEdited,
                actor: Actor::Contact(edit.contact),
                contact_id: Some(edit.contact),
                message_id: Some(edit.message_id),
                data: serde_json::json!({"previous_text": previous}),
                at: edit.edited_at,
            });
        }
    }
    tx.insert_events(&rows).await
}
