//! The statements of the Store, written once for both backends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, FromRow, QueryBuilder};
use utoipa::ToSchema;

use super::search::{LabelFilter, TextFilter};
use super::{LogRow, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::envelope::{DeliveryReport, DeliveryStatus, DomainEvent, OutboundMessage};
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId, MessageId};
use crate::model::{
    Actor, Agent, Contact, Conversation, ConversationEvent, ConversationStatus, Direction,
    EventKind, Identity, Message, Role, ThreadReason, from_millis, to_millis,
};

/// Rows per multi-row statement: keeps every statement under SQLite's 32,766 bind parameters.
const CHUNK: usize = 500;

// ---------------------------------------------------------------------------------------------
// Rows as read from the database.

#[derive(FromRow)]
pub(super) struct AgentRow {
    id: AgentId,
    email: String,
    name: String,
    role: String,
    created_at: i64,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> StoreResult<Self> {
        Ok(Agent {
            id: r.id,
            email: r.email,
            name: r.name,
            role: Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("agent role {}", r.role)))?,
            created_at: from_millis(r.created_at),
        })
    }
}

/// A conversation as the funnel reads and writes it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ConversationState {
    pub id: ConversationId,
    pub channel_id: ChannelId,
    pub contact_id: ContactId,
    pub contact_handle: String,
    pub status: String,
    pub assignee_id: Option<AgentId>,
    pub subject: Option<String>,
    pub labels: String,
    pub preview: String,
    pub message_count: i64,
    pub unread_count: i64,
    pub created_at: i64,
    pub last_message_at: i64,
    pub waiting_since: Option<i64>,
    pub snoozed_until: Option<i64>,
    pub resolved_at: Option<i64>,
    /// Normalized subject (email threading rule 3).
    pub subject_key: Option<String>,
}

impl ConversationState {
    pub fn status(&self) -> ConversationStatus {
        ConversationStatus::parse(&self.status).unwrap_or(ConversationStatus::Open)
    }

    pub fn set_status(&mut self, status: ConversationStatus) {
        self.status = status.as_str().to_owned();
    }
}

const CONVERSATION_COLUMNS: &str = "c.id, c.channel_id, c.contact_id, c.contact_handle, c.status, \
     c.assignee_id, c.subject, c.labels, c.preview, c.message_count, c.unread_count, c.created_at, \
     c.last_message_at, c.waiting_since, c.snoozed_until, c.resolved_at, c.subject_key";

#[derive(FromRow)]
struct ConversationRow {
    #[sqlx(flatten)]
    state: ConversationState,
    contact_name: Option<String>,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;
    fn try_from(r: ConversationRow) -> StoreResult<Self> {
        let s = r.state;
        Ok(Conversation {
            id: s.id,
            channel_id: s.channel_id,
            contact_id: s.contact_id,
            contact_handle: s.contact_handle,
            contact_name: r.contact_name,
            status: ConversationStatus::parse(&s.status)
                .ok_or_else(|| StoreError::Corrupt(format!("conversation status {}", s.status)))?,
            assignee_id: s.assignee_id,
            subject: s.subject,
            labels: serde_json::from_str(&s.labels)
                .map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?,
            preview: s.preview,
            message_count: s.message_count,
            unread_count: s.unread_count,
            created_at: from_millis(s.created_at),
            last_message_at: from_millis(s.last_message_at),
            waiting_since: s.waiting_since.map(from_millis),
            snoozed_until: s.snoozed_until.map(from_millis),
            resolved_at: s.resolved_at.map(from_millis),
        })
    }
}

const MESSAGE_COLUMNS: &str = "id, ingest_seq, conversation_id, channel_id, external_id, direction, \
     contact_id, agent_id, sender_handle, sender_name, text, html, subject, in_reply_to, attachments, \
     thread_reason, sent_at, claimed_sent_at, received_at, delivery_status, delivery_error, \
     delivery_attempts, delivered_at";

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
        })
    }
}

#[derive(FromRow)]
struct EventRow {
    id: String,
    conversation_id: ConversationId,
    kind: String,
    actor_kind: String,
    actor_id: Option<String>,
    message_id: Option<MessageId>,
    data: String,
    at: i64,
}

// ---------------------------------------------------------------------------------------------
// Rows as the funnel and the API write them.

#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub id: ContactId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentity {
    pub namespace: String,
    pub handle: String,
    pub contact_id: ContactId,
    pub created_at: i64,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub conversation_id: ConversationId,
    pub kind: EventKind,
    pub actor: Actor,
    /// The conversation's customer, told to the event stream (a contact actor is one already).
    pub contact_id: Option<ContactId>,
    pub message_id: Option<MessageId>,
    pub data: serde_json::Value,
    pub at: i64,
}

/// Which conversations to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationFilter {
    pub status: Option<ConversationStatus>,
    /// `Some(None)`: unassigned only; `Some(Some(id))`: assigned to that agent.
    pub assignee: Option<Option<AgentId>>,
    pub channel: Option<ChannelId>,
    /// Only conversations with a message (reply and note included) matching this search, in the
    /// syntax of [`Store::search_messages`]. Ignored when it has nothing to search for.
    pub q: Option<String>,
    /// Only conversations carrying this label (compared trimmed and lower-cased, as labels are
    /// stored). Ignored when blank.
    pub label: Option<String>,
    /// Only conversations with unread customer messages.
    pub unread_only: bool,
}

/// Keyset position in a list ordered by a time and a unique tie-breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub at: i64,
    pub key: String,
}

impl PageCursor {
    /// Opaque text form used in URLs: `<millis>_<key>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at, self.key)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (at, key) = s.split_once('_')?;
        // No key has a NUL (and PostgreSQL refuses one as text).
        if key.contains('\0') {
            return None;
        }
        Some(PageCursor {
            at: at.parse().ok()?,
            key: key.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub items: Vec<Message>,
    /// Pass as `before` to get the page of older messages.
    pub next_before: Option<String>,
}

/// What an agent changes on a conversation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ConversationPatch {
    pub status: Option<ConversationStatus>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<AgentId>>,
    pub labels: Option<Vec<String>>,
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// The messages stored under one (channel, external id): at most one per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownExternalId {
    /// The customer's message with this id: a second one is a duplicate.
    pub inbound: Option<(MessageId, ConversationId)>,
    /// Our delivered reply the channel gave this id: a customer may answer it.
    pub outbound: Option<(MessageId, ConversationId)>,
}

impl KnownExternalId {
    /// The conversation a reply referencing this id belongs to.
    pub fn conversation(&self) -> Option<ConversationId> {
        self.inbound.or(self.outbound).map(|(_, c)| c)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub message_id: MessageId,
    pub message: OutboundMessage,
}

// ---------------------------------------------------------------------------------------------

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

/// Cuts rows fetched with one extra (`LIMIT limit + 1`) to the page and gives the cursor of the
/// next page when there is one.
fn page<T>(
    mut items: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> PageCursor,
) -> (Vec<T>, Option<String>) {
    if items.len() <= limit as usize {
        return (items, None);
    }
    items.truncate(limit as usize);
    let next = items.last().map(|last| cursor_of(last).encode());
    (items, next)
}

pub(super) fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    // --- agents and tokens ------------------------------------------------------------------

    pub async fn create_agent(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
    ) -> StoreResult<Agent> {
        let agent = Agent {
            id: AgentId::new(),
            email: email.to_owned(),
            name: name.to_owned(),
            role,
            created_at: Utc::now(),
        };
        let result = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO agents (id, email, name, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(agent.id)
        .bind(&agent.email)
        .bind(&agent.name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(to_millis(agent.created_at))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()));
        match result.map_err(StoreError::from) {
            Ok(_) => Ok(agent),
            Err(e) if e.is_unique_violation() => Err(StoreError::Invalid {
                field: "email",
                message: format!("an agent with email {email} exists already"),
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn agent(&self, id: AgentId) -> StoreResult<Option<Agent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, AgentRow>(
            "SELECT id, email, name, role, created_at FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(Agent::try_from).transpose()
    }

    pub async fn agent_count(&self) -> StoreResult<i64> {
        Ok(
            on_pool!(self, pool, Db => sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM agents")
            .fetch_one(pool)
            .await)?,
        )
    }

    /// Stores the hash of a new API token for an agent and returns the token itself, shown once.
    pub async fn create_api_token(&self, agent_id: AgentId, name: &str) -> StoreResult<String> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("inbox_{}", hex::encode(bytes));
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO api_tokens (id, agent_id, name, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(agent_id)
        .bind(name)
        .bind(token_hash(&token))
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(token)
    }

    /// The agent owning a valid, unrevoked token.
    pub async fn agent_by_token(&self, token: &str) -> StoreResult<Option<Agent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, AgentRow>(
            "SELECT a.id, a.email, a.name, a.role, a.created_at
             FROM api_tokens t JOIN agents a ON a.id = t.agent_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND a.disabled_at IS NULL",
        )
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await)?;
        row.map(Agent::try_from).transpose()
    }

    // --- conversations ----------------------------------------------------------------------

    pub async fn conversation(&self, id: ConversationId) -> StoreResult<Option<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS}, k.name AS contact_name
             FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE c.id = $1"
        );
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, ConversationRow>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        row.map(Conversation::try_from).transpose()
    }

    /// Newest activity first, keyset-paginated on (last_message_at, id).
    pub async fn list_conversations(
        &self,
        filter: &ConversationFilter,
        cursor: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<ConversationPage> {
        let limit = limit.clamp(1, 200);
        // The text and label filters first look at how many rows they match, to pick the
        // statement that stays cheap for both a rare and a common word or label.
        let text = match filter.q.as_deref() {
            Some(q) => self.text_filter(q).await?,
            None => None,
        };
        let label = match filter.label.as_deref() {
            Some(label) => self.label_filter(label, filter.status).await?,
            None => None,
        };
        if matches!(text, Some(TextFilter::Nothing)) || matches!(label, Some(LabelFilter::Nothing))
        {
            return Ok(ConversationPage {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let postgres = matches!(self, Store::Postgres(_));
        // Statements whose best plan depends on the values are planned for them, not cached.
        let persistent = text.is_none() && label.is_none();
        let rows = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {CONVERSATION_COLUMNS}, k.name AS contact_name
                 FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE 1 = 1"
            ));
            if let Some(status) = filter.status {
                qb.push(" AND c.status = ").push_bind(status.as_str());
            }
            match filter.assignee {
                Some(Some(agent)) => {
                    qb.push(" AND c.assignee_id = ").push_bind(agent);
                }
                Some(None) => {
                    qb.push(" AND c.assignee_id IS NULL");
                }
                None => {}
            }
            if let Some(channel) = filter.channel {
                qb.push(" AND c.channel_id = ").push_bind(channel);
            }
            if filter.unread_only {
                // Matches the partial index conversations_unread.
                qb.push(" AND c.unread_count > 0");
            }
            if let Some(label) = &label {
                label.push(&mut qb);
            }
            if let Some(text) = &text {
                text.push(&mut qb, postgres);
            }
            if let Some(cursor) = cursor {
                // A row comparison: both databases turn it into one index range, where the
                // spelled-out OR makes PostgreSQL filter row by row from the newest.
                qb.push(" AND (c.last_message_at, c.id) < (")
                    .push_bind(cursor.at)
                    .push(", ")
                    .push_bind(cursor.key.clone())
                    .push(")");
            }
            qb.push(" ORDER BY c.last_message_at DESC, c.id DESC LIMIT ")
                .push_bind(i64::from(limit) + 1);
            qb.build_query_as::<ConversationRow>()
                .persistent(persistent)
                .fetch_all(pool)
                .await
        })?;
        let items = rows
            .into_iter()
            .map(Conversation::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        let (items, next_cursor) = page(items, limit, |c| PageCursor {
            at: to_millis(c.last_message_at),
            key: c.id.to_string(),
        });
        Ok(ConversationPage { items, next_cursor })
    }

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

    /// The conversation log, oldest first.
    pub async fn conversation_events(
        &self,
        id: ConversationId,
    ) -> StoreResult<Vec<ConversationEvent>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, EventRow>(
            "SELECT id, conversation_id, kind, actor_kind, actor_id, message_id, data, at
             FROM conversation_events WHERE conversation_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(ConversationEvent {
                    id: r.id,
                    conversation_id: r.conversation_id,
                    kind: r.kind,
                    actor_kind: r.actor_kind,
                    actor_id: r.actor_id,
                    message_id: r.message_id,
                    data: serde_json::from_str(&r.data)
                        .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
                    at: from_millis(r.at),
                })
            })
            .collect()
    }

    pub async fn contact(&self, id: ContactId) -> StoreResult<Option<(Contact, Vec<Identity>)>> {
        #[derive(FromRow)]
        struct ContactRow {
            id: ContactId,
            name: Option<String>,
            email: Option<String>,
            phone: Option<String>,
            created_at: i64,
        }
        let (row, identities) = on_pool!(self, pool, Db => {
            let row = sqlx::query_as::<Db, ContactRow>(
                "SELECT id, name, email, phone, created_at FROM contacts WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let identities = sqlx::query_as::<Db, (String, String)>(
                "SELECT namespace, handle FROM contact_identities WHERE contact_id = $1
                 ORDER BY created_at, namespace, handle",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>((row, identities))
        })?;
        Ok(row.map(|r| {
            (
                Contact {
                    id: r.id,
                    name: r.name,
                    email: r.email,
                    phone: r.phone,
                    created_at: from_millis(r.created_at),
                },
                identities
                    .into_iter()
                    .map(|(namespace, handle)| Identity { namespace, handle })
                    .collect(),
            )
        }))
    }

    /// The contact's conversations on every channel, newest first.
    pub async fn contact_conversations(&self, id: ContactId) -> StoreResult<Vec<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS}, k.name AS contact_name
             FROM conversations c JOIN contacts k ON k.id = c.contact_id
             WHERE c.contact_id = $1 ORDER BY c.last_message_at DESC, c.id DESC"
        );
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, ConversationRow>(AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(Conversation::try_from).collect()
    }

    // --- outbox -----------------------------------------------------------------------------

    /// Replies not yet handed to the bus, oldest first.
    /// Replies not yet handed to the bus, and when the oldest of them was written.
    pub async fn outbox_backlog(&self) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
        let (count, oldest) = on_pool!(self, pool, Db => sqlx::query_as::<Db, (i64, Option<i64>)>(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(pool)
        .await)?;
        Ok((count, oldest.map(from_millis)))
    }

    pub async fn pending_outbox(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, (MessageId, String)>(
            "SELECT message_id, payload FROM outbox WHERE published_at IS NULL
             ORDER BY created_at, message_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|(message_id, payload)| {
                Ok(OutboxEntry {
                    message_id,
                    message: OutboundMessage::from_json(payload.as_bytes())
                        .map_err(|e| StoreError::Corrupt(format!("outbox payload: {e}")))?,
                })
            })
            .collect()
    }

    pub async fn mark_outbox_published(&self, message_id: MessageId) -> StoreResult<()> {
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE outbox SET published_at = $1 WHERE message_id = $2",
        )
        .bind(to_millis(Utc::now()))
        .bind(message_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// With the in-process bus a published reply lives only in memory until delivered: after a
    /// restart, replies still `queued` are handed to the bus again (receivers dedupe on the id).
    pub async fn requeue_undelivered_outbox(&self) -> StoreResult<u64> {
        let done = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE outbox SET published_at = NULL
             WHERE published_at IS NOT NULL AND message_id IN
                 (SELECT id FROM messages WHERE delivery_status = 'queued')",
        )
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done)
    }

    // --- cursors -----------------------------------------------------------

    pub async fn cursor(&self, channel_id: ChannelId, name: &str) -> StoreResult<Option<String>> {
        Ok(on_pool!(self, pool, Db => sqlx::query_scalar::<Db, String>(
            "SELECT value FROM connector_cursors WHERE channel_id = $1 AND name = $2",
        )
        .bind(channel_id)
        .bind(name)
        .fetch_optional(pool)
        .await)?)
    }

    pub async fn set_cursor(
        &self,
        channel_id: ChannelId,
        name: &str,
        value: &str,
    ) -> StoreResult<()> {
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO connector_cursors (channel_id, name, value, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (channel_id, name) DO UPDATE SET value = excluded.value,
                 updated_at = excluded.updated_at",
        )
        .bind(channel_id)
        .bind(name)
        .bind(value)
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl StoreTx {
    /// Stored messages among `keys` (channel, external id), by direction.
    pub async fn messages_by_external_ids(
        &mut self,
        keys: &[(ChannelId, String)],
    ) -> StoreResult<HashMap<(ChannelId, String), KnownExternalId>> {
        let mut found: HashMap<(ChannelId, String), KnownExternalId> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                // A join against VALUES lets SQLite search the unique index per key; a row-value
                // IN list with several rows makes it scan the table.
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT m.channel_id, m.external_id, m.direction, m.id, m.conversation_id FROM (",
                );
                qb.push_values(chunk, |mut row, (channel, external)| {
                    row.push_bind(*channel).push_bind(external.clone());
                });
                qb.push(
                    ") AS k JOIN messages m ON m.channel_id = k.column1 AND m.external_id = k.column2",
                );
                qb.build_query_as::<(ChannelId, String, String, MessageId, ConversationId)>()
                    .fetch_all(&mut *conn)
                    .await
            })?;
            for (channel, external, direction, message, conversation) in rows {
                let known = found.entry((channel, external)).or_default();
                if direction == Direction::Inbound.as_str() {
                    known.inbound = Some((message, conversation));
                } else {
                    known.outbound = Some((message, conversation));
                }
            }
        }
        Ok(found)
    }

    /// Contacts of the identities among `keys`.
    pub async fn identities(
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
    pub async fn latest_conversations(
        &mut self,
        pairs: &[(ContactId, ChannelId)],
    ) -> StoreResult<Vec<ConversationState>> {
        let mut found = Vec::new();
        let lock = self.for_update();
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
    pub async fn subject_conversations(
        &mut self,
        keys: &[(ContactId, ChannelId, String)],
    ) -> StoreResult<Vec<ConversationState>> {
        let mut found = Vec::new();
        let lock = self.for_update();
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
    pub async fn conversations_by_ids(
        &mut self,
        ids: &[ConversationId],
    ) -> StoreResult<Vec<ConversationState>> {
        let mut found = Vec::new();
        let lock = self.for_update();
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

    pub async fn insert_contacts(&mut self, contacts: &[NewContact]) -> StoreResult<()> {
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

    pub async fn insert_identities(&mut self, identities: &[NewIdentity]) -> StoreResult<()> {
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
    pub async fn upsert_conversations(
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
    pub async fn insert_messages(&mut self, messages: &[NewMessage]) -> StoreResult<u64> {
        let mut inserted = 0;
        for chunk in messages.chunks(CHUNK) {
            let done = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO messages (id, conversation_id, channel_id, external_id, direction,
                         contact_id, agent_id, sender_handle, sender_name, text, html, subject,
                         in_reply_to, attachments, raw_ref, thread_reason, sent_at,
                         claimed_sent_at, received_at, delivery_status) ",
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
                        .push_bind(m.delivery_status.map(DeliveryStatus::as_str));
                });
                qb.push(" ON CONFLICT (channel_id, external_id, direction) DO NOTHING");
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
            inserted += done;
        }
        Ok(inserted)
    }

    /// Appends rows to the conversation log and, in the same transaction, their events to the
    /// event outbox; returns those events.
    pub async fn insert_events(&mut self, events: &[NewEvent]) -> StoreResult<Vec<DomainEvent>> {
        let ids: Vec<uuid::Uuid> = events.iter().map(|_| uuid::Uuid::now_v7()).collect();
        for (chunk, ids) in events.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO conversation_events
                         (id, conversation_id, kind, actor_kind, actor_id, message_id, data, at) ",
                );
                qb.push_values(chunk.iter().zip(ids), |mut row, (e, id)| {
                    row.push_bind(id.to_string())
                        .push_bind(e.conversation_id)
                        .push_bind(e.kind.as_str())
                        .push_bind(e.actor.kind())
                        .push_bind(e.actor.id())
                        .push_bind(e.message_id)
                        .push_bind(e.data.to_string())
                        .push_bind(e.at);
                });
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        let stream: Vec<DomainEvent> = events
            .iter()
            .zip(ids)
            .map(|(e, id)| {
                LogRow {
                    id,
                    conversation_id: e.conversation_id,
                    kind: e.kind.as_str(),
                    actor: e.actor,
                    contact_id: e.contact_id,
                    message_id: e.message_id,
                    data: &e.data,
                    at: e.at,
                }
                .event()
            })
            .collect();
        self.insert_stream_events(&stream).await?;
        Ok(stream)
    }

    pub async fn insert_outbox(&mut self, message: &OutboundMessage) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "INSERT INTO outbox (message_id, conversation_id, payload, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(message.id)
        .bind(message.conversation_id)
        .bind(String::from_utf8_lossy(&message.to_json()).into_owned())
        .bind(to_millis(message.created_at))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Another message of `message_id`'s channel that already has `external_id`, if any.
    pub async fn external_id_owner(
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
    pub async fn apply_delivery(&mut self, report: &DeliveryReport) -> StoreResult<bool> {
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

    /// Writes the agent-owned fields of a conversation.
    pub async fn update_conversation_by_agent(&mut self, c: &ConversationState) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE conversations SET status = $1, assignee_id = $2, labels = $3,
                 snoozed_until = $4, resolved_at = $5, waiting_since = $6, preview = $7,
                 message_count = $8, last_message_at = $9, unread_count = $10
             WHERE id = $11",
        )
        .bind(c.status.clone())
        .bind(c.assignee_id)
        .bind(c.labels.clone())
        .bind(c.snoozed_until)
        .bind(c.resolved_at)
        .bind(c.waiting_since)
        .bind(c.preview.clone())
        .bind(c.message_count)
        .bind(c.last_message_at)
        .bind(c.unread_count)
        .bind(c.id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Snoozed conversations whose `snoozed_until` has passed.
    pub async fn due_snoozed(&mut self, now: i64) -> StoreResult<Vec<ConversationId>> {
        Ok(
            on_tx!(self, conn, Db => sqlx::query_scalar::<Db, ConversationId>(
            "SELECT id FROM conversations WHERE status = 'snoozed' AND snoozed_until <= $1
             ORDER BY snoozed_until LIMIT 500",
        )
        .bind(now)
        .fetch_all(&mut *conn)
        .await)?,
        )
    }

    pub async fn agent_exists(&mut self, id: AgentId) -> StoreResult<bool> {
        Ok(on_tx!(self, conn, Db => sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await)?
            > 0)
    }

    /// The latest inbound message of a conversation: what a reply answers.
    pub async fn last_inbound(
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

impl Store {
    pub async fn agent_by_email(&self, email: &str) -> StoreResult<Option<Agent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, AgentRow>(
            "SELECT id, email, name, role, created_at FROM agents WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(pool)
        .await)?;
        row.map(Agent::try_from).transpose()
    }

    pub async fn set_password(&self, agent_id: AgentId, password_hash: &str) -> StoreResult<()> {
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE agents SET password_hash = $1 WHERE id = $2",
        )
        .bind(password_hash)
        .bind(agent_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
