//! The `inbox` command line: one file per subcommand.

mod bench;
mod channel;
mod connectors;
mod core;
mod dead_letter;
mod migrate;
mod run;
mod user;
mod web;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use inbox_core::store::Store;

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "inbox", version, about = "Omnichannel support inbox")]
pub struct Cli {
    /// Configuration file (TOML); `INBOX_*` environment variables override it.
    #[arg(long, global = true, env = "INBOX_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded SQLite store (ignored when INBOX_DATABASE_URL is set).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: API, webhooks, core and connectors.
    Run(run::RunArgs),
    /// Consume inbound events into the store and relay replies (production; needs Kafka).
    Core(core::ServiceArgs),
    /// Serve the agents' API (production; needs Kafka).
    Web(web::ServiceArgs),
    /// Serve inbound webhooks and deliver replies (production; needs Kafka).
    Connectors(connectors::ServiceArgs),
    /// Create or upgrade the database schema.
    Migrate,
    /// Manage agents.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage channels.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Inspect inputs that could not be stored.
    #[command(subcommand)]
    DeadLetter(dead_letter::DeadLetterCommand),
    /// Measure throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

impl Cli {
    pub async fn execute(self) -> anyhow::Result<()> {
        let mut config = Config::from_env(self.config.as_deref())?;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        match self.command {
            Command::Run(args) => run::execute(config, args).await,
            Command::Core(args) => core::execute(config, args).await,
            Command::Web(args) => web::execute(config, args).await,
            Command::Connectors(args) => connectors::execute(config, args).await,
            Command::Migrate => migrate::execute(&config).await,
            Command::User(command) => user::execute(&config, command).await,
            Command::Channel(command) => channel::execute(&config, command).await,
            Command::DeadLetter(command) => dead_letter::execute(&config, command).await,
            Command::Bench(command) => bench::execute(&config, command).await,
        }
    }
}

/// Opens the configured store, applying pending migrations.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.store()).await?)
}
