//! The holes an outside probe found, each driven over HTTP against the whole app: sign-in limits
//! under parallel guessing, lockout of real users by others' failures, forwarding headers only
//! from trusted proxies, `next` after sign-in, live streams outliving their session or agent,
//! credentials of disabled agents, canned reply ownership, and input edges (ancient `sent_at`,
//! NUL in replies and notes).
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use std::time::Duration;

use futures::future::join_all;
use inbox_core::model::Role;
use inbox_e2e::session::{Browser, SignInForm, set_cookie};
use inbox_e2e::{Backend, TestApp, both_backends, str_of, wait_for};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

async fn with_password(app: &TestApp) {
    let hash = inbox_core::passwords::hash(PASSWORD).unwrap();
    app.store.set_password(app.admin.id, &hash).await.unwrap();
}

fn admin(password: &str) -> SignInForm {
    SignInForm::new("admin@example.com", password)
}

/// The first conversation, once the funnel stored it.
async fn first_conversation(app: &TestApp) -> Value {
    wait_for(Duration::from_secs(10), "the conversation", async || {
        app.conversations().await.into_iter().next()
    })
    .await
}

/// Counts the responses by status.
fn tally(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn parallel_wrong_passwords_are_counted_before_they_are_checked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    with_password(&app).await;
    let wrong = admin("wrong password");
    let responses = join_all((0..50).map(|_| wrong.submit(&app))).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    // Exactly the account's five attempts from this client were checked; the rest never were.
    assert_eq!(
        tally(&statuses, StatusCode::UNAUTHORIZED),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        tally(&statuses, StatusCode::TOO_MANY_REQUESTS),
        45,
        "{statuses:?}"
    );
    for response in responses
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
    {
        let wait: u64 = response.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&wait), "Retry-After {wait}");
    }
    // Even the right password waits now, from this client without a device cookie.
    let response = admin(PASSWORD).submit(&app).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test]
async fn others_failures_do_not_lock_out_real_users() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.web.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    with_password(&app).await;
    // The agent's own browser signed in before and keeps its device cookie.
    let response = admin(PASSWORD)
        .from_client("203.0.113.10")
        .submit(&app)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let device = set_cookie(&response, "inbox_device").expect("a device cookie");

    // An attacker guesses from one address until it is refused.
    let attacker = "198.51.100.66";
    for _ in 0..5 {
        let response = admin("guess").from_client(attacker).submit(&app).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = admin("guess").from_client(attacker).submit(&app).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = admin(PASSWORD).from_client(attacker).submit(&app).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // The real user from another address (a new browser) is not locked out...
    let response = admin(PASSWORD)
        .from_client("203.0.113.20")
        .submit(&app)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // ...nor their known browser, even from the attacker's address (one office, one NAT).
    let response = admin(PASSWORD)
        .from_client(attacker)
        .with_cookie(&device)
        .submit(&app)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // A device cookie of another account is no pass: it counts as untrusted.
    let forged = format!("inbox_device={}.x.1.00", uuid::Uuid::now_v7());
    let response = admin(PASSWORD)
        .from_client(attacker)
        .with_cookie(&forged)
        .submit(&app)
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test]
async fn forwarding_headers_of_untrusted_peers_are_ignored() {
    // No trusted proxies: X-Forwarded-For is the client's own claim.
    let app = TestApp::spawn(Backend::Sqlite).await;
    with_password(&app).await;
    for n in 0..5 {
        let client = format!("192.0.2.{n}");
        let response = admin("guess").from_client(&client).submit(&app).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = admin(PASSWORD).from_client("192.0.2.99").submit(&app).await;
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a new X-Forwarded-For must not reset the limit"
    );
    app.stop().await;
}

#[tokio::test]
async fn next_after_sign_in_stays_on_this_site() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    with_password(&app).await;
    for (next, expected) in [
        ("/\t/evil.example", "/inbox"),
        ("/\n/x", "/inbox"),
        ("//evil.example", "/inbox"),
        ("/\\evil.example", "/inbox"),
        ("https://evil.example/", "/inbox"),
        ("/search?q=refund", "/search?q=refund"),
    ] {
        let response = admin(PASSWORD).next(next).submit(&app).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "next={next:?}");
        assert_eq!(response.headers()[LOCATION], expected, "next={next:?}");
    }
    app.stop().await;
}

/// Reads the live stream until it ends; `Err` when it is still open after `wait`.
async fn stream_ends_within(mut stream: reqwest::Response, wait: Duration) -> Result<(), ()> {
    tokio::time::timeout(wait, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await
    .map_err(|_| ())
}

async fn open_stream(app: &TestApp, cookie: &str) -> reqwest::Response {
    let response = app
        .client
        .get(app.url("/events/stream"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

both_backends!(live_streams_end_with_their_session_or_agent);
async fn live_streams_end_with_their_session_or_agent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = Browser::sign_in(&app, Role::Admin).await;
    let (agent, _) = app.create_agent("bo@example.com", "Bo", Role::Agent).await;

    // Signing out ends that browser's stream; another session's stream stays open.
    let bo = Browser::as_agent(&app, &agent).await;
    let other = Browser::as_agent(&app, &agent).await;
    let stream = open_stream(&app, &bo.cookie).await;
    let other_stream = open_stream(&app, &other.cookie).await;
    let response = bo.post("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    stream_ends_within(stream, Duration::from_secs(5))
        .await
        .expect("the signed-out browser's stream ends");

    // Disabling the agent ends every stream of theirs.
    let response = admin
        .post(&format!("/admin/agents/{}", agent.id), &[("op", "disable")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    stream_ends_within(other_stream, Duration::from_secs(5))
        .await
        .expect("a disabled agent's stream ends");

    // "Sign out everywhere" ends all sessions and their streams, and is listed on the page.
    app.store.set_agent_disabled(agent.id, false).await.unwrap();
    let first = Browser::as_agent(&app, &agent).await;
    let second = Browser::as_agent(&app, &agent).await;
    let (_, page) = admin.get("/admin/agents").await;
    assert!(page.contains("Sign out everywhere"), "{page}");
    let streams = [
        open_stream(&app, &first.cookie).await,
        open_stream(&app, &second.cookie).await,
    ];
    let response = first.post("/logout", &[("everywhere", "1")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    for stream in streams {
        stream_ends_within(stream, Duration::from_secs(5))
            .await
            .expect("every stream of the agent ends");
    }
    assert_eq!(second.get("/inbox").await.0, StatusCode::SEE_OTHER);
    assert!(app.store.sessions(Some(agent.id)).await.unwrap().is_empty());

    // An admin signs an agent out everywhere from the agents page.
    let third = Browser::as_agent(&app, &agent).await;
    let response = admin
        .post(&format!("/admin/agents/{}/sessions/end", agent.id), &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(third.get("/inbox").await.0, StatusCode::SEE_OTHER);
    // The admin's own session is untouched.
    assert_eq!(admin.get("/inbox").await.0, StatusCode::OK);
    app.stop().await;
}

both_backends!(sign_in_records_where_the_session_came_from);
async fn sign_in_records_where_the_session_came_from(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    with_password(&app).await;
    let response = admin(PASSWORD).submit(&app).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let sessions = app.store.sessions(Some(app.admin.id)).await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].client.as_deref(), Some("127.0.0.1"));
    let page_browser = Browser::sign_in(&app, Role::Admin).await;
    let (_, page) = page_browser.get("/admin/agents").await;
    assert!(page.contains("from 127.0.0.1"), "{page}");
    app.stop().await;
}

both_backends!(canned_replies_belong_to_their_creator_or_the_team);
async fn canned_replies_belong_to_their_creator_or_the_team(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ann_agent, _) = app
        .create_agent("ann@example.com", "Ann", Role::Agent)
        .await;
    let (bob_agent, _) = app
        .create_agent("bob@example.com", "Bob", Role::Agent)
        .await;
    let ann = Browser::as_agent(&app, &ann_agent).await;
    let bob = Browser::as_agent(&app, &bob_agent).await;
    let admin = Browser::sign_in(&app, Role::Admin).await;
    let add = async |who: &Browser<'_>, shortcut: &str, personal: bool| {
        let mut fields = vec![
            ("shortcut", shortcut),
            ("title", "Title"),
            ("body", "Body text"),
        ];
        if personal {
            fields.push(("personal", "on"));
        }
        let response = who.post("/canned", &fields).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "add {shortcut}");
    };
    add(&ann, "team-ann", false).await;
    add(&ann, "mine-ann", true).await;
    // Ann's view: the team's replies and her own.
    let id_of = async |shortcut: &str| {
        app.store
            .canned_replies(shortcut, Some(ann_agent.id))
            .await
            .unwrap()[0]
            .id
            .to_string()
    };
    // Bob sees the team reply, not Ann's personal one, in the page and in the `/` menu.
    let (_, page) = bob.get("/canned").await;
    assert!(page.contains("/team-ann"), "{page}");
    assert!(!page.contains("/mine-ann"), "{page}");
    let (_, menu) = bob.get("/canned.json").await;
    let menu: Value = serde_json::from_str(&menu).unwrap();
    let shortcuts: Vec<&str> = menu
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_of(c, "shortcut"))
        .collect();
    assert_eq!(shortcuts, ["team-ann"]);
    let (_, menu) = ann.get("/canned.json").await;
    assert!(
        menu.contains("mine-ann") && menu.contains("team-ann"),
        "{menu}"
    );

    // Bob may not delete Ann's team reply; the admin may; Ann's personal one is hers alone.
    let team = id_of("team-ann").await;
    let response = bob.post(&format!("/canned/{team}/delete"), &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = admin.post(&format!("/canned/{team}/delete"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let personal = id_of("mine-ann").await;
    for stranger in [&bob, &admin] {
        let response = stranger
            .post(&format!("/canned/{personal}/delete"), &[])
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let response = ann.post(&format!("/canned/{personal}/delete"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

both_backends!(ancient_provider_times_are_clamped_and_recorded);
async fn ancient_provider_times_are_clamped_and_recorded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let before = chrono::Utc::now();
    let response = app
        .post_webhook(
            channel.id,
            &channel.secret,
            &json!({
                "external_id": "old-1",
                "from": {"handle": "u-1"},
                "text": "from a broken clock",
                "sent_at": "0001-01-01T00:00:00Z",
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let conversation = first_conversation(&app).await;
    let messages = app.messages(str_of(&conversation, "id")).await;
    let message = &messages[0];
    let sent_at: chrono::DateTime<chrono::Utc> = str_of(message, "sent_at").parse().unwrap();
    assert!(
        sent_at >= before - chrono::Duration::seconds(1),
        "{message}"
    );
    assert_eq!(
        str_of(message, "claimed_sent_at"),
        "0001-01-01T00:00:00Z",
        "{message}"
    );
    let waiting: chrono::DateTime<chrono::Utc> =
        str_of(&conversation, "waiting_since").parse().unwrap();
    assert!(
        waiting >= before - chrono::Duration::seconds(1),
        "{conversation}"
    );
    app.stop().await;
}

both_backends!(nul_in_replies_and_notes_is_refused_naming_the_field);
async fn nul_in_replies_and_notes_is_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    app.customer_says(&channel, "m-1", "u-1", "hello").await;
    let conversation = first_conversation(&app).await;
    let path = format!(
        "/api/v1/conversations/{}/messages",
        str_of(&conversation, "id")
    );
    for private in [false, true] {
        let response = app
            .api_post(&path, &json!({"text": "a\u{0}b", "private": private}))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["field"], "text", "{body}");
    }
    assert_eq!(app.messages(str_of(&conversation, "id")).await.len(), 1);
    app.stop().await;
}

/// The first backtick-quoted text after `anchor` in `doc`.
fn quoted_after<'a>(doc: &'a str, anchor: &str) -> &'a str {
    let rest = &doc[doc
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor} in the doc"))..];
    let start = rest.find('`').unwrap() + 1;
    let end = start + rest[start..].find('`').unwrap();
    &rest[start..end]
}

#[tokio::test]
async fn the_docs_state_what_the_server_sends() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let response = app
        .post_webhook(
            channel.id,
            &channel.secret,
            &json!({"external_id": "h-1", "from": {"handle": "u-1"}, "text": "t",
                    "html": "<p>Hello <b>there</b></p>"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let conversation = first_conversation(&app).await;
    let message = app.messages(str_of(&conversation, "id")).await[0].clone();
    let browser = Browser::sign_in(&app, Role::Admin).await;
    let frame = browser
        .client
        .get(app.url(&format!("/messages/{}/html", str_of(&message, "id"))))
        .header(COOKIE, &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(frame.status(), StatusCode::OK);
    let policy = frame.headers()["content-security-policy"].to_str().unwrap();
    let web_md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/web.md")).unwrap();
    assert_eq!(
        quoted_after(&web_md, "which has its own policy:"),
        policy,
        "docs/web.md states the email frame's policy"
    );

    // A body over the limit: JSON, as docs/api.md says.
    let response = app
        .api_post(
            &format!(
                "/api/v1/conversations/{}/messages",
                str_of(&conversation, "id")
            ),
            &json!({"text": "x".repeat(3 << 20)}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_large");
    let api_md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    assert!(
        api_md.contains("| 413 | `too_large` |"),
        "docs/api.md lists the 413"
    );
    app.stop().await;
}
