//! The metric roll-ups as stored ([`crate::reports::rollup`]): one row per metric and UTC hour,
//! kept equal to that hour's samples by the transaction that changes them.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{FromRow, QueryBuilder};

use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{AgentId, ChannelId};
use crate::metrics::Metric;
use crate::reports::rollup::{HOUR_MS, RolledSample, Rollup, hour_of, pack};

/// Roll-ups rewritten per transaction when many are (a backfill, the end of a rebuild).
const REFRESH_PAGE: usize = 500;

/// A roll-up: a metric's hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RollupKey {
    pub metric: Metric,
    /// The hour's first ms.
    pub hour: i64,
}

impl RollupKey {
    /// The roll-up holding a sample of `metric` that ended at `ended_at` (ms).
    pub(crate) fn of(metric: Metric, ended_at: i64) -> RollupKey {
        RollupKey {
            metric,
            hour: hour_of(ended_at),
        }
    }

    fn lock_key(&self) -> String {
        format!("rollup:{}:{}", self.metric.id(), self.hour)
    }
}

/// How a transaction changed the samples: the hours it dropped samples from are rewritten from
/// their samples; those it only added to get the new samples merged into what is stored.
#[derive(Debug, Default)]
pub(crate) struct RollupChanges {
    pub dropped: BTreeSet<RollupKey>,
    pub added: BTreeMap<RollupKey, Vec<RolledSample>>,
}

impl RollupChanges {
    /// Every hour changed.
    pub(crate) fn keys(&self) -> impl Iterator<Item = RollupKey> + '_ {
        self.dropped.iter().chain(self.added.keys()).copied()
    }
}

/// A stored roll-up, as reports read it.
#[derive(Debug, FromRow)]
pub(crate) struct RollupRow {
    pub hour: i64,
    pub data: Vec<u8>,
}

#[derive(FromRow)]
struct HourSample {
    ended_at: i64,
    calendar_s: i64,
    business_s: i64,
    channel_id: ChannelId,
    agent_id: Option<AgentId>,
    sla_met: Option<i64>,
}

#[derive(FromRow)]
struct SampledHour {
    metric: String,
    hour: i64,
}

impl Store {
    /// The roll-ups of `metric` for the hours that hold instants in `[from, to)` (ms), in order.
    pub(crate) async fn rollups(
        &self,
        metric: Metric,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<RollupRow>> {
        Ok(on_pool!(self, pool, Db => sqlx::query_as::<Db, RollupRow>(
            "SELECT hour, data FROM metric_rollups
             WHERE metric = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
        )
        .bind(metric.id())
        .bind(hour_of(from))
        .bind(to)
        .fetch_all(pool)
        .await)?)
    }

    /// Writes the roll-ups of a database whose samples were stored before roll-ups were kept
    /// (migrated from before 0014): once, when there are samples and no roll-up at all.
    pub(crate) async fn backfill_rollups(&self) -> StoreResult<u64> {
        let needed: bool = on_pool!(self, pool, Db => sqlx::query_scalar::<Db, bool>(
            "SELECT EXISTS (SELECT 1 FROM metric_samples)
                 AND NOT EXISTS (SELECT 1 FROM metric_rollups)",
        )
        .fetch_one(pool)
        .await)?;
        if !needed {
            return Ok(0);
        }
        let hours = on_pool!(self, pool, Db => sqlx::query_as::<Db, SampledHour>(
            "SELECT DISTINCT metric, (ended_at / 3600000) * 3600000 AS hour FROM metric_samples",
        )
        .fetch_all(pool)
        .await)?;
        let keys = hours
            .into_iter()
            .map(|h| {
                Metric::parse(&h.metric)
                    .map(|metric| RollupKey {
                        metric,
                        hour: h.hour,
                    })
                    .ok_or_else(|| StoreError::Corrupt(format!("metric {}", h.metric)))
            })
            .collect::<StoreResult<BTreeSet<_>>>()?;
        self.refresh_rollups(&keys).await?;
        Ok(keys.len() as u64)
    }

    /// Rewrites many roll-ups, a page of them per transaction.
    pub(crate) async fn refresh_rollups(&self, keys: &BTreeSet<RollupKey>) -> StoreResult<()> {
        let keys: Vec<RollupKey> = keys.iter().copied().collect();
        for page in keys.chunks(REFRESH_PAGE) {
            let mut tx = self.begin().await?;
            tx.rewrite_rollups(page).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

impl StoreTx {
    /// Brings the roll-ups of the hours a transaction changed up to date. On PostgreSQL each is
    /// locked first, so a concurrent transaction changing the same hour waits and then reads
    /// what this one committed: the stored roll-up is always its hour's committed samples.
    pub(crate) async fn refresh_rollups(&mut self, changes: RollupChanges) -> StoreResult<()> {
        let keys: BTreeSet<RollupKey> = changes.keys().collect();
        let locks: Vec<String> = keys.iter().map(RollupKey::lock_key).collect();
        self.lock_keys(&locks).await?;
        for (key, added) in changes.added {
            if changes.dropped.contains(&key) {
                continue;
            }
            match self.stored_rollup(key).await? {
                Some(mut samples) => {
                    samples.extend(added);
                    self.write_rollup(key, &samples).await?;
                }
                None => self.rewrite_rollup(key).await?,
            }
        }
        for key in changes.dropped {
            self.rewrite_rollup(key).await?;
        }
        Ok(())
    }

    /// Rewrites each roll-up from its hour's samples, locked as above.
    pub(crate) async fn rewrite_rollups(&mut self, keys: &[RollupKey]) -> StoreResult<()> {
        let keys: BTreeSet<RollupKey> = keys.iter().copied().collect();
        let locks: Vec<String> = keys.iter().map(RollupKey::lock_key).collect();
        self.lock_keys(&locks).await?;
        for key in keys {
            self.rewrite_rollup(key).await?;
        }
        Ok(())
    }

    async fn rewrite_rollup(&mut self, key: RollupKey) -> StoreResult<()> {
        let samples = self.hour_samples(key).await?;
        self.write_rollup(key, &samples).await
    }

    /// The samples of a stored roll-up (`None`: none stored).
    async fn stored_rollup(&mut self, key: RollupKey) -> StoreResult<Option<Vec<RolledSample>>> {
        let data = on_tx!(self, conn, Db => sqlx::query_scalar::<Db, Vec<u8>>(
            "SELECT data FROM metric_rollups WHERE metric = $1 AND hour = $2",
        )
        .bind(key.metric.id())
        .bind(key.hour)
        .fetch_optional(&mut *conn)
        .await)?;
        data.map(|data| {
            Rollup::parse(key.hour, &data)
                .map(|r| r.samples())
                .map_err(|e| StoreError::Corrupt(format!("roll-up {}: {e}", key.hour)))
        })
        .transpose()
    }

    async fn write_rollup(&mut self, key: RollupKey, samples: &[RolledSample]) -> StoreResult<()> {
        if samples.is_empty() {
            on_tx!(self, conn, Db => sqlx::query::<Db>(
                "DELETE FROM metric_rollups WHERE metric = $1 AND hour = $2",
            )
            .bind(key.metric.id())
            .bind(key.hour)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected()))?;
            return Ok(());
        }
        let data = pack(key.hour, samples);
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "INSERT INTO metric_rollups (metric, hour, samples, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (metric, hour) DO UPDATE
             SET samples = excluded.samples, data = excluded.data",
        )
        .bind(key.metric.id())
        .bind(key.hour)
        .bind(samples.len() as i64)
        .bind(data)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The samples of one metric's hour (a range read on the covering report index).
    async fn hour_samples(&mut self, key: RollupKey) -> StoreResult<Vec<RolledSample>> {
        let rows = on_tx!(self, conn, Db => {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT ended_at, calendar_s, business_s, channel_id, agent_id, sla_met
                 FROM metric_samples WHERE metric = ",
            );
            qb.push_bind(key.metric.id())
                .push(" AND ended_at >= ")
                .push_bind(key.hour)
                .push(" AND ended_at < ")
                .push_bind(key.hour + HOUR_MS)
                .push(" ORDER BY ended_at");
            qb.build_query_as::<HourSample>().fetch_all(&mut *conn).await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| RolledSample {
                ended_at: r.ended_at,
                calendar_s: r.calendar_s,
                business_s: r.business_s,
                channel: r.channel_id,
                agent: r.agent_id,
                sla_met: r.sla_met.map(|m| m != 0),
            })
            .collect())
    }
}
