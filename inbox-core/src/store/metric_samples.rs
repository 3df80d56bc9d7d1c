//! Response-time samples as stored (docs/metrics.md): written for a conversation from its log,
//! read by reports. `inbox reports rebuild` recomputes them ([`crate::reports::rebuild`]).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, QueryBuilder};

use super::{CHUNK, RollupKey, RowLock, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{AgentId, ChannelId, ConversationId};
use crate::metrics::{Metric, MetricsState, Sample};
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

/// Which samples a report reads: one metric, ended in `[from, to)`, optionally of one channel,
/// agent or label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFilter {
    pub metric: Metric,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub business: bool,
    pub channel: Option<ChannelId>,
    pub agent: Option<AgentId>,
    pub label: Option<String>,
    /// One row per label of the sample's conversation (none for an unlabelled one).
    pub per_label: bool,
}

/// One sample as a report reads it: the duration asked for and what it is grouped by.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReportSample {
    pub ended_at: i64,
    pub channel_id: ChannelId,
    pub agent_id: Option<AgentId>,
    pub label: Option<String>,
    pub seconds: i64,
    /// Which sample it is, when rows repeat per label (else `None`).
    pub conversation_id: Option<ConversationId>,
    pub seq: i64,
    /// 1 or 0 when it had an SLA target.
    pub sla_met: Option<i64>,
}

impl Store {
    /// The samples a report summarises (index on metric and end time).
    pub async fn report_samples(&self, filter: &SampleFilter) -> StoreResult<Vec<ReportSample>> {
        let value = if filter.business {
            "s.business_s"
        } else {
            "s.calendar_s"
        };
        // Rows repeated per label say which sample they are, so it is counted once overall.
        let (label, which) = if filter.per_label {
            ("l.label", "s.conversation_id, s.seq")
        } else {
            (
                "CAST(NULL AS TEXT)",
                "CAST(NULL AS TEXT) AS conversation_id, CAST(0 AS BIGINT) AS seq",
            )
        };
        Ok(on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT s.ended_at, s.channel_id, s.agent_id, {label} AS label, {value} AS seconds,
                     s.sla_met, {which}
                 FROM metric_samples s"
            ));
            if filter.per_label {
                qb.push(" JOIN conversation_labels l ON l.conversation_id = s.conversation_id");
            }
            qb.push(" WHERE s.metric = ")
                .push_bind(filter.metric.id())
                .push(" AND s.ended_at >= ")
                .push_bind(to_millis(filter.from))
                .push(" AND s.ended_at < ")
                .push_bind(to_millis(filter.to));
            if let Some(channel) = filter.channel {
                qb.push(" AND s.channel_id = ").push_bind(channel);
            }
            if let Some(agent) = filter.agent {
                qb.push(" AND s.agent_id = ").push_bind(agent);
            }
            if let Some(label) = &filter.label {
                qb.push(
                    " AND s.conversation_id IN
                       (SELECT conversation_id FROM conversation_labels WHERE label = ",
                )
                .push_bind(label.clone())
                .push(")");
            }
            qb.build_query_as::<ReportSample>().fetch_all(pool).await
        })?)
    }

    /// How many conversations were opened in each quarter hour of `[from, to)` (of one channel,
    /// if given), by the quarter's first ms: every time zone's offset today is a whole number of
    /// quarter hours, so a quarter lies within one local day.
    pub async fn conversations_opened(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        channel: Option<ChannelId>,
    ) -> StoreResult<Vec<(i64, u64)>> {
        let rows = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT (created_at / 900000) * 900000 AS quarter, COUNT(*) AS opened
                 FROM conversations WHERE created_at >= ",
            );
            qb.push_bind(to_millis(from))
                .push(" AND created_at < ")
                .push_bind(to_millis(to));
            if let Some(channel) = channel {
                qb.push(" AND channel_id = ").push_bind(channel);
            }
            qb.push(" GROUP BY quarter");
            qb.build_query_as::<(i64, i64)>().fetch_all(pool).await
        })?;
        Ok(rows
            .into_iter()
            .map(|(quarter, n)| (quarter, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}

/// Where a conversation's log has been read to by the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadState {
    pub state: MetricsState,
    /// The last log row read, by (time in ms, id): the order the timeline sorts by.
    pub last: (i64, String),
    pub next_seq: i64,
}

/// A conversation the metrics are about to read, with its channel and how far they have.
pub(crate) struct Measured {
    pub id: ConversationId,
    pub channel_id: ChannelId,
    /// Its labels now (which SLA policy applies).
    pub labels: Vec<String>,
    /// Its deadline as stored.
    pub sla_due_at: Option<i64>,
    pub read: Option<ReadState>,
}

#[derive(FromRow)]
struct MeasuredRow {
    id: ConversationId,
    channel_id: ChannelId,
    labels: String,
    sla_due_at: Option<i64>,
    state: Option<String>,
    last_at: Option<i64>,
    last_id: Option<String>,
    next_seq: Option<i64>,
}

impl TryFrom<MeasuredRow> for Measured {
    type Error = StoreError;

    fn try_from(r: MeasuredRow) -> StoreResult<Self> {
        let read = match (r.state, r.last_at, r.last_id, r.next_seq) {
            (Some(state), Some(at), Some(id), Some(next_seq)) => Some(ReadState {
                state: serde_json::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(format!("metric state: {e}")))?,
                last: (at, id),
                next_seq,
            }),
            _ => None,
        };
        Ok(Measured {
            id: r.id,
            channel_id: r.channel_id,
            labels: serde_json::from_str(&r.labels)
                .map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?,
            sla_due_at: r.sla_due_at,
            read,
        })
    }
}

/// A sample with its place among its conversation's samples.
pub(crate) struct NumberedSample {
    pub conversation: ConversationId,
    pub channel: ChannelId,
    pub seq: i64,
    pub sample: Sample,
    /// Whether it met its SLA target (`None`: no target).
    pub sla_met: Option<bool>,
}

impl StoreTx {
    /// The conversations (locked for this transaction) with how far their logs have been read.
    pub(crate) async fn measured(&mut self, ids: &[ConversationId]) -> StoreResult<Vec<Measured>> {
        let lock = self.row_lock(RowLock::NoKeyUpdate);
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT c.id, c.channel_id, c.labels, c.sla_due_at, s.state, s.last_at, s.last_id,
                         s.next_seq
                     FROM conversations c LEFT JOIN metric_states s ON s.conversation_id = c.id
                     WHERE c.id IN (",
                );
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(") ORDER BY c.id");
                qb.push(lock);
                qb.build_query_as::<MeasuredRow>().fetch_all(&mut *conn).await
            })?;
            for row in rows {
                found.push(Measured::try_from(row)?);
            }
        }
        Ok(found)
    }

    /// Drops the samples of some conversations (before they are measured again from scratch);
    /// returns the roll-ups they were in.
    pub(crate) async fn delete_metric_samples(
        &mut self,
        ids: &[ConversationId],
    ) -> StoreResult<Vec<RollupKey>> {
        let mut dropped = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = on_tx!(self, conn, Db => {
                let mut qb =
                    QueryBuilder::<Db>::new("DELETE FROM metric_samples WHERE conversation_id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(") RETURNING metric, ended_at");
                qb.build_query_as::<(String, i64)>().fetch_all(&mut *conn).await
            })?;
            for (metric, ended_at) in rows {
                let metric = Metric::parse(&metric)
                    .ok_or_else(|| StoreError::Corrupt(format!("metric {metric}")))?;
                dropped.push(RollupKey::of(metric, ended_at));
            }
        }
        Ok(dropped)
    }

    pub(crate) async fn insert_metric_samples(
        &mut self,
        samples: &[NumberedSample],
    ) -> StoreResult<()> {
        for chunk in samples.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO metric_samples (conversation_id, seq, metric, cycle, channel_id,
                         agent_id, started_at, ended_at, calendar_s, business_s, sla_met) ",
                );
                qb.push_values(chunk, |mut row, n| {
                    let s = &n.sample;
                    row.push_bind(n.conversation)
                        .push_bind(n.seq)
                        .push_bind(s.metric.id())
                        .push_bind(i64::from(s.cycle))
                        .push_bind(n.channel)
                        .push_bind(s.agent)
                        .push_bind(to_millis(s.started_at))
                        .push_bind(to_millis(s.ended_at))
                        .push_bind(s.calendar_s)
                        .push_bind(s.business_s)
                        .push_bind(n.sla_met.map(i64::from));
                });
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Stores how far each conversation's log has been read.
    pub(crate) async fn upsert_read_states(
        &mut self,
        states: &[(ConversationId, &ReadState)],
    ) -> StoreResult<()> {
        let encoded = states
            .iter()
            .map(|(id, read)| {
                serde_json::to_string(&read.state)
                    .map(|json| (*id, json, *read))
                    .map_err(|e| StoreError::Corrupt(format!("metric state: {e}")))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        for chunk in encoded.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new(
                    "INSERT INTO metric_states (conversation_id, state, last_at, last_id, next_seq) ",
                );
                qb.push_values(chunk, |mut row, (id, json, read)| {
                    row.push_bind(*id)
                        .push_bind(json.clone())
                        .push_bind(read.last.0)
                        .push_bind(read.last.1.clone())
                        .push_bind(read.next_seq);
                });
                qb.push(
                    " ON CONFLICT (conversation_id) DO UPDATE SET state = excluded.state,
                       last_at = excluded.last_at, last_id = excluded.last_id,
                       next_seq = excluded.next_seq",
                );
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}
