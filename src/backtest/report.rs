//! Scores, the machine-readable report (JSON), per-tick CSVs, and the terminal summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::frontier::{self, Frontier, Point};
use super::{PolicyName, TICK};

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
    /// What the predictive policy served (`p90`, `reactive@70%`, `demoted`, …); `None` for the other policies.
    pub served_by: Option<super::policies::ServedBy>,
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
    // The unserved share is summed relative to the largest demand, so that it stays a share in [0, 1] even when
    // demand sums overflow (a `1e308` sample times 15 s is +∞, and ∞ / ∞ printed as NaN).
    let largest = rows
        .iter()
        .filter_map(|r| r.demand)
        .filter(|d| d.is_finite())
        .fold(0.0f64, f64::max);
    let unit = if largest > 0.0 { largest } else { 1.0 };
    let (mut demand_share, mut unserved_share) = (0.0f64, 0.0f64);
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
        demand_share += (d / unit).min(f64::MAX) * dt;
        unserved_share += ((d - served).max(0.0) / unit).min(f64::MAX) * dt;
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
    if demand_share > 0.0 {
        s.unserved_fraction = (unserved_share / demand_share).clamp(0.0, 1.0);
    }
    let days = s.scored_ticks as f64 * dt / 86_400.0;
    if days > 0.0 {
        s.violation_minutes_per_day = s.violation_minutes / days;
    }
    s
}

/// One policy at one lead time (the predictive policy: at one SLO).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    /// The policy.
    pub policy: PolicyName,
    /// The SLO the predictive policy aimed at (the share of demand that may go unserved); `None` for the others.
    pub slo: Option<f64>,
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

impl PolicyRun {
    /// The run's name for people: the policy, and the SLO when several were run (`predictive SLO 0.1%`).
    pub fn name(&self, several_slos: bool) -> String {
        match self.slo {
            Some(slo) if several_slos => format!("{} SLO {}", self.policy, super::slo_label(slo)),
            _ => self.policy.as_str().to_owned(),
        }
    }

    /// The stem of its per-tick CSV: `predictive_L5m`, or with several SLOs `predictive_slo0.1pct_L5m` (the SLO as
    /// a percentage, `pct` for `%` so that the name needs no quoting in a shell, a URL or a format string).
    pub fn file_stem(&self, several_slos: bool) -> String {
        match self.slo {
            Some(slo) if several_slos => {
                let pct = super::slo_label(slo).replace('%', "pct");
                format!("{}_slo{pct}_L{}", self.policy, self.lead)
            }
            _ => format!("{}_L{}", self.policy, self.lead),
        }
    }
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
    /// Ticks whose sample was left out of the scores as no demand a system could serve: over 1,000 × the highest
    /// sample of the hour before and one replica's capacity (a `1e308` row); 0 on every recorded trace.
    pub unscorable_ticks: usize,
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
    pub quality: crate::control::quality::Bounds,
    /// The predictive policy adapts its quantile (`quantile` is then where it starts).
    pub adaptive_quantile: bool,
    /// Half-life of the adaptive quantile's scores, in seconds.
    pub adaptive_half_life_seconds: i64,
    /// Scored time before the adaptive quantile takes over, in seconds.
    pub adaptive_warmup_seconds: i64,
    /// History replayed before the first scored tick, as `prescale serve` replays at startup, in seconds (at most
    /// the history before the scored window less a day).
    pub adaptive_replay_seconds: i64,
    /// The configured service level (`--trace`: 1%; `--config`: the workload's `serviceLevel.maxUnserved`): the SLO
    /// the predictive policy runs at when `--slo` is not given.
    pub slo_max_unserved: f64,
    /// The SLOs the predictive policy was run at, ascending: `--slo`, else `[slo_max_unserved]`.
    pub slos: Vec<f64>,
}

/// What the predictive policy's model did over the run. Its maps are keyed by SLO label (`0.1%`), then lead (`5m`).
#[derive(Debug, Clone, Serialize)]
pub struct PredictiveInfo {
    /// Number of fits (each serves every SLO and lead).
    pub fits: usize,
    /// Ticks served by each forecast method, summed over the SLOs and leads.
    pub forecast_methods: BTreeMap<String, usize>,
    /// Per SLO and lead, ticks by what was served: `p90` etc. (the forecast at that quantile), `reactive@70%` etc.
    /// (the adaptive choice of a reactive target), `demoted`, or `none` (nothing to plan from).
    pub served_by: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>>,
    /// Per SLO and lead, the decisions replayed on the history before the scored window (as `prescale serve` does
    /// at startup) before the first scored tick.
    pub replayed: BTreeMap<String, BTreeMap<String, crate::control::engine::Replayed>>,
    /// Per SLO and lead, the service-level controller's shadows at the end of the run: every candidate quantile and
    /// reactive target with the share of demand it left unserved, through the same HPA arithmetic and cold start.
    /// Empty with `--fixed-quantile`.
    pub adaptive: BTreeMap<String, BTreeMap<String, Vec<crate::control::service_level::CandidateScore>>>,
}

/// The predictive policy at one (SLO, lead): what it realised, against the reactive frontier, reactive-70, the
/// oracle and hpa-oracle, and the bar (definitions in [`super::frontier`]).
#[derive(Debug, Clone, Serialize)]
pub struct SloResult {
    /// The SLO: the share of demand that may go unserved.
    pub slo: f64,
    /// The SLO as people write it (`0.1%`).
    pub slo_label: String,
    /// Cold start in seconds.
    pub lead_seconds: i64,
    /// Cold start label.
    pub lead: String,
    /// The predictive policy's realised unserved share.
    pub unserved_fraction: f64,
    /// Its replica-hours.
    pub replica_hours: f64,
    /// Reactive-70's scores, when it ran (context).
    pub reactive70: Option<Point>,
    /// The oracle's replica-hours, when it ran.
    pub oracle_replica_hours: Option<f64>,
    /// hpa-oracle's replica-hours, when it ran.
    pub hpa_oracle_replica_hours: Option<f64>,
    /// SLO met, the frontier at the SLO and at equal service, foresight captured, savings, the bar.
    #[serde(flatten)]
    pub assessment: frontier::Assessment,
    /// Ticks by what the predictive policy served (as [`PredictiveInfo::served_by`]).
    pub served_by: BTreeMap<String, usize>,
}

/// A whole backtest: settings, every score of every policy at every lead time, the reactive frontier, and the
/// predictive policy's results per SLO and lead.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Trace name (file stem).
    pub trace: String,
    /// Settings used.
    pub settings: ReportSettings,
    /// One entry per (lead, policy), and per SLO for the predictive policy.
    pub runs: Vec<PolicyRun>,
    /// The reactive frontier per lead (when a reactive policy or the predictive one ran).
    pub frontier: Vec<Frontier>,
    /// The predictive model's activity, when it ran.
    pub predictive: Option<PredictiveInfo>,
    /// Per (SLO, lead), SLO-major: the predictive policy's result and the bar (when it and the frontier ran).
    pub slo_results: Vec<SloResult>,
}

impl Report {
    pub(crate) fn new(
        trace: String,
        settings: ReportSettings,
        runs: Vec<PolicyRun>,
        frontier: Vec<Frontier>,
        predictive: Option<PredictiveInfo>,
    ) -> Self {
        let mut slo_results = Vec::new();
        for &slo in &settings.slos {
            for f in &frontier {
                let find = |p| runs.iter().find(|r| r.lead_seconds == f.lead_seconds && r.policy == p);
                let Some(pr) = runs.iter().find(|r| {
                    r.lead_seconds == f.lead_seconds && r.policy == PolicyName::Predictive && r.slo == Some(slo)
                }) else {
                    continue;
                };
                let point = |r: &PolicyRun| Point {
                    unserved_fraction: r.scores.unserved_fraction,
                    replica_hours: r.scores.replica_hours,
                };
                let reactive70 = find(PolicyName::Reactive70).map(point);
                let oracle = find(PolicyName::Oracle).map(|r| r.scores.replica_hours);
                let hpa_oracle = find(PolicyName::HpaOracle).map(|r| r.scores.replica_hours);
                let slo_label = super::slo_label(slo);
                slo_results.push(SloResult {
                    slo,
                    lead_seconds: f.lead_seconds,
                    lead: f.lead.clone(),
                    unserved_fraction: pr.scores.unserved_fraction,
                    replica_hours: pr.scores.replica_hours,
                    reactive70,
                    oracle_replica_hours: oracle,
                    hpa_oracle_replica_hours: hpa_oracle,
                    assessment: frontier::assess(slo, point(pr), &f.points, reactive70, oracle, hpa_oracle),
                    served_by: predictive
                        .as_ref()
                        .and_then(|p| p.served_by.get(&slo_label)?.get(&f.lead).cloned())
                        .unwrap_or_default(),
                    slo_label,
                });
            }
        }
        Self {
            trace,
            settings,
            runs,
            frontier,
            predictive,
            slo_results,
        }
    }

    /// The run of `policy` at `lead_seconds`, if it was run (the predictive policy: at the lowest SLO).
    pub fn get(&self, policy: PolicyName, lead_seconds: i64) -> Option<&PolicyRun> {
        self.runs
            .iter()
            .find(|r| r.policy == policy && r.lead_seconds == lead_seconds)
    }

    /// The predictive run at `slo` and `lead_seconds`, if it was run.
    pub fn predictive(&self, slo: f64, lead_seconds: i64) -> Option<&PolicyRun> {
        self.runs
            .iter()
            .find(|r| r.policy == PolicyName::Predictive && r.lead_seconds == lead_seconds && r.slo == Some(slo))
    }

    /// The reactive frontier at `lead_seconds`, if it was run.
    pub fn frontier_at(&self, lead_seconds: i64) -> Option<&Frontier> {
        self.frontier.iter().find(|f| f.lead_seconds == lead_seconds)
    }

    /// The predictive result at `slo` and `lead_seconds`, if there is one.
    pub fn result(&self, slo: f64, lead_seconds: i64) -> Option<&SloResult> {
        self.slo_results
            .iter()
            .find(|r| r.slo == slo && r.lead_seconds == lead_seconds)
    }

    /// True when the predictive policy ran at more than one SLO (names and files then carry the SLO).
    pub fn several_slos(&self) -> bool {
        self.settings.slos.len() > 1
    }

    /// A plain-text table of every score, one row per (lead, policy), the reactive frontier per lead, and one line
    /// per (SLO, lead) with the predictive policy's result and the bar.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let several = self.several_slos();
        let _ = writeln!(
            out,
            "trace {}  scored from {}  {} ticks  c = {:.6} units/s per replica (p99 {:.6})",
            self.trace,
            s.scored_start.to_rfc3339_opts(SecondsFormat::Secs, true),
            s.scored_ticks,
            s.capacity_per_replica,
            s.p99_demand
        );
        if s.unscorable_ticks > 0 {
            let _ = writeln!(
                out,
                "warning: {} ticks left out of the scores: their demand is over 1,000 times the hour before it, no \
                 demand a system could serve (a scrape glitch or a corrupt row: fix the trace)",
                s.unscorable_ticks
            );
        }
        let width = self
            .runs
            .iter()
            .map(|r| r.name(several).len())
            .max()
            .unwrap_or(0)
            .max(12);
        let _ = writeln!(
            out,
            "{:>5}  {:<width$} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "L", "policy", "unserved%", "viol.min", "viol/day", "rep.hours", "events"
        );
        for r in &self.runs {
            let sc = &r.scores;
            let _ = writeln!(
                out,
                "{:>5}  {:<width$} {:>10.4} {:>10.1} {:>10.2} {:>10.1} {:>8}",
                r.lead,
                r.name(several),
                100.0 * sc.unserved_fraction,
                sc.violation_minutes,
                sc.violation_minutes_per_day,
                sc.replica_hours,
                sc.scale_events
            );
        }
        for f in &self.frontier {
            let _ = writeln!(out, "reactive frontier L={} (the HPA at target u·c):", f.lead);
            let mut rows = [
                format!("{:>11}", "u"),
                format!("{:>11}", "unserved%"),
                format!("{:>11}", "rep.hours"),
            ];
            for p in &f.points {
                let _ = write!(rows[0], " {:>8}", format!("{:.0}%", 100.0 * p.utilization));
                let _ = write!(rows[1], " {:>8.4}", 100.0 * p.unserved_fraction);
                let _ = write!(rows[2], " {:>8}", hours(p.replica_hours));
            }
            for row in rows {
                let _ = writeln!(out, "{row}");
            }
        }
        for r in &self.slo_results {
            let _ = writeln!(out, "{}", result_line(r));
        }
        for r in &self.slo_results {
            let total: usize = r.served_by.values().sum();
            let mut parts: Vec<(&String, &usize)> = r.served_by.iter().collect();
            parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let parts: Vec<String> = parts
                .into_iter()
                .map(|(k, n)| format!("{k} {:.0}%", 100.0 * *n as f64 / total.max(1) as f64))
                .collect();
            let _ = writeln!(
                out,
                "predictive SLO {} L={} served: {}",
                r.slo_label,
                r.lead,
                parts.join(", ")
            );
        }
        out
    }
}

/// Replica-hours in at most 8 characters.
fn hours(h: f64) -> String {
    if h >= 1000.0 {
        format!("{h:.0}")
    } else {
        format!("{h:.1}")
    }
}

/// A share as a signed percentage: `+12.3%`.
fn signed_pct(v: f64) -> String {
    format!("{:+.1}%", 100.0 * v)
}

/// One line per (SLO, lead): realised vs SLO, savings at equal service, foresight captured, vs reactive-70, the bar.
fn result_line(r: &SloResult) -> String {
    let a = &r.assessment;
    let mut line = format!(
        "SLO {} L={}: unserved {:.4}% [{}]",
        r.slo_label,
        r.lead,
        100.0 * r.unserved_fraction,
        if a.slo_met { "met" } else { "MISS" }
    );
    match &a.reactive_at_slo {
        Some(h) => {
            let _ = write!(
                line,
                " (cheapest HPA within it: reactive@{:.0}%, {} rep.h)",
                100.0 * h.utilization,
                hours(h.replica_hours)
            );
        }
        None => line.push_str(" (no HPA target meets it either)"),
    }
    match (&a.equal_service, a.equal_service_savings) {
        (Some(e), Some(v)) => {
            let [lo, hi] = e.utilizations;
            let at = if lo == hi {
                format!("reactive@{:.0}%", 100.0 * lo)
            } else {
                format!("reactive@{:.0}–{:.0}%", 100.0 * lo, 100.0 * hi)
            };
            let _ = write!(
                line,
                "; savings {} {} ({at}, {} rep.h)",
                signed_pct(v),
                e.position.describe(),
                hours(e.replica_hours)
            );
        }
        _ => line.push_str("; savings at equal service n/a"),
    }
    match a.foresight_captured {
        Some(f) => {
            let _ = write!(line, "; foresight captured {f:.2}");
        }
        None => line.push_str("; foresight captured n/a"),
    }
    if let (Some(v), Some(r70)) = (a.savings_vs_reactive70, r.reactive70) {
        let _ = write!(
            line,
            "; vs reactive-70 {} rep.h saved (unserved {:.4}% vs {:.4}%)",
            signed_pct(v),
            100.0 * r.unserved_fraction,
            100.0 * r70.unserved_fraction
        );
    }
    if let Some(x) = a.replica_hours_vs_oracle {
        let _ = write!(line, "; {x:.3}× oracle");
    }
    let verdict = match (a.bar.passed, a.bar.slo_ok, a.bar.savings_ok) {
        (true, _, _) => "ok",
        (false, false, _) => "MISS (SLO)",
        (false, true, Some(false)) => "MISS (savings)",
        _ => "undecided (outside the frontier)",
    };
    let _ = write!(line, "; bar {verdict}");
    line
}

/// The per-tick CSV: `t,demand,served_value,desired_replicas,ready_pods,starting_pods,served_by`; empty fields for
/// `None`.
pub(crate) fn ticks_csv(rows: &[TickRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 48 + 64);
    out.push_str("t,demand,served_value,desired_replicas,ready_pods,starting_pods,served_by\n");
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            r.t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            opt(r.demand),
            opt(r.served_value),
            r.desired_replicas,
            r.ready_pods,
            r.starting_pods,
            r.served_by.map(|s| s.to_string()).unwrap_or_default()
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
            served_by: None,
        }
    }

    #[test]
    fn an_overflowing_demand_sum_still_gives_a_share() {
        let row = |k: i64, demand: f64| TickRow {
            t: DateTime::from_timestamp(1_800_000_000 + 15 * k, 0).unwrap(),
            demand: Some(demand),
            served_value: Some(10.0),
            desired_replicas: 10,
            ready_pods: 10,
            starting_pods: 0,
            served_by: None,
        };
        // 1e308 × 15 s is +∞: the share was ∞ / ∞ = NaN.
        let rows = [row(0, 1000.0), row(1, 1e308), row(2, 1e308), row(3, 1000.0)];
        let s = score(&rows, 110.0, 10);
        assert!(s.unserved_fraction.is_finite(), "{}", s.unserved_fraction);
        assert!((s.unserved_fraction - 1.0).abs() < 1e-9, "{}", s.unserved_fraction);
        let rows = [row(0, 1000.0), row(1, 1200.0)];
        let s = score(&rows, 110.0, 10);
        assert!((s.unserved_fraction - 100.0 / 2200.0).abs() < 1e-12);
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
    fn predictive_runs_carry_their_slo_in_names_only_when_there_are_several() {
        let run = PolicyRun {
            policy: PolicyName::Predictive,
            slo: Some(0.001),
            lead_seconds: 300,
            lead: "5m".into(),
            scores: score(&[row(0, Some(1.0), 1, 1, 0)], 1.0, 1),
            ticks: Vec::new(),
        };
        assert_eq!(run.file_stem(false), "predictive_L5m");
        assert_eq!(run.file_stem(true), "predictive_slo0.1pct_L5m");
        assert_eq!(
            (run.name(false).as_str(), run.name(true).as_str()),
            ("predictive", "predictive SLO 0.1%")
        );
        let other = PolicyRun {
            policy: PolicyName::Reactive70,
            slo: None,
            ..run
        };
        assert_eq!(
            (other.file_stem(true).as_str(), other.name(true).as_str()),
            ("reactive-70_L5m", "reactive-70")
        );
    }

    #[test]
    fn the_result_line_says_where_the_comparison_stands() {
        use crate::backtest::frontier::{assess, FrontierPoint};
        let frontier: Vec<FrontierPoint> = [(0.5, 0.001, 200.0), (0.7, 0.01, 150.0), (1.0, 0.1, 100.0)]
            .into_iter()
            .map(|(u, s, rh)| FrontierPoint {
                utilization: u,
                target_milli: 0,
                unserved_fraction: s,
                replica_hours: rh,
                violation_minutes_per_day: 0.0,
                scale_events: 0,
            })
            .collect();
        let result = |x: f64, rh: f64| {
            let p = Point {
                unserved_fraction: x,
                replica_hours: rh,
            };
            let r70 = Point {
                unserved_fraction: 0.01,
                replica_hours: 150.0,
            };
            SloResult {
                slo: 0.001,
                slo_label: "0.1%".into(),
                lead_seconds: 300,
                lead: "5m".into(),
                unserved_fraction: x,
                replica_hours: rh,
                reactive70: Some(r70),
                oracle_replica_hours: Some(100.0),
                hpa_oracle_replica_hours: Some(105.0),
                assessment: assess(0.001, p, &frontier, Some(r70), Some(100.0), Some(105.0)),
                served_by: BTreeMap::new(),
            }
        };
        // Inside, halfway in log between 0.1% and 1%: 175 rh, so 140 saves 20% and covers (175 − 140) / (175 − 105)
        // = 0.5 of the way down to hpa-oracle.
        let line = result_line(&result(10f64.powf(-2.5), 140.0));
        assert!(line.starts_with("SLO 0.1% L=5m: unserved 0.3162% [MISS]"), "{line}");
        assert!(
            line.contains("cheapest HPA within it: reactive@50%, 200.0 rep.h"),
            "{line}"
        );
        assert!(
            line.contains("savings +20.0% at equal service (reactive@50–70%, 175.0 rep.h)"),
            "{line}"
        );
        assert!(line.contains("foresight captured 0.50"), "{line}");
        assert!(
            line.contains("vs reactive-70 +6.7% rep.h saved (unserved 0.3162% vs 1.0000%)"),
            "{line}"
        );
        assert!(
            line.contains("1.400× oracle") && line.ends_with("bar MISS (SLO)"),
            "{line}"
        );
        // Below the frontier and dearer than its end: undecided, and said so.
        let line = result_line(&result(0.0005, 210.0));
        assert!(
            line.contains("[met]") && line.contains("outside the frontier (less unserved"),
            "{line}"
        );
        assert!(line.ends_with("bar undecided (outside the frontier)"), "{line}");
        let line = result_line(&result(0.0005, 190.0));
        assert!(
            line.contains("savings +5.0% outside the frontier") && line.ends_with("bar ok"),
            "{line}"
        );
    }

    #[test]
    fn csv_leaves_missing_values_empty() {
        let mut r = row(0, None, 1, 1, 0);
        r.served_value = None;
        let mut predictive = row(30, Some(5.0), 2, 2, 0);
        predictive.served_by = Some(super::super::policies::ServedBy::Reactive(45));
        let csv = ticks_csv(&[r, row(15, Some(4.35), 2, 1, 1), predictive]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t,demand,served_value,desired_replicas,ready_pods,starting_pods,served_by"
        );
        assert_eq!(lines[1], "2023-11-14T22:13:20Z,,,1,1,0,");
        assert_eq!(lines[2], "2023-11-14T22:13:35Z,4.35,1,2,1,1,");
        assert_eq!(lines[3], "2023-11-14T22:13:50Z,5,1,2,2,0,reactive@45%");
    }
}
