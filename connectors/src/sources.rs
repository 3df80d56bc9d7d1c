//! Supervises channel sources: starts one task per active channel whose kind polls (email),
//! stops it when the channel is paused or deleted, restarts it when its config changes, and with
//! backoff when it fails. Channel changes at runtime are picked up within [`RESCAN`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use inbox_core::ids::ChannelId;
use inbox_core::store::HealthReport;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{ChannelDirectory, Registry, SourceContext};

const RESCAN: Duration = Duration::from_secs(2);
/// A source that ran this long before failing was healthy: its backoff starts over.
const HEALTHY: Duration = Duration::from_secs(60);

/// A source task and the channel as it was started.
struct Running {
    channel: inbox_core::model::Channel,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone)]
pub struct SourceRunner {
    pub registry: Registry,
    pub directory: Arc<dyn ChannelDirectory>,
    pub ctx: SourceContext,
}

impl SourceRunner {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running: HashMap<ChannelId, Running> = HashMap::new();
        loop {
            match self.directory.channels().await {
                Ok(channels) => {
                    let wanted: HashMap<ChannelId, _> = channels
                        .into_iter()
                        .filter(|c| c.is_active())
                        .filter_map(|c| {
                            let connector = self.registry.get(c.kind)?.clone();
                            connector.has_source().then_some((c.id, (c, connector)))
                        })
                        .collect();
                    running.retain(|id, source| {
                        let wanted = wanted.get(id).map(|(channel, _)| channel);
                        let keep = wanted.is_some_and(|c| {
                            c.config == source.channel.config && c.secret == source.channel.secret
                        });
                        if !keep {
                            let why = if wanted.is_some() {
                                "config changed"
                            } else {
                                "paused or deleted"
                            };
                            tracing::info!(channel_id = %id, why, "Stopping source.");
                            source.stop.cancel();
                        }
                        keep
                    });
                    for (id, (channel, connector)) in wanted {
                        if running
                            .get(&id)
                            .is_some_and(|source| !source.task.is_finished())
                        {
                            continue;
                        }
                        let running_channel = channel.clone();
                        let stop = shutdown.child_token();
                        let ctx = self.ctx.clone();
                        let task_stop = stop.clone();
                        let directory = self.directory.clone();
                        tracing::info!(channel_id = %id, kind = channel.kind.as_str(), "Starting source.");
                        let task = tokio::spawn(async move {
                            let mut backoff = Duration::from_secs(1);
                            while !task_stop.is_cancelled() {
                                let started = std::time::Instant::now();
                                let result = connector
                                    .run_source(channel.clone(), ctx.clone(), task_stop.clone())
                                    .await;
                                // A source that ran well for a while starts over with a short wait.
                                if started.elapsed() > HEALTHY {
                                    backoff = Duration::from_secs(1);
                                }
                                match result {
                                    Ok(()) => break,
                                    Err(error) => {
                                        tracing::warn!(channel_id = %id, %error, ?backoff, "Source failed; restarting.");
                                        directory
                                            .report_health(
                                                id,
                                                HealthReport::Error(error.to_string()),
                                            )
                                            .await;
                                        metrics::counter!(
                                            "inbox_channel_errors_total",
                                            "channel_id" => id.to_string(),
                                            "stage" => "source"
                                        )
                                        .increment(1);
                                    }
                                }
                                tokio::select! {
                                    _ = task_stop.cancelled() => break,
                                    _ = tokio::time::sleep(backoff) => {}
                                }
                                backoff = (backoff * 2).min(Duration::from_secs(60));
                            }
                        });
                        running.insert(
                            id,
                            Running {
                                channel: running_channel,
                                stop,
                                task,
                            },
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "Channels not readable; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RESCAN) => {}
            }
        }
        for source in running.into_values() {
            source.stop.cancel();
            let _ = source.task.await;
        }
    }
}
