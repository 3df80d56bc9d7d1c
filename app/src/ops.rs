//! What operators probe: `/healthz` (the process is up), `/readyz` (store and bus reachable) and
//! `/metrics` (Prometheus text). Served on the main listener, or on `ops_listen` when set.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use inbox_core::bus::Bus;
use inbox_core::bus::kafka::LagProbe;
use inbox_core::store::Store;
use inbox_web::http::{Route, RouteTable};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The process-wide metrics recorder (installed once, however many apps a test process builds).
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("inbox_http_request_duration_seconds".into()),
                    crate::telemetry::HTTP_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "Metrics recorder not installed.");
                    None
                }
            }
        })
        .as_ref()
}

#[derive(Debug, Clone)]
struct Probes {
    store: Store,
    bus: Arc<dyn Bus>,
}

/// `/healthz`, `/readyz`, `/metrics`.
fn routes() -> RouteTable<Probes> {
    RouteTable::new()
        .get("/healthz", || async { "ok" })
        .get("/readyz", ready)
        .get("/metrics", render)
}

/// What the operations endpoints serve.
pub fn served_routes() -> Vec<Route> {
    routes().list()
}

pub fn router(store: Store, bus: Arc<dyn Bus>) -> Router {
    // Install at start so every metric recorded from now on is kept.
    let _ = prometheus();
    crate::telemetry::describe();
    routes().into_router().with_state(Probes { store, bus })
}

async fn ready(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if !probes.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable");
    }
    if !probes.bus.ready().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "bus unreachable");
    }
    (StatusCode::OK, "ready")
}

async fn render() -> (StatusCode, String) {
    match prometheus() {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
    }
}

/// Publishes the consumer lag per partition as `inbox_consumer_lag{topic,partition}` every 5 s.
pub fn report_lag(probe: LagProbe, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let probe = probe.clone();
            let Ok(lags) = tokio::task::spawn_blocking(move || {
                let topic = probe.topic().to_owned();
                (topic, probe.lag())
            })
            .await
            else {
                continue;
            };
            let (topic, lags) = lags;
            for (partition, lag) in lags {
                metrics::gauge!("inbox_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    })
}
