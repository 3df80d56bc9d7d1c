//! Test harness of the end-to-end suite: the whole product (`inbox run`'s [`Application`]) started
//! in-process on a free port, on a fresh SQLite data dir or a fresh PostgreSQL database, and driven
//! over HTTP like a real client.
//!
//! - [`TestApp::spawn`] starts the application on a [`Backend`]; [`TestApp::restart`] stops it and
//!   starts a new one on the same data; [`TestApp::stop`] leaves it stopped ([`StoppedApp`]) so a
//!   test can reach the data while no process runs.
//! - [`Receiver`] is the operator's endpoint a webhook channel delivers replies to: it records every
//!   request and answers as its [`Behaviour`] says.
//! - [`wait_until`] / [`wait_for`] observe asynchronous work (delivery) by polling, never by fixed
//!   sleeps.
//! - [`both_backends!`] runs each scenario once on SQLite and once on PostgreSQL.
//!
//! PostgreSQL is the server named by `INBOX_TEST_DATABASE_URL` (default
//! [`inbox_core::store::test_support::DEFAULT_TEST_SERVER`]); each test creates its own database `inbox_e2e_<uuid>` on it and drops
//! it when the test passed (a failed test's database is kept for inspection). An unreachable server
//! fails the test with a message saying which URL was tried: these tests never skip.
//!
//! `INBOX_E2E_LOG=<filter>` (e.g. `info` or `inbox=debug`) prints the application's logs.

pub mod change_stream;
pub mod embedded;
pub mod kafka;
pub mod mail;
pub mod mastodon;
pub mod session;
pub mod telegram;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inbox_app::{Application, Config};
use inbox_connectors::runner::RetryPolicy;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::ChannelId;
use inbox_core::model::{Agent, Channel, Role};
use inbox_core::store::Store;
use inbox_core::store::test_support::ScratchDatabase;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Delivery attempts of the test application's retry policy.
pub const MAX_ATTEMPTS: u32 = 3;

/// How long [`TestApp`] helpers wait for asynchronous work by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often waiting helpers poll.
const POLL: Duration = Duration::from_millis(20);

/// Every test application retries replies quickly, so a failing receiver fails a reply fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        initial_backoff_ms: 20,
        max_backoff_ms: 50,
    }
}

/// Where a test application keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: `inbox.db` in a fresh temporary data dir.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

// ---------------------------------------------------------------------------------------------
// Data location

pub use inbox_core::store::test_support::{test_server_url as postgres_server_url, with_database};

/// One test's PostgreSQL database; dropped with it when the test passed.
#[derive(Debug)]
struct PgDatabase {
    scratch: ScratchDatabase,
    url: String,
}

impl PgDatabase {
    async fn create() -> PgDatabase {
        let scratch = ScratchDatabase::create(&postgres_server_url(), "inbox_e2e")
            .await
            .unwrap_or_else(|e| panic!("the PostgreSQL e2e tests need a server: {e}"));
        PgDatabase {
            url: scratch.url().to_owned(),
            scratch,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.scratch.name().to_owned();
        if std::thread::panicking() {
            eprintln!("e2e: test failed; database {name} kept for inspection");
            return;
        }
        if let Err(e) = self.scratch.drop_from_any_thread() {
            eprintln!("e2e: cannot drop database {name}: {e}");
        }
    }
}

/// Where one test application's data lives; survives restarts.
#[derive(Debug)]
enum Data {
    Sqlite(TempDir),
    Postgres(PgDatabase),
}

impl Data {
    async fn create(backend: Backend) -> Data {
        match backend {
            Backend::Sqlite => Data::Sqlite(
                tempfile::Builder::new()
                    .prefix("inbox-e2e-")
                    .tempdir()
                    .unwrap_or_else(|e| panic!("cannot create a temporary data dir: {e}")),
            ),
            Backend::Postgres => Data::Postgres(PgDatabase::create().await),
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Data::Sqlite(_) => Backend::Sqlite,
            Data::Postgres(_) => Backend::Postgres,
        }
    }

    /// The configuration of a test application on this data.
    fn config(&self) -> Config {
        let (data_dir, database_url) = match self {
            Data::Sqlite(dir) => (dir.path().to_path_buf(), None),
            // Unused with PostgreSQL, but never the working directory.
            Data::Postgres(db) => (
                std::env::temp_dir().join(db.scratch.name()),
                Some(db.url.clone()),
            ),
        };
        Config {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            // Tests run in parallel against one server: keep each one's share small.
            database_max_connections: 5,
            public_url: None,
            delivery: fast_retry(),
            ..Config::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The application under test

/// A running application and a client for it, authenticated as an admin.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// The application's own store (same pool).
    pub store: Store,
    /// The admin agent the API calls act as.
    pub admin: Agent,
    /// The admin's API token.
    pub token: String,
    data: Data,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// An application stopped by [`TestApp::stop`]: its data, ready to be started again.
#[derive(Debug)]
pub struct StoppedApp {
    pub admin: Agent,
    pub token: String,
    data: Data,
}

fn init_logging() {
    if let Ok(filter) = std::env::var("INBOX_E2E_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("cannot build the HTTP client: {e}"))
}

impl TestApp {
    /// Starts the application on fresh data and creates an admin agent with an API token.
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// [`TestApp::spawn`] with settings changed by `configure` (not kept across a restart).
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        init_logging();
        let data = Data::create(backend).await;
        let mut config = data.config();
        configure(&mut config);
        let app = Application::build(config)
            .await
            .unwrap_or_else(|e| panic!("Application::build failed on {backend:?}: {e:#}"));
        let store = app.store().clone();
        let admin = store
            .create_agent("admin@example.com", "Ada Admin", Role::Admin, None)
            .await
            .unwrap_or_else(|e| panic!("cannot create the admin agent: {e}"));
        let token = store
            .create_api_token(admin.id, "e2e")
            .await
            .unwrap_or_else(|e| panic!("cannot create an API token: {e}"));
        run(app, data, admin, token)
    }

    pub fn backend(&self) -> Backend {
        self.data.backend()
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The URL of the inbound webhook endpoint of a channel.
    pub fn hook_url(&self, channel_id: ChannelId) -> String {
        self.url(&format!("/hooks/{channel_id}"))
    }

    /// Stops the application gracefully and waits until it has stopped.
    pub async fn stop(self) -> StoppedApp {
        let TestApp {
            admin,
            token,
            data,
            shutdown,
            handle,
            ..
        } = self;
        shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(30), handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the application stopped with an error: {e:#}"),
            Ok(Err(e)) => panic!("the application task failed: {e}"),
            Err(_) => panic!("the application did not stop within 30 s"),
        }
        StoppedApp { admin, token, data }
    }

    /// Stops the application and starts a new one on the same data (same data dir / database).
    pub async fn restart(self) -> TestApp {
        self.stop().await.start().await
    }

    /// Creates another agent with an API token of its own.
    pub async fn create_agent(&self, email: &str, name: &str, role: Role) -> (Agent, String) {
        let agent = self
            .store
            .create_agent(email, name, role, None)
            .await
            .unwrap_or_else(|e| panic!("cannot create agent {email}: {e}"));
        let token = self
            .store
            .create_api_token(agent.id, "e2e")
            .await
            .unwrap_or_else(|e| panic!("cannot create a token for {email}: {e}"));
        (agent, token)
    }

    // --- inbound webhooks ------------------------------------------------------------------

    /// A running app with a receiver behaving as told and a webhook channel delivering to it.
    pub async fn with_webhook_channel(
        backend: Backend,
        behaviour: Behaviour,
    ) -> (TestApp, Receiver, Channel) {
        let app = TestApp::spawn(backend).await;
        let receiver = Receiver::spawn(behaviour).await;
        let channel = app.create_webhook_channel(&receiver.url).await;
        (app, receiver, channel)
    }

    /// Creates an enabled webhook channel delivering replies to `outbound_url`.
    pub async fn create_webhook_channel(&self, outbound_url: &str) -> Channel {
        self.store
            .create_channel(
                ChannelKind::WEBHOOK,
                "e2e webhook",
                json!({ "outbound_url": outbound_url }),
                &inbox_connectors::webhook::new_secret(),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create a webhook channel: {e}"))
    }

    /// POSTs `payload` to the channel's webhook, signed with `secret` over the exact body bytes.
    pub async fn post_webhook(
        &self,
        channel_id: ChannelId,
        secret: &str,
        payload: &Value,
    ) -> reqwest::Response {
        let body = serde_json::to_vec(payload)
            .unwrap_or_else(|e| panic!("cannot serialize a webhook payload: {e}"));
        let signature = inbox_connectors::webhook::sign(secret, &body);
        self.post_webhook_raw(&channel_id.to_string(), Some(&signature), body)
            .await
    }

    /// POSTs a raw body to `/hooks/{channel}` with the given `X-Inbox-Signature` (if any).
    pub async fn post_webhook_raw(
        &self,
        channel: &str,
        signature: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/hooks/{channel}")))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header(inbox_connectors::webhook::SIGNATURE_HEADER, signature);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /hooks/{channel} failed: {e}"))
    }

    /// Posts a customer message and asserts it was accepted (202).
    pub async fn customer_says(
        &self,
        channel: &Channel,
        external_id: &str,
        handle: &str,
        text: &str,
    ) {
        let response = self
            .post_webhook(
                channel.id,
                &channel.secret,
                &webhook_message(external_id, handle, text),
            )
            .await;
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "webhook {external_id} from {handle}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    // --- the JSON API -----------------------------------------------------------------------

    /// `GET /api/v1…` as the admin.
    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
    }

    /// `POST` of a JSON body as the admin.
    pub async fn api_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }

    /// `PATCH` of a JSON body as the admin.
    pub async fn api_patch(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PATCH {path} failed: {e}"))
    }

    /// `GET` as the admin, asserting 200, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        json_of(
            self.api_get(path).await,
            StatusCode::OK,
            &format!("GET {path}"),
        )
        .await
    }

    /// The dead letters (up to 10), once there is at least one.
    pub async fn dead_letters_once_any(&self) -> Vec<inbox_core::store::DeadLetter> {
        wait_for(WAIT, "a dead letter", async || {
            let dead = self
                .store
                .dead_letters(10)
                .await
                .unwrap_or_else(|e| panic!("cannot read the dead letters: {e}"));
            (!dead.is_empty()).then_some(dead)
        })
        .await
    }

    /// Every conversation (one page of up to 100), newest activity first.
    pub async fn conversations(&self) -> Vec<Value> {
        let page = self.get_json("/api/v1/conversations?limit=100").await;
        assert_eq!(
            page["next_cursor"],
            Value::Null,
            "all conversations fit one page"
        );
        items(&page)
    }

    pub async fn conversation(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/conversations/{id}")).await
    }

    /// A conversation's whole history (one page of up to 500), oldest first.
    pub async fn messages(&self, conversation_id: &str) -> Vec<Value> {
        let page = self
            .get_json(&format!(
                "/api/v1/conversations/{conversation_id}/messages?limit=500"
            ))
            .await;
        assert_eq!(
            page["next_before"],
            Value::Null,
            "the history fits one page"
        );
        items(&page)
    }

    /// One message of a conversation, by id.
    pub async fn message(&self, conversation_id: &str, message_id: &str) -> Value {
        self.messages(conversation_id)
            .await
            .into_iter()
            .find(|m| m["id"] == message_id)
            .unwrap_or_else(|| panic!("message {message_id} in conversation {conversation_id}"))
    }

    /// The only conversation there is.
    pub async fn only_conversation(&self) -> Value {
        let mut conversations = self.conversations().await;
        assert_eq!(
            conversations.len(),
            1,
            "one conversation: {conversations:#?}"
        );
        conversations.remove(0)
    }

    /// An agent's reply (or, `private`, note) through the API; asserts 201 and returns the message.
    pub async fn agent_writes(&self, conversation_id: &str, text: &str, private: bool) -> Value {
        let path = format!("/api/v1/conversations/{conversation_id}/messages");
        let response = self
            .api_post(&path, &json!({ "text": text, "private": private }))
            .await;
        json_of(response, StatusCode::CREATED, &format!("POST {path}")).await
    }

    /// Waits until a message's `delivery_status` is `status`, and returns the message.
    pub async fn wait_for_delivery(
        &self,
        conversation_id: &str,
        message_id: &str,
        status: &str,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = self.message(conversation_id, message_id).await;
            if message["delivery_status"] == status {
                return message;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for message {message_id} to become \
                     {status}; last seen: {message:#}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Messages stored, counted by the store itself.
    pub async fn message_total(&self) -> i64 {
        self.store
            .message_total()
            .await
            .unwrap_or_else(|e| panic!("cannot count messages: {e}"))
    }
}

impl StoppedApp {
    /// Opens a store on the stopped application's data (close it before [`StoppedApp::start`]).
    pub async fn open_store(&self) -> Store {
        let config = self.data.config();
        Store::open(&config.store())
            .await
            .unwrap_or_else(|e| panic!("cannot open the store of the stopped app: {e}"))
    }

    /// Runs the built `inbox` binary (`INBOX_BIN`) with `args` on the stopped application's data
    /// (its data dir, and its database on PostgreSQL).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let bin = std::env::var_os(kafka::BIN_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "INBOX_BIN is not set: this test runs the built `inbox` binary (cargo build \
                     --bin inbox; then INBOX_BIN=$CARGO_TARGET_DIR/debug/inbox; tests/run sets it)"
                )
            });
        let config = self.data.config();
        let mut command = std::process::Command::new(&bin);
        command
            .arg("--data-dir")
            .arg(&config.data_dir)
            .args(args)
            .env_remove("INBOX_CONFIG")
            .env_remove("INBOX_KAFKA_BROKERS")
            .env_remove("INBOX_DATABASE_URL")
            .env("INBOX_LOG", "warn");
        if let Some(url) = &config.database_url {
            command.env("INBOX_DATABASE_URL", url);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", std::path::Path::new(&bin).display()))
    }

    /// Starts a new application on the same data.
    pub async fn start(self) -> TestApp {
        let StoppedApp { admin, token, data } = self;
        let app = build(&data).await;
        run(app, data, admin, token)
    }
}

async fn build(data: &Data) -> Application {
    Application::build(data.config())
        .await
        .unwrap_or_else(|e| panic!("Application::build failed on {:?}: {e:#}", data.backend()))
}

fn run(app: Application, data: Data, admin: Agent, token: String) -> TestApp {
    let addr = app.local_addr();
    let store = app.store().clone();
    let shutdown = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://{addr}"),
        port: addr.port(),
        client: http_client(),
        store,
        admin,
        token,
        data,
        shutdown,
        handle,
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads and responses

/// A minimal valid inbound webhook body.
pub fn webhook_message(external_id: &str, handle: &str, text: &str) -> Value {
    json!({
        "external_id": external_id,
        "from": { "handle": handle, "name": format!("Customer {handle}") },
        "text": text,
    })
}

/// The response's JSON body, asserting its status first (`what` names the request in messages).
pub async fn json_of(response: reqwest::Response, expected: StatusCode, what: &str) -> Value {
    let status = response.status();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot read the body: {e}"));
    assert_eq!(status, expected, "{what}: unexpected status; body: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {text}"))
}

/// `items` of a page.
pub fn items(page: &Value) -> Vec<Value> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page has items: {page}"))
        .clone()
}

/// A JSON string field.
pub fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is a string in {value}"))
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    wait_for(timeout, what, async || condition().await.then_some(())).await
}

/// Polls `probe` every 20 ms until it gives a value; panics naming `what` after `timeout`.
pub async fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's reply receiver

/// How a [`Receiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 `{"external_id":"rcv-<n>"}`, n counting requests from 1.
    Accept,
    /// Always 500.
    Fail,
    /// 200 `{"external_id": <this>}` for every request.
    AcceptAs(&'static str),
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// The raw body bytes, exactly as sent.
    pub body: Bytes,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the receiver got a body that is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Debug, Clone)]
struct ReceiverState {
    behaviour: Behaviour,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

/// A local HTTP server standing in for the operator's endpoint of a webhook channel.
#[derive(Debug)]
pub struct Receiver {
    /// Where replies are to be POSTed (`http://127.0.0.1:<port>/outbound`).
    pub url: String,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn spawn(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("the receiver cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the receiver has no address: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            behaviour,
            requests: requests.clone(),
        };
        let app = Router::new().fallback(record).with_state(state);
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Receiver {
            url: format!("http://{addr}/outbound"),
            requests,
            stop,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests carrying this `Idempotency-Key`.
    pub fn requests_for(&self, idempotency_key: &str) -> Vec<ReceivedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.header("idempotency-key") == Some(idempotency_key))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(
    State(state): State<ReceiverState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut requests = state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.push(ReceivedRequest {
            method,
            path: uri.path().to_owned(),
            headers,
            body,
        });
        requests.len()
    };
    match state.behaviour {
        Behaviour::Accept => (
            StatusCode::OK,
            axum::Json(json!({ "external_id": format!("rcv-{n}") })),
        )
            .into_response(),
        Behaviour::AcceptAs(external_id) => (
            StatusCode::OK,
            axum::Json(json!({ "external_id": external_id })),
        )
            .into_response(),
        Behaviour::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the receiver fails on purpose",
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------

/// For each scenario `async fn name(backend: Backend)`, a module `name` with the tests `sqlite`
/// and `postgres` running it on each backend.
#[macro_export]
macro_rules! both_backends {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[::tokio::test]
                async fn sqlite() {
                    super::$scenario($crate::Backend::Sqlite).await;
                }

                #[::tokio::test]
                async fn postgres() {
                    super::$scenario($crate::Backend::Postgres).await;
                }
            }
        )+
    };
}
