//! The server-rendered pages driven over HTTP with a session, as a browser without script would:
//! search, merging and unmerging contacts, canned replies, the admin pages.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use std::time::Duration;

use inbox_core::model::Role;
use inbox_e2e::session::Browser;
use inbox_e2e::{Backend, TestApp, both_backends, str_of, wait_for, webhook_message};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

/// The secret a page shows once (a channel's signing secret, a password, a token).
fn shown_secret(page: &str) -> String {
    page.split("id=\"new-secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the page shows a new secret")
        .to_owned()
}

async fn conversation_of(app: &TestApp, handle: &str) -> Value {
    wait_for(Duration::from_secs(10), handle, async || {
        app.conversations()
            .await
            .into_iter()
            .find(|c| c["contact_handle"] == handle)
    })
    .await
}

both_backends!(search_page_finds_messages_and_escapes_them);
async fn search_page_finds_messages_and_escapes_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    app.customer_says(
        &channel,
        "s-1",
        "u-1",
        "My parcel <script>alert(1)</script> never arrived",
    )
    .await;
    app.customer_says(&channel, "s-2", "u-2", "Invoice question")
        .await;
    conversation_of(&app, "u-1").await;
    let browser = Browser::sign_in(&app, Role::Agent).await;
    let (status, page) = wait_for(Duration::from_secs(10), "a search hit", async || {
        let (status, page) = browser.get("/search?q=parcel").await;
        page.contains("<mark>").then_some((status, page))
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<mark>parcel</mark>"), "{page}");
    // SQLite's snippet keeps the text as it is (escaped here); PostgreSQL's ts_headline drops
    // tag-like tokens. Neither lets markup through.
    if backend == Backend::Sqlite {
        assert!(
            page.contains("&#60;script&#62;"),
            "the snippet is escaped: {page}"
        );
    }
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("Invoice"), "only matches: {page}");
    // Nothing to search for, and syntax that would break a naive FTS query, are fine.
    for q in ["", "\"", "(", "AND", "*", "-", "\"unclosed"] {
        let (status, _) = browser.get(&format!("/search?q={}", urlencode(q))).await;
        assert_eq!(status, StatusCode::OK, "q={q}");
    }
    // The list's search box narrows conversations the same way.
    let (_, list) = browser
        .get("/inbox?assignee=all&status=all&q=invoice")
        .await;
    assert!(list.contains("Invoice question"), "{list}");
    assert!(!list.contains("parcel"), "{list}");
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

both_backends!(contacts_merge_and_unmerge_from_the_contact_page);
async fn contacts_merge_and_unmerge_from_the_contact_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let chat = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let shop = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    app.customer_says(&chat, "m-1", "ada-chat", "Hi from chat")
        .await;
    let mut from_shop = webhook_message("m-2", "ada-shop", "Hi from the shop");
    from_shop["from"]["name"] = "Ada L.".into();
    let response = app.post_webhook(shop.id, &shop.secret, &from_shop).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let keep = str_of(&conversation_of(&app, "ada-chat").await, "contact_id").to_owned();
    let absorb = str_of(&conversation_of(&app, "ada-shop").await, "contact_id").to_owned();
    let before_keep = app.get_json(&format!("/api/v1/contacts/{keep}")).await;
    let before_absorb = app.get_json(&format!("/api/v1/contacts/{absorb}")).await;

    let browser = Browser::sign_in(&app, Role::Agent).await;
    let response = browser
        .post(&format!("/contacts/{keep}/merge"), &[("absorb", &absorb)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], format!("/contacts/{keep}"));
    let (_, page) = browser.get(&format!("/contacts/{keep}")).await;
    assert!(
        page.contains("Hi from the shop"),
        "the absorbed conversation is listed: {page}"
    );
    assert!(
        page.contains("ada-shop"),
        "the absorbed identity is listed: {page}"
    );
    let merged = app.get_json(&format!("/api/v1/contacts/{keep}")).await;
    assert_eq!(merged["conversations"].as_array().unwrap().len(), 2);
    assert_eq!(merged["timeline"]["items"].as_array().unwrap().len(), 2);

    // Merging it again is refused with the reason on the page.
    let response = browser
        .post(&format!("/contacts/{keep}/merge"), &[("absorb", &absorb)])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.unwrap();
    assert!(page.contains("role=\"alert\""), "{page}");

    let merge_id = app
        .store
        .contact_merges(keep.parse().unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();
    let response = browser
        .post(&format!("/contacts/merges/{merge_id}/undo"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_json(&format!("/api/v1/contacts/{keep}")).await,
        before_keep
    );
    assert_eq!(
        app.get_json(&format!("/api/v1/contacts/{absorb}")).await,
        before_absorb
    );
    let (_, page) = browser.get(&format!("/contacts/{keep}")).await;
    assert!(page.contains("undone"), "{page}");
    app.stop().await;
}

both_backends!(canned_replies_are_managed_and_offered);
async fn canned_replies_are_managed_and_offered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = Browser::sign_in(&app, Role::Agent).await;
    let (_, page) = browser.get("/canned").await;
    assert!(page.contains("No canned replies yet"), "{page}");
    let response = browser
        .post(
            "/canned",
            &[
                ("shortcut", "refund"),
                ("title", "Refund policy"),
                ("body", "Refunds take 5 days."),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // A bad shortcut is refused naming the field, and the draft is kept.
    let response = browser
        .post(
            "/canned",
            &[
                ("shortcut", "Bad Shortcut"),
                ("title", "T"),
                ("body", "kept text"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.unwrap();
    assert!(page.contains("shortcut"), "{page}");
    assert!(page.contains("kept text"), "{page}");

    let (_, json) = browser.get("/canned.json?prefix=ref").await;
    let offered: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(offered[0]["shortcut"], "refund");
    assert_eq!(offered[0]["body"], "Refunds take 5 days.");
    let (_, json) = browser.get("/canned.json?prefix=zzz").await;
    assert_eq!(json, "[]");

    let id = app.store.canned_replies("", None).await.unwrap()[0]
        .id
        .to_string();
    let response = browser.post(&format!("/canned/{id}/delete"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.store.canned_replies("", None).await.unwrap().is_empty());
    app.stop().await;
}

both_backends!(admins_set_business_hours_sla_policies_and_surveys);
async fn admins_set_business_hours_sla_policies_and_surveys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let admin = Browser::sign_in(&app, Role::Admin).await;
    let (status, page) = admin.get("/admin/service-levels").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("business time is calendar time"), "{page}");

    // Business hours: a bad zone is refused naming the field, a good schedule is stored.
    let mut hours = vec![("time_zone", "Mars/Olympus"), ("monday", "09:00-17:00")];
    let response = admin
        .post("/admin/service-levels/business-hours", &hours)
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("schedule.time_zone")
    );
    hours[0].1 = "Europe/Berlin";
    hours.push(("tuesday", "09:00-12:00, 13:00-17:00"));
    hours.push(("holidays", "2026-12-25"));
    let response = admin
        .post("/admin/service-levels/business-hours", &hours)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored = app.store.schedule_entries(None).await.unwrap();
    let schedule = stored.last().unwrap().schedule.clone().unwrap();
    assert_eq!(schedule.time_zone, "Europe/Berlin");
    assert_eq!(schedule.tuesday, ["09:00-12:00", "13:00-17:00"]);
    assert_eq!(schedule.holidays, ["2026-12-25"]);
    let (_, page) = admin.get("/admin/service-levels").await;
    assert!(
        page.contains(r#"value="09:00-12:00, 13:00-17:00""#),
        "{page}"
    );

    // A channel's own hours: it follows the default (shown as a start) until it gets its own;
    // "follow the default" ends them. An unknown channel is not found.
    let of_channel = format!("/admin/service-levels?channel={}", channel.id);
    let (_, page) = admin.get(&of_channel).await;
    assert!(page.contains("It follows the default now"), "{page}");
    assert!(page.contains(r#"value="Europe/Berlin""#), "{page}");
    let channel_id = channel.id.to_string();
    let own = vec![
        ("channel_id", channel_id.as_str()),
        ("time_zone", "America/New_York"),
        ("monday", "08:00-16:00"),
    ];
    let response = admin
        .post("/admin/service-levels/business-hours", &own)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("In force now: its own, America/New_York")
    );
    let stored = app.store.schedule_entries(Some(channel.id)).await.unwrap();
    let schedule = stored.last().unwrap().schedule.clone().unwrap();
    assert_eq!(schedule.time_zone, "America/New_York");
    assert_eq!(schedule.monday, ["08:00-16:00"]);
    assert_eq!(
        app.store.schedule_entries(None).await.unwrap().len(),
        1,
        "the default is unchanged"
    );
    let response = admin
        .post(
            "/admin/service-levels/business-hours",
            &[("channel_id", channel_id.as_str()), ("action", "none")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored = app.store.schedule_entries(Some(channel.id)).await.unwrap();
    assert!(stored.last().unwrap().schedule.is_none(), "{stored:?}");
    let (status, _) = admin
        .get(&format!(
            "/admin/service-levels?channel={}",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // SLA policies: one without a target is refused; one is added, shown and deleted.
    let policy = |first: &'static str| {
        vec![
            ("name", "VIP"),
            ("channel_id", ""),
            ("label", "VIP"),
            ("first_reply_minutes", first),
            ("next_reply_minutes", ""),
            ("resolution_minutes", "480"),
            ("business_hours", "false"),
        ]
    };
    let mut none = policy("");
    none[5].1 = "";
    let response = admin.post("/admin/service-levels/sla", &none).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("at least one target")
    );
    let response = admin.post("/admin/service-levels/sla", &policy("90")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("first reply within 1 h 30 min, resolution within 8 h"),
        "{page}"
    );
    let policies = app.store.sla_policies().await.unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].label.as_deref(), Some("vip"));
    assert_eq!(policies[0].first_reply_s, Some(5400));
    assert!(!policies[0].business_hours);
    let response = admin
        .post(
            &format!("/admin/service-levels/sla/{}/delete", policies[0].id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.store.sla_policies().await.unwrap().is_empty());

    // Surveys: off by default, turned on for one channel with a day's expiry.
    assert!(!app.store.csat_settings(channel.id).await.unwrap().enabled);
    let path = format!("/admin/service-levels/csat/{}", channel.id);
    let response = admin
        .post(&path, &[("enabled", "true"), ("expiry_hours", "9999")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = admin
        .post(&path, &[("enabled", "true"), ("expiry_hours", "24")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let settings = app.store.csat_settings(channel.id).await.unwrap();
    assert!(settings.enabled);
    assert_eq!(settings.expiry_hours, 24);
    app.stop().await;
}

both_backends!(admins_add_a_mastodon_channel_with_the_form);
async fn admins_add_a_mastodon_channel_with_the_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = Browser::sign_in(&app, Role::Admin).await;
    let (_, page) = admin.get("/admin/channels").await;
    assert!(
        page.contains("config.instance_url"),
        "the kind's form: {page}"
    );
    let form = |url: &'static str| {
        vec![
            ("kind", "mastodon"),
            ("name", "Acme on Mastodon"),
            ("config.instance_url", url),
            ("config.token_env", "ACME_MASTODON_TOKEN"),
        ]
    };
    let response = admin
        .post("/admin/channels", &form("mastodon.example"))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("instance_url"));
    let response = admin
        .post("/admin/channels", &form("https://mastodon.example"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let channel = app
        .store
        .channels()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "Acme on Mastodon")
        .unwrap();
    assert_eq!(channel.kind, inbox_connectors::mastodon::KIND);
    assert_eq!(channel.config["instance_url"], "https://mastodon.example");
    assert_eq!(channel.config["token_env"], "ACME_MASTODON_TOKEN");
    assert_eq!(channel.rules, inbox_connectors::mastodon::RULES);
    app.stop().await;
}

both_backends!(admins_add_channels_agents_and_tokens);
async fn admins_add_channels_agents_and_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = Browser::sign_in(&app, Role::Admin).await;
    let response = admin
        .post(
            "/admin/channels",
            &[
                ("kind", "webhook"),
                ("name", "Shop"),
                ("config.outbound_url", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    let secret = shown_secret(&page);
    let channel = app
        .store
        .channels()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "Shop")
        .unwrap();
    assert_eq!(channel.secret, secret);
    // The channel works at once and its activity shows on the page.
    app.customer_says(&channel, "a-1", "u-1", "hello").await;
    conversation_of(&app, "u-1").await;
    let (_, page) = admin.get("/admin/channels").await;
    assert!(page.contains("health-ok"), "{page}");
    assert!(!page.contains(&secret), "the secret is shown once only");

    // A new agent with a generated password can sign in with it; a token works on the API.
    let response = admin
        .post(
            "/admin/agents",
            &[
                ("email", "bo@example.com"),
                ("name", "Bo"),
                ("role", "agent"),
                ("password", ""),
            ],
        )
        .await;
    let page = response.text().await.unwrap();
    let password = shown_secret(&page);
    let (agent, hash) = app
        .store
        .login_candidate("bo@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(inbox_core::passwords::verify(&password, &hash));
    let response = admin
        .post(
            &format!("/admin/agents/{}/tokens", agent.id),
            &[("name", "ci")],
        )
        .await;
    let page = response.text().await.unwrap();
    let token = shown_secret(&page);
    let api = |token: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/api/v1/conversations"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(api(token.clone()).await, StatusCode::OK);
    // Disabling the agent stops their token at once.
    let response = admin
        .post(&format!("/admin/agents/{}", agent.id), &[("op", "disable")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(api(token.clone()).await, StatusCode::UNAUTHORIZED);
    // Enabling the agent again gives back the account, not the old token.
    admin
        .post(&format!("/admin/agents/{}", agent.id), &[("op", "enable")])
        .await;
    assert_eq!(api(token.clone()).await, StatusCode::UNAUTHORIZED);
    let listed = app.store.api_tokens(Some(agent.id)).await.unwrap();
    assert!(listed.iter().all(|t| t.revoked_at.is_some()), "{listed:?}");
    let response = admin
        .post(
            &format!("/admin/agents/{}/tokens", agent.id),
            &[("name", "ci again")],
        )
        .await;
    let page = response.text().await.unwrap();
    let token = shown_secret(&page);
    assert_eq!(api(token.clone()).await, StatusCode::OK);
    // Revoking the token stops it.
    let token_id = app.store.api_tokens(Some(agent.id)).await.unwrap()[0]
        .id
        .clone();
    admin
        .post(&format!("/admin/tokens/{token_id}/revoke"), &[])
        .await;
    assert_eq!(api(token).await, StatusCode::UNAUTHORIZED);
    // Admins cannot lock themselves out.
    let response = admin
        .post(
            &format!("/admin/agents/{}", app.admin.id),
            &[("op", "disable")],
        )
        .await;
    assert!(response.text().await.unwrap().contains("cannot"));
    app.stop().await;
}

both_backends!(reports_page_charts_the_figures_and_escapes_names);
async fn reports_page_charts_the_figures_and_escapes_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    app.customer_says(&channel, "r-1", "u-1", "Where is my order?")
        .await;
    let conversation = conversation_of(&app, "u-1").await;
    let (agent, _) = app
        .create_agent("evil@example.com", "<b>Eve</b>", Role::Agent)
        .await;
    let browser = Browser::as_agent(&app, &agent).await;
    let id = str_of(&conversation, "id");
    let status = browser
        .post(
            &format!("/conversations/{id}/reply"),
            &[("text", "On its way.")],
        )
        .await
        .status();
    assert!(status.is_success() || status.is_redirection(), "{status}");

    let (status, page) = browser.get("/reports?metric=frt&group_by=agent").await;
    assert_eq!(status, StatusCode::OK);
    // Trend, distribution, per agent, per channel, volume.
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 5, "{page}");
    assert!(
        page.contains("&lt;b&gt;Eve&lt;/b&gt;") || page.contains("&#60;b&#62;Eve"),
        "{page}"
    );
    assert!(!page.contains("<b>Eve</b>"), "names are escaped: {page}");
    assert!(page.contains("frt.v1"), "{page}");
    assert!(
        page.contains("/api/v1/reports/response-times?metric=frt") && page.contains("format=csv"),
        "CSV links: {page}"
    );
    // The CSV the page links to downloads with the session.
    let (status, csv) = browser
        .get("/api/v1/reports/response-times?metric=frt&group_by=agent&format=csv")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.contains(",1,"), "one sample: {csv}");
    // A bad filter is said, and the default report shown.
    let (status, page) = browser.get("/reports?tz=Mars/Olympus").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("role=\"alert\""), "{page}");
    app.stop().await;
}
