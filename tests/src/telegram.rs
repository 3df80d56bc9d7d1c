//! A stand-in for the Telegram Bot API (no Telegram server can run here), answering as the Bot
//! API docs say: `{"ok":true,"result":…}` or `{"ok":false,"error_code","description",
//! "parameters"}`; `getUpdates` with offset semantics (updates below the offset are confirmed and
//! gone); `getFile` and `/file/bot<token>/<path>`; `sendMessage`, `sendPhoto`, `sendDocument`
//! returning the sent Message; 429 with `parameters.retry_after`; 403 "Forbidden: bot was blocked
//! by the user"; 401 "Unauthorized" for another token; `setWebhook` / `deleteWebhook` /
//! `getWebhookInfo`, and while a webhook is set, updates POSTed to it one at a time with the
//! `X-Telegram-Bot-Api-Secret-Token` header (kept and sent again until answered 2xx), and
//! `getUpdates` refused with 409 as Telegram does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The bot the stand-in is.
pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "acme_support_bot";

/// One call the stand-in answered (sends and polls), for tests to look at.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The JSON body, or a multipart form's text fields (files as `{"file": name, "bytes": n}`).
    pub params: Value,
}

#[derive(Debug, Default)]
struct Inner {
    /// Updates not yet confirmed, in id order.
    updates: Vec<Value>,
    next_update_id: i64,
    files: HashMap<String, (String, Vec<u8>)>,
    calls: Vec<Call>,
    next_message_id: i64,
    /// Sends to answer with 429 before accepting.
    rate_limited_sends: u32,
    blocked_chats: HashSet<i64>,
    /// Each file download waits this long (to catch a process mid-batch).
    download_delay: Duration,
    /// The highest update id a `getUpdates` answer carried.
    highest_delivered: i64,
    /// The webhook set with `setWebhook`: its URL and secret token.
    webhook: Option<(String, String)>,
    /// The last webhook delivery that was not answered 2xx: Unix time and what happened.
    webhook_error: Option<(i64, String)>,
    /// Webhook deliveries answered 2xx.
    webhook_delivered: usize,
}

#[derive(Debug, Clone)]
struct StandIn {
    token: String,
    inner: Arc<Mutex<Inner>>,
    news: Arc<Notify>,
}

impl StandIn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running stand-in Bot API server.
#[derive(Debug)]
pub struct BotApiServer {
    /// What the channel's `api_url` is set to.
    pub url: String,
    pub token: String,
    state: StandIn,
    stop: CancellationToken,
}

impl BotApiServer {
    pub async fn start(token: &str) -> BotApiServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("the Bot API stand-in cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the Bot API stand-in has no address: {e}"));
        let state = StandIn {
            token: token.to_owned(),
            inner: Arc::new(Mutex::new(Inner {
                next_update_id: 850_000_001,
                next_message_id: 5_000,
                ..Inner::default()
            })),
            news: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .route("/file/{bot}/{*path}", get(file))
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        tokio::spawn(deliver_to_webhook(state.clone(), stop.clone()));
        BotApiServer {
            url: format!("http://{addr}"),
            token: token.to_owned(),
            state,
            stop,
        }
    }

    /// The webhook `setWebhook` registered: URL and secret token.
    pub fn webhook(&self) -> Option<(String, String)> {
        self.state.lock().webhook.clone()
    }

    /// Updates delivered to the webhook (answered 2xx).
    pub fn webhook_delivered(&self) -> usize {
        self.state.lock().webhook_delivered
    }

    /// Queues an update (`kind`: `message`, `edited_message`, …) and returns its id.
    pub fn push(&self, kind: &str, object: Value) -> i64 {
        let mut inner = self.state.lock();
        let id = inner.next_update_id;
        inner.next_update_id += 1;
        inner.updates.push(json!({ "update_id": id, kind: object }));
        drop(inner);
        self.state.news.notify_waiters();
        id
    }

    /// Queues an update exactly as given (a malformed one, say), with the next id.
    pub fn push_raw(&self, mut update: Value) -> i64 {
        let mut inner = self.state.lock();
        let id = inner.next_update_id;
        inner.next_update_id += 1;
        update["update_id"] = json!(id);
        inner.updates.push(update);
        drop(inner);
        self.state.news.notify_waiters();
        id
    }

    /// A file a later update refers to; returns its `file_id`.
    pub fn add_file(&self, path: &str, bytes: &[u8]) -> String {
        let mut inner = self.state.lock();
        let id = format!("AgACAgIAAxkBAAI{}", inner.files.len() + 1);
        inner
            .files
            .insert(id.clone(), (path.to_owned(), bytes.to_vec()));
        id
    }

    /// Updates not confirmed yet (a call with a higher offset confirms them).
    pub fn pending(&self) -> usize {
        self.state.lock().updates.len()
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state
            .lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The next `n` sends are answered 429 with `retry_after` 1.
    pub fn rate_limit_sends(&self, n: u32) {
        self.state.lock().rate_limited_sends = n;
    }

    /// Every file download waits `delay` first.
    pub fn slow_downloads(&self, delay: Duration) {
        self.state.lock().download_delay = delay;
    }

    /// The highest update id handed out so far (0: none).
    pub fn highest_delivered(&self) -> i64 {
        self.state.lock().highest_delivered
    }

    /// Sends to this chat are answered 403, as when the user blocked the bot.
    pub fn block(&self, chat: i64) {
        self.state.lock().blocked_chats.insert(chat);
    }
}

impl Drop for BotApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A private chat's user, as `from` and as the chat.
pub fn user(id: i64, first: &str, username: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": first, "username": username, "language_code": "en"})
}

pub fn private_chat(id: i64, first: &str, username: &str) -> Value {
    json!({"id": id, "first_name": first, "username": username, "type": "private"})
}

/// A private text message as the Bot API sends it.
pub fn text_message(message_id: i64, from: (i64, &str, &str), text: &str) -> Value {
    let (id, first, username) = from;
    json!({
        "message_id": message_id,
        "from": user(id, first, username),
        "chat": private_chat(id, first, username),
        "date": chrono::Utc::now().timestamp(),
        "text": text,
    })
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn error(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(body)).into_response()
}

fn me() -> Value {
    json!({
        "id": BOT_ID, "is_bot": true, "first_name": "Acme Support", "username": BOT_USERNAME,
        "can_join_groups": true, "can_read_all_group_messages": false,
        "supports_inline_queries": false
    })
}

/// The parameters of a call: a JSON body, a form, or a multipart form (files summarised).
async fn params(headers: &HeaderMap, body: Bytes) -> Value {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("multipart/form-data") {
        let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut fields = serde_json::Map::new();
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field.bytes().await.unwrap_or_default();
            let value = match file_name {
                Some(file) => json!({"file": file, "bytes": bytes.len()}),
                None => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            };
            fields.insert(name, value);
        }
        return Value::Object(fields);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        return Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
    }
    serde_json::from_slice(&body).unwrap_or(json!({}))
}

async fn method(
    State(state): State<StandIn>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot != format!("bot{}", state.token) {
        return error(401, "Unauthorized", None);
    }
    let method = canonical(&method);
    let params = params(&headers, body).await;
    state.lock().calls.push(Call {
        method: method.clone(),
        params: params.clone(),
    });
    match method.as_str() {
        "getMe" => ok(me()),
        "getUpdates" => get_updates(&state, &params).await,
        "getFile" => {
            let id = params["file_id"].as_str().unwrap_or_default().to_owned();
            match state.lock().files.get(&id) {
                Some((path, bytes)) => ok(json!({
                    "file_id": id, "file_unique_id": format!("u-{id}"),
                    "file_size": bytes.len(), "file_path": path
                })),
                None => error(400, "Bad Request: invalid file_id", None),
            }
        }
        "sendMessage" | "sendPhoto" | "sendDocument" => send(&state, &method, &params),
        "setWebhook" => {
            let url = params["url"].as_str().unwrap_or_default().to_owned();
            let secret = params["secret_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut inner = state.lock();
            inner.webhook = (!url.is_empty()).then_some((url, secret));
            inner.webhook_error = None;
            drop(inner);
            state.news.notify_waiters();
            ok(json!(true))
        }
        "deleteWebhook" => {
            state.lock().webhook = None;
            ok(json!(true))
        }
        "getWebhookInfo" => {
            let inner = state.lock();
            let mut info = json!({
                "url": inner.webhook.as_ref().map(|(url, _)| url.clone()).unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": inner.updates.len(),
            });
            if let Some((at, message)) = &inner.webhook_error {
                info["last_error_date"] = json!(at);
                info["last_error_message"] = json!(message);
            }
            ok(info)
        }
        _ => error(404, "Not Found", None),
    }
}

/// While a webhook is set, POSTs the oldest pending update to it until answered 2xx, then the
/// next (Telegram's order within a chat).
async fn deliver_to_webhook(state: StandIn, stop: CancellationToken) {
    let client = reqwest::Client::new();
    while !stop.is_cancelled() {
        let notified = state.news.notified();
        let next = {
            let inner = state.lock();
            inner
                .webhook
                .clone()
                .and_then(|hook| Some((hook, inner.updates.first()?.clone())))
        };
        let Some(((url, secret), update)) = next else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        };
        let sent = client
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .json(&update)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!(
                "Wrong response from the webhook: {}",
                response.status()
            )),
            Err(e) => Some(format!("Connection failed: {e}")),
        };
        let delivered = failure.is_none();
        {
            let mut inner = state.lock();
            match failure {
                None => {
                    inner
                        .updates
                        .retain(|u| u["update_id"] != update["update_id"]);
                    inner.webhook_delivered += 1;
                }
                Some(why) => inner.webhook_error = Some((chrono::Utc::now().timestamp(), why)),
            }
        }
        if !delivered {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Bot API method names are case-insensitive (teloxide sends `SendMessage`): the docs' spelling.
fn canonical(method: &str) -> String {
    const KNOWN: [&str; 9] = [
        "getMe",
        "getUpdates",
        "getFile",
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(method))
        .map_or_else(|| method.to_owned(), |k| (*k).to_owned())
}

/// Confirms the updates below `offset` (they are gone for good), then answers those from it on,
/// waiting up to `timeout` seconds (capped at 2 here) for one.
async fn get_updates(state: &StandIn, params: &Value) -> Response {
    if state.lock().webhook.is_some() {
        return error(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            None,
        );
    }
    let offset = params["offset"]
        .as_i64()
        .or_else(|| params["offset"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(100) as usize;
    let timeout = params["timeout"].as_u64().unwrap_or(0).min(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = state.news.notified();
        {
            let mut inner = state.lock();
            inner
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !inner.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                let batch: Vec<Value> = inner.updates.iter().take(limit).cloned().collect();
                if let Some(last) = batch.last().and_then(|u| u["update_id"].as_i64()) {
                    inner.highest_delivered = inner.highest_delivered.max(last);
                }
                return ok(Value::Array(batch));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn send(state: &StandIn, method: &str, params: &Value) -> Response {
    let mut inner = state.lock();
    if inner.rate_limited_sends > 0 {
        inner.rate_limited_sends -= 1;
        return error(
            429,
            "Too Many Requests: retry after 1",
            Some(json!({"retry_after": 1})),
        );
    }
    let chat = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    if inner.blocked_chats.contains(&chat) {
        return error(403, "Forbidden: bot was blocked by the user", None);
    }
    inner.next_message_id += 1;
    let chat_object = if chat < 0 {
        json!({"id": chat, "title": "Group", "type": "supergroup"})
    } else {
        json!({"id": chat, "first_name": "Customer", "type": "private"})
    };
    let mut message = json!({
        "message_id": inner.next_message_id,
        "from": me(),
        "chat": chat_object,
        "date": chrono::Utc::now().timestamp(),
    });
    // A multipart form (sendPhoto) carries numbers as text.
    let topic = params
        .get("message_thread_id")
        .and_then(|t| t.as_i64().or_else(|| t.as_str()?.parse().ok()));
    if let Some(topic) = topic {
        message["message_thread_id"] = json!(topic);
        message["is_topic_message"] = json!(true);
    }
    match method {
        "sendMessage" => message["text"] = params["text"].clone(),
        "sendPhoto" => {
            message["photo"] = json!([{
                "file_id": "AgACAgIAAxkDsent", "file_unique_id": "AQADsent",
                "file_size": 1000, "width": 90, "height": 90
            }]);
            if let Some(c) = params.get("caption") {
                message["caption"] = c.clone();
            }
        }
        _ => {
            message["document"] = json!({
                "file_id": "BQACAgIAAxkDsent", "file_unique_id": "AgADsent", "file_size": 1000
            });
            if let Some(c) = params.get("caption") {
                message["caption"] = c.clone();
            }
        }
    }
    ok(message)
}

async fn file(State(state): State<StandIn>, Path((bot, path)): Path<(String, String)>) -> Response {
    if bot != format!("bot{}", state.token) {
        return error(401, "Unauthorized", None);
    }
    let (found, delay) = {
        let inner = state.lock();
        let found = inner
            .files
            .values()
            .find(|(p, _)| *p == path)
            .map(|(_, bytes)| bytes.clone());
        (found, inner.download_delay)
    };
    tokio::time::sleep(delay).await;
    match found {
        Some(bytes) => bytes.into_response(),
        None => error(404, "Not Found", None),
    }
}
