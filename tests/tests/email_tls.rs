//! IMAP over TLS against a Dovecot that requires it (`tests/services/mail start --tls`: IMAPS on
//! an extra port, a certificate for 127.0.0.1 from a CA made for the run, `ssl = required`):
//! with the CA in `tls_ca_file` the mailbox is read; with another CA the handshake is refused,
//! the source says why, and nothing is stored.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use inbox_connectors::email::{EmailConfig, EmailConnector};
use inbox_connectors::{Connector, CursorStore, SourceContext};
use inbox_core::bus::local::LocalBus;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use inbox_e2e::mail::MailServer;
use inbox_e2e::{Backend, TestApp, both_backends, str_of, wait_for};
use tokio_util::sync::CancellationToken;

both_backends!(mail_is_read_over_imaps_with_the_ca_file);

const WAIT: Duration = Duration::from_secs(30);

async fn customer_writes(server: &MailServer, message_id: &str) {
    let raw = format!(
        "From: Ada Customer <customer@example.test>\r\nTo: support@example.test\r\n\
         Subject: Over TLS\r\nMessage-ID: <{message_id}>\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nIs this channel encrypted?\r\n",
        Utc::now().to_rfc2822()
    );
    server
        .send_raw(
            Some("customer@example.test"),
            &["support@example.test"],
            raw.as_bytes(),
        )
        .await;
}

/// Dovecot's log lines of logins of `support` (`… Login: user=<support>, method=…, TLS, …`).
fn support_logins(server: &MailServer) -> Vec<String> {
    let log = server.dovecot_conf.with_file_name("dovecot.log");
    std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .filter(|line| line.contains("Login: user=<support>"))
        .map(str::to_owned)
        .collect()
}

async fn create_channel(app: &TestApp, config: &EmailConfig) -> Channel {
    app.store
        .add_channel(inbox_core::store::NewChannel {
            kind: ChannelKind::EMAIL,
            name: ("support over TLS").into(),
            config: serde_json::to_value(config).unwrap(),
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::MAIL,
        })
        .await
        .unwrap()
}

async fn mail_is_read_over_imaps_with_the_ca_file(backend: Backend) {
    let server = MailServer::start_tls();
    let app = TestApp::spawn(backend).await;
    let config = server.support_tls_config(server.ca_file.as_deref().unwrap());
    let channel = create_channel(&app, &config).await;
    customer_writes(&server, "tls-1@customer.example.test").await;

    let conversation = wait_for(WAIT, "the mail read over IMAPS", async || {
        app.conversations().await.into_iter().next()
    })
    .await;
    assert_eq!(conversation["channel_id"], channel.id.to_string());
    assert_eq!(conversation["subject"], "Over TLS");
    let messages = app.messages(str_of(&conversation, "id")).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["external_id"], "tls-1@customer.example.test");
    assert!(
        app.store
            .cursor(channel.id, "imap")
            .await
            .unwrap()
            .is_some_and(|c| c.ends_with(":1")),
        "the cursor moved past the mail"
    );
    // Dovecot saw the connector log in over TLS on the IMAPS port.
    let logins = support_logins(&server);
    assert!(!logins.is_empty(), "no login of support in Dovecot's log");
    for login in logins {
        assert!(login.contains(", TLS"), "a login without TLS: {login}");
    }
}

/// Source cursors in memory.
#[derive(Debug, Default)]
struct Cursors(Mutex<HashMap<(ChannelId, String), String>>);

#[async_trait]
impl CursorStore for Cursors {
    async fn get(&self, channel: ChannelId, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&(channel, name.to_owned()))
            .cloned())
    }

    async fn set(&self, channel: ChannelId, name: &str, value: &str) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .insert((channel, name.to_owned()), value.to_owned());
        Ok(())
    }
}

/// Runs the email source of `config` once, as the source runner does; returns how it ended.
async fn run_source(config: &EmailConfig) -> Result<(), String> {
    let channel = Channel {
        id: ChannelId::new(),
        kind: ChannelKind::EMAIL,
        name: "support".into(),
        config: serde_json::to_value(config).unwrap(),
        secret: String::new(),
        enabled: true,
        created_at: Utc::now(),
        rules: inbox_core::channel_rules::ChannelRules::default(),
        deleted_at: None,
    };
    // Nothing consumes the bus: a message published here would block the source.
    let (bus, _partitions, _outbound) = LocalBus::new(1);
    let ctx = SourceContext {
        bus: Arc::new(bus),
        cursors: Arc::new(Cursors::default()),
        blobs: Arc::new(object_store::memory::InMemory::new()),
        public_url: "http://127.0.0.1:1".into(),
    };
    let stop = CancellationToken::new();
    tokio::time::timeout(
        WAIT,
        EmailConnector::default().run_source(channel, ctx, stop),
    )
    .await
    .expect("the source gives up on a bad certificate at once")
}

#[tokio::test]
async fn a_wrong_ca_is_refused() {
    let server = MailServer::start_tls();
    customer_writes(&server, "tls-2@customer.example.test").await;

    // The source stops with the TLS error, naming the server.
    let wrong = server.support_tls_config(server.other_ca_file.as_deref().unwrap());
    let error = run_source(&wrong).await.expect_err("a wrong CA is refused");
    let imaps = server.imaps_port.unwrap();
    assert!(
        error.contains(&format!("IMAP 127.0.0.1:{imaps}: TLS handshake failed")),
        "{error}"
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
    // No CA file at all: only the public roots, which do not know this CA either.
    let public_roots = EmailConfig {
        tls_ca_file: None,
        ..wrong.clone()
    };
    let error = run_source(&public_roots).await.expect_err("not trusted");
    assert!(error.contains("UnknownIssuer"), "{error}");
    // A CA file that is not there is named.
    let missing = server.support_tls_config(Path::new("/nonexistent/ca.pem"));
    let error = run_source(&missing).await.expect_err("no CA file");
    assert!(error.contains("tls_ca_file /nonexistent/ca.pem"), "{error}");

    // In the running app: the channel with the wrong CA stores nothing, while a channel on the
    // same mailbox with the right CA reads the mail (so there was mail to read).
    let app = TestApp::spawn(Backend::Sqlite).await;
    let refused = create_channel(&app, &wrong).await;
    let right = server.support_tls_config(server.ca_file.as_deref().unwrap());
    let trusted = create_channel(&app, &right).await;
    let conversation = wait_for(WAIT, "the mail read by the trusted channel", async || {
        app.conversations().await.into_iter().next()
    })
    .await;
    assert_eq!(conversation["channel_id"], trusted.id.to_string());
    assert_eq!(app.conversations().await.len(), 1);
    assert_eq!(app.message_total().await, 1);
    assert_eq!(app.store.cursor(refused.id, "imap").await.unwrap(), None);
}
