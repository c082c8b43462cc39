//! One workload's chart as inline SVG, drawn on the server: recent demand, the forecast band and median, past
//! forecasts made one lead time ahead, and capacity (served and planned replicas × capacity per replica) on the
//! same demand axis, with replicas on the right axis.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use crate::sre::explain::num;
use crate::sre::views::WorkloadDetail;

const W: f64 = 900.0;
const H: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 48.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 26.0;
/// How much past the chart shows.
const PAST: TimeDelta = TimeDelta::hours(3);

struct Scale {
    t0: DateTime<Utc>,
    t1: DateTime<Utc>,
    ymax: f64,
}

impl Scale {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        let span = (self.t1 - self.t0).num_milliseconds().max(1) as f64;
        LEFT + (W - LEFT - RIGHT) * ((t - self.t0).num_milliseconds() as f64 / span).clamp(0.0, 1.0)
    }

    fn y(&self, v: f64) -> f64 {
        TOP + (H - TOP - BOTTOM) * (1.0 - (v / self.ymax).clamp(0.0, 1.0))
    }
}

/// A "nice" step (1, 2 or 5 × 10^k) giving about `n` intervals over `span`. Shared by every SVG chart the project
/// draws (this page's and the backtest's).
pub(crate) fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// A path through `points`, broken where a point is `None` (a gap is not zero).
fn line(points: impl Iterator<Item = (f64, Option<f64>)>) -> (String, usize) {
    let mut d = String::new();
    let mut pen_down = false;
    let mut n = 0;
    for (x, y) in points {
        match y {
            Some(y) => {
                let _ = write!(d, "{}{x:.1},{y:.1}", if pen_down { "L" } else { "M" });
                pen_down = true;
                n += 1;
            }
            None => pen_down = false,
        }
    }
    (d, n)
}

/// A step path: each value holds until the next time.
fn steps(points: &[(f64, f64)], end_x: f64) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        if i == 0 {
            let _ = write!(d, "M{x:.1},{y:.1}");
        } else {
            let _ = write!(d, "H{x:.1}V{y:.1}");
        }
    }
    if !points.is_empty() {
        let _ = write!(d, "H{end_x:.1}");
    }
    d
}

/// The chart of `d` as an `<svg>` element.
pub fn render(d: &WorkloadDetail) -> String {
    let cap = d.capacity_per_replica;
    let origin = d.forecast.origin;
    let step = TimeDelta::seconds(d.forecast.step_seconds.max(1));
    let t1 = d
        .forecast
        .points
        .last()
        .map_or(origin + TimeDelta::hours(1), |p| p.t + step);
    let first = d.history.first().map_or(origin, |p| p.t);
    let t0 = first.max(origin - PAST);
    let in_range = |t: DateTime<Utc>| t >= t0 && t <= t1;

    let mut ymax: f64 = 0.0;
    for p in d.history.iter().filter(|p| in_range(p.t)) {
        ymax = ymax.max(p.v.unwrap_or(0.0));
    }
    for p in &d.forecast.points {
        ymax = ymax.max(p.upper);
    }
    for s in d.scored.iter().filter(|s| in_range(s.t)) {
        ymax = ymax.max(s.planned);
    }
    for r in d.served.iter().filter(|r| in_range(r.t)).chain(&d.plan) {
        ymax = ymax.max(f64::from(r.replicas) * cap);
    }
    if !(ymax.is_finite() && ymax > 0.0) {
        ymax = 1.0;
    }
    let ystep = nice_step(ymax * 1.08, 5.0);
    let ymax = (ymax * 1.08 / ystep).ceil() * ystep;
    let s = Scale { t0, t1, ymax };

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="demand, forecast and capacity of {}" data-workload="{}">"#,
        d.id, d.id
    );
    // Grid and the demand axis.
    let mut v = 0.0;
    while v <= ymax + ystep * 0.01 {
        let y = s.y(v);
        let _ = write!(
            out,
            r#"<line class="gridline" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 3.5,
            num(v)
        );
        v += ystep;
    }
    let _ = write!(out, r#"<text x="4" y="11">{}</text>"#, crate::sre::web::esc(&d.unit));
    // The replica axis: whole replicas at a readable spacing.
    if cap > 0.0 {
        let rmax = ymax / cap;
        let rstep = nice_step(rmax, 5.0).max(1.0);
        let mut r = 0.0;
        while r <= rmax + 1e-9 {
            let _ = write!(
                out,
                r#"<text class="replica-tick" x="{:.1}" y="{:.1}">{}</text>"#,
                W - RIGHT + 6.0,
                s.y(r * cap) + 3.5,
                num(r)
            );
            r += rstep;
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="12" text-anchor="end">replicas</text>"#,
            W - 4.0
        );
    }
    // Time axis: ticks on round times.
    let span_min = (t1 - t0).num_minutes().max(1);
    let tick = [10, 15, 30, 60, 120, 240, 480]
        .into_iter()
        .find(|m| span_min / m <= 9)
        .unwrap_or(1440);
    let mut t = t0 - TimeDelta::seconds(t0.timestamp() % (tick * 60));
    while t <= t1 {
        if t >= t0 {
            let x = s.x(t);
            let _ = write!(
                out,
                r#"<line class="axis" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{:02}:{:02}</text>"#,
                H - BOTTOM,
                H - BOTTOM + 4.0,
                H - BOTTOM + 16.0,
                t.hour(),
                t.minute()
            );
        }
        t += TimeDelta::minutes(tick);
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/>"#,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );

    // Forecast band, then median.
    let fp = &d.forecast.points;
    if !fp.is_empty() {
        let mut band = String::new();
        for (i, p) in fp.iter().enumerate() {
            let _ = write!(
                band,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                s.x(p.t),
                s.y(p.upper)
            );
        }
        for p in fp.iter().rev() {
            let _ = write!(band, "L{:.1},{:.1}", s.x(p.t), s.y(p.lower));
        }
        band.push('Z');
        let _ = write!(out, r#"<path class="band" d="{band}" data-points="{}"/>"#, fp.len());
        let (median, _) = line(fp.iter().map(|p| (s.x(p.t), Some(s.y(p.median)))));
        let _ = write!(out, r#"<path class="median" d="{median}"/>"#);
    }
    // Past forecasts, made one lead time ahead.
    let (scored, n_scored) = line(
        d.scored
            .iter()
            .filter(|p| in_range(p.t))
            .map(|p| (s.x(p.t), Some(s.y(p.planned)))),
    );
    let _ = write!(out, r#"<path class="scored" d="{scored}" data-points="{n_scored}"/>"#);
    // Demand.
    let half = step / 2;
    let (history, n_history) = line(
        d.history
            .iter()
            .filter(|p| in_range(p.t))
            .map(|p| (s.x(p.t + half), p.v.map(|v| s.y(v)))),
    );
    let _ = write!(
        out,
        r#"<path class="history" d="{history}" data-points="{n_history}"/>"#
    );
    if let Some(p) = d.history.iter().rev().find(|p| p.v.is_some()) {
        let _ = write!(
            out,
            r#"<circle class="latest" cx="{:.1}" cy="{:.1}" r="3.5"><title>{} {}</title></circle>"#,
            s.x(p.t + half),
            s.y(p.v.unwrap_or(0.0)),
            num(p.v.unwrap_or(0.0)),
            d.unit
        );
    }
    // Capacity: served so far, planned ahead.
    if cap > 0.0 {
        let served: Vec<(f64, f64)> = d
            .served
            .iter()
            .filter(|r| in_range(r.t))
            .map(|r| (s.x(r.t), s.y(f64::from(r.replicas) * cap)))
            .collect();
        let end = d.served.last().map_or(s.x(origin), |r| s.x(r.t));
        let _ = write!(
            out,
            r#"<path class="served" d="{}" data-points="{}"/>"#,
            steps(&served, end),
            served.len()
        );
        let plan: Vec<(f64, f64)> = d
            .plan
            .iter()
            .map(|r| (s.x(r.t), s.y(f64::from(r.replicas) * cap)))
            .collect();
        let _ = write!(
            out,
            r#"<path class="plan" d="{}" data-points="{}"/>"#,
            steps(&plan, s.x(t1)),
            plan.len()
        );
    }
    // Now: where the data ends and the forecast begins.
    let x = s.x(origin);
    let _ = write!(
        out,
        r#"<line class="now" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"/><text x="{:.1}" y="{:.1}">now</text>"#,
        H - BOTTOM,
        x + 4.0,
        TOP + 10.0
    );
    out.push_str("</svg>");
    out
}

/// The service-level controller's choice as an inline SVG scatter: each candidate's recent unserved demand against
/// the pods it held (relative to the reactive HPA that meets the SLO at the fewest pods), the forecast quantiles and
/// the reactive targets each joined as a line, the SLO as the line a candidate must stay under (the budget, the SLO
/// corrected by the served record, dashed), the chosen candidate ringed, and what was actually served as a diamond.
/// The unserved axis stops at three times the SLO (or what the served plan or the choice left, if more): candidates
/// past it sit on the top edge, their own numbers in their tooltips. `None` before warm-up.
pub fn frontier(a: &crate::control::service_level::Report) -> Option<String> {
    if !a.warmed_up || a.candidates.is_empty() {
        return None;
    }
    const FW: f64 = 420.0;
    const FH: f64 = 220.0;
    let (left, right, top, bottom) = (56.0, 16.0, 24.0, 34.0);
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let xs: Vec<f64> = a.candidates.iter().map(|c| finite(c.pods_vs_reactive)).collect();
    let ys: Vec<f64> = a
        .candidates
        .iter()
        .map(|c| finite(c.unserved_fraction) * 100.0)
        .collect();
    let served = a
        .served
        .as_ref()
        .map(|s| (finite(s.pods_vs_reactive), finite(s.unserved_fraction) * 100.0));
    let chosen_label = a.chosen_label();
    let labels: Vec<String> = a.candidates.iter().map(|c| c.label()).collect();
    let chosen_y = labels
        .iter()
        .zip(&ys)
        .find(|(l, _)| **l == chosen_label)
        .map(|(_, y)| *y);
    let slo = finite(a.slo_max_unserved) * 100.0;
    let budget = finite(a.unserved_budget) * 100.0;
    let ymax = [
        3.0 * slo,
        budget * 1.2,
        served.map_or(0.0, |s| s.1 * 1.2),
        chosen_y.unwrap_or(0.0) * 1.2,
    ]
    .into_iter()
    .fold(0.0, f64::max);
    let ymax = if ymax > 0.0 {
        ymax
    } else {
        ys.iter().copied().fold(0.0, f64::max).max(1.0)
    };
    let ystep = nice_step(ymax, 4.0);
    let ytop = (ymax / ystep).ceil() * ystep;
    // The pods axis spans the candidates drawn below the top edge, the served plan and the reactive reference (1×).
    let shown = xs.iter().zip(&ys).filter(|(_, &y)| y <= ytop).map(|(x, _)| *x);
    let (xmin, xmax) = shown
        .chain(served.map(|s| s.0))
        .chain([1.0])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let pad = ((xmax - xmin) * 0.08).max(0.02);
    let (xmin, xmax) = (xmin - pad, xmax + pad);
    let x = |v: f64| left + (FW - left - right) * ((v - xmin) / (xmax - xmin)).clamp(0.0, 1.0);
    let y = |v: f64| top + (FH - top - bottom) * (1.0 - (v / ytop).clamp(0.0, 1.0));
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="frontier" viewBox="0 0 {FW} {FH}" role="img" aria-label="service level: recent unserved demand against pods held, per candidate">"#
    );
    let mut v = 0.0;
    while v <= ytop + 1e-9 {
        let _ = write!(
            out,
            r#"<line class="gridline" x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}%</text>"#,
            FW - right,
            left - 6.0,
            y(v) + 4.0,
            num(v),
            y = y(v)
        );
        v += ystep;
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">pods held ÷ the reactive HPA's that meets the SLO</text><text x="{left}" y="14">unserved demand (recent)</text>"#,
        (left + FW - right) / 2.0,
        FH - 6.0
    );
    for (label, at) in [(num(xmin + pad), xmin + pad), (num(xmax - pad), xmax - pad)] {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}×</text>"#,
            x(at),
            FH - bottom + 14.0
        );
    }
    let (sy, by) = (y(slo), y(budget));
    let _ = write!(
        out,
        r#"<line class="slo" x1="{left}" x2="{:.1}" y1="{sy:.1}" y2="{sy:.1}"><title>SLO: {}% unserved</title></line><text class="slo" x="{:.1}" y="{:.1}" text-anchor="end">SLO</text>"#,
        FW - right,
        num(slo),
        FW - right - 2.0,
        sy - 4.0
    );
    if (budget - slo).abs() > 1e-12 {
        let _ = write!(
            out,
            r#"<line class="budget" x1="{left}" x2="{:.1}" y1="{by:.1}" y2="{by:.1}"><title>budget now: {}% unserved (the SLO corrected by what was served)</title></line>"#,
            FW - right,
            num(budget)
        );
    }
    for (class, reactive) in [("levels", false), ("reactive-line", true)] {
        let mut d = String::new();
        for (c, (&px, &py)) in a.candidates.iter().zip(xs.iter().zip(&ys)) {
            if c.quantile.is_none() == reactive {
                let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { "L" }, x(px), y(py));
            }
        }
        let _ = write!(out, r#"<path class="{class}" d="{d}"/>"#);
    }
    for ((c, label), (&px, &py)) in a.candidates.iter().zip(&labels).zip(xs.iter().zip(&ys)) {
        let (cx, cy) = (x(px), y(py));
        let class = match (c.quantile.is_some(), c.qualifies) {
            (false, true) => "cand reactive ok",
            (false, false) => "cand reactive over",
            (true, true) => "cand ok",
            (true, false) => "cand over",
        };
        let _ = write!(
            out,
            r#"<circle class="{class}" cx="{cx:.1}" cy="{cy:.1}" r="3.5" data-candidate="{label}"><title>{label}: {}% unserved, {}× the pods of the reactive HPA that meets the SLO</title></circle>"#,
            num(py),
            num(px)
        );
        if *label == chosen_label {
            let _ = write!(
                out,
                r#"<circle class="chosen" cx="{cx:.1}" cy="{cy:.1}" r="7.5" data-chosen="{label}"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
                cx + 9.0,
                cy - 8.0
            );
        }
    }
    if let Some((px, py)) = served {
        let (cx, cy) = (x(px), y(py));
        let _ = write!(
            out,
            r#"<rect class="served" x="{:.1}" y="{:.1}" width="8" height="8" transform="rotate(45 {cx:.1} {cy:.1})"><title>served: {}% unserved, {}× the pods of the reactive HPA that meets the SLO</title></rect><text x="{:.1}" y="{:.1}">served</text>"#,
            cx - 4.0,
            cy - 4.0,
            num(py),
            num(px),
            cx + 7.0,
            cy + 14.0
        );
    }
    out.push_str("</svg>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(0.3, 5.0), 0.1);
    }

    #[test]
    fn gaps_break_lines() {
        let (d, n) = line([(0.0, Some(1.0)), (1.0, None), (2.0, Some(2.0)), (3.0, Some(3.0))].into_iter());
        assert_eq!(d, "M0.0,1.0M2.0,2.0L3.0,3.0");
        assert_eq!(n, 3);
    }

    #[test]
    fn the_frontier_waits_for_warm_up_and_never_draws_nan() {
        use crate::control::service_level::{CandidateScore, Report};
        let cand = |q: Option<f64>, u: Option<f64>, unserved: f64, pods: f64| CandidateScore {
            quantile: q,
            utilization: u,
            unserved_fraction: unserved,
            unserved_fraction_total: unserved,
            unserved_fraction_steady: unserved,
            pods_vs_reactive: pods,
            qualifies: unserved <= 0.01,
        };
        let mut r = Report {
            warmed_up: false,
            scored_seconds: 600.0,
            slo_max_unserved: 0.01,
            slo_window_seconds: 7 * 86_400,
            chosen_quantile: None,
            chosen_utilization: None,
            reactive_chosen: false,
            slo_reachable: true,
            unserved_budget: f64::NAN,
            window: None,
            reactive_at_slo: Some(0.7),
            cost_vs_reactive_at_slo: None,
            candidates: vec![
                cand(Some(0.5), None, 0.02, 0.8),
                cand(None, Some(0.7), 0.01, 1.0),
                cand(None, Some(1.0), 0.2, 0.7),
            ],
            served: None,
            kept: None,
        };
        assert_eq!(super::frontier(&r), None);
        r.warmed_up = true;
        r.reactive_chosen = true;
        r.chosen_utilization = Some(0.7);
        r.candidates.insert(1, cand(Some(0.9), None, f64::NAN, f64::INFINITY));
        let svg = super::frontier(&r).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains(r#"data-chosen="reactive@70%""#), "{svg}");
        assert_eq!(svg.matches("<circle class=\"cand").count(), 4);
        assert_eq!(svg.matches("<circle class=\"cand reactive").count(), 2);
        // The 20% candidate is far past three times the SLO: drawn on the top edge, its number in the tooltip.
        assert!(svg.contains("reactive@100%: 20% unserved"), "{svg}");
        assert!(svg.contains("SLO: 1% unserved"), "{svg}");
    }
}
