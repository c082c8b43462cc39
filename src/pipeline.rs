//! The live loop: per workload, fetch new history, refit when due, forecast, plan, publish.
//!
//! Each workload runs on its own task. Fits run on the blocking pool, in the background: a cycle never waits for
//! one, so every workload is served from its first cycle (the reactive target, [`Serving::Warming`], until its
//! first model is in) and a refit never delays a decision (the previous model serves until the new one is in).
//! A failed fetch,
//! a workload with no data, or one whose newest sample is older than its `maxDataAge` publishes nothing new: the
//! last plan stays served until it exceeds the max forecast age (or, for old data, at once), then the API answers
//! an error and the HPA holds. Old data is never planned from: its last value is not demand "now".

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{info, info_span, warn, Instrument};

use crate::clock::Clock;
use crate::config::WorkloadConfig;
use crate::control::engine::{Engine, Replayed, Serving};
use crate::control::quality::Health;
use crate::duration;
use crate::forecast::{self, ForecastSettings, Model};
use crate::history::History;
use crate::k8s::members::{Membership, View};
use crate::series::Series;
use crate::sre::telemetry::PipelineMetrics;
use crate::state::{ModelSummary, StateStore, WorkloadState};
use crate::store::{
    Insight, PlanStore, Problem, Publication, ReplayState, ReplayStatus, Snapshot, WorkloadId, WorkloadStatus,
    RECENT_HISTORY,
};

/// A configured workload wired to its history source.
#[derive(Clone)]
pub struct Workload {
    /// The workload's configuration.
    pub config: WorkloadConfig,
    /// Where its demand comes from.
    pub history: Arc<dyn History>,
}

/// Forecast settings for a workload: horizon long enough to plan until the next refit.
pub fn forecast_settings(config: &WorkloadConfig) -> ForecastSettings {
    ForecastSettings::for_plan(
        config.seasonality.clone(),
        config.policy.lead,
        config.policy.sync,
        config.refit_interval,
    )
}

/// What the pipeline needs beyond the workloads: where to record metrics, and where to keep what each workload
/// learned across restarts.
#[derive(Clone)]
pub struct Options {
    /// Where fit durations go (`telemetry::Registry::pipeline`).
    pub metrics: PipelineMetrics,
    /// Where workload states are kept (`None`: nothing survives a restart; see [`crate::state`]).
    pub states: Option<Arc<dyn StateStore>>,
    /// How often each workload saves its state.
    pub save_interval: TimeDelta,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            metrics: PipelineMetrics::default(),
            states: None,
            save_interval: crate::state::DEFAULT_SAVE_INTERVAL,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("states", &self.states.as_ref().map(|s| s.describe()))
            .field("save_interval", &self.save_interval)
            .finish_non_exhaustive()
    }
}

/// The running workloads, changed while they run: one task per workload, each started, replaced or stopped on its
/// own, so adding, changing or deleting one never disturbs the others (their models, scores and replays go on).
///
/// With a [`Membership`] (sharded replicas), a workload runs here only while this replica owns it; the others are
/// known (readiness waits for their first plan) and served from their owners' plans ([`crate::peers`]). When the
/// members change, workloads this replica no longer owns hand over (save their state, which is written at once, and
/// stop), and the ones it now owns start from their saved state and their last owner's plan
/// ([`Pipelines::follow`]).
pub struct Pipelines {
    store: Arc<PlanStore>,
    clock: Clock,
    interval: TimeDelta,
    options: Options,
    running: std::sync::Mutex<std::collections::BTreeMap<WorkloadId, Running>>,
    /// Every workload this replica is configured for, run here or not.
    desired: std::sync::Mutex<std::collections::BTreeMap<WorkloadId, Workload>>,
    membership: Option<Membership>,
}

struct Running {
    config: WorkloadConfig,
    task: tokio::task::JoinHandle<()>,
    /// Set to hand the workload over: its task saves its state and ends.
    handoff: tokio::sync::watch::Sender<bool>,
}

/// How long a workload handing over may take to save its state before its task is stopped.
const HANDOFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Running {
    /// Cancels the task and waits until it has ended (a fit on the blocking pool finishes on its own, unread).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// What [`Pipelines::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new workload: its task started (and with it its startup replay).
    Started,
    /// Its settings changed: its task was replaced, learning from scratch; its last plan is served until the new
    /// task's first cycle replaces it.
    Restarted,
    /// Same settings: its task runs on untouched.
    Unchanged,
}

impl Pipelines {
    /// No workloads yet; each will run every `interval` on `clock`, publishing into `store`.
    pub fn new(store: Arc<PlanStore>, clock: Clock, interval: TimeDelta, options: Options) -> Self {
        Self {
            store,
            clock,
            interval,
            options,
            running: Default::default(),
            desired: Default::default(),
            membership: None,
        }
    }

    /// The same workloads sharded among replicas: each runs here only while `membership` says this replica owns
    /// it. Call [`Pipelines::follow`] to move workloads as the members change.
    pub fn with_membership(mut self, membership: Membership) -> Self {
        self.membership = Some(membership);
        self
    }

    fn desired(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<WorkloadId, Workload>> {
        self.desired.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self) -> Option<View> {
        self.membership.as_ref().map(Membership::view)
    }

    /// True when this replica is configured for `id`, whoever runs it.
    pub fn wants(&self, id: &WorkloadId) -> bool {
        self.desired().contains_key(id)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<WorkloadId, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `workload`: starts it, replaces it when its settings differ from the running ones, or leaves it be.
    /// A replaced task has ended before its successor starts, so the two never publish side by side.
    pub async fn apply(&self, workload: Workload) -> Applied {
        let id = workload.config.id.clone();
        let before = self.desired().insert(id.clone(), workload.clone());
        if self.view().is_some_and(|v| !v.owns(&id)) {
            // Another replica runs it: known here, served from its owner's plans.
            let old = self.running().remove(&id);
            self.hand_over(old.into_iter().collect()).await;
            self.store.expect(id);
            return match before {
                Some(b) if b.config == workload.config => Applied::Unchanged,
                Some(_) => Applied::Restarted,
                None => Applied::Started,
            };
        }
        self.start(workload).await
    }

    /// Runs `workload` here: see [`Pipelines::apply`].
    async fn start(&self, workload: Workload) -> Applied {
        let id = workload.config.id.clone();
        let old = {
            let mut running = self.running();
            match running.get(&id) {
                Some(r) if r.config == workload.config && !r.task.is_finished() => return Applied::Unchanged,
                _ => running.remove(&id),
            }
        };
        let applied = match old {
            Some(old) => {
                old.stop().await;
                Applied::Restarted
            }
            None => Applied::Started,
        };
        // A plan another replica made of it (it owned the workload until now) is served until the first model is in.
        let prior = self
            .store
            .entry(&id)
            .filter(|e| e.owner.is_some())
            .and_then(|e| e.snapshot.as_ref().map(|s| s.plan.clone()));
        let mut running = self.running();
        let config = workload.config.clone();
        let span = info_span!("workload", workload = %id);
        self.store.expect(id.clone());
        let cycle = Cycle::with_metrics(workload, self.options.metrics.clone())
            .with_interval(self.interval)
            .with_background_fits(self.clock.clone());
        let saves = self.options.states.clone().map(|states| Saves {
            states,
            interval: self.options.save_interval,
        });
        let (handoff, handing_off) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(
            run_workload(
                Box::new(cycle),
                Run {
                    store: self.store.clone(),
                    clock: self.clock.clone(),
                    interval: self.interval,
                    saves,
                    prior,
                    handoff: handing_off,
                },
            )
            .instrument(span),
        );
        running.insert(id, Running { config, task, handoff });
        applied
    }

    /// Hands `released` over to their new owners: each saves its state and ends (stopped after
    /// [`HANDOFF_TIMEOUT`]), then the saves are written at once, so the new owners start from them.
    async fn hand_over(&self, released: Vec<Running>) {
        if released.is_empty() {
            return;
        }
        for r in &released {
            let _ = r.handoff.send(true);
        }
        let tasks = released.into_iter().map(|r| async move {
            let abort = r.task.abort_handle();
            if tokio::time::timeout(HANDOFF_TIMEOUT, r.task).await.is_err() {
                abort.abort();
            }
        });
        futures::future::join_all(tasks).await;
        if let Some(states) = &self.options.states {
            match tokio::time::timeout(HANDOFF_TIMEOUT, states.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(
                    %error,
                    "writing the states of workloads handed over failed; their new owners start from older ones"
                ),
                Err(_) => warn!(
                    "writing the states of workloads handed over takes over 5 s; their new owners may start from \
                     older ones (the writes go on at their turns)"
                ),
            }
        }
    }

    /// Moves workloads to match the members: hands over those this replica no longer owns, starts those it now
    /// owns. Returns how many were handed over and started.
    pub async fn rebalance(&self) -> (usize, usize) {
        let Some(view) = self.view() else {
            return (0, 0);
        };
        let desired: Vec<Workload> = self.desired().values().cloned().collect();
        let released: Vec<Running> = {
            let mut running = self.running();
            let gone: Vec<WorkloadId> = running.keys().filter(|id| !view.owns(id)).cloned().collect();
            gone.iter().filter_map(|id| running.remove(id)).collect()
        };
        let handed = released.len();
        self.hand_over(released).await;
        if let Some(states) = &self.options.states {
            // Workloads taken over load what their last owners saved, not what was read before they moved.
            states.refresh();
        }
        let mut started = 0;
        for workload in desired {
            let id = &workload.config.id;
            if view.owns(id) && !self.running().contains_key(id) {
                self.start(workload).await;
                started += 1;
            }
        }
        if handed + started > 0 {
            info!(
                members = view.members.len(),
                joined = view.joined,
                handed_over = handed,
                taken_over = started,
                running = self.running().len(),
                "the members changed: workloads moved"
            );
        }
        (handed, started)
    }

    /// Rebalances now and whenever the members change, until dropped (unsharded: returns at once).
    pub async fn follow(self: Arc<Self>) {
        let Some(mut membership) = self.membership.clone() else {
            return;
        };
        loop {
            self.rebalance().await;
            membership.changed().await;
        }
    }

    /// Stops `id` and forgets it: its plan is no longer served and readiness no longer waits for it. False when it
    /// was not configured. The task has ended before the store forgets it, so no late cycle brings it back.
    pub async fn remove(&self, id: &WorkloadId) -> bool {
        let wanted = self.desired().remove(id).is_some();
        let removed = self.running().remove(id);
        let was_running = match removed {
            Some(r) => {
                r.stop().await;
                true
            }
            None => wanted,
        };
        self.store.remove(id);
        was_running
    }

    /// The workloads this replica is configured for (running here or, sharded, on their owners), ordered by
    /// namespace then name.
    pub fn ids(&self) -> Vec<WorkloadId> {
        self.desired().keys().cloned().collect()
    }

    /// The workloads running here, ordered by namespace then name.
    pub fn running_ids(&self) -> Vec<WorkloadId> {
        self.running().keys().cloned().collect()
    }

    /// The settings `id` is configured with.
    pub fn config(&self, id: &WorkloadId) -> Option<WorkloadConfig> {
        self.desired().get(id).map(|w| w.config.clone())
    }
}

impl Drop for Pipelines {
    fn drop(&mut self) {
        for (_, r) in std::mem::take(&mut *self.running()) {
            r.task.abort();
        }
    }
}

/// A workload's state between cycles.
pub struct Cycle {
    workload: Workload,
    engine: Engine,
    /// The history, shared with a fit or a replay waiting for its turn: each copies it only once its turn has
    /// come, so thousands of workloads queued at startup hold no copies.
    history: SharedHistory,
    status: WorkloadStatus,
    metrics: PipelineMetrics,
    targets: std::collections::VecDeque<(DateTime<Utc>, u32)>,
    interval: TimeDelta,
    replay: Replay,
    fits: Fits,
}

type SharedHistory = Arc<std::sync::Mutex<Option<Series>>>;

fn lock(history: &SharedHistory) -> std::sync::MutexGuard<'_, Option<Series>> {
    history.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a cycle fits its models.
enum Fits {
    /// In the cycle: the cycle waits for its turn and the fit (one-shot runs and tests, where each cycle's
    /// decision should come from the model fitted for it).
    Inline,
    /// In the background ([`Cycle::with_background_fits`]): the cycle starts a fit when one is due and installs it
    /// at the first cycle after it ends; the fit reads the history as it is when its turn comes, at `clock`'s time.
    Background {
        clock: Clock,
        pending: Option<tokio::task::JoinHandle<Option<Fitted>>>,
    },
}

/// A model fitted in the background, with the seconds it took.
type Fitted = (Model, f64);

impl Drop for Cycle {
    fn drop(&mut self) {
        // A fit or replay still waiting for its turn is not wanted any more (one already on a blocking thread runs
        // to its end, unread).
        if let Fits::Background { pending: Some(fit), .. } = &self.fits {
            fit.abort();
        }
        if let Replay::Running(replay) = &self.replay {
            replay.abort();
        }
    }
}

/// Startup replays run one at a time, process-wide: each takes seconds of a core, and a restart with many workloads
/// must not starve their first live fits (readiness waits for those) of CPU.
static REPLAYS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Live fits running at once, process-wide: one per core the process may use. A fit spreads its model and holdout
/// fits over the cores already; more at once would only multiply the memory in flight (a fit of 15 days of 1-minute
/// history holds a few MB while it runs) and slow each of them down, so at startup with many workloads the first
/// plans would all arrive late together instead of one after another. Waiting is first come, first served.
fn fit_permits() -> &'static tokio::sync::Semaphore {
    static FITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    FITS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// The startup replay (see [`Engine::replay`]).
enum Replay {
    /// Not started: waiting for history.
    Pending,
    /// Waiting for its turn (see [`REPLAYS`]), then replaying a clone of the engine on a blocking thread.
    Running(tokio::task::JoinHandle<Result<(Engine, Replayed, f64), tokio::task::JoinError>>),
    /// Adopted, failed, off, or nothing to replay.
    Finished,
}

impl Cycle {
    /// A workload that has fetched nothing yet, with its configured mode and quality bounds.
    pub fn new(workload: Workload) -> Self {
        Self::with_metrics(workload, PipelineMetrics::default())
    }

    /// [`Cycle::new`], recording into `metrics`.
    pub fn with_metrics(workload: Workload, metrics: PipelineMetrics) -> Self {
        let serving = workload.config.serving;
        let engine = Engine::new(
            forecast_settings(&workload.config),
            workload.config.policy.clone(),
            workload.config.refit_interval,
        )
        .with_serving(serving.mode, serving.quality);
        let status = WorkloadStatus {
            source: workload.history.describe(),
            ..Default::default()
        };
        Self {
            workload,
            engine,
            history: Default::default(),
            status,
            metrics,
            targets: Default::default(),
            interval: crate::config::DEFAULT_INTERVAL,
            replay: Replay::Pending,
            fits: Fits::Inline,
        }
    }

    /// The same cycle fitting in the background, as the live loop does: a cycle never waits for a fit; until the
    /// first model is in, the workload is served the reactive target ([`Serving::Warming`]). A fit runs at
    /// `clock`'s time when its turn comes.
    pub fn with_background_fits(mut self, clock: Clock) -> Self {
        self.fits = Fits::Background { clock, pending: None };
        self
    }

    /// The same cycle run every `interval` (the replay decides at the same pace).
    pub fn with_interval(mut self, interval: TimeDelta) -> Self {
        self.interval = interval;
        self
    }

    /// Starts the startup replay once history is in: the workload's recent history (`adaptiveQuantile.replay`, at
    /// most the history window less a day of lead-in) through a clone of the engine, on a blocking thread, one
    /// workload at a time. Live cycles go on meanwhile; the first one after it finishes adopts its scores.
    fn start_replay(&mut self, now: DateTime<Utc>) {
        let Some(start) = lock(&self.history).as_ref().map(Series::start) else {
            return;
        };
        let span = self.workload.config.policy.adaptive.replay_span(now - start);
        if span <= TimeDelta::zero() || self.interval <= TimeDelta::zero() {
            self.replay = Replay::Finished;
            return;
        }
        let from = now - span;
        let (mut engine, shared, interval) = (self.engine.clone(), self.history.clone(), self.interval);
        let handle = tokio::spawn(async move {
            let _turn = REPLAYS.acquire().await;
            // The copy is taken once the turn has come: a workload waiting in line holds none.
            let history = lock(&shared)
                .clone()
                .unwrap_or_else(|| Series::empty(from, TimeDelta::minutes(1)));
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let replayed = engine.replay(&history, from, now, interval);
                (engine, replayed, started.elapsed().as_secs_f64())
            })
            .await
        });
        info!(%from, to = %now, "replaying recent history to warm up the adaptive quantile and the quality gate");
        self.status.replay = Some(ReplayStatus {
            state: ReplayState::Running,
            from,
            to: now,
            replayed: Replayed::default(),
            seconds: 0.0,
        });
        self.replay = Replay::Running(handle);
    }

    /// Adopts a finished replay's scores (waiting for it when `wait`).
    async fn finish_replay(&mut self, wait: bool) {
        let Replay::Running(handle) = &self.replay else {
            return;
        };
        if !wait && !handle.is_finished() {
            return;
        }
        let Replay::Running(handle) = std::mem::replace(&mut self.replay, Replay::Finished) else {
            return;
        };
        let status = self.status.replay.as_mut();
        match handle.await.and_then(|r| r) {
            Ok((engine, replayed, seconds)) => {
                self.engine.adopt_scores(engine);
                let chosen = self
                    .engine
                    .service_level()
                    .map(|r| match (r.warmed_up, r.chosen_quantile) {
                        (false, _) => "not warmed up".to_owned(),
                        (true, Some(q)) => format!("p{}", (q * 100.0).round()),
                        (true, None) => "reactive".to_owned(),
                    });
                info!(
                    decisions = replayed.decisions,
                    fits = replayed.fits,
                    seconds,
                    adaptive = chosen.as_deref().unwrap_or("off"),
                    "replay done; its scores are in use"
                );
                if let Some(s) = status {
                    (s.state, s.replayed, s.seconds) = (ReplayState::Done, replayed, seconds);
                }
            }
            Err(error) => {
                warn!(%error, "replay failed; warming up live");
                if let Some(s) = status {
                    s.state = ReplayState::Failed;
                }
            }
        }
    }

    /// Waits for a running startup replay and adopts its scores (the live loop adopts it at the first cycle after
    /// it ends, without waiting).
    pub async fn wait_for_replay(&mut self) {
        self.finish_replay(true).await;
    }

    /// Adopts the workload's saved state from `states`, if it has one made with its current settings: the SLO
    /// controller's record and the quality gate's state at once (no startup replay), and the last plan, served
    /// until the first model is in while younger than `max_forecast_age`. True when adopted; a state that cannot
    /// be read or does not fit is logged and left to be overwritten by the next save.
    pub async fn restore(&mut self, states: &dyn StateStore, max_forecast_age: TimeDelta) -> bool {
        let config = &self.workload.config;
        let saved = match states.load(&config.id).await {
            Ok(Some(saved)) => saved,
            Ok(None) => return false,
            Err(error) => {
                warn!(%error, "the saved state could not be read; starting afresh");
                return false;
            }
        };
        if let Some(why) = saved.mismatch(config) {
            info!(why, "the saved state is not adopted; starting afresh");
            return false;
        }
        let serve_until = saved
            .learned
            .last_plan
            .as_ref()
            .map_or(saved.saved_at, |p| p.at + max_forecast_age);
        match self.engine.adopt_learned(&saved.learned, serve_until) {
            Ok(()) => {
                info!(saved_at = %saved.saved_at, "adopted the saved state: the SLO record and the quality gate are warm");
                self.replay = Replay::Finished;
                true
            }
            Err(error) => {
                warn!(%error, "the saved state does not fit; starting afresh");
                false
            }
        }
    }

    /// Serves `plan`, the last plan another replica served for this workload (it owned it until now), until the
    /// first model is in while younger than `max_forecast_age` ([`Serving::Restored`], never below the reactive
    /// target), unless a newer plan was restored.
    pub fn take_over(&mut self, plan: crate::control::planner::ReplicaPlan, max_forecast_age: TimeDelta) {
        let until = plan.at + max_forecast_age;
        if self.engine.take_over(plan, until) {
            info!("serving the last owner's plan until the first model is fitted");
        }
    }

    /// What this workload has learned, to save.
    pub fn state(&self, now: DateTime<Utc>) -> WorkloadState {
        let model = self.engine.model().and_then(|m| {
            Some(ModelSummary {
                method: m.method()?.to_string(),
                fitted_at: m.fitted_at(),
            })
        });
        WorkloadState::new(&self.workload.config, now, model, self.engine.learned())
    }

    /// The decision engine (model, policy, forecast quality).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One cycle at `now`: fetch, refit if due (in the background with [`Cycle::with_background_fits`]), plan,
    /// publish. Returns the published snapshot, if any.
    pub async fn run_once(&mut self, store: &PlanStore, now: DateTime<Utc>) -> Option<Arc<Snapshot>> {
        let config = &self.workload.config;
        let step = self.workload.history.step();
        self.status.last_attempt = Some(now);
        store.limit_data_age(&config.id, config.max_data_age);
        // Refetch a few recent slots each cycle: late-arriving samples replace earlier gaps.
        let from = match lock(&self.history).as_ref() {
            Some(h) if !h.is_empty() => (h.end() - step * 3).max(now - config.history),
            _ => now - config.history,
        };
        match self.workload.history.fetch(from, now).await {
            Ok(fresh) => {
                let mut slot = lock(&self.history);
                let history = slot.get_or_insert_with(|| Series::empty(fresh.start(), step));
                let ingest = history.merge(&fresh);
                history.pad_to(fresh.end());
                history.trim_before(now - config.history);
                self.status.non_finite_dropped += ingest.non_finite;
                self.status.slots = history.len();
                self.status.missing = history.missing();
            }
            Err(error) => {
                warn!(%error, "history fetch failed; serving the last plan until it is too old");
                self.status.query_errors += 1;
                self.status.error = Some(error.to_string());
                self.status.problem = Some(Problem::QueryFailed);
                store.set_status(&config.id, self.status.clone());
                return None;
            }
        }
        let data_until = self.fresh_data_until(store, now)?;
        match self.replay {
            Replay::Pending => self.start_replay(now),
            Replay::Running(..) => self.finish_replay(false).await,
            Replay::Finished => {}
        }
        self.fit_if_due(now).await;
        self.decide_and_publish(store, now, data_until)
    }

    /// The end of the newest sample, when it is recent enough to plan from; otherwise says why in the status and
    /// returns `None`.
    fn fresh_data_until(&mut self, store: &PlanStore, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let config = &self.workload.config;
        let step = self.workload.history.step();
        let last = lock(&self.history).as_ref()?.last_present().map(|(t, _)| t);
        let Some(last) = last else {
            warn!("no demand samples in the history window; holding");
            self.status.error = Some("no data: the source returned no samples in the history window".into());
            self.status.problem = Some(Problem::NoData);
            store.set_status(&config.id, self.status.clone());
            return None;
        };
        let data_until = last + step;
        self.status.data_until = Some(data_until);
        let data_age = now - data_until;
        if data_age > config.max_data_age {
            let (age, max) = (duration::format(data_age), duration::format(config.max_data_age));
            if self.status.problem != Some(Problem::StaleData) {
                warn!(%data_until, %age, %max, "demand data is older than maxDataAge; not planning from it");
            }
            self.status.error = Some(format!(
                "stale data: the newest demand sample ended at {} ({age} ago), more than maxDataAge {max} ago; the \
                 source stopped reporting while the query still answers",
                data_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
            self.status.problem = Some(Problem::StaleData);
            store.set_status(&config.id, self.status.clone());
            return None;
        }
        if self.status.problem == Some(Problem::StaleData) {
            info!(%data_until, "demand data is fresh again");
        }
        Some(data_until)
    }

    /// Refits when due: inline, waiting for the turn and the fit; in the background, installing a finished fit and
    /// starting the next one when due and none is under way.
    async fn fit_if_due(&mut self, now: DateTime<Utc>) {
        match &mut self.fits {
            Fits::Inline => {
                if !self.engine.needs_refit(now) {
                    return;
                }
                // The turn first: a workload waiting in line holds no copy of its history.
                let _turn = fit_permits().acquire().await;
                let Some(h) = lock(&self.history).clone() else {
                    return;
                };
                let (settings, effort) = (self.engine.settings().clone(), self.engine.next_fit_effort());
                let started = Instant::now();
                match tokio::task::spawn_blocking(move || forecast::fit_with(&h, &settings, now, effort)).await {
                    Ok(model) => self.adopt_fit(model, started.elapsed().as_secs_f64()),
                    Err(error) => warn!(%error, "model fit panicked; keeping the previous model"),
                }
            }
            Fits::Background { pending, .. } => {
                if pending.as_ref().is_some_and(|p| p.is_finished()) {
                    let fit = pending.take().expect("a finished fit");
                    self.install_fitted(fit).await;
                    return;
                }
                let Fits::Background { clock, pending } = &mut self.fits else {
                    return;
                };
                if pending.is_some() || !self.engine.needs_refit(now) {
                    return;
                }
                let (shared, settings, clock) = (self.history.clone(), self.engine.settings().clone(), clock.clone());
                let effort = self.engine.next_fit_effort();
                *pending = Some(tokio::spawn(
                    async move {
                        let _turn = fit_permits().acquire().await;
                        let history = lock(&shared).clone()?;
                        let now = clock.now();
                        let started = Instant::now();
                        let model =
                            tokio::task::spawn_blocking(move || forecast::fit_with(&history, &settings, now, effort))
                                .await
                                .ok()?;
                        Some((model, started.elapsed().as_secs_f64()))
                    }
                    .in_current_span(),
                ));
            }
        }
    }

    fn adopt_fit(&mut self, model: Model, seconds: f64) {
        self.status.fits += 1;
        self.status.last_fit_seconds = seconds;
        match model.effort() {
            forecast::Effort::First => info!(
                seconds,
                "first model fitted (its trend on the recent days; a full fit follows at the next refit)"
            ),
            forecast::Effort::Full => info!(seconds, "model refitted"),
        }
        self.metrics.fit(&self.workload.config.id, seconds);
        self.engine.install(model);
    }

    /// Waits for a fit under way in the background and installs it (the live loop installs it at the first cycle
    /// after it ends, without waiting).
    pub async fn wait_for_fit(&mut self) {
        if let Fits::Background { pending, .. } = &mut self.fits {
            if let Some(fit) = pending.take() {
                self.install_fitted(fit).await;
            }
        }
    }

    async fn install_fitted(&mut self, fit: tokio::task::JoinHandle<Option<Fitted>>) {
        self.install_result(fit.await);
    }

    /// The outcome of the background fit under way, once it has ended; never resolves while none is. Cancel-safe:
    /// dropped before the fit ends, the fit stays under way.
    async fn next_fitted(&mut self) -> Result<Option<Fitted>, tokio::task::JoinError> {
        let Fits::Background { pending: Some(fit), .. } = &mut self.fits else {
            return std::future::pending().await;
        };
        let done = fit.await;
        if let Fits::Background { pending, .. } = &mut self.fits {
            *pending = None;
        }
        done
    }

    fn install_result(&mut self, done: Result<Option<Fitted>, tokio::task::JoinError>) {
        match done {
            Ok(Some((model, seconds))) => self.adopt_fit(model, seconds),
            // The history was gone, or the fit's blocking thread failed: the next cycle starts another.
            Ok(None) => warn!("model fit failed; keeping the previous model"),
            Err(error) => warn!(%error, "model fit panicked; keeping the previous model"),
        }
    }

    /// Decides from the history and publishes the plan with what explains it.
    fn decide_and_publish(
        &mut self,
        store: &PlanStore,
        now: DateTime<Utc>,
        data_until: DateTime<Utc>,
    ) -> Option<Arc<Snapshot>> {
        let guard = lock(&self.history);
        let (config, history) = (&self.workload.config, guard.as_ref()?);
        let decision = self.engine.decide(history, now, now)?;
        if let Some(observed) = decision.observed.filter(|o| o.glitch.is_some()) {
            warn!(
                observed = observed.glitch,
                floor_reads = observed.demand,
                "observed demand far above the hour before it: taken for a glitch until a second sample confirms it"
            );
        }
        if let Some(t) = &decision.transition {
            match t.to {
                Health::Demoted => {
                    warn!(reason = %t.reason, "forecast quality fell below its bounds; serving the reactive target")
                }
                Health::Trusted => info!(reason = %t.reason, "forecast quality recovered; serving the forecast again"),
            }
        }
        if decision.serving == Serving::Warming && self.status.last_success.is_none() {
            info!("serving the reactive target until the first model is fitted");
        }
        self.targets.push_back((now, decision.plan.replicas));
        while self.targets.front().is_some_and(|(t, _)| *t < now - RECENT_HISTORY) {
            self.targets.pop_front();
        }
        let quality = self.engine.quality();
        let insight = Insight {
            policy: config.policy.clone(),
            unit: config.unit.clone(),
            mode: self.engine.mode(),
            serving: decision.serving,
            forecast_plan: decision.forecast_plan,
            reactive_plan: decision.reactive_plan,
            history: history.window(now - RECENT_HISTORY, now),
            targets: self.targets.iter().copied().collect(),
            quality: quality.report(),
            scored: quality.recent().copied().collect(),
            adaptive: self.engine.service_level(),
        };
        drop(guard);
        let snapshot = Arc::new(Snapshot {
            id: config.id.clone(),
            published_at: now,
            data_until: Some(data_until),
            forecast: Arc::new(decision.forecast),
            plan: decision.plan,
        });
        self.status.last_success = Some(now);
        self.status.error = None;
        self.status.problem = None;
        // One unit: a reader never pairs this plan with the last cycle's insight or status.
        store.record(
            &config.id,
            Publication {
                status: self.status.clone(),
                plan: Some((snapshot.clone(), Arc::new(insight))),
            },
        );
        Some(snapshot)
    }
}

/// Where and how often a workload saves its state.
struct Saves {
    states: Arc<dyn StateStore>,
    interval: TimeDelta,
}

impl Saves {
    /// Saves what `cycle` has learned at `now`, once a model is in (until then there is nothing newer than what
    /// was adopted); a failure is logged with `then`, what happens next.
    async fn save(&self, cycle: &Cycle, now: DateTime<Utc>, then: &str) {
        if cycle.engine().model().is_none() {
            return;
        }
        if let Err(error) = self.states.save(&cycle.state(now)).await {
            warn!(%error, "saving the workload's state failed; {then}");
        }
    }
}

/// What a workload's task runs with.
struct Run {
    store: Arc<PlanStore>,
    clock: Clock,
    interval: TimeDelta,
    saves: Option<Saves>,
    /// The plan the workload's last owner served, when it comes from another replica.
    prior: Option<crate::control::planner::ReplicaPlan>,
    /// Becomes true when the workload is handed over.
    handoff: tokio::sync::watch::Receiver<bool>,
}

/// Runs `cycle` until its workload is handed over or the task is aborted. The cycle comes boxed: an async fn keeps its
/// arguments beside the locals they move into, so a `Cycle` (3 KiB) by value would be held twice by every task.
async fn run_workload(mut cycle: Box<Cycle>, run: Run) {
    let Run {
        store,
        clock,
        interval,
        saves,
        prior,
        mut handoff,
    } = run;
    // The long awaits are boxed: between its cycles a workload's task is the size of what it holds, not of the
    // largest future it ever awaits.
    if let Some(saves) = &saves {
        Box::pin(cycle.restore(saves.states.as_ref(), store.max_forecast_age())).await;
    }
    if let Some(plan) = prior {
        cycle.take_over(plan, store.max_forecast_age());
    }
    let id = cycle.workload.config.id.clone();
    let mut next_save = saves
        .as_ref()
        .map(|s| next_save_after(clock.now(), crate::state::save_phase(&id, s.interval), s.interval));
    let period = interval.to_std().unwrap_or(std::time::Duration::from_secs(30));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            done = cycle.next_fitted() => {
                // A refit is installed for the next cycle; the first model is served at once, not a cycle later.
                let first = cycle.engine().model().is_none();
                cycle.install_result(done);
                if !first || cycle.engine().model().is_none() {
                    continue;
                }
            }
            true = async { handoff.wait_for(|h| *h).await.is_ok() } => {
                if let Some(saves) = &saves {
                    Box::pin(saves.save(&cycle, clock.now(), "its new owner starts from an older one")).await;
                }
                return;
            }
        }
        let now = clock.now();
        Box::pin(cycle.run_once(&store, now)).await;
        let (Some(saves), Some(due)) = (&saves, next_save) else {
            continue;
        };
        if now >= due && cycle.engine().model().is_some() {
            Box::pin(saves.save(&cycle, now, "it is tried again at the next save")).await;
            next_save = Some(next_save_after(
                now,
                due - next_save_base(due, saves.interval),
                saves.interval,
            ));
        }
    }
}

/// The start of the save interval `due` falls in, counted from the Unix epoch.
fn next_save_base(due: DateTime<Utc>, interval: TimeDelta) -> DateTime<Utc> {
    let ms = interval.num_milliseconds().max(1);
    let since = due.timestamp_millis().rem_euclid(ms);
    due - TimeDelta::milliseconds(since)
}

/// The first instant after `now` at offset `phase` into an interval counted from the Unix epoch.
fn next_save_after(now: DateTime<Utc>, phase: TimeDelta, interval: TimeDelta) -> DateTime<Utc> {
    let at = next_save_base(now, interval) + phase;
    if at > now {
        at
    } else {
        at + interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::synthetic::{Generator, Profile};

    #[test]
    fn a_workloads_task_stays_small_between_its_cycles() {
        let yaml =
            "workloads:\n  - name: llm\n    demand: {generator: {profile: llm-chat}}\n    capacityPerReplica: 10\n    \
                    maxReplicas: 40\n";
        let config = crate::config::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let workload = Workload {
            config: config.workloads.into_iter().next().unwrap(),
            history: Arc::new(Generator::new(Profile::LlmChat, 1)),
        };
        let cycle = Cycle::new(workload);
        let held = std::mem::size_of_val(&cycle);
        let (_handoff, handing_off) = tokio::sync::watch::channel(false);
        let task = run_workload(
            Box::new(cycle),
            Run {
                store: Arc::new(PlanStore::new()),
                clock: Clock::system(),
                interval: TimeDelta::seconds(30),
                saves: None,
                prior: None,
                handoff: handing_off,
            },
        );
        // What the task holds between cycles, beside its boxed cycle: a cycle's run, a restore and a save are boxed
        // while they run. Ten thousand workloads hold ten thousand of these (7.2 KiB each with the cycle by value).
        let size = std::mem::size_of_val(&task);
        assert!(size < 1536, "{size} bytes, and the cycle's {held} boxed");
    }
}
