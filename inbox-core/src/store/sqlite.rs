//! SQLite backend: the embedded default, one file in the data dir. What differs from PostgreSQL
//! is here; its full-text statements (FTS5) are in `search/sqlite.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{RowLock, StoreResult, migrations};

pub(super) async fn connect(path: &Path) -> StoreResult<SqlitePool> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        // WAL lets readers (the web) proceed while the funnel writes; NORMAL is durable in WAL mode
        // against process crashes, which is what an acknowledged webhook needs.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory");
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?)
}

pub(super) async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    migrations::migrator(migrations::SQLITE)
        .await?
        .run(pool)
        .await?;
    Ok(())
}

/// Takes the write lock up front, so two writers never deadlock on a lock upgrade.
pub(super) async fn begin(pool: &SqlitePool) -> StoreResult<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Nothing to add: a write transaction holds the database's write lock from its start.
pub(super) fn row_lock(_lock: RowLock) -> &'static str {
    ""
}
