//! The conversations API over HTTP, on both backends: tokens, changing a conversation's status,
//! assignee and labels, and paging the list by cursor. Conversations come in through the signed
//! webhook (`webhook_flow.rs` has that channel's own tests).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::HashSet;

use axum::http::StatusCode;
use inbox_e2e::{
    Backend, Behaviour, TestApp, both_backends, items, json_of, str_of, webhook_message,
};
use serde_json::{Value, json};

both_backends!(
    patch_changes_status_assignee_and_labels,
    api_requires_a_valid_token,
    conversations_paginate_by_cursor,
);

async fn patch_changes_status_assignee_and_labels(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "u-1", "Hello").await;
    let conversation = app.only_conversation().await;
    let id = str_of(&conversation, "id").to_owned();
    let path = format!("/api/v1/conversations/{id}");
    assert_eq!(conversation["assignee_id"], Value::Null);
    assert_eq!(conversation["labels"], json!([]));

    let patched = json_of(
        app.api_patch(&path, &json!({ "status": "resolved" })).await,
        StatusCode::OK,
        "resolve",
    )
    .await;
    assert_eq!(patched["status"], "resolved");
    let patched = json_of(
        app.api_patch(
            &path,
            &json!({ "assignee": "me", "labels": ["VIP", " billing ", "vip"] }),
        )
        .await,
        StatusCode::OK,
        "assign and label",
    )
    .await;
    assert_eq!(patched["assignee_id"], app.admin.id.to_string());

    let shown = app.conversation(&id).await;
    assert_eq!(shown["status"], "resolved");
    assert!(shown["resolved_at"].is_string(), "{shown}");
    assert_eq!(shown["assignee_id"], app.admin.id.to_string());
    assert_eq!(shown["labels"], json!(["billing", "vip"]));

    let resolved = items(
        &app.get_json("/api/v1/conversations?status=resolved&assignee=me")
            .await,
    );
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["id"], id.as_str());
    let open = items(&app.get_json("/api/v1/conversations?status=open").await);
    assert!(open.is_empty(), "{open:#?}");

    // Invalid input names the field and changes nothing.
    let refusals = [
        (json!({ "status": "closed" }), "status"),
        (
            json!({ "assignee": inbox_core::ids::AgentId::new().to_string() }),
            "assignee",
        ),
        (json!({ "assignee": "nobody" }), "assignee"),
    ];
    for (body, field) in refusals {
        let refusal = json_of(
            app.api_patch(&path, &body).await,
            StatusCode::BAD_REQUEST,
            &format!("PATCH {body}"),
        )
        .await;
        assert_eq!(refusal["field"], field, "{body}: {refusal}");
    }
    assert_eq!(app.conversation(&id).await, shown);

    // Assigning to another agent by id, then unassigning with null.
    let (grace, grace_token) = app
        .create_agent("grace@example.com", "Grace", inbox_core::model::Role::Agent)
        .await;
    let patched = json_of(
        app.api_patch(&path, &json!({ "assignee": grace.id.to_string() }))
            .await,
        StatusCode::OK,
        "assign to Grace",
    )
    .await;
    assert_eq!(patched["assignee_id"], grace.id.to_string());
    let mine = app
        .client
        .get(app.url("/api/v1/conversations?assignee=me"))
        .bearer_auth(&grace_token)
        .send()
        .await
        .expect("GET as Grace");
    let mine = json_of(mine, StatusCode::OK, "Grace's conversations").await;
    assert_eq!(items(&mine).len(), 1, "{mine}");
    assert_eq!(items(&mine)[0]["id"], id.as_str());
    let patched = json_of(
        app.api_patch(&path, &json!({ "assignee": null })).await,
        StatusCode::OK,
        "unassign",
    )
    .await;
    assert_eq!(patched["assignee_id"], Value::Null);
}

async fn api_requires_a_valid_token(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "u-1", "Hello").await;
    let conversation = app.only_conversation().await;
    let id = str_of(&conversation, "id");
    let contact = str_of(&conversation, "contact_id");
    let routes = [
        ("GET", "/api/v1/conversations".to_owned()),
        ("GET", format!("/api/v1/conversations/{id}")),
        ("PATCH", format!("/api/v1/conversations/{id}")),
        ("GET", format!("/api/v1/conversations/{id}/messages")),
        ("POST", format!("/api/v1/conversations/{id}/messages")),
        ("GET", format!("/api/v1/conversations/{id}/events")),
        ("GET", format!("/api/v1/contacts/{contact}")),
    ];
    let bad_auth: [Option<&str>; 5] = [
        None,
        Some("Bearer inbox_0000"),
        Some("Bearer "),
        Some(&format!("Basic {}", app.token)),
        Some(&app.token),
    ];
    for (method, path) in &routes {
        for auth in &bad_auth {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = app.client.request(method.clone(), app.url(path));
            if method != reqwest::Method::GET {
                request = request.json(&json!({ "text": "sneaky", "status": "resolved" }));
            }
            if let Some(auth) = auth {
                request = request.header("authorization", *auth);
            }
            let response = request.send().await.expect("send");
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with authorization {auth:?}"
            );
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{method} {path}"
            );
        }
    }
    // Nothing was written by the refused requests.
    assert_eq!(app.message_total().await, 1);
    assert_eq!(app.conversation(id).await["status"], "open");

    // With the token every read works.
    for (method, path) in &routes {
        if *method == "GET" {
            let response = app.api_get(path).await;
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        }
    }

    for probe in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(probe)).send().await.expect("probe");
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
    }
}

async fn conversations_paginate_by_cursor(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    // Three customers write at the same millisecond, so the cursor's tie-breaker matters.
    let times = [
        "2025-01-02T03:04:05Z",
        "2025-01-02T03:04:06Z",
        "2025-01-02T03:04:06Z",
        "2025-01-02T03:04:06Z",
        "2025-01-02T03:04:07Z",
    ];
    for (i, at) in times.iter().enumerate() {
        let mut payload = webhook_message(&format!("m-{i}"), &format!("u-{i}"), "Hello");
        payload["sent_at"] = json!(at);
        let response = app
            .post_webhook(channel.id, &channel.secret, &payload)
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "customer {i}");
    }
    let all: Vec<Value> = app.conversations().await;
    assert_eq!(all.len(), 5);
    let expected: Vec<&str> = all.iter().map(|c| str_of(c, "id")).collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/api/v1/conversations?limit=2".to_owned(),
            Some(cursor) => format!("/api/v1/conversations?limit=2&cursor={cursor}"),
        };
        let page = app.get_json(&path).await;
        let page_items = items(&page);
        sizes.push(page_items.len());
        seen.extend(page_items.iter().map(|c| str_of(c, "id").to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(sizes.len() <= 5, "pagination does not end: {seen:?}");
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, expected, "pages give the full list in order");
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        5,
        "each conversation exactly once: {seen:?}"
    );
    assert_eq!(all[0]["contact_handle"], "u-4", "newest first");
    assert_eq!(all[4]["contact_handle"], "u-0");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=garbage", "cursor"),
        ("status=closed", "status"),
    ] {
        let path = format!("/api/v1/conversations?{query}");
        let refusal = json_of(app.api_get(&path).await, StatusCode::BAD_REQUEST, &path).await;
        assert_eq!(refusal["field"], field, "{path}: {refusal}");
    }
}
