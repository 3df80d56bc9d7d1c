//! The website chat's protocol end to end, on both backends, as another client than the widget
//! would speak it (the widget itself runs in Chromium in `web_browser.rs`): the origin check and
//! CORS, sessions and their tokens, sends taken once per client id through the funnel, fields
//! named when wrong, the stream with its history, live replies and `Last-Event-ID` resumption,
//! identity verification, rate limits, a paused channel, the email fallback for a visitor who
//! has gone (through a real SMTP server), and `inbox channel add web-chat`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use inbox_connectors::web_chat::{self, visitor};
use inbox_core::model::Channel;
use inbox_e2e::{Backend, TestApp, both_backends, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    only_listed_sites_may_use_the_chat,
    visitors_send_once_per_client_id_and_bad_input_is_named,
    the_stream_gives_the_history_then_live_replies_and_resumes,
    proven_users_are_linked_and_forged_claims_are_not,
    limits_and_a_paused_channel_refuse_with_a_retry,
    the_cli_adds_a_web_chat_channel,
    a_visitor_who_has_gone_also_gets_the_reply_by_email,
    files_are_taken_when_the_channel_allows_them,
    required_pre_chat_fields_are_asked_for_before_a_message,
    the_visitor_sees_an_agent_typing_and_reading,
);

const SITE: &str = "https://shop.example";
const WAIT: Duration = Duration::from_secs(20);

async fn chat_channel(app: &TestApp) -> Channel {
    app.store
        .create_channel(
            web_chat::KIND,
            "Shop website",
            json!({"origins": [SITE], "name_field": "optional"}),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the web chat channel")
}

fn widget_url(app: &TestApp, channel: &Channel, call: &str) -> String {
    app.url(&format!("/widget/{}/{call}", channel.id))
}

async fn post_from(
    app: &TestApp,
    url: &str,
    origin: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = app.client.post(url).header("origin", origin).json(body);
    if let Some(token) = token {
        request = request.header("x-chat-token", token);
    }
    request.send().await.unwrap()
}

/// A session from the shop's site; returns its answer.
async fn session(app: &TestApp, channel: &Channel, body: &Value) -> Value {
    let response = post_from(app, &widget_url(app, channel, "session"), SITE, None, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn send(
    app: &TestApp,
    channel: &Channel,
    chat_token: &str,
    client_id: &str,
    text: &str,
) -> reqwest::Response {
    post_from(
        app,
        &widget_url(app, channel, "messages"),
        SITE,
        Some(chat_token),
        &json!({"client_id": client_id, "text": text}),
    )
    .await
}

/// The only conversation of the channel once it has `messages` messages, and those messages.
async fn conversation_with(app: &TestApp, messages: usize) -> (String, Vec<Value>) {
    wait_for(WAIT, "the conversation", async || {
        let conversation = app.conversations().await.into_iter().next()?;
        let id = conversation["id"].as_str()?.to_owned();
        let history = app.messages(&id).await;
        (history.len() >= messages).then_some((id, history))
    })
    .await
}

async fn only_listed_sites_may_use_the_chat(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = chat_channel(&app).await;

    // The script is public (a site embeds it); it is ours, and small.
    let script = app.client.get(app.url("/widget.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let body = script.text().await.unwrap();
    assert!(body.contains("attachShadow({ mode: \"open\" })"));

    let url = widget_url(&app, &channel, "session");
    for origin in [
        "https://evil.example",
        "https://shop.example.evil.example",
        "null",
        "",
    ] {
        let response = post_from(&app, &url, origin, None, &json!({})).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin:?}");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{origin:?}"
        );
    }
    let allowed = post_from(&app, &url, SITE, None, &json!({})).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["access-control-allow-origin"], SITE);

    // The browser's preflight of a send.
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            widget_url(&app, &channel, "messages"),
        )
        .header("origin", SITE)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-chat-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()["access-control-allow-origin"], SITE);
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-chat-token")
    );

    // An unknown channel, and another kind's channel, are not chats.
    let webhook = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    for id in [webhook.id.to_string(), "not-a-uuid".to_owned()] {
        let response = post_from(
            &app,
            &app.url(&format!("/widget/{id}/session")),
            SITE,
            None,
            &json!({}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{id}");
    }
    app.stop().await;
}

async fn visitors_send_once_per_client_id_and_bad_input_is_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = chat_channel(&app).await;
    let started = session(&app, &channel, &json!({"name": "Ada"})).await;
    assert_eq!(started["identity"], "anonymous");
    assert_eq!(started["settings"]["greeting"], "Hi! How can we help?");
    let token = started["chat_token"].as_str().unwrap();

    // A retried send (the answer was lost) is taken once.
    for _ in 0..3 {
        let response = send(
            &app,
            &channel,
            token,
            "c-0001-retried",
            "Where is my parcel?",
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let (conversation, history) = conversation_with(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.messages(&conversation).await.len(), 1, "{history:#?}");
    assert_eq!(history[0]["text"], "Where is my parcel?");
    let summary = app.conversation(&conversation).await;
    assert!(
        summary["contact_handle"]
            .as_str()
            .unwrap()
            .starts_with("visitor:"),
        "{summary:#}"
    );

    // The same visitor comes back with its token: the same contact, the same conversation.
    let again = session(
        &app,
        &channel,
        &json!({"visitor_token": started["visitor_token"]}),
    )
    .await;
    assert_eq!(again["visitor_token"], started["visitor_token"]);
    let token_again = again["chat_token"].as_str().unwrap();
    let response = send(&app, &channel, token_again, "c-0002-back", "Still waiting").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    conversation_with(&app, 2).await;
    assert_eq!(app.conversations().await.len(), 1);

    // What is wrong is named; nothing is stored.
    let cases = [
        (json!({"client_id": "short", "text": "x"}), "client_id"),
        (json!({"client_id": "c-0003-empty", "text": "   "}), "text"),
        (
            json!({"client_id": "c-0004-long", "text": "x".repeat(4_001)}),
            "text",
        ),
        (
            json!({"client_id": "c-0005-nul", "text": "a\u{0}b"}),
            "text",
        ),
        (json!({"text": "no id"}), "client_id"),
        (
            json!({"client_id": "c-0006-extra", "text": "x", "html": "<b>"}),
            "html",
        ),
    ];
    for (body, field) in cases {
        let response = post_from(
            &app,
            &widget_url(&app, &channel, "messages"),
            SITE,
            Some(token),
            &body,
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    // A forged or missing chat token.
    for bad in [Some("c1.e30.00"), None] {
        let response = post_from(
            &app,
            &widget_url(&app, &channel, "messages"),
            SITE,
            bad,
            &json!({"client_id": "c-0007-forged", "text": "hi"}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // A malformed email in the pre-chat form.
    let response = post_from(
        &app,
        &widget_url(&app, &channel, "session"),
        SITE,
        None,
        &json!({"email": "not an email"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["field"], "email");
    assert_eq!(app.messages(&conversation).await.len(), 2);
    app.stop().await;
}

/// Reads SSE `message` events from a stream until `count` arrived; returns their (id, data).
async fn read_events(response: reqwest::Response, count: usize) -> Vec<(String, Value)> {
    read_kinds(response, &["message"], count)
        .await
        .into_iter()
        .map(|(_, id, data)| (id, data))
        .collect()
}

/// Reads SSE events of the named kinds until `count` arrived; returns (kind, id, data).
async fn read_kinds(
    mut response: reqwest::Response,
    kinds: &[&str],
    count: usize,
) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
            };
            if let Some(kind) = field("event").filter(|k| kinds.contains(&k.as_str())) {
                let data = serde_json::from_str(&field("data").unwrap()).unwrap();
                events.push((kind, field("id").unwrap_or_default(), data));
            }
        }
    }
    events
}

async fn open_stream(
    app: &TestApp,
    channel: &Channel,
    chat_token: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .get(widget_url(app, channel, "stream"))
        .query(&[("chat", chat_token)])
        .header("origin", SITE);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], SITE);
    response
}

async fn the_stream_gives_the_history_then_live_replies_and_resumes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = chat_channel(&app).await;
    let started = session(&app, &channel, &json!({})).await;
    let token = started["chat_token"].as_str().unwrap().to_owned();
    send(&app, &channel, &token, "c-1000-first", "First question").await;
    let (conversation, _) = conversation_with(&app, 1).await;

    // The history, then an agent's reply live, with the agent's name.
    let stream = open_stream(&app, &channel, &token, None).await;
    let reader = tokio::spawn(read_events(stream, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = app
        .agent_writes(&conversation, "<b>Hello</b> from support", false)
        .await;
    let events = reader.await.unwrap();
    assert_eq!(events[0].1["from"], "visitor");
    assert_eq!(events[0].1["text"], "First question");
    assert_eq!(events[0].1["client_id"], "c-1000-first");
    assert_eq!(events[1].1["from"], "agent");
    assert_eq!(events[1].1["text"], "<b>Hello</b> from support");
    assert_eq!(events[1].1["agent"], app.admin.name);
    let delivered = app
        .wait_for_delivery(&conversation, reply["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(delivered["delivery_status"], "sent");

    // While no stream is open: a visitor message and two replies. Resuming after the first
    // event gives exactly what came later, in order.
    send(&app, &channel, &token, "c-1001-second", "Second question").await;
    conversation_with(&app, 3).await;
    app.agent_writes(&conversation, "Reply one", false).await;
    app.agent_writes(&conversation, "Reply two", false).await;
    let resumed = open_stream(&app, &channel, &token, Some(&events[0].0)).await;
    let later = read_events(resumed, 4).await;
    // Replies may be delivered in any order; each is shown at the time it was written.
    let mut by_time: Vec<&Value> = later.iter().map(|(_, e)| e).collect();
    by_time
        .sort_by_key(|e| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap());
    let texts: Vec<&str> = by_time
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "<b>Hello</b> from support",
            "Second question",
            "Reply one",
            "Reply two"
        ]
    );
    // Ids only grow, so a resume never repeats one.
    let ids: Vec<&str> = events
        .iter()
        .chain(&later[1..])
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // A notes stays inside the team.
    app.agent_writes(&conversation, "Internal: VIP", true).await;
    let all = read_events(open_stream(&app, &channel, &token, None).await, 5).await;
    assert!(all.iter().all(|(_, e)| e["text"] != "Internal: VIP"));

    // Another visitor's token sees nothing of this chat.
    let stranger = session(&app, &channel, &json!({})).await;
    send(
        &app,
        &channel,
        stranger["chat_token"].as_str().unwrap(),
        "c-2000-stranger",
        "Hi",
    )
    .await;
    let theirs = read_events(
        open_stream(
            &app,
            &channel,
            stranger["chat_token"].as_str().unwrap(),
            None,
        )
        .await,
        1,
    )
    .await;
    assert_eq!(theirs[0].1["text"], "Hi");
    app.stop().await;
}

async fn proven_users_are_linked_and_forged_claims_are_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = chat_channel(&app).await;
    // Ada already wrote by email: a proven identity with that email is the same customer.
    let email_channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let accepted = app
        .post_webhook(
            email_channel.id,
            &email_channel.secret,
            &json!({"external_id": "w-1", "from": {"handle": "ada-crm", "email": "ada@shop.example"},
                    "text": "By the other channel"}),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let ada_contact = wait_for(WAIT, "Ada's contact", async || {
        let conversation = app.conversations().await.into_iter().next()?;
        conversation["contact_id"].as_str().map(str::to_owned)
    })
    .await;

    let claim = |secret: &str, email: &str| {
        json!({"user_id": "u-42", "email": email, "name": "Ada",
               "hash": visitor::identity_hash(secret, "u-42", Some(email))})
    };
    let proven = session(
        &app,
        &channel,
        &json!({"user": claim(&channel.secret, "ada@shop.example")}),
    )
    .await;
    assert_eq!(proven["identity"], "verified");
    let forged = session(
        &app,
        &channel,
        &json!({"user": claim("a guess", "ada@shop.example")}),
    )
    .await;
    assert_eq!(forged["identity"], "rejected");
    // A right hash for another email does not prove this one.
    let swapped = {
        let mut c = claim(&channel.secret, "grace@shop.example");
        c["email"] = json!("ada@shop.example");
        session(&app, &channel, &json!({"user": c})).await
    };
    assert_eq!(swapped["identity"], "rejected");

    for (answer, id, text) in [
        (&proven, "c-3000-proven", "Proven Ada"),
        (&forged, "c-3001-forged", "Forged Ada"),
        (&swapped, "c-3002-swapped", "Swapped Ada"),
    ] {
        let response = send(
            &app,
            &channel,
            answer["chat_token"].as_str().unwrap(),
            id,
            text,
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let by_text = wait_for(WAIT, "the three chats", async || {
        let conversations = app.conversations().await;
        (conversations.len() == 4).then_some(conversations)
    })
    .await;
    let of = |text: &str| {
        by_text
            .iter()
            .find(|c| c["preview"] == text)
            .unwrap_or_else(|| panic!("{text}: {by_text:#?}"))
    };
    assert_eq!(of("Proven Ada")["contact_handle"], "user:u-42");
    assert_eq!(
        of("Proven Ada")["contact_id"],
        ada_contact.as_str(),
        "the proven email links to the customer"
    );
    for text in ["Forged Ada", "Swapped Ada"] {
        assert!(
            of(text)["contact_handle"]
                .as_str()
                .unwrap()
                .starts_with("visitor:"),
            "{text}"
        );
        assert_ne!(of(text)["contact_id"], ada_contact.as_str(), "{text}");
    }
    app.stop().await;
}

async fn limits_and_a_paused_channel_refuse_with_a_retry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = chat_channel(&app).await;
    let token = session(&app, &channel, &json!({})).await["chat_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut refused = None;
    for i in 0..31 {
        let response = send(&app, &channel, &token, &format!("c-limit-{i:04}"), "spam").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((i, response));
            break;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED, "message {i}");
    }
    let (at, response) = refused.expect("the 31st message in a minute is refused");
    assert_eq!(at, 30);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    // Another visitor is not held back by this one.
    let other = session(&app, &channel, &json!({})).await["chat_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = send(&app, &channel, &other, "c-other-0001", "hello").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Paused (seen within the channel directory's refresh): refused with a retry; the widget
    // keeps the message and sends it again.
    app.api_patch(
        &format!("/api/v1/channels/{}", channel.id),
        &json!({"enabled": false}),
    )
    .await;
    let mut attempt = 0;
    let paused = wait_for(WAIT, "the pause seen", async || {
        attempt += 1;
        let response = send(
            &app,
            &channel,
            &other,
            &format!("c-paused-{attempt:04}"),
            "hello?",
        )
        .await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert!(paused.headers().contains_key("retry-after"));
    assert_eq!(
        paused.headers()["access-control-allow-origin"],
        SITE,
        "the site may read why"
    );
    app.stop().await;
}

async fn the_cli_adds_a_web_chat_channel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stopped = app.stop().await;
    let out = stopped.cli(&[
        "channel",
        "add",
        "web-chat",
        "--name",
        "Shop website",
        "--origin",
        "HTTPS://Shop.Example/",
        "--origin",
        "https://www.shop.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(!created["secret"].as_str().unwrap().is_empty());
    let embed = created["embed"].as_str().unwrap();
    assert!(embed.starts_with(r#"<script src="http"#), "{embed}");
    assert!(
        embed.ends_with(&format!(
            r#"/widget.js" data-channel="{id}" async></script>"#
        )),
        "{embed}"
    );
    let bad = stopped.cli(&[
        "channel",
        "add",
        "web-chat",
        "--name",
        "Bad",
        "--origin",
        "shop.example",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("origins"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let app = stopped.start().await;
    let channel = app.get_json(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(channel["kind"], "web_chat");
    assert_eq!(
        channel["config"]["origins"],
        json!(["https://shop.example", "https://www.shop.example"])
    );
    assert!(
        channel.get("secret").is_none(),
        "secrets are never returned"
    );
    app.stop().await;
}

async fn a_visitor_who_has_gone_also_gets_the_reply_by_email(backend: Backend) {
    let mail = inbox_e2e::mail::MailServer::start();
    let app = TestApp::spawn(backend).await;
    let email = app
        .store
        .create_channel(
            inbox_connectors::email::KIND,
            "Support mailbox",
            serde_json::to_value(mail.support_config()).unwrap(),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the email channel");
    let channel = app
        .store
        .create_channel(
            web_chat::KIND,
            "Shop website",
            json!({"origins": [SITE], "email_fallback_channel": email.id, "away_after_minutes": 0}),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the web chat channel");

    // One visitor keeps the chat open; the other left an address and closed the tab.
    let staying = session(&app, &channel, &json!({"email": "customer@example.test"})).await;
    let staying_token = staying["chat_token"].as_str().unwrap().to_owned();
    let stream = open_stream(&app, &channel, &staying_token, None).await;
    let gone = session(
        &app,
        &channel,
        &json!({"name": "Cy", "email": "customer@example.test"}),
    )
    .await;
    let gone_token = gone["chat_token"].as_str().unwrap().to_owned();
    send(
        &app,
        &channel,
        &staying_token,
        "c-4000-staying",
        "I am still here",
    )
    .await;
    send(
        &app,
        &channel,
        &gone_token,
        "c-4001-gone",
        "Call me back by mail",
    )
    .await;
    let conversations = wait_for(WAIT, "both chats", async || {
        let all = app.conversations().await;
        (all.len() == 2).then_some(all)
    })
    .await;
    let of = |text: &str| {
        conversations
            .iter()
            .find(|c| c["preview"] == text)
            .and_then(|c| c["id"].as_str())
            .unwrap()
            .to_owned()
    };
    let (here, away) = (of("I am still here"), of("Call me back by mail"));
    let to_here = app.agent_writes(&here, "Great, one moment", false).await;
    let to_away = app
        .agent_writes(&away, "Your refund was sent today", false)
        .await;
    for (conversation, reply) in [(&here, &to_here), (&away, &to_away)] {
        app.wait_for_delivery(conversation, reply["id"].as_str().unwrap(), "sent")
            .await;
    }

    // The visitor who left gets it by email, from the support address (sent before the reply
    // counted as sent); the one with the chat open only in the chat.
    let sent = mail.new_mail("customer");
    assert_eq!(
        sent.len(),
        1,
        "one email, for the visitor who left: {sent:#?}"
    );
    assert!(
        sent[0].contains("Your refund was sent today"),
        "{}",
        sent[0]
    );
    assert!(
        sent[0].contains("Subject: Re: Your chat with Shop website"),
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("support@example.test"), "{}", sent[0]);
    assert!(!sent[0].contains("Great, one moment"));
    drop(stream);
    // The chat has the reply too, for the visitor's next visit.
    let history = read_events(open_stream(&app, &channel, &gone_token, None).await, 2).await;
    assert_eq!(history[1].1["text"], "Your refund was sent today");
    app.stop().await;
}

async fn upload(
    app: &TestApp,
    channel: &Channel,
    chat_token: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> reqwest::Response {
    app.client
        .post(widget_url(app, channel, "files"))
        .query(&[("name", name)])
        .header("origin", SITE)
        .header("x-chat-token", chat_token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn files_are_taken_when_the_channel_allows_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .store
        .create_channel(
            web_chat::KIND,
            "Shop website",
            json!({"origins": [SITE], "uploads": true, "max_upload_bytes": 1000}),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the web chat channel");
    let started = session(&app, &channel, &json!({})).await;
    assert_eq!(started["settings"]["uploads"], true);
    let token = started["chat_token"].as_str().unwrap().to_owned();

    let taken = upload(
        &app,
        &channel,
        &token,
        "../Receipt März.txt",
        "text/plain",
        b"paid: 42",
    )
    .await;
    assert_eq!(taken.status(), StatusCode::CREATED);
    let file: Value = taken.json().await.unwrap();
    assert_eq!(file["name"], "Receipt März.txt");
    assert_eq!(file["size"], 8);
    let blob = file["blob"].as_str().unwrap().to_owned();
    assert!(
        blob.starts_with(&format!("attachments/web_chat/{}/", channel.id)),
        "{blob}"
    );

    // Types a browser could run, files over the channel's limit, empty ones: refused.
    for (content_type, bytes, status) in [
        (
            "text/html",
            b"<script>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/javascript",
            b"alert(1)".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("image/png", vec![0; 1001], StatusCode::PAYLOAD_TOO_LARGE),
        ("image/png", Vec::new(), StatusCode::BAD_REQUEST),
    ] {
        let response = upload(&app, &channel, &token, "x", content_type, &bytes).await;
        assert_eq!(response.status(), status, "{content_type} {}", bytes.len());
    }

    // A message with the file and no text; the agent can open it.
    let response = post_from(
        &app,
        &widget_url(&app, &channel, "messages"),
        SITE,
        Some(&token),
        &json!({"client_id": "c-5000-file", "attachments": [file]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (_, history) = conversation_with(&app, 1).await;
    let stored = &history[0]["attachments"][0];
    assert_eq!(stored["name"], "Receipt März.txt");
    assert_eq!(stored["content_type"], "text/plain");
    let bytes = app
        .api_get(&format!("/api/v1/attachments/{blob}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), b"paid: 42");
    let shown = read_events(open_stream(&app, &channel, &token, None).await, 1).await;
    assert_eq!(shown[0].1["files"], json!(["Receipt März.txt"]));

    // Another visitor cannot attach this chat's file, nor a path that was never uploaded.
    let other = session(&app, &channel, &json!({})).await["chat_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut missing = file.clone();
    missing["blob"] = json!(format!("{}-gone", blob));
    for (token, attached) in [(&other, &file), (&token, &missing)] {
        let response = post_from(
            &app,
            &widget_url(&app, &channel, "messages"),
            SITE,
            Some(token),
            &json!({"client_id": "c-5001-steal", "text": "mine", "attachments": [attached]}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.json::<Value>().await.unwrap()["field"],
            "attachments"
        );
    }

    // A channel that takes no files says so.
    let plain = chat_channel(&app).await;
    let token = session(&app, &plain, &json!({})).await["chat_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = upload(&app, &plain, &token, "a.txt", "text/plain", b"x").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "uploads_off"
    );
    app.stop().await;
}

async fn required_pre_chat_fields_are_asked_for_before_a_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .store
        .create_channel(
            web_chat::KIND,
            "Shop website",
            json!({"origins": [SITE], "name_field": "required", "email_field": "off"}),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the web chat channel");
    // The widget starts before the form is filled in; a message needs the name.
    let anonymous = session(&app, &channel, &json!({})).await;
    let response = send(
        &app,
        &channel,
        anonymous["chat_token"].as_str().unwrap(),
        "c-6000-nameless",
        "hello",
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["field"], "name");
    let named = session(
        &app,
        &channel,
        &json!({"visitor_token": anonymous["visitor_token"], "name": "Cy Visitor"}),
    )
    .await;
    let response = send(
        &app,
        &channel,
        named["chat_token"].as_str().unwrap(),
        "c-6001-named",
        "hello",
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (conversation, _) = conversation_with(&app, 1).await;
    let summary = app.conversation(&conversation).await;
    assert_eq!(summary["contact_name"], "Cy Visitor", "{summary:#}");
    app.stop().await;
}

async fn the_visitor_sees_an_agent_typing_and_reading(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = chat_channel(&app).await;
    let token = session(&app, &channel, &json!({})).await["chat_token"]
        .as_str()
        .unwrap()
        .to_owned();
    send(&app, &channel, &token, "c-7000-question", "Anyone there?").await;
    let (conversation, _) = conversation_with(&app, 1).await;

    let stream = open_stream(&app, &channel, &token, None).await;
    let reader = tokio::spawn(read_kinds(stream, &["typing", "read"], 2));
    let typing = app
        .api_post(
            &format!("/api/v1/conversations/{conversation}/typing"),
            &json!({}),
        )
        .await;
    assert_eq!(typing.status(), StatusCode::NO_CONTENT);
    // Opening the conversation in the inbox is reading it.
    let browser = inbox_e2e::session::Browser::sign_in(&app, inbox_core::model::Role::Agent).await;
    let (status, _) = browser.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::OK);
    let mut signals = reader.await.unwrap();
    signals.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(signals[0].0, "read");
    assert!(
        signals[0].1.is_empty(),
        "signals carry no id: a resume starts from the entries"
    );
    let read_at =
        chrono::DateTime::parse_from_rfc3339(signals[0].2["at"].as_str().unwrap()).unwrap();
    assert!(read_at.timestamp() >= chrono::Utc::now().timestamp() - 60);
    assert_eq!(signals[1].0, "typing");
    assert_eq!(signals[1].2["agent"], app.admin.name);

    // Another customer's stream hears nothing of it.
    let other = session(&app, &channel, &json!({})).await["chat_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let quiet = open_stream(&app, &channel, &other, None).await;
    let heard = tokio::time::timeout(
        Duration::from_secs(3),
        read_kinds(quiet, &["typing", "read"], 1),
    )
    .await;
    assert!(heard.is_err(), "{heard:?}");
    // A conversation that does not exist.
    let missing = app
        .api_post(
            &format!("/api/v1/conversations/{}/typing", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
