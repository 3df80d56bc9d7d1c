//! `inbox channel add email` flags.

use inbox_core::channel_catalog::ConfigError;
use inbox_core::identity::EmailAddress;

use super::EmailConfig;
use super::config::SmtpAuth;
use crate::CliChannel;

/// `inbox channel add email`: a support mailbox, IMAP in, SMTP out.
#[derive(Debug, clap::Args)]
pub struct EmailArgs {
    /// The support address customers write to; replies are sent from it.
    #[arg(long)]
    address: String,
    /// Channel name (defaults to the address).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    imap_host: String,
    /// Default: 993 with TLS, 143 without.
    #[arg(long)]
    imap_port: Option<u16>,
    /// IMAP folder to read.
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    #[arg(long)]
    smtp_host: String,
    /// Default: 587 with TLS (STARTTLS), 25 without.
    #[arg(long)]
    smtp_port: Option<u16>,
    /// Login for IMAP and SMTP (defaults to the address).
    #[arg(long)]
    username: Option<String>,
    /// Environment variable that holds the password (never stored in the database).
    #[arg(long)]
    password_env: String,
    /// SMTP authentication: none (a relay on a trusted network), plain or login. Default: PLAIN
    /// or LOGIN, whichever the server offers.
    #[arg(long, value_enum)]
    smtp_auth: Option<SmtpAuth>,
    /// SMTP login when it is not the IMAP one.
    #[arg(long)]
    smtp_username: Option<String>,
    /// Environment variable holding the SMTP password when it is not the IMAP one.
    #[arg(long)]
    smtp_password_env: Option<String>,
    /// TLS (the default).
    #[arg(long, conflicts_with = "plain")]
    tls: bool,
    /// No TLS: only for servers on a trusted local network.
    #[arg(long)]
    plain: bool,
    /// PEM file of CA certificates to trust besides the public roots (a private CA).
    #[arg(long, conflicts_with = "plain")]
    tls_ca_file: Option<std::path::PathBuf>,
    /// Backfill window at first start, e.g. 30d.
    #[arg(long, default_value = "30d")]
    since: String,
}

/// `30d` or `30` → 30.
pub fn parse_days(raw: &str) -> Result<u32, String> {
    raw.strip_suffix('d')
        .unwrap_or(raw)
        .parse()
        .map_err(|_| "a number of days like 30d".to_owned())
}

impl EmailArgs {
    pub fn into_channel(self) -> Result<CliChannel, ConfigError> {
        let address =
            EmailAddress::parse(&self.address).map_err(|e| ConfigError::new("--address", e))?;
        let since_days = parse_days(&self.since).map_err(|e| ConfigError::new("--since", e))?;
        let tls = !self.plain;
        let config = EmailConfig {
            address: address.to_string(),
            display_name: None,
            imap_host: self.imap_host,
            imap_port: self.imap_port.unwrap_or(if tls { 993 } else { 143 }),
            mailbox: self.mailbox,
            smtp_host: self.smtp_host,
            smtp_port: self.smtp_port.unwrap_or(if tls { 587 } else { 25 }),
            username: self.username.or_else(|| Some(address.to_string())),
            smtp_auth: self.smtp_auth,
            smtp_username: self.smtp_username,
            smtp_password_env: self.smtp_password_env,
            smtp_password_file: None,
            password_env: Some(self.password_env),
            password_file: None,
            tls,
            tls_ca_file: self.tls_ca_file,
            since_days,
            message_id_domain: None,
        };
        Ok(CliChannel {
            name: self.name.unwrap_or_else(|| address.to_string()),
            config: serde_json::to_value(config).unwrap_or_default(),
        })
    }
}
