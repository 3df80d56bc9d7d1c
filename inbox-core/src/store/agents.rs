//! Agents (their sign-in, roles and enabled state) and their API tokens.

use chrono::Utc;
use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::AgentId;
use crate::model::{Agent, Role, from_millis, to_millis};
use chrono::DateTime;

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

#[derive(FromRow)]
pub(super) struct AgentRow {
    id: AgentId,
    email: String,
    name: String,
    role: String,
    created_at: i64,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> StoreResult<Self> {
        Ok(Agent {
            id: r.id,
            email: r.email,
            name: r.name,
            role: Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("agent role {}", r.role)))?,
            created_at: from_millis(r.created_at),
        })
    }
}

pub(crate) fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    pub async fn create_agent(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
    ) -> StoreResult<Agent> {
        let agent = Agent {
            id: AgentId::new(),
            email: email.to_owned(),
            name: name.to_owned(),
            role,
            created_at: Utc::now(),
        };
        let result = on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO agents (id, email, name, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(agent.id)
        .bind(&agent.email)
        .bind(&agent.name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(to_millis(agent.created_at))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()));
        match result.map_err(StoreError::from) {
            Ok(_) => Ok(agent),
            Err(e) if e.is_unique_violation() => Err(StoreError::Invalid {
                field: "email",
                message: format!("an agent with email {email} exists already"),
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn agent(&self, id: AgentId) -> StoreResult<Option<Agent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, AgentRow>(
            "SELECT id, email, name, role, created_at FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(Agent::try_from).transpose()
    }

    pub async fn agent_count(&self) -> StoreResult<i64> {
        Ok(
            on_pool!(self, pool, Db => sqlx::query_scalar::<Db, i64>("SELECT COUNT(*) FROM agents")
            .fetch_one(pool)
            .await)?,
        )
    }

    /// Stores the hash of a new API token for an agent and returns the token itself, shown once.
    pub async fn create_api_token(&self, agent_id: AgentId, name: &str) -> StoreResult<String> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("inbox_{}", hex::encode(bytes));
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO api_tokens (id, agent_id, name, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(agent_id)
        .bind(name)
        .bind(token_hash(&token))
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(token)
    }

    /// The agent owning a valid, unrevoked token.
    pub async fn agent_by_token(&self, token: &str) -> StoreResult<Option<Agent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, AgentRow>(
            "SELECT a.id, a.email, a.name, a.role, a.created_at
             FROM api_tokens t JOIN agents a ON a.id = t.agent_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND a.disabled_at IS NULL",
        )
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await)?;
        row.map(Agent::try_from).transpose()
    }

    pub async fn agent_by_email(&self, email: &str) -> StoreResult<Option<Agent>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, AgentRow>(
            "SELECT id, email, name, role, created_at FROM agents WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(pool)
        .await)?;
        row.map(Agent::try_from).transpose()
    }

    pub async fn set_password(&self, agent_id: AgentId, password_hash: &str) -> StoreResult<()> {
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "UPDATE agents SET password_hash = $1 WHERE id = $2",
        )
        .bind(password_hash)
        .bind(agent_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
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
}

impl StoreTx {
    pub(crate) async fn agent_exists(&mut self, id: AgentId) -> StoreResult<bool> {
        Ok(on_tx!(self, conn, Db => sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM agents WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await)?
            > 0)
    }
}
