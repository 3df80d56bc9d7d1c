//! `inbox bench …`: how fast the product is, each figure next to a baseline measured in the same
//! run on the same machine (a raw batched insert, a raw Kafka consume, the Store without HTTP).
//! Never a timing assertion: the figures are printed (docs/performance.md reads them).
//!
//! Its own crate, so the product's code holds no load generators, seeders or word lists; the
//! `inbox` binary's `bench` subcommand only parses the arguments and calls [`execute`].

mod email;
mod ingest;
mod kafka;
mod live;
mod reports;
mod store;
mod web;

use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use inbox_app::config::Config;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Throughput and latency of the ingest funnel.
    Ingest(ingest::IngestArgs),
    /// Parse + normalize throughput of the email corpus (no I/O, no store).
    Email(email::EmailArgs),
    /// Latency of the agents' API (list, open, search) on a seeded inbox under open-loop load.
    Web(web::WebArgs),
    /// Latency of the report API on a million conversations with realistic logs.
    Reports(reports::ReportsArgs),
}

/// Runs one bench and prints its figures.
pub async fn execute(config: &Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(config, args).await,
        BenchCommand::Email(args) => email::run(&args),
        BenchCommand::Web(args) => web::run(config, &args).await,
        BenchCommand::Reports(args) => reports::run(config, &args).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BusKind {
    /// The in-process bus of `inbox run`.
    Local,
    /// Kafka (INBOX_KAFKA_BROKERS), with topics of its own for the run.
    Kafka,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// The configured Kafka with topics and groups of this run (and `phase`) only.
pub(crate) fn kafka_bench_config(
    config: &Config,
    phase: &str,
) -> anyhow::Result<inbox_core::bus::kafka::KafkaConfig> {
    let mut kafka = config
        .kafka
        .clone()
        .context("--bus kafka needs INBOX_KAFKA_BROKERS")?;
    let run = format!("bench-{}-{phase}", std::process::id());
    kafka.topics.inbound = format!("{run}.inbound");
    kafka.topics.outbound = format!("{run}.outbound");
    kafka.topics.events = format!("{run}.events");
    kafka.topics.dead_letter = format!("{run}.dead-letter");
    kafka.core_group = format!("{run}-core");
    kafka.connectors_group = format!("{run}-connectors");
    Ok(kafka)
}

/// Milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
