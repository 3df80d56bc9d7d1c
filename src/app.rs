//! The all-in-one application (`inbox run`): store, in-process bus, core worker, outbox relay,
//! connectors and the HTTP server in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use inbox_connectors::runner::OutboundRunner;
use inbox_connectors::webhook::{self, WebhookState};
use inbox_connectors::{ChannelDirectory, Registry};
use inbox_core::bus::Bus;
use inbox_core::bus::local::LocalBus;
use inbox_core::relay::OutboxRelay;
use inbox_core::store::Store;
use inbox_core::worker::{IngestWorker, WorkerSettings};
use inbox_web::WebState;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::directory::StoreDirectory;

/// How long deliveries under way may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// A built, not yet running application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    store: Store,
    bus: LocalBus,
    inbound: Vec<inbox_core::bus::local::LocalInbound>,
    outbound: inbox_core::bus::local::LocalOutbound,
    config: Config,
    shutdown: CancellationToken,
    extra_routes: Option<axum::Router>,
}

impl Application {
    /// Opens (and migrates) the store and binds the listener; `listen` port 0 picks a free port.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let store = Store::open(&config.store())
            .await
            .context("cannot open the store")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let (bus, inbound, outbound) = LocalBus::new(config.partitions());
        Ok(Application {
            listener,
            store,
            bus,
            inbound,
            outbound,
            config,
            shutdown: CancellationToken::new(),
            extra_routes: None,
        })
    }

    /// Serves these routes too (the demo's reply receiver).
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(match self.extra_routes.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        });
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Cancelling it stops the application gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token fires or the process gets SIGINT/SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            store,
            bus,
            inbound,
            outbound,
            config,
            shutdown,
            extra_routes,
        } = self;
        let bus: Arc<dyn Bus> = Arc::new(bus);
        let directory: Arc<dyn ChannelDirectory> = Arc::new(StoreDirectory::new(store.clone()));
        let outbox_ready = Arc::new(Notify::new());

        // The core stops last: deliveries finishing at shutdown still report through it.
        let core_stop = CancellationToken::new();
        let workers: Vec<_> = inbound
            .into_iter()
            .map(|partition| {
                tokio::spawn(
                    IngestWorker {
                        store: store.clone(),
                        bus: bus.clone(),
                        ingest: config.ingest(),
                        settings: WorkerSettings::default(),
                    }
                    .run(partition, core_stop.clone()),
                )
            })
            .collect();

        // Replies handed to the in-process bus before a crash were lost with it: hand them again.
        let requeued = store.requeue_undelivered_outbox().await?;
        if requeued > 0 {
            tracing::info!(requeued, "Requeued undelivered replies.");
        }
        let relay = tokio::spawn(
            OutboxRelay {
                store: store.clone(),
                bus: bus.clone(),
                wake: outbox_ready.clone(),
            }
            .run(shutdown.clone()),
        );
        let runner = tokio::spawn(
            OutboundRunner {
                registry: Registry::with_builtin(),
                directory: directory.clone(),
                bus: bus.clone(),
                retry: config.delivery,
            }
            .run(outbound, shutdown.clone()),
        );

        let app = inbox_web::router(WebState {
            store: store.clone(),
            bus: bus.clone(),
            outbox_ready,
        })
        .merge(webhook::router(WebhookState {
            directory,
            bus: bus.clone(),
        }))
        .merge(extra_routes.unwrap_or_default())
        .layer(tower_http::trace::TraceLayer::new_for_http());

        let addr = listener.local_addr()?;
        tracing::info!(%addr, store = store.backend(), "Listening.");
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();

        let _ = relay.await;
        if tokio::time::timeout(DRAIN, runner).await.is_err() {
            tracing::warn!(
                "Deliveries still running at shutdown; they are retried at the next start."
            );
        }
        core_stop.cancel();
        for worker in workers {
            let _ = worker.await;
        }
        store.close().await;
        tracing::info!("Stopped.");
        served.context("HTTP server failed")
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
