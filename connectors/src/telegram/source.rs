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
    leave_webhook(&channel, &api).await?;
    tracing::info!(channel_id = %channel.id, bot = bot.username.as_deref().unwrap_or(""), "Connected.");
    // The first update of the album last held back for its other parts.
    let mut waited_for = None;
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
        let mut runs = album_runs(updates);
        // An album seen for the first time at the end of a batch may have parts still on their
        // way: it is asked for again (it stays above the offset) after a moment, then taken.
        let last_album = runs
            .last()
            .filter(|run| album_key(&run[0]).is_some())
            .and_then(|run| update_id(&run[0]));
        let held = last_album.is_some() && last_album != waited_for;
        if held {
            runs.pop();
            waited_for = last_album;
        }
        if runs.is_empty() && !held {
            // A poll that found nothing is news too: the channel's health says when it last
            // heard from Telegram.
            ctx.cursors
                .set(channel.id, CURSOR, &offset.to_string())
                .await?;
        }
        for run in runs {
            take(&channel, &config, &api, &bot, &(&ctx).into(), &run).await?;
            // Past these updates only once they are stored or dead-lettered.
            if let Some(id) = run.last().and_then(update_id) {
                ctx.cursors
                    .set(channel.id, CURSOR, &(id + 1).to_string())
                    .await?;
            }
            record_lag(&channel, &run);
        }
        if held {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(ALBUM_WAIT) => {}
            }
        }
    }
    Ok(())
}

/// Telegram refuses `getUpdates` while a webhook is set. Ours (the channel was switched from
/// webhook mode to polling) is removed, the updates waiting on it kept and read next; one set
/// elsewhere is left alone and the source fails saying so, rather than taking the bot from
/// whoever set it.
async fn leave_webhook(channel: &Channel, api: &BotApi) -> Result<(), String> {
    let info = api
        .get_webhook_info()
        .await
        .map_err(|e| describe("getWebhookInfo", &e))?;
    if info.url.is_empty() {
        return Ok(());
    }
    if !info.url.ends_with(&super::webhook::path(channel.id)) {
        return Err(format!(
            "a webhook ({}) is set for this bot elsewhere, so Telegram refuses polling; \
             remove it (deleteWebhook) or use webhook mode",
            info.url
        ));
    }
    api.delete_webhook()
        .await
        .map_err(|e| describe("deleteWebhook", &e))?;
    tracing::info!(channel_id = %channel.id, "Own webhook removed for long polling.");
    Ok(())
}

/// How long the parts of an album that ends a batch are given to arrive.
const ALBUM_WAIT: Duration = Duration::from_secs(1);

/// How long after it was written (or edited) an update was taken, as the gauge
/// `inbox_source_lag_seconds`.
fn record_lag(channel: &Channel, run: &[serde_json::Value]) {
    let written = run.last().and_then(|raw| {
        let message = raw.get("message").or_else(|| raw.get("edited_message"))?;
        message
            .get("edit_date")
            .or_else(|| message.get("date"))?
            .as_i64()
    });
    if let Some(written) = written {
        let lag = (Utc::now().timestamp() - written).max(0);
        metrics::gauge!(
            "inbox_source_lag_seconds",
            "channel_id" => channel.id.to_string(),
            "kind" => channel.kind.to_string()
        )
        .set(lag as f64);
    }
}

fn update_id(raw: &serde_json::Value) -> Option<i64> {
    raw.get("update_id").and_then(serde_json::Value::as_i64)
}

/// The album a new message is a part of: its chat and `media_group_id`.
fn album_key(raw: &serde_json::Value) -> Option<(i64, &str)> {
    let message = raw.get("message")?;
    let group = message.get("media_group_id")?.as_str()?;
    let chat = message.get("chat")?.get("id")?.as_i64()?;
    Some((chat, group))
}

/// Updates in order, the consecutive parts of one album together (Telegram sends them one
/// after another).
fn album_runs(updates: Vec<serde_json::Value>) -> Vec<Vec<serde_json::Value>> {
    let mut runs: Vec<Vec<serde_json::Value>> = Vec::new();
    for raw in updates {
        let joins = runs.last().is_some_and(|run| {
            let key = album_key(&raw);
            key.is_some() && album_key(&run[0]) == key
        });
        match runs.last_mut() {
            Some(run) if joins => run.push(raw),
            _ => runs.push(vec![raw]),
        }
    }
    runs
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
        for run in album_runs(updates) {
            take(channel, config, api, &bot, &ctx.into(), &run).await?;
            if let Some(id) = run.last().and_then(update_id) {
                offset = id + 1;
                ctx.cursors
                    .set(channel.id, CURSOR, &offset.to_string())
                    .await?;
            }
            for _ in &run {
                fetched += 1;
                progress.fetched();
            }
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

/// Where taken updates go: their files and raw JSON into blob storage, then the event to the
/// bus (the polling source's context, or the webhook intake's).
pub(super) struct Outlet<'a> {
    pub bus: &'a dyn inbox_core::bus::Bus,
    pub blobs: &'a std::sync::Arc<dyn object_store::ObjectStore>,
}

impl<'a> From<&'a SourceContext> for Outlet<'a> {
    fn from(ctx: &'a SourceContext) -> Self {
        Outlet {
            bus: &*ctx.bus,
            blobs: &ctx.blobs,
        }
    }
}

impl Outlet<'_> {
    async fn put_blob(&self, path: &str, bytes: Vec<u8>) -> Result<(), String> {
        crate::context::put_blob(self.blobs, path, bytes).await
    }
}

/// Stores or dead-letters one update, or the parts of one album as one message; an error
/// leaves the offset where it was.
pub(super) async fn take(
    channel: &Channel,
    config: &TelegramConfig,
    api: &BotApi,
    bot: &BotUser,
    ctx: &Outlet<'_>,
    run: &[serde_json::Value],
) -> Result<(), String> {
    // One update is kept as it came; an album's parts as a JSON array of their updates.
    let raw_bytes = match run {
        [raw] => serde_json::to_vec(raw),
        parts => serde_json::to_vec(parts),
    }
    .unwrap_or_default();
    let raw_path = format!(
        "raw/telegram/{}.json",
        hex::encode(sha2::Sha256::digest(&raw_bytes))
    );
    let parsed = run.iter().map(|raw| {
        parse_update(
            raw,
            channel.id,
            channel.kind,
            bot,
            config.group_messages,
            Utc::now(),
        )
    });
    let event = match join_album(parsed) {
        Parsed::Ignored(_) => return Ok(()),
        Parsed::Rejected(error) => {
            ctx.put_blob(&raw_path, raw_bytes).await?;
            rejected(channel, raw_path, error)
        }
        Parsed::Message {
            mut message, files, ..
        } => match fetch_all(api, ctx, &files).await {
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

/// The parts of an album as one message: the first part's id, every part's files, the caption
/// (Telegram puts it on one part) as its text. A rejected part rejects the album, so it is
/// replayed whole.
fn join_album(parts: impl Iterator<Item = Parsed>) -> Parsed {
    let mut joined = Parsed::Ignored("no part of the update is for the inbox");
    for part in parts {
        joined = match (joined, part) {
            (rejected @ Parsed::Rejected(_), _) | (_, rejected @ Parsed::Rejected(_)) => rejected,
            (Parsed::Ignored(_), part) | (part, Parsed::Ignored(_)) => part,
            (
                Parsed::Message {
                    mut message,
                    mut files,
                },
                Parsed::Message {
                    message: next,
                    files: more,
                },
            ) => {
                let text = next.body.text.trim();
                if !text.is_empty() {
                    if !message.body.text.is_empty() {
                        message.body.text.push('\n');
                    }
                    message.body.text.push_str(text);
                }
                message.attachments.extend(next.attachments);
                files.extend(more);
                Parsed::Message { message, files }
            }
        };
    }
    joined
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
    ctx: &Outlet<'_>,
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
