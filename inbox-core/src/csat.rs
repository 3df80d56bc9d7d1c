//! Customer satisfaction (docs/metrics.md, "CSAT"): when a conversation on a channel with CSAT on
//! is resolved, the customer gets a link on that channel to a public page (`/survey/{token}`)
//! where they rate it 1–5 and may comment, once, until the link expires. The answer is a log row
//! of the conversation and counts in reports.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Utc};
use rand::RngCore;
use serde::Serialize;
use utoipa::ToSchema;

use crate::actions::outbound_of;
use crate::envelope::{Body, DeliveryStatus};
use crate::ids::{AgentId, MessageId};
use crate::model::{Actor, Channel, Direction, EventKind, ThreadReason, from_millis, to_millis};
use crate::reports::{GroupBy, Range};
use crate::store::{
    ConversationState, NewEvent, NewMessage, NewSurvey, Store, StoreError, StoreResult, StoreTx,
};

/// The longest comment kept.
pub const MAX_COMMENT: usize = 2_000;

/// Where survey links point: the product's public base URL.
#[derive(Debug, Clone, Copy)]
pub struct SurveyLinks<'a> {
    pub base_url: &'a str,
}

/// The text of the survey message.
fn invitation(link: &str) -> String {
    format!(
        "Thanks for contacting us! How did we do? Rate this conversation (1 to 5, one click): \
         {link}"
    )
}

/// A new unguessable link token (256 random bits, URL-safe).
fn new_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// In the resolving transaction: when the channel has CSAT on, stores a survey and queues its
/// link to the customer on the conversation's channel (an automated message: never a reply in
/// the metrics). Gives the log rows to write with the resolution.
pub(crate) async fn ask(
    tx: &mut StoreTx,
    conversation: &mut ConversationState,
    channel: &Channel,
    credited: Option<AgentId>,
    links: SurveyLinks<'_>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<NewEvent>> {
    let settings = tx.csat_settings(channel.id).await?;
    if !settings.enabled {
        return Ok(Vec::new());
    }
    let token = new_token();
    tx.insert_survey(&NewSurvey {
        id: uuid::Uuid::now_v7().to_string(),
        token: &token,
        conversation_id: conversation.id,
        channel_id: channel.id,
        agent_id: credited,
        created_at: now,
        expires_at: now + Duration::hours(settings.expiry_hours),
    })
    .await?;
    let text = invitation(&format!(
        "{}/survey/{token}",
        links.base_url.trim_end_matches('/')
    ));
    let at = to_millis(now);
    let id = MessageId::new();
    let in_reply_to = tx
        .last_inbound(conversation.id)
        .await?
        .and_then(|(m, _, _)| m);
    tx.insert_messages(&[NewMessage {
        id,
        conversation_id: conversation.id,
        channel_id: channel.id,
        external_id: None,
        direction: Direction::Outbound,
        contact_id: None,
        agent_id: None,
        sender_handle: None,
        sender_name: None,
        text: text.clone(),
        html: None,
        subject: conversation.subject.clone(),
        in_reply_to: None,
        attachments: "[]".into(),
        raw_ref: None,
        thread_reason: ThreadReason::Agent,
        sent_at: at,
        claimed_sent_at: None,
        received_at: at,
        delivery_status: Some(DeliveryStatus::Queued),
        part_of: None,
    }])
    .await?;
    let body = Body { text, html: None };
    tx.insert_outbox(&outbound_of(
        conversation,
        channel,
        id,
        in_reply_to,
        body,
        &[],
        None,
        now,
    ))
    .await?;
    conversation.message_count += 1;
    conversation.last_message_at = conversation.last_message_at.max(at);
    Ok(vec![NewEvent {
        conversation_id: conversation.id,
        kind: EventKind::Replied,
        actor: Actor::System,
        contact_id: Some(conversation.contact_id),
        message_id: Some(id),
        data: serde_json::json!({"survey": true}),
        at,
    }])
}

/// Why an answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("this survey link is not known")]
    NotFound,
    #[error("this survey has expired")]
    Expired,
    #[error("this survey was answered already; thank you")]
    Answered,
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Takes a customer's answer: once per survey, before it expires.
pub async fn answer(
    store: &Store,
    token: &str,
    rating: i64,
    comment: &str,
) -> Result<(), AnswerError> {
    if !(1..=5).contains(&rating) {
        return Err(AnswerError::Invalid {
            field: "rating",
            message: "1 to 5".into(),
        });
    }
    let comment = comment.trim();
    if comment.chars().count() > MAX_COMMENT || comment.contains('\0') {
        return Err(AnswerError::Invalid {
            field: "comment",
            message: format!("at most {MAX_COMMENT} characters"),
        });
    }
    let survey = store
        .survey_by_token(token)
        .await?
        .ok_or(AnswerError::NotFound)?;
    if survey.answered_at.is_some() {
        return Err(AnswerError::Answered);
    }
    let now = Utc::now();
    if survey.expires_at <= now {
        return Err(AnswerError::Expired);
    }
    let mut tx = store.begin().await?;
    let conversation = tx
        .conversations_by_ids(&[survey.conversation_id])
        .await?
        .pop()
        .ok_or(StoreError::NotFound("conversation"))?;
    let comment = (!comment.is_empty()).then_some(comment);
    if !tx.answer_survey(&survey.id, rating, comment, now).await? {
        return Err(AnswerError::Answered);
    }
    tx.insert_events(&[NewEvent {
        conversation_id: conversation.id,
        kind: EventKind::CsatAnswered,
        actor: Actor::Contact(conversation.contact_id),
        contact_id: Some(conversation.contact_id),
        message_id: None,
        data: serde_json::json!({"rating": rating, "comment": comment}),
        at: to_millis(now),
    }])
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One group of a CSAT report. Satisfied: a rating of 4 or 5.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CsatGroup {
    /// A local date, an ISO week, an agent id (`none`) or a channel id.
    pub key: String,
    pub responses: u64,
    pub satisfied: u64,
    /// Satisfied responses in percent.
    pub csat_pct: f64,
    pub mean_rating: f64,
}

/// CSAT per group of the answers given in the range.
pub async fn report(
    store: &Store,
    range: &Range,
    group_by: GroupBy,
    channel: Option<crate::ids::ChannelId>,
) -> StoreResult<Vec<CsatGroup>> {
    let (from, to) = range.instants();
    let mut groups: BTreeMap<String, (u64, u64, i64)> = BTreeMap::new();
    for a in store.csat_answers(from, to, channel).await? {
        let day = from_millis(a.answered_at)
            .with_timezone(&range.tz)
            .date_naive();
        let key = match group_by {
            GroupBy::Day => day.to_string(),
            GroupBy::Week => {
                let week = day.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            GroupBy::Agent => a
                .agent_id
                .map_or_else(|| "none".into(), |id| id.to_string()),
            // Answers are not per label: by channel.
            GroupBy::Channel | GroupBy::Label => a.channel_id.to_string(),
        };
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1 += u64::from(a.rating >= 4);
        g.2 += a.rating;
    }
    Ok(groups
        .into_iter()
        .map(|(key, (responses, satisfied, sum))| CsatGroup {
            key,
            responses,
            satisfied,
            csat_pct: satisfied as f64 * 100.0 / responses as f64,
            mean_rating: sum as f64 / responses as f64,
        })
        .collect())
}
