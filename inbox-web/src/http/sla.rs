//! SLA policies (every agent reads them, admins change them): `GET|POST /api/v1/sla-policies`,
//! `DELETE /api/v1/sla-policies/{id}`. A policy applies to conversations from their next change
//! on (docs/metrics.md, "SLA targets").

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use inbox_core::ids::ChannelId;
use inbox_core::labels::{LABEL_RULE, Label};
use inbox_core::sla::SlaPolicy;
use inbox_core::store::NewSlaPolicy;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::parse_json;
use super::{AdminAgent, ApiError, CurrentAgent, WebState};
use crate::http::route_table::RouteTable;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/sla-policies", list)
        .post("/api/v1/sla-policies", create)
        .delete("/api/v1/sla-policies/{id}", remove)
}

/// The longest target: a year, in minutes.
const MAX_MINUTES: i64 = 366 * 24 * 60;

/// A policy to add; at least one target.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicyBody {
    /// For people (1 to 100 characters).
    pub(crate) name: String,
    /// Only this channel's conversations.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub(crate) channel_id: Option<ChannelId>,
    /// Only conversations with this label.
    pub(crate) label: Option<String>,
    /// The first human reply of a cycle within this many minutes.
    pub(crate) first_reply_minutes: Option<i64>,
    /// Every later reply within this many minutes of the customer's message.
    pub(crate) next_reply_minutes: Option<i64>,
    /// Resolved within this many minutes of the cycle's start.
    pub(crate) resolution_minutes: Option<i64>,
    /// Minutes of the channel's business hours (default) or of the calendar.
    #[serde(default = "yes")]
    pub(crate) business_hours: bool,
}

fn yes() -> bool {
    true
}

fn seconds(minutes: Option<i64>, field: &str) -> Result<Option<i64>, ApiError> {
    match minutes {
        None => Ok(None),
        Some(m) if (1..=MAX_MINUTES).contains(&m) => Ok(Some(m * 60)),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("1 to {MAX_MINUTES} minutes"),
        )),
    }
}

/// Every policy, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/sla-policies",
    tag = "reports",
    responses(
        (status = 200, description = "The policies.", body = Vec<SlaPolicy>),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
) -> Result<Json<Vec<SlaPolicy>>, ApiError> {
    Ok(Json(state.store.sla_policies().await?))
}

/// Adds a policy (admins only). The closest fit applies to a conversation: channel and label,
/// then channel, then label, then neither; the oldest of equally close ones.
#[utoipa::path(
    post,
    path = "/api/v1/sla-policies",
    tag = "reports",
    request_body = NewPolicyBody,
    responses(
        (status = 201, description = "The policy.", body = SlaPolicy),
        (status = 400, description = "A bad body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Only admins change SLA policies.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<WebState>,
    _admin: AdminAgent,
    body: Bytes,
) -> Result<(StatusCode, Json<SlaPolicy>), ApiError> {
    let new = checked(&state, parse_json(&body)?).await?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.add_sla_policy(&new).await?),
    ))
}

/// A policy to add as given, checked (the API and the admin page).
pub(crate) async fn checked(
    state: &WebState,
    body: NewPolicyBody,
) -> Result<NewSlaPolicy, ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "1 to 100 characters"));
    }
    if let Some(channel) = body.channel_id
        && state.store.channel(channel).await?.is_none()
    {
        return Err(ApiError::invalid("channel_id", "no such channel"));
    }
    let new = NewSlaPolicy {
        name,
        channel_id: body.channel_id,
        label: match body.label.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(l) => Some(
                Label::parse(l)
                    .ok_or_else(|| ApiError::invalid("label", LABEL_RULE))?
                    .into_string(),
            ),
        },
        first_reply_s: seconds(body.first_reply_minutes, "first_reply_minutes")?,
        next_reply_s: seconds(body.next_reply_minutes, "next_reply_minutes")?,
        resolution_s: seconds(body.resolution_minutes, "resolution_minutes")?,
        business_hours: body.business_hours,
    };
    if new.first_reply_s.is_none() && new.next_reply_s.is_none() && new.resolution_s.is_none() {
        return Err(ApiError::invalid(
            "first_reply_minutes",
            "a policy needs at least one target",
        ));
    }
    Ok(new)
}

/// Removes a policy (admins only).
#[utoipa::path(
    delete,
    path = "/api/v1/sla-policies/{id}",
    tag = "reports",
    params(("id" = String, Path, description = "The policy id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Only admins change SLA policies.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn remove(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_sla_policy(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("SLA policy"))
    }
}
