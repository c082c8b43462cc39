//! What each policy serves at each tick, computed from the samples visible at that tick only.
//!
//! Every function here reads the trace through [`Visible`], which hands out the slots whose interval ended by
//! `t − LAG` and nothing later: a policy cannot peek, whatever it does.

use chrono::{DateTime, TimeDelta, Utc};
use indicatif::ProgressBar;

use super::{LAG, OBSERVED_WINDOW, TICK};
use crate::control::engine::{Engine, Reads, Replayed, Serving};
use crate::control::policy::Policy;
use crate::forecast::{ForecastSettings, Seasonality};
use crate::series::Series;

/// A trace as policies may see it: prefix views by tick time.
pub(crate) struct Visible<'a> {
    trace: &'a Series,
    /// `latest[n]`: index of the latest present slot among the first `n` slots.
    latest: Vec<Option<usize>>,
}

impl<'a> Visible<'a> {
    /// Indexes `trace` for fast visibility queries.
    pub fn new(trace: &'a Series) -> Self {
        let mut latest = Vec::with_capacity(trace.len() + 1);
        latest.push(None);
        for (i, v) in trace.values().enumerate() {
            let prev = latest[i];
            latest.push(if v.is_some() { Some(i) } else { prev });
        }
        Self { trace, latest }
    }

    /// Number of slots visible at tick `t` (their interval ended by `t − LAG`).
    pub fn count(&self, t: DateTime<Utc>) -> usize {
        self.trace.count_ended_by(t - LAG)
    }

    /// Observed demand at `t`: mean of the visible samples whose intervals end in `(t − 90 s, t − 30 s]`, else the
    /// latest visible sample; `None` when nothing is visible.
    pub fn observed(&self, t: DateTime<Utc>) -> Option<f64> {
        let n = self.count(t);
        let step_ms = self.trace.step().num_milliseconds();
        // Slot i ends at start + (i+1)·step; it ends after `from` when i ≥ floor((from − start) / step).
        let from_ms = (t - LAG - OBSERVED_WINDOW - self.trace.start()).num_milliseconds();
        let first = usize::try_from(from_ms.div_euclid(step_ms)).unwrap_or(0).min(n);
        let (sum, k) = self
            .trace
            .slots(first..n)
            .flatten()
            .fold((0.0, 0usize), |(s, k), v| (s + v, k + 1));
        if k > 0 {
            return Some(sum / k as f64);
        }
        self.latest[n].and_then(|i| self.trace.get(i))
    }

    /// The visible slots from `from` (an index) to the visibility edge at `t`, as a series.
    fn tail(&self, t: DateTime<Utc>, from: usize) -> Series {
        let n = self.count(t);
        let from = from.min(n);
        Series::from_values(
            self.trace.time_at(from),
            self.trace.step(),
            self.trace.slots(from..n).collect(),
        )
    }

    /// Index of the latest present visible slot at `t`.
    fn latest_present(&self, t: DateTime<Utc>) -> Option<usize> {
        self.latest[self.count(t)]
    }
}

/// Served values of the reactive policies: observed demand (the target differs, not the value).
pub(crate) fn reactive(visible: &Visible<'_>, ticks: &[DateTime<Utc>]) -> Vec<Option<f64>> {
    ticks.iter().map(|&t| visible.observed(t)).collect()
}

/// What the predictive policy served at one tick, as the per-tick CSV and the report's `served_by` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServedBy {
    /// The forecast plan at this quantile, in percent (`p90`).
    Level(u8),
    /// The adaptive choice of a reactive target at this utilization, in percent (`reactive@70%`).
    Reactive(u8),
    /// The reactive target while forecast quality is demoted (`demoted`).
    Demoted,
    /// The forecast alone, the reactive floor off (`forecast only`).
    ForecastOnly,
    /// The reactive target until the engine has warmed up (`warming`).
    Warming,
    /// The last plan, restored after a restart (`restored`).
    Restored,
    /// Nothing: no visible data or no forecast yet (`none`).
    Nothing,
}

impl ServedBy {
    fn of(serving: Serving, quantile: f64, utilization: Option<f64>) -> Self {
        let percent = |x: f64| (x * 100.0).round().clamp(0.0, 255.0) as u8;
        match serving {
            Serving::Forecast => Self::Level(percent(quantile)),
            Serving::Reactive => utilization.map_or(Self::Nothing, |u| Self::Reactive(percent(u))),
            Serving::Demoted => Self::Demoted,
            Serving::ForecastOnly => Self::ForecastOnly,
            Serving::Warming => Self::Warming,
            Serving::Restored => Self::Restored,
        }
    }
}

impl std::fmt::Display for ServedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Level(q) => write!(f, "p{q}"),
            Self::Reactive(u) => write!(f, "reactive@{u}%"),
            Self::Demoted => f.write_str("demoted"),
            Self::ForecastOnly => f.write_str("forecast only"),
            Self::Warming => f.write_str("warming"),
            Self::Restored => f.write_str("restored"),
            Self::Nothing => f.write_str("none"),
        }
    }
}

impl serde::Serialize for ServedBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How the predictive policy is set up for one run.
pub(crate) struct PredictiveSetup<'p> {
    /// One planner policy per engine: per (lead, SLO), differing only in the lead and `adaptive.slo`.
    pub policies: &'p [Policy],
    /// Seasonality to model.
    pub seasonality: Seasonality,
    /// Refit cadence.
    pub refit_interval: TimeDelta,
    /// Forecast-quality bounds (the workload's `quality:`): when decisions fall back to the reactive target.
    pub quality: crate::control::quality::Bounds,
}

/// What the predictive policy served at each tick for each engine (`served[engine][tick]`, engines in the order of
/// [`PredictiveSetup::policies`]), plus the fits it made.
pub(crate) struct PredictiveRun {
    /// Served replica counts (target "1") per engine, per tick; `None` when no forecast was possible.
    pub served: Vec<Vec<Option<f64>>>,
    /// Number of model fits (each installed into the engines of its lead time).
    pub fits: usize,
    /// Decisions per forecast method served (`method name` → count, summed over engines); decisions that served
    /// the reactive target instead are counted as `reactive (...)`.
    pub methods: std::collections::BTreeMap<String, usize>,
    /// Per engine, what was served at each tick (`served_by[engine][tick]`).
    pub served_by: Vec<Vec<ServedBy>>,
    /// Per engine, what the replay before the first tick did.
    pub replayed: Vec<Replayed>,
    /// Per engine, the adaptive quantile's final state (`None` when off).
    pub adaptive: Vec<Option<crate::control::service_level::Report>>,
}

/// Runs the production decision step ([`Engine`]) at every tick on visible history only, one engine per policy of
/// `setup` (per lead and SLO).
///
/// Each engine is exactly what production runs for one workload: `needs_refit`, then `decide` on the history it
/// would have scraped by `t` (samples that ended by `t − LAG`; observed demand over the minute before that), and
/// fits with the forecast settings `prescale serve` gives a workload of its lead time ([`ForecastSettings::for_plan`]).
/// A fit depends on the lead (the horizons a plan reads choose its level correction) but not on the SLO, so one
/// model per lead and refit is installed into the engines of that lead, as production installs a model fitted on a
/// blocking thread; the leads' models are fitted together ([`Engine::refit_groups`]: one seasonal fit for all). What
/// is served is the engine's plan: the forecast plan or, while forecast quality is demoted, the reactive one.
///
/// The history handed over is a tail of the visible trace long enough for everything the engine reads (at most
/// [`history_span`](crate::forecast::history_span) for a fit; a day, and at least 400 slots, before the latest sample
/// for a decision) so a long backtest does not copy the whole trace at every tick.
pub(crate) fn predictive(
    visible: &Visible<'_>,
    ticks: &[DateTime<Utc>],
    setup: &PredictiveSetup<'_>,
    progress: &ProgressBar,
) -> PredictiveRun {
    let step = visible.trace.step();
    let Reads {
        fit_slots,
        decide_slots: tail_slots,
    } = Reads::at(step);

    let mut engines: Vec<Engine> = setup
        .policies
        .iter()
        .map(|p| {
            // As `prescale serve` fits for a workload with this lead time and sync period.
            let settings = ForecastSettings::for_plan(setup.seasonality.clone(), p.lead, p.sync, setup.refit_interval);
            Engine::new(settings, p.clone(), setup.refit_interval)
                .with_serving(crate::control::engine::Mode::Serve, setup.quality)
        })
        .collect();
    // Engines of one lead share each fit (the SLO does not change it); each lead fits its own, as the horizons a
    // plan reads choose its level correction.
    let groups = Engine::fit_groups(&engines);
    // As `prescale serve` starting at the first scored tick would: replay recent history (before the scored window,
    // as it was visible then) to warm the adaptive quantile and the quality gate.
    let replayed: Vec<Replayed> = match ticks.first() {
        Some(&t0) => {
            let history = visible.tail(t0, 0);
            // The engines' policies differ only in the lead and the SLO (one replay setting), so they share one
            // span and, as in the scored window, one fit per lead and refit.
            let span = setup
                .policies
                .first()
                .map_or(TimeDelta::zero(), |p| p.adaptive.replay_span(t0 - history.start()));
            if span > TimeDelta::zero() {
                let label = crate::duration::format(span);
                progress.set_message(format!("predictive: replaying {label} before"));
                Engine::replay_all(&mut engines, &history, t0 - span, t0, TICK)
            } else {
                vec![Replayed::default(); engines.len()]
            }
        }
        None => vec![Replayed::default(); engines.len()],
    };
    progress.set_message("predictive: forecast + plan");
    progress.reset_eta();
    let mut served = vec![Vec::with_capacity(ticks.len()); setup.policies.len()];
    let mut methods = std::collections::BTreeMap::new();
    let mut served_by = vec![Vec::with_capacity(ticks.len()); engines.len()];
    let mut fits = 0;
    for (k, &t) in ticks.iter().enumerate() {
        let n = visible.count(t);
        fits += Engine::refit_groups(
            &mut engines,
            &groups,
            || visible.tail(t, n.saturating_sub(fit_slots)),
            t,
        )
        .len();
        let from = match visible.latest_present(t) {
            Some(i) => n.saturating_sub(tail_slots).min(i.saturating_sub(tail_slots)),
            None => n,
        };
        let history = visible.tail(t, from);
        for ((engine, out), by) in engines.iter_mut().zip(served.iter_mut()).zip(served_by.iter_mut()) {
            match engine.decide(&history, t, t - LAG) {
                Some(d) => {
                    by.push(ServedBy::of(d.serving, d.plan.quantile, d.plan.utilization));
                    let key = match d.serving {
                        Serving::Forecast => d.forecast.method.to_string(),
                        Serving::Demoted => "reactive (demoted)".to_owned(),
                        Serving::ForecastOnly => "reactive (forecast only)".to_owned(),
                        Serving::Reactive => "reactive (adaptive choice)".to_owned(),
                        Serving::Warming => "reactive (warming up)".to_owned(),
                        Serving::Restored => "last plan (restored)".to_owned(),
                    };
                    *methods.entry(key).or_insert(0) += 1;
                    out.push(Some(d.plan.served));
                }
                None => {
                    by.push(ServedBy::Nothing);
                    out.push(None);
                }
            }
        }
        if k % 256 == 0 {
            progress.set_position(k as u64);
        }
    }
    progress.set_position(ticks.len() as u64);
    PredictiveRun {
        served,
        fits,
        methods,
        served_by,
        replayed,
        adaptive: engines.iter().map(Engine::service_level).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    #[test]
    fn observed_averages_the_last_minute_of_visible_samples() {
        // 30 s slots: ends at 30, 60, 90(gap), 120, 150.
        let s = Series::from_values(
            t(0),
            TimeDelta::seconds(30),
            vec![Some(1.0), Some(2.0), None, Some(4.0), Some(8.0)],
        );
        let v = Visible::new(&s);
        // At t=150: visible ends ≤ 120 → slots ending 30,60,120 visible; window (60, 120] → only the 120 one.
        assert_eq!(v.observed(t(150)), Some(4.0));
        // At t=180: window (90, 150] → ends 120 and 150 → (4+8)/2.
        assert_eq!(v.observed(t(180)), Some(6.0));
        // At t=120: visible ≤ 90; window (30, 90] → the slot ending 60 (the one ending 90 is a gap).
        assert_eq!(v.observed(t(120)), Some(2.0));
        // At t=59: nothing has ended by 29 s.
        assert_eq!(v.observed(t(59)), None);
        // Long steps: no sample ends inside the window → the latest visible one.
        let s = Series::from_values(t(0), TimeDelta::seconds(600), vec![Some(3.0), None, Some(5.0)]);
        let v = Visible::new(&s);
        assert_eq!(v.observed(t(1000)), Some(3.0));
        assert_eq!(v.observed(t(1300)), Some(3.0));
        assert_eq!(v.observed(t(1830)), Some(5.0));
    }
}
