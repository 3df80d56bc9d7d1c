//! The event outbox: the domain events of a change, written in the change's own transaction (one
//! per conversation-log row, by the log's writers), taken by the event relay in `seq` order and
//! deleted once the bus acknowledged them. So `inbox.events` carries every change at least once,
//! whatever crashes between the commit and the publish.

use std::pin::pin;
use std::time::Duration;

use sqlx::QueryBuilder;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Backend, CHUNK, Store, StoreResult, StoreTx, on_pool, on_tx};
use crate::envelope::{DomainEvent, DomainEventKind, SCHEMA_VERSION};
use crate::ids::{ContactId, ConversationId};
use crate::model::{Actor, from_millis};

/// Rung at every commit in this process, so the relay takes new events at once. A process-wide
/// signal rather than one per store: a commit without events only costs the relay one query.
static COMMITTED: Notify = Notify::const_new();

/// PostgreSQL channel notified at the commit of a transaction that wrote events (the trigger of
/// migration 0007), for the relay of another process (an agent's action in `inbox web` relayed by
/// `inbox core`).
const CHANNEL: &str = "inbox_events";

pub(crate) fn committed() {
    COMMITTED.notify_waiters();
}

/// What a conversation-log row tells the stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogRow<'a> {
    pub id: Uuid,
    pub conversation_id: ConversationId,
    pub kind: &'a str,
    pub actor: Actor,
    pub contact_id: Option<ContactId>,
    pub message_id: Option<crate::ids::MessageId>,
    pub data: &'a serde_json::Value,
    pub at: i64,
}

impl LogRow<'_> {
    /// The row as a domain event: same id, `kind` the coarse class live views follow.
    pub(crate) fn event(&self) -> DomainEvent {
        let kind = match self.kind {
            "opened" => DomainEventKind::ConversationOpened,
            "reopened" => DomainEventKind::ConversationReopened,
            "message_received" => DomainEventKind::MessageReceived,
            "replied" => DomainEventKind::MessageSent,
            "noted" => DomainEventKind::NoteAdded,
            "delivery_updated" => DomainEventKind::DeliveryUpdated,
            "message_edited" => DomainEventKind::MessageEdited,
            _ => DomainEventKind::ConversationUpdated,
        };
        let contact_id = match self.actor {
            Actor::Contact(id) => Some(id),
            _ => self.contact_id,
        };
        DomainEvent {
            schema_version: SCHEMA_VERSION,
            id: self.id,
            kind,
            conversation_id: self.conversation_id,
            message_id: self.message_id,
            contact_id,
            at: from_millis(self.at),
            seq: None,
            change: Some(self.kind.to_owned()),
            actor_kind: Some(self.actor.kind().to_owned()),
            actor_id: self.actor.id(),
            data: Some(self.data.clone()),
        }
    }
}

impl StoreTx {
    /// Queues events for the relay; they are published only if this transaction commits.
    pub(crate) async fn insert_stream_events(&mut self, events: &[DomainEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        for chunk in events.chunks(CHUNK) {
            on_tx!(self, conn, Db => {
                let mut qb =
                    QueryBuilder::<Db>::new("INSERT INTO event_outbox (conversation_id, payload) ");
                qb.push_values(chunk, |mut row, event| {
                    row.push_bind(event.conversation_id)
                        .push_bind(String::from_utf8_lossy(&event.to_json()).into_owned());
                });
                qb.build().execute(&mut *conn).await.map(|r| r.rows_affected())
            })?;
        }
        // On PostgreSQL the table's trigger notifies the other processes' relays at commit.
        Ok(())
    }
}

impl Store {
    /// The oldest events not yet relayed, in `seq` order, each with its `seq` set; rows that no
    /// longer decode come apart, so that one bad row cannot stop the stream.
    pub async fn pending_stream_events(&self, limit: u32) -> StoreResult<PendingEvents> {
        let rows: Vec<(i64, String)> = on_pool!(self, pool, Db => sqlx::query_as::<Db, (i64, String)>(
            "SELECT seq, payload FROM event_outbox ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        let mut pending = PendingEvents::default();
        for (seq, payload) in rows {
            match DomainEvent::from_json(payload.as_bytes()) {
                Ok(mut event) => {
                    event.seq = Some(seq);
                    pending.events.push(event);
                }
                Err(error) => pending.undecodable.push(UndecodableEvent {
                    seq,
                    error: format!("event outbox row {seq}: {error}"),
                    payload,
                }),
            }
        }
        Ok(pending)
    }

    /// Moves rows that do not decode to the dead letters (source `event_outbox`), with their error.
    pub async fn dead_letter_stream_events(&self, rows: &[UndecodableEvent]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for row in rows {
            tx.insert_dead_letter("event_outbox", None, &row.payload, &row.error)
                .await?;
        }
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq).collect();
        for chunk in seqs.chunks(CHUNK) {
            on_tx!(&mut tx, conn, Db => delete_query::<Db>(chunk)
                .build()
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_affected()))?;
        }
        tx.commit().await
    }

    /// Forgets relayed events. By their `seq`s, not a range: a transaction that took a lower `seq`
    /// may commit after a higher one was read, and its events are still to be relayed.
    pub async fn delete_stream_events(&self, seqs: &[i64]) -> StoreResult<()> {
        // Not through `StoreTx::commit`: that would wake the relay for its own delete.
        match &self.backend {
            Backend::Sqlite(pool) => {
                for chunk in seqs.chunks(CHUNK) {
                    delete_query::<sqlx::Sqlite>(chunk)
                        .build()
                        .execute(pool)
                        .await?;
                }
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Losing this delete in a crash only relays the events again (consumers drop
                // copies by id), so it need not wait for the WAL flush that changes wait for.
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                for chunk in seqs.chunks(CHUNK) {
                    delete_query::<sqlx::Postgres>(chunk)
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// How many events wait for the relay.
    pub async fn stream_backlog(&self) -> StoreResult<i64> {
        Ok(on_pool!(self, pool, Db => sqlx::query_scalar::<Db, i64>(
            "SELECT COUNT(*) FROM event_outbox",
        )
        .fetch_one(pool)
        .await)?)
    }

    /// Waits for commits that may have written events: this process's, and on PostgreSQL other
    /// processes' too.
    pub async fn event_wakeup(&self) -> EventWakeup {
        let mut wakeup = EventWakeup {
            store: self.clone(),
            listener: None,
        };
        wakeup.connect().await;
        wakeup
    }
}

fn delete_query<Db>(seqs: &[i64]) -> QueryBuilder<Db>
where
    Db: sqlx::Database,
    for<'q> i64: sqlx::Encode<'q, Db> + sqlx::Type<Db>,
{
    let mut qb = QueryBuilder::<Db>::new("DELETE FROM event_outbox WHERE seq IN (");
    let mut list = qb.separated(", ");
    for seq in seqs {
        list.push_bind(*seq);
    }
    qb.push(")");
    qb
}

/// What the relay takes from the outbox in one round.
#[derive(Debug, Default)]
pub struct PendingEvents {
    pub events: Vec<DomainEvent>,
    pub undecodable: Vec<UndecodableEvent>,
}

impl PendingEvents {
    /// Rows taken, decodable or not.
    pub fn len(&self) -> usize {
        self.events.len() + self.undecodable.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An outbox row whose payload does not decode as a [`DomainEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableEvent {
    pub seq: i64,
    pub payload: String,
    pub error: String,
}

/// A wakeup armed by [`EventWakeup::arm`].
pub type Armed = std::pin::Pin<Box<tokio::sync::futures::Notified<'static>>>;

/// See [`Store::event_wakeup`].
#[derive(Debug)]
pub struct EventWakeup {
    store: Store,
    listener: Option<PgListener>,
}

impl EventWakeup {
    async fn connect(&mut self) {
        let Backend::Postgres(pool) = &self.store.backend else {
            return;
        };
        let listener = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(listener) => self.listener = Some(listener),
            // Other processes' events then wait for the poll.
            Err(error) => tracing::warn!(%error, "Not listening for events; polling."),
        }
    }

    /// Arms the wakeup: a commit from now on ends the next [`EventWakeup::wait`]. Call before
    /// looking for events, so a commit while they are published is not missed.
    pub fn arm(&self) -> Armed {
        let mut notified = Box::pin(COMMITTED.notified());
        notified.as_mut().enable();
        notified
    }

    /// Returns at a commit (armed before), a notification from another process, or after `poll`.
    pub async fn wait(&mut self, armed: Armed, poll: Duration) {
        let sleep = pin!(tokio::time::sleep(poll));
        let lost = match &mut self.listener {
            None => {
                tokio::select! {
                    _ = armed => {}
                    _ = sleep => {}
                }
                false
            }
            Some(listener) => {
                let lost = tokio::select! {
                    _ = armed => false,
                    _ = sleep => false,
                    received = listener.recv() => received.is_err(),
                };
                // One round takes every commit so far: notifications already here (this
                // process's own commits among them) would only start empty rounds.
                while listener.next_buffered().is_some() {}
                lost
            }
        };
        if lost {
            tracing::warn!("Event notifications lost; reconnecting.");
            self.listener = None;
            self.connect().await;
        }
    }
}
