//! The connectors' view of the configured channels, read from the store with a short cache:
//! channels are added at runtime (CLI, API) and picked up within [`TTL`] without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use inbox_connectors::{ChannelDirectory, CursorStore};
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use inbox_core::store::{HealthReport, Store};
use tokio::sync::RwLock;

const TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct StoreDirectory {
    store: Store,
    cache: Arc<RwLock<HashMap<ChannelId, (Instant, Channel)>>>,
}

impl StoreDirectory {
    pub fn new(store: Store) -> Self {
        StoreDirectory {
            store,
            cache: Arc::default(),
        }
    }
}

#[async_trait]
impl ChannelDirectory for StoreDirectory {
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, String> {
        if let Some((at, channel)) = self.cache.read().await.get(&id)
            && at.elapsed() < TTL
        {
            return Ok(Some(channel.clone()));
        }
        let channel = self.store.channel(id).await.map_err(|e| e.to_string())?;
        // Only real channels are cached: random ids from outside must not grow the map.
        if let Some(channel) = &channel {
            self.cache
                .write()
                .await
                .insert(id, (Instant::now(), channel.clone()));
        }
        Ok(channel)
    }

    async fn channels(&self) -> Result<Vec<Channel>, String> {
        self.store.channels().await.map_err(|e| e.to_string())
    }

    async fn report_health(&self, channel: ChannelId, report: HealthReport) {
        if let Err(error) = self.store.report_health(channel, &report).await {
            tracing::warn!(%channel, %error, "Channel health not recorded.");
        }
    }
}

/// Source cursors kept in the store.
#[derive(Debug, Clone)]
pub struct StoreCursors(pub Store);

#[async_trait]
impl CursorStore for StoreCursors {
    async fn get(&self, channel: ChannelId, name: &str) -> Result<Option<String>, String> {
        self.0
            .cursor(channel, name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set(&self, channel: ChannelId, name: &str, value: &str) -> Result<(), String> {
        self.0
            .set_cursor(channel, name, value)
            .await
            .map_err(|e| e.to_string())?;
        // A cursor moves only after the bus took what was read: the source is healthy.
        if let Err(error) = self.0.report_health(channel, &HealthReport::Progress).await {
            tracing::warn!(%channel, %error, "Channel health not recorded.");
        }
        Ok(())
    }
}
