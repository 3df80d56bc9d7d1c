//! Settings of an email channel (the channel's `config` JSON).

use inbox_core::channel_catalog::ConfigError;
use inbox_core::identity::EmailAddress;
use serde::{Deserialize, Serialize};

use crate::{KindConfig, read_secret};

/// How replies authenticate to the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SmtpAuth {
    /// No AUTH: a relay on a trusted network.
    None,
    Plain,
    Login,
}

fn yes() -> bool {
    true
}

fn thirty() -> u32 {
    30
}

fn inbox() -> String {
    "INBOX".to_owned()
}

/// One support mailbox: IMAP in, SMTP out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The support address customers write to; replies are sent from it.
    pub address: String,
    /// Name shown in the From of replies, after the agent's name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// IMAP server of the support mailbox.
    pub imap_host: String,
    pub imap_port: u16,
    /// Mailbox (folder) to read.
    #[serde(default = "inbox")]
    pub mailbox: String,
    /// SMTP server replies are submitted to.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// Login for both servers (SMTP's can differ: `smtp_username`).
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP authentication; unset: PLAIN or LOGIN, whichever the server offers, when there is
    /// a login, none otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_auth: Option<SmtpAuth>,
    /// SMTP login when it is not the IMAP one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_username: Option<String>,
    /// Environment variable holding the SMTP password when it is not the IMAP one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password_env: Option<String>,
    /// Or a file holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password_file: Option<std::path::PathBuf>,
    /// Environment variable holding the password: secrets are never stored in the database.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Or a file holding the password (a mounted secret).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// TLS (IMAPS, SMTP STARTTLS). Plain connections are for local test servers only.
    #[serde(default = "yes")]
    pub tls: bool,
    /// A PEM file of CA certificates to trust for IMAPS and SMTP STARTTLS, in addition to the
    /// public web roots: for a mail server whose certificate comes from a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// On first start, mail of the last this-many days is ingested.
    #[serde(default = "thirty")]
    pub since_days: u32,
    /// Domain of our Message-IDs; defaults to the address's domain.
    #[serde(default)]
    pub message_id_domain: Option<String>,
}

impl EmailConfig {
    pub fn domain(&self) -> String {
        self.message_id_domain.clone().unwrap_or_else(|| {
            self.address
                .rsplit_once('@')
                .map(|(_, domain)| domain.to_owned())
                .unwrap_or_else(|| "localhost".to_owned())
        })
    }

    pub fn display_name(&self) -> String {
        self.display_name
            .clone()
            .unwrap_or_else(|| "Support".to_owned())
    }

    /// The password from the environment variable or file the channel names.
    pub fn password(&self) -> Result<String, String> {
        read_secret(
            self.password_env.as_deref(),
            self.password_file.as_deref(),
            "password",
        )
    }

    /// The SMTP login: its own, else the shared one.
    pub fn smtp_login(&self) -> Option<&str> {
        self.smtp_username.as_deref().or(self.username.as_deref())
    }

    /// The SMTP password: its own when the channel names one, else the shared one.
    pub fn smtp_password(&self) -> Result<String, String> {
        if self.smtp_password_env.is_some() || self.smtp_password_file.is_some() {
            return read_secret(
                self.smtp_password_env.as_deref(),
                self.smtp_password_file.as_deref(),
                "SMTP password",
            );
        }
        self.password()
    }

    /// The certificates of `tls_ca_file` (DER), none when it is not set.
    pub fn extra_roots(
        &self,
    ) -> Result<Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>, String> {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let Some(path) = &self.tls_ca_file else {
            return Ok(Vec::new());
        };
        let pem =
            std::fs::read(path).map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls_ca_file {}: no PEM certificate in it",
                path.display()
            ));
        }
        Ok(certs)
    }
}

impl KindConfig for EmailConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        EmailAddress::parse(&self.address).map_err(|e| ConfigError::new("address", e))?;
        for (field, host) in [
            ("imap_host", &self.imap_host),
            ("smtp_host", &self.smtp_host),
        ] {
            if host.trim().is_empty() || host.contains(char::is_whitespace) {
                return Err(ConfigError::new(field, "must be a host name or address"));
            }
        }
        for (field, port) in [("imap_port", self.imap_port), ("smtp_port", self.smtp_port)] {
            if port == 0 {
                return Err(ConfigError::new(field, "must be 1 to 65535"));
            }
        }
        if self.mailbox.trim().is_empty() {
            return Err(ConfigError::new("mailbox", "must name a folder"));
        }
        if self.password_env.is_none() && self.password_file.is_none() {
            return Err(ConfigError::new(
                "password_env",
                "name the environment variable (or password_file) that holds the password",
            ));
        }
        if self.smtp_auth.is_some_and(|auth| auth != SmtpAuth::None) && self.smtp_login().is_none()
        {
            return Err(ConfigError::new(
                "smtp_username",
                "smtp_auth needs a login: set smtp_username or username",
            ));
        }
        self.extra_roots()
            .map_err(|e| ConfigError::new("tls_ca_file", e))?;
        Ok(())
    }
}
