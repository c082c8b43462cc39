//! Refit + plan cost for one workload on 14 days of a recorded trace (1-minute NASA HTTP, ~20k slots), plus the
//! cheap path between refits (forecast from the fitted model + plan); and a refit of a coarse series (30-minute NYC
//! taxi, 35 days: 1,680 slots), whose calibration fits seven one-day holdout folds instead of one; and one decision
//! of the production step (`Engine::decide`) with the adaptive quantile's shadows against one without; and six hours
//! of the startup replay (`Engine::replay`); and a full fit against a workload's first fit (`Effort::First`) on 14
//! days of 5-minute data (Twitter mentions), the series `serve` fits most often.
//!
//! Traces are read from `PRESCALE_TRACES_DIR`, or `../shared/traces` next to the crate.

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prescale::control::engine::Engine;
use prescale::control::planner::plan;
use prescale::control::policy::Policy;
use prescale::forecast::{fit, fit_with, Effort, ForecastSettings, Seasonality};
use prescale::series::Series;

const TRACE: &str = "nasa_http_1995.csv";
const COARSE_TRACE: &str = "nyc_taxi_passengers_2014.csv";
const FIVE_MINUTE_TRACE: &str = "twitter_mentions_aapl_2015.csv";

fn load(name: &str, step: TimeDelta) -> Series {
    let dir = std::env::var_os("PRESCALE_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"));
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; set PRESCALE_TRACES_DIR to the trace folder",
            path.display()
        )
    });
    let points: Vec<(DateTime<Utc>, f64)> = text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(n, line)| {
            let (t, v) = line
                .split_once(',')
                .unwrap_or_else(|| panic!("{}:{}: expected t,v", path.display(), n + 2));
            let t = DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 2));
            let v = v
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 2));
            (t.with_timezone(&Utc), v)
        })
        .collect();
    Series::from_points(points[0].0, step, points).0
}

fn refit(c: &mut Criterion) {
    let trace = load(TRACE, TimeDelta::minutes(1));
    let start = trace.start() + TimeDelta::days(3); // past the first days so 14 full days precede `now`
    let now = start + TimeDelta::days(14);
    let history = trace.window(start, now);
    let settings = ForecastSettings {
        seasonality: Seasonality::Auto,
        horizon: TimeDelta::minutes(66),
        decision: TimeDelta::minutes(6),
    };
    let coarse = load(COARSE_TRACE, TimeDelta::minutes(30));
    let coarse_now = coarse.start() + TimeDelta::days(40);
    let coarse_history = coarse.window(coarse_now - TimeDelta::days(35), coarse_now);
    let policy = Policy::new(0.1, 40);
    let horizon = TimeDelta::minutes(6);
    let refit_and_plan = |history: &Series, now| {
        let model = fit(history, &settings, now);
        let forecast = model.forecast(history, now, horizon);
        plan(&forecast, Some(1.0), &policy, now)
    };
    let mut group = c.benchmark_group("nasa_14d_1min");
    group.sample_size(10);
    group.bench_function("refit_and_plan", |b| b.iter(|| refit_and_plan(&history, now)));
    let model = fit(&history, &settings, now);
    group.bench_function("forecast_and_plan", |b| {
        b.iter(|| {
            let forecast = model.forecast(&history, now, horizon);
            plan(&forecast, Some(1.0), &policy, now)
        })
    });
    // One decision at the next sync, from an engine that has decided every 15 s for the hour before (so the
    // adaptive quantile has shadows running and scores to add).
    let engine = |adaptive: bool| {
        let mut p = policy.clone();
        p.adaptive.enabled = adaptive;
        let mut e = Engine::new(settings.clone(), p, TimeDelta::hours(1));
        e.install(model.clone());
        for k in (1..=240).rev() {
            let t = now - TimeDelta::seconds(15 * k);
            e.decide(&history.visible_at(t), t, t);
        }
        e
    };
    for (name, adaptive) in [("decide_fixed_quantile", false), ("decide_adaptive_quantile", true)] {
        let warmed = engine(adaptive);
        group.bench_function(name, |b| {
            b.iter_batched(
                || warmed.clone(),
                |mut e| e.decide(&history, now, now).map(|d| d.plan.replicas),
                BatchSize::SmallInput,
            )
        });
    }
    // The startup replay: six hours of decisions every 15 s (and their six hourly refits) from a fresh engine, the
    // unit a 3-day replay is twelve of.
    let mut replaying = policy.clone();
    replaying.adaptive.enabled = true;
    let fresh = Engine::new(settings.clone(), replaying, TimeDelta::hours(1));
    group.bench_function("replay_6h", |b| {
        b.iter_batched(
            || fresh.clone(),
            |mut e| e.replay(&history, now - TimeDelta::hours(6), now, TimeDelta::seconds(15)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let mut group = c.benchmark_group("nyc_taxi_35d_30min");
    group.sample_size(10);
    group.bench_function("refit_and_plan", |b| {
        b.iter(|| refit_and_plan(&coarse_history, coarse_now))
    });
    group.finish();
    let five = load(FIVE_MINUTE_TRACE, TimeDelta::minutes(5));
    let five_now = five.start() + TimeDelta::days(15);
    let five_history = five.window(five_now - TimeDelta::days(14), five_now);
    let mut group = c.benchmark_group("twitter_14d_5min");
    group.sample_size(10);
    for (name, effort) in [("fit_full", Effort::Full), ("fit_first", Effort::First)] {
        group.bench_function(name, |b| {
            b.iter(|| fit_with(&five_history, &settings, five_now, effort))
        });
    }
    group.finish();
}

criterion_group!(benches, refit);
criterion_main!(benches);
