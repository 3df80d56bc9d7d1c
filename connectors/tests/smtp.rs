//! The SMTP sink against a real SMTP server that delivers into Dovecot (`tests/services/mail`):
//! the reply lands in the customer's mailbox with its thread headers; 5xx fails at once with the
//! server's reply, 4xx is transient.

// clippy.toml allows these in tests, but only inside `#[test]` functions, not their helpers.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use inbox_connectors::Connector;
use inbox_connectors::email::EmailConfig;
use inbox_connectors::email::smtp::SmtpConnector;
use inbox_core::envelope::{
    Body, ChannelKind, OutboundMessage, Party, SCHEMA_VERSION, ThreadHints,
};
use inbox_core::ids::{ChannelId, ConversationId, MessageId};
use inbox_core::model::Channel;

/// The mail services of one test, stopped on drop.
struct MailServer {
    state: tempfile::TempDir,
    smtp_port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/services/mail")
}

impl MailServer {
    fn start() -> MailServer {
        let state = tempfile::tempdir().expect("tempdir");
        // The mail user must be able to enter the state dir.
        Command::new("chmod")
            .arg("711")
            .arg(state.path())
            .status()
            .expect("chmod");
        let out = Command::new(script())
            .arg("start")
            .arg(state.path().join("mail"))
            .output()
            .expect("tests/services/mail runs");
        assert!(
            out.status.success(),
            "tests/services/mail start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let smtp_port = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("SMTP=127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no SMTP port in `{line}`"));
        MailServer { state, smtp_port }
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.state
            .path()
            .join(format!("mail/mail/{user}/Maildir/new"))
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.state.path().join("mail"))
            .output();
    }
}

fn channel(smtp_port: u16) -> Channel {
    let config = EmailConfig {
        address: "support@example.test".into(),
        display_name: Some("Shop Support".into()),
        imap_host: "127.0.0.1".into(),
        imap_port: 1,
        mailbox: "INBOX".into(),
        smtp_host: "127.0.0.1".into(),
        smtp_port,
        username: None,
        password_env: None,
        tls: false,
        since_days: 30,
        message_id_domain: None,
    };
    Channel {
        id: ChannelId::new(),
        kind: ChannelKind::Email,
        name: "support".into(),
        config: serde_json::to_value(config).unwrap(),
        secret: String::new(),
        enabled: true,
        created_at: Utc::now(),
    }
}

fn reply(to: &str) -> OutboundMessage {
    OutboundMessage {
        schema_version: SCHEMA_VERSION,
        id: MessageId::new(),
        conversation_id: ConversationId::new(),
        channel_id: ChannelId::new(),
        channel_kind: ChannelKind::Email,
        to: Party {
            handle: to.into(),
            ..Party::default()
        },
        thread: ThreadHints {
            in_reply_to: Some("q1@customer.example.test".into()),
            references: vec!["q1@customer.example.test".into()],
            subject: Some("Order 42".into()),
            chat_id: None,
        },
        body: Body {
            text: "It ships today.".into(),
            html: None,
        },
        attachments: Vec::new(),
        author: Some("Grace".into()),
        created_at: Utc::now(),
    }
}

#[tokio::test]
async fn replies_reach_the_mailbox_and_refusals_are_classified() {
    let server = MailServer::start();
    let channel = channel(server.smtp_port);

    let message = reply("customer@example.test");
    let delivered = SmtpConnector
        .deliver(&channel, &message)
        .await
        .expect("delivered");
    let message_id = delivered.external_id.expect("our Message-ID");
    let files: Vec<_> = std::fs::read_dir(server.maildir("customer"))
        .expect("customer's Maildir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "one mail in the customer's INBOX");
    let raw = std::fs::read_to_string(&files[0]).expect("mail");
    assert!(
        raw.contains(&format!("Message-ID: <{message_id}>")),
        "{raw}"
    );
    assert!(
        raw.contains("In-Reply-To: <q1@customer.example.test>"),
        "{raw}"
    );
    assert!(raw.contains("Subject: Re: Order 42"), "{raw}");
    let token = inbox_core::threading::reply_token(message.conversation_id);
    assert!(
        raw.contains(&format!("support+{token}@example.test")),
        "{raw}"
    );

    let permanent = SmtpConnector
        .deliver(&channel, &reply("nobody@example.test"))
        .await
        .expect_err("550");
    assert!(!permanent.retryable);
    assert!(permanent.message.contains("550"), "{}", permanent.message);

    let transient = SmtpConnector
        .deliver(&channel, &reply("tempfail@example.test"))
        .await
        .expect_err("451");
    assert!(transient.retryable, "{}", transient.message);
}
