//! The admin/SRE HTTP server: health, readiness, the SRE page and a JSON view of every workload.
//!
//! Plain HTTP on its own listener, separate from the aggregated API listener.
//!
//! | route | answers |
//! |---|---|
//! | `/` | the SRE page: workloads at a glance, a chart and the explanation per workload (self-contained HTML) |
//! | `/api/v1/workloads` | every workload: target, demand, model, serving state, quality, ages |
//! | `/api/v1/workloads/{namespace}/{name}` | one workload: recent history, the forecast with its intervals, the replica plan over the horizon, scored past forecasts, the explanation |
//! | `/api/v1/workloads/{namespace}/{name}/explain` | why the workload is served its replicas ([`explain::Explanation`]) |
//! | `/healthz`, `/livez`, `/readyz` | probes; ready once a forecast is published and every workload has finished its first cycle; `/readyz?verbose` adds a line per workload saying whether the API serves it |
//!
//! Readiness is the process's: once ready, a pod stays ready when one workload's data goes stale or its query
//! breaks. Its replicas all read the same Prometheus, so taking the pod out of the Service would not bring a
//! fresher plan, only make the APIService unavailable for every other workload (and every External-metric HPA in
//! the cluster). The workload's own answer says it instead: the API refuses it, the explanation and
//! `/api/v1/workloads` say why, `prescale_serving_refused` alerts.
//!
//! `/metrics` comes from [`crate::telemetry::Registry::router`], merged in by the composition root.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::Clock;
use crate::engine::{Mode, Serving};
use crate::explain::{self, Explanation, Standing};
use crate::forecast::Quantile;
use crate::planner;
use crate::quality::Health;
use crate::store::{PlanStore, Snapshot, WorkloadId, WorkloadStatus};
use crate::web;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Published plans and statuses.
    pub store: Arc<PlanStore>,
    /// Now.
    pub clock: Clock,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/workloads", get(workloads))
        .route("/api/v1/workloads/{namespace}/{name}", get(workload))
        .route("/api/v1/workloads/{namespace}/{name}/explain", get(explanation))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Response {
    let ready = state.store.is_ready();
    let verbose = query
        .as_deref()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "verbose"));
    if !verbose {
        return if ready {
            "ok".into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "no forecast published yet").into_response()
        };
    }
    let now = state.clock.now();
    let mut out = String::new();
    let (mut served, mut total) = (0, 0);
    for (id, _) in state.store.statuses() {
        total += 1;
        match state.store.servable(&id, now) {
            Ok(_) => {
                served += 1;
                out.push_str(&format!("[+]workload {id} served\n"));
            }
            Err(refusal) => out.push_str(&format!("[-]workload {id} not served: {refusal}\n")),
        }
    }
    if ready {
        out.push_str(&format!(
            "readyz check passed ({served} of {total} workloads served; a workload the API refuses does not make \
             the pod unready)\n"
        ));
        out.into_response()
    } else {
        out.push_str(
            "readyz check failed: no forecast published yet, or a workload has not finished its first cycle\n",
        );
        (StatusCode::SERVICE_UNAVAILABLE, out).into_response()
    }
}

/// Model facts of one workload's latest forecast.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// Model family.
    pub method: String,
    /// Seasonal periods in use.
    pub periods: Vec<String>,
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

/// The SLO at a glance: what it is and how the window has gone (see [`crate::service_level::Report`]).
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
    pub fn of(a: &crate::service_level::Report) -> Self {
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

fn method_name(m: crate::forecast::Method) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Every workload's row, ordered by namespace then name.
pub fn workload_views(store: &PlanStore, now: DateTime<Utc>) -> Vec<WorkloadView> {
    store
        .statuses()
        .into_iter()
        .map(|(id, status)| {
            let snap = store.get(&id);
            let insight = store.insight(&id);
            let refusal = store.servable(&id, now).err();
            WorkloadView {
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
                serving: insight.as_ref().map(|i| i.serving),
                model: snap.as_ref().map(|s| ModelView {
                    method: method_name(s.forecast.method),
                    periods: s
                        .forecast
                        .periods
                        .iter()
                        .map(|p| crate::config::format_duration(*p))
                        .collect(),
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
            }
        })
        .collect()
}

async fn workloads(State(state): State<AdminState>) -> Json<Vec<WorkloadView>> {
    Json(workload_views(&state.store, state.clock.now()))
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
    let snap = store.get(id)?;
    let insight = store.insight(id);
    let standing = Standing::of(store, id, now);
    Some(detail_of(&snap, insight.as_deref(), &standing, now))
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
                    .iter()
                    .enumerate()
                    .map(|(k, v)| Point { t: h.time_at(k), v: *v })
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

/// Why a workload could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The workload is not configured, or has no plan yet.
    #[error("{0}")]
    NotFound(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.to_string() });
        (StatusCode::NOT_FOUND, Json(body)).into_response()
    }
}

fn lookup(state: &AdminState, namespace: String, name: String) -> Result<WorkloadId, AdminError> {
    let id = WorkloadId { namespace, name };
    if state.store.get(&id).is_some() {
        return Ok(id);
    }
    if let Some(status) = state.store.status(&id) {
        return Err(AdminError::NotFound(format!(
            "workload {id} has no plan, so the API answers an error and the HPA holds its current scale: {}",
            status.error.map_or_else(
                || "its first forecast is being computed".to_owned(),
                |e| format!("the latest cycle reported: {e}")
            )
        )));
    }
    Err(AdminError::NotFound(format!("no workload {id} is configured")))
}

async fn workload(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<WorkloadDetail>, AdminError> {
    let id = lookup(&state, namespace, name)?;
    let detail = workload_detail(&state.store, &id, state.clock.now());
    detail
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("workload {id} has no forecast published yet")))
}

async fn explanation(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Explanation>, AdminError> {
    let id = lookup(&state, namespace, name)?;
    let snap = state
        .store
        .get(&id)
        .ok_or_else(|| AdminError::NotFound(format!("workload {id} has no forecast")))?;
    let insight = state.store.insight(&id);
    let now = state.clock.now();
    let standing = Standing::of(&state.store, &id, now);
    Ok(Json(explain::explain(&snap, insight.as_deref(), &standing, now)))
}

async fn page(State(state): State<AdminState>) -> Response {
    let now = state.clock.now();
    let views = workload_views(&state.store, now);
    let details: Vec<WorkloadDetail> = views
        .iter()
        .filter_map(|v| workload_detail(&state.store, &v.id, now))
        .collect();
    let html = web::page(&views, &details, now);
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}
