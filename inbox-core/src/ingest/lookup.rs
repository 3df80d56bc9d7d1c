//! Step 1 of the funnel (load): what the batch touches is locked, then everything it needs is
//! looked up at once — known external ids and identities first, the candidate conversations once
//! the contacts are known.

use std::collections::HashMap;

use super::dedup;
use super::reply_references;
use super::validate::ValidMessage;
use crate::envelope::Automated;
use crate::identity::email_identity;
use crate::ids::{ChannelId, ContactId, ConversationId, MessageId};
use crate::model::Identity;
use crate::store::{ConversationState, KnownExternalId, StoreResult, StoreTx};

/// Stored messages by (channel, external id): the batch's own (duplicates), those it replies to,
/// and the replies its bounces are about.
pub(super) type KnownIds = HashMap<(ChannelId, String), KnownExternalId>;

/// The stored messages that parts of the batch belong to, by channel and `part_of` key.
pub(super) type KnownParts = HashMap<(ChannelId, String), (MessageId, ConversationId)>;

/// What the batch found before any contact is resolved.
pub(super) struct Found {
    pub known: KnownIds,
    pub parts: KnownParts,
    /// Identities of the batch's senders (and their verified emails) that have a contact.
    pub identities: HashMap<Identity, ContactId>,
}

/// The conversations a message may join, and how to find them.
pub(super) struct Conversations {
    pub states: HashMap<ConversationId, ConversationState>,
    /// Rule 4: the contact's latest conversation on a channel.
    pub latest: HashMap<(ContactId, ChannelId), ConversationId>,
    /// Rule 3: the contact's latest conversation on a channel with a normalized subject.
    pub subjects: HashMap<(ContactId, ChannelId, String), ConversationId>,
}

/// Every identity the batch's messages name: the sender's, and their verified email's.
fn identity_keys(messages: &[ValidMessage]) -> Vec<Identity> {
    let mut keys = Vec::new();
    for c in messages {
        keys.push(c.identity.clone());
        if let Some(email) = &c.verified_email {
            keys.push(email_identity(email));
        }
    }
    dedup(&mut keys);
    keys
}

/// Every external id the batch mentions: its own (duplicates) and those it refers to.
/// The `part_of` keys of the batch's messages, each once.
fn part_keys(messages: &[ValidMessage]) -> Vec<(ChannelId, String)> {
    let mut keys: Vec<(ChannelId, String)> = messages
        .iter()
        .filter_map(|c| Some((c.message.channel_id, c.message.part_of.clone()?)))
        .collect();
    dedup(&mut keys);
    keys
}

fn external_keys(messages: &[ValidMessage]) -> Vec<(ChannelId, String)> {
    let mut keys = Vec::new();
    for c in messages {
        let m = &c.message;
        keys.push((m.channel_id, m.external_id.clone()));
        for reference in reply_references(m) {
            keys.push((m.channel_id, reference.to_owned()));
        }
        if let Some(Automated::Bounce {
            original: Some(original),
            ..
        }) = &m.automated
        {
            keys.push((m.channel_id, original.clone()));
        }
    }
    dedup(&mut keys);
    keys
}

/// Locks the batch's customers and messages, then reads its known ids and identities.
pub(super) async fn lock_and_load(
    tx: &mut StoreTx,
    messages: &[ValidMessage],
) -> StoreResult<Found> {
    let identities = identity_keys(messages);
    let part_keys = part_keys(messages);
    // Concurrent batches touching the same customer or the same message (a replay during a
    // bus rebalance) wait for each other here, before anything is looked up, so the later one
    // sees what the earlier one committed instead of creating a second contact, conversation
    // or phantom message.
    let lock_keys: Vec<String> = identities
        .iter()
        .map(|i| format!("identity\0{}\0{}", i.namespace, i.handle))
        .chain(messages.iter().map(|c| {
            format!(
                "message\0{}\0{}",
                c.message.channel_id, c.message.external_id
            )
        }))
        .chain(
            part_keys
                .iter()
                .map(|(channel, key)| format!("part\0{channel}\0{key}")),
        )
        .collect();
    tx.lock_keys(&lock_keys).await?;
    let known = tx
        .messages_by_external_ids(&external_keys(messages))
        .await?;
    let parts = tx.messages_by_part_keys(&part_keys).await?;
    let identities = tx.identities(&identities).await?;
    Ok(Found {
        known,
        parts,
        identities,
    })
}

/// The candidate conversations of the batch: each contact's latest on the channel, those with
/// the same subject, and the targets of replies and reply tokens.
pub(super) async fn load_conversations(
    tx: &mut StoreTx,
    messages: &[ValidMessage],
    contact_of: &[ContactId],
    known: &KnownIds,
) -> StoreResult<Conversations> {
    let mut pairs: Vec<(ContactId, ChannelId)> = messages
        .iter()
        .zip(contact_of)
        .map(|(c, contact)| (*contact, c.message.channel_id))
        .collect();
    dedup(&mut pairs);
    let mut states: HashMap<ConversationId, ConversationState> = HashMap::new();
    let mut latest = HashMap::new();
    for state in tx.latest_conversations(&pairs).await? {
        latest.insert((state.contact_id, state.channel_id), state.id);
        states.insert(state.id, state);
    }
    let mut subjects = HashMap::new();
    let mut subject_keys: Vec<(ContactId, ChannelId, String)> = messages
        .iter()
        .zip(contact_of)
        .filter_map(|(c, contact)| Some((*contact, c.message.channel_id, c.subject_key.clone()?)))
        .collect();
    dedup(&mut subject_keys);
    for state in tx.subject_conversations(&subject_keys).await? {
        if let Some(key) = &state.subject_key {
            subjects.insert((state.contact_id, state.channel_id, key.clone()), state.id);
        }
        states.insert(state.id, state);
    }
    let mut targets: Vec<ConversationId> = known
        .values()
        .filter_map(KnownExternalId::conversation)
        .chain(messages.iter().filter_map(|c| c.token))
        .filter(|id| !states.contains_key(id))
        .collect();
    dedup(&mut targets);
    for state in tx.conversations_by_ids(&targets).await? {
        states.insert(state.id, state);
    }
    Ok(Conversations {
        states,
        latest,
        subjects,
    })
}
