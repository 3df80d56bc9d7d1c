//! PostgreSQL's full-text statements: a GIN-indexed `tsvector` column (`messages.search`,
//! `simple` configuration), with the plan picked by the search itself (see the module above).

use sqlx::{Database, Encode, PgConnection, PgPool, QueryBuilder, Type};

use super::{
    HitRow, MARK_END, MARK_START, PG_INDEXED_CHARS, PG_RECENT_WINDOW, SPARSE_MATCHES, Term,
    TextQuery,
};
use crate::ids::ConversationId;
use crate::store::StoreResult;

impl TextQuery {
    /// Pushes the PostgreSQL `tsquery` expression: `phraseto_tsquery` of each phrase (any text
    /// is valid there) and `to_tsquery('<stem>':*)` of each prefix (letters and digits only),
    /// joined by `&&`.
    pub(super) fn push_tsquery<DB: Database>(&self, qb: &mut QueryBuilder<DB>)
    where
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        qb.push("(");
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                qb.push(" && ");
            }
            match term {
                Term::Phrase(text) => {
                    qb.push("phraseto_tsquery('simple', ")
                        .push_bind(text.clone())
                        .push(")");
                }
                Term::Prefix(stem) => {
                    qb.push("to_tsquery('simple', ")
                        .push_bind(format!("'{stem}':*"))
                        .push(")");
                }
            }
        }
        qb.push(")");
    }
}

/// The page's hits newest first, `limit + 1` of them at most, before the `ingest_seq` `before`;
/// `None` when nothing matches.
pub(super) async fn hits(
    pool: &PgPool,
    query: &TextQuery,
    before: Option<i64>,
    limit: u32,
) -> StoreResult<Option<Vec<HitRow>>> {
    let mut tx = pool.begin().await?;
    // A word in many messages fills the page from the newest ones; any other is found on the
    // GIN index.
    let mut seqs = newest_matches(&mut tx, query, before, limit, Some(PG_RECENT_WINDOW)).await?;
    if seqs.len() <= limit as usize {
        seqs = match sparse_matches(&mut tx, query).await? {
            Some(matches) => {
                let mut seqs: Vec<i64> = matches
                    .into_iter()
                    .map(|(seq, _)| seq)
                    .filter(|seq| before.is_none_or(|before| *seq < before))
                    .collect();
                seqs.sort_unstable_by(|a, b| b.cmp(a));
                seqs.truncate(limit as usize + 1);
                seqs
            }
            None => newest_matches(&mut tx, query, before, limit, None).await?,
        };
    }
    if seqs.is_empty() {
        return Ok(None);
    }
    let mut qb = QueryBuilder::<sqlx::Postgres>::new(
        "SELECT m.ingest_seq AS seq, ts_headline('simple', left(m.text, ",
    );
    qb.push_bind(PG_INDEXED_CHARS).push("), ");
    query.push_tsquery(&mut qb);
    qb.push(", ")
        .push_bind(format!(
            "StartSel=\"{MARK_START}\", StopSel=\"{MARK_END}\", MaxWords=24, \
             MinWords=12, ShortWord=0, MaxFragments=2, FragmentDelimiter=\" … \""
        ))
        .push(
            ") AS snippet, m.id, m.conversation_id, m.direction, m.sender_name,
                 m.sent_at, c.contact_id, k.name AS contact_name
             FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             JOIN contacts k ON k.id = c.contact_id
             WHERE m.ingest_seq = ANY(",
        )
        .push_bind(seqs)
        .push(") ORDER BY m.ingest_seq DESC");
    let rows = qb
        .build_query_as::<HitRow>()
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(rows))
}

/// The conversations of the messages matching `query`, when at most [`SPARSE_MATCHES`] messages
/// match (`None`: more).
pub(super) async fn sparse_conversations(
    pool: &PgPool,
    query: &TextQuery,
) -> StoreResult<Option<Vec<ConversationId>>> {
    let mut tx = pool.begin().await?;
    let rows = sparse_matches(&mut tx, query).await?;
    tx.commit().await?;
    Ok(rows.map(|rows| rows.into_iter().map(|(_, id)| id).collect()))
}

/// Appends ` AND <conversation c has a message matching query>` for many matches.
pub(super) fn push_dense_filter<DB: Database>(qb: &mut QueryBuilder<DB>, query: &TextQuery)
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    qb.push(" AND c.id IN (SELECT m.conversation_id FROM messages m WHERE m.search @@ ");
    query.push_tsquery(qb);
    qb.push(")");
}

/// PostgreSQL: the messages matching `query`, when there are at most [`SPARSE_MATCHES`]
/// (`None`: more). Counted on the GIN index only (a bitmap scan): the planner's estimate for a
/// rare word is often far too high, and walking the table for it would read every row.
async fn sparse_matches(
    conn: &mut PgConnection,
    query: &TextQuery,
) -> StoreResult<Option<Vec<(i64, ConversationId)>>> {
    sqlx::raw_sql("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        .execute(&mut *conn)
        .await?;
    let mut qb = QueryBuilder::<sqlx::Postgres>::new(
        "SELECT ingest_seq, conversation_id FROM messages WHERE search @@ ",
    );
    query.push_tsquery(&mut qb);
    qb.push(" LIMIT ").push_bind(SPARSE_MATCHES as i64 + 1);
    let rows = qb
        .build_query_as::<(i64, ConversationId)>()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::raw_sql("RESET enable_seqscan; RESET enable_indexscan")
        .execute(&mut *conn)
        .await?;
    Ok((rows.len() <= SPARSE_MATCHES).then_some(rows))
}

/// PostgreSQL: the newest `limit + 1` messages matching `query` before `before`, walking the
/// primary key backwards (at most `window` ingest_seqs back when given). Cheap when matches are
/// dense among the newest messages, which is when the GIN probe is expensive.
async fn newest_matches(
    conn: &mut PgConnection,
    query: &TextQuery,
    before: Option<i64>,
    limit: u32,
    window: Option<i64>,
) -> StoreResult<Vec<i64>> {
    sqlx::raw_sql("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        .execute(&mut *conn)
        .await?;
    let mut qb =
        QueryBuilder::<sqlx::Postgres>::new("SELECT ingest_seq FROM messages WHERE search @@ ");
    query.push_tsquery(&mut qb);
    if let Some(before) = before {
        qb.push(" AND ingest_seq < ").push_bind(before);
    }
    if let Some(window) = window {
        match before {
            Some(before) => qb
                .push(" AND ingest_seq >= ")
                .push_bind(before.saturating_sub(window)),
            None => qb
                .push(" AND ingest_seq >= (SELECT MAX(ingest_seq) FROM messages) - ")
                .push_bind(window),
        };
    }
    qb.push(" ORDER BY ingest_seq DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let seqs = qb
        .build_query_scalar::<i64>()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::raw_sql("RESET enable_seqscan; RESET enable_bitmapscan")
        .execute(&mut *conn)
        .await?;
    Ok(seqs)
}
