//! The external metrics router, driven in-process with `oneshot`, against golden JSON in `tests/golden/`.
//!
//! `UPDATE_GOLDEN=1 cargo test --test api` rewrites the golden files from the current output.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use prescale::apiserver::api::{self, ApiState, ExternalMetricValueList};
use prescale::clock::Clock;
use prescale::control::planner::{self, ReplicaPlan};
use prescale::control::policy::Policy;
use prescale::forecast::Forecast;
use prescale::k8s::quantity;
use prescale::store::{PlanStore, Problem, Snapshot, WorkloadId, WorkloadStatus};
use serde_json::Value;
use tower::ServiceExt;

const NOW: &str = "2026-03-02T12:00:00Z";
const DATA: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn snapshot(
    namespace: &str,
    name: &str,
    published_at: DateTime<Utc>,
    replicas: u32,
    planned: f64,
    median: f64,
) -> Snapshot {
    let forecast = Forecast::from_median(published_at, TimeDelta::minutes(1), vec![median; 30], published_at);
    Snapshot {
        id: WorkloadId {
            namespace: namespace.into(),
            name: name.into(),
        },
        published_at,
        data_until: Some(published_at),
        // The planner fills the explanatory fields; the served numbers are set exactly.
        plan: ReplicaPlan {
            replicas,
            served: served_value(name, replicas),
            planned_demand: planned,
            median_demand: median,
            ..planner::plan(&forecast, Some(1.0), &policy(), published_at)
        },
        forecast: Arc::new(forecast),
    }
}

/// What the replicas metric serves: the count, except for `web-frontend`, caught scaling in from 4 to 3, which is
/// served at the bottom of 3's range (see [`planner::served_value`]).
fn served_value(name: &str, replicas: u32) -> f64 {
    match name {
        "web-frontend" => planner::served_value(replicas, Some(replicas + 1)),
        _ => f64::from(replicas),
    }
}

fn policy() -> Policy {
    Policy::new(1.0, 100)
}

/// Workloads used throughout: three in `default`, two numerically named in `batch` (for `>`/`<`), one stale in
/// `old`, one with a NaN demand in `broken`.
fn filled_store() -> Arc<PlanStore> {
    // Sub-second publication time: the timestamp must come out truncated to seconds.
    let fresh = at("2026-03-02T11:59:30.5Z");
    let store = PlanStore::new().with_max_forecast_age(TimeDelta::minutes(10));
    store.publish(snapshot("default", "llm-chat", fresh, 7, 412.5, 300.25));
    store.publish(snapshot("default", "web-frontend", fresh, 3, 4.35, 0.0001));
    store.publish(snapshot("default", "embeddings", fresh, 1, 0.0, 0.0));
    store.publish(snapshot("batch", "7", fresh, 2, 1.5e6, 1000.0));
    store.publish(snapshot("batch", "12", fresh, 4, 120.0, 12.0));
    store.publish(snapshot("old", "reports", at("2026-03-02T11:40:00Z"), 5, 50.0, 40.0));
    store.publish(snapshot("mixed", "fresh", fresh, 1, 1.0, 1.0));
    store.publish(snapshot("mixed", "stale", at("2026-03-02T11:00:00Z"), 1, 1.0, 1.0));
    store.publish(snapshot("broken", "nan", fresh, 2, f64::NAN, 1.0));
    store.publish(snapshot("broken", "huge", fresh, 2, 1.0, 1e300));
    Arc::new(store)
}

fn app(store: Arc<PlanStore>) -> axum::Router {
    api::router(ApiState {
        store,
        clock: Clock::fixed(at(NOW)),
    })
}

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The workload labels of the items, in order.
    fn workloads(&self) -> Vec<String> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        let list: ExternalMetricValueList = serde_json::from_slice(&self.body).unwrap();
        list.items.iter().map(|i| i.metric_labels["workload"].clone()).collect()
    }

    /// The items' values, as served (Quantity strings).
    fn values(&self) -> Vec<String> {
        self.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["value"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn send(store: Arc<PlanStore>, method: Method, uri: &str, accept: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = app(store).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

async fn get(uri: &str) -> Reply {
    send(filled_store(), Method::GET, uri, None).await
}

/// Compares `actual` with `tests/golden/<name>.json` as parsed JSON; `UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {} ({e}); run `UPDATE_GOLDEN=1 cargo test --test api` to create it",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert_eq!(
        actual,
        &expected,
        "response differs from {}; if the change is intended, run `UPDATE_GOLDEN=1 cargo test --test api`",
        path.display()
    );
}

/// An error answer: a metav1.Status with the code and reason, as JSON, matching its golden file.
fn assert_status(reply: &Reply, code: u16, reason: &str, golden_name: &str) -> String {
    assert_eq!(reply.status.as_u16(), code, "{}", reply.text());
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["reason"], reason);
    assert_eq!(body["code"], code);
    assert_eq!(body["metadata"], serde_json::json!({}));
    golden(golden_name, &body);
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn discovery_lists_every_metric() {
    let reply = get("/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let body = reply.json();
    golden("discovery", &body);
    let names: Vec<&str> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, api::METRICS);
    for r in body["resources"].as_array().unwrap() {
        assert_eq!(r["singularName"], "");
        assert_eq!(r["namespaced"], true);
        assert_eq!(r["kind"], "ExternalMetricValueList");
        assert_eq!(r["verbs"], serde_json::json!(["get"]));
    }
}

#[tokio::test]
async fn discovery_is_served_before_any_forecast() {
    // The aggregator's availability check must pass while the first fit is still running.
    let reply = send(
        Arc::new(PlanStore::new()),
        Method::GET,
        "/apis/external.metrics.k8s.io/v1beta1",
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["resources"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn replicas_without_selector_lists_the_namespace() {
    let reply = get(&format!("{DATA}/default/prescale_replicas")).await;
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.workloads(), ["embeddings", "llm-chat", "web-frontend"]);
    golden("replicas_default", &reply.json());
    let values = reply.values();
    assert_eq!(values, ["1", "7", "2001m"]);
    // What the HPA scales to: the ceiling of each (2001m: 3 replicas, below 0.9 × 4 so that the scale-in lands).
    let replicas: Vec<i64> = values
        .iter()
        .map(|v| (quantity::parse_milli(v).unwrap() + 999).div_euclid(1000))
        .collect();
    assert_eq!(replicas, [1, 7, 3]);
}

#[tokio::test]
async fn one_workload_by_selector() {
    let reply = get(&format!(
        "{DATA}/default/prescale_replicas?labelSelector=workload%3Dllm-chat"
    ))
    .await;
    let body = reply.json();
    golden("replicas_llm_chat", &body);
    let item = &body["items"][0];
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(item["metricName"], "prescale_replicas");
    assert_eq!(item["metricLabels"], serde_json::json!({"workload": "llm-chat"}));
    assert_eq!(item["timestamp"], "2026-03-02T11:59:30Z");
    assert_eq!(item["value"], "7");
    assert!(item.get("window").is_none());
}

#[tokio::test]
async fn demand_metrics_are_canonical_quantities() {
    let planned = get(&format!("{DATA}/default/prescale_demand_planned")).await;
    golden("demand_planned_default", &planned.json());
    let values = planned.values();
    assert_eq!(values, ["0", "412500m", "4350m"]);

    let median = get(&format!("{DATA}/default/prescale_demand_median")).await;
    golden("demand_median_default", &median.json());
    let values = median.values();
    assert_eq!(values, ["0", "300250m", "100u"]);
    // What the HPA will read from each.
    let milli: Vec<i64> = values.iter().map(|v| quantity::parse_milli(v).unwrap()).collect();
    assert_eq!(milli, [0, 300_250, 1]);

    let batch = get(&format!("{DATA}/batch/prescale_demand_planned")).await;
    let values = batch.values();
    assert_eq!(values, ["120", "1500k"]);
}

#[tokio::test]
async fn every_selector_operator() {
    let cases: &[(&str, &[&str])] = &[
        ("workload%3Dllm-chat", &["llm-chat"]),
        ("workload%3D%3Dweb-frontend", &["web-frontend"]),
        ("workload%21%3Dllm-chat", &["embeddings", "web-frontend"]),
        ("workload+in+%28llm-chat%2Cembeddings%29", &["embeddings", "llm-chat"]),
        ("workload%20in%20(llm-chat,embeddings)", &["embeddings", "llm-chat"]),
        ("workload+notin+%28llm-chat%2Cembeddings%29", &["web-frontend"]),
        ("workload", &["embeddings", "llm-chat", "web-frontend"]),
        ("%21app", &["embeddings", "llm-chat", "web-frontend"]),
        ("", &["embeddings", "llm-chat", "web-frontend"]),
        ("workload%3Dllm-chat%2C%21app", &["llm-chat"]),
        ("+workload+%3D+llm-chat+", &["llm-chat"]),
    ];
    for (selector, want) in cases {
        let reply = get(&format!("{DATA}/default/prescale_replicas?labelSelector={selector}")).await;
        assert_eq!(reply.workloads(), *want, "labelSelector={selector}");
    }
    // Integer comparisons need integer label values.
    let reply = get(&format!("{DATA}/batch/prescale_replicas?labelSelector=workload%3E8")).await;
    assert_eq!(reply.workloads(), ["12"]);
    let reply = get(&format!("{DATA}/batch/prescale_replicas?labelSelector=workload%3C8")).await;
    assert_eq!(reply.workloads(), ["7"]);
    // Other query parameters do not disturb the selector.
    let reply = get(&format!(
        "{DATA}/default/prescale_replicas?limit=5&labelSelector=workload%3Dembeddings"
    ))
    .await;
    assert_eq!(reply.workloads(), ["embeddings"]);
}

#[tokio::test]
async fn selector_matching_nothing_is_not_found_never_an_empty_list() {
    for selector in ["%21workload", "app%3Dweb", "workload%3Dnope", "workload%3E1"] {
        let reply = get(&format!("{DATA}/default/prescale_replicas?labelSelector={selector}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{selector}: {}", reply.text());
        assert_eq!(reply.json()["reason"], "NotFound");
    }
    let reply = get(&format!(
        "{DATA}/default/prescale_replicas?labelSelector=workload%3Dnope"
    ))
    .await;
    let message = assert_status(&reply, 404, "NotFound", "no_match");
    assert!(
        message.contains("\"default\"") && message.contains("workload=nope"),
        "{message}"
    );
    // A namespace without workloads.
    let reply = get(&format!("{DATA}/kube-system/prescale_replicas")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_selector_is_400_saying_what_and_where() {
    let reply = get(&format!(
        "{DATA}/default/prescale_replicas?labelSelector=workload+in+%28a%2C"
    ))
    .await;
    let message = assert_status(&reply, 400, "BadRequest", "bad_selector");
    assert!(
        message.contains("workload in (a,") && message.contains("offset 15"),
        "{message}"
    );
    for selector in [
        "x%3Da%7C%7Cy%3Db",
        "%2Cx",
        "x+nott+in+%28y%29",
        "bad_key_%3Dx",
        "k%3D-v",
        "x%3E1.5",
    ] {
        let reply = get(&format!("{DATA}/default/prescale_replicas?labelSelector={selector}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{selector}: {}", reply.text());
    }
}

#[tokio::test]
async fn unknown_metric_is_404() {
    let reply = get(&format!("{DATA}/default/http_requests")).await;
    let message = assert_status(&reply, 404, "NotFound", "unknown_metric");
    assert!(
        message.contains("http_requests") && message.contains("prescale_replicas"),
        "{message}"
    );
    // Names arrive lowercased from client-go; a differently cased name is a different (unknown) metric.
    assert_eq!(
        get(&format!("{DATA}/default/Prescale_Replicas")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn stale_forecast_is_500_without_internals() {
    let reply = get(&format!("{DATA}/old/prescale_replicas")).await;
    let message = assert_status(&reply, 500, "InternalError", "stale");
    assert!(
        message.contains("stale") && message.contains("old/reports"),
        "{message}"
    );
    // One stale workload among fresh ones fails the answer: the HPA sums items, so dropping one would mislead it.
    let reply = get(&format!("{DATA}/mixed/prescale_replicas")).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    // A selector that leaves the stale workload out is served.
    let reply = get(&format!(
        "{DATA}/mixed/prescale_replicas?labelSelector=workload%3Dfresh"
    ))
    .await;
    assert_eq!(reply.workloads(), ["fresh"]);
}

#[tokio::test]
async fn exactly_max_age_is_still_fresh() {
    let store = PlanStore::new().with_max_forecast_age(TimeDelta::minutes(10));
    store.publish(snapshot(
        "default",
        "edge",
        at(NOW) - TimeDelta::minutes(10),
        1,
        1.0,
        1.0,
    ));
    let reply = send(
        Arc::new(store),
        Method::GET,
        &format!("{DATA}/default/prescale_replicas"),
        None,
    )
    .await;
    assert_eq!(reply.workloads(), ["edge"]);
}

#[tokio::test]
async fn values_that_are_not_quantities_are_500() {
    let reply = get(&format!(
        "{DATA}/broken/prescale_demand_planned?labelSelector=workload%3Dnan"
    ))
    .await;
    let message = assert_status(&reply, 500, "InternalError", "nan_value");
    assert!(!message.contains("NaN") && message.contains("broken/nan"), "{message}");
    let reply = get(&format!(
        "{DATA}/broken/prescale_demand_median?labelSelector=workload%3Dhuge"
    ))
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !reply.text().contains("e300") && !reply.text().contains("overflow"),
        "{}",
        reply.text()
    );
    // The other metrics of the same workloads are fine.
    let reply = get(&format!("{DATA}/broken/prescale_replicas")).await;
    assert_eq!(reply.workloads(), ["huge", "nan"]);
}

#[tokio::test]
async fn metric_without_namespace_is_404() {
    let reply = get("/apis/external.metrics.k8s.io/v1beta1/prescale_replicas").await;
    assert_status(&reply, 404, "NotFound", "not_found");
    for path in [
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/prescale_replicas/llm-chat",
        "/apis/external.metrics.k8s.io/v1beta2",
        "/api/v1",
        "/",
    ] {
        let reply = get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.json()["kind"], "Status", "{path}");
    }
}

#[tokio::test]
async fn non_get_is_405() {
    let uri = format!("{DATA}/default/prescale_replicas");
    let reply = send(filled_store(), Method::POST, &uri, None).await;
    assert_status(&reply, 405, "MethodNotAllowed", "method_not_allowed");
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        assert_eq!(
            send(filled_store(), method.clone(), &uri, None).await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
    assert_eq!(
        send(filled_store(), Method::HEAD, &uri, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn protobuf_accept_still_gets_json() {
    let accept = Some("application/vnd.kubernetes.protobuf, */*");
    for uri in [
        format!("{DATA}/default/prescale_replicas"),
        "/apis/external.metrics.k8s.io/v1beta1".to_owned(),
    ] {
        let reply = send(filled_store(), Method::GET, &uri, accept).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        reply.json();
    }
    let reply = send(
        filled_store(),
        Method::GET,
        "/apis/external.metrics.k8s.io/v1beta1/nope",
        accept,
    )
    .await;
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn apis_answers_406_to_aggregated_discovery_and_a_group_list_otherwise() {
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
              application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
    let reply = send(filled_store(), Method::GET, "/apis", Some(v2)).await;
    assert_status(&reply, 406, "NotAcceptable", "apis_v2_discovery");

    for accept in [
        None,
        Some("application/json"),
        Some(&format!("{v2},application/json")[..]),
    ] {
        let reply = send(filled_store(), Method::GET, "/apis", accept).await;
        assert_eq!(reply.status, StatusCode::OK, "{accept:?}");
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        golden("apis", &reply.json());
    }
    let group = get("/apis/external.metrics.k8s.io").await;
    assert_eq!(group.status, StatusCode::OK);
    assert_eq!(
        group.json()["preferredVersion"]["groupVersion"],
        "external.metrics.k8s.io/v1beta1"
    );
}

#[tokio::test]
async fn openapi_is_404() {
    for path in [
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/apis/external.metrics.k8s.io/v1beta1",
    ] {
        let reply = get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        assert_eq!(reply.json()["reason"], "NotFound");
    }
}

#[tokio::test]
async fn health_endpoints() {
    for path in ["/healthz", "/livez", "/readyz"] {
        let reply = get(path).await;
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "ok"), "{path}");
    }
    let empty = Arc::new(PlanStore::new());
    let reply = send(empty.clone(), Method::GET, "/readyz", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(send(empty, Method::GET, "/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_400_status_naming_the_problem() {
    let reply = get(&format!("{DATA}/%FF%FE/prescale_replicas")).await;
    let message = assert_status(&reply, 400, "BadRequest", "path_not_utf8");
    assert!(message.contains("UTF-8") && message.contains("segment 5"), "{message}");
    let reply = get(&format!("{DATA}/default/prescale_%C3%28replicas")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["kind"], "Status");
}

#[tokio::test]
async fn an_accept_without_json_is_a_406_status() {
    let data = format!("{DATA}/default/prescale_replicas");
    for uri in [&data[..], "/apis/external.metrics.k8s.io/v1beta1", "/apis"] {
        for accept in [
            "text/html",
            "application/vnd.kubernetes.protobuf",
            "application/yaml, text/plain;q=0.5",
            "application/json;q=0",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        ] {
            let reply = send(filled_store(), Method::GET, uri, Some(accept)).await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_ACCEPTABLE,
                "{uri} {accept}: {}",
                reply.text()
            );
            assert_eq!(reply.json()["kind"], "Status", "{uri} {accept}");
        }
        // What kubectl, client-go and the aggregator send.
        for accept in [
            "application/json, */*",
            "application/vnd.kubernetes.protobuf, */*",
            "application/json",
            "application/*",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            "",
        ] {
            let reply = send(filled_store(), Method::GET, uri, Some(accept)).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri} {accept:?}: {}", reply.text());
            assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        }
    }
    let reply = send(filled_store(), Method::GET, &data, Some("text/html")).await;
    assert_status(&reply, 406, "NotAcceptable", "not_acceptable");
    // Probes answer whatever the Accept.
    let reply = send(filled_store(), Method::GET, "/healthz", Some("text/html")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn echoed_inputs_are_cut_short() {
    // An invalid 50 KB selector, a valid one matching nothing, a 20 KB metric name and namespace.
    let junk = "x=".repeat(25 * 1024);
    let values: Vec<String> = (0..4000).map(|i| format!("w{i}")).collect();
    let nothing = format!("workload+in+%28{}%29", values.join("%2C"));
    let long_name = "m".repeat(20 * 1024);
    for (uri, code) in [
        (format!("{DATA}/default/prescale_replicas?labelSelector={junk}"), 400),
        (format!("{DATA}/default/prescale_replicas?labelSelector={nothing}"), 404),
        (format!("{DATA}/default/{long_name}"), 404),
        (
            format!("{DATA}/{long_name}/prescale_replicas?labelSelector={nothing}"),
            404,
        ),
    ] {
        assert!(uri.len() > 20 * 1024);
        let reply = get(&uri).await;
        assert_eq!(reply.status.as_u16(), code, "{}", reply.text());
        assert!(reply.body.len() < 2048, "{} bytes: {}", reply.body.len(), reply.text());
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains('…'), "{message}");
    }
}

#[tokio::test]
async fn request_limits_answer_a_status() {
    let limited = || prescale::apiserver::http::limits(app(filled_store()));
    let uri = format!(
        "{DATA}/default/prescale_replicas?labelSelector={}",
        "a".repeat(62 * 1024)
    );
    let response = limited()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["code"].as_u64()),
        (Some("Status"), Some(414))
    );

    let mut request = Request::get(format!("{DATA}/default/prescale_replicas"));
    for i in 0..97 {
        request = request.header("x-remote-group", format!("g{i}"));
    }
    let response = limited().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["code"].as_u64()),
        (Some("Status"), Some(431))
    );
}

/// A configured workload with no plan is not "no workload matches": the answer names it and its problem (without
/// the backend's words), 500 when a cycle reported a problem, 503 while its first cycle runs.
#[tokio::test]
async fn a_workload_without_a_plan_is_named_not_404() {
    let store = PlanStore::new();
    let id = |name: &str| WorkloadId {
        namespace: "shop".into(),
        name: name.into(),
    };
    store.expect(id("broken"));
    store.set_status(
        &id("broken"),
        WorkloadStatus {
            error: Some("Prometheus answered 400 bad_data: parse error at char 9".into()),
            problem: Some(Problem::QueryFailed),
            ..Default::default()
        },
    );
    store.expect(id("starting"));
    let store = Arc::new(store);
    let reply = send(
        store.clone(),
        Method::GET,
        &format!("{DATA}/shop/prescale_replicas?labelSelector=workload%3Dbroken"),
        None,
    )
    .await;
    let message = assert_status(&reply, 500, "InternalError", "not_planned");
    assert!(
        message.contains("shop/broken") && message.contains("the demand query fails"),
        "{message}"
    );
    assert!(
        !message.contains("bad_data") && !message.contains("matches"),
        "{message}"
    );

    let reply = send(
        store.clone(),
        Method::GET,
        &format!("{DATA}/shop/prescale_replicas?labelSelector=workload%3Dstarting"),
        None,
    )
    .await;
    let message = assert_status(&reply, 503, "ServiceUnavailable", "not_planned_yet");
    assert!(
        message.contains("shop/starting") && message.contains("first forecast"),
        "{message}"
    );

    // A selector that matches no configured workload is still 404.
    let reply = send(
        store,
        Method::GET,
        &format!("{DATA}/shop/prescale_replicas?labelSelector=workload%3Dnope"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// A plan made from data older than the workload's maxDataAge is refused like a stale plan, even when the plan
/// itself is fresh.
#[tokio::test]
async fn a_fresh_plan_on_old_data_is_500() {
    let store = PlanStore::new();
    let mut snap = snapshot("shop", "exporter-died", at(NOW) - TimeDelta::seconds(10), 3, 3.0, 3.0);
    snap.data_until = Some(at(NOW) - TimeDelta::days(10));
    let id = snap.id.clone();
    store.publish(snap);
    let store = Arc::new(store);
    let uri = format!("{DATA}/shop/prescale_replicas");
    assert_eq!(
        send(store.clone(), Method::GET, &uri, None).await.status,
        StatusCode::OK,
        "no bound set: served (as before maxDataAge)"
    );
    store.limit_data_age(&id, TimeDelta::minutes(5));
    let reply = send(store, Method::GET, &uri, None).await;
    let message = assert_status(&reply, 500, "InternalError", "stale_data");
    assert!(
        message.contains("shop/exporter-died") && message.contains("data is stale") && message.contains("10d"),
        "{message}"
    );
}
