//! Messages: a conversation's or a contact's history in pages, one message, and what replies
//! and delivery reports write.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow, QueryBuilder};
use utoipa::ToSchema;

use super::paging::{PageCursor, page};
use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::envelope::{AttachmentRef, DeliveryReport, DeliveryStatus};
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId, MessageId};
use crate::model::{Direction, Message, MessageRevision, ThreadReason, from_millis, to_millis};

const MESSAGE_COLUMNS: &str = "id, ingest_seq, conversation_id, channel_id, external_id, direction, \
     contact_id, agent_id, sender_handle, sender_name, text, html, subject, in_reply_to, attachments, \
     thread_reason, sent_at, claimed_sent_at, received_at, delivery_status, delivery_error, \
     delivery_attempts, delivered_at, edited_at, revisions";

#[derive(FromRow)]
struct MessageRow {
    id: MessageId,
    ingest_seq: i64,
    conversation_id: ConversationId,
    channel_id: ChannelId,
    external_id: Option<String>,
    direction: String,
    contact_id: Option<ContactId>,
    agent_id: Option<AgentId>,
    sender_handle: Option<String>,
    sender_name: Option<String>,
    text: String,
    html: Option<String>,
    subject: Option<String>,
    in_reply_to: Option<String>,
    attachments: String,
    thread_reason: String,
    sent_at: i64,
    claimed_sent_at: Option<i64>,
    received_at: i64,
    delivery_status: Option<String>,
    delivery_error: Option<String>,
    delivery_attempts: i64,
    delivered_at: Option<i64>,
    edited_at: Option<i64>,
    revisions: String,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> StoreResult<Self> {
        let delivery_status = match r.delivery_status.as_deref() {
            None => None,
            Some("queued") => Some(DeliveryStatus::Queued),
            Some("sent") => Some(DeliveryStatus::Sent),
            Some("failed") => Some(DeliveryStatus::Failed),
            Some(other) => return Err(StoreError::Corrupt(format!("delivery status {other}"))),
        };
        Ok(Message {
            id: r.id,
            ingest_seq: r.ingest_seq,
            conversation_id: r.conversation_id,
            channel_id: r.channel_id,
            external_id: r.external_id,
            direction: Direction::parse(&r.direction)
                .ok_or_else(|| StoreError::Corrupt(format!("direction {}", r.direction)))?,
            contact_id: r.contact_id,
            agent_id: r.agent_id,
            sender_handle: r.sender_handle,
            sender_name: r.sender_name,
            text: r.text,
            html: r.html,
            subject: r.subject,
            in_reply_to: r.in_reply_to,
            attachments: serde_json::from_str(&r.attachments)
                .map_err(|e| StoreError::Corrupt(format!("attachments: {e}")))?,
            thread_reason: ThreadReason::parse(&r.thread_reason)
                .ok_or_else(|| StoreError::Corrupt(format!("thread reason {}", r.thread_reason)))?,
            sent_at: from_millis(r.sent_at),
            claimed_sent_at: r.claimed_sent_at.map(from_millis),
            received_at: from_millis(r.received_at),
            delivery_status,
            delivery_error: r.delivery_error,
            delivery_attempts: r.delivery_attempts,
            delivered_at: r.delivered_at.map(from_millis),
            edited_at: r.edited_at.map(from_millis),
            revisions: serde_json::from_str(&r.revisions)
                .map_err(|e| StoreError::Corrupt(format!("revisions: {e}")))?,
        })
    }
}

/// The content an edit gives a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EditedContent<'a> {
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// JSON array of attachment references.
    pub attachments: &'a str,
    /// Epoch milliseconds.
    pub edited_at: i64,
    /// The attachments are added to the stored ones instead of replacing them: an edited part
    /// of an album carries only its own.
    pub adds_attachments: bool,
}

/// What a later part of a message sent in pieces brings to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PartContent<'a> {
    pub text: &'a str,
    pub html: Option<&'a str>,
    pub attachments: &'a [AttachmentRef],
}

/// What an edit replaces.
#[derive(FromRow)]
struct StoredContent {
    text: String,
    html: Option<String>,
    attachments: String,
    sent_at: i64,
    edited_at: Option<i64>,
    revisions: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub external_id: Option<String>,
    pub direction: Direction,
    pub contact_id: Option<ContactId>,
    pub agent_id: Option<AgentId>,
    pub sender_handle: Option<String>,
    pub sender_name: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    /// JSON array of attachment references.
    pub attachments: String,
    pub raw_ref: Option<String>,
    pub thread_reason: ThreadReason,
    pub sent_at: i64,
    /// The provider's time when it was not believed (then `sent_at` is `received_at`).
    pub claimed_sent_at: Option<i64>,
    pub received_at: i64,
    pub delivery_status: Option<DeliveryStatus>,
    /// The key a message sent in pieces shares with its later parts.
    pub part_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub items: Vec<Message>,
    /// Pass as `before` to get the page of older messages.
    pub next_before: Option<String>,
}

/// Whose history a page is from.
#[derive(Debug, Clone, Copy)]
enum History {
    Conversation(ConversationId),
    Contact(ContactId),
}

/// Rows fetched newest first, one more than the page: the page oldest first and the next cursor.
fn page_of_messages(rows: Vec<MessageRow>, limit: u32) -> StoreResult<MessagePage> {
    let items = rows
        .into_iter()
        .map(Message::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    let (mut items, next_before) = page(items, limit, |m| PageCursor {
        at: to_millis(m.sent_at),
        key: m.ingest_seq.to_string(),
    });
    items.reverse();
    Ok(MessagePage { items, next_before })
}

impl Store {
    /// A page of a conversation's history, ordered by (sent_at, ingest_seq), ending before `before`.
    pub async fn messages(
        &self,
        conversation_id: ConversationId,
        before: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<MessagePage> {
        self.history(History::Conversation(conversation_id), before, limit)
            .await
    }

    /// The contact's messages on every channel and conversation: one history across channels,
    /// paged like a conversation's.
    pub async fn contact_messages(
        &self,
        contact_id: ContactId,
        before: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<MessagePage> {
        self.history(History::Contact(contact_id), before, limit)
            .await
    }

    async fn history(
        &self,
        scope: History,
        before: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<MessagePage> {
        let limit = limit.clamp(1, 500);
        let conversations = match scope {
            History::Conversation(id) => vec![id],
            History::Contact(id) => {
                on_pool!(self, pool, Db => sqlx::query_scalar::<Db, ConversationId>(
                    "SELECT id FROM conversations WHERE contact_id = $1",
                )
                .bind(id)
                .fetch_all(pool)
                .await)?
            }
        };
        if conversations.is_empty() {
            return Ok(MessagePage {
                items: Vec::new(),
                next_before: None,
            });
        }
        // One newest-first index range per conversation, merged: a page costs the page, not the
        // history, however long the conversations are (a customer has few of them; past
        // MERGE_LIMIT the database sorts the whole set instead).
        const MERGE_LIMIT: usize = 64;
        let rows = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new("");
            let page_of = |qb: &mut QueryBuilder<Db>, filter: &dyn Fn(&mut QueryBuilder<Db>)| {
                qb.push(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE "));
                filter(qb);
                if let Some(before) = before {
                    let seq: i64 = before.key.parse().unwrap_or(i64::MAX);
                    // A row comparison: one index range on both databases (see the list).
                    qb.push(" AND (sent_at, ingest_seq) < (")
                        .push_bind(before.at)
                        .push(", ")
                        .push_bind(seq)
                        .push(")");
                }
                qb.push(" ORDER BY sent_at DESC, ingest_seq DESC LIMIT ")
                    .push_bind(i64::from(limit) + 1);
            };
            match (scope, conversations.len()) {
                (History::Contact(contact), n) if n > MERGE_LIMIT => {
                    page_of(&mut qb, &|qb| {
                        qb.push("conversation_id IN (SELECT id FROM conversations WHERE contact_id = ")
                            .push_bind(contact)
                            .push(")");
                    });
                }
                (_, 1) => {
                    let id = conversations[0];
                    page_of(&mut qb, &|qb| {
                        qb.push("conversation_id = ").push_bind(id);
                    });
                }
                _ => {
                    qb.push(format!("SELECT {MESSAGE_COLUMNS} FROM ("));
                    for (i, id) in conversations.iter().enumerate() {
                        if i > 0 {
                            qb.push(" UNION ALL ");
                        }
                        qb.push("SELECT * FROM (");
                        page_of(&mut qb, &|qb| {
                            qb.push("conversation_id = ").push_bind(*id);
                        });
                        qb.push(format!(") AS p{i}"));
                    }
                    qb.push(") AS merged ORDER BY sent_at DESC, ingest_seq DESC LIMIT ")
                        .push_bind(i64::from(limit) + 1);
                }
            }
            qb.build_query_as::<MessageRow>().fetch_all(pool).await
        })?;
        page_of_messages(rows, limit)
    }

    pub async fn message(&self, id: MessageId) -> StoreResult<Option<Message>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, MessageRow>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        row.map(Message::try_from).transpose()
    }

    pub async fn message_total(&self) -> StoreResult<i64> {
        Ok(
            on_pool!(self, pool, Db => sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM messages")
            .fetch_one(pool)
            .await)?,
        )
    }
}

impl StoreTx {
    /// Another message of `message_id`'s channel that already has `external_id`, if any.
    pub(crate) async fn external_id_owner(
        &mut self,
        message_id: MessageId,
        external_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        Ok(
            on_tx!(self, conn, Db => sqlx::query_scalar::<Db, MessageId>(
            "SELECT o.id FROM messages m
             JOIN messages o ON o.channel_id = m.channel_id AND o.external_id = $1
                 AND o.direction = m.direction AND o.id <> m.id
             WHERE m.id = $2",
        )
        .bind(external_id)
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await)?,
        )
    }

    /// Records a delivery report on its outgoing message. Returns false when no such message exists.
    pub(crate) async fn apply_delivery(&mut self, report: &DeliveryReport) -> StoreResult<bool> {
        let delivered_at = (report.status == DeliveryStatus::Sent).then(|| to_millis(report.at));
        let done = on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE messages SET delivery_status = $1, delivery_error = $2, delivery_attempts = $3,
                 delivered_at = $4, external_id = COALESCE($5, external_id)
             WHERE id = $6 AND direction = 'outbound'",
        )
        .bind(report.status.as_str())
        .bind(report.error.clone())
        .bind(i64::from(report.attempts))
        .bind(delivered_at)
        .bind(report.external_id.clone())
        .bind(report.message_id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// A customer's edit of their stored message: the new content replaces the old, which is
    /// appended to the message's revisions. Returns the text it replaced; `None` when the edit
    /// changes nothing (the same content) or the message is not there.
    pub(crate) async fn apply_edit(
        &mut self,
        message_id: MessageId,
        content: &EditedContent<'_>,
    ) -> StoreResult<Option<String>> {
        let stored = on_tx!(self, conn, Db => sqlx::query_as::<Db, StoredContent>(
            "SELECT text, html, attachments, sent_at, edited_at, revisions FROM messages
             WHERE id = $1 AND direction = 'inbound'",
        )
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let attachments = if content.adds_attachments {
            let more: Vec<AttachmentRef> = serde_json::from_str(content.attachments)
                .map_err(|e| StoreError::Corrupt(format!("attachments: {e}")))?;
            with_attachments(&stored.attachments, &more)?.0
        } else {
            content.attachments.to_owned()
        };
        if stored.text == content.text
            && stored.html.as_deref() == content.html
            && stored.attachments == attachments
        {
            return Ok(None);
        }
        let mut revisions: Vec<MessageRevision> = serde_json::from_str(&stored.revisions)
            .map_err(|e| StoreError::Corrupt(format!("revisions: {e}")))?;
        revisions.push(MessageRevision {
            text: stored.text.clone(),
            html: stored.html,
            attachments: serde_json::from_str(&stored.attachments)
                .map_err(|e| StoreError::Corrupt(format!("attachments: {e}")))?,
            written_at: from_millis(stored.edited_at.unwrap_or(stored.sent_at)),
            replaced_at: from_millis(content.edited_at),
        });
        let revisions = serde_json::to_string(&revisions)
            .map_err(|e| StoreError::Corrupt(format!("revisions: {e}")))?;
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE messages SET text = $1, html = $2, attachments = $3, edited_at = $4,
                 revisions = $5
             WHERE id = $6",
        )
        .bind(content.text)
        .bind(content.html)
        .bind(attachments)
        .bind(content.edited_at)
        .bind(revisions)
        .bind(message_id)
        .execute(&mut *conn)
        .await
        .map(|_| ()))?;
        Ok(Some(stored.text))
    }

    /// Adds a later part to the message it belongs to: its attachments (those not there
    /// already), and its text when the message had none. Returns how many attachments it added;
    /// `None` when it changes nothing (a part read again) or the message is not there.
    pub(crate) async fn join_part(
        &mut self,
        message_id: MessageId,
        part: &PartContent<'_>,
    ) -> StoreResult<Option<usize>> {
        let stored = on_tx!(self, conn, Db => sqlx::query_as::<Db, (String, Option<String>, String)>(
            "SELECT text, html, attachments FROM messages WHERE id = $1 AND direction = 'inbound'",
        )
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await)?;
        let Some((text, html, attachments)) = stored else {
            return Ok(None);
        };
        let (attachments, added) = with_attachments(&attachments, part.attachments)?;
        // The caption of an album is on one of its parts, not necessarily the first.
        let takes_text = text.trim().is_empty() && !part.text.trim().is_empty();
        if added == 0 && !takes_text {
            return Ok(None);
        }
        let (text, html) = if takes_text {
            (part.text.to_owned(), part.html.map(str::to_owned))
        } else {
            (text, html)
        };
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE messages SET text = $1, html = $2, attachments = $3 WHERE id = $4",
        )
        .bind(text)
        .bind(html)
        .bind(attachments)
        .bind(message_id)
        .execute(&mut *conn)
        .await
        .map(|_| ()))?;
        Ok(Some(added))
    }

    /// Marks a message the batch stored as edited (an edit whose original never arrived).
    pub(crate) async fn mark_edited(
        &mut self,
        message_id: MessageId,
        edited_at: i64,
    ) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE messages SET edited_at = $1 WHERE id = $2",
        )
        .bind(edited_at)
        .bind(message_id)
        .execute(&mut *conn)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The latest inbound message of a conversation: what a reply answers.
    pub(crate) async fn last_inbound(
        &mut self,
        conversation_id: ConversationId,
    ) -> StoreResult<Option<(Option<String>, Option<String>, Option<String>)>> {
        Ok(
            on_tx!(self, conn, Db => sqlx::query_as::<Db, (Option<String>, Option<String>, Option<String>)>(
            "SELECT external_id, subject, sender_name FROM messages
             WHERE conversation_id = $1 AND direction = 'inbound'
             ORDER BY sent_at DESC, ingest_seq DESC LIMIT 1",
        )
        .bind(conversation_id)
        .fetch_optional(&mut *conn)
        .await)?,
        )
    }
}

/// The stored attachments (a JSON array) with those of `more` that are not among them (by blob)
/// appended; and how many were.
fn with_attachments(stored: &str, more: &[AttachmentRef]) -> StoreResult<(String, usize)> {
    let mut all: Vec<AttachmentRef> = serde_json::from_str(stored)
        .map_err(|e| StoreError::Corrupt(format!("attachments: {e}")))?;
    let before = all.len();
    for attachment in more {
        if !all.iter().any(|a| a.blob == attachment.blob) {
            all.push(attachment.clone());
        }
    }
    let added = all.len() - before;
    let json = serde_json::to_string(&all)
        .map_err(|e| StoreError::Corrupt(format!("attachments: {e}")))?;
    Ok((json, added))
}
