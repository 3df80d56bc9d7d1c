//! `/search?q=`: full text over every message and note, newest first.

use askama::Template;
use axum::extract::{Query, State};
use inbox_core::model::Direction;
use inbox_core::store::PageCursor;
use serde::Deserialize;

use super::view::{Layout, When};
use super::{UiResult, Viewer, render};
use crate::http::WebState;

const PAGE: u32 = 25;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

/// A piece of a snippet; `matched` pieces are wrapped in `<mark>` (the text itself is escaped).
#[derive(Debug)]
pub struct Piece {
    pub text: String,
    pub matched: bool,
}

#[derive(Debug)]
pub struct HitView {
    pub href: String,
    pub who: String,
    pub kind: &'static str,
    pub contact: String,
    pub when: When,
    pub pieces: Vec<Piece>,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPageView {
    pub layout: Layout,
    pub q: String,
    pub hits: Vec<HitView>,
    pub next_href: Option<String>,
    pub searched: bool,
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> UiResult {
    let q = query.q.trim().to_owned();
    let cursor = PageCursor::decode(&query.cursor);
    let page = if q.is_empty() {
        Default::default()
    } else {
        state
            .store
            .search_messages(&q, cursor.as_ref(), PAGE)
            .await?
    };
    let hits = page
        .items
        .iter()
        .map(|hit| HitView {
            href: format!(
                "/conversations/{}#m-{}",
                hit.conversation_id, hit.message_id
            ),
            who: hit.sender_name.clone().unwrap_or_default(),
            kind: match hit.direction {
                Direction::Inbound => "customer",
                Direction::Outbound => "reply",
                Direction::Note => "note",
            },
            contact: hit
                .contact_name
                .clone()
                .unwrap_or_else(|| "customer".into()),
            when: When::of(hit.sent_at),
            pieces: hit
                .snippet_parts()
                .into_iter()
                .map(|(text, matched)| Piece {
                    text: text.to_owned(),
                    matched,
                })
                .collect(),
        })
        .collect();
    let keep = serde_urlencoded::to_string([("q", q.as_str())]).unwrap_or_default();
    render(&SearchPageView {
        layout: viewer.layout(format!("Search {q}"), "search"),
        searched: !q.is_empty(),
        q,
        hits,
        next_href: page
            .next_cursor
            .map(|c| format!("/search?{keep}&cursor={c}")),
    })
}
