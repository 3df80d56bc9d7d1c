//! The kinds of this build. Adding a kind is its folder plus one line in [`Registry::with_builtin_blobs`].

use std::sync::Arc;

use async_trait::async_trait;
use inbox_core::channel_catalog::{
    ChannelCatalog, ConfigError, ConnectionCheck, ConnectionReport, KindInfo, ValidConfig,
};
use inbox_core::envelope::{ChannelKind, InboundMessage};
use inbox_core::model::Channel;

use crate::{Connector, IntakeContext, email, mastodon, telegram, web_chat, webhook};

/// The connectors of this build, in the order they are listed.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    connectors: Vec<Arc<dyn Connector>>,
}

impl Registry {
    /// Every kind, without blob storage: email replies with attachments fail (use
    /// [`Registry::with_builtin_blobs`]). Enough for the CLI's flags and for validating configs.
    pub fn with_builtin() -> Self {
        Self::with_builtin_blobs(Arc::new(object_store::memory::InMemory::new()))
    }

    /// Every kind; attachments of replies and raw sources are read from `blobs`.
    pub fn with_builtin_blobs(blobs: Arc<dyn object_store::ObjectStore>) -> Self {
        let mut registry = Registry::default();
        registry.register(Arc::new(webhook::WebhookConnector::new()));
        registry.register(Arc::new(email::EmailConnector::new(blobs.clone())));
        registry.register(Arc::new(telegram::TelegramConnector::new(blobs.clone())));
        registry.register(Arc::new(web_chat::WebChatConnector::new(blobs.clone())));
        registry.register(Arc::new(mastodon::MastodonConnector::new(blobs)));
        registry
    }

    /// Adds a kind, replacing one of the same name.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.retain(|c| c.kind() != connector.kind());
        self.connectors.push(connector);
    }

    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Connector>> {
        self.connectors.iter().find(|c| c.kind() == kind)
    }

    pub fn connectors(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.connectors.iter()
    }

    /// Every kind's push intake, merged.
    pub fn intake_routes(&self, ctx: &IntakeContext) -> axum::Router {
        self.connectors
            .iter()
            .filter_map(|c| c.intake(ctx))
            .fold(axum::Router::new(), axum::Router::merge)
    }
}

#[async_trait]
impl ChannelCatalog for Registry {
    fn kinds(&self) -> Vec<KindInfo> {
        self.connectors.iter().map(|c| c.info()).collect()
    }

    fn validate(
        &self,
        kind: ChannelKind,
        config: &serde_json::Value,
    ) -> Result<ValidConfig, ConfigError> {
        let connector = self.get(kind).ok_or_else(|| {
            let known: Vec<String> = self
                .connectors
                .iter()
                .map(|c| c.kind().to_string())
                .collect();
            ConfigError::new(
                "kind",
                format!("unknown kind {kind}; this build has {}", known.join(", ")),
            )
        })?;
        Ok(ValidConfig {
            config: connector.validate(config)?,
            rules: connector.rules(),
        })
    }

    async fn test(&self, channel: &Channel) -> ConnectionReport {
        match self.get(channel.kind) {
            Some(connector) => connector.test_connection(channel).await,
            None => ConnectionReport::of(vec![ConnectionCheck::failed(
                "kind",
                format!("no connector for {} channels in this build", channel.kind),
            )]),
        }
    }

    async fn reparse(
        &self,
        channel: &Channel,
        payload: &str,
    ) -> Option<Result<InboundMessage, String>> {
        self.get(channel.kind)?.reparse(channel, payload).await
    }
}
