//! The plan store: the pipeline publishes snapshots here; HTTP handlers read them without waiting on anything.
//!
//! [`PlanStore::servable`] is the one place that decides whether a workload's plan may be served: the API, the
//! explanation, readiness and the metrics all ask it, so none of them can tell a different story.

use std::collections::{BTreeMap, BTreeSet};
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

/// Everything the store holds about one workload, replaced as a unit: a reader of an [`Entry`] sees one cycle's
/// plan, insight and status together, never a new insight beside an old plan.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The latest plan; `None` until the first cycle that made one.
    pub snapshot: Option<Arc<Snapshot>>,
    /// What explains [`Self::snapshot`], published with it.
    pub insight: Option<Arc<Insight>>,
    /// The pipeline's health after its latest cycle, planned or not; `None` before the first cycle ends.
    pub status: Option<WorkloadStatus>,
    /// `maxDataAge`: plans made from demand data older than this are refused.
    pub max_data_age: Option<TimeDelta>,
    /// The replica that planned [`Self::snapshot`] when another did (sharded replicas, [`crate::peers`]); `None`
    /// when this replica planned it. A plan from a peer comes without its insight and forecast detail: only the
    /// plan, what it follows and a summary of the model behind it.
    pub owner: Option<Remote>,
}

/// Who planned a plan this replica serves for another, and what the plan follows there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The owner's identity (its pod's name).
    pub replica: String,
    /// What the owner's served target follows.
    pub serving: Serving,
}

impl Entry {
    /// The plan if the API may serve it at `now` under `max_forecast_age`, or why not (see [`PlanStore::servable`]).
    pub fn servable(&self, max_forecast_age: TimeDelta, now: DateTime<Utc>) -> Result<Arc<Snapshot>, Refusal> {
        let problem = || self.status.as_ref().and_then(|s| s.problem);
        let Some(snapshot) = &self.snapshot else {
            return Err(Refusal::NotPlanned { problem: problem() });
        };
        if let (Some(until), Some(max)) = (snapshot.data_until, self.max_data_age) {
            let age = now - until;
            if age > max {
                return Err(Refusal::StaleData { age, max });
            }
        }
        let age = now - snapshot.published_at;
        if age > max_forecast_age {
            return Err(Refusal::StaleForecast {
                age,
                max: max_forecast_age,
                problem: problem(),
            });
        }
        Ok(snapshot.clone())
    }
}

/// What one pipeline cycle publishes: its status always, and a plan with its insight when it made one.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The pipeline's health after the cycle.
    pub status: WorkloadStatus,
    /// The new plan and what explains it; `None` leaves the last plan in place (it ages until it is refused).
    pub plan: Option<(Arc<Snapshot>, Arc<Insight>)>,
}

/// Shared, read-mostly map of every workload's latest [`Entry`].
///
/// Writers replace a workload's entry whole (copy on write), so a reader holding an `Arc<Entry>` never sees half a
/// cycle; the lock is held only to swap or clone an `Arc`.
#[derive(Debug)]
pub struct PlanStore {
    entries: RwLock<BTreeMap<WorkloadId, Arc<Entry>>>,
    max_forecast_age: TimeDelta,
    holds: RwLock<Holds>,
}

/// What readiness waits for besides the workloads' first cycles.
#[derive(Debug, Default)]
struct Holds {
    /// Not yet released.
    pending: BTreeSet<&'static str>,
    /// A hold was released: the set of workloads is known, and may be empty.
    released: bool,
}

impl Default for PlanStore {
    fn default() -> Self {
        Self {
            entries: Default::default(),
            max_forecast_age: DEFAULT_MAX_FORECAST_AGE,
            holds: Default::default(),
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

    /// Replaces `id`'s entry with `change` applied to a copy of it (a new entry when there was none), in one step.
    fn update(&self, id: &WorkloadId, change: impl FnOnce(&mut Entry)) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(id.clone()).or_default();
        let mut next = Entry::clone(entry);
        change(&mut next);
        *entry = Arc::new(next);
    }

    /// The entry of `id`: its plan, insight and status from the same cycle.
    pub fn entry(&self, id: &WorkloadId) -> Option<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Every entry, ordered by namespace then name.
    pub fn entries(&self) -> Vec<(WorkloadId, Arc<Entry>)> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(id, e)| (id.clone(), e.clone())).collect()
    }

    /// Publishes one cycle of `id`: its status, and its plan with its insight when it made one, as one unit.
    pub fn record(&self, id: &WorkloadId, publication: Publication) {
        let Publication { status, plan } = publication;
        self.update(id, |entry| {
            entry.status = Some(status);
            if let Some((snapshot, insight)) = plan {
                entry.snapshot = Some(snapshot);
                entry.insight = Some(insight);
                entry.owner = None;
            }
        });
    }

    /// Takes the plan of `snapshot.id` that replica `owner` published, unless this store holds a plan of the
    /// workload at least as new: peers' plans never replace a newer one, whoever made it. The entry's insight, which
    /// described an older plan of this replica's, is dropped; its status names the owner. True when taken.
    pub fn record_remote(&self, snapshot: Snapshot, owner: Remote, max_data_age: Option<TimeDelta>) -> bool {
        let id = snapshot.id.clone();
        let newer = |entry: Option<&Arc<Entry>>| {
            entry
                .and_then(|e| e.snapshot.as_ref())
                .is_none_or(|s| s.published_at < snapshot.published_at)
        };
        if !newer(self.entry(&id).as_ref()) {
            return false;
        }
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let current = map.get(&id);
        if !newer(current) {
            return false;
        }
        let status = WorkloadStatus {
            last_attempt: Some(snapshot.published_at),
            last_success: Some(snapshot.published_at),
            data_until: snapshot.data_until,
            ..WorkloadStatus::of_remote(&owner)
        };
        let next = Entry {
            snapshot: Some(Arc::new(snapshot)),
            insight: None,
            status: Some(status),
            max_data_age: max_data_age.or(current.and_then(|e| e.max_data_age)),
            owner: Some(owner),
        };
        map.insert(id, Arc::new(next));
        true
    }

    /// Notes that replica `owner` runs `id` without a plan so far, because of `problem` (`None`: its first cycle
    /// is under way): the workload's first cycle has ended as far as readiness goes when the owner's has, and the
    /// API's refusal names the owner's problem. Nothing changes when this store holds a plan of it.
    pub fn record_remote_unplanned(&self, id: &WorkloadId, owner: Remote, problem: Option<Problem>) {
        if self.entry(id).is_some_and(|e| e.snapshot.is_some()) {
            return;
        }
        self.update(id, |entry| {
            if entry.snapshot.is_some() {
                return;
            }
            entry.status = problem.map(|p| WorkloadStatus {
                error: Some(format!("on replica {}: {p}", owner.replica)),
                problem: Some(p),
                ..WorkloadStatus::of_remote(&owner)
            });
            entry.owner = Some(owner);
        });
    }

    /// The replica that planned `id`'s plan, when another did.
    pub fn owner(&self, id: &WorkloadId) -> Option<Remote> {
        self.entry(id)?.owner.clone()
    }

    /// Refuses plans of `id` made from demand data older than `max_data_age` (`maxDataAge`); the pipeline sets it
    /// every cycle. A workload without one is bounded by its forecast age only.
    pub fn limit_data_age(&self, id: &WorkloadId, max_data_age: TimeDelta) {
        if self.entry(id).is_some_and(|e| e.max_data_age == Some(max_data_age)) {
            return;
        }
        self.update(id, |entry| entry.max_data_age = Some(max_data_age));
    }

    /// The data-age bound of `id`, if one is set.
    pub fn max_data_age(&self, id: &WorkloadId) -> Option<TimeDelta> {
        self.entry(id)?.max_data_age
    }

    /// Every workload the store knows in `namespace` (configured, reporting a status, or with a plan), by name.
    pub fn known_in(&self, namespace: &str) -> Vec<WorkloadId> {
        self.known_among(namespace, None)
    }

    /// [`PlanStore::known_in`], only among `names` when given (in name order, each once): what a selector that pins
    /// the workload label asks for, found without walking the namespace. The namespace itself is a range of the
    /// map, never a scan of every workload.
    pub fn known_among(&self, namespace: &str, names: Option<&[String]>) -> Vec<WorkloadId> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match names {
            Some(names) => {
                let mut names: Vec<&String> = names.iter().collect();
                names.sort();
                names.dedup();
                names
                    .into_iter()
                    .map(|name| WorkloadId {
                        namespace: namespace.to_owned(),
                        name: name.clone(),
                    })
                    .filter(|id| map.contains_key(id))
                    .collect()
            }
            None => {
                let first = WorkloadId {
                    namespace: namespace.to_owned(),
                    name: String::new(),
                };
                map.range(first..)
                    .map(|(id, _)| id)
                    .take_while(|id| id.namespace == namespace)
                    .cloned()
                    .collect()
            }
        }
    }

    /// True when the store knows `id` (configured, reporting a status, or with a plan).
    pub fn knows(&self, id: &WorkloadId) -> bool {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).contains_key(id)
    }

    /// Forgets `id` entirely: its plan is no longer served, and readiness no longer waits for it.
    pub fn remove(&self, id: &WorkloadId) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The plan of `id` if the API may serve it at `now`, or why not.
    ///
    /// In order: no plan yet; a plan made from data older than the workload's `maxDataAge` (checked first: when the
    /// data stops, the pipeline stops publishing and the plan soon ages too, but the data is the cause); a plan
    /// older than `maxForecastAge`.
    pub fn servable(&self, id: &WorkloadId, now: DateTime<Utc>) -> Result<Arc<Snapshot>, Refusal> {
        match self.entry(id) {
            Some(entry) => entry.servable(self.max_forecast_age, now),
            None => Err(Refusal::NotPlanned { problem: None }),
        }
    }

    /// Replaces the snapshot of `snapshot.id`, leaving its insight and status as they are.
    pub fn publish(&self, snapshot: Snapshot) {
        let id = snapshot.id.clone();
        self.update(&id, |entry| entry.snapshot = Some(Arc::new(snapshot)));
    }

    /// The latest snapshot of one workload.
    pub fn get(&self, id: &WorkloadId) -> Option<Arc<Snapshot>> {
        self.entry(id)?.snapshot.clone()
    }

    /// Registers a workload whose first cycle readiness waits for.
    pub fn expect(&self, id: WorkloadId) {
        self.update(&id, |_| {});
    }

    /// Makes readiness wait for `what` (the controller's first list of its objects, which decides what workloads
    /// there are) until [`Self::release`].
    pub fn hold(&self, what: &'static str) {
        self.holds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .insert(what);
    }

    /// Readiness stops waiting for `what`. From then on a store with no workload at all is ready: whoever held it
    /// has found nothing to plan, which is not a failure to plan.
    pub fn release(&self, what: &'static str) {
        let mut holds = self.holds.write().unwrap_or_else(|e| e.into_inner());
        if holds.pending.remove(what) {
            holds.released = true;
        }
    }

    /// What readiness still waits for besides the workloads (see [`Self::hold`]).
    pub fn held_by(&self) -> Vec<&'static str> {
        let holds = self.holds.read().unwrap_or_else(|e| e.into_inner());
        holds.pending.iter().copied().collect()
    }

    /// True once nothing holds readiness ([`Self::hold`]), every known workload has finished its first cycle (with
    /// a plan, or with a reported problem), so a new replica never answers for part of its workloads only, and at
    /// least one plan is published, or, after a hold was released, there is no workload at all.
    pub fn is_ready(&self) -> bool {
        let holds = self.holds.read().unwrap_or_else(|e| e.into_inner());
        if !holds.pending.is_empty() {
            return false;
        }
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let finished = map.values().all(|e| e.snapshot.is_some() || e.status.is_some());
        let planned = map.values().any(|e| e.snapshot.is_some()) || (holds.released && map.is_empty());
        finished && planned
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

impl WorkloadStatus {
    /// The status of a workload `owner` plans, as far as this replica knows it.
    fn of_remote(owner: &Remote) -> Self {
        Self {
            source: format!("planned by replica {}", owner.replica),
            ..Default::default()
        }
    }
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
    /// Replaces the insight of `id`, leaving its plan and status as they are.
    pub fn set_insight(&self, id: &WorkloadId, insight: Insight) {
        self.update(id, |entry| entry.insight = Some(Arc::new(insight)));
    }

    /// The latest insight of `id`.
    pub fn insight(&self, id: &WorkloadId) -> Option<Arc<Insight>> {
        self.entry(id)?.insight.clone()
    }

    /// Replaces the status of `id`, leaving its plan and insight as they are.
    pub fn set_status(&self, id: &WorkloadId, status: WorkloadStatus) {
        self.update(id, |entry| entry.status = Some(status));
    }

    /// The status of `id`.
    pub fn status(&self, id: &WorkloadId) -> Option<WorkloadStatus> {
        self.entry(id)?.status.clone()
    }

    /// Every workload's status.
    pub fn statuses(&self) -> Vec<(WorkloadId, WorkloadStatus)> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter_map(|(id, e)| Some((id.clone(), e.status.clone()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;
    use crate::control::engine::{Mode, Serving};
    use crate::control::planner;
    use crate::control::quality::{Bounds, Tracker};

    fn id() -> WorkloadId {
        WorkloadId {
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    /// Cycle `i`: a plan published at `t(i)`, an insight whose one target is `(t(i), i)`, a status with `i` fits.
    fn cycle(i: i64) -> Publication {
        let at = t(i);
        let policy = Policy::new(1.0, 100);
        let forecast = Forecast::from_median(at, TimeDelta::minutes(1), vec![1.0; 5], at);
        let plan = planner::plan(&forecast, Some(1.0), &policy, at);
        let insight = Insight {
            unit: "requests/s".into(),
            mode: Mode::Serve,
            serving: Serving::Forecast,
            forecast_plan: plan.clone(),
            reactive_plan: plan.clone(),
            history: Series::empty(at, TimeDelta::minutes(1)),
            targets: vec![(at, u32::try_from(i).unwrap())],
            quality: Tracker::new(Bounds::default(), policy.quantile).report(),
            scored: Vec::new(),
            adaptive: None,
            policy,
        };
        let snapshot = Snapshot {
            id: id(),
            published_at: at,
            data_until: Some(at),
            forecast: Arc::new(forecast),
            plan,
        };
        let status = WorkloadStatus {
            fits: u64::try_from(i).unwrap(),
            last_success: Some(at),
            ..Default::default()
        };
        Publication {
            status,
            plan: Some((Arc::new(snapshot), Arc::new(insight))),
        }
    }

    #[test]
    fn readers_see_a_cycle_whole_while_it_is_replaced() {
        let store = Arc::new(PlanStore::new());
        store.record(&id(), cycle(0));
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 1..=2_000 {
                    store.record(&id(), cycle(i));
                }
            })
        };
        let mut seen = std::collections::BTreeSet::new();
        while !writer.is_finished() || seen.len() < 2 {
            let entry = store.entry(&id()).expect("recorded");
            let (snapshot, insight, status) = (
                entry.snapshot.as_ref().unwrap(),
                entry.insight.as_ref().unwrap(),
                entry.status.as_ref().unwrap(),
            );
            let i = status.fits;
            assert_eq!(
                snapshot.published_at,
                t(i64::try_from(i).unwrap()),
                "plan of another cycle than status {i}"
            );
            assert_eq!(
                insight.targets,
                vec![(snapshot.published_at, u32::try_from(i).unwrap())]
            );
            seen.insert(i);
        }
        writer.join().unwrap();
        assert_eq!(store.entry(&id()).unwrap().status.as_ref().unwrap().fits, 2_000);
    }

    #[test]
    fn a_cycle_without_a_plan_keeps_the_last_plan_and_its_insight() {
        let store = PlanStore::new();
        store.record(&id(), cycle(1));
        let status = WorkloadStatus {
            problem: Some(Problem::QueryFailed),
            ..Default::default()
        };
        store.record(&id(), Publication { status, plan: None });
        let entry = store.entry(&id()).unwrap();
        assert_eq!(entry.snapshot.as_ref().unwrap().published_at, t(1));
        assert_eq!(entry.insight.as_ref().unwrap().targets, vec![(t(1), 1)]);
        assert_eq!(entry.status.as_ref().unwrap().problem, Some(Problem::QueryFailed));
        // The refusal names the cycle's problem once the plan ages out.
        let refusal = store.servable(&id(), t(1) + TimeDelta::minutes(6)).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::StaleForecast {
                problem: Some(Problem::QueryFailed),
                ..
            }
        ));
    }

    #[test]
    fn a_peers_plan_is_taken_only_when_newer_and_a_local_plan_takes_the_workload_back() {
        let store = PlanStore::new();
        let peer = |i: i64| {
            let (snapshot, _) = cycle(i).plan.unwrap();
            Snapshot::clone(&snapshot)
        };
        let remote = || Remote {
            replica: "prescale-1".into(),
            serving: Serving::Forecast,
        };
        store.expect(id());
        assert!(!store.is_ready(), "waits for the owner's plan");
        store.record_remote_unplanned(&id(), remote(), None);
        assert!(!store.is_ready(), "the owner's first cycle is under way");
        store.record_remote_unplanned(&id(), remote(), Some(Problem::NoData));
        assert!(
            store.status(&id()).is_some_and(|s| s.problem == Some(Problem::NoData)),
            "the owner's first cycle ended with a problem: readiness no longer waits for it"
        );
        assert_eq!(
            store.servable(&id(), t(2)).unwrap_err(),
            Refusal::NotPlanned {
                problem: Some(Problem::NoData)
            },
            "the refusal names the owner's problem"
        );
        assert!(store.record_remote(peer(2), remote(), Some(TimeDelta::minutes(10))));
        store.record_remote_unplanned(&id(), remote(), Some(Problem::QueryFailed));
        assert!(store.entry(&id()).unwrap().snapshot.is_some(), "a plan is kept");
        assert!(store.is_ready(), "a peer's plan counts as this workload's first plan");
        let entry = store.entry(&id()).unwrap();
        assert_eq!(entry.owner, Some(remote()));
        assert!(entry.insight.is_none());
        assert_eq!(entry.max_data_age, Some(TimeDelta::minutes(10)));
        assert_eq!(entry.status.as_ref().unwrap().source, "planned by replica prescale-1");
        assert!(store.servable(&id(), t(2)).is_ok());
        assert!(!store.record_remote(peer(2), remote(), None), "not newer");
        assert!(!store.record_remote(peer(1), remote(), None), "older");
        // This replica's own plan replaces it, and an older peer plan never replaces a newer own one.
        store.record(&id(), cycle(3));
        assert_eq!(store.owner(&id()), None);
        assert!(!store.record_remote(peer(2), remote(), None));
        assert!(
            store.record_remote(peer(4), remote(), None),
            "a newer plan of a new owner"
        );
        assert_eq!(store.get(&id()).unwrap().published_at, t(4));
    }

    #[test]
    fn removed_workloads_are_unknown_and_readiness_stops_waiting_for_them() {
        let store = PlanStore::new();
        store.record(&id(), cycle(1));
        let other = WorkloadId {
            namespace: "shop".into(),
            name: "new".into(),
        };
        store.expect(other.clone());
        assert!(!store.is_ready(), "waits for the expected workload's first cycle");
        assert!(store.knows(&other));
        store.remove(&other);
        assert!(!store.knows(&other));
        assert_eq!(store.known_in("shop"), vec![id()]);
        assert!(store.is_ready());
    }

    #[test]
    fn workloads_of_a_namespace_are_found_by_range_or_by_name() {
        let store = PlanStore::new();
        let wid = |ns: &str, name: &str| WorkloadId {
            namespace: ns.into(),
            name: name.into(),
        };
        for (ns, name) in [("a", "z"), ("ab", "x"), ("b", "y"), ("ab", "w"), ("", "v")] {
            store.expect(wid(ns, name));
        }
        // A namespace is exactly its own workloads, in name order: not its prefix's neighbours.
        assert_eq!(store.known_in("ab"), [wid("ab", "w"), wid("ab", "x")]);
        assert_eq!(store.known_in("a"), [wid("a", "z")]);
        assert_eq!(store.known_in(""), [wid("", "v")]);
        assert!(store.known_in("c").is_empty());
        // By name: sorted, each once, only those the store knows in that namespace.
        let names = [
            "x".to_owned(),
            "nope".to_owned(),
            "w".to_owned(),
            "x".to_owned(),
            "z".to_owned(),
        ];
        assert_eq!(store.known_among("ab", Some(&names)), [wid("ab", "w"), wid("ab", "x")]);
        assert!(store.known_among("ab", Some(&[])).is_empty());
    }

    #[test]
    fn a_hold_keeps_readiness_down_and_once_released_no_workload_at_all_is_ready() {
        const LIST: &str = "the first list";
        let store = PlanStore::new();
        assert!(
            !store.is_ready(),
            "nothing planned and nothing said there is nothing to plan"
        );
        store.hold(LIST);
        assert_eq!(store.held_by(), vec![LIST]);
        assert!(!store.is_ready());
        store.release(LIST);
        assert!(store.held_by().is_empty());
        assert!(store.is_ready(), "nothing to plan");
        // A workload that appears afterwards is waited for, then its plan makes the store ready again.
        store.expect(id());
        assert!(!store.is_ready());
        store.record(&id(), cycle(1));
        assert!(store.is_ready());
        // A hold taken while planned still keeps readiness down.
        store.hold(LIST);
        assert!(!store.is_ready());
    }
}
