//! Reading the account's mentions: the notifications API from the stored cursor (the newest
//! notification taken), page by page along the `Link` header, oldest first; each notification is
//! stored (its media and raw JSON in blob storage, the message handed to the bus) or
//! dead-lettered, and only then does the cursor move past it. The user streaming API, when the
//! instance serves it, makes this live: a `notification` event reads on from the cursor at once,
//! `status.update` (an edit) and `delete` change a status already taken. Without a stream the
//! notifications are polled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use inbox_core::envelope::{BlobRef, InboundEvent, InboundMessage, Rejected};
use inbox_core::model::Channel;
use object_store::path::Path as BlobPath;
use tokio_util::sync::CancellationToken;

use super::api::{ApiFailure, MastodonApi};
use super::config::MastodonConfig;
use super::parse::{self, Account, MediaToFetch, NOTIFICATION_TYPES, Origin, Parsed};
use super::stream::{Event, EventStream};
use crate::{SourceContext, SyncProgress};

/// The cursor's name: the id of the newest notification taken.
pub const CURSOR: &str = "mastodon_notification";
/// The cursor of an account that had no notification at its first read: `min_id=0` reads from
/// the first one there will be.
pub const NONE_YET: &str = "0";
/// The most pages a first read walks back for its backfill window.
const MAX_BACKFILL_PAGES: usize = 50;
/// The longest rate-limit wait the source sits out before reading on.
const MAX_RATE_WAIT: Duration = Duration::from_secs(15 * 60);

/// What one channel's source works with.
#[derive(Debug)]
pub struct Reader<'a> {
    pub channel: &'a Channel,
    pub config: &'a MastodonConfig,
    pub api: &'a MastodonApi,
    pub ctx: &'a SourceContext,
    /// Our own account (`verify_credentials`).
    pub own: Account,
    pub host: String,
}

/// Reads until `stop`; an error returns (the supervisor restarts with backoff and the channel's
/// health shows the reason).
pub async fn run(
    channel: Channel,
    config: MastodonConfig,
    api: MastodonApi,
    ctx: SourceContext,
    stop: CancellationToken,
) -> Result<(), String> {
    let own = api
        .verify_credentials()
        .await
        .map_err(|e| describe("verify_credentials", &e))?;
    tracing::info!(channel_id = %channel.id, account = %own.acct, "Connected.");
    let reader = Reader {
        channel: &channel,
        config: &config,
        host: api.host(),
        api: &api,
        ctx: &ctx,
        own,
    };
    let poll = Duration::from_secs(u64::from(config.poll_interval_secs));
    let mut stream_refused = false;
    while !stop.is_cancelled() {
        if let Err(e) = reader.catch_up(&(), &stop).await {
            reader.wait_or_fail(e, &stop).await?;
            continue;
        }
        if config.streaming {
            match reader.api.stream().await {
                Ok(response) => {
                    stream_refused = false;
                    tracing::info!(channel_id = %channel.id, "Streaming.");
                    match reader.follow(EventStream::new(response), poll, &stop).await {
                        Ok(()) => {
                            tracing::info!(channel_id = %channel.id, "Stream ended; reconnecting.")
                        }
                        Err(e) => reader.wait_or_fail(e, &stop).await?,
                    }
                    continue;
                }
                Err(e) if e.unauthorized() => return Err(describe("streaming", &e)),
                Err(e) => {
                    if !stream_refused {
                        tracing::info!(channel_id = %channel.id, error = %e, "No stream; polling.");
                    }
                    stream_refused = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(poll) => {}
        }
    }
    Ok(())
}

/// What went wrong while reading, as the loop handles it.
#[derive(Debug)]
pub enum ReadError {
    Api(&'static str, ApiFailure),
    /// The bus or blob storage: try again.
    Store(String),
}

impl From<String> for ReadError {
    fn from(e: String) -> Self {
        ReadError::Store(e)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Api(call, e) => f.write_str(&describe(call, e)),
            ReadError::Store(e) => f.write_str(e),
        }
    }
}

impl Reader<'_> {
    fn origin(&self) -> Origin<'_> {
        Origin {
            channel_id: self.channel.id,
            kind: self.channel.kind,
            own: &self.own,
            host: &self.host,
        }
    }

    /// A rate limit is sat out (up to [`MAX_RATE_WAIT`]); anything else ends the source.
    async fn wait_or_fail(&self, e: ReadError, stop: &CancellationToken) -> Result<(), String> {
        let ReadError::Api(_, failure) = &e else {
            return Err(e.to_string());
        };
        let Some(at) = failure.retry_at else {
            return Err(e.to_string());
        };
        let wait = (at - Utc::now())
            .to_std()
            .unwrap_or_default()
            .clamp(Duration::from_secs(1), MAX_RATE_WAIT);
        tracing::warn!(channel_id = %self.channel.id, ?wait, "Rate limited by the instance.");
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        Ok(())
    }

    /// Follows the stream until it ends; reads on from the cursor on a notification newer than
    /// the cursor (a burst of them is one read, not one per event) and every `poll` besides (a
    /// notification the stream missed is never left behind).
    async fn follow(
        &self,
        mut events: EventStream,
        poll: Duration,
        stop: &CancellationToken,
    ) -> Result<(), ReadError> {
        let mut next_poll = tokio::time::Instant::now() + poll;
        let mut cursor = self.cursor().await?;
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(next_poll) => {
                    next_poll = tokio::time::Instant::now() + poll;
                    self.catch_up(&(), stop).await?;
                    cursor = self.cursor().await?;
                    continue;
                }
                event = events.next() => event,
            };
            match event {
                None => return Ok(()),
                Some(Event::Notification(id)) => {
                    let taken = matches!((&id, &cursor), (Some(id), Some(at)) if !newer(id, at));
                    if !taken {
                        self.catch_up(&(), stop).await?;
                        cursor = self.cursor().await?;
                    }
                }
                Some(Event::StatusUpdate(raw)) => self.take_edit(&raw).await?,
                Some(Event::Delete(id)) => self.take_deletion(&id).await?,
                Some(Event::Other) => {}
            }
        }
    }

    /// Reads every mention above the cursor (the backfill window on a first read), oldest
    /// first, moving the cursor after each. Returns how many notifications were read.
    pub async fn catch_up(
        &self,
        progress: &dyn SyncProgress,
        stop: &CancellationToken,
    ) -> Result<usize, ReadError> {
        let Some(cursor) = self.cursor().await? else {
            return self.backfill(progress, stop).await;
        };
        let mut page = self
            .api
            .notifications(&NOTIFICATION_TYPES, Some(&cursor))
            .await
            .map_err(|e| ReadError::Api("notifications", e))?;
        progress.started(page.items.len() as u64);
        let mut read = 0;
        let mut newest = cursor;
        while !page.items.is_empty() && !stop.is_cancelled() {
            // Newest first on the page: taken oldest first.
            for raw in page.items.iter().rev() {
                newest = self.take_notification(raw).await?.unwrap_or(newest);
                read += 1;
                progress.fetched();
            }
            page = match &page.prev {
                Some(prev) => self.api.page(prev).await,
                None => {
                    self.api
                        .notifications(&NOTIFICATION_TYPES, Some(&newest))
                        .await
                }
            }
            .map_err(|e| ReadError::Api("notifications", e))?;
        }
        if read == 0 {
            // Heard from the instance: the channel's health says when.
            self.set_cursor(&newest).await?;
            record_lag(self.channel, None);
        }
        Ok(read)
    }

    /// A first read: the mentions of the backfill window, walked back along `rel="next"`,
    /// then taken oldest first.
    async fn backfill(
        &self,
        progress: &dyn SyncProgress,
        stop: &CancellationToken,
    ) -> Result<usize, ReadError> {
        let since = Utc::now() - chrono::Duration::days(i64::from(self.config.backfill_days));
        let mut page = self
            .api
            .notifications(&NOTIFICATION_TYPES, None)
            .await
            .map_err(|e| ReadError::Api("notifications", e))?;
        let newest = page.items.first().and_then(notification_id);
        let mut window = Vec::new();
        for _ in 0..MAX_BACKFILL_PAGES {
            let before = window.len();
            window.extend(
                page.items
                    .iter()
                    .filter(|raw| created_at(raw).is_none_or(|at| at >= since))
                    .cloned(),
            );
            let all_in_window = window.len() - before == page.items.len();
            match (&page.next, all_in_window && !page.items.is_empty()) {
                (Some(next), true) if !stop.is_cancelled() => {
                    page = self
                        .api
                        .page(next)
                        .await
                        .map_err(|e| ReadError::Api("notifications", e))?;
                }
                _ => break,
            }
        }
        progress.started(window.len() as u64);
        for raw in window.iter().rev() {
            self.take_notification(raw).await?;
            progress.fetched();
        }
        // Nothing in the window: later reads start above the newest there is (or, with no
        // notification at all, from the start: everything after this read is new).
        match newest {
            Some(newest) if window.is_empty() => self.set_cursor(&newest).await?,
            None => self.set_cursor(NONE_YET).await?,
            _ => {}
        }
        Ok(window.len())
    }

    async fn cursor(&self) -> Result<Option<String>, String> {
        let value = self.ctx.cursors.get(self.channel.id, CURSOR).await?;
        Ok(value.filter(|v| !v.is_empty()))
    }

    async fn set_cursor(&self, id: &str) -> Result<(), String> {
        self.ctx.cursors.set(self.channel.id, CURSOR, id).await
    }

    /// Stores or dead-letters one notification, then moves the cursor to it. Returns its id.
    async fn take_notification(
        &self,
        raw: &serde_json::Value,
    ) -> Result<Option<String>, ReadError> {
        let id = notification_id(raw);
        let parsed = parse::parse_notification(raw, self.origin());
        let raw_path = match (&parsed, &id) {
            (Parsed::Message { message, .. }, _) => {
                status_raw_path(self.channel, &message.external_id)
            }
            (_, Some(id)) => format!(
                "raw/mastodon/{}/notification-{}.json",
                self.channel.id,
                crate::blob_path::segment(id)
            ),
            (_, None) => format!(
                "raw/mastodon/{}/notification-{}.json",
                self.channel.id,
                uuid::Uuid::now_v7()
            ),
        };
        self.hand_over(parsed, raw, raw_path).await?;
        if let Some(id) = &id {
            self.set_cursor(id).await?;
        }
        record_lag(self.channel, created_at(raw));
        Ok(id)
    }

    /// An edit from the stream, of a status we took (others are the home timeline's).
    async fn take_edit(&self, raw: &serde_json::Value) -> Result<(), ReadError> {
        let Some(id) = raw.get("id").and_then(|v| v.as_str()) else {
            return Ok(());
        };
        let original = BlobPath::from(status_raw_path(self.channel, id));
        match self.ctx.blobs.head(&original).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(ReadError::Store(format!("blob {original}: {e}"))),
        }
        let edited = raw
            .get("edited_at")
            .and_then(|v| v.as_str())
            .unwrap_or("unedited");
        let raw_path = format!(
            "raw/mastodon/{}/{}.edit-{}.json",
            self.channel.id,
            crate::blob_path::segment(id),
            crate::blob_path::segment(edited)
        );
        let parsed = parse::parse_status(raw, self.origin());
        self.hand_over(parsed, raw, raw_path).await
    }

    /// A deletion from the stream, of a status we took: the message says it was deleted, what it
    /// said stays in its earlier versions.
    async fn take_deletion(&self, id: &str) -> Result<(), ReadError> {
        let Some(original) = self.original(id).await? else {
            return Ok(());
        };
        let now = Utc::now();
        let message = parse::deletion_of(&original, now, now);
        tracing::info!(channel_id = %self.channel.id, status_id = %id, "Status deleted by its author.");
        self.publish(InboundEvent::Message(message)).await
    }

    /// The message a status we took was stored as (parsed again from its raw JSON).
    async fn original(&self, status_id: &str) -> Result<Option<InboundMessage>, String> {
        let path = BlobPath::from(status_raw_path(self.channel, status_id));
        let bytes = match self.ctx.blobs.get(&path).await {
            Ok(found) => found
                .bytes()
                .await
                .map_err(|e| format!("blob {path}: {e}"))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(format!("blob {path}: {e}")),
        };
        let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(match parse::parse_notification(&raw, self.origin()) {
            Parsed::Message { message, .. } => Some(*message),
            _ => None,
        })
    }

    /// A parsed notification or status to the bus: its media fetched and its raw JSON kept
    /// first; a rejection dead-lettered with its reason. An error hands nothing over.
    async fn hand_over(
        &self,
        parsed: Parsed,
        raw: &serde_json::Value,
        raw_path: String,
    ) -> Result<(), ReadError> {
        let raw_bytes = serde_json::to_vec(raw).unwrap_or_default();
        let event = match parsed {
            Parsed::Ignored(_) => return Ok(()),
            Parsed::Rejected(error) => {
                self.ctx.put_blob(&raw_path, raw_bytes).await?;
                rejected(self.channel, raw_path, error)
            }
            Parsed::Message { mut message, media } => match self.fetch(&media).await {
                Ok(()) => {
                    self.ctx.put_blob(&raw_path, raw_bytes).await?;
                    message.raw = Some(BlobRef(raw_path));
                    InboundEvent::Message(*message)
                }
                Err(FetchError::Refused(error)) => {
                    self.ctx.put_blob(&raw_path, raw_bytes).await?;
                    rejected(self.channel, raw_path, error)
                }
                Err(FetchError::Transient(error)) => return Err(error),
            },
        };
        self.publish(event).await
    }

    async fn publish(&self, event: InboundEvent) -> Result<(), ReadError> {
        self.ctx
            .bus
            .publish_inbound(&event)
            .await
            .map_err(|e| ReadError::Store(format!("bus: {e}")))
    }

    async fn fetch(&self, media: &[MediaToFetch]) -> Result<(), FetchError> {
        for file in media {
            let path = BlobPath::from(file.blob.0.as_str());
            // Fetched already (a re-read after a crash).
            if self.ctx.blobs.head(&path).await.is_ok() {
                continue;
            }
            let bytes = self.api.download(&file.url).await.map_err(|e| {
                if e.transient() {
                    FetchError::Transient(ReadError::Api("media", e))
                } else {
                    FetchError::Refused(format!("mastodon: media {}: {e}", file.url))
                }
            })?;
            self.ctx
                .put_blob(&file.blob.0, bytes)
                .await
                .map_err(|e| FetchError::Transient(ReadError::Store(e)))?;
        }
        Ok(())
    }
}

enum FetchError {
    /// The file is not to be had (gone, too big): the notification is dead-lettered.
    Refused(String),
    Transient(ReadError),
}

/// Where a taken status's raw notification is kept (by status id: edits and deletions find it).
fn status_raw_path(channel: &Channel, status_id: &str) -> String {
    format!(
        "raw/mastodon/{}/{}.json",
        channel.id,
        crate::blob_path::segment(status_id)
    )
}

/// Mastodon's ids are numbers written as strings: the longer is the larger, then by digits.
fn newer(id: &str, than: &str) -> bool {
    (id.len(), id) > (than.len(), than)
}

fn notification_id(raw: &serde_json::Value) -> Option<String> {
    raw.get("id").and_then(|v| v.as_str()).map(str::to_owned)
}

fn created_at(raw: &serde_json::Value) -> Option<DateTime<Utc>> {
    let at = raw.get("created_at")?.as_str()?;
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn rejected(channel: &Channel, payload: String, error: String) -> InboundEvent {
    InboundEvent::Rejected(Rejected {
        channel_id: channel.id,
        payload,
        error,
        received_at: Utc::now(),
    })
}

/// How long after it was written a notification was taken (`None`: nothing was waiting), as
/// the gauge `inbox_source_lag_seconds`.
fn record_lag(channel: &Channel, written: Option<DateTime<Utc>>) {
    let lag = written.map_or(0, |at| (Utc::now() - at).num_seconds().max(0));
    metrics::gauge!(
        "inbox_source_lag_seconds",
        "channel_id" => channel.id.to_string(),
        "kind" => channel.kind.to_string()
    )
    .set(lag as f64);
}

/// A failed call in words an operator can act on.
pub fn describe(call: &str, e: &ApiFailure) -> String {
    if e.unauthorized() {
        format!(
            "{call}: the access token was refused ({e}); it may have been revoked: \
             check the token's variable and its scopes"
        )
    } else {
        format!("{call}: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::newer;

    #[test]
    fn ids_compare_as_numbers() {
        assert!(newer("110000000000000043", "110000000000000042"));
        assert!(newer("100", "99"));
        assert!(!newer("99", "100"));
        assert!(!newer("42", "42"));
    }
}
