//! Channel connectors. A channel kind is one module implementing [`Connector`]; the [`Registry`]
//! maps kinds to connectors and the [`runner`] delivers replies through them with retries.
//!
//! Connectors never touch the Store: they see channels through [`ChannelDirectory`] and talk to the
//! core only through the Bus.

pub mod email;
pub mod runner;
pub mod sources;
pub mod webhook;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use inbox_core::store::HealthReport;

/// Read access to the configured channels (added at runtime, so looked up on use).
#[async_trait]
pub trait ChannelDirectory: Send + Sync + Debug {
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, String>;

    /// Every configured channel, enabled or not.
    async fn channels(&self) -> Result<Vec<Channel>, String>;

    /// Records how a channel is doing (the channels page shows it); best effort.
    async fn report_health(&self, _channel: ChannelId, _report: HealthReport) {}
}

/// Where a source keeps its position (persisted only after the bus accepted what it read).
#[async_trait]
pub trait CursorStore: Send + Sync + Debug {
    async fn get(&self, channel: ChannelId, name: &str) -> Result<Option<String>, String>;
    async fn set(&self, channel: ChannelId, name: &str, value: &str) -> Result<(), String>;
}

/// What a running source may use: the bus, its cursor, and blob storage.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub bus: Arc<dyn inbox_core::bus::Bus>,
    pub cursors: Arc<dyn CursorStore>,
    pub blobs: Arc<dyn object_store::ObjectStore>,
}

/// A message accepted by the channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivered {
    /// The channel's id of the delivered message, when it tells us.
    pub external_id: Option<String>,
}

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Transient failures (timeouts, 5xx, rate limits) are retried; the others fail at once.
    pub retryable: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// One kind of channel.
#[async_trait]
pub trait Connector: Send + Sync + Debug {
    fn kind(&self) -> ChannelKind;

    /// Makes one attempt to deliver a reply on the channel. Retries are the runner's job.
    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError>;

    /// True when the kind polls its channel (a mailbox); push kinds (webhook) have no source.
    fn has_source(&self) -> bool {
        false
    }

    /// Reads the channel until `stop` fires; an error makes the supervisor restart it with backoff.
    async fn run_source(
        &self,
        _channel: Channel,
        _ctx: SourceContext,
        _stop: tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The connectors of this build, by kind.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    connectors: HashMap<ChannelKind, Arc<dyn Connector>>,
}

impl Registry {
    /// Every connector this build has, without blob storage: email replies with attachments
    /// fail (use [`Registry::with_builtin_blobs`]).
    pub fn with_builtin() -> Self {
        Self::with_builtin_blobs(Arc::new(object_store::memory::InMemory::new()))
    }

    /// Every connector this build has; attachments of replies are read from `blobs`.
    pub fn with_builtin_blobs(blobs: Arc<dyn object_store::ObjectStore>) -> Self {
        let mut registry = Registry::default();
        registry.register(Arc::new(webhook::WebhookConnector::new()));
        registry.register(Arc::new(email::EmailConnector::new(blobs)));
        registry
    }

    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.insert(connector.kind(), connector);
    }

    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(&kind)
    }
}
