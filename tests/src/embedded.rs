//! The built `inbox` binary (`INBOX_BIN`) in embedded mode — SQLite and the in-process bus in a
//! data dir — for the tests that kill it with `kill -9` and start it again, and read what it
//! stored from its database between runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use inbox_core::ids::ChannelId;
use inbox_core::store::test_support::RawPool;
use inbox_core::store::{Store, StoreConfig};

/// The binary under test.
pub fn bin() -> std::ffi::OsString {
    std::env::var_os(crate::kafka::BIN_ENV)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            panic!("INBOX_BIN: this test runs the built `inbox` binary (tests/run sets it)")
        })
}

/// `inbox --data-dir DIR …`, with nothing of the caller's configuration (no config file, no
/// Kafka, no PostgreSQL) and `envs` set.
pub fn command(dir: &Path, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin());
    command
        .arg("--data-dir")
        .arg(dir)
        .env_remove("INBOX_CONFIG")
        .env_remove("INBOX_KAFKA_BROKERS")
        .env_remove("INBOX_DATABASE_URL")
        .env("INBOX_LOG", "warn")
        .envs(envs.iter().copied());
    command
}

/// `inbox run` on a free loopback port, its log appended to `log`.
pub fn run(dir: &Path, envs: &[(&str, &str)], log: &std::fs::File) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"));
    command(dir, envs)
        .arg("run")
        .env("INBOX_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(
            log.try_clone()
                .unwrap_or_else(|e| panic!("the log file: {e}")),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("inbox run does not start: {e}"))
}

async fn open(dir: &Path) -> Store {
    Store::open(&StoreConfig::Sqlite {
        path: dir.join("inbox.db"),
    })
    .await
    .unwrap_or_else(|e| panic!("the data dir's store: {e}"))
}

/// The customer messages stored: (external id, text), in arrival order.
pub async fn inbound(dir: &Path) -> Vec<(String, String)> {
    let store = open(dir).await;
    let rows = match store.raw_pool() {
        RawPool::Sqlite(pool) => sqlx::query_as::<_, (String, String)>(
            "SELECT external_id, text FROM messages WHERE direction = 'inbound' ORDER BY ingest_seq",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("reading the messages: {e}")),
        RawPool::Postgres(_) => unreachable!("embedded mode"),
    };
    store.close().await;
    rows
}

/// A source's stored cursor.
pub async fn cursor(dir: &Path, channel: ChannelId, name: &str) -> Option<String> {
    let store = open(dir).await;
    let cursor = store
        .cursor(channel, name)
        .await
        .unwrap_or_else(|e| panic!("reading the cursor: {e}"));
    store.close().await;
    cursor
}
