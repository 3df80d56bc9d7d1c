//! Signatures of webhook bodies, in both directions: `X-Inbox-Signature: sha256=<hex
//! HMAC-SHA256 of the raw body with the channel secret>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the body's signature, in both directions.
pub const SIGNATURE_HEADER: &str = "x-inbox-signature";

type HmacSha256 = Hmac<Sha256>;

/// A new random signing secret for a channel.
pub fn new_secret() -> String {
    inbox_core::channel_catalog::mint_secret()
}

/// `sha256=<hex>` of the body under the secret.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Constant-time check of a `sha256=<hex>` signature.
pub fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(digest) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let sig = sign("s3cret", b"{\"a\":1}");
        assert!(sig.starts_with("sha256="));
        assert!(verify("s3cret", b"{\"a\":1}", &sig));
        assert!(!verify("s3cret", b"{\"a\":2}", &sig));
        assert!(!verify("other", b"{\"a\":1}", &sig));
        assert!(!verify("s3cret", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify("s3cret", b"{\"a\":1}", ""));
    }
}
