//! The change stream (docs/envelope.md, "DomainEvent: the change stream"), on both backends:
//! every conversation-log row gets its event in the event outbox in the transaction of the change,
//! nothing for a change rolled back, `seq` increasing and never reused; the event relay hands the
//! outbox to the bus in order and keeps what the bus refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use inbox_core::actions;
use inbox_core::bus::local::LocalBus;
use inbox_core::bus::{Bus, BusError};
use inbox_core::envelope::{DomainEvent, DomainEventKind, InboundEvent, OutboundMessage};
use inbox_core::event_relay::EventRelay;
use inbox_core::ids::ConversationId;
use inbox_core::model::ConversationStatus;
use inbox_core::store::test_support::RawPool;
use inbox_core::store::{ConversationPatch, Store};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use common::*;

/// Every event waiting in the outbox.
async fn pending(store: &Store) -> Vec<DomainEvent> {
    let pending = store.pending_stream_events(10_000).await.unwrap();
    assert_eq!(pending.undecodable, [], "every row decodes");
    pending.events
}

/// An outbox row written by hand, as a bug or a bad restore would leave one.
async fn insert_raw_row(store: &Store, conversation: ConversationId, payload: &str) {
    let sql = "INSERT INTO event_outbox (conversation_id, payload) VALUES ($1, $2)";
    let conversation = conversation.to_string();
    match store.raw_pool() {
        RawPool::Sqlite(pool) => sqlx::query(sql)
            .bind(conversation)
            .bind(payload)
            .execute(pool)
            .await
            .map(drop),
        RawPool::Postgres(pool) => sqlx::query(sql)
            .bind(conversation)
            .bind(payload)
            .execute(pool)
            .await
            .map(drop),
    }
    .unwrap();
}

/// The log rows of these conversations, by id.
async fn log_ids(store: &Store, conversations: &[ConversationId]) -> HashSet<String> {
    let mut ids = HashSet::new();
    for id in conversations {
        for row in store.conversation_events(*id).await.unwrap() {
            ids.insert(row.id);
        }
    }
    ids
}

contract!(every_log_row_has_its_event, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "ada@shop.test").await;
    let first = inbound(&channel, "e-1", "c1", "Where is my order?");
    let again = inbound(&channel, "e-2", "c1", "Hello?");
    let other = inbound(&channel, "e-3", "c2", "Refund please");
    let report = ingest_batch(&store, &[record(&first), record(&again), record(&other)]).await;
    let (_, conversation, _) = stored(&report.outcomes[0]);
    let (_, second, _) = stored(&report.outcomes[2]);
    let customer = conversation_of(&store, conversation).await;

    let reply = actions::post_message(&store, conversation, &agent, "On its way", false, &[])
        .await
        .unwrap();
    actions::post_message(
        &store,
        conversation,
        &agent,
        "checked the carrier",
        true,
        &[],
    )
    .await
    .unwrap();
    actions::update_conversation(
        &store,
        conversation,
        &agent,
        &ConversationPatch {
            assignee: Some(Some(agent.id)),
            labels: Some(vec!["vip".into()]),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    set_status(&store, conversation, &agent, ConversationStatus::Resolved).await;
    assert!(store.mark_read(second, agent.id).await.unwrap());

    let events = pending(&store).await;
    // One event per log row, with the row's id; plus the `read`, which has no row.
    let ids: HashSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    let rows = log_ids(&store, &[conversation, second]).await;
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    assert!(rows.is_subset(&ids), "rows {rows:?} not all in {ids:?}");
    assert_eq!(events.len(), rows.len() + 1, "{events:#?}");

    let seqs: Vec<i64> = events.iter().map(|e| e.seq.expect("seq set")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");
    let changes: Vec<(&str, DomainEventKind)> = events
        .iter()
        .filter(|e| e.conversation_id == conversation)
        .map(|e| (e.change.as_deref().unwrap(), e.kind))
        .collect();
    assert_eq!(
        changes,
        [
            ("opened", DomainEventKind::ConversationOpened),
            ("message_received", DomainEventKind::MessageReceived),
            ("message_received", DomainEventKind::MessageReceived),
            ("replied", DomainEventKind::MessageSent),
            ("noted", DomainEventKind::NoteAdded),
            ("assigned", DomainEventKind::ConversationUpdated),
            ("labeled", DomainEventKind::ConversationUpdated),
            ("resolved", DomainEventKind::ConversationUpdated),
        ]
    );
    // Each names its conversation's customer and who made the change.
    for event in events.iter().filter(|e| e.conversation_id == conversation) {
        assert_eq!(event.contact_id, Some(customer), "{event:?}");
    }
    let sent = events
        .iter()
        .find(|e| e.message_id == Some(reply.message.id))
        .expect("the reply's event");
    assert_eq!(sent.actor_kind.as_deref(), Some("agent"));
    assert_eq!(sent.actor_id, Some(agent.id.to_string()));
    let labeled = events
        .iter()
        .find(|e| e.change.as_deref() == Some("labeled"))
        .unwrap();
    assert_eq!(labeled.data, Some(serde_json::json!({"labels": ["vip"]})));
    let read = events.last().unwrap();
    assert_eq!(
        (read.change.as_deref(), read.conversation_id, read.kind),
        (Some("read"), second, DomainEventKind::ConversationUpdated)
    );
    // What went on the wire reads back the same.
    assert_eq!(&DomainEvent::from_json(&read.to_json()).unwrap(), read);

    // Relayed events are forgotten; later ones get higher seqs, also after the table was empty.
    store.delete_stream_events(&seqs).await.unwrap();
    assert!(pending(&store).await.is_empty());
    let third = inbound(&channel, "e-4", "c2", "Any news?");
    ingest_batch(&store, &[record(&third)]).await;
    let later = pending(&store).await;
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(later[0].seq.unwrap() > *seqs.last().unwrap(), "seq reused");
    assert_eq!(store.stream_backlog().await.unwrap(), 1);
});

contract!(a_change_rolled_back_writes_no_event, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "ada@shop.test").await;
    let m = inbound(&channel, "e-1", "c1", "Hi");
    let (_, conversation, _) = stored(&ingest_one(&store, &m).await);
    let seqs: Vec<i64> = pending(&store).await.iter().filter_map(|e| e.seq).collect();
    store.delete_stream_events(&seqs).await.unwrap();

    // Refused: an assignee that is no agent; nothing changed, nothing told.
    let refused = actions::update_conversation(
        &store,
        conversation,
        &agent,
        &ConversationPatch {
            labels: Some(vec!["vip".into()]),
            assignee: Some(Some(inbox_core::ids::AgentId::new())),
            ..ConversationPatch::default()
        },
    )
    .await;
    assert!(refused.is_err());
    // A patch that changes nothing writes nothing.
    let unchanged = actions::update_conversation(
        &store,
        conversation,
        &agent,
        &ConversationPatch {
            status: Some(ConversationStatus::Open),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    assert!(unchanged.is_empty());
    // Opening an already-read conversation tells nobody.
    assert!(store.mark_read(conversation, agent.id).await.unwrap());
    assert!(!store.mark_read(conversation, agent.id).await.unwrap());
    // A duplicate delivery of the same message is not news.
    ingest_one(&store, &m).await;

    let events = pending(&store).await;
    let changes: Vec<_> = events.iter().map(|e| e.change.clone()).collect();
    assert_eq!(changes, [Some("read".to_owned())]);
});

contract!(merges_tell_each_moved_conversation, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "ada@shop.test").await;
    let (_, kept, _) = stored(&ingest_one(&store, &inbound(&channel, "e-1", "a", "Hi")).await);
    let (_, moved, _) = stored(&ingest_one(&store, &inbound(&channel, "e-2", "b", "Hi")).await);
    let keep = conversation_of(&store, kept).await;
    let absorb = conversation_of(&store, moved).await;
    let seqs: Vec<i64> = pending(&store).await.iter().filter_map(|e| e.seq).collect();
    store.delete_stream_events(&seqs).await.unwrap();

    let merge = actions::merge_contacts(&store, keep, absorb, &agent)
        .await
        .unwrap();
    actions::unmerge_contacts(&store, merge, &agent)
        .await
        .unwrap();
    let events = pending(&store).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.change.clone().unwrap(), e.conversation_id, e.contact_id))
        .collect();
    assert_eq!(
        seen,
        [
            ("merged".to_owned(), moved, Some(keep)),
            ("unmerged".to_owned(), moved, Some(absorb)),
        ]
    );
    assert_eq!(
        log_ids(&store, &[moved]).await.len(),
        4,
        "opened, received, merged, unmerged"
    );
});

contract!(
    the_relay_publishes_in_order_and_keeps_what_the_bus_refused,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let (local, _partitions, _outbound) = LocalBus::new(1);
        let bus = Arc::new(Flaky {
            inner: local,
            refusals: AtomicUsize::new(2),
        });
        let mut live = bus.subscribe_domain();
        let stop = CancellationToken::new();
        let relay = tokio::spawn(
            EventRelay {
                store: store.clone(),
                bus: bus.clone(),
            }
            .run(stop.clone()),
        );

        let batch: Vec<_> = (0..5)
            .map(|i| record(&inbound(&channel, &format!("e-{i}"), "c1", "Hi")))
            .collect();
        ingest_batch(&store, &batch).await;
        // Refused twice (the broker away), then taken: each event once, in seq order, none lost.
        let mut got = Vec::new();
        while got.len() < 6 {
            let event = tokio::time::timeout(Duration::from_secs(20), live.recv())
                .await
                .expect("the relay publishes once the bus takes events again")
                .unwrap();
            got.push(event);
        }
        let seqs: Vec<i64> = got.iter().map(|e| e.seq.unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(got[0].change.as_deref(), Some("opened"));
        assert_eq!(bus.refusals.load(Ordering::SeqCst), 0, "both refusals used");
        wait_until_drained(&store).await;

        // Later changes follow, after the earlier ones.
        ingest_one(&store, &inbound(&channel, "e-9", "c1", "More")).await;
        let next = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.change.as_deref(), Some("message_received"));
        assert!(next.seq > got.last().unwrap().seq);
        stop.cancel();
        relay.await.unwrap();
    }
);

contract!(
    an_undecodable_row_is_dead_lettered_and_the_stream_goes_on,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let (local, _partitions, _outbound) = LocalBus::new(1);
        let bus = Arc::new(local);
        let mut live = bus.subscribe_domain();
        let (_, conversation, _) =
            stored(&ingest_one(&store, &inbound(&channel, "e-1", "c1", "Hi")).await);
        insert_raw_row(&store, conversation, "{not an event").await;
        ingest_one(&store, &inbound(&channel, "e-2", "c1", "Still there?")).await;
        let stop = CancellationToken::new();
        let relay = tokio::spawn(
            EventRelay {
                store: store.clone(),
                bus: bus.clone(),
            }
            .run(stop.clone()),
        );
        // The events before and after the bad row go out, in order.
        let mut changes = Vec::new();
        while changes.len() < 3 {
            let event = tokio::time::timeout(Duration::from_secs(20), live.recv())
                .await
                .expect("the relay goes on past the bad row")
                .unwrap();
            changes.push(event.change.unwrap());
        }
        assert_eq!(changes, ["opened", "message_received", "message_received"]);
        wait_until_drained(&store).await;
        // The bad row is kept as a dead letter, with its error.
        let dead = store.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].source, "event_outbox");
        assert_eq!(dead[0].payload, "{not an event");
        assert!(
            dead[0].error.starts_with("event outbox row "),
            "{}",
            dead[0].error
        );
        stop.cancel();
        relay.await.unwrap();
    }
);

async fn wait_until_drained(store: &Store) {
    for _ in 0..100 {
        if store.stream_backlog().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay left events in the outbox");
}

async fn conversation_of(store: &Store, id: ConversationId) -> inbox_core::ids::ContactId {
    conversation(store, id).await.contact_id
}

/// The in-process bus, refusing domain events a given number of times first.
#[derive(Debug)]
struct Flaky {
    inner: LocalBus,
    refusals: AtomicUsize,
}

#[async_trait]
impl Bus for Flaky {
    async fn publish_inbound(&self, event: &InboundEvent) -> Result<(), BusError> {
        self.inner.publish_inbound(event).await
    }

    async fn publish_outbound(&self, message: &OutboundMessage) -> Result<(), BusError> {
        self.inner.publish_outbound(message).await
    }

    async fn publish_domain(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        let refuse = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Err(BusError::NotAccepted("broker away".into()));
        }
        self.inner.publish_domain(events).await
    }

    fn subscribe_domain(&self) -> broadcast::Receiver<DomainEvent> {
        self.inner.subscribe_domain()
    }
}
