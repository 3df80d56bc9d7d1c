//! The channels page for admins: every channel with its health and waiting dead letters, pause /
//! resume / delete, and one "add" form per kind of this build, generated from the kind's config
//! fields. The dead letters page lists what could not be stored, to replay or discard. A new
//! channel's signing secret is shown once, on the page that created it, and never logged.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use chrono::Utc;
use inbox_core::channel_catalog::{FieldInput, KindInfo};
use inbox_core::ids::ChannelId;
use inbox_core::store::{ChannelUpdate, DeadLetterFilter, DeadLetterId};
use serde_json::{Map, Value};

use super::view::{Layout, When};
use super::{AdminViewer, UiError, UiResult, refused, render};
use crate::http::WebState;
use crate::http::channels::{HealthView, create_channel};
use crate::http::dead_letters::run_replay;

/// A channel row of the channels page.
#[derive(Debug)]
pub struct ChannelRowView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub icon: &'static str,
    pub intake_path: String,
    /// The HTML a site embeds (a kind with a widget), else empty.
    pub embed: String,
    pub last_success: Option<When>,
    /// How long ago the last success was, in words (the practical lag of a polling source).
    pub since_success: String,
    pub last_error: String,
    pub last_error_at: Option<When>,
    pub messages: i64,
    pub delivered: i64,
    pub failed: i64,
    pub dead_letters: i64,
    /// ok, failing, idle or paused.
    pub health: &'static str,
    pub paused: bool,
}

/// What was just created, shown once.
#[derive(Debug)]
pub struct CreatedChannel {
    pub name: String,
    pub intake_path: String,
    pub embed: String,
    pub secret: Option<String>,
}

/// One kind's "add" form.
#[derive(Debug)]
pub struct KindForm {
    pub kind: String,
    pub display_name: &'static str,
    pub description: &'static str,
    pub fields: Vec<FieldView>,
}

#[derive(Debug)]
pub struct FieldView {
    /// The form name (`config.<key>`) and the element id.
    pub name: String,
    pub id: String,
    pub label: &'static str,
    pub help: &'static str,
    /// An `<input type>`; `select` for choices and toggles.
    pub input: &'static str,
    pub choices: Vec<&'static str>,
    pub required: bool,
}

#[derive(Template)]
#[template(path = "admin_channels.html")]
pub struct ChannelsPage {
    pub layout: Layout,
    pub channels: Vec<ChannelRowView>,
    pub kinds: Vec<KindForm>,
    pub created: Option<CreatedChannel>,
    pub error: Option<String>,
    /// Dead letters of no known channel (undecodable input).
    pub orphan_dead_letters: i64,
}

fn ago(at: chrono::DateTime<Utc>) -> String {
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn kind_form(info: &KindInfo) -> KindForm {
    let kind = info.kind.to_string();
    KindForm {
        fields: info
            .fields
            .iter()
            .map(|f| {
                let (input, choices) = match f.input {
                    FieldInput::Number => ("number", Vec::new()),
                    FieldInput::Url => ("url", Vec::new()),
                    FieldInput::Email => ("email", Vec::new()),
                    FieldInput::Toggle => ("select", vec!["true", "false"]),
                    FieldInput::Choice(choices) => ("select", choices.to_vec()),
                    FieldInput::Text
                    | FieldInput::SecretEnv
                    | FieldInput::Path
                    | FieldInput::List => ("text", Vec::new()),
                };
                FieldView {
                    name: format!("config.{}", f.name),
                    id: format!("{kind}-{}", f.name),
                    label: f.label,
                    help: f.help,
                    input,
                    choices,
                    required: f.required,
                }
            })
            .collect(),
        display_name: info.display_name,
        description: info.description,
        kind,
    }
}

/// The kind's embed snippet for a channel, with this server's URL.
fn embed_of(info: Option<&KindInfo>, base: &str, channel_id: &str) -> String {
    info.and_then(|k| k.embed_snippet)
        .map(|snippet| {
            snippet
                .replace("{base}", base.trim_end_matches('/'))
                .replace("{channel_id}", channel_id)
        })
        .unwrap_or_default()
}

async fn channels_page(
    state: &WebState,
    viewer: &super::Viewer,
    created: Option<CreatedChannel>,
    error: Option<String>,
) -> UiResult {
    let kinds = state.catalog.kinds();
    let channels = state.store.channels().await?;
    let mut health = state.store.channel_health().await?;
    let mut activity = state.store.channel_activity().await?;
    let mut dead = state.store.open_dead_letter_counts().await?;
    let rows = channels
        .into_iter()
        .filter(|c| c.deleted_at.is_none())
        .map(|c| {
            let h = HealthView::of(
                &c,
                health.remove(&c.id).unwrap_or_default(),
                activity.remove(&c.id),
                dead.remove(&Some(c.id)).unwrap_or(0),
            );
            let info = kinds.iter().find(|k| k.kind == c.kind);
            ChannelRowView {
                id: c.id.to_string(),
                intake_path: info
                    .and_then(|k| k.intake_path)
                    .map(|p| p.replace("{channel_id}", &c.id.to_string()))
                    .unwrap_or_default(),
                icon: info.map(|k| k.icon).unwrap_or("?"),
                embed: embed_of(info, &state.public_url, &c.id.to_string()),
                name: c.name,
                kind: c.kind.to_string(),
                since_success: h.last_success_at.map(ago).unwrap_or_else(|| "never".into()),
                last_success: h.last_success_at.map(When::of),
                last_error: h.last_error.unwrap_or_default(),
                last_error_at: h.last_error_at.map(When::of),
                messages: h.messages,
                delivered: h.delivered,
                failed: h.failed,
                dead_letters: h.dead_letters,
                health: h.status,
                paused: !c.enabled,
            }
        })
        .collect();
    render(&ChannelsPage {
        layout: viewer.layout("Channels", "channels"),
        channels: rows,
        kinds: kinds.iter().map(kind_form).collect(),
        created,
        error,
        orphan_dead_letters: dead.remove(&None).unwrap_or(0),
    })
}

pub async fn channels(State(state): State<WebState>, AdminViewer(viewer): AdminViewer) -> UiResult {
    channels_page(&state, &viewer, None, None).await
}

/// The config JSON of a kind's form: empty fields are left out (the kind's default applies),
/// numbers and toggles typed as the kind declares them.
fn config_of(info: &KindInfo, form: &HashMap<String, String>) -> Result<Value, String> {
    let mut config = Map::new();
    for field in &info.fields {
        let Some(raw) = form
            .get(&format!("config.{}", field.name))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        let value = match field.input {
            FieldInput::Number => raw
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("{}: a whole number.", field.label))?,
            FieldInput::Toggle => Value::Bool(raw == "true"),
            FieldInput::List => Value::Array(
                raw.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|v| !v.is_empty())
                    .map(|v| Value::String(v.to_owned()))
                    .collect(),
            ),
            _ => Value::String(raw.to_owned()),
        };
        config.insert(field.name.to_owned(), value);
    }
    Ok(Value::Object(config))
}

pub async fn add_channel(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<HashMap<String, String>>,
) -> UiResult {
    let kind = form.get("kind").map(String::as_str).unwrap_or_default();
    let Some(info) = state
        .catalog
        .kinds()
        .into_iter()
        .find(|k| k.kind.as_str() == kind)
    else {
        return refused(
            channels_page(&state, &viewer, None, Some("Unknown channel kind.".into())).await,
        );
    };
    let name = form.get("name").map(String::as_str).unwrap_or_default();
    let created = match config_of(&info, &form) {
        Ok(config) => create_channel(&state, kind, name, &config)
            .await
            .map_err(|e| match e {
                crate::http::ApiError::Invalid { field, message } => {
                    let label = field
                        .strip_prefix("config.")
                        .and_then(|f| info.fields.iter().find(|x| x.name == f))
                        .map(|f| f.label.to_owned())
                        .unwrap_or_else(|| field.clone());
                    Ok(format!("{label}: {message}"))
                }
                other => Err(other),
            }),
        Err(message) => Err(Ok(message)),
    };
    match created {
        Ok(created) => {
            tracing::info!(channel_id = %created.channel.id, agent_id = %viewer.agent.id, %kind, "Channel added.");
            let shown = CreatedChannel {
                name: created.channel.name.clone(),
                intake_path: created.channel.intake_path.clone().unwrap_or_default(),
                embed: embed_of(
                    Some(&info),
                    &state.public_url,
                    &created.channel.id.to_string(),
                ),
                secret: created.secret,
            };
            channels_page(&state, &viewer, Some(shown), None).await
        }
        Err(Ok(message)) => refused(channels_page(&state, &viewer, None, Some(message)).await),
        Err(Err(e)) => Err(match e {
            crate::http::ApiError::Unavailable => UiError::Unavailable,
            _ => UiError::Internal,
        }),
    }
}

/// `pause`, `resume` or `delete`.
pub async fn channel_action(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path((id, action)): Path<(String, String)>,
) -> UiResult {
    let id: ChannelId = id.parse().map_err(|_| UiError::NotFound("channel"))?;
    let update = match action.as_str() {
        "pause" => ChannelUpdate {
            enabled: Some(false),
            ..ChannelUpdate::default()
        },
        "resume" => ChannelUpdate {
            enabled: Some(true),
            ..ChannelUpdate::default()
        },
        "delete" => ChannelUpdate {
            deleted: Some(true),
            ..ChannelUpdate::default()
        },
        _ => return Err(UiError::NotFound("action")),
    };
    state
        .store
        .update_channel(id, &update)
        .await?
        .ok_or(UiError::NotFound("channel"))?;
    tracing::info!(channel_id = %id, agent_id = %viewer.agent.id, %action, "Channel changed.");
    Ok(Redirect::to("/admin/channels").into_response())
}

/// A dead letter row.
#[derive(Debug)]
pub struct DeadLetterRowView {
    pub id: String,
    pub at: When,
    pub channel: String,
    pub source: String,
    pub error: String,
    pub payload: String,
    pub replays: i64,
}

#[derive(Template)]
#[template(path = "admin_dead_letters.html")]
pub struct DeadLettersPage {
    pub layout: Layout,
    pub letters: Vec<DeadLetterRowView>,
    pub channel_filter: String,
    pub notice: Option<String>,
}

async fn dead_letters_page(
    state: &WebState,
    viewer: &super::Viewer,
    channel: Option<ChannelId>,
    notice: Option<String>,
) -> UiResult {
    let names: HashMap<ChannelId, String> = state
        .store
        .channels()
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let letters = state
        .store
        .find_dead_letters(&DeadLetterFilter {
            channel,
            limit: 200,
            ..DeadLetterFilter::default()
        })
        .await?
        .into_iter()
        .map(|d| DeadLetterRowView {
            id: d.id.to_string(),
            at: When::of(d.created_at),
            channel: d
                .channel_id
                .map(|c| names.get(&c).cloned().unwrap_or_else(|| c.to_string()))
                .unwrap_or_else(|| "—".into()),
            source: d.source,
            error: d.error,
            payload: d.payload.chars().take(300).collect(),
            replays: d.replays,
        })
        .collect();
    render(&DeadLettersPage {
        layout: viewer.layout("Dead letters", "channels"),
        letters,
        channel_filter: channel.map(|c| c.to_string()).unwrap_or_default(),
        notice,
    })
}

pub async fn dead_letters(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Query(query): Query<HashMap<String, String>>,
) -> UiResult {
    let channel = query
        .get("channel")
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<ChannelId>()
                .map_err(|_| UiError::Invalid("channel: not a channel id".into()))
        })
        .transpose()?;
    dead_letters_page(&state, &viewer, channel, None).await
}

/// `replay` or `discard`.
pub async fn dead_letter_action(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path((id, action)): Path<(String, String)>,
) -> UiResult {
    let id: DeadLetterId = id.parse().map_err(|_| UiError::NotFound("dead letter"))?;
    let notice = match action.as_str() {
        "replay" => match run_replay(&state, id).await {
            Ok(answer) => match answer.error {
                None => format!("Replayed: {}.", answer.outcome),
                Some(error) => format!("Still failing: {error}"),
            },
            Err(crate::http::ApiError::NotFound(_)) => {
                return Err(UiError::NotFound("dead letter"));
            }
            Err(crate::http::ApiError::Conflict(message)) => message,
            Err(crate::http::ApiError::Unavailable) => return Err(UiError::Unavailable),
            Err(_) => return Err(UiError::Internal),
        },
        "discard" => {
            if state.store.discard_dead_letter(id).await? {
                "Discarded.".to_owned()
            } else {
                "Nothing to discard: settled already.".to_owned()
            }
        }
        _ => return Err(UiError::NotFound("action")),
    };
    tracing::info!(dead_letter_id = %id, agent_id = %viewer.agent.id, %action, "Dead letter handled.");
    dead_letters_page(&state, &viewer, None, Some(notice)).await
}
