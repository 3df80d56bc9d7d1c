//! Domain types as the store returns them and the API shows them.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::channel_rules::ChannelRules;
use crate::envelope::{ChannelKind, DeliveryStatus};
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId, MessageId};

/// Times are stored as Unix epoch milliseconds in both backends.
pub fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A configured channel instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: String,
    /// Kind-specific settings (JSON object).
    pub config: serde_json::Value,
    /// Shared signing secret; never serialized into API responses.
    #[serde(skip_serializing)]
    pub secret: String,
    /// False while paused: its intake refuses (retryably) and its source stops reading.
    pub enabled: bool,
    /// What the funnel does with its messages (from its kind, fixed at creation).
    pub rules: ChannelRules,
    pub created_at: DateTime<Utc>,
    /// Set when deleted: it neither receives nor sends, and its history stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Channel {
    /// Enabled and not deleted.
    pub fn is_active(&self) -> bool {
        self.enabled && self.deleted_at.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// A user of the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub id: ContactId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One (namespace, handle) pair that resolves to a contact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub namespace: String,
    pub handle: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Open,
    Pending,
    Snoozed,
    Resolved,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Open => "open",
            ConversationStatus::Pending => "pending",
            ConversationStatus::Snoozed => "snoozed",
            ConversationStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ConversationStatus::Open),
            "pending" => Some(ConversationStatus::Pending),
            "snoozed" => Some(ConversationStatus::Snoozed),
            "resolved" => Some(ConversationStatus::Resolved),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel_id: ChannelId,
    pub contact_id: ContactId,
    pub contact_handle: String,
    pub contact_name: Option<String>,
    pub status: ConversationStatus,
    pub assignee_id: Option<AgentId>,
    pub subject: Option<String>,
    pub labels: Vec<String>,
    /// Start of the last message's text.
    pub preview: String,
    pub message_count: i64,
    pub unread_count: i64,
    pub created_at: DateTime<Utc>,
    pub last_message_at: DateTime<Utc>,
    pub waiting_since: Option<DateTime<Utc>>,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The next SLA deadline (`null`: no target running).
    pub sla_due_at: Option<DateTime<Utc>>,
    /// Which target is due then: `first_reply`, `next_reply` or `resolution`.
    pub sla_target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// A reply to the customer.
    Outbound,
    /// A private note between agents.
    Note,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            "note" => Some(Direction::Note),
            _ => None,
        }
    }
}

/// Which threading rule (docs/threading.md) placed a message in its conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadReason {
    /// Rule 1: In-Reply-To/References or the channel's reply reference points at a stored message.
    ReplyReference,
    /// Rule 2: the email reply token.
    ReplyToken,
    /// Rule 3: same normalized subject, contact and channel.
    Subject,
    /// Rule 4: the contact's latest conversation on a chat-like channel.
    LatestConversation,
    /// Rule 5: nothing matched, a new conversation.
    NewConversation,
    /// Written by an agent inside the conversation (replies and notes).
    Agent,
}

impl ThreadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadReason::ReplyReference => "reply_reference",
            ThreadReason::ReplyToken => "reply_token",
            ThreadReason::Subject => "subject",
            ThreadReason::LatestConversation => "latest_conversation",
            ThreadReason::NewConversation => "new_conversation",
            ThreadReason::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reply_reference" => Some(ThreadReason::ReplyReference),
            "reply_token" => Some(ThreadReason::ReplyToken),
            "subject" => Some(ThreadReason::Subject),
            "latest_conversation" => Some(ThreadReason::LatestConversation),
            "new_conversation" => Some(ThreadReason::NewConversation),
            "agent" => Some(ThreadReason::Agent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: MessageId,
    /// Arrival order; ties in `sent_at` are broken by it.
    pub ingest_seq: i64,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub external_id: Option<String>,
    pub direction: Direction,
    pub contact_id: Option<ContactId>,
    pub agent_id: Option<AgentId>,
    pub sender_handle: Option<String>,
    pub sender_name: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    /// The files of the message, as references to blob storage.
    #[schema(value_type = Vec<crate::envelope::AttachmentRef>)]
    pub attachments: serde_json::Value,
    pub thread_reason: ThreadReason,
    pub sent_at: DateTime<Utc>,
    /// The time the provider claimed, when it was not believed: too far in the future, or too
    /// long before the channel existed. `sent_at` is then the arrival time.
    pub claimed_sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub delivery_status: Option<DeliveryStatus>,
    pub delivery_error: Option<String>,
    pub delivery_attempts: i64,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the customer last edited it on the channel.
    pub edited_at: Option<DateTime<Utc>>,
    /// Its earlier versions, oldest first (empty unless edited).
    pub revisions: Vec<MessageRevision>,
}

/// What a message said before an edit replaced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageRevision {
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<crate::envelope::AttachmentRef>)]
    pub attachments: serde_json::Value,
    /// When this version was written: the message's time, or its previous edit's.
    pub written_at: DateTime<Utc>,
    /// When the edit replaced it.
    pub replaced_at: DateTime<Utc>,
}

/// Kinds of rows in the conversation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Reopened,
    MessageReceived,
    Replied,
    Noted,
    Assigned,
    Unassigned,
    StatusChanged,
    Resolved,
    Snoozed,
    Labeled,
    DeliveryUpdated,
    /// An SLA target's deadline passed unmet (recorded once per deadline).
    SlaBreached,
    /// The customer answered the satisfaction survey.
    CsatAnswered,
    /// The customer edited a message on its channel (`data.previous_text`: what it said before).
    MessageEdited,
    /// A later part of a message sent in pieces (an album's photo) was added to it
    /// (`data.attachments_added`).
    MessagePartAdded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Reopened => "reopened",
            EventKind::MessageReceived => "message_received",
            EventKind::Replied => "replied",
            EventKind::Noted => "noted",
            EventKind::Assigned => "assigned",
            EventKind::Unassigned => "unassigned",
            EventKind::StatusChanged => "status_changed",
            EventKind::Resolved => "resolved",
            EventKind::Snoozed => "snoozed",
            EventKind::Labeled => "labeled",
            EventKind::DeliveryUpdated => "delivery_updated",
            EventKind::SlaBreached => "sla_breached",
            EventKind::CsatAnswered => "csat_answered",
            EventKind::MessageEdited => "message_edited",
            EventKind::MessagePartAdded => "message_part_added",
        }
    }
}

/// Who caused a conversation event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Contact(ContactId),
    Agent(AgentId),
    System,
}

impl Actor {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Actor::Contact(_) => "contact",
            Actor::Agent(_) => "agent",
            Actor::System => "system",
        }
    }

    pub(crate) fn id(self) -> Option<String> {
        match self {
            Actor::Contact(id) => Some(id.to_string()),
            Actor::Agent(id) => Some(id.to_string()),
            Actor::System => None,
        }
    }
}

/// A row of the conversation log as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConversationEvent {
    pub id: String,
    pub conversation_id: ConversationId,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub message_id: Option<MessageId>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}
