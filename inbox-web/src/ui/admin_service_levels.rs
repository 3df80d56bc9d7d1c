//! The service levels page for admins: the default business hours and each channel's own, SLA
//! policies and each channel's CSAT survey setting — the same checks and stores as their API routes
//! (`http::business_hours`, `http::sla`, `http::csat`), as forms.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use inbox_core::business_hours::ScheduleConfig;
use inbox_core::ids::ChannelId;

use super::view::Layout;
use super::{AdminViewer, UiError, UiResult, Viewer, refused, render};
use crate::http::business_hours::{ScheduleChangeBody, add_change};
use crate::http::csat::{self, CsatBody};
use crate::http::sla::{self, NewPolicyBody};
use crate::http::{ApiError, WebState};

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// One weekday's opening spans as the form shows them.
#[derive(Debug)]
pub struct DayView {
    pub name: &'static str,
    pub spans: String,
}

#[derive(Debug)]
pub struct PolicyView {
    pub id: String,
    pub name: String,
    pub applies_to: String,
    pub targets: String,
    pub hours: &'static str,
}

#[derive(Debug)]
pub struct CsatView {
    pub channel_id: String,
    pub channel: String,
    pub enabled: bool,
    pub expiry_hours: i64,
}

#[derive(Debug)]
pub struct ChannelChoice {
    pub id: String,
    pub name: String,
}

/// Whose business hours the page's schedule form shows: `?channel=` names a channel.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ScheduleOf {
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_service_levels.html")]
pub struct ServiceLevelsPage {
    pub layout: Layout,
    /// The channel whose own schedule the form edits (`None`: the default).
    pub schedule_channel: Option<ChannelChoice>,
    /// A schedule of its own is in force (the default's: none means calendar time; a
    /// channel's: none means it follows the default).
    pub has_schedule: bool,
    pub time_zone: String,
    pub days: Vec<DayView>,
    pub holidays: String,
    pub policies: Vec<PolicyView>,
    pub csat: Vec<CsatView>,
    pub channels: Vec<ChannelChoice>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// `90` minutes → `1 h 30 min`.
fn minutes(seconds: i64) -> String {
    let m = seconds / 60;
    match (m / 60, m % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// The schedule in force now among a channel's (or the default's) changes.
async fn schedule_now(
    state: &WebState,
    channel: Option<ChannelId>,
) -> Result<Option<ScheduleConfig>, UiError> {
    let now = chrono::Utc::now();
    Ok(state
        .store
        .schedule_entries(channel)
        .await?
        .into_iter()
        .rev()
        .find(|e| e.effective_at <= now)
        .and_then(|e| e.schedule))
}

async fn page(
    state: &WebState,
    viewer: &Viewer,
    schedule_of: Option<ChannelId>,
    notice: Option<String>,
    error: Option<String>,
) -> UiResult {
    let channels: Vec<_> = state
        .store
        .channels()
        .await?
        .into_iter()
        .filter(|c| c.deleted_at.is_none())
        .collect();
    let names: HashMap<ChannelId, String> =
        channels.iter().map(|c| (c.id, c.name.clone())).collect();
    let schedule_channel = match schedule_of {
        Some(id) => Some(ChannelChoice {
            id: id.to_string(),
            name: names
                .get(&id)
                .cloned()
                .ok_or(UiError::NotFound("channel"))?,
        }),
        None => None,
    };
    let schedule = schedule_now(state, schedule_of).await?;
    // A channel that follows the default starts its form from the default.
    let shown = match (&schedule, schedule_of) {
        (Some(own), _) => own.clone(),
        (None, Some(_)) => schedule_now(state, None).await?.unwrap_or_default(),
        (None, None) => ScheduleConfig::default(),
    };
    let spans = [
        &shown.monday,
        &shown.tuesday,
        &shown.wednesday,
        &shown.thursday,
        &shown.friday,
        &shown.saturday,
        &shown.sunday,
    ];
    let policies = state
        .store
        .sla_policies()
        .await?
        .into_iter()
        .map(|p| {
            let channel = p
                .channel_id
                .map(|c| names.get(&c).cloned().unwrap_or_else(|| c.to_string()));
            let applies_to = match (channel, &p.label) {
                (Some(c), Some(l)) => format!("{c}, label {l}"),
                (Some(c), None) => c,
                (None, Some(l)) => format!("label {l}"),
                (None, None) => "every conversation".to_owned(),
            };
            let targets = [
                ("first reply", p.first_reply_s),
                ("next reply", p.next_reply_s),
                ("resolution", p.resolution_s),
            ]
            .into_iter()
            .filter_map(|(what, s)| s.map(|s| format!("{what} within {}", minutes(s))))
            .collect::<Vec<_>>()
            .join(", ");
            PolicyView {
                id: p.id,
                name: p.name,
                applies_to,
                targets,
                hours: if p.business_hours {
                    "business hours"
                } else {
                    "calendar time"
                },
            }
        })
        .collect();
    let mut csat = Vec::with_capacity(channels.len());
    for c in &channels {
        let settings = state.store.csat_settings(c.id).await?;
        csat.push(CsatView {
            channel_id: c.id.to_string(),
            channel: c.name.clone(),
            enabled: settings.enabled,
            expiry_hours: settings.expiry_hours,
        });
    }
    render(&ServiceLevelsPage {
        layout: viewer.layout("Service levels", "service-levels"),
        schedule_channel,
        has_schedule: schedule.is_some(),
        time_zone: shown.time_zone.clone(),
        days: WEEKDAYS
            .iter()
            .zip(spans)
            .map(|(name, spans)| DayView {
                name,
                spans: spans.join(", "),
            })
            .collect(),
        holidays: shown.holidays.join(", "),
        policies,
        csat,
        channels: channels
            .iter()
            .map(|c| ChannelChoice {
                id: c.id.to_string(),
                name: c.name.clone(),
            })
            .collect(),
        notice,
        error,
    })
}

pub async fn service_levels(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Query(of): Query<ScheduleOf>,
) -> UiResult {
    let channel = match of.channel.as_deref().unwrap_or("") {
        "" => None,
        raw => Some(raw.parse().map_err(|_| UiError::NotFound("channel"))?),
    };
    page(&state, &viewer, channel, None, None).await
}

/// The page again with what was wrong (a 400), or the error of our side.
async fn refused_with(
    state: &WebState,
    viewer: &Viewer,
    schedule_of: Option<ChannelId>,
    e: ApiError,
) -> UiResult {
    match e {
        ApiError::Invalid { field, message } => refused(
            page(
                state,
                viewer,
                schedule_of,
                None,
                Some(format!("{field}: {message}")),
            )
            .await,
        ),
        ApiError::Unavailable => Err(UiError::Unavailable),
        _ => Err(UiError::Internal),
    }
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

/// A comma-separated list, blanks dropped.
fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Sets the default business hours, or a channel's own (`channel_id`), from now on;
/// `action=none` removes them (the default: calendar time; a channel: the default again).
pub async fn set_business_hours(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<HashMap<String, String>>,
) -> UiResult {
    let channel: Option<ChannelId> = match field(&form, "channel_id") {
        "" => None,
        raw => {
            let id = raw.parse().map_err(|_| UiError::NotFound("channel"))?;
            if state.store.channel(id).await?.is_none() {
                return Err(UiError::NotFound("channel"));
            }
            Some(id)
        }
    };
    let schedule = (field(&form, "action") != "none").then(|| {
        let day = |name: &str| list(field(&form, name));
        ScheduleConfig {
            time_zone: field(&form, "time_zone").to_owned(),
            monday: day("monday"),
            tuesday: day("tuesday"),
            wednesday: day("wednesday"),
            thursday: day("thursday"),
            friday: day("friday"),
            saturday: day("saturday"),
            sunday: day("sunday"),
            holidays: list(field(&form, "holidays")),
        }
    });
    let change = ScheduleChangeBody {
        schedule,
        effective_at: None,
    };
    if let Err(e) = add_change(&state, channel, viewer.agent.id, change).await {
        return refused_with(&state, &viewer, channel, e).await;
    }
    match channel {
        Some(channel_id) => {
            tracing::info!(%channel_id, agent_id = %viewer.agent.id, "Channel business hours changed.")
        }
        None => tracing::info!(agent_id = %viewer.agent.id, "Default business hours changed."),
    }
    page(
        &state,
        &viewer,
        channel,
        Some("Business hours saved; they apply from now on.".into()),
        None,
    )
    .await
}

/// An optional whole number of minutes from a form field.
fn minutes_field(
    form: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<i64>, ApiError> {
    match field(form, name) {
        "" => Ok(None),
        raw => raw
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(name, "a whole number of minutes")),
    }
}

pub async fn add_policy(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<HashMap<String, String>>,
) -> UiResult {
    let body = (|| {
        let channel_id = match field(&form, "channel_id") {
            "" => None,
            raw => Some(
                raw.parse::<ChannelId>()
                    .map_err(|_| ApiError::invalid("channel_id", "no such channel"))?,
            ),
        };
        Ok::<_, ApiError>(NewPolicyBody {
            name: field(&form, "name").to_owned(),
            channel_id,
            label: Some(field(&form, "label").to_owned()),
            first_reply_minutes: minutes_field(&form, "first_reply_minutes")?,
            next_reply_minutes: minutes_field(&form, "next_reply_minutes")?,
            resolution_minutes: minutes_field(&form, "resolution_minutes")?,
            business_hours: field(&form, "business_hours") != "false",
        })
    })();
    let checked = match body {
        Ok(body) => sla::checked(&state, body).await,
        Err(e) => Err(e),
    };
    let new = match checked {
        Ok(new) => new,
        Err(e) => return refused_with(&state, &viewer, None, e).await,
    };
    let policy = state.store.add_sla_policy(&new).await?;
    tracing::info!(policy_id = %policy.id, agent_id = %viewer.agent.id, "SLA policy added.");
    page(
        &state,
        &viewer,
        None,
        Some(format!(
            "Policy {} added; it applies to each conversation from its next change.",
            policy.name
        )),
        None,
    )
    .await
}

pub async fn delete_policy(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> UiResult {
    if !state.store.delete_sla_policy(&id).await? {
        return Err(UiError::NotFound("SLA policy"));
    }
    tracing::info!(policy_id = %id, agent_id = %viewer.agent.id, "SLA policy removed.");
    Ok(Redirect::to("/admin/service-levels").into_response())
}

pub async fn set_csat(
    State(state): State<WebState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> UiResult {
    let channel: ChannelId = id.parse().map_err(|_| UiError::NotFound("channel"))?;
    if state.store.channel(channel).await?.is_none() {
        return Err(UiError::NotFound("channel"));
    }
    let settings = match field(&form, "expiry_hours") {
        "" => Ok(None),
        raw => raw
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid("expiry_hours", "1 to 720")),
    }
    .and_then(|expiry_hours| {
        csat::checked(CsatBody {
            enabled: field(&form, "enabled") == "true",
            expiry_hours,
        })
    });
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return refused_with(&state, &viewer, None, e).await,
    };
    state.store.set_csat_settings(channel, settings).await?;
    tracing::info!(channel_id = %channel, agent_id = %viewer.agent.id, enabled = settings.enabled, "CSAT setting changed.");
    page(
        &state,
        &viewer,
        None,
        Some("Survey setting saved.".into()),
        None,
    )
    .await
}
