//! The ingest funnel's transaction: the bulk lookups (locked where the funnel updates) and bulk
//! writes of one batch. Crate-private: nothing else writes these rows in bulk (benches and tests
//! seed through [`super::test_support`]).

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::contacts::{NewContact, NewIdentity};
use super::conversations::{CONVERSATION_COLUMNS, ConversationState};
use super::messages::NewMessage;
use super::{CHUNK, RowLock, StoreResult, StoreTx, on_tx};
use crate::envelope::DeliveryStatus;
use crate::ids::{ChannelId, ContactId, ConversationId, MessageId};
use crate::model::{Direction, Identity};

/// The messages stored under one (channel, external id): at most one per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownExternalId {
    /// The customer's message with this id: a second one is a duplicate (or an edit of it).
    pub inbound: Option<(MessageId, ConversationId)>,
    /// When that message was last edited (epoch ms): an edit no later than this changes nothing.
    pub inbound_edited_at: Option<i64>,
    /// Our delivered reply the channel gave this id: a customer may answer it.
    pub outbound: Option<(MessageId, ConversationId)>,
}

impl KnownExternalId {
    /// The conversation a reply referencing this id belongs to.
    pub fn conversation(&self) -> Option<ConversationId> {
        self.inbound.or(self.outbound).map(|(_, c)| c)
    }
}

impl StoreTx {
    /// Stored messages among `keys` (channel, external id), by direction.
    pub(crate) async fn messages_by_external_ids(
        &mut self,
        keys: &[(ChannelId, String)],
    ) -> StoreResult<HashMap<(ChannelId, String), KnownExternalId>> {
        let mut found: HashMap<(ChannelId, String), KnownExternalId> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                // A join against VALUES lets SQLite search the unique index per key; a row-value
                // IN list with several rows makes it scan the table.
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT m.channel_id, m.external_id, m.direction, m.id, m.conversation_id, m.edited_at FROM (",
                );
                qb.push_values(chunk, |mut row, (channel, external)| {
                    row.push_bind(*channel).push_bind(external.clone());
                });
                qb.push(
                    ") AS k JOIN messages m ON m.channel_id = k.column1 AND m.external_id = k.column2",
                );
                qb.build_query_as::<(ChannelId, String, String, MessageId, ConversationId, Option<i64>)>()
                    .fetch_all(&mut *conn)
                    .await
            })?;
            for (channel, external, direction, message, conversation, edited_at) in rows {
                let known = found.entry((channel, external)).or_default();
                if direction == Direction::Inbound.as_str() {
                    known.inbound = Some((message, conversation));
                    known.inbound_edited_at = edited_at;
                } else {
                    known.outbound = Some((message, conversation));
                }
            }
        }
        Ok(found)
    }

    /// The customers' messages that have one of the `part_of` keys (channel, key).
    pub(crate) async fn messages_by_part_keys(
        &mut self,
        keys: &[(ChannelId, String)],
    ) -> StoreResult<HashMap<(ChannelId, String), (MessageId, ConversationId)>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT m.channel_id, m.part_of, m.id, m.conversation_id FROM (",
                );
                qb.push_values(chunk, |mut row, (channel, key)| {
                    row.push_bind(*channel).push_bind(key.clone());
                });
                qb.push(
                    ") AS k JOIN messages m ON m.channel_id = k.column1 AND m.part_of = k.column2
                     WHERE m.direction = 'inbound'",
                );
                qb.build_query_as::<(ChannelId, String, MessageId, ConversationId)>()
                    .fetch_all(&mut *conn)
                    .await
            })?;
            for (channel, key, message, conversation) in rows {
                found.insert((channel, key), (message, conversation));
            }
        }
        Ok(found)
    }

    /// Contacts of the identities among `keys`.
    pub(crate) async fn identities(
        &mut self,
        keys: &[Identity],
    ) -> StoreResult<HashMap<Identity, ContactId>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new("SELECT i.namespace, i.handle, i.contact_id FROM (");
                qb.push_values(chunk, |mut row, identity| {
                    row.push_bind(identity.namespace.clone())
                        .push_bind(identity.handle.clone());
                });
                qb.push(
                    ") AS k JOIN contact_identities i
                       ON i.namespace = k.column1 AND i.handle = k.column2",
                );
                qb.build_query_as::<(String, String, ContactId)>()
                    .fetch_all(&mut *conn)
                    .await
            })?;
            for (namespace, handle, contact) in rows {
                found.insert(Identity { namespace, handle }, contact);
            }
        }
        Ok(found)
    }

    /// The most recently opened conversation of each (contact, channel) pair, locked for update.
    pub(crate) async fn latest_conversations(
        &mut self,
        pairs: &[(ContactId, ChannelId)],
    ) -> StoreResult<Vec<ConversationState>> {
        let mut found = Vec::new();
        let lock = self.row_lock(RowLock::Update);
        for chunk in pairs.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(format!("SELECT {CONVERSATION_COLUMNS} FROM ("));
                qb.push_values(chunk, |mut row, (contact, channel)| {
                    row.push_bind(*contact).push_bind(*channel);
                });
                qb.push(
                    ") AS k JOIN conversations c ON c.contact_id = k.column1 AND c.channel_id = k.column2
                     WHERE NOT EXISTS (SELECT 1 FROM conversations n
                        WHERE n.contact_id = c.contact_id AND n.channel_id = c.channel_id
                          AND (n.created_at > c.created_at
                               OR (n.created_at = c.created_at AND n.id > c.id)))",
                );
                qb.push(lock);
                qb.build_query_as::<ConversationState>().fetch_all(&mut *conn).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// The most recently opened conversation per (contact, channel, normalized subject), locked.
    pub(crate) async fn subject_conversations(
        &mut self,
        keys: &[(ContactId, ChannelId, String)],
    ) -> StoreResult<Vec<ConversationState>> {
        let mut found = Vec::new();
        let lock = self.row_lock(RowLock::Update);
        for chunk in keys.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(format!("SELECT {CONVERSATION_COLUMNS} FROM ("));
                qb.push_values(chunk, |mut row, (contact, channel, key)| {
                    row.push_bind(*contact).push_bind(*channel).push_bind(key.clone());
                });
                qb.push(
                    ") AS k JOIN conversations c ON c.contact_id = k.column1
                        AND c.channel_id = k.column2 AND c.subject_key = k.column3
                     WHERE NOT EXISTS (SELECT 1 FROM conversations n
                        WHERE n.contact_id = c.contact_id AND n.channel_id = c.channel_id
                          AND n.subject_key = c.subject_key
                          AND (n.created_at > c.created_at
                               OR (n.created_at = c.created_at AND n.id > c.id)))",
                );
                qb.push(lock);
                qb.build_query_as::<ConversationState>().fetch_all(&mut *conn).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Conversations by id, locked for update.
    pub(crate) async fn conversations_by_ids(
        &mut self,
        ids: &[ConversationId],
    ) -> StoreResult<Vec<ConversationState>> {
        let mut found = Vec::new();
        let lock = self.row_lock(RowLock::Update);
        for chunk in ids.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id IN ("
                ));
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.push(lock);
                qb.build_query_as::<ConversationState>().fetch_all(&mut *conn).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }

    pub(crate) async fn insert_contacts(&mut self, contacts: &[NewContact]) -> StoreResult<()> {
        for chunk in contacts.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO contacts (id, name, email, phone, created_at) ",
                );
                qb.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id)
                        .push_bind(c.name.clone())
                        .push_bind(c.email.clone())
                        .push_bind(c.phone.clone())
                        .push_bind(c.created_at);
                });
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    pub(crate) async fn insert_identities(
        &mut self,
        identities: &[NewIdentity],
    ) -> StoreResult<()> {
        for chunk in identities.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO contact_identities (namespace, handle, contact_id, created_at) ",
                );
                qb.push_values(chunk, |mut row, i| {
                    row.push_bind(i.namespace.clone())
                        .push_bind(i.handle.clone())
                        .push_bind(i.contact_id)
                        .push_bind(i.created_at);
                });
                qb.push(" ON CONFLICT (namespace, handle) DO NOTHING");
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Inserts new conversations and writes the funnel-owned fields of existing ones.
    pub(crate) async fn upsert_conversations(
        &mut self,
        conversations: &[ConversationState],
    ) -> StoreResult<()> {
        for chunk in conversations.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO conversations (id, channel_id, contact_id, contact_handle, status,
                         assignee_id, subject, labels, preview, message_count, unread_count,
                         created_at, last_message_at, waiting_since, snoozed_until, resolved_at,
                         subject_key) ",
                );
                qb.push_values(chunk, |mut row, c| {
                    row.push_bind(c.id)
                        .push_bind(c.channel_id)
                        .push_bind(c.contact_id)
                        .push_bind(c.contact_handle.clone())
                        .push_bind(c.status.clone())
                        .push_bind(c.assignee_id)
                        .push_bind(c.subject.clone())
                        .push_bind(c.labels.clone())
                        .push_bind(c.preview.clone())
                        .push_bind(c.message_count)
                        .push_bind(c.unread_count)
                        .push_bind(c.created_at)
                        .push_bind(c.last_message_at)
                        .push_bind(c.waiting_since)
                        .push_bind(c.snoozed_until)
                        .push_bind(c.resolved_at)
                        .push_bind(c.subject_key.clone());
                });
                qb.push(
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                        preview = excluded.preview, message_count = excluded.message_count,
                        unread_count = excluded.unread_count,
                        last_message_at = excluded.last_message_at,
                        waiting_since = excluded.waiting_since,
                        snoozed_until = excluded.snoozed_until, resolved_at = excluded.resolved_at",
                );
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Inserts messages; one already stored under the same (channel, external id) is skipped.
    /// Returns how many were inserted.
    pub(crate) async fn insert_messages(&mut self, messages: &[NewMessage]) -> StoreResult<u64> {
        let mut inserted = 0;
        for chunk in messages.chunks(CHUNK) {
            let done = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO messages (id, conversation_id, channel_id, external_id, direction,
                         contact_id, agent_id, sender_handle, sender_name, text, html, subject,
                         in_reply_to, attachments, raw_ref, thread_reason, sent_at,
                         claimed_sent_at, received_at, delivery_status, part_of) ",
                );
                qb.push_values(chunk, |mut row, m| {
                    row.push_bind(m.id)
                        .push_bind(m.conversation_id)
                        .push_bind(m.channel_id)
                        .push_bind(m.external_id.clone())
                        .push_bind(m.direction.as_str())
                        .push_bind(m.contact_id)
                        .push_bind(m.agent_id)
                        .push_bind(m.sender_handle.clone())
                        .push_bind(m.sender_name.clone())
                        .push_bind(m.text.clone())
                        .push_bind(m.html.clone())
                        .push_bind(m.subject.clone())
                        .push_bind(m.in_reply_to.clone())
                        .push_bind(m.attachments.clone())
                        .push_bind(m.raw_ref.clone())
                        .push_bind(m.thread_reason.as_str())
                        .push_bind(m.sent_at)
                        .push_bind(m.claimed_sent_at)
                        .push_bind(m.received_at)
                        .push_bind(m.delivery_status.map(DeliveryStatus::as_str))
                        .push_bind(m.part_of.clone());
                });
                qb.push(" ON CONFLICT (channel_id, external_id, direction) DO NOTHING");
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
            inserted += done;
        }
        Ok(inserted)
    }
}
