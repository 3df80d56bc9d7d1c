//! The Telegram channel: a bot's private chats by long polling (`source`), replies by the Bot API
//! (`sink`), updates → envelopes (`parse`). docs/channels/telegram.md says what is taken.

pub mod api;
mod config;
pub mod parse;
mod sink;
pub mod source;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
pub use config::{DEFAULT_API_URL, GroupMessages, Mode, TelegramArgs, TelegramConfig};
use inbox_core::channel_catalog::{
    ConfigError, ConfigField, ConnectionCheck, ConnectionReport, FieldInput, KindInfo,
};
use inbox_core::channel_rules::ChannelRules;
use inbox_core::envelope::{ChannelKind, OutboundMessage};
use inbox_core::model::Channel;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{
    CliChannel, Connector, Delivered, DeliveryError, SourceContext, SyncOutcome, SyncRequest,
    channel_from_args, decode_config, read_secret, validated,
};

pub const KIND: ChannelKind = ChannelKind::named("telegram");

/// Telegram channels; replies' attachments are read from `blobs`.
#[derive(Debug, Clone)]
pub struct TelegramConnector {
    blobs: Arc<dyn ObjectStore>,
}

impl TelegramConnector {
    pub fn new(blobs: Arc<dyn ObjectStore>) -> Self {
        TelegramConnector { blobs }
    }
}

fn token(config: &TelegramConfig) -> Result<String, String> {
    read_secret(
        config.token_env.as_deref(),
        config.token_file.as_deref(),
        "bot token",
    )
}

#[async_trait]
impl Connector for TelegramConnector {
    fn kind(&self) -> ChannelKind {
        KIND
    }

    fn info(&self) -> KindInfo {
        use FieldInput::*;
        KindInfo {
            kind: KIND,
            display_name: "Telegram",
            icon: "✈",
            description: "A Telegram bot: customers' private chats with it, and the groups it \
                          is in, become conversations; replies are sent by the bot.",
            fields: vec![
                ConfigField::new(
                    "token_env",
                    "Token variable",
                    "The environment variable holding the bot token from BotFather (never stored).",
                    SecretEnv,
                    true,
                ),
                ConfigField::new(
                    "api_url",
                    "Bot API server",
                    "Telegram's by default; a self-hosted telegram-bot-api (scheme, host, port).",
                    Url,
                    false,
                ),
                ConfigField::new(
                    "mode",
                    "Mode",
                    "polling: the bot asks Telegram (nothing to expose); webhook: Telegram posts \
                     to this server's public HTTPS URL.",
                    Choice(&["polling", "webhook"]),
                    false,
                ),
                ConfigField::new(
                    "group_messages",
                    "Group messages",
                    "mentions: only those mentioning or replying to the bot; all: every one.",
                    Choice(&["mentions", "all"]),
                    false,
                ),
            ],
            intake_path: None,
            embed_snippet: None,
            uses_secret: false,
        }
    }

    fn rules(&self) -> ChannelRules {
        ChannelRules::NETWORK_CHAT
    }

    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigError> {
        validated::<TelegramConfig>(config)
    }

    fn cli_args(&self, command: clap::Command) -> clap::Command {
        <TelegramArgs as clap::Args>::augment_args(command)
    }

    fn channel_from_cli(&self, args: &clap::ArgMatches) -> Result<CliChannel, ConfigError> {
        channel_from_args::<TelegramArgs>(args)
    }

    async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        let config: TelegramConfig = decode_config(&channel.config)
            .map_err(|e| DeliveryError::permanent(format!("channel config: {e}")))?;
        let bot = sink::bot(&config, token(&config).map_err(DeliveryError::permanent)?)?;
        sink::deliver(&bot, &self.blobs, message).await
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
        let config: TelegramConfig =
            decode_config(&channel.config).map_err(|e| format!("channel config: {e}"))?;
        let bot_token = token(&config)?;
        let api = api::BotApi::new(&config, bot_token.clone())?;
        match config.mode {
            Mode::Polling => source::run(channel, config, api, ctx, stop).await,
            Mode::Webhook => webhook::run(channel, api, &bot_token, ctx, stop).await,
        }
    }

    fn intake(&self, ctx: &crate::IntakeContext) -> Option<axum::Router> {
        Some(webhook::router(ctx.clone()))
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
            let config: TelegramConfig =
                decode_config(&channel.config).map_err(|e| format!("channel config: {e}"))?;
            let api = api::BotApi::new(&config, token(&config)?)?;
            source::sync(channel, &config, &api, ctx, progress, stop).await
        };
        Some(synced.await.map(|synced| {
            let mut cursor = serde_json::Map::new();
            cursor.insert("offset".into(), synced.offset.into());
            SyncOutcome {
                total: synced.fetched,
                fetched: synced.fetched,
                backfill: false,
                cursor,
                items: "updates",
                window: "what Telegram kept since the last read (at most 24 hours)".to_owned(),
                position: format!("the offset is at update {}", synced.offset),
            }
        }))
    }

    /// `getMe`: the token works, and whether privacy mode lets group messages through.
    async fn test_connection(&self, channel: &Channel) -> ConnectionReport {
        let check = async {
            let config: TelegramConfig =
                decode_config(&channel.config).map_err(|e| format!("channel config: {e}"))?;
            let api = api::BotApi::new(&config, token(&config)?)?;
            let me = api.get_me().await.map_err(|e| format!("getMe: {e}"))?;
            Ok::<_, String>(format!(
                "bot @{} ({}); privacy mode {}",
                me.username.unwrap_or_default(),
                me.first_name,
                if me.can_read_all_group_messages {
                    "off: every group message arrives"
                } else {
                    "on: in groups only commands, replies and mentions arrive"
                }
            ))
        };
        ConnectionReport::of(vec![match check.await {
            Ok(detail) => ConnectionCheck::passed("bot_api", detail),
            Err(e) => ConnectionCheck::failed("bot_api", e),
        }])
    }
}
