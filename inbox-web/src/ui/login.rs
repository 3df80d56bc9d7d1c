//! Sign-in and sign-out. The sign-in form is protected against login CSRF by a double-submit
//! cookie (there is no session yet to hold a token); attempts are rate limited
//! ([`crate::http::sign_in_limits`]) and a browser that signed in before carries a device cookie
//! ([`crate::http::device_cookie`]) that keeps it out of others' limits.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Form;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::header::{RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::Utc;
use inbox_core::passwords;
use inbox_core::store::SessionOrigin;
use serde::Deserialize;

use super::view::LoginPage;
use super::{UiResult, back_to, render};
use crate::http::WebState;
use crate::http::auth::{SESSION_COOKIE, cookie_value, same_secret, session_token};
use crate::http::device_cookie::{self, DEVICE_COOKIE, DEVICE_TTL};
use crate::http::sign_in_limits::Attempt;

const LOGIN_COOKIE: &str = "inbox_login";

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The form, with a fresh double-submit token in a cookie and in the form.
fn form_response(
    state: &WebState,
    next: String,
    email: String,
    error: Option<String>,
    status: StatusCode,
) -> UiResult {
    let csrf = new_token();
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        email,
        error,
    };
    let mut response = render(&page)?;
    *response.status_mut() = status;
    let cookie = state
        .auth
        .cookie(LOGIN_COOKIE, csrf, Duration::from_secs(3600));
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(response)
}

pub async fn form(State(state): State<WebState>, Query(q): Query<NextQuery>) -> UiResult {
    form_response(
        &state,
        q.next.unwrap_or_default(),
        String::new(),
        None,
        StatusCode::OK,
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// An Argon2id hash of a random password: verifying against it costs what a real check costs,
/// so a wrong email cannot be told from a wrong password by timing.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| passwords::hash(&passwords::generate()).unwrap_or_default())
}

pub async fn submit(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> UiResult {
    let cookie_token = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie_token.is_empty() || !same_secret(cookie_token, &form.csrf) {
        return form_response(
            &state,
            form.next,
            form.email,
            Some("The sign-in form expired. Please try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let client = state.auth.trusted_proxies.client(peer, &headers);
    let candidate = state.store.login_candidate(&form.email).await?;
    let device = candidate.as_ref().and_then(|(agent, hash)| {
        cookie_value(&headers, DEVICE_COOKIE)
            .and_then(|value| device_cookie::verify(value, hash, agent.id, Utc::now()))
    });
    let attempt = Attempt {
        email: form.email.clone(),
        client,
        device,
    };
    // Counted before the check: parallel guesses cannot all pass a "blocked?" test first.
    let reservation = match state.auth.limiter.reserve(&attempt) {
        Ok(reservation) => reservation,
        Err(wait) => {
            tracing::info!(%client, "Sign-in refused: too many failed attempts.");
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let page = form_response(
                &state,
                form.next,
                form.email,
                Some(format!(
                    "Too many failed attempts. Try again in {minutes} minute(s)."
                )),
                StatusCode::TOO_MANY_REQUESTS,
            );
            return page.map(|r| retry_after(r, wait));
        }
    };
    let (agent, hash) = match candidate {
        Some((agent, hash)) => (Some(agent), hash),
        None => (None, decoy_hash().to_owned()),
    };
    let verified = match state
        .auth
        .verifier
        .verify(form.password.clone(), hash.clone())
        .await
    {
        Ok(verified) => verified,
        Err(passwords::Busy) => {
            state.auth.limiter.release(reservation);
            tracing::warn!(%client, "Sign-in refused: too many password checks in progress.");
            let page = form_response(
                &state,
                form.next,
                form.email,
                Some("Too many sign-ins at once. Try again in a moment.".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            );
            return page.map(|r| retry_after(r, Duration::from_secs(1)));
        }
    };
    let Some(agent) = agent.filter(|_| verified) else {
        tracing::info!(%client, "Sign-in failed.");
        return form_response(
            &state,
            form.next,
            form.email,
            Some("Wrong email or password.".into()),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.auth.limiter.succeeded(reservation);
    let origin = SessionOrigin {
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client: Some(client.to_string()),
    };
    let (token, _) = state
        .store
        .create_session_from(agent.id, state.auth.session_ttl, &origin)
        .await?;
    tracing::info!(agent_id = %agent.id, %client, "Signed in.");
    let ttl = state.auth.session_ttl.to_std().unwrap_or(Duration::ZERO);
    let device = device_cookie::issue(&hash, agent.id, Utc::now());
    let mut response = back_to(Some(&form.next), "/inbox");
    for cookie in [
        state.auth.cookie(SESSION_COOKIE, token, ttl),
        state
            .auth
            .cookie(LOGIN_COOKIE, String::new(), Duration::ZERO),
        state.auth.cookie(
            DEVICE_COOKIE,
            device,
            DEVICE_TTL.to_std().unwrap_or(Duration::ZERO),
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// Tells the client when to try again (whole seconds, at least one).
fn retry_after(mut response: Response, wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[derive(Debug, Default, Deserialize)]
pub struct LogoutForm {
    /// `1`: end every session of this agent, not only this browser's.
    #[serde(default)]
    everywhere: String,
}

/// Ends the session, or with `everywhere=1` every session of the agent (the CSRF check already
/// ran in the middleware). Open live streams of ended sessions close.
pub async fn logout(State(state): State<WebState>, headers: HeaderMap, body: Bytes) -> UiResult {
    let form: LogoutForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Some(token) = session_token(&headers) {
        if form.everywhere == "1"
            && let Some(session) = state.store.session(token).await?
        {
            let ended = state.store.end_sessions(session.agent.id).await?;
            tracing::info!(agent_id = %session.agent.id, ended, "Signed out everywhere.");
        }
        state.store.delete_session(token).await?;
        state.auth.announce_ended();
    }
    let mut response = back_to(None, "/login");
    let cookie = state
        .auth
        .cookie(SESSION_COOKIE, String::new(), Duration::ZERO);
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(response)
}
