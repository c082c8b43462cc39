//! The live loop: per workload, fetch new history, refit when due, forecast, plan, publish.
//!
//! Each workload runs on its own task. Fits run on the blocking pool so the API never waits on them. A failed fetch,
//! a workload with no data, or one whose newest sample is older than its `maxDataAge` publishes nothing new: the
//! last plan stays served until it exceeds the max forecast age (or, for old data, at once), then the API answers
//! an error and the HPA holds. Old data is never planned from: its last value is not demand "now".

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{info, info_span, warn, Instrument};

use crate::clock::Clock;
use crate::config::WorkloadConfig;
use crate::control::engine::{Engine, Replayed};
use crate::control::quality::Health;
use crate::duration;
use crate::forecast::{self, ForecastSettings};
use crate::history::History;
use crate::series::Series;
use crate::sre::telemetry::PipelineMetrics;
use crate::store::{
    Insight, PlanStore, Problem, Publication, ReplayState, ReplayStatus, Snapshot, WorkloadId, WorkloadStatus,
    RECENT_HISTORY,
};

/// A configured workload wired to its history source.
pub struct Workload {
    /// The workload's configuration.
    pub config: WorkloadConfig,
    /// Where its demand comes from.
    pub history: Arc<dyn History>,
}

/// Forecast settings for a workload: horizon long enough to plan until the next refit.
pub fn forecast_settings(config: &WorkloadConfig) -> ForecastSettings {
    ForecastSettings {
        seasonality: config.seasonality.clone(),
        horizon: config.refit_interval + config.policy.lead + config.policy.sync * 2,
    }
}

/// What the pipeline needs beyond the workloads: where to record metrics.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where fit durations go (`telemetry::Registry::pipeline`).
    pub metrics: PipelineMetrics,
}

/// The running workloads, changed while they run: one task per workload, each started, replaced or stopped on its
/// own, so adding, changing or deleting one never disturbs the others (their models, scores and replays go on).
pub struct Pipelines {
    store: Arc<PlanStore>,
    clock: Clock,
    interval: TimeDelta,
    options: Options,
    running: std::sync::Mutex<std::collections::BTreeMap<WorkloadId, Running>>,
}

struct Running {
    config: WorkloadConfig,
    task: tokio::task::JoinHandle<()>,
}

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
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<WorkloadId, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `workload`: starts it, replaces it when its settings differ from the running ones, or leaves it be.
    /// A replaced task has ended before its successor starts, so the two never publish side by side.
    pub async fn apply(&self, workload: Workload) -> Applied {
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
        let mut running = self.running();
        let config = workload.config.clone();
        let span = info_span!("workload", workload = %id);
        self.store.expect(id.clone());
        let cycle = Cycle::with_metrics(workload, self.options.metrics.clone()).with_interval(self.interval);
        let task =
            tokio::spawn(run_workload(cycle, self.store.clone(), self.clock.clone(), self.interval).instrument(span));
        running.insert(id, Running { config, task });
        applied
    }

    /// Stops `id` and forgets it: its plan is no longer served and readiness no longer waits for it. False when it
    /// was not running. The task has ended before the store forgets it, so no late cycle brings it back.
    pub async fn remove(&self, id: &WorkloadId) -> bool {
        let removed = self.running().remove(id);
        let was_running = match removed {
            Some(r) => {
                r.stop().await;
                true
            }
            None => false,
        };
        self.store.remove(id);
        was_running
    }

    /// The running workloads, ordered by namespace then name.
    pub fn ids(&self) -> Vec<WorkloadId> {
        self.running().keys().cloned().collect()
    }

    /// The settings `id` runs with.
    pub fn config(&self, id: &WorkloadId) -> Option<WorkloadConfig> {
        self.running().get(id).map(|r| r.config.clone())
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
    history: Option<Series>,
    status: WorkloadStatus,
    metrics: PipelineMetrics,
    targets: std::collections::VecDeque<(DateTime<Utc>, u32)>,
    interval: TimeDelta,
    replay: Replay,
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
            history: None,
            status,
            metrics,
            targets: Default::default(),
            interval: crate::config::DEFAULT_INTERVAL,
            replay: Replay::Pending,
        }
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
        let history = match &self.history {
            Some(h) => h,
            None => return,
        };
        let span = self.workload.config.policy.adaptive.replay_span(now - history.start());
        if span <= TimeDelta::zero() || self.interval <= TimeDelta::zero() {
            self.replay = Replay::Finished;
            return;
        }
        let from = now - span;
        let (mut engine, history, interval) = (self.engine.clone(), history.clone(), self.interval);
        let handle = tokio::spawn(async move {
            let _turn = REPLAYS.acquire().await;
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

    /// The decision engine (model, policy, forecast quality).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One cycle at `now`: fetch, refit if due, plan, publish. Returns the published snapshot, if any.
    pub async fn run_once(&mut self, store: &PlanStore, now: DateTime<Utc>) -> Option<Arc<Snapshot>> {
        let config = &self.workload.config;
        let step = self.workload.history.step();
        self.status.last_attempt = Some(now);
        store.limit_data_age(&config.id, config.max_data_age);
        // Refetch a few recent slots each cycle: late-arriving samples replace earlier gaps.
        let from = match &self.history {
            Some(h) if !h.is_empty() => (h.end() - step * 3).max(now - config.history),
            _ => now - config.history,
        };
        match self.workload.history.fetch(from, now).await {
            Ok(fresh) => {
                let history = self.history.get_or_insert_with(|| Series::empty(fresh.start(), step));
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
        let history = self.history.as_ref()?;
        let Some((last, _)) = history.last_present() else {
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
        match self.replay {
            Replay::Pending => self.start_replay(now),
            Replay::Running(..) => self.finish_replay(false).await,
            Replay::Finished => {}
        }
        let (config, history) = (&self.workload.config, self.history.as_ref()?);
        if self.engine.needs_refit(now) {
            // The turn first: a workload waiting in line holds no copy of its history.
            let _turn = fit_permits().acquire().await;
            let (h, settings) = (history.clone(), self.engine.settings().clone());
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || forecast::fit(&h, &settings, now)).await {
                Ok(model) => {
                    self.status.fits += 1;
                    self.status.last_fit_seconds = started.elapsed().as_secs_f64();
                    info!(seconds = self.status.last_fit_seconds, "model refitted");
                    self.metrics.fit(&config.id, self.status.last_fit_seconds);
                    self.engine.install(model);
                }
                Err(error) => warn!(%error, "model fit panicked; keeping the previous model"),
            }
        }
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

async fn run_workload(mut cycle: Cycle, store: Arc<PlanStore>, clock: Clock, interval: TimeDelta) {
    let period = interval.to_std().unwrap_or(std::time::Duration::from_secs(30));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        cycle.run_once(&store, clock.now()).await;
    }
}
