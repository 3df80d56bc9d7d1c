//! Conversations: the list (filters, keyset pages), one conversation, a contact's conversations,
//! and what agents' actions and the snooze timer write.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, FromRow, QueryBuilder};
use utoipa::ToSchema;

use super::paging::{PageCursor, page};
use super::search::{LabelFilter, TextFilter};
use super::{LogRow, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId};
use crate::model::{Actor, Conversation, ConversationStatus, from_millis, to_millis};

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

pub(super) const CONVERSATION_COLUMNS: &str = "c.id, c.channel_id, c.contact_id, c.contact_handle, c.status, \
     c.assignee_id, c.subject, c.labels, c.preview, c.message_count, c.unread_count, c.created_at, \
     c.last_message_at, c.waiting_since, c.snoozed_until, c.resolved_at, c.subject_key, \
     c.sla_due_at, c.sla_target";

#[derive(FromRow)]
struct ConversationRow {
    #[sqlx(flatten)]
    state: ConversationState,
    contact_name: Option<String>,
    sla_due_at: Option<i64>,
    sla_target: Option<String>,
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
            sla_due_at: r.sla_due_at.map(from_millis),
            sla_target: r.sla_target,
        })
    }
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
    pub sort: ConversationSort,
}

/// The order of the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConversationSort {
    /// Newest activity first.
    #[default]
    Recent,
    /// Soonest SLA deadline first (overdue ones first of all); only conversations with one.
    Due,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<String>,
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

impl Store {
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
        let postgres = self.is_postgres();
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
            let (column, after, order) = match filter.sort {
                ConversationSort::Recent => ("c.last_message_at", "<", "DESC"),
                ConversationSort::Due => {
                    qb.push(" AND c.sla_due_at IS NOT NULL");
                    ("c.sla_due_at", ">", "ASC")
                }
            };
            if let Some(cursor) = cursor {
                // A row comparison: both databases turn it into one index range, where the
                // spelled-out OR makes PostgreSQL filter row by row from the newest.
                qb.push(format!(" AND ({column}, c.id) {after} ("))
                    .push_bind(cursor.at)
                    .push(", ")
                    .push_bind(cursor.key.clone())
                    .push(")");
            }
            qb.push(format!(" ORDER BY {column} {order}, c.id {order} LIMIT "))
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
            at: match filter.sort {
                ConversationSort::Recent => to_millis(c.last_message_at),
                ConversationSort::Due => c.sla_due_at.map_or(i64::MAX, to_millis),
            },
            key: c.id.to_string(),
        });
        Ok(ConversationPage { items, next_cursor })
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
}

impl StoreTx {
    /// Writes the agent-owned fields of a conversation.
    pub(crate) async fn update_conversation_by_agent(
        &mut self,
        c: &ConversationState,
    ) -> StoreResult<()> {
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
    pub(crate) async fn due_snoozed(&mut self, now: i64) -> StoreResult<Vec<ConversationId>> {
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
}

impl Store {
    /// Marks a conversation's messages read (its unread count becomes 0). Returns false when
    /// nothing was unread (or there is no such conversation). Customer messages make it unread
    /// again (the ingest funnel counts them).
    /// Clears the unread count as `agent` opens the conversation; when there was one, a `read`
    /// event goes to the stream in the same transaction (other agents' lists drop the marker).
    pub async fn mark_read(
        &self,
        conversation_id: ConversationId,
        agent: AgentId,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = on_tx!(&mut tx, conn, Db => sqlx::query::<Db>(
            "UPDATE conversations SET unread_count = 0 WHERE id = $1 AND unread_count <> 0",
        )
        .bind(conversation_id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Ok(false);
        }
        // Told like a log row, though it writes none.
        let event = LogRow {
            id: uuid::Uuid::now_v7(),
            conversation_id,
            kind: "read",
            actor: Actor::Agent(agent),
            contact_id: None,
            message_id: None,
            data: &serde_json::json!({}),
            at: to_millis(Utc::now()),
        }
        .event();
        tx.insert_stream_events(&[event]).await?;
        tx.commit().await?;
        Ok(true)
    }
}
