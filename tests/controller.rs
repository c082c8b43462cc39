//! The PredictiveAutoscaler controller end to end: a real Prometheus holding recorded demand, the stand-in API server
//! (tests/support/apiserver.rs), and the real kube client, watcher and pipelines.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use prescale::clock::Clock;
use prescale::history::prometheus::{PrometheusClient, PrometheusSettings};
use prescale::history::{Fetch, History, HistoryError};
use prescale::k8s::controller::{Controller, HistoryFactory, Settings, FIRST_LIST};
use prescale::k8s::leader;
use prescale::k8s::members::{Member, Membership, View};
use prescale::k8s::status::WriteLimits;
use prescale::pipeline::{Options, Pipelines};
use prescale::store::{PlanStore, WorkloadId};
use support::apiserver::{ApiServer, Kind};
use support::{demand_query, load_trace, shift_to_end_before, OpenMetrics, Prometheus};

const NS: &str = "llm";
const STEP: TimeDelta = TimeDelta::minutes(10);

/// Status limits scaled down for a test that lasts seconds.
const LIMITS: WriteLimits = WriteLimits {
    min_interval: Duration::from_secs(1),
    refresh: Duration::from_secs(3),
    rate: 50.0,
    burst: 50,
    tick: Duration::from_millis(200),
};

/// How often managed HPAs are checked, scaled down likewise.
const HPA_RESYNC: Duration = Duration::from_secs(1);

/// An empty plan store and the pipelines that publish into it, cycling every second on `clock`.
fn running(clock: &Clock) -> (Arc<PlanStore>, Arc<Pipelines>) {
    let store = Arc::new(PlanStore::new());
    let pipelines = Arc::new(Pipelines::new(
        store.clone(),
        clock.clone(),
        TimeDelta::seconds(1),
        Options::default(),
    ));
    (store, pipelines)
}

/// The controller settings of most tests: every namespace, the test write limits, no election.
fn settings() -> Settings {
    Settings {
        namespace: None,
        limits: LIMITS,
        failure_limit: Duration::from_secs(120),
        hpa_resync: HPA_RESYNC,
        election: None,
    }
}

struct Fixture {
    _prometheus: Prometheus,
    api: ApiServer,
    store: Arc<PlanStore>,
    pipelines: Arc<Pipelines>,
    query: String,
    clock: Clock,
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

fn id(name: &str) -> WorkloadId {
    WorkloadId {
        namespace: NS.into(),
        name: name.into(),
    }
}

/// Prometheus with two weeks of recorded demand, and a clock running from just after its end.
struct Demand {
    prometheus: Prometheus,
    clock: Clock,
    /// The demand sources of objects, built as `serve` builds them, on that Prometheus.
    history: HistoryFactory,
}

fn demand() -> Demand {
    let trace = shift_to_end_before(&load_trace("servegen_lang_m_small.csv"), Utc::now());
    let mut om = OpenMetrics::new();
    om.demand("demand", &[("trace", "servegen")], &trace);
    let prometheus = Prometheus::start(&om);
    let base = trace.end() + TimeDelta::seconds(30);
    let started = Utc::now();
    let clock = Clock::from_fn(move || base + (Utc::now() - started));
    let client = PrometheusClient::new(&PrometheusSettings::new(prometheus.url())).unwrap();
    let sources = clock.clone();
    let history: HistoryFactory = Arc::new(move |w| prescale::app::history_for(w, Some(&client), sources.now()));
    Demand {
        prometheus,
        clock,
        history,
    }
}

fn spec_of(query: &str, target: &str, max_replicas: i64) -> Value {
    json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "demand": {"promql": query, "step": "10m"},
        "capacityPerReplica": 120,
        "maxReplicas": max_replicas,
        "history": "14d",
        "seasonality": ["1d"],
        "adaptiveQuantile": {"replay": "0s"},
    })
}

fn query() -> String {
    demand_query("demand{trace=\"servegen\"}", STEP)
}

/// [`demand`], the stand-in API server, and the controller (with `llm/from-file` reserved by the workload file)
/// running against them.
async fn fixture() -> Fixture {
    prescale::app::init();
    let Demand {
        prometheus,
        clock,
        history,
    } = demand();
    let (store, pipelines) = running(&clock);
    let api = ApiServer::start().await;
    let controller = Controller::new(
        api.client(),
        pipelines.clone(),
        store.clone(),
        clock.clone(),
        BTreeSet::from([id("from-file")]),
        history,
        settings(),
    );
    let controller = tokio::spawn(controller.run());
    Fixture {
        _prometheus: prometheus,
        api,
        store,
        pipelines,
        query: query(),
        clock,
        controller,
    }
}

impl Fixture {
    fn spec(&self, target: &str, max_replicas: i64) -> Value {
        spec_of(&self.query, target, max_replicas)
    }

    fn status(&self, name: &str) -> Value {
        self.api
            .get(Kind::Pa, NS, name)
            .map(|o| o["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// `(status, reason, message)` of condition `type_` of `name`.
    fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let status = self.status(name);
        let c = status["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)?
            .clone();
        Some((
            c["status"].as_str()?.into(),
            c["reason"].as_str()?.into(),
            c["message"].as_str()?.into(),
        ))
    }

    fn ready(&self, name: &str) -> bool {
        self.condition(name, "Ready").is_some_and(|(s, _, _)| s == "True")
    }

    fn hpa(&self, name: &str) -> Option<Value> {
        self.api.get(Kind::Hpa, NS, name)
    }

    fn fitted_at(&self, name: &str) -> chrono::DateTime<Utc> {
        self.store
            .entry(&id(name))
            .unwrap()
            .snapshot
            .as_ref()
            .unwrap()
            .forecast
            .fitted_at
    }

    fn fits(&self, name: &str) -> u64 {
        self.store.entry(&id(name)).unwrap().status.as_ref().unwrap().fits
    }

    async fn until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !done(self) {
            assert!(
                !self.controller.is_finished(),
                "the controller ended while waiting until {what}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "not {what} after 120 s; statuses: {:?}",
                self.store.statuses()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_are_planned_changed_deleted_and_refused_one_at_a_time() {
    let f = fixture().await;
    f.api.apply(NS, "a", f.spec("web-a", 40));
    f.api.apply(NS, "b", f.spec("web-b", 40));
    // Ready from the first cycle (the reactive target while warming up), then planned from a model.
    let warming = |f: &Fixture, name: &str| {
        f.condition(name, "ForecastTrusted")
            .is_some_and(|(_, r, _)| r == "Warming")
    };
    f.until("both objects are Ready", |f| f.ready("a") && f.ready("b"))
        .await;
    f.until("both objects have a model", |f| !warming(f, "a") && !warming(f, "b"))
        .await;
    for name in ["a", "b"] {
        let status = f.status(name);
        assert_eq!(status["observedGeneration"], 1);
        assert!(status["currentTarget"].as_i64().unwrap() >= 1, "{status}");
        assert!(status["plannedDemand"].as_f64().unwrap() > 0.0, "{status}");
        assert!(status["model"].as_str().is_some(), "{status}");
        // The generator's daily cycle, unless the recent level forecast better than the seasonal model (then no
        // period is in use).
        match status["model"].as_str() {
            Some("level") => assert_eq!(status["periods"], json!(null), "{status}"),
            _ => assert_eq!(status["periods"], json!(["1d"]), "{status}"),
        }
        assert_eq!(status["slo"], "1% over 7d");
        assert!(status["dataAge"].as_str().is_some() && status["forecastAge"].as_str().is_some());
        // Served: the store answers for it as the external metrics API does.
        let served = f.store.servable(&id(name), f.clock.now()).expect("served");
        assert_eq!(
            i64::from(served.plan.replicas),
            status["currentTarget"].as_i64().unwrap()
        );
        assert_eq!(
            f.condition(name, "Ready").unwrap().1,
            "Serving",
            "{:?}",
            f.condition(name, "Ready")
        );
        // Its managed HPA reads prescale_replicas for it, owned by the object.
        let hpa = f.hpa(name).expect("a managed HPA");
        let uid = f.api.get(Kind::Pa, NS, name).unwrap()["metadata"]["uid"].clone();
        assert_eq!(hpa["metadata"]["ownerReferences"][0]["uid"], uid);
        assert_eq!(hpa["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(hpa["metadata"]["ownerReferences"][0]["kind"], "PredictiveAutoscaler");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], format!("web-{name}"));
        assert_eq!(hpa["spec"]["maxReplicas"], 40);
        let metric = &hpa["spec"]["metrics"][0]["external"];
        assert_eq!(metric["metric"]["name"], "prescale_replicas");
        assert_eq!(metric["metric"]["selector"]["matchLabels"]["workload"], name);
        assert_eq!(metric["target"], json!({"type": "AverageValue", "averageValue": "1"}));
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 300);
        assert_eq!(f.condition(name, "HPAManaged").unwrap().1, "Managed");
    }

    // Change a: only a restarts; b's model is the one it fitted first.
    let (b_fitted, b_fits) = (f.fitted_at("b"), f.fits("b"));
    let a_fitted = f.fitted_at("a");
    let mut spec = f.spec("web-a", 30);
    spec["capacityPerReplica"] = json!(100);
    f.api.apply(NS, "a", spec);
    f.until("a runs its new settings and its HPA follows", |f| {
        f.pipelines
            .config(&id("a"))
            .is_some_and(|c| c.policy.replicas.max() == 30)
            && f.hpa("a").is_some_and(|h| h["spec"]["maxReplicas"] == 30)
            && f.status("a")["observedGeneration"] == 2
    })
    .await;
    f.until("a is planned again", |f| f.fitted_at("a") > a_fitted && f.ready("a"))
        .await;
    assert_eq!(f.pipelines.config(&id("a")).unwrap().policy.capacity_per_replica, 100.0);
    assert_eq!(f.fitted_at("b"), b_fitted, "b was not restarted");
    assert_eq!(f.fits("b"), b_fits, "b was not refitted");
    assert_eq!(f.api.writes("PUT horizontalpodautoscalers llm/a"), 1);
    assert_eq!(f.api.writes("PUT horizontalpodautoscalers llm/b"), 0);

    // Delete b: no longer served; its HPA is left to the garbage collector, owned by b.
    let b_uid = f.api.get(Kind::Pa, NS, "b").unwrap()["metadata"]["uid"].clone();
    f.api.delete(NS, "b");
    f.until("b is gone", |f| f.store.entry(&id("b")).is_none()).await;
    assert!(!f.pipelines.ids().contains(&id("b")));
    assert!(f.pipelines.ids().contains(&id("a")));
    assert_eq!(f.hpa("b").unwrap()["metadata"]["ownerReferences"][0]["uid"], b_uid);
    assert_eq!(f.api.writes("DELETE horizontalpodautoscalers"), 0);

    // An invalid object: refused field by field, nothing served, no HPA.
    let mut bad = f.spec("web-c", 10);
    bad["demand"]["promql"] = json!("sum(rate(requests_total[5m])");
    f.api.apply(NS, "c", bad);
    f.until("c is refused", |f| f.condition("c", "Ready").is_some()).await;
    let (state, reason, message) = f.condition("c", "Ready").unwrap();
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.demand.promql"), "{message}");
    assert!(f.store.entry(&id("c")).is_none());
    assert!(f.hpa("c").is_none());
    assert!(f.status("c")["currentTarget"].is_null());

    // a turns invalid: it stops being served, and its status loses the target it no longer has.
    let mut bad = f.spec("web-a", 30);
    bad["maxReplicas"] = json!(0);
    f.api.apply(NS, "a", bad);
    f.until("a is refused", |f| {
        f.condition("a", "Ready")
            .is_some_and(|(_, reason, _)| reason == "InvalidSpec")
    })
    .await;
    assert!(f.status("a")["currentTarget"].is_null(), "{}", f.status("a"));
    assert!(f.store.entry(&id("a")).is_none());
    assert!(f.pipelines.ids().is_empty());
    assert!(f.condition("a", "Ready").unwrap().2.contains("spec.maxReplicas"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_watch_resumes_and_a_relist_removes_what_was_deleted_meanwhile() {
    let f = fixture().await;
    f.api.apply(NS, "a", f.spec("web-a", 40));
    f.until("a is Ready", |f| f.ready("a")).await;

    // Every watch dropped, then a change: it takes effect once the watch resumes.
    let watches = f.api.watches();
    f.api.drop_watches();
    f.api.apply(NS, "a", f.spec("web-a", 25));
    f.until("the change made after the drop is applied", |f| {
        f.pipelines
            .config(&id("a"))
            .is_some_and(|c| c.policy.replicas.max() == 25)
            && f.hpa("a").is_some_and(|h| h["spec"]["maxReplicas"] == 25)
    })
    .await;
    assert!(f.api.watches() > watches, "the watch was reopened");

    // The watch misses a deletion and its history is compacted: the resumed watch gets 410, the watcher relists,
    // and the workload whose object is gone is stopped.
    f.api.freeze(true);
    f.api.delete(NS, "a");
    f.api.compact();
    f.api.freeze(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(f.pipelines.ids().contains(&id("a")), "the deletion was not seen yet");
    f.api.drop_watches();
    f.until("a is stopped after the relist", |f| f.pipelines.ids().is_empty())
        .await;
    assert!(f.store.entry(&id("a")).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn hpa_conflicts_opt_outs_and_overrides_and_bounded_status_writes() {
    let f = fixture().await;
    // Someone else's HPA already scales web-u.
    let user_hpa = json!({
        "metadata": {"name": "web-u-hpa", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-u"},
                 "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
    });
    f.api.put_hpa(user_hpa.clone());
    f.api.apply(NS, "u", f.spec("web-u", 40));
    // The workload file has llm/from-file.
    f.api.apply(NS, "from-file", f.spec("web-f", 40));
    f.until("u is Ready", |f| f.ready("u")).await;
    let (state, reason, message) = f.condition("u", "HPAManaged").unwrap();
    assert_eq!((state.as_str(), reason.as_str()), ("False", "HPAConflict"));
    assert!(message.contains("web-u-hpa"), "{message}");
    assert!(f.hpa("u").is_none(), "no second HPA for web-u");
    let stored = f.hpa("web-u-hpa").unwrap();
    assert_eq!(stored["spec"], user_hpa["spec"], "the user's HPA is untouched");
    assert_eq!(f.api.writes("PUT horizontalpodautoscalers"), 0);
    assert_eq!(f.api.writes("PATCH horizontalpodautoscalers"), 0);
    assert_eq!(f.api.writes("POST horizontalpodautoscalers"), 0);
    assert_eq!(f.api.writes("DELETE horizontalpodautoscalers"), 0);

    f.until("from-file is refused", |f| f.condition("from-file", "Ready").is_some())
        .await;
    let (state, reason, _) = f.condition("from-file", "Ready").unwrap();
    assert_eq!((state.as_str(), reason.as_str()), ("False", "Conflict"));
    assert!(!f.pipelines.ids().contains(&id("from-file")));

    // Over 8 s of 1 s cycles and 200 ms ticks: u's ages move every second, but with nothing else changing its status
    // is written about every 3 s (refresh); the conflicting object's status never changes, and is written once.
    let u_before = f.api.writes("PATCH predictiveautoscalers/status llm/u");
    let file_before = f.api.writes("PATCH predictiveautoscalers/status llm/from-file");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let u = f.api.writes("PATCH predictiveautoscalers/status llm/u") - u_before;
    let file = f.api.writes("PATCH predictiveautoscalers/status llm/from-file") - file_before;
    // Ages alone: every 3 s, so 2 or 3 writes; one more allowed for a change of target. Without the refresh bound
    // it would be about 8 (once per second), without the minimum interval about 40 (every tick).
    assert!((1..=4).contains(&u), "u's status was written {u} times in 8 s");
    assert_eq!(file, 0, "an unchanging status is not rewritten");
    assert_eq!(f.api.writes("PATCH predictiveautoscalers/status llm/from-file"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_that_keeps_failing_ends_the_controller() {
    prescale::app::init();
    // Nothing listens here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap())).unwrap();
    let clock = Clock::system();
    let (store, pipelines) = running(&clock);
    let history: HistoryFactory = Arc::new(|_| anyhow::bail!("no sources here"));
    let controller = Controller::new(
        client,
        pipelines,
        store,
        clock,
        BTreeSet::new(),
        history,
        Settings {
            namespace: Some(NS.into()),
            limits: LIMITS,
            failure_limit: Duration::from_secs(2),
            hpa_resync: HPA_RESYNC,
            election: None,
        },
    );
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(60), controller.run())
        .await
        .expect("the controller gave up")
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("watching PredictiveAutoscalers has failed for"),
        "{error:#}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_writes_across_objects_share_one_rate_limit() {
    prescale::app::init();
    let api = ApiServer::start().await;
    // 100 invalid objects: each status is written once, and never again while nothing changes.
    for i in 0..100 {
        api.apply(NS, &format!("bad-{i}"), json!({"maxReplicas": 0}));
    }
    let clock = Clock::system();
    let (store, pipelines) = running(&clock);
    let history: HistoryFactory = Arc::new(|_| anyhow::bail!("never asked: every spec is invalid"));
    let (rate, burst) = (50.0, 10);
    let controller = Controller::new(
        api.client(),
        pipelines,
        store,
        clock,
        BTreeSet::new(),
        history,
        Settings {
            namespace: None,
            limits: WriteLimits {
                rate,
                burst,
                tick: Duration::from_millis(50),
                ..LIMITS
            },
            failure_limit: Duration::from_secs(60),
            hpa_resync: HPA_RESYNC,
            election: None,
        },
    );
    let started = std::time::Instant::now();
    let controller = tokio::spawn(controller.run());
    let writes = || api.writes("PATCH predictiveautoscalers/status");
    while writes() < 100 {
        let allowed = f64::from(burst) + rate * started.elapsed().as_secs_f64();
        assert!(
            f64::from(writes() as u32) <= allowed + 1.0,
            "{} writes after {:?}",
            writes(),
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} of 100 statuses written",
            writes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The bucket let 10 through at once and 50 a second after that: 90 more take at least 1.8 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writes(), 100, "unchanging statuses are not rewritten");
    for i in 0..100 {
        let object = api.get(Kind::Pa, NS, &format!("bad-{i}")).unwrap();
        let ready = &object["status"]["conditions"][0];
        assert_eq!(
            (ready["type"].as_str(), ready["reason"].as_str()),
            (Some("Ready"), Some("InvalidSpec"))
        );
        assert_eq!(object["status"]["observedGeneration"], 1);
    }
    controller.abort();
}

/// Waits up to 60 s until `done`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "not {what} after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A demand source that answers only once the test opens it: its workload's first cycle waits until then.
struct Gated {
    inner: Arc<dyn History>,
    open: tokio::sync::watch::Receiver<bool>,
}

impl History for Gated {
    fn step(&self) -> TimeDelta {
        self.inner.step()
    }

    fn fetch(&self, from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>) -> Fetch<'_> {
        let mut open = self.open.clone();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            self.inner.fetch(from, to).await
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_list_then_for_the_first_cycles_of_the_objects_listed() {
    prescale::app::init();
    let Demand {
        prometheus: _prometheus,
        clock,
        history,
    } = demand();
    let (open, gate) = tokio::sync::watch::channel(false);
    let gated: HistoryFactory = Arc::new(move |w| {
        Ok(Arc::new(Gated {
            inner: history(w)?,
            open: gate.clone(),
        }) as Arc<dyn History>)
    });
    let api = ApiServer::start().await;
    api.apply(NS, "a", spec_of(&query(), "web-a", 40));
    api.apply(NS, "bad", json!({"maxReplicas": 0}));
    api.fail_lists(true);
    // No workload file: the objects are all there is.
    let (store, pipelines) = running(&clock);
    let controller = Controller::new(
        api.client(),
        pipelines,
        store.clone(),
        clock,
        BTreeSet::new(),
        gated,
        settings(),
    );
    let controller = tokio::spawn(controller.run());

    // The list fails: readiness waits for it, and says so.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!store.is_ready());
    assert_eq!(store.held_by(), vec![FIRST_LIST]);
    assert!(!store.knows(&id("a")), "nothing listed yet");

    // Listed: a's workload runs and readiness waits for its first cycle, which waits for its demand.
    api.fail_lists(false);
    wait_until("listed", || store.held_by().is_empty() && store.knows(&id("a"))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!store.is_ready(), "a's first cycle has not finished");
    // The invalid object is reported in its status; it has no cycle to wait for.
    let bad = api.get(Kind::Pa, NS, "bad").unwrap();
    assert_eq!(bad["status"]["conditions"][0]["reason"], "InvalidSpec", "{bad}");
    assert!(!store.knows(&id("bad")));

    open.send(true).unwrap();
    wait_until("ready", || store.is_ready()).await;
    assert!(store.get(&id("a")).is_some(), "ready with a's plan published");
    assert!(!controller.is_finished());
    controller.abort();
}

/// `serve` with a workload file listing no workloads and `--watch-objects`: the real binary, its kube client read
/// from a kubeconfig pointing at the stand-in. Not ready while the objects cannot be listed; ready once they are,
/// with nothing to plan.
#[tokio::test(flavor = "multi_thread")]
async fn serve_with_no_workloads_is_ready_once_the_objects_are_listed() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let api = ApiServer::start().await;
    api.fail_lists(true);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("objects-only.yaml");
    std::fs::write(&config, "interval: 30s\n").unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: stand-in, cluster: {{server: '{}'}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: stand-in, user: test, namespace: {NS}}}}}]\n\
             current-context: test\n",
            api.url()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args([
            "serve",
            "--watch-objects",
            "--insecure-no-auth",
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
        // As the downward API sets them: the replica's name in the Lease, and the Lease's namespace.
        .env("POD_NAME", "prescale-5d8f7-x2x9q")
        .env("POD_NAMESPACE", "prescale")
        .env("PRESCALE_LEADER_ELECT_LEASE_DURATION", "3s")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("PRESCALE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start `prescale serve`");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let (mut admin, mut planning) = (None, None);
    while admin.is_none() || planning.is_none() {
        let line = lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            panic!(
                "no banner from serve:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        if let Some(url) = line.strip_prefix("admin: ") {
            admin = Some(url.trim().to_owned());
        }
        if line.starts_with("prescale is planning ") {
            planning = Some(line);
        }
    }
    let (admin, planning) = (admin.unwrap(), planning.unwrap());
    assert_eq!(
        planning,
        "prescale is planning 0 workload(s) of the workload file, and the PredictiveAutoscaler objects of every \
         namespace:"
    );
    let http = reqwest::Client::new();
    let readyz = || async {
        let reply = http.get(format!("{admin}/readyz?verbose")).send().await.unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    };
    // The objects cannot be listed: not ready, and the verbose answer says what it waits for.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, text) = readyz().await;
    assert_eq!(code, 503, "{text}");
    assert!(
        text.contains("[-]waiting for the PredictiveAutoscaler controller's first list of objects"),
        "{text}"
    );
    assert!(child.0.try_wait().unwrap().is_none(), "serve is still running");

    api.fail_lists(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, text) = readyz().await;
        if code == 200 {
            assert!(text.contains("readyz check passed (0 of 0 workloads served"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready 60 s after the list was served: {text}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(child.0.try_wait().unwrap().is_none(), "serve is still running");
    // With nobody else, it leads: it holds the Lease, as the pod, for the duration given.
    let lease = api
        .get(Kind::Lease, "prescale", "prescale-controller")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "prescale-5d8f7-x2x9q", "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 3, "{lease}");
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\nprescale_controller_leader 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_hpa_is_restored_after_an_edit_or_a_deletion_and_removed_when_no_longer_managed() {
    let f = fixture().await;
    f.api.apply(NS, "a", f.spec("web-a", 40));
    f.until("a's HPA is managed", |f| {
        f.condition("a", "HPAManaged").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let uid = f.api.get(Kind::Pa, NS, "a").unwrap()["metadata"]["uid"].clone();
    let written = f.hpa("a").unwrap();

    // Someone edits it: the periodic pass puts back what prescale writes.
    let mut edited = written.clone();
    edited["spec"]["maxReplicas"] = json!(99);
    edited["spec"]["behavior"] = Value::Null;
    f.api.put_hpa(edited);
    let puts = f.api.writes("PUT horizontalpodautoscalers llm/a");
    f.until("the edit is undone", |f| {
        f.hpa("a").is_some_and(|h| h["spec"] == written["spec"])
    })
    .await;
    assert_eq!(f.api.writes("PUT horizontalpodautoscalers llm/a"), puts + 1);

    // Someone deletes it: created again, owned by the object.
    f.api.delete_hpa(NS, "a");
    let posts = f.api.writes("POST horizontalpodautoscalers llm/a");
    f.until("it is created again", |f| f.hpa("a").is_some()).await;
    let hpa = f.hpa("a").unwrap();
    assert_eq!(hpa["spec"], written["spec"]);
    assert_eq!(hpa["metadata"]["ownerReferences"][0]["uid"], uid);
    assert_eq!(f.api.writes("POST horizontalpodautoscalers llm/a"), posts + 1);
    // In step now: left alone, pass after pass.
    let writes = f.api.writes("PUT horizontalpodautoscalers") + f.api.writes("POST horizontalpodautoscalers");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.api.writes("PUT horizontalpodautoscalers") + f.api.writes("POST horizontalpodautoscalers"),
        writes
    );

    // The object no longer asks for one: prescale deletes its own, and the condition goes.
    let mut spec = f.spec("web-a", 40);
    spec["hpa"] = json!({"managed": false});
    f.api.apply(NS, "a", spec.clone());
    f.until("a's HPA is deleted", |f| f.hpa("a").is_none()).await;
    assert_eq!(f.api.writes("DELETE horizontalpodautoscalers llm/a"), 1);
    f.until("the HPAManaged condition is gone", |f| {
        f.status("a")["observedGeneration"] == 2 && f.condition("a", "HPAManaged").is_none()
    })
    .await;
    assert!(f.ready("a") || f.condition("a", "Ready").is_some());

    // The user ships their own HPA with the object's name, as `managed: false` means: never touched.
    let user_hpa = json!({
        "metadata": {"name": "a", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-a"},
                 "minReplicas": 2, "maxReplicas": 40,
                 "metrics": [{"type": "External", "external": {"metric": {"name": "prescale_replicas",
                     "selector": {"matchLabels": {"workload": "a"}}}, "target": {"type": "AverageValue", "averageValue": "1"}}}]},
    });
    f.api.put_hpa(user_hpa.clone());
    // A change of the object, and a few passes.
    spec["maxReplicas"] = json!(35);
    f.api.apply(NS, "a", spec);
    f.until("a's change is applied", |f| f.status("a")["observedGeneration"] == 3)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.hpa("a").unwrap()["spec"],
        user_hpa["spec"],
        "the user's HPA is untouched"
    );
    assert_eq!(f.api.writes("DELETE horizontalpodautoscalers llm/a"), 1);
    assert_eq!(f.api.writes("PUT horizontalpodautoscalers llm/a"), puts + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hpa_someone_makes_later_for_the_same_target_takes_over_from_prescale_s() {
    let f = fixture().await;
    f.api.apply(NS, "u", f.spec("web-u", 40));
    f.until("u's HPA is managed", |f| {
        f.condition("u", "HPAManaged").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    assert!(f.hpa("u").is_some());

    // Someone else's HPA for web-u appears: prescale deletes its own, leaves theirs, and says so.
    let user_hpa = json!({
        "metadata": {"name": "web-u-cpu", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-u"},
                 "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
    });
    f.api.put_hpa(user_hpa.clone());
    f.until("prescale's HPA is gone", |f| f.hpa("u").is_none()).await;
    f.until("u says which HPA it yields to", |f| {
        f.condition("u", "HPAManaged").is_some_and(|(s, reason, message)| {
            s == "False" && reason == "HPAConflict" && message.contains("web-u-cpu")
        })
    })
    .await;
    assert_eq!(f.hpa("web-u-cpu").unwrap()["spec"], user_hpa["spec"]);
    assert_eq!(f.api.writes("DELETE horizontalpodautoscalers llm/u"), 1);
    assert_eq!(f.api.writes("PUT horizontalpodautoscalers llm/web-u-cpu"), 0);
    assert_eq!(f.api.writes("DELETE horizontalpodautoscalers llm/web-u-cpu"), 0);
    // Still served: the user's HPA can read prescale_replicas.
    f.until("u is served", |f| f.ready("u")).await;
    // Pass after pass, none is made again while theirs is there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(f.hpa("u").is_none());
    assert_eq!(f.api.writes("POST horizontalpodautoscalers llm/u"), 1);

    // Theirs goes: prescale manages one again.
    f.api.delete_hpa(NS, "web-u-cpu");
    f.until("prescale's HPA is back", |f| {
        f.hpa("u").is_some() && f.condition("u", "HPAManaged").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
}

/// A demand source that is always down: its workload runs (and its HPA is managed) but never plans, which costs
/// nothing.
struct Down;

impl History for Down {
    fn step(&self) -> TimeDelta {
        STEP
    }

    fn fetch(&self, _: chrono::DateTime<Utc>, _: chrono::DateTime<Utc>) -> Fetch<'_> {
        Box::pin(async {
            Err(HistoryError::Unavailable {
                message: "down for the test".into(),
                source: None,
            })
        })
    }

    fn describe(&self) -> String {
        "down".into()
    }
}

const LEASE: &str = "prescale-controller";
const LEASE_NAMESPACE: &str = "prescale";
const LEASE_DURATION: Duration = Duration::from_secs(2);

fn election(identity: &str) -> leader::Settings {
    leader::Settings {
        name: LEASE.into(),
        namespace: LEASE_NAMESPACE.into(),
        identity: identity.into(),
        duration: LEASE_DURATION,
        failure_limit: Duration::from_secs(60),
    }
}

/// One replica: its own store and pipelines, its controller writing through its own door of the stand-in.
struct Replica {
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    leadership: leader::Leadership,
}

/// Replica `name`'s controller, writing through its own door, its workloads' sources down, elected by `name`.
async fn down_controller(
    api: &ApiServer,
    name: &str,
    store: Arc<PlanStore>,
    pipelines: Arc<Pipelines>,
    clock: Clock,
) -> Controller {
    let history: HistoryFactory = Arc::new(|_| Ok(Arc::new(Down) as Arc<dyn History>));
    Controller::new(
        api.client_as(name).await,
        pipelines,
        store,
        clock,
        BTreeSet::new(),
        history,
        Settings {
            failure_limit: Duration::from_secs(60),
            election: Some(election(name)),
            ..settings()
        },
    )
}

async fn replica(api: &ApiServer, name: &str) -> Replica {
    let clock = Clock::system();
    let (store, pipelines) = running(&clock);
    let controller = down_controller(api, name, store, pipelines, clock).await;
    let leadership = controller.leadership().expect("an election");
    Replica {
        controller: tokio::spawn(controller.run()),
        leadership,
    }
}

fn holder(api: &ApiServer) -> Option<String> {
    let lease = api.get(Kind::Lease, LEASE_NAMESPACE, LEASE)?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_replicas_only_the_leader_writes_and_the_other_takes_over_when_it_dies() {
    prescale::app::init();
    let api = ApiServer::start().await;
    let spec = spec_of("sum(rate(requests_total[2m]))", "web-a", 40);
    api.apply(NS, "a", spec.clone());
    api.apply(NS, "bad", json!({"maxReplicas": 0}));
    let mut replicas = BTreeMap::new();
    for name in ["one", "two"] {
        replicas.insert(name, replica(&api, name).await);
    }
    let generation = |name: &str| api.get(Kind::Pa, NS, name).unwrap()["status"]["observedGeneration"].clone();
    wait_until("a leader wrote both statuses and a's HPA", || {
        holder(&api).is_some()
            && generation("a") == 1
            && generation("bad") == 1
            && api.get(Kind::Hpa, NS, "a").is_some()
    })
    .await;
    let leader = holder(&api).unwrap();
    let follower = if leader == "one" { "two" } else { "one" };
    assert!(replicas[leader.as_str()].leadership.is_leader());
    assert!(!replicas[follower].leadership.is_leader());

    // Changes of an object and of its HPA, over two Lease durations: the leader writes them, the follower nothing,
    // though it runs every workload too.
    api.apply(NS, "bad", json!({"maxReplicas": -1}));
    let mut edited = api.get(Kind::Hpa, NS, "a").unwrap();
    edited["spec"]["maxReplicas"] = json!(99);
    api.put_hpa(edited);
    wait_until("the leader wrote bad's new status and restored a's HPA", || {
        generation("bad") == 2 && api.get(Kind::Hpa, NS, "a").unwrap()["spec"]["maxReplicas"] == 40
    })
    .await;
    tokio::time::sleep(2 * LEASE_DURATION).await;
    assert_eq!(
        holder(&api).as_deref(),
        Some(leader.as_str()),
        "the leader kept the Lease"
    );
    assert!(api.writes_via(&leader, "PATCH", "/predictiveautoscalers/bad/status") >= 2);
    assert!(api.writes_via(&leader, "PUT", "/horizontalpodautoscalers/a") >= 1);
    assert_eq!(api.object_writes_via(follower), 0, "the follower wrote nothing");
    assert!(api.writes_via(&leader, "PUT", "/leases/") >= 2, "the leader renews");

    // The leader dies: the follower takes over within about a Lease duration and writes what changes.
    let died = std::time::Instant::now();
    replicas.remove(leader.as_str()).unwrap().controller.abort();
    api.apply(NS, "bad", json!({"maxReplicas": -2}));
    wait_until("the follower wrote bad's status", || generation("bad") == 3).await;
    let took = died.elapsed();
    assert!(
        took < 2 * LEASE_DURATION + Duration::from_secs(1),
        "the new leader wrote {took:?} after the old one died"
    );
    assert_eq!(holder(&api).as_deref(), Some(follower));
    let lease = api.get(Kind::Lease, LEASE_NAMESPACE, LEASE).unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);
    assert!(replicas[follower].leadership.is_leader());
    assert!(api.writes_via(follower, "PATCH", "/predictiveautoscalers/bad/status") >= 1);
    // It checks the managed HPAs too.
    let mut edited = api.get(Kind::Hpa, NS, "a").unwrap();
    edited["spec"]["maxReplicas"] = json!(77);
    api.put_hpa(edited);
    wait_until("the new leader restored a's HPA", || {
        api.get(Kind::Hpa, NS, "a").unwrap()["spec"]["maxReplicas"] == 40
    })
    .await;
    assert!(api.writes_via(follower, "PUT", "/horizontalpodautoscalers/a") >= 1);
    // What the old leader wrote and nothing changed since was not written again: a's status is the same.
    assert_eq!(api.writes_via(follower, "PATCH", "/predictiveautoscalers/a/status"), 0);
    assert!(!replicas[follower].controller.is_finished());
}

/// A sharded replica: its pipelines and controller follow a membership view the test sets.
struct Sharded {
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    view: tokio::sync::watch::Sender<View>,
}

async fn sharded(api: &ApiServer, name: &str, members: &[Member]) -> Sharded {
    let clock = Clock::system();
    let (view, seen) = tokio::sync::watch::channel(View {
        me: name.into(),
        joined: true,
        members: members.to_vec(),
    });
    let membership = Membership::new(seen);
    let store = Arc::new(PlanStore::new());
    let pipelines = Arc::new(
        Pipelines::new(store.clone(), clock.clone(), TimeDelta::seconds(1), Options::default())
            .with_membership(membership.clone()),
    );
    tokio::spawn(pipelines.clone().follow());
    // Its election is dropped when sharded: the owners write.
    let controller = down_controller(api, name, store, pipelines, clock)
        .await
        .with_membership(membership);
    assert!(controller.leadership().is_none(), "no election among sharded replicas");
    Sharded {
        controller: tokio::spawn(controller.run()),
        view,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sharded_replicas_each_write_the_objects_they_own_and_take_over_a_leaving_one_s() {
    prescale::app::init();
    let api = ApiServer::start().await;
    let members: Vec<Member> = ["one", "two"]
        .iter()
        .map(|m| Member {
            identity: (*m).into(),
            address: String::new(),
        })
        .collect();
    let both = View {
        me: "one".into(),
        joined: true,
        members: members.clone(),
    };
    let names: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let owner = |name: &str| both.owner(&id(name)).unwrap().identity.clone();
    let of = |who: &str| -> Vec<String> { names.iter().filter(|n| owner(n) == who).cloned().collect() };
    let (of_one, of_two) = (of("one"), of("two"));
    assert!(!of_one.is_empty() && !of_two.is_empty(), "{of_one:?} {of_two:?}");
    for (i, name) in names.iter().enumerate() {
        api.apply(
            NS,
            name,
            spec_of("sum(rate(requests_total[2m]))", &format!("web-{i}"), 40),
        );
    }
    let mut replicas = BTreeMap::new();
    for name in ["one", "two"] {
        replicas.insert(name, sharded(&api, name, &members).await);
    }
    let generation = |name: &str| api.get(Kind::Pa, NS, name).unwrap()["status"]["observedGeneration"].clone();
    wait_until("every object's status and HPA written", || {
        names
            .iter()
            .all(|n| generation(n) == 1 && api.get(Kind::Hpa, NS, n).is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Each object's status and HPA came from its owner alone.
    for (who, other) in [("one", "two"), ("two", "one")] {
        assert_eq!(
            api.writes_via(who, "POST", "/horizontalpodautoscalers"),
            of(who).len(),
            "{who}'s HPAs"
        );
        for name in of(who) {
            let status = format!("/predictiveautoscalers/{name}/status");
            assert!(
                api.writes_via(who, "PATCH", &status) >= 1,
                "{who} wrote {name}'s status"
            );
            assert_eq!(
                api.writes_via(other, "PATCH", &status),
                0,
                "{other} wrote {name}'s status"
            );
        }
    }

    // two dies and leaves one's view: one writes two's objects from now on, and checks their HPAs first.
    replicas["two"].controller.abort();
    replicas["one"]
        .view
        .send_modify(|v| v.members.retain(|m| m.identity == "one"));
    let taken = &of_two[0];
    api.apply(NS, taken, spec_of("sum(rate(requests_total[2m]))", "web-taken", 41));
    let mut edited = api.get(Kind::Hpa, NS, &of_two[of_two.len() - 1]).unwrap();
    edited["spec"]["maxReplicas"] = json!(99);
    api.put_hpa(edited);
    wait_until("one wrote the taken object's new status and restored its HPA", || {
        generation(taken) == 2
            && api.get(Kind::Hpa, NS, taken).unwrap()["spec"]["maxReplicas"] == 41
            && api.get(Kind::Hpa, NS, &of_two[of_two.len() - 1]).unwrap()["spec"]["maxReplicas"] == 40
    })
    .await;
    assert!(api.writes_via("one", "PATCH", &format!("/predictiveautoscalers/{taken}/status")) >= 1);
    let restored = format!("/horizontalpodautoscalers/{}", of_two[of_two.len() - 1]);
    assert!(api.writes_via("one", "PUT", &restored) >= 1, "one restored it");
    assert!(!replicas["one"].controller.is_finished());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires_and_an_elector_cut_off_ends() {
    prescale::app::init();
    let api = ApiServer::start().await;
    let settings = leader::Settings {
        failure_limit: Duration::from_secs(4),
        ..election("alone")
    };
    let (elector, leadership) = leader::elector(api.client(), settings);
    let elector = tokio::spawn(elector.run());
    wait_until("it leads", || leadership.is_leader()).await;
    assert_eq!(holder(&api).as_deref(), Some("alone"));

    // The Lease cannot be renewed: leadership ends before any other replica could take the Lease over.
    api.fail_leases(true);
    let cut = std::time::Instant::now();
    wait_until("it steps down", || !leadership.is_leader()).await;
    assert!(
        cut.elapsed() < LEASE_DURATION,
        "still leading {:?} after the last possible renewal",
        cut.elapsed()
    );
    // Still failing at the failure limit: the elector ends, with an error naming the Lease.
    let error = tokio::time::timeout(Duration::from_secs(20), elector)
        .await
        .expect("the elector gave up")
        .unwrap()
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("the Lease prescale/prescale-controller could not be read or written for"),
        "{error:#}"
    );
    assert!(cut.elapsed() >= Duration::from_secs(4));
}
