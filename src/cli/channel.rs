//! `inbox channel add|list|pause|resume|remove|sync`: `add` has one subcommand per kind of the
//! connectors' registry; changes are picked up by a running server without a restart; `sync`
//! reads a mailbox in the foreground with a progress bar.

use std::sync::Arc;

use clap::{Args, Subcommand};
use inbox_connectors::{Registry, SourceContext, SyncProgress, SyncRequest};
use inbox_core::bus::Bus;
use inbox_core::bus::kafka::KafkaBus;
use inbox_core::bus::local::LocalBus;
use inbox_core::channel_catalog::mint_secret;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_core::store::{ChannelUpdate, NewChannel, Store};
use inbox_core::worker::{IngestWorker, WorkerSettings};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use inbox_app::config::Config;
use inbox_app::directory::StoreCursors;

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel of one of this build's kinds (each kind has its own flags).
    Add(AddChannel),
    /// List the channels.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a channel: its intake refuses (retryably) and its source stops reading.
    Pause {
        /// The channel id.
        id: ChannelId,
    },
    /// Resume a paused channel.
    Resume {
        /// The channel id.
        id: ChannelId,
    },
    /// Delete a channel: it stops receiving and sending; its history stays.
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

/// `inbox channel add <kind> …`: one subcommand per kind of the registry, with the kind's flags
/// and `--json`.
#[derive(Debug)]
pub struct AddChannel {
    kind: ChannelKind,
    matches: clap::ArgMatches,
    json: bool,
}

/// A kind's subcommand name: `web_chat` is `web-chat` on the command line.
fn command_name(kind: ChannelKind) -> String {
    kind.as_str().replace('_', "-")
}

impl clap::FromArgMatches for AddChannel {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let (name, sub) = matches
            .subcommand()
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingSubcommand))?;
        let kind = Registry::with_builtin()
            .connectors()
            .map(|c| c.kind())
            .find(|k| command_name(*k) == name)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?;
        Ok(AddChannel {
            kind,
            json: sub.get_flag("json"),
            matches: sub.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for AddChannel {
    fn augment_args(command: clap::Command) -> clap::Command {
        Registry::with_builtin().connectors().fold(
            command
                .subcommand_required(true)
                .arg_required_else_help(true),
            |command, connector| {
                let info = connector.info();
                let sub = clap::Command::new(command_name(connector.kind())).arg(
                    clap::Arg::new("json")
                        .long("json")
                        .action(clap::ArgAction::SetTrue)
                        .help("Print {\"id\":…} (and \"secret\" where the kind has one) as JSON"),
                );
                // After the kind's flags: their doc comment would replace the about.
                let sub = connector
                    .cli_args(sub)
                    .about(format!("{}: {}", info.display_name, info.description));
                command.subcommand(sub)
            },
        )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// Creates the channel the flags describe, checked by its kind.
async fn add(config: &Config, store: &Store, add: AddChannel) -> anyhow::Result<()> {
    let registry = Registry::with_builtin();
    let connector = registry
        .get(add.kind)
        .ok_or_else(|| anyhow::anyhow!("no {} kind in this build", add.kind))?;
    let info = connector.info();
    let described = connector
        .channel_from_cli(&add.matches)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = described.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        anyhow::bail!("--name: 1 to 100 characters");
    }
    let secret = mint_secret();
    let channel = store
        .add_channel(NewChannel {
            kind: add.kind,
            name: name.to_owned(),
            config: described.config,
            secret: secret.clone(),
            rules: connector.rules(),
        })
        .await?;
    let intake = info.intake_path.map(|p| {
        format!(
            "{}{}",
            config.base_url(config.listen),
            p.replace("{channel_id}", &channel.id.to_string())
        )
    });
    let embed = info.embed_snippet.map(|snippet| {
        snippet
            .replace(
                "{base}",
                config.base_url(config.listen).trim_end_matches('/'),
            )
            .replace("{channel_id}", &channel.id.to_string())
    });
    if add.json {
        let mut out = json!({"id": channel.id, "kind": channel.kind});
        if let Some(embed) = &embed {
            out["embed"] = embed.clone().into();
        }
        if info.uses_secret {
            out["secret"] = secret.clone().into();
        }
        if let Some(url) = &intake {
            out["intake_url"] = url.clone().into();
        }
        println!("{out}");
        return Ok(());
    }
    println!(
        "Created {} channel {} ({}).",
        info.display_name, channel.name, channel.id
    );
    if let Some(url) = intake {
        println!("Inbound URL: {url}");
    }
    if let Some(embed) = embed {
        println!("Paste into your site's pages: {embed}");
    }
    if info.uses_secret {
        println!("Signing secret (shown once): {secret}");
    }
    if connector.has_source() {
        println!("A running server starts reading it within seconds.");
    }
    Ok(())
}

pub async fn execute(config: &Config, command: ChannelCommand) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    let result = run(config, &store, command).await;
    store.close().await;
    result
}

async fn run(config: &Config, store: &Store, command: ChannelCommand) -> anyhow::Result<()> {
    let set = |enabled: Option<bool>, deleted: Option<bool>| ChannelUpdate {
        enabled,
        deleted,
        ..ChannelUpdate::default()
    };
    match command {
        ChannelCommand::Add(args) => add(config, store, args).await,
        ChannelCommand::List { json } => {
            let channels = store.channels().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&channels)?);
                return Ok(());
            }
            println!("{:<36}  {:<10}  {:<8}  name", "id", "kind", "state");
            for c in channels {
                let state = if c.deleted_at.is_some() {
                    "deleted"
                } else if c.enabled {
                    "active"
                } else {
                    "paused"
                };
                println!("{:<36}  {:<10}  {:<8}  {}", c.id, c.kind, state, c.name);
            }
            Ok(())
        }
        ChannelCommand::Pause { id } => {
            store
                .update_channel(id, &set(Some(false), None))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no channel {id}"))?;
            println!("Paused channel {id}.");
            Ok(())
        }
        ChannelCommand::Resume { id } => {
            store
                .update_channel(id, &set(Some(true), None))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no channel {id}"))?;
            println!("Resumed channel {id}.");
            Ok(())
        }
        ChannelCommand::Remove { id } => {
            store
                .update_channel(id, &set(None, Some(true)))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no channel {id}"))?;
            println!("Deleted channel {id}; its conversations stay.");
            Ok(())
        }
        ChannelCommand::Sync(args) => sync(config, store, args).await,
    }
}

fn parse_days(raw: &str) -> anyhow::Result<u32> {
    inbox_connectors::email::parse_days(raw).map_err(|e| anyhow::anyhow!("--since: {e}"))
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
    if !channel.is_active() {
        anyhow::bail!("channel {} is paused or deleted", channel.id);
    }
    let request = SyncRequest {
        since_days: args.since.as_deref().map(parse_days).transpose()?,
    };
    // The same blob directory as the server's.
    let blobs = super::blob_store(config)?;
    let registry = Registry::with_builtin_blobs(blobs.clone());
    let connector = registry
        .get(channel.kind)
        .ok_or_else(|| anyhow::anyhow!("no {} kind in this build", channel.kind))?;

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
        public_url: config.base_url(config.listen),
    };

    let bar = indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
        "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} messages ({eta} left)",
    )?);
    bar.set_message(channel.name.clone());
    let stop = CancellationToken::new();
    let interrupt = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let outcome = connector
        .sync(&channel, &ctx, request, &Bar(bar.clone()), &stop)
        .await;
    bar.finish_and_clear();
    // Every item was acknowledged (stored or on Kafka) before the cursor moved past it.
    core_stop.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    let Some(outcome) = outcome else {
        let readable: Vec<String> = registry
            .connectors()
            .filter(|c| c.has_source())
            .map(|c| c.kind().to_string())
            .collect();
        anyhow::bail!(
            "channel {} is a {} channel; it takes pushes, and only {} channels have a source to sync",
            channel.id,
            channel.kind,
            in_words(&readable)
        );
    };
    let report = outcome.map_err(|e| anyhow::anyhow!("sync of {}: {e}", channel.name))?;
    let where_to = if config.kafka.is_some() {
        "handed to Kafka"
    } else {
        "stored"
    };
    if args.json {
        let mut out = json!({
            "channel": channel.id,
            "total": report.total,
            "fetched": report.fetched,
            "backfill": report.backfill,
            "interrupted": stop.is_cancelled(),
        });
        for (key, value) in &report.cursor {
            out[key] = value.clone();
        }
        println!("{out}");
    } else {
        println!(
            "Read {} of {} {} of {} ({}), {where_to}; {}.",
            report.fetched,
            report.total,
            report.items,
            channel.name,
            report.window,
            report.position
        );
    }
    if stop.is_cancelled() {
        anyhow::bail!("interrupted; the next sync or the server continues from there");
    }
    Ok(())
}

/// `["a", "b", "c"]` → `a, b and c`.
fn in_words(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
