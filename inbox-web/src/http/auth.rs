//! Who is calling: an API token (`Authorization: Bearer …`) or a browser session cookie.
//!
//! One middleware resolves the caller for every route and refuses a state-changing request made
//! with the session cookie unless it carries the session's CSRF token (header `X-CSRF-Token`, or
//! the `_csrf` field of a form). Token requests need no CSRF token: a browser never adds a bearer
//! header on its own. Handlers then ask for the caller with an extractor: [`CurrentAgent`] and
//! [`AdminAgent`] for the JSON API (401/403 as JSON), `Viewer`/`AdminViewer` for pages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use inbox_core::model::{Agent, Role};

use super::{ApiError, WebState};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "inbox_session";
/// Name of the header carrying the CSRF token on requests made by the page's script.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Name of the form field carrying the CSRF token on plain form posts.
pub const CSRF_FIELD: &str = "_csrf";
/// Forms are small; anything bigger is not a form post of ours.
const MAX_FORM: usize = 256 * 1024;

/// Sign-in settings shared by every handler.
#[derive(Debug)]
pub struct AuthSettings {
    /// Mark cookies `Secure` (the public URL is https).
    pub secure_cookies: bool,
    pub session_ttl: chrono::Duration,
    pub limiter: LoginLimiter,
}

impl AuthSettings {
    pub fn new(secure_cookies: bool) -> Self {
        AuthSettings {
            secure_cookies,
            session_ttl: chrono::Duration::days(7),
            limiter: LoginLimiter::default(),
        }
    }

    /// A cookie with the attributes every cookie of ours has.
    pub fn cookie(&self, name: &'static str, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure_cookies)
            .max_age(
                cookie::time::Duration::try_from(max_age).unwrap_or(cookie::time::Duration::ZERO),
            )
            .build()
    }
}

/// The resolved caller, put in the request's extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub agent: Agent,
    /// The session's CSRF token; `None` when the caller used an API token.
    pub csrf_token: Option<String>,
}

/// The value of one cookie of the request.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The session token of the request's cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, SESSION_COOKIE).filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn resolve(state: &WebState, headers: &HeaderMap) -> Result<Option<Authenticated>, ApiError> {
    if let Some(token) = bearer(headers) {
        // A bad token is an error even with a valid cookie: the caller meant the token.
        let agent = state
            .store
            .agent_by_token(token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        return Ok(Some(Authenticated {
            agent,
            csrf_token: None,
        }));
    }
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    Ok(state
        .store
        .session(token)
        .await?
        .map(|session| Authenticated {
            agent: session.agent,
            csrf_token: Some(session.csrf_token),
        }))
}

/// Resolves the caller and enforces CSRF tokens on cookie-authenticated writes.
pub async fn authenticate(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match resolve(&state, &parts.headers).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let mut body = body;
    if let Some(caller) = &caller {
        // Sign-in has its own double-submit token: a stale session must not block it.
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
            || parts.uri.path() == "/login";
        if let (false, Some(expected)) = (safe, caller.csrf_token.as_deref()) {
            let (verdict, rebuilt) = check_csrf(&parts.headers, body, expected).await;
            body = rebuilt;
            if !verdict {
                return csrf_refused(&parts);
            }
        }
    }
    if let Some(caller) = caller {
        parts.extensions.insert(caller);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// True when the header or the form field holds the token; gives the body back for the handler.
async fn check_csrf(headers: &HeaderMap, body: Body, expected: &str) -> (bool, Body) {
    if let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return (same_secret(sent, expected), body);
    }
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (false, body);
    }
    let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
        return (false, Body::empty());
    };
    let ok = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| {
            fields
                .into_iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| same_secret(&v, expected))
        })
        .unwrap_or(false);
    (ok, Body::from(bytes))
}

fn csrf_refused(parts: &Parts) -> Response {
    if parts.uri.path().starts_with("/api/") {
        let body = serde_json::json!({
            "error": "csrf",
            "message": "missing or wrong CSRF token (send the X-CSRF-Token header)",
        });
        (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            axum::response::Html(
                "<!doctype html><title>Form expired</title><p role=\"alert\">This form has expired \
                 (missing or wrong CSRF token). Go back, reload the page and try again.</p>",
            ),
        )
            .into_response()
    }
}

/// The agent making an API request; anonymous requests get 401.
#[derive(Debug, Clone)]
pub struct CurrentAgent(pub Agent);

impl FromRequestParts<WebState> for CurrentAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &WebState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Authenticated>()
            .map(|a| CurrentAgent(a.agent.clone()))
            .ok_or(ApiError::Unauthorized)
    }
}

/// An admin making an API request: 401 when anonymous, 403 for agents.
#[derive(Debug, Clone)]
pub struct AdminAgent(pub Agent);

impl FromRequestParts<WebState> for AdminAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, ApiError> {
        let CurrentAgent(agent) = CurrentAgent::from_request_parts(parts, state).await?;
        if agent.role != Role::Admin {
            return Err(ApiError::Forbidden);
        }
        Ok(AdminAgent(agent))
    }
}

/// Failed sign-ins per email address and per client address, in a sliding window. In memory:
/// each web instance counts on its own, which still bounds guessing to instances × limit.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    /// Failures allowed per email address in the window.
    pub const PER_ACCOUNT: usize = 5;
    /// Failures allowed per client address in the window.
    pub const PER_CLIENT: usize = 20;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    fn keys(email: &str, client: Option<IpAddr>) -> [(String, usize); 2] {
        [
            (
                format!("account:{}", email.trim().to_lowercase()),
                Self::PER_ACCOUNT,
            ),
            (
                format!(
                    "client:{}",
                    client.map(|c| c.to_string()).unwrap_or_default()
                ),
                Self::PER_CLIENT,
            ),
        ]
    }

    /// When another attempt may be made, if it may not be made now.
    pub fn blocked(&self, email: &str, client: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for (key, limit) in Self::keys(email, client) {
            if let Some(times) = map.get_mut(&key) {
                times.retain(|t| now.duration_since(*t) < Self::WINDOW);
                if times.len() >= limit
                    && let Some(first) = times.first()
                {
                    let left = Self::WINDOW.saturating_sub(now.duration_since(*first));
                    wait = Some(wait.map_or(left, |w: Duration| w.max(left)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, email: &str, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Bounded memory under a flood of distinct keys: forget what is outside the window.
            map.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < Self::WINDOW));
        }
        for (key, _) in Self::keys(email, client) {
            map.entry(key).or_default().push(now);
        }
    }

    pub fn succeeded(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("account:{}", email.trim().to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_the_account_limit_and_forgets_on_success() {
        let limiter = LoginLimiter::default();
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..LoginLimiter::PER_ACCOUNT {
            assert!(limiter.blocked("A@x.org", ip).is_none());
            limiter.failed("a@x.org", ip);
        }
        assert!(limiter.blocked("a@X.org", ip).is_some());
        assert!(limiter.blocked("b@x.org", ip).is_none());
        limiter.succeeded("a@x.org");
        assert!(limiter.blocked("a@x.org", ip).is_none());
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
