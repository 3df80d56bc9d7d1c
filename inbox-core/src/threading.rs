//! Threading rules (docs/threading.md): the first rule that matches wins and its name is stored on the
//! message. Pure functions over already-loaded state, so the funnel can decide a whole batch in
//! memory and the rules can be tested without a database.

use std::time::Duration;

use crate::channel_rules::ChannelRules;
use crate::ids::ConversationId;
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
    Token,
    Subject,
    Latest,
}

/// The conversations the rules may pick from, looked up beforehand.
#[derive(Debug, Clone, Copy, Default)]
pub struct Candidates<'a> {
    /// Rule 1: the conversation of a stored message the new one references.
    pub reply_target: Option<&'a ConversationState>,
    /// Rule 2: the conversation named by a reply token.
    pub token: Option<&'a ConversationState>,
    /// Rule 3: the contact's latest conversation on the channel with the same normalized subject.
    pub subject: Option<&'a ConversationState>,
    /// Rule 4: the contact's most recently opened conversation on the channel.
    pub latest: Option<&'a ConversationState>,
}

fn resolved_within(c: &ConversationState, window: Duration, at_ms: i64) -> bool {
    c.status() != ConversationStatus::Resolved
        || c.resolved_at
            .is_some_and(|resolved| at_ms.saturating_sub(resolved) <= window.as_millis() as i64)
}

/// Decides the conversation of an inbound message (`at_ms`: the message's time).
pub fn place(
    rules: &ChannelRules,
    candidates: Candidates<'_>,
    policy: &ThreadingPolicy,
    at_ms: i64,
) -> Placement {
    let existing = |reason, candidate| Placement::Existing { reason, candidate };
    if candidates.reply_target.is_some() {
        return existing(ThreadReason::ReplyReference, Candidate::ReplyTarget);
    }
    if rules.reply_token && candidates.token.is_some() {
        return existing(ThreadReason::ReplyToken, Candidate::Token);
    }
    if rules.subject
        && let Some(subject) = candidates.subject
        && resolved_within(subject, policy.subject_window, at_ms)
    {
        return existing(ThreadReason::Subject, Candidate::Subject);
    }
    if rules.latest_conversation
        && let Some(latest) = candidates.latest
        && resolved_within(latest, policy.chat_reopen_window, at_ms)
    {
        return existing(ThreadReason::LatestConversation, Candidate::Latest);
    }
    Placement::New
}

/// The reply token of a conversation: put in the Reply-To plus-address and in our Message-IDs.
pub fn reply_token(conversation: ConversationId) -> String {
    format!("c{}", conversation.0.simple())
}

/// Finds a reply token after a `+` (plus-address) or a `.` (our Message-IDs) in `text`.
pub fn find_reply_token(text: &str) -> Option<ConversationId> {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().find_map(|(i, b)| {
        if !matches!(b, b'+' | b'.') {
            return None;
        }
        let candidate = text.get(i + 1..i + 34)?;
        let hex = candidate.strip_prefix('c')?;
        let end_ok = text
            .get(i + 34..i + 35)
            .is_none_or(|next| !next.chars().all(|c| c.is_ascii_hexdigit()));
        if !end_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        uuid::Uuid::parse_str(hex).ok().map(ConversationId)
    })
}

/// A subject as the subject rule compares it: reply/forward prefixes in several languages and
/// mailing-list tags stripped, whitespace collapsed, case folded.
pub fn normalize_subject(subject: &str) -> String {
    const PREFIXES: [&str; 12] = [
        "re", "fw", "fwd", "aw", "wg", "sv", "vs", "tr", "rif", "enc", "odp", "antw",
    ];
    let mut s = subject.trim();
    loop {
        let before = s;
        if s.starts_with('[')
            && let Some(end) = s.find(']')
        {
            s = s[end + 1..].trim_start();
        }
        if let Some(colon) = s.find(':') {
            let head = s[..colon].trim().to_lowercase();
            // "Re", "RE[2]", "Fwd", "AW" …
            let word = head.split('[').next().unwrap_or_default().trim();
            if PREFIXES.contains(&word) {
                s = s[colon + 1..].trim_start();
            }
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
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
            subject_key: None,
        }
    }

    #[test]
    fn a_reply_reference_wins_over_everything() {
        let target = conversation(ConversationStatus::Resolved, Some(0));
        let latest = conversation(ConversationStatus::Open, None);
        let placement = place(
            &ChannelRules::CHANNEL_CHAT,
            Candidates {
                reply_target: Some(&target),
                latest: Some(&latest),
                ..Candidates::default()
            },
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
                &ChannelRules::NETWORK_CHAT,
                Candidates {
                    latest: Some(&latest),
                    ..Candidates::default()
                },
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
        let latest = Candidates {
            latest: Some(&resolved),
            ..Candidates::default()
        };
        let within = place(&ChannelRules::CHANNEL_CHAT, latest, &policy, 33 * HOUR);
        assert!(matches!(within, Placement::Existing { .. }));
        let after = place(&ChannelRules::CHANNEL_CHAT, latest, &policy, 35 * HOUR);
        assert_eq!(after, Placement::New);
    }

    #[test]
    fn email_never_uses_the_latest_conversation_rule() {
        let latest = conversation(ConversationStatus::Open, None);
        let placement = place(
            &ChannelRules::MAIL,
            Candidates {
                latest: Some(&latest),
                ..Candidates::default()
            },
            &ThreadingPolicy::default(),
            HOUR,
        );
        assert_eq!(placement, Placement::New);
    }

    #[test]
    fn nothing_known_opens_a_new_conversation() {
        assert_eq!(
            place(
                &ChannelRules::CHANNEL_CHAT,
                Candidates::default(),
                &ThreadingPolicy::default(),
                0
            ),
            Placement::New
        );
    }

    #[test]
    fn email_rules_come_in_order_token_then_subject() {
        let policy = ThreadingPolicy::default();
        let token = conversation(ConversationStatus::Resolved, Some(0));
        let subject = conversation(ConversationStatus::Open, None);
        let both = Candidates {
            token: Some(&token),
            subject: Some(&subject),
            ..Candidates::default()
        };
        assert_eq!(
            place(&ChannelRules::MAIL, both, &policy, HOUR),
            Placement::Existing {
                reason: ThreadReason::ReplyToken,
                candidate: Candidate::Token
            }
        );
        let only_subject = Candidates {
            subject: Some(&subject),
            ..Candidates::default()
        };
        assert_eq!(
            place(&ChannelRules::MAIL, only_subject, &policy, HOUR),
            Placement::Existing {
                reason: ThreadReason::Subject,
                candidate: Candidate::Subject
            }
        );
        // Resolved more than 14 days before: the subject no longer joins.
        let old = conversation(ConversationStatus::Resolved, Some(0));
        let stale = Candidates {
            subject: Some(&old),
            ..Candidates::default()
        };
        assert_eq!(
            place(&ChannelRules::MAIL, stale, &policy, 15 * 24 * HOUR),
            Placement::New
        );
        // Chat channels ignore tokens and subjects.
        assert_eq!(
            place(&ChannelRules::CHANNEL_CHAT, both, &policy, HOUR),
            Placement::New
        );
    }

    #[test]
    fn reply_tokens_round_trip_through_addresses_and_message_ids() {
        let id = ConversationId::new();
        let token = reply_token(id);
        assert_eq!(
            find_reply_token(&format!("support+{token}@shop.test")),
            Some(id)
        );
        assert_eq!(
            find_reply_token(&format!("0191.{token}@inbox.shop.test")),
            Some(id)
        );
        assert_eq!(find_reply_token("support+orders@shop.test"), None);
        assert_eq!(
            find_reply_token(&format!("support+{token}ff@shop.test")),
            None
        );
    }

    #[test]
    fn subjects_are_normalized() {
        for (raw, want) in [
            ("Re: Order 42", "order 42"),
            ("RE: Fwd: AW:  Order   42", "order 42"),
            ("[Support] Re[2]: Order 42", "order 42"),
            ("SV: Order 42", "order 42"),
            ("Order 42: follow-up", "order 42: follow-up"),
        ] {
            assert_eq!(normalize_subject(raw), want, "{raw}");
        }
    }
}
