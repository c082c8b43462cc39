//! The SRE page: one self-contained HTML document (inline CSS and server-drawn SVG; no script, no CDN).
//!
//! Workloads at a glance in a table, then per workload its chart and the explanation of its current target. The
//! page reloads itself every 30 seconds.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::control::engine::Serving;
use crate::control::quality::Health;
use crate::control::service_level::{candidate_label, LEVELS, UTILIZATIONS};
use crate::sre::explain::{age, most_cautious, num, pct, share, VERSION};
use crate::sre::views::{ModelView, SloView, WorkloadDetail, WorkloadView};
use crate::store::ReplayState;

pub mod chart;

const STYLE: &str = include_str!("style.css");

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

fn anchor(id: &crate::store::WorkloadId) -> String {
    format!("w-{}-{}", id.namespace, id.name)
}

fn serving_badge(s: Option<Serving>) -> &'static str {
    match s {
        Some(Serving::Forecast) => r#"<span class="badge forecast">forecast</span>"#,
        Some(Serving::ForecastOnly) => r#"<span class="badge forecast_only">forecast-only</span>"#,
        Some(Serving::Demoted) => r#"<span class="badge demoted">demoted</span>"#,
        Some(Serving::Reactive) => {
            r#"<span class="badge reactive" title="a reactive HPA target, chosen by the SLO controller: no forecast quantile recently met the SLO for fewer pods">reactive</span>"#
        }
        Some(Serving::Warming) => {
            r#"<span class="badge warming" title="the first model is being fitted: the reactive target is served until it is ready">warming</span>"#
        }
        Some(Serving::Restored) => {
            r#"<span class="badge warming" title="restarted: the last plan made before the restart is served (never below what observed demand needs) until the first model is fitted">restored</span>"#
        }
        None => r#"<span class="muted">–</span>"#,
    }
}

/// Badges for an SLO that is missed over its window, or that cannot be met now; empty while all is well.
fn slo_badges(s: &SloView) -> String {
    let mut out = String::new();
    if let (Some(false), Some(u), Some(left)) = (s.met, s.unserved_fraction, s.error_budget_left) {
        let _ = write!(
            out,
            r#" <span class="badge slo-missed" title="{} of demand went unserved over the window, more than the SLO's {}: the error budget is overspent by {}">SLO missed</span>"#,
            share(u),
            share(s.max_unserved),
            pct(Some(-left))
        );
    }
    if !s.reachable {
        let _ = write!(
            out,
            r#" <span class="badge slo-unreachable" title="no candidate (forecast quantile or HPA target) left as little as {} of demand unserved both recently and over the SLO&#39;s window: the SLO cannot be met now; {} is served, the one that left the least over the window of those holding no more pods than {}">SLO unreachable</span>"#,
            share(s.max_unserved),
            esc(s.chosen.as_deref().unwrap_or("–")),
            most_cautious()
        );
    }
    out
}

/// The overview's SLO cell: the share of demand left unserved over the window so far against the SLO, then the
/// window and the error budget left, then the badges.
fn slo_cell(s: Option<&SloView>) -> String {
    let Some(s) = s else {
        return r#"<td class="text slo"><span class="muted">–</span></td>"#.into();
    };
    let realised = s.unserved_fraction.map_or_else(|| "–".into(), share);
    let budget = match s.error_budget_left {
        Some(b) if b < 0.0 => format!(r#"<span class="stale" data-field="slo-budget">{}</span>"#, pct(Some(b))),
        Some(b) => format!(r#"<span data-field="slo-budget">{}</span>"#, pct(Some(b))),
        None => r#"<span data-field="slo-budget">–</span>"#.into(),
    };
    format!(
        r#"<td class="text slo"><b data-field="slo-unserved">{realised}</b> <span class="muted">/ <span data-field="slo-max">{}</span></span><small>{} · {budget} budget left</small>{}</td>"#,
        share(s.max_unserved),
        age(s.window_seconds),
        slo_badges(s)
    )
}

fn opt_num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), num)
}

fn opt_age(v: Option<i64>) -> String {
    v.map_or_else(|| "–".into(), age)
}

/// The whole page.
pub fn page(views: &[WorkloadView], details: &[WorkloadDetail], now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="30"><title>prescale · {} workload(s)</title><style>{STYLE}</style></head><body>"#,
        views.len()
    );
    let _ = write!(
        out,
        r#"<header><h1>prescale</h1><span class="meta">predictive autoscaling · v{VERSION}</span><span class="meta" data-now="{}">as of {} UTC · refreshes every 30 s</span></header><main>"#,
        now.to_rfc3339_opts(SecondsFormat::Secs, true),
        now.format("%Y-%m-%d %H:%M:%S")
    );
    if views.is_empty() {
        out.push_str(r#"<p class="empty">No workloads configured.</p></main></body></html>"#);
        return out;
    }
    overview(&mut out, views);
    for d in details {
        card(&mut out, d);
    }
    out.push_str("</main></body></html>");
    out
}

/// The overview's model cell: the family and its periods, a badge for a fallback, and weekday factors when in use.
fn model_cell(m: &ModelView) -> String {
    if let Some(reason) = &m.fallback {
        return format!(
            r#"{} <span class="badge fallback" title="{}">fallback</span>"#,
            esc(&m.method),
            esc(reason)
        );
    }
    if m.periods.is_empty() {
        return esc(&m.method);
    }
    let periods = format!("{} · {}", esc(&m.method), esc(&m.periods.join(", ")));
    match m.weekday_factors {
        Some(w) => format!(
            r#"{periods} <span title="weekday factors from the last week{}, Mon–Sun: {}">× weekdays</span>"#,
            [w.days_other_than_utc(), w.holiday_in_words()]
                .into_iter()
                .flatten()
                .map(|d| format!(", {}", esc(&d)))
                .collect::<String>(),
            w.factors.map(|x| format!("{x:.2}")).join(" ")
        ),
        None => periods,
    }
}

fn overview(out: &mut String, views: &[WorkloadView]) {
    out.push_str(r#"<div class="table-wrap"><table class="overview"><thead><tr><th>Workload</th><th>Served</th><th>Forecast</th><th>Reactive</th><th>Observed</th><th>Planned demand</th><th class="text">Serving</th><th class="text" title="the share of demand left unserved over the SLO's window so far / the share the SLO allows; below, the window and the error budget left (1 − unserved / SLO)">Unserved / SLO</th><th class="text">Model</th><th>Coverage</th><th>Under</th><th>Data age</th><th>Forecast age</th></tr></thead><tbody>"#);
    for v in views {
        let unit = v.unit.as_deref().unwrap_or("");
        let model = v.model.as_ref().map_or("–".into(), model_cell);
        let mut error = v.status.error.as_ref().map_or(String::new(), |e| {
            format!(r#" <span class="badge error" title="{}">error</span>"#, esc(e))
        });
        match &v.status.replay {
            Some(r) if r.state == ReplayState::Running => {
                let _ = write!(
                    error,
                    r#" <span class="badge replay" title="replaying {} of history ({} to {}) to warm the adaptive quantile and the quality gate; served meanwhile with cold scores">warming up</span>"#,
                    age((r.to - r.from).num_seconds()),
                    r.from.format("%Y-%m-%d %H:%M UTC"),
                    r.to.format("%Y-%m-%d %H:%M UTC")
                );
            }
            Some(r) if r.state == ReplayState::Failed => error.push_str(
                r#" <span class="badge error" title="the startup replay failed; the adaptive quantile warms up live">replay failed</span>"#,
            ),
            _ => {}
        }
        // Marked stale exactly when the API refuses the workload for it (the configured maxDataAge and
        // maxForecastAge, not a fixed limit).
        let refused = v.refused.as_deref();
        let stale = |s: Option<i64>, reason: &str| match s {
            Some(x) if refused == Some(reason) => format!(r#"<span class="stale">{}</span>"#, age(x)),
            other => opt_age(other),
        };
        let (coverage, under) = v
            .quality
            .as_ref()
            .map_or(("–".into(), "–".into()), |q| (pct(q.coverage), pct(q.under_rate)));
        let serving =
            if v.quality.as_ref().is_some_and(|q| q.health == Health::Demoted) && v.serving != Some(Serving::Demoted) {
                // Forecast-only workloads are scored too; show that the forecast would have been demoted.
                format!(
                    r#"{} <span class="badge demoted">quality low</span>"#,
                    serving_badge(v.serving)
                )
            } else {
                serving_badge(v.serving).to_string()
            };
        let _ = write!(
            out,
            r##"<tr data-workload="{id}"><td><a href="#{a}">{id}</a>{error}</td><td class="big">{}</td><td>{}</td><td>{}</td><td>{} <span class="muted">{}</span></td><td>{}</td><td class="text">{serving}</td>{slo}<td class="text">{model}</td><td>{coverage}</td><td>{under}</td><td>{}</td><td>{}</td></tr>"##,
            v.replicas.map_or("–".into(), |r| r.to_string()),
            v.forecast_replicas.map_or("–".into(), |r| r.to_string()),
            v.reactive_replicas.map_or("–".into(), |r| r.to_string()),
            opt_num(v.observed_demand),
            esc(unit),
            opt_num(v.planned_demand),
            stale(v.data_age_seconds, "stale_data"),
            stale(v.forecast_age_seconds, "stale_forecast"),
            id = esc(&v.id.to_string()),
            a = anchor(&v.id),
            slo = slo_cell(v.slo.as_ref()),
        );
    }
    out.push_str("</tbody></table></div>");
}

fn card(out: &mut String, d: &WorkloadDetail) {
    let e = &d.explanation;
    let u = esc(&d.unit);
    let q = format!("p{}", num(e.forecast.quantile * 100.0));
    let _ = write!(
        out,
        r#"<section class="workload" id="{}" data-workload="{}" data-published-at="{}"><div class="card-head"><h2>{}</h2>{}{}</div><p class="summary" data-field="summary">{}</p><div class="card-body"><figure class="chart">{}"#,
        anchor(&d.id),
        esc(&d.id.to_string()),
        e.published_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        esc(&d.id.to_string()),
        serving_badge(Some(e.serving)),
        e.adaptive
            .as_ref()
            .map_or(String::new(), |a| slo_badges(&SloView::of(a))),
        esc(&e.summary),
        chart::render(d)
    );
    let _ = write!(
        out,
        r#"<figcaption class="legend"><span><i class="l-demand"></i>demand ({u})</span><span><i class="l-band"></i>forecast {}–{} band</span><span><i class="l-median"></i>median</span><span><i class="l-scored"></i>{q} as forecast one lead time ahead</span><span><i class="l-served"></i>served capacity</span><span><i class="l-plan"></i>planned capacity</span></figcaption></figure>"#,
        format_args!("p{}", num(d.forecast.lower_quantile * 100.0)),
        q
    );
    let f = &e.forecast;
    let figure = |label: &str, field: &str, value: String, note: String| {
        format!(r#"<div><span>{label}</span><b><em data-field="{field}">{value}</em> {note}</b></div>"#)
    };
    let _ = write!(
        out,
        r#"<aside class="explain"><div class="headline"><span class="replicas" data-field="replicas">{}</span><span class="why">replicas · by <span data-field="bound">{}</span></span></div><div class="figures">{}{}{}{}</div><dl>"#,
        e.replicas,
        esc(&e.bound.replace('_', " ")),
        figure(
            &format!("{q} peak ahead"),
            "forecast-peak",
            num(f.peak_demand),
            format!("<small>{u}</small>")
        ),
        figure(
            "forecast asks",
            "forecast-replicas",
            f.replicas.to_string(),
            "<small>replicas</small>".into()
        ),
        figure(
            "observed now",
            "observed",
            opt_num(e.reactive.observed_demand),
            format!("<small>{u}</small>")
        ),
        figure(
            "reactive floor",
            "reactive-floor",
            e.reactive.floor.to_string(),
            "<small>replicas</small>".into()
        ),
    );
    for (label, text) in e.lines() {
        let _ = write!(out, r#"<dt>{label}</dt><dd data-line="{label}">{}</dd>"#, esc(&text));
    }
    out.push_str("</dl>");
    if let Some((a, svg)) = e.adaptive.as_ref().and_then(|a| Some((a, chart::frontier(a)?))) {
        let yardstick = match a.reactive_at_slo {
            Some(u) => format!(
                "{}, the cheapest HPA target that met the SLO",
                candidate_label(None, Some(u))
            ),
            None => "the HPA target that left the least unserved (none met the SLO)".into(),
        };
        let _ = write!(
            out,
            r#"<figure class="frontier">{svg}<figcaption><div class="legend frontier-legend"><span><i class="f-level"></i>forecast quantile</span><span><i class="f-reactive"></i>reactive HPA target</span><span><i class="f-over"></i><i class="f-reactive-over"></i>not qualifying</span><span><i class="f-slo"></i>SLO {}</span><span><i class="f-budget"></i>budget</span><span><i class="f-chosen"></i>chosen</span><span><i class="f-served"></i>served</span></div><p>Recent unserved demand against pods held, relative to {}. Forecast quantiles ({}–{}) and reactive HPA targets ({}–{} utilization) each form a line; the candidate with the fewest pods of those that qualify is chosen: under the budget (the SLO corrected by what was served, dashed where it differs), within the SLO over its window, and beaten on both pods and unserved demand over the window by no other.</p></figcaption></figure>"#,
            share(a.slo_max_unserved),
            esc(&yardstick),
            candidate_label(LEVELS.first().copied(), None),
            candidate_label(LEVELS.last().copied(), None),
            pct(UTILIZATIONS.first().copied()),
            pct(UTILIZATIONS.last().copied())
        );
    }
    out.push_str("</aside></div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Weekdays;

    #[test]
    fn the_model_cell_names_the_periods_a_fallback_and_weekday_factors() {
        let m = |periods: &[&str], weekday_factors, fallback: Option<&str>| ModelView {
            method: "mstl".into(),
            periods: periods.iter().map(|p| p.to_string()).collect(),
            weekday_factors,
            fallback: fallback.map(str::to_owned),
        };
        assert_eq!(model_cell(&m(&["1d", "1w"], None, None)), "mstl · 1d, 1w");
        assert_eq!(model_cell(&m(&[], None, None)), "mstl");
        let week = |utc_offset_hours| {
            Some(Weekdays {
                factors: [1.1, 1.1, 1.1, 1.1, 1.1, 0.75, 0.75],
                utc_offset_hours,
                holiday: None,
            })
        };
        assert_eq!(
            model_cell(&m(&["1d"], week(0), None)),
            r#"mstl · 1d <span title="weekday factors from the last week, Mon–Sun: 1.10 1.10 1.10 1.10 1.10 0.75 0.75">× weekdays</span>"#
        );
        assert_eq!(
            model_cell(&m(&["1d"], week(9), None)),
            r#"mstl · 1d <span title="weekday factors from the last week, days from 15:00 UTC, Mon–Sun: 1.10 1.10 1.10 1.10 1.10 0.75 0.75">× weekdays</span>"#
        );
        let mut holiday = week(0);
        holiday.as_mut().unwrap().holiday = Some(crate::forecast::Holiday {
            date: chrono::NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(),
            factor: 0.6,
        });
        assert!(
            model_cell(&m(&["1d"], holiday, None)).contains(
                r#"title="weekday factors from the last week, Fri 25 Dec read as a holiday (0.60), Mon–Sun: "#
            ),
            "{}",
            model_cell(&m(&["1d"], holiday, None))
        );
        assert!(model_cell(&m(&["1d"], None, Some("fit failed: <x>")))
            .contains(r#"title="fit failed: &lt;x&gt;">fallback"#));
    }

    #[test]
    fn escapes() {
        assert_eq!(esc(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
