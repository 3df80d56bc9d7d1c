//! Every route × {anonymous, agent, admin} with the expected status, and state-changing
//! requests made with a session cookie but no CSRF token refused.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use inbox_core::model::Role;
use inbox_e2e::{Backend, TestApp, both_backends, str_of};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Anonymous,
    Agent,
    Admin,
}

#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    /// A form post (`_csrf` added for signed-in callers).
    Form(&'static str),
    /// A JSON request (`X-CSRF-Token` header added for signed-in callers).
    Json(&'static str),
}

/// One row of the table: method, path (with `{conversation}`… placeholders), body, and the
/// status for anonymous, agent, admin.
struct Row(&'static str, &'static str, Body, [u16; 3]);

const PUBLIC: [u16; 3] = [200, 200, 200];
const PAGE: [u16; 3] = [303, 200, 200];
const ADMIN_PAGE: [u16; 3] = [303, 403, 200];
const API: [u16; 3] = [401, 200, 200];
const ADMIN_API: [u16; 3] = [401, 403, 200];

fn table() -> Vec<Row> {
    use Body::*;
    vec![
        // Open to everyone.
        Row("GET", "/healthz", None, PUBLIC),
        Row("GET", "/readyz", None, PUBLIC),
        Row("GET", "/metrics", None, PUBLIC),
        Row("GET", "/api/v1/openapi.json", None, PUBLIC),
        Row("GET", "/login", None, PUBLIC),
        // Signing in needs the sign-in form's own double-submit token, which no row has.
        Row(
            "POST",
            "/login",
            Form("email=x%40example.com&password=wrong"),
            [403, 403, 403],
        ),
        Row("GET", "/assets/app.js", None, PUBLIC),
        Row("GET", "/assets/app.css", None, PUBLIC),
        // A webhook without a valid signature is refused whoever sends it.
        Row("POST", "/hooks/{channel}", Json("{}"), [401, 401, 401]),
        // Pages.
        Row("GET", "/", None, [303, 303, 303]),
        Row("GET", "/inbox", None, PAGE),
        Row("GET", "/inbox/list", None, PAGE),
        Row("GET", "/conversations/{conversation}", None, PAGE),
        Row("GET", "/conversations/{conversation}/history", None, PAGE),
        Row("GET", "/conversations/{conversation}/meta", None, PAGE),
        Row(
            "GET",
            "/conversations/{conversation}/messages/{message}",
            None,
            PAGE,
        ),
        Row("GET", "/messages/{html_message}/html", None, PAGE),
        Row("GET", "/events/stream", None, PAGE),
        Row(
            "POST",
            "/conversations/{conversation}/reply",
            Form("text=hello&kind=note"),
            [303, 303, 303],
        ),
        Row(
            "POST",
            "/conversations/{conversation}/update",
            Form("op=labels&labels=vip"),
            [303, 303, 303],
        ),
        // Admin pages.
        Row("GET", "/admin/channels", None, ADMIN_PAGE),
        Row(
            "POST",
            "/admin/channels",
            Form("kind=webhook&name=Shop&config.outbound_url="),
            ADMIN_PAGE,
        ),
        Row(
            "POST",
            "/admin/channels/{spare}/pause",
            Form(""),
            [303, 403, 303],
        ),
        Row("GET", "/admin/dead-letters", None, ADMIN_PAGE),
        Row(
            "POST",
            "/admin/dead-letters/{random}/replay",
            Form(""),
            [303, 403, 404],
        ),
        Row("GET", "/admin/service-levels", None, ADMIN_PAGE),
        Row(
            "POST",
            "/admin/service-levels/business-hours",
            Form("action=none"),
            ADMIN_PAGE,
        ),
        Row(
            "POST",
            "/admin/service-levels/sla",
            Form("name=P{n}&first_reply_minutes=30&business_hours=true"),
            ADMIN_PAGE,
        ),
        Row(
            "POST",
            "/admin/service-levels/sla/{random}/delete",
            Form(""),
            [303, 403, 404],
        ),
        Row(
            "POST",
            "/admin/service-levels/csat/{channel}",
            Form("enabled=false&expiry_hours=24"),
            ADMIN_PAGE,
        ),
        Row("GET", "/admin/agents", None, ADMIN_PAGE),
        Row(
            "POST",
            "/admin/agents",
            Form("email=new-{n}%40example.com&name=New&role=agent&password="),
            ADMIN_PAGE,
        ),
        Row(
            "POST",
            "/admin/agents/{target}",
            Form("op=role&role=agent"),
            [303, 403, 303],
        ),
        Row(
            "POST",
            "/admin/agents/{target}/tokens",
            Form("name=ci"),
            ADMIN_PAGE,
        ),
        Row(
            "POST",
            "/admin/agents/{target}/sessions/end",
            Form(""),
            [303, 403, 303],
        ),
        Row(
            "POST",
            "/admin/tokens/{token}/revoke",
            Form(""),
            [303, 403, 303],
        ),
        // The JSON API.
        Row("GET", "/api/v1/conversations", None, API),
        Row("GET", "/api/v1/conversations/{conversation}", None, API),
        Row(
            "GET",
            "/api/v1/conversations/{conversation}/messages",
            None,
            API,
        ),
        Row(
            "GET",
            "/api/v1/conversations/{conversation}/events",
            None,
            API,
        ),
        Row(
            "POST",
            "/api/v1/conversations/{conversation}/messages",
            Json(r#"{"text":"a note","private":true}"#),
            [401, 201, 201],
        ),
        Row(
            "PATCH",
            "/api/v1/conversations/{conversation}",
            Json(r#"{"labels":["api"]}"#),
            API,
        ),
        Row(
            "POST",
            "/api/v1/conversations/{conversation}/typing",
            Json("{}"),
            [401, 204, 204],
        ),
        Row("GET", "/api/v1/contacts/{contact}", None, API),
        Row("GET", "/api/v1/search?q=order", None, API),
        Row(
            "POST",
            "/api/v1/contacts/{contact}/merge",
            Json(r#"{"absorb":"{random}"}"#),
            [401, 404, 404],
        ),
        Row(
            "POST",
            "/api/v1/contact-merges/{random}/undo",
            Json("{}"),
            [401, 404, 404],
        ),
        Row(
            "POST",
            "/api/v1/attachments?filename=note-{n}.txt",
            Json("hello"),
            [401, 201, 201],
        ),
        Row("GET", "/api/v1/attachments/{upload}", None, API),
        // Channels and dead letters: admins only.
        Row("GET", "/api/v1/channel-kinds", None, ADMIN_API),
        Row("GET", "/api/v1/channels", None, ADMIN_API),
        Row(
            "POST",
            "/api/v1/channels",
            Json(r#"{"kind":"webhook","name":"R{n}","config":{}}"#),
            [401, 403, 201],
        ),
        Row("GET", "/api/v1/channels/{channel}", None, ADMIN_API),
        Row(
            "PATCH",
            "/api/v1/channels/{channel}",
            Json(r#"{"name":"Renamed"}"#),
            ADMIN_API,
        ),
        Row(
            "POST",
            "/api/v1/channels/{channel}/test",
            Json("{}"),
            ADMIN_API,
        ),
        Row("GET", "/api/v1/channels/{channel}/health", None, ADMIN_API),
        Row("DELETE", "/api/v1/channels/{spare}", None, [401, 403, 204]),
        Row("GET", "/api/v1/dead-letters", None, ADMIN_API),
        Row(
            "POST",
            "/api/v1/dead-letters/{random}/replay",
            Json("{}"),
            [401, 403, 404],
        ),
        Row(
            "POST",
            "/api/v1/dead-letters/{random}/discard",
            Json("{}"),
            [401, 403, 404],
        ),
        // Reports for every agent; business hours read by all, changed by admins.
        Row("GET", "/reports", None, PAGE),
        Row(
            "GET",
            "/reports?metric=nrt&group_by=agent&hours=business",
            None,
            PAGE,
        ),
        Row("GET", "/api/v1/reports/response-times", None, API),
        Row("GET", "/api/v1/reports/volume?format=csv", None, API),
        Row("GET", "/api/v1/business-hours", None, API),
        Row(
            "PUT",
            "/api/v1/business-hours",
            Json(r#"{"schedule":null}"#),
            [401, 403, 201],
        ),
        Row(
            "GET",
            "/api/v1/channels/{channel}/business-hours",
            None,
            API,
        ),
        Row(
            "PUT",
            "/api/v1/channels/{channel}/business-hours",
            Json(r#"{"schedule":null}"#),
            [401, 403, 201],
        ),
        Row("GET", "/api/v1/sla-policies", None, API),
        Row(
            "POST",
            "/api/v1/sla-policies",
            Json(r#"{"name":"R{n}","first_reply_minutes":60}"#),
            [401, 403, 201],
        ),
        Row(
            "DELETE",
            "/api/v1/sla-policies/{random}",
            None,
            [401, 403, 404],
        ),
        Row("GET", "/inbox?sort=due", None, PAGE),
        Row("GET", "/api/v1/channels/{channel}/csat", None, ADMIN_API),
        Row(
            "PUT",
            "/api/v1/channels/{channel}/csat",
            Json(r#"{"enabled":false}"#),
            ADMIN_API,
        ),
        Row("GET", "/api/v1/reports/csat?group_by=week", None, API),
        // The customers' survey pages: public, the link's token is the authority.
        Row("GET", "/survey/{random}", None, [404, 404, 404]),
        Row(
            "POST",
            "/survey/{random}",
            Form("rating=5"),
            [404, 404, 404],
        ),
        // Search, contacts, canned replies.
        Row("GET", "/search?q=order", None, PAGE),
        Row("GET", "/contacts/{contact}", None, PAGE),
        // A bad contact id re-renders the page with the error.
        Row(
            "POST",
            "/contacts/{contact}/merge",
            Form("absorb=not-a-contact"),
            [303, 400, 400],
        ),
        Row(
            "POST",
            "/contacts/merges/{random}/undo",
            Form(""),
            [303, 404, 404],
        ),
        Row("GET", "/canned", None, PAGE),
        Row(
            "POST",
            "/canned",
            Form("shortcut=s{n}&title=T&body=B"),
            [303, 303, 303],
        ),
        Row("GET", "/canned.json", None, PAGE),
        Row("POST", "/canned/{random}/delete", Form(""), [303, 404, 404]),
        // Signing out: with a session it redirects to the sign-in page.
        Row("POST", "/logout", Form(""), [303, 303, 303]),
    ]
}

/// Ids the table's placeholders stand for.
struct Fixture {
    values: Vec<(&'static str, String)>,
}

impl Fixture {
    fn path(&self, template: &str, n: usize) -> String {
        let mut path = template
            .replace("{n}", &n.to_string())
            .replace("{random}", &uuid::Uuid::now_v7().to_string());
        for (key, value) in &self.values {
            path = path.replace(&format!("{{{key}}}"), value);
        }
        path
    }
}

impl Fixture {
    /// The body with its placeholders filled (leaked: a test's handful of small strings).
    fn body(&self, body: Body, n: usize) -> Body {
        match body {
            Body::None => Body::None,
            Body::Form(f) => Body::Form(Box::leak(self.path(f, n).into_boxed_str())),
            Body::Json(j) => Body::Json(Box::leak(self.path(j, n).into_boxed_str())),
        }
    }
}

async fn fixture(app: &TestApp) -> Fixture {
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let spare = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    app.customer_says(&channel, "c-1", "u-1", "Hello, my order is late")
        .await;
    let conversation = inbox_e2e::wait_for(
        std::time::Duration::from_secs(10),
        "the conversation",
        async || app.conversations().await.into_iter().next(),
    )
    .await;
    let conversation_id = str_of(&conversation, "id").to_owned();
    let messages = app.messages(&conversation_id).await;
    let message_id = str_of(&messages[0], "id").to_owned();
    let contact_id = str_of(&conversation, "contact_id").to_owned();
    // A message with HTML, for the email frame.
    let mut html_message = inbox_e2e::webhook_message("c-2", "u-1", "rich");
    html_message["html"] = "<p>Hello <b>there</b></p>".into();
    let response = app
        .post_webhook(channel.id, &channel.secret, &html_message)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let html_message_id = inbox_e2e::wait_for(
        std::time::Duration::from_secs(10),
        "the HTML message",
        async || {
            app.messages(&conversation_id)
                .await
                .into_iter()
                .find(|m| m["html"].is_string())
                .map(|m| str_of(&m, "id").to_owned())
        },
    )
    .await;
    let (target, _) = app
        .create_agent("target@example.com", "Target", Role::Agent)
        .await;
    let token = app
        .store
        .api_tokens(Some(target.id))
        .await
        .unwrap()
        .remove(0)
        .id;
    let upload: serde_json::Value = app
        .client
        .post(app.url("/api/v1/attachments?filename=fixture.txt"))
        .bearer_auth(&app.token)
        .body("fixture")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = upload["blob"].as_str().unwrap().to_owned();
    Fixture {
        values: vec![
            ("upload", upload),
            ("channel", channel.id.to_string()),
            ("spare", spare.id.to_string()),
            ("conversation", conversation_id),
            ("message", message_id),
            ("html_message", html_message_id),
            ("contact", contact_id),
            ("target", target.id.to_string()),
            ("token", token),
        ],
    }
}

/// A fresh session (cookie value, CSRF token) for an agent of this role.
async fn session(app: &TestApp, role: Role) -> (String, String) {
    let agent = match role {
        Role::Admin => app.admin.clone(),
        Role::Agent => match app.store.agent_by_email("agent@example.com").await.unwrap() {
            Some(agent) => agent,
            None => app.create_agent("agent@example.com", "Agent", role).await.0,
        },
    };
    let (token, session) = app
        .store
        .create_session(agent.id, chrono::Duration::hours(1))
        .await
        .unwrap();
    (token, session.csrf_token)
}

async fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Body,
    session: Option<&(String, String)>,
    with_csrf: bool,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.request(method.parse().unwrap(), app.url(path));
    if let Some((cookie, csrf)) = session {
        request = request.header(COOKIE, format!("inbox_session={cookie}"));
        // JSON and body-less state changes carry the token in the header; forms in `_csrf`.
        if with_csrf
            && (matches!(body, Body::Json(_)) || (method != "GET" && matches!(body, Body::None)))
        {
            request = request.header("X-CSRF-Token", csrf);
        }
    }
    match body {
        Body::None => {}
        Body::Json(json) => {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(json.to_owned());
        }
        Body::Form(form) => {
            let mut form = form.to_owned();
            if let (Some((_, csrf)), true) = (session, with_csrf) {
                if !form.is_empty() {
                    form.push('&');
                }
                form.push_str(&format!("_csrf={csrf}"));
            }
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
        }
    }
    request.send().await.unwrap()
}

both_backends!(every_route_by_role);
async fn every_route_by_role(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fixture = fixture(&app).await;
    let mut failures = Vec::new();
    for (n, Row(method, template, body, expected)) in table().into_iter().enumerate() {
        for (who, want) in [Who::Anonymous, Who::Agent, Who::Admin]
            .into_iter()
            .zip(expected)
        {
            let session = match who {
                Who::Anonymous => None,
                Who::Agent => Some(session(&app, Role::Agent).await),
                Who::Admin => Some(session(&app, Role::Admin).await),
            };
            let path = fixture.path(template, n * 10 + who as usize);
            let body = fixture.body(body, n * 10 + who as usize);
            let response = request(&app, method, &path, body, session.as_ref(), true).await;
            let got = response.status().as_u16();
            if got != want {
                failures.push(format!(
                    "{method} {template} as {who:?}: {got}, expected {want}"
                ));
            }
            // A redirect says where: anonymous callers to sign-in, the others to a page of ours.
            if got == 303 {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_default();
                let fine = match who {
                    Who::Anonymous => {
                        location.starts_with("/login") || (template == "/" && location == "/inbox")
                    }
                    _ => location.starts_with('/') && !location.starts_with("//"),
                };
                if !fine {
                    failures.push(format!(
                        "{method} {template} as {who:?}: 303 to {location:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

/// Does the table's `path` (a concrete path, maybe with a query) hit the router's `pattern`?
fn hits(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), _) if w.starts_with("{*") => return true,
            (Some(w), Some(_)) if w.starts_with('{') => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The matrix covers what the router serves: a route added without a row fails here, and a row
/// whose route is gone fails too.
#[test]
fn every_served_route_has_a_row() {
    let served = inbox_app::app::served_routes(&inbox_connectors::Registry::with_builtin());
    let rows = table();
    let mut missing = Vec::new();
    for route in &served {
        let covered = rows.iter().any(|Row(method, path, _, _)| {
            *method == route.method.as_str() && hits(route.path, path)
        });
        if !covered {
            missing.push(format!("{} {}", route.method, route.path));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix:\n{}",
        missing.join("\n")
    );
    let stale: Vec<String> = rows
        .iter()
        .filter(|Row(method, path, _, _)| {
            !served
                .iter()
                .any(|route| *method == route.method.as_str() && hits(route.path, path))
        })
        .map(|Row(method, path, _, _)| format!("{method} {path}"))
        .collect();
    assert!(
        stale.is_empty(),
        "rows no route serves:\n{}",
        stale.join("\n")
    );
}

// What the admin page's channel buttons do, and that an agent's click changes nothing.
both_backends!(channel_buttons_change_state_for_admins_only);
async fn channel_buttons_change_state_for_admins_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let agent = session(&app, Role::Agent).await;
    let admin = session(&app, Role::Admin).await;
    let click = async |who: &(String, String), action: &str| {
        let path = format!("/admin/channels/{}/{action}", channel.id);
        request(&app, "POST", &path, Body::Form(""), Some(who), true).await
    };
    let state = async || app.store.channel(channel.id).await.unwrap().unwrap();
    assert_eq!(click(&agent, "pause").await.status(), StatusCode::FORBIDDEN);
    assert!(state().await.enabled, "an agent's click changed nothing");
    for (action, enabled, deleted) in [
        ("pause", false, false),
        ("resume", true, false),
        ("delete", true, true),
    ] {
        let response = click(&admin, action).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{action}");
        assert_eq!(
            response.headers()["location"],
            "/admin/channels",
            "{action}"
        );
        let now = state().await;
        assert_eq!(
            (now.enabled, now.deleted_at.is_some()),
            (enabled, deleted),
            "{action}"
        );
    }
    assert_eq!(
        click(&admin, "explode").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

both_backends!(state_changes_without_csrf_token_are_refused);
async fn state_changes_without_csrf_token_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fixture = fixture(&app).await;
    let mut failures = Vec::new();
    for (n, Row(method, template, body, _)) in table().into_iter().enumerate() {
        // Signed webhooks and survey answers are authorised by their signature or link token,
        // never by a session: no CSRF token to check.
        if method == "GET" || template.starts_with("/hooks/") || template.starts_with("/survey/") {
            continue;
        }
        for role in [Role::Agent, Role::Admin] {
            let session = session(&app, role).await;
            let path = fixture.path(template, 1000 + n);
            let body = fixture.body(body, 1000 + n);
            let response = request(&app, method, &path, body, Some(&session), false).await;
            if response.status() != StatusCode::FORBIDDEN {
                failures.push(format!(
                    "{method} {template} as {role:?} without CSRF token: {}",
                    response.status()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A wrong token is refused like a missing one; the API token needs none.
    let session = session(&app, Role::Agent).await;
    let wrong = (session.0.clone(), "0".repeat(session.1.len()));
    let conversation = fixture.path("/api/v1/conversations/{conversation}", 0);
    let response = request(
        &app,
        "PATCH",
        &conversation,
        Body::Json(r#"{"labels":["x"]}"#),
        Some(&wrong),
        true,
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .api_patch(&conversation, &serde_json::json!({"labels": ["x"]}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

both_backends!(sign_in_sets_a_locked_down_cookie_and_limits_guessing);
async fn sign_in_sets_a_locked_down_cookie_and_limits_guessing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hash = inbox_core::passwords::hash("correct horse battery").unwrap();
    app.store.set_password(app.admin.id, &hash).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login_form = async || {
        let page = client.get(app.url("/login")).send().await.unwrap();
        let cookie = page
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let token = cookie.split_once('=').unwrap().1.to_owned();
        (cookie, token)
    };
    let sign_in = async |password: &str| {
        let (cookie, token) = login_form().await;
        client
            .post(app.url("/login"))
            .header(COOKIE, cookie)
            .form(&[
                ("email", "admin@example.com"),
                ("password", password),
                ("_csrf", &token),
                ("next", "/inbox"),
            ])
            .send()
            .await
            .unwrap()
    };
    // Without the double-submit token the form is refused.
    let response = client
        .post(app.url("/login"))
        .form(&[
            ("email", "admin@example.com"),
            ("password", "correct horse battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = sign_in("correct horse battery").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/inbox");
    let session_cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("inbox_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    // Plain http here: not Secure (public URLs with https get Secure).
    assert!(!session_cookie.contains("Secure"), "{session_cookie}");

    // Guessing: five wrong passwords, then even the right one waits.
    for _ in 0..5 {
        assert_eq!(sign_in("wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    let response = sign_in("correct horse battery").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = response.text().await.unwrap();
    assert!(body.contains("Too many failed attempts"), "{body}");
    app.stop().await;
}

both_backends!(anonymous_visitors_are_sent_to_sign_in_and_back);
async fn anonymous_visitors_are_sent_to_sign_in_and_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fixture = fixture(&app).await;
    let page = fixture.path("/conversations/{conversation}?assignee=me", 0);
    let response = request(&app, "GET", &page, Body::None, None, false).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let expected = format!(
        "/login?{}",
        serde_urlencoded::to_string([("next", page.as_str())]).unwrap()
    );
    assert_eq!(response.headers()["location"], expected.as_str());
    // A form post cannot be replayed by a link: back to the inbox instead.
    let reply = fixture.path("/conversations/{conversation}/reply", 0);
    let response = request(&app, "POST", &reply, Body::Form("text=hi"), None, false).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?next=%2Finbox");
    app.stop().await;
}
