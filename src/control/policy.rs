//! How a workload is to be scaled: the settings the planner and the service-level controller read.
//!
//! Kept apart from both so that the planner (pure arithmetic over a forecast) and the controller (which replays the
//! planner on shadows) depend on the settings, not on each other.

use chrono::TimeDelta;
use serde::Serialize;

use crate::forecast::Quantile;

/// How a workload is scaled. Every field is valid by construction (the config file and the backtest's flags are
/// checked where they are read), so nothing downstream re-checks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Demand one replica serves (units/s).
    pub capacity_per_replica: f64,
    /// Cold start: time from pod creation to serving.
    pub lead: TimeDelta,
    /// HPA sync period (15 s by default).
    pub sync: TimeDelta,
    /// Quantile of the forecast to be ready for.
    pub quantile: Quantile,
    /// The bounds every target is clamped to.
    pub replicas: Replicas,
    /// When the target may go down.
    pub scale_in: ScaleIn,
    /// Target utilization of the reactive target served while the forecast is not (forecast-only mode, or
    /// demoted for poor quality): 0.7 sizes replicas for observed demand / 0.7, as a typical HPA would.
    pub fallback_utilization: Utilization,
    /// The HPA's scale-down stabilization window `W`: it scales in only to the highest recommendation of this long
    /// ([`DOWNSCALE_STABILIZATION`] on the legacy path; `behavior.scaleDown.stabilizationWindowSeconds` otherwise).
    pub downscale_stabilization: TimeDelta,
    /// Adapting the planning quantile to the workload (see [`crate::control::service_level`]); `quantile` is used before
    /// the adaptation has enough scores, and always when it is off.
    pub adaptive: Adaptive,
}

impl Policy {
    /// The demand `maxReplicas` serve: an observation below [`GLITCH_FACTOR`](crate::forecast::GLITCH_FACTOR)
    /// times it is demand, never a glitch (see [`crate::control::planner::glitch_limit`]).
    pub fn glitch_ceiling(&self) -> f64 {
        self.capacity_per_replica * f64::from(self.replicas.max())
    }

    /// A policy with the workload file's defaults: lead 5 min, sync 15 s, plan at p90, 1 to `max_replicas` replicas
    /// (at least 1), scale in on the forecast, fallback at [`DEFAULT_FALLBACK_UTILIZATION`], the HPA's legacy
    /// [`DOWNSCALE_STABILIZATION`], the quantile adapted to the workload ([`Adaptive::default`]).
    pub fn new(capacity_per_replica: f64, max_replicas: u32) -> Self {
        Self {
            capacity_per_replica,
            lead: TimeDelta::minutes(5),
            sync: TimeDelta::seconds(15),
            quantile: Quantile::try_new(0.9).expect("0.9 is a valid quantile"),
            replicas: Replicas::new(1, i64::from(max_replicas.max(1))).expect("1..=max is a valid range"),
            scale_in: ScaleIn::Forecast,
            fallback_utilization: DEFAULT_FALLBACK_UTILIZATION,
            downscale_stabilization: DOWNSCALE_STABILIZATION,
            adaptive: Adaptive::default(),
        }
    }
}

/// A setting outside what prescale can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The replica bounds are out of order or out of range.
    #[error("replicas {min}..{max}: {problem}")]
    Replicas {
        /// The lower bound asked for.
        min: i64,
        /// The upper bound asked for.
        max: i64,
        /// What is wrong.
        problem: &'static str,
    },
    /// A utilization outside (0, 1].
    #[error("utilization {0} must be in (0, 1], e.g. 0.7 for 70%")]
    Utilization(f64),
}

/// The replica bounds of a workload: `0 ≤ min ≤ max`, `1 ≤ max`, both within what an HPA accepts (`int32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replicas {
    min: u32,
    max: u32,
}

impl Replicas {
    /// The bounds, checked.
    pub fn new(min: i64, max: i64) -> Result<Self, PolicyError> {
        let error = |problem| PolicyError::Replicas { min, max, problem };
        let limit = i64::from(i32::MAX);
        if !(0..=limit).contains(&min) {
            return Err(error("minReplicas must be between 0 and 2147483647"));
        }
        if !(1..=limit).contains(&max) {
            return Err(error("maxReplicas must be between 1 and 2147483647"));
        }
        if max < min {
            return Err(error("maxReplicas is below minReplicas"));
        }
        Ok(Self {
            min: min as u32,
            max: max as u32,
        })
    }

    /// The lower bound.
    pub fn min(self) -> u32 {
        self.min
    }

    /// The upper bound.
    pub fn max(self) -> u32 {
        self.max
    }

    /// `n` within the bounds.
    pub fn clamp(self, n: u32) -> u32 {
        n.clamp(self.min, self.max)
    }
}

/// A target utilization in (0, 1]: the share of a replica's capacity an HPA target aims to use.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Utilization(f64);

impl Utilization {
    /// Full use: size replicas for demand itself.
    pub const FULL: Utilization = Utilization(1.0);

    /// The utilization, checked.
    pub fn new(u: f64) -> Result<Self, PolicyError> {
        if u.is_finite() && u > 0.0 && u <= 1.0 {
            Ok(Self(u))
        } else {
            Err(PolicyError::Utilization(u))
        }
    }

    /// As a share.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// When the target may go down (`scaleIn`): `forecast` (the default) follows the forecast down; `observed` scales in
/// only when observed demand allows it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScaleIn {
    /// Follow the forecast down.
    Forecast,
    /// Scale in only when observed demand allows it too.
    Observed,
}

/// Default [`Policy::fallback_utilization`]: the common production HPA setting.
pub const DEFAULT_FALLBACK_UTILIZATION: Utilization = Utilization(0.7);

/// The HPA's downscale stabilization window on the legacy path (`behavior` unset): it scales in only to the highest
/// recommendation of this long. The planner relies on it to hold capacity after a served value has passed.
pub const DOWNSCALE_STABILIZATION: TimeDelta = crate::k8s::hpa::DEFAULT_DOWNSCALE_STABILIZATION;

/// History a startup replay leaves before its first decision, so that the first replayed fit has a day to learn
/// from: a replay covers at most the history window less this.
pub const REPLAY_LEAD_IN: TimeDelta = TimeDelta::days(1);

/// Why a share of demand could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// A bare number.
    #[error("`{0}` is not a percentage; write the share of demand that may go unserved with a % sign, e.g. 0.1%")]
    NoPercentSign(String),
    /// Not a number before the `%`.
    #[error("`{0}` is not a percentage; write e.g. 0.1%")]
    NotANumber(String),
    /// Outside what an SLO can ask for.
    #[error("{0} must be between 0.001% and 50%, e.g. 0.1%")]
    OutOfRange(String),
}

/// A workload's service-level objective (workload config `serviceLevel`): at most `max_unserved` of its demand
/// may go unserved by ready replicas, measured over a rolling `window`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServiceLevel {
    /// The share of demand the ready replicas may leave unserved, in (0, 0.5].
    pub max_unserved: f64,
    /// The rolling window the share is measured over.
    #[serde(serialize_with = "seconds")]
    pub window: TimeDelta,
}

fn seconds<S: serde::Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_seconds())
}

impl ServiceLevel {
    /// The smallest SLO that can be asked for: 0.001% of demand.
    pub const MIN_UNSERVED: f64 = 1e-5;
    /// The largest: half of demand.
    pub const MAX_UNSERVED: f64 = 0.5;
    /// The shortest window.
    pub const MIN_WINDOW: TimeDelta = TimeDelta::hours(1);
    /// The longest window.
    pub const MAX_WINDOW: TimeDelta = TimeDelta::days(60);

    /// Reads a share written as a percentage, `0.1%` (a bare number is refused: 0.1 could mean 10% or 0.1%).
    pub fn parse_share(s: &str) -> Result<f64, ShareError> {
        let t = s.trim();
        let quoted = || t.chars().take(40).collect::<String>();
        let Some(number) = t.strip_suffix('%') else {
            return Err(ShareError::NoPercentSign(quoted()));
        };
        let pct: f64 = number.trim().parse().map_err(|_| ShareError::NotANumber(quoted()))?;
        let share = pct / 100.0;
        if !(share.is_finite() && (Self::MIN_UNSERVED..=Self::MAX_UNSERVED).contains(&share)) {
            return Err(ShareError::OutOfRange(quoted()));
        }
        Ok(share)
    }

    /// The share as people write it: `0.1%`.
    pub fn format_share(share: f64) -> String {
        let pct = share * 100.0;
        // The shortest decimal that reads back the same, without float noise such as 0.30000000000000004.
        let text = format!("{:.6}", pct);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}%")
    }
}

impl Default for ServiceLevel {
    /// At most 1% of demand unserved over 7 days: about what an HPA at 70% utilization delivers on typical traffic,
    /// stated as an objective instead of left to each workload's noise. Latency-critical workloads set 0.1%.
    fn default() -> Self {
        Self {
            max_unserved: 0.01,
            window: TimeDelta::days(7),
        }
    }
}

impl std::fmt::Display for ServiceLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at most {} of demand unserved over {}",
            Self::format_share(self.max_unserved),
            crate::duration::format(self.window)
        )
    }
}

/// Settings of the service-level controller (workload config `adaptiveQuantile`, and `serviceLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adaptive {
    /// Choose the plan by the SLO (false: always plan at the configured quantile).
    pub enabled: bool,
    /// Half-life of the scores: how quickly old decisions stop counting.
    pub half_life: TimeDelta,
    /// How much scored time the choice waits for; the configured quantile is used until then.
    pub warmup: TimeDelta,
    /// How much recent history is replayed through the decision step at startup (at most the history window), so
    /// that the choice, and the quality gate, start warm instead of waiting out `warmup` live; zero turns it off.
    pub replay: TimeDelta,
    /// The service level aimed at.
    pub slo: ServiceLevel,
}

impl Adaptive {
    /// How much history a startup replay covers when `available` is held: [`Adaptive::replay`], at most the history
    /// less [`REPLAY_LEAD_IN`]; zero when there is nothing to replay.
    pub fn replay_span(&self, available: TimeDelta) -> TimeDelta {
        self.replay.min(available - REPLAY_LEAD_IN).max(TimeDelta::zero())
    }
}

impl Default for Adaptive {
    /// On, with a one-day half-life (a whole daily cycle counts, and a change of regime is followed within a day or
    /// two), after one day of scores, replaying three days of history at startup, aiming at the default
    /// [`ServiceLevel`].
    fn default() -> Self {
        Self {
            enabled: true,
            half_life: TimeDelta::days(1),
            warmup: TimeDelta::days(1),
            replay: TimeDelta::days(3),
            slo: ServiceLevel::default(),
        }
    }
}
