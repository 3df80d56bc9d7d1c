//! Canned replies: managed on `/canned`, offered in the reply box when a line starts with `/`.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use inbox_core::store::{CannedReplyId, CannedReplyInput};
use serde::{Deserialize, Serialize};

use super::view::Layout;
use super::{UiError, UiResult, Viewer, back_to, refused, render};
use crate::http::WebState;

#[derive(Debug)]
pub struct CannedView {
    pub id: String,
    pub shortcut: String,
    pub title: String,
    pub body: String,
    pub personal: bool,
    /// The viewer may delete it (its creator, or an admin for a team reply).
    pub deletable: bool,
}

#[derive(Template)]
#[template(path = "canned.html")]
pub struct CannedPage {
    pub layout: Layout,
    pub replies: Vec<CannedView>,
    pub error: Option<String>,
    pub draft: CannedView,
}

async fn canned_page(
    state: &WebState,
    viewer: &Viewer,
    error: Option<String>,
    draft: CannedView,
) -> UiResult {
    let replies = state
        .store
        .canned_replies("", Some(viewer.agent.id))
        .await?
        .into_iter()
        .map(|c| CannedView {
            id: c.id.to_string(),
            deletable: c.changeable_by(&viewer.agent),
            personal: c.personal,
            shortcut: c.shortcut,
            title: c.title,
            body: c.body,
        })
        .collect();
    render(&CannedPage {
        layout: viewer.layout("Canned replies", "canned"),
        replies,
        error,
        draft,
    })
}

fn empty_draft() -> CannedView {
    CannedView {
        id: String::new(),
        shortcut: String::new(),
        title: String::new(),
        body: String::new(),
        personal: false,
        deletable: false,
    }
}

pub async fn page(State(state): State<WebState>, viewer: Viewer) -> UiResult {
    canned_page(&state, &viewer, None, empty_draft()).await
}

#[derive(Debug, Deserialize)]
pub struct CannedForm {
    #[serde(default)]
    shortcut: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    /// A checkbox: `on` when ticked.
    #[serde(default)]
    personal: Option<String>,
}

pub async fn create(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<CannedForm>,
) -> UiResult {
    let personal = form.personal.is_some();
    let input = CannedReplyInput {
        shortcut: form.shortcut.clone(),
        title: form.title.clone(),
        body: form.body.clone(),
        personal,
    };
    match state
        .store
        .create_canned_reply(&input, Some(viewer.agent.id))
        .await
    {
        Ok(_) => Ok(back_to(None, "/canned")),
        Err(e) => {
            let message = UiError::from(e).to_string();
            let draft = CannedView {
                id: String::new(),
                shortcut: form.shortcut,
                title: form.title,
                body: form.body,
                personal,
                deletable: false,
            };
            refused(canned_page(&state, &viewer, Some(message), draft).await)
        }
    }
}

/// Deletes a canned reply: its creator may, and an admin may delete a team reply. Someone
/// else's personal reply is not found, as it is not shown.
pub async fn delete(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let id: CannedReplyId = id.parse().map_err(|_| UiError::NotFound("canned reply"))?;
    let reply = state
        .store
        .canned_reply(id)
        .await?
        .filter(|c| c.visible_to(&viewer.agent))
        .ok_or(UiError::NotFound("canned reply"))?;
    if !reply.changeable_by(&viewer.agent) {
        return Err(UiError::Forbidden);
    }
    if !state.store.delete_canned_reply(id).await? {
        return Err(UiError::NotFound("canned reply"));
    }
    Ok(back_to(None, "/canned"))
}

#[derive(Debug, Deserialize)]
pub struct PrefixQuery {
    #[serde(default)]
    prefix: String,
}

#[derive(Debug, Serialize)]
pub struct CannedJson {
    shortcut: String,
    title: String,
    body: String,
}

/// The replies for the reply box's `/` menu.
pub async fn json(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<PrefixQuery>,
) -> UiResult<Json<Vec<CannedJson>>> {
    Ok(Json(
        state
            .store
            .canned_replies(&query.prefix, Some(viewer.agent.id))
            .await?
            .into_iter()
            .map(|c| CannedJson {
                shortcut: c.shortcut,
                title: c.title,
                body: c.body,
            })
            .collect(),
    ))
}
