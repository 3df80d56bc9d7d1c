//! What the templates show: plain values prepared from the model, so templates only print (and
//! askama escapes everything they print).

use askama::Template;
use chrono::{DateTime, Utc};
use inbox_core::envelope::{AttachmentRef, ChannelKind, DeliveryStatus};
use inbox_core::model::{Channel, Conversation, Direction, Message, ThreadReason};

/// The frame around every signed-in page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// Which navigation entry is current: inbox, search, canned, channels, agents.
    pub nav: &'static str,
    pub agent_name: String,
    pub is_admin: bool,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub next: String,
    pub email: String,
    pub error: Option<String>,
}

/// A channel as the list and history mark it.
#[derive(Debug, Clone)]
pub struct ChannelBadge {
    pub icon: &'static str,
    pub kind: String,
    pub name: String,
}

impl ChannelBadge {
    pub fn of(channel: Option<&Channel>) -> Self {
        match channel {
            Some(c) => ChannelBadge {
                icon: icon(c.kind),
                kind: c.kind.to_string(),
                name: c.name.clone(),
            },
            None => ChannelBadge {
                icon: "?",
                kind: "unknown".into(),
                name: "unknown channel".into(),
            },
        }
    }
}

/// Each kind's icon, from the catalog of the build (set when the router is built).
static KIND_ICONS: std::sync::OnceLock<std::collections::HashMap<ChannelKind, &'static str>> =
    std::sync::OnceLock::new();

pub(crate) fn set_kind_icons(catalog: &dyn inbox_core::channel_catalog::ChannelCatalog) {
    let _ = KIND_ICONS.set(
        catalog
            .kinds()
            .into_iter()
            .map(|k| (k.kind, k.icon))
            .collect(),
    );
}

/// A kind this build no longer has shows as "?" (its name says which).
fn icon(kind: ChannelKind) -> &'static str {
    KIND_ICONS
        .get()
        .and_then(|icons| icons.get(&kind).copied())
        .unwrap_or("?")
}

/// A time as a machine-readable value (the script shows it in the agent's zone) and a fallback.
#[derive(Debug, Clone)]
pub struct When {
    pub iso: String,
    pub label: String,
}

impl When {
    pub fn of(at: DateTime<Utc>) -> Self {
        When {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            label: at.format("%b %-d, %H:%M UTC").to_string(),
        }
    }
}

/// One row of the conversation list.
#[derive(Debug, Clone)]
pub struct ConversationItem {
    pub id: String,
    pub href: String,
    pub name: String,
    pub subject: String,
    pub preview: String,
    pub when: When,
    pub status: &'static str,
    pub unread: i64,
    pub labels: Vec<String>,
    pub channel: ChannelBadge,
    pub assignee: Option<String>,
    pub selected: bool,
    pub due: Option<DueLabel>,
}

/// An SLA deadline as the list and the conversation show it: "first reply due in 12 min",
/// "resolution overdue by 2 h 05 min".
#[derive(Debug, Clone)]
pub struct DueLabel {
    pub text: String,
    pub overdue: bool,
    pub iso: String,
}

impl DueLabel {
    pub fn of(c: &Conversation, now: chrono::DateTime<chrono::Utc>) -> Option<DueLabel> {
        let at = c.sla_due_at?;
        let what = match c.sla_target.as_deref() {
            Some("first_reply") => "first reply",
            Some("next_reply") => "reply",
            Some("resolution") => "resolution",
            _ => "SLA",
        };
        let left = (at - now).num_seconds();
        let overdue = left < 0;
        let text = if overdue {
            format!("{what} overdue by {}", super::charts::human(-left as f64))
        } else {
            format!("{what} due in {}", super::charts::human(left as f64))
        };
        Some(DueLabel {
            text,
            overdue,
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

impl ConversationItem {
    pub fn of(
        c: &Conversation,
        channel: Option<&Channel>,
        assignee: Option<String>,
        selected: bool,
        query: &str,
    ) -> Self {
        let name = c
            .contact_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| c.contact_handle.clone());
        ConversationItem {
            id: c.id.to_string(),
            href: if query.is_empty() {
                format!("/conversations/{}", c.id)
            } else {
                format!("/conversations/{}?{query}", c.id)
            },
            name,
            subject: c.subject.clone().unwrap_or_default(),
            preview: c.preview.clone(),
            when: When::of(c.last_message_at),
            status: c.status.as_str(),
            unread: c.unread_count,
            labels: c.labels.clone(),
            channel: ChannelBadge::of(channel),
            assignee,
            selected,
            due: DueLabel::of(c, chrono::Utc::now()),
        }
    }
}

/// A filter tab with its count.
#[derive(Debug, Clone)]
pub struct Tab {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
    /// Shown next to the label; counts stop at a cap ("10000+").
    pub count: Option<String>,
}

/// The list column: filters, rows, the next page.
#[derive(Debug, Clone)]
pub struct ListView {
    pub assignee_tabs: Vec<Tab>,
    pub statuses: Vec<Tab>,
    pub items: Vec<ConversationItem>,
    pub next_href: Option<String>,
    /// The filters as a query string (without the cursor), for links that keep them.
    pub query: String,
    pub assignee: String,
    pub status: String,
    pub label: String,
    pub q: String,
    /// `due` when sorted by SLA deadline.
    pub sort: String,
    pub channels: Vec<Choice>,
    pub unread_total: i64,
    pub empty_hint: String,
}

/// An option of a select.
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Debug, Clone)]
pub struct AttachmentView {
    pub name: String,
    pub href: String,
    pub is_image: bool,
    pub size: String,
}

impl AttachmentView {
    pub fn of(a: &AttachmentRef) -> Self {
        let is_image = a
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("image/") && t != "image/svg+xml");
        let href = if a.blob.0.starts_with("http://") || a.blob.0.starts_with("https://") {
            a.blob.0.clone()
        } else {
            format!("/api/v1/attachments/{}", a.blob.0)
        };
        AttachmentView {
            name: a.name.clone(),
            href,
            is_image,
            size: a.size.map(human_size).unwrap_or_default(),
        }
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{} KB", b >> 10),
        b => format!("{b} B"),
    }
}

/// One message of the history.
#[derive(Debug, Clone)]
pub struct MessageItem {
    pub id: String,
    pub direction: &'static str,
    pub author: String,
    pub text: String,
    pub subject: String,
    /// Where the sandboxed frame loads the sanitized email HTML from.
    pub html_href: Option<String>,
    pub when: When,
    pub channel: ChannelBadge,
    pub delivery: Option<&'static str>,
    pub delivery_error: String,
    pub reason: &'static str,
    pub reason_title: String,
    pub attachments: Vec<AttachmentView>,
    /// Set when the message belongs to another conversation of the same customer.
    pub other_conversation: Option<String>,
    /// When the customer last edited it, and what it said before (oldest first).
    pub edited: Option<When>,
    pub earlier: Vec<EarlierVersion>,
}

/// What a message said before an edit.
#[derive(Debug, Clone)]
pub struct EarlierVersion {
    pub text: String,
    pub replaced: When,
}

impl MessageItem {
    pub fn of(m: &Message, channel: Option<&Channel>, current: Option<&str>) -> Self {
        let direction = match m.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Note => "note",
        };
        let author = m
            .sender_name
            .clone()
            .or_else(|| m.sender_handle.clone())
            .unwrap_or_else(|| match m.direction {
                Direction::Inbound => "Customer".into(),
                _ => "Agent".into(),
            });
        let attachments: Vec<AttachmentRef> =
            serde_json::from_value(m.attachments.clone()).unwrap_or_default();
        let conversation = m.conversation_id.to_string();
        MessageItem {
            id: m.id.to_string(),
            direction,
            author,
            text: m.text.clone(),
            subject: m.subject.clone().unwrap_or_default(),
            html_href: m
                .html
                .as_ref()
                .filter(|h| !h.trim().is_empty())
                .map(|_| format!("/messages/{}/html", m.id)),
            when: When::of(m.sent_at),
            channel: ChannelBadge::of(channel),
            delivery: m.delivery_status.map(|s| match s {
                DeliveryStatus::Queued => "queued",
                DeliveryStatus::Sent => "sent",
                DeliveryStatus::Failed => "failed",
            }),
            delivery_error: m.delivery_error.clone().unwrap_or_default(),
            reason: m.thread_reason.as_str(),
            reason_title: reason_title(m.thread_reason),
            attachments: attachments.iter().map(AttachmentView::of).collect(),
            other_conversation: (Some(conversation.as_str()) != current).then_some(conversation),
            edited: m.edited_at.map(When::of),
            earlier: m
                .revisions
                .iter()
                .map(|r| EarlierVersion {
                    text: r.text.clone(),
                    replaced: When::of(r.replaced_at),
                })
                .collect(),
        }
    }
}

fn reason_title(reason: ThreadReason) -> String {
    let why = match reason {
        ThreadReason::ReplyReference => "it answers a stored message (In-Reply-To/References)",
        ThreadReason::ReplyToken => "its recipient or references carry this conversation's token",
        ThreadReason::Subject => "same subject, same customer, same channel",
        ThreadReason::LatestConversation => "the customer's latest conversation on this channel",
        ThreadReason::NewConversation => "nothing matched: it opened this conversation",
        ThreadReason::Agent => "written here by an agent",
    };
    format!("Threaded here because {why}")
}

/// The open conversation's header and side panel (re-rendered after each change).
#[derive(Debug, Clone)]
pub struct MetaView {
    pub id: String,
    pub due: Option<DueLabel>,
    /// The customer's survey answer, in words.
    pub csat: Option<String>,
    pub subject: String,
    pub status: &'static str,
    pub statuses: Vec<Choice>,
    pub assignees: Vec<Choice>,
    pub assignee_name: String,
    pub labels: Vec<String>,
    pub labels_csv: String,
    pub snoozed_until: String,
    pub channel: ChannelBadge,
    pub contact_id: String,
    pub contact_name: String,
    pub identities: Vec<(String, String)>,
    pub other_conversations: Vec<ConversationItem>,
    pub csrf: String,
}

/// The history column: one page of the customer's timeline and the link to older messages.
#[derive(Debug, Clone)]
pub struct HistoryView {
    pub messages: Vec<MessageItem>,
    pub older_href: Option<String>,
}

#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxPage {
    pub layout: Layout,
    pub list: ListView,
    pub meta: Option<MetaView>,
    pub history: Option<HistoryView>,
}

#[derive(Template)]
#[template(path = "list.html")]
pub struct ListFragment {
    pub list: ListView,
}

#[derive(Template)]
#[template(path = "meta.html")]
pub struct MetaFragment {
    pub meta: MetaView,
}

#[derive(Template)]
#[template(path = "history.html")]
pub struct HistoryFragment {
    pub history: HistoryView,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessageFragment {
    pub m: MessageItem,
}

#[derive(Template)]
#[template(path = "email_frame.html")]
pub struct EmailFrame {
    pub html: String,
}
