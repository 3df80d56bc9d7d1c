//! `POST /widget/{channel_id}/messages`: a visitor's message, through the funnel.

use super::files::own_files;
use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    /// The widget's id of the message (letters, digits, `-`, `_`; 8 to 64): a retried send is
    /// taken once.
    client_id: String,
    #[serde(default)]
    text: String,
    /// Files uploaded to this chat before (`POST …/files`), as that call answered.
    #[serde(default)]
    attachments: Vec<AttachmentRef>,
}

pub(super) async fn send(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    match take_message(&widget, &allowed, &peer_key(peer), &headers, &body).await {
        Ok(entry) => allowed.answer((
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted", "id": entry.id})),
        )),
        Err(refused) => allowed.refuse(refused),
    }
}

/// Checks a visitor's message, hands it to the bus and writes it to the chat log (in that
/// order: a message in the log was taken; one the bus refused is sent again by the widget).
async fn take_message(
    widget: &Widget,
    allowed: &Allowed,
    peer: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Entry, Refused> {
    let channel = &allowed.channel;
    let chat = allowed.chat(headers)?;
    widget.limits.per_ip.check(peer).map_err(Refused::TooMany)?;
    let request: SendRequest = parse_json(body)?;
    let client_id = request.client_id.trim();
    if !(8..=64).contains(&client_id.len())
        || !client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Refused::field(
            "client_id",
            "8 to 64 letters, digits, '-' or '_'",
        ));
    }
    required_fields(&allowed.config, &chat)?;
    let text = request.text.trim();
    let key = ChatKey {
        channel: channel.id,
        log: visitor::log_key(&chat.handle),
    };
    let attachments = own_files(widget, &key, request.attachments).await?;
    if text.is_empty() && attachments.is_empty() {
        return Err(Refused::field("text", "a message needs text or a file"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Refused::field(
            "text",
            format!("at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    let known = widget
        .log
        .by_client_id(&key, client_id)
        .await
        .map_err(|e| {
            tracing::warn!(channel_id = %channel.id, error = %e, "Chat log unreadable.");
            Refused::Unavailable
        })?;
    if let Some(entry) = known {
        return Ok(entry);
    }
    widget
        .limits
        .per_chat
        .check(&format!("{}\0{}", channel.id, chat.handle))
        .map_err(Refused::TooMany)?;
    let mut message = envelope(channel, &chat, client_id, text);
    message.attachments = attachments.clone();
    if let Some(field) = inbox_core::ingest::field_with_nul(&message) {
        return Err(Refused::field(
            if field == "text" { "text" } else { "name" },
            "contains a NUL character",
        ));
    }
    widget
        .ctx
        .bus
        .publish_inbound(&InboundEvent::Message(message))
        .await
        .map_err(|error| {
            tracing::warn!(channel_id = %channel.id, %error, "Chat message not accepted by the bus.");
            Refused::Unavailable
        })?;
    let mut entry = Entry::new(Author::Visitor, text.to_owned());
    entry.client_id = Some(client_id.to_owned());
    entry.files = attachments.iter().map(|a| a.name.clone()).collect();
    widget.log.append(&key, entry).await.map_err(|e| {
        tracing::warn!(channel_id = %channel.id, error = %e, "Chat log not written.");
        Refused::Unavailable
    })
}

/// The pre-chat form's required fields were given (a proven user needs none): checked on each
/// message, as the session may start before the visitor filled the form in.
fn required_fields(config: &WebChatConfig, chat: &Chat) -> Result<(), Refused> {
    let proven = chat.handle.starts_with("user:");
    let given = [
        ("name", config.name_field, chat.name.is_some()),
        (
            "email",
            config.email_field,
            chat.left_email.is_some() || chat.email.is_some(),
        ),
    ];
    for (field, mode, present) in given {
        if mode == FormField::Required && !present && !proven {
            return Err(Refused::field(
                field,
                "is required by this chat: start the session with it",
            ));
        }
    }
    Ok(())
}

/// The visitor's message as the funnel takes it.
fn envelope(channel: &Channel, chat: &Chat, client_id: &str, text: &str) -> InboundMessage {
    let now = Utc::now();
    InboundMessage {
        thread: ThreadHints {
            chat_id: Some(chat.handle.clone()),
            ..ThreadHints::default()
        },
        from: Party {
            handle: chat.handle.clone(),
            name: chat.name.clone(),
            // Proven by the site's hash only: it links the visitor to the same customer elsewhere.
            email: chat.email.clone(),
            phone: None,
        },
        sent_at: Some(now),
        received_at: now,
        body: Body {
            text: text.to_owned(),
            html: None,
        },
        ..InboundMessage::text(
            channel.id,
            KIND,
            format!("{}:{client_id}", chat.handle),
            chat.handle.clone(),
            String::new(),
        )
    }
}
