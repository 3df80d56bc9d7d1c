//! Who is writing: an anonymous visitor holds a signed token (kept in the site's localStorage,
//! so the chat survives reloads); a site may also prove who its signed-in user is with an HMAC of
//! the user id made with the channel's secret. Only a proven user becomes `user:<id>` with a
//! verified email; anything else stays an anonymous `visitor:<id>` and never merges with a
//! contact.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use inbox_core::ids::ChannelId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Longest user id a site may pass.
pub const MAX_USER_ID: usize = 200;

fn mac(secret: &str, parts: &[&str]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"));
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        mac.update(part.as_bytes());
    }
    mac
}

fn token_mac(secret: &str, channel: ChannelId, visitor: &str) -> HmacSha256 {
    mac(secret, &["web_chat visitor", &channel.to_string(), visitor])
}

/// A new anonymous visitor: its id and its token.
pub fn mint(secret: &str, channel: ChannelId) -> (String, String) {
    // Unguessable enough with its 74 random bits; the signature is what makes it usable.
    let id = uuid::Uuid::now_v7().simple().to_string();
    let signature = hex::encode(token_mac(secret, channel, &id).finalize().into_bytes());
    let token = format!("v1.{id}.{signature}");
    (id, token)
}

/// The visitor id a token was minted for on this channel (constant-time check).
pub fn verify(secret: &str, channel: ChannelId, token: &str) -> Option<String> {
    let mut parts = token.trim().split('.');
    let (Some("v1"), Some(id), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let signature = hex::decode(signature).ok()?;
    token_mac(secret, channel, id)
        .verify_slice(&signature)
        .ok()
        .map(|()| id.to_owned())
}

/// What a site says about its signed-in user (`data-user-id`, `data-user-email`,
/// `data-user-name`, `data-user-hash` on the script tag).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Hex HMAC-SHA256 with the channel's secret of the user id — or of the user id, a newline
    /// and the email when an email is given, so the email is proven too.
    pub hash: String,
}

/// The hash a site's server computes for a claim (what `data-user-hash` must be).
pub fn identity_hash(secret: &str, user_id: &str, email: Option<&str>) -> String {
    let parts: Vec<&str> = std::iter::once(user_id).chain(email).collect();
    hex::encode(mac(secret, &parts).finalize().into_bytes())
}

/// A claim the site proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// The claim, when its hash is right (constant-time) and its fields are sane.
pub fn verify_claim(secret: &str, claim: &Claim) -> Option<VerifiedUser> {
    let user_id = claim.user_id.as_str();
    if user_id.trim() != user_id
        || user_id.is_empty()
        || user_id.len() > MAX_USER_ID
        || user_id.chars().any(char::is_control)
    {
        return None;
    }
    let email = claim
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let parts: Vec<&str> = std::iter::once(user_id).chain(email).collect();
    let signature = hex::decode(claim.hash.trim()).ok()?;
    mac(secret, &parts).verify_slice(&signature).ok()?;
    Some(VerifiedUser {
        user_id: user_id.to_owned(),
        email: email.map(str::to_owned),
        name: claim
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(200).collect()),
    })
}

/// Who a page's chat is with, as the session call settled it; sealed into the chat token the
/// widget sends with each message and stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// The contact handle ([`handle`]).
    #[serde(rename = "h")]
    pub handle: String,
    /// A proven email (only a verified user has one).
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The name given (proven or typed into the pre-chat form).
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address typed into the pre-chat form: where a reply may also go by email once the
    /// visitor has gone. Never taken as the contact's email.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub left_email: Option<String>,
}

fn chat_mac(secret: &str, channel: ChannelId, body: &str) -> HmacSha256 {
    mac(secret, &["web_chat chat", &channel.to_string(), body])
}

/// `c1.<base64url JSON>.<hex HMAC>`: the chat, signed for this channel.
pub fn seal(secret: &str, channel: ChannelId, chat: &Chat) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(chat).unwrap_or_default());
    let signature = hex::encode(chat_mac(secret, channel, &body).finalize().into_bytes());
    format!("c1.{body}.{signature}")
}

/// The chat a token was sealed with on this channel (constant-time check).
pub fn open(secret: &str, channel: ChannelId, token: &str) -> Option<Chat> {
    let mut parts = token.trim().split('.');
    let (Some("c1"), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let signature = hex::decode(signature).ok()?;
    chat_mac(secret, channel, body)
        .verify_slice(&signature)
        .ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

/// The contact handle: `user:<id>` for a proven user, else `visitor:<id>`.
pub fn handle(visitor: &str, user: Option<&VerifiedUser>) -> String {
    match user {
        Some(user) => format!("user:{}", user.user_id),
        None => format!("visitor:{visitor}"),
    }
}

/// The folder of a handle's chat log: a hash, so any user id makes a safe path.
pub fn log_key(handle: &str) -> String {
    hex::encode(&Sha256::digest(handle.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_for_their_channel_only() {
        let channel = ChannelId::new();
        let (id, token) = mint("s3cret", channel);
        assert_eq!(
            verify("s3cret", channel, &token).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(verify("other", channel, &token), None);
        assert_eq!(verify("s3cret", ChannelId::new(), &token), None);
        let forged = token.replace(&id, &"0".repeat(32));
        assert_eq!(verify("s3cret", channel, &forged), None);
        assert_eq!(verify("s3cret", channel, "v1.x.y"), None);
        assert_eq!(verify("s3cret", channel, ""), None);
    }

    #[test]
    fn only_a_proven_claim_is_a_user_and_the_email_is_proven_too() {
        let hash = identity_hash("s3cret", "u-42", Some("ada@shop.example"));
        let claim = Claim {
            user_id: "u-42".into(),
            email: Some("ada@shop.example".into()),
            name: Some("Ada".into()),
            hash: hash.clone(),
        };
        let user = verify_claim("s3cret", &claim).expect("proven");
        assert_eq!(handle("v", Some(&user)), "user:u-42");
        assert_eq!(user.email.as_deref(), Some("ada@shop.example"));
        // Another email with the same hash, another secret, a hash of the id alone: refused.
        let other_email = Claim {
            email: Some("grace@shop.example".into()),
            ..claim.clone()
        };
        assert_eq!(verify_claim("s3cret", &other_email), None);
        assert_eq!(verify_claim("other", &claim), None);
        let id_only = Claim {
            hash: identity_hash("s3cret", "u-42", None),
            ..claim.clone()
        };
        assert_eq!(verify_claim("s3cret", &id_only), None);
        let no_email = Claim {
            email: None,
            ..id_only
        };
        assert!(verify_claim("s3cret", &no_email).is_some());
        assert_eq!(handle("abc", None), "visitor:abc");
        let channel = ChannelId::new();
        let chat = Chat {
            handle: "user:u-42".into(),
            email: user.email.clone(),
            name: None,
            left_email: None,
        };
        let sealed = seal("s3cret", channel, &chat);
        assert_eq!(open("s3cret", channel, &sealed), Some(chat));
        assert_eq!(open("s3cret", ChannelId::new(), &sealed), None);
        let (_, visitor_token) = mint("s3cret", channel);
        assert_eq!(open("s3cret", channel, &visitor_token), None);
        assert_eq!(log_key("user:u-42").len(), 32);
    }
}
