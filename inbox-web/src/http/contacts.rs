//! `/api/v1/contacts/{id}`: a customer with their identities and conversations on every channel.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use inbox_core::ids::ContactId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::conversations::{parse_cursor, parse_id};
use super::{ApiError, CurrentAgent, WebState};

pub fn router() -> Router<WebState> {
    Router::new().route("/api/v1/contacts/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct TimelineQuery {
    /// `next_before` of the previous page: older messages.
    before: Option<String>,
    limit: Option<u32>,
}

/// The contact, their identities, their conversations on every channel, and one timeline of
/// their messages across all of them (newest page first, oldest first within the page).
async fn show(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(id): Path<String>,
    Query(query): Query<TimelineQuery>,
) -> Result<Json<Value>, ApiError> {
    let id: ContactId = parse_id(&id, "contact")?;
    let before = parse_cursor(query.before.as_deref(), "before")?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 500"));
    }
    let (contact, identities) = state
        .store
        .contact(id)
        .await?
        .ok_or(ApiError::NotFound("contact"))?;
    let conversations = state.store.contact_conversations(id).await?;
    let timeline = state
        .store
        .contact_messages(id, before.as_ref(), limit)
        .await?;
    Ok(Json(json!({
        "contact": contact,
        "identities": identities,
        "conversations": conversations,
        "timeline": timeline,
    })))
}
