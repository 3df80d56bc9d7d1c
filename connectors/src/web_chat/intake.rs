//! The widget's public endpoints. No agent session is involved: a visitor proves itself with the
//! tokens of [`super::visitor`], and every call but the script itself is refused from an origin
//! the channel does not list.
//!
//! - `GET /widget.js`: the widget.
//! - `POST /widget/{channel_id}/session`: `{"visitor_token"?, "name"?, "email"?, "user"?}` → the
//!   visitor's token (the one given when valid, else a new one), the chat token, the settings.
//! - `POST /widget/{channel_id}/messages`: header `X-Chat-Token`, `{"client_id", "text"}` → 202
//!   once the bus took it; the same client id again is taken once.
//! - `GET /widget/{channel_id}/stream?chat=<chat token>`: the chat as server-sent events
//!   (`message`), resumed after `Last-Event-ID`.
//! - `POST /widget/{channel_id}/files?name=<file name>`: header `X-Chat-Token`, the file as the
//!   body with its `Content-Type` → 201 with the reference a message then attaches (when the
//!   channel allows uploads).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use inbox_core::envelope::{
    AttachmentRef, BlobRef, Body, InboundEvent, InboundMessage, Party, ThreadHints,
};
use inbox_core::identity::EmailAddress;
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use serde::Deserialize;
use serde_json::json;

use super::KIND;
use super::config::{FormField, WebChatConfig};
use super::limits::Limiter;
use super::log::{Author, ChatKey, ChatLog, Entry, Profile};
use super::visitor::{self, Chat, Claim};
use crate::{IntakeContext, decode_config};

/// The widget, served as it is written (no build step).
const WIDGET_JS: &str = include_str!("widget.js");
/// Largest message a visitor may send, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;
const MAX_BODY_BYTES: usize = 64 * 1024;
/// No upload is read past this (a channel's own limit, `max_upload_bytes`, is at most this).
const MAX_UPLOAD_BYTES: usize = 50 * 1024 * 1024;
/// Files a message may carry.
const MAX_FILES: usize = 10;
/// What visitors may send: pictures, PDFs and plain text (nothing a browser would run).
const UPLOAD_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];
/// How often an open stream looks for entries another instance wrote.
const RELOOK: Duration = Duration::from_secs(2);
/// How often an open stream notes that the visitor is there (for the email fallback).
pub(super) const PRESENCE_EVERY: Duration = Duration::from_secs(30);

/// What the endpoints share.
#[derive(Debug, Clone)]
pub(super) struct Widget {
    ctx: IntakeContext,
    log: ChatLog,
    limits: Arc<Limits>,
}

#[derive(Debug)]
struct Limits {
    /// Messages per chat.
    per_chat: Limiter,
    /// Calls per IP address.
    per_ip: Limiter,
    /// New sessions per IP address.
    sessions: Limiter,
    /// Uploads per chat.
    uploads: Limiter,
}

pub(super) fn router(ctx: IntakeContext, log: ChatLog) -> Router {
    let widget = Widget {
        ctx,
        log,
        limits: Arc::new(Limits {
            per_chat: Limiter::per_minute(30),
            per_ip: Limiter::per_minute(300),
            sessions: Limiter::per_minute(30),
            uploads: Limiter::per_minute(20),
        }),
    };
    Router::new()
        .route("/widget.js", get(script))
        .route(
            "/widget/{channel_id}/session",
            post(session).options(preflight),
        )
        .route(
            "/widget/{channel_id}/messages",
            post(send).options(preflight),
        )
        .route(
            "/widget/{channel_id}/stream",
            get(stream).options(preflight),
        )
        .route(
            "/widget/{channel_id}/files",
            post(upload)
                .options(preflight)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(widget)
}

/// Why a widget call was refused; the JSON names the reason (and the field).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("no web chat channel with this id")]
    UnknownChannel,
    #[error("this channel was deleted")]
    Deleted,
    #[error("this chat is paused; try again later")]
    Paused,
    #[error("this site may not use this chat")]
    Origin,
    #[error("the chat token is missing or not valid; start a new session")]
    Token,
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("too many messages; wait {0} s")]
    TooMany(u64),
    #[error("this chat takes no files")]
    UploadsOff,
    #[error("the file is larger than this chat takes ({0} bytes at most)")]
    TooLarge(u64),
    #[error("this chat takes pictures, PDFs and plain text only")]
    FileType,
    #[error("not taken; try again")]
    Unavailable,
}

impl Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::UnknownChannel => StatusCode::NOT_FOUND,
            Refused::Deleted => StatusCode::GONE,
            Refused::Origin => StatusCode::FORBIDDEN,
            Refused::Token => StatusCode::UNAUTHORIZED,
            Refused::Field { .. } => StatusCode::BAD_REQUEST,
            Refused::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Refused::UploadsOff => StatusCode::FORBIDDEN,
            Refused::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::FileType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refused::Paused | Refused::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Refused::UnknownChannel => "unknown_channel",
            Refused::Deleted => "channel_deleted",
            Refused::Paused => "channel_paused",
            Refused::Origin => "origin_not_allowed",
            Refused::Token => "invalid_token",
            Refused::Field { .. } => "invalid_field",
            Refused::TooMany(_) => "rate_limited",
            Refused::UploadsOff => "uploads_off",
            Refused::TooLarge(_) => "file_too_large",
            Refused::FileType => "file_type",
            Refused::Unavailable => "unavailable",
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> Self {
        Refused::Field {
            field,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        if let Refused::Field { field, .. } = &self {
            body["field"] = json!(field);
        }
        let retry = match &self {
            Refused::TooMany(seconds) => Some(*seconds),
            Refused::Paused | Refused::Unavailable => Some(5),
            _ => None,
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Some(seconds) = retry
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A refusal the site's page can read (the origin was allowed, so it may see why).
struct Answer {
    origin: Option<String>,
    response: Response,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = self.response;
        if let Some(origin) = self.origin
            && let Ok(value) = HeaderValue::from_str(&origin)
        {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Retry-After"),
            );
        }
        response
    }
}

/// The channel a call is for, with its config and the caller's (allowed) origin.
struct Allowed {
    channel: Channel,
    config: WebChatConfig,
    origin: String,
}

impl Allowed {
    fn answer(&self, response: impl IntoResponse) -> Answer {
        Answer {
            origin: Some(self.origin.clone()),
            response: response.into_response(),
        }
    }

    fn refuse(&self, refused: Refused) -> Answer {
        self.answer(refused)
    }
}

impl Widget {
    async fn allowed(&self, channel_id: &str, headers: &HeaderMap) -> Result<Allowed, Answer> {
        let bare = |refused: Refused| Answer {
            origin: None,
            response: refused.into_response(),
        };
        let channel_id: ChannelId = channel_id
            .parse()
            .map_err(|_| bare(Refused::UnknownChannel))?;
        let channel = self
            .ctx
            .directory
            .channel(channel_id)
            .await
            .map_err(|e| {
                tracing::error!(%channel_id, error = %e, "Channel lookup failed.");
                bare(Refused::Unavailable)
            })?
            .filter(|c| c.kind == KIND)
            .ok_or_else(|| bare(Refused::UnknownChannel))?;
        let config: WebChatConfig = decode_config(&channel.config).map_err(|e| {
            tracing::error!(%channel_id, error = %e, "Web chat config unreadable.");
            bare(Refused::Unavailable)
        })?;
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !config.allows(origin) {
            tracing::info!(%channel_id, origin, "Refused a widget call from another site.");
            return Err(bare(Refused::Origin));
        }
        let allowed = Allowed {
            origin: origin.to_owned(),
            channel,
            config,
        };
        if allowed.channel.deleted_at.is_some() {
            return Err(allowed.refuse(Refused::Deleted));
        }
        if !allowed.channel.enabled {
            return Err(allowed.refuse(Refused::Paused));
        }
        Ok(allowed)
    }
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        WIDGET_JS,
    )
        .into_response()
}

/// CORS preflight of the JSON calls: allowed origins only.
async fn preflight(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed.answer((
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "content-type, x-chat-token",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ],
        )),
        Err(answer) => answer,
    }
}

fn peer_key(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> String {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    /// The token this browser was given before (kept in the site's localStorage).
    #[serde(default)]
    visitor_token: Option<String>,
    /// From the pre-chat form.
    #[serde(default)]
    name: Option<String>,
    /// From the pre-chat form: where a reply may go by email; never taken as verified.
    #[serde(default)]
    email: Option<String>,
    /// The site's proof of its signed-in user.
    #[serde(default)]
    user: Option<Claim>,
}

async fn session(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    let peer = peer_key(peer);
    if let Err(wait) = widget.limits.sessions.check(&peer) {
        return allowed.refuse(Refused::TooMany(wait));
    }
    let request: SessionRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(refused) => return allowed.refuse(refused),
    };
    let (session, chat) = match open_session(&allowed, request) {
        Ok(opened) => opened,
        Err(refused) => return allowed.refuse(refused),
    };
    if let Some(left_email) = &chat.left_email {
        let key = ChatKey {
            channel: allowed.channel.id,
            log: visitor::log_key(&chat.handle),
        };
        let profile = Profile {
            left_email: Some(left_email.clone()),
        };
        if let Err(e) = widget.log.set_profile(&key, &profile).await {
            tracing::warn!(channel_id = %allowed.channel.id, error = %e, "Visitor profile not written.");
            return allowed.refuse(Refused::Unavailable);
        }
    }
    allowed.answer(axum::Json(session))
}

/// The visitor and chat tokens and the widget's settings for a session request.
fn open_session(
    allowed: &Allowed,
    request: SessionRequest,
) -> Result<(serde_json::Value, Chat), Refused> {
    let secret = &allowed.channel.secret;
    let channel = allowed.channel.id;
    let (visitor_id, visitor_token) = match request
        .visitor_token
        .as_deref()
        .and_then(|t| visitor::verify(secret, channel, t).map(|id| (id, t.to_owned())))
    {
        Some(known) => known,
        None => visitor::mint(secret, channel),
    };
    let user = request
        .user
        .as_ref()
        .and_then(|claim| visitor::verify_claim(secret, claim));
    let identity = match (&request.user, &user) {
        (_, Some(_)) => "verified",
        (Some(_), None) => {
            tracing::warn!(channel_id = %channel, "A site's identity claim did not verify; the visitor stays anonymous.");
            "rejected"
        }
        (None, None) => "anonymous",
    };
    let name = clean(request.name.as_deref(), 200);
    let email = clean(request.email.as_deref(), 320);
    if let Some(email) = &email {
        EmailAddress::parse(email).map_err(|e| Refused::field("email", e))?;
    }
    let config = &allowed.config;
    let chat = Chat {
        handle: visitor::handle(&visitor_id, user.as_ref()),
        email: user.as_ref().and_then(|u| u.email.clone()),
        name: user.as_ref().and_then(|u| u.name.clone()).or(name),
        left_email: email,
    };
    let answer = json!({
        "visitor_token": visitor_token,
        "chat_token": visitor::seal(secret, channel, &chat),
        "identity": identity,
        "settings": {
            "greeting": config.greeting,
            "away_text": config.away_text,
            "accent_color": config.accent_color,
            "name_field": config.name_field,
            "email_field": config.email_field,
            "uploads": config.uploads,
            "max_upload_bytes": config.max_upload_bytes,
            "upload_types": UPLOAD_TYPES,
            "max_text_chars": MAX_TEXT_CHARS,
        },
    });
    Ok((answer, chat))
}

fn clean(value: Option<&str>, max: usize) -> Option<String> {
    value
        .map(|v| {
            v.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(max)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = match path.as_str() {
            "client_id" => "client_id",
            "text" => "text",
            "name" => "name",
            "email" => "email",
            p if p.starts_with("user") => "user",
            _ => "body",
        };
        Refused::field(field, e.into_inner().to_string())
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    /// The widget's id of the message (letters, digits, `-`, `_`; 8 to 64): a retried send is
    /// taken once.
    client_id: String,
    #[serde(default)]
    text: String,
    /// Files uploaded to this chat before (`POST …/files`), as that call answered.
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
}

async fn send(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    match take_message(&widget, &allowed, &peer_key(peer), &headers, &body).await {
        Ok(entry) => allowed.answer((
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted", "id": entry.id})),
        )),
        Err(refused) => allowed.refuse(refused),
    }
}

/// Checks a visitor's message, hands it to the bus and writes it to the chat log (in that
/// order: a message in the log was taken; one the bus refused is sent again by the widget).
async fn take_message(
    widget: &Widget,
    allowed: &Allowed,
    peer: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Entry, Refused> {
    let channel = &allowed.channel;
    let chat = headers
        .get("x-chat-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| visitor::open(&channel.secret, channel.id, t))
        .ok_or(Refused::Token)?;
    widget.limits.per_ip.check(peer).map_err(Refused::TooMany)?;
    let request: SendRequest = parse_json(body)?;
    let client_id = request.client_id.trim();
    if !(8..=64).contains(&client_id.len())
        || !client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Refused::field(
            "client_id",
            "8 to 64 letters, digits, '-' or '_'",
        ));
    }
    required_fields(&allowed.config, &chat)?;
    let text = request.text.trim();
    let key = ChatKey {
        channel: channel.id,
        log: visitor::log_key(&chat.handle),
    };
    let attachments = own_files(widget, &key, request.attachments).await?;
    if text.is_empty() && attachments.is_empty() {
        return Err(Refused::field("text", "a message needs text or a file"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Refused::field(
            "text",
            format!("at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    let known = widget
        .log
        .by_client_id(&key, client_id)
        .await
        .map_err(|e| {
            tracing::warn!(channel_id = %channel.id, error = %e, "Chat log unreadable.");
            Refused::Unavailable
        })?;
    if let Some(entry) = known {
        return Ok(entry);
    }
    widget
        .limits
        .per_chat
        .check(&format!("{}\0{}", channel.id, chat.handle))
        .map_err(Refused::TooMany)?;
    let mut message = envelope(channel, &chat, client_id, text);
    message.attachments = attachments.clone();
    if let Some(field) = inbox_core::ingest::field_with_nul(&message) {
        return Err(Refused::field(
            if field == "text" { "text" } else { "name" },
            "contains a NUL character",
        ));
    }
    widget
        .ctx
        .bus
        .publish_inbound(&InboundEvent::Message(message))
        .await
        .map_err(|error| {
            tracing::warn!(channel_id = %channel.id, %error, "Chat message not accepted by the bus.");
            Refused::Unavailable
        })?;
    let mut entry = Entry::new(Author::Visitor, text.to_owned());
    entry.client_id = Some(client_id.to_owned());
    entry.files = attachments.iter().map(|a| a.name.clone()).collect();
    widget.log.append(&key, &entry).await.map_err(|e| {
        tracing::warn!(channel_id = %channel.id, error = %e, "Chat log not written.");
        Refused::Unavailable
    })?;
    Ok(entry)
}

/// The pre-chat form's required fields were given (a proven user needs none): checked on each
/// message, as the session may start before the visitor filled the form in.
fn required_fields(config: &WebChatConfig, chat: &Chat) -> Result<(), Refused> {
    let proven = chat.handle.starts_with("user:");
    let given = [
        ("name", config.name_field, chat.name.is_some()),
        (
            "email",
            config.email_field,
            chat.left_email.is_some() || chat.email.is_some(),
        ),
    ];
    for (field, mode, present) in given {
        if mode == FormField::Required && !present && !proven {
            return Err(Refused::field(
                field,
                "is required by this chat: start the session with it",
            ));
        }
    }
    Ok(())
}

/// Where a chat's uploads go: a message may attach only files under it.
fn upload_prefix(key: &ChatKey) -> String {
    format!("attachments/web_chat/{}/{}/", key.channel, key.log)
}

/// The files a message attaches, each checked to be one this chat uploaded (and still there),
/// with a clean name and an allowed type.
async fn own_files(
    widget: &Widget,
    key: &ChatKey,
    files: Vec<AttachmentRef>,
) -> Result<Vec<AttachmentRef>, Refused> {
    if files.len() > MAX_FILES {
        return Err(Refused::field(
            "attachments",
            format!("at most {MAX_FILES} files"),
        ));
    }
    let prefix = upload_prefix(key);
    let mut own = Vec::with_capacity(files.len());
    for file in files {
        let path = file.blob.0.as_str();
        if !path.starts_with(&prefix) || path.contains("..") {
            return Err(Refused::field(
                "attachments",
                "only files uploaded to this chat",
            ));
        }
        let meta = widget
            .ctx
            .blobs
            .head(&object_store::path::Path::from(path))
            .await
            .map_err(|_| Refused::field("attachments", "no such upload"))?;
        let name =
            inbox_core::file_name::clean_file_name(&file.name).unwrap_or_else(|| "file".to_owned());
        let content_type = file
            .content_type
            .filter(|t| UPLOAD_TYPES.contains(&t.as_str()));
        own.push(AttachmentRef {
            name,
            content_type,
            size: Some(meta.size),
            blob: file.blob,
        });
    }
    Ok(own)
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    /// The file's name as the visitor's device has it.
    #[serde(default)]
    name: Option<String>,
}

async fn upload(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    match take_upload(&widget, &allowed, query, &headers, body).await {
        Ok(file) => allowed.answer((StatusCode::CREATED, axum::Json(file))),
        Err(refused) => allowed.refuse(refused),
    }
}

/// Checks an upload (uploads on, its size and type) and writes it to blob storage under the
/// chat's prefix; returns the reference a message attaches.
async fn take_upload(
    widget: &Widget,
    allowed: &Allowed,
    query: UploadQuery,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<AttachmentRef, Refused> {
    let channel = &allowed.channel;
    let chat = headers
        .get("x-chat-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| visitor::open(&channel.secret, channel.id, t))
        .ok_or(Refused::Token)?;
    if !allowed.config.uploads {
        return Err(Refused::UploadsOff);
    }
    let limit = allowed.config.max_upload_bytes;
    if body.len() as u64 > limit {
        return Err(Refused::TooLarge(limit));
    }
    if body.is_empty() {
        return Err(Refused::field("body", "an empty file"));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|t| UPLOAD_TYPES.contains(&t.as_str()))
        .ok_or(Refused::FileType)?;
    widget
        .limits
        .uploads
        .check(&format!("{}\0{}", channel.id, chat.handle))
        .map_err(Refused::TooMany)?;
    let name = query
        .name
        .as_deref()
        .and_then(inbox_core::file_name::clean_file_name)
        .unwrap_or_else(|| "file".to_owned());
    let key = ChatKey {
        channel: channel.id,
        log: visitor::log_key(&chat.handle),
    };
    let blob = format!(
        "{}{}/{}",
        upload_prefix(&key),
        uuid::Uuid::now_v7().simple(),
        blob_segment(&name)
    );
    let size = body.len() as u64;
    crate::context::put_blob(&widget.ctx.blobs, &blob, body.to_vec())
        .await
        .map_err(|e| {
            tracing::warn!(channel_id = %channel.id, error = %e, "Upload not written.");
            Refused::Unavailable
        })?;
    Ok(AttachmentRef {
        name,
        content_type: Some(content_type),
        size: Some(size),
        blob: BlobRef(blob),
    })
}

/// A file name as one blob path segment: ASCII letters, digits, `.`, `-`, `_` (others `_`).
fn blob_segment(name: &str) -> String {
    let segment: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if segment.trim_matches('.').is_empty() {
        "file".to_owned()
    } else {
        segment
    }
}

/// The visitor's message as the funnel takes it.
fn envelope(channel: &Channel, chat: &Chat, client_id: &str, text: &str) -> InboundMessage {
    let now = Utc::now();
    InboundMessage {
        thread: ThreadHints {
            chat_id: Some(chat.handle.clone()),
            ..ThreadHints::default()
        },
        from: Party {
            handle: chat.handle.clone(),
            name: chat.name.clone(),
            // Proven by the site's hash only: it links the visitor to the same customer elsewhere.
            email: chat.email.clone(),
            phone: None,
        },
        sent_at: Some(now),
        received_at: now,
        body: Body {
            text: text.to_owned(),
            html: None,
        },
        ..InboundMessage::text(
            channel.id,
            KIND,
            format!("{}:{client_id}", chat.handle),
            chat.handle.clone(),
            String::new(),
        )
    }
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    chat: String,
    /// Where to resume when the browser did not say (`Last-Event-ID`).
    #[serde(default)]
    after: Option<String>,
}

async fn stream(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    let channel = &allowed.channel;
    let Some(chat) = visitor::open(&channel.secret, channel.id, &query.chat) else {
        return allowed.refuse(Refused::Token);
    };
    let key = ChatKey {
        channel: channel.id,
        log: visitor::log_key(&chat.handle),
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.after)
        .filter(|id| !id.is_empty());
    let follow = Follow {
        live: widget.log.subscribe(&key),
        log: widget.log.clone(),
        key,
        last,
        pending: Default::default(),
        relook: tokio::time::interval(RELOOK),
        started: false,
        ready: false,
        noted: None,
    };
    let events = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await;
        Some((Ok::<_, Infallible>(event), follow))
    });
    allowed.answer(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// An open stream: what it has sent, and where news comes from.
struct Follow {
    live: tokio::sync::broadcast::Receiver<Entry>,
    log: ChatLog,
    key: ChatKey,
    /// The last entry sent.
    last: Option<String>,
    pending: std::collections::VecDeque<Entry>,
    relook: tokio::time::Interval,
    started: bool,
    /// `ready` was sent: the history is shown.
    ready: bool,
    /// When presence was last noted.
    noted: Option<tokio::time::Instant>,
}

impl Drop for Follow {
    /// The visitor was there until now.
    fn drop(&mut self) {
        let (log, key) = (self.log.clone(), self.key.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = log.seen(&key).await;
            });
        }
    }
}

impl Follow {
    /// The history first, then `ready`, then each new entry as it comes.
    async fn next(&mut self) -> Event {
        if !self.started {
            self.started = true;
            self.read().await;
        }
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.last = Some(entry.id.clone());
                let data = serde_json::to_string(&entry).unwrap_or_default();
                return Event::default().id(entry.id).event("message").data(data);
            }
            if !self.ready {
                self.ready = true;
                // Reconnect quickly after a drop; the browser resumes with Last-Event-ID.
                return Event::default()
                    .event("ready")
                    .retry(Duration::from_secs(1))
                    .data("{}");
            }
            tokio::select! {
                _ = self.live.recv() => {}
                _ = self.relook.tick() => {}
            }
            self.read().await;
        }
    }

    /// Queues what the log holds after the last entry sent, and notes the visitor's presence
    /// now and then.
    async fn read(&mut self) {
        if self.noted.is_none_or(|at| at.elapsed() >= PRESENCE_EVERY) {
            self.noted = Some(tokio::time::Instant::now());
            if let Err(e) = self.log.seen(&self.key).await {
                tracing::warn!(error = %e, "Visitor presence not noted.");
            }
        }
        match self.log.after(&self.key, self.last.as_deref()).await {
            Ok(entries) => self.pending = entries.into(),
            Err(e) => tracing::warn!(error = %e, "Chat log unreadable; trying again."),
        }
    }
}
