//! The Mastodon REST calls the channel makes, over the workspace's HTTP client, with the
//! instance's rate limits honoured: every answer's `X-RateLimit-Remaining` / `X-RateLimit-Reset`
//! are kept, and a call made while the budget is spent waits for the reset (up to
//! [`MAX_WAIT`]) instead of earning a 429; a 429 says until when to wait.
//!
//! Notifications are read as raw JSON, one value each, so one malformed notification is
//! dead-lettered with its reason instead of failing the page.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::de::DeserializeOwned;

use super::config::MastodonConfig;
use super::parse::Account;

/// The longest wait for a rate-limit reset taken inside one call.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How many 429s one call sits out before it fails.
const MAX_RATE_LIMITED: u32 = 5;
/// Mastodon's own default when an instance does not say.
const DEFAULT_MAX_CHARACTERS: usize = 500;
/// The biggest media file taken from a status.
pub const MAX_MEDIA: usize = 40 * 1024 * 1024;

/// A failed call: the instance's answer (status and `error`), or the transport's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", status.map(|c| format!("{c} ")).unwrap_or_default())]
pub struct ApiFailure {
    pub status: Option<u16>,
    pub message: String,
    /// Rate limited: when the budget is back.
    pub retry_at: Option<DateTime<Utc>>,
}

impl ApiFailure {
    fn transport(e: impl std::fmt::Display) -> ApiFailure {
        ApiFailure {
            status: None,
            message: e.to_string(),
            retry_at: None,
        }
    }

    /// The token is wrong or revoked: retrying cannot help.
    pub fn unauthorized(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }

    /// Worth trying again later (transport, 5xx, 429).
    pub fn transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s == 429 || s >= 500,
        }
    }
}

/// One page of notifications, newest first as the API gives them, with its `Link` neighbours.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<serde_json::Value>,
    /// `rel="next"`: older notifications.
    pub next: Option<String>,
    /// `rel="prev"`: newer notifications.
    pub prev: Option<String>,
}

/// A status to post.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewStatus<'a> {
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to_id: Option<&'a str>,
    pub visibility: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub media_ids: &'a [String],
}

/// The rate-limit budget the instance last announced.
#[derive(Debug, Default, Clone, Copy)]
struct Budget {
    remaining: Option<u64>,
    reset: Option<DateTime<Utc>>,
}

/// A client for one channel's account.
#[derive(Debug)]
pub struct MastodonApi {
    client: reqwest::Client,
    base: String,
    token: String,
    budget: Mutex<Budget>,
}

impl MastodonApi {
    pub fn new(config: &MastodonConfig, token: String) -> Result<MastodonApi, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("inbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(MastodonApi {
            client,
            base: config.base().to_owned(),
            token,
            budget: Mutex::new(Budget::default()),
        })
    }

    /// The instance's domain, its port included when it has one (local accounts' handles name
    /// it).
    pub fn host(&self) -> String {
        let Ok(url) = reqwest::Url::parse(&self.base) else {
            return String::new();
        };
        match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => String::new(),
        }
    }

    /// `GET /api/v1/accounts/verify_credentials`: the account the token belongs to.
    pub async fn verify_credentials(&self) -> Result<Account, ApiFailure> {
        let url = format!("{}/api/v1/accounts/verify_credentials", self.base);
        self.get_json(&url).await
    }

    /// The instance's status length limit (`/api/v2/instance`, then `/api/v1/instance`:
    /// `configuration.statuses.max_characters`), 500 when it does not say.
    pub async fn max_characters(&self) -> Result<usize, ApiFailure> {
        for version in ["v2", "v1"] {
            let url = format!("{}/api/{version}/instance", self.base);
            match self.get_json::<serde_json::Value>(&url).await {
                Ok(instance) => {
                    let max = instance
                        .pointer("/configuration/statuses/max_characters")
                        .and_then(serde_json::Value::as_u64)
                        .or_else(|| instance.get("max_toot_chars").and_then(|v| v.as_u64()));
                    return Ok(max.map_or(DEFAULT_MAX_CHARACTERS, |m| m as usize));
                }
                Err(e) if e.status == Some(404) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(DEFAULT_MAX_CHARACTERS)
    }

    /// The first page of mention notifications: newer than `min_id` (oldest first page above
    /// it), or the newest ones.
    pub async fn notifications(
        &self,
        types: &[&str],
        min_id: Option<&str>,
    ) -> Result<Page, ApiFailure> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/notifications", self.base))
            .map_err(ApiFailure::transport)?;
        {
            let mut query = url.query_pairs_mut();
            for t in types {
                query.append_pair("types[]", t);
            }
            if let Some(min_id) = min_id {
                query.append_pair("min_id", min_id);
            }
            query.append_pair("limit", "40");
        }
        self.page(url.as_str()).await
    }

    /// The page a `Link` header named (only on this instance: the token goes with it).
    pub async fn page(&self, url: &str) -> Result<Page, ApiFailure> {
        if !url.starts_with(&format!("{}/", self.base)) {
            return Err(ApiFailure {
                status: None,
                message: format!("a Link to another host refused: {url}"),
                retry_at: None,
            });
        }
        let response = self.send(self.client.get(url)).await?;
        let (next, prev) = links(response.headers());
        let items = read_json(response).await?;
        Ok(Page { items, next, prev })
    }

    /// `GET /api/v1/statuses/{id}`; `None` when it is gone (deleted, or not visible to us).
    pub async fn status(&self, id: &str) -> Result<Option<serde_json::Value>, ApiFailure> {
        let url = format!("{}/api/v1/statuses/{}", self.base, encode(id));
        match self.get_json(&url).await {
            Ok(status) => Ok(Some(status)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/statuses` with our message id as the `Idempotency-Key`, so a retried post
    /// is not posted twice.
    pub async fn post_status(
        &self,
        status: &NewStatus<'_>,
        idempotency_key: &str,
    ) -> Result<serde_json::Value, ApiFailure> {
        let url = format!("{}/api/v1/statuses", self.base);
        let request = self
            .client
            .post(url)
            .header("Idempotency-Key", idempotency_key)
            .json(status);
        read_json(self.send(request).await?).await
    }

    /// `POST /api/v2/media`: the id of the uploaded file.
    pub async fn upload_media(
        &self,
        name: &str,
        content_type: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<String, ApiFailure> {
        let url = format!("{}/api/v2/media", self.base);
        let mut part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        if let Some(t) = content_type {
            part = part.mime_str(t).map_err(ApiFailure::transport)?;
        }
        let form = reqwest::multipart::Form::new().part("file", part);
        let media: serde_json::Value =
            read_json(self.send(self.client.post(url).multipart(form)).await?).await?;
        media
            .get("id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiFailure::transport("media upload answered without an id"))
    }

    /// A status's media file (on the instance or a remote one: no token goes with it there).
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, ApiFailure> {
        let mut request = self.client.get(url).timeout(Duration::from_secs(120));
        if url.starts_with(&format!("{}/", self.base)) {
            request = request.header(AUTHORIZATION, format!("Bearer {}", self.token));
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let response = check(response).await?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MEDIA as u64)
        {
            return Err(too_big());
        }
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if bytes.len() > MAX_MEDIA {
            return Err(too_big());
        }
        Ok(bytes.to_vec())
    }

    /// `GET /api/v1/streaming/user`: the open event stream (server-sent events).
    pub async fn stream(&self) -> Result<reqwest::Response, ApiFailure> {
        let url = format!("{}/api/v1/streaming/user", self.base);
        let request = self
            .client
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = request.send().await.map_err(|e| self.transport(e))?;
        check(response).await
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ApiFailure> {
        read_json(self.send(self.client.get(url)).await?).await
    }

    /// Sends with the token, after waiting out a spent budget; keeps the budget the answer
    /// announces. A 429 whose reset is near is waited out and the call made again (a few
    /// times); a later reset is the caller's to wait for.
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiFailure> {
        let mut limited = 0;
        loop {
            self.wait_for_budget().await?;
            // A body that cannot be sent twice (a file upload) is not tried again here.
            let again = request.try_clone();
            let response = request
                .header(AUTHORIZATION, format!("Bearer {}", self.token))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map_err(|e| self.transport(e))?;
            self.keep_budget(response.headers());
            if response.status().as_u16() != 429 {
                return check(response).await;
            }
            let reset = self
                .budget()
                .reset
                .or_else(|| retry_after(response.headers()));
            let failure = rate_limited(reset);
            let near = reset.is_some_and(|at| {
                at - Utc::now() <= chrono::Duration::from_std(MAX_WAIT).unwrap_or_default()
            });
            limited += 1;
            match again {
                Some(next) if near && limited < MAX_RATE_LIMITED => {
                    let wait = failure
                        .retry_at
                        .and_then(|at| (at - Utc::now()).to_std().ok())
                        .unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_millis(200));
                    tracing::debug!(?wait, "Rate limited; waiting for the reset.");
                    tokio::time::sleep(wait).await;
                    request = next;
                }
                _ => return Err(failure),
            }
        }
    }

    /// Waits out a spent budget whose reset is near; a later one is a failure to wait for.
    async fn wait_for_budget(&self) -> Result<(), ApiFailure> {
        if let Some(reset) = self.spent_until() {
            let wait = (reset - Utc::now()).to_std().unwrap_or_default();
            if wait > MAX_WAIT {
                return Err(rate_limited(Some(reset)));
            }
            tracing::debug!(?wait, "Waiting for the rate limit to reset.");
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    fn budget(&self) -> Budget {
        *self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the budget is spent: the reset time.
    fn spent_until(&self) -> Option<DateTime<Utc>> {
        let budget = self.budget();
        match (budget.remaining, budget.reset) {
            (Some(0), Some(reset)) if reset > Utc::now() => Some(reset),
            _ => None,
        }
    }

    fn keep_budget(&self, headers: &HeaderMap) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.trim().parse().ok());
        let reset = header("x-ratelimit-reset")
            .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
            .map(|t| t.with_timezone(&Utc));
        if remaining.is_some() || reset.is_some() {
            let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            budget.remaining = remaining;
            budget.reset = reset;
        }
    }

    /// A transport error, without the token (reqwest's errors may name the URL, never headers,
    /// but be sure).
    fn transport(&self, e: reqwest::Error) -> ApiFailure {
        ApiFailure::transport(e.to_string().replace(&self.token, "<token>"))
    }
}

fn too_big() -> ApiFailure {
    ApiFailure {
        status: Some(413),
        message: format!("a media file over {MAX_MEDIA} bytes"),
        retry_at: None,
    }
}

fn rate_limited(reset: Option<DateTime<Utc>>) -> ApiFailure {
    ApiFailure {
        status: Some(429),
        message: match reset {
            Some(at) => format!("rate limited until {}", at.to_rfc3339()),
            None => "rate limited".to_owned(),
        },
        retry_at: Some(reset.unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(60))),
    }
}

fn retry_after(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let seconds: i64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Utc::now() + chrono::Duration::seconds(seconds))
}

/// A non-2xx answer as a failure with the instance's `error` text.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, ApiFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(ApiFailure {
        status: Some(status.as_u16()),
        message,
        retry_at: None,
    })
}

async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiFailure> {
    let bytes = response.bytes().await.map_err(ApiFailure::transport)?;
    serde_json::from_slice(&bytes).map_err(|e| ApiFailure::transport(format!("answer: {e}")))
}

/// `Link: <…?max_id=1>; rel="next", <…?min_id=9>; rel="prev"` → (next, prev).
fn links(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let mut next = None;
    let mut prev = None;
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let Some(url) = parts
                .next()
                .map(str::trim)
                .and_then(|u| u.strip_prefix('<'))
                .and_then(|u| u.strip_suffix('>'))
            else {
                continue;
            };
            for param in parts {
                match param.trim().replace(' ', "").as_str() {
                    r#"rel="next""# | "rel=next" => next = Some(url.to_owned()),
                    r#"rel="prev""# | "rel=prev" => prev = Some(url.to_owned()),
                    _ => {}
                }
            }
        }
    }
    (next, prev)
}

/// A path segment made of an id the instance gave.
fn encode(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_give_both_neighbours() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            r#"<https://m.example/api/v1/notifications?max_id=34975535>; rel="next", <https://m.example/api/v1/notifications?min_id=34975861>; rel="prev""#
                .parse()
                .unwrap(),
        );
        let (next, prev) = links(&headers);
        assert_eq!(
            next.as_deref(),
            Some("https://m.example/api/v1/notifications?max_id=34975535")
        );
        assert_eq!(
            prev.as_deref(),
            Some("https://m.example/api/v1/notifications?min_id=34975861")
        );
        assert_eq!(links(&HeaderMap::new()), (None, None));
    }

    #[test]
    fn failures_say_whether_to_retry() {
        let failure = |status| ApiFailure {
            status,
            message: String::new(),
            retry_at: None,
        };
        assert!(failure(Some(401)).unauthorized());
        assert!(!failure(Some(401)).transient());
        assert!(failure(Some(503)).transient());
        assert!(failure(Some(429)).transient());
        assert!(failure(None).transient());
        assert!(!failure(Some(422)).transient());
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(encode("110000/../../x?y"), "110000xy");
    }
}
