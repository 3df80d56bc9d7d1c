//! Admin pages: channels with their health (and adding a webhook channel), agents and their API
//! tokens. Secrets (a channel's signing secret, a new token) are shown once, on the page that
//! created them, and never logged.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use chrono::Utc;
use inbox_core::envelope::ChannelKind;
use inbox_core::ids::AgentId;
use inbox_core::model::Role;
use inbox_core::passwords;
use serde::Deserialize;
use serde_json::json;

use super::view::{Layout, When};
use super::{AdminViewer, UiError, UiResult, back_to, refused, render};
use crate::http::WebState;

/// A channel row of the channels page.
#[derive(Debug)]
pub struct ChannelRowView {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub hook_url: String,
    pub last_success: Option<When>,
    /// How long ago the last success was, in words (the practical lag of a polling source).
    pub since_success: String,
    pub last_error: String,
    pub last_error_at: Option<When>,
    /// Messages in the channel's conversations.
    pub messages: i64,
    pub delivered: i64,
    pub failed: i64,
    /// ok, failing or idle.
    pub health: &'static str,
}

/// What was just created, shown once.
#[derive(Debug)]
pub struct CreatedChannel {
    pub name: String,
    pub hook_url: String,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "admin_channels.html")]
pub struct ChannelsPage {
    pub layout: Layout,
    pub channels: Vec<ChannelRowView>,
    pub created: Option<CreatedChannel>,
    pub error: Option<String>,
}

fn ago(at: chrono::DateTime<Utc>) -> String {
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

async fn channels_page(
    state: &WebState,
    viewer: &super::Viewer,
    created: Option<CreatedChannel>,
    error: Option<String>,
) -> UiResult {
    let channels = state.store.channels().await?;
    let health = state.store.channel_health().await?;
    let activity = state.store.channel_activity().await?;
    let rows = channels
        .into_iter()
        .map(|c| {
            let h = health.get(&c.id).cloned().unwrap_or_default();
            let (messages, last_message) = activity
                .get(&c.id)
                .map(|(n, at)| (*n, Some(*at)))
                .unwrap_or((0, None));
            // Success is the later of what the connector reported and the last stored message.
            let last_success_at = h.last_success_at.max(last_message);
            let failing = match (h.last_error_at, h.last_success_at.max(last_message)) {
                (Some(e), Some(s)) => e > s,
                (Some(_), None) => true,
                _ => false,
            };
            ChannelRowView {
                id: c.id.to_string(),
                hook_url: if c.kind == ChannelKind::Webhook {
                    format!("/hooks/{}", c.id)
                } else {
                    String::new()
                },
                name: c.name,
                kind: c.kind.as_str(),
                since_success: last_success_at.map(ago).unwrap_or_else(|| "never".into()),
                last_success: last_success_at.map(When::of),
                last_error: h.last_error.unwrap_or_default(),
                last_error_at: h.last_error_at.map(When::of),
                messages,
                delivered: h.delivered,
                failed: h.failed,
                health: if !c.enabled {
                    "disabled"
                } else if failing {
                    "failing"
                } else if last_success_at.is_some() {
                    "ok"
                } else {
                    "idle"
                },
            }
        })
        .collect();
    render(&ChannelsPage {
        layout: viewer.layout("Channels", "channels"),
        channels: rows,
        created,
        error,
    })
}

pub async fn channels(State(state): State<WebState>, AdminViewer(viewer): AdminViewer) -> UiResult {
    channels_page(&state, &viewer, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct NewWebhook {
    #[serde(default)]
    name: String,
    /// Where replies are POSTed (optional: an inbound-only channel).
    #[serde(default)]
    outbound_url: String,
}

pub async fn add_channel(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<NewWebhook>,
) -> UiResult {
    let name = form.name.trim();
    let url = form.outbound_url.trim();
    let error = if name.is_empty() || name.len() > 100 {
        Some("Name: 1 to 100 characters.")
    } else if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        Some("Reply URL: must start with http:// or https://.")
    } else {
        None
    };
    if let Some(error) = error {
        return refused(channels_page(&state, &viewer, None, Some(error.into())).await);
    }
    let secret = inbox_connectors::webhook::new_secret();
    let outbound = (!url.is_empty()).then_some(url);
    let channel = state
        .store
        .create_channel(
            ChannelKind::Webhook,
            name,
            json!({ "outbound_url": outbound }),
            &secret,
        )
        .await?;
    tracing::info!(channel_id = %channel.id, agent_id = %viewer.agent.id, "Webhook channel added.");
    let created = CreatedChannel {
        name: channel.name.clone(),
        hook_url: format!("/hooks/{}", channel.id),
        secret,
    };
    channels_page(&state, &viewer, Some(created), None).await
}

/// An agent row of the agents page.
#[derive(Debug)]
pub struct AgentRowView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub disabled: bool,
    pub is_self: bool,
    pub tokens: Vec<TokenView>,
    pub sessions: Vec<SessionView>,
}

/// A signed-in browser of an agent.
#[derive(Debug)]
pub struct SessionView {
    pub since: When,
    pub browser: String,
    pub client: String,
}

#[derive(Debug)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub created: When,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "admin_agents.html")]
pub struct AgentsPage {
    pub layout: Layout,
    pub agents: Vec<AgentRowView>,
    /// A token or password just created, shown once: (what, for whom, value).
    pub secret: Option<(String, String, String)>,
    pub error: Option<String>,
}

async fn agents_page(
    state: &WebState,
    viewer: &super::Viewer,
    secret: Option<(String, String, String)>,
    error: Option<String>,
) -> UiResult {
    let agents = state.store.agents().await?;
    let tokens = state.store.api_tokens(None).await?;
    let sessions = state.store.sessions(None).await?;
    let rows = agents
        .into_iter()
        .map(|a| AgentRowView {
            id: a.agent.id.to_string(),
            is_self: a.agent.id == viewer.agent.id,
            tokens: tokens
                .iter()
                .filter(|t| t.agent_id == a.agent.id)
                .map(|t| TokenView {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    created: When::of(t.created_at),
                    revoked: t.revoked_at.is_some(),
                })
                .collect(),
            sessions: sessions
                .iter()
                .filter(|s| s.agent_id == a.agent.id)
                .map(|s| SessionView {
                    since: When::of(s.created_at),
                    browser: s
                        .user_agent
                        .clone()
                        .unwrap_or_else(|| "unknown browser".into()),
                    client: s.client.clone().unwrap_or_default(),
                })
                .collect(),
            name: a.agent.name,
            email: a.agent.email,
            role: a.agent.role.as_str(),
            disabled: a.disabled,
        })
        .collect();
    render(&AgentsPage {
        layout: viewer.layout("Agents", "agents"),
        agents: rows,
        secret,
        error,
    })
}

pub async fn agents(State(state): State<WebState>, AdminViewer(viewer): AdminViewer) -> UiResult {
    agents_page(&state, &viewer, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct NewAgent {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    /// Empty: one is generated and shown once.
    #[serde(default)]
    password: String,
}

pub async fn add_agent(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<NewAgent>,
) -> UiResult {
    let email = match inbox_core::identity::EmailAddress::parse(&form.email) {
        Ok(e) => e,
        Err(e) => {
            return refused(agents_page(&state, &viewer, None, Some(format!("Email: {e}"))).await);
        }
    };
    let role = Role::parse(&form.role).unwrap_or(Role::Agent);
    let generated = form.password.is_empty();
    let password = if generated {
        passwords::generate()
    } else {
        form.password.clone()
    };
    let hash = match passwords::hash(&password) {
        Ok(h) => h,
        Err(e) => {
            return refused(
                agents_page(&state, &viewer, None, Some(format!("Password: {e}"))).await,
            );
        }
    };
    let name = match form.name.trim() {
        "" => email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned(),
        n => n.to_owned(),
    };
    let agent = match state
        .store
        .create_agent(email.as_str(), &name, role, Some(&hash))
        .await
    {
        Ok(a) => a,
        Err(e) => {
            let e = UiError::from(e);
            return refused(agents_page(&state, &viewer, None, Some(e.to_string())).await);
        }
    };
    tracing::info!(agent_id = %agent.id, by = %viewer.agent.id, "Agent added.");
    let secret = generated.then(|| ("Password".to_owned(), agent.email.clone(), password));
    agents_page(&state, &viewer, secret, None).await
}

#[derive(Debug, Deserialize)]
pub struct AgentChange {
    /// role or disable or enable.
    #[serde(default)]
    op: String,
    #[serde(default)]
    role: String,
}

pub async fn update_agent(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<AgentChange>,
) -> UiResult {
    let id: AgentId = id.parse().map_err(|_| UiError::NotFound("agent"))?;
    if id == viewer.agent.id && form.op != "enable" {
        // An admin locking themselves out is never what they meant.
        return refused(
            agents_page(
                &state,
                &viewer,
                None,
                Some("You cannot change your own role or disable yourself.".into()),
            )
            .await,
        );
    }
    match form.op.as_str() {
        "role" => {
            let role = Role::parse(&form.role)
                .ok_or_else(|| UiError::Invalid("role: admin or agent".into()))?;
            state.store.set_agent_role(id, role).await?;
        }
        "disable" => {
            state.store.set_agent_disabled(id, true).await?;
            tracing::info!(agent_id = %id, by = %viewer.agent.id, "Agent disabled; sessions ended, tokens revoked.");
            state.auth.announce_ended();
        }
        "enable" => state.store.set_agent_disabled(id, false).await?,
        _ => return Err(UiError::Invalid("op: role, disable or enable".into())),
    }
    Ok(back_to(None, "/admin/agents"))
}

/// "Sign out everywhere" for an agent: every browser session of theirs ends (API tokens are
/// revoked one by one).
pub async fn end_sessions(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> UiResult {
    let id: AgentId = id.parse().map_err(|_| UiError::NotFound("agent"))?;
    state
        .store
        .agent(id)
        .await?
        .ok_or(UiError::NotFound("agent"))?;
    let ended = state.store.end_sessions(id).await?;
    tracing::info!(agent_id = %id, by = %viewer.agent.id, ended, "Agent signed out everywhere.");
    state.auth.announce_ended();
    let fallback = if id == viewer.agent.id {
        "/login"
    } else {
        "/admin/agents"
    };
    Ok(back_to(None, fallback))
}

#[derive(Debug, Deserialize)]
pub struct NewToken {
    #[serde(default)]
    name: String,
}

pub async fn create_token(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<NewToken>,
) -> UiResult {
    let id: AgentId = id.parse().map_err(|_| UiError::NotFound("agent"))?;
    let agent = state
        .store
        .agent(id)
        .await?
        .ok_or(UiError::NotFound("agent"))?;
    let name = match form.name.trim() {
        "" => "web",
        n => n,
    };
    let token = state.store.create_api_token(id, name).await?;
    tracing::info!(agent_id = %id, by = %viewer.agent.id, "API token created.");
    agents_page(
        &state,
        &viewer,
        Some(("API token".into(), agent.email, token)),
        None,
    )
    .await
}

pub async fn revoke_token(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> UiResult {
    state.store.revoke_api_token(&id).await?;
    tracing::info!(token_id = %id, by = %viewer.agent.id, "API token revoked.");
    state.auth.announce_ended();
    Ok(back_to(None, "/admin/agents"))
}
