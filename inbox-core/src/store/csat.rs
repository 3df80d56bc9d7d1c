//! CSAT as stored: each channel's setting, the surveys sent at resolution, their answers.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, QueryBuilder};

use super::agents::token_hash;
use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::ids::{AgentId, ChannelId, ConversationId};
use crate::model::{from_millis, to_millis};

/// A channel's CSAT setting (off when never set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CsatSettings {
    pub enabled: bool,
    /// How long a survey link can be answered.
    pub expiry_hours: i64,
}

impl Default for CsatSettings {
    fn default() -> Self {
        CsatSettings {
            enabled: false,
            expiry_hours: 7 * 24,
        }
    }
}

/// A survey as its public page sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub id: String,
    pub conversation_id: ConversationId,
    pub expires_at: DateTime<Utc>,
    pub rating: Option<i64>,
    pub answered_at: Option<DateTime<Utc>>,
}

/// A survey to store (its token only hashed).
pub(crate) struct NewSurvey<'a> {
    pub id: String,
    pub token: &'a str,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub agent_id: Option<AgentId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One answer, as reports read it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CsatAnswer {
    pub answered_at: i64,
    pub channel_id: ChannelId,
    pub agent_id: Option<AgentId>,
    pub rating: i64,
}

#[derive(FromRow)]
struct SurveyRow {
    id: String,
    conversation_id: ConversationId,
    expires_at: i64,
    rating: Option<i64>,
    answered_at: Option<i64>,
}

impl From<SurveyRow> for Survey {
    fn from(r: SurveyRow) -> Self {
        Survey {
            id: r.id,
            conversation_id: r.conversation_id,
            expires_at: from_millis(r.expires_at),
            rating: r.rating,
            answered_at: r.answered_at.map(from_millis),
        }
    }
}

#[derive(FromRow)]
struct SettingsRow {
    enabled: i64,
    expiry_hours: i64,
}

const SETTINGS: &str = "SELECT enabled, expiry_hours FROM csat_settings WHERE channel_id = $1";

/// A channel's setting as stored, off when it has none.
fn settings_of(row: Option<SettingsRow>) -> CsatSettings {
    row.map_or_else(CsatSettings::default, |r| CsatSettings {
        enabled: r.enabled != 0,
        expiry_hours: r.expiry_hours,
    })
}

impl Store {
    pub async fn csat_settings(&self, channel: ChannelId) -> StoreResult<CsatSettings> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, SettingsRow>(SETTINGS)
            .bind(channel)
            .fetch_optional(pool)
            .await)?;
        Ok(settings_of(row))
    }

    pub async fn set_csat_settings(
        &self,
        channel: ChannelId,
        settings: CsatSettings,
    ) -> StoreResult<()> {
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO csat_settings (channel_id, enabled, expiry_hours, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (channel_id) DO UPDATE SET enabled = excluded.enabled,
                 expiry_hours = excluded.expiry_hours, updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(i64::from(settings.enabled))
        .bind(settings.expiry_hours)
        .bind(to_millis(Utc::now()))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The survey a link's token opens, if any.
    pub async fn survey_by_token(&self, token: &str) -> StoreResult<Option<Survey>> {
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, SurveyRow>(
            "SELECT id, conversation_id, expires_at, rating, answered_at FROM csat_surveys
             WHERE token_hash = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(Survey::from))
    }

    /// Every answer given in `[from, to)`, of one channel if asked.
    pub async fn csat_answers(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        channel: Option<ChannelId>,
    ) -> StoreResult<Vec<CsatAnswer>> {
        Ok(on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT answered_at, channel_id, agent_id, rating FROM csat_surveys
                 WHERE answered_at IS NOT NULL AND rating IS NOT NULL AND answered_at >= ",
            );
            qb.push_bind(to_millis(from))
                .push(" AND answered_at < ")
                .push_bind(to_millis(to));
            if let Some(channel) = channel {
                qb.push(" AND channel_id = ").push_bind(channel);
            }
            qb.build_query_as::<CsatAnswer>().fetch_all(pool).await
        })?)
    }
}

impl StoreTx {
    pub(crate) async fn csat_settings(&mut self, channel: ChannelId) -> StoreResult<CsatSettings> {
        let row = on_tx!(self, conn, Db => sqlx::query_as::<Db, SettingsRow>(SETTINGS)
            .bind(channel)
            .fetch_optional(&mut *conn)
            .await)?;
        Ok(settings_of(row))
    }

    pub(crate) async fn insert_survey(&mut self, s: &NewSurvey<'_>) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "INSERT INTO csat_surveys (id, token_hash, conversation_id, channel_id, agent_id,
                 created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id)
        .bind(token_hash(s.token))
        .bind(s.conversation_id)
        .bind(s.channel_id)
        .bind(s.agent_id)
        .bind(to_millis(s.created_at))
        .bind(to_millis(s.expires_at))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records an answer once: false when the survey was answered already.
    pub(crate) async fn answer_survey(
        &mut self,
        id: &str,
        rating: i64,
        comment: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE csat_surveys SET rating = $1, comment = $2, answered_at = $3
             WHERE id = $4 AND answered_at IS NULL",
        )
        .bind(rating)
        .bind(comment)
        .bind(to_millis(at))
        .bind(id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        if updated > 1 {
            return Err(StoreError::Corrupt(format!("survey {id} twice")));
        }
        Ok(updated == 1)
    }
}
