//! The web inbox in a real browser: Debian's Chromium (`/usr/bin/chromium`, or `INBOX_CHROMIUM`)
//! driven by `playwright-core` from the Node scripts in `tests/browser/`, against the whole
//! application started in-process on both backends.
//!
//! Each test signs the admin in with a password, creates a webhook channel whose replies go to a
//! local [`Receiver`], and runs one script with the app's URL, the credentials and the channel
//! (id, name, secret) in its environment; the script posts the signed webhooks itself while the
//! page is open. The test passes when the script exits 0, and then checks through the API and
//! the receiver that what the browser did really happened.
//!
//! Nothing is skipped: a missing `node`, `tests/browser/node_modules` (`npm ci` there) or Chromium
//! fails the test and says what to install (`tests/run` installs Chromium and runs `npm ci`).
//! The main flow writes screenshots into `INBOX_SCREENSHOTS_DIR`, by default
//! `$CARGO_TARGET_DIR/screenshots`.

// clippy.toml allows these in tests, but clippy only counts `#[test]` functions as tests, not the
// scenario functions they call.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use inbox_core::envelope::ChannelKind;
use inbox_core::model::Channel;
use inbox_core::passwords;
use inbox_e2e::{Backend, Behaviour, Receiver, TestApp, both_backends};
use serde_json::{Value, json};

both_backends!(
    agent_works_a_conversation_on_desktop_and_phone,
    xss_corpus_runs_no_script_and_shows_text_escaped,
    a_resolved_customer_answers_the_survey,
    visitors_chat_live_from_another_site,
);

/// The admin's password for the sign-in form.
const PASSWORD: &str = "correct horse battery staple";

/// A backstop: each script also gives up on its own, sooner.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn non_empty_var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Where the main flow writes its screenshots.
fn screenshots_dir() -> PathBuf {
    if let Some(dir) = non_empty_var("INBOX_SCREENSHOTS_DIR") {
        return dir.into();
    }
    if let Some(target) = non_empty_var("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("screenshots");
    }
    // The test binary is <target>/debug/deps/web_browser-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("screenshots")))
        .unwrap_or_else(|| browser_dir().join("screenshots"))
}

/// An app whose admin can sign in with [`PASSWORD`], and a webhook channel delivering to a receiver.
async fn setup(backend: Backend) -> (TestApp, Receiver, Channel) {
    let app = TestApp::spawn(backend).await;
    let hash = passwords::hash(PASSWORD).expect("hash the password");
    app.store
        .set_password(app.admin.id, &hash)
        .await
        .expect("set the admin's password");
    let receiver = Receiver::spawn(Behaviour::Accept).await;
    // Named like a real one: the name shows in the pages (and the screenshots).
    let channel = app
        .store
        .create_channel(
            ChannelKind::WEBHOOK,
            "Shop chat",
            json!({ "outbound_url": receiver.url }),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the webhook channel");
    (app, receiver, channel)
}

/// Runs `tests/browser/<script>` against the app and returns its output; panics with the
/// script's stdout and stderr when it fails.
async fn run_script(app: &TestApp, channel: &Channel, script: &str) -> String {
    run_script_with(app, channel, script, &[]).await
}

/// [`run_script`] with more variables in the script's environment.
async fn run_script_with(
    app: &TestApp,
    channel: &Channel,
    script: &str,
    vars: &[(&str, String)],
) -> String {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `npm ci` in {} (tests/run does)",
        dir.display()
    );
    let chromium = non_empty_var("INBOX_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "Chromium is missing at {}: install Debian's package (`apt-get install chromium`; tests/run \
         does) or set INBOX_CHROMIUM",
        Path::new(&chromium).display()
    );
    let node = non_empty_var("INBOX_NODE").unwrap_or_else(|| "node".into());
    let mut command = tokio::process::Command::new(&node);
    command.envs(vars.iter().map(|(k, v)| (k, v)));
    let child = command
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("INBOX_URL", &app.address)
        .env("INBOX_EMAIL", &app.admin.email)
        .env("INBOX_PASSWORD", PASSWORD)
        .env("INBOX_AGENT_NAME", &app.admin.name)
        .env("INBOX_CHANNEL_ID", channel.id.to_string())
        .env("INBOX_CHANNEL_NAME", &channel.name)
        .env("INBOX_CHANNEL_SECRET", &channel.secret)
        .env("INBOX_CHROMIUM", &chromium)
        .env("INBOX_SCREENSHOTS_DIR", screenshots_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` (Node.js 20 or later is needed for the browser tests; set \
                 INBOX_NODE to its path if it is not on PATH): {e}",
                Path::new(&node).display()
            )
        });
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("waiting for {script} failed: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}) on {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status,
        app.backend()
    );
    println!("{stdout}");
    stdout
}

/// The conversation of the customer with this webhook handle.
async fn conversation_of(app: &TestApp, handle: &str) -> Value {
    let page = app
        .get_json("/api/v1/conversations?status=all&limit=100")
        .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["contact_handle"] == handle)
        .cloned()
        .unwrap_or_else(|| panic!("a conversation with {handle}: {page:#}"))
}

// The whole flow in the browser (tests/browser/main_flow.mjs), then what it left behind.
async fn agent_works_a_conversation_on_desktop_and_phone(backend: Backend) {
    let (app, receiver, channel) = setup(backend).await;

    run_script(&app, &channel, "main_flow.mjs").await;

    for handle in ["grace", "katherine"] {
        let conversation = conversation_of(&app, handle).await;
        assert_eq!(
            conversation["status"], "resolved",
            "{handle}: {conversation:#}"
        );
        assert_eq!(
            conversation["assignee_id"],
            app.admin.id.to_string(),
            "{handle}"
        );
        assert_eq!(
            conversation["labels"],
            json!(["billing", "vip"]),
            "{handle}"
        );
        assert_eq!(conversation["message_count"], 5, "{handle}");
    }
    // Both replies of each flow went out once, signed; the notes never did. The second reply of
    // each flow carries the file attached in the browser.
    let mut delivered: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| {
            assert!(r.header("x-inbox-signature").is_some(), "signed: {r:?}");
            let body = r.json();
            let files: Vec<&str> = body["attachments"]
                .as_array()
                .expect("attachments")
                .iter()
                .map(|a| a["name"].as_str().expect("name"))
                .collect();
            let text = body["body"]["text"].as_str().expect("text").to_owned();
            let with_file = text.starts_with("You will") || text.starts_with("Anything else");
            assert_eq!(
                files,
                if with_file {
                    vec!["receipt.txt"]
                } else {
                    vec![]
                },
                "{text}"
            );
            text
        })
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            "Anything else I can do for you?",
            "Done: order #2001 now goes to 12 Orbit Lane.",
            "Sorry about that, Grace! A replacement ships today.",
            "You will get the tracking number by email.",
        ],
        "the replies typed in the browser, each delivered once"
    );
}

// tests/browser/xss_corpus.mjs: hostile text, HTML and names, opened in the browser.
async fn xss_corpus_runs_no_script_and_shows_text_escaped(backend: Backend) {
    let (app, receiver, channel) = setup(backend).await;

    let stdout = run_script(&app, &channel, "xss_corpus.mjs").await;

    // The script opened every conversation it created.
    let page = app
        .get_json("/api/v1/conversations?status=all&limit=100")
        .await;
    let created = page["items"].as_array().expect("items").len();
    assert!(created >= 10, "the corpus has many cases: {created}");
    let opened = stdout.lines().filter(|l| l.starts_with("opened ")).count();
    assert_eq!(opened, created, "every conversation was opened:\n{stdout}");
    assert!(
        receiver.requests().is_empty(),
        "nothing was sent to customers"
    );
}

// tests/browser/csat_flow.mjs: resolve → survey delivered → answered in a browser → shown.
async fn a_resolved_customer_answers_the_survey(backend: Backend) {
    let (app, receiver, channel) = setup(backend).await;
    app.store
        .set_csat_settings(
            channel.id,
            inbox_core::store::CsatSettings {
                enabled: true,
                expiry_hours: 24,
            },
        )
        .await
        .expect("turn CSAT on");

    let stdout = run_script(&app, &channel, "csat_flow.mjs").await;
    assert!(stdout.contains("answer shown"), "{stdout}");

    // One survey message went to the customer, signed, on the channel.
    let surveys: Vec<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| {
            assert!(r.header("x-inbox-signature").is_some(), "signed: {r:?}");
            let text = r.json()["body"]["text"].as_str()?.to_owned();
            text.contains("/survey/").then_some(text)
        })
        .collect();
    assert_eq!(surveys.len(), 1, "{surveys:?}");
    let report = app.get_json("/api/v1/reports/csat?group_by=channel").await;
    assert_eq!(report["groups"][0]["responses"], 1, "{report:#}");
}

/// The shop's site for the web chat: a page embedding the snippet on `site` (an origin of its
/// own), with hostile CSS the widget must not care about; `?user=good|bad` adds a signed-in
/// user's identity with a right or a wrong hash, as the site's server would.
async fn serve_shop_site(listener: tokio::net::TcpListener, app: &TestApp, channel: &Channel) {
    let inbox = app.address.trim_end_matches('/').to_owned();
    let channel_id = channel.id;
    let secret = channel.secret.clone();
    let page = move |axum::extract::Query(query): axum::extract::Query<
        std::collections::HashMap<String, String>,
    >| {
        let inbox = inbox.clone();
        let secret = secret.clone();
        async move {
            let (id, email) = ("u-42", "ada@shop.example");
            let identity = match query.get("user").map(String::as_str) {
                Some(which) => {
                    let key = if which == "good" {
                        secret.as_str()
                    } else {
                        "not the secret"
                    };
                    let hash =
                        inbox_connectors::web_chat::visitor::identity_hash(key, id, Some(email));
                    format!(
                        r#" data-user-id="{id}" data-user-email="{email}" data-user-name="Ada Shopper" data-user-hash="{hash}""#
                    )
                }
                None => String::new(),
            };
            axum::response::Html(format!(
                r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Acme shop</title>
<style>button, textarea, ol, li {{ display: none !important; color: red !important; font-size: 40px !important; }}
body {{ font-size: 30px; }}</style></head>
<body><h1>Acme shop</h1>
<script src="{inbox}/widget.js" data-channel="{channel_id}"{identity} async></script></body></html>"#
            ))
        }
    };
    let router = axum::Router::new().route("/", axum::routing::get(page));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
}

// tests/browser/web_chat.mjs: the widget on another site, a visitor and an agent live.
async fn visitors_chat_live_from_another_site(backend: Backend) {
    let (app, _receiver, _webhook) = setup(backend).await;
    // The site listens first: the channel names its origin. The same port as `localhost` is
    // another origin, which the channel does not list.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the site");
    let port = listener.local_addr().expect("site address").port();
    let (site, other_site) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    );
    let channel = app
        .store
        .create_channel(
            inbox_connectors::web_chat::KIND,
            "Shop website",
            json!({"origins": [site], "uploads": true}),
            &inbox_connectors::webhook::new_secret(),
        )
        .await
        .expect("create the web chat channel");
    serve_shop_site(listener, &app, &channel).await;

    let stdout = run_script_with(
        &app,
        &channel,
        "web_chat.mjs",
        &[
            ("INBOX_SITE_URL", site.clone()),
            ("INBOX_OTHER_SITE_URL", other_site),
        ],
    )
    .await;
    assert!(stdout.contains("web chat flow passed"), "{stdout}");

    // What the browser did, as the inbox stored it.
    let page = app
        .get_json(&format!(
            "/api/v1/conversations?status=all&channel={}&limit=100",
            channel.id
        ))
        .await;
    let handles: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["contact_handle"].as_str())
        .collect();
    assert!(handles.contains(&"user:u-42"), "{handles:?}");
    assert_eq!(
        handles.len(),
        4,
        "the visitor, the proven user, the forged one, the corpus visitor: {handles:?}"
    );
    let user = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["contact_handle"] == "user:u-42")
        .expect("the proven user's conversation");
    let contact = app
        .get_json(&format!(
            "/api/v1/contacts/{}",
            str_of_value(user, "contact_id")
        ))
        .await;
    assert!(
        contact.to_string().contains("ada@shop.example"),
        "the proven email is the contact's: {contact:#}"
    );
}

fn str_of_value<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value:#}"))
}
