//! Attachment file names as shown to agents and sent to customers. Every entry point (email,
//! webhook, the agents' uploads, later channels) cleans names with [`clean_file_name`], so a
//! name means the same thing wherever it came from.

/// Longest file name kept (characters); longer ones are cut.
pub const MAX_FILE_NAME_CHARS: usize = 150;

/// Characters that change how text around them is displayed without being visible: bidi
/// embeddings, overrides and isolates (`invoice\u{202e}fdp.exe` shows as "invoiceexe.pdf"),
/// direction marks, and zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}'              // Arabic letter mark
        | '\u{180E}'            // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, isolates
        | '\u{FEFF}'            // zero-width no-break space
    )
}

/// The name without directories, control or invisible formatting characters, and leading dots,
/// at most [`MAX_FILE_NAME_CHARS`] characters; `None` when nothing is left.
pub fn clean_file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let visible: String = base
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible_format(c))
        .collect();
    let cleaned: String = visible
        .trim()
        .trim_start_matches('.')
        .trim()
        .chars()
        .take(MAX_FILE_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim_end().to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_directories_controls_and_leading_dots() {
        assert_eq!(
            clean_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            clean_file_name("C:\\Users\\ada\\Rechnung März.pdf").as_deref(),
            Some("Rechnung März.pdf")
        );
        assert_eq!(clean_file_name(".."), None);
        assert_eq!(clean_file_name("  \u{0}\n "), None);
        assert_eq!(clean_file_name(".hidden").as_deref(), Some("hidden"));
        assert_eq!(
            clean_file_name(&"x".repeat(400)).map(|n| n.chars().count()),
            Some(MAX_FILE_NAME_CHARS)
        );
    }

    #[test]
    fn bidi_overrides_and_invisible_characters_are_dropped() {
        // Shown as "invoiceexe.pdf" with the override; its real extension is .exe.
        assert_eq!(
            clean_file_name("invoice\u{202e}fdp.exe").as_deref(),
            Some("invoicefdp.exe")
        );
        assert_eq!(
            clean_file_name("\u{2067}report\u{2069}\u{200b}.pdf\u{feff}").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(clean_file_name("\u{202e}\u{200f}"), None);
        // Visible non-Latin names are kept as they are.
        assert_eq!(clean_file_name("فاتورة.pdf").as_deref(), Some("فاتورة.pdf"));
    }
}
