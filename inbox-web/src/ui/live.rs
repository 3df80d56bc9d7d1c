//! Live updates: the domain events of every commit, as server-sent events. The page's script
//! re-renders what an event touches (the list, the open conversation) by fetching fragments, so
//! the stream carries ids only, never message content.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::Viewer;
use crate::http::WebState;

pub async fn stream(
    State(state): State<WebState>,
    _viewer: Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.bus.subscribe_domain();
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(event) => {
                let data = serde_json::json!({
                    "kind": event.kind,
                    "conversation_id": event.conversation_id,
                    "message_id": event.message_id,
                    "contact_id": event.contact_id,
                });
                Event::default().event("change").data(data.to_string())
            }
            // Too slow a reader missed events: tell the page to refresh what it shows.
            Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
