//! `GET /api/v1/search?q=&cursor=&limit=`: full-text search over messages and notes.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use inbox_core::store::SearchPage;
use serde::Deserialize;

use super::conversations::parse_cursor;
use super::{ApiError, CurrentAgent, WebState};

pub fn router() -> Router<WebState> {
    Router::new().route("/api/v1/search", get(search))
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Hits newest first; `snippet` is plain, unescaped text and `highlights` the byte ranges that
/// matched (render escaped).
async fn search(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Query(query): Query<SearchQuery>,
) -> Result<Json<SearchPage>, ApiError> {
    if query.q.len() > 1_000 {
        return Err(ApiError::invalid("q", "at most 1000 bytes"));
    }
    let limit = query.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let cursor = parse_cursor(query.cursor.as_deref(), "cursor")?;
    Ok(Json(
        state
            .store
            .search_messages(&query.q, cursor.as_ref(), limit)
            .await?,
    ))
}
