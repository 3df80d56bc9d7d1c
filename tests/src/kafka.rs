//! Harness of the multi-process Kafka tests: the production services (`inbox core`, `inbox
//! connectors`, `inbox web`) run as separate processes of the real binary against a Tansu broker
//! (a Kafka-compatible broker keeping its log in SQLite) and a fresh PostgreSQL database, and the
//! tests crash and restart them.
//!
//! - [`Broker`]: a Tansu broker as a child process in a temporary directory of its own, on a free
//!   loopback port; [`Broker::kill9`] and [`Broker::restart`] (same directory, same port, the log
//!   survives).
//! - [`Deployment`]: one test's database (created on the `INBOX_TEST_DATABASE_URL` server, dropped
//!   when the test passed), configuration file (`[kafka] partitions = 4`, fast `[delivery]`
//!   retries), schema and topics (`inbox migrate`), and an admin with an API token and a webhook
//!   channel created through the [`Store`] on that database.
//! - [`Service`]: `$INBOX_BIN <kind>` as a child process; [`Service::kill9`], [`Service::sigterm`],
//!   [`Service::restart`]. Output goes to a log file whose tail is printed when a test fails.
//! - [`Workload`] / [`send`]: many customers' signed webhook messages, POSTed concurrently.
//! - [`Deployment::assert_exactly_once`]: every message stored once, in its customer's single
//!   conversation, in `sent_at` order, with exactly one log event per message.
//! - [`python_client`] and its wrappers ([`read_topic`], [`committed_offsets`],
//!   [`join_and_leave`]): `tests/fixtures/produce.py`, an independent Kafka client
//!   (confluent-kafka).
//!
//! Needs `INBOX_BIN` (the built `inbox` binary) and `INBOX_TEST_TANSU` (the Tansu binary); `tests/run`
//! sets both. The services log at `warn` (plus the Kafka bus's rebalance lines at `info`);
//! `INBOX_E2E_LOG=<filter>` replaces that filter, and `INBOX_E2E_TANSU_LOG=<filter>` sets the
//! broker's (its `RUST_LOG`). A failed test keeps the logs and prints their tails.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ConversationId;
use inbox_core::model::{Agent, Channel, Role, ThreadReason};
use inbox_core::store::{Store, StoreConfig};
use serde_json::json;
use sqlx::PgPool;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::PgDatabase;

/// Partitions of every topic `inbox migrate` creates in these tests.
pub const PARTITIONS: i32 = 4;

/// Environment variable naming the Tansu binary.
pub const TANSU_ENV: &str = "INBOX_TEST_TANSU";

/// Environment variable naming the built `inbox` binary.
pub const BIN_ENV: &str = "INBOX_BIN";

/// The consumers' `session.timeout.ms` (`inbox_core::bus::kafka`): how long the group coordinator
/// keeps a member that stopped heartbeating (e.g. after `kill -9`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until the group coordinator has certainly given up on a member killed just before.
///
/// Works around a bug of Tansu 0.6.0's group coordinator: when a new member joins while the dead
/// *leader* is still in the group, it joins as a follower; when the leader's session then expires
/// during the follower's SyncGroup, the group becomes stable with an empty assignment, and the new
/// member holds no partition, for good. Joining after the session expired makes the new member
/// the leader. Kafka rebalances in both cases: this is not about the product's correctness, only
/// about not racing the broker's bug.
pub async fn outlive_dead_member() {
    tokio::time::sleep(SESSION_TIMEOUT + Duration::from_millis(1_500)).await;
}

/// How often the waiting helpers poll.
const POLL: Duration = Duration::from_millis(50);

/// How long a process may take to come up.
const STARTUP: Duration = Duration::from_secs(60);

/// Lines of a log printed when a test fails.
const TAIL_LINES: usize = 60;

fn required_file(var: &str, what: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{var} is not set: the Kafka e2e tests need {what}. `tests/run` sets it; to run the \
             tests by hand, export {var}=/path/to/the/binary"
        ),
    };
    assert!(
        path.is_file(),
        "{var}={} does not name a file (expected {what})",
        path.display()
    );
    path
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("a bound listener has an address: {e}"))
        .port()
}

/// The last `lines` lines of a file (empty when it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", path.display()))
}

fn kill_child(child: &mut Child) {
    // Already exited is fine; anything else leaves a stray process, which `wait` would hang on.
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// The broker

/// A Tansu broker; killed when dropped.
#[derive(Debug)]
pub struct Broker {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// Starts a broker with its log in a new temporary directory, on a free loopback port, and
    /// waits until it accepts connections.
    pub async fn start() -> Broker {
        let bin = required_file(TANSU_ENV, "a Tansu broker binary");
        let dir = tempfile::Builder::new()
            .prefix("inbox-e2e-tansu-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the broker's directory: {e}"));
        let mut broker = Broker {
            bin,
            dir,
            port: free_port(),
            child: None,
            starts: 0,
        };
        broker.launch().await;
        broker
    }

    /// `host:port` of the broker (the same across restarts).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The working directory holding `tansu.db` and `tansu.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    async fn launch(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.starts += 1;
        let log_path = self.log_path();
        let mut log = open_log(&log_path);
        let _ = writeln!(log, "==== e2e: broker start #{} ====", self.starts);
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the broker's log: {e}"));
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // Relative to the working directory: the log lives (and survives) in `dir`.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env_remove("RUST_LOG")
            .envs(std::env::var_os("INBOX_E2E_TANSU_LOG").map(|filter| ("RUST_LOG", filter)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "the broker exited at start ({status}); its log:\n{}",
                    tail(&log_path, TAIL_LINES)
                );
            }
            let connected = tokio::task::spawn_blocking(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })
            .await
            .unwrap_or(false);
            if connected {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the broker did not accept connections on {addr} within {STARTUP:?}; its \
                     log:\n{}",
                    tail(&log_path, TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `kill -9`: the broker stops at once, without flushing anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts the broker again on the same directory and port (after [`Broker::kill9`]).
    pub async fn restart(&mut self) {
        self.kill9();
        self.launch().await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "---- e2e: tail of the broker's log ({}, kept) ----\n{}\n---- end of the broker's log ----",
                self.log_path().display(),
                tail(&self.log_path(), 30)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One deployment: database, configuration, topics

/// What every process of a deployment is started with.
#[derive(Debug, Clone)]
struct Launch {
    bin: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Launch {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        // Nothing of the developer's own setup leaks in.
        for var in [
            "INBOX_CONFIG",
            "INBOX_OPS_LISTEN",
            "INBOX_PUBLIC_URL",
            "INBOX_LISTEN",
            "INBOX_USER_PASSWORD",
        ] {
            command.env_remove(var);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }
}

/// The log filter of the services.
fn service_log_filter() -> String {
    match std::env::var("INBOX_E2E_LOG") {
        Ok(filter) if !filter.trim().is_empty() => filter,
        // The bus's info lines are the partition assignments, which tests look for.
        _ => "warn,inbox_core::bus::kafka=info".to_owned(),
    }
}

/// One test's database, configuration and topics, with an admin and a webhook channel.
#[derive(Debug)]
pub struct Deployment {
    /// `host:port` of the broker.
    pub brokers: String,
    /// A store on the test's database (a small pool of its own).
    pub store: Store,
    pub admin: Agent,
    /// The admin's API token.
    pub token: String,
    /// A webhook channel delivering replies to the `outbound_url` given to [`Deployment::setup`].
    pub channel: Channel,
    launch: Launch,
    // Dropped after the store (fields drop in order).
    db: PgDatabase,
    dir: TempDir,
}

impl Deployment {
    /// Creates the database, writes the configuration, runs `inbox migrate` (schema and topics)
    /// and creates an admin with an API token and a webhook channel delivering to `outbound_url`.
    pub async fn setup(broker: &Broker, outbound_url: &str) -> Deployment {
        let bin = required_file(
            BIN_ENV,
            "the built `inbox` binary (cargo build --bin inbox; then \
             INBOX_BIN=$CARGO_TARGET_DIR/debug/inbox)",
        );
        let db = PgDatabase::create().await;
        let dir = tempfile::Builder::new()
            .prefix("inbox-e2e-kafka-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let config = dir.path().join("inbox.toml");
        let brokers = broker.brokers();
        std::fs::write(
            &config,
            format!(
                "# Written by the e2e harness.\n\
                 database_max_connections = 8\n\
                 \n\
                 [kafka]\n\
                 brokers = \"{brokers}\"\n\
                 partitions = {PARTITIONS}\n\
                 \n\
                 [delivery]\n\
                 max_attempts = 3\n\
                 initial_backoff_ms = 20\n\
                 max_backoff_ms = 50\n"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let launch = Launch {
            bin,
            config,
            dir: dir.path().to_path_buf(),
            env: vec![
                ("INBOX_DATABASE_URL", db.url.clone().into()),
                ("INBOX_KAFKA_BROKERS", brokers.clone().into()),
                ("INBOX_DATA_DIR", dir.path().join("data").into()),
                ("INBOX_LOG", service_log_filter().into()),
                ("NO_COLOR", "1".into()),
            ],
        };

        let mut migrate = launch.command(&["migrate"]);
        let output = tokio::task::spawn_blocking(move || migrate.output())
            .await
            .unwrap_or_else(|e| panic!("`inbox migrate` did not finish: {e}"))
            .unwrap_or_else(|e| panic!("cannot run `inbox migrate`: {e}"));
        assert!(
            output.status.success(),
            "`inbox migrate` failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        let store = Store::connect(&StoreConfig::Postgres {
            url: db.url.clone(),
            max_connections: 4,
        })
        .await
        .unwrap_or_else(|e| panic!("cannot open the test's store: {e}"));
        let admin = store
            .create_agent("admin@example.com", "Ada Admin", Role::Admin, None)
            .await
            .unwrap_or_else(|e| panic!("cannot create the admin agent: {e}"));
        let token = store
            .create_api_token(admin.id, "e2e")
            .await
            .unwrap_or_else(|e| panic!("cannot create an API token: {e}"));
        let channel = store
            .create_channel(
                ChannelKind::Webhook,
                "e2e webhook",
                json!({ "outbound_url": outbound_url }),
                &inbox_connectors::webhook::new_secret(),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create a webhook channel: {e}"));
        Deployment {
            brokers,
            store,
            admin,
            token,
            channel,
            launch,
            db,
            dir,
        }
    }

    /// The URL of the test's own database.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// The directory holding the configuration and the services' logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PostgreSQL pool behind [`Deployment::store`], for checks the Store has no query for.
    pub fn pool(&self) -> &PgPool {
        match &self.store {
            Store::Postgres(pool) => pool,
            Store::Sqlite(_) => unreachable!("the Kafka tests run on PostgreSQL"),
        }
    }

    /// Messages stored, counted by the store itself.
    pub async fn message_total(&self) -> i64 {
        self.store
            .message_total()
            .await
            .unwrap_or_else(|e| panic!("cannot count messages: {e}"))
    }

    /// Waits until at least `expected` messages are stored; panics with the last count after
    /// `timeout`.
    pub async fn wait_for_total(&self, expected: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let total = self.message_total().await;
            if total >= expected {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {expected} stored messages; {total} \
                     stored"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the core's consumer group has committed every record of `inbox.inbound` (its
    /// committed offset is the high watermark on every partition): nothing would be replayed.
    pub async fn wait_for_offsets_committed(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let offsets = committed_offsets(&self.brokers, "inbox.inbound", "inbox-core").await;
            let done = !offsets.is_empty()
                && offsets
                    .iter()
                    .all(|(_, committed, high)| *committed == Some(*high));
            if done {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for the core to commit every inbound \
                     record; (partition, committed, high watermark): {offsets:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every message of the workload stored exactly once: as many rows as messages with as many
    /// distinct external ids, one conversation per customer (webhook rule 4: the first message
    /// opens it, every later one joins it) holding that customer's messages in `sent_at` order
    /// (read through [`Store::messages`]), its `message_count` right, and exactly one `opened`
    /// event per conversation and one `message_received` event per message.
    pub async fn assert_exactly_once(&self, workload: &Workload) {
        let channel_id = self.channel.id.to_string();
        let n = workload.items.len() as i64;
        assert_eq!(self.message_total().await, n, "messages stored");
        let (rows, distinct): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT external_id) FROM messages WHERE channel_id = $1",
        )
        .bind(&channel_id)
        .fetch_one(self.pool())
        .await
        .unwrap_or_else(|e| panic!("cannot count external ids: {e}"));
        assert_eq!(
            (rows, distinct),
            (n, n),
            "(rows, distinct external ids) on the channel"
        );

        let conversations: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, contact_handle, message_count FROM conversations WHERE channel_id = $1
             ORDER BY contact_handle",
        )
        .bind(&channel_id)
        .fetch_all(self.pool())
        .await
        .unwrap_or_else(|e| panic!("cannot list conversations: {e}"));
        let expected = workload.expected_histories();
        let mut per_handle: HashMap<&str, usize> = HashMap::new();
        for (_, handle, _) in &conversations {
            *per_handle.entry(handle.as_str()).or_default() += 1;
        }
        let split: Vec<(&&str, &usize)> = per_handle.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            split.is_empty(),
            "customers with more than one conversation: {split:?}"
        );
        assert_eq!(
            conversations.len(),
            expected.len(),
            "one conversation per customer"
        );

        let mut wrong = Vec::new();
        for (id, handle, message_count) in &conversations {
            let Some(want) = expected.get(handle) else {
                wrong.push(format!("unexpected customer {handle}"));
                continue;
            };
            let conversation: ConversationId = id
                .parse()
                .unwrap_or_else(|e| panic!("conversation id {id}: {e}"));
            let page = self
                .store
                .messages(conversation, None, 500)
                .await
                .unwrap_or_else(|e| panic!("cannot read conversation {id}: {e}"));
            assert!(page.next_before.is_none(), "{handle}: history fits a page");
            let got: Vec<&str> = page
                .items
                .iter()
                .map(|m| m.external_id.as_deref().unwrap_or("<none>"))
                .collect();
            if got != want.iter().map(String::as_str).collect::<Vec<_>>() {
                wrong.push(format!("{handle}: history {got:?}, expected {want:?}"));
                continue;
            }
            let sorted = page.items.windows(2).all(|w| w[0].sent_at < w[1].sent_at);
            if !sorted {
                wrong.push(format!("{handle}: history not in sent_at order"));
            }
            let new = page
                .items
                .iter()
                .filter(|m| m.thread_reason == ThreadReason::NewConversation)
                .count();
            let joined = page
                .items
                .iter()
                .filter(|m| m.thread_reason == ThreadReason::LatestConversation)
                .count();
            if (new, joined) != (1, want.len() - 1) {
                wrong.push(format!(
                    "{handle}: {new} messages opened the conversation and {joined} joined it, \
                     expected 1 and {}",
                    want.len() - 1
                ));
            }
            if *message_count != want.len() as i64 {
                wrong.push(format!(
                    "{handle}: message_count {message_count}, expected {}",
                    want.len()
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} conversations are wrong; the first ones:\n{}",
            wrong.len(),
            conversations.len(),
            wrong
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );

        let events: Vec<(String, i64)> = sqlx::query_as(
            "SELECT e.kind, COUNT(*) FROM conversation_events e
             JOIN conversations c ON c.id = e.conversation_id
             WHERE c.channel_id = $1 GROUP BY e.kind ORDER BY e.kind",
        )
        .bind(&channel_id)
        .fetch_all(self.pool())
        .await
        .unwrap_or_else(|e| panic!("cannot count conversation events: {e}"));
        assert_eq!(
            events,
            vec![
                ("message_received".to_owned(), n),
                ("opened".to_owned(), expected.len() as i64),
            ],
            "conversation log: one `opened` per conversation, one `message_received` per message"
        );
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "e2e: test failed; configuration and service logs kept in {}",
                self.dir.path().display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The services

/// A running (or stopped) `inbox` service process; killed when dropped.
#[derive(Debug)]
pub struct Service {
    /// `core`, `connectors`, `web` or `run`.
    pub kind: String,
    /// Its HTTP port (the same across restarts).
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    launch: Launch,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
    client: reqwest::Client,
}

impl Service {
    /// Starts `$INBOX_BIN <kind>` of the deployment on a free port and waits until its `/healthz`
    /// answers 200.
    pub async fn spawn(kind: &str, deployment: &Deployment) -> Service {
        assert!(
            ["core", "connectors", "web", "run"].contains(&kind),
            "unknown service kind {kind}"
        );
        let port = free_port();
        let mut service = Service {
            kind: kind.to_owned(),
            port,
            address: format!("http://127.0.0.1:{port}"),
            launch: deployment.launch.clone(),
            log: deployment.dir().join(format!("{kind}-{port}.log")),
            child: None,
            starts: 0,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_else(|e| panic!("cannot build the HTTP client: {e}")),
        };
        service.start().await;
        service
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the (stopped) process again on the same port, and waits for `/healthz`.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name());
        self.starts += 1;
        let mut log = open_log(&self.log);
        let _ = writeln!(log, "==== e2e: {} start #{} ====", self.name(), self.starts);
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the log of {}: {e}", self.name()));
        let listen = format!("127.0.0.1:{}", self.port);
        let child = self
            .launch
            .command(&[&self.kind])
            .env("INBOX_LISTEN", &listen)
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.launch.bin.display()));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "{} exited at start ({status}); its log:\n{}",
                    self.name(),
                    tail(&self.log, TAIL_LINES)
                );
            }
            if let Ok(response) = self.client.get(self.url("/healthz")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} did not answer /healthz within {STARTUP:?}; its log:\n{}",
                    self.name(),
                    tail(&self.log, TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `kill -9`: the process stops at once, nothing committed or flushed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// SIGTERM, and waits for a graceful exit (asserting it exits 0 within 60 s).
    pub async fn sigterm(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            signalled.as_ref().is_ok_and(ExitStatus::success),
            "kill -TERM {pid} failed: {signalled:?}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                _ => {
                    kill_child(&mut child);
                    panic!(
                        "{} did not stop within 60 s of SIGTERM; its log:\n{}",
                        self.name(),
                        tail(&self.log, TAIL_LINES)
                    );
                }
            }
        };
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM; its log:\n{}",
            self.name(),
            tail(&self.log, TAIL_LINES)
        );
    }

    /// Stops the process gracefully if it runs, and starts it again.
    pub async fn restart(&mut self) {
        self.sigterm().await;
        self.start().await;
    }

    /// Everything the process (all its incarnations) logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics of {} failed: {e}", self.name()));
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "/metrics of {}",
            self.name()
        );
        response
            .text()
            .await
            .unwrap_or_else(|e| panic!("/metrics of {}: {e}", self.name()))
    }

    /// The value of one series of `/metrics` (e.g.
    /// `inbox_ingest_records_total{outcome="stored"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    fn name(&self) -> String {
        format!("`inbox {}` on port {}", self.kind, self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- e2e: tail of the log of {} ({}) ----\n{}\n---- end of the log ----",
                self.name(),
                self.log.display(),
                tail(&self.log, TAIL_LINES)
            );
        }
    }
}

/// The value of `series` in a Prometheus text page, 0 when absent.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

/// The partition counts of every "Partitions assigned." line of a service log, in order.
pub fn partition_assignments(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|line| line.contains("Partitions assigned."))
        .filter_map(|line| {
            let at = line.find("partitions=")? + "partitions=".len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The workload

/// One signed webhook request.
#[derive(Debug, Clone)]
pub struct WebhookItem {
    pub external_id: String,
    pub handle: String,
    pub body: Bytes,
    pub signature: String,
}

/// Many customers' messages: customer `c`'s `k`-th message is `m-<c>-<k>` with a `sent_at`
/// increasing in `k`. Items are in sending order: every customer's first message, then every
/// customer's second, and so on.
#[derive(Debug, Clone)]
pub struct Workload {
    pub items: Vec<WebhookItem>,
    customers: usize,
    per_customer: usize,
}

impl Workload {
    pub fn new(channel: &Channel, customers: usize, per_customer: usize) -> Workload {
        // A day ago: well clear of the clamp of future times.
        let base: DateTime<Utc> = Utc::now() - chrono::Duration::days(1);
        let mut items = Vec::with_capacity(customers * per_customer);
        for k in 0..per_customer {
            for c in 0..customers {
                let external_id = format!("m-{c}-{k}");
                let handle = format!("customer-{c}");
                let sent_at = base
                    + chrono::Duration::seconds(k as i64 * 60)
                    + chrono::Duration::milliseconds(c as i64);
                let payload = json!({
                    "external_id": external_id,
                    "from": { "handle": handle, "name": format!("Customer {c}") },
                    "text": format!("Message {k} of customer {c}"),
                    "sent_at": sent_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                });
                let body = Bytes::from(
                    serde_json::to_vec(&payload)
                        .unwrap_or_else(|e| panic!("cannot serialize a payload: {e}")),
                );
                let signature = inbox_connectors::webhook::sign(&channel.secret, &body);
                items.push(WebhookItem {
                    external_id,
                    handle,
                    body,
                    signature,
                });
            }
        }
        Workload {
            items,
            customers,
            per_customer,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each customer's external ids in `sent_at` order: what a clean run stores.
    pub fn expected_histories(&self) -> BTreeMap<String, Vec<String>> {
        (0..self.customers)
            .map(|c| {
                (
                    format!("customer-{c}"),
                    (0..self.per_customer)
                        .map(|k| format!("m-{c}-{k}"))
                        .collect(),
                )
            })
            .collect()
    }
}

/// What a sender does with a 503 (or a connection error / timeout) of the webhook endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Every request must be accepted at the first attempt.
    Fail,
    /// Retry until it is accepted, like a real integration (the external id makes retries safe).
    Retry,
}

/// Webhook requests under way; see [`send`].
#[derive(Debug)]
pub struct Sending {
    accepted: Arc<AtomicUsize>,
    retried: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

/// The outcome of [`Sending::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// Requests answered 202.
    pub accepted: usize,
    /// Attempts answered 503 or failed at the transport, and retried.
    pub retried: usize,
}

/// POSTs the items to `url` from `concurrency` concurrent workers.
pub fn send(
    url: &str,
    items: Vec<WebhookItem>,
    concurrency: usize,
    on_unavailable: OnUnavailable,
) -> Sending {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_else(|e| panic!("cannot build the HTTP client: {e}"));
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let url = Arc::new(url.to_owned());
    let workers = (0..concurrency.max(1))
        .map(|_| {
            let (client, items, next, url) =
                (client.clone(), items.clone(), next.clone(), url.clone());
            let (accepted, retried, failures) =
                (accepted.clone(), retried.clone(), failures.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match post_until_accepted(&client, &url, item, on_unavailable, &retried).await {
                        Ok(()) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(failure) => failures
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(failure),
                    }
                }
            })
        })
        .collect();
    Sending {
        accepted,
        retried,
        failures,
        workers,
    }
}

async fn post_until_accepted(
    client: &reqwest::Client,
    url: &str,
    item: &WebhookItem,
    on_unavailable: OnUnavailable,
    retried: &AtomicUsize,
) -> Result<(), String> {
    // Long enough for a broker outage; a sender never gives up before the test would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header(inbox_connectors::webhook::SIGNATURE_HEADER, &item.signature)
            .body(item.body.clone())
            .send()
            .await;
        let unavailable = match sent {
            Ok(response) if response.status() == StatusCode::ACCEPTED => return Ok(()),
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                format!("{} answered 503", item.external_id)
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(format!("{}: {status} {body}", item.external_id));
            }
            Err(e) => format!("{}: {e}", item.external_id),
        };
        if on_unavailable == OnUnavailable::Fail || tokio::time::Instant::now() >= deadline {
            return Err(unavailable);
        }
        retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Sending {
    /// Requests accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Attempts answered 503 (or failed at the transport) and retried so far.
    pub fn retried(&self) -> usize {
        self.retried.load(Ordering::Relaxed)
    }

    /// Waits until every item was sent; asserts every one was accepted.
    pub async fn finish(self, timeout: Duration) -> SendReport {
        let all = futures::future::join_all(self.workers);
        let joined = tokio::time::timeout(timeout, all)
            .await
            .unwrap_or_else(|_| panic!("the webhook senders did not finish within {timeout:?}"));
        for worker in joined {
            worker.unwrap_or_else(|e| panic!("a webhook sender failed: {e}"));
        }
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert!(
            failures.is_empty(),
            "{} webhook requests were not accepted; the first ones:\n{}",
            failures.len(),
            failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        SendReport {
            accepted: self.accepted.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The independent Kafka client

/// Runs `tests/fixtures/produce.py` (confluent-kafka) with `args`, feeding it `stdin`; returns
/// its stdout, asserting it succeeded.
pub async fn python_client(args: Vec<String>, stdin: String) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/produce.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    if let Some(mut input) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        input
            .write_all(stdin.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("cannot write to produce.py: {e}"));
    }
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("produce.py {args:?} did not finish within 120 s"))
        .unwrap_or_else(|e| panic!("produce.py {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "produce.py {args:?} failed ({}); is `confluent-kafka` installed (pip install \
         confluent-kafka)?\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Per partition of `topic`: the committed offset of `group` (`None` when it has none) and the
/// high watermark, read with the independent client.
pub async fn committed_offsets(
    brokers: &str,
    topic: &str,
    group: &str,
) -> Vec<(i64, Option<i64>, i64)> {
    let out = python_client(
        vec![
            "offsets".into(),
            "--brokers".into(),
            brokers.to_owned(),
            "--topic".into(),
            topic.to_owned(),
            "--group".into(),
            group.to_owned(),
        ],
        String::new(),
    )
    .await;
    out.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("produce.py offsets printed {line:?}: {e}"));
            (
                v["partition"].as_i64().unwrap_or(-1),
                v["committed"].as_i64(),
                v["high"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// One record read by the independent client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
}

/// The first `count` records of `topic` (from the beginning, all partitions), read with the
/// independent client.
pub async fn read_topic(brokers: &str, topic: &str, count: usize) -> Vec<TopicRecord> {
    let out = python_client(
        vec![
            "consume".into(),
            "--brokers".into(),
            brokers.to_owned(),
            "--topic".into(),
            topic.to_owned(),
            "--count".into(),
            count.to_string(),
            "--timeout".into(),
            "90".into(),
        ],
        String::new(),
    )
    .await;
    out.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("produce.py consume printed {line:?}: {e}"));
            TopicRecord {
                partition: v["partition"].as_i64().unwrap_or(-1),
                offset: v["offset"].as_i64().unwrap_or(-1),
                key: v["key"].as_str().map(str::to_owned),
                value: v["value"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// A member that joins `group` on `topic`, waits for its assignment and leaves again without
/// reading or committing anything (the independent client): the group rebalances twice.
///
/// Works around another bug of Tansu 0.6.0's group coordinator: when a member of a group of two
/// dies, the survivor is told to rejoin once the dead one's session expired, but gets back only
/// the partitions it had, and the dead member's partitions are never consumed again. A member
/// coming and going makes the coordinator compute the assignment afresh, as Kafka would have.
pub async fn join_and_leave(brokers: &str, topic: &str, group: &str) {
    python_client(
        vec![
            "join".into(),
            "--brokers".into(),
            brokers.to_owned(),
            "--topic".into(),
            topic.to_owned(),
            "--group".into(),
            group.to_owned(),
            "--timeout".into(),
            "60".into(),
        ],
        String::new(),
    )
    .await;
}
