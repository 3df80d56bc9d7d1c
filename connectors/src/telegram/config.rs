//! Settings of a Telegram channel, and its `inbox channel add telegram` flags.

use inbox_core::channel_catalog::ConfigError;
use serde::{Deserialize, Serialize};

use crate::KindConfig;
use crate::config::check_http_url;

/// Telegram's own Bot API server.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// How updates reach us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `getUpdates` long polling: nothing to expose to the internet.
    #[default]
    Polling,
    /// Telegram POSTs each update to our intake (needs a public HTTPS URL).
    Webhook,
}

/// Which messages of a group the bot is in become conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GroupMessages {
    /// Only those that mention the bot or reply to it.
    #[default]
    Mentions,
    /// Every message the bot receives (turn the bot's privacy mode off in BotFather).
    All,
}

/// Settings of a Telegram channel (the channel's `config` JSON). The bot token itself is never
/// stored: `token_env` names the environment variable holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The environment variable holding the bot token BotFather gave.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the token instead (a mounted secret); it wins over `token_env`.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// The Bot API server: Telegram's, or a self-hosted `telegram-bot-api` (scheme, host and
    /// port only: requests go to `{api_url}/bot{token}/{method}`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Long polling or webhook.
    #[serde(default)]
    pub mode: Mode,
    /// Group messages taken: mentions of the bot and replies to it, or all.
    #[serde(default)]
    pub group_messages: GroupMessages,
    /// Seconds a `getUpdates` call waits for news (long polling).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u32,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}

fn default_poll_timeout() -> u32 {
    25
}

impl KindConfig for TelegramConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.token_env, &self.token_file) {
            (None, None) => {
                return Err(ConfigError::new(
                    "token_env",
                    "names the variable holding the bot token (or set token_file)",
                ));
            }
            (Some(var), _) if var.trim().is_empty() => {
                return Err(ConfigError::new("token_env", "names the token's variable"));
            }
            _ => {}
        }
        check_http_url("api_url", Some(&self.api_url))?;
        let url = reqwest::Url::parse(&self.api_url)
            .map_err(|e| ConfigError::new("api_url", e.to_string()))?;
        if url.path() != "/" || url.query().is_some() {
            return Err(ConfigError::new(
                "api_url",
                "scheme, host and port only (requests go to {api_url}/bot<token>/<method>)",
            ));
        }
        if !(1..=50).contains(&self.poll_timeout_secs) {
            return Err(ConfigError::new("poll_timeout_secs", "1 to 50 seconds"));
        }
        Ok(())
    }
}

impl TelegramConfig {
    /// The API base without a trailing slash.
    pub fn api_base(&self) -> &str {
        self.api_url.trim_end_matches('/')
    }
}

/// `inbox channel add telegram`: a bot, by long polling or webhook.
#[derive(Debug, clap::Args)]
pub struct TelegramArgs {
    /// Channel name.
    #[arg(long)]
    pub name: String,
    /// Environment variable holding the bot token (never stored in the database).
    #[arg(long)]
    pub token_env: String,
    /// Bot API server (a self-hosted telegram-bot-api); default Telegram's.
    #[arg(long)]
    pub api_url: Option<String>,
    /// How updates arrive.
    #[arg(long, value_enum, default_value_t = Mode::Polling)]
    pub mode: Mode,
    /// Group messages taken: mentions (and replies to the bot) or all.
    #[arg(long, value_enum, default_value_t = GroupMessages::Mentions)]
    pub group_messages: GroupMessages,
}

impl crate::KindArgs for TelegramArgs {
    type Config = TelegramConfig;

    fn into_channel(self) -> (String, TelegramConfig) {
        let config = TelegramConfig {
            token_env: Some(self.token_env),
            token_file: None,
            api_url: self.api_url.unwrap_or_else(default_api_url),
            mode: self.mode,
            group_messages: self.group_messages,
            poll_timeout_secs: default_poll_timeout(),
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
        let ok: TelegramConfig = parse_config(&serde_json::json!({"token_env": "BOT_TOKEN"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.api_url, DEFAULT_API_URL);
        assert_eq!(ok.mode, Mode::Polling);
        assert_eq!(ok.group_messages, GroupMessages::Mentions);
        let field = |v: serde_json::Value| {
            parse_config::<TelegramConfig>(&v)
                .err()
                .map(|e| e.field)
                .unwrap_or_default()
        };
        assert_eq!(field(serde_json::json!({})), "token_env");
        assert_eq!(
            field(serde_json::json!({"token_env": "T", "api_url": "http://h:1/tbas"})),
            "api_url"
        );
        assert_eq!(
            field(serde_json::json!({"token_env": "T", "mode": "carrier_pigeon"})),
            "mode"
        );
        assert_eq!(
            field(serde_json::json!({"token_env": "T", "token": "x"})),
            "token"
        );
    }
}
