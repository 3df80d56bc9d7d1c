//! Device cookies (OWASP): a browser that signed in to an account gets a cookie signed for that
//! account, and sign-in attempts carrying it count against that browser alone, so others'
//! failures cannot lock it out.
//!
//! The value is `{agent_id}.{nonce}.{issued_unix}.{mac}`, the MAC an HMAC-SHA256 keyed with the
//! account's stored password hash: every web instance can check it without a shared secret, it
//! cannot be made without the database, and a password change revokes every device at once.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use inbox_core::ids::AgentId;
use sha2::Sha256;

/// Name of the cookie.
pub const DEVICE_COOKIE: &str = "inbox_device";
/// How long a device stays trusted after its last successful sign-in.
pub const DEVICE_TTL: Duration = Duration::days(90);

fn mac(password_hash: &str, agent: AgentId, nonce: &str, issued: i64) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(password_hash.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(format!("inbox-device-v1|{agent}|{nonce}|{issued}").as_bytes());
    mac
}

/// A new cookie value for this account.
pub fn issue(password_hash: &str, agent: AgentId, now: DateTime<Utc>) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let nonce = hex::encode(bytes);
    let issued = now.timestamp();
    let tag = hex::encode(
        mac(password_hash, agent, &nonce, issued)
            .finalize()
            .into_bytes(),
    );
    format!("{agent}.{nonce}.{issued}.{tag}")
}

/// The device's id when `value` is a valid, unexpired cookie of this account.
pub fn verify(
    value: &str,
    password_hash: &str,
    agent: AgentId,
    now: DateTime<Utc>,
) -> Option<String> {
    let mut parts = value.split('.');
    let (Some(id), Some(nonce), Some(issued), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if id != agent.to_string() {
        return None;
    }
    let issued: i64 = issued.parse().ok()?;
    let age = now.timestamp().checked_sub(issued)?;
    if !(0..=DEVICE_TTL.num_seconds()).contains(&age) {
        return None;
    }
    let tag = hex::decode(tag).ok()?;
    // `verify_slice` compares in constant time.
    mac(password_hash, agent, nonce, issued)
        .verify_slice(&tag)
        .ok()
        .map(|()| nonce.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_verifies_for_its_account_only_and_expires() {
        let agent = AgentId::new();
        let now = Utc::now();
        let value = issue("$argon2id$hash-a", agent, now);
        let device = verify(&value, "$argon2id$hash-a", agent, now).expect("valid");
        assert_eq!(device.len(), 32);
        // Another account, a changed password, a forged MAC, an old cookie: all refused.
        assert!(verify(&value, "$argon2id$hash-a", AgentId::new(), now).is_none());
        assert!(verify(&value, "$argon2id$hash-b", agent, now).is_none());
        let last = if value.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &value[..value.len() - 1]);
        assert!(verify(&forged, "$argon2id$hash-a", agent, now).is_none());
        let later = now + DEVICE_TTL + Duration::seconds(1);
        assert!(verify(&value, "$argon2id$hash-a", agent, later).is_none());
        assert!(verify("garbage", "$argon2id$hash-a", agent, now).is_none());
    }
}
