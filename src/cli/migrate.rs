//! `inbox migrate`: create or upgrade the schema of the configured store.

use inbox_app::config::Config;

pub async fn execute(config: &Config) -> anyhow::Result<()> {
    let store = super::open_store(config).await?;
    println!("{} schema is up to date.", store.backend());
    store.close().await;
    if let Some(kafka) = &config.kafka {
        let mismatches = kafka.ensure_topics().await?;
        println!(
            "Kafka topics exist ({} partitions, replication factor {}, min.insync.replicas {} \
             for new ones).",
            kafka.partitions, kafka.replication_factor, kafka.min_insync_replicas
        );
        for mismatch in &mismatches {
            eprintln!("warning: {mismatch} (existing topics are not changed; see docs/scaling.md)");
        }
    }
    Ok(())
}
