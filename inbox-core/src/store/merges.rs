//! Contact merge and unmerge (docs/threading.md, "Identity"), the rows side; the rules are in
//! [`crate::actions::merge_contacts`] and [`crate::actions::unmerge_contacts`].
//!
//! A merge moves the absorbed contact's identities, conversations and messages to the kept
//! contact and records exactly what moved in `contact_merges` (identities and conversations as
//! JSON, messages in `contact_merge_messages`). The absorbed contact stays as a row with
//! `merged_into` set, so links to it can follow ([`Store::resolve_contact`]). Since its
//! identities moved, everything the customer sends while merged goes to the kept contact.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, FromRow, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CHUNK, RowLock, Store, StoreError, StoreResult, StoreTx, on_pool, on_tx};
use crate::channel_rules::ChannelRules;
use crate::envelope::ChannelKind;
use crate::identity::channel_identity;
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId};
use crate::model::{Contact, Identity, from_millis};

/// Longest `merged_into` chain followed (a merged contact cannot absorb or be kept, so chains
/// are one step; the bound only guards against corrupt data).
const MAX_HOPS: usize = 16;

/// The id of a contact merge (a UUIDv7, stored as text).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct MergeId(pub Uuid);

impl MergeId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for MergeId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MergeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for MergeId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A field of the kept contact that a merge filled from the absorbed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FilledField {
    /// `name`, `email` or `phone`.
    pub field: String,
    /// The kept contact's value before (empty or absent).
    pub before: Option<String>,
    /// The absorbed contact's value it got.
    pub after: String,
}

/// What one merge moved, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ContactMerge {
    pub id: MergeId,
    pub kept_id: ContactId,
    pub absorbed_id: ContactId,
    pub moved_identities: Vec<Identity>,
    pub moved_conversations: Vec<ConversationId>,
    /// How many messages changed contact (which ones is recorded too).
    pub moved_messages: i64,
    pub filled_fields: Vec<FilledField>,
    /// The highest message `ingest_seq` at the time of the merge.
    pub seq_at_merge: i64,
    pub merged_by: Option<AgentId>,
    pub merged_at: DateTime<Utc>,
    pub undone_by: Option<AgentId>,
    pub undone_at: Option<DateTime<Utc>>,
}

/// A contact with its merge pointer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContactState {
    pub contact: Contact,
    /// Set while the contact is merged into another.
    pub merged_into: Option<ContactId>,
}

#[derive(FromRow)]
struct ContactStateRow {
    id: ContactId,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    created_at: i64,
    merged_into: Option<ContactId>,
}

impl From<ContactStateRow> for ContactState {
    fn from(r: ContactStateRow) -> Self {
        ContactState {
            contact: Contact {
                id: r.id,
                name: r.name,
                email: r.email,
                phone: r.phone,
                created_at: from_millis(r.created_at),
            },
            merged_into: r.merged_into,
        }
    }
}

#[derive(FromRow)]
struct MergeRow {
    id: String,
    kept_id: ContactId,
    absorbed_id: ContactId,
    moved_identities: String,
    moved_conversations: String,
    moved_messages: i64,
    filled_fields: String,
    seq_at_merge: i64,
    merged_by: Option<AgentId>,
    merged_at: i64,
    undone_by: Option<AgentId>,
    undone_at: Option<i64>,
}

const MERGE_COLUMNS: &str = "c.id, c.kept_id, c.absorbed_id, c.moved_identities, \
     c.moved_conversations, c.moved_messages, c.filled_fields, c.seq_at_merge, c.merged_by, \
     c.merged_at, c.undone_by, c.undone_at";

fn corrupt(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("contact merge {what}: {e}"))
}

impl TryFrom<MergeRow> for ContactMerge {
    type Error = StoreError;
    fn try_from(r: MergeRow) -> StoreResult<Self> {
        Ok(ContactMerge {
            id: r.id.parse().map_err(|e| corrupt("id", e))?,
            kept_id: r.kept_id,
            absorbed_id: r.absorbed_id,
            moved_identities: serde_json::from_str(&r.moved_identities)
                .map_err(|e| corrupt("identities", e))?,
            moved_conversations: serde_json::from_str(&r.moved_conversations)
                .map_err(|e| corrupt("conversations", e))?,
            moved_messages: r.moved_messages,
            filled_fields: serde_json::from_str(&r.filled_fields)
                .map_err(|e| corrupt("filled fields", e))?,
            seq_at_merge: r.seq_at_merge,
            merged_by: r.merged_by,
            merged_at: from_millis(r.merged_at),
            undone_by: r.undone_by,
            undone_at: r.undone_at.map(from_millis),
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// The contact `id` stands for now: itself, or the contact it is merged into. `None` when
    /// there is no such contact.
    pub async fn resolve_contact(&self, id: ContactId) -> StoreResult<Option<ContactId>> {
        let mut current = id;
        for _ in 0..MAX_HOPS {
            let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, (Option<ContactId>,)>(
                "SELECT merged_into FROM contacts WHERE id = $1",
            )
            .bind(current)
            .fetch_optional(pool)
            .await)?;
            match row {
                None => return Ok(None),
                Some((None,)) => return Ok(Some(current)),
                Some((Some(next),)) => current = next,
            }
        }
        Err(StoreError::Corrupt(format!(
            "contact {id}: merged_into chain longer than {MAX_HOPS}"
        )))
    }

    pub async fn contact_merge(&self, id: MergeId) -> StoreResult<Option<ContactMerge>> {
        let sql = format!("SELECT {MERGE_COLUMNS} FROM contact_merges c WHERE c.id = $1");
        let row = on_pool!(self, pool, Db => sqlx::query_as::<Db, MergeRow>(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await)?;
        row.map(ContactMerge::try_from).transpose()
    }

    /// The merges a contact took part in (kept or absorbed), newest first, undone ones included.
    pub async fn contact_merges(&self, contact: ContactId) -> StoreResult<Vec<ContactMerge>> {
        let sql = format!(
            "SELECT {MERGE_COLUMNS} FROM contact_merges c WHERE c.kept_id = $1
             UNION ALL
             SELECT {MERGE_COLUMNS} FROM contact_merges c WHERE c.absorbed_id = $2
             ORDER BY merged_at DESC, id DESC"
        );
        let rows = on_pool!(self, pool, Db => sqlx::query_as::<Db, MergeRow>(AssertSqlSafe(sql))
            .bind(contact)
            .bind(contact)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(ContactMerge::try_from).collect()
    }
}

impl StoreTx {
    /// Contacts by id, with their merge pointers, locked for update (in id order).
    pub(crate) async fn contacts_for_update(
        &mut self,
        ids: &[ContactId],
    ) -> StoreResult<Vec<ContactState>> {
        // NO KEY UPDATE: a batch of the ingest funnel inserting a conversation of one of them
        // (a foreign-key check, KEY SHARE) must not wait for this.
        let lock = self.row_lock(RowLock::NoKeyUpdate);
        let rows = on_tx!(self, conn, Db => {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT c.id, c.name, c.email, c.phone, c.created_at, c.merged_into
                 FROM contacts c WHERE c.id IN (",
            );
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            qb.push(") ORDER BY c.id");
            qb.push(lock);
            qb.build_query_as::<ContactStateRow>().fetch_all(&mut *conn).await
        })?;
        Ok(rows.into_iter().map(ContactState::from).collect())
    }

    /// A contact's identities in the order `Store::contact` lists them.
    pub(crate) async fn identities_of(&mut self, id: ContactId) -> StoreResult<Vec<Identity>> {
        let rows = on_tx!(self, conn, Db => sqlx::query_as::<Db, (String, String)>(
            "SELECT namespace, handle FROM contact_identities WHERE contact_id = $1
             ORDER BY created_at, namespace, handle",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(namespace, handle)| Identity { namespace, handle })
            .collect())
    }

    /// A contact's conversations, oldest first.
    pub(crate) async fn conversation_ids_of(
        &mut self,
        id: ContactId,
    ) -> StoreResult<Vec<ConversationId>> {
        Ok(
            on_tx!(self, conn, Db => sqlx::query_scalar::<Db, ConversationId>(
            "SELECT id FROM conversations WHERE contact_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await)?,
        )
    }

    /// The highest message `ingest_seq` (0 without messages).
    pub(crate) async fn max_ingest_seq(&mut self) -> StoreResult<i64> {
        Ok(on_tx!(self, conn, Db => sqlx::query_scalar::<Db, i64>(
            "SELECT COALESCE(MAX(ingest_seq), 0) FROM messages",
        )
        .fetch_one(&mut *conn)
        .await)?)
    }

    pub(crate) async fn set_contact_fields(&mut self, contact: &Contact) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE contacts SET name = $1, email = $2, phone = $3 WHERE id = $4",
        )
        .bind(contact.name.clone())
        .bind(contact.email.clone())
        .bind(contact.phone.clone())
        .bind(contact.id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub(crate) async fn set_merged_into(
        &mut self,
        id: ContactId,
        into: Option<ContactId>,
    ) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE contacts SET merged_into = $1 WHERE id = $2",
        )
        .bind(into)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records `merge` and moves what it lists (identities, conversations) and every message of
    /// the absorbed contact to the kept one. Returns how many messages moved (also recorded).
    pub(crate) async fn apply_contact_merge(&mut self, merge: &ContactMerge) -> StoreResult<i64> {
        let id = merge.id.to_string();
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "INSERT INTO contact_merges (id, kept_id, absorbed_id, moved_identities,
                 moved_conversations, moved_messages, filled_fields, seq_at_merge, merged_by,
                 merged_at, undone_by, undone_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(merge.kept_id)
        .bind(merge.absorbed_id)
        .bind(to_json(&merge.moved_identities))
        .bind(to_json(&merge.moved_conversations))
        .bind(0_i64)
        .bind(to_json(&merge.filled_fields))
        .bind(merge.seq_at_merge)
        .bind(merge.merged_by)
        .bind(merge.merged_at.timestamp_millis())
        .bind(merge.undone_by)
        .bind(merge.undone_at.map(|at| at.timestamp_millis()))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        for identity in &merge.moved_identities {
            self.set_identity_contact(identity, merge.absorbed_id, merge.kept_id)
                .await?;
        }
        self.set_conversations_contact(
            &merge.moved_conversations,
            merge.absorbed_id,
            merge.kept_id,
        )
        .await?;
        let moved = on_tx!(self, conn, Db => {
            sqlx::query::<Db>(
                "INSERT INTO contact_merge_messages (merge_id, ingest_seq)
                 SELECT $1, ingest_seq FROM messages WHERE contact_id = $2",
            )
            .bind(&id)
            .bind(merge.absorbed_id)
            .execute(&mut *conn)
            .await?;
            sqlx::query::<Db>(
                "UPDATE messages SET contact_id = $1 WHERE ingest_seq IN
                     (SELECT ingest_seq FROM contact_merge_messages WHERE merge_id = $2)",
            )
            .bind(merge.kept_id)
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected())
        })?;
        let moved = i64::try_from(moved).unwrap_or(i64::MAX);
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE contact_merges SET moved_messages = $1 WHERE id = $2",
        )
        .bind(moved)
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(moved)
    }

    /// A merge, locked for update.
    pub(crate) async fn contact_merge_for_update(
        &mut self,
        id: MergeId,
    ) -> StoreResult<Option<ContactMerge>> {
        let sql = format!(
            "SELECT {MERGE_COLUMNS} FROM contact_merges c WHERE c.id = $1{}",
            self.row_lock(RowLock::Update)
        );
        let row = on_tx!(self, conn, Db => sqlx::query_as::<Db, MergeRow>(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await)?;
        row.map(ContactMerge::try_from).transpose()
    }

    /// Puts back what `merge` moved (what is still with the kept contact), plus what arrived
    /// while merged from the moved identities: the kept contact's conversations whose customer
    /// handle is one of them, and its customer messages sent from one of them. Marks the merge
    /// undone. Returns the conversations that went back to the absorbed contact.
    pub(crate) async fn revert_contact_merge(
        &mut self,
        merge: &ContactMerge,
        by: AgentId,
        at: i64,
    ) -> StoreResult<Vec<ConversationId>> {
        let (kept, absorbed) = (merge.kept_id, merge.absorbed_id);
        let identities: HashSet<&Identity> = merge.moved_identities.iter().collect();
        for identity in &merge.moved_identities {
            self.set_identity_contact(identity, kept, absorbed).await?;
        }

        // Conversations: the moved ones, and those opened while merged by a moved identity.
        let moved: HashSet<ConversationId> = merge.moved_conversations.iter().copied().collect();
        let mut conversations = merge.moved_conversations.clone();
        let kept_conversations = on_tx!(self, conn, Db => sqlx::query_as::<Db, (ConversationId, ChannelId, String, String, String)>(
            "SELECT c.id, c.channel_id, ch.kind, ch.rules, c.contact_handle
             FROM conversations c JOIN channels ch ON ch.id = c.channel_id
             WHERE c.contact_id = $1 ORDER BY c.created_at, c.id",
        )
        .bind(kept)
        .fetch_all(&mut *conn)
        .await)?;
        for (id, channel, kind, rules, handle) in kept_conversations {
            if !moved.contains(&id) && from_identity(&identities, &kind, &rules, channel, &handle) {
                conversations.push(id);
            }
        }
        let conversations = self
            .set_conversations_contact(&conversations, kept, absorbed)
            .await?;

        // Messages: the moved ones, and the customer messages from a moved identity since.
        let id = merge.id.to_string();
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE messages SET contact_id = $1 WHERE contact_id = $2 AND ingest_seq IN
                 (SELECT ingest_seq FROM contact_merge_messages WHERE merge_id = $3)",
        )
        .bind(absorbed)
        .bind(kept)
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        let since = on_tx!(self, conn, Db => sqlx::query_as::<Db, (i64, ChannelId, String, String, Option<String>)>(
            "SELECT m.ingest_seq, m.channel_id, ch.kind, ch.rules, m.sender_handle
             FROM messages m JOIN channels ch ON ch.id = m.channel_id
             WHERE m.contact_id = $1 AND m.ingest_seq > $2 AND m.direction = 'inbound'",
        )
        .bind(kept)
        .bind(merge.seq_at_merge)
        .fetch_all(&mut *conn)
        .await)?;
        let arrived: Vec<i64> = since
            .into_iter()
            .filter(|(_, channel, kind, rules, handle)| {
                handle
                    .as_deref()
                    .is_some_and(|handle| from_identity(&identities, kind, rules, *channel, handle))
            })
            .map(|(seq, ..)| seq)
            .collect();
        for chunk in arrived.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new("UPDATE messages SET contact_id = ");
                qb.push_bind(absorbed).push(" WHERE ingest_seq IN (");
                let mut list = qb.separated(", ");
                for seq in chunk {
                    list.push_bind(*seq);
                }
                qb.push(")");
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }

        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE contact_merges SET undone_by = $1, undone_at = $2 WHERE id = $3",
        )
        .bind(by)
        .bind(at)
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(conversations)
    }

    async fn set_identity_contact(
        &mut self,
        identity: &Identity,
        from: ContactId,
        to: ContactId,
    ) -> StoreResult<()> {
        on_tx!(self, conn, Db => sqlx::query::<Db>(
            "UPDATE contact_identities SET contact_id = $1
             WHERE namespace = $2 AND handle = $3 AND contact_id = $4",
        )
        .bind(to)
        .bind(identity.namespace.clone())
        .bind(identity.handle.clone())
        .bind(from)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Moves the listed conversations that belong to `from` to `to`; returns those it moved.
    async fn set_conversations_contact(
        &mut self,
        ids: &[ConversationId],
        from: ContactId,
        to: ContactId,
    ) -> StoreResult<Vec<ConversationId>> {
        let mut done = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let moved = on_tx!(self, conn, Db => {
                let mut qb = QueryBuilder::<Db>::new("UPDATE conversations SET contact_id = ");
                qb.push_bind(to)
                    .push(" WHERE contact_id = ")
                    .push_bind(from)
                    .push(" AND id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(") RETURNING id");
                qb.build_query_scalar::<ConversationId>().fetch_all(&mut *conn).await
            })?;
            done.extend(moved);
        }
        // In the order asked for.
        let moved: HashSet<ConversationId> = done.into_iter().collect();
        Ok(ids
            .iter()
            .copied()
            .filter(|id| moved.contains(id))
            .collect())
    }
}

/// True when the customer handle `handle` on a channel of `kind` is one of `identities`.
fn from_identity(
    identities: &HashSet<&Identity>,
    kind: &str,
    rules: &str,
    channel: ChannelId,
    handle: &str,
) -> bool {
    let Ok(rules) = serde_json::from_str::<ChannelRules>(rules) else {
        return false;
    };
    ChannelKind::parse(kind).is_some_and(|kind| {
        identities.contains(&channel_identity(rules.identity, kind, channel, handle))
    })
}
