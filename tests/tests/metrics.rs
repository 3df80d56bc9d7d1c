//! `/metrics` holds what an operator alerts on from the start: a fresh app lists every series at
//! 0, a new channel gets its health series, and they follow what happens (a pause, a dead letter,
//! requests).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use inbox_core::envelope::{ChannelKind, InboundEvent, InboundMessage};
use inbox_core::ingest::{InboundRecord, IngestSettings, ingest};
use inbox_e2e::{Backend, TestApp, both_backends, wait_until};
use serde_json::json;

both_backends!(metrics_are_there_from_the_start_and_follow_the_channels);

/// The value of the series `name` whose labels include `labels`, if listed.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The store-derived gauges are sampled every 10 s.
const SAMPLED: Duration = Duration::from_secs(30);

async fn metrics_are_there_from_the_start_and_follow_the_channels(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Fresh: listed, not absent.
    let text = metrics(&app).await;
    for name in [
        "inbox_outbox_depth",
        "inbox_outbox_oldest_age_seconds",
        "inbox_sse_clients",
        "inbox_store_pool_max",
        "inbox_ingest_records_total",
        "inbox_sla_breaches_total",
        "inbox_dead_letters",
    ] {
        assert!(value(&text, name, &[]).is_some(), "{name} missing:\n{text}");
    }

    // A channel gets its series, at 0 for the counters.
    let channel = app
        .create_webhook_channel("http://127.0.0.1:9/unused")
        .await;
    let id = channel.id.to_string();
    let of = [("channel_id", id.as_str())];
    wait_until(SAMPLED, "the channel's series", async || {
        value(&metrics(&app).await, "inbox_channel_up", &of) == Some(1.0)
    })
    .await;
    let text = metrics(&app).await;
    assert_eq!(value(&text, "inbox_channel_paused", &of), Some(0.0));
    assert_eq!(value(&text, "inbox_dead_letters", &of), Some(0.0));
    let sent = [("channel_id", id.as_str()), ("outcome", "sent")];
    assert_eq!(value(&text, "inbox_deliveries_total", &sent), Some(0.0));
    let source = [("channel_id", id.as_str()), ("stage", "source")];
    assert_eq!(
        value(&text, "inbox_channel_errors_total", &source),
        Some(0.0)
    );
    assert!(value(&text, "inbox_channel_seconds_since_success", &of).is_some());

    // Requests are timed by route pattern and status, never by id.
    let response = app.api_get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(response.status(), 200);
    let text = metrics(&app).await;
    let timed = [
        ("route", "/api/v1/channels/{id}"),
        ("status", "200"),
        ("method", "GET"),
    ];
    let count = value(&text, "inbox_http_request_duration_seconds_count", &timed);
    assert!(count.is_some_and(|n| n >= 1.0), "{text}");
    assert!(!text.contains(&format!("route=\"/api/v1/channels/{id}\"")));

    // Paused, and a dead letter of it: the gauges follow.
    app.api_patch(
        &format!("/api/v1/channels/{id}"),
        &json!({"enabled": false}),
    )
    .await;
    app.store.delete_channel(channel.id).await.unwrap();
    let late = InboundMessage::text(
        channel.id,
        ChannelKind::WEBHOOK,
        "late-1",
        "u-1",
        "sent while the channel was deleted",
    );
    let record = InboundRecord::Event(InboundEvent::Message(late));
    ingest(&app.store, &[record], &IngestSettings::default())
        .await
        .unwrap();
    // Restored but still paused: its series show the pause and the waiting dead letter.
    let restore = inbox_core::store::ChannelUpdate {
        deleted: Some(false),
        ..Default::default()
    };
    app.store
        .update_channel(channel.id, &restore)
        .await
        .unwrap();
    wait_until(
        SAMPLED,
        "the pause and the dead letter on /metrics",
        async || {
            let text = metrics(&app).await;
            value(&text, "inbox_channel_paused", &of) == Some(1.0)
                && value(&text, "inbox_channel_up", &of) == Some(0.0)
                && value(&text, "inbox_dead_letters", &of) == Some(1.0)
        },
    )
    .await;
}
