//! A visitor's chat as the widget shows it: their messages and the agents' replies, one object
//! per entry under `web_chat/<channel>/<log key>/entries/`, named by a time-ordered id (UUIDv7),
//! so a listing is the history in order and an entry id is where a stream resumes
//! (`Last-Event-ID`). The objects are written by whichever instance took the message or
//! delivered the reply; a [`Hub`] tells this instance's open streams at once, and streams also
//! look again every few seconds for what another instance wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use inbox_core::agent_signals::AgentSignals;
use inbox_core::ids::ChannelId;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Most entries a stream replays when it starts from nothing.
pub const HISTORY_LIMIT: usize = 200;

/// Who wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    Visitor,
    Agent,
}

/// One message of the chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Time-ordered (UUIDv7, simple form): the SSE event id.
    pub id: String,
    pub from: Author,
    /// The agent's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub text: String,
    /// The names of the files it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The sender's id of the message (the widget's for a visitor's, the stored message id
    /// for an agent's): a retried send is one entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When it was written (by the visitor, or by the agent): the widget shows entries in
    /// this order.
    pub at: DateTime<Utc>,
}

impl Entry {
    pub fn new(from: Author, text: String) -> Self {
        Entry {
            id: uuid::Uuid::now_v7().simple().to_string(),
            from,
            agent: None,
            text,
            files: Vec::new(),
            client_id: None,
            at: Utc::now(),
        }
    }
}

/// Where one chat's entries are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChatKey {
    pub channel: ChannelId,
    /// [`super::visitor::log_key`] of the contact handle.
    pub log: String,
}

impl ChatKey {
    fn prefix(&self) -> Path {
        self.path("entries")
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("web_chat/{}/{}/{name}", self.channel, self.log))
    }
}

/// An entry object as listed: its id and client id, read from its name.
struct Listed {
    id: String,
    client_id: Option<String>,
    path: Path,
}

/// What the visitor told about themselves, kept beside the chat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The address typed into the pre-chat form (unverified): where a reply may also go by
    /// email once the visitor has gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_email: Option<String>,
}

/// When the visitor last had the chat open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Presence {
    seen_at: DateTime<Utc>,
}

/// Reads and writes chat logs, and tells open streams of new entries.
#[derive(Debug, Clone)]
pub struct ChatLog {
    blobs: Arc<dyn ObjectStore>,
    hub: Arc<Hub>,
    /// Appends to one chat, one at a time (striped by chat), so entries are named in the order
    /// they are written: a stream that has sent an entry never misses one named before it.
    writing: Arc<[tokio::sync::Mutex<()>; WRITE_STRIPES]>,
}

/// How many locks the chats' appends share.
const WRITE_STRIPES: usize = 64;

impl ChatLog {
    pub fn new(blobs: Arc<dyn ObjectStore>) -> Self {
        ChatLog {
            blobs,
            hub: Arc::new(Hub::default()),
            writing: Arc::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))),
        }
    }

    /// Writes an entry (durably, before it is announced). Its object is named by its id and
    /// client id (`<id>.<client id>.json`), so a listing alone orders the chat and finds a send
    /// taken before.
    ///
    /// The entry's id is minted here, under the chat's lock: two writers (a visitor's send and
    /// a reply's delivery) racing would otherwise name entries out of their writing order.
    /// Returns the entry as written.
    pub async fn append(&self, key: &ChatKey, mut entry: Entry) -> Result<Entry, String> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let _writing = self.writing[(hasher.finish() as usize) % WRITE_STRIPES]
            .lock()
            .await;
        entry.id = uuid::Uuid::now_v7().simple().to_string();
        let name = match &entry.client_id {
            Some(client_id) => format!("{}.{client_id}.json", entry.id),
            None => format!("{}.json", entry.id),
        };
        let path = key.prefix().child(name);
        self.put_json(&path, &entry).await?;
        self.hub.announce(key, &entry);
        Ok(entry)
    }

    /// The entries after `after` (all when `None`), oldest first; at most [`HISTORY_LIMIT`] of
    /// the newest when starting from nothing.
    pub async fn after(&self, key: &ChatKey, after: Option<&str>) -> Result<Vec<Entry>, String> {
        let newer: Vec<Listed> = self
            .list(key)
            .await?
            .into_iter()
            .filter(|l| after.is_none_or(|after| l.id.as_str() > after))
            .collect();
        let skip = if after.is_none() {
            newer.len().saturating_sub(HISTORY_LIMIT)
        } else {
            0
        };
        let mut entries = Vec::with_capacity(newer.len() - skip);
        for listed in &newer[skip..] {
            match self.get_json::<Entry>(&listed.path).await {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "Skipped an unreadable chat entry."),
            }
        }
        Ok(entries)
    }

    /// The entry with this client id, when the send was taken before (found by name: only
    /// that entry is read).
    pub async fn by_client_id(
        &self,
        key: &ChatKey,
        client_id: &str,
    ) -> Result<Option<Entry>, String> {
        let found = self
            .list(key)
            .await?
            .into_iter()
            .find(|l| l.client_id.as_deref() == Some(client_id));
        match found {
            Some(listed) => self.get_json(&listed.path).await,
            None => Ok(None),
        }
    }

    /// The chat's entry objects, oldest first.
    async fn list(&self, key: &ChatKey) -> Result<Vec<Listed>, String> {
        let prefix = key.prefix();
        let listed: Result<Vec<Path>, _> = self
            .blobs
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await;
        let paths = match listed {
            Ok(paths) => paths,
            // A chat nobody wrote in yet.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(format!("chat log {prefix}: {e}")),
        };
        let mut entries: Vec<Listed> = paths
            .into_iter()
            .filter_map(|path| {
                let name = path.filename()?.strip_suffix(".json")?.to_owned();
                let (id, client_id) = match name.split_once('.') {
                    Some((id, client_id)) => (id.to_owned(), Some(client_id.to_owned())),
                    None => (name, None),
                };
                Some(Listed {
                    id,
                    client_id,
                    path,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    /// Notes that the visitor has the chat open now (streams do, while they are open).
    pub async fn seen(&self, key: &ChatKey) -> Result<(), String> {
        self.put_json(
            &key.path("presence.json"),
            &Presence {
                seen_at: Utc::now(),
            },
        )
        .await
    }

    /// True while a stream of the chat is open on this instance, or one elsewhere said so
    /// within `window`.
    pub async fn present(&self, key: &ChatKey, window: chrono::Duration) -> Result<bool, String> {
        if self.hub.open(key) {
            return Ok(true);
        }
        let presence: Option<Presence> = self.get_json(&key.path("presence.json")).await?;
        Ok(presence.is_some_and(|p| Utc::now() - p.seen_at < window))
    }

    pub async fn set_profile(&self, key: &ChatKey, profile: &Profile) -> Result<(), String> {
        self.put_json(&key.path("profile.json"), profile).await
    }

    pub async fn profile(&self, key: &ChatKey) -> Result<Profile, String> {
        Ok(self
            .get_json(&key.path("profile.json"))
            .await?
            .unwrap_or_default())
    }

    async fn put_json(&self, path: &Path, value: &impl Serialize) -> Result<(), String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        self.blobs
            .put(path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| format!("chat log {path}: {e}"))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, String> {
        let bytes = match self.blobs.get(path).await {
            Ok(found) => found.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| format!("chat log {path}: {e}"))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("chat log {path}: {e}"))
    }

    /// What agents are doing in the customer's conversation (written by the web inbox).
    pub async fn agent_signals(
        &self,
        channel: ChannelId,
        handle: &str,
    ) -> Result<AgentSignals, String> {
        let path = Path::from(inbox_core::agent_signals::path(channel, handle));
        Ok(self.get_json(&path).await?.unwrap_or_default())
    }

    /// New entries of a chat, as this instance writes them.
    pub fn subscribe(&self, key: &ChatKey) -> broadcast::Receiver<Entry> {
        self.hub.subscribe(key)
    }
}

/// Open streams by chat, told of entries this instance writes.
#[derive(Debug, Default)]
struct Hub {
    chats: Mutex<HashMap<ChatKey, broadcast::Sender<Entry>>>,
}

impl Hub {
    fn subscribe(&self, key: &ChatKey) -> broadcast::Receiver<Entry> {
        let mut chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        // Chats whose streams all closed are dropped here, so the map holds open chats only.
        chats.retain(|_, sender| sender.receiver_count() > 0);
        chats
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    fn open(&self, key: &ChatKey) -> bool {
        let chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        chats.get(key).is_some_and(|s| s.receiver_count() > 0)
    }

    fn announce(&self, key: &ChatKey, entry: &Entry) {
        let chats = self.chats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = chats.get(key) {
            let _ = sender.send(entry.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_read_back_in_order_after_an_id_and_are_announced() {
        let log = ChatLog::new(Arc::new(object_store::memory::InMemory::new()));
        let key = ChatKey {
            channel: ChannelId::new(),
            log: "k".into(),
        };
        let mut live = log.subscribe(&key);
        let mut first = Entry::new(Author::Visitor, "hi".into());
        first.client_id = Some("c-0001-first".into());
        let mut second = Entry::new(Author::Agent, "hello".into());
        second.agent = Some("Grace".into());
        let first = log.append(&key, first).await.unwrap();
        let second = log.append(&key, second).await.unwrap();
        assert_eq!(live.recv().await.unwrap(), first);
        assert_eq!(
            log.after(&key, None).await.unwrap(),
            [first.clone(), second.clone()]
        );
        assert_eq!(
            log.after(&key, Some(&first.id)).await.unwrap(),
            std::slice::from_ref(&second)
        );
        assert!(log.after(&key, Some(&second.id)).await.unwrap().is_empty());
        assert_eq!(
            log.by_client_id(&key, "c-0001-first").await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(log.by_client_id(&key, "c-0002-other").await.unwrap(), None);
        let other = ChatKey {
            log: "other".into(),
            ..key.clone()
        };
        assert!(log.after(&other, None).await.unwrap().is_empty());

        // Present while a stream is open here, or lately seen elsewhere.
        let minute = chrono::Duration::minutes(1);
        assert!(log.present(&key, minute).await.unwrap());
        drop(live);
        assert!(!log.present(&key, minute).await.unwrap());
        log.seen(&key).await.unwrap();
        assert!(log.present(&key, minute).await.unwrap());
        assert!(!log.present(&key, chrono::Duration::zero()).await.unwrap());
        assert_eq!(log.profile(&key).await.unwrap(), Profile::default());
        let profile = Profile {
            left_email: Some("ada@shop.example".into()),
        };
        log.set_profile(&key, &profile).await.unwrap();
        assert_eq!(log.profile(&key).await.unwrap(), profile);
    }
}
