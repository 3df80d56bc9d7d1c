//! The reports API over HTTP, on both backends: `GET /api/v1/reports/response-times` (JSON and
//! CSV, grouped by day, agent and channel, calendar and business hours), `GET
//! /api/v1/reports/volume`, and business hours set through `PUT /api/v1/business-hours`, whose
//! change applies from its time on. Conversations come in through the signed webhook with the
//! customers' own send times, so the waits are known.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{Days, Utc};
use inbox_core::model::Role;
use inbox_e2e::{Backend, Behaviour, TestApp, both_backends, json_of, str_of, wait_for};
use serde_json::{Value, json};

both_backends!(
    response_times_as_the_contract_says,
    business_hours_apply_from_their_time,
    an_sla_breach_is_recorded_once_and_shown,
);

/// A customer's message sent `ago_s` seconds ago; returns its conversation's id.
async fn customer_wrote(
    app: &TestApp,
    channel: &inbox_core::model::Channel,
    handle: &str,
    ago_s: i64,
) -> String {
    let sent_at = Utc::now() - chrono::Duration::seconds(ago_s);
    let payload = json!({
        "external_id": format!("{handle}-{ago_s}"),
        "from": { "handle": handle, "name": format!("Customer {handle}") },
        "text": "Where is my order?",
        "sent_at": sent_at.to_rfc3339(),
    });
    let response = app
        .post_webhook(channel.id, &channel.secret, &payload)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_for(Duration::from_secs(10), "the conversation", async || {
        app.conversations()
            .await
            .into_iter()
            .find(|c| c["contact_handle"] == handle)
            .map(|c| str_of(&c, "id").to_owned())
    })
    .await
}

/// The report's range: yesterday to tomorrow (UTC), so no sample falls off an edge.
fn around_today() -> String {
    let today = Utc::now().date_naive();
    format!("from={}&to={}", today - Days::new(1), today + Days::new(1))
}

async fn report(app: &TestApp, query: &str) -> Value {
    app.get_json(&format!(
        "/api/v1/reports/response-times?{query}&{}",
        around_today()
    ))
    .await
}

fn one_group(report: &Value) -> &Value {
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report:#}");
    &groups[0]
}

async fn response_times_as_the_contract_says(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    // Two customers waiting one and two hours; the admin answers both, then resolves one.
    let first = customer_wrote(&app, &channel, "u-1", 3_600).await;
    let second = customer_wrote(&app, &channel, "u-2", 7_200).await;
    app.agent_writes(&first, "a note is no answer", true).await;
    app.agent_writes(&first, "It ships today.", false).await;
    app.agent_writes(&second, "It shipped.", false).await;
    json_of(
        app.api_patch(
            &format!("/api/v1/conversations/{first}"),
            &json!({"status": "resolved"}),
        )
        .await,
        StatusCode::OK,
        "resolve",
    )
    .await;

    let by_agent = report(&app, "metric=frt&group_by=agent").await;
    assert_eq!(by_agent["metric"], "frt");
    assert_eq!(by_agent["definition"], "frt.v1");
    assert_eq!(by_agent["hours"], "calendar");
    let group = one_group(&by_agent);
    assert_eq!(group["key"], app.admin.id.to_string());
    assert_eq!(group["name"], app.admin.name.as_str());
    assert_eq!(group["count"], 2);
    // Exact nearest-rank percentiles of {~3600, ~7200}: p50 is the smaller, p90/p95 the larger.
    let p50 = group["p50_s"].as_i64().unwrap();
    let p95 = group["p95_s"].as_i64().unwrap();
    assert!((3_600..3_660).contains(&p50), "{group}");
    assert!((7_200..7_260).contains(&p95), "{group}");
    assert_eq!(group["p90_s"], group["p95_s"]);
    let mean = group["mean_s"].as_f64().unwrap();
    assert!((mean - (p50 + p95) as f64 / 2.0).abs() < 1.0, "{group}");

    let by_channel = report(&app, "metric=nrt&group_by=channel").await;
    assert_eq!(by_channel["definition"], "nrt.v1");
    let group = one_group(&by_channel);
    assert_eq!(group["key"], channel.id.to_string());
    assert_eq!(group["name"], "e2e webhook");
    assert_eq!(group["count"], 2);

    json_of(
        app.api_patch(
            &format!("/api/v1/conversations/{second}"),
            &json!({"labels": ["vip"]}),
        )
        .await,
        StatusCode::OK,
        "label",
    )
    .await;
    let by_label = report(&app, "metric=frt&group_by=label").await;
    let group = one_group(&by_label);
    assert_eq!((&group["key"], &group["count"]), (&json!("vip"), &json!(1)));
    assert_eq!(
        by_label["total"]["count"], 1,
        "unlabelled samples are in no label's group"
    );
    let vip_only = report(&app, "metric=frt&group_by=agent&label=vip").await;
    assert_eq!(one_group(&vip_only)["count"], 1);

    let resolution = report(&app, "metric=resolution&group_by=day").await;
    assert_eq!(resolution["total"]["count"], 1, "{resolution:#}");
    // Without a schedule, business time is calendar time.
    let business = report(&app, "metric=frt&group_by=agent&hours=business").await;
    assert_eq!(business["hours"], "business");
    assert_eq!(one_group(&business)["p50_s"], p50);

    // The same as CSV.
    let response = app
        .api_get(&format!(
            "/api/v1/reports/response-times?metric=frt&group_by=agent&format=csv&{}",
            around_today()
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "key,name,count,mean_s,p50_s,p90_s,p95_s,sla_met_pct"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with(&format!("\"{}\",\"{}\",2,", app.admin.id, app.admin.name)),
        "{csv}"
    );

    // Volume: two opened, one resolved.
    let volume = app
        .get_json(&format!("/api/v1/reports/volume?{}", around_today()))
        .await;
    let days = volume["days"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    let sum = |field: &str| days.iter().map(|d| d[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("opened"), sum("resolved")), (2, 1), "{volume:#}");

    // Bad input names the field; no token, no report.
    for (query, field) in [
        ("metric=speed", "metric"),
        ("group_by=team", "group_by"),
        ("hours=office", "hours"),
        ("tz=Mars/Olympus", "tz"),
        ("from=2026-12-02&to=2026-12-01", "to"),
        ("format=xml", "format"),
    ] {
        let refusal = json_of(
            app.api_get(&format!("/api/v1/reports/response-times?{query}"))
                .await,
            StatusCode::BAD_REQUEST,
            query,
        )
        .await;
        assert_eq!(refusal["field"], field, "{query}: {refusal}");
    }
    let anonymous = app
        .client
        .get(app.url("/api/v1/reports/response-times"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn business_hours_apply_from_their_time(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let before = customer_wrote(&app, &channel, "u-1", 600).await;
    app.agent_writes(&before, "Answered before the change.", false)
        .await;

    // From now on, closed every day of the week: no business seconds at all.
    let closed = json!({"schedule": {"time_zone": "Europe/Berlin"}});
    let set = json_of(
        app.client
            .put(app.url("/api/v1/business-hours"))
            .bearer_auth(&app.token)
            .json(&closed)
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
        "set the default schedule",
    )
    .await;
    assert_eq!(set["current"]["time_zone"], "Europe/Berlin", "{set:#}");
    assert_eq!(set["changes"].as_array().unwrap().len(), 1);

    let after = customer_wrote(&app, &channel, "u-2", 0).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.agent_writes(&after, "Answered after the change.", false)
        .await;

    let business = report(&app, "metric=frt&group_by=channel&hours=business").await;
    let calendar = report(&app, "metric=frt&group_by=channel&hours=calendar").await;
    let (b, c) = (one_group(&business), one_group(&calendar));
    assert_eq!(b["count"], 2);
    // The earlier reply keeps its figure (no schedule then: business = calendar, ~600 s); the
    // later one counts no business time.
    assert_eq!(b["p50_s"], 0, "{business:#}");
    assert!(b["p95_s"].as_i64().unwrap() >= 600, "{business:#}");
    assert_eq!(b["p95_s"], c["p95_s"]);
    assert!(c["p50_s"].as_i64().unwrap() >= 1, "{calendar:#}");

    // The past cannot be rescheduled; a bad schedule names its field; agents may not change it.
    for (body, field) in [
        (
            json!({"schedule": null, "effective_at": "2020-01-01T00:00:00Z"}),
            "effective_at",
        ),
        (
            json!({"schedule": {"time_zone": "Europe/Berlin", "monday": ["17:00-09:00"]}}),
            "schedule.monday",
        ),
        (
            json!({"schedule": {"time_zone": "Moon/Base"}}),
            "schedule.time_zone",
        ),
    ] {
        let refusal = json_of(
            app.client
                .put(app.url("/api/v1/business-hours"))
                .bearer_auth(&app.token)
                .json(&body)
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            field,
        )
        .await;
        assert_eq!(refusal["field"], field, "{refusal}");
    }
    let (_, agent_token) = app.create_agent("bo@example.com", "Bo", Role::Agent).await;
    let forbidden = app
        .client
        .put(app.url(&format!("/api/v1/channels/{}/business-hours", channel.id)))
        .bearer_auth(&agent_token)
        .json(&closed)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    // Reading is for every agent; the channel follows the default (no schedule of its own).
    let own = json_of(
        app.client
            .get(app.url(&format!("/api/v1/channels/{}/business-hours", channel.id)))
            .bearer_auth(&agent_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
        "the channel's schedule",
    )
    .await;
    assert_eq!(own["current"], Value::Null);
}

async fn an_sla_breach_is_recorded_once_and_shown(backend: Backend) {
    let (app, _receiver, channel) = TestApp::with_webhook_channel(backend, Behaviour::Accept).await;
    let policy = json_of(
        app.api_post(
            "/api/v1/sla-policies",
            &json!({"name": "Within a minute", "first_reply_minutes": 1, "business_hours": false}),
        )
        .await,
        StatusCode::CREATED,
        "add a policy",
    )
    .await;
    assert_eq!(policy["first_reply_s"], 60);
    for (body, field) in [
        (json!({"name": "none"}), "first_reply_minutes"),
        (json!({"name": "", "first_reply_minutes": 1}), "name"),
        (
            json!({"name": "x", "resolution_minutes": 0}),
            "resolution_minutes",
        ),
    ] {
        let refusal = json_of(
            app.api_post("/api/v1/sla-policies", &body).await,
            StatusCode::BAD_REQUEST,
            field,
        )
        .await;
        assert_eq!(refusal["field"], field, "{refusal}");
    }

    // Waiting for ten minutes: overdue since nine.
    let id = customer_wrote(&app, &channel, "u-1", 600).await;
    let shown = app.conversation(&id).await;
    assert_eq!(shown["sla_target"], "first_reply", "{shown:#}");
    let due = app.get_json("/api/v1/conversations?sort=due").await;
    assert_eq!(due["items"][0]["id"], id.as_str());

    // The watcher records the breach within its period, once.
    let events_path = format!("/api/v1/conversations/{id}/events");
    let breaches = |events: &Value| {
        events
            .as_array()
            .or_else(|| events["items"].as_array())
            .map(|rows| rows.iter().filter(|e| e["kind"] == "sla_breached").count())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(30), "the breach", async || {
        (breaches(&app.get_json(&events_path).await) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(breaches(&app.get_json(&events_path).await), 1);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("inbox_sla_breaches_total{target=\"first_reply\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(counted >= 1.0, "{metrics}");

    // The list and the conversation say so.
    let browser = inbox_e2e::session::Browser::as_agent(&app, &app.admin).await;
    let (_, list) = browser.get("/inbox?sort=due").await;
    assert!(list.contains("first reply overdue by"), "{list}");
    let (_, page) = browser.get(&format!("/conversations/{id}")).await;
    assert!(page.contains("class=\"due overdue\""), "{page}");

    // Answered late: over target in the report.
    app.agent_writes(&id, "Sorry for the wait.", false).await;
    let report = report(&app, "metric=frt&group_by=channel").await;
    assert_eq!(report["sla_met_pct"], 0.0, "{report:#}");
    assert_eq!(one_group(&report)["sla_met_pct"], 0.0);
}
