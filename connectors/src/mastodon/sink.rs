//! Replies: a status answering the customer's (`in_reply_to_id`), with the **same visibility**
//! as the status it answers (a reply to a direct message is never public), the customer's
//! `@acct` at the start, files uploaded first (`/api/v2/media`), and our message id as the
//! `Idempotency-Key` (the instance drops a retried duplicate). A reply longer than the
//! instance allows fails before anything is posted, saying so.

use std::sync::Arc;

use inbox_core::envelope::OutboundMessage;
use object_store::ObjectStore;
use object_store::path::Path as BlobPath;

use super::api::{ApiFailure, MastodonApi, NewStatus};
use super::parse::{Visibility, visibility_of_subject};
use crate::{Delivered, DeliveryError};

pub async fn deliver(
    api: &MastodonApi,
    blobs: &Arc<dyn ObjectStore>,
    message: &OutboundMessage,
) -> Result<Delivered, DeliveryError> {
    let text = with_mention(
        &mention_of(&message.to.handle, &api.host()),
        message.body.text.trim(),
    );
    let limit = api
        .max_characters()
        .await
        .map_err(|e| classify("instance", e))?;
    let length = status_length(&text);
    if length > limit {
        return Err(DeliveryError::permanent(format!(
            "the reply is {length} characters and the instance allows {limit}: shorten it \
             (nothing was posted)"
        )));
    }
    let (in_reply_to, visibility) = answered(api, message).await?;
    let mut media_ids = Vec::with_capacity(message.attachments.len());
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
        let id = api
            .upload_media(
                &attachment.name,
                attachment.content_type.as_deref(),
                bytes.to_vec(),
            )
            .await
            .map_err(|e| classify("media upload", e))?;
        media_ids.push(id);
    }
    let status = NewStatus {
        status: &text,
        in_reply_to_id: in_reply_to,
        visibility: visibility.as_str(),
        media_ids: &media_ids,
    };
    let posted = api
        .post_status(&status, &message.id.to_string())
        .await
        .map_err(|e| classify("statuses", e))?;
    Ok(Delivered {
        external_id: posted
            .get("id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    })
}

/// The status the reply answers (the customer's latest, when it is still there: a deleted one
/// cannot be answered, so the reply is then a new status mentioning the customer) and the
/// visibility to post with: the answered status's; without one the thread's, where direct
/// messages stay direct and anything unknown is sent direct too rather than made public by
/// mistake.
async fn answered<'m>(
    api: &MastodonApi,
    message: &'m OutboundMessage,
) -> Result<(Option<&'m str>, Visibility), DeliveryError> {
    if let Some(id) = message.thread.in_reply_to.as_deref() {
        let status = api.status(id).await.map_err(|e| classify("status", e))?;
        if let Some(status) = status {
            let visibility = status
                .get("visibility")
                .and_then(|v| serde_json::from_value::<Visibility>(v.clone()).ok())
                .unwrap_or_else(|| visibility_of_thread(message));
            return Ok((Some(id), visibility));
        }
    }
    Ok((None, visibility_of_thread(message)))
}

fn visibility_of_thread(message: &OutboundMessage) -> Visibility {
    message
        .thread
        .subject
        .as_deref()
        .map_or(Visibility::Direct, visibility_of_subject)
}

/// How the customer is mentioned: `@ada` for an account of the instance itself (its own
/// domain would be looked up as a remote one), `@ada@elsewhere.example` otherwise.
fn mention_of(handle: &str, own_host: &str) -> String {
    let bare = handle.trim_start_matches('@');
    match bare.split_once('@') {
        Some((user, host)) if host.eq_ignore_ascii_case(own_host) => format!("@{user}"),
        _ => format!("@{bare}"),
    }
}

/// The mention first, unless the agent already started with it.
fn with_mention(handle: &str, text: &str) -> String {
    let mention = if handle.starts_with('@') {
        handle.to_owned()
    } else {
        format!("@{handle}")
    };
    let starts = text
        .strip_prefix(&mention)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
    match (starts, text.is_empty()) {
        (true, _) => text.to_owned(),
        (false, true) => mention,
        (false, false) => format!("{mention} {text}"),
    }
}

/// A status's length as Mastodon counts it: every URL as 23 characters, a mention of a remote
/// account by its username only.
fn status_length(text: &str) -> usize {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let bare = word.trim_end();
            let space = word.len() - bare.len();
            let counted = if bare.starts_with("http://") || bare.starts_with("https://") {
                23
            } else if let Some(mention) = bare.strip_prefix('@') {
                1 + mention
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .count()
            } else {
                bare.chars().count()
            };
            counted + word[bare.len()..].chars().count().min(space)
        })
        .sum()
}

fn classify(call: &str, e: ApiFailure) -> DeliveryError {
    let message = super::source::describe(call, &e);
    if e.transient() {
        DeliveryError::transient(format!("mastodon: {message}"))
    } else {
        DeliveryError::permanent(format!("mastodon: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_accounts_are_mentioned_without_the_domain() {
        assert_eq!(mention_of("@ada@social.example", "social.example"), "@ada");
        assert_eq!(
            mention_of("@ada@e.example", "social.example"),
            "@ada@e.example"
        );
        assert_eq!(mention_of("@ada@127.0.0.1:3000", "127.0.0.1:3000"), "@ada");
    }

    #[test]
    fn replies_start_with_the_customer_once() {
        assert_eq!(with_mention("@ada@e.example", "Hi"), "@ada@e.example Hi");
        assert_eq!(
            with_mention("@ada@e.example", "@ada@e.example Hi"),
            "@ada@e.example Hi"
        );
        assert_eq!(with_mention("@ada@e.example", ""), "@ada@e.example");
    }

    #[test]
    fn lengths_are_counted_like_mastodon() {
        assert_eq!(status_length("hello"), 5);
        assert_eq!(status_length("@ada@elsewhere.example hi"), 7);
        assert_eq!(
            status_length("see https://shop.example/a/very/long/path/indeed?x=1 now"),
            4 + 23 + 4
        );
        assert_eq!(status_length("ü ü"), 3);
    }
}
