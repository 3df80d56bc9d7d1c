//! Arbitrary bytes through the email normalizer (`parse_email`: MIME, charsets, attachments, HTML
//! sanitizing) and, as text, straight through `sanitize_html`. Neither may panic, and no `<script`
//! may come out of the sanitizer. See docs/fuzzing.md.

#![no_main]

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use inbox_connectors::email::parse::{parse_email, sanitize_html};
use inbox_core::ids::ChannelId;
use libfuzzer_sys::fuzz_target;

static CHANNEL: LazyLock<ChannelId> = LazyLock::new(|| {
    "01890000-0000-7000-8000-000000000000"
        .parse()
        .unwrap_or_default()
});

fn received() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default()
}

fn assert_no_script(html: &str, what: &str) {
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "<script survived {what}: {html}"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_email(data, *CHANNEL, received()) {
        let m = &parsed.message;
        if let Some(html) = &m.body.html {
            assert_no_script(html, "parse_email");
        }
        assert!(!m.body.text.contains('\0'), "NUL in the text");
        assert!(!m.external_id.is_empty(), "empty external id");
        assert_eq!(parsed.blobs[0].1, data, "the raw message is the first blob");
        for attachment in &m.attachments {
            assert!(
                parsed
                    .blobs
                    .iter()
                    .any(|(blob, _)| *blob == attachment.blob),
                "attachment {} without its blob",
                attachment.name
            );
        }
    }
    let html = String::from_utf8_lossy(data);
    assert_no_script(&sanitize_html(&html), "sanitize_html");
});
