//! Who is calling: an API token (`Authorization: Bearer …`) or a browser session cookie.
//!
//! One middleware resolves the caller for every route and refuses a state-changing request made
//! with the session cookie unless it carries the session's CSRF token (header `X-CSRF-Token`, or
//! the `_csrf` field of a form). Token requests need no CSRF token: a browser never adds a bearer
//! header on its own. Handlers then ask for the caller with an extractor: [`CurrentAgent`] and
//! [`AdminAgent`] for the JSON API (401/403 as JSON), `Viewer`/`AdminViewer` for pages.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use inbox_core::model::{Agent, Role};
use inbox_core::passwords::VerifierPool;
use tokio::sync::broadcast;

use super::client_addr::TrustedProxies;
use super::sign_in_limits::SignInLimiter;
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
    pub limiter: SignInLimiter,
    /// Where passwords are checked: a bounded number at a time.
    pub verifier: VerifierPool,
    /// Reverse proxies whose forwarding headers give the client's address.
    pub trusted_proxies: TrustedProxies,
    /// Told when sessions or tokens end (sign-out, an agent disabled), so open live streams
    /// check whether their caller is still signed in.
    pub ended: broadcast::Sender<()>,
}

impl AuthSettings {
    pub fn new(secure_cookies: bool) -> Self {
        AuthSettings {
            secure_cookies,
            session_ttl: chrono::Duration::days(7),
            limiter: SignInLimiter::default(),
            verifier: VerifierPool::for_this_machine(),
            trusted_proxies: TrustedProxies::default(),
            ended: broadcast::channel(16).0,
        }
    }

    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Sessions or tokens ended: live streams re-check their caller.
    pub fn announce_ended(&self) {
        let _ = self.ended.send(());
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

/// The caller of a request with these headers, if they are still signed in (or their token is
/// still valid). Errors are a store failure or a bad bearer token.
pub async fn resolve(
    state: &WebState,
    headers: &HeaderMap,
) -> Result<Option<Authenticated>, ApiError> {
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
        // Sign-in has its own double-submit token: a stale session must not block it. A survey
        // answer is the customer's, authorised by its link's token, never by a session.
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
            || parts.uri.path() == "/login"
            || parts.uri.path().starts_with("/survey/");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
