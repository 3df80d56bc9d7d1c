//! `/api/v1/contacts/{id}`: a customer with their identities and conversations on every channel.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use inbox_core::ids::ContactId;
use serde_json::{Value, json};

use super::conversations::parse_id;
use super::{ApiError, CurrentAgent, WebState};

pub fn router() -> Router<WebState> {
    Router::new().route("/api/v1/contacts/{id}", get(show))
}

async fn show(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: ContactId = parse_id(&id, "contact")?;
    let (contact, identities) = state
        .store
        .contact(id)
        .await?
        .ok_or(ApiError::NotFound("contact"))?;
    let conversations = state.store.contact_conversations(id).await?;
    Ok(Json(json!({
        "contact": contact,
        "identities": identities,
        "conversations": conversations,
    })))
}
