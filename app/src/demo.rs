//! `inbox run --demo`: an admin, a webhook channel whose replies go to a built-in receiver, and a
//! few conversations, so a new user sees a working inbox at once.

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use chrono::{Duration, Utc};
use inbox_core::envelope::{Body, ChannelKind, InboundEvent, InboundMessage, Party, ThreadHints};
use inbox_core::ids::MessageId;
use inbox_core::ingest::{InboundRecord, IngestSettings, ingest};
use inbox_core::model::{Channel, Role};
use inbox_core::passwords;
use inbox_core::store::Store;
use serde_json::json;

pub const ADMIN_EMAIL: &str = "admin@example.com";
const CHANNEL_NAME: &str = "Demo webhook";
/// Path of the built-in receiver the demo channel delivers replies to.
pub const RECEIVER_PATH: &str = "/demo/outbound";

/// What the demo prints.
#[derive(Debug)]
pub struct Seeded {
    pub password: String,
    pub token: String,
    pub channel: Channel,
}

impl Seeded {
    pub fn instructions(&self, base_url: &str) -> String {
        let hook = format!("{base_url}/hooks/{}", self.channel.id);
        format!(
            "Inbox demo is running at {base_url}\n\
             \n  Admin login:     {ADMIN_EMAIL} / {password}\
             \n  API token:       {token}\
             \n  Webhook URL:     {hook}\
             \n  Webhook secret:  {secret}\
             \n\nPost a message:\n\
             \n  body='{{\"external_id\":\"m-1\",\"from\":{{\"handle\":\"u-1\",\"name\":\"Ada\"}},\"text\":\"Hello!\"}}'\
             \n  sig=\"sha256=$(printf %s \"$body\" | openssl dgst -sha256 -hmac '{secret}' -hex | sed 's/^.* //')\"\
             \n  curl -i -H \"X-Inbox-Signature: $sig\" -H 'Content-Type: application/json' -d \"$body\" {hook}\
             \n\nList conversations:\n\
             \n  curl -H 'Authorization: Bearer {token}' {base_url}/api/v1/conversations\n",
            password = self.password,
            token = self.token,
            secret = self.channel.secret,
        )
    }
}

/// Creates the demo data once; on later runs gives the admin a fresh password and token.
pub async fn seed(store: &Store, base_url: &str) -> anyhow::Result<Seeded> {
    let password = passwords::generate();
    let hash = passwords::hash(&password)?;
    let admin = match store.agent_by_email(ADMIN_EMAIL).await? {
        Some(admin) => {
            store.set_password(admin.id, &hash).await?;
            admin
        }
        None => {
            store
                .create_agent(ADMIN_EMAIL, "Demo Admin", Role::Admin, Some(&hash))
                .await?
        }
    };
    let token = store.create_api_token(admin.id, "demo").await?;
    let existing = store
        .channels()
        .await?
        .into_iter()
        .find(|c| c.name == CHANNEL_NAME && c.kind == ChannelKind::WEBHOOK);
    let channel = match existing {
        Some(channel) => channel,
        None => {
            let channel = store
                .create_channel(
                    ChannelKind::WEBHOOK,
                    CHANNEL_NAME,
                    json!({"outbound_url": format!("{base_url}{RECEIVER_PATH}")}),
                    &inbox_connectors::webhook::new_secret(),
                )
                .await?;
            seed_conversations(store, &channel).await?;
            channel
        }
    };
    Ok(Seeded {
        password,
        token,
        channel,
    })
}

async fn seed_conversations(store: &Store, channel: &Channel) -> anyhow::Result<()> {
    let now = Utc::now();
    let samples = [
        (
            "u-ada",
            "Ada Lovelace",
            "My order #1042 has not arrived yet. Can you check?",
            90,
        ),
        (
            "u-alan",
            "Alan Turing",
            "How do I export my invoices as CSV?",
            45,
        ),
        (
            "u-grace",
            "Grace Hopper",
            "The app logs me out every few minutes on my phone.",
            20,
        ),
        (
            "u-ada",
            "Ada Lovelace",
            "Tracking says it is in Lisbon, if that helps.",
            10,
        ),
    ];
    let records: Vec<InboundRecord> = samples
        .iter()
        .enumerate()
        .map(|(i, (handle, name, text, minutes_ago))| {
            InboundRecord::Event(InboundEvent::Message(InboundMessage {
                id: MessageId::new(),
                channel_id: channel.id,
                channel_kind: ChannelKind::WEBHOOK,
                external_id: format!("demo-{i}"),
                thread: ThreadHints::default(),
                from: Party {
                    handle: (*handle).into(),
                    name: Some((*name).into()),
                    email: None,
                    phone: None,
                },
                to: Vec::new(),
                sent_at: Some(now - Duration::minutes(*minutes_ago)),
                received_at: now,
                body: Body {
                    text: (*text).into(),
                    html: None,
                },
                attachments: Vec::new(),
                raw: None,
                automated: None,
                edited_at: None,
                author: None,
                part_of: None,
            }))
        })
        .collect();
    ingest(store, &records, &IngestSettings::default())
        .await
        .context("seeding demo conversations")?;
    Ok(())
}

/// The built-in receiver of the demo channel: checks the signature and accepts the reply, the way
/// an operator's endpoint would.
pub fn receiver(secret: String) -> Router {
    Router::new().route(
        RECEIVER_PATH,
        post(move |headers: HeaderMap, body: Bytes| {
            let secret = secret.clone();
            async move {
                let signature = headers
                    .get(inbox_connectors::webhook::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !inbox_connectors::webhook::verify(&secret, &body, signature) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": "bad signature"})),
                    );
                }
                let id = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                tracing::info!(message_id = %id, "Demo receiver got a reply.");
                (
                    StatusCode::OK,
                    axum::Json(json!({"external_id": format!("demo-out-{id}")})),
                )
            }
        }),
    )
}
