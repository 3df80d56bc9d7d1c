//! Threading rules (DESIGN §5): the first rule that matches wins and its name is stored on the
//! message. Pure functions over already-loaded state, so the funnel can decide a whole batch in
//! memory and the rules can be tested without a database.

use std::time::Duration;

use crate::envelope::ChannelKind;
use crate::model::{ConversationStatus, ThreadReason};
use crate::store::ConversationState;

/// Tunables of the threading rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadingPolicy {
    /// Rule 4: a resolved chat conversation is reopened by a new message within this window.
    pub chat_reopen_window: Duration,
    /// Rule 3: a resolved email conversation still collects same-subject mail within this window.
    pub subject_window: Duration,
}

impl Default for ThreadingPolicy {
    fn default() -> Self {
        ThreadingPolicy {
            chat_reopen_window: Duration::from_secs(24 * 3600),
            subject_window: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Into this existing conversation (index into the candidates given to [`place`]).
    Existing {
        reason: ThreadReason,
        candidate: Candidate,
    },
    /// Into a new conversation.
    New,
}

/// Which of the looked-up conversations a placement refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    ReplyTarget,
    Latest,
}

/// Decides the conversation of an inbound message.
///
/// - `reply_target`: the conversation of a stored message the new one references (rule 1);
/// - `latest`: the contact's most recently opened conversation on the channel (rule 4);
/// - `at_ms`: the message's time.
pub fn place(
    kind: ChannelKind,
    reply_target: Option<&ConversationState>,
    latest: Option<&ConversationState>,
    policy: &ThreadingPolicy,
    at_ms: i64,
) -> Placement {
    if reply_target.is_some() {
        return Placement::Existing {
            reason: ThreadReason::ReplyReference,
            candidate: Candidate::ReplyTarget,
        };
    }
    if kind.is_chat_like()
        && let Some(latest) = latest
    {
        let still_open = latest.status() != ConversationStatus::Resolved;
        let recently_resolved = latest.resolved_at.is_some_and(|resolved| {
            at_ms.saturating_sub(resolved) <= policy.chat_reopen_window.as_millis() as i64
        });
        if still_open || recently_resolved {
            return Placement::Existing {
                reason: ThreadReason::LatestConversation,
                candidate: Candidate::Latest,
            };
        }
    }
    Placement::New
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChannelId, ContactId, ConversationId};

    const HOUR: i64 = 3_600_000;

    fn conversation(status: ConversationStatus, resolved_at: Option<i64>) -> ConversationState {
        ConversationState {
            id: ConversationId::new(),
            channel_id: ChannelId::new(),
            contact_id: ContactId::new(),
            contact_handle: "u".into(),
            status: status.as_str().into(),
            assignee_id: None,
            subject: None,
            labels: "[]".into(),
            preview: String::new(),
            message_count: 1,
            unread_count: 0,
            created_at: 0,
            last_message_at: 0,
            waiting_since: None,
            snoozed_until: None,
            resolved_at,
        }
    }

    #[test]
    fn a_reply_reference_wins_over_everything() {
        let target = conversation(ConversationStatus::Resolved, Some(0));
        let latest = conversation(ConversationStatus::Open, None);
        let placement = place(
            ChannelKind::Webhook,
            Some(&target),
            Some(&latest),
            &ThreadingPolicy::default(),
            100 * 24 * HOUR,
        );
        assert_eq!(
            placement,
            Placement::Existing {
                reason: ThreadReason::ReplyReference,
                candidate: Candidate::ReplyTarget
            }
        );
    }

    #[test]
    fn chat_joins_the_latest_open_conversation() {
        for status in [
            ConversationStatus::Open,
            ConversationStatus::Pending,
            ConversationStatus::Snoozed,
        ] {
            let latest = conversation(status, None);
            let placement = place(
                ChannelKind::Telegram,
                None,
                Some(&latest),
                &ThreadingPolicy::default(),
                HOUR,
            );
            assert_eq!(
                placement,
                Placement::Existing {
                    reason: ThreadReason::LatestConversation,
                    candidate: Candidate::Latest
                }
            );
        }
    }

    #[test]
    fn chat_reopens_within_the_window_and_opens_anew_after_it() {
        let policy = ThreadingPolicy::default();
        let resolved = conversation(ConversationStatus::Resolved, Some(10 * HOUR));
        let within = place(
            ChannelKind::Webhook,
            None,
            Some(&resolved),
            &policy,
            33 * HOUR,
        );
        assert!(matches!(within, Placement::Existing { .. }));
        let after = place(
            ChannelKind::Webhook,
            None,
            Some(&resolved),
            &policy,
            35 * HOUR,
        );
        assert_eq!(after, Placement::New);
    }

    #[test]
    fn email_never_uses_the_latest_conversation_rule() {
        let latest = conversation(ConversationStatus::Open, None);
        let placement = place(
            ChannelKind::Email,
            None,
            Some(&latest),
            &ThreadingPolicy::default(),
            HOUR,
        );
        assert_eq!(placement, Placement::New);
    }

    #[test]
    fn nothing_known_opens_a_new_conversation() {
        assert_eq!(
            place(
                ChannelKind::Webhook,
                None,
                None,
                &ThreadingPolicy::default(),
                0
            ),
            Placement::New
        );
    }
}
