//! Settings of an email channel (the channel's `config` JSON).

use serde::{Deserialize, Serialize};

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
    /// Login for both servers.
    #[serde(default)]
    pub username: Option<String>,
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
        if let Some(path) = &self.password_file {
            return std::fs::read_to_string(path)
                .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("password_file {}: {e}", path.display()));
        }
        let var = self
            .password_env
            .as_deref()
            .ok_or("the channel has neither password_env nor password_file")?;
        std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
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
