//! `/reports`: response times (by day, agent and channel, with their distribution) and volume,
//! for any range, channel, agent, label and calendar or business hours; each table downloads as
//! CSV from the reports API. Charts are server-rendered SVG ([`super::charts`]).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use inbox_core::metrics::{Metric, Summary};
use inbox_core::reports::{self, Attainment, GroupBy, Report, ReportQuery};

use super::charts::{self, Bar, human};
use super::view::Layout;
use super::{UiResult, Viewer, render};
use crate::http::WebState;
use crate::http::reports::{ReportParams, group_names, short_name};

/// A select's option.
#[derive(Debug)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One row of a table of figures.
#[derive(Debug)]
pub struct FigureRow {
    pub key: String,
    pub count: usize,
    pub mean: String,
    pub p50: String,
    pub p90: String,
    pub p95: String,
    /// Share of the samples with an SLA target that met it ("–" without targets).
    pub sla: String,
}

impl FigureRow {
    fn new(key: String, s: &Summary, sla: &Attainment) -> Self {
        FigureRow {
            sla: sla
                .pct()
                .map_or_else(|| "–".to_owned(), |p| format!("{p:.1} %")),
            key,
            count: s.count,
            mean: human(s.mean_s),
            p50: human(s.p50_s as f64),
            p90: human(s.p90_s as f64),
            p95: human(s.p95_s as f64),
        }
    }
}

/// One grouping of the report: its chart, its table and its CSV.
#[derive(Debug)]
pub struct Section {
    pub title: String,
    pub svg: String,
    pub rows: Vec<FigureRow>,
    pub csv_href: String,
}

#[derive(Debug)]
pub struct VolumeRow {
    pub day: String,
    pub opened: u64,
    pub resolved: u64,
}

/// One row of a CSAT table.
#[derive(Debug)]
pub struct CsatRow {
    pub key: String,
    pub responses: u64,
    pub csat: String,
    pub mean: String,
}

/// CSAT grouped one way.
#[derive(Debug)]
pub struct CsatTable {
    pub title: &'static str,
    pub rows: Vec<CsatRow>,
}

#[derive(Template)]
#[template(path = "reports.html")]
pub struct ReportsPage {
    pub layout: Layout,
    pub error: Option<String>,
    pub metrics: Vec<Choice>,
    pub hours: Vec<Choice>,
    pub channels: Vec<Choice>,
    pub agents: Vec<Choice>,
    pub from: String,
    pub to: String,
    pub tz: String,
    pub label: String,
    pub definition: &'static str,
    pub description: &'static str,
    pub total: Option<FigureRow>,
    pub sections: Vec<Section>,
    pub distribution_svg: String,
    pub volume_svg: String,
    pub volume: Vec<VolumeRow>,
    pub volume_csv_href: String,
    pub csat: Vec<CsatTable>,
}

/// The query string of the API for this report, grouped as asked, as CSV.
fn csv_href(path: &str, params: &ReportParams, group_by: Option<&str>) -> String {
    let pairs: Vec<(&str, &str)> = [
        ("metric", params.metric.as_deref()),
        ("from", params.from.as_deref()),
        ("to", params.to.as_deref()),
        ("hours", params.hours.as_deref()),
        ("tz", params.tz.as_deref()),
        ("channel", params.channel.as_deref()),
        ("agent", params.agent.as_deref()),
        ("label", params.label.as_deref()),
        ("group_by", group_by),
        ("format", Some("csv")),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
    .collect();
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

fn choices(items: Vec<(String, String)>, selected: Option<&str>, any: &str) -> Vec<Choice> {
    std::iter::once((String::new(), any.to_owned()))
        .chain(items)
        .map(|(value, label)| Choice {
            selected: selected.unwrap_or("") == value,
            value,
            label,
        })
        .collect()
}

fn named_section(
    title: &str,
    report: &Report,
    names: &HashMap<String, String>,
    csv_href: String,
) -> Section {
    let name = |key: &str| match key {
        "none" => "(no agent)".to_owned(),
        key => names.get(key).cloned().unwrap_or_else(|| key.to_owned()),
    };
    let mut groups: Vec<_> = report.groups.iter().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.summary.count));
    let bars: Vec<Bar> = groups
        .iter()
        .map(|g| Bar {
            label: format!("{} ({})", name(&g.key), g.summary.count),
            value: g.summary.p50_s as f64,
            shown: format!("p50 {}", human(g.summary.p50_s as f64)),
        })
        .collect();
    Section {
        title: title.to_owned(),
        svg: charts::rows(&format!("{title}: median"), &bars),
        rows: groups
            .iter()
            .map(|g| FigureRow::new(name(&g.key), &g.summary, &g.sla))
            .collect(),
        csv_href,
    }
}

pub async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(params): Query<ReportParams>,
) -> UiResult {
    let (params, error) = match params.query() {
        Ok(_) => (params, None),
        Err(e) => (ReportParams::default(), Some(e.to_string())),
    };
    let query = params
        .query()
        .map_err(|e| super::UiError::Invalid(e.to_string()))?;
    let grouped = |group_by| ReportQuery {
        group_by,
        ..query.clone()
    };
    let store = &state.store;
    let by_day = reports::response_times(store, &grouped(GroupBy::Day)).await?;
    let by_agent = reports::response_times(store, &grouped(GroupBy::Agent)).await?;
    let by_channel = reports::response_times(store, &grouped(GroupBy::Channel)).await?;
    let volume = reports::volume(store, &query.range, query.channel).await?;
    let names = group_names(store).await?;
    let mut csat = Vec::new();
    for (title, group_by) in [
        ("Per week", GroupBy::Week),
        ("Per agent", GroupBy::Agent),
        ("Per channel", GroupBy::Channel),
    ] {
        let groups = inbox_core::csat::report(store, &query.range, group_by, query.channel).await?;
        csat.push(CsatTable {
            title,
            rows: groups
                .into_iter()
                .map(|g| CsatRow {
                    key: match group_by {
                        GroupBy::Agent | GroupBy::Channel => {
                            names.get(&g.key).cloned().unwrap_or(g.key)
                        }
                        _ => g.key,
                    },
                    responses: g.responses,
                    csat: format!("{:.0} %", g.csat_pct),
                    mean: format!("{:.1}", g.mean_rating),
                })
                .collect(),
        });
    }

    let day_medians: HashMap<&str, &Summary> = by_day
        .groups
        .iter()
        .map(|g| (g.key.as_str(), &g.summary))
        .collect();
    // No samples at all: "no data" rather than a flat line.
    let days = by_day.total.map_or(0, |_| query.range.days().count());
    let trend: Vec<Bar> = query
        .range
        .days()
        .take(days)
        .map(|day| {
            let key = day.to_string();
            let p50 = day_medians.get(key.as_str()).map_or(0, |s| s.p50_s);
            Bar {
                label: day.format("%b %-d").to_string(),
                value: p50 as f64,
                shown: human(p50 as f64),
            }
        })
        .collect();
    let trend_section = Section {
        title: "Per day".to_owned(),
        svg: charts::columns("Median per day", &trend),
        rows: by_day
            .groups
            .iter()
            .map(|g| FigureRow::new(g.key.clone(), &g.summary, &g.sla))
            .collect(),
        csv_href: csv_href("/api/v1/reports/response-times", &params, Some("day")),
    };
    let volume_bars: Vec<Bar> = volume
        .iter()
        .map(|d| Bar {
            label: d.day.format("%b %-d").to_string(),
            value: d.opened as f64,
            shown: format!("{} opened", d.opened),
        })
        .collect();

    let mut channels: Vec<(String, String)> = store
        .channels()
        .await?
        .into_iter()
        .map(|c| (c.id.to_string(), c.name))
        .collect();
    channels.sort_by(|a, b| a.1.cmp(&b.1));
    let mut agents: Vec<(String, String)> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.agent.id.to_string(), a.agent.name))
        .collect();
    agents.sort_by(|a, b| a.1.cmp(&b.1));
    render(&ReportsPage {
        layout: viewer.layout("Reports", "reports"),
        error,
        metrics: Metric::ALL
            .into_iter()
            .map(|m| Choice {
                value: short_name(m).to_owned(),
                label: metric_label(m).to_owned(),
                selected: m == query.metric,
            })
            .collect(),
        hours: ["calendar", "business"]
            .into_iter()
            .map(|h| Choice {
                value: h.to_owned(),
                label: format!("{h} hours"),
                selected: query.hours.as_str() == h,
            })
            .collect(),
        channels: choices(channels, params.channel.as_deref(), "All channels"),
        agents: choices(agents, params.agent.as_deref(), "All agents"),
        from: query.range.from.to_string(),
        to: query.range.to.to_string(),
        tz: query.range.tz.name().to_owned(),
        label: query.label.clone().unwrap_or_default(),
        definition: query.metric.id(),
        description: query.metric.definition(),
        total: by_day
            .total
            .as_ref()
            .map(|t| FigureRow::new("All".into(), t, &by_day.total_sla)),
        distribution_svg: charts::columns("Distribution", &charts::distribution(&by_day.values)),
        sections: vec![
            trend_section,
            named_section(
                "Per agent",
                &by_agent,
                &names,
                csv_href("/api/v1/reports/response-times", &params, Some("agent")),
            ),
            named_section(
                "Per channel",
                &by_channel,
                &names,
                csv_href("/api/v1/reports/response-times", &params, Some("channel")),
            ),
        ],
        volume_svg: charts::columns("Conversations opened per day", &volume_bars),
        volume: volume
            .iter()
            .map(|d| VolumeRow {
                day: d.day.to_string(),
                opened: d.opened,
                resolved: d.resolved,
            })
            .collect(),
        volume_csv_href: csv_href("/api/v1/reports/volume", &params, None),
        csat,
    })
}

fn metric_label(m: Metric) -> &'static str {
    match m {
        Metric::FirstReply => "First response time",
        Metric::Reply => "Reply time",
        Metric::Resolution => "Resolution time",
        Metric::FirstResolution => "First resolution time",
        Metric::RequesterWait => "Customer wait time",
        Metric::AgentWait => "Pending time",
    }
}
