//! The streaming API's server-sent events, read as they come: `event:` and `data:` lines, a
//! blank line ending each event, `:` lines (heartbeats) skipped.

/// What the user stream says, as far as the inbox cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new notification (its id, when it has one): read on from the cursor.
    Notification(Option<String>),
    /// A status was edited (its new version).
    StatusUpdate(serde_json::Value),
    /// A status was deleted (its id).
    Delete(String),
    /// Anything else (home timeline updates, filters changed…).
    Other,
}

/// The most an event may hold before the stream is given up as broken.
const MAX_EVENT: usize = 4 * 1024 * 1024;

/// An open stream.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        EventStream {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` when the stream ended or broke.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(block) = take_block(&mut self.buffer) {
                if let Some(event) = event_of(&block) {
                    return Some(event);
                }
                continue;
            }
            if self.buffer.len() > MAX_EVENT {
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// One whole event block (up to a blank line) out of the buffer, newlines normalized. Split on
/// bytes, so a character cut between two chunks stays whole.
fn take_block(buffer: &mut Vec<u8>) -> Option<String> {
    let ends = [&b"\r\n\r\n"[..], &b"\n\n"[..]];
    let (at, len) = ends
        .iter()
        .filter_map(|end| {
            buffer
                .windows(end.len())
                .position(|w| w == *end)
                .map(|at| (at, end.len()))
        })
        .min()?;
    let block = String::from_utf8_lossy(&buffer[..at]).replace("\r\n", "\n");
    buffer.drain(..at + len);
    Some(block)
}

/// An event block's meaning; `None` for a block of comments only.
fn event_of(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    let name = name?;
    let data = data.join("\n");
    Some(match name.as_str() {
        "notification" => Event::Notification(
            serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|n| n.get("id")?.as_str().map(str::to_owned)),
        ),
        "status.update" => match serde_json::from_str(&data) {
            Ok(status) => Event::StatusUpdate(status),
            Err(_) => Event::Other,
        },
        "delete" => Event::Delete(data.trim().trim_matches('"').to_owned()),
        _ => Event::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks_and_heartbeats_skipped() {
        let mut buffer = b":thump\n\nevent: delete\ndata: 1100".to_vec();
        let block = take_block(&mut buffer).unwrap();
        assert_eq!(event_of(&block), None);
        assert_eq!(take_block(&mut buffer), None);
        buffer.extend_from_slice(b"42\r\n\r\nevent: status.update\ndata: {\"id\":\"7\"}\n\n");
        let block = take_block(&mut buffer).unwrap();
        assert_eq!(event_of(&block), Some(Event::Delete("110042".into())));
        let block = take_block(&mut buffer).unwrap();
        assert_eq!(
            event_of(&block),
            Some(Event::StatusUpdate(serde_json::json!({"id": "7"})))
        );
        assert!(buffer.is_empty());
        assert_eq!(
            event_of("event: notification\ndata: {}"),
            Some(Event::Notification(None))
        );
        assert_eq!(
            event_of("event: notification\ndata: {\"id\":\"34975861\",\"type\":\"mention\"}"),
            Some(Event::Notification(Some("34975861".into())))
        );
        assert_eq!(event_of("event: update\ndata: {}"), Some(Event::Other));
    }
}
