//! `GET /api/v1/search?q=&cursor=&limit=`: full-text search over messages and notes.

use crate::http::route_table::RouteTable;
use axum::Json;
use axum::extract::{Query, State};
use inbox_core::store::SearchPage;
use serde::Deserialize;
use utoipa::IntoParams;

use super::conversations::{parse_cursor, parse_limit};
use super::{ApiError, CurrentAgent, WebState};

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new().get("/api/v1/search", search)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// The words to find (at most 1000 bytes of UTF-8).
    #[serde(default)]
    #[param(max_length = 1000)]
    q: String,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[+-]?[0-9]{1,18}_[^\u0000]*$")]
    cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// Hits newest first; `snippet` is plain, unescaped text and `highlights` the byte ranges that
/// matched (render escaped).
#[utoipa::path(
    get,
    path = "/api/v1/search",
    tag = "search",
    params(SearchQuery),
    responses(
        (status = 200, description = "A page of hits, newest first.", body = SearchPage),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
async fn search(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Query(query): Query<SearchQuery>,
) -> Result<Json<SearchPage>, ApiError> {
    if query.q.len() > 1_000 {
        return Err(ApiError::invalid("q", "at most 1000 bytes"));
    }
    let limit = parse_limit(query.limit.as_deref(), 100)?;
    let cursor = parse_cursor(query.cursor.as_deref(), "cursor")?;
    Ok(Json(
        state
            .store
            .search_messages(&query.q, cursor.as_ref(), limit)
            .await?,
    ))
}
