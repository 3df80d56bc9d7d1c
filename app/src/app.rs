//! The application: `inbox run` (every role in one process) and the production services
//! `inbox core`, `inbox web` and `inbox connectors` (one role each). The bus is in-process, or Kafka
//! when `INBOX_KAFKA_BROKERS` is set; everything above the Bus and Store ports is the same code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use inbox_connectors::runner::OutboundRunner;
use inbox_connectors::sources::SourceRunner;
use inbox_connectors::{ChannelDirectory, IntakeContext, Registry, SourceContext};
use inbox_core::bus::Bus;
use inbox_core::bus::kafka::KafkaBus;
use inbox_core::bus::local::LocalBus;
use inbox_core::event_relay::EventRelay;
use inbox_core::relay::OutboxRelay;
use inbox_core::store::Store;
use inbox_core::timers::{SlaWatcher, SnoozeWaker};
use inbox_core::worker::{IngestWorker, WorkerSettings};
use inbox_web::WebState;
use inbox_web::http::client_addr::TrustedProxies;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::directory::{StoreCursors, StoreDirectory};
use crate::ops;

/// How long deliveries under way may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Which parts of the product a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Consumes inbound events into the store and relays the outbox to the bus.
    pub core: bool,
    /// Serves the agents' API.
    pub web: bool,
    /// Serves inbound webhooks and delivers replies.
    pub connectors: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        core: true,
        web: true,
        connectors: true,
    };
    pub const CORE: Roles = Roles {
        core: true,
        web: false,
        connectors: false,
    };
    pub const WEB: Roles = Roles {
        core: false,
        web: true,
        connectors: false,
    };
    pub const CONNECTORS: Roles = Roles {
        core: false,
        web: false,
        connectors: true,
    };
}

/// A built, not yet running application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    ops_listener: Option<TcpListener>,
    store: Store,
    config: Config,
    roles: Roles,
    shutdown: CancellationToken,
    extra_routes: Option<axum::Router>,
}

impl Application {
    /// Every role in one process (`inbox run`).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_roles(config, Roles::ALL).await
    }

    /// Opens (and migrates) the store and binds the listeners; port 0 picks a free port.
    pub async fn build_with_roles(config: Config, roles: Roles) -> anyhow::Result<Application> {
        if roles != Roles::ALL && config.kafka.is_none() {
            anyhow::bail!(
                "running the services separately needs Kafka: set INBOX_KAFKA_BROKERS (or use `inbox run`)"
            );
        }
        let store = Store::open(&config.store())
            .await
            .context("cannot open the store")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let ops_listener = match config.ops_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            ),
            None => None,
        };
        Ok(Application {
            listener,
            ops_listener,
            store,
            config,
            roles,
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

    /// Serves until the shutdown token fires or the process gets SIGINT/SIGTERM. A batch under
    /// way is finished and committed, deliveries under way get [`DRAIN`] to finish, and Kafka
    /// consumers commit and leave their group.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            ops_listener,
            store,
            config,
            roles,
            shutdown,
            extra_routes,
        } = self;
        let directory: Arc<dyn ChannelDirectory> = Arc::new(StoreDirectory::new(store.clone()));
        let outbox_ready = Arc::new(Notify::new());
        // The core stops last: deliveries finishing at shutdown still report through it.
        let core_stop = CancellationToken::new();
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        let mut background: Vec<JoinHandle<()>> = Vec::new();
        let mut runner: Option<JoinHandle<()>> = None;

        // Attachments and raw mail: a directory under the data dir (S3-compatible storage
        // in production comes with object_store's other backends).
        let blob_dir = config.data_dir.join("blobs");
        std::fs::create_dir_all(&blob_dir)
            .with_context(|| format!("cannot create {}", blob_dir.display()))?;
        let blobs: Arc<dyn object_store::ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&blob_dir)?,
        );
        // The channel kinds of this build: sources, sinks, intake routes, and the catalog the web
        // side creates and tests channels with.
        let registry = Registry::with_builtin_blobs(blobs.clone());
        let bus: Arc<dyn Bus> = match &config.kafka {
            None => {
                let (bus, partitions, outbound) = LocalBus::new(config.partitions());
                let bus: Arc<dyn Bus> = Arc::new(bus);
                for partition in partitions {
                    workers.push(tokio::spawn(
                        worker(&store, &bus, &config, WorkerSettings::default())
                            .run(partition, core_stop.clone()),
                    ));
                }
                // Replies handed to the in-process bus before a crash were lost with it.
                let requeued = store.requeue_undelivered_outbox().await?;
                if requeued > 0 {
                    tracing::info!(requeued, "Requeued undelivered replies.");
                }
                runner = Some(tokio::spawn(
                    outbound_runner(&registry, &directory, &bus, &config)
                        .run(outbound, shutdown.clone()),
                ));
                bus
            }
            Some(kafka) => {
                kafka
                    .ensure_topics()
                    .await
                    .context("cannot create the Kafka topics")?;
                let kafka_bus = Arc::new(KafkaBus::new(kafka)?);
                let bus: Arc<dyn Bus> = kafka_bus.clone();
                if roles.core {
                    // One consumer and worker per ingest partition, as with the in-process bus.
                    for index in 0..config.partitions() {
                        let consumer = kafka.inbound_consumer_for(index)?;
                        background.push(ops::report_lag(consumer.lag_probe(), shutdown.clone()));
                        workers.push(tokio::spawn(
                            worker(&store, &bus, &config, WorkerSettings::kafka())
                                .run(consumer, core_stop.clone()),
                        ));
                    }
                }
                if roles.connectors {
                    let consumer = kafka.outbound_consumer(kafka_bus.clone())?;
                    runner = Some(tokio::spawn(
                        outbound_runner(&registry, &directory, &bus, &config)
                            .run(consumer, shutdown.clone()),
                    ));
                }
                if roles.web {
                    background.push(kafka_bus.listen_domain(kafka, shutdown.clone())?);
                }
                bus
            }
        };
        if roles.connectors {
            background.push(tokio::spawn(
                SourceRunner {
                    registry: registry.clone(),
                    directory: directory.clone(),
                    ctx: SourceContext {
                        bus: bus.clone(),
                        cursors: Arc::new(StoreCursors(store.clone())),
                        blobs: blobs.clone(),
                        public_url: config.base_url(listener.local_addr()?),
                    },
                }
                .run(shutdown.clone()),
            ));
        }
        background.push(crate::telemetry::sample_pool(
            store.clone(),
            shutdown.clone(),
        ));
        if roles.core {
            background.push(crate::telemetry::sample_store(
                store.clone(),
                shutdown.clone(),
            ));
            background.push(tokio::spawn(
                SnoozeWaker {
                    store: store.clone(),
                }
                .run(shutdown.clone()),
            ));
            background.push(tokio::spawn(
                SlaWatcher {
                    store: store.clone(),
                }
                .run(shutdown.clone()),
            ));
            background.push(tokio::spawn(
                OutboxRelay {
                    store: store.clone(),
                    bus: bus.clone(),
                    wake: outbox_ready.clone(),
                }
                .run(shutdown.clone()),
            ));
            // Stops with the core; what it had no time for stays in the event outbox for the
            // next start.
            workers.push(tokio::spawn(
                EventRelay {
                    store: store.clone(),
                    bus: bus.clone(),
                }
                .run(core_stop.clone()),
            ));
        }

        let mut app = axum::Router::new();
        if roles.web {
            app = app.merge(inbox_web::router(WebState {
                store: store.clone(),
                bus: bus.clone(),
                outbox_ready,
                blobs: blobs.clone(),
                auth: Arc::new(
                    inbox_web::http::AuthSettings::new(
                        config
                            .public_url
                            .as_deref()
                            .is_some_and(|u| u.starts_with("https://")),
                    )
                    .with_trusted_proxies(TrustedProxies::new(config.web.trusted_proxies.clone())),
                ),
                catalog: Arc::new(registry.clone()),
                ingest: Arc::new(config.ingest()),
                public_url: config.base_url(listener.local_addr()?).into(),
            }));
        }
        if roles.connectors {
            app = app.merge(registry.intake_routes(&IntakeContext {
                directory,
                bus: bus.clone(),
                blobs: blobs.clone(),
            }));
        }
        let ops = ops::router(store.clone(), bus.clone());
        let ops_server = match ops_listener {
            None => {
                app = app.merge(ops);
                None
            }
            Some(listener) => {
                tracing::info!(addr = %listener.local_addr()?, "Serving /healthz, /readyz and /metrics.");
                let stop = shutdown.clone();
                Some(tokio::spawn(async move {
                    let _ = axum::serve(listener, ops)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await;
                }))
            }
        };
        let app = app
            .merge(extra_routes.unwrap_or_default())
            .layer(axum::middleware::from_fn(crate::http_errors::json_errors))
            .layer(axum::middleware::from_fn(crate::telemetry::record_request))
            .layer(tower_http::trace::TraceLayer::new_for_http());

        let addr = listener.local_addr()?;
        tracing::info!(%addr, store = store.backend(), ?roles, kafka = config.kafka.is_some(), "Listening.");
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
        shutdown.cancel();

        for task in background.into_iter().chain(ops_server) {
            let _ = task.await;
        }
        if let Some(runner) = runner
            && tokio::time::timeout(DRAIN, runner).await.is_err()
        {
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

/// Every route `inbox run` serves, as its routers are built: the agents' side, the operations
/// endpoints and each channel kind's intake (the route-matrix and OpenAPI tests check them).
pub fn served_routes(registry: &Registry) -> Vec<inbox_web::http::Route> {
    let mut routes = inbox_web::http::served_routes();
    routes.extend(ops::served_routes());
    routes.extend(registry.connectors().filter_map(|c| {
        c.info().intake_path.map(|path| inbox_web::http::Route {
            method: axum::http::Method::POST,
            path,
        })
    }));
    routes
}

fn worker(
    store: &Store,
    bus: &Arc<dyn Bus>,
    config: &Config,
    settings: WorkerSettings,
) -> IngestWorker {
    IngestWorker {
        store: store.clone(),
        bus: bus.clone(),
        ingest: config.ingest(),
        settings,
    }
}

fn outbound_runner(
    registry: &Registry,
    directory: &Arc<dyn ChannelDirectory>,
    bus: &Arc<dyn Bus>,
    config: &Config,
) -> OutboundRunner {
    OutboundRunner {
        registry: registry.clone(),
        directory: directory.clone(),
        bus: bus.clone(),
        retry: config.delivery,
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
