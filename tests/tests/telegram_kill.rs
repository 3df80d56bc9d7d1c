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

use std::process::Child;
use std::time::Duration;

use inbox_connectors::telegram::source::CURSOR;
use inbox_e2e::telegram::{BotApiServer, text_message};
use inbox_e2e::{embedded, wait_until};
use serde_json::json;

const TOKEN: &str = "7000000001:AAE-kill-test";
const CUSTOMERS: i64 = 12;
const PER_CUSTOMER: i64 = 10;
const WAIT: Duration = Duration::from_secs(60);

const ENVS: [(&str, &str); 1] = [("TG_TOKEN", TOKEN)];

fn inbox(dir: &std::path::Path) -> std::process::Command {
    embedded::command(dir, &ENVS)
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
    embedded::run(dir, &ENVS, log)
}

async fn stored(dir: &std::path::Path) -> Vec<(String, String)> {
    embedded::inbound(dir).await
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
    let offset: i64 = embedded::cursor(dir.path(), channel_id, CURSOR)
        .await
        .unwrap()
        .parse()
        .unwrap();
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
