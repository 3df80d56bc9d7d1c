//! Harness of the multi-process Kafka tests: the production services (`inbox core`, `inbox
//! connectors`, `inbox web`) run as separate processes of the real binary against Apache Kafka (a
//! KRaft cluster of one or three nodes run from its jars) and a fresh PostgreSQL database, and the
//! tests crash and restart them.
//!
//! - [`Broker`]: Apache Kafka as `java` child processes in a temporary directory of its own, on
//!   free loopback ports: one node ([`Broker::start`]) or three combined broker+controller nodes
//!   ([`Broker::cluster`]); [`Broker::kill9`] / [`Broker::restart`] of the whole cluster and
//!   [`Broker::kill9_node`] / [`Broker::restart_node`] of one node by id (same directory, same
//!   ports, the data survives).
//! - [`Deployment`]: one test's database (created on the `INBOX_TEST_DATABASE_URL` server, dropped
//!   when the test passed), configuration file (`[kafka] partitions = 4`, fast `[delivery]`
//!   retries), schema and topics (`inbox migrate`), and an admin with an API token and a webhook
//!   channel created through the [`Store`] on that database.
//! - [`Service`]: `$INBOX_BIN <kind>` as a child process; [`Service::kill9`], [`Service::sigterm`],
//!   [`Service::restart`]. Output goes to a log file whose tail is printed when a test fails.
//! - [`Workload`] / [`send`]: many customers' signed webhook messages, POSTed concurrently.
//! - [`Deployment::assert_exactly_once`]: every message stored once, in its customer's single
//!   conversation, in `sent_at` order, with exactly one log event per message.
//! - [`python_client`] and its wrappers ([`read_topic`], [`committed_offsets`]):
//!   `tests/fixtures/produce.py`, an independent Kafka client (confluent-kafka).
//!
//! Needs `INBOX_BIN` (the built `inbox` binary), `INBOX_TEST_KAFKA_LIBS` (the jars of
//! `tests/services/kafka fetch`) and `java` (17 or later) on `PATH`; `tests/run` provides them.
//! `INBOX_KAFKA_HEAP` replaces each node's heap options (`-Xms256m -Xmx512m`). The services log at
//! `warn` (plus the Kafka bus's rebalance lines at `info`); `INBOX_E2E_LOG=<filter>` replaces that
//! filter. A failed test keeps the logs (the nodes' `server.log` included) and prints their tails.

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
use inbox_core::store::test_support::RawPool;
use inbox_core::store::{Store, StoreConfig};
use serde_json::json;
use sqlx::PgPool;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::PgDatabase;

/// Partitions of every topic `inbox migrate` creates in these tests.
pub const PARTITIONS: i32 = 4;

/// Environment variable naming the directory of the Apache Kafka jars (`tests/services/kafka
/// fetch`).
pub const KAFKA_LIBS_ENV: &str = "INBOX_TEST_KAFKA_LIBS";

/// Environment variable naming the built `inbox` binary.
pub const BIN_ENV: &str = "INBOX_BIN";

/// The consumers' `session.timeout.ms` (`inbox_core::bus::kafka`): how long the group coordinator
/// keeps a member that stopped heartbeating (e.g. after `kill -9`) before it rebalances the group
/// over the others.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

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

/// How long a Kafka node may take to serve after its JVM started (a restart after `kill -9` waits
/// for the old incarnation's `broker.session.timeout.ms` first).
const BROKER_STARTUP: Duration = Duration::from_secs(120);

/// The log line of a node that serves: `KafkaRaftServer` logs it once the broker is unfenced.
const STARTED_LINE: &str = "Kafka Server started";

/// The Log4j 2 configuration of every node: `${kafka.logs.dir}/server.log`, without the
/// configuration dumps of each client and server.
const LOG4J2: &str = "status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.config.name = org.apache.kafka.common.config
logger.config.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
";

/// The directory of the Apache Kafka jars (`INBOX_TEST_KAFKA_LIBS`).
fn kafka_libs() -> PathBuf {
    let libs = match std::env::var_os(KAFKA_LIBS_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{KAFKA_LIBS_ENV} is not set: the Kafka e2e tests run Apache Kafka from its jars. \
             `tests/run` sets it; to run the tests by hand, export \
             {KAFKA_LIBS_ENV}=$(tests/services/kafka fetch)"
        ),
    };
    let has_kafka = std::fs::read_dir(&libs)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("kafka_2.13-")
            })
        })
        .unwrap_or(false);
    assert!(
        has_kafka,
        "{KAFKA_LIBS_ENV}={} is not a directory holding kafka_2.13-*.jar (expected the output of \
         tests/services/kafka fetch)",
        libs.display()
    );
    libs
}

/// `count` distinct loopback ports nothing listens on right now.
fn free_ports(count: usize) -> Vec<u16> {
    // All bound at once, so that none is handed out twice.
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| {
            std::net::TcpListener::bind(("127.0.0.1", 0))
                .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
        })
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .unwrap_or_else(|e| panic!("a bound listener has an address: {e}"))
                .port()
        })
        .collect()
}

/// A fresh Kafka `Uuid` as Kafka prints it: 16 bytes in URL-safe base64 without padding (a
/// UUIDv7's leading timestamp never encodes to the `-` that would read as an option).
fn kafka_uuid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let (mut bits, mut held) = (0_u32, 0_u32);
    for byte in uuid::Uuid::now_v7().into_bytes() {
        bits = ((bits << 8) | u32::from(byte)) & 0x3fff;
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}

/// How many times a node's log says it serves.
fn started_lines(server_log: &Path) -> usize {
    std::fs::read(server_log)
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .matches(STARTED_LINE)
                .count()
        })
        .unwrap_or(0)
}

/// One node of a [`Broker`]: broker and KRaft controller in one JVM.
#[derive(Debug)]
struct Node {
    id: u32,
    /// The clients' listener.
    port: u16,
    /// The controllers' listener.
    controller_port: u16,
    /// `node-<id>`: `server.properties`, `data/`, `server.log` (Log4j), `java.log` (the JVM's
    /// stdout and stderr), `format.log`.
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn server_log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn java_log(&self) -> PathBuf {
        self.dir.join("java.log")
    }

    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// An Apache Kafka cluster in KRaft mode: one node, or three, each a combined broker and
/// controller run by `java -cp '<libs>/*' kafka.Kafka server.properties` as a child process from
/// the jars of `tests/services/kafka fetch` (`INBOX_TEST_KAFKA_LIBS`), with its data in a
/// temporary directory of its own and on free loopback ports. Nodes are killed when the broker is
/// dropped. The settings are those of `tests/services/kafka`; keep the two in step.
#[derive(Debug)]
pub struct Broker {
    libs: PathBuf,
    dir: TempDir,
    nodes: Vec<Node>,
}

impl Broker {
    /// Starts a single-node cluster and waits until it serves.
    pub async fn start() -> Broker {
        Broker::cluster(1).await
    }

    /// Starts a cluster of `nodes` (1 or 3) nodes, ids `1..=nodes`, and waits until every node
    /// serves. Internal topics get a replication factor of `nodes` (`min.insync.replicas` 2 on
    /// three nodes).
    pub async fn cluster(nodes: u32) -> Broker {
        assert!(
            nodes == 1 || nodes == 3,
            "a test cluster has 1 or 3 nodes, not {nodes}"
        );
        let libs = kafka_libs();
        let dir = tempfile::Builder::new()
            .prefix("inbox-e2e-broker-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the broker's directory: {e}"));
        let ports = free_ports(2 * nodes as usize);
        let nodes = (1..=nodes)
            .zip(ports.chunks(2))
            .map(|(id, ports)| Node {
                id,
                port: ports[0],
                controller_port: ports[1],
                dir: dir.path().join(format!("node-{id}")),
                child: None,
                starts: 0,
            })
            .collect();
        let mut broker = Broker { libs, dir, nodes };
        broker.format().await;
        let waiting = (0..broker.nodes.len())
            .map(|index| (index, broker.launch(index)))
            .collect();
        broker.wait_serving(waiting).await;
        broker
    }

    /// The bootstrap list, `127.0.0.1:p1[,127.0.0.1:p2,…]` (the same across restarts).
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(Node::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node ids, `1..=nodes`.
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// `127.0.0.1:<port>` of node `id`'s clients' listener.
    pub fn node_address(&self, id: u32) -> String {
        self.nodes[self.index(id)].address()
    }

    /// Whether node `id`'s process runs.
    pub fn is_running(&mut self, id: u32) -> bool {
        let index = self.index(id);
        self.nodes[index].is_running()
    }

    /// The directory holding `log4j2.properties` and each node's `node-<id>` directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `kill -9` of every node: the cluster stops at once, without flushing anything.
    pub fn kill9(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                kill_child(&mut child);
            }
        }
    }

    /// `kill -9` of node `id` alone.
    pub fn kill9_node(&mut self, id: u32) {
        let index = self.index(id);
        if let Some(mut child) = self.nodes[index].child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts every node again on its data and ports (after [`Broker::kill9`]), and waits until
    /// they serve.
    pub async fn restart(&mut self) {
        self.kill9();
        let waiting = (0..self.nodes.len())
            .map(|index| (index, self.launch(index)))
            .collect();
        self.wait_serving(waiting).await;
    }

    /// Starts node `id` again on its data and ports (killing it first if it runs), and waits until
    /// it serves.
    pub async fn restart_node(&mut self, id: u32) {
        self.kill9_node(id);
        let index = self.index(id);
        let before = self.launch(index);
        self.wait_serving(vec![(index, before)]).await;
    }

    fn index(&self, id: u32) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .unwrap_or_else(|| panic!("no node {id}; the nodes are {:?}", self.node_ids()))
    }

    fn classpath(&self) -> OsString {
        let mut classpath = self.libs.clone().into_os_string();
        // Java expands `dir/*` to the jars in dir.
        classpath.push("/*");
        classpath
    }

    /// Writes the configurations and formats every node's storage
    /// (`kafka.tools.StorageTool format`, one JVM per node, in parallel).
    async fn format(&self) {
        std::fs::write(self.dir.path().join("log4j2.properties"), LOG4J2)
            .unwrap_or_else(|e| panic!("cannot write log4j2.properties: {e}"));
        let cluster_id = kafka_uuid();
        let controllers = self
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "{}@127.0.0.1:{}:{}",
                    node.id,
                    node.controller_port,
                    kafka_uuid()
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut formatting = Vec::new();
        for node in &self.nodes {
            std::fs::create_dir_all(node.dir.join("data"))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", node.dir.display()));
            let config = node.dir.join("server.properties");
            std::fs::write(&config, self.server_properties(node))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            let quorum = if self.nodes.len() == 1 {
                vec!["--standalone".to_owned()]
            } else {
                vec!["--initial-controllers".to_owned(), controllers.clone()]
            };
            let log_path = node.dir.join("format.log");
            let log = open_log(&log_path);
            let stderr = log
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot share {}: {e}", log_path.display()));
            let child = Command::new("java")
                .arg("-cp")
                .arg(self.classpath())
                .args([
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    &cluster_id,
                ])
                .arg("--config")
                .arg(&config)
                .args(&quorum)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run java (Apache Kafka needs Java 17 or later on PATH): {e}")
                });
            formatting.push((log_path, child));
        }
        let finished = tokio::task::spawn_blocking(move || {
            formatting
                .into_iter()
                .map(|(log_path, mut child)| (log_path, child.wait()))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|e| panic!("formatting the storage did not finish: {e}"));
        for (log_path, status) in finished {
            let ok = status.as_ref().is_ok_and(ExitStatus::success);
            assert!(
                ok,
                "kafka.tools.StorageTool format failed ({status:?}); {}:\n{}",
                log_path.display(),
                tail(&log_path, TAIL_LINES)
            );
        }
    }

    /// `server.properties` of `node`; the same settings as `tests/services/kafka`.
    fn server_properties(&self, node: &Node) -> String {
        let nodes = self.nodes.len();
        let bootstrap = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let min_isr = if nodes > 1 { 2 } else { 1 };
        let (id, port, controller) = (node.id, node.port, node.controller_port);
        let listeners = format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}");
        let data = node.dir.join("data");
        let data = data.display();
        format!(
            "# Written by the e2e harness: node {id} of {nodes}, broker and controller.\n\
             process.roles=broker,controller\n\
             node.id={id}\n\
             controller.quorum.bootstrap.servers={bootstrap}\n\
             listeners={listeners}\n\
             advertised.listeners={listeners}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             log.dirs={data}\n\
             # The product creates its topics (inbox migrate), nothing else does.\n\
             auto.create.topics.enable=false\n\
             num.partitions=1\n\
             default.replication.factor={nodes}\n\
             offsets.topic.replication.factor={nodes}\n\
             offsets.topic.num.partitions=10\n\
             transaction.state.log.replication.factor={nodes}\n\
             transaction.state.log.min.isr={min_isr}\n\
             share.coordinator.state.topic.replication.factor={nodes}\n\
             share.coordinator.state.topic.min.isr={min_isr}\n\
             # A group's first member gets its partitions at once, not after 3 s.\n\
             group.initial.rebalance.delay.ms=0\n\
             # A killed node is fenced (its partitions led elsewhere, its restart\n\
             # registered) after 4 s, not 9 s.\n\
             broker.heartbeat.interval.ms=500\n\
             broker.session.timeout.ms=4000\n\
             # Two cores: few threads.\n\
             num.network.threads=2\n\
             num.io.threads=4\n\
             num.recovery.threads.per.data.dir=1\n\
             background.threads=4\n"
        )
    }

    /// Starts node `index`'s JVM; returns how many times its log said it serves before.
    fn launch(&mut self, index: usize) -> usize {
        let log4j = self.dir.path().join("log4j2.properties");
        let classpath = self.classpath();
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "node {} is already running", node.id);
        node.starts += 1;
        let before = started_lines(&node.server_log());
        let mut log = open_log(&node.java_log());
        let _ = writeln!(
            log,
            "==== e2e: node {} start #{} ====",
            node.id, node.starts
        );
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share the node's log: {e}"));
        let heap = std::env::var("INBOX_KAFKA_HEAP")
            .ok()
            .filter(|heap| !heap.trim().is_empty())
            .unwrap_or_else(|| "-Xms256m -Xmx512m".to_owned());
        let mut logs_dir = OsString::from("-Dkafka.logs.dir=");
        logs_dir.push(&node.dir);
        let mut log4j_config = OsString::from("-Dlog4j2.configurationFile=");
        log4j_config.push(&log4j);
        let child = Command::new("java")
            .args(heap.split_whitespace())
            .args([
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
            ])
            .arg(log4j_config)
            .arg(logs_dir)
            .arg("-cp")
            .arg(classpath)
            .arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"))
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run java (Apache Kafka needs Java 17 or later on PATH): {e}")
            });
        node.child = Some(child);
        before
    }

    /// Waits until each `(index, before)` node logged that it serves more than `before` times and
    /// accepts connections.
    async fn wait_serving(&mut self, mut waiting: Vec<(usize, usize)>) {
        let deadline = tokio::time::Instant::now() + BROKER_STARTUP;
        loop {
            let mut still = Vec::new();
            for (index, before) in waiting {
                let node = &mut self.nodes[index];
                if let Some(child) = node.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    node.child = None;
                    panic!(
                        "Kafka node {} exited at start ({status}); {}:\n{}\n{}:\n{}",
                        node.id,
                        node.java_log().display(),
                        tail(&node.java_log(), 20),
                        node.server_log().display(),
                        tail(&node.server_log(), TAIL_LINES)
                    );
                }
                let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
                let serving = started_lines(&node.server_log()) > before
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
                if !serving {
                    still.push((index, before));
                }
            }
            waiting = still;
            if waiting.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let logs: Vec<String> = waiting
                    .iter()
                    .map(|&(index, _)| {
                        let node = &self.nodes[index];
                        format!(
                            "node {} ({}):\n{}",
                            node.id,
                            node.server_log().display(),
                            tail(&node.server_log(), TAIL_LINES)
                        )
                    })
                    .collect();
                panic!(
                    "Kafka nodes did not serve within {BROKER_STARTUP:?}; {}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            for node in &self.nodes {
                eprintln!(
                    "---- e2e: tail of Kafka node {}'s log ({}, kept) ----\n{}\n---- end of the \
                     node's log ----",
                    node.id,
                    node.server_log().display(),
                    tail(&node.server_log(), 30)
                );
            }
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
        // On three nodes the topics are what production runs: one node may fail.
        let (replication_factor, min_insync_replicas) = if broker.node_ids().len() >= 3 {
            (3, 2)
        } else {
            (1, 1)
        };
        std::fs::write(
            &config,
            format!(
                "# Written by the e2e harness.\n\
                 database_max_connections = 8\n\
                 \n\
                 [kafka]\n\
                 brokers = \"{brokers}\"\n\
                 partitions = {PARTITIONS}\n\
                 replication_factor = {replication_factor}\n\
                 min_insync_replicas = {min_insync_replicas}\n\
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
                ChannelKind::WEBHOOK,
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
        match self.store.raw_pool() {
            RawPool::Postgres(pool) => pool,
            RawPool::Sqlite(_) => unreachable!("the Kafka tests run on PostgreSQL"),
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
    // A core runs one consumer per ingest worker, each logging its own assignment: the process
    // holds their sum. A restart (a new process in the same log) starts from nothing.
    let mut held: BTreeMap<String, u32> = BTreeMap::new();
    let mut totals = Vec::new();
    for line in log.lines() {
        if line.starts_with("==== e2e:") {
            held.clear();
            continue;
        }
        if !line.contains("Partitions assigned.") {
            continue;
        }
        let Some(count) = log_field(line, "partitions=").and_then(|v| v.parse().ok()) else {
            continue;
        };
        held.insert(log_field(line, "consumer=").unwrap_or_default(), count);
        totals.push(held.values().sum());
    }
    totals
}

/// The value of `name` (e.g. `partitions=`) in a log line, up to the next space.
fn log_field(line: &str, name: &str) -> Option<String> {
    let at = line.find(name)? + name.len();
    Some(
        line[at..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .filter(|c| !matches!(c, '"' | '\x1b'))
            .collect(),
    )
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
    /// How many of the items the workers may send (the rest wait for [`Sending::release`]).
    released: tokio::sync::watch::Sender<usize>,
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
    send_gated(url, items, concurrency, on_unavailable, usize::MAX)
}

/// Like [`send`], but only the first `released` items go until [`Sending::release`] lets more:
/// a test that must act while records are in flight keeps some back so the product cannot
/// finish before it.
pub fn send_gated(
    url: &str,
    items: Vec<WebhookItem>,
    concurrency: usize,
    on_unavailable: OnUnavailable,
    released: usize,
) -> Sending {
    let (released, gate) = tokio::sync::watch::channel(released);
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
            let mut gate = gate.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if gate.wait_for(|released| i < *released).await.is_err() {
                        break;
                    }
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
        released,
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
                // A refusal must tell the sender when to come back.
                if !response.headers().contains_key("retry-after") {
                    return Err(format!("{}: 503 without Retry-After", item.external_id));
                }
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
    /// Lets the workers send the first `upto` items (never fewer than before).
    pub fn release(&self, upto: usize) {
        self.released
            .send_modify(|released| *released = (*released).max(upto));
    }

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
        self.release(usize::MAX);
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
