//! Settings of a website chat channel, and its `inbox channel add web-chat` flags.

use inbox_core::channel_catalog::ConfigError;
use inbox_core::ids::ChannelId;
use serde::{Deserialize, Serialize};

use crate::KindConfig;

/// Whether the pre-chat form asks for a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FormField {
    /// Not asked.
    Off,
    /// Asked; the visitor may leave it empty.
    #[default]
    Optional,
    /// Asked; the visitor cannot write before giving it.
    Required,
}

/// Settings of a website chat channel (the channel's `config` JSON). The channel's secret (shown
/// once at creation) signs visitor tokens and verifies the site's identity hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebChatConfig {
    /// The sites the widget may be used on (`https://shop.example`, scheme, host and port):
    /// its requests from any other origin are refused.
    pub origins: Vec<String>,
    /// Shown when the chat opens.
    #[serde(default = "default_greeting")]
    pub greeting: String,
    /// Shown instead while no agent has answered for a while (empty: none).
    #[serde(default)]
    pub away_text: String,
    /// The widget's accent color, `#rrggbb`.
    #[serde(default = "default_accent")]
    pub accent_color: String,
    /// The pre-chat form's name field.
    #[serde(default)]
    pub name_field: FormField,
    /// The pre-chat form's email field (an address typed there is never taken as verified).
    #[serde(default)]
    pub email_field: FormField,
    /// Visitors may send files (images and PDFs, up to `max_upload_bytes`).
    #[serde(default)]
    pub uploads: bool,
    /// Largest file a visitor may send.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// An email channel that sends an agent's reply to a visitor who left an address and has
    /// gone (no open chat for `away_after_minutes`).
    #[serde(default)]
    pub email_fallback_channel: Option<ChannelId>,
    /// Minutes without an open chat after which a visitor counts as gone (0: as soon as no
    /// chat is open).
    #[serde(default = "default_away_after")]
    pub away_after_minutes: u32,
}

fn default_greeting() -> String {
    "Hi! How can we help?".to_owned()
}

fn default_accent() -> String {
    "#2563eb".to_owned()
}

fn default_max_upload() -> u64 {
    5 * 1024 * 1024
}

fn default_away_after() -> u32 {
    10
}

/// `scheme://host[:port]` as browsers send it in `Origin`: lower-case, no path, no trailing
/// slash. `None` when it is not one.
pub fn normalize_origin(raw: &str) -> Option<String> {
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

impl KindConfig for WebChatConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.origins.is_empty() {
            return Err(ConfigError::new(
                "origins",
                "names at least one site the widget is used on (https://shop.example)",
            ));
        }
        for origin in &self.origins {
            if normalize_origin(origin).as_deref() != Some(origin.as_str()) {
                return Err(ConfigError::new(
                    "origins",
                    format!(
                        "{origin:?} is not an origin like https://shop.example (scheme, host, port; no path)"
                    ),
                ));
            }
        }
        let hex_color = self.accent_color.len() == 7
            && self.accent_color.starts_with('#')
            && self.accent_color[1..]
                .chars()
                .all(|c| c.is_ascii_hexdigit());
        if !hex_color {
            return Err(ConfigError::new("accent_color", "a color like #2563eb"));
        }
        for (field, text) in [("greeting", &self.greeting), ("away_text", &self.away_text)] {
            if text.chars().count() > 500 {
                return Err(ConfigError::new(field, "at most 500 characters"));
            }
        }
        if !(1..=50 * 1024 * 1024).contains(&self.max_upload_bytes) {
            return Err(ConfigError::new("max_upload_bytes", "1 byte to 50 MiB"));
        }
        if self.away_after_minutes > 1440 {
            return Err(ConfigError::new("away_after_minutes", "0 to 1440 minutes"));
        }
        Ok(())
    }
}

impl WebChatConfig {
    /// The origin of a request, when the channel allows it.
    pub fn allows(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.origins.contains(&o))
    }
}

/// `inbox channel add web-chat`: a chat widget for the sites named.
#[derive(Debug, clap::Args)]
pub struct WebChatArgs {
    /// Channel name.
    #[arg(long)]
    pub name: String,
    /// A site the widget is embedded on (`https://shop.example`); repeat for several.
    #[arg(long = "origin", required = true)]
    pub origins: Vec<String>,
    /// Shown when the chat opens.
    #[arg(long)]
    pub greeting: Option<String>,
}

/// Origins are normalized (`HTTPS://Shop.example/` is `https://shop.example`), a bad one kept as
/// given so validation names it.
impl crate::KindArgs for WebChatArgs {
    type Config = WebChatConfig;

    fn into_channel(self) -> (String, WebChatConfig) {
        let config = WebChatConfig {
            origins: self
                .origins
                .iter()
                .map(|o| normalize_origin(o).unwrap_or_else(|| o.clone()))
                .collect(),
            greeting: self.greeting.unwrap_or_else(default_greeting),
            away_text: String::new(),
            accent_color: default_accent(),
            name_field: FormField::default(),
            email_field: FormField::default(),
            uploads: false,
            max_upload_bytes: default_max_upload(),
            email_fallback_channel: None,
            away_after_minutes: default_away_after(),
        };
        (self.name, config)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse_config;

    #[test]
    fn origins_are_checked_and_compared_as_browsers_send_them() {
        assert_eq!(
            normalize_origin("HTTPS://Shop.Example:443/").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8081").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        for bad in [
            "shop.example",
            "https://shop.example/chat",
            "ftp://x",
            "https://u@x",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        let config: WebChatConfig = parse_config(&json!({"origins": ["https://shop.example"]}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(config.allows("https://shop.example"));
        assert!(!config.allows("https://shop.example.evil"));
        assert!(!config.allows("null"));
        assert_eq!(config.name_field, FormField::Optional);
    }

    #[test]
    fn configs_name_their_bad_field() {
        let field = |v: serde_json::Value| {
            parse_config::<WebChatConfig>(&v)
                .err()
                .map(|e| e.field)
                .unwrap_or_default()
        };
        assert_eq!(field(json!({})), "origins");
        assert_eq!(field(json!({"origins": []})), "origins");
        assert_eq!(
            field(json!({"origins": ["https://a.example/x"]})),
            "origins"
        );
        assert_eq!(
            field(json!({"origins": ["https://a.example"], "accent_color": "blue"})),
            "accent_color"
        );
        assert_eq!(
            field(json!({"origins": ["https://a.example"], "colour": "#000000"})),
            "colour"
        );
    }
}
