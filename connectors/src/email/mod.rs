//! The email channel: IMAP in (`imap`), SMTP out (`smtp`), MIME → envelope (`parse`).

mod config;
pub mod imap;
pub mod parse;
pub mod sample;
pub mod smtp;

use async_trait::async_trait;
pub use config::EmailConfig;
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::model::Channel;
use tokio_util::sync::CancellationToken;

use crate::{Connector, Delivered, DeliveryError, SourceContext};

/// Email channels: read by IMAP, answered by SMTP.
#[derive(Debug, Clone, Default)]
pub struct EmailConnector;

#[async_trait]
impl Connector for EmailConnector {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        smtp::SmtpConnector.deliver(channel, message).await
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
        let config: EmailConfig = serde_json::from_value(channel.config.clone())
            .map_err(|e| format!("channel config: {e}"))?;
        imap::run(channel, config, ctx, stop).await
    }
}
