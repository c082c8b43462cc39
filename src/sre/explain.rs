//! "Why N replicas now?": the numbers behind a workload's served target, as JSON (admin API), as text (the
//! `prescale explain` command) and on the SRE page.
//!
//! An [`Explanation`] is computed from the published snapshot and insight, and from what the API does with them
//! now ([`Standing`], from [`PlanStore::servable`]), so the page, the API and the command always tell the story the
//! HPA is served: when the API refuses the plan (stale data, stale plan), they say so before anything else.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::control::engine::{Mode, Serving};
use crate::control::planner::{self, Bound, ReplicaPlan};
use crate::control::policy::ServiceLevel;
use crate::control::quality::{Health, Report};
use crate::control::service_level::{candidate_label, Kept, Report as SloReport, SWITCH_MARGIN, UTILIZATIONS};
use crate::duration;
use crate::forecast::Weekdays;
use crate::store::{Entry, Insight, PlanStore, Refusal, Snapshot};

/// prescale's version, reported with every explanation.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The forecast's side of the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastPart {
    /// The quantile planned at (e.g. 0.9).
    pub quantile: f64,
    /// Peak forecast demand at that quantile over the lead window.
    pub peak_demand: f64,
    /// Peak median forecast demand over the lead window.
    pub median_demand: f64,
    /// Start of the slot where the planned demand peaks.
    pub peak_at: Option<DateTime<Utc>>,
    /// The window planned for: now → now + lead + sync.
    pub window_end: DateTime<Utc>,
    /// Lead (cold start) plus HPA sync, in seconds.
    pub window_seconds: i64,
    /// `ceil(peak_demand / capacity)`.
    pub replicas: u32,
    /// What the forecast plan alone would serve, after clamps and scale-in rules.
    pub plan_replicas: u32,
    /// The rule that decided the forecast plan.
    pub plan_bound: String,
}

/// Observed demand's side of the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactivePart {
    /// Demand observed now (mean of the last minute), if any.
    pub observed_demand: Option<f64>,
    /// `ceil(observed / capacity)`.
    pub floor: u32,
    /// The reactive target after clamps: `ceil(observed / (capacity × utilization))`, served while the forecast is not.
    pub replicas: u32,
    /// Target utilization the reactive target is sized at: the SLO controller's reactive choice, or while none is
    /// made the workload's `fallbackUtilization`.
    pub utilization: f64,
}

/// The replica bounds and whether one decided the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clamps {
    /// `minReplicas`.
    pub min: u32,
    /// `maxReplicas`.
    pub max: u32,
    /// `min` or `max` when a bound decided the served target.
    pub applied: Option<String>,
}

/// The model behind the forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPart {
    /// Model family (`mstl`, `ets`, `level`, `seasonal_naive`, `last_value`).
    pub method: String,
    /// Seasonal periods in use, e.g. `["1d"]`.
    pub periods: Vec<String>,
    /// With a daily period and 6.5 days to two weeks of history, the weekday factors (Monday first) read from the last
    /// seven days that the daily forecast is multiplied by, and the workload's days' offset from UTC they were read
    /// on; absent when none are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday_factors: Option<Weekdays>,
    /// Why a fallback is in use, if one is.
    pub fallback: Option<String>,
    /// When the model was fitted.
    pub fitted_at: DateTime<Utc>,
    /// Out-of-sample errors the intervals were calibrated on (0: uncalibrated default band).
    pub calibration_samples: usize,
    /// Share of missing slots in the fitted history.
    pub missing_fraction: f64,
    /// Samples of the fitted history replaced as glitches (isolated, far out of line with their neighbours).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replaced_samples: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What the external metrics API does with a workload's plan now, and the bounds it applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// Why the API refuses the plan; `None` while it serves it.
    pub refusal: Option<Refusal>,
    /// `maxForecastAge`.
    pub max_forecast_age: Option<TimeDelta>,
    /// The workload's `maxDataAge`, when one is set.
    pub max_data_age: Option<TimeDelta>,
    /// The replica that planned it and what its plan follows there, when another did (sharded replicas).
    pub planned_by: Option<crate::store::Remote>,
}

impl Standing {
    /// Where a workload with `entry` in `store` stands at `now`.
    pub fn of(store: &PlanStore, entry: &Entry, now: DateTime<Utc>) -> Self {
        Self {
            refusal: entry.servable(store.max_forecast_age(), now).err(),
            max_forecast_age: Some(store.max_forecast_age()),
            max_data_age: entry.max_data_age,
            planned_by: entry.owner.clone(),
        }
    }
}

/// The API's refusal of a plan, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedPart {
    /// `stale_data`, `stale_forecast` or `not_planned`.
    pub reason: String,
    /// What is wrong, as the API's Status says it.
    pub message: String,
}

/// Why a workload is served the replicas it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Namespace.
    pub namespace: String,
    /// Workload name.
    pub workload: String,
    /// Set when the API refuses to serve the plan (the HPA then holds its current scale); everything else describes
    /// the last plan made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedPart>,
    /// The replica that planned this workload, when another did (sharded replicas): the plan is its, pulled every
    /// cycle; its page and explanation have the forecast and the reasons, which this replica does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_by: Option<String>,
    /// The replica target served to the HPA (the last plan's, when `refused`).
    pub replicas: u32,
    /// The value served on `prescale_replicas`: the HPA scales to its ceiling, `replicas` (a scale-in is served at
    /// the bottom of that count's range so that the HPA's tolerance lets it through; a reactive target as an HPA at
    /// its utilization would read observed demand).
    pub metric_value: f64,
    /// What the served target follows.
    pub serving: Serving,
    /// The configured mode.
    pub mode: Mode,
    /// The rule that decided the served target (`forecast`, `reactive_floor`, `min`, `max`, `hold`).
    pub bound: String,
    /// Demand unit.
    pub unit: String,
    /// Demand one replica serves.
    pub capacity_per_replica: f64,
    /// The forecast's side.
    pub forecast: ForecastPart,
    /// Observed demand's side.
    pub reactive: ReactivePart,
    /// Replica bounds.
    pub clamps: Clamps,
    /// Forecast quality and demotion state.
    pub quality: Report,
    /// The SLO controller: the SLO and its window, every candidate's recent scores and the choice (`None` when
    /// `adaptiveQuantile` is off).
    #[serde(default)]
    pub adaptive: Option<SloReport>,
    /// The model.
    pub model: ModelPart,
    /// When the served plan was computed.
    pub published_at: DateTime<Utc>,
    /// Seconds since the end of the latest demand sample.
    pub data_age_seconds: Option<i64>,
    /// Seconds since the served plan was computed.
    pub forecast_age_seconds: i64,
    /// `maxDataAge` in seconds: data older than this is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_data_age_seconds: Option<i64>,
    /// `maxForecastAge` in seconds: plans older than this are not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_forecast_age_seconds: Option<i64>,
    /// prescale's version.
    pub version: String,
    /// One sentence: the answer.
    pub summary: String,
}

/// A number for people: up to three significant decimals, no trailing zeros.
pub fn num(x: f64) -> String {
    let s = if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// A percentage for people.
pub fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{:.0}%", v * 100.0))
}

/// A share of demand for people, as a percentage to three significant decimals: `0.35%`.
pub fn share(x: f64) -> String {
    format!("{}%", num(x * 100.0))
}

/// A duration in seconds for people (`45s`, `12m`, `3h5m`).
pub fn age(seconds: i64) -> String {
    if seconds < 0 {
        return "in the future".into();
    }
    let d = chrono::TimeDelta::seconds(if seconds >= 3600 { seconds / 60 * 60 } else { seconds });
    duration::format(d)
}

/// Explains `snapshot` (with its `insight`, when the pipeline published one) as of `now`, where the API stands on
/// it as `standing` says.
pub fn explain(snapshot: &Snapshot, insight: Option<&Insight>, standing: &Standing, now: DateTime<Utc>) -> Explanation {
    let served = &snapshot.plan;
    let forecast_plan = insight.map_or(served, |i| &i.forecast_plan);
    let reactive = insight.map_or_else(
        || ReactivePart {
            observed_demand: served.observed_demand,
            floor: served.reactive_floor,
            replicas: served.reactive_floor,
            utilization: 1.0,
        },
        |i| ReactivePart {
            observed_demand: i.reactive_plan.observed_demand,
            floor: i.reactive_plan.reactive_floor,
            replicas: i.reactive_plan.replicas,
            utilization: i
                .reactive_plan
                .utilization
                .unwrap_or(i.policy.fallback_utilization.get()),
        },
    );
    let (min, max, capacity, lead_sync, unit) = match insight {
        Some(i) => (
            i.policy.replicas.min(),
            i.policy.replicas.max(),
            i.policy.capacity_per_replica,
            (i.policy.lead + i.policy.sync).num_seconds(),
            i.unit.clone(),
        ),
        None => (0, 0, 0.0, (served.window_end - served.at).num_seconds(), String::new()),
    };
    let f = &snapshot.forecast;
    let quality = insight.map_or_else(
        || crate::control::quality::Tracker::new(Default::default(), crate::forecast::Quantile::MEDIAN).report(),
        |i| i.quality.clone(),
    );
    let mut e = Explanation {
        namespace: snapshot.id.namespace.clone(),
        workload: snapshot.id.name.clone(),
        refused: standing.refusal.as_ref().map(|r| RefusedPart {
            reason: r.reason().into(),
            message: r.to_string(),
        }),
        planned_by: standing.planned_by.as_ref().map(|r| r.replica.clone()),
        replicas: served.replicas,
        metric_value: served.served,
        serving: insight
            .map(|i| i.serving)
            .or(standing.planned_by.as_ref().map(|r| r.serving))
            .unwrap_or(Serving::Forecast),
        mode: insight.map_or(Mode::Serve, |i| i.mode),
        bound: served.bound.to_string(),
        unit,
        capacity_per_replica: capacity,
        forecast: ForecastPart {
            quantile: forecast_plan.quantile,
            peak_demand: forecast_plan.planned_demand,
            median_demand: forecast_plan.median_demand,
            peak_at: forecast_plan.peak_at,
            window_end: forecast_plan.window_end,
            window_seconds: lead_sync,
            replicas: forecast_plan.forecast_replicas,
            plan_replicas: forecast_plan.replicas,
            plan_bound: forecast_plan.bound.to_string(),
        },
        reactive,
        clamps: Clamps {
            min,
            max,
            applied: match served.bound {
                Bound::Min => Some("min".into()),
                Bound::Max => Some("max".into()),
                _ => None,
            },
        },
        quality,
        adaptive: insight.and_then(|i| i.adaptive.clone()),
        model: ModelPart {
            method: serde_json::to_value(f.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            periods: f.periods.iter().map(|p| duration::format(*p)).collect(),
            weekday_factors: f.weekday_factors,
            fallback: f.fallback.clone(),
            fitted_at: f.fitted_at,
            calibration_samples: f.calibration_samples,
            missing_fraction: f.missing_fraction,
            replaced_samples: f.replaced_samples,
        },
        published_at: snapshot.published_at,
        data_age_seconds: snapshot.data_until.map(|t| (now - t).num_seconds()),
        forecast_age_seconds: (now - snapshot.published_at).num_seconds(),
        max_data_age_seconds: standing.max_data_age.map(|d| d.num_seconds()),
        max_forecast_age_seconds: standing.max_forecast_age.map(|d| d.num_seconds()),
        version: VERSION.into(),
        summary: String::new(),
    };
    e.summary = summary(&e, served, forecast_plan);
    e
}

fn summary(e: &Explanation, served: &ReplicaPlan, forecast_plan: &ReplicaPlan) -> String {
    let u = &e.unit;
    let n = e.replicas;
    let q = format!("p{}", num(e.forecast.quantile * 100.0));
    let window = age(e.forecast.window_seconds);
    let observed = e
        .reactive
        .observed_demand
        .map_or("no recent demand".into(), |o| format!("{} {u}", num(o)));
    let why = match served.bound {
        Bound::Forecast => format!(
            "the {q} forecast peaks at {} {u} within the next {window} (lead + sync); at {} {u} per replica that needs {}",
            num(e.forecast.peak_demand),
            num(e.capacity_per_replica),
            e.forecast.replicas
        ),
        Bound::ReactiveFloor if e.serving.is_reactive() => format!(
            "observed demand of {observed} needs {} at {}% of {} {u} per replica",
            e.reactive.replicas,
            num(e.reactive.utilization * 100.0),
            num(e.capacity_per_replica)
        ),
        Bound::ReactiveFloor => format!(
            "observed demand of {observed} needs {}, more than the {q} forecast's {}",
            e.reactive.floor, e.forecast.replicas
        ),
        Bound::Min => format!(
            "raised to minReplicas {} (the forecast asks for {}, observed demand for {})",
            e.clamps.min, forecast_plan.forecast_replicas, e.reactive.floor
        ),
        Bound::Max => format!(
            "capped at maxReplicas {} (the forecast asks for {}, observed demand for {})",
            e.clamps.max, forecast_plan.forecast_replicas, e.reactive.floor
        ),
        Bound::MedianFloor => {
            // The floor goes no higher than what observed demand needs at the most cautious reactive target (see
            // `engine::median_floored`), nor than maxReplicas.
            let wants = planner::replicas_for(e.forecast.median_demand, e.capacity_per_replica).unwrap_or(n);
            let median = format!(
                "the median forecast peaks at {} {u} within the next {window}; at {} {u} per replica that needs {wants}",
                num(e.forecast.median_demand),
                num(e.capacity_per_replica),
            );
            let at = num(e.reactive.utilization * 100.0);
            let reactive = e.reactive.replicas;
            if wants <= n {
                format!("{median}, more than the {reactive} observed demand of {observed} needs at {at}%")
            } else if n >= e.clamps.max {
                format!("{median}, capped at maxReplicas {n} (observed demand of {observed} needs {reactive} at {at}%)")
            } else {
                format!(
                    "{median}, raised no further than the {n} observed demand of {observed} needs at {}% (it needs \
                     {reactive} at {at}%)",
                    num(UTILIZATIONS[0] * 100.0)
                )
            }
        }
        Bound::Hold => format!(
            "scale-in held at {n} until observed demand ({observed}) confirms the drop the forecast expects (to {})",
            forecast_plan.forecast_replicas
        ),
    };
    let prefix = match e.serving {
        Serving::Forecast => String::new(),
        Serving::ForecastOnly => format!(
            "Forecast-only mode: serving the reactive target (the forecast plan would be {}). ",
            e.forecast.plan_replicas
        ),
        Serving::Demoted => format!(
            "Demoted to reactive scaling: {} (the forecast plan would be {}). ",
            e.quality
                .reason
                .as_deref()
                .unwrap_or("forecast quality fell below its bounds"),
            e.forecast.plan_replicas
        ),
        Serving::Reactive => format!(
            "Serving {}, the SLO controller's choice: no forecast quantile recently met the SLO for fewer pods (the \
             forecast plan would be {}). ",
            candidate_label(None, Some(e.reactive.utilization)),
            e.forecast.plan_replicas
        ),
        Serving::Warming => format!(
            "Warming up: the first model is being fitted, so the reactive target ({}) is served until it is \
             ready. ",
            candidate_label(None, Some(e.reactive.utilization)),
        ),
        Serving::Restored => format!(
            "Restored after a restart: the first model is being fitted, so the last plan made before the restart \
             is served, never below what observed demand needs at full capacity, as a model's plan. The reactive \
             target would be {} ({} replicas). ",
            candidate_label(None, Some(e.reactive.utilization)),
            e.reactive.replicas
        ),
    };
    let unreachable = match &e.adaptive {
        Some(a) if a.warmed_up && !a.slo_reachable => format!(
            " The SLO ({}) cannot be met now: no candidate left so little demand unserved both recently and over the \
             SLO's window.",
            slo_of(a)
        ),
        _ => String::new(),
    };
    let plan = format!(
        "{prefix}{n} replica{}: {why}.{unreachable}",
        if n == 1 { "" } else { "s" }
    );
    match &e.refused {
        None => plan,
        Some(r) => format!(
            "NOT SERVED: the API answers an error and the HPA holds its current scale, because {}. The last plan, {} \
             old, was {plan}",
            r.message,
            age(e.forecast_age_seconds)
        ),
    }
}

impl Explanation {
    /// The explanation as labelled lines `(label, text)`, in the order people read them; the page and the command
    /// both print these.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let u = &self.unit;
        let f = &self.forecast;
        let q = format!("p{}", num(f.quantile * 100.0));
        let mut out = Vec::new();
        let peak_at = f
            .peak_at
            .map_or(String::new(), |t| format!(" at {}", t.format("%H:%M UTC")));
        out.push((
            "forecast",
            format!(
                "{q} peak {} {u}{peak_at} within {} (median {}) → {} / {} per replica → {} replicas",
                num(f.peak_demand),
                age(f.window_seconds),
                num(f.median_demand),
                num(f.peak_demand),
                num(self.capacity_per_replica),
                f.replicas
            ),
        ));
        let when = if self.refused.is_some() {
            format!("{} ago", age(self.forecast_age_seconds))
        } else {
            "now".into()
        };
        out.push((
            "reactive",
            match self.reactive.observed_demand {
                Some(o) => format!(
                    "observed {} {u} {when} → floor {} replicas; reactive target {} at {}% utilization",
                    num(o),
                    self.reactive.floor,
                    self.reactive.replicas,
                    num(self.reactive.utilization * 100.0)
                ),
                None => "no demand observed in the last minute".into(),
            },
        ));
        out.push((
            "clamps",
            format!(
                "min {}, max {}: {}",
                self.clamps.min,
                self.clamps.max,
                match self.clamps.applied.as_deref() {
                    Some("min") => "raised to the minimum",
                    Some("max") => "capped at the maximum",
                    _ => "not binding",
                }
            ),
        ));
        let value = if self.metric_value == f64::from(self.replicas) {
            String::new()
        } else {
            let v = format!("{:.3}", self.metric_value);
            let v = v.trim_end_matches('0').trim_end_matches('.');
            format!(", metric value {v} (the HPA scales to its ceiling)")
        };
        let utilization = num(self.reactive.utilization * 100.0);
        let (label, refused) = match &self.refused {
            Some(r) => (
                "last plan",
                format!("NOTHING SERVED: {}; the HPA holds its current scale. ", r.message),
            ),
            None => ("served", String::new()),
        };
        out.push((
            label,
            format!(
                "{refused}{} replicas{value}, decided by {} ({})",
                self.replicas,
                self.bound.replace('_', " "),
                match self.serving {
                    Serving::Forecast => "serving the forecast".to_string(),
                    Serving::ForecastOnly => format!(
                        "forecast-only mode, reactive at {utilization}% utilization; the forecast plan would be {}",
                        f.plan_replicas
                    ),
                    Serving::Demoted => format!(
                        "demoted to reactive at {utilization}% utilization; the forecast plan would be {}",
                        f.plan_replicas
                    ),
                    Serving::Reactive => format!(
                        "reactive at {utilization}% utilization, the SLO controller's choice; the forecast plan would \
                         be {}",
                        f.plan_replicas
                    ),
                    Serving::Warming =>
                        format!("warming up, reactive at {utilization}% utilization until the first model is fitted"),
                    Serving::Restored => format!(
                        "restored: the last plan before the restart, never below what observed demand needs, until \
                         the first model is fitted (reactive at {utilization}% utilization would ask for more or \
                         less)"
                    ),
                }
            ),
        ));
        if let Some(owner) = &self.planned_by {
            out.push((
                "planned by",
                format!(
                    "replica {owner}, which owns this workload (sharded replicas): the plan is its own, pulled every \
                     cycle; its explanation has the forecast and the reasons"
                ),
            ));
        }
        if let Some(a) = &self.adaptive {
            out.push(("slo", slo_line(a)));
            out.push(("choice", choice_line(a, f.quantile)));
            if let Some(line) = record_line(a) {
                out.push(("record", line));
            }
        }
        let s = &self.quality.scores;
        let health = match self.quality.health {
            Health::Trusted => "trusted".to_string(),
            Health::Demoted => format!(
                "DEMOTED since {}: {}",
                self.quality
                    .since
                    .map_or("-".into(), |t| t.format("%H:%M UTC").to_string()),
                self.quality.reason.as_deref().unwrap_or("quality below bounds")
            ),
        };
        out.push((
            "quality",
            if s.samples == 0 {
                format!(
                    "no forecast scored yet ({} waiting for data): {health}",
                    self.quality.pending
                )
            } else {
                format!(
                    "coverage {} (nominal {}), under-prediction {} (nominal {}), shortfall {} over {} slots: {health}",
                    pct(s.coverage),
                    pct(Some(s.nominal_coverage)),
                    pct(s.under_rate),
                    pct(Some(s.nominal_under_rate)),
                    pct(s.shortfall),
                    s.samples
                )
            },
        ));
        let m = &self.model;
        let periods = if m.periods.is_empty() {
            "no seasonal period".to_string()
        } else {
            format!("periods {}", m.periods.join(", "))
        };
        let periods = match &m.weekday_factors {
            Some(w) => {
                const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
                let days: Vec<String> = DAYS
                    .iter()
                    .zip(&w.factors)
                    .map(|(d, f)| format!("{d} {f:.2}"))
                    .collect();
                let clock: String = [w.days_other_than_utc(), w.holiday_in_words()]
                    .into_iter()
                    .flatten()
                    .map(|d| format!(", {d}"))
                    .collect();
                format!(
                    "{periods} × weekday factors from the last week{clock} ({})",
                    days.join(" ")
                )
            }
            None => periods,
        };
        out.push((
            "model",
            format!(
                "{}, {periods}, fitted {} ago, intervals calibrated on {} errors{}",
                m.method,
                age((self.published_at - m.fitted_at).num_seconds() + self.forecast_age_seconds),
                m.calibration_samples,
                m.fallback
                    .as_ref()
                    .map_or(String::new(), |r| format!("; FALLBACK: {r}"))
            ),
        ));
        if m.replaced_samples > 0 {
            out.push((
                "glitches",
                format!(
                    "{} sample{} of the fitted history far out of line with {} neighbours replaced by their median",
                    m.replaced_samples,
                    if m.replaced_samples == 1 { "" } else { "s" },
                    if m.replaced_samples == 1 { "its" } else { "their" },
                ),
            ));
        }
        let bounded = |seconds: Option<i64>, max: Option<i64>| {
            let old = seconds.map_or("–".into(), age);
            match (seconds, max) {
                (Some(s), Some(m)) if s > m => format!("{old} old, STALE: more than the {} allowed", age(m)),
                (_, Some(m)) => format!("{old} old (at most {})", age(m)),
                _ => format!("{old} old"),
            }
        };
        out.push((
            "freshness",
            format!(
                "data {}, forecast {}",
                bounded(self.data_age_seconds, self.max_data_age_seconds),
                bounded(Some(self.forecast_age_seconds), self.max_forecast_age_seconds)
            ),
        ));
        out.push((
            "version",
            format!(
                "prescale {} (published {})",
                self.version,
                self.published_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
        out
    }

    /// The explanation as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match &self.refused {
            None => {
                let _ = writeln!(out, "{}/{}: {} replicas", self.namespace, self.workload, self.replicas);
            }
            Some(_) => {
                let _ = writeln!(
                    out,
                    "{}/{}: NOT SERVED (the last plan was {} replicas)",
                    self.namespace, self.workload, self.replicas
                );
            }
        }
        let _ = writeln!(out, "{}", self.summary);
        let _ = writeln!(out);
        for (label, text) in self.lines() {
            let _ = writeln!(out, "  {label:<10} {text}");
        }
        out
    }
}

/// A span of scored time for people: to the minute under a day, to the hour beyond (`3d2h`).
fn span(seconds: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0) as i64
    } else {
        0
    };
    age(if s >= 86_400 { s / 3600 * 3600 } else { s })
}

/// The SLO a report was made for.
fn slo_of(a: &SloReport) -> ServiceLevel {
    ServiceLevel {
        max_unserved: a.slo_max_unserved,
        window: TimeDelta::seconds(a.slo_window_seconds),
    }
}

/// The reactive HPA target pods are counted against (`reactive@55%`), and what it is: the cheapest that met the
/// SLO, or, when none did, the one that left the least demand unserved.
fn yardstick(a: &SloReport) -> (String, &'static str) {
    match a.reactive_at_slo {
        Some(u) => (
            candidate_label(None, Some(u)),
            "the cheapest HPA target that met the SLO",
        ),
        None => (
            a.candidates
                .iter()
                .filter(|c| c.quantile.is_none())
                .min_by(|x, y| {
                    x.unserved_fraction
                        .total_cmp(&y.unserved_fraction)
                        .then(x.pods_vs_reactive.total_cmp(&y.pods_vs_reactive))
                })
                .map_or_else(|| "the reactive HPA".into(), |c| c.label()),
            "the HPA target that left the least unserved (none met the SLO)",
        ),
    }
}

/// The most cautious HPA target (`reactive@35%`): when the SLO cannot be met, what the choice may spend.
pub(crate) fn most_cautious() -> String {
    candidate_label(None, Some(UTILIZATIONS[0]))
}

/// The SLO in one line: what it is, how the window has gone so far, the error budget left, and whether it can be
/// met now.
fn slo_line(a: &SloReport) -> String {
    let mut out = slo_of(a).to_string();
    match &a.window {
        None => out.push_str(": nothing served has been scored yet"),
        Some(w) => {
            let over = if w.covered_seconds >= a.slo_window_seconds as f64 {
                "the whole window".to_string()
            } else {
                format!("the first {}", span(w.covered_seconds))
            };
            let budget = if w.error_budget_left >= 0.0 {
                format!("error budget {} left", pct(Some(w.error_budget_left)))
            } else {
                format!("error budget overspent by {}", pct(Some(-w.error_budget_left)))
            };
            let _ = write!(
                out,
                ": {} over {over}, {budget}; {}",
                share(w.unserved_fraction),
                if w.met { "met" } else { "MISSED" }
            );
        }
    }
    if a.warmed_up && !a.slo_reachable {
        let chosen = a.chosen_label();
        let left = a
            .candidates
            .iter()
            .find(|c| c.label() == chosen)
            .map(|c| c.unserved_fraction_steady);
        let _ = write!(
            out,
            "; CANNOT BE MET NOW: no candidate left at most {} unserved both recently and over the window; {chosen} \
             left the least over the window{} of the candidates holding no more pods than {} and is chosen",
            share(a.slo_max_unserved),
            left.map_or(String::new(), |l| format!(" ({})", share(l))),
            most_cautious()
        );
    }
    out
}

/// The SLO controller's choice in one line: what it chose, why, and what it costs against the HPA target that
/// meets the SLO; before warm-up, what is planned until then.
fn choice_line(a: &SloReport, configured: f64) -> String {
    if !a.warmed_up {
        return format!(
            "warming up ({} of decisions scored): planning at p{}, the configured quantile, until then",
            span(a.scored_seconds),
            num(configured * 100.0)
        );
    }
    let label = a.chosen_label();
    let chosen = a.candidates.iter().find(|c| c.label() == label);
    let unserved = chosen.map_or(0.0, |c| c.unserved_fraction);
    let why = if a.slo_reachable {
        let how = match a.kept {
            None => "the fewest pods of the candidates within the budget".to_owned(),
            Some(Kept::Margin) => format!(
                "followed so far and still within the budget, with less than {}% more pods than the cheapest there",
                num(SWITCH_MARGIN * 100.0)
            ),
            Some(Kept::BeatsServed) => "followed so far and still within the budget, held against cheaper ones: \
                 followed throughout, it held fewer pods and left less unserved over the SLO's window than what was \
                 served"
                .to_owned(),
        };
        format!(
            "{how} ({} unserved recently vs {})",
            share(unserved),
            share(a.unserved_budget)
        )
    } else {
        format!(
            "the least demand unserved over the SLO's window of the candidates holding no more pods than {} ({} \
             over it, {} recently; the SLO allows {})",
            most_cautious(),
            share(chosen.map_or(0.0, |c| c.unserved_fraction_steady)),
            share(unserved),
            share(a.slo_max_unserved)
        )
    };
    let (base, what) = yardstick(a);
    let cost = a.cost_vs_reactive_at_slo.or(chosen.map(|c| c.pods_vs_reactive));
    let vs = match cost {
        _ if label == base => format!("it is {what}"),
        Some(c) => format!("{}× the pods of {base}, {what}", num(c)),
        None => String::new(),
    };
    format!("{label}: {why}; {vs}")
}

/// What was served, in one line: the demand it left unserved recently and since start, and its pods against the
/// HPA target that meets the SLO; `None` until it has a record.
fn record_line(a: &SloReport) -> Option<String> {
    let s = a.served.as_ref()?;
    let (base, _) = yardstick(a);
    Some(format!(
        "what was served left {} of demand unserved recently, {} since start, with {}× the pods of {base}",
        share(s.unserved_fraction),
        share(s.unserved_fraction_total),
        num(s.pods_vs_reactive)
    ))
}

/// Why an explanation could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The admin server could not be reached.
    #[error("cannot reach the prescale admin server at {url}: {message} (pass --admin URL or set PRESCALE_ADMIN_URL)")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The workload is unknown or has no plan yet.
    #[error("{namespace}/{workload}: {message} (list workloads with: curl -s {admin}/api/v1/workloads)")]
    NotFound {
        /// Namespace asked for.
        namespace: String,
        /// Workload asked for.
        workload: String,
        /// The server's message.
        message: String,
        /// The admin URL.
        admin: String,
    },
    /// The server answered something that is not an explanation.
    #[error("unexpected answer from {url}: {message}")]
    Invalid {
        /// The URL asked.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// `prescale explain WORKLOAD`: asks a running prescale why the workload has the replicas it has.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The workload's name.
    pub workload: String,
    /// The workload's namespace.
    #[arg(long, short = 'n', env = "PRESCALE_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The admin server of the running prescale.
    #[arg(long, env = "PRESCALE_ADMIN_URL", default_value = "http://127.0.0.1:8080")]
    pub admin: String,
    /// Print the JSON the admin API answers instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The URL of a workload's explanation on the admin server at `admin`.
pub fn url(admin: &str, namespace: &str, workload: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'/')
        .add(b'?')
        .add(b'#')
        .add(b'%');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
    format!(
        "{}/api/v1/workloads/{}/{}/explain",
        admin.trim_end_matches('/'),
        enc(namespace),
        enc(workload)
    )
}

/// Fetches a workload's explanation from the admin server at `admin`.
pub async fn fetch(
    client: &reqwest::Client,
    admin: &str,
    namespace: &str,
    workload: &str,
) -> Result<Explanation, ExplainError> {
    let url = url(admin, namespace, workload);
    let response = client.get(&url).send().await.map_err(|e| ExplainError::Unreachable {
        url: admin.to_owned(),
        message: crate::error::chain(&e),
    })?;
    let status = response.status();
    let body = response.text().await.map_err(|e| ExplainError::Invalid {
        url: url.clone(),
        message: e.to_string(),
    })?;
    if status == reqwest::StatusCode::NOT_FOUND {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "not found".into());
        return Err(ExplainError::NotFound {
            namespace: namespace.into(),
            workload: workload.into(),
            message,
            admin: admin.trim_end_matches('/').into(),
        });
    }
    if !status.is_success() {
        return Err(ExplainError::Invalid {
            url,
            message: format!("HTTP {status}: {}", body.trim()),
        });
    }
    serde_json::from_str(&body).map_err(|e| ExplainError::Invalid {
        url,
        message: e.to_string(),
    })
}

/// Runs `prescale explain`: prints the explanation (text, or JSON with `--json`).
pub async fn run_cli(args: ExplainArgs, client: &reqwest::Client) -> anyhow::Result<()> {
    let ExplainArgs {
        workload,
        namespace,
        admin,
        json,
    } = args;
    let e = fetch(client, &admin, &namespace, &workload).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", e.to_text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(61.2345), "61.23");
        assert_eq!(num(1234.56), "1234.6");
        assert_eq!(num(10.0), "10");
        assert_eq!(num(0.0001), "0");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(pct(Some(0.786)), "79%");
        assert_eq!(pct(None), "–");
        assert_eq!(age(45), "45s");
        assert_eq!(age(3725), "1h2m");
    }

    use crate::control::service_level::{CandidateScore, ServedScore, WindowScore};

    /// A week-old SLO controller (0.1% over 7d) that chose p80: 0.82× the pods of reactive@55%, the cheapest HPA
    /// target that met the SLO; three days and two hours of the window scored, 0.06% unserved.
    fn report() -> SloReport {
        let cand = |q: Option<f64>, u: Option<f64>, unserved: f64, pods: f64| CandidateScore {
            quantile: q,
            utilization: u,
            unserved_fraction: unserved,
            unserved_fraction_total: unserved * 1.1,
            unserved_fraction_steady: unserved,
            pods_vs_reactive: pods,
            qualifies: unserved <= 0.0012,
        };
        SloReport {
            warmed_up: true,
            scored_seconds: 7.0 * 86_400.0,
            slo_max_unserved: 0.001,
            slo_window_seconds: 7 * 86_400,
            chosen_quantile: Some(0.8),
            chosen_utilization: None,
            reactive_chosen: false,
            slo_reachable: true,
            unserved_budget: 0.0012,
            window: Some(WindowScore {
                unserved_fraction: 0.0006,
                covered_seconds: (3 * 86_400 + 2 * 3600 + 1234) as f64,
                error_budget_left: 0.4,
                met: true,
            }),
            reactive_at_slo: Some(0.55),
            cost_vs_reactive_at_slo: Some(0.82),
            candidates: vec![
                cand(Some(0.5), None, 0.003, 0.7),
                cand(Some(0.8), None, 0.0008, 0.82),
                cand(Some(0.9), None, 0.0004, 0.9),
                cand(None, Some(0.35), 0.0002, 1.4),
                cand(None, Some(0.55), 0.0009, 1.0),
                cand(None, Some(0.7), 0.004, 0.8),
            ],
            served: Some(ServedScore {
                unserved_fraction: 0.0007,
                unserved_fraction_total: 0.0006,
                pods_vs_reactive: 0.85,
            }),
            kept: None,
        }
    }

    /// An explanation of 5 replicas served as `serving` says, with the SLO controller's `report`.
    fn explanation(serving: Serving, report: Option<SloReport>) -> Explanation {
        let at: DateTime<Utc> = "2026-03-02T12:00:00Z".parse().unwrap();
        let mut e = Explanation {
            namespace: "default".into(),
            workload: "chat".into(),
            refused: None,
            planned_by: None,
            replicas: 5,
            metric_value: 5.0,
            serving,
            mode: Mode::Serve,
            bound: if serving.is_reactive() {
                "reactive_floor"
            } else {
                "forecast"
            }
            .into(),
            unit: "requests/s".into(),
            capacity_per_replica: 10.0,
            forecast: ForecastPart {
                quantile: 0.9,
                peak_demand: 38.0,
                median_demand: 30.0,
                peak_at: None,
                window_end: at,
                window_seconds: 315,
                replicas: 4,
                plan_replicas: 4,
                plan_bound: "forecast".into(),
            },
            reactive: ReactivePart {
                observed_demand: Some(27.0),
                floor: 3,
                replicas: 5,
                utilization: 0.55,
            },
            clamps: Clamps {
                min: 1,
                max: 20,
                applied: None,
            },
            quality: crate::control::quality::Tracker::new(Default::default(), crate::forecast::Quantile::MEDIAN)
                .report(),
            adaptive: report,
            model: ModelPart {
                method: "mstl".into(),
                periods: vec!["1d".into()],
                weekday_factors: None,
                fallback: None,
                fitted_at: at,
                calibration_samples: 100,
                missing_fraction: 0.0,
                replaced_samples: 0,
            },
            published_at: at,
            data_age_seconds: Some(30),
            forecast_age_seconds: 5,
            max_data_age_seconds: None,
            max_forecast_age_seconds: None,
            version: VERSION.into(),
            summary: String::new(),
        };
        let plan = ReplicaPlan {
            at,
            replicas: 5,
            served: 5.0,
            planned_demand: 27.0 / 0.55,
            median_demand: 27.0,
            observed_demand: Some(27.0),
            peak_at: None,
            window_end: at,
            quantile: 0.9,
            forecast_replicas: 4,
            reactive_floor: 3,
            bound: if serving.is_reactive() {
                Bound::ReactiveFloor
            } else {
                Bound::Forecast
            },
            utilization: Some(0.55),
        };
        e.summary = summary(&e, &plan, &plan);
        e
    }

    fn line(e: &Explanation, label: &str) -> Option<String> {
        e.lines().into_iter().find(|(l, _)| *l == label).map(|(_, t)| t)
    }

    #[test]
    fn the_model_line_names_weekday_factors_when_the_daily_model_uses_them() {
        let mut e = explanation(Serving::Forecast, Some(report()));
        let plain = line(&e, "model").unwrap();
        assert!(plain.starts_with("mstl, periods 1d, fitted "), "{plain}");
        assert!(!plain.contains("weekday"), "{plain}");
        e.model.weekday_factors = Some(Weekdays {
            factors: [1.12, 1.1, 1.08, 1.09, 1.05, 0.8, 0.76],
            utc_offset_hours: 0,
            holiday: None,
        });
        let text = line(&e, "model").unwrap();
        assert!(
            text.starts_with(
                "mstl, periods 1d × weekday factors from the last week (Mon 1.12 Tue 1.10 Wed 1.08 Thu 1.09 Fri 1.05 \
                 Sat 0.80 Sun 0.76), fitted "
            ),
            "{text}"
        );
        let json = serde_json::to_value(&e.model).unwrap();
        assert_eq!(json["weekday_factors"]["factors"][6], 0.76);
        assert_eq!(json["weekday_factors"]["utc_offset_hours"], 0);
        // Days read from another hour than UTC midnight are named.
        e.model.weekday_factors.as_mut().unwrap().utc_offset_hours = -8;
        let text = line(&e, "model").unwrap();
        assert!(
            text.starts_with("mstl, periods 1d × weekday factors from the last week, days from 08:00 UTC (Mon 1.12 "),
            "{text}"
        );
        // A weekday read as a holiday is named with its date and level.
        e.model.weekday_factors.as_mut().unwrap().holiday = Some(crate::forecast::Holiday {
            date: chrono::NaiveDate::from_ymd_opt(1995, 7, 4).unwrap(),
            factor: 0.78,
        });
        let text = line(&e, "model").unwrap();
        assert!(
            text.starts_with(
                "mstl, periods 1d × weekday factors from the last week, days from 08:00 UTC, Tue 4 Jul read as a \
                 holiday (0.78) (Mon 1.12 "
            ),
            "{text}"
        );
        let json = serde_json::to_value(&e.model).unwrap();
        assert_eq!(json["weekday_factors"]["holiday"]["date"], "1995-07-04");
        assert!(serde_json::to_value(explanation(Serving::Forecast, None).model)
            .unwrap()
            .get("weekday_factors")
            .is_none());
    }

    #[test]
    fn the_slo_lines_tell_the_slo_the_window_the_budget_and_the_choice() {
        let e = explanation(Serving::Forecast, Some(report()));
        let labels: Vec<_> = e.lines().into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            labels,
            [
                "forecast",
                "reactive",
                "clamps",
                "served",
                "slo",
                "choice",
                "record",
                "quality",
                "model",
                "freshness",
                "version"
            ]
        );
        assert_eq!(
            line(&e, "slo").unwrap(),
            "at most 0.1% of demand unserved over 7d: 0.06% over the first 3d2h, error budget 40% left; met"
        );
        assert_eq!(
            line(&e, "choice").unwrap(),
            "p80: the fewest pods of the candidates within the budget (0.08% unserved recently vs 0.12%); 0.82× the \
             pods of reactive@55%, the cheapest HPA target that met the SLO"
        );
        // Kept over a cheaper candidate: the line says why.
        let mut kept = report();
        kept.kept = Some(Kept::BeatsServed);
        assert!(
            choice_line(&kept, 0.9).starts_with(
                "p80: followed so far and still within the budget, held against cheaper ones: followed throughout, it \
                 held fewer pods and left less unserved over the SLO's window than what was served (0.08% unserved"
            ),
            "{}",
            choice_line(&kept, 0.9)
        );
        kept.kept = Some(Kept::Margin);
        assert!(
            choice_line(&kept, 0.9).contains("with less than 10% more pods than the cheapest there"),
            "{}",
            choice_line(&kept, 0.9)
        );
        assert_eq!(
            line(&e, "record").unwrap(),
            "what was served left 0.07% of demand unserved recently, 0.06% since start, with 0.85× the pods of \
             reactive@55%"
        );
        assert!(!e.summary.contains("SLO"), "{}", e.summary);

        // The window has filled and the realised share is over the SLO.
        let mut r = report();
        r.window = Some(WindowScore {
            unserved_fraction: 0.0014,
            covered_seconds: (7 * 86_400 + 600) as f64,
            error_budget_left: -0.4,
            met: false,
        });
        assert_eq!(
            slo_line(&r),
            "at most 0.1% of demand unserved over 7d: 0.14% over the whole window, error budget overspent by 40%; MISSED"
        );
        r.window = None;
        assert_eq!(
            slo_line(&r),
            "at most 0.1% of demand unserved over 7d: nothing served has been scored yet"
        );
        // The chosen candidate is the HPA target that met the SLO itself.
        let mut r = report();
        (r.chosen_quantile, r.chosen_utilization, r.reactive_chosen) = (None, Some(0.55), true);
        r.cost_vs_reactive_at_slo = Some(1.0);
        assert_eq!(
            choice_line(&r, 0.9),
            "reactive@55%: the fewest pods of the candidates within the budget (0.09% unserved recently vs 0.12%); it \
             is the cheapest HPA target that met the SLO"
        );
    }

    #[test]
    fn an_slo_that_cannot_be_met_is_said_plainly() {
        let mut r = report();
        r.slo_reachable = false;
        (r.chosen_quantile, r.chosen_utilization, r.reactive_chosen) = (None, Some(0.35), true);
        r.reactive_at_slo = None;
        r.cost_vs_reactive_at_slo = Some(1.0);
        for c in &mut r.candidates {
            c.qualifies = false;
            c.unserved_fraction = c.unserved_fraction.max(0.0035);
        }
        r.candidates[3].unserved_fraction = 0.003;
        r.candidates[3].unserved_fraction_steady = 0.0025;
        let e = explanation(Serving::Reactive, Some(r.clone()));
        assert_eq!(
            line(&e, "slo").unwrap(),
            "at most 0.1% of demand unserved over 7d: 0.06% over the first 3d2h, error budget 40% left; met; CANNOT BE \
             MET NOW: no candidate left at most 0.1% unserved both recently and over the window; reactive@35% left the \
             least over the window (0.25%) of the candidates holding no more pods than reactive@35% and is chosen"
        );
        assert_eq!(
            line(&e, "choice").unwrap(),
            "reactive@35%: the least demand unserved over the SLO's window of the candidates holding no more pods \
             than reactive@35% (0.25% over it, 0.3% recently; the SLO allows 0.1%); it is the HPA target that left \
             the least unserved (none met the SLO)"
        );
        assert!(
            e.summary.ends_with(
                " The SLO (at most 0.1% of demand unserved over 7d) cannot be met now: no candidate left so little \
                 demand unserved both recently and over the SLO's window."
            ),
            "{}",
            e.summary
        );
        // Before warm-up nothing is claimed about reachability.
        r.warmed_up = false;
        assert!(!slo_line(&r).contains("CANNOT"), "{}", slo_line(&r));
    }

    #[test]
    fn a_reactive_target_the_median_raised_says_what_the_forecast_expects() {
        let mut e = explanation(Serving::Reactive, Some(report()));
        e.bound = "median_floor".into();
        e.reactive.replicas = 4;
        e.forecast.median_demand = 45.0;
        let plan = ReplicaPlan {
            at: e.published_at,
            replicas: 5,
            served: 5.0,
            planned_demand: 27.0 / 0.55,
            median_demand: 45.0,
            observed_demand: Some(27.0),
            peak_at: None,
            window_end: e.published_at,
            quantile: 0.9,
            forecast_replicas: 4,
            reactive_floor: 3,
            bound: Bound::MedianFloor,
            utilization: Some(0.55),
        };
        e.summary = summary(&e, &plan, &plan);
        assert!(
            e.summary.contains(
                "5 replicas: the median forecast peaks at 45 requests/s within the next 5m15s; at 10 requests/s per \
                 replica that needs 5, more than the 4 observed demand of 27 requests/s needs at 55%"
            ),
            "{}",
            e.summary
        );
        assert!(line(&e, "served")
            .unwrap()
            .starts_with("5 replicas, decided by median floor (reactive at 55%"));
        // A median far above observed demand raises the target only as far as the most cautious reactive target
        // would hold it: 27 requests/s at 35% of 10 per replica is 8.
        e.forecast.median_demand = 200.0;
        e.replicas = 8;
        e.summary = summary(&e, &plan, &plan);
        assert!(
            e.summary.contains(
                "8 replicas: the median forecast peaks at 200 requests/s within the next 5m15s; at 10 requests/s per \
                 replica that needs 20, raised no further than the 8 observed demand of 27 requests/s needs at 35% \
                 (it needs 4 at 55%)"
            ),
            "{}",
            e.summary
        );
        // Or as far as maxReplicas allows.
        e.replicas = e.clamps.max;
        e.forecast.median_demand = 1000.0;
        e.summary = summary(&e, &plan, &plan);
        assert!(
            e.summary
                .contains("that needs 100, capped at maxReplicas 20 (observed demand of 27 requests/s needs 4"),
            "{}",
            e.summary
        );
    }

    #[test]
    fn the_served_line_names_the_reactive_target_and_warm_up_says_what_is_planned() {
        let e = explanation(Serving::Reactive, Some(report()));
        assert_eq!(
            line(&e, "served").unwrap(),
            "5 replicas, decided by reactive floor (reactive at 55% utilization, the SLO controller's choice; the \
             forecast plan would be 4)"
        );
        assert!(
            e.summary.starts_with(
                "Serving reactive@55%, the SLO controller's choice: no forecast quantile recently met the SLO for fewer \
                 pods (the forecast plan would be 4). 5 replicas: observed demand of 27 requests/s needs 5 at 55% of 10 \
                 requests/s per replica."
            ),
            "{}",
            e.summary
        );
        let e = explanation(Serving::Warming, None);
        assert_eq!(
            line(&e, "served").unwrap(),
            "5 replicas, decided by reactive floor (warming up, reactive at 55% utilization until the first model is \
             fitted)"
        );
        assert!(
            e.summary.starts_with(
                "Warming up: the first model is being fitted, so the reactive target (reactive@55%) is served until it \
                 is ready. 5 replicas"
            ),
            "{}",
            e.summary
        );
        let e = explanation(Serving::Demoted, Some(report()));
        assert!(line(&e, "served")
            .unwrap()
            .ends_with("(demoted to reactive at 55% utilization; the forecast plan would be 4)"));
        let mut r = report();
        r.warmed_up = false;
        r.scored_seconds = 2.0 * 3600.0 + 59.0;
        let e = explanation(Serving::Forecast, Some(r));
        assert_eq!(
            line(&e, "choice").unwrap(),
            "warming up (2h of decisions scored): planning at p90, the configured quantile, until then"
        );
        // Adaptation off: no SLO lines.
        let e = explanation(Serving::Forecast, None);
        assert!(["slo", "choice", "record"].iter().all(|l| line(&e, l).is_none()));
    }

    #[test]
    fn urls_escape_names() {
        assert_eq!(
            url("http://a:1/", "a b", "x/y"),
            "http://a:1/api/v1/workloads/a%20b/x%2Fy/explain"
        );
        assert_eq!(
            url("http://a:1/", "default", "llm-chat"),
            "http://a:1/api/v1/workloads/default/llm-chat/explain"
        );
    }
}
