//! Response-time samples as stored (docs/metrics.md): written for a conversation from its log,
//! read by reports. `inbox reports rebuild` recomputes them ([`crate::reports::rebuild`]).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, QueryBuilder};

use super::{CHUNK, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{AgentId, ChannelId, ConversationId};
use crate::metrics::{Metric, Sample};
use crate::model::{from_millis, to_millis};

#[derive(FromRow)]
struct SampleRow {
    metric: String,
    cycle: i64,
    agent_id: Option<AgentId>,
    started_at: i64,
    ended_at: i64,
    calendar_s: i64,
    business_s: i64,
}

impl TryFrom<SampleRow> for Sample {
    type Error = StoreError;

    fn try_from(r: SampleRow) -> StoreResult<Self> {
        Ok(Sample {
            metric: Metric::parse(&r.metric)
                .ok_or_else(|| StoreError::Corrupt(format!("metric {}", r.metric)))?,
            cycle: u32::try_from(r.cycle)
                .map_err(|_| StoreError::Corrupt(format!("metric cycle {}", r.cycle)))?,
            started_at: from_millis(r.started_at),
            ended_at: from_millis(r.ended_at),
            calendar_s: r.calendar_s,
            business_s: r.business_s,
            agent: r.agent_id,
        })
    }
}

impl Store {
    /// A conversation's samples, in the order they were measured.
    pub async fn metric_samples(&self, conversation: ConversationId) -> StoreResult<Vec<Sample>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, SampleRow>(
            "SELECT metric, cycle, agent_id, started_at, ended_at, calendar_s, business_s
             FROM metric_samples WHERE conversation_id = $1 ORDER BY seq",
        )
        .bind(conversation)
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(Sample::try_from).collect()
    }

    /// Up to `limit` conversations after `after` (id order) with a log row at or after `since`
    /// (all when `None`): what a rebuild goes through, page by page.
    pub async fn conversations_to_measure(
        &self,
        since: Option<DateTime<Utc>>,
        after: Option<ConversationId>,
        limit: u32,
    ) -> StoreResult<Vec<ConversationId>> {
        let since = since.map(to_millis);
        Ok(on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new("SELECT c.id FROM conversations c WHERE 1 = 1");
            if let Some(after) = after {
                qb.push(" AND c.id > ").push_bind(after);
            }
            if let Some(since) = since {
                qb.push(" AND EXISTS (SELECT 1 FROM conversation_events e
                           WHERE e.conversation_id = c.id AND e.at >= ")
                    .push_bind(since)
                    .push(")");
            }
            qb.push(" ORDER BY c.id LIMIT ").push_bind(i64::from(limit));
            qb.build_query_scalar::<ConversationId>().fetch_all(pool).await
        })?)
    }

    /// How many conversations a rebuild from `since` goes through (for its progress bar). With
    /// `since` it reads the log's times without an index: a maintenance command may, the ingest
    /// path should not pay for one more index on every log row.
    pub async fn conversations_to_measure_count(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<i64> {
        let since = since.map(to_millis);
        Ok(on_pool!(self, pool, Db => match since {
            None => sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM conversations")
                .fetch_one(pool)
                .await,
            Some(since) => sqlx::query_scalar::<Db, i64>(
                "SELECT COUNT(DISTINCT conversation_id) FROM conversation_events WHERE at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await,
        })?)
    }
}

impl StoreTx {
    /// Replaces a conversation's samples.
    pub(crate) async fn replace_metric_samples(
        &mut self,
        conversation: ConversationId,
        channel: ChannelId,
        samples: &[Sample],
    ) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "DELETE FROM metric_samples WHERE conversation_id = $1",
        )
        .bind(conversation)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        let numbered: Vec<(i64, &Sample)> = (0_i64..).zip(samples).collect();
        for chunk in numbered.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO metric_samples (conversation_id, seq, metric, cycle, channel_id,
                         agent_id, started_at, ended_at, calendar_s, business_s) ",
                );
                qb.push_values(chunk, |mut row, (seq, s)| {
                    row.push_bind(conversation)
                        .push_bind(*seq)
                        .push_bind(s.metric.id())
                        .push_bind(i64::from(s.cycle))
                        .push_bind(channel)
                        .push_bind(s.agent)
                        .push_bind(to_millis(s.started_at))
                        .push_bind(to_millis(s.ended_at))
                        .push_bind(s.calendar_s)
                        .push_bind(s.business_s);
                });
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}
