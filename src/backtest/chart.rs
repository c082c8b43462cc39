//! Hand-written SVG charts, per lead time: demand vs ready capacity per policy ([`svg`]), and the reactive
//! frontier with the other policies' scores on it ([`frontier_svg`]).
//!
//! Long replays are bucketed to at most [`MAX_POINTS`] points: each bucket shows the mean of demand and of each
//! policy's ready capacity, and a shaded band spans the bucket's demand minimum to maximum so short spikes stay
//! visible.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

use super::frontier::{Frontier, Position};
use super::report::{PolicyRun, SloResult};
use super::{PolicyName, TICK};
use crate::sre::web::chart::nice_step;
use crate::sre::web::esc;

/// Most points drawn per line.
const MAX_POINTS: usize = 1200;
const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
/// Least room for the legend.
const RIGHT: f64 = 190.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 60.0;

/// Colours of the predictive policy's runs, one per SLO in ascending order (the first is the predictive green).
const PREDICTIVE: [&str; 5] = ["#2ca02c", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f"];

/// Colour and dash of a policy's line; `slo_index` picks the predictive run's colour.
fn colour(p: PolicyName, slo_index: usize) -> (&'static str, &'static str) {
    match p {
        PolicyName::Reactive => ("#1f77b4", ""),
        PolicyName::Reactive70 => ("#ff7f0e", ""),
        PolicyName::Predictive => (PREDICTIVE[slo_index % PREDICTIVE.len()], ""),
        PolicyName::Oracle => ("#9467bd", " stroke-dasharray=\"6 4\""),
        PolicyName::HpaOracle => ("#8c564b", " stroke-dasharray=\"2 3\""),
    }
}

/// Index of each run's SLO among the runs' SLOs (0 for runs without one).
fn slo_indices(runs: &[&PolicyRun]) -> Vec<usize> {
    let mut slos: Vec<f64> = runs.iter().filter_map(|r| r.slo).collect();
    slos.sort_by(f64::total_cmp);
    slos.dedup();
    runs.iter()
        .map(|r| r.slo.and_then(|s| slos.iter().position(|x| *x == s)).unwrap_or(0))
        .collect()
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

/// Renders demand and each run's ready capacity (`ready_pods × capacity`) over time; `several_slos` names the
/// predictive runs by their SLO.
pub(crate) fn svg(trace: &str, lead: &str, capacity: f64, runs: &[&PolicyRun], several_slos: bool) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else { return out };
    let times: Vec<DateTime<Utc>> = first.ticks.iter().map(|r| r.t).collect();
    let n = times.len().max(1);
    let size = n.div_ceil(MAX_POINTS).max(1);
    let demand: Vec<Option<f64>> = first.ticks.iter().map(|r| r.demand).collect();
    let d = bucket(&times, &demand, size);
    let caps: Vec<(String, (&str, &str), Buckets)> = runs
        .iter()
        .zip(slo_indices(runs))
        .map(|(r, i)| {
            // Unscored (gap) ticks are left out, as in the scores.
            let v: Vec<Option<f64>> = r
                .ticks
                .iter()
                .map(|t| t.demand.map(|_| f64::from(t.ready_pods) * capacity))
                .collect();
            (r.name(several_slos), colour(r.policy, i), bucket(&times, &v, size))
        })
        .collect();

    let t0 = times.first().copied().unwrap_or_default();
    let t1 = times.last().copied().unwrap_or_default() + TICK;
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let ymax_data = d
        .max
        .iter()
        .flatten()
        .chain(caps.iter().flat_map(|(_, _, b)| b.max.iter().flatten()))
        .copied()
        .fold(0.0, f64::max);
    let ystep = nice_step(if ymax_data > 0.0 { ymax_data } else { 1.0 }, 5.0);
    let ymax = (ymax_data / ystep).ceil().max(1.0) * ystep;
    // Room for the legend's longest entry (about 6.6 px a character at 12 px).
    let longest = caps
        .iter()
        .map(|(name, _, _)| name.chars().count() + 9)
        .max()
        .unwrap_or(0);
    let right = RIGHT.max(46.0 + 6.6 * longest as f64);
    let plot_w = WIDTH - LEFT - right;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: DateTime<Utc>| LEFT + plot_w * (t - t0).num_milliseconds() as f64 / span;
    let y = |v: f64| TOP + plot_h * (1.0 - v / ymax);

    open_svg(&mut out, (WIDTH, HEIGHT), LEFT, trace, "demand vs ready capacity", lead);
    let bucket_len = TICK * size as i32;
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="40" fill="#555">each point: mean over {} (grey band: demand min–max); capacity = ready pods × {:.4} units/s</text>"##,
        crate::duration::format(bucket_len),
        capacity
    );

    // Y grid and labels.
    y_axis(
        &mut out,
        (LEFT, plot_w),
        (TOP, plot_h),
        (0.0, ymax, ystep),
        &y,
        "units/s",
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
    for (_, (c, dash), b) in &caps {
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
    for (name, (c, dash), _) in &caps {
        ly += 22.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{} capacity</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Size of the frontier chart.
const FW: f64 = 1000.0;
const FH: f64 = 600.0;
const F_LEFT: f64 = 80.0;
const F_RIGHT: f64 = 250.0;
const F_TOP: f64 = 72.0;
const F_BOTTOM: f64 = 60.0;
/// Room at the left of the frontier chart's x axis for shares of zero, which a log scale cannot place.
const ZERO_STRIP: f64 = 56.0;

/// Renders the reactive frontier at one lead time: unserved share (log x) against replica-hours, the frontier as a
/// line labelled with its utilizations, each SLO as a vertical line, the predictive run at each SLO (with a dotted
/// line down or up to the best-tuned HPA it is compared with at equal service), reactive-70, the oracle and
/// hpa-oracle.
pub(crate) fn frontier_svg(trace: &str, frontier: &Frontier, runs: &[&PolicyRun], results: &[&SloResult]) -> String {
    let mut out = String::new();
    let lead = &frontier.lead;
    let marked: Vec<(&PolicyRun, usize)> = runs
        .iter()
        .copied()
        .zip(slo_indices(runs))
        .filter(|(r, _)| r.policy != PolicyName::Reactive)
        .collect();
    let several = runs.iter().filter(|r| r.policy == PolicyName::Predictive).count() > 1;
    let shares: Vec<f64> = frontier
        .points
        .iter()
        .map(|p| p.unserved_fraction)
        .chain(marked.iter().map(|(r, _)| r.scores.unserved_fraction))
        .chain(results.iter().map(|r| r.slo))
        .filter(|v| v.is_finite())
        .collect();
    let hours: Vec<f64> = frontier
        .points
        .iter()
        .map(|p| p.replica_hours)
        .chain(marked.iter().map(|(r, _)| r.scores.replica_hours))
        .chain(
            results
                .iter()
                .filter_map(|r| r.assessment.equal_service.as_ref().map(|e| e.replica_hours)),
        )
        .filter(|v| v.is_finite())
        .collect();
    // The x range: the positive shares, a little padded, in log10; shares of zero get a strip of their own at the
    // left, since a log scale cannot place them.
    let (lo, hi) = shares
        .iter()
        .filter(|v| **v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v.log10()), hi.max(v.log10()))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo - 0.15, hi + 0.15)
    } else {
        (-4.0, -1.0)
    };
    let (lo, hi) = if hi - lo < 1.0 {
        let mid = (lo + hi) / 2.0;
        (mid - 0.5, mid + 0.5)
    } else {
        (lo, hi)
    };
    let zeros = shares.iter().any(|v| *v <= 0.0);
    let plot_w = FW - F_LEFT - F_RIGHT;
    let plot_h = FH - F_TOP - F_BOTTOM;
    let axis_x0 = F_LEFT + if zeros { ZERO_STRIP } else { 0.0 };
    let zero_x = F_LEFT + ZERO_STRIP / 2.0;
    let x = |v: f64| {
        if v > 0.0 {
            axis_x0 + (F_LEFT + plot_w - axis_x0) * (v.log10() - lo) / (hi - lo)
        } else {
            zero_x
        }
    };
    let (ymin_data, ymax_data) = hours
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (ymin_data, ymax_data) = if ymin_data.is_finite() {
        (ymin_data, ymax_data)
    } else {
        (0.0, 1.0)
    };
    let span = (ymax_data - ymin_data).max(ymax_data.abs() * 0.02).max(1e-9);
    let ystep = nice_step(span * 1.1, 6.0);
    let ymin = ((ymin_data - span * 0.05) / ystep).floor() * ystep;
    let ymax = ((ymax_data + span * 0.05) / ystep).ceil() * ystep;
    let ymin = ymin.max(0.0);
    let y = |v: f64| F_TOP + plot_h * (1.0 - (v - ymin) / (ymax - ymin));

    open_svg(
        &mut out,
        (FW, FH),
        F_LEFT,
        trace,
        "unserved demand vs replica-hours",
        lead,
    );
    let _ = writeln!(
        out,
        r##"<text x="{F_LEFT}" y="40" fill="#555">line: the reactive HPA at target u·c for each utilization u (the reactive frontier); down and left is better</text>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{F_LEFT}" y="56" fill="#555">dotted: each predictive run to the best-tuned HPA it is compared with (hollow), at the same unserved share where it can be</text>"##
    );

    // Y grid.
    y_axis(
        &mut out,
        (F_LEFT, plot_w),
        (F_TOP, plot_h),
        (ymin, ymax, ystep),
        &y,
        "replica-hours",
    );
    // X grid: 1, 2 and 5 × each power of ten labelled when the range is short, decades only when it is long; the
    // other multiples as minor lines.
    let labelled: &[u32] = if hi - lo <= 2.5 { &[1, 2, 5] } else { &[1] };
    for decade in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for k in 1..10u32 {
            let v = f64::from(k) * 10f64.powi(decade);
            if v.log10() < lo || v.log10() > hi {
                continue;
            }
            let xx = x(v);
            // A label right at the break would run into the strip's "0".
            if labelled.contains(&k) && !(zeros && xx < axis_x0 + 24.0) {
                let _ = writeln!(
                    out,
                    r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{F_TOP}" y2="{:.1}" stroke="#d0d0d0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    F_TOP + plot_h,
                    F_TOP + plot_h + 18.0,
                    share_label(v)
                );
            } else {
                let _ = writeln!(
                    out,
                    r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{F_TOP}" y2="{:.1}" stroke="#f0f0f0"/>"##,
                    F_TOP + plot_h
                );
            }
        }
    }
    if zeros {
        // The strip for zero, set off from the log scale by a break.
        let _ = writeln!(
            out,
            r##"<rect x="{F_LEFT}" y="{F_TOP}" width="{ZERO_STRIP}" height="{plot_h:.1}" fill="#f7f7f7"/><line x1="{axis_x0:.1}" x2="{axis_x0:.1}" y1="{F_TOP}" y2="{:.1}" stroke="#bbb"/><text x="{zero_x:.1}" y="{:.1}" text-anchor="middle">0</text>"##,
            F_TOP + plot_h,
            F_TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">share of demand unserved (log scale)</text>"#,
        F_LEFT + plot_w / 2.0,
        FH - 14.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{F_LEFT}" y="{F_TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
    );

    // Each SLO as a vertical line, in its predictive run's colour.
    for (i, r) in results.iter().enumerate() {
        let xx = x(r.slo);
        let c = PREDICTIVE[i % PREDICTIVE.len()];
        let _ = writeln!(
            out,
            r#"<line x1="{xx:.1}" x2="{xx:.1}" y1="{F_TOP}" y2="{:.1}" stroke="{c}" stroke-dasharray="8 4" stroke-width="1.2"/><text x="{:.1}" y="{:.1}" fill="{c}">SLO {}</text>"#,
            F_TOP + plot_h,
            xx + 4.0,
            F_TOP + 14.0 + 14.0 * i as f64,
            esc(&r.slo_label)
        );
    }

    // The frontier.
    let (fc, _) = colour(PolicyName::Reactive, 0);
    let mut path = String::new();
    for p in &frontier.points {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if path.is_empty() { "M" } else { "L" },
            x(p.unserved_fraction),
            y(p.replica_hours)
        );
    }
    let _ = writeln!(
        out,
        r#"<path d="{}" fill="none" stroke="{fc}" stroke-width="1.6"/>"#,
        path.trim_end()
    );
    for p in &frontier.points {
        let (cx, cy) = (x(p.unserved_fraction), y(p.replica_hours));
        let u = format!("{:.0}%", 100.0 * p.utilization);
        let _ = writeln!(
            out,
            r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{fc}" data-utilization="{}"><title>reactive@{u}: {} unserved, {} replica-hours</title></circle><text x="{:.1}" y="{:.1}" font-size="10" fill="#345">{u}</text>"##,
            p.utilization,
            share_label(p.unserved_fraction),
            format_number(p.replica_hours),
            cx + 4.0,
            cy - 5.0
        );
    }

    // The predictive runs against the best-tuned HPA at the same share.
    for (i, r) in results.iter().enumerate() {
        let Some(e) = &r.assessment.equal_service else { continue };
        let c = PREDICTIVE[i % PREDICTIVE.len()];
        let (px, py) = (x(r.unserved_fraction), y(r.replica_hours));
        let (ex, ey) = (x(e.unserved_fraction), y(e.replica_hours));
        let _ = writeln!(
            out,
            r#"<path d="M{px:.1},{py:.1} L{ex:.1},{ey:.1}" stroke="{c}" stroke-dasharray="2 3" stroke-width="1.4" fill="none"/><circle cx="{ex:.1}" cy="{ey:.1}" r="4" fill="white" stroke="{c}" stroke-width="1.4"><title>best-tuned HPA {}: {} replica-hours</title></circle>"#,
            if e.position == Position::Inside {
                "at the same unserved share"
            } else {
                "at the nearest end of the frontier"
            },
            format_number(e.replica_hours)
        );
    }

    // Markers: reactive-70, oracle, hpa-oracle, then the predictive runs on top.
    let mut legend: Vec<(String, String)> = vec![(
        format!(
            r#"<line x1="0" x2="24" y1="0" y2="0" stroke="{fc}" stroke-width="2"/><circle cx="12" cy="0" r="3" fill="{fc}"/>"#
        ),
        "reactive frontier (u labelled)".to_owned(),
    )];
    let mut order: Vec<&(&PolicyRun, usize)> = marked
        .iter()
        .filter(|(r, _)| r.policy != PolicyName::Predictive)
        .collect();
    order.extend(marked.iter().filter(|(r, _)| r.policy == PolicyName::Predictive));
    for (r, i) in order {
        let (c, _) = colour(r.policy, *i);
        let (mut cx, cy) = (x(r.scores.unserved_fraction), y(r.scores.replica_hours));
        if r.scores.unserved_fraction <= 0.0 {
            // Side by side in the strip for zero, where they would hide each other.
            cx += match r.policy {
                PolicyName::Reactive70 => -18.0,
                PolicyName::Oracle => -8.0,
                PolicyName::HpaOracle => 8.0,
                _ => 0.0,
            };
        }
        let name = r.name(true);
        let marker = |cx: f64, cy: f64| match r.policy {
            PolicyName::Reactive70 => format!(
                r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}" stroke="white"/>"#,
                cx - 5.0,
                cy - 5.0
            ),
            PolicyName::Oracle | PolicyName::HpaOracle => format!(
                r#"<path d="M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="{c}" stroke="white"/>"#,
                cx,
                cy - 7.0,
                cx - 6.0,
                cy + 5.0,
                cx + 6.0,
                cy + 5.0
            ),
            _ => format!(r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="6" fill="{c}" stroke="white" stroke-width="1.5"/>"#),
        };
        let _ = writeln!(
            out,
            r#"<g data-policy="{}"{}>{}<title>{}: {} unserved, {} replica-hours</title></g>"#,
            r.policy,
            r.slo
                .map_or(String::new(), |v| format!(r#" data-slo="{}""#, super::slo_label(v))),
            marker(cx, cy),
            esc(&name),
            share_label(r.scores.unserved_fraction),
            format_number(r.scores.replica_hours)
        );
        if r.policy == PolicyName::Predictive {
            let _ = writeln!(
                out,
                // Below and to the left: predictive points tend to sit under the frontier, where there is room.
                r#"<text x="{:.1}" y="{:.1}" fill="{c}" font-weight="bold" text-anchor="end">{}</text>"#,
                cx - 9.0,
                cy + 16.0 + 15.0 * *i as f64,
                if several {
                    esc(&format!("SLO {}", super::slo_label(r.slo.unwrap_or(0.0))))
                } else {
                    "predictive".into()
                }
            );
        }
        legend.push((marker(12.0, 0.0), name));
    }
    let lx = F_LEFT + plot_w + 16.0;
    for (k, (marker, name)) in legend.iter().enumerate() {
        let ly = F_TOP + 10.0 + 24.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<g transform="translate({lx:.1} {ly:.1})">{marker}<text x="30" y="4">{}</text></g>"#,
            esc(name)
        );
    }
    let ly = F_TOP + 10.0 + 24.0 * legend.len() as f64;
    let _ = writeln!(
        out,
        r##"<g transform="translate({lx:.1} {ly:.1})"><line x1="0" x2="24" y1="0" y2="0" stroke="#2ca02c" stroke-dasharray="8 4"/><text x="30" y="4">SLO (allowed unserved share)</text></g>"##
    );
    out.push_str("</svg>\n");
    out
}

/// A share as a percentage, `0.1%`.
fn share_label(v: f64) -> String {
    if v <= 0.0 {
        "0".into()
    } else {
        crate::control::policy::ServiceLevel::format_share(v)
    }
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

/// The opening of a chart: the `<svg>` element, a white background and the title `<trace> — <what>, cold start L =
/// <lead>` at `left`.
fn open_svg(out: &mut String, (width, height): (f64, f64), left: f64, trace: &str, what: &str, lead: &str) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="22" font-size="16" font-weight="bold">{} — {what}, cold start L = {}</text>"#,
        esc(trace),
        esc(lead)
    );
}
/// Horizontal grid lines with their labels every `step` from `from` to `to` (`y` maps a value to its pixel row), and
/// the axis title turned up the left edge: the plot spans `left..left + width` and `top..top + height`.
fn y_axis(
    out: &mut String,
    (left, width): (f64, f64),
    (top, height): (f64, f64),
    (from, to, step): (f64, f64, f64),
    y: &dyn Fn(f64) -> f64,
    title: &str,
) {
    let mut v = from;
    while v <= to + step * 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + width,
            left - 6.0,
            yy + 4.0,
            format_number(v)
        );
        v += step;
    }
    let mid = top + height / 2.0;
    let _ = writeln!(
        out,
        r#"<text x="18" y="{mid:.1}" transform="rotate(-90 18 {mid:.1})" text-anchor="middle">{title}</text>"#
    );
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
                served_by: None,
            })
            .collect();
        let scores = super::super::report::score(&ticks, 1.0, 3);
        let _: &Scores = &scores;
        let run = PolicyRun {
            policy: PolicyName::Oracle,
            slo: None,
            lead_seconds: 300,
            lead: "5m".into(),
            scores,
            ticks,
        };
        let svg = svg("t<1>", "5m", 1.0, &[&run], false);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t&lt;1&gt;"));
        assert!(svg.contains("oracle capacity") && svg.contains("time (UTC)") && svg.contains("units/s"));
        let points = svg.matches(" L").count();
        assert!(points < 4 * MAX_POINTS, "{points} points");
    }

    fn run(policy: PolicyName, slo: Option<f64>, unserved: f64, hours: f64) -> PolicyRun {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let ticks: Vec<TickRow> = (0..4)
            .map(|k| TickRow {
                t: t0 + TICK * k,
                demand: Some(1.0),
                served_value: None,
                desired_replicas: 1,
                ready_pods: 1,
                starting_pods: 0,
                served_by: None,
            })
            .collect();
        let mut scores = super::super::report::score(&ticks, 1.0, 1);
        scores.unserved_fraction = unserved;
        scores.replica_hours = hours;
        PolicyRun {
            policy,
            slo,
            lead_seconds: 300,
            lead: "5m".into(),
            scores,
            ticks,
        }
    }

    #[test]
    fn the_frontier_chart_marks_every_target_policy_and_slo_and_places_zeros_apart() {
        use crate::backtest::frontier::{assess, FrontierPoint, Point, UTILIZATIONS};
        // A frontier from 0 (u = 35%) to 5% unserved, falling from 400 to 140 replica-hours.
        let points: Vec<FrontierPoint> = UTILIZATIONS
            .iter()
            .enumerate()
            .map(|(i, &u)| FrontierPoint {
                utilization: u,
                target_milli: (u * 1000.0) as i64,
                unserved_fraction: if i == 0 { 0.0 } else { 0.05 * (i as f64 / 13.0).powi(3) },
                replica_hours: 400.0 - 20.0 * i as f64,
                violation_minutes_per_day: 0.0,
                scale_events: 0,
            })
            .collect();
        let frontier = Frontier {
            lead_seconds: 300,
            lead: "5m".into(),
            points,
        };
        let runs = [
            run(PolicyName::Reactive, None, 0.05, 140.0),
            run(
                PolicyName::Reactive70,
                None,
                frontier.points[7].unserved_fraction,
                260.0,
            ),
            run(PolicyName::Predictive, Some(0.001), 0.0012, 250.0),
            run(PolicyName::Predictive, Some(0.01), 0.011, 200.0),
            run(PolicyName::Oracle, None, 0.0, 120.0),
            run(PolicyName::HpaOracle, None, 0.0, 125.0),
        ];
        let results: Vec<SloResult> = runs
            .iter()
            .filter(|r| r.policy == PolicyName::Predictive)
            .map(|r| {
                let slo = r.slo.unwrap();
                let p = Point {
                    unserved_fraction: r.scores.unserved_fraction,
                    replica_hours: r.scores.replica_hours,
                };
                SloResult {
                    slo,
                    slo_label: crate::backtest::slo_label(slo),
                    lead_seconds: 300,
                    lead: "5m".into(),
                    unserved_fraction: p.unserved_fraction,
                    replica_hours: p.replica_hours,
                    reactive70: None,
                    oracle_replica_hours: Some(120.0),
                    hpa_oracle_replica_hours: Some(125.0),
                    assessment: assess(slo, p, &frontier.points, None, Some(120.0), Some(125.0)),
                    served_by: Default::default(),
                }
            })
            .collect();
        let runs: Vec<&PolicyRun> = runs.iter().collect();
        let results: Vec<&SloResult> = results.iter().collect();
        let svg = frontier_svg("t<1>", &frontier, &runs, &results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("t&lt;1&gt;") && !svg.contains("NaN") && !svg.contains("inf"),
            "{svg}"
        );
        assert_eq!(svg.matches("data-utilization=").count(), 14);
        assert!(svg.contains(">SLO 0.1%</text>") && svg.contains(">SLO 1%</text>"));
        for marked in [
            r#"data-policy="reactive-70""#,
            r#"data-policy="oracle""#,
            r#"data-policy="hpa-oracle""#,
            r#"data-policy="predictive" data-slo="0.1%""#,
            r#"data-policy="predictive" data-slo="1%""#,
        ] {
            assert_eq!(svg.matches(marked).count(), 1, "{marked}");
        }
        assert!(
            !svg.contains(r#"data-policy="reactive""#),
            "reactive is the frontier's 100% point"
        );
        // Shares of zero have their own strip, labelled 0, and the oracles are drawn side by side in it.
        assert!(svg.contains(">0</text>"));
        let x_of = |policy: &str| -> f64 {
            let g = &svg[svg.find(&format!(r#"data-policy="{policy}""#)).unwrap()..];
            let at = g.find("M").unwrap() + 1;
            g[at..].split(',').next().unwrap().parse().unwrap()
        };
        assert!((x_of("hpa-oracle") - x_of("oracle") - 16.0).abs() < 0.2, "{svg}");
        assert!(x_of("hpa-oracle") < F_LEFT + ZERO_STRIP);
        // Each predictive run is joined to the HPA it is compared with.
        assert_eq!(svg.matches("<title>best-tuned HPA").count(), 2);
    }
}
