//! Shared fixtures of the Store contract tests: a fresh database per test on either backend, and
//! builders for the records the ingest funnel takes.
//!
//! PostgreSQL tests use the server named by `INBOX_TEST_DATABASE_URL` (default
//! [`inbox_core::store::test_support::DEFAULT_TEST_SERVER`]) and create a database of their own on it. They never skip: an
//! unreachable server fails them with a message saying which URL was tried.

#![allow(dead_code)] // Not every test file uses every helper.

use std::time::Duration;

use chrono::{DateTime, Utc};
use inbox_core::actions;
use inbox_core::envelope::{ChannelKind, InboundEvent, InboundMessage};
use inbox_core::ids::{ConversationId, MessageId};
use inbox_core::ingest::{self, InboundRecord, IngestReport, IngestSettings, Outcome};
use inbox_core::model::{
    Agent, Channel, Conversation, ConversationStatus, Message, Role, ThreadReason, from_millis,
    to_millis,
};
use inbox_core::store::test_support::ScratchDatabase;
use inbox_core::store::{ConversationPatch, Store, StoreConfig};
use serde_json::json;
use tempfile::TempDir;

pub use inbox_core::store::test_support::test_server_url as postgres_server_url;

/// One test's database, able to open (and reopen) a [`Store`] on it.
#[derive(Debug)]
pub enum TestDb {
    Sqlite {
        /// Holds the file; removed when the test ends.
        dir: TempDir,
    },
    Postgres(ScratchDatabase),
}

impl TestDb {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory for the SQLite store");
        TestDb::Sqlite { dir }
    }

    /// A new, empty database `inbox_test_<uuid>` on the test PostgreSQL server.
    pub async fn postgres() -> Self {
        let scratch = ScratchDatabase::create(&postgres_server_url(), "inbox_test")
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL tests need a server: {e}"));
        TestDb::Postgres(scratch)
    }

    pub fn config(&self) -> StoreConfig {
        match self {
            TestDb::Sqlite { dir } => StoreConfig::Sqlite {
                path: dir.path().join("inbox.db"),
            },
            TestDb::Postgres(scratch) => StoreConfig::Postgres {
                url: scratch.url().to_owned(),
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
        if let TestDb::Postgres(scratch) = self {
            scratch
                .drop_database()
                .await
                .unwrap_or_else(|e| panic!("dropping {}: {e}", scratch.name()));
        }
    }
}

/// A Store on a new SQLite file; keep the directory alive as long as the Store.
pub async fn sqlite_store() -> (Store, TempDir) {
    let db = TestDb::sqlite();
    let store = db.open().await;
    match db {
        TestDb::Sqlite { dir } => (store, dir),
        TestDb::Postgres(_) => unreachable!(),
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
    let mut m = InboundMessage::text(channel.id, channel.kind, external_id, handle, text);
    m.from.name = Some(format!("Customer {handle}"));
    m.sent_at = Some(now);
    m.received_at = now;
    m
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
