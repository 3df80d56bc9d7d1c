//! Full-text search over messages, and the conversation list's text (`q`) and label filters.
//!
//! # Query syntax
//!
//! Whatever an agent types is valid: words and `"quoted phrases"`, all of which must match, case
//! insensitively; a word ending in `*` (`refu*`) matches as a prefix. Everything else (`AND`,
//! parentheses, `-`, `:`, unbalanced quotes) is taken as text, never as search syntax, so no
//! input can make the search fail. Input without any letter or digit matches nothing.
//!
//! SQLite searches an FTS5 index (`messages_fts`), PostgreSQL a GIN-indexed `tsvector` column
//! (`messages.search`, `simple` configuration) with one `phraseto_tsquery` per term. Both split
//! words on punctuation, lower-case them and keep diacritics, so the two backends find the same
//! messages for ordinary text.
//!
//! # Order and cost
//!
//! Hits come newest first by arrival (`ingest_seq`): the order both indexes can produce without
//! sorting every match, so a word found in half a million messages costs as little as one found
//! once. Arrival order is `sent_at` order except for mail fetched late (a backfill); each hit
//! carries its `sent_at` to show.
//!
//! FTS5 yields rowids (`ingest_seq`) newest first by itself. PostgreSQL's planner cannot tell a
//! rare word from a common one well enough (it would walk the whole table for a rare word it
//! thinks common), so the search picks the plan itself, each step bounded: the newest 2,000
//! messages are checked first (enough for a common word); otherwise the GIN index says whether
//! at most 1,000 messages match (sorted directly); only beyond that is the primary key walked
//! backwards. PostgreSQL indexes the first 100,000 characters of a message, SQLite all of it.
//!
//! # Snippets
//!
//! [`SearchHit::snippet`] is plain, unescaped text (SQLite `snippet()`, PostgreSQL
//! `ts_headline()`) and [`SearchHit::highlights`] the byte ranges that matched; the UI escapes
//! the text and marks the ranges ([`SearchHit::snippet_parts`]).
//!
//! # The list's filters
//!
//! The text filter (`q`) and the label filter first count their matches, up to 1,000: few are
//! looked up and sorted, many are checked while walking the list in order. So a rare and a
//! common label both cost a few milliseconds; a word in more than 1,000 messages costs in
//! proportion to its matches (tens of milliseconds per 100,000 at 1M messages): for searching,
//! [`Store::search_messages`] is the fast path.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Database, Encode, FromRow, QueryBuilder, Type};
use utoipa::ToSchema;

mod postgres;
mod sqlite;

use super::paging::PageCursor;
use super::{Backend, Store, StoreError, StoreResult, on_pool};
use crate::ids::{ContactId, ConversationId, MessageId};
use crate::model::{ConversationStatus, Direction, from_millis, to_millis};

/// Longest search input considered (bytes); the rest is ignored.
const MAX_QUERY_BYTES: usize = 1_000;
/// Most terms of one search; the rest are ignored.
const MAX_TERMS: usize = 16;
/// Up to this many matching messages (or labelled conversations) a filter is "sparse": the
/// matches are fetched and used as a list. Beyond it the statement itself filters.
const SPARSE_MATCHES: usize = 1_000;
/// PostgreSQL: how many of the newest messages (by ingest_seq) a search walks before it asks
/// the GIN index instead.
const PG_RECENT_WINDOW: i64 = 2_000;
/// Characters of a PostgreSQL message indexed and highlighted (a tsvector is limited to 1 MB).
const PG_INDEXED_CHARS: i32 = 100_000;

/// Marks around the matches in the raw snippets the databases produce (Unicode private-use
/// characters); turned into [`SearchHit::highlights`] and removed from the text.
const MARK_START: char = '\u{E000}';
const MARK_END: char = '\u{E001}';

/// One message that matched a search.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchHit {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    /// The customer of the conversation.
    pub contact_id: ContactId,
    pub contact_name: Option<String>,
    pub direction: Direction,
    /// The author: customer or agent name.
    pub sender_name: Option<String>,
    pub sent_at: DateTime<Utc>,
    /// Plain text around the match, exactly as stored: NOT escaped. Render it escaped, e.g. with
    /// [`SearchHit::snippet_parts`], wrapping the highlighted parts in `<mark>`.
    pub snippet: String,
    /// Byte ranges `(start, end)` of `snippet` that matched: ascending, not overlapping, on char
    /// boundaries.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub highlights: Vec<(usize, usize)>,
}

impl SearchHit {
    /// The snippet cut at the highlights: `(text, matched)` in order, covering all of it.
    pub fn snippet_parts(&self) -> Vec<(&str, bool)> {
        let mut parts = Vec::new();
        let mut at = 0;
        for &(start, end) in &self.highlights {
            let (Some(before), Some(marked)) =
                (self.snippet.get(at..start), self.snippet.get(start..end))
            else {
                continue;
            };
            if !before.is_empty() {
                parts.push((before, false));
            }
            parts.push((marked, true));
            at = end;
        }
        if let Some(rest) = self.snippet.get(at..)
            && !rest.is_empty()
        {
            parts.push((rest, false));
        }
        parts
    }
}

/// A page of search hits, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    /// Pass back (decoded with [`PageCursor::decode`]) for the next, older page.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The query language.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// Words that must appear in this order (one word is a one-word phrase).
    Phrase(String),
    /// A word starting with these letters and digits (lower-cased).
    Prefix(String),
}

/// An agent's search input, parsed. Exists only when it has something to search for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TextQuery {
    terms: Vec<Term>,
}

impl TextQuery {
    pub(super) fn parse(input: &str) -> Option<TextQuery> {
        // NUL ends the text for FTS5 and is refused by PostgreSQL: it separates words like a space.
        let input = input.replace('\0', " ");
        let input = input.as_str();
        let mut end = input.len().min(MAX_QUERY_BYTES);
        while !input.is_char_boundary(end) {
            end -= 1;
        }
        let mut rest = input[..end].trim_start();
        let mut terms = Vec::new();
        while !rest.is_empty() && terms.len() < MAX_TERMS {
            let term = if let Some(quoted) = rest.strip_prefix('"') {
                let (phrase, after) = quoted.split_once('"').unwrap_or((quoted, ""));
                rest = after;
                Term::Phrase(phrase.to_owned())
            } else {
                let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let word = &rest[..word_end];
                rest = &rest[word_end..];
                let stem = word.trim_end_matches('*');
                if word == "AND" {
                    // All terms must match anyway: the operator an agent may type is a no-op.
                    rest = rest.trim_start();
                    continue;
                } else if stem.len() < word.len()
                    && !stem.is_empty()
                    && stem.chars().all(char::is_alphanumeric)
                {
                    Term::Prefix(stem.to_lowercase())
                } else {
                    Term::Phrase(word.to_owned())
                }
            };
            let text = match &term {
                Term::Phrase(text) | Term::Prefix(text) => text,
            };
            // Punctuation alone is no word for either index; as a term it would match nothing.
            if text.chars().any(char::is_alphanumeric) {
                terms.push(term);
            }
            rest = rest.trim_start();
        }
        (!terms.is_empty()).then_some(TextQuery { terms })
    }
}

/// Splits a raw snippet with [`MARK_START`]/[`MARK_END`] around matches into plain text and the
/// byte ranges of the matches. Unbalanced marks are dropped.
fn parse_snippet(raw: &str) -> (String, Vec<(usize, usize)>) {
    let mut text = String::with_capacity(raw.len());
    let mut highlights: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    for c in raw.chars() {
        match c {
            MARK_START => {
                if open.is_none() {
                    open = Some(text.len());
                }
            }
            MARK_END => {
                if let Some(start) = open.take()
                    && start < text.len()
                {
                    match highlights.last_mut() {
                        // Adjacent matches (a phrase) become one range.
                        Some(last) if last.1 == start => last.1 = text.len(),
                        _ => highlights.push((start, text.len())),
                    }
                }
            }
            c => text.push(c),
        }
    }
    if let Some(start) = open
        && start < text.len()
    {
        highlights.push((start, text.len()));
    }
    (text, highlights)
}

#[derive(FromRow)]
struct HitRow {
    seq: i64,
    snippet: String,
    id: MessageId,
    conversation_id: ConversationId,
    direction: String,
    sender_name: Option<String>,
    sent_at: i64,
    contact_id: ContactId,
    contact_name: Option<String>,
}

impl HitRow {
    fn into_hit(self) -> StoreResult<SearchHit> {
        let (snippet, highlights) = parse_snippet(&self.snippet);
        Ok(SearchHit {
            message_id: self.id,
            conversation_id: self.conversation_id,
            contact_id: self.contact_id,
            contact_name: self.contact_name,
            direction: Direction::parse(&self.direction)
                .ok_or_else(|| StoreError::Corrupt(format!("direction {}", self.direction)))?,
            sender_name: self.sender_name,
            sent_at: from_millis(self.sent_at),
            snippet,
            highlights,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Filters of the conversation list.

/// How the list keeps only conversations with a message matching `q`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TextFilter {
    /// No message matches.
    Nothing,
    /// Few messages match: their conversations.
    Conversations(Vec<ConversationId>),
    /// Many messages match: the statement searches.
    Dense(TextQuery),
}

/// How the list keeps only conversations with a label (and, when the list has one, a status).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LabelFilter {
    Nothing,
    /// Few conversations carry it: look them up and sort them.
    Few {
        label: String,
        status: Option<ConversationStatus>,
    },
    /// Many do: walk the list in order and check each.
    Many(String),
}

impl TextFilter {
    /// Appends ` AND <conversation c matches>`.
    pub(super) fn push<DB: Database>(&self, qb: &mut QueryBuilder<DB>, postgres: bool)
    where
        for<'t> String: Encode<'t, DB> + Type<DB>,
        for<'t> ConversationId: Encode<'t, DB> + Type<DB>,
    {
        match self {
            TextFilter::Nothing => {
                qb.push(" AND 1 = 0");
            }
            TextFilter::Conversations(ids) => {
                qb.push(" AND c.id IN (");
                let mut list = qb.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                qb.push(")");
            }
            TextFilter::Dense(query) if postgres => postgres::push_dense_filter(qb, query),
            TextFilter::Dense(query) => sqlite::push_dense_filter(qb, query),
        }
    }
}

impl LabelFilter {
    /// Appends ` AND <conversation c has the label>`.
    pub(super) fn push<DB: Database>(&self, qb: &mut QueryBuilder<DB>)
    where
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        match self {
            LabelFilter::Nothing => {
                qb.push(" AND 1 = 0");
            }
            LabelFilter::Few { label, status } => {
                qb.push(
                    " AND c.id IN (SELECT l.conversation_id FROM conversation_labels l
                       WHERE l.label = ",
                )
                .push_bind(label.clone());
                if let Some(status) = status {
                    qb.push(" AND l.status = ")
                        .push_bind(status.as_str().to_owned());
                }
                qb.push(")");
            }
            LabelFilter::Many(label) => {
                qb.push(
                    " AND EXISTS (SELECT 1 FROM conversation_labels l
                       WHERE l.conversation_id = c.id AND l.label = ",
                )
                .push_bind(label.clone())
                .push(")");
            }
        }
    }
}

impl Store {
    /// Messages (customer messages, replies and notes) matching `query` (see the module
    /// documentation for the syntax), newest first, `limit` (1 to 100) per page. Input with
    /// nothing to search for gives an empty page.
    pub async fn search_messages(
        &self,
        query: &str,
        cursor: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<SearchPage> {
        let limit = limit.clamp(1, 100);
        let Some(query) = TextQuery::parse(query) else {
            return Ok(SearchPage::default());
        };
        let before = cursor.map(|c| c.key.parse::<i64>().unwrap_or(i64::MAX));
        let rows = match &self.backend {
            Backend::Sqlite(pool) => sqlite::hits(pool, &query, before, limit).await?,
            Backend::Postgres(pool) => match postgres::hits(pool, &query, before, limit).await? {
                Some(rows) => rows,
                None => return Ok(SearchPage::default()),
            },
        };
        let more = rows.len() > limit as usize;
        let hits = rows
            .into_iter()
            .take(limit as usize)
            .map(|row| Ok((row.seq, row.into_hit()?)))
            .collect::<StoreResult<Vec<(i64, SearchHit)>>>()?;
        let next_cursor = more.then(|| hits.last()).flatten().map(|(seq, hit)| {
            PageCursor {
                at: to_millis(hit.sent_at),
                key: seq.to_string(),
            }
            .encode()
        });
        Ok(SearchPage {
            items: hits.into_iter().map(|(_, hit)| hit).collect(),
            next_cursor,
        })
    }

    /// The list's text filter for `q`; `None` when `q` has nothing to search for (no filter).
    pub(super) async fn text_filter(&self, q: &str) -> StoreResult<Option<TextFilter>> {
        let Some(query) = TextQuery::parse(q) else {
            return Ok(None);
        };
        let matches = match &self.backend {
            Backend::Sqlite(pool) => sqlite::sparse_conversations(pool, &query).await?,
            Backend::Postgres(pool) => postgres::sparse_conversations(pool, &query).await?,
        };
        Ok(Some(match matches {
            None => TextFilter::Dense(query),
            Some(ids) if ids.is_empty() => TextFilter::Nothing,
            Some(mut ids) => {
                let mut seen = HashSet::with_capacity(ids.len());
                ids.retain(|id| seen.insert(*id));
                TextFilter::Conversations(ids)
            }
        }))
    }

    /// The list's label filter, for a list of conversations with `status` if given; `None` for
    /// a blank label (no filter). Labels are stored trimmed and lower-cased, and so is the one
    /// asked for.
    pub(super) async fn label_filter(
        &self,
        label: &str,
        status: Option<ConversationStatus>,
    ) -> StoreResult<Option<LabelFilter>> {
        let label = label.trim().to_lowercase();
        if label.is_empty() {
            return Ok(None);
        }
        // No label has a NUL (and PostgreSQL refuses one as text).
        if label.contains('\0') {
            return Ok(Some(LabelFilter::Nothing));
        }
        // Counted on the (label, status) index alone, up to the first row past "few".
        let count = on_pool!(self, pool, Db => {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT COUNT(*) FROM (SELECT 1 FROM conversation_labels WHERE label = ",
            );
            qb.push_bind(label.clone());
            if let Some(status) = status {
                qb.push(" AND status = ").push_bind(status.as_str().to_owned());
            }
            qb.push(" LIMIT ")
                .push_bind(SPARSE_MATCHES as i64 + 1)
                .push(") AS l");
            qb.build_query_scalar::<i64>().fetch_one(pool).await
        })?;
        Ok(Some(match count {
            0 => LabelFilter::Nothing,
            n if n <= SPARSE_MATCHES as i64 => LabelFilter::Few { label, status },
            _ => LabelFilter::Many(label),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(input: &str) -> Vec<Term> {
        TextQuery::parse(input).map(|q| q.terms).unwrap_or_default()
    }

    #[test]
    fn words_phrases_and_prefixes() {
        assert_eq!(
            terms(r#"  Refund "order 42"  inv*  "#),
            vec![
                Term::Phrase("Refund".into()),
                Term::Phrase("order 42".into()),
                Term::Prefix("inv".into()),
            ]
        );
        assert_eq!(
            terms("a AND b"),
            vec![Term::Phrase("a".into()), Term::Phrase("b".into())]
        );
    }

    #[test]
    fn nothing_to_search_for() {
        for input in ["", "   ", "()", "\"\"", "*", "AND", "- : ^", "\""] {
            assert_eq!(TextQuery::parse(input), None, "{input:?}");
        }
    }

    #[test]
    fn fts5_queries_quote_everything() {
        let q = TextQuery::parse(r#"say "he said ""hi""" (x) NEAR(a b) col:val -no ab*"#)
            .expect("terms");
        assert_eq!(
            q.fts5(),
            r#""say" AND "he said " AND "hi" AND "(x)" AND "NEAR(a" AND "b)" AND "col:val" AND "-no" AND "ab"*"#
        );
        let q = TextQuery::parse(r#"un"balanced"#).expect("terms");
        assert_eq!(q.fts5(), r#""un""balanced""#);
    }

    #[test]
    fn nul_separates_words() {
        assert_eq!(
            terms("a\0b \"c\0d\""),
            [
                Term::Phrase("a".into()),
                Term::Phrase("b".into()),
                Term::Phrase("c d".into())
            ]
        );
        assert_eq!(TextQuery::parse("\0"), None);
    }

    #[test]
    fn long_input_is_cut_on_a_char_boundary() {
        let input = "é".repeat(2_000);
        let q = TextQuery::parse(&input).expect("terms");
        assert_eq!(q.terms.len(), 1);
        let many = "w ".repeat(100);
        assert_eq!(terms(&many).len(), MAX_TERMS);
    }

    #[test]
    fn snippets_become_text_and_ranges() {
        let raw = format!(
            "…a {MARK_START}b{MARK_END} {MARK_START}c{MARK_END}{MARK_START}d{MARK_END} é{MARK_START}"
        );
        let (text, ranges) = parse_snippet(&raw);
        assert_eq!(text, "…a b cd é");
        assert_eq!(ranges, vec![(5, 6), (7, 9)]);
        let hit = SearchHit {
            message_id: MessageId::new(),
            conversation_id: ConversationId::new(),
            contact_id: ContactId::new(),
            contact_name: None,
            direction: Direction::Inbound,
            sender_name: None,
            sent_at: Utc::now(),
            snippet: text,
            highlights: ranges,
        };
        assert_eq!(
            hit.snippet_parts(),
            vec![
                ("…a ", false),
                ("b", true),
                (" ", false),
                ("cd", true),
                (" é", false)
            ]
        );
        let (text, ranges) = parse_snippet(&format!("{MARK_END}x{MARK_START}{MARK_END}"));
        assert_eq!((text.as_str(), ranges), ("x", vec![]));
    }
}
