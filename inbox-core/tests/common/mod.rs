//! Shared fixtures of the Store contract tests: a fresh database per test on either backend, and
//! builders for the records the ingest funnel takes.
//!
//! PostgreSQL tests use the server named by `INBOX_TEST_DATABASE_URL` (default
//! [`DEFAULT_POSTGRES_URL`]) and create a database of their own on it. They never skip: an
//! unreachable server fails them with a message saying which URL was tried.

#![allow(dead_code)] // Not every test file uses every helper.

use std::time::Duration;

use chrono::{DateTime, Utc};
use inbox_core::actions;
use inbox_core::envelope::{Body, ChannelKind, InboundEvent, InboundMessage, Party};
use inbox_core::ids::{ConversationId, MessageId};
use inbox_core::ingest::{self, InboundRecord, IngestReport, IngestSettings, Outcome};
use inbox_core::model::{
    Agent, Channel, Conversation, ConversationStatus, Message, Role, ThreadReason, from_millis,
    to_millis,
};
use inbox_core::store::{ConversationPatch, Store, StoreConfig};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

/// The server used when `INBOX_TEST_DATABASE_URL` is not set (exists on dev machines and in CI).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_server_url() -> String {
    match std::env::var("INBOX_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => DEFAULT_POSTGRES_URL.to_owned(),
    }
}

/// `url` with its database name replaced by `database` (query parameters are kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// One test's database, able to open (and reopen) a [`Store`] on it.
#[derive(Debug)]
pub enum TestDb {
    Sqlite {
        /// Holds the file; removed when the test ends.
        dir: TempDir,
    },
    Postgres {
        server_url: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory for the SQLite store");
        TestDb::Sqlite { dir }
    }

    /// A new, empty database `inbox_test_<uuid>` on the test PostgreSQL server.
    pub async fn postgres() -> Self {
        let server_url = postgres_server_url();
        let name = format!("inbox_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = connect_server(&server_url).await;
        sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {server_url} failed: {e}"));
        let _ = conn.close().await;
        let url = with_database(&server_url, &name);
        TestDb::Postgres {
            server_url,
            name,
            url,
        }
    }

    pub fn config(&self) -> StoreConfig {
        match self {
            TestDb::Sqlite { dir } => StoreConfig::Sqlite {
                path: dir.path().join("inbox.db"),
            },
            TestDb::Postgres { url, .. } => StoreConfig::Postgres {
                url: url.clone(),
                // Tests run in parallel against one server: keep each one's share small.
                max_connections: 4,
            },
        }
    }

    /// Opens a Store on this database, applying migrations (again, after a reopen).
    pub async fn open(&self) -> Store {
        let config = self.config();
        Store::open(&config)
            .await
            .unwrap_or_else(|e| panic!("Store::open({config:?}) failed: {e}"))
    }

    /// Drops a PostgreSQL test database (called when a test passed; a failed test's database is
    /// left for inspection). SQLite files go with their temporary directory.
    pub async fn cleanup(self) {
        if let TestDb::Postgres {
            server_url, name, ..
        } = self
        {
            let mut conn = connect_server(&server_url).await;
            sqlx::query(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {name} on {server_url} failed: {e}"));
            let _ = conn.close().await;
        }
    }
}

async fn connect_server(url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL tests need a server: cannot connect to {url}: {e}. Start PostgreSQL or set \
             INBOX_TEST_DATABASE_URL to a server URL (postgres://user@host:port/postgres)."
        ),
        Err(_) => panic!(
            "PostgreSQL tests need a server: connecting to {url} timed out. Start PostgreSQL or \
             set INBOX_TEST_DATABASE_URL to a server URL (postgres://user@host:port/postgres)."
        ),
    }
}

/// A Store on a new SQLite file; keep the directory alive as long as the Store.
pub async fn sqlite_store() -> (Store, TempDir) {
    let db = TestDb::sqlite();
    let store = db.open().await;
    match db {
        TestDb::Sqlite { dir } => (store, dir),
        TestDb::Postgres { .. } => unreachable!(),
    }
}

/// A Store on a new database of the test PostgreSQL server. The database is kept afterwards;
/// `contract!` tests use [`TestDb`], which drops it when the test passed.
pub async fn postgres_store() -> Store {
    TestDb::postgres().await.open().await
}

/// Generates, for one contract test, a module with a `sqlite` and a `postgres` test running the
/// same body. Forms: `contract!(name, |store| async move { .. })` and
/// `contract!(name, |store, db| async move { .. })` where `db: &TestDb` can reopen the database.
#[macro_export]
macro_rules! contract {
    ($name:ident, |$store:ident| $body:expr) => {
        $crate::contract!($name, |$store, _db| $body);
    };
    ($name:ident, |$store:ident, $db:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(unused_variables)]
            async fn contract($store: ::inbox_core::store::Store, $db: &$crate::common::TestDb) {
                $body.await
            }

            async fn run(db: $crate::common::TestDb, backend: &str) {
                let store = db.open().await;
                assert_eq!(store.backend(), backend);
                contract(store.clone(), &db).await;
                store.close().await;
                db.cleanup().await;
            }

            #[tokio::test]
            async fn sqlite() {
                run($crate::common::TestDb::sqlite(), "sqlite").await;
            }

            #[tokio::test]
            async fn postgres() {
                run($crate::common::TestDb::postgres().await, "postgres").await;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Builders.

/// Now, truncated to the millisecond the store keeps, so stored times compare equal.
pub fn now_ms() -> DateTime<Utc> {
    from_millis(to_millis(Utc::now()))
}

/// `base` plus `seconds`.
pub fn secs(base: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    base + chrono::Duration::seconds(seconds)
}

/// A webhook channel as the brief of the suite creates it.
pub async fn webhook_channel(store: &Store) -> Channel {
    store
        .create_channel(ChannelKind::WEBHOOK, "test", json!({}), "secret")
        .await
        .expect("create a webhook channel")
}

/// A customer message on `channel`, sent now, from `handle` named "Customer <handle>".
pub fn inbound(channel: &Channel, external_id: &str, handle: &str, text: &str) -> InboundMessage {
    let now = now_ms();
    InboundMessage {
        id: MessageId::new(),
        channel_id: channel.id,
        channel_kind: channel.kind,
        external_id: external_id.to_owned(),
        thread: Default::default(),
        from: Party {
            handle: handle.to_owned(),
            name: Some(format!("Customer {handle}")),
            email: None,
            phone: None,
        },
        to: Vec::new(),
        sent_at: Some(now),
        received_at: now,
        body: Body {
            text: text.to_owned(),
            html: None,
        },
        attachments: Vec::new(),
        raw: None,
        automated: None,
    }
}

/// The same message sent at `at`.
pub fn sent(mut m: InboundMessage, at: DateTime<Utc>) -> InboundMessage {
    m.sent_at = Some(at);
    m
}

pub fn record(m: &InboundMessage) -> InboundRecord {
    InboundRecord::Event(InboundEvent::Message(m.clone()))
}

/// Ingests a batch with default settings.
pub async fn ingest_batch(store: &Store, records: &[InboundRecord]) -> IngestReport {
    ingest_batch_with(store, records, &IngestSettings::default()).await
}

pub async fn ingest_batch_with(
    store: &Store,
    records: &[InboundRecord],
    settings: &IngestSettings,
) -> IngestReport {
    let report = ingest::ingest(store, records, settings)
        .await
        .expect("ingest a batch");
    assert_eq!(
        report.outcomes.len(),
        records.len(),
        "one outcome per record"
    );
    report
}

/// Ingests one message with default settings and returns its outcome.
pub async fn ingest_one(store: &Store, m: &InboundMessage) -> Outcome {
    ingest_one_with(store, m, &IngestSettings::default()).await
}

pub async fn ingest_one_with(
    store: &Store,
    m: &InboundMessage,
    settings: &IngestSettings,
) -> Outcome {
    ingest_batch_with(store, &[record(m)], settings)
        .await
        .outcomes
        .remove(0)
}

/// Settings whose chat reopen window is 1 ms: a message sent later than that after a resolution
/// opens a new conversation.
pub fn short_reopen_window() -> IngestSettings {
    let mut settings = IngestSettings::default();
    settings.threading.chat_reopen_window = Duration::from_millis(1);
    settings
}

/// The (message, conversation, reason) of a stored outcome; panics on any other outcome.
#[track_caller]
pub fn stored(outcome: &Outcome) -> (MessageId, ConversationId, ThreadReason) {
    match outcome {
        Outcome::Stored {
            message_id,
            conversation_id,
            reason,
        } => (*message_id, *conversation_id, *reason),
        other => panic!("expected Outcome::Stored, got {other:?}"),
    }
}

/// The error of a dead-lettered outcome; panics on any other outcome.
#[track_caller]
pub fn dead_lettered(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::DeadLettered { error } => error,
        other => panic!("expected Outcome::DeadLettered, got {other:?}"),
    }
}

pub async fn conversation(store: &Store, id: ConversationId) -> Conversation {
    store
        .conversation(id)
        .await
        .expect("read a conversation")
        .unwrap_or_else(|| panic!("conversation {id} exists"))
}

pub async fn message(store: &Store, id: MessageId) -> Message {
    store
        .message(id)
        .await
        .expect("read a message")
        .unwrap_or_else(|| panic!("message {id} exists"))
}

/// A conversation's whole history, oldest first.
pub async fn history(store: &Store, id: ConversationId) -> Vec<Message> {
    let page = store.messages(id, None, 500).await.expect("read messages");
    assert_eq!(page.next_before, None, "history fits one page");
    page.items
}

/// The kinds of a conversation's log rows, oldest first.
pub async fn event_kinds(store: &Store, id: ConversationId) -> Vec<String> {
    store
        .conversation_events(id)
        .await
        .expect("read conversation events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

pub async fn new_agent(store: &Store, email: &str) -> Agent {
    store
        .create_agent(email, "Agent Smith", Role::Agent, None)
        .await
        .expect("create an agent")
}

/// Applies a status change by `agent`.
pub async fn set_status(
    store: &Store,
    id: ConversationId,
    agent: &Agent,
    status: ConversationStatus,
) {
    actions::update_conversation(
        store,
        id,
        agent,
        &ConversationPatch {
            status: Some(status),
            ..ConversationPatch::default()
        },
    )
    .await
    .expect("update the conversation status");
}
