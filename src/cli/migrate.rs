//! `inbox migrate`: create or upgrade the schema of the configured store.

use crate::config::Config;

pub async fn execute(config: &Config) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    println!("{} schema is up to date.", store.backend());
    store.close().await;
    if let Some(kafka) = &config.kafka {
        kafka.ensure_topics().await?;
        println!(
            "Kafka topics exist ({} partitions for new ones).",
            kafka.partitions
        );
    }
    Ok(())
}
