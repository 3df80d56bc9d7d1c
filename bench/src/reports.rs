//! `inbox bench reports`: seeds conversations with realistic logs (a customer's question, replies
//! after long-tailed delays, a follow-up now and then, most of them resolved) through the log
//! writes the product makes, so the samples are measured by the same code that keeps them in
//! production; then asks the report API for 30- and 365-day ranges, grouped by day and by agent,
//! and prints p50/p99 next to two baselines of the same run: the same report without HTTP, and a
//! raw read of the range's durations (what any design reading samples pays at least).

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use clap::Args;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::{AgentId, ChannelId, ContactId, ConversationId};
use inbox_core::metrics::Metric;
use inbox_core::model::{Actor, EventKind, Role};
use inbox_core::reports::{GroupBy, Hours, Range, ReportQuery, response_times};
use inbox_core::store::test_support::RawPool;
use inbox_core::store::{ConversationState, NewContact, NewEvent, NewIdentity, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::web::{Server, Target, quantile};
use crate::{StoreKind, ms};

/// Conversations per seeding transaction.
const BATCH: usize = 2_000;
/// The target of issue 13 (p99, milliseconds).
const TARGET_MS: f64 = 200.0;

#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// Backend. postgres: a throwaway database on the server of INBOX_DATABASE_URL.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Conversations to seed, spread over --days.
    #[arg(long, default_value_t = 1_000_000)]
    conversations: usize,
    /// Days of history.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Agents answering.
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Requests per measured report shape.
    #[arg(long, default_value_t = 40)]
    requests: usize,
    /// Keep the seeded database (and print where it is).
    #[arg(long)]
    keep: bool,
    /// Measure on a database kept by an earlier run (its data directory, or its PostgreSQL
    /// URL) instead of seeding one; it is left as it is.
    #[arg(long, value_name = "DIR_OR_URL")]
    reuse: Option<String>,
}

pub async fn run(config: &inbox_app::config::Config, args: &ReportsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.conversations >= 1,
        "--conversations must be at least 1"
    );
    anyhow::ensure!(args.days >= 30, "--days must be at least 30");
    anyhow::ensure!(args.agents >= 1, "--agents must be at least 1");
    println!(
        "bench reports: {} conversations over {} days, {} agents, store {:?}; {} requests per shape",
        args.conversations, args.days, args.agents, args.store, args.requests
    );
    let target = match &args.reuse {
        Some(kept) => Target::reuse(config, kept)?,
        None => Target::create(config, args.store).await?,
    };
    let outcome = measure(&target, args).await;
    target.finish(args.keep || args.reuse.is_some()).await?;
    outcome
}

async fn measure(target: &Target, args: &ReportsArgs) -> anyhow::Result<()> {
    let store = Store::open(&target.config.store()).await?;
    let token = match args.reuse {
        Some(_) => {
            let agent = store
                .agent_by_email("agent0@example.com")
                .await?
                .ok_or_else(|| anyhow::anyhow!("not a database this bench seeded"))?;
            store.create_api_token(agent.id, "bench reports").await?
        }
        None => seed(&store, args).await?,
    };
    let server = Server::start(target.config.clone()).await?;
    let client = reqwest::Client::new();
    let today = Utc::now().date_naive();
    println!(
        "  shape                  | raw read p50/p99 | no HTTP p50/p99 | API p50/p99 (ms) | samples"
    );
    for (days, group_by, name) in [
        (30, GroupBy::Day, "30 days by day"),
        (30, GroupBy::Agent, "30 days by agent"),
        (365, GroupBy::Day, "365 days by day"),
        (365, GroupBy::Agent, "365 days by agent"),
    ] {
        let from = today - Days::new(days - 1);
        let query = ReportQuery {
            metric: Metric::FirstReply,
            range: Range::new(from, today, chrono_tz::Tz::UTC)?,
            group_by,
            hours: Hours::Business,
            channel: None,
            agent: None,
            label: None,
        };
        let url = format!(
            "{}/api/v1/reports/response-times?metric=frt&from={from}&to={today}&group_by={}&hours=business",
            server.base,
            match group_by {
                GroupBy::Agent => "agent",
                _ => "day",
            }
        );
        let mut raw = Vec::with_capacity(args.requests);
        let mut direct = Vec::with_capacity(args.requests);
        let mut api = Vec::with_capacity(args.requests);
        let mut samples = 0;
        // One unmeasured round first (caches, connections).
        for round in 0..=args.requests {
            let started = Instant::now();
            samples = raw_read(&store, &query).await?;
            let raw_took = started.elapsed();
            let started = Instant::now();
            let report = response_times(&store, &query).await?;
            let direct_took = started.elapsed();
            let started = Instant::now();
            let response = client.get(&url).bearer_auth(&token).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            response.bytes().await?;
            let api_took = started.elapsed();
            anyhow::ensure!(report.total.map_or(0, |t| t.count) <= samples);
            if round > 0 {
                raw.push(raw_took);
                direct.push(direct_took);
                api.push(api_took);
            }
        }
        for v in [&mut raw, &mut direct, &mut api] {
            v.sort_unstable();
        }
        let p = |v: &[Duration], q| ms(quantile(v, q));
        let verdict = if p(&api, 0.99) <= TARGET_MS {
            "meets"
        } else {
            "MISSES"
        };
        println!(
            "  {name:<22} | {:>6.1} / {:>6.1} | {:>6.1} / {:>6.1} | {:>6.1} / {:>6.1} | {samples} ({verdict} p99 ≤ {TARGET_MS} ms)",
            p(&raw, 0.5),
            p(&raw, 0.99),
            p(&direct, 0.5),
            p(&direct, 0.99),
            p(&api, 0.5),
            p(&api, 0.99),
        );
    }
    server.stop().await;
    store.close().await;
    Ok(())
}

/// The range's durations read straight from the samples' index, nothing summarised.
async fn raw_read(store: &Store, query: &ReportQuery) -> anyhow::Result<usize> {
    let (from, to) = query.range.instants();
    let sql = "SELECT business_s FROM metric_samples WHERE metric = $1 AND ended_at >= $2 AND ended_at < $3";
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    let rows: Vec<i64> = match store.raw_pool() {
        RawPool::Sqlite(pool) => {
            sqlx::query_scalar(sql)
                .bind(query.metric.id())
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?
        }
        RawPool::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(query.metric.id())
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows.len())
}

/// A wait in seconds, long-tailed: mostly minutes, sometimes days.
fn delay(rng: &mut StdRng, median_s: f64) -> i64 {
    let normal: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
    (median_s * (1.2 * normal).exp()).clamp(5.0, 5.0 * 86_400.0) as i64
}

/// Seeds the channels, agents and conversations; gives an API token.
async fn seed(store: &Store, args: &ReportsArgs) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut channels: Vec<ChannelId> = Vec::new();
    for name in ["Email", "Chat", "Webhook"] {
        channels.push(
            store
                .create_channel(ChannelKind::WEBHOOK, name, serde_json::json!({}), name)
                .await?
                .id,
        );
    }
    let mut agents: Vec<AgentId> = Vec::new();
    for i in 0..args.agents {
        let agent = store
            .create_agent(
                &format!("agent{i}@example.com"),
                &format!("Agent {i}"),
                Role::Agent,
                None,
            )
            .await?;
        agents.push(agent.id);
    }
    let token = store.create_api_token(agents[0], "bench reports").await?;
    let mut rng = StdRng::seed_from_u64(13);
    let now = Utc::now().timestamp_millis();
    let span = i64::try_from(args.days)? * 86_400_000;
    let mut done = 0;
    while done < args.conversations {
        let n = BATCH.min(args.conversations - done);
        let mut contacts = Vec::with_capacity(n);
        let mut identities = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n * 6);
        for _ in 0..n {
            let conversation = ConversationId::new();
            let contact = ContactId::new();
            let channel = channels[rng.random_range(0..channels.len())];
            let agent = agents[rng.random_range(0..agents.len())];
            let opened = now - rng.random_range(0..span);
            let handle = format!(
                "c{}",
                conversation.to_string().get(..13).unwrap_or_default()
            );
            let mut log = Log::new(conversation, contact);
            log.push(
                EventKind::Opened,
                Actor::Contact(contact),
                opened,
                serde_json::json!({}),
            );
            log.push(
                EventKind::MessageReceived,
                Actor::Contact(contact),
                opened,
                serde_json::json!({}),
            );
            let mut at = opened;
            let mut last = opened;
            let answered = rng.random_bool(0.92);
            if answered {
                at += delay(&mut rng, 1_800.0) * 1_000;
                log.push(
                    EventKind::Replied,
                    Actor::Agent(agent),
                    at,
                    serde_json::json!({}),
                );
                last = at;
                if rng.random_bool(0.3) {
                    at += delay(&mut rng, 3_600.0) * 1_000;
                    log.push(
                        EventKind::MessageReceived,
                        Actor::Contact(contact),
                        at,
                        serde_json::json!({}),
                    );
                    at += delay(&mut rng, 1_200.0) * 1_000;
                    log.push(
                        EventKind::Replied,
                        Actor::Agent(agent),
                        at,
                        serde_json::json!({}),
                    );
                    last = at;
                }
            }
            let resolved = (answered && rng.random_bool(0.85))
                .then(|| last + delay(&mut rng, 7_200.0) * 1_000);
            if let Some(r) = resolved {
                log.push(
                    EventKind::Resolved,
                    Actor::Agent(agent),
                    r,
                    serde_json::json!({"from": "open", "to": "resolved"}),
                );
            }
            // Only what already happened is in the log.
            events.extend(log.rows.into_iter().filter(|e| e.at <= now));
            contacts.push(NewContact {
                id: contact,
                name: Some(format!("Customer {handle}")),
                email: None,
                phone: None,
                created_at: opened,
            });
            identities.push(NewIdentity {
                namespace: format!("webhook:{channel}"),
                handle: handle.clone(),
                contact_id: contact,
                created_at: opened,
            });
            let resolved = resolved.filter(|r| *r <= now);
            states.push(ConversationState {
                id: conversation,
                channel_id: channel,
                contact_id: contact,
                contact_handle: handle,
                status: if resolved.is_some() {
                    "resolved"
                } else {
                    "open"
                }
                .to_owned(),
                assignee_id: Some(agent),
                subject: None,
                labels: if rng.random_bool(0.2) {
                    r#"["vip"]"#
                } else {
                    "[]"
                }
                .to_owned(),
                preview: "Where is my order?".to_owned(),
                message_count: 1,
                unread_count: 0,
                created_at: opened,
                last_message_at: last.min(now),
                waiting_since: None,
                snoozed_until: None,
                resolved_at: resolved,
                subject_key: None,
            });
        }
        let mut tx = store.begin().await?;
        tx.raw().insert_contacts(&contacts).await?;
        tx.raw().insert_identities(&identities).await?;
        tx.raw().upsert_conversations(&states).await?;
        tx.raw().insert_events(&events).await?;
        // The commit measures the new log rows, as in production.
        tx.commit().await?;
        done += n;
        if done % 100_000 < BATCH {
            println!(
                "  seeded {done} conversations ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "  seeded {} conversations with their samples in {:.1} s",
        args.conversations,
        started.elapsed().as_secs_f64()
    );
    Ok(token)
}

/// One conversation's log rows being written.
struct Log {
    conversation: ConversationId,
    contact: ContactId,
    rows: Vec<NewEvent>,
}

impl Log {
    fn new(conversation: ConversationId, contact: ContactId) -> Self {
        Log {
            conversation,
            contact,
            rows: Vec::with_capacity(6),
        }
    }

    fn push(&mut self, kind: EventKind, actor: Actor, at: i64, data: serde_json::Value) {
        self.rows.push(NewEvent {
            conversation_id: self.conversation,
            kind,
            actor,
            contact_id: Some(self.contact),
            message_id: None,
            data,
            at,
        });
    }
}
