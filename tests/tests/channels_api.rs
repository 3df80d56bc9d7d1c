//! The channels API and dead-letter replay end to end, over HTTP, on both backends: an admin
//! creates, pauses, resumes, edits, tests, deletes and restores a channel; a paused channel's intake
//! refuses retryably and stores nothing, the retried message is stored once on resume; agents get
//! 403; the signing secret is shown once and never again. A dead letter that a later fix makes
//! storable is stored once on replay; one that still fails keeps one row with the new error.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use axum::http::StatusCode;
use inbox_core::envelope::{ChannelKind, InboundEvent, InboundMessage};
use inbox_core::ids::ChannelId;
use inbox_core::ingest::{InboundRecord, IngestSettings, ingest};
use inbox_core::model::Role;
use inbox_e2e::{Backend, TestApp, both_backends, json_of, str_of, webhook_message};
use serde_json::{Value, json};

both_backends!(
    channel_lifecycle_over_the_api,
    agents_may_not_manage_channels,
    bad_configs_name_the_field,
    replay_stores_a_fixed_dead_letter_once,
);

/// Creates a webhook channel through the API: its id and its secret (shown this once).
async fn create_webhook(app: &TestApp, name: &str) -> (String, String) {
    let created = json_of(
        app.api_post(
            "/api/v1/channels",
            &json!({"kind": "webhook", "name": name, "config": {}}),
        )
        .await,
        StatusCode::CREATED,
        "POST /api/v1/channels",
    )
    .await;
    let id = str_of(&created, "id").to_owned();
    let secret = str_of(&created, "secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["state"], "active");
    assert_eq!(created["intake_path"], format!("/hooks/{id}"));
    (id, secret)
}

/// Waits until the intake answers `expected` to a signed empty body, which stores nothing: 400
/// when live with this secret, 401 with another, 503 paused, 410 deleted. The intake reads
/// channels through a cache of a couple of seconds, so a change reaches it within that.
async fn intake_answers(app: &TestApp, channel_id: ChannelId, secret: &str, expected: StatusCode) {
    let signature = inbox_connectors::webhook::sign(secret, b"{}");
    inbox_e2e::wait_until(
        inbox_e2e::WAIT,
        &format!("the intake answers {expected}"),
        async || {
            app.post_webhook_raw(&channel_id.to_string(), Some(&signature), "{}")
                .await
                .status()
                == expected
        },
    )
    .await;
}

async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
}

async fn channel_lifecycle_over_the_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, secret) = create_webhook(&app, "Shop").await;
    let channel_id: ChannelId = id.parse().unwrap();

    // The secret is write-only: not in the channel, not in the list.
    let shown = json_of(
        app.api_get(&format!("/api/v1/channels/{id}")).await,
        StatusCode::OK,
        "GET channel",
    )
    .await;
    let listed = json_of(
        app.api_get("/api/v1/channels").await,
        StatusCode::OK,
        "GET channels",
    )
    .await;
    for body in [&shown, &listed] {
        assert!(
            !body.to_string().contains(&secret),
            "the secret leaked: {body}"
        );
    }
    assert_eq!(listed["channels"].as_array().unwrap().len(), 1);
    assert_eq!(shown["rules"]["identity"], "channel");

    // Live: the intake takes a signed message.
    let first = webhook_message("m-1", "u-1", "hello");
    assert_eq!(
        app.post_webhook(channel_id, &secret, &first).await.status(),
        StatusCode::ACCEPTED
    );
    inbox_e2e::wait_until(inbox_e2e::WAIT, "the first message stored", async || {
        app.message_total().await == 1
    })
    .await;

    // Paused: the intake refuses with a retryable status and stores nothing.
    let paused = json_of(
        app.api_patch(
            &format!("/api/v1/channels/{id}"),
            &json!({"enabled": false}),
        )
        .await,
        StatusCode::OK,
        "pause",
    )
    .await;
    assert_eq!(paused["state"], "paused");
    intake_answers(&app, channel_id, &secret, StatusCode::SERVICE_UNAVAILABLE).await;
    let second = webhook_message("m-2", "u-1", "are you there?");
    let refused = app.post_webhook(channel_id, &secret, &second).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().get("retry-after").is_some());
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"], "channel_paused");
    assert_eq!(app.message_total().await, 1, "nothing stored while paused");

    // Resumed: the sender's retry is stored, once, however often it retries.
    let resumed = json_of(
        app.api_patch(&format!("/api/v1/channels/{id}"), &json!({"enabled": true}))
            .await,
        StatusCode::OK,
        "resume",
    )
    .await;
    assert_eq!(resumed["state"], "active");
    intake_answers(&app, channel_id, &secret, StatusCode::BAD_REQUEST).await;
    for _ in 0..2 {
        assert_eq!(
            app.post_webhook(channel_id, &secret, &second)
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    inbox_e2e::wait_until(inbox_e2e::WAIT, "both messages stored", async || {
        app.message_total().await == 2
    })
    .await;
    assert_eq!(app.message_total().await, 2);

    // Edited: rename, new config, new secret (the old one stops working).
    let edited = json_of(
        app.api_patch(
            &format!("/api/v1/channels/{id}"),
            &json!({"name": "Shop chat", "config": {"outbound_url": "https://shop.example/replies"}, "secret": "whsec_rotated_by_the_operator"}),
        )
        .await,
        StatusCode::OK,
        "edit",
    )
    .await;
    assert_eq!(edited["name"], "Shop chat");
    assert_eq!(
        edited["config"]["outbound_url"],
        "https://shop.example/replies"
    );
    assert!(!edited.to_string().contains("rotated"), "{edited}");
    intake_answers(
        &app,
        channel_id,
        "whsec_rotated_by_the_operator",
        StatusCode::BAD_REQUEST,
    )
    .await;
    let third = webhook_message("m-3", "u-1", "new secret");
    assert_eq!(
        app.post_webhook(channel_id, &secret, &third).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post_webhook(channel_id, "whsec_rotated_by_the_operator", &third)
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    // The connection test and the health say what they found.
    let report = json_of(
        app.api_post(&format!("/api/v1/channels/{id}/test"), &json!({}))
            .await,
        StatusCode::OK,
        "test",
    )
    .await;
    assert_eq!(report["checks"][0]["name"], "intake");
    assert_eq!(report["checks"][0]["ok"], true);
    let health = json_of(
        app.api_get(&format!("/api/v1/channels/{id}/health")).await,
        StatusCode::OK,
        "health",
    )
    .await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["dead_letters"], 0);

    // Deleted: the intake answers 410, the history stays readable, the list hides it.
    assert_eq!(
        delete(&app, &format!("/api/v1/channels/{id}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    intake_answers(
        &app,
        channel_id,
        "whsec_rotated_by_the_operator",
        StatusCode::GONE,
    )
    .await;
    let gone = webhook_message("m-4", "u-1", "after delete");
    assert_eq!(
        app.post_webhook(channel_id, "whsec_rotated_by_the_operator", &gone)
            .await
            .status(),
        StatusCode::GONE
    );
    let conversation = app.only_conversation().await;
    assert_eq!(
        app.messages(str_of(&conversation, "id")).await.len(),
        3,
        "history kept"
    );
    let listed = json_of(
        app.api_get("/api/v1/channels").await,
        StatusCode::OK,
        "list",
    )
    .await;
    assert!(listed["channels"].as_array().unwrap().is_empty());
    let with_deleted = json_of(
        app.api_get("/api/v1/channels?deleted=true").await,
        StatusCode::OK,
        "list all",
    )
    .await;
    assert_eq!(with_deleted["channels"][0]["state"], "deleted");

    // Restored: the same channel takes messages again.
    let restored = json_of(
        app.api_patch(
            &format!("/api/v1/channels/{id}"),
            &json!({"deleted": false}),
        )
        .await,
        StatusCode::OK,
        "restore",
    )
    .await;
    assert_eq!(restored["state"], "active");
    intake_answers(
        &app,
        channel_id,
        "whsec_rotated_by_the_operator",
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        app.post_webhook(channel_id, "whsec_rotated_by_the_operator", &gone)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

async fn agents_may_not_manage_channels(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, _) = create_webhook(&app, "Shop").await;
    let (_, token) = app
        .create_agent("agent@example.com", "Agent", Role::Agent)
        .await;
    let as_agent = |method: reqwest::Method, path: String| {
        app.client
            .request(method, app.url(&path))
            .bearer_auth(&token)
            .json(&json!({"enabled": false}))
            .send()
    };
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/channel-kinds".to_owned()),
        (reqwest::Method::GET, "/api/v1/channels".to_owned()),
        (reqwest::Method::POST, "/api/v1/channels".to_owned()),
        (reqwest::Method::GET, format!("/api/v1/channels/{id}")),
        (reqwest::Method::PATCH, format!("/api/v1/channels/{id}")),
        (reqwest::Method::DELETE, format!("/api/v1/channels/{id}")),
        (reqwest::Method::POST, format!("/api/v1/channels/{id}/test")),
        (
            reqwest::Method::GET,
            format!("/api/v1/channels/{id}/health"),
        ),
        (reqwest::Method::GET, "/api/v1/dead-letters".to_owned()),
    ] {
        let response = as_agent(method.clone(), path.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Nothing changed.
    let shown = json_of(
        app.api_get(&format!("/api/v1/channels/{id}")).await,
        StatusCode::OK,
        "GET",
    )
    .await;
    assert_eq!(shown["state"], "active");
}

async fn bad_configs_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (json!({"kind": "fax", "name": "x", "config": {}}), "kind"),
        (
            json!({"kind": "webhook", "name": " ", "config": {}}),
            "name",
        ),
        (
            json!({"kind": "webhook", "name": "x", "config": {"outbound_url": "ftp://x"}}),
            "config.outbound_url",
        ),
        (
            json!({"kind": "webhook", "name": "x", "config": {"colour": 1}}),
            "config.colour",
        ),
        (
            json!({"kind": "email", "name": "x", "config": {"address": "support@shop.test", "imap_host": "imap", "imap_port": 993, "smtp_host": "smtp", "smtp_port": 0, "password_env": "P"}}),
            "config.smtp_port",
        ),
        (
            json!({"kind": "email", "name": "x", "config": {"address": "support@shop.test", "imap_host": "imap", "imap_port": 993, "smtp_host": "smtp", "smtp_port": 25, "password": "hunter2"}}),
            "config.password",
        ),
    ];
    for (body, field) in cases {
        let refused = json_of(
            app.api_post("/api/v1/channels", &body).await,
            StatusCode::BAD_REQUEST,
            "bad config",
        )
        .await;
        assert_eq!(refused["field"], field, "{body}: {refused}");
    }
    let listed = json_of(
        app.api_get("/api/v1/channels").await,
        StatusCode::OK,
        "list",
    )
    .await;
    assert!(
        listed["channels"].as_array().unwrap().is_empty(),
        "nothing created"
    );
    // The kinds of the build, with their fields, drive forms.
    let kinds = json_of(
        app.api_get("/api/v1/channel-kinds").await,
        StatusCode::OK,
        "kinds",
    )
    .await;
    let names: Vec<&str> = kinds
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["webhook", "email", "telegram", "web_chat", "mastodon"]
    );
}

fn message_for(channel_id: ChannelId, external_id: &str) -> InboundMessage {
    InboundMessage::text(
        channel_id,
        ChannelKind::WEBHOOK,
        external_id,
        "u-9",
        "sent while the channel was deleted",
    )
}

async fn replay_stores_a_fixed_dead_letter_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, _) = create_webhook(&app, "Shop").await;
    let channel_id: ChannelId = id.parse().unwrap();
    assert_eq!(
        delete(&app, &format!("/api/v1/channels/{id}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    // A message already on the bus when the channel was deleted: dead-lettered by the funnel.
    let record = InboundRecord::Event(InboundEvent::Message(message_for(channel_id, "late-1")));
    ingest(&app.store, &[record], &IngestSettings::default())
        .await
        .unwrap();
    let listed = json_of(
        app.api_get(&format!("/api/v1/dead-letters?channel={id}"))
            .await,
        StatusCode::OK,
        "dead letters",
    )
    .await;
    let letters = listed["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{listed}");
    let letter = str_of(&letters[0], "id").to_owned();
    assert!(str_of(&letters[0], "error").contains("deleted"));
    let filtered = json_of(
        app.api_get("/api/v1/dead-letters?error=no+such+text").await,
        StatusCode::OK,
        "filter",
    )
    .await;
    assert!(filtered["dead_letters"].as_array().unwrap().is_empty());
    let health = json_of(
        app.api_get(&format!("/api/v1/channels/{id}/health")).await,
        StatusCode::OK,
        "health",
    )
    .await;
    assert_eq!(health["dead_letters"], 1);

    // Still failing: the error is updated on the same row, nothing is stored.
    let again = json_of(
        app.api_post(&format!("/api/v1/dead-letters/{letter}/replay"), &json!({}))
            .await,
        StatusCode::OK,
        "replay",
    )
    .await;
    assert_eq!(again["outcome"], "failed", "{again}");
    let listed = json_of(
        app.api_get("/api/v1/dead-letters?all=true").await,
        StatusCode::OK,
        "dead letters",
    )
    .await;
    assert_eq!(
        listed["dead_letters"].as_array().unwrap().len(),
        1,
        "one row, however often replayed"
    );
    assert_eq!(listed["dead_letters"][0]["replays"], 1);
    assert_eq!(app.message_total().await, 0);

    // Fixed (the channel restored): stored once, the dead letter settled with its message.
    app.api_patch(
        &format!("/api/v1/channels/{id}"),
        &json!({"deleted": false}),
    )
    .await;
    let stored = json_of(
        app.api_post(&format!("/api/v1/dead-letters/{letter}/replay"), &json!({}))
            .await,
        StatusCode::OK,
        "replay",
    )
    .await;
    assert_eq!(stored["outcome"], "stored", "{stored}");
    assert_eq!(app.message_total().await, 1);
    let settled = json_of(
        app.api_post(&format!("/api/v1/dead-letters/{letter}/replay"), &json!({}))
            .await,
        StatusCode::CONFLICT,
        "replay twice",
    )
    .await;
    assert_eq!(settled["error"], "conflict");
    assert_eq!(app.message_total().await, 1, "never a duplicate");
    let listed = json_of(
        app.api_get("/api/v1/dead-letters?all=true").await,
        StatusCode::OK,
        "dead letters",
    )
    .await;
    assert_eq!(listed["dead_letters"][0]["resolution"], "stored");
    assert_eq!(
        listed["dead_letters"][0]["message_id"],
        stored["message_id"]
    );
    let waiting = json_of(
        app.api_get("/api/v1/dead-letters").await,
        StatusCode::OK,
        "waiting",
    )
    .await;
    assert!(waiting["dead_letters"].as_array().unwrap().is_empty());

    // A second copy that came in another way is settled as a duplicate, not stored again.
    assert_eq!(
        delete(&app, &format!("/api/v1/channels/{id}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let record = InboundRecord::Event(InboundEvent::Message(message_for(channel_id, "late-1")));
    ingest(&app.store, &[record], &IngestSettings::default())
        .await
        .unwrap();
    app.api_patch(
        &format!("/api/v1/channels/{id}"),
        &json!({"deleted": false}),
    )
    .await;
    let waiting = json_of(
        app.api_get("/api/v1/dead-letters").await,
        StatusCode::OK,
        "waiting",
    )
    .await;
    let copy = str_of(&waiting["dead_letters"][0], "id").to_owned();
    let duplicate = json_of(
        app.api_post(&format!("/api/v1/dead-letters/{copy}/replay"), &json!({}))
            .await,
        StatusCode::OK,
        "replay copy",
    )
    .await;
    assert_eq!(duplicate["outcome"], "duplicate", "{duplicate}");
    assert_eq!(app.message_total().await, 1);

    // Discard: gone from the waiting list, kept as discarded.
    ingest(
        &app.store,
        &[InboundRecord::Undecodable {
            payload: "{not json".into(),
            error: "not an envelope".into(),
        }],
        &IngestSettings::default(),
    )
    .await
    .unwrap();
    let waiting = json_of(
        app.api_get("/api/v1/dead-letters").await,
        StatusCode::OK,
        "waiting",
    )
    .await;
    let junk = str_of(&waiting["dead_letters"][0], "id").to_owned();
    let discarded = json_of(
        app.api_post(&format!("/api/v1/dead-letters/{junk}/discard"), &json!({}))
            .await,
        StatusCode::OK,
        "discard",
    )
    .await;
    assert_eq!(discarded["resolution"], "discarded");
    let waiting = json_of(
        app.api_get("/api/v1/dead-letters").await,
        StatusCode::OK,
        "waiting",
    )
    .await;
    assert!(waiting["dead_letters"].as_array().unwrap().is_empty());
}
