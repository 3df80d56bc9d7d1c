//! Business hours (admins change them, every agent may read them): `GET|PUT
//! /api/v1/business-hours` for the default of every channel, `GET|PUT
//! /api/v1/channels/{id}/business-hours` for one channel's own. A change is added with the time
//! it takes effect (now, or later): figures of earlier times keep the schedule of their time.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use inbox_core::business_hours::{BusinessHours, ScheduleConfig};
use inbox_core::ids::{AgentId, ChannelId};
use inbox_core::store::ScheduleEntry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::channels::channel_of;
use super::error::parse_json;
use super::{AdminAgent, ApiError, CurrentAgent, WebState};
use crate::http::route_table::RouteTable;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/business-hours", show_default)
        .put("/api/v1/business-hours", set_default)
        .get("/api/v1/channels/{id}/business-hours", show_channel)
        .put("/api/v1/channels/{id}/business-hours", set_channel)
}

/// How far in the past an effective time may lie (clock skew between the caller and us).
const SKEW: Duration = Duration::minutes(1);

/// A schedule change to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChangeBody {
    /// The weekly schedule; `null`: none (the default: business time is calendar time; a
    /// channel: the default applies again).
    pub(crate) schedule: Option<ScheduleConfig>,
    /// When it takes effect (RFC 3339, not in the past); default now.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) effective_at: Option<DateTime<Utc>>,
}

/// One schedule change as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleChangeView {
    schedule: Option<ScheduleConfig>,
    #[schema(value_type = String, format = DateTime)]
    effective_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = Uuid)]
    created_by: Option<AgentId>,
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
}

/// The schedule in force now and every change, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    /// The schedule in force now (`null`: none).
    current: Option<ScheduleConfig>,
    changes: Vec<ScheduleChangeView>,
}

fn view(entries: Vec<ScheduleEntry>) -> ScheduleView {
    let now = Utc::now();
    let current = entries
        .iter()
        .rev()
        .find(|e| e.effective_at <= now)
        .and_then(|e| e.schedule.clone());
    ScheduleView {
        current,
        changes: entries
            .into_iter()
            .map(|e| ScheduleChangeView {
                schedule: e.schedule,
                effective_at: e.effective_at,
                created_by: e.created_by,
                created_at: e.created_at,
            })
            .collect(),
    }
}

async fn add(
    state: &WebState,
    channel: Option<ChannelId>,
    admin: AgentId,
    body: &Bytes,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    add_change(state, channel, admin, parse_json(body)?).await?;
    let entries = state.store.schedule_entries(channel).await?;
    Ok((StatusCode::CREATED, Json(view(entries))))
}

/// Checks and stores a schedule change (the API and the admin page).
pub(crate) async fn add_change(
    state: &WebState,
    channel: Option<ChannelId>,
    admin: AgentId,
    change: ScheduleChangeBody,
) -> Result<(), ApiError> {
    if let Some(schedule) = &change.schedule {
        BusinessHours::try_from(schedule)
            .map_err(|e| ApiError::invalid(format!("schedule.{}", e.field), e.message))?;
    }
    let now = Utc::now();
    let effective_at = change.effective_at.unwrap_or(now);
    if effective_at < now - SKEW {
        return Err(ApiError::invalid(
            "effective_at",
            "a schedule change cannot apply to the past: earlier figures keep their schedule",
        ));
    }
    state
        .store
        .add_schedule(channel, effective_at, change.schedule.as_ref(), Some(admin))
        .await?;
    Ok(())
}

/// The default schedule of every channel without its own.
#[utoipa::path(
    get,
    path = "/api/v1/business-hours",
    tag = "reports",
    responses(
        (status = 200, description = "The default schedule and its changes.", body = ScheduleView),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn show_default(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(view(state.store.schedule_entries(None).await?)))
}

/// Changes the default schedule (admins only).
#[utoipa::path(
    put,
    path = "/api/v1/business-hours",
    tag = "reports",
    request_body = ScheduleChangeBody,
    responses(
        (status = 201, description = "Added; the schedule and its changes.", body = ScheduleView),
        (status = 400, description = "A bad body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Only admins change business hours.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn set_default(
    State(state): State<WebState>,
    AdminAgent(admin): AdminAgent,
    body: Bytes,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    add(&state, None, admin.id, &body).await
}

/// A channel's own schedule (`current` is `null` while it follows the default).
#[utoipa::path(
    get,
    path = "/api/v1/channels/{id}/business-hours",
    tag = "reports",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    responses(
        (status = 200, description = "The channel's schedule and its changes.", body = ScheduleView),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn show_channel(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    Ok(Json(view(
        state.store.schedule_entries(Some(channel.id)).await?,
    )))
}

/// Changes a channel's own schedule (admins only; `"schedule": null` follows the default again).
#[utoipa::path(
    put,
    path = "/api/v1/channels/{id}/business-hours",
    tag = "reports",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    request_body = ScheduleChangeBody,
    responses(
        (status = 201, description = "Added; the schedule and its changes.", body = ScheduleView),
        (status = 400, description = "A bad body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Only admins change business hours.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn set_channel(
    State(state): State<WebState>,
    AdminAgent(admin): AdminAgent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let channel = channel_of(&state, &id).await?;
    add(&state, Some(channel.id), admin.id, &body).await
}
