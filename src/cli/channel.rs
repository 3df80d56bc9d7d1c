//! `inbox channel add|list|remove`: channels are picked up by a running server without a restart.

use clap::{Args, Subcommand};
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use serde_json::json;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel.
    #[command(subcommand)]
    Add(AddCommand),
    /// List the channels.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a channel: it stops receiving and sending; its history stays.
    Remove {
        /// The channel id.
        id: ChannelId,
    },
}

#[derive(Debug, Subcommand)]
pub enum AddCommand {
    /// A generic signed webhook channel.
    Webhook(WebhookArgs),
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    #[arg(long)]
    name: String,
    /// Where replies are POSTed (signed JSON).
    #[arg(long)]
    outbound_url: Option<String>,
    /// Print `{"id":…,"secret":…}` as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn execute(config: &Config, command: ChannelCommand) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    match command {
        ChannelCommand::Add(AddCommand::Webhook(args)) => {
            if let Some(url) = &args.outbound_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                anyhow::bail!("--outbound-url: must be an http(s) URL");
            }
            let secret = inbox_connectors::webhook::new_secret();
            let channel = store
                .create_channel(
                    ChannelKind::Webhook,
                    &args.name,
                    json!({"outbound_url": args.outbound_url}),
                    &secret,
                )
                .await?;
            if args.json {
                println!("{}", json!({"id": channel.id, "secret": secret}));
            } else {
                println!("Created webhook channel {} ({}).", channel.name, channel.id);
                println!(
                    "Inbound URL: {}/hooks/{}",
                    config.base_url(config.listen),
                    channel.id
                );
                println!("Signing secret (shown once): {secret}");
            }
        }
        ChannelCommand::List { json } => {
            let channels = store.channels().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&channels)?);
            } else {
                println!("{:<36}  {:<8}  {:<8}  name", "id", "kind", "state");
                for c in channels {
                    let state = if c.enabled { "enabled" } else { "disabled" };
                    println!(
                        "{:<36}  {:<8}  {:<8}  {}",
                        c.id,
                        c.kind.as_str(),
                        state,
                        c.name
                    );
                }
            }
        }
        ChannelCommand::Remove { id } => {
            if !store.disable_channel(id).await? {
                anyhow::bail!("no channel {id}");
            }
            println!("Disabled channel {id}.");
        }
    }
    store.close().await;
    Ok(())
}
