//! The email test services (`tests/services/mail`): Dovecot IMAP with the users `support` and
//! `customer` (password `secret`, domain `example.test`) and an SMTP server delivering into them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Mail services of one test, stopped on drop.
#[derive(Debug)]
pub struct MailServer {
    state: tempfile::TempDir,
    pub imap_port: u16,
    pub smtp_port: u16,
    /// A file holding the users' password, for `password_file`.
    pub password_file: PathBuf,
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

impl MailServer {
    pub fn start() -> MailServer {
        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // The mail user must be able to enter the state dir.
        let _ = Command::new("chmod").arg("711").arg(state.path()).status();
        let out = Command::new(script())
            .arg("start")
            .arg(state.path().join("mail"))
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
        MailServer {
            imap_port: port_of(&line, "IMAP"),
            smtp_port: port_of(&line, "SMTP"),
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

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.state.path().join("mail"))
            .output();
    }
}
