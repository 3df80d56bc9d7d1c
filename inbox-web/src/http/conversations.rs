//! `/api/v1/conversations`: list, read, reply or note, and change status, assignee and labels.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use inbox_core::actions;
use inbox_core::ids::{AgentId, ChannelId, ConversationId};
use inbox_core::model::{Conversation, ConversationEvent, ConversationStatus};
use inbox_core::store::{
    ConversationFilter, ConversationPage, ConversationPatch, MessagePage, PageCursor,
};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use super::error::parse_json;
use super::{ApiError, CurrentAgent, WebState};

const DEFAULT_PAGE: u32 = 25;

pub fn router() -> Router<WebState> {
    Router::new()
        .route("/api/v1/conversations", get(list))
        .route("/api/v1/conversations/{id}", get(show).patch(update))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(messages).post(post_message),
        )
        .route("/api/v1/conversations/{id}/events", get(events))
}

pub(super) fn parse_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `open`, `pending`, `snoozed`, `resolved` or `all` (the default).
    status: Option<String>,
    /// `me`, `none` (unassigned) or an agent id.
    assignee: Option<String>,
    /// A channel id.
    channel: Option<String>,
    /// Conversations with a message matching this search.
    q: Option<String>,
    /// Conversations carrying this label.
    label: Option<String>,
    /// `true`: only conversations with unread customer messages.
    unread: Option<bool>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

pub(super) fn parse_limit(raw: Option<&str>, max: u32) -> Result<u32, ApiError> {
    match raw {
        None | Some("") => Ok(DEFAULT_PAGE),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", format!("must be 1 to {max}"))),
    }
}

pub(super) fn parse_cursor(
    raw: Option<&str>,
    field: &'static str,
) -> Result<Option<PageCursor>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => PageCursor::decode(raw)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(field, "not a cursor returned by this API")),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of conversations, newest activity first.", body = ConversationPage),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
async fn list(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Query(query): Query<ListQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(ConversationStatus::parse(s).ok_or_else(|| {
            ApiError::invalid("status", "one of open, pending, snoozed, resolved, all")
        })?),
    };
    let assignee = match query.assignee.as_deref() {
        None | Some("") | Some("all") => None,
        Some("me") => Some(Some(agent.id)),
        Some("none") => Some(None),
        Some(id) => Some(Some(id.parse::<AgentId>().map_err(|_| {
            ApiError::invalid("assignee", "me, none, all or an agent id")
        })?)),
    };
    let channel = match query.channel.as_deref() {
        None | Some("") => None,
        Some(id) => Some(
            id.parse::<ChannelId>()
                .map_err(|_| ApiError::invalid("channel", "a channel id"))?,
        ),
    };
    let filter = ConversationFilter {
        status,
        assignee,
        channel,
        q: query.q.filter(|q| !q.trim().is_empty()),
        label: query.label.filter(|l| !l.trim().is_empty()),
        unread_only: query.unread.unwrap_or(false),
    };
    let cursor = parse_cursor(query.cursor.as_deref(), "cursor")?;
    let limit = parse_limit(query.limit.as_deref(), 100)?;
    Ok(Json(
        state
            .store
            .list_conversations(&filter, cursor.as_ref(), limit)
            .await?,
    ))
}

async fn load(state: &WebState, raw_id: &str) -> Result<Conversation, ApiError> {
    let id: ConversationId = parse_id(raw_id, "conversation")?;
    state
        .store
        .conversation(id)
        .await?
        .ok_or(ApiError::NotFound("conversation"))
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id (a UUID).")),
    responses(
        (status = 200, description = "The conversation.", body = Conversation),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn show(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(load(&state, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MessagesQuery {
    /// `next_before` of the previous page: older messages.
    before: Option<String>,
    /// 1 to 500 (default 25).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id (a UUID)."), MessagesQuery),
    responses(
        (status = 200, description = "A page of messages and notes, oldest first.", body = MessagePage),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn messages(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(id): Path<String>,
    Query(query): Query<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let conversation = load(&state, &id).await?;
    let before = parse_cursor(query.before.as_deref(), "before")?;
    let limit = parse_limit(query.limit.as_deref(), 500)?;
    Ok(Json(
        state
            .store
            .messages(conversation.id, before.as_ref(), limit)
            .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/events",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id (a UUID).")),
    responses(
        (status = 200, description = "The conversation log, oldest first.", body = Vec<ConversationEvent>),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn events(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(id): Path<String>,
) -> Result<Json<Vec<ConversationEvent>>, ApiError> {
    let conversation = load(&state, &id).await?;
    Ok(Json(
        state.store.conversation_events(conversation.id).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    text: String,
    /// A private note for agents instead of a reply to the customer.
    #[serde(default)]
    private: bool,
    /// Files uploaded with `POST /api/v1/attachments`, as it answered.
    #[serde(default)]
    attachments: Vec<inbox_core::envelope::AttachmentRef>,
}

#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id (a UUID).")),
    request_body = NewMessage,
    responses(
        (status = 201, description = "The stored reply or note.", body = inbox_core::model::Message),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn post_message(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id: ConversationId = parse_id(&id, "conversation")?;
    let mut input: NewMessage = parse_json(&body)?;
    super::attachments::check_uploads(&state, &mut input.attachments).await?;
    let posted = actions::post_message(
        &state.store,
        id,
        &agent,
        &input.text,
        input.private,
        &input.attachments,
    )
    .await?;
    if posted.outbound.is_some() {
        state.outbox_ready.notify_one();
    }
    state.announce(&posted.domain_events).await;
    Ok((StatusCode::CREATED, Json(posted.message)))
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Patch {
    #[serde(default)]
    status: Option<ConversationStatus>,
    /// An agent id, `"me"`, or `null` to unassign.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assignee: Option<Option<String>>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    snoozed_until: Option<DateTime<Utc>>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation id (a UUID).")),
    request_body = Patch,
    responses(
        (status = 200, description = "The conversation as changed.", body = Conversation),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn update(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Conversation>, ApiError> {
    let id: ConversationId = parse_id(&id, "conversation")?;
    let input: Patch = parse_json(&body)?;
    let assignee = match input.assignee {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) if raw == "me" => Some(Some(agent.id)),
        Some(Some(raw)) => {
            Some(Some(raw.parse::<AgentId>().map_err(|_| {
                ApiError::invalid("assignee", "an agent id, \"me\" or null")
            })?))
        }
    };
    let patch = ConversationPatch {
        status: input.status,
        assignee,
        labels: input.labels,
        snoozed_until: input.snoozed_until,
    };
    let events = actions::update_conversation(&state.store, id, &agent, &patch).await?;
    state.announce(&events).await;
    Ok(Json(
        state
            .store
            .conversation(id)
            .await?
            .ok_or(ApiError::NotFound("conversation"))?,
    ))
}
