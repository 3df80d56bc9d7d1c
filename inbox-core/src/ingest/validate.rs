//! Step 0 of the funnel: a message is checked against its channel and its values normalized
//! (time, sender, the threading keys its channel's rules use); what fails is dead-lettered with
//! the field at fault.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{IngestSettings, reply_references};
use crate::channel_rules::ChannelRules;
use crate::envelope::InboundMessage;
use crate::identity::{EmailAddress, channel_identity};
use crate::ids::ConversationId;
use crate::model::{Channel, Identity, to_millis};
use crate::threading;

/// Longest accepted external id, handle and text; beyond them a record is dead-lettered.
const MAX_EXTERNAL_ID: usize = 1_000;
const MAX_HANDLE: usize = 500;
const MAX_TEXT: usize = 1 << 20;

/// A message that passed validation, with its normalized values.
pub(super) struct ValidMessage {
    pub(super) index: usize,
    pub(super) message: InboundMessage,
    pub(super) rules: ChannelRules,
    pub(super) identity: Identity,
    pub(super) verified_email: Option<EmailAddress>,
    pub(super) sent_at: i64,
    /// The provider's time when it was replaced by `sent_at`.
    pub(super) claimed_sent_at: Option<i64>,
    /// Email: the conversation named by a reply token in a recipient or a referenced Message-ID.
    pub(super) token: Option<ConversationId>,
    /// Email: the normalized subject.
    pub(super) subject_key: Option<String>,
}

/// Checks a message against its channel and normalizes its time and sender.
pub(super) fn validate(
    m: &InboundMessage,
    channel: Option<&Channel>,
    settings: &IngestSettings,
) -> Result<ValidMessage, String> {
    let channel = channel.ok_or_else(|| format!("channel_id: unknown channel {}", m.channel_id))?;
    // A paused channel's intake refuses new input, but what it accepted before the pause is
    // stored; a deleted channel's is not.
    if channel.deleted_at.is_some() {
        return Err(format!("channel_id: channel {} is deleted", m.channel_id));
    }
    if channel.kind != m.channel_kind {
        return Err(format!(
            "channel_kind: message says {} but channel {} is {}",
            m.channel_kind.as_str(),
            channel.id,
            channel.kind.as_str()
        ));
    }
    if m.external_id.trim().is_empty() || m.external_id.len() > MAX_EXTERNAL_ID {
        return Err(format!(
            "external_id: must be 1 to {MAX_EXTERNAL_ID} characters"
        ));
    }
    let handle = m.from.handle.trim();
    if handle.is_empty() || handle.len() > MAX_HANDLE {
        return Err(format!("from.handle: must be 1 to {MAX_HANDLE} characters"));
    }
    if m.body.text.trim().is_empty()
        && m.body.html.as_deref().is_none_or(|h| h.trim().is_empty())
        && m.attachments.is_empty()
    {
        return Err("text: a message needs text, html or an attachment".into());
    }
    if m.body.text.len() > MAX_TEXT || m.body.html.as_ref().is_some_and(|h| h.len() > MAX_TEXT) {
        return Err(format!("text: longer than {MAX_TEXT} bytes"));
    }
    if let Some(field) = field_with_nul(m) {
        return Err(format!("{field}: contains a NUL character"));
    }
    if let Some(author) = &m.author
        && (author.handle.trim().is_empty() || author.handle.len() > MAX_HANDLE)
    {
        return Err(format!(
            "author.handle: must be 1 to {MAX_HANDLE} characters"
        ));
    }
    if m.part_of
        .as_ref()
        .is_some_and(|k| k.trim().is_empty() || k.len() > MAX_EXTERNAL_ID)
    {
        return Err(format!(
            "part_of: must be 1 to {MAX_EXTERNAL_ID} characters"
        ));
    }
    let verified_email = match &m.from.email {
        Some(email) => Some(EmailAddress::parse(email).map_err(|e| format!("from.email: {e}"))?),
        None => None,
    };
    let earliest = chrono::Duration::from_std(settings.max_backdate)
        .ok()
        .and_then(|back| channel.created_at.checked_sub_signed(back))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let sent = effective_sent_at(m.sent_at, m.received_at, earliest, settings.max_clock_skew);
    Ok(ValidMessage {
        index: 0,
        message: m.clone(),
        rules: channel.rules,
        identity: channel_identity(channel.rules.identity, channel.kind, channel.id, handle),
        verified_email,
        sent_at: sent.at,
        claimed_sent_at: sent.claimed,
        token: channel
            .rules
            .reply_token
            .then(|| {
                m.to.iter()
                    .map(|p| p.handle.as_str())
                    .chain(reply_references(m))
                    .find_map(threading::find_reply_token)
            })
            .flatten(),
        subject_key: channel
            .rules
            .subject
            .then(|| {
                m.thread
                    .subject
                    .as_deref()
                    .map(threading::normalize_subject)
            })
            .flatten()
            .filter(|key| !key.is_empty()),
    })
}

/// The first text field holding a NUL character: PostgreSQL cannot store one, and a record that
/// cannot be stored must be dead-lettered rather than fail its whole batch again and again.
pub fn field_with_nul(m: &InboundMessage) -> Option<&'static str> {
    let nul = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(nul);
    if nul(&m.external_id) {
        Some("external_id")
    } else if nul(&m.from.handle) {
        Some("from.handle")
    } else if opt(&m.from.name) {
        Some("from.name")
    } else if opt(&m.from.email) {
        Some("from.email")
    } else if opt(&m.from.phone) {
        Some("from.phone")
    } else if m
        .author
        .as_ref()
        .is_some_and(|a| nul(&a.handle) || opt(&a.name))
    {
        Some("author")
    } else if opt(&m.part_of) {
        Some("part_of")
    } else if nul(&m.body.text) {
        Some("text")
    } else if opt(&m.body.html) {
        Some("html")
    } else if opt(&m.thread.subject) {
        Some("subject")
    } else if opt(&m.thread.in_reply_to) || m.thread.references.iter().any(|r| nul(r)) {
        Some("in_reply_to")
    } else if m.attachments.iter().any(|a| nul(&a.name) || nul(&a.blob.0)) {
        Some("attachments")
    } else {
        None
    }
}

/// When a message was sent, as its history orders it (epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentAt {
    pub at: i64,
    /// The provider's time, when it was not believed and `at` is the arrival time instead.
    pub claimed: Option<i64>,
}

/// Provider time, unless it is too far in the future or before `earliest` to be trusted
/// (docs/threading.md, "Time and order"); then the arrival time, with the claim kept.
pub fn effective_sent_at(
    sent_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    earliest: DateTime<Utc>,
    max_skew: Duration,
) -> SentAt {
    let received = to_millis(received_at);
    let latest = received.saturating_add(max_skew.as_millis() as i64);
    match sent_at.map(to_millis) {
        None => SentAt {
            at: received,
            claimed: None,
        },
        Some(sent) if (to_millis(earliest)..=latest).contains(&sent) => SentAt {
            at: sent,
            claimed: None,
        },
        Some(sent) => SentAt {
            at: received,
            claimed: Some(sent),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ChannelKind;
    use crate::ids::ChannelId;

    fn message() -> InboundMessage {
        InboundMessage::text(
            ChannelId::new(),
            ChannelKind::WEBHOOK,
            "m-1",
            "u-1",
            "hello",
        )
    }

    #[test]
    fn a_nul_is_reported_in_the_field_that_holds_it() {
        assert_eq!(field_with_nul(&message()), None);
        let mut phone = message();
        phone.from.phone = Some("+49\0 30".into());
        assert_eq!(field_with_nul(&phone), Some("from.phone"));
        let mut email = message();
        email.from.email = Some("a\0@example.com".into());
        assert_eq!(field_with_nul(&email), Some("from.email"));
        let mut name = message();
        name.from.name = Some("A\0da".into());
        assert_eq!(field_with_nul(&name), Some("from.name"));
    }
}
