//! Live updates: the domain events of every commit, as server-sent events. The page's script
//! re-renders what an event touches (the list, the open conversation) by fetching fragments, so
//! the stream carries ids only, never message content.
//!
//! A stream lives only as long as its caller is signed in: when a session or token ends here
//! (sign-out, an agent disabled, "sign out everywhere") every open stream re-checks its caller
//! at once, and each stream re-checks every [`RECHECK`] for what ended elsewhere (another web
//! instance, an expired session). A stream whose caller is gone ends; the page's script then
//! finds the session gone and goes to sign-in.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use inbox_core::envelope::DomainEvent;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::Viewer;
use crate::http::WebState;
use crate::http::auth::resolve;

/// How often an open stream checks that its caller is still signed in.
const RECHECK: Duration = Duration::from_secs(30);

/// Counts an open stream in `inbox_sse_clients` for as long as it lives.
struct SseClient;

impl SseClient {
    fn open() -> Self {
        metrics::gauge!("inbox_sse_clients").increment(1.0);
        SseClient
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        metrics::gauge!("inbox_sse_clients").decrement(1.0);
    }
}

struct Live {
    _client: SseClient,
    state: WebState,
    /// The request's credentials (cookie or bearer token), checked again while the stream runs.
    headers: HeaderMap,
    events: broadcast::Receiver<DomainEvent>,
    ended: broadcast::Receiver<()>,
    recheck: tokio::time::Interval,
}

impl Live {
    /// True while the credentials still resolve to an enabled agent.
    async fn still_signed_in(&self) -> bool {
        // A store error keeps the stream: an outage must not sign everyone out.
        !matches!(
            resolve(&self.state, &self.headers).await,
            Ok(None) | Err(crate::http::ApiError::Unauthorized)
        )
    }

    /// The next event to send, or `None` when the stream must end.
    async fn next(&mut self) -> Option<Event> {
        loop {
            tokio::select! {
                event = self.events.recv() => return match event {
                    Ok(event) => Some(change(&event)),
                    // Too slow a reader missed events: tell the page to refresh what it shows.
                    Err(RecvError::Lagged(_)) => Some(Event::default().event("resync").data("{}")),
                    Err(RecvError::Closed) => None,
                },
                ended = self.ended.recv() => {
                    if matches!(ended, Err(RecvError::Closed)) {
                        return None;
                    }
                    if !self.still_signed_in().await {
                        return None;
                    }
                }
                _ = self.recheck.tick() => {
                    if !self.still_signed_in().await {
                        return None;
                    }
                }
            }
        }
    }
}

fn change(event: &DomainEvent) -> Event {
    let data = serde_json::json!({
        "kind": event.kind,
        "conversation_id": event.conversation_id,
        "message_id": event.message_id,
        "contact_id": event.contact_id,
    });
    Event::default().event("change").data(data.to_string())
}

pub async fn stream(
    State(state): State<WebState>,
    _viewer: Viewer,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.reset(); // the first tick after RECHECK, not at once
    let live = Live {
        _client: SseClient::open(),
        events: state.bus.subscribe_domain(),
        ended: state.auth.ended.subscribe(),
        state,
        headers,
        recheck,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok(event), live))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
