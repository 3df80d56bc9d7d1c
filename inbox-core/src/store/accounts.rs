//! Agents, their browser sessions and API tokens, and the channels' health as reported by the
//! connectors: what the sign-in and admin pages need.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::FromRow;

use super::queries::{AgentRow, token_hash};
use super::{Store, StoreError, StoreResult, on_pool};
use crate::ids::{AgentId, ChannelId};
use crate::model::{Agent, Role, from_millis, to_millis};

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

/// An agent as the admin pages list them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSummary {
    pub agent: Agent,
    pub disabled: bool,
    pub has_password: bool,
}

/// An API token without its secret (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiTokenInfo {
    pub id: String,
    pub agent_id: AgentId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

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

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Store {
    // --- sessions -----------------------------------------------------------------------------

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

    /// The password hash of an enabled agent, for sign-in.
    pub async fn login_candidate(&self, email: &str) -> StoreResult<Option<(Agent, String)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            agent: AgentRow,
            password_hash: Option<String>,
        }
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, Row>(
            "SELECT id, email, name, role, created_at, password_hash FROM agents
             WHERE lower(email) = lower($1) AND disabled_at IS NULL",
        )
        .bind(email.trim())
        .fetch_optional(pool)
        .await)?;
        let Some(r) = row else { return Ok(None) };
        let Some(hash) = r.password_hash else {
            return Ok(None);
        };
        Ok(Some((Agent::try_from(r.agent)?, hash)))
    }

    // --- agents (admin) -----------------------------------------------------------------------

    pub async fn agents(&self) -> StoreResult<Vec<AgentSummary>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            agent: AgentRow,
            disabled_at: Option<i64>,
            has_password: bool,
        }
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, Row>(
            "SELECT id, email, name, role, created_at, disabled_at,
                    (password_hash IS NOT NULL) AS has_password
             FROM agents ORDER BY name, email",
        )
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(AgentSummary {
                    agent: Agent::try_from(r.agent)?,
                    disabled: r.disabled_at.is_some(),
                    has_password: r.has_password,
                })
            })
            .collect()
    }

    pub async fn set_agent_role(&self, id: AgentId, role: Role) -> StoreResult<()> {
        let done = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE agents SET role = $1 WHERE id = $2",
        )
        .bind(role.as_str())
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        Ok(())
    }

    /// Disables or re-enables an agent. Disabling ends their sessions and revokes their API
    /// tokens for good: re-enabling gives back the account, not old credentials (they may have
    /// leaked while it was off), so the agent signs in again and gets new tokens.
    pub async fn set_agent_disabled(&self, id: AgentId, disabled: bool) -> StoreResult<()> {
        let now = to_millis(Utc::now());
        let at = disabled.then_some(now);
        let done = on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query::<Db>("UPDATE agents SET disabled_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if disabled {
                sqlx::query::<Db>("DELETE FROM sessions WHERE agent_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query::<Db>(
                    "UPDATE api_tokens SET revoked_at = $1
                     WHERE agent_id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(done)
        })?;
        if done == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        Ok(())
    }

    // --- API tokens ---------------------------------------------------------------------------

    /// Every token (all agents when `agent` is None), newest first.
    pub async fn api_tokens(&self, agent: Option<AgentId>) -> StoreResult<Vec<ApiTokenInfo>> {
        #[derive(FromRow)]
        struct Row {
            id: String,
            agent_id: AgentId,
            name: String,
            created_at: i64,
            last_used_at: Option<i64>,
            revoked_at: Option<i64>,
        }
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, Row>(
            "SELECT id, agent_id, name, created_at, last_used_at, revoked_at FROM api_tokens
             WHERE $1 IS NULL OR agent_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(agent)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| ApiTokenInfo {
                id: r.id,
                agent_id: r.agent_id,
                name: r.name,
                created_at: from_millis(r.created_at),
                last_used_at: r.last_used_at.map(from_millis),
                revoked_at: r.revoked_at.map(from_millis),
            })
            .collect())
    }

    pub async fn revoke_api_token(&self, id: &str) -> StoreResult<()> {
        let done = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(to_millis(Utc::now()))
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound("token"));
        }
        Ok(())
    }

    // --- channel health -----------------------------------------------------------------------

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
