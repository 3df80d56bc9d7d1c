//! The metrics an operator alerts on (`docs/operations.md`): described and set at start, so a
//! fresh `/metrics` lists them at 0 instead of leaving them absent until something happens; then
//! kept current — channel health, dead letters and the outbox sampled from the store every
//! [`SAMPLE`], the pool and HTTP request durations per process, and counters where things happen
//! (ingest, deliveries, source errors, SSE clients).

use std::collections::HashMap;
use std::sync::Once;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use inbox_core::ids::ChannelId;
use inbox_core::store::{ChannelStatus, Store, StoreResult};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the store-derived gauges are refreshed.
pub const SAMPLE: Duration = Duration::from_secs(10);

/// How often each channel's latest message is read again for them: it sums over every
/// conversation (a second of a core at a million), and only matters for a channel without any
/// recorded success, so a few minutes old is fine.
const ACTIVITY_EVERY: Duration = Duration::from_secs(300);

/// Each channel's latest message as last read, and when it was read.
type Activity = Option<(Instant, HashMap<ChannelId, chrono::DateTime<Utc>>)>;

/// Buckets of `inbox_http_request_duration_seconds`.
pub const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Names and help texts, once per process; the series that need no labels start at 0.
pub fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_gauge!(
            "inbox_channel_up",
            "1 when the channel works (its latest news is a success, or nothing happened yet), 0 when failing or paused"
        );
        describe_gauge!("inbox_channel_paused", "1 while an operator paused the channel");
        describe_gauge!(
            "inbox_channel_seconds_since_success",
            Unit::Seconds,
            "Since the channel's last success (a message stored, a reply delivered, a source read); since its creation when none yet"
        );
        describe_counter!(
            "inbox_channel_errors_total",
            "Errors of a channel by stage: source (reading it) or delivery (a reply that failed for good)"
        );
        describe_counter!(
            "inbox_deliveries_total",
            "Replies by channel and outcome (sent, failed)"
        );
        describe_gauge!(
            "inbox_dead_letters",
            "Dead letters waiting for a replay or a discard, by channel (none: input of no known channel)"
        );
        describe_gauge!("inbox_outbox_depth", "Replies written but not yet handed to the bus");
        describe_gauge!(
            "inbox_outbox_oldest_age_seconds",
            Unit::Seconds,
            "Age of the oldest reply not yet handed to the bus (0 when none)"
        );
        describe_histogram!(
            "inbox_http_request_duration_seconds",
            Unit::Seconds,
            "HTTP requests by method, route pattern and status"
        );
        describe_gauge!("inbox_sse_clients", "Live-update streams open (agents' pages)");
        describe_gauge!(
            "inbox_store_pool_connections",
            "Database connections of this process by state (in_use, idle)"
        );
        describe_gauge!("inbox_store_pool_max", "Most database connections this process opens");
        describe_counter!(
            "inbox_ingest_records_total",
            "Inbound records by outcome (stored, duplicate, delivery, dead_lettered)"
        );
        describe_gauge!(
            "inbox_consumer_lag",
            "Kafka: records of a partition not yet consumed by this group"
        );
        describe_counter!(
            "inbox_sla_breaches_total",
            "SLA deadlines that passed unmet, by target (first_reply, next_reply, resolution)"
        );
        for target in ["first_reply", "next_reply", "resolution"] {
            metrics::counter!("inbox_sla_breaches_total", "target" => target).increment(0);
        }
        for outcome in ["stored", "duplicate", "delivery", "dead_lettered"] {
            metrics::counter!("inbox_ingest_records_total", "outcome" => outcome).increment(0);
        }
        metrics::gauge!("inbox_sse_clients").increment(0.0);
        metrics::gauge!("inbox_outbox_depth").set(0.0);
        metrics::gauge!("inbox_outbox_oldest_age_seconds").set(0.0);
        metrics::gauge!("inbox_dead_letters", "channel_id" => "none").set(0.0);
    });
}

/// Keeps the store-derived gauges current until `shutdown`; the first sample is taken at once.
pub fn sample_store(store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut activity: Activity = None;
        loop {
            if let Err(error) = sample(&store, &mut activity).await {
                tracing::debug!(%error, "Metrics not sampled.");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SAMPLE) => {}
            }
        }
    })
}

/// The pool's gauges of this process, every [`SAMPLE`].
pub fn sample_pool(store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let pool = store.pool_stats();
            metrics::gauge!("inbox_store_pool_connections", "state" => "in_use")
                .set(f64::from(pool.in_use));
            metrics::gauge!("inbox_store_pool_connections", "state" => "idle")
                .set(f64::from(pool.idle));
            metrics::gauge!("inbox_store_pool_max").set(f64::from(pool.max));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SAMPLE) => {}
            }
        }
    })
}

async fn sample(store: &Store, activity: &mut Activity) -> StoreResult<()> {
    let channels = store.channels().await?;
    let mut health = store.channel_health().await?;
    if activity
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() >= ACTIVITY_EVERY)
    {
        let latest = store
            .channel_activity()
            .await?
            .into_iter()
            .map(|(id, (_, at))| (id, at))
            .collect();
        *activity = Some((Instant::now(), latest));
    }
    let latest = activity.as_ref().map(|(_, latest)| latest);
    let mut dead = store.open_dead_letter_counts().await?;
    let now = Utc::now();
    for channel in channels.iter().filter(|c| c.deleted_at.is_none()) {
        let labels = [
            ("channel_id", channel.id.to_string()),
            ("kind", channel.kind.to_string()),
        ];
        let h = health.remove(&channel.id).unwrap_or_default();
        let last_message = latest.and_then(|l| l.get(&channel.id)).copied();
        let status = h.status(channel, last_message);
        let up = matches!(status, ChannelStatus::Ok | ChannelStatus::Idle);
        metrics::gauge!("inbox_channel_up", &labels).set(if up { 1.0 } else { 0.0 });
        metrics::gauge!("inbox_channel_paused", &labels).set(if channel.enabled {
            0.0
        } else {
            1.0
        });
        let since = h.last_success(last_message).unwrap_or(channel.created_at);
        metrics::gauge!("inbox_channel_seconds_since_success", &labels)
            .set((now - since).num_milliseconds().max(0) as f64 / 1000.0);
        let id = channel.id.to_string();
        metrics::gauge!("inbox_dead_letters", "channel_id" => id.clone())
            .set(dead.remove(&Some(channel.id)).unwrap_or(0) as f64);
        // Counters read 0 until the first error or delivery, rather than being absent.
        for stage in ["source", "delivery"] {
            metrics::counter!("inbox_channel_errors_total", "channel_id" => id.clone(), "stage" => stage)
                .increment(0);
        }
        for outcome in ["sent", "failed"] {
            metrics::counter!("inbox_deliveries_total", "channel_id" => id.clone(), "outcome" => outcome)
                .increment(0);
        }
    }
    let orphans: i64 = dead.values().sum();
    metrics::gauge!("inbox_dead_letters", "channel_id" => "none").set(orphans as f64);
    let (depth, oldest) = store.outbox_backlog().await?;
    metrics::gauge!("inbox_outbox_depth").set(depth as f64);
    let age = oldest.map_or(0.0, |at| {
        (now - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics::gauge!("inbox_outbox_oldest_age_seconds").set(age);
    Ok(())
}

/// Times every request: `inbox_http_request_duration_seconds{method,route,status}`, `route`
/// being the router's pattern (`/api/v1/conversations/{id}`), so ids never become labels.
pub async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        "inbox_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}
