//! SQLite's full-text statements: an FTS5 index (`messages_fts`) whose rowids are `ingest_seq`.

use sqlx::{Database, Encode, QueryBuilder, SqlitePool, Type};

use super::{HitRow, MARK_END, MARK_START, SPARSE_MATCHES, Term, TextQuery};
use crate::ids::ConversationId;
use crate::store::StoreResult;

impl TextQuery {
    /// The FTS5 query: every term a quoted string (inner quotes doubled), so nothing the agent
    /// typed is FTS5 syntax.
    pub(super) fn fts5(&self) -> String {
        let quoted: Vec<String> = self
            .terms
            .iter()
            .map(|term| match term {
                Term::Phrase(text) => format!("\"{}\"", text.replace('"', "\"\"")),
                Term::Prefix(stem) => format!("\"{stem}\"*"),
            })
            .collect();
        quoted.join(" AND ")
    }
}

/// The page's hits newest first, `limit + 1` of them at most, before the `ingest_seq` `before`.
pub(super) async fn hits(
    pool: &SqlitePool,
    query: &TextQuery,
    before: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<HitRow>> {
    // FTS5 yields rowids (= ingest_seq) newest first and stops at the limit; only the
    // page's snippets are made.
    let mut qb = QueryBuilder::<sqlx::Sqlite>::new(format!(
        "SELECT p.seq, p.snippet, m.id, m.conversation_id, m.direction, m.sender_name,
             m.sent_at, c.contact_id, k.name AS contact_name
         FROM (SELECT rowid AS seq,
                   snippet(messages_fts, 0, char({}), char({}), '…', 24) AS snippet
               FROM messages_fts WHERE messages_fts MATCH ",
        u32::from(MARK_START),
        u32::from(MARK_END)
    ));
    qb.push_bind(query.fts5());
    if let Some(before) = before {
        qb.push(" AND rowid < ").push_bind(before);
    }
    qb.push(" ORDER BY rowid DESC LIMIT ")
        .push_bind(i64::from(limit) + 1)
        .push(
            ") AS p
             JOIN messages m ON m.ingest_seq = p.seq
             JOIN conversations c ON c.id = m.conversation_id
             JOIN contacts k ON k.id = c.contact_id
             ORDER BY p.seq DESC",
        );
    Ok(qb
        .build_query_as::<HitRow>()
        .persistent(false)
        .fetch_all(pool)
        .await?)
}

/// The conversations of the messages matching `query`, when at most [`SPARSE_MATCHES`] messages
/// match (`None`: more).
pub(super) async fn sparse_conversations(
    pool: &SqlitePool,
    query: &TextQuery,
) -> StoreResult<Option<Vec<ConversationId>>> {
    let rows = sqlx::query_scalar::<_, ConversationId>(
        "SELECT m.conversation_id FROM messages_fts f
         JOIN messages m ON m.ingest_seq = f.rowid
         WHERE messages_fts MATCH $1 LIMIT $2",
    )
    .bind(query.fts5())
    .bind(SPARSE_MATCHES as i64 + 1)
    .persistent(false)
    .fetch_all(pool)
    .await?;
    Ok((rows.len() <= SPARSE_MATCHES).then_some(rows))
}

/// Appends ` AND <conversation c has a message matching query>` for many matches: the matching
/// rowids are collected once; each conversation, in list order, is then checked through its own
/// messages (stops at the page's end).
pub(super) fn push_dense_filter<DB: Database>(qb: &mut QueryBuilder<DB>, query: &TextQuery)
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    qb.push(
        " AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id
           AND m.ingest_seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ",
    )
    .push_bind(query.fts5())
    .push("))");
}
