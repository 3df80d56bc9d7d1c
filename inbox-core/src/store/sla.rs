//! SLA policies, each conversation's next deadline, and the breaches the watcher records.

use chrono::Utc;
use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use super::{CHUNK, RowLock, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{ChannelId, ConversationId};
use crate::model::{from_millis, to_millis};
use crate::sla::{Due, SlaPolicy, Target};

/// A policy to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSlaPolicy {
    pub name: String,
    pub channel_id: Option<ChannelId>,
    pub label: Option<String>,
    pub first_reply_s: Option<i64>,
    pub next_reply_s: Option<i64>,
    pub resolution_s: Option<i64>,
    pub business_hours: bool,
}

#[derive(FromRow)]
struct PolicyRow {
    id: String,
    name: String,
    channel_id: Option<ChannelId>,
    label: Option<String>,
    first_reply_s: Option<i64>,
    next_reply_s: Option<i64>,
    resolution_s: Option<i64>,
    business_hours: i64,
    created_at: i64,
}

impl From<PolicyRow> for SlaPolicy {
    fn from(r: PolicyRow) -> Self {
        SlaPolicy {
            id: r.id,
            name: r.name,
            channel_id: r.channel_id,
            label: r.label,
            first_reply_s: r.first_reply_s,
            next_reply_s: r.next_reply_s,
            resolution_s: r.resolution_s,
            business_hours: r.business_hours != 0,
            created_at: from_millis(r.created_at),
        }
    }
}

const SELECT: &str = "SELECT id, name, channel_id, label, first_reply_s, next_reply_s, \
     resolution_s, business_hours, created_at FROM sla_policies ORDER BY created_at, id";

/// A conversation whose deadline passed without a breach recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub conversation_id: ConversationId,
    pub contact_id: crate::ids::ContactId,
    pub due: Due,
}

#[derive(FromRow)]
struct OverdueRow {
    id: ConversationId,
    contact_id: crate::ids::ContactId,
    sla_due_at: i64,
    sla_target: String,
}

impl Store {
    pub async fn sla_policies(&self) -> StoreResult<Vec<SlaPolicy>> {
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, PolicyRow>(SELECT)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(SlaPolicy::from).collect())
    }

    pub async fn add_sla_policy(&self, new: &NewSlaPolicy) -> StoreResult<SlaPolicy> {
        let id = Uuid::now_v7().to_string();
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO sla_policies (id, name, channel_id, label, first_reply_s, next_reply_s,
                 resolution_s, business_hours, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(new.channel_id)
        .bind(&new.label)
        .bind(new.first_reply_s)
        .bind(new.next_reply_s)
        .bind(new.resolution_s)
        .bind(i64::from(new.business_hours))
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        self.sla_policies()
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or(StoreError::NotFound("SLA policy"))
    }

    /// Removes a policy; false when there was none with that id.
    pub async fn delete_sla_policy(&self, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "DELETE FROM sla_policies WHERE id = $1",
        )
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(deleted > 0)
    }
}

impl StoreTx {
    pub(crate) async fn sla_policies(&mut self) -> StoreResult<Vec<SlaPolicy>> {
        let rows = on_tx!(self, conn, Db => sqlx::query_as::<Db, PolicyRow>(SELECT)
            .fetch_all(&mut *conn)
            .await)?;
        Ok(rows.into_iter().map(SlaPolicy::from).collect())
    }

    /// Sets conversations' next deadlines (`None`: no target running).
    pub(crate) async fn set_sla_due(
        &mut self,
        dues: &[(ConversationId, Option<Due>)],
    ) -> StoreResult<()> {
        for chunk in dues.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                // One statement per chunk: a CASE per column keyed by id.
                let mut qb = QueryBuilder::<Db>::new("UPDATE conversations SET sla_due_at = CASE id");
                for (id, due) in chunk {
                    qb.push(" WHEN ").push_bind(*id).push(" THEN ")
                        .push_bind(due.map(|d| to_millis(d.at)));
                }
                qb.push(" END, sla_target = CASE id");
                for (id, due) in chunk {
                    qb.push(" WHEN ").push_bind(*id).push(" THEN ")
                        .push_bind(due.map(|d| d.target.as_str()));
                }
                qb.push(" END WHERE id IN (");
                let mut list = qb.separated(", ");
                for (id, _) in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Up to `limit` conversations (locked) whose deadline is at or before `now` (ms) and not
    /// recorded as breached yet.
    pub(crate) async fn overdue(&mut self, now: i64, limit: u32) -> StoreResult<Vec<Overdue>> {
        let lock = self.row_lock(RowLock::NoKeyUpdate);
        let rows = on_tx!(self, conn, Db => sqlx::query_as::<Db, OverdueRow>(
            sqlx::AssertSqlSafe(format!(
                "SELECT c.id, c.contact_id, c.sla_due_at, c.sla_target FROM conversations c
                 WHERE c.sla_due_at IS NOT NULL AND c.sla_due_at <= $1
                   AND (c.sla_breached_due IS NULL OR c.sla_breached_due <> c.sla_due_at)
                 ORDER BY c.sla_due_at, c.id LIMIT $2{lock}"
            )),
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(Overdue {
                    conversation_id: r.id,
                    contact_id: r.contact_id,
                    due: Due {
                        target: Target::parse(&r.sla_target).ok_or_else(|| {
                            StoreError::Corrupt(format!("SLA target {}", r.sla_target))
                        })?,
                        at: from_millis(r.sla_due_at),
                    },
                })
            })
            .collect()
    }

    /// Records that a conversation's deadline (as it is now) was breached.
    pub(crate) async fn mark_breached(&mut self, conversation: ConversationId) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE conversations SET sla_breached_due = sla_due_at WHERE id = $1",
        )
        .bind(conversation)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
