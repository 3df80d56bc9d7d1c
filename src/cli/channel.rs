//! `inbox channel add|list|remove|sync`: channels are picked up by a running server without a
//! restart; `sync` reads a mailbox in the foreground with a progress bar.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use inbox_connectors::SourceContext;
use inbox_connectors::email::imap::{self, SyncProgress};
use inbox_core::bus::Bus;
use inbox_core::bus::kafka::KafkaBus;
use inbox_core::bus::local::LocalBus;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_core::store::Store;
use inbox_core::worker::{IngestWorker, WorkerSettings};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::directory::StoreCursors;

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
    /// Read an email channel's mailbox now, in the foreground, with a progress bar: the backfill
    /// window the first time, the mail that arrived since otherwise. It moves the same cursor
    /// as the running server, which continues after it without duplicates.
    Sync(SyncArgs),
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The channel id.
    id: ChannelId,
    /// Backfill window when the mailbox was never read, e.g. 30d (default: the channel's).
    #[arg(long)]
    since: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
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
    /// PEM file of CA certificates to trust besides the public roots (a private CA).
    #[arg(long, conflicts_with = "plain")]
    tls_ca_file: Option<std::path::PathBuf>,
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
            let since_days = parse_days(&args.since)?;
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
                tls_ca_file: args.tls_ca_file,
                since_days,
                message_id_domain: None,
            };
            config
                .extra_roots()
                .map_err(|e| anyhow::anyhow!("--tls-ca-file: {e}"))?;
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
        ChannelCommand::Sync(args) => {
            let result = sync(config, &store, args).await;
            store.close().await;
            return result;
        }
    }
    store.close().await;
    Ok(())
}

/// `30d` or `30` → 30.
fn parse_days(raw: &str) -> anyhow::Result<u32> {
    raw.strip_suffix('d')
        .unwrap_or(raw)
        .parse()
        .map_err(|_| anyhow::anyhow!("--since: a number of days like 30d"))
}

/// The progress bar of `channel sync`: messages read of those in the window.
struct Bar(indicatif::ProgressBar);

impl SyncProgress for Bar {
    fn started(&self, total: u64) {
        self.0.set_length(total);
    }

    fn fetched(&self) {
        self.0.inc(1);
    }
}

/// Reads the mailbox through the same ingest path as the server: with Kafka, the messages go to
/// the inbound topic (stored by `inbox core`); otherwise an in-process bus and ingest workers
/// store them here, as `inbox run` does. The cursor moves only after each message was accepted.
async fn sync(config: &Config, store: &Store, args: SyncArgs) -> anyhow::Result<()> {
    let channel = store
        .channel(args.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no channel {}", args.id))?;
    if channel.kind != ChannelKind::Email {
        anyhow::bail!(
            "channel {} is a {} channel; only email channels have a mailbox to sync",
            channel.id,
            channel.kind.as_str()
        );
    }
    if !channel.enabled {
        anyhow::bail!("channel {} is disabled", channel.id);
    }
    let mut email: inbox_connectors::email::EmailConfig =
        serde_json::from_value(channel.config.clone()).context("the channel's config")?;
    if let Some(since) = &args.since {
        email.since_days = parse_days(since)?;
    }

    // The same blob directory as the server's.
    let blob_dir = config.data_dir.join("blobs");
    std::fs::create_dir_all(&blob_dir)
        .with_context(|| format!("cannot create {}", blob_dir.display()))?;
    let blobs: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(&blob_dir)?,
    );
    let core_stop = CancellationToken::new();
    let mut workers = Vec::new();
    let bus: Arc<dyn Bus> = match &config.kafka {
        Some(kafka) => Arc::new(KafkaBus::new(kafka)?),
        None => {
            let (bus, partitions, _outbound) = LocalBus::new(config.partitions());
            let bus: Arc<dyn Bus> = Arc::new(bus);
            for partition in partitions {
                let worker = IngestWorker {
                    store: store.clone(),
                    bus: bus.clone(),
                    ingest: config.ingest(),
                    settings: WorkerSettings::default(),
                };
                workers.push(tokio::spawn(worker.run(partition, core_stop.clone())));
            }
            bus
        }
    };
    let ctx = SourceContext {
        bus,
        cursors: Arc::new(StoreCursors(store.clone())),
        blobs,
    };

    let bar = indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
        "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} messages ({eta} left)",
    )?);
    bar.set_message(email.address.clone());
    let stop = CancellationToken::new();
    let interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let outcome = imap::sync(&channel, &email, &ctx, &Bar(bar.clone()), &stop).await;
    bar.finish_and_clear();
    // Every message was acknowledged (stored or on Kafka) before the cursor moved past it.
    core_stop.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    let report = outcome.map_err(|e| anyhow::anyhow!("sync of {}: {e}", email.address))?;
    let where_to = if config.kafka.is_some() {
        "handed to Kafka"
    } else {
        "stored"
    };
    if args.json {
        println!(
            "{}",
            json!({
                "channel": channel.id,
                "total": report.total,
                "fetched": report.fetched,
                "backfill": report.backfill,
                "uid_validity": report.position.uid_validity,
                "uid": report.position.uid,
                "interrupted": stop.is_cancelled(),
            })
        );
    } else {
        let what = if report.backfill {
            format!("the last {} days", email.since_days)
        } else {
            "new mail since the last read".to_owned()
        };
        println!(
            "Read {} of {} messages of {} ({what}), {where_to}; the mailbox cursor is at UID {}.",
            report.fetched, report.total, email.address, report.position.uid
        );
    }
    if stop.is_cancelled() {
        anyhow::bail!("interrupted; the next sync or the server continues from there");
    }
    Ok(())
}
