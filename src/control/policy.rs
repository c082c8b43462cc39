//! How a workload is to be scaled: the settings the planner and the service-level controller read.
//!
//! Kept apart from both so that the planner (pure arithmetic over a forecast) and the controller (which replays the
//! planner on shadows) depend on the settings, not on each other.

use chrono::TimeDelta;
use serde::Serialize;

use crate::forecast::Quantile;

/// How a workload is scaled.
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
    /// Lower bound on replicas.
    pub min_replicas: u32,
    /// Upper bound on replicas.
    pub max_replicas: u32,
    /// Scale in only when observed demand allows it too.
    pub scale_in_on_observed_only: bool,
    /// Target utilization of the reactive target served while the forecast is not (forecast-only mode, or
    /// demoted for poor quality), in (0, 1]: 0.7 sizes replicas for observed demand / 0.7, as a typical HPA would.
    pub fallback_utilization: f64,
    /// The HPA's scale-down stabilization window `W`: it scales in only to the highest recommendation of this long
    /// ([`DOWNSCALE_STABILIZATION`] on the legacy path; `behavior.scaleDown.stabilizationWindowSeconds` otherwise).
    pub downscale_stabilization: TimeDelta,
    /// Adapting the planning quantile to the workload (see [`crate::control::service_level`]); `quantile` is used before
    /// the adaptation has enough scores, and always when it is off.
    pub adaptive: Adaptive,
}

impl Policy {
    /// A policy with the workload file's defaults: lead 5 min, sync 15 s, plan at p90, at least 1 replica, scale in on
    /// the forecast, fallback at [`DEFAULT_FALLBACK_UTILIZATION`], the HPA's legacy [`DOWNSCALE_STABILIZATION`], the
    /// quantile adapted to the workload ([`Adaptive::default`]).
    pub fn new(capacity_per_replica: f64, max_replicas: u32) -> Self {
        Self {
            capacity_per_replica,
            lead: TimeDelta::minutes(5),
            sync: TimeDelta::seconds(15),
            quantile: Quantile::try_new(0.9).expect("0.9 is a valid quantile"),
            min_replicas: 1,
            max_replicas,
            scale_in_on_observed_only: false,
            fallback_utilization: DEFAULT_FALLBACK_UTILIZATION,
            downscale_stabilization: DOWNSCALE_STABILIZATION,
            adaptive: Adaptive::default(),
        }
    }

    /// [`Policy::fallback_utilization`] when it is usable, in (0, 1]; otherwise 1 (size for observed demand).
    pub fn fallback_utilization(&self) -> f64 {
        let u = self.fallback_utilization;
        if u.is_finite() && u > 0.0 && u <= 1.0 {
            u
        } else {
            1.0
        }
    }
}

/// Default [`Policy::fallback_utilization`]: the common production HPA setting.
pub const DEFAULT_FALLBACK_UTILIZATION: f64 = 0.7;

/// The HPA's downscale stabilization window on the legacy path (`behavior` unset): it scales in only to the highest
/// recommendation of this long. The planner relies on it to hold capacity after a served value has passed.
pub const DOWNSCALE_STABILIZATION: TimeDelta = crate::k8s::hpa::DEFAULT_DOWNSCALE_STABILIZATION;

/// History a startup replay leaves before its first decision, so that the first replayed fit has a day to learn
/// from: a replay covers at most the history window less this.
pub const REPLAY_LEAD_IN: TimeDelta = TimeDelta::days(1);

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
    pub fn parse_share(s: &str) -> Result<f64, String> {
        let t = s.trim();
        let Some(number) = t.strip_suffix('%') else {
            return Err(format!(
                "`{s}` is not a percentage; write the share of demand that may go unserved with a % sign, e.g. 0.1%"
            ));
        };
        let pct: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage; write e.g. 0.1%"))?;
        let share = pct / 100.0;
        if !(share.is_finite() && (Self::MIN_UNSERVED..=Self::MAX_UNSERVED).contains(&share)) {
            return Err(format!("{s} must be between 0.001% and 50%, e.g. 0.1%"));
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
