//! The Store's contract outside the funnel: channels and agents, dead letters' filters, list and
//! history pages, agents' actions, relay leases, cursors and snoozes; one suite run unchanged
//! against SQLite and PostgreSQL (the funnel's is in `funnel_contract.rs`).
//!
//! Every `contract!` below becomes a module with a `sqlite` and a `postgres` test, each on a fresh
//! database (see `common`). PostgreSQL is `INBOX_TEST_DATABASE_URL` or the local default server;
//! when it is unreachable the `postgres` tests fail, they are never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use chrono::Utc;
use inbox_core::actions;
use inbox_core::envelope::{ChannelKind, DeliveryStatus};
use inbox_core::ids::{AgentId, ChannelId, MessageId};
use inbox_core::model::{ConversationStatus, Direction, Role, ThreadReason, to_millis};
use inbox_core::store::{
    ConversationFilter, ConversationPatch, DeadLetterFilter, PageCursor, StoreError,
};
use serde_json::json;

use common::*;

contract!(channels_and_agents, |store| async move {
    // Channels.
    let first = store
        .create_channel(
            ChannelKind::WEBHOOK,
            "test",
            json!({"url": "https://example.com/out"}),
            "secret",
        )
        .await
        .unwrap();
    let second = store
        .create_channel(ChannelKind::named("telegram"), "bot", json!({}), "s2")
        .await
        .unwrap();
    let read = store.channel(first.id).await.unwrap().expect("channel");
    assert_eq!(read.id, first.id);
    assert_eq!(read.kind, ChannelKind::WEBHOOK);
    assert_eq!(read.name, "test");
    assert_eq!(read.config, json!({"url": "https://example.com/out"}));
    assert_eq!(read.secret, "secret");
    assert!(read.enabled);
    assert_eq!(to_millis(read.created_at), to_millis(first.created_at));
    assert_eq!(store.channel(ChannelId::new()).await.unwrap(), None);

    let all = store.channels().await.unwrap();
    let ids: Vec<ChannelId> = all.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![first.id, second.id], "creation order");
    assert_eq!(all[1].kind, ChannelKind::named("telegram"));

    assert!(store.disable_channel(first.id).await.unwrap());
    assert!(!store.channel(first.id).await.unwrap().unwrap().enabled);
    assert!(store.channel(second.id).await.unwrap().unwrap().enabled);
    assert!(!store.disable_channel(ChannelId::new()).await.unwrap());

    // Agents.
    let ada = store
        .create_agent(
            "ada@example.com",
            "Ada",
            Role::Admin,
            Some("$argon2id$hash"),
        )
        .await
        .unwrap();
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.role, Role::Admin);
    let read = store.agent(ada.id).await.unwrap().expect("agent");
    assert_eq!(
        (read.id, read.email.as_str(), read.name.as_str(), read.role),
        (ada.id, "ada@example.com", "Ada", Role::Admin)
    );
    match store
        .create_agent("ada@example.com", "Other Ada", Role::Agent, None)
        .await
    {
        Err(StoreError::Invalid { field, message }) => {
            assert_eq!(field, "email");
            assert!(message.contains("ada@example.com"), "{message}");
        }
        other => panic!("duplicate email must be Invalid{{email}}, got {other:?}"),
    }
    let bob = new_agent(&store, "bob@example.com").await;
    assert_eq!(store.agent_count().await.unwrap(), 2);
    assert_eq!(store.agent(AgentId::new()).await.unwrap(), None);

    // API tokens.
    let token = store.create_api_token(ada.id, "cli").await.unwrap();
    assert!(token.starts_with("inbox_"), "{token}");
    let bob_token = store.create_api_token(bob.id, "ci").await.unwrap();
    assert_ne!(token, bob_token);
    let found = store.agent_by_token(&token).await.unwrap().expect("agent");
    assert_eq!(
        (found.id, found.email.as_str()),
        (ada.id, "ada@example.com")
    );
    let found = store
        .agent_by_token(&bob_token)
        .await
        .unwrap()
        .expect("agent");
    assert_eq!(found.id, bob.id);
    assert_eq!(store.agent_by_token("inbox_wrong").await.unwrap(), None);
    assert_eq!(store.agent_by_token("").await.unwrap(), None);
});

contract!(dead_letters_filter_and_settle, |store| async move {
    let channel = webhook_channel(&store).await;
    let nul = store
        .insert_dead_letter("inbound", Some(channel.id), "p1", "bad\0Field 100%_sure")
        .await
        .unwrap();
    let other = store
        .insert_dead_letter("inbound", None, "p2", "something else")
        .await
        .unwrap();
    let find = async |filter: DeadLetterFilter| {
        let found = store
            .find_dead_letters(&DeadLetterFilter {
                limit: 50,
                ..filter
            })
            .await
            .unwrap();
        found.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    // Error text: case-insensitive, NUL and LIKE's wildcards taken literally.
    assert_eq!(
        find(DeadLetterFilter {
            error: Some("BAD\0field 100%_".into()),
            ..Default::default()
        })
        .await,
        [nul]
    );
    assert!(
        find(DeadLetterFilter {
            error: Some("100%x".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        find(DeadLetterFilter {
            channel: Some(channel.id),
            ..Default::default()
        })
        .await,
        [nul]
    );
    assert_eq!(
        find(DeadLetterFilter::default()).await,
        [other, nul],
        "newest first"
    );
    let later = Utc::now() + chrono::Duration::minutes(1);
    assert!(
        find(DeadLetterFilter {
            since: Some(later),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    let counts = store.open_dead_letter_counts().await.unwrap();
    assert_eq!((counts[&Some(channel.id)], counts[&None]), (1, 1));
    // Discarded: settled once, listed only with the settled ones.
    assert!(store.discard_dead_letter(other).await.unwrap());
    assert!(!store.discard_dead_letter(other).await.unwrap());
    assert_eq!(find(DeadLetterFilter::default()).await, [nul]);
    assert_eq!(
        find(DeadLetterFilter {
            include_resolved: true,
            ..Default::default()
        })
        .await,
        [other, nul]
    );
    let settled = store.dead_letter(other).await.unwrap().unwrap();
    assert_eq!(
        settled.resolution,
        Some(inbox_core::store::Resolution::Discarded)
    );
});

contract!(pagination, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@example.com").await;
    let base = secs(now_ms(), -3600);
    let mut conversations = Vec::new();
    for i in 0..7 {
        let m = sent(
            inbound(&channel, &format!("c-{i}"), &format!("user-{i}"), "hi"),
            secs(base, i),
        );
        conversations.push(stored(&ingest_one(&store, &m).await).1);
    }
    let newest_first: Vec<_> = conversations.iter().rev().copied().collect();

    let all = ConversationFilter::default();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut sizes = Vec::new();
    loop {
        let page = store
            .list_conversations(&all, cursor.as_ref(), 3)
            .await
            .unwrap();
        sizes.push(page.items.len());
        seen.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(PageCursor::decode(&next).expect("a valid cursor")),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination terminates");
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(
        seen, newest_first,
        "newest first, no overlap, nothing missed"
    );

    // Equal last_message_at: the id breaks the tie and pages still neither overlap nor skip.
    let tie = secs(base, 100);
    let mut tied = Vec::new();
    for i in 0..4 {
        let m = sent(
            inbound(
                &channel,
                &format!("t-{i}"),
                &format!("tie-{i}"),
                "same time",
            ),
            tie,
        );
        tied.push(stored(&ingest_one(&store, &m).await).1);
    }
    let mut seen_all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_conversations(&all, cursor.as_ref(), 3)
            .await
            .unwrap();
        seen_all.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = PageCursor::decode(&next),
            None => break,
        }
    }
    assert_eq!(seen_all.len(), 11);
    assert_eq!(seen_all.iter().collect::<HashSet<_>>().len(), 11);
    let mut tied_desc = tied.clone();
    tied_desc.sort();
    tied_desc.reverse();
    assert_eq!(seen_all[..4], tied_desc[..]);
    assert_eq!(seen_all[4..], newest_first[..]);

    // Filters.
    for id in &conversations[0..2] {
        set_status(&store, *id, &agent, ConversationStatus::Resolved).await;
    }
    for id in &conversations[2..5] {
        actions::update_conversation(
            &store,
            *id,
            &agent,
            &ConversationPatch {
                assignee: Some(Some(agent.id)),
                ..ConversationPatch::default()
            },
        )
        .await
        .unwrap();
    }
    let ids = |filter: ConversationFilter| {
        let store = store.clone();
        async move {
            store
                .list_conversations(&filter, None, 50)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    let resolved = ids(ConversationFilter {
        status: Some(ConversationStatus::Resolved),
        ..ConversationFilter::default()
    })
    .await;
    assert_eq!(resolved, [conversations[1], conversations[0]]);
    let open = ids(ConversationFilter {
        status: Some(ConversationStatus::Open),
        ..ConversationFilter::default()
    })
    .await;
    assert_eq!(open.len(), 9);
    assert!(!open.contains(&conversations[0]) && !open.contains(&conversations[1]));
    let assigned = ids(ConversationFilter {
        assignee: Some(Some(agent.id)),
        ..ConversationFilter::default()
    })
    .await;
    assert_eq!(
        assigned,
        [conversations[4], conversations[3], conversations[2]]
    );
    let unassigned = ids(ConversationFilter {
        assignee: Some(None),
        ..ConversationFilter::default()
    })
    .await;
    assert_eq!(unassigned.len(), 8);
    assert!(assigned.iter().all(|id| !unassigned.contains(id)));
    let nobody = ids(ConversationFilter {
        assignee: Some(Some(AgentId::new())),
        ..ConversationFilter::default()
    })
    .await;
    assert!(nobody.is_empty());
    let open_unassigned = ids(ConversationFilter {
        status: Some(ConversationStatus::Open),
        assignee: Some(None),
        ..ConversationFilter::default()
    })
    .await;
    assert_eq!(open_unassigned.len(), 6);
    let other_channel = webhook_channel(&store).await;
    let (_, elsewhere, _) =
        stored(&ingest_one(&store, &inbound(&other_channel, "o-1", "o", "hi")).await);
    let on_other = ids(ConversationFilter {
        channel: Some(other_channel.id),
        ..ConversationFilter::default()
    })
    .await;
    assert_eq!(on_other, [elsewhere]);

    // Message history, backwards with `before`.
    let talk = webhook_channel(&store).await;
    let mut sent_ids = Vec::new();
    let mut history_conversation = None;
    for i in 0..7 {
        let m = sent(
            inbound(&talk, &format!("h-{i}"), "chatty", &format!("message {i}")),
            secs(base, i),
        );
        sent_ids.push(m.id);
        history_conversation = Some(stored(&ingest_one(&store, &m).await).1);
    }
    let history_conversation = history_conversation.unwrap();
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .messages(history_conversation, before.as_ref(), 3)
            .await
            .unwrap();
        let ids: Vec<MessageId> = page.items.iter().map(|m| m.id).collect();
        let times: Vec<_> = page.items.iter().map(|m| m.sent_at).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "oldest first in a page"
        );
        pages.push(ids);
        match page.next_before {
            Some(next) => before = Some(PageCursor::decode(&next).expect("a valid cursor")),
            None => break,
        }
        assert!(pages.len() < 10, "pagination terminates");
    }
    assert_eq!(
        pages,
        [
            sent_ids[4..7].to_vec(),
            sent_ids[1..4].to_vec(),
            sent_ids[0..1].to_vec()
        ]
    );
});

contract!(agent_actions, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = store
        .create_agent("agent@example.com", "Agent Smith", Role::Agent, None)
        .await
        .unwrap();
    let base = secs(now_ms(), -600);
    let first = sent(inbound(&channel, "in-1", "42", "question"), base);
    let (_, conversation_id, _) = stored(&ingest_one(&store, &first).await);
    let second = sent(inbound(&channel, "in-2", "42", "hello?"), secs(base, 5));
    ingest_one(&store, &second).await;
    // An older message arriving late is not what the reply answers.
    let late = sent(inbound(&channel, "in-0", "42", "earlier"), secs(base, -5));
    ingest_one(&store, &late).await;
    assert_eq!(
        conversation(&store, conversation_id).await.waiting_since,
        Some(secs(base, -5))
    );

    // A reply.
    let posted = actions::post_message(
        &store,
        conversation_id,
        &agent,
        "  Thanks, on it!  ",
        false,
        &[],
    )
    .await
    .unwrap();
    let reply = &posted.message;
    assert_eq!(reply.direction, Direction::Outbound);
    assert_eq!(reply.delivery_status, Some(DeliveryStatus::Queued));
    assert_eq!(reply.text, "Thanks, on it!");
    assert_eq!(reply.agent_id, Some(agent.id));
    assert_eq!(reply.sender_name.as_deref(), Some("Agent Smith"));
    assert_eq!(reply.thread_reason, ThreadReason::Agent);
    assert_eq!(reply.external_id, None);
    assert_eq!(reply.conversation_id, conversation_id);
    assert_eq!(message(&store, reply.id).await, *reply);
    let outbound = posted.outbound.clone().expect("a reply is delivered");
    assert_eq!(outbound.id, reply.id);
    assert_eq!(outbound.to.handle, "42");
    assert_eq!(outbound.thread.in_reply_to.as_deref(), Some("in-2"));
    assert_eq!(outbound.channel_id, channel.id);
    assert_eq!(outbound.channel_kind, ChannelKind::WEBHOOK);
    assert_eq!(outbound.body.text, "Thanks, on it!");
    assert_eq!(outbound.author.as_deref(), Some("Agent Smith"));
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message_id, reply.id);
    assert_eq!(pending[0].message, outbound);
    let c = conversation(&store, conversation_id).await;
    assert_eq!(c.waiting_since, None, "a reply ends the wait");
    assert_eq!(c.unread_count, 0);
    assert_eq!(c.message_count, 4);
    assert_eq!(c.preview, "Thanks, on it!");
    let history_now = history(&store, conversation_id).await;
    assert_eq!(history_now.last().map(|m| m.id), Some(reply.id));

    // A private note: no delivery.
    let note = actions::post_message(
        &store,
        conversation_id,
        &agent,
        "customer is VIP",
        true,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(note.message.direction, Direction::Note);
    assert_eq!(note.message.delivery_status, None);
    assert_eq!(note.outbound, None);
    assert_eq!(store.pending_outbox(10).await.unwrap().len(), 1);
    assert_eq!(conversation(&store, conversation_id).await.message_count, 5);
    let kinds = event_kinds(&store, conversation_id).await;
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["replied".to_owned(), "noted".to_owned()]
    );

    for text in ["", "   \n "] {
        match actions::post_message(&store, conversation_id, &agent, text, false, &[]).await {
            Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "text"),
            other => panic!("empty text must be Invalid{{text}}, got {other:?}"),
        }
    }
    assert!(matches!(
        actions::post_message(
            &store,
            inbox_core::ids::ConversationId::new(),
            &agent,
            "x",
            false,
            &[],
        )
        .await,
        Err(StoreError::NotFound("conversation"))
    ));
    assert_eq!(conversation(&store, conversation_id).await.message_count, 5);

    // The outbox relay.
    store.mark_outbox_published(reply.id).await.unwrap();
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
    assert_eq!(store.requeue_undelivered_outbox().await.unwrap(), 1);
    let requeued = store.pending_outbox(10).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].message_id, reply.id);
    assert_eq!(
        store.requeue_undelivered_outbox().await.unwrap(),
        0,
        "only published ones are requeued"
    );

    // Assignment.
    let events = actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            assignee: Some(Some(agent.id)),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].conversation_id, conversation_id);
    assert_eq!(
        conversation(&store, conversation_id).await.assignee_id,
        Some(agent.id)
    );
    let log = store.conversation_events(conversation_id).await.unwrap();
    let assigned = log.last().expect("an event");
    assert_eq!(assigned.kind, "assigned");
    assert_eq!(assigned.actor_kind, "agent");
    assert_eq!(assigned.actor_id, Some(agent.id.to_string()));
    assert_eq!(assigned.data, json!({"assignee": agent.id}));
    // The same assignment again changes nothing.
    let unchanged = actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            assignee: Some(Some(agent.id)),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    assert!(unchanged.is_empty());
    match actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            assignee: Some(Some(AgentId::new())),
            ..ConversationPatch::default()
        },
    )
    .await
    {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "assignee"),
        other => panic!("unknown agent must be Invalid{{assignee}}, got {other:?}"),
    }
    assert_eq!(
        conversation(&store, conversation_id).await.assignee_id,
        Some(agent.id)
    );
    let before_events = event_kinds(&store, conversation_id).await.len();

    // Labels.
    actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            labels: Some(vec![
                " VIP ".into(),
                "billing".into(),
                "vip".into(),
                "Billing ".into(),
            ]),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        conversation(&store, conversation_id).await.labels,
        ["billing", "vip"]
    );
    let kinds = event_kinds(&store, conversation_id).await;
    assert_eq!(kinds.len(), before_events + 1);
    assert_eq!(kinds.last().map(String::as_str), Some("labeled"));
    match actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            labels: Some(vec!["ok".into(), "  ".into()]),
            ..ConversationPatch::default()
        },
    )
    .await
    {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "labels"),
        other => panic!("an empty label must be Invalid{{labels}}, got {other:?}"),
    }

    // Snoozing.
    match actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            status: Some(ConversationStatus::Snoozed),
            ..ConversationPatch::default()
        },
    )
    .await
    {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "snoozed_until"),
        other => panic!("snoozed without until must be Invalid{{snoozed_until}}, got {other:?}"),
    }
    assert_eq!(
        conversation(&store, conversation_id).await.status,
        ConversationStatus::Open
    );
    let until = secs(now_ms(), 3600);
    actions::update_conversation(
        &store,
        conversation_id,
        &agent,
        &ConversationPatch {
            status: Some(ConversationStatus::Snoozed),
            snoozed_until: Some(until),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
    let snoozed = conversation(&store, conversation_id).await;
    assert_eq!(snoozed.status, ConversationStatus::Snoozed);
    assert_eq!(snoozed.snoozed_until, Some(until));
    // The customer writing wakes it up.
    ingest_one(&store, &inbound(&channel, "in-3", "42", "still there?")).await;
    let woken = conversation(&store, conversation_id).await;
    assert_eq!(woken.status, ConversationStatus::Open);
    assert_eq!(woken.snoozed_until, None);
    assert_eq!(
        woken.labels,
        ["billing", "vip"],
        "ingest keeps agent fields"
    );
    assert_eq!(
        woken.assignee_id,
        Some(agent.id),
        "ingest keeps agent fields"
    );
});

contract!(relay_lease, |store| async move {
    // One outbox relay at a time across processes: PostgreSQL hands the lease to one holder until
    // it is dropped; SQLite has a single process and always grants it.
    let mut first = store.try_relay_lease().await.unwrap().expect("free lease");
    assert!(first.still_held().await);
    let second = store.try_relay_lease().await.unwrap();
    match store.backend() {
        "postgres" => assert!(second.is_none(), "a second relay got the lease"),
        _ => assert!(second.is_some()),
    }
    drop(first);
    let mut taken_over = None;
    for _ in 0..100 {
        taken_over = store.try_relay_lease().await.unwrap();
        if taken_over.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(taken_over.is_some(), "the lease was not released");
});

contract!(cursors, |store| async move {
    let channel = webhook_channel(&store).await;
    let other = webhook_channel(&store).await;
    assert_eq!(store.cursor(channel.id, "uid").await.unwrap(), None);
    store.set_cursor(channel.id, "uid", "100").await.unwrap();
    assert_eq!(
        store.cursor(channel.id, "uid").await.unwrap().as_deref(),
        Some("100")
    );
    store.set_cursor(channel.id, "uid", "250").await.unwrap();
    assert_eq!(
        store.cursor(channel.id, "uid").await.unwrap().as_deref(),
        Some("250")
    );
    assert_eq!(store.cursor(channel.id, "uidvalidity").await.unwrap(), None);
    assert_eq!(store.cursor(other.id, "uid").await.unwrap(), None);
    store.set_cursor(other.id, "uid", "7").await.unwrap();
    assert_eq!(
        store.cursor(channel.id, "uid").await.unwrap().as_deref(),
        Some("250")
    );
    assert_eq!(
        store.cursor(other.id, "uid").await.unwrap().as_deref(),
        Some("7")
    );
});

contract!(snoozes_end_and_contact_timeline, |store| async move {
    // A snooze whose time has passed opens the conversation again, logged as the system's doing.
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@shop.test").await;
    let m = inbound(&channel, "s-1", "42", "hello");
    let (_, conversation, _) = stored(&ingest_one(&store, &m).await);
    let patch = inbox_core::store::ConversationPatch {
        status: Some(inbox_core::model::ConversationStatus::Snoozed),
        // Far enough ahead that a loaded machine still checks "not yet due" in time.
        snoozed_until: Some(Utc::now() + chrono::Duration::milliseconds(1_000)),
        ..Default::default()
    };
    actions::update_conversation(&store, conversation, &agent, &patch)
        .await
        .unwrap();
    assert!(
        actions::wake_snoozed(&store).await.unwrap().is_empty(),
        "not yet due"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_050)).await;
    assert_eq!(actions::wake_snoozed(&store).await.unwrap().len(), 1);
    let woken = store.conversation(conversation).await.unwrap().unwrap();
    assert_eq!(woken.status, inbox_core::model::ConversationStatus::Open);
    assert_eq!(woken.snoozed_until, None);
    let last = store
        .conversation_events(conversation)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor_kind.as_str()),
        ("status_changed", "system")
    );

    // One contact on two channels: one timeline across both, newest page first.
    let other = webhook_channel(&store).await;
    let mut on_other = inbound(&other, "t-1", "other-handle", "from the other channel");
    on_other.from.email = Some("ada@example.com".into());
    let mut linked = inbound(&channel, "s-2", "42", "second on the first channel");
    linked.from.email = Some("ada@example.com".into());
    ingest_one(&store, &linked).await;
    ingest_one(&store, &on_other).await;
    let contact = store
        .conversation(conversation)
        .await
        .unwrap()
        .unwrap()
        .contact_id;
    let page = store.contact_messages(contact, None, 2).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let channels: std::collections::HashSet<_> = page.items.iter().map(|m| m.channel_id).collect();
    assert_eq!(channels.len(), 2, "the timeline spans both channels");
    let cursor =
        inbox_core::store::PageCursor::decode(page.next_before.as_deref().unwrap()).unwrap();
    let older = store
        .contact_messages(contact, Some(&cursor), 2)
        .await
        .unwrap();
    assert_eq!(older.items.len(), 1);
    assert_eq!(older.items[0].external_id.as_deref(), Some("s-1"));
    assert_eq!(older.next_before, None);
});
