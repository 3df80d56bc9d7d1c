//! Replaying dead letters (`POST /api/v1/dead-letters/{id}/replay`, `inbox dead-letter replay`):
//! the stored envelope, or the raw source re-parsed by its kind, goes through the funnel again.

use crate::channel_catalog::ChannelCatalog;
use crate::envelope::InboundEvent;
use crate::ingest::{self, InboundRecord, IngestError, IngestSettings, ReplayOutcome};
use crate::store::{DeadLetter, DeadLetterId, Store};

/// What a dead letter is replayed as.
async fn record_of(
    store: &Store,
    catalog: &dyn ChannelCatalog,
    letter: &DeadLetter,
) -> Result<InboundRecord, IngestError> {
    if let Ok(event) = InboundEvent::from_json(letter.payload.as_bytes()) {
        return Ok(InboundRecord::Event(event));
    }
    // Not an envelope: the raw source of an input its connector could not read.
    if let Some(channel_id) = letter.channel_id
        && let Some(channel) = store.channel(channel_id).await?
        && let Some(parsed) = catalog.reparse(&channel, &letter.payload).await
    {
        return Ok(match parsed {
            Ok(message) => InboundRecord::Event(InboundEvent::Message(message)),
            Err(error) => InboundRecord::Undecodable {
                payload: letter.payload.clone(),
                error,
            },
        });
    }
    Ok(InboundRecord::Undecodable {
        payload: letter.payload.clone(),
        error: letter.error.clone(),
    })
}

/// Replays one dead letter.
pub async fn replay_dead_letter(
    store: &Store,
    catalog: &dyn ChannelCatalog,
    id: DeadLetterId,
    settings: &IngestSettings,
) -> Result<ReplayOutcome, IngestError> {
    let Some(letter) = store.dead_letter(id).await? else {
        return Ok(ReplayOutcome::NotFound);
    };
    if let Some(resolution) = letter.resolution {
        return Ok(ReplayOutcome::AlreadySettled { resolution });
    }
    if letter.source != "inbound" {
        // Change-stream events are facts already stored; there is nothing to store again.
        let error = format!(
            "a {} dead letter cannot be replayed through the funnel; discard it once handled",
            letter.source
        );
        return Ok(ReplayOutcome::Failed { error });
    }
    let record = record_of(store, catalog, &letter).await?;
    ingest::replay(store, id, record, settings).await
}
