//! The one trait a channel kind implements.

use std::fmt::Debug;

use async_trait::async_trait;
use inbox_core::channel_catalog::{ConfigError, ConnectionReport, KindInfo};
use inbox_core::channel_rules::ChannelRules;
use inbox_core::envelope::{ChannelKind, InboundMessage, OutboundMessage};
use inbox_core::model::Channel;
use tokio_util::sync::CancellationToken;

use crate::{Delivered, DeliveryError, IntakeContext, SourceContext};

/// A channel as `inbox channel add <kind> …` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CliChannel {
    pub name: String,
    /// The kind's config, validated by [`Connector::validate`] before it is stored.
    pub config: serde_json::Value,
}

/// What `inbox channel sync` asks of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncRequest {
    /// The backfill window when the channel was never read (default: the channel's).
    pub since_days: Option<u32>,
}

/// What a foreground sync did.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    /// Items there were to read.
    pub total: usize,
    /// Items read and handed to the bus.
    pub fetched: usize,
    /// The backfill window was read (there was no cursor, or it no longer applied).
    pub backfill: bool,
    /// The cursor it left, as the kind describes it (email: `{"uid_validity", "uid"}`).
    pub cursor: serde_json::Map<String, serde_json::Value>,
    /// What was read, in words: "messages".
    pub items: &'static str,
    /// Which part was read: "the last 30 days", "new mail since the last read".
    pub window: String,
    /// Where the cursor is, in words: "the mailbox cursor is at UID 16".
    pub position: String,
}

/// One kind of channel: everything the product needs to know about it lives behind this trait,
/// in the kind's folder. Optional parts (push intake, a polling source, raw sources to re-read)
/// have defaults that say "none".
#[async_trait]
pub trait Connector: Send + Sync + Debug {
    fn kind(&self) -> ChannelKind;

    /// Name, icon, description and config fields (forms, docs, the API's kind list).
    fn info(&self) -> KindInfo;

    /// The funnel's rules for the kind's channels (stored with each channel at creation).
    fn rules(&self) -> ChannelRules {
        ChannelRules::CHANNEL_CHAT
    }

    /// Decodes and checks a config (see [`crate::parse_config`]); returns it as it is stored.
    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError>;

    /// Adds the kind's flags to `inbox channel add <kind>`.
    fn cli_args(&self, command: clap::Command) -> clap::Command;

    /// The channel the flags describe.
    fn channel_from_cli(&self, args: &clap::ArgMatches) -> Result<CliChannel, ConfigError>;

    /// The kind's push intake (served by `inbox run`, and by `inbox connectors` in production).
    fn intake(&self, _ctx: &IntakeContext) -> Option<axum::Router> {
        None
    }

    /// True when the kind reads its channel itself (a mailbox); push kinds have no source.
    fn has_source(&self) -> bool {
        false
    }

    /// Reads the channel until `stop` fires; an error makes the supervisor restart it with backoff.
    async fn run_source(
        &self,
        _channel: Channel,
        _ctx: SourceContext,
        _stop: CancellationToken,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Reads the channel now, in the foreground: the backfill window the first time, what
    /// arrived since otherwise, moving the same cursor as the running source (which goes on from
    /// there without duplicates). `None`: the kind has nothing to sync (push kinds).
    async fn sync(
        &self,
        _channel: &Channel,
        _ctx: &SourceContext,
        _request: SyncRequest,
        _progress: &dyn crate::SyncProgress,
        _stop: &CancellationToken,
    ) -> Option<Result<SyncOutcome, String>> {
        None
    }

    /// Makes one attempt to deliver a reply on the channel. Retries are the runner's job.
    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError>;

    /// Logs in / shakes hands with the channel's servers and says what works.
    async fn test_connection(&self, channel: &Channel) -> ConnectionReport;

    /// Re-reads a dead-lettered raw source (`payload` names it) with the kind's parser; `None`
    /// when the kind keeps no raw sources.
    async fn reparse(
        &self,
        _channel: &Channel,
        _payload: &str,
    ) -> Option<Result<InboundMessage, String>> {
        None
    }
}
