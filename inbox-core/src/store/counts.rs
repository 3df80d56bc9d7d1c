//! The numbers on the inbox's tabs: conversations per view and status, each count capped so it
//! stays a short index range however big the inbox.

use serde::Serialize;

use super::{Store, StoreResult, on_pool};
use crate::ids::AgentId;

/// The tab counts stop at this many: counting beyond it would cost more than the number is worth
/// (the UI shows "10000+").
pub const COUNT_CAP: i64 = 10_000;

/// Conversations per view, for the tabs. Each count stops at [`COUNT_CAP`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConversationCounts {
    /// Open conversations assigned to the agent.
    pub mine: i64,
    /// Open conversations assigned to nobody.
    pub unassigned: i64,
    /// All open conversations.
    pub all: i64,
    /// Open conversations with messages nobody has read.
    pub unread: i64,
    /// Conversations per status, whoever they are assigned to.
    pub by_status: StatusCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub open: i64,
    pub pending: i64,
    pub snoozed: i64,
    pub resolved: i64,
}

impl Store {
    /// The numbers on the list's tabs for `agent`; each stops at [`COUNT_CAP`]. Every count is a
    /// range of the `(status, assignee_id)` indexes.
    pub async fn conversation_counts(&self, agent: AgentId) -> StoreResult<ConversationCounts> {
        let count = |condition: &str| {
            format!(
                "(SELECT COUNT(*) FROM (SELECT 1 FROM conversations WHERE {condition} \
                 LIMIT {COUNT_CAP}) AS t)"
            )
        };
        let sql = format!(
            "SELECT {}, {}, {}, {}, {}, {}, {}",
            count("status = 'open' AND assignee_id = $1"),
            count("status = 'open' AND assignee_id IS NULL"),
            count("status = 'open'"),
            count("status = 'open' AND unread_count > 0"),
            count("status = 'pending'"),
            count("status = 'snoozed'"),
            count("status = 'resolved'"),
        );
        let (mine, unassigned, open, unread, pending, snoozed, resolved) = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64, i64, i64, i64, i64, i64)>(sqlx::AssertSqlSafe(sql))
                .bind(agent)
                .fetch_one(pool)
                .await
        })?;
        Ok(ConversationCounts {
            mine,
            unassigned,
            all: open,
            unread,
            by_status: StatusCounts {
                open,
                pending,
                snoozed,
                resolved,
            },
        })
    }
}
