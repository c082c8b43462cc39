//! Live forecast quality: every forecast is scored against what then happened, and a workload whose forecasts stop
//! being trustworthy is demoted to reactive scaling until they recover.
//!
//! Each cycle [`Tracker::record`]s what the forecast claims for the slot one lead time ahead (the capacity being
//! committed now), and [`Tracker::observe`] scores earlier claims whose slot has since been observed:
//!
//! - **coverage**: the share of actuals inside the calibrated interval `[q(1 − p), q(p)]` (nominal `2p − 1`, e.g.
//!   80 % for planning at p = 0.9);
//! - **under-prediction rate**: the share of actuals above the planned quantile `q(p)` (nominal `1 − p`);
//! - **under-prediction size**: when under, the fraction of actual demand the plan missed, `(actual − q(p)) / actual`,
//!   averaged over the under-predicted slots; and **shortfall**, the same averaged over all slots (0 when covered),
//!   i.e. rate × size: the share of demand that found no capacity planned for it.
//!
//! Scores over the last [`Bounds::window`] scored slots are compared with [`Bounds::demote`]; once demoted, the
//! window restarts and the workload is promoted back only when [`Bounds::min_samples`] fresh scores meet the
//! stricter [`Bounds::promote`] limits. The gap between the two sets of limits is the hysteresis that keeps a
//! borderline workload from flapping. A missing slot is never scored: no data is not zero demand.
//!
//! Pure: no clock, no I/O; time is an argument.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::forecast::{Forecast, Quantile};
use crate::series::Series;

/// How many scored slots [`Tracker::recent`] keeps (for charts of forecast against actual).
pub const RECENT_SCORES: usize = 720;
/// Unscored claims whose slot ended this many steps ago without data are dropped (the data is not coming).
const PENDING_STEPS: i32 = 30;

/// Limits on a window of scores. A window meets them when coverage ≥ `min_coverage`, the under-prediction rate
/// ≤ `max_under_rate` and the mean shortfall ≤ `max_shortfall`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Lowest acceptable interval coverage (0..=1). Not applied when the nominal coverage (`2p − 1`) is below it.
    pub min_coverage: f64,
    /// Highest acceptable share of slots whose demand exceeded the planned quantile (0..=1).
    pub max_under_rate: f64,
    /// Highest acceptable shortfall: the mean over all slots of the fraction of demand above the plan (0..=1).
    pub max_shortfall: f64,
}

/// When to demote a workload to reactive scaling and when to promote it back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounds {
    /// Demote automatically (false: score and report only).
    pub auto_demote: bool,
    /// Scored slots the rolling scores cover.
    pub window: usize,
    /// Fewest scored slots before a decision either way.
    pub min_samples: usize,
    /// Demote when the window breaks any of these.
    pub demote: Limits,
    /// Promote back when the scores since demotion meet all of these (stricter than `demote`).
    pub promote: Limits,
}

impl Default for Bounds {
    /// For a one-minute step: an hour's window, decisions after 20 scored minutes. Planning at p90, a healthy model
    /// covers ~80 % and under-predicts ~10 %; demotion waits for clearly worse (under 40 % / over 35 %), promotion
    /// for close to nominal again.
    fn default() -> Self {
        Self {
            auto_demote: true,
            window: 60,
            min_samples: 20,
            demote: Limits {
                min_coverage: 0.4,
                max_under_rate: 0.35,
                max_shortfall: 0.1,
            },
            promote: Limits {
                min_coverage: 0.6,
                max_under_rate: 0.2,
                max_shortfall: 0.05,
            },
        }
    }
}

/// Invalid quality bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityError {
    /// A limit is outside 0..=1 or not a number.
    #[error("`{field}` must be a number between 0 and 1, got {value}")]
    OutOfRange {
        /// The limit's name (config spelling).
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// The window or minimum sample count is unusable.
    #[error("`minSamples` ({min_samples}) must be at least 1 and at most `window` ({window})")]
    Samples {
        /// The window.
        window: usize,
        /// The minimum sample count.
        min_samples: usize,
    },
    /// A promotion limit is looser than the matching demotion limit, so a workload could flap.
    #[error("`promote.{field}` ({promote}) must be at least as strict as `demote.{field}` ({demote}), or a borderline workload flaps between modes")]
    NoHysteresis {
        /// The limit's name (config spelling).
        field: &'static str,
        /// The promotion limit.
        promote: f64,
        /// The demotion limit.
        demote: f64,
    },
}

impl Bounds {
    /// Checks ranges and that promotion is at least as strict as demotion.
    pub fn validate(&self) -> Result<(), QualityError> {
        for (field, value) in [
            ("demote.minCoverage", self.demote.min_coverage),
            ("demote.maxUnderPrediction", self.demote.max_under_rate),
            ("demote.maxShortfall", self.demote.max_shortfall),
            ("promote.minCoverage", self.promote.min_coverage),
            ("promote.maxUnderPrediction", self.promote.max_under_rate),
            ("promote.maxShortfall", self.promote.max_shortfall),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(QualityError::OutOfRange { field, value });
            }
        }
        if self.min_samples == 0 || self.min_samples > self.window {
            return Err(QualityError::Samples {
                window: self.window,
                min_samples: self.min_samples,
            });
        }
        let (d, p) = (self.demote, self.promote);
        if p.min_coverage < d.min_coverage {
            return Err(QualityError::NoHysteresis {
                field: "minCoverage",
                promote: p.min_coverage,
                demote: d.min_coverage,
            });
        }
        if p.max_under_rate > d.max_under_rate {
            return Err(QualityError::NoHysteresis {
                field: "maxUnderPrediction",
                promote: p.max_under_rate,
                demote: d.max_under_rate,
            });
        }
        if p.max_shortfall > d.max_shortfall {
            return Err(QualityError::NoHysteresis {
                field: "maxShortfall",
                promote: p.max_shortfall,
                demote: d.max_shortfall,
            });
        }
        Ok(())
    }
}

/// What a forecast claimed, one lead time ahead, for one slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Start of the slot.
    pub slot: DateTime<Utc>,
    /// When the forecast was made.
    pub issued_at: DateTime<Utc>,
    /// Lower end of the interval, `q(1 − p)`.
    pub lower: f64,
    /// Median.
    pub median: f64,
    /// The planned quantile `q(p)` (upper end of the interval).
    pub planned: f64,
}

/// A prediction with the demand that then happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The claim.
    #[serde(flatten)]
    pub prediction: Prediction,
    /// Observed demand in the slot.
    pub actual: f64,
}

impl Score {
    fn tolerance(x: f64) -> f64 {
        1e-9 * x.abs().max(1.0)
    }

    /// True when the actual lies inside the interval.
    pub fn covered(&self) -> bool {
        let p = &self.prediction;
        self.actual >= p.lower - Self::tolerance(p.lower) && self.actual <= p.planned + Self::tolerance(p.planned)
    }

    /// True when demand exceeded the planned quantile.
    pub fn under(&self) -> bool {
        self.actual > self.prediction.planned + Self::tolerance(self.prediction.planned)
    }

    /// The fraction of demand the plan missed (0 unless under).
    pub fn shortfall(&self) -> f64 {
        if self.under() && self.actual > 0.0 {
            (self.actual - self.prediction.planned) / self.actual
        } else {
            0.0
        }
    }
}

/// Scores over a window. Rates are `None` when nothing has been scored: no data is not perfect data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Scored slots in the window.
    pub samples: usize,
    /// Share of actuals inside the interval.
    pub coverage: Option<f64>,
    /// Share of actuals above the planned quantile.
    pub under_rate: Option<f64>,
    /// Mean fraction of demand above the plan, over the under-predicted slots only (`None` when none was under).
    pub under_size: Option<f64>,
    /// Mean fraction of demand above the plan over all slots (rate × size).
    pub shortfall: Option<f64>,
    /// What coverage should be for a calibrated forecast: `2p − 1`.
    pub nominal_coverage: f64,
    /// What the under-prediction rate should be: `1 − p`.
    pub nominal_under_rate: f64,
}

impl Scores {
    fn of<'a>(scores: impl ExactSizeIterator<Item = &'a Score> + Clone, p: f64) -> Self {
        let n = scores.len();
        // Rounded so that 1 − 0.9 reads 0.1, not 0.09999999999999998.
        let round = |x: f64| (x * 1e9).round() / 1e9;
        let nominal_coverage = round((2.0 * p - 1.0).abs());
        let nominal_under_rate = round(1.0 - p);
        if n == 0 {
            return Self {
                samples: 0,
                coverage: None,
                under_rate: None,
                under_size: None,
                shortfall: None,
                nominal_coverage,
                nominal_under_rate,
            };
        }
        let covered = scores.clone().filter(|s| s.covered()).count();
        let under: Vec<f64> = scores.filter(|s| s.under()).map(Score::shortfall).collect();
        let missed: f64 = under.iter().sum();
        Self {
            samples: n,
            coverage: Some(covered as f64 / n as f64),
            under_rate: Some(under.len() as f64 / n as f64),
            under_size: (!under.is_empty()).then(|| missed / under.len() as f64),
            shortfall: Some(missed / n as f64),
            nominal_coverage,
            nominal_under_rate,
        }
    }

    /// The first limit these scores break, as a sentence; `None` when they meet all of them.
    pub fn breach(&self, limits: &Limits) -> Option<String> {
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        let n = self.samples;
        if let Some(u) = self.under_rate.filter(|u| *u > limits.max_under_rate) {
            return Some(format!(
                "demand exceeded the planned quantile in {} of the last {n} slots (limit {}, nominal {})",
                pct(u),
                pct(limits.max_under_rate),
                pct(self.nominal_under_rate)
            ));
        }
        if self.nominal_coverage >= limits.min_coverage {
            if let Some(c) = self.coverage.filter(|c| *c < limits.min_coverage) {
                return Some(format!(
                    "the interval covered {} of the last {n} slots (limit {}, nominal {})",
                    pct(c),
                    pct(limits.min_coverage),
                    pct(self.nominal_coverage)
                ));
            }
        }
        if let Some(s) = self.shortfall.filter(|s| *s > limits.max_shortfall) {
            return Some(format!(
                "{} of demand found no capacity planned for it over the last {n} slots (limit {})",
                pct(s),
                pct(limits.max_shortfall)
            ));
        }
        None
    }
}

/// Whether a workload's forecast is trusted to drive its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Forecast quality is within bounds (or not yet known).
    Trusted,
    /// Quality fell below the demotion bounds: the target is reactive until it recovers.
    Demoted,
}

/// A change of [`Health`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The new health.
    pub to: Health,
    /// When.
    pub at: DateTime<Utc>,
    /// Why (the breached limit on demotion, the recovered scores on promotion).
    pub reason: String,
}

/// The quality state of one workload, for the API, the page and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Trusted or demoted.
    pub health: Health,
    /// When the health last changed (`None`: never).
    pub since: Option<DateTime<Utc>>,
    /// Why the workload is demoted, or why it was last promoted.
    pub reason: Option<String>,
    /// Scores over the current window (since demotion while demoted).
    pub scores: Scores,
    /// Demotions since start.
    pub demotions: u64,
    /// Promotions since start.
    pub promotions: u64,
    /// Slots scored since start.
    pub scored_total: u64,
    /// Claims waiting for their slot's data.
    pub pending: usize,
}

/// What a [`Tracker`] has learned, to carry across a restart ([`Tracker::learned`], [`Tracker::adopt`]): its health
/// and why, and the rolling window its next decision reads. The claims waiting for their slot (a lead time's worth)
/// and the display's longer list of recent scores are not kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Learned {
    /// Trusted or demoted.
    pub health: Health,
    /// When the health last changed.
    pub since: Option<DateTime<Utc>>,
    /// Why.
    pub reason: Option<String>,
    /// The rolling window, oldest first.
    pub window: Vec<Score>,
    /// Demotions so far.
    pub demotions: u64,
    /// Promotions so far.
    pub promotions: u64,
    /// Slots scored so far.
    pub scored_total: u64,
}

/// Scores forecasts as their slots are observed and decides demotion and promotion.
#[derive(Debug, Clone)]
pub struct Tracker {
    bounds: Bounds,
    quantile: Quantile,
    pending: BTreeMap<DateTime<Utc>, Prediction>,
    window: VecDeque<Score>,
    recent: VecDeque<Score>,
    health: Health,
    since: Option<DateTime<Utc>>,
    reason: Option<String>,
    demotions: u64,
    promotions: u64,
    scored_total: u64,
    /// Demand `maxReplicas` serve, when known: samples taken for glitches against it are not scored (see
    /// [`crate::control::planner::glitch_limit`]).
    glitch_ceiling: Option<f64>,
}

impl Tracker {
    /// A tracker for forecasts planned at `quantile`, with nothing scored yet (trusted).
    pub fn new(bounds: Bounds, quantile: Quantile) -> Self {
        Self {
            bounds,
            quantile,
            pending: BTreeMap::new(),
            window: VecDeque::new(),
            recent: VecDeque::new(),
            health: Health::Trusted,
            since: None,
            reason: None,
            demotions: 0,
            promotions: 0,
            scored_total: 0,
            glitch_ceiling: None,
        }
    }

    /// The same tracker, judging samples for glitches against `ceiling`, the demand `maxReplicas` serve
    /// ([`crate::control::policy::Policy::glitch_ceiling`]): one absurd sample (a
    /// `1e308`) is a miss by every measure, and would count against the forecast although nothing could have
    /// predicted it. Its claim is dropped unscored, as for a slot whose data never came.
    pub fn with_glitch_ceiling(mut self, ceiling: f64) -> Self {
        self.glitch_ceiling = Some(ceiling);
        self
    }

    /// The bounds in force.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// True while demoted.
    pub fn is_demoted(&self) -> bool {
        self.health == Health::Demoted
    }

    /// Records the forecast's claim for the slot containing `now + lead`. The first claim for a slot is kept: it
    /// is the one made a full lead time ahead, when the capacity for that slot had to be asked for.
    pub fn record(&mut self, forecast: &Forecast, lead: TimeDelta, now: DateTime<Utc>) {
        let target = now + lead;
        let Some(i) = (0..forecast.len())
            .find(|&i| forecast.time_at(i) <= target && target < forecast.time_at(i) + forecast.step)
        else {
            return;
        };
        let slot = forecast.time_at(i);
        if self.pending.contains_key(&slot) || self.recent.back().is_some_and(|s| s.prediction.slot >= slot) {
            return;
        }
        let p = self.quantile;
        let mirror = Quantile::try_new(1.0 - p.get()).unwrap_or(Quantile::MEDIAN);
        let (a, b) = (forecast.quantile_at(i, mirror), forecast.quantile_at(i, p));
        let prediction = Prediction {
            slot,
            issued_at: now,
            lower: a.min(b),
            median: forecast.quantile_at(i, Quantile::MEDIAN),
            planned: b,
        };
        if [prediction.lower, prediction.median, prediction.planned]
            .iter()
            .all(|v| v.is_finite())
        {
            self.pending.insert(slot, prediction);
        }
    }

    /// Scores every claim whose slot has ended by `now` and has a sample in `history`; returns the change of
    /// health it caused, if any.
    pub fn observe(&mut self, history: &Series, now: DateTime<Utc>) -> Option<Transition> {
        let step = history.step();
        let ceiling = self.glitch_ceiling;
        let mut scored = Vec::new();
        self.pending.retain(|slot, prediction| {
            let end = *slot + step;
            if end > now {
                return true;
            }
            let index = history.slot_of(*slot).filter(|&i| history.time_at(i) == *slot);
            let actual = index.and_then(|i| history.get(i));
            let glitch = match (index, actual, ceiling) {
                (Some(i), Some(a), Some(c)) => {
                    crate::control::planner::glitch_limit(history, i, c).is_some_and(|l| a > l)
                }
                _ => false,
            };
            if glitch {
                return false;
            }
            match actual {
                Some(actual) => {
                    scored.push(Score {
                        prediction: *prediction,
                        actual,
                    });
                    false
                }
                // A slot not on the history's grid, or data that never came: drop it once it is clearly not coming.
                _ => end > now - step * PENDING_STEPS && *slot >= history.start(),
            }
        });
        for score in scored {
            self.push(score);
        }
        self.decide(now)
    }

    fn push(&mut self, score: Score) {
        self.scored_total += 1;
        self.window.push_back(score);
        while self.window.len() > self.bounds.window.max(1) {
            self.window.pop_front();
        }
        self.recent.push_back(score);
        while self.recent.len() > RECENT_SCORES {
            self.recent.pop_front();
        }
    }

    fn decide(&mut self, now: DateTime<Utc>) -> Option<Transition> {
        if self.window.len() < self.bounds.min_samples {
            return None;
        }
        let scores = self.scores();
        let transition = match self.health {
            Health::Trusted if self.bounds.auto_demote => {
                let reason = scores.breach(&self.bounds.demote)?;
                // Promotion must be earned by scores made after the demotion.
                self.window.clear();
                self.demotions += 1;
                Transition {
                    to: Health::Demoted,
                    at: now,
                    reason,
                }
            }
            Health::Demoted if scores.breach(&self.bounds.promote).is_none() => {
                self.promotions += 1;
                let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0));
                let reason = format!(
                    "recovered: coverage {}, under-prediction {} over {} slots",
                    pct(scores.coverage),
                    pct(scores.under_rate),
                    scores.samples
                );
                Transition {
                    to: Health::Trusted,
                    at: now,
                    reason,
                }
            }
            _ => return None,
        };
        self.health = transition.to;
        self.since = Some(now);
        self.reason = Some(transition.reason.clone());
        Some(transition)
    }

    /// What it has learned, to adopt after a restart.
    pub fn learned(&self) -> Learned {
        Learned {
            health: self.health,
            since: self.since,
            reason: self.reason.clone(),
            window: self.window.iter().copied().collect(),
            demotions: self.demotions,
            promotions: self.promotions,
            scored_total: self.scored_total,
        }
    }

    /// Takes over what another tracker of the same workload learned ([`Tracker::learned`]); the window is cut to
    /// this tracker's bounds. A score with a non-finite number is dropped: no scoring makes one.
    pub fn adopt(&mut self, learned: &Learned) {
        self.health = learned.health;
        self.since = learned.since;
        self.reason = learned.reason.clone();
        let finite = |s: &&Score| {
            let p = &s.prediction;
            [p.lower, p.median, p.planned, s.actual].iter().all(|v| v.is_finite())
        };
        let keep = self.bounds.window.max(1);
        let scores: Vec<Score> = learned.window.iter().filter(finite).copied().collect();
        self.window = scores[scores.len().saturating_sub(keep)..].iter().copied().collect();
        self.demotions = learned.demotions;
        self.promotions = learned.promotions;
        self.scored_total = learned.scored_total;
    }

    /// Scores over the current window.
    pub fn scores(&self) -> Scores {
        Scores::of(self.window.iter(), self.quantile.get())
    }

    /// The latest scored slots, oldest first (at most [`RECENT_SCORES`]).
    pub fn recent(&self) -> impl Iterator<Item = &Score> {
        self.recent.iter()
    }

    /// Claims not yet scored, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Prediction> {
        self.pending.values()
    }

    /// The state for the API, the page and metrics.
    pub fn report(&self) -> Report {
        Report {
            health: self.health,
            since: self.since,
            reason: self.reason.clone(),
            scores: self.scores(),
            demotions: self.demotions,
            promotions: self.promotions,
            scored_total: self.scored_total,
            pending: self.pending.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    /// `min` minutes after a fixed midnight.
    fn at_min(min: i64) -> DateTime<Utc> {
        t(min * 60)
    }

    fn p90() -> Quantile {
        Quantile::try_new(0.9).unwrap()
    }

    /// A flat forecast of `level` from `origin`, ten one-minute slots.
    fn flat(origin: i64, level: f64) -> Forecast {
        Forecast::from_median(at_min(origin), TimeDelta::minutes(1), vec![level; 10], at_min(origin))
    }

    fn bounds() -> Bounds {
        Bounds {
            window: 10,
            min_samples: 5,
            ..Bounds::default()
        }
    }

    /// Runs minute by minute: each minute forecasts `level_at(m)` and history gets `actual_at(m)`.
    fn run(
        tracker: &mut Tracker,
        minutes: std::ops::Range<i64>,
        forecast_level: impl Fn(i64) -> f64,
        actual: impl Fn(i64) -> Option<f64>,
    ) -> Vec<Transition> {
        let mut transitions = Vec::new();
        let values: Vec<Option<f64>> = (0..minutes.end).map(&actual).collect();
        for m in minutes {
            let history = Series::from_values(at_min(0), TimeDelta::minutes(1), values[..m as usize].to_vec());
            transitions.extend(tracker.observe(&history, at_min(m)));
            tracker.record(&flat(m, forecast_level(m)), TimeDelta::minutes(2), at_min(m));
        }
        transitions
    }

    #[test]
    fn scores_claims_one_lead_ahead_against_what_happened() {
        let mut tr = Tracker::new(
            Bounds {
                auto_demote: false,
                ..bounds()
            },
            p90(),
        );
        // Forecast 10 everywhere; actual 10 until minute 6, then 20.
        run(&mut tr, 0..9, |_| 10.0, |m| Some(if m < 6 { 10.0 } else { 20.0 }));
        // Claims for slots 2..=10 were recorded at minutes 0..=8; slots 2..=7 have ended by minute 8 and have data.
        let scored: Vec<_> = tr
            .recent()
            .map(|s| (s.prediction.slot, s.prediction.issued_at, s.actual))
            .collect();
        assert_eq!(scored.first(), Some(&(at_min(2), at_min(0), 10.0)));
        assert_eq!(scored.len(), 6, "{scored:?}");
        let s = tr.scores();
        assert_eq!(s.samples, 6);
        assert_eq!(s.under_rate, Some(2.0 / 6.0));
        assert_eq!(s.coverage, Some(4.0 / 6.0));
        assert_eq!(s.under_size, Some(0.5));
        assert_eq!(s.shortfall, Some(1.0 / 6.0));
        assert!((s.nominal_coverage - 0.8).abs() < 1e-12);
        assert_eq!(tr.report().pending, 3);
    }

    #[test]
    fn missing_data_is_never_scored() {
        let mut tr = Tracker::new(bounds(), p90());
        run(&mut tr, 0..60, |_| 10.0, |_| None);
        assert_eq!(tr.scores().samples, 0);
        assert_eq!(tr.scores().coverage, None);
        assert!(
            tr.report().pending <= PENDING_STEPS as usize + 3,
            "old claims are dropped: {}",
            tr.report().pending
        );
        assert!(!tr.is_demoted());
    }

    #[test]
    fn demotes_on_sustained_under_prediction_and_promotes_after_recovery() {
        let mut tr = Tracker::new(bounds(), p90());
        // Minutes 0..20 accurate; 20..40 demand doubles while the forecast stays at 10; from 40 the forecast
        // catches up.
        let actual = |m: i64| Some(if (20..40).contains(&m) { 20.0 } else { 10.0 });
        let tr_all = run(&mut tr, 0..80, |_| 10.0, actual);
        assert_eq!(tr_all.len(), 2, "{tr_all:?}");
        assert_eq!(tr_all[0].to, Health::Demoted);
        assert!(tr_all[0].at > at_min(20) && tr_all[0].at < at_min(30), "{tr_all:?}");
        assert!(tr_all[0].reason.contains("the last 10 slots"), "{}", tr_all[0].reason);
        assert_eq!(tr_all[1].to, Health::Trusted);
        assert!(
            tr_all[1].at > at_min(40),
            "promotion waits for fresh good scores: {tr_all:?}"
        );
        let r = tr.report();
        assert_eq!((r.demotions, r.promotions, r.health), (1, 1, Health::Trusted));
    }

    #[test]
    fn stays_demoted_while_quality_is_between_the_limits() {
        // One slot in three under-predicted: 30-40% of a 10-slot window is above promotion's limit (20%).
        let mut tr = Tracker::new(bounds(), p90());
        let actual = |m: i64| {
            Some(if m < 20 {
                30.0
            } else if m % 3 == 0 {
                12.0
            } else {
                10.0
            })
        };
        let transitions = run(&mut tr, 0..120, |_| 10.0, actual);
        assert_eq!(transitions.len(), 1, "demoted once, never promoted: {transitions:?}");
        assert!(tr.is_demoted());
    }

    #[test]
    fn report_only_mode_never_demotes() {
        let mut tr = Tracker::new(
            Bounds {
                auto_demote: false,
                ..bounds()
            },
            p90(),
        );
        run(&mut tr, 0..40, |_| 10.0, |_| Some(30.0));
        assert!(!tr.is_demoted());
        assert_eq!(tr.scores().under_rate, Some(1.0));
    }

    #[test]
    fn bounds_are_validated() {
        assert_eq!(Bounds::default().validate(), Ok(()));
        let mut b = Bounds::default();
        b.promote.max_under_rate = 0.5;
        assert!(matches!(
            b.validate(),
            Err(QualityError::NoHysteresis {
                field: "maxUnderPrediction",
                ..
            })
        ));
        let mut b = Bounds::default();
        b.demote.min_coverage = 1.5;
        assert!(b.validate().unwrap_err().to_string().contains("demote.minCoverage"));
        let b = Bounds {
            min_samples: 100,
            ..Bounds::default()
        };
        assert!(matches!(b.validate(), Err(QualityError::Samples { .. })));
    }
}
