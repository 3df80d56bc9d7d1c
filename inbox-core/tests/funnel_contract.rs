//! The ingest funnel's contract: what happens to each inbound record (stored once, threaded,
//! its contact resolved, reopened, dead-lettered, its delivery report applied), one suite run
//! unchanged against SQLite and PostgreSQL.
//!
//! Every `contract!` below becomes a module with a `sqlite` and a `postgres` test, each on a fresh
//! database (see `common`). PostgreSQL is `INBOX_TEST_DATABASE_URL` or the local default server;
//! when it is unreachable the `postgres` tests fail, they are never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use chrono::Utc;
use inbox_core::actions;
use inbox_core::envelope::{
    AttachmentRef, BlobRef, ChannelKind, DeliveryReport, DeliveryStatus, InboundEvent,
};
use inbox_core::identity::EMAIL_NAMESPACE;
use inbox_core::ids::{ChannelId, MessageId};
use inbox_core::ingest::{InboundRecord, Outcome};
use inbox_core::model::{ConversationStatus, Direction, Identity, ThreadReason};
use inbox_core::store::ConversationFilter;
use serde_json::json;

use common::*;

contract!(ingest_stores_a_message, |store| async move {
    let channel = webhook_channel(&store).await;
    let m = inbound(&channel, "ext-1", "42", "Hello,\n  my order is late");
    let report = ingest_batch(&store, &[record(&m)]).await;
    let (message_id, conversation_id, reason) = stored(&report.outcomes[0]);
    assert_eq!(
        message_id, m.id,
        "the connector's id becomes the message id"
    );
    assert_eq!(reason, ThreadReason::NewConversation);
    assert_eq!(report.domain_events.len(), 2, "{:?}", report.domain_events);

    let page = store
        .list_conversations(&ConversationFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.items.len(), 1);
    let c = &page.items[0];
    assert_eq!(c.id, conversation_id);
    assert_eq!(c.channel_id, channel.id);
    assert_eq!(c.status, ConversationStatus::Open);
    assert_eq!(c.message_count, 1);
    assert_eq!(c.unread_count, 1);
    assert_eq!(c.preview, "Hello, my order is late");
    assert_eq!(c.contact_handle, "42");
    assert_eq!(c.contact_name.as_deref(), Some("Customer 42"));
    assert_eq!(c.assignee_id, None);
    assert!(c.labels.is_empty());
    assert_eq!(Some(c.last_message_at), m.sent_at);
    assert_eq!(
        c.waiting_since, m.sent_at,
        "the customer waits for an answer"
    );
    assert_eq!(conversation(&store, conversation_id).await, *c);

    let messages = history(&store, conversation_id).await;
    assert_eq!(messages.len(), 1);
    let stored_message = &messages[0];
    assert_eq!(stored_message.id, m.id);
    assert_eq!(stored_message.conversation_id, conversation_id);
    assert_eq!(stored_message.channel_id, channel.id);
    assert_eq!(stored_message.external_id.as_deref(), Some("ext-1"));
    assert_eq!(stored_message.direction, Direction::Inbound);
    assert_eq!(stored_message.thread_reason, ThreadReason::NewConversation);
    assert_eq!(stored_message.text, "Hello,\n  my order is late");
    assert_eq!(stored_message.sender_handle.as_deref(), Some("42"));
    assert_eq!(stored_message.sender_name.as_deref(), Some("Customer 42"));
    assert_eq!(stored_message.contact_id, Some(c.contact_id));
    assert_eq!(Some(stored_message.sent_at), m.sent_at);
    assert_eq!(stored_message.received_at, m.received_at);
    assert_eq!(stored_message.delivery_status, None);
    assert_eq!(stored_message.attachments, json!([]));
    assert_eq!(store.message_total().await.unwrap(), 1);

    let events = store.conversation_events(conversation_id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "message_received"]);
    for event in &events {
        assert_eq!(event.message_id, Some(m.id));
        assert_eq!(event.actor_kind, "contact");
        assert_eq!(event.actor_id, Some(c.contact_id.to_string()));
    }
    assert_eq!(events[1].data, json!({"thread_reason": "new_conversation"}));

    let (contact, identities) = store.contact(c.contact_id).await.unwrap().expect("contact");
    assert_eq!(contact.name.as_deref(), Some("Customer 42"));
    assert_eq!(
        identities,
        [Identity {
            namespace: format!("webhook:{}", channel.id),
            handle: "42".into()
        }]
    );
});

contract!(dedup, |store| async move {
    let channel = webhook_channel(&store).await;

    // Twice, in two separate batches (a webhook retried: the connector mints a new id).
    let first = inbound(&channel, "ext-1", "42", "hello");
    let (first_id, conversation_id, _) = stored(&ingest_one(&store, &first).await);
    let mut again = first.clone();
    again.id = MessageId::new();
    again.body.text = "hello (retried)".into();
    assert_eq!(
        ingest_one(&store, &again).await,
        Outcome::Duplicate {
            message_id: first_id,
            conversation_id
        }
    );
    // A verbatim replay of the same record is a duplicate too.
    assert_eq!(
        ingest_one(&store, &first).await,
        Outcome::Duplicate {
            message_id: first_id,
            conversation_id
        }
    );
    assert_eq!(store.message_total().await.unwrap(), 1);
    let c = conversation(&store, conversation_id).await;
    assert_eq!((c.message_count, c.unread_count), (1, 1));
    assert_eq!(c.preview, "hello");
    assert_eq!(history(&store, conversation_id).await[0].text, "hello");

    // Twice inside one batch.
    let second = inbound(&channel, "ext-2", "43", "in a batch");
    let mut second_again = second.clone();
    second_again.id = MessageId::new();
    let report = ingest_batch(&store, &[record(&second), record(&second_again)]).await;
    let (second_id, second_conversation, reason) = stored(&report.outcomes[0]);
    assert_eq!(second_id, second.id);
    assert_eq!(reason, ThreadReason::NewConversation);
    assert_eq!(
        report.outcomes[1],
        Outcome::Duplicate {
            message_id: second_id,
            conversation_id: second_conversation
        }
    );
    assert_eq!(store.message_total().await.unwrap(), 2);
    assert_eq!(
        conversation(&store, second_conversation)
            .await
            .message_count,
        1
    );
    let events = event_kinds(&store, second_conversation).await;
    assert_eq!(events, ["opened", "message_received"]);

    // The same external id on another channel is another message.
    let other_channel = webhook_channel(&store).await;
    let elsewhere = inbound(&other_channel, "ext-1", "42", "same id, other channel");
    let (elsewhere_id, _, _) = stored(&ingest_one(&store, &elsewhere).await);
    assert_eq!(elsewhere_id, elsewhere.id);
    assert_eq!(store.message_total().await.unwrap(), 3);
});

contract!(threading_latest_conversation, |store| async move {
    let channel = webhook_channel(&store).await;
    let t0 = secs(now_ms(), -600);
    let first = sent(inbound(&channel, "e-1", "42", "first"), t0);
    let (_, conversation_id, reason) = stored(&ingest_one(&store, &first).await);
    assert_eq!(reason, ThreadReason::NewConversation);

    let second = sent(inbound(&channel, "e-2", "42", "second"), secs(t0, 10));
    let (second_id, second_conversation, reason) = stored(&ingest_one(&store, &second).await);
    assert_eq!(second_conversation, conversation_id);
    assert_eq!(reason, ThreadReason::LatestConversation);
    assert_eq!(
        message(&store, second_id).await.thread_reason,
        ThreadReason::LatestConversation
    );

    let other = sent(inbound(&channel, "e-3", "43", "someone else"), secs(t0, 20));
    let (_, other_conversation, reason) = stored(&ingest_one(&store, &other).await);
    assert_ne!(other_conversation, conversation_id);
    assert_eq!(reason, ThreadReason::NewConversation);

    let c = conversation(&store, conversation_id).await;
    assert_eq!(c.message_count, 2);
    assert_eq!(c.preview, "second");
    assert_eq!(c.last_message_at, secs(t0, 10));
    assert_eq!(
        c.waiting_since,
        Some(t0),
        "waiting since the first unanswered message"
    );
    let o = conversation(&store, other_conversation).await;
    assert_eq!((o.message_count, o.contact_handle.as_str()), (1, "43"));
    assert_ne!(o.contact_id, c.contact_id);
    let reasons: Vec<ThreadReason> = history(&store, conversation_id)
        .await
        .iter()
        .map(|m| m.thread_reason)
        .collect();
    assert_eq!(
        reasons,
        [
            ThreadReason::NewConversation,
            ThreadReason::LatestConversation
        ]
    );

    // In one batch: a new customer's two messages open one conversation.
    let a = sent(inbound(&channel, "e-4", "44", "a"), secs(t0, 30));
    let b = sent(inbound(&channel, "e-5", "44", "b"), secs(t0, 31));
    let report = ingest_batch(&store, &[record(&a), record(&b)]).await;
    let (_, batch_conversation, reason_a) = stored(&report.outcomes[0]);
    let (_, batch_conversation_b, reason_b) = stored(&report.outcomes[1]);
    assert_eq!(batch_conversation, batch_conversation_b);
    assert_eq!(
        (reason_a, reason_b),
        (
            ThreadReason::NewConversation,
            ThreadReason::LatestConversation
        )
    );
    assert_eq!(
        conversation(&store, batch_conversation).await.message_count,
        2
    );
    let page = store
        .list_conversations(&ConversationFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
});

contract!(threading_reply_reference, |store| async move {
    let settings = short_reopen_window();
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@example.com").await;

    let first = sent(
        inbound(&channel, "a-1", "42", "first question"),
        secs(now_ms(), -3600),
    );
    let (_, first_conversation, _) = stored(&ingest_one_with(&store, &first, &settings).await);
    set_status(
        &store,
        first_conversation,
        &agent,
        ConversationStatus::Resolved,
    )
    .await;

    // Well past the (1 ms) reopen window: a second conversation, now the contact's latest.
    let later = secs(Utc::now(), 60);
    let second = sent(inbound(&channel, "b-1", "42", "new topic"), later);
    let (_, second_conversation, reason) =
        stored(&ingest_one_with(&store, &second, &settings).await);
    assert_eq!(reason, ThreadReason::NewConversation);
    assert_ne!(second_conversation, first_conversation);

    // A reply to the first conversation's message goes there, not to the latest one.
    let mut reply = sent(
        inbound(&channel, "a-2", "42", "about my first question"),
        secs(later, 60),
    );
    reply.thread.in_reply_to = Some("a-1".into());
    let (reply_id, reply_conversation, reason) =
        stored(&ingest_one_with(&store, &reply, &settings).await);
    assert_eq!(reply_conversation, first_conversation);
    assert_eq!(reason, ThreadReason::ReplyReference);
    let reply_message = message(&store, reply_id).await;
    assert_eq!(reply_message.thread_reason, ThreadReason::ReplyReference);
    assert_eq!(reply_message.in_reply_to.as_deref(), Some("a-1"));
    let first_state = conversation(&store, first_conversation).await;
    assert_eq!(first_state.message_count, 2);
    assert_eq!(
        first_state.status,
        ConversationStatus::Open,
        "a reply reopens"
    );
    assert_eq!(first_state.resolved_at, None);
    assert!(
        event_kinds(&store, first_conversation)
            .await
            .contains(&"reopened".to_owned())
    );

    // References work too (most recent first), and an unknown reference falls through to rule 4.
    let mut by_references = sent(
        inbound(&channel, "a-3", "42", "via references"),
        secs(later, 70),
    );
    by_references.thread.references = vec!["a-1".into(), "unknown-id".into()];
    let (_, conversation_id, reason) =
        stored(&ingest_one_with(&store, &by_references, &settings).await);
    assert_eq!(
        (conversation_id, reason),
        (first_conversation, ThreadReason::ReplyReference)
    );
    let mut dangling = sent(inbound(&channel, "b-2", "42", "dangling"), secs(later, 80));
    dangling.thread.in_reply_to = Some("never-stored".into());
    let (_, conversation_id, reason) = stored(&ingest_one_with(&store, &dangling, &settings).await);
    assert_eq!(
        (conversation_id, reason),
        (second_conversation, ThreadReason::LatestConversation)
    );

    // A reply to a message stored earlier in the same batch.
    let target = sent(
        inbound(&channel, "c-1", "43", "batch start"),
        secs(later, 90),
    );
    let mut follow = sent(
        inbound(&channel, "c-2", "43", "batch reply"),
        secs(later, 91),
    );
    follow.thread.in_reply_to = Some("c-1".into());
    let report = ingest_batch_with(&store, &[record(&target), record(&follow)], &settings).await;
    let (_, target_conversation, _) = stored(&report.outcomes[0]);
    let (_, follow_conversation, reason) = stored(&report.outcomes[1]);
    assert_eq!(follow_conversation, target_conversation);
    assert_eq!(reason, ThreadReason::ReplyReference);

    assert_eq!(
        conversation(&store, second_conversation)
            .await
            .message_count,
        2
    );
    assert_eq!(
        conversation(&store, first_conversation).await.message_count,
        3
    );
});

contract!(reopen, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@example.com").await;
    let first = sent(inbound(&channel, "e-1", "42", "help"), secs(now_ms(), -120));
    let (_, conversation_id, _) = stored(&ingest_one(&store, &first).await);
    set_status(
        &store,
        conversation_id,
        &agent,
        ConversationStatus::Resolved,
    )
    .await;
    let resolved = conversation(&store, conversation_id).await;
    assert_eq!(resolved.status, ConversationStatus::Resolved);
    assert!(resolved.resolved_at.is_some());
    assert_eq!(resolved.waiting_since, None);

    // Within the (default 24 h) window: the same conversation, open again.
    let again = inbound(&channel, "e-2", "42", "it broke again");
    let (_, again_conversation, reason) = stored(&ingest_one(&store, &again).await);
    assert_eq!(again_conversation, conversation_id);
    assert_eq!(reason, ThreadReason::LatestConversation);
    let reopened = conversation(&store, conversation_id).await;
    assert_eq!(reopened.status, ConversationStatus::Open);
    assert_eq!(reopened.resolved_at, None);
    assert_eq!(reopened.message_count, 2);
    assert_eq!(reopened.preview, "it broke again");
    assert_eq!(reopened.waiting_since, again.sent_at);
    let events = store.conversation_events(conversation_id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "message_received",
            "resolved",
            "reopened",
            "message_received"
        ]
    );
    let reopen_event = &events[3];
    assert_eq!(reopen_event.actor_kind, "contact");
    assert_eq!(reopen_event.message_id, Some(again.id));
    assert_eq!(reopen_event.data, json!({"from": "resolved", "to": "open"}));
    let resolve_event = &events[2];
    assert_eq!(resolve_event.actor_kind, "agent");
    assert_eq!(resolve_event.actor_id, Some(agent.id.to_string()));

    // Past the window: a new conversation; the resolved one stays resolved.
    set_status(
        &store,
        conversation_id,
        &agent,
        ConversationStatus::Resolved,
    )
    .await;
    let late = sent(
        inbound(&channel, "e-3", "42", "new issue"),
        secs(Utc::now(), 60),
    );
    let (_, late_conversation, reason) =
        stored(&ingest_one_with(&store, &late, &short_reopen_window()).await);
    assert_ne!(late_conversation, conversation_id);
    assert_eq!(reason, ThreadReason::NewConversation);
    let old = conversation(&store, conversation_id).await;
    assert_eq!(
        (old.status, old.message_count),
        (ConversationStatus::Resolved, 2)
    );
    let new = conversation(&store, late_conversation).await;
    assert_eq!(
        (new.status, new.message_count),
        (ConversationStatus::Open, 1)
    );
    assert_eq!(
        new.contact_id, old.contact_id,
        "same customer, new conversation"
    );
    assert_eq!(
        event_kinds(&store, late_conversation).await,
        ["opened", "message_received"]
    );

    // A pending (not resolved) conversation is joined and set open with a status change.
    set_status(
        &store,
        late_conversation,
        &agent,
        ConversationStatus::Pending,
    )
    .await;
    let pending_reply = inbound(&channel, "e-4", "42", "any news?");
    let (_, conversation_id, _) = stored(&ingest_one(&store, &pending_reply).await);
    assert_eq!(conversation_id, late_conversation);
    assert_eq!(
        conversation(&store, late_conversation).await.status,
        ConversationStatus::Open
    );
    let kinds = event_kinds(&store, late_conversation).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "status_changed").count(),
        2,
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"reopened".to_owned()), "{kinds:?}");
});

contract!(identity, |store| async move {
    let w1 = webhook_channel(&store).await;
    let w2 = webhook_channel(&store).await;

    // Webhook user ids are scoped to their channel.
    let (_, c1, _) = stored(&ingest_one(&store, &inbound(&w1, "w1-1", "42", "from w1")).await);
    let (_, c2, _) = stored(&ingest_one(&store, &inbound(&w2, "w2-1", "42", "from w2")).await);
    let ada = conversation(&store, c1).await.contact_id;
    let other = conversation(&store, c2).await.contact_id;
    assert_ne!(
        ada, other,
        "same handle on two webhook channels = two contacts"
    );

    // Ada's channel identity learns a verified email...
    let mut with_email = inbound(&w1, "w1-2", "42", "my email");
    with_email.from.email = Some("Ada@Example.com".into());
    let (_, conversation_id, _) = stored(&ingest_one(&store, &with_email).await);
    assert_eq!(conversation_id, c1);
    // ...which links a different handle on the other channel to her.
    let mut elsewhere = inbound(&w2, "w2-2", "77", "it's Ada again");
    elsewhere.from.email = Some("  ADA@example.COM ".into());
    let (_, elsewhere_conversation, reason) = stored(&ingest_one(&store, &elsewhere).await);
    assert_eq!(reason, ThreadReason::NewConversation);
    let linked = conversation(&store, elsewhere_conversation).await;
    assert_eq!(
        linked.contact_id, ada,
        "the verified email links the contacts"
    );
    assert_eq!(linked.channel_id, w2.id);
    assert_eq!(
        linked.contact_handle, "77",
        "replies go to the handle on that channel"
    );

    let (contact, identities) = store.contact(ada).await.unwrap().expect("contact");
    assert_eq!(contact.id, ada);
    let identities: HashSet<Identity> = identities.into_iter().collect();
    let expected: HashSet<Identity> = [
        Identity {
            namespace: format!("webhook:{}", w1.id),
            handle: "42".into(),
        },
        Identity {
            namespace: EMAIL_NAMESPACE.into(),
            handle: "ada@example.com".into(),
        },
        Identity {
            namespace: format!("webhook:{}", w2.id),
            handle: "77".into(),
        },
    ]
    .into_iter()
    .collect();
    assert_eq!(identities, expected);
    let (_, other_identities) = store.contact(other).await.unwrap().expect("contact");
    assert_eq!(
        other_identities,
        [Identity {
            namespace: format!("webhook:{}", w2.id),
            handle: "42".into()
        }]
    );
    let timeline: HashSet<_> = store
        .contact_conversations(ada)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(timeline, HashSet::from([c1, elsewhere_conversation]));

    // A new customer introduced with an email in one batch, twice: one contact.
    let mut x = inbound(&w1, "w1-3", "100", "x");
    x.from.email = Some("new@example.com".into());
    let mut y = inbound(&w2, "w2-3", "200", "y");
    y.from.email = Some("NEW@example.com".into());
    let report = ingest_batch(&store, &[record(&x), record(&y)]).await;
    let (_, cx, _) = stored(&report.outcomes[0]);
    let (_, cy, _) = stored(&report.outcomes[1]);
    assert_ne!(cx, cy, "two channels, two conversations");
    let contact_x = conversation(&store, cx).await.contact_id;
    assert_eq!(conversation(&store, cy).await.contact_id, contact_x);
    let (new_contact, identities) = store.contact(contact_x).await.unwrap().unwrap();
    assert_eq!(new_contact.email.as_deref(), Some("new@example.com"));
    assert_eq!(identities.len(), 3, "{identities:?}");
});

contract!(ordering, |store| async move {
    let channel = webhook_channel(&store).await;
    let base = secs(now_ms(), -3600);
    let (t1, t2, t3) = (base, secs(base, 1), secs(base, 2));

    let m3 = sent(inbound(&channel, "m3", "42", "third"), t3);
    let m1 = sent(inbound(&channel, "m1", "42", "first"), t1);
    let m2 = sent(inbound(&channel, "m2", "42", "second"), t2);
    let (_, conversation_id, _) = stored(&ingest_one(&store, &m3).await);
    for m in [&m1, &m2] {
        let (_, id, reason) = stored(&ingest_one(&store, m).await);
        assert_eq!(
            (id, reason),
            (conversation_id, ThreadReason::LatestConversation)
        );
    }
    let externals = |messages: &[inbox_core::model::Message]| {
        messages
            .iter()
            .map(|m| m.external_id.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let messages = history(&store, conversation_id).await;
    assert_eq!(externals(&messages), ["m1", "m2", "m3"]);
    assert_eq!(
        messages.iter().map(|m| m.sent_at).collect::<Vec<_>>(),
        [t1, t2, t3]
    );
    let c = conversation(&store, conversation_id).await;
    assert_eq!(
        c.preview, "third",
        "the newest message, not the last to arrive"
    );
    assert_eq!(c.last_message_at, t3);
    assert_eq!(c.waiting_since, Some(t1));

    // Equal sent_at: arrival order (ingest_seq) decides.
    let t4 = secs(base, 3);
    let later_arrival = sent(inbound(&channel, "m4b", "42", "tie, arrived first"), t4);
    let earlier_arrival = sent(inbound(&channel, "m4a", "42", "tie, arrived second"), t4);
    ingest_one(&store, &later_arrival).await;
    ingest_one(&store, &earlier_arrival).await;
    let messages = history(&store, conversation_id).await;
    assert_eq!(externals(&messages), ["m1", "m2", "m3", "m4b", "m4a"]);
    assert!(messages[3].ingest_seq < messages[4].ingest_seq);
    let seqs: HashSet<i64> = messages.iter().map(|m| m.ingest_seq).collect();
    assert_eq!(seqs.len(), 5, "ingest_seq is unique");
    assert_eq!(
        conversation(&store, conversation_id).await.preview,
        "tie, arrived second"
    );

    // The same order when everything arrives in one batch, shuffled.
    let other = webhook_channel(&store).await;
    let batch = [
        sent(inbound(&other, "b3", "9", "3"), t3),
        sent(inbound(&other, "b1", "9", "1"), t1),
        sent(inbound(&other, "b2", "9", "2"), t2),
    ];
    let records: Vec<InboundRecord> = batch.iter().map(record).collect();
    let report = ingest_batch(&store, &records).await;
    let (_, batch_conversation, _) = stored(&report.outcomes[0]);
    assert_eq!(
        externals(&history(&store, batch_conversation).await),
        ["b1", "b2", "b3"]
    );

    // A sent_at an hour in the future is clamped to received_at; a minute ahead is kept.
    let now = now_ms();
    let mut future = sent(
        inbound(&channel, "m5", "42", "from the future"),
        secs(now, 3600),
    );
    future.received_at = now;
    let (future_id, _, _) = stored(&ingest_one(&store, &future).await);
    let stored_future = message(&store, future_id).await;
    assert_eq!(stored_future.sent_at, now);
    assert_eq!(stored_future.received_at, now);
    let mut skewed = sent(
        inbound(&channel, "m6", "42", "slightly ahead"),
        secs(now, 60),
    );
    skewed.received_at = now;
    let (skewed_id, _, _) = stored(&ingest_one(&store, &skewed).await);
    assert_eq!(message(&store, skewed_id).await.sent_at, secs(now, 60));
    // No sent_at at all: received_at.
    let mut untimed = inbound(&channel, "m7", "42", "no provider time");
    untimed.sent_at = None;
    untimed.received_at = secs(now, 120);
    let (untimed_id, _, _) = stored(&ingest_one(&store, &untimed).await);
    assert_eq!(message(&store, untimed_id).await.sent_at, secs(now, 120));
    let messages = history(&store, conversation_id).await;
    assert_eq!(
        externals(&messages)[5..],
        ["m5".to_owned(), "m6".to_owned(), "m7".to_owned()]
    );
});

contract!(
    a_paused_channel_stores_what_it_accepted,
    |store| async move {
        // Pausing stops the intake; what was already on the bus is stored, not dead-lettered.
        let channel = webhook_channel(&store).await;
        assert!(store.disable_channel(channel.id).await.unwrap());
        let paused = store.channel(channel.id).await.unwrap().unwrap();
        assert!(!paused.enabled && paused.deleted_at.is_none());
        let in_flight = inbound(&channel, "in-flight", "42", "sent before the pause");
        let report = ingest_batch(
            &store,
            &[InboundRecord::Event(InboundEvent::Message(
                in_flight.clone(),
            ))],
        )
        .await;
        assert_eq!(stored(&report.outcomes[0]).0, in_flight.id);
        // Deleted, restored: the same channel, its rules kept.
        assert!(store.delete_channel(channel.id).await.unwrap());
        let deleted = store.channel(channel.id).await.unwrap().unwrap();
        assert!(deleted.deleted_at.is_some());
        let restore = inbox_core::store::ChannelUpdate {
            deleted: Some(false),
            enabled: Some(true),
            ..Default::default()
        };
        let restored = store
            .update_channel(channel.id, &restore)
            .await
            .unwrap()
            .unwrap();
        assert!(restored.is_active());
        assert_eq!(restored.rules, channel.rules);
    }
);

contract!(dead_letters, |store| async move {
    let channel = webhook_channel(&store).await;
    let disabled = webhook_channel(&store).await;
    store.delete_channel(disabled.id).await.unwrap();

    let valid_first = inbound(&channel, "ok-1", "42", "valid");
    let mut unknown_channel = inbound(&channel, "bad-1", "42", "x");
    unknown_channel.channel_id = ChannelId::new();
    let on_disabled = inbound(&disabled, "bad-2", "42", "x");
    let mut wrong_kind = inbound(&channel, "bad-3", "42", "x");
    wrong_kind.channel_kind = ChannelKind::named("telegram");
    let empty_external = inbound(&channel, "  ", "42", "x");
    let empty_handle = inbound(&channel, "bad-5", " ", "x");
    let mut no_content = inbound(&channel, "bad-6", "42", "   ");
    no_content.body.html = Some(" ".into());
    let mut bad_email = inbound(&channel, "bad-7", "42", "x");
    bad_email.from.email = Some("not-an-email".into());
    let valid_last = inbound(&channel, "ok-2", "43", "also valid");
    let mut attachment_only = inbound(&channel, "ok-3", "44", "");
    attachment_only.attachments = vec![AttachmentRef {
        name: "photo.jpg".into(),
        content_type: Some("image/jpeg".into()),
        size: Some(1234),
        blob: BlobRef("blobs/photo.jpg".into()),
    }];

    let invalid = [
        (&unknown_channel, "channel_id"),
        (&on_disabled, "channel_id"),
        (&wrong_kind, "channel_kind"),
        (&empty_external, "external_id"),
        (&empty_handle, "handle"),
        (&no_content, "text"),
        (&bad_email, "from.email"),
    ];
    let mut records = vec![record(&valid_first)];
    records.extend(invalid.iter().map(|(m, _)| record(m)));
    records.push(InboundRecord::Undecodable {
        payload: "{\"schema_version\":1,\"type\":\"mess".into(),
        error: "invalid JSON at `.`: EOF while parsing a string".into(),
    });
    records.push(record(&valid_last));
    records.push(record(&attachment_only));

    let report = ingest_batch(&store, &records).await;
    let outcomes = &report.outcomes;
    assert_eq!(stored(&outcomes[0]).0, valid_first.id);
    for (i, (m, field)) in invalid.iter().enumerate() {
        let error = dead_lettered(&outcomes[i + 1]);
        assert!(
            error.contains(field),
            "dead letter of {} names `{field}`: {error}",
            m.external_id
        );
    }
    assert!(dead_lettered(&outcomes[1]).contains("unknown"));
    assert!(dead_lettered(&outcomes[2]).contains("deleted"));
    assert_eq!(
        dead_lettered(&outcomes[8]),
        "invalid JSON at `.`: EOF while parsing a string"
    );
    assert_eq!(stored(&outcomes[9]).0, valid_last.id);
    let (attachment_id, _, _) = stored(&outcomes[10]);
    assert_eq!(store.message_total().await.unwrap(), 3);
    let with_attachment = message(&store, attachment_id).await;
    assert_eq!(with_attachment.attachments[0]["name"], "photo.jpg");
    assert_eq!(with_attachment.attachments[0]["blob"], "blobs/photo.jpg");

    let letters = store.dead_letters(100).await.unwrap();
    assert_eq!(letters.len(), 8);
    for (m, _) in &invalid {
        let payload =
            String::from_utf8(InboundEvent::Message((*m).clone()).to_json()).expect("utf-8");
        let letter = letters
            .iter()
            .find(|l| l.payload == payload)
            .unwrap_or_else(|| panic!("dead letter of {} kept with its payload", m.external_id));
        assert_eq!(letter.source, "inbound");
        assert_eq!(letter.channel_id, Some(m.channel_id));
        let decoded = InboundEvent::from_json(letter.payload.as_bytes()).expect("replayable");
        assert_eq!(decoded, InboundEvent::Message((*m).clone()));
    }
    let undecodable = letters
        .iter()
        .find(|l| l.payload == "{\"schema_version\":1,\"type\":\"mess")
        .expect("undecodable payload kept verbatim");
    assert_eq!(
        undecodable.error,
        "invalid JSON at `.`: EOF while parsing a string"
    );
    assert_eq!(undecodable.channel_id, None);
    let errors: HashSet<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    let outcome_errors: HashSet<&str> = outcomes[1..9].iter().map(dead_lettered).collect();
    assert_eq!(errors, outcome_errors);
    assert_eq!(store.dead_letters(3).await.unwrap().len(), 3, "limit");

    // An operator-side dead letter (e.g. from a connector) through the Store API.
    store
        .insert_dead_letter("connector", Some(channel.id), "raw", "boom")
        .await
        .unwrap();
    let newest = &store.dead_letters(1).await.unwrap()[0];
    assert_eq!(
        (
            newest.source.as_str(),
            newest.payload.as_str(),
            newest.error.as_str()
        ),
        ("connector", "raw", "boom")
    );
});

contract!(delivery_reports, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@example.com").await;
    let question = sent(
        inbound(&channel, "in-1", "42", "question"),
        secs(now_ms(), -60),
    );
    let (_, conversation_id, _) = stored(&ingest_one(&store, &question).await);
    let reply = actions::post_message(&store, conversation_id, &agent, "answer", false, &[])
        .await
        .unwrap()
        .message;
    store.mark_outbox_published(reply.id).await.unwrap();

    let at = now_ms();
    let sent_report = DeliveryReport {
        message_id: reply.id,
        conversation_id,
        channel_id: channel.id,
        status: DeliveryStatus::Sent,
        external_id: Some("prov-1".into()),
        error: None,
        attempts: 1,
        at,
    };
    let report = ingest_batch(
        &store,
        &[InboundRecord::Event(InboundEvent::Delivery(sent_report))],
    )
    .await;
    assert_eq!(
        report.outcomes,
        [Outcome::DeliveryRecorded {
            message_id: reply.id
        }]
    );
    let delivered = message(&store, reply.id).await;
    assert_eq!(delivered.delivery_status, Some(DeliveryStatus::Sent));
    assert_eq!(delivered.delivered_at, Some(at));
    assert_eq!(delivered.external_id.as_deref(), Some("prov-1"));
    assert_eq!(delivered.delivery_attempts, 1);
    assert_eq!(delivered.delivery_error, None);
    let log = store.conversation_events(conversation_id).await.unwrap();
    let update = log
        .iter()
        .find(|e| e.kind == "delivery_updated")
        .expect("logged");
    assert_eq!(update.message_id, Some(reply.id));
    assert_eq!(update.actor_kind, "system");
    assert_eq!(update.data["status"], "sent");
    assert_eq!(
        store.requeue_undelivered_outbox().await.unwrap(),
        0,
        "a delivered reply is not handed to the bus again"
    );

    // The customer answers the delivered reply by its provider id: rule 1.
    let mut answer = inbound(&channel, "in-2", "42", "thanks!");
    answer.thread.in_reply_to = Some("prov-1".into());
    let (_, answer_conversation, reason) = stored(&ingest_one(&store, &answer).await);
    assert_eq!(
        (answer_conversation, reason),
        (conversation_id, ThreadReason::ReplyReference)
    );

    // A failure keeps its error visible.
    let second =
        actions::post_message(&store, conversation_id, &agent, "second answer", false, &[])
            .await
            .unwrap()
            .message;
    let failed = DeliveryReport {
        message_id: second.id,
        conversation_id,
        channel_id: channel.id,
        status: DeliveryStatus::Failed,
        external_id: None,
        error: Some("HTTP 500 from https://example.com/out".into()),
        attempts: 3,
        at: now_ms(),
    };
    // An unknown message and an inbound one are dead-lettered; the batch still commits.
    let unknown = DeliveryReport {
        message_id: MessageId::new(),
        ..failed.clone()
    };
    let on_inbound = DeliveryReport {
        message_id: question.id,
        ..failed.clone()
    };
    let report = ingest_batch(
        &store,
        &[
            InboundRecord::Event(InboundEvent::Delivery(unknown.clone())),
            InboundRecord::Event(InboundEvent::Delivery(failed)),
            InboundRecord::Event(InboundEvent::Delivery(on_inbound)),
        ],
    )
    .await;
    let error = dead_lettered(&report.outcomes[0]);
    assert!(error.contains("unknown message"), "{error}");
    assert!(error.contains(&unknown.message_id.to_string()), "{error}");
    assert_eq!(
        report.outcomes[1],
        Outcome::DeliveryRecorded {
            message_id: second.id
        }
    );
    dead_lettered(&report.outcomes[2]);
    let failed_message = message(&store, second.id).await;
    assert_eq!(failed_message.delivery_status, Some(DeliveryStatus::Failed));
    assert_eq!(
        failed_message.delivery_error.as_deref(),
        Some("HTTP 500 from https://example.com/out")
    );
    assert_eq!(failed_message.delivery_attempts, 3);
    assert_eq!(failed_message.delivered_at, None);
    assert_eq!(failed_message.external_id, None);
    let inbound_message = message(&store, question.id).await;
    assert_eq!(inbound_message.delivery_status, None);
    assert_eq!(inbound_message.external_id.as_deref(), Some("in-1"));
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    let letter = letters
        .iter()
        .find(|l| l.error == error)
        .expect("the unknown report is kept");
    assert_eq!(
        InboundEvent::from_json(letter.payload.as_bytes()).unwrap(),
        InboundEvent::Delivery(unknown)
    );
    assert_eq!(letter.channel_id, Some(channel.id));
});

contract!(reopen_after_restart, |store, db| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@example.com").await;
    let m = inbound(&channel, "ext-1", "42", "survive a restart");
    let (_, conversation_id, _) = stored(&ingest_one(&store, &m).await);
    let reply = actions::post_message(&store, conversation_id, &agent, "noted", false, &[])
        .await
        .unwrap()
        .message;
    store.set_cursor(channel.id, "offset", "17").await.unwrap();
    let token = store.create_api_token(agent.id, "cli").await.unwrap();
    let before = conversation(&store, conversation_id).await;
    let messages_before = history(&store, conversation_id).await;
    store.close().await;
    drop(store);

    let store = db.open().await;
    assert!(store.ping().await);
    assert_eq!(
        store.channel(channel.id).await.unwrap().map(|c| c.name),
        Some("test".to_owned())
    );
    assert_eq!(conversation(&store, conversation_id).await, before);
    assert_eq!(history(&store, conversation_id).await, messages_before);
    assert_eq!(store.message_total().await.unwrap(), 2);
    assert_eq!(
        store.cursor(channel.id, "offset").await.unwrap().as_deref(),
        Some("17")
    );
    assert_eq!(
        store.agent_by_token(&token).await.unwrap().map(|a| a.id),
        Some(agent.id)
    );
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message_id, reply.id);
    // Still idempotent across the restart, and ingest_seq keeps growing.
    assert!(matches!(
        ingest_one(&store, &m).await,
        Outcome::Duplicate { .. }
    ));
    let next = inbound(&channel, "ext-2", "42", "after the restart");
    let (next_id, next_conversation, _) = stored(&ingest_one(&store, &next).await);
    assert_eq!(next_conversation, conversation_id);
    let next_message = message(&store, next_id).await;
    assert!(
        messages_before
            .iter()
            .all(|m| m.ingest_seq < next_message.ingest_seq)
    );
    store.close().await;
});

contract!(delivery_external_id_conflict, |store| async move {
    // A provider id that is already taken on the channel (a receiver answering with a ticket id, or
    // an integration that numbers both directions alike) must not fail the batch: the delivery is
    // recorded without the id, and the conflict is kept in the conversation log.
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@example.com").await;
    let question = inbound(&channel, "in-1", "42", "question");
    let (_, conversation_id, _) = stored(&ingest_one(&store, &question).await);
    let mut replies = Vec::new();
    for text in ["one", "two"] {
        let reply = actions::post_message(&store, conversation_id, &agent, text, false, &[])
            .await
            .unwrap()
            .message;
        replies.push(reply.id);
    }
    let report_for = |message_id: MessageId, external_id: &str| {
        InboundRecord::Event(InboundEvent::Delivery(DeliveryReport {
            message_id,
            conversation_id,
            channel_id: channel.id,
            status: DeliveryStatus::Sent,
            external_id: Some(external_id.to_owned()),
            error: None,
            attempts: 1,
            at: now_ms(),
        }))
    };
    let next = inbound(&channel, "in-2", "42", "in the same batch");
    let report = ingest_batch(
        &store,
        &[
            report_for(replies[0], "prov-1"),
            report_for(replies[1], "prov-1"),
            report_for(replies[1], "in-1"),
            record(&next),
        ],
    )
    .await;
    assert_eq!(
        report.outcomes[0],
        Outcome::DeliveryRecorded {
            message_id: replies[0]
        }
    );
    for outcome in &report.outcomes[1..3] {
        assert_eq!(
            outcome,
            &Outcome::DeliveryRecorded {
                message_id: replies[1]
            }
        );
    }
    assert_eq!(stored(&report.outcomes[3]).0, next.id);
    assert_eq!(
        message(&store, replies[0]).await.external_id.as_deref(),
        Some("prov-1")
    );
    // A reply may carry the same id as a customer message: uniqueness is per direction.
    let second = message(&store, replies[1]).await;
    assert_eq!(second.external_id.as_deref(), Some("in-1"));
    assert_eq!(second.delivery_status, Some(DeliveryStatus::Sent));
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    let conflicts = store
        .conversation_events(conversation_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "delivery_updated" && !e.data["external_id_conflict"].is_null())
        .count();
    assert_eq!(conflicts, 1);
    // A customer message whose id equals a delivered reply's id is stored, not taken for a replay.
    let same_id = inbound(&channel, "prov-1", "42", "my own id happens to match");
    let outcome = ingest_one(&store, &same_id).await;
    assert_eq!(stored(&outcome).0, same_id.id);
    // Reporting the id a message already has is fine (a replayed report).
    let replay = ingest_batch(&store, &[report_for(replies[0], "prov-1")]).await;
    assert_eq!(
        replay.outcomes[0],
        Outcome::DeliveryRecorded {
            message_id: replies[0]
        }
    );
});

contract!(concurrent_replays, |store| async move {
    // The same record handled by several consumers at once (a bus rebalance): one message, one
    // contact, one conversation, and every outcome names them.
    let channel = webhook_channel(&store).await;
    for round in 0..5 {
        let m = inbound(
            &channel,
            &format!("race-{round}"),
            &format!("new-{round}"),
            "hi",
        );
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                inbox_core::ingest::ingest(&store, &[record(&m)], &Default::default())
                    .await
                    .map(|mut r| r.outcomes.remove(0))
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().expect("a replay is not an error"));
        }
        let mut stored_count = 0;
        let mut conversations = HashSet::new();
        for outcome in &outcomes {
            match outcome {
                Outcome::Stored {
                    message_id,
                    conversation_id,
                    ..
                } => {
                    stored_count += 1;
                    assert_eq!(*message_id, m.id);
                    conversations.insert(*conversation_id);
                }
                Outcome::Duplicate {
                    message_id,
                    conversation_id,
                } => {
                    assert_eq!(*message_id, m.id);
                    conversations.insert(*conversation_id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(stored_count, 1, "{outcomes:?}");
        assert_eq!(conversations.len(), 1, "{outcomes:?}");
        let conversation_id = conversations.into_iter().next().unwrap();
        assert_eq!(history(&store, conversation_id).await.len(), 1);
        assert_eq!(conversation(&store, conversation_id).await.message_count, 1);
    }
    assert_eq!(store.message_total().await.unwrap(), 5);
    let page = store
        .list_conversations(&ConversationFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5, "no conversation without messages");
    for c in &page.items {
        let (_, identities) = store.contact(c.contact_id).await.unwrap().unwrap();
        assert_eq!(identities.len(), 1, "no contact without identity");
    }

    // One new customer's different messages at once: one contact and one conversation.
    let burst: Vec<_> = (0..4)
        .map(|i| inbound(&channel, &format!("burst-{i}"), "burst", "hello"))
        .collect();
    let mut tasks = Vec::new();
    for m in &burst {
        let store = store.clone();
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            inbox_core::ingest::ingest(&store, &[record(&m)], &Default::default())
                .await
                .map(|mut r| r.outcomes.remove(0))
        }));
    }
    let mut conversations = HashSet::new();
    for task in tasks {
        let outcome = task.await.unwrap().expect("ingest");
        conversations.insert(stored(&outcome).1);
    }
    assert_eq!(conversations.len(), 1, "one conversation for one customer");
    let conversation_id = conversations.into_iter().next().unwrap();
    assert_eq!(conversation(&store, conversation_id).await.message_count, 4);
    assert_eq!(history(&store, conversation_id).await.len(), 4);
});

/// An email from `from` with these headers, on an email channel.
fn email(
    channel: &inbox_core::model::Channel,
    message_id: &str,
    from: &str,
    subject: &str,
    references: &[&str],
) -> inbox_core::envelope::InboundMessage {
    let mut m = inbound(channel, message_id, from, "mail body");
    m.channel_kind = ChannelKind::EMAIL;
    m.thread.subject = Some(subject.to_owned());
    m.thread.references = references.iter().map(|r| (*r).to_owned()).collect();
    m.thread.in_reply_to = references.last().map(|r| (*r).to_owned());
    m.to = vec![inbox_core::envelope::Party {
        handle: "support@shop.test".into(),
        ..Default::default()
    }];
    m
}

contract!(email_threading, |store| async move {
    // The threading rules 1–3 (docs/threading.md) with their reasons, and automated mail that never opens a conversation.
    let channel = store
        .add_channel(inbox_core::store::NewChannel {
            kind: ChannelKind::EMAIL,
            name: ("support").into(),
            config: json!({}),
            secret: "secret".into(),
            rules: inbox_core::channel_rules::ChannelRules::MAIL,
        })
        .await
        .unwrap();
    let first = email(
        &channel,
        "a1@customer.test",
        "ada@customer.test",
        "Order 42 is late",
        &[],
    );
    let (_, order, reason) = stored(&ingest_one(&store, &first).await);
    assert_eq!(reason, ThreadReason::NewConversation);

    // Outlook rewrote the ids but kept the subject: rule 3.
    let rewritten = email(
        &channel,
        "a2@customer.test",
        "ada@customer.test",
        "RE: Order 42 is late",
        &["lost@outlook.test"],
    );
    let (_, conversation, reason) = stored(&ingest_one(&store, &rewritten).await);
    assert_eq!((conversation, reason), (order, ThreadReason::Subject));

    // A changed subject that kept References: rule 1.
    let renamed = email(
        &channel,
        "a3@customer.test",
        "ada@customer.test",
        "Something else",
        &["a1@customer.test"],
    );
    let (_, conversation, reason) = stored(&ingest_one(&store, &renamed).await);
    assert_eq!(
        (conversation, reason),
        (order, ThreadReason::ReplyReference)
    );

    // Another customer with the same subject: a conversation of their own.
    let other = email(
        &channel,
        "b1@other.test",
        "bob@other.test",
        "Order 42 is late",
        &[],
    );
    let (_, bobs, reason) = stored(&ingest_one(&store, &other).await);
    assert_ne!(bobs, order);
    assert_eq!(reason, ThreadReason::NewConversation);

    // The reply token in the recipient: rule 2, even from a colleague of the customer.
    let mut tokened = email(
        &channel,
        "c1@customer.test",
        "colleague@customer.test",
        "Fwd: something",
        &[],
    );
    tokened.to[0].handle = format!(
        "support+{}@shop.test",
        inbox_core::threading::reply_token(order)
    );
    let (_, conversation, reason) = stored(&ingest_one(&store, &tokened).await);
    assert_eq!((conversation, reason), (order, ThreadReason::ReplyToken));

    // An out-of-office reply that belongs nowhere is kept as a dead letter, opening nothing.
    let mut auto = email(
        &channel,
        "ooo@nowhere.test",
        "robot@nowhere.test",
        "Out of office",
        &[],
    );
    auto.automated = Some(inbox_core::envelope::Automated::AutoReply);
    assert!(dead_lettered(&ingest_one(&store, &auto).await).contains("automated"));
    // One that answers a known thread joins it.
    let mut auto_reply = email(
        &channel,
        "ooo2@customer.test",
        "ada@customer.test",
        "Auto: Re: Order 42 is late",
        &["a1@customer.test"],
    );
    auto_reply.automated = Some(inbox_core::envelope::Automated::AutoReply);
    assert_eq!(stored(&ingest_one(&store, &auto_reply).await).1, order);

    // A bounce of our reply marks that reply failed with the reason.
    let agent = new_agent(&store, "agent@shop.test").await;
    let reply = actions::post_message(&store, order, &agent, "on its way", false, &[])
        .await
        .unwrap()
        .message;
    let sent = InboundRecord::Event(InboundEvent::Delivery(DeliveryReport {
        message_id: reply.id,
        conversation_id: order,
        channel_id: channel.id,
        status: DeliveryStatus::Sent,
        external_id: Some("ours-1@shop.test".into()),
        error: None,
        attempts: 1,
        at: now_ms(),
    }));
    ingest_batch(&store, &[sent]).await;
    let mut bounce = email(
        &channel,
        "dsn-1@mx.test",
        "mailer-daemon@mx.test",
        "Undelivered Mail",
        &[],
    );
    bounce.body.text = "550 5.1.1 ada@customer.test: mailbox unavailable\nmore".into();
    bounce.automated = Some(inbox_core::envelope::Automated::Bounce {
        original: Some("ours-1@shop.test".into()),
        reason: None,
    });
    ingest_one(&store, &bounce).await;
    let reply = message(&store, reply.id).await;
    assert_eq!(reply.delivery_status, Some(DeliveryStatus::Failed));
    assert!(
        reply
            .delivery_error
            .as_deref()
            .unwrap_or_default()
            .contains("mailbox unavailable"),
        "{:?}",
        reply.delivery_error
    );
});

contract!(nul_characters_are_dead_lettered, |store| async move {
    // PostgreSQL text cannot hold NUL: such a record is dead-lettered, the batch is stored.
    let channel = webhook_channel(&store).await;
    let bad = inbound(&channel, "nul-1", "42", "a\0b");
    let good = inbound(&channel, "ok-1", "42", "fine");
    let report = ingest_batch(&store, &[record(&bad), record(&good)]).await;
    assert!(dead_lettered(&report.outcomes[0]).contains("text"));
    assert_eq!(stored(&report.outcomes[1]).0, good.id);
    // Raw bytes with NUL (a garbage Kafka record) are kept, escaped.
    let garbage = InboundRecord::Undecodable {
        payload: "x\0y".into(),
        error: "not json".into(),
    };
    let report = ingest_batch(&store, &[garbage]).await;
    assert!(dead_lettered(&report.outcomes[0]).contains("not json"));
    let letters = store.dead_letters(10).await.unwrap();
    assert!(
        letters.iter().any(|l| l.payload == "x\\u0000y"),
        "{letters:?}"
    );
});

contract!(
    the_parts_of_a_message_sent_in_pieces_are_one_message,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let part = |external: &str, album: &str, photo: &str, text: &str| {
            let mut m = inbound(&channel, external, "42", text);
            m.part_of = Some(album.into());
            m.attachments = vec![AttachmentRef {
                name: format!("{photo}.jpg"),
                content_type: Some("image/jpeg".into()),
                size: Some(10),
                blob: BlobRef(format!("blobs/{photo}.jpg")),
            }];
            m
        };
        // The first part on its own (webhook mode: one update per request).
        let first = part("42:1", "42:album:7", "p1", "");
        let (id, conversation_id, _) = stored(&ingest_one(&store, &first).await);

        // The part with the caption, twice in one batch, then again later: added once.
        let second = part("42:2", "42:album:7", "p2", "The box");
        let report = ingest_batch(&store, &[record(&second), record(&second)]).await;
        assert!(
            matches!(report.outcomes[0], Outcome::Joined { message_id, .. } if message_id == id),
            "{:?}",
            report.outcomes
        );
        assert!(
            matches!(report.outcomes[1], Outcome::Duplicate { .. }),
            "{:?}",
            report.outcomes
        );
        ingest_one(&store, &second).await;
        let messages = history(&store, conversation_id).await;
        assert_eq!(messages.len(), 1, "one message for the album");
        assert_eq!(
            messages[0].text, "The box",
            "the caption's part gives the text"
        );
        let blobs: Vec<&str> = messages[0]
            .attachments
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["blob"].as_str())
            .collect();
        assert_eq!(blobs, ["blobs/p1.jpg", "blobs/p2.jpg"]);
        assert_eq!(messages[0].edited_at, None, "a part is not an edit");
        let events = store.conversation_events(conversation_id).await.unwrap();
        let added: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "message_part_added")
            .collect();
        assert_eq!(added.len(), 1, "{events:?}");
        assert_eq!(added[0].data, json!({"attachments_added": 1}));
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == "message_received")
                .count(),
            1
        );

        // Both parts of another album in one batch; an edit of a part keeps the others' files.
        let report = ingest_batch(
            &store,
            &[
                record(&part("42:3", "42:album:8", "p3", "Second")),
                record(&part("42:4", "42:album:8", "p4", "")),
            ],
        )
        .await;
        let (other, _, _) = stored(&report.outcomes[0]);
        assert!(
            matches!(report.outcomes[1], Outcome::Joined { message_id, .. } if message_id == other),
            "{:?}",
            report.outcomes
        );
        let mut edit = part("42:1", "42:album:7", "p1", "The box, opened");
        edit.sent_at = first.sent_at;
        edit.edited_at = Some(first.sent_at.unwrap() + chrono::Duration::seconds(5));
        let edited = ingest_one(&store, &edit).await;
        assert!(matches!(edited, Outcome::Edited { .. }), "{edited:?}");
        let messages = history(&store, conversation_id).await;
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].text, "The box, opened");
        assert_eq!(
            messages[0].attachments.as_array().map(Vec::len),
            Some(2),
            "{:?}",
            messages[0].attachments
        );
        assert_eq!(messages[1].text, "Second");
        assert_eq!(messages[1].attachments.as_array().map(Vec::len), Some(2));
    }
);

contract!(
    an_edit_updates_the_stored_message_once_and_keeps_what_it_said,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let m = inbound(&channel, "ext-e", "42", "My order is #41");
        let (id, conversation_id, _) = stored(&ingest_one(&store, &m).await);
        let sent = m.sent_at.unwrap();
        let edit = |text: &str, seconds: i64| {
            let mut e = inbound(&channel, "ext-e", "42", text);
            e.sent_at = m.sent_at;
            e.edited_at = Some(sent + chrono::Duration::seconds(seconds));
            e
        };

        // The edit and its replay in one batch, then an older edit arriving late: one change.
        let report = ingest_batch(
            &store,
            &[
                record(&edit("My order is #42", 60)),
                record(&edit("My order is #42", 60)),
            ],
        )
        .await;
        assert!(
            matches!(report.outcomes[0], Outcome::Edited { message_id, .. } if message_id == id),
            "{:?}",
            report.outcomes
        );
        assert!(
            matches!(report.outcomes[1], Outcome::Duplicate { .. }),
            "{:?}",
            report.outcomes
        );
        let late = ingest_one(&store, &edit("My order is #40", 30)).await;
        assert!(matches!(late, Outcome::Duplicate { .. }), "{late:?}");

        let messages = history(&store, conversation_id).await;
        assert_eq!(messages.len(), 1, "edited, not added");
        assert_eq!(messages[0].text, "My order is #42");
        assert_eq!(
            messages[0].edited_at,
            Some(sent + chrono::Duration::seconds(60))
        );
        assert_eq!(messages[0].revisions.len(), 1);
        assert_eq!(messages[0].revisions[0].text, "My order is #41");
        assert_eq!(messages[0].revisions[0].written_at, sent);
        assert_eq!(
            conversation(&store, conversation_id).await.preview,
            "My order is #42"
        );
        let events = store.conversation_events(conversation_id).await.unwrap();
        let edits: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "message_edited")
            .collect();
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].data, json!({"previous_text": "My order is #41"}));
        assert!(
            report
                .domain_events
                .iter()
                .any(|e| e.kind == inbox_core::envelope::DomainEventKind::MessageEdited),
            "live views hear of it"
        );

        // A second edit keeps both earlier versions, oldest first.
        ingest_one(&store, &edit("My order is #43", 90)).await;
        let revisions = &history(&store, conversation_id).await[0].revisions;
        let texts: Vec<&str> = revisions.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["My order is #41", "My order is #42"]);
        assert_eq!(
            revisions[1].written_at,
            sent + chrono::Duration::seconds(60)
        );
    }
);

contract!(
    a_group_is_one_conversation_and_each_member_its_author,
    |store| async move {
        let channel = webhook_channel(&store).await;
        let in_group = |external_id: &str, member: &str, text: &str| {
            let mut m = inbound(&channel, external_id, "-100", text);
            m.from.name = Some("Acme customers".into());
            m.author = Some(inbox_core::envelope::Party {
                handle: member.into(),
                name: Some(format!("Member {member}")),
                ..Default::default()
            });
            m
        };
        let (_, first, _) = stored(&ingest_one(&store, &in_group("g-1", "1", "hi")).await);
        let (_, second, reason) =
            stored(&ingest_one(&store, &in_group("g-2", "2", "me too")).await);
        assert_eq!(first, second, "{reason:?}");
        let messages = history(&store, first).await;
        let authors: Vec<_> = messages
            .iter()
            .map(|m| m.sender_name.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(authors, ["Member 1", "Member 2"]);
        let c = conversation(&store, first).await;
        assert_eq!(c.contact_handle, "-100", "replies go to the group");
        assert_eq!(c.contact_name.as_deref(), Some("Acme customers"));
    }
);
