//! Blob paths built from names a sender chose (a file name, a provider's file id).

/// One path segment: ASCII letters, digits, `.`, `-`, `_` (others become `_`), at most 100; a
/// name that is nothing but dots (or nothing) is `file`, so a segment never climbs a level.
pub(crate) fn segment(raw: &str) -> String {
    let segment: String = raw
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if segment.chars().all(|c| c == '.') {
        "file".into()
    } else {
        segment
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn segments_are_plain_and_never_climb() {
        assert_eq!(segment("März invoice.pdf"), "M_rz_invoice.pdf");
        assert_eq!(segment("../x"), ".._x");
        assert_eq!(segment(".."), "file");
        assert_eq!(segment(""), "file");
        assert_eq!(segment(&"a".repeat(300)).len(), 100);
    }
}
