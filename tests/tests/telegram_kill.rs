//! `kill -9` of `inbox run` between receiving Telegram updates and storing them: the built binary
//! (`INBOX_BIN`) polls the stand-in Bot API (`inbox_e2e::telegram`) for a batch whose photos
//! download slowly, is killed mid-batch, and started again. The offset was stored only after each
//! update was stored, so the updates received but not stored are asked for again: nothing is
//! lost, the at most one stored but not yet confirmed is recognised as a duplicate, and each
//! customer's messages keep their order.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use inbox_connectors::telegram::source::CURSOR;
use inbox_core::store::{Store, StoreConfig};
use inbox_e2e::telegram::{BotApiServer, text_message};
use inbox_e2e::wait_until;
use serde_json::json;

const TOKEN: &str = "7000000001:AAE-kill-test";
const CUSTOMERS: i64 = 12;
const PER_CUSTOMER: i64 = 10;
const WAIT: Duration = Duration::from_secs(60);

fn bin() -> std::ffi::OsString {
    std::env::var_os("INBOX_BIN")
        .filter(|p| !p.is_empty())
        .expect("INBOX_BIN: this test runs the built `inbox` binary (tests/run sets it)")
}

fn inbox(dir: &std::path::Path) -> Command {
    let mut command = Command::new(bin());
    command
        .arg("--data-dir")
        .arg(dir)
        .env_remove("INBOX_CONFIG")
        .env_remove("INBOX_KAFKA_BROKERS")
        .env_remove("INBOX_DATABASE_URL")
        .env("INBOX_LOG", "warn")
        .env("TG_TOKEN", TOKEN);
    command
}

/// `inbox channel add telegram` polling the stand-in; the new channel's id.
fn add_channel(dir: &std::path::Path, server: &BotApiServer) -> inbox_core::ids::ChannelId {
    let added = inbox(dir)
        .args([
            "channel",
            "add",
            "telegram",
            "--name",
            "Telegram",
            "--token-env",
            "TG_TOKEN",
        ])
        .args(["--api-url", &server.url, "--json"])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let channel: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    channel["id"].as_str().unwrap().parse().unwrap()
}

fn start(dir: &std::path::Path, log: &std::fs::File) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    inbox(dir)
        .arg("run")
        .env("INBOX_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .unwrap()
}

async fn stored(dir: &std::path::Path) -> Vec<(String, String)> {
    let store = Store::open(&StoreConfig::Sqlite {
        path: dir.join("inbox.db"),
    })
    .await
    .unwrap();
    let rows = match store.raw_pool() {
        inbox_core::store::test_support::RawPool::Sqlite(pool) => sqlx::query_as::<_, (String, String)>(
            "SELECT external_id, text FROM messages WHERE direction = 'inbound' ORDER BY ingest_seq",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        inbox_core::store::test_support::RawPool::Postgres(_) => unreachable!("embedded mode"),
    };
    store.close().await;
    rows
}

#[tokio::test]
async fn killed_between_receiving_and_storing_loses_and_repeats_nothing() {
    let server = BotApiServer::start(TOKEN).await;
    server.slow_downloads(Duration::from_millis(30));
    let total = CUSTOMERS * PER_CUSTOMER;
    for n in 0..total {
        let customer = 500 + n % CUSTOMERS;
        let file = server.add_file(&format!("photos/file_{n}.jpg"), b"jpeg");
        let mut message = text_message(1000 + n, (customer, "Customer", "c"), "");
        message.as_object_mut().unwrap().remove("text");
        message["caption"] = json!(format!("{customer}:{}", n / CUSTOMERS));
        message["photo"] = json!([{
            "file_id": file, "file_unique_id": format!("AQAD{n}"), "file_size": 4,
            "width": 10, "height": 10
        }]);
        server.push("message", message);
    }
    let dir = tempfile::tempdir().unwrap();
    let channel_id = add_channel(dir.path(), &server);
    let log = std::fs::File::create(dir.path().join("inbox.log")).unwrap();

    // Killed while a batch of 100 is being stored, a third of the way in.
    let mut first = start(dir.path(), &log);
    wait_until(WAIT, "a third of the batch stored", async || {
        server.calls("getFile").len() >= 35
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = stored(dir.path()).await;
    let delivered = server.highest_delivered();
    let first_id = delivered - 99;
    assert!(
        !at_kill.is_empty() && (at_kill.len() as i64) < delivered - first_id + 1,
        "killed between receiving and storing: {} stored of {} received",
        at_kill.len(),
        delivered - first_id + 1
    );
    let store = Store::open(&StoreConfig::Sqlite {
        path: dir.path().join("inbox.db"),
    })
    .await
    .unwrap();
    let offset: i64 = store
        .cursor(channel_id, CURSOR)
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    store.close().await;
    // The offset never passes an update that is not stored.
    let confirmed = offset - first_id;
    assert!(
        confirmed <= at_kill.len() as i64,
        "offset {offset} past what was stored"
    );
    let repeated = at_kill.len() as i64 - confirmed;
    assert!(
        (0..=1).contains(&repeated),
        "{repeated} stored but not confirmed"
    );

    let mut second = start(dir.path(), &log);
    wait_until(WAIT, "every update stored after the restart", async || {
        stored(dir.path()).await.len() as i64 >= total && server.pending() == 0
    })
    .await;
    // The restart asked again from the stored offset.
    let asked: Vec<i64> = server
        .calls("getUpdates")
        .iter()
        .filter_map(|c| c.params["offset"].as_i64())
        .collect();
    assert!(asked.contains(&offset), "{asked:?}");
    second.kill().unwrap();
    second.wait().unwrap();

    let rows = stored(dir.path()).await;
    assert_eq!(rows.len() as i64, total, "none lost, none twice");
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as i64, total);
    // Each customer's messages in the order sent.
    for customer in 500..500 + CUSTOMERS {
        let order: Vec<i64> = rows
            .iter()
            .filter_map(|(_, text)| text.strip_prefix(&format!("{customer}:")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..PER_CUSTOMER).collect::<Vec<_>>(),
            "customer {customer}"
        );
    }
}

/// `inbox channel sync` reads what Telegram holds above the offset, once: a second sync reads
/// nothing, and the running source would go on from the same offset.
// The CLI runs blocking (`output()`): the stand-in answers from the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reads_the_pending_updates_once() {
    let server = BotApiServer::start(TOKEN).await;
    for n in 0..5 {
        server.push(
            "message",
            text_message(10 + n, (600, "Dee", "dee"), &format!("m{n}")),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let channel_id = add_channel(dir.path(), &server);
    let id = channel_id.to_string();
    let id = id.as_str();
    let sync = || {
        let out = inbox(dir.path())
            .args(["channel", "sync", id, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = sync();
    assert_eq!(first["fetched"], 5, "{first}");
    let second = sync();
    assert_eq!(second["fetched"], 0, "{second}");
    assert_eq!(second["offset"], first["offset"]);
    let rows = stored(dir.path()).await;
    let texts: Vec<&str> = rows.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
}
