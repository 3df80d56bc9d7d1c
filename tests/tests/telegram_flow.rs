//! The Telegram channel end to end against the stand-in Bot API (`inbox_e2e::telegram`): private
//! chats in by long polling (offset confirmed only after each update is stored), photos fetched
//! with getFile, a malformed update and a group message kept as dead letters while the others go
//! on, and replies out with sendMessage / sendPhoto — as replies to the customer's message, a 429
//! waited out, a blocked bot failing the reply at once.

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
);

const WAIT: Duration = Duration::from_secs(30);
const ADA: (i64, &str, &str) = (424_242, "Ada", "ada_l");

/// A Telegram channel polling the stand-in, its token in a file.
async fn telegram_channel(app: &TestApp, server: &BotApiServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", server.token)).unwrap();
    app.store
        .add_channel(inbox_core::store::NewChannel {
            kind: telegram::KIND,
            name: "Telegram".into(),
            config: json!({
                "token_file": token_file,
                "api_url": server.url,
                "poll_timeout_secs": 1,
            }),
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::NETWORK_CHAT,
        })
        .await
        .unwrap();
    dir
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

    // A message whose chat is not an object; a group message mentioning the bot; one not
    // addressed to it; then a good one.
    server.push_raw(json!({"message": {"message_id": 1, "date": 0, "chat": "nonsense"}}));
    let group = json!({"id": -1_001_234, "title": "Acme customers", "type": "supergroup"});
    let mention = format!("@{BOT_USERNAME} is my parcel lost?");
    server.push(
        "message",
        json!({
            "message_id": 7, "from": user(ADA.0, ADA.1, ADA.2), "chat": group,
            "date": chrono::Utc::now().timestamp(), "text": mention,
            "entities": [{"type": "mention", "offset": 0, "length": BOT_USERNAME.len() + 1}]
        }),
    );
    server.push(
        "message",
        json!({
            "message_id": 8, "from": user(ADA.0, ADA.1, ADA.2), "chat": group,
            "date": chrono::Utc::now().timestamp(), "text": "chatting among ourselves"
        }),
    );
    server.push("message", text_message(301, ADA, "Hello?"));

    let (_, history) = conversation_with(&app, 1).await;
    assert_eq!(history[0]["text"], "Hello?");
    wait_until(WAIT, "every update confirmed", async || {
        server.pending() == 0
    })
    .await;
    let dead = wait_for(WAIT, "two dead letters", async || {
        let dead = app.store.dead_letters(10).await.unwrap();
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let errors: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("telegram message:")),
        "the malformed update says why: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("group conversations are not taken yet")),
        "{errors:?}"
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
