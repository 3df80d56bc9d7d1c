//! `GET /widget/{channel_id}/stream`: the chat as server-sent events, resumed after
//! `Last-Event-ID`, with the agents' typing and read signals.

use super::*;

/// How often an open stream looks for entries another instance wrote.
const RELOOK: Duration = Duration::from_secs(2);
/// How often an open stream notes that the visitor is there (for the email fallback).
const PRESENCE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    chat: String,
    /// Where to resume when the browser did not say (`Last-Event-ID`).
    #[serde(default)]
    after: Option<String>,
}

pub(super) async fn stream(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    let channel = &allowed.channel;
    let Some(chat) = visitor::open(&channel.secret, channel.id, &query.chat) else {
        return allowed.refuse(Refused::Token);
    };
    let key = ChatKey {
        channel: channel.id,
        log: visitor::log_key(&chat.handle),
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.after)
        .filter(|id| !id.is_empty());
    let follow = Follow {
        live: widget.log.subscribe(&key),
        log: widget.log.clone(),
        key,
        last,
        pending: Default::default(),
        handle: chat.handle.clone(),
        typing_sent: None,
        read_sent: None,
        signals: Default::default(),
        relook: tokio::time::interval(RELOOK),
        started: false,
        ready: false,
        noted: None,
    };
    let events = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await;
        Some((Ok::<_, Infallible>(event), follow))
    });
    allowed.answer(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// An open stream: what it has sent, and where news comes from.
struct Follow {
    live: tokio::sync::broadcast::Receiver<Entry>,
    log: ChatLog,
    key: ChatKey,
    /// The last entry sent.
    last: Option<String>,
    pending: std::collections::VecDeque<Entry>,
    /// The customer, whose agent signals (typing, read) the stream passes on.
    handle: String,
    /// The typing signal last passed on (its end), and the read time.
    typing_sent: Option<chrono::DateTime<Utc>>,
    read_sent: Option<chrono::DateTime<Utc>>,
    signals: std::collections::VecDeque<Event>,
    relook: tokio::time::Interval,
    started: bool,
    /// `ready` was sent: the history is shown.
    ready: bool,
    /// When presence was last noted.
    noted: Option<tokio::time::Instant>,
}

impl Drop for Follow {
    /// The visitor was there until now.
    fn drop(&mut self) {
        let (log, key) = (self.log.clone(), self.key.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = log.seen(&key).await;
            });
        }
    }
}

impl Follow {
    /// The history first, then `ready`, then each new entry as it comes.
    async fn next(&mut self) -> Event {
        if !self.started {
            self.started = true;
            self.read().await;
        }
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.last = Some(entry.id.clone());
                let data = serde_json::to_string(&entry).unwrap_or_default();
                return Event::default().id(entry.id).event("message").data(data);
            }
            if let Some(signal) = self.signals.pop_front() {
                return signal;
            }
            if !self.ready {
                self.ready = true;
                // Reconnect quickly after a drop; the browser resumes with Last-Event-ID.
                return Event::default()
                    .event("ready")
                    .retry(Duration::from_secs(1))
                    .data("{}");
            }
            tokio::select! {
                _ = self.live.recv() => {}
                _ = self.relook.tick() => {}
            }
            self.read().await;
        }
    }

    /// Queues what the log holds after the last entry sent, and notes the visitor's presence
    /// now and then.
    async fn read(&mut self) {
        if self.noted.is_none_or(|at| at.elapsed() >= PRESENCE_EVERY) {
            self.noted = Some(tokio::time::Instant::now());
            if let Err(e) = self.log.seen(&self.key).await {
                tracing::warn!(error = %e, "Visitor presence not noted.");
            }
        }
        match self.log.after(&self.key, self.last.as_deref()).await {
            Ok(entries) => self.pending = entries.into(),
            Err(e) => tracing::warn!(error = %e, "Chat log unreadable; trying again."),
        }
        self.read_signals().await;
    }

    /// Queues `typing` (an agent started or goes on typing) and `read` (an agent opened the
    /// conversation) when they changed. Without ids: a resumed stream starts from the entries.
    async fn read_signals(&mut self) {
        let signals = match self.log.agent_signals(self.key.channel, &self.handle).await {
            Ok(signals) => signals,
            Err(e) => {
                tracing::debug!(error = %e, "Agent signals unreadable.");
                return;
            }
        };
        let now = Utc::now();
        if let (Some(agent), Some(typing)) = (signals.typing_now(now), &signals.typing)
            && self.typing_sent != Some(typing.until)
        {
            self.typing_sent = Some(typing.until);
            let data = json!({"agent": agent, "until": typing.until}).to_string();
            self.signals
                .push_back(Event::default().event("typing").data(data));
        }
        if let Some(read_at) = signals.read_at
            && self.read_sent != Some(read_at)
        {
            self.read_sent = Some(read_at);
            let data = json!({"at": read_at}).to_string();
            self.signals
                .push_back(Event::default().event("read").data(data));
        }
    }
}
