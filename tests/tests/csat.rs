//! CSAT end to end over HTTP, on both backends: a channel turns surveys on; resolving a
//! conversation sends the customer a link on that channel (through the outbox, to the webhook
//! receiver); the public page takes one answer (no sign-in), refuses a second and an expired
//! link; the answer shows on the conversation and in the report.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use axum::http::StatusCode;
use inbox_core::store::test_support::RawPool;
use inbox_e2e::{Backend, Behaviour, Receiver, TestApp, both_backends, json_of, str_of, wait_for};
use serde_json::{Value, json};

both_backends!(a_resolution_asks_and_the_answer_counts);

/// The survey link of the message the receiver got, if any.
fn survey_link(receiver: &Receiver) -> Option<String> {
    receiver.requests().into_iter().find_map(|r| {
        let body: Value = serde_json::from_slice(&r.body).ok()?;
        let text = body["body"]["text"]
            .as_str()
            .or_else(|| body["text"].as_str())?
            .to_owned();
        let at = text.find("/survey/")?;
        Some(text[at..].split_whitespace().next()?.to_owned())
    })
}

async fn set_status(app: &TestApp, id: &str, status: &str) {
    json_of(
        app.api_patch(
            &format!("/api/v1/conversations/{id}"),
            &json!({ "status": status }),
        )
        .await,
        StatusCode::OK,
        status,
    )
    .await;
}

async fn expire_all_surveys(app: &TestApp) {
    let sql = "UPDATE csat_surveys SET expires_at = 0";
    match app.store.raw_pool() {
        RawPool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        RawPool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
    .unwrap();
}

async fn a_resolution_asks_and_the_answer_counts(backend: Backend) {
    let (app, receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let path = format!("/api/v1/channels/{}/csat", channel.id);
    assert_eq!(
        app.get_json(&path).await["enabled"],
        false,
        "off by default"
    );
    let set = json_of(
        app.client
            .put(app.url(&path))
            .bearer_auth(&app.token)
            .json(&json!({"enabled": true, "expiry_hours": 48}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
        "turn CSAT on",
    )
    .await;
    assert_eq!(set, json!({"enabled": true, "expiry_hours": 48}));

    app.customer_says(&channel, "m-1", "u-1", "My order is late")
        .await;
    let id = wait_for(Duration::from_secs(10), "the conversation", async || {
        app.conversations()
            .await
            .first()
            .map(|c| str_of(c, "id").to_owned())
    })
    .await;
    app.agent_writes(&id, "It arrives tomorrow.", false).await;
    assert_eq!(
        survey_link(&receiver),
        None,
        "no survey before the resolution"
    );
    set_status(&app, &id, "resolved").await;
    let link = wait_for(Duration::from_secs(10), "the survey message", async || {
        survey_link(&receiver)
    })
    .await;
    // Still resolved: the survey message does not reopen it.
    assert_eq!(app.conversation(&id).await["status"], "resolved");

    // The page, without any session.
    let anonymous = reqwest::Client::new();
    let page = anonymous.get(app.url(&link)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"rating\""), "{html}");
    let bad = anonymous
        .post(app.url(&link))
        .form(&[("rating", "9")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let answered = anonymous
        .post(app.url(&link))
        .form(&[("rating", "5"), ("comment", "Quick <b>and</b> kind")])
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    let again = anonymous
        .post(app.url(&link))
        .form(&[("rating", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT, "single use");
    let unknown = anonymous
        .get(app.url(&format!("/survey/{}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // On the conversation (escaped) and in the report.
    let events = app
        .get_json(&format!("/api/v1/conversations/{id}/events"))
        .await;
    let rows = events
        .as_array()
        .or_else(|| events["items"].as_array())
        .unwrap();
    let answers: Vec<_> = rows
        .iter()
        .filter(|e| e["kind"] == "csat_answered")
        .collect();
    assert_eq!(answers.len(), 1, "{events:#}");
    assert_eq!(answers[0]["data"]["rating"], 5);
    let browser = inbox_e2e::session::Browser::as_agent(&app, &app.admin).await;
    let (_, view) = browser.get(&format!("/conversations/{id}")).await;
    assert!(view.contains("Customer rated 5/5"), "{view}");
    assert!(!view.contains("<b>and</b>"), "the comment is escaped");
    let report = app.get_json("/api/v1/reports/csat?group_by=agent").await;
    let group = &report["groups"][0];
    assert_eq!(group["key"], app.admin.id.to_string(), "{report:#}");
    assert_eq!(group["name"], app.admin.name.as_str());
    assert_eq!(
        (&group["responses"], &group["csat_pct"]),
        (&json!(1), &json!(100.0))
    );
    let (_, reports_page) = browser.get("/reports").await;
    assert!(
        reports_page.contains("Customer satisfaction"),
        "{reports_page}"
    );
    assert!(reports_page.contains("100 %"), "{reports_page}");

    // A second resolution sends a new link; once expired it answers 410.
    set_status(&app, &id, "open").await;
    set_status(&app, &id, "resolved").await;
    let second = wait_for(Duration::from_secs(10), "the second survey", async || {
        let links: Vec<String> = receiver
            .requests()
            .iter()
            .filter_map(|r| {
                let text = String::from_utf8_lossy(&r.body).into_owned();
                let at = text.find("/survey/")?;
                Some(text[at..at + 8 + 64].to_owned())
            })
            .collect();
        links.into_iter().find(|l| *l != link)
    })
    .await;
    expire_all_surveys(&app).await;
    let expired = anonymous.get(app.url(&second)).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::GONE);
    let late = anonymous
        .post(app.url(&second))
        .form(&[("rating", "4")])
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::GONE);
}
