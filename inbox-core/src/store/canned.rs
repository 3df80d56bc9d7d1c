//! Canned replies: texts an agent inserts in the reply box by typing `/` and a shortcut.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, on_pool};
use crate::ids::AgentId;
use crate::model::{Agent, Role, from_millis, to_millis};

/// Longest shortcut, title and body accepted (characters).
pub const MAX_SHORTCUT_CHARS: usize = 32;
pub const MAX_CANNED_TITLE_CHARS: usize = 200;
pub const MAX_CANNED_BODY_CHARS: usize = 20_000;
/// Most canned replies one listing returns.
const MAX_LISTED: i64 = 500;

/// The id of a canned reply (a UUIDv7, stored as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CannedReplyId(pub Uuid);

impl CannedReplyId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for CannedReplyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CannedReplyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for CannedReplyId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CannedReply {
    pub id: CannedReplyId,
    /// 1 to 32 of `a-z`, `0-9`, `_` and `-`; unique.
    pub shortcut: String,
    pub title: String,
    pub body: String,
    /// Offered to its creator only; a team reply (false) is offered to everyone.
    pub personal: bool,
    pub created_by: Option<AgentId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CannedReply {
    /// Personal replies are their creator's alone; team replies are everyone's.
    pub fn visible_to(&self, agent: &Agent) -> bool {
        !self.personal || self.created_by == Some(agent.id)
    }

    /// Who may change or delete it: its creator, or an admin for a team reply (a personal
    /// reply stays private even from admins; it goes when its creator's account is deleted).
    pub fn changeable_by(&self, agent: &Agent) -> bool {
        self.created_by == Some(agent.id) || (!self.personal && agent.role == Role::Admin)
    }
}

/// What an agent writes when creating or changing a canned reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CannedReplyInput {
    pub shortcut: String,
    pub title: String,
    pub body: String,
    /// Only for its creator (form checkbox `personal=on`).
    #[serde(default, deserialize_with = "checkbox")]
    pub personal: bool,
}

/// A form checkbox: present (`on`, `true`, `1`) or absent.
fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let value = String::deserialize(d)?;
    Ok(matches!(value.as_str(), "on" | "true" | "1"))
}

impl CannedReplyInput {
    /// Trimmed and checked; errors name the field.
    fn validated(&self) -> StoreResult<CannedReplyInput> {
        let shortcut = self.shortcut.trim();
        if !valid_shortcut(shortcut) {
            return Err(StoreError::Invalid {
                field: "shortcut",
                message: format!(
                    "must be 1 to {MAX_SHORTCUT_CHARS} characters of a-z, 0-9, _ and -"
                ),
            });
        }
        let title = self.title.trim();
        if title.is_empty()
            || title.chars().count() > MAX_CANNED_TITLE_CHARS
            || title.contains('\0')
        {
            return Err(StoreError::Invalid {
                field: "title",
                message: format!("must be 1 to {MAX_CANNED_TITLE_CHARS} characters, no NUL"),
            });
        }
        let body = self.body.trim();
        if body.is_empty() || body.chars().count() > MAX_CANNED_BODY_CHARS || body.contains('\0') {
            return Err(StoreError::Invalid {
                field: "body",
                message: format!("must be 1 to {MAX_CANNED_BODY_CHARS} characters, no NUL"),
            });
        }
        Ok(CannedReplyInput {
            shortcut: shortcut.to_owned(),
            title: title.to_owned(),
            body: body.to_owned(),
            personal: self.personal,
        })
    }
}

fn valid_shortcut(shortcut: &str) -> bool {
    (1..=MAX_SHORTCUT_CHARS).contains(&shortcut.len())
        && shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(FromRow)]
struct CannedRow {
    id: String,
    shortcut: String,
    title: String,
    body: String,
    personal: bool,
    created_by: Option<AgentId>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<CannedRow> for CannedReply {
    type Error = StoreError;
    fn try_from(r: CannedRow) -> StoreResult<Self> {
        Ok(CannedReply {
            id: r
                .id
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("canned reply id {}: {e}", r.id)))?,
            shortcut: r.shortcut,
            title: r.title,
            body: r.body,
            personal: r.personal,
            created_by: r.created_by,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

const CANNED_COLUMNS: &str =
    "id, shortcut, title, body, personal, created_by, created_at, updated_at";

fn duplicate(shortcut: &str) -> StoreError {
    StoreError::Invalid {
        field: "shortcut",
        message: format!("a canned reply with shortcut {shortcut} exists already"),
    }
}

impl Store {
    /// Canned replies whose shortcut starts with `prefix` (all for an empty one), by shortcut:
    /// the team's, and the personal ones of `viewer`. The prefix may be typed as in the reply
    /// box: a leading `/` and capitals are fine.
    pub async fn canned_replies(
        &self,
        prefix: &str,
        viewer: Option<AgentId>,
    ) -> StoreResult<Vec<CannedReply>> {
        let prefix = prefix.trim().trim_start_matches('/').to_lowercase();
        if !prefix.is_empty() && !valid_shortcut(&prefix) {
            return Ok(Vec::new());
        }
        // Compared as bytes (substr), not with LIKE (`_` is a wildcard there) nor a range (the
        // PostgreSQL collation would order `-` and `_` its own way).
        let sql = format!(
            "SELECT {CANNED_COLUMNS} FROM canned_replies
             WHERE ($1 = '' OR substr(shortcut, 1, $2) = $1)
               AND (personal = $3 OR created_by = $4)
             LIMIT $5"
        );
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, CannedRow>(sqlx::AssertSqlSafe(sql))
            .bind(&prefix)
            .bind(prefix.len() as i32)
            .bind(false)
            .bind(viewer)
            .bind(MAX_LISTED)
            .fetch_all(pool)
            .await)?;
        let mut replies = rows
            .into_iter()
            .map(CannedReply::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        replies.sort_by(|a, b| a.shortcut.cmp(&b.shortcut));
        Ok(replies)
    }

    pub async fn canned_reply(&self, id: CannedReplyId) -> StoreResult<Option<CannedReply>> {
        let sql = format!("SELECT {CANNED_COLUMNS} FROM canned_replies WHERE id = $1");
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, CannedRow>(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await)?;
        row.map(CannedReply::try_from).transpose()
    }

    /// Stores a new canned reply. A malformed or taken shortcut, an empty title or body are
    /// `Invalid` naming the field.
    pub async fn create_canned_reply(
        &self,
        input: &CannedReplyInput,
        created_by: Option<AgentId>,
    ) -> StoreResult<CannedReply> {
        let input = input.validated()?;
        if input.personal && created_by.is_none() {
            return Err(StoreError::Invalid {
                field: "personal",
                message: "a personal canned reply needs an owner".into(),
            });
        }
        let now = from_millis(to_millis(Utc::now()));
        let reply = CannedReply {
            id: CannedReplyId::new(),
            shortcut: input.shortcut,
            title: input.title,
            body: input.body,
            personal: input.personal,
            created_by,
            created_at: now,
            updated_at: now,
        };
        let result = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO canned_replies
                 (id, shortcut, title, body, personal, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(reply.id.to_string())
        .bind(&reply.shortcut)
        .bind(&reply.title)
        .bind(&reply.body)
        .bind(reply.personal)
        .bind(created_by)
        .bind(to_millis(now))
        .bind(to_millis(now))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()));
        match result.map_err(StoreError::from) {
            Ok(_) => Ok(reply),
            Err(e) if e.is_unique_violation() => Err(duplicate(&reply.shortcut)),
            Err(e) => Err(e),
        }
    }

    /// Replaces a canned reply's shortcut, title and body (validated as on creation).
    pub async fn update_canned_reply(
        &self,
        id: CannedReplyId,
        input: &CannedReplyInput,
    ) -> StoreResult<CannedReply> {
        let input = input.validated()?;
        let result = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE canned_replies SET shortcut = $1, title = $2, body = $3, updated_at = $4
             WHERE id = $5",
        )
        .bind(&input.shortcut)
        .bind(&input.title)
        .bind(&input.body)
        .bind(to_millis(Utc::now()))
        .bind(id.to_string())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()));
        match result.map_err(StoreError::from) {
            Ok(0) => Err(StoreError::NotFound("canned reply")),
            Ok(_) => self
                .canned_reply(id)
                .await?
                .ok_or(StoreError::NotFound("canned reply")),
            Err(e) if e.is_unique_violation() => Err(duplicate(&input.shortcut)),
            Err(e) => Err(e),
        }
    }

    /// Removes a canned reply; false when there was none.
    pub async fn delete_canned_reply(&self, id: CannedReplyId) -> StoreResult<bool> {
        let done = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "DELETE FROM canned_replies WHERE id = $1",
        )
        .bind(id.to_string())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts() {
        for good in ["a", "refund", "order-late_2", &"x".repeat(32)] {
            assert!(valid_shortcut(good), "{good}");
        }
        for bad in [
            "",
            "Refund",
            "re fund",
            "ré",
            "/refund",
            "a.b",
            &"x".repeat(33),
        ] {
            assert!(!valid_shortcut(bad), "{bad}");
        }
    }
}
