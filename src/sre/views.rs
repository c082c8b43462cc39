//! View models of the SRE surfaces: what the admin JSON API serves and the page draws, built from the store.
//!
//! Kept apart from the admin router and the page so that both read the same values and neither imports the other.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::control::engine::{Mode, Serving};
use crate::control::planner;
use crate::control::quality::Health;
use crate::forecast::Quantile;
use crate::sre::explain::{self, Explanation, Standing};
use crate::store::{PlanStore, Snapshot, WorkloadId, WorkloadStatus};

/// Model facts of one workload's latest forecast.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// Model family.
    pub method: String,
    /// Seasonal periods in use.
    pub periods: Vec<String>,
    /// Weekday factors (Monday first) a daily model's forecast is multiplied by, with 6.5 days to two weeks of
    /// history, and the workload's days' offset from UTC they were read on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekday_factors: Option<crate::forecast::Weekdays>,
    /// Why a fallback is in use, if one is.
    pub fallback: Option<String>,
}

/// Forecast quality at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct QualityView {
    /// Trusted or demoted.
    pub health: Health,
    /// Interval coverage over the window.
    pub coverage: Option<f64>,
    /// Under-prediction rate over the window.
    pub under_rate: Option<f64>,
    /// Scored slots in the window.
    pub samples: usize,
}

/// The SLO at a glance: what it is and how the window has gone (see [`crate::control::service_level::Report`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloView {
    /// The share of demand that may go unserved.
    pub max_unserved: f64,
    /// The window it is measured over, in seconds.
    pub window_seconds: i64,
    /// The share of demand what was served left unserved over the window so far; `None` until scored.
    pub unserved_fraction: Option<f64>,
    /// Scored time the window holds, in seconds.
    pub covered_seconds: Option<f64>,
    /// `1 − unserved_fraction / max_unserved`: 1 untouched, 0 spent, negative overspent.
    pub error_budget_left: Option<f64>,
    /// True while the realised share is within the SLO; `None` until scored.
    pub met: Option<bool>,
    /// False once warmed up when no candidate recently met the SLO: it cannot be met now.
    pub reachable: bool,
    /// True once the controller has chosen (before: the configured quantile is planned).
    pub warmed_up: bool,
    /// The chosen candidate (`p80`, `reactive@55%`), `None` before warm-up.
    pub chosen: Option<String>,
}

impl SloView {
    /// The view of a controller's report.
    pub fn of(a: &crate::control::service_level::Report) -> Self {
        let w = a.window.as_ref();
        Self {
            max_unserved: a.slo_max_unserved,
            window_seconds: a.slo_window_seconds,
            unserved_fraction: w.map(|w| w.unserved_fraction),
            covered_seconds: w.map(|w| w.covered_seconds),
            error_budget_left: w.map(|w| w.error_budget_left),
            met: w.map(|w| w.met),
            reachable: !a.warmed_up || a.slo_reachable,
            warmed_up: a.warmed_up,
            chosen: a.warmed_up.then(|| a.chosen_label()),
        }
    }
}

/// One row of the workload list.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadView {
    /// The workload.
    pub id: WorkloadId,
    /// The replica that planned it, when another did (sharded replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_by: Option<String>,
    /// Pipeline health.
    pub status: WorkloadStatus,
    /// Replica target served to the HPA.
    pub replicas: Option<u32>,
    /// The value `prescale_replicas` serves: its ceiling is `replicas`, and it is placed so that the HPA's tolerance
    /// lets a scale-in through. What an HPA reading the plan from here (e.g. through KEDA) should target at 1.
    pub metric_value: Option<f64>,
    /// Demand the served target is sized for.
    pub planned_demand: Option<f64>,
    /// Median forecast demand over the lead window.
    pub median_demand: Option<f64>,
    /// Demand observed now.
    pub observed_demand: Option<f64>,
    /// Seconds since the served plan was computed.
    pub forecast_age_seconds: Option<i64>,
    /// Seconds since the end of the latest demand sample.
    pub data_age_seconds: Option<i64>,
    /// Why the API refuses to serve the workload (`not_planned`, `stale_data`, `stale_forecast`); `None` while it
    /// serves it.
    pub refused: Option<String>,
    /// What the API answers instead of a value, when `refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_message: Option<String>,
    /// Replicas the forecast asks for.
    pub forecast_replicas: Option<u32>,
    /// Replicas observed demand alone asks for.
    pub reactive_replicas: Option<u32>,
    /// Demand unit.
    pub unit: Option<String>,
    /// The configured mode.
    pub mode: Option<Mode>,
    /// What the served target follows.
    pub serving: Option<Serving>,
    /// The model in use.
    pub model: Option<ModelView>,
    /// Forecast quality.
    pub quality: Option<QualityView>,
    /// The SLO and its state; `None` when `adaptiveQuantile` is off.
    pub slo: Option<SloView>,
}

/// Every workload's row, ordered by namespace then name.
pub fn workload_views(store: &PlanStore, now: DateTime<Utc>) -> Vec<WorkloadView> {
    store
        .entries()
        .into_iter()
        .filter_map(|(id, entry)| {
            // One entry: the plan, insight and status of one cycle.
            let status = entry.status.clone()?;
            let snap = entry.snapshot.clone();
            let insight = entry.insight.clone();
            let refusal = entry.servable(store.max_forecast_age(), now).err();
            Some(WorkloadView {
                planned_by: entry.owner.as_ref().map(|o| o.replica.clone()),
                refused: refusal.as_ref().map(|r| r.reason().to_owned()),
                refused_message: refusal.as_ref().map(ToString::to_string),
                replicas: snap.as_ref().map(|s| s.plan.replicas),
                metric_value: snap.as_ref().map(|s| s.plan.served),
                planned_demand: snap.as_ref().map(|s| s.plan.planned_demand),
                median_demand: snap.as_ref().map(|s| s.plan.median_demand),
                observed_demand: snap.as_ref().and_then(|s| s.plan.observed_demand),
                forecast_age_seconds: snap.as_ref().map(|s| (now - s.published_at).num_seconds()),
                // The newest sample fetched, even when no plan was made from it (stale, or never planned).
                data_age_seconds: status
                    .data_until
                    .or(snap.as_ref().and_then(|s| s.data_until))
                    .map(|t| (now - t).num_seconds()),
                forecast_replicas: insight.as_ref().map(|i| i.forecast_plan.forecast_replicas),
                reactive_replicas: insight.as_ref().map(|i| i.reactive_plan.replicas),
                unit: insight.as_ref().map(|i| i.unit.clone()),
                mode: insight.as_ref().map(|i| i.mode),
                serving: insight
                    .as_ref()
                    .map(|i| i.serving)
                    .or(entry.owner.as_ref().map(|o| o.serving)),
                model: snap.as_ref().map(|s| ModelView {
                    method: s.forecast.method.to_string(),
                    periods: s.forecast.periods.iter().map(|p| crate::duration::format(*p)).collect(),
                    weekday_factors: s.forecast.weekday_factors,
                    fallback: s.forecast.fallback.clone(),
                }),
                quality: insight.as_ref().map(|i| QualityView {
                    health: i.quality.health,
                    coverage: i.quality.scores.coverage,
                    under_rate: i.quality.scores.under_rate,
                    samples: i.quality.scores.samples,
                }),
                slo: insight.as_ref().and_then(|i| i.adaptive.as_ref()).map(SloView::of),
                id,
                status,
            })
        })
        .collect()
}

/// A time and a value; `v` is `null` for a missing slot (never zero).
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Slot start.
    pub t: DateTime<Utc>,
    /// Value, if known.
    pub v: Option<f64>,
}

/// One forecast slot with its calibrated interval.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastPoint {
    /// Slot start.
    pub t: DateTime<Utc>,
    /// Median.
    pub median: f64,
    /// Lower end of the interval (the mirror of the planned quantile).
    pub lower: f64,
    /// The planned quantile (upper end of the interval).
    pub upper: f64,
}

/// The forecast with its intervals.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastView {
    /// Start of the first slot.
    pub origin: DateTime<Utc>,
    /// Slot length in seconds.
    pub step_seconds: i64,
    /// The planned quantile (`upper`).
    pub quantile: f64,
    /// The quantile of `lower`.
    pub lower_quantile: f64,
    /// The slots.
    pub points: Vec<ForecastPoint>,
}

/// Replicas at a time.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaPoint {
    /// When.
    pub t: DateTime<Utc>,
    /// Replicas.
    pub replicas: u32,
}

/// A past forecast scored against what happened.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredPoint {
    /// Slot start.
    pub t: DateTime<Utc>,
    /// When the forecast for the slot was made.
    pub issued_at: DateTime<Utc>,
    /// The planned quantile forecast for the slot.
    pub planned: f64,
    /// The lower end of the interval.
    pub lower: f64,
    /// The median.
    pub median: f64,
    /// Observed demand.
    pub actual: f64,
}

/// Everything about one workload: for the API and the page.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadDetail {
    /// The workload.
    pub id: WorkloadId,
    /// Demand unit.
    pub unit: String,
    /// Demand one replica serves.
    pub capacity_per_replica: f64,
    /// Recent demand, oldest first.
    pub history: Vec<Point>,
    /// The forecast.
    pub forecast: ForecastView,
    /// Replicas the forecast plan asks for at each future slot (what it will serve if the forecast holds).
    pub plan: Vec<ReplicaPoint>,
    /// Replica targets served recently, oldest first.
    pub served: Vec<ReplicaPoint>,
    /// Past forecasts (made one lead time ahead) against what happened, oldest first.
    pub scored: Vec<ScoredPoint>,
    /// Why the current target.
    pub explanation: Explanation,
}

/// One workload's detail, or `None` when it has no published plan.
pub fn workload_detail(store: &PlanStore, id: &WorkloadId, now: DateTime<Utc>) -> Option<WorkloadDetail> {
    let entry = store.entry(id)?;
    let snap = entry.snapshot.as_ref()?;
    let standing = Standing::of(store, &entry, now);
    Some(detail_of(snap, entry.insight.as_deref(), &standing, now))
}

fn detail_of(
    snap: &Snapshot,
    insight: Option<&crate::store::Insight>,
    standing: &Standing,
    now: DateTime<Utc>,
) -> WorkloadDetail {
    let f = &snap.forecast;
    let q = Quantile::try_new(snap.plan.quantile).unwrap_or(Quantile::MEDIAN);
    let mirror = Quantile::try_new(1.0 - q.get()).unwrap_or(Quantile::MEDIAN);
    let points = (0..f.len())
        .map(|i| {
            let (a, b) = (f.quantile_at(i, mirror), f.quantile_at(i, q));
            ForecastPoint {
                t: f.time_at(i),
                median: f.quantile_at(i, Quantile::MEDIAN),
                lower: a.min(b),
                upper: b,
            }
        })
        .collect();
    let plan = insight
        .map(|i| {
            (0..f.len())
                .map(|k| {
                    let t = f.time_at(k);
                    ReplicaPoint {
                        t,
                        replicas: planner::plan(f, None, &i.policy, t).replicas,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    WorkloadDetail {
        id: snap.id.clone(),
        unit: insight.map(|i| i.unit.clone()).unwrap_or_default(),
        capacity_per_replica: insight.map_or(0.0, |i| i.policy.capacity_per_replica),
        history: insight
            .map(|i| {
                let h = &i.history;
                h.values()
                    .enumerate()
                    .map(|(k, v)| Point { t: h.time_at(k), v })
                    .collect()
            })
            .unwrap_or_default(),
        forecast: ForecastView {
            origin: f.origin,
            step_seconds: f.step.num_seconds(),
            quantile: q.get(),
            lower_quantile: mirror.get().min(q.get()),
            points,
        },
        plan,
        served: insight
            .map(|i| {
                i.targets
                    .iter()
                    .map(|(t, r)| ReplicaPoint { t: *t, replicas: *r })
                    .collect()
            })
            .unwrap_or_default(),
        scored: insight
            .map(|i| {
                i.scored
                    .iter()
                    .map(|s| ScoredPoint {
                        t: s.prediction.slot,
                        issued_at: s.prediction.issued_at,
                        planned: s.prediction.planned,
                        lower: s.prediction.lower,
                        median: s.prediction.median,
                        actual: s.actual,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        explanation: explain::explain(snap, insight, standing, now),
    }
}
