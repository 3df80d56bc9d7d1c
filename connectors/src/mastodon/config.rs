//! Settings of a Mastodon channel, and its `inbox channel add mastodon` flags.

use inbox_core::channel_catalog::ConfigError;
use serde::{Deserialize, Serialize};

use crate::KindConfig;
use crate::config::check_http_url;

/// Settings of a Mastodon channel (the channel's `config` JSON): the company's account on one
/// instance. The access token itself is never stored: `token_env` names the environment
/// variable holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MastodonConfig {
    /// The instance the account is on (scheme and host, e.g. `https://mastodon.social`).
    pub instance_url: String,
    /// The environment variable holding the account's access token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token instead (a mounted secret); it wins over `token_env`.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// Follow the user streaming API for live delivery (polling stays the fallback).
    #[serde(default = "yes")]
    pub streaming: bool,
    /// Seconds between polls of the notifications when no stream is open.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u32,
    /// The first read takes mentions of the last this many days (later reads go on from the
    /// newest notification taken).
    #[serde(default = "default_backfill_days")]
    pub backfill_days: u32,
}

fn yes() -> bool {
    true
}

fn default_poll_interval() -> u32 {
    30
}

fn default_backfill_days() -> u32 {
    7
}

impl KindConfig for MastodonConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.token_env, &self.token_file) {
            (None, None) => {
                return Err(ConfigError::new(
                    "token_env",
                    "names the variable holding the access token (or set token_file)",
                ));
            }
            (Some(var), _) if var.trim().is_empty() => {
                return Err(ConfigError::new("token_env", "names the token's variable"));
            }
            _ => {}
        }
        check_http_url("instance_url", Some(&self.instance_url))?;
        let url = reqwest::Url::parse(&self.instance_url)
            .map_err(|e| ConfigError::new("instance_url", e.to_string()))?;
        if url.path() != "/" || url.query().is_some() {
            return Err(ConfigError::new(
                "instance_url",
                "scheme, host and port only (e.g. https://mastodon.social)",
            ));
        }
        if !(5..=3600).contains(&self.poll_interval_secs) {
            return Err(ConfigError::new("poll_interval_secs", "5 to 3600 seconds"));
        }
        if self.backfill_days > 365 {
            return Err(ConfigError::new("backfill_days", "0 to 365 days"));
        }
        Ok(())
    }
}

impl MastodonConfig {
    /// The instance's base URL without a trailing slash.
    pub fn base(&self) -> &str {
        self.instance_url.trim_end_matches('/')
    }
}

/// `inbox channel add mastodon`: the company's account on a Mastodon instance.
#[derive(Debug, clap::Args)]
pub struct MastodonArgs {
    /// Channel name.
    #[arg(long)]
    pub name: String,
    /// The instance the account is on, e.g. https://mastodon.social.
    #[arg(long)]
    pub instance_url: String,
    /// Environment variable holding the account's access token (never stored in the database).
    #[arg(long)]
    pub token_env: String,
}

impl crate::KindArgs for MastodonArgs {
    type Config = MastodonConfig;

    fn into_channel(self) -> (String, MastodonConfig) {
        let config = MastodonConfig {
            instance_url: self.instance_url,
            token_env: Some(self.token_env),
            token_file: None,
            streaming: true,
            poll_interval_secs: default_poll_interval(),
            backfill_days: default_backfill_days(),
        };
        (self.name, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_config;

    #[test]
    fn configs_name_their_bad_field() {
        let ok: MastodonConfig = parse_config(&serde_json::json!({
            "instance_url": "https://mastodon.example/", "token_env": "MASTODON_TOKEN"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.base(), "https://mastodon.example");
        assert!(ok.streaming);
        assert_eq!(ok.poll_interval_secs, 30);
        let field = |v: serde_json::Value| {
            parse_config::<MastodonConfig>(&v)
                .err()
                .map(|e| e.field)
                .unwrap_or_default()
        };
        assert_eq!(
            field(serde_json::json!({"instance_url": "https://m.example"})),
            "token_env"
        );
        assert_eq!(field(serde_json::json!({"token_env": "T"})), "instance_url");
        assert_eq!(
            field(serde_json::json!({"token_env": "T", "instance_url": "https://m.example/api"})),
            "instance_url"
        );
        assert_eq!(
            field(serde_json::json!({"token_env": "T", "instance_url": "ftp://m.example"})),
            "instance_url"
        );
        assert_eq!(
            field(
                serde_json::json!({"token_env": "T", "instance_url": "https://m.example", "poll_interval_secs": 1})
            ),
            "poll_interval_secs"
        );
        assert_eq!(
            field(
                serde_json::json!({"token_env": "T", "instance_url": "https://m.example", "token": "x"})
            ),
            "token"
        );
    }
}
