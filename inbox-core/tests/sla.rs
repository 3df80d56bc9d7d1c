//! SLA targets on both backends: the deadline a policy gives a conversation, kept by the changes
//! that move it; a passed deadline recorded as a breach exactly once (a log row and a domain
//! event); samples marked within or over target, and reports' attainment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use inbox_core::actions;
use inbox_core::metrics::Metric;
use inbox_core::reports::{GroupBy, Hours, Range, ReportQuery, response_times};
use inbox_core::store::{ConversationFilter, ConversationSort, NewSlaPolicy};
use inbox_core::timers::record_breaches;

use common::*;

contract!(a_passed_deadline_is_breached_once, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "ada@example.com").await;
    store
        .add_sla_policy(&NewSlaPolicy {
            name: "Five minutes".into(),
            channel_id: None,
            label: None,
            first_reply_s: Some(300),
            next_reply_s: None,
            resolution_s: Some(86_400),
            business_hours: false,
        })
        .await
        .unwrap();

    // Waiting ten minutes (overdue) and one minute (due in four).
    let asked = secs(now_ms(), -600);
    let (_, late, _) = stored(
        &ingest_one(
            &store,
            &sent(inbound(&channel, "l-1", "late", "hello?"), asked),
        )
        .await,
    );
    let (_, fresh, _) = stored(
        &ingest_one(
            &store,
            &sent(inbound(&channel, "f-1", "fresh", "hi"), secs(now_ms(), -60)),
        )
        .await,
    );
    let late_now = conversation(&store, late).await;
    assert_eq!(late_now.sla_due_at, Some(secs(asked, 300)));
    assert_eq!(late_now.sla_target.as_deref(), Some("first_reply"));

    // Soonest deadline first; conversations without one are not in that list.
    let due_first = store
        .list_conversations(
            &ConversationFilter {
                sort: ConversationSort::Due,
                ..ConversationFilter::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    let order: Vec<_> = due_first.items.iter().map(|c| c.id).collect();
    assert_eq!(order, [late, fresh]);

    // One breach, however often the watcher runs.
    let breaches = record_breaches(&store).await.unwrap();
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    assert_eq!(breaches[0].conversation_id, late);
    assert!(record_breaches(&store).await.unwrap().is_empty());
    let kinds = event_kinds(&store, late).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "sla_breached").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        !event_kinds(&store, fresh)
            .await
            .contains(&"sla_breached".to_owned())
    );

    // The replies: the late one over target, the fresh one within; the next deadline is the
    // resolution's.
    actions::post_message(&store, late, &agent, "sorry", false, &[])
        .await
        .unwrap();
    actions::post_message(&store, fresh, &agent, "hello", false, &[])
        .await
        .unwrap();
    let answered = conversation(&store, fresh).await;
    assert_eq!(answered.sla_target.as_deref(), Some("resolution"));
    let first_replies = |id| {
        let store = store.clone();
        async move {
            store
                .metric_samples(id)
                .await
                .unwrap()
                .into_iter()
                .filter(|s| s.metric == Metric::FirstReply)
                .count()
        }
    };
    assert_eq!(first_replies(late).await, 1);
    let today = Utc::now().date_naive();
    let report = response_times(
        &store,
        &ReportQuery {
            metric: Metric::FirstReply,
            range: Range::new(
                today - chrono::Days::new(1),
                today + chrono::Days::new(1),
                chrono_tz::Tz::UTC,
            )
            .unwrap(),
            group_by: GroupBy::Channel,
            hours: Hours::Calendar,
            channel: None,
            agent: None,
            label: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.total_sla.targeted, 2);
    assert_eq!(report.total_sla.met, 1);
    assert_eq!(report.groups[0].sla.pct(), Some(50.0));

    // Resolved: nothing runs, nothing is due.
    set_status(
        &store,
        fresh,
        &agent,
        inbox_core::model::ConversationStatus::Resolved,
    )
    .await;
    assert_eq!(conversation(&store, fresh).await.sla_due_at, None);
});
