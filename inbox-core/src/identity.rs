//! Identity resolution: which contact a (channel, handle) belongs to.

use std::fmt;

use crate::channel_rules::IdentityScope;
use crate::envelope::ChannelKind;
use crate::ids::ChannelId;
use crate::model::Identity;

/// Namespace for verified email addresses, shared by every channel.
pub const EMAIL_NAMESPACE: &str = "email";

/// A syntactically valid email address, normalized: trimmed, domain lower-cased, local part
/// lower-cased too (every mail provider we meet treats it case-insensitively); plus-tags are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, String> {
        let trimmed = input.trim();
        let (local, domain) = trimmed
            .rsplit_once('@')
            .ok_or_else(|| format!("`{trimmed}` has no @"))?;
        let valid_domain = !domain.is_empty()
            && domain.len() <= 253
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.contains(char::is_whitespace));
        if local.is_empty() || local.len() > 64 || local.contains(char::is_whitespace) {
            return Err(format!("`{trimmed}` has an invalid local part"));
        }
        if !valid_domain {
            return Err(format!("`{trimmed}` has an invalid domain"));
        }
        Ok(EmailAddress(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity a sender's handle maps to, scoped as the channel's rules say: webhook user ids
/// are only unique within one integration, so they are namespaced by channel; a chat network's
/// handles are global to it; email addresses are normalized.
pub fn channel_identity(
    scope: IdentityScope,
    kind: ChannelKind,
    channel_id: ChannelId,
    handle: &str,
) -> Identity {
    let handle = handle.trim();
    match scope {
        IdentityScope::Channel => Identity {
            namespace: format!("{kind}:{channel_id}"),
            handle: handle.to_owned(),
        },
        IdentityScope::Email => Identity {
            namespace: EMAIL_NAMESPACE.to_owned(),
            handle: EmailAddress::parse(handle)
                .map(|e| e.0)
                .unwrap_or_else(|_| handle.to_lowercase()),
        },
        IdentityScope::Network => Identity {
            namespace: kind.as_str().to_owned(),
            handle: handle.to_owned(),
        },
    }
}

/// The identity of a verified email address, which links a contact across channels.
pub fn email_identity(email: &EmailAddress) -> Identity {
    Identity {
        namespace: EMAIL_NAMESPACE.to_owned(),
        handle: email.0.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_are_normalized_and_keep_plus_tags() {
        let e = EmailAddress::parse("  Ada.Lovelace+Orders@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ada.lovelace+orders@example.com");
    }

    #[test]
    fn invalid_email_addresses_are_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@exa..mple",
            "a da@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_handles_are_scoped_to_their_channel() {
        let a = channel_identity(
            IdentityScope::Channel,
            ChannelKind::WEBHOOK,
            ChannelId::new(),
            "42",
        );
        let b = channel_identity(
            IdentityScope::Channel,
            ChannelKind::WEBHOOK,
            ChannelId::new(),
            "42",
        );
        assert_ne!(a, b);
        let t1 = channel_identity(
            IdentityScope::Network,
            ChannelKind::named("telegram"),
            ChannelId::new(),
            "42",
        );
        let t2 = channel_identity(
            IdentityScope::Network,
            ChannelKind::named("telegram"),
            ChannelId::new(),
            "42",
        );
        assert_eq!(t1, t2);
    }

    #[test]
    fn email_channel_handles_share_the_email_namespace() {
        let id = channel_identity(
            IdentityScope::Email,
            ChannelKind::EMAIL,
            ChannelId::new(),
            "Ada@Example.com",
        );
        assert_eq!(
            id,
            email_identity(&EmailAddress::parse("ada@example.com").unwrap())
        );
    }
}
