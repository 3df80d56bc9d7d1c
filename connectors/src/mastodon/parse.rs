//! Mastodon's entities (Notification, Status, Account, MediaAttachment, as its API docs give
//! them) → what the inbox takes: a message with the media to fetch, nothing (our own status, a
//! notification that is not a mention), or a rejection with its reason (dead-lettered, so the
//! cursor may move past it without losing it).
//!
//! Threading (docs/channels/mastodon.md): a status answering a stored one joins its
//! conversation (`in_reply_to_id`, rule 1); otherwise the subject names the thread — one
//! "Direct messages" thread per account, and one thread per public root (the subject holds the
//! root's id, so two roots never share a conversation). The subject also tells agents that a
//! thread is public: their replies there are public too.

use chrono::{DateTime, Utc};
use inbox_core::envelope::{
    AttachmentRef, BlobRef, Body, ChannelKind, InboundMessage, Party, ThreadHints,
};
use inbox_core::ids::ChannelId;
use serde::Deserialize;

/// What the source asks the notifications API for.
pub const NOTIFICATION_TYPES: [&str; 1] = ["mention"];

/// The subject of an account's direct-message thread.
pub const DIRECT_SUBJECT: &str = "Direct messages";

/// An account, as the API gives it (the fields the inbox uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub id: String,
    pub username: String,
    /// `user` for an account of the instance itself, `user@domain` for a remote one.
    pub acct: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub bot: bool,
}

/// Who may see a status, and so who sees a reply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Unlisted,
    /// Followers only.
    Private,
    /// The mentioned accounts only.
    Direct,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Private => "private",
            Visibility::Direct => "direct",
        }
    }
}

/// A media attachment of a status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaAttachment {
    pub id: String,
    /// `image`, `gifv`, `video`, `audio` or `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Our instance's copy (`null` while it is still being processed).
    #[serde(default)]
    pub url: Option<String>,
    /// The original, for media of remote statuses the instance has not cached.
    #[serde(default)]
    pub remote_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A status (a post).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    pub id: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub edited_at: Option<DateTime<Utc>>,
    pub account: Account,
    /// HTML.
    pub content: String,
    pub visibility: Visibility,
    /// The content warning shown before the status.
    #[serde(default)]
    pub spoiler_text: String,
    #[serde(default)]
    pub media_attachments: Vec<MediaAttachment>,
    #[serde(default)]
    pub in_reply_to_id: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// A notification (the source asks for mentions only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notification {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub account: Account,
    #[serde(default)]
    pub status: Option<Status>,
}

/// A file of a status, to fetch into blob storage before the message is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaToFetch {
    pub url: String,
    /// Where it goes (named by the status and media ids, so a re-read writes the same).
    pub blob: BlobRef,
}

/// What a notification or status is for the inbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Message {
        message: Box<InboundMessage>,
        media: Vec<MediaToFetch>,
    },
    Ignored(&'static str),
    Rejected(String),
}

/// Where the statuses of this channel come from and who "we" are.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub channel_id: ChannelId,
    pub kind: ChannelKind,
    /// The company's own account (its statuses are ours, not the customer's).
    pub own: &'a Account,
    /// The instance's host, which local accounts' handles name.
    pub host: &'a str,
}

/// An account's handle, the same wherever it is seen: `@user@domain`.
pub fn handle(acct: &str, host: &str) -> String {
    let acct = acct.trim_start_matches('@');
    if acct.contains('@') {
        format!("@{acct}")
    } else {
        format!("@{acct}@{host}")
    }
}

/// Reads one notification from its raw JSON.
pub fn parse_notification(raw: &serde_json::Value, origin: Origin<'_>) -> Parsed {
    let notification: Notification = match decode(raw, "notification") {
        Ok(n) => n,
        Err(error) => return Parsed::Rejected(error),
    };
    if notification.kind != "mention" {
        return Parsed::Ignored("not a mention");
    }
    match notification.status {
        Some(status) => message_of(status, origin),
        None => Parsed::Rejected("mastodon: a mention notification without its status".into()),
    }
}

/// Reads one status (a `status.update` of the streaming API: an edit) from its raw JSON.
pub fn parse_status(raw: &serde_json::Value, origin: Origin<'_>) -> Parsed {
    match decode(raw, "status") {
        Ok(status) => message_of(status, origin),
        Err(error) => Parsed::Rejected(error),
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
    what: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        format!("mastodon: {what} at {path}: {}", e.into_inner())
    })
}

fn message_of(status: Status, origin: Origin<'_>) -> Parsed {
    if status.account.id == origin.own.id {
        return Parsed::Ignored("our own status");
    }
    let html = super::text::sanitize(&status.content);
    let mut text = super::text::text_of(&html);
    text = without_leading_mention(&text, &origin.own.username);
    let (text, html) = with_content_warning(&status.spoiler_text, text, html);
    // A file not to be had yet (no URL while the instance processes it) is left out.
    let (media, attachments): (Vec<MediaToFetch>, Vec<AttachmentRef>) = status
        .media_attachments
        .iter()
        .filter_map(|m| {
            let fetch = media_to_fetch(origin.channel_id, &status.id, m)?;
            let attachment = AttachmentRef {
                name: file_name(m),
                content_type: content_type(m),
                size: None,
                blob: fetch.blob.clone(),
            };
            Some((fetch, attachment))
        })
        .unzip();
    let account = &status.account;
    let name = (!account.display_name.trim().is_empty())
        .then(|| account.display_name.trim().to_owned())
        .or_else(|| Some(account.username.clone()));
    let mut message = InboundMessage::text(
        origin.channel_id,
        origin.kind,
        status.id.clone(),
        handle(&account.acct, origin.host),
        text,
    );
    message.from.name = name;
    message.body = Body {
        text: message.body.text,
        html: Some(html),
    };
    message.sent_at = Some(status.created_at);
    message.edited_at = status.edited_at;
    message.attachments = attachments;
    message.thread = ThreadHints {
        in_reply_to: status.in_reply_to_id.clone(),
        references: Vec::new(),
        subject: Some(subject(&status)),
        chat_id: None,
    };
    message.to = vec![Party {
        handle: handle(&origin.own.acct, origin.host),
        ..Party::default()
    }];
    Parsed::Message {
        message: Box::new(message),
        media,
    }
}

/// How each visibility's thread subject starts, for threads other than direct messages.
const SUBJECT_PREFIXES: [(Visibility, &str); 3] = [
    (Visibility::Public, "Public mention #"),
    (Visibility::Unlisted, "Unlisted mention #"),
    (Visibility::Private, "Followers-only mention #"),
];

/// The thread's subject: one per account for direct messages, one per root otherwise (a status
/// answering one we do not have starts its own).
pub fn subject(status: &Status) -> String {
    let note = match status.visibility {
        Visibility::Direct => return DIRECT_SUBJECT.to_owned(),
        Visibility::Public => "replies are public",
        Visibility::Unlisted => "replies are public (unlisted)",
        Visibility::Private => "replies go to our followers",
    };
    let prefix = SUBJECT_PREFIXES
        .iter()
        .find(|(v, _)| *v == status.visibility)
        .map_or("", |(_, p)| p);
    format!("{prefix}{} — {note}", status.id)
}

/// The visibility a thread's subject says; direct for anything else (never public by mistake).
pub fn visibility_of_subject(subject: &str) -> Visibility {
    SUBJECT_PREFIXES
        .iter()
        .find(|(_, prefix)| subject.starts_with(prefix))
        .map_or(Visibility::Direct, |(v, _)| *v)
}

/// "@acme thanks!" → "thanks!": the mention of us that starts nearly every status says nothing.
fn without_leading_mention(text: &str, own_username: &str) -> String {
    let mention = format!("@{own_username}");
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix(&mention) {
        // `@acme` or `@acme@host`, then whitespace or the end; `@acmeco` is someone else.
        let after = match after.strip_prefix('@') {
            Some(domain) => domain.trim_start_matches(|c: char| !c.is_whitespace()),
            None => after,
        };
        if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
            break;
        }
        rest = after.trim_start();
    }
    if rest.is_empty() {
        text.trim().to_owned()
    } else {
        rest.to_owned()
    }
}

/// The content warning stays in front of what it warns about, in the text and the HTML.
fn with_content_warning(spoiler: &str, text: String, html: String) -> (String, String) {
    let spoiler = spoiler.trim();
    if spoiler.is_empty() {
        return (text, html);
    }
    let escaped = crate::html::escape_text(spoiler);
    (
        format!("CW: {spoiler}\n\n{text}"),
        format!("<p><strong>CW: {escaped}</strong></p>{html}"),
    )
}

fn media_to_fetch(
    channel_id: ChannelId,
    status_id: &str,
    media: &MediaAttachment,
) -> Option<MediaToFetch> {
    let url = media.url.clone().or_else(|| media.remote_url.clone())?;
    let blob = format!(
        "attachments/mastodon/{channel_id}/{}/{}-{}",
        crate::blob_path::segment(status_id),
        crate::blob_path::segment(&media.id),
        crate::blob_path::segment(&file_name(media)),
    );
    Some(MediaToFetch {
        url,
        blob: BlobRef(blob),
    })
}

/// The file's name: the last segment of its URL, or one made of its type.
fn file_name(media: &MediaAttachment) -> String {
    let from_url = media
        .url
        .as_deref()
        .or(media.remote_url.as_deref())
        .and_then(|u| u.split(['?', '#']).next())
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty() && n.contains('.'));
    match from_url {
        Some(name) => name.to_owned(),
        None => format!("{}-{}", media.kind, media.id),
    }
}

fn content_type(media: &MediaAttachment) -> Option<String> {
    let name = file_name(media).to_ascii_lowercase();
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    let known = match ext {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        _ => return None,
    };
    Some(known.to_owned())
}

/// The message a deletion leaves: the status as it read is kept in the message's earlier
/// versions (the funnel's edit path), the message now says it was deleted.
pub fn deletion_of(
    stored: &InboundMessage,
    deleted_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> InboundMessage {
    let mut message = stored.clone();
    message.id = inbox_core::ids::MessageId::new();
    message.body = Body {
        text: DELETED_TEXT.to_owned(),
        html: Some(format!("<p><em>{DELETED_TEXT}</em></p>")),
    };
    message.attachments = Vec::new();
    message.edited_at = Some(deleted_at);
    message.received_at = received_at;
    message
}

/// What a deleted status reads as.
pub const DELETED_TEXT: &str = "(deleted by its author on Mastodon)";

#[cfg(test)]
mod tests;
