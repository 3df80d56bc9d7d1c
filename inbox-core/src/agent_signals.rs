//! What agents are doing in a conversation, for chat channels to show the customer: who is
//! typing (until when) and when an agent last read it. Ephemeral and small, so it is not a
//! message or a log row: the web inbox writes it to blob storage (which the web and connector
//! services share) per channel and customer, and the kinds that show it (the website chat) read
//! it there. Losing it loses nothing but an indicator.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::ChannelId;

/// How long one typing signal lasts: the agent's page sends one every few seconds while typing.
pub const TYPING_FOR: chrono::Duration = chrono::Duration::seconds(6);

/// An agent typing a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// The agent's display name.
    pub agent: String,
    pub until: DateTime<Utc>,
}

/// What the customer of one conversation may be shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSignals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing: Option<Typing>,
    /// When an agent last opened the conversation: the customer's messages before it were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

impl AgentSignals {
    /// Who is typing now, if anyone.
    pub fn typing_now(&self, now: DateTime<Utc>) -> Option<&str> {
        self.typing
            .as_ref()
            .filter(|t| t.until > now)
            .map(|t| t.agent.as_str())
    }
}

/// Where the signals for a customer (`handle` on `channel`) are kept.
pub fn path(channel: ChannelId, handle: &str) -> String {
    let key = hex::encode(&Sha256::digest(handle.as_bytes())[..16]);
    format!("signals/{channel}/{key}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_lasts_until_its_time_and_paths_differ_per_customer() {
        let now = Utc::now();
        let signals = AgentSignals {
            typing: Some(Typing {
                agent: "Grace".into(),
                until: now + TYPING_FOR,
            }),
            read_at: None,
        };
        assert_eq!(signals.typing_now(now), Some("Grace"));
        assert_eq!(signals.typing_now(now + TYPING_FOR), None);
        let channel = ChannelId::new();
        assert_ne!(path(channel, "visitor:a"), path(channel, "visitor:b"));
        assert!(path(channel, "user:../../x").starts_with(&format!("signals/{channel}/")));
    }
}
