//! Channel connectors. A channel kind is one folder implementing [`Connector`] (its typed config,
//! intake, source, sink, connection test and funnel rules); the [`Registry`] lists the kinds, and
//! the CLI, the channels API and the admin pages are driven by it. The [`runner`] delivers replies
//! with retries, [`sources`] supervises the polling sources.
//!
//! Connectors never touch the Store: they see channels through [`ChannelDirectory`] and talk to the
//! core only through the Bus.

mod blob_path;
mod config;
mod context;
mod delivery;
pub mod email;
mod html;
mod kind;
pub mod mastodon;
mod registry;
pub mod runner;
pub mod sources;
pub mod telegram;
pub mod web_chat;
pub mod webhook;

pub use config::{
    KindArgs, KindConfig, channel_from_args, decode_config, parse_config, read_secret, validated,
};
pub use context::{ChannelDirectory, CursorStore, IntakeContext, SourceContext, SyncProgress};
pub use delivery::{Delivered, DeliveryError};
pub use kind::{CliChannel, Connector, SyncOutcome, SyncRequest};
pub use registry::Registry;
