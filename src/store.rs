//! The plan store: the pipeline publishes snapshots here; HTTP handlers read them without waiting on anything.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::control::engine::{Mode, Serving};
use crate::control::planner::ReplicaPlan;
use crate::control::policy::Policy;
use crate::control::quality;
use crate::forecast::Forecast;
use crate::series::Series;

/// How much recent demand the store keeps per workload, for the SRE page and API.
pub const RECENT_HISTORY: chrono::TimeDelta = chrono::TimeDelta::hours(6);

/// Identifies a workload: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WorkloadId {
    /// Kubernetes namespace the HPA lives in.
    pub namespace: String,
    /// Workload name (also the `workload` label on served metrics).
    pub name: String,
}

impl std::fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything known about one workload at one moment, published as a unit.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The workload.
    pub id: WorkloadId,
    /// When this snapshot was computed.
    pub published_at: DateTime<Utc>,
    /// End of the latest demand sample the plan saw.
    pub data_until: Option<DateTime<Utc>>,
    /// The forecast behind the plan.
    pub forecast: Arc<Forecast>,
    /// The plan served to the HPA.
    pub plan: ReplicaPlan,
}

/// Shared, read-mostly map of the latest snapshot per workload.
#[derive(Debug, Default)]
pub struct PlanStore {
    snapshots: RwLock<BTreeMap<WorkloadId, Arc<Snapshot>>>,
    statuses: RwLock<BTreeMap<WorkloadId, WorkloadStatus>>,
    insights: RwLock<BTreeMap<WorkloadId, Arc<Insight>>>,
    expected: RwLock<std::collections::BTreeSet<WorkloadId>>,
}

impl PlanStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the snapshot of `snapshot.id`.
    pub fn publish(&self, snapshot: Snapshot) {
        let mut map = self.snapshots.write().unwrap_or_else(|e| e.into_inner());
        map.insert(snapshot.id.clone(), Arc::new(snapshot));
    }

    /// The latest snapshot of every workload, ordered by namespace then name.
    pub fn all(&self) -> Vec<Arc<Snapshot>> {
        self.snapshots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The latest snapshots of the workloads in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Snapshot>> {
        let map = self.snapshots.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|s| s.id.namespace == namespace).cloned().collect()
    }

    /// The latest snapshot of one workload.
    pub fn get(&self, id: &WorkloadId) -> Option<Arc<Snapshot>> {
        self.snapshots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Registers a workload whose first cycle readiness waits for.
    pub fn expect(&self, id: WorkloadId) {
        self.expected.write().unwrap_or_else(|e| e.into_inner()).insert(id);
    }

    /// True once at least one plan is published and every expected workload has finished its first cycle (with a
    /// plan, or with a reported problem), so a new replica never answers for part of its workloads only.
    pub fn is_ready(&self) -> bool {
        let snapshots = self.snapshots.read().unwrap_or_else(|e| e.into_inner());
        if snapshots.is_empty() {
            return false;
        }
        let statuses = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        let expected = self.expected.read().unwrap_or_else(|e| e.into_inner());
        expected
            .iter()
            .all(|id| snapshots.contains_key(id) || statuses.contains_key(id))
    }
}

/// The health of one workload's pipeline, published every cycle whether or not a plan came out of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkloadStatus {
    /// Where demand comes from.
    pub source: String,
    /// Last time history was fetched (successfully or not).
    pub last_attempt: Option<DateTime<Utc>>,
    /// Last time a plan was published.
    pub last_success: Option<DateTime<Utc>>,
    /// The latest problem, if the last cycle had one ("no data", a source error).
    pub error: Option<String>,
    /// Slots in the history window.
    pub slots: usize,
    /// Missing slots in the history window.
    pub missing: usize,
    /// Samples dropped because they were NaN or ±Inf, since start.
    pub non_finite_dropped: usize,
    /// Models fitted since start.
    pub fits: u64,
    /// Duration of the latest fit, in seconds.
    pub last_fit_seconds: f64,
    /// History fetches that failed, since start.
    pub query_errors: u64,
    /// The startup replay of recent history (see [`crate::control::engine::Engine::replay`]); `None` before it starts or
    /// when it is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayStatus>,
}

/// Where a workload's startup replay stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayStatus {
    /// `running`, `done` or `failed`.
    pub state: ReplayState,
    /// Start of the replayed stretch.
    pub from: DateTime<Utc>,
    /// End of it (when the replay started).
    pub to: DateTime<Utc>,
    /// What was replayed (zero while running).
    #[serde(flatten)]
    pub replayed: crate::control::engine::Replayed,
    /// How long it took on its thread, in seconds (zero while running or failed).
    pub seconds: f64,
}

/// The state of a [`ReplayStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    /// Waiting for its turn (one replay at a time) or replaying; the workload is served meanwhile, with cold scores.
    Running,
    /// The replayed scores are in use.
    Done,
    /// The replay panicked; the workload warms up live.
    Failed,
}

/// What people need to understand one workload's plan: published next to each [`Snapshot`].
#[derive(Debug, Clone)]
pub struct Insight {
    /// The scaling policy.
    pub policy: Policy,
    /// The unit demand is measured in.
    pub unit: String,
    /// The configured mode.
    pub mode: Mode,
    /// What the served target follows now.
    pub serving: Serving,
    /// What the forecast asks for (served unless `serving` is reactive).
    pub forecast_plan: ReplicaPlan,
    /// What observed demand alone asks for.
    pub reactive_plan: ReplicaPlan,
    /// Recent demand, at most [`RECENT_HISTORY`].
    pub history: Series,
    /// Served targets over the same window, oldest first.
    pub targets: Vec<(DateTime<Utc>, u32)>,
    /// Forecast quality and demotion state.
    pub quality: quality::Report,
    /// Recent forecasts scored against what happened, oldest first.
    pub scored: Vec<quality::Score>,
    /// The adaptive quantile's scores and choice (`None` when adaptation is off).
    pub adaptive: Option<crate::control::service_level::Report>,
}

impl PlanStore {
    /// Replaces the insight of `id`.
    pub fn set_insight(&self, id: &WorkloadId, insight: Insight) {
        let mut map = self.insights.write().unwrap_or_else(|e| e.into_inner());
        map.insert(id.clone(), Arc::new(insight));
    }

    /// The latest insight of `id`.
    pub fn insight(&self, id: &WorkloadId) -> Option<Arc<Insight>> {
        self.insights.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

impl PlanStore {
    /// Replaces the status of `id`.
    pub fn set_status(&self, id: &WorkloadId, status: WorkloadStatus) {
        let mut map = self.statuses.write().unwrap_or_else(|e| e.into_inner());
        map.insert(id.clone(), status);
    }

    /// The status of `id`.
    pub fn status(&self, id: &WorkloadId) -> Option<WorkloadStatus> {
        self.statuses.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Every workload's status.
    pub fn statuses(&self) -> Vec<(WorkloadId, WorkloadStatus)> {
        let map = self.statuses.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
