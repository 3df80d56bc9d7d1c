//! Connectors' cursors (an IMAP UID, a Telegram offset, a Mastodon id): where each source goes on
//! after a restart, written only once what precedes it was stored or dead-lettered.

use chrono::Utc;

use super::{Store, StoreResult, on_pool};
use crate::ids::ChannelId;
use crate::model::to_millis;

impl Store {
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
