//! `inbox bench ingest`: webhook-shaped messages through the real funnel (in-process bus + core
//! worker + store), compared in the same run with a raw batched insert of the same rows.
//!
//! `inbox bench email`: parse + normalize throughput of the malformed-mail corpus (MIME, charsets,
//! HTML sanitizing, attachments as blobs), and of a mail with a 10 MB attachment.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use inbox_core::bus::Bus;
use inbox_core::bus::local::LocalBus;
use inbox_core::envelope::{Body, ChannelKind, InboundEvent, InboundMessage, Party, ThreadHints};
use inbox_core::ids::{ChannelId, ContactId, ConversationId, MessageId};
use inbox_core::ingest::IngestSettings;
use inbox_core::model::{Actor, Direction, EventKind, ThreadReason, to_millis};
use inbox_core::store::{
    ConversationState, NewContact, NewEvent, NewIdentity, NewMessage, Store, StoreConfig,
};
use inbox_core::worker::{IngestWorker, WorkerSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Throughput and latency of the ingest funnel.
    Ingest(IngestArgs),
    /// Parse + normalize throughput of the email corpus (no I/O, no store).
    Email(email_bench::EmailArgs),
    /// Latency of the agents' API (list, open, search) on a seeded inbox under open-loop load.
    Web(super::bench_web::WebArgs),
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

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Messages to push through the funnel.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Backend; postgres uses the server of INBOX_DATABASE_URL and a throwaway database on it.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Bus between publishers and the core.
    #[arg(long, value_enum, default_value_t = BusKind::Local)]
    bus: BusKind,
    /// Concurrent publishers (like concurrent webhook requests).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct customers the messages come from.
    #[arg(long)]
    customers: Option<usize>,
    /// Ingest workers of the core (partitions of the in-process bus, consumers with Kafka), in
    /// the funnel and the live scenario; default: 1 on SQLite, the number of CPUs on PostgreSQL.
    #[arg(long)]
    partitions: Option<usize>,
    /// With --bus kafka, the open-loop rate (msg/s) of the live-visibility scenario: the whole
    /// product fed at this rate, each message timed until an agent's SSE stream announces it.
    /// 0 leaves the scenario out.
    #[arg(long, default_value_t = 1000)]
    live_rate: u32,
    /// How long the live-visibility scenario publishes, in seconds.
    #[arg(long, default_value_t = 20)]
    live_seconds: u32,
}

pub async fn execute(config: &Config, command: BenchCommand) -> anyhow::Result<()> {
    let args = match command {
        BenchCommand::Ingest(args) => args,
        BenchCommand::Email(args) => return email_bench::run(&args),
        BenchCommand::Web(args) => return super::bench_web::run(config, &args).await,
    };
    let customers = args.customers.unwrap_or((args.messages / 5).max(1));
    let partitions = args.partitions.unwrap_or(match args.store {
        StoreKind::Sqlite => 1,
        StoreKind::Postgres => crate::config::cpus(),
    });
    println!(
        "bench ingest: {} messages from {} customers, bus {:?}, {} publishers, {} partitions, store {:?}",
        args.messages, customers, args.bus, args.concurrency, partitions, args.store
    );

    let funnel_target = BenchStore::create(config, args.store, "funnel").await?;
    let channel = funnel_target
        .store
        .create_channel(
            ChannelKind::WEBHOOK,
            "bench",
            serde_json::json!({}),
            "secret",
        )
        .await?;
    let workload = workload(channel.id, args.messages, customers);
    let bytes: usize = workload.iter().map(|m| m.body.text.len()).sum();
    println!(
        "  workload: {:.1} MB of text, {} replies referencing earlier messages",
        bytes as f64 / 1e6,
        workload
            .iter()
            .filter(|m| m.thread.in_reply_to.is_some())
            .count()
    );

    let mut consume_rate = None;
    let funnel = match args.bus {
        BusKind::Local => {
            run_funnel(
                &funnel_target.store,
                &workload,
                args.concurrency,
                partitions,
            )
            .await?
        }
        BusKind::Kafka => {
            let kafka = kafka_bench_config(config, "funnel")?;
            let result =
                kafka_bench::run(&kafka, &funnel_target.store, &workload, partitions).await?;
            consume_rate = Some(kafka_bench::raw_consume(&kafka, workload.len()).await?);
            result
        }
    };
    let stored = funnel_target.store.message_total().await?;
    anyhow::ensure!(
        stored as usize == workload.len(),
        "funnel stored {stored} of {} messages",
        workload.len()
    );
    funnel_target.drop_database().await?;

    let raw_target = BenchStore::create(config, args.store, "raw").await?;
    let raw_channel = raw_target
        .store
        .create_channel(
            ChannelKind::WEBHOOK,
            "bench",
            serde_json::json!({}),
            "secret",
        )
        .await?;
    let raw = run_raw_insert(&raw_target.store, raw_channel.id, &workload).await?;
    raw_target.drop_database().await?;

    let funnel_rate = workload.len() as f64 / funnel.elapsed.as_secs_f64();
    let raw_rate = workload.len() as f64 / raw.as_secs_f64();
    println!(
        "  funnel:     {funnel_rate:>10.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   (publish → stored)",
        ms(funnel.p50),
        ms(funnel.p99)
    );
    println!("  raw insert: {raw_rate:>10.0} msg/s   (same rows, batches of 500, no lookups)");
    println!(
        "  ratio:      {:>10.1} %  of the raw batched insert",
        100.0 * funnel_rate / raw_rate
    );
    if let Some(consume_rate) = consume_rate {
        println!("  raw consume:{consume_rate:>10.0} msg/s   (the same records, rdkafka only)");
        println!(
            "  ratio:      {:>10.1} %  of the raw consume",
            100.0 * funnel_rate / consume_rate
        );
    }
    if args.bus == BusKind::Kafka && args.live_rate > 0 {
        live(config, &args, partitions).await?;
    }
    Ok(())
}

/// The live-visibility scenario (`bench_live`), printed.
async fn live(config: &Config, args: &IngestArgs, partitions: usize) -> anyhow::Result<()> {
    let messages = (args.live_rate * args.live_seconds) as usize;
    let live_workload = workload(ChannelId::new(), messages, (messages / 5).max(1));
    let kafka = kafka_bench_config(config, "live")?;
    let live = super::bench_live::run(
        config,
        kafka,
        args.store,
        live_workload,
        args.live_rate,
        partitions,
    )
    .await?;
    println!(
        "  live:       {:>10} msg/s   open loop for {:.1} s, publish → on an agent's SSE stream \
         (the whole product: funnel, event relay, inbox.events, web)",
        live.rate,
        live.duration.as_secs_f64()
    );
    println!(
        "              p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   \
         ({} of {} seen, {} resyncs, publisher at most {:.1} ms behind schedule)",
        ms(live.quantile(0.50)),
        ms(live.quantile(0.90)),
        ms(live.quantile(0.99)),
        ms(live.quantile(1.0)),
        live.seen,
        live.published,
        live.resyncs,
        ms(live.worst_publish_lag)
    );
    anyhow::ensure!(
        live.seen == live.published,
        "the agent's stream announced {} of {} messages",
        live.seen,
        live.published
    );
    Ok(())
}

/// The configured Kafka with topics and groups of this run (and `phase`) only.
fn kafka_bench_config(
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A store for one measurement: a temp SQLite file, or a throwaway PostgreSQL database.
struct BenchStore {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl BenchStore {
    async fn create(config: &Config, kind: StoreKind, label: &str) -> anyhow::Result<BenchStore> {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let store = Store::open(&StoreConfig::Sqlite {
                    path: dir.path().join("bench.db"),
                })
                .await?;
                Ok(BenchStore {
                    store,
                    _dir: Some(dir),
                    pg: None,
                })
            }
            StoreKind::Postgres => {
                let server = config.database_url.clone().context(
                    "--store postgres needs INBOX_DATABASE_URL (any database on the server)",
                )?;
                let name = format!("inbox_bench_{label}_{}", std::process::id());
                let admin = sqlx::PgPool::connect(&server).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\""
                )))
                .execute(&admin)
                .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                let url = with_database(&server, &name);
                let store = Store::open(&StoreConfig::Postgres {
                    url,
                    max_connections: 16,
                })
                .await?;
                Ok(BenchStore {
                    store,
                    _dir: None,
                    pg: Some((server, name)),
                })
            }
        }
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        self.store.close().await;
        if let Some((server, name)) = self.pg {
            let admin = sqlx::PgPool::connect(&server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\""
            )))
            .execute(&admin)
            .await?;
            admin.close().await;
        }
        Ok(())
    }
}

/// The URL of another database on the same server.
pub(super) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Webhook-shaped messages: a long-tailed mix of customers, text lengths from a line to a few KB,
/// and about one in four answering that customer's previous message.
fn workload(channel_id: ChannelId, messages: usize, customers: usize) -> Vec<InboundMessage> {
    let mut rng = StdRng::seed_from_u64(42);
    let words = [
        "order", "invoice", "delivery", "refund", "account", "password", "thanks", "please",
        "urgent", "tracking", "payment", "the", "my", "is", "not", "working", "since", "today",
    ];
    let mut last_of_customer: Vec<Option<String>> = vec![None; customers];
    let now = Utc::now();
    (0..messages)
        .map(|i| {
            // Squaring a uniform draw skews traffic towards a minority of busy customers.
            let draw: f64 = rng.random();
            let customer = ((draw * draw) * customers as f64) as usize % customers;
            let len = match rng.random_range(0..10) {
                0..=5 => rng.random_range(40..300),
                6..=8 => rng.random_range(300..1500),
                _ => rng.random_range(1500..6000),
            };
            let mut text = String::with_capacity(len + 16);
            while text.len() < len {
                text.push_str(words[rng.random_range(0..words.len())]);
                text.push(' ');
            }
            let external_id = format!("bench-{i}");
            let in_reply_to = if rng.random_range(0..4) == 0 {
                last_of_customer[customer].clone()
            } else {
                None
            };
            last_of_customer[customer] = Some(external_id.clone());
            InboundMessage {
                id: MessageId::new(),
                channel_id,
                channel_kind: ChannelKind::WEBHOOK,
                external_id,
                thread: ThreadHints {
                    references: in_reply_to.iter().cloned().collect(),
                    in_reply_to,
                    subject: None,
                    chat_id: None,
                },
                from: Party {
                    handle: format!("customer-{customer}"),
                    name: Some(format!("Customer {customer}")),
                    email: None,
                    phone: None,
                },
                to: Vec::new(),
                sent_at: Some(now - chrono::Duration::milliseconds((messages - i) as i64)),
                received_at: now,
                body: Body { text, html: None },
                attachments: Vec::new(),
                raw: None,
                automated: None,
            }
        })
        .collect()
}

/// `inbox bench email`: `parse_email` over the corpus, timed per message.
mod email_bench {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use chrono::Utc;
    use clap::Args;
    use inbox_connectors::email::parse::parse_email;
    use inbox_connectors::email::sample::{mail_with_attachment, noise};
    use inbox_core::ids::ChannelId;

    #[derive(Debug, Args)]
    pub struct EmailArgs {
        /// Passes over the corpus.
        #[arg(long, default_value_t = 20)]
        repeat: usize,
        /// Directory of `.eml` files.
        #[arg(long, default_value = "tests/fixtures/mail/corpus")]
        corpus: PathBuf,
    }

    pub fn run(args: &EmailArgs) -> anyhow::Result<()> {
        let mut corpus: Vec<(String, Vec<u8>)> = std::fs::read_dir(&args.corpus)
            .with_context(|| format!("--corpus {}", args.corpus.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .map(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                Ok((name.into_owned(), std::fs::read(&path)?))
            })
            .collect::<std::io::Result<_>>()?;
        anyhow::ensure!(
            !corpus.is_empty(),
            "no .eml files in {}",
            args.corpus.display()
        );
        corpus.sort();
        let repeat = args.repeat.max(1);
        let bytes: usize = corpus.iter().map(|(_, raw)| raw.len()).sum();
        println!(
            "bench email: {} messages ({:.2} MB) from {}, {repeat} passes",
            corpus.len(),
            bytes as f64 / 1e6,
            args.corpus.display()
        );

        let channel = ChannelId::new();
        let (mut parsed, mut rejected) = (0, 0);
        let mut per_message: Vec<Duration> = Vec::with_capacity(corpus.len() * repeat);
        let mut per_file = vec![Duration::ZERO; corpus.len()];
        let started = Instant::now();
        for pass in 0..repeat {
            for (i, (_, raw)) in corpus.iter().enumerate() {
                let t = Instant::now();
                let result = std::hint::black_box(parse_email(raw, channel, Utc::now()));
                let took = t.elapsed();
                per_message.push(took);
                per_file[i] += took;
                if pass == 0 {
                    match result {
                        Ok(_) => parsed += 1,
                        Err(_) => rejected += 1,
                    }
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        per_message.sort_unstable();
        let pick = |q: f64| per_message[((per_message.len() - 1) as f64 * q) as usize];
        let messages = (corpus.len() * repeat) as f64;
        println!(
            "  corpus:     {:>9.0} msg/s {:>8.1} MB/s   p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   ({parsed} parsed, {rejected} rejected)",
            messages / elapsed,
            (bytes * repeat) as f64 / 1e6 / elapsed,
            ms(pick(0.5)),
            ms(pick(0.99)),
            ms(pick(1.0)),
        );
        let mut slowest: Vec<(Duration, &str, usize)> = per_file
            .iter()
            .zip(&corpus)
            .map(|(total, (name, raw))| (*total / repeat as u32, name.as_str(), raw.len()))
            .collect();
        slowest.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
        for (took, name, len) in slowest.iter().take(3) {
            println!(
                "  slowest:    {name} ({:.1} KB): {:.3} ms",
                *len as f64 / 1e3,
                ms(*took)
            );
        }

        let big = mail_with_attachment(&noise(10 * 1024 * 1024));
        let passes = repeat.clamp(1, 5);
        let started = Instant::now();
        for _ in 0..passes {
            let parsed = parse_email(&big, channel, Utc::now())
                .map_err(|e| anyhow::anyhow!("the 10 MB mail does not parse: {e}"))?;
            std::hint::black_box(parsed);
        }
        let each = started.elapsed().as_secs_f64() / passes as f64;
        println!(
            "  10 MB attachment ({:.1} MB of MIME): {:>7.1} MB/s   {:.0} ms per message",
            big.len() as f64 / 1e6,
            big.len() as f64 / 1e6 / each,
            each * 1e3
        );
        Ok(())
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }
}

/// Kafka end to end: producer (acks=all) → topic → the core's consumer → funnel → store.
mod kafka_bench {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use inbox_core::bus::kafka::{KafkaBus, KafkaConfig, KafkaInbound};
    use inbox_core::bus::{Bus, InboundConsumer};
    use inbox_core::envelope::{InboundEvent, InboundMessage};
    use inbox_core::ids::MessageId;
    use inbox_core::ingest::{InboundRecord, IngestSettings, Outcome, ingest};
    use inbox_core::store::Store;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use tokio_util::sync::CancellationToken;

    use super::FunnelResult;

    /// `workers` consumers in the core's group, each with its own ingest loop, as `inbox core`
    /// runs them (one per ingest partition).
    pub async fn run(
        kafka: &KafkaConfig,
        store: &Store,
        workload: &[InboundMessage],
        workers: usize,
    ) -> anyhow::Result<FunnelResult> {
        kafka.ensure_topics().await?;
        let bus = KafkaBus::new(kafka)?;
        let total = workload.len();
        let stored = Arc::new(AtomicUsize::new(0));
        let done = CancellationToken::new();
        let mut cores = Vec::new();
        for index in 0..workers.max(1) {
            let consumer = kafka.inbound_consumer_for(index)?;
            cores.push(tokio::spawn(core_loop(
                consumer,
                store.clone(),
                total,
                stored.clone(),
                done.clone(),
            )));
        }
        let core = async move {
            let mut stored_at = HashMap::with_capacity(total);
            for core in cores {
                stored_at.extend(core.await??);
            }
            Ok::<_, anyhow::Error>(stored_at)
        };
        let started = Instant::now();
        let mut published_at = HashMap::with_capacity(total);
        for chunk in workload.chunks(2000) {
            let sends = chunk.iter().map(|m| {
                let event = InboundEvent::Message(m.clone());
                let bus = &bus;
                async move {
                    let at = Instant::now();
                    bus.publish_inbound(&event).await.map(|()| (m.id, at))
                }
            });
            for result in futures::future::join_all(sends).await {
                let (id, at) = result?;
                published_at.insert(id, at);
            }
        }
        let stored_at = tokio::time::timeout(Duration::from_secs(600), core).await??;
        let elapsed = started.elapsed();
        let mut latencies: Vec<Duration> = published_at
            .iter()
            .filter_map(|(id, sent)| stored_at.get(id).map(|done| done.duration_since(*sent)))
            .collect();
        latencies.sort_unstable();
        Ok(FunnelResult::from_sorted(elapsed, &latencies))
    }

    /// One ingest worker's loop, timing each message when its batch is committed; all stop once
    /// `total` messages are stored between them.
    async fn core_loop(
        mut consumer: KafkaInbound,
        store: Store,
        total: usize,
        stored: Arc<AtomicUsize>,
        done: CancellationToken,
    ) -> anyhow::Result<HashMap<MessageId, Instant>> {
        let settings = inbox_core::worker::WorkerSettings::kafka();
        let mut stored_at = HashMap::new();
        loop {
            let batch = tokio::select! {
                _ = done.cancelled() => break,
                batch = consumer.next_batch(settings.max_batch, settings.linger) => batch,
            };
            let Some(batch) = batch else { break };
            let (records, acks): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|d| (d.record, d.ack)).unzip();
            let report = ingest(&store, &records, &IngestSettings::default()).await?;
            let now = Instant::now();
            consumer.settle(acks, Ok(())).await;
            for record in &records {
                if let InboundRecord::Event(InboundEvent::Message(m)) = record {
                    stored_at.entry(m.id).or_insert(now);
                }
            }
            // Records the group's first rebalance hands over twice are duplicates, not progress.
            let new = report
                .outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Stored { .. }))
                .count();
            if stored.fetch_add(new, Ordering::SeqCst) + new >= total {
                done.cancel();
            }
        }
        consumer.close().await;
        Ok(stored_at)
    }

    /// Reads the run's inbound records again with a bare consumer: the ceiling of the consume side.
    pub async fn raw_consume(kafka: &KafkaConfig, total: usize) -> anyhow::Result<f64> {
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", format!("{}-raw", kafka.core_group))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[&kafka.topics.inbound])?;
        let started = Instant::now();
        let mut read = 0;
        while read < total {
            let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
            std::hint::black_box(rdkafka::Message::payload(&message));
            read += 1;
        }
        Ok(total as f64 / started.elapsed().as_secs_f64())
    }
}

struct FunnelResult {
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn run_funnel(
    store: &Store,
    workload: &[InboundMessage],
    concurrency: usize,
    partitions: usize,
) -> anyhow::Result<FunnelResult> {
    let (bus, inbound, _outbound) = LocalBus::new(partitions);
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let stop = CancellationToken::new();
    let workers: Vec<_> = inbound
        .into_iter()
        .map(|partition| {
            tokio::spawn(
                IngestWorker {
                    store: store.clone(),
                    bus: bus.clone(),
                    ingest: IngestSettings::default(),
                    settings: WorkerSettings::default(),
                }
                .run(partition, stop.clone()),
            )
        })
        .collect();
    let events: Arc<Vec<InboundEvent>> = Arc::new(
        workload
            .iter()
            .cloned()
            .map(InboundEvent::Message)
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (bus, events, next) = (bus.clone(), events.clone(), next.clone());
        publishers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(event) = events.get(i) else { break };
                let sent = Instant::now();
                bus.publish_inbound(event).await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, inbox_core::bus::BusError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(workload.len());
    for publisher in publishers {
        latencies.extend(publisher.await??);
    }
    let elapsed = started.elapsed();
    stop.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    latencies.sort_unstable();
    Ok(FunnelResult::from_sorted(elapsed, &latencies))
}

impl FunnelResult {
    fn from_sorted(elapsed: Duration, latencies: &[Duration]) -> Self {
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        FunnelResult {
            elapsed,
            p50: pick(0.50),
            p99: pick(0.99),
        }
    }
}

/// The rows the funnel writes (contacts, identities, conversations, messages, log events), inserted with the same
/// multi-row statements in transactions of 500 messages, without any lookup or decision.
async fn run_raw_insert(
    store: &Store,
    channel_id: ChannelId,
    workload: &[InboundMessage],
) -> anyhow::Result<Duration> {
    let now = to_millis(Utc::now());
    let mut conversation_of = std::collections::HashMap::new();
    let started = Instant::now();
    for chunk in workload.chunks(500) {
        let mut contacts = Vec::new();
        let mut identities = Vec::new();
        let mut conversations = Vec::new();
        let mut events = Vec::new();
        let mut rows = Vec::with_capacity(chunk.len());
        for m in chunk {
            let (contact, conversation) = *conversation_of
                .entry(m.from.handle.clone())
                .or_insert_with(|| {
                    let contact = ContactId::new();
                    let conversation = ConversationId::new();
                    contacts.push(NewContact {
                        id: contact,
                        name: m.from.name.clone(),
                        email: None,
                        phone: None,
                        created_at: now,
                    });
                    identities.push(NewIdentity {
                        namespace: format!("webhook:{channel_id}"),
                        handle: m.from.handle.clone(),
                        contact_id: contact,
                        created_at: now,
                    });
                    events.push(NewEvent {
                        conversation_id: conversation,
                        kind: EventKind::Opened,
                        actor: Actor::Contact(contact),
                        contact_id: Some(contact),
                        message_id: Some(m.id),
                        data: serde_json::json!({}),
                        at: now,
                    });
                    conversations.push(ConversationState {
                        id: conversation,
                        channel_id,
                        contact_id: contact,
                        contact_handle: m.from.handle.clone(),
                        status: "open".into(),
                        assignee_id: None,
                        subject: None,
                        labels: "[]".into(),
                        preview: String::new(),
                        message_count: 0,
                        unread_count: 0,
                        created_at: now,
                        last_message_at: now,
                        waiting_since: None,
                        snoozed_until: None,
                        resolved_at: None,
                        subject_key: None,
                    });
                    (contact, conversation)
                });
            events.push(NewEvent {
                conversation_id: conversation,
                kind: EventKind::MessageReceived,
                actor: Actor::Contact(contact),
                contact_id: Some(contact),
                message_id: Some(m.id),
                data: serde_json::json!({"thread_reason": "latest_conversation"}),
                at: now,
            });
            rows.push(NewMessage {
                id: m.id,
                conversation_id: conversation,
                channel_id,
                external_id: Some(m.external_id.clone()),
                direction: Direction::Inbound,
                contact_id: Some(contact),
                agent_id: None,
                sender_handle: Some(m.from.handle.clone()),
                sender_name: m.from.name.clone(),
                text: m.body.text.clone(),
                html: None,
                subject: None,
                in_reply_to: m.thread.in_reply_to.clone(),
                attachments: "[]".into(),
                raw_ref: None,
                thread_reason: ThreadReason::NewConversation,
                sent_at: now,
                claimed_sent_at: None,
                received_at: now,
                delivery_status: None,
            });
        }
        let mut tx = store.begin().await?;
        tx.insert_contacts(&contacts).await?;
        tx.insert_identities(&identities).await?;
        tx.upsert_conversations(&conversations).await?;
        tx.insert_messages(&rows).await?;
        tx.insert_events(&events).await?;
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/db?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn the_email_bench_runs_on_the_corpus() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            bench: BenchCommand,
        }
        let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mail/corpus");
        let cli = Cli::try_parse_from(["bench", "email", "--repeat", "1", "--corpus", corpus])
            .unwrap_or_else(|e| panic!("{e}"));
        let BenchCommand::Email(args) = cli.bench else {
            panic!("not the email bench: {cli:?}");
        };
        email_bench::run(&args).unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn the_workload_has_replies_and_many_customers() {
        let w = workload(ChannelId::new(), 1000, 200);
        assert_eq!(w.len(), 1000);
        let customers: std::collections::HashSet<_> = w.iter().map(|m| &m.from.handle).collect();
        assert!(customers.len() > 50);
        assert!(w.iter().any(|m| m.thread.in_reply_to.is_some()));
    }
}
