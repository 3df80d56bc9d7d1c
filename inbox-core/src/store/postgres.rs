//! PostgreSQL backend: production, shared by every `inbox core` / `inbox web` instance. What only
//! PostgreSQL has is here: advisory locks, row locks; its full-text statements are in
//! `search/postgres.rs`.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Postgres};

use super::{RowLock, StoreResult, migrations};

pub(super) async fn connect(url: &str, max_connections: u32) -> StoreResult<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}

pub(super) async fn migrate(pool: &PgPool) -> StoreResult<()> {
    migrations::migrator(migrations::POSTGRES)
        .await?
        .run(pool)
        .await?;
    Ok(())
}

/// A session advisory lock on `key`, held as long as the returned connection lives; `None` when
/// another session holds it (the connection goes back to the pool without the lock).
pub(super) async fn try_session_lock(
    pool: &PgPool,
    key: i64,
) -> StoreResult<Option<PoolConnection<Postgres>>> {
    let mut connection = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *connection)
        .await?;
    Ok(locked.then_some(connection))
}

/// Transaction-scoped advisory locks on each key, taken in sorted order so two transactions never
/// deadlock on them.
pub(super) async fn lock_keys(conn: &mut PgConnection, keys: &[String]) -> StoreResult<()> {
    let mut ids: Vec<i64> = keys.iter().map(|key| advisory_lock_id(key)).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS t(k)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// A 64-bit advisory lock id for a key: the first 8 bytes of its SHA-256. A collision only makes
/// two unrelated writers wait for each other.
fn advisory_lock_id(key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

pub(super) fn row_lock(lock: RowLock) -> &'static str {
    match lock {
        RowLock::Update => " FOR UPDATE OF c",
        RowLock::NoKeyUpdate => " FOR NO KEY UPDATE OF c",
    }
}
