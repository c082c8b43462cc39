//! The adaptive planning quantile: plan at the cheapest quantile that has recently served demand at least as well as
//! the reactive HPA the workload would otherwise run, or serve that reactive target when no quantile is cheaper.
//!
//! A fixed quantile is a guess at a trade-off nobody can see in advance: 0.9 is too cautious for a smooth daily
//! cycle and too bold for bursty traffic, and the guess is wrong by different amounts on every workload. So every
//! decision also drives *shadows*: for each candidate quantile in [`LEVELS`], the replicas the plan would ask for at
//! that quantile, and for the baseline, what an HPA at the fallback utilization asks for from the same observed
//! demand. Each shadow runs through its own copy of the HPA's arithmetic ([`crate::hpa::Hpa`]: tolerance, the
//! scale-down hold, the scale-up limit) and its own Deployment ([`crate::hpa::Pods`]: cold start of one lead time).
//! When the demand of a decision's moment has been observed, each shadow is scored as a backtest scores a policy:
//! demand its ready pods could not serve, and pods it held. Scores are exponentially weighted (half-life
//! [`Adaptive::half_life`]) so that the choice follows the workload as it changes.
//!
//! What was actually served runs through one more shadow and is scored the same way: the served plan's own record.
//!
//! The choice: the baseline and the levels whose weighted unserved demand is within the *budget*, the one that
//! held the fewest pods (when no candidate is within the budget, levels are held to the baseline's unserved demand
//! instead). The budget is the target (the baseline's unserved demand times
//! [`Adaptive::unserved_vs_reactive`], 1 by default) corrected by the served record: what the served plan left under
//! the target is added, what it left over is taken off. Without the correction the choice settles on the cheapest
//! level under the target and never spends the difference, or, when switching levels costs (pods started for a
//! level that is left before they are ready), ends over it; with it, the served plan time-shares the levels on
//! either side of the target and its own unserved share converges on it. Before [`Adaptive::warmup`] of decisions
//! has been scored, the configured quantile is used.
//!
//! Pure: no clock, no I/O; time is an argument.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::forecast::{Forecast, Quantile};
use crate::hpa::{Hpa, HpaSpec, MetricTarget, Pods, ScaleStatus};
use crate::planner::{self, Policy};
use crate::quantity::served_milli;
use crate::series::Series;

/// Quantile levels the planner may adapt to.
pub const LEVELS: [f64; 14] = [
    0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.96, 0.98,
];
/// Candidates: the levels, then the reactive baseline.
const CANDIDATES: usize = LEVELS.len() + 1;
const BASELINE: usize = LEVELS.len();
/// Scored tracks: the candidates, then what was actually served.
const TRACKS: usize = CANDIDATES + 1;
const SERVED: usize = CANDIDATES;

/// How far the served record may move the unserved budget from its target, as a share of the target: the served
/// plan never aims at more than 1.5× (or less than half) the target's unserved demand, however long a surplus or
/// a deficit it has run up.
const MAX_CORRECTION: f64 = 0.5;

/// History a startup replay leaves before its first decision, so that the first replayed fit has a day to learn
/// from: a replay covers at most the history window less this.
pub const REPLAY_LEAD_IN: TimeDelta = TimeDelta::days(1);

/// Settings of the adaptive quantile (workload config `adaptiveQuantile`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adaptive {
    /// Adapt the planning quantile (false: always plan at the configured quantile).
    pub enabled: bool,
    /// Half-life of the scores: how quickly old decisions stop counting.
    pub half_life: TimeDelta,
    /// How much scored time the choice waits for; the configured quantile is used until then.
    pub warmup: TimeDelta,
    /// How much recent history is replayed through the decision step at startup (at most the history window), so
    /// that the choice, and the quality gate, start warm instead of waiting out `warmup` live; zero turns it off.
    pub replay: TimeDelta,
    /// The unserved demand the served plan aims for, relative to the reactive baseline's: 1 is "as well as the HPA
    /// it replaces", below 1 buys less unserved demand with pods, above 1 trades it for fewer pods.
    pub unserved_vs_reactive: f64,
}

impl Adaptive {
    /// How much history a startup replay covers when `available` is held: [`Adaptive::replay`], at most the history
    /// less [`REPLAY_LEAD_IN`]; zero when there is nothing to replay.
    pub fn replay_span(&self, available: TimeDelta) -> TimeDelta {
        self.replay.min(available - REPLAY_LEAD_IN).max(TimeDelta::zero())
    }
}

impl Default for Adaptive {
    /// On, with a three-day half-life (a weekday's pattern still counts on the next), after one day of scores,
    /// replaying three days of history at startup, aiming to leave as little demand unserved as the reactive HPA.
    fn default() -> Self {
        Self {
            enabled: true,
            half_life: TimeDelta::days(3),
            warmup: TimeDelta::days(1),
            replay: TimeDelta::days(3),
            unserved_vs_reactive: 1.0,
        }
    }
}

/// What the planner should do now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice {
    /// Plan at this quantile.
    Level(Quantile),
    /// Serve the reactive target: no quantile served demand as well for fewer pods.
    Reactive,
}

/// One candidate's scores, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// The quantile planned at; `None` for the reactive baseline.
    pub quantile: Option<f64>,
    /// Weighted share of demand its ready pods could not serve.
    pub unserved_fraction: f64,
    /// The same, unweighted, since the start.
    pub unserved_fraction_total: f64,
    /// Weighted pods held, relative to the reactive baseline's (1 for the baseline).
    pub pods_vs_reactive: f64,
    /// True when its unserved share is within the baseline's.
    pub qualifies: bool,
}

/// How the plan actually served has done, scored as the candidates are: what it achieved against the reactive
/// baseline, whichever candidate (or the quality gate) decided it at each moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedScore {
    /// Weighted share of demand its ready pods could not serve.
    pub unserved_fraction: f64,
    /// The same, unweighted, since the start.
    pub unserved_fraction_total: f64,
    /// Weighted pods held, relative to the reactive baseline's.
    pub pods_vs_reactive: f64,
}

/// The controller's state, for the API, the page and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// True once [`Adaptive::warmup`] of decisions has been scored.
    pub warmed_up: bool,
    /// Scored time so far, in seconds.
    pub scored_seconds: f64,
    /// The quantile chosen, `None` while the reactive target is chosen or before warm-up.
    pub chosen_quantile: Option<f64>,
    /// True while the reactive target is chosen.
    pub reactive_chosen: bool,
    /// The weighted share of demand a candidate may have left unserved and qualify: the reactive baseline's times
    /// [`Adaptive::unserved_vs_reactive`], plus what the served plan left under that (or less what it left over);
    /// the baseline's own when no candidate is within that.
    #[serde(default)]
    pub unserved_budget: f64,
    /// Every candidate, levels ascending, then the reactive baseline.
    pub candidates: Vec<CandidateScore>,
    /// The served plan's own record; `None` until something served has been scored.
    #[serde(default)]
    pub served: Option<ServedScore>,
}

/// One candidate replayed through an HPA and a Deployment.
#[derive(Debug, Clone)]
struct Shadow {
    hpa: Hpa,
    pods: Option<Pods>,
    lead: TimeDelta,
    target_milli: i64,
    served: Option<u32>,
}

impl Shadow {
    fn new(target_milli: i64, policy: &Policy) -> Option<Self> {
        let mut spec = HpaSpec::external(
            MetricTarget::AverageValue(target_milli),
            i32::try_from(policy.min_replicas).ok()?,
            i32::try_from(policy.max_replicas.max(policy.min_replicas)).ok()?,
        );
        spec.downscale_stabilization = policy.downscale_stabilization;
        Some(Self {
            hpa: Hpa::new(spec).ok()?,
            pods: None,
            lead: policy.lead,
            target_milli,
            served: None,
        })
    }

    /// Ready and all pods at `now`, without a sync (none before the first).
    fn pods_at(&self, now: DateTime<Utc>) -> (u32, u32) {
        self.pods
            .as_ref()
            .map_or((0, 0), |p| (p.ready(now) as u32, p.len() as u32))
    }

    /// One HPA sync serving `milli` (`None`: the metric is unavailable); returns the ready and all pods after it.
    /// The first sync starts the Deployment with what the served value asks for, all ready, as the backtest does.
    fn sync(&mut self, milli: Option<i64>, now: DateTime<Utc>) -> (u32, u32) {
        let pods = self.pods.get_or_insert_with(|| {
            let initial = milli.map_or(1, |m| ((m as f64) / (self.target_milli as f64)).ceil().max(1.0) as i32);
            let (min, max) = (self.hpa.spec().min_replicas, self.hpa.spec().max_replicas);
            let initial = initial.clamp(min, max.max(min));
            self.hpa.record_initial(initial, now);
            Pods::ready_at(initial as usize, self.lead, now)
        });
        let n = pods.len() as i32;
        let status = ScaleStatus {
            spec_replicas: n,
            status_replicas: n,
            ready_pods: pods.ready(now) as i32,
        };
        let d = self.hpa.reconcile(now, status, &[milli]);
        pods.scale_to(d.desired_replicas.max(0) as usize, now);
        (pods.ready(now) as u32, pods.len() as u32)
    }
}

/// Ready and all pods of every track after one sync.
type CandidatePods = [(u32, u32); TRACKS];

/// Weighted and total sums over scored moments.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    unserved: [f64; TRACKS],
    pods: [f64; TRACKS],
    demand: f64,
}

impl Sums {
    fn add(&mut self, decay: f64, actual: f64, ready: &CandidatePods, capacity: f64) {
        for (k, &(r, n)) in ready.iter().enumerate() {
            self.unserved[k] = self.unserved[k] * decay + (actual - f64::from(r) * capacity).max(0.0);
            self.pods[k] = self.pods[k] * decay + f64::from(n);
        }
        self.demand = self.demand * decay + actual;
    }

    fn unserved_fraction(&self, k: usize) -> f64 {
        if self.demand > 0.0 {
            self.unserved[k] / self.demand
        } else {
            0.0
        }
    }
}

/// Chooses the planning quantile from how each candidate would have served the workload's recent demand.
#[derive(Debug, Clone)]
pub struct Controller {
    settings: Adaptive,
    shadows: Vec<Shadow>,
    pending: VecDeque<(DateTime<Utc>, CandidatePods)>,
    weighted: Sums,
    total: Sums,
    scored: TimeDelta,
    last_scored: Option<DateTime<Utc>>,
}

impl Controller {
    /// A controller with nothing scored yet.
    pub fn new(settings: Adaptive) -> Self {
        Self {
            settings,
            shadows: Vec::new(),
            pending: VecDeque::new(),
            weighted: Sums::default(),
            total: Sums::default(),
            scored: TimeDelta::zero(),
            last_scored: None,
        }
    }

    /// Runs one HPA sync of every shadow at `now`: each level serves what the plan would ask for at that level (the
    /// forecast's peak over the cover window, never below observed demand, a scale-up raised past the tolerance,
    /// served as the plan serves it: [`planner::served_value`]),
    /// the baseline serves observed demand against `capacity × fallback utilization`. The `scaleIn: observed` hold is
    /// not replayed: with it, the shadows plan scale-ins a little earlier than the real plan does.
    pub fn record(&mut self, forecast: &Forecast, observed: Option<f64>, policy: &Policy, now: DateTime<Utc>) {
        if self.pending.back().is_some_and(|p| p.0 >= now) {
            return;
        }
        let c = policy.capacity_per_replica;
        if self.shadows.is_empty() {
            let Some(base) = served_milli(c * policy.fallback_utilization()).filter(|m| *m > 0) else {
                return;
            };
            let mut shadows: Vec<Shadow> = LEVELS.iter().filter_map(|_| Shadow::new(1000, policy)).collect();
            shadows.extend(Shadow::new(base, policy));
            shadows.extend(Shadow::new(1000, policy));
            if shadows.len() != TRACKS {
                return;
            }
            self.shadows = shadows;
        }
        let (from, to) = planner::cover_window(policy, now);
        let floor = observed.map_or(0, |o| planner::replicas_for(o, c));
        let mut peak: Option<[f64; LEVELS.len()]> = None;
        for i in 0..forecast.len() {
            let start = forecast.time_at(i);
            if start + forecast.step <= from || start > to {
                continue;
            }
            let p = peak.get_or_insert([0.0; LEVELS.len()]);
            for (p, level) in p.iter_mut().zip(LEVELS) {
                *p = p.max(forecast.quantile_at(i, Quantile::try_new(level).expect("levels are in (0, 1)")));
            }
        }
        let hi = policy.max_replicas.max(policy.min_replicas);
        let mut ready = [(0u32, 0u32); TRACKS];
        for (k, shadow) in self.shadows.iter_mut().enumerate().take(LEVELS.len()) {
            let want = peak.map(|p| planner::replicas_for(p[k], c).max(floor));
            let want = match (want, shadow.served) {
                (Some(w), Some(prev)) if w > prev => Some(w.max(planner::past_tolerance(prev))),
                (None, prev) => prev,
                (w, _) => w,
            }
            .map(|w| w.clamp(policy.min_replicas, hi));
            let value = want.and_then(|w| served_milli(planner::served_value(w, shadow.served)));
            shadow.served = want.or(shadow.served);
            ready[k] = shadow.sync(value, now);
        }
        ready[BASELINE] = self.shadows[BASELINE].sync(observed.and_then(served_milli), now);
        // Until [`Controller::serve`] says what was served at `now`, the served track holds its pods.
        ready[SERVED] = self.shadows[SERVED].pods_at(now);
        self.pending.push_back((now, ready));
    }

    /// Runs the served track's HPA sync for `now` (after [`Controller::record`] for the same moment): `value` is the
    /// replicas metric the workload served, whichever plan it came from (`None`: the metric was unavailable), so
    /// that the served plan's own record can be set against the baseline's.
    pub fn serve(&mut self, value: Option<f64>, now: DateTime<Utc>) {
        let Some(last) = self.pending.back_mut().filter(|p| p.0 == now) else {
            return;
        };
        if let Some(shadow) = self.shadows.get_mut(SERVED) {
            last.1[SERVED] = shadow.sync(value.and_then(served_milli), now);
        }
    }

    /// Scores the recorded moments whose demand `history` now holds (a moment in a gap is dropped, not scored).
    pub fn observe(&mut self, history: &Series, capacity: f64) {
        let step = history.step();
        while let Some(&(at, ready)) = self.pending.front() {
            let slot = history.slot_of(at);
            if slot.is_none_or(|i| history.time_at(i) + step > history.end()) && at >= history.start() {
                break;
            }
            self.pending.pop_front();
            let Some(actual) = slot.and_then(|i| history.values()[i]) else {
                continue;
            };
            let decay = match self.last_scored {
                Some(last) => {
                    self.scored += at - last;
                    0.5f64.powf((at - last).as_seconds_f64() / self.settings.half_life.as_seconds_f64().max(1.0))
                }
                None => 1.0,
            };
            self.last_scored = Some(at);
            self.weighted.add(decay, actual, &ready, capacity);
            self.total.add(1.0, actual, &ready, capacity);
        }
    }

    /// The candidate to follow now; `None` before warm-up.
    pub fn choose(&self) -> Option<Choice> {
        if self.scored < self.settings.warmup || self.weighted.demand <= 0.0 {
            return None;
        }
        Some(match self.best() {
            BASELINE => Choice::Reactive,
            k => Choice::Level(Quantile::try_new(LEVELS[k]).expect("levels are in (0, 1)")),
        })
    }

    /// The weighted unserved demand a candidate may have left and still qualify: the target (the baseline's times
    /// [`Adaptive::unserved_vs_reactive`]) plus what the served plan has left under it, or less what it has left
    /// over it, by at most [`MAX_CORRECTION`] of the target. Candidates are scored as if followed throughout, but
    /// the served plan switches between them and pays for each switch; steering by its own record makes it
    /// time-share between the levels on either side of the target instead of settling on the cheapest level under
    /// it, which leaves the difference unspent.
    fn budget(&self) -> f64 {
        let w = &self.weighted;
        let target = w.unserved[BASELINE] * self.settings.unserved_vs_reactive;
        if self.total.pods[SERVED] > 0.0 {
            target + (target - w.unserved[SERVED]).clamp(-MAX_CORRECTION * target, MAX_CORRECTION * target)
        } else {
            target
        }
    }

    /// What a quantile's weighted unserved demand is held to: the [`Controller::budget`] when some candidate meets
    /// it; otherwise (the served plan has left so much over the target that nothing would pay it back) the
    /// baseline's own, so that no quantile is followed that served worse than the reactive HPA. The baseline itself
    /// always qualifies: serving the reactive target is never worse than the HPA it stands for.
    fn limit(&self) -> f64 {
        let within = |limit: f64| (0..CANDIDATES).any(|k| self.within(k, limit));
        let budget = self.budget();
        if within(budget) {
            budget
        } else {
            self.weighted.unserved[BASELINE]
        }
    }

    fn within(&self, k: usize, limit: f64) -> bool {
        // Relative slack so that float noise does not disqualify a candidate as good as the limit.
        self.weighted.unserved[k] <= limit * (1.0 + 1e-9) + 1e-12
    }

    /// Whether candidate `k` qualifies under `limit` ([`Controller::limit`]): the baseline always does.
    fn qualifies(&self, k: usize, limit: f64) -> bool {
        k == BASELINE || self.within(k, limit)
    }

    fn best(&self) -> usize {
        let limit = self.limit();
        (0..CANDIDATES)
            .filter(|&k| self.qualifies(k, limit))
            .min_by(|&a, &b| self.weighted.pods[a].total_cmp(&self.weighted.pods[b]).then(a.cmp(&b)))
            .unwrap_or(BASELINE)
    }

    /// The scores and the choice, for people.
    pub fn report(&self) -> Report {
        let choice = self.choose();
        let limit = self.limit();
        let base_pods = self.weighted.pods[BASELINE];
        Report {
            warmed_up: choice.is_some(),
            scored_seconds: self.scored.as_seconds_f64(),
            chosen_quantile: match choice {
                Some(Choice::Level(q)) => Some(q.get()),
                _ => None,
            },
            reactive_chosen: choice == Some(Choice::Reactive),
            unserved_budget: if self.weighted.demand > 0.0 {
                (limit / self.weighted.demand).max(0.0)
            } else {
                0.0
            },
            candidates: (0..CANDIDATES)
                .map(|k| CandidateScore {
                    quantile: LEVELS.get(k).copied(),
                    unserved_fraction: self.weighted.unserved_fraction(k),
                    unserved_fraction_total: self.total.unserved_fraction(k),
                    pods_vs_reactive: if base_pods > 0.0 {
                        self.weighted.pods[k] / base_pods
                    } else {
                        1.0
                    },
                    qualifies: self.qualifies(k, limit),
                })
                .collect(),
            served: (self.total.pods[SERVED] > 0.0 && base_pods > 0.0).then(|| ServedScore {
                unserved_fraction: self.weighted.unserved_fraction(SERVED),
                unserved_fraction_total: self.total.unserved_fraction(SERVED),
                pods_vs_reactive: self.weighted.pods[SERVED] / base_pods,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 - 1_800_000_000 % 86_400 + s, 0).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            adaptive: Adaptive {
                warmup: TimeDelta::hours(1),
                ..Adaptive::default()
            },
            ..Policy::new(20.0, 40)
        }
    }

    /// Demand per minute: a slow wave between 50 and 350 with a sharp step every two hours.
    fn demand(minute: i64) -> f64 {
        let wave = 200.0 + 150.0 * (minute as f64 / 90.0).sin();
        if minute % 120 >= 60 && minute % 120 < 75 {
            wave * 1.5
        } else {
            wave
        }
    }

    /// Runs a controller every 15 s for `hours`, forecasting demand as `forecast(minute)` per 1-min slot.
    fn run(hours: i64, forecast: impl Fn(i64) -> f64) -> Controller {
        run_serving(hours, forecast, None)
    }

    /// What a test serves each tick, from observed demand (`None`: nothing is served).
    type Serve<'a> = Option<&'a dyn Fn(Option<f64>) -> Option<f64>>;

    /// [`run`], serving `serve(observed)` replicas each tick.
    fn run_serving(hours: i64, forecast: impl Fn(i64) -> f64, serve: Serve) -> Controller {
        let p = policy();
        let mut c = Controller::new(p.adaptive);
        let values: Vec<Option<f64>> = (0..hours * 60 + 30).map(|m| Some(demand(m))).collect();
        let series = Series::from_values(t(0), TimeDelta::minutes(1), values);
        for k in 0..hours * 240 {
            let now = t(k * 15);
            let visible = series.visible_at(now - TimeDelta::seconds(30));
            let observed = crate::engine::observed_demand(&visible, now - TimeDelta::seconds(30));
            c.observe(&visible, p.capacity_per_replica);
            // A forecast made at `now` for the next 20 one-minute slots.
            let first = k * 15 / 60;
            let f = Forecast::from_median(
                t(first * 60),
                TimeDelta::minutes(1),
                (first..first + 20).map(&forecast).collect(),
                now,
            );
            c.record(&f, observed, &p, now);
            if let Some(serve) = serve {
                c.serve(serve(observed), now);
            }
        }
        c
    }

    #[test]
    fn the_served_track_scores_what_was_served() {
        let p = policy();
        // Nothing served: no record.
        assert_eq!(run(3, demand).report().served, None);
        // Serving what an HPA at 70% asks for is the baseline itself.
        let r = run_serving(3, demand, Some(&|o| o.map(|o| o / (p.capacity_per_replica * 0.7)))).report();
        let served = r.served.clone().unwrap();
        let base = r.candidates.last().unwrap();
        assert!(base.unserved_fraction > 0.0, "{r:?}");
        assert!(
            (served.unserved_fraction - base.unserved_fraction).abs() < 1e-9,
            "{served:?} vs {base:?}"
        );
        assert!((served.unserved_fraction_total - base.unserved_fraction_total).abs() < 1e-9);
        assert!((served.pods_vs_reactive - 1.0).abs() < 1e-9, "{served:?}");
        // Serving the maximum leaves nothing unserved, for more pods.
        let r = run_serving(3, demand, Some(&|_| Some(40.0))).report();
        let served = r.served.unwrap();
        assert_eq!(served.unserved_fraction, 0.0);
        assert!(served.pods_vs_reactive > 1.5, "{served:?}");
    }

    #[test]
    fn a_perfect_forecast_is_chosen_over_the_reactive_target() {
        let c = run(6, demand);
        let r = c.report();
        assert!(r.warmed_up, "{r:?}");
        let reactive = r.candidates.last().unwrap();
        assert_eq!(reactive.quantile, None);
        assert!(
            reactive.unserved_fraction > 0.0,
            "the steps catch the reactive HPA out: {r:?}"
        );
        // With no band every level plans the same peak: all serve everything, the first is chosen.
        for cand in &r.candidates[..LEVELS.len()] {
            assert_eq!(cand.unserved_fraction, 0.0, "{cand:?}");
            assert!(cand.qualifies && cand.pods_vs_reactive < 1.0, "{cand:?}");
        }
        assert_eq!(c.choose(), Some(Choice::Level(Quantile::try_new(LEVELS[0]).unwrap())));
        assert_eq!(r.chosen_quantile, Some(LEVELS[0]));
        assert!(!r.reactive_chosen);
    }

    #[test]
    fn a_forecast_that_misses_every_step_loses_to_the_reactive_target() {
        // The forecast never sees the steps and runs 20% low: planned from it (with observed demand as the floor),
        // every level is short more often than an HPA at 70%.
        let c = run(6, |m| demand(m - 30).min(demand(m)) * 0.8);
        let r = c.report();
        let reactive = r.candidates.last().unwrap().unserved_fraction;
        for cand in &r.candidates[..LEVELS.len()] {
            assert!(cand.unserved_fraction > reactive, "{cand:?} vs {reactive}");
            assert!(!cand.qualifies);
        }
        assert_eq!(c.choose(), Some(Choice::Reactive));
        assert!(r.reactive_chosen && r.chosen_quantile.is_none());
    }

    #[test]
    fn the_configured_quantile_holds_until_warm_up() {
        let c = run(1, demand);
        let r = c.report();
        assert!(r.scored_seconds < 3600.0, "{r:?}");
        assert_eq!(c.choose(), None);
        assert!(!r.warmed_up && r.chosen_quantile.is_none() && !r.reactive_chosen);
    }

    /// A controller two days in: the baseline left 1 of 100 units unserved holding `baseline_pods`; higher levels
    /// left less unserved (3 − k/4) for more pods (8 + k/2).
    fn scored(settings: Adaptive, baseline_pods: f64) -> Controller {
        let mut c = Controller::new(settings);
        c.scored = TimeDelta::days(2);
        c.weighted.demand = 100.0;
        c.weighted.unserved[BASELINE] = 1.0;
        c.weighted.pods[BASELINE] = baseline_pods;
        for k in 0..LEVELS.len() {
            c.weighted.unserved[k] = 3.0 - 0.25 * k as f64;
            c.weighted.pods[k] = 8.0 + 0.5 * k as f64;
        }
        c
    }

    #[test]
    fn the_cheapest_qualifying_candidate_wins_and_old_scores_fade() {
        let mut c = scored(Adaptive::default(), 10.0);
        // Levels from index 8 (unserved 1.0) qualify; index 8 holds 12 pods, more than the baseline's 10.
        assert_eq!(c.choose(), Some(Choice::Reactive));
        c.weighted.pods[BASELINE] = 13.0;
        assert_eq!(c.choose(), Some(Choice::Level(Quantile::try_new(LEVELS[8]).unwrap())));
        let r = c.report();
        assert_eq!(
            r.candidates.iter().filter(|c| c.qualifies).count(),
            LEVELS.len() - 8 + 1
        );
        assert!((r.candidates[8].pods_vs_reactive - 12.0 / 13.0).abs() < 1e-12);

        // Decay: a half-life later, an old score weighs half.
        let mut s = Sums::default();
        let ready = [(0, 1); TRACKS];
        s.add(1.0, 10.0, &ready, 1.0);
        s.add(0.5, 0.0, &ready, 1.0);
        assert_eq!((s.unserved[0], s.demand, s.pods[0]), (5.0, 5.0, 1.5));
    }

    #[test]
    fn the_served_record_moves_the_budget() {
        let level = |k: usize| Some(Choice::Level(Quantile::try_new(LEVELS[k]).unwrap()));
        let controller = |aim: f64| {
            let settings = Adaptive {
                unserved_vs_reactive: aim,
                ..Adaptive::default()
            };
            scored(settings, 20.0)
        };
        // Nothing served yet: the budget is the baseline's unserved demand; index 8 left exactly that.
        let mut c = controller(1.0);
        assert_eq!(c.choose(), level(8));
        assert!((c.report().unserved_budget - 0.01).abs() < 1e-12);
        // The served plan left less than the target: the difference is spent on a cheaper level.
        c.total.pods[SERVED] = 1.0;
        c.weighted.unserved[SERVED] = 0.5;
        assert_eq!(c.choose(), level(6));
        assert!((c.report().unserved_budget - 0.015).abs() < 1e-12);
        // It left more: a dearer level makes up for it, unless the reactive target holds fewer pods (it always
        // qualifies).
        c.weighted.unserved[SERVED] = 1.5;
        assert_eq!(c.choose(), level(10));
        assert!(!c.report().candidates[9].qualifies);
        c.weighted.pods[BASELINE] = 5.0;
        assert_eq!(c.choose(), Some(Choice::Reactive));
        // However far over, the budget keeps half the target (0.5); with no level within it, levels are held to the
        // baseline's unserved demand, as with no record.
        c.weighted.pods[BASELINE] = 20.0;
        c.weighted.unserved[SERVED] = 5.0;
        assert_eq!(c.choose(), level(10));
        assert!((c.report().unserved_budget - 0.005).abs() < 1e-12);
        for k in 9..LEVELS.len() {
            c.weighted.unserved[k] = 0.6;
        }
        assert_eq!(c.choose(), level(8));
        assert!((c.report().unserved_budget - 0.01).abs() < 1e-12);
        // However far under, the budget is at most 1.5 times the target.
        c.weighted.unserved[SERVED] = 0.0;
        assert!((c.report().unserved_budget - 0.015).abs() < 1e-12);
        // Aiming at half the baseline's unserved demand.
        assert_eq!(controller(0.5).choose(), level(10));
    }

    #[test]
    fn shadows_follow_the_hpa_hold_and_the_cold_start() {
        // One level shadow: served 4 replicas at t0, 8 from t0 + 60 s, 2 from t0 + 120 s. Lead 5 min, hold 5 min.
        let p = policy();
        let mut s = Shadow::new(1000, &p).unwrap();
        assert_eq!(
            s.sync(Some(4000), t(0)),
            (4, 4),
            "the Deployment starts ready with what is served"
        );
        assert_eq!(
            s.sync(Some(8000), t(60)),
            (4, 8),
            "new pods start now, ready after the lead"
        );
        assert_eq!(s.sync(Some(2000), t(120)), (4, 8), "the hold keeps the 8");
        assert_eq!(s.sync(Some(2000), t(360)), (8, 8), "ready a lead time after creation");
        assert_eq!(
            s.sync(Some(2000), t(420)),
            (2, 2),
            "released when 8 leaves the hold window"
        );
        // The baseline reads demand against capacity × utilization: 90 units at 20 × 0.7 → 7 pods.
        let mut b = Shadow::new(served_milli(14.0).unwrap(), &p).unwrap();
        assert_eq!(b.sync(served_milli(90.0), t(0)), (7, 7));
    }
}
