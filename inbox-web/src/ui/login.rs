//! Sign-in and sign-out. The sign-in form is protected against login CSRF by a double-submit
//! cookie (there is no session yet to hold a token); failed attempts are rate limited.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use inbox_core::passwords;
use serde::Deserialize;

use super::view::LoginPage;
use super::{UiResult, back_to, render};
use crate::http::WebState;
use crate::http::auth::{SESSION_COOKIE, cookie_value, same_secret, session_token};

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
    let client = Some(peer.ip());
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
    if let Some(wait) = state.auth.limiter.blocked(&form.email, client) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return form_response(
            &state,
            form.next,
            form.email,
            Some(format!(
                "Too many failed attempts. Try again in {minutes} minute(s)."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let candidate = state.store.login_candidate(&form.email).await?;
    let password = form.password.clone();
    let (agent, hash) = match candidate {
        Some((agent, hash)) => (Some(agent), hash),
        None => (None, decoy_hash().to_owned()),
    };
    let verified = tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(agent) = agent.filter(|_| verified) else {
        state.auth.limiter.failed(&form.email, client);
        tracing::info!(client = %peer.ip(), "Sign-in failed.");
        return form_response(
            &state,
            form.next,
            form.email,
            Some("Wrong email or password.".into()),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.auth.limiter.succeeded(&form.email);
    let (token, _) = state
        .store
        .create_session(agent.id, state.auth.session_ttl)
        .await?;
    tracing::info!(agent_id = %agent.id, "Signed in.");
    let ttl = state.auth.session_ttl.to_std().unwrap_or(Duration::ZERO);
    let mut response = back_to(Some(&form.next), "/inbox");
    for cookie in [
        state.auth.cookie(SESSION_COOKIE, token, ttl),
        state
            .auth
            .cookie(LOGIN_COOKIE, String::new(), Duration::ZERO),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// Ends the session (the CSRF check already ran in the middleware).
pub async fn logout(State(state): State<WebState>, headers: HeaderMap) -> UiResult {
    if let Some(token) = session_token(&headers) {
        state.store.delete_session(token).await?;
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
