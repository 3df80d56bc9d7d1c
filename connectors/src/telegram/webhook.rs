//! Webhook mode: Telegram POSTs each update to `POST /hooks/telegram/{channel_id}` with the
//! secret token given to `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`. A request without
//! the right token is refused (401) before anything is read. An update is answered 200 only once
//! it is stored or dead-lettered (the same [`take`] as polling); otherwise 503, and Telegram
//! delivers it again later, so nothing is lost and a re-delivery is a duplicate the funnel drops.
//!
//! The secret token is derived from the bot token and the channel id (HMAC-SHA256), so there is
//! nothing more to configure or store, and it changes when the bot token is rotated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use serde_json::json;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::api::{BotApi, BotUser};
use super::config::{Mode, TelegramConfig};
use super::parse::ALLOWED_UPDATES;
use super::source::{Outlet, take};
use super::{KIND, token};
use crate::{IntakeContext, SourceContext, decode_config};

/// The header Telegram sends the secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Telegram's updates are small; a message's files are fetched, not posted.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How often the running source asks Telegram how the webhook is doing.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The intake path of a channel, under the server's public URL.
pub fn path(channel_id: ChannelId) -> String {
    format!("/hooks/telegram/{channel_id}")
}

type Mac256 = Hmac<Sha256>;

fn mac(bot_token: &str, channel_id: ChannelId) -> Mac256 {
    // HMAC takes a key of any length.
    let mut mac = Mac256::new_from_slice(bot_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(format!("telegram webhook {channel_id}").as_bytes());
    mac
}

/// The secret token of a channel's webhook (64 hex digits: within Telegram's `A-Za-z0-9_-`).
pub fn secret_token(bot_token: &str, channel_id: ChannelId) -> String {
    hex::encode(mac(bot_token, channel_id).finalize().into_bytes())
}

/// Constant-time check of a request's secret token.
fn secret_matches(bot_token: &str, channel_id: ChannelId, given: &str) -> bool {
    hex::decode(given.trim())
        .is_ok_and(|given| mac(bot_token, channel_id).verify_slice(&given).is_ok())
}

/// The running source of a webhook channel: registers the webhook, then checks every minute
/// that it is still ours and that Telegram reaches it; a delivery error Telegram reports fails
/// the source (its health shows the error) and the supervisor registers it again.
pub async fn run(
    channel: Channel,
    api: BotApi,
    bot_token: &str,
    ctx: SourceContext,
    stop: CancellationToken,
) -> Result<(), String> {
    let url = format!(
        "{}{}",
        ctx.public_url.trim_end_matches('/'),
        path(channel.id)
    );
    let secret = secret_token(bot_token, channel.id);
    api.set_webhook(&url, &secret, &ALLOWED_UPDATES)
        .await
        .map_err(|e| format!("setWebhook: {e}"))?;
    tracing::info!(channel_id = %channel.id, %url, "Webhook registered.");
    let registered_at = chrono::Utc::now().timestamp();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let info = api
            .get_webhook_info()
            .await
            .map_err(|e| format!("getWebhookInfo: {e}"))?;
        if info.url != url {
            return Err(format!(
                "the webhook was changed elsewhere (now {:?}); registering it again",
                info.url
            ));
        }
        if let (Some(at), Some(error)) = (info.last_error_date, &info.last_error_message)
            && at >= registered_at
        {
            return Err(format!(
                "Telegram cannot deliver to {url}: {error} ({} updates waiting)",
                info.pending_update_count
            ));
        }
    }
}

/// What the intake keeps between requests: each channel's bot, asked once (`getMe`).
#[derive(Debug, Clone)]
struct IntakeState {
    ctx: IntakeContext,
    bots: Arc<Mutex<HashMap<ChannelId, BotUser>>>,
}

/// `POST /hooks/telegram/{channel_id}`.
pub fn router(ctx: IntakeContext) -> Router {
    Router::new()
        .route("/hooks/telegram/{channel_id}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(IntakeState {
            ctx,
            bots: Arc::default(),
        })
}

fn refusal(status: StatusCode, error: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({"error": error, "message": message})),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
    }
    response
}

fn unavailable() -> Response {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "not stored; Telegram delivers it again",
    )
}

async fn receive(
    State(state): State<IntakeState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unknown = || {
        refusal(
            StatusCode::NOT_FOUND,
            "unknown_channel",
            "no Telegram channel in webhook mode with this id",
        )
    };
    let Ok(channel_id) = channel_id.parse::<ChannelId>() else {
        return unknown();
    };
    let channel = match state.ctx.directory.channel(channel_id).await {
        Ok(Some(channel)) if channel.kind == KIND && channel.deleted_at.is_none() => channel,
        Ok(_) => return unknown(),
        Err(error) => {
            tracing::error!(%channel_id, %error, "Channel lookup failed.");
            return unavailable();
        }
    };
    let Ok(config) = decode_config::<TelegramConfig>(&channel.config) else {
        return unknown();
    };
    if config.mode != Mode::Webhook {
        return unknown();
    }
    let bot_token = match token(&config) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%channel_id, %error, "No bot token for the webhook.");
            return unavailable();
        }
    };
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !secret_matches(&bot_token, channel_id, given) {
        tracing::info!(%channel_id, "Refused a Telegram webhook call with a wrong secret token.");
        return refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_secret_token",
            "X-Telegram-Bot-Api-Secret-Token does not match this channel's webhook",
        );
    }
    if !channel.enabled {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "channel_paused",
            "this channel is paused; Telegram delivers it again",
        );
    }
    // An update that is not JSON is taken like any unreadable one: dead-lettered with the
    // reason, so Telegram does not send it again and again.
    let raw: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    match take_update(&state, &channel, &config, bot_token, &raw).await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response(),
        Err(error) => {
            tracing::warn!(%channel_id, %error, "Telegram update not taken; Telegram will retry.");
            unavailable()
        }
    }
}

async fn take_update(
    state: &IntakeState,
    channel: &Channel,
    config: &TelegramConfig,
    bot_token: String,
    raw: &serde_json::Value,
) -> Result<(), String> {
    let api = BotApi::new(config, bot_token)?;
    let known = state
        .bots
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&channel.id)
        .cloned();
    let bot = match known {
        Some(bot) => bot,
        None => {
            let bot = api.get_me().await.map_err(|e| format!("getMe: {e}"))?;
            state
                .bots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(channel.id, bot.clone());
            bot
        }
    };
    let outlet = Outlet {
        bus: &*state.ctx.bus,
        blobs: &state.ctx.blobs,
    };
    take(
        channel,
        config,
        &api,
        &bot,
        &outlet,
        std::slice::from_ref(raw),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_token_is_the_channels_and_checked_exactly() {
        let channel = ChannelId::new();
        let secret = secret_token("123:abc", channel);
        assert_eq!(secret.len(), 64);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(secret_matches("123:abc", channel, &secret));
        assert!(!secret_matches("123:abd", channel, &secret));
        assert!(!secret_matches("123:abc", ChannelId::new(), &secret));
        assert!(!secret_matches("123:abc", channel, ""));
        assert!(!secret_matches("123:abc", channel, &secret[..62]));
    }
}
