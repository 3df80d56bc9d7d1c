//! The webhook channel end to end, over HTTP, on both backends: a customer writes through the
//! signed inbound webhook, agents read and answer through the JSON API, replies are delivered,
//! signed, to the operator's receiver, and everything survives a restart.

// clippy.toml allows these in tests, but clippy only counts `#[test]` functions as tests, not the
// scenario functions they call.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use axum::http::StatusCode;
use inbox_connectors::webhook::{MAX_BODY_BYTES, sign, verify};
use inbox_core::actions;
use inbox_e2e::{
    Backend, Behaviour, MAX_ATTEMPTS, TestApp, WAIT, both_backends, json_of, str_of, wait_until,
    webhook_message,
};
use serde_json::{Value, json};

both_backends!(
    signed_post_opens_a_conversation,
    same_external_id_twice_stores_one_message,
    bad_signatures_are_refused,
    malformed_bodies_name_the_field,
    reply_is_delivered_signed_to_the_receiver,
    failing_receiver_marks_the_reply_failed,
    private_note_is_never_sent,
    restart_keeps_everything,
    undelivered_reply_is_delivered_after_restart,
    receiver_reusing_an_external_id_still_marks_replies_sent,
);

// 1
async fn signed_post_opens_a_conversation(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let payload = json!({
        "external_id": "m-1",
        "from": { "handle": "u-ada", "name": "Ada Lovelace" },
        "text": "My order #1042 has not arrived.",
    });

    let response = app
        .post_webhook(channel.id, &channel.secret, &payload)
        .await;
    let body = json_of(response, StatusCode::ACCEPTED, "signed webhook").await;
    assert_eq!(body["external_id"], "m-1");

    // 202 means stored: no waiting needed.
    let conversation = app.only_conversation().await;
    assert_eq!(conversation["contact_name"], "Ada Lovelace");
    assert_eq!(conversation["contact_handle"], "u-ada");
    assert_eq!(conversation["status"], "open");
    assert_eq!(conversation["channel_id"], channel.id.to_string());
    assert_eq!(conversation["message_count"], 1);
    let id = str_of(&conversation, "id");
    assert_eq!(app.conversation(id).await["id"], id);

    let messages = app.messages(id).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message["text"], "My order #1042 has not arrived.");
    assert_eq!(message["direction"], "inbound");
    assert_eq!(message["external_id"], "m-1");
    assert_eq!(message["sender_handle"], "u-ada");
    assert_eq!(message["thread_reason"], "new_conversation");
}

// 2
async fn same_external_id_twice_stores_one_message(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let payload = webhook_message("m-dup", "u-1", "Hello once");

    for attempt in 1..=2 {
        let response = app
            .post_webhook(channel.id, &channel.secret, &payload)
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "post #{attempt}");
    }
    // A retry with a changed body but the same id is the same message too.
    let changed = webhook_message("m-dup", "u-1", "Hello twice?");
    let response = app
        .post_webhook(channel.id, &channel.secret, &changed)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "post #3");

    let conversation = app.only_conversation().await;
    assert_eq!(conversation["message_count"], 1);
    let messages = app.messages(str_of(&conversation, "id")).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["text"], "Hello once");
    assert_eq!(app.message_total().await, 1);

    // The same new message retried concurrently (a sender's timeout and retry) is stored once too.
    let payload = webhook_message("m-race", "u-2", "Racing");
    let posts = (0..8).map(|_| app.post_webhook(channel.id, &channel.secret, &payload));
    for response in futures::future::join_all(posts).await {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::ACCEPTED, "concurrent duplicate: {body}");
    }
    assert_eq!(app.message_total().await, 2);
    let conversations = app.conversations().await;
    assert_eq!(conversations.len(), 2, "{conversations:#?}");
    let racing = conversations
        .iter()
        .find(|c| c["contact_handle"] == "u-2")
        .expect("u-2's conversation");
    assert_eq!(racing["message_count"], 1);
    assert_eq!(app.messages(str_of(racing, "id")).await.len(), 1);
}

// 3
async fn bad_signatures_are_refused(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let body = serde_json::to_vec(&webhook_message("m-1", "u-1", "hi")).expect("serialize");
    let channel_id = channel.id.to_string();
    let tampered = serde_json::to_vec(&webhook_message("m-1", "u-1", "hi!")).expect("serialize");
    let good = sign(&channel.secret, &body);
    let cases: Vec<(&str, Option<String>, Vec<u8>)> = vec![
        (
            "wrong secret",
            Some(sign("whsec_wrong", &body)),
            body.clone(),
        ),
        ("missing header", None, body.clone()),
        ("tampered body", Some(good.clone()), tampered),
        ("empty header", Some(String::new()), body.clone()),
        (
            "no sha256= prefix",
            Some(good.trim_start_matches("sha256=").to_owned()),
            body.clone(),
        ),
        ("not hex", Some("sha256=zzzz".to_owned()), body.clone()),
        (
            "truncated digest",
            Some(good[..good.len() - 2].to_owned()),
            body.clone(),
        ),
    ];
    for (case, signature, body) in cases {
        let response = app
            .post_webhook_raw(&channel_id, signature.as_deref(), body)
            .await;
        let refusal = json_of(response, StatusCode::UNAUTHORIZED, case).await;
        assert_eq!(refusal["error"], "invalid_signature", "{case}: {refusal}");
    }
    assert_eq!(app.message_total().await, 0);
    assert!(app.conversations().await.is_empty());
}

// 4
async fn malformed_bodies_name_the_field(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let cases = [
        (
            "missing external_id",
            json!({ "from": { "handle": "u-1" }, "text": "hi" }).to_string(),
            "external_id",
        ),
        (
            "empty from",
            json!({ "external_id": "m-1", "from": {}, "text": "hi" }).to_string(),
            "from.handle",
        ),
        (
            "no text",
            json!({ "external_id": "m-1", "from": { "handle": "u-1" } }).to_string(),
            "text",
        ),
        (
            "sent_at not a time",
            json!({
                "external_id": "m-1", "from": { "handle": "u-1" }, "text": "hi",
                "sent_at": "yesterday",
            })
            .to_string(),
            "sent_at",
        ),
        ("invalid JSON", "{not json".to_owned(), "body"),
    ];
    let channel_id = channel.id.to_string();
    for (case, body, field) in cases {
        let signature = sign(&channel.secret, body.as_bytes());
        let response = app
            .post_webhook_raw(&channel_id, Some(&signature), body)
            .await;
        let refusal = json_of(response, StatusCode::BAD_REQUEST, case).await;
        assert_eq!(refusal["field"], field, "{case}: {refusal}");
    }

    // An unknown channel, a well-formed id or not.
    let body = serde_json::to_vec(&webhook_message("m-1", "u-1", "hi")).expect("serialize");
    let signature = sign(&channel.secret, &body);
    for unknown in [
        inbox_core::ids::ChannelId::new().to_string(),
        "nope".to_owned(),
    ] {
        let response = app
            .post_webhook_raw(&unknown, Some(&signature), body.clone())
            .await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "channel {unknown}"
        );
    }

    // Over 1 MiB, even when validly signed.
    let big = serde_json::to_vec(&webhook_message(
        "m-big",
        "u-1",
        &"x".repeat(MAX_BODY_BYTES),
    ))
    .expect("serialize");
    let signature = sign(&channel.secret, &big);
    let response = app
        .post_webhook_raw(&channel_id, Some(&signature), big)
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Framework refusals speak the same JSON as the API's own errors.
    let refusal: Value = response.json().await.expect("a JSON refusal");
    assert_eq!(refusal["error"], "too_large");
    let response = app
        .client
        .get(format!("{}/no/such/route", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let refusal: Value = response.json().await.expect("a JSON refusal");
    assert_eq!(refusal["error"], "not_found");
    let response = app
        .client
        .get(format!("{}/hooks/{channel_id}", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let refusal: Value = response.json().await.expect("a JSON refusal");
    assert_eq!(refusal["error"], "method_not_allowed");

    assert_eq!(app.message_total().await, 0);
    assert!(app.conversations().await.is_empty());

    // Exactly 1 MiB is still accepted.
    let envelope = serde_json::to_vec(&webhook_message("m-limit", "u-1", "")).expect("serialize");
    let text = "y".repeat(MAX_BODY_BYTES - envelope.len());
    let limit = serde_json::to_vec(&webhook_message("m-limit", "u-1", &text)).expect("serialize");
    assert_eq!(limit.len(), MAX_BODY_BYTES);
    let signature = sign(&channel.secret, &limit);
    let response = app
        .post_webhook_raw(&channel_id, Some(&signature), limit)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.message_total().await, 1);
}

// 5
async fn reply_is_delivered_signed_to_the_receiver(backend: Backend) {
    let (app, receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "u-ada", "Where is my order?")
        .await;
    let conversation = app.only_conversation().await;
    let conversation_id = str_of(&conversation, "id");

    let reply = app
        .agent_writes(conversation_id, "It ships today.", false)
        .await;
    assert_eq!(reply["delivery_status"], "queued");
    assert_eq!(reply["direction"], "outbound");
    assert_eq!(reply["text"], "It ships today.");
    let reply_id = str_of(&reply, "id");

    let sent = app
        .wait_for_delivery(conversation_id, reply_id, "sent")
        .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "one POST: {requests:#?}");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/outbound");
    assert_eq!(request.header("idempotency-key"), Some(reply_id));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let signature = request
        .header("x-inbox-signature")
        .expect("X-Inbox-Signature header");
    assert!(
        verify(&channel.secret, &request.body, signature),
        "the signature verifies with the channel secret over the raw body"
    );
    assert!(!verify("whsec_other", &request.body, signature));

    let body = request.json();
    assert_eq!(body["schema_version"], 1);
    assert_eq!(body["id"], reply_id);
    assert_eq!(body["conversation_id"], conversation_id);
    assert_eq!(body["channel_id"], channel.id.to_string());
    assert_eq!(body["channel_kind"], "webhook");
    assert_eq!(body["to"]["handle"], "u-ada");
    assert_eq!(body["body"]["text"], "It ships today.");
    assert_eq!(body["thread"]["in_reply_to"], "m-1");
    assert_eq!(body["author"], "Ada Admin");

    assert_eq!(sent["external_id"], "rcv-1");
    assert_eq!(sent["delivery_attempts"], 1);
    assert_eq!(sent["delivery_error"], Value::Null);
    assert!(sent["delivered_at"].is_string(), "{sent}");

    // The customer answering that reply (by its receiver id) threads by the reference.
    let mut answer = webhook_message("m-2", "u-ada", "Thanks!");
    answer["in_reply_to"] = json!("rcv-1");
    let response = app.post_webhook(channel.id, &channel.secret, &answer).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let messages = app.messages(conversation_id).await;
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_eq!(messages[2]["external_id"], "m-2");
    assert_eq!(messages[2]["thread_reason"], "reply_reference");
}

// 6
async fn failing_receiver_marks_the_reply_failed(backend: Backend) {
    let (app, receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Fail).await;
    app.customer_says(&channel, "m-1", "u-1", "Hello?").await;
    let conversation = app.only_conversation().await;
    let conversation_id = str_of(&conversation, "id");

    let reply = app.agent_writes(conversation_id, "Hi!", false).await;
    assert_eq!(reply["delivery_status"], "queued");
    let reply_id = str_of(&reply, "id");

    let failed = app
        .wait_for_delivery(conversation_id, reply_id, "failed")
        .await;
    assert_eq!(failed["delivery_attempts"], MAX_ATTEMPTS);
    let error = str_of(&failed, "delivery_error");
    assert!(error.contains("500"), "the error names the status: {error}");
    assert_eq!(failed["delivered_at"], Value::Null);

    let requests = receiver.requests();
    assert_eq!(requests.len(), MAX_ATTEMPTS as usize, "{requests:#?}");
    for request in &requests {
        assert_eq!(request.header("idempotency-key"), Some(reply_id));
        assert_eq!(
            request.body, requests[0].body,
            "every attempt sends the same body"
        );
        let signature = request.header("x-inbox-signature").unwrap_or_default();
        assert!(verify(&channel.secret, &request.body, signature));
    }
}

// 7
async fn private_note_is_never_sent(backend: Backend) {
    let (app, receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "u-1", "Refund please")
        .await;
    let conversation = app.only_conversation().await;
    let conversation_id = str_of(&conversation, "id");

    let note = app
        .agent_writes(conversation_id, "Check the order first.", true)
        .await;
    assert_eq!(note["direction"], "note");
    assert_eq!(note["delivery_status"], Value::Null);
    let note_id = str_of(&note, "id").to_owned();

    // A reply after the note goes out; once it has, the note would have too if it were sent.
    let reply = app.agent_writes(conversation_id, "Refunded.", false).await;
    let reply_id = str_of(&reply, "id");
    app.wait_for_delivery(conversation_id, reply_id, "sent")
        .await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "only the reply: {requests:#?}");
    assert_eq!(requests[0].header("idempotency-key"), Some(reply_id));
    assert!(receiver.requests_for(&note_id).is_empty());
    let body = String::from_utf8_lossy(&requests[0].body).into_owned();
    assert!(!body.contains("Check the order first."), "{body}");

    let stored = app.message(conversation_id, &note_id).await;
    assert_eq!(stored["direction"], "note");
    assert_eq!(stored["delivery_status"], Value::Null);
    assert_eq!(stored["text"], "Check the order first.");
}

// 8
async fn restart_keeps_everything(backend: Backend) {
    let (app, receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "u-ada", "Hello").await;
    let conversation_id = str_of(&app.only_conversation().await, "id").to_owned();
    let reply = app.agent_writes(&conversation_id, "Hi Ada", false).await;
    let reply_id = str_of(&reply, "id").to_owned();
    app.wait_for_delivery(&conversation_id, &reply_id, "sent")
        .await;
    app.agent_writes(&conversation_id, "VIP customer", true)
        .await;
    let path = format!("/api/v1/conversations/{conversation_id}");
    let patch = json!({ "status": "pending", "labels": ["vip"], "assignee": "me" });
    json_of(app.api_patch(&path, &patch).await, StatusCode::OK, "patch").await;

    let conversation_before = app.conversation(&conversation_id).await;
    let messages_before = app.messages(&conversation_id).await;
    let events_before = app.get_json(&format!("{path}/events")).await;
    assert_eq!(messages_before.len(), 3);

    let app = app.restart().await;

    // The same token still works and everything reads the same.
    assert_eq!(app.conversations().await, vec![conversation_before.clone()]);
    assert_eq!(
        app.conversation(&conversation_id).await,
        conversation_before
    );
    assert_eq!(app.messages(&conversation_id).await, messages_before);
    assert_eq!(app.get_json(&format!("{path}/events")).await, events_before);

    // A new customer message threads into the same conversation and reopens it.
    app.customer_says(&channel, "m-2", "u-ada", "Any news?")
        .await;
    let conversations = app.conversations().await;
    assert_eq!(conversations.len(), 1, "{conversations:#?}");
    assert_eq!(conversations[0]["id"], conversation_id.as_str());
    assert_eq!(conversations[0]["status"], "open");
    let messages = app.messages(&conversation_id).await;
    assert_eq!(messages.len(), 4);
    let latest = &messages[3];
    assert_eq!(latest["external_id"], "m-2");
    assert_eq!(latest["thread_reason"], "latest_conversation");

    // Replies still go out, and the one sent before the restart is not sent again.
    let second = app.agent_writes(&conversation_id, "Tomorrow.", false).await;
    let second_id = str_of(&second, "id");
    app.wait_for_delivery(&conversation_id, second_id, "sent")
        .await;
    let keys: Vec<Option<String>> = receiver
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        vec![Some(reply_id.clone()), Some(second_id.to_owned())],
        "each reply delivered once"
    );
}

// 9. A reply whose process stopped before it was delivered is delivered at the next start.
//
// Stopping the app between "201 returned" and "delivered" through HTTP alone is a race (the relay
// is woken at once), so the two crash points are recreated deterministically on the stopped app's
// data with the product's own action (`actions::post_message`, what the API handler calls):
// (a) reply committed, outbox row not yet handed to the bus;
// (b) outbox row handed to the in-memory bus (marked published), process gone before delivery.
async fn undelivered_reply_is_delivered_after_restart(backend: Backend) {
    let (app, receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "u-1", "Hello").await;
    let conversation_id = str_of(&app.only_conversation().await, "id").to_owned();

    let stopped = app.stop().await;
    let store = stopped.open_store().await;
    let conversation = conversation_id.parse().expect("conversation id");
    let unpublished =
        actions::post_message(&store, conversation, &stopped.admin, "(a)", false, &[])
            .await
            .expect("store reply (a)");
    let published = actions::post_message(&store, conversation, &stopped.admin, "(b)", false, &[])
        .await
        .expect("store reply (b)");
    store
        .mark_outbox_published(published.message.id)
        .await
        .expect("mark (b) published");
    store.close().await;
    assert!(receiver.requests().is_empty());

    let app = stopped.start().await;
    for (name, posted) in [("(a)", &unpublished), ("(b)", &published)] {
        let id = posted.message.id.to_string();
        let sent = app.wait_for_delivery(&conversation_id, &id, "sent").await;
        assert_eq!(sent["text"], name);
        let requests = receiver.requests_for(&id);
        assert_eq!(requests.len(), 1, "{name} delivered once: {requests:#?}");
        assert_eq!(requests[0].json()["body"]["text"], name);
    }
    assert_eq!(receiver.requests().len(), 2);
}

// 10. A receiver may answer every reply with the same id (its ticket or thread id, say). The
// replies were delivered: they must show as sent and must not be sent again at the next start.
async fn receiver_reusing_an_external_id_still_marks_replies_sent(backend: Backend) {
    let (app, receiver, channel) =
        TestApp::with_webhook_channel(backend, Behaviour::AcceptAs("ticket-42")).await;
    app.customer_says(&channel, "m-1", "u-1", "Hello").await;
    let conversation_id = str_of(&app.only_conversation().await, "id").to_owned();

    let first = app.agent_writes(&conversation_id, "One", false).await;
    let first_id = str_of(&first, "id").to_owned();
    let sent = app
        .wait_for_delivery(&conversation_id, &first_id, "sent")
        .await;
    assert_eq!(sent["external_id"], "ticket-42");

    let second = app.agent_writes(&conversation_id, "Two", false).await;
    let second_id = str_of(&second, "id").to_owned();
    app.wait_for_delivery(&conversation_id, &second_id, "sent")
        .await;
    assert_eq!(receiver.requests_for(&second_id).len(), 1);

    // After a restart, a third reply goes out and neither earlier one is sent again.
    let app = app.restart().await;
    let third = app.agent_writes(&conversation_id, "Three", false).await;
    let third_id = str_of(&third, "id").to_owned();
    wait_until(WAIT, "the third reply to reach the receiver", async || {
        receiver.requests_for(&third_id).len() == 1
    })
    .await;
    assert_eq!(receiver.requests_for(&first_id).len(), 1);
    assert_eq!(receiver.requests_for(&second_id).len(), 1);
}
