//! `inbox dead-letter list`: what could not be stored, with its error, newest first.

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON (with the full payloads).
        #[arg(long)]
        json: bool,
    },
}

pub async fn execute(config: &Config, command: DeadLetterCommand) -> anyhow::Result<()> {
    let DeadLetterCommand::List { limit, json } = command;
    let store = super::open_store(config).await?;
    let letters = store.dead_letters(limit).await?;
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(());
    }
    if letters.is_empty() {
        println!("No dead letters.");
    }
    for letter in letters {
        let payload: String = letter.payload.chars().take(120).collect();
        println!(
            "{}  {}  {}\n    error:   {}\n    payload: {}",
            letter.created_at.to_rfc3339(),
            letter.source,
            letter.channel_id.as_deref().unwrap_or("-"),
            letter.error,
            payload
        );
    }
    Ok(())
}
