//! The live cycle through public entry points: history in, a plan in the store out; failures publish nothing.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use prescale::history::synthetic::{Generator, Profile};
use prescale::history::{Fetch, History, HistoryError};
use prescale::pipeline::{Cycle, Workload};
use prescale::series::Series;
use prescale::store::PlanStore;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A workload on `history` with a 3-day window and no startup replay (see [`workload_replaying`]).
fn workload(history: Arc<dyn History>) -> Workload {
    workload_replaying(history, "0s")
}

fn workload_replaying(history: Arc<dyn History>, replay: &str) -> Workload {
    let yaml = format!(
        "workloads:\n  - name: llm\n    demand: {{generator: {{profile: llm-chat}}}}\n    capacityPerReplica: 10\n    \
         maxReplicas: 40\n    history: 3d\n    adaptiveQuantile: {{warmup: 2h, replay: {replay}}}\n"
    );
    let config = prescale::config::parse(&yaml, Path::new("t.yaml")).unwrap();
    Workload {
        config: config.workloads.into_iter().next().unwrap(),
        history,
    }
}

/// A source that fails or returns nothing on demand: faults a real source cannot produce at will.
struct Faulty {
    inner: Generator,
    mode: std::sync::Mutex<&'static str>,
}

impl History for Faulty {
    fn step(&self) -> TimeDelta {
        self.inner.step()
    }
    fn fetch(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fetch<'_> {
        match *self.mode.lock().unwrap() {
            "down" => Box::pin(async {
                Err(HistoryError::Unavailable {
                    message: "connection refused".into(),
                    source: None,
                })
            }),
            "empty" => Box::pin(async move {
                let mut s = Series::empty(from, TimeDelta::minutes(1));
                s.pad_to(to);
                Ok(s)
            }),
            _ => self.inner.fetch(from, to),
        }
    }
    fn describe(&self) -> String {
        "faulty".into()
    }
}

#[tokio::test]
async fn a_cycle_publishes_a_plan_that_covers_observed_demand() {
    let store = PlanStore::new();
    let generator = Generator::new(Profile::LlmChat, 1);
    let mut cycle = Cycle::new(workload(Arc::new(generator)));
    let now = at("2026-03-04T19:00:30Z");
    assert!(!store.is_ready());
    let snap = cycle.run_once(&store, now).await.expect("a plan");
    assert!(store.is_ready());
    assert_eq!(snap.published_at, now);
    let plan = &snap.plan;
    let observed = plan.observed_demand.expect("observed demand at the evening peak");
    assert!(observed > 80.0, "{observed}");
    assert!(
        plan.replicas as f64 >= (observed / 10.0).ceil(),
        "never below observed: {plan:?}"
    );
    assert!(plan.replicas <= 40);
    assert!(plan.planned_demand.is_finite() && plan.planned_demand >= plan.median_demand * 0.999);
    assert_eq!(snap.data_until, Some(at("2026-03-04T19:00:00Z")));
    let status = store.status(&snap.id).unwrap();
    assert_eq!(status.fits, 1);
    assert_eq!(status.slots, 3 * 1440 - 1, "whole slots inside the 3-day window");
    assert!(status.missing > 0, "the generator's gaps stay gaps");

    // The next cycle a minute later reuses the model and fetches only the tail.
    let later = cycle.run_once(&store, now + TimeDelta::minutes(1)).await.unwrap();
    assert_eq!(store.status(&later.id).unwrap().fits, 1);
    assert_eq!(later.data_until, Some(at("2026-03-04T19:01:00Z")));
}

#[tokio::test]
async fn failures_and_missing_data_publish_nothing_new() {
    let store = PlanStore::new();
    let faulty = Arc::new(Faulty {
        inner: Generator::new(Profile::WebFrontend, 2),
        mode: "ok".into(),
    });
    let mut cycle = Cycle::new(workload(faulty.clone()));
    let now = at("2026-03-04T12:00:30Z");
    let first = cycle.run_once(&store, now).await.expect("a plan");

    *faulty.mode.lock().unwrap() = "down";
    assert!(cycle.run_once(&store, now + TimeDelta::minutes(1)).await.is_none());
    let kept = store.get(&first.id).unwrap();
    assert_eq!(
        kept.published_at, now,
        "the last good plan stays; its age decides whether it is served"
    );
    let status = store.status(&first.id).unwrap();
    assert!(
        status.error.as_deref().unwrap().contains("connection refused"),
        "{status:?}"
    );

    *faulty.mode.lock().unwrap() = "ok";
    let back = cycle
        .run_once(&store, now + TimeDelta::minutes(2))
        .await
        .expect("recovers");
    assert_eq!(back.published_at, now + TimeDelta::minutes(2));
    assert!(store.status(&first.id).unwrap().error.is_none());
}

#[tokio::test]
async fn a_source_with_no_samples_is_never_read_as_zero() {
    let store = PlanStore::new();
    let faulty = Arc::new(Faulty {
        inner: Generator::new(Profile::Embeddings, 3),
        mode: "empty".into(),
    });
    let mut cycle = Cycle::new(workload(faulty));
    assert!(cycle.run_once(&store, at("2026-03-04T12:00:30Z")).await.is_none());
    assert!(!store.is_ready());
    let (_, status) = store.statuses().pop().unwrap();
    assert!(status.error.unwrap().starts_with("no data"));
}

#[tokio::test]
async fn readiness_waits_for_every_workload_s_first_cycle() {
    let store = PlanStore::new();
    let mut llm = Cycle::new(workload(Arc::new(Generator::new(Profile::LlmChat, 1))));
    let id = |name: &str| prescale::store::WorkloadId {
        namespace: "default".into(),
        name: name.into(),
    };
    store.expect(id("llm"));
    store.expect(id("other"));
    llm.run_once(&store, at("2026-03-04T12:00:30Z")).await.expect("a plan");
    assert!(!store.is_ready(), "`other` has not finished a cycle yet");
    // A first cycle that ends in a reported problem (no data, source down) counts as finished.
    store.set_status(&id("other"), Default::default());
    assert!(store.is_ready());
}

/// The live loop fits in the background: the first cycle serves the reactive target at once and says it is warming
/// up; the first cycle after the fit ends serves the forecast. No cycle waits for a fit.
#[tokio::test]
async fn a_workload_is_served_from_its_first_cycle_while_its_first_model_is_fitted() {
    use prescale::control::engine::{reactive_plan, Serving, WARMING};
    let store = PlanStore::new();
    let now = at("2026-03-04T19:00:30Z");
    let clock = prescale::clock::Clock::fixed(now);
    let mut cycle = Cycle::new(workload(Arc::new(Generator::new(Profile::LlmChat, 1)))).with_background_fits(clock);
    let first = cycle.run_once(&store, now).await.expect("a plan at once");
    let insight = store.insight(&first.id).unwrap();
    assert_eq!(insight.serving, Serving::Warming);
    assert!(first.forecast.is_empty());
    assert_eq!(first.forecast.fallback.as_deref(), Some(WARMING));
    let observed = first.plan.observed_demand.expect("demand observed");
    assert_eq!(
        first.plan,
        reactive_plan(Some(observed), cycle.engine().policy(), now, None),
        "the reactive target, as an HPA at the fallback utilization would ask for"
    );
    assert_eq!(store.status(&first.id).unwrap().fits, 0);
    assert!(store.is_ready(), "a warming workload is served: the pod is ready");

    cycle.wait_for_fit().await;
    let later = now + TimeDelta::minutes(1);
    let second = cycle.run_once(&store, later).await.expect("a plan");
    let insight = store.insight(&second.id).unwrap();
    assert_ne!(insight.serving, Serving::Warming);
    assert!(!second.forecast.is_empty());
    assert_eq!(second.forecast.fallback, None);
    assert_eq!(
        second.forecast.fitted_at, now,
        "fitted at the clock's time when its turn came"
    );
    assert_eq!(store.status(&second.id).unwrap().fits, 1);
    // The model is fresh: no refit starts, and the next cycle needs none.
    assert!(cycle.run_once(&store, later + TimeDelta::minutes(1)).await.is_some());
    cycle.wait_for_fit().await;
    assert_eq!(store.status(&second.id).unwrap().fits, 1);
}

#[tokio::test]
async fn a_startup_replay_warms_the_adaptive_quantile_while_the_workload_is_served() {
    let store = PlanStore::new();
    let generator = Arc::new(Generator::new(Profile::LlmChat, 1));
    let now = at("2026-03-04T19:00:30Z");
    let interval = TimeDelta::minutes(1);

    // Without a replay the adaptive quantile waits out its warm-up live.
    let mut cold = Cycle::new(workload(generator.clone())).with_interval(interval);
    cold.run_once(&store, now).await.expect("a plan");
    cold.wait_for_replay().await;
    cold.run_once(&store, now + interval).await.expect("a plan");
    let report = cold.engine().service_level().unwrap();
    assert!(!report.warmed_up, "{report:?}");
    assert!(store.statuses()[0].1.replay.is_none());

    let mut warm = Cycle::new(workload_replaying(generator, "3h")).with_interval(interval);
    // The first cycle serves at once and starts the replay; the scores are still cold.
    let first = warm.run_once(&store, now).await.expect("a plan at once, replay or not");
    assert_eq!(first.published_at, now);
    let (_, status) = store.statuses().pop().unwrap();
    let replay = status.replay.expect("a replay under way");
    assert_eq!((replay.from, replay.to), (now - TimeDelta::hours(3), now));
    warm.wait_for_replay().await;
    // The next cycle serves with three hours of replayed decisions behind it.
    warm.run_once(&store, now + interval).await.expect("a plan");
    let report = warm.engine().service_level().unwrap();
    assert!(report.warmed_up && report.scored_seconds >= 2.0 * 3600.0, "{report:?}");
    assert!(
        warm.engine().quality().report().scores.samples > 0,
        "the quality gate warmed up too"
    );
    let (_, status) = store.statuses().pop().unwrap();
    let replay = status.replay.clone().unwrap();
    assert_eq!(replay.state, prescale::store::ReplayState::Done);
    assert_eq!((replay.replayed.decisions, replay.replayed.fits), (180, 3));
    let insight = store.insight(&first.id).unwrap();
    assert_eq!(
        insight.adaptive.as_ref(),
        Some(&report),
        "the page shows the warmed scores"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["replay"]["state"], "done");
    assert_eq!(json["replay"]["decisions"], 180);
}

/// Workloads come and go while the others run: a new one starts, a changed one alone restarts, an unchanged one is
/// left alone (its learning goes on), a deleted one is no longer served.
#[tokio::test]
async fn workloads_are_added_changed_and_removed_without_disturbing_the_others() {
    use prescale::pipeline::{Applied, Options, Pipelines};
    let named = |name: &str, capacity: f64| {
        let mut w = workload(Arc::new(Generator::new(Profile::LlmChat, 1)));
        w.config.id.name = name.into();
        w.config.policy.capacity_per_replica = capacity;
        w
    };
    let id = |name: &str| prescale::store::WorkloadId {
        namespace: "default".into(),
        name: name.into(),
    };
    let store = Arc::new(PlanStore::new());
    let clock = prescale::clock::Clock::fixed(at("2026-03-04T12:00:30Z"));
    let pipelines = Pipelines::new(store.clone(), clock, TimeDelta::seconds(1), Options::default());
    assert_eq!(pipelines.apply(named("a", 10.0)).await, Applied::Started);
    assert_eq!(pipelines.apply(named("b", 10.0)).await, Applied::Started);
    // Served from the first cycle; fitted a cycle or so later (fits run in the background).
    let planned = |name: &str| store.get(&id(name)).is_some() && store.status(&id(name)).is_some_and(|s| s.fits >= 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(planned("a") && planned("b")) {
        assert!(std::time::Instant::now() < deadline, "both plan within a minute");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fits_of_a = store.status(&id("a")).unwrap().fits;
    assert!(fits_of_a >= 1);

    assert_eq!(pipelines.apply(named("a", 10.0)).await, Applied::Unchanged);
    assert_eq!(pipelines.apply(named("b", 5.0)).await, Applied::Restarted);
    assert_eq!(pipelines.config(&id("b")).unwrap().policy.capacity_per_replica, 5.0);
    // b's new task plans with its new capacity: twice the replicas for the same demand.
    let before = store.get(&id("b")).unwrap().plan.replicas;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = store.get(&id("b")).unwrap().plan.replicas;
        if now > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b replans at its new capacity ({before} → {now})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // a was not restarted: its task kept its model (no refit on a fixed clock), so its fit count did not reset.
    assert_eq!(store.status(&id("a")).unwrap().fits, fits_of_a);

    assert!(pipelines.remove(&id("b")).await);
    assert!(!store.knows(&id("b")));
    assert_eq!(store.known_in("default"), vec![id("a")]);
    assert_eq!(pipelines.ids(), vec![id("a")]);
    assert!(!pipelines.remove(&id("b")).await, "already gone");
    assert!(store.is_ready(), "readiness no longer waits for a removed workload");
}

/// A restart keeps what was learned: the state saved by one cycle is adopted by the next process's, which serves
/// the last plan (never below the reactive target) while its first model is fitted, with the SLO record warm.
#[tokio::test]
async fn a_restarted_workload_adopts_its_saved_state_and_serves_its_last_plan() {
    use prescale::control::engine::Serving;
    use prescale::state::{DirStore, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let states = DirStore::new(dir.path());
    let generator = Arc::new(Generator::new(Profile::LlmChat, 1));
    let now = at("2026-03-04T19:00:30Z");
    let interval = TimeDelta::minutes(1);
    let store = PlanStore::new();
    let mut before = Cycle::new(workload_replaying(generator.clone(), "3h")).with_interval(interval);
    before.run_once(&store, now).await.expect("a plan");
    before.wait_for_replay().await;
    let last = before.run_once(&store, now + interval).await.expect("a plan");
    let learned = before.engine().service_level().unwrap();
    assert!(learned.warmed_up, "{learned:?}");
    states.save(&before.state(now + interval)).await.unwrap();

    // The next process: no replay, no model yet.
    let restart = now + interval * 2;
    let store = PlanStore::new();
    let clock = prescale::clock::Clock::fixed(restart);
    let mut after = Cycle::new(workload_replaying(generator.clone(), "3h"))
        .with_interval(interval)
        .with_background_fits(clock.clone());
    assert!(after.restore(&states, TimeDelta::minutes(5)).await);
    assert_eq!(after.engine().service_level().unwrap(), learned, "warm at once");
    let first = after.run_once(&store, restart).await.expect("a plan at once");
    let insight = store.insight(&first.id).unwrap();
    assert_eq!(insight.serving, Serving::Restored);
    // The last plan, never below what observed demand needs at full capacity (a model's plan's floor).
    assert_eq!(
        first.plan.replicas,
        last.plan.replicas.max(insight.reactive_plan.reactive_floor)
    );
    assert!(
        store.status(&first.id).unwrap().replay.is_none(),
        "no replay for a workload with state"
    );
    after.wait_for_fit().await;
    let second = after.run_once(&store, restart + interval).await.expect("a plan");
    let serving = store.insight(&second.id).unwrap().serving;
    assert!(matches!(serving, Serving::Forecast | Serving::Reactive), "{serving:?}");

    // Other settings: the state is not adopted.
    let mut changed = workload_replaying(generator, "3h");
    changed.config.policy.capacity_per_replica = 5.0;
    let mut other = Cycle::new(changed).with_background_fits(clock);
    assert!(!other.restore(&states, TimeDelta::minutes(5)).await);
    assert!(!other.engine().service_level().unwrap().warmed_up);
}

/// The live loop saves each workload's state at its own phase of the save interval, once it has a model.
#[tokio::test]
async fn the_live_loop_saves_each_workload_s_state() {
    use prescale::pipeline::{Options, Pipelines};
    use prescale::state::{DirStore, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let states = Arc::new(DirStore::new(dir.path()));
    let store = Arc::new(PlanStore::new());
    let options = Options {
        states: Some(states.clone()),
        save_interval: TimeDelta::seconds(1),
        ..Options::default()
    };
    let pipelines = Pipelines::new(
        store,
        prescale::clock::Clock::system(),
        TimeDelta::milliseconds(200),
        options,
    );
    let w = workload(Arc::new(Generator::new(Profile::LlmChat, 1)));
    let id = w.config.id.clone();
    pipelines.apply(w).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let saved = loop {
        if let Some(s) = states.load(&id).await.unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no state saved within a minute");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(saved.id(), id);
    assert!(saved.model.is_some(), "saved once a model is in");
    assert!(saved.learned.last_plan.is_some());
    assert!(dir.path().join("default/llm.json").exists());
}
