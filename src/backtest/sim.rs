//! The replay loop: ticks, the HPA and pod model per policy and lead time, the oracle, and scoring.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use chrono::{DateTime, TimeDelta, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::frontier::{Frontier, FrontierPoint};
use super::policies::{self, PredictiveSetup, Visible};
use super::report::{self, PolicyRun, PredictiveInfo, Report, ReportSettings, TickRow};
use super::{BacktestError, PolicyName, Settings, LAG, MAX_REPLICAS, MIN_REPLICAS, P99_REPLICAS, TICK};
use crate::control::policy::ServiceLevel;
use crate::control::policy::{Policy, Replicas, ScaleIn};
use crate::control::service_level::UTILIZATIONS;
use crate::forecast::Seasonality;
use crate::k8s::hpa::{self, Hpa, HpaSpec, MetricTarget, Pods, ScaleStatus};
use crate::series::{percentile, Series};

/// How many times the live glitch limit a sample must exceed to be left out of the scores: 100 × the limit is
/// 1,000 × the hour before it (and a replica's capacity). The largest real jump in the recorded traces is 58 × the
/// hour before (a news spike in twitter_mentions_aapl_2015), scored like any demand.
pub const UNSCORABLE: f64 = 100.0;

/// Traces at least this long use a fixed warm-up of the same length.
const LONG_TRACE: TimeDelta = TimeDelta::days(7);
/// Shortest warm-up of a short trace.
const MIN_WARM_UP: TimeDelta = TimeDelta::minutes(10);

/// Replays `trace` (named `name` in the report) through every selected policy at every lead time (the predictive
/// one at every SLO), runs the reactive frontier, and scores them.
pub fn run(trace: &Series, name: &str, settings: &Settings) -> Result<Report, BacktestError> {
    validate(settings)?;
    let slos = settings.slos();
    let (history, scored_start) = scored_window(trace, name)?;
    let end = trace.end();
    let ticks: Vec<DateTime<Utc>> = (0..)
        .map(|k| scored_start + TICK * k)
        .take_while(|t| *t < end)
        .collect();
    let demand: Vec<Option<f64>> = ticks
        .iter()
        .map(|&t| trace.slot_of(t).and_then(|i| trace.get(i)))
        .collect();
    let mut present: Vec<f64> = demand.iter().flatten().copied().collect();
    if present.is_empty() {
        let detail = "the scored window holds no samples".to_owned();
        return Err(BacktestError::NoDemand {
            trace: name.into(),
            detail,
        });
    }
    present.sort_by(f64::total_cmp);
    let p99 = percentile(&present, 0.99);
    let capacity = settings.capacity.unwrap_or(p99 / P99_REPLICAS);
    if !(capacity.is_finite() && capacity > 0.0) {
        let detail = format!("p99 of scored demand is {p99}, so capacity per replica would be {capacity}");
        return Err(BacktestError::NoDemand {
            trace: name.into(),
            detail,
        });
    }

    // Every sample is demand to score against (the protocol leaves out gaps only), glitches the live controller
    // delays included, except one no system could be serving: past UNSCORABLE times the live glitch limit
    // (`planner::glitch_limit`). One `1e308` would otherwise be all of the trace's demand, and every policy would
    // leave it all unserved. Such samples are counted in the report.
    let mut unscorable = 0;
    let ceiling = capacity * f64::from(MAX_REPLICAS);
    let demand: Vec<Option<f64>> = ticks
        .iter()
        .zip(demand)
        .map(|(&t, d)| {
            let i = trace.slot_of(t)?;
            let limit = crate::control::planner::glitch_limit(trace, i, ceiling).map(|l| l * UNSCORABLE);
            match d {
                Some(v) if limit.is_some_and(|l| v > l) => {
                    unscorable += 1;
                    None
                }
                d => d,
            }
        })
        .collect();

    let visible = Visible::new(trace);
    let wants = |p| settings.policies.contains(&p);
    // The reactive frontier runs beside any reactive policy or the predictive one.
    let frontier_wanted = wants(PolicyName::Reactive) || wants(PolicyName::Reactive70) || wants(PolicyName::Predictive);
    let predictive_runs = if wants(PolicyName::Predictive) { slos.len() } else { 0 };
    let runs_total = settings.leads.len()
        * (settings.policies.len()
            + predictive_runs.saturating_sub(1)
            + if frontier_wanted { UTILIZATIONS.len() } else { 0 });
    let bar = progress_bar(settings.progress);
    let reactive = frontier_wanted.then(|| policies::reactive(&visible, &ticks));
    let planner_policies: Vec<Policy> = settings
        .leads
        .iter()
        .map(|&lead| Policy {
            capacity_per_replica: capacity,
            lead,
            sync: TICK,
            quantile: settings.quantile,
            replicas: backtest_replicas(),
            scale_in: settings.scale_in,
            fallback_utilization: settings.fallback_utilization,
            downscale_stabilization: crate::control::policy::DOWNSCALE_STABILIZATION,
            adaptive: settings.adaptive,
        })
        .collect();
    // One engine per (lead, SLO), lead-major. With the quantile fixed the SLO steers nothing, so one engine per lead
    // serves every SLO.
    let engine_slos = if settings.adaptive.enabled { slos.len() } else { 1 };
    let engine_of = |l: usize, s: usize| l * engine_slos + s.min(engine_slos - 1);
    let engine_policies: Vec<Policy> = planner_policies
        .iter()
        .flat_map(|p| {
            slos[..engine_slos].iter().map(|&slo| Policy {
                adaptive: crate::control::policy::Adaptive {
                    slo: ServiceLevel {
                        max_unserved: slo,
                        ..settings.adaptive.slo
                    },
                    ..p.adaptive
                },
                ..p.clone()
            })
        })
        .collect();
    let predictive = wants(PolicyName::Predictive).then(|| {
        // The predictive pass is where the time goes: a phase of its own, so that its ETA is not spread over the
        // simulated runs, which take seconds.
        bar.set_length(ticks.len() as u64);
        bar.set_message("predictive: warming up");
        let setup = PredictiveSetup {
            policies: &engine_policies,
            seasonality: Seasonality::Auto,
            refit_interval: settings.refit_interval,
            quality: settings.quality,
        };
        policies::predictive(&visible, &ticks, &setup, &bar)
    });

    let reactive_target = milli_of(capacity, "capacity per replica")?;
    let reactive70_target = milli_of(0.7 * capacity, "0.7 × capacity per replica")?;
    bar.set_length((ticks.len() * runs_total) as u64);
    bar.set_position(0);
    bar.reset_eta();
    let mut runs = Vec::new();
    let mut frontiers = Vec::new();
    for (l, &lead) in settings.leads.iter().enumerate() {
        for policy in PolicyName::ALL.into_iter().filter(|p| wants(*p)) {
            let at_slos: Vec<Option<f64>> = if policy == PolicyName::Predictive {
                slos.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            for (s, slo) in at_slos.into_iter().enumerate() {
                let label = slo.map_or(String::new(), |v| format!(" SLO {}", super::slo_label(v)));
                bar.set_message(format!("{policy}{label} L={}", super::lead_label(lead)));
                let (rows, initial) = match policy {
                    PolicyName::Oracle => oracle(&ticks, &demand, capacity, lead),
                    PolicyName::HpaOracle => {
                        let served = hpa_oracle(&demand, &planner_policies[l]);
                        simulate_hpa(&ticks, &demand, &served, 1000, lead)?
                    }
                    PolicyName::Reactive | PolicyName::Reactive70 => {
                        let target = if policy == PolicyName::Reactive {
                            reactive_target
                        } else {
                            reactive70_target
                        };
                        let served = reactive
                            .as_deref()
                            .expect("computed when a reactive policy is selected");
                        simulate_hpa(&ticks, &demand, served, target, lead)?
                    }
                    PolicyName::Predictive => {
                        let p = predictive.as_ref().expect("computed when selected");
                        let e = engine_of(l, s);
                        let (mut rows, initial) = simulate_hpa(&ticks, &demand, &p.served[e], 1000, lead)?;
                        for (row, by) in rows.iter_mut().zip(&p.served_by[e]) {
                            row.served_by = Some(*by);
                        }
                        (rows, initial)
                    }
                };
                let scores = report::score(&rows, capacity, initial);
                runs.push(PolicyRun {
                    policy,
                    slo,
                    lead_seconds: lead.num_seconds(),
                    lead: super::lead_label(lead),
                    scores,
                    ticks: rows,
                });
                bar.inc(ticks.len() as u64);
            }
        }
        if let Some(served) = reactive.as_deref() {
            bar.set_message(format!("reactive frontier L={}", super::lead_label(lead)));
            let mut points = Vec::with_capacity(UTILIZATIONS.len());
            for u in UTILIZATIONS {
                // `u·c` exactly as reactive (u = 1) and reactive-70 (u = 0.7) compute their targets.
                let target = milli_of(u * capacity, "utilization × capacity per replica")?;
                let (rows, initial) = simulate_hpa(&ticks, &demand, served, target, lead)?;
                let scores = report::score(&rows, capacity, initial);
                points.push(FrontierPoint {
                    utilization: u,
                    target_milli: target,
                    unserved_fraction: scores.unserved_fraction,
                    replica_hours: scores.replica_hours,
                    violation_minutes_per_day: scores.violation_minutes_per_day,
                    scale_events: scores.scale_events,
                });
                bar.inc(ticks.len() as u64);
            }
            frontiers.push(Frontier {
                lead_seconds: lead.num_seconds(),
                lead: super::lead_label(lead),
                points,
            });
        }
    }
    bar.finish_and_clear();

    let scored_ticks = demand.iter().filter(|d| d.is_some()).count();
    let settings_out = ReportSettings {
        tick_seconds: TICK.num_seconds(),
        lag_seconds: LAG.num_seconds(),
        trace_start: trace.start(),
        trace_end: end,
        trace_step_seconds: trace.step().num_milliseconds() as f64 / 1000.0,
        history_seconds: history.num_milliseconds() as f64 / 1000.0,
        scored_start,
        ticks: ticks.len(),
        scored_ticks,
        unscorable_ticks: unscorable,
        p99_demand: p99,
        capacity_per_replica: capacity,
        min_replicas: MIN_REPLICAS,
        max_replicas: MAX_REPLICAS,
        tolerance: hpa::DEFAULT_TOLERANCE,
        downscale_stabilization_seconds: hpa::DEFAULT_DOWNSCALE_STABILIZATION.num_seconds(),
        reactive_target_milli: reactive_target,
        reactive70_target_milli: reactive70_target,
        predictive_target_milli: 1000,
        quantile: settings.quantile.get(),
        refit_interval_seconds: settings.refit_interval.num_seconds(),
        leads_seconds: settings.leads.iter().map(|l| l.num_seconds()).collect(),
        policies: PolicyName::ALL.into_iter().filter(|p| wants(*p)).collect(),
        scale_in_on_observed_only: settings.scale_in == ScaleIn::Observed,
        fallback_utilization: settings.fallback_utilization.get(),
        quality: settings.quality,
        adaptive_quantile: settings.adaptive.enabled,
        adaptive_half_life_seconds: settings.adaptive.half_life.num_seconds(),
        adaptive_warmup_seconds: settings.adaptive.warmup.num_seconds(),
        adaptive_replay_seconds: settings.adaptive.replay.num_seconds(),
        slo_max_unserved: settings.adaptive.slo.max_unserved,
        slos: slos.clone(),
    };
    let predictive = predictive.map(|p| PredictiveInfo {
        fits: p.fits,
        forecast_methods: p.methods.clone(),
        served_by: per_slo_and_lead(&slos, &settings.leads, engine_of, |e| {
            let mut by = BTreeMap::new();
            for what in &p.served_by[e] {
                *by.entry(what.to_string()).or_insert(0) += 1;
            }
            Some(by)
        }),
        replayed: per_slo_and_lead(&slos, &settings.leads, engine_of, |e| Some(p.replayed[e])),
        adaptive: per_slo_and_lead(&slos, &settings.leads, engine_of, |e| {
            p.adaptive[e].as_ref().map(|a| a.candidates.clone())
        }),
    });
    Ok(Report::new(name.to_owned(), settings_out, runs, frontiers, predictive))
}

/// `{SLO label: {lead label: f(engine)}}` for every SLO and lead whose engine has something to say (an SLO with
/// nothing at any lead is left out).
fn per_slo_and_lead<T>(
    slos: &[f64],
    leads: &[TimeDelta],
    engine_of: impl Fn(usize, usize) -> usize,
    f: impl Fn(usize) -> Option<T>,
) -> BTreeMap<String, BTreeMap<String, T>> {
    slos.iter()
        .enumerate()
        .map(|(s, &slo)| {
            let by_lead = leads
                .iter()
                .enumerate()
                .filter_map(|(l, &lead)| Some((super::lead_label(lead), f(engine_of(l, s))?)))
                .collect::<BTreeMap<_, _>>();
            (super::slo_label(slo), by_lead)
        })
        .filter(|(_, by_lead)| !by_lead.is_empty())
        .collect()
}

fn validate(settings: &Settings) -> Result<(), BacktestError> {
    let err = |field, problem: String| Err(BacktestError::Setting { field, problem });
    if settings.leads.is_empty() {
        return err("--lead", "give at least one lead time, e.g. --lead 5m".into());
    }
    for lead in &settings.leads {
        if *lead < TimeDelta::zero() || lead.num_milliseconds() % TICK.num_milliseconds() != 0 {
            let problem = format!(
                "{} is not a non-negative multiple of the 15 s tick; use e.g. 2m, 5m, 10m",
                lead
            );
            return err("--lead", problem);
        }
    }
    if settings.refit_interval <= TimeDelta::zero() {
        return err("--refit", "the refit interval must be positive, e.g. 1h".into());
    }
    if settings.policies.is_empty() {
        return err(
            "--policies",
            "select at least one of reactive, reactive-70, predictive, oracle".into(),
        );
    }
    for &slo in &settings.slos {
        if !(ServiceLevel::MIN_UNSERVED..=ServiceLevel::MAX_UNSERVED).contains(&slo) {
            return err(
                "--slo",
                format!(
                    "{slo} is not a share of demand between 0.001% and 50%; write it as a percentage, e.g. --slo 0.1%"
                ),
            );
        }
    }
    if let Some(c) = settings.capacity {
        if !(c.is_finite() && c > 0.0) {
            return err(
                "capacityPerReplica",
                format!(
                    "capacity per replica must be a positive number, got {c}; fix the workload's capacityPerReplica"
                ),
            );
        }
    }
    Ok(())
}

/// The warm-up length and the start of the scored window: 7 days of history for traces of 7 days or more, else
/// 25% of the trace and at least 10 minutes.
pub(crate) fn scored_window(trace: &Series, name: &str) -> Result<(TimeDelta, DateTime<Utc>), BacktestError> {
    let duration = trace.end() - trace.start();
    let history = if duration >= LONG_TRACE {
        LONG_TRACE
    } else {
        (duration / 4).max(MIN_WARM_UP)
    };
    let start = trace.start() + history;
    if start >= trace.end() {
        let fix = if duration >= LONG_TRACE {
            "a trace of 7 days or more keeps its first 7 days as history; use one longer than 7 days"
        } else {
            "use a trace longer than 10 minutes"
        };
        let detail = format!(
            "it spans {} s, and the warm-up of {} s leaves nothing to score; {fix}",
            duration.num_seconds(),
            history.num_seconds()
        );
        return Err(BacktestError::TooShort {
            trace: name.into(),
            detail,
        });
    }
    Ok((history, start))
}

/// The protocol's replica bounds as the planner's type.
fn backtest_replicas() -> Replicas {
    Replicas::new(i64::from(MIN_REPLICAS), i64::from(MAX_REPLICAS)).expect("the protocol's bounds are in order")
}

pub(crate) use crate::k8s::quantity::served_milli;

fn milli_of(v: f64, what: &'static str) -> Result<i64, BacktestError> {
    match served_milli(v) {
        Some(m) if m > 0 => Ok(m),
        _ => Err(BacktestError::Setting {
            field: "capacityPerReplica",
            problem: format!(
                "{what} {v} cannot be written as an HPA target (a Kubernetes quantity of 0.001 to about 9.2e15); \
                 with --trace the capacity is p99(demand) / 20, so rescale the trace's values; with --config change \
                 the workload's capacityPerReplica"
            ),
        }),
    }
}

/// Replays served values through the HPA (AverageValue `target_milli`, legacy path) and the pod model.
///
/// Returns the rows and the starting replica count.
fn simulate_hpa(
    ticks: &[DateTime<Utc>],
    demand: &[Option<f64>],
    served: &[Option<f64>],
    target_milli: i64,
    lead: TimeDelta,
) -> Result<(Vec<TickRow>, u32), BacktestError> {
    let (min, max) = (MIN_REPLICAS as i32, MAX_REPLICAS as i32);
    let mut hpa = Hpa::new(HpaSpec::external(MetricTarget::AverageValue(target_milli), min, max))?;
    let t0 = ticks[0];
    let initial = match served[0].and_then(served_milli) {
        Some(u) => (u as f64 / target_milli as f64)
            .ceil()
            .clamp(f64::from(min), f64::from(max)) as i32,
        None => min,
    };
    hpa.record_initial(initial, t0);
    let mut pods = Pods::ready_at(initial as usize, lead, t0);
    let mut rows = Vec::with_capacity(ticks.len());
    for (k, &t) in ticks.iter().enumerate() {
        let n = pods.len() as i32;
        let status = ScaleStatus {
            spec_replicas: n,
            status_replicas: n,
            ready_pods: pods.ready(t) as i32,
        };
        let decision = hpa.reconcile(t, status, &[served[k].and_then(served_milli)]);
        let desired = decision.desired_replicas.max(0);
        pods.scale_to(desired as usize, t);
        rows.push(TickRow {
            t,
            demand: demand[k],
            served_value: served[k],
            desired_replicas: desired as u32,
            ready_pods: pods.ready(t) as u32,
            starting_pods: pods.starting(t) as u32,
            served_by: None,
        });
    }
    Ok((rows, initial as u32))
}

/// Perfect foresight: pods for `clamp(ceil(demand / c), 1, 40)` exist from `L` before each tick that needs them and
/// go as soon as no tick within the next `L` needs them. Pods alive at the first tick are ready.
fn oracle(ticks: &[DateTime<Utc>], demand: &[Option<f64>], capacity: f64, lead: TimeDelta) -> (Vec<TickRow>, u32) {
    let (min, max) = (f64::from(MIN_REPLICAS), f64::from(MAX_REPLICAS));
    let need: Vec<u32> = demand
        .iter()
        .map(|d| d.map_or(min, |d| (d / capacity).ceil().clamp(min, max)) as u32)
        .collect();
    let j = (lead.num_milliseconds() / TICK.num_milliseconds()) as usize;
    let n = ticks.len();
    // Pods alive at tick k: everything needed at ticks k..=k+j (a pod for tick k+j is created at its tick − L).
    let alive: Vec<u32> = (0..n)
        .map(|k| {
            (k..=k + j)
                .map(|i| need.get(i).copied().unwrap_or(MIN_REPLICAS))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rows = (0..n)
        .map(|k| {
            // Ready = pods alive continuously since t − L.
            let ready = alive[k.saturating_sub(j)..=k].iter().copied().min().unwrap_or(0);
            TickRow {
                t: ticks[k],
                demand: demand[k],
                served_value: None,
                desired_replicas: alive[k],
                ready_pods: ready,
                starting_pods: alive[k] - ready,
                served_by: None,
            }
        })
        .collect();
    (rows, alive.first().copied().unwrap_or(MIN_REPLICAS))
}

/// Perfect foresight through the HPA: at each tick, the replicas for the peak of actual demand over the planner's
/// [`cover_window`](crate::control::planner::cover_window), a scale-up raised past the HPA's tolerance of the previous
/// target, in `[1, 40]`. Ticks in gaps count as no demand; the window reaches past the trace as `minReplicas`.
fn hpa_oracle(demand: &[Option<f64>], policy: &Policy) -> Vec<Option<f64>> {
    let ticks = |d: TimeDelta| (d.num_milliseconds() / TICK.num_milliseconds()).max(0) as usize;
    let (from, to) = crate::control::planner::lookahead(policy);
    let (from, to) = (ticks(from), ticks(to));
    let c = policy.capacity_per_replica;
    let mut previous: Option<u32> = None;
    (0..demand.len())
        .map(|k| {
            let peak = (k + from..=k + to)
                .filter_map(|i| demand.get(i).copied().flatten())
                .fold(0.0f64, f64::max);
            // Peaks of finite demand over a validated capacity: a count is always there; the most replicas if not.
            let mut want = crate::control::planner::replicas_for(peak, c)
                .unwrap_or(MAX_REPLICAS)
                .clamp(MIN_REPLICAS, MAX_REPLICAS);
            if let Some(p) = previous.filter(|p| want > *p) {
                want = want.max(crate::control::planner::past_tolerance(p)).min(MAX_REPLICAS);
            }
            let served = crate::control::planner::served_value(want, previous);
            previous = Some(want);
            Some(served)
        })
        .collect()
}

/// The bar on standard error (hidden unless `enabled` and a terminal); each phase sets its length.
fn progress_bar(enabled: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if !enabled || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg:32} [{bar:40}] {percent:>3}% eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fixtures::t;

    #[test]
    fn a_capacity_no_target_can_carry_names_the_setting_that_exists() {
        // Demand of 1e300 units/s: c = p99 / 20 is far past what a Kubernetes quantity holds.
        let huge = Series::from_values(t(0), TimeDelta::minutes(1), vec![Some(1e300); 60]);
        let settings = Settings {
            policies: vec![PolicyName::Reactive],
            ..Settings::default()
        };
        let error = run(&huge, "huge", &settings).unwrap_err().to_string();
        assert!(
            error.contains("`capacityPerReplica`") && error.contains("rescale the trace"),
            "{error}"
        );
        assert!(!error.contains("--capacity"), "no such flag: {error}");
        // A configured capacity that is not positive.
        let one = Series::from_values(t(0), TimeDelta::minutes(1), vec![Some(1.0); 60]);
        let settings = Settings {
            capacity: Some(0.0),
            ..settings
        };
        let error = run(&one, "one", &settings).unwrap_err().to_string();
        assert!(
            error.contains("`capacityPerReplica`: capacity per replica must be a positive number"),
            "{error}"
        );
    }

    #[test]
    fn warm_up_is_a_week_or_a_quarter() {
        let week = Series::from_values(t(0), TimeDelta::minutes(10), vec![Some(1.0); 6 * 24 * 8]);
        assert_eq!(scored_window(&week, "w").unwrap(), (TimeDelta::days(7), t(7 * 86_400)));
        let hour = Series::from_values(t(0), TimeDelta::seconds(10), vec![Some(1.0); 360]);
        assert_eq!(scored_window(&hour, "h").unwrap(), (TimeDelta::seconds(900), t(900)));
        let short = Series::from_values(t(0), TimeDelta::seconds(10), vec![Some(1.0); 60]);
        assert!(matches!(
            scored_window(&short, "s"),
            Err(BacktestError::TooShort { .. })
        ));
        // Exactly a week: all of it is history, and the error says what would be scored.
        let seven = Series::from_values(t(0), TimeDelta::minutes(10), vec![Some(1.0); 6 * 24 * 7]);
        let error = scored_window(&seven, "seven").unwrap_err().to_string();
        assert!(
            error.contains("keeps its first 7 days as history; use one longer than 7 days"),
            "{error}"
        );
    }

    #[test]
    fn served_values_read_as_ceiling_milli_of_the_shortest_decimal() {
        assert_eq!(served_milli(4.35), Some(4350));
        assert_eq!(served_milli(0.1085), Some(109));
        assert_eq!(served_milli(12.0), Some(12_000));
        assert_eq!(served_milli(f64::NAN), None);
    }

    #[test]
    fn oracle_creates_pods_lead_ahead_and_drops_them_when_unneeded() {
        let ticks: Vec<_> = (0..6).map(|k| t(15 * k)).collect();
        let demand = vec![Some(1.0), Some(1.0), Some(3.0), Some(1.0), None, Some(1.0)];
        let (rows, initial) = oracle(&ticks, &demand, 1.0, TimeDelta::seconds(30));
        let alive: Vec<u32> = rows.iter().map(|r| r.desired_replicas).collect();
        let ready: Vec<u32> = rows.iter().map(|r| r.ready_pods).collect();
        assert_eq!(alive, vec![3, 3, 3, 1, 1, 1]);
        // Pods alive at the first tick count as ready; the rest never needed more than they had.
        assert_eq!(ready, vec![3, 3, 3, 1, 1, 1]);
        assert_eq!(initial, 3);
        let demand = vec![Some(1.0), Some(1.0), Some(1.0), Some(4.0), Some(1.0), Some(1.0)];
        let (rows, _) = oracle(&ticks, &demand, 1.0, TimeDelta::seconds(30));
        let alive: Vec<u32> = rows.iter().map(|r| r.desired_replicas).collect();
        let ready: Vec<u32> = rows.iter().map(|r| r.ready_pods).collect();
        assert_eq!(alive, vec![1, 4, 4, 4, 1, 1]);
        assert_eq!(ready, vec![1, 1, 1, 4, 1, 1]);
        assert!(rows
            .iter()
            .all(|r| r.demand.is_none_or(|d| f64::from(r.ready_pods) >= d)));
    }

    #[test]
    fn hpa_oracle_serves_the_peak_of_the_cover_window_past_the_tolerance() {
        let policy = Policy {
            lead: TimeDelta::seconds(30),
            replicas: backtest_replicas(),
            ..Policy::new(1.0, MAX_REPLICAS)
        };
        // Lead 2 ticks: tick k covers ticks k+2 ..= k+3.
        let demand = vec![
            Some(2.0),
            Some(2.0),
            Some(2.0),
            None,
            Some(5.0),
            Some(10.5),
            Some(11.0),
            Some(0.5),
        ];
        let served = hpa_oracle(&demand, &policy);
        let replicas: Vec<u32> = served.iter().map(|v| v.unwrap().ceil() as u32).collect();
        // k=0: max(2, gap) = 2; k=1: 5; k=2: 10.5 → 11; k=3, 4: 11; k=5: 0.5 → 1; k=6, 7: past the end →
        // minReplicas.
        assert_eq!(replicas, vec![2, 5, 11, 11, 11, 1, 1, 1]);
        // Served as the planner serves: a rise at its count, anything else at the bottom of the count's range.
        assert_eq!(served[..3], [Some(2.0), Some(5.0), Some(11.0)]);
        assert_eq!(
            served[3..],
            [Some(10.001), Some(10.001), Some(0.001), Some(0.001), Some(0.001)]
        );
        // A rise within the tolerance of the previous target is raised past it: 10 → 11 would be ignored.
        let demand = vec![Some(10.0), Some(10.0), Some(10.0), Some(10.0), Some(10.5), Some(10.5)];
        let replicas: Vec<u32> = hpa_oracle(&demand, &policy)
            .iter()
            .map(|v| v.unwrap().ceil() as u32)
            .collect();
        assert_eq!(replicas, vec![10, 12, 11, 11, 1, 1]);
    }

    #[test]
    fn hpa_simulation_starts_ready_and_waits_lead_for_new_pods() {
        let ticks: Vec<_> = (0..10).map(|k| t(15 * k)).collect();
        let demand = vec![Some(2.0); 10];
        let mut served = vec![Some(2.0); 10];
        served[2..].iter_mut().for_each(|s| *s = Some(6.0));
        let (rows, initial) = simulate_hpa(&ticks, &demand, &served, 1000, TimeDelta::seconds(60)).unwrap();
        assert_eq!(initial, 2);
        assert_eq!((rows[1].desired_replicas, rows[1].ready_pods), (2, 2));
        // At tick 2 the HPA asks for 6 but may only go to max(2·2, 4) = 4; pods created at 30 s are ready at 90 s.
        assert_eq!(
            (rows[2].desired_replicas, rows[2].ready_pods, rows[2].starting_pods),
            (4, 2, 2)
        );
        assert_eq!(
            (rows[3].desired_replicas, rows[3].ready_pods, rows[3].starting_pods),
            (6, 2, 4)
        );
        assert_eq!((rows[6].ready_pods, rows[6].starting_pods), (4, 2));
        assert_eq!((rows[7].ready_pods, rows[7].starting_pods), (6, 0));
    }
}
