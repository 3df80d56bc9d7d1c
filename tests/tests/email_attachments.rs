//! Attachments on email replies, end to end against Dovecot and the SMTP server
//! (`tests/services/mail`): a file uploaded through the API rides on the agent's reply and arrives
//! in the customer's mailbox with its name and exact bytes; what the upload and reply endpoints
//! refuse, and why.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use inbox_core::envelope::ChannelKind;
use inbox_e2e::mail::MailServer;
use inbox_e2e::{Backend, TestApp, both_backends, json_of, str_of, wait_for};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mail_parser::{MessageParser, MimeHeaders};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(reply_carries_an_uploaded_file);

const WAIT: Duration = Duration::from_secs(30);
const FILE_NAME: &str = "Rechnung März 2024.pdf";

/// Bytes no text transformation leaves alone: every byte value, CR and LF alone and in pairs,
/// lines longer than SMTP allows, and no repeating pattern.
fn file_bytes() -> Vec<u8> {
    let mut bytes: Vec<u8> = b"%PDF-1.7\r\n".to_vec();
    bytes.extend(0..=255u8);
    bytes.extend(b"\r\n.\r\n\n\r.\n");
    let mut x: u32 = 0x2545_f491;
    for _ in 0..200_000 {
        // xorshift: deterministic noise.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push((x >> 24) as u8);
    }
    bytes
}

/// `POST /api/v1/attachments?filename=…` with the raw bytes, as the admin.
async fn upload(
    app: &TestApp,
    filename: Option<&str>,
    content_type: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/attachments"))
        .bearer_auth(&app.token)
        .header("content-type", content_type)
        .body(bytes);
    if let Some(filename) = filename {
        request = request.query(&[("filename", filename)]);
    }
    request.send().await.expect("POST /api/v1/attachments")
}

async fn reply_carries_an_uploaded_file(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    app.store
        .add_channel(inbox_core::store::NewChannel {
            kind: ChannelKind::EMAIL,
            name: ("support").into(),
            config: serde_json::to_value(server.support_config()).unwrap(),
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::MAIL,
        })
        .await
        .unwrap();

    // The customer writes.
    let mail = Message::builder()
        .from("Ada Customer <customer@example.test>".parse().unwrap())
        .to("support@example.test".parse().unwrap())
        .subject("Invoice please")
        .message_id(Some("<inv-1@customer.example.test>".into()))
        .body("Could you send me the invoice?".to_owned())
        .unwrap();
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp_port)
        .build()
        .send(mail)
        .await
        .expect("the SMTP server takes the customer's mail");
    let conversation = wait_for(WAIT, "the mail to become a conversation", async || {
        app.conversations().await.into_iter().next()
    })
    .await;
    let conversation_id = str_of(&conversation, "id").to_owned();

    // The agent uploads the file.
    let bytes = file_bytes();
    let reference = json_of(
        upload(
            &app,
            Some(&format!("C:\\Users\\grace\\{FILE_NAME}")),
            "application/pdf",
            bytes.clone(),
        )
        .await,
        StatusCode::CREATED,
        "upload",
    )
    .await;
    assert_eq!(reference["name"], FILE_NAME, "the directory is dropped");
    assert_eq!(reference["content_type"], "application/pdf");
    assert_eq!(reference["size"], bytes.len());
    let blob = str_of(&reference, "blob").to_owned();
    assert!(blob.starts_with("uploads/"), "{blob}");

    // It can be downloaded again, as a download.
    let download = app
        .api_get(&format!(
            "/api/v1/attachments/{blob}?content_type=application/pdf"
        ))
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    let header = |name: &str| {
        download
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/pdf");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(
        header("content-disposition").starts_with("attachment;"),
        "{}",
        header("content-disposition")
    );
    assert_eq!(download.bytes().await.unwrap().to_vec(), bytes);

    // The agent replies with it.
    let path = format!("/api/v1/conversations/{conversation_id}/messages");
    let reply = json_of(
        app.api_post(
            &path,
            &json!({"text": "Here is your invoice.", "attachments": [reference]}),
        )
        .await,
        StatusCode::CREATED,
        "reply with an attachment",
    )
    .await;
    assert_eq!(reply["attachments"][0]["name"], FILE_NAME);
    assert_eq!(reply["attachments"][0]["blob"], blob.as_str());
    let sent = app
        .wait_for_delivery(&conversation_id, str_of(&reply, "id"), "sent")
        .await;
    let our_message_id = str_of(&sent, "external_id").to_owned();

    // The customer's mailbox has it, with the file.
    let mut imap = server.imap("customer").await;
    imap.select("INBOX").await;
    let raw = wait_for(WAIT, "the reply in the customer's mailbox", async || {
        imap.fetch_all_raw().await.into_iter().find(|raw| {
            MessageParser::default()
                .parse(raw)
                .and_then(|m| m.message_id().map(|id| id == our_message_id))
                .unwrap_or(false)
        })
    })
    .await;
    imap.logout().await;
    let delivered = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        delivered.in_reply_to().as_text(),
        Some("inv-1@customer.example.test")
    );
    assert!(
        delivered
            .body_text(0)
            .is_some_and(|t| t.contains("Here is your invoice.")),
        "the text part is there"
    );
    assert!(
        delivered
            .body_html(0)
            .is_some_and(|h| h.contains("Here is your invoice.")),
        "the HTML alternative is there"
    );
    let attachments: Vec<_> = delivered.attachments().collect();
    assert_eq!(attachments.len(), 1, "one attachment");
    let attachment = attachments[0];
    assert_eq!(attachment.attachment_name(), Some(FILE_NAME));
    let content_type = attachment.content_type().expect("a content type");
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("application", Some("pdf"))
    );
    assert!(
        attachment.contents() == bytes.as_slice(),
        "the attachment's bytes are the uploaded ones ({} bytes delivered, {} uploaded)",
        attachment.contents().len(),
        bytes.len()
    );
}

/// A conversation on a webhook channel (no mail needed to check what the API refuses).
async fn conversation(app: &TestApp) -> String {
    let receiver = inbox_e2e::Receiver::spawn(inbox_e2e::Behaviour::Accept).await;
    let channel = app.create_webhook_channel(&receiver.url).await;
    app.customer_says(&channel, "m-1", "u-1", "Hello").await;
    str_of(&app.only_conversation().await, "id").to_owned()
}

fn error_field(body: &Value) -> &str {
    body["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn replies_only_take_uploaded_files() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let conversation_id = conversation(&app).await;
    let path = format!("/api/v1/conversations/{conversation_id}/messages");
    let uploaded = json_of(
        upload(&app, Some("notes.txt"), "text/plain", b"hello".to_vec()).await,
        StatusCode::CREATED,
        "upload",
    )
    .await;
    let refused = [
        // Not an upload: another blob of the store (a customer's attachment, raw mail, the db).
        json!({"name": "x.eml", "blob": "raw/abc.eml"}),
        json!({"name": "db", "blob": "uploads/../inbox.db"}),
        // An upload that does not exist.
        json!({"name": "ghost.pdf", "blob": "uploads/0190aaaa/ghost.pdf"}),
    ];
    for (i, attachment) in refused.into_iter().enumerate() {
        let body = json_of(
            app.api_post(
                &path,
                &json!({"text": "see attached", "attachments": [uploaded.clone(), attachment]}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            &format!("reply with bad attachment {i}"),
        )
        .await;
        assert_eq!(error_field(&body), "attachments[1].blob", "{body}");
    }
    // Nothing was stored by the refused replies.
    assert_eq!(app.messages(&conversation_id).await.len(), 1);
    // The good one alone is taken; a note can carry it too.
    let note = json_of(
        app.api_post(
            &path,
            &json!({"text": "for us", "private": true, "attachments": [uploaded]}),
        )
        .await,
        StatusCode::CREATED,
        "note with an attachment",
    )
    .await;
    assert_eq!(note["attachments"][0]["name"], "notes.txt");
    assert_eq!(note["attachments"][0]["size"], 5);
}

#[tokio::test]
async fn uploads_are_checked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // No name.
    let body = json_of(
        upload(&app, None, "text/plain", b"x".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "upload without a name",
    )
    .await;
    assert_eq!(error_field(&body), "filename");
    let body = json_of(
        upload(&app, Some("../.."), "text/plain", b"x".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "upload named ../..",
    )
    .await;
    assert_eq!(error_field(&body), "filename");
    // No or a bogus content type: octet-stream.
    let reference = json_of(
        upload(&app, Some("blob.bin"), "nonsense", vec![0, 1, 2]).await,
        StatusCode::CREATED,
        "upload with a bogus content type",
    )
    .await;
    assert_eq!(reference["content_type"], "application/octet-stream");
    // Anonymous: 401.
    let anonymous = app
        .client
        .post(app.url("/api/v1/attachments?filename=a.txt"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let anonymous = app
        .client
        .get(app.url(&format!(
            "/api/v1/attachments/{}",
            str_of(&reference, "blob")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Downloads stay inside the blob store.
    for key in [
        "uploads/../inbox.db",
        "inbox.db",
        "uploads/nothing/here.pdf",
    ] {
        let response = app.api_get(&format!("/api/v1/attachments/{key}")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{key}");
    }
    // 25 MB is the limit.
    let limit = 25 * 1024 * 1024;
    let exactly = json_of(
        upload(
            &app,
            Some("big.bin"),
            "application/octet-stream",
            vec![7; limit],
        )
        .await,
        StatusCode::CREATED,
        "upload of exactly 25 MB",
    )
    .await;
    assert_eq!(exactly["size"], limit);
    let body = json_of(
        upload(
            &app,
            Some("bigger.bin"),
            "application/octet-stream",
            vec![7; limit + 1],
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload of 25 MB + 1 byte",
    )
    .await;
    assert_eq!(body["error"], "too_large");
}
