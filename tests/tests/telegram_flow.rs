//! The Telegram channel end to end against the stand-in Bot API (`inbox_e2e::telegram`): private
//! chats in by long polling (offset confirmed only after each update is stored), photos fetched
//! with getFile, an album as one message, an edit updating the stored message (its earlier text
//! kept and shown), groups (mentions only, with privacy mode; a conversation per chat and per
//! forum topic, replies going back there), a malformed update kept as a dead letter while the
//! others go on, webhook mode (registered with a secret token; a wrong token refused; an album
//! delivered call by call still one message), and replies out with sendMessage / sendPhoto — as
//! replies to the customer's message, a 429 waited out, a blocked bot failing the reply at once.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use inbox_connectors::telegram;
use inbox_e2e::telegram::{BOT_USERNAME, BotApiServer, text_message, user};
use inbox_e2e::{Backend, TestApp, both_backends, json_of, str_of, wait_for, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    private_chat_in_and_out,
    photos_in_and_out,
    bad_updates_are_kept_and_the_rest_goes_on,
    refusals_and_rate_limits_on_replies,
    albums_arrive_as_one_message,
    edits_update_the_stored_message,
    groups_and_forum_topics,
    webhook_mode,
);

const WAIT: Duration = Duration::from_secs(30);
const ADA: (i64, &str, &str) = (424_242, "Ada", "ada_l");

/// A Telegram channel polling the stand-in, its token in a file.
async fn telegram_channel(app: &TestApp, server: &BotApiServer) -> tempfile::TempDir {
    telegram_channel_with(app, server, json!({})).await.0
}

/// A Telegram channel on the stand-in with `extra` settings (`mode`, `group_messages`).
async fn telegram_channel_with(
    app: &TestApp,
    server: &BotApiServer,
    extra: Value,
) -> (tempfile::TempDir, inbox_core::model::Channel) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", server.token)).unwrap();
    let mut config = json!({
        "token_file": token_file,
        "api_url": server.url,
        "poll_timeout_secs": 1,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        config[k] = v.clone();
    }
    let channel = app
        .store
        .add_channel(inbox_core::store::NewChannel {
            kind: telegram::KIND,
            name: "Telegram".into(),
            config,
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::NETWORK_CHAT,
        })
        .await
        .unwrap();
    (dir, channel)
}

async fn conversation_with(app: &TestApp, messages: usize) -> (String, Vec<Value>) {
    wait_for(WAIT, "the chat to become a conversation", async || {
        let conversation = app.conversations().await.into_iter().next()?;
        let id = str_of(&conversation, "id").to_owned();
        let history = app.messages(&id).await;
        (history.len() >= messages).then_some((id, history))
    })
    .await
}

async fn private_chat_in_and_out(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;

    server.push("message", text_message(101, ADA, "Where is my order?"));
    server.push("message", text_message(102, ADA, "It is #42"));
    let (conversation, history) = conversation_with(&app, 2).await;
    assert_eq!(history[0]["text"], "Where is my order?", "{history:#?}");
    assert_eq!(history[1]["text"], "It is #42");
    let contact = app.conversation(&conversation).await;
    assert!(
        contact.to_string().contains("Ada (@ada_l)"),
        "the contact has the name and username: {contact:#}"
    );
    // Both confirmed at Telegram: a later getUpdates asked for an offset past them.
    wait_until(WAIT, "the updates to be confirmed", async || {
        server.pending() == 0
    })
    .await;
    // Health: how late the last update was taken, per channel.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag = format!(
        "inbox_source_lag_seconds{{channel_id=\"{}\",kind=\"telegram\"}}",
        str_of(&contact, "channel_id")
    );
    assert!(
        metrics.lines().any(|l| l.starts_with(&lag)),
        "{lag} on /metrics"
    );

    // The agent's reply goes to the chat as a reply to the customer's last message.
    let reply = app
        .agent_writes(&conversation, "On its way: <b>not markup</b>", false)
        .await;
    let sent = app
        .wait_for_delivery(&conversation, str_of(&reply, "id"), "sent")
        .await;
    let calls = server.calls("sendMessage");
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let params = &calls[0].params;
    assert_eq!(params["chat_id"], ADA.0);
    assert_eq!(params["text"], "On its way: <b>not markup</b>");
    assert!(
        params.get("parse_mode").is_none(),
        "plain text: nothing to escape"
    );
    assert_eq!(params["reply_parameters"]["message_id"], 102);
    assert_eq!(
        sent["external_id"],
        format!("{}:5001", ADA.0),
        "the delivery carries Telegram's message id: {sent:#}"
    );

    // The customer answers the bot's message: the same conversation.
    let mut answer = text_message(103, ADA, "Thanks!");
    answer["reply_to_message"] = json!({
        "message_id": 5001,
        "from": user(inbox_e2e::telegram::BOT_ID, "Acme Support", BOT_USERNAME),
        "chat": {"id": ADA.0, "first_name": "Ada", "type": "private"},
        "date": chrono::Utc::now().timestamp(),
        "text": "On its way"
    });
    server.push("message", answer);
    let (again, history) = conversation_with(&app, 4).await;
    assert_eq!(again, conversation);
    // Telegram times are whole seconds: it may sort before the reply it answers.
    let thanks = history.iter().find(|m| m["text"] == "Thanks!").unwrap();
    assert_eq!(
        thanks["in_reply_to"],
        format!("{}:5001", ADA.0),
        "{thanks:#}"
    );
    assert_eq!(thanks["thread_reason"], "reply_reference", "{thanks:#}");
    assert_eq!(app.conversations().await.len(), 1);
    app.stop().await;
}

async fn photos_in_and_out(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;

    let small = server.add_file("photos/file_1.jpg", b"small jpeg");
    let large = server.add_file("photos/file_2.jpg", b"the large jpeg bytes");
    let mut photo = text_message(201, ADA, "");
    photo.as_object_mut().unwrap().remove("text");
    photo["caption"] = json!("The box arrived like this");
    photo["photo"] = json!([
        {"file_id": small, "file_unique_id": "AQADsmall", "file_size": 10, "width": 90, "height": 67},
        {"file_id": large, "file_unique_id": "AQADlarge", "file_size": 20, "width": 1280, "height": 960}
    ]);
    server.push("message", photo);
    let (conversation, history) = conversation_with(&app, 1).await;
    let message = &history[0];
    assert_eq!(message["text"], "The box arrived like this");
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["name"], "photo.jpg", "{message:#}");
    assert_eq!(attachment["content_type"], "image/jpeg");
    // The largest size was fetched.
    assert_eq!(server.calls("getFile").len(), 1);
    assert_eq!(server.calls("getFile")[0].params["file_id"], large.as_str());
    let blob = str_of(attachment, "blob");
    let download = app.api_get(&format!("/api/v1/attachments/{blob}")).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.bytes().await.unwrap().as_ref(),
        b"the large jpeg bytes"
    );

    // An image attached to the reply goes out with sendPhoto, the text as its caption.
    let upload = app
        .client
        .post(app.url("/api/v1/attachments"))
        .bearer_auth(&app.token)
        .header("content-type", "image/png")
        .query(&[("filename", "label.png")])
        .body(b"\x89PNG fake".to_vec())
        .send()
        .await
        .unwrap();
    let reference = json_of(upload, StatusCode::CREATED, "upload").await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let reply = json_of(
        app.api_post(
            &path,
            &json!({"text": "Here is the return label.", "attachments": [reference]}),
        )
        .await,
        StatusCode::CREATED,
        "reply with a photo",
    )
    .await;
    app.wait_for_delivery(&conversation, str_of(&reply, "id"), "sent")
        .await;
    let calls = server.calls("sendPhoto");
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].params["caption"], "Here is the return label.");
    assert_eq!(calls[0].params["chat_id"], ADA.0.to_string());
    assert!(
        calls[0].params.to_string().contains("label.png"),
        "{:#}",
        calls[0].params
    );
    assert!(
        server.calls("sendMessage").is_empty(),
        "the text went as the caption"
    );
    app.stop().await;
}

async fn bad_updates_are_kept_and_the_rest_goes_on(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;

    // A message whose chat is not an object, then a good one.
    server.push_raw(json!({"message": {"message_id": 1, "date": 0, "chat": "nonsense"}}));
    server.push("message", text_message(301, ADA, "Hello?"));

    let (_, history) = conversation_with(&app, 1).await;
    assert_eq!(history[0]["text"], "Hello?");
    wait_until(WAIT, "every update confirmed", async || {
        server.pending() == 0
    })
    .await;
    let dead = app.dead_letters_once_any().await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0].error.starts_with("telegram message:"),
        "the malformed update says why: {}",
        dead[0].error
    );
    assert_eq!(app.conversations().await.len(), 1);
    app.stop().await;
}

async fn refusals_and_rate_limits_on_replies(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;
    server.push("message", text_message(401, ADA, "Hi"));
    let (conversation, _) = conversation_with(&app, 1).await;

    // Two 429s (retry_after 1) are waited out: delivered once.
    server.rate_limit_sends(2);
    let reply = app.agent_writes(&conversation, "Hello Ada", false).await;
    app.wait_for_delivery(&conversation, str_of(&reply, "id"), "sent")
        .await;
    let accepted: Vec<_> = server
        .calls("sendMessage")
        .into_iter()
        .filter(|c| c.params["text"] == "Hello Ada")
        .collect();
    assert_eq!(accepted.len(), 3, "two refused, one accepted");

    // The user blocked the bot: the reply fails with that reason, and is not tried again.
    server.block(ADA.0);
    let before = server.calls("sendMessage").len();
    let reply = app
        .agent_writes(&conversation, "Are you there?", false)
        .await;
    let failed = app
        .wait_for_delivery(&conversation, str_of(&reply, "id"), "failed")
        .await;
    assert!(failed.to_string().contains("blocked the bot"), "{failed:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.calls("sendMessage").len(), before + 1);
    app.stop().await;
}

/// A photo of an album: its part of `media_group_id`, the caption on the first part only.
fn album_part(
    server: &BotApiServer,
    message_id: i64,
    unique: &str,
    caption: Option<&str>,
) -> Value {
    let file = server.add_file(&format!("photos/{unique}.jpg"), unique.as_bytes());
    let mut part = text_message(message_id, ADA, "");
    part.as_object_mut().unwrap().remove("text");
    part["media_group_id"] = json!("13577357");
    part["photo"] = json!([
        {"file_id": file, "file_unique_id": unique, "file_size": unique.len(), "width": 800, "height": 600}
    ]);
    if let Some(caption) = caption {
        part["caption"] = json!(caption);
    }
    part
}

async fn albums_arrive_as_one_message(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;

    server.push(
        "message",
        album_part(&server, 601, "AQADone", Some("Three sides of the box")),
    );
    server.push("message", album_part(&server, 602, "AQADtwo", None));
    server.push("message", album_part(&server, 603, "AQADthree", None));
    server.push("message", text_message(604, ADA, "See?"));
    let (_, history) = conversation_with(&app, 2).await;
    assert_eq!(history.len(), 2, "the album is one message: {history:#?}");
    let album = &history[0];
    assert_eq!(album["text"], "Three sides of the box");
    assert_eq!(album["external_id"], format!("{}:601", ADA.0));
    let names: Vec<&str> = album["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["blob"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{album:#}");
    for (blob, unique) in names.iter().zip(["AQADone", "AQADtwo", "AQADthree"]) {
        assert!(blob.contains(unique), "{blob}");
        let bytes = app
            .api_get(&format!("/api/v1/attachments/{blob}"))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.as_ref(), unique.as_bytes());
    }
    assert_eq!(history[1]["text"], "See?");
    // The inbox shows the album's photos.
    let browser = inbox_e2e::session::Browser::sign_in(&app, inbox_core::model::Role::Agent).await;
    let (_, page) = browser
        .get(&format!(
            "/conversations/{}",
            str_of(album, "conversation_id")
        ))
        .await;
    assert_eq!(
        page.matches(r#"<img src="/api/v1/attachments/attachments/telegram/"#)
            .count(),
        3,
        "{page}"
    );
    wait_until(WAIT, "every update confirmed", async || {
        server.pending() == 0
    })
    .await;
    app.stop().await;
}

async fn edits_update_the_stored_message(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;

    let original = text_message(701, ADA, "My order is #41");
    let sent = original["date"].as_i64().unwrap();
    server.push("message", original.clone());
    let (conversation, history) = conversation_with(&app, 1).await;
    let id = str_of(&history[0], "id").to_owned();
    assert!(history[0]["edited_at"].is_null());

    let mut edited = original.clone();
    edited["text"] = json!("My order is #42");
    edited["edit_date"] = json!(sent + 30);
    server.push("edited_message", edited.clone());
    // Telegram may send an edit twice (a re-read after a crash): the second changes nothing.
    server.push("edited_message", edited);
    let message = wait_for(WAIT, "the edit to be applied", async || {
        let message = app.message(&conversation, &id).await;
        (message["text"] == "My order is #42").then_some(message)
    })
    .await;
    wait_until(WAIT, "every update confirmed", async || {
        server.pending() == 0
    })
    .await;
    assert_eq!(
        app.messages(&conversation).await.len(),
        1,
        "edited, not added"
    );
    let message = app.message(&conversation, str_of(&message, "id")).await;
    let edited_at: chrono::DateTime<chrono::Utc> = message["edited_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("edited_at: {message:#}"));
    assert_eq!(edited_at.timestamp(), sent + 30, "Telegram's edit_date");
    let revisions = message["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 1, "{message:#}");
    assert_eq!(revisions[0]["text"], "My order is #41");

    // The log says so, with the earlier text; the conversation page marks it edited.
    let events = app
        .get_json(&format!("/api/v1/conversations/{conversation}/events"))
        .await;
    let edits: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message_edited")
        .collect();
    assert_eq!(edits.len(), 1, "{events:#}");
    assert_eq!(edits[0]["data"]["previous_text"], "My order is #41");
    let browser = inbox_e2e::session::Browser::sign_in(&app, inbox_core::model::Role::Agent).await;
    let (status, page) = browser.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(">edited</time>"), "the edited marker: {page}");
    assert!(
        page.contains(r#"aria-label="telegram channel">✈</span>"#),
        "the Telegram icon: {page}"
    );
    assert!(page.contains("Earlier versions (1)"), "{page}");
    assert!(page.contains("My order is #41"), "{page}");

    // An edit of a message never stored (sent before the channel existed) is the message.
    let mut unseen = text_message(650, ADA, "Sent before you were here, edited since");
    unseen["edit_date"] = json!(sent);
    server.push("edited_message", unseen);
    let history = wait_for(WAIT, "the unseen message", async || {
        let history = app.messages(&conversation).await;
        (history.len() == 2).then_some(history)
    })
    .await;
    let unseen = history
        .iter()
        .find(|m| m["external_id"] == format!("{}:650", ADA.0))
        .unwrap();
    assert!(unseen["edited_at"].is_string(), "{unseen:#}");
    app.stop().await;
}

async fn groups_and_forum_topics(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let _token = telegram_channel(&app, &server).await;
    const BO: (i64, &str, &str) = (515_151, "Bo", "bo_k");

    // Privacy mode: the bot sees mentions, replies to it and commands; of those, chatter not
    // addressed to it is left alone.
    let group = json!({"id": -1_001_234, "title": "Acme customers", "type": "supergroup"});
    let now = chrono::Utc::now().timestamp();
    let mention = format!("@{BOT_USERNAME} is my parcel lost?");
    server.push(
        "message",
        json!({
            "message_id": 7, "from": user(ADA.0, ADA.1, ADA.2), "chat": group,
            "date": now, "text": mention,
            "entities": [{"type": "mention", "offset": 0, "length": BOT_USERNAME.len() + 1}]
        }),
    );
    server.push(
        "message",
        json!({
            "message_id": 8, "from": user(BO.0, BO.1, BO.2), "chat": group,
            "date": now, "text": "chatting among ourselves"
        }),
    );
    let (conversation, history) = conversation_with(&app, 1).await;
    assert_eq!(history[0]["sender_name"], "Ada (@ada_l)", "{history:#?}");
    let details = app.conversation(&conversation).await;
    assert!(
        details.to_string().contains("Acme customers"),
        "the group is the customer: {details:#}"
    );

    // Bo answers the bot in the same group: the same conversation, shown as Bo's.
    let reply = app.agent_writes(&conversation, "Let me check", false).await;
    let sent = app
        .wait_for_delivery(&conversation, str_of(&reply, "id"), "sent")
        .await;
    let calls = server.calls("sendMessage");
    assert_eq!(calls[0].params["chat_id"], -1_001_234, "{calls:#?}");
    assert_eq!(calls[0].params["reply_parameters"]["message_id"], 7);
    let bot_message = str_of(&sent, "external_id")
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    server.push(
        "message",
        json!({
            "message_id": 9, "from": user(BO.0, BO.1, BO.2), "chat": group, "date": now + 1,
            "text": "Mine too",
            "reply_to_message": {
                "message_id": bot_message, "from": user(inbox_e2e::telegram::BOT_ID, "Acme Support", BOT_USERNAME),
                "chat": group, "date": now, "text": "Let me check"
            }
        }),
    );
    let (_, history) = conversation_with(&app, 3).await;
    let bo = history.iter().find(|m| m["text"] == "Mine too").unwrap();
    assert_eq!(bo["sender_name"], "Bo (@bo_k)");
    assert_eq!(bo["thread_reason"], "reply_reference");

    // A forum topic is a conversation of its own, and replies go to that topic.
    let forum =
        json!({"id": -1_009_999, "title": "Acme help", "type": "supergroup", "is_forum": true});
    server.push(
        "message",
        json!({
            "message_id": 40, "message_thread_id": 33, "is_topic_message": true,
            "from": user(ADA.0, ADA.1, ADA.2), "chat": forum, "date": now + 2,
            "text": format!("@{BOT_USERNAME} refund please"),
            "entities": [{"type": "mention", "offset": 0, "length": BOT_USERNAME.len() + 1}]
        }),
    );
    let topic = wait_for(WAIT, "the topic's conversation", async || {
        app.conversations()
            .await
            .into_iter()
            .map(|c| str_of(&c, "id").to_owned())
            .find(|id| *id != conversation)
    })
    .await;
    let reply = app.agent_writes(&topic, "Refunded", false).await;
    app.wait_for_delivery(&topic, str_of(&reply, "id"), "sent")
        .await;
    let to_topic = server
        .calls("sendMessage")
        .into_iter()
        .find(|c| c.params["text"] == "Refunded")
        .unwrap();
    assert_eq!(to_topic.params["chat_id"], -1_009_999);
    assert_eq!(to_topic.params["message_thread_id"], 33);
    assert_eq!(app.conversations().await.len(), 2);
    assert!(app.store.dead_letters(10).await.unwrap().is_empty());
    app.stop().await;
}

async fn webhook_mode(backend: Backend) {
    let server = BotApiServer::start("7000000001:AAE-test-token").await;
    let app = TestApp::spawn(backend).await;
    let (_token, channel) = telegram_channel_with(&app, &server, json!({"mode": "webhook"})).await;

    // The source registers the webhook: this server's intake, with the channel's secret token.
    let (url, secret) = wait_for(WAIT, "setWebhook", async || server.webhook()).await;
    assert_eq!(url, app.url(&telegram::webhook::path(channel.id)));
    assert_eq!(
        secret,
        telegram::webhook::secret_token(&server.token, channel.id)
    );
    let set = server.calls("setWebhook");
    assert_eq!(
        set[0].params["allowed_updates"],
        json!(["message", "edited_message"])
    );

    // A call without the right secret token is refused and stores nothing.
    let forged = text_message(801, ADA, "forged");
    // Another token of the same shape: its first digit changed (a hex secret need not hold any
    // given letter).
    let flipped = format!(
        "{}{}",
        if secret.starts_with('0') { '1' } else { '0' },
        &secret[1..]
    );
    for token in [None, Some("0".repeat(64)), Some(flipped)] {
        let mut request = app
            .client
            .post(&url)
            .json(&json!({"update_id": 1, "message": forged}));
        if let Some(token) = token {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    // Telegram's own deliveries carry it: stored, and answered only then.
    server.push("message", text_message(802, ADA, "Via the webhook"));
    server.push("message", text_message(803, ADA, "And again"));
    let (conversation, history) = conversation_with(&app, 2).await;
    assert_eq!(history[0]["text"], "Via the webhook");
    assert_eq!(history[1]["text"], "And again");
    wait_until(WAIT, "both delivered", async || {
        server.webhook_delivered() == 2
    })
    .await;
    assert!(
        server.calls("getUpdates").is_empty(),
        "no polling in webhook mode"
    );
    // A re-delivery (Telegram retries when unsure) stores nothing twice.
    let again = app
        .client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .json(
            &json!({"update_id": 850_000_002_i64, "message": text_message(803, ADA, "And again")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.messages(&conversation).await.len(), 2);
    assert!(
        app.messages(&conversation)
            .await
            .iter()
            .all(|m| m["text"] != "forged")
    );

    // An album comes as one call per photo, each answered once stored: still one message.
    server.push(
        "message",
        album_part(&server, 805, "AQADhook1", Some("By webhook")),
    );
    server.push("message", album_part(&server, 806, "AQADhook2", None));
    server.push("message", album_part(&server, 807, "AQADhook3", None));
    wait_until(WAIT, "the album delivered", async || {
        server.webhook_delivered() == 5
    })
    .await;
    let history = app.messages(&conversation).await;
    assert_eq!(history.len(), 3, "the album is one message: {history:#?}");
    assert_eq!(history[2]["text"], "By webhook");
    assert_eq!(history[2]["external_id"], format!("{}:805", ADA.0));
    let blobs: Vec<&str> = history[2]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["blob"].as_str().unwrap())
        .collect();
    assert_eq!(blobs.len(), 3, "{:#}", history[2]);
    for (blob, unique) in blobs.iter().zip(["AQADhook1", "AQADhook2", "AQADhook3"]) {
        assert!(blob.contains(unique), "{blob}");
    }

    // Switched to polling at runtime: our webhook is removed, and polling takes over.
    let mut config = channel.config.clone();
    config["mode"] = json!("polling");
    let patched = app
        .api_patch(
            &format!("/api/v1/channels/{}", channel.id),
            &json!({"config": config}),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    wait_until(WAIT, "the webhook removed", async || {
        server.webhook().is_none()
    })
    .await;
    server.push("message", text_message(804, ADA, "Polled now"));
    conversation_with(&app, 4).await;
    assert_eq!(server.calls("deleteWebhook").len(), 1);
    app.stop().await;
}
