//! `/api/v1/conversations`: list, read, reply or note, and change status, assignee and labels.

use crate::http::route_table::RouteTable;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use inbox_core::actions;
use inbox_core::ids::{AgentId, ChannelId, ConversationId};
use inbox_core::model::{Conversation, ConversationEvent, ConversationStatus};
use inbox_core::store::{
    ConversationFilter, ConversationPage, ConversationPatch, ConversationSort, MessagePage,
    PageCursor,
};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use crate::AssigneeFilter;

use super::error::parse_json;
use super::{ApiError, CurrentAgent, WebState};

const DEFAULT_PAGE: u32 = 25;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/conversations", list)
        .get("/api/v1/conversations/{id}", show)
        .patch("/api/v1/conversations/{id}", update)
        .get("/api/v1/conversations/{id}/messages", messages)
        .post("/api/v1/conversations/{id}/messages", post_message)
        .get("/api/v1/conversations/{id}/events", events)
}

pub(super) fn parse_id<T: std::str::FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}

// The values of the list's `status` (only describes the parameter, which is parsed by hand).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code, reason = "only describes the values `list` accepts")]
enum StatusFilter {
    Open,
    Pending,
    Snoozed,
    Resolved,
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `open`, `pending`, `snoozed`, `resolved` or `all` (the default).
    #[param(inline, value_type = Option<StatusFilter>)]
    status: Option<String>,
    /// `me`, `none` (unassigned), `all` (the default) or an agent id.
    #[param(
        pattern = r"^(me|none|all|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    assignee: Option<String>,
    /// A channel id.
    #[param(format = Uuid)]
    channel: Option<String>,
    /// Conversations with a message matching this search.
    q: Option<String>,
    /// Conversations carrying this label.
    label: Option<String>,
    /// `true`: only conversations with unread customer messages.
    unread: Option<bool>,
    /// `recent` (default: newest activity first) or `due` (soonest SLA deadline first, only
    /// conversations with one).
    #[param(pattern = r"^(recent|due)$")]
    sort: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[+-]?[0-9]{1,18}_[^\u0000]*$")]
    cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
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

/// The list's `sort` (the API and the pages).
pub(crate) fn parse_sort(raw: Option<&str>) -> Result<ConversationSort, ApiError> {
    match raw {
        None | Some("") | Some("recent") => Ok(ConversationSort::Recent),
        Some("due") => Ok(ConversationSort::Due),
        Some(_) => Err(ApiError::invalid("sort", "recent or due")),
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
    let assignee = AssigneeFilter::parse(query.assignee.as_deref().unwrap_or(""))
        .ok_or_else(|| ApiError::invalid("assignee", AssigneeFilter::EXPECTED))?
        .for_viewer(agent.id);
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
        sort: parse_sort(query.sort.as_deref())?,
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

pub(crate) async fn load(state: &WebState, raw_id: &str) -> Result<Conversation, ApiError> {
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
    params(("id" = String, Path, format = Uuid, description = "The conversation id (a UUID).")),
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
    #[param(pattern = r"^[+-]?[0-9]{1,18}_[^\u0000]*$")]
    before: Option<String>,
    /// 1 to 500 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = String, Path, format = Uuid, description = "The conversation id (a UUID)."), MessagesQuery),
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
    params(("id" = String, Path, format = Uuid, description = "The conversation id (a UUID).")),
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
    /// 1 to 100000 bytes once leading and trailing whitespace is trimmed; no NUL.
    #[schema(
        min_length = 1,
        max_length = 100_000,
        pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$"
    )]
    text: String,
    /// A private note for agents instead of a reply to the customer.
    #[serde(default)]
    private: bool,
    /// Files uploaded with `POST /api/v1/attachments`, as it answered (at most 20).
    #[serde(default)]
    #[schema(value_type = Vec<NewAttachment>, max_items = 20)]
    attachments: Vec<inbox_core::envelope::AttachmentRef>,
}

/// A file of a reply: the reference `POST /api/v1/attachments` answered.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "only describes what `NewMessage.attachments` takes"
)]
struct NewAttachment {
    /// The name shown and sent; cleaned like the upload's `filename`.
    #[schema(
        pattern = r"^(?:[\s\S]*[/\\])?[^/\\]*[^/\\.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^/\\]*$"
    )]
    name: String,
    content_type: Option<String>,
    /// Ignored: the stored file's size is sent.
    size: Option<u64>,
    /// The upload's blob key (`uploads/…`); the upload must exist.
    #[schema(pattern = r"^uploads/")]
    blob: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = String, Path, format = Uuid, description = "The conversation id (a UUID).")),
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
    /// `snoozed` needs `snoozed_until`.
    #[serde(default)]
    status: Option<ConversationStatus>,
    /// An agent id, `"me"`, or `null` to unassign.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        value_type = Option<String>,
        pattern = r"^(me|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    assignee: Option<Option<String>>,
    /// The whole new set (at most 50); each is trimmed and lower-cased, then 1 to 50 characters
    /// without control characters.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Label>>, max_items = 50)]
    labels: Option<Vec<String>>,
    /// In the future; with `status: snoozed` (which requires it).
    #[serde(default)]
    snoozed_until: Option<DateTime<Utc>>,
}

/// A label as `PATCH` takes it: 1 to 50 characters, not all whitespace, no control characters
/// (only describes the items of `Patch.labels`).
struct Label;

impl utoipa::PartialSchema for Label {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .min_length(Some(1))
            .max_length(Some(50))
            .pattern(Some(r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"))
            .into()
    }
}

impl ToSchema for Label {}

#[utoipa::path(
    patch,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, format = Uuid, description = "The conversation id (a UUID).")),
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
    let links = inbox_core::csat::SurveyLinks {
        base_url: &state.public_url,
    };
    actions::update_conversation_with(&state.store, id, &agent, &patch, Some(links)).await?;
    // A resolution may have queued a survey message.
    state.outbox_ready.notify_one();
    Ok(Json(
        state
            .store
            .conversation(id)
            .await?
            .ok_or(ApiError::NotFound("conversation"))?,
    ))
}
