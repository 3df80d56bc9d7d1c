//! Replies: `sendMessage` (plain text, no parse mode, so nothing the agent wrote is taken for
//! markup), `sendPhoto` / `sendDocument` for attachments, each a reply to the customer's message
//! when the conversation has one. A 429 is waited out (`retry_after`, up to a minute) and tried
//! again; a 403 (the user blocked the bot) or "chat not found" fails the reply with that reason.

use std::sync::Arc;
use std::time::Duration;

use inbox_core::envelope::OutboundMessage;
use object_store::ObjectStore;
use object_store::path::Path as BlobPath;
use teloxide::payloads::{SendDocumentSetters, SendMessageSetters, SendPhotoSetters};
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, InputFile, MessageId, ReplyParameters, ThreadId};
use teloxide::{ApiError, Bot, RequestError};

use super::config::TelegramConfig;
use crate::{Delivered, DeliveryError};

/// The longest 429 wait taken inside one attempt.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Telegram's limits, in characters.
const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;

/// A bot for one channel's token, on its API server.
pub fn bot(config: &TelegramConfig, token: String) -> Result<Bot, DeliveryError> {
    let url = reqwest::Url::parse(config.api_base())
        .map_err(|e| DeliveryError::permanent(format!("api_url: {e}")))?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| DeliveryError::transient(format!("HTTP client: {e}")))?;
    Ok(Bot::with_client(token, client).set_api_url(url))
}

pub async fn deliver(
    bot: &Bot,
    blobs: &Arc<dyn ObjectStore>,
    message: &OutboundMessage,
) -> Result<Delivered, DeliveryError> {
    let (chat, topic) = destination(&message.to.handle).ok_or_else(|| {
        DeliveryError::permanent(format!("not a Telegram chat: {}", message.to.handle))
    })?;
    let reply_to = reply_target(message, chat);
    let mut last = None;
    let text = message.body.text.trim();
    let mut caption_used = false;
    for attachment in &message.attachments {
        let bytes = blobs
            .get(&BlobPath::from(attachment.blob.0.as_str()))
            .await
            .map_err(|e| DeliveryError::transient(format!("attachment {}: {e}", attachment.name)))?
            .bytes()
            .await
            .map_err(|e| {
                DeliveryError::transient(format!("attachment {}: {e}", attachment.name))
            })?;
        let file = InputFile::memory(bytes).file_name(attachment.name.clone());
        // The text goes with the first attachment when it fits a caption.
        let caption = (!caption_used && !text.is_empty() && text.chars().count() <= MAX_CAPTION)
            .then(|| text.to_owned());
        caption_used |= caption.is_some();
        let image = attachment
            .content_type
            .as_deref()
            .is_some_and(|t| matches!(t, "image/jpeg" | "image/png" | "image/webp"));
        let sent = with_retries(bot, || async {
            if image {
                let mut request = bot.send_photo(chat, file.clone());
                if let Some(t) = topic {
                    request = request.message_thread_id(t);
                }
                if let Some(c) = &caption {
                    request = request.caption(c.clone());
                }
                if let Some(r) = &reply_to {
                    request = request.reply_parameters(r.clone());
                }
                request.await
            } else {
                let mut request = bot.send_document(chat, file.clone());
                if let Some(t) = topic {
                    request = request.message_thread_id(t);
                }
                if let Some(c) = &caption {
                    request = request.caption(c.clone());
                }
                if let Some(r) = &reply_to {
                    request = request.reply_parameters(r.clone());
                }
                request.await
            }
        })
        .await?;
        last = Some(sent);
    }
    if !caption_used && !text.is_empty() {
        for part in chunks(text, MAX_TEXT) {
            let sent = with_retries(bot, || async {
                let mut request = bot.send_message(chat, part.clone());
                if let Some(t) = topic {
                    request = request.message_thread_id(t);
                }
                if let Some(r) = &reply_to {
                    request = request.reply_parameters(r.clone());
                }
                request.await
            })
            .await?;
            last = Some(sent);
        }
    }
    let sent =
        last.ok_or_else(|| DeliveryError::permanent("nothing to send: no text, no attachment"))?;
    Ok(Delivered {
        external_id: Some(super::parse::external_id(sent.chat.id.0, sent.id.0)),
    })
}

/// The chat a reply goes to, and the forum topic in it (`<chat>:<topic>`, see the parser).
fn destination(handle: &str) -> Option<(ChatId, Option<ThreadId>)> {
    match handle.split_once(':') {
        None => Some((ChatId(handle.parse().ok()?), None)),
        Some((chat, topic)) => Some((
            ChatId(chat.parse().ok()?),
            Some(ThreadId(MessageId(topic.parse().ok()?))),
        )),
    }
}

/// The customer's message this reply answers, when it is in the same chat.
fn reply_target(message: &OutboundMessage, chat: ChatId) -> Option<ReplyParameters> {
    let (in_chat, id) = message.thread.in_reply_to.as_deref()?.split_once(':')?;
    if in_chat.parse::<i64>().ok()? != chat.0 {
        return None;
    }
    let id: i32 = id.parse().ok()?;
    Some(ReplyParameters::new(MessageId(id)).allow_sending_without_reply())
}

/// Text cut at character boundaries into parts of at most `max` characters.
fn chunks(text: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(max).map(|c| c.iter().collect()).collect()
}

async fn with_retries<F, Fut>(
    bot: &Bot,
    mut call: F,
) -> Result<teloxide::types::Message, DeliveryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<teloxide::types::Message, RequestError>>,
{
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Ok(sent) => return Ok(sent),
            Err(RequestError::RetryAfter(after)) if waited + after.duration() <= MAX_WAIT => {
                waited += after.duration();
                tokio::time::sleep(after.duration()).await;
            }
            Err(e) => {
                let mut failed = classify(e);
                // Transport errors name the URL, which holds the token.
                failed.message = failed.message.replace(bot.token(), "<token>");
                return Err(failed);
            }
        }
    }
}

fn classify(e: RequestError) -> DeliveryError {
    match e {
        RequestError::Api(ApiError::BotBlocked) => {
            DeliveryError::permanent("telegram: the user blocked the bot (403)")
        }
        RequestError::Api(ApiError::ChatNotFound) => {
            DeliveryError::permanent("telegram: chat not found")
        }
        RequestError::Api(ApiError::UserDeactivated) => {
            DeliveryError::permanent("telegram: the user's account is deleted")
        }
        RequestError::Api(ApiError::InvalidToken) => {
            DeliveryError::permanent("telegram: the bot token was refused")
        }
        RequestError::Api(other) => DeliveryError::permanent(format!("telegram: {other}")),
        RequestError::RetryAfter(after) => DeliveryError::transient(format!(
            "telegram: rate limited, retry after {} s",
            after.seconds()
        )),
        RequestError::MigrateToChatId(id) => {
            DeliveryError::permanent(format!("telegram: the group moved to chat {}", id.0))
        }
        RequestError::Network(e) => DeliveryError::transient(format!("telegram: {e}")),
        other => DeliveryError::transient(format!("telegram: {other}")),
    }
}
