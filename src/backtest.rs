//! Backtests: replay a recorded trace through scaling policies, the HPA's arithmetic and a pod model, and score them.
//!
//! The protocol (one yardstick for every comparison): ticks every 15 s over the scored window (after a warm-up of
//! 7 days, or 25% of shorter traces and at least 10 minutes); each policy may read only samples whose interval
//! ended by `t − 30 s`; what it serves goes through [`crate::k8s::hpa`] exactly as the Kubernetes HPA would read it
//! (a Quantity, `MilliValue` rounded up) with an AverageValue target, tolerance 0.1 and no `behavior`; pods are
//! ready `L` after creation. Capacity per replica is `c = p99(scored demand) / 20`, replicas are kept in `[1, 40]`.
//!
//! Policies side by side:
//! - `reactive`: observed demand (mean of the visible samples ending in `(t − 90 s, t − 30 s]`, else the latest
//!   visible sample) against target `c`;
//! - `reactive-70`: the same against `0.7·c`, the common production setting and the baseline to beat;
//! - `predictive`: the production decision step ([`crate::control::engine::Engine`]: forecast, planner, quality gate and the
//!   service-level controller) on visible history only, refitted every `refit_interval`, serving `plan.served`
//!   against target `1`; run once per service-level objective ([`Settings::slos`]) at every lead, all in one pass
//!   that fits the model once per lead and refit (with the forecast settings `prescale serve` gives that lead),
//!   shared by the SLOs;
//! - `oracle`: perfect foresight bypassing the HPA, pods for `ceil(demand / c)` created exactly `L` before they are
//!   needed and removed as soon as they are not. Its replica-hours are a floor.
//! - `hpa-oracle`: perfect foresight served through the same HPA, planned as the predictive policy plans (the peak
//!   of actual demand over the [`crate::control::planner::cover_window`], raised past the tolerance). It splits the
//!   predictive policy's distance from the oracle into what the HPA's hold, tolerance and whole replicas cost
//!   (hpa-oracle vs oracle) and what forecast error costs (predictive vs hpa-oracle), and is the "perfect
//!   foresight" end of *foresight captured*.
//!
//! Beside them, whenever a reactive policy or the predictive one runs, the **reactive frontier** per lead: the
//! reactive HPA at target `u·c` for every `u` in [`crate::control::service_level::UTILIZATIONS`] (scores only, no per-tick
//! files). Each predictive run is judged against it at its own realised unserved share (the best-tuned HPA that
//! served as well: equal-service savings, foresight captured) and against its SLO; see [`frontier`] for the exact
//! definitions and the bar.
//!
//! Scores: `unserved_fraction`, `violation_minutes` (also per day), `replica_hours` (ready + starting pods) and
//! `scale_events`. Ticks inside a gap of the trace are simulated but not scored.
//!
//! Conventions chosen where the protocol leaves room (documented so independent scorers agree):
//! - p99 is the linearly interpolated percentile (numpy's default) of the demand at the scored ticks.
//! - The Deployment starts with `clamp(ceil(MilliValue(served) / MilliValue(target)), 1, 40)` pods, all ready: the
//!   replica count the HPA would compute from the first served value. For the reactive policies this is
//!   `ceil(served / target)`; for the predictive policy it is the planned replica count.
//! - The oracle's replica need is clamped to `[1, 40]` too; in gaps (and after the trace) it needs `minReplicas`.
//! - `scale_events` counts scored ticks whose desired count differs from the previous tick's (the first tick is
//!   compared with the starting count). The oracle's desired count is the number of pods it holds.

use chrono::TimeDelta;
use serde::Serialize;

use crate::forecast::Quantile;

mod chart;
mod cli;
pub mod frontier;
mod output;
mod policies;
pub mod publish;
mod report;
mod sim;

pub use cli::{run_cli, BacktestArgs, Connect};
pub use output::write_outputs;
pub use report::{PolicyRun, PredictiveInfo, Report, ReportSettings, Scores, SloResult, TickRow};
pub use sim::{run, UNSCORABLE};

/// HPA sync period: one tick of the simulation.
pub const TICK: TimeDelta = TimeDelta::seconds(15);
/// Scrape and rule-evaluation lag: a policy at `t` sees samples whose interval ended by `t − LAG`.
pub const LAG: TimeDelta = TimeDelta::seconds(30);
/// Length of the "observed demand" window.
pub const OBSERVED_WINDOW: TimeDelta = TimeDelta::seconds(60);
/// `minReplicas` of every backtest.
pub const MIN_REPLICAS: u32 = 1;
/// `maxReplicas` of every backtest.
pub const MAX_REPLICAS: u32 = 40;
/// The p99 of scored demand needs exactly this many replicas.
pub const P99_REPLICAS: f64 = 20.0;

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The trace could not be loaded.
    #[error(transparent)]
    Trace(#[from] crate::history::trace::TraceError),
    /// The trace is too short to leave a scored window after the warm-up.
    #[error("trace `{trace}` is too short: {detail}")]
    TooShort {
        /// The trace name.
        trace: String,
        /// What is missing.
        detail: String,
    },
    /// The scored window has no demand to size replicas from (p99 is zero or no sample is present).
    #[error("trace `{trace}`: cannot size replicas, {detail}; use a trace with non-zero demand in the scored window")]
    NoDemand {
        /// The trace name.
        trace: String,
        /// What is wrong.
        detail: String,
    },
    /// A setting is out of range (lead time, refit interval, capacity, policy list).
    #[error("invalid backtest setting `{field}`: {problem}")]
    Setting {
        /// The setting (CLI flag name).
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// An HPA specification built from the settings was rejected.
    #[error("HPA specification rejected: {0}")]
    Hpa(#[from] crate::k8s::hpa::HpaError),
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A scaling policy compared by the backtest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
pub enum PolicyName {
    /// Observed demand against target `c`.
    #[serde(rename = "reactive")]
    #[value(name = "reactive")]
    Reactive,
    /// Observed demand against target `0.7·c`.
    #[serde(rename = "reactive-70")]
    #[value(name = "reactive-70")]
    Reactive70,
    /// Forecast + planner, serving replicas against target `1`.
    #[serde(rename = "predictive")]
    #[value(name = "predictive")]
    Predictive,
    /// Perfect foresight, bypassing the HPA.
    #[serde(rename = "oracle")]
    #[value(name = "oracle")]
    Oracle,
    /// Perfect foresight served through the same HPA: the best any served metric can do with a plain HPA.
    #[serde(rename = "hpa-oracle")]
    #[value(name = "hpa-oracle")]
    HpaOracle,
}

impl PolicyName {
    /// Every policy, in report order.
    pub const ALL: [PolicyName; 5] = [
        PolicyName::Reactive,
        PolicyName::Reactive70,
        PolicyName::Predictive,
        PolicyName::Oracle,
        PolicyName::HpaOracle,
    ];

    /// The policies run by default: all of them (`hpa-oracle` is needed for foresight captured).
    pub const DEFAULT: [PolicyName; 5] = PolicyName::ALL;

    /// The name used in reports and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Reactive => "reactive",
            PolicyName::Reactive70 => "reactive-70",
            PolicyName::Predictive => "predictive",
            PolicyName::Oracle => "oracle",
            PolicyName::HpaOracle => "hpa-oracle",
        }
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a backtest run can vary. The protocol's constants (tick, lag, replica bounds) are fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Cold-start lead times to simulate (each a non-negative multiple of 15 s).
    pub leads: Vec<TimeDelta>,
    /// Forecast quantile the predictive policy plans at.
    pub quantile: Quantile,
    /// How often the predictive policy refits its model on visible history.
    pub refit_interval: TimeDelta,
    /// Policies to run (report order is [`PolicyName::ALL`] order).
    pub policies: Vec<PolicyName>,
    /// Capacity per replica; `None` uses the protocol's `p99(scored demand) / 20`.
    pub capacity: Option<f64>,
    /// When the predictive planner's target may go down.
    pub scale_in: crate::control::policy::ScaleIn,
    /// The planner's `fallback_utilization`: the reactive target served while forecasts are demoted.
    pub fallback_utilization: crate::control::policy::Utilization,
    /// When the predictive policy's forecasts are demoted to the reactive target, and promoted back.
    pub quality: crate::control::quality::Bounds,
    /// The predictive policy's adaptive quantile (off: it plans at `quantile` throughout), and its SLO.
    pub adaptive: crate::control::policy::Adaptive,
    /// The SLOs (shares of demand that may go unserved) to run the predictive policy at, once each at every lead;
    /// empty: `adaptive.slo.max_unserved` alone.
    pub slos: Vec<f64>,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            leads: vec![TimeDelta::minutes(2), TimeDelta::minutes(5), TimeDelta::minutes(10)],
            quantile: Quantile::try_new(0.9).expect("0.9 is a valid quantile"),
            refit_interval: TimeDelta::hours(1),
            policies: PolicyName::DEFAULT.to_vec(),
            capacity: None,
            scale_in: crate::control::policy::ScaleIn::Forecast,
            fallback_utilization: crate::control::policy::DEFAULT_FALLBACK_UTILIZATION,
            quality: crate::control::quality::Bounds::default(),
            adaptive: crate::control::policy::Adaptive::default(),
            slos: Vec::new(),
            progress: false,
        }
    }
}

impl Settings {
    /// The SLOs the predictive policy runs at, ascending and without repeats: [`Settings::slos`], or the adaptive
    /// SLO when none is given.
    pub fn slos(&self) -> Vec<f64> {
        let mut slos = if self.slos.is_empty() {
            vec![self.adaptive.slo.max_unserved]
        } else {
            self.slos.clone()
        };
        slos.sort_by(f64::total_cmp);
        slos.dedup();
        slos
    }
}

/// Short label of a lead time for file names and tables, e.g. `5m`, `90s`.
pub fn lead_label(lead: TimeDelta) -> String {
    crate::duration::format(lead)
}

/// Label of an SLO for tables and JSON keys, e.g. `0.1%`.
pub fn slo_label(slo: f64) -> String {
    crate::control::policy::ServiceLevel::format_share(slo)
}
