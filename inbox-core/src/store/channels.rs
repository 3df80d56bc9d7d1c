//! Channels: created through the connectors' registry (CLI, API, admin UI), paused and resumed,
//! edited, deleted softly (their history stays, and a deleted channel can be restored).

use chrono::Utc;
use sqlx::{FromRow, QueryBuilder};

use super::{Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::channel_rules::ChannelRules;
use crate::envelope::ChannelKind;
use crate::ids::ChannelId;
use crate::model::{Channel, from_millis, to_millis};

const COLUMNS: &str =
    "id, kind, name, config, secret, enabled, rules, created_at, deleted_at FROM channels";

#[derive(FromRow)]
struct ChannelRow {
    id: ChannelId,
    kind: String,
    name: String,
    config: String,
    secret: String,
    enabled: bool,
    rules: String,
    created_at: i64,
    deleted_at: Option<i64>,
}

impl TryFrom<ChannelRow> for Channel {
    type Error = StoreError;
    fn try_from(r: ChannelRow) -> StoreResult<Self> {
        Ok(Channel {
            id: r.id,
            kind: ChannelKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("channel kind {}", r.kind)))?,
            name: r.name,
            config: serde_json::from_str(&r.config)
                .map_err(|e| StoreError::Corrupt(format!("channel config: {e}")))?,
            secret: r.secret,
            enabled: r.enabled,
            rules: serde_json::from_str(&r.rules)
                .map_err(|e| StoreError::Corrupt(format!("channel rules: {e}")))?,
            created_at: from_millis(r.created_at),
            deleted_at: r.deleted_at.map(from_millis),
        })
    }
}

/// A channel to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChannel {
    pub kind: ChannelKind,
    pub name: String,
    /// The kind's validated config.
    pub config: serde_json::Value,
    /// The channel's own signing secret (minted by the product; kinds without one get one too,
    /// unused, so every channel can sign).
    pub secret: String,
    pub rules: ChannelRules,
}

/// What an edit changes; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelUpdate {
    pub name: Option<String>,
    pub config: Option<serde_json::Value>,
    pub enabled: Option<bool>,
    pub secret: Option<String>,
    /// `Some(false)` restores a deleted channel.
    pub deleted: Option<bool>,
}

impl Store {
    /// A channel with the default rules (a chat among the channel's own users); channels of
    /// other kinds come through [`Store::add_channel`] with their kind's rules.
    pub async fn create_channel(
        &self,
        kind: ChannelKind,
        name: &str,
        config: serde_json::Value,
        secret: &str,
    ) -> StoreResult<Channel> {
        self.add_channel(NewChannel {
            kind,
            name: name.to_owned(),
            config,
            secret: secret.to_owned(),
            rules: ChannelRules::default(),
        })
        .await
    }

    pub async fn add_channel(&self, new: NewChannel) -> StoreResult<Channel> {
        let channel = Channel {
            id: ChannelId::new(),
            kind: new.kind,
            name: new.name,
            config: new.config,
            secret: new.secret,
            enabled: true,
            rules: new.rules,
            created_at: Utc::now(),
            deleted_at: None,
        };
        let rules = serde_json::to_string(&channel.rules).unwrap_or_default();
        on_pool!(self, pool, Db => sqlx::query::<Db>(
            "INSERT INTO channels (id, kind, name, config, secret, enabled, rules, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(channel.id)
        .bind(channel.kind.as_str())
        .bind(&channel.name)
        .bind(channel.config.to_string())
        .bind(&channel.secret)
        .bind(true)
        .bind(rules)
        .bind(to_millis(channel.created_at))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(channel)
    }

    /// A channel, deleted or not.
    pub async fn channel(&self, id: ChannelId) -> StoreResult<Option<Channel>> {
        let sql = format!("SELECT {COLUMNS} WHERE id = $1");
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, ChannelRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        row.map(Channel::try_from).transpose()
    }

    /// Every channel, the deleted ones included (their conversations still show them).
    pub async fn channels(&self) -> StoreResult<Vec<Channel>> {
        let sql = format!("SELECT {COLUMNS} ORDER BY created_at, id");
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, ChannelRow>(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(Channel::try_from).collect()
    }

    /// Pauses a channel: it stops receiving and sending, its history stays.
    pub async fn disable_channel(&self, id: ChannelId) -> StoreResult<bool> {
        let update = ChannelUpdate {
            enabled: Some(false),
            ..ChannelUpdate::default()
        };
        Ok(self.update_channel(id, &update).await?.is_some())
    }

    /// Applies an edit; `None` when there is no such channel.
    pub async fn update_channel(
        &self,
        id: ChannelId,
        update: &ChannelUpdate,
    ) -> StoreResult<Option<Channel>> {
        let now = to_millis(Utc::now());
        let done = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new("UPDATE channels SET updated_at = ");
            qb.push_bind(now);
            if let Some(name) = &update.name {
                qb.push(", name = ").push_bind(name.clone());
            }
            if let Some(config) = &update.config {
                qb.push(", config = ").push_bind(config.to_string());
            }
            if let Some(enabled) = update.enabled {
                qb.push(", enabled = ").push_bind(enabled);
            }
            if let Some(secret) = &update.secret {
                qb.push(", secret = ").push_bind(secret.clone());
            }
            match update.deleted {
                Some(true) => {
                    qb.push(", deleted_at = COALESCE(deleted_at, ").push_bind(now).push(")");
                }
                Some(false) => {
                    qb.push(", deleted_at = NULL");
                }
                None => {}
            }
            qb.push(" WHERE id = ").push_bind(id);
            qb.build().execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Ok(None);
        }
        self.channel(id).await
    }

    /// Deletes a channel softly: it neither receives nor sends; its conversations stay.
    pub async fn delete_channel(&self, id: ChannelId) -> StoreResult<bool> {
        let update = ChannelUpdate {
            deleted: Some(true),
            ..ChannelUpdate::default()
        };
        Ok(self.update_channel(id, &update).await?.is_some())
    }
}

impl StoreTx {
    pub(crate) async fn channels_by_ids(&mut self, ids: &[ChannelId]) -> StoreResult<Vec<Channel>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = on_tx!(self, conn, Db => {
            let mut qb = QueryBuilder::<Db>::new("SELECT ");
            qb.push(COLUMNS).push(" WHERE id IN (");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            qb.push(")");
            qb.build_query_as::<ChannelRow>().fetch_all(&mut *conn).await
        })?;
        rows.into_iter().map(Channel::try_from).collect()
    }
}
