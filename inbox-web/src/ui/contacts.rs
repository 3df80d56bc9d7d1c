//! A customer: identities on every channel, conversations, and merging two contacts into one
//! (and undoing it: everything that moved goes back).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use inbox_core::actions;
use inbox_core::ids::ContactId;
use inbox_core::store::MergeId;
use serde::Deserialize;

use super::view::{ConversationItem, Layout, When};
use super::{UiError, UiResult, Viewer, back_to, refused, render};
use crate::http::WebState;

#[derive(Debug)]
pub struct MergeView {
    pub id: String,
    pub kept_id: String,
    pub absorbed_id: String,
    /// This contact absorbed the other one (else it was absorbed).
    pub kept_here: bool,
    pub identities: Vec<String>,
    pub conversations: usize,
    pub messages: i64,
    pub when: When,
    pub undone: bool,
}

#[derive(Template)]
#[template(path = "contact.html")]
pub struct ContactPage {
    pub layout: Layout,
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub identities: Vec<(String, String)>,
    pub conversations: Vec<ConversationItem>,
    pub merges: Vec<MergeView>,
    /// Set while this contact is merged into another one.
    pub merged_into: Option<String>,
    pub error: Option<String>,
}

async fn contact_page(
    state: &WebState,
    viewer: &Viewer,
    id: ContactId,
    error: Option<String>,
) -> UiResult {
    let (contact, identities) = state
        .store
        .contact(id)
        .await?
        .ok_or(UiError::NotFound("contact"))?;
    let merged_into = state
        .store
        .resolve_contact(id)
        .await?
        .filter(|k| *k != id)
        .map(|k| k.to_string());
    let channels: std::collections::HashMap<_, _> = state
        .store
        .channels()
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let conversations = state
        .store
        .contact_conversations(id)
        .await?
        .iter()
        .map(|c| ConversationItem::of(c, channels.get(&c.channel_id), None, false, ""))
        .collect();
    let merges = state
        .store
        .contact_merges(id)
        .await?
        .into_iter()
        .map(|m| MergeView {
            id: m.id.to_string(),
            kept_here: m.kept_id == id,
            kept_id: m.kept_id.to_string(),
            absorbed_id: m.absorbed_id.to_string(),
            identities: m
                .moved_identities
                .iter()
                .map(|i| format!("{} {}", i.namespace, i.handle))
                .collect(),
            conversations: m.moved_conversations.len(),
            messages: m.moved_messages,
            when: When::of(m.merged_at),
            undone: m.undone_at.is_some(),
        })
        .collect();
    render(&ContactPage {
        layout: viewer.layout(
            contact.name.clone().unwrap_or_else(|| "Customer".into()),
            "inbox",
        ),
        id: id.to_string(),
        name: contact.name.unwrap_or_default(),
        email: contact.email.unwrap_or_default(),
        phone: contact.phone.unwrap_or_default(),
        identities: identities
            .into_iter()
            .map(|i| (i.namespace, i.handle))
            .collect(),
        conversations,
        merges,
        merged_into,
        error,
    })
}

fn contact_id(raw: &str) -> UiResult<ContactId> {
    raw.parse().map_err(|_| UiError::NotFound("contact"))
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    contact_page(&state, &viewer, contact_id(&id)?, None).await
}

#[derive(Debug, Deserialize)]
pub struct MergeForm {
    /// The contact to merge into this one (its id, shown on its page).
    #[serde(default)]
    absorb: String,
}

pub async fn merge(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<MergeForm>,
) -> UiResult {
    let keep = contact_id(&id)?;
    let Ok(absorb) = form.absorb.trim().parse::<ContactId>() else {
        let error = "Paste the id of the other contact (shown on its page).".to_owned();
        return refused(contact_page(&state, &viewer, keep, Some(error)).await);
    };
    match actions::merge_contacts(&state.store, keep, absorb, &viewer.agent).await {
        Ok(merge) => {
            tracing::info!(%keep, %absorb, merge_id = %merge, agent_id = %viewer.agent.id, "Contacts merged.");
            Ok(back_to(Some(&format!("/contacts/{keep}")), "/inbox"))
        }
        Err(e) => {
            let error = UiError::from(e).to_string();
            refused(contact_page(&state, &viewer, keep, Some(error)).await)
        }
    }
}

pub async fn unmerge(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let merge: MergeId = id.parse().map_err(|_| UiError::NotFound("merge"))?;
    let record = state
        .store
        .contact_merge(merge)
        .await?
        .ok_or(UiError::NotFound("merge"))?;
    match actions::unmerge_contacts(&state.store, merge, &viewer.agent).await {
        Ok(()) => {
            tracing::info!(merge_id = %merge, agent_id = %viewer.agent.id, "Merge undone.");
            Ok(back_to(
                Some(&format!("/contacts/{}", record.kept_id)),
                "/inbox",
            ))
        }
        Err(e) => {
            let error = UiError::from(e).to_string();
            refused(contact_page(&state, &viewer, record.kept_id, Some(error)).await)
        }
    }
}
