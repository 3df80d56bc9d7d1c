//! `/api/v1/dead-letters` (admins only): what could not be stored, with its error; replayed
//! through the funnel after a fix (stored once, never twice) or discarded.

use crate::http::route_table::RouteTable;
use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use inbox_core::ids::{ChannelId, ConversationId, MessageId};
use inbox_core::ingest::ReplayOutcome;
use inbox_core::replay::replay_dead_letter;
use inbox_core::store::{DeadLetter, DeadLetterFilter, DeadLetterId, Resolution};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversations::parse_id;
use super::{AdminAgent, ApiError, WebState};

/// Dead letters listed when no `limit` is given.
const DEFAULT_LIMIT: u32 = 100;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/dead-letters", list)
        .post("/api/v1/dead-letters/{id}/replay", replay)
        .post("/api/v1/dead-letters/{id}/discard", discard)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only this channel's.
    channel: Option<String>,
    /// Only those whose error contains this text (case-insensitive).
    error: Option<String>,
    /// Only those that arrived at or after this time (RFC 3339).
    since: Option<String>,
    /// Only those that arrived before this time (RFC 3339).
    until: Option<String>,
    /// Settled ones too (replayed or discarded); by default only those waiting.
    all: Option<bool>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

fn parse_time(raw: Option<&str>, field: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::invalid(field, "an RFC 3339 time like 2026-01-02T03:04:05Z")),
    }
}

/// A page of dead letters, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
}

#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    tag = "dead letters",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "Dead letters, newest first.", body = DeadLetterList),
        (status = 400, description = "A bad parameter; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage dead letters.", body = super::openapi::ErrorBody),
    )
)]
async fn list(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let channel = match query.channel.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<ChannelId>()
                .map_err(|_| ApiError::invalid("channel", "a channel id"))?,
        ),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=inbox_core::store::MAX_DEAD_LETTERS_LISTED).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 500"));
    }
    let filter = DeadLetterFilter {
        channel,
        error: query.error.filter(|e| !e.trim().is_empty()),
        since: parse_time(query.since.as_deref(), "since")?,
        until: parse_time(query.until.as_deref(), "until")?,
        include_resolved: query.all.unwrap_or(false),
        limit,
    };
    let dead_letters = state.store.find_dead_letters(&filter).await?;
    Ok(Json(DeadLetterList { dead_letters }))
}

/// What a replay did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAnswer {
    /// `stored`, `duplicate` (it was stored already; nothing added) or `failed` (its error is
    /// updated).
    pub outcome: &'static str,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub message_id: Option<MessageId>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub conversation_id: Option<ConversationId>,
    pub error: Option<String>,
}

/// Runs the replay and says what it did, as the API and the admin page show it.
pub async fn run_replay(state: &WebState, id: DeadLetterId) -> Result<ReplayAnswer, ApiError> {
    let outcome = replay_dead_letter(&state.store, state.catalog.as_ref(), id, &state.ingest)
        .await
        .map_err(|inbox_core::ingest::IngestError::Store(e)| ApiError::from(e))?;
    let answer = |outcome, message_id, conversation_id, error| ReplayAnswer {
        outcome,
        message_id,
        conversation_id,
        error,
    };
    Ok(match outcome {
        ReplayOutcome::Stored {
            message_id,
            conversation_id,
        } => answer("stored", Some(message_id), Some(conversation_id), None),
        ReplayOutcome::Duplicate { message_id } => {
            answer("duplicate", Some(message_id), None, None)
        }
        ReplayOutcome::Failed { error } => answer("failed", None, None, Some(error)),
        ReplayOutcome::AlreadySettled { resolution } => {
            return Err(ApiError::Conflict(format!(
                "this dead letter is settled already ({})",
                match resolution {
                    Resolution::Stored => "stored",
                    Resolution::Duplicate => "duplicate",
                    Resolution::Discarded => "discarded",
                }
            )));
        }
        ReplayOutcome::NotFound => return Err(ApiError::NotFound("dead letter")),
    })
}

/// Runs the stored input (or its raw source, re-parsed) through the funnel again.
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/{id}/replay",
    tag = "dead letters",
    params(("id" = String, Path, format = Uuid, description = "The dead letter id (a UUID).")),
    responses(
        (status = 200, description = "Stored, a duplicate, or still failing (with the new error).", body = ReplayAnswer),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage dead letters.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
        (status = 409, description = "Settled already (replayed or discarded).", body = super::openapi::ErrorBody),
    )
)]
async fn replay(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<Json<ReplayAnswer>, ApiError> {
    let id: DeadLetterId = parse_id(&id, "dead letter")?;
    Ok(Json(run_replay(&state, id).await?))
}

/// Drops a dead letter; it stays listed (with `?all=true`) as discarded.
#[utoipa::path(
    post,
    path = "/api/v1/dead-letters/{id}/discard",
    tag = "dead letters",
    params(("id" = String, Path, format = Uuid, description = "The dead letter id (a UUID).")),
    responses(
        (status = 200, description = "Discarded.", body = DeadLetter),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Agents may not manage dead letters.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
        (status = 409, description = "Settled already (replayed or discarded).", body = super::openapi::ErrorBody),
    )
)]
async fn discard(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    let id: DeadLetterId = parse_id(&id, "dead letter")?;
    if !state.store.discard_dead_letter(id).await? {
        return match state.store.dead_letter(id).await? {
            Some(_) => Err(ApiError::Conflict(
                "this dead letter is settled already".into(),
            )),
            None => Err(ApiError::NotFound("dead letter")),
        };
    }
    let letter = state
        .store
        .dead_letter(id)
        .await?
        .ok_or(ApiError::NotFound("dead letter"))?;
    Ok(Json(letter))
}
