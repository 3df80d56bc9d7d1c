//! `POST /widget/{channel_id}/session`: who the visitor is, and the tokens that say so.

use super::files::UPLOAD_TYPES;
use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    /// The token this browser was given before (kept in the site's localStorage).
    #[serde(default)]
    visitor_token: Option<String>,
    /// From the pre-chat form.
    #[serde(default)]
    name: Option<String>,
    /// From the pre-chat form: where a reply may go by email; never taken as verified.
    #[serde(default)]
    email: Option<String>,
    /// The site's proof of its signed-in user.
    #[serde(default)]
    user: Option<Claim>,
}

pub(super) async fn session(
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
    let peer = peer_key(peer);
    if let Err(wait) = widget.limits.sessions.check(&peer) {
        return allowed.refuse(Refused::TooMany(wait));
    }
    let request: SessionRequest = match parse_json(&body) {
        Ok(request) => request,
        Err(refused) => return allowed.refuse(refused),
    };
    let (session, chat) = match open_session(&allowed, request) {
        Ok(opened) => opened,
        Err(refused) => return allowed.refuse(refused),
    };
    if let Some(left_email) = &chat.left_email {
        let key = ChatKey {
            channel: allowed.channel.id,
            log: visitor::log_key(&chat.handle),
        };
        let profile = Profile {
            left_email: Some(left_email.clone()),
        };
        if let Err(e) = widget.log.set_profile(&key, &profile).await {
            tracing::warn!(channel_id = %allowed.channel.id, error = %e, "Visitor profile not written.");
            return allowed.refuse(Refused::Unavailable);
        }
    }
    allowed.answer(axum::Json(session))
}

/// The visitor and chat tokens and the widget's settings for a session request.
fn open_session(
    allowed: &Allowed,
    request: SessionRequest,
) -> Result<(serde_json::Value, Chat), Refused> {
    let secret = &allowed.channel.secret;
    let channel = allowed.channel.id;
    let (visitor_id, visitor_token) = match request
        .visitor_token
        .as_deref()
        .and_then(|t| visitor::verify(secret, channel, t).map(|id| (id, t.to_owned())))
    {
        Some(known) => known,
        None => visitor::mint(secret, channel),
    };
    let user = request
        .user
        .as_ref()
        .and_then(|claim| visitor::verify_claim(secret, claim));
    let identity = match (&request.user, &user) {
        (_, Some(_)) => "verified",
        (Some(_), None) => {
            tracing::warn!(channel_id = %channel, "A site's identity claim did not verify; the visitor stays anonymous.");
            "rejected"
        }
        (None, None) => "anonymous",
    };
    let name = clean(request.name.as_deref(), 200);
    let email = clean(request.email.as_deref(), 320);
    if let Some(email) = &email {
        EmailAddress::parse(email).map_err(|e| Refused::field("email", e))?;
    }
    let config = &allowed.config;
    let chat = Chat {
        handle: visitor::handle(&visitor_id, user.as_ref()),
        email: user.as_ref().and_then(|u| u.email.clone()),
        name: user.as_ref().and_then(|u| u.name.clone()).or(name),
        left_email: email,
    };
    let answer = json!({
        "visitor_token": visitor_token,
        "chat_token": visitor::seal(secret, channel, &chat),
        "identity": identity,
        "settings": {
            "greeting": config.greeting,
            "away_text": config.away_text,
            "accent_color": config.accent_color,
            "name_field": config.name_field,
            "email_field": config.email_field,
            "uploads": config.uploads,
            "max_upload_bytes": config.max_upload_bytes,
            "upload_types": UPLOAD_TYPES,
            "max_text_chars": MAX_TEXT_CHARS,
        },
    });
    Ok((answer, chat))
}
