//! The inbox: the conversation list with its filters, and the open conversation with the
//! customer's whole timeline, the reply box and the conversation's state.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use inbox_core::actions;
use inbox_core::envelope::AttachmentRef;
use inbox_core::ids::{AgentId, ChannelId, ConversationId, MessageId};
use inbox_core::model::{Channel, Conversation, ConversationStatus, Direction};
use inbox_core::store::{ConversationFilter, ConversationPatch, PageCursor};
use serde::Deserialize;

use crate::AssigneeFilter;

use super::view::{
    ChannelBadge, Choice, ConversationItem, EmailFrame, HistoryFragment, HistoryView, InboxPage,
    ListFragment, ListView, MessageFragment, MessageItem, MetaFragment, MetaView, Tab,
};
use super::{UiError, UiResult, Viewer, back_to, from_script, render};
use crate::http::WebState;

const LIST_PAGE: u32 = 30;
const HISTORY_PAGE: u32 = 40;

/// The list's filters as they appear in the URL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// Whose conversations: me, none, all (the default) or an agent's id.
    #[serde(default)]
    assignee: String,
    /// open, pending, snoozed, resolved or all.
    #[serde(default)]
    status: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    q: String,
    /// recent (the default) or due (soonest SLA deadline first).
    #[serde(default)]
    sort: String,
    #[serde(default)]
    cursor: String,
    /// The open conversation (the list marks it).
    #[serde(default)]
    selected: String,
}

impl ListQuery {
    fn assignee(&self) -> AssigneeFilter {
        AssigneeFilter::parse(&self.assignee).unwrap_or_default()
    }

    fn status(&self) -> &str {
        match self.status.as_str() {
            "open" | "pending" | "snoozed" | "resolved" | "all" => &self.status,
            _ => "open",
        }
    }

    /// The filters as a query string, with some of them replaced.
    fn with(&self, assignee: Option<AssigneeFilter>, status: Option<&str>) -> String {
        let mut pairs = vec![
            ("assignee", assignee.unwrap_or(self.assignee()).as_param()),
            ("status", status.unwrap_or(self.status()).to_owned()),
        ];
        for (k, v) in [
            ("channel", &self.channel),
            ("label", &self.label),
            ("q", &self.q),
            ("sort", &self.sort),
        ] {
            if !v.is_empty() {
                pairs.push((k, v.clone()));
            }
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    fn filter(&self, viewer: &Viewer) -> ConversationFilter {
        ConversationFilter {
            status: ConversationStatus::parse(self.status()),
            assignee: self.assignee().for_viewer(viewer.agent.id),
            channel: self.channel.parse::<ChannelId>().ok(),
            label: Some(self.label.trim().to_lowercase()).filter(|l| !l.is_empty()),
            q: Some(self.q.trim().to_owned()).filter(|q| !q.is_empty()),
            sort: crate::http::conversations::parse_sort(Some(&self.sort)).unwrap_or_default(),
            ..ConversationFilter::default()
        }
    }
}

fn count_label(count: i64) -> String {
    if count >= inbox_core::store::COUNT_CAP {
        format!("{}+", inbox_core::store::COUNT_CAP)
    } else {
        count.to_string()
    }
}

/// Channels and agents by id, to name them on the page.
struct Names {
    channels: HashMap<ChannelId, Channel>,
    agents: HashMap<AgentId, String>,
    agent_list: Vec<(AgentId, String)>,
}

async fn names(state: &WebState) -> UiResult<Names> {
    let channels = state.store.channels().await?;
    let agents = state.store.agents().await?;
    Ok(Names {
        channels: channels.into_iter().map(|c| (c.id, c)).collect(),
        agent_list: agents
            .iter()
            .filter(|a| !a.disabled)
            .map(|a| (a.agent.id, a.agent.name.clone()))
            .collect(),
        agents: agents
            .into_iter()
            .map(|a| (a.agent.id, a.agent.name))
            .collect(),
    })
}

async fn list_view(
    state: &WebState,
    viewer: &Viewer,
    query: &ListQuery,
    names: &Names,
    selected: Option<ConversationId>,
) -> UiResult<ListView> {
    let filter = query.filter(viewer);
    let cursor = PageCursor::decode(&query.cursor);
    let page = state
        .store
        .list_conversations(&filter, cursor.as_ref(), LIST_PAGE)
        .await?;
    let keep = query.with(None, None);
    let items: Vec<ConversationItem> = page
        .items
        .iter()
        .map(|c| {
            ConversationItem::of(
                c,
                names.channels.get(&c.channel_id),
                c.assignee_id.and_then(|a| names.agents.get(&a).cloned()),
                Some(c.id) == selected,
                &keep,
            )
        })
        .collect();
    let counts = state.store.conversation_counts(viewer.agent.id).await?;
    let assignee_tabs = [
        (AssigneeFilter::Me, "Mine", counts.mine),
        (AssigneeFilter::Nobody, "Unassigned", counts.unassigned),
        (AssigneeFilter::All, "All", counts.all),
    ]
    .into_iter()
    .map(|(assignee, label, count)| Tab {
        label,
        href: format!("/inbox?{}", query.with(Some(assignee), None)),
        current: query.assignee() == assignee,
        count: Some(count_label(count)),
    })
    .collect();
    let by = counts.by_status;
    let statuses = [
        ("open", "Open", Some(by.open)),
        ("pending", "Pending", Some(by.pending)),
        ("snoozed", "Snoozed", Some(by.snoozed)),
        ("resolved", "Resolved", None),
        ("all", "Any status", None),
    ]
    .into_iter()
    .map(|(s, label, count)| Tab {
        label,
        href: format!("/inbox?{}", query.with(None, Some(s))),
        current: query.status() == s,
        count: count.map(count_label),
    })
    .collect();
    let mut channels: Vec<Choice> = names
        .channels
        .values()
        .filter(|c| c.enabled)
        .map(|c| Choice {
            value: c.id.to_string(),
            label: c.name.clone(),
            selected: c.id.to_string() == query.channel,
        })
        .collect();
    channels.sort_by(|a, b| a.label.cmp(&b.label));
    let empty_hint = if names.channels.is_empty() {
        "No channels yet: an admin connects email or a webhook on the Channels page, and new conversations appear here live.".to_owned()
    } else if query.assignee() == AssigneeFilter::Me {
        "Nothing assigned to you in this view. Pick one from Unassigned, or press a on a conversation to take it.".to_owned()
    } else {
        "No conversations match these filters. New messages appear here live; try Any status or All.".to_owned()
    };
    Ok(ListView {
        assignee_tabs,
        statuses,
        next_href: page
            .next_cursor
            .map(|c| format!("/inbox?{keep}&cursor={c}")),
        items,
        query: keep,
        assignee: query.assignee().as_param(),
        status: query.status().to_owned(),
        label: query.label.clone(),
        sort: query.sort.clone(),
        q: query.q.clone(),
        channels,
        unread_total: counts.unread,
        empty_hint,
    })
}

pub async fn list(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> UiResult {
    let names = names(&state).await?;
    let list = list_view(&state, &viewer, &query, &names, None).await?;
    render(&InboxPage {
        layout: viewer.layout("Conversations", "inbox"),
        list,
        meta: None,
        history: None,
    })
}

/// The list alone, for the script's live refresh.
pub async fn list_fragment(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> UiResult {
    let names = names(&state).await?;
    let selected = query.selected.parse::<ConversationId>().ok();
    let list = list_view(&state, &viewer, &query, &names, selected).await?;
    render(&ListFragment { list })
}

async fn load(state: &WebState, id: &str) -> UiResult<Conversation> {
    let id: ConversationId = id.parse().map_err(|_| UiError::NotFound("conversation"))?;
    state
        .store
        .conversation(id)
        .await?
        .ok_or(UiError::NotFound("conversation"))
}

async fn meta_view(
    state: &WebState,
    viewer: &Viewer,
    c: &Conversation,
    names: &Names,
) -> UiResult<MetaView> {
    let (contact, identities) = state
        .store
        .contact(c.contact_id)
        .await?
        .ok_or(UiError::NotFound("contact"))?;
    let others = state.store.contact_conversations(c.contact_id).await?;
    // The customer's latest survey answer, if any.
    let csat = state
        .store
        .latest_event(c.id, inbox_core::model::EventKind::CsatAnswered)
        .await?
        .map(|e| {
            let rating = e.data["rating"].as_i64().unwrap_or_default();
            match e.data["comment"].as_str() {
                Some(comment) => format!("Customer rated {rating}/5: “{comment}”"),
                None => format!("Customer rated {rating}/5"),
            }
        });
    let contact_name = contact
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| c.contact_handle.clone());
    let mut assignees = vec![Choice {
        value: "none".into(),
        label: "Nobody".into(),
        selected: c.assignee_id.is_none(),
    }];
    assignees.push(Choice {
        value: "me".into(),
        label: format!("Me ({})", viewer.agent.name),
        selected: false,
    });
    for (id, name) in &names.agent_list {
        assignees.push(Choice {
            value: id.to_string(),
            label: name.clone(),
            selected: c.assignee_id == Some(*id),
        });
    }
    Ok(MetaView {
        id: c.id.to_string(),
        due: super::view::DueLabel::of(c, chrono::Utc::now()),
        csat,
        subject: c.subject.clone().unwrap_or_default(),
        status: c.status.as_str(),
        statuses: ["open", "pending", "snoozed", "resolved"]
            .into_iter()
            .map(|s| Choice {
                value: s.into(),
                label: s.into(),
                selected: c.status.as_str() == s,
            })
            .collect(),
        assignees,
        assignee_name: c
            .assignee_id
            .and_then(|a| names.agents.get(&a).cloned())
            .unwrap_or_default(),
        labels: c.labels.clone(),
        labels_csv: c.labels.join(", "),
        snoozed_until: c
            .snoozed_until
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        channel: ChannelBadge::of(names.channels.get(&c.channel_id)),
        contact_id: c.contact_id.to_string(),
        contact_name,
        identities: identities
            .into_iter()
            .map(|i| (i.namespace, i.handle))
            .collect(),
        other_conversations: others
            .iter()
            .filter(|o| o.id != c.id)
            .take(20)
            .map(|o| ConversationItem::of(o, names.channels.get(&o.channel_id), None, false, ""))
            .collect(),
        csrf: viewer.csrf.clone(),
    })
}

async fn history_view(
    state: &WebState,
    c: &Conversation,
    before: Option<&PageCursor>,
    names: &Names,
) -> UiResult<HistoryView> {
    let page = state
        .store
        .contact_messages(c.contact_id, before, HISTORY_PAGE)
        .await?;
    let current = c.id.to_string();
    Ok(HistoryView {
        messages: page
            .items
            .iter()
            .map(|m| MessageItem::of(m, names.channels.get(&m.channel_id), Some(&current)))
            .collect(),
        older_href: page
            .next_before
            .map(|b| format!("/conversations/{}/history?before={b}", c.id)),
    })
}

pub async fn show(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> UiResult {
    let c = load(&state, &id).await?;
    // Other agents' lists drop the unread marker too (through the event stream).
    state.store.mark_read(c.id, viewer.agent.id).await?;
    crate::http::signals::note_read(&state, &c).await;
    let names = names(&state).await?;
    let list = list_view(&state, &viewer, &query, &names, Some(c.id)).await?;
    let meta = meta_view(&state, &viewer, &c, &names).await?;
    let history = history_view(&state, &c, None, &names).await?;
    let title = meta.contact_name.clone();
    render(&InboxPage {
        layout: viewer.layout(title, "inbox"),
        list,
        meta: Some(meta),
        history: Some(history),
    })
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    before: String,
}

/// An older page of the timeline (the "Older messages" link, loaded in place by the script).
pub async fn history_fragment(
    State(state): State<WebState>,
    _viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> UiResult {
    let c = load(&state, &id).await?;
    let names = names(&state).await?;
    let before = PageCursor::decode(&query.before);
    let history = history_view(&state, &c, before.as_ref(), &names).await?;
    render(&HistoryFragment { history })
}

pub async fn meta_fragment(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let c = load(&state, &id).await?;
    let names = names(&state).await?;
    render(&MetaFragment {
        meta: meta_view(&state, &viewer, &c, &names).await?,
    })
}

/// One message of the customer's timeline (live updates insert or replace it).
pub async fn message_fragment(
    State(state): State<WebState>,
    _viewer: Viewer,
    Path((id, message)): Path<(String, String)>,
) -> UiResult {
    let c = load(&state, &id).await?;
    let message: MessageId = message.parse().map_err(|_| UiError::NotFound("message"))?;
    let m = state
        .store
        .message(message)
        .await?
        .ok_or(UiError::NotFound("message"))?;
    // Only this customer's messages (from any of their conversations) belong in this timeline.
    if m.conversation_id != c.id {
        let other = state.store.conversation(m.conversation_id).await?;
        if other.is_none_or(|o| o.contact_id != c.contact_id) {
            return Err(UiError::NotFound("message"));
        }
    }
    // The open page shows the customer's new message: an agent has read it.
    if m.conversation_id == c.id && m.direction == inbox_core::model::Direction::Inbound {
        crate::http::signals::note_read(&state, &c).await;
    }
    let names = names(&state).await?;
    let current = c.id.to_string();
    render(&MessageFragment {
        m: MessageItem::of(&m, names.channels.get(&m.channel_id), Some(&current)),
    })
}

#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    text: String,
    /// `reply` or `note`.
    #[serde(default)]
    kind: String,
    /// The refs `POST /api/v1/attachments` gave for the files the script uploaded, as JSON.
    #[serde(default)]
    attachments: String,
}

/// The uploaded files a reply carries, checked to be uploads that exist.
async fn uploaded(state: &WebState, raw: &str) -> UiResult<Vec<AttachmentRef>> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut refs: Vec<AttachmentRef> =
        serde_json::from_str(raw).map_err(|e| UiError::Invalid(format!("attachments: {e}")))?;
    crate::http::attachments::check_uploads(state, &mut refs)
        .await
        .map_err(|e| UiError::Invalid(e.to_string()))?;
    Ok(refs)
}

pub async fn reply(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ReplyForm>,
) -> UiResult {
    let c = load(&state, &id).await?;
    let private = form.kind == "note";
    let attachments = uploaded(&state, &form.attachments).await?;
    let posted = actions::post_message(
        &state.store,
        c.id,
        &viewer.agent,
        &form.text,
        private,
        &attachments,
    )
    .await?;
    if posted.outbound.is_some() {
        state.outbox_ready.notify_one();
    }
    if from_script(&headers) {
        let names = names(&state).await?;
        let current = c.id.to_string();
        let fragment = MessageFragment {
            m: MessageItem::of(
                &posted.message,
                names.channels.get(&posted.message.channel_id),
                Some(&current),
            ),
        };
        let mut response = render(&fragment)?;
        *response.status_mut() = StatusCode::CREATED;
        return Ok(response);
    }
    Ok(back_to(Some(&format!("/conversations/{}", c.id)), "/inbox"))
}

#[derive(Debug, Deserialize)]
pub struct UpdateForm {
    /// assign, status or labels.
    #[serde(default)]
    op: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    snoozed_until: String,
    #[serde(default)]
    labels: String,
}

/// `datetime-local` values carry no zone; the form's script sends UTC (`…Z`), a plain form is
/// read as UTC too.
fn parse_when(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|t| t.and_utc())
        })
}

pub async fn update(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<UpdateForm>,
) -> UiResult {
    let c = load(&state, &id).await?;
    let mut patch = ConversationPatch::default();
    match form.op.as_str() {
        "assign" => {
            patch.assignee = Some(match form.assignee.as_str() {
                "" | "none" => None,
                "me" => Some(viewer.agent.id),
                raw => Some(
                    raw.parse::<AgentId>()
                        .map_err(|_| UiError::Invalid("assignee: not an agent".into()))?,
                ),
            });
        }
        "status" => {
            let status = ConversationStatus::parse(&form.status)
                .ok_or_else(|| UiError::Invalid("status: unknown status".into()))?;
            if status == ConversationStatus::Snoozed {
                let until = parse_when(&form.snoozed_until).ok_or_else(|| {
                    UiError::Invalid("snoozed_until: pick when the conversation wakes up".into())
                })?;
                patch.snoozed_until = Some(until);
            }
            patch.status = Some(status);
        }
        "labels" => {
            let mut labels: Vec<String> = form
                .labels
                .split(',')
                .map(|l| l.trim().to_lowercase())
                .filter(|l| !l.is_empty())
                .collect();
            labels.sort();
            labels.dedup();
            patch.labels = Some(labels);
        }
        _ => return Err(UiError::Invalid("op: assign, status or labels".into())),
    }
    let links = inbox_core::csat::SurveyLinks {
        base_url: &state.public_url,
    };
    actions::update_conversation_with(&state.store, c.id, &viewer.agent, &patch, Some(links))
        .await?;
    // A resolution may have queued a survey message.
    state.outbox_ready.notify_one();
    if from_script(&headers) {
        let c = load(&state, &id).await?;
        let names = names(&state).await?;
        return render(&MetaFragment {
            meta: meta_view(&state, &viewer, &c, &names).await?,
        });
    }
    Ok(back_to(Some(&format!("/conversations/{}", c.id)), "/inbox"))
}

/// The sanitized HTML of an email, for the sandboxed frame: no script, no plugin, no remote
/// resource can load (the sanitizer removed them at ingest; this policy is the second wall).
pub async fn email_html(
    State(state): State<WebState>,
    _viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let id: MessageId = id.parse().map_err(|_| UiError::NotFound("message"))?;
    let m = state
        .store
        .message(id)
        .await?
        .ok_or(UiError::NotFound("message"))?;
    let html = match (m.direction, m.html) {
        (Direction::Note, _) | (_, None) => return Err(UiError::NotFound("message html")),
        (_, Some(html)) => html,
    };
    let body = askama::Template::render(&EmailFrame { html })?;
    let mut response = Html(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; \
             sandbox allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'",
        ),
    );
    response.headers_mut().insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}
