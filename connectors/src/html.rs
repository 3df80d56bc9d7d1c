//! HTML helpers the kinds share.

/// Text made safe to put into HTML (element content or a quoted attribute).
pub(crate) fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
