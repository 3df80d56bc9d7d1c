//! Keyset pagination: a page ends at a cursor (a time and a unique tie-breaker), so the next
//! page costs the page, however deep the list.

/// Keyset position in a list ordered by a time and a unique tie-breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub at: i64,
    pub key: String,
}

impl PageCursor {
    /// Opaque text form used in URLs: `<millis>_<key>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at, self.key)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (at, key) = s.split_once('_')?;
        // No key has a NUL (and PostgreSQL refuses one as text).
        if key.contains('\0') {
            return None;
        }
        Some(PageCursor {
            at: at.parse().ok()?,
            key: key.to_owned(),
        })
    }
}

/// Cuts rows fetched with one extra (`LIMIT limit + 1`) to the page and gives the cursor of the
/// next page when there is one.
pub(super) fn page<T>(
    mut items: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> PageCursor,
) -> (Vec<T>, Option<String>) {
    if items.len() <= limit as usize {
        return (items, None);
    }
    items.truncate(limit as usize);
    let next = items.last().map(|last| cursor_of(last).encode());
    (items, next)
}
