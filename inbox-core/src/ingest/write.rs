//! Step 4 of the funnel (write): the plan goes to the store in one multi-row statement per
//! table, in the batch's transaction; bounced replies are marked failed.

use chrono::Utc;

use super::contacts::ResolvedContacts;
use super::delivery_log_row;
use super::place::{Placed, Plan};
use crate::envelope::{DeliveryReport, DeliveryStatus, DomainEvent};
use crate::store::{StoreResult, StoreTx};

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
    Ok(domain_events)
}
