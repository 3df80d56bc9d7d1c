//! The channel kinds as the rest of the product sees them. The kinds are implemented in the
//! connectors crate and listed by its registry; the web side (API, admin pages) and the core's
//! dead-letter replay reach them through [`ChannelCatalog`], so they depend on this port and not
//! on the connectors.

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::channel_rules::ChannelRules;
use crate::envelope::{ChannelKind, InboundMessage};
use crate::model::Channel;

/// A channel kind as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KindInfo {
    #[schema(value_type = String)]
    pub kind: ChannelKind,
    /// "Email", "Webhook".
    pub display_name: &'static str,
    /// One character shown beside the kind's conversations.
    pub icon: &'static str,
    /// What the kind is, in a sentence.
    pub description: &'static str,
    /// The config fields, for forms and docs.
    pub fields: Vec<ConfigField>,
    /// The path pattern of the kind's intake (`/hooks/{channel_id}`), when it takes pushes: the
    /// route it serves, `{channel_id}` standing for the channel id.
    pub intake_path: Option<&'static str>,
    /// The HTML a site embeds for a kind with a widget: `{base}` stands for this server's public
    /// URL, `{channel_id}` for the channel id.
    pub embed_snippet: Option<&'static str>,
    /// The channel's signing secret matters (shown once at creation).
    pub uses_secret: bool,
}

/// One field of a kind's config.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConfigField {
    /// The JSON key.
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub input: FieldInput,
    pub required: bool,
}

impl ConfigField {
    pub const fn new(
        name: &'static str,
        label: &'static str,
        help: &'static str,
        input: FieldInput,
        required: bool,
    ) -> ConfigField {
        ConfigField {
            name,
            label,
            help,
            input,
            required,
        }
    }
}

/// How a field is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "type", content = "choices")]
pub enum FieldInput {
    Text,
    Url,
    Email,
    Number,
    Toggle,
    /// One of these values.
    Choice(&'static [&'static str]),
    /// Several values (a JSON array of strings), typed separated by commas or spaces.
    List,
    /// The name of an environment variable holding a secret (the secret itself is never stored).
    SecretEnv,
    /// A path to a file (a mounted secret, a CA bundle).
    Path,
}

/// A config that does not fit its kind, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A config its kind accepted, as it is stored, with the kind's funnel rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig {
    pub config: serde_json::Value,
    pub rules: ChannelRules,
}

/// The outcome of a channel's connection test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConnectionReport {
    /// Every check passed.
    pub ok: bool,
    pub checks: Vec<ConnectionCheck>,
}

/// One step of a connection test ("IMAP login", "SMTP handshake", "outbound URL reachable").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConnectionCheck {
    pub name: String,
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

impl ConnectionReport {
    pub fn of(checks: Vec<ConnectionCheck>) -> Self {
        ConnectionReport {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

impl ConnectionCheck {
    pub fn passed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        ConnectionCheck {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        ConnectionCheck {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The kinds of this build.
#[async_trait]
pub trait ChannelCatalog: Send + Sync + std::fmt::Debug {
    /// Every kind, in a stable order.
    fn kinds(&self) -> Vec<KindInfo>;

    fn kind(&self, kind: ChannelKind) -> Option<KindInfo> {
        self.kinds().into_iter().find(|k| k.kind == kind)
    }

    /// Checks a config against its kind.
    fn validate(
        &self,
        kind: ChannelKind,
        config: &serde_json::Value,
    ) -> Result<ValidConfig, ConfigError>;

    /// Logs in / shakes hands with the channel's servers and says what works.
    async fn test(&self, channel: &Channel) -> ConnectionReport;

    /// Re-reads a dead letter's raw source (its `payload` names it) with the kind's parser;
    /// `None` when the kind keeps no raw sources.
    async fn reparse(
        &self,
        channel: &Channel,
        payload: &str,
    ) -> Option<Result<InboundMessage, String>>;
}

/// A new channel signing secret: 24 random bytes, hex, prefixed so it is recognisable in a
/// secret scanner.
pub fn mint_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}
