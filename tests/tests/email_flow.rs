//! The email channel end to end against Dovecot and a real SMTP server (`tests/services/mail`):
//! a customer's mail becomes a conversation, the agent's reply reaches the customer's mailbox with
//! the thread headers and reply token, and the customer's answer joins the same conversation.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use chrono::Utc;
use inbox_connectors::email::smtp::SmtpConnector;
use inbox_connectors::email::{EmailConfig, SmtpAuth};
use inbox_core::envelope::{
    Body, ChannelKind, OutboundMessage, Party, SCHEMA_VERSION, ThreadHints,
};
use inbox_core::ids::{ChannelId, ConversationId, MessageId};
use inbox_core::model::Channel;
use inbox_e2e::mail::MailServer;
use inbox_e2e::{Backend, TestApp, both_backends, wait_for, wait_until};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

both_backends!(mail_round_trip);

const WAIT: Duration = Duration::from_secs(30);

fn email_config(server: &MailServer) -> EmailConfig {
    server.support_config()
}

/// The customer sends a mail through the SMTP server.
async fn customer_sends(
    server: &MailServer,
    message_id: &str,
    subject: &str,
    reply_to: Option<&str>,
) {
    let mut builder = Message::builder()
        .from("Ada Customer <customer@example.test>".parse().unwrap())
        .to("support@example.test".parse().unwrap())
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")));
    if let Some(parent) = reply_to {
        builder = builder
            .in_reply_to(format!("<{parent}>"))
            .references(format!("<{parent}>"));
    }
    let mail = builder.body("Where is my order?".to_owned()).unwrap();
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp_port)
        .build()
        .send(mail)
        .await
        .expect("the SMTP server takes the customer's mail");
}

async fn mail_round_trip(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    app.store
        .add_channel(inbox_core::store::NewChannel {
            kind: ChannelKind::EMAIL,
            name: ("support").into(),
            config: serde_json::to_value(email_config(&server)).unwrap(),
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::MAIL,
        })
        .await
        .unwrap();

    // The customer writes; the running app picks the new channel up and reads the mailbox.
    customer_sends(
        &server,
        "q1@customer.example.test",
        "Order 42 is late",
        None,
    )
    .await;
    let conversation: Value = wait_for(WAIT, "the mail to become a conversation", async || {
        app.conversations().await.into_iter().next()
    })
    .await;
    assert_eq!(conversation["contact_handle"], "customer@example.test");
    assert_eq!(conversation["subject"], "Order 42 is late");
    let conversation_id = conversation["id"].as_str().unwrap().to_owned();

    // The agent answers; the reply reaches the customer's mailbox with the thread headers.
    let reply = app
        .agent_writes(&conversation_id, "It ships today.", false)
        .await;
    let reply_id = reply["id"].as_str().unwrap();
    let sent = app
        .wait_for_delivery(&conversation_id, reply_id, "sent")
        .await;
    let our_message_id = sent["external_id"].as_str().unwrap().to_owned();
    let delivered = wait_for(WAIT, "the reply in the customer's mailbox", async || {
        server.new_mail("customer").into_iter().next()
    })
    .await;
    let token = inbox_core::threading::reply_token(conversation_id.parse().unwrap());
    assert!(
        delivered.contains("In-Reply-To: <q1@customer.example.test>"),
        "{delivered}"
    );
    assert!(
        delivered.contains(&format!("support+{token}@example.test")),
        "{delivered}"
    );
    assert!(
        delivered.contains(&format!("<{our_message_id}>")),
        "{delivered}"
    );
    assert!(
        delivered.contains("Subject: Re: Order 42 is late"),
        "{delivered}"
    );

    // The customer answers the reply: same conversation, threaded by reference.
    customer_sends(
        &server,
        "q2@customer.example.test",
        "Re: Order 42 is late",
        Some(&our_message_id),
    )
    .await;
    let answer = wait_for(
        WAIT,
        "the customer's answer in the conversation",
        async || {
            app.messages(&conversation_id)
                .await
                .into_iter()
                .find(|m| m["external_id"] == "q2@customer.example.test")
        },
    )
    .await;
    assert_eq!(answer["thread_reason"], "reply_reference");
    assert_eq!(app.conversations().await.len(), 1);
    // Read again after a restart: nothing is ingested twice. The sentinel, delivered after the
    // restart, is read after everything the restarted source might read again.
    let app = app.restart().await;
    let sentinel = server.sentinel(&app, "after-restart").await;
    assert_eq!(
        app.message_total().await,
        4,
        "the question, the reply, the answer and the sentinel"
    );
    let ids: Vec<Value> = app
        .messages(&conversation_id)
        .await
        .iter()
        .map(|m| m["external_id"].clone())
        .collect();
    assert_eq!(
        ids.len(),
        3,
        "the conversation holds each of its messages once: {ids:?}"
    );
    assert!(!ids.contains(&Value::from(sentinel.as_str())));
    assert_eq!(
        app.conversations().await.len(),
        2,
        "the sentinel opens its own"
    );
}

fn outbound(to: &str) -> OutboundMessage {
    OutboundMessage {
        schema_version: SCHEMA_VERSION,
        id: MessageId::new(),
        conversation_id: ConversationId::new(),
        channel_id: ChannelId::new(),
        channel_kind: ChannelKind::EMAIL,
        to: Party {
            handle: to.into(),
            ..Party::default()
        },
        thread: ThreadHints::default(),
        body: Body {
            text: "hello".into(),
            html: None,
        },
        attachments: Vec::new(),
        author: None,
        created_at: Utc::now(),
    }
}

#[tokio::test]
async fn smtp_refusals_are_classified() {
    let server = MailServer::start();
    let channel = Channel {
        id: ChannelId::new(),
        kind: ChannelKind::EMAIL,
        name: "support".into(),
        config: serde_json::to_value(EmailConfig {
            username: None,
            ..email_config(&server)
        })
        .unwrap(),
        secret: String::new(),
        enabled: true,
        created_at: Utc::now(),
        rules: inbox_core::channel_rules::ChannelRules::default(),
        deleted_at: None,
    };
    let permanent = SmtpConnector
        .deliver(&channel, &outbound("nobody@example.test"))
        .await
        .expect_err("550");
    assert!(!permanent.retryable);
    assert!(permanent.message.contains("550"), "{}", permanent.message);
    let transient = SmtpConnector
        .deliver(&channel, &outbound("tempfail@example.test"))
        .await
        .expect_err("451");
    assert!(transient.retryable, "{}", transient.message);
}

/// A relay on a trusted network offers no AUTH: `smtp_auth: none` sends through it; asking for
/// PLAIN there fails the reply for good with the server's reason, before anything is sent.
#[tokio::test]
async fn smtp_auth_none_sends_through_a_relay_without_auth() {
    let server = MailServer::start_without_smtp_auth();
    let channel_with = |auth: SmtpAuth| Channel {
        id: ChannelId::new(),
        kind: ChannelKind::EMAIL,
        name: "support".into(),
        config: serde_json::to_value(EmailConfig {
            smtp_auth: Some(auth),
            ..email_config(&server)
        })
        .unwrap(),
        secret: String::new(),
        enabled: true,
        rules: inbox_core::channel_rules::ChannelRules::MAIL,
        created_at: Utc::now(),
        deleted_at: None,
    };
    let delivered = SmtpConnector
        .deliver(
            &channel_with(SmtpAuth::None),
            &outbound("customer@example.test"),
        )
        .await
        .expect("sent without AUTH");
    assert!(delivered.external_id.is_some());
    wait_until(WAIT, "the reply delivered to the customer", async || {
        !server.new_mail("customer").is_empty()
    })
    .await;
    let refused = SmtpConnector
        .deliver(
            &channel_with(SmtpAuth::Plain),
            &outbound("customer@example.test"),
        )
        .await
        .expect_err("no AUTH to log in with");
    assert!(!refused.retryable, "{}", refused.message);
    assert!(
        refused.message.to_lowercase().contains("authentication"),
        "{}",
        refused.message
    );
}
