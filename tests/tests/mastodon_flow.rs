//! The Mastodon channel end to end against the stand-in instance (`inbox_e2e::mastodon`, its
//! entities shaped as Mastodon's API docs give them): a public mention and direct messages in
//! (a thread per public root, one direct thread per account), replies out with the visibility of
//! the status they answer, the customer's `@acct` first and our message id as the
//! `Idempotency-Key`; media and content warnings; an edit and a deletion over the streaming API;
//! 120 notifications across `Link` pages; polling when the instance has no stream; rate limits
//! (429 waited out); a revoked token making the channel unhealthy with that reason; a reply over
//! the instance's character limit failing before anything is posted.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use inbox_connectors::mastodon;
use inbox_e2e::mastodon::{MastodonServer, Media};
use inbox_e2e::{Backend, TestApp, both_backends, json_of, str_of, wait_for, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    mentions_and_direct_messages_in_and_replies_out,
    media_content_warnings_edits_and_deletions,
    many_notifications_across_pages,
    polling_when_the_instance_has_no_stream,
    rate_limits_a_revoked_token_and_too_long_replies,
    the_cli_adds_a_mastodon_channel,
    a_bad_notification_is_kept_and_the_rest_goes_on,
);

const WAIT: Duration = Duration::from_secs(30);

/// A Mastodon channel on the stand-in, its token in a file.
async fn mastodon_channel(
    app: &TestApp,
    server: &MastodonServer,
) -> (tempfile::TempDir, inbox_core::model::Channel) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", server.token)).unwrap();
    let channel = app
        .store
        .add_channel(inbox_core::store::NewChannel {
            kind: mastodon::KIND,
            name: "Mastodon".into(),
            config: json!({
                "instance_url": server.url,
                "token_file": token_file,
                "poll_interval_secs": 5,
            }),
            secret: "unused".into(),
            rules: mastodon::RULES,
        })
        .await
        .unwrap();
    (dir, channel)
}

/// The conversation whose subject starts with `subject`, once it holds `messages` messages.
async fn thread(app: &TestApp, subject: &str, messages: usize) -> (String, Vec<Value>) {
    wait_for(
        WAIT,
        &format!("a thread {subject:?} of {messages}"),
        async || {
            let conversation = app.conversations().await.into_iter().find(|c| {
                c["subject"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(subject))
            })?;
            let id = str_of(&conversation, "id").to_owned();
            let history = app.messages(&id).await;
            (history.len() >= messages).then_some((id, history))
        },
    )
    .await
}

async fn mentions_and_direct_messages_in_and_replies_out(backend: Backend) {
    let server = MastodonServer::start().await;
    let app = TestApp::spawn(backend).await;
    let (_token, channel) = mastodon_channel(&app, &server).await;
    let ada = server.remote_customer("ada", "elsewhere.example", "Ada Lovelace");

    // The connection test: the token's account and the instance's limit.
    let report = json_of(
        app.api_post(&format!("/api/v1/channels/{}/test", channel.id), &json!({}))
            .await,
        StatusCode::OK,
        "test",
    )
    .await;
    assert_eq!(report["checks"][0]["ok"], true, "{report:#}");
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("@acme@"),
        "{report:#}"
    );

    let public = server.mention(&ada, "Is the shop open on Sunday?", "public", None);
    let dm = server.mention(&ada, "My order #42 is late", "direct", None);
    let dm2 = server.mention(&ada, "It was due Friday", "direct", None);

    let (public_thread, history) = thread(&app, "Public mention", 1).await;
    assert_eq!(
        history[0]["text"], "Is the shop open on Sunday?",
        "{history:#?}"
    );
    assert_eq!(history[0]["external_id"], public.as_str());
    let (dm_thread, history) = thread(&app, "Direct messages", 2).await;
    assert_ne!(
        public_thread, dm_thread,
        "a public mention is not the private thread"
    );
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["My order #42 is late", "It was due Friday"]);
    let conversation = app.conversation(&dm_thread).await;
    assert_eq!(
        conversation["contact_handle"], "@ada@elsewhere.example",
        "{conversation:#}"
    );
    assert!(
        conversation.to_string().contains("Ada Lovelace"),
        "{conversation:#}"
    );

    // The reply to the direct messages is direct, answers the last one, names Ada first and
    // carries our message id as its Idempotency-Key.
    let reply = app.agent_writes(&dm_thread, "It ships today.", false).await;
    let sent = app
        .wait_for_delivery(&dm_thread, str_of(&reply, "id"), "sent")
        .await;
    let posted = server.posted();
    assert_eq!(posted.len(), 1, "{posted:#?}");
    assert_eq!(posted[0].visibility, "direct");
    assert_eq!(posted[0].in_reply_to_id.as_deref(), Some(dm2.as_str()));
    assert_eq!(posted[0].status, "@ada@elsewhere.example It ships today.");
    assert_eq!(
        posted[0].idempotency_key.as_deref(),
        Some(str_of(&reply, "id"))
    );
    assert_eq!(sent["external_id"], posted[0].id.as_str());
    assert_ne!(dm, dm2);

    // The public mention's reply is public.
    let reply = app
        .agent_writes(&public_thread, "Yes, 10 to 4.", false)
        .await;
    app.wait_for_delivery(&public_thread, str_of(&reply, "id"), "sent")
        .await;
    let posted = server.posted();
    assert_eq!(posted[1].visibility, "public");
    assert_eq!(posted[1].in_reply_to_id.as_deref(), Some(public.as_str()));

    // Ada answers our direct reply: the same thread, by the reply reference.
    server.mention(&ada, "Great, thanks!", "direct", Some(&posted[0].id));
    let (again, history) = thread(&app, "Direct messages", 4).await;
    assert_eq!(again, dm_thread);
    let thanks = history
        .iter()
        .find(|m| m["text"] == "Great, thanks!")
        .unwrap();
    assert_eq!(thanks["thread_reason"], "reply_reference", "{thanks:#}");
    assert_eq!(app.conversations().await.len(), 2);

    // A second public root is a thread of its own.
    server.mention(&ada, "Also: do you ship to Norway?", "unlisted", None);
    thread(&app, "Unlisted mention", 1).await;
    assert_eq!(app.conversations().await.len(), 3);
    app.stop().await;
}

async fn media_content_warnings_edits_and_deletions(backend: Backend) {
    let server = MastodonServer::start().await;
    let app = TestApp::spawn(backend).await;
    let _token = mastodon_channel(&app, &server).await;
    let bob = server.customer("bob", "Bob");
    wait_until(WAIT, "the stream open", async || server.streams() > 0).await;

    let photo = Media {
        kind: "image",
        file_name: "parcel.jpg".into(),
        bytes: b"a crushed parcel".to_vec(),
        description: Some("the parcel".into()),
    };
    let status = server.mention_with(
        &bob,
        "It arrived broken <sad>",
        "direct",
        None,
        "damaged goods",
        vec![photo],
    );
    let (conversation, history) = thread(&app, "Direct messages", 1).await;
    let message = &history[0];
    assert_eq!(
        message["text"], "CW: damaged goods\n\nIt arrived broken <sad>",
        "{message:#}"
    );
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["content_type"], "image/jpeg", "{message:#}");
    let download = app
        .api_get(&format!(
            "/api/v1/attachments/{}",
            str_of(attachment, "blob")
        ))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.bytes().await.unwrap().as_ref(),
        b"a crushed parcel"
    );

    // An edit over the stream updates the message; the earlier text is kept.
    server.edit(&status, "It arrived broken, see photo");
    let edited = wait_for(WAIT, "the edit stored", async || {
        let history = app.messages(&conversation).await;
        let m = history.into_iter().next()?;
        m["text"].as_str()?.contains("see photo").then_some(m)
    })
    .await;
    assert!(!edited["edited_at"].is_null(), "{edited:#}");
    assert!(
        edited.to_string().contains("It arrived broken <sad>"),
        "earlier version kept: {edited:#}"
    );

    // A deletion marks it deleted; what it said stays in its earlier versions.
    server.delete(&status);
    let deleted = wait_for(WAIT, "the deletion stored", async || {
        let history = app.messages(&conversation).await;
        let m = history.into_iter().next()?;
        (m["text"] == mastodon::parse::DELETED_TEXT).then_some(m)
    })
    .await;
    assert!(deleted.to_string().contains("see photo"), "{deleted:#}");
    assert_eq!(app.messages(&conversation).await.len(), 1);

    // A reply with a picture: uploaded through /api/v2/media first, then posted with it (as a
    // new direct status: the one it would answer was deleted).
    let upload = app
        .client
        .post(app.url("/api/v1/attachments"))
        .bearer_auth(&app.token)
        .header("content-type", "image/png")
        .query(&[("filename", "label.png")])
        .body(b"\x89PNG return label".to_vec())
        .send()
        .await
        .unwrap();
    let reference = json_of(upload, StatusCode::CREATED, "upload").await;
    let reply = json_of(
        app.api_post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &json!({"text": "Here is the return label.", "attachments": [reference]}),
        )
        .await,
        StatusCode::CREATED,
        "reply with a picture",
    )
    .await;
    app.wait_for_delivery(&conversation, str_of(&reply, "id"), "sent")
        .await;
    let uploads = server.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!(uploads[0].file_name, "label.png");
    assert_eq!(uploads[0].bytes, b"\x89PNG return label");
    let posted = server.posted();
    assert_eq!(posted[0].media_ids, [uploads[0].id.clone()]);
    assert_eq!(posted[0].visibility, "direct");
    assert_eq!(posted[0].status, "@bob Here is the return label.");
    assert_eq!(posted[0].in_reply_to_id, None);
    app.stop().await;
}

async fn many_notifications_across_pages(backend: Backend) {
    let server = MastodonServer::start().await;
    let customers: Vec<_> = (0..4)
        .map(|n| server.customer(&format!("c{n}"), &format!("Customer {n}")))
        .collect();
    // 120 waiting before the channel exists: the first read takes them all, three pages of 40.
    for n in 0..120 {
        server.mention(&customers[n % 4], &format!("message {n}"), "direct", None);
    }
    let app = TestApp::spawn(backend).await;
    let (_token, channel) = mastodon_channel(&app, &server).await;
    wait_until(WAIT, "120 messages stored", async || {
        app.message_total().await >= 120
    })
    .await;
    assert!(server.requests("/api/v1/notifications") >= 3, "paginated");
    // Each customer's direct thread in the order written.
    let conversations = app.conversations().await;
    assert_eq!(conversations.len(), 4, "one direct thread per account");
    for conversation in &conversations {
        let texts: Vec<u32> = app
            .messages(str_of(conversation, "id"))
            .await
            .iter()
            .map(|m| {
                m["text"].as_str().unwrap()["message ".len()..]
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(texts.len(), 30);
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
    }
    let cursor = app
        .store
        .cursor(channel.id, mastodon::source::CURSOR)
        .await
        .unwrap();
    assert!(cursor.is_some_and(|c| !c.is_empty()));
    // Nothing taken twice on later polls.
    server.mention(&customers[0], "one more", "direct", None);
    wait_until(WAIT, "121 messages", async || {
        app.message_total().await >= 121
    })
    .await;
    assert_eq!(app.message_total().await, 121);
    app.stop().await;
}

async fn polling_when_the_instance_has_no_stream(backend: Backend) {
    let server = MastodonServer::start().await;
    server.set_streaming(false);
    let app = TestApp::spawn(backend).await;
    let _token = mastodon_channel(&app, &server).await;
    let cy = server.customer("cy", "Cy");
    wait_until(WAIT, "a first poll", async || {
        server.requests("/api/v1/notifications") > 0
    })
    .await;
    server.mention(&cy, "Anyone there?", "direct", None);
    let (_, history) = thread(&app, "Direct messages", 1).await;
    assert_eq!(history[0]["text"], "Anyone there?");
    assert_eq!(server.streams(), 0);
    app.stop().await;
}

async fn rate_limits_a_revoked_token_and_too_long_replies(backend: Backend) {
    let server = MastodonServer::start().await;
    let app = TestApp::spawn(backend).await;
    let (_token, channel) = mastodon_channel(&app, &server).await;
    let dee = server.customer("dee", "Dee");
    server.mention(&dee, "Hello", "direct", None);
    let (conversation, _) = thread(&app, "Direct messages", 1).await;

    // Rate limited for two seconds: the reply waits and is posted once.
    server.rate_limit(3, 2);
    let reply = app.agent_writes(&conversation, "Hi Dee", false).await;
    app.wait_for_delivery(&conversation, str_of(&reply, "id"), "sent")
        .await;
    assert_eq!(server.posted().len(), 1);

    // Too long for the instance: failed, saying so, and nothing posted.
    server.set_max_characters(40);
    let long = "This reply is far longer than the forty characters allowed.";
    let reply = app.agent_writes(&conversation, long, false).await;
    let failed = app
        .wait_for_delivery(&conversation, str_of(&reply, "id"), "failed")
        .await;
    assert!(failed.to_string().contains("shorten it"), "{failed:#}");
    assert_eq!(server.posted().len(), 1, "nothing posted");

    // The token is revoked: replies fail with that reason, the channel shows it.
    server.revoke_token();
    let reply = app.agent_writes(&conversation, "Still there?", false).await;
    let failed = app
        .wait_for_delivery(&conversation, str_of(&reply, "id"), "failed")
        .await;
    assert!(
        failed.to_string().contains("access token was refused"),
        "{failed:#}"
    );
    let health = wait_for(WAIT, "the channel failing", async || {
        let health = app
            .get_json(&format!("/api/v1/channels/{}/health", channel.id))
            .await;
        (health["status"] == "failing").then_some(health)
    })
    .await;
    assert!(
        health["last_error"]
            .as_str()
            .unwrap()
            .contains("access token was refused"),
        "{health:#}"
    );
    app.stop().await;
}

async fn the_cli_adds_a_mastodon_channel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stopped = app.stop().await;
    let out = stopped.cli(&[
        "channel",
        "add",
        "mastodon",
        "--name",
        "Acme on Mastodon",
        "--instance-url",
        "https://social.example",
        "--token-env",
        "ACME_MASTODON_TOKEN",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let bad = stopped.cli(&[
        "channel",
        "add",
        "mastodon",
        "--name",
        "Bad",
        "--instance-url",
        "social.example",
        "--token-env",
        "T",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("instance_url"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let app = stopped.start().await;
    let channel = app.get_json(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(channel["kind"], "mastodon");
    assert_eq!(channel["config"]["instance_url"], "https://social.example");
    assert_eq!(channel["config"]["token_env"], "ACME_MASTODON_TOKEN");
    app.stop().await;
}

async fn a_bad_notification_is_kept_and_the_rest_goes_on(backend: Backend) {
    let server = MastodonServer::start().await;
    let app = TestApp::spawn(backend).await;
    let (_token, channel) = mastodon_channel(&app, &server).await;
    let eve = server.customer("eve", "Eve");
    wait_until(WAIT, "the stream open", async || server.streams() > 0).await;

    // A mention without its status, then a good one.
    let bad = server.notify("mention", &eve, None);
    server.mention(&eve, "Hello after the bad one", "direct", None);
    let (_, history) = thread(&app, "Direct messages", 1).await;
    assert_eq!(history[0]["text"], "Hello after the bad one");
    let dead = app.dead_letters_once_any().await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0].error.contains("without its status"),
        "the reason: {}",
        dead[0].error
    );
    assert!(
        dead[0].payload.contains(&bad),
        "the raw notification kept: {}",
        dead[0].payload
    );
    // The cursor moved past both: nothing is read again.
    let cursor = app
        .store
        .cursor(channel.id, mastodon::source::CURSOR)
        .await
        .unwrap()
        .unwrap();
    assert!(
        cursor.len() >= bad.len() && cursor.as_str() > bad.as_str(),
        "{cursor} past {bad}"
    );
    assert_eq!(app.message_total().await, 1);
    app.stop().await;
}
