//! What connectors get from the rest of the product: channels, cursors, the bus and blob storage.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use inbox_core::store::HealthReport;

/// Read access to the configured channels (added at runtime, so looked up on use).
#[async_trait]
pub trait ChannelDirectory: Send + Sync + Debug {
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, String>;

    /// Every configured channel, enabled or not, deleted or not.
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
    /// Base URL under which this server is reached from outside (webhook registrations).
    pub public_url: String,
}

impl SourceContext {
    /// Writes a blob (an attachment, a raw source) before the message naming it is handed over.
    pub async fn put_blob(&self, path: &str, bytes: Vec<u8>) -> Result<(), String> {
        put_blob(&self.blobs, path, bytes).await
    }
}

/// Writes a blob, the error naming its path.
pub async fn put_blob(
    blobs: &Arc<dyn object_store::ObjectStore>,
    path: &str,
    bytes: Vec<u8>,
) -> Result<(), String> {
    blobs
        .put(&object_store::path::Path::from(path), bytes.into())
        .await
        .map(|_| ())
        .map_err(|e| format!("blob {path}: {e}"))
}

/// What a kind's push intake (its HTTP routes) may use.
#[derive(Debug, Clone)]
pub struct IntakeContext {
    pub directory: Arc<dyn ChannelDirectory>,
    pub bus: Arc<dyn inbox_core::bus::Bus>,
    /// Where intakes keep files and raw sources before handing a message over.
    pub blobs: Arc<dyn object_store::ObjectStore>,
}

/// Told how a foreground sync (`inbox channel sync`) advances: how many items it has to read,
/// then each one read.
pub trait SyncProgress: Send + Sync {
    /// `total` items to read (the backfill window, or what is above the cursor).
    fn started(&self, total: u64);
    /// One more item handed to the bus (stored or dead-lettered).
    fn fetched(&self);
}

/// No progress to show (the running source).
impl SyncProgress for () {
    fn started(&self, _total: u64) {}
    fn fetched(&self) {}
}
