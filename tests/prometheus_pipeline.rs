//! End to end against a real Prometheus: the targets served from a PromQL source equal those served when the same
//! trace is read from CSV, and when Prometheus dies the HPA sees the last plan until it is too old, then an error.
//! A series that stops while Prometheus stays healthy, and a query that fails or matches nothing, are refused
//! with a Status naming the workload and its problem, and explained and measured as such.

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
use prescale::sre::admin::{self, AdminState};
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

/// GET `path` on the admin server.
async fn admin_get(store: Arc<PlanStore>, now: DateTime<Utc>, path: &str) -> (StatusCode, String) {
    let router = admin::router(AdminState {
        store,
        clock: Clock::fixed(now),
    });
    let response = router
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of `prescale_<name>{namespace="llm",workload="servegen"}` on `/metrics` with every series on.
fn metric(store: Arc<PlanStore>, now: DateTime<Utc>, name: &str) -> Option<f64> {
    use prescale::sre::telemetry::{Detail, Registry};
    let text = Registry::with_detail(store, Clock::fixed(now), Detail::Full).encode();
    let prefix = format!("prescale_{name}{{namespace=\"llm\",workload=\"servegen\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

async fn serve(store: Arc<PlanStore>, now: DateTime<Utc>, metric: &str) -> (StatusCode, String) {
    let router = api::router(ApiState {
        store,
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
    prescale::app::init();
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
    prescale::app::init();
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

/// A demand series that stopped ten days ago while Prometheus stays healthy (`offset -10d` moves the recorded one
/// ten days back, standing in for a dead exporter) is never planned from: the API answers a Status naming the workload and its stale data (not "no workload matches"), the
/// admin API says why, and the data age is on `/metrics` next to its bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_series_ten_days_old_is_refused_not_served_as_now() {
    let (prometheus, _trace, now) = setup();
    prescale::app::init();
    let client = PrometheusClient::new(&PrometheusSettings::new(prometheus.url())).unwrap();
    let query = demand_query("demand{trace=\"servegen\"}", STEP).replacen("s])", "s] offset -10d)", 1);
    assert!(query.ends_with("offset -10d)"), "{query}");
    let store = Arc::new(PlanStore::new());
    let mut cycle = Cycle::new(Workload {
        config: workload_config(&format!("{{promql: '{query}', step: 10m}}")),
        history: Arc::new(PromQuery::new(&client, query.clone(), STEP).unwrap()),
    });
    assert!(
        cycle.run_once(&store, now).await.is_none(),
        "no plan from 10-day-old data: {:?}",
        store.statuses()
    );
    let (code, body) = serve(store.clone(), now, api::METRIC_REPLICAS).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "InternalError");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("llm/servegen") && message.contains("old samples") && !message.contains("matches"),
        "{message}"
    );

    let (code, body) = admin_get(store.clone(), now, "/api/v1/workloads/llm/servegen/explain").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("stale data") && body.contains("maxDataAge"), "{body}");
    let (_, body) = admin_get(store.clone(), now, "/api/v1/workloads").await;
    let views: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(views[0]["refused"], "not_planned", "{body}");
    assert!(views[0]["data_age_seconds"].as_i64().unwrap() > 10 * 86_400, "{body}");

    let age = metric(store.clone(), now, "history_data_age_seconds").expect("the data age is measured");
    assert!(age > 10.0 * 86_400.0, "{age}");
    assert_eq!(metric(store.clone(), now, "history_max_data_age_seconds"), Some(1800.0));
    let text = prescale::sre::telemetry::Registry::new(store.clone(), Clock::fixed(now)).encode();
    assert!(
        text.contains(r#"prescale_serving_refused{namespace="llm",workload="servegen",reason="not_planned"} 1"#),
        "{text}"
    );
}

/// A series that was fresh and stops: the plan made from it is refused once its data is older than `maxDataAge`
/// (30 min at a 10 min step, before `maxForecastAge` would say anything), and the explanation leads with that.
#[tokio::test(flavor = "multi_thread")]
async fn a_series_that_stops_is_refused_once_its_data_is_older_than_max_data_age() {
    let (prometheus, _trace, now) = setup();
    prescale::app::init();
    let client = PrometheusClient::new(&PrometheusSettings::new(prometheus.url())).unwrap();
    let query = demand_query("demand{trace=\"servegen\"}", STEP);
    let store = Arc::new(PlanStore::new().with_max_forecast_age(TimeDelta::hours(1)));
    let mut cycle = Cycle::new(Workload {
        config: workload_config(&format!("{{promql: '{query}', step: 10m}}")),
        history: Arc::new(PromQuery::new(&client, query.clone(), STEP).unwrap()),
    });
    let first = cycle.run_once(&store, now).await.expect("a plan from fresh data");
    assert_eq!(serve(store.clone(), now, api::METRIC_REPLICAS).await.0, StatusCode::OK);

    // The trace ends at `now`: forty minutes on, its newest sample is 40 minutes old.
    let later = now + TimeDelta::minutes(40);
    assert!(
        cycle.run_once(&store, later).await.is_none(),
        "nothing planned from old data"
    );
    let (code, body) = serve(store.clone(), later, api::METRIC_REPLICAS).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body.contains("llm/servegen") && body.contains("data is stale"),
        "{body}"
    );

    let (code, body) = admin_get(store.clone(), later, "/api/v1/workloads/llm/servegen/explain").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let e: prescale::sre::explain::Explanation = serde_json::from_str(&body).unwrap();
    assert_eq!(
        e.refused.as_ref().map(|r| r.reason.as_str()),
        Some("stale_data"),
        "{body}"
    );
    assert!(e.summary.starts_with("NOT SERVED"), "{}", e.summary);
    let text = e.to_text();
    assert!(!text.contains(&format!("served     {}", first.plan.replicas)), "{text}");
    assert!(text.contains("STALE") && text.contains("NOTHING SERVED"), "{text}");
    assert!(!text.contains(" now →"), "old data is not observed now: {text}");
    assert_eq!(
        metric(store.clone(), later, "history_data_age_seconds"),
        Some(40.0 * 60.0 + 30.0)
    );
}

/// A query Prometheus rejects, and one that matches no series, leave a configured workload with no plan: the HPA's
/// answer names the workload and its problem, without Prometheus' words, and is not the 404 of a selector that
/// matches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_or_empty_query_names_the_workload_instead_of_404() {
    let (prometheus, _trace, now) = setup();
    prescale::app::init();
    let client = PrometheusClient::new(&PrometheusSettings::new(prometheus.url())).unwrap();
    for (query, problem) in [
        (
            "sum(rate(demand{trace=\"servegen\"}[5m]) by (",
            "the demand query fails",
        ),
        ("demand{trace=\"nothing-here\"}", "returns no samples"),
    ] {
        let store = Arc::new(PlanStore::new());
        store.expect(prescale::store::WorkloadId {
            namespace: "llm".into(),
            name: "servegen".into(),
        });
        // The config names a query check-config accepts; the history sends the broken one, as a query Prometheus
        // rejects at run time (e.g. a function it does not know) would be.
        let mut cycle = Cycle::new(Workload {
            config: workload_config("{promql: 'demand', step: 10m}"),
            history: Arc::new(PromQuery::new(&client, query.to_owned(), STEP).unwrap()),
        });
        assert!(cycle.run_once(&store, now).await.is_none(), "{query}");
        let (code, body) = serve(store.clone(), now, api::METRIC_REPLICAS).await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{query}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["apiVersion"].as_str()),
            (Some("Status"), Some("v1"))
        );
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains("llm/servegen") && message.contains(problem),
            "{query}: {message}"
        );
        assert!(
            !message.contains("parse error") && !message.contains("bad_data"),
            "{message}"
        );
        assert!(!message.contains("matches labelSelector"), "{message}");
        let (_, explained) = admin_get(store.clone(), now, "/api/v1/workloads/llm/servegen/explain").await;
        assert!(
            explained.contains("no plan") && explained.contains(problem),
            "{explained}"
        );
    }
}
