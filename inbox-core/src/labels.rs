//! Labels agents put on conversations: one spelling everywhere they are set, filtered on or
//! targeted by an SLA policy.

use std::fmt;

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 50;
/// What a label must look like, for error messages.
pub const LABEL_RULE: &str = "1 to 50 characters, no control characters";

/// A label as stored: trimmed, lower case, 1 to [`MAX_LABEL_CHARS`] characters, no control
/// characters (so no NUL, which PostgreSQL cannot store as text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(String);

impl Label {
    /// The label `raw` spells, or `None` when it cannot be one.
    pub fn parse(raw: &str) -> Option<Label> {
        let label = raw.trim().to_lowercase();
        let fits = !label.is_empty()
            && label.chars().count() <= MAX_LABEL_CHARS
            && !label.chars().any(char::is_control);
        fits.then_some(Label(label))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_lower_cased_and_control_characters_refused() {
        assert_eq!(Label::parse("  Billing ").unwrap().as_str(), "billing");
        assert_eq!(Label::parse("Ünïcode").unwrap().as_str(), "ünïcode");
        assert!(Label::parse("   ").is_none());
        assert!(Label::parse("a\0b").is_none());
        assert!(Label::parse("a\nb").is_none());
        assert!(Label::parse(&"x".repeat(MAX_LABEL_CHARS)).is_some());
        assert!(Label::parse(&"x".repeat(MAX_LABEL_CHARS + 1)).is_none());
    }
}
