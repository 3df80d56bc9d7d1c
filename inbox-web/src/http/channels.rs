//! `/api/v1/channels` (admins only; agents get 403): the channel kinds of this build, and the
//! channels made of them — created, edited, paused and resumed, deleted (softly: history stays, a
//! PATCH `{"deleted":false}` restores), tested and watched. Configs are checked by their kind
//! (the connectors' registry, through the core's catalog port); secrets are write-only.

use crate::http::route_table::RouteTable;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use inbox_core::channel_catalog::{ConnectionReport, KindInfo, mint_secret};
use inbox_core::channel_rules::ChannelRules;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use inbox_core::store::{ChannelHealth, ChannelUpdate, NewChannel};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::conversations::parse_id;
use super::error::parse_json;
use super::{AdminAgent, ApiError, WebState};

/// Longest channel name (characters).
pub const MAX_NAME_CHARS: usize = 100;
/// Shortest operator-chosen signing secret.
const MIN_SECRET_CHARS: usize = 16;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/channel-kinds", kinds)
        .get("/api/v1/channels", list)
        .post("/api/v1/channels", create)
        .get("/api/v1/channels/{id}", show)
        .patch("/api/v1/channels/{id}", update)
        .delete("/api/v1/channels/{id}", remove)
        .post("/api/v1/channels/{id}/test", test)
        .get("/api/v1/channels/{id}/health", health)
}

/// A channel as the API shows it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    #[schema(value_type = String, format = Uuid)]
    pub id: ChannelId,
    #[schema(value_type = String)]
    pub kind: ChannelKind,
    pub name: String,
    /// The kind's settings (secrets are named by environment variable or file, never included).
    #[schema(value_type = Object)]
    pub config: Value,
    /// `active`, `paused` or `deleted`.
    pub state: &'static str,
    pub enabled: bool,
    pub rules: ChannelRules,
    /// Where the kind takes pushes for this channel (a path on this server), if it does.
    pub intake_path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl ChannelView {
    pub fn of(channel: Channel, kind: Option<&KindInfo>) -> Self {
        let state = if channel.deleted_at.is_some() {
            "deleted"
        } else if channel.enabled {
            "active"
        } else {
            "paused"
        };
        ChannelView {
            intake_path: kind
                .and_then(|k| k.intake_path)
                .map(|path| path.replace("{channel_id}", &channel.id.to_string())),
            id: channel.id,
            kind: channel.kind,
            name: channel.name,
            config: channel.config,
            state,
            enabled: channel.enabled,
            rules: channel.rules,
            created_at: channel.created_at,
            deleted_at: channel.deleted_at,
        }
    }
}

/// A channel just created: the view, plus its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: ChannelView,
    /// The signing secret (for kinds that sign); never shown again.
    pub secret: Option<String>,
}

/// How a channel is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthView {
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: ChannelId,
    /// `ok`, `failing`, `idle` (nothing yet), `paused` or `deleted`.
    pub status: &'static str,
    /// The later of the connector's last success and the channel's last stored message.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Seconds since then: the practical lag of a polling source.
    pub seconds_since_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Messages in the channel's conversations.
    pub messages: i64,
    pub delivered: i64,
    pub failed: i64,
    /// Dead letters of the channel still waiting for a replay or a discard.
    pub dead_letters: i64,
}

impl HealthView {
    /// `activity`: messages and the last message's time.
    pub fn of(
        channel: &Channel,
        health: ChannelHealth,
        activity: Option<(i64, DateTime<Utc>)>,
        dead_letters: i64,
    ) -> Self {
        let (messages, last_message) = activity.map(|(n, at)| (n, Some(at))).unwrap_or((0, None));
        let last_success_at = health.last_success(last_message);
        let status = health.status(channel, last_message).as_str();
        HealthView {
            channel_id: channel.id,
            status,
            last_success_at,
            seconds_since_success: last_success_at.map(|at| (Utc::now() - at).num_seconds().max(0)),
            last_error: health.last_error,
            last_error_at: health.last_error_at,
            messages,
            delivered: health.delivered,
            failed: health.failed,
            dead_letters,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannelBody {
    /// A kind of this build (`GET /api/v1/channel-kinds`).
    kind: String,
    name: String,
    /// The kind's settings.
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    name: Option<String>,
    /// Replaces the whole config (checked by the kind).
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// `false` pauses (intake refuses retryably, the source stops), `true` resumes.
    enabled: Option<bool>,
    /// A new signing secret (write-only; at least 16 characters).
    secret: Option<String>,
    /// `false` restores a deleted channel.
    deleted: Option<bool>,
}

/// A name as stored: trimmed, 1 to 100 characters.
pub fn parse_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}

/// Creates a channel of `kind` after its kind checked the config; returns it and its secret.
pub async fn create_channel(
    state: &WebState,
    kind: &str,
    name: &str,
    config: &Value,
) -> Result<CreatedChannel, ApiError> {
    let kind: ChannelKind = kind
        .parse()
        .map_err(|e: String| ApiError::invalid("kind", e))?;
    let name = parse_name(name)?;
    let info = state
        .catalog
        .kind(kind)
        .ok_or_else(|| ApiError::invalid("kind", format!("this build has no {kind} kind")))?;
    let valid = state
        .catalog
        .validate(kind, config)
        .map_err(|e| ApiError::invalid(format!("config.{}", e.field), e.message))?;
    let secret = mint_secret();
    let channel = state
        .store
        .add_channel(NewChannel {
            kind,
            name,
            config: valid.config,
            secret: secret.clone(),
            rules: valid.rules,
        })
        .await?;
    tracing::info!(channel_id = %channel.id, %kind, "Channel created.");
    Ok(CreatedChannel {
        secret: info.uses_secret.then_some(secret),
        channel: ChannelView::of(channel, Some(&info)),
    })
}

pub(super) async fn channel_of(state: &WebState, raw_id: &str) -> Result<Channel, ApiError> {
    let id: ChannelId = parse_id(raw_id, "channel")?;
    state
        .store
        .channel(id)
        .await?
        .ok_or(ApiError::NotFound("channel"))
}

fn view(state: &WebState, channel: Channel) -> ChannelView {
    let kind = state.catalog.kind(channel.kind);
    ChannelView::of(channel, kind.as_ref())
}

/// The channel kinds of this build, with their config fields.
#[utoipa::path(
    get,
    path = "/api/v1/channel-kinds",
    tag = "channels",
    responses(
        (status = 200, description = "Every kind, with its config fields.", body = Vec<KindInfo>),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
    )
)]
async fn kinds(State(state): State<WebState>, _admin: AdminAgent) -> Json<Vec<KindInfo>> {
    Json(state.catalog.kinds())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Include deleted channels.
    deleted: Option<bool>,
}

/// Every channel that is not deleted (`?deleted=true`: the deleted ones too).
#[utoipa::path(
    get,
    path = "/api/v1/channels",
    tag = "channels",
    params(ListQuery),
    responses(
        (status = 200, description = "`{\"channels\": [...]}`, oldest first.", body = Object),
        (status = 400, description = "A bad parameter; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
    )
)]
async fn list(
    State(state): State<WebState>,
    _admin: AdminAgent,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let deleted = query.deleted.unwrap_or(false);
    let channels: Vec<ChannelView> = state
        .store
        .channels()
        .await?
        .into_iter()
        .filter(|c| deleted || c.deleted_at.is_none())
        .map(|c| view(&state, c))
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

/// Adds a channel; the answer carries its signing secret this once.
#[utoipa::path(
    post,
    path = "/api/v1/channels",
    tag = "channels",
    request_body = NewChannelBody,
    responses(
        (status = 201, description = "The channel, with `secret` shown this once.", body = CreatedChannel),
        (status = 400, description = "A bad parameter or body; `field` names it (`config.smtp_port`).", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
    )
)]
async fn create(
    State(state): State<WebState>,
    _admin: AdminAgent,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let input: NewChannelBody = parse_json(&body)?;
    let created = create_channel(&state, &input.kind, &input.name, &input.config).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/api/v1/channels/{id}",
    tag = "channels",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    responses(
        (status = 200, description = "The channel (deleted ones too).", body = ChannelView),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn show(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    Ok(Json(view(&state, channel)))
}

/// Renames, reconfigures, pauses/resumes, rotates the secret or restores a channel. Takes effect
/// without a restart: its source restarts with the new config within seconds.
#[utoipa::path(
    patch,
    path = "/api/v1/channels/{id}",
    tag = "channels",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    request_body = ChannelPatch,
    responses(
        (status = 200, description = "The channel as it is now.", body = ChannelView),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn update(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    let patch: ChannelPatch = parse_json(&body)?;
    let config = match &patch.config {
        Some(config) => Some(
            state
                .catalog
                .validate(channel.kind, config)
                .map_err(|e| ApiError::invalid(format!("config.{}", e.field), e.message))?
                .config,
        ),
        None => None,
    };
    if let Some(secret) = &patch.secret
        && secret.trim().chars().count() < MIN_SECRET_CHARS
    {
        return Err(ApiError::invalid(
            "secret",
            format!("at least {MIN_SECRET_CHARS} characters"),
        ));
    }
    if patch.deleted == Some(true) {
        return Err(ApiError::invalid(
            "deleted",
            "use DELETE to delete a channel",
        ));
    }
    let update = ChannelUpdate {
        name: patch.name.as_deref().map(parse_name).transpose()?,
        config,
        enabled: patch.enabled,
        secret: patch.secret.map(|s| s.trim().to_owned()),
        deleted: patch.deleted,
    };
    let channel = state
        .store
        .update_channel(channel.id, &update)
        .await?
        .ok_or(ApiError::NotFound("channel"))?;
    tracing::info!(channel_id = %channel.id, enabled = channel.enabled, "Channel changed.");
    Ok(Json(view(&state, channel)))
}

/// Deletes a channel: it neither receives nor sends; its conversations and messages stay.
#[utoipa::path(
    delete,
    path = "/api/v1/channels/{id}",
    tag = "channels",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    responses(
        (status = 204, description = "Deleted (its history stays)."),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn remove(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let channel = channel_of(&state, &id).await?;
    state.store.delete_channel(channel.id).await?;
    tracing::info!(channel_id = %channel.id, "Channel deleted.");
    Ok(StatusCode::NO_CONTENT)
}

/// Logs in / shakes hands with the channel's servers and reports each step.
#[utoipa::path(
    post,
    path = "/api/v1/channels/{id}/test",
    tag = "channels",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    responses(
        (status = 200, description = "What works and what does not.", body = ConnectionReport),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn test(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<Json<ConnectionReport>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    Ok(Json(state.catalog.test(&channel).await))
}

/// How a channel is doing: last success, last error, deliveries, dead letters.
#[utoipa::path(
    get,
    path = "/api/v1/channels/{id}/health",
    tag = "channels",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    responses(
        (status = 200, description = "The channel's health.", body = HealthView),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage channels.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn health(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<Json<HealthView>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    let health = state
        .store
        .channel_health()
        .await?
        .remove(&channel.id)
        .unwrap_or_default();
    let activity = state.store.channel_activity().await?.remove(&channel.id);
    let dead = state
        .store
        .open_dead_letter_counts()
        .await?
        .remove(&Some(channel.id))
        .unwrap_or(0);
    Ok(Json(HealthView::of(&channel, health, activity, dead)))
}
