//! Scores, the machine-readable report (JSON), per-tick CSVs, and the terminal summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{chart, BacktestError, PolicyName, TICK};

/// One tick of one policy's replay: the columns of the per-tick CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TickRow {
    /// Tick time.
    pub t: DateTime<Utc>,
    /// Demand during `[t, t + 15 s)`; `None` in a gap (not scored).
    pub demand: Option<f64>,
    /// The metric value the policy served (before the HPA reads it as a Quantity); `None` when it served nothing
    /// (no visible data yet, no forecast, or the oracle, which bypasses the HPA).
    pub served_value: Option<f64>,
    /// Replicas the HPA set (the oracle: pods it holds).
    pub desired_replicas: u32,
    /// Pods ready at `t`.
    pub ready_pods: u32,
    /// Pods created but not ready at `t`.
    pub starting_pods: u32,
}

/// The protocol's scores for one policy at one lead time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// ∫ max(0, demand − ready·c) dt / ∫ demand dt (0 when there is no demand at all).
    pub unserved_fraction: f64,
    /// Minutes in which demand exceeded ready capacity.
    pub violation_minutes: f64,
    /// `violation_minutes` per scored day (scored minutes / 1440).
    pub violation_minutes_per_day: f64,
    /// Violation minutes per UTC calendar day (`YYYY-MM-DD`).
    pub violation_minutes_by_day: BTreeMap<String, f64>,
    /// ∫ (ready + starting pods) dt / 3600.
    pub replica_hours: f64,
    /// Scored ticks at which the desired replica count changed.
    pub scale_events: u32,
    /// ∫ demand dt over scored ticks (units).
    pub demand_units: f64,
    /// ∫ max(0, demand − ready·c) dt (units).
    pub unserved_units: f64,
    /// Number of scored ticks (ticks with a demand sample).
    pub scored_ticks: usize,
}

/// Computes [`Scores`] from a replay; `initial` is the replica count before the first tick.
pub(crate) fn score(rows: &[TickRow], capacity: f64, initial: u32) -> Scores {
    let dt = TICK.num_seconds() as f64;
    let mut s = Scores {
        unserved_fraction: 0.0,
        violation_minutes: 0.0,
        violation_minutes_per_day: 0.0,
        violation_minutes_by_day: BTreeMap::new(),
        replica_hours: 0.0,
        scale_events: 0,
        demand_units: 0.0,
        unserved_units: 0.0,
        scored_ticks: 0,
    };
    // Whole ticks are counted as integers so that hours and minutes are exact multiples, whatever the order.
    let (mut pod_ticks, mut violating_ticks) = (0u64, 0u64);
    let mut previous = initial;
    for row in rows {
        let changed = row.desired_replicas != previous;
        previous = row.desired_replicas;
        let Some(d) = row.demand else { continue };
        s.scored_ticks += 1;
        s.scale_events += u32::from(changed);
        let served = f64::from(row.ready_pods) * capacity;
        s.demand_units += d * dt;
        s.unserved_units += (d - served).max(0.0) * dt;
        pod_ticks += u64::from(row.ready_pods + row.starting_pods);
        let day = row.t.format("%Y-%m-%d").to_string();
        let by_day = s.violation_minutes_by_day.entry(day).or_insert(0.0);
        if d > served {
            violating_ticks += 1;
            *by_day += dt / 60.0;
        }
    }
    s.replica_hours = pod_ticks as f64 * dt / 3600.0;
    s.violation_minutes = violating_ticks as f64 * dt / 60.0;
    if s.demand_units > 0.0 {
        s.unserved_fraction = s.unserved_units / s.demand_units;
    }
    let days = s.scored_ticks as f64 * dt / 86_400.0;
    if days > 0.0 {
        s.violation_minutes_per_day = s.violation_minutes / days;
    }
    s
}

/// One policy at one lead time.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    /// The policy.
    pub policy: PolicyName,
    /// Cold start `L` in seconds.
    pub lead_seconds: i64,
    /// Cold start as a label (`5m`).
    pub lead: String,
    /// Its scores.
    pub scores: Scores,
    /// The per-tick replay (written to CSV, not to the JSON report).
    #[serde(skip)]
    pub ticks: Vec<TickRow>,
}

/// The settings a report was produced with: enough to reproduce it.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSettings {
    /// HPA sync period.
    pub tick_seconds: i64,
    /// Visibility lag.
    pub lag_seconds: i64,
    /// First slot of the trace.
    pub trace_start: DateTime<Utc>,
    /// End (exclusive) of the trace.
    pub trace_end: DateTime<Utc>,
    /// Trace step.
    pub trace_step_seconds: f64,
    /// Warm-up before the scored window.
    pub history_seconds: f64,
    /// First scored tick.
    pub scored_start: DateTime<Utc>,
    /// Number of ticks simulated.
    pub ticks: usize,
    /// Ticks with a demand sample (scored).
    pub scored_ticks: usize,
    /// p99 of demand at the scored ticks (linear interpolation).
    pub p99_demand: f64,
    /// Capacity per replica `c`.
    pub capacity_per_replica: f64,
    /// `minReplicas`.
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// HPA tolerance.
    pub tolerance: f64,
    /// HPA downscale stabilization window.
    pub downscale_stabilization_seconds: i64,
    /// AverageValue target of `reactive` (milli-units, as the HPA reads it).
    pub reactive_target_milli: i64,
    /// AverageValue target of `reactive-70`.
    pub reactive70_target_milli: i64,
    /// AverageValue target of `predictive`.
    pub predictive_target_milli: i64,
    /// Forecast quantile of the predictive policy.
    pub quantile: f64,
    /// Refit interval of the predictive policy.
    pub refit_interval_seconds: i64,
    /// Lead times simulated.
    pub leads_seconds: Vec<i64>,
    /// Policies run.
    pub policies: Vec<PolicyName>,
    /// The planner's `scale_in_on_observed_only`.
    pub scale_in_on_observed_only: bool,
    /// Target utilization of the reactive target the predictive policy serves while its forecast is demoted.
    pub fallback_utilization: f64,
    /// The forecast-quality bounds that demote and promote the predictive policy's forecasts.
    pub quality: crate::quality::Bounds,
    /// The predictive policy adapts its quantile (`quantile` is then where it starts).
    pub adaptive_quantile: bool,
    /// Half-life of the adaptive quantile's scores, in seconds.
    pub adaptive_half_life_seconds: i64,
    /// Scored time before the adaptive quantile takes over, in seconds.
    pub adaptive_warmup_seconds: i64,
    /// History replayed before the first scored tick, as `prescale serve` replays at startup, in seconds (at most
    /// the history before the scored window less a day).
    pub adaptive_replay_seconds: i64,
    /// The service level the predictive policy aims for: the share of demand that may go unserved.
    pub slo_max_unserved: f64,
}

/// What the predictive policy's model did over the run.
#[derive(Debug, Clone, Serialize)]
pub struct PredictiveInfo {
    /// Number of fits.
    pub fits: usize,
    /// Ticks served by each forecast method, summed over the leads.
    pub forecast_methods: BTreeMap<String, usize>,
    /// Per lead, ticks by what was served: `p90` etc. (the forecast at that quantile), `reactive` (the adaptive
    /// choice), `demoted`, or `none` (nothing to plan from).
    pub served_by: BTreeMap<String, BTreeMap<String, usize>>,
    /// Per lead, the decisions replayed on the history before the scored window (as `prescale serve` does at
    /// startup) before the first scored tick.
    pub replayed: BTreeMap<String, crate::engine::Replayed>,
    /// Per lead, the adaptive quantile's shadows at the end of the run: every candidate quantile (and the reactive
    /// target, `quantile` null) with the share of demand it left unserved over the run, through the same HPA
    /// arithmetic and cold start. Empty with `--fixed-quantile`.
    pub adaptive: BTreeMap<String, Vec<crate::service_level::CandidateScore>>,
}

/// The project's bar at one lead time: predictive unserved ≤ reactive-70's, replica-hours ≤ 1.10 × oracle.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Cold start in seconds.
    pub lead_seconds: i64,
    /// Cold start label.
    pub lead: String,
    /// Predictive's unserved fraction.
    pub predictive_unserved: f64,
    /// Reactive-70's unserved fraction.
    pub reactive70_unserved: f64,
    /// Predictive replica-hours / oracle replica-hours.
    pub replica_hours_vs_oracle: f64,
    /// `predictive_unserved <= reactive70_unserved`.
    pub unserved_ok: bool,
    /// `replica_hours_vs_oracle <= 1.10`.
    pub replica_hours_ok: bool,
}

/// A whole backtest: settings, every score of every policy at every lead time, and the bar.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Trace name (file stem).
    pub trace: String,
    /// Settings used.
    pub settings: ReportSettings,
    /// One entry per (lead, policy).
    pub runs: Vec<PolicyRun>,
    /// The predictive model's activity, when it ran.
    pub predictive: Option<PredictiveInfo>,
    /// The bar per lead time, when predictive, reactive-70 and oracle all ran.
    pub bar: Vec<Verdict>,
}

impl Report {
    pub(crate) fn new(
        trace: String,
        settings: ReportSettings,
        runs: Vec<PolicyRun>,
        predictive: Option<PredictiveInfo>,
    ) -> Self {
        let mut bar = Vec::new();
        for &lead in &settings.leads_seconds {
            let find = |p| runs.iter().find(|r| r.lead_seconds == lead && r.policy == p);
            if let (Some(pr), Some(r70), Some(or)) = (
                find(PolicyName::Predictive),
                find(PolicyName::Reactive70),
                find(PolicyName::Oracle),
            ) {
                let ratio = pr.scores.replica_hours / or.scores.replica_hours;
                bar.push(Verdict {
                    lead_seconds: lead,
                    lead: pr.lead.clone(),
                    predictive_unserved: pr.scores.unserved_fraction,
                    reactive70_unserved: r70.scores.unserved_fraction,
                    replica_hours_vs_oracle: ratio,
                    unserved_ok: pr.scores.unserved_fraction <= r70.scores.unserved_fraction,
                    replica_hours_ok: ratio <= 1.10,
                });
            }
        }
        Self {
            trace,
            settings,
            runs,
            predictive,
            bar,
        }
    }

    /// The run of `policy` at `lead_seconds`, if it was run.
    pub fn get(&self, policy: PolicyName, lead_seconds: i64) -> Option<&PolicyRun> {
        self.runs
            .iter()
            .find(|r| r.policy == policy && r.lead_seconds == lead_seconds)
    }

    /// A plain-text table of every score, one row per (lead, policy), and the bar.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "trace {}  scored from {}  {} ticks  c = {:.6} units/s per replica (p99 {:.6})",
            self.trace,
            s.scored_start.to_rfc3339_opts(SecondsFormat::Secs, true),
            s.scored_ticks,
            s.capacity_per_replica,
            s.p99_demand
        );
        let _ = writeln!(
            out,
            "{:>5}  {:<12} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "L", "policy", "unserved%", "viol.min", "viol/day", "rep.hours", "events"
        );
        for r in &self.runs {
            let sc = &r.scores;
            let _ = writeln!(
                out,
                "{:>5}  {:<12} {:>10.4} {:>10.1} {:>10.2} {:>10.1} {:>8}",
                r.lead,
                r.policy.as_str(),
                100.0 * sc.unserved_fraction,
                sc.violation_minutes,
                sc.violation_minutes_per_day,
                sc.replica_hours,
                sc.scale_events
            );
        }
        for v in &self.bar {
            let _ = writeln!(
                out,
                "bar L={}: unserved {:.4}% vs reactive-70 {:.4}% [{}]; replica-hours {:.3}× oracle [{}]",
                v.lead,
                100.0 * v.predictive_unserved,
                100.0 * v.reactive70_unserved,
                if v.unserved_ok { "ok" } else { "MISS" },
                v.replica_hours_vs_oracle,
                if v.replica_hours_ok { "ok" } else { "MISS" }
            );
        }
        if let Some(p) = &self.predictive {
            for (lead, by) in &p.served_by {
                let total: usize = by.values().sum();
                let mut parts: Vec<(&String, &usize)> = by.iter().collect();
                parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let parts: Vec<String> = parts
                    .into_iter()
                    .map(|(k, n)| format!("{k} {:.0}%", 100.0 * *n as f64 / total.max(1) as f64))
                    .collect();
                let _ = writeln!(out, "predictive L={lead} served: {}", parts.join(", "));
            }
        }
        out
    }
}

/// Writes `report.json`, `ticks/<policy>_L<lead>.csv` per run and `chart_L<lead>.svg` per lead time into `dir`.
///
/// Returns the files written.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BacktestError::Output { path, source }
    };
    let ticks_dir = dir.join("ticks");
    std::fs::create_dir_all(&ticks_dir).map_err(io(&ticks_dir))?;
    let mut written = Vec::new();
    let json_path = dir.join("report.json");
    let json = serde_json::to_string_pretty(report).expect("report serializes");
    std::fs::write(&json_path, json + "\n").map_err(io(&json_path))?;
    written.push(json_path);
    for run in &report.runs {
        let path = ticks_dir.join(format!("{}_L{}.csv", run.policy.as_str(), run.lead));
        std::fs::write(&path, ticks_csv(&run.ticks)).map_err(io(&path))?;
        written.push(path);
    }
    for &lead in &report.settings.leads_seconds {
        let runs: Vec<&PolicyRun> = report.runs.iter().filter(|r| r.lead_seconds == lead).collect();
        let Some(first) = runs.first() else { continue };
        let path = dir.join(format!("chart_L{}.svg", first.lead));
        let svg = chart::svg(&report.trace, &first.lead, report.settings.capacity_per_replica, &runs);
        std::fs::write(&path, svg).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The per-tick CSV: `t,demand,served_value,desired_replicas,ready_pods,starting_pods`; empty fields for `None`.
pub(crate) fn ticks_csv(rows: &[TickRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 48 + 64);
    out.push_str("t,demand,served_value,desired_replicas,ready_pods,starting_pods\n");
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            r.t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            opt(r.demand),
            opt(r.served_value),
            r.desired_replicas,
            r.ready_pods,
            r.starting_pods
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: i64, demand: Option<f64>, desired: u32, ready: u32, starting: u32) -> TickRow {
        TickRow {
            t: DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap(),
            demand,
            served_value: Some(1.0),
            desired_replicas: desired,
            ready_pods: ready,
            starting_pods: starting,
        }
    }

    #[test]
    fn scores_integrate_over_scored_ticks_only() {
        let rows = vec![
            row(0, Some(2.0), 2, 2, 0),  // served 2, no shortfall
            row(15, Some(5.0), 4, 2, 2), // shortfall 3 for 15 s; desired changed
            row(30, None, 4, 4, 0),      // gap: not scored
            row(45, Some(4.0), 3, 3, 0), // shortfall 1; changed
        ];
        let s = score(&rows, 1.0, 2);
        assert_eq!(s.scored_ticks, 3);
        assert_eq!(s.demand_units, 11.0 * 15.0);
        assert_eq!(s.unserved_units, 4.0 * 15.0);
        assert!((s.unserved_fraction - 4.0 / 11.0).abs() < 1e-12);
        assert_eq!(s.violation_minutes, 0.5);
        assert_eq!(s.replica_hours, (2.0 + 4.0 + 3.0) * 15.0 / 3600.0);
        assert_eq!(s.scale_events, 2);
        assert_eq!(s.violation_minutes_by_day.values().sum::<f64>(), 0.5);
        assert!((s.violation_minutes_per_day - 0.5 / (45.0 / 86_400.0)).abs() < 1e-9);
    }

    #[test]
    fn csv_leaves_missing_values_empty() {
        let mut r = row(0, None, 1, 1, 0);
        r.served_value = None;
        let csv = ticks_csv(&[r, row(15, Some(4.35), 2, 1, 1)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t,demand,served_value,desired_replicas,ready_pods,starting_pods"
        );
        assert_eq!(lines[1], "2023-11-14T22:13:20Z,,,1,1,0");
        assert_eq!(lines[2], "2023-11-14T22:13:35Z,4.35,1,2,1,1");
    }
}
