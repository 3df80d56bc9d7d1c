//! Time-driven changes: snoozed conversations open again when their time comes; an SLA deadline
//! that passed unmet is recorded as a breach, once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use chrono::Utc;

use crate::actions::wake_snoozed;
use crate::envelope::DomainEvent;
use crate::model::{Actor, EventKind, to_millis};
use crate::store::{NewEvent, Store, StoreResult};

/// How often due snoozes are looked for.
const EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct SnoozeWaker {
    pub store: Store,
}

impl SnoozeWaker {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match wake_snoozed(&self.store).await {
                Ok(events) if !events.is_empty() => {
                    tracing::info!(conversations = events.len(), "Snoozes ended.");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "Snoozes not checked; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}

/// How often passed deadlines are looked for.
const SLA_EVERY: Duration = Duration::from_secs(10);

/// Records SLA breaches as their deadlines pass.
#[derive(Debug, Clone)]
pub struct SlaWatcher {
    pub store: Store,
}

impl SlaWatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match record_breaches(&self.store).await {
                Ok(events) if !events.is_empty() => {
                    tracing::info!(conversations = events.len(), "SLA breaches recorded.");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "SLA deadlines not checked; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SLA_EVERY) => {}
            }
        }
    }
}

/// Records every passed, unmet deadline as a breach: a log row (and with it a domain event on
/// the event stream) and `inbox_sla_breaches_total{target}`; the conversation remembers the
/// deadline, so it is recorded once however often this runs, in however many processes.
pub async fn record_breaches(store: &Store) -> StoreResult<Vec<DomainEvent>> {
    let now = to_millis(Utc::now());
    let mut tx = store.begin().await?;
    let overdue = tx.overdue(now, 500).await?;
    if overdue.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(overdue.len());
    for o in &overdue {
        tx.mark_breached(o.conversation_id).await?;
        rows.push(NewEvent {
            conversation_id: o.conversation_id,
            kind: EventKind::SlaBreached,
            actor: Actor::System,
            contact_id: Some(o.contact_id),
            message_id: None,
            data: serde_json::json!({
                "target": o.due.target.as_str(),
                "due_at": o.due.at,
            }),
            at: now,
        });
    }
    let written = tx.insert_events(&rows).await?;
    tx.commit().await?;
    for o in &overdue {
        metrics::counter!("inbox_sla_breaches_total", "target" => o.due.target.as_str())
            .increment(1);
    }
    Ok(written)
}
