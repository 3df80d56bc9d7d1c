//! Long polling: `getUpdates` from the channel's stored offset; each update is stored (its files
//! and raw JSON in blob storage, the message handed to the bus) or dead-lettered, and only then
//! does the offset move past it. Telegram forgets an update once a call asks for a higher offset,
//! so a crash before that re-reads it, and the funnel drops the duplicate by its external id.

use std::time::Duration;

use chrono::Utc;
use inbox_core::envelope::{BlobRef, InboundEvent, Rejected};
use inbox_core::model::Channel;
use object_store::path::Path as BlobPath;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use super::api::{ApiFailure, BotApi, BotUser, MAX_DOWNLOAD};
use super::config::TelegramConfig;
use super::parse::{ALLOWED_UPDATES, FileToFetch, Parsed, parse_update};
use crate::SourceContext;

/// The cursor's name: the next update id to ask for.
pub const CURSOR: &str = "telegram_offset";

/// Polls until `stop`; an error returns (the supervisor restarts with backoff).
pub async fn run(
    channel: Channel,
    config: TelegramConfig,
    api: BotApi,
    ctx: SourceContext,
    stop: CancellationToken,
) -> Result<(), String> {
    let bot = api.get_me().await.map_err(|e| describe("getMe", &e))?;
    tracing::info!(channel_id = %channel.id, bot = bot.username.as_deref().unwrap_or(""), "Connected.");
    while !stop.is_cancelled() {
        let offset = read_offset(&channel, &ctx).await?;
        let updates = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            updates = api.get_updates(offset, config.poll_timeout_secs, &ALLOWED_UPDATES) => updates,
        };
        let updates = match updates {
            Ok(updates) => updates,
            Err(e) if e.retry_after.is_some() => {
                let wait = Duration::from_secs(e.retry_after.unwrap_or(1).min(300));
                tracing::warn!(channel_id = %channel.id, ?wait, "Rate limited by Telegram.");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
            Err(e) => return Err(describe("getUpdates", &e)),
        };
        for raw in updates {
            take(&channel, &config, &api, &bot, &ctx, &raw).await?;
            // Past this update only once it is stored or dead-lettered.
            if let Some(id) = raw.get("update_id").and_then(serde_json::Value::as_i64) {
                ctx.cursors
                    .set(channel.id, CURSOR, &(id + 1).to_string())
                    .await?;
            }
        }
    }
    Ok(())
}

/// What a foreground sync did: updates read, and the offset it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub fetched: usize,
    pub offset: i64,
}

/// `inbox channel sync`: reads what Telegram holds above the stored offset, batch by batch
/// without waiting, moving the same offset as the running source.
pub async fn sync(
    channel: &Channel,
    config: &TelegramConfig,
    api: &BotApi,
    ctx: &SourceContext,
    progress: &dyn crate::SyncProgress,
    stop: &CancellationToken,
) -> Result<Synced, String> {
    let bot = api.get_me().await.map_err(|e| describe("getMe", &e))?;
    let mut fetched = 0;
    let mut offset = read_offset(channel, ctx).await?;
    let mut started = false;
    while !stop.is_cancelled() {
        let updates = api
            .get_updates(offset, 0, &ALLOWED_UPDATES)
            .await
            .map_err(|e| describe("getUpdates", &e))?;
        if !started {
            progress.started(updates.len() as u64);
            started = true;
        }
        if updates.is_empty() {
            break;
        }
        for raw in updates {
            take(channel, config, api, &bot, ctx, &raw).await?;
            if let Some(id) = raw.get("update_id").and_then(serde_json::Value::as_i64) {
                offset = id + 1;
                ctx.cursors
                    .set(channel.id, CURSOR, &offset.to_string())
                    .await?;
            }
            fetched += 1;
            progress.fetched();
        }
    }
    Ok(Synced { fetched, offset })
}

fn describe(method: &str, e: &ApiFailure) -> String {
    if e.unauthorized() {
        format!("{method}: the bot token was refused ({e}); check the token's variable")
    } else if e.code == Some(409) {
        format!("{method}: {e} (another poller or a webhook uses this bot)")
    } else {
        format!("{method}: {e}")
    }
}

async fn read_offset(channel: &Channel, ctx: &SourceContext) -> Result<i64, String> {
    Ok(ctx
        .cursors
        .get(channel.id, CURSOR)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Stores or dead-letters one update; an error leaves the offset where it was.
async fn take(
    channel: &Channel,
    config: &TelegramConfig,
    api: &BotApi,
    bot: &BotUser,
    ctx: &SourceContext,
    raw: &serde_json::Value,
) -> Result<(), String> {
    let raw_bytes = serde_json::to_vec(raw).unwrap_or_default();
    let raw_path = format!(
        "raw/telegram/{}.json",
        hex::encode(sha2::Sha256::digest(&raw_bytes))
    );
    let event = match parse_update(
        raw,
        channel.id,
        channel.kind,
        bot,
        config.group_messages,
        Utc::now(),
    ) {
        Parsed::Ignored(_) => return Ok(()),
        Parsed::Rejected(error) => {
            ctx.put_blob(&raw_path, raw_bytes).await?;
            rejected(channel, raw_path, error)
        }
        Parsed::Message { mut message, files } => match fetch_all(api, ctx, &files).await {
            Ok(()) => {
                ctx.put_blob(&raw_path, raw_bytes).await?;
                message.raw = Some(BlobRef(raw_path));
                InboundEvent::Message(*message)
            }
            // A file Telegram will not give (too big, gone): the update is kept with the reason.
            Err(FetchError::Refused(error)) => {
                ctx.put_blob(&raw_path, raw_bytes).await?;
                rejected(channel, raw_path, error)
            }
            Err(FetchError::Transient(error)) => return Err(error),
        },
    };
    ctx.bus
        .publish_inbound(&event)
        .await
        .map_err(|e| format!("bus: {e}"))
}

fn rejected(channel: &Channel, payload: String, error: String) -> InboundEvent {
    InboundEvent::Rejected(Rejected {
        channel_id: channel.id,
        payload,
        error,
        received_at: Utc::now(),
    })
}

enum FetchError {
    /// Telegram refused the file for good (too big, not found).
    Refused(String),
    /// Try again later (network, 5xx, rate limit).
    Transient(String),
}

async fn fetch_all(
    api: &BotApi,
    ctx: &SourceContext,
    files: &[FileToFetch],
) -> Result<(), FetchError> {
    for file in files {
        if file.size.is_some_and(|s| s > MAX_DOWNLOAD) {
            return Err(FetchError::Refused(format!(
                "telegram: a file of {} bytes is over the Bot API's {MAX_DOWNLOAD}-byte download limit",
                file.size.unwrap_or(0)
            )));
        }
        let path = BlobPath::from(file.blob.0.as_str());
        // Fetched already (a re-read after a crash).
        if ctx.blobs.head(&path).await.is_ok() {
            continue;
        }
        let classify = |e: ApiFailure| match e.code {
            Some(400 | 404) => FetchError::Refused(format!("telegram getFile: {e}")),
            _ => FetchError::Transient(format!("telegram getFile: {e}")),
        };
        let info = api.get_file(&file.file_id).await.map_err(classify)?;
        let Some(file_path) = info.file_path else {
            return Err(FetchError::Refused(
                "telegram getFile: no file_path to download".into(),
            ));
        };
        let bytes = api
            .download(&file_path, MAX_DOWNLOAD)
            .await
            .map_err(classify)?;
        ctx.put_blob(&file.blob.0, bytes)
            .await
            .map_err(FetchError::Transient)?;
    }
    Ok(())
}
