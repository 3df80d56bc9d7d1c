//! SMTP sink (lettre): a reply goes out from the channel's address with the conversation's reply
//! token in Reply-To and in our Message-ID, In-Reply-To/References of the thread, a `Re:` subject,
//! and text + HTML alternatives, with the agent's attachments (read from blob storage) beside them
//! in a `multipart/mixed`. 4xx answers are retried by the runner, 5xx fail at once with the
//! server's reply visible on the message.

use std::sync::Arc;
use std::time::Duration;

use inbox_core::envelope::{AttachmentRef, OutboundMessage};
use inbox_core::model::Channel;
use inbox_core::threading::reply_token;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use object_store::ObjectStore;
use object_store::path::Path as BlobPath;

use super::EmailConfig;
use super::config::SmtpAuth;
use crate::{Delivered, DeliveryError};

/// Delivers email replies over SMTP without blob storage, so replies without attachments only;
/// [`super::EmailConnector`] sends them all.
#[derive(Debug, Clone, Default)]
pub struct SmtpConnector;

/// A file to attach, read from blob storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedFile {
    pub name: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// Reads the reply's attachments from blob storage. A missing blob fails the reply for good
/// (naming the file); a storage error is retried.
pub async fn load_attachments(
    blobs: &dyn ObjectStore,
    attachments: &[AttachmentRef],
) -> Result<Vec<AttachedFile>, DeliveryError> {
    let mut files = Vec::with_capacity(attachments.len());
    for attachment in attachments {
        let key = &attachment.blob.0;
        let read = match blobs.get(&BlobPath::from(key.as_str())).await {
            Ok(found) => found.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(DeliveryError::permanent(format!(
                    "attachment {:?} is missing from blob storage ({key})",
                    attachment.name
                )));
            }
            Err(e) => {
                return Err(DeliveryError::transient(format!(
                    "attachment {:?} ({key}) not readable: {e}",
                    attachment.name
                )));
            }
        };
        files.push(AttachedFile {
            name: attachment.name.clone(),
            content_type: attachment.content_type.clone(),
            bytes: bytes.to_vec(),
        });
    }
    Ok(files)
}

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

/// The file's content type, `application/octet-stream` when unknown or not a valid one.
fn content_type_of(file: &AttachedFile) -> ContentType {
    file.content_type
        .as_deref()
        .and_then(|t| ContentType::parse(t).ok())
        .or_else(|| ContentType::parse("application/octet-stream").ok())
        .unwrap_or(ContentType::TEXT_PLAIN)
}

/// Builds the reply; returns it with our Message-ID (without brackets).
pub fn build_reply(
    config: &EmailConfig,
    message: &OutboundMessage,
    files: &[AttachedFile],
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
    let alternative = MultiPart::alternative_plain_html(message.body.text.clone(), html);
    let body = if files.is_empty() {
        alternative
    } else {
        files
            .iter()
            .fold(MultiPart::mixed().multipart(alternative), |mixed, file| {
                mixed.singlepart(
                    lettre::message::Attachment::new(file.name.clone())
                        .body(file.bytes.clone(), content_type_of(file)),
                )
            })
    };
    let email = builder
        .multipart(body)
        .map_err(|e| bad("building the message", &e))?;
    Ok((email, message_id))
}

/// Sends the reply, with its attachments read from `blobs`.
pub async fn send(
    channel: &Channel,
    message: &OutboundMessage,
    blobs: &dyn ObjectStore,
) -> Result<Delivered, DeliveryError> {
    let config: EmailConfig = crate::decode_config(&channel.config)
        .map_err(|e| DeliveryError::permanent(format!("channel config: {e}")))?;
    let files = load_attachments(blobs, &message.attachments).await?;
    let (email, message_id) = build_reply(&config, message, &files)?;
    let transport = transport(&config)?;
    match transport.send(email).await {
        Ok(_) => Ok(Delivered {
            external_id: Some(message_id),
        }),
        Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!(
            "SMTP {}:{} refused the reply: {e}",
            config.smtp_host, config.smtp_port
        ))),
        // The client cannot go on with this server as configured (no common AUTH mechanism):
        // retrying cannot help, the channel's settings must change.
        Err(e) if e.is_client() => Err(DeliveryError::permanent(format!(
            "SMTP {}:{}: {e} (check the channel's smtp_auth: `none` for a relay that offers no \
             authentication)",
            config.smtp_host, config.smtp_port
        ))),
        Err(e) => Err(DeliveryError::transient(format!(
            "SMTP {}:{}: {e}",
            config.smtp_host, config.smtp_port
        ))),
    }
}

/// Greets the server, upgrades to TLS and authenticates as a reply would (the connection test).
pub async fn check(config: &EmailConfig) -> Result<(), String> {
    let transport = transport(config).map_err(|e| e.message)?;
    match transport.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "{}:{} did not accept the session",
            config.smtp_host, config.smtp_port
        )),
        Err(e) => Err(format!("{}:{}: {e}", config.smtp_host, config.smtp_port)),
    }
}

/// The SMTP client of a channel: STARTTLS (with the channel's extra CA roots) or plain, and the
/// authentication the channel asks for.
pub fn transport(
    config: &EmailConfig,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let mut transport = if config.tls {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.smtp_host)
            .map_err(|e| DeliveryError::permanent(format!("smtp_host: {e}")))?;
        let extra = config.extra_roots().map_err(DeliveryError::permanent)?;
        if extra.is_empty() {
            builder
        } else {
            let mut tls = TlsParameters::builder(config.smtp_host.clone());
            for cert in extra {
                let pem = Certificate::from_der(cert.to_vec())
                    .map_err(|e| DeliveryError::permanent(format!("tls_ca_file: {e}")))?;
                tls = tls.add_root_certificate(pem);
            }
            let tls = tls
                .build_rustls()
                .map_err(|e| DeliveryError::permanent(format!("SMTP TLS settings: {e}")))?;
            builder.tls(Tls::Required(tls))
        }
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
    }
    .port(config.smtp_port)
    .timeout(Some(Duration::from_secs(30)));
    let mechanisms = match config.smtp_auth {
        Some(SmtpAuth::None) => None,
        Some(SmtpAuth::Plain) => Some(vec![Mechanism::Plain]),
        Some(SmtpAuth::Login) => Some(vec![Mechanism::Login]),
        // Not set: whichever of the two the server offers, when there is a login.
        None => config
            .smtp_login()
            .is_some()
            .then(|| vec![Mechanism::Plain, Mechanism::Login]),
    };
    if let Some(mechanisms) = mechanisms {
        let username = config.smtp_login().ok_or_else(|| {
            DeliveryError::permanent("smtp_auth needs a login: set smtp_username or username")
        })?;
        let password = config.smtp_password().map_err(DeliveryError::permanent)?;
        transport = transport
            .credentials(Credentials::new(username.to_owned(), password))
            .authentication(mechanisms);
    }
    Ok(transport.build())
}

impl SmtpConnector {
    /// Sends a reply without blob storage: a reply with attachments fails as a missing blob
    /// would.
    pub async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        let none: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        send(channel, message, none.as_ref()).await
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
            channel_kind: inbox_core::envelope::ChannelKind::EMAIL,
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
        let (email, id) = build_reply(&config(), &message, &[]).unwrap();
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

    fn reply(attachments: Vec<AttachmentRef>) -> OutboundMessage {
        OutboundMessage {
            schema_version: SCHEMA_VERSION,
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            channel_id: ChannelId::new(),
            channel_kind: inbox_core::envelope::ChannelKind::EMAIL,
            to: Party {
                handle: "ada@customer.test".into(),
                ..Party::default()
            },
            thread: ThreadHints::default(),
            body: Body {
                text: "See attached.".into(),
                html: None,
            },
            attachments,
            author: None,
            created_at: Utc::now(),
        }
    }

    fn reference(name: &str, key: &str) -> AttachmentRef {
        AttachmentRef {
            name: name.into(),
            content_type: Some("application/pdf".into()),
            size: None,
            blob: inbox_core::envelope::BlobRef(key.into()),
        }
    }

    #[tokio::test]
    async fn attachments_ride_beside_the_alternatives() {
        let blobs = object_store::memory::InMemory::new();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        blobs
            .put(&BlobPath::from("uploads/1/a.pdf"), bytes.clone().into())
            .await
            .unwrap();
        let message = reply(vec![reference("Rechnung März.pdf", "uploads/1/a.pdf")]);
        let files = load_attachments(&blobs, &message.attachments)
            .await
            .unwrap();
        let (email, _) = build_reply(&config(), &message, &files).unwrap();
        let raw = email.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert_eq!(parsed.body_text(0).as_deref(), Some("See attached."));
        assert!(parsed.body_html(0).is_some());
        let attachment = parsed.attachment(0).unwrap();
        use mail_parser::MimeHeaders;
        assert_eq!(attachment.attachment_name(), Some("Rechnung März.pdf"));
        assert_eq!(attachment.contents(), bytes.as_slice());
    }

    #[tokio::test]
    async fn a_missing_blob_fails_the_reply_for_good() {
        let blobs = object_store::memory::InMemory::new();
        let message = reply(vec![reference("invoice.pdf", "uploads/2/invoice.pdf")]);
        let error = load_attachments(&blobs, &message.attachments)
            .await
            .unwrap_err();
        assert!(!error.retryable);
        assert!(error.message.contains("\"invoice.pdf\""), "{error}");
        // The connector without blob storage fails such a reply the same way, before SMTP.
        let channel = Channel {
            id: ChannelId::new(),
            kind: inbox_core::envelope::ChannelKind::EMAIL,
            name: "support".into(),
            config: serde_json::to_value(config()).unwrap(),
            secret: String::new(),
            enabled: true,
            created_at: Utc::now(),
            rules: inbox_core::channel_rules::ChannelRules::default(),
            deleted_at: None,
        };
        let error = SmtpConnector.deliver(&channel, &message).await.unwrap_err();
        assert!(!error.retryable);
        assert!(error.message.contains("invoice.pdf"), "{error}");
    }

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject(Some("RE: x")), "RE: x");
        assert_eq!(reply_subject(Some("x")), "Re: x");
        assert_eq!(reply_subject(None), "Re: your message");
    }
}
