//! Latency statistics of a run: exact nearest-rank quantiles, and the machine's load.

use std::time::Duration;

use super::load::{RunResult, Sample};
use crate::ms;

#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub(crate) ops: usize,
    pub(crate) errors: usize,
    pub(crate) rate: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) peak_in_flight: usize,
    pub(crate) first_error: Option<String>,
}

impl Stats {
    /// Over the successful operations (of one kind, or all); errors are counted apart.
    pub(crate) fn of(run: &RunResult, kind: Option<&str>) -> Stats {
        let chosen: Vec<&Sample> = run
            .samples
            .iter()
            .filter(|s| {
                kind.is_none_or(|k| {
                    s.kind == k || s.kind.strip_prefix(k).is_some_and(|r| r.starts_with(':'))
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = chosen
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| s.latency)
            .collect();
        latencies.sort_unstable();
        let errors = chosen.len() - latencies.len();
        Stats {
            ops: chosen.len(),
            errors,
            rate: chosen.len() as f64 / run.elapsed.as_secs_f64(),
            p50: ms(quantile(&latencies, 0.50)),
            p90: ms(quantile(&latencies, 0.90)),
            p99: ms(quantile(&latencies, 0.99)),
            max: ms(quantile(&latencies, 1.0)),
            peak_in_flight: run.peak_in_flight,
            first_error: chosen.iter().find_map(|s| s.error.clone()),
        }
    }

    /// The p99 is within the target and nothing failed.
    pub(crate) fn met(&self, target_ms: f64) -> bool {
        self.errors == 0 && self.ops > 0 && self.p99 <= target_ms
    }

    pub(crate) fn print(&self, label: &str, target: Option<f64>) {
        let verdict = match target {
            None => String::new(),
            Some(t) if self.met(t) => format!("p99 ≤ {t} ms: met"),
            Some(t) => format!("p99 ≤ {t} ms: MISSED"),
        };
        println!(
            "  {:<34} {:>7} {:>6} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>5}  {verdict}",
            label,
            self.ops,
            self.errors,
            self.rate,
            self.p50,
            self.p90,
            self.p99,
            self.max,
            self.peak_in_flight
        );
    }
}

/// The `q` quantile of sorted durations (nearest rank); zero when there are none.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The 1-minute load average (Linux): other work on the machine shows in the latencies.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `20s`, `500ms`, `2m` or a number of seconds.
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let bad = || format!("`{raw}` is not a duration like 20s, 500ms or 2m");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
