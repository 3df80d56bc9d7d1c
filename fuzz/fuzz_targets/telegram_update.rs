//! Arbitrary bytes as a Bot API update through the Telegram channel's parser (`parse_update`):
//! whatever arrives from `getUpdates` or the webhook must become a message, nothing, or a
//! rejection with its reason — never a panic. A message always has its `chat:message` external
//! id and a sender; an edit always has its time. Seeds: `tests/fixtures/telegram/*.json`. See
//! docs/fuzzing.md.

#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use inbox_connectors::telegram::api::BotUser;
use inbox_connectors::telegram::parse::{Parsed, parse_update};
use inbox_connectors::telegram::{GroupMessages, KIND};
use inbox_core::ids::ChannelId;
use libfuzzer_sys::fuzz_target;

static CHANNEL: LazyLock<ChannelId> = LazyLock::new(|| {
    "01890000-0000-7000-8000-000000000000"
        .parse()
        .unwrap_or_default()
});

static BOT: LazyLock<BotUser> = LazyLock::new(|| BotUser {
    id: 7_000_000_001,
    username: Some("acme_support_bot".into()),
    first_name: "Acme".into(),
    can_read_all_group_messages: false,
});

fn received() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for groups in [GroupMessages::Mentions, GroupMessages::All] {
        match parse_update(&raw, *CHANNEL, KIND, &BOT, groups, received()) {
            Parsed::Message { message, files, .. } => {
                assert!(
                    message.external_id.contains(':'),
                    "external id {:?}",
                    message.external_id
                );
                assert!(!message.from.handle.is_empty(), "a message without a sender");
                assert_eq!(message.attachments.len(), files.len(), "a file per attachment");
                if raw.get("edited_message").is_some() {
                    assert!(message.edited_at.is_some(), "an edit without its time");
                }
            }
            Parsed::Rejected(error) => assert!(!error.is_empty(), "a rejection without a reason"),
            Parsed::Ignored(_) => {}
        }
    }
});
