//! `kill -9` of `inbox run` in the middle of reading 120 mentions from the stand-in instance
//! (`inbox_e2e::mastodon`): the built binary (`INBOX_BIN`) follows the stream, reads the
//! notifications page by page (each page answered slowly) and is killed between two pages; started
//! again, it reads on from the stored cursor. The cursor was stored only after each notification
//! was stored, so nothing is lost, nothing is stored twice, and each customer's messages keep
//! their order. `inbox channel sync` reads what is waiting once.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::process::Child;
use std::time::Duration;

use inbox_connectors::mastodon::source::CURSOR;
use inbox_e2e::mastodon::MastodonServer;
use inbox_e2e::{embedded, wait_until};

const CUSTOMERS: usize = 4;
const TOTAL: usize = 120;
const WAIT: Duration = Duration::from_secs(90);

fn envs(server: &MastodonServer) -> [(&'static str, &str); 1] {
    [("MASTODON_TOKEN", server.token.as_str())]
}

/// `inbox channel add mastodon` on the stand-in; the new channel's id.
fn add_channel(dir: &std::path::Path, server: &MastodonServer) -> inbox_core::ids::ChannelId {
    let added = embedded::command(dir, &envs(server))
        .args(["channel", "add", "mastodon", "--name", "Mastodon"])
        .args([
            "--instance-url",
            &server.url,
            "--token-env",
            "MASTODON_TOKEN",
        ])
        .arg("--json")
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

fn start(dir: &std::path::Path, server: &MastodonServer, log: &std::fs::File) -> Child {
    embedded::run(dir, &envs(server), log)
}

async fn stored(dir: &std::path::Path) -> Vec<(String, String)> {
    embedded::inbound(dir).await
}

async fn cursor(dir: &std::path::Path, channel: inbox_core::ids::ChannelId) -> Option<String> {
    embedded::cursor(dir, channel, CURSOR).await
}

// The CLI runs blocking (`output()`): the stand-in answers from the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sync_loses_and_repeats_nothing() {
    let server = MastodonServer::start().await;
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|n| server.customer(&format!("c{n}"), &format!("Customer {n}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let channel = add_channel(dir.path(), &server);
    let log = std::fs::File::create(dir.path().join("inbox.log")).unwrap();

    // Running and streaming, with nothing to read yet.
    let mut first = start(dir.path(), &server, &log);
    wait_until(WAIT, "the stream open", async || server.streams() > 0).await;
    wait_until(WAIT, "the first read done", async || {
        cursor(dir.path(), channel).await.is_some()
    })
    .await;

    // 120 mentions arrive; each page of 40 is answered slowly: killed after the first page.
    server.set_notifications_delay(Duration::from_millis(1500));
    let mut statuses = Vec::new();
    for n in 0..TOTAL {
        statuses.push(server.mention(
            &customers[n % CUSTOMERS],
            &format!("{}:{}", n % CUSTOMERS, n / CUSTOMERS),
            "direct",
            None,
        ));
    }
    wait_until(WAIT, "a first page stored", async || {
        stored(dir.path()).await.len() >= 40
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let at_kill = stored(dir.path()).await;
    assert!(
        at_kill.len() < TOTAL,
        "killed mid-sync: {} of {TOTAL} stored",
        at_kill.len()
    );
    // The cursor never passes a notification whose status is not stored: every status of a
    // notification at or below it is there.
    let at = cursor(dir.path(), channel).await.unwrap();
    let confirmed = server.statuses_notified_up_to(&at);
    let stored_ids: std::collections::HashSet<&str> =
        at_kill.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        confirmed.iter().all(|id| stored_ids.contains(id.as_str())),
        "cursor {at} past what was stored"
    );

    server.set_notifications_delay(Duration::ZERO);
    let mut second = start(dir.path(), &server, &log);
    wait_until(WAIT, "every mention stored after the restart", async || {
        stored(dir.path()).await.len() >= TOTAL
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    let rows = stored(dir.path()).await;
    assert_eq!(rows.len(), TOTAL, "none lost, none twice");
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), TOTAL);
    let mut expected = statuses.clone();
    expected.sort_unstable();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    // Each customer's messages in the order written.
    for customer in 0..CUSTOMERS {
        let order: Vec<usize> = rows
            .iter()
            .filter_map(|(_, text)| text.strip_prefix(&format!("{customer}:")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..TOTAL / CUSTOMERS).collect::<Vec<_>>(),
            "customer {customer}"
        );
    }
}

/// `inbox channel sync` reads the mentions waiting above the cursor, once: a second sync reads
/// nothing, and the running source would go on from the same cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reads_the_waiting_mentions_once() {
    let server = MastodonServer::start().await;
    let dee = server.customer("dee", "Dee");
    for n in 0..5 {
        server.mention(&dee, &format!("m{n}"), "direct", None);
    }
    let dir = tempfile::tempdir().unwrap();
    let channel = add_channel(dir.path(), &server);
    let id = channel.to_string();
    let sync = || {
        let out = embedded::command(dir.path(), &envs(&server))
            .args(["channel", "sync", &id, "--json"])
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
    let rows = stored(dir.path()).await;
    let texts: Vec<&str> = rows.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(
        cursor(dir.path(), channel)
            .await
            .is_some_and(|c| !c.is_empty())
    );
}
