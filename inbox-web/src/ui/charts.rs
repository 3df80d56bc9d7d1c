//! Charts as server-rendered SVG: columns over time and horizontal bars, scaled to their
//! container (a `viewBox` and no fixed width, so they fit a 375 px phone). Every text in them is
//! escaped here; each chart has a title for screen readers, and the page shows its figures as a
//! table too.

use std::fmt::Write;

/// One column or bar: its label, its value, and the text shown for the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub shown: String,
}

/// Escapes text for SVG (XML) content and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn max_of(bars: &[Bar]) -> f64 {
    bars.iter().map(|b| b.value).fold(0.0, f64::max)
}

/// Columns side by side (a trend per day, a histogram): labels under the first, middle and last
/// columns when there are many, every label when few.
pub fn columns(title: &str, bars: &[Bar]) -> String {
    const W: f64 = 400.0;
    const H: f64 = 160.0;
    const BOTTOM: f64 = 24.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    // All zero (answers within the second) still draws its (flat) columns.
    let max = max_of(bars).max(1.0);
    if bars.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="chart-empty">No data in this range</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let slot = W / bars.len() as f64;
    let width = (slot * 0.8).max(1.0);
    let plot = H - BOTTOM - 14.0;
    let labelled =
        |i: usize| bars.len() <= 12 || i == 0 || i == bars.len() - 1 || i == bars.len() / 2;
    for (i, bar) in bars.iter().enumerate() {
        let h = (bar.value / max * plot).max(if bar.value > 0.0 { 1.0 } else { 0.0 });
        let x = i as f64 * slot + (slot - width) / 2.0;
        let y = H - BOTTOM - h;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            escape(&bar.label),
            escape(&bar.shown)
        );
        if labelled(i) {
            // The edge labels stay inside the chart.
            let (anchor, at) = match i {
                0 if bars.len() > 1 => ("start", x),
                i if i + 1 == bars.len() && i > 0 => ("end", x + width),
                _ => ("middle", x + width / 2.0),
            };
            let _ = write!(
                svg,
                r#"<text class="axis" x="{at:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                H - 8.0,
                escape(&bar.label)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="2" y="10">max {}</text></svg>"#,
        escape(
            &bars
                .iter()
                .max_by(|a, b| a.value.total_cmp(&b.value))
                .map(|b| b.shown.clone())
                .unwrap_or_default()
        )
    );
    svg
}

/// Horizontal bars, one per row (per agent, per channel), the label above each bar.
pub fn rows(title: &str, bars: &[Bar]) -> String {
    const W: f64 = 400.0;
    const ROW: f64 = 34.0;
    let h = (bars.len().max(1) as f64) * ROW + 4.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    let max = max_of(bars).max(1.0);
    if bars.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="20" text-anchor="middle" class="chart-empty">No data in this range</text></svg>"#,
            W / 2.0
        );
        return svg;
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = i as f64 * ROW;
        let w = (bar.value / max * (W - 110.0)).max(1.0);
        let _ = write!(
            svg,
            r#"<text class="axis" x="0" y="{:.1}">{}</text><rect class="bar" x="0" y="{:.1}" width="{w:.1}" height="12"><title>{}: {}</title></rect><text class="axis" x="{:.1}" y="{:.1}">{}</text>"#,
            y + 12.0,
            escape(&bar.label),
            y + 16.0,
            escape(&bar.label),
            escape(&bar.shown),
            w + 6.0,
            y + 27.0,
            escape(&bar.shown)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A duration for people: `42 s`, `5 min`, `1 h 05 min`, `2 d 3 h`.
pub fn human(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as i64;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h {:02} min", s / 3_600, (s % 3_600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// Upper bounds (seconds) of the distribution's buckets, with their labels; the last is open.
pub const BUCKETS: [(i64, &str); 8] = [
    (60, "<1m"),
    (300, "1–5m"),
    (900, "5–15m"),
    (3_600, "15–60m"),
    (14_400, "1–4h"),
    (86_400, "4–24h"),
    (259_200, "1–3d"),
    (i64::MAX, ">3d"),
];

/// How many of the (sorted or not) values fall in each bucket.
pub fn distribution(values: &[i64]) -> Vec<Bar> {
    let mut counts = [0_u64; BUCKETS.len()];
    for v in values {
        let i = BUCKETS
            .iter()
            .position(|(upper, _)| v < upper)
            .unwrap_or(BUCKETS.len() - 1);
        counts[i] += 1;
    }
    BUCKETS
        .iter()
        .zip(counts)
        .map(|((_, label), n)| Bar {
            label: (*label).to_owned(),
            value: n as f64,
            shown: n.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            shown: human(value),
        }
    }

    #[test]
    fn charts_escape_their_text_and_scale_to_the_largest_value() {
        let svg = rows("Per agent", &[bar("<script>", 100.0), bar("Bo & Co", 50.0)]);
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("Bo &amp; Co"));
        assert!(svg.contains(r#"width="290.0""#), "{svg}");
        assert!(svg.contains(r#"width="145.0""#), "{svg}");
        let empty = columns("Trend", &[]);
        assert!(empty.contains("No data"), "{empty}");
    }

    #[test]
    fn durations_and_buckets_read_as_people_expect() {
        assert_eq!(human(42.0), "42 s");
        assert_eq!(human(300.0), "5 min");
        assert_eq!(human(3_900.0), "1 h 05 min");
        assert_eq!(human(183_600.0), "2 d 3 h");
        let counts: Vec<f64> = distribution(&[0, 59, 60, 4_000, 1_000_000])
            .iter()
            .map(|b| b.value)
            .collect();
        assert_eq!(counts, [2.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    }
}
