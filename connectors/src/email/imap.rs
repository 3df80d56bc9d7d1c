//! IMAP source (async-imap): reads the support mailbox by UID, never by \Seen (fetches with
//! `BODY.PEEK[]`, so other clients' flags neither hide mail nor get changed), and keeps a cursor of
//! (UIDVALIDITY, last UID) that advances only after the bus accepted the message. New mail is
//! awaited with IDLE, or by polling when the server has none. A UIDVALIDITY change re-reads the
//! backfill window; the funnel drops what it already has, so a resync creates no duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_imap::Session;
use chrono::Utc;
use futures::TryStreamExt;
use inbox_core::envelope::{InboundEvent, Rejected};
use inbox_core::model::Channel;
use object_store::path::Path as BlobPath;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::EmailConfig;
use super::parse::parse_email;
use crate::SourceContext;

/// Cursor name under which the position is stored.
pub const CURSOR: &str = "imap";
/// Messages fetched per command.
const FETCH_CHUNK: usize = 25;
/// Longest IDLE before re-issuing it (RFC 2177 asks for less than 30 minutes).
const IDLE_MAX: Duration = Duration::from_secs(20 * 60);
/// Polling interval on servers without IDLE.
const POLL: Duration = Duration::from_secs(30);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for T {}

type ImapSession = Session<Box<dyn Stream>>;

/// Position in a mailbox: mail with a UID above `uid` in the same UIDVALIDITY is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub uid_validity: u32,
    pub uid: u32,
}

impl Position {
    pub fn encode(self) -> String {
        format!("{}:{}", self.uid_validity, self.uid)
    }

    pub fn decode(s: &str) -> Option<Position> {
        let (validity, uid) = s.split_once(':')?;
        Some(Position {
            uid_validity: validity.parse().ok()?,
            uid: uid.parse().ok()?,
        })
    }
}

async fn connect(config: &EmailConfig) -> Result<ImapSession, String> {
    let address = (config.imap_host.as_str(), config.imap_port);
    let tcp = tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(address))
        .await
        .map_err(|_| {
            format!(
                "IMAP {}:{}: connect timed out",
                config.imap_host, config.imap_port
            )
        })?
        .map_err(|e| format!("IMAP {}:{}: {e}", config.imap_host, config.imap_port))?;
    let stream: Box<dyn Stream> = if config.tls {
        let mut roots = tokio_rustls::rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in config.extra_roots()? {
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_file: unusable certificate: {e}"))?;
        }
        let tls = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(config.imap_host.clone())
            .map_err(|e| format!("imap_host: {e}"))?;
        let stream = tokio::time::timeout(
            Duration::from_secs(15),
            tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| {
            format!(
                "IMAP {}:{}: TLS handshake timed out",
                config.imap_host, config.imap_port
            )
        })?
        .map_err(|e| {
            format!(
                "IMAP {}:{}: TLS handshake failed: {e}",
                config.imap_host, config.imap_port
            )
        })?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .map_err(|e| format!("IMAP greeting: {e}"))?
        .ok_or("IMAP server closed the connection")?;
    let username = config
        .username
        .clone()
        .unwrap_or_else(|| config.address.clone());
    let password = config.password()?;
    client
        .login(username, password)
        .await
        .map_err(|(e, _)| format!("IMAP login: {e}"))
}

/// Logs in and selects the folder (the connection test): how many messages it holds.
pub async fn check(config: &EmailConfig) -> Result<u32, String> {
    let mut session = connect(config).await?;
    let mailbox = session
        .select(&config.mailbox)
        .await
        .map_err(|e| format!("SELECT {}: {e}", config.mailbox))?;
    let _ = session.logout().await;
    Ok(mailbox.exists)
}

/// Parses a dead-lettered mail again from its raw source (`raw/<sha256>.eml`), storing the blobs
/// it yields, as [`accept`] does.
pub async fn reparse(
    channel: &Channel,
    blobs: &dyn object_store::ObjectStore,
    path: &str,
) -> Result<inbox_core::envelope::InboundMessage, String> {
    let raw = blobs
        .get(&BlobPath::from(path))
        .await
        .map_err(|e| format!("raw source {path}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("raw source {path}: {e}"))?;
    let parsed = parse_email(&raw, channel.id, Utc::now()).map_err(|e| format!("email: {e}"))?;
    for (blob, bytes) in parsed.blobs {
        blobs
            .put(&BlobPath::from(blob.0.as_str()), bytes.into())
            .await
            .map_err(|e| format!("blob {}: {e}", blob.0))?;
    }
    Ok(parsed.message)
}

pub use crate::SyncProgress;

/// What one [`sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Messages there were to read.
    pub total: usize,
    /// Messages read and handed to the bus.
    pub fetched: usize,
    /// The cursor it left (the one the running source continues from).
    pub position: Position,
    /// The stored cursor was missing or of another UIDVALIDITY: the backfill window was read.
    pub backfill: bool,
}

/// A selected mailbox and what is to be read in it.
struct Opened {
    session: ImapSession,
    /// Where reading starts.
    start: Position,
    /// UIDs to read, ascending.
    uids: Vec<u32>,
    /// The backfill window is read (no cursor for this UIDVALIDITY).
    backfill: bool,
    /// After a backfill: the highest UID at SELECT time. Mail up to it that is not in the window
    /// is older than the window and is never to be read.
    skip_to: u32,
}

impl Opened {
    /// Reads the UIDs; after a whole backfill, moves the cursor past the mail older than the
    /// window, so neither the source nor the next sync reads it later.
    async fn read(
        &mut self,
        channel: &Channel,
        ctx: &SourceContext,
        progress: &dyn SyncProgress,
        stop: &CancellationToken,
    ) -> Result<Position, String> {
        let mut position = ingest_uids(
            &mut self.session,
            channel,
            ctx,
            self.start,
            &self.uids,
            progress,
            stop,
        )
        .await?;
        if self.backfill && !stop.is_cancelled() && self.skip_to > position.uid {
            position.uid = self.skip_to;
            ctx.cursors
                .set(channel.id, CURSOR, &position.encode())
                .await?;
        }
        Ok(position)
    }
}

/// Connects, selects the mailbox and works out what is to be read: above the stored cursor, or
/// the backfill window when there is no cursor for this UIDVALIDITY.
async fn open(
    channel: &Channel,
    config: &EmailConfig,
    ctx: &SourceContext,
) -> Result<Opened, String> {
    let channel_id = channel.id;
    let mut session = connect(config).await?;
    let mailbox = session
        .select(&config.mailbox)
        .await
        .map_err(|e| format!("SELECT {}: {e}", config.mailbox))?;
    let uid_validity = mailbox.uid_validity.unwrap_or(0);
    let stored = ctx
        .cursors
        .get(channel_id, CURSOR)
        .await?
        .as_deref()
        .and_then(Position::decode);
    match stored {
        Some(position) if position.uid_validity == uid_validity => {
            let uids = uids_above(&mut session, position).await?;
            Ok(Opened {
                session,
                start: position,
                uids,
                backfill: false,
                skip_to: 0,
            })
        }
        other => {
            if other.is_some() {
                tracing::warn!(%channel_id, uid_validity, "UIDVALIDITY changed; re-reading the backfill window.");
            }
            let since = Utc::now() - chrono::Duration::days(i64::from(config.since_days));
            let uids = session
                .uid_search(format!("SINCE {}", since.format("%d-%b-%Y")))
                .await
                .map_err(|e| format!("UID SEARCH: {e}"))?;
            let mut uids: Vec<u32> = uids.into_iter().collect();
            uids.sort_unstable();
            tracing::info!(%channel_id, messages = uids.len(), days = config.since_days, "Backfilling.");
            let start = Position {
                uid_validity,
                uid: 0,
            };
            Ok(Opened {
                session,
                start,
                uids,
                backfill: true,
                skip_to: mailbox.uid_next.unwrap_or(1).saturating_sub(1),
            })
        }
    }
}

/// Reads the mailbox until `stop` fires.
pub async fn run(
    channel: Channel,
    config: EmailConfig,
    ctx: SourceContext,
    stop: CancellationToken,
) -> Result<(), String> {
    let channel_id = channel.id;
    let mut opened = open(&channel, &config, &ctx).await?;
    let mut position = opened.read(&channel, &ctx, &(), &stop).await?;
    let mut session = opened.session;
    tracing::info!(%channel_id, uid = position.uid, "Mailbox in sync.");
    loop {
        position = fetch_new(&mut session, &channel, &ctx, position, &stop).await?;
        if stop.is_cancelled() {
            let _ = session.logout().await;
            return Ok(());
        }
        session = wait_for_mail(session, &stop).await?;
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}

/// Reads what the running source would read first (the backfill window at the first start, or
/// everything above the cursor), reporting progress, then logs out: `inbox channel sync`. It
/// moves the same cursor as [`run`], so a source started afterwards continues where it stopped.
pub async fn sync(
    channel: &Channel,
    config: &EmailConfig,
    ctx: &SourceContext,
    progress: &dyn SyncProgress,
    stop: &CancellationToken,
) -> Result<SyncReport, String> {
    let mut opened = open(channel, config, ctx).await?;
    progress.started(opened.uids.len() as u64);
    let counted = CountingProgress {
        inner: progress,
        fetched: std::sync::atomic::AtomicUsize::new(0),
    };
    let position = opened.read(channel, ctx, &counted, stop).await?;
    let _ = opened.session.logout().await;
    Ok(SyncReport {
        total: opened.uids.len(),
        fetched: counted.fetched.into_inner(),
        position,
        backfill: opened.backfill,
    })
}

struct CountingProgress<'a> {
    inner: &'a dyn SyncProgress,
    fetched: std::sync::atomic::AtomicUsize,
}

impl SyncProgress for CountingProgress<'_> {
    fn started(&self, total: u64) {
        self.inner.started(total);
    }

    fn fetched(&self) {
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.fetched();
    }
}

/// UIDs above the position, sorted.
async fn uids_above(session: &mut ImapSession, position: Position) -> Result<Vec<u32>, String> {
    let uids = session
        .uid_search(format!("UID {}:*", position.uid.saturating_add(1)))
        .await
        .map_err(|e| format!("UID SEARCH: {e}"))?;
    // `n:*` always matches the last message, even below n.
    let mut uids: Vec<u32> = uids.into_iter().filter(|uid| *uid > position.uid).collect();
    uids.sort_unstable();
    Ok(uids)
}

/// Everything above the position.
async fn fetch_new(
    session: &mut ImapSession,
    channel: &Channel,
    ctx: &SourceContext,
    position: Position,
    stop: &CancellationToken,
) -> Result<Position, String> {
    let uids = uids_above(session, position).await?;
    ingest_uids(session, channel, ctx, position, &uids, &(), stop).await
}

async fn ingest_uids(
    session: &mut ImapSession,
    channel: &Channel,
    ctx: &SourceContext,
    mut position: Position,
    uids: &[u32],
    progress: &dyn SyncProgress,
    stop: &CancellationToken,
) -> Result<Position, String> {
    for chunk in uids.chunks(FETCH_CHUNK) {
        if stop.is_cancelled() {
            break;
        }
        let set = chunk
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut fetched: Vec<(u32, Vec<u8>)> = session
            .uid_fetch(&set, "(UID BODY.PEEK[])")
            .await
            .map_err(|e| format!("UID FETCH: {e}"))?
            // Only the messages asked for, with their body: servers interleave unsolicited FETCH
            // responses (another client's flag changes, with a UID in UID commands) that are
            // not mail, and taking one for an empty message would dead-letter it and move the
            // cursor to its UID, past mail not read yet.
            .try_filter_map(|fetch| async move {
                Ok(match (fetch.uid, fetch.body()) {
                    (Some(uid), Some(body)) if chunk.contains(&uid) => Some((uid, body.to_vec())),
                    _ => None,
                })
            })
            .try_collect()
            .await
            .map_err(|e| format!("UID FETCH: {e}"))?;
        fetched.sort_unstable_by_key(|(uid, _)| *uid);
        for (uid, raw) in fetched {
            accept(channel, ctx, &raw).await?;
            position.uid = uid;
            ctx.cursors
                .set(channel.id, CURSOR, &position.encode())
                .await?;
            progress.fetched();
        }
    }
    Ok(position)
}

/// Stores the message's blobs and hands it to the bus; a message that does not parse is handed
/// over as rejected (dead-lettered with its error), so the mailbox never stalls on it.
async fn accept(channel: &Channel, ctx: &SourceContext, raw: &[u8]) -> Result<(), String> {
    let event = match parse_email(raw, channel.id, Utc::now()) {
        Ok(parsed) => {
            for (blob, bytes) in parsed.blobs {
                ctx.put_blob(&blob.0, bytes).await?;
            }
            InboundEvent::Message(parsed.message)
        }
        Err(error) => {
            let path = format!("raw/{}.eml", hex::encode(sha2::Sha256::digest(raw)));
            ctx.put_blob(&path, raw.to_vec()).await?;
            InboundEvent::Rejected(Rejected {
                channel_id: channel.id,
                payload: path,
                error: format!("email: {error}"),
                received_at: Utc::now(),
            })
        }
    };
    ctx.bus
        .publish_inbound(&event)
        .await
        .map_err(|e| format!("bus: {e}"))
}

use sha2::Digest;

/// IDLE until the server reports a change (or the IDLE period ends); polls when IDLE fails.
async fn wait_for_mail(
    session: ImapSession,
    stop: &CancellationToken,
) -> Result<ImapSession, String> {
    let mut idle = session.idle();
    if idle.init().await.is_err() {
        // No IDLE: the handle cannot give the session back, so reconnecting is the caller's job.
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        return Err("IDLE not supported; reconnecting to poll".into());
    }
    let (wait, _interrupt) = idle.wait_with_timeout(IDLE_MAX);
    tokio::select! {
        _ = stop.cancelled() => {}
        result = wait => {
            result.map_err(|e| format!("IDLE: {e}"))?;
        }
    }
    idle.done().await.map_err(|e| format!("IDLE DONE: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let p = Position {
            uid_validity: 1_700_000_000,
            uid: 42,
        };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode("garbage"), None);
    }
}
