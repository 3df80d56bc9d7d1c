//! What the connectors report about each channel (last success, last error, deliveries), and the
//! status the admin pages and `/readyz` derive from it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreResult, on_pool};
use crate::ids::ChannelId;
use crate::model::{from_millis, to_millis};

/// What a connector last reported about one channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelHealth {
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub delivered: i64,
    pub failed: i64,
}

/// How a channel is doing, all things considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Its latest news is a success.
    Ok,
    /// Its latest news is an error.
    Failing,
    /// Nothing happened yet.
    Idle,
    Paused,
    Deleted,
}

impl ChannelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Ok => "ok",
            ChannelStatus::Failing => "failing",
            ChannelStatus::Idle => "idle",
            ChannelStatus::Paused => "paused",
            ChannelStatus::Deleted => "deleted",
        }
    }
}

impl ChannelHealth {
    /// The later of the connector's last success and the channel's last stored message.
    pub fn last_success(&self, last_message_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        self.last_success_at.max(last_message_at)
    }

    /// The channel's status: the API, the channels page and `/metrics` say the same.
    pub fn status(
        &self,
        channel: &crate::model::Channel,
        last_message_at: Option<DateTime<Utc>>,
    ) -> ChannelStatus {
        let last_success = self.last_success(last_message_at);
        let failing = match (self.last_error_at, last_success) {
            (Some(error), Some(success)) => error > success,
            (Some(_), None) => true,
            _ => false,
        };
        if channel.deleted_at.is_some() {
            ChannelStatus::Deleted
        } else if !channel.enabled {
            ChannelStatus::Paused
        } else if failing {
            ChannelStatus::Failing
        } else if last_success.is_some() {
            ChannelStatus::Ok
        } else {
            ChannelStatus::Idle
        }
    }
}

/// One observation a connector reports about its channel.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthReport {
    /// The source moved on: what it read was accepted by the bus.
    Progress,
    /// A reply was delivered.
    Delivered,
    /// A reply failed for good.
    DeliveryFailed(String),
    /// The source or sink hit an error (it retries).
    Error(String),
}

impl Store {
    pub async fn report_health(
        &self,
        channel: ChannelId,
        report: &HealthReport,
    ) -> StoreResult<()> {
        let now = to_millis(Utc::now());
        let (success, error, delivered, failed): (bool, Option<&str>, i64, i64) = match report {
            HealthReport::Progress => (true, None, 0, 0),
            HealthReport::Delivered => (true, None, 1, 0),
            HealthReport::DeliveryFailed(e) => (false, Some(e), 0, 1),
            HealthReport::Error(e) => (false, Some(e), 0, 0),
        };
        let success_at = success.then_some(now);
        let error_at = error.map(|_| now);
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO channel_health
                 (channel_id, last_success_at, last_error, last_error_at, delivered, failed,
                  updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (channel_id) DO UPDATE SET
                 last_success_at = COALESCE(excluded.last_success_at, channel_health.last_success_at),
                 last_error = COALESCE(excluded.last_error, channel_health.last_error),
                 last_error_at = COALESCE(excluded.last_error_at, channel_health.last_error_at),
                 delivered = channel_health.delivered + excluded.delivered,
                 failed = channel_health.failed + excluded.failed,
                 updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(success_at)
        .bind(error)
        .bind(error_at)
        .bind(delivered)
        .bind(failed)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Messages and latest activity per channel (from the conversations, not the messages: the
    /// admin page must stay cheap with millions of messages).
    pub async fn channel_activity(
        &self,
    ) -> StoreResult<std::collections::HashMap<ChannelId, (i64, DateTime<Utc>)>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, (ChannelId, i64, i64)>(
            "SELECT channel_id, CAST(SUM(message_count) AS BIGINT), MAX(last_message_at)
             FROM conversations GROUP BY channel_id",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, count, last)| (id, (count, from_millis(last))))
            .collect())
    }

    pub async fn channel_health(
        &self,
    ) -> StoreResult<std::collections::HashMap<ChannelId, ChannelHealth>> {
        #[derive(FromRow)]
        struct Row {
            channel_id: ChannelId,
            last_success_at: Option<i64>,
            last_error: Option<String>,
            last_error_at: Option<i64>,
            delivered: i64,
            failed: i64,
        }
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, Row>(
            "SELECT channel_id, last_success_at, last_error, last_error_at, delivered, failed
             FROM channel_health",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.channel_id,
                    ChannelHealth {
                        last_success_at: r.last_success_at.map(from_millis),
                        last_error: r.last_error,
                        last_error_at: r.last_error_at.map(from_millis),
                        delivered: r.delivered,
                        failed: r.failed,
                    },
                )
            })
            .collect())
    }
}
