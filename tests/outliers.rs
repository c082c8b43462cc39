//! One absurd sample in a real recorded trace, read from a CSV file as a user would record it: the served replicas
//! stay where the clean trace puts them, and the backtest's scores stay numbers.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use prescale::backtest::{self, PolicyName, Settings};
use prescale::control::engine::Engine;
use prescale::control::planner::Bound;
use prescale::control::policy::Policy;
use prescale::forecast::{ForecastSettings, Seasonality};
use prescale::series::Series;

fn traces_dir() -> PathBuf {
    std::env::var_os("PRESCALE_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"))
}

fn trace_path(name: &str) -> PathBuf {
    traces_dir().join(format!("{name}.csv"))
}

fn load(path: &Path) -> Series {
    prescale::history::trace::load(path)
        .unwrap_or_else(|e| panic!("{e}; set PRESCALE_TRACES_DIR to the directory holding the trace CSVs"))
}

/// The trace at `path` with the value of data row `row` (0 = first after the header) replaced by `value`, written
/// to a file in `dir`.
fn with_row(path: &Path, row: usize, value: &str, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = &mut lines[row + 1];
    let (timestamp, _) = line.split_once(',').unwrap();
    *line = format!("{timestamp},{value}");
    let out = dir.join(path.file_name().unwrap());
    fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

/// Replicas served every 10 minutes over `[from, to)`, each decision on the samples that had ended by then.
fn served(series: &Series, policy: &Policy, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(u32, Bound, f64)> {
    let settings = ForecastSettings {
        seasonality: Seasonality::Auto,
        horizon: TimeDelta::hours(1),
        decision: TimeDelta::hours(1),
    };
    let mut engine = Engine::new(settings, policy.clone(), TimeDelta::hours(1));
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        let visible = series.visible_at(now);
        engine.refit_if_due(&visible, now);
        let d = engine.decide(&visible, now, now).expect("a decision");
        out.push((d.plan.replicas, d.plan.bound, d.plan.planned_demand));
        now += TimeDelta::minutes(10);
    }
    out
}

#[test]
fn one_absurd_row_in_servegen_leaves_the_served_replicas_near_the_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let clean_path = trace_path("servegen_lang_m_small");
    let clean = load(&clean_path);
    // Row 1,400 is day 9 at about 17:00, demand ~1,100/s; at 110 per replica that is ~10 replicas, and the evening
    // peak needs ~40: the ceiling is well above both.
    let row = 1400;
    let glitched = load(&with_row(&clean_path, row, "1e308", dir.path()));
    let (glitch_at, value) = glitched.points().nth(row).unwrap();
    assert_eq!(value, f64::from(f32::MAX), "held at the most a slot holds, as absurd");
    let policy = Policy::new(110.0, 100);
    // From the decision that first sees the sample (its slot ends 10 minutes after it starts) to a day later,
    // across a refit that fits it into the model.
    let from = glitch_at + TimeDelta::minutes(10);
    let to = from + TimeDelta::hours(26);
    let base = served(&clean, &policy, from, to);
    let hit = served(&glitched, &policy, from, to);
    assert!(base.iter().all(|(r, _, _)| (3..=60).contains(r)), "clean run: {base:?}");
    for (k, ((b, _, bd), (h, bound, hd))) in base.iter().zip(&hit).enumerate() {
        assert_ne!(
            *bound,
            Bound::Max,
            "decision {k}: the glitch drove the plan to maxReplicas"
        );
        assert!(
            h.abs_diff(*b) <= 2.max(b / 5),
            "decision {k}: {h} replicas with the glitch, {b} without"
        );
        assert!(
            hd.is_finite() && *hd > 0.5 * bd && *hd < 2.0 * bd,
            "decision {k}: planned demand {hd} with the glitch, {bd} without"
        );
    }
}

#[test]
fn a_backtest_over_an_absurd_row_scores_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = with_row(&trace_path("azure_llm_conv_2023"), 300, "1e308", dir.path());
    let trace = load(&path);
    let settings = Settings {
        leads: vec![TimeDelta::minutes(2)],
        ..Settings::default()
    };
    let report = backtest::run(&trace, "azure_llm_conv_2023", &settings).unwrap();
    let clean = backtest::run(
        &load(&trace_path("azure_llm_conv_2023")),
        "azure_llm_conv_2023",
        &settings,
    )
    .unwrap();
    assert!(
        report.settings.unscorable_ticks > 0,
        "the 1e308 row is left out of the scores, and counted"
    );
    assert!(
        report.summary().contains("ticks left out of the scores"),
        "{}",
        report.summary()
    );
    assert_eq!(clean.settings.unscorable_ticks, 0);
    for run in &report.runs {
        let u = run.scores.unserved_fraction;
        assert!(
            u.is_finite() && (0.0..=1.0).contains(&u),
            "{} L={}: unserved {u}",
            run.policy,
            run.lead
        );
    }
    let predictive = |r: &backtest::Report| r.get(PolicyName::Predictive, 120).unwrap().scores.clone();
    let (hit, base) = (predictive(&report), predictive(&clean));
    assert!(
        hit.unserved_fraction <= base.unserved_fraction + 0.01,
        "unserved {} with the glitch, {} without",
        hit.unserved_fraction,
        base.unserved_fraction
    );
    assert!(
        hit.replica_hours <= base.replica_hours * 1.1,
        "{} replica-hours with the glitch, {} without",
        hit.replica_hours,
        base.replica_hours
    );
}

/// Real spikes are demand: twitter_mentions_aapl_2015 jumps to 58 times the hour before on news, and the live floor
/// honours every such sample at once (none is past ten times what `maxReplicas` serve), so none is held back a
/// sample, and the protocol scores them all.
#[test]
fn real_spikes_in_the_recorded_traces_are_honoured_and_scored() {
    let mut jumps = 0;
    for name in [
        "azure_llm_code_2023",
        "azure_llm_conv_2023",
        "servegen_lang_m_small",
        "nasa_http_1995",
        "twitter_mentions_aapl_2015",
        "nyc_taxi_passengers_2014",
    ] {
        let trace = load(&trace_path(name));
        let mut present: Vec<f64> = trace.values().flatten().collect();
        present.sort_by(f64::total_cmp);
        let capacity = prescale::series::percentile(&present, 0.99) / backtest::P99_REPLICAS;
        let ceiling = capacity * f64::from(backtest::MAX_REPLICAS);
        for (i, v) in trace.values().enumerate() {
            // Judged against the hour before alone (no ceiling), the jumps a naive guard would hold back.
            let (Some(v), Some(naive)) = (v, prescale::control::planner::glitch_limit(&trace, i, 0.0)) else {
                continue;
            };
            jumps += usize::from(v > naive);
            let limit = prescale::control::planner::glitch_limit(&trace, i, ceiling).expect("a reference exists");
            assert!(
                v <= limit,
                "{name} slot {i}: {v} would be held back by the live floor (limit {limit})"
            );
        }
    }
    assert!(
        jumps > 0,
        "some real samples jump more than tenfold over the hour before; they are honoured all the same"
    );
}
