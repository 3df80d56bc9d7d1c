//! `inbox dead-letter list|replay|discard`: what could not be stored, with its error; replayed
//! through the funnel after a fix (stored once, never twice; a failure keeps one row with the new
//! error), or discarded.

use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use inbox_core::ids::ChannelId;
use inbox_core::ingest::ReplayOutcome;
use inbox_core::replay::replay_dead_letter;
use inbox_core::store::{DeadLetterFilter, DeadLetterId, MAX_DEAD_LETTERS_LISTED, Store};
use serde_json::json;

use inbox_app::config::Config;

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, newest first (those still waiting, unless --all).
    List {
        #[command(flatten)]
        which: Which,
        /// Print JSON (with the full payloads).
        #[arg(long)]
        json: bool,
    },
    /// Run dead letters through the funnel again: by id, or those the filters select.
    Replay {
        /// Dead letter ids (or use the filters).
        ids: Vec<DeadLetterId>,
        #[command(flatten)]
        which: Which,
        /// Print one JSON object per dead letter.
        #[arg(long)]
        json: bool,
    },
    /// Drop dead letters (they stay listed with --all as discarded).
    Discard {
        ids: Vec<DeadLetterId>,
        #[command(flatten)]
        which: Which,
    },
}

/// The filters of `list`, and of `replay`/`discard` without ids.
#[derive(Debug, Args)]
pub struct Which {
    /// Only this channel's.
    #[arg(long)]
    channel: Option<ChannelId>,
    /// Only those that arrived within this window: 30m, 2h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only those whose error contains this text.
    #[arg(long)]
    error: Option<String>,
    /// Every dead letter waiting (replay/discard refuse to act on all without it); for `list`,
    /// the settled ones too.
    #[arg(long)]
    all: bool,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// `30m`, `2h`, `7d` → the duration.
fn parse_window(raw: &str) -> anyhow::Result<Duration> {
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--since: like 30m, 2h or 7d"))?;
    let seconds = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("--since: like 30m, 2h or 7d"),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

impl Which {
    fn filter(&self, include_resolved: bool) -> anyhow::Result<DeadLetterFilter> {
        let since = match &self.since {
            Some(raw) => Some(Utc::now() - chrono::Duration::from_std(parse_window(raw)?)?),
            None => None,
        };
        Ok(DeadLetterFilter {
            channel: self.channel,
            error: self.error.clone(),
            since,
            until: None,
            include_resolved,
            limit: self.limit.min(MAX_DEAD_LETTERS_LISTED),
        })
    }

    fn is_narrowed(&self) -> bool {
        self.channel.is_some() || self.since.is_some() || self.error.is_some()
    }

    /// The ids to act on: those given, else the waiting ones the filters select.
    async fn ids(
        &self,
        store: &Store,
        ids: Vec<DeadLetterId>,
    ) -> anyhow::Result<Vec<DeadLetterId>> {
        if !ids.is_empty() {
            return Ok(ids);
        }
        if !self.is_narrowed() && !self.all {
            anyhow::bail!(
                "name dead letters by id, or select them with --channel, --since, --error or --all"
            );
        }
        let mut letters = store.find_dead_letters(&self.filter(false)?).await?;
        // Oldest first: inputs of one customer are replayed in the order they came.
        letters.reverse();
        Ok(letters.into_iter().map(|d| d.id).collect())
    }
}

pub async fn execute(config: &Config, command: DeadLetterCommand) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    let result = run(config, &store, command).await;
    store.close().await;
    result
}

async fn run(config: &Config, store: &Store, command: DeadLetterCommand) -> anyhow::Result<()> {
    match command {
        DeadLetterCommand::List { which, json } => list(store, &which, json).await,
        DeadLetterCommand::Replay { ids, which, json } => {
            let ids = which.ids(store, ids).await?;
            replay(config, store, ids, json).await
        }
        DeadLetterCommand::Discard { ids, which } => {
            let ids = which.ids(store, ids).await?;
            let mut discarded = 0;
            for id in &ids {
                if store.discard_dead_letter(*id).await? {
                    discarded += 1;
                }
            }
            println!("Discarded {discarded} of {} dead letters.", ids.len());
            Ok(())
        }
    }
}

async fn list(store: &Store, which: &Which, json: bool) -> anyhow::Result<()> {
    let letters = store.find_dead_letters(&which.filter(which.all)?).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(());
    }
    if letters.is_empty() {
        println!("No dead letters.");
    }
    for letter in letters {
        let payload: String = letter.payload.chars().take(120).collect();
        let state = match letter.resolution {
            Some(resolution) => format!(
                "  [{}]",
                serde_json::to_value(resolution)?
                    .as_str()
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        println!(
            "{}  {}  {}  {}{state}\n    error:   {}\n    payload: {}",
            letter.id,
            letter.created_at.to_rfc3339(),
            letter.source,
            letter
                .channel_id
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            letter.error,
            payload
        );
    }
    Ok(())
}

async fn replay(
    config: &Config,
    store: &Store,
    ids: Vec<DeadLetterId>,
    json: bool,
) -> anyhow::Result<()> {
    let blobs = super::blob_store(config)?;
    let catalog = inbox_connectors::Registry::with_builtin_blobs(blobs);
    let settings = config.ingest();
    let (mut stored, mut failed) = (0, 0);
    for id in &ids {
        let outcome = replay_dead_letter(store, &catalog, *id, &settings).await?;
        let (word, detail) = match &outcome {
            ReplayOutcome::Stored { message_id, .. } => {
                stored += 1;
                ("stored", format!("message {message_id}"))
            }
            ReplayOutcome::Duplicate { message_id } => {
                stored += 1;
                (
                    "duplicate",
                    format!("stored before as message {message_id}"),
                )
            }
            ReplayOutcome::Failed { error } => {
                failed += 1;
                ("failed", error.clone())
            }
            ReplayOutcome::AlreadySettled { .. } => ("settled", "settled already".to_owned()),
            ReplayOutcome::NotFound => ("not_found", "no such dead letter".to_owned()),
        };
        if json {
            println!("{}", json!({"id": id, "outcome": word, "detail": detail}));
        } else {
            println!("{id}  {word}: {detail}");
        }
    }
    if !json {
        println!(
            "Replayed {}: {stored} stored, {failed} still failing.",
            ids.len()
        );
    }
    Ok(())
}
