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
//! | `/healthz`, `/livez`, `/readyz` | probes; ready once a forecast is published and every workload has finished its first cycle (with `--watch-objects`, once the controller has listed its objects too; then no workload at all is ready as well); `/readyz?verbose` adds a line per workload saying whether the API serves it, and what else readiness waits for |
//!
//! Readiness is the process's: once ready, a pod stays ready when one workload's data goes stale or its query
//! breaks. Its replicas all read the same Prometheus, so taking the pod out of the Service would not bring a
//! fresher plan, only make the APIService unavailable for every other workload (and every External-metric HPA in
//! the cluster). The workload's own answer says it instead: the API refuses it, the explanation and
//! `/api/v1/workloads` say why, `prescale_serving_refused` alerts.
//!
//!
//! `/metrics` comes from [`crate::sre::telemetry::Registry::router`], merged in by the composition root.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::clock::Clock;
use crate::control::engine::Serving;
use crate::sre::explain::{self, Explanation, Standing};
use crate::sre::views::{workload_detail, workload_views, WorkloadDetail, WorkloadView};
use crate::sre::web;
use crate::store::{PlanStore, WorkloadId};

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

/// How `/readyz?verbose` marks a served workload whose first model is still being fitted.
pub const WARMING_NOTE: &str = "warming up: the reactive target until the first model is fitted";

/// How `/readyz?verbose` marks a served workload that adopted its saved state and serves its last plan until its
/// first model since the restart is fitted.
pub const RESTORED_NOTE: &str = "warming up: restored, the last plan until the first model is fitted";

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
    for what in state.store.held_by() {
        out.push_str(&format!("[-]waiting for {what}\n"));
    }
    let (mut served, mut total, mut warming) = (0, 0, 0);
    for (id, entry) in state.store.entries() {
        total += 1;
        match entry.servable(state.store.max_forecast_age(), now) {
            Ok(_)
                if entry
                    .insight
                    .as_ref()
                    .is_some_and(|i| matches!(i.serving, Serving::Warming | Serving::Restored)) =>
            {
                (served, warming) = (served + 1, warming + 1);
                let restored = entry.insight.as_ref().is_some_and(|i| i.serving == Serving::Restored);
                let note = if restored { RESTORED_NOTE } else { WARMING_NOTE };
                out.push_str(&format!("[+]workload {id} served ({note})\n"));
            }
            Ok(_) => {
                served += 1;
                out.push_str(&format!("[+]workload {id} served\n"));
            }
            Err(refusal) => out.push_str(&format!("[-]workload {id} not served: {refusal}\n")),
        }
    }
    if ready {
        out.push_str(&format!(
            "readyz check passed ({served} of {total} workloads served, {warming} of them warming up; a workload the \
             API refuses does not make the pod unready)\n"
        ));
        out.into_response()
    } else {
        out.push_str(
            "readyz check failed: no forecast published yet, a workload has not finished its first cycle, or the \
             controller has not listed its objects yet\n",
        );
        (StatusCode::SERVICE_UNAVAILABLE, out).into_response()
    }
}

async fn workloads(State(state): State<AdminState>) -> Json<Vec<WorkloadView>> {
    Json(workload_views(&state.store, state.clock.now()))
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
    let entry = state.store.entry(&id);
    if entry.as_ref().is_some_and(|e| e.snapshot.is_some()) {
        return Ok(id);
    }
    if let Some(status) = entry.and_then(|e| e.status.clone()) {
        return Err(AdminError::NotFound(format!(
            "workload {id} has no plan, so the API answers an error and the HPA holds its current scale: {}",
            match (status.problem, status.error) {
                (Some(problem), Some(e)) => format!("{problem}; the latest cycle reported: {e}"),
                (None, Some(e)) => format!("the latest cycle reported: {e}"),
                (_, None) => "its first forecast is being computed".to_owned(),
            }
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
    let no_forecast = || AdminError::NotFound(format!("workload {id} has no forecast"));
    let entry = state.store.entry(&id).ok_or_else(no_forecast)?;
    let snap = entry.snapshot.as_ref().ok_or_else(no_forecast)?;
    let now = state.clock.now();
    let standing = Standing::of(&state.store, &entry, now);
    Ok(Json(explain::explain(snap, entry.insight.as_deref(), &standing, now)))
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
