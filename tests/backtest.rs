//! Backtests through the public API on a real recorded trace: protocol invariants, outputs, and no peeking.

use std::path::PathBuf;

use chrono::TimeDelta;
use prescale::backtest::{self, PolicyName, Settings};
use prescale::series::Series;

fn traces_dir() -> PathBuf {
    std::env::var_os("PRESCALE_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"))
}

fn load(name: &str) -> Series {
    let path = traces_dir().join(format!("{name}.csv"));
    prescale::history::trace::load(&path)
        .unwrap_or_else(|e| panic!("{e}; set PRESCALE_TRACES_DIR to the directory holding the trace CSVs"))
}

fn settings(leads: &[i64]) -> Settings {
    Settings {
        leads: leads.iter().map(|m| TimeDelta::minutes(*m)).collect(),
        ..Settings::default()
    }
}

#[test]
fn short_backtest_keeps_protocol_invariants_and_writes_outputs() {
    let trace = load("azure_llm_conv_2023");
    let report = backtest::run(&trace, "azure_llm_conv_2023", &settings(&[2, 5])).unwrap();
    let s = &report.settings;
    // 349 slots of 10 s: 25% warm-up is 872.5 s, then ticks every 15 s to the end.
    assert_eq!(s.history_seconds, 872.5);
    assert_eq!(s.ticks, 175);
    assert!((s.capacity_per_replica - s.p99_demand / 20.0).abs() < 1e-12);
    assert_eq!(report.runs.len(), 8);
    for lead in [120, 300] {
        let get = |p| &report.get(p, lead).unwrap().scores;
        let oracle = get(PolicyName::Oracle);
        let oracle_ticks = &report.get(PolicyName::Oracle, lead).unwrap().ticks;
        let capacity = s.capacity_per_replica;
        let window = (lead / 15) as usize;
        for p in PolicyName::DEFAULT {
            let sc = get(p);
            for v in [
                sc.unserved_fraction,
                sc.violation_minutes,
                sc.violation_minutes_per_day,
                sc.replica_hours,
            ] {
                assert!(v.is_finite() && v >= 0.0, "{p} L={lead}: {sc:?}");
            }
            assert!(sc.unserved_fraction <= 1.0);
            // The oracle's floor: a policy that is never short over [t, t + L] holds at least the oracle's pods at t
            // (pods ready by t + L were created by t). A policy that is short may hold fewer.
            let ticks = &report.get(p, lead).unwrap().ticks;
            let short = |r: &backtest::TickRow| r.demand.is_some_and(|d| d > f64::from(r.ready_pods) * capacity);
            for k in 0..ticks.len() {
                if ticks[k..(k + window + 1).min(ticks.len())].iter().any(short) {
                    continue;
                }
                let held = ticks[k].ready_pods + ticks[k].starting_pods;
                let floor = oracle_ticks[k].ready_pods + oracle_ticks[k].starting_pods;
                assert!(
                    held >= floor,
                    "{p} L={lead} tick {k}: holds {held} pods, below the oracle's {floor}"
                );
            }
            if sc.violation_minutes == 0.0 {
                assert!(
                    oracle.replica_hours <= sc.replica_hours,
                    "{p} L={lead} never short yet beats the oracle"
                );
            }
        }
        assert!(get(PolicyName::Reactive70).replica_hours >= get(PolicyName::Reactive).replica_hours);
        assert_eq!(
            oracle.unserved_fraction, 0.0,
            "the oracle is never short below maxReplicas"
        );
        // Every run saw the same ticks and demand.
        let demand: Vec<_> = report
            .get(PolicyName::Oracle, lead)
            .unwrap()
            .ticks
            .iter()
            .map(|r| r.demand)
            .collect();
        for p in PolicyName::DEFAULT {
            let run = report.get(p, lead).unwrap();
            assert_eq!(run.ticks.iter().map(|r| r.demand).collect::<Vec<_>>(), demand);
            assert!(run.ticks.iter().all(|r| (1..=40).contains(&r.desired_replicas)));
        }
    }
    assert_eq!(report.bar.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let files = backtest::write_outputs(&report, dir.path()).unwrap();
    assert_eq!(files.len(), 1 + 8 + 2);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["trace"], "azure_llm_conv_2023");
    assert_eq!(json["runs"].as_array().unwrap().len(), 8);
    assert!(json["runs"][0]["scores"]["replica_hours"].is_f64());
    let csv = std::fs::read_to_string(dir.path().join("ticks/predictive_L5m.csv")).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("t,demand,served_value,desired_replicas,ready_pods,starting_pods")
    );
    assert_eq!(csv.lines().count(), 176);
    let svg = std::fs::read_to_string(dir.path().join("chart_L5m.svg")).unwrap();
    assert!(svg.contains("predictive capacity") && svg.contains("reactive-70 capacity"));
}

#[test]
fn a_future_sample_cannot_change_a_past_decision() {
    let trace = load("azure_llm_conv_2023");
    let mut s = settings(&[2]);
    s.policies = vec![PolicyName::Reactive, PolicyName::Reactive70, PolicyName::Predictive];
    // Capacity is fixed so that changing the future does not change c (which the protocol takes from the whole
    // scored window by design).
    s.capacity = Some(0.5);
    let base = backtest::run(&trace, "conv", &s).unwrap();
    let ticks: Vec<_> = base.runs[0].ticks.iter().map(|r| r.t).collect();
    let k = ticks.len() / 2;
    let cut = ticks[k] - backtest::LAG;
    // Every slot whose interval ends after t_k − 30 s is invisible at t_k and before: triple it.
    let step = trace.step();
    let values = trace
        .values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if trace.time_at(i) + step > cut {
                v.map(|x| 3.0 * x + 1.0)
            } else {
                *v
            }
        })
        .collect();
    let mutated = Series::from_values(trace.start(), step, values);
    let changed = backtest::run(&mutated, "conv", &s).unwrap();
    for (a, b) in base.runs.iter().zip(&changed.runs) {
        assert_eq!(a.policy, b.policy);
        for i in 0..=k {
            let (x, y) = (&a.ticks[i], &b.ticks[i]);
            assert_eq!(
                (x.served_value, x.desired_replicas, x.ready_pods, x.starting_pods),
                (y.served_value, y.desired_replicas, y.ready_pods, y.starting_pods),
                "{} changed its decision at tick {i} (≤ {k}) after a future sample changed",
                a.policy
            );
        }
        // The mutation is visible later, so the replays do differ afterwards.
        assert_ne!(
            a.ticks[k + 8..],
            b.ticks[k + 8..],
            "{}: the mutation had no effect at all",
            a.policy
        );
    }
}

#[test]
fn bad_settings_and_short_traces_are_rejected_with_the_field_named() {
    let trace = load("azure_llm_conv_2023");
    let mut s = settings(&[2]);
    s.leads = vec![TimeDelta::seconds(20)];
    let err = backtest::run(&trace, "conv", &s).unwrap_err().to_string();
    assert!(err.contains("--lead") && err.contains("15 s"), "{err}");
    let short = trace.window(trace.start(), trace.start() + TimeDelta::minutes(5));
    let err = backtest::run(&short, "short", &settings(&[2])).unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");
}

#[test]
fn hpa_oracle_on_request_sits_between_the_oracle_and_the_forecast() {
    let trace = load("azure_llm_conv_2023");
    let mut s = settings(&[2, 5]);
    s.policies = vec![PolicyName::HpaOracle, PolicyName::Predictive, PolicyName::Oracle];
    let report = backtest::run(&trace, "conv", &s).unwrap();
    assert_eq!(
        report.settings.policies,
        vec![PolicyName::Predictive, PolicyName::Oracle, PolicyName::HpaOracle],
        "report order"
    );
    assert!(
        report.get(PolicyName::Reactive70, 120).is_none(),
        "not requested, not run"
    );
    for lead in [120, 300] {
        let get = |p| report.get(p, lead).unwrap();
        let (hpa, oracle) = (get(PolicyName::HpaOracle), get(PolicyName::Oracle));
        // Perfect foresight through the HPA holds at least what perfect foresight without it needs...
        assert!(
            hpa.scores.replica_hours >= oracle.scores.replica_hours,
            "L={lead}: {} < {}",
            hpa.scores.replica_hours,
            oracle.scores.replica_hours
        );
        // ... and is short only where the HPA's scale-up limit or tolerance holds it back: rarely.
        assert!(hpa.scores.unserved_fraction < 0.005, "L={lead}: {:?}", hpa.scores);
        // It serves replica counts against target 1 as the predictive policy does: the count on a rise, otherwise
        // the bottom of the count's range (see `planner::served_value`).
        let mut previous: Option<u32> = None;
        for r in &hpa.ticks {
            let v = r.served_value.unwrap();
            let count = v.ceil() as u32;
            assert!((1..=40).contains(&count), "L={lead}: {r:?}");
            assert_eq!(v, prescale::planner::served_value(count, previous), "L={lead}: {r:?}");
            previous = Some(count);
        }
        assert!(
            hpa.ticks.iter().any(|r| r.served_value.unwrap().fract() != 0.0),
            "some scale-in"
        );
    }
}

/// The adaptive quantile's reactive shadow replays the HPA path exactly as the backtest's reactive-70 policy does,
/// so what it reports as the reactive target's unserved demand is what reactive-70 scores; with `--fixed-quantile`
/// nothing adapts.
#[test]
fn the_adaptive_quantile_scores_the_reactive_target_as_the_backtest_does() {
    let trace = load("servegen_lang_m_small");
    let mut s = settings(&[5]);
    s.policies = vec![PolicyName::Reactive70, PolicyName::Predictive];
    // Scored from the first scored tick only, as the backtest scores reactive-70: no startup replay.
    s.adaptive.replay = TimeDelta::zero();
    let report = backtest::run(&trace, "servegen_lang_m_small", &s).unwrap();
    assert!(report.settings.adaptive_quantile);
    let info = report.predictive.as_ref().unwrap();
    assert_eq!(info.replayed["5m"], Default::default());
    let shadows = &info.adaptive["5m"];
    let reactive = shadows.last().unwrap();
    assert_eq!(reactive.quantile, None);
    let r70 = report
        .get(PolicyName::Reactive70, 300)
        .unwrap()
        .scores
        .unserved_fraction;
    // The shadow is scored up to the last observed slot, the backtest to the end of the trace.
    assert!(
        (reactive.unserved_fraction_total - r70).abs() <= 0.02 * r70,
        "shadow {} vs reactive-70 {r70}",
        reactive.unserved_fraction_total
    );
    // Higher quantiles leave less demand unserved.
    let levels: Vec<f64> = shadows[..shadows.len() - 1]
        .iter()
        .map(|c| c.unserved_fraction_total)
        .collect();
    assert!(levels.windows(2).all(|w| w[1] <= w[0] * 1.05), "{levels:?}");
    assert!(levels[0] > 2.0 * levels[levels.len() - 1], "{levels:?}");
    let served = &info.served_by["5m"];
    assert!(
        served.keys().any(|k| k != "p90"),
        "adapted away from the configured p90: {served:?}"
    );
    assert_eq!(served.values().sum::<usize>(), report.settings.ticks);
    let summary = report.summary();
    assert!(summary.contains("predictive L=5m served: "), "{summary}");

    // With the startup replay (the default), the three days before the scored window are replayed first, as
    // `prescale serve` does when it starts: the choice is warm from the first scored tick, not p90 for a day.
    s.adaptive.replay = prescale::service_level::Adaptive::default().replay;
    let replayed = backtest::run(&trace, "servegen_lang_m_small", &s).unwrap();
    let info = replayed.predictive.as_ref().unwrap();
    assert_eq!(replayed.settings.adaptive_replay_seconds, 3 * 86_400);
    let r = info.replayed["5m"];
    assert_eq!((r.decisions, r.fits), (3 * 86_400 / 15, 72));
    assert_ne!(info.served_by["5m"], served.clone(), "a warm start serves differently");
    assert!(
        info.served_by["5m"].get("p90").copied().unwrap_or(0) < served.get("p90").copied().unwrap_or(0),
        "less of the configured p90 while warming up: {:?} vs {served:?}",
        info.served_by["5m"]
    );

    s.adaptive.enabled = false;
    let fixed = backtest::run(&trace, "servegen_lang_m_small", &s).unwrap();
    assert!(!fixed.settings.adaptive_quantile);
    let info = fixed.predictive.as_ref().unwrap();
    assert!(info.adaptive.is_empty());
    assert!(
        info.served_by["5m"].keys().all(|k| k == "p90" || k == "demoted"),
        "{:?}",
        info.served_by
    );
}
