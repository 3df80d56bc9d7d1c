//! The `inbox` command line: one file per subcommand.

mod channel;
mod dead_letter;
mod migrate;
mod reports;
mod run;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use inbox_core::store::Store;

use inbox_app::app::{Application, Roles};
use inbox_app::config::Config;

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
    Core(ServiceArgs),
    /// Serve the agents' API (production; needs Kafka).
    Web(ServiceArgs),
    /// Serve inbound webhooks, read mailboxes and deliver replies (production; needs Kafka).
    Connectors(ServiceArgs),
    /// Create or upgrade the database schema.
    Migrate,
    /// Manage agents.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage channels.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Maintain the reports' figures.
    #[command(subcommand)]
    Reports(reports::ReportsCommand),
    /// Inspect inputs that could not be stored.
    #[command(subcommand)]
    DeadLetter(dead_letter::DeadLetterCommand),
    /// Measure throughput and latency.
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(inbox_bench::BenchCommand),
}

impl Cli {
    pub async fn execute(self) -> anyhow::Result<()> {
        let mut config = Config::from_env(self.config.as_deref())?;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        match self.command {
            Command::Run(args) => run::execute(config, args).await,
            Command::Core(args) => serve(config, args, Roles::CORE).await,
            Command::Web(args) => serve(config, args, Roles::WEB).await,
            Command::Connectors(args) => serve(config, args, Roles::CONNECTORS).await,
            Command::Migrate => migrate::execute(&config).await,
            Command::User(command) => user::execute(&config, command).await,
            Command::Channel(command) => channel::execute(&config, command).await,
            Command::DeadLetter(command) => dead_letter::execute(&config, command).await,
            Command::Reports(command) => reports::execute(&config, command).await,
            #[cfg(feature = "bench")]
            Command::Bench(command) => inbox_bench::execute(&config, command).await,
        }
    }
}

/// Options of the production services.
#[derive(Debug, clap::Args)]
struct ServiceArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "INBOX_LISTEN")]
    listen: Option<std::net::SocketAddr>,
}

/// Runs one production service (`inbox core|web|connectors`).
async fn serve(mut config: Config, args: ServiceArgs, roles: Roles) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    Application::build_with_roles(config, roles)
        .await?
        .run_until_stopped()
        .await
}

/// Opens the configured store, applying pending migrations.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.store()).await?)
}

/// The blob storage the server uses (a directory under the data dir).
fn blob_store(config: &Config) -> anyhow::Result<std::sync::Arc<dyn object_store::ObjectStore>> {
    use anyhow::Context;
    let dir = config.data_dir.join("blobs");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(std::sync::Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(&dir)?,
    ))
}
