//! The reply outbox: replies written in the agent's transaction, relayed to the bus in order,
//! marked once the bus acknowledged them.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::envelope::OutboundMessage;
use crate::ids::MessageId;
use crate::model::{from_millis, to_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub message_id: MessageId,
    pub message: OutboundMessage,
}

impl Store {
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
}

impl StoreTx {
    pub(crate) async fn insert_outbox(&mut self, message: &OutboundMessage) -> StoreResult<()> {
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
}
