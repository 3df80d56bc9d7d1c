//! The Mastodon channel: the company account's mentions and direct messages in (`source`, over
//! the notifications and streaming APIs), replies out as statuses in the same thread with the
//! same visibility (`sink`), entities → envelopes (`parse`). docs/channels/mastodon.md says what
//! is taken and which token scopes it needs.

pub mod api;
mod config;
pub mod parse;
mod sink;
pub mod source;
mod stream;
pub mod text;

use std::sync::Arc;

use async_trait::async_trait;
pub use config::{MastodonArgs, MastodonConfig};
use inbox_core::channel_catalog::{
    ConfigError, ConfigField, ConnectionCheck, ConnectionReport, FieldInput, KindInfo,
};
use inbox_core::channel_rules::{ChannelRules, IdentityScope};
use inbox_core::envelope::{ChannelKind, InboundMessage, OutboundMessage};
use inbox_core::model::Channel;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{
    CliChannel, Connector, Delivered, DeliveryError, SourceContext, SyncOutcome, SyncRequest,
    channel_from_args, decode_config, read_secret, validated,
};

pub const KIND: ChannelKind = ChannelKind::named("mastodon");

/// The funnel's rules for Mastodon: a reply joins the status it answers (rule 1); otherwise the
/// subject names the thread (one for an account's direct messages, one per public root), and
/// accounts are the network's.
pub const RULES: ChannelRules = ChannelRules {
    reply_token: false,
    subject: true,
    latest_conversation: false,
    identity: IdentityScope::Network,
};

/// Mastodon channels; replies' attachments are read from `blobs`.
#[derive(Debug, Clone)]
pub struct MastodonConnector {
    blobs: Arc<dyn ObjectStore>,
}

impl MastodonConnector {
    pub fn new(blobs: Arc<dyn ObjectStore>) -> Self {
        MastodonConnector { blobs }
    }
}

fn config_of(channel: &Channel) -> Result<MastodonConfig, String> {
    decode_config(&channel.config).map_err(|e| format!("channel config: {e}"))
}

/// The channel's API client, with the token from its variable or file.
fn api_of(config: &MastodonConfig) -> Result<api::MastodonApi, String> {
    let token = read_secret(
        config.token_env.as_deref(),
        config.token_file.as_deref(),
        "access token",
    )?;
    api::MastodonApi::new(config, token)
}

/// The channel's config, its client, and the account its token belongs to.
async fn connect(
    channel: &Channel,
) -> Result<(MastodonConfig, api::MastodonApi, parse::Account), String> {
    let config = config_of(channel)?;
    let api = api_of(&config)?;
    let own = api
        .verify_credentials()
        .await
        .map_err(|e| source::describe("verify_credentials", &e))?;
    Ok((config, api, own))
}

#[async_trait]
impl Connector for MastodonConnector {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn info(&self) -> KindInfo {
        use FieldInput::*;
        KindInfo {
            kind: KIND,
            display_name: "Mastodon",
            icon: "🐘",
            description: "The company's Mastodon account: mentions and direct messages become \
                          conversations (public ones marked public); replies are posted in the \
                          same thread with the same visibility.",
            fields: vec![
                ConfigField::new(
                    "instance_url",
                    "Instance",
                    "The instance the account is on, e.g. https://mastodon.social.",
                    Url,
                    true,
                ),
                ConfigField::new(
                    "token_env",
                    "Token variable",
                    "The environment variable holding the account's access token (scopes \
                     read:accounts read:notifications read:statuses write:statuses \
                     write:media; never stored).",
                    SecretEnv,
                    true,
                ),
            ],
            intake_path: None,
            embed_snippet: None,
            uses_secret: false,
        }
    }

    fn rules(&self) -> ChannelRules {
        RULES
    }

    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        validated::<MastodonConfig>(config)
    }

    fn cli_args(&self, command: clap::Command) -> clap::Command {
        <MastodonArgs as clap::Args>::augment_args(command)
    }

    fn channel_from_cli(&self, args: &clap::ArgMatches) -> Result<CliChannel, ConfigError> {
        channel_from_args::<MastodonArgs>(args)
    }

    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        let config = config_of(channel).map_err(DeliveryError::permanent)?;
        let api = api_of(&config).map_err(DeliveryError::permanent)?;
        sink::deliver(&api, &self.blobs, message).await
    }

    fn has_source(&self) -> bool {
        true
    }

    async fn run_source(
        &self,
        channel: Channel,
        ctx: SourceContext,
        stop: CancellationToken,
    ) -> Result<(), String> {
        let config = config_of(&channel)?;
        let api = api_of(&config)?;
        source::run(channel, config, api, ctx, stop).await
    }

    async fn sync(
        &self,
        channel: &Channel,
        ctx: &SourceContext,
        _request: SyncRequest,
        progress: &dyn crate::SyncProgress,
        stop: &CancellationToken,
    ) -> Option<Result<SyncOutcome, String>> {
        let synced = async {
            let (config, api, own) = connect(channel).await?;
            let reader = source::Reader {
                channel,
                config: &config,
                host: api.host(),
                api: &api,
                ctx,
                own,
            };
            let backfill = ctx
                .cursors
                .get(channel.id, source::CURSOR)
                .await?
                .is_none_or(|c| c.is_empty());
            let read = reader
                .catch_up(progress, stop)
                .await
                .map_err(|e| e.to_string())?;
            let cursor = ctx
                .cursors
                .get(channel.id, source::CURSOR)
                .await?
                .unwrap_or_default();
            Ok::<_, String>((read, backfill, cursor))
        };
        Some(synced.await.map(|(read, backfill, cursor)| {
            let mut map = serde_json::Map::new();
            map.insert("notification".into(), cursor.clone().into());
            SyncOutcome {
                total: read,
                fetched: read,
                backfill,
                cursor: map,
                items: "mentions",
                window: if backfill {
                    "the mentions of the backfill window".to_owned()
                } else {
                    "new mentions since the last read".to_owned()
                },
                position: if cursor.is_empty() || cursor == source::NONE_YET {
                    "no notification taken yet".to_owned()
                } else {
                    format!("the cursor is at notification {cursor}")
                },
            }
        }))
    }

    /// `verify_credentials` (the token and its account) and the instance's status limit.
    async fn test_connection(&self, channel: &Channel) -> ConnectionReport {
        let check = async {
            let (_, api, own) = connect(channel).await?;
            let limit = api
                .max_characters()
                .await
                .map_err(|e| source::describe("instance", &e))?;
            Ok::<_, String>(format!(
                "account @{}@{} ({}); statuses up to {limit} characters",
                own.acct,
                api.host(),
                own.display_name
            ))
        };
        ConnectionReport::of(vec![match check.await {
            Ok(detail) => ConnectionCheck::passed("mastodon_api", detail),
            Err(e) => ConnectionCheck::failed("mastodon_api", e),
        }])
    }

    /// A dead-lettered notification read again from its raw JSON (after a fix of the parser).
    async fn reparse(
        &self,
        channel: &Channel,
        payload: &str,
    ) -> Option<Result<InboundMessage, String>> {
        if !payload.starts_with("raw/mastodon/") {
            return None;
        }
        let reparsed = async {
            let (_, api, own) = connect(channel).await?;
            let path = object_store::path::Path::from(payload);
            let bytes = self
                .blobs
                .get(&path)
                .await
                .map_err(|e| format!("blob {payload}: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("blob {payload}: {e}"))?;
            let raw: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("raw JSON: {e}"))?;
            let host = api.host();
            let origin = parse::Origin {
                channel_id: channel.id,
                kind: channel.kind,
                own: &own,
                host: &host,
            };
            match parse::parse_notification(&raw, origin) {
                parse::Parsed::Message { mut message, .. } => {
                    message.raw = Some(inbox_core::envelope::BlobRef(payload.to_owned()));
                    Ok(*message)
                }
                parse::Parsed::Ignored(why) => Err(format!("nothing to take: {why}")),
                parse::Parsed::Rejected(error) => Err(error),
            }
        };
        Some(reparsed.await)
    }
}
