//! One workload's decision step, shared by production and the backtest: refit when due, forecast, plan, score.
//!
//! Pure: no I/O, no clock. The pipeline runs it on live history; the backtest runs the very same code on the
//! samples visible at each simulated tick.
//!
//! Every decision makes both plans: the forecast plan and the reactive one (`ceil(observed / capacity)`, clamped).
//! The forecast plan is served unless the workload runs in [`Mode::ForecastOnly`], its forecast quality has been
//! demoted (see [`crate::control::quality`]), or the adaptive quantile found the reactive target cheaper at the same service
//! (see [`crate::control::service_level`]); the forecast is computed, shown and scored either way. The adaptive quantile also
//! sets the quantile the forecast plan is made at.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::control::planner::{self, Bound, ReplicaPlan};
use crate::control::policy::{Policy, Utilization};
use crate::control::quality::{self, Tracker};
use crate::control::service_level::{self, Choice, Controller};
use crate::forecast::{self, Forecast, ForecastSettings, Model};
use crate::k8s::quantity;
use crate::series::Series;

/// How far ahead every decision forecasts, beyond the lead window the plan needs, so people can see where demand
/// is heading and how the plan will follow it.
pub const DISPLAY_HORIZON: TimeDelta = TimeDelta::hours(1);

/// Why a [`Serving::Restored`] decision's forecast is empty.
pub const RESTORED: &str =
    "restored after a restart: the last plan is served (never below what observed demand needs) until the first model is fitted";

/// Why a [`Serving::Warming`] decision's forecast is empty.
pub const WARMING: &str =
    "warming up: the first model is being fitted; the reactive target is served until it is ready";

/// How a workload's forecast is used (`mode`): `serve` (the default) serves the plan; `forecastOnly` forecasts, shows
/// and scores it but serves the reactive target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Serve the forecast plan (the default).
    #[default]
    Serve,
    /// Forecast, show and score, but serve the reactive target: a trial run before trusting the forecast.
    ForecastOnly,
}

/// What the served target follows at this moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serving {
    /// The forecast plan.
    Forecast,
    /// The reactive target, because the workload is configured forecast-only.
    ForecastOnly,
    /// The reactive target, because forecast quality fell below its bounds.
    Demoted,
    /// A reactive target, because the service-level controller found that no forecast quantile recently met the
    /// SLO for fewer pods (see [`crate::control::service_level`]); the plan's `utilization` says which.
    Reactive,
    /// The reactive target, because the workload's first model is still being fitted (just configured, or the
    /// process just started): the HPA gets the target a reactive HPA would ask for at once instead of an error.
    Warming,
    /// The last plan made before a restart, raised to the reactive target if that asks for more, because the first
    /// model since the restart is still being fitted and that plan is younger than `maxForecastAge` (see
    /// [`Engine::adopt_learned`]).
    Restored,
}

impl Serving {
    /// The name every surface uses (the same as in JSON and in metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Serving::Forecast => "forecast",
            Serving::ForecastOnly => "forecast_only",
            Serving::Demoted => "demoted",
            Serving::Reactive => "reactive",
            Serving::Warming => "warming",
            Serving::Restored => "restored",
        }
    }
}

impl std::fmt::Display for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serving {
    /// True when the served target is the reactive one.
    pub fn is_reactive(self) -> bool {
        self != Serving::Forecast
    }
}

/// The reactive target: `ceil(observed / (capacity × fallback utilization))` clamped to the policy's bounds, i.e. what
/// an HPA with that utilization target would ask for (`reactive_floor` stays `ceil(observed / capacity)`).
///
/// With nothing observed, the previous target is held (missing data is not zero demand); with no previous target
/// either, the minimum. `planned_demand` is the observed demand over the utilization and `median_demand` the
/// observed demand, so the served demand metrics say what the target was sized for.
pub fn reactive_plan(
    observed: Option<f64>,
    policy: &Policy,
    now: DateTime<Utc>,
    previous: Option<&ReplicaPlan>,
) -> ReplicaPlan {
    reactive_plan_at(observed, policy, policy.fallback_utilization, now, previous)
}

/// One of the controller's reactive candidates ([`crate::control::service_level::UTILIZATIONS`], all in (0, 1]).
fn grid_utilization(u: f64) -> Utilization {
    Utilization::new(u).expect("the controller's utilizations are in (0, 1]")
}

/// [`reactive_plan`] at target `utilization` instead of the policy's fallback: what an HPA with that target would ask
/// for.
pub fn reactive_plan_at(
    observed: Option<f64>,
    policy: &Policy,
    utilization: Utilization,
    now: DateTime<Utc>,
    previous: Option<&ReplicaPlan>,
) -> ReplicaPlan {
    let utilization = utilization.get();
    let observed = observed.filter(|v| v.is_finite() && *v >= 0.0);
    // Observed demand is finite and non-negative here, so a count is `None` only for a capacity the policy's
    // validation rules out; zero is then what the bounds turn into `min_replicas`.
    let floor = observed.map_or(0, |o| {
        planner::replicas_for(o, policy.capacity_per_replica).unwrap_or(0)
    });
    // Both numbers as that HPA reads them, as the backtest's reactive frontier runs it: Quantities, in milli-units
    // rounded up (the target `capacity × u` as a team writes it, observed demand as the metric arrives).
    let read = |v: f64| quantity::served_milli(v).map_or(v, |m| m as f64 / 1000.0);
    let per_pod = read(policy.capacity_per_replica * utilization);
    let target = observed.map_or(0, |o| planner::replicas_for(read(o), per_pod).unwrap_or(0));
    let (want, mut bound) = match (observed, previous) {
        (None, Some(prev)) => (prev.replicas, Bound::Hold),
        _ => (target, Bound::ReactiveFloor),
    };
    let replicas = policy.replicas.clamp(want);
    if replicas > want {
        bound = Bound::Min;
    } else if replicas < want {
        bound = Bound::Max;
    }
    let demand = observed.unwrap_or(0.0);
    // Served as an HPA at that utilization would read observed demand, so that its tolerance acts exactly as on a
    // reactive HPA; when the bounds or a hold decided the count, as the forecast plan serves one.
    let exact = observed.map(|o| read(o) / per_pod).filter(|x| {
        quantity::served_milli(*x).is_some_and(|m| m > 0 && (m + 999).div_euclid(1000) == i64::from(replicas))
    });
    ReplicaPlan {
        at: now,
        replicas,
        served: exact.unwrap_or_else(|| planner::served_value(replicas, previous.map(|p| p.replicas))),
        planned_demand: demand / utilization,
        median_demand: demand,
        observed_demand: observed,
        peak_at: None,
        window_end: now + policy.lead + policy.sync,
        quantile: policy.quantile.get(),
        forecast_replicas: target,
        reactive_floor: floor,
        bound,
        utilization: Some(utilization),
    }
}

/// The reactive target the service-level controller chose, raised to what the forecast's median needs over the cover
/// window when that is more ([`Bound::MedianFloor`]).
///
/// Why: a reactive target reads demand now, so a rise the forecast expects within the lead (a weekday after the
/// weekend, the morning ramp) reaches it only after it has arrived. The median is what the forecast expects, not a
/// cautious bound: it raises the target only when demand is expected to outgrow the target's own headroom, and never
/// lowers it. On hourly web traffic at 0.05% the controller serves reactive targets (the quantiles' records hold two
/// event days no forecast saw), and each Monday's first hour (1.9× Sunday night's demand, which the forecast's
/// weekly cycle expected) was most of what it left unserved: with the floor it meets 0.05% at every lead.
///
/// The floor goes no higher than what observed demand needs at the most cautious reactive target
/// (`UTILIZATIONS[0]`, whose headroom the controller already weighs), so a median far above observed demand cannot
/// outrun every target it scores. On spiky social-media mentions the median ran 4–5× observed demand at times and an
/// unbounded floor raised 3 pods to 12 and 5 to 25, saving almost no demand (−0.5 to −0.8% at equal service); capped,
/// that trace is back at the frontier and the Mondays above are caught as before.
///
/// Not applied while the forecast is demoted: its quality gate does not trust it then. The controller's reactive
/// shadows are floored throughout, so a demoted workload's fallback target is picked on records a little kinder
/// than what it is then served.
fn median_floored(
    reactive: &ReplicaPlan,
    forecast_plan: &ReplicaPlan,
    policy: &Policy,
    previous: Option<&ReplicaPlan>,
) -> ReplicaPlan {
    // With nothing observed there is nothing to raise.
    if reactive.observed_demand.is_none() {
        return reactive.clone();
    }
    // No more than the most cautious reactive candidate would hold now, counted as its HPA counts (so that target
    // itself is never raised), and the floor never outruns every reactive target the controller scores.
    let cautious = grid_utilization(service_level::UTILIZATIONS[0]);
    let cap = reactive_plan_at(reactive.observed_demand, policy, cautious, reactive.at, previous).replicas;
    let need = planner::replicas_for(forecast_plan.median_demand, policy.capacity_per_replica)
        .map_or(0, |n| policy.replicas.clamp(n))
        .min(cap);
    if need <= reactive.replicas {
        return reactive.clone();
    }
    ReplicaPlan {
        replicas: need,
        served: planner::served_value(need, previous.map(|p| p.replicas)),
        median_demand: forecast_plan.median_demand,
        peak_at: forecast_plan.peak_at,
        bound: Bound::MedianFloor,
        ..reactive.clone()
    }
}

/// Demand observed "now": the mean of samples whose intervals end in `(at − 60 s, at]`, or else the latest sample.
///
/// `None` when there is no sample at all. Missing samples are never read as zero.
pub fn observed_demand(history: &Series, at: DateTime<Utc>) -> Option<f64> {
    history
        .mean_ending_in(at - TimeDelta::seconds(60), at)
        .or_else(|| history.visible_at(at).last_present().map(|(_, v)| v))
}

/// [`observed_demand`] as the reactive floor reads it: vetted against the hour before it and the demand `ceiling`
/// of `maxReplicas`, so that one absurd sample is flagged instead of scaling the workload to `maxReplicas` (see
/// [`planner::glitch_limit`]).
pub fn vetted_demand(history: &Series, at: DateTime<Utc>, ceiling: f64) -> Option<planner::Observed> {
    let observed = observed_demand(history, at)?;
    let recent = at - TimeDelta::seconds(60);
    // The first slot the observation is made of: the window's, or else the latest sample's.
    let first = if history.mean_ending_in(recent, at).is_some() {
        history.count_ended_by(recent)
    } else {
        let visible = history.count_ended_by(at);
        history.slots(0..visible).rposition(|v| v.is_some())?
    };
    planner::Observed::vet(history, first, observed, ceiling)
}

/// How much history the engine reads, in slots of a series' step: a replay or a backtest hands it a tail this long
/// instead of the whole history, so that a long run does not copy it all at every decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// A fit: [`forecast::history_span`], plus a slot.
    pub fit_slots: usize,
    /// A decision, counted back from the latest sample: a day, at least 400 slots (the level correction reads at
    /// most 161).
    pub decide_slots: usize,
}

impl Reads {
    /// For a series of this step.
    pub fn at(step: TimeDelta) -> Self {
        let slots = |d: TimeDelta| (d.num_milliseconds() as f64 / step.num_milliseconds() as f64).ceil() as usize;
        Self {
            fit_slots: slots(forecast::history_span(step)) + 1,
            decide_slots: slots(TimeDelta::days(1)).max(400),
        }
    }
}

/// What [`Engine::replay`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Decisions replayed.
    pub decisions: usize,
    /// Models fitted.
    pub fits: usize,
    /// Changes of forecast health along the way.
    pub transitions: usize,
}

/// A workload's model state and policy.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: ForecastSettings,
    policy: Policy,
    refit_interval: TimeDelta,
    model: Option<Model>,
    last_plan: Option<ReplicaPlan>,
    mode: Mode,
    quality: Tracker,
    adaptive: Option<Controller>,
    /// A plan made before a restart, served while warming up until the instant given ([`Engine::adopt_learned`]).
    restored: Option<(ReplicaPlan, DateTime<Utc>)>,
}

/// What an engine has learned, to carry across a restart ([`Engine::learned`], [`Engine::adopt_learned`]): the SLO
/// controller's record, the quality gate's state and the last plan. Never history, and never the model: both are
/// fetched and fitted anew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Learned {
    /// The SLO controller's record (`None` with adaptation off).
    pub adaptive: Option<service_level::Learned>,
    /// The quality gate's state.
    pub quality: quality::Learned,
    /// The last plan served.
    pub last_plan: Option<ReplicaPlan>,
}

/// The result of one decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The forecast the plan was made from.
    pub forecast: Forecast,
    /// The plan served: [`Decision::forecast_plan`] or [`Decision::reactive_plan`], as [`Decision::serving`] says.
    pub plan: ReplicaPlan,
    /// What the forecast asks for.
    pub forecast_plan: ReplicaPlan,
    /// What observed demand alone asks for.
    pub reactive_plan: ReplicaPlan,
    /// Which of the two is served, and why.
    pub serving: Serving,
    /// A change of forecast health this decision caused, if any.
    pub transition: Option<quality::Transition>,
    /// Observed demand as the reactive floor read it (`glitch` set when the latest observation was taken for one).
    pub observed: Option<planner::Observed>,
}

impl Engine {
    /// A new engine with no model yet, serving its forecast, with the default quality bounds.
    pub fn new(settings: ForecastSettings, policy: Policy, refit_interval: TimeDelta) -> Self {
        let quality =
            Tracker::new(quality::Bounds::default(), policy.quantile).with_glitch_ceiling(policy.glitch_ceiling());
        let adaptive = policy.adaptive.enabled.then(|| Controller::new(policy.adaptive));
        Self {
            settings,
            policy,
            refit_interval,
            model: None,
            last_plan: None,
            mode: Mode::Serve,
            quality,
            adaptive,
            restored: None,
        }
    }

    /// The same engine with this mode and these quality bounds.
    pub fn with_serving(mut self, mode: Mode, bounds: quality::Bounds) -> Self {
        self.mode = mode;
        self.quality = Tracker::new(bounds, self.policy.quantile).with_glitch_ceiling(self.policy.glitch_ceiling());
        self
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Forecast quality so far.
    pub fn quality(&self) -> &Tracker {
        &self.quality
    }

    /// The adaptive quantile's scores and choice; `None` when adaptation is off.
    pub fn service_level(&self) -> Option<service_level::Report> {
        self.adaptive.as_ref().map(Controller::report)
    }

    /// The fitted model, if any.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The forecast settings.
    pub fn settings(&self) -> &ForecastSettings {
        &self.settings
    }

    /// True when there is no model or the model is older than the refit interval.
    pub fn needs_refit(&self, now: DateTime<Utc>) -> bool {
        self.model
            .as_ref()
            .is_none_or(|m| now - m.fitted_at() >= self.refit_interval)
    }

    /// How the next fit should be made: a workload's first model with [`forecast::Effort::First`] (it is served
    /// its reactive target until then, so a cheaper model sooner is worth more), every later one in full.
    pub fn next_fit_effort(&self) -> forecast::Effort {
        match self.model {
            None => forecast::Effort::First,
            Some(_) => forecast::Effort::Full,
        }
    }

    /// Installs a model fitted elsewhere (e.g. on a blocking thread).
    pub fn install(&mut self, model: Model) {
        self.model = Some(model);
        self.restored = None;
    }

    /// Fits a model in place when one is due.
    pub fn refit_if_due(&mut self, history: &Series, now: DateTime<Utc>) {
        if self.needs_refit(now) {
            self.install(forecast::fit(history, &self.settings, now));
        }
    }

    /// Forecasts from `history`, scores earlier forecasts against it, and plans for `now`. `None` when there is no
    /// sample to plan from. With no model yet, the decision is [`Serving::Warming`]: the reactive target, with an
    /// empty forecast that says why, and nothing scored.
    ///
    /// `observed_at` is the instant whose recent samples count as observed demand (now, less any scrape lag).
    pub fn decide(&mut self, history: &Series, now: DateTime<Utc>, observed_at: DateTime<Utc>) -> Option<Decision> {
        let Some(model) = self.model.as_ref() else {
            return self.warming(history, now, observed_at);
        };
        let vetted = vetted_demand(history, observed_at, self.policy.glitch_ceiling());
        let observed = vetted.map(|v| v.demand);
        history.last_present()?;
        let lag = (now - history.end()).max(TimeDelta::zero());
        // The plan reads only the lead window; the rest of the horizon is for people (and costs little).
        let horizon = lag + (self.policy.lead + self.policy.sync + self.policy.sync).max(DISPLAY_HORIZON);
        let forecast = model.forecast(history, now, horizon);
        let previous = self.last_plan.as_ref();
        // The service-level controller: score the candidates on what has since been observed, run their HPAs for
        // `now`, and plan at the one chosen (before warm-up, at the configured quantile).
        let mut policy = self.policy.clone();
        let mut choice = None;
        let mut fallback = None;
        if let Some(adaptive) = self.adaptive.as_mut() {
            adaptive.observe(history, &self.policy);
            adaptive.record(&forecast, observed, &self.policy, now);
            choice = adaptive.choose();
            fallback = adaptive.reactive_fallback();
            if let Some(Choice::Level(q)) = choice {
                policy.quantile = q;
            }
        }
        let forecast_plan = planner::plan_from(&forecast, observed, &policy, now, previous);
        let transition = self.quality.observe(history, now);
        self.quality.record(&forecast, self.policy.lead, now);
        let serving = match (self.mode, self.quality.is_demoted(), choice) {
            (Mode::ForecastOnly, _, _) => Serving::ForecastOnly,
            (Mode::Serve, true, _) => Serving::Demoted,
            (Mode::Serve, false, Some(Choice::Reactive(_))) => Serving::Reactive,
            (Mode::Serve, false, _) => Serving::Forecast,
        };
        // The reactive target: the one chosen; while demoted, the one the choice's rule picks of the reactive ones
        // ([`Controller::reactive_fallback`]); in a forecast-only trial (and before warm-up), the configured fallback
        // utilization.
        let utilization = match (serving, choice) {
            (Serving::ForecastOnly, _) => self.policy.fallback_utilization,
            (_, Some(Choice::Reactive(u))) => grid_utilization(u),
            _ => fallback.map_or(self.policy.fallback_utilization, grid_utilization),
        };
        let reactive = reactive_plan_at(observed, &self.policy, utilization, now, previous);
        let plan = match serving {
            Serving::Reactive => median_floored(&reactive, &forecast_plan, &self.policy, previous),
            _ if serving.is_reactive() => reactive.clone(),
            _ => forecast_plan.clone(),
        };
        if let Some(adaptive) = self.adaptive.as_mut() {
            adaptive.serve(Some(plan.served), now);
        }
        self.last_plan = Some(plan.clone());
        Some(Decision {
            forecast,
            plan,
            forecast_plan,
            reactive_plan: reactive,
            serving,
            transition,
            observed: vetted,
        })
    }

    /// The decision while no model is fitted: the reactive target at the utilization the service-level controller
    /// would fall back to (the configured fallback before it has warmed up). The forecast quality gate and the
    /// controller's shadows score nothing: there is no forecast to score.
    fn warming(&mut self, history: &Series, now: DateTime<Utc>, observed_at: DateTime<Utc>) -> Option<Decision> {
        history.last_present()?;
        let vetted = vetted_demand(history, observed_at, self.policy.glitch_ceiling());
        let utilization = match self.mode {
            Mode::ForecastOnly => self.policy.fallback_utilization,
            Mode::Serve => self
                .adaptive
                .as_ref()
                .and_then(Controller::reactive_fallback)
                .map_or(self.policy.fallback_utilization, grid_utilization),
        };
        let reactive = reactive_plan_at(
            vetted.map(|v| v.demand),
            &self.policy,
            utilization,
            now,
            self.last_plan.as_ref(),
        );
        let restored = self
            .restored
            .as_ref()
            .filter(|(_, until)| now <= *until)
            .map(|(p, _)| p.clone());
        // A restored plan was a model's plan: it is floored as one is, at what observed demand needs at full
        // capacity, not at the reactive target's headroom. Flooring it higher would serve a taken-over workload
        // more than its last owner did for the seconds until the new owner's first model, and replicas that had
        // not pulled that bump yet would disagree with it.
        let (plan, serving, why) = match restored {
            Some(p) => {
                let floor = reactive_plan_at(
                    vetted.map(|v| v.demand),
                    &self.policy,
                    Utilization::FULL,
                    now,
                    self.last_plan.as_ref(),
                );
                let plan = if p.replicas >= floor.replicas { p } else { floor };
                (plan, Serving::Restored, RESTORED)
            }
            None => (reactive.clone(), Serving::Warming, WARMING),
        };
        let mut forecast = Forecast::from_median(history.end().min(now), history.step(), Vec::new(), now);
        forecast.fallback = Some(why.to_owned());
        self.last_plan = Some(plan.clone());
        Some(Decision {
            forecast,
            forecast_plan: plan.clone(),
            plan,
            reactive_plan: reactive,
            serving,
            transition: None,
            observed: vetted,
        })
    }

    /// Warms the live scores, the adaptive quantile's shadows and the quality gate, by replaying the decisions this
    /// engine would have made every `interval` over `[from, to)`, each on the samples of `history` that had ended by
    /// then: a restart, or a workload just configured, then starts from days of its own history instead of a day
    /// at the configured quantile.
    ///
    /// Refits happen as they would have live (every refit interval, on the history visible then). The last model
    /// stays installed; the last plan does not, since the live HPA did not follow the replayed ones.
    pub fn replay(
        &mut self,
        history: &Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: TimeDelta,
    ) -> Replayed {
        Self::replay_all(std::slice::from_mut(self), history, from, to, interval)
            .pop()
            .unwrap_or_default()
    }

    /// [`Engine::replay`] for several engines of one workload that differ only in their policy (e.g. one per lead
    /// time and SLO in a backtest): engines with the same forecast settings and refit interval share each refit,
    /// made once and installed into every one of them, as [`crate::backtest`] does live ([`Engine::fit_groups`]);
    /// the refits due at one moment are made together ([`forecast::fit_each`]).
    pub fn replay_all(
        engines: &mut [Engine],
        history: &Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        interval: TimeDelta,
    ) -> Vec<Replayed> {
        let mut done = vec![Replayed::default(); engines.len()];
        if interval <= TimeDelta::zero() || history.is_empty() || engines.is_empty() {
            return done;
        }
        let groups = Self::fit_groups(engines);
        let step = history.step();
        let Reads {
            fit_slots,
            decide_slots,
        } = Reads::at(step);
        let tail = |n: usize, keep: usize| {
            let latest = history.slots(0..n).rposition(|v| v.is_some()).unwrap_or(n);
            let first = n.saturating_sub(keep).min(latest.saturating_sub(keep));
            Series::from_values(history.time_at(first), step, history.slots(first..n).collect())
        };
        let mut now = from;
        while now < to {
            let n = history.count_ended_by(now);
            if n > 0 {
                for g in Self::refit_groups(engines, &groups, || tail(n, fit_slots), now) {
                    for &k in &groups[g] {
                        done[k].fits += 1;
                    }
                }
                let recent = tail(n, decide_slots);
                for (engine, done) in engines.iter_mut().zip(done.iter_mut()) {
                    if let Some(d) = engine.decide(&recent, now, now) {
                        done.decisions += 1;
                        done.transitions += usize::from(d.transition.is_some());
                    }
                }
            }
            now += interval;
        }
        for engine in engines.iter_mut() {
            engine.last_plan = None;
        }
        done
    }

    /// The engines (by index, in order) that can share one fit: those with the same forecast settings and refit
    /// interval. A fit depends on the forecast settings alone (the lead time among them: the horizons a plan reads
    /// choose the level correction), never on the rest of the policy.
    pub fn fit_groups(engines: &[Engine]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (k, e) in engines.iter().enumerate() {
            let alike = |g: &&mut Vec<usize>| {
                let first = &engines[g[0]];
                first.settings == e.settings && first.refit_interval == e.refit_interval
            };
            match groups.iter_mut().find(alike) {
                Some(g) => g.push(k),
                None => groups.push(vec![k]),
            }
        }
        groups
    }

    /// Refits the groups of `groups` ([`Engine::fit_groups`]) in which an engine needs a refit at `now`, all of them
    /// from one `history` (read only when some refit is due) and together ([`forecast::fit_each`]), and installs each
    /// group's model into its engines. Returns the indices of the groups refitted.
    pub fn refit_groups(
        engines: &mut [Engine],
        groups: &[Vec<usize>],
        history: impl FnOnce() -> Series,
        now: DateTime<Utc>,
    ) -> Vec<usize> {
        let due: Vec<usize> = (0..groups.len())
            .filter(|&g| groups[g].iter().any(|&k| engines[k].needs_refit(now)))
            .collect();
        if due.is_empty() {
            return due;
        }
        let settings: Vec<ForecastSettings> = due.iter().map(|&g| engines[groups[g][0]].settings.clone()).collect();
        let models = forecast::fit_each(&history(), &settings, now, forecast::Effort::Full);
        for (&g, model) in due.iter().zip(models) {
            for &k in &groups[g] {
                engines[k].install(model.clone());
            }
        }
        due
    }

    /// Takes over the live scores (quality gate, adaptive quantile) of `warmed`, an engine of the same workload
    /// that [`Engine::replay`]ed its recent history; the model and the last plan stay this engine's own.
    pub fn adopt_scores(&mut self, warmed: Engine) {
        self.quality = warmed.quality;
        self.adaptive = warmed.adaptive;
    }

    /// What this engine has learned, to adopt after a restart.
    pub fn learned(&self) -> Learned {
        Learned {
            adaptive: self.adaptive.as_ref().map(Controller::learned),
            quality: self.quality.learned(),
            last_plan: self.last_plan.clone(),
        }
    }

    /// Takes over what an engine of the same workload learned before a restart ([`Engine::learned`]): the SLO
    /// controller's record and the quality gate's state. Until its first model is in, the engine serves the last
    /// plan ([`Serving::Restored`], never below what observed demand needs) while `now` is before `serve_until`, instead
    /// of the reactive target alone. Refused, with nothing changed, when the controller's record does not fit.
    pub fn adopt_learned(
        &mut self,
        learned: &Learned,
        serve_until: DateTime<Utc>,
    ) -> Result<(), service_level::LearnedError> {
        if let (Some(controller), Some(record)) = (self.adaptive.as_mut(), learned.adaptive.as_ref()) {
            let mut adopted = controller.clone();
            adopted.adopt(record)?;
            *controller = adopted;
        }
        self.quality.adopt(&learned.quality);
        if let Some(plan) = &learned.last_plan {
            self.last_plan = Some(plan.clone());
            self.restored = Some((plan.clone(), serve_until));
        }
        Ok(())
    }

    /// Serves `plan`, the last plan another replica served for this workload, until the first model is in while
    /// `now` is before `serve_until` ([`Serving::Restored`], never below what observed demand needs), unless a model is in
    /// or the plan restored is as new. True when taken.
    pub fn take_over(&mut self, plan: ReplicaPlan, serve_until: DateTime<Utc>) -> bool {
        let newer = self.restored.as_ref().is_none_or(|(p, _)| p.at < plan.at);
        if self.model.is_some() || !newer {
            return false;
        }
        self.last_plan = Some(plan.clone());
        self.restored = Some((plan, serve_until));
        true
    }

    /// The most recent plan.
    pub fn last_plan(&self) -> Option<&ReplicaPlan> {
        self.last_plan.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::quality::Health;
    use crate::forecast::{Method, Seasonality};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 - 1_800_000_000 % 86_400, 0).unwrap()
    }

    fn policy() -> Policy {
        Policy::new(20.0, 100)
    }

    fn engine(mode: Mode) -> Engine {
        let settings = ForecastSettings {
            seasonality: Seasonality::Periods(vec![TimeDelta::days(1)]),
            horizon: TimeDelta::hours(1),
            decision: TimeDelta::hours(1),
        };
        Engine::new(settings, policy(), TimeDelta::hours(1)).with_serving(mode, quality::Bounds::default())
    }

    /// A daily cycle with a little deterministic noise; between `chaos.0` and `chaos.1` (minutes) demand turns
    /// bursty: every other minute, pseudo-randomly, it jumps to 3–5 times the usual level.
    fn regime_change(days: i64, chaos: (usize, usize)) -> Series {
        let mut seed = 42u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let n = (days * 1440) as usize;
        let values = (0..n)
            .map(|i| {
                let day = (i % 1440) as f64 / 1440.0;
                let base = 200.0 + 120.0 * (std::f64::consts::TAU * (day - 0.3)).sin();
                let noise = 1.0 + 0.03 * (next() - 0.5);
                let burst = if (chaos.0..chaos.1).contains(&i) && next() < 0.5 {
                    2.0 + 1.5 * next()
                } else {
                    1.0
                };
                Some(base * noise * burst)
            })
            .collect();
        Series::from_values(t0(), TimeDelta::minutes(1), values)
    }

    /// Four days of 10-minute slots: a daily cycle `mean ± swing` with ±3% deterministic noise.
    fn daily(mean: f64, swing: f64) -> Series {
        let values = (0..4 * 144)
            .map(|i| {
                let day = (i % 144) as f64 / 144.0;
                let noise = 1.0 + 0.03 * (((i * 7919) % 13) as f64 / 6.0 - 1.0);
                Some((mean + swing * (std::f64::consts::TAU * day).sin()) * noise)
            })
            .collect();
        Series::from_values(t0(), TimeDelta::minutes(10), values)
    }

    /// The served decision at the end of `series`, with a freshly fitted engine.
    fn decide_at_end(series: &Series, policy: Policy) -> Decision {
        let settings = ForecastSettings {
            seasonality: Seasonality::Auto,
            horizon: TimeDelta::hours(1),
            decision: TimeDelta::hours(1),
        };
        let mut e = Engine::new(settings, policy, TimeDelta::hours(1));
        let now = series.end();
        e.refit_if_due(series, now);
        e.decide(series, now, now).unwrap()
    }

    fn with(series: &Series, slot: usize, value: f64) -> Series {
        let mut series = series.clone();
        series.set(slot, Some(value));
        series
    }

    #[test]
    fn before_its_first_model_an_engine_serves_the_reactive_target_and_says_it_is_warming() {
        let series = daily(1100.0, 300.0);
        let now = series.end();
        for mode in [Mode::Serve, Mode::ForecastOnly] {
            let mut e = engine(mode);
            let d = e.decide(&series, now, now).expect("a sample to plan from");
            assert_eq!(d.serving, Serving::Warming);
            let observed = observed_demand(&series, now);
            assert_eq!(d.plan, reactive_plan(observed, &policy(), now, None));
            assert_eq!(d.plan, d.reactive_plan);
            assert!(d.forecast.is_empty(), "no model, no forecast");
            assert_eq!(d.forecast.fallback.as_deref(), Some(WARMING));
            assert_eq!(e.quality().recent().count(), 0, "nothing to score");
            // The first model ends the warm-up.
            e.refit_if_due(&series, now);
            let d = e.decide(&series, now + TimeDelta::minutes(1), now).unwrap();
            assert_ne!(d.serving, Serving::Warming);
            assert!(!d.forecast.is_empty());
        }
        let empty = Series::from_values(t0(), TimeDelta::minutes(10), vec![None; 6]);
        assert!(
            engine(Mode::Serve).decide(&empty, t0(), t0()).is_none(),
            "missing data is not zero demand"
        );
    }

    #[test]
    fn one_absurd_sample_moves_neither_forecast_nor_floor() {
        // About 1,100/s at 110 per replica: ten replicas or so, under a ceiling of 40.
        let clean = daily(1100.0, 300.0);
        let policy = Policy::new(110.0, 40);
        let base = decide_at_end(&clean, policy.clone());
        assert!((8..=20).contains(&base.plan.replicas), "clean: {:?}", base.plan);
        let n = clean.len();
        // In the fitted history, a day back, half an hour back, and as the latest sample.
        for slot in [n - 144, n - 3, n - 1] {
            let d = decide_at_end(&with(&clean, slot, 1e308), policy.clone());
            let p = &d.plan;
            assert!(
                p.replicas.abs_diff(base.plan.replicas) <= 2 && p.bound != Bound::Max,
                "glitch at slot {slot}: {p:?} vs clean {:?}",
                base.plan
            );
            assert!(
                (0.8..1.25).contains(&(p.planned_demand / base.plan.planned_demand)),
                "glitch at slot {slot}: planned {} vs {}",
                p.planned_demand,
                base.plan.planned_demand
            );
            assert!(d.forecast.median.iter().all(|v| *v < 3000.0), "glitch at slot {slot}");
        }
        let d = decide_at_end(&with(&clean, n - 144, 1e308), policy.clone());
        assert_eq!(d.forecast.replaced_samples, 1);
        let d = decide_at_end(&with(&clean, n - 1, 1e308), policy);
        assert_eq!(d.plan.observed_demand.map(|o| o < 3000.0), Some(true), "{:?}", d.plan);
    }

    #[test]
    fn one_absurd_sample_in_a_small_series_plans_within_its_range() {
        // Values of 20–80 at 10 per replica.
        let clean = daily(50.0, 30.0);
        let policy = Policy::new(10.0, 40);
        let n = clean.len();
        for slot in [n - 100, n - 1] {
            let d = decide_at_end(&with(&clean, slot, 1e308), policy.clone());
            let planned = d.plan.planned_demand;
            assert!(
                planned > 15.0 && planned < 120.0,
                "glitch at slot {slot}: planned {planned}"
            );
            assert!(
                (2..=12).contains(&d.plan.replicas),
                "glitch at slot {slot}: {:?}",
                d.plan
            );
        }
    }

    #[test]
    fn reactive_plan_is_observed_demand_clamped() {
        // 45 units at 20 per replica fill 3 replicas; at 70% utilization the target is 45 / 14 → 4.
        let p = reactive_plan(Some(45.0), &policy(), t0(), None);
        assert_eq!(
            (p.replicas, p.bound, p.reactive_floor, p.median_demand),
            (4, Bound::ReactiveFloor, 3, 45.0)
        );
        assert!((p.planned_demand - 45.0 / 0.7).abs() < 1e-9);
        let full = Policy {
            fallback_utilization: Utilization::FULL,
            ..policy()
        };
        assert_eq!(reactive_plan(Some(45.0), &full, t0(), None).replicas, 3);
        let p = reactive_plan(Some(0.0), &policy(), t0(), None);
        assert_eq!((p.replicas, p.bound), (1, Bound::Min));
        let p = reactive_plan(Some(1e9), &policy(), t0(), None);
        assert_eq!((p.replicas, p.bound), (100, Bound::Max));
        let held = reactive_plan(None, &policy(), t0(), Some(&p));
        assert_eq!(
            (held.replicas, held.bound),
            (100, Bound::Hold),
            "nothing observed is not zero demand"
        );
    }

    #[test]
    fn a_chosen_reactive_target_is_raised_to_what_the_forecast_median_needs() {
        let p = policy();
        // 84 units at 70% of 20 per replica: 6 replicas.
        let reactive = reactive_plan_at(Some(84.0), &p, Utilization::new(0.7).unwrap(), t0(), None);
        assert_eq!(reactive.replicas, 6);
        let forecast_plan = |median: f64| ReplicaPlan {
            median_demand: median,
            ..reactive.clone()
        };
        // The median expects 150 within the window: 8 replicas, more than the target's 6.
        let raised = median_floored(&reactive, &forecast_plan(150.0), &p, Some(&reactive));
        assert_eq!((raised.replicas, raised.bound), (8, Bound::MedianFloor));
        assert!(raised.served > 7.0 && raised.served <= 8.0, "{raised:?}");
        assert_eq!((raised.utilization, raised.median_demand), (Some(0.7), 150.0));
        // A median the target's headroom covers changes nothing.
        assert_eq!(median_floored(&reactive, &forecast_plan(110.0), &p, None), reactive);
        // A median far beyond observed demand raises the target no further than reactive@35% would hold now:
        // 84 / 35% = 240 units, 12 replicas.
        let capped = median_floored(&reactive, &forecast_plan(1e9), &p, None);
        assert_eq!((capped.replicas, capped.bound), (12, Bound::MedianFloor));
        // maxReplicas still binds.
        let narrow = Policy::new(20.0, 10);
        assert_eq!(
            median_floored(&reactive, &forecast_plan(1e9), &narrow, None).replicas,
            10
        );
        // reactive@35% itself is never raised, though its HPA's rounding can hold a pod fewer than
        // `observed / (35% × capacity)` asks for: 364 milli-units against the 41 that 35% of 0.11533 per replica
        // rounds up to is 8.88 → 9 pods, where the unrounded 0.364 / 0.0403667 = 9.02 would allow 10.
        let tiny = Policy::new(0.11533335, 40);
        let at35 = reactive_plan_at(Some(8.878 * 0.041), &tiny, Utilization::new(0.35).unwrap(), t0(), None);
        assert_eq!(at35.replicas, 9);
        let plan = |median: f64| ReplicaPlan {
            median_demand: median,
            ..at35.clone()
        };
        assert_eq!(median_floored(&at35, &plan(100.0), &tiny, None), at35);
        // Nothing observed: nothing to raise.
        let blind = ReplicaPlan {
            observed_demand: None,
            ..reactive.clone()
        };
        assert_eq!(median_floored(&blind, &forecast_plan(150.0), &p, None), blind);
    }

    #[test]
    fn a_reactive_target_is_the_quantity_its_hpa_would_hold() {
        // 1.0005 units per replica at 100%: the HPA's AverageValue target is the Quantity 1001m (rounded up to a
        // milli-unit), and 10.0075 units read as 10008m fill ceil(10008 / 1001) = 10 pods; the unrounded target
        // would ask for 11, one pod more than the HPA the backtest's frontier runs at that utilization.
        let policy = Policy::new(1.0005, 100);
        let p = reactive_plan_at(Some(10.0075), &policy, Utilization::FULL, t0(), None);
        assert_eq!(p.replicas, 10);
        let hpa_pods = (served_milli_of(10.0075) as f64 / 1001.0).ceil();
        assert_eq!(f64::from(p.replicas), hpa_pods);
        let served = served_milli_of(p.served);
        assert!((9_001..=10_000).contains(&served), "served {served} milli");
    }

    #[test]
    fn observed_demand_is_read_as_the_hpa_reads_the_metric() {
        // An `f32` sample of 0.09 is 0.0900000035… as f64, which the HPA reads as 91m. Against a 41m target
        // (35% of 0.1153) from two pods that is 91 / 82 = 1.11, past the tolerance: the HPA scales to 3. Served as
        // the plain quotient it would be 2.196 / 2 = 1.098, within it: the plan would hold 2.
        let sample = f64::from(0.09f32);
        let policy = Policy::new(0.1153, 100);
        let u = Utilization::new(0.35).unwrap();
        let p = reactive_plan_at(Some(sample), &policy, u, t0(), None);
        assert_eq!(served_milli_of(p.served), 2220, "ceil(1000 × 91 / 41)");
        assert!(served_milli_of(p.served) as f64 / 2000.0 > 1.1);
    }

    fn served_milli_of(v: f64) -> i64 {
        quantity::served_milli(v).unwrap()
    }

    #[test]
    fn forecast_only_serves_the_reactive_target_and_still_forecasts() {
        let series = regime_change(3, (0, 0));
        let now = t0() + TimeDelta::days(2) + TimeDelta::hours(7);
        let mut e = engine(Mode::ForecastOnly);
        let visible = series.visible_at(now);
        e.refit_if_due(&visible, now);
        let d = e.decide(&visible, now, now).unwrap();
        assert_eq!(d.serving, Serving::ForecastOnly);
        assert_eq!(d.plan, d.reactive_plan);
        let observed = observed_demand(&visible, now).unwrap();
        assert_eq!(Some(d.plan.replicas), planner::replicas_for(observed, 20.0 * 0.7));
        assert_eq!(Some(d.plan.reactive_floor), planner::replicas_for(observed, 20.0));
        assert!(
            d.forecast.len() >= 60,
            "the forecast covers the display horizon: {}",
            d.forecast.len()
        );
        assert!(d.forecast_plan.planned_demand > 0.0);
        assert_eq!(e.quality().report().pending, 1, "the forecast is scored too");
    }

    #[test]
    fn a_regime_change_demotes_to_reactive_and_recovery_promotes_back() {
        let chaos = (2 * 1440 + 8 * 60, 2 * 1440 + 11 * 60); // day 2, 08:00 to 11:00
        let series = regime_change(3, chaos);
        let mut e = engine(Mode::Serve);
        let start = t0() + TimeDelta::days(2) + TimeDelta::hours(6);
        let mut transitions = Vec::new();
        let mut served_reactive_while_demoted = 0;
        for minute in 0..(10 * 60) {
            let now = start + TimeDelta::minutes(minute);
            let visible = series.visible_at(now);
            e.refit_if_due(&visible, now);
            let d = e.decide(&visible, now, now).unwrap();
            if let Some(t) = d.transition.clone() {
                transitions.push((minute, t));
            }
            match d.serving {
                Serving::Demoted => {
                    assert_eq!(d.plan, d.reactive_plan, "a demoted workload serves the reactive target");
                    assert!(!d.forecast.is_empty(), "and keeps forecasting");
                    served_reactive_while_demoted += 1;
                }
                Serving::Forecast => assert_eq!(d.plan, d.forecast_plan),
                Serving::ForecastOnly | Serving::Reactive | Serving::Warming | Serving::Restored => unreachable!(),
            }
            if minute < 120 {
                assert_eq!(
                    d.serving,
                    Serving::Forecast,
                    "the smooth regime is trusted (minute {minute}): {:?}",
                    e.quality().report()
                );
            }
        }
        let summary: Vec<_> = transitions.iter().map(|(m, t)| (m, t.to, t.reason.clone())).collect();
        assert!(transitions.len() >= 2, "{summary:#?}");
        let (demoted_at, first) = &transitions[0];
        assert_eq!(first.to, Health::Demoted, "{summary:#?}");
        assert!(
            (120..240).contains(demoted_at),
            "demoted within the first hour of bursts: {summary:#?}"
        );
        let (promoted_at, last) = transitions.last().unwrap();
        assert_eq!(last.to, Health::Trusted, "{summary:#?}");
        assert!(
            *promoted_at > 300,
            "promoted only after the bursts end (minute 300): {summary:#?}"
        );
        assert!(served_reactive_while_demoted > 30);
        let r = e.quality().report();
        assert_eq!(r.health, Health::Trusted);
        assert!(r.demotions >= 1 && r.promotions == r.demotions, "{r:?}");
    }

    /// The adaptive quantile after two scored hours, with a daily season: a policy and settings for both tests.
    fn two_hour_warm_up() -> (Policy, ForecastSettings) {
        let policy = Policy {
            adaptive: crate::control::policy::Adaptive {
                warmup: TimeDelta::hours(2),
                ..Default::default()
            },
            ..policy()
        };
        let settings = ForecastSettings {
            seasonality: Seasonality::Periods(vec![TimeDelta::days(1)]),
            horizon: TimeDelta::hours(1),
            decision: TimeDelta::hours(1),
        };
        (policy, settings)
    }

    /// Three hours of decisions every minute, two days into a calm `regime_change`, each on the history visible
    /// then, by an engine with a two-hour warm-up: the series, the hours, a maker of fresh engines alike, and the
    /// engine that lived them.
    fn three_hours_lived() -> (Series, (DateTime<Utc>, DateTime<Utc>), impl Fn() -> Engine, Engine) {
        let series = regime_change(3, (0, 0));
        let (policy, settings) = two_hour_warm_up();
        let engine = move || Engine::new(settings.clone(), policy.clone(), TimeDelta::hours(1));
        let (from, to) = (
            t0() + TimeDelta::days(2),
            t0() + TimeDelta::days(2) + TimeDelta::hours(3),
        );
        let mut lived = engine();
        let mut now = from;
        while now < to {
            let visible = series.visible_at(now);
            lived.refit_if_due(&visible, now);
            lived.decide(&visible, now, now).unwrap();
            now += TimeDelta::minutes(1);
        }
        (series, (from, to), engine, lived)
    }

    #[test]
    fn what_an_engine_learned_survives_a_restart_and_its_last_plan_serves_until_the_first_model() {
        let (series, (_, now), engine, lived) = three_hours_lived();
        let before = lived.service_level().unwrap();
        assert!(before.warmed_up, "{before:?}");
        // Through JSON, as it is saved.
        let json = serde_json::to_string(&lived.learned()).unwrap();
        assert!(json.len() < 32 * 1024, "a few KiB: {}", json.len());
        let learned: Learned = serde_json::from_str(&json).unwrap();
        let mut restarted = engine();
        let last = lived.last_plan().unwrap().clone();
        let until = last.at + TimeDelta::minutes(5);
        restarted.adopt_learned(&learned, until).unwrap();
        assert_eq!(
            restarted.service_level().unwrap(),
            before,
            "the SLO record and choice, warm at once"
        );
        let (a, b) = (restarted.quality().report(), lived.quality().report());
        assert_eq!(
            (a.health, a.scores, a.demotions, a.scored_total),
            (b.health, b.scores, b.demotions, b.scored_total)
        );

        // No model yet: the last plan is served as it was, while it is young enough.
        let visible = series.visible_at(now);
        let d = restarted.decide(&visible, now, now).unwrap();
        assert_eq!(d.serving, Serving::Restored);
        assert_eq!(d.forecast.fallback.as_deref(), Some(RESTORED));
        assert_eq!((d.plan.replicas, d.plan.served), (last.replicas, last.served));
        let d = restarted.decide(&visible, until + TimeDelta::seconds(1), now).unwrap();
        assert_eq!(d.serving, Serving::Warming, "too old to serve: the reactive target");
        // The first model ends it.
        restarted.refit_if_due(&visible, now);
        let d = restarted.decide(&visible, now + TimeDelta::minutes(1), now).unwrap();
        assert!(
            matches!(d.serving, Serving::Forecast | Serving::Reactive),
            "{:?}",
            d.serving
        );

        // A record made for other candidates is refused and changes nothing.
        let mut bad = learned.clone();
        bad.adaptive.as_mut().unwrap().weighted_pods.pop();
        let mut fresh = engine();
        let e = fresh.adopt_learned(&bad, until).unwrap_err();
        assert!(e.to_string().contains("weightedPods"), "{e}");
        assert!(!fresh.service_level().unwrap().warmed_up);
        let mut bad = learned;
        bad.adaptive.as_mut().unwrap().total_demand = f64::NAN;
        assert!(engine().adopt_learned(&bad, until).is_err());
    }

    #[test]
    fn a_workload_taken_over_serves_its_last_owners_plan_if_newer_floored_as_a_models_until_its_first_model() {
        let (series, (_, now), engine, lived) = three_hours_lived();
        let last = lived.last_plan().unwrap().clone();
        let visible = series.visible_at(now);
        // An older saved plan, then the last owner's newer one: the newer is served.
        let mut older = last.clone();
        older.at = last.at - TimeDelta::minutes(3);
        older.replicas = last.replicas + 7;
        let mut taken = engine();
        taken
            .adopt_learned(
                &Learned {
                    last_plan: Some(older.clone()),
                    ..lived.learned()
                },
                older.at + TimeDelta::minutes(5),
            )
            .unwrap();
        assert!(
            taken.take_over(last.clone(), last.at + TimeDelta::minutes(5)),
            "newer than the saved plan"
        );
        let d = taken.decide(&visible, now, now).unwrap();
        assert_eq!(d.serving, Serving::Restored);
        assert_eq!(
            (d.plan.replicas, d.plan.served),
            (last.replicas, last.served),
            "served as the last owner served it, not raised to the reactive target's {} replicas",
            d.reactive_plan.replicas
        );
        // A plan that asked for less than observed demand needs at full capacity is raised to that, as a model's
        // plan is.
        let observed = d.observed.expect("demand observed").demand;
        let needs = planner::replicas_for(observed, lived.policy.capacity_per_replica).unwrap();
        assert!(
            needs > 1,
            "the test needs demand above one replica's capacity: {observed}"
        );
        let mut low = last.clone();
        low.replicas = 1;
        low.served = 1.0;
        let mut raised = engine();
        assert!(raised.take_over(low, last.at + TimeDelta::minutes(5)));
        let d = raised.decide(&visible, now, now).unwrap();
        assert_eq!((d.serving, d.plan.replicas), (Serving::Restored, needs));
        assert_eq!(d.plan.bound, Bound::ReactiveFloor);
        // One that asked for just that is served as it was, though the reactive target's headroom asks for more.
        let mut at_floor = last.clone();
        at_floor.replicas = needs;
        at_floor.served = f64::from(needs);
        let mut kept = engine();
        assert!(kept.take_over(at_floor, last.at + TimeDelta::minutes(5)));
        let d = kept.decide(&visible, now, now).unwrap();
        assert!(
            d.reactive_plan.replicas > needs,
            "{} vs {needs}",
            d.reactive_plan.replicas
        );
        assert_eq!((d.plan.replicas, d.plan.served), (needs, f64::from(needs)));
        // An owner's plan older than the restored one is not taken.
        assert!(!taken.take_over(older, last.at + TimeDelta::minutes(5)));
        // Once a model is in, nothing is taken over.
        taken.refit_if_due(&visible, now);
        assert!(!taken.take_over(last.clone(), last.at + TimeDelta::minutes(5)));
        let d = taken.decide(&visible, now + TimeDelta::minutes(1), now).unwrap();
        assert!(
            matches!(d.serving, Serving::Forecast | Serving::Reactive),
            "{:?}",
            d.serving
        );
    }

    #[test]
    fn a_replay_warms_up_as_living_through_the_same_hours_would() {
        let (series, (from, to), engine, lived) = three_hours_lived();
        let mut replayed = engine();
        let done = replayed.replay(&series, from, to, TimeDelta::minutes(1));
        assert_eq!((done.decisions, done.fits), (180, 3));
        assert!(
            replayed.last_plan().is_none(),
            "the live HPA never followed a replayed plan"
        );
        // `lived`: the same hours lived decision by decision, each on the whole history visible then.
        let report = replayed.service_level().unwrap();
        assert!(report.warmed_up && report.scored_seconds >= 2.0 * 3600.0, "{report:?}");
        assert_eq!(report, lived.service_level().unwrap());
        assert_eq!(replayed.quality().report(), lived.quality().report());
        // Nothing to replay from is nothing replayed.
        let mut empty = engine();
        assert_eq!(
            empty.replay(&series, to, from, TimeDelta::minutes(1)),
            Replayed::default()
        );
        assert_eq!(empty.replay(&series, from, to, TimeDelta::zero()), Replayed::default());
        assert!(empty.service_level().is_some_and(|r| !r.warmed_up));
    }

    #[test]
    fn engines_replayed_together_end_as_each_replayed_alone() {
        let series = regime_change(3, (2 * 1440 + 30, 2 * 1440 + 90));
        let (policy, settings) = two_hour_warm_up();
        let leads = [TimeDelta::minutes(2), TimeDelta::minutes(10)];
        let engines = || -> Vec<Engine> {
            leads
                .iter()
                .map(|&lead| Engine::new(settings.clone(), Policy { lead, ..policy.clone() }, TimeDelta::hours(1)))
                .collect()
        };
        let (from, to) = (
            t0() + TimeDelta::days(2),
            t0() + TimeDelta::days(2) + TimeDelta::hours(3),
        );
        let mut together = engines();
        assert_eq!(Engine::fit_groups(&together), [vec![0, 1]]);
        let done = Engine::replay_all(&mut together, &series, from, to, TimeDelta::minutes(1));
        let mut alone = engines();
        for (engine, done) in alone.iter_mut().zip(&done) {
            assert_eq!(engine.replay(&series, from, to, TimeDelta::minutes(1)), *done);
            assert_eq!((done.decisions, done.fits), (180, 3));
        }
        for (a, b) in together.iter().zip(&alone) {
            assert_eq!(a.service_level(), b.service_level());
            assert_eq!(a.quality().report(), b.quality().report());
            assert_eq!(a.model().map(Model::fitted_at), b.model().map(Model::fitted_at));
        }
        // The leads plan differently, so the shared fits fed two different records.
        assert_ne!(together[0].service_level(), together[1].service_level());
        // Engines with other forecast settings (another workload's, or another lead's horizons) get fits of their own.
        let other = ForecastSettings {
            seasonality: Seasonality::None,
            ..settings.clone()
        };
        let later = ForecastSettings {
            decision: settings.decision * 2,
            ..settings.clone()
        };
        let mut mixed = vec![
            Engine::new(settings.clone(), policy.clone(), TimeDelta::hours(1)),
            Engine::new(other.clone(), policy.clone(), TimeDelta::hours(1)),
            Engine::new(settings.clone(), policy.clone(), TimeDelta::hours(1)),
            Engine::new(later, policy.clone(), TimeDelta::hours(1)),
            Engine::new(other, policy.clone(), TimeDelta::hours(2)),
        ];
        assert_eq!(Engine::fit_groups(&mixed), [vec![0, 2], vec![1], vec![3], vec![4]]);
        let done = Engine::replay_all(&mut mixed, &series, from, to, TimeDelta::minutes(1));
        let methods: Vec<_> = mixed.iter().map(|e| e.model().and_then(Model::method)).collect();
        assert_eq!(
            methods,
            [
                Some(Method::Mstl),
                Some(Method::Ets),
                Some(Method::Mstl),
                Some(Method::Mstl),
                Some(Method::Ets)
            ]
        );
        let fits: Vec<usize> = done.iter().map(|d| d.fits).collect();
        assert_eq!(fits, [3, 3, 3, 3, 2]);
    }

    #[test]
    fn the_adaptive_quantile_takes_over_after_warm_up() {
        let series = regime_change(3, (0, 0));
        let start = t0() + TimeDelta::days(2);
        let (policy, settings) = two_hour_warm_up();
        let mut adaptive = Engine::new(settings.clone(), policy.clone(), TimeDelta::hours(1));
        let fixed_policy = Policy {
            adaptive: crate::control::policy::Adaptive {
                enabled: false,
                ..policy.adaptive
            },
            ..policy
        };
        let mut fixed = Engine::new(settings, fixed_policy, TimeDelta::hours(1));
        assert!(fixed.service_level().is_none());
        let mut last = None;
        for k in 0..(3 * 60 * 4) {
            let now = start + TimeDelta::seconds(15 * k);
            let visible = series.visible_at(now - TimeDelta::seconds(30));
            adaptive.refit_if_due(&visible, now);
            fixed.refit_if_due(&visible, now);
            let d = adaptive.decide(&visible, now, now - TimeDelta::seconds(30)).unwrap();
            let f = fixed.decide(&visible, now, now - TimeDelta::seconds(30)).unwrap();
            assert_eq!(f.forecast_plan.quantile, 0.9, "a fixed quantile never moves");
            let report = adaptive.service_level().unwrap();
            if k < 2 * 60 * 4 - 8 {
                assert!(!report.warmed_up, "minute {}: {report:?}", k / 4);
                assert_eq!(d.forecast_plan.quantile, 0.9, "the configured quantile until warm-up");
            }
            last = Some((d, report));
        }
        let (d, report) = last.unwrap();
        assert!(report.warmed_up, "{report:?}");
        assert_eq!(
            report.candidates.len(),
            crate::control::service_level::LEVELS.len() + crate::control::service_level::UTILIZATIONS.len()
        );
        match d.serving {
            Serving::Reactive => assert!(
                report.reactive_chosen && d.plan == d.reactive_plan && d.plan.utilization == report.chosen_utilization
            ),
            Serving::Forecast => {
                assert_eq!(Some(d.forecast_plan.quantile), report.chosen_quantile, "{report:?}");
                assert_eq!(d.plan, d.forecast_plan);
            }
            other => panic!("a smooth cycle is served the forecast or the cheaper reactive target, not {other:?}"),
        }
        // A smooth cycle with 3% noise: the forecast meets the SLO for no more pods than any reactive target that
        // does, planning below the configured p90.
        assert_eq!(d.serving, Serving::Forecast, "{report:?}");
        assert!(d.forecast_plan.quantile < 0.9, "{report:?}");
        assert!(report.cost_vs_reactive_at_slo.unwrap() <= 1.0 + 1e-9, "{report:?}");
    }
}
