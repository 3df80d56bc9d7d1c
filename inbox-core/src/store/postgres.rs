//! PostgreSQL backend: production, shared by every `inbox core` / `inbox web` instance.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::StoreResult;

pub(super) async fn connect(url: &str, max_connections: u32) -> StoreResult<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}

pub(super) async fn migrate(pool: &PgPool) -> StoreResult<()> {
    sqlx::migrate!("./migrations/postgres").run(pool).await?;
    Ok(())
}
