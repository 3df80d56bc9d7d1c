//! Admin pages: agents and their API tokens (channels are in `admin_channels`). A new token is
//! shown once, on the page that created it, and never logged.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use inbox_core::ids::AgentId;
use inbox_core::model::Role;
use inbox_core::passwords;
use serde::Deserialize;

use super::view::{Layout, When};
use super::{AdminViewer, UiError, UiResult, back_to, refused, render};
use crate::http::WebState;

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
