//! Inbound: `POST /hooks/{channel_id}` with `X-Inbox-Signature`; answered 202 once the bus durably
//! accepted the message, 401 for a bad signature, 400 naming the bad field, 404 for no such
//! channel, 410 for a deleted one and 503 + `Retry-After` while the channel is paused or the bus
//! is away (the sender retries; nothing is lost).

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use inbox_core::bus::BusError;
use inbox_core::envelope::{
    AttachmentRef, BlobRef, Body, InboundEvent, InboundMessage, Party, ThreadHints,
};
use inbox_core::file_name::clean_file_name;
use inbox_core::identity::EmailAddress;
use inbox_core::ids::{ChannelId, MessageId};
use inbox_core::model::Channel;
use serde::Deserialize;
use serde_json::json;

use super::KIND;
use super::signing::{SIGNATURE_HEADER, verify};
use crate::IntakeContext;

/// Largest accepted webhook body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_EXTERNAL_ID: usize = 1_000;
const MAX_HANDLE: usize = 500;

/// The JSON body of an inbound webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookPayload {
    /// The sender system's id of the message; the same id twice stores one message.
    external_id: String,
    from: WebhookSender,
    #[serde(default)]
    text: String,
    #[serde(default)]
    html: Option<String>,
    /// RFC 3339; defaults to the time of arrival.
    #[serde(default)]
    sent_at: Option<DateTime<Utc>>,
    /// external_id of the message this one answers.
    #[serde(default)]
    in_reply_to: Option<String>,
    #[serde(default)]
    attachments: Vec<WebhookAttachment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSender {
    /// The sender's id in the calling system.
    handle: String,
    #[serde(default)]
    name: Option<String>,
    /// A verified email address: links the sender to the same customer on other channels.
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookAttachment {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// `POST /hooks/{channel_id}`.
pub fn router(state: IntakeContext) -> Router {
    Router::new()
        .route("/hooks/{channel_id}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A refusal, as JSON naming what is wrong.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: &'static str,
    field: Option<String>,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            error,
            field: None,
            message: message.into(),
        }
    }

    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_field",
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

async fn receive(
    State(state): State<IntakeContext>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let unknown = || Refusal {
        status: StatusCode::NOT_FOUND,
        error: "unknown_channel",
        field: None,
        message: "no webhook channel with this id".into(),
    };
    let channel_id: ChannelId = channel_id.parse().map_err(|_| unknown())?;
    let channel = state
        .directory
        .channel(channel_id)
        .await
        .map_err(|e| {
            tracing::error!(%channel_id, error = %e, "Channel lookup failed.");
            Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "unavailable",
                field: None,
                message: "try again later".into(),
            }
        })?
        .filter(|c| c.kind == KIND)
        .ok_or_else(unknown)?;
    if channel.deleted_at.is_some() {
        return Err(Refusal::new(
            StatusCode::GONE,
            "channel_deleted",
            "this channel was deleted",
        ));
    }
    if !channel.enabled {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "channel_paused",
            "this channel is paused; retry later",
        ));
    }

    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !verify(&channel.secret, &body, signature) {
        tracing::info!(%channel_id, "Refused a webhook with a bad signature.");
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_signature",
            field: None,
            message: format!("{SIGNATURE_HEADER} must be sha256=<hex HMAC-SHA256 of the body>"),
        });
    }

    let message = parse(&channel, &body)?;
    let external_id = message.external_id.clone();
    match state
        .bus
        .publish_inbound(&InboundEvent::Message(message))
        .await
    {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted", "external_id": external_id})),
        )
            .into_response()),
        Err(error) => {
            tracing::warn!(%channel_id, %error, "Webhook not accepted by the bus.");
            let status = match error {
                BusError::Closed | BusError::NotAccepted(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            Ok((
                status,
                [("retry-after", "5")],
                axum::Json(json!({"error": "unavailable", "message": "not stored; retry later"})),
            )
                .into_response())
        }
    }
}

/// Decodes and checks a webhook body, naming the first bad field.
fn parse(channel: &Channel, body: &[u8]) -> Result<InboundMessage, Refusal> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let payload: WebhookPayload = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = match path.as_str() {
            "." | "" | "?" => missing_field(&inner.to_string()).unwrap_or_else(|| "body".into()),
            p => match missing_field(&inner.to_string()) {
                Some(f) => format!("{p}.{f}"),
                None => p.to_owned(),
            },
        };
        Refusal::field(field, inner.to_string())
    })?;

    let external_id = payload.external_id.trim();
    if external_id.is_empty() || external_id.len() > MAX_EXTERNAL_ID {
        return Err(Refusal::field(
            "external_id",
            format!("must be 1 to {MAX_EXTERNAL_ID} characters"),
        ));
    }
    let handle = payload.from.handle.trim();
    if handle.is_empty() || handle.len() > MAX_HANDLE {
        return Err(Refusal::field(
            "from.handle",
            format!("must be 1 to {MAX_HANDLE} characters"),
        ));
    }
    if let Some(email) = &payload.from.email {
        EmailAddress::parse(email).map_err(|e| Refusal::field("from.email", e))?;
    }
    // The same sanitizer as email: the integration's HTML is as untrusted as a mail's. Checked
    // after sanitizing, so HTML that was nothing but script does not count as content.
    let html = payload
        .html
        .as_deref()
        .map(crate::email::parse::sanitize_html)
        .filter(|h| !h.trim().is_empty());
    if payload.text.trim().is_empty() && html.is_none() && payload.attachments.is_empty() {
        return Err(Refusal::field(
            "text",
            "a message needs text, html or an attachment",
        ));
    }
    let mut attachments = Vec::with_capacity(payload.attachments.len());
    for (i, a) in payload.attachments.into_iter().enumerate() {
        let url = a.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Refusal::field(
                format!("attachments[{i}].url"),
                "must be an http(s) URL",
            ));
        }
        // Named by the sender, else by the URL's last segment; cleaned as every entry point is.
        let name = a
            .name
            .as_deref()
            .and_then(clean_file_name)
            .or_else(|| clean_file_name(url.split(['?', '#']).next().unwrap_or(url)))
            .unwrap_or_else(|| "attachment".to_owned());
        attachments.push(AttachmentRef {
            name,
            content_type: a.content_type,
            size: a.size,
            blob: BlobRef(url.to_owned()),
        });
    }
    let in_reply_to = payload.in_reply_to.filter(|r| !r.trim().is_empty());
    let message = InboundMessage {
        id: MessageId::new(),
        channel_id: channel.id,
        channel_kind: KIND,
        external_id: external_id.to_owned(),
        thread: ThreadHints {
            references: in_reply_to.iter().cloned().collect(),
            in_reply_to,
            subject: None,
            chat_id: None,
        },
        from: Party {
            handle: handle.to_owned(),
            name: payload.from.name.filter(|n| !n.trim().is_empty()),
            email: payload.from.email,
            phone: payload.from.phone,
        },
        to: Vec::new(),
        sent_at: payload.sent_at,
        received_at: Utc::now(),
        body: Body {
            text: payload.text,
            html,
        },
        attachments,
        raw: None,
        automated: None,
        edited_at: None,
        author: None,
        part_of: None,
    };
    if let Some(field) = inbox_core::ingest::field_with_nul(&message) {
        return Err(Refusal::field(field, "contains a NUL character"));
    }
    Ok(message)
}

/// serde reports a missing field as "missing field `name` at …"; pull the name out.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use inbox_core::channel_rules::ChannelRules;

    fn channel() -> Channel {
        Channel {
            id: ChannelId::new(),
            kind: KIND,
            name: "test".into(),
            config: json!({}),
            secret: "s3cret".into(),
            enabled: true,
            rules: ChannelRules::CHANNEL_CHAT,
            created_at: Utc::now(),
            deleted_at: None,
        }
    }

    #[test]
    fn a_full_payload_parses() {
        let body = json!({
            "external_id": "m-1",
            "from": {"handle": "u-1", "name": "Ada", "email": "Ada@Example.com"},
            "text": "hello",
            "sent_at": "2026-01-02T03:04:05Z",
            "in_reply_to": "m-0",
            "attachments": [
                {"url": "https://files.example.com/a.png"},
                {"url": "https://files.example.com/x", "name": "../invoice\u{202e}fdp.exe"},
                {"url": "https://files.example.com/dl/report.pdf?sig=abc"}
            ]
        });
        let m = parse(&channel(), body.to_string().as_bytes()).unwrap();
        // Names are cleaned as at every entry point: no directories, no bidi overrides.
        assert_eq!(m.attachments[1].name, "invoicefdp.exe");
        assert_eq!(m.attachments[2].name, "report.pdf");
        assert_eq!(m.external_id, "m-1");
        assert_eq!(m.from.handle, "u-1");
        assert_eq!(m.thread.in_reply_to.as_deref(), Some("m-0"));
        assert_eq!(m.attachments[0].name, "a.png");
        assert_eq!(m.sent_at.unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00");
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let cases = [
            (json!({"from": {"handle": "u"}, "text": "x"}), "external_id"),
            (
                json!({"external_id": "m", "from": {}, "text": "x"}),
                "from.handle",
            ),
            (
                json!({"external_id": 5, "from": {"handle": "u"}, "text": "x"}),
                "external_id",
            ),
            (
                json!({"external_id": "m", "from": {"handle": " "}, "text": "x"}),
                "from.handle",
            ),
            (json!({"external_id": "m", "from": {"handle": "u"}}), "text"),
            // HTML that is nothing but script is no content once sanitized.
            (
                json!({"external_id": "m", "from": {"handle": "u"}, "html": "<script>alert(1)</script>"}),
                "text",
            ),
            (
                json!({"external_id": "m", "from": {"handle": "u"}, "text": "x", "sent_at": "yesterday"}),
                "sent_at",
            ),
            (
                json!({"external_id": "m", "from": {"handle": "u", "email": "nope"}, "text": "x"}),
                "from.email",
            ),
            (
                json!({"external_id": "m", "from": {"handle": "u"}, "text": "x", "colour": 1}),
                "colour",
            ),
            (
                json!({"external_id": "m", "from": {"handle": "u"}, "attachments": [{"url": "file:///etc/passwd"}]}),
                "attachments[0].url",
            ),
            (
                json!({"external_id": "m", "from": {"handle": "u"}, "text": "a\u{0}b"}),
                "text",
            ),
        ];
        for (body, field) in cases {
            let refusal = parse(&channel(), body.to_string().as_bytes()).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(
                refusal.field.as_deref(),
                Some(field),
                "{body}: {}",
                refusal.message
            );
        }
        let refusal = parse(&channel(), b"{not json").unwrap_err();
        assert_eq!(refusal.field.as_deref(), Some("body"));
    }
}
