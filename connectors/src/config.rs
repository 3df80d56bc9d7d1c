//! Typed channel configs: each kind's config is a serde struct (`deny_unknown_fields`, a doc
//! comment per field) with a `validate()` naming the bad field. Secrets are never part of a
//! config: it names the environment variable or file that holds them ([`read_secret`]).

use inbox_core::channel_catalog::ConfigError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind's config.
pub trait KindConfig: Serialize + DeserializeOwned {
    /// Checks what serde cannot (URLs, ranges, files that must exist).
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A kind's `inbox channel add <kind>` flags.
pub trait KindArgs: clap::Args + clap::FromArgMatches {
    type Config: KindConfig;
    /// The channel's name and the config the flags describe.
    fn into_channel(self) -> (String, Self::Config);
}

/// A config as the kind stores it: decoded, checked (naming the bad field), encoded again.
pub fn validated<C: KindConfig>(
    config: &serde_json::Value,
) -> Result<serde_json::Value, ConfigError> {
    let config: C = parse_config(config)?;
    Ok(serde_json::to_value(config).unwrap_or_default())
}

/// The channel a kind's flags describe, its config checked as the API checks it.
pub fn channel_from_args<A: KindArgs>(
    matches: &clap::ArgMatches,
) -> Result<crate::CliChannel, ConfigError> {
    let args =
        A::from_arg_matches(matches).map_err(|e| ConfigError::new("arguments", e.to_string()))?;
    let (name, config) = args.into_channel();
    let config = serde_json::to_value(config).unwrap_or_default();
    Ok(crate::CliChannel {
        name,
        config: validated::<A::Config>(&config)?,
    })
}

/// Decodes and validates a config, naming the first bad field (`smtp_port`, `outbound_url`):
/// what the CLI, the API and the admin pages store.
pub fn parse_config<C: KindConfig>(value: &serde_json::Value) -> Result<C, ConfigError> {
    let config: C = decode_config(value)?;
    config.validate()?;
    Ok(config)
}

/// Decodes a stored config (validated when it was stored), naming the bad field.
pub fn decode_config<C: DeserializeOwned>(value: &serde_json::Value) -> Result<C, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        // An unknown field's path names it already; a missing one's names its parent.
        let field = match (path.as_str(), missing) {
            ("." | "" | "?", Some(f)) => f,
            ("." | "" | "?", None) => "config".to_owned(),
            (p, Some(f)) => format!("{p}.{f}"),
            (p, None) => p.to_owned(),
        };
        ConfigError::new(field, message)
    })
}

/// Checks that an optional URL is http(s).
pub(crate) fn check_http_url(field: &str, url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            Err(ConfigError::new(field, "must be an http(s) URL"))
        }
        _ => Ok(()),
    }
}

/// Reads a secret from the file or environment variable a config names (the file wins); `what`
/// names it in errors ("password"). The secret itself is never stored.
pub fn read_secret(
    env: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<String, String> {
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("{what} file {}: {e}", path.display()));
    }
    let var = env.ok_or_else(|| format!("no environment variable or file holds the {what}"))?;
    std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
}
