//! `POST /api/v1/conversations/{id}/typing`: an agent is typing a reply. With "an agent read it"
//! (noted when a conversation is opened) it becomes the customer's [`AgentSignals`], which chat
//! channels that show them (the website chat) read from blob storage.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use inbox_core::agent_signals::{self, AgentSignals, TYPING_FOR, Typing};
use inbox_core::model::Conversation;
use object_store::path::Path as BlobPath;

use super::{ApiError, CurrentAgent, WebState};
use crate::http::route_table::RouteTable;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new().post("/api/v1/conversations/{id}/typing", typing)
}

/// Says the agent is typing (for a few seconds: the page says it again while typing goes on).
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/typing",
    tag = "conversations",
    params(("id" = String, Path, format = Uuid, description = "The conversation id (a UUID).")),
    responses(
        (status = 204, description = "Noted; chat channels that show typing show it."),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn typing(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let conversation = super::conversations::load(&state, &id).await?;
    let until = Utc::now() + TYPING_FOR;
    update(&state, &conversation, |signals| {
        signals.typing = Some(Typing {
            agent: agent.name.clone(),
            until,
        });
    })
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Notes that an agent opened the conversation now.
pub async fn note_read(state: &WebState, conversation: &Conversation) {
    let now = Utc::now();
    update(state, conversation, |signals| signals.read_at = Some(now)).await;
}

/// Reads, changes and writes the customer's signals; best effort (an indicator is all that is
/// lost), so a blob store error is logged, not answered.
async fn update(
    state: &WebState,
    conversation: &Conversation,
    change: impl FnOnce(&mut AgentSignals),
) {
    let path = BlobPath::from(agent_signals::path(
        conversation.channel_id,
        &conversation.contact_handle,
    ));
    let mut signals: AgentSignals = match state.blobs.get(&path).await {
        Ok(found) => match found.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => AgentSignals::default(),
        },
        Err(_) => AgentSignals::default(),
    };
    change(&mut signals);
    let bytes = serde_json::to_vec(&signals).unwrap_or_default();
    if let Err(e) = state.blobs.put(&path, bytes.into()).await {
        tracing::warn!(conversation_id = %conversation.id, error = %e, "Agent signals not written.");
    }
}
