//! End to end against a real Prometheus: the targets served from a PromQL source equal those served when the same
//! trace is read from CSV, and when Prometheus dies the HPA sees the last plan until it is too old, then an error.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use tower::ServiceExt;

use prescale::apiserver::api::{self, ApiState};
use prescale::clock::Clock;
use prescale::config::WorkloadConfig;
use prescale::history::prometheus::{PromQuery, PrometheusClient, PrometheusSettings};
use prescale::history::trace::Replay;
use prescale::history::History;
use prescale::pipeline::{Cycle, Workload};
use prescale::series::Series;
use prescale::store::PlanStore;
use support::{demand_query, load_trace, shift_to_end_before, OpenMetrics, Prometheus};

const STEP: TimeDelta = TimeDelta::minutes(10);

fn workload_config(source: &str) -> WorkloadConfig {
    let yaml = format!(
        "prometheus: {{url: http://127.0.0.1:1}}\nworkloads:\n  - name: servegen\n    namespace: llm\n    demand: {source}\n    capacityPerReplica: 120\n    maxReplicas: 40\n    history: 14d\n"
    );
    let config = prescale::config::parse(&yaml, Path::new("e2e.yaml")).unwrap();
    config.workloads.into_iter().next().unwrap()
}

async fn serve(store: Arc<PlanStore>, now: DateTime<Utc>, metric: &str) -> (StatusCode, String) {
    let router = api::router(ApiState {
        store,
        max_forecast_age: TimeDelta::minutes(5),
        clock: Clock::fixed(now),
    });
    let uri =
        format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/llm/{metric}?labelSelector=workload%3Dservegen");
    let response = router
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn setup() -> (Prometheus, Series, DateTime<Utc>) {
    let trace = shift_to_end_before(&load_trace("servegen_lang_m_small.csv"), Utc::now());
    let mut om = OpenMetrics::new();
    om.demand("demand", &[("trace", "servegen")], &trace);
    let prometheus = Prometheus::start(&om);
    // Plan at the end of the trace's last slot (plus scrape lag), so both sources see all 14 days.
    let now = trace.end() + TimeDelta::seconds(30);
    (prometheus, trace, now)
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_and_csv_sources_serve_identical_targets() {
    let (prometheus, trace, now) = setup();
    let client = PrometheusClient::new(&PrometheusSettings::new(prometheus.url())).unwrap();
    let query = demand_query("demand{trace=\"servegen\"}", STEP);
    let from_prometheus: Arc<dyn History> = Arc::new(PromQuery::new(&client, query.clone(), STEP).unwrap());
    let from_csv: Arc<dyn History> = Arc::new(Replay::new(
        trace.clone(),
        PathBuf::from("servegen.csv"),
        trace.start(),
        trace.start(),
    ));

    let mut snapshots = Vec::new();
    let mut stores = Vec::new();
    for (history, source) in [
        (from_prometheus, format!("{{promql: '{query}', step: 10m}}")),
        // The history is handed over directly; the config only needs a source that passes the check.
        (from_csv, "{generator: {profile: llm-chat}, step: 10m}".to_string()),
    ] {
        let store = Arc::new(PlanStore::new());
        let mut cycle = Cycle::new(Workload {
            config: workload_config(&source),
            history,
        });
        let snapshot = cycle
            .run_once(&store, now)
            .await
            .unwrap_or_else(|| panic!("{source}: {:?}", store.statuses()));
        snapshots.push(snapshot);
        stores.push(store);
    }
    let (p, c) = (&snapshots[0], &snapshots[1]);
    assert_eq!(p.data_until, Some(trace.end()), "Prometheus returned the whole trace");
    assert_eq!(p.data_until, c.data_until);
    assert_eq!(p.plan.replicas, c.plan.replicas);
    assert_eq!(p.plan.planned_demand.to_bits(), c.plan.planned_demand.to_bits());
    assert_eq!(p.forecast.median, c.forecast.median);
    assert!(p.plan.replicas >= 1 && p.plan.planned_demand > 0.0);
    for metric in api::METRICS {
        let (ps, pb) = serve(stores[0].clone(), now, metric).await;
        let (cs, cb) = serve(stores[1].clone(), now, metric).await;
        assert_eq!(ps, StatusCode::OK, "{pb}");
        assert_eq!((ps, pb), (cs, cb), "{metric} is served identically from both sources");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn when_prometheus_dies_the_hpa_sees_the_last_plan_then_an_error_then_recovery() {
    let (mut prometheus, _trace, now) = setup();
    let mut settings = PrometheusSettings::new(prometheus.url());
    settings.retries = 1;
    settings.timeout = std::time::Duration::from_millis(800);
    let client = PrometheusClient::new(&settings).unwrap();
    let query = demand_query("demand{trace=\"servegen\"}", STEP);
    let history = Arc::new(PromQuery::new(&client, query.clone(), STEP).unwrap());
    let store = Arc::new(PlanStore::new());
    let mut cycle = Cycle::new(Workload {
        config: workload_config(&format!("{{promql: '{query}', step: 10m}}")),
        history,
    });
    let first = cycle
        .run_once(&store, now)
        .await
        .expect("a plan while Prometheus is up");
    let (status, served) = serve(store.clone(), now, api::METRIC_REPLICAS).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        served.contains(&format!("\"value\":\"{}\"", first.plan.replicas)),
        "{served}"
    );

    prometheus.kill();
    let later = now + TimeDelta::minutes(2);
    assert!(
        cycle.run_once(&store, later).await.is_none(),
        "nothing new is published while Prometheus is down"
    );
    let error = store.status(&first.id).unwrap().error.unwrap();
    assert!(error.contains("unavailable"), "{error}");
    assert_eq!(
        serve(store.clone(), later, api::METRIC_REPLICAS).await,
        (status, served.clone()),
        "the last plan is still fresh"
    );

    let stale = now + TimeDelta::minutes(6);
    assert!(cycle.run_once(&store, stale).await.is_none());
    let (code, body) = serve(store.clone(), stale, api::METRIC_REPLICAS).await;
    assert_eq!(
        code,
        StatusCode::INTERNAL_SERVER_ERROR,
        "too old: the HPA must hold, not act: {body}"
    );
    assert!(
        body.contains("\"kind\":\"Status\"") && !body.contains("connection"),
        "no backend detail leaks: {body}"
    );

    prometheus.launch();
    let back = now + TimeDelta::minutes(7);
    let recovered = cycle
        .run_once(&store, back)
        .await
        .expect("recovers when Prometheus returns");
    assert_eq!(recovered.published_at, back);
    assert_eq!(serve(store.clone(), back, api::METRIC_REPLICAS).await.0, StatusCode::OK);
}
