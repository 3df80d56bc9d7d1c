//! The email channel: IMAP in (`imap`), SMTP out (`smtp`), MIME → envelope (`parse`).

mod cli;
mod config;
pub mod imap;
pub mod parse;
pub mod sample;
pub mod smtp;

use std::sync::Arc;

use async_trait::async_trait;
use clap::FromArgMatches;
pub use cli::{EmailArgs, parse_days};
pub use config::{EmailConfig, SmtpAuth};
use inbox_core::channel_catalog::{
    ConfigError, ConfigField, ConnectionCheck, ConnectionReport, FieldInput, KindInfo,
};
use inbox_core::channel_rules::ChannelRules;
use inbox_core::envelope::{ChannelKind, InboundMessage, OutboundMessage};
use inbox_core::model::Channel;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{
    CliChannel, Connector, Delivered, DeliveryError, SourceContext, SyncOutcome, SyncRequest,
    decode_config, validated,
};

pub const KIND: ChannelKind = ChannelKind::EMAIL;

/// Email channels: read by IMAP, answered by SMTP with the attachments read from `blobs`.
#[derive(Debug, Clone)]
pub struct EmailConnector {
    blobs: Arc<dyn ObjectStore>,
}

impl EmailConnector {
    /// Replies' attachments are read from `blobs` (where the API stored the uploads).
    pub fn new(blobs: Arc<dyn ObjectStore>) -> Self {
        EmailConnector { blobs }
    }
}

/// Without blob storage (an empty in-memory store): replies with attachments fail.
impl Default for EmailConnector {
    fn default() -> Self {
        EmailConnector::new(Arc::new(object_store::memory::InMemory::new()))
    }
}

#[async_trait]
impl Connector for EmailConnector {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn info(&self) -> KindInfo {
        use FieldInput::*;
        KindInfo {
            kind: KIND,
            display_name: "Email",
            icon: "✉",
            description: "A support mailbox: mail is read by IMAP, replies go out by SMTP with \
                          the conversation's reply token.",
            fields: vec![
                ConfigField::new(
                    "address",
                    "Support address",
                    "Customers write to it; replies come from it.",
                    Email,
                    true,
                ),
                ConfigField::new("imap_host", "IMAP host", "", Text, true),
                ConfigField::new(
                    "imap_port",
                    "IMAP port",
                    "993 with TLS, 143 without.",
                    Number,
                    true,
                ),
                ConfigField::new(
                    "mailbox",
                    "Folder",
                    "The IMAP folder to read (INBOX).",
                    Text,
                    false,
                ),
                ConfigField::new("smtp_host", "SMTP host", "", Text, true),
                ConfigField::new(
                    "smtp_port",
                    "SMTP port",
                    "587 (STARTTLS) with TLS, 25 without.",
                    Number,
                    true,
                ),
                ConfigField::new("username", "Login", "For IMAP and SMTP.", Text, false),
                ConfigField::new(
                    "password_env",
                    "Password variable",
                    "The environment variable holding the password (never stored).",
                    SecretEnv,
                    true,
                ),
                ConfigField::new(
                    "smtp_auth",
                    "SMTP authentication",
                    "none for a relay on a trusted network; empty: whatever the server offers.",
                    Choice(&["none", "plain", "login"]),
                    false,
                ),
                ConfigField::new(
                    "smtp_username",
                    "SMTP login",
                    "When it is not the IMAP one.",
                    Text,
                    false,
                ),
                ConfigField::new(
                    "smtp_password_env",
                    "SMTP password variable",
                    "When it is not the IMAP one.",
                    SecretEnv,
                    false,
                ),
                ConfigField::new(
                    "tls",
                    "TLS",
                    "IMAPS and SMTP STARTTLS; off only on a trusted local network.",
                    Toggle,
                    false,
                ),
                ConfigField::new(
                    "tls_ca_file",
                    "CA file",
                    "PEM certificates of a private CA.",
                    Path,
                    false,
                ),
                ConfigField::new(
                    "since_days",
                    "Backfill days",
                    "Mail of this many days is read on first start.",
                    Number,
                    false,
                ),
            ],
            intake_path: None,
            embed_snippet: None,
            uses_secret: false,
        }
    }

    fn rules(&self) -> ChannelRules {
        ChannelRules::MAIL
    }

    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        validated::<EmailConfig>(config)
    }

    fn cli_args(&self, command: clap::Command) -> clap::Command {
        <EmailArgs as clap::Args>::augment_args(command)
    }

    fn channel_from_cli(&self, args: &clap::ArgMatches) -> Result<CliChannel, ConfigError> {
        let channel = EmailArgs::from_arg_matches(args)
            .map_err(|e| ConfigError::new("arguments", e.to_string()))?
            .into_channel()?;
        Ok(CliChannel {
            config: self.validate(&channel.config)?,
            ..channel
        })
    }

    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        smtp::send(channel, message, self.blobs.as_ref()).await
    }

    fn has_source(&self) -> bool {
        true
    }

    async fn run_source(
        &self,
        channel: Channel,
        ctx: SourceContext,
        stop: CancellationToken,
    ) -> Result<(), String> {
        let config: EmailConfig =
            decode_config(&channel.config).map_err(|e| format!("channel config: {e}"))?;
        imap::run(channel, config, ctx, stop).await
    }

    async fn sync(
        &self,
        channel: &Channel,
        ctx: &SourceContext,
        request: SyncRequest,
        progress: &dyn crate::SyncProgress,
        stop: &CancellationToken,
    ) -> Option<Result<SyncOutcome, String>> {
        let mut config: EmailConfig = match decode_config(&channel.config) {
            Ok(config) => config,
            Err(e) => return Some(Err(format!("channel config: {e}"))),
        };
        if let Some(days) = request.since_days {
            config.since_days = days;
        }
        let report = imap::sync(channel, &config, ctx, progress, stop).await;
        Some(report.map(|report| {
            let mut cursor = serde_json::Map::new();
            cursor.insert("uid_validity".into(), report.position.uid_validity.into());
            cursor.insert("uid".into(), report.position.uid.into());
            SyncOutcome {
                total: report.total,
                fetched: report.fetched,
                backfill: report.backfill,
                cursor,
                items: "messages",
                window: if report.backfill {
                    format!("the last {} days", config.since_days)
                } else {
                    "new mail since the last read".to_owned()
                },
                position: format!("the mailbox cursor is at UID {}", report.position.uid),
            }
        }))
    }

    /// Logs in to IMAP and selects the folder, then greets and authenticates to SMTP.
    async fn test_connection(&self, channel: &Channel) -> ConnectionReport {
        let config: EmailConfig = match decode_config(&channel.config) {
            Ok(config) => config,
            Err(e) => {
                return ConnectionReport::of(vec![ConnectionCheck::failed(
                    "config",
                    e.to_string(),
                )]);
            }
        };
        let imap = match imap::check(&config).await {
            Ok(messages) => ConnectionCheck::passed(
                "imap",
                format!(
                    "logged in to {}:{}, {} holds {messages} messages",
                    config.imap_host, config.imap_port, config.mailbox
                ),
            ),
            Err(e) => ConnectionCheck::failed("imap", e),
        };
        let smtp = match smtp::check(&config).await {
            Ok(()) => ConnectionCheck::passed(
                "smtp",
                format!(
                    "{}:{} accepted the session",
                    config.smtp_host, config.smtp_port
                ),
            ),
            Err(e) => ConnectionCheck::failed("smtp", e),
        };
        ConnectionReport::of(vec![imap, smtp])
    }

    /// A dead-lettered mail is kept as `raw/<sha256>.eml` in blob storage.
    async fn reparse(
        &self,
        channel: &Channel,
        payload: &str,
    ) -> Option<Result<InboundMessage, String>> {
        if !(payload.starts_with("raw/") && payload.ends_with(".eml")) {
            return None;
        }
        Some(imap::reparse(channel, self.blobs.as_ref(), payload).await)
    }
}
