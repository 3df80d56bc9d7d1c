//! Reports (any signed-in agent): `GET /api/v1/reports/response-times` (a metric's count, mean
//! and exact percentiles per day, week, agent, channel or label, as JSON or CSV) and
//! `GET /api/v1/reports/volume` (conversations opened and resolved per day). Both read the stored
//! samples (docs/metrics.md), never the log.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use chrono_tz::Tz;
use inbox_core::labels::{LABEL_RULE, Label};
use inbox_core::metrics::{Metric, Summary};
use inbox_core::reports::{self, GroupBy, Hours, Range, Report, ReportQuery, VolumeDay};
use inbox_core::store::{Store, StoreResult};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, CurrentAgent, WebState};
use crate::http::route_table::RouteTable;

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .get("/api/v1/reports/response-times", response_times)
        .get("/api/v1/reports/volume", volume)
}

/// The days of a report when none are given: the last 30, today included.
const DEFAULT_DAYS: u64 = 30;

/// A report's parameters as the query string gives them (the API and the reports page).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// `frt`, `nrt`, `resolution` (or `first_resolution`, `requester_wait`, `agent_wait`; a
    /// versioned id such as `frt.v1` too). Default `frt`.
    #[param(pattern = r"^[a-z_]+(\.v1)?$")]
    pub metric: Option<String>,
    /// First day (`YYYY-MM-DD`, local in `tz`); default 29 days before `to`.
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<String>,
    /// Last day, included (`YYYY-MM-DD`); default today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<String>,
    /// `day` (default), `week`, `agent`, `channel` or `label`.
    pub group_by: Option<String>,
    /// `calendar` (default) or `business`.
    pub hours: Option<String>,
    /// IANA time zone for day boundaries (default `UTC`).
    pub tz: Option<String>,
    /// Only this channel's samples.
    #[param(value_type = Option<String>, format = Uuid)]
    pub channel: Option<String>,
    /// Only samples credited to this agent.
    #[param(value_type = Option<String>, format = Uuid)]
    pub agent: Option<String>,
    /// Only conversations with this label.
    pub label: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Treats an empty form field as left out.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_day(v: &str, field: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, "a date as YYYY-MM-DD"))
}

impl ReportParams {
    pub fn tz(&self) -> Result<Tz, ApiError> {
        given(&self.tz).map_or(Ok(Tz::UTC), |tz| {
            tz.parse::<Tz>()
                .map_err(|_| ApiError::invalid("tz", "an IANA time zone, e.g. Europe/Berlin"))
        })
    }

    pub fn range(&self) -> Result<Range, ApiError> {
        let tz = self.tz()?;
        let to = match given(&self.to) {
            Some(v) => parse_day(v, "to")?,
            None => Utc::now().with_timezone(&tz).date_naive(),
        };
        let from = match given(&self.from) {
            Some(v) => parse_day(v, "from")?,
            None => to - Days::new(DEFAULT_DAYS - 1),
        };
        Ok(Range::new(from, to, tz)?)
    }

    pub fn query(&self) -> Result<ReportQuery, ApiError> {
        let metric = match given(&self.metric) {
            None => Metric::FirstReply,
            Some(m) => Metric::parse(m).ok_or_else(|| {
                ApiError::invalid(
                    "metric",
                    "frt, nrt, resolution, first_resolution, requester_wait or agent_wait",
                )
            })?,
        };
        let group_by = match given(&self.group_by) {
            None => GroupBy::Day,
            Some(g) => GroupBy::parse(g).ok_or_else(|| {
                ApiError::invalid("group_by", "day, week, agent, channel or label")
            })?,
        };
        let hours = match given(&self.hours) {
            None => Hours::Calendar,
            Some(h) => {
                Hours::parse(h).ok_or_else(|| ApiError::invalid("hours", "calendar or business"))?
            }
        };
        Ok(ReportQuery {
            metric,
            range: self.range()?,
            group_by,
            hours,
            channel: given(&self.channel)
                .map(|c| {
                    c.parse()
                        .map_err(|_| ApiError::invalid("channel", "a channel id"))
                })
                .transpose()?,
            agent: given(&self.agent)
                .map(|a| {
                    a.parse()
                        .map_err(|_| ApiError::invalid("agent", "an agent id"))
                })
                .transpose()?,
            label: given(&self.label)
                .map(|l| {
                    Label::parse(l)
                        .map(Label::into_string)
                        .ok_or_else(|| ApiError::invalid("label", LABEL_RULE))
                })
                .transpose()?,
        })
    }

    fn csv(&self) -> Result<bool, ApiError> {
        match given(&self.format) {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::invalid("format", "json or csv")),
        }
    }
}

/// The short name a metric is asked for by (`frt` for `frt.v1`).
pub fn short_name(metric: Metric) -> &'static str {
    let id = metric.id();
    id.split_once('.').map_or(id, |(name, _)| name)
}

/// One group of a response-time report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupView {
    /// A local date (`2026-12-01`), an ISO week (`2026-W49`), an agent id (`none`: no agent), a
    /// channel id or a label.
    pub key: String,
    /// The agent's or channel's name, for those groups.
    pub name: Option<String>,
    #[serde(flatten)]
    pub summary: Summary,
    /// Percent of the group's samples with an SLA target that met it (`null`: none had one).
    pub sla_met_pct: Option<f64>,
}

/// A response-time report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResponseTimes {
    /// As asked for: `frt`, `nrt`, `resolution`, …
    pub metric: &'static str,
    /// The versioned definition the figures follow (`frt.v1`; docs/metrics.md).
    pub definition: &'static str,
    /// The definition in words.
    pub description: &'static str,
    /// `calendar` or `business`.
    pub hours: &'static str,
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    pub tz: String,
    pub group_by: GroupBy,
    /// In key order; groups without samples are left out.
    pub groups: Vec<GroupView>,
    /// All samples of the report together (`null` without any).
    pub total: Option<Summary>,
    /// Percent of all samples with an SLA target that met it.
    pub sla_met_pct: Option<f64>,
}

/// Names of agents and channels, for the groups keyed by their ids.
pub async fn group_names(store: &Store) -> StoreResult<HashMap<String, String>> {
    let mut names: HashMap<String, String> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.agent.id.to_string(), a.agent.name))
        .collect();
    names.extend(
        store
            .channels()
            .await?
            .into_iter()
            .map(|c| (c.id.to_string(), c.name)),
    );
    Ok(names)
}

impl ResponseTimes {
    pub fn new(query: &ReportQuery, report: &Report, names: &HashMap<String, String>) -> Self {
        let named = matches!(query.group_by, GroupBy::Agent | GroupBy::Channel);
        ResponseTimes {
            metric: short_name(query.metric),
            definition: query.metric.id(),
            description: query.metric.definition(),
            hours: query.hours.as_str(),
            from: query.range.from,
            to: query.range.to,
            tz: query.range.tz.name().to_owned(),
            group_by: query.group_by,
            groups: report
                .groups
                .iter()
                .map(|g| GroupView {
                    key: g.key.clone(),
                    name: named.then(|| names.get(&g.key).cloned()).flatten(),
                    summary: g.summary,
                    sla_met_pct: g.sla.pct(),
                })
                .collect(),
            total: report.total,
            sla_met_pct: report.total_sla.pct(),
        }
    }

    fn csv(&self) -> String {
        let mut out = String::from("key,name,count,mean_s,p50_s,p90_s,p95_s,sla_met_pct\n");
        for g in &self.groups {
            let s = &g.summary;
            out.push_str(&format!(
                "{},{},{},{:.1},{},{},{},{}\n",
                csv_field(&g.key),
                csv_field(g.name.as_deref().unwrap_or("")),
                s.count,
                s.mean_s,
                s.p50_s,
                s.p90_s,
                s.p95_s,
                g.sla_met_pct.map(|p| format!("{p:.1}")).unwrap_or_default()
            ));
        }
        out
    }
}

/// A CSV text field: quoted, quotes doubled, and a leading `=`, `+`, `-` or `@` defused so a
/// spreadsheet never runs a label as a formula.
fn csv_field(v: &str) -> String {
    let defused = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// Count, mean and exact (nearest-rank) p50/p90/p95 of a response-time metric, in seconds, per
/// group, and the share within SLA target; with `format=csv` the same as CSV
/// (`key,name,count,mean_s,p50_s,p90_s,p95_s,sla_met_pct`).
#[utoipa::path(
    get,
    path = "/api/v1/reports/response-times",
    tag = "reports",
    params(ReportParams),
    responses(
        (status = 200, description = "The report (or its CSV with `format=csv`).", body = ResponseTimes),
        (status = 400, description = "A bad parameter; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn response_times(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Query(params): Query<ReportParams>,
) -> Result<Response, ApiError> {
    let query = params.query()?;
    let csv = params.csv()?;
    let report = reports::response_times(&state.store, &query).await?;
    let body = ResponseTimes::new(&query, &report, &group_names(&state.store).await?);
    if csv {
        let name = format!("{}-{}-{}", body.metric, body.from, body.to);
        return Ok(csv_response(&name, body.csv()));
    }
    Ok(Json(body).into_response())
}

/// Conversations opened and resolved per day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Volume {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    pub tz: String,
    /// Every day of the range, oldest first.
    pub days: Vec<VolumeDay>,
}

/// Conversations opened and resolved per local day (of one channel with `channel=`); with
/// `format=csv` as CSV (`day,opened,resolved`).
#[utoipa::path(
    get,
    path = "/api/v1/reports/volume",
    tag = "reports",
    params(ReportParams),
    responses(
        (status = 200, description = "Opened and resolved per day.", body = Volume),
        (status = 400, description = "A bad parameter; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
    )
)]
pub(crate) async fn volume(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Query(params): Query<ReportParams>,
) -> Result<Response, ApiError> {
    let query = params.query()?;
    let csv = params.csv()?;
    let days = reports::volume(&state.store, &query.range, query.channel).await?;
    if csv {
        let mut out = String::from("day,opened,resolved\n");
        for d in &days {
            out.push_str(&format!("{},{},{}\n", d.day, d.opened, d.resolved));
        }
        let name = format!("volume-{}-{}", query.range.from, query.range.to);
        return Ok(csv_response(&name, out));
    }
    Ok(Json(Volume {
        from: query.range.from,
        to: query.range.to,
        tz: query.range.tz.name().to_owned(),
        days,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("vip"), "\"vip\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }

    #[test]
    fn params_name_the_field_at_fault() {
        let field = |p: ReportParams| match p.query() {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let p = |f: fn(&mut ReportParams)| {
            let mut params = ReportParams::default();
            f(&mut params);
            params
        };
        assert_eq!(field(p(|p| p.metric = Some("speed".into()))), "metric");
        assert_eq!(field(p(|p| p.from = Some("01/12/2026".into()))), "from");
        assert_eq!(field(p(|p| p.tz = Some("Mars/Olympus".into()))), "tz");
        assert_eq!(field(p(|p| p.group_by = Some("team".into()))), "group_by");
        assert_eq!(field(p(|p| p.hours = Some("office".into()))), "hours");
        assert_eq!(field(p(|p| p.channel = Some("x".into()))), "channel");
        // PostgreSQL cannot compare text holding a NUL: refused before the query, like any
        // label that could never have been set.
        assert_eq!(field(p(|p| p.label = Some("a\0b".into()))), "label");
        assert_eq!(
            field(p(|p| {
                p.from = Some("2026-12-02".into());
                p.to = Some("2026-12-01".into());
            })),
            "to"
        );
        let defaults = ReportParams::default()
            .query()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(defaults.metric, Metric::FirstReply);
        assert_eq!((defaults.range.to - defaults.range.from).num_days(), 29);
        assert_eq!(short_name(Metric::Reply), "nrt");
        let labelled = p(|p| p.label = Some(" Billing ".into())).query();
        assert_eq!(
            labelled.ok().and_then(|q| q.label).as_deref(),
            Some("billing")
        );
    }
}
