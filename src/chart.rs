//! `tgp audit --chart spend.svg`: cumulative spend over time, one line per provider, as a
//! self-contained SVG (no fonts or scripts to fetch).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// A bucket length giving about 60 points over the range, in round units.
pub fn bucket_for(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let span = (to - from).num_seconds().max(60);
    [60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400]
        .into_iter()
        .find(|b| span / b <= 60)
        .map_or(Duration::days(7), Duration::seconds)
}

/// The SVG of cumulative spend per provider from per-bucket spend.
pub fn spend_svg(
    series: &BTreeMap<String, BTreeMap<DateTime<Utc>, Decimal>>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    let span = (to - from).num_milliseconds().max(1) as f64;
    let cumulative: Vec<(&String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(provider, buckets)| {
            let mut sum = Decimal::ZERO;
            let mut points = vec![(0.0, 0.0)];
            for (t, spend) in buckets {
                sum += spend;
                let x = ((*t - from).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
                points.push((x, sum.to_f64().unwrap_or(0.0)));
            }
            (provider, points)
        })
        .collect();
    let max = cumulative.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)).fold(0.0, f64::max).max(0.01);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="14">Cumulative spend by provider (USD), {} to {}</text>"#,
        from.format("%Y-%m-%d %H:%M"),
        to.format("%Y-%m-%d %H:%M")
    );
    for i in 0..=4 {
        let value = max * f64::from(i) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(svg, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, LEFT + plot_w);
        let _ = write!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">${value:.2}</text>"#, LEFT - 6.0, y + 4.0);
        let t = from + Duration::milliseconds((span * f64::from(i) / 4.0) as i64);
        let x = LEFT + plot_w * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 20.0,
            t.format("%m-%d %H:%M")
        );
    }
    let _ =
        write!(svg, r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#);
    for (i, (provider, points)) in cumulative.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", LEFT + plot_w * x, TOP + plot_h - plot_h * y / max))
            .collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, path.join(" "));
        let ly = TOP + 20.0 * i as f64 + 10.0;
        let total = points.last().map_or(0.0, |p| p.1);
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{color}"/>"#,
            WIDTH - RIGHT + 12.0,
            ly - 10.0
        );
        let _ = write!(svg, r#"<text x="{:.1}" y="{ly:.1}">{provider} ${total:.2}</text>"#, WIDTH - RIGHT + 30.0);
    }
    svg.push_str("</svg>\n");
    svg
}
