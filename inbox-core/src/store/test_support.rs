//! For tests and benches only (feature `test-support`): a scratch PostgreSQL database of their
//! own, the raw pool behind a [`Store`] for checks it has no query for, and bulk seeding of rows
//! without going through the ingest funnel. The product never enables this feature.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, SqlitePool};

use super::{
    Backend, ConversationState, NewContact, NewEvent, NewIdentity, NewMessage, Store, StoreResult,
    StoreTx,
};
use crate::envelope::DomainEvent;
use crate::ids::ConversationId;

/// The server the tests use when `INBOX_TEST_DATABASE_URL` is not set.
pub const DEFAULT_TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server tests create their databases on: `INBOX_TEST_DATABASE_URL` (which
/// `tests/run` sets to the server it started), else [`DEFAULT_TEST_SERVER`].
pub fn test_server_url() -> String {
    match std::env::var("INBOX_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => DEFAULT_TEST_SERVER.to_owned(),
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

/// Why a scratch database could not be made or dropped; names the server.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "cannot connect to the PostgreSQL server {url}: {source}. Start PostgreSQL or set \
         INBOX_TEST_DATABASE_URL to a server URL (postgres://user@host:port/postgres)"
    )]
    Connect { url: String, source: sqlx::Error },
    #[error("connecting to the PostgreSQL server {url} timed out")]
    Timeout { url: String },
    #[error("{statement} on {url} failed: {source}")]
    Statement {
        statement: String,
        url: String,
        source: sqlx::Error,
    },
}

/// A database of its own on a PostgreSQL server, for one test or one bench run. It is not
/// dropped by itself: [`ScratchDatabase::drop_database`] does (a failed test keeps its data for
/// inspection).
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<uuid>` on the server `server_url` (any database URL of it).
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self, ScratchError> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let scratch = ScratchDatabase {
            server_url: server_url.to_owned(),
            url: with_database(server_url, &name),
            name,
        };
        scratch
            .on_server(&format!(r#"CREATE DATABASE "{}""#, scratch.name))
            .await?;
        Ok(scratch)
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops it, closing whatever connections are still open on it.
    pub async fn drop_database(&self) -> Result<(), ScratchError> {
        self.on_server(&format!(
            r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#,
            self.name
        ))
        .await
    }

    /// [`ScratchDatabase::drop_database`] from a thread and runtime of its own: for `Drop`
    /// implementations, which may run inside a test's runtime and cannot wait on it.
    pub fn drop_from_any_thread(&self) -> Result<(), String> {
        let scratch = self.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(scratch.drop_database())
                .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "dropping the database panicked".to_owned())?
    }

    async fn on_server(&self, statement: &str) -> Result<(), ScratchError> {
        let url = &self.server_url;
        let mut conn =
            match tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(url)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(source)) => {
                    return Err(ScratchError::Connect {
                        url: url.clone(),
                        source,
                    });
                }
                Err(_) => return Err(ScratchError::Timeout { url: url.clone() }),
            };
        let done = sqlx::query(AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        done.map(drop).map_err(|source| ScratchError::Statement {
            statement: statement.to_owned(),
            url: url.clone(),
            source,
        })
    }
}

/// The pool behind a [`Store`].
#[derive(Debug, Clone, Copy)]
pub enum RawPool<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

impl Store {
    /// The raw pool, for a test's or a bench's own statements.
    pub fn raw_pool(&self) -> RawPool<'_> {
        match &self.backend {
            Backend::Sqlite(pool) => RawPool::Sqlite(pool),
            Backend::Postgres(pool) => RawPool::Postgres(pool),
        }
    }
}

impl StoreTx {
    /// The funnel's bulk statements, for seeding big inboxes fast and for reading rows back as
    /// the funnel sees them.
    pub fn raw(&mut self) -> RawTx<'_> {
        RawTx { tx: self }
    }
}

/// See [`StoreTx::raw`]; each method is the funnel's statement of the same name.
#[derive(Debug)]
pub struct RawTx<'a> {
    tx: &'a mut StoreTx,
}

impl RawTx<'_> {
    pub async fn insert_contacts(&mut self, rows: &[NewContact]) -> StoreResult<()> {
        self.tx.insert_contacts(rows).await
    }

    pub async fn insert_identities(&mut self, rows: &[NewIdentity]) -> StoreResult<()> {
        self.tx.insert_identities(rows).await
    }

    pub async fn upsert_conversations(&mut self, rows: &[ConversationState]) -> StoreResult<()> {
        self.tx.upsert_conversations(rows).await
    }

    /// Returns how many were inserted (one already stored under its external id is skipped).
    pub async fn insert_messages(&mut self, rows: &[NewMessage]) -> StoreResult<u64> {
        self.tx.insert_messages(rows).await
    }

    pub async fn insert_events(&mut self, rows: &[NewEvent]) -> StoreResult<Vec<DomainEvent>> {
        self.tx.insert_events(rows).await
    }

    /// Conversations by id, locked for update.
    pub async fn conversations_by_ids(
        &mut self,
        ids: &[ConversationId],
    ) -> StoreResult<Vec<ConversationState>> {
        self.tx.conversations_by_ids(ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
