//! `inbox bench web`: seeds a large inbox straight into the tables, starts the real application on
//! it and measures the agents' API — list, open a conversation, search — under an open-loop load:
//! operations are issued on a fixed schedule whatever the answers, and each latency runs from the
//! operation's scheduled time, so a stall shows up in the figures instead of slowing the load down
//! (no coordinated omission). The same list and open queries run directly against the Store in the
//! same run, as the baseline that shows what HTTP, auth and JSON add.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use inbox_core::envelope::{ChannelKind, DeliveryStatus};
use inbox_core::ids::{AgentId, ChannelId, ContactId, ConversationId, MessageId};
use inbox_core::ingest::preview;
use inbox_core::model::{Actor, ConversationStatus, Direction, EventKind, Role, ThreadReason};
use inbox_core::store::{
    ConversationFilter, ConversationState, NewContact, NewEvent, NewIdentity, NewMessage,
    PageCursor, Store,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::bench::{StoreKind, with_database};
use crate::app::Application;
use crate::config::Config;

/// The server `--store postgres` creates its throwaway database on without INBOX_DATABASE_URL.
const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Conversations per page of the list, as the web inbox asks for them.
const LIST_PAGE: u32 = 25;
/// Messages per page when a conversation is opened.
const HISTORY_PAGE: u32 = 50;
/// Hits per search page (the API's default).
const SEARCH_PAGE: u32 = 25;
/// Deepest list page the load follows `next_cursor` to.
const LIST_DEPTH: usize = 6;
/// Messages per seeding transaction.
const SEED_BATCH: usize = 10_000;
/// Targets of issue 5 (p99, milliseconds).
const LIST_TARGET_MS: f64 = 20.0;
const OPEN_BIG_TARGET_MS: f64 = 50.0;

#[derive(Debug, Args)]
pub struct WebArgs {
    /// Backend. postgres: a throwaway database on the server of INBOX_DATABASE_URL, or on
    /// postgres://postgres@127.0.0.1:5432 without it.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Conversations to seed.
    #[arg(long, default_value_t = 100_000)]
    conversations: usize,
    /// Messages to seed, over all conversations.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Messages of the one big conversation (part of --messages).
    #[arg(long, default_value_t = 100_000)]
    big: usize,
    /// Operations per second, issued on a fixed schedule whatever the answers (open loop).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Length of each measured run (20s, 500ms, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Most operations in flight; later ones wait for a slot, and the wait counts in their latency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Unmeasured mixed load before the measured runs (caches, connection pools).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep the seeded database (and print where it is) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

pub async fn run(config: &Config, args: &WebArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.conversations >= 2,
        "--conversations must be at least 2"
    );
    anyhow::ensure!(args.big >= 1, "--big must be at least 1");
    anyhow::ensure!(
        args.messages >= args.big + args.conversations - 1,
        "--messages must cover --big plus one message for each other conversation"
    );
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be positive"
    );
    println!(
        "bench web: {} conversations, {} messages ({} in the big one), store {:?}; \
         {}/s for {:?} per run, at most {} in flight",
        args.conversations,
        args.messages,
        args.big,
        args.store,
        args.rate,
        args.duration,
        args.concurrency
    );

    println!(
        "  machine: {} CPUs, load average {}",
        crate::config::cpus(),
        load_average()
    );
    let target = Target::create(config, args.store).await?;
    let outcome = measure(&target, args).await;
    target.finish(args.keep).await?;
    outcome
}

async fn measure(target: &Target, args: &WebArgs) -> anyhow::Result<()> {
    let store = Store::open(&target.config.store()).await?;
    let seeded = seed(&store, args).await?;
    let deep = deep_cursors(&store, seeded.big, args.big).await?;

    let server = Server::start(target.config.clone()).await?;
    let result = load(&store, &seeded, &deep, &server, args).await;
    server.stop().await;
    store.close().await;
    result
}

// ---------------------------------------------------------------------------------------------
// The database of one run.

/// A data dir (SQLite file, blobs) and, for PostgreSQL, a throwaway database.
pub(super) struct Target {
    pub(super) config: Config,
    dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl Target {
    pub(super) async fn create(config: &Config, kind: StoreKind) -> anyhow::Result<Target> {
        let dir = tempfile::Builder::new()
            .prefix("inbox-bench-web-")
            .tempdir()?;
        let mut app = Config {
            data_dir: dir.path().to_path_buf(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: None,
            // The embedded mode: the in-process bus, whatever the environment says.
            kafka: None,
            database_url: None,
            public_url: None,
            ..config.clone()
        };
        let mut pg = None;
        if kind == StoreKind::Postgres {
            let server = config
                .database_url
                .clone()
                .unwrap_or_else(|| LOCAL_SERVER.to_owned());
            let name = format!("inbox_bench_web_{}", std::process::id());
            let admin = sqlx::PgPool::connect(&server)
                .await
                .with_context(|| format!("cannot connect to {server}"))?;
            for statement in [
                format!("DROP DATABASE IF EXISTS \"{name}\""),
                format!("CREATE DATABASE \"{name}\""),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&admin)
                    .await?;
            }
            admin.close().await;
            app.database_url = Some(with_database(&server, &name));
            pg = Some((server, name));
        }
        Ok(Target {
            config: app,
            dir,
            pg,
        })
    }

    pub(super) async fn finish(self, keep: bool) -> anyhow::Result<()> {
        if keep {
            let dir = self.dir.keep();
            match &self.config.database_url {
                Some(url) => println!("kept: database {url} (data dir {})", dir.display()),
                None => println!("kept: {}", dir.join("inbox.db").display()),
            }
            return Ok(());
        }
        if let Some((server, name)) = self.pg {
            let admin = sqlx::PgPool::connect(&server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&admin)
            .await?;
            admin.close().await;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding: rows straight into the tables, in big transactions, through the Store's multi-row
// inserts (so whatever the `messages` table maintains — indexes, the full-text index — is kept).

/// What the load needs to know about the seeded data.
#[derive(Debug)]
struct Seeded {
    conversations: Vec<ConversationId>,
    big: ConversationId,
    token: String,
    agent: AgentId,
}

/// One message to write, in the compact form kept for the whole seed.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: i64,
    id: MessageId,
    conversation: u32,
    /// Index of the text (and of the external id).
    seed: u32,
    direction: Direction,
    agent: u8,
}

/// A conversation as seeded: its row and its contact.
#[derive(Debug)]
struct Plan {
    state: ConversationState,
    contact_name: String,
}

async fn seed(store: &Store, args: &WebArgs) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let channels = [
        store
            .create_channel(ChannelKind::WEBHOOK, "Shop", serde_json::json!({}), "s1")
            .await?
            .id,
        store
            .create_channel(ChannelKind::WEBHOOK, "App", serde_json::json!({}), "s2")
            .await?
            .id,
    ];
    let bench_agent = store
        .create_agent("bench@example.com", "Bench Agent", Role::Agent, None)
        .await?;
    let token = store.create_api_token(bench_agent.id, "bench web").await?;
    let mut agents = vec![(bench_agent.id, bench_agent.name.clone())];
    for i in 1..10 {
        let agent = store
            .create_agent(
                &format!("agent{i}@example.com"),
                &format!("{} {}", FIRST_NAMES[i * 7 % FIRST_NAMES.len()], "Support"),
                Role::Agent,
                None,
            )
            .await?;
        agents.push((agent.id, agent.name));
    }

    let (plans, mut slots) = generate(args, &channels, &agents);
    let conversations: Vec<ConversationId> = plans.iter().map(|p| p.state.id).collect();
    let big = conversations[0];

    // Contacts, identities, conversations (with their final counters) and their log first: the
    // messages reference them.
    for chunk in plans.chunks(SEED_BATCH) {
        let mut contacts = Vec::with_capacity(chunk.len());
        let mut identities = Vec::with_capacity(chunk.len());
        let mut states = Vec::with_capacity(chunk.len());
        let mut events = Vec::with_capacity(chunk.len() * 2);
        for plan in chunk {
            let c = &plan.state;
            contacts.push(NewContact {
                id: c.contact_id,
                name: Some(plan.contact_name.clone()),
                email: None,
                phone: None,
                created_at: c.created_at,
            });
            identities.push(NewIdentity {
                namespace: format!("webhook:{}", c.channel_id),
                handle: c.contact_handle.clone(),
                contact_id: c.contact_id,
                created_at: c.created_at,
            });
            events.push(NewEvent {
                conversation_id: c.id,
                kind: EventKind::Opened,
                actor: Actor::Contact(c.contact_id),
                contact_id: Some(c.contact_id),
                message_id: None,
                data: serde_json::json!({}),
                at: c.created_at,
            });
            if let (Some(at), Some(agent)) = (c.resolved_at, c.assignee_id) {
                events.push(NewEvent {
                    conversation_id: c.id,
                    kind: EventKind::Resolved,
                    actor: Actor::Agent(agent),
                    contact_id: Some(c.contact_id),
                    message_id: None,
                    data: serde_json::json!({}),
                    at,
                });
            }
            states.push(c.clone());
        }
        let mut tx = store.begin().await?;
        tx.insert_contacts(&contacts).await?;
        tx.insert_identities(&identities).await?;
        tx.upsert_conversations(&states).await?;
        tx.insert_events(&events).await?;
        tx.commit().await?;
    }
    let conversations_took = started.elapsed();

    // Messages in the order they arrived across all conversations, as ingest would have stored
    // them: a long history is spread over the table, not stored in one contiguous run.
    slots.sort_unstable_by_key(|s| (s.at, s.conversation));
    let total = slots.len();
    let mut written = 0;
    let mut next_report = 200_000;
    for chunk in slots.chunks(SEED_BATCH) {
        let rows: Vec<NewMessage> = chunk
            .iter()
            .map(|slot| message_row(slot, &plans, &agents))
            .collect();
        let mut tx = store.begin().await?;
        tx.insert_messages(&rows).await?;
        tx.commit().await?;
        written += rows.len();
        if written >= next_report && written < total {
            println!(
                "  seeding: {written} of {total} messages ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            next_report += 200_000;
        }
    }
    let seeded = started.elapsed();
    let stored = store.message_total().await?;
    anyhow::ensure!(
        stored as usize == total,
        "seeded {stored} of {total} messages"
    );
    println!(
        "  seeded in {:.1} s: {} conversations in {:.1} s, {} messages at {:.0} msg/s",
        seeded.as_secs_f64(),
        plans.len(),
        conversations_took.as_secs_f64(),
        total,
        total as f64 / (seeded - conversations_took).as_secs_f64()
    );

    // What a live database has after a while: statistics for the planner (PostgreSQL's autovacuum
    // would otherwise run in the middle of the measurement), a checkpointed WAL (SQLite).
    // The seeded history is not news: its change events are not relayed when the app starts.
    let settle = Instant::now();
    match store {
        Store::Postgres(pool) => {
            sqlx::raw_sql("DELETE FROM event_outbox")
                .execute(pool)
                .await?;
            sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
        }
        Store::Sqlite(pool) => {
            sqlx::raw_sql("DELETE FROM event_outbox")
                .execute(pool)
                .await?;
            sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await?;
        }
    }
    println!(
        "  {} in {:.1} s",
        match store {
            Store::Postgres(_) => "VACUUM ANALYZE",
            Store::Sqlite(_) => "WAL checkpoint",
        },
        settle.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        conversations,
        big,
        token,
        agent: bench_agent.id,
    })
}

/// The conversations (the big one first) and every message of them, decided up front so each
/// conversation row is written once with counters, preview and state matching its messages.
fn generate(
    args: &WebArgs,
    channels: &[ChannelId],
    agents: &[(AgentId, String)],
) -> (Vec<Plan>, Vec<Slot>) {
    const MINUTE: i64 = 60_000;
    const DAY: i64 = 86_400_000;
    let mut rng = StdRng::seed_from_u64(5);
    let now = Utc::now().timestamp_millis();

    // One message each, the big one its share, the rest to a long tail of busy conversations.
    let mut counts = vec![1usize; args.conversations];
    counts[0] = args.big;
    for _ in 0..args.messages - args.big - (args.conversations - 1) {
        let draw: f64 = rng.random();
        counts[1 + ((draw * draw) * (args.conversations - 1) as f64) as usize] += 1;
    }

    let mut plans = Vec::with_capacity(args.conversations);
    let mut slots = Vec::with_capacity(args.messages);
    let mut times = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        // Latest activity: the big conversation right now, the others over the last year,
        // denser towards today.
        times.clear();
        let mut at = if i == 0 {
            now - MINUTE
        } else {
            let draw: f64 = rng.random();
            now - MINUTE - (draw * draw * 365.0 * DAY as f64) as i64
        };
        for _ in 0..count {
            times.push(at);
            // Between a few seconds and a few hours between messages; the big conversation's
            // 100,000 messages span about a year.
            at -= if i == 0 {
                rng.random_range(1_000..630_000)
            } else {
                let draw: f64 = rng.random();
                1_000 + (draw * draw * draw * 6.0 * 3_600_000.0) as i64
            };
        }
        times.reverse();

        let assignee = (rng.random_range(0..10) >= 5).then(|| rng.random_range(0..agents.len()));
        let (mut waiting_since, mut unread) = (None, 0);
        let mut last = None;
        for (k, &at) in times.iter().enumerate() {
            let direction = match (k, rng.random_range(0..100)) {
                (0, _) => Direction::Inbound,
                (_, 0..55) => Direction::Inbound,
                (_, 55..95) => Direction::Outbound,
                _ => Direction::Note,
            };
            match direction {
                Direction::Inbound => {
                    unread += 1;
                    waiting_since = Some(waiting_since.unwrap_or(at));
                }
                Direction::Outbound => {
                    unread = 0;
                    waiting_since = None;
                }
                Direction::Note => {}
            }
            let slot = Slot {
                at,
                id: MessageId(uuid_at(at)),
                conversation: i as u32,
                seed: slots.len() as u32,
                direction,
                agent: assignee.unwrap_or_else(|| rng.random_range(0..agents.len())) as u8,
            };
            last = Some(slot);
            slots.push(slot);
        }
        let (created_at, last_at) = (times[0], times[times.len() - 1]);
        let last_direction = last.map_or(Direction::Inbound, |s| s.direction);
        let status = match (last_direction, rng.random_range(0..100)) {
            (Direction::Outbound, 0..60) => ConversationStatus::Resolved,
            (Direction::Outbound, _) => ConversationStatus::Pending,
            (_, 0..88) => ConversationStatus::Open,
            (_, 88..96) => ConversationStatus::Snoozed,
            _ => ConversationStatus::Pending,
        };
        let assignee = match (status, assignee) {
            (ConversationStatus::Open, assignee) => assignee,
            (_, Some(agent)) => Some(agent),
            (_, None) => Some(rng.random_range(0..agents.len())),
        };
        let waiting = matches!(
            status,
            ConversationStatus::Open | ConversationStatus::Snoozed
        );
        let contact_name = format!(
            "{} {}",
            FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
            LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
        );
        let labels = match rng.random_range(0..10) {
            0 => r#"["billing"]"#,
            1 => r#"["shipping"]"#,
            2 => r#"["vip","shipping"]"#,
            _ => "[]",
        };
        let preview_text = last.map_or_else(String::new, |s| {
            preview(&text(s.seed, s.direction, &contact_name), None)
        });
        plans.push(Plan {
            state: ConversationState {
                id: ConversationId(uuid_at(created_at)),
                channel_id: channels[rng.random_range(0..channels.len())],
                contact_id: ContactId(uuid_at(created_at)),
                contact_handle: format!("customer-{i}"),
                status: status.as_str().to_owned(),
                assignee_id: assignee.map(|a| agents[a].0),
                subject: None,
                labels: labels.to_owned(),
                preview: preview_text,
                message_count: count as i64,
                unread_count: if waiting { unread } else { 0 },
                created_at,
                last_message_at: last_at,
                waiting_since: if waiting { waiting_since } else { None },
                // In the future: the snooze timer must not wake them during the measurement.
                snoozed_until: (status == ConversationStatus::Snoozed)
                    .then(|| now + rng.random_range(1..30) * DAY),
                resolved_at: (status == ConversationStatus::Resolved)
                    .then(|| (last_at + rng.random_range(1..120) * MINUTE).min(now)),
                subject_key: None,
            },
            contact_name,
        });
    }
    (plans, slots)
}

/// A UUIDv7 for this time (ids are time-ordered, like the ones minted at ingest).
fn uuid_at(millis: i64) -> uuid::Uuid {
    let millis = millis.max(0) as u64;
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        (millis % 1000) as u32 * 1_000_000,
    ))
}

fn message_row(slot: &Slot, plans: &[Plan], agents: &[(AgentId, String)]) -> NewMessage {
    let plan = &plans[slot.conversation as usize];
    let c = &plan.state;
    let (agent_id, agent_name) = &agents[slot.agent as usize];
    let inbound = slot.direction == Direction::Inbound;
    NewMessage {
        id: slot.id,
        conversation_id: c.id,
        channel_id: c.channel_id,
        external_id: match slot.direction {
            Direction::Inbound => Some(format!("seed-{}", slot.seed)),
            Direction::Outbound => Some(format!("seed-reply-{}", slot.seed)),
            Direction::Note => None,
        },
        direction: slot.direction,
        contact_id: inbound.then_some(c.contact_id),
        agent_id: (!inbound).then_some(*agent_id),
        sender_handle: inbound.then(|| c.contact_handle.clone()),
        sender_name: Some(if inbound {
            plan.contact_name.clone()
        } else {
            agent_name.clone()
        }),
        text: text(slot.seed, slot.direction, &plan.contact_name),
        html: None,
        subject: None,
        in_reply_to: None,
        attachments: "[]".to_owned(),
        raw_ref: None,
        thread_reason: match slot.direction {
            Direction::Inbound if slot.at == c.created_at => ThreadReason::NewConversation,
            Direction::Inbound => ThreadReason::LatestConversation,
            _ => ThreadReason::Agent,
        },
        sent_at: slot.at,
        claimed_sent_at: None,
        received_at: slot.at,
        delivery_status: (slot.direction == Direction::Outbound).then_some(DeliveryStatus::Sent),
    }
}

/// The text of message `seed`: sentences of words drawn from [`WORDS`] with a Zipf-like skew
/// (a few words in most messages, most words in few), now and then an order number.
fn text(seed: u32, direction: Direction, customer: &str) -> String {
    let mut rng = StdRng::seed_from_u64(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1);
    let mut out = String::with_capacity(256);
    match direction {
        Direction::Inbound => {
            if rng.random_range(0..3) == 0 {
                out.push_str("Hello, ");
            }
        }
        Direction::Outbound => {
            out.push_str("Hi ");
            out.push_str(customer.split(' ').next().unwrap_or(customer));
            out.push_str(", thanks for your message. ");
        }
        Direction::Note => out.push_str("Internal note: "),
    }
    let sentences = match direction {
        Direction::Note => 1,
        _ => rng.random_range(1..4),
    };
    for s in 0..sentences {
        if s > 0 {
            out.push(' ');
        }
        let words = rng.random_range(4..18);
        for w in 0..words {
            if w > 0 {
                out.push(' ');
            }
            let word = zipf_word(&mut rng);
            if w == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push_str(word);
            }
        }
        if direction == Direction::Inbound && rng.random_range(0..6) == 0 {
            out.push_str(&format!(", order {}", rng.random_range(10_000..100_000)));
        }
        out.push(if rng.random_range(0..4) == 0 {
            '?'
        } else {
            '.'
        });
    }
    out
}

/// A word with probability about proportional to 1 / rank.
fn zipf_word(rng: &mut StdRng) -> &'static str {
    let draw: f64 = rng.random();
    let rank = ((WORDS.len() as f64 + 1.0).powf(draw) - 1.0) as usize;
    WORDS[rank.min(WORDS.len() - 1)]
}

/// Cursors (`before=`) at evenly spread depths of the big conversation's history.
async fn deep_cursors(
    store: &Store,
    conversation: ConversationId,
    messages: usize,
) -> anyhow::Result<Vec<String>> {
    const SQL: &str = "SELECT sent_at, ingest_seq FROM messages WHERE conversation_id = $1
                       ORDER BY sent_at DESC, ingest_seq DESC LIMIT 1 OFFSET $2";
    let mut cursors = Vec::new();
    if messages <= 2 * HISTORY_PAGE as usize {
        return Ok(cursors);
    }
    for step in 1..=20 {
        // From a tenth of the history down to its oldest page.
        let depth = (messages - HISTORY_PAGE as usize) * (step * 9 + 1) / 190;
        let (at, seq): (i64, i64) = match store {
            Store::Sqlite(pool) => {
                sqlx::query_as(SQL)
                    .bind(conversation)
                    .bind(depth as i64)
                    .fetch_one(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as(SQL)
                    .bind(conversation)
                    .bind(depth as i64)
                    .fetch_one(pool)
                    .await?
            }
        };
        cursors.push(
            PageCursor {
                at,
                key: seq.to_string(),
            }
            .encode(),
        );
    }
    Ok(cursors)
}

// ---------------------------------------------------------------------------------------------
// The application under test, on a runtime of its own so the load generator's timers are not
// delayed by the server's tasks (both share the machine's cores).

pub(super) struct Server {
    pub(super) base: String,
    shutdown: CancellationToken,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub(super) async fn start(config: Config) -> anyhow::Result<Server> {
        let (ready, started) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bench-web-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("bench-web-server")
                    .build()?;
                runtime.block_on(async move {
                    let app = match Application::build(config).await {
                        Ok(app) => app,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = ready.send(Ok((app.local_addr(), app.shutdown_token())));
                    app.run_until_stopped().await
                })
            })?;
        let (addr, shutdown) = started
            .await
            .context("the server thread ended before it started")??;
        let server = Server {
            base: format!("http://{addr}"),
            shutdown,
            thread,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                server.stop().await;
                anyhow::bail!("the application did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The load.

/// A list request: a filter and, past the first page, the cursor the API handed out.
#[derive(Debug, Clone)]
struct ListRequest {
    filter: usize,
    cursor: Option<String>,
}

/// List filters as query strings, and as the Store takes them (`me` is the bench agent).
const FILTERS: [&str; 4] = [
    "",
    "&status=open",
    "&assignee=none",
    "&status=open&assignee=me",
];

fn store_filter(filter: usize, me: AgentId) -> ConversationFilter {
    match filter {
        1 => ConversationFilter {
            status: Some(ConversationStatus::Open),
            ..ConversationFilter::default()
        },
        2 => ConversationFilter {
            assignee: Some(None),
            ..ConversationFilter::default()
        },
        3 => ConversationFilter {
            status: Some(ConversationStatus::Open),
            assignee: Some(Some(me)),
            ..ConversationFilter::default()
        },
        _ => ConversationFilter::default(),
    }
}

/// Everything an operation needs, shared by all of them.
#[derive(Debug)]
struct Load {
    client: reqwest::Client,
    base: String,
    token: String,
    store: Store,
    me: AgentId,
    conversations: Vec<ConversationId>,
    big: ConversationId,
    /// `before=` cursors deep in the big conversation.
    deep: Vec<String>,
    /// Cursors of pages 2..=LIST_DEPTH, per filter.
    list_cursors: Vec<Vec<String>>,
    search_terms: Vec<(&'static str, String)>,
    search_available: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Open,
    OpenBig,
    OpenBigDeep,
    Search,
    /// 70 % list, 20 % open, 10 % search (list when search is not available).
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Http,
    Store,
}

impl Load {
    fn pick_list(&self, rng: &mut StdRng) -> ListRequest {
        let filter = rng.random_range(0..FILTERS.len());
        let pages = &self.list_cursors[filter];
        // Six in ten requests are a first page, the others a page further down.
        let cursor = (rng.random_range(0..10) >= 6 && !pages.is_empty())
            .then(|| pages[rng.random_range(0..pages.len())].clone());
        ListRequest { filter, cursor }
    }

    async fn get(&self, path: &str) -> Result<(), String> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        // The whole body: a response is only useful once it has arrived.
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            let shown = &body[..body.len().min(200)];
            Err(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(shown)
            ))
        }
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        Ok(response.json().await?)
    }

    async fn list(&self, request: ListRequest, via: Via) -> Result<(), String> {
        match via {
            Via::Http => {
                let mut path = format!(
                    "/api/v1/conversations?limit={LIST_PAGE}{}",
                    FILTERS[request.filter]
                );
                if let Some(cursor) = &request.cursor {
                    path.push_str("&cursor=");
                    path.push_str(cursor);
                }
                self.get(&path).await
            }
            Via::Store => {
                let cursor = request.cursor.as_deref().and_then(PageCursor::decode);
                self.store
                    .list_conversations(
                        &store_filter(request.filter, self.me),
                        cursor.as_ref(),
                        LIST_PAGE,
                    )
                    .await
                    .map(drop)
                    .map_err(|e| format!("list: {e}"))
            }
        }
    }

    /// Opening a conversation: the conversation, then the newest page of its history (or the
    /// page before `before`), one after the other as the conversation view loads them.
    async fn open(&self, id: ConversationId, before: Option<&str>, via: Via) -> Result<(), String> {
        match via {
            Via::Http => {
                self.get(&format!("/api/v1/conversations/{id}")).await?;
                let mut path = format!("/api/v1/conversations/{id}/messages?limit={HISTORY_PAGE}");
                if let Some(before) = before {
                    path.push_str("&before=");
                    path.push_str(before);
                }
                self.get(&path).await
            }
            Via::Store => {
                let fail = |e: inbox_core::store::StoreError| format!("open {id}: {e}");
                self.store
                    .conversation(id)
                    .await
                    .map_err(fail)?
                    .ok_or_else(|| format!("open {id}: not found"))?;
                let before = before.and_then(PageCursor::decode);
                self.store
                    .messages(id, before.as_ref(), HISTORY_PAGE)
                    .await
                    .map(drop)
                    .map_err(fail)
            }
        }
    }

    async fn search(&self, term: &str, via: Via) -> Result<(), String> {
        match via {
            Via::Http => {
                self.get(&format!("/api/v1/search?q={}", term.replace(' ', "+")))
                    .await
            }
            Via::Store => self
                .store
                .search_messages(term, None, SEARCH_PAGE)
                .await
                .map(drop)
                .map_err(|e| format!("search {term}: {e}")),
        }
    }

    /// Runs operation number `k` of a run; the choices depend only on `k`, so the HTTP and the
    /// Store runs of a scenario make the same requests.
    async fn run(self: Arc<Self>, op: Op, via: Via, k: u64) -> (&'static str, Result<(), String>) {
        let mut rng = StdRng::seed_from_u64(k.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let op = match op {
            Op::Mixed => match rng.random_range(0..10) {
                0..7 => Op::List,
                7..9 => Op::Open,
                _ if self.search_available => Op::Search,
                _ => Op::List,
            },
            op => op,
        };
        match op {
            Op::List => {
                let request = self.pick_list(&mut rng);
                let kind = LIST_KINDS[usize::from(request.cursor.is_some())];
                (kind, self.list(request, via).await)
            }
            Op::Open => {
                let id = self.conversations[rng.random_range(0..self.conversations.len())];
                ("open", self.open(id, None, via).await)
            }
            Op::OpenBig => ("open big", self.open(self.big, None, via).await),
            Op::OpenBigDeep => {
                let before = (!self.deep.is_empty())
                    .then(|| self.deep[rng.random_range(0..self.deep.len())].as_str());
                ("open big deep", self.open(self.big, before, via).await)
            }
            Op::Search | Op::Mixed => {
                let (kind, term) = &self.search_terms[rng.random_range(0..self.search_terms.len())];
                (*kind, self.search(term, via).await)
            }
        }
    }
}

async fn load(
    store: &Store,
    seeded: &Seeded,
    deep: &[String],
    server: &Server,
    args: &WebArgs,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut load = Load {
        client,
        base: server.base.clone(),
        token: seeded.token.clone(),
        store: store.clone(),
        me: seeded.agent,
        conversations: seeded.conversations.clone(),
        big: seeded.big,
        deep: deep.to_vec(),
        list_cursors: Vec::new(),
        search_terms: search_terms(),
        search_available: false,
    };

    // Follow next_cursor down the list for every filter, as an agent scrolling would.
    for filter in FILTERS {
        let mut cursors = Vec::new();
        let mut path = format!("/api/v1/conversations?limit={LIST_PAGE}{filter}");
        for _ in 1..LIST_DEPTH {
            let page = load.get_json(&path).await?;
            let Some(next) = page["next_cursor"].as_str() else {
                break;
            };
            cursors.push(next.to_owned());
            path = format!("/api/v1/conversations?limit={LIST_PAGE}{filter}&cursor={next}");
        }
        load.list_cursors.push(cursors);
    }
    let first = load
        .get_json(&format!(
            "/api/v1/conversations/{}/messages?limit={HISTORY_PAGE}",
            seeded.big
        ))
        .await?;
    let items = first["items"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        items == HISTORY_PAGE.min(args.big as u32) as usize,
        "the big conversation's first page has {items} messages"
    );

    let probe = load
        .client
        .get(format!("{}/api/v1/search?q=refund", load.base))
        .bearer_auth(&load.token)
        .send()
        .await?;
    load.search_available = probe.status() != reqwest::StatusCode::NOT_FOUND;
    if !load.search_available {
        println!("  search: not available (GET /api/v1/search answers 404); left out of the runs");
    }
    let load = Arc::new(load);

    if !args.warmup.is_zero() {
        open_loop(
            args.rate,
            args.warmup,
            args.concurrency,
            op(&load, Op::Mixed, Via::Http),
        )
        .await;
    }

    println!(
        "\n  Open loop at {}/s for {:?} each; latency in ms from each operation's scheduled time. \
         An open is two requests (the conversation, then {HISTORY_PAGE} messages); \
         peak = most operations in flight.",
        args.rate, args.duration
    );
    println!(
        "  {:<34} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5}  target",
        "scenario", "ops", "errors", "ops/s", "p50", "p90", "p99", "max", "peak"
    );
    let big = args.big;
    let mut verdicts = Vec::new();
    // Paging deep into the big history runs last: when it cannot keep up, its backlog (and the
    // cache it churns) must not spill into the other figures.
    let search = load.search_available;
    let scenarios = [
        (true, Op::List, Via::Http, "list".to_owned()),
        (
            true,
            Op::Open,
            Via::Http,
            "open (random conversation)".to_owned(),
        ),
        (
            true,
            Op::OpenBig,
            Via::Http,
            format!("open big ({big} msgs), newest"),
        ),
        (search, Op::Search, Via::Http, "search".to_owned()),
        (true, Op::Mixed, Via::Http, "mixed 70/20/10".to_owned()),
        (true, Op::List, Via::Store, "store: list".to_owned()),
        (
            true,
            Op::Open,
            Via::Store,
            "store: open (random)".to_owned(),
        ),
        (
            true,
            Op::OpenBig,
            Via::Store,
            "store: open big, newest".to_owned(),
        ),
        (search, Op::Search, Via::Store, "store: search".to_owned()),
        (
            true,
            Op::OpenBigDeep,
            Via::Http,
            format!("open big ({big} msgs), before="),
        ),
        (
            true,
            Op::OpenBigDeep,
            Via::Store,
            "store: open big, before=".to_owned(),
        ),
    ]
    .into_iter()
    .filter_map(|(wanted, op, via, label)| wanted.then_some((op, via, label)));
    let mut lag = Vec::new();
    for (op_kind, via, label) in scenarios {
        let run = open_loop(
            args.rate,
            args.duration,
            args.concurrency,
            op(&load, op_kind, via),
        )
        .await;
        lag.extend(run.lag.iter().copied());
        let target = match (op_kind, via) {
            (Op::List, Via::Http) => Some(LIST_TARGET_MS),
            (Op::OpenBig | Op::OpenBigDeep, Via::Http) => Some(OPEN_BIG_TARGET_MS),
            _ => None,
        };
        let all = Stats::of(&run, None);
        all.print(&label, target);
        if let Some(target) = target {
            verdicts.push((label.clone(), target, all.clone()));
        }
        let parts: &[&str] = match op_kind {
            Op::Mixed => &["list", "open", "search"],
            Op::Search => &SEARCH_KINDS,
            Op::List => &LIST_KINDS,
            _ => &[],
        };
        for &kind in parts {
            let part = Stats::of(&run, Some(kind));
            if part.ops > 0 {
                let target = (op_kind == Op::Mixed && kind == "list").then_some(LIST_TARGET_MS);
                let label = match op_kind {
                    Op::Mixed => format!("mixed: {kind}"),
                    _ => kind.split_once(": ").map_or(kind, |(_, k)| k).to_owned(),
                };
                part.print(&format!("  {label}"), target);
                if let Some(target) = target {
                    verdicts.push((label, target, part));
                }
            }
        }
        if let Some(error) = &all.first_error {
            println!("    first error: {error}");
        }
    }
    if !load.search_available {
        println!("  {:<34} not available (404)", "search");
    }
    lag.sort_unstable();
    println!(
        "  (operations started {:.3} ms after their scheduled time at p50, {:.3} ms at p99; \
         included in the latencies)",
        ms(quantile(&lag, 0.5)),
        ms(quantile(&lag, 0.99))
    );

    println!("  load average at the end: {}", load_average());
    println!("\n  Targets (p99, at {}/s):", args.rate);
    for (label, target, stats) in verdicts {
        println!(
            "    {:<34} p99 {:>7.2} ms ≤ {target} ms: {}",
            label,
            stats.p99,
            if stats.met(target) { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

fn op(load: &Arc<Load>, op: Op, via: Via) -> impl FnMut(u64) -> OpFuture + use<> {
    let load = load.clone();
    move |k| {
        let load = load.clone();
        Box::pin(async move {
            let (kind, result) = load.run(op, via, k).await;
            (kind, result.err())
        })
    }
}

/// Kinds of list request: the first page, or one further down through `next_cursor`.
const LIST_KINDS: [&str; 2] = ["list: first page", "list: pages 2-6"];

/// Kinds of search, by how many messages match (at 1M messages).
const SEARCH_KINDS: [&str; 4] = [
    "search: common word",
    "search: rarer word",
    "search: two words",
    "search: order number",
];

/// Search terms of each of [`SEARCH_KINDS`]: words in 11–66 % of the messages, words in 2–5 %,
/// two words together (0.25–2.5 %), and order numbers (a couple of messages each at 1M, or none).
fn search_terms() -> Vec<(&'static str, String)> {
    let mut terms: Vec<(&'static str, String)> = [
        (0, "order"),
        (0, "refund"),
        (0, "delivery"),
        (0, "invoice"),
        (1, "warranty"),
        (1, "voucher"),
        (1, "chargeback"),
        (1, "customs"),
        (2, "damaged parcel"),
        (2, "refund invoice"),
        (2, "password reset"),
    ]
    .into_iter()
    .map(|(kind, term)| (SEARCH_KINDS[kind], term.to_owned()))
    .collect();
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..4 {
        terms.push((
            SEARCH_KINDS[3],
            rng.random_range(10_000..100_000).to_string(),
        ));
    }
    terms
}

// ---------------------------------------------------------------------------------------------
// Open-loop runner and statistics.

type OpFuture = Pin<Box<dyn Future<Output = (&'static str, Option<String>)> + Send>>;

#[derive(Debug)]
struct Sample {
    kind: &'static str,
    latency: Duration,
    error: Option<String>,
}

#[derive(Debug)]
struct RunResult {
    samples: Vec<Sample>,
    /// From the first scheduled operation to the last answer.
    elapsed: Duration,
    /// How late the generator started each operation (timer granularity, or an overloaded client).
    lag: Vec<Duration>,
    peak_in_flight: usize,
}

/// Issues `rate × duration` operations at fixed times; each one's latency runs from its scheduled
/// time to its end, including any wait for one of the `concurrency` slots.
async fn open_loop(
    rate: f64,
    duration: Duration,
    concurrency: usize,
    mut op: impl FnMut(u64) -> OpFuture + Send + 'static,
) -> RunResult {
    let total = ((rate * duration.as_secs_f64()).round() as u64).max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(5);
    // The schedule is kept by a thread of its own sleeping to each instant (tokio's timer wheel
    // rounds up to the next millisecond, which would add up to 1 ms to every latency).
    let peak_seen = peak.clone();
    let schedule = tokio::task::spawn_blocking(move || {
        let mut tasks = Vec::with_capacity(total as usize);
        let mut lag = Vec::with_capacity(total as usize);
        for k in 0..total {
            let scheduled = start + Duration::from_secs_f64(k as f64 / rate);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            lag.push(scheduled.elapsed());
            let future = op(k);
            let (slots, in_flight, peak) = (slots.clone(), in_flight.clone(), peak.clone());
            tasks.push(runtime.spawn(async move {
                let (kind, error) = match slots.acquire_owned().await {
                    Ok(permit) => {
                        let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                        peak.fetch_max(now, Ordering::Relaxed);
                        let outcome = future.await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                        outcome
                    }
                    Err(e) => ("?", Some(e.to_string())),
                };
                Sample {
                    kind,
                    latency: scheduled.elapsed(),
                    error,
                }
            }));
        }
        (tasks, lag)
    });
    let (tasks, lag) = match schedule.await {
        Ok(scheduled) => scheduled,
        Err(e) => {
            return RunResult {
                samples: vec![Sample {
                    kind: "?",
                    latency: Duration::ZERO,
                    error: Some(format!("the scheduler failed: {e}")),
                }],
                elapsed: start.elapsed(),
                lag: Vec::new(),
                peak_in_flight: 0,
            };
        }
    };
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(sample) => samples.push(sample),
            Err(e) => samples.push(Sample {
                kind: "?",
                latency: Duration::ZERO,
                error: Some(format!("task failed: {e}")),
            }),
        }
    }
    RunResult {
        samples,
        elapsed: start.elapsed(),
        lag,
        peak_in_flight: peak_seen.load(Ordering::Relaxed),
    }
}

#[derive(Debug, Clone)]
struct Stats {
    ops: usize,
    errors: usize,
    rate: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    peak_in_flight: usize,
    first_error: Option<String>,
}

impl Stats {
    /// Over the successful operations (of one kind, or all); errors are counted apart.
    fn of(run: &RunResult, kind: Option<&str>) -> Stats {
        let chosen: Vec<&Sample> = run
            .samples
            .iter()
            .filter(|s| {
                kind.is_none_or(|k| {
                    s.kind == k || s.kind.strip_prefix(k).is_some_and(|r| r.starts_with(':'))
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = chosen
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| s.latency)
            .collect();
        latencies.sort_unstable();
        let errors = chosen.len() - latencies.len();
        Stats {
            ops: chosen.len(),
            errors,
            rate: chosen.len() as f64 / run.elapsed.as_secs_f64(),
            p50: ms(quantile(&latencies, 0.50)),
            p90: ms(quantile(&latencies, 0.90)),
            p99: ms(quantile(&latencies, 0.99)),
            max: ms(quantile(&latencies, 1.0)),
            peak_in_flight: run.peak_in_flight,
            first_error: chosen.iter().find_map(|s| s.error.clone()),
        }
    }

    /// The p99 is within the target and nothing failed.
    fn met(&self, target_ms: f64) -> bool {
        self.errors == 0 && self.ops > 0 && self.p99 <= target_ms
    }

    fn print(&self, label: &str, target: Option<f64>) {
        let verdict = match target {
            None => String::new(),
            Some(t) if self.met(t) => format!("p99 ≤ {t} ms: met"),
            Some(t) => format!("p99 ≤ {t} ms: MISSED"),
        };
        println!(
            "  {:<34} {:>7} {:>6} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>5}  {verdict}",
            label,
            self.ops,
            self.errors,
            self.rate,
            self.p50,
            self.p90,
            self.p99,
            self.max,
            self.peak_in_flight
        );
    }
}

/// The `q` quantile of sorted durations (nearest rank); zero when there are none.
pub(super) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The 1-minute load average (Linux): other work on the machine shows in the latencies.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `20s`, `500ms`, `2m` or a number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let bad = || format!("`{raw}` is not a duration like 20s, 500ms or 2m");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

// ---------------------------------------------------------------------------------------------
// Word lists.

/// Words of support messages, roughly by how often they occur: [`zipf_word`] draws rank r with
/// probability about 1 / r, so the first ones are in most messages and the last in very few.
static WORDS: LazyLock<Vec<&str>> = LazyLock::new(|| WORDS_TEXT.split_whitespace().collect());
static FIRST_NAMES: LazyLock<Vec<&str>> =
    LazyLock::new(|| FIRST_NAMES_TEXT.split_whitespace().collect());
static LAST_NAMES: LazyLock<Vec<&str>> =
    LazyLock::new(|| LAST_NAMES_TEXT.split_whitespace().collect());

const WORDS_TEXT: &str = "\
     the my order i to and is a it not please for you delivery of have refund on was with this \
     can payment account when package still help tracking invoice but we received your be did \
     shipping today thanks return number been card email need password app wrong item address \
     cancel subscription charged days after week since working login there update problem again \
     could would size replacement exchange store website checkout error message price discount \
     code coupon voucher missing late damaged broken parcel courier label receipt stock available \
     colour screen battery charger cable phone laptop headphones warranty repair status \
     confirmation reset locked twice bank transfer paypal credit debit plan upgrade downgrade \
     premium trial renewal expired manager complaint feedback review urgent asap weekend monday \
     friday morning evening tomorrow yesterday customer service support agent chat call ticket \
     reference photo attached picture scratch dent leaking smell noise crash freezes slow \
     notification download install version android iphone browser cookie captcha verification sms \
     two-factor profile settings language currency tax vat customs duty import international \
     express standard pickup locker neighbour doorstep signature driver warehouse dispatch \
     backorder preorder restock gift wrapping bundle promotion newsletter unsubscribe privacy \
     gdpr delete data export invoice-address company business bulk wholesale quote contract terms \
     policy loyalty points membership referral balance installment klarna overdue reminder fee \
     penalty chargeback dispute fraud suspicious hacked compromised ombudsman lawyer escalate \
     escalation compensation goodwill apology disappointed frustrated unacceptable excellent \
     amazing recommend stars trustpilot warrantied firmware bluetooth pairing adapter voltage \
     fuse socket hinge zipper stitching fabric shrunk faded allergic ingredients expiry mould \
     fragile shattered pallet freight tachograph affidavit";

const FIRST_NAMES_TEXT: &str = "\
     Ada Ben Chloé Dmitri Emma Farid Grace Hiro Ines Jonas Kemi Lena Mateo Nora Omar Priya \
     Quentin Rosa Sven Tariq Uma Viktor Wen Ximena Yusuf Zoë";

const LAST_NAMES_TEXT: &str = "\
     Lovelace Okafor Müller Ivanova Rossi Haddad Hopper Tanaka García Berg Adeyemi Novak Silva \
     Jensen Khan Patel Dubois Costa Lind Aziz Nair Petrov Chen López Demir Schulz";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_web_bench_runs_on_a_small_inbox() {
        let args = WebArgs {
            store: StoreKind::Sqlite,
            conversations: 30,
            messages: 400,
            big: 200,
            rate: 50.0,
            duration: Duration::from_millis(200),
            concurrency: 4,
            warmup: Duration::ZERO,
            keep: false,
        };
        run(&Config::default(), &args)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn generated_conversations_match_their_messages() {
        let args = WebArgs {
            store: StoreKind::Sqlite,
            conversations: 50,
            messages: 1_000,
            big: 300,
            rate: 1.0,
            duration: Duration::from_secs(1),
            concurrency: 1,
            warmup: Duration::ZERO,
            keep: false,
        };
        let channels = [ChannelId::new()];
        let agents = vec![
            (AgentId::new(), "A".to_owned()),
            (AgentId::new(), "B".to_owned()),
        ];
        let (plans, slots) = generate(&args, &channels, &agents);
        assert_eq!(plans.len(), 50);
        assert_eq!(slots.len(), 1_000);
        assert_eq!(plans[0].state.message_count, 300);
        for (i, plan) in plans.iter().enumerate() {
            let mine: Vec<&Slot> = slots
                .iter()
                .filter(|s| s.conversation as usize == i)
                .collect();
            assert_eq!(mine.len() as i64, plan.state.message_count);
            let last = mine.iter().max_by_key(|s| s.at).unwrap();
            assert_eq!(last.at, plan.state.last_message_at);
            assert_eq!(
                plan.state.preview,
                preview(&text(last.seed, last.direction, &plan.contact_name), None)
            );
            assert_eq!(mine[0].direction, Direction::Inbound);
        }
        // Texts vary and contain the searched words now and then.
        let texts: Vec<String> = slots
            .iter()
            .map(|s| text(s.seed, s.direction, "Ada Lovelace"))
            .collect();
        assert!(texts.iter().filter(|t| t.contains("refund")).count() > 10);
        let distinct: std::collections::HashSet<_> = texts.iter().collect();
        assert!(distinct.len() > 990);
    }
}
