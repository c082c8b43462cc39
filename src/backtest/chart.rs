//! A hand-written SVG chart of demand vs ready capacity per policy, for one lead time.
//!
//! Long replays are bucketed to at most [`MAX_POINTS`] points: each bucket shows the mean of demand and of each
//! policy's ready capacity, and a shaded band spans the bucket's demand minimum to maximum so short spikes stay
//! visible.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

use super::report::PolicyRun;
use super::{PolicyName, TICK};

/// Most points drawn per line.
const MAX_POINTS: usize = 1200;
const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 60.0;

fn colour(p: PolicyName) -> (&'static str, &'static str) {
    match p {
        PolicyName::Reactive => ("#1f77b4", ""),
        PolicyName::Reactive70 => ("#ff7f0e", ""),
        PolicyName::Predictive => ("#2ca02c", ""),
        PolicyName::Oracle => ("#9467bd", " stroke-dasharray=\"6 4\""),
        PolicyName::HpaOracle => ("#8c564b", " stroke-dasharray=\"2 3\""),
    }
}

/// Bucketed series: per bucket, mean (None when no value), min and max.
struct Buckets {
    start: Vec<DateTime<Utc>>,
    mean: Vec<Option<f64>>,
    min: Vec<Option<f64>>,
    max: Vec<Option<f64>>,
}

fn bucket(times: &[DateTime<Utc>], values: &[Option<f64>], size: usize) -> Buckets {
    let mut b = Buckets {
        start: Vec::new(),
        mean: Vec::new(),
        min: Vec::new(),
        max: Vec::new(),
    };
    for (ts, vs) in times.chunks(size).zip(values.chunks(size)) {
        let present: Vec<f64> = vs.iter().flatten().copied().collect();
        b.start.push(ts[0]);
        if present.is_empty() {
            b.mean.push(None);
            b.min.push(None);
            b.max.push(None);
        } else {
            b.mean.push(Some(present.iter().sum::<f64>() / present.len() as f64));
            b.min.push(present.iter().copied().reduce(f64::min));
            b.max.push(present.iter().copied().reduce(f64::max));
        }
    }
    b
}

fn nice_step(range: f64, target_ticks: f64) -> f64 {
    let raw = (range / target_ticks).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Renders demand and each run's ready capacity (`ready_pods × capacity`) over time.
pub(crate) fn svg(trace: &str, lead: &str, capacity: f64, runs: &[&PolicyRun]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else { return out };
    let times: Vec<DateTime<Utc>> = first.ticks.iter().map(|r| r.t).collect();
    let n = times.len().max(1);
    let size = n.div_ceil(MAX_POINTS).max(1);
    let demand: Vec<Option<f64>> = first.ticks.iter().map(|r| r.demand).collect();
    let d = bucket(&times, &demand, size);
    let caps: Vec<(PolicyName, Buckets)> = runs
        .iter()
        .map(|r| {
            // Unscored (gap) ticks are left out, as in the scores.
            let v: Vec<Option<f64>> = r
                .ticks
                .iter()
                .map(|t| t.demand.map(|_| f64::from(t.ready_pods) * capacity))
                .collect();
            (r.policy, bucket(&times, &v, size))
        })
        .collect();

    let t0 = times.first().copied().unwrap_or_default();
    let t1 = times.last().copied().unwrap_or_default() + TICK;
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let ymax_data = d
        .max
        .iter()
        .flatten()
        .chain(caps.iter().flat_map(|(_, b)| b.max.iter().flatten()))
        .copied()
        .fold(0.0, f64::max);
    let ystep = nice_step(if ymax_data > 0.0 { ymax_data } else { 1.0 }, 5.0);
    let ymax = (ymax_data / ystep).ceil().max(1.0) * ystep;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: DateTime<Utc>| LEFT + plot_w * (t - t0).num_milliseconds() as f64 / span;
    let y = |v: f64| TOP + plot_h * (1.0 - v / ymax);

    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{} — demand vs ready capacity, cold start L = {}</text>"#,
        escape(trace),
        escape(lead)
    );
    let bucket_len = TICK * size as i32;
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="40" fill="#555">each point: mean over {} (grey band: demand min–max); capacity = ready pods × {:.4} units/s</text>"##,
        crate::config::format_duration(bucket_len),
        capacity
    );

    // Y grid and labels.
    let mut v = 0.0;
    while v <= ymax + ystep * 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            format_number(v)
        );
        v += ystep;
    }
    let _ = writeln!(
        out,
        r#"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">units/s</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // X grid: the smallest calendar spacing giving at most 10 labels.
    let spacings = [
        TimeDelta::minutes(5),
        TimeDelta::minutes(10),
        TimeDelta::minutes(30),
        TimeDelta::hours(1),
        TimeDelta::hours(3),
        TimeDelta::hours(6),
        TimeDelta::hours(12),
        TimeDelta::days(1),
        TimeDelta::days(2),
        TimeDelta::days(7),
        TimeDelta::days(14),
        TimeDelta::days(28),
    ];
    let spacing = spacings
        .iter()
        .copied()
        .find(|s| (t1 - t0).num_milliseconds() / s.num_milliseconds() <= 10)
        .unwrap_or(TimeDelta::days(56));
    let fmt = if spacing >= TimeDelta::days(1) {
        "%Y-%m-%d"
    } else {
        "%m-%d %H:%M"
    };
    let mut tick = crate::history::align_down(t0, spacing);
    if tick < t0 {
        tick += spacing;
    }
    while tick <= t1 {
        let xx = x(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}" stroke="#e5e5e5"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            tick.format(fmt)
        );
        tick += spacing;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (UTC)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
    );

    // Demand band and mean line, broken at gaps.
    for (lo, hi) in segments(&d.min).into_iter().zip(segments(&d.max)) {
        let mut path = String::new();
        for &i in &hi {
            let _ = write!(
                path,
                "{}{:.1},{:.1} ",
                if path.is_empty() { "M" } else { "L" },
                x(d.start[i]),
                y(d.max[i].unwrap_or(0.0))
            );
        }
        for &i in lo.iter().rev() {
            let _ = write!(path, "L{:.1},{:.1} ", x(d.start[i]), y(d.min[i].unwrap_or(0.0)));
        }
        let _ = writeln!(out, r##"<path d="{path}Z" fill="#d0d0d0" stroke="none"/>"##);
    }
    for seg in segments(&d.mean) {
        let _ = writeln!(
            out,
            r##"<path d="{}" fill="none" stroke="#333" stroke-width="1.2"/>"##,
            polyline(&seg, &d, &x, &y)
        );
    }
    for (policy, b) in &caps {
        let (c, dash) = colour(*policy);
        for seg in segments(&b.mean) {
            let _ = writeln!(
                out,
                r#"<path d="{}" fill="none" stroke="{c}" stroke-width="1.4"{dash}/>"#,
                polyline(&seg, b, &x, &y)
            );
        }
    }

    // Legend.
    let lx = LEFT + plot_w + 16.0;
    let mut ly = TOP + 10.0;
    let _ = writeln!(
        out,
        r##"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="#333" stroke-width="2"/><text x="{:.1}" y="{:.1}">demand</text>"##,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0
    );
    for (policy, _) in &caps {
        ly += 22.0;
        let (c, dash) = colour(*policy);
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{} capacity</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            policy.as_str()
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Runs of consecutive indices whose value is present.
fn segments(values: &[Option<f64>]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if v.is_some() {
            cur.push(i);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn polyline(seg: &[usize], b: &Buckets, x: &impl Fn(DateTime<Utc>) -> f64, y: &impl Fn(f64) -> f64) -> String {
    let mut path = String::new();
    for &i in seg {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if path.is_empty() { "M" } else { "L" },
            x(b.start[i]),
            y(b.mean[i].unwrap_or(0.0))
        );
    }
    path
}

fn format_number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::report::{Scores, TickRow};

    #[test]
    fn chart_has_axes_legend_and_bounded_points() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let ticks: Vec<TickRow> = (0..10_000)
            .map(|k| TickRow {
                t: t0 + TICK * k,
                demand: (k % 500 != 7).then_some(f64::from(k % 97)),
                served_value: None,
                desired_replicas: 3,
                ready_pods: 3,
                starting_pods: 0,
            })
            .collect();
        let scores = super::super::report::score(&ticks, 1.0, 3);
        let _: &Scores = &scores;
        let run = PolicyRun {
            policy: PolicyName::Oracle,
            lead_seconds: 300,
            lead: "5m".into(),
            scores,
            ticks,
        };
        let svg = svg("t<1>", "5m", 1.0, &[&run]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t&lt;1&gt;"));
        assert!(svg.contains("oracle capacity") && svg.contains("time (UTC)") && svg.contains("units/s"));
        let points = svg.matches(" L").count();
        assert!(points < 4 * MAX_POINTS, "{points} points");
    }
}
