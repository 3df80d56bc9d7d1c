//! A large sample mail, built in memory: `inbox bench email` and the tests measure and check the
//! handling of big attachments with it, without a 10 MB file in the repository.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// `len` deterministic, incompressible bytes.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A mail carrying `attachment` as `dump.bin`, base64 in 76-character lines.
pub fn mail_with_attachment(attachment: &[u8]) -> Vec<u8> {
    let mut mail = String::from(
        "From: Big Sender <big@example.test>\r\nTo: support@example.test\r\n\
         Subject: The whole database dump\r\nMessage-ID: <big-attachment@example.test>\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n\
         --big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere it is.\r\n\
         --big\r\nContent-Type: application/octet-stream; name=\"dump.bin\"\r\n\
         Content-Disposition: attachment; filename=\"dump.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let encoded = STANDARD.encode(attachment);
    for line in encoded.as_bytes().chunks(76) {
        mail.push_str(&String::from_utf8_lossy(line));
        mail.push_str("\r\n");
    }
    mail.push_str("--big--\r\n");
    mail.into_bytes()
}
