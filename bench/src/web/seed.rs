//! Seeding a large inbox straight into the tables: conversations with a long-tailed size,
//! messages whose texts carry the searched words now and then, and deep list cursors.

use std::time::Instant;

use chrono::Utc;
use inbox_core::envelope::{ChannelKind, DeliveryStatus};
use inbox_core::ids::{AgentId, ChannelId, ContactId, ConversationId, MessageId};
use inbox_core::ingest::preview;
use inbox_core::model::{Actor, ConversationStatus, Direction, EventKind, Role, ThreadReason};
use inbox_core::store::{
    ConversationState, NewContact, NewEvent, NewIdentity, NewMessage, PageCursor, Store,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use inbox_core::store::test_support::RawPool;

use super::words::{FIRST_NAMES, LAST_NAMES, WORDS};
use super::{HISTORY_PAGE, SEED_BATCH, WebArgs};

// ---------------------------------------------------------------------------------------------
// Seeding: rows straight into the tables, in big transactions, through the Store's multi-row
// inserts (so whatever the `messages` table maintains — indexes, the full-text index — is kept).

/// What the load needs to know about the seeded data.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub(crate) conversations: Vec<ConversationId>,
    pub(crate) big: ConversationId,
    pub(crate) token: String,
    pub(crate) agent: AgentId,
}

/// One message to write, in the compact form kept for the whole seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) at: i64,
    pub(crate) id: MessageId,
    pub(crate) conversation: u32,
    /// Index of the text (and of the external id).
    pub(crate) seed: u32,
    pub(crate) direction: Direction,
    pub(crate) agent: u8,
}

/// A conversation as seeded: its row and its contact.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) state: ConversationState,
    pub(crate) contact_name: String,
}

pub(crate) async fn seed(store: &Store, args: &WebArgs) -> anyhow::Result<Seeded> {
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
        tx.raw().insert_contacts(&contacts).await?;
        tx.raw().insert_identities(&identities).await?;
        tx.raw().upsert_conversations(&states).await?;
        tx.raw().insert_events(&events).await?;
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
        tx.raw().insert_messages(&rows).await?;
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
    match store.raw_pool() {
        RawPool::Postgres(pool) => {
            sqlx::raw_sql("DELETE FROM event_outbox")
                .execute(pool)
                .await?;
            sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await?;
        }
        RawPool::Sqlite(pool) => {
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
        match store.raw_pool() {
            RawPool::Postgres(_) => "VACUUM ANALYZE",
            RawPool::Sqlite(_) => "WAL checkpoint",
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
pub(crate) fn generate(
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
pub(crate) fn uuid_at(millis: i64) -> uuid::Uuid {
    let millis = millis.max(0) as u64;
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1000,
        (millis % 1000) as u32 * 1_000_000,
    ))
}

pub(crate) fn message_row(slot: &Slot, plans: &[Plan], agents: &[(AgentId, String)]) -> NewMessage {
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
        part_of: None,
    }
}

/// The text of message `seed`: sentences of words drawn from [`WORDS`] with a Zipf-like skew
/// (a few words in most messages, most words in few), now and then an order number.
pub(crate) fn text(seed: u32, direction: Direction, customer: &str) -> String {
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
pub(crate) fn zipf_word(rng: &mut StdRng) -> &'static str {
    let draw: f64 = rng.random();
    let rank = ((WORDS.len() as f64 + 1.0).powf(draw) - 1.0) as usize;
    WORDS[rank.min(WORDS.len() - 1)]
}

/// Cursors (`before=`) at evenly spread depths of the big conversation's history.
pub(crate) async fn deep_cursors(
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
        let (at, seq): (i64, i64) = match store.raw_pool() {
            RawPool::Sqlite(pool) => {
                sqlx::query_as(SQL)
                    .bind(conversation)
                    .bind(depth as i64)
                    .fetch_one(pool)
                    .await?
            }
            RawPool::Postgres(pool) => {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use inbox_core::ids::{AgentId, ChannelId};
    use inbox_core::ingest::preview;
    use inbox_core::model::Direction;

    use super::*;
    use crate::StoreKind;
    use crate::web::WebArgs;

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
