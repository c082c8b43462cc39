//! `prescale backtest --config` as a user runs it: workloads read from a real Prometheus (and from a recorded trace),
//! backtested with their own capacity and lead time, published into a ConfigMap through a kubeconfig, and served
//! back by the reader at `/api/v1/backtests` and as metrics.
//!
//! The Kubernetes side is a stand-in for the two ConfigMap endpoints the feature uses (GET, and PATCH with
//! server-side apply) answering with k8s-openapi's own types, reached through a real kubeconfig and the real kube
//! client: a cluster cannot be started here.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::Value;
use tower::ServiceExt;

use prescale::backtest::publish::{self, BacktestSummary, ConfigMapRef, PublishedBacktests};
use prescale::series::Series;
use prescale::store::WorkloadId;
use support::{demand_query, load_trace, shift_to_end_before, OpenMetrics, Prometheus};

const STEP: TimeDelta = TimeDelta::minutes(10);
const CAPACITY: f64 = 120.0;

fn binary() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn write_csv(series: &Series, path: &Path) {
    let mut text = String::from("timestamp,value\n");
    for (t, v) in series.points() {
        text.push_str(&format!("{},{v}\n", rfc3339(t)));
    }
    std::fs::write(path, text).unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// The kube-apiserver stand-in: GET and server-side-apply PATCH of ConfigMaps, nothing else.

#[derive(Default)]
struct Cluster {
    config_maps: BTreeMap<(String, String), ConfigMap>,
    /// (method, query string, content type, authorization) of every request.
    requests: Vec<(String, String, String, String)>,
    resource_version: u64,
}

type Shared = Arc<Mutex<Cluster>>;

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = Status {
        code: Some(i32::from(code)),
        message: Some(message),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        ..Status::default()
    };
    let mut value = serde_json::to_value(body).unwrap();
    value["kind"] = "Status".into();
    value["apiVersion"] = "v1".into();
    (StatusCode::from_u16(code).unwrap(), Json(value)).into_response()
}

fn record(cluster: &Shared, method: &str, query: &BTreeMap<String, String>, headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    cluster
        .lock()
        .unwrap()
        .requests
        .push((method.into(), query, header("content-type"), header("authorization")));
}

fn with_kind(config_map: &ConfigMap) -> Json<Value> {
    let mut value = serde_json::to_value(config_map).unwrap();
    value["kind"] = "ConfigMap".into();
    value["apiVersion"] = "v1".into();
    Json(value)
}

async fn get_config_map(
    State(cluster): State<Shared>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    record(&cluster, "GET", &query, &headers);
    let found = cluster
        .lock()
        .unwrap()
        .config_maps
        .get(&(namespace, name.clone()))
        .cloned();
    match found {
        Some(config_map) => with_kind(&config_map).into_response(),
        None => status(404, "NotFound", format!("configmaps \"{name}\" not found")),
    }
}

/// Server-side apply with a single field manager: the applied data and labels become the object's.
async fn apply_config_map(
    State(cluster): State<Shared>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(&cluster, "PATCH", &query, &headers);
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/apply-patch+yaml") {
        return status(
            415,
            "UnsupportedMediaType",
            "only server-side apply is served here".into(),
        );
    }
    let applied: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", e.to_string()),
    };
    if applied["kind"] != "ConfigMap" || applied["apiVersion"] != "v1" {
        return status(400, "BadRequest", "apply needs apiVersion v1 and kind ConfigMap".into());
    }
    let applied: ConfigMap = serde_json::from_value(applied).unwrap();
    if applied.metadata.name.as_deref() != Some(name.as_str()) {
        return status(400, "BadRequest", "the name in the body does not match the URL".into());
    }
    let mut cluster = cluster.lock().unwrap();
    cluster.resource_version += 1;
    let version = cluster.resource_version.to_string();
    let entry = cluster
        .config_maps
        .entry((namespace.clone(), name.clone()))
        .or_default();
    entry.metadata.name = Some(name);
    entry.metadata.namespace = Some(namespace);
    entry.metadata.resource_version = Some(version);
    entry.metadata.labels = applied.metadata.labels;
    entry.data = applied.data;
    with_kind(entry).into_response()
}

/// Starts the stand-in on a loopback port; returns its state and a kubeconfig file pointing at it.
async fn start_cluster(dir: &Path) -> (Shared, PathBuf) {
    let cluster: Shared = Arc::default();
    let router = Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/configmaps/{name}",
            get(get_config_map).patch(apply_config_map),
        )
        .with_state(cluster.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: backtest\n  user:\n    token: backtest-token\ncontexts:\n- name: stand-in\n  context:\n    \
             cluster: stand-in\n    user: backtest\n    namespace: prescale\ncurrent-context: stand-in\n"
        ),
    )
    .unwrap();
    (cluster, kubeconfig)
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    prescale::apiserver::tls::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn report(dir: &Path) -> Value {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn config_workloads_are_backtested_published_and_served() {
    let trace = shift_to_end_before(&load_trace("servegen_lang_m_small.csv"), Utc::now());
    let mut om = OpenMetrics::new();
    om.demand("demand", &[("trace", "servegen")], &trace);
    let prometheus = Prometheus::start(&om);
    let dir = tempfile::tempdir().unwrap();
    write_csv(&trace, &dir.path().join("servegen.csv"));
    let query = demand_query("demand{trace=\"servegen\"}", STEP);
    let workload = |name: &str, demand: String| {
        format!(
            "  - name: {name}\n    namespace: llm\n    demand: {demand}\n    capacityPerReplica: {CAPACITY}\n    \
             leadTime: 5m\n    quantile: 0.9\n    refitInterval: 2h\n    maxReplicas: 40\n    \
             serviceLevel: {{maxUnserved: 0.5%}}\n"
        )
    };
    let config = format!(
        "prometheus:\n  url: {}\nworkloads:\n{}{}",
        prometheus.url(),
        workload("servegen", format!("{{promql: '{query}', step: 10m}}")),
        workload("servegen-csv", "{trace: servegen.csv, step: 10m}".into()),
    );
    let config_path = dir.path().join("prescale.yaml");
    std::fs::write(&config_path, config).unwrap();
    let (cluster, kubeconfig) = start_cluster(dir.path()).await;

    // A two-day scored window ending with the trace; the 7 days before it are the warm-up.
    let to = trace.end();
    let from = to - TimeDelta::days(2);
    let out = dir.path().join("out");
    let run = binary()
        .args(["backtest", "--quiet", "--config"])
        .arg(&config_path)
        .args(["--from", &rfc3339(from), "--to", &rfc3339(to), "--out"])
        .arg(&out)
        .args(["--publish-configmap", "prescale/prescale-backtests"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("PRESCALE_BACKTEST_LEADS")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("== llm/servegen (promql last_over_time"), "{stdout}");
    assert!(
        stdout.contains("published 2 workload summaries to ConfigMap prescale/prescale-backtests"),
        "{stdout}"
    );

    // Each workload ran with its own capacity and lead, over the requested window after a 7-day warm-up.
    let from_prometheus = report(&out.join("llm.servegen"));
    let from_csv = report(&out.join("llm.servegen-csv"));
    for r in [&from_prometheus, &from_csv] {
        let s = &r["settings"];
        assert_eq!(s["capacity_per_replica"], CAPACITY);
        assert_eq!(s["leads_seconds"], serde_json::json!([300]));
        assert_eq!(s["refit_interval_seconds"], 7200);
        assert_eq!(s["history_seconds"], 7.0 * 86_400.0);
        assert_eq!(s["scored_start"], rfc3339(from));
        assert_eq!(s["trace_end"], rfc3339(to));
        let present = trace.points().filter(|(t, _)| (from..to).contains(t)).count();
        assert_eq!(
            s["scored_ticks"],
            present * 40,
            "ticks with demand: 40 per present 10-minute slot"
        );
        assert_eq!(s["ticks"], 2 * 5760);
        // Every policy, the predictive one at the workload's own SLO, judged against the reactive frontier.
        assert_eq!(r["runs"].as_array().unwrap().len(), 5);
        assert_eq!(s["slos"], serde_json::json!([0.005]));
        assert_eq!(r["runs"][2]["slo"], 0.005);
        assert_eq!(r["frontier"][0]["points"].as_array().unwrap().len(), 14);
        assert_eq!(r["slo_results"].as_array().unwrap().len(), 1);
        assert_eq!(r["slo_results"][0]["slo"], 0.005);
    }
    assert!(out.join("llm.servegen/ticks/predictive_L5m.csv").is_file());
    assert!(out.join("llm.servegen/chart_L5m.svg").is_file());
    // The same demand read from Prometheus and from the CSV scores identically, policy by policy.
    assert_eq!(from_prometheus["runs"], from_csv["runs"]);
    assert_eq!(
        from_prometheus["settings"]["p99_demand"],
        from_csv["settings"]["p99_demand"]
    );
    let predictive = &from_prometheus["runs"][2];
    assert_eq!(predictive["policy"], "predictive");
    let unserved = predictive["scores"]["unserved_fraction"].as_f64().unwrap();
    assert!(unserved.is_finite() && (0.0..1.0).contains(&unserved));

    // The ConfigMap holds one summary per workload, reached through the kubeconfig with server-side apply.
    let stored = cluster
        .lock()
        .unwrap()
        .config_maps
        .get(&("prescale".to_owned(), "prescale-backtests".to_owned()))
        .cloned()
        .expect("the ConfigMap was created");
    let data = stored.data.clone().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["llm.servegen-csv.json", "llm.servegen.json"]
    );
    let summary: BacktestSummary = serde_json::from_str(&data["llm.servegen.json"]).unwrap();
    assert_eq!(
        (summary.namespace.as_str(), summary.workload.as_str()),
        ("llm", "servegen")
    );
    assert_eq!((summary.from, summary.to), (from, to));
    assert_eq!(summary.capacity_per_replica, CAPACITY);
    assert!(summary.generated_at > Utc::now() - TimeDelta::minutes(10));
    assert_eq!(summary.scores.len(), 5);
    assert_eq!(summary.slo, Some(0.005));
    let score = summary.scores.iter().find(|s| s.policy == "predictive").unwrap();
    assert_eq!(score.lead, "5m");
    assert_eq!(score.unserved_fraction, unserved);
    let oracle_hours = from_prometheus["runs"][3]["scores"]["replica_hours"].as_f64().unwrap();
    let ratio = score.replica_hours_ratio_to_oracle.unwrap();
    assert!((ratio - score.replica_hours / oracle_hours).abs() < 1e-12);
    assert_eq!(summary.bar.len(), 1);
    let result = &from_prometheus["slo_results"][0];
    assert_eq!(summary.bar[0].slo, Some(0.005));
    assert_eq!(summary.bar[0].passed, result["bar"]["passed"] == true);
    assert_eq!(summary.bar[0].slo_ok, result["bar"]["slo_ok"].as_bool());
    assert_eq!(
        summary.bar[0].equal_service_savings,
        result["equal_service_savings"].as_f64()
    );
    assert_eq!(
        summary.bar[0].unserved_ok,
        Some(
            unserved
                <= from_prometheus["runs"][1]["scores"]["unserved_fraction"]
                    .as_f64()
                    .unwrap()
        )
    );
    {
        let cluster = cluster.lock().unwrap();
        let patch = cluster.requests.iter().find(|r| r.0 == "PATCH").expect("an apply");
        assert!(
            patch.1.contains("fieldManager=prescale-backtest") && patch.1.contains("force=true"),
            "{patch:?}"
        );
        assert!(
            cluster.requests.iter().all(|r| r.3 == "Bearer backtest-token"),
            "{:?}",
            cluster.requests
        );
    }

    // The reader polls the same ConfigMap and serves it.
    let client = kube_client(&kubeconfig).await;
    let published = PublishedBacktests::new();
    let poller = tokio::spawn(published.clone().poll(
        client.clone(),
        "prescale".into(),
        "prescale-backtests".into(),
        Duration::from_millis(100),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while published.summaries().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader never read the ConfigMap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = published
        .router()
        .oneshot(Request::get(publish::ROUTE).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let listed: Vec<BacktestSummary> = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], summary, "served as published");
    assert_eq!(listed[1].workload, "servegen-csv");
    let mut registry = prometheus_client::registry::Registry::with_prefix("prescale");
    published.register_metrics(&mut registry, prescale::sre::telemetry::Detail::Full);
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    // Compare numbers, not text: two shortest round-trip spellings of one f64 can differ in the last digit.
    let sample = |series: &str| -> f64 {
        let prefix = format!("{series}{{namespace=\"llm\",workload=\"servegen\",policy=\"predictive\",lead=\"5m\"}} ");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing from:\n{metrics}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert_eq!(sample("prescale_backtest_unserved_fraction"), unserved);
    assert_eq!(sample("prescale_backtest_replica_hours_ratio_to_oracle"), ratio);
    assert!(
        metrics.contains("prescale_backtest_generated_timestamp_seconds{namespace=\"llm\",workload=\"servegen-csv\"}")
    );

    // Republishing one workload keeps the other configured workload's last summary and drops unconfigured keys.
    let target: ConfigMapRef = "prescale/prescale-backtests".parse().unwrap();
    let stale = "{\"not\": \"configured any more\"}".to_owned();
    cluster
        .lock()
        .unwrap()
        .config_maps
        .get_mut(&("prescale".to_owned(), "prescale-backtests".to_owned()))
        .unwrap()
        .data
        .as_mut()
        .unwrap()
        .insert("llm.retired.json".into(), stale);
    let mut newer = summary.clone();
    newer.generated_at += TimeDelta::hours(24);
    let configured: Vec<WorkloadId> = ["servegen", "servegen-csv"]
        .map(|name| WorkloadId {
            namespace: "llm".into(),
            name: name.into(),
        })
        .to_vec();
    let applied = publish::publish(client, &target, std::slice::from_ref(&newer), &configured)
        .await
        .unwrap();
    let data = applied.data.unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["llm.servegen-csv.json", "llm.servegen.json"]
    );
    assert_eq!(
        data["llm.servegen-csv.json"],
        stored.data.as_ref().unwrap()["llm.servegen-csv.json"]
    );
    assert_eq!(
        serde_json::from_str::<BacktestSummary>(&data["llm.servegen.json"]).unwrap(),
        newer
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while published.summaries()[0].generated_at != newer.generated_at {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader never picked up the new summary"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
}

#[tokio::test]
async fn bad_flags_name_the_flag_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prescale.yaml");
    std::fs::write(
        &config,
        "workloads:\n  - name: web\n    demand: {generator: {profile: web-frontend}}\n    capacityPerReplica: 5\n    maxReplicas: 10\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 9] = [
        (
            &["--trace", "t.csv", "--config", config, "--from", "-7d"],
            &["--trace", "--config", "cannot be used with"],
        ),
        (&["--config", config], &["--config needs --from", "--from -7d"]),
        (
            &["--trace", "t.csv", "--from", "-7d"],
            &["--trace", "cannot be used with '--from"],
        ),
        (&["--from", "-7d"], &["--trace", "--config", "required"]),
        (
            &["--config", config, "--from", "yesterday"],
            &["--from", "RFC3339", "-7d"],
        ),
        (
            &["--config", config, "--from", "-1h", "--to", "-2h"],
            &["--from", "is not before --to"],
        ),
        (
            &["--config", config, "--from", "-1d", "--workload", "api"],
            &["--workload api", "configured: default/web"],
        ),
        (
            &["--config", config, "--from", "-1d", "--publish-configmap", "backtests"],
            &["--publish-configmap", "write NAMESPACE/NAME"],
        ),
        (
            &["--config", config, "--from", "-1d", "--slo", "0.1"],
            &["--slo", "with a % sign", "e.g. 0.1%"],
        ),
    ];
    for (args, expected) in cases {
        let output = binary()
            .arg("backtest")
            .args(args)
            .env_remove("PRESCALE_BACKTEST_TRACE")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        for text in expected {
            assert!(stderr.contains(text), "{args:?}: `{text}` not in:\n{stderr}");
        }
    }
}

#[tokio::test]
async fn generator_workloads_run_over_relative_windows_and_can_be_selected() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prescale.yaml");
    let workload = |name: &str| {
        format!(
            "  - name: {name}\n    namespace: shop\n    demand: {{generator: {{profile: web-frontend, seed: 3}}}}\n    \
             capacityPerReplica: 7\n    leadTime: 2m\n    maxReplicas: 10\n    fallbackUtilization: 0.8\n    \
             quality: {{autoDemote: false, window: 30, minSamples: 10}}\n"
        )
    };
    std::fs::write(&config, format!("workloads:\n{}{}", workload("web"), workload("api"))).unwrap();
    let out = dir.path().join("out");
    let run = binary()
        .args([
            "backtest",
            "--quiet",
            "--policies",
            "reactive-70,oracle",
            "--workload",
            "shop/web",
            "--config",
        ])
        .arg(&config)
        .args(["--from", "-6h", "--to", "now", "--out"])
        .arg(&out)
        .env_remove("PRESCALE_BACKTEST_LEADS")
        .output()
        .await
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!out.join("shop.api").exists(), "only the selected workload runs");
    let r = report(&out.join("shop.web"));
    let s = &r["settings"];
    assert_eq!(s["capacity_per_replica"], 7.0);
    assert_eq!(s["leads_seconds"], serde_json::json!([120]));
    assert_eq!(s["history_seconds"], 7.0 * 86_400.0, "a week of warm-up before --from");
    // The predictive policy is judged and falls back as the workload would in production.
    assert_eq!(s["fallback_utilization"], 0.8);
    assert_eq!(s["quality"]["autoDemote"], false);
    assert_eq!(
        (s["quality"]["window"].as_u64(), s["quality"]["minSamples"].as_u64()),
        (Some(30), Some(10))
    );
    let scored = s["ticks"].as_u64().unwrap();
    // Six hours of 15 s ticks, less the part of the last minute that has not ended yet.
    assert!((1436..=1440).contains(&scored), "{scored} ticks");
    assert_eq!(r["runs"].as_array().unwrap().len(), 2);
}

/// The shipped CronJob runs flags the binary accepts, publishes where its RBAC lets it, and the server may read it.
#[test]
fn the_nightly_cronjob_publishes_where_its_rbac_allows() {
    use clap::Parser;
    let kubectl = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|c| c.is_file())
        .expect("kubectl not found on PATH: install kubectl (Debian: `apt-get install -y kubectl`)");
    let output = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let objects: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let cronjob = find("CronJob", "prescale-backtest");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    let deployment = find("Deployment", "prescale");
    assert_eq!(
        container["image"],
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    );
    let config_volume = |pod: &Value| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "config")
            .map(|v| v["configMap"]["name"].clone())
    };
    assert_eq!(
        config_volume(pod),
        config_volume(&deployment["spec"]["template"]["spec"])
    );

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }
    #[derive(clap::Subcommand)]
    enum Sub {
        Backtest(prescale::backtest::BacktestArgs),
    }
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let Sub::Backtest(parsed) = Cli::try_parse_from(std::iter::once("prescale").chain(args))
        .unwrap_or_else(|e| panic!("the CronJob's args are rejected: {e}"))
        .command;
    assert_eq!(parsed.config.as_deref(), Some(Path::new("/etc/prescale/config.yaml")));
    assert!(parsed.out.starts_with("/tmp"), "outputs go to the writable emptyDir");
    let target = parsed.publish_configmap.expect("the CronJob publishes");

    // The writer may get and patch exactly that ConfigMap; the server's account may get it.
    let namespace = cronjob["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(target.namespace, namespace);
    let allowed = |account: &str, verb: &str| {
        objects
            .iter()
            .filter(|b| b["kind"] == "RoleBinding" && b["metadata"]["namespace"] == namespace)
            .any(|b| {
                let subject = serde_json::json!({"kind": "ServiceAccount", "name": account, "namespace": namespace});
                b["subjects"].as_array().unwrap().contains(&subject)
                    && find("Role", b["roleRef"]["name"].as_str().unwrap())["rules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| {
                            r["resources"] == serde_json::json!(["configmaps"])
                                && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
                                && r["resourceNames"] == serde_json::json!([target.name])
                        })
            })
    };
    let writer = pod["serviceAccountName"].as_str().unwrap();
    find("ServiceAccount", writer);
    assert!(
        allowed(writer, "get") && allowed(writer, "patch"),
        "{writer} cannot write {target}"
    );
    let server = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    assert!(allowed(server, "get"), "{server} cannot read {target}");
    assert!(!allowed(server, "patch"), "the server only reads");
    assert!(!allowed(writer, "delete"), "the lookup must be able to fail");
}
