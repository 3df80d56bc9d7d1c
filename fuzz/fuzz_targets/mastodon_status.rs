//! Arbitrary bytes as a Mastodon notification and as a status through the Mastodon channel's
//! parser (`parse_notification`, `parse_status`): whatever the notifications or streaming API
//! hands over must become a message, nothing, or a rejection with its reason — never a panic. A
//! message always has the status id as its external id, an `@user@host` sender, a file to fetch
//! per attachment and sanitized HTML without scripts. Seeds: `tests/fixtures/mastodon/*.json`.
//! See docs/fuzzing.md.

#![no_main]

use std::sync::LazyLock;

use inbox_connectors::mastodon::KIND;
use inbox_connectors::mastodon::parse::{Account, Origin, Parsed, parse_notification, parse_status};
use inbox_core::ids::ChannelId;
use libfuzzer_sys::fuzz_target;

static CHANNEL: LazyLock<ChannelId> = LazyLock::new(|| {
    "01890000-0000-7000-8000-000000000000"
        .parse()
        .unwrap_or_default()
});

static OWN: LazyLock<Account> = LazyLock::new(|| Account {
    id: "1".into(),
    username: "acme".into(),
    acct: "acme".into(),
    display_name: "Acme Support".into(),
    bot: false,
});

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let origin = Origin {
        channel_id: *CHANNEL,
        kind: KIND,
        own: &OWN,
        host: "social.example",
    };
    for parsed in [parse_notification(&raw, origin), parse_status(&raw, origin)] {
        match parsed {
            Parsed::Message { message, media } => {
                assert!(!message.external_id.is_empty(), "a message without its status id");
                let handle = &message.from.handle;
                assert!(
                    handle.starts_with('@') && handle[1..].contains('@'),
                    "sender {handle:?}"
                );
                assert_eq!(message.attachments.len(), media.len(), "a file per attachment");
                let html = message.body.html.as_deref().unwrap_or_default();
                assert!(!html.to_ascii_lowercase().contains("<script"), "a script in {html:?}");
            }
            Parsed::Rejected(error) => assert!(!error.is_empty(), "a rejection without a reason"),
            Parsed::Ignored(_) => {}
        }
    }
});
