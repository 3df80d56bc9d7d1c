//! The store side of the agents' web inbox, run unchanged against SQLite and PostgreSQL: full-text
//! search, the list's text / label / unread filters, tab counts, marking read, contact merge and
//! unmerge, canned replies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on unexpected errors"
)]

mod common;

use chrono::Utc;
use inbox_core::actions;
use inbox_core::ids::{AgentId, ContactId, ConversationId, MessageId};
use inbox_core::model::{
    Agent, Channel, Contact, Conversation, ConversationStatus, Direction, Identity, Message,
    ThreadReason, to_millis,
};
use inbox_core::store::{
    COUNT_CAP, CannedReplyId, CannedReplyInput, ConversationFilter, ConversationPatch,
    ConversationState, MergeId, NewContact, NewMessage, PageCursor, SearchHit, Store, StoreError,
};

use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A private note by `agent`, written as the reply box writes one.
async fn note(store: &Store, conversation: ConversationId, agent: &Agent, text: &str) -> MessageId {
    let c = conversation_state(store, conversation).await;
    let id = MessageId::new();
    let at = to_millis(Utc::now());
    let mut tx = store.begin().await.unwrap();
    tx.raw()
        .insert_messages(&[NewMessage {
            id,
            conversation_id: conversation,
            channel_id: c.channel_id,
            external_id: None,
            direction: Direction::Note,
            contact_id: None,
            agent_id: Some(agent.id),
            sender_handle: None,
            sender_name: Some(agent.name.clone()),
            text: text.to_owned(),
            html: None,
            subject: None,
            in_reply_to: None,
            attachments: "[]".to_owned(),
            raw_ref: None,
            thread_reason: ThreadReason::Agent,
            sent_at: at,
            claimed_sent_at: None,
            received_at: at,
            delivery_status: None,
            part_of: None,
        }])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn conversation_state(store: &Store, id: ConversationId) -> ConversationState {
    let mut tx = store.begin().await.unwrap();
    let state = tx
        .raw()
        .conversations_by_ids(&[id])
        .await
        .unwrap()
        .pop()
        .unwrap();
    tx.commit().await.unwrap();
    state
}

/// `count` conversations of one new contact on `channel`, each with one customer message
/// "<word> number<i>" (one unread) and `labels`, inserted in one transaction. Newest last.
async fn bulk(
    store: &Store,
    channel: &Channel,
    count: usize,
    word: &str,
    labels: &[&str],
) -> Vec<ConversationId> {
    let contact = ContactId::new();
    let base = to_millis(Utc::now()) - 1_000_000;
    let labels = serde_json::to_string(labels).unwrap();
    let mut conversations = Vec::new();
    let mut messages = Vec::new();
    for i in 0..count {
        let id = ConversationId::new();
        let at = base + i as i64 * 10;
        conversations.push(ConversationState {
            id,
            channel_id: channel.id,
            contact_id: contact,
            contact_handle: "bulk".into(),
            status: "open".into(),
            assignee_id: None,
            subject: None,
            labels: labels.clone(),
            preview: String::new(),
            message_count: 1,
            unread_count: 1,
            created_at: at,
            last_message_at: at,
            waiting_since: Some(at),
            snoozed_until: None,
            resolved_at: None,
            subject_key: None,
        });
        messages.push(NewMessage {
            id: MessageId::new(),
            conversation_id: id,
            channel_id: channel.id,
            external_id: Some(format!("bulk-{word}-{i}")),
            direction: Direction::Inbound,
            contact_id: Some(contact),
            agent_id: None,
            sender_handle: Some("bulk".into()),
            sender_name: Some("Bulk Customer".into()),
            text: format!("{word} number{i}"),
            html: None,
            subject: None,
            in_reply_to: None,
            attachments: "[]".into(),
            raw_ref: None,
            thread_reason: ThreadReason::NewConversation,
            sent_at: at,
            claimed_sent_at: None,
            received_at: at,
            delivery_status: None,
            part_of: None,
        });
    }
    let mut tx = store.begin().await.unwrap();
    tx.raw()
        .insert_contacts(&[NewContact {
            id: contact,
            name: Some("Bulk Customer".into()),
            email: None,
            phone: None,
            created_at: base,
        }])
        .await
        .unwrap();
    tx.raw().upsert_conversations(&conversations).await.unwrap();
    tx.raw().insert_messages(&messages).await.unwrap();
    tx.commit().await.unwrap();
    conversations.into_iter().map(|c| c.id).collect()
}

async fn search(store: &Store, query: &str) -> Vec<SearchHit> {
    store
        .search_messages(query, None, 100)
        .await
        .unwrap_or_else(|e| panic!("search {query:?} failed: {e}"))
        .items
}

fn ids_of(hits: &[SearchHit]) -> Vec<MessageId> {
    hits.iter().map(|h| h.message_id).collect()
}

/// Every page of a search, `limit` at a time.
async fn search_all(store: &Store, query: &str, limit: u32) -> Vec<SearchHit> {
    let mut all = Vec::new();
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = store
            .search_messages(query, cursor.as_ref(), limit)
            .await
            .unwrap();
        assert!(page.items.len() <= limit as usize);
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(PageCursor::decode(&next).expect("a cursor")),
            None => break,
        }
    }
    all
}

async fn list(store: &Store, filter: ConversationFilter) -> Vec<ConversationId> {
    list_all(store, &filter, 200).await
}

async fn list_all(store: &Store, filter: &ConversationFilter, limit: u32) -> Vec<ConversationId> {
    let mut all = Vec::new();
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = store
            .list_conversations(filter, cursor.as_ref(), limit)
            .await
            .unwrap();
        all.extend(page.items.into_iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(PageCursor::decode(&next).expect("a cursor")),
            None => break,
        }
    }
    all
}

async fn label(store: &Store, id: ConversationId, agent: &Agent, labels: &[&str]) {
    actions::update_conversation(
        store,
        id,
        agent,
        &ConversationPatch {
            labels: Some(labels.iter().map(|l| l.to_string()).collect()),
            ..ConversationPatch::default()
        },
    )
    .await
    .unwrap();
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: &str) {
    match result {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, expected),
        other => panic!("expected Invalid {{ field: {expected} }}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Search.

contract!(search_finds_messages_and_notes, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@shop.test").await;
    let late = inbound(&channel, "s-1", "ada", "My ORDER is late, where is it?");
    let (late_id, ada_conversation, _) = stored(&ingest_one(&store, &late).await);
    let refund = inbound(&channel, "s-2", "bob", "Where is my Refund? Order 4711.");
    let (refund_id, bob_conversation, _) = stored(&ingest_one(&store, &refund).await);
    let partial = inbound(&channel, "s-3", "bob", "A refund (partial) would be fine");
    let (partial_id, _, _) = stored(&ingest_one(&store, &partial).await);
    let note_id = note(
        &store,
        ada_conversation,
        &agent,
        "Called her about the refund; said \"hello\" too",
    )
    .await;

    // Words in customer messages and in notes, case-insensitive, newest first.
    let hits = search(&store, "refund").await;
    assert_eq!(ids_of(&hits), [note_id, partial_id, refund_id]);
    assert_eq!(ids_of(&search(&store, "REFUND").await), ids_of(&hits));
    let on_note = &hits[0];
    assert_eq!(on_note.direction, Direction::Note);
    assert_eq!(on_note.conversation_id, ada_conversation);
    assert_eq!(on_note.contact_name.as_deref(), Some("Customer ada"));
    assert_eq!(on_note.sender_name.as_deref(), Some("Agent Smith"));
    let on_refund = &hits[2];
    assert_eq!(on_refund.conversation_id, bob_conversation);
    assert_eq!(on_refund.direction, Direction::Inbound);
    assert_eq!(
        on_refund.contact_id,
        conversation(&store, bob_conversation).await.contact_id
    );
    assert_eq!(
        on_refund.sent_at,
        message(&store, refund_id).await.sent_at,
        "the hit carries the message's time"
    );
    // The snippet is the stored text with the matches as byte ranges.
    for hit in &hits {
        assert!(!hit.highlights.is_empty(), "{hit:?}");
        for &(start, end) in &hit.highlights {
            assert_eq!(hit.snippet[start..end].to_lowercase(), "refund", "{hit:?}");
        }
        let marked: Vec<&str> = hit
            .snippet_parts()
            .into_iter()
            .filter(|(_, matched)| *matched)
            .map(|(text, _)| text)
            .collect();
        assert!(
            marked.iter().all(|t| t.eq_ignore_ascii_case("refund")),
            "{marked:?}"
        );
        assert!(!hit.snippet.contains('\u{E000}') && !hit.snippet.contains('\u{E001}'));
    }
    assert!(
        hits[2].snippet.contains("Where is my Refund?"),
        "{:?}",
        hits[2]
    );

    // Phrases, prefixes, several words.
    assert_eq!(ids_of(&search(&store, "\"is late\"").await), [late_id]);
    assert!(search(&store, "\"late is\"").await.is_empty());
    assert_eq!(
        ids_of(&search(&store, "refu*").await),
        [note_id, partial_id, refund_id]
    );
    assert_eq!(
        ids_of(&search(&store, "refund partial").await),
        [partial_id]
    );
    assert_eq!(
        ids_of(&search(&store, "refund AND partial").await),
        [partial_id]
    );
    assert_eq!(ids_of(&search(&store, "(partial)").await), [partial_id]);
    assert_eq!(ids_of(&search(&store, "order 4711").await), [refund_id]);
    assert_eq!(ids_of(&search(&store, "\"hello\"").await), [note_id]);
    assert!(search(&store, "nothing-like-this").await.is_empty());

    // Whatever is typed, no error: FTS5 and tsquery syntax are taken as text.
    for input in [
        "",
        "   ",
        "\"",
        "\"\"",
        "\"refund",
        "refund\"",
        "he said \"hello",
        "(",
        ")",
        "((refund)",
        "refund)",
        "AND",
        "AND refund",
        "refund AND",
        "OR",
        "refund OR partial",
        "NOT refund",
        "-refund",
        "refund:",
        "text:refund",
        "*",
        "**",
        "refund*",
        "*refund",
        "re*und",
        "NEAR(refund partial)",
        "^refund",
        "refund & partial | late",
        "refund <-> partial",
        "!refund",
        "'refund'",
        "''",
        "\\",
        "refund\\",
        ":*",
        "refund:*",
        "{}[]+=~`",
        "🙂 refund",
        "ä ö ü",
        &"refund ".repeat(300),
        &"x".repeat(5_000),
    ] {
        let page = store
            .search_messages(input, None, 20)
            .await
            .unwrap_or_else(|e| panic!("search {input:?} failed: {e}"));
        for hit in &page.items {
            assert!(hit.snippet.is_char_boundary(0));
        }
    }
    for nothing in [
        "", "   ", "\"", "\"\"", "(", "*", "AND", "''", ":*", "{}[]+=~`",
    ] {
        assert!(search(&store, nothing).await.is_empty(), "{nothing:?}");
    }
    assert_eq!(
        ids_of(&search(&store, "((refund)").await),
        [note_id, partial_id, refund_id]
    );

    // Pages of two, newest first, with a cursor while there is more.
    let first = store.search_messages("refund", None, 2).await.unwrap();
    assert_eq!(ids_of(&first.items), [note_id, partial_id]);
    let cursor = PageCursor::decode(first.next_cursor.as_deref().expect("more")).unwrap();
    let second = store
        .search_messages("refund", Some(&cursor), 2)
        .await
        .unwrap();
    assert_eq!(ids_of(&second.items), [refund_id]);
    assert_eq!(second.next_cursor, None);
    assert_eq!(
        ids_of(&search_all(&store, "refund", 1).await),
        ids_of(&hits)
    );
});

contract!(search_with_many_matches, |store| async move {
    // More matches than the sparse probe takes: the index is walked newest first instead.
    let channel = webhook_channel(&store).await;
    bulk(&store, &channel, 1_203, "common", &[]).await;
    bulk(&store, &channel, 3, "rare", &[]).await;

    let page = store.search_messages("common", None, 5).await.unwrap();
    let texts: Vec<&str> = page.items.iter().map(|h| h.snippet.as_str()).collect();
    assert_eq!(
        texts,
        [
            "common number1202",
            "common number1201",
            "common number1200",
            "common number1199",
            "common number1198"
        ]
    );
    let cursor = PageCursor::decode(page.next_cursor.as_deref().unwrap()).unwrap();
    let next = store
        .search_messages("common", Some(&cursor), 3)
        .await
        .unwrap();
    let texts: Vec<&str> = next.items.iter().map(|h| h.snippet.as_str()).collect();
    assert_eq!(
        texts,
        [
            "common number1197",
            "common number1196",
            "common number1195"
        ]
    );
    let all = search_all(&store, "common", 100).await;
    assert_eq!(all.len(), 1_203);
    assert!(all.windows(2).all(|w| w[0].sent_at >= w[1].sent_at));
    let distinct: std::collections::HashSet<MessageId> = ids_of(&all).into_iter().collect();
    assert_eq!(distinct.len(), 1_203);

    assert_eq!(search(&store, "common number17").await.len(), 1);
    assert_eq!(
        search(&store, "number17*").await.len(),
        11,
        "17 and 170 to 179"
    );
    assert_eq!(search(&store, "rare").await.len(), 3);
    assert_eq!(search(&store, "common rare").await.len(), 0);

    // Many matches, none among the newest few thousand messages.
    bulk(&store, &channel, 2_500, "filler", &[]).await;
    let page = store.search_messages("common", None, 4).await.unwrap();
    let texts: Vec<&str> = page.items.iter().map(|h| h.snippet.as_str()).collect();
    assert_eq!(
        texts,
        [
            "common number1202",
            "common number1201",
            "common number1200",
            "common number1199"
        ]
    );
    let cursor = PageCursor::decode(page.next_cursor.as_deref().unwrap()).unwrap();
    let next = store
        .search_messages("common", Some(&cursor), 2)
        .await
        .unwrap();
    let texts: Vec<&str> = next.items.iter().map(|h| h.snippet.as_str()).collect();
    assert_eq!(texts, ["common number1198", "common number1197"]);
    assert_eq!(search_all(&store, "common", 500).await.len(), 1_203);
    assert_eq!(search(&store, "filler number2499").await.len(), 1);
});

// ---------------------------------------------------------------------------------------------
// The conversation list.

contract!(list_filters_text_label_unread, |store| async move {
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@shop.test").await;
    let mut ids = Vec::new();
    for (i, text) in [
        "parcel arrived broken",
        "need an invoice",
        "parcel never arrived",
        "hello there",
    ]
    .iter()
    .enumerate()
    {
        let m = sent(
            inbound(&channel, &format!("f-{i}"), &format!("c{i}"), text),
            secs(now_ms(), i as i64 - 100),
        );
        ids.push(stored(&ingest_one(&store, &m).await).1);
    }
    note(&store, ids[3], &agent, "escalated: parcel lost").await;

    // q: conversations with a matching message, notes included, newest activity first.
    let q = |q: &str| ConversationFilter {
        q: Some(q.to_owned()),
        ..ConversationFilter::default()
    };
    assert_eq!(list(&store, q("parcel")).await, [ids[3], ids[2], ids[0]]);
    assert_eq!(list(&store, q("PARCEL arrived")).await, [ids[2], ids[0]]);
    assert_eq!(list(&store, q("\"arrived broken\"")).await, [ids[0]]);
    assert_eq!(list(&store, q("invoi*")).await, [ids[1]]);
    assert!(list(&store, q("no-such-word")).await.is_empty());
    // Nothing to search for: no filter.
    for blank in ["", "  ", "()", "\""] {
        assert_eq!(list(&store, q(blank)).await.len(), 4, "{blank:?}");
    }
    assert!(
        list(
            &store,
            ConversationFilter {
                q: Some("parcel".into()),
                status: Some(ConversationStatus::Resolved),
                ..ConversationFilter::default()
            }
        )
        .await
        .is_empty()
    );

    // label: trimmed and lower-cased like stored labels; updates are followed.
    label(&store, ids[0], &agent, &["Billing", "vip"]).await;
    label(&store, ids[1], &agent, &["billing"]).await;
    let by_label = |l: &str| ConversationFilter {
        label: Some(l.to_owned()),
        ..ConversationFilter::default()
    };
    assert_eq!(list(&store, by_label("billing")).await, [ids[1], ids[0]]);
    assert_eq!(list(&store, by_label(" BILLING ")).await, [ids[1], ids[0]]);
    assert_eq!(list(&store, by_label("vip")).await, [ids[0]]);
    assert!(list(&store, by_label("bill")).await.is_empty());
    assert!(list(&store, by_label("%")).await.is_empty());
    assert_eq!(list(&store, by_label("")).await.len(), 4);
    // With a status tab: the label rows follow status changes.
    let labelled_with = |l: &str, status| ConversationFilter {
        label: Some(l.to_owned()),
        status: Some(status),
        ..ConversationFilter::default()
    };
    set_status(&store, ids[1], &agent, ConversationStatus::Pending).await;
    assert_eq!(
        list(&store, labelled_with("billing", ConversationStatus::Open)).await,
        [ids[0]]
    );
    assert_eq!(
        list(
            &store,
            labelled_with("billing", ConversationStatus::Pending)
        )
        .await,
        [ids[1]]
    );
    assert!(
        list(
            &store,
            labelled_with("billing", ConversationStatus::Resolved)
        )
        .await
        .is_empty()
    );
    // Reopened by the customer writing again (the funnel's upsert).
    set_status(&store, ids[1], &agent, ConversationStatus::Resolved).await;
    assert_eq!(
        list(
            &store,
            labelled_with("billing", ConversationStatus::Resolved)
        )
        .await,
        [ids[1]]
    );
    let reopen = sent(
        inbound(&channel, "f-reopen", "c1", "one more thing"),
        // Still older than the next conversation's message: the list order stays.
        now_ms() - chrono::Duration::milliseconds(98_500),
    );
    assert_eq!(stored(&ingest_one(&store, &reopen).await).1, ids[1]);
    assert_eq!(
        list(&store, labelled_with("billing", ConversationStatus::Open)).await,
        [ids[1], ids[0]]
    );
    label(&store, ids[0], &agent, &["vip"]).await;
    assert_eq!(list(&store, by_label("billing")).await, [ids[1]]);
    label(&store, ids[1], &agent, &[]).await;
    assert!(list(&store, by_label("billing")).await.is_empty());
    assert_eq!(
        list(
            &store,
            ConversationFilter {
                label: Some("vip".into()),
                q: Some("broken".into()),
                ..ConversationFilter::default()
            }
        )
        .await,
        [ids[0]]
    );

    // unread: customer messages make a conversation unread, mark_read clears it.
    let unread = ConversationFilter {
        unread_only: true,
        ..ConversationFilter::default()
    };
    assert_eq!(
        list(&store, unread.clone()).await,
        [ids[3], ids[2], ids[1], ids[0]]
    );
    assert!(store.mark_read(ids[2], agent.id).await.unwrap());
    assert!(
        !store.mark_read(ids[2], agent.id).await.unwrap(),
        "nothing left unread"
    );
    assert!(
        !store
            .mark_read(ConversationId::new(), agent.id)
            .await
            .unwrap()
    );
    assert_eq!(conversation(&store, ids[2]).await.unread_count, 0);
    assert_eq!(list(&store, unread.clone()).await, [ids[3], ids[1], ids[0]]);
    let again = sent(
        inbound(&channel, "f-again", "c2", "still waiting"),
        secs(now_ms(), -50),
    );
    ingest_one(&store, &again).await;
    assert_eq!(conversation(&store, ids[2]).await.unread_count, 1);
    assert_eq!(
        list(&store, unread.clone()).await,
        [ids[2], ids[3], ids[1], ids[0]]
    );
    assert_eq!(
        list(
            &store,
            ConversationFilter {
                unread_only: true,
                label: Some("vip".into()),
                ..ConversationFilter::default()
            }
        )
        .await,
        [ids[0]]
    );
});

contract!(list_filters_with_many_matches, |store| async move {
    // Beyond the sparse probe: the statement filters while walking the list in order.
    let channel = webhook_channel(&store).await;
    let agent = new_agent(&store, "agent@shop.test").await;
    let common = bulk(&store, &channel, 1_105, "shipping", &["bulk", "eu"]).await;
    let others = bulk(&store, &channel, 20, "other", &[]).await;
    let newest_first: Vec<ConversationId> = common.iter().rev().copied().collect();

    let by_text = ConversationFilter {
        q: Some("shipping".into()),
        ..ConversationFilter::default()
    };
    let page = store.list_conversations(&by_text, None, 50).await.unwrap();
    assert_eq!(
        page.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        &newest_first[..50]
    );
    assert!(page.next_cursor.is_some());
    assert_eq!(list_all(&store, &by_text, 200).await, newest_first);

    let by_label = ConversationFilter {
        label: Some("bulk".into()),
        ..ConversationFilter::default()
    };
    assert_eq!(list_all(&store, &by_label, 200).await, newest_first);
    let both = ConversationFilter {
        label: Some("eu".into()),
        q: Some("shipping number11*".into()),
        ..ConversationFilter::default()
    };
    // number11, number110-119, number1100-1104
    assert_eq!(list_all(&store, &both, 200).await.len(), 1 + 10 + 5);

    // Fewer matches again after relabelling one: still right.
    label(&store, others[0], &agent, &["bulk"]).await;
    let with_other = list_all(&store, &by_label, 500).await;
    assert_eq!(with_other.len(), 1_106);
    assert!(with_other.contains(&others[0]));

    let unread = ConversationFilter {
        unread_only: true,
        ..ConversationFilter::default()
    };
    assert_eq!(list_all(&store, &unread, 200).await.len(), 1_125);

    // Many with the label, few or none of them with the status asked for.
    let resolved_bulk = ConversationFilter {
        label: Some("bulk".into()),
        status: Some(ConversationStatus::Resolved),
        ..ConversationFilter::default()
    };
    assert!(list_all(&store, &resolved_bulk, 200).await.is_empty());
    set_status(&store, common[7], &agent, ConversationStatus::Resolved).await;
    assert_eq!(list_all(&store, &resolved_bulk, 200).await, [common[7]]);
    let open_bulk = ConversationFilter {
        label: Some("bulk".into()),
        status: Some(ConversationStatus::Open),
        ..ConversationFilter::default()
    };
    assert_eq!(list_all(&store, &open_bulk, 200).await.len(), 1_105);
});

contract!(tab_counts, |store| async move {
    let channel = webhook_channel(&store).await;
    let me = new_agent(&store, "me@shop.test").await;
    let colleague = new_agent(&store, "colleague@shop.test").await;
    let counts = store.conversation_counts(me.id).await.unwrap();
    assert_eq!(counts, Default::default());

    let mut ids = Vec::new();
    for i in 0..8 {
        let m = inbound(&channel, &format!("t-{i}"), &format!("c{i}"), "hello");
        ids.push(stored(&ingest_one(&store, &m).await).1);
    }
    let assign = |id, agent: Option<AgentId>| {
        let store = store.clone();
        let me = me.clone();
        async move {
            actions::update_conversation(
                &store,
                id,
                &me,
                &ConversationPatch {
                    assignee: Some(agent),
                    ..ConversationPatch::default()
                },
            )
            .await
            .unwrap();
        }
    };
    assign(ids[0], Some(me.id)).await;
    assign(ids[1], Some(me.id)).await;
    assign(ids[2], Some(colleague.id)).await;
    assign(ids[3], Some(me.id)).await;
    set_status(&store, ids[3], &me, ConversationStatus::Resolved).await;
    set_status(&store, ids[4], &me, ConversationStatus::Pending).await;
    set_status(&store, ids[5], &me, ConversationStatus::Resolved).await;
    store.mark_read(ids[0], me.id).await.unwrap();
    store.mark_read(ids[6], me.id).await.unwrap();

    let counts = store.conversation_counts(me.id).await.unwrap();
    // Open: 0, 1 (mine), 2 (colleague's), 6, 7 (unassigned).
    assert_eq!(counts.mine, 2);
    assert_eq!(counts.unassigned, 2);
    assert_eq!(counts.all, 5);
    assert_eq!(counts.unread, 3, "open and unread: 1, 2, 7");
    assert_eq!(counts.by_status.open, 5);
    assert_eq!(counts.by_status.pending, 1);
    assert_eq!(counts.by_status.snoozed, 0);
    assert_eq!(counts.by_status.resolved, 2);
    let theirs = store.conversation_counts(colleague.id).await.unwrap();
    assert_eq!((theirs.mine, theirs.all), (1, 5));
    const { assert!(COUNT_CAP >= 1_000) };
});

// ---------------------------------------------------------------------------------------------
// Contact merge and unmerge.

/// Everything the contact panel and timeline show of a contact.
#[derive(Debug, PartialEq)]
struct ContactView {
    contact: Contact,
    identities: Vec<Identity>,
    conversations: Vec<Conversation>,
    /// The cross-channel timeline, page by page (two messages a page).
    timeline: Vec<Vec<Message>>,
    histories: Vec<Vec<Message>>,
}

async fn view(store: &Store, id: ContactId) -> ContactView {
    let (contact, identities) = store.contact(id).await.unwrap().expect("contact");
    let conversations = store.contact_conversations(id).await.unwrap();
    let mut timeline = Vec::new();
    let mut before: Option<PageCursor> = None;
    loop {
        let page = store
            .contact_messages(id, before.as_ref(), 2)
            .await
            .unwrap();
        timeline.push(page.items);
        match page.next_before {
            Some(next) => before = Some(PageCursor::decode(&next).unwrap()),
            None => break,
        }
    }
    let mut histories = Vec::new();
    for c in &conversations {
        histories.push(history(store, c.id).await);
    }
    ContactView {
        contact,
        identities,
        conversations,
        timeline,
        histories,
    }
}

/// Two customers: `keep` (no name, one conversation on `a`), `absorb` (named, verified email,
/// conversations on `a` and `b`).
async fn two_customers(store: &Store) -> (Channel, Channel, ContactId, ContactId) {
    let a = webhook_channel(store).await;
    let b = webhook_channel(store).await;
    let mut k1 = inbound(&a, "k-1", "keeper", "first from keeper");
    k1.from.name = None;
    let k2 = sent(
        inbound(&a, "k-2", "keeper", "second from keeper"),
        secs(now_ms(), 1),
    );
    let (_, kc, _) = stored(&ingest_one(store, &k1).await);
    ingest_one(store, &k2).await;
    let mut x1 = inbound(&a, "x-1", "absorbed", "hello from the other one");
    x1.from.email = Some("Other@Example.com".into());
    let (_, xc, _) = stored(&ingest_one(store, &x1).await);
    let mut x2 = inbound(&b, "x-2", "absorbed-b", "and on channel b");
    x2.from.email = Some("other@example.com".into());
    ingest_one(store, &x2).await;
    let x3 = sent(
        inbound(&b, "x-3", "absorbed-b", "b again"),
        secs(now_ms(), 2),
    );
    ingest_one(store, &x3).await;
    let keep = conversation(store, kc).await.contact_id;
    let absorb = conversation(store, xc).await.contact_id;
    assert_ne!(keep, absorb);
    (a, b, keep, absorb)
}

contract!(merge_and_unmerge_round_trip, |store| async move {
    let agent = new_agent(&store, "agent@shop.test").await;
    let (_, _, keep, absorb) = two_customers(&store).await;
    // An agent's note and reply in the absorbed customer's conversation move with it.
    let absorbed_conversations = store.contact_conversations(absorb).await.unwrap();
    assert_eq!(absorbed_conversations.len(), 2);
    note(&store, absorbed_conversations[0].id, &agent, "a note").await;
    let before_keep = view(&store, keep).await;
    let before_absorb = view(&store, absorb).await;
    assert_eq!(before_keep.contact.name, None);
    assert_eq!(
        before_absorb.identities.len(),
        3,
        "{:?}",
        before_absorb.identities
    );

    let merge_id = actions::merge_contacts(&store, keep, absorb, &agent)
        .await
        .unwrap();

    // Merged: everything is the kept contact's.
    let merged = view(&store, keep).await;
    assert_eq!(merged.contact.name.as_deref(), Some("Customer absorbed"));
    assert_eq!(merged.contact.email.as_deref(), Some("other@example.com"));
    assert_eq!(merged.contact.created_at, before_keep.contact.created_at);
    assert_eq!(merged.identities.len(), 4);
    assert_eq!(merged.conversations.len(), 3);
    assert!(
        merged
            .conversations
            .iter()
            .all(|c| c.contact_id == keep && c.contact_name.as_deref() == Some("Customer absorbed"))
    );
    let merged_messages: Vec<Message> = merged.timeline.iter().flatten().cloned().collect();
    assert_eq!(merged_messages.len(), 2 + 3 + 1);
    assert!(
        merged_messages
            .iter()
            .all(|m| m.contact_id.is_none() || m.contact_id == Some(keep))
    );
    let (absorbed_now, absorbed_identities) = store.contact(absorb).await.unwrap().unwrap();
    assert_eq!(
        absorbed_now, before_absorb.contact,
        "the absorbed row stays as it was"
    );
    assert!(absorbed_identities.is_empty());
    assert!(
        store
            .contact_conversations(absorb)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.resolve_contact(absorb).await.unwrap(), Some(keep));
    assert_eq!(store.resolve_contact(keep).await.unwrap(), Some(keep));
    assert_eq!(store.resolve_contact(ContactId::new()).await.unwrap(), None);

    let record = store.contact_merge(merge_id).await.unwrap().expect("merge");
    assert_eq!((record.kept_id, record.absorbed_id), (keep, absorb));
    assert_eq!(record.moved_identities, before_absorb.identities);
    assert_eq!(
        record.moved_conversations.len(),
        before_absorb.conversations.len()
    );
    assert_eq!(
        record.moved_messages, 3,
        "the customer's messages, not the note"
    );
    let filled: Vec<&str> = record
        .filled_fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(filled, ["name", "email"]);
    assert_eq!(record.merged_by, Some(agent.id));
    assert_eq!(record.undone_at, None);
    assert_eq!(
        store.contact_merges(keep).await.unwrap(),
        std::slice::from_ref(&record)
    );
    assert_eq!(
        store.contact_merges(absorb).await.unwrap(),
        std::slice::from_ref(&record)
    );
    for c in &before_absorb.conversations {
        let kinds = event_kinds(&store, c.id).await;
        assert!(kinds.contains(&"merged".to_owned()), "{kinds:?}");
    }
    assert!(
        !event_kinds(&store, before_keep.conversations[0].id)
            .await
            .contains(&"merged".to_owned())
    );

    // Unmerged: both contacts read exactly as before, timelines included.
    actions::unmerge_contacts(&store, merge_id, &agent)
        .await
        .unwrap();
    assert_eq!(view(&store, keep).await, before_keep);
    assert_eq!(view(&store, absorb).await, before_absorb);
    assert_eq!(store.resolve_contact(absorb).await.unwrap(), Some(absorb));
    let record = store.contact_merge(merge_id).await.unwrap().unwrap();
    assert_eq!(record.undone_by, Some(agent.id));
    assert!(record.undone_at.is_some());
    for c in &before_absorb.conversations {
        let kinds = event_kinds(&store, c.id).await;
        let merged = kinds.iter().position(|k| k == "merged").expect("merged");
        let unmerged = kinds
            .iter()
            .position(|k| k == "unmerged")
            .expect("unmerged");
        assert!(merged < unmerged, "{kinds:?}");
    }
    assert_invalid(
        actions::unmerge_contacts(&store, merge_id, &agent).await,
        "merge",
    );

    // Merged again and undone again: the same.
    let again = actions::merge_contacts(&store, keep, absorb, &agent)
        .await
        .unwrap();
    assert_ne!(again, merge_id);
    actions::unmerge_contacts(&store, again, &agent)
        .await
        .unwrap();
    assert_eq!(view(&store, keep).await, before_keep);
    assert_eq!(view(&store, absorb).await, before_absorb);
    assert_eq!(store.contact_merges(keep).await.unwrap().len(), 2);
});

contract!(merged_customers_keep_writing, |store| async move {
    let agent = new_agent(&store, "agent@shop.test").await;
    let (a, _, keep, absorb) = two_customers(&store).await;
    let absorbed_on_a = store
        .contact_conversations(absorb)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.channel_id == a.id)
        .unwrap()
        .id;
    let merge_id = actions::merge_contacts(&store, keep, absorb, &agent)
        .await
        .unwrap();

    // The absorbed customer's handle resolves to the kept contact now.
    let later = sent(
        inbound(&a, "x-later", "absorbed", "writing while merged"),
        secs(now_ms(), 10),
    );
    let (later_id, later_conversation, _) = stored(&ingest_one(&store, &later).await);
    assert_eq!(
        later_conversation, absorbed_on_a,
        "the customer's conversation on a"
    );
    assert_eq!(message(&store, later_id).await.contact_id, Some(keep));
    assert_eq!(
        conversation(&store, later_conversation).await.contact_id,
        keep
    );
    // A new identity of the absorbed customer (its verified email on a new channel) joins the
    // kept contact too.
    let c = webhook_channel(&store).await;
    let mut elsewhere = inbound(&c, "x-c", "absorbed-c", "hi from c");
    elsewhere.from.email = Some("other@example.com".into());
    let (elsewhere_id, elsewhere_conversation, _) = stored(&ingest_one(&store, &elsewhere).await);
    assert_eq!(
        conversation(&store, elsewhere_conversation)
            .await
            .contact_id,
        keep
    );
    assert_eq!(message(&store, elsewhere_id).await.contact_id, Some(keep));
    let (_, identities) = store.contact(keep).await.unwrap().unwrap();
    assert!(identities.iter().any(|i| i.handle == "absorbed-c"));

    // Unmerge: what the moved identities sent goes back with them; what came in through an
    // identity created while merged stays with the kept contact.
    actions::unmerge_contacts(&store, merge_id, &agent)
        .await
        .unwrap();
    assert_eq!(
        conversation(&store, later_conversation).await.contact_id,
        absorb
    );
    assert_eq!(message(&store, later_id).await.contact_id, Some(absorb));
    assert_eq!(
        conversation(&store, elsewhere_conversation)
            .await
            .contact_id,
        keep
    );
    let (_, identities) = store.contact(absorb).await.unwrap().unwrap();
    assert_eq!(identities.len(), 3);
    let again = sent(
        inbound(&a, "x-after", "absorbed", "after the unmerge"),
        secs(now_ms(), 20),
    );
    let (after_id, after_conversation, _) = stored(&ingest_one(&store, &again).await);
    assert_eq!(after_conversation, absorbed_on_a);
    assert_eq!(message(&store, after_id).await.contact_id, Some(absorb));

    // A conversation the absorbed customer opened while merged goes back too.
    let merge_id = actions::merge_contacts(&store, keep, absorb, &agent)
        .await
        .unwrap();
    set_status(&store, absorbed_on_a, &agent, ConversationStatus::Resolved).await;
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let new_thread = inbound(&a, "x-new", "absorbed", "a new question");
    let (new_id, new_conversation, reason) =
        stored(&ingest_one_with(&store, &new_thread, &short_reopen_window()).await);
    assert_eq!(reason, ThreadReason::NewConversation);
    assert_eq!(
        conversation(&store, new_conversation).await.contact_id,
        keep
    );
    actions::unmerge_contacts(&store, merge_id, &agent)
        .await
        .unwrap();
    assert_eq!(
        conversation(&store, new_conversation).await.contact_id,
        absorb
    );
    assert_eq!(message(&store, new_id).await.contact_id, Some(absorb));
    assert_eq!(
        event_kinds(&store, new_conversation)
            .await
            .last()
            .map(String::as_str),
        Some("unmerged")
    );
});

contract!(merge_validation, |store| async move {
    let agent = new_agent(&store, "agent@shop.test").await;
    let (_, _, keep, absorb) = two_customers(&store).await;
    let channel = webhook_channel(&store).await;
    let third = conversation(
        &store,
        stored(&ingest_one(&store, &inbound(&channel, "z-1", "third", "hi")).await).1,
    )
    .await
    .contact_id;

    assert_invalid(
        actions::merge_contacts(&store, keep, keep, &agent).await,
        "absorb",
    );
    match actions::merge_contacts(&store, keep, ContactId::new(), &agent).await {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "contact"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let merge_id = actions::merge_contacts(&store, keep, absorb, &agent)
        .await
        .unwrap();
    // The absorbed contact is merged: it can neither be absorbed again nor keep another.
    assert_invalid(
        actions::merge_contacts(&store, third, absorb, &agent).await,
        "absorb",
    );
    assert_invalid(
        actions::merge_contacts(&store, absorb, third, &agent).await,
        "keep",
    );
    assert_invalid(
        actions::merge_contacts(&store, keep, absorb, &agent).await,
        "absorb",
    );

    // The kept contact absorbed by a third: the first merge cannot be undone before the second.
    let second = actions::merge_contacts(&store, third, keep, &agent)
        .await
        .unwrap();
    assert_eq!(store.resolve_contact(absorb).await.unwrap(), Some(third));
    assert_invalid(
        actions::unmerge_contacts(&store, merge_id, &agent).await,
        "merge",
    );
    actions::unmerge_contacts(&store, second, &agent)
        .await
        .unwrap();
    actions::unmerge_contacts(&store, merge_id, &agent)
        .await
        .unwrap();
    assert_eq!(store.resolve_contact(absorb).await.unwrap(), Some(absorb));
    match actions::unmerge_contacts(&store, MergeId::new(), &agent).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Nothing was left behind by the refused attempts.
    let (_, identities) = store.contact(absorb).await.unwrap().unwrap();
    assert_eq!(identities.len(), 3);
    assert_eq!(store.contact_conversations(third).await.unwrap().len(), 1);
});

// ---------------------------------------------------------------------------------------------
// Canned replies.

contract!(canned_replies_crud, |store| async move {
    let agent = new_agent(&store, "agent@shop.test").await;
    let input = |shortcut: &str, title: &str, body: &str| CannedReplyInput {
        shortcut: shortcut.to_owned(),
        title: title.to_owned(),
        body: body.to_owned(),
        personal: false,
    };
    assert!(store.canned_replies("", None).await.unwrap().is_empty());

    let refund = store
        .create_canned_reply(
            &input(" refund ", " Refund policy ", "You get your money back.\n"),
            Some(agent.id),
        )
        .await
        .unwrap();
    assert_eq!(refund.shortcut, "refund");
    assert_eq!(refund.title, "Refund policy");
    assert_eq!(refund.body, "You get your money back.");
    assert_eq!(refund.created_by, Some(agent.id));
    assert_eq!(
        store.canned_reply(refund.id).await.unwrap(),
        Some(refund.clone())
    );
    let late = store
        .create_canned_reply(&input("ref_late-2", "Late", "Sorry!"), None)
        .await
        .unwrap();
    let thanks = store
        .create_canned_reply(&input("thanks", "Thanks", "Thank you."), None)
        .await
        .unwrap();

    let shortcuts = |replies: Vec<inbox_core::store::CannedReply>| {
        replies.into_iter().map(|r| r.shortcut).collect::<Vec<_>>()
    };
    assert_eq!(
        shortcuts(store.canned_replies("", None).await.unwrap()),
        ["ref_late-2", "refund", "thanks"]
    );
    assert_eq!(
        shortcuts(store.canned_replies("ref", None).await.unwrap()),
        ["ref_late-2", "refund"]
    );
    assert_eq!(
        shortcuts(store.canned_replies("/REF_", None).await.unwrap()),
        ["ref_late-2"]
    );
    assert_eq!(
        shortcuts(store.canned_replies("refund", None).await.unwrap()),
        ["refund"]
    );
    assert!(
        store
            .canned_replies("refunds", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.canned_replies("r%", None).await.unwrap().is_empty());
    assert!(
        store.canned_replies("r_f", None).await.unwrap().is_empty(),
        "_ is no wildcard"
    );

    // Validation names the field.
    for bad in ["", "Refund", "re fund", "ré", "a.b", "/x", &"x".repeat(33)] {
        assert_invalid(
            store.create_canned_reply(&input(bad, "t", "b"), None).await,
            "shortcut",
        );
    }
    assert_invalid(
        store
            .create_canned_reply(&input("refund", "Again", "b"), None)
            .await,
        "shortcut",
    );
    assert_invalid(
        store
            .create_canned_reply(&input("ok", "  ", "b"), None)
            .await,
        "title",
    );
    assert_invalid(
        store
            .create_canned_reply(&input("ok", "t", " \n "), None)
            .await,
        "body",
    );
    assert_invalid(
        store
            .create_canned_reply(&input("ok", "t", "a\0b"), None)
            .await,
        "body",
    );
    assert_eq!(store.canned_replies("", None).await.unwrap().len(), 3);

    // Update: same rules; the creation stays.
    let changed = store
        .update_canned_reply(late.id, &input("late", "Late order", "We are on it."))
        .await
        .unwrap();
    assert_eq!(changed.id, late.id);
    assert_eq!(
        (
            changed.shortcut.as_str(),
            changed.title.as_str(),
            changed.body.as_str()
        ),
        ("late", "Late order", "We are on it.")
    );
    assert_eq!(changed.created_at, late.created_at);
    assert!(changed.updated_at >= late.updated_at);
    assert_invalid(
        store
            .update_canned_reply(late.id, &input("thanks", "x", "y"))
            .await,
        "shortcut",
    );
    assert_invalid(
        store
            .update_canned_reply(late.id, &input("Late", "x", "y"))
            .await,
        "shortcut",
    );
    match store
        .update_canned_reply(CannedReplyId::new(), &input("new", "x", "y"))
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Keeping its own shortcut is no conflict.
    store
        .update_canned_reply(thanks.id, &input("thanks", "Thanks!", "Thank you."))
        .await
        .unwrap();

    // Delete.
    assert!(store.delete_canned_reply(refund.id).await.unwrap());
    assert!(!store.delete_canned_reply(refund.id).await.unwrap());
    assert_eq!(store.canned_reply(refund.id).await.unwrap(), None);
    assert_eq!(
        shortcuts(store.canned_replies("", None).await.unwrap()),
        ["late", "thanks"]
    );
    // The shortcut is free again.
    store
        .create_canned_reply(&input("refund", "Refund", "Again."), None)
        .await
        .unwrap();
});
