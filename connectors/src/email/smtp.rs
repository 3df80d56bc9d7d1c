//! SMTP sink (lettre): a reply goes out from the channel's address with the conversation's reply
//! token in Reply-To and in our Message-ID, In-Reply-To/References of the thread, a `Re:` subject,
//! and text + HTML alternatives. 4xx answers are retried by the runner, 5xx fail at once with the
//! server's reply visible on the message.

use std::time::Duration;

use async_trait::async_trait;
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::model::Channel;
use inbox_core::threading::reply_token;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::EmailConfig;
use crate::{Connector, Delivered, DeliveryError};

/// Delivers email replies over SMTP.
#[derive(Debug, Clone, Default)]
pub struct SmtpConnector;

/// `support@shop.test` + token → `support+<token>@shop.test`.
pub fn tokened_address(address: &str, token: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{local}+{token}@{domain}"),
        None => address.to_owned(),
    }
}

fn with_brackets(id: &str) -> String {
    format!("<{}>", id.trim_matches(|c| c == '<' || c == '>'))
}

/// "Re: " once, whatever the customer's client put in front.
fn reply_subject(subject: Option<&str>) -> String {
    let subject = subject.unwrap_or_default().trim();
    let lower = subject.to_ascii_lowercase();
    if lower.starts_with("re:") {
        subject.to_owned()
    } else if subject.is_empty() {
        "Re: your message".to_owned()
    } else {
        format!("Re: {subject}")
    }
}

fn html_of(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    format!("<div>{}</div>", escaped.replace('\n', "<br>\n"))
}

/// Builds the reply; returns it with our Message-ID (without brackets).
pub fn build_reply(
    config: &EmailConfig,
    message: &OutboundMessage,
) -> Result<(Message, String), DeliveryError> {
    let token = reply_token(message.conversation_id);
    let domain = config.domain();
    let message_id = format!("{}.{token}@{domain}", message.id.0.simple());
    let bad =
        |what: &str, e: &dyn std::fmt::Display| DeliveryError::permanent(format!("{what}: {e}"));
    let from_name = message
        .author
        .as_deref()
        .map(|author| format!("{author} ({})", config.display_name()))
        .unwrap_or_else(|| config.display_name());
    let from = Mailbox::new(
        Some(from_name),
        config.address.parse().map_err(|e| bad("address", &e))?,
    );
    let reply_to: Mailbox = tokened_address(&config.address, &token)
        .parse()
        .map_err(|e| bad("reply-to", &e))?;
    let to: Mailbox = message.to.handle.parse().map_err(|e| bad("to", &e))?;
    let mut builder = Message::builder()
        .from(from)
        .reply_to(reply_to)
        .to(to)
        .subject(reply_subject(message.thread.subject.as_deref()))
        .message_id(Some(with_brackets(&message_id)));
    if let Some(parent) = &message.thread.in_reply_to {
        builder = builder.in_reply_to(with_brackets(parent));
    }
    let mut references: Vec<String> = message
        .thread
        .references
        .iter()
        .map(|r| with_brackets(r))
        .collect();
    if let Some(parent) = &message.thread.in_reply_to
        && !references.contains(&with_brackets(parent))
    {
        references.push(with_brackets(parent));
    }
    if !references.is_empty() {
        builder = builder.references(references.join(" "));
    }
    let html = message
        .body
        .html
        .clone()
        .unwrap_or_else(|| html_of(&message.body.text));
    let email = builder
        .multipart(MultiPart::alternative_plain_html(
            message.body.text.clone(),
            html,
        ))
        .map_err(|e| bad("building the message", &e))?;
    Ok((email, message_id))
}

#[async_trait]
impl Connector for SmtpConnector {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        let config: EmailConfig = serde_json::from_value(channel.config.clone())
            .map_err(|e| DeliveryError::permanent(format!("channel config: {e}")))?;
        let (email, message_id) = build_reply(&config, message)?;
        let mut transport = if config.tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host)
                .map_err(|e| DeliveryError::permanent(format!("smtp_host: {e}")))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
        }
        .port(config.smtp_port)
        .timeout(Some(Duration::from_secs(30)));
        if let Some(username) = &config.username {
            let password = config.password().map_err(DeliveryError::permanent)?;
            transport = transport.credentials(Credentials::new(username.clone(), password));
        }
        match transport.build().send(email).await {
            Ok(_) => Ok(Delivered {
                external_id: Some(message_id),
            }),
            Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!(
                "SMTP {}:{} refused the reply: {e}",
                config.smtp_host, config.smtp_port
            ))),
            Err(e) => Err(DeliveryError::transient(format!(
                "SMTP {}:{}: {e}",
                config.smtp_host, config.smtp_port
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use inbox_core::envelope::{Body, Party, SCHEMA_VERSION, ThreadHints};
    use inbox_core::ids::{ChannelId, ConversationId, MessageId};

    use super::*;

    fn config() -> EmailConfig {
        serde_json::from_value(serde_json::json!({
            "address": "support@shop.test",
            "imap_host": "127.0.0.1", "imap_port": 143,
            "smtp_host": "127.0.0.1", "smtp_port": 25,
            "tls": false,
        }))
        .unwrap()
    }

    #[test]
    fn replies_carry_the_thread_and_the_token() {
        let conversation = ConversationId::new();
        let message = OutboundMessage {
            schema_version: SCHEMA_VERSION,
            id: MessageId::new(),
            conversation_id: conversation,
            channel_id: ChannelId::new(),
            channel_kind: ChannelKind::Email,
            to: Party {
                handle: "ada@customer.test".into(),
                ..Party::default()
            },
            thread: ThreadHints {
                in_reply_to: Some("a2@customer.test".into()),
                references: vec!["a1@customer.test".into()],
                subject: Some("Order 42 <late>".into()),
                chat_id: None,
            },
            body: Body {
                text: "It ships <today>.".into(),
                html: None,
            },
            attachments: Vec::new(),
            author: Some("Grace".into()),
            created_at: Utc::now(),
        };
        let (email, id) = build_reply(&config(), &message).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        let token = reply_token(conversation);
        assert!(id.ends_with(&format!(".{token}@shop.test")), "{id}");
        assert!(raw.contains(&format!("Message-ID: <{id}>")), "{raw}");
        assert!(
            raw.contains(&format!("Reply-To: support+{token}@shop.test")),
            "{raw}"
        );
        assert!(raw.contains("In-Reply-To: <a2@customer.test>"), "{raw}");
        assert!(
            raw.contains("References: <a1@customer.test> <a2@customer.test>"),
            "{raw}"
        );
        assert!(raw.contains("Subject: Re: Order 42 <late>"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("It ships &lt;today&gt;."), "{raw}");
        assert_eq!(
            inbox_core::threading::find_reply_token(&id),
            Some(conversation)
        );
    }

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject(Some("RE: x")), "RE: x");
        assert_eq!(reply_subject(Some("x")), "Re: x");
        assert_eq!(reply_subject(None), "Re: your message");
    }
}
