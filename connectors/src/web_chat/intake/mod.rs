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

mod files;
mod send;
mod session;
mod stream;

use files::{MAX_UPLOAD_BYTES, upload};
use send::send;
use session::session;
use stream::stream;

/// The widget, served as it is written (no build step).
const WIDGET_JS: &str = include_str!("../widget.js");
/// Largest message a visitor may send, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;
const MAX_BODY_BYTES: usize = 64 * 1024;

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
    Field { field: String, message: String },
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

    fn field(field: &str, message: impl Into<String>) -> Self {
        Refused::Field {
            field: field.to_owned(),
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

    /// The chat the call's `X-Chat-Token` opens on this channel.
    fn chat(&self, headers: &HeaderMap) -> Result<Chat, Refused> {
        headers
            .get("x-chat-token")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| visitor::open(&self.channel.secret, self.channel.id, t))
            .ok_or(Refused::Token)
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

/// A JSON body, the bad or missing field named as configs name theirs.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Refused::field("body", e.to_string()))?;
    decode_config(&value).map_err(|e| {
        let field = if e.field == "config" {
            "body".to_owned()
        } else {
            e.field
        };
        Refused::Field {
            field,
            message: e.message,
        }
    })
}
