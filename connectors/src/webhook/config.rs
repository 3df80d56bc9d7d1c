//! Settings of a webhook channel, and its `inbox channel add webhook` flags.

use inbox_core::channel_catalog::ConfigError;
use serde::{Deserialize, Serialize};

use crate::KindConfig;
use crate::config::check_http_url;

/// Settings of a webhook channel (the channel's `config` JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where replies are POSTed (signed JSON); without it, the channel is inbound only and
    /// replies on it fail with a clear error.
    #[serde(default)]
    pub outbound_url: Option<String>,
}

impl KindConfig for WebhookConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("outbound_url", self.outbound_url.as_deref())
    }
}

/// `inbox channel add webhook`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Channel name.
    #[arg(long)]
    pub name: String,
    /// Where replies are POSTed (signed JSON).
    #[arg(long)]
    pub outbound_url: Option<String>,
}

impl crate::KindArgs for WebhookArgs {
    type Config = WebhookConfig;

    fn into_channel(self) -> (String, WebhookConfig) {
        let config = WebhookConfig {
            outbound_url: self.outbound_url,
        };
        (self.name, config)
    }
}
