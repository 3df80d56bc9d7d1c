//! Sample mail for `inbox bench email` and the tests: a large mail built in memory (big
//! attachments without a 10 MB file in the repository), and the malformed-mail corpus.

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

/// The malformed-mail corpus of the repository (`tests/fixtures/mail/corpus`).
pub fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mail/corpus")
}

/// Every `.eml` file of `dir`, by file name (sorted), with its bytes.
pub fn read_corpus(
    dir: &std::path::Path,
) -> std::io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "eml") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.insert(name, std::fs::read(&path)?);
        }
    }
    Ok(files)
}
