//! CSAT over the API: a channel's setting (`GET|PUT /api/v1/channels/{id}/csat`, admins) and the
//! report (`GET /api/v1/reports/csat`, every agent). The customers' survey pages are in
//! `ui::survey`.

use axum::Json;
use axum::extract::{Path, Query, State};
use bytes::Bytes;
use inbox_core::csat::{self, CsatGroup};
use inbox_core::reports::GroupBy;
use inbox_core::store::CsatSettings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::channels::channel_of;
use super::error::parse_json;
use super::reports::{ReportParams, group_names};
use super::{AdminAgent, ApiError, CurrentAgent, WebState};
use crate::http::route_table::RouteTable;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/channels/{id}/csat", show)
        .put("/api/v1/channels/{id}/csat", set)
        .get("/api/v1/reports/csat", report)
}

/// A channel's CSAT setting to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsatBody {
    /// Send a survey link when a conversation is resolved.
    pub(crate) enabled: bool,
    /// How long a link can be answered, 1 to 720 hours (default 168, a week).
    pub(crate) expiry_hours: Option<i64>,
}

/// A channel's CSAT setting (off by default).
#[utoipa::path(
    get,
    path = "/api/v1/channels/{id}/csat",
    tag = "reports",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    responses(
        (status = 200, description = "The setting.", body = CsatSettings),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Admins only.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn show(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
) -> Result<Json<CsatSettings>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    Ok(Json(state.store.csat_settings(channel.id).await?))
}

/// Turns CSAT on or off for a channel (admins only).
#[utoipa::path(
    put,
    path = "/api/v1/channels/{id}/csat",
    tag = "reports",
    params(("id" = String, Path, format = Uuid, description = "The channel id (a UUID).")),
    request_body = CsatBody,
    responses(
        (status = 200, description = "The setting as it is now.", body = CsatSettings),
        (status = 400, description = "A bad body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 403, description = "Admins only.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn set(
    State(state): State<WebState>,
    _admin: AdminAgent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CsatSettings>, ApiError> {
    let channel = channel_of(&state, &id).await?;
    let settings = checked(parse_json(&body)?)?;
    state.store.set_csat_settings(channel.id, settings).await?;
    Ok(Json(settings))
}

/// A setting as given, checked (the API and the admin page).
pub(crate) fn checked(body: CsatBody) -> Result<CsatSettings, ApiError> {
    let expiry_hours = body
        .expiry_hours
        .unwrap_or(CsatSettings::default().expiry_hours);
    if !(1..=720).contains(&expiry_hours) {
        return Err(ApiError::invalid("expiry_hours", "1 to 720"));
    }
    Ok(CsatSettings {
        enabled: body.enabled,
        expiry_hours,
    })
}

/// One group of the CSAT report, with the agent's or channel's name.
#[derive(Debug, Serialize, ToSchema)]
pub struct CsatGroupView {
    #[serde(flatten)]
    pub group: CsatGroup,
    pub name: Option<String>,
}

/// The CSAT report.
#[derive(Debug, Serialize, ToSchema)]
pub struct CsatReport {
    pub group_by: GroupBy,
    pub groups: Vec<CsatGroupView>,
}

/// CSAT (share of 4 and 5 ratings) and mean rating of the answers given in the range, per day,
/// week, agent (who resolved) or channel.
#[utoipa::path(
    get,
    path = "/api/v1/reports/csat",
    tag = "reports",
    params(ReportParams),
    responses(
        (status = 200, description = "The report.", body = CsatReport),
        (status = 400, description = "A bad parameter; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn report(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Query(params): Query<ReportParams>,
) -> Result<Json<CsatReport>, ApiError> {
    let query = params.query()?;
    let groups = csat::report(&state.store, &query.range, query.group_by, query.channel).await?;
    let names = group_names(&state.store).await?;
    Ok(Json(CsatReport {
        group_by: query.group_by,
        groups: groups
            .into_iter()
            .map(|group| CsatGroupView {
                name: names.get(&group.key).cloned(),
                group,
            })
            .collect(),
    }))
}
