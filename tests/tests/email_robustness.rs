//! The email channel when things are not tidy, against the real Dovecot and SMTP server
//! (`tests/services/mail`): mail another client already read, mail that arrives while the app is
//! down, an IMAP server restarted in the middle of a backfill, a mailbox recreated with a new
//! UIDVALIDITY, the threading rules fed by real mail clients' headers, bounces and auto-replies.
//!
//! Nothing here sleeps for correctness: every wait polls with a timeout, and "nothing more
//! happened" is shown by a sentinel mail sent last ([`MailServer::sentinel`]: the mailbox is read
//! in UID order, so once the sentinel is stored everything before it has been handled).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use inbox_connectors::email::EmailConfig;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_core::model::Channel;
use inbox_core::store::Store;
use inbox_core::store::test_support::RawPool;
use inbox_e2e::kafka::metric_value;
use inbox_e2e::mail::{MailServer, find_inbound};
use inbox_e2e::{Backend, TestApp, both_backends, str_of, wait_for, wait_until};
use serde_json::Value;

both_backends!(
    seen_mail_is_still_ingested,
    flag_changes_by_another_client_during_backfill,
    mail_while_down_is_ingested_after_restart,
    dovecot_restart_mid_sync,
    uidvalidity_change_resync_creates_no_duplicate,
    rewritten_message_ids_thread_by_subject,
    changed_subject_threads_by_reference,
    same_subject_from_two_customers_is_two_conversations,
    reply_all_from_two_senders_does_not_merge,
    colleague_writing_to_the_token_address_threads_by_token,
    bounce_marks_reply_failed,
);

/// Waits for single mails (SMTP → IMAP IDLE → store).
const WAIT: Duration = Duration::from_secs(30);
/// Waits for a whole backfill of many mails, possibly across an IMAP outage and the source's
/// restart backoff.
const LONG_WAIT: Duration = Duration::from_secs(120);

const SUPPORT: &str = "support@example.test";
const CUSTOMER: &str = "customer@example.test";
const SOMEONE: &str = "someone@example.test";
const COLLEAGUE: &str = "colleague@example.test";

// ---------------------------------------------------------------------------------------------
// Helpers

fn email_config(server: &MailServer) -> EmailConfig {
    server.support_config()
}

/// Creates the email channel; the running app's source runner picks it up within seconds.
async fn create_channel(app: &TestApp, server: &MailServer) -> Channel {
    app.store
        .add_channel(inbox_core::store::NewChannel {
            kind: ChannelKind::EMAIL,
            name: ("support").into(),
            config: serde_json::to_value(email_config(server)).unwrap(),
            secret: "unused".into(),
            rules: inbox_core::channel_rules::ChannelRules::MAIL,
        })
        .await
        .unwrap()
}

/// A mail as a mail client writes it.
#[derive(Debug, Clone)]
struct Mail {
    /// `Name <address>` or a bare address.
    from: String,
    to: String,
    message_id: String,
    subject: String,
    in_reply_to: Option<String>,
    references: Vec<String>,
    /// Further header lines (`Name: value`).
    headers: Vec<String>,
    body: String,
}

impl Mail {
    /// A first mail (no thread headers) from `from` to the support address.
    fn new(from: &str, message_id: &str, subject: &str) -> Mail {
        Mail {
            from: from.to_owned(),
            to: SUPPORT.to_owned(),
            message_id: message_id.to_owned(),
            subject: subject.to_owned(),
            in_reply_to: None,
            references: Vec::new(),
            headers: Vec::new(),
            body: format!("Hello, this is {message_id}.\r\n"),
        }
    }

    fn raw(&self) -> Vec<u8> {
        let mut raw = format!(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}>\r\nDate: {}\r\nMIME-Version: 1.0\r\n",
            self.from,
            self.to,
            self.subject,
            self.message_id,
            Utc::now().to_rfc2822(),
        );
        if let Some(parent) = &self.in_reply_to {
            raw.push_str(&format!("In-Reply-To: <{parent}>\r\n"));
        }
        if !self.references.is_empty() {
            let refs: Vec<String> = self.references.iter().map(|r| format!("<{r}>")).collect();
            raw.push_str(&format!("References: {}\r\n", refs.join(" ")));
        }
        for header in &self.headers {
            raw.push_str(header);
            raw.push_str("\r\n");
        }
        if !self
            .headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
        {
            raw.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        raw.push_str("\r\n");
        raw.push_str(&self.body);
        raw.into_bytes()
    }

    /// The bare address of `from`.
    fn sender(&self) -> String {
        match self.from.rsplit_once('<') {
            Some((_, rest)) => rest.trim_end_matches('>').to_owned(),
            None => self.from.clone(),
        }
    }

    /// Submits the mail through the SMTP server, which delivers it into the support mailbox.
    async fn send(&self, server: &MailServer) {
        server
            .send_raw(Some(&self.sender()), &[&self.to], &self.raw())
            .await;
    }
}

/// Sends `count` distinct mails from the customer (`<prefix>-<i>@customer.example.test`,
/// subject `<prefix> order <i>`), a few at a time; returns their Message-IDs.
async fn send_many(server: &MailServer, prefix: &str, count: usize) -> Vec<String> {
    let mails: Vec<Mail> = (0..count)
        .map(|i| {
            Mail::new(
                CUSTOMER,
                &format!("{prefix}-{i}@customer.example.test"),
                &format!("{prefix} order {i}"),
            )
        })
        .collect();
    futures::stream::iter(mails.iter().map(|m| m.send(server)))
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    mails.into_iter().map(|m| m.message_id).collect()
}

/// External ids of the inbound messages of a channel, as stored (one row each).
async fn inbound_external_ids(store: &Store, channel: ChannelId) -> Vec<String> {
    let sql = "SELECT external_id FROM messages WHERE channel_id = $1 AND direction = 'inbound'";
    let ids: Vec<Option<String>> = match store.raw_pool() {
        RawPool::Sqlite(pool) => sqlx::query_scalar(sql)
            .bind(channel)
            .fetch_all(pool)
            .await
            .unwrap(),
        RawPool::Postgres(pool) => sqlx::query_scalar(sql)
            .bind(channel)
            .fetch_all(pool)
            .await
            .unwrap(),
    };
    ids.into_iter().map(Option::unwrap_or_default).collect()
}

/// Asserts the channel's inbound messages are exactly `expected`, each stored once.
async fn assert_stored_once(app: &TestApp, channel: ChannelId, expected: &[String]) {
    let stored = inbound_external_ids(&app.store, channel).await;
    let distinct: HashSet<&String> = stored.iter().collect();
    let want: HashSet<&String> = expected.iter().collect();
    assert_eq!(
        stored.len(),
        distinct.len(),
        "every mail is stored once (duplicates found)"
    );
    assert_eq!(
        distinct,
        want,
        "stored ≠ sent: missing {:?}, unexpected {:?}",
        want.difference(&distinct).collect::<Vec<_>>(),
        distinct.difference(&want).collect::<Vec<_>>()
    );
}

/// Every message of every conversation (through the API, like a client).
async fn all_messages(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for conversation in app.conversations().await {
        all.extend(app.messages(str_of(&conversation, "id")).await);
    }
    all
}

/// Waits until the message with this external id is stored; returns it as the API shows it.
async fn wait_for_mail(app: &TestApp, external_id: &str) -> Value {
    let (id, conversation_id) = wait_for(
        WAIT,
        &format!("mail {external_id} to be stored"),
        async || find_inbound(&app.store, external_id).await,
    )
    .await;
    app.message(&conversation_id, &id).await
}

/// Waits until the store holds `count` messages.
async fn wait_for_total(app: &TestApp, count: i64, timeout: Duration) {
    wait_until(timeout, &format!("{count} stored messages"), async || {
        app.message_total().await >= count
    })
    .await;
    assert_eq!(app.message_total().await, count, "no more than {count}");
}

/// The funnel's count of records recognised as duplicates (`/metrics`). The recorder is
/// process-wide: every test of this binary counts into it (see [`DUPLICATE_COUNTER`]).
const DUPLICATE: &str = r#"inbox_ingest_records_total{outcome="duplicate"}"#;

/// Taken by the scenarios that measure [`DUPLICATE`] for as long as they do, so that two of them
/// (the SQLite and PostgreSQL runs of one scenario) do not count into each other's difference.
/// The other scenarios here make no duplicates.
static DUPLICATE_COUNTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of [`DUPLICATE`] on the app's `/metrics`.
async fn duplicates_recognised(app: &TestApp) -> f64 {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "GET /metrics: {}",
        response.status()
    );
    metric_value(&response.text().await.unwrap(), DUPLICATE)
}

/// The customer's first mail and the conversation it opened; the agent's reply to it once it
/// was sent: (conversation id, our reply's Message-ID).
async fn conversation_with_sent_reply(
    app: &TestApp,
    server: &MailServer,
    first: &Mail,
) -> (String, String) {
    first.send(server).await;
    let stored = wait_for_mail(app, &first.message_id).await;
    let conversation_id = str_of(&stored, "conversation_id").to_owned();
    let reply = app
        .agent_writes(&conversation_id, "It ships today.", false)
        .await;
    let sent = app
        .wait_for_delivery(&conversation_id, str_of(&reply, "id"), "sent")
        .await;
    (conversation_id, str_of(&sent, "external_id").to_owned())
}

fn elapsed(started: Instant, what: &str) {
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// The IMAP source

/// Mail another client already read (\Seen) is still ingested, and reading the mailbox does not
/// mark unread mail as read.
async fn seen_mail_is_still_ingested(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;

    let read = Mail::new(CUSTOMER, "read-1@customer.example.test", "Already read");
    read.send(&server).await;
    let mut other_client = server.imap("support").await;
    other_client.select("INBOX").await;
    let read_uid = other_client
        .uid_of(&read.message_id)
        .await
        .expect("the mail is in the support INBOX");
    other_client.set_seen(&read_uid.to_string()).await;
    assert!(
        !other_client.unseen().await.contains(&read_uid),
        "the other client marked it read"
    );
    other_client.logout().await;

    // Only now the channel: its backfill finds a mailbox with nothing unread.
    let channel = create_channel(&app, &server).await;
    let stored = wait_for_mail(&app, &read.message_id).await;
    assert_eq!(stored["sender_handle"], CUSTOMER);

    let unread = Mail::new(CUSTOMER, "unread-1@customer.example.test", "Not read yet");
    unread.send(&server).await;
    wait_for_mail(&app, &unread.message_id).await;

    let mut other_client = server.imap("support").await;
    other_client.select("INBOX").await;
    let unread_uid = other_client.uid_of(&unread.message_id).await.unwrap();
    let unseen = other_client.unseen().await;
    other_client.logout().await;
    assert!(
        unseen.contains(&unread_uid),
        "ingesting must not mark mail read (BODY.PEEK): UID {unread_uid} not in UNSEEN {unseen:?}"
    );
    assert!(!unseen.contains(&read_uid), "the read mail stays read");
    assert_stored_once(
        &app,
        channel.id,
        &[read.message_id.clone(), unread.message_id.clone()],
    )
    .await;
}

/// Another client (a colleague's mail program) marks mail read while the connector backfills:
/// the server reports those flag changes as unsolicited FETCH responses without a body in the
/// middle of the connector's UID FETCH (`* 5 FETCH (FLAGS (\Seen))`). They are not mail:
/// nothing is dead-lettered and nothing skipped.
async fn flag_changes_by_another_client_during_backfill(backend: Backend) {
    const COUNT: usize = 120;
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    let started = Instant::now();
    let mut sent = send_many(&server, "flags", COUNT).await;
    elapsed(started, "sending");

    let channel = create_channel(&app, &server).await;
    wait_until(LONG_WAIT, "the backfill to start", async || {
        app.message_total().await >= 1
    })
    .await;
    // While the connector works through its chunks, someone reads the whole mailbox, in steps.
    let mut other_client = server.imap("support").await;
    other_client.select("INBOX").await;
    let mut marked_during_backfill = 0;
    for uid in (1..=COUNT).rev().step_by(10) {
        if app.message_total().await >= COUNT as i64 {
            break;
        }
        other_client.set_seen(&uid.to_string()).await;
        marked_during_backfill += 1;
    }
    other_client.set_seen("1:*").await;
    other_client.logout().await;
    eprintln!("flags changed during the backfill: {marked_during_backfill}");

    wait_for_total(&app, COUNT as i64, LONG_WAIT).await;
    sent.push(server.sentinel(&app, "flags-sentinel").await);
    assert_stored_once(&app, channel.id, &sent).await;
    let dead = app.store.dead_letters(100).await.unwrap();
    assert!(
        dead.is_empty(),
        "flag updates are not mail and must not be dead-lettered: {:#?}",
        dead.iter().map(|d| &d.error).collect::<Vec<_>>()
    );
    elapsed(started, "flag_changes_by_another_client_during_backfill");
}

/// Mail that arrives while the app is stopped is read on the next start, once.
async fn mail_while_down_is_ingested_after_restart(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    let channel = create_channel(&app, &server).await;
    let first = Mail::new(CUSTOMER, "before-stop@customer.example.test", "Before");
    first.send(&server).await;
    wait_for_mail(&app, &first.message_id).await;

    let stopped = app.stop().await;
    let mut expected = vec![first.message_id.clone()];
    expected.extend(send_many(&server, "while-down", 3).await);
    let app = stopped.start().await;

    let started = Instant::now();
    wait_for_total(&app, 4, WAIT).await;
    elapsed(started, "catching up after the restart");
    expected.push(server.sentinel(&app, "after-restart").await);
    assert_stored_once(&app, channel.id, &expected).await;
    assert_eq!(app.conversations().await.len(), 5, "one per mail");
    assert!(app.store.dead_letters(10).await.unwrap().is_empty());
}

/// Dovecot restarts while the connector backfills 200 mails: the source reconnects by itself,
/// resumes from its cursor, and every mail is stored exactly once.
async fn dovecot_restart_mid_sync(backend: Backend) {
    const COUNT: usize = 200;
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    let started = Instant::now();
    let mut expected = send_many(&server, "bulk", COUNT).await;
    elapsed(started, "sending 200 mails");

    let channel = create_channel(&app, &server).await;
    wait_until(LONG_WAIT, "the backfill to be under way", async || {
        app.message_total().await >= 10
    })
    .await;
    let under_way = app.message_total().await;
    server.stop_dovecot().await;
    let at_stop = app.message_total().await;
    eprintln!("stored when the restart began: {under_way}, when Dovecot was down: {at_stop}");
    assert!(
        at_stop < COUNT as i64,
        "Dovecot stopped only after the backfill ({at_stop} stored): not mid-sync"
    );
    server.start_dovecot().await;

    wait_for_total(&app, COUNT as i64, LONG_WAIT).await;
    expected.push(server.sentinel(&app, "bulk-sentinel").await);
    assert_stored_once(&app, channel.id, &expected).await;
    assert_eq!(
        inbound_external_ids(&app.store, channel.id).await.len(),
        COUNT + 1
    );
    assert!(app.store.dead_letters(10).await.unwrap().is_empty());
    elapsed(started, "dovecot_restart_mid_sync");
}

/// The support INBOX is recreated while the app is stopped, as when a mail admin restores or
/// migrates it: Dovecot gives it a new UIDVALIDITY, the old mail is appended again (UIDs 1..3 of
/// the new UIDVALIDITY) and two new mails arrive during the gap. On its next start the source
/// finds its cursor of the old UIDVALIDITY and re-reads the backfill window: the funnel
/// recognises the three old mails as duplicates (the same stored messages, the duplicate counter
/// up by three), the two new ones are stored once, and the cursor moves to the new UIDVALIDITY.
async fn uidvalidity_change_resync_creates_no_duplicate(backend: Backend) {
    const OLD: usize = 3;
    const NEW: usize = 2;
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    let channel = create_channel(&app, &server).await;
    let old = send_many(&server, "resync", OLD).await;
    wait_for_total(&app, OLD as i64, WAIT).await;
    let mut imap = server.imap("support").await;
    let old_validity = imap.uid_validity("INBOX").await;
    imap.logout().await;
    wait_for(WAIT, "the cursor at the third mail", async || {
        app.store
            .cursor(channel.id, "imap")
            .await
            .unwrap()
            .filter(|c| *c == format!("{old_validity}:{OLD}"))
    })
    .await;
    let mut stored_before = HashMap::new();
    for id in &old {
        stored_before.insert(id.clone(), find_inbound(&app.store, id).await.unwrap());
    }

    let turn = DUPLICATE_COUNTER.lock().await;
    let duplicates_before = duplicates_recognised(&app).await;
    let stopped = app.stop().await;

    // The gap: the INBOX recreated, its mail appended again in UID order, new mail delivered.
    let mut imap = server.imap("support").await;
    imap.select("INBOX").await;
    let old_raw = imap.fetch_all_raw().await;
    imap.logout().await;
    assert_eq!(old_raw.len(), OLD, "the old mails, read back from Dovecot");
    server.recreate_inbox("support").await;
    let mut imap = server.imap("support").await;
    let new_validity = imap.uid_validity("INBOX").await;
    assert_ne!(new_validity, old_validity, "Dovecot's UIDVALIDITY changed");
    let now = Utc::now().format("%d-%b-%Y %H:%M:%S +0000").to_string();
    for raw in &old_raw {
        imap.append("INBOX", &now, raw).await;
    }
    let new = send_many(&server, "gap", NEW).await;
    imap.select("INBOX").await;
    assert_eq!(
        imap.uid_search("ALL").await,
        (1..=(OLD + NEW) as u32).collect::<Vec<_>>(),
        "the recreated INBOX numbers its mail from 1"
    );
    for id in &old {
        let uid = imap.uid_of(id).await.unwrap();
        assert!(
            uid <= OLD as u32,
            "old mail {id} renumbered first, at UID {uid}"
        );
    }
    imap.logout().await;

    let app = stopped.start().await;
    // The new mails have the highest UIDs: once they are stored, the old ones were handled.
    wait_for_total(&app, (OLD + NEW) as i64, WAIT).await;
    let sentinel = server.sentinel(&app, "resync-sentinel").await;
    let duplicates = duplicates_recognised(&app).await - duplicates_before;
    drop(turn);
    eprintln!("UIDVALIDITY {old_validity} → {new_validity}; duplicates recognised: {duplicates}");
    assert_eq!(
        duplicates, OLD as f64,
        "each re-read old mail is recognised as a duplicate, nothing else is"
    );

    let mut expected = old.clone();
    expected.extend(new.iter().cloned());
    expected.push(sentinel.clone());
    assert_stored_once(&app, channel.id, &expected).await;
    for id in &old {
        assert_eq!(
            find_inbound(&app.store, id).await.as_ref(),
            stored_before.get(id),
            "old mail {id} is the message stored before, in its conversation"
        );
    }
    assert_eq!(app.message_total().await, (OLD + NEW + 1) as i64);
    let conversations = app.conversations().await;
    assert_eq!(
        conversations.len(),
        OLD + NEW + 1,
        "one conversation per mail"
    );
    for conversation in &conversations {
        let messages = app.messages(str_of(conversation, "id")).await;
        assert_eq!(messages.len(), 1, "one copy in {conversation:#}");
    }
    let mut imap = server.imap("support").await;
    imap.select("INBOX").await;
    let sentinel_uid = imap.uid_of(&sentinel).await.unwrap();
    imap.logout().await;
    wait_for(
        WAIT,
        "the cursor at the sentinel, in the new UIDVALIDITY",
        async || {
            app.store
                .cursor(channel.id, "imap")
                .await
                .unwrap()
                .filter(|c| *c == format!("{new_validity}:{sentinel_uid}"))
        },
    )
    .await;
    assert!(app.store.dead_letters(10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Threading through real mail

/// The customer's client rewrote the Message-IDs it refers to (In-Reply-To/References name
/// nothing we know) but kept `Re: <subject>`: the subject rule finds the right conversation.
async fn rewritten_message_ids_thread_by_subject(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    create_channel(&app, &server).await;
    let order = Mail::new(
        CUSTOMER,
        "order-1@customer.example.test",
        "Order 42 is late",
    );
    let (order_conversation, _our_reply) =
        conversation_with_sent_reply(&app, &server, &order).await;
    // A later conversation of the same customer: the answer must not land in the newest one.
    let invoice = Mail::new(
        CUSTOMER,
        "invoice-1@customer.example.test",
        "Invoice missing",
    );
    invoice.send(&server).await;
    let invoice_conversation = str_of(
        &wait_for_mail(&app, &invoice.message_id).await,
        "conversation_id",
    )
    .to_owned();
    assert_ne!(invoice_conversation, order_conversation);

    let answer = Mail {
        in_reply_to: Some("rewritten-2@gateway.customer.example.test".into()),
        references: vec![
            "rewritten-1@gateway.customer.example.test".into(),
            "rewritten-2@gateway.customer.example.test".into(),
        ],
        ..Mail::new(
            CUSTOMER,
            "order-2@customer.example.test",
            "Re: Order 42 is late",
        )
    };
    answer.send(&server).await;
    let stored = wait_for_mail(&app, &answer.message_id).await;
    assert_eq!(stored["conversation_id"], order_conversation.as_str());
    assert_eq!(stored["thread_reason"], "subject");
    assert_eq!(app.conversations().await.len(), 2);
}

/// The customer changed the subject but kept References to our reply: the reference wins.
async fn changed_subject_threads_by_reference(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    create_channel(&app, &server).await;
    let order = Mail::new(
        CUSTOMER,
        "order-1@customer.example.test",
        "Order 42 is late",
    );
    let (order_conversation, our_reply) = conversation_with_sent_reply(&app, &server, &order).await;
    let invoice = Mail::new(
        CUSTOMER,
        "invoice-1@customer.example.test",
        "Invoice missing",
    );
    invoice.send(&server).await;
    wait_for_mail(&app, &invoice.message_id).await;

    let answer = Mail {
        references: vec![order.message_id.clone(), our_reply.clone()],
        ..Mail::new(
            CUSTOMER,
            "order-2@customer.example.test",
            "Refund instead, please",
        )
    };
    answer.send(&server).await;
    let stored = wait_for_mail(&app, &answer.message_id).await;
    assert_eq!(stored["conversation_id"], order_conversation.as_str());
    assert_eq!(stored["thread_reason"], "reply_reference");
    assert_eq!(app.conversations().await.len(), 2);
}

/// Two customers writing with the same subject have two conversations.
async fn same_subject_from_two_customers_is_two_conversations(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    create_channel(&app, &server).await;
    let ada = Mail::new(
        &format!("Ada Customer <{CUSTOMER}>"),
        "login-ada@customer.example.test",
        "Login broken",
    );
    ada.send(&server).await;
    let ada_stored = wait_for_mail(&app, &ada.message_id).await;
    let bob = Mail::new(
        &format!("Bob Someone <{SOMEONE}>"),
        "login-bob@someone.example.test",
        "Login broken",
    );
    bob.send(&server).await;
    let bob_stored = wait_for_mail(&app, &bob.message_id).await;
    assert_ne!(ada_stored["conversation_id"], bob_stored["conversation_id"]);
    assert_eq!(bob_stored["thread_reason"], "new_conversation");
    let conversations = app.conversations().await;
    assert_eq!(conversations.len(), 2);
    let handles: HashSet<&str> = conversations
        .iter()
        .map(|c| str_of(c, "contact_handle"))
        .collect();
    assert_eq!(handles, HashSet::from([CUSTOMER, SOMEONE]));
}

/// A newsletter went to many; two recipients reply-all with the same subject and no
/// references. Each sender's mail threads only with their own.
async fn reply_all_from_two_senders_does_not_merge(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    create_channel(&app, &server).await;
    let subject = "Re: Spring sale: 20% off everything";
    let reply_all = |from: &str, cc: &str, id: &str, subject: &str| Mail {
        headers: vec![format!("Cc: {cc}")],
        ..Mail::new(from, id, subject)
    };
    let ada_1 = reply_all(CUSTOMER, SOMEONE, "ra-ada-1@customer.example.test", subject);
    let bob_1 = reply_all(SOMEONE, CUSTOMER, "ra-bob-1@someone.example.test", subject);
    let ada_2 = reply_all(
        CUSTOMER,
        SOMEONE,
        "ra-ada-2@customer.example.test",
        &format!("Re: {subject}"),
    );
    let bob_2 = reply_all(
        SOMEONE,
        CUSTOMER,
        "ra-bob-2@someone.example.test",
        "RE: Spring sale: 20% off everything",
    );
    let mut stored = Vec::new();
    for mail in [&ada_1, &bob_1, &ada_2, &bob_2] {
        mail.send(&server).await;
        stored.push(wait_for_mail(&app, &mail.message_id).await);
    }
    let conversation = |i: usize| stored[i]["conversation_id"].clone();
    assert_ne!(conversation(0), conversation(1), "two senders, two threads");
    assert_eq!(
        conversation(2),
        conversation(0),
        "Ada's follow-up joins Ada's"
    );
    assert_eq!(
        conversation(3),
        conversation(1),
        "Bob's follow-up joins Bob's"
    );
    assert_eq!(stored[2]["thread_reason"], "subject");
    assert_eq!(stored[3]["thread_reason"], "subject");
    assert_eq!(app.conversations().await.len(), 2);
}

/// A colleague of the customer writes to the reply-token address from the Reply-To of our
/// reply, with a new subject and no references: the token finds the conversation.
async fn colleague_writing_to_the_token_address_threads_by_token(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    create_channel(&app, &server).await;
    let order = Mail::new(
        CUSTOMER,
        "order-1@customer.example.test",
        "Order 42 is late",
    );
    let (order_conversation, _) = conversation_with_sent_reply(&app, &server, &order).await;
    let token = inbox_core::threading::reply_token(order_conversation.parse().unwrap());
    let token_address = format!("support+{token}@example.test");
    let delivered = wait_for(WAIT, "our reply in the customer's mailbox", async || {
        server.new_mail("customer").into_iter().next()
    })
    .await;
    assert!(
        delivered.contains(&format!("Reply-To: {token_address}")),
        "{delivered}"
    );

    let colleague = Mail {
        to: token_address,
        ..Mail::new(
            &format!("Carla Colleague <{COLLEAGUE}>"),
            "colleague-1@customer.example.test",
            "Shipment question from accounting",
        )
    };
    colleague.send(&server).await;
    let stored = wait_for_mail(&app, &colleague.message_id).await;
    assert_eq!(stored["conversation_id"], order_conversation.as_str());
    assert_eq!(stored["thread_reason"], "reply_token");
    assert_eq!(stored["sender_handle"], COLLEAGUE);
    assert_eq!(app.conversations().await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Machines writing back

/// A delivery status notification naming our reply marks the reply failed with the reason; an
/// auto-reply that refers to nothing opens no conversation and is kept as a dead letter.
async fn bounce_marks_reply_failed(backend: Backend) {
    let server = MailServer::start();
    let app = TestApp::spawn(backend).await;
    create_channel(&app, &server).await;
    let order = Mail::new(
        CUSTOMER,
        "order-1@customer.example.test",
        "Order 42 is late",
    );
    let (conversation_id, our_reply) = conversation_with_sent_reply(&app, &server, &order).await;
    let reply_id = app
        .messages(&conversation_id)
        .await
        .into_iter()
        .find(|m| m["external_id"] == our_reply.as_str())
        .map(|m| str_of(&m, "id").to_owned())
        .expect("our reply");

    // As Postfix writes them: null sender, multipart/report, the returned message last.
    let dsn = Mail {
        headers: vec![
            "Auto-Submitted: auto-replied".into(),
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0UND\""
                .into(),
        ],
        body: format!(
            "This is a MIME-encapsulated message.\r\n\r\n\
             --B0UND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
             This is the mail system at host mail.example.test.\r\n\r\n\
             I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients.\r\n\r\n\
             <{CUSTOMER}>: host mx.customer.example.test said: 550 5.1.1\r\n    \
             <{CUSTOMER}>: Recipient address rejected: mailbox unavailable\r\n\r\n\
             --B0UND\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mail.example.test\r\n\r\n\
             Final-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <{CUSTOMER}>: Recipient address rejected: mailbox unavailable\r\n\r\n\
             --B0UND\r\nContent-Type: message/rfc822\r\n\r\n\
             From: Shop Support <{SUPPORT}>\r\nTo: {CUSTOMER}\r\nSubject: Re: Order 42 is late\r\n\
             Message-ID: <{our_reply}>\r\nIn-Reply-To: <{}>\r\n\r\nIt ships today.\r\n\
             --B0UND--\r\n",
            order.message_id
        ),
        ..Mail::new(
            "Mail Delivery System <MAILER-DAEMON@mail.example.test>",
            "dsn-1@mail.example.test",
            "Undelivered Mail Returned to Sender",
        )
    };
    server.send_raw(None, &[SUPPORT], &dsn.raw()).await;
    let failed = app
        .wait_for_delivery(&conversation_id, &reply_id, "failed")
        .await;
    let error = str_of(&failed, "delivery_error").to_owned();
    eprintln!("bounce reason: {error}");
    assert!(error.contains("bounce"), "{error}");

    let out_of_office = Mail {
        headers: vec!["Auto-Submitted: auto-replied".into()],
        body: "I am out of the office until Monday.\r\n".into(),
        ..Mail::new(
            CUSTOMER,
            "ooo-1@customer.example.test",
            "Automatic reply: Out of office",
        )
    };
    out_of_office.send(&server).await;
    wait_until(WAIT, "the auto-reply as a dead letter", async || {
        app.store
            .dead_letters(100)
            .await
            .unwrap()
            .iter()
            .any(|d| d.payload.contains(&out_of_office.message_id))
    })
    .await;
    let conversations = app.conversations().await;
    assert_eq!(
        conversations.len(),
        1,
        "machines open no conversation: {conversations:#?}"
    );
    let messages = all_messages(&app).await;
    for machine in [&dsn.message_id, &out_of_office.message_id] {
        assert!(
            !messages
                .iter()
                .any(|m| m["external_id"] == machine.as_str()),
            "{machine} is not a message of a conversation"
        );
    }

    // What the agent sees on the failed reply must say why: the remote server's answer from
    // the delivery-status part (Status / Diagnostic-Code), not the DSN's first line of prose
    // ("This is the mail system at host …" for Postfix, "This message was created
    // automatically by mail delivery software." for Exim).
    assert!(
        error.contains("5.1.1") && error.contains("mailbox unavailable"),
        "the bounce reason names what the remote server said: {error}"
    );
}
