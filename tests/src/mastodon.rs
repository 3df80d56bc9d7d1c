//! A stand-in for a Mastodon instance (no Mastodon can run here), answering as
//! docs.joinmastodon.org says, for the account [`OWN_ACCT`] the company runs on it:
//!
//! - `GET /api/v1/notifications` (`types[]`, `exclude_types[]`, `account_id`, `max_id`,
//!   `since_id`, `min_id`, `limit` 40 by default and 80 at most), newest first, with a `Link`
//!   header: `rel="next"` goes on with `max_id` = the oldest id of the page, `rel="prev"` with
//!   `min_id` = the newest; none on an empty page. A deleted status's notifications are gone.
//! - `GET /api/v1/notifications/:id`, `GET /api/v1/statuses/:id` (404 `Record not found` once
//!   deleted), `GET /api/v1/accounts/verify_credentials`, `GET /api/v1/instance` and
//!   `GET /api/v2/instance` (`configuration.statuses.max_characters`, …).
//! - `POST /api/v1/statuses` (JSON, form or multipart; `Idempotency-Key` replays the status first
//!   posted with it; 422 for too long a text, a blank one, or `media_ids[]` that are not ours and
//!   unattached; 404 for a reply to a status that does not exist).
//! - `POST /api/v2/media` (and v1): multipart `file` + `description`, always processed at once
//!   (200 with a `url`); `GET /api/v1/media/:id`; the files themselves under `/media/…`.
//! - The streaming API as server-sent events: `/api/v1/streaming/user`,
//!   `/api/v1/streaming/user/notification` and `/api/v1/streaming?stream=user|user:notification`
//!   (`access_token` query parameter accepted), events `notification`, `update`, `delete`,
//!   `status.update`, a `:)` line on connect and `:thump` every [`HEARTBEAT`];
//!   `/api/v1/streaming/health` answers `OK`. With streaming off every one of them answers 503.
//! - Every REST answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//!   `X-RateLimit-Reset` (ISO 8601): [`RATE_LIMIT`] requests per 5-minute window, then 429
//!   `{"error":"Too many requests"}` until the window ends. Streaming and media files are not
//!   counted, as they are not on Mastodon (another server, a CDN).
//! - Any token but the server's (or a revoked one) gets 401
//!   `{"error":"The access token is invalid"}`.
//!
//! Ids are numeric strings of equal length that grow with time, like Mastodon's snowflakes: they
//! compare the same as numbers and as strings.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Our company's account on the stand-in instance (verify_credentials returns it).
pub const OWN_ACCT: &str = "acme";
/// Our account's id: the first account of a fresh instance, so it never collides with the
/// snowflake-like ids of everything else.
pub const OWN_ID: &str = "1";
/// Our account's display name, so tests can tell what the product shows for it.
pub const OWN_DISPLAY_NAME: &str = "Acme Support";
/// How often an open stream gets a `:thump` comment: shorter than Mastodon's 15 s, so a dead
/// connection is noticed quickly in a test.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// Requests per 5-minute window, Mastodon's default per account
/// ([`MastodonServer::set_window_limit`] changes it).
pub const RATE_LIMIT: u32 = 300;
/// The instance's status length limit until [`MastodonServer::set_max_characters`].
pub const DEFAULT_MAX_CHARACTERS: usize = 500;
/// Media a status may carry, as on Mastodon by default.
pub const MAX_MEDIA_ATTACHMENTS: usize = 4;

const RATE_WINDOW_SECS: i64 = 300;
/// Every URL counts as this many characters towards the length limit.
const CHARACTERS_PER_URL: usize = 23;
const ID_BASE: u64 = 110_000_000_000_000_000;
const DEFAULT_PAGE: usize = 40;
const MAX_PAGE: usize = 80;
const VISIBILITIES: [&str; 4] = ["public", "unlisted", "private", "direct"];
/// Mastodon resolves an account's `created_at` to midnight.
const ACCOUNTS_CREATED_AT: &str = "2024-01-15T00:00:00.000Z";
const INVALID_TOKEN: &str = "The access token is invalid";
const NOT_FOUND: &str = "Record not found";
const REPLY_NOT_FOUND: &str = "The post you are trying to reply to does not appear to exist.";
/// Uploads may be large videos: well above axum's 2 MB default.
const MAX_BODY: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// What tests see

/// A customer account on the instance (or a remote one: acct "user@other.example").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub username: String,
    pub acct: String,
    pub display_name: String,
}

/// A media file attached to a customer's status (served by the stand-in under /media/…).
#[derive(Debug, Clone)]
pub struct Media {
    /// `image`, `video`, `gifv`, `audio` or `unknown`: the MediaAttachment `type`.
    pub kind: &'static str,
    /// Its name; the extension decides the `Content-Type` it is served with.
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// The alt text.
    pub description: Option<String>,
}

/// A status our account posted, with the request's params, so tests can check what the product
/// sent (a duplicate answered from its `Idempotency-Key` is not here twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: String,
    pub status: String,
    pub in_reply_to_id: Option<String>,
    pub visibility: String,
    pub media_ids: Vec<String>,
    pub idempotency_key: Option<String>,
    pub spoiler_text: String,
    pub sensitive: bool,
    pub language: Option<String>,
}

/// A file our account uploaded through `/api/v2/media`, so tests can check what the product sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub file_name: String,
    pub content_type: String,
    pub description: Option<String>,
    pub bytes: Vec<u8>,
    /// The status it was posted with, once it was.
    pub status_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The instance's records

#[derive(Debug, Clone)]
struct AccountRecord {
    id: String,
    username: String,
    /// `None` for an account of this instance.
    domain: Option<String>,
    display_name: String,
}

impl AccountRecord {
    fn acct(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{}@{domain}", self.username),
            None => self.username.clone(),
        }
    }

    /// The origin the account's own server has.
    fn origin(&self, base: &str) -> String {
        match &self.domain {
            Some(domain) => format!("https://{domain}"),
            None => base.to_owned(),
        }
    }

    fn profile_url(&self, base: &str) -> String {
        format!("{}/@{}", self.origin(base), self.username)
    }

    fn customer(&self) -> Customer {
        Customer {
            id: self.id.clone(),
            username: self.username.clone(),
            acct: self.acct(),
            display_name: self.display_name.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct StatusRecord {
    account_id: String,
    /// The plain text it was written as.
    text: String,
    content: String,
    visibility: String,
    in_reply_to_id: Option<String>,
    spoiler_text: String,
    sensitive: bool,
    language: Option<String>,
    media_ids: Vec<u64>,
    mention_ids: Vec<String>,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct NotificationRecord {
    id: u64,
    kind: String,
    account_id: String,
    status_id: Option<u64>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct MediaRecord {
    id: u64,
    owner_id: String,
    kind: String,
    file_name: String,
    content_type: String,
    description: Option<String>,
    bytes: Vec<u8>,
    status_id: Option<u64>,
    /// Where a remote account's server has it (Mastodon serves its own cached copy as `url`).
    remote_url: Option<String>,
}

/// One server-sent event for the user streams.
#[derive(Debug, Clone)]
struct StreamEvent {
    name: &'static str,
    data: String,
}

impl StreamEvent {
    fn chunk(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

/// The rate limit window requests are counted in (aligned to 5-minute boundaries, as
/// Mastodon's are).
#[derive(Debug, Default, Clone, Copy)]
struct RateWindow {
    index: i64,
    used: u32,
}

/// Answers to refuse with 429 whatever the window says ([`MastodonServer::rate_limit`]).
#[derive(Debug, Clone, Copy)]
struct ForcedLimit {
    answers: u32,
    reset: DateTime<Utc>,
}

/// What the rate limit headers of one answer say.
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    limit: u32,
    remaining: u32,
    reset: DateTime<Utc>,
}

#[derive(Debug)]
struct Inner {
    /// `http://127.0.0.1:<port>`: the origin of local profiles, statuses and media.
    base: String,
    /// `127.0.0.1:<port>`: the instance's domain.
    host: String,
    last_id: u64,
    accounts: BTreeMap<String, AccountRecord>,
    statuses: BTreeMap<u64, StatusRecord>,
    notifications: BTreeMap<u64, NotificationRecord>,
    media: BTreeMap<u64, MediaRecord>,
    posted: Vec<Posted>,
    /// Idempotency keys of our posts and the status each created.
    idempotency: HashMap<String, u64>,
    /// Requests per path, whatever they were answered.
    requests: HashMap<String, usize>,
    token_revoked: bool,
    max_characters: usize,
    window: RateWindow,
    window_limit: u32,
    forced_limit: Option<ForcedLimit>,
    /// Status posts to answer 503 without creating anything.
    failing_posts: u32,
    /// Status posts to create but answer 502, as when the answer is lost on the way.
    lost_post_answers: u32,
    notifications_delay: Duration,
    streaming: bool,
    open_streams: usize,
    events: broadcast::Sender<StreamEvent>,
    /// Cancelled to close every stream open now (a child of the server's stop token).
    streams_closed: CancellationToken,
    stop: CancellationToken,
}

#[derive(Debug, Clone)]
struct StandIn {
    token: String,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

impl StandIn {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token a request presents, and whether it is ours and still valid.
    fn credential(&self, headers: &HeaderMap, query: Option<&str>, from_query: bool) -> Credential {
        let presented = bearer(headers).or_else(|| {
            from_query
                .then(|| query_param(query, "access_token"))
                .flatten()
        });
        match presented {
            None => Credential::Missing,
            Some(token) if token == self.token && !self.lock().token_revoked => Credential::Valid,
            Some(_) => Credential::Invalid,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    Missing,
    Valid,
    Invalid,
}

// ---------------------------------------------------------------------------------------------
// The server and what tests do with it

/// A running stand-in Mastodon instance.
#[derive(Debug)]
pub struct MastodonServer {
    /// What the channel's `instance_url` is set to (`http://127.0.0.1:<port>`).
    pub url: String,
    /// The access token of [`OWN_ACCT`], to put where the channel's `token_env` points.
    pub token: String,
    state: StandIn,
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl MastodonServer {
    /// Starts the instance on a free port, with a fresh random token and our account (id "1").
    pub async fn start() -> MastodonServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("the Mastodon stand-in cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the Mastodon stand-in has no address: {e}"));
        let url = format!("http://{addr}");
        let token = format!("stand-in-{}", uuid::Uuid::now_v7().simple());
        let stop = CancellationToken::new();
        let state = StandIn {
            token: token.clone(),
            inner: Arc::new(Mutex::new(Inner::new(&url, &addr.to_string(), &stop))),
            stop: stop.clone(),
        };
        let app = router(state.clone());
        let stopped = stop.clone().cancelled_owned();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        MastodonServer {
            url,
            token,
            state,
            stop,
            handle: Some(handle),
        }
    }

    // --- accounts -------------------------------------------------------------------------

    /// A local account (acct == username); the same one again for a username already taken.
    pub fn customer(&self, username: &str, display_name: &str) -> Customer {
        self.state.lock().account(username, None, display_name)
    }

    /// An account of another server, as the instance knows it once federated (acct
    /// `username@domain`, profile and status URLs on that domain).
    pub fn remote_customer(&self, username: &str, domain: &str, display_name: &str) -> Customer {
        self.state
            .lock()
            .account(username, Some(domain), display_name)
    }

    // --- what customers do ----------------------------------------------------------------

    /// A status by `from` mentioning us: creates the Status (content HTML with an h-card
    /// mention of @acme at the start, then `text` HTML-escaped in the same `<p>`), a `mention`
    /// Notification, and pushes `notification` to open user streams. Returns the status id.
    pub fn mention(
        &self,
        from: &Customer,
        text: &str,
        visibility: &str,
        in_reply_to_id: Option<&str>,
    ) -> String {
        self.mention_with(from, text, visibility, in_reply_to_id, "", Vec::new())
    }

    /// [`MastodonServer::mention`] with a content warning and media (a content warning makes the
    /// status sensitive, as Mastodon does).
    pub fn mention_with(
        &self,
        from: &Customer,
        text: &str,
        visibility: &str,
        in_reply_to_id: Option<&str>,
        spoiler_text: &str,
        media: Vec<Media>,
    ) -> String {
        let draft = CustomerDraft {
            from,
            body: DraftBody::Text(text),
            visibility,
            in_reply_to_id,
            spoiler_text,
            media,
        };
        self.state.lock().customer_status(draft)
    }

    /// A mention whose content is this raw HTML instead of escaped text, for hostile-HTML tests
    /// (a remote server may send anything Mastodon's sanitizer lets through, or worse).
    pub fn mention_html(&self, from: &Customer, content_html: &str, visibility: &str) -> String {
        let draft = CustomerDraft {
            from,
            body: DraftBody::Html(content_html),
            visibility,
            in_reply_to_id: None,
            spoiler_text: "",
            media: Vec::new(),
        };
        self.state.lock().customer_status(draft)
    }

    /// Another kind of notification (`follow`, `favourite` or `reblog` of one of our statuses,
    /// …), for tests that the product takes only mentions as messages. Returns its id.
    pub fn notify(&self, kind: &str, from: &Customer, status_id: Option<&str>) -> String {
        let mut inner = self.state.lock();
        let status = status_id.map(|id| {
            let id = parse_id(id).unwrap_or_else(|| panic!("status id {id} is not an id"));
            assert!(inner.statuses.contains_key(&id), "no status {id}");
            id
        });
        id_string(inner.notify(kind, &from.id, status))
    }

    /// The customer edits a status: new content, `edited_at` set; pushes `status.update` on
    /// user streams.
    pub fn edit(&self, status_id: &str, new_text: &str) {
        self.state.lock().edit_status(status_id, new_text);
    }

    /// The customer deletes it: GET /api/v1/statuses/:id becomes 404, notifications about it
    /// vanish from GET /api/v1/notifications (as Mastodon does), pushes `delete` on user
    /// streams.
    pub fn delete(&self, status_id: &str) {
        self.state.lock().delete_status(status_id);
    }

    /// Moves a status (and its notifications) `age` into the past, for backfill windows: ids
    /// keep their order, only `created_at` changes.
    pub fn backdate(&self, status_id: &str, age: Duration) {
        let at = Utc::now() - TimeDelta::from_std(age).unwrap_or(TimeDelta::zero());
        let mut inner = self.state.lock();
        let id = parse_id(status_id).unwrap_or_else(|| panic!("{status_id} is not an id"));
        let status = inner
            .statuses
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no status {status_id} to backdate"));
        status.created_at = at;
        for notification in inner.notifications.values_mut() {
            if notification.status_id == Some(id) {
                notification.created_at = at;
            }
        }
    }

    // --- what the product did -------------------------------------------------------------

    /// Statuses our account posted (in order), each with the request's params and
    /// Idempotency-Key.
    pub fn posted(&self) -> Vec<Posted> {
        self.state.lock().posted.clone()
    }

    /// Files our account uploaded (in order).
    pub fn uploads(&self) -> Vec<Upload> {
        let inner = self.state.lock();
        inner
            .media
            .values()
            .filter(|m| m.owner_id == OWN_ID)
            .map(|m| Upload {
                id: id_string(m.id),
                file_name: m.file_name.clone(),
                content_type: m.content_type.clone(),
                description: m.description.clone(),
                bytes: m.bytes.clone(),
                status_id: m.status_id.map(id_string),
            })
            .collect()
    }

    /// A status as `GET /api/v1/statuses/:id` renders it (`None` once deleted), to check the
    /// HTML our posts got without a request being counted.
    pub fn status(&self, status_id: &str) -> Option<Value> {
        let inner = self.state.lock();
        inner.status_json(parse_id(status_id)?)
    }

    /// The statuses of every notification at or below this notification id (a product's
    /// cursor), oldest first: to check a cursor never passes a status that was not stored.
    pub fn statuses_notified_up_to(&self, notification_id: &str) -> Vec<String> {
        let up_to = parse_id(notification_id)
            .unwrap_or_else(|| panic!("{notification_id:?} is not a notification id"));
        let inner = self.state.lock();
        inner
            .notifications
            .range(..=up_to)
            .filter_map(|(_, n)| n.status_id)
            .map(id_string)
            .collect()
    }

    /// How many requests a path got (e.g. "/api/v1/notifications", "/api/v1/statuses" for
    /// POSTs), however they were answered.
    pub fn requests(&self, path: &str) -> usize {
        self.state.lock().requests.get(path).copied().unwrap_or(0)
    }

    /// Open streaming connections right now (a client that went away is noticed when the next
    /// event or heartbeat is written).
    pub fn streams(&self) -> usize {
        self.state.lock().open_streams
    }

    // --- how the instance behaves ---------------------------------------------------------

    /// The next `n` requests (any path except streaming) are answered 429 with
    /// X-RateLimit-Remaining: 0 and X-RateLimit-Reset `seconds` from now.
    pub fn rate_limit(&self, n: u32, seconds: u32) {
        self.state.lock().forced_limit = Some(ForcedLimit {
            answers: n,
            reset: Utc::now() + TimeDelta::seconds(i64::from(seconds)),
        });
    }

    /// Requests allowed per 5-minute window from now on (the window's count so far stays).
    pub fn set_window_limit(&self, n: u32) {
        self.state.lock().window_limit = n;
    }

    /// Every later request with the token gets 401 (the token was revoked); open streams are
    /// closed, as Mastodon's streaming server does.
    pub fn revoke_token(&self) {
        let mut inner = self.state.lock();
        inner.token_revoked = true;
        inner.close_streams();
    }

    /// The instance's status length limit (`configuration.statuses.max_characters`).
    pub fn set_max_characters(&self, n: usize) {
        self.state.lock().max_characters = n;
    }

    /// Streaming on or off (off: /api/v1/streaming/* answers 503, as an instance without its
    /// streaming server, and open streams are closed) — the product must fall back to polling.
    pub fn set_streaming(&self, on: bool) {
        let mut inner = self.state.lock();
        inner.streaming = on;
        if !on {
            inner.close_streams();
        }
    }

    /// Closes every open stream while streaming stays on (a restart of the streaming server,
    /// a dropped connection): the product must reconnect and catch up on what it missed.
    pub fn drop_streams(&self) {
        self.state.lock().close_streams();
    }

    /// Each GET /api/v1/notifications answer waits this long (to catch a process mid-sync with
    /// kill -9).
    pub fn set_notifications_delay(&self, d: Duration) {
        self.state.lock().notifications_delay = d;
    }

    /// The next `n` status posts are answered 503 and create nothing (an instance in trouble).
    pub fn fail_posts(&self, n: u32) {
        self.state.lock().failing_posts = n;
    }

    /// The next `n` status posts create their status but are answered 502, as when a proxy
    /// loses the answer: only the `Idempotency-Key` of the retry keeps the reply single.
    pub fn lose_post_answers(&self, n: u32) {
        self.state.lock().lost_post_answers = n;
    }

    /// Stops the server and waits (up to 5 s) until it has; open streams end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
    }
}

impl Drop for MastodonServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// The instance's state

/// A customer's status as a test describes it.
#[derive(Debug)]
struct CustomerDraft<'a> {
    from: &'a Customer,
    body: DraftBody<'a>,
    visibility: &'a str,
    in_reply_to_id: Option<&'a str>,
    spoiler_text: &'a str,
    media: Vec<Media>,
}

#[derive(Debug, Clone, Copy)]
enum DraftBody<'a> {
    /// Plain text, rendered the way Mastodon renders what its users type.
    Text(&'a str),
    /// Content exactly as given.
    Html(&'a str),
}

/// A status post's parameters, as the product sent them.
#[derive(Debug, Clone)]
struct PostRequest {
    status: String,
    in_reply_to_id: Option<String>,
    visibility: Option<String>,
    media_ids: Vec<String>,
    spoiler_text: String,
    sensitive: bool,
    language: Option<String>,
    idempotency_key: Option<String>,
}

/// A status post that passed validation.
#[derive(Debug, Clone)]
struct AcceptedPost {
    media: Vec<u64>,
    visibility: String,
}

/// The HTML of some text and the accounts it mentions.
#[derive(Debug, Default)]
struct Rendered {
    paragraphs: Vec<String>,
    mention_ids: Vec<String>,
}

impl Inner {
    fn new(base: &str, host: &str, stop: &CancellationToken) -> Inner {
        let own = AccountRecord {
            id: OWN_ID.to_owned(),
            username: OWN_ACCT.to_owned(),
            domain: None,
            display_name: OWN_DISPLAY_NAME.to_owned(),
        };
        let (events, _) = broadcast::channel(1024);
        Inner {
            base: base.to_owned(),
            host: host.to_owned(),
            last_id: 0,
            accounts: BTreeMap::from([(own.id.clone(), own)]),
            statuses: BTreeMap::new(),
            notifications: BTreeMap::new(),
            media: BTreeMap::new(),
            posted: Vec::new(),
            idempotency: HashMap::new(),
            requests: HashMap::new(),
            token_revoked: false,
            max_characters: DEFAULT_MAX_CHARACTERS,
            window: RateWindow::default(),
            window_limit: RATE_LIMIT,
            forced_limit: None,
            failing_posts: 0,
            lost_post_answers: 0,
            notifications_delay: Duration::ZERO,
            streaming: true,
            open_streams: 0,
            events,
            streams_closed: stop.child_token(),
            stop: stop.clone(),
        }
    }

    /// The next snowflake-like id: one sequence for every kind of record, so ids also tell
    /// which came first.
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        ID_BASE + self.last_id
    }

    fn own(&self) -> &AccountRecord {
        &self.accounts[OWN_ID]
    }

    fn account(&mut self, username: &str, domain: Option<&str>, display_name: &str) -> Customer {
        let existing = self.accounts.values().find(|a| {
            a.username.eq_ignore_ascii_case(username)
                && a.domain.as_deref().map(str::to_ascii_lowercase)
                    == domain.map(str::to_ascii_lowercase)
        });
        if let Some(account) = existing {
            return account.customer();
        }
        let account = AccountRecord {
            id: id_string(self.next_id()),
            username: username.to_owned(),
            domain: domain.map(str::to_owned),
            display_name: display_name.to_owned(),
        };
        let customer = account.customer();
        self.accounts.insert(account.id.clone(), account);
        customer
    }

    // --- requests and limits --------------------------------------------------------------

    fn count(&mut self, path: &str) {
        *self.requests.entry(path.to_owned()).or_default() += 1;
    }

    /// Counts a REST request against the rate limit: its headers, or the 429's.
    fn admit(&mut self, now: DateTime<Utc>) -> Result<RateLimit, RateLimit> {
        if let Some(forced) = &mut self.forced_limit
            && forced.answers > 0
        {
            forced.answers -= 1;
            return Err(RateLimit {
                limit: self.window_limit,
                remaining: 0,
                reset: forced.reset,
            });
        }
        let index = now.timestamp().div_euclid(RATE_WINDOW_SECS);
        if self.window.index != index {
            self.window = RateWindow { index, used: 0 };
        }
        let reset = DateTime::from_timestamp((index + 1) * RATE_WINDOW_SECS, 0).unwrap_or(now);
        let limit = self.window_limit;
        if self.window.used >= limit {
            return Err(RateLimit {
                limit,
                remaining: 0,
                reset,
            });
        }
        self.window.used += 1;
        Ok(RateLimit {
            limit,
            remaining: limit - self.window.used,
            reset,
        })
    }

    // --- streams --------------------------------------------------------------------------

    fn publish(&self, name: &'static str, data: String) {
        // Nobody listening is fine: like Mastodon's, events between streams are lost.
        let _ = self.events.send(StreamEvent { name, data });
    }

    fn close_streams(&mut self) {
        self.streams_closed.cancel();
        self.streams_closed = self.stop.child_token();
    }

    // --- statuses -------------------------------------------------------------------------

    fn customer_status(&mut self, draft: CustomerDraft<'_>) -> String {
        let author = self
            .accounts
            .get(&draft.from.id)
            .unwrap_or_else(|| panic!("{} is no account of this instance", draft.from.acct))
            .clone();
        let id = self.next_id();
        let media = draft
            .media
            .iter()
            .map(|m| self.attach_customer_media(&author, id, m))
            .collect();
        let (content, mention_ids) = match draft.body {
            DraftBody::Text(text) => self.customer_content(text),
            DraftBody::Html(html) => (html.to_owned(), vec![OWN_ID.to_owned()]),
        };
        let text = match draft.body {
            DraftBody::Text(text) => format!("@{OWN_ACCT} {text}"),
            DraftBody::Html(_) => String::new(),
        };
        self.statuses.insert(
            id,
            StatusRecord {
                account_id: author.id.clone(),
                text,
                content,
                visibility: draft.visibility.to_owned(),
                in_reply_to_id: draft.in_reply_to_id.map(str::to_owned),
                spoiler_text: draft.spoiler_text.to_owned(),
                sensitive: !draft.spoiler_text.is_empty(),
                language: Some("en".to_owned()),
                media_ids: media,
                mention_ids,
                created_at: Utc::now(),
                edited_at: None,
            },
        );
        self.notify("mention", &author.id, Some(id));
        id_string(id)
    }

    /// A customer's text as Mastodon renders a status that starts by mentioning us.
    fn customer_content(&self, text: &str) -> (String, Vec<String>) {
        let mut rendered = self.render(text);
        let own_card = h_card(self.own(), &self.base);
        match rendered.paragraphs.first_mut() {
            Some(first) => *first = format!("{own_card} {first}"),
            None => rendered.paragraphs.push(own_card),
        }
        let mut mention_ids = vec![OWN_ID.to_owned()];
        for id in rendered.mention_ids {
            if !mention_ids.contains(&id) {
                mention_ids.push(id);
            }
        }
        (paragraphs_html(&rendered.paragraphs), mention_ids)
    }

    fn attach_customer_media(&mut self, author: &AccountRecord, status: u64, media: &Media) -> u64 {
        let id = self.next_id();
        let remote_url = author.domain.as_ref().map(|domain| {
            format!(
                "https://{domain}/media/{}/{}",
                id_string(id),
                safe_file_name(&media.file_name)
            )
        });
        self.media.insert(
            id,
            MediaRecord {
                id,
                owner_id: author.id.clone(),
                kind: media.kind.to_owned(),
                file_name: media.file_name.clone(),
                content_type: guess_content_type(&media.file_name).to_owned(),
                description: media.description.clone(),
                bytes: media.bytes.clone(),
                status_id: Some(status),
                remote_url,
            },
        );
        id
    }

    /// Creates a notification for us and pushes it to the streams; returns its id.
    fn notify(&mut self, kind: &str, account_id: &str, status_id: Option<u64>) -> u64 {
        let id = self.next_id();
        self.notifications.insert(
            id,
            NotificationRecord {
                id,
                kind: kind.to_owned(),
                account_id: account_id.to_owned(),
                status_id,
                created_at: Utc::now(),
            },
        );
        if let Some(notification) = self.notification_json(id) {
            self.publish("notification", notification.to_string());
        }
        id
    }

    fn edit_status(&mut self, status_id: &str, new_text: &str) {
        let id = parse_id(status_id).unwrap_or_else(|| panic!("{status_id} is not an id"));
        let author = self
            .statuses
            .get(&id)
            .unwrap_or_else(|| panic!("no status {status_id} to edit"))
            .account_id
            .clone();
        let (content, mention_ids, text) = if author == OWN_ID {
            let rendered = self.render(new_text);
            let html = paragraphs_html(&rendered.paragraphs);
            (html, rendered.mention_ids, new_text.to_owned())
        } else {
            let (html, mentions) = self.customer_content(new_text);
            (html, mentions, format!("@{OWN_ACCT} {new_text}"))
        };
        if let Some(status) = self.statuses.get_mut(&id) {
            status.content = content;
            status.mention_ids = mention_ids;
            status.text = text;
            status.edited_at = Some(Utc::now());
        }
        if let Some(status) = self.status_json(id) {
            self.publish("status.update", status.to_string());
        }
    }

    fn delete_status(&mut self, status_id: &str) {
        let id = parse_id(status_id).unwrap_or_else(|| panic!("{status_id} is not an id"));
        self.statuses
            .remove(&id)
            .unwrap_or_else(|| panic!("no status {status_id} to delete"));
        self.notifications.retain(|_, n| n.status_id != Some(id));
        self.publish("delete", id_string(id));
    }

    // --- our posts ------------------------------------------------------------------------

    /// The status an earlier post with this `Idempotency-Key` created, if it still exists.
    fn replayed(&self, key: Option<&str>) -> Option<Value> {
        let id = *self.idempotency.get(key?)?;
        self.status_json(id)
    }

    /// Mastodon's checks on a new status, in its order: the status replied to, the media, then
    /// the status itself.
    fn check_post(&self, post: &PostRequest) -> Result<AcceptedPost, Refusal> {
        if let Some(parent) = &post.in_reply_to_id
            && !parse_id(parent).is_some_and(|id| self.statuses.contains_key(&id))
        {
            return Err(Refusal::new(StatusCode::NOT_FOUND, REPLY_NOT_FOUND));
        }
        let media = self.check_media(&post.media_ids)?;
        let visibility = post
            .visibility
            .clone()
            .unwrap_or_else(|| "public".to_owned());
        if !VISIBILITIES.contains(&visibility.as_str()) {
            return Err(unprocessable(
                "Validation failed: Visibility is not included in the list",
            ));
        }
        if post.status.trim().is_empty() && media.is_empty() {
            return Err(unprocessable("Validation failed: Text can't be blank"));
        }
        let length = post.spoiler_text.chars().count() + countable_length(&post.status);
        if length > self.max_characters {
            return Err(unprocessable(&format!(
                "Validation failed: Text character limit of {} exceeded",
                self.max_characters
            )));
        }
        Ok(AcceptedPost { media, visibility })
    }

    /// `media_ids[]` must be our uploads, not yet posted with another status.
    fn check_media(&self, ids: &[String]) -> Result<Vec<u64>, Refusal> {
        if ids.len() > MAX_MEDIA_ATTACHMENTS {
            return Err(unprocessable(&format!(
                "Validation failed: Cannot attach more than {MAX_MEDIA_ATTACHMENTS} files"
            )));
        }
        let usable = |id: &String| {
            parse_id(id).filter(|id| {
                self.media
                    .get(id)
                    .is_some_and(|m| m.owner_id == OWN_ID && m.status_id.is_none())
            })
        };
        let missing: Vec<&str> = ids
            .iter()
            .filter(|id| usable(id).is_none())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(unprocessable(&format!(
                "Validation failed: Media {} not found or already attached to another post",
                missing.join(", ")
            )));
        }
        Ok(ids.iter().filter_map(usable).collect())
    }

    /// Creates our status, records it for [`MastodonServer::posted`] and pushes it to our home
    /// stream (`update`), as Mastodon puts our own statuses in our home timeline.
    fn create_own_status(&mut self, post: &PostRequest, accepted: AcceptedPost) -> u64 {
        let id = self.next_id();
        let rendered = self.render(&post.status);
        for media in &accepted.media {
            if let Some(record) = self.media.get_mut(media) {
                record.status_id = Some(id);
            }
        }
        let in_reply_to_id = post.in_reply_to_id.clone();
        self.statuses.insert(
            id,
            StatusRecord {
                account_id: OWN_ID.to_owned(),
                text: post.status.clone(),
                content: paragraphs_html(&rendered.paragraphs),
                visibility: accepted.visibility.clone(),
                in_reply_to_id: in_reply_to_id.clone(),
                spoiler_text: post.spoiler_text.clone(),
                sensitive: post.sensitive || !post.spoiler_text.is_empty(),
                language: post.language.clone(),
                media_ids: accepted.media.clone(),
                mention_ids: rendered.mention_ids,
                created_at: Utc::now(),
                edited_at: None,
            },
        );
        self.posted.push(Posted {
            id: id_string(id),
            status: post.status.clone(),
            in_reply_to_id,
            visibility: accepted.visibility,
            media_ids: accepted.media.iter().copied().map(id_string).collect(),
            idempotency_key: post.idempotency_key.clone(),
            spoiler_text: post.spoiler_text.clone(),
            sensitive: post.sensitive,
            language: post.language.clone(),
        });
        if let Some(key) = &post.idempotency_key {
            self.idempotency.insert(key.clone(), id);
        }
        if let Some(status) = self.status_json(id) {
            self.publish("update", status.to_string());
        }
        id
    }

    fn upload(&mut self, form: UploadForm, kind: &str) -> u64 {
        let id = self.next_id();
        self.media.insert(
            id,
            MediaRecord {
                id,
                owner_id: OWN_ID.to_owned(),
                kind: kind.to_owned(),
                file_name: form.file_name,
                content_type: form.content_type,
                description: form.description,
                bytes: form.bytes,
                status_id: None,
                remote_url: None,
            },
        );
        id
    }

    // --- notifications --------------------------------------------------------------------

    /// The ids of one page, newest first, as Mastodon pages: `min_id` walks forward from a
    /// cursor, the others take the newest matching.
    fn notification_page(&self, query: &NotificationQuery) -> Vec<u64> {
        let matching = self
            .notifications
            .values()
            .filter(|n| query.admits(n))
            .map(|n| n.id);
        if query.min_id.is_some() {
            let mut page: Vec<u64> = matching.take(query.limit).collect();
            page.reverse();
            page
        } else {
            matching.rev().take(query.limit).collect()
        }
    }

    // --- rendering ------------------------------------------------------------------------

    /// Plain text as Mastodon renders it: paragraphs at blank lines, `<br />` at line breaks,
    /// links and known accounts' mentions marked up, everything else escaped.
    fn render(&self, text: &str) -> Rendered {
        let mut rendered = Rendered::default();
        let mut lines: Vec<String> = Vec::new();
        for line in text.split('\n') {
            if line.trim().is_empty() {
                if !lines.is_empty() {
                    rendered.paragraphs.push(lines.join("<br />"));
                    lines.clear();
                }
                continue;
            }
            let words: Vec<String> = line
                .split(' ')
                .map(|word| self.render_word(word, &mut rendered.mention_ids))
                .collect();
            lines.push(words.join(" "));
        }
        if !lines.is_empty() {
            rendered.paragraphs.push(lines.join("<br />"));
        }
        rendered
    }

    fn render_word(&self, word: &str, mention_ids: &mut Vec<String>) -> String {
        let core = word.trim_end_matches(['.', ',', '!', '?', ';', ':', ')', '"', '\'']);
        let tail = &word[core.len()..];
        if is_url(core) {
            return format!("{}{}", link_html(core), escape(tail));
        }
        if let Some(account) = self.resolve_mention(core) {
            if !mention_ids.contains(&account.id) {
                mention_ids.push(account.id.clone());
            }
            return format!("{}{}", h_card(account, &self.base), escape(tail));
        }
        escape(word)
    }

    /// The account `@user` (local) or `@user@domain` names, if the instance knows it.
    fn resolve_mention(&self, word: &str) -> Option<&AccountRecord> {
        let handle = word.strip_prefix('@')?;
        let (user, domain) = match handle.split_once('@') {
            Some((user, domain)) => (user, Some(domain)),
            None => (handle, None),
        };
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let domain = domain.filter(|d| !d.eq_ignore_ascii_case(&self.host));
        self.accounts.values().find(|a| {
            a.username.eq_ignore_ascii_case(user)
                && match (domain, &a.domain) {
                    (None, None) => true,
                    (Some(wanted), Some(theirs)) => wanted.eq_ignore_ascii_case(theirs),
                    _ => false,
                }
        })
    }

    fn account_json(&self, account: &AccountRecord) -> Value {
        let avatar = format!("{}/avatars/original/missing.png", self.base);
        let header = format!("{}/headers/original/missing.png", self.base);
        let statuses_count = self
            .statuses
            .values()
            .filter(|s| s.account_id == account.id)
            .count();
        json!({
            "id": account.id,
            "username": account.username,
            "acct": account.acct(),
            "display_name": account.display_name,
            "locked": false,
            "bot": false,
            "discoverable": true,
            "group": false,
            "created_at": ACCOUNTS_CREATED_AT,
            "note": "",
            "url": account.profile_url(&self.base),
            "avatar": avatar,
            "avatar_static": avatar,
            "header": header,
            "header_static": header,
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": statuses_count,
            "last_status_at": null,
            "emojis": [],
            "fields": [],
        })
    }

    /// verify_credentials' CredentialAccount: our Account with its `source`.
    fn credential_account_json(&self) -> Value {
        let mut account = self.account_json(self.own());
        account["source"] = json!({
            "privacy": "public",
            "sensitive": false,
            "language": "",
            "note": "",
            "fields": [],
            "follow_requests_count": 0,
        });
        account
    }

    fn status_json(&self, id: u64) -> Option<Value> {
        let status = self.statuses.get(&id)?;
        let author = self.accounts.get(&status.account_id)?;
        let origin = author.origin(&self.base);
        let in_reply_to_account_id = status
            .in_reply_to_id
            .as_deref()
            .and_then(parse_id)
            .and_then(|parent| self.statuses.get(&parent))
            .map(|parent| parent.account_id.clone());
        let mentions: Vec<Value> = status
            .mention_ids
            .iter()
            .filter_map(|id| self.accounts.get(id))
            .map(|a| {
                json!({
                    "id": a.id, "username": a.username, "url": a.profile_url(&self.base),
                    "acct": a.acct(),
                })
            })
            .collect();
        let media: Vec<Value> = status
            .media_ids
            .iter()
            .filter_map(|m| self.media.get(m))
            .map(|m| self.media_json(m))
            .collect();
        let application =
            (status.account_id == OWN_ID).then(|| json!({"name": "Acme Inbox", "website": null}));
        Some(json!({
            "id": id_string(id),
            "created_at": timestamp(status.created_at),
            "in_reply_to_id": status.in_reply_to_id,
            "in_reply_to_account_id": in_reply_to_account_id,
            "sensitive": status.sensitive,
            "spoiler_text": status.spoiler_text,
            "visibility": status.visibility,
            "language": status.language,
            "uri": format!("{origin}/users/{}/statuses/{}", author.username, id_string(id)),
            "url": format!("{origin}/@{}/{}", author.username, id_string(id)),
            "replies_count": self.statuses.values()
                .filter(|s| s.in_reply_to_id.as_deref() == Some(&*id_string(id)))
                .count(),
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": status.edited_at.map(timestamp),
            "favourited": false,
            "reblogged": false,
            "muted": false,
            "bookmarked": false,
            "content": status.content,
            "filtered": [],
            "reblog": null,
            "application": application,
            "account": self.account_json(author),
            "media_attachments": media,
            "mentions": mentions,
            "tags": [],
            "emojis": [],
            "card": null,
            "poll": null,
        }))
    }

    fn notification_json(&self, id: u64) -> Option<Value> {
        let notification = self.notifications.get(&id)?;
        let account = self.accounts.get(&notification.account_id)?;
        let mut value = json!({
            "id": id_string(id),
            "type": notification.kind,
            "created_at": timestamp(notification.created_at),
            "account": self.account_json(account),
        });
        if let Some(status) = notification.status_id {
            value["status"] = self.status_json(status)?;
        }
        Some(value)
    }

    fn media_json(&self, media: &MediaRecord) -> Value {
        let url = format!(
            "{}/media/{}/{}",
            self.base,
            id_string(media.id),
            safe_file_name(&media.file_name)
        );
        json!({
            "id": id_string(media.id),
            "type": media.kind,
            "url": url,
            "preview_url": url,
            "remote_url": media.remote_url,
            "meta": {},
            "description": media.description,
            "blurhash": null,
        })
    }

    fn instance_configuration(&self) -> Value {
        json!({
            "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
            "statuses": {
                "max_characters": self.max_characters,
                "max_media_attachments": MAX_MEDIA_ATTACHMENTS,
                "characters_reserved_per_url": CHARACTERS_PER_URL,
            },
            "media_attachments": {
                "supported_mime_types": [
                    "image/jpeg", "image/png", "image/gif", "image/webp", "video/webm",
                    "video/mp4", "video/quicktime", "audio/mpeg", "audio/ogg", "audio/wav",
                    "audio/mp4",
                ],
                "image_size_limit": 16_777_216,
                "image_matrix_limit": 33_177_600,
                "video_size_limit": 103_809_024,
                "video_frame_rate_limit": 120,
                "video_matrix_limit": 8_294_400,
            },
            "polls": {
                "max_options": 4,
                "max_characters_per_option": 50,
                "min_expiration": 300,
                "max_expiration": 2_629_746,
            },
        })
    }

    fn instance_v1_json(&self) -> Value {
        json!({
            "uri": self.host,
            "title": "Acme stand-in",
            "short_description": "A stand-in Mastodon instance for end-to-end tests",
            "description": "",
            "email": "admin@acme.example",
            "version": "4.3.0",
            "urls": {"streaming_api": self.streaming_url()},
            "stats": {
                "user_count": self.accounts.values().filter(|a| a.domain.is_none()).count(),
                "status_count": self.statuses.len(),
                "domain_count": 1,
            },
            "thumbnail": null,
            "languages": ["en"],
            "registrations": false,
            "approval_required": false,
            "invites_enabled": false,
            "configuration": self.instance_configuration(),
            "contact_account": self.account_json(self.own()),
            "rules": [],
        })
    }

    fn instance_v2_json(&self) -> Value {
        let mut configuration = self.instance_configuration();
        configuration["urls"] = json!({"streaming": self.streaming_url()});
        configuration["translation"] = json!({"enabled": false});
        json!({
            "domain": self.host,
            "title": "Acme stand-in",
            "version": "4.3.0",
            "source_url": "https://github.com/mastodon/mastodon",
            "description": "A stand-in Mastodon instance for end-to-end tests",
            "usage": {"users": {"active_month": 1}},
            "thumbnail": {"url": format!("{}/thumbnail.png", self.base)},
            "languages": ["en"],
            "configuration": configuration,
            "registrations": {"enabled": false, "approval_required": false, "message": null},
            "contact": {"email": "admin@acme.example", "account": self.account_json(self.own())},
            "rules": [],
        })
    }

    /// Where the streaming API is: the same server (`ws://` as Mastodon gives `wss://`).
    fn streaming_url(&self) -> String {
        format!("ws://{}", self.host)
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

fn router(state: StandIn) -> Router {
    Router::new()
        .route(
            "/api/v1/accounts/verify_credentials",
            get(verify_credentials),
        )
        .route("/api/v1/instance", get(instance_v1))
        .route("/api/v2/instance", get(instance_v2))
        .route("/api/v1/notifications", get(list_notifications))
        .route("/api/v1/notifications/{id}", get(one_notification))
        .route("/api/v1/statuses", post(post_status))
        .route("/api/v1/statuses/{id}", get(one_status))
        .route("/api/v1/media", post(upload_media))
        .route("/api/v2/media", post(upload_media))
        .route("/api/v1/media/{id}", get(one_media))
        .route("/api/v1/streaming", get(stream_named))
        .route("/api/v1/streaming/user", get(stream_user))
        .route(
            "/api/v1/streaming/user/notification",
            get(stream_user_notifications),
        )
        .route("/api/v1/streaming/health", get(streaming_health))
        .route("/media/{id}/{name}", get(media_file))
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// How a path is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Media files: public and unlimited, as on a CDN.
    File,
    /// The streaming server's health check: public.
    StreamingHealth,
    /// The streaming server: a token (header or `access_token`), no rate limit.
    Streaming,
    /// REST methods anyone may call (a token, if given, must be valid).
    Public,
    /// REST methods needing our token.
    Private,
}

impl Access {
    fn of(path: &str) -> Access {
        match path {
            "/api/v1/streaming/health" => Access::StreamingHealth,
            "/api/v1/instance" | "/api/v2/instance" => Access::Public,
            p if p.starts_with("/media/") => Access::File,
            p if p == "/api/v1/streaming" || p.starts_with("/api/v1/streaming/") => {
                Access::Streaming
            }
            _ => Access::Private,
        }
    }
}

/// Counts every request, then applies the instance's rules before any handler: streaming on or
/// off, the rate limit, the token; and puts the rate limit headers on every REST answer.
async fn gate(State(state): State<StandIn>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let access = Access::of(&path);
    state.lock().count(&path);
    match access {
        Access::File => return next.run(request).await,
        Access::StreamingHealth | Access::Streaming if !state.lock().streaming => {
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
        Access::StreamingHealth => return next.run(request).await,
        Access::Streaming => {
            let query = request.uri().query();
            return match state.credential(request.headers(), query, true) {
                Credential::Valid => next.run(request).await,
                Credential::Missing | Credential::Invalid => invalid_token(),
            };
        }
        Access::Public | Access::Private => {}
    }
    let limit = match state.lock().admit(Utc::now()) {
        Ok(limit) => limit,
        Err(limit) => {
            return limit.apply(error(StatusCode::TOO_MANY_REQUESTS, "Too many requests"));
        }
    };
    let allowed = match state.credential(request.headers(), None, false) {
        Credential::Valid => true,
        Credential::Missing => access == Access::Public,
        Credential::Invalid => false,
    };
    let response = if allowed {
        next.run(request).await
    } else {
        invalid_token()
    };
    limit.apply(response)
}

impl RateLimit {
    fn apply(self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        let reset = self.reset.to_rfc3339_opts(SecondsFormat::Micros, true);
        for (name, value) in [
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", reset),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

async fn verify_credentials(State(state): State<StandIn>) -> Response {
    ok(state.lock().credential_account_json())
}

async fn instance_v1(State(state): State<StandIn>) -> Response {
    ok(state.lock().instance_v1_json())
}

async fn instance_v2(State(state): State<StandIn>) -> Response {
    ok(state.lock().instance_v2_json())
}

async fn list_notifications(State(state): State<StandIn>, RawQuery(query): RawQuery) -> Response {
    let query = NotificationQuery::parse(query.as_deref());
    let delay = state.lock().notifications_delay;
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = state.stop.cancelled() => {}
        }
    }
    let inner = state.lock();
    let page = inner.notification_page(&query);
    let body: Vec<Value> = page
        .iter()
        .filter_map(|id| inner.notification_json(*id))
        .collect();
    let mut response = ok(Value::Array(body));
    if let Some(link) = query.link_header(&inner.base, &page)
        && let Ok(value) = HeaderValue::from_str(&link)
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

async fn one_notification(State(state): State<StandIn>, Path(id): Path<String>) -> Response {
    let inner = state.lock();
    match parse_id(&id).and_then(|id| inner.notification_json(id)) {
        Some(notification) => ok(notification),
        None => error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

async fn one_status(State(state): State<StandIn>, Path(id): Path<String>) -> Response {
    let inner = state.lock();
    match parse_id(&id).and_then(|id| inner.status_json(id)) {
        Some(status) => ok(status),
        None => error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// `POST /api/v1/statuses`: replay by `Idempotency-Key`, the configured faults, validation, then
/// the new status.
async fn post_status(State(state): State<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match Params::read(&headers, body).await {
        Ok(params) => params,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let post = PostRequest {
        status: params.text("status").unwrap_or_default(),
        in_reply_to_id: params.text("in_reply_to_id").filter(|id| !id.is_empty()),
        visibility: params.text("visibility").filter(|v| !v.is_empty()),
        media_ids: params.list("media_ids"),
        spoiler_text: params.text("spoiler_text").unwrap_or_default(),
        sensitive: params.flag("sensitive"),
        language: params.text("language").filter(|l| !l.is_empty()),
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let mut inner = state.lock();
    if let Some(status) = inner.replayed(post.idempotency_key.as_deref()) {
        return ok(status);
    }
    if inner.failing_posts > 0 {
        inner.failing_posts -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    let accepted = match inner.check_post(&post) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    let id = inner.create_own_status(&post, accepted);
    if inner.lost_post_answers > 0 {
        inner.lost_post_answers -= 1;
        return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
    }
    match inner.status_json(id) {
        Some(status) => ok(status),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the status vanished"),
    }
}

/// `POST /api/v2/media`: processed at once, so always 200 with a `url`.
async fn upload_media(State(state): State<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match UploadForm::read(&headers, body).await {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(kind) = media_kind(&form.content_type) else {
        return unprocessable("Validation failed: File content type is invalid, File is invalid")
            .into_response();
    };
    let mut inner = state.lock();
    let id = inner.upload(form, kind);
    match inner.media.get(&id) {
        Some(media) => ok(inner.media_json(media)),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the upload vanished"),
    }
}

async fn one_media(State(state): State<StandIn>, Path(id): Path<String>) -> Response {
    let inner = state.lock();
    let media = parse_id(&id)
        .and_then(|id| inner.media.get(&id))
        .filter(|m| m.owner_id == OWN_ID);
    match media {
        Some(media) => ok(inner.media_json(media)),
        None => error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

async fn media_file(
    State(state): State<StandIn>,
    Path((id, _name)): Path<(String, String)>,
) -> Response {
    let inner = state.lock();
    match parse_id(&id).and_then(|id| inner.media.get(&id)) {
        Some(media) => (
            [(header::CONTENT_TYPE, media.content_type.clone())],
            media.bytes.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn streaming_health() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "OK").into_response()
}

async fn stream_user(State(state): State<StandIn>) -> Response {
    open_stream(&state, StreamFilter::User)
}

async fn stream_user_notifications(State(state): State<StandIn>) -> Response {
    open_stream(&state, StreamFilter::Notifications)
}

/// `/api/v1/streaming?stream=…`, the form WebSocket clients use, here over HTTP too.
async fn stream_named(State(state): State<StandIn>, RawQuery(query): RawQuery) -> Response {
    match query_param(query.as_deref(), "stream").as_deref() {
        Some("user") => open_stream(&state, StreamFilter::User),
        Some("user:notification") => open_stream(&state, StreamFilter::Notifications),
        _ => error(StatusCode::BAD_REQUEST, "Unknown stream type"),
    }
}

async fn unknown_route() -> Response {
    error(StatusCode::NOT_FOUND, NOT_FOUND)
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Which events a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamFilter {
    /// Home timeline and notifications.
    User,
    /// Notifications only.
    Notifications,
}

impl StreamFilter {
    fn carries(self, event: &StreamEvent) -> bool {
        self == StreamFilter::User || event.name == "notification"
    }
}

/// Keeps [`MastodonServer::streams`] right: counted while the body exists.
#[derive(Debug)]
struct OpenStream {
    state: StandIn,
}

impl OpenStream {
    fn open(state: &StandIn) -> OpenStream {
        state.lock().open_streams += 1;
        OpenStream {
            state: state.clone(),
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut inner = self.state.lock();
        inner.open_streams = inner.open_streams.saturating_sub(1);
    }
}

/// One open stream: what it still has to write.
#[derive(Debug)]
struct StreamFeed {
    events: broadcast::Receiver<StreamEvent>,
    closed: CancellationToken,
    heartbeat: tokio::time::Interval,
    filter: StreamFilter,
    greeted: bool,
    _open: OpenStream,
}

impl StreamFeed {
    /// The next chunk of the body: the `:)` greeting, then events and heartbeats until the
    /// stream is closed.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, StreamFeed)> {
        if !self.greeted {
            self.greeted = true;
            return Some((Ok(Bytes::from_static(b":)\n")), self));
        }
        loop {
            tokio::select! {
                _ = self.closed.cancelled() => return None,
                _ = self.heartbeat.tick() => {
                    return Some((Ok(Bytes::from_static(b":thump\n")), self));
                }
                received = self.events.recv() => match received {
                    Ok(event) if self.filter.carries(&event) => {
                        return Some((Ok(event.chunk()), self));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// Subscribes before answering, so an event pushed once the answer arrived is on the stream.
fn open_stream(state: &StandIn, filter: StreamFilter) -> Response {
    let (events, closed) = {
        let inner = state.lock();
        (inner.events.subscribe(), inner.streams_closed.clone())
    };
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = StreamFeed {
        events,
        closed,
        heartbeat,
        filter,
        greeted: false,
        _open: OpenStream::open(state),
    };
    let body = Body::from_stream(futures::stream::unfold(feed, StreamFeed::next_chunk));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Requests' parameters

/// A request's parameters as Mastodon (Rails) reads them: a JSON body, a form or a multipart
/// form, `name[]` keys gathered into an array under `name`.
#[derive(Debug, Default)]
struct Params(serde_json::Map<String, Value>);

impl Params {
    async fn read(headers: &HeaderMap, body: Bytes) -> Result<Params, String> {
        let content_type = content_type(headers);
        if content_type.starts_with("multipart/form-data") {
            let form = Multipart::read(&content_type, body).await?;
            return Ok(Params::from_pairs(form.fields));
        }
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())?;
            return Ok(Params::from_pairs(pairs));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(Params(
                map.into_iter()
                    .map(|(k, v)| (k.trim_end_matches("[]").to_owned(), v))
                    .collect(),
            )),
            Ok(_) => Err("the body is not a JSON object".to_owned()),
            Err(e) => Err(format!(
                "Error occurred while parsing request parameters: {e}"
            )),
        }
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        let mut map = serde_json::Map::new();
        for (key, value) in pairs {
            match key.strip_suffix("[]") {
                Some(name) => {
                    let entry = map
                        .entry(name.to_owned())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = entry {
                        items.push(Value::String(value));
                    }
                }
                None => {
                    map.insert(key, Value::String(value));
                }
            }
        }
        Params(map)
    }

    fn text(&self, name: &str) -> Option<String> {
        scalar_text(self.0.get(name)?)
    }

    fn flag(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "1" | "on"),
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
            _ => false,
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        match self.0.get(name) {
            Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(value) => scalar_text(value).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A multipart form: its text fields and its files.
#[derive(Debug, Default)]
struct Multipart {
    fields: Vec<(String, String)>,
    files: Vec<FilePart>,
}

#[derive(Debug)]
struct FilePart {
    name: String,
    file_name: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

impl Multipart {
    async fn read(content_type: &str, body: Bytes) -> Result<Multipart, String> {
        let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
        let stream = futures::stream::once(async move { Ok::<_, Infallible>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut form = Multipart::default();
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_owned();
            match field.file_name().map(str::to_owned) {
                Some(file_name) => {
                    let content_type = field.content_type().map(|m| m.essence_str().to_owned());
                    let bytes = field.bytes().await.map_err(|e| e.to_string())?;
                    form.files.push(FilePart {
                        name,
                        file_name,
                        content_type,
                        bytes: bytes.to_vec(),
                    });
                }
                None => {
                    let text = field.text().await.map_err(|e| e.to_string())?;
                    form.fields.push((name, text));
                }
            }
        }
        Ok(form)
    }
}

/// The form of a media upload.
#[derive(Debug)]
struct UploadForm {
    file_name: String,
    content_type: String,
    description: Option<String>,
    bytes: Vec<u8>,
}

impl UploadForm {
    async fn read(headers: &HeaderMap, body: Bytes) -> Result<UploadForm, Refusal> {
        let content_type = content_type(headers);
        if !content_type.starts_with("multipart/form-data") {
            return Err(unprocessable("Validation failed: File can't be blank"));
        }
        let form = Multipart::read(&content_type, body)
            .await
            .map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, &why))?;
        let description = form
            .fields
            .iter()
            .find(|(name, _)| name == "description")
            .map(|(_, value)| value.clone())
            .filter(|d| !d.is_empty());
        let Some(file) = form.files.into_iter().find(|f| f.name == "file") else {
            return Err(unprocessable("Validation failed: File can't be blank"));
        };
        // Mastodon sniffs the bytes; a declared type of "anything" is worth only the name.
        let content_type = file
            .content_type
            .filter(|t| t != "application/octet-stream")
            .unwrap_or_else(|| guess_content_type(&file.file_name).to_owned());
        Ok(UploadForm {
            file_name: file.file_name,
            content_type,
            description,
            bytes: file.bytes,
        })
    }
}

/// `GET /api/v1/notifications`' query.
#[derive(Debug, Default)]
struct NotificationQuery {
    max_id: Option<u64>,
    since_id: Option<u64>,
    min_id: Option<u64>,
    limit: usize,
    /// The `limit` as given, carried into the `Link` header's URLs.
    given_limit: Option<String>,
    types: Vec<String>,
    exclude_types: Vec<String>,
    account_id: Option<String>,
}

impl NotificationQuery {
    fn parse(query: Option<&str>) -> NotificationQuery {
        let pairs: Vec<(String, String)> = query
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let mut parsed = NotificationQuery::default();
        for (key, value) in pairs {
            match key.as_str() {
                "max_id" => parsed.max_id = parse_id(&value),
                "since_id" => parsed.since_id = parse_id(&value),
                "min_id" => parsed.min_id = parse_id(&value),
                "limit" => parsed.given_limit = Some(value),
                "types[]" | "types" => parsed.types.push(value),
                "exclude_types[]" | "exclude_types" => parsed.exclude_types.push(value),
                "account_id" => parsed.account_id = Some(value),
                _ => {}
            }
        }
        parsed.limit = parsed
            .given_limit
            .as_deref()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .map_or(DEFAULT_PAGE, |l| l.min(MAX_PAGE));
        parsed
    }

    fn admits(&self, notification: &NotificationRecord) -> bool {
        let id = notification.id;
        self.max_id.is_none_or(|max| id < max)
            && self.since_id.is_none_or(|since| id > since)
            && self.min_id.is_none_or(|min| id > min)
            && (self.types.is_empty() || self.types.contains(&notification.kind))
            && !self.exclude_types.contains(&notification.kind)
            && self
                .account_id
                .as_ref()
                .is_none_or(|a| *a == notification.account_id)
    }

    /// `rel="next"` (older: `max_id` = the page's oldest) and `rel="prev"` (newer: `min_id` =
    /// its newest), keeping the filters and limit; none for an empty page, as Mastodon.
    fn link_header(&self, base: &str, page: &[u64]) -> Option<String> {
        let (newest, oldest) = (page.first()?, page.last()?);
        let url = |cursor: &str, id: u64| {
            let mut pairs = vec![(cursor.to_owned(), id_string(id))];
            if let Some(limit) = &self.given_limit {
                pairs.push(("limit".to_owned(), limit.clone()));
            }
            pairs.extend(self.types.iter().map(|t| ("types[]".to_owned(), t.clone())));
            pairs.extend(
                self.exclude_types
                    .iter()
                    .map(|t| ("exclude_types[]".to_owned(), t.clone())),
            );
            if let Some(account) = &self.account_id {
                pairs.push(("account_id".to_owned(), account.clone()));
            }
            let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
            format!("{base}/api/v1/notifications?{query}")
        };
        Some(format!(
            "<{}>; rel=\"next\", <{}>; rel=\"prev\"",
            url("max_id", *oldest),
            url("min_id", *newest)
        ))
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// Answers

fn ok(body: Value) -> Response {
    axum::Json(body).into_response()
}

/// Mastodon's error entity: `{"error": …}`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A request refused before anything changed: kept small, as it travels in `Result`s.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: &str) -> Refusal {
        Refusal {
            status,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

fn unprocessable(message: &str) -> Refusal {
    Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Doorkeeper's answer to a bad token.
fn invalid_token() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, INVALID_TOKEN);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"Doorkeeper\", error=\"invalid_token\", \
             error_description=\"The access token is invalid\"",
        ),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Small pieces

fn id_string(id: u64) -> String {
    id.to_string()
}

fn parse_id(id: &str) -> Option<u64> {
    id.trim().parse().ok()
}

/// Mastodon's timestamps: milliseconds, UTC, `Z`.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn paragraphs_html(paragraphs: &[String]) -> String {
    paragraphs.iter().map(|p| format!("<p>{p}</p>")).collect()
}

/// A mention as Mastodon marks it up.
fn h_card(account: &AccountRecord, base: &str) -> String {
    format!(
        concat!(
            "<span class=\"h-card\" translate=\"no\">",
            "<a href=\"{}\" class=\"u-url mention\">@<span>{}</span></a></span>"
        ),
        escape(&account.profile_url(base)),
        escape(&account.username)
    )
}

fn is_url(word: &str) -> bool {
    ["https://", "http://"]
        .iter()
        .any(|scheme| word.len() > scheme.len() && word.starts_with(scheme))
}

/// A link as Mastodon marks it up: the scheme (and `www.`) invisible, the rest cut after 30
/// characters with an ellipsis.
fn link_html(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let prefix_end = if url[scheme_end..].starts_with("www.") {
        scheme_end + 4
    } else {
        scheme_end
    };
    let (prefix, rest) = url.split_at(prefix_end);
    let cut = rest
        .char_indices()
        .nth(30)
        .map_or(rest.len(), |(index, _)| index);
    let (shown, hidden) = rest.split_at(cut);
    let class = if hidden.is_empty() { "" } else { "ellipsis" };
    format!(
        concat!(
            "<a href=\"{}\" target=\"_blank\" rel=\"nofollow noopener noreferrer\" ",
            "translate=\"no\"><span class=\"invisible\">{}</span>",
            "<span class=\"{}\">{}</span><span class=\"invisible\">{}</span></a>"
        ),
        escape(url),
        escape(prefix),
        class,
        escape(shown),
        escape(hidden)
    )
}

/// A status's length as Mastodon counts it (roughly): characters, every URL as 23, a remote
/// mention without its domain.
fn countable_length(text: &str) -> usize {
    let whitespace = text.chars().filter(|c| c.is_whitespace()).count();
    let words: usize = text
        .split(char::is_whitespace)
        .map(|word| {
            if is_url(word) {
                CHARACTERS_PER_URL
            } else if let Some(handle) = word.strip_prefix('@')
                && let Some((user, _domain)) = handle.split_once('@')
            {
                1 + user.chars().count()
            } else {
                word.chars().count()
            }
        })
        .sum();
    whitespace + words
}

/// A file name fit for a URL path segment.
fn safe_file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "file".to_owned()
    } else {
        safe
    }
}

fn guess_content_type(file_name: &str) -> &'static str {
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "m4a" => "audio/mp4",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The MediaAttachment `type` of an upload (a GIF becomes `gifv`, as Mastodon converts it);
/// `None`: Mastodon refuses the file.
fn media_kind(content_type: &str) -> Option<&'static str> {
    match content_type {
        "image/gif" => Some("gifv"),
        t if t.starts_with("image/") => Some("image"),
        t if t.starts_with("video/") => Some("video"),
        t if t.starts_with("audio/") => Some("audio"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The URL of the `Link` header's entry with this `rel`.
    fn link(response: &reqwest::Response, rel: &str) -> Option<String> {
        let header = response.headers().get("link")?.to_str().ok()?;
        header.split(',').find_map(|entry| {
            let (url, params) = entry.split_once(';')?;
            params
                .contains(&format!("rel=\"{rel}\""))
                .then(|| url.trim().trim_matches(['<', '>']).to_owned())
        })
    }

    async fn get(server: &MastodonServer, url: &str) -> reqwest::Response {
        client()
            .get(url)
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
    }

    fn status_ids(page: &[Value]) -> Vec<String> {
        page.iter()
            .map(|n| n["status"]["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Walks pages from `url` following `rel`; returns each page's status ids.
    async fn walk(server: &MastodonServer, mut url: String, rel: &str) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        loop {
            let response = get(server, &url).await;
            assert_eq!(response.status(), 200);
            let next = link(&response, rel);
            let page: Vec<Value> = response.json().await.unwrap();
            if page.is_empty() {
                assert!(next.is_none(), "an empty page has no Link header");
                return pages;
            }
            let ids: Vec<u64> = page
                .iter()
                .map(|n| n["id"].as_str().unwrap().parse().unwrap())
                .collect();
            assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
            pages.push(status_ids(&page));
            url = next.unwrap();
        }
    }

    #[tokio::test]
    async fn notifications_page_through_link_headers_both_ways() {
        let server = MastodonServer::start().await;
        let bob = server.customer("bob", "Bob");
        let ann = server.remote_customer("ann", "other.example", "Ann");
        let mentions: Vec<String> = (0..120)
            .map(|i| {
                let from = if i % 2 == 0 { &bob } else { &ann };
                server.mention(from, &format!("order #{i} <late>"), "direct", None)
            })
            .collect();
        server.notify("follow", &bob, None);
        assert!(mentions.iter().all(|id| id.len() == mentions[0].len()));

        // Backwards from the newest, following rel="next" (max_id).
        let url = format!(
            "{}/api/v1/notifications?limit=40&types[]=mention",
            server.url
        );
        let pages = walk(&server, url, "next").await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [40, 40, 40]);
        let newest_first: Vec<String> = mentions.iter().rev().cloned().collect();
        assert_eq!(pages.concat(), newest_first);

        // Forwards from the beginning, following rel="prev" (min_id).
        let url = format!(
            "{}/api/v1/notifications?limit=40&types[]=mention&min_id=0",
            server.url
        );
        let pages = walk(&server, url, "prev").await;
        assert_eq!(pages.len(), 3);
        let oldest_first: Vec<String> = pages
            .into_iter()
            .flat_map(|page| page.into_iter().rev())
            .collect();
        assert_eq!(oldest_first, mentions);
        assert_eq!(server.requests("/api/v1/notifications"), 8);

        // Without types[] the follow is there; the default page is 40.
        let response = get(&server, &format!("{}/api/v1/notifications", server.url)).await;
        let page: Vec<Value> = response.json().await.unwrap();
        assert_eq!(page.len(), 40);
        assert_eq!(page[0]["type"], "follow");
        let status = &page[1]["status"];
        assert_eq!(status["account"]["acct"], "ann@other.example");
        let content = status["content"].as_str().unwrap();
        assert!(
            content.starts_with("<p><span class=\"h-card\" translate=\"no\"><a href=\""),
            "{content}"
        );
        assert!(content.ends_with("@<span>acme</span></a></span> order #119 &lt;late&gt;</p>"));
        assert_eq!(status["mentions"][0]["acct"], OWN_ACCT);
        server.stop().await;
    }

    #[tokio::test]
    async fn an_idempotency_key_posts_once() {
        let server = MastodonServer::start().await;
        let bob = server.customer("bob", "Bob");
        let asked = server.mention(&bob, "where is my parcel?", "direct", None);
        let post = |key: &'static str, body: Value| {
            client()
                .post(format!("{}/api/v1/statuses", server.url))
                .bearer_auth(&server.token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
        };
        let reply = json!({"status": "@bob it left today: https://track.example/p/1",
                           "in_reply_to_id": asked, "visibility": "direct"});
        let first: Value = post("k-1", reply.clone())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let again = post("k-1", reply.clone()).await.unwrap();
        assert_eq!(again.status(), 200);
        let again: Value = again.json().await.unwrap();
        assert_eq!(first["id"], again["id"]);
        assert_eq!(server.posted().len(), 1);

        // Form-encoded, another key: another status.
        let form = client()
            .post(format!("{}/api/v1/statuses", server.url))
            .bearer_auth(&server.token)
            .header("Idempotency-Key", "k-2")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "status=thanks&in_reply_to_id={asked}&visibility=direct"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), 200);
        let posted = server.posted();
        assert_eq!(posted.len(), 2);
        assert_eq!(posted[0].idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(posted[0].in_reply_to_id.as_deref(), Some(asked.as_str()));
        assert_eq!(posted[1].visibility, "direct");

        // The posted status exists, as Mastodon renders it.
        let id = first["id"].as_str().unwrap();
        let status: Value = get(&server, &format!("{}/api/v1/statuses/{id}", server.url))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(status["visibility"], "direct");
        assert_eq!(status["in_reply_to_id"], asked.as_str());
        assert_eq!(status["in_reply_to_account_id"], bob.id.as_str());
        assert_eq!(status["mentions"][0]["acct"], "bob");
        assert!(
            status["content"]
                .as_str()
                .unwrap()
                .contains("<span class=\"invisible\">https://</span>")
        );

        // Refusals: too long, unknown media, a reply to a deleted status.
        let long = post("k-3", json!({"status": "x".repeat(501)}))
            .await
            .unwrap();
        assert_eq!(long.status(), 422);
        let long: Value = long.json().await.unwrap();
        assert_eq!(
            long["error"],
            "Validation failed: Text character limit of 500 exceeded"
        );
        let media = post("k-4", json!({"status": "see", "media_ids": ["42"]}))
            .await
            .unwrap();
        assert_eq!(media.status(), 422);
        server.delete(&asked);
        let gone = get(&server, &format!("{}/api/v1/statuses/{asked}", server.url)).await;
        assert_eq!(gone.status(), 404);
        assert_eq!(
            gone.json::<Value>().await.unwrap()["error"],
            "Record not found"
        );
        let late = post("k-5", json!({"status": "hello?", "in_reply_to_id": asked}))
            .await
            .unwrap();
        assert_eq!(late.status(), 404);
        let notifications = get(&server, &format!("{}/api/v1/notifications", server.url)).await;
        assert_eq!(notifications.json::<Vec<Value>>().await.unwrap().len(), 0);
        assert_eq!(server.posted().len(), 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn too_many_requests_then_success_then_a_revoked_token() {
        let server = MastodonServer::start().await;
        let url = format!("{}/api/v1/accounts/verify_credentials", server.url);
        let before = Utc::now();
        server.rate_limit(2, 60);
        for _ in 0..2 {
            let response = get(&server, &url).await;
            assert_eq!(response.status(), 429);
            let headers = response.headers();
            assert_eq!(headers["x-ratelimit-remaining"], "0");
            assert_eq!(headers["x-ratelimit-limit"], "300");
            let reset = headers["x-ratelimit-reset"].to_str().unwrap();
            let reset = DateTime::parse_from_rfc3339(reset).unwrap();
            assert!(reset >= before + TimeDelta::seconds(59), "{reset}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "Too many requests");
        }
        let response = get(&server, &url).await;
        assert_eq!(response.status(), 200);
        let remaining: u32 = response.headers()["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(remaining < RATE_LIMIT);
        let me: Value = response.json().await.unwrap();
        assert_eq!(
            (me["id"].as_str(), me["acct"].as_str()),
            (Some(OWN_ID), Some(OWN_ACCT))
        );
        assert_eq!(server.requests("/api/v1/accounts/verify_credentials"), 3);

        server.revoke_token();
        let response = get(&server, &url).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "The access token is invalid");
        server.stop().await;
    }

    /// Reads the stream until `needle` arrived; returns all read so far.
    async fn read_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !seen.contains(needle) {
                let chunk = response.chunk().await.unwrap().unwrap();
                seen.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} on the stream; got {seen:?}"));
    }

    #[tokio::test]
    async fn the_user_stream_carries_notifications_and_deletes() {
        let server = MastodonServer::start().await;
        let bob = server.customer("bob", "Bob");
        let mut stream = client()
            .get(format!(
                "{}/api/v1/streaming?stream=user&access_token={}",
                server.url, server.token
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        assert_eq!(server.streams(), 1);
        let id = server.mention(&bob, "hi there", "public", None);
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, "event: notification\n").await;
        read_until(&mut stream, &mut seen, "\n\n").await;
        let data = seen
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap();
        let notification: Value = serde_json::from_str(data).unwrap();
        assert_eq!(notification["type"], "mention");
        assert_eq!(notification["status"]["id"], id.as_str());
        server.delete(&id);
        read_until(
            &mut stream,
            &mut seen,
            &format!("event: delete\ndata: {id}\n\n"),
        )
        .await;

        server.set_streaming(false);
        let end = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await;
        assert!(matches!(end, Ok(Ok(None))), "the stream ends: {end:?}");
        let health = client()
            .get(format!("{}/api/v1/streaming/health", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 503);
        server.stop().await;
    }
}
