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
    /// A support mailbox: IMAP in, SMTP out.
    Email(EmailArgs),
}

#[derive(Debug, Args)]
pub struct EmailArgs {
    /// The support address customers write to; replies are sent from it.
    #[arg(long)]
    address: String,
    /// Channel name (defaults to the address).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    imap_host: String,
    /// Default: 993 with TLS, 143 without.
    #[arg(long)]
    imap_port: Option<u16>,
    /// IMAP folder to read.
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    #[arg(long)]
    smtp_host: String,
    /// Default: 587 with TLS (STARTTLS), 25 without.
    #[arg(long)]
    smtp_port: Option<u16>,
    /// Login for IMAP and SMTP (defaults to the address).
    #[arg(long)]
    username: Option<String>,
    /// Environment variable that holds the password (never stored in the database).
    #[arg(long)]
    password_env: String,
    /// TLS (the default).
    #[arg(long, conflicts_with = "plain")]
    tls: bool,
    /// No TLS: only for servers on a trusted local network.
    #[arg(long)]
    plain: bool,
    /// Backfill window at first start, e.g. 30d.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Print `{"id":…}` as JSON.
    #[arg(long)]
    json: bool,
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
        ChannelCommand::Add(AddCommand::Email(args)) => {
            let address = inbox_core::identity::EmailAddress::parse(&args.address)
                .map_err(|e| anyhow::anyhow!("--address: {e}"))?;
            let since_days: u32 = args
                .since
                .strip_suffix('d')
                .unwrap_or(&args.since)
                .parse()
                .map_err(|_| anyhow::anyhow!("--since: a number of days like 30d"))?;
            let tls = !args.plain;
            let config = inbox_connectors::email::EmailConfig {
                address: address.to_string(),
                display_name: None,
                imap_host: args.imap_host,
                imap_port: args.imap_port.unwrap_or(if tls { 993 } else { 143 }),
                mailbox: args.mailbox,
                smtp_host: args.smtp_host,
                smtp_port: args.smtp_port.unwrap_or(if tls { 587 } else { 25 }),
                username: args.username.or_else(|| Some(address.to_string())),
                password_env: Some(args.password_env),
                password_file: None,
                tls,
                since_days,
                message_id_domain: None,
            };
            let channel = store
                .create_channel(
                    ChannelKind::Email,
                    args.name.as_deref().unwrap_or(address.as_str()),
                    serde_json::to_value(&config)?,
                    &inbox_connectors::webhook::new_secret(),
                )
                .await?;
            if args.json {
                println!("{}", json!({"id": channel.id}));
            } else {
                println!("Created email channel {} ({}).", channel.name, channel.id);
                println!("A running server starts reading the mailbox within seconds.");
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
