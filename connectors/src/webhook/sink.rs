//! Outbound: a reply is POSTed as signed JSON (the `OutboundMessage` envelope) to the channel's
//! `outbound_url`, with the message id as `Idempotency-Key` so the receiver can drop a retried
//! duplicate. 5xx, 408 and 429 are retried; other refusals fail the reply at once.

use std::time::Duration;

use inbox_core::envelope::OutboundMessage;
use inbox_core::model::Channel;
use serde::Deserialize;

use super::config::WebhookConfig;
use super::signing::{SIGNATURE_HEADER, sign};
use crate::{Delivered, DeliveryError, decode_config};

/// POSTs replies, signed, to the channel's `outbound_url`.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    pub(super) http: reqwest::Client,
}

impl WebhookSink {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("inbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        WebhookSink { http }
    }

    pub async fn deliver(
        &self,
        channel: &Channel,
        message: &OutboundMessage,
    ) -> Result<Delivered, DeliveryError> {
        let config: WebhookConfig = decode_config(&channel.config)
            .map_err(|e| DeliveryError::permanent(format!("channel config: {e}")))?;
        let url = config.outbound_url.ok_or_else(|| {
            DeliveryError::permanent("the channel has no outbound_url to deliver replies to")
        })?;
        let body = message.to_json();
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign(&channel.secret, &body))
            .header("idempotency-key", message.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("POST {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            #[derive(Deserialize)]
            struct Answer {
                external_id: Option<String>,
            }
            let answer = response.json::<Answer>().await.ok();
            return Ok(Delivered {
                external_id: answer.and_then(|a| a.external_id),
            });
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        let message = format!("POST {url}: HTTP {status}: {text}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(DeliveryError::transient(message))
        } else {
            Err(DeliveryError::permanent(message))
        }
    }
}

impl Default for WebhookSink {
    fn default() -> Self {
        Self::new()
    }
}
