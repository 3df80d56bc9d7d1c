//! The Kafka bus of the production mode (rdkafka, bundled librdkafka).
//!
//! - Producer: idempotent, `acks=all`; a publish resolves only after the broker's acknowledgement,
//!   so a connector advances its cursor only then.
//! - Consumers: offsets are *stored* only after the work they stand for is done (for the core: the
//!   store transaction committed; for the connectors: the delivery report published) and committed
//!   by librdkafka's auto-commit, and synchronously when partitions are revoked or the consumer
//!   closes — the pattern of Vector's kafka source. A crash replays at most the records since the
//!   last commit, which the funnel recognises as duplicates.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::Offset;
use rdkafka::util::Timeout;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, Delivery, InboundConsumer, OutboundConsumer};
use crate::envelope::{DomainEvent, InboundEvent, OutboundMessage};
use crate::ingest::InboundRecord;

/// How long a publish may wait for the broker before it is reported as not accepted.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Topic names (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Inbound envelopes and delivery reports, key `{channel_id}:{sender handle}`.
    pub inbound: String,
    /// Replies to deliver, key = conversation id.
    pub outbound: String,
    /// Domain events after each commit, key = conversation id.
    pub events: String,
    /// Records that could not be stored, with their error.
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            inbound: "inbox.inbound".into(),
            outbound: "inbox.outbound".into(),
            events: "inbox.events".into(),
            dead_letter: "inbox.dead-letter".into(),
        }
    }
}

/// Connection and topic settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of each topic created by `inbox migrate`: the most core instances that can share
    /// the inbound work.
    pub partitions: i32,
    /// Replication factor of created topics (3 in production: one broker can fail).
    #[serde(alias = "replication")]
    pub replication_factor: i32,
    /// `min.insync.replicas` of created topics: with `acks=all`, a publish is acknowledged only
    /// once this many replicas have it (2 with a replication factor of 3).
    pub min_insync_replicas: i32,
    /// Consumer group of `inbox core`.
    pub core_group: String,
    /// Consumer group of `inbox connectors`.
    pub connectors_group: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topics: Topics::default(),
            partitions: 12,
            replication_factor: 1,
            min_insync_replicas: 1,
            core_group: "inbox-core".into(),
            connectors_group: "inbox-connectors".into(),
        }
    }
}

fn not_accepted(e: KafkaError) -> BusError {
    BusError::NotAccepted(e.to_string())
}

impl KafkaConfig {
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", concat!("inbox/", env!("CARGO_PKG_VERSION")))
            // Brokers restart; keep trying instead of failing the process.
            .set("reconnect.backoff.max.ms", "2000")
            .set("socket.keepalive.enable", "true")
            // Small records one at a time: without this, Nagle's algorithm holds a request back
            // until the previous one is acknowledged, adding tens of milliseconds per hop.
            .set("socket.nagle.disable", "true");
        config
    }

    fn topic_names(&self) -> [&str; 4] {
        [
            &self.topics.inbound,
            &self.topics.outbound,
            &self.topics.events,
            &self.topics.dead_letter,
        ]
    }

    /// Creates the four topics when missing (at `inbox migrate` and at service start) with the
    /// configured partitions, replication factor and `min.insync.replicas` — the product never
    /// relies on the broker's auto-creation. Existing topics are left as they are; where they
    /// differ from the configuration, the differences are returned (and logged) so the operator
    /// can decide: adding partitions moves keys between partitions, which reorders customers'
    /// in-flight events.
    pub async fn ensure_topics(&self) -> Result<Vec<TopicMismatch>, BusError> {
        let admin: AdminClient<_> = self.client().create().map_err(not_accepted)?;
        let options = AdminOptions::new()
            .request_timeout(Some(Duration::from_secs(30)))
            .operation_timeout(Some(Duration::from_secs(30)));
        let min_insync = self.min_insync_replicas.to_string();
        let new: Vec<NewTopic<'_>> = self
            .topic_names()
            .into_iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
                .set("min.insync.replicas", &min_insync)
            })
            .collect();
        let results = admin
            .create_topics(&new, &options)
            .await
            .map_err(not_accepted)?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(
                    %topic,
                    partitions = self.partitions,
                    replication_factor = self.replication_factor,
                    min_insync_replicas = self.min_insync_replicas,
                    "Created topic."
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::NotAccepted(format!("creating {topic}: {code}")));
                }
            }
        }
        let actual = self.describe_topics(&admin, &options).await?;
        let mismatches = self.mismatches(&actual);
        for mismatch in &mismatches {
            tracing::warn!(topic = %mismatch.topic, setting = mismatch.setting,
                configured = mismatch.configured, actual = mismatch.actual,
                "Existing topic differs from the configuration.");
        }
        Ok(mismatches)
    }

    /// Partitions, replication factor and `min.insync.replicas` of the four topics as the
    /// cluster has them.
    async fn describe_topics(
        &self,
        admin: &AdminClient<rdkafka::client::DefaultClientContext>,
        options: &AdminOptions,
    ) -> Result<Vec<TopicSettings>, BusError> {
        let consumer: BaseConsumer = self.client().create().map_err(not_accepted)?;
        let names: Vec<String> = self.topic_names().map(str::to_owned).to_vec();
        let layout = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .map(|name| {
                    let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(30))?;
                    let topic = metadata.topics().first().map(|t| {
                        let partitions = t.partitions();
                        let replicas = partitions.iter().map(|p| p.replicas().len()).min();
                        (partitions.len() as i32, replicas.unwrap_or(0) as i32)
                    });
                    Ok::<_, KafkaError>((name.clone(), topic.unwrap_or((0, 0))))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| BusError::NotAccepted(format!("reading topic metadata: {e}")))?
        .map_err(not_accepted)?;
        let specifiers: Vec<ResourceSpecifier<'_>> = self
            .topic_names()
            .into_iter()
            .map(ResourceSpecifier::Topic)
            .collect();
        let configs = admin
            .describe_configs(&specifiers, options)
            .await
            .map_err(not_accepted)?;
        Ok(layout
            .into_iter()
            .zip(configs)
            .map(|((topic, (partitions, replication_factor)), config)| {
                let min_insync_replicas = config
                    .ok()
                    .and_then(|c| c.get("min.insync.replicas")?.value.as_deref()?.parse().ok())
                    .unwrap_or(0);
                TopicSettings {
                    topic,
                    partitions,
                    replication_factor,
                    min_insync_replicas,
                }
            })
            .collect())
    }

    /// What the existing topics have that differs from this configuration.
    pub fn mismatches(&self, actual: &[TopicSettings]) -> Vec<TopicMismatch> {
        actual
            .iter()
            .flat_map(|t| {
                [
                    ("partitions", self.partitions, t.partitions),
                    (
                        "replication_factor",
                        self.replication_factor,
                        t.replication_factor,
                    ),
                    (
                        "min_insync_replicas",
                        self.min_insync_replicas,
                        t.min_insync_replicas,
                    ),
                ]
                .into_iter()
                .filter(|(_, configured, actual)| configured != actual)
                .map(|(setting, configured, actual)| TopicMismatch {
                    topic: t.topic.clone(),
                    setting,
                    configured,
                    actual,
                })
            })
            .collect()
    }

    fn consumer(
        &self,
        group: &str,
        topic: &str,
        name: String,
    ) -> Result<Arc<StreamConsumer<Rebalancing>>, BusError> {
        let consumer: StreamConsumer<Rebalancing> = self
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, only once their records are safe.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(Rebalancing {
                name,
                revokes: AtomicU64::new(0),
            })
            .map_err(not_accepted)?;
        consumer.subscribe(&[topic]).map_err(not_accepted)?;
        Ok(Arc::new(consumer))
    }

    /// The core's consumer of `inbox.inbound`.
    pub fn inbound_consumer(&self) -> Result<KafkaInbound, BusError> {
        self.inbound_consumer_for(0)
    }

    /// The consumer of the core's ingest worker `worker`: a core runs one per ingest partition,
    /// each a member of the group, so the broker spreads the partitions over them and their
    /// batches are stored side by side.
    pub fn inbound_consumer_for(&self, worker: usize) -> Result<KafkaInbound, BusError> {
        Ok(KafkaInbound {
            consumer: self.consumer(
                &self.core_group,
                &self.topics.inbound,
                format!("inbound-{worker}"),
            )?,
            topic: self.topics.inbound.clone(),
        })
    }

    /// The connectors' consumer of `inbox.outbound`.
    pub fn outbound_consumer(&self, bus: Arc<KafkaBus>) -> Result<KafkaOutbound, BusError> {
        Ok(KafkaOutbound {
            consumer: self.consumer(
                &self.connectors_group,
                &self.topics.outbound,
                "outbound".to_owned(),
            )?,
            topic: self.topics.outbound.clone(),
            tracker: HashMap::new(),
            bus,
        })
    }
}

/// One topic's settings as the cluster has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
}

/// An existing topic whose setting differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMismatch {
    pub topic: String,
    /// `partitions`, `replication_factor` or `min_insync_replicas` (the `kafka.*` setting).
    pub setting: &'static str,
    pub configured: i32,
    pub actual: i32,
}

impl std::fmt::Display for TopicMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} has {} = {}, but kafka.{} is {}",
            self.topic, self.setting, self.actual, self.setting, self.configured
        )
    }
}

/// Commits what was stored before partitions move to another group member.
#[derive(Debug)]
pub struct Rebalancing {
    /// Which of the process's consumers this is (in its log lines).
    name: String,
    /// Revocations so far: records read before the latest one belong to whoever owns their
    /// partition now (see [`KafkaInbound::next_batch`]).
    revokes: AtomicU64,
}

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.revokes.fetch_add(1, AtomicOrdering::AcqRel);
            tracing::info!(
                consumer = %self.name,
                partitions = partitions.count(),
                "Partitions revoked; committing."
            );
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is the common case.
                tracing::debug!(%error, "Commit at revoke.");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(
                consumer = %self.name,
                partitions = partitions.count(),
                "Partitions assigned."
            );
        }
    }
}

/// The producing side, shared by every service.
#[derive(Clone)]
pub struct KafkaBus {
    producer: FutureProducer,
    topics: Topics,
    domain: broadcast::Sender<DomainEvent>,
    intake: Arc<IntakeBreaker>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    pub fn new(config: &KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(not_accepted)?;
        let (domain, _) = broadcast::channel(4096);
        Ok(KafkaBus {
            producer,
            topics: config.topics.clone(),
            domain,
            intake: Arc::new(IntakeBreaker::default()),
        })
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), BusError> {
        self.send_raw(topic, key, payload)
            .await
            .map_err(not_accepted)
    }

    async fn send_raw(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Timeout::After(PUBLISH_TIMEOUT),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Publishes a record that could not be stored, with its error, on the dead-letter topic.
    pub async fn publish_dead_letter(&self, payload: &str, error: &str) -> Result<(), BusError> {
        let body = serde_json::json!({"error": error, "payload": payload}).to_string();
        self.send(&self.topics.dead_letter, "", body.as_bytes())
            .await
    }

    /// Feeds [`Bus::subscribe_domain`] from `inbox.events`: every instance sees every event, so
    /// each listens in a group of its own, from the newest event on.
    pub fn listen_domain(
        &self,
        config: &KafkaConfig,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        let group = format!("inbox-web-{}", uuid::Uuid::now_v7().simple());
        let consumer: StreamConsumer = config
            .client()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .create()
            .map_err(not_accepted)?;
        consumer
            .subscribe(&[&self.topics.events])
            .map_err(not_accepted)?;
        let domain = self.domain.clone();
        Ok(tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    message = consumer.recv() => message,
                };
                match message {
                    Ok(message) => {
                        match DomainEvent::from_json(message.payload().unwrap_or_default()) {
                            Ok(event) => {
                                let _ = domain.send(event);
                            }
                            Err(error) => tracing::warn!(%error, "Undecodable domain event."),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Domain event consumer error.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }))
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish_inbound(&self, event: &InboundEvent) -> Result<(), BusError> {
        let Some(admitted) = self.intake.admit() else {
            return Err(BusError::NotAccepted(
                "the Kafka brokers are unavailable (a publish timed out); retry later".into(),
            ));
        };
        let sent = self
            .send_raw(
                &self.topics.inbound,
                &event.partition_key(),
                &event.to_json(),
            )
            .await;
        let timed_out = matches!(
            &sent,
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut)
        );
        admitted.done(sent.is_ok(), timed_out);
        sent.map_err(not_accepted)
    }

    async fn publish_outbound(&self, message: &OutboundMessage) -> Result<(), BusError> {
        let key = message.conversation_id.to_string();
        self.send(&self.topics.outbound, &key, &message.to_json())
            .await
    }

    async fn publish_domain(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        let sends = events.iter().map(|event| {
            let key = event.conversation_id.to_string();
            let payload = event.to_json();
            async move { self.send(&self.topics.events, &key, &payload).await }
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    fn subscribe_domain(&self) -> broadcast::Receiver<DomainEvent> {
        self.domain.subscribe()
    }

    async fn publish_dead_letter(&self, payload: &str, error: &str) -> Result<(), BusError> {
        KafkaBus::publish_dead_letter(self, payload, error).await
    }

    async fn ready(&self) -> bool {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// Fails intake publishes at once while the brokers are known to be away, instead of making each
/// sender wait out the 30 s delivery timeout: opened by a publish that timed out, it lets one
/// publish at a time through to probe the brokers, and the first that succeeds closes it.
#[derive(Debug, Default)]
struct IntakeBreaker {
    open: AtomicBool,
    probing: AtomicBool,
}

/// A publish the breaker let through.
struct Admitted<'a> {
    breaker: &'a IntakeBreaker,
    probe: bool,
}

impl IntakeBreaker {
    /// `None` while open and another publish is probing.
    fn admit(&self) -> Option<Admitted<'_>> {
        let probe = self.open.load(AtomicOrdering::Acquire);
        if probe && self.probing.swap(true, AtomicOrdering::AcqRel) {
            return None;
        }
        Some(Admitted {
            breaker: self,
            probe,
        })
    }
}

impl Admitted<'_> {
    fn done(self, delivered: bool, timed_out: bool) {
        if delivered {
            self.breaker.open.store(false, AtomicOrdering::Release);
        } else if timed_out {
            self.breaker.open.store(true, AtomicOrdering::Release);
        }
    }
}

impl Drop for Admitted<'_> {
    // Also when the publish was abandoned (a sender hung up): the next one probes.
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, AtomicOrdering::Release);
        }
    }
}

/// Position of a record in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaAck {
    partition: i32,
    offset: i64,
}

/// The core's end of `inbox.inbound`.
pub struct KafkaInbound {
    consumer: Arc<StreamConsumer<Rebalancing>>,
    topic: String,
}

impl std::fmt::Debug for KafkaInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInbound")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaInbound {
    /// Reads one record, waiting at most `wait` (forever when `None`).
    async fn read(&self, wait: Option<Duration>) -> Option<Delivery<KafkaAck>> {
        loop {
            let received = match wait {
                None => self.consumer.recv().await,
                Some(wait) => match tokio::time::timeout(wait, self.consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => return None,
                },
            };
            match received {
                Ok(message) => {
                    let payload = message.payload().unwrap_or_default();
                    let record = match InboundEvent::from_json(payload) {
                        Ok(event) => InboundRecord::Event(event),
                        Err(error) => InboundRecord::Undecodable {
                            payload: String::from_utf8_lossy(payload).into_owned(),
                            error: error.to_string(),
                        },
                    };
                    return Some(Delivery {
                        record,
                        ack: KafkaAck {
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "Inbound consumer error; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if wait.is_some() {
                        return None;
                    }
                }
            }
        }
    }

    /// Consumer lag per assigned partition (high watermark − position), for `/metrics`.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        lag(&self.consumer, &self.topic)
    }

    /// A handle to read the lag from another task.
    pub fn lag_probe(&self) -> LagProbe {
        LagProbe {
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }
}

fn lag(consumer: &StreamConsumer<Rebalancing>, topic: &str) -> Vec<(i32, i64)> {
    let Ok(position) = consumer.position() else {
        return Vec::new();
    };
    position
        .elements_for_topic(topic)
        .iter()
        .filter_map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.partition(), Duration::from_secs(2))
                .ok()?;
            let at = match p.offset() {
                Offset::Offset(at) => at,
                _ => 0,
            };
            Some((p.partition(), (high - at).max(0)))
        })
        .collect()
}

/// Reads a consumer's lag (blocking calls: run it on a blocking thread).
#[derive(Clone)]
pub struct LagProbe {
    consumer: Arc<StreamConsumer<Rebalancing>>,
    topic: String,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagProbe")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl LagProbe {
    pub fn lag(&self) -> Vec<(i32, i64)> {
        lag(&self.consumer, &self.topic)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[async_trait]
impl InboundConsumer for KafkaInbound {
    type Ack = KafkaAck;

    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Option<Vec<Delivery<KafkaAck>>> {
        let revokes = || {
            self.consumer
                .context()
                .revokes
                .load(AtomicOrdering::Acquire)
        };
        loop {
            let first = self.read(None).await?;
            let mut batch = vec![(first, revokes())];
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < max {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.read(Some(left.max(Duration::from_micros(1)))).await {
                    Some(delivery) => batch.push((delivery, revokes())),
                    None => break,
                }
            }
            // A rebalance while the batch filled (another worker joining at start, say): what was
            // read before it is not ours to store any more. Its offsets were not stored, so the
            // partition's owner now reads it again from the committed offset; storing it here as
            // well would only make duplicates.
            let now = revokes();
            let read = batch.len();
            batch.retain(|(_, at)| *at == now);
            if batch.len() < read {
                tracing::debug!(
                    dropped = read - batch.len(),
                    "Records read before a rebalance left to their partition's owner."
                );
            }
            if !batch.is_empty() {
                return Some(batch.into_iter().map(|(delivery, _)| delivery).collect());
            }
        }
    }

    async fn settle(&mut self, acks: Vec<KafkaAck>, result: Result<(), String>) {
        let mut first: HashMap<i32, i64> = HashMap::new();
        let mut last: HashMap<i32, i64> = HashMap::new();
        for ack in acks {
            first
                .entry(ack.partition)
                .and_modify(|o| *o = (*o).min(ack.offset))
                .or_insert(ack.offset);
            last.entry(ack.partition)
                .and_modify(|o| *o = (*o).max(ack.offset))
                .or_insert(ack.offset);
        }
        match result {
            Ok(()) => {
                for (partition, offset) in last {
                    // Fails only for a partition revoked meanwhile: its new owner replays it.
                    if let Err(error) = self.consumer.store_offset(&self.topic, partition, offset) {
                        tracing::debug!(partition, offset, %error, "Offset not stored.");
                    }
                }
            }
            Err(error) => {
                // Never skip: read the batch again.
                tracing::warn!(%error, "Batch not stored; rewinding to read it again.");
                for (partition, offset) in first {
                    if let Err(error) = self.consumer.seek(
                        &self.topic,
                        partition,
                        Offset::Offset(offset),
                        Duration::from_secs(5),
                    ) {
                        tracing::warn!(partition, offset, %error, "Seek failed.");
                    }
                }
            }
        }
    }

    async fn close(&mut self) {
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "Commit at close.");
        }
        self.consumer.unsubscribe();
    }
}

/// The connectors' end of `inbox.outbound`. Deliveries finish out of order, so the stored offset
/// of a partition only moves past records whose delivery reports are published.
pub struct KafkaOutbound {
    consumer: Arc<StreamConsumer<Rebalancing>>,
    topic: String,
    tracker: HashMap<i32, PartitionProgress>,
    bus: Arc<KafkaBus>,
}

impl std::fmt::Debug for KafkaOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOutbound")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Offsets handed out and not yet settled, and the lowest and highest settled ones.
#[derive(Debug, Default)]
struct PartitionProgress {
    in_flight: BTreeSet<i64>,
    lowest_settled: Option<i64>,
    settled: Option<i64>,
}

impl PartitionProgress {
    fn settle(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
        self.lowest_settled = Some(self.lowest_settled.map_or(offset, |s| s.min(offset)));
        self.settled = Some(self.settled.map_or(offset, |s| s.max(offset)));
    }

    /// The highest offset up to which everything is settled. Records are handed out in offset
    /// order, so once any record before the first one still in flight was settled, all were.
    fn committable(&self) -> Option<i64> {
        match self.in_flight.first() {
            Some(&first) => self
                .lowest_settled
                .filter(|&low| low < first)
                .map(|_| first - 1),
            None => self.settled,
        }
    }
}

impl KafkaOutbound {
    fn settle_offset(&mut self, ack: KafkaAck) {
        let progress = self.tracker.entry(ack.partition).or_default();
        progress.settle(ack.offset);
        if let Some(offset) = progress.committable()
            && let Err(error) = self
                .consumer
                .store_offset(&self.topic, ack.partition, offset)
        {
            tracing::debug!(partition = ack.partition, offset, %error, "Offset not stored.");
        }
    }
}

#[async_trait]
impl OutboundConsumer for KafkaOutbound {
    type Ack = KafkaAck;

    async fn next(&mut self) -> Option<(OutboundMessage, KafkaAck)> {
        loop {
            let (decoded, ack) = match self.consumer.recv().await {
                Ok(message) => {
                    let payload = message.payload().unwrap_or_default();
                    (
                        OutboundMessage::from_json(payload)
                            .map_err(|e| (String::from_utf8_lossy(payload).into_owned(), e)),
                        KafkaAck {
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                    )
                }
                Err(error) => {
                    tracing::warn!(%error, "Outbound consumer error; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.tracker
                .entry(ack.partition)
                .or_default()
                .in_flight
                .insert(ack.offset);
            match decoded {
                Ok(message) => return Some((message, ack)),
                Err((payload, error)) => {
                    let error = format!("undecodable outbound message: {error}");
                    tracing::warn!(%error, "Dead-lettering an outbound record.");
                    while let Err(e) = self.bus.publish_dead_letter(&payload, &error).await {
                        tracing::warn!(error = %e, "Dead letter not published; retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    self.settle_offset(ack);
                }
            }
        }
    }

    async fn settle(&mut self, ack: KafkaAck) {
        self.settle_offset(ack);
    }

    async fn close(&mut self) {
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "Commit at close.");
        }
        self.consumer.unsubscribe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_breaker_fails_fast_while_one_publish_probes() {
        let breaker = IntakeBreaker::default();
        // Closed: everyone goes through, and failures other than a timeout keep it closed.
        let (a, b) = (breaker.admit().unwrap(), breaker.admit().unwrap());
        a.done(false, false);
        b.done(true, false);
        assert!(breaker.admit().is_some());
        // A timeout opens it: one probe at a time, the others refused at once.
        breaker.admit().unwrap().done(false, true);
        let probe = breaker.admit().expect("one publish probes");
        assert!(
            breaker.admit().is_none(),
            "others fail fast while it probes"
        );
        probe.done(false, true);
        // An abandoned probe (the sender hung up) lets the next publish probe.
        let abandoned = breaker.admit().expect("the next probe");
        drop(abandoned);
        let probe = breaker.admit().expect("a probe after the abandoned one");
        assert!(breaker.admit().is_none());
        // The brokers are back: the probe's success closes it.
        probe.done(true, false);
        let (a, b) = (breaker.admit(), breaker.admit());
        assert!(a.is_some() && b.is_some());
    }

    #[test]
    fn topics_that_differ_from_the_configuration_are_named() {
        let config = KafkaConfig {
            partitions: 12,
            replication_factor: 3,
            min_insync_replicas: 2,
            ..KafkaConfig::default()
        };
        let as_configured = TopicSettings {
            topic: "inbox.inbound".into(),
            partitions: 12,
            replication_factor: 3,
            min_insync_replicas: 2,
        };
        let smaller = TopicSettings {
            topic: "inbox.events".into(),
            partitions: 6,
            replication_factor: 1,
            ..as_configured.clone()
        };
        let found = config.mismatches(&[as_configured, smaller]);
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "topic inbox.events has partitions = 6, but kafka.partitions is 12",
                "topic inbox.events has replication_factor = 1, but kafka.replication_factor is 3",
            ]
        );
    }

    #[test]
    fn outbound_offsets_advance_only_past_settled_records() {
        let mut p = PartitionProgress::default();
        p.in_flight.extend([5, 6, 7]);
        // 6 finishes first: 5 is still running, nothing may be committed.
        p.settle(6);
        assert_eq!(p.committable(), None);
        p.settle(5);
        assert_eq!(p.committable(), Some(6));
        p.settle(7);
        assert_eq!(p.committable(), Some(7));
    }

    #[test]
    fn outbound_offsets_advance_up_to_the_first_record_in_flight() {
        let mut p = PartitionProgress::default();
        p.in_flight.extend([1, 2, 3]);
        p.settle(3);
        assert_eq!(p.committable(), None);
        // 1 is done and 2 is not: the position moves to 2, not past it.
        p.settle(1);
        assert_eq!(p.committable(), Some(1));
        p.in_flight.insert(4);
        p.settle(2);
        assert_eq!(p.committable(), Some(3));
        p.settle(4);
        assert_eq!(p.committable(), Some(4));
    }
}
