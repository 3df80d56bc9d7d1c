//! Checks on `inbox.events`, the change stream (docs/envelope.md): read with the independent
//! client and compared with what the database holds.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::kafka::{Deployment, committed_offsets, read_topic};

/// What the stream held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeStream {
    /// Records on the topic.
    pub records: usize,
    /// Distinct event ids among them.
    pub distinct: usize,
}

impl ChangeStream {
    /// Records that repeat an event already on the topic (relayed again after a crash).
    pub fn duplicates(&self) -> usize {
        self.records - self.distinct
    }
}

/// Waits until the relay emptied the event outbox, then reads all of `inbox.events` and asserts:
/// an event for every conversation-log row (same id) and for every stored message (its
/// `message_id`); each conversation on one partition, keyed by its id; and, keeping each id's
/// first copy in topic order, each conversation's events in increasing `seq`.
pub async fn assert_change_stream_complete(
    deployment: &Deployment,
    timeout: Duration,
) -> ChangeStream {
    wait_for_empty_outbox(deployment, timeout).await;
    let total: i64 = committed_offsets(&deployment.brokers, "inbox.events", "inbox-e2e-events")
        .await
        .iter()
        .map(|(_, _, high)| *high)
        .sum();
    let records = read_topic(&deployment.brokers, "inbox.events", total as usize).await;
    assert_eq!(
        records.len() as i64,
        total,
        "records read from inbox.events"
    );

    let mut ids = HashSet::new();
    let mut message_ids = HashSet::new();
    let mut partition_of: HashMap<String, i64> = HashMap::new();
    let mut last_seq: HashMap<String, (i64, i64)> = HashMap::new();
    for record in &records {
        let event: Value = serde_json::from_str(&record.value)
            .unwrap_or_else(|e| panic!("inbox.events record is not JSON ({e}): {}", record.value));
        let id = event["id"]
            .as_str()
            .unwrap_or_else(|| panic!("an event without an id: {}", record.value))
            .to_owned();
        let conversation = event["conversation_id"]
            .as_str()
            .unwrap_or_else(|| panic!("an event without a conversation_id: {}", record.value))
            .to_owned();
        assert_eq!(
            record.key.as_deref(),
            Some(conversation.as_str()),
            "an event's key is its conversation id: {}",
            record.value
        );
        let partition = *partition_of
            .entry(conversation.clone())
            .or_insert(record.partition);
        assert_eq!(
            partition, record.partition,
            "conversation {conversation} on one partition"
        );
        if let Some(message) = event["message_id"].as_str() {
            message_ids.insert(message.to_owned());
        }
        if !ids.insert(id) {
            continue; // a copy relayed again; its first copy was checked
        }
        let seq = event["seq"]
            .as_i64()
            .unwrap_or_else(|| panic!("a relayed event without its seq: {}", record.value));
        if let Some((previous, offset)) =
            last_seq.insert(conversation.clone(), (seq, record.offset))
        {
            assert!(
                previous < seq,
                "conversation {conversation}: seq {seq} at offset {} after seq {previous} at \
                 offset {offset}",
                record.offset
            );
        }
    }

    let pool = deployment.pool();
    let logged =
        assert_each_has_an_event(pool, "conversation_events", "conversation-log rows", &ids).await;
    assert!(logged > 0, "the run wrote a conversation log");
    assert_each_has_an_event(pool, "messages", "stored messages", &message_ids).await;
    ChangeStream {
        records: records.len(),
        distinct: ids.len(),
    }
}

/// Every id of `table` is among `announced`; returns how many rows it has.
async fn assert_each_has_an_event(
    pool: &sqlx::PgPool,
    table: &str,
    what: &str,
    announced: &HashSet<String>,
) -> usize {
    let ids: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {table}")))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("cannot read {table}: {e}"));
    let missing: Vec<&String> = ids.iter().filter(|id| !announced.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} {what} have no event on inbox.events, e.g. {:?}",
        missing.len(),
        ids.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
    ids.len()
}

async fn wait_for_empty_outbox(deployment: &Deployment, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_outbox")
            .fetch_one(deployment.pool())
            .await
            .unwrap_or_else(|e| panic!("cannot read the event outbox: {e}"));
        if waiting == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{waiting} events still in the outbox after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
