//! The KEDA external scaler: in-process through its router (gRPC frames made by hand, faults a running server cannot
//! produce on demand: stale plans, NaN values, a missing plan), then the real binary called by a real gRPC client
//! generated from `proto/externalscaler.proto` with Python's grpcio-tools, plain (`prescale demo`) and with mutual
//! TLS (`prescale serve`), its answers compared with the external metrics API's for the same workload.
//!
//! Needs `python3` with `grpcio` and `grpcio-tools` (.ci/requirements.txt); the test fails, saying so, without them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use prescale::apiserver::api::ApiState;
use prescale::apiserver::keda::{self, proto, KedaState};
use prescale::clock::Clock;
use prescale::control::planner::{self, ReplicaPlan};
use prescale::control::policy::Policy;
use prescale::forecast::Forecast;
use prescale::sre::telemetry;
use prescale::store::{PlanStore, Snapshot, WorkloadId};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::Value;
use tokio::sync::watch;
use tonic::Code;
use tower::ServiceExt;

const NOW: &str = "2026-03-02T12:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn id(namespace: &str, name: &str) -> WorkloadId {
    WorkloadId {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn snapshot(id: WorkloadId, published_at: DateTime<Utc>, replicas: u32, served: f64) -> Snapshot {
    let forecast = Forecast::from_median(published_at, TimeDelta::minutes(1), vec![1.0; 30], published_at);
    Snapshot {
        id,
        published_at,
        data_until: Some(published_at),
        plan: ReplicaPlan {
            replicas,
            served,
            ..planner::plan(&forecast, Some(1.0), &Policy::new(1.0, 100), published_at)
        },
        forecast: Arc::new(forecast),
    }
}

/// A store with: `shop/web` scaling in from 4 to 3 (served at the bottom of 3's range, 2.001), `shop/idle` planned
/// at zero, `shop/old` stale, `shop/broken` with a NaN value, and `shop/new` configured but not yet planned.
fn fixture() -> (Arc<PlanStore>, KedaState, watch::Sender<bool>) {
    let fresh = at("2026-03-02T11:59:30Z");
    let store = Arc::new(PlanStore::new().with_max_forecast_age(TimeDelta::minutes(10)));
    store.publish(snapshot(id("shop", "web"), fresh, 3, planner::served_value(3, Some(4))));
    store.publish(snapshot(id("shop", "idle"), fresh, 0, 0.0));
    store.publish(snapshot(id("shop", "old"), at("2026-03-02T11:40:00Z"), 5, 5.0));
    store.publish(snapshot(id("shop", "broken"), fresh, 2, f64::NAN));
    for name in ["web", "idle", "old", "broken", "new"] {
        store.expect(id("shop", name));
    }
    let (stop, stopping) = watch::channel(false);
    let state = KedaState {
        api: ApiState {
            store: store.clone(),
            clock: Clock::fixed(at(NOW)),
        },
        stopping,
    };
    (store, state, stop)
}

fn reference(namespace: &str, workload: Option<&str>) -> proto::ScaledObjectRef {
    let mut metadata = std::collections::HashMap::from([("scalerAddress".to_owned(), "prescale:9443".to_owned())]);
    if let Some(w) = workload {
        metadata.insert("workload".to_owned(), w.to_owned());
    }
    proto::ScaledObjectRef {
        name: "so".into(),
        namespace: namespace.into(),
        scaler_metadata: metadata,
    }
}

/// A gRPC request as a client sends it: length-prefixed protobuf in an HTTP/2-style POST.
fn grpc_request(method: &str, message: &impl Message) -> Request<Body> {
    let payload = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&payload);
    Request::post(format!("/externalscaler.ExternalScaler/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(framed))
        .unwrap()
}

fn status_of(headers: &axum::http::HeaderMap) -> Option<(Code, String)> {
    let code = Code::from_bytes(headers.get("grpc-status")?.as_bytes());
    let message = headers.get("grpc-message").map_or(String::new(), |m| {
        percent_encoding::percent_decode(m.as_bytes())
            .decode_utf8_lossy()
            .into_owned()
    });
    Some((code, message))
}

/// One unary call through `router`: the decoded answer, or the status code and message.
async fn unary<R: Message + Default>(
    router: &axum::Router,
    method: &str,
    message: &impl Message,
) -> Result<R, (Code, String)> {
    let response = router.clone().oneshot(grpc_request(method, message)).await.unwrap();
    if let Some((code, message)) = status_of(response.headers()) {
        return Err((code, message));
    }
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    let (code, message) = status_of(&trailers).expect("grpc-status trailer");
    if code != Code::Ok {
        return Err((code, message));
    }
    let bytes = collected.to_bytes();
    Ok(R::decode(&bytes[5..]).unwrap())
}

async fn get_metrics(
    router: &axum::Router,
    namespace: &str,
    workload: Option<&str>,
    metric: &str,
) -> Result<proto::MetricValue, (Code, String)> {
    let request = proto::GetMetricsRequest {
        scaled_object_ref: Some(reference(namespace, workload)),
        metric_name: metric.into(),
    };
    let mut response: proto::GetMetricsResponse = unary(router, "GetMetrics", &request).await?;
    assert_eq!(response.metric_values.len(), 1);
    Ok(response.metric_values.remove(0))
}

async fn is_active(router: &axum::Router, workload: &str) -> Result<bool, (Code, String)> {
    let response: proto::IsActiveResponse = unary(router, "IsActive", &reference("shop", Some(workload))).await?;
    Ok(response.result)
}

#[tokio::test]
async fn answers_are_the_external_metrics_api_values_and_refusals_name_the_workload() {
    let (_store, state, _stop) = fixture();
    let router = keda::router(state, telemetry::GrpcMetrics::default(), false);

    let spec: proto::GetMetricSpecResponse = unary(&router, "GetMetricSpec", &reference("shop", Some("web")))
        .await
        .unwrap();
    #[allow(deprecated)]
    let expected = vec![proto::MetricSpec {
        metric_name: "prescale_replicas".into(),
        target_size: 1,
        target_size_float: 1.0,
    }];
    assert_eq!(spec.metric_specs, expected);
    // The spec does not depend on the plan: a workload without one (yet) still gets it.
    unary::<proto::GetMetricSpecResponse>(&router, "GetMetricSpec", &reference("shop", Some("new")))
        .await
        .unwrap();

    // The served value, bottom of 3's range, exactly as the API serves it; older KEDA reads the replica count.
    for metric in ["prescale_replicas", "s0-prescale_replicas", "s3-prescale_replicas"] {
        let value = get_metrics(&router, "shop", Some("web"), metric).await.unwrap();
        assert_eq!(value.metric_name, metric);
        assert_eq!(value.metric_value_float, planner::served_value(3, Some(4)));
        #[allow(deprecated)]
        let int = value.metric_value;
        assert_eq!(int, 3);
    }
    assert_eq!(is_active(&router, "web").await, Ok(true));
    let idle = get_metrics(&router, "shop", Some("idle"), "prescale_replicas")
        .await
        .unwrap();
    assert_eq!(idle.metric_value_float, 0.0);
    assert_eq!(
        is_active(&router, "idle").await,
        Ok(false),
        "a plan of zero lets KEDA scale to zero"
    );

    // Never a value that could scale down: an error KEDA's fallback acts on.
    for (workload, code, words) in [
        (
            "old",
            Code::Unavailable,
            &["shop/old", "stale", "20m ago", "maxForecastAge 10m"][..],
        ),
        ("new", Code::Unavailable, &["shop/new", "no plan"][..]),
        ("broken", Code::Internal, &["shop/broken"][..]),
    ] {
        for result in [
            get_metrics(&router, "shop", Some(workload), "prescale_replicas")
                .await
                .map(|_| ()),
            is_active(&router, workload).await.map(|_| ()),
        ] {
            let (got, message) = result.unwrap_err();
            assert_eq!(got, code, "{workload}: {message}");
            for word in words {
                assert!(message.contains(word), "{workload}: {message:?} lacks {word:?}");
            }
        }
    }
    let (code, message) = get_metrics(&router, "shop", Some("nope"), "prescale_replicas")
        .await
        .unwrap_err();
    assert_eq!(
        (code, message.contains("shop/nope")),
        (Code::NotFound, true),
        "{message}"
    );
    // The namespace is the ScaledObject's: the same name elsewhere is another workload.
    let (code, _) = get_metrics(&router, "other", Some("web"), "prescale_replicas")
        .await
        .unwrap_err();
    assert_eq!(code, Code::NotFound);
    let (code, message) = get_metrics(&router, "shop", None, "prescale_replicas")
        .await
        .unwrap_err();
    assert_eq!(
        (code, message.contains("\"workload\"")),
        (Code::InvalidArgument, true),
        "{message}"
    );
    let (code, message) = get_metrics(&router, "shop", Some("web"), "prescale_demand_planned")
        .await
        .unwrap_err();
    assert_eq!(
        (code, message.contains("prescale_replicas")),
        (Code::NotFound, true),
        "{message}"
    );
    let (code, _) = unary::<proto::GetMetricSpecResponse>(&router, "StreamMetricSpec", &reference("shop", Some("web")))
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unimplemented);
}

#[tokio::test]
async fn without_a_verified_client_certificate_calls_are_unauthenticated() {
    let (_store, state, _stop) = fixture();
    // No PeerIdentity at all (as over a connection without a certificate): refused before the service.
    let router = keda::router(state, telemetry::GrpcMetrics::default(), true);
    let (code, message) = is_active(&router, "web").await.unwrap_err();
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("--keda-client-ca-file"), "{message}");
}

async fn next_frame(body: &mut Body) -> http_body::Frame<axum::body::Bytes> {
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await;
    frame
        .expect("a frame within 10 s")
        .expect("the stream goes on")
        .unwrap()
}

#[tokio::test]
async fn stream_is_active_pushes_changes_and_ends_with_the_client_or_the_server() {
    let (store, state, stop) = fixture();
    let registry = telemetry::Registry::new(store.clone(), Clock::fixed(at(NOW)));
    let router = keda::router(state, registry.grpc("keda"), false);
    let open = |router: &axum::Router| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(grpc_request("StreamIsActive", &reference("shop", Some("web"))))
                .await
                .unwrap();
            assert!(status_of(response.headers()).is_none(), "the stream was refused");
            response.into_body()
        }
    };
    let message = |frame: http_body::Frame<axum::body::Bytes>| {
        let data = frame.into_data().expect("a message");
        proto::IsActiveResponse::decode(&data[5..]).unwrap().result
    };

    let mut body = open(&router).await;
    assert!(message(next_frame(&mut body).await), "the state now comes first");
    // The plan drops to zero: pushed.
    store.publish(snapshot(id("shop", "web"), at("2026-03-02T11:59:40Z"), 0, 0.0));
    assert!(!message(next_frame(&mut body).await));
    assert!(registry.encode().contains("prescale_keda_streams_open 1"));
    // The client goes away: nothing is left running, and the call counts as cancelled.
    drop(body);
    let metrics = registry.encode();
    assert!(metrics.contains("prescale_keda_streams_open 0"), "{metrics}");
    assert!(
        metrics.contains(r#"prescale_keda_requests_total{method="StreamIsActive",code="Canceled"} 1"#),
        "{metrics}"
    );

    // The plan goes stale: the stream ends with UNAVAILABLE (KEDA reconnects with backoff; polling carries on).
    let mut body = open(&router).await;
    assert!(!message(next_frame(&mut body).await));
    store.publish(snapshot(id("shop", "web"), at("2026-03-02T11:00:00Z"), 4, 4.0));
    let trailers = next_frame(&mut body).await.into_trailers().expect("trailers");
    assert_eq!(status_of(&trailers).unwrap().0, Code::Unavailable);
    drop(body);

    // Shutdown: open streams end cleanly so the server can drain.
    store.publish(snapshot(id("shop", "web"), at("2026-03-02T11:59:50Z"), 4, 4.0));
    let mut body = open(&router).await;
    assert!(message(next_frame(&mut body).await));
    stop.send(true).unwrap();
    let trailers = next_frame(&mut body).await.into_trailers().expect("trailers");
    assert_eq!(status_of(&trailers).unwrap().0, Code::Ok);
    drop(body);
    let metrics = registry.encode();
    for line in [
        r#"prescale_keda_requests_total{method="StreamIsActive",code="Unavailable"} 1"#,
        r#"prescale_keda_requests_total{method="StreamIsActive",code="OK"} 1"#,
        "prescale_keda_streams_open 0",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The real binary and a real gRPC client.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Python stubs generated from the repository's contract with grpcio-tools, in `dir`.
fn generate_stubs(dir: &Path) {
    let output = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo().join("proto"))
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(repo().join("proto/externalscaler.proto"))
        .output()
        .expect("running python3 (needed for the KEDA client)");
    assert!(
        output.status.success(),
        "generating the Python gRPC stubs failed; install the test requirements \
         (python3 -m pip install -r .ci/requirements.txt: grpcio, grpcio-tools):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs tests/keda_client.py against `target`; its JSON report.
fn run_client(stubs: &Path, target: &str, namespace: &str, workload: &str, tls: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(repo().join("tests/keda_client.py"))
        .arg(stubs)
        .args([target, namespace, workload])
        .args(tls)
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "the Python KEDA client failed (python3 -m pip install -r .ci/requirements.txt if grpc is missing):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A running prescale process; killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    banner: Vec<String>,
    log: PathBuf,
}

impl Running {
    fn start(args: &[&str], dir: &Path) -> Running {
        let log = dir.join("prescale.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(args)
            .env_remove("PRESCALE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prescale");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            banner: Vec::new(),
            log,
        }
    }

    /// Reads the banner until a line contains `until`.
    fn banner_until(&mut self, until: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.banner.iter().any(|l| l.contains(until)) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.banner.push(line),
                Err(_) => panic!(
                    "no banner line with {until:?} within 60 s; got:\n{}\n{}",
                    self.banner.join("\n"),
                    self.log_tail()
                ),
            }
        }
    }

    fn address(&self, prefix: &str) -> String {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in the banner:\n{}", self.banner.join("\n")))
            .trim()
            .to_owned()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- prescale log ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
    prescale::app::init();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// Waits until the pod is ready and no workload is warming up any more (each is served from its own model), so
/// that the values compared below are not caught switching from the reactive target to the first forecast.
async fn wait_ready(client: &reqwest::Client, admin: &str, running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = client.get(format!("{admin}/readyz?verbose")).send().await {
            if r.status().is_success() && !r.text().await.unwrap_or_default().contains("(warming up") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 180 s\n{}",
            running.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The external metrics API's `prescale_replicas` for one workload, in thousandths (as the HPA reads it).
async fn api_replicas(client: &reqwest::Client, api: &str, namespace: &str, workload: &str) -> i64 {
    let url = format!(
        "{api}/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/prescale_replicas?labelSelector=workload%3D{workload}"
    );
    let response = client.get(&url).send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    let list: Value = response.json().await.unwrap();
    let quantity = list["items"][0]["value"].as_str().unwrap();
    prescale::k8s::quantity::parse_milli(quantity).unwrap_or_else(|e| panic!("{quantity}: {e}"))
}

/// What every run of the client must show, whatever the transport: the same value as the API, and the refusals.
fn check_report(report: &Value, api_values: &[i64]) {
    assert_eq!(
        report["GetMetricSpec"],
        serde_json::json!([{"metricName": "prescale_replicas", "targetSize": 1, "targetSizeFloat": 1.0}]),
        "{report}"
    );
    for (call, name) in [
        ("GetMetrics", "prescale_replicas"),
        ("GetMetricsPrefixed", "s0-prescale_replicas"),
    ] {
        let value = &report[call][0];
        assert_eq!(value["metricName"], name, "{report}");
        let float = value["metricValueFloat"].as_f64().unwrap_or_else(|| panic!("{report}"));
        // The plan may be republished between the calls: the value is one the API served just before or after.
        #[allow(clippy::cast_possible_truncation)]
        let milli = (float * 1000.0).round() as i64;
        assert!(
            api_values.contains(&milli),
            "{call}: {float} is not what the external metrics API served ({api_values:?})"
        );
        assert_eq!(value["metricValue"].as_f64().unwrap(), float.ceil(), "{report}");
        assert_eq!(report["IsActive"]["result"], float > 0.0, "{report}");
        assert_eq!(report["StreamIsActive"]["first"], float > 0.0, "{report}");
    }
    for (call, code, word) in [
        ("GetMetricsUnknownWorkload", "NOT_FOUND", "no-such-workload"),
        ("IsActiveUnknownWorkload", "NOT_FOUND", "no-such-workload"),
        ("GetMetricsNoWorkloadKey", "INVALID_ARGUMENT", "\"workload\""),
        ("GetMetricsUnknownMetric", "NOT_FOUND", "prescale_replicas"),
        ("StreamMetricSpec", "UNIMPLEMENTED", "GetMetricSpec"),
    ] {
        assert_eq!(report[call]["code"], code, "{call}: {report}");
        let message = report[call]["message"].as_str().unwrap_or_default();
        assert!(message.contains(word), "{call}: {message:?} lacks {word:?}");
    }
}

/// Waits (a cancelled stream is counted when the server sees the reset) until `/metrics` has every line.
async fn expect_metrics(client: &reqwest::Client, admin: &str, lines: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = client
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let missing: Vec<&&str> = lines.iter().filter(|l| !text.contains(**l)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "/metrics lacks {missing:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_keda_over_plain_grpc_with_the_api_values() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    generate_stubs(&stubs);
    let mut demo = Running::start(
        &["demo", "--api-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"],
        dir.path(),
    );
    demo.banner_until("workload: llm-chat");
    let (api, admin, target) = (demo.address("api: "), demo.address("admin: "), demo.address("keda: "));
    let banner = demo.banner.join("\n");
    for word in [
        "kind: ScaledObject",
        "behavior: currentReplicasIfHigher",
        "type: external-push",
        &format!("scalerAddress: {target}"),
    ] {
        assert!(
            banner.contains(word),
            "the banner's ScaledObject lacks {word:?}:\n{banner}"
        );
    }
    let client = http_client(None);
    wait_ready(&client, &admin, &demo).await;

    // A scraper that accepts gzip (as Prometheus does) gets the exposition gzipped: curl asks for it and decodes it.
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--compressed", "-D", "-", &format!("{admin}/metrics")])
        .output()
        .expect("curl runs (scripts/test installs it)");
    let out = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success(), "curl: {}", String::from_utf8_lossy(&curl.stderr));
    assert!(out.to_ascii_lowercase().contains("content-encoding: gzip"), "{out}");
    assert!(out.contains("# TYPE prescale_served_replicas gauge"), "{out}");

    for workload in ["llm-chat", "web-frontend"] {
        let before = api_replicas(&client, &api, "default", workload).await;
        let stubs = stubs.clone();
        let target = target.clone();
        let report = tokio::task::spawn_blocking(move || run_client(&stubs, &target, "default", workload, &[]))
            .await
            .unwrap();
        let after = api_replicas(&client, &api, "default", workload).await;
        check_report(&report, &[before, after]);
    }

    // Every call counted by method and code; the cancelled stream is closed, not left running.
    expect_metrics(
        &client,
        &admin,
        &[
            r#"prescale_keda_requests_total{method="GetMetrics",code="OK"} 4"#,
            r#"prescale_keda_requests_total{method="GetMetrics",code="NotFound"} 4"#,
            r#"prescale_keda_requests_total{method="GetMetrics",code="InvalidArgument"} 2"#,
            r#"prescale_keda_requests_total{method="StreamMetricSpec",code="Unimplemented"} 2"#,
            r#"prescale_keda_requests_total{method="StreamIsActive",code="Canceled"} 2"#,
            "prescale_keda_streams_open 0",
        ],
    )
    .await;
}

/// A test CA and what it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a leaf for `names` with `usage` as `<stem>.crt` / `<stem>.key`.
    fn leaf(&self, dir: &Path, stem: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (crt, pem_key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem_key, key.serialize_pem()).unwrap();
        (crt, pem_key)
    }

    fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_requires_a_client_certificate_from_the_keda_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    generate_stubs(&stubs);
    let server_ca = Ca::new("prescale-ca");
    let (server_crt, server_key) = server_ca.leaf(
        dir.path(),
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let server_ca_file = server_ca.write(dir.path(), "server-ca");
    let keda_ca = Ca::new("keda-clients");
    let keda_ca_file = keda_ca.write(dir.path(), "keda-ca");
    let (keda_crt, keda_key) = keda_ca.leaf(dir.path(), "keda", &[], ExtendedKeyUsagePurpose::ClientAuth);
    // A client certificate from another CA.
    let (other_crt, other_key) = Ca::new("other").leaf(dir.path(), "other", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let config = dir.path().join("prescale.yaml");
    std::fs::write(
        &config,
        "workloads:\n  - name: web\n    namespace: shop\n    demand: {generator: {profile: web-frontend}}\n    \
         capacityPerReplica: 5\n    maxReplicas: 10\n",
    )
    .unwrap();

    // The KEDA listener reuses the API's serving certificate (no --keda-tls-cert-file).
    let args = [
        "serve",
        "--config",
        &path(&config),
        "--insecure-no-auth",
        "--api-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--keda-addr",
        "127.0.0.1:0",
        "--tls-cert-file",
        &path(&server_crt),
        "--tls-key-file",
        &path(&server_key),
        "--keda-client-ca-file",
        &path(&keda_ca_file),
    ];
    let mut serve = Running::start(&args, dir.path());
    serve.banner_until("keda: ");
    let (api, admin, target) = (
        serve.address("api: "),
        serve.address("admin: "),
        serve.address("keda: "),
    );
    let client = http_client(Some(&server_ca.pem));
    wait_ready(&client, &admin, &serve).await;

    let tls = |crt: &PathBuf, key: &PathBuf| {
        vec![
            "--ca".to_owned(),
            path(&server_ca_file),
            "--cert".to_owned(),
            path(crt),
            "--key".to_owned(),
            path(key),
        ]
    };
    let run = |tls: Vec<String>| {
        let (stubs, target) = (stubs.clone(), target.clone());
        tokio::task::spawn_blocking(move || {
            let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
            run_client(&stubs, &target, "shop", "web", &tls)
        })
    };
    let before = api_replicas(&client, &api, "shop", "web").await;
    let report = run(tls(&keda_crt, &keda_key)).await.unwrap();
    let after = api_replicas(&client, &api, "shop", "web").await;
    check_report(&report, &[before, after]);

    // Without a certificate, or with one from another CA: every call is refused.
    let mut without = tls(&keda_crt, &keda_key);
    without.push("--no-cert".to_owned());
    for report in [
        run(without).await.unwrap(),
        run(tls(&other_crt, &other_key)).await.unwrap(),
    ] {
        for call in ["GetMetricSpec", "GetMetrics", "IsActive", "StreamIsActive"] {
            assert_eq!(report[call]["code"], "UNAUTHENTICATED", "{call}: {report}");
        }
    }
    expect_metrics(
        &client,
        &admin,
        &[r#"prescale_keda_requests_total{method="GetMetrics",code="Unauthenticated"} 10"#],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// The in-cluster wiring: deploy/components/keda on top of the base.

#[test]
fn the_keda_component_wires_port_service_and_network_policy() {
    let dir = tempfile::tempdir().unwrap();
    // kustomize takes relative paths only: from the temporary directory up to `/`, then down to the repository.
    let up = "../".repeat(dir.path().components().count() - 1);
    let deploy = PathBuf::from(up).join(repo().join("deploy").strip_prefix("/").unwrap());
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\n\
             components: [{}, {}]\n",
            deploy.join("base").display(),
            deploy.join("components/cert-manager").display(),
            deploy.join("components/keda").display()
        ),
    )
    .unwrap();
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .expect("running kubectl");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let yaml = String::from_utf8(output.stdout).unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let report = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&file)
        .output()
        .expect("running kubernetes-validate (python3 -m pip install -r .ci/requirements.txt)");
    let text = String::from_utf8_lossy(&report.stdout).into_owned() + &String::from_utf8_lossy(&report.stderr);
    assert!(report.status.success() && !text.contains("ERROR"), "{text}");

    let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == "prescale")
            .unwrap_or_else(|| panic!("no {kind} prescale"))
    };
    let container = &find("Deployment")["spec"]["template"]["spec"]["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no env {name}"))
            .to_owned()
    };
    let addr: std::net::SocketAddr = env("PRESCALE_KEDA_ADDR").parse().unwrap();
    assert!(env("PRESCALE_KEDA_CLIENT_CA_FILE").starts_with("/var/run/prescale/keda-client-ca/"));
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keda")
        .expect("container port keda");
    assert_eq!(port["containerPort"].as_u64(), Some(u64::from(addr.port())));
    let service_port = find("Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["targetPort"] == "keda")
        .expect("a Service port to keda")
        .clone();
    assert_eq!(service_port["port"].as_u64(), Some(9443));
    let rule = find("NetworkPolicy")["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"][0]["port"].as_u64() == Some(u64::from(addr.port())))
        .expect("an ingress rule to the keda port")
        .clone();
    assert_eq!(
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "keda"
    );
}
