//! `inbox reports rebuild` as an operator runs it: the built binary on the data of a stopped
//! application, on both backends. The samples it stores are those docs/metrics.md defines.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use axum::http::StatusCode;
use inbox_core::ids::ConversationId;
use inbox_core::metrics::Metric;
use inbox_e2e::{Backend, Behaviour, TestApp, both_backends, json_of, str_of};
use serde_json::json;

both_backends!(rebuild_stores_the_samples_of_the_log);

async fn rebuild_stores_the_samples_of_the_log(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    app.customer_says(&channel, "m-1", "42", "Where is my parcel?")
        .await;
    let conversation = app.only_conversation().await;
    let id = str_of(&conversation, "id").to_owned();
    app.agent_writes(&id, "It left the warehouse today.", false)
        .await;
    let path = format!("/api/v1/conversations/{id}");
    json_of(
        app.api_patch(&path, &json!({"status": "resolved"})).await,
        StatusCode::OK,
        &format!("PATCH {path}"),
    )
    .await;
    let admin = app.admin.id;
    let stopped = app.stop().await;

    let out = stopped.cli(&["reports", "rebuild"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inbox reports rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Rebuilt 1 conversations: 6 samples"),
        "stdout: {stdout}"
    );

    let store = stopped.open_store().await;
    let samples = store
        .metric_samples(id.parse::<ConversationId>().unwrap())
        .await
        .unwrap();
    let metrics: Vec<&str> = samples.iter().map(|s| s.metric.id()).collect();
    assert_eq!(
        metrics,
        [
            "nrt.v1",
            "frt.v1",
            "resolution.v1",
            "first_resolution.v1",
            "requester_wait.v1",
            "agent_wait.v1"
        ]
    );
    let frt = samples
        .iter()
        .find(|s| s.metric == Metric::FirstReply)
        .unwrap();
    assert_eq!(frt.agent, Some(admin));
    assert!(frt.calendar_s < 60, "{frt:?}");
    store.close().await;

    // Since a date after everything: nothing to do. A bad --since says what it takes.
    let out = stopped.cli(&["reports", "rebuild", "--since", "2999-01-01"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Rebuilt 0 conversations"));
    let out = stopped.cli(&["reports", "rebuild", "--since", "soon"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--since: like 30d"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
