use serde_json::{Value, json};

use super::*;

const HOST: &str = "social.example";

fn own() -> Account {
    Account {
        id: "1".into(),
        username: "acme".into(),
        acct: "acme".into(),
        display_name: "Acme Support".into(),
        bot: false,
    }
}

fn account(id: &str, acct: &str, name: &str) -> Value {
    json!({
        "id": id, "username": acct.split('@').next().unwrap(), "acct": acct,
        "display_name": name, "locked": false, "bot": false, "discoverable": true,
        "group": false, "created_at": "2022-11-03T00:00:00.000Z", "note": "<p></p>",
        "url": format!("https://{HOST}/@{acct}"), "avatar": "https://files.example/a.png",
        "avatar_static": "https://files.example/a.png", "header": "", "header_static": "",
        "followers_count": 3, "following_count": 7, "statuses_count": 42,
        "last_status_at": "2026-12-01", "emojis": [], "fields": []
    })
}

/// A mention as the notifications API gives it (docs.joinmastodon.org/entities/Notification).
fn mention(visibility: &str, content: &str, in_reply_to: Option<&str>) -> Value {
    let ada = account("200", "ada@elsewhere.example", "Ada Lovelace");
    json!({
        "id": "34975861",
        "type": "mention",
        "created_at": "2026-12-01T10:00:01.000Z",
        "group_key": "ungrouped-34975861",
        "account": ada,
        "status": {
            "id": "110000000000000042",
            "created_at": "2026-12-01T10:00:00.000Z",
            "in_reply_to_id": in_reply_to,
            "in_reply_to_account_id": in_reply_to.map(|_| "1"),
            "sensitive": false, "spoiler_text": "", "visibility": visibility,
            "language": "en", "uri": "https://elsewhere.example/users/ada/statuses/1",
            "url": "https://elsewhere.example/@ada/1", "replies_count": 0, "reblogs_count": 0,
            "favourites_count": 0, "edited_at": null, "content": content, "reblog": null,
            "application": null, "account": ada, "media_attachments": [],
            "mentions": [{"id": "1", "username": "acme", "url": format!("https://{HOST}/@acme"), "acct": "acme"}],
            "tags": [], "emojis": [], "card": null, "poll": null
        }
    })
}

const CONTENT: &str = r#"<p><span class="h-card" translate="no"><a href="https://social.example/@acme" class="u-url mention">@<span>acme</span></a></span> where is my order?</p>"#;

fn origin(own: &Account) -> Origin<'_> {
    Origin {
        channel_id: ChannelId::new(),
        kind: ChannelKind::named("mastodon"),
        own,
        host: HOST,
    }
}

fn message(parsed: Parsed) -> (InboundMessage, Vec<MediaToFetch>) {
    match parsed {
        Parsed::Message { message, media } => (*message, media),
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn a_direct_mention_is_a_message_of_the_account_direct_thread() {
    let own = own();
    let (m, media) = message(parse_notification(
        &mention("direct", CONTENT, None),
        origin(&own),
    ));
    assert_eq!(m.external_id, "110000000000000042");
    assert_eq!(m.from.handle, "@ada@elsewhere.example");
    assert_eq!(m.from.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(m.body.text, "where is my order?");
    assert!(
        m.body
            .html
            .as_deref()
            .unwrap()
            .contains("where is my order?")
    );
    assert_eq!(m.thread.subject.as_deref(), Some(DIRECT_SUBJECT));
    assert_eq!(m.thread.in_reply_to, None);
    assert_eq!(m.sent_at.unwrap().to_rfc3339(), "2026-12-01T10:00:00+00:00");
    assert_eq!(m.to[0].handle, "@acme@social.example");
    assert!(media.is_empty());
}

#[test]
fn public_mentions_are_a_thread_per_root_and_say_so() {
    let own = own();
    let (m, _) = message(parse_notification(
        &mention("public", CONTENT, None),
        origin(&own),
    ));
    assert_eq!(
        m.thread.subject.as_deref(),
        Some("Public mention #110000000000000042 — replies are public")
    );
    let (m, _) = message(parse_notification(
        &mention("unlisted", CONTENT, Some("99")),
        origin(&own),
    ));
    assert!(
        m.thread
            .subject
            .unwrap()
            .starts_with("Unlisted mention #110000000000000042")
    );
    assert_eq!(m.thread.in_reply_to.as_deref(), Some("99"));
    let (m, _) = message(parse_notification(
        &mention("private", CONTENT, None),
        origin(&own),
    ));
    assert!(m.thread.subject.unwrap().starts_with("Followers-only"));
}

#[test]
fn content_warnings_media_and_edits_are_kept() {
    let own = own();
    let mut raw = mention("direct", CONTENT, None);
    raw["status"]["spoiler_text"] = json!("order <details>");
    raw["status"]["edited_at"] = json!("2026-12-01T10:05:00.000Z");
    raw["status"]["media_attachments"] = json!([{
        "id": "22345792", "type": "image",
        "url": "https://files.example/media_attachments/files/022/345/792/original/57859aede991da25.jpeg",
        "preview_url": "https://files.example/small/57859aede991da25.jpeg", "remote_url": null,
        "text_url": null, "meta": {}, "description": "the parcel", "blurhash": "UFBWY:8_0Jxv4mx]t8t64.%M-:IUWGWAt6M}"
    }, {
        "id": "22345793", "type": "unknown", "url": null,
        "remote_url": "https://elsewhere.example/files/receipt", "description": null
    }]);
    let (m, media) = message(parse_notification(&raw, origin(&own)));
    assert_eq!(m.body.text, "CW: order <details>\n\nwhere is my order?");
    let html = m.body.html.unwrap();
    assert!(
        html.starts_with("<p><strong>CW: order &lt;details&gt;</strong></p>"),
        "{html}"
    );
    assert_eq!(
        m.edited_at.unwrap().to_rfc3339(),
        "2026-12-01T10:05:00+00:00"
    );
    assert_eq!(media.len(), 2);
    assert_eq!(m.attachments.len(), 2);
    assert_eq!(m.attachments[0].name, "57859aede991da25.jpeg");
    assert_eq!(m.attachments[0].content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(m.attachments[1].name, "unknown-22345793");
    assert_eq!(media[1].url, "https://elsewhere.example/files/receipt");
    assert_eq!(m.attachments[0].blob, media[0].blob);
    assert!(media[0].blob.0.contains("/110000000000000042/22345792-"));
}

#[test]
fn our_own_statuses_and_other_notifications_are_not_messages() {
    let own = own();
    let mut raw = mention("public", CONTENT, None);
    raw["status"]["account"] = account("1", "acme", "Acme Support");
    assert_eq!(
        parse_notification(&raw, origin(&own)),
        Parsed::Ignored("our own status")
    );
    let mut raw = mention("public", CONTENT, None);
    raw["type"] = json!("favourite");
    assert_eq!(
        parse_notification(&raw, origin(&own)),
        Parsed::Ignored("not a mention")
    );
}

#[test]
fn malformed_entities_are_rejected_naming_the_field() {
    let own = own();
    let mut raw = mention("public", CONTENT, None);
    raw["status"]["visibility"] = json!("everyone");
    let Parsed::Rejected(error) = parse_notification(&raw, origin(&own)) else {
        panic!("accepted a bad visibility");
    };
    assert!(error.contains("status.visibility"), "{error}");
    let mut raw = mention("public", CONTENT, None);
    raw["status"] = Value::Null;
    assert!(matches!(
        parse_notification(&raw, origin(&own)),
        Parsed::Rejected(_)
    ));
    assert!(matches!(
        parse_notification(&json!([1]), origin(&own)),
        Parsed::Rejected(_)
    ));
}

#[test]
fn only_our_own_leading_mention_is_dropped() {
    assert_eq!(without_leading_mention("@acme hi", "acme"), "hi");
    assert_eq!(
        without_leading_mention("@acme@social.example @acme hi", "acme"),
        "hi"
    );
    assert_eq!(without_leading_mention("@acmeco hi", "acme"), "@acmeco hi");
    assert_eq!(without_leading_mention("hi @acme", "acme"), "hi @acme");
    assert_eq!(without_leading_mention("@acme", "acme"), "@acme");
}

#[test]
fn a_deletion_keeps_the_message_id_out_and_reads_as_deleted() {
    let own = own();
    let (stored, _) = message(parse_notification(
        &mention("direct", CONTENT, None),
        origin(&own),
    ));
    let now = Utc::now();
    let deleted = deletion_of(&stored, now, now);
    assert_eq!(deleted.external_id, stored.external_id);
    assert_eq!(deleted.from, stored.from);
    assert_ne!(deleted.id, stored.id);
    assert_eq!(deleted.body.text, DELETED_TEXT);
    assert_eq!(deleted.edited_at, Some(now));
    assert_eq!(deleted.thread.subject, stored.thread.subject);
}

#[test]
fn handles_name_the_instance() {
    assert_eq!(handle("ada", HOST), "@ada@social.example");
    assert_eq!(
        handle("ada@elsewhere.example", HOST),
        "@ada@elsewhere.example"
    );
    assert_eq!(
        handle("@ada@elsewhere.example", HOST),
        "@ada@elsewhere.example"
    );
}

/// The fixtures (also the fuzz target's seeds): each is what the docs' shapes say it is.
#[test]
fn fixtures_parse_as_described() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mastodon");
    let own = own();
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(format!("{dir}/{name}")).unwrap()).unwrap()
    };
    let (m, _) = message(parse_notification(
        &read("mention_public.json"),
        origin(&own),
    ));
    assert_eq!(m.body.text, "is the shop open on Sunday?");
    let (m, media) = message(parse_notification(
        &read("direct_with_media.json"),
        origin(&own),
    ));
    assert_eq!(
        m.body.text,
        "CW: damaged goods\n\nit arrived broken\nsee the photo"
    );
    assert_eq!(media.len(), 1);
    let (m, _) = message(parse_notification(
        &read("reply_unlisted.json"),
        origin(&own),
    ));
    assert_eq!(m.body.text, "thanks! & one more <question>");
    assert_eq!(m.thread.in_reply_to.as_deref(), Some("110000000000000041"));
    let (m, _) = message(parse_status(&read("status_update.json"), origin(&own)));
    assert!(m.edited_at.is_some());
    assert!(matches!(
        parse_notification(&read("malformed_visibility.json"), origin(&own)),
        Parsed::Rejected(_)
    ));
    assert_eq!(
        parse_notification(&read("favourite.json"), origin(&own)),
        Parsed::Ignored("not a mention")
    );
}

#[test]
fn each_subject_says_its_visibility_back() {
    let own = own();
    for visibility in ["public", "unlisted", "private", "direct"] {
        let (m, _) = message(parse_notification(
            &mention(visibility, CONTENT, None),
            origin(&own),
        ));
        let subject = m.thread.subject.unwrap();
        assert_eq!(
            visibility_of_subject(&subject).as_str(),
            visibility,
            "{subject}"
        );
    }
    assert_eq!(
        visibility_of_subject("Re: something else"),
        Visibility::Direct
    );
}
