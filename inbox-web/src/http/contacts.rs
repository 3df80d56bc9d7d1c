//! `/api/v1/contacts/{id}`: a customer with their identities and conversations on every channel.

use crate::http::route_table::RouteTable;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use inbox_core::actions;
use inbox_core::ids::ContactId;
use inbox_core::store::MergeId;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::conversations::{parse_cursor, parse_id};
use super::error::parse_json;
use super::{ApiError, CurrentAgent, WebState};

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/contacts/{id}", show)
        .post("/api/v1/contacts/{id}/merge", merge)
        .post("/api/v1/contact-merges/{id}/undo", unmerge)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The contact whose identities, conversations and messages move into this one.
    absorb: ContactId,
}

/// Merges `absorb` into the contact of the path; answers the merge record (its id undoes it).
#[utoipa::path(
    post,
    path = "/api/v1/contacts/{id}/merge",
    tag = "contacts",
    params(("id" = String, Path, format = Uuid, description = "The kept contact's id (a UUID).")),
    request_body = MergeBody,
    responses(
        (status = 201, description = "The merge record; its id undoes it.", body = inbox_core::store::ContactMerge),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn merge(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let keep: ContactId = parse_id(&id, "contact")?;
    let input: MergeBody = parse_json(&body)?;
    let merge = actions::merge_contacts(&state.store, keep, input.absorb, &agent).await?;
    let record = state
        .store
        .contact_merge(merge)
        .await?
        .ok_or(ApiError::NotFound("merge"))?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

/// Puts back everything a merge moved.
#[utoipa::path(
    post,
    path = "/api/v1/contact-merges/{id}/undo",
    tag = "contacts",
    params(("id" = String, Path, format = Uuid, description = "The merge id (a UUID).")),
    responses(
        (status = 200, description = "The merge record, undone.", body = inbox_core::store::ContactMerge),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn unmerge(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let merge: MergeId = parse_id(&id, "merge")?;
    actions::unmerge_contacts(&state.store, merge, &agent).await?;
    let record = state
        .store
        .contact_merge(merge)
        .await?
        .ok_or(ApiError::NotFound("merge"))?;
    Ok(Json(json!(record)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    /// `next_before` of the previous page: older messages.
    #[param(pattern = r"^[+-]?[0-9]{1,18}_[^\u0000]*$")]
    before: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The contact, their identities, their conversations on every channel, and one timeline of
/// their messages across all of them (newest page first, oldest first within the page).
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = String, Path, format = Uuid, description = "The contact id (a UUID)."), TimelineQuery),
    responses(
        (status = 200, description = "The contact, identities, conversations and timeline.", body = super::openapi::ContactView),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
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
