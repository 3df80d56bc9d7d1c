//! Business-hours schedules as stored: rows that are only ever added, each from the time it takes
//! effect, for the default or one channel ([`crate::business_hours::Schedules`] composes them).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::business_hours::{BusinessHours, ScheduleChange, ScheduleConfig, Schedules};
use crate::ids::{AgentId, ChannelId};
use crate::model::{from_millis, to_millis};

/// A schedule as configured, with when it took effect (what the API lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleEntry {
    pub channel: Option<ChannelId>,
    pub effective_at: DateTime<Utc>,
    /// `None`: no schedule (the default) or the default again (a channel).
    pub schedule: Option<ScheduleConfig>,
    pub created_by: Option<AgentId>,
    pub created_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct ScheduleRow {
    channel_id: Option<ChannelId>,
    effective_at: i64,
    schedule: Option<String>,
    created_by: Option<AgentId>,
    created_at: i64,
}

impl TryFrom<ScheduleRow> for ScheduleEntry {
    type Error = StoreError;

    fn try_from(r: ScheduleRow) -> StoreResult<Self> {
        let schedule = r
            .schedule
            .map(|json| serde_json::from_str::<ScheduleConfig>(&json))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("business hours: {e}")))?;
        Ok(ScheduleEntry {
            channel: r.channel_id,
            effective_at: from_millis(r.effective_at),
            schedule,
            created_by: r.created_by,
            created_at: from_millis(r.created_at),
        })
    }
}

impl TryFrom<&ScheduleEntry> for ScheduleChange<ChannelId> {
    type Error = StoreError;

    fn try_from(e: &ScheduleEntry) -> StoreResult<Self> {
        let hours = e
            .schedule
            .as_ref()
            .map(BusinessHours::try_from)
            .transpose()
            .map_err(|err| StoreError::Corrupt(format!("business hours: {err}")))?;
        Ok(ScheduleChange {
            channel: e.channel,
            effective: e.effective_at,
            hours,
        })
    }
}

const SELECT: &str =
    "SELECT channel_id, effective_at, schedule, created_by, created_at FROM business_hours";

fn compose(rows: Vec<ScheduleRow>) -> StoreResult<Schedules<ChannelId>> {
    let changes = rows
        .into_iter()
        .map(|row| ScheduleChange::try_from(&ScheduleEntry::try_from(row)?))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Schedules::new(changes))
}

impl Store {
    /// Every schedule change of the default (`None`) or of one channel, oldest first.
    pub async fn schedule_entries(
        &self,
        channel: Option<ChannelId>,
    ) -> StoreResult<Vec<ScheduleEntry>> {
        let rows = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new(SELECT);
            match channel {
                None => qb.push(" WHERE channel_id IS NULL"),
                Some(channel) => qb.push(" WHERE channel_id = ").push_bind(channel),
            };
            qb.push(" ORDER BY effective_at, created_at");
            qb.build_query_as::<ScheduleRow>().fetch_all(pool).await
        })?;
        rows.into_iter().map(ScheduleEntry::try_from).collect()
    }

    /// All schedules, composed per channel (what reports and rebuilds measure with).
    pub async fn schedules(&self) -> StoreResult<Schedules<ChannelId>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, ScheduleRow>(SELECT)
            .fetch_all(pool)
            .await)?;
        compose(rows)
    }

    /// Adds a schedule change for the default (`channel: None`) or one channel.
    pub async fn add_schedule(
        &self,
        channel: Option<ChannelId>,
        effective_at: DateTime<Utc>,
        schedule: Option<&ScheduleConfig>,
        by: Option<AgentId>,
    ) -> StoreResult<()> {
        let schedule = schedule
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("business hours: {e}")))?;
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO business_hours
                 (id, channel_id, effective_at, schedule, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(channel)
        .bind(to_millis(effective_at))
        .bind(schedule)
        .bind(by)
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

impl StoreTx {
    /// All schedules, composed per channel, as this transaction sees them.
    pub(crate) async fn schedules(&mut self) -> StoreResult<Schedules<ChannelId>> {
        let rows = on_tx!(self, conn, Db => sqlx::query_as::<Db, ScheduleRow>(SELECT)
            .fetch_all(&mut *conn)
            .await)?;
        compose(rows)
    }
}
