//! `inbox reports rebuild [--since]`: recompute the response-time samples from the log.

use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use inbox_app::config::Config;

#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// Recompute the response-time samples of every conversation from its log.
    Rebuild {
        /// Only conversations with activity since then: `30d`, `12h`, or a date (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
    },
}

pub async fn execute(config: &Config, command: ReportsCommand) -> anyhow::Result<()> {
    let ReportsCommand::Rebuild { since } = command;
    let since = since.as_deref().map(parse_since).transpose()?;
    let store = super::open_store(config).await?;
    let total = store.conversations_to_measure_count(since).await?;
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0)).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} conversations ({eta} left)",
        )?,
    );
    let started = Instant::now();
    let rebuilt = inbox_core::reports::rebuild(&store, since, |done| bar.set_position(done)).await;
    bar.finish_and_clear();
    store.close().await;
    let rebuilt = rebuilt?;
    println!(
        "Rebuilt {} conversations: {} samples in {:.1} s.",
        rebuilt.conversations,
        rebuilt.samples,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `30d`, `12h`, `90m` back from now, or the start of a UTC date.
fn parse_since(raw: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--since: like 30d, 12h, 90m or 2026-01-31"))?;
    let window = match unit {
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => anyhow::bail!("--since: like 30d, 12h, 90m or 2026-01-31"),
    };
    Ok(Utc::now() - window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_windows_and_dates() {
        let date = parse_since("2026-01-31").expect("a date");
        assert_eq!(date.to_rfc3339(), "2026-01-31T00:00:00+00:00");
        let window = parse_since("30d").expect("a window");
        assert!(
            (Utc::now() - window - chrono::Duration::days(30))
                .num_seconds()
                .abs()
                < 5
        );
        assert!(parse_since("soon").is_err());
        assert!(parse_since("5y").is_err());
    }
}
