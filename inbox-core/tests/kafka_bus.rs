//! The Kafka bus against librdkafka's in-process mock cluster: no broker needed, each test on a
//! cluster and topics of its own.
//!
//! The mock broker does not implement the CreateTopics admin API (`ensure_topics` would wait for
//! an answer that never comes), so the topics are created through the mock directly.
//!
//! The mock's group coordinator is slow on purpose: a group's first join waits out its initial
//! rebalance delay (3 s), and a member joining right after another left waits about the session
//! timeout (9 s). So only two tests make a second member join; the others check the position a
//! group committed with an offset fetch, which joins nothing. Every wait is a poll with a generous
//! deadline, never a fixed sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use inbox_core::bus::kafka::{KafkaAck, KafkaBus, KafkaConfig, KafkaInbound, Topics};
use inbox_core::bus::{Bus, InboundConsumer, OutboundConsumer, Received};
use inbox_core::envelope::{
    Body, ChannelKind, DeliveryReport, DeliveryStatus, DomainEvent, DomainEventKind, InboundEvent,
    InboundMessage, OutboundMessage, Party, SCHEMA_VERSION, ThreadHints,
};
use inbox_core::ids::{ChannelId, ConversationId, MessageId};
use inbox_core::ingest::{InboundRecord, IngestSettings};
use inbox_core::worker::{IngestWorker, WorkerSettings};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

/// The longest any single expected thing may take (a group join on the mock takes ~3 s).
const DEADLINE: Duration = Duration::from_secs(30);
/// How long `next_batch` lingers for more records.
const LINGER: Duration = Duration::from_millis(100);

/// A mock cluster and a configuration whose topics and groups are unique to one test.
struct Mock {
    cluster: MockCluster<'static, DefaultProducerContext>,
    config: KafkaConfig,
}

impl Mock {
    /// One broker; the inbound topic gets `inbound_partitions`, the others one partition each.
    fn new(inbound_partitions: i32) -> Mock {
        let cluster = MockCluster::new(1).expect("start a mock Kafka cluster");
        let run = uuid::Uuid::now_v7().simple().to_string();
        let topics = Topics {
            inbound: format!("inbox.inbound.{run}"),
            outbound: format!("inbox.outbound.{run}"),
            events: format!("inbox.events.{run}"),
            dead_letter: format!("inbox.dead-letter.{run}"),
        };
        cluster
            .create_topic(&topics.inbound, inbound_partitions, 1)
            .expect("create the inbound topic");
        for topic in [&topics.outbound, &topics.events, &topics.dead_letter] {
            cluster.create_topic(topic, 1, 1).expect("create a topic");
        }
        let config = KafkaConfig {
            brokers: cluster.bootstrap_servers(),
            topics,
            partitions: inbound_partitions,
            replication_factor: 1,
            min_insync_replicas: 1,
            core_group: format!("inbox-core-{run}"),
            connectors_group: format!("inbox-connectors-{run}"),
        };
        Mock { cluster, config }
    }

    fn bus(&self) -> KafkaBus {
        KafkaBus::new(&self.config).expect("create the Kafka bus")
    }

    fn inbound_consumer(&self) -> KafkaInbound {
        self.config
            .inbound_consumer()
            .expect("create the inbound consumer")
    }

    /// A plain producer, for records the bus itself would never write.
    fn raw_producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .create()
            .expect("create a raw producer")
    }

    async fn produce_raw(&self, topic: &str, key: &str, payload: &[u8]) {
        self.raw_producer()
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Timeout::After(DEADLINE),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce a raw record");
    }

    /// The position `group` committed on partition 0 of `topic` (`Offset::Invalid`: none), asked
    /// without joining the group.
    async fn committed(&self, group: &str, topic: &str) -> Offset {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("create a raw consumer");
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(topic, 0);
        let committed = tokio::task::spawn_blocking(move || {
            consumer
                .committed_offsets(partitions, DEADLINE)
                .expect("fetch the committed offsets")
        })
        .await
        .unwrap();
        committed
            .find_partition(topic, 0)
            .expect("the partition is in the answer")
            .offset()
    }

    /// Every record of `topic` (`count` of them, over all its `partitions`), read from the
    /// beginning without a consumer group: (partition, offset, key, payload), per partition in
    /// offset order.
    async fn read_topic(
        &self,
        topic: &str,
        partitions: i32,
        count: usize,
    ) -> Vec<(i32, i64, String, Vec<u8>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            // `assign` needs a group id; nothing is ever committed in it.
            .set(
                "group.id",
                format!("reader-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .expect("create a raw consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).expect("assign the partitions");
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + DEADLINE;
            let mut records = Vec::new();
            while records.len() < count {
                assert!(
                    std::time::Instant::now() < deadline,
                    "read {} of {count} records of {topic} before the deadline",
                    records.len()
                );
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => records.push((
                        m.partition(),
                        m.offset(),
                        String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        m.payload().unwrap_or_default().to_vec(),
                    )),
                    Some(Err(e)) => panic!("reading {topic}: {e}"),
                    None => {}
                }
            }
            records
        })
        .await
        .unwrap()
    }
}

/// `future`, which must finish before the deadline.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

/// Takes exactly `n` records off `consumer` (in as many batches as it hands out).
async fn take(consumer: &mut KafkaInbound, n: usize) -> Vec<Received<KafkaAck>> {
    let mut taken = Vec::new();
    while taken.len() < n {
        let batch = within(
            &format!("record {} of {n}", taken.len() + 1),
            consumer.next_batch(n - taken.len(), LINGER),
        )
        .await
        .expect("the consumer is open");
        assert!(!batch.is_empty(), "a batch has at least one record");
        assert!(batch.len() <= n - taken.len(), "a batch respects `max`");
        taken.extend(batch);
    }
    taken
}

fn events_of(deliveries: &[Received<KafkaAck>]) -> Vec<InboundEvent> {
    deliveries
        .iter()
        .map(|d| match &d.record {
            InboundRecord::Event(event) => event.clone(),
            other => panic!("expected a decoded event, got {other:?}"),
        })
        .collect()
}

fn acks_of(deliveries: &[Received<KafkaAck>]) -> Vec<KafkaAck> {
    deliveries.iter().map(|d| d.ack).collect()
}

fn message_from(channel_id: ChannelId, handle: &str, external_id: &str) -> InboundMessage {
    let text = format!("{external_id} from {handle}");
    let mut m = InboundMessage::text(channel_id, ChannelKind::WEBHOOK, external_id, handle, text);
    m.from.name = Some(format!("Customer {handle}"));
    m.sent_at = Some(m.received_at);
    m
}

fn event(channel_id: ChannelId, handle: &str, external_id: &str) -> InboundEvent {
    InboundEvent::Message(message_from(channel_id, handle, external_id))
}

/// `n` messages of one sender on one (single-partition) topic.
async fn publish_messages(bus: &KafkaBus, n: usize, tag: &str) -> Vec<InboundEvent> {
    let channel = ChannelId::new();
    let mut events = Vec::new();
    for i in 0..n {
        let event = event(channel, "u-1", &format!("{tag}-{i}"));
        within("publish_inbound", bus.publish_inbound(&event))
            .await
            .expect("the broker accepts the event");
        events.push(event);
    }
    events
}

fn outbound(conversation_id: ConversationId, text: &str) -> OutboundMessage {
    OutboundMessage {
        schema_version: SCHEMA_VERSION,
        id: MessageId::new(),
        conversation_id,
        channel_id: ChannelId::new(),
        channel_kind: ChannelKind::WEBHOOK,
        to: Party {
            handle: "u-1".into(),
            ..Party::default()
        },
        thread: ThreadHints::default(),
        body: Body {
            text: text.to_owned(),
            html: None,
        },
        attachments: Vec::new(),
        author: Some("Agent".into()),
        created_at: Utc::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Publishing and keying.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_come_back_decoded_and_keyed_by_sender() {
    const PARTITIONS: i32 = 4;
    let mock = Mock::new(PARTITIONS);
    let bus = mock.bus();
    let channel = ChannelId::new();
    // Two customers interleaved, and a delivery report (keyed by its conversation).
    let mut published = Vec::new();
    for i in 0..3 {
        published.push(event(channel, "alice", &format!("a-{i}")));
        published.push(event(channel, "bob", &format!("b-{i}")));
    }
    published.push(InboundEvent::Delivery(DeliveryReport {
        message_id: MessageId::new(),
        conversation_id: ConversationId::new(),
        channel_id: channel,
        status: DeliveryStatus::Sent,
        external_id: Some("provider-1".into()),
        error: None,
        attempts: 1,
        at: Utc::now(),
    }));
    for event in &published {
        within("publish_inbound", bus.publish_inbound(event))
            .await
            .expect("the broker accepts the event");
    }

    // On the wire: key = partition key; one sender's events on one partition, in publish order.
    let wire = mock
        .read_topic(&mock.config.topics.inbound, PARTITIONS, published.len())
        .await;
    let mut by_key: HashMap<String, Vec<(i32, InboundEvent)>> = HashMap::new();
    for (partition, _, key, payload) in &wire {
        let event = InboundEvent::from_json(payload).expect("the bus writes valid envelopes");
        assert_eq!(key, &event.partition_key(), "records are keyed");
        by_key
            .entry(key.clone())
            .or_default()
            .push((*partition, event));
    }
    for sender in ["alice", "bob"] {
        let key = format!("{channel}:{sender}");
        let records = &by_key[&key];
        assert!(
            records.iter().all(|(p, _)| *p == records[0].0),
            "all of {sender}'s events are on one partition: {records:?}"
        );
        let on_wire: Vec<&InboundEvent> = records.iter().map(|(_, e)| e).collect();
        let expected: Vec<&InboundEvent> = published
            .iter()
            .filter(|e| e.partition_key() == key)
            .collect();
        assert_eq!(on_wire, expected, "{sender}'s events are in publish order");
    }

    // Through the core's consumer: the same events, decoded, one sender's in publish order.
    let mut consumer = mock.inbound_consumer();
    let received = events_of(&take(&mut consumer, published.len()).await);
    for key in by_key.keys() {
        let got: Vec<&InboundEvent> = received
            .iter()
            .filter(|e| &e.partition_key() == key)
            .collect();
        let expected: Vec<&InboundEvent> = published
            .iter()
            .filter(|e| &e.partition_key() == key)
            .collect();
        assert_eq!(got, expected, "events of {key} arrive once each, in order");
    }
    consumer.close().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Offsets are stored only for settled records.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_records_are_committed_and_the_next_member_resumes_after_them() {
    let mock = Mock::new(1);
    let bus = mock.bus();
    let group = mock.config.core_group.clone();
    let topic = mock.config.topics.inbound.clone();
    let published = publish_messages(&bus, 4, "m").await;

    let mut first = mock.inbound_consumer();
    let taken = take(&mut first, 4).await;
    assert_eq!(events_of(&taken), published);
    // Only #1 and #2 are safe; #3 and #4 were read but their batch never committed.
    first.settle(acks_of(&taken[..2]), Ok(())).await;
    first.close().await;
    drop(first);
    assert_eq!(
        mock.committed(&group, &topic).await,
        Offset::Offset(2),
        "the group's position is right after the settled records"
    );

    let mut second = mock.inbound_consumer();
    let again = take(&mut second, 2).await;
    assert_eq!(
        events_of(&again),
        published[2..],
        "the next member skips the settled records and gets the unsettled ones again"
    );
    // #3 is settled, #4 is not, and the member goes away without `close` (a crash-like exit).
    second.settle(acks_of(&again[..1]), Ok(())).await;
    drop(second);
    assert_eq!(
        mock.committed(&group, &topic).await,
        Offset::Offset(3),
        "the position moves past #3, never past the unsettled #4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_committed_for_records_that_were_not_settled() {
    let mock = Mock::new(1);
    let bus = mock.bus();
    let topic = mock.config.topics.inbound.clone();
    let published = publish_messages(&bus, 3, "m").await;

    // One member closes properly, another (in a group of its own) is dropped: both read
    // everything and settled nothing.
    let mut closing = mock.inbound_consumer();
    let mut dropped_config = mock.config.clone();
    dropped_config.core_group = format!("{}-dropped", mock.config.core_group);
    let mut dropped = dropped_config
        .inbound_consumer()
        .expect("create the inbound consumer");
    let (read_closing, read_dropped) = tokio::join!(take(&mut closing, 3), take(&mut dropped, 3));
    assert_eq!(events_of(&read_closing), published);
    assert_eq!(events_of(&read_dropped), published);
    closing.close().await;
    drop(closing);
    drop(dropped);

    for group in [&mock.config.core_group, &dropped_config.core_group] {
        assert_eq!(
            mock.committed(group, &topic).await,
            Offset::Invalid,
            "group {group} committed nothing: its next member starts from the beginning"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_read_again() {
    let mock = Mock::new(1);
    let bus = mock.bus();
    let published = publish_messages(&bus, 3, "m").await;

    let mut consumer = mock.inbound_consumer();
    let taken = take(&mut consumer, 3).await;
    assert_eq!(events_of(&taken), published);
    consumer
        .settle(acks_of(&taken), Err("database is down".into()))
        .await;

    let again = take(&mut consumer, 3).await;
    assert_eq!(
        events_of(&again),
        published,
        "the same records come back after settle(Err)"
    );
    assert_eq!(acks_of(&again), acks_of(&taken), "at the same positions");

    // A failure of the tail of what was read rewinds to the tail only.
    consumer.settle(acks_of(&again[..1]), Ok(())).await;
    consumer
        .settle(acks_of(&again[1..]), Err("still down".into()))
        .await;
    let tail = take(&mut consumer, 2).await;
    assert_eq!(events_of(&tail), published[1..]);

    consumer.settle(acks_of(&tail), Ok(())).await;
    consumer.close().await;
    drop(consumer);
    assert_eq!(
        mock.committed(&mock.config.core_group, &mock.config.topics.inbound)
            .await,
        Offset::Offset(3),
        "everything is committed once it was stored"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Undecodable records.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payloads_come_out_as_undecodable_records() {
    let mock = Mock::new(1);
    let bus = mock.bus();
    let garbage = "this is not an envelope";
    let wrong_version = r#"{"schema_version":99,"type":"message"}"#;
    mock.produce_raw(&mock.config.topics.inbound, "x", garbage.as_bytes())
        .await;
    mock.produce_raw(&mock.config.topics.inbound, "x", wrong_version.as_bytes())
        .await;
    let valid = publish_messages(&bus, 1, "after").await;

    let mut consumer = mock.inbound_consumer();
    let taken = take(&mut consumer, 3).await;
    for (delivery, expected) in taken[..2].iter().zip([garbage, wrong_version]) {
        match &delivery.record {
            InboundRecord::Undecodable { payload, error } => {
                assert_eq!(payload, expected, "the payload is kept verbatim");
                assert!(!error.is_empty(), "with its error");
            }
            other => panic!("expected an undecodable record, got {other:?}"),
        }
    }
    match &taken[1].record {
        InboundRecord::Undecodable { error, .. } => {
            assert!(error.contains("99"), "the error names the version: {error}")
        }
        _ => unreachable!(),
    }
    assert_eq!(
        events_of(&taken[2..]),
        valid,
        "records after it still decode"
    );
    consumer.settle(acks_of(&taken), Ok(())).await;
    consumer.close().await;
}

// ---------------------------------------------------------------------------------------------
// 4. The core's worker on the Kafka bus.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_worker_stores_messages_and_dead_letters_garbage() {
    const N: usize = 5;
    let mock = Mock::new(2);
    let bus = mock.bus();
    let (store, _dir) = common::sqlite_store().await;
    let channel = common::webhook_channel(&store).await;

    let worker = IngestWorker {
        store: store.clone(),
        bus: Arc::new(bus.clone()),
        ingest: IngestSettings::default(),
        settings: WorkerSettings {
            linger: LINGER,
            ..WorkerSettings::default()
        },
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(mock.inbound_consumer(), shutdown.clone()));

    for i in 0..N {
        let m = common::inbound(&channel, &format!("ext-{i}"), &format!("u-{}", i % 2), "hi");
        within(
            "publish_inbound",
            bus.publish_inbound(&InboundEvent::Message(m)),
        )
        .await
        .expect("the broker accepts the event");
    }
    let garbage = "{\"schema_version\":1,\"type\":\"mess";
    mock.produce_raw(&mock.config.topics.inbound, "junk", garbage.as_bytes())
        .await;

    within("the worker stores everything", async {
        loop {
            let messages = store.message_total().await.unwrap();
            let letters = store.dead_letters(10).await.unwrap();
            if messages == N as i64 && !letters.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    assert_eq!(letters[0].payload, garbage);
    assert!(!letters[0].error.is_empty());

    // The dead letter is on the dead-letter topic too, for operators' tooling.
    let published = mock.read_topic(&mock.config.topics.dead_letter, 1, 1).await;
    let body: serde_json::Value =
        serde_json::from_slice(&published[0].3).expect("a dead letter is JSON");
    assert_eq!(body["payload"], garbage);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a dead letter carries its error: {body}"
    );

    shutdown.cancel();
    within("the worker stops", running)
        .await
        .expect("the worker does not panic");
    assert_eq!(store.message_total().await.unwrap(), N as i64);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// 5. The connectors' consumer settles out of order.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_commits_never_pass_an_unsettled_reply() {
    let mock = Mock::new(1);
    let bus = Arc::new(mock.bus());
    let group = mock.config.connectors_group.clone();
    let topic = mock.config.topics.outbound.clone();
    let conversation = ConversationId::new();
    let replies: Vec<OutboundMessage> = (1..=3)
        .map(|i| outbound(conversation, &format!("reply {i}")))
        .collect();
    for reply in &replies {
        within("publish_outbound", bus.publish_outbound(reply))
            .await
            .expect("the broker accepts the reply");
    }

    let mut first = mock
        .config
        .outbound_consumer(bus.clone())
        .expect("create the outbound consumer");
    let mut acks = Vec::new();
    for reply in &replies {
        let (message, ack) = within("next reply", first.next())
            .await
            .expect("the consumer is open");
        assert_eq!(&message, reply, "replies arrive in order");
        acks.push(ack);
    }
    // #3 and #1 are delivered, #2 is still under way when the consumer goes.
    first.settle(acks[2]).await;
    first.settle(acks[0]).await;
    first.close().await;
    drop(first);
    assert_eq!(
        mock.committed(&group, &topic).await,
        Offset::Offset(1),
        "the position moves past #1 but stops at the unsettled #2"
    );

    let mut second = mock
        .config
        .outbound_consumer(bus.clone())
        .expect("create the outbound consumer");
    let (message, ack) = within("next reply", second.next())
        .await
        .expect("the consumer is open");
    assert_eq!(
        message, replies[1],
        "the next member starts at the first unsettled reply (#2), not before, not after"
    );
    // #3 was delivered already, but the position could not pass #2: it comes again.
    let (again, ack_again) = within("next reply", second.next())
        .await
        .expect("the consumer is open");
    assert_eq!(again, replies[2]);
    second.settle(ack_again).await;
    second.settle(ack).await;
    second.close().await;
    drop(second);
    assert_eq!(
        mock.committed(&group, &topic).await,
        Offset::Offset(3),
        "everything settled is committed"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Domain events.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_events_reach_every_subscriber_through_the_topic() {
    let mock = Mock::new(1);
    let bus = mock.bus();
    let mut first = bus.subscribe_domain();
    let mut second = bus.subscribe_domain();
    let shutdown = CancellationToken::new();
    let listening = bus
        .listen_domain(&mock.config, shutdown.clone())
        .expect("listen to domain events");

    // The listener starts at the newest event once its group is joined: publish probes until
    // one comes through.
    within("the listener is assigned", async {
        loop {
            let probe = DomainEvent::new(
                DomainEventKind::ConversationUpdated,
                ConversationId::new(),
                Utc::now(),
            );
            bus.publish_domain(&[probe]).await.unwrap();
            if tokio::time::timeout(Duration::from_millis(200), first.recv())
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await;

    let events: Vec<DomainEvent> = [
        DomainEventKind::ConversationOpened,
        DomainEventKind::MessageReceived,
        DomainEventKind::NoteAdded,
    ]
    .into_iter()
    .map(|kind| {
        let mut event = DomainEvent::new(kind, ConversationId::new(), Utc::now());
        event.message_id = Some(MessageId::new());
        event
    })
    .collect();
    within("publish_domain", bus.publish_domain(&events))
        .await
        .expect("the broker accepts the events");

    for (name, receiver) in [("first", &mut first), ("second", &mut second)] {
        let mut got = Vec::new();
        within(&format!("the {name} subscriber's events"), async {
            while got.len() < events.len() {
                let event = receiver.recv().await.expect("the channel is open");
                // Probes are not part of the check.
                if events.iter().any(|e| e.id == event.id) {
                    got.push(event);
                }
            }
        })
        .await;
        assert_eq!(
            got, events,
            "the {name} subscriber gets every event, in order"
        );
    }

    shutdown.cancel();
    within("the listener stops", listening)
        .await
        .expect("the listener does not panic");
}
