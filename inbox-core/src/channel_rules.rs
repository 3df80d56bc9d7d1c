//! What the funnel does with a channel's messages: which threading rules (docs/threading.md) apply and how
//! a sender's handle becomes an identity. A channel kind declares its rules (the connectors'
//! registry); they are stored with each channel when it is created, so the core needs no
//! knowledge of kinds and a release that changes a kind's defaults never re-threads a channel
//! that exists.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a sender's handle is scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityScope {
    /// Handles are unique only within the channel (a webhook integration's user ids).
    Channel,
    /// Handles are global to the kind's network (a Telegram user id, a Mastodon account).
    Network,
    /// Handles are email addresses, normalized, shared with every channel that knows the address.
    Email,
}

/// The funnel's rules for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRules {
    /// Rule 2: a reply token in a recipient address or in a referenced Message-ID names the
    /// conversation.
    #[serde(default)]
    pub reply_token: bool,
    /// Rule 3: the same normalized subject from the same contact on the same channel continues a
    /// conversation not resolved for longer than the subject window.
    #[serde(default)]
    pub subject: bool,
    /// Rule 4: the contact's latest conversation on the channel, reopened within the chat window.
    #[serde(default)]
    pub latest_conversation: bool,
    /// How senders' handles become identities.
    pub identity: IdentityScope,
}

impl ChannelRules {
    /// A chat among the channel's own users: rule 4, identities scoped to the channel (the
    /// conservative default: two channels' "42" are never taken for one person).
    pub const CHANNEL_CHAT: ChannelRules = ChannelRules {
        reply_token: false,
        subject: false,
        latest_conversation: true,
        identity: IdentityScope::Channel,
    };
    /// A chat network whose user ids are global (Telegram, Mastodon).
    pub const NETWORK_CHAT: ChannelRules = ChannelRules {
        identity: IdentityScope::Network,
        ..ChannelRules::CHANNEL_CHAT
    };
    /// Mail: reply tokens and subjects, no "latest conversation", addresses as identities.
    pub const MAIL: ChannelRules = ChannelRules {
        reply_token: true,
        subject: true,
        latest_conversation: false,
        identity: IdentityScope::Email,
    };
}

impl Default for ChannelRules {
    fn default() -> Self {
        ChannelRules::CHANNEL_CHAT
    }
}
