//! The email test services (`tests/services/mail`): Dovecot IMAP with the users `support` and
//! `customer` (password `secret`, domain `example.test`) and an SMTP server delivering into them.
//! [`MailServer::start_tls`] starts a Dovecot that requires TLS, with IMAPS on an extra port and a
//! certificate from a CA made for the run.
//!
//! [`MailServer::sentinel`] shows that "nothing more happened": a last mail, waited for until it is
//! stored (the source reads the mailbox in UID order, so everything delivered before it has been
//! handled by then).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use inbox_core::store::test_support::RawPool;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// Mail services of one test, stopped on drop.
#[derive(Debug)]
pub struct MailServer {
    state: tempfile::TempDir,
    pub imap_port: u16,
    pub smtp_port: u16,
    /// A file holding the users' password, for `password_file`.
    pub password_file: PathBuf,
    /// Dovecot's configuration (`DOVECOT_CONF` of the start line), to stop and start it alone.
    pub dovecot_conf: PathBuf,
    /// With [`MailServer::start_tls`]: the IMAPS port.
    pub imaps_port: Option<u16>,
    /// With [`MailServer::start_tls`]: the PEM of the CA that issued Dovecot's certificate.
    pub ca_file: Option<PathBuf>,
    /// With [`MailServer::start_tls`]: the PEM of an unrelated CA (a wrong one to trust).
    pub other_ca_file: Option<PathBuf>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("services/mail")
}

fn port_of(line: &str, key: &str) -> u16 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=127.0.0.1:")))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {key} port in `{line}`"))
}

fn value_of(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

impl MailServer {
    /// Plain IMAP and SMTP.
    pub fn start() -> MailServer {
        Self::start_with(&[])
    }

    /// Dovecot with `ssl = required`: IMAPS on [`MailServer::imaps_port`] with a certificate for
    /// 127.0.0.1 issued by [`MailServer::ca_file`] (Dovecot counts loopback clients as secured,
    /// so plain IMAP logins still work from here). SMTP stays plain. Its log, `dovecot.log` beside
    /// [`MailServer::dovecot_conf`], says `TLS` on each login over TLS.
    pub fn start_tls() -> MailServer {
        let server = Self::start_with(&["--tls"]);
        assert!(
            server.imaps_port.is_some() && server.ca_file.is_some(),
            "tests/services/mail start --tls printed no IMAPS port or CA file"
        );
        server
    }

    /// An SMTP server that offers no AUTH (a relay on a trusted network); IMAP as usual.
    pub fn start_without_smtp_auth() -> MailServer {
        Self::start_with(&["--no-auth"])
    }

    fn start_with(options: &[&str]) -> MailServer {
        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // The mail user must be able to enter the state dir.
        let _ = Command::new("chmod").arg("711").arg(state.path()).status();
        let out = Command::new(script())
            .arg("start")
            .arg(state.path().join("mail"))
            .args(options)
            .output()
            .unwrap_or_else(|e| panic!("tests/services/mail does not run: {e}"));
        assert!(
            out.status.success(),
            "tests/services/mail start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let password_file = state.path().join("password");
        std::fs::write(&password_file, "secret\n").unwrap_or_else(|e| panic!("password file: {e}"));
        let dovecot_conf = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("DOVECOT_CONF="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no DOVECOT_CONF in `{line}`"));
        MailServer {
            dovecot_conf,
            imap_port: port_of(&line, "IMAP"),
            smtp_port: port_of(&line, "SMTP"),
            imaps_port: value_of(&line, "IMAPS").map(|_| port_of(&line, "IMAPS")),
            ca_file: value_of(&line, "CA_FILE").map(PathBuf::from),
            other_ca_file: value_of(&line, "OTHER_CA_FILE").map(PathBuf::from),
            state,
            password_file,
        }
    }

    /// New mail delivered to `user` (Maildir `new/`), as raw text.
    pub fn new_mail(&self, user: &str) -> Vec<String> {
        let dir = self
            .state
            .path()
            .join(format!("mail/mail/{user}/Maildir/new"));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl MailServer {
    /// Submits raw RFC 5322 bytes through the SMTP server (`from` `None`: the null sender `<>`
    /// of bounces) and returns once the server accepted (and delivered) them.
    pub async fn send_raw(&self, from: Option<&str>, to: &[&str], raw: &[u8]) {
        let envelope = Envelope::new(
            from.map(|f| f.parse().unwrap_or_else(|e| panic!("MAIL FROM {f}: {e}"))),
            to.iter()
                .map(|t| t.parse().unwrap_or_else(|e| panic!("RCPT TO {t}: {e}")))
                .collect(),
        )
        .unwrap_or_else(|e| panic!("SMTP envelope: {e}"));
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.smtp_port)
            .build()
            .send_raw(&envelope, raw)
            .await
            .unwrap_or_else(|e| panic!("the SMTP server refused a raw mail: {e}"));
    }

    /// A new IMAP session of `user` (password `secret`) on the test Dovecot, as another mail client.
    pub async fn imap(&self, user: &str) -> ImapClient {
        ImapClient::login(self.imap_port, user, "secret").await
    }

    /// Is something accepting connections on the IMAP port?
    async fn imap_listening(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .is_ok()
    }

    /// Runs `dovecot -c <conf> <args>`; returns whether it succeeded and what it wrote. The
    /// master daemonizes and would keep pipes open: its output goes to a file.
    async fn dovecot(&self, args: &[&str]) -> (bool, String) {
        let log = self.state.path().join("dovecot-control.log");
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let stderr = file
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let status = tokio::process::Command::new("dovecot")
            .arg("-c")
            .arg(&self.dovecot_conf)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .status()
            .await
            .unwrap_or_else(|e| panic!("dovecot does not run: {e}"));
        (
            status.success(),
            std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }

    /// The pid of the running Dovecot master, from its pid file.
    fn master_pid(&self) -> Option<u32> {
        let run = self.dovecot_conf.parent()?.join("run/master.pid");
        std::fs::read_to_string(run).ok()?.trim().parse().ok()
    }

    /// Ends the IMAP sessions (`imap` processes) of this Dovecot, found as children of its master.
    async fn end_sessions(master: u32) {
        let sessions = imap_children(master);
        if sessions.is_empty() {
            return;
        }
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .args(sessions.iter().map(u32::to_string))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }

    /// Stops Dovecot alone, as clients see a server going down: their sessions are dropped and
    /// the IMAP port closes (the mail survives; SMTP deliveries get 451 meanwhile). Returns once
    /// the port is closed.
    ///
    /// Dovecot 2.3 keeps logged-in `imap` processes running across `dovecot stop` (verified: an
    /// idle session survives it despite `shutdown_clients = yes`, and the master accepts logins
    /// for the ~3 s the stop takes), so the sessions are ended here while the stop runs.
    pub async fn stop_dovecot(&self) {
        let master = self.master_pid();
        if let Some(master) = master {
            Self::end_sessions(master).await;
        }
        let stopping = self.dovecot(&["stop"]);
        tokio::pin!(stopping);
        let (stopped, output) = loop {
            tokio::select! {
                result = &mut stopping => break result,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {
                    if let Some(master) = master {
                        Self::end_sessions(master).await;
                    }
                }
            }
        };
        assert!(stopped, "dovecot stop failed: {output}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.imap_listening().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Dovecot still listens 30 s after `dovecot stop`"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts Dovecot again on the same configuration and port; returns once IMAP greets.
    pub async fn start_dovecot(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // The old master may still be exiting (its pid file, its sockets): retry until it starts.
        loop {
            let (started, output) = self.dovecot(&[]).await;
            if started {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dovecot did not start again: {output}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.imap_port)).await {
                let mut greeting = String::new();
                let mut reader = BufReader::new(stream);
                let read =
                    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut greeting))
                        .await;
                if matches!(read, Ok(Ok(_))) && greeting.starts_with("* OK") {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Dovecot did not greet within 30 s of starting again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A restart of the IMAP server as clients see it: their sessions are dropped, the port is
    /// closed for a moment, and Dovecot comes back on the same port with the same mail.
    pub async fn restart_dovecot(&self) {
        self.stop_dovecot().await;
        self.start_dovecot().await;
    }

    /// Recreates `user`'s INBOX as a mail admin restoring or migrating a mailbox does: Dovecot is
    /// stopped, the INBOX's Maildir (its mail, `dovecot-uidlist` and indexes) is removed, and
    /// Dovecot is started again. The INBOX is then empty, has a new UIDVALIDITY and numbers what
    /// arrives from UID 1 again. Neither IMAP nor doveadm can do this: Dovecot refuses to rename
    /// or delete INBOX (`doveadm mailbox delete INBOX` expunges its mail, then refuses, and the
    /// UIDVALIDITY stays). `dovecot-uidvalidity` is kept, so the new UIDVALIDITY differs from the
    /// old one even within the same second; the other folders (`.Sent`, …) are left alone.
    pub async fn recreate_inbox(&self, user: &str) {
        self.stop_dovecot().await;
        let maildir = self.state.path().join(format!("mail/mail/{user}/Maildir"));
        let entries =
            std::fs::read_dir(&maildir).unwrap_or_else(|e| panic!("{}: {e}", maildir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", maildir.display()));
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let removed = match name.as_str() {
                "cur" | "new" | "tmp" => std::fs::remove_dir_all(&path),
                "dovecot-uidlist" => std::fs::remove_file(&path),
                _ if name.starts_with("dovecot.index")
                    || name.starts_with("dovecot.list.index") =>
                {
                    std::fs::remove_file(&path)
                }
                _ => Ok(()),
            };
            removed.unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
        }
        self.start_dovecot().await;
    }
}

/// Pids of the `imap` processes whose parent is `master` (from `/proc/<pid>/stat`).
fn imap_children(master: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid …"; comm may contain spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == master && comm == "imap").then_some(pid)
        })
        .collect()
}

/// A minimal IMAP client (plain TCP, one command at a time) standing in for another mail client
/// (a colleague's Thunderbird, a webmail) reading the same mailbox.
#[derive(Debug)]
pub struct ImapClient {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: OwnedWriteHalf,
    tag: u32,
}

/// Quotes a string for IMAP.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ImapClient {
    async fn login(port: u16, user: &str, password: &str) -> ImapClient {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("IMAP connect to 127.0.0.1:{port}: {e}"));
        let (read, writer) = stream.into_split();
        let mut client = ImapClient {
            reader: BufReader::new(read),
            writer,
            tag: 0,
        };
        let greeting = client.read_response_line().await;
        assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
        client
            .command(&format!("LOGIN {} {}", quoted(user), quoted(password)))
            .await;
        client
    }

    /// One response line, literals (`{n}`) included inline.
    async fn read_response_line(&mut self) -> String {
        self.read_response().await.0
    }

    /// One response line with its literals (`{n}`) included inline, and those literals' exact
    /// bytes.
    async fn read_response(&mut self) -> (String, Vec<Vec<u8>>) {
        let mut line = String::new();
        let mut literals = Vec::new();
        loop {
            let mut part = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut part))
                .await
                .unwrap_or_else(|_| panic!("IMAP: no answer within 30 s after `{line}`"))
                .unwrap_or_else(|e| panic!("IMAP read: {e}"));
            assert!(n > 0, "IMAP server closed the connection after `{line}`");
            let trimmed = part.trim_end_matches(['\r', '\n']);
            line.push_str(trimmed);
            let literal = trimmed
                .strip_suffix('}')
                .and_then(|s| s.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            match literal {
                Some(len) => {
                    let mut bytes = vec![0; len];
                    self.reader
                        .read_exact(&mut bytes)
                        .await
                        .unwrap_or_else(|e| panic!("IMAP literal: {e}"));
                    line.push_str(&String::from_utf8_lossy(&bytes));
                    literals.push(bytes);
                }
                None => return (line, literals),
            }
        }
    }

    /// Runs one command; returns the literals of its untagged responses (exact bytes), panics
    /// unless it ends in `OK`.
    pub async fn command_literals(&mut self, command: &str) -> Vec<Vec<u8>> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("IMAP write: {e}"));
        let mut literals = Vec::new();
        loop {
            let (line, mut more) = self.read_response().await;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "IMAP `{command}`: {line}");
                return literals;
            }
            literals.append(&mut more);
        }
    }

    /// Every message of the selected mailbox, as raw bytes, in UID order (read with
    /// `BODY.PEEK[]`, so flags stay as they are).
    pub async fn fetch_all_raw(&mut self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for uid in self.uid_search("ALL").await {
            all.extend(
                self.command_literals(&format!("UID FETCH {uid} (BODY.PEEK[])"))
                    .await,
            );
        }
        all
    }

    /// Runs one command; returns its untagged responses, panics unless it ends in `OK`.
    pub async fn command(&mut self, command: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("IMAP write: {e}"));
        let mut untagged = Vec::new();
        loop {
            let line = self.read_response_line().await;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "IMAP `{command}`: {line}");
                return untagged;
            }
            untagged.push(line);
        }
    }

    /// Appends a raw message to `mailbox` with the given internal date (IMAP's `dd-Mon-yyyy
    /// hh:mm:ss +zzzz`, what `SINCE` looks at), as a mail client moving old mail in would.
    pub async fn append(&mut self, mailbox: &str, internal_date: &str, raw: &[u8]) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        // LITERAL+ (Dovecot has it): no continuation request to wait for.
        let mut command = format!(
            "{tag} APPEND {} {} {{{}+}}\r\n",
            quoted(mailbox),
            quoted(internal_date),
            raw.len()
        )
        .into_bytes();
        command.extend_from_slice(raw);
        command.extend_from_slice(b"\r\n");
        self.writer
            .write_all(&command)
            .await
            .unwrap_or_else(|e| panic!("IMAP write: {e}"));
        loop {
            let line = self.read_response_line().await;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "IMAP APPEND: {line}");
                return;
            }
        }
    }

    /// Selects a mailbox read-write.
    pub async fn select(&mut self, mailbox: &str) {
        self.command(&format!("SELECT {}", quoted(mailbox))).await;
    }

    /// The mailbox's UIDVALIDITY, as the server reports it (`STATUS … (UIDVALIDITY)`).
    pub async fn uid_validity(&mut self, mailbox: &str) -> u32 {
        let untagged = self
            .command(&format!("STATUS {} (UIDVALIDITY)", quoted(mailbox)))
            .await;
        untagged
            .iter()
            .filter(|line| line.starts_with("* STATUS"))
            .find_map(|line| {
                let (_, rest) = line.rsplit_once("UIDVALIDITY ")?;
                rest.trim_end_matches(')').trim().parse().ok()
            })
            .unwrap_or_else(|| panic!("no UIDVALIDITY in the STATUS answer: {untagged:?}"))
    }

    /// `UID SEARCH <criteria>`, sorted.
    pub async fn uid_search(&mut self, criteria: &str) -> Vec<u32> {
        let mut uids: Vec<u32> = self
            .command(&format!("UID SEARCH {criteria}"))
            .await
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        uids.sort_unstable();
        uids
    }

    /// The UID of the message with this Message-ID (without brackets), if there is one.
    pub async fn uid_of(&mut self, message_id: &str) -> Option<u32> {
        self.uid_search(&format!("HEADER Message-ID {}", quoted(message_id)))
            .await
            .into_iter()
            .next()
    }

    /// UIDs of the messages without `\Seen`.
    pub async fn unseen(&mut self) -> Vec<u32> {
        self.uid_search("UNSEEN").await
    }

    /// Marks messages read, as a mail client does when a person opens them (`uids`: an IMAP
    /// UID set such as `3` or `1:*`).
    pub async fn set_seen(&mut self, uids: &str) {
        self.command(&format!("UID STORE {uids} +FLAGS.SILENT (\\Seen)"))
            .await;
    }

    pub async fn logout(mut self) {
        self.tag += 1;
        let _ = self
            .writer
            .write_all(format!("t{} LOGOUT\r\n", self.tag).as_bytes())
            .await;
    }
}

impl MailServer {
    /// An email channel on the `support` mailbox of this server (plain IMAP and SMTP).
    pub fn support_config(&self) -> inbox_connectors::email::EmailConfig {
        inbox_connectors::email::EmailConfig {
            address: "support@example.test".into(),
            display_name: Some("Shop Support".into()),
            imap_host: "127.0.0.1".into(),
            imap_port: self.imap_port,
            mailbox: "INBOX".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: self.smtp_port,
            username: Some("support".into()),
            password_env: None,
            password_file: Some(self.password_file.clone()),
            smtp_auth: None,
            smtp_username: None,
            smtp_password_env: None,
            smtp_password_file: None,
            tls: false,
            tls_ca_file: None,
            since_days: 30,
            message_id_domain: None,
        }
    }

    /// The `support` channel reading over IMAPS (server started with [`MailServer::start_tls`])
    /// and trusting `ca_file`. `tls` also means SMTP with STARTTLS, which the test SMTP server
    /// does not offer: replies cannot be sent on this channel.
    pub fn support_tls_config(&self, ca_file: &Path) -> inbox_connectors::email::EmailConfig {
        inbox_connectors::email::EmailConfig {
            imap_port: self
                .imaps_port
                .unwrap_or_else(|| panic!("IMAPS needs MailServer::start_tls")),
            tls: true,
            tls_ca_file: Some(ca_file.to_path_buf()),
            ..self.support_config()
        }
    }
}

/// How long [`MailServer::sentinel`] waits for its mail to be stored.
const SENTINEL_WAIT: Duration = Duration::from_secs(30);

impl MailServer {
    /// Sends a last mail from `customer@example.test` to the support address (Message-ID
    /// `<name>@customer.example.test`, subject `Sentinel <name>`, a conversation of its own) and
    /// waits until the app stored it: the source reads the mailbox in UID order and hands each
    /// mail over only after the one before it was stored or recognised, so once the sentinel is
    /// stored everything delivered before it has been handled, and anything that was going to be
    /// ingested twice would have been. Returns its Message-ID (the stored external id).
    pub async fn sentinel(&self, app: &crate::TestApp, name: &str) -> String {
        let id = format!("{name}@customer.example.test");
        let raw = format!(
            "From: customer@example.test\r\nTo: support@example.test\r\nSubject: Sentinel {name}\r\n\
             Message-ID: <{id}>\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nThe last mail of {name}.\r\n",
            chrono::Utc::now().to_rfc2822()
        );
        self.send_raw(
            Some("customer@example.test"),
            &["support@example.test"],
            raw.as_bytes(),
        )
        .await;
        crate::wait_for(
            SENTINEL_WAIT,
            &format!("the sentinel mail {id} to be stored"),
            async || find_inbound(&app.store, &id).await,
        )
        .await;
        id
    }
}

/// The (message id, conversation id) of the stored inbound message with this external id.
pub async fn find_inbound(
    store: &inbox_core::store::Store,
    external_id: &str,
) -> Option<(String, String)> {
    let sql =
        "SELECT id, conversation_id FROM messages WHERE external_id = $1 AND direction = 'inbound'";
    let found = match store.raw_pool() {
        RawPool::Sqlite(pool) => {
            sqlx::query_as(sql)
                .bind(external_id)
                .fetch_optional(pool)
                .await
        }
        RawPool::Postgres(pool) => {
            sqlx::query_as(sql)
                .bind(external_id)
                .fetch_optional(pool)
                .await
        }
    };
    found.unwrap_or_else(|e| panic!("looking up the inbound message {external_id}: {e}"))
}

/// The id of the customer message stored on `channel` under this external id (a Message-ID).
pub async fn find_inbound_on(
    store: &inbox_core::store::Store,
    channel: inbox_core::ids::ChannelId,
    external_id: &str,
) -> Option<String> {
    let sql = "SELECT id FROM messages
               WHERE channel_id = $1 AND external_id = $2 AND direction = 'inbound'";
    let found = match store.raw_pool() {
        RawPool::Sqlite(pool) => {
            sqlx::query_scalar(sql)
                .bind(channel)
                .bind(external_id)
                .fetch_optional(pool)
                .await
        }
        RawPool::Postgres(pool) => {
            sqlx::query_scalar(sql)
                .bind(channel)
                .bind(external_id)
                .fetch_optional(pool)
                .await
        }
    };
    found.unwrap_or_else(|e| panic!("looking up the inbound message {external_id}: {e}"))
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.state.path().join("mail"))
            .output();
    }
}
