//! The production topology end to end: `inbox connectors`, `inbox core` and `inbox web` as separate
//! processes of the real binary, Apache Kafka (KRaft) and PostgreSQL. Ten thousand webhook
//! messages are stored exactly once, in order, whatever is killed on the way (core, one of two
//! cores, the broker for 35 s); a garbage record is dead-lettered without stopping its partition;
//! a reply made while the connectors are down is delivered once when they come back; the change
//! stream (`inbox.events`) carries an event for every log row and message through the kills.
//!
//! Needs `INBOX_BIN`, `INBOX_TEST_KAFKA_LIBS` (the broker's jars) with `java` on `PATH`, a
//! PostgreSQL server (`INBOX_TEST_DATABASE_URL`) and the `confluent-kafka` Python package;
//! `tests/run` provides them all.

// clippy.toml allows these in tests, but clippy only counts `#[test]` functions as tests, not the
// helpers they call.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use inbox_core::envelope::DeliveryStatus;
use inbox_core::ids::MessageId;
use inbox_e2e::change_stream::assert_change_stream_complete;
use inbox_e2e::kafka::{
    Broker, Deployment, OnUnavailable, PARTITIONS, SESSION_TIMEOUT, Service, Workload,
    committed_offsets, partition_assignments, python_client, read_topic, send, send_gated,
};
use inbox_e2e::{Behaviour, Receiver, json_of, str_of, wait_for, wait_until, webhook_message};
use serde_json::{Value, json};

/// Distinct customers of the big workload.
const CUSTOMERS: usize = 500;
/// Messages per customer.
const PER_CUSTOMER: usize = 20;
/// Messages in all.
const TOTAL: i64 = (CUSTOMERS * PER_CUSTOMER) as i64;
/// Concurrent webhook requests.
const CONCURRENCY: usize = 32;
/// How long ten thousand messages may take to be stored, crashes included.
const INGEST: Duration = Duration::from_secs(120);
/// How long smaller asynchronous steps (a delivery, a dead letter) may take.
const STEP: Duration = Duration::from_secs(60);
/// How long the broker is down in `broker_restart_mid_ingest`: longer than the connectors'
/// publish timeout (30 s).
const OUTAGE: Duration = Duration::from_secs(35);

/// Webhook messages let through ahead of what is stored, in `core_killed_three_times`.
const KILL_STEP: usize = 2_500;

const STORED: &str = "inbox_ingest_records_total{outcome=\"stored\"}";
const DUPLICATE: &str = "inbox_ingest_records_total{outcome=\"duplicate\"}";

fn hook_url(connectors: &Service, deployment: &Deployment) -> String {
    connectors.url(&format!("/hooks/{}", deployment.channel.id))
}

/// A broker, a deployment whose webhook channel replies to a fresh accepting receiver, and the
/// workload for its channel.
async fn setup() -> (Broker, Receiver, Deployment, Workload) {
    let broker = Broker::start().await;
    let receiver = Receiver::spawn(Behaviour::Accept).await;
    let deployment = Deployment::setup(&broker, &receiver.url).await;
    let workload = Workload::new(&deployment.channel, CUSTOMERS, PER_CUSTOMER);
    (broker, receiver, deployment, workload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_messages_exactly_once() {
    let (_broker, _receiver, deployment, workload) = setup().await;
    let connectors = Service::spawn("connectors", &deployment).await;
    let core = Service::spawn("core", &deployment).await;

    let started = Instant::now();
    let sending = send(
        &hook_url(&connectors, &deployment),
        workload.items.clone(),
        CONCURRENCY,
        OnUnavailable::Fail,
    );
    deployment.wait_for_total(TOTAL, INGEST).await;
    let stored_in = started.elapsed();
    let report = sending.finish(INGEST).await;
    assert_eq!(report.accepted, workload.len(), "every webhook got 202");

    deployment.assert_exactly_once(&workload).await;
    deployment.wait_for_offsets_committed(STEP).await;

    // One customer's messages all went to one partition (key `{channel}:{handle}`), whose order
    // the core keeps; together the customers use every partition.
    let records = read_topic(&deployment.brokers, "inbox.inbound", workload.len()).await;
    assert_eq!(records.len(), workload.len(), "records on inbox.inbound");
    let mut partitions_of: HashMap<String, BTreeSet<i64>> = HashMap::new();
    for record in &records {
        let key = record.key.clone().expect("inbound records have a key");
        partitions_of
            .entry(key)
            .or_default()
            .insert(record.partition);
    }
    let first_key = format!("{}:customer-0", deployment.channel.id);
    assert!(
        partitions_of.contains_key(&first_key),
        "keys are {{channel}}:{{handle}}: {:?}",
        partitions_of.keys().take(3).collect::<Vec<_>>()
    );
    assert_eq!(partitions_of.len(), CUSTOMERS, "one key per customer");
    let spread: Vec<_> = partitions_of
        .iter()
        .filter(|(_, partitions)| partitions.len() > 1)
        .collect();
    assert!(
        spread.is_empty(),
        "customers spread over partitions: {spread:?}"
    );
    let used: BTreeSet<i64> = records.iter().map(|r| r.partition).collect();
    assert_eq!(used.len(), PARTITIONS as usize, "partitions in use");

    // Nothing crashed, so nothing was read twice.
    assert_eq!(
        core.metric(STORED).await,
        TOTAL as f64,
        "records the core stored"
    );
    assert_eq!(
        core.metric(DUPLICATE).await,
        0.0,
        "records the core read twice"
    );
    eprintln!("e2e: {TOTAL} messages from {CUSTOMERS} customers stored in {stored_in:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn core_killed_three_times() {
    let (_broker, _receiver, deployment, workload) = setup().await;
    let connectors = Service::spawn("connectors", &deployment).await;
    let mut core = Service::spawn("core", &deployment).await;

    let started = Instant::now();
    // Held back in steps: a restarted core catches up in a burst that could otherwise store
    // everything before the next kill, leaving that kill nothing in flight to prove anything on.
    let sending = send_gated(
        &hook_url(&connectors, &deployment),
        workload.items.clone(),
        CONCURRENCY,
        OnUnavailable::Fail,
        KILL_STEP,
    );
    let mut replayed = 0;
    let mut kills = 0;
    let mut threshold = 1_500;
    // Three kills that each fell mid-ingest. A kill can miss that window (the core had committed
    // everything it stored and was waiting for input); such a kill proves nothing, so it is not
    // counted and the core is killed again later.
    let mut mid_ingest = 0;
    while mid_ingest < 3 {
        assert!(
            threshold < TOTAL - 1_000,
            "only {mid_ingest} of {kills} kills fell between a store and its offset commit"
        );
        deployment.wait_for_total(threshold, INGEST).await;
        core.kill9();
        kills += 1;
        // Both final now: the dead core can neither store nor commit any more.
        let at = deployment.message_total().await;
        let committed: i64 = committed_offsets(&deployment.brokers, "inbox.inbound", "inbox-core")
            .await
            .iter()
            .filter_map(|(_, committed, _)| *committed)
            .sum();
        assert!(at < TOTAL, "killed at {at} stored, before the end");
        assert!(
            committed <= at,
            "committed {committed} beyond the {at} stored"
        );
        // Each partition's stored records are a prefix of it, so this many were stored but not
        // committed.
        let uncommitted = at - committed;
        // Restarted at once: the new member joins while the dead one is still in the group, and
        // the coordinator rebalances once the dead member's session expired. It re-reads exactly
        // the stored-but-uncommitted records and recognises each as a duplicate.
        core.start().await;
        // Soon after the restart: the restarted core catches up on the backlog of its session
        // timeout in a burst, and a kill in that burst falls between stores and commits. Only a
        // little after `at`: the burst can store thousands between two polls, and a kill that
        // came too late would find nothing left to ingest.
        threshold = at + 100;
        sending.release(at as usize + KILL_STEP);
        if uncommitted == 0 {
            eprintln!("e2e: kill #{kills} at {at} stored found everything committed; not counted");
            continue;
        }
        mid_ingest += 1;
        wait_until(
            STEP,
            &format!("the restarted core to recognise {uncommitted} re-read records"),
            async || core.metric(DUPLICATE).await >= uncommitted as f64,
        )
        .await;
        assert_eq!(
            core.metric(DUPLICATE).await,
            uncommitted as f64,
            "duplicates recognised after the kill at {at} stored, {committed} committed"
        );
        replayed += uncommitted;
        eprintln!(
            "e2e: core killed with {at} stored, {committed} committed; the restarted core \
             recognised {uncommitted} duplicates, {:?} in",
            started.elapsed()
        );
    }
    sending.release(workload.len());
    deployment.wait_for_total(TOTAL, INGEST).await;
    let stored_in = started.elapsed();
    let report = sending.finish(INGEST).await;
    assert_eq!(report.accepted, workload.len(), "every webhook got 202");

    // The same histories as a clean run: every customer's external ids in sent_at order.
    deployment.assert_exactly_once(&workload).await;
    // And the last core caught up with its commits: a further restart would replay nothing.
    deployment.wait_for_offsets_committed(STEP).await;
    // The change stream survived the kills too (the core relays it): an event for every
    // conversation-log row and every message, each conversation's in order.
    let stream = assert_change_stream_complete(&deployment, STEP).await;
    eprintln!(
        "e2e: {TOTAL} messages stored in {stored_in:?} across {kills} kill -9 of the core; \
         {replayed} re-read records recognised as duplicates; inbox.events holds {} records, \
         {} events ({} relayed again after a kill)",
        stream.records,
        stream.distinct,
        stream.duplicates()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cores_share_and_take_over() {
    let (_broker, _receiver, deployment, workload) = setup().await;
    let connectors = Service::spawn("connectors", &deployment).await;
    let all = u32::try_from(PARTITIONS).unwrap();
    let half = all / 2;

    // The first core holds every partition (and leads the group) before the second joins.
    let leader = Service::spawn("core", &deployment).await;
    wait_until(STEP, "the first core to hold every partition", async || {
        partition_assignments(&leader.log_text()).last() == Some(&all)
    })
    .await;
    let mut member = Service::spawn("core", &deployment).await;
    wait_until(
        STEP,
        "both cores to hold half of the partitions",
        async || {
            partition_assignments(&leader.log_text()).last() == Some(&half)
                && partition_assignments(&member.log_text()).last() == Some(&half)
        },
    )
    .await;

    let started = Instant::now();
    let url = hook_url(&connectors, &deployment);
    let (early, late) = workload.items.split_at(workload.len() / 2);
    let sending_early = send(&url, early.to_vec(), CONCURRENCY, OnUnavailable::Fail);
    deployment.wait_for_total(3_000, INGEST).await;
    let mut shares = (0.0, 0.0);
    wait_until(STEP, "both cores to have stored messages", async || {
        shares = (leader.metric(STORED).await, member.metric(STORED).await);
        shares.0 > 0.0 && shares.1 > 0.0
    })
    .await;
    // The second core dies; the first (the group's leader) must take over its partitions, by
    // the broker's and the product's doing alone, once the dead member's session expired.
    member.kill9();
    let killed = Instant::now();
    let at = deployment.message_total().await;
    eprintln!(
        "e2e: one of two cores killed after {:?} with {at} stored; the cores had stored {} and {}",
        started.elapsed(),
        shares.0,
        shares.1
    );
    // The session timeout, then a heartbeat telling the survivor to rejoin and the rejoin itself.
    wait_until(
        SESSION_TIMEOUT + Duration::from_secs(20),
        "the surviving core to hold every partition",
        async || partition_assignments(&leader.log_text()).last() == Some(&all),
    )
    .await;
    eprintln!(
        "e2e: the surviving core held every partition {:?} after the kill (session timeout \
         {SESSION_TIMEOUT:?})",
        killed.elapsed()
    );

    // The rest arrives after the kill: the dead core's partitions must move to the other one.
    let sending_late = send(&url, late.to_vec(), CONCURRENCY, OnUnavailable::Fail);
    deployment.wait_for_total(TOTAL, INGEST).await;
    let stored_in = started.elapsed();
    let report_early = sending_early.finish(INGEST).await;
    let report_late = sending_late.finish(INGEST).await;
    assert_eq!(
        report_early.accepted + report_late.accepted,
        workload.len(),
        "every webhook got 202"
    );
    assert_eq!(
        partition_assignments(&leader.log_text()).last(),
        Some(&all),
        "the surviving core took over every partition"
    );
    deployment.assert_exactly_once(&workload).await;
    deployment.wait_for_offsets_committed(STEP).await;
    eprintln!(
        "e2e: {TOTAL} messages stored in {stored_in:?}; the surviving core stored {} in all",
        leader.metric(STORED).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_mid_ingest() {
    let (mut broker, _receiver, deployment, workload) = setup().await;
    let mut connectors = Service::spawn("connectors", &deployment).await;
    let mut core = Service::spawn("core", &deployment).await;

    let started = Instant::now();
    let sending = send(
        &hook_url(&connectors, &deployment),
        workload.items.clone(),
        CONCURRENCY,
        OnUnavailable::Retry,
    );
    deployment.wait_for_total(3_000, INGEST).await;
    broker.kill9();
    let killed_at = started.elapsed();
    let at = deployment.message_total().await;
    let accepted = sending.accepted();
    // A real outage, longer than the connectors' publish timeout (30 s): webhooks under way wait
    // for the broker until then and are answered 503, which the senders retry; later ones are
    // answered 503 at once.
    tokio::time::sleep(OUTAGE).await;
    let (accepted_down, refused_down) = (sending.accepted(), sending.retried());
    broker.restart().await;
    eprintln!(
        "e2e: broker killed at {killed_at:?} with {at} stored and {accepted} webhooks accepted; \
         {refused_down} attempts refused and {} accepted during the {OUTAGE:?} outage; back at \
         {:?}",
        accepted_down - accepted,
        started.elapsed()
    );
    // Without the broker nothing is acknowledged, so nothing is answered 202: only answers to
    // requests the broker had acknowledged just before the kill can have arrived since.
    assert!(
        accepted_down - accepted <= CONCURRENCY,
        "{} webhooks answered 202 while the broker was down",
        accepted_down - accepted
    );
    assert!(
        refused_down > 0,
        "webhooks were refused during an outage longer than the publish timeout"
    );
    // Once a publish timed out, the intake fails fast (one request at a time probes the broker):
    // senders are refused again and again within the outage, not once per 30 s timeout (which
    // would be at most two refusals per sender).
    assert!(
        refused_down > 3 * CONCURRENCY,
        "{refused_down} refusals from {CONCURRENCY} senders in {OUTAGE:?}: the intake did not fail \
         fast once the broker was known to be away"
    );

    deployment.wait_for_total(TOTAL, INGEST).await;
    let stored_in = started.elapsed();
    let report = sending.finish(INGEST).await;
    assert_eq!(
        report.accepted,
        workload.len(),
        "every webhook got 202 in the end"
    );
    assert!(
        connectors.is_running(),
        "the connectors survived the outage"
    );
    assert!(core.is_running(), "the core survived the outage");
    deployment.assert_exactly_once(&workload).await;
    eprintln!(
        "e2e: {TOTAL} messages stored in {stored_in:?} across a broker restart; {} attempts \
         retried by the senders",
        report.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_record_is_dead_lettered() {
    let broker = Broker::start().await;
    let receiver = Receiver::spawn(Behaviour::Accept).await;
    let deployment = Deployment::setup(&broker, &receiver.url).await;
    let _core = Service::spawn("core", &deployment).await;

    // An envelope built by hand, exactly as an outside producer would (docs/envelope.md).
    let channel_id = deployment.channel.id.to_string();
    let key = format!("{channel_id}:u-outside");
    let message_id = MessageId::new();
    let envelope = json!({
        "schema_version": 1,
        "type": "message",
        "id": message_id.to_string(),
        "channel_id": channel_id,
        "channel_kind": "webhook",
        "external_id": "outside-1",
        "from": { "handle": "u-outside" },
        "received_at": chrono::Utc::now().to_rfc3339(),
        "body": { "text": "Hello from outside" },
    });
    let records = [
        json!({ "key": key, "value": "not json" }),
        json!({ "key": key, "value": envelope.to_string() }),
    ];
    let stdin: String = records.iter().map(|r| format!("{r}\n")).collect();
    let produced = python_client(
        vec![
            "produce".into(),
            "--brokers".into(),
            deployment.brokers.clone(),
            "--topic".into(),
            "inbox.inbound".into(),
        ],
        stdin,
    )
    .await;
    let positions: Vec<Value> = produced
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(positions.len(), 2, "{produced}");
    assert_eq!(
        positions[0]["partition"], positions[1]["partition"],
        "same key, same partition: {produced}"
    );
    assert!(
        positions[0]["offset"].as_i64() < positions[1]["offset"].as_i64(),
        "the garbage comes first: {produced}"
    );

    // The valid record behind the garbage is stored: the partition did not stop.
    deployment.wait_for_total(1, STEP).await;
    let stored = deployment
        .store
        .message(message_id)
        .await
        .unwrap()
        .expect("the valid envelope is stored under its id");
    assert_eq!(stored.external_id.as_deref(), Some("outside-1"));
    assert_eq!(stored.text, "Hello from outside");
    assert_eq!(stored.sender_handle.as_deref(), Some("u-outside"));

    let dead = wait_for(STEP, "the garbage in dead_letters", async || {
        let letters = deployment.store.dead_letters(10).await.unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(
        dead.len(),
        1,
        "only the garbage is dead-lettered: {dead:#?}"
    );
    assert_eq!(dead[0].payload, "not json");
    assert!(!dead[0].error.trim().is_empty(), "{dead:#?}");
    assert_eq!(dead[0].source, "inbound");
    assert_eq!(deployment.message_total().await, 1);

    // Operators see it on the dead-letter topic too, with its error.
    let consumed = python_client(
        vec![
            "consume".into(),
            "--brokers".into(),
            deployment.brokers.clone(),
            "--topic".into(),
            "inbox.dead-letter".into(),
            "--until-contains".into(),
            "not json".into(),
            "--timeout".into(),
            "60".into(),
        ],
        String::new(),
    )
    .await;
    let letter: Value = consumed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|record| serde_json::from_str::<Value>(record["value"].as_str()?).ok())
        .find(|value| value["payload"] == "not json")
        .unwrap_or_else(|| panic!("no dead letter with the garbage payload: {consumed}"));
    assert_eq!(
        letter["error"].as_str(),
        Some(dead[0].error.as_str()),
        "{letter}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reply_while_connectors_down_is_delivered_once() {
    let broker = Broker::start().await;
    let receiver = Receiver::spawn(Behaviour::Accept).await;
    let deployment = Deployment::setup(&broker, &receiver.url).await;
    let _core = Service::spawn("core", &deployment).await;
    let mut connectors = Service::spawn("connectors", &deployment).await;
    let web = Service::spawn("web", &deployment).await;
    let client = reqwest::Client::new();

    // A customer writes; the conversation shows in the agents' API.
    let body = serde_json::to_vec(&webhook_message("m-1", "u-ada", "Where is my order?")).unwrap();
    let response = client
        .post(hook_url(&connectors, &deployment))
        .header("content-type", "application/json")
        .header(
            inbox_connectors::webhook::SIGNATURE_HEADER,
            inbox_connectors::webhook::sign(&deployment.channel.secret, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    deployment.wait_for_total(1, STEP).await;
    let page = json_of(
        client
            .get(web.url("/api/v1/conversations"))
            .bearer_auth(&deployment.token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
        "GET /api/v1/conversations",
    )
    .await;
    let conversation_id = str_of(&page["items"][0], "id").to_owned();

    // The connectors stop; an agent answers meanwhile.
    connectors.sigterm().await;
    let reply = |text: &'static str| {
        let request = client
            .post(web.url(&format!("/api/v1/conversations/{conversation_id}/messages")))
            .bearer_auth(&deployment.token)
            .json(&json!({ "text": text }));
        async move {
            json_of(
                request.send().await.unwrap(),
                StatusCode::CREATED,
                "POST a reply",
            )
            .await
        }
    };
    let first = reply("It left our warehouse today.").await;
    let first_id: MessageId = str_of(&first, "id").parse().unwrap();
    // The core's relay hands it to the bus while nobody consumes the outbound topic.
    wait_until(STEP, "the reply to be handed to the bus", async || {
        let published: Option<i64> =
            sqlx::query_scalar("SELECT published_at FROM outbox WHERE message_id = $1")
                .bind(first_id.to_string())
                .fetch_one(deployment.pool())
                .await
                .unwrap();
        published.is_some()
    })
    .await;
    assert!(receiver.requests().is_empty(), "nothing delivered yet");
    let queued = deployment.store.message(first_id).await.unwrap().unwrap();
    assert_eq!(queued.delivery_status, Some(DeliveryStatus::Queued));

    // The connectors come back: the reply is delivered, once, and shows as sent.
    connectors.start().await;
    let sent = wait_for(STEP, "the reply to be marked sent", async || {
        let message = deployment.store.message(first_id).await.unwrap().unwrap();
        (message.delivery_status == Some(DeliveryStatus::Sent)).then_some(message)
    })
    .await;
    let requests = receiver.requests_for(&first_id.to_string());
    assert_eq!(requests.len(), 1, "delivered once: {requests:#?}");
    assert_eq!(
        requests[0].json()["body"]["text"],
        "It left our warehouse today."
    );
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(sent.delivery_attempts, 1, "{sent:#?}");

    // Another restart of the connectors does not deliver it again; a later reply goes out once.
    connectors.restart().await;
    let second = reply("Tracking: 1Z999.").await;
    let second_id: MessageId = str_of(&second, "id").parse().unwrap();
    wait_until(STEP, "the second reply to be marked sent", async || {
        let message = deployment.store.message(second_id).await.unwrap().unwrap();
        message.delivery_status == Some(DeliveryStatus::Sent)
    })
    .await;
    assert_eq!(receiver.requests_for(&second_id.to_string()).len(), 1);
    assert_eq!(
        receiver.requests_for(&first_id.to_string()).len(),
        1,
        "the first reply was not delivered again"
    );
    assert_eq!(receiver.requests().len(), 2);
}

/// Runs `inbox migrate` on an embedded store with this Kafka section; returns its stderr.
async fn migrate(dir: &std::path::Path, kafka_section: &str) -> String {
    let bin = std::env::var(inbox_e2e::kafka::BIN_ENV).expect("INBOX_BIN names the inbox binary");
    let config = dir.join("inbox.toml");
    std::fs::write(&config, format!("[kafka]\n{kafka_section}")).unwrap();
    let mut command = std::process::Command::new(bin);
    command
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .env("INBOX_DATA_DIR", dir.join("data"))
        .env_remove("INBOX_DATABASE_URL")
        .env_remove("INBOX_KAFKA_BROKERS");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "inbox migrate failed: {stderr}");
    stderr
}

/// The topics as the cluster has them, read with the independent client.
async fn describe_topics(brokers: &str) -> Vec<Value> {
    let topics = "inbox.inbound,inbox.outbound,inbox.events,inbox.dead-letter";
    python_client(
        vec![
            "describe".into(),
            "--brokers".into(),
            brokers.into(),
            "--topic".into(),
            topics.into(),
        ],
        String::new(),
    )
    .await
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect()
}

/// `inbox migrate` creates the four topics with the configured partitions, replication factor
/// and `min.insync.replicas` (the brokers' auto-creation is off), leaves existing topics alone,
/// and names each difference between them and the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_creates_the_topics_and_reports_mismatches() {
    let broker = Broker::cluster(3).await;
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().unwrap();
    let settings = |partitions: u32| {
        format!(
            "brokers = \"{brokers}\"\npartitions = {partitions}\nreplication_factor = 3\n\
             min_insync_replicas = 2\n"
        )
    };
    let stderr = migrate(dir.path(), &settings(4)).await;
    assert!(!stderr.contains("warning:"), "{stderr}");
    let topics = describe_topics(&brokers).await;
    assert_eq!(topics.len(), 4, "{topics:?}");
    for topic in &topics {
        assert_eq!(topic["partitions"], 4, "{topic}");
        assert_eq!(topic["replication_factor"], 3, "{topic}");
        assert_eq!(topic["min_insync_replicas"], 2, "{topic}");
    }

    // Asked for more partitions later: nothing changes, and each topic's difference is named.
    let stderr = migrate(dir.path(), &settings(6)).await;
    for name in [
        "inbox.inbound",
        "inbox.outbound",
        "inbox.events",
        "inbox.dead-letter",
    ] {
        let expected =
            format!("warning: topic {name} has partitions = 4, but kafka.partitions is 6");
        assert!(stderr.contains(&expected), "{expected} in:\n{stderr}");
    }
    let settings_of = |topics: &[Value]| -> Vec<(Value, Value, Value)> {
        topics
            .iter()
            .map(|t| {
                (
                    t["partitions"].clone(),
                    t["replication_factor"].clone(),
                    t["min_insync_replicas"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        settings_of(&describe_topics(&brokers).await),
        settings_of(&topics)
    );
}

/// On three nodes (replication factor 3, `min.insync.replicas` 2, producers with `acks=all` and
/// idempotence), the node leading most inbound partitions is killed with `kill -9` mid-ingest
/// and restarted later: every webhook is accepted at its first attempt, nothing is lost or stored
/// twice, and no service is restarted by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_on_three_nodes_loses_nothing() {
    let mut broker = Broker::cluster(3).await;
    let receiver = Receiver::spawn(Behaviour::Accept).await;
    let deployment = Deployment::setup(&broker, &receiver.url).await;
    let workload = Workload::new(&deployment.channel, CUSTOMERS, PER_CUSTOMER);
    let mut connectors = Service::spawn("connectors", &deployment).await;
    let mut core = Service::spawn("core", &deployment).await;
    let sending = send(
        &hook_url(&connectors, &deployment),
        workload.items.clone(),
        CONCURRENCY,
        OnUnavailable::Fail,
    );
    deployment.wait_for_total(2_000, INGEST).await;
    let inbound = describe_topics(&deployment.brokers)
        .await
        .into_iter()
        .find(|t| t["topic"] == "inbox.inbound")
        .unwrap();
    let mut led: HashMap<u32, usize> = HashMap::new();
    for leader in inbound["leaders"].as_array().unwrap() {
        *led.entry(u32::try_from(leader.as_i64().unwrap()).unwrap())
            .or_default() += 1;
    }
    let (&leader, &partitions) = led.iter().max_by_key(|(_, n)| **n).unwrap();
    broker.kill9_node(leader);
    let at = deployment.message_total().await;
    eprintln!(
        "e2e: node {leader} (leader of {partitions} inbound partitions) killed at {at} stored"
    );
    // The other two keep the cluster going: ingest goes on without the dead node.
    deployment.wait_for_total(at + 2_000, INGEST).await;
    broker.restart_node(leader).await;
    deployment.wait_for_total(TOTAL, INGEST).await;
    let report = sending.finish(INGEST).await;
    assert_eq!(report.accepted, workload.len(), "every webhook got 202");
    assert_eq!(report.retried, 0, "no webhook was refused");
    deployment.assert_exactly_once(&workload).await;
    // The relay's produces went through the failover too.
    let stream = assert_change_stream_complete(&deployment, STEP).await;
    assert!(connectors.is_running(), "the connectors survived");
    assert!(core.is_running(), "the core survived");
    eprintln!(
        "e2e: leader {leader} killed; inbox.events holds {} events ({} copies)",
        stream.distinct,
        stream.duplicates()
    );
}
