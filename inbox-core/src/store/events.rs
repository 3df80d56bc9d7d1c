//! The conversation log: every change to a conversation as a row, written with its domain event
//! (to the event outbox) in the change's own transaction.

use std::collections::HashMap;

use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use super::{CHUNK, LogRow, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::envelope::DomainEvent;
use crate::ids::{AgentId, ContactId, ConversationId, MessageId};
use crate::metrics;
use crate::model::{Actor, ConversationEvent, EventKind, from_millis};

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

impl TryFrom<EventRow> for ConversationEvent {
    type Error = StoreError;

    fn try_from(r: EventRow) -> StoreResult<Self> {
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
    }
}

impl Store {
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
        rows.into_iter().map(ConversationEvent::try_from).collect()
    }
}

impl Store {
    /// The conversation's latest log row of one kind (index on conversation and time).
    pub async fn latest_event(
        &self,
        id: ConversationId,
        kind: EventKind,
    ) -> StoreResult<Option<ConversationEvent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, EventRow>(
            "SELECT id, conversation_id, kind, actor_kind, actor_id, message_id, data, at
             FROM conversation_events WHERE conversation_id = $1 AND kind = $2
             ORDER BY at DESC, id DESC LIMIT 1",
        )
        .bind(id)
        .bind(kind.as_str())
        .fetch_optional(pool)
        .await)?;
        row.map(ConversationEvent::try_from).transpose()
    }
}

impl StoreTx {
    /// The logs of several conversations, each oldest first.
    pub(crate) async fn logs_of(
        &mut self,
        ids: &[ConversationId],
    ) -> StoreResult<HashMap<ConversationId, Vec<ConversationEvent>>> {
        let mut logs: HashMap<ConversationId, Vec<ConversationEvent>> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT id, conversation_id, kind, actor_kind, actor_id, message_id, data, at
                     FROM conversation_events WHERE conversation_id IN (",
                );
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(") ORDER BY conversation_id, at, id");
                qb.build_query_as::<EventRow>().fetch_all(&mut *conn).await
            })?;
            for row in rows {
                let event = ConversationEvent::try_from(row)?;
                logs.entry(event.conversation_id).or_default().push(event);
            }
        }
        Ok(logs)
    }

    /// Appends rows to the conversation log and, in the same transaction, their events to the
    /// event outbox; returns those events.
    pub(crate) async fn insert_events(
        &mut self,
        events: &[NewEvent],
    ) -> StoreResult<Vec<DomainEvent>> {
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
            .zip(ids.iter().copied())
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
        self.appended.extend(
            events
                .iter()
                .zip(&ids)
                .filter(|(e, _)| metrics::reads_kind(e.kind.as_str()))
                .map(|(e, id)| ConversationEvent {
                    id: id.to_string(),
                    conversation_id: e.conversation_id,
                    kind: e.kind.as_str().to_owned(),
                    actor_kind: e.actor.kind().to_owned(),
                    actor_id: e.actor.id(),
                    message_id: e.message_id,
                    data: e.data.clone(),
                    at: from_millis(e.at),
                }),
        );
        self.insert_stream_events(&stream).await?;
        Ok(stream)
    }

    /// Rows of the conversation log written by an agent, one per conversation, whose customer is
    /// now `contact`; their events go to the event outbox in the same transaction.
    pub(crate) async fn insert_agent_events(
        &mut self,
        conversations: &[ConversationId],
        kind: &str,
        agent: AgentId,
        contact: ContactId,
        data: &serde_json::Value,
        at: i64,
    ) -> StoreResult<()> {
        let rows: Vec<(ConversationId, Uuid)> = conversations
            .iter()
            .map(|conversation| (*conversation, Uuid::now_v7()))
            .collect();
        let stream: Vec<_> = rows
            .iter()
            .map(|(conversation, id)| {
                LogRow {
                    id: *id,
                    conversation_id: *conversation,
                    kind,
                    actor: Actor::Agent(agent),
                    contact_id: Some(contact),
                    message_id: None,
                    data,
                    at,
                }
                .event()
            })
            .collect();
        if metrics::reads_kind(kind) {
            self.appended
                .extend(rows.iter().map(|(conversation, id)| ConversationEvent {
                    id: id.to_string(),
                    conversation_id: *conversation,
                    kind: kind.to_owned(),
                    actor_kind: "agent".to_owned(),
                    actor_id: Some(agent.to_string()),
                    message_id: None,
                    data: data.clone(),
                    at: from_millis(at),
                }));
        }
        let data = data.to_string();
        for chunk in rows.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO conversation_events
                         (id, conversation_id, kind, actor_kind, actor_id, message_id, data, at) ",
                );
                qb.push_values(chunk, |mut row, (conversation, id)| {
                    row.push_bind(id.to_string())
                        .push_bind(*conversation)
                        .push_bind(kind.to_owned())
                        .push_bind("agent")
                        .push_bind(agent.to_string())
                        .push_bind(None::<String>)
                        .push_bind(data.clone())
                        .push_bind(at);
                });
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        self.insert_stream_events(&stream).await
    }
}
