//! The `external.metrics.k8s.io/v1beta1` API: serves published plans to the HPA through the aggregator.
//!
//! Metrics (lowercase, as client-go sends them), one item per workload in the asked namespace whose labels
//! `{"workload": <name>}` match the `labelSelector`:
//!
//! | metric | value | HPA target |
//! |---|---|---|
//! | [`METRIC_REPLICAS`] | planned replica count (`ceil` of the value, see [`crate::control::planner::served_value`]) | `AverageValue: "1"` (the HPA lands on exactly the plan) |
//! | [`METRIC_DEMAND_PLANNED`] | planned demand (forecast quantile over the lead window) | `AverageValue`: capacity per replica |
//! | [`METRIC_DEMAND_MEDIAN`] | median forecast demand over the lead window | informational |
//!
//! Items carry no `window`: a forecast peak is not an average over a trailing window, and the lead time is not part
//! of the published snapshot, so any number there would be invented (the field is optional and the HPA ignores it).
//!
//! Errors are always `metav1.Status` JSON. The HPA treats every non-2xx alike (the metric is invalid and it holds
//! its current scale), so the code is chosen for the people reading the HPA's events and our metrics:
//!
//! | case | code / reason |
//! |---|---|
//! | bad selector | 400 BadRequest |
//! | unknown metric, or no configured workload in the namespace matches the selector (never an empty list) | 404 NotFound |
//! | a matching workload's plan may not be served ([`PlanStore::servable`]): made from data older than its `maxDataAge`, older than `maxForecastAge`, or never made because its query fails or returns nothing | 500 InternalError, naming the workload and the problem (no backend text) |
//! | a matching workload's first plan is still being computed | 503 ServiceUnavailable |
//! | a value that is not a finite quantity | 500 InternalError |
//!
//! A workload that exists but cannot be served is never a 404: "not found" would send people looking for a typo in
//! the selector instead of at the dead query. Handlers only read the [`PlanStore`] and never wait on anything else.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery, ListMeta, Status,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info_span, warn, Instrument};

use crate::apiserver::status::{self, echo, echo_at_most, MAX_ECHO_BYTES};
use crate::clock::Clock;
use crate::k8s::quantity::{self, QuantityError};
use crate::k8s::selector::{Operator, Selector, SelectorError};
use crate::store::{PlanStore, Refusal, Snapshot, WorkloadId};

/// The API group served.
pub const GROUP: &str = "external.metrics.k8s.io";
/// The API version served.
pub const VERSION: &str = "v1beta1";
/// `group/version`.
pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";
/// The planned replica count. Target it with `AverageValue: "1"`.
pub const METRIC_REPLICAS: &str = "prescale_replicas";
/// The planned demand (forecast quantile). Target it with `AverageValue` = capacity per replica.
pub const METRIC_DEMAND_PLANNED: &str = "prescale_demand_planned";
/// The median forecast demand.
pub const METRIC_DEMAND_MEDIAN: &str = "prescale_demand_median";
/// Every metric served, in discovery order.
pub const METRICS: [&str; 3] = [METRIC_REPLICAS, METRIC_DEMAND_PLANNED, METRIC_DEMAND_MEDIAN];
/// The label carrying the workload name on every item.
pub const WORKLOAD_LABEL: &str = "workload";

/// What the API handlers read.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Published plans, and the bounds on their age ([`PlanStore::servable`]).
    pub store: Arc<PlanStore>,
    /// The source of "now" for the age checks.
    pub clock: Clock,
}

/// `external.metrics.k8s.io/v1beta1` `ExternalMetricValueList` (not in k8s-openapi).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    /// Always `ExternalMetricValueList`.
    pub kind: String,
    /// Always `external.metrics.k8s.io/v1beta1`.
    pub api_version: String,
    /// Empty list metadata.
    pub metadata: ListMeta,
    /// One value per matching series; never empty when served.
    pub items: Vec<ExternalMetricValue>,
}

impl ExternalMetricValueList {
    /// A list holding `items`.
    pub fn new(items: Vec<ExternalMetricValue>) -> Self {
        Self {
            kind: "ExternalMetricValueList".to_owned(),
            api_version: GROUP_VERSION.to_owned(),
            metadata: ListMeta::default(),
            items,
        }
    }
}

/// One `ExternalMetricValue`: a metric's value for one label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    /// The metric name, as asked.
    pub metric_name: String,
    /// The series' labels (always emitted).
    pub metric_labels: BTreeMap<String, String>,
    /// When the value was computed, RFC 3339 UTC with second precision.
    #[serde(serialize_with = "rfc3339_seconds")]
    pub timestamp: DateTime<Utc>,
    /// Seconds the value was averaged over, when that means something (omitted by this server).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "window")]
    pub window_seconds: Option<i64>,
    /// A canonical Quantity string.
    pub value: String,
}

fn rfc3339_seconds<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Why a request was refused; each maps to one `metav1.Status`.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The `labelSelector` parameter does not parse.
    #[error("invalid labelSelector {:?}: {}", echo(selector), echo_at_most(&source.to_string(), 2 * MAX_ECHO_BYTES))]
    BadSelector {
        /// The selector as received (after form decoding).
        selector: String,
        /// Where and why it failed.
        #[source]
        source: SelectorError,
    },
    /// The metric is not one this server provides.
    #[error("the server could not find the metric {:?}; served metrics are {}", echo(metric), METRICS.join(", "))]
    UnknownMetric {
        /// The metric asked for.
        metric: String,
    },
    /// No workload in the namespace matches the selector.
    #[error(
        "no workload in namespace {:?} matches labelSelector {:?} for metric {metric}",
        echo(namespace),
        echo(selector)
    )]
    NoMatch {
        /// The namespace asked for.
        namespace: String,
        /// The metric asked for.
        metric: String,
        /// The selector (canonical form; empty = everything).
        selector: String,
    },
    /// A matching workload's plan may not be served (see [`PlanStore::servable`]).
    #[error(
        "workload {workload} cannot be served: {refusal}; the HPA holds its current scale until prescale has a \
         fresh plan (see `prescale explain {name} -n {namespace}`)",
        name = workload.name,
        namespace = workload.namespace
    )]
    Refused {
        /// The workload.
        workload: WorkloadId,
        /// Why.
        refusal: Refusal,
    },
    /// A value could not be written as a Quantity (NaN, infinite, or out of range).
    #[error("the value of metric {metric} for workload {workload} cannot be served; see the prescale logs")]
    BadValue {
        /// The workload.
        workload: WorkloadId,
        /// The metric.
        metric: String,
        /// The raw value.
        value: f64,
        /// Why formatting failed.
        #[source]
        source: QuantityError,
    },
    /// No route for the path.
    #[error("the server could not find the requested resource")]
    NotFound,
    /// Anything but GET/HEAD.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// The `Accept` header allows no plain JSON (nor `*/*`), or only aggregated-discovery documents.
    #[error("only the following media types are accepted: application/json")]
    NotAcceptable,
    /// A path segment is not UTF-8 once percent-decoded.
    #[error(
        "invalid request path {:?}: segment {segment} is not valid UTF-8 once percent-decoded",
        echo(path)
    )]
    InvalidPath {
        /// The path as received (still percent-encoded).
        path: String,
        /// The 1-based index of the first bad segment.
        segment: usize,
    },
    /// Any other refusal by the router (an extractor's rejection), carried over into a Status.
    #[error("{message}")]
    Other {
        /// The answer's code.
        code: StatusCode,
        /// What the rejection said, cut to a bounded length.
        message: String,
    },
}

impl ApiError {
    fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadSelector { .. } | ApiError::InvalidPath { .. } => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::UnknownMetric { .. } | ApiError::NoMatch { .. } | ApiError::NotFound => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            ApiError::Refused {
                refusal: Refusal::NotPlanned { problem: None },
                ..
            } => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            ApiError::Refused { .. } | ApiError::BadValue { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::Other { code, .. } => (*code, status::reason_for(*code)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, reason) = self.code_and_reason();
        match &self {
            ApiError::Refused { workload, refusal } => {
                warn!(%workload, reason = refusal.reason(), %refusal, "refusing to serve a plan");
            }
            ApiError::BadValue {
                workload,
                metric,
                value,
                source,
            } => {
                warn!(%workload, %metric, value, error = %source, "refusing to serve a value that is not a quantity");
            }
            _ => debug!(error = %self, code = code.as_u16(), "request refused"),
        }
        let status = Status {
            code: Some(i32::from(code.as_u16())),
            message: Some(self.to_string()),
            reason: Some(reason.to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        };
        let mut response = json(code, &status);
        if code == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// A JSON response with `Content-Type: application/json`, whatever the request's `Accept` said.
fn json<T: Serialize>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            code,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            bytes,
        )
            .into_response(),
        Err(error) => {
            warn!(%error, "cannot encode a response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                INTERNAL_ERROR_BODY,
            )
                .into_response()
        }
    }
}

const INTERNAL_ERROR_BODY: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"internal error encoding the response","reason":"InternalError","code":500}"#;

/// The API router. Routes: discovery, data, `/apis`, OpenAPI (404), health; 405 for non-GET, 404 otherwise.
pub fn router(state: ApiState) -> Router {
    let base = format!("/apis/{GROUP_VERSION}");
    Router::new()
        .route("/apis", get(api_group_list))
        .route(&format!("/apis/{GROUP}"), get(api_group))
        .route(&base, get(discovery))
        .route(
            &format!("{base}/namespaces/{{namespace}}/{{metric}}"),
            get(metric_values),
        )
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(middleware::from_fn(per_request))
        .with_state(state)
}

/// A span per request. Before routing, refuses anything but GET and HEAD (the API is read-only), a path that is not
/// UTF-8 once percent-decoded, and an `Accept` that allows no JSON; after it, turns any error answer that is not
/// already a Status (an extractor's rejection) into one.
async fn per_request(request: Request, next: Next) -> Response {
    let span = info_span!(
        "api",
        method = %request.method(),
        path = %echo(request.uri().path()),
        status = tracing::field::Empty
    );
    async move {
        let response = if request.method() != Method::GET && request.method() != Method::HEAD {
            ApiError::MethodNotAllowed.into_response()
        } else if let Some(segment) = non_utf8_segment(request.uri().path()) {
            ApiError::InvalidPath {
                path: request.uri().path().to_owned(),
                segment,
            }
            .into_response()
        } else if !is_probe(request.uri().path()) && !json_acceptable(request.headers()) {
            ApiError::NotAcceptable.into_response()
        } else {
            as_status(next.run(request).await).await
        };
        tracing::Span::current().record("status", response.status().as_u16());
        debug!("served");
        response
    }
    .instrument(span)
    .await
}

/// The 1-based index of the first path segment that is not UTF-8 once percent-decoded.
fn non_utf8_segment(path: &str) -> Option<usize> {
    path.split('/')
        .skip(1)
        .position(|segment| percent_encoding::percent_decode_str(segment).decode_utf8().is_err())
        .map(|i| i + 1)
}

/// Probes answer `ok` as text whatever the `Accept`.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz")
}

/// Whether `Accept` allows plain JSON: no header, or a media range `application/json` (without the `as=`/`g=`
/// parameters of a typed variant), `application/*` or `*/*` whose `q` is not 0. kubectl and client-go send
/// `application/json, */*` or `application/vnd.kubernetes.protobuf, */*`; both get JSON.
fn json_acceptable(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut ranges = values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return true;
    }
    ranges.any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut refused = false;
        let mut typed = false;
        for (key, value) in parts.filter_map(|p| p.split_once('=')) {
            match key.trim().to_ascii_lowercase().as_str() {
                "q" => refused = value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0),
                "as" | "g" => typed = true,
                _ => {}
            }
        }
        !refused
            && match media.as_str() {
                "application/json" => !typed,
                "application/*" | "*/*" => true,
                _ => false,
            }
    })
}

/// An error answer that is not JSON (an extractor's text rejection, the readiness probe) as a Status.
async fn as_status(response: Response) -> Response {
    let code = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(code.is_client_error() || code.is_server_error()) || is_json {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let message = echo_at_most(text.trim(), 2 * MAX_ECHO_BYTES).into_owned();
    let message = if message.is_empty() {
        code.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    ApiError::Other { code, message }.into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn ok() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ApiState>) -> Response {
    if state.store.is_ready() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no forecast has been published yet",
        )
            .into_response()
    }
}

fn our_group() -> APIGroup {
    let version = GroupVersionForDiscovery {
        group_version: GROUP_VERSION.to_owned(),
        version: VERSION.to_owned(),
    };
    APIGroup {
        name: GROUP.to_owned(),
        preferred_version: Some(version.clone()),
        server_address_by_client_cidrs: None,
        versions: vec![version],
    }
}

/// `GET /apis`: a plain `APIGroupList`, or 406 when only aggregated discovery (apidiscovery.k8s.io) is acceptable,
/// which makes the aggregator fall back to the per-version discovery document.
async fn api_group_list(headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if !plain_json_acceptable(&accept) {
        return ApiError::NotAcceptable.into_response();
    }
    json(
        StatusCode::OK,
        &APIGroupList {
            groups: vec![our_group()],
        },
    )
}

/// Whether a plain JSON document satisfies `accept`. An Accept made solely of typed JSON variants
/// (`application/json;g=apidiscovery.k8s.io;...`) rules it out (other Accepts are checked before routing).
fn plain_json_acceptable(accept: &str) -> bool {
    let ranges: Vec<&str> = accept.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
    let typed = |r: &str| {
        r.split(';')
            .skip(1)
            .any(|p| matches!(p.trim().split_once('='), Some(("g" | "as", _))))
    };
    if ranges.iter().any(|r| r.contains("apidiscovery.k8s.io")) {
        ranges.iter().any(|r| {
            let media = r.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(media.as_str(), "application/json" | "application/*" | "*/*") && !typed(r)
        })
    } else {
        true
    }
}

/// `GET /apis/external.metrics.k8s.io`: the group, as a real API server would answer it.
async fn api_group() -> Response {
    json(StatusCode::OK, &our_group())
}

/// `GET /apis/external.metrics.k8s.io/v1beta1`: one namespaced resource per metric, never an empty list.
async fn discovery() -> Response {
    let resources = METRICS
        .iter()
        .map(|name| APIResource {
            name: (*name).to_owned(),
            singular_name: String::new(),
            namespaced: true,
            kind: "ExternalMetricValueList".to_owned(),
            verbs: vec!["get".to_owned()],
            ..APIResource::default()
        })
        .collect();
    json(
        StatusCode::OK,
        &APIResourceList {
            group_version: GROUP_VERSION.to_owned(),
            resources,
        },
    )
}

/// The value of `metric` in a snapshot.
fn value_of(metric: &str, snapshot: &Snapshot) -> Option<f64> {
    match metric {
        METRIC_REPLICAS => Some(snapshot.plan.served),
        METRIC_DEMAND_PLANNED => Some(snapshot.plan.planned_demand),
        METRIC_DEMAND_MEDIAN => Some(snapshot.plan.median_demand),
        _ => None,
    }
}

impl ApiState {
    /// The value of `metric` for workload `id` as this API serves it: the snapshot, the value and its canonical
    /// Quantity, or the refusal. A plan [`PlanStore::servable`] refuses (none yet, forecast or data too old) is
    /// [`ApiError::Refused`]; a value that is not a finite quantity (or a metric not served) is
    /// [`ApiError::BadValue`]. Every surface serving plans (this API, the KEDA external scaler) goes through here, so
    /// they agree on the value and on what is refused.
    pub fn serve(
        &self,
        id: &WorkloadId,
        metric: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Snapshot>, f64, String), Box<ApiError>> {
        let snapshot = self.store.servable(id, now).map_err(|refusal| {
            Box::new(ApiError::Refused {
                workload: id.clone(),
                refusal,
            })
        })?;
        let value = value_of(metric, &snapshot).unwrap_or(f64::NAN);
        let quantity = quantity::format(value).map_err(|source| {
            Box::new(ApiError::BadValue {
                workload: id.clone(),
                metric: metric.to_owned(),
                value,
                source,
            })
        })?;
        Ok((snapshot, value, quantity))
    }
}

/// `GET .../namespaces/{namespace}/{metric}?labelSelector=...`
async fn metric_values(
    State(state): State<ApiState>,
    Path((namespace, metric)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The aggregator re-encodes the query with Go's url.Values.Encode(): form encoding, `+` is a space.
    let raw_selector = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "labelSelector"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let selector = Selector::parse(&raw_selector).map_err(|source| ApiError::BadSelector {
        selector: raw_selector.clone(),
        source,
    })?;
    if !METRICS.contains(&metric.as_str()) {
        return Err(ApiError::UnknownMetric { metric });
    }

    let now = state.clock.now();
    let mut items = Vec::new();
    // An HPA's selector names its workload (`workload=<name>`): look those up instead of walking the namespace,
    // which at thousands of workloads a namespace costs more than the rest of the request.
    let pinned = selector.requirements().iter().find_map(|r| {
        (r.key() == WORKLOAD_LABEL && matches!(r.operator(), Operator::Equals | Operator::DoubleEquals | Operator::In))
            .then(|| r.values())
    });
    for id in state.store.known_among(&namespace, pinned) {
        let labels = BTreeMap::from([(WORKLOAD_LABEL.to_owned(), id.name.clone())]);
        if !selector.matches(&labels) {
            continue;
        }
        // One missing or stale item would skew the HPA's sum: refuse the whole answer.
        let (snapshot, _, quantity) = state.serve(&id, &metric, now).map_err(|e| *e)?;
        items.push(ExternalMetricValue {
            metric_name: metric.clone(),
            metric_labels: labels,
            timestamp: snapshot.published_at,
            window_seconds: None,
            value: quantity,
        });
    }
    if items.is_empty() {
        return Err(ApiError::NoMatch {
            namespace,
            metric,
            selector: selector.to_string(),
        });
    }
    debug!(%namespace, %metric, %selector, items = items.len(), "metric values served");
    Ok(json(StatusCode::OK, &ExternalMetricValueList::new(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_for_apis() {
        assert!(plain_json_acceptable(""));
        assert!(plain_json_acceptable("application/json"));
        assert!(plain_json_acceptable("application/vnd.kubernetes.protobuf, */*"));
        assert!(!plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
             application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
        // kubectl offers plain JSON as a fallback after the typed variants.
        assert!(plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(plain_json_acceptable(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, */*;q=0.1"
        ));
    }

    #[test]
    fn timestamps_are_seconds_utc() {
        let item = ExternalMetricValue {
            metric_name: METRIC_REPLICAS.into(),
            metric_labels: BTreeMap::new(),
            timestamp: "2025-04-07T14:31:11.987654Z".parse().unwrap(),
            window_seconds: None,
            value: "1".into(),
        };
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["timestamp"], "2025-04-07T14:31:11Z");
        assert!(v.get("window").is_none());
        assert_eq!(v["metricLabels"], serde_json::json!({}));
    }
}
