//! The Kafka bus's configuration: brokers, topic names and settings, consumer groups; creating
//! the topics and naming those that differ from the configuration.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;

use super::{BusError, not_accepted};

/// Topic names (docs/scaling.md lists each with its key and consumers).
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

impl KafkaConfig {
    pub(super) fn client(&self) -> ClientConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
