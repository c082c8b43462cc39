//! The admin/SRE HTTP server: health, readiness and a JSON view of every workload.
//!
//! Plain HTTP on its own listener, separate from the aggregated API listener.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::clock::Clock;
use crate::store::{PlanStore, WorkloadId, WorkloadStatus};

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
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/workloads", get(workloads))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.store.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no forecast published yet").into_response()
    }
}

#[derive(Serialize)]
struct WorkloadView {
    id: WorkloadId,
    status: WorkloadStatus,
    replicas: Option<u32>,
    planned_demand: Option<f64>,
    median_demand: Option<f64>,
    observed_demand: Option<f64>,
    forecast_age_seconds: Option<i64>,
}

async fn workloads(State(state): State<AdminState>) -> Json<Vec<WorkloadView>> {
    let now = state.clock.now();
    let views = state
        .store
        .statuses()
        .into_iter()
        .map(|(id, status)| {
            let snap = state.store.get(&id);
            WorkloadView {
                replicas: snap.as_ref().map(|s| s.plan.replicas),
                planned_demand: snap.as_ref().map(|s| s.plan.planned_demand),
                median_demand: snap.as_ref().map(|s| s.plan.median_demand),
                observed_demand: snap.as_ref().and_then(|s| s.plan.observed_demand),
                forecast_age_seconds: snap.as_ref().map(|s| (now - s.published_at).num_seconds()),
                id,
                status,
            }
        })
        .collect();
    Json(views)
}
