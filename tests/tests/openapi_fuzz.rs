//! Schemathesis (PyPI) against the API's own OpenAPI document: the whole app on SQLite and on
//! PostgreSQL, seeded with real data (a webhook channel, conversations and messages from
//! customers, a note, replies, two uploaded files, a contact merge and an undone one), then
//! `schemathesis run` on `/api/v1/openapi.json` with the admin's Bearer token and a bounded number
//! of examples per operation. Its config file binds the path ids (and a few body and query fields)
//! to the seeded ids with some probability, so the contact, conversation, merge and attachment
//! operations are exercised on things that exist as well as on generated ids. The test fails,
//! printing Schemathesis's output, on any 5xx, on a status code the document does not list, or on
//! a response whose content type or body does not match it.
//!
//! The CLI is `INBOX_SCHEMATHESIS` (a command line, e.g. `python3 -m schemathesis.cli`), else
//! `schemathesis` on `PATH`, else `python3 -m schemathesis.cli`; `tests/run` installs the pinned
//! version. `INBOX_SCHEMATHESIS_MAX_EXAMPLES` and `INBOX_SCHEMATHESIS_SEED` override the examples
//! per operation and the random seed (Schemathesis prints the seed it used);
//! `INBOX_SCHEMATHESIS_ARGS` adds arguments (e.g. `--report har --report-dir /tmp/st`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use inbox_e2e::{Backend, Behaviour, Receiver, TestApp, both_backends, json_of, str_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The version `tests/run` installs (keep the two in step).
const PINNED: &str = "4.32.5";
/// Test cases per operation: both backends together take about two minutes on 2 cores.
const MAX_EXAMPLES: u32 = 100;
/// A backstop: Schemathesis is bounded by its examples per operation.
const TIMEOUT: Duration = Duration::from_secs(600);
/// The checks that must pass on every response.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// The Schemathesis command line: `INBOX_SCHEMATHESIS`, `schemathesis` on PATH, or the module.
fn schemathesis_command() -> Vec<String> {
    if let Some(command) = std::env::var("INBOX_SCHEMATHESIS")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return command.split_whitespace().map(str::to_owned).collect();
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("schemathesis").is_file())
    });
    if on_path {
        vec!["schemathesis".to_owned()]
    } else {
        ["python3", "-m", "schemathesis.cli"]
            .map(str::to_owned)
            .to_vec()
    }
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={raw} is not a number")),
    )
}

/// The ids of the seeded data.
struct Seeded {
    conversations: Vec<String>,
    contacts: Vec<String>,
    merges: Vec<String>,
    uploads: Vec<String>,
    channel: String,
    admin: String,
}

/// `POST /api/v1/attachments?filename=…` as the admin; the reference it answers.
async fn upload(app: &TestApp, filename: &str, content_type: &str, bytes: &[u8]) -> Value {
    let response = app
        .client
        .post(app.url("/api/v1/attachments"))
        .query(&[("filename", filename)])
        .bearer_auth(&app.token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("POST /api/v1/attachments");
    json_of(response, StatusCode::CREATED, "upload").await
}

/// Customers write through the signed webhook; agents note, reply (with a file) and merge.
async fn seed(app: &TestApp, receiver: &Receiver) -> Seeded {
    let channel = app.create_webhook_channel(&receiver.url).await;
    let customers: [(&str, &[&str]); 4] = [
        (
            "u-ada",
            &["Where is my order?", "It was due on Monday.", "Any news?"],
        ),
        (
            "u-grace",
            &["The invoice has the wrong address.", "Ünïcödé too: 注文"],
        ),
        ("u-linus", &["Do you ship to Finland?"]),
        ("u-kat", &["Same person as u-linus, other device."]),
    ];
    let mut n = 0;
    for (handle, texts) in customers {
        for text in texts {
            n += 1;
            app.customer_says(&channel, &format!("m-{n}"), handle, text)
                .await;
        }
    }
    let conversations = app.conversations().await;
    assert_eq!(conversations.len(), customers.len(), "{conversations:#?}");
    let of = |handle: &str| {
        conversations
            .iter()
            .find(|c| c["contact_handle"] == handle)
            .unwrap_or_else(|| panic!("a conversation of {handle}"))
    };
    let (ada, grace) = (of("u-ada"), of("u-grace"));
    let ada_id = str_of(ada, "id");
    app.agent_writes(ada_id, "Checking with the warehouse.", true)
        .await;
    app.agent_writes(ada_id, "It ships today, sorry for the wait!", false)
        .await;

    let reference = upload(app, "receipt.txt", "text/plain", b"Order #1001: 2 items\n").await;
    let pdf = upload(
        app,
        "Rechnung März.pdf",
        "application/pdf",
        b"%PDF-1.7\n%%EOF\n",
    )
    .await;
    let path = format!("/api/v1/conversations/{}/messages", str_of(grace, "id"));
    let reply = app
        .api_post(
            &path,
            &json!({ "text": "Here is the corrected invoice.", "attachments": [reference, pdf] }),
        )
        .await;
    json_of(reply, StatusCode::CREATED, &format!("POST {path}")).await;

    // Kat is Linus on another device: one merge stays, and one (Grace into Ada) is undone.
    let merge = async |keep: &Value, absorb: &Value| {
        let path = format!("/api/v1/contacts/{}/merge", str_of(keep, "contact_id"));
        let response = app
            .api_post(&path, &json!({ "absorb": str_of(absorb, "contact_id") }))
            .await;
        let record = json_of(response, StatusCode::CREATED, &format!("POST {path}")).await;
        str_of(&record, "id").to_owned()
    };
    let kept = merge(of("u-linus"), of("u-kat")).await;
    let undone = merge(ada, grace).await;
    let path = format!("/api/v1/contact-merges/{undone}/undo");
    json_of(
        app.api_post(&path, &json!({})).await,
        StatusCode::OK,
        &format!("POST {path}"),
    )
    .await;

    Seeded {
        conversations: conversations
            .iter()
            .map(|c| str_of(c, "id").to_owned())
            .collect(),
        contacts: conversations
            .iter()
            .map(|c| str_of(c, "contact_id").to_owned())
            .collect(),
        merges: vec![kept, undone],
        uploads: [&reference, &pdf]
            .map(|r| str_of(r, "blob").to_owned())
            .to_vec(),
        channel: channel.id.to_string(),
        admin: app.admin.id.to_string(),
    }
}

/// What Schemathesis once found answering 500 (a NUL in search text, label filters and cursors;
/// PostgreSQL refuses NUL in text): checked on every run, whatever the fuzzer draws.
async fn nul_in_queries_is_no_server_error(app: &TestApp, seeded: &Seeded) {
    let contact = &seeded.contacts[0];
    for (path, expected) in [
        ("/api/v1/search?q=a%00b".to_owned(), StatusCode::OK),
        ("/api/v1/conversations?q=a%00b".to_owned(), StatusCode::OK),
        (
            "/api/v1/conversations?label=a%00b".to_owned(),
            StatusCode::OK,
        ),
        (
            "/api/v1/conversations?cursor=5_a%00b".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/search?cursor=5_%00".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/contacts/{contact}?before=5_%00"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        json_of(app.api_get(&path).await, expected, &format!("GET {path}")).await;
    }
}

/// A TOML array of strings (JSON string syntax is valid TOML for these ASCII values).
fn toml_strings(values: &[String]) -> String {
    serde_json::to_string(values).unwrap()
}

/// `schemathesis.toml`: the seeded ids as dictionaries, bound to the parameters that take them.
fn config_file(seeded: &Seeded) -> String {
    let agents = [seeded.admin.clone(), "me".to_owned()];
    let mut list_assignees = agents.to_vec();
    list_assignees.extend(["none", "all"].map(str::to_owned));
    let dictionaries = [
        ("conversations", toml_strings(&seeded.conversations)),
        ("contacts", toml_strings(&seeded.contacts)),
        ("merges", toml_strings(&seeded.merges)),
        ("uploads", toml_strings(&seeded.uploads)),
        (
            "channels",
            toml_strings(std::slice::from_ref(&seeded.channel)),
        ),
        ("agents", toml_strings(&agents)),
        ("list_assignees", toml_strings(&list_assignees)),
    ]
    .map(|(name, values)| format!("[dictionaries.{name}]\nvalues = {values}\n"))
    .concat();
    // One entry per operation, named by its label (`include-method` and `include-path` in one
    // entry would match either): which seeded values it takes.
    let operations = [
        (
            "GET",
            "/api/v1/conversations",
            r#""query.channel" = { dictionary = "channels", probability = 0.5 }, "query.assignee" = { dictionary = "list_assignees", probability = 0.5 }"#,
        ),
        (
            "GET",
            "/api/v1/conversations/{id}",
            r#""path.id" = { dictionary = "conversations", probability = 0.7 }"#,
        ),
        (
            "PATCH",
            "/api/v1/conversations/{id}",
            r#""path.id" = { dictionary = "conversations", probability = 0.7 }, "body.assignee" = { dictionary = "agents", probability = 0.5 }"#,
        ),
        (
            "GET",
            "/api/v1/conversations/{id}/messages",
            r#""path.id" = { dictionary = "conversations", probability = 0.7 }"#,
        ),
        (
            "POST",
            "/api/v1/conversations/{id}/messages",
            r#""path.id" = { dictionary = "conversations", probability = 0.7 }, "body.attachments[*].blob" = { dictionary = "uploads", probability = 0.7 }"#,
        ),
        (
            "GET",
            "/api/v1/conversations/{id}/events",
            r#""path.id" = { dictionary = "conversations", probability = 0.7 }"#,
        ),
        (
            "GET",
            "/api/v1/contacts/{id}",
            r#""path.id" = { dictionary = "contacts", probability = 0.7 }"#,
        ),
        (
            "POST",
            "/api/v1/contacts/{id}/merge",
            r#""path.id" = { dictionary = "contacts", probability = 0.7 }, "body.absorb" = { dictionary = "contacts", probability = 0.7 }"#,
        ),
        (
            "POST",
            "/api/v1/contact-merges/{id}/undo",
            r#""path.id" = { dictionary = "merges", probability = 0.7 }"#,
        ),
        (
            "GET",
            "/api/v1/attachments/{key}",
            r#""path.key" = { dictionary = "uploads", probability = 0.7 }"#,
        ),
        (
            "GET",
            "/api/v1/channels/{id}",
            r#""path.id" = { dictionary = "channels", probability = 0.7 }"#,
        ),
        (
            "PATCH",
            "/api/v1/channels/{id}",
            r#""path.id" = { dictionary = "channels", probability = 0.7 }"#,
        ),
        (
            "POST",
            "/api/v1/channels/{id}/test",
            r#""path.id" = { dictionary = "channels", probability = 0.7 }"#,
        ),
        (
            "GET",
            "/api/v1/channels/{id}/health",
            r#""path.id" = { dictionary = "channels", probability = 0.7 }"#,
        ),
        (
            "GET",
            "/api/v1/dead-letters",
            r#""query.channel" = { dictionary = "channels", probability = 0.5 }"#,
        ),
    ]
    .map(|(method, path, parameters)| {
        format!(
            "[[operations]]\ninclude-name = \"{method} {path}\"\nparameters = {{ {parameters} }}\n"
        )
    })
    .concat();
    format!("{dictionaries}\n{operations}")
}

both_backends!(the_api_answers_as_its_document_says);

async fn the_api_answers_as_its_document_says(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::spawn(Behaviour::Accept).await;
    let seeded = seed(&app, &receiver).await;
    nul_in_queries_is_no_server_error(&app, &seeded).await;

    let dir = tempfile::Builder::new()
        .prefix("inbox-schemathesis-")
        .tempdir()
        .expect("a temporary directory");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, config_file(&seeded)).expect("write schemathesis.toml");

    let max_examples = env_number("INBOX_SCHEMATHESIS_MAX_EXAMPLES").unwrap_or(MAX_EXAMPLES);
    let seed: Option<u64> = env_number("INBOX_SCHEMATHESIS_SEED");
    let command = schemathesis_command();
    let mut args: Vec<String> = vec![
        "--config-file".into(),
        config.display().to_string(),
        "run".into(),
        app.url("/api/v1/openapi.json"),
        "--header".into(),
        format!("Authorization: Bearer {}", app.token),
        "--checks".into(),
        CHECKS.into(),
        "--max-examples".into(),
        max_examples.to_string(),
        // One worker: Python 3.11's `ast.parse`, which Hypothesis calls to describe strategies,
        // is not thread-safe ("AST constructor recursion depth mismatch").
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "30".into(),
        "--generation-database".into(),
        "none".into(),
        "--no-color".into(),
    ];
    if let Some(seed) = seed {
        args.extend(["--seed".into(), seed.to_string()]);
    }
    if let Ok(extra) = std::env::var("INBOX_SCHEMATHESIS_ARGS") {
        args.extend(extra.split_whitespace().map(str::to_owned));
    }
    let started = Instant::now();
    let child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .args(&args)
        .current_dir(dir.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}): install Schemathesis (`python3 -m pip install \
                 schemathesis=={PINNED}`; tests/run does) or set INBOX_SCHEMATHESIS to its command",
                command.join(" ")
            )
        });
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("Schemathesis did not finish within {TIMEOUT:?}"))
        .expect("wait for Schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Schemathesis failed ({}) on {backend:?} after {:?}: `{} {}`\n--- config ---\n{}\n--- stdout ---\n{stdout}\n\
         --- stderr ---\n{stderr}",
        output.status,
        started.elapsed(),
        command.join(" "),
        args.join(" ").replace(&app.token, "<token>"),
        config_file(&seeded),
    );
    println!("{stdout}");
    println!(
        "Schemathesis passed on {backend:?} in {:?}",
        started.elapsed()
    );

    // The app still serves the seeded conversations.
    for id in &seeded.conversations {
        app.conversation(id).await;
    }
    app.stop().await;
}
