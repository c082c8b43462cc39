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
    // Every policy by default, hpa-oracle included; the predictive policy at the default SLO, 1%.
    assert_eq!(report.runs.len(), 10);
    assert_eq!(s.slos, vec![0.01]);
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
    assert_eq!(report.slo_results.len(), 2);
    assert_eq!(report.frontier.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let files = backtest::write_outputs(&report, dir.path()).unwrap();
    assert_eq!(files.len(), 1 + 10 + 2 + 2);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["trace"], "azure_llm_conv_2023");
    assert_eq!(json["runs"].as_array().unwrap().len(), 10);
    assert_eq!(json["runs"][2]["slo"], 0.01);
    assert!(json["runs"][0]["slo"].is_null());
    assert!(json["runs"][0]["scores"]["replica_hours"].is_f64());
    let csv = std::fs::read_to_string(dir.path().join("ticks/predictive_L5m.csv")).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("t,demand,served_value,desired_replicas,ready_pods,starting_pods,served_by")
    );
    assert_eq!(csv.lines().count(), 176);
    // Each tick names what was served, and the names add up to the report's counts.
    let mut by_tick = std::collections::BTreeMap::<String, usize>::new();
    for line in csv.lines().skip(1) {
        let what = line.rsplit(',').next().unwrap();
        assert!(!what.is_empty(), "a predictive tick names what it served: {line}");
        *by_tick.entry(what.to_owned()).or_default() += 1;
    }
    let counted: std::collections::BTreeMap<String, usize> =
        serde_json::from_value(json["predictive"]["served_by"]["1%"]["5m"].clone()).unwrap();
    assert_eq!(by_tick, counted);
    let oracle = std::fs::read_to_string(dir.path().join("ticks/oracle_L5m.csv")).unwrap();
    assert!(
        oracle.lines().skip(1).all(|l| l.ends_with(',')),
        "only the predictive policy names what it served"
    );
    let svg = std::fs::read_to_string(dir.path().join("chart_L5m.svg")).unwrap();
    assert!(svg.contains("predictive capacity") && svg.contains("reactive-70 capacity"));
    let frontier = std::fs::read_to_string(dir.path().join("frontier_L5m.svg")).unwrap();
    assert_eq!(frontier.matches("data-utilization=").count(), 14);
    for policy in ["reactive-70", "oracle", "hpa-oracle", "predictive"] {
        assert!(
            frontier.contains(&format!("data-policy=\"{policy}\"")),
            "{policy} is not marked"
        );
    }
    assert!(frontier.contains(">SLO 1%</text>") && !frontier.contains("NaN"));
}

/// A result read back from report.json, recomputed from the runs and the frontier it names, as an independent
/// scorer would.
fn check_result(json: &serde_json::Value, result: &serde_json::Value) {
    let lead = result["lead_seconds"].as_i64().unwrap();
    let slo = result["slo"].as_f64().unwrap();
    let run = |policy: &str| {
        json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["lead_seconds"] == lead && r["policy"] == policy && (policy != "predictive" || r["slo"] == slo))
            .map(|r| &r["scores"])
    };
    let predictive = run("predictive").unwrap();
    let (x, rh) = (
        predictive["unserved_fraction"].as_f64().unwrap(),
        predictive["replica_hours"].as_f64().unwrap(),
    );
    assert_eq!(result["unserved_fraction"].as_f64(), Some(x));
    assert_eq!(result["slo_met"].as_bool(), Some(x <= 1.1 * slo), "{result}");
    let frontier = json["frontier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["lead_seconds"] == lead)
        .unwrap();
    let meets = frontier["points"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["unserved_fraction"].as_f64().unwrap() <= slo);
    assert_eq!(result["frontier_meets_slo"].as_bool(), Some(meets));
    let reference = result["equal_service"]["replica_hours"].as_f64().unwrap();
    let savings = result["equal_service_savings"].as_f64().unwrap();
    assert!((savings - (1.0 - rh / reference)).abs() < 1e-12, "{result}");
    let hpa = run("hpa-oracle").unwrap()["replica_hours"].as_f64().unwrap();
    match result["foresight_captured"].as_f64() {
        Some(f) => assert!((f - (reference - rh) / (reference - hpa)).abs() < 1e-12, "{result}"),
        None => assert!(reference <= hpa, "{result}"),
    }
    let r70 = run("reactive-70").unwrap()["replica_hours"].as_f64().unwrap();
    let vs70 = result["savings_vs_reactive70"].as_f64().unwrap();
    assert!((vs70 - (1.0 - rh / r70)).abs() < 1e-12, "{result}");
    let bar = &result["bar"];
    assert_eq!(bar["slo_ok"].as_bool(), Some(x <= 1.1 * slo || !meets), "{result}");
    if result["equal_service"]["position"] == "inside" {
        assert_eq!(bar["savings_ok"].as_bool(), Some(savings >= 0.0), "{result}");
    }
    assert_eq!(
        bar["passed"].as_bool(),
        Some(bar["slo_ok"] == true && bar["savings_ok"] == true)
    );
}

/// `--slo 0.1%,1%`: two predictive runs per lead from one pass, the reactive frontier beside them (its 70% and
/// 100% targets are reactive-70 and reactive exactly), and a result per (SLO, lead) that the report's own numbers
/// reproduce.
#[test]
fn several_slos_run_in_one_pass_against_the_reactive_frontier() {
    let out = tempfile::tempdir().unwrap();
    let trace = traces_dir().join("azure_llm_conv_2023.csv");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args([
            "backtest", "--quiet", "--lead", "2m,5m", "--slo", "1%", "--slo", "0.1%,1%", "--trace",
        ])
        .arg(&trace)
        .arg("--out")
        .arg(out.path())
        .env_remove("PRESCALE_BACKTEST_POLICIES")
        .env_remove("PRESCALE_BACKTEST_SLOS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(
        json["settings"]["slos"],
        serde_json::json!([0.001, 0.01]),
        "ascending, no repeats"
    );
    assert_eq!(json["settings"]["slo_max_unserved"], 0.01);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2 * 6, "five policies and a second predictive run per lead");
    for lead in [120, 300] {
        let at = |policy: &str| {
            runs.iter()
                .filter(|r| r["lead_seconds"] == lead && r["policy"] == policy)
                .collect::<Vec<_>>()
        };
        let predictive = at("predictive");
        let slos: Vec<f64> = predictive.iter().map(|r| r["slo"].as_f64().unwrap()).collect();
        assert_eq!(slos, [0.001, 0.01]);
        let frontier = json["frontier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["lead_seconds"] == lead)
            .unwrap();
        let points = frontier["points"].as_array().unwrap();
        assert_eq!(points.len(), 14);
        let us: Vec<f64> = points.iter().map(|p| p["utilization"].as_f64().unwrap()).collect();
        assert_eq!(us, prescale::control::service_level::UTILIZATIONS);
        for (u, policy, target) in [
            (0.7, "reactive-70", "reactive70_target_milli"),
            (1.0, "reactive", "reactive_target_milli"),
        ] {
            let p = points.iter().find(|p| p["utilization"] == u).unwrap();
            let scores = &at(policy)[0]["scores"];
            assert_eq!(p["target_milli"], json["settings"][target], "u = {u}");
            for key in [
                "unserved_fraction",
                "replica_hours",
                "violation_minutes_per_day",
                "scale_events",
            ] {
                assert_eq!(p[key], scores[key], "u = {u}: {key} differs from {policy}'s");
            }
        }
        // More headroom holds more replicas.
        let hours: Vec<f64> = points.iter().map(|p| p["replica_hours"].as_f64().unwrap()).collect();
        assert!(hours.windows(2).all(|w| w[0] >= w[1]), "{hours:?}");
    }
    let results = json["slo_results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let keys: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            (
                r["slo_label"].as_str().unwrap().to_owned(),
                r["lead"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [("0.1%", "2m"), ("0.1%", "5m"), ("1%", "2m"), ("1%", "5m")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    for r in results {
        check_result(&json, r);
        let served = &json["predictive"]["served_by"][r["slo_label"].as_str().unwrap()][r["lead"].as_str().unwrap()];
        assert_eq!(&r["served_by"], served);
        let ticks: u64 = served.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(ticks, json["settings"]["ticks"].as_u64().unwrap());
    }
    // One pass: one fit per lead and refit, shared by the SLOs (the lead chooses the fit's level correction), each
    // engine replaying with its lead's.
    let fits = json["predictive"]["fits"].as_u64().unwrap();
    assert_eq!(fits % 2, 0, "two leads refit on one schedule: {fits}");
    for slo in ["0.1%", "1%"] {
        for lead in ["2m", "5m"] {
            assert_eq!(
                json["predictive"]["replayed"][slo][lead]["fits"],
                json["predictive"]["replayed"]["1%"]["2m"]["fits"]
            );
        }
    }
    assert!(fits >= 1);

    // Files: the SLO in the predictive runs' names, a frontier chart per lead.
    for name in [
        "predictive_slo0.1pct_L2m",
        "predictive_slo1pct_L5m",
        "reactive-70_L5m",
        "hpa-oracle_L2m",
    ] {
        assert!(out.path().join(format!("ticks/{name}.csv")).is_file(), "{name}");
    }
    assert!(!out.path().join("ticks/predictive_L5m.csv").exists());
    for lead in ["2m", "5m"] {
        let svg = std::fs::read_to_string(out.path().join(format!("frontier_L{lead}.svg"))).unwrap();
        assert!(
            svg.contains(">SLO 0.1%</text>") && svg.contains(">SLO 1%</text>"),
            "{lead}"
        );
        assert!(svg.contains("data-policy=\"predictive\" data-slo=\"0.1%\""), "{lead}");
    }
    // The summary: the frontier, and one line per (SLO, lead).
    assert!(stdout.contains("reactive frontier L=5m"), "{stdout}");
    for slo in ["0.1%", "1%"] {
        for lead in ["2m", "5m"] {
            let prefix = format!("SLO {slo} L={lead}: unserved ");
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{prefix}: {stdout}"));
            assert!(
                line.contains("foresight captured") && line.contains("vs reactive-70") && line.contains("; bar "),
                "{line}"
            );
            assert!(line.contains("[met]") || line.contains("[MISS]"), "{line}");
        }
    }

    // A single SLO keeps the plain file names; the fits are the same as with two.
    let single = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["backtest", "--quiet", "--lead", "2m,5m", "--trace"])
        .arg(&trace)
        .arg("--out")
        .arg(single.path())
        .env("PRESCALE_BACKTEST_SLOS", "0.1%")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(single.path().join("ticks/predictive_L5m.csv").is_file());
    let one: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(single.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(
        one["settings"]["slos"],
        serde_json::json!([0.001]),
        "from PRESCALE_BACKTEST_SLOS"
    );
    assert_eq!(one["predictive"]["fits"].as_u64(), Some(fits));
    // The same SLO alone serves exactly what it served beside another.
    let predictive = |j: &serde_json::Value| {
        j["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["policy"] == "predictive" && r["slo"] == 0.001 && r["lead_seconds"] == 300)
            .unwrap()["scores"]
            .clone()
    };
    assert_eq!(predictive(&one), predictive(&json));
}

#[test]
fn bad_slos_name_the_flag_and_the_fix() {
    for (bad, says) in [
        ("0.1", "with a % sign"),
        ("abc", "not a percentage"),
        ("0%", "between 0.001% and 50%"),
        ("1%,70%", "between 0.001% and 50%"),
    ] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["backtest", "--quiet", "--trace", "unused.csv", "--slo", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "--slo {bad} was accepted");
        assert!(
            stderr.contains("--slo") && stderr.contains(says) && stderr.contains("e.g. 0.1%"),
            "--slo {bad}: {stderr}"
        );
    }
    // Through the library the range is checked too, naming the flag.
    let trace = load("azure_llm_conv_2023");
    let mut s = settings(&[2]);
    s.slos = vec![0.9];
    let err = backtest::run(&trace, "conv", &s).unwrap_err().to_string();
    assert!(err.contains("--slo") && err.contains("e.g. --slo 0.1%"), "{err}");
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
        .enumerate()
        .map(|(i, v)| {
            if trace.time_at(i) + step > cut {
                v.map(|x| 3.0 * x + 1.0)
            } else {
                v
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
fn hpa_oracle_sits_between_the_oracle_and_the_forecast() {
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
            assert_eq!(
                v,
                prescale::control::planner::served_value(count, previous),
                "L={lead}: {r:?}"
            );
            previous = Some(count);
        }
        assert!(
            hpa.ticks.iter().any(|r| r.served_value.unwrap().fract() != 0.0),
            "some scale-in"
        );
    }
}

/// The service-level controller's reactive shadows replay the HPA path as the backtest's reactive frontier does,
/// each raised to what the forecast's median needs when that is more: what it reports as a reactive target's
/// unserved demand is never more than the frontier scores at that target, and where the target's headroom covers
/// any rise the forecast expects within the lead (u ≤ 50%) it is the frontier's score; with `--fixed-quantile`
/// nothing adapts.
#[test]
fn the_adaptive_choice_scores_reactive_targets_as_the_backtest_does() {
    let trace = load("servegen_lang_m_small");
    let mut s = settings(&[5]);
    s.policies = vec![PolicyName::Reactive70, PolicyName::Predictive];
    // Scored from the first scored tick only, as the backtest scores the frontier: no startup replay.
    s.adaptive.replay = TimeDelta::zero();
    let report = backtest::run(&trace, "servegen_lang_m_small", &s).unwrap();
    assert!(report.settings.adaptive_quantile);
    let info = report.predictive.as_ref().unwrap();
    assert_eq!(info.replayed["1%"]["5m"], Default::default());
    let shadows = &info.adaptive["1%"]["5m"];
    let frontier = report.frontier_at(300).unwrap();
    let r70 = report
        .get(PolicyName::Reactive70, 300)
        .unwrap()
        .scores
        .unserved_fraction;
    assert_eq!(frontier.points[7].unserved_fraction, r70);
    // The shadows are scored up to the last observed slot, the backtest to the end of the trace.
    for point in &frontier.points {
        let shadow = shadows
            .iter()
            .find(|c| c.utilization == Some(point.utilization))
            .unwrap_or_else(|| panic!("no reactive shadow at {}", point.utilization));
        assert_eq!(shadow.quantile, None);
        let (shadow, hpa) = (shadow.unserved_fraction_total, point.unserved_fraction);
        let within = |x: f64| x <= 0.02 * hpa + 1e-5;
        assert!(
            within(shadow - hpa),
            "u = {}: shadow {shadow} vs frontier {hpa}",
            point.utilization
        );
        if point.utilization <= 0.5 {
            assert!(
                within(hpa - shadow),
                "u = {}: shadow {shadow} vs frontier {hpa}",
                point.utilization
            );
        }
    }
    // The floor binds somewhere: the 100% target, with no headroom, is lifted ahead of some rises.
    let shadow_at = |u: f64| {
        shadows
            .iter()
            .find(|c| c.utilization == Some(u))
            .unwrap()
            .unserved_fraction_total
    };
    assert!(
        shadow_at(1.0) < frontier.points[13].unserved_fraction,
        "{}",
        shadow_at(1.0)
    );
    // Higher quantiles leave less demand unserved.
    let levels: Vec<f64> = shadows
        .iter()
        .filter(|c| c.quantile.is_some())
        .map(|c| c.unserved_fraction_total)
        .collect();
    assert_eq!(levels.len(), prescale::control::service_level::LEVELS.len());
    assert!(levels.windows(2).all(|w| w[1] <= w[0] * 1.05), "{levels:?}");
    assert!(levels[0] > 2.0 * levels[levels.len() - 1], "{levels:?}");
    let served = &info.served_by["1%"]["5m"];
    assert!(
        served.keys().any(|k| k != "p90"),
        "adapted away from the configured p90: {served:?}"
    );
    assert_eq!(served.values().sum::<usize>(), report.settings.ticks);
    assert_eq!(&report.result(0.01, 300).unwrap().served_by, served);
    let summary = report.summary();
    assert!(summary.contains("predictive SLO 1% L=5m served: "), "{summary}");

    // With the startup replay (the default), the three days before the scored window are replayed first, as
    // `prescale serve` does when it starts: the choice is warm from the first scored tick, not p90 for a day.
    s.adaptive.replay = prescale::control::policy::Adaptive::default().replay;
    let replayed = backtest::run(&trace, "servegen_lang_m_small", &s).unwrap();
    let info = replayed.predictive.as_ref().unwrap();
    assert_eq!(replayed.settings.adaptive_replay_seconds, 3 * 86_400);
    let r = info.replayed["1%"]["5m"];
    assert_eq!((r.decisions, r.fits), (3 * 86_400 / 15, 72));
    assert_ne!(
        info.served_by["1%"]["5m"],
        served.clone(),
        "a warm start serves differently"
    );
    assert!(
        info.served_by["1%"]["5m"].get("p90").copied().unwrap_or(0) < served.get("p90").copied().unwrap_or(0),
        "less of the configured p90 while warming up: {:?} vs {served:?}",
        info.served_by["1%"]["5m"]
    );

    // With the quantile fixed, the SLO steers nothing: every SLO is served the same plan.
    s.adaptive.enabled = false;
    s.slos = vec![0.001, 0.01];
    let fixed = backtest::run(&trace, "servegen_lang_m_small", &s).unwrap();
    assert!(!fixed.settings.adaptive_quantile);
    let info = fixed.predictive.as_ref().unwrap();
    assert!(info.adaptive.is_empty(), "{:?}", info.adaptive);
    assert!(
        info.served_by["1%"]["5m"].keys().all(|k| k == "p90" || k == "demoted"),
        "{:?}",
        info.served_by
    );
    let (a, b) = (
        fixed.predictive(0.001, 300).unwrap(),
        fixed.predictive(0.01, 300).unwrap(),
    );
    assert_eq!(a.ticks, b.ticks);
    assert_eq!(info.served_by["0.1%"], info.served_by["1%"]);
}

/// The scripts the docs' traffic-not-chosen-on runs use: `scripts/synth-trace` writes each shape as a trace the
/// backtest reads, the same bytes for the same seed and other bytes for another; `scripts/resample-trace` averages
/// one over longer steps, keeping its mean.
#[test]
fn the_trace_scripts_write_traces_the_backtest_reads() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name);
    let synth = |shape: &str, out: &std::path::Path, seed: &str| {
        let run = std::process::Command::new(script("synth-trace"))
            .args([shape, out.to_str().unwrap(), "--seed", seed])
            .output()
            .expect("python3 runs scripts/synth-trace");
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        std::fs::read(out).unwrap()
    };
    for (shape, step, len) in [
        ("smooth-30m", 1800, 1344),
        ("web-1h", 3600, 840),
        ("web-calm-1h", 3600, 840),
        ("lb-5m", 300, 6048),
        ("lb-noisy-5m", 300, 6048),
    ] {
        let out = dir.path().join(format!("{shape}.csv"));
        let bytes = synth(shape, &out, "7");
        let s = prescale::history::trace::load(&out).unwrap_or_else(|e| panic!("{shape}: {e}"));
        assert_eq!(
            (s.step(), s.len(), s.missing()),
            (TimeDelta::seconds(step), len, 0),
            "{shape}"
        );
        assert!(s.values().flatten().all(|v| v.is_finite() && v > 0.0), "{shape}");
        assert_eq!(synth(shape, &out, "7"), bytes, "{shape}: the same seed, the same trace");
        assert_ne!(synth(shape, &out, "8"), bytes, "{shape}: another seed, another trace");
    }
    let lb = dir.path().join("lb-5m.csv");
    synth("lb-5m", &lb, "7");
    let hourly = dir.path().join("lb-1h.csv");
    let run = std::process::Command::new(script("resample-trace"))
        .args([lb.to_str().unwrap(), "3600", hourly.to_str().unwrap()])
        .output()
        .expect("python3 runs scripts/resample-trace");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (fine, coarse) = (
        prescale::history::trace::load(&lb).unwrap(),
        prescale::history::trace::load(&hourly).unwrap(),
    );
    assert_eq!((coarse.step(), coarse.len()), (TimeDelta::hours(1), 504));
    let mean = |s: &Series| s.values().flatten().sum::<f64>() / s.len() as f64;
    assert!(
        (mean(&fine) - mean(&coarse)).abs() < 1e-6 * mean(&fine),
        "{} vs {}",
        mean(&fine),
        mean(&coarse)
    );
}
