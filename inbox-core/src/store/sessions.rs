//! Agents' browser sessions: opened at sign-in, listed on the agents page, ended at sign-out.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::FromRow;

use super::agents::{AgentRow, token_hash};
use super::{Store, StoreError, StoreResult, on_pool};
use crate::ids::AgentId;
use crate::model::{Agent, from_millis, to_millis};

/// A signed-in browser: the agent and the token forms must send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub agent: Agent,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Where a sign-in came from, kept with its session so the agent can tell their browsers apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    /// The browser's `User-Agent` (cut to [`MAX_USER_AGENT`] characters).
    pub user_agent: Option<String>,
    /// The client's address.
    pub client: Option<String>,
}

/// Longest `User-Agent` kept with a session.
pub const MAX_USER_AGENT: usize = 300;

/// A live session as the agents page lists it: never its token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub agent_id: AgentId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub client: Option<String>,
}

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Store {
    /// Opens a session for the agent; returns the cookie value (shown once, stored hashed).
    pub async fn create_session(
        &self,
        agent_id: AgentId,
        ttl: Duration,
    ) -> StoreResult<(String, Session)> {
        self.create_session_from(agent_id, ttl, &SessionOrigin::default())
            .await
    }

    /// [`Store::create_session`], remembering where the sign-in came from.
    pub async fn create_session_from(
        &self,
        agent_id: AgentId,
        ttl: Duration,
        origin: &SessionOrigin,
    ) -> StoreResult<(String, Session)> {
        let agent = self
            .agent(agent_id)
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        let token = random_token();
        let csrf_token = random_token();
        let now = Utc::now();
        let expires_at = now + ttl;
        let user_agent = origin.user_agent.as_deref().map(|ua| {
            ua.replace('\0', "")
                .chars()
                .take(MAX_USER_AGENT)
                .collect::<String>()
        });
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO sessions
                 (token_hash, agent_id, csrf_token, created_at, expires_at, user_agent, client)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash(&token))
        .bind(agent_id)
        .bind(&csrf_token)
        .bind(to_millis(now))
        .bind(to_millis(expires_at))
        .bind(&user_agent)
        .bind(&origin.client)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok((
            token,
            Session {
                agent,
                csrf_token,
                expires_at: from_millis(to_millis(expires_at)),
            },
        ))
    }

    /// The live session of an enabled agent for this cookie value.
    pub async fn session(&self, token: &str) -> StoreResult<Option<Session>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            agent: AgentRow,
            csrf_token: String,
            expires_at: i64,
        }
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, Row>(
            "SELECT a.id, a.email, a.name, a.role, a.created_at, s.csrf_token, s.expires_at
             FROM sessions s JOIN agents a ON a.id = s.agent_id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL",
        )
        .bind(token_hash(token))
        .bind(to_millis(Utc::now()))
        .fetch_optional(pool)
        .await)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Session {
            agent: Agent::try_from(r.agent)?,
            csrf_token: r.csrf_token,
            expires_at: from_millis(r.expires_at),
        }))
    }

    /// Signs a browser out; expired sessions of anyone are dropped on the way.
    pub async fn delete_session(&self, token: &str) -> StoreResult<()> {
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "DELETE FROM sessions WHERE token_hash = $1 OR expires_at <= $2",
        )
        .bind(token_hash(token))
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The live sessions of one agent (all agents when `agent` is None), newest first.
    pub async fn sessions(&self, agent: Option<AgentId>) -> StoreResult<Vec<SessionInfo>> {
        #[derive(FromRow)]
        struct Row {
            agent_id: AgentId,
            created_at: i64,
            expires_at: i64,
            user_agent: Option<String>,
            client: Option<String>,
        }
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, Row>(
            "SELECT agent_id, created_at, expires_at, user_agent, client FROM sessions
             WHERE ($1 IS NULL OR agent_id = $1) AND expires_at > $2
             ORDER BY created_at DESC",
        )
        .bind(agent)
        .bind(to_millis(Utc::now()))
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| SessionInfo {
                agent_id: r.agent_id,
                created_at: from_millis(r.created_at),
                expires_at: from_millis(r.expires_at),
                user_agent: r.user_agent,
                client: r.client,
            })
            .collect())
    }

    /// Signs the agent out of every browser ("sign out everywhere"); returns how many sessions
    /// ended.
    pub async fn end_sessions(&self, agent: AgentId) -> StoreResult<u64> {
        on_pool!(self, pool, Db => sqlx::query::<Db>("DELETE FROM sessions WHERE agent_id = $1")
            .bind(agent)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(StoreError::from)
    }
}
