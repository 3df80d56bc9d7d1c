//! A Bot API update → what the inbox takes: a message (with the files to fetch), nothing (a
//! service message, a group message not addressed to the bot), or a rejection with its reason
//! (dead-lettered, so the offset may move past it without losing it).
//!
//! Updates are read one by one from their raw JSON with teloxide's types, so one malformed
//! update never fails the others.

use chrono::{DateTime, Utc};
use inbox_core::envelope::{
    AttachmentRef, BlobRef, Body, ChannelKind, InboundMessage, Party, ThreadHints,
};
use inbox_core::ids::{ChannelId, MessageId};
use std::ops::Range;

use teloxide::types::{
    Chat, FileMeta, MediaKind, Message, MessageEntity, MessageEntityKind, MessageKind,
    MessageOrigin, Update, UpdateKind, User,
};

use super::api::BotUser;
use super::config::GroupMessages;

/// What the source asks `getUpdates` for.
pub const ALLOWED_UPDATES: [&str; 2] = ["message", "edited_message"];

/// A file of a message, to fetch into blob storage before the message is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileToFetch {
    pub file_id: String,
    /// Where it goes (named by Telegram's stable `file_unique_id`, so a re-read writes the same).
    pub blob: BlobRef,
    pub size: Option<u64>,
}

/// What an update is for the inbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Message {
        message: Box<InboundMessage>,
        files: Vec<FileToFetch>,
    },
    Ignored(&'static str),
    Rejected(String),
}

/// The key the parts of an album share (`part_of`): media group ids are Telegram's, kept per chat.
pub fn album_part_key(chat_id: i64, media_group_id: &str) -> String {
    format!("{chat_id}:album:{media_group_id}")
}

/// The external id of a Telegram message: message ids are unique per chat only.
pub fn external_id(chat_id: i64, message_id: i32) -> String {
    format!("{chat_id}:{message_id}")
}

/// Reads one update (`update_id` is read by the caller, who moves the offset).
pub fn parse_update(
    raw: &serde_json::Value,
    channel_id: ChannelId,
    kind: ChannelKind,
    bot: &BotUser,
    groups: GroupMessages,
    received_at: DateTime<Utc>,
) -> Parsed {
    // From text: teloxide's update reader wants borrowed keys, which a `Value` cannot lend.
    let update: Update = match serde_json::from_str(&raw.to_string()) {
        Ok(update) => update,
        Err(e) => return Parsed::Rejected(format!("telegram update: {e}")),
    };
    let taking = Taking {
        channel_id,
        kind,
        bot,
        groups,
        received_at,
    };
    match update.kind {
        UpdateKind::Message(message) => read_message(&message, &taking, false),
        UpdateKind::EditedMessage(message) => read_message(&message, &taking, true),
        UpdateKind::Error(_) => Parsed::Rejected(inner_error(raw)),
        _ => Parsed::Ignored("an update kind the channel does not ask for"),
    }
}

/// Why teloxide could not read an update's message (it keeps only the raw JSON).
fn inner_error(raw: &serde_json::Value) -> String {
    for key in ALLOWED_UPDATES {
        if let Some(inner) = raw.get(key)
            && let Err(e) = serde_json::from_str::<Message>(&inner.to_string())
        {
            return format!("telegram {key}: {e}");
        }
    }
    "telegram: an update of no known kind".into()
}

/// What reading an update needs besides the update.
struct Taking<'a> {
    channel_id: ChannelId,
    kind: ChannelKind,
    bot: &'a BotUser,
    groups: GroupMessages,
    received_at: DateTime<Utc>,
}

/// A message (or, `edited`, the new version of one) → the inbound message.
fn read_message(message: &Message, taking: &Taking<'_>, edited: bool) -> Parsed {
    let Taking {
        channel_id,
        kind,
        bot,
        groups,
        received_at,
    } = *taking;
    if !matches!(message.kind, MessageKind::Common(_)) {
        return Parsed::Ignored("a service message (member joined, pinned, …)");
    }
    let Some(from) = &message.from else {
        return Parsed::Ignored("a message without a sender (a channel post)");
    };
    if from.is_bot {
        return Parsed::Ignored("a message of a bot");
    }
    let chat_id = message.chat.id.0;
    // In a group the customer is the group (one conversation per chat, or per forum topic,
    // where replies go) and the member is the message's author.
    let (customer, author) = if message.chat.is_private() {
        (party(from), None)
    } else {
        if groups == GroupMessages::Mentions && !addressed_to(message, bot) {
            return Parsed::Ignored("a group message not addressed to the bot");
        }
        (group_party(message), Some(party(from)))
    };
    let (text, files) = content(message, channel_id);
    let thread = ThreadHints {
        in_reply_to: message
            .reply_to_message()
            .map(|r| external_id(r.chat.id.0, r.id.0)),
        references: Vec::new(),
        subject: None,
        chat_id: Some(customer.handle.clone()),
    };
    let attachments = files
        .iter()
        .map(|(file, name, content_type)| AttachmentRef {
            name: name.clone(),
            content_type: content_type.clone(),
            size: file.size,
            blob: file.blob.clone(),
        })
        .collect();
    Parsed::Message {
        message: Box::new(InboundMessage {
            id: MessageId::new(),
            channel_id,
            channel_kind: kind,
            external_id: external_id(chat_id, message.id.0),
            thread,
            from: customer,
            to: Vec::new(),
            sent_at: Some(message.date),
            received_at,
            body: Body { text, html: None },
            attachments,
            raw: None,
            automated: None,
            // Telegram gives an edit's time in seconds; without one it is now.
            edited_at: edited.then(|| message.edit_date().copied().unwrap_or(received_at)),
            author,
            // An album's parts come as separate updates; the source joins those it reads
            // together, and the inbox adds a part that comes later (webhook mode, the next
            // poll) to the message the others made.
            part_of: message
                .media_group_id()
                .map(|g| album_part_key(chat_id, &g.0)),
        }),
        files: files.into_iter().map(|(file, _, _)| file).collect(),
    }
}

/// The conversation's customer for a group message: the chat, or the forum topic in a forum
/// (`<chat id>:<topic id>`, which the sink reads back to reply in that topic).
fn group_party(message: &Message) -> Party {
    let chat = &message.chat;
    let title = chat_name(chat);
    match message.thread_id.filter(|_| message.is_topic_message) {
        Some(topic) => Party {
            handle: format!("{}:{}", chat.id.0, topic.0.0),
            name: Some(format!("{title} (topic {})", topic.0.0)),
            ..Party::default()
        },
        None => Party {
            handle: chat.id.0.to_string(),
            name: Some(title),
            ..Party::default()
        },
    }
}

/// The contact: the Telegram user id, with the name (and @username) shown.
fn party(user: &User) -> Party {
    let mut name = user.first_name.clone();
    if let Some(last) = &user.last_name {
        name.push(' ');
        name.push_str(last);
    }
    if let Some(username) = &user.username {
        name.push_str(&format!(" (@{username})"));
    }
    Party {
        handle: user.id.0.to_string(),
        name: Some(name),
        email: None,
        phone: None,
    }
}

/// A group message mentions the bot (`@name`, or a text mention of its id) or replies to it.
fn addressed_to(message: &Message, bot: &BotUser) -> bool {
    if message
        .reply_to_message()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| i64::try_from(u.id.0).is_ok_and(|id| id == bot.id))
    {
        return true;
    }
    let mention = bot
        .username
        .as_ref()
        .map(|u| format!("@{u}").to_lowercase());
    let (text, entities) = text_and_entities(message);
    entity_ranges(text, entities)
        .into_iter()
        .any(|(range, kind)| match kind {
            MessageEntityKind::Mention => {
                mention.as_deref() == Some(text[range].to_lowercase().as_str())
            }
            MessageEntityKind::TextMention { user } => {
                i64::try_from(user.id.0).is_ok_and(|id| id == bot.id)
            }
            _ => false,
        })
}

/// The message's text or caption, with the entities that go with it.
fn text_and_entities(message: &Message) -> (&str, &[MessageEntity]) {
    match (message.text(), message.caption()) {
        (Some(text), _) => (text, message.entities().unwrap_or_default()),
        (None, Some(caption)) => (caption, message.caption_entities().unwrap_or_default()),
        (None, None) => ("", &[]),
    }
}

/// Entities with their UTF-16 offsets turned into byte ranges of `text`. One whose offsets do
/// not fall on character boundaries inside the text is left out: teloxide's own conversion
/// would panic on it, and an update is untrusted input.
fn entity_ranges<'a>(
    text: &str,
    entities: &'a [MessageEntity],
) -> Vec<(Range<usize>, &'a MessageEntityKind)> {
    let byte_at = |utf16: usize| -> Option<usize> {
        let mut units = 0;
        for (at, c) in text.char_indices() {
            match units.cmp(&utf16) {
                std::cmp::Ordering::Equal => return Some(at),
                std::cmp::Ordering::Greater => return None,
                std::cmp::Ordering::Less => units += c.len_utf16(),
            }
        }
        (units == utf16).then_some(text.len())
    };
    entities
        .iter()
        .filter_map(|e| {
            let start = byte_at(e.offset)?;
            let end = byte_at(e.offset.checked_add(e.length)?)?;
            Some((start..end, &e.kind))
        })
        .collect()
}

/// The text with each hidden link's address written after its words (`the docs
/// (https://…)`): the inbox shows plain text, and the address is what the customer shared.
fn text_with_links(text: &str, entities: &[MessageEntity]) -> String {
    let mut links: Vec<(usize, &str)> = entity_ranges(text, entities)
        .into_iter()
        .filter_map(|(range, kind)| match kind {
            MessageEntityKind::TextLink { url } if text[range.clone()].trim() != url.as_str() => {
                Some((range.end, url.as_str()))
            }
            _ => None,
        })
        .collect();
    links.sort_by_key(|(end, _)| *end);
    let mut out =
        String::with_capacity(text.len() + links.iter().map(|(_, u)| u.len() + 3).sum::<usize>());
    let mut at = 0;
    for (end, url) in links {
        out.push_str(&text[at..end]);
        out.push_str(" (");
        out.push_str(url);
        out.push(')');
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The message's text (text, caption, a location or contact in words, a forward said so) and its
/// files with their names and types.
fn content(
    message: &Message,
    channel_id: ChannelId,
) -> (String, Vec<(FileToFetch, String, Option<String>)>) {
    let mut lines = Vec::new();
    if let Some(origin) = message.forward_origin() {
        lines.push(format!("Forwarded from {}:", origin_name(origin)));
    }
    let mut files = Vec::new();
    let mut file = |meta: &FileMeta, name: String, content_type: Option<String>| {
        files.push((
            FileToFetch {
                file_id: meta.id.0.clone(),
                blob: BlobRef(format!(
                    "attachments/telegram/{channel_id}/{}/{}",
                    crate::blob_path::segment(&meta.unique_id.0),
                    crate::blob_path::segment(&name)
                )),
                size: Some(u64::from(meta.size)),
            },
            name,
            content_type,
        ));
    };
    if let MessageKind::Common(common) = &message.kind {
        match &common.media_kind {
            MediaKind::Location(l) => lines.push(format!(
                "Location: {:.6}, {:.6} (https://www.openstreetmap.org/?mlat={:.6}&mlon={:.6})",
                l.location.latitude,
                l.location.longitude,
                l.location.latitude,
                l.location.longitude
            )),
            MediaKind::Contact(c) => {
                let c = &c.contact;
                let name = [Some(c.first_name.as_str()), c.last_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                lines.push(format!("Shared contact: {name}, {}", c.phone_number));
            }
            _ => {}
        }
    }
    if let Some(photo) = message
        .photo()
        .and_then(|sizes| sizes.iter().max_by_key(|p| p.width * p.height))
    {
        file(&photo.file, "photo.jpg".into(), Some("image/jpeg".into()));
    }
    if let Some(d) = message.document() {
        let name = d.file_name.clone().unwrap_or_else(|| "document".into());
        file(
            &d.file,
            safe_name(&name),
            d.mime_type.as_ref().map(|m| m.to_string()),
        );
    }
    if let Some(v) = message.voice() {
        file(
            &v.file,
            "voice.ogg".into(),
            Some(
                v.mime_type
                    .as_ref()
                    .map_or_else(|| "audio/ogg".to_owned(), |m| m.to_string()),
            ),
        );
    }
    if let Some(v) = message.video() {
        let name = v.file_name.clone().unwrap_or_else(|| "video.mp4".into());
        file(
            &v.file,
            safe_name(&name),
            v.mime_type.as_ref().map(|m| m.to_string()),
        );
    }
    if let Some(s) = message.sticker() {
        file(&s.file, "sticker.webp".into(), Some("image/webp".into()));
        if message.text().is_none() && message.caption().is_none() {
            lines.push(
                format!("Sticker {}", s.emoji.clone().unwrap_or_default())
                    .trim_end()
                    .to_owned(),
            );
        }
    }
    let (text, entities) = text_and_entities(message);
    if !text.is_empty() {
        lines.push(text_with_links(text, entities));
    }
    (lines.join("\n"), files)
}

/// A file name kept to its last path part and printable characters.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base.chars().filter(|c| !c.is_control()).take(120).collect();
    if clean.trim().is_empty() || clean == "." || clean == ".." {
        "file".into()
    } else {
        clean
    }
}

fn origin_name(origin: &MessageOrigin) -> String {
    match origin {
        MessageOrigin::User { sender_user, .. } => {
            let mut name = sender_user.first_name.clone();
            if let Some(last) = &sender_user.last_name {
                name.push(' ');
                name.push_str(last);
            }
            name
        }
        MessageOrigin::HiddenUser {
            sender_user_name, ..
        } => sender_user_name.clone(),
        MessageOrigin::Chat { sender_chat, .. } => chat_name(sender_chat),
        MessageOrigin::Channel { chat, .. } => chat_name(chat),
    }
}

fn chat_name(chat: &Chat) -> String {
    chat.title()
        .or(chat.username())
        .map_or_else(|| chat.id.0.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bot() -> BotUser {
        BotUser {
            id: 7_000_000_001,
            username: Some("acme_support_bot".into()),
            first_name: "Acme".into(),
            can_read_all_group_messages: false,
        }
    }

    fn parse(message: serde_json::Value, groups: GroupMessages) -> Parsed {
        let raw = json!({"update_id": 1, "message": message});
        parse_update(
            &raw,
            ChannelId::new(),
            ChannelKind::named("telegram"),
            &bot(),
            groups,
            Utc::now(),
        )
    }

    fn private(extra: serde_json::Value) -> serde_json::Value {
        let mut m = json!({
            "message_id": 9,
            "from": {"id": 42, "is_bot": false, "first_name": "Ada", "last_name": "L", "username": "ada"},
            "chat": {"id": 42, "first_name": "Ada", "type": "private"},
            "date": 1_764_700_000
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            m[k] = v.clone();
        }
        m
    }

    fn text_of(parsed: &Parsed) -> String {
        match parsed {
            Parsed::Message { message, .. } => message.body.text.clone(),
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn locations_contacts_forwards_and_files_read_as_text_and_attachments() {
        let located = parse(
            private(json!({"location": {"latitude": 51.5, "longitude": -0.12}})),
            GroupMessages::Mentions,
        );
        assert!(
            text_of(&located)
                .starts_with("Location: 51.500000, -0.120000 (https://www.openstreetmap.org/")
        );
        let contact = parse(
            private(
                json!({"contact": {"phone_number": "+441234", "first_name": "Bo", "last_name": "K"}}),
            ),
            GroupMessages::Mentions,
        );
        assert_eq!(text_of(&contact), "Shared contact: Bo K, +441234");
        let forwarded = parse(
            private(
                json!({"text": "look", "forward_origin": {"type": "hidden_user", "date": 1, "sender_user_name": "Cy"}}),
            ),
            GroupMessages::Mentions,
        );
        assert_eq!(text_of(&forwarded), "Forwarded from Cy:\nlook");
        let document = parse(
            private(json!({"caption": "invoice", "document": {
                "file_id": "BQAC", "file_unique_id": "AgAD", "file_size": 3,
                "file_name": "../März invoice.pdf", "mime_type": "application/pdf"
            }})),
            GroupMessages::Mentions,
        );
        let Parsed::Message { message, files, .. } = document else {
            panic!("a message");
        };
        assert_eq!(message.body.text, "invoice");
        assert_eq!(message.external_id, "42:9");
        assert_eq!(message.from.handle, "42");
        assert_eq!(message.from.name.as_deref(), Some("Ada L (@ada)"));
        assert_eq!(message.attachments[0].name, "März invoice.pdf");
        assert_eq!(
            message.attachments[0].content_type.as_deref(),
            Some("application/pdf")
        );
        assert!(files[0].blob.0.starts_with("attachments/telegram/"));
        assert!(
            files[0].blob.0.ends_with("/AgAD/M_rz_invoice.pdf"),
            "{}",
            files[0].blob.0
        );
    }

    #[test]
    fn hidden_links_keep_their_address_and_bad_offsets_are_ignored() {
        // Offsets count UTF-16 units: "Ünïcode 🎉 " is 11 of them but 16 bytes.
        let linked = parse(
            private(json!({
                "text": "Ünïcode 🎉 see the docs or https://acme.example/x",
                "entities": [
                    {"type": "text_link", "offset": 15, "length": 8, "url": "https://acme.example/docs"},
                    {"type": "bold", "offset": 19, "length": 4},
                    {"type": "text_link", "offset": 27, "length": 22, "url": "https://acme.example/x"}
                ]
            })),
            GroupMessages::Mentions,
        );
        assert_eq!(
            text_of(&linked),
            "Ünïcode 🎉 see the docs (https://acme.example/docs) or https://acme.example/x"
        );
        let captioned = parse(
            private(json!({
                "caption": "menu",
                "caption_entities": [{"type": "text_link", "offset": 0, "length": 4, "url": "https://acme.example/menu"}],
                "photo": [{"file_id": "AgAC", "file_unique_id": "AQAD", "file_size": 3, "width": 1, "height": 1}]
            })),
            GroupMessages::Mentions,
        );
        assert_eq!(text_of(&captioned), "menu (https://acme.example/menu)");
        // Inside the emoji's surrogate pair, and past the end: left out, not a panic.
        let broken = parse(
            private(json!({
                "text": "🎉 x",
                "entities": [
                    {"type": "text_link", "offset": 1, "length": 2, "url": "https://acme.example/a"},
                    {"type": "text_link", "offset": 3, "length": 9, "url": "https://acme.example/b"}
                ]
            })),
            GroupMessages::Mentions,
        );
        assert_eq!(text_of(&broken), "🎉 x");
    }

    #[test]
    fn group_messages_are_taken_only_when_addressed_and_bots_never() {
        let group = |text: &str, entities: serde_json::Value| {
            json!({
                "message_id": 3,
                "from": {"id": 42, "is_bot": false, "first_name": "Ada"},
                "chat": {"id": -100, "title": "Customers", "type": "group"},
                "date": 1, "text": text, "entities": entities
            })
        };
        let chatter = parse(group("hello all", json!([])), GroupMessages::Mentions);
        assert!(matches!(chatter, Parsed::Ignored(_)), "{chatter:?}");
        let mention = parse(
            group(
                "@ACME_support_bot help",
                json!([{"type": "mention", "offset": 0, "length": 17}]),
            ),
            GroupMessages::Mentions,
        );
        let Parsed::Message { message, .. } = mention else {
            panic!("a mention is taken: {mention:?}");
        };
        // The group is the customer, the member the author; replies go to the group.
        assert_eq!(message.from.handle, "-100");
        assert_eq!(message.from.name.as_deref(), Some("Customers"));
        assert_eq!(
            message.author.as_ref().map(|a| a.handle.as_str()),
            Some("42")
        );
        assert_eq!(message.thread.chat_id.as_deref(), Some("-100"));
        let all = parse(group("hello all", json!([])), GroupMessages::All);
        assert!(matches!(all, Parsed::Message { .. }), "{all:?}");
        let mut reply_to_bot = group("thanks", json!([]));
        reply_to_bot["reply_to_message"] = json!({
            "message_id": 2, "date": 1, "text": "How can I help?",
            "from": {"id": 7_000_000_001_i64, "is_bot": true, "first_name": "Acme"},
            "chat": {"id": -100, "title": "Customers", "type": "group"}
        });
        let reply = parse(reply_to_bot, GroupMessages::Mentions);
        let Parsed::Message { message, .. } = reply else {
            panic!("a reply to the bot is taken: {reply:?}");
        };
        assert_eq!(message.thread.in_reply_to.as_deref(), Some("-100:2"));
        let mut from_bot = private(json!({"text": "beep"}));
        from_bot["from"]["is_bot"] = json!(true);
        assert!(matches!(
            parse(from_bot, GroupMessages::All),
            Parsed::Ignored(_)
        ));
    }

    #[test]
    fn edits_topics_and_album_parts_say_so() {
        let update = |key: &str, message: serde_json::Value| {
            parse_update(
                &json!({"update_id": 2, key: message}),
                ChannelId::new(),
                ChannelKind::named("telegram"),
                &bot(),
                GroupMessages::All,
                Utc::now(),
            )
        };
        let edited = update(
            "edited_message",
            private(json!({"text": "fixed", "edit_date": 1_764_700_060})),
        );
        let Parsed::Message { message, .. } = edited else {
            panic!("an edit is a message: {edited:?}");
        };
        assert_eq!(message.external_id, "42:9");
        assert_eq!(message.body.text, "fixed");
        assert_eq!(
            message.edited_at.map(|t| t.timestamp()),
            Some(1_764_700_060)
        );
        let topic = update(
            "message",
            json!({
                "message_id": 5, "message_thread_id": 4, "is_topic_message": true,
                "from": {"id": 42, "is_bot": false, "first_name": "Ada"},
                "chat": {"id": -1001, "title": "Help", "type": "supergroup", "is_forum": true},
                "date": 1, "text": "in a topic"
            }),
        );
        let Parsed::Message { message, .. } = topic else {
            panic!("a topic message: {topic:?}");
        };
        assert_eq!(message.from.handle, "-1001:4");
        let part = update(
            "message",
            private(json!({"media_group_id": "13", "photo": [
                {"file_id": "P1", "file_unique_id": "U1", "width": 90, "height": 90, "file_size": 10}
            ]})),
        );
        assert!(
            matches!(&part, Parsed::Message { message, .. } if message.part_of.as_deref() == Some("42:album:13")),
            "{part:?}"
        );
    }

    /// The fuzz target's seeds (`tests/fixtures/telegram`), each read as the docs' shapes say.
    #[test]
    fn the_fixture_updates_read_as_expected() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/telegram");
        let read = |name: &str| {
            let raw: serde_json::Value =
                serde_json::from_slice(&std::fs::read(format!("{dir}/{name}")).unwrap()).unwrap();
            parse_update(
                &raw,
                ChannelId::new(),
                ChannelKind::named("telegram"),
                &bot(),
                GroupMessages::Mentions,
                Utc::now(),
            )
        };
        let message = |name: &str| match read(name) {
            Parsed::Message { message, files } => {
                let album = message.part_of.clone();
                (message, files, album)
            }
            other => panic!("{name}: {other:?}"),
        };
        let (text, _, _) = message("private_text.json");
        assert_eq!(text.external_id, "424242:101");
        let (part, files, album) = message("album_part.json");
        assert_eq!(
            album.as_deref(),
            Some(format!("{}:album:13577357", part.from.handle).as_str())
        );
        assert_eq!(files.len(), 1, "the largest size only");
        assert_eq!(files[0].file_id, "AgACAgIAAxkBAAJ");
        assert_eq!(part.body.text, "The box");
        let (edit, _, _) = message("edited.json");
        assert_eq!(edit.edited_at.map(|t| t.timestamp()), Some(1_764_700_060));
        let (topic, _, _) = message("group_mention_topic.json");
        assert_eq!(topic.from.handle, "-1001847508954:4");
        assert_eq!(topic.author.map(|a| a.handle).as_deref(), Some("515151"));
        let (forwarded, files, _) = message("document_forwarded.json");
        assert_eq!(forwarded.body.text, "Forwarded from Acme news:\nThis one");
        assert_eq!(files.len(), 1);
        assert!(matches!(read("malformed_chat.json"), Parsed::Rejected(_)));
    }
}
