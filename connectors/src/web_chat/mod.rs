//! Website chat: the product's own widget (`widget.js`, in a shadow root on the customer's site)
//! talks to the intake (`intake`); visitors' messages go through the funnel like any channel's,
//! and agents' replies are written to the visitor's chat log (`log`), which the widget follows
//! live. docs/channels/web-chat.md says how to embed it.

mod config;
mod intake;
mod limits;
pub mod log;
pub mod visitor;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
pub use config::{FormField, WebChatArgs, WebChatConfig, normalize_origin};
use inbox_core::channel_catalog::{
    ConfigError, ConfigField, ConnectionCheck, ConnectionReport, FieldInput, KindInfo,
};
use inbox_core::channel_rules::ChannelRules;
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::model::Channel;
use object_store::ObjectStore;

use self::log::{Author, ChatKey, ChatLog, Entry};
use crate::{
    ChannelDirectory, CliChannel, Connector, Delivered, DeliveryError, channel_from_args,
    decode_config, validated,
};

pub const KIND: ChannelKind = ChannelKind::named("web_chat");

/// The snippet a site embeds (`{base}` the product's public URL, `{channel_id}` the channel).
pub const EMBED_SNIPPET: &str =
    r#"<script src="{base}/widget.js" data-channel="{channel_id}" async></script>"#;

/// Website chat channels; the chat logs live in `blobs`.
#[derive(Debug, Clone)]
pub struct WebChatConnector {
    log: ChatLog,
    /// Sends the email fallback.
    email: crate::email::EmailConnector,
    /// The channels (for the email fallback's channel), known once the intake is served: the
    /// process that serves the widget also delivers its replies.
    directory: Arc<OnceLock<Arc<dyn ChannelDirectory>>>,
}

impl WebChatConnector {
    pub fn new(blobs: Arc<dyn ObjectStore>) -> Self {
        WebChatConnector {
            log: ChatLog::new(blobs.clone()),
            email: crate::email::EmailConnector::new(blobs),
            directory: Arc::new(OnceLock::new()),
        }
    }

    /// Also sends the reply by email when the visitor has gone and left an address (a proven
    /// one, else the pre-chat form's) and the channel names an email channel for it.
    async fn email_fallback(
        &self,
        channel: &Channel,
        config: &WebChatConfig,
        key: &ChatKey,
        message: &OutboundMessage,
    ) -> Result<(), DeliveryError> {
        let Some(fallback) = config.email_fallback_channel else {
            return Ok(());
        };
        // Streams note the visitor every 30 s: a shorter window would miss those elsewhere.
        let window = chrono::Duration::minutes(i64::from(config.away_after_minutes))
            .max(chrono::Duration::seconds(45));
        if self
            .log
            .present(key, window)
            .await
            .map_err(DeliveryError::transient)?
        {
            return Ok(());
        }
        let address = match message.to.email.clone() {
            Some(email) => Some(email),
            None => {
                self.log
                    .profile(key)
                    .await
                    .map_err(DeliveryError::transient)?
                    .left_email
            }
        };
        let Some(address) = address else {
            return Ok(());
        };
        let directory = self.directory.get().ok_or_else(|| {
            DeliveryError::transient("the email fallback needs this process to serve the widget")
        })?;
        let email_channel = directory
            .channel(fallback)
            .await
            .map_err(DeliveryError::transient)?
            .filter(|c| c.kind == crate::email::KIND && c.enabled && c.deleted_at.is_none());
        let Some(email_channel) = email_channel else {
            tracing::warn!(channel_id = %channel.id, fallback_channel = %fallback, "The email fallback channel is not an enabled email channel; the reply waits in the chat only.");
            return Ok(());
        };
        let mut mail = message.clone();
        mail.channel_id = email_channel.id;
        mail.channel_kind = crate::email::KIND;
        mail.to = inbox_core::envelope::Party {
            handle: address.clone(),
            email: Some(address),
            name: message.to.name.clone(),
            phone: None,
        };
        mail.thread.subject = Some(format!("Your chat with {}", channel.name));
        match self.email.deliver(&email_channel, &mail).await {
            Ok(_) => {
                tracing::info!(channel_id = %channel.id, message_id = %message.id.0, "Reply also sent by email: the visitor has gone.");
                Ok(())
            }
            // The chat has it: a refused address is said, not retried.
            Err(e) if !e.retryable => {
                tracing::warn!(channel_id = %channel.id, message_id = %message.id.0, error = %e, "The email fallback was refused.");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Connector for WebChatConnector {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn info(&self) -> KindInfo {
        use FieldInput::*;
        KindInfo {
            kind: KIND,
            display_name: "Website chat",
            icon: "⌂",
            description: "A chat bubble on your own website: visitors write, agents answer \
                          live from the inbox.",
            fields: vec![
                ConfigField::new(
                    "origins",
                    "Sites",
                    "Where the widget is embedded (https://shop.example), several separated by \
                     commas or spaces: calls from other sites are refused.",
                    List,
                    true,
                ),
                ConfigField::new(
                    "greeting",
                    "Greeting",
                    "Shown when a visitor opens the chat.",
                    Text,
                    false,
                ),
                ConfigField::new(
                    "away_text",
                    "Away text",
                    "Shown under the greeting, e.g. when you usually answer.",
                    Text,
                    false,
                ),
                ConfigField::new(
                    "accent_color",
                    "Accent color",
                    "The widget's color, #rrggbb.",
                    Text,
                    false,
                ),
                ConfigField::new(
                    "name_field",
                    "Ask for a name",
                    "The pre-chat form's name field.",
                    Choice(&["off", "optional", "required"]),
                    false,
                ),
                ConfigField::new(
                    "email_field",
                    "Ask for an email",
                    "The pre-chat form's email field (never taken as verified).",
                    Choice(&["off", "optional", "required"]),
                    false,
                ),
            ],
            intake_path: None,
            embed_snippet: Some(EMBED_SNIPPET),
            uses_secret: true,
        }
    }

    fn rules(&self) -> ChannelRules {
        ChannelRules::CHANNEL_CHAT
    }

    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        validated::<WebChatConfig>(config)
    }

    fn cli_args(&self, command: clap::Command) -> clap::Command {
        <WebChatArgs as clap::Args>::augment_args(command)
    }

    fn channel_from_cli(&self, args: &clap::ArgMatches) -> Result<CliChannel, ConfigError> {
        channel_from_args::<WebChatArgs>(args)
    }

    fn intake(&self, ctx: &crate::IntakeContext) -> Option<axum::Router> {
        let _ = self.directory.set(ctx.directory.clone());
        Some(intake::router(ctx.clone(), self.log.clone()))
    }

    /// Writes the reply to the visitor's chat log, where the widget shows it (live when open,
    /// on the next visit otherwise), and by email too when the visitor has gone. Named by the time it is written, so an open stream that
    /// already showed later visitor messages still gets it; a retried delivery finds the entry
    /// by the message id and writes nothing twice.
    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        let config: WebChatConfig = decode_config(&channel.config)
            .map_err(|e| DeliveryError::permanent(format!("channel config: {e}")))?;
        let key = ChatKey {
            channel: channel.id,
            log: visitor::log_key(&message.to.handle),
        };
        let message_id = message.id.0.simple().to_string();
        let known = self
            .log
            .by_client_id(&key, &message_id)
            .await
            .map_err(DeliveryError::transient)?;
        if known.is_none() {
            let mut entry = Entry::new(Author::Agent, message.body.text.clone());
            // Shown at the time the agent wrote it: replies may be delivered out of order.
            entry.at = message.created_at;
            entry.agent = message.author.clone();
            entry.files = message.attachments.iter().map(|a| a.name.clone()).collect();
            entry.client_id = Some(message_id.clone());
            self.log
                .append(&key, entry)
                .await
                .map_err(DeliveryError::transient)?;
        }
        self.email_fallback(channel, &config, &key, message).await?;
        Ok(Delivered {
            external_id: Some(message_id),
        })
    }

    /// The config reads, and the chat logs can be written.
    async fn test_connection(&self, channel: &Channel) -> ConnectionReport {
        let config = decode_config::<WebChatConfig>(&channel.config);
        ConnectionReport::of(vec![match config {
            Ok(config) => ConnectionCheck::passed(
                "config",
                format!("the widget may be used on {}", config.origins.join(", ")),
            ),
            Err(e) => ConnectionCheck::failed("config", e.to_string()),
        }])
    }
}
