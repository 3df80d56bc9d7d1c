//! Configuration: `inbox.toml` (path via `--config`) overlaid by `INBOX_*` environment variables,
//! overlaid by command-line flags. See `deploy/inbox.example.toml` for every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use inbox_connectors::runner::RetryPolicy;
use inbox_core::bus::kafka::KafkaConfig;
use inbox_core::ingest::IngestSettings;
use inbox_core::store::StoreConfig;
use inbox_core::threading::ThreadingPolicy;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of the embedded SQLite database (`inbox.db`); created when missing.
    pub data_dir: PathBuf,
    /// Address the HTTP server (API and inbound webhooks) listens on.
    pub listen: SocketAddr,
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address instead of `listen`.
    pub ops_listen: Option<SocketAddr>,
    /// Kafka; when set (or INBOX_KAFKA_BROKERS is), the bus between the services is Kafka.
    pub kafka: Option<KafkaConfig>,
    /// PostgreSQL URL (`postgres://…`); when set, used instead of the embedded SQLite database.
    pub database_url: Option<String>,
    /// Largest PostgreSQL pool per process.
    pub database_max_connections: u32,
    /// Ingest workers of the core, each storing its own batches: with the in-process bus, its
    /// partitions (one customer's messages always go to the same one, so they stay in order); with
    /// Kafka, one consumer each in the core's group, sharing the topic's partitions. Default: 1 on
    /// SQLite (it has one writer at a time), the number of CPUs on PostgreSQL.
    pub ingest_partitions: Option<usize>,
    /// Base URL under which users reach this server, used in printed webhook URLs.
    pub public_url: Option<String>,
    /// How replies are retried when their channel fails.
    pub delivery: RetryPolicy,
    /// Threading rules.
    pub threading: ThreadingConfig,
    /// A message's provider time earlier than its channel's creation by more than this many
    /// days is not believed: the message is placed at its arrival time and the claimed time is
    /// kept (`claimed_sent_at`). Mailbox backfills and imports within the bound keep their times.
    pub max_backdate_days: u64,
    /// The agents' web inbox.
    pub web: WebConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Reverse proxies (CIDRs, e.g. `["127.0.0.1/32", "10.0.0.0/8"]`) whose `Forwarded` /
    /// `X-Forwarded-For` headers give the client's address for sign-in limits. Requests from
    /// other peers are taken at their own address; their headers are never read. Also
    /// `INBOX_WEB_TRUSTED_PROXIES` (comma-separated).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThreadingConfig {
    /// A resolved chat conversation is reopened by a customer message within this many hours.
    pub chat_reopen_hours: u64,
    /// Same-subject email joins a resolved conversation resolved fewer than this many days ago.
    pub subject_window_days: u64,
}

impl Default for ThreadingConfig {
    fn default() -> Self {
        ThreadingConfig {
            chat_reopen_hours: 24,
            subject_window_days: 14,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("inbox-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: None,
            kafka: None,
            database_url: None,
            database_max_connections: 16,
            ingest_partitions: None,
            public_url: None,
            delivery: RetryPolicy::default(),
            threading: ThreadingConfig::default(),
            max_backdate_days: 365,
            web: WebConfig::default(),
        }
    }
}

impl Config {
    /// Reads the file (if any), then applies `INBOX_*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(dir) = env("INBOX_DATA_DIR") {
            config.data_dir = dir.into();
        }
        if let Some(listen) = env("INBOX_LISTEN") {
            config.listen = listen
                .parse()
                .with_context(|| format!("INBOX_LISTEN: `{listen}` is not host:port"))?;
        }
        if let Some(url) = env("INBOX_DATABASE_URL").filter(|u| !u.is_empty()) {
            config.database_url = Some(url);
        }
        if let Some(url) = env("INBOX_PUBLIC_URL").filter(|u| !u.is_empty()) {
            config.public_url = Some(url);
        }
        if let Some(listen) = env("INBOX_OPS_LISTEN").filter(|l| !l.is_empty()) {
            config.ops_listen = Some(
                listen
                    .parse()
                    .with_context(|| format!("INBOX_OPS_LISTEN: `{listen}` is not host:port"))?,
            );
        }
        if let Some(proxies) = env("INBOX_WEB_TRUSTED_PROXIES") {
            config.web.trusted_proxies = proxies
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse().with_context(|| {
                        format!("INBOX_WEB_TRUSTED_PROXIES: `{p}` is not a CIDR (e.g. 10.0.0.0/8)")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(brokers) = env("INBOX_KAFKA_BROKERS").filter(|b| !b.is_empty()) {
            config
                .kafka
                .get_or_insert_with(KafkaConfig::default)
                .brokers = brokers;
        }
        // Topic settings for `inbox migrate`, e.g. from a compose file; only with Kafka on.
        if let Some(kafka) = config.kafka.as_mut() {
            for (name, setting) in [
                ("INBOX_KAFKA_PARTITIONS", &mut kafka.partitions),
                (
                    "INBOX_KAFKA_REPLICATION_FACTOR",
                    &mut kafka.replication_factor,
                ),
                (
                    "INBOX_KAFKA_MIN_INSYNC_REPLICAS",
                    &mut kafka.min_insync_replicas,
                ),
            ] {
                if let Some(value) = env(name).filter(|v| !v.is_empty()) {
                    *setting = value
                        .parse()
                        .ok()
                        .filter(|n: &i32| *n >= 1)
                        .with_context(|| format!("{name}: `{value}` is not a positive number"))?;
                }
            }
        }
        Ok(config)
    }

    /// From the process environment.
    pub fn from_env(path: Option<&Path>) -> anyhow::Result<Config> {
        Config::load(path, |name| std::env::var(name).ok())
    }

    pub fn store(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                max_connections: self.database_max_connections,
            },
            None => StoreConfig::Sqlite {
                path: self.data_dir.join("inbox.db"),
            },
        }
    }

    /// Core workers of the in-process bus.
    pub fn partitions(&self) -> usize {
        self.ingest_partitions
            .unwrap_or(if self.database_url.is_some() {
                cpus()
            } else {
                1
            })
            .max(1)
    }

    pub fn ingest(&self) -> IngestSettings {
        IngestSettings {
            threading: ThreadingPolicy {
                chat_reopen_window: Duration::from_secs(self.threading.chat_reopen_hours * 3600),
                subject_window: Duration::from_secs(self.threading.subject_window_days * 86_400),
            },
            max_backdate: Duration::from_secs(self.max_backdate_days.saturating_mul(86_400)),
            ..IngestSettings::default()
        }
    }

    /// The base URL to show users.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// CPUs available to this process: more concurrent transactions than that only add contention.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/inbox\"\n[delivery]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), |name| {
            (name == "INBOX_DATABASE_URL").then(|| "postgres://db/inbox".to_owned())
        })
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.delivery.max_attempts, 2);
        assert_eq!(config.database_url.as_deref(), Some("postgres://db/inbox"));
        assert!(matches!(config.store(), StoreConfig::Postgres { .. }));
    }

    #[test]
    fn unknown_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.toml");
        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Config::load(Some(&path), |_| None).is_err());
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.toml");
        std::fs::write(&path, "[web]\ntrusted_proxies = [\"10.0.0.0/8\"]\n").unwrap();
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(config.web.trusted_proxies, ["10.0.0.0/8".parse().unwrap()]);
        let config = Config::load(None, |name| {
            (name == "INBOX_WEB_TRUSTED_PROXIES").then(|| "127.0.0.1/32, ::1/128".to_owned())
        })
        .unwrap();
        assert_eq!(config.web.trusted_proxies.len(), 2);
        let error = Config::load(None, |name| {
            (name == "INBOX_WEB_TRUSTED_PROXIES").then(|| "10.0.0.0/33".to_owned())
        })
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("INBOX_WEB_TRUSTED_PROXIES"),
            "{error:#}"
        );
    }

    #[test]
    fn kafka_topic_settings_come_from_the_environment() {
        let env = |name: &str| match name {
            "INBOX_KAFKA_BROKERS" => Some("k1:9092,k2:9092".to_owned()),
            "INBOX_KAFKA_REPLICATION_FACTOR" => Some("3".to_owned()),
            "INBOX_KAFKA_MIN_INSYNC_REPLICAS" => Some("2".to_owned()),
            _ => None,
        };
        let kafka = Config::load(None, env).unwrap().kafka.unwrap();
        assert_eq!(
            (kafka.replication_factor, kafka.min_insync_replicas),
            (3, 2)
        );
        assert_eq!(kafka.partitions, KafkaConfig::default().partitions);
        let bad = |name: &str| match name {
            "INBOX_KAFKA_BROKERS" => Some("k1:9092".to_owned()),
            "INBOX_KAFKA_PARTITIONS" => Some("0".to_owned()),
            _ => None,
        };
        assert!(Config::load(None, bad).is_err());
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/inbox.example.toml");
        Config::load(Some(&path), |_| None).unwrap();
    }
}
