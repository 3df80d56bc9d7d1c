//! The Bot API calls the source needs, over the workspace's HTTP client: `getMe`, `getUpdates`
//! (raw JSON per update, so one malformed update is dead-lettered with its reason instead of
//! failing the batch), `getFile` and file downloads. Replies are sent with teloxide (`sink`).

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::config::TelegramConfig;

/// The biggest file the cloud Bot API lets a bot download.
pub const MAX_DOWNLOAD: u64 = 20 * 1024 * 1024;

/// A failed call: Telegram's answer (`error_code`, `description`, `parameters.retry_after`), or
/// the transport's error without a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{description}", code.map(|c| format!("{c} ")).unwrap_or_default())]
pub struct ApiFailure {
    pub code: Option<i64>,
    pub description: String,
    /// Seconds to wait before calling again (429).
    pub retry_after: Option<u64>,
}

impl ApiFailure {
    fn transport(e: impl std::fmt::Display) -> ApiFailure {
        ApiFailure {
            code: None,
            description: e.to_string(),
            retry_after: None,
        }
    }

    /// The token is wrong or revoked: retrying cannot help.
    pub fn unauthorized(&self) -> bool {
        self.code == Some(401) || self.code == Some(404)
    }
}

#[derive(Deserialize)]
struct Response<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

/// The bot itself, as `getMe` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotUser {
    pub id: i64,
    #[serde(default)]
    pub username: Option<String>,
    pub first_name: String,
    /// False while privacy mode is on (groups: only commands, replies and mentions arrive).
    #[serde(default)]
    pub can_read_all_group_messages: bool,
}

/// A file ready to download (`getFile`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileInfo {
    pub file_id: String,
    #[serde(default)]
    pub file_size: Option<u64>,
    #[serde(default)]
    pub file_path: Option<String>,
}

/// `getWebhookInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookInfo {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub pending_update_count: u64,
    /// Unix time of Telegram's last failed delivery to the webhook.
    #[serde(default)]
    pub last_error_date: Option<i64>,
    #[serde(default)]
    pub last_error_message: Option<String>,
}

/// One bot's Bot API.
#[derive(Debug, Clone)]
pub struct BotApi {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl BotApi {
    /// The client waits as long as the channel's long polls (`poll_timeout_secs`) plus a margin.
    pub fn new(config: &TelegramConfig, token: String) -> Result<BotApi, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(
                u64::from(config.poll_timeout_secs) + 15,
            ))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(BotApi {
            client,
            base: config.api_base().to_owned(),
            token,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiFailure> {
        let url = format!("{}/bot{}/{method}", self.base, self.token);
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            // reqwest names the URL in its errors: keep the token out of them.
            .map_err(|e| ApiFailure::transport(e.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiFailure::transport(e.without_url()))?;
        let answer: Response<T> = serde_json::from_slice(&bytes).map_err(|e| ApiFailure {
            code: Some(i64::from(status.as_u16())),
            description: format!("{method}: not a Bot API answer ({e})"),
            retry_after: None,
        })?;
        match (answer.ok, answer.result) {
            (true, Some(result)) => Ok(result),
            _ => Err(ApiFailure {
                code: answer.error_code.or(Some(i64::from(status.as_u16()))),
                description: answer
                    .description
                    .unwrap_or_else(|| format!("{method} failed")),
                retry_after: answer.parameters.and_then(|p| p.retry_after),
            }),
        }
    }

    pub async fn get_me(&self) -> Result<BotUser, ApiFailure> {
        self.call("getMe", &serde_json::json!({})).await
    }

    /// Updates from `offset` on (those below it are confirmed and forgotten by Telegram), each
    /// as raw JSON; waits up to `timeout` seconds for the first.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout: u32,
        allowed: &[&str],
    ) -> Result<Vec<serde_json::Value>, ApiFailure> {
        self.call(
            "getUpdates",
            &serde_json::json!({
                "offset": offset,
                "timeout": timeout,
                "limit": 100,
                "allowed_updates": allowed,
            }),
        )
        .await
    }

    /// Has Telegram POST updates to `url`, each with `secret` in its
    /// `X-Telegram-Bot-Api-Secret-Token` header.
    pub async fn set_webhook(
        &self,
        url: &str,
        secret: &str,
        allowed: &[&str],
    ) -> Result<bool, ApiFailure> {
        self.call(
            "setWebhook",
            &serde_json::json!({
                "url": url,
                "secret_token": secret,
                "allowed_updates": allowed,
                "max_connections": 10,
            }),
        )
        .await
    }

    /// Back to `getUpdates` (which Telegram refuses while a webhook is set); pending updates
    /// are kept.
    pub async fn delete_webhook(&self) -> Result<bool, ApiFailure> {
        self.call(
            "deleteWebhook",
            &serde_json::json!({"drop_pending_updates": false}),
        )
        .await
    }

    /// What Telegram says about the webhook: the URL, updates waiting, its last delivery error.
    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, ApiFailure> {
        self.call("getWebhookInfo", &serde_json::json!({})).await
    }

    pub async fn get_file(&self, file_id: &str) -> Result<FileInfo, ApiFailure> {
        self.call("getFile", &serde_json::json!({ "file_id": file_id }))
            .await
    }

    /// Downloads a file `getFile` gave the path of, refusing one over `limit` bytes.
    pub async fn download(&self, file_path: &str, limit: u64) -> Result<Vec<u8>, ApiFailure> {
        let url = format!("{}/file/bot{}/{file_path}", self.base, self.token);
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| ApiFailure::transport(e.without_url()))?;
        if !response.status().is_success() {
            return Err(ApiFailure {
                code: Some(i64::from(response.status().as_u16())),
                description: format!("downloading {file_path} failed"),
                retry_after: None,
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ApiFailure::transport(e.without_url()))?
        {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(ApiFailure::transport(format!(
                    "{file_path} is over {limit} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}
