//! The response-time metrics read from the log the product writes (the funnel and the agents'
//! actions), on both backends: what docs/metrics.md defines on hand-built timelines holds for the
//! rows the product stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use inbox_core::actions;
use inbox_core::business_hours::ScheduleHistory;
use inbox_core::envelope::Automated;
use inbox_core::metrics::{Happening, Metric, measure, timeline};
use inbox_core::model::ConversationStatus;
use inbox_core::reports::rebuild;
use inbox_core::store::test_support::RawPool;

use common::*;

contract!(
    the_log_of_a_conversation_measures_as_defined,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let agent = new_agent(&store, "ada@example.com").await;
        // The customer wrote ten minutes ago; an auto-reply from their side came after it.
        let asked = secs(now_ms(), -600);
        let question = sent(inbound(&channel, "q-1", "42", "Where is my order?"), asked);
        let (_, conversation, _) = stored(&ingest_one(&store, &question).await);
        let mut auto = sent(inbound(&channel, "q-2", "42", "I am away"), secs(asked, 60));
        auto.automated = Some(Automated::AutoReply);
        ingest_one(&store, &auto).await;

        // A note, then the reply, then the resolution, by the agent (now).
        actions::post_message(&store, conversation, &agent, "checking", true, &[])
            .await
            .unwrap();
        actions::post_message(&store, conversation, &agent, "It ships today.", false, &[])
            .await
            .unwrap();
        set_status(&store, conversation, &agent, ConversationStatus::Resolved).await;

        // The customer writes again: a second cycle, not answered yet.
        let again = sent(inbound(&channel, "q-3", "42", "Thanks!"), secs(now_ms(), 1));
        ingest_one(&store, &again).await;

        let log = store.conversation_events(conversation).await.unwrap();
        let entries = timeline(&log);
        let kinds: Vec<&str> = entries
            .iter()
            .map(|e| match e.happening {
                Happening::Opened => "opened",
                Happening::CustomerMessage => "customer",
                Happening::AutomatedInbound => "automated inbound",
                Happening::AgentReply { agent: who } => {
                    assert_eq!(who, agent.id);
                    "reply"
                }
                Happening::AutomatedReply => "automated reply",
                Happening::Note => "note",
                Happening::Status(status) => status.as_str(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "opened",
                "customer",
                "automated inbound",
                "note",
                "reply",
                "resolved",
                "open",
                "customer"
            ]
        );

        let samples = measure(&entries, &ScheduleHistory::calendar());
        let of =
            |metric: Metric| -> Vec<_> { samples.iter().filter(|s| s.metric == metric).collect() };
        let frt = of(Metric::FirstReply);
        assert_eq!(frt.len(), 1, "{samples:?}");
        // From the customer's own time (ten minutes ago) to the reply, however late it was ingested.
        assert_eq!(frt[0].started_at, asked);
        assert!((600..660).contains(&frt[0].calendar_s), "{:?}", frt[0]);
        assert_eq!(frt[0].agent, Some(agent.id));
        assert_eq!(
            of(Metric::Reply).len(),
            1,
            "the second cycle's wait is not answered yet"
        );
        assert_eq!(of(Metric::Resolution).len(), 1);
        assert_eq!(of(Metric::FirstResolution).len(), 1);
    }
);

contract!(rebuild_stores_what_the_log_measures, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "ada@example.com").await;
    let mut conversations = Vec::new();
    for i in 0..5 {
        let m = sent(
            inbound(&channel, &format!("r-{i}"), &format!("c-{i}"), "help"),
            secs(now_ms(), -600),
        );
        let (_, conversation, _) = stored(&ingest_one(&store, &m).await);
        if i % 2 == 0 {
            actions::post_message(&store, conversation, &agent, "done", false, &[])
                .await
                .unwrap();
            set_status(&store, conversation, &agent, ConversationStatus::Resolved).await;
        }
        conversations.push(conversation);
    }

    let rebuilt = rebuild(&store, None, |_| {}).await.unwrap();
    assert_eq!(rebuilt.conversations, 5);
    let mut total = 0;
    for conversation in &conversations {
        let log = store.conversation_events(*conversation).await.unwrap();
        let expected = measure(&timeline(&log), &ScheduleHistory::calendar());
        let stored = store.metric_samples(*conversation).await.unwrap();
        assert_eq!(stored, expected, "{conversation}");
        total += expected.len() as u64;
    }
    assert_eq!(rebuilt.samples, total);
    // Answered and resolved: frt, nrt, resolution, first resolution and both waits.
    assert_eq!(
        store.metric_samples(conversations[0]).await.unwrap().len(),
        6
    );
    assert_eq!(store.metric_samples(conversations[1]).await.unwrap(), []);

    // Again: the same rows, not twice as many.
    assert_eq!(rebuild(&store, None, |_| {}).await.unwrap(), rebuilt);
    assert_eq!(
        store.metric_samples(conversations[0]).await.unwrap().len(),
        6
    );

    // Since a time after every log row: nothing to go through.
    let later = secs(now_ms(), 3600);
    assert_eq!(
        store
            .conversations_to_measure_count(Some(later))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        rebuild(&store, Some(later), |_| {})
            .await
            .unwrap()
            .conversations,
        0
    );
    let earlier = secs(now_ms(), -3600);
    assert_eq!(
        store
            .conversations_to_measure_count(Some(earlier))
            .await
            .unwrap(),
        5
    );
});

/// Each conversation's stored samples, in order.
async fn stored_samples(
    store: &inbox_core::store::Store,
    conversations: &[inbox_core::ids::ConversationId],
) -> Vec<Vec<inbox_core::metrics::Sample>> {
    let mut all = Vec::new();
    for conversation in conversations {
        all.push(store.metric_samples(*conversation).await.unwrap());
    }
    all
}

/// Every report the roll-ups answer equals the same report from the samples themselves.
async fn roll_ups_agree_with_samples(store: &inbox_core::store::Store) {
    use inbox_core::reports::{
        GroupBy, Hours, Range, ReportQuery, response_times, response_times_from_samples,
    };
    let today = chrono::Utc::now().date_naive();
    let range = Range::new(
        today - chrono::Days::new(7),
        today + chrono::Days::new(1),
        chrono_tz::Asia::Kolkata,
    )
    .unwrap();
    let mut counted = 0;
    for metric in Metric::ALL {
        for group_by in [GroupBy::Day, GroupBy::Agent, GroupBy::Channel] {
            for hours in [Hours::Calendar, Hours::Business] {
                let query = ReportQuery {
                    metric,
                    range,
                    group_by,
                    hours,
                    channel: None,
                    agent: None,
                    label: None,
                };
                let mut rolled = response_times(store, &query).await.unwrap();
                let mut scanned = response_times_from_samples(store, &query).await.unwrap();
                rolled.values.sort_unstable();
                scanned.values.sort_unstable();
                assert_eq!(rolled, scanned, "{metric:?} {group_by:?} {hours:?}");
                counted += rolled.values.len();
            }
        }
    }
    assert!(counted > 0);
}

contract!(
    the_samples_kept_with_each_change_equal_a_rebuild,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let agent = new_agent(&store, "ada@example.com").await;
        // Office hours for every channel, from before anything happened: business time differs
        // from calendar time, and both are kept incrementally.
        let office: inbox_core::business_hours::ScheduleConfig =
            serde_json::from_value(serde_json::json!({
                "time_zone": "Europe/Berlin",
                "monday": ["09:00-17:00"], "tuesday": ["09:00-17:00"],
                "wednesday": ["09:00-17:00"], "thursday": ["09:00-17:00"],
                "friday": ["09:00-17:00"]
            }))
            .unwrap();
        store
            .add_schedule(None, secs(now_ms(), -86_400 * 30), Some(&office), None)
            .await
            .unwrap();

        let mut conversations = Vec::new();
        for i in 0..4 {
            let handle = format!("c-{i}");
            let m = sent(
                inbound(&channel, &format!("a-{i}"), &handle, "help"),
                secs(now_ms(), -86_400 * 3),
            );
            let (_, conversation, _) = stored(&ingest_one(&store, &m).await);
            conversations.push(conversation);
            // A second message, then one sent before it that arrives late (out of order).
            let later = sent(
                inbound(&channel, &format!("b-{i}"), &handle, "anyone?"),
                secs(now_ms(), -86_400 * 2),
            );
            ingest_one(&store, &later).await;
            if i % 2 == 0 {
                let late = sent(
                    inbound(&channel, &format!("c-{i}"), &handle, "(sent first)"),
                    secs(now_ms(), -86_400 * 4),
                );
                ingest_one(&store, &late).await;
            }
            actions::post_message(&store, conversation, &agent, "a note", true, &[])
                .await
                .unwrap();
            if i != 3 {
                actions::post_message(&store, conversation, &agent, "on it", false, &[])
                    .await
                    .unwrap();
                set_status(&store, conversation, &agent, ConversationStatus::Pending).await;
                set_status(&store, conversation, &agent, ConversationStatus::Resolved).await;
            }
            if i == 1 {
                // Reopened by the customer: a second cycle, answered. (Apart in time from the
                // resolution and the reply, which the log orders by time.)
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let again = sent(
                    inbound(&channel, &format!("d-{i}"), &handle, "one more thing"),
                    now_ms(),
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                ingest_one(&store, &again).await;
                actions::post_message(&store, conversation, &agent, "sure", false, &[])
                    .await
                    .unwrap();
            }
        }

        let incremental = stored_samples(&store, &conversations).await;
        let schedules = store.schedules().await.unwrap();
        for (conversation, samples) in conversations.iter().zip(&incremental) {
            let log = store.conversation_events(*conversation).await.unwrap();
            let expected = measure(&timeline(&log), &schedules.history(&channel.id));
            assert_eq!(samples, &expected, "{conversation}");
        }
        // Business time counted, not calendar time, for a wait across a weekend or a night.
        assert!(
            incremental
                .iter()
                .flatten()
                .any(|s| s.business_s < s.calendar_s),
            "{incremental:?}"
        );
        // The reopened conversation has both cycles' replies.
        assert_eq!(
            incremental[1]
                .iter()
                .filter(|s| s.metric == Metric::FirstReply)
                .count(),
            2
        );

        roll_ups_agree_with_samples(&store).await;

        rebuild(&store, None, |_| {}).await.unwrap();
        assert_eq!(stored_samples(&store, &conversations).await, incremental);
        roll_ups_agree_with_samples(&store).await;

        // Changes after a rebuild read on from where it left off.
        actions::post_message(&store, conversations[3], &agent, "found it", false, &[])
            .await
            .unwrap();
        let after = stored_samples(&store, &conversations).await;
        rebuild(&store, None, |_| {}).await.unwrap();
        assert_eq!(stored_samples(&store, &conversations).await, after);
        assert!(after[3].len() > incremental[3].len());
        roll_ups_agree_with_samples(&store).await;

        // A database whose samples predate the roll-ups gets them when it is migrated.
        let sql = "DELETE FROM metric_rollups";
        match store.raw_pool() {
            RawPool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            RawPool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
        store.migrate().await.unwrap();
        roll_ups_agree_with_samples(&store).await;
    }
);
