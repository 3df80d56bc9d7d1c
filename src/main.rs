//! The `inbox` command line (see `inbox --help`).

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // html5ever warns about every odd HTML construct in customer mail: noise, not news.
            EnvFilter::try_from_env("INBOX_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,html5ever=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    cli::Cli::parse().execute().await
}
