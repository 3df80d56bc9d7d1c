//! The wire contract between connectors, the core and the web: every message from every channel becomes
//! one [`InboundEvent`], every reply one [`OutboundMessage`], every state change one [`DomainEvent`].
//!
//! All payloads are JSON and carry `schema_version`. Decoders accept unknown fields so a newer producer
//! can add optional data without breaking older consumers; any other `schema_version` is refused.
//! Documented for outside producers in `docs/envelope.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::{ChannelId, ContactId, ConversationId, MessageId};

/// The version written by this build and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invalid envelope at `{path}`: {message}")]
    Json { path: String, message: String },
    #[error("unsupported schema_version {found} (this build reads {SCHEMA_VERSION})")]
    SchemaVersion { found: u32 },
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    let value = versioned(bytes)?;
    decode_value(value)
}

/// Parses the JSON and checks `schema_version`.
fn versioned(bytes: &[u8]) -> Result<serde_json::Value, EnvelopeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json {
            path: String::new(),
            message: format!("not JSON: {e}"),
        })?;
    match value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(found) if found == u64::from(SCHEMA_VERSION) => Ok(value),
        Some(found) => Err(EnvelopeError::SchemaVersion {
            found: u32::try_from(found).unwrap_or(u32::MAX),
        }),
        None => Err(EnvelopeError::Json {
            path: "schema_version".into(),
            message: "missing or not a number".into(),
        }),
    }
}

/// The dotted path of the failing field makes a dead letter readable for operators.
fn decode_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, EnvelopeError> {
    serde_path_to_error::deserialize(value).map_err(|e| EnvelopeError::Json {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// The name of a channel kind (`email`, `webhook`, …): which connector serves the channel and
/// which threading rules apply. The kinds themselves live in the connectors' registry; to the core
/// a kind is a name, so adding one needs no change here. 1 to 23 bytes of `a-z`, `0-9` and `_`,
/// starting with a letter; kept inline so it stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKind {
    len: u8,
    bytes: [u8; ChannelKind::MAX_LEN],
}

impl ChannelKind {
    /// Longest kind name.
    pub const MAX_LEN: usize = 23;
    /// The generic signed webhook channel.
    pub const WEBHOOK: ChannelKind = ChannelKind::named("webhook");
    /// A support mailbox.
    pub const EMAIL: ChannelKind = ChannelKind::named("email");

    /// A kind from a literal; an invalid name fails the build when used in a `const`.
    pub const fn named(name: &'static str) -> Self {
        match Self::from_bytes(name.as_bytes()) {
            Some(kind) => kind,
            None => panic!("a channel kind is 1 to 23 bytes of a-z, 0-9 and _"),
        }
    }

    const fn from_bytes(name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() > Self::MAX_LEN || !name[0].is_ascii_lowercase() {
            return None;
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        let mut i = 0;
        while i < name.len() {
            let b = name[i];
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return None;
            }
            bytes[i] = b;
            i += 1;
        }
        Some(ChannelKind {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::from_bytes(s.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelKind({})", self.as_str())
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChannelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
            .ok_or_else(|| format!("{s:?} is not a channel kind name (1 to 23 of a-z, 0-9 and _)"))
    }
}

impl Serialize for ChannelKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChannelKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything that flows from connectors into the core (`inbox.inbound`).
// Messages are the common case: boxing them would add an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundEvent {
    Message(InboundMessage),
    Delivery(DeliveryReport),
    /// Input a connector could not turn into a message (a malformed email): dead-lettered with its
    /// error, so the source may move its cursor past it without losing it.
    Rejected(Rejected),
}

/// Input a connector could not normalize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub channel_id: ChannelId,
    /// Where the input is: its blob (the raw .eml) or its text.
    pub payload: String,
    pub error: String,
    pub received_at: DateTime<Utc>,
}

/// [`InboundEvent`] with its `schema_version`, as it travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEnvelope {
    pub schema_version: u32,
    #[serde(flatten)]
    pub event: InboundEvent,
}

impl InboundEvent {
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = InboundEnvelope {
            schema_version: SCHEMA_VERSION,
            event: self.clone(),
        };
        // Serializing plain data structs with string keys cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        // Dispatch on `type` by hand: serde's internally tagged enums lose the field path.
        let value = versioned(bytes)?;
        match value.get("type").and_then(serde_json::Value::as_str) {
            Some("message") => decode_value(value).map(InboundEvent::Message),
            Some("delivery") => decode_value(value).map(InboundEvent::Delivery),
            Some("rejected") => decode_value(value).map(InboundEvent::Rejected),
            Some(other) => Err(EnvelopeError::Json {
                path: "type".into(),
                message: format!(
                    "unknown type `{other}`, expected `message`, `delivery` or `rejected`"
                ),
            }),
            None => Err(EnvelopeError::Json {
                path: "type".into(),
                message: "missing".into(),
            }),
        }
    }

    /// The channel the event belongs to.
    pub fn channel_id(&self) -> ChannelId {
        match self {
            InboundEvent::Message(m) => m.channel_id,
            InboundEvent::Delivery(d) => d.channel_id,
            InboundEvent::Rejected(r) => r.channel_id,
        }
    }

    /// Bus partition key (docs/envelope.md, "Partition key"): one customer's events stay in order.
    pub fn partition_key(&self) -> String {
        match self {
            InboundEvent::Message(m) => format!("{}:{}", m.channel_id, m.from.handle),
            InboundEvent::Delivery(d) => format!("{}:{}", d.channel_id, d.conversation_id),
            InboundEvent::Rejected(r) => format!("{}:rejected", r.channel_id),
        }
    }
}

/// One message received on a channel, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Minted by the connector (UUIDv7); becomes the stored message's id.
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub channel_kind: ChannelKind,
    /// The channel's own id of the message (Message-ID, chat:msg, status id, webhook external_id).
    pub external_id: String,
    #[serde(default)]
    pub thread: ThreadHints,
    pub from: Party,
    #[serde(default)]
    pub to: Vec<Party>,
    /// Provider time, if the channel gives one.
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    pub body: Body,
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// Where the raw source (the .eml, the JSON update) is kept so it can be re-parsed.
    #[serde(default)]
    pub raw: Option<BlobRef>,
    /// Sent by a machine: joins a conversation the rules find, never opens one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<Automated>,
    /// Set when the sender edited the message: this is the message again as it reads now. The
    /// stored message with the same external id is updated (its earlier version kept) instead
    /// of a second one being added; an edit older than the stored version changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    /// Who wrote it when that is not `from`: in a group chat `from` is the group (the
    /// conversation's customer, where replies go) and `author` the member who wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Party>,
    /// Set on each part of a message the channel sends in pieces (a Telegram album comes as one
    /// update per photo): the key the parts share, unique within the channel. The first part
    /// stored is the message; a later part adds its attachments (and its text, when the message
    /// had none) to it instead of being a second message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of: Option<String>,
}

/// Mail a machine sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Automated {
    /// An auto-reply (out of office, ticket acknowledgement).
    AutoReply,
    /// A delivery failure notice; `original` is the external id of the message that bounced,
    /// `reason` what the receiving server said.
    Bounce {
        #[serde(default)]
        original: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// What a channel tells us about where a message belongs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadHints {
    /// External id of the message this one replies to.
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// Further external ids of the thread (email References), oldest first.
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// Chat or thread id on the channel, if it has one.
    #[serde(default)]
    pub chat_id: Option<String>,
}

/// A sender or recipient on a channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Party {
    /// The channel's handle: email address, Telegram user id, `@user@host`, webhook user id.
    pub handle: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A verified email address; links contacts across channels.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    #[serde(default)]
    pub text: String,
    /// Sanitized HTML, when the channel has any.
    #[serde(default)]
    pub html: Option<String>,
}

/// An attachment kept in blob storage; only the reference travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentRef {
    pub name: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// Blob location (`object_store` path or URL).
    pub blob: BlobRef,
}

/// A location in blob storage (an `object_store` path) or an external URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct BlobRef(pub String);

/// Outcome of delivering an [`OutboundMessage`], reported back by the connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// The outbound message this reports on.
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub status: DeliveryStatus,
    /// The channel's id of the delivered message, used to thread the customer's answer to it.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The last error, for `failed`.
    #[serde(default)]
    pub error: Option<String>,
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

/// Delivery state of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// A reply to deliver on the conversation's channel (`inbox.outbound`, key = conversation id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub schema_version: u32,
    /// The stored message's id; receivers use it as an idempotency key.
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub channel_kind: ChannelKind,
    /// The customer's handle on the channel.
    pub to: Party,
    #[serde(default)]
    pub thread: ThreadHints,
    pub body: Body,
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// Display name of the agent who wrote it.
    #[serde(default)]
    pub author: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl OutboundMessage {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        decode(bytes)
    }
}

/// What changed in a conversation: one per row of the conversation log, written to the event
/// outbox in the transaction of the change and relayed to `inbox.events` (key = conversation id)
/// at least once, so the topic is the complete change stream. Live views follow it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub schema_version: u32,
    /// The event's id, the conversation-log row's id when it records one: consumers drop a
    /// re-delivered event by it.
    pub id: Uuid,
    pub kind: DomainEventKind,
    pub conversation_id: ConversationId,
    #[serde(default)]
    pub message_id: Option<MessageId>,
    #[serde(default)]
    pub contact_id: Option<ContactId>,
    pub at: DateTime<Utc>,
    /// Position in the change stream, increasing in commit order within a conversation; set by
    /// the relay. Sorting one conversation's events by it gives the order of its changes even
    /// after a re-delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// The conversation-log kind (`opened`, `assigned`, `replied`, …, or `read`), finer than `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// Who made the change: `contact`, `agent` or `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_kind: Option<String>,
    /// The contact's or agent's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// The change's details as in the conversation log (`{"from":"open","to":"resolved"}`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl DomainEvent {
    pub fn new(kind: DomainEventKind, conversation_id: ConversationId, at: DateTime<Utc>) -> Self {
        DomainEvent {
            schema_version: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            kind,
            conversation_id,
            message_id: None,
            contact_id: None,
            at,
            seq: None,
            change: None,
            actor_kind: None,
            actor_id: None,
            data: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        decode(bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainEventKind {
    ConversationOpened,
    ConversationReopened,
    ConversationUpdated,
    MessageReceived,
    MessageSent,
    NoteAdded,
    DeliveryUpdated,
    /// A customer edited a stored message on its channel.
    MessageEdited,
}

impl InboundMessage {
    /// A plain-text message from `handle`, received now, nothing else set: what a source starts
    /// from and fills in (`InboundMessage { sent_at, ..InboundMessage::text(…) }`).
    pub fn text(
        channel_id: ChannelId,
        channel_kind: ChannelKind,
        external_id: impl Into<String>,
        handle: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        InboundMessage {
            id: MessageId::new(),
            channel_id,
            channel_kind,
            external_id: external_id.into(),
            thread: ThreadHints::default(),
            from: Party {
                handle: handle.into(),
                ..Party::default()
            },
            to: Vec::new(),
            sent_at: None,
            received_at: Utc::now(),
            body: Body {
                text: text.into(),
                html: None,
            },
            attachments: Vec::new(),
            raw: None,
            automated: None,
            edited_at: None,
            author: None,
            part_of: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_message() -> InboundMessage {
        InboundMessage {
            id: MessageId::new(),
            channel_id: ChannelId::new(),
            channel_kind: ChannelKind::WEBHOOK,
            external_id: "ext-1".into(),
            thread: ThreadHints {
                in_reply_to: Some("ext-0".into()),
                references: vec!["ext-0".into()],
                subject: Some("Order 42".into()),
                chat_id: None,
            },
            from: Party {
                handle: "u-17".into(),
                name: Some("Ada".into()),
                email: Some("ada@example.com".into()),
                phone: None,
            },
            to: vec![],
            sent_at: Some(Utc::now()),
            received_at: Utc::now(),
            body: Body {
                text: "Hello — ünïcode ✓".into(),
                html: None,
            },
            attachments: vec![AttachmentRef {
                name: "a.png".into(),
                content_type: Some("image/png".into()),
                size: Some(10),
                blob: BlobRef("blobs/a.png".into()),
            }],
            raw: Some(BlobRef("raw/1.json".into())),
            automated: None,
            edited_at: None,
            author: None,
            part_of: None,
        }
    }

    #[test]
    fn inbound_message_round_trips() {
        let event = InboundEvent::Message(sample_message());
        let json = event.to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["type"], "message");
        assert_eq!(InboundEvent::from_json(&json).unwrap(), event);
    }

    #[test]
    fn delivery_report_round_trips() {
        let event = InboundEvent::Delivery(DeliveryReport {
            message_id: MessageId::new(),
            conversation_id: ConversationId::new(),
            channel_id: ChannelId::new(),
            status: DeliveryStatus::Failed,
            external_id: None,
            error: Some("HTTP 500".into()),
            attempts: 3,
            at: Utc::now(),
        });
        assert_eq!(InboundEvent::from_json(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn outbound_and_domain_events_round_trip() {
        let out = OutboundMessage {
            schema_version: SCHEMA_VERSION,
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            channel_id: ChannelId::new(),
            channel_kind: ChannelKind::WEBHOOK,
            to: Party {
                handle: "u-1".into(),
                ..Party::default()
            },
            thread: ThreadHints::default(),
            body: Body {
                text: "hi".into(),
                html: None,
            },
            attachments: vec![],
            author: Some("Agent".into()),
            created_at: Utc::now(),
        };
        assert_eq!(OutboundMessage::from_json(&out.to_json()).unwrap(), out);
        let ev = DomainEvent::new(
            DomainEventKind::MessageReceived,
            ConversationId::new(),
            Utc::now(),
        );
        assert_eq!(DomainEvent::from_json(&ev.to_json()).unwrap(), ev);
    }

    #[test]
    fn other_schema_versions_are_refused() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&InboundEvent::Message(sample_message()).to_json()).unwrap();
        value["schema_version"] = 2.into();
        let err = InboundEvent::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, EnvelopeError::SchemaVersion { found: 2 }));
    }

    #[test]
    fn unknown_fields_are_accepted_and_garbage_is_an_error() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&InboundEvent::Message(sample_message()).to_json()).unwrap();
        value["added_later"] = "x".into();
        assert!(InboundEvent::from_json(&serde_json::to_vec(&value).unwrap()).is_ok());
        assert!(InboundEvent::from_json(b"not json").is_err());
        let missing = InboundEvent::from_json(br#"{"schema_version":1,"type":"message"}"#);
        assert!(missing.unwrap_err().to_string().contains("missing field"));
        value["from"]["handle"] = 42.into();
        let err = InboundEvent::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(err.to_string().contains("`from.handle`"), "{err}");
        value["type"] = "poll".into();
        let err = InboundEvent::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(err.to_string().contains("`type`"), "{err}");
    }
}
