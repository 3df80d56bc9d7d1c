//! The malformed-mail corpus (`tests/fixtures/mail/corpus/*.eml`) and a 10 MB attachment,
//! delivered through the real SMTP server into the Dovecot support mailbox the running application
//! reads: then one normal mail. The normal mail is stored (the mailbox never stalls on bad mail),
//! and every corpus message is either a stored message or a dead letter with its error.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use inbox_connectors::email::sample::{corpus_dir, mail_with_attachment, noise, read_corpus};
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_e2e::mail::MailServer;
use inbox_e2e::{Backend, TestApp, both_backends, wait_for};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

both_backends!(the_corpus_never_stalls_the_mailbox);

/// Generous: the application is a debug build and reads a 14 MB message.
const WAIT: Duration = Duration::from_secs(300);

/// The Message-ID of the normal mail sent after the corpus.
const LAST: &str = "after-the-corpus@customer.example.test";

/// Every `.eml` of the corpus, by file name.
fn corpus() -> BTreeMap<String, Vec<u8>> {
    read_corpus(&corpus_dir()).unwrap_or_else(|e| panic!("{}: {e}", corpus_dir().display()))
}

/// A mail with a 10 MiB attachment of incompressible bytes.
fn ten_megabyte_mail() -> Vec<u8> {
    mail_with_attachment(&noise(10 * 1024 * 1024))
}

/// The bytes as a relaying MTA hands them on: CRLF line endings, and lines longer than SMTP's
/// 998 octets broken by inserting CRLF SPACE (Postfix's `smtp_line_length_limit`).
fn relayed(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64);
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for (i, piece) in line.chunks(990).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n ");
            }
            out.extend_from_slice(piece);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Submits raw bytes to the support mailbox through the test SMTP server.
async fn submit(server: &MailServer, raw: &[u8]) -> Result<(), String> {
    let envelope = Envelope::new(
        Some("sender@customer.example.test".parse().unwrap()),
        vec!["support@example.test".parse().unwrap()],
    )
    .unwrap();
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp_port)
        .timeout(Some(Duration::from_secs(60)))
        .build()
        .send_raw(&envelope, raw)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Is the customer message with this Message-ID stored on the channel?
async fn stored(app: &TestApp, channel: ChannelId, external_id: &str) -> bool {
    inbox_e2e::mail::find_inbound_on(&app.store, channel, external_id)
        .await
        .is_some()
}

async fn the_corpus_never_stalls_the_mailbox(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    let channel = app
        .store
        .add_channel(inbox_core::store::NewChannel {
            kind: ChannelKind::EMAIL,
            name: ("support").into(),
            config: serde_json::to_value(server.support_config()).unwrap(),
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::MAIL,
        })
        .await
        .unwrap();

    let mut mails: Vec<(String, Vec<u8>)> = corpus().into_iter().collect();
    assert!(mails.len() >= 30, "the corpus has {} messages", mails.len());
    mails.push((
        "ten-megabytes (built in memory)".into(),
        ten_megabyte_mail(),
    ));
    let mut sent = Vec::new();
    let mut refused = Vec::new();
    for (name, raw) in &mails {
        match submit(&server, &relayed(raw)).await {
            Ok(()) => sent.push(name.clone()),
            Err(error) => refused.push(format!("{name}: {error}")),
        }
    }
    // A relaying MTA takes all of them; what the mailbox does with them is the test.
    assert!(
        refused.is_empty(),
        "the SMTP server refused:\n{}",
        refused.join("\n")
    );

    let normal = format!(
        "From: Ada Customer <customer@example.test>\r\nTo: support@example.test\r\n\
         Subject: Still waiting for order 42\r\nMessage-ID: <{LAST}>\r\n\
         Date: Tue, 24 Nov 2026 11:00:00 +0100\r\n\r\nAny news?\r\n"
    );
    submit(&server, normal.as_bytes())
        .await
        .expect("the SMTP server takes the normal mail");

    // Mail is read in UID order and each message is stored or dead-lettered before the next is
    // read: once the last one is stored, every corpus message has been dealt with.
    wait_for(
        WAIT,
        "the normal mail sent after the corpus to be stored",
        async || stored(&app, channel.id, LAST).await.then_some(()),
    )
    .await;

    let messages = app.message_total().await - 1;
    let dead = app.store.dead_letters(10_000).await.unwrap();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for letter in &dead {
        assert_eq!(letter.channel_id, Some(channel.id), "{letter:?}");
        assert!(!letter.error.trim().is_empty(), "{letter:?}");
        // Mail the connector could not parse is kept as its raw .eml blob, for a replay.
        if letter.error.starts_with("email:") {
            assert!(
                letter.payload.starts_with("raw/") && letter.payload.ends_with(".eml"),
                "{letter:?}"
            );
        }
        *errors.entry(letter.error.clone()).or_default() += 1;
    }
    println!(
        "{backend:?}: {} corpus mails sent, {messages} stored, {} dead-lettered",
        sent.len(),
        dead.len()
    );
    for (error, count) in &errors {
        println!("  {count:>3} × {error}");
    }
    assert_eq!(
        messages as usize + dead.len(),
        sent.len(),
        "every corpus mail is stored or dead-lettered ({messages} stored, {} dead letters: \
         {errors:#?})",
        dead.len()
    );
    assert!(
        stored(&app, channel.id, "big-attachment@example.test").await,
        "the 10 MB mail is stored"
    );

    // Everything stored can be read back over the API, and no stored HTML carries script.
    let conversations = app.conversations().await;
    let mut read = 0;
    for conversation in &conversations {
        let id = conversation["id"].as_str().unwrap();
        for message in app.messages(id).await {
            read += 1;
            let html = message["html"].as_str().unwrap_or_default().to_lowercase();
            assert!(!html.contains("<script"), "{message:#}");
        }
    }
    assert_eq!(read, messages + 1, "every stored message is readable");

    // A replay re-reads an unparsable mail from its raw source with the same parser: it still
    // fails, and the same dead letter keeps the reason (no second row, no message).
    let unparsable: Vec<_> = dead
        .iter()
        .filter(|d| d.error.starts_with("email:"))
        .collect();
    for letter in &unparsable {
        let answer = app
            .api_post(
                &format!("/api/v1/dead-letters/{}/replay", letter.id),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(answer.status(), 200, "{letter:?}");
        let answer: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(answer["outcome"], "failed", "{answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with("email:"),
            "{answer}"
        );
    }
    let after = app.store.dead_letters(10_000).await.unwrap();
    assert_eq!(after.len(), dead.len(), "a failed replay adds no row");
    for letter in after.iter().filter(|d| d.error.starts_with("email:")) {
        assert_eq!(letter.replays, 1, "{letter:?}");
    }
    assert_eq!(
        app.message_total().await - 1,
        messages,
        "nothing stored by the replays"
    );
}
