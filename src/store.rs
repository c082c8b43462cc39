//! The plan store: the pipeline publishes snapshots here; HTTP handlers read them without waiting on anything.
//!
//! [`PlanStore::servable`] is the one place that decides whether a workload's plan may be served: the API, the
//! explanation, readiness and the metrics all ask it, so none of them can tell a different story.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
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
#[derive(Debug)]
pub struct PlanStore {
    snapshots: RwLock<BTreeMap<WorkloadId, Arc<Snapshot>>>,
    statuses: RwLock<BTreeMap<WorkloadId, WorkloadStatus>>,
    insights: RwLock<BTreeMap<WorkloadId, Arc<Insight>>>,
    expected: RwLock<std::collections::BTreeSet<WorkloadId>>,
    max_data_ages: RwLock<BTreeMap<WorkloadId, TimeDelta>>,
    max_forecast_age: TimeDelta,
}

impl Default for PlanStore {
    fn default() -> Self {
        Self {
            snapshots: Default::default(),
            statuses: Default::default(),
            insights: Default::default(),
            expected: Default::default(),
            max_data_ages: Default::default(),
            max_forecast_age: DEFAULT_MAX_FORECAST_AGE,
        }
    }
}

/// The `maxForecastAge` of a store built with [`PlanStore::new`], the config file's default.
pub const DEFAULT_MAX_FORECAST_AGE: TimeDelta = TimeDelta::minutes(5);

impl PlanStore {
    /// An empty store refusing plans older than [`DEFAULT_MAX_FORECAST_AGE`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store refusing plans older than `max_forecast_age` (`maxForecastAge`).
    pub fn with_max_forecast_age(mut self, max_forecast_age: TimeDelta) -> Self {
        self.max_forecast_age = max_forecast_age;
        self
    }

    /// Plans older than this are not served.
    pub fn max_forecast_age(&self) -> TimeDelta {
        self.max_forecast_age
    }

    /// Refuses plans of `id` made from demand data older than `max_data_age` (`maxDataAge`); the pipeline sets it
    /// every cycle. A workload without one is bounded by its forecast age only.
    pub fn limit_data_age(&self, id: &WorkloadId, max_data_age: TimeDelta) {
        let mut map = self.max_data_ages.write().unwrap_or_else(|e| e.into_inner());
        if map.get(id) != Some(&max_data_age) {
            map.insert(id.clone(), max_data_age);
        }
    }

    /// The data-age bound of `id`, if one is set.
    pub fn max_data_age(&self, id: &WorkloadId) -> Option<TimeDelta> {
        self.max_data_ages
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    /// Every workload the store knows in `namespace` (configured, reporting a status, or with a plan), by name.
    pub fn known_in(&self, namespace: &str) -> Vec<WorkloadId> {
        let mut ids = std::collections::BTreeSet::new();
        let ours = |id: &&WorkloadId| id.namespace == namespace;
        ids.extend(
            self.expected
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(ours)
                .cloned(),
        );
        ids.extend(
            self.statuses
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .filter(ours)
                .cloned(),
        );
        ids.extend(
            self.snapshots
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .filter(ours)
                .cloned(),
        );
        ids.into_iter().collect()
    }

    /// The plan of `id` if the API may serve it at `now`, or why not.
    ///
    /// In order: no plan yet; a plan made from data older than the workload's `maxDataAge` (checked first: when the
    /// data stops, the pipeline stops publishing and the plan soon ages too, but the data is the cause); a plan
    /// older than `maxForecastAge`.
    pub fn servable(&self, id: &WorkloadId, now: DateTime<Utc>) -> Result<Arc<Snapshot>, Refusal> {
        let problem = || self.status(id).and_then(|s| s.problem);
        let Some(snapshot) = self.get(id) else {
            return Err(Refusal::NotPlanned { problem: problem() });
        };
        if let (Some(until), Some(max)) = (snapshot.data_until, self.max_data_age(id)) {
            let age = now - until;
            if age > max {
                return Err(Refusal::StaleData { age, max });
            }
        }
        let age = now - snapshot.published_at;
        if age > self.max_forecast_age {
            return Err(Refusal::StaleForecast {
                age,
                max: self.max_forecast_age,
                problem: problem(),
            });
        }
        Ok(snapshot)
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

/// Why the API does not serve a workload's plan: it answers an error, and the HPA holds its current scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No plan has been published yet: the first cycle is running, or every cycle so far had `problem`.
    NotPlanned {
        /// What the latest cycle ran into; `None` while the first is still running.
        problem: Option<Problem>,
    },
    /// The newest demand sample behind the plan ended longer ago than the workload's `maxDataAge`.
    StaleData {
        /// How long ago.
        age: TimeDelta,
        /// The bound.
        max: TimeDelta,
    },
    /// The plan was published longer ago than `maxForecastAge`.
    StaleForecast {
        /// How long ago.
        age: TimeDelta,
        /// The bound.
        max: TimeDelta,
        /// Why no newer plan came, if the pipeline knows.
        problem: Option<Problem>,
    },
}

impl Refusal {
    /// A stable name: `not_planned`, `stale_data` or `stale_forecast` (metric label, JSON).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotPlanned { .. } => "not_planned",
            Refusal::StaleData { .. } => "stale_data",
            Refusal::StaleForecast { .. } => "stale_forecast",
        }
    }
}

impl std::fmt::Display for Refusal {
    /// What is wrong, without backend detail (this text reaches the HPA's events).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |d: &TimeDelta| crate::duration::format(TimeDelta::seconds(d.num_seconds()));
        let because = |p: &Option<Problem>| p.map_or(String::new(), |p| format!(": {p}"));
        match self {
            Refusal::NotPlanned { problem: None } => {
                write!(f, "it has no plan yet: its first forecast is being computed")
            }
            Refusal::NotPlanned { problem } => write!(f, "it has no plan{}", because(problem)),
            Refusal::StaleData { age, max } => write!(
                f,
                "its data is stale: the newest demand sample ended {} ago, more than maxDataAge {} (the source \
                 stopped reporting)",
                secs(age),
                secs(max)
            ),
            Refusal::StaleForecast { age, max, problem } => write!(
                f,
                "its plan is stale: published {} ago, more than maxForecastAge {}{}",
                secs(age),
                secs(max),
                because(problem)
            ),
        }
    }
}

/// What kept a cycle from publishing a plan, in terms a caller of the API may see (the detail, which may carry
/// backend text, is [`WorkloadStatus::error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The history fetch failed (Prometheus unreachable, a query it rejects).
    QueryFailed,
    /// The source answered, with no sample in the history window (a query matching no series).
    NoData,
    /// The source answered, but its newest sample is older than `maxDataAge` (a dead exporter).
    StaleData,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Problem::QueryFailed => "the demand query fails",
            Problem::NoData => "the demand query returns no samples",
            Problem::StaleData => "the demand query returns only old samples",
        })
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
    /// What kind of problem `error` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// End of the newest demand sample fetched (whether or not a plan was made from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_until: Option<DateTime<Utc>>,
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
