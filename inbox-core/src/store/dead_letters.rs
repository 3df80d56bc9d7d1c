//! Dead letters: inputs that could not be stored, kept with their error until an operator replays
//! them (after a fix) or discards them. A replay that stores the input resolves the row with a
//! link to the message; one that still fails updates its error, so an input has one row however
//! often it is tried.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{ChannelId, MessageId};
use crate::model::{from_millis, to_millis};

/// Most dead letters one listing returns.
pub const MAX_LISTED: u32 = 500;

/// The id of a dead letter (a UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeadLetterId(pub Uuid);

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for DeadLetterId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(DeadLetterId)
    }
}

/// How a dead letter was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// A replay stored it.
    Stored,
    /// A replay found it stored already (it came in again another way).
    Duplicate,
    /// An operator dropped it.
    Discarded,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::Stored => "stored",
            Resolution::Duplicate => "duplicate",
            Resolution::Discarded => "discarded",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "stored" => Some(Resolution::Stored),
            "duplicate" => Some(Resolution::Duplicate),
            "discarded" => Some(Resolution::Discarded),
            _ => None,
        }
    }
}

/// An input that could not be stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = String, format = Uuid)]
    pub id: DeadLetterId,
    /// Where it came from: `inbound` (the funnel) or `event_outbox` (the change stream).
    pub source: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub channel_id: Option<ChannelId>,
    /// The envelope as received, or where its raw source is (`raw/<sha256>.eml`).
    pub payload: String,
    /// Why it was not stored (the latest attempt's reason).
    pub error: String,
    pub created_at: DateTime<Utc>,
    /// Replays tried so far.
    pub replays: i64,
    pub replayed_at: Option<DateTime<Utc>>,
    /// Set once settled.
    pub resolution: Option<Resolution>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The message it became (stored or duplicate).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub message_id: Option<MessageId>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterFilter {
    pub channel: Option<ChannelId>,
    /// Part of the error text, case-insensitive.
    pub error: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Settled ones too (by default only those still waiting).
    pub include_resolved: bool,
    pub limit: u32,
}

#[derive(FromRow)]
struct DeadLetterRow {
    id: String,
    source: String,
    channel_id: Option<String>,
    payload: String,
    error: String,
    created_at: i64,
    replays: i64,
    replayed_at: Option<i64>,
    resolution: Option<String>,
    resolved_at: Option<i64>,
    message_id: Option<String>,
}

impl TryFrom<DeadLetterRow> for DeadLetter {
    type Error = StoreError;
    fn try_from(r: DeadLetterRow) -> StoreResult<Self> {
        let corrupt =
            |what: &str, value: &str| StoreError::Corrupt(format!("dead letter {what} {value}"));
        Ok(DeadLetter {
            id: r.id.parse().map_err(|_| corrupt("id", &r.id))?,
            source: r.source,
            channel_id: match r.channel_id {
                Some(c) => Some(c.parse().map_err(|_| corrupt("channel", &c))?),
                None => None,
            },
            payload: r.payload,
            error: r.error,
            created_at: from_millis(r.created_at),
            replays: r.replays,
            replayed_at: r.replayed_at.map(from_millis),
            resolution: match r.resolution {
                Some(s) => Some(Resolution::parse(&s).ok_or_else(|| corrupt("resolution", &s))?),
                None => None,
            },
            resolved_at: r.resolved_at.map(from_millis),
            message_id: match r.message_id {
                Some(m) => Some(m.parse().map_err(|_| corrupt("message", &m))?),
                None => None,
            },
        })
    }
}

const COLUMNS: &str = "id, source, channel_id, payload, error, created_at, CAST(replays AS BIGINT) AS replays, \
     replayed_at, resolution, resolved_at, message_id FROM dead_letters";

/// PostgreSQL text cannot hold NUL; dead letters must store whatever they hold, so it is kept
/// escaped.
fn escape(s: &str) -> String {
    s.replace('\0', "\\u0000")
}

impl Store {
    /// Keeps an input that could not even be decoded.
    pub async fn insert_dead_letter(
        &self,
        source: &str,
        channel_id: Option<ChannelId>,
        payload: &str,
        error: &str,
    ) -> StoreResult<DeadLetterId> {
        let mut tx = self.begin().await?;
        let id = tx
            .insert_dead_letter(source, channel_id, payload, error)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The newest `limit` dead letters, settled or not.
    pub async fn dead_letters(&self, limit: u32) -> StoreResult<Vec<DeadLetter>> {
        self.find_dead_letters(&DeadLetterFilter {
            include_resolved: true,
            limit,
            ..DeadLetterFilter::default()
        })
        .await
    }

    /// Dead letters matching `filter`, newest first.
    pub async fn find_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> StoreResult<Vec<DeadLetter>> {
        let limit = i64::from(filter.limit.clamp(1, MAX_LISTED));
        let rows = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new("SELECT ");
            qb.push(COLUMNS).push(" WHERE 1 = 1");
            if let Some(channel) = filter.channel {
                qb.push(" AND channel_id = ").push_bind(channel.to_string());
            }
            if let Some(text) = &filter.error {
                // Stored errors keep NUL escaped (PostgreSQL text cannot hold it): so does the
                // filter, which would otherwise fail the query.
                let pattern = format!(
                    "%{}%",
                    escape(text).to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                );
                qb.push(" AND LOWER(error) LIKE ").push_bind(pattern).push(" ESCAPE '\\'");
            }
            if let Some(since) = filter.since {
                qb.push(" AND created_at >= ").push_bind(to_millis(since));
            }
            if let Some(until) = filter.until {
                qb.push(" AND created_at < ").push_bind(to_millis(until));
            }
            if !filter.include_resolved {
                qb.push(" AND resolution IS NULL");
            }
            qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(limit);
            qb.build_query_as::<DeadLetterRow>().fetch_all(pool).await
        })?;
        rows.into_iter().map(DeadLetter::try_from).collect()
    }

    pub async fn dead_letter(&self, id: DeadLetterId) -> StoreResult<Option<DeadLetter>> {
        let sql = format!("SELECT {COLUMNS} WHERE id = $1");
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, DeadLetterRow>(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await)?;
        row.map(DeadLetter::try_from).transpose()
    }

    /// Drops a dead letter (it stays listed as discarded). False when it is settled already or
    /// does not exist.
    pub async fn discard_dead_letter(&self, id: DeadLetterId) -> StoreResult<bool> {
        let done = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE dead_letters SET resolution = 'discarded', resolved_at = $1
             WHERE id = $2 AND resolution IS NULL",
        )
        .bind(to_millis(Utc::now()))
        .bind(id.to_string())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Dead letters still waiting, per channel (`None`: inputs of no known channel).
    pub async fn open_dead_letter_counts(&self) -> StoreResult<HashMap<Option<ChannelId>, i64>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, (Option<String>, i64)>(
            "SELECT channel_id, COUNT(*) FROM dead_letters WHERE resolution IS NULL GROUP BY channel_id",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(channel, n)| (channel.and_then(|c| c.parse().ok()), n))
            .collect())
    }
}

impl StoreTx {
    pub(crate) async fn insert_dead_letter(
        &mut self,
        source: &str,
        channel_id: Option<ChannelId>,
        payload: &str,
        error: &str,
    ) -> StoreResult<DeadLetterId> {
        let id = DeadLetterId(Uuid::now_v7());
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "INSERT INTO dead_letters (id, source, channel_id, payload, error, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(source)
        .bind(channel_id)
        .bind(escape(payload))
        .bind(escape(error))
        .bind(to_millis(Utc::now()))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(id)
    }

    /// A replay failed again: the row keeps the newest reason.
    pub(crate) async fn replay_failed(&mut self, id: DeadLetterId, error: &str) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE dead_letters SET error = $1, replays = replays + 1, replayed_at = $2 WHERE id = $3",
        )
        .bind(escape(error))
        .bind(to_millis(Utc::now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A replay stored the input (or found it stored): the row is settled with its message.
    pub(crate) async fn replay_settled(
        &mut self,
        id: DeadLetterId,
        resolution: Resolution,
        message: MessageId,
    ) -> StoreResult<()> {
        let now = to_millis(Utc::now());
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE dead_letters SET resolution = $1, resolved_at = $2, message_id = $3,
                 replays = replays + 1, replayed_at = $2
             WHERE id = $4",
        )
        .bind(resolution.as_str())
        .bind(now)
        .bind(message.to_string())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Locks a dead letter for a replay, so two replays of it run one after the other.
    pub(crate) async fn lock_dead_letter(
        &mut self,
        id: DeadLetterId,
    ) -> StoreResult<Option<DeadLetter>> {
        self.lock_keys(&[format!("dead_letter\0{id}")]).await?;
        let sql = format!("SELECT {COLUMNS} WHERE id = $1");
        let row = on_tx!(self, conn, Db => sqlx::query_as::<Db, DeadLetterRow>(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await)?;
        row.map(DeadLetter::try_from).transpose()
    }
}
