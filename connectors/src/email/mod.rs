//! The email channel: IMAP in (`imap`), SMTP out (`smtp`), MIME → envelope (`parse`).

mod config;
pub mod imap;
pub mod parse;
pub mod sample;
pub mod smtp;

use std::sync::Arc;

use async_trait::async_trait;
pub use config::EmailConfig;
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::model::Channel;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{Connector, Delivered, DeliveryError, SourceContext};

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
        ChannelKind::Email
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
        let config: EmailConfig = serde_json::from_value(channel.config.clone())
            .map_err(|e| format!("channel config: {e}"))?;
        imap::run(channel, config, ctx, stop).await
    }
}
