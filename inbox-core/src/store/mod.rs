//! The Store port: everything the inbox keeps, on SQLite (embedded default) or PostgreSQL.
//!
//! One file per entity (channels, agents, conversations, messages, …; `funnel.rs` holds the
//! ingest funnel's bulk statements). Both backends share one set of SQL statements (`$n`
//! placeholders, `ON CONFLICT`, `RETURNING` and row values work in both); what differs is in the
//! backend's own file: `sqlite.rs` / `postgres.rs` (connection options, how a write transaction
//! begins, row and advisory locks) and `search/{sqlite,postgres}.rs` (full-text search). Each
//! method body is written once and expanded for both concrete sqlx drivers by [`on_pool!`] /
//! [`on_tx!`], so no query is kept twice. Which backend a [`Store`] is stays private to this
//! module (tests and benches that need a raw pool use `test_support`).

mod agents;
mod canned;
mod channel_health;
mod channels;
mod contacts;
mod conversations;
mod counts;
mod csat;
mod cursors;
mod dead_letters;
mod event_outbox;
mod events;
mod funnel;
mod merges;
mod messages;
mod metric_rollups;
mod metric_samples;
mod migrations;
mod outbox;
mod paging;
mod postgres;
mod schedules;
mod search;
mod sessions;
mod sla;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod test_support;

use std::path::PathBuf;

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

pub use agents::{AgentSummary, ApiTokenInfo};
pub use canned::{CannedReply, CannedReplyId, CannedReplyInput};
pub use channel_health::{ChannelHealth, ChannelStatus, HealthReport};
pub use channels::{ChannelUpdate, NewChannel};
pub use contacts::{NewContact, NewIdentity};
pub use conversations::{
    ConversationFilter, ConversationPage, ConversationPatch, ConversationSort, ConversationState,
};
pub use counts::{COUNT_CAP, ConversationCounts, StatusCounts};
pub(crate) use csat::NewSurvey;
pub use csat::{CsatAnswer, CsatSettings, Survey};
pub use dead_letters::{
    DeadLetter, DeadLetterFilter, DeadLetterId, MAX_LISTED as MAX_DEAD_LETTERS_LISTED, Resolution,
};
pub(crate) use event_outbox::LogRow;
pub use event_outbox::{EventWakeup, PendingEvents, UndecodableEvent};
pub use events::NewEvent;
pub use funnel::KnownExternalId;
pub use merges::{ContactMerge, FilledField, MergeId};
pub(crate) use messages::{EditedContent, PartContent};
pub use messages::{MessagePage, NewMessage};
pub(crate) use metric_rollups::{RollupChanges, RollupKey, RollupRow};
pub(crate) use metric_samples::{Measured, NumberedSample, ReadState};
pub use metric_samples::{ReportSample, SampleFilter};
pub use outbox::OutboxEntry;
pub use paging::PageCursor;
pub use schedules::ScheduleEntry;
pub use search::{SearchHit, SearchPage};
pub use sessions::{MAX_USER_AGENT, Session, SessionInfo, SessionOrigin};
pub use sla::{NewSlaPolicy, Overdue};

/// Rows per multi-row statement: keeps every statement under SQLite's 32,766 bind parameters.
const CHUNK: usize = 500;

/// The connection pool right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite file (created when missing).
    Sqlite { path: PathBuf },
    /// A PostgreSQL connection URL.
    Postgres { url: String, max_connections: u32 },
}

impl StoreConfig {
    /// `INBOX_DATABASE_URL` when given (PostgreSQL), else `inbox.db` in the data dir.
    pub fn from_parts(database_url: Option<&str>, data_dir: &std::path::Path) -> Self {
        match database_url {
            Some(url) if !url.is_empty() => StoreConfig::Postgres {
                url: url.to_owned(),
                max_connections: 16,
            },
            _ => StoreConfig::Sqlite {
                path: data_dir.join("inbox.db"),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The database cannot be reached now (pool exhausted or closed, connection lost): the
    /// caller may retry later; the API and UI answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A value the caller gave does not fit the stored data; names the field.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot prepare the data directory: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            e => StoreError::Database(e),
        }
    }
}

impl StoreError {
    /// True for unique-constraint violations (a concurrent insert of the same key).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A connection pool to one of the backends. Which one is the store's own business: code outside
/// it goes through its methods (tests and benches that need a raw pool use [`test_support`]).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction. Dropping it without [`StoreTx::commit`] rolls back.
#[derive(Debug)]
pub struct StoreTx {
    tx: TxBackend,
    /// Log rows this transaction appended that the metrics read: measured at commit, in the
    /// transaction, so the stored figures never lag the log.
    appended: Vec<crate::model::ConversationEvent>,
}

#[derive(Debug)]
enum TxBackend {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$db` naming the sqlx database type.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        match &($store).backend {
            $crate::store::Backend::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
            $crate::store::Backend::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's concrete connection.
macro_rules! on_tx {
    ($tx:expr, $conn:ident, $db:ident => $body:expr) => {
        match &mut ($tx).tx {
            $crate::store::TxBackend::Sqlite(tx) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                let $conn: &mut sqlx::SqliteConnection = &mut *tx;
                $body
            }
            $crate::store::TxBackend::Postgres(tx) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                let $conn: &mut sqlx::PgConnection = &mut *tx;
                $body
            }
        }
    };
}

pub(crate) use {on_pool, on_tx};

impl Store {
    /// Connects and applies pending migrations.
    pub async fn open(config: &StoreConfig) -> StoreResult<Self> {
        let store = Self::connect(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(config: &StoreConfig) -> StoreResult<Self> {
        let backend = match config {
            StoreConfig::Sqlite { path } => Backend::Sqlite(sqlite::connect(path).await?),
            StoreConfig::Postgres {
                url,
                max_connections,
            } => Backend::Postgres(postgres::connect(url, *max_connections).await?),
        };
        Ok(Store { backend })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite::migrate(pool).await?,
            Backend::Postgres(pool) => postgres::migrate(pool).await?,
        }
        let rolled = self.backfill_rollups().await?;
        if rolled > 0 {
            tracing::info!(
                rollups = rolled,
                "Rolled up the samples stored before roll-ups."
            );
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Begins a write transaction. SQLite takes the write lock up front so two writers never
    /// deadlock on a lock upgrade; PostgreSQL locks the rows it reads `FOR UPDATE` instead.
    pub async fn begin(&self) -> StoreResult<StoreTx> {
        let tx = match &self.backend {
            Backend::Sqlite(pool) => TxBackend::Sqlite(sqlite::begin(pool).await?),
            Backend::Postgres(pool) => TxBackend::Postgres(pool.begin().await?),
        };
        Ok(StoreTx {
            tx,
            appended: Vec::new(),
        })
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        on_pool!(self, pool, Db => sqlx::query::<Db>("SELECT 1").execute(pool).await.map(|r| r.rows_affected()).is_ok())
    }

    /// Connections of the pool: open (in use or idle), idle, and the most it opens.
    pub fn pool_stats(&self) -> PoolStats {
        let (open, idle, max) = on_pool!(self, pool, Db => (
            pool.size(),
            pool.num_idle() as u32,
            pool.options().get_max_connections()
        ));
        PoolStats {
            in_use: open.saturating_sub(idle),
            idle,
            max,
        }
    }

    pub async fn close(&self) {
        on_pool!(self, pool, Db => pool.close().await)
    }
}

/// The right to relay an outbox: a session advisory lock on PostgreSQL, held as long as its
/// connection lives; SQLite has one process by construction.
#[derive(Debug)]
pub struct RelayLease {
    connection: Option<sqlx::pool::PoolConnection<Postgres>>,
}

/// Which outbox a relay lease is for; one relay of each runs at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Replies to the `inbox.outbound` topic.
    Replies,
    /// Domain events to the `inbox.events` topic.
    Events,
}

impl Relay {
    /// Advisory lock key ("inbox:re", "inbox:ev").
    fn lock_key(self) -> i64 {
        match self {
            Relay::Replies => 0x696e_626f_783a_7265,
            Relay::Events => 0x696e_626f_783a_6576,
        }
    }
}

impl Store {
    /// Takes the reply relay's lease if no other process holds it.
    pub async fn try_relay_lease(&self) -> StoreResult<Option<RelayLease>> {
        self.try_lease(Relay::Replies).await
    }

    /// Takes a relay's lease if no other process holds it.
    pub async fn try_lease(&self, relay: Relay) -> StoreResult<Option<RelayLease>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(RelayLease { connection: None })),
            Backend::Postgres(pool) => Ok(postgres::try_session_lock(pool, relay.lock_key())
                .await?
                .map(|connection| RelayLease {
                    connection: Some(connection),
                })),
        }
    }
}

impl RelayLease {
    /// False once the lease's connection is gone (and with it the lock).
    pub async fn still_held(&mut self) -> bool {
        match &mut self.connection {
            None => true,
            Some(connection) => sqlx::query("SELECT 1")
                .execute(&mut **connection)
                .await
                .is_ok(),
        }
    }
}

impl Drop for RelayLease {
    fn drop(&mut self) {
        // Closing the connection releases the session lock; returning it to the pool would not.
        if let Some(connection) = self.connection.take() {
            drop(connection.detach());
        }
    }
}

/// How a read locks the rows a transaction will update.
#[derive(Debug, Clone, Copy)]
enum RowLock {
    /// Rows of the table aliased `c` that the transaction updates.
    Update,
    /// Rows of the table aliased `c` that the transaction updates without touching their keys,
    /// so concurrent foreign-key checks on them need not wait.
    NoKeyUpdate,
}

impl StoreTx {
    pub async fn commit(mut self) -> StoreResult<()> {
        let appended = std::mem::take(&mut self.appended);
        crate::reports::measure_appended(&mut self, appended).await?;
        match self.tx {
            TxBackend::Sqlite(tx) => tx.commit().await?,
            TxBackend::Postgres(tx) => tx.commit().await?,
        }
        event_outbox::committed();
        Ok(())
    }

    /// Holds a lock on each key until the transaction ends, so concurrent transactions that
    /// touch the same keys run one after the other. PostgreSQL takes transaction-scoped advisory
    /// locks (in sorted order, so two transactions never deadlock on them); SQLite needs nothing,
    /// its write transactions are serialized already (`BEGIN IMMEDIATE`).
    pub async fn lock_keys(&mut self, keys: &[String]) -> StoreResult<()> {
        match &mut self.tx {
            TxBackend::Sqlite(_) => Ok(()),
            TxBackend::Postgres(tx) => postgres::lock_keys(tx, keys).await,
        }
    }

    /// The suffix of a `SELECT` that locks the rows it reads for this transaction.
    fn row_lock(&self, lock: RowLock) -> &'static str {
        match self.tx {
            TxBackend::Sqlite(_) => sqlite::row_lock(lock),
            TxBackend::Postgres(_) => postgres::row_lock(lock),
        }
    }
}
