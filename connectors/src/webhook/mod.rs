//! The generic signed webhook channel (docs/channels/webhook.md): an integration POSTs messages to
//! `/hooks/{channel_id}` (`intake`), replies are POSTed back signed to its `outbound_url` (`sink`).

mod config;
pub mod intake;
pub mod signing;
mod sink;

use async_trait::async_trait;
use inbox_core::channel_catalog::{
    ConfigError, ConfigField, ConnectionCheck, ConnectionReport, FieldInput, KindInfo,
};
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::model::Channel;

pub use config::{WebhookArgs, WebhookConfig};
pub use intake::MAX_BODY_BYTES;
pub use signing::{SIGNATURE_HEADER, new_secret, sign, verify};
pub use sink::WebhookSink;

use crate::{
    CliChannel, Connector, Delivered, DeliveryError, IntakeContext, channel_from_args,
    parse_config, validated,
};

pub const KIND: ChannelKind = ChannelKind::WEBHOOK;

/// The webhook kind.
#[derive(Debug, Clone, Default)]
pub struct WebhookConnector {
    sink: WebhookSink,
}

impl WebhookConnector {
    pub fn new() -> Self {
        WebhookConnector {
            sink: WebhookSink::new(),
        }
    }
}

#[async_trait]
impl Connector for WebhookConnector {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn info(&self) -> KindInfo {
        KindInfo {
            kind: KIND,
            display_name: "Webhook",
            icon: "⚡",
            description: "Any system that can POST signed JSON: messages in at /hooks/{id}, \
                          replies out to your URL.",
            fields: vec![ConfigField {
                name: "outbound_url",
                label: "Reply URL",
                help: "Where replies are POSTed, signed (optional: an inbound-only channel).",
                input: FieldInput::Url,
                required: false,
            }],
            intake_path: Some("/hooks/{channel_id}"),
            embed_snippet: None,
            uses_secret: true,
        }
    }

    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        validated::<WebhookConfig>(config)
    }

    fn cli_args(&self, command: clap::Command) -> clap::Command {
        <WebhookArgs as clap::Args>::augment_args(command)
    }

    fn channel_from_cli(&self, args: &clap::ArgMatches) -> Result<CliChannel, ConfigError> {
        channel_from_args::<WebhookArgs>(args)
    }

    fn intake(&self, ctx: &IntakeContext) -> Option<axum::Router> {
        Some(intake::router(ctx.clone()))
    }

    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        self.sink.deliver(channel, message).await
    }

    /// The inbound side needs nothing to test; the outbound URL must answer HTTP.
    async fn test_connection(&self, channel: &Channel) -> ConnectionReport {
        let mut checks = vec![ConnectionCheck::passed(
            "intake",
            format!("POST /hooks/{} accepts signed messages", channel.id),
        )];
        let config: WebhookConfig = match parse_config(&channel.config) {
            Ok(config) => config,
            Err(e) => {
                checks.push(ConnectionCheck::failed("config", e.to_string()));
                return ConnectionReport::of(checks);
            }
        };
        checks.push(match config.outbound_url {
            None => ConnectionCheck::passed("replies", "no outbound_url: inbound only"),
            Some(url) => match self.sink.http.head(&url).send().await {
                Ok(response) if !response.status().is_server_error() => ConnectionCheck::passed(
                    "replies",
                    format!("{url} answered HTTP {}", response.status()),
                ),
                Ok(response) => ConnectionCheck::failed(
                    "replies",
                    format!("{url} answered HTTP {}", response.status()),
                ),
                Err(e) => ConnectionCheck::failed("replies", format!("{url}: {e}")),
            },
        });
        ConnectionReport::of(checks)
    }
}
