//! `inbox channel sync`: the real binary (`INBOX_BIN`) reads a Dovecot mailbox in the foreground
//! (`tests/services/mail`), stores every mail once, exits 0, stores nothing more when run again,
//! and leaves the cursor the server continues from.
//!
//! Needs `INBOX_BIN` (`cargo build --bin inbox`, then `INBOX_BIN=$CARGO_TARGET_DIR/debug/inbox`;
//! `tests/run` sets it) and, for the PostgreSQL case, the test server of `INBOX_TEST_DATABASE_URL`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use chrono::Utc;
use inbox_app::Config;
use inbox_core::ids::ChannelId;
use inbox_core::store::Store;
use inbox_core::store::test_support::ScratchDatabase;
use inbox_e2e::mail::MailServer;
use inbox_e2e::{Backend, both_backends, postgres_server_url, wait_until};
use serde_json::Value;

both_backends!(sync_reads_the_mailbox_once);

/// Mails in the mailbox before the first sync, in the backfill window.
const MAILS: usize = 12;
/// Mails older than the window, moved into the mailbox after the others (higher UIDs).
const OLD_MAILS: usize = 3;
const WAIT: Duration = Duration::from_secs(30);
const PASSWORD_VAR: &str = "INBOX_TEST_MAIL_PASSWORD";

fn inbox_bin() -> PathBuf {
    let path = std::env::var_os("INBOX_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect(
            "INBOX_BIN is not set: this test runs the built `inbox` binary (cargo build --bin \
             inbox; then INBOX_BIN=$CARGO_TARGET_DIR/debug/inbox; tests/run sets it)",
        );
    assert!(path.is_file(), "INBOX_BIN={} is not a file", path.display());
    path
}

/// Where the binary and the in-process server keep their data.
struct Data {
    dir: tempfile::TempDir,
    database: Option<ScratchDatabase>,
}

impl Data {
    async fn create(backend: Backend) -> Data {
        let dir = tempfile::Builder::new()
            .prefix("inbox-e2e-sync-")
            .tempdir()
            .unwrap();
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                ScratchDatabase::create(&postgres_server_url(), "inbox_e2e")
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        };
        Data { dir, database }
    }

    fn database_url(&self) -> Option<String> {
        self.database.as_ref().map(|db| db.url().to_owned())
    }

    fn config(&self) -> Config {
        Config {
            data_dir: self.dir.path().to_path_buf(),
            listen: ([127, 0, 0, 1], 0).into(),
            database_url: self.database_url(),
            database_max_connections: 5,
            ..Config::default()
        }
    }

    async fn store(&self) -> Store {
        Store::open(&self.config().store()).await.unwrap()
    }

    /// Runs `inbox --data-dir <dir> <args>` on this data; returns its output.
    fn inbox(&self, args: &[&str]) -> Output {
        self.command(args)
            .as_std_mut()
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", inbox_bin().display()))
    }

    /// `inbox --data-dir <dir> <args>` on this data, with the mailbox password in its environment.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(inbox_bin());
        command
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("INBOX_CONFIG")
            .env_remove("INBOX_KAFKA_BROKERS")
            .env_remove("INBOX_DATABASE_URL")
            .env(PASSWORD_VAR, "secret")
            .env("INBOX_LOG", "warn");
        if let Some(url) = self.database_url() {
            command.env("INBOX_DATABASE_URL", url);
        }
        command
    }

    /// Runs the binary, asserts exit status 0 and returns its stdout as JSON.
    fn inbox_json(&self, args: &[&str]) -> Value {
        let output = self.inbox(args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "inbox {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("inbox {args:?} printed no JSON ({e}): {stdout}"))
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let Some(db) = self.database.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!(
                "e2e: test failed; database {} kept for inspection",
                db.name()
            );
            return;
        }
        if let Err(e) = db.drop_from_any_thread() {
            eprintln!("e2e: cannot drop database {}: {e}", db.name());
        }
    }
}

async fn deliver(server: &MailServer, n: usize) {
    let raw = format!(
        "From: Customer {n} <customer@example.test>\r\nTo: support@example.test\r\n\
         Subject: Question {n}\r\nMessage-ID: <sync-{n}@customer.example.test>\r\nDate: {}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nQuestion number {n}.\r\n",
        Utc::now().to_rfc2822()
    );
    server
        .send_raw(
            Some("customer@example.test"),
            &["support@example.test"],
            raw.as_bytes(),
        )
        .await;
}

async fn total(data: &Data) -> i64 {
    let store = data.store().await;
    let total = store.message_total().await.unwrap();
    store.close().await;
    total
}

async fn sync_reads_the_mailbox_once(backend: Backend) {
    let server = MailServer::start();
    for n in 1..=MAILS {
        deliver(&server, n).await;
    }
    // Old mail moved in by a client afterwards: above the others by UID, outside the window by
    // date. Neither the sync nor the server after it reads it.
    let mut imap = server.imap("support").await;
    for n in 1..=OLD_MAILS {
        let raw = format!(
            "From: customer@example.test\r\nTo: support@example.test\r\nSubject: Old {n}\r\n\
             Message-ID: <old-{n}@customer.example.test>\r\nDate: Wed, 1 Jan 2020 10:00:00 +0000\r\n\
             \r\nFrom long ago.\r\n"
        );
        imap.append("INBOX", "01-Jan-2020 10:00:00 +0000", raw.as_bytes())
            .await;
    }
    imap.logout().await;
    let data = Data::create(backend).await;
    let imap_port = server.imap_port.to_string();
    let smtp_port = server.smtp_port.to_string();
    let created = data.inbox_json(&[
        "channel",
        "add",
        "email",
        "--address",
        "support@example.test",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        &imap_port,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &smtp_port,
        "--username",
        "support",
        "--password-env",
        PASSWORD_VAR,
        "--plain",
        "--json",
    ]);
    let channel = created["id"].as_str().unwrap().to_owned();
    let channel_id: ChannelId = channel.parse().unwrap();

    // The first sync reads the backfill window: every mail, stored once.
    let first = data.inbox_json(&["channel", "sync", &channel, "--since", "7d", "--json"]);
    assert_eq!(first["total"], MAILS, "{first}");
    assert_eq!(first["fetched"], MAILS, "{first}");
    assert_eq!(first["backfill"], true, "{first}");
    assert_eq!(total(&data).await, MAILS as i64);
    // The cursor is the one the source keeps: past the last mail, the old ones included.
    assert_eq!(first["uid"], MAILS + OLD_MAILS, "{first}");
    let store = data.store().await;
    let cursor = store.cursor(channel_id, "imap").await.unwrap();
    store.close().await;
    assert_eq!(
        cursor,
        Some(format!("{}:{}", first["uid_validity"], first["uid"])),
        "{first}"
    );

    // Again: nothing new to read, nothing stored twice.
    let second = data.inbox_json(&["channel", "sync", &channel, "--json"]);
    assert_eq!(second["total"], 0, "{second}");
    assert_eq!(second["fetched"], 0, "{second}");
    assert_eq!(second["backfill"], false, "{second}");
    assert_eq!(second["uid"], first["uid"], "{second}");
    assert_eq!(total(&data).await, MAILS as i64);

    // The human output names what it did.
    deliver(&server, MAILS + 1).await;
    let output = data.inbox(&["channel", "sync", &channel]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("Read 1 of 1 messages of support@example.test"),
        "{text}"
    );
    assert_eq!(total(&data).await, MAILS as i64 + 1);

    // The server (`inbox run`) continues from the cursor: only the next mail is new to it.
    let mut running = data
        .command(&["run", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("inbox run starts");
    deliver(&server, MAILS + 2).await;
    let store = data.store().await;
    let last_uid = first["uid"].as_u64().unwrap() + 2;
    wait_until(
        WAIT,
        "the server to move the cursor past the next mail",
        async || {
            store.cursor(channel_id, "imap").await.unwrap()
                == Some(format!("{}:{last_uid}", first["uid_validity"]))
        },
    )
    .await;
    let pid = running.id().expect("inbox run is running");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stopped = tokio::time::timeout(WAIT, running.wait())
        .await
        .expect("inbox run stops on SIGTERM")
        .unwrap();
    assert!(stopped.success(), "inbox run: {stopped}");
    assert_eq!(store.message_total().await.unwrap(), MAILS as i64 + 2);
    store.close().await;
}

#[tokio::test]
async fn sync_refuses_what_it_cannot_read() {
    let data = Data::create(Backend::Sqlite).await;
    let created = data.inbox_json(&["channel", "add", "webhook", "--name", "Shop", "--json"]);
    let webhook = created["id"].as_str().unwrap();
    let output = data.inbox(&["channel", "sync", webhook]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("only email, telegram and mastodon channels have a source to sync"),
        "{stderr}"
    );

    // A mailbox that does not answer: the error, a failure status, no cursor.
    let nobody = inbox_e2e::kafka::free_port().to_string();
    let created = data.inbox_json(&[
        "channel",
        "add",
        "email",
        "--address",
        "support@example.test",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        &nobody,
        "--smtp-host",
        "127.0.0.1",
        "--password-env",
        PASSWORD_VAR,
        "--plain",
        "--json",
    ]);
    let email = created["id"].as_str().unwrap();
    let output = data.inbox(&["channel", "sync", email]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("IMAP 127.0.0.1:{nobody}")),
        "{stderr}"
    );
    let store = data.store().await;
    assert_eq!(
        store.cursor(email.parse().unwrap(), "imap").await.unwrap(),
        None
    );
    store.close().await;
}
